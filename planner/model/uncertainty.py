"""How sure the time model is: a step-time interval from the calibration residuals, by regime.

The residual of a calibration run is e = measured step / predicted step − 1 (equivalently predicted /
measured throughput − 1; planner.interop.published.compare). Runs are grouped by regime, three
coordinates read from what a plan states:

- GPU generation (`gpu_generation`): ampere, hopper, blackwell, … (`GpuSku.arch`: stated, else from the catalog
  name; a scenario GPU has its base's);
- framework family: `implementation.framework` (megatron-core, torchtitan, fsdp, deepspeed);
- parallel regime (`parallel_regime`): expert (EP > 1: routed experts, their dispatch and grouped GEMMs, which
  no calibration run exercises, so an MoE plan falls back to a coarser, widened band), sharded (ZeRO-3/FSDP),
  pipeline (PP > 1), tensor (TP or CP > 1, no PP), data (DP only, ZeRO ≤ 2).

The interval of a regime is the 10th–90th percentile of its residuals (estimated at the k/(n+1) plotting
position, `residual_percentile`), applied to the predicted step:
[step·(1 + p10), step·(1 + p90)]. A regime with fewer than MIN_RUNS calibration runs falls back to the
next coarser grouping — generation × framework, then framework, then all runs pooled — and every level
it falls back widens the band around its median by WIDEN_PER_LEVEL, so a plan in a thin or unseen
regime gets a wider interval, never a narrower one. The residuals, the bands and the best MFU measured
per GPU generation (planner's convention: causal attention at half, planner.model.flops) live in
planner/data/calibration.yaml, written by `benchmarks/accuracy.py --write` from the current model; a
test fails when that file no longer matches the model.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from planner.schema import GIB, GpuSku, Layout, ModelSpec, generation_of_name

CALIBRATION_PATH = Path(__file__).resolve().parent.parent / "data" / "calibration.yaml"
# The step-time error on the held-out runs, dense and MoE (benchmarks/validation.py --write): quoted, never fitted
HELDOUT_BANDS_PATH = CALIBRATION_PATH.with_name("heldout_bands.yaml")
MIN_RUNS = 5  # residuals a grouping needs before its percentiles stand on their own
WIDEN_PER_LEVEL = 1.5  # band half-widths grow by this factor for each coarser level a regime falls back to
PERCENTILES = (10.0, 90.0)
LEVELS = ("regime", "generation+framework", "framework", "pooled")

def gpu_generation(gpu: GpuSku | str) -> str:
    """The architecture generation of a GPU (a scenario GPU's is its base's) or of a catalog name."""
    return generation_of_name(gpu) if isinstance(gpu, str) else gpu.arch


# The parallel regimes, in the order `parallel_regime` tests them (the vectorised search indexes this tuple).
PARALLEL_REGIMES = ("expert", "sharded", "pipeline", "tensor", "data")


def parallel_regime(layout: Layout) -> str:
    """expert (EP > 1), sharded (ZeRO-3/FSDP), pipeline (PP > 1), tensor (TP or CP > 1) or data (DP only)."""
    if layout.ep > 1:
        return "expert"
    if layout.zero == 3:
        return "sharded"
    if layout.pp > 1:
        return "pipeline"
    if layout.tp > 1 or layout.cp > 1:
        return "tensor"
    return "data"


@dataclass(frozen=True)
class Regime:
    generation: str
    framework: str
    parallel: str

    def key(self, level: str) -> str:
        """The grouping key of this regime at a fallback level."""
        return {
            "regime": f"{self.generation}/{self.framework}/{self.parallel}",
            "generation+framework": f"{self.generation}/{self.framework}",
            "framework": self.framework,
            "pooled": "all",
        }[level]


def regime_of(layout: Layout, gpu: GpuSku | str, framework: str = "megatron-core") -> Regime:
    """The regime a plan belongs to: GPU generation × framework family × parallel regime."""
    return Regime(gpu_generation(gpu), framework, parallel_regime(layout))


@dataclass(frozen=True)
class Band:
    """Relative errors e (measured / predicted step − 1) a regime's step time falls within."""

    low: float  # 10th percentile of e, widened for fallbacks
    high: float  # 90th percentile of e, widened for fallbacks
    median: float
    runs: int  # calibration runs behind it
    level: str  # the grouping it came from (LEVELS)
    key: str


