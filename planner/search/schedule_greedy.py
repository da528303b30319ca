"""The baseline a planner without a solver would use: earliest-deadline-first list scheduling.

Jobs are taken one at a time, the ready job (its predecessors placed) with the earliest deadline first
(ties: earlier release, then input order). Each of its options is placed at its earliest start where
its pool has room, buying or reserving the shortfall then (a purchase ordered as late as its lead time
allows, a reservation starting when the job does); the cheapest option counting usage, the new
commitments and tardiness wins (ties: earlier end, fewer GPUs). Nothing is ever undone, so a job placed
early can take the capacity a later, tighter job needed, and commitments are sized for one job at a
time: that is what the CP-SAT model improves on.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.search.schedule_instance import Commitment, Decisions, Instance, Pool, late_days, latest_ends, viable


@dataclass
class Baseline:
    decisions: Decisions | None
    reason: str | None  # why it found no schedule
    stuck: tuple[int, int] | None = None  # (task, period it had to end by) when one could not be placed


@dataclass
class _State:
    used: list[list[int]]  # pool → GPUs in use per period
    held: list[list[int]]  # pool → GPUs committed per period (committed pools)
    commits: list[Commitment]


def _commit_for(pool: Pool, p: int, st: _State, gpus: int, start: int, periods: int,
                T: int) -> tuple[Commitment | None, int] | None:
    """The commitment that gives a committed pool room for `gpus` over [start, start + periods), and its
    cost (None: not possible)."""
    end = start + periods
    short = max(st.used[p][t] + gpus - st.held[p][t] for t in range(start, end))
    if short <= 0:
        return None, 0
    units = max(pool.min_units, -(-short // pool.unit))
    # the cheapest commitment that covers the window (a purchase as late as it arrives in time), and of
    # equally cheap ones the one that provides the most capacity
    fits = [i for i, s in enumerate(pool.starts) if pool.covers(s, start, end)]
    if not fits:
        return None
    i = min(fits, key=lambda i: (pool.unit_usd[i], _cover(pool, i, T), pool.starts[i]))
    s = pool.starts[i]
    added = units * pool.unit
    last = T if pool.term is None else min(T, s + pool.lead + pool.term)
    if pool.max_gpus is not None and any(st.held[p][t] + added > pool.max_gpus for t in range(s + pool.lead, last)):
        return None
    return Commitment(p, s, units), units * pool.unit_usd[i]


def _cover(pool: Pool, i: int, T: int) -> int:
    """Minus the periods a commitment in starts[i] covers (more is better)."""
    begin = pool.starts[i] + pool.lead
    return -(min(T, begin + pool.term) - begin if pool.term is not None else T - begin)


def greedy(inst: Instance) -> Baseline:
    T = inst.periods
    options = viable(inst)
    due = latest_ends(inst, options)
    st = _State([[0] * T for _ in inst.pools], [[0] * T for _ in inst.pools], [])
    choice = [-1] * len(inst.tasks)
    start = [-1] * len(inst.tasks)
    end = [0] * len(inst.tasks)
    left = set(range(len(inst.tasks)))
    while left:
        ready = [j for j in left if all(choice[i] >= 0 for i in inst.tasks[j].after)]
        if not ready:
            return Baseline(None, "`after:` forms a cycle")
        j = min(ready, key=lambda j: (min(due[j], inst.tasks[j].deadline or T), inst.tasks[j].release, j))
        task = inst.tasks[j]
        ready_at = max([task.release, *(end[i] for i in task.after)])
        best: tuple[tuple[int, int, int, int], int, int, Commitment | None] | None = None
        for k in options[j]:
            o = task.options[k]
            pool = inst.pools[o.pool]
            for s in range(ready_at, T - o.periods + 1):
                e = s + o.periods
                if e > due[j]:
                    break
                commit, extra = None, 0
                if pool.capacity is not None:
                    if any(st.used[o.pool][t] + o.gpus > pool.capacity[t] for t in range(s, e)):
                        continue
                elif pool.committed:
                    got = _commit_for(pool, o.pool, st, o.gpus, s, o.periods, T)
                    if got is None:
                        continue
                    commit, extra = got
                key = (o.usage_usd + extra + task.penalty_usd * late_days(inst, j, e), e, o.gpus, k)
                if best is None or key < best[0]:
                    best = (key, k, s, commit)
                break  # the earliest start of this option
        if best is None:
            return Baseline(None, f"{task.name}: no option has room by period {due[j]} once the jobs before it "
                                  "are placed", (j, due[j]))
        _, k, s, commit = best
        o = task.options[k]
        if commit is not None:
            st.commits.append(commit)
            pool = inst.pools[commit.pool]
            for t in range(T):
                if pool.active(commit.period, t):
                    st.held[commit.pool][t] += commit.units * pool.unit
        for t in range(s, s + o.periods):
            st.used[o.pool][t] += o.gpus
        choice[j], start[j], end[j] = k, s, s + o.periods
        left.remove(j)
    merged: dict[tuple[int, int], int] = {}
    for c in st.commits:
        merged[(c.pool, c.period)] = merged.get((c.pool, c.period), 0) + c.units
    commits = tuple(Commitment(p, s, u) for (p, s), u in sorted(merged.items()))
    return Baseline(Decisions(tuple(choice), tuple(start), commits), None)
