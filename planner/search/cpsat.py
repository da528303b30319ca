"""CP-SAT picks one candidate per job; objectives, top-k, near-optimal sets, Pareto fronts, explanations.

Encoding: one Boolean per (job, candidate), exactly one per job; deadline, budget, inventory per SKU
and the GPU caps are linear sums with the candidates' precomputed integer coefficients (seconds,
cents, GPUs). Several objectives are handled outside the model: lexicographic order by re-solving
with the previous objective fixed (and the previous solution as a hint), ending with a rank term so
the optimum is unique; top-k and near-optimal sets by forbidding each solution found and re-solving;
the Pareto front by ε-constraints on time. Explanations use one enforcement literal per constraint
group and `sufficient_assumptions_for_infeasibility` on a model without an objective (with an
objective CP-SAT returns every assumption as the core).

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

from planner.model.perf import SECONDS_PER_DAY
from planner.schema import GIB
from planner.search.candidates import JobCandidates, budget_cents, deadline_seconds
from planner.search.space import Problem

OBJECTIVES: dict[str, tuple[str, ...]] = {
    "cost": ("cost", "rank"),
    "time": ("time", "cost", "rank"),
    "cost-then-time": ("cost", "time", "rank"),
}


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
    bound: float | None = None


@dataclass
class Selector:
    """Builds and solves the selection model for fixed candidate tables."""

    problem: Problem
    cands: Sequence[JobCandidates]
    num_workers: int = 1
    seed: int = 0
    deadline_at: float | None = None  # time.monotonic() after which no solve starts or runs
    _cols: list[dict[str, list[int]]] = field(default_factory=list)  # per job: the coefficient columns
    _skus: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        for c in self.cands:
            t = c.table
            # tie-break: fewer GPUs, more memory headroom, catalog order, grid order
            order = np.lexsort((t["row"].to_numpy(), t["sku_index"].to_numpy(), t["memory"].to_numpy(),
                                t["gpus"].to_numpy()))
            rank = np.empty(len(t), dtype=np.int64)
            rank[order] = np.arange(len(t))
            cols = {k: t[k].astype("int64").tolist() for k in ("cost_cents", "gpus", "time_s")}
            cols["rank"] = rank.tolist()
            self._cols.append(cols)
            self._skus.append(t["sku"].to_numpy())

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
    ) -> tuple[Any, list[Any], dict[str, Any], dict[str, Any]]:
        """(model, x per job, named expressions, group literals). `bounds` caps named expressions;
        `groups` puts each constraint group behind an enforcement literal (for explanations)."""
        from ortools.sat.python import cp_model

        p = self.problem
        model = cp_model.CpModel()
        lits: dict[str, Any] = {}

        def add(name: str, constraint: Any) -> None:
            if groups:
                if name not in lits:
                    lits[name] = model.new_bool_var(name)
                constraint.only_enforce_if(lits[name])

        xs, cost, gpus, rank, times = [], [], [], [], []
        for j, (c, col) in enumerate(zip(self.cands, self._cols, strict=True)):
            x = [model.new_bool_var(f"x{j}_{k}") for k in range(len(c.table))]
            model.add_exactly_one(x)
            xs.append(x)
            cost.append(cp_model.LinearExpr.weighted_sum(x, col["cost_cents"]))
            gpus.append(cp_model.LinearExpr.weighted_sum(x, col["gpus"]))
            rank.append(cp_model.LinearExpr.weighted_sum(x, col["rank"]))
            times.append(cp_model.LinearExpr.weighted_sum(x, col["time_s"]))
            limit = deadline_seconds(c.job.deadline_days)
            name = f"deadline:{c.job.name}"
            if limit is not None and constraint_on(name, off):
                add(name, model.add(times[-1] <= limit))
        if len(times) == 1:
            makespan: Any = times[0]
        else:
            hi = max((max(col["time_s"]) for col in self._cols if col["time_s"]), default=0)
            makespan = model.new_int_var(0, hi, "makespan")
            for tj in times:
                model.add(makespan >= tj)
        total_cost, total_gpus = sum(cost), sum(gpus)
        budget = budget_cents(p.budget_usd)
        if budget is not None and constraint_on("budget", off):
            add("budget", model.add(total_cost <= budget))
        if not p.lifted_caps:
            for sku in p.skus:
                if sku.inventory is None or not constraint_on(f"inventory:{sku.name}", off):
                    continue
                terms = []
                for x, col, names in zip(xs, self._cols, self._skus, strict=True):
                    terms += [(x[k], col["gpus"][k]) for k in np.flatnonzero(names == sku.name).tolist()]
                if terms and sum(g for _, g in terms) > sku.inventory:
                    expr = cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [g for _, g in terms])
                    add(f"inventory:{sku.name}", model.add(expr <= sku.inventory))
        if p.max_gpus is not None and not p.lifted_caps and constraint_on("max_gpus", off):
            add("max_gpus", model.add(total_gpus <= p.max_gpus))
        if p.min_gpus is not None and constraint_on("min_gpus", off):
            add("min_gpus", model.add(total_gpus >= p.min_gpus))
        for picks in forbid:
            if len(picks) == 1:
                model.add(xs[0][picks[0]] == 0)
            else:
                model.add_bool_or([xs[j][k].Not() for j, k in enumerate(picks)])
        exprs = {"cost": total_cost, "time": makespan, "rank": sum(rank), "gpus": total_gpus}
        for name, hi in (bounds or {}).items():
            model.add(exprs[name] <= hi)
        return model, xs, exprs, lits

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
            model, xs, exprs, _ = self.build(off, forbid=forbid, bounds=fixed)
            model.minimize(exprs[name])
            if hint is not None:
                for x, h in zip(xs, hint, strict=True):
                    for var, v in zip(x, h, strict=True):
                        model.add_hint(var, v)
            solver = self._solver()
            status = solver.solve(model)
            if status == cp_model.INFEASIBLE or status == cp_model.MODEL_INVALID:
                if status == cp_model.MODEL_INVALID:
                    raise RuntimeError(f"CP-SAT rejected the model: {model.validate()}")
                return outcome if i else Outcome("infeasible")
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                return outcome if i else Outcome("unknown")
            value = round(solver.objective_value)
            hint = [[int(solver.boolean_value(v)) for v in x] for x in xs]
            picks = tuple(int(np.argmax(h)) for h in hint)
            sel = self.selection(picks)
            if i == 0:
                bound = float(solver.best_objective_bound)
                gap = 0.0 if status == cp_model.OPTIMAL else (value - bound) / max(1.0, abs(value))
                outcome = Outcome("optimal" if status == cp_model.OPTIMAL else "feasible", sel, gap, bound)
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
        cap = int(value_of(out[0], objectives[0]) * (1 + within)) if within is not None and out else None
        while len(out) < count and not self.out_of_time():
            o = self.lexicographic(objectives, off, forbid=forbid,
                                   bounds={objectives[0]: cap} if cap is not None else None)
            if o.selection is None:
                break
            out.append(o.selection)
            forbid.append(o.selection.picks)
            if within is not None and cap is None:
                cap = int(value_of(o.selection, objectives[0]) * (1 + within))
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

    def core(self) -> list[str]:
        """Constraint groups that cannot hold together (a small, not always minimal, set)."""
        from ortools.sat.python import cp_model

        if any(len(c.table) == 0 for c in self.cands):
            return []
        model, _, _, lits = self.build(groups=True)
        model.add_assumptions(list(lits.values()))
        solver = self._solver(assumptions=True)
        if solver.solve(model) != cp_model.INFEASIBLE:
            return []
        names = {v.index: k for k, v in lits.items()}
        return [names[i] for i in solver.sufficient_assumptions_for_infeasibility() if i in names]


def value_of(sel: Selection, name: str) -> int:
    return {"cost": sel.cost_cents, "time": sel.time_s, "gpus": sel.gpus}[name]


# --------------------------------------------------------------------------------------------
# Explanations
# --------------------------------------------------------------------------------------------

def layout_label(fields: dict[str, Any]) -> str:
    """TP8 PP16 VPP2 DP12 CP1 EP1 ZeRO-1 recompute=selective SP mbs1 (grid codes or Layout values)."""
    rec = fields["recompute"]
    if not isinstance(rec, str):
        from planner.search.space import RECOMPUTE

        rec = RECOMPUTE[int(rec)]
    return (f"TP{fields['tp']} PP{fields['pp']} VPP{fields['vpp']} DP{fields['dp']} CP{fields['cp']} "
            f"EP{fields['ep']} ZeRO-{fields['zero']} recompute={rec}"
            f"{' SP' if fields['sequence_parallel'] else ''} mbs{fields['micro_batch']}")


def describe(c: JobCandidates, k: int) -> str:
    """'1,024 × h100-sxm (TP8 ...)' for row k of a job's candidate table."""
    r = c.table.iloc[k]
    return f"{int(r['gpus']):,} × {r['sku']} ({layout_label(c.grid.layout(int(r['row'])).model_dump())})"


