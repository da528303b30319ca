"""Workloads: what is planned. Each gives the search its space and its models, so the candidate tables,
the CP-SAT selector, the comparison sweep and any scheduler over candidate tables are shared.

Training (`planner.workloads.training`) is the first. A workload answers five questions about one job:
its layouts (a `Grid` of integer columns, on nodes of given sizes and GPU counts), which of them run on
one SKU, their per-GPU memory and their seconds per step (vectorised over grid rows), and how many steps
the job takes. It also decodes a grid row into its layout and evaluates one layout the scalar way, the
independent re-check every chosen plan passes. `planner.search.candidates` turns those answers into a
typed candidate table (SKU, GPUs, layout row, memory, step, job time, cost) and never looks inside a
layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from planner.pricing import HourlyRate
    from planner.schema import GpuSku
    from planner.workloads.grid import GpuCounts, Grid

__all__ = ["Workload"]


class Workload(Protocol):
    """The interface `planner.search` plans any job through."""

    @property
    def steps(self) -> float:
        """Steps in the whole job: its time is steps × seconds per step."""
        ...

    def grid(self, nodes: Sequence[int], counts: GpuCounts) -> Grid:
        """Every legal layout on nodes of these sizes, on the GPU counts `counts` allows."""
        ...

    def runnable(self, grid: Grid, node: int, counts: GpuCounts) -> np.ndarray:
        """Mask of the grid rows that run on one SKU with nodes of `node` GPUs."""
        ...

    def memory(self, grid: Grid, rows: np.ndarray) -> np.ndarray:
        """Bytes per GPU of the selected rows (int64), the same on every SKU."""
        ...

    def step_seconds(self, grid: Grid, rows: np.ndarray, gpu: GpuSku, node: int) -> np.ndarray:
        """Seconds per step of the selected rows on `gpu` (float64)."""
        ...

    def layout(self, grid: Grid, row: int) -> Any:
        """The workload's own layout object of one grid row."""
        ...

    def evaluate(self, layout: Any, gpu: GpuSku, node: int, rate: HourlyRate | None) -> Any:
        """The scalar evaluation of one layout: `problems`, `fits`, `gpus`, `memory.total`, `capacity_bytes`,
        `time.days` and `cost_usd`, the quantities `planner.search.plans.check_solution` re-checks."""
        ...

    def fixed_field_problems(self, node: int) -> list[str]:
        """Why no layout is legal when what the scenario fixes already rules every one out."""
        ...
