"""Per-GPU memory in bytes (integers): model state, activations, buffers and the framework reserve.

Sources, one per term: state bytes per parameter and ZeRO sharding from Rajbhandari et al. 2020
(ZeRO, §3), Megatron-LM's distributed-optimizer docs (`6 + 12/d` B/param), DeepSpeed's estimators and
FSDP2's fp32 shard (planner.model.presets says which framework does what); activations from
Korthikanti et al. 2022 (arXiv 2205.05198, §4) refined term by term against autograd's saved tensors
(tests/test_activations.py), with what Transformer Engine saves in fp8; pipeline stages and the
micro-batches of each model chunk in flight from planner.model.pipeline (Megatron-Core's and
torch.distributed.pipelining's schedule order). Everything is for the most loaded pipeline rank.

What a framework logs differs from what the device holds: `MemoryBreakdown.reserved` is the caching
allocator's peak (torch.cuda.max_memory_reserved, which torchtitan and NeMo log), `total` adds what
lives outside the allocator (CUDA context, cuBLAS/NCCL workspaces: what nvidia-smi shows) and decides fit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from planner.model import pipeline
from planner.model.params import (
    attention_dims,
    attention_params,
    attention_weights,
    count_params,
    mlp_params,
    mlp_weights,
    norm_params,
    qk_norm_params,
    qk_norm_width,
    router_params,
)
from planner.model.presets import FP8_TENSORS_PER_GEMM, Knobs, StateLayout, layout_offloaded_share, resolve
from planner.schema import GpuSku, Implementation, Layout, ModelSpec, Overheads, Recompute

# Bytes per parameter of the optimizer state besides the master copy, with fp32 moments (Adam's two, SGD's one;
# 8-bit Adam's two quantised moments: bitsandbytes optim/adamw.py).
OPTIMIZER_MOMENT_BYTES = {"adam": 8, "adamw": 8, "sgd": 4, "adam8bit": 2}
# A moment in a narrower dtype (Megatron-Core's precision-aware optimizer, transformer_engine/pytorch/optimizers/
# fused_adam.py exp_avg_dtype / exp_avg_sq_dtype; Apex DistributedFusedAdam's dtype).
MOMENT_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
# The master copy of a 16-bit parameter: fp32; its 16-bit remainder (apex/contrib/optimizers/distributed_fused_adam.py
# store_param_remainders: the bf16 parameter holds the other 16 bits); fp16; none (the 16-bit parameter is the master).
MASTER_WEIGHT_BYTES = {"fp32": 4, "remainder": 2, "fp16": 2, "none": 0}
# FSDP keeps parameters sharded in their original dtype: the fp32 shard is the master (FSDP2 _fsdp_param.py)
FSDP_PARAM_BYTES = 4
# DeepSpeed ZeRO-3's gathered parameters are capped at stage3_max_live_parameters (deepspeed/runtime/zero/
# config.py default 1e9); Overheads.zero3_live_params overrides it.
BF16 = 2


RECOMPUTE_CODES: dict[str, int] = {"none": 0, "selective": 1, "full": 2}


@dataclass(frozen=True)
class Recipe:
    """The numeric recipe and the fixed layout knobs: fixed per job, not searched."""

    precision: str = "bf16"
    optimizer: str = "adamw"
    fp32_grad_accumulation: bool = True
    offload_optimizer: bool = False
    recompute_num_layers: int | None = None
    recompute_method: str = "block"
    dp_shard: int | None = None
    account_for_embedding_in_pipeline_split: bool = False
    account_for_loss_in_pipeline_split: bool = False
    pipeline_first_stage_layers: int | None = None
    pipeline_last_stage_layers: int | None = None
    pipeline_layout: tuple[int, ...] | None = None  # layers per virtual stage, as written
    master_weights: str = "fp32"
    moment_dtype: str = "fp32"

    @classmethod
    def of(cls, layout: Layout) -> Recipe:
        return cls(
            layout.precision, layout.optimizer, layout.fp32_grad_accumulation, layout.offload_optimizer,
            layout.recompute_num_layers, layout.recompute_method, layout.dp_shard,
            layout.account_for_embedding_in_pipeline_split, layout.account_for_loss_in_pipeline_split,
            layout.pipeline_first_stage_layers, layout.pipeline_last_stage_layers,
            tuple(layout.pipeline_layout) if layout.pipeline_layout is not None else None,
            layout.master_weights, layout.moment_dtype,
        )

    def optimizer_bytes(self) -> tuple[float, float]:
        """(master, moments) bytes per parameter the optimizer keeps, before any sharding or offload."""
        moments = float(OPTIMIZER_MOMENT_BYTES[self.optimizer])
        if self.optimizer != "adam8bit":
            moments *= MOMENT_DTYPE_BYTES[self.moment_dtype] / MOMENT_DTYPE_BYTES["fp32"]
        return float(MASTER_WEIGHT_BYTES[self.master_weights]), moments

    def split(self, style: pipeline.SplitStyle = "megatron") -> pipeline.PipelineSplit:
        return pipeline.PipelineSplit(style, self.account_for_embedding_in_pipeline_split,
                                      self.account_for_loss_in_pipeline_split, self.pipeline_first_stage_layers,
                                      self.pipeline_last_stage_layers, self.pipeline_layout)


def knobs(impl: Implementation, recipe: Recipe) -> Knobs:
    """The framework behaviour of a job (planner.model.presets.resolve for a Recipe)."""
    return _knobs_cached(impl.model_dump_json(), recipe)


@functools.lru_cache(maxsize=256)
def _knobs_cached(impl_json: str, recipe: Recipe) -> Knobs:
    k = resolve(Implementation.model_validate_json(impl_json), precision=recipe.precision)
    return replace(k, split=recipe.split(k.preset.split),
                   fsdp_reduce_fp32=k.fsdp_reduce_fp32 and recipe.fp32_grad_accumulation)


def layout_arrays(layout: Layout) -> dict[str, int]:
    """A Layout as the plain numbers the array-ready formulas take (scalars here, arrays in a grid)."""
    return {
        "tp": layout.tp, "pp": layout.pp, "vpp": layout.vpp, "dp": layout.dp, "cp": layout.cp, "ep": layout.ep,
        "zero": layout.zero, "recompute": RECOMPUTE_CODES[layout.recompute],
        "sequence_parallel": int(layout.sequence_parallel), "micro_batch": layout.micro_batch,
        "global_batch": layout.global_batch, "expert_tp": layout.expert_tp or 0,
        "recompute_num_layers": layout.recompute_num_layers or 0,
        "activation_offload_layers": layout.activation_offload_layers or 0,
    }


def state_bytes_per_param(
    recipe: Recipe, zero: Any, shard: Any, state: StateLayout = "megatron"
) -> tuple[Any, Any, Any]:
    """(weights, gradients, optimizer) bytes per parameter on one rank of a ZeRO/FSDP group of `shard` ranks.

    - megatron: bf16 weights, a contiguous gradient buffer (fp32 with grad_reduce_in_fp32, else bf16), fp32
      main params and moments; ZeRO-1 is the distributed optimizer (6 + 12/d, distrib_optimizer.py), 2 and 3
      Megatron-FSDP's optim_grads / optim_grads_params. The recipe's master_weights and moment_dtype narrow the
      optimizer's part (Apex's bf16 state: 4 + 4/d).
    - deepspeed: stages 1-2 keep 16-bit weights plus (2 + 4 + 4 + 8)/d (16-bit and fp32 gradient partitions,
      fp32 master, moments: stage_1_and_2.py's estimator), stage 1 the 16-bit gradients whole; stage 3 18/d
      (stage3.py); without ZeRO sharding of gradients, BF16_Optimizer accumulates into an unsharded fp32
      buffer next to the 16-bit gradients (bf16_optimizer.py).
    - fsdp2 / fsdp1: the sharded fp32 parameter is the master and its gradient shard is fp32 (16/d with Adam);
      ZeRO-0 is DDP over fp32 parameters (16). The recipe's master_weights does not apply (the scenario refuses it).
    """
    master, moments = (0.0, 0.0) if recipe.offload_optimizer else recipe.optimizer_bytes()
    g16 = 4.0 if recipe.fp32_grad_accumulation else 2.0
    if state == "deepspeed":
        fp32_whole = 4.0 if recipe.fp32_grad_accumulation else 0.0  # BF16_Optimizer's fp32 accumulation buffer
        w = np.where(zero >= 3, BF16 / shard, float(BF16))
        g = np.where(zero >= 3, 4.0 / shard,
                     np.where(zero == 2, (2.0 + 4.0) / shard,
                              np.where(zero == 1, 2.0 + np.maximum(fp32_whole, 4.0 / shard), 2.0 + fp32_whole)))
        o = master + moments
        return w, g, np.where(zero >= 1, o / shard, o)
    if state in ("fsdp2", "fsdp1"):
        o = moments  # the fp32 shard is the master
        w = np.where(zero >= 1, FSDP_PARAM_BYTES / shard, float(FSDP_PARAM_BYTES))
        g = np.where(zero >= 1, 4.0 / shard, 4.0)
        return w, g, np.where(zero >= 1, o / shard, o)
    w16 = float(BF16)
    o = master + moments
    return (
        np.where(zero >= 3, w16 / shard, w16),
        np.where(zero >= 2, g16 / shard, g16),
        np.where(zero >= 1, o / shard, o),
    )


# --------------------------------------------------------------------------------------------
# Parameters held by one rank
# --------------------------------------------------------------------------------------------


def layer_params_on_rank(m: ModelSpec, tp: Any, ep: Any, moe_layer: bool, etp: Any = None) -> tuple[Any, Any]:
    """(non-expert, expert) parameters of one layer on one TP×EP rank; norms are replicated. The routed experts
    split over `etp` (expert tensor parallelism; None: tp, Megatron's default)."""
    h = m.hidden
    qk_norms = qk_norm_params(m)  # one norm of head_dim for every head: replicated like the layer norms
    norms = norm_params(m, h) * m.norms_per_layer + qk_norms
    attention = attention_params(m) - qk_norms
    if not moe_layer or m.moe is None:
        return (attention + mlp_params(m, m.ffn_hidden)) / tp + norms, 0.0
    e = m.moe
    shared = e.shared_experts * mlp_params(m, e.shared_ffn)
    dense = (attention + shared) / tp + norms + router_params(m)  # router replicated
    experts = e.experts / ep * mlp_params(m, e.expert_ffn) / (tp if etp is None else etp)
    return dense, experts


def layer_gemm_weights_on_rank(m: ModelSpec, tp: Any, ep: Any, moe_layer: bool, etp: Any = None
                               ) -> tuple[Any, Any]:
    """(non-expert, expert) matmul weights of one layer on one rank: what Transformer Engine casts to fp8."""
    if not moe_layer or m.moe is None:
        return (attention_weights(m) + mlp_weights(m, m.ffn_hidden)) / tp, 0.0
    e = m.moe
    dense = (attention_weights(m) + e.shared_experts * mlp_weights(m, e.shared_ffn)) / tp
    return dense, e.experts / ep * mlp_weights(m, e.expert_ffn) / (tp if etp is None else etp)


def ends_params(m: ModelSpec, tp: Any) -> tuple[Any, Any]:
    """(embedding side, output side) parameters of one TP rank: token and position embeddings (and BLOOM's
    embedding norm) on the first stage, the final norm and the output matrix on the last."""
    c = count_params(m)
    embed = c.embedding / tp + c.position + c.embedding_norm
    head = c.final_norm + m.vocab * m.hidden / tp  # a tied head keeps its own copy on the last stage
    return embed, head


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationShape:
    """What one micro-batch looks like on one rank: tokens, widths, the TP/SP divisors and the bytes per
    element of a saved GEMM input (2 in 16-bit; Transformer Engine's fp8 recipes save 1 byte plus scales)."""

    s: int  # sequence length on this rank (after CP)
    b: int  # micro-batch
    t: int  # tensor parallel size: divides head and FFN widths
    r: Any  # t with sequence parallelism, else 1: divides the hidden-width tensors
    dropout: bool
    gemm_in: float = 2.0
    # bytes per element of a column-parallel GEMM's input where the framework keeps it all-gathered over TP
    # (Preset.tp_keeps_gathered_input); None: the local shard, gemm_in / r
    gathered: Any = None

    @property
    def col_in(self) -> Any:
        """Bytes per token and hidden unit that a column-parallel GEMM (Q/K/V, fc1) keeps as its input."""
        return self.gemm_in / self.r if self.gathered is None else self.gathered


def _knobs(impl: Implementation | Knobs) -> Knobs:
    return impl if isinstance(impl, Knobs) else resolve(impl)


def norm_saved(m: ModelSpec, impl: Implementation | Knobs, x: ActivationShape, width: int) -> Any:
    """One norm: its 16-bit input and fp32 statistics (mean+rstd for LayerNorm, rstd for RMSNorm).
    Hugging Face's RMSNorm keeps an fp32 copy of its input and its normalised 16-bit output instead."""
    k = _knobs(impl)
    sb = x.s * x.b
    stats = (8 if m.norm == "layernorm" else 4) * sb
    if m.norm == "rmsnorm" and not k.fused_norm:
        return (6 * sb * width + stats) / x.r
    return (2 * sb * width + stats) / x.r


def qk_norm_saved(m: ModelSpec, impl: Implementation | Knobs, x: ActivationShape) -> Any:
    """The query and key norms (Qwen3): what `norm_saved` keeps for their inputs, the heads split over TP, with
    fp32 statistics for each head's vector."""
    if m.qk_norm == "none":
        return 0.0
    k = _knobs(impl)
    sb = x.s * x.b
    stats = (8 if m.norm == "layernorm" else 4) * sb * (m.heads + m.n_kv_heads) / x.t
    per_element = 6 if m.norm == "rmsnorm" and not k.fused_norm else 2
    return per_element * sb * qk_norm_width(m) / x.t + stats


def _score_saved(m: ModelSpec, k: Knobs, x: ActivationShape) -> Any:
    """The s² tensors unfused attention keeps: softmax output (HF also an fp32 copy), dropout mask and output."""
    score = m.heads * x.s * x.s * x.b / x.t
    return (2 if k.fused_softmax else 6) * score + (3 * score if x.dropout else 0)


def core_attention_saved(m: ModelSpec, impl: Implementation | Knobs, x: ActivationShape) -> Any:
    """What recomputing core attention drops (Megatron recompute_modules core_attn, Korthikanti §4.2): the s²
    tensors of unfused attention; with flash attention q, k, v stay as the checkpoint's inputs and the output
    as the output projection's input."""
    k = _knobs(impl)
    if k.attention == "flash":
        # the fp32 log-sum-exp (4·a·s·b/t, under 0.1 % of a layer) is all it drops: counted as nothing, so that
        # selective recompute buys no memory with flash attention as it costs no time in planner's model
        return 0.0
    return _score_saved(m, k, x)


def _qkv_widths(m: ModelSpec, k: Knobs, b: Any) -> tuple[Any, Any, Any]:
    """Saved widths of q, k and v summed over heads."""
    qk, v = attention_dims(m)
    if m.mla is not None:
        return qk, qk, v  # MLA materialises per-head K and V
    # eager repeat_kv materialises K and V for every head, except MQA at micro-batch 1 where the expand
    # stays a view (measured, formulas §2.3)
    kv_heads: Any = m.n_kv_heads
    if k.kv_repeat:  # the kernel's K/V inputs are the repeated copies (Implementation.kv_repeat)
        return qk, m.heads * m.d_head, m.heads * m.d_head
    if k.attention == "eager":
        mqa_view = np.logical_and(m.n_kv_heads == 1 and not k.fused_norm, b == 1)
        kv_heads = np.where(mqa_view, m.n_kv_heads, m.heads)
    return qk, kv_heads * m.d_head, kv_heads * m.d_head


def attention_saved(m: ModelSpec, impl: Implementation | Knobs, x: ActivationShape) -> Any:
    """Core attention and its projections, excluding the norm in front of it."""
    k = _knobs(impl)
    s, b, t = x.s, x.b, x.t
    sb, h = s * b, m.hidden
    q_w, k_w, v_w = _qkv_widths(m, k, b)
    proj_in = x.col_in * sb * h  # the normalised input of the Q/K/V (or MLA down) projections
    if m.mla is not None:
        # each low-rank latent is a norm input (16-bit + fp32 rstd) and an up-projection input
        latents = [m.mla.kv_lora_rank] + ([m.mla.q_lora_rank] if m.mla.q_lora_rank else [])
        proj_in += sum(2 * sb * w + x.gemm_in * sb * w + 4 * sb for w in latents)
    saved = proj_in + 2 * sb * (q_w + k_w + v_w) / t  # q, k, v
    saved += qk_norm_saved(m, k, x)
    _, v_dim = attention_dims(m)
    saved += 2 * sb * v_dim / t  # attention output = the 16-bit input of the output projection
    if x.gemm_in < 2:
        saved += x.gemm_in * sb * v_dim / t  # TE's Linear keeps its own fp8 copy of that input
    if k.attention == "flash":
        saved += 4 * m.heads * sb / t  # fp32 log-sum-exp; dropout is regenerated from the RNG seed
    else:
        saved += _score_saved(m, k, x)
    if x.dropout:
        saved += sb * h / x.r  # mask of the dropout after the output projection
    return saved


# PyTorch's context-parallel attention backward (torch/distributed/tensor/experimental/_attention.py
# _templated_ring_attention_backward, convert_to_f32), beside what a single-GPU attention backward allocates: fp32
# dQ (2 × the 16-bit queries) and the kernel's dQ of the call before (1 ×); fp32 dK/dV accumulators (2 × the
# 16-bit K and V), the K/V concatenated to send (1 ×), the kernel's dK/dV of the call before (1 ×), the fp32 dK/dV
# concatenated to send and the one received (4 ×); plus the rotater's K/V: the all-gather's every rank's copy
# (cp ×), the all-to-all's chunks in flight (cp − 1, at most 2 ×). Measured on gloo ranks (tests/cp_oracle.py).
CP_BACKWARD_Q = 3
CP_BACKWARD_KV = 8
CP_ALLTOALL_CHUNKS = 2
# Transformer Engine's all-gather exchange (context_parallel.py AttnFuncWithCPAndKVAllGather.backward), in units of
# the 16-bit K/V of the whole sequence (cp × this rank's), all alive until it returns: the gathered K/V (1 ×), the
# full-length 16-bit dK/dV it accumulates into (1 ×), each step's dK/dV made contiguous (the two steps cover
# 2·cp + 1 of the 2·cp half-chunks: 1 + 1/(2·cp) ×) and dK/dV reordered to rank order (1 ×).
TE_ALLGATHER_KV = 4


def cp_exchange_bytes(m: ModelSpec, impl: Implementation | Knobs, x: ActivationShape, cp: Any) -> Any:
    """Bytes one layer's attention backward holds for the context-parallel exchange on the busiest CP rank, for one
    micro-batch (x: its shard on this rank): PyTorch's rotations and Transformer Engine's all-gather. Transformer
    Engine's ring and all-to-all send buffers (one K/V chunk; the head-sharded Q, K, V) are not counted."""
    k = _knobs(impl)
    if k.cp_exchange not in ("allgather", "alltoall", "te_allgather"):
        return 0.0
    q_w, k_w, v_w = _qkv_widths(m, k, x.b)
    q16, kv16 = (2 * x.s * x.b * w / x.t for w in (q_w, k_w + v_w))
    if k.cp_exchange == "te_allgather":
        held = (TE_ALLGATHER_KV * cp + 0.5) * kv16  # the steps' dK/dV: cp + 1/2 of the local K/V
        return np.where(np.asarray(cp) > 1, held, 0.0)
    rotater = cp if k.cp_exchange == "allgather" else np.minimum(cp - 1, CP_ALLTOALL_CHUNKS)
    return np.where(np.asarray(cp) > 1, CP_BACKWARD_Q * q16 + (CP_BACKWARD_KV + rotater) * kv16, 0.0)


def mlp_inner_saved(m: ModelSpec, impl: Implementation | Knobs, ffn: int, gemm_in: float = 2.0) -> float:
    """Per token, what an MLP of width `ffn` saves past its input (before TP division): the activation's input
    and the down projection's input (16-bit, or fp8 under Transformer Engine)."""
    k = _knobs(impl)
    if m.mlp == "swiglu":
        # fused bias_swiglu keeps [gate, up]; eager SwiGLU also keeps silu(gate) and up separately
        return (4 if k.fused_swiglu else 6) * ffn + gemm_in * ffn
    # GeLU input, fc2 input; squared ReLU (megatron/core/activations.py squared_relu: relu(x)²) keeps relu's
    # output for pow's backward and the fc2 input: the same bytes
    return 2 * ffn + gemm_in * ffn


def _moe_saved(m: ModelSpec, k: Knobs, x: ActivationShape) -> tuple[Any, Any, Any]:
    """(routing and dispatch, routed experts' inner tensors, shared experts' inner tensors) of one MoE block."""
    assert m.moe is not None
    e, h, sb = m.moe, m.hidden, x.s * x.b
    # Token dispatch and combine: fp32 router probabilities (4E), per routed copy the permuted input (the
    # experts' GEMM input), the expert output kept for the routing-weight product (2h; Megatron-Core weighs
    # inside the activation and keeps the fp32 weight instead), and the top-k weight and index (4 + 8).
    # Measured on HF Mixtral's eager experts, which also keep the weighted output (2h), its fp32 weight (4),
    # int64 positions (16) and the weights' sum (4).
    weighed = 4 if k.preset.moe_probs_in_activation else 2 * h / x.r
    per_copy = x.gemm_in * h / x.r + weighed + 12 + (2 * h / x.r + 20 if not k.fused_norm else 0)
    routing = sb * (4 * e.experts + e.top_k * per_copy + (4 if not k.fused_norm else 0))
    routed = e.top_k * sb * mlp_inner_saved(m, k, e.expert_ffn, x.gemm_in) / x.t
    shared = sb * mlp_inner_saved(m, k, e.shared_experts * e.shared_ffn, x.gemm_in) / x.t if e.shared_experts else 0
    return routing, routed, shared


def recompute_dropped(m: ModelSpec, k: Knobs, x: ActivationShape, moe_layer: bool) -> Any:
    """Bytes of one layer that selective recompute drops, module by module (Megatron recompute_modules,
    megatron/core/transformer/transformer_config.py): core_attn its s² tensors (flash: the log-sum-exp);
    mlp the dense MLP past its input (norm statistics, fc1 input, inner tensors); moe the whole MoE block past
    its input; moe_act the activation outputs of the routed experts; shared_experts their inner tensors;
    layernorm the two norm outputs (the projections' inputs); mla_up_proj MLA's per-head q, k and v."""
    sb, h = x.s * x.b, m.hidden
    mods = set(k.recompute_modules)
    dropped: Any = core_attention_saved(m, k, x) if "core_attn" in mods else 0
    stats = (8 if m.norm == "layernorm" else 4) * sb / x.r
    if "layernorm" in mods:
        dropped = dropped + x.col_in * sb * h * (1 if m.shared_block_input else 2)
    if "mla_up_proj" in mods and m.mla is not None:
        q_w, k_w, v_w = _qkv_widths(m, k, x.b)
        dropped = dropped + 2 * sb * (q_w + k_w + v_w) / x.t
    if moe_layer and m.moe is not None:
        routing, routed, shared = _moe_saved(m, k, x)
        if "moe" in mods:
            return dropped + routing + routed + shared
        if "moe_act" in mods:
            dropped = dropped + m.moe.top_k * sb * x.gemm_in * m.moe.expert_ffn / x.t
        if "shared_experts" in mods:
            dropped = dropped + shared
    elif "mlp" in mods:
        fc1_in = 0 if m.shared_block_input or "layernorm" in mods else x.col_in * sb * h
        dropped = dropped + stats + fc1_in + sb * mlp_inner_saved(m, k, m.ffn_hidden, x.gemm_in) / x.t
    return dropped


def op_policy_saved(m: ModelSpec, k: Knobs, x: ActivationShape) -> Any:
    """A dense layer under torchtitan's op-level selective checkpointing (torchtitan/distributed/
    activation_checkpoint.py `_get_custom_policy`): the layer input, the outputs of every other matmul in
    forward order (q, v, w1, w2 of q, k, v, o, w1, w3, w2; a row-parallel output is a full-width partial sum),
    the attention kernel's output and fp32 log-sum-exp (where its kernel is on the save list), and the
    reduce-scatter outputs of sequence parallelism. Everything else is recomputed in backward."""
    sb, h, t, r = x.s * x.b, m.hidden, x.t, x.r
    q_w, v_dim = attention_dims(m)
    v_w = v_dim if m.mla is not None else m.n_kv_heads * m.d_head  # the V projection's output, before any repeat
    ffn_out = m.ffn_hidden if m.mlp == "swiglu" else h  # GeLU's second matmul is fc2 (h wide, row-parallel)
    saved = 2 * sb * h / r + 2 * sb * (q_w + v_w) / t + 2 * sb * ffn_out / t * (m.mlp == "swiglu")
    saved = saved + 2 * sb * h * (m.mlp == "swiglu") + (2 * sb * m.ffn_hidden / t if m.mlp != "swiglu" else 0)
    if k.op_sac_saves_attention:
        saved = saved + 2 * sb * v_dim / t + 4 * m.heads * sb / t
    return saved + np.where(r > 1, 2 * 2 * sb * h / r, 0)


def layer_activation_bytes(
    m: ModelSpec, impl: Implementation | Knobs, x: ActivationShape, recompute: Recompute, moe_layer: bool
) -> Any:
    """Bytes one layer keeps for backward for one micro-batch on one rank."""
    k = _knobs(impl)
    if recompute == "full":
        return 2 * x.s * x.b * m.hidden / x.r  # only the layer input (checkpoint boundary)
    h = m.hidden
    total = m.norms_per_layer * norm_saved(m, k, x, h) + attention_saved(m, k, x)
    sb = x.s * x.b
    if not m.shared_block_input:
        total += x.col_in * sb * h  # the normalised MLP input (fc1 / router / shared-expert input)
    if moe_layer and m.moe is not None:
        routing, routed, shared = _moe_saved(m, k, x)
        total += routing + routed + shared
    else:
        total += sb * mlp_inner_saved(m, k, m.ffn_hidden, x.gemm_in) / x.t
    if x.dropout:
        total += x.s * x.b * h / x.r  # mask of the dropout after the MLP
    if recompute == "selective":
        if k.selective == "op" and not (moe_layer and m.moe is not None):
            return np.minimum(total, op_policy_saved(m, k, x))
        total -= recompute_dropped(m, k, x, moe_layer)
    return total


def inflight_microbatches(pp: Any, vpp: Any, microbatches: Any) -> Any:
    """Micro-batches of a full stage whose activations the first stage holds at its peak, when its chunks weigh
    the same: min(p, M) for 1F1B; (2(p−1) + (v−1)p + 1)/v chunk-fulls for interleaving, capped at M
    (planner.model.pipeline steps through the schedule itself, chunk by chunk)."""
    one_f_one_b = np.minimum(pp, microbatches)
    interleaved = np.minimum(2 * (pp - 1) + (vpp - 1) * pp + 1, microbatches * vpp) / vpp
    return np.where(pp == 1, 1.0, np.where(vpp == 1, one_f_one_b, interleaved))


# --------------------------------------------------------------------------------------------
# Pipeline ranks: what each holds
# --------------------------------------------------------------------------------------------

# Columns of a rank's activation coefficients: layers keeping everything, layers under the layout's recompute
# (per dense/MoE), embedding and loss extras; each times a micro-batch's bytes of that kind.
COEFS = ("dense_keep", "dense_rc", "moe_keep", "moe_rc", "embedding", "loss", "output")
RANKS = ("first", "second", "last")


@dataclass(frozen=True)
class RankPlan:
    """One pipeline rank under one (pp, vpp, micro-batches): its layers and its activation peak coefficients."""

    rank: int
    dense_layers: int
    moe_layers: int
    embedding: bool
    head: bool
    coefs: np.ndarray  # (states, len(COEFS)): micro-batch multiples alive at each candidate peak
    valid: bool = True


def _chunk_vectors(m: ModelSpec, counts: tuple[int, ...], pp: int, vpp: int, rank: int, recipe: Recipe) -> np.ndarray:
    """(vpp, len(COEFS)) per model chunk of `rank`: layers by kind and recompute, embedding and loss flags."""
    offsets = np.concatenate([[0], np.cumsum(counts)])
    stages = pp * vpp
    out = np.zeros((vpp, len(COEFS)))
    n_rc = recipe.recompute_num_layers
    for c in range(vpp):
        kidx = c * pp + rank
        start, n = int(offsets[kidx]), counts[kidx]
        dense = max(0, min(m.dense_layers, start + n) - start)
        moe = n - dense
        if n_rc is None:
            rc_dense, rc_moe, keep_dense, keep_moe = dense, moe, 0, 0
        elif recipe.recompute_method == "uniform":
            # every group of n_rc layers is one checkpoint: one stored input per group
            rc_dense, rc_moe, keep_dense, keep_moe = math.ceil(n / n_rc) if n else 0, 0, 0, 0
        else:  # block: the first n_rc layers of the chunk (dense ones come first)
            rc_dense = min(n_rc, dense)
            rc_moe = min(n_rc - rc_dense, moe)
            keep_dense, keep_moe = dense - rc_dense, moe - rc_moe
        out[c] = (keep_dense, rc_dense, keep_moe, rc_moe, kidx == 0, kidx == stages - 1, kidx < stages - 1)
    return out


@functools.lru_cache(maxsize=1 << 15)  # (stages, virtual stages, micro-batches) × ranks of a whole grid
def rank_plan(m: ModelSpec, pp: int, vpp: int, microbatches: int, which: str, recipe: Recipe,
              split: pipeline.PipelineSplit) -> RankPlan:
    """The layers and in-flight coefficients of the first, second or last pipeline rank."""
    rank = {"first": 0, "second": min(1, pp - 1), "last": pp - 1}[which]
    counts = pipeline.virtual_stage_layers(m.layers, pp, vpp, split)
    if isinstance(counts, str):  # a split the framework refuses: legality reports it; count it evenly
        counts = tuple(m.layers // (pp * vpp) + (k < m.layers % (pp * vpp)) for k in range(pp * vpp))
    chunks = _chunk_vectors(m, counts, pp, vpp, rank, recipe)
    coefs = pipeline.undominated(pipeline.inflight_states(pp, vpp, microbatches, rank) @ chunks)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    mine = [c * pp + rank for c in range(vpp)]
    layers_here = sum(counts[k] for k in mine)
    dense = sum(max(0, min(m.dense_layers, int(offsets[k]) + counts[k]) - int(offsets[k])) for k in mine)
    return RankPlan(rank, dense, layers_here - dense, rank == 0, rank == pp - 1, coefs)


# --------------------------------------------------------------------------------------------
# The whole GPU
# --------------------------------------------------------------------------------------------


def activation_shape(seq: int, arrays: dict[str, Any], impl: Implementation | Knobs) -> ActivationShape:
    k = _knobs(impl)
    tp = arrays["tp"]
    return ActivationShape(
        s=-(-seq // arrays["cp"]),
        b=arrays["micro_batch"],
        t=tp,
        r=np.where(arrays["sequence_parallel"] > 0, tp, 1),
        dropout=k.dropout > 0,
        gemm_in=k.fp8_activation_bytes,
        gathered=_gathered_bytes(k, tp),
    )


def _gathered_bytes(k: Knobs, tp: Any) -> Any:
    """Bytes per element of the all-gathered GEMM input a framework keeps (None where it keeps the shard):
    16-bit, or fp8 where torchao's Float8ColwiseParallel casts before gathering (per-tensor scaling only,
    torchao/float8/float8_tensor_parallel.py; the float8 Linear then saves that fp8 input)."""
    if not k.preset.tp_keeps_gathered_input:
        return None
    fp8_gather = k.fp8 and k.fp8_recipe in ("delayed", "current")
    return np.where(np.asarray(tp) > 1, 1.0 if fp8_gather else 2.0, k.fp8_activation_bytes)


def extras_bytes(m: ModelSpec, k: Knobs, x: ActivationShape) -> tuple[Any, Any, Any]:
    """(embedding chunk, loss chunk) bytes per micro-batch in flight, and the loss's transient working set.

    The embedding keeps the int64 token ids (and a dropout mask); the loss chunk the final norm, the output
    layer's 16-bit input and what the cross-entropy saves: the fp32 logits (4sbV/t: Megatron's vocab-parallel CE
    exponentiates them in place, eager log_softmax keeps its fp32 output; eager models also return 16-bit
    logits, 2sbV/t, which the trainer holds through backward unless it drops them first), or under a fused
    kernel only the 16-bit logits and an fp32 log-sum-exp (flash-attn losses/cross_entropy.py saves logits and
    lse). In backward Megatron's kernel writes a 16-bit gradient (2sbV/t); an eager cross-entropy allocates its
    fp32 gradient input and output (8sbV/t, torch nll_loss_backward and log_softmax_backward), DTensor's
    loss_parallel a zero gradient, an exponential and their sum (12sbV/t); a fused one writes one 16-bit
    gradient (2sbV/t)."""
    sb = x.s * x.b
    embedding = 8 * sb + (sb * m.hidden / x.r if x.dropout else 0)
    if k.loss_chunks > 1:
        return embedding, *_chunked_loss(m, k, x)
    # eager models return the 16-bit logits (Hugging Face), which a trainer holds unless it drops them first
    # (torchtitan train.py `del pred`); a column-parallel output layer leaves them sharded over TP
    held = not k.fused_norm and not k.preset.frees_logits_before_backward
    saved, transient = _logit_bytes(m, k, x, held)
    return embedding, _head_inputs(m, k, x) + saved, transient


def _logit_bytes(m: ModelSpec, k: Knobs, x: ActivationShape, held: bool) -> tuple[Any, Any]:
    """(saved, transient) of the cross-entropy over the logits of x's tokens (the extras_bytes doc), with the
    16-bit logits themselves held through backward when `held`."""
    sb = x.s * x.b
    logits = sb * m.vocab / x.t
    if k.cross_entropy in ("fused", "fused_inplace"):
        return 2 * logits + 4 * sb, 2 * logits if k.cross_entropy == "fused" else 0.0
    if k.cross_entropy == "vocab_parallel":
        grad_bytes: Any = 2
    else:
        grad_bytes = np.where(k.preset.dtensor_loss_parallel & (np.asarray(x.t) > 1), 12, 8)
    return (4 + (2 if held else 0)) * logits, grad_bytes * logits


def _chunked_loss(m: ModelSpec, k: Knobs, x: ActivationShape) -> tuple[Any, Any]:
    """(kept, transient) of a loss run over N chunks of the tokens, each chunk's output layer, cross-entropy and
    backward at once (torchtitan components/loss.py ChunkedLossWrapper): the decoder's backward starts from
    the final norm's saved input, its output — replicated over TP, the chunks' shared input — and the summed
    16-bit gradient of it; while the chunks run, an fp32 accumulator of that gradient (GradAccumulator,
    dtype float32) and one chunk's cross-entropy, whose 16-bit logits the loop holds through its backward."""
    saved, transient = _logit_bytes(m, k, x, held=True)
    sbh = x.s * x.b * m.hidden
    return norm_saved(m, k, x, m.hidden) + 2 * sbh + 2 * sbh, 4 * sbh + (saved + transient) / k.loss_chunks


def _head_inputs(m: ModelSpec, k: Knobs, x: ActivationShape) -> Any:
    """What the final norm and the output layer keep for backward: the norm's saved input and the output layer's
    16-bit input, all-gathered where the framework keeps it so (16-bit: float8 skips the output layer)."""
    return norm_saved(m, k, x, m.hidden) + 2 * x.s * x.b * m.hidden / (x.r if x.gathered is None else 1)


def head_backward_bytes(m: ModelSpec, k: Knobs, x: ActivationShape) -> Any:
    """Bytes of one micro-batch alive while the output layer runs its backward: the loss has freed what it saved
    and left the 16-bit gradient of the logits (the `.float()` cast's backward, or a fused kernel's output),
    next to the output layer's and the final norm's saved inputs. A chunked loss runs the output layer's
    backward chunk by chunk inside the loss: its kept and transient bytes."""
    if k.loss_chunks > 1:
        kept, transient = _chunked_loss(m, k, x)
        return kept + transient
    return _head_inputs(m, k, x) + 2 * x.s * x.b * m.vocab / x.t


def _flat(arrays: dict[str, Any]) -> tuple[dict[str, np.ndarray], tuple[int, ...], int]:
    keys = list(arrays)
    cols = np.broadcast_arrays(*[np.asarray(arrays[k_]) for k_ in keys])
    shape = cols[0].shape
    n = int(np.prod(shape)) if shape else 1
    return {k_: c.reshape(-1).astype(np.int64) for k_, c in zip(keys, cols, strict=True)}, shape, n


def _weighted(per_kind: np.ndarray, coefs: np.ndarray) -> np.ndarray:
    """Row-wise per_kind · coefs, summed in column order (the same bits for a row alone or in a grid)."""
    out = per_kind[:, 0] * coefs[..., 0]
    for j in range(1, per_kind.shape[1]):
        out = out + per_kind[:, j] * coefs[..., j]
    return out


def _peak(per_kind: np.ndarray, plans: list[RankPlan], groups: list[Any], gid: np.ndarray) -> np.ndarray:
    """Each row's activation peak: the largest of its rank's candidate in-flight states; most (pp, vpp,
    micro-batches) groups have one (1F1B), interleaved ones a few more, taken group by group."""
    got = _weighted(per_kind, np.stack([pl.coefs[0] for pl in plans]).astype(np.float64)[gid])
    for (_, idx), pl in zip(groups, plans, strict=True):
        if len(pl.coefs) > 1:
            got[idx] = np.maximum(got[idx], (per_kind[idx] @ pl.coefs[1:].T).max(axis=1))
    return got


def training_memory_table(
    m: ModelSpec, seq: int, arrays: dict[str, Any], recipe: Recipe, impl: Implementation, overheads: Overheads
) -> dict[str, Any]:
    """Per-GPU bytes of the most loaded pipeline rank, component by component, for scalars or numpy arrays of
    layout fields (the solver evaluates its whole grid in one call)."""
    a, shape, n = _flat(arrays)
    k = knobs(impl, recipe)
    tp, pp, vpp, ep, cp, dp, zero, rc = (a[f] for f in ("tp", "pp", "vpp", "ep", "cp", "dp", "zero", "recompute"))
    microbatches = np.maximum(1, a["global_batch"] // (dp * a["micro_batch"]))
    x = activation_shape(seq, a, k)

    def col(v: Any) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64)
        return a.reshape(-1) if a.size == n else np.full(n, float(a))

    # ---- state bytes per parameter ---------------------------------------------------------------------
    group = dp * cp  # the distributed optimizer and FSDP shard over DP×CP (Megatron, torchtitan)
    shard = np.minimum(recipe.dp_shard, group) if recipe.dp_shard else group  # HSDP: shard inside dp_shard
    # expert state shards over expert data parallelism: tp·dp·cp / (ep·expert_tp) ranks (dp·cp/ep when the
    # experts split over TP like the rest; Megatron-Core parallel_state.py expert_data_parallel group)
    etp_code = a["expert_tp"] if "expert_tp" in a else np.zeros_like(tp)  # 0: the experts split over TP
    etp = np.where(etp_code > 0, etp_code, tp)
    expert_shard = np.maximum(1, shard * tp // (ep * etp))
    wd, gd, od = (col(v) for v in state_bytes_per_param(recipe, zero, shard, k.state))
    we, ge, oe = (col(v) for v in state_bytes_per_param(recipe, zero, expert_shard, k.state))
    fsdp = k.state in ("fsdp2", "fsdp1")
    gathered = ((zero == 3) | (fsdp & (zero >= 1))) & (shard > 1)
    # FSDP without resharding keeps each unit's gathered 16-bit parameters from its forward to its backward
    # (ZeRO-2's memory; FSDP has no ZeRO-1, which runs as that); inside a pipeline stage torch.distributed.
    # pipelining keeps them over all micro-batches and accumulates unsharded gradients in the reduce dtype
    # until the last one (stage.py backward_maybe_with_nosync: set_reshard_after_backward(False),
    # set_requires_gradient_sync(False)).
    reshard = np.where(pp > 1, k.reshard_with_pp, k.reshard_without_pp)
    held = gathered & fsdp & (((zero == 3) & ~reshard) | (zero < 3) | (pp > 1))
    # gathered parameters: fp8 parameters gather in fp8 (torchao's float8 all-gather, Megatron
    # --fp8-param-gather), and a Transformer Engine unit then holds its row-wise and transposed copies
    gather_bytes = (k.fp8_weight_bytes or 1.0) if k.fp8_param_gather else float(BF16)
    reduce_bytes = 4.0 if (k.fsdp_reduce_fp32 if fsdp else recipe.fp32_grad_accumulation) else 2.0
    held_g = np.where(held & (pp > 1), reduce_bytes, 0.0)
    held_w = np.where(held, gather_bytes, 0.0)

    # ---- activations per micro-batch, by kind --------------------------------------------------------------
    modes: tuple[Recompute, ...] = ("none", "selective", "full")
    dense_b = [col(layer_activation_bytes(m, k, x, mode, False)) for mode in modes]
    moe_b = [col(layer_activation_bytes(m, k, x, mode, True)) for mode in modes] if m.moe else [col(0.0)] * 3
    dense_rc, moe_rc = np.choose(rc, dense_b), np.choose(rc, moe_b)
    # layers outside recompute_num_layers keep everything under full recompute; selective covers every layer
    dense_keep = np.where(rc == 2, dense_b[0], dense_rc)
    moe_keep = np.where(rc == 2, moe_b[0], moe_rc)
    emb_b, loss_b, loss_transient = (col(v) for v in extras_bytes(m, k, x))
    head_bwd = col(head_backward_bytes(m, k, x))
    offloaded = col(layout_offloaded_share(k.offloaded_share(m.layers), a.get("activation_offload_layers", 0),
                                           m.layers))
    if offloaded.any():
        # offloaded layers leave the GPU after their forward and come back for their backward (TE
        # cpu_offload.py, Megatron --cpu-offloading, --cpu-offloading-num-layers): the others keep theirs, and
        # the layer computing and the one in transfer are on the GPU
        dense_keep, dense_rc, moe_keep, moe_rc = (v * (1.0 - offloaded) for v in (dense_keep, dense_rc, moe_keep,
                                                                                    moe_rc))
    sbh = x.s * x.b * m.hidden
    output_b = col({"freed": 0, "tp_partitioned": 2 * sbh / x.t, "kept": 2 * sbh / x.r}[k.stage_output])
    per_kind = np.stack([dense_keep, dense_rc, moe_keep, moe_rc, emb_b, loss_b, output_b], axis=1)
    # the same without the loss chunk: once the loss's backward has run, what it saved is freed
    per_kind_after_loss = per_kind.copy()
    per_kind_after_loss[:, COEFS.index("loss")] = 0.0
    # backward rebuilds a recomputed layer (a whole group under the uniform method) before it runs it
    group_layers = recipe.recompute_num_layers if recipe.recompute_method == "uniform" else 1
    rebuilt = np.maximum(dense_b[0] - dense_rc, moe_b[0] - moe_rc if m.moe else 0)
    rebuilt = np.where(rc == 2, rebuilt + ((group_layers or 1) - 1) * dense_b[0], np.where(rc > 0, rebuilt, 0))
    rebuilt = rebuilt + np.where(offloaded > 0, 2 * np.maximum(dense_b[0], moe_b[0]), 0.0)
    rebuilt = rebuilt + col(cp_exchange_bytes(m, k, x, cp))  # held through the layer's attention backward

    # ---- per-layer parameters on this rank -----------------------------------------------------------------
    d_dense = col(layer_params_on_rank(m, tp, ep, False)[0])
    d_moe, e_moe = (col(v) for v in layer_params_on_rank(m, tp, ep, True, etp))
    g_dense = col(layer_gemm_weights_on_rank(m, tp, ep, False)[0])
    g_moe_dense, g_moe_expert = layer_gemm_weights_on_rank(m, tp, ep, True, etp)
    g_moe = col(g_moe_dense) + col(g_moe_expert)
    embed, head = (col(v) for v in ends_params(m, tp))
    tied = col(m.vocab * m.hidden / tp) if m.tied_embeddings else col(0.0)
    # ZeRO-3 / FSDP gather units: a transformer layer, or the output layer (FSDP wraps it as its own unit)
    layer_unit = d_moe + e_moe if m.moe else d_dense
    if k.zero3_unit == "layer":
        # FSDP (and Megatron-FSDP): in a layer's backward the unit being computed, the prefetched next one, the
        # unit's 16-bit gradients and their reduce-scatter copy in the reduce dtype; held parameters are
        # counted above
        live = np.where(held, layer_unit * (BF16 + reduce_bytes),
                        layer_unit * (2 * gather_bytes + BF16 + reduce_bytes))
        # the output layer's unit stays gathered from its forward through its backward (FSDP2 keeps the last
        # unit: torchtitan apply_fsdp reshard_after_forward=False for [norm, output]; FSDP1 and FSDP2 keep the
        # root's): while the loss runs its backward it and the prefetched last block are gathered; its
        # gradients and their reduce-scatter copy come in its own backward, after the loss freed what it saved
        head_at_loss = np.where(held, 0.0, (head + layer_unit) * gather_bytes)
        head_in_backward = np.where(held, head * (BF16 + reduce_bytes),
                                    head * (gather_bytes + BF16 + reduce_bytes) + layer_unit * gather_bytes)
    else:
        # DeepSpeed: gathered parameters capped at stage3_max_live_parameters, and their gradients
        cap = overheads.zero3_live_params
        unit = np.maximum(layer_unit, head)
        live = (np.minimum(2 * unit, cap) if cap is not None else 2 * unit) * (BF16 + BF16)
        head_at_loss = head_in_backward = live
    live, head_at_loss, head_in_backward = (np.where(gathered, v, 0.0) for v in (live, head_at_loss,
                                                                                  head_in_backward))
    sbh_r = x.s * x.b * m.hidden / x.r
    # one 16-bit send and one receive buffer of a stage activation in flight (Megatron); per micro-batch under
    # torch.distributed.pipelining, counted per rank below
    pipe_pair = 0.0 if k.preset.recv_buffer_per_microbatch else 2 * 2 * sbh_r
    buffers = overheads.comm_buffer_bytes + np.where(pp > 1, pipe_pair, 0)

    best: dict[str, np.ndarray] | None = None
    groups = list(pipeline.combos(pp, vpp, microbatches))
    gid = np.empty(n, dtype=np.int64)  # each row's (pp, vpp, micro-batches) group: per-group values gathered
    for g, (_, idx) in enumerate(groups):
        gid[idx] = g
    deepest = max(p for (p, _, _), _ in groups)
    # with one stage the first rank is also the last; the second rank differs only with three or more
    for which in RANKS if deepest > 2 else ("first", "last") if deepest == 2 else ("first",):
        plans = [rank_plan(m, p, v, mb, which, recipe, k.split) for (p, v, mb), _ in groups]

        def per_row(values: list[Any], dtype: type = np.float64) -> np.ndarray:
            return np.asarray(values, dtype=dtype)[gid]

        valid = per_row([which != "second" or p > 2 for (p, _, _), _ in groups], bool)
        dl, ml = per_row([pl.dense_layers for pl in plans]), per_row([pl.moe_layers for pl in plans])
        emb, hd = per_row([pl.embedding for pl in plans], bool), per_row([pl.head for pl in plans], bool)
        peak = _peak(per_kind, plans, groups, gid)
        # the moments a rank peaks at, as (activations, unit buffers): a layer's backward, which rebuilds what
        # recompute dropped; on the loss's rank also the loss's backward and the output layer's
        acts, units = peak + rebuilt, live
        if hd.any():
            after_loss = _peak(per_kind_after_loss, plans, groups, gid)
            acts = np.where(hd, after_loss + rebuilt, acts)
            for a_, u_ in ((peak + loss_transient, head_at_loss), (after_loss + head_bwd, head_in_backward)):
                take = hd & (a_ + u_ > acts + units)
                acts, units = np.where(take, a_, acts), np.where(take, u_, units)
        ends = embed * emb + head * hd - tied * (emb & hd)
        dense_par = dl * d_dense + ml * d_moe + ends
        expert_par = ml * e_moe
        weights = dense_par * (wd + held_w) + expert_par * (we + held_w)
        extra = buffers
        if k.preset.recv_buffer_per_microbatch:
            # the rank's v stages: a forward-input buffer each but the first stage's, an input-gradient buffer
            # each but the last stage's, one per micro-batch
            recv = per_row([(2 * v - (which == "first") - (which == "last")) * mb if p > 1 else 0
                            for (p, v, mb), _ in groups])
            extra = extra + recv * 2 * sbh_r
        if k.fp8 and k.fp8_weight_bytes:
            # Transformer Engine's cached fp8 weights (row-wise and transposed, with scales); with fp8
            # parameters (fp8_param_gather) the fp8 copy replaces the 16-bit weight. Sharded, the 1-byte shard
            # is all a rank keeps between uses: a gathered unit brings its fp8 copies and drops them with its
            # transpose cache (Megatron-FSDP megatron_fsdp.py release_params_fp8_transpose_cache, unless
            # keep_fp8_transpose_cache), counted with the live units
            gemm = dl * g_dense + ml * g_moe
            if k.fp8_param_gather:
                weights = weights + gemm * np.where(gathered, (1.0 - BF16) / shard, k.fp8_weight_bytes - BF16)
            else:
                weights = weights + gemm * k.fp8_weight_bytes
            # delayed scaling: an fp32 amax history per fp8 tensor (input, weight, gradient) of each GEMM
            extra = extra + (dl + ml) * 4 * FP8_TENSORS_PER_GEMM * 4 * k.amax_history_len
        if k.layer_graph_buffers:
            # each captured layer owns static input and output buffers (Megatron transformer/cuda_graphs.py)
            extra = extra + (dl + ml) * 2 * 2 * sbh_r
        if k.pipeline_outputs_kept:  # the last stage's 16-bit logits of every micro-batch
            kept = per_row([pipeline_outputs_held(p, mb) for (p, _, mb), _ in groups])
            extra = extra + np.where(hd, kept, 0.0) * 2 * x.s * x.b * m.vocab / x.t
        comp: dict[str, np.ndarray] = {
            "weights": weights,
            "gradients": dense_par * (gd + held_g) + expert_par * (ge + held_g),
            "optimizer": dense_par * od + expert_par * oe,
            "activations": acts,
            "buffers": col(extra) + units,
        }
        stage = per_row([pl.rank for pl in plans], np.int64)
        allocated = sum(comp.values())
        comp["reserve"] = np.asarray(overheads.reserve_bytes + overheads.fragmentation * allocated)
        comp = {key: np.ceil(val) for key, val in comp.items()}
        comp["total"] = np.where(valid, sum(comp.values()), -1.0)
        comp["stage"] = stage.astype(np.float64)
        if best is None:
            best = comp
        else:
            take = comp["total"] > best["total"]
            best = {key: np.where(take, comp[key], best[key]) for key in comp}
    assert best is not None
    return {key: val.reshape(shape) for key, val in best.items()}


def pipeline_outputs_held(pp: int, microbatches: int) -> int:
    """Micro-batch outputs the last stage holds through a step when torch.distributed.pipelining keeps them for
    step() to merge (stage.py forward_one_chunk appends each to output_chunks; the next step clears them):
    every one of the step's, with more than one stage."""
    return microbatches if pp > 1 else 0


def training_memory_floor(
    m: ModelSpec, seq: int, arrays: dict[str, Any], recipe: Recipe, impl: Implementation, overheads: Overheads
) -> np.ndarray:
    """A lower bound of `training_memory_table`'s total over a set of layouts that share tp, pp, vpp, dp, cp, ep and
    expert_tp (arrays of those), whatever their micro-batch size and count, recompute mode and sequence
    parallelism, with ZeRO within [zero_min, zero_max]: for each ZeRO stage, the weights, gradients and
    optimizer state of the rank the table picks for one member of the set, and the reserve they alone
    cause. A rank's state reads its layers (the split of pp and vpp) and the sharding, none of the free
    fields, and the table's total is the most loaded rank's, at least this rank's. Planner.search.pruning
    skips sets that fit on no SKU; a property test holds the floor under every row of real grids."""
    a = {k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()}
    n = len(a["tp"])
    out = np.full(n, np.inf)
    for z in range(4):
        rows = np.flatnonzero((a["zero_min"] <= z) & (z <= a["zero_max"]))
        if len(rows) == 0:
            continue
        one: dict[str, Any] = {f: a[f][rows] for f in ("tp", "pp", "vpp", "dp", "cp", "ep", "expert_tp") if f in a}
        # the state reads no micro-batch count: as many micro-batches as stages keeps the table's pipeline
        # schedules to one per (pp, vpp)
        one.update(global_batch=one["dp"] * a["micro_batch_min"][rows] * one["pp"])
        one.update(micro_batch=a["micro_batch_min"][rows], zero=np.full(len(rows), z),
                   recompute=np.zeros(len(rows), dtype=np.int64), sequence_parallel=np.zeros(len(rows), dtype=np.int64))
        t = training_memory_table(m, seq, one, recipe, impl, overheads)
        state = t["weights"] + t["gradients"] + t["optimizer"]  # each rounded up: at most 1 byte over, each
        reserve = np.ceil(overheads.reserve_bytes + overheads.fragmentation * (state - 3))
        out[rows] = np.minimum(out[rows], state + reserve)
    return out


class FitsOnGpu:
    """What a per-GPU footprint means on its GPU: capacity, fits, headroom (training plans and serving
    footprints alike). Mixed into result dataclasses that hold `gpu` and `memory` (with a `total`)."""

    gpu: GpuSku
    memory: Any

    @property
    def capacity_bytes(self) -> int:
        return self.gpu.hbm_bytes

    @property
    def fits(self) -> bool:
        return bool(self.memory.total <= self.capacity_bytes)

    @property
    def headroom_bytes(self) -> int:
        return int(self.capacity_bytes - self.memory.total)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Per-GPU bytes of the most loaded pipeline rank. `total` is what the device holds (fit); `reserved` what
    PyTorch's caching allocator reserves at its peak (torch.cuda.max_memory_reserved, logged by torchtitan
    and NeMo); `allocated` the tensors themselves (torch.cuda.max_memory_allocated)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    buffers: int
    reserve: int
    stage: int  # which pipeline stage binds (0-based)
    outside_allocator: int = 0  # part of `reserve` the caching allocator never sees (CUDA context, workspaces)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers + self.reserve

    @property
    def allocated(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers

    @property
    def reserved(self) -> int:
        return self.total - self.outside_allocator

    def as_dict(self) -> dict[str, int]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("stage", "outside_allocator")}
        d["total"] = self.total
        return d


def training_memory(
    m: ModelSpec,
    layout: Layout,
    seq: int,
    impl: Implementation | None = None,
    overheads: Overheads | None = None,
) -> MemoryBreakdown:
    """Per-GPU training memory of the most loaded pipeline rank of one layout."""
    # the same layout is asked about on every GPU type it could run on: memory does not depend on the GPU
    return _training_memory(m, layout, seq, (impl or Implementation()).model_dump_json(), overheads or Overheads())


@functools.lru_cache(maxsize=8192)
def _training_memory(m: ModelSpec, layout: Layout, seq: int, impl_json: str, overheads: Overheads) -> MemoryBreakdown:
    impl = Implementation.model_validate_json(impl_json)
    t = training_memory_table(m, seq, layout_arrays(layout), Recipe.of(layout), impl, overheads)
    values = {f.name: int(t[f.name]) for f in fields(MemoryBreakdown) if f.name != "outside_allocator"}
    return MemoryBreakdown(**values, outside_allocator=overheads.reserve_bytes)


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


def kv_window_share(m: ModelSpec) -> float:
    """The share of a token's K and V (every layer's) that sliding-window layers hold; MLA's latent cache has no
    window here."""
    return 0.0 if m.sliding_window is None or m.mla is not None else m.n_window_layers / m.layers


def kv_kept_tokens(m: ModelSpec, context: Any) -> Any:
    """The K and V a sequence of `context` tokens keeps, in tokens of every layer's: all of them in full-attention
    layers, the last `sliding_window` in windowed ones (vLLM's and SGLang's sliding-window KV managers free the
    rest). Scalars or numpy arrays."""
    share, window = kv_window_share(m), m.sliding_window
    if not share or window is None:
        return context
    return (1.0 - share) * context + share * np.minimum(context, window)


def kv_cache_bytes_per_token(m: ModelSpec, tp: int, dtype_bytes: float, context: int | None = None) -> float:
    """K and V of one token, all layers, on one TP rank. MLA caches the compressed latent and the
    shared RoPE key instead (DeepSeek-V2 §2.1.2), replicated over TP; KV heads below TP are replicated.
    With `context`, averaged over a sequence of that many tokens (`kv_kept_tokens`: windowed layers keep the
    window)."""
    if m.mla is not None:
        return m.layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) * dtype_bytes
    heads_per_rank = max(1, m.n_kv_heads // tp) if m.n_kv_heads >= tp else 1
    every_layer = m.layers * 2 * heads_per_rank * m.d_head * dtype_bytes
    if context is None or context <= 0:
        return every_layer
    return every_layer * float(kv_kept_tokens(m, context)) / context


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
    kv = kv_cache_bytes_per_token(m, tp, SERVING_BYTES[kv_dtype], context) / pp * batch * context
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