def residual_percentile(errors: Sequence[float] | np.ndarray, q: Any) -> Any:
    """Percentile(s) `q` (0–100) of a sample of residuals, as an estimate of where a new run's error falls: the
    k/(n+1) plotting position (Hyndman & Fan 1996, definition 6; numpy's "weibull"), under which the band between
    the 10th and 90th covers a new draw 80 % of the time on average. Interpolating between the sample's own
    points ((k−1)/(n−1), numpy's default) gives narrower bands that a new run falls outside more often."""
    return np.percentile(np.asarray(errors, dtype=float), q, method="weibull")


def band_of(errors: Sequence[float]) -> dict[str, float]:
    e = np.asarray(errors, dtype=float)
    lo, hi = residual_percentile(e, PERCENTILES)
    return {"runs": len(e), "p10": round(float(lo), 4), "p90": round(float(hi), 4),
            "median": round(float(np.median(e)), 4)}


def build_calibration(records: Iterable[dict[str, Any]], reference: str = "") -> dict[str, Any]:
    """The calibration file's content from per-run records {id, generation, framework, parallel, error,
    mfu}: bands at every grouping level, the best measured MFU per GPU generation, and the residuals."""
    recs = sorted(records, key=lambda r: r["id"])
    groups: dict[str, dict[str, list[float]]] = {lvl: {} for lvl in LEVELS}
    for r in recs:
        reg = Regime(r["generation"], r["framework"], r["parallel"])
        for lvl in LEVELS:
            groups[lvl].setdefault(reg.key(lvl), []).append(r["error"])
    best: dict[str, dict[str, Any]] = {}
    for r in recs:
        b = best.get(r["generation"])
        if r.get("mfu") is not None and (b is None or r["mfu"] > b["mfu"]):
            best[r["generation"]] = {"mfu": round(r["mfu"], 4), "run": r["id"]}
    coverage: dict[str, dict[str, Any]] = {}
    for r in recs:  # what the runs measured per generation: a plan outside it extrapolates (`extrapolation`)
        coverage[r["generation"]] = _merged(coverage.get(r["generation"], _EMPTY_COVERAGE), _run_coverage(r))
    return {
        "generated_by": "benchmarks/accuracy.py --write",
        "reference": reference,
        "percentiles": list(PERCENTILES),
        "min_runs": MIN_RUNS,
        "widen_per_level": WIDEN_PER_LEVEL,
        "bands": {lvl: {k: band_of(v) for k, v in sorted(groups[lvl].items())} for lvl in LEVELS},
        "best_mfu": dict(sorted(best.items())),
        "coverage": dict(sorted(coverage.items())),
        "runs": [{"id": r["id"], "regime": Regime(r["generation"], r["framework"], r["parallel"]).key("regime"),
                  "error": round(r["error"], 4)} for r in recs],
    }


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def load_calibration(path: Path | None = None) -> dict[str, Any]:
    """The calibration file (planner/data/calibration.yaml unless `path`)."""
    p = path or CALIBRATION_PATH
    return _load(str(p), p.stat().st_mtime_ns)


def heldout_bands() -> dict[str, dict[str, dict[str, Any]]]:
    """The held-out runs' step-time error: `regimes` (dense, moe) and `generations` (dense runs by GPU generation),
    as benchmarks/validation.py --write left them."""
    return dict(_load(str(HELDOUT_BANDS_PATH), HELDOUT_BANDS_PATH.stat().st_mtime_ns))


def _measured(b: dict[str, Any] | None, what: str) -> str:
    """What held-out runs measured against the model, for a warning ('' without them)."""
    if not b:
        return ""
    return (f"; on {b['runs']} {what} held out for validation the measured step was {b['p10']:+.0%} to "
            f"{b['p90']:+.0%} off the prediction (measured / predicted − 1, 10th–90th percentile; median "
            f"{b['median']:+.0%})")


def memory_band() -> dict[str, Any] | None:
    """The measured peak memory of the held-out runs that publish one against the memory model: measured / predicted
    − 1 (positive where the model under-predicts), 10th, 50th and 90th percentile; None without such runs."""
    return heldout_bands().get("memory")


