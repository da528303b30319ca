"""Candidates: the grid evaluated in integer units, and the one layout worth keeping per (SKU, GPU count).

Memory is evaluated once per layout (it does not depend on the SKU), step time per SKU only on the
rows that fit. Every quantity the solver compares is an integer rounded against the plan — bytes
up, microseconds up, seconds up, cents up — so a plan the solver accepts is never better than the
model says. For a fixed (SKU, GPU count) cost = rate · GPUs · time, so both objectives and every
constraint prefer the fastest layout that fits: keeping that one row per (SKU, GPU count) loses no
optimum, for one job or several sharing an inventory (memory does not couple jobs).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from planner.model import memory as memory_model
from planner.model import perf as perf_model
from planner.model.perf import SECONDS_PER_DAY
from planner.search.space import (
    LAYOUT_FIELDS,
    JobSpec,
    LayoutGrid,
    Problem,
    SkuOption,
    build_grid,
    job_skus,
)
from planner.workloads.training.evaluation import merged_efficiency

# Rows per vectorised model call: 64k float64 columns (512 KiB) stay in cache through the model's
# dozens of temporaries, which measured 1.5× faster than 256k-row calls. Chunks run on a thread pool:
# numpy releases the GIL inside each array operation.
CHUNK = 1 << 16
THREADS = max(1, min(8, os.cpu_count() or 1))


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(THREADS, thread_name_prefix="planner-model")


def chunked(fn: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, dtype: type) -> np.ndarray:
    """fn over consecutive slices of `rows`, in parallel, concatenated in order (deterministic)."""
    parts = [rows[lo:lo + CHUNK] for lo in range(0, len(rows), CHUNK)]
    if len(parts) <= 1:
        return np.asarray(fn(rows), dtype=dtype)
    return np.concatenate([np.asarray(r, dtype=dtype) for r in _pool().map(fn, parts)])


# --------------------------------------------------------------------------------------------
# Integer units (shared with the exhaustive enumerator: one rounding rule)
# --------------------------------------------------------------------------------------------


def microseconds(seconds: Any) -> Any:
    """Step time in whole µs, rounded up."""
    return np.ceil(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def integer_units(step_seconds: Any, gpus: Any, usd_per_gpu_hour: float, job: JobSpec) -> tuple[Any, Any, Any]:
    """(step µs, job seconds, cost cents), each rounded up. Works on scalars and numpy arrays.

    Steps are tokens / (global batch · sequence), as the time model counts them (fractional)."""
    step_us = microseconds(step_seconds)
    job_us = step_us * (job.tokens / (job.global_batch * job.seq))
    time_s = np.ceil(job_us / 1e6).astype(np.int64)
    cost_cents = np.ceil(job_us * gpus * (usd_per_gpu_hour / 3.6e7)).astype(np.int64)  # $/h → ¢/µs
    return step_us, time_s, cost_cents


def deadline_seconds(days: float | None) -> int | None:
    return None if days is None else math.floor(days * SECONDS_PER_DAY)


def budget_cents(usd: float | None) -> int | None:
    return None if usd is None else math.floor(usd * 100)


# --------------------------------------------------------------------------------------------
# The two model calls, over arrays of grid rows
# --------------------------------------------------------------------------------------------


def memory_bytes(problem: Problem, grid: LayoutGrid, rows: np.ndarray) -> np.ndarray:
    """Per-GPU total bytes (the binding pipeline stage) of the selected grid rows."""
    job = grid.job
    recipe = memory_model.Recipe.of(job.layout())

    def part(sel: np.ndarray) -> np.ndarray:
        return memory_model.training_memory_table(job.model, job.seq, grid.arrays(sel), recipe,
                                                  problem.implementation, problem.overheads)["total"]

    return chunked(part, rows, np.int64)


def step_seconds(problem: Problem, sku: SkuOption, grid: LayoutGrid, rows: np.ndarray) -> np.ndarray:
    """Seconds per optimizer step of the selected rows on `sku`, as `evaluate` computes them."""
    job, eff = grid.job, problem.efficiency
    if len(rows) == 0:
        return np.empty(0, dtype=np.float64)
    if eff.mfu is not None or eff.hfu is not None:
        # fixed utilisation: work / (GPUs · peak · utilisation) reads only the GPU count and the
        # recompute mode (FLOPs), so one scalar call per distinct pair covers every row
        key = grid.cols["gpus"][rows] * 4 + grid.cols["recompute"][rows]
        first = np.full(int(key.max()) + 1, -1, dtype=np.int64)
        first[key[::-1]] = np.arange(len(key) - 1, -1, -1)  # index of each key's first row
        vals = np.zeros(len(first))
        for k in np.flatnonzero(first >= 0).tolist():
            vals[k] = perf_model.fixed_utilisation_time(job.model, grid.layout(int(rows[first[k]])), sku.gpu, job.seq,
                                                        job.tokens, mfu=eff.mfu, hfu=eff.hfu).step_seconds
        return vals[key]
    efficiency = merged_efficiency(sku.gpu, eff)
    recipe = memory_model.Recipe.of(job.layout())

    def part(sel: np.ndarray) -> np.ndarray:
        return perf_model.step_time_table(job.model, sku.gpu, job.seq, grid.arrays(sel), impl=problem.implementation,
                                          efficiency=efficiency, gpus_per_node=sku.node, recipe=recipe)["step_seconds"]

    return chunked(part, rows, np.float64)


# --------------------------------------------------------------------------------------------
# Candidate tables
# --------------------------------------------------------------------------------------------


def per_group_min(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Mask of the rows whose value is the minimum of their group (small non-negative group ids)."""
    low = np.full(int(group.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(low, group, value)
    return value == low[group]


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
    grid: LayoutGrid
    memory: np.ndarray  # bytes per grid row
    table: pd.DataFrame  # one row per (SKU, GPU count): the fastest layout that fits
    stats: list[SkuStats]

    @property
    def space_size(self) -> int:
        return sum(s.legal for s in self.stats)


CANDIDATE_COLUMNS = ("sku", "sku_index", "gpus", "row", "memory", "step_us", "time_s", "cost_cents")


def job_candidates(problem: Problem, job: JobSpec) -> JobCandidates:
    skus = job_skus(problem, job)
    caps = [problem.cap(s, job) for s in skus]
    grid = build_grid(job, skus, max(caps))
    mem = memory_bytes(problem, grid, np.arange(len(grid)))
    frames, stats = [], []
    sku_index = {s.name: i for i, s in enumerate(problem.skus)}
    allowed: dict[tuple[int, int], np.ndarray] = {}  # (node, cap) → runnable mask
    for sku, cap in zip(skus, caps, strict=True):
        if (sku.node, cap) not in allowed:
            allowed[(sku.node, cap)] = grid.allowed_on(sku, cap)
        legal = allowed[(sku.node, cap)]
        n_legal = int(np.count_nonzero(legal))
        low = int(np.argmin(np.where(legal, mem, np.iinfo(np.int64).max))) if n_legal else None
        fit_rows = np.flatnonzero(legal & (mem <= sku.gpu.hbm_bytes))
        stats.append(SkuStats(sku.name, sku.gpu.hbm_bytes, n_legal, len(fit_rows),
                              None if low is None else int(mem[low]), low))
        if len(fit_rows) == 0:
            continue
        step = step_seconds(problem, sku, grid, fit_rows)
        step_us = microseconds(step)
        gpus = grid.gpus[fit_rows]
        # the fastest layout per GPU count; among equally fast ones the least memory, then grid order
        first = np.flatnonzero(per_group_min(gpus, step_us))
        first = first[per_group_min(gpus[first], mem[fit_rows[first]])]
        _, once = np.unique(gpus[first], return_index=True)
        first = first[once]
        best = fit_rows[first]
        step_us, time_s, cost_cents = integer_units(step[first], gpus[first], sku.rate.usd_per_gpu_hour, job)
        frames.append(pd.DataFrame({
            "sku": sku.name,
            "sku_index": sku_index[sku.name],
            "gpus": gpus[first],
            "row": best,
            "memory": mem[best],
            "step_us": step_us,
            "time_s": time_s,
            "cost_cents": cost_cents,
        }))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in CANDIDATE_COLUMNS})
    table = table.astype({c: "int64" for c in CANDIDATE_COLUMNS if c != "sku"})
    for f in LAYOUT_FIELDS:
        table[f] = grid.cols[f][table["row"].to_numpy()]
    return JobCandidates(job, grid, mem, table.reset_index(drop=True), stats)


def all_candidates(problem: Problem) -> list[JobCandidates]:
    return [job_candidates(problem, j) for j in problem.jobs]
