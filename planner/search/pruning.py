"""A search that prunes: the candidates an answer needs, from a fraction of the layouts.

The job's layouts come in slices (planner.workloads.grid.Slices) whose rows share what the workload's
floors read; on one SKU a slice's step-time floor, through the planned-time transform (monotone in the
step and in the quantile factor, planner.workloads.expected), bounds the planned time and cost of every
row in it from below, and its memory floor tells the SKUs it cannot fit. Slices are bounded in groups
first (cheap, loose), the slices of groups still needed get their own bounds, and slices are evaluated in
the goal's order while any unevaluated one could still change the answer:

- `pruned_candidates` (one solve): the plan, the k runner-ups and the near-optimal set. A pair whose bound
  on the first objective exceeds the deadline, the budget, or the threshold — the larger of the k-th best
  feasible candidate's value and the near-optimal cap of the best (`near_cap`, as `Selector.ranked`
  computes it) — is beaten on that objective by k feasible candidates and lies above the cap.
- with `front` (`--pareto`), also every pair whose bounds no feasible candidate found so far dominates in
  cost and time: the front walks only non-dominated plans.
- `reach_candidates` (a comparison's "needs N GPUs" beyond an inventory): per SKU the fewest GPUs above
  the inventory that fit at all and that meet each deadline in a range. A pair is skipped when it is within
  the inventory (the comparison's own table answers there), once a candidate on fewer or as many GPUs is at
  least as fast as its bound, or when it is slower than the loosest deadline or larger than the count that
  already meets the tightest.

A (SKU, GPU count) with a skipped slice may keep a candidate slower than its true best; either lies where
nothing the answer reads can pick it (above the threshold, beyond the counts needed). Property
tests hold the answers to those of evaluating every layout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from planner.schema import GpuSku
from planner.search.candidates import (
    CandidateTable,
    JobCandidates,
    OutOfTime,
    SkuStats,
    budget_cents,
    deadline_seconds,
    ranked,
    sku_candidates,
)
from planner.search.cpsat import near_cap
from planner.search.problem import JobSpec, Problem
from planner.workloads import Workload
from planner.workloads.expected import cost_cents, planned_units
from planner.workloads.grid import GpuCounts, Grid, Slices

# The first batch: the pairs first in the goal's order holding this share of the space (at least
# FIRST_ROWS layouts); each further batch before the goal settles is GROWTH times larger.
FIRST_SHARE = 1 / 128
FIRST_ROWS = 4096
GROWTH = 4
KEY_GPUS = 1 << 32  # reach order: GPUs first, then seconds (below a century, 3.2e9 s < 2^32)


class Prunable(Workload, Protocol):
    """A workload whose layouts come in slices with floors (planner.workloads.training)."""

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


# --------------------------------------------------------------------------------------------
# Pairs, candidates found, goals
# --------------------------------------------------------------------------------------------


@dataclass
class _Pairs:
    """(SKU, slice) pairs with lower bounds of their rows' planned job µs (hence seconds and cents)."""

    sku: np.ndarray  # position in the job's SKU list
    slice: np.ndarray
    job_us: np.ndarray
    gpus: np.ndarray
    size: np.ndarray  # layouts in the slice
    done: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # evaluated

    def __post_init__(self) -> None:
        if len(self.done) != len(self.sku):
            self.done = np.zeros(len(self.sku), dtype=bool)

    @property
    def time_s(self) -> np.ndarray:
        return np.ceil(self.job_us / 1e6).astype(np.int64)

    def take(self, mask: np.ndarray) -> _Pairs:
        return _Pairs(self.sku[mask], self.slice[mask], self.job_us[mask], self.gpus[mask], self.size[mask],
                      self.done[mask])

    @classmethod
    def concat(cls, parts: Sequence[_Pairs]) -> _Pairs:
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty, empty, empty)
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("sku", "slice", "job_us", "gpus", "size", "done")))


@dataclass(frozen=True)
class _Found:
    """The best candidate per (SKU, GPU count) evaluated so far, with its position in the job's SKU list."""

    table: CandidateTable
    sku: np.ndarray


class _Goal(Protocol):
    """What an answer needs: the order pairs are evaluated in, which still matter, and when the rest of what
    matters may be evaluated at once."""

    def key(self, p: _Pairs) -> np.ndarray: ...

    def needed(self, p: _Pairs, found: _Found | None) -> np.ndarray: ...

    def settled(self, found: _Found | None) -> bool: ...


