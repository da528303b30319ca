"""The portfolio on CP-SAT intervals: which option each job runs, when, and what to buy or reserve.

One optional fixed-size interval per job option, all sharing the job's start variable (only the chosen
one is present: "alternative resources" in OR-Tools' ortools/sat/docs/scheduling.md), exactly one
present per job; releases and deadlines bound the start and end, precedences order them, and a soft
deadline adds a tardiness variable. Each pool is one `add_cumulative`. Capacity that varies in time is
modelled by fixed blocker intervals of height (most − capacity(t)), the pattern of
ortools/sat/samples/cumulative_variable_profile_sample_sat.py: a given profile (an owned cluster before
it is available) becomes a few constant blockers; a committed profile (purchases after their lead time,
reservations over their terms) becomes one blocker per period whose height is an affine expression of
that period's capacity variable, itself a linear sum of the integer commitment variables.

The cumulative alone gives a weak LP bound: its relaxation lets every job run on the cheap owned
cluster as long as the cluster's GPU-periods over the whole year suffice. So each pool also gets
redundant energy rows over time windows: the options that must run inside [a, b) (their earliest
start ≥ a, their job's latest end ≤ b) use at most the GPU-periods the pool has in [a, b). They cost
nothing in propagation and make the bound (hence the proven gap) meaningful.

Objective: usage cost + commitments + tardiness, in whole dollars; then, with the cost fixed at the
best found, the sum of job end periods, so that plans do not idle for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from planner.search.schedule_instance import (
    Commitment,
    Decisions,
    Instance,
    costs,
    earliest_capacity,
    earliest_starts,
    first_window,
    late_days,
    latest_ends,
    undominated,
    useful_starts,
)

SEED = 0
# Of the time limit, the share the cost phase may use; the finish-time phase gets the rest.
COST_SHARE = 0.85
# The energy rows are redundant (the cumulative alone is exact): past this many terms a pool's rows cost
# more to build than they tighten the bound. A synthetic lab year of 400 jobs over 52 weeks has fewer than
# 44,000 linear terms in all; a chain of 1,200 jobs had not finished building them after 7 minutes.
ENERGY_TERMS = 200_000

_STATUS = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible", cp_model.INFEASIBLE: "infeasible",
           cp_model.MODEL_INVALID: "invalid", cp_model.UNKNOWN: "unknown"}


@dataclass
class Outcome:
    """What one CP-SAT solve returns."""

    status: str  # optimal | feasible | infeasible | unknown (time ran out before any plan)
    decisions: Decisions | None
    objective: int | None  # total cost, dollars
    bound: float | None  # the proven lower bound on it
    seconds: float

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        return max(0.0, (self.objective - self.bound) / max(1.0, abs(self.objective)))


@dataclass(frozen=True)
class _Run:
    """One option's interval as its pool sees it."""

    task: int
    option: int
    interval: cp_model.IntervalVar
    present: cp_model.IntVar
    gpus: int
    periods: int
    first: int  # earliest start
    last: int  # latest end (its task's)


