"""A search that prunes: the candidates that can matter to a solve, from a fraction of the layouts.

The job's layouts come in slices (planner.workloads.grid.Slices) whose rows share what the workload's
step-time floor reads; on one SKU a slice's floor, through the planned-time transform (monotone in the
step and in the quantile factor, planner.workloads.expected), bounds the planned time and cost of every
row in it from below. Slices are evaluated best bound first, and a (SKU, slice) pair is never evaluated
when its bound on the first objective exceeds
- the deadline or the budget: no row of it is feasible;
- the threshold: the larger of the k-th best feasible candidate's value and the near-optimal cap of the
  best one (`near_cap`, as `Selector.ranked` computes it). Every row of such a pair is beaten on the first
  objective by k feasible candidates and lies above the near-optimal cap, so neither the plan, nor the
  runner-ups, nor the near-optimal set can hold it. The threshold only falls as candidates are found, so
  one pass over the pairs below it settles the search.

A (SKU, GPU count) with a pruned slice may keep a candidate slower than its true best; both lie above the
threshold, where nothing the solve reports is chosen. Only one job with limits per plan qualifies:
several jobs share inventories and a budget, and the Pareto front and the binding-constraint explanation
look past the threshold (planner.workflows.solve decides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from planner.schema import GpuSku
from planner.search.candidates import (
    CandidateTable,
    JobCandidates,
    SkuStats,
    budget_cents,
    deadline_seconds,
    integer_units,
    ranked,
    sku_candidates,
)
from planner.search.problem import JobSpec, Problem
from planner.workloads import Workload
from planner.workloads.grid import GpuCounts, Grid, Slices

# The first batch: the best-bounded pairs holding this share of the space (at least FIRST_ROWS layouts),
# enough to find the k candidates that set the threshold; without them the batch grows GROWTH-fold.
FIRST_SHARE = 1 / 128
FIRST_ROWS = 4096
GROWTH = 4


class Prunable(Workload, Protocol):
    """A workload whose layouts come in slices with a step-time floor (planner.workloads.training)."""

    def slices(self, nodes: list[int], counts: GpuCounts) -> Slices | None: ...

    def slice_runnable(self, slices: Slices, node: int, counts: GpuCounts) -> np.ndarray: ...

    def memory_floor(self, slices: Slices) -> np.ndarray: ...

    def step_floor(self, slices: Slices, ids: np.ndarray, gpu: GpuSku, node: int) -> np.ndarray: ...

    def floor_factor(self, slices: Slices, ids: np.ndarray, gpu: GpuSku) -> np.ndarray | float: ...


@dataclass(frozen=True)
class Pruning:
    """What a pruned search looked at, in legal (SKU, layout) pairs."""

    space: int
    evaluated: int  # pairs whose memory and step time were computed

    @property
    def pruned(self) -> int:
        return self.space - self.evaluated


def near_cap(best: int, margin: float) -> int:
    """The near-optimal set's bound on the first objective (Selector.ranked): at most (1 + margin) × the best."""
    return int(best * (1 + margin))


@dataclass
class _Pairs:
    """(SKU, slice) pairs worth evaluating, with their lower bound on the first objective."""

    sku: np.ndarray  # position in the job's SKU list
    slice: np.ndarray
    bound: np.ndarray
    size: np.ndarray  # layouts in the slice
    done: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # evaluated

    def __post_init__(self) -> None:
        if len(self.done) != len(self.sku):
            self.done = np.zeros(len(self.sku), dtype=bool)

    def take(self, mask: np.ndarray) -> _Pairs:
        return _Pairs(self.sku[mask], self.slice[mask], self.bound[mask], self.size[mask], self.done[mask])

    @classmethod
    def concat(cls, parts: list[_Pairs]) -> _Pairs:
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty, empty)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("sku", "slice", "bound", "size", "done")))


@dataclass
class _Part:
    """One evaluated batch: its grid rows, their memory, and its candidates (rows local to the part)."""

    grid: Grid
    memory: np.ndarray
    table: CandidateTable
    planned: np.ndarray


