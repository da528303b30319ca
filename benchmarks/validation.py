"""Held-out accuracy: published runs outside the calibration file, evaluated through planner's public path.

Every run of planner/data/validation_runs.yaml carries a `planner:` block that restates it in scenario keys
(`model`, `job`, `implementation`, `layout`, `gpu`, `gpus`, `gpus_per_node`, and `gpus_def`: a scenario GPU
with `base:`, memory_gib, hbm_tb_s, tdp_w). `scenario_of` turns the block into a `Scenario` (its `gpus:` list,
`estimate:` target, and the overlap switches the run's recipe states as `efficiency:` keys), and
`planner.workflows.estimate` evaluates it exactly as `planner estimate` would: custom GPUs derived by the
catalog (a tdp_w below the base's rating scales the compute rate, planner.model.power), the framework
presets, the memory and time models and the calibration bands. Nothing is fitted here.

A source that does not state some knobs of its layout (Meta's Llama 3 paper gives TP, CP, PP and DP but not the
virtual stages, sequence parallelism, micro-batch or recompute), or an on/off switch of its stack (torchtitan's
float8 tables do not say whether FSDP gathers float8 weights), lists them under `planner: complete:`. Those
knobs are completed the way a team tuning the run would: `planner.workflows.solve` with every stated field
fixed, objective `time` (the fastest step that fits), then each switch the faster way that fits; never the
measurement. The table shows what was chosen.

Reported per family: median and worst |step-time error| (in the source's own quantity,
planner.interop.published.compare), how many measurements fall in the predicted 10th–90th percentile band,
how many configurations that ran are predicted to fit, and measured peak memory (reserved, as torchtitan
and NeMo log it; allocated where that is what was published) next to the prediction.

    .venv/bin/python benchmarks/validation.py
    .venv/bin/python benchmarks/accuracy.py --runs planner/data/validation_runs.yaml   # the same
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.errors import InputError  # noqa: E402
from planner.interop.published import Case, compare, measured_of, overlaps_of, predicted_memory  # noqa: E402
from planner.model.uncertainty import HELDOUT_BANDS_PATH, band_of, error_band, gpu_generation, regime_of  # noqa: E402
from planner.scenario import Scenario  # noqa: E402
from planner.schema import GIB, Implementation  # noqa: E402
from planner.workflows.estimate import EstimateRequest, estimate  # noqa: E402
from planner.workflows.solve import solve  # noqa: E402
from planner.workloads.training.evaluation import Evaluation  # noqa: E402

VALIDATION_PATH = ROOT / "planner" / "data" / "validation_runs.yaml"
# The implementation switches a run may leave unstated (`planner: complete:`): on or off, whichever runs faster.
# Every boolean implementation key is a kernel, overlap or memory switch; what changes the numerics (gradient
# reduction dtype, optimizer state) lives in `job` and is never completed this way.
IMPLEMENTATION_KNOBS = frozenset(k for k, f in Implementation.model_fields.items()
                                 if f.annotation in (bool, bool | None))
# Families by id prefix (VALIDATION.md "What it holds").
FAMILIES = (("mbridge", "Megatron-Bridge tables"), ("dgxc", "DGX Cloud (NeMo)"), ("nemo", "NeMo 24.07"),
            ("torchtitan", "torchtitan (H100/H200)"), ("torchao", "torchao B200"), ("mosaicml", "MosaicML FSDP"),
            ("mtnlg", "MT-NLG (DeepSpeed)"), ("llama3", "Llama 3 405B"))
# The targets of the held-out set (issue: "plans that hold on today's stacks").
MEDIAN_TARGET = 0.10
WORST_TARGET = 0.25
FIT_TARGET = 0.95
MEMORY_TARGET = 0.15

__all__ = ["HeldOut", "completed_knobs", "evaluate_run", "family_of", "heldout_bands", "load_runs", "run_all",
           "scenario_of", "summary"]


def load_runs(path: Path = VALIDATION_PATH) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["runs"]


def family_of(run: dict[str, Any]) -> str:
    return next((name for prefix, name in FAMILIES if run["id"].startswith(prefix + "-")), "other")


def scenario_of(run: dict[str, Any], completed: dict[str, Any] | None = None) -> Scenario:
    """The run's `planner:` block as a scenario: what `planner estimate SCENARIO.yaml` would read, with the
    knobs the source leaves unstated completed (`completed`, by default `completed_knobs(run)`)."""
    return Scenario.model_validate(_with(_document(run), completed_knobs(run) if completed is None else completed))


def _with(doc: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """`doc` with each knob in its section: implementation keys under `implementation`, the rest under `layout`."""
    impl = {k: v for k, v in knobs.items() if k in IMPLEMENTATION_KNOBS}
    lay = {k: v for k, v in knobs.items() if k not in impl}
    return {**doc, "layout": {**doc["layout"], **lay}, "implementation": {**doc["implementation"], **impl}}


def _document(run: dict[str, Any]) -> dict[str, Any]:
    p = run["planner"]
    job = dict(p["job"])
    job.setdefault("tokens", job["seq_len"] * job["global_batch"])  # one step: the step time is what is compared
    doc: dict[str, Any] = {
        "name": run["id"], "model": p["model"], "job": job, "implementation": p.get("implementation") or {},
        "layout": dict(p.get("layout") or {}),
        "estimate": {"gpu": p["gpu"], "gpus": p["gpus"], **({"gpus_per_node": p["gpus_per_node"]}
                                                            if p.get("gpus_per_node") else {})},
    }
    if p.get("gpus_def"):
        doc["gpus"] = [p["gpus_def"]]
    # TE's TP communication overlap and DDP overlap switches, as the recipe states them
    overlaps = overlaps_of(str(run["parallelism"].get("other") or ""), run.get("framework_settings"))
    if overlaps:
        doc["efficiency"] = overlaps
    return doc


def completed_knobs(run: dict[str, Any]) -> dict[str, Any]:
    """The knobs the run's source does not state (`planner: complete:`), completed as a team tuning the run would:
    layout knobs as the fastest layout that fits with everything stated held fixed (a time-objective solve on the
    run's GPU and count), then on/off implementation switches (IMPLEMENTATION_KNOBS) as the faster setting that fits.
    Empty when the source states everything; a layout that nothing completes is evaluated as written."""
    unknown = run["planner"].get("complete") or []
    out: dict[str, Any] = {}
    layout_unknown = [k for k in unknown if k not in IMPLEMENTATION_KNOBS]
    if layout_unknown:
        doc = _document(run)
        target = doc.pop("estimate")
        doc["layout"] = {k: v for k, v in doc["layout"].items() if k not in layout_unknown}
        doc["layout"].update(sku=target["gpu"], gpus=target["gpus"])
        doc["hardware"] = {"skus": [target["gpu"]], **({"gpus_per_node": target["gpus_per_node"]}
                                                       if "gpus_per_node" in target else {})}
        doc.update(objective="time", top_k=1)
        result = solve(Scenario.model_validate(doc))
        if not result.plans:
            return {}
        lay = result.plans[0].evaluation.layout
        out = {k: getattr(lay, k) for k in layout_unknown}
    switches = [k for k in unknown if k in IMPLEMENTATION_KNOBS]
    if switches:
        best: tuple[float, dict[str, Any]] | None = None
        for values in itertools.product((False, True), repeat=len(switches)):
            knobs = {**out, **dict(zip(switches, values, strict=True))}
            ev = estimate(EstimateRequest(scenario=Scenario.model_validate(_with(_document(run), knobs))))
            if ev.fits and (best is None or ev.time.step_seconds < best[0]):
                best = (ev.time.step_seconds, knobs)
        out = best[1] if best is not None else out
    return out


@dataclass
class HeldOut:
    id: str
    family: str
    evaluation: Evaluation
    quantity: str
    error: float  # predicted / measured throughput − 1 (= measured / predicted step − 1)
    interval: tuple[float, float]
    measured_memory: float | None  # bytes, of `memory_kind`
    memory_kind: str | None
    predicted_memory: float | None
    completed: dict[str, Any]  # layout knobs the source does not state, as completed (completed_knobs)

    @property
    def fits(self) -> bool:
        return self.evaluation.fits

    @property
    def covered(self) -> bool:
        return self.interval[0] <= self.error <= self.interval[1]

    @property
    def memory_error(self) -> float | None:
        if self.measured_memory is None or self.predicted_memory is None:
            return None
        return self.predicted_memory / self.measured_memory - 1


def evaluate_run(run: dict[str, Any], calibration: dict[str, Any] | None = None) -> HeldOut:
    knobs = completed_knobs(run)
    sc = scenario_of(run, knobs)
    ev = estimate(EstimateRequest(scenario=sc))
    meas = measured_of(run, ev.gpu, ev.layout.precision)  # what was measured, and how the source counts it
    if isinstance(meas, str):
        raise ValueError(f"{run['id']}: {meas}")
    case = Case(id=run["id"], model=ev.model, layout=ev.layout, gpu=ev.gpu, gpus_per_node=ev.gpus_per_node,
                seq=ev.seq, impl=sc.implementation, efficiency=ev.gpu.efficiency, hardware_flops=meas.hardware_flops,
                measured_tflops=meas.tflops, measured_step=meas.step, measured_tokens_per_gpu=meas.tokens_per_gpu,
                measured_memory=meas.memory)
    c = compare(case, ev.time.step_seconds)
    band = error_band(regime_of(ev.layout, ev.gpu, sc.implementation.framework), calibration)
    mm = meas.memory
    return HeldOut(id=run["id"], family=family_of(run), evaluation=ev, quantity=c.quantity, error=c.error,
                   interval=(band.low, band.high), measured_memory=mm.bytes if mm else None,
                   memory_kind=mm.kind if mm else None,
                   predicted_memory=predicted_memory(ev.memory, mm.kind) if mm else None, completed=knobs)


def run_all(path: Path = VALIDATION_PATH, calibration: dict[str, Any] | None = None
            ) -> tuple[list[HeldOut], list[tuple[str, str]]]:
    """Every run evaluated, and the runs planner refuses (an InputError: a layout it calls illegal) with why."""
    results: list[HeldOut] = []
    refused: list[tuple[str, str]] = []
    for r in load_runs(path):
        try:
            results.append(evaluate_run(r, calibration))
        except InputError as e:
            refused.append((r["id"], str(e)))
    return results, refused


@dataclass(frozen=True)
class Summary:
    family: str
    runs: int
    median: float
    bias: float  # signed median: positive where planner is optimistic (measured slower than predicted)
    worst: float  # signed error of the run with the largest |error|
    covered: int
    fit: int
    memory_runs: int
    memory_median: float | None
    memory_worst: float | None  # signed


def summary(results: list[HeldOut], family: str = "all") -> Summary:
    errs = [abs(r.error) for r in results]
    worst = max(results, key=lambda r: abs(r.error)).error
    mem = [e for r in results if (e := r.memory_error) is not None]
    return Summary(family, len(results), statistics.median(errs), statistics.median(r.error for r in results), worst,
                   sum(r.covered for r in results),
                   sum(r.fits for r in results), len(mem), statistics.median(abs(e) for e in mem) if mem else None,
                   max(mem, key=abs) if mem else None)


def heldout_bands(results: list[HeldOut]) -> dict[str, dict[str, dict[str, Any]]]:
    """The step-time error (measured / predicted − 1) of the dense and the mixture-of-experts runs (`regimes`), and of
    the dense runs by GPU generation (`generations`): 10th, 50th and 90th percentile, run count and models
    (planner/data/heldout_bands.yaml, what the warnings of MoE plans and of plans on an uncalibrated generation
    quote); and the measured peak memory's error (`memory`, measured / predicted − 1 of the runs that publish a
    peak: every plan's peak range and its `memory_margin` warning)."""

    def band(rs: list[HeldOut]) -> dict[str, Any]:
        return {**band_of([r.error for r in rs]), "models": sorted({r.evaluation.model.name for r in rs})}

    dense = [r for r in results if r.evaluation.model.moe is None]
    moe = [r for r in results if r.evaluation.model.moe is not None]
    gens = sorted({gpu_generation(r.evaluation.gpu) for r in dense})
    # the peak, as the time: measured / predicted − 1 (positive where the model under-predicts)
    peaks = [r for r in results if r.memory_error is not None]
    memory = {**band_of([1 / (1 + r.memory_error) - 1 for r in peaks if r.memory_error is not None]),
              "kinds": sorted({str(r.memory_kind) for r in peaks}),
              "frameworks": dict(sorted(Counter(r.evaluation.framework for r in peaks).items())),
              "models": sorted({r.evaluation.model.name for r in peaks})}
    return {"regimes": {name: band(rs) for name, rs in (("dense", dense), ("moe", moe)) if rs},
            "generations": {g: band([r for r in dense if gpu_generation(r.evaluation.gpu) == g]) for g in gens},
            **({"memory": memory} if peaks else {})}


def write_bands(results: list[HeldOut], path: Path = HELDOUT_BANDS_PATH) -> None:
    head = ("# Generated by benchmarks/validation.py --write: planner's step-time error (measured / predicted - 1) on\n"
            "# the held-out runs of validation_runs.yaml: dense and mixture-of-experts, and the dense runs by GPU\n"
            "# generation. An MoE plan's `extrapolated` warning quotes the moe band, a plan on a generation without\n"
            "# calibration runs its generation's. `memory`: the measured peak's error (measured / predicted - 1)\n"
            "# of the runs that publish one, every plan's memory.bytes_range and `memory_margin` warning. Nothing\n"
            "# here changes a prediction or a fit.\n")
    path.write_text(head + yaml.safe_dump(heldout_bands(results), sort_keys=True), encoding="utf-8")


def by_family(results: list[HeldOut]) -> dict[str, list[HeldOut]]:
    out: dict[str, list[HeldOut]] = {}
    for r in results:
        out.setdefault(r.family, []).append(r)
    return out


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1%}"