def days(seconds: float) -> str:
    d = seconds / SECONDS_PER_DAY
    return f"{d:,.1f} days" if d >= 1 else f"{seconds / 3600:,.1f} hours"


def usd(cents: float) -> str:
    return f"${cents / 100:,.0f}"


def describe_selection(sel_: Selector, s: Selection) -> str:
    parts = [(f"{c.job.name}: " if len(sel_.cands) > 1 else "") + describe(c, k)
             for c, k in zip(sel_.cands, s.picks, strict=True)]
    return f"{usd(s.cost_cents)} in {days(s.time_s)} on " + "; ".join(parts)


def group_label(sel_: Selector, name: str) -> str:
    """'the 30-day deadline of gpt3', 'the $5,000 budget', 'the h100-sxm inventory (512)', ..."""
    p = sel_.problem
    kind, _, what = name.partition(":")
    if kind == "deadline":
        job = next(c.job for c in sel_.cands if c.job.name == what)
        return f"the {job.deadline_days:g}-day deadline of {what}"
    if kind == "budget":
        return f"the {usd(budget_cents(p.budget_usd) or 0)} budget"
    if kind == "inventory":
        sku = next(s for s in p.skus if s.name == what)
        return f"the {what} inventory ({sku.inventory:,} GPUs)"
    if kind == "max_gpus":
        return f"max_gpus ({p.max_gpus:,})"
    return f"min_gpus ({p.min_gpus:,})"