@dataclass(frozen=True)
class _Limits:
    """The limits one job's plan meets on its own (its deadline, the budget, the least GPUs); the most GPUs
    and the inventories are in the caps every pair was drawn within."""

    deadline_s: int | None
    budget_cents: int | None
    min_gpus: int | None

    def met(self, time_s: np.ndarray, cost: np.ndarray, gpus: np.ndarray) -> np.ndarray:
        """Plans (or lower bounds of plans) that meet every limit."""
        ok = np.ones(len(gpus), dtype=bool)
        if self.deadline_s is not None:
            ok &= time_s <= self.deadline_s
        if self.budget_cents is not None:
            ok &= cost <= self.budget_cents
        if self.min_gpus is not None:
            ok &= gpus >= self.min_gpus
        return ok


@dataclass(frozen=True)
class _Best:
    """One solve: the `keep` best plans by `objective` and the near-optimal set within `margin`."""

    rates: np.ndarray  # per SKU position: $/GPU-hour
    objective: str  # cost | time
    keep: int
    margin: float
    limits: _Limits

    def _cost(self, p: _Pairs) -> np.ndarray:
        return cost_cents(p.job_us, p.gpus, self.rates[p.sku])  # each pair at its SKU's rate

    def key(self, p: _Pairs) -> np.ndarray:
        return self._cost(p) if self.objective == "cost" else p.time_s

    def threshold(self, found: _Found | None) -> float:
        if found is None:
            return math.inf
        t = found.table
        values = np.sort((t.cost_cents if self.objective == "cost" else t.time_s)[
            self.limits.met(t.time_s, t.cost_cents, t.gpus)])
        if len(values) < self.keep:
            return math.inf
        return max(int(values[self.keep - 1]), near_cap(int(values[0]), self.margin))

    def needed(self, p: _Pairs, found: _Found | None) -> np.ndarray:
        return self.limits.met(p.time_s, self._cost(p), p.gpus) & (self.key(p) <= self.threshold(found))

    def settled(self, found: _Found | None) -> bool:
        return self.threshold(found) < math.inf


@dataclass(frozen=True)
class _Front:
    """One solve and its cost / time front (`Selector.pareto`: cheapest, then cheapest strictly faster, ...):
    what `best` needs, and every pair within the limits whose bounds no feasible candidate found so far
    dominates. A candidate at most as costly and as slow as a pair's bounds, and strictly better in one,
    precedes each of its rows wherever the walk could take them, so none of them is on the front."""

    best: _Best

    def key(self, p: _Pairs) -> np.ndarray:
        return self.best.key(p)

    def needed(self, p: _Pairs, found: _Found | None) -> np.ndarray:
        limits, cost = self.best.limits, self.best._cost(p)
        open_ = limits.met(p.time_s, cost, p.gpus)
        if found is not None:
            t = found.table
            ok = limits.met(t.time_s, t.cost_cents, t.gpus)
            open_ &= ~_dominated(t.cost_cents[ok], t.time_s[ok], cost, p.time_s)
        return self.best.needed(p, found) | open_

    def settled(self, found: _Found | None) -> bool:
        return False  # the front's fast end is found last in cost order: keep evaluating in batches


def _dominated(cost: np.ndarray, time_s: np.ndarray, at_cost: np.ndarray, at_time: np.ndarray) -> np.ndarray:
    """Per point (at_cost, at_time): some (cost, time) is at most it in both and strictly below in one."""
    if len(cost) == 0:
        return np.zeros(len(at_cost), dtype=bool)
    order = np.argsort(cost, kind="stable")
    c, fastest = cost[order], np.minimum.accumulate(time_s[order])

    def best_time(n: np.ndarray) -> np.ndarray:  # the fastest among the n cheapest
        return np.where(n > 0, fastest[np.maximum(n - 1, 0)], np.iinfo(np.int64).max)

    upto = best_time(np.searchsorted(c, at_cost, side="right"))  # cost ≤
    below = best_time(np.searchsorted(c, at_cost, side="left"))  # cost <
    return (upto < at_time) | (below <= at_time)


