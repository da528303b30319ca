"""The search space: which (SKU, GPU count, layout) a job may run with, built as numpy columns.

A scenario is first resolved into a `Problem` (jobs, SKU options with node size, inventory cap and
hourly rate). For each job the SKU-independent layout grid is then built by crossing small axes
(dp × micro-batch, cp, ep, tp × SP, pp × vpp × ZeRO, recompute) and filtering after each cross, so
the grid never exists in its unfiltered form. Legality is decided by `planner.legality.layout_problems`
itself, evaluated once per distinct combination of the fields a rule reads and broadcast back, so
the solver and `planner estimate` reject exactly the same layouts. Per SKU, a boolean mask adds
what depends on the hardware (TP inside a node, GPU counts sold by the node).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planner.errors import InputError
from planner.legality import layout_problems
from planner.model.memory import RECOMPUTE_CODES
from planner.pricing import HourlyRate, hourly_rate
from planner.scenario import (
    Constraints,
    EfficiencyOverride,
    FixedLayout,
    Job,
    Pricing,
    Scenario,
    resolve_model,
)
from planner.schema import Framework, GpuSku, Implementation, Layout, ModelSpec, Overheads, Recompute

# grid code of each recompute mode = its index, the codes the memory and time tables read
RECOMPUTE: tuple[Recompute, ...] = tuple(sorted(RECOMPUTE_CODES, key=RECOMPUTE_CODES.__getitem__))  # type: ignore[assignment]
LAYOUT_FIELDS = ("tp", "pp", "vpp", "dp", "cp", "ep", "zero", "recompute", "sequence_parallel", "micro_batch")
# Without any inventory or cap a job could be spread over millions of GPUs; the largest published
# training fleets are 16-32k GPUs (Llama 3: 16,384 H100), so an uncapped search stops at 32,768.
DEFAULT_MAX_GPUS = 32_768
# Context parallelism splits the sequence into 2·cp chunks for a load-balanced ring. Below ~1k tokens
# per rank the KV exchange of each ring step (fixed size) can no longer hide behind that step's
# attention compute (shrinking with the chunk), and no published run goes there; a layout that fixes
# cp is searched as given.
MIN_TOKENS_PER_CP_RANK = 1024


# --------------------------------------------------------------------------------------------
# The resolved problem
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkuOption:
    """One GPU type the scenario allows, with what the scenario says about it."""

    gpu: GpuSku
    node: int  # GPUs per node (NVLink domain) in this scenario
    inventory: int | None  # the scenario's cap on this SKU across all jobs; None = not capped
    rate: HourlyRate

    @property
    def name(self) -> str:
        return self.gpu.name


LAYOUT_EXTRAS = ("recompute_num_layers", "dp_shard", "account_for_embedding_in_pipeline_split",
                 "account_for_loss_in_pipeline_split", "recompute_method", "pipeline_first_stage_layers",
                 "pipeline_last_stage_layers")


@dataclass(frozen=True)
class JobSpec:
    """One training job with everything the search needs resolved (model spec, limits, fixed fields)."""

    name: str
    model: ModelSpec
    job: Job
    fixed: FixedLayout
    deadline_days: float | None
    min_gpus: int | None
    max_gpus: int | None
    framework: Framework = "megatron-core"  # whose pipeline-split and FSDP rules the layouts follow

    @property
    def seq(self) -> int:
        return self.job.seq_len

    @property
    def global_batch(self) -> int:
        return self.job.global_batch

    @property
    def tokens(self) -> float:
        return float(self.job.tokens)

    def layout(self, **fields: Any) -> Layout:
        """A Layout of this job: grid integers in (recompute as its code, SP as 0/1), recipe from the job."""
        values: dict[str, Any] = {k: int(v) for k, v in fields.items()}
        if "recompute" in values:
            values["recompute"] = RECOMPUTE[values["recompute"]]
        if "sequence_parallel" in values:
            values["sequence_parallel"] = bool(values["sequence_parallel"])
        values.setdefault("global_batch", self.global_batch)
        # fixed knobs the search does not vary (partial recompute, HSDP, Megatron's pipeline-split flags)
        extras = {k: getattr(self.fixed, k) for k in LAYOUT_EXTRAS if getattr(self.fixed, k) is not None}
        return Layout(
            precision=self.job.precision,
            optimizer=self.job.optimizer,
            fp32_grad_accumulation=self.job.fp32_grad_accumulation,
            offload_optimizer=bool(self.fixed.offload_optimizer),
            **extras,
            **values,
        )


@dataclass(frozen=True)
class Problem:
    """A scenario resolved against the catalogs: what `solve` searches."""

    scenario: Scenario
    jobs: tuple[JobSpec, ...]
    skus: tuple[SkuOption, ...]
    skipped: tuple[str, ...]  # SKUs left out, with the reason
    max_gpus: int | None  # all jobs together
    min_gpus: int | None
    budget_usd: float | None
    lifted_caps: bool = False  # built for an explanation: inventories and GPU caps ignored

    @property
    def implementation(self) -> Implementation:
        return self.scenario.implementation

    @property
    def overheads(self) -> Overheads:
        return self.scenario.overheads

    @property
    def efficiency(self) -> EfficiencyOverride:
        return self.scenario.efficiency

    @property
    def pricing(self) -> Pricing:
        return self.scenario.pricing

    def cap(self, sku: SkuOption, job: JobSpec) -> int:
        """Most GPUs of `sku` that `job` may use on its own."""
        if self.lifted_caps:
            return DEFAULT_MAX_GPUS
        caps = [DEFAULT_MAX_GPUS, sku.inventory, self.max_gpus, job.max_gpus]
        return min(c for c in caps if c is not None)


def scenario_jobs(scenario: Scenario) -> list[JobSpec]:
    """The scenario's main job (top-level model/job/layout, constraints.deadline_days) and its `jobs:`."""
    c: Constraints = scenario.constraints
    fw = scenario.implementation.framework
    out = [JobSpec(scenario.name, resolve_model(scenario.model), scenario.job, scenario.layout,
                   c.deadline_days, None, None, fw)]
    for j in scenario.jobs:
        out.append(JobSpec(j.name, resolve_model(j.model), j.job, j.layout, j.deadline_days, j.min_gpus, j.max_gpus,
                           fw))
    names = [j.name for j in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"jobs: names must be unique (the main job is named by `name:`); repeated: {', '.join(dup)}")
    return out