def peak_range(peak: float, total: float | None = None) -> tuple[float, float]:
    """[low, high] bytes the measured peak of a plan falls within on 80 % of the held-out runs with a measured peak
    (memory_band): `peak`, the plan's prediction under planner's default overheads (what those runs were compared
    with), over their error, widened to include the plan's own prediction `total` (default `peak`); (total, total)
    without such runs."""
    total = peak if total is None else total
    b = memory_band()
    if not b:
        return total, total
    return min(total, peak * (1 + b["p10"])), max(total, peak * (1 + b["p90"]))


def memory_margin(peak: float, capacity: float, total: float | None = None) -> str | None:
    """Why a plan predicted to fit may not (the `memory_margin` warning): the high end of its peak range
    (peak_range(peak, total)) is above the capacity. None when even that end fits, or when the plan's prediction
    `total` does not fit at all (its verdict says so)."""
    total = peak if total is None else total
    b = memory_band()
    high = peak_range(peak, total)[1]
    if b is None or total > capacity or high <= capacity:  # no band: the range is the prediction itself
        return None
    return (f"the predicted peak, {total / GIB:,.1f} of {capacity / GIB:,.1f} GiB, is within the memory model's "
            f"error of the capacity: on {b['runs']} published runs held out for validation{_counts(b)} the measured "
            f"peak was {b['p10']:+.0%} to {b['p90']:+.0%} off the prediction (measured / predicted − 1, 10th–90th "
            f"percentile; median {b['median']:+.0%}), so this one may reach {high / GIB:,.1f} GiB")


