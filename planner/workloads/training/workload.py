"""Training as a workload: its layout space, its memory and step-time models over grid rows, its steps,
and the scalar evaluation every chosen plan is re-checked with."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from planner.model import memory as memory_model
from planner.model import perf as perf_model
from planner.model import reliability as reliability_model
from planner.model.uncertainty import PARALLEL_REGIMES, Regime, error_quantile, gpu_generation
from planner.pricing import HourlyRate
from planner.scenario import EfficiencyOverride, FixedLayout, Job
from planner.schema import GpuSku, Implementation, Layout, ModelSpec, Overheads
from planner.workloads.expected import IDEAL, Basis
from planner.workloads.grid import GpuCounts, Grid, Slices, chunked
from planner.workloads.training import space
from planner.workloads.training.evaluation import Evaluation, evaluate, merged_efficiency
from planner.workloads.training.layout import Recipe, Template, grid_arrays
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
    basis: Basis = IDEAL  # failures and the step-error quantile plans are held to (planner.workloads.expected)
    # the activation offload count is a grid column (space.offload_searched); `implementation` then offloads nothing
    offload_search: bool = False

    @classmethod
    def of(cls, model: ModelSpec, job: Job, fixed: FixedLayout, implementation: Implementation, overheads: Overheads,
           efficiency: EfficiencyOverride, basis: Basis = IDEAL) -> TrainingWorkload:
        """The workload of a scenario's job: where offload is on without a count, the search chooses the count, and
        the models read it from each layout rather than from the implementation."""
        search = space.offload_searched(implementation)
        impl = implementation.model_copy(update={"activation_offload": False}) if search else implementation
        return cls(model, job, fixed, impl, overheads, efficiency, basis, search)

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

    def slices(self, nodes: Sequence[int], counts: GpuCounts) -> Slices | None:
        """The grid's layouts in slices sharing tp, pp, vpp, dp, cp and ep (what the step-time floor reads);
        None where no floor applies (a fixed MFU or HFU makes every layout of a GPU count equally fast)."""
        if self.efficiency.mfu is not None or self.efficiency.hfu is not None:
            return None
        lat = space.lattice(self, nodes, counts)
        return None if lat is None else lat.slices()

    def slice_runnable(self, slices: Slices, node: int, counts: GpuCounts) -> np.ndarray:
        """Slices runnable on one SKU: both rules `runnable` applies read only tp and the GPU count."""
        return space.runnable_on(self, slices.cols["tp"], slices.gpus, node, counts)

    def memory_floor(self, slices: Slices) -> np.ndarray:
        """Per slice, at most the per-GPU bytes `memory` gives any of its rows
        (planner.model.memory.training_memory_floor)."""
        return memory_model.training_memory_floor(self.model, self.seq, slices.cols, self.template.recipe,
                                                  self.implementation, self.overheads)

    def step_floor(self, slices: Slices, ids: np.ndarray, gpu: GpuSku, node: int) -> np.ndarray:
        """Per selected slice, at most the step seconds `step_seconds` gives any of its rows on `gpu`
        (planner.model.perf.step_time_floor)."""
        arrays = {k: v[ids] for k, v in slices.cols.items()}
        arrays["global_batch"] = np.full(len(ids), self.global_batch, dtype=np.int64)
        arrays = self._time_extras(arrays)
        return perf_model.step_time_floor(self.model, gpu, self.seq, arrays, impl=self.implementation,
                                          efficiency=merged_efficiency(gpu, self.efficiency), gpus_per_node=node,
                                          recipe=self.template.recipe)

    def floor_factor(self, slices: Slices, ids: np.ndarray, gpu: GpuSku) -> np.ndarray | float:
        """Per selected slice, at most `step_factor` of any of its rows: the expert regime where the slice's EP
        is above 1, else the least over the regimes its ZeRO range spans (ZeRO-3 is the sharded regime whatever
        the rest)."""
        if self.basis.confidence is None:
            return 1.0
        c = slices.cols
        ep, pp, tp, cp, z_lo, z_hi = (c[f][ids] for f in ("ep", "pp", "tp", "cp", "zero_min", "zero_max"))
        q = self._regime_factors(gpu)  # PARALLEL_REGIMES order: expert, sharded, pipeline, tensor, data
        rest = np.where(pp > 1, q[2], np.where((tp > 1) | (cp > 1), q[3], q[4]))
        dense = np.minimum(np.where(z_lo < 3, rest, np.inf), np.where(z_hi == 3, q[1], np.inf))
        return np.where(ep > 1, q[0], dense)

    def layout(self, grid: Grid, row: int) -> Layout:
        return self.template.layout(**grid.codes(row))

    def problems(self, layout: Layout, node: int) -> list[str]:
        """Every rule the layout breaks on nodes of `node` GPUs."""
        return layout_problems(self.model, layout, node_size=node, seq=self.seq, impl=self.implementation)

    def fixed_field_problems(self, node: int) -> list[str]:
        """Why no layout is legal, when the fields the scenario fixes already rule them all out."""
        return space.fixed_field_problems(self, node)

    # ----------------------------------------------------------------------------------------
    # the models, over grid rows
    # ----------------------------------------------------------------------------------------

    def memory(self, grid: Grid, rows: np.ndarray) -> np.ndarray:
        """Per-GPU bytes of the most loaded pipeline stage of the selected rows (any SKU)."""
        recipe = self.template.recipe
        out = np.empty(len(rows), dtype=np.int64)
        partial = grid.cols["recompute_num_layers"][rows]
        # the memory formulas take partial recompute from the recipe (what each model chunk keeps): one call per
        # count in use
        for n in np.unique(partial).tolist():
            at = np.flatnonzero(partial == n)
            rec = replace(recipe, recompute_num_layers=int(n) or None)

            def part(sel: np.ndarray, rec: Recipe = rec) -> np.ndarray:
                return memory_model.training_memory_table(self.model, self.seq, grid_arrays(grid.cols, sel,
                                                                                           self.global_batch),
                                                          rec, self.implementation, self.overheads)["total"]

            out[at] = chunked(part, rows[at], np.int64)
        return out

    def step_seconds(self, grid: Grid, rows: np.ndarray, gpu: GpuSku, node: int) -> np.ndarray:
        """Seconds per optimizer step of the selected rows on `gpu` in nodes of `node`, as `evaluate`
        computes them."""
        eff = self.efficiency
        if len(rows) == 0:
            return np.empty(0, dtype=np.float64)
        if eff.mfu is not None or eff.hfu is not None:
            # fixed utilisation: work / (GPUs · peak · utilisation) reads only the GPU count, the recompute mode
            # and the layers a partial recompute reruns (FLOPs), so one scalar call per distinct triple covers
            # every row
            c = grid.cols
            rerun = np.where(c["recompute_num_layers"][rows] > 0,
                             c["pp"][rows] * c["vpp"][rows] * c["recompute_num_layers"][rows], 0)
            triples = np.stack([grid.gpus[rows], c["recompute"][rows], np.minimum(rerun, self.model.layers)], axis=1)
            distinct, first, key = np.unique(triples, axis=0, return_index=True, return_inverse=True)
            vals = np.zeros(len(distinct))
            for k, row in enumerate(first.tolist()):
                layout = self.layout(grid, int(rows[row]))
                vals[k] = perf_model.fixed_utilisation_time(self.model, layout, gpu, self.seq, self.tokens,
                                                            mfu=eff.mfu, hfu=eff.hfu).step_seconds
            return vals[key.reshape(-1)]
        efficiency = merged_efficiency(gpu, eff)
        recipe = self.template.recipe

        def part(sel: np.ndarray) -> np.ndarray:
            arrays = self._time_extras(grid_arrays(grid.cols, sel, self.global_batch))
            return perf_model.step_time_table(self.model, gpu, self.seq, arrays, impl=self.implementation,
                                              efficiency=efficiency, gpus_per_node=node, recipe=recipe)["step_seconds"]

        return chunked(part, rows, np.float64)

    def _time_extras(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Model-table arrays with the fixed knobs the time model reads per layout (perf._step: partial
        recompute is a grid column; the HSDP shard group) where the scenario sets them, as `time_arrays` gives them
        for one."""
        r, n = self.template.recipe, len(arrays["tp"])
        given = {"dp_shard": r.dp_shard}
        return arrays | {k: np.full(n, v, dtype=np.int64) for k, v in given.items() if v}

    @functools.cached_property
    def checkpoint_bytes(self) -> int:
        """One checkpoint of the whole model: the same for every layout of the job (its optimizer is fixed)."""
        return reliability_model.checkpoint_bytes(self.model, self.template.recipe, self.implementation.framework)

    def step_factor(self, grid: Grid, rows: np.ndarray, gpu: GpuSku) -> np.ndarray | float:
        """1 + the basis' step-error quantile in each row's regime (planner.model.uncertainty.parallel_regime,
        over grid columns); 1.0 at the point estimate. `Evaluation.confidence_factor` is its scalar form."""
        if self.basis.confidence is None:
            return 1.0
        c = grid.cols
        ep, zero, pp, tp, cp = (c[f][rows] for f in ("ep", "zero", "pp", "tp", "cp"))
        # indices into PARALLEL_REGIMES, tested in parallel_regime's order
        parallel = np.where(ep > 1, 0, np.where(zero == 3, 1, np.where(pp > 1, 2,
                                                                   np.where((tp > 1) | (cp > 1), 3, 4))))
        return self._regime_factors(gpu)[parallel]

    def _regime_factors(self, gpu: GpuSku) -> np.ndarray:
        """1 + the basis' step-error quantile of each parallel regime (PARALLEL_REGIMES) on `gpu`."""
        gen, fw, conf = gpu_generation(gpu), self.implementation.framework, self.basis.confidence
        assert conf is not None
        return np.asarray([1.0 + error_quantile(Regime(gen, fw, name), conf) for name in PARALLEL_REGIMES])

    # ----------------------------------------------------------------------------------------
    # one plan, the scalar way
    # ----------------------------------------------------------------------------------------

    def memory_of(self, layout: Layout) -> int:
        """Per-GPU bytes of one layout, as `evaluate` reports them (Evaluation.memory.total)."""
        return memory_model.training_memory(self.model, layout, self.seq, self.implementation, self.overheads).total

    def evaluate(self, layout: Layout, gpu: GpuSku, node: int, rate: HourlyRate | None) -> Evaluation:
        """The independent re-check of one plan: the scalar model `planner estimate` reports."""
        return evaluate(self.model, layout, gpu, seq=self.seq, tokens=self.tokens, gpus_per_node=node,
                        implementation=self.implementation, overheads=self.overheads, efficiency=self.efficiency,
                        rate=rate, basis=self.basis)
