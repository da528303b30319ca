"""One interface over the three framework formats: write a layout, read it back, and diff two of them.

`export` gives the paste-ready text (Megatron-LM arguments, DeepSpeed JSON, torchtitan TOML or a torchtitan
config function),
`round_trip` what the framework would run from that text (the layout the format can express), and
`changes` the keys that differ between two texts of one format, so a plan is handed back as the flags
to change.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

from planner.errors import InputError
from planner.interop import FRAMEWORKS
from planner.interop.deepspeed import deepspeed_config_from_layout, parse_deepspeed_config
from planner.interop.megatron import megatron_args_from_layout, parse_megatron_args
from planner.interop.torchtitan import parse_torchtitan_toml, torchtitan_toml_from_layout
from planner.interop.torchtitan_config import config_function, config_settings, saved_config
from planner.report.text import dotted_settings
from planner.schema import Implementation, Layout, ModelSpec

__all__ = ["FRAMEWORKS", "changes", "export", "round_trip", "settings"]


def export(fmt: str, layout: Layout, *, model: ModelSpec | None, seq: int,
           implementation: Implementation | None = None, efficiency: Any = None) -> str:
    """The layout in the framework's own form; InputError for what that framework cannot run. `efficiency`: the
    overlaps the plan was timed with (an Efficiency or EfficiencyOverride; a dp_overlap or param_gather_overlap of
    0 leaves Megatron's overlap flag out), by default the preset's, which overlap."""
    if fmt == "megatron":
        grad = getattr(efficiency, "dp_overlap", None) != 0.0
        param = getattr(efficiency, "param_gather_overlap", None) != 0.0
        try:
            return megatron_args_from_layout(model, layout, seq, implementation, overlap_grad=grad,
                                             overlap_param=param)
        except InputError as e:
            if model is None:
                raise
            # a model feature without a Megatron flag: the parallel layout is still worth handing over
            return f"# model flags left out: {e}\n" + megatron_args_from_layout(
                None, layout, seq, implementation, overlap_grad=grad, overlap_param=param)
    if fmt == "deepspeed":
        return json.dumps(deepspeed_config_from_layout(layout, implementation), indent=2) + "\n"
    if fmt == "torchtitan":
        return torchtitan_toml_from_layout(layout, seq, model, implementation)
    if fmt == "torchtitan-config":
        return config_function(layout, seq, model, implementation)
    raise InputError(f"--emit: {fmt!r} is not one of {', '.join(FRAMEWORKS)}")


def round_trip(fmt: str, layout: Layout, *, model: ModelSpec | None, seq: int,
               implementation: Implementation | None = None) -> Layout:
    """The layout the framework runs when given `export(layout)`: what its format can express of it."""
    return round_trip_with_implementation(fmt, layout, model=model, seq=seq, implementation=implementation)[0]


def round_trip_with_implementation(fmt: str, layout: Layout, *, model: ModelSpec | None, seq: int,
                                   implementation: Implementation | None = None) -> tuple[Layout, Implementation]:
    """The layout and the framework knobs (implementation.framework, fp8 recipe, recompute modules, resharding,
    offload, CUDA graphs) the framework runs when given `export(layout)`: what its format can express."""
    text = export(fmt, layout, model=model, seq=seq, implementation=implementation)
    base = implementation or Implementation()
    if fmt == "megatron":
        cfg = parse_megatron_args(text, model=model)
        impl = cfg.implementation().model_copy(update={"fused_kernels": base.fused_kernels})
        return cfg.to_layout(layout.gpus), impl
    if fmt == "deepspeed":
        # TP and PP live in the model code and launcher, not in the JSON
        ds = parse_deepspeed_config(json.loads(text))
        return ds.to_layout(layout.gpus, tp=layout.tp, pp=layout.pp), ds.implementation(base)
    if fmt == "torchtitan-config":  # the function's fields, read back as torchtitan saves them
        tt = parse_torchtitan_toml(saved_config(layout, seq, model, implementation), model=model)
    else:
        tt = parse_torchtitan_toml(text, model=model)
    return tt.to_layout(layout.gpus), tt.implementation(base)


def settings(fmt: str, text: str) -> dict[str, str]:
    """Flat key → value of an exported text: flags (a switch's value is ''), dotted JSON or TOML keys."""
    if fmt == "megatron":
        out: dict[str, str] = {}
        for line in text.splitlines():
            words = line.removesuffix("\\").strip().split(maxsplit=1)
            if words and words[0].startswith("--"):
                out[words[0]] = words[1] if len(words) > 1 else ""
        return out
    if fmt == "torchtitan-config":
        return config_settings(text)
    data = json.loads(text) if fmt == "deepspeed" else tomllib.loads(text)
    return dotted_settings(data)


def changes(fmt: str, before: str, after: str) -> list[dict[str, Any]]:
    """The keys whose values differ, as {key, from, to}; None where a side does not have the key."""
    a, b = settings(fmt, before), settings(fmt, after)
    keys = list(dict.fromkeys([*b, *a]))
    return [{"key": k, "from": a.get(k), "to": b.get(k)} for k in keys if a.get(k) != b.get(k)]