def resolve_problem(scenario: Scenario, *, lift_caps: bool = False) -> Problem:
    """Catalog lookups, inventory and prices. SKUs without a price of the scenario's kind are skipped
    (and listed) when the scenario allows all SKUs; a SKU named explicitly must have one."""
    from planner.catalog import get_gpu, load_gpus

    hw = scenario.hardware
    jobs = scenario_jobs(scenario)
    inventory = hw.max_gpus
    if hw.skus == "all":
        # an inventory written per SKU is the list of what one has
        names = list(inventory) if isinstance(inventory, dict) else list(load_gpus())
        explicit = isinstance(inventory, dict)
    else:
        names, explicit = list(hw.skus), True
    fixed_skus = {j.fixed.sku for j in jobs if j.fixed.sku is not None}
    if len(jobs) == 1 and fixed_skus:
        names, explicit = list(fixed_skus), True
    skus: list[SkuOption] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for name in names:
        gpu = get_gpu(name)
        if gpu.name in seen:
            continue
        seen.add(gpu.name)
        try:
            rate = hourly_rate(gpu, scenario.pricing)
        except InputError:
            if explicit:
                raise
            skipped.append(f"{gpu.name} (no {scenario.pricing.kind} price)")
            continue
        if isinstance(inventory, dict):
            cap = next((v for k, v in inventory.items() if get_gpu(k).name == gpu.name), None)
        else:
            cap = inventory
        skus.append(SkuOption(gpu, hw.gpus_per_node or gpu.node_size, cap, rate))
    if not skus:
        raise InputError("hardware: no GPU SKU with a price to search (" + "; ".join(skipped) + ")")
    for j in jobs:
        if j.fixed.sku is not None and get_gpu(j.fixed.sku).name not in seen:
            raise InputError(f"layout.sku: {j.fixed.sku} is not among the scenario's SKUs")
    c = scenario.constraints
    return Problem(scenario, tuple(jobs), tuple(skus), tuple(skipped), c.max_gpus, c.min_gpus, c.budget_usd,
                   lift_caps)