def memory_lines(c: JobCandidates) -> list[str]:
    """Where memory rules a SKU out: its smallest per-GPU footprint over every legal layout."""
    out = []
    for s in c.stats:
        if s.fits or s.min_memory is None or s.min_memory_row is None:
            continue
        lay = c.grid.layout(s.min_memory_row)
        out.append(f"{c.job.name}: nothing fits on {s.sku}: the smallest per-GPU memory of any legal layout is "
                   f"{s.min_memory / GIB:,.1f} GiB ({layout_label(lay.model_dump())} on {lay.gpus:,} GPUs), "
                   f"above its {s.capacity / GIB:,.1f} GiB")
    return out


def explain_infeasible(sel_: Selector, relaxed: Sequence[JobCandidates] | None) -> list[str]:
    """Why no plan exists, with numbers: memory, the fastest plan within the inventory, the GPUs a
    deadline needs, what lifting the deadline / budget / inventory would give, and the CP-SAT core.
    `relaxed` holds the same jobs' candidates with inventories and GPU caps lifted."""
    p = sel_.problem
    reasons: list[str] = []
    for j, c in enumerate(sel_.cands):
        if c.table.empty:
            if not any(s.legal for s in c.stats):
                from planner.search.space import fixed_field_problems, job_skus

                node = max(s.node for s in job_skus(p, c.job))
                why = "; ".join(fixed_field_problems(c.job, node)) or (
                    "no GPU count within the caps and the job's bounds is sold (whole nodes, or part of one)")
                reasons.append(f"{c.job.name}: no legal layout: {why}")
            else:
                reasons.append(f"{c.job.name}: no legal layout fits in GPU memory on any allowed SKU")
                reasons += memory_lines(c)
            continue
        limit = deadline_seconds(c.job.deadline_days)
        if limit is None:
            continue
        t = c.table
        k = int(t["time_s"].to_numpy().argmin())
        fastest = int(t["time_s"].iat[k])
        reasons.append(f"{c.job.name}: the fastest plan within the inventory takes {days(fastest)} on "
                       f"{describe(c, k)}; its deadline is {days(limit)}")
        if fastest <= limit or relaxed is None:
            continue
        reasons += memory_lines(c)  # a SKU that cannot hold the model may be the one that would be fast
        rt = relaxed[j].table
        ok = np.flatnonzero(rt["time_s"].to_numpy() <= limit)
        if len(ok):
            m = int(ok[np.lexsort((rt["cost_cents"].to_numpy()[ok], rt["gpus"].to_numpy()[ok]))[0]])
            have = [f"{s.name} inventory {s.inventory:,}" for s in p.skus if s.inventory is not None]
            if p.max_gpus is not None:
                have.append(f"max_gpus {p.max_gpus:,}")
            reasons.append(f"{c.job.name}: meeting its deadline needs at least {int(rt['gpus'].iat[m]):,} GPUs: "
                           f"{describe(relaxed[j], m)} takes {days(int(rt['time_s'].iat[m]))}; the scenario allows "
                           + ", ".join(have))
        else:
            from planner.search.space import DEFAULT_MAX_GPUS

            reasons.append(f"{c.job.name}: no plan meets its deadline even with {DEFAULT_MAX_GPUS:,} GPUs of any "
                           "allowed SKU")
    if any(c.table.empty for c in sel_.cands):
        return reasons
    core = sel_.core()
    if core:
        reasons.append("these limits cannot all hold together: " + ", ".join(group_label(sel_, g) for g in core))
    deadlines = "deadlines" if sum(c.job.deadline_days is not None for c in sel_.cands) > 1 else "deadline"
    lifts = [("deadline", f"the {deadlines} lifted"), ("inventory", "the inventory and GPU caps lifted")]
    kinds = {g.split(":")[0] for g in core}
    for kind, label in lifts:
        if kind in kinds and not sel_.out_of_time():
            off = frozenset({kind, "max_gpus"} if kind == "inventory" else {kind})
            o = sel_.lexicographic(("cost", "time", "rank"), off)
            if o.selection is not None:
                reasons.append(f"with {label}, the cheapest plan: " + describe_selection(sel_, o.selection))
    budget = budget_cents(p.budget_usd)
    if budget is not None and "budget" in kinds and not sel_.out_of_time():
        o = sel_.lexicographic(("cost", "time", "rank"), frozenset({"budget"}))
        if o.selection is not None:
            reasons.append(f"the cheapest plan within every other limit costs {usd(o.selection.cost_cents)}, "
                           f"above the {usd(budget)} budget: " + describe_selection(sel_, o.selection))
    return reasons


