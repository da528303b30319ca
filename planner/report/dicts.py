"""The JSON objects users script against, built from the result types of the public API.

`planner estimate` prints `estimate_dict`, whose `memory`, `time` and `cost` objects every plan of
`planner solve` and `planner review` repeats; `--format csv` and `markdown` flatten the same dicts.
Field names here are the stable interface: add fields, never rename them.
"""

from __future__ import annotations

import math
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from planner.model.presets import knobs_dict
from planner.workloads.training.layout import as_fields

if TYPE_CHECKING:
    import pandas as pd

    from planner.search.plans import Plan, Solution
    from planner.workflows.inference import InferenceEstimate
    from planner.workflows.review import Better, Finding, Review
    from planner.workflows.solve import SolveResult
    from planner.workloads.training.evaluation import Evaluation

# The back-of-envelope rule users quote for mixed-precision Adam training state (2 + 2 + 4 + 4 + 4 +
# 4 B: fp16 weights and grads, fp32 master, two moments and a grad copy), shown beside the exact model.
RULE_OF_THUMB_STATE_BYTES = 20


# --------------------------------------------------------------------------------------------
# estimate: one evaluation
# --------------------------------------------------------------------------------------------


def memory_dict(ev: Evaluation) -> dict[str, Any]:
    return {
        "bytes": ev.memory.as_dict(),
        "capacity_bytes": ev.capacity_bytes,
        "fits": ev.fits,
        "headroom_bytes": ev.headroom_bytes,
        "bytes_range": [round(b) for b in ev.memory_range],
        "binding_stage": ev.memory.stage,
        "unit_note": "bytes; tables show GiB = 2^30 bytes",
    }


def _finite(x: float) -> float | None:
    """JSON has no infinity: a job that cannot finish reports null days."""
    return float(x) if math.isfinite(x) else None


def time_dict(ev: Evaluation) -> dict[str, Any]:
    """The `time` object. `days` is the expected wall-clock with failures, checkpoints and restarts (the ideal
    time with `reliability: none`), `days_ideal` the failure-free time and `goodput` their ratio;
    `step_seconds_range` and `days_range` are the 10th–90th percentile of the time model's error in the plan's
    regime (planner.model.uncertainty); `days_planned` is what deadline and budget were held to (at
    `confidence`, the quantile of that error; the expected days at the point estimate)."""
    t, x = ev.time, ev.expected
    return {
        "step_seconds": t.step_seconds,
        "step_seconds_range": list(ev.step_seconds_range),
        "breakdown": t.breakdown,
        "tokens_per_s": t.tokens_per_s,
        "tflops_per_gpu": t.tflops_per_gpu,
        "mfu": t.mfu,
        "hfu": t.hfu,
        "days": _finite(x.days),
        "days_ideal": t.days,
        "days_range": [_finite(d) for d in ev.days_range],
        "days_planned": _finite(ev.planned_days),
        "confidence": ev.basis.confidence,
        "goodput": x.goodput,
        "gpu_hours": _finite(x.gpu_hours),
        "gpu_hours_ideal": t.gpu_hours,
        "energy_mwh": _finite(ev.energy_kwh / 1000.0),
        "energy_mwh_ideal": t.energy_kwh / 1000.0,
        "tokens": ev.tokens,
        "mode": t.mode,
    }


def reliability_dict(ev: Evaluation) -> dict[str, Any]:
    """The `reliability` object: interruptions, the checkpoint interval and size, and where time is lost
    (planner.model.reliability; `model` "none" for the ideal time)."""
    return {"model": "none" if ev.basis.reliability is None else "failures"} | ev.expected.as_json()["reliability"]


