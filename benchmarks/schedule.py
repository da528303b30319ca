"""Portfolio scheduler speed and quality, measured in one run: CP-SAT against the greedy baseline.

Instances are synthetic but realistic lab years (planner/search/schedule_synthetic.py): 8 % pre-training
runs with hard deadlines, 20 % fine-tunes (most waiting for a pre-training run), 72 % evaluations and
ablations with soft deadlines, on 4 pools (owned H100s, B200 purchases with a 12-week lead time, 1-year
H100 reservations, H100 on demand) over 52 weeks, with catalog prices. Their candidate tables are drawn
from a parallel-efficiency curve, not computed by the time model, so the benchmark times the scheduler
alone. Targets (issue 14): 50 jobs to a proven gap ≤ 1 % within 60 s on 2 cores; 200 jobs to a feasible
plan with its gap within 120 s. The shipped example (scenarios/portfolio_2027.yaml) is timed end to end
(candidate tables from the time model included). `--chain`: the CP-SAT model's build time on a lab year whose
jobs form one `after:` chain (a window for every pair of earliest start and latest end), with the energy rows
capped at ENERGY_TERMS against every window.

Usage: python benchmarks/schedule.py [--quick] [--workers N] [--chain]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.portfolio import load_portfolio  # noqa: E402
from planner.search import schedule_cpsat  # noqa: E402
from planner.search.schedule_check import check_decisions  # noqa: E402
from planner.search.schedule_cpsat import solve  # noqa: E402
from planner.search.schedule_greedy import greedy  # noqa: E402
from planner.search.schedule_instance import costs  # noqa: E402
from planner.search.schedule_synthetic import synthetic_instance  # noqa: E402
from planner.workflows.schedule import schedule  # noqa: E402

CASES = [  # (jobs, seeds, time limit s, target gap: None = a feasible plan suffices)
    (50, range(5), 60.0, 0.01),
    (200, range(2), 120.0, None),
]


def run_case(jobs: int, seed: int, limit: float, target: float | None, workers: int) -> str:
    inst = synthetic_instance(jobs, 52, seed)
    began = time.monotonic()
    base = greedy(inst)
    out = solve(inst, time_limit=limit - 2, workers=workers, hint=base.decisions, finish_time=False)  # 2 s to build
    seconds = time.monotonic() - began
    assert out.decisions is not None and not check_decisions(inst, out.decisions, out.objective), "re-check failed"
    greedy_usd = costs(inst, base.decisions).total_usd if base.decisions else None
    ok = out.gap is not None and (out.gap <= target if target is not None else True) and seconds <= limit + 1
    goal = f"gap ≤ {target:.0%} in {limit:g} s" if target is not None else f"feasible in {limit:g} s"
    g = f"${greedy_usd:,.0f}" if greedy_usd is not None else f"none ({base.reason})"
    ratio = f"{out.objective / greedy_usd:.3f}" if greedy_usd and out.objective else "—"
    options = sum(len(t.options) for t in inst.tasks)
    return (f"| {jobs} jobs, seed {seed} | {options:,} | {out.status} | ${out.objective:,.0f} | ${out.bound:,.0f} | "
            f"{out.gap:.2%} | {seconds:.1f} s | {goal} {'✓' if ok else '✗'} | {g} | {ratio} |")


def chain_build(jobs: int) -> str:
    """Seconds and linear terms of the model of `jobs` synthetic jobs chained by `after:`, capped and uncapped."""
    inst = synthetic_instance(jobs, 52, 0)
    tasks = tuple(dataclasses.replace(t, after=(j - 1,) if j else (), deadline=None) for j, t in enumerate(inst.tasks))
    inst = dataclasses.replace(inst, tasks=tasks)
    capped = schedule_cpsat.ENERGY_TERMS
    out = []
    for budget in (capped, 10**12):
        schedule_cpsat.ENERGY_TERMS = budget
        began = time.monotonic()
        model = schedule_cpsat.ScheduleModel(inst)
        seconds = time.monotonic() - began
        terms = sum(len(c.linear.vars) for c in model.model.proto.constraints if c.has_linear())
        out.append((seconds, terms))
    schedule_cpsat.ENERGY_TERMS = capped
    (a, ta), (b, tb) = out
    return (f"| {jobs} chained jobs | {a:.1f} s, {ta:,} terms | {b:.1f} s, {tb:,} terms | {b / a:.0f}× |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one seed per size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chain", action="store_true", help="only the model build on a chain of jobs")
    args = ap.parse_args()
    if args.chain:
        print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
        print(f"| instance | energy rows capped at {schedule_cpsat.ENERGY_TERMS:,} terms a pool | every window | "
              "ratio |")
        print("|---|---|---|---|")
        for jobs in (150, 300):
            print(chain_build(jobs), flush=True)
        return
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"CP-SAT with {args.workers} workers, racing (deterministic=False)\n")
    print("| instance | job options | status | CP-SAT cost | bound | gap | time | target | greedy | CP-SAT / greedy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for jobs, seeds, limit, target in CASES:
        for seed in list(seeds)[:1] if args.quick else seeds:
            print(run_case(jobs, seed, limit, target, args.workers), flush=True)
    began = time.monotonic()
    pf = load_portfolio(ROOT / "scenarios" / "portfolio_2027.yaml")
    res = schedule(pf, time_limit=60, workers=args.workers, deterministic=False)
    seconds = time.monotonic() - began
    b = res.baseline.cost_usd if res.baseline else None
    print(f"\nscenarios/portfolio_2027.yaml: {res.status}, ${res.cost_usd:,.0f} (greedy ${b:,.0f}), "
          f"gap {res.gap:.2%}, {seconds:.1f} s end to end (candidate tables from the time model included)")
    for line in res.difference:
        print(f"  {line}")


if __name__ == "__main__":
    main()
