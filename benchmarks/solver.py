"""Solver speed, measured in one run: the pruned search against the exhaustive vectorised pass and
against exhaustive scalar enumeration.

For each scenario: the solve time (`planner.solve`: slice floors, best-first evaluation, CP-SAT; best of a
few runs), the search space (legal SKU × layout pairs), the layouts it evaluated and pruned, the same solve
with `prune=False` (every legal layout evaluated vectorised; best of a few runs) and the ratio of the two,
and what `planner.search.exhaustive` — every tuple of the axis domains checked by `layout_problems`, every
legal one evaluated by `evaluate` — takes on the same space. Where that would exceed 10 minutes it is
extrapolated from timed random samples: (tuples in the product) × (time to build and check one) + (legal
layouts) × (time to evaluate one), and the table says so. A small scenario is enumerated for real to
calibrate the extrapolation. Every pruned solve is checked to return the vectorised pass's plans, runner-ups
and near-optimal set. Then a 17-point deadline sweep of compare_gpt3.yaml, timed whole.

Usage: python benchmarks/solver.py [--quick]
"""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.catalog import load_gpus  # noqa: E402
from planner.pricing import select_price  # noqa: E402
from planner.scenario import Scenario, load_scenario  # noqa: E402
from planner.search.candidates import integer_units, job_candidates  # noqa: E402
from planner.search.exhaustive import PAIRED, enumerate_plans, evaluate_on, training, tuple_count  # noqa: E402
from planner.search.problem import resolve_problem  # noqa: E402
from planner.workflows.solve import solve  # noqa: E402
from planner.workloads.training.layout import RECOMPUTE, SEARCHED  # noqa: E402
from planner.workloads.training.legality import layout_problems  # noqa: E402
from planner.workloads.training.space import axis_domains  # noqa: E402

TEN_MINUTES = 600.0
SAMPLE = 2000


def every_sku_priced() -> dict[str, float]:
    """A placeholder hourly rate for SKUs without an on-demand price, so that 'all SKUs' means all
    catalog entries: prices change which plan wins, not the size of the search or its speed."""
    return {g.name: 2.0 for g in load_gpus().values() if select_price(g, "on-demand") is None}


def scaled(name: str, model: str, tokens: float, seq: int, batch: int, days: float) -> Scenario:
    return Scenario.model_validate({
        "name": name, "model": model, "job": {"tokens": tokens, "seq_len": seq, "global_batch": batch},
        "hardware": {"skus": "all", "max_gpus": 32_768},
        "pricing": {"kind": "on-demand", "usd_per_gpu_hour": every_sku_priced()},
        "constraints": {"deadline_days": days}, "objective": "cost",
    })


def time_solve(sc: Scenario, repeats: int, prune: bool = True, pareto: bool = False) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        result = solve(sc, time_limit_s=600, prune=prune, pareto=pareto)
        best = min(best, time.perf_counter() - t)
    return best, result


def answer(result: Any) -> dict[str, Any]:
    """What a solve reports, less what its search looked at."""
    d = result.to_dict(timing=False)
    for k in ("candidates", "layouts_evaluated", "layouts_pruned"):
        d["solver"].pop(k)
    return d


