"""The house rules, checked on the source: the CLI calls only the public API, data flows one way
(model → workloads → search → workflows → report → cli), and `planner --help` loads nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import planner
import planner.report

PACKAGE = Path(planner.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool = False) -> list[tuple[str, list[str]]]:
    """(module, names) of every `import` / `from … import` of planner in the file (top-level statements only
    with top_level_only: what importing the module itself loads)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "planner":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "planner"]
    return out


def files(package: str) -> list[Path]:
    return sorted((PACKAGE / package.replace(".", "/")).rglob("*.py"))


def test_cli_imports_nothing_but_the_public_api() -> None:
    public = {"planner": set(planner.__all__), "planner.report": set(planner.report.__all__)}
    bad = []
    for path in files("cli"):
        for module, names in imports(path):
            if module.startswith("planner.cli"):
                continue
            if module not in public or not set(names) <= public[module]:
                bad.append(f"{path.name}: from {module} import {', '.join(names) or '(module)'}")
    assert not bad, bad


def test_library_never_imports_the_cli() -> None:
    bad = [f"{p.relative_to(PACKAGE)}: {m}" for p in PACKAGE.rglob("*.py") if "cli" not in p.parts
           for m, _ in imports(p) if m.startswith("planner.cli")]
    assert not bad, bad


@pytest.mark.parametrize(("layer", "allowed"), [
    # the physics reads the schema and nothing else of planner
    ("model", ("planner.schema", "planner.model")),
    # workloads: the physics, the scenario's inputs, prices, input ranges and the layout rules the scenario checks
    # too; never the search, workflows or output
    ("workloads", ("planner.schema", "planner.model", "planner.workloads", "planner.scenario", "planner.pricing",
                   "planner.errors", "planner.limits", "planner.layout_rules", "planner.catalog")),
    # the search: workloads and its own modules; its sentences use the leaf formatters of report/text.py
    ("search", ("planner.schema", "planner.model", "planner.workloads", "planner.scenario", "planner.portfolio",
                "planner.pricing", "planner.errors", "planner.catalog", "planner.search", "planner.report.text")),
    # the workflows: everything below them; of the report layer only its leaf formatters
    ("workflows", ("planner.schema", "planner.limits", "planner.model", "planner.workloads", "planner.scenario",
                   "planner.portfolio", "planner.pricing",
                   "planner.errors", "planner.catalog", "planner.search", "planner.interop", "planner.workflows",
                   "planner.report.text")),
    ("interop", ("planner.schema", "planner.limits", "planner.model", "planner.workloads.training.legality",
                 "planner.errors",
                 "planner.catalog", "planner.interop", "planner.report.text")),
])
def test_layers_import_only_what_is_below_them(layer: str, allowed: tuple[str, ...]) -> None:
    bad = [f"{p.relative_to(PACKAGE)}: {m}" for p in files(layer) for m, _ in imports(p, top_level_only=True)
           if not any(m == a or m.startswith(a + ".") for a in allowed)]
    assert not bad, bad


def test_public_names_are_not_shadowed_by_submodules() -> None:
    """`planner.review` must stay the function after planner.workflows.review is imported, and so on."""
    for package in (planner, planner.report):
        for name in package.__all__:
            path = Path(package.__file__).parent / name
            assert not path.with_suffix(".py").exists() and not path.is_dir(), f"{package.__name__}.{name}"


def test_help_loads_nothing_heavy() -> None:
    heavy = ("numpy", "pandas", "pydantic", "ortools", "matplotlib", "rich", "planner.scenario", "planner.search.cpsat")
    code = f"import sys; import planner.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