def warnings_list(ev: Evaluation) -> list[dict[str, Any]]:
    """`warnings[]`: `extrapolated` when the plan lies outside what the calibration runs measured, with why;
    `memory_margin` when it fits by less than the memory model's error; `gpu_count` when its GPU count is none the
    search offers (an estimate of any count); `beyond_price_offer` when its GPU count is more than the price's offer
    rents together."""
    out = []
    reasons = ev.warnings
    if reasons:
        out.append({"code": "extrapolated", "message": "extrapolated: " + "; ".join(reasons), "reasons": reasons})
    if ev.memory_margin:
        out.append({"code": "memory_margin", "message": "memory margin: " + ev.memory_margin,
                    "reasons": [ev.memory_margin]})
    if ev.unsold_count:
        out.append({"code": "gpu_count", "message": "GPU count: " + ev.unsold_count, "reasons": [ev.unsold_count]})
    if ev.beyond_offer:
        out.append({"code": "beyond_price_offer", "message": "beyond the price's offer: " + ev.beyond_offer,
                    "reasons": [ev.beyond_offer]})
    return out


def implementation_dict(ev: Evaluation) -> dict[str, Any]:
    """The `implementation` object: every framework knob the memory and time models used, the scenario's
    choices over the framework's documented defaults (`Evaluation.knobs`)."""
    return knobs_dict(ev.knobs)


def cost_dict(ev: Evaluation) -> dict[str, Any]:
    return {
        "usd": ev.cost_usd,
        "usd_per_million_tokens": ev.usd_per_million_tokens,
        "usd_per_gpu_hour": ev.rate.usd_per_gpu_hour if ev.rate else None,
        "price": ev.rate.label if ev.rate else None,
    }


def estimate_dict(ev: Evaluation) -> dict[str, Any]:
    """The JSON of `planner estimate`."""
    p = ev.params
    state = RULE_OF_THUMB_STATE_BYTES * p.total
    label_bytes = ev.gpu.marketed_gb * 1e9 if ev.gpu.marketed_gb else ev.gpu.hbm_bytes
    return {
        "model": ev.model.name,
        "gpu": ev.gpu.name,
        "gpus": ev.layout.gpus,
        "nodes": ev.nodes,
        "layout": as_fields(ev.layout),
        "seq": ev.seq,
        "params": {"total": p.total, "active": p.active, "embedding": p.embedding + p.position,
                   "output": p.output, "non_embedding": p.non_embedding},
        "flops": {
            "model_per_step": ev.flops.model,
            "hardware_per_step": ev.flops.hardware,
            "tokens_per_step": ev.flops.tokens,
            # planner.model.flops step_flops, as planner.workloads.training.evaluation counts them
            "attention": "causal scores counted at half: what flash kernels execute and Megatron-LM counts",
        },
        "memory": memory_dict(ev),
        "time": time_dict(ev),
        "reliability": reliability_dict(ev),
        "cost": cost_dict(ev),
        "warnings": warnings_list(ev),
        "implementation": implementation_dict(ev),
        "rules_of_thumb": {
            "state_bytes_20_per_param": state,
            # blog arithmetic divides by the vendor's label (80 GB = 80e9 B), not by what the driver reports
            "min_gpus_for_state": math.ceil(state / label_bytes),
        },
    }


def inference_dict(est: InferenceEstimate) -> dict[str, Any]:
    """The JSON of `planner estimate --inference`."""
    return {
        "mode": "inference",
        "model": est.model.name,
        "gpu": est.gpu.name,
        "gpus": est.gpus,
        "batch": est.batch,
        "context": est.context,
        "weight_dtype": est.weight_dtype,
        "kv_dtype": est.kv_dtype,
        "params": {"total": est.params.total, "active": est.params.active},
        "memory": {
            "bytes": est.memory.as_dict(),
            "capacity_bytes": est.capacity_bytes,
            "fits": est.fits,
            "headroom_bytes": est.headroom_bytes,
        },
    }


# --------------------------------------------------------------------------------------------
# solve
# --------------------------------------------------------------------------------------------