@dataclass(frozen=True)
class _Reach:
    """A comparison beyond the inventories: per SKU the fewest GPUs above `above` (its inventory) that fit,
    and that meet any deadline in [shortest_s, longest_s] with at least `min_gpus` GPUs."""

    above: np.ndarray  # per SKU position: counts up to this one are the comparison's own table
    shortest_s: float
    longest_s: float
    min_gpus: int | None

    def key(self, p: _Pairs) -> np.ndarray:
        return p.gpus * KEY_GPUS + np.minimum(p.time_s, KEY_GPUS - 1)

    def needed(self, p: _Pairs, found: _Found | None) -> np.ndarray:
        beyond = p.gpus > self.above[p.sku]
        if found is None:  # anything beyond may be the fewest GPUs that fit
            return beyond
        keep = beyond & (p.time_s <= self.longest_s)
        t = found.table
        for i in np.unique(p.sku).tolist():
            at = np.flatnonzero(p.sku == i)
            mine = found.sku == i
            first = t.gpus[mine].min() if mine.any() else np.inf  # the fewest GPUs anything fits on
            counted = mine & (t.gpus >= (self.min_gpus or 0))
            fast = counted & (t.time_s <= self.shortest_s)
            stop = t.gpus[fast].min() if fast.any() else np.inf  # meets every deadline of the range
            order = np.argsort(t.gpus[counted], kind="stable")
            best = np.full(len(at), np.inf)
            if len(order):
                fastest = np.minimum.accumulate(t.time_s[counted][order])
                n = np.searchsorted(t.gpus[counted][order], p.gpus[at], side="right")  # on as many GPUs or fewer
                best = np.where(n > 0, fastest[np.maximum(n - 1, 0)], np.inf)
            faster = best > p.time_s[at]  # no candidate on as many GPUs or fewer is as fast as the bound
            keep[at] = beyond[at] & ((p.gpus[at] < first) | (keep[at] & (p.gpus[at] <= stop) & faster))
        return keep

    def settled(self, found: _Found | None) -> bool:
        return False


# --------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """One evaluated batch: its grid rows, their memory, and its candidates (rows local to the part)."""

    grid: Grid
    memory: np.ndarray
    table: CandidateTable
    planned: np.ndarray
    sku: np.ndarray  # per candidate: its position in the job's SKU list


