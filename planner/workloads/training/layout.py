"""The layout codec: one training layout in each of the forms planner keeps it in, converted here only.

- `Layout` (planner.schema): what users write, what every plan and report carries.
- codes: the searched fields as small integers (recompute as its code, sequence parallelism as 0/1), the
  int columns of a layout grid; `Template` turns them back into a Layout of one job.
- arrays: the fields as plain numbers, scalars or numpy columns, as the array-ready formulas of
  planner/model take them (`layout_arrays` for one Layout, `grid_arrays` for grid rows).
- `Recipe`: the numeric recipe a job fixes (precision, optimizer, ...), which the search never varies.
- fields: the JSON object of a layout (`as_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# Recipe, layout_arrays and RECOMPUTE_CODES are defined beside the memory formulas that read them.
from planner.model.memory import RECOMPUTE_CODES, Recipe, layout_arrays
from planner.scenario import FixedLayout, Job
from planner.schema import Layout, Recompute

__all__ = ["EXTRAS", "JSON_FIELDS", "RECOMPUTE", "RECOMPUTE_CODES", "SEARCHED", "Recipe", "Template", "as_fields",
           "encode", "grid_arrays", "layout_arrays"]

# The fields the search varies, in grid-column order (recompute_num_layers: 0 is every layer, Layout's null;
# activation_offload_layers: 0 is none, Layout's null).
SEARCHED = ("tp", "pp", "vpp", "dp", "cp", "ep", "zero", "recompute", "sequence_parallel", "micro_batch",
            "expert_tp", "recompute_num_layers", "activation_offload_layers")
# Knobs a scenario may fix that the search carries through unchanged (HSDP, Megatron's pipeline-split flags and
# explicit layouts); partial recompute and activation offload are searched, and in a layout's JSON only where set,
# as these are.
EXTRAS = ("recompute_num_layers", "activation_offload_layers", "dp_shard", "account_for_embedding_in_pipeline_split",
          "account_for_loss_in_pipeline_split", "recompute_method", "pipeline_first_stage_layers",
          "pipeline_last_stage_layers", "pipeline_layout")
# The JSON object of a layout, in this order, plus grad_accumulation.
JSON_FIELDS = (*(f for f in SEARCHED if f not in EXTRAS), "global_batch", "precision")
# code → recompute mode; the code is the mode's index, the code the memory and time tables read
RECOMPUTE: tuple[Recompute, ...] = ("none", "selective", "full")
assert all(RECOMPUTE_CODES[r] == i for i, r in enumerate(RECOMPUTE))


def encode(layout: Layout) -> dict[str, int]:
    """The searched fields of a layout as grid codes."""
    a = layout_arrays(layout)
    return {f: int(a[f]) for f in SEARCHED}


def grid_arrays(cols: Mapping[str, np.ndarray], rows: np.ndarray | None, global_batch: int) -> dict[str, np.ndarray]:
    """Grid rows as model-table input: the searched fields as int64 (the models' byte products overflow
    int32) and the job's global batch."""
    sel = slice(None) if rows is None else rows
    out = {f: cols[f][sel].astype(np.int64) for f in SEARCHED}
    out["global_batch"] = np.full(len(out["tp"]), global_batch, dtype=np.int64)
    return out


def as_fields(layout: Layout) -> dict[str, Any]:
    """The JSON object of a layout: the searched fields, global batch, precision, micro-batches per step, and the
    fixed extras a scenario set (dp_shard, partial recompute, pipeline-split flags, an explicit layout)."""
    d = {k: getattr(layout, k) for k in JSON_FIELDS}
    d["grad_accumulation"] = layout.grad_accumulation
    defaults = Layout.model_fields
    d |= {k: getattr(layout, k) for k in EXTRAS if getattr(layout, k) != defaults[k].default}
    if layout.recompute_num_layers is not None:  # a count means nothing without its method
        d["recompute_method"] = layout.recompute_method
    return d


@dataclass(frozen=True)
class Template:
    """What every layout of one job shares: global batch, recipe and the fixed extras. It decodes grid codes."""

    global_batch: int
    recipe: Recipe
    extras: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, job: Job, fixed: FixedLayout) -> Template:
        extras = tuple((k, getattr(fixed, k)) for k in EXTRAS if k not in SEARCHED and getattr(fixed, k) is not None)
        # the recipe carries the fixed extras too: the grid's memory and time read them as the scalar model does
        # (partial recompute, searched, is a grid column instead: planner.workloads.training.workload.memory)
        recipe = Recipe(job.precision, job.optimizer, job.fp32_grad_accumulation, bool(fixed.offload_optimizer),
                        None, fixed.recompute_method or Recipe.recompute_method, fixed.dp_shard,
                        bool(fixed.account_for_embedding_in_pipeline_split),
                        bool(fixed.account_for_loss_in_pipeline_split), fixed.pipeline_first_stage_layers,
                        fixed.pipeline_last_stage_layers,
                        tuple(fixed.pipeline_layout) if fixed.pipeline_layout is not None else None,
                        job.master_weights, job.moment_dtype)
        return cls(job.global_batch, recipe, extras)

    def layout(self, **codes: Any) -> Layout:
        """A Layout from grid codes (numpy or Python ints); fields not given take Layout's defaults."""
        values: dict[str, Any] = {k: int(v) for k, v in codes.items()}
        if "recompute" in values:
            values["recompute"] = RECOMPUTE[values["recompute"]]
        if "sequence_parallel" in values:
            values["sequence_parallel"] = bool(values["sequence_parallel"])
        if values.get("expert_tp") == 0:  # code 0: the experts split over TP like the rest (unset)
            values["expert_tp"] = None
        if values.get("recompute_num_layers") == 0:  # code 0: every layer (unset)
            values["recompute_num_layers"] = None
        if values.get("activation_offload_layers") == 0:  # code 0: no offload (unset)
            values["activation_offload_layers"] = None
        values.setdefault("global_batch", self.global_batch)
        r = self.recipe
        return Layout(precision=r.precision, optimizer=r.optimizer, fp32_grad_accumulation=r.fp32_grad_accumulation,
                      offload_optimizer=r.offload_optimizer, master_weights=r.master_weights,
                      moment_dtype=r.moment_dtype, **dict(self.extras), **values)
