"""`planner schedule`: a year of jobs on owned, bought, reserved and rented GPUs, planned with CP-SAT.

`schedule(portfolio)` resolves the portfolio (prices, candidate tables from `planner solve`'s machinery,
the integer instance: planner.search.schedule_resolve), runs the greedy earliest-deadline-first baseline
(schedule_greedy), hands its plan to CP-SAT as a hint (schedule_cpsat: optional intervals, cumulatives
with time-varying capacity, integer purchases and reservations), and re-checks both plans independently
(schedule_check on the integers; here, on the dated result, with every layout re-evaluated by the scalar
model). When nothing is feasible it says which deadline, which pool and by how much.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable

from planner.errors import InputError
from planner.estimate import layout_dict
from planner.portfolio import TERM_DAYS, Portfolio
from planner.search.schedule_check import check_decisions
from planner.search.schedule_cpsat import ScheduleModel, solve
from planner.search.schedule_greedy import greedy
from planner.search.schedule_instance import (
    Decisions,
    costs,
    earliest_starts,
    topological,
    undominated,
    usage_profile,
    viable,
)
from planner.search.schedule_resolve import Duration, Resolved, ideal_duration, resolve
from planner.search.schedule_result import Baseline, JobPlan, PoolPlan, Purchase, Reservation, ScheduleResult

__all__ = ["ScheduleResult", "check_result", "schedule"]

SECONDS_PER_DAY = 86_400


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

    - `time_limit`: seconds for the CP-SAT search (the candidate tables are built before it). When it runs
      out the best plan found is returned with status 'feasible', its proven lower bound and gap.
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
    out = solve(inst, time_limit=time_limit, workers=workers, hint=base.decisions, options=options,
                deterministic=deterministic)
    result.status = out.status
    if out.decisions is None:
        if out.status == "infeasible":
            say("explaining infeasibility")
            result.reasons = explain(resolved, time_limit, workers)
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
            reason = (f"{inst.tasks[j].name}: no option has room by {_day(resolved, due)} once the jobs with "
                      "earlier deadlines are placed")
        result.baseline = Baseline("infeasible", None, reason)
    result.seconds = time.monotonic() - began
    return result


# --------------------------------------------------------------------------------------------
# Decisions → dated plan
# --------------------------------------------------------------------------------------------


def plan(r: Resolved, d: Decisions) -> tuple[list[JobPlan], list[PoolPlan]]:
    from planner.search import _Plans
    from planner.search.cpsat import layout_label

    inst, h = r.instance, r.portfolio.horizon
    jobs = []
    for j, task in enumerate(inst.tasks):
        o = d.option(inst, j)
        table = r.tables[j]
        p = _Plans(table.problem, [table.cands]).plan(0, r.rows[j][d.choice[j]])
        late = 0 if task.deadline is None else max(0, d.end(inst, j) - task.deadline)
        spec = r.jobs[j]
        end_day = h.date(d.end(inst, j))

        jobs.append(JobPlan(
            task.name, inst.pools[o.pool].name, inst.pools[o.pool].sku, o.gpus, h.date(d.start[j]), end_day,
            o.seconds / SECONDS_PER_DAY, float(o.usage_usd), float(task.penalty_usd * late),
            0 if spec.deadline is None else max(0, (end_day - spec.deadline).days), spec.deadline, task.hard,
            layout_dict(p.evaluation.layout), layout_label(p.evaluation.layout.model_dump()),
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
    from planner.catalog import get_gpu
    from planner.evaluation import evaluate
    from planner.portfolio import PurchasePool, ReservationPool
    from planner.search.schedule_resolve import lead_time_days
    from planner.search.space import LAYOUT_FIELDS, RECOMPUTE

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
        if get_gpu(pool.sku).name != job.sku or (spec.pools is not None and job.pool not in spec.pools):
            bad.append(f"{job.name}: runs on {job.sku} in {job.pool}, not allowed")
        table = r.tables[r.jobs.index(spec)]
        problem = table.problem
        sku = next(s for s in problem.skus if s.name == job.sku)
        # the reported layout fields, with the job's recipe (precision, optimizer, fixed knobs)
        fields = {f: job.layout[f] for f in LAYOUT_FIELDS}
        fields["recompute"] = RECOMPUTE.index(fields["recompute"])
        layout = problem.jobs[0].layout(**fields)
        ev = evaluate(problem.jobs[0].model, layout, sku.gpu, seq=spec.job.seq_len,
                      tokens=float(spec.job.tokens), gpus_per_node=sku.node, implementation=pf.implementation,
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
            lead = lead_time_days(p, get_gpu(p.sku))
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


# --------------------------------------------------------------------------------------------
# Explanations
# --------------------------------------------------------------------------------------------


def _day(r: Resolved, period: int) -> str:
    return r.portfolio.horizon.date(period).isoformat()


def no_option_lines(r: Resolved, j: int) -> list[str]:
    """Why a job has no option that can run, even alone: memory, length, lead time, deadline."""
    from planner.search.cpsat import memory_lines

    inst = r.instance
    task, spec = inst.tasks[j], r.jobs[j]
    shape = r.tables[j].cands.job.name  # the table may have been built for another job of the same shape
    out = [line.replace(f"{shape}:", f"{task.name}:", 1) for line in memory_lines(r.tables[j].cands)]
    if not task.options:
        why = "; ".join(r.dropped.get(task.name, [])) or "no SKU of its pools has a layout within its GPU bounds"
        return [*out, f"{task.name}: no option: {why}"]
    step = r.portfolio.horizon.step_days
    limit = task.deadline if task.hard and task.deadline is not None else inst.periods
    what = f"its deadline {spec.deadline}" if task.hard and spec.deadline else f"the horizon end {_day(r, limit)}"
    fastest: dict[int, tuple[int, int, int]] = {}  # pool → (earliest end, option, earliest start)
    for k, o in enumerate(task.options):
        pool = inst.pools[o.pool]
        first = task.release
        if pool.committed:  # a purchase arrives after its lead time, a reservation starts when allowed
            first = max(first, min((s + pool.lead for s in pool.starts), default=inst.periods))
        if (o.pool not in fastest or first + o.periods < fastest[o.pool][0]
                or (first + o.periods == fastest[o.pool][0] and o.gpus < task.options[fastest[o.pool][1]].gpus)):
            fastest[o.pool] = (first + o.periods, k, first)
    ranked = sorted(fastest.values())
    end, k, first = ranked[0]
    o = task.options[k]
    out.append(f"{task.name}: the fastest option ({o.gpus:,} × {inst.pools[o.pool].sku} in {inst.pools[o.pool].name}, "
               f"{o.seconds / SECONDS_PER_DAY:,.1f} days) starts {_day(r, first)} at the earliest and ends "
               f"{_day(r, end)}, {(end - limit) * step} days after {what}")
    for end, k, first in ranked[1:4]:
        o = task.options[k]
        out.append(f"{task.name}: in {inst.pools[o.pool].name} at best {o.gpus:,} GPUs from {_day(r, first)} "
                   f"to {_day(r, end)}, {(end - limit) * step} days late")
    return out


def explain(r: Resolved, time_limit: float, workers: int) -> list[str]:
    """Every job can run alone, but not all together by their hard deadlines: solve again with the hard
    deadlines soft (weight 1 per period late, costs ignored) and say which jobs end late, by how much, and
    how full their pools are meanwhile."""
    from ortools.sat.python import cp_model

    inst = r.instance
    step = inst.step_days
    options = undominated(inst)
    lines: list[str] = []
    est = earliest_starts(inst, viable(inst))
    for j, task in enumerate(inst.tasks):  # chains of `after:` alone
        fastest = min(task.options[k].periods for k in options[j])
        if task.hard and task.deadline is not None and est[j] + fastest > task.deadline:
            lines.append(f"{task.name}: waits for {', '.join(inst.tasks[i].name for i in task.after)} and cannot end "
                         f"before {_day(r, est[j] + fastest)}; its deadline is {r.jobs[j].deadline} "
                         f"({(est[j] + fastest - task.deadline) * step} days short)")
    if lines:
        return lines
    model = ScheduleModel(inst, soft=True, options=options)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.max_time_in_seconds = max(1.0, time_limit)
    code = solver.solve(model.model)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ["no plan fits every job in the horizon, even with every deadline lifted"]
    d = model.decisions(solver)
    proven = code == cp_model.OPTIMAL
    for j, task in enumerate(inst.tasks):
        if not task.hard or task.deadline is None or d.end(inst, j) <= task.deadline:
            continue
        o = d.option(inst, j)
        late = (d.end(inst, j) - task.deadline) * step
        full = []
        for p in sorted({task.options[k].pool for k in options[j]}):
            used = usage_profile(inst, d, p)
            pool = inst.pools[p]
            window = range(task.release, task.deadline)
            cap = [pool.capacity[t] if pool.capacity is not None else None for t in window]
            if pool.committed:
                full.append(f"{pool.name} limited to {pool.max_gpus:,} GPUs" if pool.max_gpus else pool.name)
            elif pool.capacity is not None and window:
                peak = max(used[t] for t in window)
                full.append(f"{pool.name} up to {peak:,} of {max(c or 0 for c in cap):,} GPUs in use")
        lines.append(f"{task.name}: misses its deadline {r.jobs[j].deadline} by {late} days "
                     f"({'at least' if proven else 'in the best plan found'}; it would run on {o.gpus:,} × "
                     f"{inst.pools[o.pool].sku} in {inst.pools[o.pool].name} until {_day(r, d.end(inst, j))}); "
                     f"meanwhile " + ", ".join(full))
    if not lines:
        lines.append("the hard deadlines cannot all hold together within the pools' capacity")
    return lines


def difference(r: Resolved, base: Decisions, best: Decisions) -> list[str]:
    """Where the CP-SAT plan saves against the greedy one: cost by pool and component, and the jobs placed
    differently (largest first)."""
    inst = r.instance
    a, b = costs(inst, base), costs(inst, best)
    out = [f"total: greedy ${a.total_usd:,.0f}, CP-SAT ${b.total_usd:,.0f} (saves ${a.total_usd - b.total_usd:,.0f}, "
           f"{(a.total_usd - b.total_usd) / max(1, a.total_usd):.1%})"]
    for p, pool in enumerate(inst.pools):
        ua = sum(base.option(inst, j).usage_usd for j in range(len(inst.tasks)) if base.option(inst, j).pool == p)
        ub = sum(best.option(inst, j).usage_usd for j in range(len(inst.tasks)) if best.option(inst, j).pool == p)
        ca = sum(c.units * pool.unit_usd[pool.starts.index(c.period)] for c in base.commitments if c.pool == p)
        cb = sum(c.units * pool.unit_usd[pool.starts.index(c.period)] for c in best.commitments if c.pool == p)
        ga = sum(c.units * pool.unit for c in base.commitments if c.pool == p)
        gb = sum(c.units * pool.unit for c in best.commitments if c.pool == p)
        if ua == ub and ca == cb:
            continue
        parts = []
        if ca != cb:
            verb = "buys" if pool.kind == "purchase" else "reserves"
            parts.append(f"greedy {verb} {ga:,} GPUs (${ca:,.0f}), CP-SAT {gb:,} (${cb:,.0f})")
        if ua != ub:
            parts.append(f"usage ${ua:,.0f} → ${ub:,.0f}")
        out.append(f"{pool.name}: " + "; ".join(parts))
    pa, pb = a.penalty_usd, b.penalty_usd
    if pa != pb:
        out.append(f"lateness penalties: ${pa:,.0f} → ${pb:,.0f}")
    moved = []
    for j, task in enumerate(inst.tasks):
        oa, ob = base.option(inst, j), best.option(inst, j)
        if (oa.pool, oa.gpus, base.start[j]) != (ob.pool, ob.gpus, best.start[j]):
            moved.append((abs(oa.usage_usd - ob.usage_usd) + oa.gpus * oa.periods, task.name, oa, ob, j))
    for _, name, oa, ob, j in sorted(moved, key=lambda m: (-m[0], m[1]))[:8]:
        out.append(f"{name}: greedy {oa.gpus:,} GPUs in {inst.pools[oa.pool].name} from {_day(r, base.start[j])}, "
                   f"CP-SAT {ob.gpus:,} in {inst.pools[ob.pool].name} from {_day(r, best.start[j])}")
    if len(moved) > 8:
        out.append(f"... and {len(moved) - 8} more jobs placed differently")
    return out


def notes(r: Resolved, *, ideal: bool = True) -> list[str]:
    """What the numbers assume, for footnotes."""
    h = r.portfolio.horizon
    out = [f"time in {h.step}s from {h.start}: a job holds its GPUs for whole {h.step}s, releases round up to the "
           f"next {h.step}, deadlines down to the last {h.step} boundary before them",
           "purchases: amortised from arrival to the horizon end, plus colocation, plus power when running; "
           "reservations: the whole term, used or not; on demand: the hours run",
           "run times: the time model's ideal times (no failures or restarts)" if ideal
           else "run times: the time model's, through the portfolio's duration model"]
    for t in r.terms:
        out.append(f"{t.name} ({t.kind}, {t.gpu.name}): {t.label}" + (f"; {t.notes[0]}" if t.notes else ""))
    for name, dropped in r.dropped.items():
        out.append(f"{name}: left out " + "; ".join(dropped))
    return out
