"""CP-SAT picks one candidate per job: objectives, top-k, near-optimal sets, Pareto fronts, cores.

Encoding: one Boolean per (job, candidate), exactly one per job; deadline, budget, inventory per SKU
and the GPU caps are linear sums with the candidates' precomputed integer coefficients (seconds,
cents, GPUs), each family added by its own `_add_*`. Several objectives are handled outside the
model: lexicographic order by re-solving with the previous objective fixed (and the previous solution
as a hint), ending with the rank term so the optimum is unique; top-k and near-optimal sets by
forbidding each solution found and re-solving; the Pareto front by ε-constraints on time. `core` puts
each constraint group behind an enforcement literal and asks `sufficient_assumptions_for_infeasibility`
on a model without an objective (with an objective CP-SAT returns every assumption as the core).

Determinism: `num_workers=1` and a fixed `random_seed` by default. The models are small one-hot
selections that single-threaded CP-SAT proves optimal in milliseconds, and a single worker is the
mode CP-SAT guarantees to be deterministic; a unique optimum (the rank term) makes any worker count
return the same plan when it finishes.

ortools is imported inside functions so that importing planner stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.search.candidates import CandidateTable, JobCandidates, budget_cents, deadline_seconds
from planner.search.problem import Problem

OBJECTIVES: dict[str, tuple[str, ...]] = {
    "cost": ("cost", "rank"),
    "time": ("time", "cost", "rank"),
    "cost-then-time": ("cost", "time", "rank"),
}
# the candidate-table column each objective term sums
COLUMN = {"cost": "cost_cents", "time": "time_s", "gpus": "gpus", "rank": "rank"}


def preference(table: CandidateTable, objectives: Sequence[str]) -> np.ndarray:
    """Row indices of one job's table in the order the selector prefers them on their own: by each
    objective in turn, then the rank term. With one job and per-row limits, the optimum of
    `Selector.lexicographic` is the first row of this order that meets the limits."""
    keys = [getattr(table, COLUMN[o]) for o in objectives]
    if "rank" not in objectives:
        keys.append(table.rank)
    return np.lexsort(keys[::-1])


def constraint_on(name: str, off: frozenset[str]) -> bool:
    """Constraint groups are named `deadline:<job>`, `budget`, `inventory:<sku>`, `max_gpus`, `min_gpus`;
    `off` switches groups off by full name or by kind (`deadline` = every job's deadline)."""
    return name not in off and name.split(":")[0] not in off


@dataclass(frozen=True)
class Selection:
    """One solution: for each job, the index of its chosen row in that job's candidate table."""

    picks: tuple[int, ...]
    cost_cents: int  # all jobs
    time_s: int  # the last job to finish
    gpus: int  # all jobs


@dataclass
class Outcome:
    status: str  # optimal | feasible | infeasible | unknown
    selection: Selection | None = None
    gap: float | None = None  # (objective − bound) / objective of the first objective


@dataclass
class _Model:
    """A CP-SAT model under construction: the choice variables, the named expressions, and (for cores)
    one enforcement literal per constraint group."""

    model: Any
    groups: bool
    xs: list[list[Any]] = field(default_factory=list)  # per job: one Boolean per candidate
    exprs: dict[str, Any] = field(default_factory=dict)  # cost, time (makespan), rank, gpus
    lits: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, constraint: Any) -> None:
        """A constraint of group `name`, behind that group's literal when building for a core."""
        if self.groups:
            if name not in self.lits:
                self.lits[name] = self.model.new_bool_var(name)
            constraint.only_enforce_if(self.lits[name])