def pruned_candidates(problem: Problem, job: JobSpec, objective: str, keep: int,
                      margin: float) -> tuple[JobCandidates, Pruning] | None:
    """The job's candidate table as far as the `keep` best plans (by `objective`: cost | time) and the
    near-optimal set within `margin` need it; None where the workload offers no floor."""
    w = job.workload
    if not hasattr(w, "slices"):
        return None
    pw: Prunable = w  # type: ignore[assignment]
    skus = problem.skus_for(job)
    sl = pw.slices(sorted({s.node for s in skus}), job.counts(max(problem.cap(s, job) for s in skus)))
    if sl is None or sl.groups is None or sl.group is None:
        return None
    bounds = _Bounds(problem, job, pw, objective)
    coarse, stats = bounds.groups(sl)
    space = sum(s.legal for s in stats)
    limits = _Limits(deadline_seconds(job.deadline_days), budget_cents(problem.budget_usd), problem.min_gpus)
    column = "cost_cents" if objective == "cost" else "time_s"
    children = _Children(sl.group)
    c_order = np.lexsort((coarse.slice, coarse.sku, coarse.bound))
    refined = np.zeros(len(coarse.sku), dtype=bool)
    pool: list[_Pairs] = []  # fine pairs, refined so far
    parts: list[_Part] = []
    evaluated = 0
    threshold = math.inf
    batch = max(FIRST_ROWS, int(space * FIRST_SHARE))
    while True:
        # refine: the groups below the threshold or, before there is one, the next best-bounded ones
        if threshold == math.inf:
            nxt = c_order[~refined[c_order]]
            upto = int(np.searchsorted(np.cumsum(coarse.size[nxt]), batch)) + 1
            todo = np.zeros_like(refined)
            todo[nxt[:upto]] = True
            frontier = coarse.bound[nxt[upto]] if upto < len(nxt) else math.inf
            batch *= GROWTH
        else:
            todo = ~refined & (coarse.bound <= threshold)
            frontier = threshold
        if todo.any():
            pool.append(bounds.slices(sl, coarse.take(todo), children))
            refined |= todo
        fine = _Pairs.concat(pool)
        pool = [fine]
        # evaluate: every refined slice below the frontier (no unrefined group can hold a better one)
        due = ~fine.done & (fine.bound <= frontier)
        if not due.any():
            if threshold != math.inf or refined.all():
                break
            continue
        parts.append(_evaluate(problem, job, pw, sl, fine.take(due)))
        evaluated += int(fine.size[due].sum())
        fine.done[due] = True
        best = _merge(parts)[0]
        values = np.sort(getattr(best, column)[limits.met(best.time_s, best.cost_cents, best.gpus)])
        if len(values) >= keep:
            threshold = max(int(values[keep - 1]), near_cap(int(values[0]), margin))
    return _job_candidates(job, parts, stats), Pruning(space, evaluated)


