"""Procurement comparison: every SKU × price sheet side by side, each with its own optimal plan.

The layout grid, memory and step times do not depend on the price, the deadline or the budget, so
they are evaluated once for every SKU (`job_candidates`, exactly as `solve` does). A price option
only reprices its SKU's rows of that candidate table; a deadline or budget only filters them. With
one job the CP-SAT model of `solve` is a one-hot choice over one table whose constraints are all
per-row limits, so its lexicographic optimum is the first row of the selector's own order
(`planner.search.cpsat.preference`) that meets the limits: every option and every sweep point is that
pure selection, and the chosen plan is re-evaluated and re-checked as `solve`'s plans are.

`compare(scenario)` returns one row per (SKU, price option) as a pandas DataFrame; `Comparison` keeps
the evaluated tables for sweeps (run in parallel across processes, in input order) and Pareto fronts;
`run_comparison(CompareRequest)` gives the `CompareResult` the CLI and the report layer show.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any, get_args

import numpy as np
import pandas as pd

from planner.errors import InputError, expect
from planner.limits import MAX_BUDGET_USD, MAX_DAYS, MAX_SWEEP_POINTS
from planner.model.memory import MemoryBreakdown
from planner.model.perf import BREAKDOWN_KEYS, SECONDS_PER_DAY
from planner.pricing import HourlyRate, hourly_rate
from planner.report.text import days, gib, layout_text, usd
from planner.scenario import Pricing, Scenario
from planner.schema import GIB, GpuSku, PriceKind
from planner.search.candidates import (
    CandidateTable,
    JobCandidates,
    SkuStats,
    budget_cents,
    deadline_seconds,
    integer_units,
    job_candidates,
)
from planner.search.cpsat import OBJECTIVES, preference
from planner.search.plans import Plan, PlanBook, Solution, check_solution
from planner.search.problem import Problem, resolve_problem
from planner.search.pruning import reach_candidates

__all__ = ["DEFAULT_KINDS", "CompareRequest", "CompareResult", "Comparison", "Point", "PriceOption", "compare",
           "price_options", "run_comparison"]

# Price kinds compared unless asked otherwise: what a procurement decision weighs. Spot and AWS
# capacity blocks are short-lived rates, left to --kinds.
DEFAULT_KINDS: tuple[str, ...] = ("on-demand", "reserved-1y", "reserved-3y", "purchase")
KIND_ORDER: tuple[str, ...] = get_args(PriceKind)
MEMORY_PARTS = tuple(k for k in MemoryBreakdown.__dataclass_fields__ if k != "stage")
# A row (point × option) costs ~0.1 ms once its plan is evaluated, a process pool ~0.35 s to start
# (measured on 2 cores): below ~5,000 rows a sweep is as fast in one process, so that is the default.
PARALLEL_MIN_ROWS = 5_000
GOODPUT_POINTS = 33  # GPU counts on the goodput curve: 1/16× to 16× the chosen plan's, evenly on a log scale
Progress = Callable[[int, int, str], None]  # (points done, points in all, what is happening)


# --------------------------------------------------------------------------------------------
# Price options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceOption:
    """One way to pay for one SKU: a catalog price (or the scenario's override) and its hourly rate."""

    sku: str
    kind: str  # a catalog price kind, or "override"
    provider: str
    rate: HourlyRate
    pricing: Pricing  # the scenario's pricing narrowed to this price: `solve` with it reproduces the row
    date: str
    usd_per_gpu: float | None  # purchase: capex per GPU

    @property
    def label(self) -> str:
        return "scenario override" if self.kind == "override" else f"{self.provider} {self.kind}"


def price_options(gpu: GpuSku, pricing: Pricing, kinds: Sequence[str] = DEFAULT_KINDS) -> list[PriceOption]:
    """The SKU's catalog prices of the given kinds, one per (kind, provider), kinds in schema order.
    A scenario override (`pricing.usd_per_gpu_hour`) replaces them all, as it does in `solve`."""
    if pricing.usd_per_gpu_hour and gpu.name in pricing.usd_per_gpu_hour:
        return [PriceOption(gpu.name, "override", "scenario", hourly_rate(gpu, pricing), pricing, "", None)]
    out: list[PriceOption] = []
    seen: set[tuple[str, str]] = set()
    for p in sorted(gpu.prices, key=lambda p: KIND_ORDER.index(p.kind)):
        key = (p.kind, p.provider.lower())
        if p.kind not in kinds or key in seen:
            continue  # a provider's first entry of a kind is its catalog default (select_price)
        seen.add(key)
        narrowed = pricing.model_copy(update={"kind": p.kind, "provider": p.provider})
        out.append(PriceOption(gpu.name, p.kind, p.provider, hourly_rate(gpu, narrowed), narrowed, p.date,
                               p.usd_per_gpu))
    return out


# --------------------------------------------------------------------------------------------
# One option's search inputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """The limits one comparison is made under (a sweep varies one of them)."""

    deadline_days: float | None
    budget_usd: float | None
    objective: str


@dataclass
class Option:
    """A SKU at one price: its rows of the candidate table, repriced, and the single-SKU problem."""

    price: PriceOption
    problem: Problem
    cands: JobCandidates  # compact: the grid holds only the layouts the table and stats name
    stats: SkuStats
    cap: int  # most GPUs of this SKU the scenario allows
    cap_label: str | None  # "inventory 1,024" or "max_gpus 512" when that cap binds the search


def compact(c: JobCandidates, sku: str) -> tuple[JobCandidates, SkuStats]:
    """One SKU's part of a job's candidates with the grid cut to the rows it refers to, so that an
    option pickles in kilobytes (the full grid can hold millions of layouts). Row order is kept, so
    the grid-order tie-break is unchanged."""
    table = c.table.take(c.table.sku == sku)
    stats = next(s for s in c.stats if s.sku == sku)
    extra = [] if stats.min_memory_row is None else [stats.min_memory_row]
    keep = np.unique(np.concatenate([table.row, np.asarray(extra, dtype=np.int64)]))
    table = replace(table, row=np.searchsorted(keep, table.row).astype(np.int64))
    if stats.min_memory_row is not None:
        stats = replace(stats, min_memory_row=int(np.searchsorted(keep, stats.min_memory_row)))
    return JobCandidates(c.job, c.grid.subset(keep), c.memory[keep], table, [stats]), stats


def repriced(c: JobCandidates, rate: float, gpu: GpuSku) -> JobCandidates:
    """The table's cost column at another hourly rate. integer_units rounds step seconds up to whole
    µs; handing it the table's µs less half a µs makes it round back to exactly those µs (float error
    is ~1e-8 µs), so the cents are what `solve` computes at that rate."""
    t, w = c.table, c.job.workload
    factor = w.step_factor(c.grid, t.row, gpu)
    _, _, cents = integer_units((t.step_us.astype(np.float64) - 0.5) / 1e6, t.gpus, rate, w.steps,
                                w.checkpoint_bytes, w.basis, factor)
    return replace(c, table=t.with_costs(cents))


def select(t: CandidateTable, point: Point, min_gpus: int | None) -> int | None:
    """The row `Selector.lexicographic` picks for one job over one table: the first of the selector's
    own order (the objectives, then its rank term) that meets the limits."""
    ok = limits_mask(t, point, min_gpus)
    order = preference(t, OBJECTIVES[point.objective])
    first = np.flatnonzero(ok[order])
    return int(order[first[0]]) if len(first) else None


def limits_mask(t: CandidateTable, point: Point, min_gpus: int | None, *, budget: bool = True,
                deadline: bool = True) -> np.ndarray:
    ok = np.ones(len(t), dtype=bool)
    if min_gpus is not None:
        ok &= t.gpus >= min_gpus
    limit = deadline_seconds(point.deadline_days)
    if deadline and limit is not None:
        ok &= t.time_s <= limit
    cents = budget_cents(point.budget_usd)
    if budget and cents is not None:
        ok &= t.cost_cents <= cents
    return ok


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------


class Comparison:
    """Every (SKU, price option) of one scenario, evaluated once; rows for any deadline or budget."""

    def __init__(self, scenario: Scenario, *, kinds: Sequence[str] = DEFAULT_KINDS,
                 progress: Progress | None = None, prune: bool = True) -> None:
        from planner.catalog import load_gpus

        if scenario.jobs:
            raise InputError("jobs: compare plans one job (each option runs it alone); remove `jobs:` or "
                             "use `planner solve` for shared inventories")
        bad = [k for k in kinds if k not in KIND_ORDER]
        if bad or not kinds:
            raise InputError(f"--kinds: {', '.join(bad) or '(none)'}: use {', '.join(KIND_ORDER)}")
        say = progress or (lambda _d, _t, _m: None)
        self.scenario = scenario
        self.kinds = tuple(kinds)
        # Resolve SKUs, nodes and inventories without a price lookup (each option prices itself below):
        # an override for every catalog GPU keeps resolve_problem from skipping SKUs without one.
        flat = {name: 1.0 for name in load_gpus()}
        self._placeholder = scenario.model_copy(
            update={"pricing": scenario.pricing.model_copy(update={"usd_per_gpu_hour": flat})})
        base = resolve_problem(self._placeholder)
        self.job = base.jobs[0]
        offers = {s.name: price_options(s.gpu, scenario.pricing, self.kinds) for s in base.skus}
        self.unpriced = [s.name for s in base.skus if not offers[s.name]]
        priced = tuple(s for s in base.skus if offers[s.name])
        if not priced:
            raise InputError(f"pricing: no SKU of the scenario has a {' / '.join(self.kinds)} price in the catalog")
        self.problem = replace(base, skus=priced)
        say(0, 0, f"evaluating the layout grid on {len(priced)} SKUs")
        self.prune = prune
        cands = job_candidates(self.problem, self.job)
        self.options: list[Option] = []
        for sku in priced:
            part, stats = compact(cands, sku.name)
            cap = self.problem.cap(sku, self.job)
            label = None
            if sku.inventory is not None and sku.inventory == cap:
                label = f"inventory {cap:,}"
            elif self.problem.max_gpus is not None and self.problem.max_gpus == cap:
                label = f"max_gpus {cap:,}"
            for offer in offers[sku.name]:
                problem = replace(self.problem, skus=(replace(sku, rate=offer.rate),))
                own, ostats, ocap, olabel = part, stats, cap, label
                if offer.rate.max_gpus is not None and offer.rate.max_gpus < cap:
                    # an offer that rents fewer GPUs together is its own, smaller search (as solve caps it)
                    ocap = offer.rate.max_gpus
                    olabel = f"inventory {ocap:,}, the most this price rents together"
                    problem = replace(problem, skus=(replace(problem.skus[0], inventory=ocap),))
                    own, ostats = compact(job_candidates(problem, self.job), sku.name)
                priced_part = repriced(own, offer.rate.usd_per_gpu_hour, sku.gpu)
                self.options.append(Option(offer, problem, priced_part, ostats, ocap, olabel))
        self.relaxed: dict[str, CandidateTable] | None = None  # caps lifted, for "needs N GPUs" reasons (beyond
        # each cap only, when pruned: within it the option's own table answers)
        self._reach: tuple[float, float] = (math.inf, -math.inf)  # the deadlines (s) `relaxed` answers for
        self._plans: dict[int, PlanBook] = {}

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_plans": {}}  # evaluations are cheap to redo, costly to pickle

    # ----------------------------------------------------------------------------------------

    @property
    def base(self) -> Point:
        c = self.scenario.constraints
        return Point(c.deadline_days, c.budget_usd, self.scenario.objective)

    def ensure_relaxed(self, points: Sequence[Point]) -> None:
        """Build the caps-lifted tables if any option may miss a deadline because of its cap: pruned, beyond each
        cap and as far as "fits on N GPUs" and "needs N GPUs" for these points' deadlines (and those asked
        before) need them."""
        if not any(o.cap_label for o in self.options):
            return
        limits = [deadline_seconds(p.deadline_days) for p in points]
        tight = min((x for x in limits if x is not None), default=None)
        if not any(o.cap_label and (len(o.cands.table) == 0 or (tight is not None and
                                                                int(o.cands.table.time_s.min()) > tight))
                   for o in self.options):
            return
        seconds = [math.inf if x is None else float(x) for x in limits]
        reach = (min(self._reach[0], *seconds), max(self._reach[1], *seconds))
        if self.relaxed is not None and reach == self._reach:
            return
        lifted = replace(resolve_problem(self._placeholder, lift_caps=True), skus=self.problem.skus)
        caps = {o.price.sku: o.cap for o in self.options}
        t = reach_candidates(lifted, lifted.jobs[0], caps, *reach) if self.prune else None
        if t is None:
            t = job_candidates(lifted, lifted.jobs[0]).table
        self.relaxed = {s.name: t.take(t.sku == s.name) for s in self.problem.skus}
        self._reach = reach

    def plan(self, i: int, k: int) -> Plan:
        if i not in self._plans:
            o = self.options[i]
            self._plans[i] = PlanBook(o.problem, [o.cands])
        return self._plans[i].plan(0, k)

    def rows(self, point: Point | None = None) -> list[dict[str, Any]]:
        """One row per option under `point` (default: the scenario's own limits), best first."""
        point = point or self.base
        self.ensure_relaxed([point])
        first = OBJECTIVES[point.objective][0]
        # options rank on what they were planned with (at the point estimate: the expected cost and days)
        key = "cost_planned_usd" if first == "cost" else "days_planned"
        found: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        for i, o in enumerate(self.options):
            row = self.price_columns(o) | {"deadline_days": point.deadline_days, "budget_usd": point.budget_usd,
                                                 "objective": point.objective}
            k = select(o.cands.table, point, self.problem.min_gpus)
            if k is None:
                found.append(((1, i), row | {"feasible": False, "reason": self.reason(o, point)}))
                continue
            row |= {"feasible": True} | self.plan_columns(i, k, point)
            objective_keys = tuple(row["cost_planned_usd" if n == "cost" else "days_planned"]
                                   for n in OBJECTIVES[point.objective] if n != "rank")
            found.append(((0, *objective_keys, i), row))
        found.sort(key=lambda kr: kr[0])
        out = [r for _, r in found]
        best = next((r[key] for r in out if r["feasible"]), None)
        for r in out:
            r["gap"] = r[key] / best - 1.0 if r["feasible"] and best else None
        kinds = ", ".join(self.kinds)
        out += [{"sku": s, "feasible": False, "deadline_days": point.deadline_days, "budget_usd": point.budget_usd,
                 "objective": point.objective, "reason": f"no {kinds} price in the catalog"} for s in self.unpriced]
        return out

    def price_columns(self, o: Option) -> dict[str, Any]:
        p = o.price
        # the resolved SKU, so scenario-defined GPUs (`gpus:`) are found as the search found them
        gpu = next(s.gpu for s in o.problem.skus if s.name == p.sku)
        return {"sku": p.sku, "pricing": p.label, "kind": p.kind, "provider": p.provider,
                "usd_per_gpu_hour": p.rate.usd_per_gpu_hour, "price_date": p.date, "price_source": p.rate.source,
                "capacity_gib": gpu.hbm_bytes / GIB}

    def plan_columns(self, i: int, k: int, point: Point) -> dict[str, Any]:
        o = self.options[i]
        plan = self.plan(i, k)
        t = o.cands.table
        solution = Solution((plan,), int(t.cost_cents[k]), int(t.time_s[k]), int(t.gpus[k]))
        job = replace(o.problem.jobs[0], deadline_days=point.deadline_days)
        bad = check_solution(replace(o.problem, jobs=(job,), budget_usd=point.budget_usd), solution)
        if bad:  # the vectorised and scalar models disagree: a bug, never a row to hand out
            raise RuntimeError("compare: plan fails the independent re-check: " + "; ".join(bad))
        ev = plan.evaluation
        tm, x = ev.time, ev.expected
        cost = ev.cost_usd or 0.0
        low, high = ev.days_range
        cols: dict[str, Any] = {
            "gpus": plan.gpus, "nodes": plan.nodes, "layout": layout_text(ev.layout),
            "memory_gib": ev.memory.total / GIB, "mfu": tm.mfu, "days": x.days, "days_ideal": tm.days,
            "days_low": low, "days_high": high, "days_planned": ev.planned_days, "goodput": x.goodput,
            "expected_interruptions": x.expected_interruptions, "warnings": "; ".join(ev.warnings) or None,
            "memory_high_gib": ev.memory_range[1] / GIB, "memory_margin": ev.memory_margin,
            "gpu_hours": x.gpu_hours,
            "energy_mwh": ev.energy_kwh / 1000.0, "cost_usd": cost, "cost_planned_usd": ev.planned_cost_usd or 0.0,
            "usd_per_million_tokens": ev.usd_per_million_tokens,
            "upfront_usd": plan.gpus * o.price.usd_per_gpu if o.price.usd_per_gpu else None,
        }
        cols |= {f"memory_{p}_gib": getattr(ev.memory, p) / GIB for p in MEMORY_PARTS}
        cols |= {f"step_{p}_s": tm.breakdown.get(p, 0.0) for p in BREAKDOWN_KEYS}
        return cols

    def reason(self, o: Option, point: Point) -> str:
        """Why no plan on this SKU at this price meets the limits, in one short line."""
        t, s, job = o.cands.table, o.stats, self.job
        relaxed = None if self.relaxed is None else self.relaxed[o.price.sku]
        if len(t) == 0:
            if s.legal == 0 or s.min_memory is None:
                why = "; ".join(job.workload.fixed_field_problems(o.problem.skus[0].node))
                return f"no legal layout: {why}" if why else f"no GPU count within {o.cap:,} is sold"
            msg = f"does not fit: {gib(s.min_memory)} per GPU at best, {gib(s.capacity)} available"
            if relaxed is not None and len(relaxed) and o.cap_label:
                msg += f" (fits on {int(relaxed.gpus.min()):,} GPUs; {o.cap_label})"
            return msg
        min_gpus = self.problem.min_gpus
        if not limits_mask(t, point, min_gpus, budget=False, deadline=False).any():
            return f"min_gpus {min_gpus:,}: at most {int(t.gpus.max()):,} GPUs run ({o.cap_label or 'search limit'})"
        if not limits_mask(t, point, min_gpus, budget=False).any():
            limit = deadline_seconds(point.deadline_days) or 0
            if relaxed is not None and o.cap_label:
                ok = limits_mask(relaxed, point, min_gpus, budget=False)
                if ok.any():
                    return f"needs {int(relaxed.gpus[ok].min()):,} GPUs, {o.cap_label}"
            return f"too slow: {days(int(t.time_s.min()))} at best, deadline {days(limit)}"
        cheapest = int(t.cost_cents[limits_mask(t, point, min_gpus, budget=False)].min())
        within = "meeting the deadline " if point.deadline_days is not None else ""
        return f"over budget: {within}costs {usd(cheapest / 100)} at least, budget {usd(point.budget_usd or 0)}"

    def missing_kinds(self) -> list[str]:
        """Price kinds asked for that no option has."""
        return [k for k in self.kinds if not any(o.price.kind == k for o in self.options)]

    @property
    def skus(self) -> list[str]:
        """Every SKU of the scenario, in its order (priced ones first)."""
        return [s.name for s in self.problem.skus] + self.unpriced

    # ----------------------------------------------------------------------------------------

    def frame(self, point: Point | None = None) -> pd.DataFrame:
        return to_frame(self.rows(point))

    def sweep(self, *, deadlines: Sequence[float] = (), budgets: Sequence[float] = (), workers: int | None = None,
              progress: Progress | None = None) -> pd.DataFrame:
        """Rows at every deadline (the scenario's objective) or every budget (the fastest plan within it),
        in input order. `workers` > 1 runs the points in that many processes; by default only sweeps of
        PARALLEL_MIN_ROWS rows or more do (from a script, guard its entry with `if __name__ == "__main__"`,
        as every process pool needs)."""
        points = self.points(deadlines, budgets)
        if not points:
            return self.frame()
        self.ensure_relaxed(points)  # once here, not in every worker
        say = progress or (lambda _d, _t, _m: None)
        if workers is None:
            workers = (os.cpu_count() or 1) if len(points) * len(self.options) >= PARALLEL_MIN_ROWS else 1
        workers = min(len(points), workers)
        results: list[list[dict[str, Any]]] = []
        if workers <= 1:
            for n, p in enumerate(points):
                results.append(self.rows(p))
                say(n + 1, len(points), "sweeping")
        else:
            # forkserver: the parent holds threads (numpy pools, a progress bar) that fork would copy
            # mid-lock; preloading planner.workflows.compare makes each worker start warm
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["planner.workflows.compare"])
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(self,)) as pool:
                futures = [pool.submit(_worker_rows, p) for p in points]
                for n, _ in enumerate(as_completed(futures)):
                    say(n + 1, len(points), "sweeping")
                results = [f.result() for f in futures]
        return to_frame([r for rows in results for r in rows])

    def points(self, deadlines: Sequence[float] = (), budgets: Sequence[float] = ()) -> list[Point]:
        """A sweep's points: every deadline (the scenario's objective) or every budget (the fastest plan)."""
        if deadlines and budgets:
            raise InputError("--deadline and --budget: sweep one limit at a time")
        c = self.scenario.constraints
        if deadlines:
            return [Point(d, c.budget_usd, self.scenario.objective) for d in deadlines]
        return [Point(c.deadline_days, b, "time") for b in budgets]

    def goodput(self, base: pd.DataFrame | None = None, points: int = GOODPUT_POINTS) -> pd.DataFrame:
        """Goodput against GPU count for the best row's plan (`base`, default this comparison's rows): ideal
        and expected days at each count from 1/16 to 16× its GPUs (at the same ideal GPU-hours, perfect
        scaling), columns of planner.model.reliability.goodput_curve plus `chosen` (the plan's own count).
        Goodput itself depends only on the count, so the curve holds for any layout; empty without a plan."""
        from planner.model.reliability import goodput_curve

        rows = self.frame() if base is None else base
        ok = rows[rows["feasible"]]
        if ok.empty:
            return pd.DataFrame()
        r = ok.iloc[0]
        w = self.problem.jobs[0].workload
        chosen = int(r["gpus"])
        counts = np.unique(np.round(np.geomspace(max(1, chosen / 16), chosen * 16, points)).astype(np.int64))
        counts = np.union1d(counts, [chosen])
        curve = goodput_curve(float(r["gpu_hours"]) * float(r["goodput"]), counts, w.checkpoint_bytes,
                              w.basis.reliability or "none")
        return curve.assign(sku=r["sku"], layout=r["layout"], chosen=curve["gpus"] == chosen)

    def pareto(self) -> pd.DataFrame:
        """Per SKU at its lowest hourly rate: the cost vs wall-clock front within the inventory (deadline
        and budget ignored), as `Selector.pareto` traces it: cheapest, then cheapest strictly faster, ...
        The days are the planned ones: expected with failures (at the scenario's confidence)."""
        out: list[dict[str, Any]] = []
        best: dict[str, Option] = {}
        for o in self.options:
            if o.price.sku not in best or o.price.rate.usd_per_gpu_hour < best[o.price.sku].price.rate.usd_per_gpu_hour:
                best[o.price.sku] = o
        for o in best.values():
            t = o.cands.table
            ok = limits_mask(t, self.base, self.problem.min_gpus, budget=False, deadline=False)
            fastest = math.inf
            for k in preference(t, ("cost", "time", "rank")).tolist():
                if not ok[k] or t.time_s[k] >= fastest:
                    continue
                fastest = int(t.time_s[k])
                out.append(self.price_columns(o) | {
                    "gpus": int(t.gpus[k]), "days": fastest / SECONDS_PER_DAY, "cost_usd": int(t.cost_cents[k]) / 100,
                    "layout": layout_text(o.cands.layout(k))})
        return pd.DataFrame(out)


