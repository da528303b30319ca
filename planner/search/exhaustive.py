"""Brute-force reference for small spaces: the solver's answer, found the slow and obvious way.

Every tuple of a training job's axis domains (a partial recompute count only with full recompute, an activation
offload count only without recompute) is built as a Layout and checked whole by `layout_problems`; every legal one
that fits is evaluated by `evaluate` (the scalar model), independently of the grid, the vectorised tables, the
per-(SKU, GPU count) pruning and CP-SAT. Jobs are combined by trying every combination. Only the axis domains, the
GPU-count rule and the integer rounding are shared with the solver, because they define the space and the units
rather than compute anything.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from planner.schema import Layout
from planner.search.candidates import budget_cents, deadline_seconds, integer_units
from planner.search.problem import JobSpec, Problem, SkuOption
from planner.workloads.training.evaluation import Evaluation
from planner.workloads.training.layout import RECOMPUTE, SEARCHED
from planner.workloads.training.legality import layout_problems
from planner.workloads.training.space import axis_domains, redundant_expert_tp, redundant_recompute_layers
from planner.workloads.training.workload import TrainingWorkload


@dataclass(frozen=True)
class Option:
    """One (SKU, layout) of one job that fits and meets that job's own deadline."""

    sku: str
    layout: Layout
    gpus: int
    memory: int
    time_s: int
    cost_cents: int


@dataclass
class Enumeration:
    space_size: int  # legal (SKU, layout) pairs over all jobs, as solve counts them
    options: list[list[Option]]  # per job
    ranked: list[tuple[tuple[int, ...], tuple[Option, ...]]]  # (objective key, one option per job), best first

    @property
    def best(self) -> tuple[int, ...] | None:
        return self.ranked[0][0] if self.ranked else None


def training(job: JobSpec) -> TrainingWorkload:
    if not isinstance(job.workload, TrainingWorkload):
        raise TypeError(f"{job.name}: the exhaustive reference enumerates training layouts only")
    return job.workload


# The searched fields that only one recompute mode admits (layout_problems refuses them with any other): a
# partial recompute count needs full recompute, an activation offload count none.
PAIRED = {"recompute_num_layers": "full", "activation_offload_layers": "none"}


assert SEARCHED[-len(PAIRED):] == tuple(PAIRED)  # the paired counts close each tuple


def domain_tuples(dom: dict[str, list[int]]) -> Iterator[tuple[int, ...]]:
    """Every tuple of the axis domains, in SEARCHED order, with each PAIRED count only beside its recompute mode
    (0, the unset code, beside the others)."""
    mode = SEARCHED.index("recompute")
    tails = {code: list(itertools.product(*(dom[f] if RECOMPUTE[code] == m else [0] for f, m in PAIRED.items())))
             for code in dom["recompute"]}
    for values in itertools.product(*(dom[f] for f in SEARCHED[:-len(PAIRED)])):
        for tail in tails[values[mode]]:
            yield values + tail


def tuple_count(dom: dict[str, list[int]]) -> int:
    """How many tuples `domain_tuples` yields."""
    per_mode = sum(math.prod(len(dom[f]) if RECOMPUTE[code] == m else 1 for f, m in PAIRED.items())
                   for code in dom["recompute"])
    return per_mode * math.prod(len(dom[f]) for f in SEARCHED if f not in ("recompute", *PAIRED))


