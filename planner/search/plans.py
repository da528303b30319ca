"""Plans: the chosen candidates evaluated the scalar way and re-checked against every limit.

The selector works on integer tables built by vectorised models; every plan it returns is evaluated
again by the workload's scalar model (`planner estimate`'s) and must pass `check_solution`, or it is a
bug and never a plan to hand out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.model.perf import SECONDS_PER_DAY
from planner.search.candidates import JobCandidates
from planner.search.cpsat import Selection
from planner.search.problem import Problem
from planner.workloads.training.evaluation import Evaluation


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
        if job.gpus is not None and ev.gpus != job.gpus:
            bad.append(f"{job.name}: {ev.gpus} GPUs, fixed {job.gpus}")
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


class PlanBook:
    """Evaluates chosen candidates with the scalar model, once each, and re-checks whole solutions."""

    def __init__(self, problem: Problem, cands: Sequence[JobCandidates]) -> None:
        self.problem, self.cands = problem, cands
        self.cache: dict[tuple[int, int], Plan] = {}

    def plan(self, j: int, k: int) -> Plan:
        """Row k of job j's candidate table as a plan."""
        if (j, k) not in self.cache:
            c = self.cands[j]
            t = c.table
            sku = next(s for s in self.problem.skus if s.name == t.sku[k])
            ev = c.job.workload.evaluate(c.layout(k), sku.gpu, sku.node, sku.rate)
            self.cache[(j, k)] = Plan(c.job.name, ev, int(t.step_us[k]), int(t.time_s[k]), int(t.cost_cents[k]))
        return self.cache[(j, k)]

    def solution(self, s: Selection) -> Solution:
        plans = tuple(self.plan(j, k) for j, k in enumerate(s.picks))
        sol = Solution(plans, s.cost_cents, s.time_s, s.gpus)
        bad = check_solution(self.problem, sol)
        if bad:  # the vectorised and scalar models disagree: a bug, never a plan to hand out
            raise RuntimeError("solver plan fails the independent re-check: " + "; ".join(bad))
        return sol
