"""The solver: which GPU, how many, and which layout, proven optimal under the model.

`solve(scenario)` resolves the scenario (space.py), evaluates the legal grid vectorised into one
candidate per (SKU, GPU count) and job (candidates.py), lets CP-SAT choose (cpsat.py), and re-checks
every plan it returns with `planner.workloads.training.evaluation.evaluate`, the scalar model `planner estimate` uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from planner.model.perf import SECONDS_PER_DAY
from planner.scenario import Scenario
from planner.search.candidates import JobCandidates, all_candidates, job_candidates
from planner.search.cpsat import OBJECTIVES, Selection, Selector, explain_binding, explain_infeasible
from planner.search.space import Problem, resolve_problem
from planner.workloads.training.evaluation import Evaluation, evaluate

__all__ = ["NEAR_OPTIMAL_MARGIN", "Plan", "Solution", "SolveResult", "check_solution", "solve"]

# Published cost models are 3-15 % off measurement (reference/solver.md §0): plans within a few percent
# of the optimum are ties under the model, so solve lists them.
NEAR_OPTIMAL_MARGIN = 0.03
NEAR_OPTIMAL_MAX = 20
PARETO_MAX_POINTS = 40
SEED = 0


@dataclass(frozen=True)
class Plan:
    """One job's chosen SKU, GPU count and layout, with the scalar model's evaluation of it."""

    job: str
    evaluation: Evaluation
    step_us: int  # the solver's integer units (rounded up)
    time_s: int
    cost_cents: int

    @property
    def sku(self) -> str:
        return self.evaluation.gpu.name

    @property
    def gpus(self) -> int:
        return self.evaluation.layout.gpus

    @property
    def nodes(self) -> int:
        return self.evaluation.nodes

    def to_dict(self) -> dict[str, Any]:
        from planner.workflows.estimate import cost_dict, layout_dict, memory_dict, time_dict

        ev = self.evaluation
        return {
            "job": self.job,
            "sku": self.sku,
            "gpus": self.gpus,
            "nodes": self.nodes,
            "gpus_per_node": ev.gpus_per_node,
            "layout": layout_dict(ev.layout),
            "memory": memory_dict(ev),
            "time": time_dict(ev),
            "cost": cost_dict(ev),
            "solver_units": {"step_us": self.step_us, "time_s": self.time_s, "cost_cents": self.cost_cents},
        }


@dataclass(frozen=True)
class Solution:
    """One plan per job, chosen together."""

    plans: tuple[Plan, ...]
    cost_cents: int
    time_s: int  # when the last job finishes
    gpus: int

    @property
    def cost_usd(self) -> float:
        return self.cost_cents / 100

    @property
    def days(self) -> float:
        return self.time_s / SECONDS_PER_DAY

    def summary(self) -> dict[str, Any]:
        from planner.workflows.estimate import layout_dict

        return {
            "cost_usd": self.cost_usd,
            "days": self.days,
            "gpus": self.gpus,
            "plans": [{"job": p.job, "sku": p.sku, "gpus": p.gpus, "nodes": p.nodes,
                       "layout": layout_dict(p.evaluation.layout), "cost_usd": p.evaluation.cost_usd,
                       "days": p.evaluation.time.days} for p in self.plans],
        }


@dataclass
class SolveResult:
    status: str  # optimal | feasible (time limit: best found, see gap) | infeasible | unknown
    objective: str
    seconds: float
    search_space_size: int
    candidates: int
    solutions: list[Solution] = field(default_factory=list)  # best first: the optimum and runner-ups
    near_optimal: list[Solution] = field(default_factory=list)
    margin: float = NEAR_OPTIMAL_MARGIN
    pareto: list[Solution] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why infeasible
    binding: list[str] = field(default_factory=list)  # with explain: which limits shape the optimum
    gap: float | None = None
    skipped: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    num_workers: int = 1

    @property
    def plans(self) -> list[Plan]:
        """One job: the ranked plans. Several jobs: the best solution's plan for each job."""
        if len(self.jobs) > 1:
            return list(self.solutions[0].plans) if self.solutions else []
        return [s.plans[0] for s in self.solutions]

    def to_dict(self, timing: bool = True) -> dict[str, Any]:
        from ortools import __version__ as ortools_version

        solver: dict[str, Any] = {
            "seconds": round(self.seconds, 3) if timing else None,
            "search_space_size": self.search_space_size,
            "candidates": self.candidates,
            "gap": self.gap,
            "engine": f"CP-SAT (ortools {ortools_version})",
            "num_workers": self.num_workers,
            "random_seed": SEED,
        }
        out: dict[str, Any] = {
            "status": self.status,
            "objective": self.objective,
            "jobs": self.jobs,
            "solver": solver,
            "plans": [p.to_dict() | {"rank": i + 1} for i, p in enumerate(self.plans)],
        }
        if len(self.jobs) > 1:
            out["runner_ups"] = [s.summary() for s in self.solutions[1:]]
        out["near_optimal"] = {"margin": self.margin, "solutions": [s.summary() for s in self.near_optimal]}
        if self.pareto:
            out["pareto"] = [s.summary() for s in self.pareto]
        if self.binding:
            out["binding"] = self.binding
        if self.reasons:
            out["reasons"] = self.reasons
        if self.skipped:
            out["skipped_skus"] = self.skipped
        return out

    def to_json(self, timing: bool = True) -> str:
        return json.dumps(self.to_dict(timing), indent=2)


