"""What every workload's search space is made of: integer columns crossed axis by axis, and the GPU
counts a cloud or a cluster sells.

A grid is a table of small non-negative integers, one row per layout and one column per field plus
`gpus`. Workloads build theirs by crossing small axes and filtering after each cross, so a grid never
exists in its unfiltered form; the search reads only `len`, `gpus` and `subset`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Columns = dict[str, np.ndarray]
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
    if len(rows) == 0:  # a grid the fixed choices emptied: nothing to evaluate (the models assume rows)
        return np.zeros(0, dtype=dtype)
    parts = [rows[lo:lo + CHUNK] for lo in range(0, len(rows), CHUNK)]
    if len(parts) <= 1:
        return np.asarray(fn(rows), dtype=dtype)
    return np.concatenate([np.asarray(r, dtype=dtype) for r in _pool().map(fn, parts)])


def rows(t: Columns) -> int:
    return len(next(iter(t.values())))


def cross(a: Columns, b: Columns) -> Columns:
    """Every row of `a` with every row of `b`."""
    na, nb = rows(a), rows(b)
    ia, ib = np.repeat(np.arange(na), nb), np.tile(np.arange(nb), na)
    return {**{k: v[ia] for k, v in a.items()}, **{k: v[ib] for k, v in b.items()}}


def where(t: Columns, mask: np.ndarray) -> Columns:
    return {k: v[mask] for k, v in t.items()}


def axis(name: str, values: Iterable[int]) -> Columns:
    return {name: np.asarray(list(values), dtype=np.int64)}


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@dataclass(frozen=True)
class GpuCounts:
    """The GPU counts one job may run on: whole nodes, or fewer on one node (a divisor of it), or whole
    hosts where a node spans several (`hosts`: GPUs per host, GpuSku.host_gpus), at most `cap`, at least
    `least`, or exactly `exact` when the scenario fixes the count."""

    cap: int
    least: int = 1
    exact: int | None = None
    hosts: tuple[int, ...] = ()

    def allowed(self, gpus: Any, node: int) -> Any:
        """Works on ints and numpy arrays."""
        sold = (gpus % node == 0) | (node % gpus == 0)
        for host in self.hosts:
            sold = sold | (gpus % host == 0)
        ok = (gpus <= self.cap) & sold & (gpus >= self.least)
        return ok & (gpus == self.exact) if self.exact is not None else ok

    def sold(self, nodes: Iterable[int]) -> np.ndarray:
        """`allowed` on any of these node sizes, as a lookup table over 0..cap+1 (index with
        min(gpus, cap + 1))."""
        n = np.arange(1, self.cap + 2)
        ok = np.zeros(self.cap + 2, dtype=bool)
        for node in nodes:
            ok[1:] |= self.allowed(n, node)
        return ok


@dataclass
class Grid:
    """Every legal layout of one job, one row per layout: int columns, `gpus` among them."""

    cols: Columns
    fields: tuple[str, ...]  # the layout columns (the others are derived, like gpus)
    memo: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)  # masks a workload derives once
    order: np.ndarray | None = field(default=None, repr=False)  # a part of a grid: each row's place in the whole

    def __len__(self) -> int:
        return rows(self.cols)

    @property
    def gpus(self) -> np.ndarray:
        return self.cols["gpus"]

    def codes(self, row: int) -> dict[str, int]:
        """The layout fields of one row as plain ints."""
        return {f: int(self.cols[f][row]) for f in self.fields}

    def subset(self, keep: np.ndarray) -> Grid:
        """The rows `keep` (sorted indices), renumbered from 0 in the same order."""
        return Grid({k: v[keep] for k, v in self.cols.items()}, self.fields,
                    order=None if self.order is None else self.order[keep])


@dataclass(frozen=True)
class Slices:
    """A workload's layouts in slices: sets of rows on one GPU count that share what the workload's
    step-time floor reads, so one floor covers every row of a slice. `rows` materialises the grid rows of
    the slices a mask selects: a part of the whole grid, with `Grid.order` set and each row's slice in
    the column `slice`. `groups` are coarser slices, each the union of the slices `group` maps to it: a
    group's floor is cheaper to find for all and looser, a slice's tighter for the few groups that pass."""

    cols: Columns  # per slice: what the floor reads
    gpus: np.ndarray  # per slice
    size: np.ndarray  # rows per slice
    rows: Callable[[np.ndarray], Grid] | None
    groups: Slices | None = None
    group: np.ndarray | None = None  # per slice: its group

    def __len__(self) -> int:
        return len(self.gpus)
