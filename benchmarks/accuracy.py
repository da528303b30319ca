"""Time-model accuracy against published training runs, by family, with the uncertainty interval's coverage.

Reads published_runs.yaml from $PLANNER_REFERENCE or ../shared/reference (the calibration set), or another
runs file in the same schema (`--runs PATH`, e.g. a held-out validation set). For every run with a usable
measurement it builds the model, layout, GPU and software stack (planner/interop/published.py, plus the
run's own `planner:` block of scenario keys where it has one), predicts the step with `training_time` (one
parameter set for every run) and compares it the way the source counts it (`compare`: step time, else
tokens/s per GPU, else TFLOP/s in the source's FLOP convention). Each prediction also gets its interval
(`planner.model.uncertainty.step_time_interval`: the 10th–90th percentile of the model's error in the run's
regime) and the table reports whether the measurement falls inside. It also checks `training_memory`
against the GPU: every run here ran.

    .venv/bin/python benchmarks/accuracy.py                     # the calibration set
    .venv/bin/python benchmarks/accuracy.py --runs other.yaml   # another runs file, same report
    .venv/bin/python benchmarks/accuracy.py --write             # rewrite planner/data/calibration.yaml

A runs file whose every run restates itself as a scenario (`planner:` with `model`, `job`, `gpus`, as
planner/data/validation_runs.yaml does) is handed to benchmarks/validation.py, which evaluates it through
the estimate workflow.

A `planner:` block on a run may hold `implementation:`, `layout:` and `efficiency:` mappings (scenario keys,
applied over what the run's fields imply), `gpu:` (a catalog name) and `gpus_per_node:`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.catalog import get_gpu  # noqa: E402
from planner.interop.published import (  # noqa: E402
    Case,
    build_case,
    compare,
    overlaps_of,
    reference_dir,
    software_of,
)
from planner.model.flops import step_flops  # noqa: E402
from planner.model.memory import training_memory  # noqa: E402
from planner.model.perf import training_time, utilisation_peak  # noqa: E402
from planner.model.presets import resolve  # noqa: E402
from planner.model.uncertainty import (  # noqa: E402
    CALIBRATION_PATH,
    attention_variants,
    build_calibration,
    error_band,
    gpu_generation,
    load_calibration,
    parallel_regime,
    regime_of,
)
from planner.schema import GIB, Efficiency, Implementation, Layout  # noqa: E402

__all__ = ["Case", "Result", "calibration_content", "evaluate", "load_runs", "reference_dir", "run_all"]


def load_runs(ref: Path) -> list[dict[str, Any]]:
    """The runs of a runs file, or of published_runs.yaml in a reference directory."""
    path = ref / "published_runs.yaml" if ref.is_dir() else ref
    return yaml.safe_load(path.read_text())["runs"]


@dataclass
class Result:
    case: Case
    family: str
    predicted_tflops: float
    predicted_step: float
    error: float  # predicted / measured throughput − 1 (= measured / predicted step − 1)
    quantity: str
    interval: tuple[float, float]  # relative errors the regime's band allows (low, high)
    band_level: str
    memory_gib: float
    capacity_gib: float
    memory_breakdown: dict[str, int]

    @property
    def fits(self) -> bool:
        return self.memory_gib <= self.capacity_gib

    @property
    def covered(self) -> bool:
        return self.interval[0] <= self.error <= self.interval[1]

    @property
    def measured_step(self) -> float:
        return self.predicted_step * (1 + self.error)


def family_of(run: dict[str, Any]) -> str:
    """The source family a run is reported under."""
    title = (run.get("source") or {}).get("title", "")
    rid = run["id"]
    if "Narayanan" in title or "sc21" in rid:
        return "DeepSpeed ZeRO-3 (SC21)" if run["parallelism"].get("zero_stage") == 3 else "Megatron-LM SC21"
    if "Korthikanti" in title:
        return "Megatron-LM 2022 (Korthikanti)"
    if rid.startswith("megatron-core"):
        return "Megatron-Core 2024"
    if "BLOOM" in title or "BigScience" in title:
        return "BLOOM (Megatron-DeepSpeed)"
    if rid.startswith("dgxc") or "dgxc" in title.lower():
        return "NeMo dgxc 2025"
    sw = software_of(run)
    named = {"fsdp": "MosaicML FSDP", "torchtitan": "torchtitan FSDP2"}
    return named.get(sw.framework, title.split(" (")[0] or "other")


def with_stack(case: Case, run: dict[str, Any]) -> Case:
    """The case with the run's own `planner:` block of scenario keys applied (a held-out runs file states
    what its fields cannot: fp8 recipe, framework, recompute modules, the GPU variant)."""
    block = run.get("planner") or {}
    unknown = set(block) - {"implementation", "layout", "efficiency", "gpu", "gpus_per_node"}
    if unknown:
        raise ValueError(f"{run['id']}: planner: unknown keys {sorted(unknown)}")
    if not block:
        return case
    impl = Implementation.model_validate({**case.impl.model_dump(), **block.get("implementation", {})})
    lay = Layout.model_validate({**case.layout.model_dump(), **block.get("layout", {})})
    gpu, eff = case.gpu, case.efficiency
    if "gpu" in block:
        gpu = get_gpu(block["gpu"])
        eff = gpu.efficiency.model_copy(update=overlaps_of(str(run["parallelism"].get("other") or ""),
                                                           run.get("framework_settings")))
    eff = Efficiency.model_validate({**eff.model_dump(), **block.get("efficiency", {})})
    node = block.get("gpus_per_node", case.gpus_per_node)
    return dataclasses.replace(case, impl=impl, efficiency=eff, layout=lay, gpu=gpu, gpus_per_node=node)


def evaluate(case: Case, family: str = "", calibration: dict[str, Any] | None = None) -> Result:
    lay = case.layout
    est = training_time(case.model, lay, case.gpu, case.seq, lay.global_batch * case.seq, impl=case.impl,
                        efficiency=case.efficiency, gpus_per_node=case.gpus_per_node)
    c = compare(case, est.step_seconds)
    band = error_band(regime_of(lay, case.gpu, case.impl.framework), calibration)
    mem = training_memory(case.model, lay, case.seq, case.impl)
    return Result(
        case=case, family=family, predicted_tflops=c.predicted_tflops, predicted_step=est.step_seconds,
        error=c.error, quantity=c.quantity, interval=(band.low, band.high), band_level=band.level,
        memory_gib=mem.total / GIB, capacity_gib=case.gpu.hbm_bytes / GIB, memory_breakdown=mem.as_dict(),
    )


def run_all(ref: Path, calibration: dict[str, Any] | None = None) -> tuple[list[Result], list[tuple[str, str]]]:
    """Every usable run of a reference directory or runs file, evaluated; the others with the reason."""
    results: list[Result] = []
    skipped: list[tuple[str, str]] = []
    for run in load_runs(ref):
        case = build_case(run)
        if isinstance(case, str):
            skipped.append((run["id"], case))
            continue
        results.append(evaluate(with_stack(case, run), family_of(run), calibration))
    return results, skipped


def measured_mfu(r: Result) -> float:
    """The MFU the run measured, in planner's convention (causal attention at half)."""
    c = r.case
    lay = c.layout
    flops = step_flops(c.model, c.seq, lay.global_batch * c.seq, lay.recompute)
    return flops.model / (r.measured_step * lay.gpus * utilisation_peak(c.gpu, lay))


