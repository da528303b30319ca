"""Serving model accuracy and search speed, measured in one run.

1. Accuracy: every row of planner/data/serving_validation.yaml re-created (workloads/serving/validation.py) with the
   default ServingEfficiency — the calibration rows (the serving reference's TensorRT-LLM throughputs) and the
   validation rows (other shapes and models of the same harness, NIM latency at concurrency, TensorRT-LLM
   v0.5/v0.6 static batching and first-token latency). Signed error per row, median |error| per source.
2. Speed: one deployment evaluated (`evaluate_deployment`), and the fleet search over 10 SKUs × TP 1-8 × 5 batch
   limits for Llama-3.1-70B FP8 at 40 req/s (candidates simulated, CP-SAT selection, pools re-checked, and a
   5-point cost-against-QPS trace).

Usage: python benchmarks/serve.py [--quick] [--speed]   (--quick caps max-load runs at 800 requests; --speed
skips the accuracy part)
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.search.serving import solve_serving  # noqa: E402
from planner.workloads.serving.evaluation import evaluate_deployment  # noqa: E402
from planner.workloads.serving.scenario import ServingScenario  # noqa: E402
from planner.workloads.serving.validation import load_rows, run, summary  # noqa: E402

TEN_SKUS = ["a100-40gb", "a100-80gb", "a100-80gb-pcie", "h100-sxm", "h100-pcie", "h100-nvl", "h200", "b200",
            "b300", "l40s"]
METRIC_LABEL = {"output_tokens_per_s": "tok/s", "ttft_ms": "TTFT ms", "tpot_ms": "TPOT ms"}


def accuracy(quick: bool) -> None:
    sources, rows = load_rows()
    t0 = time.perf_counter()
    results = run(rows, max_requests=800 if quick else None)
    seconds = time.perf_counter() - t0
    print("## Accuracy\n")
    print(f"{'':2}{'source':26}{'deployment':62}{'metric':9}{'measured':>11}{'predicted':>11}{'error':>8}")
    print("-" * 129)
    for res in results:
        for metric, err in res.errors().items():
            print(f"{'C' if res.row.calibration else ' ':2}{res.row.source:26}{res.row.label:62}"
                  f"{METRIC_LABEL[metric]:9}{res.row.measured[metric]:11.1f}{res.predicted[metric]:11.1f}"
                  f"{err:+8.1%}")
    print("\nC = calibration row. Median |error| (max, rows):\n")
    print(f"{'group':28}{'throughput':>26}{'TTFT':>26}{'TPOT':>26}")
    for group, s in summary(results).items():
        cells = []
        for m in ("output_tokens_per_s", "ttft_ms", "tpot_ms"):
            if f"{m}_median" in s:
                cells.append(f"{s[m + '_median']:6.1%} ({s[m + '_max']:6.1%}, {int(s[m + '_n']):2d})")
            else:
                cells.append("—")
        print(f"{group:28}" + "".join(f"{c:>26}" for c in cells))
    print("\nsources:")
    for key, src in sources.items():
        print(f"  {key}: {src['where']}")
    print(f"{len(results)} rows in {seconds:.1f} s")


def speed() -> None:
    print("\n## Speed\n")
    t0 = time.perf_counter()
    r = evaluate_deployment("llama-3.1-70b", "h100", tp=4, concurrency=64, input_len=2000, output_len=300,
                            weight_dtype="fp8", kv_dtype="fp8", engine="vllm")
    one = time.perf_counter() - t0
    print(f"one deployment (Llama-3.1-70B FP8 TP4 H100, 64 clients, {r.sim.iterations if r.sim else 0} iterations):"
          f" {one * 1e3:.0f} ms")
    s = ServingScenario.model_validate({
        "name": "bench-10-skus", "model": "llama-3.1-70b", "hardware": {"skus": TEN_SKUS},
        "pricing": {"kind": "on-demand"},
        "serving": {
            "traffic": {"qps": 40, "input": {"mean": 2000, "p99": 6000}, "output": {"mean": 300, "p99": 1000}},
            "slo": {"ttft_ms": 1000, "tpot_ms": 50, "percentile": 99}, "engine": "vllm",
            "weight_dtype": "fp8", "kv_dtype": "fp8",
            "search": {"tp": [1, 2, 4, 8], "batch_limits": [16, 32, 64, 128, 256], "headroom": 0.1},
        },
    })
    t0, c0 = time.perf_counter(), time.process_time()
    sol = solve_serving(s, pareto=True)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    p = sol.plan
    pools = ", ".join(f"{q.replicas}x {q.candidate.label}" for q in p.pools)
    print(f"search: 10 SKUs x TP 1-8 x 5 batch limits -> {len(sol.candidates)} candidates simulated, "
          f"{sol.simulations} simulations, {total:.1f} s wall, {cpu:.1f} s CPU (one thread)")
    print(f"  plan: {pools}; ${p.usd_per_hour:.2f}/h, ${p.usd_per_million_input_tokens:.3f} per M input, "
          f"${p.usd_per_million_output_tokens:.3f} per M output tokens; SLOs met on re-check: {p.slo_met}")
    print("  pareto: " + ", ".join(f"{q.qps:g} req/s ${q.usd_per_hour:.1f}/h" for q in sol.pareto
                                    if q.usd_per_hour is not None))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} (other processes share the CPUs: "
          "CPU seconds are the figure to compare)")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--speed" not in sys.argv:
        accuracy(quick)
    speed()