_WORKER: Comparison | None = None


def _worker_init(comparison: Comparison) -> None:
    global _WORKER
    _WORKER = comparison


def _worker_rows(point: Point) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return _WORKER.rows(point)


# --------------------------------------------------------------------------------------------
# Frames and views
# --------------------------------------------------------------------------------------------

# The frame's columns. upfront_usd: a purchase's capex for the plan's GPUs; gap: the row's first objective
# over the best row's, minus one; memory_*_gib and step_*_s: the plan's breakdowns (the stacked-bar plots);
# memory_high_gib: the high end of the peak's range (Evaluation.memory_range), memory_margin why a plan that fits
# may not (appended last: the columns before keep their places).
COLUMNS = ("sku", "pricing", "kind", "provider", "usd_per_gpu_hour", "price_date", "price_source", "capacity_gib",
           "deadline_days", "budget_usd", "objective", "feasible", "gpus", "nodes", "layout", "memory_gib", "mfu",
           "days", "days_ideal", "days_low", "days_high", "days_planned", "goodput", "expected_interruptions",
           "gpu_hours", "energy_mwh", "cost_usd", "cost_planned_usd", "usd_per_million_tokens", "upfront_usd", "gap",
           "warnings", "reason",
           *(f"memory_{p}_gib" for p in MEMORY_PARTS), *(f"step_{p}_s" for p in BREAKDOWN_KEYS), "memory_high_gib",
           "memory_margin")


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({"gpus": "Int64", "nodes": "Int64", "feasible": bool})