def calibration_content(results: list[Result], reference: str) -> dict[str, Any]:
    """What `--write` stores: the residual bands by regime and the best measured MFU per generation."""
    records = [{"id": r.case.id, "generation": gpu_generation(r.case.gpu), "framework": r.case.impl.framework,
                "parallel": parallel_regime(r.case.layout), "error": r.error, "mfu": measured_mfu(r),
                "micro_batch": r.case.layout.micro_batch, "recompute": r.case.layout.recompute,
                "ep": r.case.layout.ep, "cp": r.case.layout.cp, "seq": r.case.seq, "moe": r.case.model.moe is not None,
                "cp_exchange": resolve(r.case.impl).cp_exchange, "attention": attention_variants(r.case.model),
                "offload": resolve(r.case.impl, r.case.layout).activation_offload}
               for r in results]
    return build_calibration(records, reference)


def layout_text(lay: Layout) -> str:
    rc = {"none": "-", "selective": "sel", "full": "full"}[lay.recompute]
    return (f"{lay.tp}/{lay.pp}/{lay.dp}/{lay.cp} v{lay.vpp} z{lay.zero}{' sp' if lay.sequence_parallel else ''} "
            f"rc={rc} {lay.global_batch}/{lay.micro_batch}")


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def report(results: list[Result], skipped: list[tuple[str, str]], source: str) -> None:
    print(f"runs: {source}")
    print("err: measured / predicted step − 1 (= predicted / measured throughput − 1), in the source's own quantity;")
    print("band: the regime's 10th–90th percentile of err (planner.model.uncertainty; * = a fallback level);")
    print("in: the measurement falls inside it; mem: training_memory total / HBM GiB\n")
    head = (f"{'run':52} {'gpu':9} {'fw':13} {'TP/PP/DP/CP vpp zero rc GBS/MBS':36} {'pred s':>8} {'err':>7} "
            f"{'band':>16} in  {'mem GiB':>9} fits")
    families: dict[str, list[Result]] = {}
    for r in results:
        families.setdefault(r.family, []).append(r)
    for fam, rs in families.items():
        print(f"## {fam}")
        print(head)
        for r in rs:
            c = r.case
            lo, hi = r.interval
            flag = " " if r.band_level == "regime" else "*"
            print(f"{c.id:52} {c.gpu.name:9} {c.impl.framework:13} {layout_text(c.layout):36} "
                  f"{r.predicted_step:8.2f} {r.error:+7.1%} {lo:+6.1%}..{hi:+6.1%}{flag} {'y' if r.covered else 'n':2} "
                  f"{r.memory_gib:5.1f}/{r.capacity_gib:<3.0f} {'yes' if r.fits else 'NO'}"
                  f"{'  ' + '; '.join(c.notes) if c.notes else ''}")
        print()
    print(f"{'family':34} {'runs':>4} {'median |err|':>12} {'worst':>8} {'bias':>7} {'in band':>8}")
    for fam, rs in [*families.items(), ("all", results)]:
        errs = [abs(r.error) for r in rs]
        worst = max(rs, key=lambda r: abs(r.error))
        covered = sum(r.covered for r in rs)
        print(f"{fam:34} {len(rs):4} {statistics.median(errs):12.1%} {worst.error:+8.1%} "
              f"{statistics.median(r.error for r in rs):+7.1%} {covered:4}/{len(rs):<3}")
    misfits = [r for r in results if not r.fits]
    print(f"\npublished layouts predicted to fit: {len(results) - len(misfits)}/{len(results)}")
    for r in misfits:
        parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in r.memory_breakdown.items())
        print(f"  does not fit: {r.case.id}: {parts} GiB")
    if skipped:
        print("\nskipped:")
        for rid, why in skipped:
            print(f"  {rid}: {why}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, help="a runs file in published_runs.yaml's schema (default: the reference)")
    ap.add_argument("--write", action="store_true", help=f"rewrite {CALIBRATION_PATH.relative_to(ROOT)}")
    ap.add_argument("--calibration", type=Path, help="read the bands from this calibration file")
    args = ap.parse_args(argv)
    if args.runs is not None:
        if not args.runs.is_file():
            print(f"--runs: {args.runs} not found")
            return 2
        if not args.write and all("job" in (r.get("planner") or {}) for r in load_runs(args.runs)):
            # runs restated as whole scenarios (a held-out set): evaluated through the estimate workflow
            from validation import main as held_out

            return held_out(["--runs", str(args.runs)])
        source: Path = args.runs
    else:
        ref = reference_dir()
        if ref is None:
            print("published_runs.yaml not found: set PLANNER_REFERENCE or place it in ../shared/reference")
            return 1
        source = ref / "published_runs.yaml"
    if args.write:
        if args.runs is not None:
            print("--write calibrates on the reference runs only (a held-out file stays held out)")
            return 2
        results, _ = run_all(source, _POOLED_ONLY)
        content = calibration_content(results, os.path.relpath(source, ROOT))
        CALIBRATION_PATH.parent.mkdir(parents=True, exist_ok=True)
        CALIBRATION_PATH.write_text(
            "# Generated by benchmarks/accuracy.py --write from the current time model; do not edit.\n"
            + yaml.safe_dump(content, sort_keys=False, width=120))
        print(f"wrote {CALIBRATION_PATH.relative_to(ROOT)} ({len(results)} runs)")
    calibration = load_calibration(args.calibration) if args.calibration else None
    results, skipped = run_all(source, calibration)
    report(results, skipped, os.path.relpath(source, ROOT))
    return 0


# Bands are not needed to compute the residuals that define them: a stand-in with only a pooled band.
_POOLED_ONLY: dict[str, Any] = {"bands": {"pooled": {"all": {"runs": 1, "p10": 0.0, "p90": 0.0, "median": 0.0}},
                                          "regime": {}, "generation+framework": {}, "framework": {}}}


if __name__ == "__main__":
    raise SystemExit(main())
