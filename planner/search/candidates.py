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
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from planner.model.perf import SECONDS_PER_DAY
from planner.search.problem import JobSpec, Problem
from planner.workloads.grid import Grid

# --------------------------------------------------------------------------------------------
# Integer units (shared with the exhaustive enumerator: one rounding rule)
# --------------------------------------------------------------------------------------------


def microseconds(seconds: Any) -> Any:
    """Step time in whole µs, rounded up."""
    return np.ceil(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def integer_units(step_seconds: Any, gpus: Any, usd_per_gpu_hour: float, steps: float) -> tuple[Any, Any, Any]:
    """(step µs, job seconds, cost cents), each rounded up, for a job of `steps` steps. Works on scalars
    and numpy arrays."""
    step_us = microseconds(step_seconds)
    job_us = step_us * steps
    time_s = np.ceil(job_us / 1e6).astype(np.int64)
    cost_cents = np.ceil(job_us * gpus * (usd_per_gpu_hour / 3.6e7)).astype(np.int64)  # $/h → ¢/µs
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
    step_us: np.ndarray  # one step, µs, rounded up
    time_s: np.ndarray  # the whole job, s, rounded up
    cost_cents: np.ndarray  # the whole job, ¢, rounded up
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
    fits: int  # ... that also fit in memory
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


def job_candidates(problem: Problem, job: JobSpec) -> JobCandidates:
    w = job.workload
    skus = problem.skus_for(job)
    caps = [problem.cap(s, job) for s in skus]
    grid = w.grid(sorted({s.node for s in skus}), job.counts(max(caps)))
    mem = w.memory(grid, np.arange(len(grid)))
    parts, stats = [], []
    sku_index = {s.name: i for i, s in enumerate(problem.skus)}
    runnable: dict[tuple[int, int], np.ndarray] = {}  # (node, cap) → mask
    for sku, cap in zip(skus, caps, strict=True):
        if (sku.node, cap) not in runnable:
            runnable[(sku.node, cap)] = w.runnable(grid, sku.node, job.counts(cap))
        legal = runnable[(sku.node, cap)]
        n_legal = int(np.count_nonzero(legal))
        low = int(np.argmin(np.where(legal, mem, np.iinfo(np.int64).max))) if n_legal else None
        fit_rows = np.flatnonzero(legal & (mem <= sku.gpu.hbm_bytes))
        stats.append(SkuStats(sku.name, sku.gpu.hbm_bytes, n_legal, len(fit_rows),
                              None if low is None else int(mem[low]), low))
        if len(fit_rows) == 0:
            continue
        step = w.step_seconds(grid, fit_rows, sku.gpu, sku.node)
        step_us = microseconds(step)
        gpus = grid.gpus[fit_rows]
        # the fastest layout per GPU count; among equally fast ones the least memory, then grid order
        first = np.flatnonzero(per_group_min(gpus, step_us))
        first = first[per_group_min(gpus[first], mem[fit_rows[first]])]
        _, once = np.unique(gpus[first], return_index=True)
        first = first[once]
        best = fit_rows[first]
        step_us, time_s, cost_cents = integer_units(step[first], gpus[first], sku.rate.usd_per_gpu_hour, w.steps)
        n = len(best)
        parts.append(CandidateTable(
            sku=np.full(n, sku.name, dtype=object), sku_index=np.full(n, sku_index[sku.name], dtype=np.int64),
            gpus=gpus[first].astype(np.int64), row=best.astype(np.int64), memory=mem[best].astype(np.int64),
            step_us=step_us, time_s=time_s, cost_cents=cost_cents, rank=np.zeros(n, dtype=np.int64)))
    table = CandidateTable.concat(parts)
    # tie-break: fewer GPUs, more memory headroom, catalog order, grid order
    order = np.lexsort((table.row, table.sku_index, table.memory, table.gpus))
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(table))
    return JobCandidates(job, grid, mem, replace(table, rank=rank), stats)


def all_candidates(problem: Problem) -> list[JobCandidates]:
    return [job_candidates(problem, j) for j in problem.jobs]
