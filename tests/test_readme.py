"""The README's shown outputs are what planner prints today, and its Python example runs.

Each `<!-- output: CMD -->` … `<!-- /output -->` region of README.md holds CMD's output (Markdown as is;
`output text:` wraps it in a text block under `$ CMD`). A region that differs fails the test; rewrite
them all with

    UPDATE_README=1 .venv/bin/python -m pytest tests/test_readme.py
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REGION = re.compile(r"<!-- output( text)?: (.+?) -->\n(.*?)<!-- /output -->\n", re.S)
# timings differ from run to run: "in 1.42 s" on the solve line
TIMING = re.compile(r"\b\d+\.\d\d s\b")


def generated(cmd: str, text: bool) -> str:
    args = shlex.split(cmd)
    assert args[0] == "planner"
    cwd = Path.cwd()
    os.chdir(ROOT)  # the commands name scenarios/ relative to the checkout
    try:
        result = CliRunner().invoke(app, args[1:])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    out = result.stdout
    return f"```text\n$ {cmd}\n{out}```\n" if text else out


def regions() -> list[tuple[str, bool, str]]:
    return [(m.group(2), bool(m.group(1)), m.group(3)) for m in REGION.finditer(README.read_text())]


@pytest.mark.parametrize(("cmd", "text", "shown"), regions(), ids=[r[0] for r in regions()])
def test_shown_output_is_current(cmd: str, text: bool, shown: str) -> None:
    now = generated(cmd, text)
    if os.environ.get("UPDATE_README"):
        readme = README.read_text()
        head = f"<!-- output{' text' if text else ''}: {cmd} -->\n"
        README.write_text(readme.replace(head + shown, head + now))
        return
    assert TIMING.sub("T s", now) == TIMING.sub("T s", shown), f"README.md is stale for `{cmd}`: {__doc__}"


def test_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    block = README.read_text().split("<!-- example -->\n```python\n")[1].split("```")[0]
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        exec(compile(block, "README.md", "exec"), {})  # the README's own example
    finally:
        os.chdir(cwd)
    assert "| rank |" in capsys.readouterr().out  # render(result, "markdown") printed the plans
