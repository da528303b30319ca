"""`solve(scenario)`: which GPU, how many, and which layout, proven optimal under the model.

The scenario is resolved once (planner.search.problem), every job's legal layouts are evaluated
vectorised into one candidate per (SKU, GPU count) (planner.search.candidates), CP-SAT chooses
(planner.search.cpsat), and every plan it returns is re-evaluated by the scalar model and re-checked
(planner.search.plans). Without a plan, planner.search.explain says why with numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from planner.errors import InputError, expect
from planner.limits import MAX_MARGIN, MAX_TIME_LIMIT_S, MAX_TOP_K, MAX_WORKERS
from planner.scenario import Scenario
from planner.schema import Implementation
from planner.search import NEAR_OPTIMAL_MARGIN
from planner.search.candidates import OutOfTime, all_candidates, job_candidates
from planner.search.cpsat import OBJECTIVES, Selector
from planner.search.explain import explain_binding, explain_infeasible
from planner.search.plans import Plan, PlanBook, Solution
from planner.search.problem import resolve_problem
from planner.search.pruning import pruned_candidates

__all__ = ["NEAR_OPTIMAL_MARGIN", "Plan", "Solution", "SolveResult", "solve"]

NEAR_OPTIMAL_MAX = 20
PARETO_MAX_POINTS = 40
SEED = 0


@dataclass
class SolveResult:
    status: str  # optimal | feasible (time limit: best found, see gap) | infeasible | unknown
    objective: str
    seconds: float
    search_space_size: int  # legal (SKU, layout) pairs
    candidates: int
    layouts_evaluated: int  # pairs whose memory and step time were computed (the rest pruned by bounds)
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
    random_seed: int = SEED
    implementation: Implementation = field(default_factory=Implementation)  # the stack the plans run on

    @property
    def plans(self) -> list[Plan]:
        """One job: the ranked plans. Several jobs: the best solution's plan for each job."""
        if len(self.jobs) > 1:
            return list(self.solutions[0].plans) if self.solutions else []
        return [s.plans[0] for s in self.solutions]

    def to_dict(self, timing: bool = True) -> dict[str, Any]:
        """The JSON of `planner solve --format json` (built by planner.report.dicts)."""
        from planner.report.dicts import solve_dict

        return solve_dict(self, timing)

    def to_json(self, timing: bool = True) -> str:
        from planner.report.formats import to_json

        return to_json(self.to_dict(timing))

    def emit(self, framework: str) -> str:
        """The best plan as paste-ready framework input (megatron, deepspeed, torchtitan); several jobs give
        one block each, named. InfeasibleError without a plan, InputError where the framework cannot run it."""
        import json

        from planner.errors import InfeasibleError
        from planner.interop.frameworks import export

        if not self.plans:
            raise InfeasibleError("; ".join(self.reasons) or self.status)
        plans = self.plans if len(self.jobs) > 1 else self.plans[:1]
        texts = {p.job: export(framework, p.evaluation.layout, model=p.evaluation.model, seq=p.evaluation.seq,
                               implementation=self.implementation) for p in plans}
        if len(texts) == 1:
            return next(iter(texts.values()))
        if framework == "deepspeed":  # JSON has no comments: one object keyed by job
            return json.dumps({job: json.loads(t) for job, t in texts.items()}, indent=2) + "\n"
        return "".join(f"# job {job}\n{t}\n" for job, t in texts.items())


def _check_knobs(*, time_limit_s: Any, top_k: Any, margin: Any, num_workers: Any) -> None:
    """The search knobs in the ranges `planner solve`'s flags take; an InputError naming the flag otherwise."""
    # (flag, value, lowest, highest, whole); the time limit only positive: any limit answers, if with no plan
    for flag, value, low, high, whole in (("--time-limit", time_limit_s, 0.0, MAX_TIME_LIMIT_S, False),
                                          ("--top-k", top_k, 1, MAX_TOP_K, True),
                                          ("--margin", margin, 0.0, MAX_MARGIN, False),
                                          ("--workers", num_workers, 1, MAX_WORKERS, True)):
        if value is None and flag == "--top-k":
            continue
        number = not isinstance(value, bool) and isinstance(value, int if whole else (int, float))
        if not number or not math.isfinite(value) or not low <= value <= high or (flag == "--time-limit" and
                                                                                  value <= 0):
            kind = "a whole number" if whole else "a number"
            raise InputError(f"{flag}: {value!r} must be {kind} from {low:g} to {high:g}"
                             + (" (above 0)" if flag == "--time-limit" else ""))


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
    prune: bool = True,
) -> SolveResult:
    """Search every SKU, GPU count and layout the scenario allows; best plans first.

    `time_limit_s` bounds the whole call: when it runs out the best plan found so far is returned with
    status 'feasible' and its optimality gap. `num_workers=1` keeps CP-SAT deterministic (the default;
    more workers only help the multi-job models, and may pick another of several equal optima).
    `prune=False` evaluates every layout (planner.search.pruning skips those that cannot matter, with the
    same plans, runner-ups and near-optimal set).
    """
    expect(scenario, Scenario, "solve(scenario)")
    _check_knobs(time_limit_s=time_limit_s, top_k=top_k, margin=margin, num_workers=num_workers)
    say = progress or (lambda _msg: None)
    start = time.monotonic()
    say("resolving the scenario")
    problem = resolve_problem(scenario)
    objectives = OBJECTIVES[problem.objective]
    k = top_k or scenario.top_k
    say("evaluating the layout grid")
    cands, pruning = None, None

    def out_of_time(e: OutOfTime) -> SolveResult:
        return SolveResult(status="unknown", objective=problem.objective, seconds=time.monotonic() - start,
                           search_space_size=0, candidates=0, layouts_evaluated=0, margin=margin,
                           skipped=list(problem.skipped), jobs=[j.name for j in problem.jobs],
                           num_workers=num_workers, implementation=scenario.implementation, reasons=[str(e)])

    if prune and len(problem.jobs) == 1 and not (explain or problem.lifted_caps):
        try:
            got = pruned_candidates(problem, problem.jobs[0], objectives[0], k, margin, front=pareto,
                                    deadline_at=start + time_limit_s)
        except OutOfTime as e:
            return out_of_time(e)
        if got is not None:
            cands, pruning = [got[0]], got[1]
    if cands is not None:
        selector = Selector(problem, cands, num_workers=num_workers, seed=SEED, deadline_at=start + time_limit_s)
        best = selector.lexicographic(objectives)
    if cands is None or best.selection is None:  # no floor, or no plan: explanations read every layout
        try:
            cands, pruning = all_candidates(problem, deadline_at=start + time_limit_s), None
        except OutOfTime as e:
            return out_of_time(e)
        selector = Selector(problem, cands, num_workers=num_workers, seed=SEED, deadline_at=start + time_limit_s)
        best = selector.lexicographic(objectives)
    space = sum(c.space_size for c in cands)
    result = SolveResult(
        status="infeasible", objective=problem.objective, seconds=0.0, search_space_size=space,
        candidates=sum(len(c.table) for c in cands), layouts_evaluated=pruning.evaluated if pruning else space,
        margin=margin, skipped=list(problem.skipped), jobs=[j.name for j in problem.jobs], num_workers=num_workers,
        implementation=scenario.implementation,
    )
    say(f"CP-SAT over {result.candidates:,} candidates ({result.layouts_evaluated:,} of "
        f"{result.search_space_size:,} layouts evaluated)")
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
    plans = PlanBook(problem, cands)
    say("ranking runner-ups")
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
