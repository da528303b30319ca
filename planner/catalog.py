"""Read catalogs/*.yaml into validated schema objects and look entries up by name or alias.

A catalog file is a mapping with one top-level list (`gpus:` or `models:`); each item must validate as
the schema class. Every problem — unreadable YAML, a bad key, a duplicate name — becomes an InputError
that names the file, the entry and the key, so a catalog edit is as easy to debug as a scenario.
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from planner.errors import InputError, format_validation_error
from planner.schema import GpuSku, ModelSpec

if TYPE_CHECKING:
    from planner.procurement import Procurement

ENV_VAR = "PLANNER_CATALOGS"

Entry = TypeVar("Entry", bound=BaseModel)


def catalog_dir() -> Path:
    """Where the catalogs live: $PLANNER_CATALOGS, else the checkout's catalogs/, else the installed copy."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    checkout = Path(__file__).resolve().parent.parent / "catalogs"
    if checkout.is_dir():
        return checkout
    # The wheel maps catalogs/ to planner/_catalogs (pyproject force-include).
    return Path(__file__).parent / "_catalogs"


def normalise(name: str) -> str:
    """Lookup key: case-insensitive, and "_" or " " are the same as "-" ("H100_SXM" == "h100-sxm")."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


@functools.lru_cache
def load_gpus() -> dict[str, GpuSku]:
    """All GPU SKUs in gpus.yaml, keyed by catalog name. Cached: treat the result as read-only."""
    return _load("gpus.yaml", "gpus", GpuSku)


@functools.lru_cache
def load_models() -> dict[str, ModelSpec]:
    """All models in models.yaml, keyed by name. Cached: treat the result as read-only."""
    return _load("models.yaml", "models", ModelSpec)


@functools.lru_cache
def load_procurement() -> Procurement:
    """procurement.yaml (planner.procurement.Procurement): TCO terms and lead times. Cached."""
    from planner.procurement import Procurement

    path = catalog_dir() / "procurement.yaml"
    data = _read(path)
    if not isinstance(data, dict) or not isinstance(data.get("procurement"), dict):
        raise InputError(f"{path}: expected a top-level mapping with a `procurement:` mapping")
    try:
        return Procurement.model_validate(data["procurement"])
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, f"{path}: procurement")) from exc


def clear_caches() -> None:
    """Forget loaded catalogs, e.g. after pointing $PLANNER_CATALOGS elsewhere."""
    load_gpus.cache_clear()
    load_models.cache_clear()
    load_procurement.cache_clear()


def get_gpu(name: str) -> GpuSku:
    """The GPU whose catalog name or alias matches `name`; InputError with suggestions if none does."""
    return _lookup(name, load_gpus(), "GPU")


def get_model(name: str) -> ModelSpec:
    """The model whose name (or alias, if the schema has them) matches `name`; InputError if none does."""
    return _lookup(name, load_models(), "model")


# --------------------------------------------------------------------------------------------
# internals
# --------------------------------------------------------------------------------------------


def _names(entry: BaseModel) -> list[str]:
    """Catalog name first, then aliases; generic so models.yaml may gain aliases without loader changes."""
    aliases: list[str] = list(getattr(entry, "aliases", []) or [])
    return [str(getattr(entry, "name", "")), *aliases]


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read catalog ({exc.strerror or exc})") from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{path}:{at}: invalid YAML: {problem}") from exc
    return data


def _load(filename: str, key: str, schema: type[Entry]) -> dict[str, Entry]:
    path = catalog_dir() / filename
    data = _read(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise InputError(f"{path}: expected a top-level mapping with a `{key}:` list")

    entries: dict[str, Entry] = {}
    owner: dict[str, str] = {}  # normalised name or alias -> canonical name that claimed it
    problems: list[str] = []
    for i, raw in enumerate(data[key]):
        label = f"{key}[{i}]"
        if isinstance(raw, dict) and raw.get("name"):
            label += f" ({raw['name']})"
        where = f"{path}: {label}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a mapping, got {type(raw).__name__}")
            continue
        try:
            entry = schema.model_validate(raw)
        except ValidationError as exc:
            problems.append(format_validation_error(exc, where))
            continue
        canonical = _names(entry)[0]
        for alias in _names(entry):
            norm = normalise(alias)
            if norm in owner and owner[norm] != canonical:
                problems.append(f"{where}: name or alias {alias!r} is already used by {owner[norm]!r}")
            elif norm in owner:
                problems.append(f"{where}: {alias!r} is listed twice")
            owner[norm] = canonical
        entries[canonical] = entry
    if problems:
        raise InputError("\n".join(problems))
    return entries


def _lookup(name: str, entries: dict[str, Entry], kind: str) -> Entry:
    index = {normalise(alias): canonical for canonical, e in entries.items() for alias in _names(e)}
    wanted = normalise(name)
    if wanted in index:
        return entries[index[wanted]]
    close = difflib.get_close_matches(wanted, index, n=3, cutoff=0.6)
    if close:
        # Show a matched alias together with the entry it stands for ("h100, h100-sxm").
        suggestions = list(dict.fromkeys(s for c in close for s in (c, index[c])))
        raise InputError(f"unknown {kind} {name!r}: did you mean {', '.join(suggestions)}?")
    known = ", ".join(sorted(entries)) or "(catalog is empty)"
    raise InputError(f"unknown {kind} {name!r}; known {kind}s: {known}")
