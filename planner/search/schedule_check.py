"""The independent re-check of a schedule: every constraint recomputed from the decisions alone, with
none of the CP-SAT model's machinery (no intervals, no blockers, no capacity variables).

`check_decisions` works on the integer instance: options exist, starts after releases and predecessors,
ends by the horizon and hard deadlines, commitments only in allowed periods and at least the minimum,
capacity (owned profile, on-demand quota, purchases only from their arrival, reservations only within
their term, never above the pool's limit) never exceeded in any period, and the cost recomputed.
`planner.search.schedule` re-checks the dated result too (dates, lead times in days, layouts re-evaluated).
"""

from __future__ import annotations

from planner.search.schedule_instance import Decisions, Instance


def check_decisions(inst: Instance, d: Decisions, cost_usd: int | None = None) -> list[str]:
    bad: list[str] = []
    n, T = len(inst.tasks), inst.periods
    if len(d.choice) != n or len(d.start) != n:
        return [f"{len(d.choice)} choices and {len(d.start)} starts for {n} jobs"]
    ends = []
    for j, task in enumerate(inst.tasks):
        if not 0 <= d.choice[j] < len(task.options):
            bad.append(f"{task.name}: option {d.choice[j]} does not exist")
            ends.append(0)
            continue
        o = task.options[d.choice[j]]
        s, e = d.start[j], d.start[j] + o.periods
        ends.append(e)
        if s < task.release:
            bad.append(f"{task.name}: starts in period {s}, before its release {task.release}")
        if s < 0 or e > T:
            bad.append(f"{task.name}: runs {s}-{e}, outside the horizon 0-{T}")
        if task.hard and task.deadline is not None and e > task.deadline:
            bad.append(f"{task.name}: ends in period {e}, after its hard deadline {task.deadline}")
    if bad:
        return bad
    for j, task in enumerate(inst.tasks):
        for i in task.after:
            if d.start[j] < ends[i]:
                bad.append(f"{task.name}: starts in period {d.start[j]} before {inst.tasks[i].name} ends ({ends[i]})")
    held = [[0] * T for _ in inst.pools]
    commit_usd = 0
    for c in d.commitments:
        pool = inst.pools[c.pool]
        if pool.kind not in ("purchase", "reservation"):
            bad.append(f"{pool.name}: a commitment in a {pool.kind} pool")
            continue
        if c.period not in pool.starts:
            bad.append(f"{pool.name}: a commitment in period {c.period}, not an allowed one")
            continue
        if c.units < pool.min_units:
            bad.append(f"{pool.name}: {c.units} units in period {c.period} < the minimum {pool.min_units}")
        commit_usd += c.units * pool.unit_usd[pool.starts.index(c.period)]
        if pool.kind == "purchase":
            window = range(c.period + pool.lead, T)  # arrives after the lead time, then stays
        else:
            assert pool.term is not None
            window = range(c.period, min(T, c.period + pool.term))  # within the term only
        for t in window:
            held[c.pool][t] += c.units * pool.unit
    used = [[0] * T for _ in inst.pools]
    for j, task in enumerate(inst.tasks):
        o = task.options[d.choice[j]]
        for t in range(d.start[j], d.start[j] + o.periods):
            used[o.pool][t] += o.gpus
    for p, pool in enumerate(inst.pools):
        for t in range(T):
            if pool.kind in ("purchase", "reservation"):
                cap: int | None = held[p][t]
                if pool.max_gpus is not None and held[p][t] > pool.max_gpus:
                    bad.append(f"{pool.name}: {held[p][t]:,} GPUs held in period {t} > its limit {pool.max_gpus:,}")
            else:
                cap = None if pool.capacity is None else pool.capacity[t]
            if cap is not None and used[p][t] > cap:
                bad.append(f"{pool.name}: {used[p][t]:,} GPUs used in period {t} > {cap:,} available")
    if cost_usd is not None:
        usage = sum(task.options[d.choice[j]].usage_usd for j, task in enumerate(inst.tasks))
        # a soft deadline is charged per day past its date (the period boundary without one)
        late = sum(task.penalty_usd * max(0, ends[j] * inst.step_days
                                          - (task.deadline * inst.step_days if task.due_day is None else task.due_day))
                   for j, task in enumerate(inst.tasks) if task.deadline is not None and not task.hard)
        total = usage + commit_usd + late
        if total != cost_usd:
            bad.append(f"cost ${cost_usd:,} reported, ${total:,} recomputed")
    return bad