def check_solution(problem: Problem, solution: Solution) -> list[str]:
    """Every constraint, re-checked on the scalar evaluations: legal, fits, deadline, budget, inventory."""
    bad: list[str] = []
    for job, plan in zip(problem.jobs, solution.plans, strict=True):
        ev = plan.evaluation
        bad += [f"{job.name}: {p}" for p in ev.problems]
        if not ev.fits:
            bad.append(f"{job.name}: {ev.memory.total} B > {ev.capacity_bytes} B")
        if job.deadline_days is not None and ev.time.days > job.deadline_days:
            bad.append(f"{job.name}: {ev.time.days} days > deadline {job.deadline_days}")
        if job.fixed.gpus is not None and ev.layout.gpus != job.fixed.gpus:
            bad.append(f"{job.name}: {ev.layout.gpus} GPUs, fixed {job.fixed.gpus}")
    total = sum(p.gpus for p in solution.plans)
    cost = sum(p.evaluation.cost_usd or 0.0 for p in solution.plans)
    if problem.budget_usd is not None and cost > problem.budget_usd:
        bad.append(f"cost ${cost:,.2f} > budget ${problem.budget_usd:,.2f}")
    if problem.max_gpus is not None and total > problem.max_gpus:
        bad.append(f"{total} GPUs > max_gpus {problem.max_gpus}")
    if problem.min_gpus is not None and total < problem.min_gpus:
        bad.append(f"{total} GPUs < min_gpus {problem.min_gpus}")
    for sku in problem.skus:
        used = sum(p.gpus for p in solution.plans if p.sku == sku.name)
        if sku.inventory is not None and used > sku.inventory:
            bad.append(f"{used} × {sku.name} > inventory {sku.inventory}")
    return bad


class _Plans:
    """Evaluates chosen candidates with the scalar model, once each."""

    def __init__(self, problem: Problem, cands: Sequence[JobCandidates]) -> None:
        self.problem, self.cands = problem, cands
        self.cache: dict[tuple[int, int], Plan] = {}

    def plan(self, j: int, k: int) -> Plan:
        if (j, k) not in self.cache:
            p, c = self.problem, self.cands[j]
            r = c.table.iloc[k]
            sku = next(s for s in p.skus if s.name == r["sku"])
            ev = evaluate(c.job.model, c.grid.layout(int(r["row"])), sku.gpu, seq=c.job.seq, tokens=c.job.tokens,
                          gpus_per_node=sku.node, implementation=p.implementation, overheads=p.overheads,
                          efficiency=p.efficiency, pricing=p.pricing)
            self.cache[(j, k)] = Plan(c.job.name, ev, int(r["step_us"]), int(r["time_s"]), int(r["cost_cents"]))
        return self.cache[(j, k)]

    def solution(self, s: Selection) -> Solution:
        plans = tuple(self.plan(j, k) for j, k in enumerate(s.picks))
        sol = Solution(plans, s.cost_cents, s.time_s, s.gpus)
        bad = check_solution(self.problem, sol)
        if bad:  # the vectorised and scalar models disagree: a bug, never a plan to hand out
            raise RuntimeError("solver plan fails the independent re-check: " + "; ".join(bad))
        return sol


def solve(
    scenario: Scenario,
    *,
    time_limit_s: float = 60.0,
    pareto: bool = False,
    explain: bool = False,
    top_k: int | None = None,
    margin: float = NEAR_OPTIMAL_MARGIN,
    num_workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> SolveResult:
    """Search every SKU, GPU count and layout the scenario allows; best plans first.

    `time_limit_s` bounds the whole call: when it runs out the best plan found so far is returned with
    status 'feasible' and its optimality gap. `num_workers=1` keeps CP-SAT deterministic (the default;
    more workers only help the multi-job models, and may pick another of several equal optima).
    """
    say = progress or (lambda _msg: None)
    start = time.monotonic()
    say("resolving the scenario")
    problem = resolve_problem(scenario)
    say("evaluating the layout grid")
    cands = all_candidates(problem)
    selector = Selector(problem, cands, num_workers=num_workers, seed=SEED, deadline_at=start + time_limit_s)
    objectives = OBJECTIVES[scenario.objective]
    result = SolveResult(
        status="infeasible", objective=scenario.objective, seconds=0.0,
        search_space_size=sum(c.space_size for c in cands), candidates=sum(len(c.table) for c in cands),
        margin=margin, skipped=list(problem.skipped), jobs=[j.name for j in problem.jobs], num_workers=num_workers,
    )
    say(f"CP-SAT over {result.candidates:,} candidates ({result.search_space_size:,} layouts)")
    best = selector.lexicographic(objectives)
    result.status, result.gap = best.status, best.gap
    if best.selection is None:
        if best.status == "infeasible":
            say("explaining infeasibility")
            relaxed = None
            if any(j.deadline_days is not None for j in problem.jobs):
                lifted = resolve_problem(scenario, lift_caps=True)
                relaxed = [job_candidates(lifted, j) for j in lifted.jobs]
            result.reasons = explain_infeasible(selector, relaxed)
        else:
            result.reasons = [f"the {time_limit_s:g} s time limit ran out before any plan was found"]
        result.seconds = time.monotonic() - start
        return result
    plans = _Plans(problem, cands)
    say("ranking runner-ups")
    k = top_k or scenario.top_k
    near = selector.ranked(objectives, NEAR_OPTIMAL_MAX, within=margin, found=[best.selection])
    ranked = near[:k] if len(near) >= k else selector.ranked(objectives, k, found=near)
    result.solutions = [plans.solution(s) for s in ranked]
    result.near_optimal = [plans.solution(s) for s in near]
    if pareto:
        say("tracing the cost / time Pareto front")
        result.pareto = [plans.solution(s) for s in selector.pareto(max_points=PARETO_MAX_POINTS)]
    if explain:
        say("finding the binding constraints")
        result.binding = explain_binding(selector, objectives, best.selection)
    result.seconds = time.monotonic() - start
    return result
