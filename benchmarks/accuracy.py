"""Time-model accuracy against the published training runs, and whether each published layout fits.

Reads published_runs.yaml from $PLANNER_REFERENCE or ../shared/reference (relative to the repository
root). For every run with a usable measurement it builds the model (GPT-style or Llama-style, MoE where
the entry gives its shape), the layout and the GPU, predicts the step with `training_time` (one
parameter set for every run: the catalog's efficiencies and the Efficiency defaults, plus the overlap
switches and fabric the source itself states), and compares throughput the way the source counts it:
the step time where one is published, else TFLOP/s per GPU (hardware FLOPs, recompute included, where
the source's formula counts them: Narayanan et al. Eq. 3 with k = 4 in the SC21 tables and BLOOM; model
FLOPs otherwise), else tokens/s per GPU. It also checks `training_memory` against the GPU: every run
here ran. Runs lacking what a prediction needs are listed with the reason. The mapping from a run to
planner's inputs is planner/interop/published.py, which `planner review --published RUN_ID` also reads.

    .venv/bin/python benchmarks/accuracy.py
"""

from __future__ import annotations

import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.interop.published import Case, build_case, compare, load_runs, reference_dir  # noqa: E402
from planner.model.memory import training_memory  # noqa: E402
from planner.model.perf import training_time  # noqa: E402
from planner.schema import GIB, Layout  # noqa: E402

__all__ = ["Case", "Result", "evaluate", "load_runs", "reference_dir", "run_all"]


@dataclass
class Result:
    case: Case
    predicted_tflops: float
    predicted_step: float
    error: float  # predicted / measured throughput − 1
    memory_gib: float
    capacity_gib: float
    memory_breakdown: dict[str, int]

    @property
    def fits(self) -> bool:
        return self.memory_gib <= self.capacity_gib


def evaluate(case: Case) -> Result:
    lay = case.layout
    est = training_time(case.model, lay, case.gpu, case.seq, lay.global_batch * case.seq, impl=case.impl,
                        efficiency=case.efficiency, gpus_per_node=case.gpus_per_node)
    c = compare(case, est.step_seconds)
    mem = training_memory(case.model, lay, case.seq, case.impl)
    return Result(
        case=case, predicted_tflops=c.predicted_tflops, predicted_step=est.step_seconds, error=c.error,
        memory_gib=mem.total / GIB, capacity_gib=case.gpu.hbm_bytes / GIB, memory_breakdown=mem.as_dict(),
    )


def run_all(ref: Path) -> tuple[list[Result], list[tuple[str, str]]]:
    results: list[Result] = []
    skipped: list[tuple[str, str]] = []
    for run in load_runs(ref):
        case = build_case(run)
        if isinstance(case, str):
            skipped.append((run["id"], case))
        else:
            results.append(evaluate(case))
    return results, skipped


def layout_text(lay: Layout) -> str:
    rc = {"none": "-", "selective": "sel", "full": "full"}[lay.recompute]
    return (f"{lay.tp}/{lay.pp}/{lay.dp} v{lay.vpp} z{lay.zero}{' sp' if lay.sequence_parallel else ''} rc={rc} "
            f"{lay.global_batch}/{lay.micro_batch}")


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def main() -> int:
    ref = reference_dir()
    if ref is None:
        print("published_runs.yaml not found: set PLANNER_REFERENCE or place it in ../shared/reference")
        return 1
    results, skipped = run_all(ref)
    print(f"reference: {os.path.relpath(ref / 'published_runs.yaml', ROOT)}")
    print("TF: TFLOP/s per GPU as the source counts them (hw: recompute included, model: not); err: predicted /")
    print("measured throughput − 1, on step time where the source gives one; mem: training_memory total / HBM GiB\n")
    head = (f"{'run':50} {'gpu':10} {'TP/PP/DP vpp zero rc GBS/MBS':34} {'TF kind':7} {'meas TF':>8} "
            f"{'pred TF':>8} {'meas s':>8} {'pred s':>8} {'err':>7}  {'mem GiB':>8} fits")
    print(head)
    print("-" * len(head))
    for r in results:
        c = r.case
        print(f"{c.id:50} {c.gpu.name:10} {layout_text(c.layout):34} {'hw' if c.hardware_flops else 'model':7} "
              f"{fmt(c.measured_tflops, '8.1f')} {r.predicted_tflops:8.1f} {fmt(c.measured_step, '8.2f')} "
              f"{r.predicted_step:8.2f} {r.error:+7.1%}  {r.memory_gib:5.1f}/{r.capacity_gib:<3.0f} "
              f"{'yes' if r.fits else 'NO'}{'  ' + '; '.join(c.notes) if c.notes else ''}")
    errs = [abs(r.error) for r in results]
    worst = max(results, key=lambda r: abs(r.error))
    print(f"\nusable runs: {len(results)}, skipped: {len(skipped)}")
    print(f"median |error|: {statistics.median(errs):.1%}   worst |error|: {abs(worst.error):.1%} ({worst.case.id})")
    misfits = [r for r in results if not r.fits]
    print(f"published layouts predicted to fit: {len(results) - len(misfits)}/{len(results)}")
    for r in misfits:
        parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in r.memory_breakdown.items())
        print(f"  does not fit: {r.case.id}: {parts} GiB")
    if skipped:
        print("\nskipped:")
        for rid, why in skipped:
            print(f"  {rid}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