def report(results: list[HeldOut], refused: list[tuple[str, str]], source: str) -> None:
    print(f"runs: {source} (held out: not in the calibration file)")
    print("err: measured / predicted step − 1 in the source's quantity (bias: its signed median, positive where")
    print("planner is optimistic); band: the regime's 10th–90th percentile;")
    print("mem: predicted / measured − 1 of the published peak (reserved or allocated)\n")
    for fam, rs in by_family(results).items():
        print(f"## {fam}")
        print(f"{'run':58} {'gpu':15} {'TP/PP/DP/CP vpp ep':22} {'pred s':>8} {'err':>7} {'band':>16} in "
              f"{'GiB':>6}/{'cap':<4} fits {'meas GiB':>8} {'mem':>7}")
        for r in rs:
            ev, lay = r.evaluation, r.evaluation.layout
            lo, hi = r.interval
            meas = "" if r.measured_memory is None else f"{r.measured_memory / GIB:8.1f} {pct(r.memory_error):>7}"
            print(f"{r.id:58} {ev.gpu.name:15} {f'{lay.tp}/{lay.pp}/{lay.dp}/{lay.cp} v{lay.vpp} e{lay.ep}':22} "
                  f"{ev.time.step_seconds:8.3f} {r.error:+7.1%} {lo:+6.1%}..{hi:+6.1%} {'y' if r.covered else 'n'}  "
                  f"{ev.memory.total / GIB:6.1f}/{ev.capacity_bytes / GIB:<4.0f} {'yes ' if r.fits else 'NO  '} {meas}")
        print()
    print(f"{'family':26} {'runs':>4} {'median |err|':>12} {'worst':>8} {'bias':>7} {'in band':>8} {'fit':>7} "
          f"{'mem runs':>8} {'mem median':>10} {'mem worst':>9}")
    for fam, rs in [*by_family(results).items(), ("all", results)]:
        s = summary(rs, fam)
        print(f"{fam:26} {s.runs:4} {s.median:12.1%} {s.worst:+8.1%} {s.bias:+7.1%} {s.covered:4}/{s.runs:<3} "
              f"{s.fit:3}/{s.runs:<3} "
              f"{s.memory_runs:8} {'—' if s.memory_median is None else f'{s.memory_median:.1%}':>10} "
              f"{pct(s.memory_worst):>9}")
    s = summary(results)
    print(f"\ntargets: median ≤ {MEDIAN_TARGET:.0%} ({s.median:.1%}), worst ≤ {WORST_TARGET:.0%} ({abs(s.worst):.1%}), "
          f"fit ≥ {FIT_TARGET:.0%} ({s.fit / s.runs:.1%}), memory within {MEMORY_TARGET:.0%} "
          f"({sum(abs(r.memory_error or 0) <= MEMORY_TARGET for r in results if r.memory_error is not None)}"
          f"/{s.memory_runs})")
    for r in results:
        if r.completed:
            knobs = ", ".join(f"{k} {v}" for k, v in r.completed.items())
            print(f"  completed (not stated by the source): {r.id}: {knobs}")
    for r in results:
        if not r.fits:
            parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in r.evaluation.memory.as_dict().items())
            print(f"  does not fit: {r.id}: {parts} GiB")
    for rid, why in refused:
        print(f"  refused: {rid}: {why}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=VALIDATION_PATH, help="a runs file whose runs have `planner:` blocks")
    ap.add_argument("--write", action="store_true", help="rewrite planner/data/heldout_bands.yaml from this run")
    args = ap.parse_args(argv)
    if not args.runs.is_file():
        print(f"--runs: {args.runs} not found")
        return 2
    results, refused = run_all(args.runs)
    report(results, refused, os.path.relpath(args.runs, ROOT))
    if args.write:
        write_bands(results)
        print(f"\nwrote {os.path.relpath(HELDOUT_BANDS_PATH, ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
