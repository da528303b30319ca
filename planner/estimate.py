"""`planner estimate`: one model, one GPU, one layout → the exact footprint, FLOPs, time and cost.

`EstimateRequest` gathers what the CLI flags and a scenario's keys say (flags win); `run_estimate`
turns it into an Evaluation; `estimate_dict` is the JSON users script against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from planner.errors import InputError, format_validation_error
from planner.evaluation import Evaluation, evaluate
from planner.legality import layout_problems
from planner.model.memory import InferenceMemory, inference_memory
from planner.model.params import count_params
from planner.scenario import EfficiencyOverride, Pricing, Scenario, resolve_model
from planner.schema import GpuSku, Implementation, Layout, ModelSpec, Overheads

# The back-of-envelope rule users quote for mixed-precision Adam training state (2 + 2 + 4 + 4 + 4 +
# 4 B: fp16 weights and grads, fp32 master, two moments and a grad copy), shown beside the exact model.
RULE_OF_THUMB_STATE_BYTES = 20
# Without --tokens: the compute-optimal budget of Hoffmann et al. 2022 (Chinchilla), ~20 tokens per parameter.
CHINCHILLA_TOKENS_PER_PARAM = 20.0


@dataclass
class EstimateRequest:
    """Every input of an estimate; None means 'not given' (a scenario or a default fills it)."""

    model: str | ModelSpec | None = None
    gpu: str | None = None
    gpus: int | None = None
    gpus_per_node: int | None = None
    seq: int | None = None
    global_batch: int | None = None
    tokens: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    dropout: float | None = None
    precision: str | None = None
    layout: dict[str, Any] = field(default_factory=dict)  # tp, pp, vpp, dp, cp, ep, zero, recompute, ...
    scenario: Scenario | None = None


def _pick(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


@dataclass
class EstimateInputs:
    """Everything one evaluation needs, resolved: what `estimate` and `review` both evaluate."""

    model: ModelSpec
    layout: Layout
    gpu: GpuSku
    gpus_per_node: int
    seq: int
    tokens: float
    implementation: Implementation
    overheads: Overheads
    efficiency: EfficiencyOverride
    pricing: Pricing | None  # None: the SKU has no price of that kind (no cost is reported)

    def evaluate(self, layout: Layout | None = None) -> Evaluation:
        return evaluate(
            self.model, layout or self.layout, self.gpu, seq=self.seq, tokens=self.tokens,
            gpus_per_node=self.gpus_per_node, implementation=self.implementation, overheads=self.overheads,
            efficiency=self.efficiency, pricing=self.pricing,
        )


def resolve_request(req: EstimateRequest) -> EstimateInputs:
    """Merge flags over scenario keys over defaults, derive dp, and validate the layout."""
    from planner.catalog import get_gpu

    sc = req.scenario
    target = sc.estimate if sc else None
    model_ref = _pick(req.model, sc.model if sc else None)
    if model_ref is None:
        raise InputError("--model: give a catalog model, --model-config FILE, or a scenario")
    model = resolve_model(model_ref)
    gpu_name = _pick(req.gpu, target.gpu if target else None, (sc.layout.sku if sc else None))
    if gpu_name is None:
        raise InputError("--gpu: give a GPU from `planner catalog gpus` (or `estimate: {gpu: ...}` in the scenario)")
    gpu = get_gpu(gpu_name)
    node = _pick(req.gpus_per_node, target.gpus_per_node if target else None,
                 sc.hardware.gpus_per_node if sc else None, gpu.node_size)
    fixed = sc.layout.model_dump(exclude={"sku", "gpus"}, exclude_none=True) if sc else {}
    fixed.update({k: v for k, v in req.layout.items() if v is not None})
    seq = _pick(req.seq, sc.job.seq_len if sc else None, model.max_seq)
    gpus = _pick(req.gpus, target.gpus if target else None, sc.layout.gpus if sc else None)
    tp, pp, cp = fixed.get("tp", 1), fixed.get("pp", 1), fixed.get("cp", 1)
    if "dp" not in fixed:
        if gpus is None:
            fixed["dp"] = 1
        elif gpus % (tp * pp * cp):
            raise InputError(f"--gpus: {gpus} is not divisible by tp·pp·cp = {tp}·{pp}·{cp} = {tp * pp * cp}")
        else:
            fixed["dp"] = gpus // (tp * pp * cp)
    mbs = fixed.get("micro_batch", 1)
    global_batch = _pick(req.global_batch, sc.job.global_batch if sc else None, fixed["dp"] * mbs)
    recipe: dict[str, Any] = {"precision": _pick(req.precision, sc.job.precision if sc else None, "bf16")}
    if sc:
        recipe |= {"optimizer": sc.job.optimizer, "fp32_grad_accumulation": sc.job.fp32_grad_accumulation}
    try:
        layout = Layout(global_batch=global_batch, **recipe, **fixed)
    except ValidationError as e:
        raise InputError(format_validation_error(e, "layout")) from None
    problems = layout_problems(model, layout, gpus=gpus, node_size=node, seq=seq,
                               framework=sc.implementation.framework if sc else "megatron-core")
    if problems:
        raise InputError("illegal layout: " + "; ".join(problems))
    impl = sc.implementation if sc else Implementation()
    if req.dropout is not None:
        impl = impl.model_copy(update={"dropout": req.dropout})
    eff = sc.efficiency if sc else EfficiencyOverride()
    if req.mfu is not None or req.hfu is not None:
        eff = eff.model_copy(update={"mfu": req.mfu, "hfu": req.hfu})
    tokens = _pick(req.tokens, sc.job.tokens if sc else None, CHINCHILLA_TOKENS_PER_PARAM * count_params(model).total)
    return EstimateInputs(
        model=model, gpu=gpu, layout=layout, gpus_per_node=node, seq=seq, tokens=float(tokens),
        implementation=impl, overheads=sc.overheads if sc else Overheads(), efficiency=eff,
        pricing=priced(gpu, sc.pricing if sc else Pricing()),
    )


def priced(gpu: GpuSku, pricing: Pricing) -> Pricing | None:
    """The pricing when the SKU has a price of that kind; None to report everything but the cost."""
    from planner.pricing import hourly_rate

    try:
        hourly_rate(gpu, pricing)
    except InputError:
        return None
    return pricing


def run_estimate(req: EstimateRequest) -> Evaluation:
    return resolve_request(req).evaluate()


def layout_dict(layout: Layout) -> dict[str, Any]:
    keys = ("tp", "pp", "vpp", "dp", "cp", "ep", "zero", "recompute", "sequence_parallel", "micro_batch",
            "global_batch", "precision")
    d = {k: getattr(layout, k) for k in keys}
    d["grad_accumulation"] = layout.grad_accumulation
    return d


def estimate_dict(ev: Evaluation) -> dict[str, Any]:
    """The JSON of `planner estimate` (and the `memory`/`time` objects reused by solve and review)."""
    p = ev.params
    state = RULE_OF_THUMB_STATE_BYTES * p.total
    label_bytes = ev.gpu.marketed_gb * 1e9 if ev.gpu.marketed_gb else ev.gpu.hbm_bytes
    out: dict[str, Any] = {
        "model": ev.model.name,
        "gpu": ev.gpu.name,
        "gpus": ev.layout.gpus,
        "nodes": ev.nodes,
        "layout": layout_dict(ev.layout),
        "seq": ev.seq,
        "params": {"total": p.total, "active": p.active, "embedding": p.embedding + p.position,
                   "output": p.output, "non_embedding": p.non_embedding},
        "flops": {
            "model_per_step": ev.flops.model,
            "hardware_per_step": ev.flops.hardware,
            "tokens_per_step": ev.flops.tokens,
            "attention": "full s² counted (not causal-halved), as Megatron-LM and FlopCounterMode count",
        },
        "memory": memory_dict(ev),
        "time": time_dict(ev),
        "cost": cost_dict(ev),
        "rules_of_thumb": {
            "state_bytes_20_per_param": state,
            # blog arithmetic divides by the vendor's label (80 GB = 80e9 B), not by what the driver reports
            "min_gpus_for_state": math.ceil(state / label_bytes),
        },
    }
    return out


def memory_dict(ev: Evaluation) -> dict[str, Any]:
    return {
        "bytes": ev.memory.as_dict(),
        "capacity_bytes": ev.capacity_bytes,
        "fits": ev.fits,
        "headroom_bytes": ev.headroom_bytes,
        "binding_stage": ev.memory.stage,
        "unit_note": "bytes; tables show GiB = 2^30 bytes",
    }


def cost_dict(ev: Evaluation) -> dict[str, Any]:
    return {
        "usd": ev.cost_usd,
        "usd_per_million_tokens": ev.usd_per_million_tokens,
        "usd_per_gpu_hour": ev.rate.usd_per_gpu_hour if ev.rate else None,
        "price": ev.rate.label if ev.rate else None,
    }


def time_dict(ev: Evaluation) -> dict[str, Any]:
    t = ev.time
    return {
        "step_seconds": t.step_seconds,
        "breakdown": t.breakdown,
        "tokens_per_s": t.tokens_per_s,
        "tflops_per_gpu": t.tflops_per_gpu,
        "mfu": t.mfu,
        "hfu": t.hfu,
        "days": t.days,
        "gpu_hours": t.gpu_hours,
        "energy_mwh": t.energy_kwh / 1000.0,
        "tokens": ev.tokens,
        "mode": t.mode,
    }


def run_inference_estimate(
    model: ModelSpec, gpu: GpuSku, *, batch: int, context: int, tp: int = 1, pp: int = 1,
    weight_dtype: str = "bf16", kv_dtype: str = "bf16", overheads: Overheads | None = None,
) -> tuple[InferenceMemory, dict[str, Any]]:
    mem = inference_memory(model, batch, context, tp=tp, pp=pp, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                           overheads=overheads)
    d = {
        "mode": "inference",
        "model": model.name,
        "gpu": gpu.name,
        "gpus": tp * pp,
        "batch": batch,
        "context": context,
        "weight_dtype": weight_dtype,
        "kv_dtype": kv_dtype,
        "params": {"total": count_params(model).total, "active": count_params(model).active},
        "memory": {
            "bytes": mem.as_dict(),
            "capacity_bytes": gpu.hbm_bytes,
            "fits": mem.total <= gpu.hbm_bytes,
            "headroom_bytes": gpu.hbm_bytes - mem.total,
        },
    }
    return mem, d