def cpsat_per_layout(sc: Scenario, n: int = 200_000) -> tuple[float, int, int]:
    """The other way to search: CP-SAT choosing the layout itself, one Boolean per fitting (SKU, layout) pair
    with its integer time and cost as coefficients (exactly one; the deadline a linear constraint; minimise
    cost). Timed to build and solve on the first `n` pairs of the vectorised pass: (seconds, pairs in the
    model, fitting pairs in the whole space). It needs every pair's exact time first, so it adds to the
    vectorised pass rather than replacing it."""
    from ortools.sat.python import cp_model

    p = resolve_problem(sc)
    job = p.jobs[0]
    w = job.workload
    skus = p.skus_for(job)
    grid = w.grid(sorted({s.node for s in skus}), job.counts(max(p.cap(s, job) for s in skus)))
    mem = w.memory(grid, np.arange(len(grid)))
    times: list[np.ndarray] = []
    costs: list[np.ndarray] = []
    fitting = 0
    for sku in skus:
        rows = np.flatnonzero(w.runnable(grid, sku.node, job.counts(p.cap(sku, job))) & (mem <= sku.gpu.hbm_bytes))
        fitting += len(rows)
        take = rows[:max(0, n - sum(len(t) for t in times))]
        if len(take):
            step = w.step_seconds(grid, take, sku.gpu, sku.node)
            _, t_s, cents = integer_units(step, grid.gpus[take], sku.rate.usd_per_gpu_hour, w.steps,
                                          w.checkpoint_bytes, w.basis)
            times.append(t_s)
            costs.append(cents)
    t_col, c_col = np.concatenate(times).tolist(), np.concatenate(costs).tolist()
    start = time.perf_counter()
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(len(t_col))]
    m.add_exactly_one(x)
    m.add(cp_model.LinearExpr.weighted_sum(x, t_col) <= math.floor((job.deadline_days or 3650) * 86400))
    m.minimize(cp_model.LinearExpr.weighted_sum(x, c_col))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.solve(m)
    return time.perf_counter() - start, len(t_col), fitting


def time_sweep(repeats: int) -> float:
    """A 17-point deadline sweep of compare_gpt3.yaml (10 to 90 days), the whole comparison, one process."""
    from planner.workflows.compare import CompareRequest, run_comparison

    sc = load_scenario(ROOT / "scenarios/compare_gpt3.yaml")
    deadlines = tuple(float(d) for d in range(10, 95, 5))
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        run_comparison(CompareRequest(sc, deadlines=deadlines, workers=1))
        best = min(best, time.perf_counter() - t)
    return best


def product_size(sc: Scenario) -> int:
    p = resolve_problem(sc)
    total = 0
    for job in p.jobs:
        for sku in p.skus_for(job):
            dom = axis_domains(training(job), sku.node)
            total += tuple_count(dom)
    return total