def legal_layouts(problem: Problem, job: JobSpec, sku: SkuOption) -> Iterator[Layout]:
    """Every layout of the axis domains that `layout_problems` accepts on this SKU within its caps."""
    w = training(job)
    dom = axis_domains(w, sku.node)
    counts = job.counts(problem.cap(sku, job), [sku])
    t, p, d, c = (SEARCHED.index(f) for f in ("tp", "pp", "dp", "cp"))
    sold: dict[int, bool] = {}  # per GPU count (Layout.gpus, before building it): whether it is sold
    for values in domain_tuples(dom):
        gpus = values[t] * values[p] * values[d] * values[c]
        if gpus not in sold:
            sold[gpus] = bool(counts.allowed(gpus, sku.node))
        if not sold[gpus]:
            continue
        codes = dict(zip(SEARCHED, values, strict=True))
        if redundant_expert_tp(dom, codes["tp"], codes["expert_tp"]) or (codes["recompute_num_layers"] and (
                redundant_recompute_layers(w, dom, codes["pp"], codes["vpp"], codes["recompute_num_layers"]))):
            continue
        layout = w.template.layout(**codes)
        if not layout_problems(w.model, layout, node_size=sku.node, seq=w.seq, impl=w.implementation):
            yield layout


def evaluate_on(job: JobSpec, sku: SkuOption, layout: Layout) -> Evaluation:
    return training(job).evaluate(layout, sku.gpu, sku.node, sku.rate)


def job_options(problem: Problem, job: JobSpec) -> tuple[int, list[Option]]:
    """(legal pairs counted, options that fit and meet the job's deadline)."""
    count, out = 0, []
    limit = deadline_seconds(job.deadline_days)
    for sku in problem.skus_for(job):
        for layout in legal_layouts(problem, job, sku):
            count += 1
            if training(job).memory_of(layout) > sku.gpu.hbm_bytes:
                continue  # does not fit (Evaluation.fits): its time is not needed
            ev = evaluate_on(job, sku, layout)
            if not ev.fits:
                continue
            steps = training(job).steps
            # the same transform as the tables, from the scalar evaluation's own factor and checkpoint size
            _, time_s, cost = integer_units(ev.time.step_seconds, layout.gpus, sku.rate.usd_per_gpu_hour, steps,
                                            ev.checkpoint_bytes, ev.basis, ev.confidence_factor)
            if limit is not None and int(time_s) > limit:
                continue
            out.append(Option(sku.name, layout, layout.gpus, ev.memory.total, int(time_s), int(cost)))
    return count, out


def _undominated(options: list[Option]) -> list[Option]:
    """Per (SKU, GPUs), drop options no better in time or cost than another: any combination using one
    can swap in the other without breaking a limit or worsening an objective. Keeps products small."""
    keep: dict[tuple[str, int, int, int], Option] = {}
    for o in options:
        keep.setdefault((o.sku, o.gpus, o.time_s, o.cost_cents), o)
    vals = list(keep.values())
    return [o for o in vals if not any(
        p.sku == o.sku and p.gpus == o.gpus and p.time_s <= o.time_s and p.cost_cents <= o.cost_cents
        and (p.time_s, p.cost_cents) != (o.time_s, o.cost_cents) for p in vals)]


def objective_key(objective: str, combo: tuple[Option, ...]) -> tuple[int, ...]:
    cost = sum(o.cost_cents for o in combo)
    makespan = max(o.time_s for o in combo)
    return {"cost": (cost,), "time": (makespan, cost), "cost-then-time": (cost, makespan)}[objective]


def enumerate_plans(problem: Problem) -> Enumeration:
    """Every feasible combination of per-job options, ranked by the scenario's objective."""
    size, options = 0, []
    for job in problem.jobs:
        n, opts = job_options(problem, job)
        size += n
        options.append(opts)
    pools = [_undominated(o) for o in options] if len(options) > 1 else options
    budget = budget_cents(problem.budget_usd)
    ranked = []
    for combo in itertools.product(*pools):
        total = sum(o.gpus for o in combo)
        if budget is not None and sum(o.cost_cents for o in combo) > budget:
            continue
        if problem.max_gpus is not None and total > problem.max_gpus:
            continue
        if problem.min_gpus is not None and total < problem.min_gpus:
            continue
        if any(s.inventory is not None and sum(o.gpus for o in combo if o.sku == s.name) > s.inventory
               for s in problem.skus):
            continue
        ranked.append((objective_key(problem.objective, combo), combo))
    ranked.sort(key=lambda kc: kc[0])
    return Enumeration(size, options, ranked)
