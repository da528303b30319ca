"""`schedule(portfolio)`: a year of jobs on owned, bought, reserved and rented GPUs, planned with CP-SAT
and proven (or bounded) against the greedy baseline.

The portfolio is resolved once (planner.search.schedule_resolve: prices, each job's candidate table from
`planner solve`'s own machinery, the integer instance); the greedy earliest-deadline-first baseline runs
(schedule_greedy) and hands its plan to CP-SAT as a hint (schedule_cpsat: optional intervals,
cumulatives with time-varying capacity, integer purchases and reservations). Both plans pass two
independent re-checks: schedule_check on the integers, and `check_result` here on the dated plan with
every layout re-evaluated by the scalar model. Without a plan, planner.search.schedule_explain says which
deadline, which pool and by how much.

Money is US dollars. A job's `cost_usd` is what its own GPU-hours cost at its pool's usage rate (on-demand
price, power, running cost; nothing on a reservation, already paid) plus its lateness penalty; the
commitments (purchases amortised over the horizon, reservations over their whole term) belong to the
pools. The total is the sum of both. Dates are period boundaries: a job's `end` is when the plan frees
its GPUs (its run ends up to one period earlier; `days` says how long it runs).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from planner.errors import InputError, expect
from planner.portfolio import TERM_DAYS, Portfolio
from planner.report.text import layout_text
from planner.schema import Layout
from planner.search.schedule_check import check_decisions
from planner.search.schedule_cpsat import Outcome, solve
from planner.search.schedule_explain import difference, explain, no_option_lines
from planner.search.schedule_greedy import greedy
from planner.search.schedule_instance import Decisions, costs, late_days, topological, undominated, usage_profile
from planner.search.schedule_resolve import Duration, Resolved, ideal_duration, resolve

__all__ = ["Baseline", "Duration", "JobPlan", "PoolPlan", "Purchase", "Reservation", "ScheduleResult",
           "check_result", "ideal_duration", "schedule"]

SECONDS_PER_DAY = 86_400


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
    layout: Layout

    @property
    def layout_text(self) -> str:
        return layout_text(self.layout)

    @property
    def cost_usd(self) -> float:
        return self.usage_usd + self.penalty_usd


@dataclass(frozen=True)
class Purchase:
    order_date: dt.date
    arrival_date: dt.date
    gpus: int
    cost_usd: float  # amortisation and colocation from arrival to the horizon end


@dataclass(frozen=True)
class Reservation:
    start: dt.date
    end: dt.date  # the term's end (may be after the horizon)
    gpus: int
    cost_usd: float  # the whole term's commitment


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


@dataclass(frozen=True)
class Baseline:
    status: str  # feasible | infeasible (the greedy placed every job, or said why not)
    cost_usd: float | None
    reason: str | None
    jobs: tuple[JobPlan, ...] = ()
    pools: tuple[PoolPlan, ...] = ()


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
        """The JSON of `planner schedule --format json` (built by planner.report.schedule)."""
        from planner.report.schedule import schedule_dict

        return schedule_dict(self, timing)

    def to_json(self, timing: bool = True) -> str:
        from planner.report.formats import to_json

        return to_json(self.to_dict(timing))


def schedule(
    portfolio: Portfolio,
    *,
    time_limit: float = 60.0,
    workers: int = 1,
    deterministic: bool = True,
    duration: Duration = ideal_duration,
    progress: Callable[[str], None] | None = None,
) -> ScheduleResult:
    """Plan every job of `portfolio` in time, on its pools, with the purchases and reservations to make,
    at the lowest total cost (then the earliest finish); the reference for
    `planner schedule PORTFOLIO.yaml [--time-limit S] [--format json|csv|markdown] [--plots DIR] [--html FILE]`.

    - `time_limit`: seconds for the CP-SAT searches, the plan's and, where none exists, the explanation's
      (the candidate tables are built before them). When it runs out the best plan found is returned with
      status 'feasible', its proven lower bound and gap.
    - `workers`: CP-SAT threads. With a fixed seed the result is deterministic for a given input and
      worker count whenever the search ends before the time limit: one worker always; several with
      `deterministic=True` (interleaved search, slower). `deterministic=False` lets several workers race
      (fastest; a tie between equally cheap plans may then go either way). A search the time limit cuts
      short is not reproducible (wall-clock time).
    - `duration(job, sku, gpus, ideal_seconds) -> seconds`: how long a job runs; the default is the time
      model's ideal time, a goodput model gives the expected time with failures.

    The result's `status` is 'optimal' or 'feasible' with a plan, 'infeasible' with `reasons` (which
    deadline, which pool, by how much), or 'unknown' when time ran out before any plan. `baseline` is the
    greedy plan's cost; `difference` says where the two differ. Bad input raises InputError.
    """
    expect(portfolio, Portfolio, "schedule(portfolio)")
    say = progress or (lambda _msg: None)
    began = time.monotonic()
    say("building the candidate tables")
    resolved = resolve(portfolio, duration=duration)
    inst = resolved.instance
    try:
        topological(inst)
    except ValueError as e:
        raise InputError(f"jobs: {e}") from None
    h = portfolio.horizon
    result = ScheduleResult("infeasible", portfolio.name, h.start, h.step_days, h.periods, 0.0, workers)
    result.notes = notes(resolved, ideal=duration is ideal_duration)
    options = undominated(inst)
    missing = [j for j, ks in enumerate(options) if not ks]
    if missing:
        result.reasons = [line for j in missing for line in no_option_lines(resolved, j)]
        result.seconds = time.monotonic() - began
        return result
    say("greedy baseline")
    base = greedy(inst)
    say(f"CP-SAT over {sum(len(k) for k in options):,} job options × {inst.periods} periods")
    searched = time.monotonic()
    out = solve(inst, time_limit=time_limit, workers=workers, hint=base.decisions, options=options,
                deterministic=deterministic)
    if out.decisions is None and out.status == "unknown" and base.decisions is not None:
        # the limit ran out before CP-SAT had a plan of its own: the greedy plan it started from stands, unproven
        out = Outcome("feasible", base.decisions, costs(inst, base.decisions).total_usd, None, out.seconds)
        result.notes.insert(0, f"the {time_limit:g} s time limit ran out before CP-SAT found a plan of its own: "
                               "this is the greedy plan it started from, with no proven bound")
    result.status = out.status
    if out.decisions is None:
        if out.status == "infeasible":
            say("explaining infeasibility")
            result.reasons = explain(resolved, time_limit - (time.monotonic() - searched), workers)
        else:
            result.reasons = [f"the {time_limit:g} s time limit ran out before any plan was found"]
    else:
        bad = check_decisions(inst, out.decisions, out.objective)
        if bad:  # the model and the re-check disagree: a bug, never a plan to hand out
            raise RuntimeError("schedule fails the independent re-check: " + "; ".join(bad))
        result.cost_usd = float(out.objective) if out.objective is not None else None
        result.bound_usd = out.bound
        result.gap = out.gap
        result.jobs, result.pools = plan(resolved, out.decisions)
        bad = check_result(resolved, result)
        if bad:
            raise RuntimeError("schedule fails the independent re-check: " + "; ".join(bad))
    if base.decisions is not None:
        bad = check_decisions(inst, base.decisions)
        if bad:
            raise RuntimeError("baseline fails the independent re-check: " + "; ".join(bad))
        jobs, pools = plan(resolved, base.decisions)
        result.baseline = Baseline("feasible", float(costs(inst, base.decisions).total_usd), None, tuple(jobs),
                                   tuple(pools))
        if out.decisions is not None:
            if result.cost_usd is not None and result.cost_usd > result.baseline.cost_usd:  # type: ignore[operator]
                raise RuntimeError("CP-SAT, started from the baseline, returned a costlier plan")
            result.difference = difference(resolved, base.decisions, out.decisions)
    else:
        reason = base.reason
        if base.stuck is not None:
            j, due = base.stuck
            reason = (f"{inst.tasks[j].name}: no option has room by {resolved.portfolio.horizon.date(due)} once the "
                      "jobs with earlier deadlines are placed")
        result.baseline = Baseline("infeasible", None, reason)
    result.seconds = time.monotonic() - began
    return result


# --------------------------------------------------------------------------------------------
# Decisions → dated plan
# --------------------------------------------------------------------------------------------


def plan(r: Resolved, d: Decisions) -> tuple[list[JobPlan], list[PoolPlan]]:
    inst, h = r.instance, r.portfolio.horizon
    jobs = []
    for j, task in enumerate(inst.tasks):
        o = d.option(inst, j)
        layout = r.tables[j].cands.layout(r.rows[j][d.choice[j]])
        late = late_days(inst, j, d.end(inst, j))  # = (end_day - deadline).days past a deadline
        spec = r.jobs[j]
        end_day = h.date(d.end(inst, j))

        jobs.append(JobPlan(
            task.name, inst.pools[o.pool].name, inst.pools[o.pool].sku, o.gpus, h.date(d.start[j]), end_day,
            o.seconds / SECONDS_PER_DAY, float(o.usage_usd), float(task.penalty_usd * late), late, spec.deadline,
            task.hard,
            layout,
        ))
    pools = []
    for p_i, pool in enumerate(inst.pools):
        mine = [c for c in d.commitments if c.pool == p_i]
        purchases = tuple(Purchase(h.date(c.period), h.date(c.period + pool.lead), c.units * pool.unit,
                                   float(c.units * pool.unit_usd[pool.starts.index(c.period)]))
                          for c in mine if pool.kind == "purchase")
        term = getattr(r.portfolio.pools[p_i], "term", None)
        reservations = tuple(
            Reservation(h.date(c.period), h.date(c.period) + dt.timedelta(days=TERM_DAYS[term]), c.units * pool.unit,
                        float(c.units * pool.unit_usd[pool.starts.index(c.period)]))
            for c in mine if pool.kind == "reservation" and term)
        if pool.capacity is not None:
            cap: tuple[int | None, ...] = pool.capacity
        elif pool.committed:
            cap = tuple(sum(c.units * pool.unit for c in mine if pool.active(c.period, t)) for t in range(inst.periods))
        else:
            cap = (None,) * inst.periods
        used = tuple(usage_profile(inst, d, p_i))
        usage = float(sum(d.option(inst, j).usage_usd for j in range(len(inst.tasks)) if d.option(inst, j).pool == p_i))
        commit = float(sum(b.cost_usd for b in purchases) + sum(b.cost_usd for b in reservations))
        t = r.terms[p_i]
        pricing = f"{t.label}" + (f"; {t.notes[0]}" if t.notes else "")
        pools.append(PoolPlan(pool.name, pool.kind, pool.sku, purchases, reservations, cap, used, usage, commit,
                              pricing))
    return jobs, pools


# --------------------------------------------------------------------------------------------
# The dated re-check
# --------------------------------------------------------------------------------------------


def check_result(r: Resolved, res: ScheduleResult) -> list[str]:
    """Every constraint on the dated plan, from the portfolio's own dates and the scalar time model:
    releases, deadlines, `after:`, GPU bounds, pool SKUs, purchase lead times in days, reservation terms,
    capacity per period, and each layout re-evaluated (legal, fits in memory, runs within its slot)."""
    from planner.portfolio import PurchasePool, ReservationPool
    from planner.scenario import resolve_model
    from planner.search.schedule_resolve import lead_time_days
    from planner.workloads.training.evaluation import evaluate

    pf = r.portfolio
    h = pf.horizon
    bad: list[str] = []
    by_name = {j.name: j for j in res.jobs}
    pools = {p.name: p for p in pf.pools}
    for spec, job in zip(r.jobs, res.jobs, strict=True):
        if job.start < (spec.release or h.start):
            bad.append(f"{job.name}: starts {job.start}, before its release {spec.release}")
        if job.end > h.end:
            bad.append(f"{job.name}: ends {job.end}, after the horizon {h.end}")
        if spec.deadline and spec.penalty_usd_per_day is None and job.end > spec.deadline:
            bad.append(f"{job.name}: ends {job.end}, after its hard deadline {spec.deadline}")
        for dep in spec.after:
            if job.start < by_name[dep].end:
                bad.append(f"{job.name}: starts {job.start}, before {dep} ends {by_name[dep].end}")
        if (spec.min_gpus and job.gpus < spec.min_gpus) or (spec.max_gpus and job.gpus > spec.max_gpus):
            bad.append(f"{job.name}: {job.gpus} GPUs outside min_gpus/max_gpus")
        pool = pools[job.pool]
        if pf.gpu(pool.sku).name != job.sku or (spec.pools is not None and job.pool not in spec.pools):
            bad.append(f"{job.name}: runs on {job.sku} in {job.pool}, not allowed")
        # the reported layout, evaluated from the portfolio's own inputs by the scalar model
        gpu = pf.gpu(job.sku)
        ev = evaluate(resolve_model(spec.model), job.layout, gpu, seq=spec.job.seq_len,
                      tokens=float(spec.job.tokens), gpus_per_node=gpu.node_size, implementation=pf.implementation,
                      overheads=pf.overheads, efficiency=pf.efficiency)
        if ev.problems or not ev.fits or ev.layout.gpus != job.gpus:
            bad.append(f"{job.name}: layout {job.layout_text} on {job.gpus} × {job.sku} is not runnable")
        if ev.time.days > job.days * (1 + 1e-9) + 1 / SECONDS_PER_DAY or job.days > (job.end - job.start).days:
            bad.append(f"{job.name}: runs {ev.time.days:.3f} days by the time model, {job.days:.3f} planned in "
                       f"{(job.end - job.start).days} days")
    dates = res.dates
    for p, plan_ in zip(pf.pools, res.pools, strict=True):
        for t, (c, u) in enumerate(zip(plan_.capacity, plan_.used, strict=True)):
            if c is not None and u > c:
                bad.append(f"{p.name}: {u:,} GPUs used {dates[t]}, {c:,} available")
        if isinstance(p, PurchasePool):
            lead = lead_time_days(p, pf.gpu(p.sku))
            for b in plan_.purchases:
                if (b.arrival_date - b.order_date).days < lead or b.order_date < (p.order_from or h.start):
                    bad.append(f"{p.name}: ordered {b.order_date}, arrives {b.arrival_date}: lead time {lead:g} days")
            held = [sum(b.gpus for b in plan_.purchases if b.arrival_date <= d) for d in dates]
            if any((c or 0) > x for c, x in zip(plan_.capacity, held, strict=True)):
                bad.append(f"{p.name}: capacity before the purchases arrive")
            if p.max_gpus is not None and sum(b.gpus for b in plan_.purchases) > p.max_gpus:
                bad.append(f"{p.name}: buys more than max_gpus {p.max_gpus:,}")
        if isinstance(p, ReservationPool):
            step = dt.timedelta(days=h.step_days)
            held = [sum(x.gpus for x in plan_.reservations if x.start <= d and d + step <= x.end) for d in dates]
            if any((c or 0) > x for c, x in zip(plan_.capacity, held, strict=True)):
                bad.append(f"{p.name}: capacity outside the reservations' {p.term} terms")
            for x in plan_.reservations:
                if (x.end - x.start).days != TERM_DAYS[p.term]:
                    bad.append(f"{p.name}: a reservation {x.start} to {x.end} is not a {p.term} term")
    total = sum(j.cost_usd for j in res.jobs) + sum(p.commitments_usd for p in res.pools)
    if res.cost_usd is not None and not math.isclose(total, res.cost_usd, rel_tol=0, abs_tol=0.5):
        bad.append(f"cost ${res.cost_usd:,.0f} reported, ${total:,.0f} summed over jobs and pools")
    return bad



def notes(r: Resolved, *, ideal: bool = True) -> list[str]:
    """What the numbers assume, for footnotes."""
    h = r.portfolio.horizon
    out = [f"time in {h.step}s from {h.start}: a job holds its GPUs for whole {h.step}s, releases round up to the "
           f"next {h.step}, hard deadlines down to the last {h.step} boundary before them; a soft deadline's "
           "penalty counts the days from its date",
           "purchases: amortised from arrival to the horizon end, plus colocation, plus power when running; "
           "reservations: the whole term, used or not; on demand: the hours run",
           "run times: the time model's ideal times (no failures or restarts)" if ideal
           else "run times: the time model's, through the portfolio's duration model"]
    for t in r.terms:
        out.append(f"{t.name} ({t.kind}, {t.gpu.name}): {t.label}" + (f"; {t.notes[0]}" if t.notes else ""))
    for name, dropped in r.dropped.items():
        out.append(f"{name}: left out " + "; ".join(dropped))
    return out
