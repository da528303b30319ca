"""Why a portfolio has no schedule, and where the CP-SAT plan beats the greedy one, in sentences with
numbers: which job, which deadline, which pool, by how many days or dollars (the style of
planner.search.explain for `planner solve`)."""

from __future__ import annotations

from planner.search.explain import memory_lines
from planner.search.schedule_cpsat import ScheduleModel
from planner.search.schedule_instance import (
    Decisions,
    costs,
    earliest_starts,
    option_problem,
    option_start,
    undominated,
    usage_profile,
    viable,
)
from planner.search.schedule_resolve import Resolved

SECONDS_PER_DAY = 86_400




def _day(r: Resolved, period: int) -> str:
    return r.portfolio.horizon.date(period).isoformat()


def _days_past(r: Resolved, j: int, end: int) -> int:
    """Days from job j's hard deadline date to the end of period `end` (the deadline as written, not the period
    boundary the model rounds it down to)."""
    deadline = r.jobs[j].deadline
    assert deadline is not None
    return (r.portfolio.horizon.date(end) - deadline).days


def no_option_lines(r: Resolved, j: int) -> list[str]:
    """Why a job has no option that can run, even alone: memory, length, lead time, deadline."""
    inst = r.instance
    task, spec = inst.tasks[j], r.jobs[j]
    shape = r.tables[j].cands.job.name  # the table may have been built for another job of the same shape
    out = [line.replace(f"{shape}:", f"{task.name}:", 1) for line in memory_lines(r.tables[j].cands)]
    if not task.options:
        why = "; ".join(r.dropped.get(task.name, [])) or "no SKU of its pools has a layout within its GPU bounds"
        return [*out, f"{task.name}: no option: {why}"]
    h = r.portfolio.horizon
    hard = task.hard and spec.deadline is not None
    what = f"its deadline {spec.deadline}" if hard else f"the horizon end {_day(r, inst.periods)}"

    def late(end: int) -> int:  # days from the deadline's date (or the horizon end) to the end of period `end`
        return _days_past(r, j, end) if hard else (end - inst.periods) * h.step_days

    fastest: dict[int, tuple[int, int, int]] = {}  # pool → (earliest end, option, earliest start)
    for k, o in enumerate(task.options):
        first = option_start(inst, j, k)  # a purchase after its lead time, a reservation when allowed, room alone
        if first is None:
            continue
        if (o.pool not in fastest or first + o.periods < fastest[o.pool][0]
                or (first + o.periods == fastest[o.pool][0] and o.gpus < task.options[fastest[o.pool][1]].gpus)):
            fastest[o.pool] = (first + o.periods, k, first)
    if not fastest:  # no option ever has room in its pool
        problems = dict.fromkeys(p for k in range(len(task.options)) if (p := option_problem(inst, j, k)))
        return [*out, *(f"{task.name}: {p}" for p in list(problems)[:4])]
    ranked = sorted(fastest.values())
    end, k, first = ranked[0]
    o = task.options[k]
    out.append(f"{task.name}: the fastest option ({o.gpus:,} × {inst.pools[o.pool].sku} in {inst.pools[o.pool].name}, "
               f"{o.seconds / SECONDS_PER_DAY:,.1f} days) starts {_day(r, first)} at the earliest and ends "
               f"{_day(r, end)}, {late(end)} days after {what}")
    for end, k, first in ranked[1:4]:
        o = task.options[k]
        out.append(f"{task.name}: in {inst.pools[o.pool].name} at best {o.gpus:,} GPUs from {_day(r, first)} "
                   f"to {_day(r, end)}, {late(end)} days late")
    return out


def explain(r: Resolved, time_limit: float, workers: int) -> list[str]:
    """Every job can run alone, but not all together by their hard deadlines: solve again with the hard
    deadlines soft (weight 1 per period late, costs ignored) and say which jobs end late, by how much, and
    how full their pools are meanwhile."""
    from ortools.sat.python import cp_model

    inst = r.instance
    options = undominated(inst)
    lines: list[str] = []
    est = earliest_starts(inst, viable(inst))
    for j, task in enumerate(inst.tasks):  # chains of `after:` alone
        fastest = min(task.options[k].periods for k in options[j])
        if task.hard and task.deadline is not None and est[j] + fastest > task.deadline:
            lines.append(f"{task.name}: waits for {', '.join(inst.tasks[i].name for i in task.after)} and cannot end "
                         f"before {_day(r, est[j] + fastest)}; its deadline is {r.jobs[j].deadline} "
                         f"({_days_past(r, j, est[j] + fastest)} days short)")
    if lines:
        return lines
    model = ScheduleModel(inst, soft=True, options=options)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.max_time_in_seconds = max(1.0, time_limit)
    code = solver.solve(model.model)
    if code == cp_model.INFEASIBLE:
        return ["no plan fits every job in the horizon, even with every deadline lifted"]
    if code != cp_model.OPTIMAL and code != cp_model.FEASIBLE:
        return [f"the hard deadlines cannot all hold together; the time limit ran out ({max(1.0, time_limit):g} s "
                "of it left) before saying which jobs miss them"]
    d = model.decisions(solver)
    proven = code == cp_model.OPTIMAL
    for j, task in enumerate(inst.tasks):
        if not task.hard or task.deadline is None or d.end(inst, j) <= task.deadline:
            continue
        o = d.option(inst, j)
        late = _days_past(r, j, d.end(inst, j))
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