class _Search:
    """Bounds, refinement and evaluation of one job's (SKU, slice) pairs for a goal."""

    def __init__(self, problem: Problem, job: JobSpec, w: Prunable, sl: Slices) -> None:
        assert sl.groups is not None and sl.group is not None and sl.rows is not None
        self.problem, self.job, self.w, self.sl = problem, job, w, sl
        self.skus = problem.skus_for(job)
        self.memory = w.memory_floor(sl.groups)  # per group
        order = np.argsort(sl.group, kind="stable")
        self._children = (order, np.searchsorted(sl.group[order], np.arange(len(sl.groups) + 1)))
        self.live: list[np.ndarray] = []  # per SKU: its runnable groups
        for sku in self.skus:
            self.live.append(np.flatnonzero(w.slice_runnable(sl.groups, sku.node,
                                                             job.counts(problem.cap(sku, job), [sku]))))

    @property
    def stats(self) -> list[SkuStats]:
        """Per SKU its legal layouts (what fits is known only where evaluated)."""
        groups = self.sl.groups
        assert groups is not None
        return [SkuStats(s.name, s.gpu.hbm_bytes, int(groups.size[live].sum()), None, None, None)
                for s, live in zip(self.skus, self.live, strict=True)]

    def _pairs(self, sl: Slices, i: int, ids: np.ndarray) -> _Pairs:
        """Pairs of SKU `i` with slices `ids` of `sl`, bounded."""
        sku, w = self.skus[i], self.w
        floor = w.step_floor(sl, ids, sku.gpu, sku.node)
        factor = w.floor_factor(sl, ids, sku.gpu)
        gpus = sl.gpus[ids]
        _, job_us, _, _ = planned_units(floor, gpus, sku.rate.usd_per_gpu_hour, w.steps, w.checkpoint_bytes,
                                        w.basis, factor)
        return _Pairs(np.full(len(ids), i), ids, job_us, gpus, sl.size[ids])

    def groups(self) -> _Pairs:
        """Every runnable (SKU, group) pair whose memory floor fits the SKU's GPU."""
        groups = self.sl.groups
        assert groups is not None
        parts = []
        for i, (sku, live) in enumerate(zip(self.skus, self.live, strict=True)):
            live = live[self.memory[live] <= sku.gpu.hbm_bytes]
            if len(live):
                parts.append(self._pairs(groups, i, live))
        return _Pairs.concat(parts)

    def slices_of(self, groups: np.ndarray) -> np.ndarray:
        """The slices of these groups."""
        order, start = self._children
        lo, hi = start[groups], start[groups + 1]
        n = hi - lo
        return order[np.repeat(lo, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)]

    def refine(self, groups: _Pairs) -> _Pairs:
        """The slices of the given (SKU, group) pairs with their own, tighter bounds."""
        return _Pairs.concat([self._pairs(self.sl, i, self.slices_of(groups.slice[groups.sku == i]))
                              for i in np.unique(groups.sku).tolist()])

    def evaluate(self, todo: _Pairs) -> _Part:
        """Memory of every row of the slices in `todo` (once, whatever the SKU), step times of the rows that fit
        on each SKU, and the candidates they give."""
        sl, w = self.sl, self.w
        assert sl.rows is not None
        need = np.zeros(len(sl), dtype=bool)
        need[todo.slice] = True
        grid = sl.rows(need)
        memory = w.memory(grid, np.arange(len(grid)))
        of_slice = grid.cols["slice"]
        index = {s.name: i for i, s in enumerate(self.problem.skus)}
        tables, planned, skus = [], [], []
        for i in np.unique(todo.sku).tolist():
            sku = self.skus[i]
            mine = np.zeros(len(sl), dtype=bool)
            mine[todo.slice[todo.sku == i]] = True
            fit = np.flatnonzero(mine[of_slice] & (memory <= sku.gpu.hbm_bytes))
            if len(fit):
                t, p = sku_candidates(self.job, sku, index[sku.name], grid, fit, memory[fit])
                tables.append(t)
                planned.append(p)
                skus.append(np.full(len(t), i))
        empty = np.zeros(0, dtype=np.int64)
        return _Part(grid, memory, CandidateTable.concat(tables),
                     np.concatenate(planned) if planned else np.zeros(0), np.concatenate(skus) if skus else empty)

    def found(self, parts: list[_Part]) -> _Found:
        table, pick, _ = _merge(parts)
        return _Found(table, np.concatenate([p.sku for p in parts])[pick])

    def run(self, goal: _Goal, deadline_at: float | None = None) -> tuple[list[_Part], int]:
        """Evaluate what the goal needs, in its order: (the evaluated parts, layouts evaluated). OutOfTime once
        `deadline_at` (time.monotonic()) has passed between two batches."""
        coarse = self.groups()
        coarse = coarse.take(goal.needed(coarse, None))
        key_c = goal.key(coarse)
        order = np.lexsort((coarse.slice, coarse.sku, key_c))
        refined = np.zeros(len(coarse.sku), dtype=bool)
        fine = _Pairs.concat([])
        parts: list[_Part] = []
        found: _Found | None = None
        evaluated = 0
        batch = max(FIRST_ROWS, int(sum(x.legal for x in self.stats) * FIRST_SHARE))
        while True:
            if deadline_at is not None and time.monotonic() > deadline_at:
                raise OutOfTime(self.job.name, 0, 1)
            wanted = ~refined & goal.needed(coarse, found)
            if goal.settled(found):  # everything that still matters, at once
                todo, frontier = wanted, math.inf
            else:  # the next pairs in order; no group after them can hold a slice before the frontier
                nxt = order[wanted[order]]
                upto = int(np.searchsorted(np.cumsum(coarse.size[nxt]), batch)) + 1
                todo = np.zeros_like(refined)
                todo[nxt[:upto]] = True
                frontier = float(key_c[nxt[upto]]) if upto < len(nxt) else math.inf
                batch *= GROWTH
            if todo.any():
                fresh = self.refine(coarse.take(todo))
                fine = _Pairs.concat([fine, fresh.take(goal.needed(fresh, found))])
                refined |= todo
            due = ~fine.done & goal.needed(fine, found) & (goal.key(fine) <= frontier)
            if due.any():
                parts.append(self.evaluate(fine.take(due)))
                evaluated += int(fine.size[due].sum())
                fine.done[due] = True
                found = self.found(parts)
            elif not (~refined & goal.needed(coarse, found)).any():
                return parts, evaluated


def _search(problem: Problem, job: JobSpec) -> _Search | None:
    w = job.workload
    if not hasattr(w, "slices"):
        return None
    pw: Prunable = w  # type: ignore[assignment]
    skus = problem.skus_for(job)
    if not skus:
        return None
    sl = pw.slices(sorted({s.node for s in skus}), job.counts(max(problem.cap(s, job) for s in skus), skus))
    if sl is None or sl.groups is None or sl.group is None:
        return None
    return _Search(problem, job, pw, sl)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def pruned_candidates(problem: Problem, job: JobSpec, objective: str, keep: int, margin: float, front: bool = False,
                      deadline_at: float | None = None) -> tuple[JobCandidates, Pruning] | None:
    """The job's candidate table as far as the `keep` best plans (by `objective`: cost | time), the
    near-optimal set within `margin` and, with `front`, the cost / time Pareto front need it; None where the
    workload offers no floors. OutOfTime once `deadline_at` (time.monotonic()) has passed."""
    s = _search(problem, job)
    if s is None:
        return None
    limits = _Limits(deadline_seconds(job.deadline_days), budget_cents(problem.budget_usd), problem.min_gpus)
    rates = np.asarray([sku.rate.usd_per_gpu_hour for sku in s.skus])
    best = _Best(rates, objective, keep, margin, limits)
    parts, evaluated = s.run(_Front(best) if front else best, deadline_at)
    stats = s.stats
    return _job_candidates(job, parts, stats), Pruning(sum(x.legal for x in stats), evaluated)


