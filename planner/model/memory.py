"""Per-GPU memory in bytes (integers): model state, activations, buffers and the framework reserve.

Sources, one per term: state bytes per parameter and ZeRO sharding from Rajbhandari et al. 2020
(ZeRO, §3) and Megatron-LM's distributed-optimizer docs (`6 + 12/d` B/param); activations from
Korthikanti et al. 2022 (arXiv 2205.05198, §4) refined term by term against autograd's saved tensors
(tests/test_activations.py); pipeline in-flight micro-batches from Narayanan et al. 2021 §2.2 and
PyTorch's schedule tables. Everything is for the most loaded pipeline stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from planner.model.params import attention_dims, attention_params, count_params, mlp_params, norm_params
from planner.schema import Implementation, Layout, ModelSpec, Overheads, Recompute

# TE keeps an fp8 copy of every GEMM weight and of its transpose next to the bf16 weight.
FP8_WEIGHT_CACHE_BYTES = 2
# Bytes per parameter of the optimizer state besides the fp32 master copy (4 B).
OPTIMIZER_MOMENT_BYTES = {"adam": 8, "adamw": 8, "sgd": 4, "adam8bit": 2}
MASTER_BYTES = 4


RECOMPUTE_CODES: dict[str, int] = {"none": 0, "selective": 1, "full": 2}


@dataclass(frozen=True)
class Recipe:
    """The numeric recipe: fixed per job, not searched."""

    precision: str = "bf16"
    optimizer: str = "adamw"
    fp32_grad_accumulation: bool = True
    offload_optimizer: bool = False

    @classmethod
    def of(cls, layout: Layout) -> Recipe:
        return cls(layout.precision, layout.optimizer, layout.fp32_grad_accumulation, layout.offload_optimizer)


def layout_arrays(layout: Layout) -> dict[str, int]:
    """A Layout as the plain numbers the array-ready formulas take (scalars here, arrays in a grid)."""
    return {
        "tp": layout.tp, "pp": layout.pp, "vpp": layout.vpp, "dp": layout.dp, "cp": layout.cp, "ep": layout.ep,
        "zero": layout.zero, "recompute": RECOMPUTE_CODES[layout.recompute],
        "sequence_parallel": int(layout.sequence_parallel), "micro_batch": layout.micro_batch,
        "global_batch": layout.global_batch,
    }


def state_bytes_per_param(recipe: Recipe, zero: Any, shard: Any) -> tuple[Any, Any, Any]:
    """(weights, gradients, optimizer) bytes per parameter on one rank. ZeRO-0 keeps all on every
    rank; 1 shards the optimizer state, 2 also the gradients, 3 also the weights (ZeRO §3)."""
    w = 2.0 + (FP8_WEIGHT_CACHE_BYTES if recipe.precision == "fp8" else 0)
    g = 4.0 if recipe.fp32_grad_accumulation else 2.0
    o = 0.0 if recipe.offload_optimizer else float(MASTER_BYTES + OPTIMIZER_MOMENT_BYTES[recipe.optimizer])
    return (
        np.where(zero >= 3, w / shard, w),
        np.where(zero >= 2, g / shard, g),
        np.where(zero >= 1, o / shard, o),
    )


# --------------------------------------------------------------------------------------------
# Parameters held by one rank
# --------------------------------------------------------------------------------------------


def layer_params_on_rank(m: ModelSpec, tp: int, ep: int, moe_layer: bool) -> tuple[float, float]:
    """(non-expert, expert) parameters of one layer on one TP×EP rank; norms are replicated."""
    h = m.hidden
    norms = norm_params(m, h) * m.norms_per_layer
    if not moe_layer or m.moe is None:
        return (attention_params(m) + mlp_params(m, m.ffn_hidden)) / tp + norms, 0.0
    e = m.moe
    shared = e.shared_experts * mlp_params(m, e.shared_ffn)
    dense = (attention_params(m) + shared) / tp + norms + h * e.experts  # router replicated
    experts = e.experts / ep * mlp_params(m, e.expert_ffn) / tp  # expert TP = TP (Megatron default)
    return dense, experts


def stage_layers(m: ModelSpec, pp: Any, last: bool) -> tuple[Any, Any]:
    """(dense-MLP layers, MoE layers) on the first or the last pipeline stage. Every stage but the last
    holds ⌈L/p⌉ layers, the last the rest (uneven splits); DeepSeek's dense layers come first."""
    per_stage = -(-m.layers // pp)
    first = (pp - 1) * per_stage if last else 0
    count = m.layers - first if last else np.minimum(per_stage, m.layers)
    dense = np.clip(np.minimum(m.dense_layers, first + count) - first, 0, None)
    return dense, count - dense


def stage_params(m: ModelSpec, tp: Any, pp: Any, ep: Any, last: bool) -> tuple[Any, Any]:
    """(non-expert, expert) parameters held by one GPU of the first or last pipeline stage."""
    dense_l, moe_l = stage_layers(m, pp, last)
    d1, _ = layer_params_on_rank(m, tp, ep, False)
    d2, e2 = layer_params_on_rank(m, tp, ep, True)
    dense = dense_l * d1 + moe_l * d2
    c = count_params(m)
    head = c.final_norm + m.vocab * m.hidden / tp  # a tied head keeps its own copy on the last stage
    embed = c.embedding / tp + c.position + c.embedding_norm
    if last:
        single = pp == 1  # one stage holds both ends; a tied matrix is then stored once
        dense = dense + head + np.where(single, embed - (m.vocab * m.hidden / tp if m.tied_embeddings else 0), 0)
    else:
        dense = dense + embed
    return dense, moe_l * e2


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationShape:
    """What one micro-batch looks like on one rank: tokens, widths and the TP/SP divisors."""

    s: int  # sequence length on this rank (after CP)
    b: int  # micro-batch
    t: int  # tensor parallel size: divides head and FFN widths
    r: Any  # t with sequence parallelism, else 1: divides the hidden-width tensors
    dropout: bool


def norm_saved(m: ModelSpec, impl: Implementation, x: ActivationShape, width: int) -> float:
    """One norm: its 16-bit input and fp32 statistics (mean+rstd for LayerNorm, rstd for RMSNorm).
    Hugging Face's RMSNorm keeps an fp32 copy of its input and its normalised 16-bit output instead."""
    sb = x.s * x.b
    stats = (8 if m.norm == "layernorm" else 4) * sb
    if m.norm == "rmsnorm" and not impl.fused_kernels:
        return (6 * sb * width + stats) / x.r
    return (2 * sb * width + stats) / x.r


def attention_saved(m: ModelSpec, impl: Implementation, x: ActivationShape) -> float:
    """Core attention and its projections, excluding the norm in front of it."""
    s, b, t, r = x.s, x.b, x.t, x.r
    sb, h, a = s * b, m.hidden, m.heads
    qk, v = attention_dims(m)
    proj_in = 2 * sb * h / r  # the normalised input of the Q/K/V (or MLA down) projections
    if m.mla is not None:
        # each low-rank latent is a norm input (16-bit + fp32 rstd) and an up-projection input
        latents = [m.mla.kv_lora_rank] + ([m.mla.q_lora_rank] if m.mla.q_lora_rank else [])
        proj_in += sum(4 * sb * w + 4 * sb for w in latents)
        kv_q, kv_v = qk, v  # MLA materialises per-head K and V
    else:
        # eager repeat_kv materialises K and V for every head, except MQA at micro-batch 1 where the
        # expand stays a view (measured, formulas §2.3)
        kv_heads: Any = m.n_kv_heads
        if impl.attention == "eager":
            mqa_view = np.logical_and(m.n_kv_heads == 1 and not impl.fused_kernels, b == 1)
            kv_heads = np.where(mqa_view, m.n_kv_heads, a)
        kv_q = kv_v = kv_heads * m.d_head
    saved = proj_in + 2 * sb * (qk + kv_q + kv_v) / t  # q, k, v
    saved += 2 * sb * v / t  # attention output = input of the output projection
    if impl.attention == "flash":
        saved += 4 * a * sb / t  # fp32 log-sum-exp; dropout is regenerated from the RNG seed
    else:
        score = a * s * s * b / t
        saved += (2 if impl.fused_kernels else 6) * score  # softmax out (HF also keeps an fp32 copy)
        if x.dropout:
            saved += 3 * score  # 1-byte mask and 16-bit dropped probabilities
    if x.dropout:
        saved += sb * h / x.r  # mask of the dropout after the output projection
    return saved


def core_attention_saved(m: ModelSpec, impl: Implementation, x: ActivationShape) -> float:
    """The part of attention_saved that selective recompute drops (Korthikanti et al. §4.2)."""
    if impl.attention == "flash":
        return 0.0  # flash attention already recomputes the scores; nothing large to drop
    score = m.heads * x.s * x.s * x.b / x.t
    return (2 if impl.fused_kernels else 6) * score + (3 * score if x.dropout else 0)


def mlp_inner_saved(m: ModelSpec, impl: Implementation, ffn: int) -> float:
    """Per token, what an MLP of width `ffn` saves past its input (before TP division)."""
    if m.mlp == "swiglu":
        return (6 if impl.fused_kernels else 8) * ffn  # [gate, up] + product; HF also keeps silu(gate)
    return 4 * ffn  # GeLU input and fc2 input


def layer_activation_bytes(
    m: ModelSpec, impl: Implementation, x: ActivationShape, recompute: Recompute, moe_layer: bool
) -> float:
    """Bytes one layer keeps for backward for one micro-batch on one rank."""
    if recompute == "full":
        return 2 * x.s * x.b * m.hidden / x.r  # only the layer input (checkpoint boundary)
    h = m.hidden
    total = m.norms_per_layer * norm_saved(m, impl, x, h) + attention_saved(m, impl, x)
    sb = x.s * x.b
    if not m.shared_block_input:
        total += 2 * sb * h / x.r  # the normalised MLP input (fc1 / router / shared-expert input)
    if moe_layer and m.moe is not None:
        # Token dispatch and combine: fp32 router probabilities (4E), per routed copy the permuted input
        # (2h), the expert's inner tensors, the expert output kept for the routing-weight product (2h),
        # and the top-k weight and index (4 + 8). Measured on HF Mixtral's eager experts, which also
        # keep the weighted output (2h), its fp32 weight (4), int64 positions (16) and the weights' sum (4).
        e = m.moe
        k = e.top_k
        per_copy = 2 * h / x.r + 2 * h / x.r + 12 + (2 * h / x.r + 20 if not impl.fused_kernels else 0)
        total += sb * (4 * e.experts + k * per_copy + (4 if not impl.fused_kernels else 0))
        total += k * sb * mlp_inner_saved(m, impl, e.expert_ffn) / x.t
        if e.shared_experts:
            total += sb * mlp_inner_saved(m, impl, e.shared_experts * e.shared_ffn) / x.t
    else:
        total += sb * mlp_inner_saved(m, impl, m.ffn_hidden) / x.t
    if x.dropout:
        total += x.s * x.b * h / x.r  # mask of the dropout after the MLP
    if recompute == "selective":
        total -= core_attention_saved(m, impl, x)
    return total


def inflight_microbatches(pp: Any, vpp: Any, microbatches: Any) -> Any:
    """Micro-batches of a full stage whose activations the first stage holds at its peak.

    1F1B: min(p, M) micro-batches of L/p layers. Interleaved with v chunks: 2(p−1) + (v−1)p + 1
    chunks of L/(p·v) layers, capped at M·v (Narayanan et al. 2021 §2.2; PyTorch's schedule tables).
    """
    one_f_one_b = np.minimum(pp, microbatches)
    interleaved = np.minimum(2 * (pp - 1) + (vpp - 1) * pp + 1, microbatches * vpp) / vpp
    return np.where(pp == 1, 1.0, np.where(vpp == 1, one_f_one_b, interleaved))


# --------------------------------------------------------------------------------------------
# The whole GPU
# --------------------------------------------------------------------------------------------


def activation_shape(seq: int, arrays: dict[str, Any], impl: Implementation) -> ActivationShape:
    tp = arrays["tp"]
    return ActivationShape(
        s=-(-seq // arrays["cp"]),
        b=arrays["micro_batch"],
        t=tp,
        r=np.where(arrays["sequence_parallel"] > 0, tp, 1),
        dropout=impl.dropout > 0,
    )


def stage_activation_bytes(
    m: ModelSpec, seq: int, arrays: dict[str, Any], impl: Implementation, last: bool
) -> Any:
    """Activations of the first or last stage at its peak: in-flight micro-batches × its layers, the
    embedding/head extras, and the one-layer working set that recomputation rebuilds in backward."""
    x = activation_shape(seq, arrays, impl)
    pp, rc = arrays["pp"], arrays["recompute"]
    microbatches = np.maximum(1, arrays["global_batch"] // (arrays["dp"] * arrays["micro_batch"]))
    dense_l, moe_l = stage_layers(m, pp, last)
    modes: tuple[Recompute, ...] = ("none", "selective", "full")
    dense_b = [layer_activation_bytes(m, impl, x, mode, False) for mode in modes]
    moe_b = [layer_activation_bytes(m, impl, x, mode, True) for mode in modes] if m.moe else [0.0] * 3
    per_layer_dense = np.choose(rc, dense_b)
    per_layer_moe = np.choose(rc, moe_b)
    inflight = 1.0 if last else inflight_microbatches(pp, arrays["vpp"], microbatches)
    # with 1F1B the last stage holds one micro-batch; a single stage is also the first
    inflight = np.where(pp == 1, 1.0, inflight)
    total = (dense_l * per_layer_dense + moe_l * per_layer_moe) * inflight
    sb = x.s * x.b
    first_extra = 8 * sb + (sb * m.hidden / x.r if x.dropout else 0)  # token ids, embedding dropout mask
    last_extra = norm_saved(m, impl, x, m.hidden) + 2 * sb * m.hidden / x.r + 4 * sb * m.vocab / x.t
    if not impl.fused_kernels:
        last_extra = last_extra + 2 * sb * m.vocab  # Hugging Face also returns the 16-bit logits
    if last:
        total = total + last_extra + np.where(pp == 1, first_extra, 0)
    else:
        total = total + first_extra * inflight
    # backward rebuilds one layer's full working set before it can run (a transient peak)
    rebuilt = np.where(moe_l > 0, moe_b[0] - per_layer_moe, dense_b[0] - per_layer_dense)
    return total + np.where(rc > 0, rebuilt, 0)


def training_memory_table(
    m: ModelSpec, seq: int, arrays: dict[str, Any], recipe: Recipe, impl: Implementation, overheads: Overheads
) -> dict[str, Any]:
    """Per-GPU bytes of the most loaded pipeline stage, component by component, for scalars or numpy
    arrays of layout fields (the solver evaluates its whole grid in one call)."""
    tp, pp, ep, cp, dp, zero = (arrays[k] for k in ("tp", "pp", "ep", "cp", "dp", "zero"))
    dense_shard = dp * cp  # the distributed optimizer shards over DP×CP (Megatron)
    expert_shard = np.maximum(1, dense_shard // ep)
    wd, gd, od = state_bytes_per_param(recipe, zero, dense_shard)
    we, ge, oe = state_bytes_per_param(recipe, zero, expert_shard)
    x = activation_shape(seq, arrays, impl)
    buffers = overheads.comm_buffer_bytes + np.where(pp > 1, 2 * 2 * x.s * x.b * m.hidden / x.r, 0)  # p2p send/recv
    d1, e1 = layer_params_on_rank(m, tp, ep, m.moe is not None)
    live = 2 * (d1 + e1)  # the layer being computed and the prefetched next one
    if overheads.zero3_live_params is not None:
        live = np.minimum(live, overheads.zero3_live_params)
    buffers = buffers + np.where(zero == 3, live * (2 + 2), 0)  # gathered 16-bit params and their grads
    best: dict[str, Any] | None = None
    for last in (False, True):
        dense, expert = stage_params(m, tp, pp, ep, last)
        comp = {
            "weights": dense * wd + expert * we,
            "gradients": dense * gd + expert * ge,
            "optimizer": dense * od + expert * oe,
            "activations": stage_activation_bytes(m, seq, arrays, impl, last),
            "buffers": buffers,
        }
        allocated = sum(comp.values())
        comp["reserve"] = overheads.reserve_bytes + overheads.fragmentation * allocated
        comp = {k: np.ceil(v) for k, v in comp.items()}
        comp["total"] = sum(comp.values())
        comp["stage"] = np.where(pp > 1, pp - 1, 0) if last else np.zeros_like(pp)
        if best is None:
            best = comp
        else:
            take = comp["total"] > best["total"]
            best = {k: np.where(take, comp[k], best[k]) for k in comp}
    assert best is not None
    return best


@dataclass(frozen=True)
class MemoryBreakdown:
    """Per-GPU bytes of the most loaded pipeline stage."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    buffers: int
    reserve: int
    stage: int  # which pipeline stage binds (0-based)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers + self.reserve

    def as_dict(self) -> dict[str, int]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stage"}
        d["total"] = self.total
        return d


def training_memory(
    m: ModelSpec,
    layout: Layout,
    seq: int,
    impl: Implementation | None = None,
    overheads: Overheads | None = None,
) -> MemoryBreakdown:
    """Per-GPU training memory of the most loaded pipeline stage of one layout."""
    t = training_memory_table(m, seq, layout_arrays(layout), Recipe.of(layout), impl or Implementation(),
                     overheads or Overheads())
    return MemoryBreakdown(**{f.name: int(t[f.name]) for f in fields(MemoryBreakdown)})


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------

SERVING_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
# Group-wise int4/int8 quantisation stores one fp16 scale per group of 128 weights (GPTQ/AWQ default).
QUANT_GROUP = 128
# The seed rule of thumb users quote: serving needs about 1.2 × the weights.
RULE_OF_THUMB_FACTOR = 1.2


@dataclass(frozen=True)
class InferenceMemory:
    weights: int
    kv_cache: int
    activations: int
    reserve: int
    rule_of_thumb: int  # 1.2 × weights, for comparison

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.reserve

    def as_dict(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "activations": self.activations,
            "reserve": self.reserve,
            "total": self.total,
            "rule_of_thumb": self.rule_of_thumb,
        }


def kv_cache_bytes_per_token(m: ModelSpec, tp: int, dtype_bytes: float) -> float:
    """K and V of one token, all layers, on one TP rank. MLA caches the compressed latent and the
    shared RoPE key instead (DeepSeek-V2 §2.1.2), replicated over TP; KV heads below TP are replicated."""
    if m.mla is not None:
        return m.layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) * dtype_bytes
    heads_per_rank = max(1, m.n_kv_heads // tp) if m.n_kv_heads >= tp else 1
    return m.layers * 2 * heads_per_rank * m.d_head * dtype_bytes


def inference_memory(
    m: ModelSpec,
    batch: int,
    context: int,
    tp: int = 1,
    pp: int = 1,
    weight_dtype: str = "bf16",
    kv_dtype: str = "bf16",
    prefill_chunk: int = 2048,
    overheads: Overheads | None = None,
) -> InferenceMemory:
    """Serving footprint per GPU: weights, KV cache for batch × context, and the prefill workspace."""
    overheads = overheads or Overheads()
    c = count_params(m)
    wb = SERVING_BYTES[weight_dtype]
    if weight_dtype in ("int8", "int4"):
        wb += 2.0 / QUANT_GROUP
    weights = c.total * wb / (tp * pp)
    kv = kv_cache_bytes_per_token(m, tp, SERVING_BYTES[kv_dtype]) / pp * batch * context
    chunk = min(context, prefill_chunk)
    ffn = max(m.ffn_hidden, (m.moe.expert_ffn * m.moe.top_k) if m.moe else 0)
    # one layer's transient tensors for a prefill chunk, plus fp32 logits of the last position
    acts = 2 * batch * chunk * (4 * m.hidden + 3 * ffn / tp) + 4 * batch * m.vocab / tp
    reserve = overheads.reserve_bytes + overheads.fragmentation * (weights + kv + acts)
    return InferenceMemory(
        weights=math.ceil(weights),
        kv_cache=math.ceil(kv),
        activations=math.ceil(acts),
        reserve=math.ceil(reserve),
        rule_of_thumb=math.ceil(RULE_OF_THUMB_FACTOR * weights),
    )
