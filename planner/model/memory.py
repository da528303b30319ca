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

from planner.model.params import attention_dims, attention_params, count_params, mlp_params, norm_params
from planner.schema import Implementation, Layout, ModelSpec, Overheads, Recompute

# TE keeps an fp8 copy of every GEMM weight and of its transpose next to the bf16 weight.
FP8_WEIGHT_CACHE_BYTES = 2
# Bytes per parameter of the optimizer state besides the fp32 master copy (4 B).
OPTIMIZER_MOMENT_BYTES = {"adam": 8, "adamw": 8, "sgd": 4, "adam8bit": 2}
MASTER_BYTES = 4


@dataclass(frozen=True)
class StateBytes:
    """Bytes per parameter of each kind of training state on one rank, after ZeRO sharding."""

    weights: float
    gradients: float
    optimizer: float


def state_bytes_per_param(layout: Layout, shard: int) -> StateBytes:
    """ZeRO-0 keeps all on every rank; 1 shards optimizer, 2 also grads, 3 also weights (ZeRO §3)."""
    w = 2.0 + (FP8_WEIGHT_CACHE_BYTES if layout.precision == "fp8" else 0)
    g = 4.0 if layout.fp32_grad_accumulation else 2.0
    o = float(MASTER_BYTES + OPTIMIZER_MOMENT_BYTES[layout.optimizer])
    if layout.offload_optimizer:
        o = 0.0
    d = shard
    if layout.zero >= 1:
        o /= d
    if layout.zero >= 2:
        g /= d
    if layout.zero >= 3:
        w /= d
    return StateBytes(w, g, o)


# --------------------------------------------------------------------------------------------
# Parameters held by one rank
# --------------------------------------------------------------------------------------------


def layer_params_on_rank(m: ModelSpec, tp: int, ep: int, moe_layer: bool) -> tuple[float, float]:
    """(non-expert, expert) parameters of one layer on one TP×EP rank; norms are replicated."""
    h = m.hidden
    norms = norm_params(m, h) * (1 if m.parallel_block else 2)
    if not moe_layer or m.moe is None:
        return (attention_params(m) + mlp_params(m, m.ffn_hidden)) / tp + norms, 0.0
    e = m.moe
    shared = e.shared_experts * mlp_params(m, e.shared_ffn)
    dense = (attention_params(m) + shared) / tp + norms + h * e.experts  # router replicated
    experts = e.experts / ep * mlp_params(m, e.expert_ffn) / tp  # expert TP = TP (Megatron default)
    return dense, experts


def stage_params(m: ModelSpec, layout: Layout, stage: int) -> tuple[float, float]:
    """(non-expert, expert) parameters held by one GPU of pipeline stage `stage`."""
    p, t = layout.pp, layout.tp
    per_stage = m.layers // p
    first = stage * per_stage
    dense_layers_here = max(0, min(m.dense_layers, first + per_stage) - first)
    moe_here = per_stage - dense_layers_here
    d1, _ = layer_params_on_rank(m, t, layout.ep, False)
    d2, e2 = layer_params_on_rank(m, t, layout.ep, True)
    dense = dense_layers_here * d1 + moe_here * d2
    expert = moe_here * e2
    c = count_params(m)
    if stage == 0:
        dense += c.embedding / t + c.position
    if stage == p - 1:
        dense += c.final_norm + m.vocab * m.hidden / t  # the head; a tied head keeps a copy here too
        if p == 1 and m.tied_embeddings:
            dense -= m.vocab * m.hidden / t  # one shared matrix when embedding and head are co-located
    return dense, expert


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationShape:
    """What one micro-batch looks like on one rank: tokens, widths and the TP/SP divisors."""

    s: int  # sequence length on this rank (after CP)
    b: int  # micro-batch
    t: int  # tensor parallel size: divides head and FFN widths
    r: int  # t with sequence parallelism, else 1: divides the hidden-width tensors
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
        kv_heads = m.n_kv_heads if impl.attention == "flash" else a  # eager repeat_kv expands GQA
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
    norms = 1 if m.parallel_block else 2
    total = norms * norm_saved(m, impl, x, h) + attention_saved(m, impl, x)
    sb = x.s * x.b
    if not m.parallel_block:
        total += 2 * sb * h / x.r  # the normalised MLP input (fc1 / router / shared-expert input)
    if moe_layer and m.moe is not None:
        # Megatron's dropless token dispatcher (from its source, not measured): fp32 router
        # probabilities, top-k permuted copies of each token, and the experts' inner tensors.
        e = m.moe
        total += 4 * sb * e.experts + 2 * e.top_k * sb * h / x.r
        total += e.top_k * sb * mlp_inner_saved(m, impl, e.expert_ffn) / x.t
        if e.shared_experts:
            total += sb * mlp_inner_saved(m, impl, e.shared_experts * e.shared_ffn) / x.t
    else:
        total += sb * mlp_inner_saved(m, impl, m.ffn_hidden) / x.t
    if x.dropout:
        total += x.s * x.b * h / x.r  # mask of the dropout after the MLP
    if recompute == "selective":
        total -= core_attention_saved(m, impl, x)
    return total