def reach_candidates(problem: Problem, job: JobSpec, above: dict[str, int], shortest_s: float,
                     longest_s: float) -> CandidateTable | None:
    """The job's candidates on more GPUs than `above[sku]` as far as "the fewest that fit" and "the fewest
    that meet a deadline in [shortest_s, longest_s]" need them, per SKU (`problem` lifts the inventories).
    Those are the answers a comparison looks for beyond an inventory: within it, its own table has them."""
    s = _search(problem, job)
    if s is None:
        return None
    caps = np.asarray([above.get(sku.name, 0) for sku in s.skus], dtype=np.int64)
    parts, _ = s.run(_Reach(caps, shortest_s, longest_s, problem.min_gpus))
    return _job_candidates(job, parts, s.stats).table


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _merge(parts: list[_Part]) -> tuple[CandidateTable, np.ndarray, np.ndarray]:
    """The best candidate per (SKU, GPU count) over every part, chosen as `sku_candidates` chooses within one
    grid (fastest planned step, least memory, first in grid order); with each one's index into the parts'
    concatenated candidates and its global order."""
    table = CandidateTable.concat([p.table for p in parts])
    order = np.concatenate([p.grid.order[p.table.row] for p in parts if p.grid.order is not None]) \
        if parts else np.zeros(0, dtype=np.int64)
    planned = np.concatenate([p.planned for p in parts]) if parts else np.zeros(0)
    idx = np.lexsort((order, table.memory, planned, table.gpus, table.sku_index))
    key = table.sku_index[idx] * (1 << 32) + table.gpus[idx]
    first = idx[np.r_[True, key[1:] != key[:-1]]] if len(idx) else idx
    return table.take(first), first, order[first]


def _job_candidates(job: JobSpec, parts: list[_Part], stats: list[SkuStats],
                    least: dict[int, tuple[int, int]] | None = None) -> JobCandidates:
    """The merged candidates on a grid of just their rows (and, for SKUs in `least`, the (part, row) of
    their least-memory layout, named in their stats), in the whole grid's order: the rank's last tie-break
    reads it."""
    least = least or {}
    table, pick, _ = _merge(parts)
    part = np.concatenate([np.full(len(p.table), k) for k, p in enumerate(parts)])[pick] if parts else pick
    want_part = np.concatenate([part, np.asarray([k for k, _ in least.values()], dtype=np.int64)])
    want_row = np.concatenate([table.row, np.asarray([r for _, r in least.values()], dtype=np.int64)])
    if len(want_row) == 0:
        grid = Grid({"gpus": np.zeros(0, dtype=np.int32)}, ())
        return JobCandidates(job, grid, np.zeros(0, dtype=np.int64), CandidateTable.empty(), stats)
    picks = [np.flatnonzero(want_part == k) for k in range(len(parts))]
    grids = [parts[k].grid.subset(want_row[p]) for k, p in enumerate(picks)]
    cols = {c: np.concatenate([g.cols[c] for g in grids]) for c in grids[0].cols}
    memory = np.concatenate([parts[k].memory[want_row[p]] for k, p in enumerate(picks)])
    glob = np.concatenate([g.order for g in grids if g.order is not None])
    sort = np.argsort(glob, kind="stable")
    grid = Grid({c: v[sort] for c, v in cols.items()}, grids[0].fields, order=glob[sort])
    position = np.empty(len(want_row), dtype=np.int64)
    position[np.concatenate(picks)[sort]] = np.arange(len(want_row))
    n = len(table)
    stats = list(stats)
    for j, i in enumerate(least):
        at = int(position[n + j])
        stats[i] = replace(stats[i], min_memory=int(memory[sort][at]), min_memory_row=at)
    return JobCandidates(job, grid, memory[sort], ranked(replace(table, row=position[:n])), stats)