@dataclass
class Selector:
    """Builds and solves the selection model for fixed candidate tables."""

    problem: Problem
    cands: Sequence[JobCandidates]
    num_workers: int = 1
    seed: int = 0
    deadline_at: float | None = None  # time.monotonic() after which no solve starts or runs
    _cols: list[dict[str, list[int]]] = field(default_factory=list)  # per job: the coefficient columns

    def __post_init__(self) -> None:
        for c in self.cands:
            self._cols.append({k: getattr(c.table, k).tolist() for k in COLUMN.values()})

    # ----------------------------------------------------------------------------------------
    # model
    # ----------------------------------------------------------------------------------------

    def build(
        self,
        off: frozenset[str] = frozenset(),
        *,
        forbid: Sequence[tuple[int, ...]] = (),
        bounds: dict[str, int] | None = None,
        groups: bool = False,
    ) -> _Model:
        """The model with every constraint family but those switched `off`. `bounds` caps named
        expressions; `groups` puts each constraint group behind an enforcement literal (for cores)."""
        from ortools.sat.python import cp_model

        m = _Model(cp_model.CpModel(), groups)
        self._add_choices(m)
        self._add_deadlines(m, off)
        self._add_makespan(m)
        self._add_budget(m, off)
        if not self.problem.lifted_caps:
            self._add_inventories(m, off)
        self._add_gpu_caps(m, off)
        self._add_forbidden(m, forbid)
        for name, hi in (bounds or {}).items():
            m.model.add(m.exprs[name] <= hi)
        return m

    def _add_choices(self, m: _Model) -> None:
        """Exactly one candidate per job; the per-job sums of cost, GPUs, rank and time."""
        from ortools.sat.python import cp_model

        sums: dict[str, list[Any]] = {"cost": [], "gpus": [], "rank": [], "times": []}
        for j, (c, col) in enumerate(zip(self.cands, self._cols, strict=True)):
            x = [m.model.new_bool_var(f"x{j}_{k}") for k in range(len(c.table))]
            m.model.add_exactly_one(x)
            m.xs.append(x)
            for name, column in (("cost", "cost_cents"), ("gpus", "gpus"), ("rank", "rank"), ("times", "time_s")):
                sums[name].append(cp_model.LinearExpr.weighted_sum(x, col[column]))
        m.exprs = {"cost": sum(sums["cost"]), "gpus": sum(sums["gpus"]), "rank": sum(sums["rank"])}
        m.exprs["times"] = sums["times"]  # per job, for deadlines and the makespan

    def _add_deadlines(self, m: _Model, off: frozenset[str]) -> None:
        for c, t in zip(self.cands, m.exprs["times"], strict=True):
            limit = deadline_seconds(c.job.deadline_days)
            name = f"deadline:{c.job.name}"
            if limit is not None and constraint_on(name, off):
                m.add(name, m.model.add(t <= limit))

    def _add_makespan(self, m: _Model) -> None:
        """`time` is when the last job finishes: the one job's time, or a variable above every job's."""
        times = m.exprs.pop("times")
        if len(times) == 1:
            m.exprs["time"] = times[0]
            return
        hi = max((max(col["time_s"]) for col in self._cols if col["time_s"]), default=0)
        makespan = m.model.new_int_var(0, hi, "makespan")
        for t in times:
            m.model.add(makespan >= t)
        m.exprs["time"] = makespan

    def _add_budget(self, m: _Model, off: frozenset[str]) -> None:
        budget = budget_cents(self.problem.budget_usd)
        if budget is not None and constraint_on("budget", off):
            m.add("budget", m.model.add(m.exprs["cost"] <= budget))

    def _add_inventories(self, m: _Model, off: frozenset[str]) -> None:
        """Per SKU with an inventory: the GPUs every job takes of it, together."""
        from ortools.sat.python import cp_model

        for sku in self.problem.skus:
            if sku.inventory is None or not constraint_on(f"inventory:{sku.name}", off):
                continue
            terms = []
            for x, c, col in zip(m.xs, self.cands, self._cols, strict=True):
                terms += [(x[k], col["gpus"][k]) for k in np.flatnonzero(c.table.sku == sku.name).tolist()]
            if terms and sum(g for _, g in terms) > sku.inventory:
                expr = cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [g for _, g in terms])
                m.add(f"inventory:{sku.name}", m.model.add(expr <= sku.inventory))

    def _add_gpu_caps(self, m: _Model, off: frozenset[str]) -> None:
        p = self.problem
        if p.max_gpus is not None and not p.lifted_caps and constraint_on("max_gpus", off):
            m.add("max_gpus", m.model.add(m.exprs["gpus"] <= p.max_gpus))
        if p.min_gpus is not None and constraint_on("min_gpus", off):
            m.add("min_gpus", m.model.add(m.exprs["gpus"] >= p.min_gpus))

    def _add_forbidden(self, m: _Model, forbid: Sequence[tuple[int, ...]]) -> None:
        """Solutions already found, excluded (top-k, near-optimal sets)."""
        for picks in forbid:
            if len(picks) == 1:
                m.model.add(m.xs[0][picks[0]] == 0)
            else:
                m.model.add_bool_or([m.xs[j][k].Not() for j, k in enumerate(picks)])

    def _solver(self, *, assumptions: bool = False) -> Any:
        from ortools.sat.python import cp_model

        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1 if assumptions else self.num_workers
        solver.parameters.random_seed = self.seed
        # ortools 9.15 presolve can mis-handle Boolean coefficients summing past 2^31 (#5293);
        # cents of large budgets get there, and this presolve step buys nothing on one-hot models
        solver.parameters.presolve_inclusion_work_limit = 0
        if self.deadline_at is not None:
            solver.parameters.max_time_in_seconds = max(0.0, self.deadline_at - time.monotonic())
        return solver

    def selection(self, picks: tuple[int, ...]) -> Selection:
        """Totals of a choice, read from the tables (a free makespan variable may sit above the max)."""
        cols = [(col, k) for col, k in zip(self._cols, picks, strict=True)]
        return Selection(picks, sum(c["cost_cents"][k] for c, k in cols), max(c["time_s"][k] for c, k in cols),
                         sum(c["gpus"][k] for c, k in cols))

    def out_of_time(self) -> bool:
        return self.deadline_at is not None and time.monotonic() >= self.deadline_at

    # ----------------------------------------------------------------------------------------
    # solves
    # ----------------------------------------------------------------------------------------

    def lexicographic(
        self,
        objectives: Sequence[str],
        off: frozenset[str] = frozenset(),
        *,
        forbid: Sequence[tuple[int, ...]] = (),
        bounds: dict[str, int] | None = None,
    ) -> Outcome:
        """Minimise each objective in turn, fixing the ones before it at their optimum."""
        from ortools.sat.python import cp_model

        fixed = dict(bounds or {})
        outcome = Outcome("infeasible")
        hint: list[list[int]] | None = None
        for i, name in enumerate(objectives):
            if any(len(c.table) == 0 for c in self.cands):
                return Outcome("infeasible")
            m = self.build(off, forbid=forbid, bounds=fixed)
            m.model.minimize(m.exprs[name])
            if hint is not None:
                for x, h in zip(m.xs, hint, strict=True):
                    for var, v in zip(x, h, strict=True):
                        m.model.add_hint(var, v)
            solver = self._solver()
            status = solver.solve(m.model)
            if status == cp_model.MODEL_INVALID:
                raise RuntimeError(f"CP-SAT rejected the model: {m.model.validate()}")
            if status == cp_model.INFEASIBLE:
                return outcome if i else Outcome("infeasible")
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                return outcome if i else Outcome("unknown")
            value = round(solver.objective_value)
            hint = [[int(solver.boolean_value(v)) for v in x] for x in m.xs]
            sel = self.selection(tuple(int(np.argmax(h)) for h in hint))
            if i == 0:
                bound = float(solver.best_objective_bound)
                gap = 0.0 if status == cp_model.OPTIMAL else (value - bound) / max(1.0, abs(value))
                outcome = Outcome("optimal" if status == cp_model.OPTIMAL else "feasible", sel, gap)
            else:
                outcome = replace(outcome, selection=sel)
                if status != cp_model.OPTIMAL:
                    outcome.status = "feasible"
            fixed[name] = value
            if self.out_of_time():
                if i + 1 < len(objectives):
                    outcome.status = "feasible"
                break
        return outcome

    def ranked(
        self, objectives: Sequence[str], count: int, *, within: float | None = None,
        off: frozenset[str] = frozenset(), found: Sequence[Selection] = ()
    ) -> list[Selection]:
        """Up to `count` distinct solutions, best first; with `within`, only those whose first objective
        is at most (1 + within) × the best."""
        out = list(found)
        forbid = [s.picks for s in out]
        cap = near_cap(value_of(out[0], objectives[0]), within) if within is not None and out else None
        while len(out) < count and not self.out_of_time():
            o = self.lexicographic(objectives, off, forbid=forbid,
                                   bounds={objectives[0]: cap} if cap is not None else None)
            if o.selection is None:
                break
            out.append(o.selection)
            forbid.append(o.selection.picks)
            if within is not None and cap is None:
                cap = near_cap(value_of(o.selection, objectives[0]), within)
        return out

    def pareto(self, off: frozenset[str] = frozenset(), max_points: int = 40) -> list[Selection]:
        """Cost vs wall-clock front by ε-constraints: cheapest, then cheapest strictly faster, ..."""
        front: list[Selection] = []
        bounds: dict[str, int] = {}
        while len(front) < max_points and not self.out_of_time():
            o = self.lexicographic(("cost", "time", "rank"), off, bounds=bounds)
            if o.selection is None:
                break
            front.append(o.selection)
            bounds["time"] = o.selection.time_s - 1
        return front

    def group_names(self) -> list[str]:
        """The constraint groups the model holds."""
        return list(self.build(groups=True).lits)

    def core(self) -> list[str]:
        """Constraint groups that cannot hold together (a small, not always minimal, set)."""
        from ortools.sat.python import cp_model

        if any(len(c.table) == 0 for c in self.cands):
            return []
        m = self.build(groups=True)
        m.model.add_assumptions(list(m.lits.values()))
        solver = self._solver(assumptions=True)
        if solver.solve(m.model) != cp_model.INFEASIBLE:
            return []
        names = {v.index: k for k, v in m.lits.items()}
        return [names[i] for i in solver.sufficient_assumptions_for_infeasibility() if i in names]


def near_cap(best: int, margin: float) -> int:
    """The near-optimal set's bound on the first objective: at most (1 + margin) × the best (`Selector.ranked`,
    and what planner.search.pruning must keep)."""
    return int(best * (1 + margin))


def value_of(sel: Selection, name: str) -> int:
    return {"cost": sel.cost_cents, "time": sel.time_s, "gpus": sel.gpus}[name]