def extrapolate(sc: Scenario, space: int, rng: random.Random) -> tuple[float, float, float]:
    """(estimated seconds, s per checked tuple, s per evaluated layout) from random samples."""
    p = resolve_problem(sc)
    job = p.jobs[0]
    w = training(job)
    skus = p.skus_for(job)
    # checking: random tuples of the product (drawn first), built and checked as the enumerator does
    doms = {s.name: axis_domains(w, s.node) for s in skus}
    tuples = []
    for _ in range(SAMPLE):
        sku = rng.choice(skus)
        fields = {f: rng.choice(doms[sku.name][f]) for f in SEARCHED}
        for f, mode in PAIRED.items():  # counts pair with one recompute mode only (domain_tuples)
            if fields["recompute"] != RECOMPUTE.index(mode):
                fields[f] = 0
        tuples.append((sku, fields))
    t = time.perf_counter()
    for sku, fields in tuples:
        layout = w.template.layout(**fields)
        if job.counts(p.cap(sku, job)).allowed(layout.gpus, sku.node):
            layout_problems(w.model, layout, node_size=sku.node, seq=w.seq, impl=w.implementation)
    per_check = (time.perf_counter() - t) / SAMPLE
    # evaluating: random legal layouts (from the solver's grid: the same set the enumerator reaches)
    grid = job_candidates(p, job).grid
    rows = [rng.randrange(len(grid)) for _ in range(SAMPLE // 4)]
    t = time.perf_counter()
    for r in rows:
        evaluate_on(job, rng.choice(skus), w.layout(grid, r))
    per_eval = (time.perf_counter() - t) / len(rows)
    return product_size(sc) * per_check + space * per_eval, per_check, per_eval


def fmt_s(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s"


def main() -> None:
    quick = "--quick" in sys.argv
    rng = random.Random(0)
    gpt3 = load_scenario(ROOT / "scenarios/gpt3_30days.yaml")
    priced = len(resolve_problem(gpt3).skus)
    cases: list[tuple[str, Scenario, float | None]] = [
        ("finetune_7b_8gpus.yaml (calibration)", load_scenario(ROOT / "scenarios/finetune_7b_8gpus.yaml"), None),
        (f"gpt3_30days.yaml (skus: all, the {priced} with an on-demand price)", gpt3, 0.5),
        ("Llama-3.1-405B dense, ≤32,768 GPUs, all SKUs",
         scaled("405b", "llama-3.1-405b", 15e12, 8192, 2048, 120), 10.0),
        ("DeepSeek-V3 MoE (EP, CP), ≤32,768 GPUs, all SKUs",
         scaled("dsv3", "deepseek-v3", 14.8e12, 4096, 15360, 120), 2.0),
    ]
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| scenario | status | solve | target | search space | evaluated | pruned | vectorised pass | ratio "
          "| exhaustive | how | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, sc, target in cases:
        solve_s, result = time_solve(sc, 1 if quick else 3)
        full_s, full = time_solve(sc, 1 if quick else 2, prune=False)
        assert answer(result) == answer(full), f"{label}: the pruned search answered differently"
        space = result.search_space_size
        evaluated = result.layouts_evaluated
        est, per_check, per_eval = extrapolate(sc, space, rng)
        if est <= TEN_MINUTES and not quick:
            t = time.perf_counter()
            ref = enumerate_plans(resolve_problem(sc))
            exhaustive = time.perf_counter() - t
            how = f"enumerated (extrapolation said {fmt_s(est)})"
            assert ref.space_size == space, (ref.space_size, space)
            assert ref.best is not None and ref.best[0] == result.solutions[0].cost_cents
        else:
            exhaustive = est
            how = (f"extrapolated: {product_size(sc):,} tuples × {per_check * 1e6:.1f} µs + "
                   f"{space:,} evaluations × {per_eval * 1e6:.0f} µs")
        goal = "—" if target is None else f"< {target:g} s {'✓' if solve_s < target else '✗'}"
        print(f"| {label} | {result.status} | {solve_s:.2f} s | {goal} | {space:,} | {evaluated:,} "
              f"({space / max(1, evaluated):,.0f}× fewer) | {space - evaluated:,} | {full_s:.2f} s | "
              f"{full_s / solve_s:.1f}× | {fmt_s(exhaustive)} | {how} | {exhaustive / solve_s:,.0f}× |")
    print("\n`--pareto` (the plan, its runner-ups and the cost / time front), pruned against every layout "
          "evaluated:\n")
    print("| scenario | front points | solve | evaluated | vectorised pass | ratio |")
    print("|---|---|---|---|---|---|")
    for label, sc in (("gpt3_30days.yaml", gpt3), ("deepseek_v3_moe.yaml", load_scenario(ROOT /
                                                                                         "scenarios/deepseek_v3_moe.yaml"))):
        solve_s, result = time_solve(sc, 1 if quick else 3, pareto=True)
        full_s, full = time_solve(sc, 1 if quick else 2, prune=False, pareto=True)
        assert answer(result) == answer(full), f"{label} --pareto: the pruned search answered differently"
        print(f"| {label} | {len(result.pareto)} | {solve_s:.2f} s | {result.layouts_evaluated:,} of "
              f"{result.search_space_size:,} | {full_s:.2f} s | {full_s / solve_s:.1f}× |")
    cp_s, cp_n, cp_all = cpsat_per_layout(gpt3, 50_000 if quick else 200_000)
    print(f"\nCP-SAT choosing among gpt3_30days's per-layout tables itself: {cp_s:.2f} s to build and solve "
          f"{cp_n:,} of its {cp_all:,} fitting (SKU, layout) pairs, about {cp_s * cp_all / cp_n:.0f} s for all "
          f"of them, after the vectorised pass that computes their times")
    sweep = time_sweep(1 if quick else 3)
    print(f"\ncompare_gpt3.yaml, 17-point deadline sweep (10–90 days), one process: {sweep:.2f} s "
          f"(target < 2 s {'✓' if sweep < 2 else '✗'})")


if __name__ == "__main__":
    main()