def plan_dict(plan: Plan) -> dict[str, Any]:
    ev = plan.evaluation
    return {
        "job": plan.job,
        "sku": plan.sku,
        "gpus": plan.gpus,
        "nodes": plan.nodes,
        "gpus_per_node": ev.gpus_per_node,
        "layout": as_fields(ev.layout),
        "memory": memory_dict(ev),
        "time": time_dict(ev),
        "reliability": reliability_dict(ev),
        "cost": cost_dict(ev),
        "warnings": warnings_list(ev),
        "solver_units": {"step_us": plan.step_us, "time_s": plan.time_s, "cost_cents": plan.cost_cents},
    }


def solution_dict(s: Solution) -> dict[str, Any]:
    return {
        "cost_usd": s.cost_usd,
        "days": s.days,
        "gpus": s.gpus,
        "plans": [{"job": p.job, "sku": p.sku, "gpus": p.gpus, "nodes": p.nodes,
                   "layout": as_fields(p.evaluation.layout), "cost_usd": p.evaluation.cost_usd,
                   "days": _finite(p.evaluation.expected.days), "days_ideal": p.evaluation.time.days,
                   "goodput": p.evaluation.expected.goodput,
                   "warnings": [w["code"] for w in warnings_list(p.evaluation)]} for p in s.plans],
    }


def solve_dict(result: SolveResult, timing: bool = True) -> dict[str, Any]:
    """The JSON of `planner solve` (`timing=False` leaves out the seconds, for reproducible output)."""
    solver: dict[str, Any] = {
        "seconds": round(result.seconds, 3) if timing else None,
        "search_space_size": result.search_space_size,
        "layouts_evaluated": result.layouts_evaluated,
        "layouts_pruned": result.search_space_size - result.layouts_evaluated,
        "candidates": result.candidates,
        "gap": result.gap,
        "engine": f"CP-SAT (ortools {version('ortools')})",
        "num_workers": result.num_workers,
        "random_seed": result.random_seed,
    }
    out: dict[str, Any] = {
        "status": result.status,
        "objective": result.objective,
        "jobs": result.jobs,
        "solver": solver,
        "plans": [plan_dict(p) | {"rank": i + 1} for i, p in enumerate(result.plans)],
    }
    if len(result.jobs) > 1:
        out["runner_ups"] = [solution_dict(s) for s in result.solutions[1:]]
    out["near_optimal"] = {"margin": result.margin, "solutions": [solution_dict(s) for s in result.near_optimal]}
    if result.pareto:
        out["pareto"] = [solution_dict(s) for s in result.pareto]
    if result.binding:
        out["binding"] = result.binding
    if result.reasons:
        out["reasons"] = result.reasons
    if result.skipped:
        out["skipped_skus"] = result.skipped
    return out


# --------------------------------------------------------------------------------------------
# review
# --------------------------------------------------------------------------------------------


def finding_dict(f: Finding) -> dict[str, str]:
    return {"code": f.code, "severity": f.severity, "message": f.message}


def better_dict(b: Better) -> dict[str, Any]:
    return plan_dict(b.plan) | {"speedup": b.speedup, "format": b.format, "changes": b.changes}


def review_dict(rev: Review) -> dict[str, Any]:
    """The JSON of `planner review`: estimate's object plus the verdict, findings and the better plan."""
    c, ev = rev.config, rev.evaluation
    out: dict[str, Any] = {"source": c.source, "ok": rev.ok, "gpus_given": c.gpus, **estimate_dict(ev)}
    out["legal"] = not rev.problems
    out["findings"] = [finding_dict(f) for f in rev.findings]
    out["better"] = better_dict(rev.better) if rev.better else None
    if rev.published is not None and c.case is not None:
        p = rev.published
        out["published"] = {"id": c.case.id, "quantity": p.quantity, "measured": p.measured,
                            "predicted": p.predicted, "error": p.error, "predicted_tflops": p.predicted_tflops}
    return out


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A comparison frame as JSON-ready rows: missing values left out (a row without a plan carries
    `reason`, not numbers)."""
    import numpy as np
    import pandas as pd

    out = []
    for r in df.to_dict(orient="records"):
        out.append({str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()
                    if not (pd.api.types.is_scalar(v) and pd.isna(v))})
    return out