def _counts(b: dict[str, Any]) -> str:
    """' (23 torchtitan, 1 megatron-core)': the frameworks behind a band ('' when it does not say)."""
    fws = sorted(b.get("frameworks", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return " (" + ", ".join(f"{n} {fw}" for fw, n in fws) + ")" if fws else ""


def _moe_measured() -> str:
    b = heldout_bands()["regimes"].get("moe")
    return _measured(b, f"published MoE runs ({', '.join(b['models'])})") if b else ""


def error_band(regime: Regime, calibration: dict[str, Any] | None = None) -> Band:
    """The regime's band, falling back to coarser groupings (and widening) while a grouping has fewer
    than MIN_RUNS calibration runs; the pooled band always exists."""
    cal = calibration if calibration is not None else load_calibration()
    min_runs = cal.get("min_runs", MIN_RUNS)
    widen = cal.get("widen_per_level", WIDEN_PER_LEVEL)
    for depth, lvl in enumerate(LEVELS):
        b = cal["bands"][lvl].get(regime.key(lvl))
        if b is None or (b["runs"] < min_runs and lvl != "pooled"):
            continue
        k = widen ** depth
        return Band(low=b["median"] - k * (b["median"] - b["p10"]), high=b["median"] + k * (b["p90"] - b["median"]),
                    median=b["median"], runs=b["runs"], level=lvl, key=regime.key(lvl))
    raise ValueError("calibration file has no pooled band")


def step_time_interval(
    step_seconds: float, layout: Layout, gpu: GpuSku | str, framework: str = "megatron-core",
    calibration: dict[str, Any] | None = None,
) -> tuple[float, float]:
    """[low, high] seconds the measured step of this plan falls within 80% of the time (the 10th–90th
    percentile of the model's error in its regime, see the module docstring)."""
    band = error_band(regime_of(layout, gpu, framework), calibration)
    return step_seconds * (1 + band.low), step_seconds * (1 + band.high)


def best_published_mfu(gpu: GpuSku | str, calibration: dict[str, Any] | None = None) -> float | None:
    """The highest MFU a calibration run measured on this GPU generation (planner's FLOP convention);
    None when no run used that generation (any estimate there extrapolates)."""
    cal = calibration if calibration is not None else load_calibration()
    b = cal.get("best_mfu", {}).get(gpu_generation(gpu))
    return None if b is None else float(b["mfu"])


def _fallback(regime: Regime, cal: dict[str, Any]) -> tuple[int, str]:
    """(depth, level) of the grouping `error_band` uses for this regime."""
    min_runs = cal.get("min_runs", MIN_RUNS)
    for depth, lvl in enumerate(LEVELS):
        b = cal["bands"][lvl].get(regime.key(lvl))
        if b is not None and (b["runs"] >= min_runs or lvl == "pooled"):
            return depth, lvl
    raise ValueError("calibration file has no pooled band")


def error_quantile(regime: Regime, confidence: float, calibration: dict[str, Any] | None = None) -> float:
    """The relative step-time error e the measured step stays below with probability `confidence`: the
    `confidence` percentile of the residuals of the grouping `error_band` uses, widened around their median
    by the same WIDEN_PER_LEVEL per fallback level, so 0.1 and 0.9 give the band's low and high. The
    residuals come from the file's `runs`; a file without them falls back to the band's high edge."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    cal = calibration if calibration is not None else load_calibration()
    depth, lvl = _fallback(regime, cal)
    key = regime.key(lvl)
    errors = [r["error"] for r in cal.get("runs", []) if lvl == "pooled" or _key_at(r["regime"], lvl) == key]
    band = error_band(regime, cal)
    if not errors:
        return band.high
    median = float(np.median(errors))
    q = float(residual_percentile(errors, 100 * confidence))
    return median + cal.get("widen_per_level", WIDEN_PER_LEVEL) ** depth * (q - median)


def _key_at(regime_key: str, level: str) -> str:
    """A run's regime key ("generation/framework/parallel") at a coarser level."""
    gen, fw, par = regime_key.split("/")
    return Regime(gen, fw, par).key(level)


def attention_variants(m: ModelSpec) -> list[str]:
    """What a model's attention does beyond causal softmax attention over every key: a sliding window, sinks."""
    return [name for name, used in (("sliding window", m.sliding_window is not None),
                                    ("attention sinks", m.attention_sinks)) if used]


# What no run measured: the coverage `_merged` starts from.
_EMPTY_COVERAGE: dict[str, Any] = {"micro_batch": [], "recompute": [], "ep": 1, "cp": 1, "cp_exchanges": [], "seq": 0,
                                   "moe": False, "attention": [], "offload": False}


def _run_coverage(r: dict[str, Any]) -> dict[str, Any]:
    """What one calibration record measured, in coverage form."""
    cp = r.get("cp") or 1
    return {"micro_batch": [r["micro_batch"]] * 2 if r.get("micro_batch") is not None else [],
            "recompute": [r["recompute"]] if r.get("recompute") is not None else [], "ep": r.get("ep") or 1, "cp": cp,
            "cp_exchanges": [r["cp_exchange"]] if cp > 1 and r.get("cp_exchange") else [], "seq": r.get("seq") or 0,
            "moe": bool(r.get("moe")), "attention": list(r.get("attention", [])), "offload": bool(r.get("offload"))}


def _merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What two coverages measured together: the micro-batch range spanning both, the union of the modes, exchanges
    and attention variants, the larger EP, CP and sequence."""
    spans = [x for c in (a, b) for x in c.get("micro_batch", [])]
    return {
        "micro_batch": [min(spans), max(spans)] if spans else [],
        "recompute": sorted({*a.get("recompute", []), *b.get("recompute", [])}),
        "ep": max(a.get("ep", 1), b.get("ep", 1)),
        "cp": max(a.get("cp", 1), b.get("cp", 1)),
        "cp_exchanges": sorted({*a.get("cp_exchanges", []), *b.get("cp_exchanges", [])}),
        "seq": max(a.get("seq", 0), b.get("seq", 0)),
        "moe": bool(a.get("moe", False) or b.get("moe", False)),
        "attention": sorted({*a.get("attention", []), *b.get("attention", [])}),
        "offload": bool(a.get("offload", False) or b.get("offload", False)),
    }


def extrapolation(layout: Layout, gpu: GpuSku | str, framework: str = "megatron-core", mfu: float | None = None,
                  calibration: dict[str, Any] | None = None, seq: int | None = None, moe: bool = False,
                  cp_exchange: str | None = None, attention: Sequence[str] = (), offload: bool = False) -> list[str]:
    """Why a plan lies outside what the calibration runs measured (empty when inside): an MFU above the best
    any run reached on that GPU generation, or a generation, parallel regime, recompute mode, micro-batch,
    mixture-of-experts model (`moe`), expert or context parallelism (or its K/V exchange, `cp_exchange`), an
    attention variant (`attention`: attention_variants), activation offload (`offload`) or a sequence length no run
    there used. On a generation no run used, the other reasons are those no run on any GPU covers. Each reason is
    one sentence for the `extrapolated` warning."""
    cal = calibration if calibration is not None else load_calibration()
    regime = regime_of(layout, gpu, framework)
    gen = regime.generation
    best = best_published_mfu(gpu, cal)
    coverage = cal.get("coverage", {})
    if best is None:
        held = None if moe else heldout_bands()["generations"].get(gen)
        out = [f"no calibration run on {gen} GPUs: the step time is extrapolated from other generations"
               + _measured(held, f"published dense runs on {gen} GPUs")]
        cov = functools.reduce(_merged, coverage.values(), _EMPTY_COVERAGE) if coverage else None
        where = "any GPU"
    else:
        out = []
        if mfu is not None and mfu > best:
            out.append(f"MFU {mfu:.1%} is above the best measured on {gen} GPUs ({best:.1%})")
        if regime.key("regime") not in cal["bands"]["regime"]:
            out.append(f"no calibration run in the regime {regime.key('regime')} (GPU generation/framework/"
                       f"parallelism)")
        cov, where = coverage.get(gen), f"{gen} GPUs"
    if cov is not None:
        out += _uncovered(layout, cov, where, seq, moe, cp_exchange, attention, offload)
    return out


def _uncovered(layout: Layout, cov: dict[str, Any], where: str, seq: int | None, moe: bool, cp_exchange: str | None,
               attention: Sequence[str], offload: bool = False) -> list[str]:
    """The reasons a plan lies outside coverage `cov` (what the calibration runs on `where` measured)."""
    out = []
    if cov["recompute"] and layout.recompute not in cov["recompute"]:
        out.append(f"recompute {layout.recompute}: no calibration run on {where} used it "
                   f"(measured: {', '.join(cov['recompute'])})")
    if moe and not cov.get("moe", False):
        out.append(f"mixture-of-experts model: no calibration run on {where} trained one; the router, token "
                   "permutation, grouped expert GEMMs" + (" and the expert all-to-all" if layout.ep > 1 else "")
                   + " are not calibrated" + _moe_measured())
    elif layout.ep > cov.get("ep", 1):
        out.append(f"expert parallelism {layout.ep}: no calibration run on {where} dispatched MoE tokens over "
                   f"more than {cov.get('ep', 1)} rank(s); the all-to-all and grouped GEMMs are not calibrated")
    if layout.cp > cov.get("cp", 1):
        out.append(f"context parallelism {layout.cp}: no calibration run on {where} split a sequence over "
                   f"more than {cov.get('cp', 1)} rank(s); its attention steps and K/V exchanges are not "
                   f"calibrated there")
    elif layout.cp > 1 and cp_exchange and "cp_exchanges" in cov and cp_exchange not in cov["cp_exchanges"]:
        measured = ", ".join(cov["cp_exchanges"]) or "none"
        out.append(f"context parallelism through the {cp_exchange} K/V exchange: no calibration run on {where} "
                   f"exchanged K/V that way (measured: {measured})")
    unmeasured = [a for a in attention if a not in cov.get("attention", [])]
    if unmeasured:
        out.append(f"{' and '.join(unmeasured)}: no calibration run on {where} used it; the attention kernels "
                   f"it takes are timed as flash attention over the keys each query attends to")
    if seq is not None and cov.get("seq") and seq > cov["seq"]:
        out.append(f"sequence length {seq:,}: longer than any calibration run on {where} ({cov['seq']:,}); "
                   f"the attention share of the step is extrapolated")
    if offload and not cov.get("offload", False):
        out.append(f"activation offload: no calibration run on {where} offloaded activations; the host-link copies "
                   "and what the compute hides of them are modelled (Transformer Engine's schedule), not measured")
    lo_hi = cov["micro_batch"]
    if lo_hi and not lo_hi[0] <= layout.micro_batch <= lo_hi[1]:
        out.append(f"micro-batch {layout.micro_batch} is outside the calibration runs on {where} "
                   f"({lo_hi[0]}–{lo_hi[1]})")
    return out
