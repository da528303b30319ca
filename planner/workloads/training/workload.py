"""Training as a workload: its layout space, its memory and step-time models over grid rows, its steps,
and the scalar evaluation every chosen plan is re-checked with."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from planner.model import memory as memory_model
from planner.model import perf as perf_model
from planner.pricing import HourlyRate
from planner.scenario import EfficiencyOverride, FixedLayout, Job
from planner.schema import GpuSku, Implementation, Layout, ModelSpec, Overheads
from planner.workloads.grid import GpuCounts, Grid, chunked
from planner.workloads.training import space
from planner.workloads.training.evaluation import Evaluation, evaluate, merged_efficiency
from planner.workloads.training.layout import Template, grid_arrays
from planner.workloads.training.legality import layout_problems


@dataclass(frozen=True)
class TrainingWorkload:
    """One training job: the model, the data and batch, what the scenario fixes, and the stack's knobs."""

    model: ModelSpec
    job: Job
    fixed: FixedLayout = field(default_factory=FixedLayout)
    implementation: Implementation = field(default_factory=Implementation)
    overheads: Overheads = field(default_factory=Overheads)
    efficiency: EfficiencyOverride = field(default_factory=EfficiencyOverride)

    @property
    def seq(self) -> int:
        return self.job.seq_len

    @property
    def global_batch(self) -> int:
        return self.job.global_batch

    @property
    def tokens(self) -> float:
        return float(self.job.tokens)

    @property
    def steps(self) -> float:
        """Optimizer steps in the whole job, tokens / (global batch · sequence), as the time model counts
        them (fractional)."""
        return self.tokens / (self.global_batch * self.seq)

    @functools.cached_property
    def template(self) -> Template:
        return Template.of(self.job, self.fixed)

    # ----------------------------------------------------------------------------------------
    # the space
    # ----------------------------------------------------------------------------------------

    def grid(self, nodes: Sequence[int], counts: GpuCounts) -> Grid:
        """Every legal layout on nodes of these sizes, on the GPU counts `counts` allows."""
        return space.build_grid(self, nodes, counts)

    def runnable(self, grid: Grid, node: int, counts: GpuCounts) -> np.ndarray:
        """Rows runnable on one SKU (nodes of `node` GPUs) on the GPU counts `counts` allows."""
        return space.runnable(self, grid, node, counts)

    def layout(self, grid: Grid, row: int) -> Layout:
        return self.template.layout(**grid.codes(row))

    def problems(self, layout: Layout, node: int) -> list[str]:
        """Every rule the layout breaks on nodes of `node` GPUs."""
        return layout_problems(self.model, layout, node_size=node, seq=self.seq,
                               framework=self.implementation.framework)

    def fixed_field_problems(self, node: int) -> list[str]:
        """Why no layout is legal, when the fields the scenario fixes already rule them all out."""
        return space.fixed_field_problems(self, node)

    # ----------------------------------------------------------------------------------------
    # the models, over grid rows
    # ----------------------------------------------------------------------------------------

    def memory(self, grid: Grid, rows: np.ndarray) -> np.ndarray:
        """Per-GPU bytes of the most loaded pipeline stage of the selected rows (any SKU)."""
        recipe = self.template.recipe

        def part(sel: np.ndarray) -> np.ndarray:
            return memory_model.training_memory_table(self.model, self.seq, grid_arrays(grid.cols, sel,
                                                                                       self.global_batch),
                                                      recipe, self.implementation, self.overheads)["total"]

        return chunked(part, rows, np.int64)

    def step_seconds(self, grid: Grid, rows: np.ndarray, gpu: GpuSku, node: int) -> np.ndarray:
        """Seconds per optimizer step of the selected rows on `gpu` in nodes of `node`, as `evaluate`
        computes them."""
        eff = self.efficiency
        if len(rows) == 0:
            return np.empty(0, dtype=np.float64)
        if eff.mfu is not None or eff.hfu is not None:
            # fixed utilisation: work / (GPUs · peak · utilisation) reads only the GPU count and the
            # recompute mode (FLOPs), so one scalar call per distinct pair covers every row
            key = grid.gpus[rows] * 4 + grid.cols["recompute"][rows]
            first = np.full(int(key.max()) + 1, -1, dtype=np.int64)
            first[key[::-1]] = np.arange(len(key) - 1, -1, -1)  # index of each key's first row
            vals = np.zeros(len(first))
            for k in np.flatnonzero(first >= 0).tolist():
                layout = self.layout(grid, int(rows[first[k]]))
                vals[k] = perf_model.fixed_utilisation_time(self.model, layout, gpu, self.seq, self.tokens,
                                                            mfu=eff.mfu, hfu=eff.hfu).step_seconds
            return vals[key]
        efficiency = merged_efficiency(gpu, eff)
        recipe = self.template.recipe

        def part(sel: np.ndarray) -> np.ndarray:
            return perf_model.step_time_table(self.model, gpu, self.seq, grid_arrays(grid.cols, sel, self.global_batch),
                                              impl=self.implementation, efficiency=efficiency, gpus_per_node=node,
                                              recipe=recipe)["step_seconds"]

        return chunked(part, rows, np.float64)

    # ----------------------------------------------------------------------------------------
    # one plan, the scalar way
    # ----------------------------------------------------------------------------------------

    def evaluate(self, layout: Layout, gpu: GpuSku, node: int, rate: HourlyRate | None) -> Evaluation:
        """The independent re-check of one plan: the scalar model `planner estimate` reports."""
        return evaluate(self.model, layout, gpu, seq=self.seq, tokens=self.tokens, gpus_per_node=node,
                        implementation=self.implementation, overheads=self.overheads, efficiency=self.efficiency,
                        rate=rate)