class ScheduleModel:
    """The CP-SAT model of one instance.

    `soft=True` builds the explanation model: every hard deadline becomes a tardiness of weight 1 per
    period and the costs are dropped, so the optimum says how late the jobs must be."""

    def __init__(self, inst: Instance, *, soft: bool = False, options: Sequence[Sequence[int]] | None = None) -> None:
        self.inst, self.soft = inst, soft
        self.options = [list(o) for o in (options if options is not None else undominated(inst))]
        if any(not o for o in self.options):
            raise ValueError("a task without a usable option has no model")
        m = self.model = cp_model.CpModel()
        T = inst.periods
        est = earliest_starts(inst, self.options)
        lct = latest_ends(inst, self.options, hard=not soft)
        self.start: list[cp_model.IntVar] = []
        self.end: list[cp_model.IntVar] = []
        self.present: list[dict[int, cp_model.IntVar]] = []
        self.late: dict[int, cp_model.IntVar] = {}
        self.terms: list[tuple[cp_model.IntVar, int]] = []  # (variable, $ per unit) of the objective
        runs: dict[int, list[_Run]] = {}
        for j, task in enumerate(inst.tasks):
            ks = self.options[j]
            shortest = min(task.options[k].periods for k in ks)
            lo, hi = est[j], lct[j]
            s = m.new_int_var(lo, max(lo, hi - shortest), f"start[{task.name}]")
            e = m.new_int_var(lo + shortest, max(lo + shortest, hi), f"end[{task.name}]")
            if lo + shortest > hi:
                m.add(e <= hi)  # cannot end in time: infeasible, and the model says so
            pres = {k: m.new_bool_var(f"use[{task.name},{k}]") for k in ks}
            m.add_exactly_one(pres.values())
            m.add(e == s + sum(task.options[k].periods * pres[k] for k in ks))
            for k in ks:
                o = task.options[k]
                iv = m.new_optional_fixed_size_interval_var(s, o.periods, pres[k], f"run[{task.name},{k}]")
                first = max(lo, self._first(j, k))
                if first > lo:
                    m.add(s >= first).only_enforce_if(pres[k])
                runs.setdefault(o.pool, []).append(_Run(j, k, iv, pres[k], o.gpus, o.periods, first, hi))
                if not soft:
                    self.terms.append((pres[k], o.usage_usd))
            self.start.append(s)
            self.end.append(e)
            self.present.append(pres)
            if task.deadline is not None and task.hard and soft:
                # the explanation: periods past a hard deadline, at weight 1
                late = m.new_int_var(0, max(0, T - task.deadline), f"late[{task.name}]")
                m.add_max_equality(late, [e - task.deadline, 0])
                self.late[j] = late
                self.terms.append((late, 1))
            elif task.deadline is not None and not task.hard and not soft:
                # days past a soft deadline's date, each at its penalty (late_days); exact, so that the objective
                # is the plan's cost whichever solution the time limit stops at
                due = task.due(inst.step_days)
                assert due is not None
                late = m.new_int_var(0, max(0, T * inst.step_days - due), f"late[{task.name}]")
                m.add_max_equality(late, [e * inst.step_days - due, 0])
                self.late[j] = late
                self.terms.append((late, task.penalty_usd))
        for j, task in enumerate(inst.tasks):
            for i in task.after:
                m.add(self.start[j] >= self.end[i])
        self.units: dict[int, dict[int, cp_model.IntVar]] = {}  # pool → commitment period → units
        self.capacity: dict[int, list[cp_model.IntVar]] = {}  # committed pool → GPUs per period
        for p, rs in sorted(runs.items()):
            self._pool(p, rs)
        self.cost = sum(v * c for v, c in self.terms if c)
        m.minimize(self.cost)

    def _first(self, j: int, k: int) -> int:
        """Earliest start of option k of task j from its pool alone."""
        o = self.inst.tasks[j].options[k]
        pool = self.inst.pools[o.pool]
        if pool.capacity is not None:
            return first_window(pool.capacity, o.gpus, o.periods, self.inst.tasks[j].release) or 0
        return earliest_capacity(self.inst, o.pool)

    def _pool(self, p: int, runs: list[_Run]) -> None:
        """The pool's cumulative and energy rows, built at min(capacity, need): a capacity above what
        its jobs could use all at once changes nothing."""
        inst, m, pool = self.inst, self.model, self.inst.pools[p]
        T = inst.periods
        widest: dict[int, int] = {}
        for r in runs:
            widest[r.task] = max(widest.get(r.task, 0), r.gpus)
        need = sum(widest.values())
        intervals = [r.interval for r in runs]
        demands: list[cp_model.LinearExprT] = [r.gpus for r in runs]
        if pool.capacity is not None:
            top = min(max(pool.capacity), need)
            if top == need:
                return  # never binding
            t = 0
            while t < T:  # constant runs of the profile below `top` become one blocker each
                short = top - min(pool.capacity[t], top)
                u = t
                while u < T and top - min(pool.capacity[u], top) == short:
                    u += 1
                if short > 0:
                    intervals.append(m.new_fixed_size_interval_var(t, u - t, f"blocked[{pool.name},{t}]"))
                    demands.append(short)
                t = u
            m.add_cumulative(intervals, demands, top)
            fixed = [min(c, top) for c in pool.capacity]
            self._energy(runs, fixed, fixed)
            self._mandatory(runs, fixed)
            return
        if not pool.committed:
            return  # unlimited on demand
        # one commitment never needs more than what all the pool's jobs use at once (or the minimum);
        # overlapping ones can add up beyond that, to the pool's limit
        top_units = max(-(-need // pool.unit), pool.min_units)
        if pool.max_gpus is not None:
            top_units = min(top_units, pool.max_gpus // pool.unit)
        units: dict[int, cp_model.IntVar] = {}
        if top_units >= pool.min_units:
            for s in useful_starts(inst, p):
                dom = cp_model.Domain.from_intervals([[0, 0], [pool.min_units, top_units]])
                units[s] = m.new_int_var_from_domain(dom, f"commit[{pool.name},{s}]")
                if not self.soft:
                    self.terms.append((units[s], pool.unit_usd[pool.starts.index(s)]))
        self.units[p] = units
        overlap = max((sum(pool.active(s, t) for s in units) for t in range(T)), default=0)
        most = overlap * top_units * pool.unit
        if pool.max_gpus is not None:
            most = min(most, pool.max_gpus)
        cap: list[cp_model.IntVar] = []
        for t in range(T):
            active = [v for s, v in units.items() if pool.active(s, t)]
            c = m.new_int_var(0, most if active else 0, f"capacity[{pool.name},{t}]")
            if active:
                m.add(c == pool.unit * sum(active))
            cap.append(c)
            intervals.append(m.new_fixed_size_interval_var(t, 1, f"blocked[{pool.name},{t}]"))
            demands.append(most - c)
        self.capacity[p] = cap
        m.add_cumulative(intervals, demands, most)
        self._energy(runs, cap)
        self._mandatory(runs, cap)

    def _mandatory(self, runs: list[_Run], cap: Sequence[cp_model.LinearExprT | int]) -> None:
        """In every period, the options that run then whatever their start (from their latest start to
        their earliest end) fit in the capacity: the time-table reasoning of the cumulative, as rows the
        LP relaxation sees (a purchase must cover the peak of a tight job, not its average)."""
        for t, c in enumerate(cap):
            must = [r for r in runs if r.last - r.periods <= t < r.first + r.periods]
            if isinstance(c, int) and sum(r.gpus for r in must) <= c:
                continue
            if must:
                self.model.add(sum(r.gpus * r.present for r in must) <= c)

    def _energy(self, runs: list[_Run], cap: Sequence[cp_model.LinearExprT],
                fixed: Sequence[int] | None = None) -> None:
        """GPU-periods of the options confined to [a, b) ≤ the pool's GPU-periods in [a, b), for every
        window between an earliest start and a latest end; a window whose options a smaller window
        already holds, or (with `fixed` capacities) that can hold all of them, adds nothing. Windows
        grow from the earliest latest end and the latest earliest start, up to ENERGY_TERMS terms."""
        before = [0]
        for c in fixed or ():
            before.append(before[-1] + c)  # GPU-periods of the fixed profile before each period

        def span(a: int, b: int) -> tuple[int, int]:  # [a, b) inside the horizon (a job past it has none)
            hi = min(max(b, 0), len(cap))
            return min(max(a, 0), hi), hi

        by_first = sorted(range(len(runs)), key=lambda i: -runs[i].first)
        seen: set[tuple[int, int]] = set()  # (earliest start, latest end) of the options: one set each
        terms, earliest_end = 0, min(r.last for r in runs)
        for b in sorted({r.last for r in runs}):
            members = [i for i in by_first if runs[i].last <= b]
            inside: list[int] = []
            most: dict[int, int] = {}  # task → its largest option's GPU-periods in the window
            need, end = 0, earliest_end  # the options' GPU-periods (each task's largest) and latest end
            for n, i in enumerate(members):
                r = runs[i]
                inside.append(i)
                end = max(end, r.last)
                need += max(0, r.gpus * r.periods - most.get(r.task, 0))
                most[r.task] = max(most.get(r.task, 0), r.gpus * r.periods)
                a = r.first
                if n + 1 < len(members) and runs[members[n + 1]].first == a:
                    continue  # the window [a, b) holds the options after this one too
                if (a, end) in seen:
                    continue  # a smaller window held the same options
                seen.add((a, end))
                lo, hi = span(a, b)
                if fixed is not None and need <= before[hi] - before[lo]:
                    continue
                if terms >= ENERGY_TERMS:
                    return
                terms += len(inside)
                energy = sum(runs[k].gpus * runs[k].periods * runs[k].present for k in inside)
                self.model.add(energy <= (before[hi] - before[lo] if fixed is not None else sum(cap[lo:hi])))

    # ----------------------------------------------------------------------------------------

    def hint(self, d: Decisions) -> None:
        """Start the search from a known schedule (the greedy baseline's)."""
        m, inst = self.model, self.inst
        m.clear_hints()
        for j, task in enumerate(inst.tasks):
            m.add_hint(self.start[j], d.start[j])
            m.add_hint(self.end[j], d.end(inst, j))
            for k, v in self.present[j].items():
                m.add_hint(v, k == d.choice[j])
            if j in self.late:
                m.add_hint(self.late[j], max(0, d.end(inst, j) - (task.deadline or 0)) if self.soft
                           else late_days(inst, j, d.end(inst, j)))
        for p, units in self.units.items():
            made = {c.period: c.units for c in d.commitments if c.pool == p}
            for s, v in units.items():
                m.add_hint(v, made.get(s, 0))
            pool = inst.pools[p]
            for t, c in enumerate(self.capacity[p]):
                m.add_hint(c, pool.unit * sum(u for s, u in made.items() if s in units and pool.active(s, t)))

    def decisions(self, solver: cp_model.CpSolver) -> Decisions:
        choice = tuple(next(k for k, v in pres.items() if solver.boolean_value(v)) for pres in self.present)
        start = tuple(int(solver.value(s)) for s in self.start)
        commits = tuple(Commitment(p, s, int(solver.value(v))) for p, units in sorted(self.units.items())
                        for s, v in sorted(units.items()) if solver.value(v) > 0)
        return Decisions(choice, start, commits)


def _solver(seconds: float, workers: int, deterministic: bool) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = SEED
    solver.parameters.max_time_in_seconds = max(0.01, seconds)
    if workers > 1 and deterministic:
        # several workers in a reproducible order (sat_parameters.proto: interleave_search), slower
        solver.parameters.interleave_search = True
    return solver


def solve(inst: Instance, *, time_limit: float = 60.0, workers: int = 1, hint: Decisions | None = None,
          options: Sequence[Sequence[int]] | None = None, finish_time: bool = True,
          deterministic: bool = False) -> Outcome:
    """Minimise the total cost, then (within what is left of `time_limit`) the sum of end periods at
    that cost. Status, bound and gap are the cost phase's. One worker is deterministic; several are with
    `deterministic` (interleaved search), as long as the time limit does not cut the search short."""
    began = time.monotonic()
    model = ScheduleModel(inst, options=options)
    if hint is not None:
        model.hint(hint)
    solver = _solver(time_limit * (COST_SHARE if finish_time else 1.0), workers, deterministic)
    code = solver.solve(model.model)
    status = _STATUS[code]
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return Outcome(status, None, None, None, time.monotonic() - began)
    best = model.decisions(solver)
    cost = round(solver.objective_value)
    bound = float(solver.best_objective_bound)
    left = time_limit - (time.monotonic() - began)
    if finish_time and left > 0.05:
        m = model.model
        m.add(model.cost <= cost)
        m.minimize(sum(model.end))
        model.hint(best)
        second = _solver(left, workers, deterministic)
        if second.solve(m) in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            best = model.decisions(second)
    # what the plan costs (the accounting the baseline and the re-check share): the cost phase's objective, or
    # less where the finish-time phase found an earlier plan that is also cheaper (a search the limit cut short)
    return Outcome(status, best, costs(inst, best).total_usd, bound, time.monotonic() - began)
