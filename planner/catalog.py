"""Read catalogs/*.yaml into validated schema objects and look entries up by name or alias.

A catalog file is a mapping with one top-level list (`gpus:` or `models:`); each item must validate as
the schema class. Every problem — unreadable YAML, a bad key, a duplicate name — becomes an InputError
that names the file, the entry and the key, so a catalog edit is as easy to debug as a scenario.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from planner import safe_yaml
from planner.errors import InputError, expect, format_validation_error
from planner.schema import GIB, GpuDefinition, GpuSku, ModelSpec

if TYPE_CHECKING:
    from planner.procurement import Procurement

ENV_VAR = "PLANNER_CATALOGS"

Entry = TypeVar("Entry", bound=BaseModel)


def shipped() -> bool:
    """The catalogs are planner's own (no $PLANNER_CATALOGS): read with the fast parser (safe_yaml.loads)."""
    return not os.environ.get(ENV_VAR)


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
    data: Any = safe_yaml.read_yaml(path, trusted=shipped())
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


def get_gpu(name: str, custom: Iterable[GpuSku] = (), key: str | None = None) -> GpuSku:
    """The GPU whose name or alias matches `name` among a scenario's own GPUs (`custom`, see derive_gpus)
    and the catalog; InputError with suggestions if none does, naming `key` (the scenario key that gave it)."""
    expect(name, str, key or "get_gpu(name)")
    custom = tuple(custom)
    try:
        if not custom:
            return _lookup(name, load_gpus(), "GPU")
        return _lookup(name, {**load_gpus(), **{g.name: g for g in custom}}, "GPU")
    except InputError as e:
        if key is None:
            raise
        raise InputError(f"{key}: {e}") from None


def derive_gpus(definitions: Sequence[GpuDefinition], where: str = "gpus") -> tuple[GpuSku, ...]:
    """A scenario's `gpus:` entries as full SKUs: each inherits every field it does not state from its
    `base:` catalog entry (an entry may also build on an earlier one). A lower `tdp_w` than the base's is a
    power limit: `rated_tdp_w` keeps the power the base's peaks were measured at, and the efficiencies are
    scaled by planner.model.power's rule (`power_limited`)."""
    from planner.model.power import power_limited

    out: list[GpuSku] = []
    for i, d in enumerate(definitions):
        at = f"{where}[{i}] ({d.name})"
        try:
            base = get_gpu(d.base, out)
        except InputError as e:
            raise InputError(f"{at}: base: {e}") from None
        taken = {normalise(a) for g in (*load_gpus().values(), *out) for a in (g.name, *g.aliases)}
        if normalise(d.name) in taken:
            raise InputError(f"{at}: name {d.name!r} is already a GPU; choose another name")
        fields = base.model_dump()
        source = d.source or f"{base.name} ({base.source}), changed by the scenario"
        # the base's generation, stated or read from its name: the new name may not say it
        fields.update(name=d.name, aliases=[], source=source, generation=d.generation or base.arch,
                      base=base.base or base.name)
        if d.description:
            fields["description"] = d.description
        if d.memory_gib is not None or d.hbm_bytes is not None:
            fields["hbm_bytes"] = d.hbm_bytes or round((d.memory_gib or 0) * GIB)
            fields["marketed_gb"] = None
        if d.hbm_tb_s is not None or d.hbm_bandwidth_tbs is not None:
            fields["hbm_bandwidth_tbs"] = d.hbm_tb_s or d.hbm_bandwidth_tbs
        if d.peak_tflops:
            fields["peak_tflops"] = {**base.peak_tflops, **d.peak_tflops}
        for key in ("node_size", "host_gpus", "intra_node_gbs", "network_gbps", "prices", "block_scaled_fp8"):
            if getattr(d, key) is not None:
                fields[key] = getattr(d, key)
        if d.tdp_w is not None:
            fields["tdp_w"] = d.tdp_w
            rated = base.rated_tdp_w or base.tdp_w
            fields["rated_tdp_w"] = rated if d.tdp_w < rated else None
        if d.efficiency:
            fields["efficiency"] = {**fields["efficiency"], **d.efficiency}
        try:
            sku = GpuSku.model_validate(fields)
        except ValidationError as exc:
            raise InputError(format_validation_error(exc, at)) from None
        if d.tdp_w is not None and d.tdp_w < base.tdp_w and not (d.efficiency and "gemm" in d.efficiency):
            # the base's efficiencies hold at its own tdp_w (already scaled if the base is itself capped);
            # efficiencies the entry states are taken as measured at its tdp_w
            sku = power_limited(sku, base.tdp_w)
        out.append(sku)
    return tuple(out)


def get_model(name: str) -> ModelSpec:
    """The model whose name (or alias, if the schema has them) matches `name`; InputError if none does."""
    expect(name, str, "get_model(name)")
    return _lookup(name, load_models(), "model")


# --------------------------------------------------------------------------------------------
# internals
# --------------------------------------------------------------------------------------------


def _names(entry: BaseModel) -> list[str]:
    """Catalog name first, then aliases; generic so models.yaml may gain aliases without loader changes."""
    aliases: list[str] = list(getattr(entry, "aliases", []) or [])
    return [str(getattr(entry, "name", "")), *aliases]


def _load(filename: str, key: str, schema: type[Entry]) -> dict[str, Entry]:
    path = catalog_dir() / filename
    data: Any = safe_yaml.read_yaml(path, trusted=shipped())
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