def inflight_microbatches(layout: Layout, microbatches: int) -> float:
    """Micro-batches of a full stage whose activations the first stage holds at its peak.

    1F1B: min(p, M) micro-batches of L/p layers. Interleaved with v chunks: 2(p−1) + (v−1)p + 1
    chunks of L/(p·v) layers, capped at M·v (Narayanan et al. 2021 §2.2; PyTorch's schedule tables).
    """
    p, v = layout.pp, layout.vpp
    if p == 1:
        return 1.0
    if v == 1:
        return float(min(p, microbatches))
    chunks = min(2 * (p - 1) + (v - 1) * p + 1, microbatches * v)
    return chunks / v


# --------------------------------------------------------------------------------------------
# The whole GPU
# --------------------------------------------------------------------------------------------


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


def activation_shape(m: ModelSpec, layout: Layout, seq: int, impl: Implementation) -> ActivationShape:
    t = layout.tp
    return ActivationShape(
        s=math.ceil(seq / layout.cp),
        b=layout.micro_batch,
        t=t,
        r=t if layout.sequence_parallel else 1,
        dropout=impl.dropout > 0,
    )


def stage_activation_bytes(
    m: ModelSpec, layout: Layout, seq: int, impl: Implementation, stage: int, microbatches: int
) -> float:
    """Activations of `stage` at its peak: in-flight micro-batches × its layers, the embedding/head
    extras, and the one-layer working set that recomputation rebuilds during backward."""
    x = activation_shape(m, layout, seq, impl)
    p = layout.pp
    per_stage = m.layers // p
    first = stage * per_stage
    dense_here = max(0, min(m.dense_layers, first + per_stage) - first)
    moe_here = per_stage - dense_here

    def layers(recompute: Recompute) -> float:
        return dense_here * layer_activation_bytes(m, impl, x, recompute, False) + moe_here * (
            layer_activation_bytes(m, impl, x, recompute, True)
        )

    inflight = inflight_microbatches(layout, microbatches) if stage == 0 else 1.0
    total = layers(layout.recompute) * inflight
    sb = x.s * x.b
    if stage == 0:
        total += (8 * sb + (sb * m.hidden / x.r if x.dropout else 0)) * inflight  # ids, embedding dropout
    if stage == p - 1:
        total += norm_saved(m, impl, x, m.hidden) + 2 * sb * m.hidden / x.r  # final norm, head input
        total += 4 * sb * m.vocab / x.t  # fp32 logits of the vocab-parallel cross-entropy
        if not impl.fused_kernels:
            total += 2 * sb * m.vocab  # Hugging Face also returns the 16-bit logits
    if layout.recompute != "none" and per_stage:
        # backward rebuilds one layer's full working set before it can run (transient peak)
        moe_layer = moe_here > 0
        total += layer_activation_bytes(m, impl, x, "none", moe_layer) - layer_activation_bytes(
            m, impl, x, layout.recompute, moe_layer
        )
    return total


def training_memory(
    m: ModelSpec,
    layout: Layout,
    seq: int,
    impl: Implementation | None = None,
    overheads: Overheads | None = None,
) -> MemoryBreakdown:
    """Per-GPU training memory of the most loaded pipeline stage."""
    impl = impl or Implementation()
    overheads = overheads or Overheads()
    microbatches = max(1, layout.grad_accumulation)
    dense_shard = layout.dp * layout.cp  # the distributed optimizer shards over DP×CP (Megatron)
    expert_shard = max(1, dense_shard // layout.ep)
    sd = state_bytes_per_param(layout, dense_shard)
    se = state_bytes_per_param(layout, expert_shard)
    best: MemoryBreakdown | None = None
    for stage in sorted({0, layout.pp - 1}):
        dense, expert = stage_params(m, layout, stage)
        weights = dense * sd.weights + expert * se.weights
        grads = dense * sd.gradients + expert * se.gradients
        optim = dense * sd.optimizer + expert * se.optimizer
        acts = stage_activation_bytes(m, layout, seq, impl, stage, microbatches)
        buffers = float(overheads.comm_buffer_bytes)
        if layout.zero == 3:  # two layers gathered in 16-bit (current + prefetch), and their grads
            d1, e1 = layer_params_on_rank(m, layout.tp, layout.ep, m.moe is not None)
            buffers += 2 * (d1 + e1) * (2 + 2)
        if layout.pp > 1:  # send and receive buffers of one micro-batch's boundary activation
            x = activation_shape(m, layout, seq, impl)
            buffers += 2 * 2 * x.s * x.b * m.hidden / x.r
        allocated = weights + grads + optim + acts + buffers
        reserve = overheads.reserve_bytes + overheads.fragmentation * allocated
        bd = MemoryBreakdown(
            weights=math.ceil(weights),
            gradients=math.ceil(grads),
            optimizer=math.ceil(optim),
            activations=math.ceil(acts),
            buffers=math.ceil(buffers),
            reserve=math.ceil(reserve),
            stage=stage,
        )
        if best is None or bd.total > best.total:
            best = bd
    assert best is not None
    return best


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