class _Children:
    """Each group's slices (CSR over the slice → group map)."""

    def __init__(self, group: np.ndarray) -> None:
        self.order = np.argsort(group, kind="stable")
        self.start = np.searchsorted(group[self.order], np.arange(int(group.max()) + 2 if len(group) else 1))

    def of(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slices, the position in `groups` of each one's group)."""
        lo, hi = self.start[groups], self.start[groups + 1]
        which = np.repeat(np.arange(len(groups)), hi - lo)
        pos = np.arange(int((hi - lo).sum())) - np.repeat(np.cumsum(hi - lo) - (hi - lo), hi - lo)
        return self.order[lo[which] + pos], which


@dataclass(frozen=True)
class _Limits:
    """The limits one job's plan meets on its own (its deadline, the budget, the least GPUs); the most GPUs
    and the inventories are in the caps every pair was drawn within."""

    deadline_s: int | None
    budget_cents: int | None
    min_gpus: int | None

    def met(self, time_s: np.ndarray, cost_cents: np.ndarray, gpus: np.ndarray) -> np.ndarray:
        """Plans (or lower bounds of plans) that meet every limit."""
        ok = np.ones(len(gpus), dtype=bool)
        if self.deadline_s is not None:
            ok &= time_s <= self.deadline_s
        if self.budget_cents is not None:
            ok &= cost_cents <= self.budget_cents
        if self.min_gpus is not None:
            ok &= gpus >= self.min_gpus
        return ok


class _Bounds:
    """Lower bounds of the planned time and cost of (SKU, slice) pairs, through the workload's floors."""

    def __init__(self, problem: Problem, job: JobSpec, w: Prunable, objective: str) -> None:
        self.problem, self.job, self.w, self.objective = problem, job, w, objective
        self.skus = problem.skus_for(job)
        self.limits = _Limits(deadline_seconds(job.deadline_days), budget_cents(problem.budget_usd), problem.min_gpus)
        self.memory: np.ndarray | None = None  # per group: the memory floor

    def _pairs(self, sl: Slices, i: int, ids: np.ndarray) -> _Pairs:
        sku, w = self.skus[i], self.w
        floor = w.step_floor(sl, ids, sku.gpu, sku.node)
        factor = w.floor_factor(sl, ids, sku.gpu)
        gpus = sl.gpus[ids]
        _, time_s, cost = integer_units(floor, gpus, sku.rate.usd_per_gpu_hour, w.steps, w.checkpoint_bytes,
                                        w.basis, factor)
        ok = self.limits.met(time_s, cost, gpus)
        bound = cost if self.objective == "cost" else time_s
        return _Pairs(np.full(int(ok.sum()), i), ids[ok], bound[ok], sl.size[ids[ok]])

    def groups(self, sl: Slices) -> tuple[_Pairs, list[SkuStats]]:
        """Every runnable (SKU, group) pair whose memory floor fits the GPU and whose bounds admit the limits;
        per SKU the legal layout count."""
        groups = sl.groups
        assert groups is not None
        self.memory = self.w.memory_floor(groups)
        parts, stats = [], []
        for i, sku in enumerate(self.skus):
            live = np.flatnonzero(self.w.slice_runnable(groups, sku.node, self.job.counts(self.problem.cap(sku,
                                                                                                        self.job))))
            stats.append(SkuStats(sku.name, sku.gpu.hbm_bytes, int(groups.size[live].sum()), None, None, None))
            live = live[self.memory[live] <= sku.gpu.hbm_bytes]
            if len(live):
                parts.append(self._pairs(groups, i, live))
        return _Pairs.concat(parts), stats

    def slices(self, sl: Slices, groups: _Pairs, children: _Children) -> _Pairs:
        """The slices of the given (SKU, group) pairs with their own, tighter bounds."""
        parts = []
        for i in np.unique(groups.sku).tolist():
            ids, _ = children.of(groups.slice[groups.sku == i])
            parts.append(self._pairs(sl, i, ids))
        return _Pairs.concat(parts)


def _evaluate(problem: Problem, job: JobSpec, w: Prunable, sl: Slices, todo: _Pairs) -> _Part:
    """Memory of every row of the slices in `todo` (once, whatever the SKU), step times of the rows that fit
    on each SKU, and the candidates they give."""
    need = np.zeros(len(sl), dtype=bool)
    need[todo.slice] = True
    assert sl.rows is not None
    grid = sl.rows(need)
    memory = w.memory(grid, np.arange(len(grid)))
    of_slice = grid.cols["slice"]
    skus = problem.skus_for(job)
    index = {s.name: i for i, s in enumerate(problem.skus)}
    tables, planned = [], []
    for i in np.unique(todo.sku).tolist():
        sku = skus[i]
        mine = np.zeros(len(sl), dtype=bool)
        mine[todo.slice[todo.sku == i]] = True
        fit = np.flatnonzero(mine[of_slice] & (memory <= sku.gpu.hbm_bytes))
        if len(fit):
            t, p = sku_candidates(job, sku, index[sku.name], grid, fit, memory[fit])
            tables.append(t)
            planned.append(p)
    return _Part(grid, memory, CandidateTable.concat(tables),
                 np.concatenate(planned) if planned else np.zeros(0, dtype=np.float64))


def _merge(parts: list[_Part]) -> tuple[CandidateTable, np.ndarray, np.ndarray]:
    """The best candidate per (SKU, GPU count) over every part, chosen as `sku_candidates` chooses within one
    grid (fastest planned step, least memory, first in grid order); with each one's part and global order."""
    table = CandidateTable.concat([p.table for p in parts])
    part = np.concatenate([np.full(len(p.table), k) for k, p in enumerate(parts)]).astype(np.int64)
    order = np.concatenate([p.grid.order[p.table.row] for p in parts if p.grid.order is not None])
    planned = np.concatenate([p.planned for p in parts])
    idx = np.lexsort((order, table.memory, planned, table.gpus, table.sku_index))
    key = table.sku_index[idx] * (1 << 32) + table.gpus[idx]
    first = idx[np.r_[True, key[1:] != key[:-1]]] if len(idx) else idx
    return table.take(first), part[first], order[first]


def _job_candidates(job: JobSpec, parts: list[_Part], stats: list[SkuStats]) -> JobCandidates:
    """The merged candidates on a grid of just their rows, in the whole grid's order (the rank's last
    tie-break reads it)."""
    if not parts:
        grid = Grid({"gpus": np.zeros(0, dtype=np.int32)}, ())
        return JobCandidates(job, grid, np.zeros(0, dtype=np.int64), CandidateTable.empty(), stats)
    table, part, _ = _merge(parts)
    picks = [np.flatnonzero(part == k) for k in range(len(parts))]
    grids = [parts[k].grid.subset(table.row[p]) for k, p in enumerate(picks)]
    cols = {c: np.concatenate([g.cols[c] for g in grids]) for c in grids[0].cols}
    memory = np.concatenate([parts[k].memory[table.row[p]] for k, p in enumerate(picks)])
    glob = np.concatenate([g.order for g in grids if g.order is not None])
    sort = np.argsort(glob, kind="stable")
    grid = Grid({c: v[sort] for c, v in cols.items()}, grids[0].fields, order=glob[sort])
    row = np.empty(len(table), dtype=np.int64)
    row[np.concatenate(picks)[sort]] = np.arange(len(table))
    return JobCandidates(job, grid, memory[sort], ranked(replace(table, row=row)), stats)