def compare(
    scenario: Scenario,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    deadlines: Sequence[float] = (),
    budgets: Sequence[float] = (),
    workers: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """One row per (SKU, price option): the optimal plan's GPUs, nodes, layout, days, GPU-hours, energy,
    cost, $ per million tokens and gap to the best option, or the reason none exists. With `deadlines`
    or `budgets`, those rows at each sweep point (columns deadline_days / budget_usd say which)."""
    expect(scenario, Scenario, "compare(scenario)")
    check_sweep(deadlines, "--deadline", MAX_DAYS)
    check_sweep(budgets, "--budget", MAX_BUDGET_USD)
    c = Comparison(scenario, kinds=kinds, progress=progress)
    return c.sweep(deadlines=deadlines, budgets=budgets, workers=workers, progress=progress)


def check_sweep(values: Sequence[float], flag: str, high: float) -> None:
    """Sweep points as `planner compare` parses them: finite, positive, at most `high`, at most MAX_SWEEP_POINTS
    of them; an InputError naming the flag otherwise (the Python API meets the CLI's checks)."""
    if len(values) > MAX_SWEEP_POINTS:
        raise InputError(f"{flag}: {len(values):,} points; at most {MAX_SWEEP_POINTS:,}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= high:
            raise InputError(f"{flag}: {v!r} must be a positive number up to {high:g}")



@dataclass(frozen=True)
class CompareRequest:
    """A comparison to run: the scenario, the price kinds, and at most one sweep (deadlines or budgets)."""

    scenario: Scenario
    kinds: tuple[str, ...] = DEFAULT_KINDS
    deadlines: tuple[float, ...] = ()
    budgets: tuple[float, ...] = ()
    workers: int | None = None  # processes for sweep points (default: see Comparison.sweep)
    prune: bool = True  # False: evaluate every layout (the same rows; planner.search.pruning)

    def __post_init__(self) -> None:
        expect(self.scenario, Scenario, "CompareRequest.scenario")
        if self.deadlines and self.budgets:
            raise InputError("--deadline and --budget: sweep one limit at a time")
        check_sweep(self.deadlines, "--deadline", MAX_DAYS)
        check_sweep(self.budgets, "--budget", MAX_BUDGET_USD)


class SweptRows:
    """Rows at the scenario's own values (`base`) and, with a sweep, at each of its points (`sweep`): training
    and serving comparisons alike."""

    base: pd.DataFrame
    sweep: pd.DataFrame | None

    @property
    def frame(self) -> pd.DataFrame:
        """The sweep's rows when there is one, else the base rows."""
        return self.sweep if self.sweep is not None else self.base

    @property
    def feasible(self) -> bool:
        """Some option has a plan or a fleet (at some sweep point)."""
        return bool(self.frame["feasible"].any())


@dataclass
class CompareResult(SweptRows):
    """Every option under the scenario's own limits (`base`), and under each sweep point (`sweep`)."""

    comparison: Comparison
    base: pd.DataFrame
    sweep: pd.DataFrame | None = None
    swept: str | None = None  # the swept column: deadline_days or budget_usd


def run_comparison(request: CompareRequest, *, progress: Progress | None = None) -> CompareResult:
    """Evaluate every option once, then the scenario's own limits and any sweep."""
    say = progress or (lambda _d, _t, _m: None)
    cmp = Comparison(request.scenario, kinds=request.kinds, progress=say, prune=request.prune)
    cmp.ensure_relaxed([cmp.base, *cmp.points(request.deadlines, request.budgets)])  # once for every point
    say(0, 0, "choosing a plan per option")
    base = cmp.frame()
    if not (request.deadlines or request.budgets):
        return CompareResult(cmp, base)
    sweep = cmp.sweep(deadlines=request.deadlines, budgets=request.budgets, workers=request.workers, progress=say)
    return CompareResult(cmp, base, sweep, "deadline_days" if request.deadlines else "budget_usd")
