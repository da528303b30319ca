"""Planned time and cost: the one transform from a layout's ideal step seconds to the days and dollars a plan
is held to (deadline, budget, objective), for the candidate tables, the exhaustive reference, the scalar
re-check, the comparison and the search's lower bounds alike.

    planned seconds = step seconds × q × steps × k(N)
    planned cost    = planned seconds × N × rate / 3600

- q, the planning quantile factor, is 1 + the `confidence` quantile of the time model's relative step error
  in the layout's regime (planner.model.uncertainty.error_quantile); 1 at the point estimate (no confidence).
  It depends on the layout's regime, not on its step time, so the caller gives it per row.
- k(N) ≥ 1, the failure stretch, is the expected wall-clock per ideal second on N GPUs with failures,
  checkpoints, restarts and maintenance (planner.model.reliability.stretch_factor, docs/goodput.md); 1 with
  `reliability: none`. It depends only on N, the checkpoint size and the reliability settings.

Both are non-negative factors, so planned seconds and cost are monotone non-decreasing in the step seconds
and in q: a lower bound on the step (and on q) through this function is a lower bound on the planned time
and cost. `planned_units` rounds every quantity up (µs, s, ¢) against the plan, so an integer table never
admits a plan the float re-check (`planned_seconds`) refuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.model.perf import SECONDS_PER_DAY
from planner.model.reliability import MAX_SECONDS, stretch_factor
from planner.schema import Reliability

__all__ = ["IDEAL", "Basis", "cost_cents", "planned_seconds", "planned_units"]


@dataclass(frozen=True)
class Basis:
    """What a job's plans are held to beyond the ideal step time: failures (`reliability`; None = the ideal
    time, `reliability: none`) and the step-error quantile (`confidence`; None = the point estimate)."""

    reliability: Reliability | None = None
    confidence: float | None = None

    def stretch(self, gpus: Any, checkpoint_bytes: Any) -> Any:
        """k(N): expected wall-clock per ideal second (≥ 1; inf for a job that cannot finish)."""
        return stretch_factor(gpus, checkpoint_bytes, self.reliability)

    @property
    def label(self) -> str:
        """How the plans were judged, in words."""
        fail = "with failures" if self.reliability is not None else "ideal (no failures)"
        conf = "point estimate" if self.confidence is None else f"at the {self.confidence:.0%} step-time quantile"
        return f"expected time {fail}, {conf}"


IDEAL = Basis()  # the ideal time at the point estimate: what the time model alone says


def planned_seconds(step_seconds: Any, gpus: Any, steps: float, checkpoint_bytes: Any, basis: Basis = IDEAL,
                    factor: Any = 1.0) -> Any:
    """Wall-clock seconds a job of `steps` steps is planned at: step × factor × steps × k(N) (module docstring).
    Pure, and monotone non-decreasing in `step_seconds` and `factor`."""
    step = np.asarray(step_seconds, dtype=np.float64) * np.asarray(factor, dtype=np.float64)
    return step * steps * basis.stretch(gpus, checkpoint_bytes)


def cost_cents(job_us: Any, gpus: Any, usd_per_gpu_hour: float) -> Any:
    """Cents for `job_us` planned µs on `gpus` GPUs at an hourly rate, rounded up ($/h → ¢/µs)."""
    return np.ceil(np.asarray(job_us, dtype=np.float64) * gpus * (usd_per_gpu_hour / 3.6e7)).astype(np.int64)


def planned_units(step_seconds: Any, gpus: Any, usd_per_gpu_hour: float, steps: float, checkpoint_bytes: Any = 1,
                  basis: Basis = IDEAL, factor: Any = 1.0) -> tuple[Any, Any, Any, Any]:
    """(ideal step µs, planned job µs, planned job s, planned cost ¢), each rounded up, for scalars or numpy
    arrays: the integer form of `planned_seconds`. The step is rounded to whole µs first (the solver's unit);
    at the ideal basis and factor 1 the job is exactly step µs × steps. A job that cannot finish is clipped
    at a century (MAX_SECONDS), which no deadline admits."""
    step_us = np.ceil(np.asarray(step_seconds, dtype=np.float64) * 1e6).astype(np.int64)
    job = step_us * np.asarray(factor, dtype=np.float64) * steps * basis.stretch(gpus, checkpoint_bytes)
    job_us = np.ceil(np.minimum(job, MAX_SECONDS * 1e6)).astype(np.int64)
    time_s = np.ceil(job_us / 1e6).astype(np.int64)
    return step_us, job_us, time_s, cost_cents(job_us, gpus, usd_per_gpu_hour)


def planned_days(seconds: float) -> float:
    return math.inf if not math.isfinite(seconds) else seconds / SECONDS_PER_DAY