def group_names(sel_: Selector) -> list[str]:
    """The constraint groups the model holds."""
    _, _, _, lits = sel_.build(groups=True)
    return list(lits)


def slack(sel_: Selector, name: str, best: Selection) -> str:
    """How far the plan is from a limit that does not bind."""
    kind, _, what = name.partition(":")
    p = sel_.problem
    if kind == "deadline":
        j = next(i for i, c in enumerate(sel_.cands) if c.job.name == what)
        used = int(sel_.cands[j].table["time_s"].iat[best.picks[j]])
        return f"{days(used)} of {days(deadline_seconds(sel_.cands[j].job.deadline_days) or 0)}"
    if kind == "budget":
        return f"{usd(best.cost_cents)} of {usd(budget_cents(p.budget_usd) or 0)}"
    if kind == "inventory":
        used = sum(int(c.table["gpus"].iat[k]) for c, k in zip(sel_.cands, best.picks, strict=True)
                   if c.table["sku"].iat[k] == what)
        return f"{used:,} GPUs used"
    return f"{best.gpus:,} GPUs used"


def explain_binding(sel_: Selector, objectives: Sequence[str], best: Selection) -> list[str]:
    """Which limits shape the optimum: each group whose removal improves the first objective, with the
    plan it would allow, and memory where a faster layout exists on the chosen SKU and GPU count."""
    from planner.search.candidates import microseconds, step_seconds

    out: list[str] = []
    primary = objectives[0]
    v = value_of(best, primary)
    fmt = usd if primary == "cost" else days
    for g in group_names(sel_):
        if sel_.out_of_time():
            break
        o = sel_.lexicographic(objectives, frozenset({g}))
        label = group_label(sel_, g)
        if o.selection is not None and value_of(o.selection, primary) < v:
            w = value_of(o.selection, primary)
            change = (w - v) / v
            out.append(f"{label} binds: without it the {primary} would be {fmt(w)} instead of {fmt(v)} "
                       f"({change:+.{1 if abs(change) >= 1e-3 else 3}%}): " + describe_selection(sel_, o.selection))
        else:
            out.append(f"{label} does not bind ({slack(sel_, g, best)})")
    p = sel_.problem
    for c, k in zip(sel_.cands, best.picks, strict=True):
        r = c.table.iloc[k]
        sku = next(s for s in p.skus if s.name == r["sku"])
        rows = np.flatnonzero(c.grid.allowed_on(sku, p.cap(sku, c.job)) & (c.grid.gpus == int(r["gpus"])))
        step_us = microseconds(step_seconds(p, sku, c.grid, rows))
        f = int(np.argmin(step_us))
        if step_us[f] < int(r["step_us"]):
            need, slower = int(c.memory[rows[f]]), int(r["step_us"]) / step_us[f] - 1
            out.append(
                f"memory binds for {c.job.name} on {int(r['gpus']):,} × {sku.name}: the fastest layout there "
                f"({layout_label(c.grid.layout(int(rows[f])).model_dump())}) needs {need / GIB:,.1f} GiB of "
                f"{sku.gpu.hbm_bytes / GIB:,.1f} GiB; the plan's step is {slower:.1%} slower")
    return out
