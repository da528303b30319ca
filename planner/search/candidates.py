"""Candidates: a job's grid evaluated in integer units, and the one layout worth keeping per (SKU, GPU count).

The workload gives the grid, its memory (once per layout: it does not depend on the SKU) and its step
times (per SKU, only on the rows that fit). Every quantity the solver compares is an integer rounded
against the plan — bytes up, microseconds up, seconds up, cents up — so a plan the solver accepts is
never better than the model says. For a fixed (SKU, GPU count) cost = rate · GPUs · time, so both
objectives and every constraint prefer the fastest layout that fits: keeping that one row per (SKU, GPU
count) loses no optimum, for one job or several sharing an inventory (memory does not couple jobs).

`CandidateTable` is the contract every consumer reads: the CP-SAT selector, the comparison sweep, and
a scheduler over candidate tables.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from planner.model.perf import SECONDS_PER_DAY
from planner.search.problem import JobSpec, Problem, SkuOption
from planner.workloads.expected import IDEAL, Basis, planned_units
from planner.workloads.grid import Grid

# --------------------------------------------------------------------------------------------
# Integer units (shared with the exhaustive enumerator: one rounding rule)
# --------------------------------------------------------------------------------------------


def microseconds(seconds: Any) -> Any:
    """Step time in whole µs, rounded up."""
    return np.ceil(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def integer_units(step_seconds: Any, gpus: Any, usd_per_gpu_hour: float, steps: float, checkpoint_bytes: Any = 1,
                  basis: Basis = IDEAL, factor: Any = 1.0) -> tuple[Any, Any, Any]:
    """(ideal step µs, planned job seconds, planned cost cents), each rounded up, for a job of `steps` steps:
    the one transform of planner.workloads.expected (expected time with failures at the basis' step-error
    quantile `factor`; the ideal time at the defaults). Works on scalars and numpy arrays."""
    step_us, _, time_s, cost_cents = planned_units(step_seconds, gpus, usd_per_gpu_hour, steps, checkpoint_bytes,
                                                   basis, factor)
    return step_us, time_s, cost_cents


def deadline_seconds(days: float | None) -> int | None:
    return None if days is None else math.floor(days * SECONDS_PER_DAY)


def budget_cents(usd: float | None) -> int | None:
    return None if usd is None else math.floor(usd * 100)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateTable:
    """One job's candidates, one per (SKU, GPU count): the fastest layout that fits, in integer units.
    Every column is a numpy array of the same length; `rank` is the tie-break the solver ends every
    objective with (fewer GPUs, less memory, catalog order, grid order), a permutation of 0..n-1."""

    sku: np.ndarray  # catalog name (object)
    sku_index: np.ndarray  # position of the SKU in the problem (int64, as every column below)
    gpus: np.ndarray
    row: np.ndarray  # the layout's row in the job's grid
    memory: np.ndarray  # bytes per GPU
    step_us: np.ndarray  # one ideal step, µs, rounded up
    time_s: np.ndarray  # the whole job as planned (expected with failures, at the basis' quantile), s, rounded up
    cost_cents: np.ndarray  # the whole job as planned, ¢, rounded up
    rank: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.sku)
        for f in fields(self):
            col = getattr(self, f.name)
            if f.name != "sku" and col.dtype != np.int64:
                raise TypeError(f"CandidateTable.{f.name}: int64 column expected, got {col.dtype}")
            if len(col) != n:
                raise ValueError(f"CandidateTable.{f.name}: {len(col)} rows, sku has {n}")

    def __len__(self) -> int:
        return len(self.sku)

    @classmethod
    def empty(cls) -> CandidateTable:
        return cls(np.empty(0, dtype=object), *(np.empty(0, dtype=np.int64) for _ in range(8)))

    @classmethod
    def concat(cls, parts: list[CandidateTable]) -> CandidateTable:
        if not parts:
            return cls.empty()
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def take(self, index: np.ndarray) -> CandidateTable:
        """The rows at `index` (indices or a boolean mask), in that order."""
        return CandidateTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def with_costs(self, cost_cents: np.ndarray) -> CandidateTable:
        return replace(self, cost_cents=np.asarray(cost_cents, dtype=np.int64))

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class SkuStats:
    """What the grid says about one SKU for one job, before any deadline or budget: for explanations."""

    sku: str
    capacity: int
    legal: int  # layouts runnable on it within the caps
    fits: int | None  # ... that also fit in memory (None: not counted, a pruned search evaluates a part)
    min_memory: int | None  # smallest per-GPU bytes of any legal layout
    min_memory_row: int | None  # grid row of that layout


@dataclass
class JobCandidates:
    job: JobSpec
    grid: Grid
    memory: np.ndarray  # bytes per grid row
    table: CandidateTable
    stats: list[SkuStats]

    @property
    def space_size(self) -> int:
        return sum(s.legal for s in self.stats)

    def layout(self, k: int) -> Any:
        """The layout of row k of the table."""
        return self.job.workload.layout(self.grid, int(self.table.row[k]))


def per_group_min(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Mask of the rows whose value is the minimum of their group (small non-negative group ids)."""
    low = np.full(int(group.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(low, group, value)
    return value == low[group]


def per_group_min_float(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """per_group_min for float values."""
    low = np.full(int(group.max()) + 1, np.inf)
    np.minimum.at(low, group, value)
    return value == low[group]


def sku_candidates(job: JobSpec, sku: SkuOption, index: int, grid: Grid, fit_rows: np.ndarray,
                   memory: np.ndarray) -> tuple[CandidateTable, np.ndarray]:
    """One SKU's candidates from the rows of `grid` that fit on it (`memory`: bytes per fitting row): the
    fastest layout per GPU count, among equally fast ones the least memory, then the first in grid order;
    with each one's planned step (µs × the quantile factor: what orders one GPU count's layouts). `rank` is
    left at 0 (`ranked` sets it over the whole table)."""
    w = job.workload
    step = w.step_seconds(grid, fit_rows, sku.gpu, sku.node)
    factor = np.broadcast_to(np.asarray(w.step_factor(grid, fit_rows, sku.gpu), dtype=np.float64), step.shape)
    # the planned step: the failure stretch is the same for every layout of one GPU count, so the
    # planned time and cost order a group's layouts as step µs × the quantile factor does
    planned = microseconds(step).astype(np.float64) * factor
    gpus = grid.gpus[fit_rows]
    first = np.flatnonzero(per_group_min_float(gpus, planned))
    first = first[per_group_min(gpus[first], memory[first])]
    _, once = np.unique(gpus[first], return_index=True)
    first = first[once]
    step_us, time_s, cost_cents = integer_units(step[first], gpus[first], sku.rate.usd_per_gpu_hour, w.steps,
                                                w.checkpoint_bytes, w.basis, factor[first])
    n = len(first)
    return CandidateTable(
        sku=np.full(n, sku.name, dtype=object), sku_index=np.full(n, index, dtype=np.int64),
        gpus=gpus[first].astype(np.int64), row=fit_rows[first].astype(np.int64), memory=memory[first].astype(np.int64),
        step_us=step_us, time_s=time_s, cost_cents=cost_cents, rank=np.zeros(n, dtype=np.int64)), planned[first]


def ranked(table: CandidateTable) -> CandidateTable:
    """The table with its tie-break: fewer GPUs, more memory headroom, catalog order, grid order."""
    order = np.lexsort((table.row, table.sku_index, table.memory, table.gpus))
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(table))
    return replace(table, rank=rank)


class OutOfTime(Exception):
    """The solve's time limit ran out while the layout grids were still being evaluated."""

    def __init__(self, job: str, done: int, jobs: int) -> None:
        where = f"job {job} ({done} of {jobs} jobs done)" if jobs > 1 else f"job {job}"
        narrow = "hardware.skus or the jobs" if jobs > 1 else "hardware.skus"
        super().__init__(f"the time limit ran out while evaluating the layouts of {where}: allow more time "
                         f"(--time-limit), or narrow {narrow}")


def job_candidates(problem: Problem, job: JobSpec, deadline_at: float | None = None) -> JobCandidates:
    """Every fitting (SKU, layout) of one job. `deadline_at` (time.monotonic()): OutOfTime when it passes between
    two SKUs."""
    w = job.workload
    skus = problem.skus_for(job)
    caps = [problem.cap(s, job) for s in skus]
    grid = w.grid(sorted({s.node for s in skus}), job.counts(max(caps), skus))
    mem = w.memory(grid, np.arange(len(grid)))
    parts, stats = [], []
    sku_index = {s.name: i for i, s in enumerate(problem.skus)}
    runnable: dict[tuple[int, int, int], np.ndarray] = {}  # (node, host, cap) → mask
    for sku, cap in zip(skus, caps, strict=True):
        if deadline_at is not None and time.monotonic() > deadline_at:
            raise OutOfTime(job.name, problem.jobs.index(job), len(problem.jobs))
        if (sku.node, sku.host, cap) not in runnable:
            runnable[(sku.node, sku.host, cap)] = w.runnable(grid, sku.node, job.counts(cap, [sku]))
        legal = runnable[(sku.node, sku.host, cap)]
        n_legal = int(np.count_nonzero(legal))
        low = int(np.argmin(np.where(legal, mem, np.iinfo(np.int64).max))) if n_legal else None
        fit_rows = np.flatnonzero(legal & (mem <= sku.gpu.hbm_bytes))
        stats.append(SkuStats(sku.name, sku.gpu.hbm_bytes, n_legal, len(fit_rows),
                              None if low is None else int(mem[low]), low))
        if len(fit_rows):
            parts.append(sku_candidates(job, sku, sku_index[sku.name], grid, fit_rows, mem[fit_rows])[0])
    return JobCandidates(job, grid, mem, ranked(CandidateTable.concat(parts)), stats)


def all_candidates(problem: Problem, deadline_at: float | None = None) -> list[JobCandidates]:
    """Every job's candidates; OutOfTime once `deadline_at` (time.monotonic()) has passed."""
    return [job_candidates(problem, j, deadline_at) for j in problem.jobs]
