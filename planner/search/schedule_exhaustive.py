"""The exhaustive reference for small instances: every option and start of every job, and for each
resulting usage profile every set of commitments, enumerated. Tests assert CP-SAT's optimum equals it.

It shares nothing with the CP-SAT model but the instance: all options are tried (not only the
undominated ones), every start period, and every commitment vector (units 0 or min..max in every
allowed period) — kept exact, and feasible only for a handful of jobs, periods and commitment periods.
Pools are independent once the jobs are placed, so each pool's cheapest commitments are found for its
usage profile alone (and memoised on it).
"""

from __future__ import annotations

import itertools
from functools import cache

from planner.search.schedule_instance import Commitment, Decisions, Instance, late_days


def exhaustive(inst: Instance, *, max_combinations: int = 2_000_000) -> tuple[int, Decisions] | None:
    """(the minimum total cost, one schedule reaching it), or None when nothing is feasible."""
    T, n = inst.periods, len(inst.tasks)
    placements = []
    for task in inst.tasks:
        opts = [(k, s) for k, o in enumerate(task.options) for s in range(task.release, T - o.periods + 1)
                if not (task.hard and task.deadline is not None and s + o.periods > task.deadline)]
        placements.append(opts)
    total = 1
    for p in placements:
        total *= max(1, len(p))
    if total > max_combinations:
        raise ValueError(f"{total:,} job placements: too many for the exhaustive reference")

    @cache
    def commitments(p: int, usage: tuple[int, ...]) -> tuple[int, tuple[Commitment, ...]] | None:
        pool = inst.pools[p]
        if pool.capacity is not None:
            return (0, ()) if all(u <= c for u, c in zip(usage, pool.capacity, strict=True)) else None
        if not pool.committed:
            return 0, ()
        if not any(usage):
            return 0, ()
        top = (pool.max_gpus // pool.unit) if pool.max_gpus is not None else -(-max(usage) // pool.unit)
        levels = [0, *range(pool.min_units, max(pool.min_units, top) + 1)]
        best: tuple[int, tuple[Commitment, ...]] | None = None
        for units in itertools.product(levels, repeat=len(pool.starts)):
            cap = [pool.unit * sum(u for s, u in zip(pool.starts, units, strict=True) if u and pool.active(s, t))
                   for t in range(T)]
            if pool.max_gpus is not None and max(cap) > pool.max_gpus:
                continue
            if any(u > c for u, c in zip(usage, cap, strict=True)):
                continue
            cost = sum(u * c for u, c in zip(units, pool.unit_usd, strict=True))
            if best is None or cost < best[0]:
                best = (cost, tuple(Commitment(p, s, u) for s, u in zip(pool.starts, units, strict=True) if u))
        return best

    best: tuple[int, Decisions] | None = None
    for combo in itertools.product(*placements):
        choice = tuple(k for k, _ in combo)
        start = tuple(s for _, s in combo)
        ends = [start[j] + inst.tasks[j].options[choice[j]].periods for j in range(n)]
        if any(start[j] < ends[i] for j, t in enumerate(inst.tasks) for i in t.after):
            continue
        usage = [[0] * T for _ in inst.pools]
        for j, task in enumerate(inst.tasks):
            o = task.options[choice[j]]
            for t in range(start[j], ends[j]):
                usage[o.pool][t] += o.gpus
        cost = 0
        commits: list[Commitment] = []
        for pool_index in range(len(inst.pools)):
            got = commitments(pool_index, tuple(usage[pool_index]))
            if got is None:
                break
            cost += got[0]
            commits += got[1]
        else:
            for j, task in enumerate(inst.tasks):
                cost += task.options[choice[j]].usage_usd
                cost += task.penalty_usd * late_days(inst, j, ends[j])
            if best is None or cost < best[0]:
                best = (cost, Decisions(choice, start, tuple(commits)))
    return best