def job_skus(problem: Problem, job: JobSpec) -> list[SkuOption]:
    """The SKUs one job may use (all, or the one its layout fixes)."""
    if job.fixed.sku is None:
        return list(problem.skus)
    from planner.catalog import get_gpu

    want = get_gpu(job.fixed.sku).name
    return [s for s in problem.skus if s.name == want]


# --------------------------------------------------------------------------------------------
# Axis domains and the GPU-count rule (shared with the exhaustive enumerator)
# --------------------------------------------------------------------------------------------


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def axis_domains(job: JobSpec, max_node: int) -> dict[str, list[int]]:
    """Values each layout field may take before legality: the space `solve` and the exhaustive
    enumerator both search. A field the scenario fixes has that one value."""
    m = job.model
    seq = job.seq
    cps = [c for c in divisors(seq) if c == 1 or seq // c >= MIN_TOKENS_PER_CP_RANK]
    # splits that count the embedding and the loss as layers (Megatron's flags, torchtitan's default weights)
    counted = (bool(job.fixed.account_for_embedding_in_pipeline_split)
               + bool(job.fixed.account_for_loss_in_pipeline_split))
    units = m.layers + (2 if job.framework == "torchtitan" else counted)
    dom: dict[str, list[int]] = {
        "tp": [t for t in divisors(m.heads) if t <= max_node],
        # even splits, plus even depths up to 16 and power-of-two depths with a shorter last stage
        # (uneven splits, e.g. BLOOM's 70 layers on 12 stages, DeepSeek-V3's 61 on 16)
        "pp": sorted(set(divisors(m.layers)) | {p for p in range(2, 17, 2) if p <= m.layers}
                     | {2**i for i in range(m.layers.bit_length()) if 2**i <= m.layers} | set(divisors(units))),
        "vpp": sorted(set(divisors(m.layers)) | set(divisors(units))),
        "dp": divisors(job.global_batch),
        "cp": cps,
        "ep": divisors(m.moe.experts) if m.moe else [1],
        "zero": [0, 1, 2, 3],
        "recompute": list(range(len(RECOMPUTE))),
        "sequence_parallel": [0, 1],
        "micro_batch": divisors(job.global_batch),
    }
    for f in LAYOUT_FIELDS:
        v = getattr(job.fixed, f)
        if v is not None:
            dom[f] = [RECOMPUTE.index(v) if f == "recompute" else int(v)]
    return dom


def fixed_field_problems(job: JobSpec, node: int) -> list[str]:
    """What `layout_problems` says about the fields the scenario fixes (others at their defaults)."""
    fixed = {f: v for f, v in axis_domains(job, node).items() if getattr(job.fixed, f) is not None}
    if "dp" not in fixed and "micro_batch" in fixed:
        fixed["dp"] = 1
    return layout_problems(job.model, job.layout(**{f: v[0] for f, v in fixed.items()}), node_size=node, seq=job.seq,
                           framework=job.framework)


def gpu_count_allowed(gpus: Any, node: int, cap: int, job: JobSpec) -> Any:
    """GPUs are rented by the node, or fewer on one node (a divisor of it), up to the cap and within
    the job's own bounds (min_gpus, a fixed count). Works on ints and numpy arrays."""
    ok = (gpus <= cap) & ((gpus % node == 0) | (node % gpus == 0)) & (gpus >= (job.min_gpus or 1))
    return ok & (gpus == job.fixed.gpus) if job.fixed.gpus is not None else ok


def counts_sold(nodes: Iterable[int], cap: int, job: JobSpec) -> np.ndarray:
    """gpu_count_allowed as a lookup table over 0..cap+1 (index with min(gpus, cap + 1))."""
    n = np.arange(1, cap + 2)
    ok = np.zeros(cap + 2, dtype=bool)
    for node in nodes:
        ok[1:] |= gpu_count_allowed(n, node, cap, job)
    return ok


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------

Table = dict[str, np.ndarray]


def _rows(t: Table) -> int:
    return len(next(iter(t.values())))


def _cross(a: Table, b: Table) -> Table:
    na, nb = _rows(a), _rows(b)
    ia, ib = np.repeat(np.arange(na), nb), np.tile(np.arange(nb), na)
    return {**{k: v[ia] for k, v in a.items()}, **{k: v[ib] for k, v in b.items()}}


def _where(t: Table, mask: np.ndarray) -> Table:
    return {k: v[mask] for k, v in t.items()}


def _axis(name: str, values: Iterable[int]) -> Table:
    return {name: np.asarray(list(values), dtype=np.int64)}


def _legal(job: JobSpec, t: Table, fields: Sequence[str], node: int | None = None) -> np.ndarray:
    """layout_problems on each distinct combination of `fields` (others at their defaults), broadcast
    back to the rows. `fields` must hold every field the rules about them read, so a default never
    decides; a `global_batch` column stands for the micro-batches per step where a rule reads those."""
    if _rows(t) == 0:
        return np.zeros(0, dtype=bool)
    # Columns are small non-negative integers: index each by its present values (bincount, no sort)
    # and combine the indices in mixed radix, so finding the distinct combinations is O(rows).
    code = np.zeros(_rows(t), dtype=np.int64)
    values = []
    for f in fields:
        present = np.flatnonzero(np.bincount(t[f]))
        code = code * len(present) + np.searchsorted(present, t[f])
        values.append(present)
    used = np.flatnonzero(np.bincount(code))
    ok = np.zeros(int(used[-1]) + 1, dtype=bool)
    for c in used.tolist():
        row, rest = {}, c
        for f, vals in zip(reversed(fields), reversed(values), strict=True):
            rest, i = divmod(rest, len(vals))
            row[f] = int(vals[i])
        ok[c] = not layout_problems(job.model, job.layout(**row), node_size=node, seq=job.seq, framework=job.framework)
    return ok[code]


def _filtered(job: JobSpec, t: Table, fields: Sequence[str]) -> Table:
    return _where(t, _legal(job, t, fields))


@dataclass
class LayoutGrid:
    """Every legal layout of one job (SKU-independent), one row per layout, int64 columns."""

    job: JobSpec
    cols: Table
    tp_on_node: dict[int, np.ndarray] = field(default_factory=dict)  # node size → legal-on-it flag by tp

    def __len__(self) -> int:
        return _rows(self.cols)

    @property
    def gpus(self) -> np.ndarray:
        return self.cols["gpus"]

    def arrays(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Model-table input: the layout fields (and global_batch) of the selected rows."""
        sel = slice(None) if rows is None else rows
        out = {f: self.cols[f][sel].astype(np.int64) for f in LAYOUT_FIELDS}
        out["global_batch"] = np.full(len(out["tp"]), self.job.global_batch, dtype=np.int64)
        return out

    def layout(self, row: int) -> Layout:
        return self.job.layout(**{f: self.cols[f][row] for f in LAYOUT_FIELDS})

    def key(self, row: int) -> tuple[int, ...]:
        return tuple(int(self.cols[f][row]) for f in LAYOUT_FIELDS)

    def allowed_on(self, sku: SkuOption, cap: int) -> np.ndarray:
        """Rows runnable on this SKU: TP inside its node, a GPU count it is sold in, within the cap."""
        node = sku.node
        if len(self) == 0:
            return np.zeros(0, dtype=bool)
        if node not in self.tp_on_node:
            tps = np.flatnonzero(np.bincount(self.cols["tp"]))
            ok = np.zeros(tps[-1] + 1, dtype=bool)
            ok[tps] = _legal(self.job, {"tp": tps}, ["tp"], node=node)
            self.tp_on_node[node] = ok
        sold = counts_sold([node], cap, self.job)  # a lookup, not a % per row
        return self.tp_on_node[node][self.cols["tp"]] & sold[np.minimum(self.gpus, cap + 1)]


def build_grid(job: JobSpec, skus: Sequence[SkuOption], cap: int) -> LayoutGrid:
    """The legal layouts of `job` on any of `skus` with at most `cap` GPUs, built axis by axis."""
    dom = axis_domains(job, max(s.node for s in skus))
    # data side: dp × micro-batch × cp × ep × (tp, SP), filtered as each axis joins
    t = _filtered(job, _cross(_axis("dp", dom["dp"]), _axis("micro_batch", dom["micro_batch"])), ["dp", "micro_batch"])
    t = _cross(t, _filtered(job, _axis("cp", dom["cp"]), ["cp"]))
    t = _where(t, t["dp"] * t["cp"] <= cap)
    t = _filtered(job, _cross(t, _axis("ep", dom["ep"])), ["ep", "dp", "cp"])
    tp = _filtered(job, _cross(_axis("tp", dom["tp"]), _axis("sequence_parallel", dom["sequence_parallel"])),
                   ["tp", "sequence_parallel"])
    t = _cross(t, tp)
    t = _where(t, t["tp"] * t["dp"] * t["cp"] <= cap)
    # model side: pp × vpp × ZeRO × recompute
    pipe = _cross(_cross(_axis("pp", dom["pp"]), _axis("vpp", dom["vpp"])), _axis("zero", dom["zero"]))
    pipe["global_batch"] = pipe["pp"]  # neutral here: as many micro-batches as stages
    pipe = _filtered(job, pipe, ["pp", "vpp", "zero", "global_batch"])
    del pipe["global_batch"]
    pipe = _cross(pipe, _axis("recompute", dom["recompute"]))
    if _rows(t) == 0 or _rows(pipe) == 0:
        return LayoutGrid(job, {f: np.zeros(0, dtype=np.int32) for f in (*LAYOUT_FIELDS, "gpus")})
    # Join the two sides through a (data row × model row) mask, so rows that fail the join rules are
    # never materialised: GPU counts sold and within the cap, and interleaving, which couples pp and vpp
    # with the micro-batches per step (Layout.grad_accumulation).
    gpus = (t["tp"] * t["dp"] * t["cp"])[:, None] * pipe["pp"][None, :]  # Layout.gpus
    ok = counts_sold({s.node for s in skus}, cap, job)[np.minimum(gpus, cap + 1)]
    steps = job.global_batch // (t["dp"] * t["micro_batch"])
    ga, ga_index = np.unique(steps, return_inverse=True)
    inter = _cross({"global_batch": ga}, {"pp": pipe["pp"], "vpp": pipe["vpp"]})
    ok &= _legal(job, inter, ["pp", "vpp", "global_batch"]).reshape(len(ga), -1)[ga_index.reshape(-1)]
    ia, ib = np.nonzero(ok)
    # int32 halves the gather; arrays() hands the models int64 (their byte products overflow int32)
    cols = {**{k: v.astype(np.int32)[ia] for k, v in t.items()},
            **{k: v.astype(np.int32)[ib] for k, v in pipe.items()}, "gpus": gpus.astype(np.int32)[ia, ib]}
    return LayoutGrid(job, cols)
