"""What `planner.search.schedule.schedule` returns: the plan as data (dict, pandas tables), with the
greedy baseline beside it.

Money is US dollars. A job's `cost_usd` is what its own GPU-hours cost at its pool's usage rate (on-demand
price, power, running cost; nothing on a reservation, already paid) plus its lateness penalty; the
commitments (purchases amortised over the horizon, reservations over their whole term) belong to the
pools. The total is the sum of both. Dates are period boundaries: a job's `end` is when the plan frees
its GPUs (its run ends up to one period earlier, `days` says how long it runs).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class JobPlan:
    name: str
    pool: str
    sku: str
    gpus: int
    start: dt.date
    end: dt.date
    days: float  # run time (the time model's, through the duration hook)
    usage_usd: float
    penalty_usd: float
    late_days: int
    deadline: dt.date | None
    hard: bool
    layout: dict[str, Any]
    layout_text: str

    @property
    def cost_usd(self) -> float:
        return self.usage_usd + self.penalty_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "pool": self.pool, "sku": self.sku, "gpus": self.gpus,
            "start": self.start.isoformat(), "end": self.end.isoformat(), "cost_usd": self.cost_usd,
            "layout": self.layout,
            "days": self.days, "usage_usd": self.usage_usd, "penalty_usd": self.penalty_usd,
            "deadline": None if self.deadline is None else self.deadline.isoformat(), "hard_deadline": self.hard,
            "late_days": self.late_days,
        }


@dataclass(frozen=True)
class Purchase:
    order_date: dt.date
    arrival_date: dt.date
    gpus: int
    cost_usd: float  # amortisation and colocation from arrival to the horizon end

    def to_dict(self) -> dict[str, Any]:
        return {"order_date": self.order_date.isoformat(), "arrival_date": self.arrival_date.isoformat(),
                "gpus": self.gpus, "cost_usd": self.cost_usd}


@dataclass(frozen=True)
class Reservation:
    start: dt.date
    end: dt.date  # the term's end (may be after the horizon)
    gpus: int
    cost_usd: float  # the whole term's commitment

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "gpus": self.gpus,
                "cost_usd": self.cost_usd}


@dataclass(frozen=True)
class PoolPlan:
    name: str
    kind: str
    sku: str
    purchases: tuple[Purchase, ...]
    reservations: tuple[Reservation, ...]
    capacity: tuple[int | None, ...]  # GPUs available per period (None: unlimited)
    used: tuple[int, ...]  # GPUs in use per period
    usage_usd: float
    commitments_usd: float
    pricing: str  # where its rates come from

    @property
    def utilisation(self) -> float | None:
        """GPU-periods used over GPU-periods available (None when unlimited or nothing available)."""
        if any(c is None for c in self.capacity):
            return None
        held = sum(c or 0 for c in self.capacity)
        return sum(self.used) / held if held else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "sku": self.sku,
            "purchases": [p.to_dict() for p in self.purchases],
            "reservations": [r.to_dict() for r in self.reservations],
            "capacity": list(self.capacity), "used": list(self.used),
            "kind": self.kind, "usage_usd": self.usage_usd, "commitments_usd": self.commitments_usd,
            "utilisation": self.utilisation, "pricing": self.pricing,
        }


@dataclass(frozen=True)
class Baseline:
    status: str  # feasible | infeasible (the greedy placed every job, or said why not)
    cost_usd: float | None
    reason: str | None
    jobs: tuple[JobPlan, ...] = ()
    pools: tuple[PoolPlan, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"cost_usd": self.cost_usd, "status": self.status, "reason": self.reason,
                "method": "earliest-deadline-first list scheduling, cheapest option at its earliest start"}


@dataclass
class ScheduleResult:
    status: str  # optimal | feasible (time limit: best found, see gap) | infeasible | unknown
    name: str
    horizon_start: dt.date
    step_days: int
    periods: int
    seconds: float
    workers: int
    bound_usd: float | None = None
    gap: float | None = None
    cost_usd: float | None = None
    jobs: list[JobPlan] = field(default_factory=list)
    pools: list[PoolPlan] = field(default_factory=list)
    baseline: Baseline | None = None
    reasons: list[str] = field(default_factory=list)  # why infeasible
    difference: list[str] = field(default_factory=list)  # where CP-SAT beats the baseline
    notes: list[str] = field(default_factory=list)  # what the numbers assume

    @property
    def dates(self) -> list[dt.date]:
        return [self.horizon_start + dt.timedelta(days=t * self.step_days) for t in range(self.periods)]

    @property
    def cost_breakdown(self) -> dict[str, float]:
        return {
            "usage_usd": sum(j.usage_usd for j in self.jobs),
            "commitments_usd": sum(p.commitments_usd for p in self.pools),
            "penalty_usd": sum(j.penalty_usd for j in self.jobs),
        }

    def to_dict(self, timing: bool = True) -> dict[str, Any]:
        from ortools import __version__ as ortools_version  # type: ignore[attr-defined]

        from planner.search.schedule_cpsat import SEED

        return {
            "status": self.status,
            "solver": {"seconds": round(self.seconds, 3) if timing else None, "gap": self.gap,
                       "bound": self.bound_usd, "engine": f"CP-SAT (ortools {ortools_version})",
                       "num_workers": self.workers, "random_seed": SEED},
            "jobs": [j.to_dict() for j in self.jobs],
            "pools": [p.to_dict() for p in self.pools],
            "cost_usd": self.cost_usd,
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "name": self.name,
            "horizon": {"start": self.horizon_start.isoformat(), "step_days": self.step_days,
                        "dates": [d.isoformat() for d in self.dates]},
            "cost_breakdown": self.cost_breakdown if self.jobs else None,
            "difference": self.difference,
            "reasons": self.reasons,
            "notes": self.notes,
        }

    def to_json(self, timing: bool = True) -> str:
        return json.dumps(self.to_dict(timing), indent=2)

    # ----------------------------------------------------------------------------------------
    # pandas tables
    # ----------------------------------------------------------------------------------------

    def jobs_frame(self) -> pd.DataFrame:
        """One row per job: pool, SKU, GPUs, layout, start, end, days, costs, deadline, lateness."""
        cols = ["job", "pool", "sku", "gpus", "layout", "start", "end", "days", "usage_usd", "penalty_usd",
                "cost_usd", "deadline", "late_days"]
        return pd.DataFrame([{"job": j.name, "pool": j.pool, "sku": j.sku, "gpus": j.gpus, "layout": j.layout_text,
                              "start": j.start, "end": j.end, "days": j.days, "usage_usd": j.usage_usd,
                              "penalty_usd": j.penalty_usd, "cost_usd": j.cost_usd, "deadline": j.deadline,
                              "late_days": j.late_days} for j in self.jobs], columns=cols)

    def pools_frame(self) -> pd.DataFrame:
        """One row per pool: what is bought or reserved and when, peak use, utilisation, costs."""
        cols = ["pool", "kind", "sku", "bought", "reserved", "peak_used", "utilisation", "usage_usd",
                "commitments_usd", "cost_usd", "pricing"]
        rows = []
        for p in self.pools:
            rows.append({
                "pool": p.name, "kind": p.kind, "sku": p.sku,
                "bought": "; ".join(f"{b.gpus:,} ordered {b.order_date}, arrive {b.arrival_date}" for b in p.purchases),
                "reserved": "; ".join(f"{r.gpus:,} {r.start} to {r.end}" for r in p.reservations),
                "peak_used": max(p.used, default=0), "utilisation": p.utilisation, "usage_usd": p.usage_usd,
                "commitments_usd": p.commitments_usd, "cost_usd": p.usage_usd + p.commitments_usd,
                "pricing": p.pricing,
            })
        return pd.DataFrame(rows, columns=cols)

    def capacity_frame(self) -> pd.DataFrame:
        """One row per (pool, period): GPUs available and in use (the capacity-over-time plot's data)."""
        dates = self.dates
        return pd.DataFrame([{"pool": p.name, "date": dates[t], "capacity": p.capacity[t], "used": p.used[t]}
                             for p in self.pools for t in range(self.periods)],
                            columns=["pool", "date", "capacity", "used"])
