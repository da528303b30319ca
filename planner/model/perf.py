"""Step time, utilisation, days, GPU-hours and energy for a layout on a GPU.

Two modes. The fixed-utilisation mode (`mfu` or `hfu`) reproduces the back-of-envelope arithmetic
users know: time = FLOPs / (GPUs × peak × utilisation). The detailed mode builds one optimizer step
from one micro-batch on the slowest pipeline stage (its layers plus the output head), one term per
function below, each one formula:

- `_layer` — one layer's forward on one GPU. GEMMs at a shape-dependent rate: a GEMM of M×K by K×N moves
  at least 2(MK + KN + MN) bytes for its 2MNK FLOPs, and charging that traffic at HBM speed next to the
  math gives rate = peak · gemm / (1 + balance · (1/M + 1/N + 1/K)), balance = achievable FLOP/s ÷
  achievable HBM bytes/s (NVIDIA, "Matrix Multiplication Background", DU-09799-001). A GEMM with a
  dimension off the 128-byte tensor-core alignment runs at `gemm_unaligned` of that rate; the vocabulary
  is padded to 128 × TP first, as Megatron-LM pads it. fp8 GEMMs run at the recipe's rate (per-tensor
  scaling at `gemm_fp8`, MXFP8 and 1×128/128×128 block scaling at `gemm_mxfp8`/`gemm_fp8_block` of it)
  and pay Transformer Engine's quantization kernels (`fp8_quantize_bytes` per input, weight and
  output-gradient element). Flash attention at `flash_attention` × the 16-bit GEMM rate, executing half
  the score FLOPs under the causal mask and 2.5 forwards' worth in backward (Dao 2023 §3.1.2); eager
  attention as batched GEMMs on the full s² plus its softmax and dropout traffic. Element-wise work
  (norms, activations, bias/dropout/residual, rotary, MoE permutes, the fp32 cross-entropy) as bytes over
  HBM at `hbm` efficiency; backward moves twice the forward bytes.
- `_compute` — a micro-batch's forward, backward and recompute on the stage (full recompute of every
  layer or of `recompute_num_layers`; selective recompute of the stack's modules: Megatron's
  `recompute_modules`, torchtitan's every second matmul), a layer at the CPU's pace when its kernels take
  longer to issue than to run (`kernel_launch_us`; CUDA graphs replay at `graph_launch_us`), and the
  PCIe traffic of activation offload that the compute does not hide.
- `_tp`, `_cp`, `_ep`, `_pp` — communication on the link it crosses (planner.model.comm): TP collectives
  per layer, exposed, or pipelined chunk by chunk with the GEMMs under Transformer Engine's userbuffers
  (`tp_overlap`: ring-exchange all-gathers split TP ways, 4-way pipelined and bulk reduce-scatters that
  take `tp_overlap_sm_share` of the SMs); CP K/V by the stack's exchange (Transformer Engine's ring, PyTorch's
  all-gather or all-to-all rotation with fp32 dK/dV); EP all-to-all; PP activations per chunk.
- `_sharded` — ZeRO-3/FSDP parameter gathers and gradient reduce-scatters, with the framework's prefetch:
  forward gathers one block ahead; backward gathers issued before a block's backward (FSDP2, DeepSpeed)
  or after it (FSDP1's BACKWARD_POST, exposed); resharding after forward or not; every micro-batch or,
  under pipelining, once per step; HSDP's replica all-reduce (`dp_shard`).
- `_bubble` — (p − 1)/v micro-batch slots of 1F1B, interleaved over v chunks.
- `_dp` — ZeRO-0/1/2 gradient reduction under the last micro-batch's backward with Megatron-Core's last
  bucket exposed (after it in DeepSpeed's pipeline engine and without ZeRO), the parameter all-gather under
  the first forward (inside the optimizer step in DeepSpeed, and in Megatron without --overlap-param-gather),
  and the tied-embedding sync.
- `_optimizer` — bytes touched per parameter of the local shard over HBM.
Every overlapped collective slows the compute beside it by `comm_interference` over the overlapped span.

The terms are plain arithmetic on layout fields, so the same formulas take Python scalars
(`training_time`, one layout) or numpy arrays (`step_time_table`, a whole solver grid). What the
framework does comes from one object (planner.model.stack). Energy: GPUs × TDP × wall time — an upper
bound. MFU and HFU count FLOPs in planner's convention (causal attention at half, planner.model.flops).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, cast

import numpy as np

from planner.model import comm
from planner.model.comm import vmax, vmin
from planner.model.flops import StepFlops, causal_keys_per_query, full_recompute_share, step_flops
from planner.model.memory import ActivationShape, Recipe, layer_activation_bytes, layer_params_on_rank
from planner.model.params import attention_dims, attention_weights, k_projection_weights, mla_up_weights, qk_norm_width
from planner.model.pipeline import PipelineSplit, bubble_slots, max_stage_layers
from planner.model.presets import PRESETS, layout_offloaded_share, offloaded_share
from planner.model.stack import EVERY_SECOND_MATMUL, Stack, stack_of, time_arrays
from planner.schema import FP8_QUANTIZE_BYTES, Efficiency, GpuSku, Implementation, Layout, ModelSpec

SECONDS_PER_DAY = 86_400.0
BREAKDOWN_KEYS = ("compute", "tp_comm", "pp_comm", "dp_comm", "cp_comm", "ep_comm", "bubble", "optimizer")

# Counting constants (bytes, passes or kernels, not efficiencies).
ACT = 2  # bytes per 16-bit activation element
ALIGN_BYTES = 128  # A100/H100 tensor-core GEMMs run best on dimensions in multiples of 128 bytes
VOCAB_PAD = 128  # Megatron-LM pads the vocabulary to a multiple of 128 × TP (--make-vocab-size-divisible-by)
BACKWARD_BYTES = 2.0  # element-wise backward reads the saved input and the incoming gradient, writes one
FLASH_BACKWARD = 2.5  # flash backward: 5 matmuls against the forward's 2 (it recomputes QKᵀ)
# FlashAttention-2 on Hopper and later: it uses none of wgmma, TMA or warp specialisation, and FlashAttention-3 is
# "1.5-2.0x faster than FlashAttention-2" on H100 (Shah et al. 2024, arXiv 2407.08608, abstract): FA2 kernels run
# at 1/1.75 of the generation's native flash rate. Ampere's native kernel is FA2 itself.
FA2_ON_NEWER_GPUS = 1 / 1.75
# The Triton FlashAttention (llm-foundry's attn_impl: triton): FlashAttention-2 is "around 1.3-1.5× faster than
# FlashAttention in Triton in the forward pass and around 2× faster in the backward pass" on A100 (Dao 2023,
# arXiv 2307.08691, §4.1). Its rates relative to FA2's, forward and backward; like FA2 it has no Hopper path.
TRITON_FLASH_FORWARD = 1 / 1.4
TRITON_FLASH_BACKWARD = 1 / 2.0
NATIVE_FLASH_GENERATIONS = ("hopper", "blackwell")
# Bytes per logit the loss moves, forward and backward, pass by pass. Megatron's vocab-parallel loss
# (megatron/core/tensor_parallel/cross_entropy.py): upcast (2 + 4), max (4), subtract, exp and divide in place
# (8 each), sum (4); backward scales the saved softmax in place (8) and autograd casts it down (4 + 2): 52. Its
# jit-fused variant (fusions/fused_cross_entropy.py) moves about as much: Inductor copies in-place results back.
# Eager PyTorch on an fp32 copy: upcast (6), log_softmax's max, sum and write passes (16), nll's zero-filled
# gradient (4), log_softmax_backward (16) and the downcast (6): 48. A fused kernel reads the 16-bit logits once
# each way and writes their 16-bit gradient (flash-attn's losses/cross_entropy.py); Transformer Engine's reads
# them twice in forward (online softmax, then the gradient written over them) and scales that gradient in place
# in backward (pytorch/triton/cross_entropy.py)
CROSS_ENTROPY_BYTES = {"fp32": 48, "vocab_parallel": 52, "fused": 6, "fused_inplace": 10}
UNFUSED_BYTES = 2.0  # unfused element-wise ops (as Hugging Face writes them) each re-read and re-write
# Optimizer step, bytes per parameter of the local shard besides reading and writing the master and moments: the
# fp32 gradient (4) read twice (norm for clipping, then the update; Megatron casts a bf16 gradient shard to fp32
# first, distrib_optimizer.py _copy_model_grads_to_main_grads) and the 16-bit weight written (2). AdamW with an fp32
# master: 2·(4 + 8) + 10 = 34 B. A master kept as the 16-bit remainder, or none, also reads the 16-bit weight.
OPTIMIZER_STEP_GRAD_READS = 2
OPTIMIZER_STEP_WEIGHT_BYTES = 2


def optimizer_step_bytes(recipe: Recipe) -> float:
    """HBM bytes per local parameter one optimizer step moves (planner.model.memory Recipe.optimizer_bytes)."""
    master, moments = recipe.optimizer_bytes()
    reads_weight = recipe.master_weights in ("remainder", "none")
    return (2 * (master + moments) + OPTIMIZER_STEP_GRAD_READS * 4
            + OPTIMIZER_STEP_WEIGHT_BYTES * (2 if reads_weight else 1))
# Kernels one layer's forward launches, counted from the layer's ops: Transformer Engine fuses
# norm+GEMM, bias+dropout+residual and the activation (norm, QKV, rotary, attention, projection, add, norm,
# fc1, activation, fc2, add, plus bookkeeping: 12); eager PyTorch issues each op apart (RMSNorm alone is 5
# kernels, Q, K and V three GEMMs, rotary 6 ops: about 28). fp8 adds a quantization kernel per GEMM input.
KERNELS_FUSED = 12
KERNELS_UNFUSED = 28
KERNELS_PER_FP8_GEMM = 1
KERNELS_PER_NORM_FUSED = 1  # one norm kernel (TE, Apex, Inductor)
KERNELS_PER_NORM_UNFUSED = 5  # Hugging Face's RMSNorm: upcast, pow, mean, rsqrt-multiply, weight multiply
BACKWARD_KERNELS = 2.0  # backward launches about twice the forward's kernels (dgrad and wgrad)
# Transformer Engine's userbuffers split a pipelined reduce-scatter into 4 chunks and a ring-exchange
# all-gather into TP chunks (transformer_engine/pytorch/module/base.py initialize_ub defaults).
UB_PIPELINE_SPLITS = 4
# Transformer Engine's all-gather CP exchange (context_parallel.py AttnFuncWithCPAndKVAllGather), HBM bytes moved
# per pass in units of the gathered 16-bit K/V (cp × this rank's): every pass reorders the gathered K/V into
# sequence order (index_select: read + write); backward also makes each step's dK/dV contiguous (2), adds them
# into the full-length dK/dV (read both, write: 3) and reorders those back to rank order (2)
TE_ALLGATHER_PASS_BYTES = 2
TE_ALLGATHER_GRAD_BYTES = 7
UNBOUNDED_S = 1e30  # a compute window longer than any collective (step_time_floor)

_DEFAULT_IMPL = Implementation()
_DEFAULT_RECIPE = Recipe()


@dataclass(frozen=True)
class TimeEstimate:
    step_seconds: float
    breakdown: dict[str, float] = field(default_factory=dict)  # seconds per component of one step
    tokens_per_s: float = 0.0
    tflops_per_gpu: float = 0.0  # model TFLOP/s per GPU (the MFU numerator)
    mfu: float = 0.0
    hfu: float = 0.0
    days: float = 0.0
    gpu_hours: float = 0.0
    energy_kwh: float = 0.0  # GPUs at TDP for the whole run: an upper bound
    mode: str = "model"  # "model" (the detailed time model), "fixed mfu" or "fixed hfu"


def utilisation_peak(gpu: GpuSku, layout: Layout) -> float:
    """The denominator of MFU and HFU in FLOP/s: the dense peak of the GEMM dtype. fp8 runs count against
    the fp8 peak, as NVIDIA's NeMo/dgxc tables do; a SKU without fp8 tensor cores falls back to 16-bit."""
    if layout.precision == "fp8" and "fp8" in gpu.peak_tflops:
        return gpu.peak("fp8") * 1e12
    return gpu.peak("fp16" if layout.precision == "fp16" else "bf16") * 1e12


def gpu_energy_kwh(gpu_hours: float, gpu: GpuSku) -> float:
    """The GPUs at TDP over `gpu_hours`: an upper bound of what they draw, before PUE."""
    return gpu_hours * gpu.tdp_w / 1000.0


def summarise(
    m: ModelSpec, layout: Layout, gpu: GpuSku, seq: int, tokens: float, step_seconds: float, flops: StepFlops,
    breakdown: dict[str, float], mode: str = "model",
) -> TimeEstimate:
    """Turn one step's time into throughput, utilisation, days, GPU-hours and energy."""
    n = layout.gpus
    peak = utilisation_peak(gpu, layout)
    steps = tokens / flops.tokens
    seconds = steps * step_seconds
    mfu = flops.model / (step_seconds * n * peak)
    hfu = flops.hardware / (step_seconds * n * peak)
    gpu_hours = seconds * n / 3600.0
    return TimeEstimate(
        step_seconds=step_seconds,
        breakdown=breakdown,
        tokens_per_s=flops.tokens / step_seconds,
        tflops_per_gpu=flops.model / (step_seconds * n) / 1e12,
        mfu=mfu,
        hfu=hfu,
        days=seconds / SECONDS_PER_DAY,
        gpu_hours=gpu_hours,
        energy_kwh=gpu_energy_kwh(gpu_hours, gpu),
        mode=mode,
    )


def fixed_utilisation_time(
    m: ModelSpec, layout: Layout, gpu: GpuSku, seq: int, tokens: float, *, mfu: float | None = None,
    hfu: float | None = None,
) -> TimeEstimate:
    """Back-of-envelope: step time = FLOPs / (GPUs × dense 16-bit peak × utilisation). `hfu` counts the
    recompute FLOPs the layout executes (8·N·T with full recompute), `mfu` only model FLOPs (6·N·T). The
    FLOPs are counted as the published tables a user takes a utilisation from count them, with the causal
    attention scores in full (planner.model.flops), so the utilisation given is the one reported."""
    if (mfu is None) == (hfu is None):
        raise ValueError("give exactly one of mfu or hfu")
    flops = step_flops(m, seq, layout.global_batch * seq, layout.recompute, causal=False,
                       full_share=full_recompute_share(layout, m.layers))
    work, util = (flops.model, mfu) if mfu is not None else (flops.hardware, hfu)
    step = work / (layout.gpus * utilisation_peak(gpu, layout) * cast(float, util))
    mode = "fixed mfu" if mfu is not None else "fixed hfu"
    return summarise(m, layout, gpu, seq, tokens, step, flops, {"compute": step}, mode)


# --------------------------------------------------------------------------------------------
# Context: everything that does not depend on the layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Model shape, kernels, software stack and GPU: fixed for one job."""

    m: ModelSpec
    seq: int
    ln: comm.Links
    eff: Efficiency
    recipe: Recipe
    stack: Stack
    split: PipelineSplit  # how the framework assigns layers to pipeline stages
    # model shape
    h: int
    heads: int
    kv_width: float  # K and V widths per token summed over KV heads (the K/V projections' outputs)
    kernel_kv_width: float  # K and V as the attention kernel gets them (and CP exchanges): repeated per query head
    q_width: int  # a·d_qk
    v_width: int  # a·d_v
    rope_width: float  # Q and K widths the rotary embedding touches
    qk_norm_width: float  # Q and K widths the query/key norms touch (Qwen3)
    causal_keys: float  # keys a query attends to, averaged over positions and layers: what flash kernels execute
    attn_in_n: float  # output width of the input projection(s): Q, K, V (or MLA's) over h
    mla_up_share: float  # MLA: the up-projections' share of those FLOPs (recompute_modules mla_up_proj reruns it)
    k_share: float  # K's share of the input projection's width (torchtitan recomputes wk)
    gated: bool  # SwiGLU: gate and up GEMMs
    ffn: int
    act_bytes: int  # element-wise bytes per inner MLP element (GeLU 4, SwiGLU 6)
    norms: int
    dense_layers: int
    moe_layers: int
    vocab: int
    tied_pp_sync: bool  # tied embeddings: first and last stage all-reduce the shared matrix's gradient
    moe_experts: int
    moe_top_k: int
    expert_ffn: int
    shared_ffn: int
    # kernels
    flash: bool
    dropout: bool
    # GPU
    gemm_rate: float  # FLOP/s of a large GEMM in the compute dtype (the fp8 recipe's, for fp8)
    balance: float  # FLOP per byte at which a GEMM's traffic costs as much as its math
    align: int  # elements per 128 bytes of a GEMM operand
    unaligned_penalty: float  # extra time of a GEMM with a misaligned dimension
    attn_rate: float  # FLOP/s of 16-bit batched attention GEMMs
    flash_rate: float
    flash_backward: float  # flash backward seconds over forward (FLASH_BACKWARD at the forward's rate)
    hbm: float  # bytes/s achieved
    ew_hbm: float  # bytes/s of element-wise work, unfused kernels counted as moving more bytes
    quant_bytes: float  # fp8 quantization bytes per GEMM-input element (0 in 16-bit)
    launch_s: float  # seconds to issue one kernel (per kernel node of a CUDA graph)
    kernels_fwd: float  # kernels one layer's forward launches
    grad_bytes: int
    param_bytes: int  # bytes per gathered parameter (1 with fp8 parameter all-gather)
    gathers_per_layer: int  # collectives a ZeRO-3 stack issues per layer and pass
    opt_bytes: float

    @property
    def mlp_in_n(self) -> int:
        """fc1 width: gate and up for SwiGLU."""
        return (2 if self.gated else 1) * self.ffn

    @property
    def moe_share(self) -> float:
        """The share of the decoder's layers that are MoE layers."""
        return self.moe_layers / (self.dense_layers + self.moe_layers)


_CACHE: dict[tuple[Any, ...], tuple[tuple[Any, ...], _Context]] = {}


def _context(
    m: ModelSpec, gpu: GpuSku, seq: int, impl: Implementation, eff: Efficiency, gpus_per_node: int, recipe: Recipe
) -> _Context:
    # keyed on identity; the cached value keeps the objects alive so an id cannot be reused meanwhile
    key = (id(m), id(gpu), seq, id(impl), id(eff), gpus_per_node, recipe)
    hit = _CACHE.get(key)
    if hit is not None and hit[0][0] is m and hit[0][1] is gpu and hit[0][2] is impl and hit[0][3] is eff:
        return hit[1]
    if len(_CACHE) > 512:
        _CACHE.clear()
    ctx = _build_context(m, gpu, seq, impl, eff, gpus_per_node, recipe)
    _CACHE[key] = ((m, gpu, impl, eff), ctx)
    return ctx


def fp8_gemm_efficiency(eff: Efficiency, recipe: str) -> float:
    """Large fp8 GEMM rate over the fp8 peak for a scaling recipe: per-tensor scaling runs TE's plain fp8
    GEMMs (`gemm_fp8`); MXFP8 and block scaling run block-scaled kernels at a fraction of them."""
    base = eff.gemm_fp8 or eff.gemm
    if recipe == "mxfp8":
        return base * (eff.gemm_mxfp8 or eff.gemm_fp8_block or 1.0)
    if recipe == "blockwise":
        return base * (eff.gemm_fp8_block or eff.gemm_mxfp8 or 1.0)
    return base


def _flash_kernel_share(stack: Stack, gpu: GpuSku) -> tuple[float, float]:
    """The framework's flash kernel's forward and backward rates over the generation's native one
    (FA2_ON_NEWER_GPUS; TRITON_FLASH_FORWARD/BACKWARD of FA2's for the Triton kernel)."""
    if stack.attention_kernel == "native":
        return 1.0, 1.0
    fa2 = FA2_ON_NEWER_GPUS if gpu.arch in NATIVE_FLASH_GENERATIONS else 1.0
    if stack.attention_kernel == "triton":
        return fa2 * TRITON_FLASH_FORWARD, fa2 * TRITON_FLASH_BACKWARD
    return fa2, fa2


def _build_context(
    m: ModelSpec, gpu: GpuSku, seq: int, impl: Implementation, eff: Efficiency, gpus_per_node: int, recipe: Recipe
) -> _Context:
    h = m.hidden
    qk, v = attention_dims(m)
    swiglu = m.mlp == "swiglu"
    if m.mla is not None:
        kv_width = float(qk + v)  # MLA materialises per-head K and V for the ring exchange
        rope_width = float((m.heads + 1) * m.mla.qk_rope_head_dim)
    else:
        kv_width = float(2 * m.n_kv_heads * m.d_head)
        rope_width = float((m.heads + m.n_kv_heads) * m.d_head) if m.position == "rope" else 0.0
    e = m.moe
    stack = stack_of(impl, recipe.precision, eff, gpu)
    kernel_kv = float(2 * m.heads * m.d_head) if stack.kv_repeat and m.mla is None else kv_width
    fp8 = stack.fp8_recipe is not None
    peak16 = gpu.peak("fp16" if recipe.precision == "fp16" else "bf16") * 1e12
    if stack.fp8_recipe is not None:
        gemm_rate = gpu.peak("fp8") * 1e12 * fp8_gemm_efficiency(eff, stack.fp8_recipe)
        quant = eff.fp8_quantize_bytes.get(stack.fp8_recipe, FP8_QUANTIZE_BYTES[stack.fp8_recipe])
    else:
        gemm_rate, quant = peak16 * eff.gemm, 0.0
    hbm = gpu.hbm_bandwidth_tbs * 1e12 * eff.hbm
    flash_f, flash_b = _flash_kernel_share(stack, gpu)
    operand_bytes = 1 if fp8 else ACT
    attn_in_n = (attention_weights(m) - v * h) / h
    mla_up = float(mla_up_weights(m))
    kernels = (KERNELS_FUSED if stack.fused_kernels else KERNELS_UNFUSED) + (7 * KERNELS_PER_FP8_GEMM if fp8 else 0)
    if m.qk_norm != "none":  # a query norm and a key norm
        kernels += 2 * (KERNELS_PER_NORM_FUSED if stack.fused_kernels else KERNELS_PER_NORM_UNFUSED)
    return _Context(
        m=m,
        seq=seq,
        ln=comm.links(gpu, eff, gpus_per_node),
        eff=eff,
        recipe=recipe,
        stack=stack,
        split=recipe.split(PRESETS[impl.framework].split),
        h=h,
        heads=m.heads,
        kv_width=kv_width,
        kernel_kv_width=kernel_kv,
        q_width=qk,
        v_width=v,
        rope_width=rope_width,
        qk_norm_width=float(qk_norm_width(m)),
        causal_keys=causal_keys_per_query(m, seq),
        attn_in_n=attn_in_n,
        mla_up_share=mla_up / (attn_in_n * h),
        k_share=k_projection_weights(m) / (attn_in_n * h),
        gated=swiglu,
        ffn=m.ffn_hidden,
        act_bytes=6 if swiglu else 4,
        norms=m.norms_per_layer,
        dense_layers=m.dense_layers,
        moe_layers=m.moe_layers,
        vocab=m.vocab,
        tied_pp_sync=m.tied_embeddings,
        moe_experts=e.experts if e else 1,
        moe_top_k=e.top_k if e else 0,
        expert_ffn=e.expert_ffn if e else 0,
        shared_ffn=e.shared_experts * e.shared_ffn if e else 0,
        flash=impl.attention == "flash",
        dropout=impl.dropout > 0,
        gemm_rate=gemm_rate,
        balance=gemm_rate / hbm * operand_bytes / 2,
        align=ALIGN_BYTES // operand_bytes,
        unaligned_penalty=1.0 / eff.gemm_unaligned - 1.0,
        attn_rate=peak16 * eff.gemm,
        flash_rate=peak16 * eff.gemm * eff.flash_attention * flash_f,
        flash_backward=FLASH_BACKWARD * flash_f / flash_b,
        hbm=hbm,
        ew_hbm=hbm if stack.fused_kernels else hbm / UNFUSED_BYTES,
        quant_bytes=quant,
        launch_s=(eff.graph_launch_us if impl.cuda_graphs else eff.kernel_launch_us) * 1e-6,
        kernels_fwd=kernels,
        grad_bytes=4 if recipe.fp32_grad_accumulation else 2,
        param_bytes=1 if stack.fp8_param_gather else ACT,
        gathers_per_layer=param_tensors(m) if stack.framework == "deepspeed" else 1,
        opt_bytes=optimizer_step_bytes(recipe),
    )


def param_tensors(m: ModelSpec) -> int:
    """Parameter tensors of one layer as Megatron-style modules hold them (fused QKV, one tensor per
    weight, bias and norm): what DeepSpeed ZeRO-3 gathers one collective at a time
    (deepspeed/runtime/zero/partition_parameters.py, `_allgather_param` per parameter)."""
    norm = 2 if m.norm == "layernorm" else 1
    linears_attn, linears_mlp = 2, (3 if m.mlp == "swiglu" else 2)
    biases = {"none": 0, "qkv": 1, "attention": 2, "all": 2 + linears_mlp}[m.bias]
    qk_norms = 0 if m.qk_norm == "none" else 2 * norm
    return m.norms_per_layer * norm + qk_norms + linears_attn + linears_mlp + biases


# --------------------------------------------------------------------------------------------
# One layer
# --------------------------------------------------------------------------------------------


def _gemm(c: _Context, rate: float, mm: Any, n: Any, k: Any, sixteen_bit: bool = False) -> Any:
    """Seconds of one M×K·K×N GEMM: math at the large-GEMM rate plus its operand traffic, slower
    when a dimension breaks the 128-byte alignment tensor-core kernels are tiled for. `sixteen_bit`: a
    16-bit GEMM in an fp8 job (its operands twice as wide)."""
    a, balance = (ALIGN_BYTES // ACT, rate / c.hbm) if sixteen_bit else (c.align, c.balance)
    misaligned = 1.0 - (mm % a == 0) * (n % a == 0) * (k % a == 0)
    return 2.0 * mm * n * k / rate * (1.0 + balance * (1.0 / mm + 1.0 / n + 1.0 / k)) * (
        1.0 + c.unaligned_penalty * misaligned
    )


def _linear(c: _Context, rows: Any, n: Any, k: Any, weight_share: Any) -> tuple[Any, Any, Any]:
    """(GEMM seconds, forward and backward fp8-quantization seconds) of one linear layer's forward:
    the quantized input (rows×k) and weight (k×n, cast `weight_share` times per micro-batch) in forward,
    the output gradient (rows×n) in backward."""
    g = _gemm(c, c.gemm_rate, rows, n, k)
    q = c.quant_bytes / c.hbm
    return g, q * (rows * k + weight_share * n * k), q * rows * n


@dataclass(slots=True)
class _Layer:
    """One layer's forward on one GPU for one micro-batch, seconds (scalars or arrays)."""

    qkv: Any  # input projection GEMM (the all-gathered input's first consumer under SP)
    out: Any  # attention output projection GEMM
    up: Any  # MLP input GEMM(s): fc1, or gate + up; routed and shared experts for MoE
    down: Any  # MLP output GEMM(s)
    other: Any  # router GEMM
    ew: Any  # element-wise work
    norm_ew: Any  # the norms' share of it
    act_ew: Any  # the MLP activation's share of it
    quant_f: Any  # fp8 quantization of inputs and weights
    quant_b: Any  # fp8 quantization of output gradients (in backward)
    attn_f: Any  # core attention forward
    attn_b: Any  # core attention backward
    every_second_mm: Any  # GEMM seconds of every second matmul in the block's order (torchtitan SAC)
    shared: Any  # shared experts' GEMMs (part of up/down)

    @property
    def gemm(self) -> Any:
        return self.qkv + self.out + self.up + self.down + self.other

    @property
    def fwd(self) -> Any:
        return self.gemm + self.ew + self.quant_f + self.attn_f

    @property
    def bwd(self) -> Any:
        return 2.0 * self.gemm + BACKWARD_BYTES * self.ew + self.quant_b + self.attn_b

    def mix(self, other: _Layer, w: float) -> _Layer:
        """(1 − w) of this layer and w of `other`: the average layer of a stage with both kinds."""
        return _Layer(*(getattr(self, f) * (1 - w) + getattr(other, f) * w for f in self.__slots__))


def _layer(c: _Context, s: _Step, moe: bool) -> _Layer:
    """One layer, one micro-batch, one GPU, forward. `s.tok` tokens on this rank, TP `s.t` dividing
    head/FFN widths, `s.r` dividing hidden-width tensors (t with SP, else 1)."""
    h, t, r, tok = c.h, s.t, s.r, s.tok
    w = s.weight_casts
    qkv, qf, qb = _linear(c, tok, c.attn_in_n / t, h, w)
    out, of, ob = _linear(c, tok, h, c.v_width / t, w)
    hid = tok * h / r  # hidden-width elements on this rank
    drop = 1 if c.dropout else 0
    norm_bytes = hid * c.norms * 2 * ACT
    # norms (read + write), two bias-dropout-residual adds (two reads, one write, a mask), rotary, query/key norms
    ew = norm_bytes + hid * 2 * (3 * ACT + drop) + tok * (c.rope_width + c.qk_norm_width) / t * 2 * ACT
    if c.kernel_kv_width != c.kv_width:  # repeat_kv reads K and V and writes a copy per query head
        ew = ew + tok * (c.kv_width + c.kernel_kv_width) / t * ACT
    other = 0.0
    shared: Any = 0.0
    gate = 2 if c.gated else 1
    if moe:
        # routed token copies processed on this GPU (balanced routing): the TP group's tokens at 1/et of the
        # expert width; with expert_tp below tp the rank's own sequence shard's at more of it
        et = s.et
        routed = tok * c.moe_top_k * et / t
        local = c.moe_experts / s.ep  # experts on this GPU, each a GEMM of routed/local rows
        rows = routed / local
        other = _gemm(c, c.gemm_rate, tok / r, c.moe_experts, h)  # router
        u, uf, ub = _linear(c, rows, gate * c.expert_ffn / et, h, w)
        d, df, db = _linear(c, rows, h, c.expert_ffn / et, w)
        up, down, upf, upb, dnf, dnb = local * u, local * d, local * uf, local * ub, local * df, local * db
        act = routed * c.act_bytes * c.expert_ffn / et
        ew = ew + act + 4 * ACT * tok * c.moe_top_k * h / r  # permute + unpermute
        if c.shared_ffn:
            su, suf, sub = _linear(c, tok, gate * c.shared_ffn / t, h, w)
            sd, sdf, sdb = _linear(c, tok, h, c.shared_ffn / t, w)
            shared = su + sd
            up, down = up + su, down + sd
            upf, upb, dnf, dnb = upf + suf, upb + sub, dnf + sdf, dnb + sdb
            act = act + tok * c.act_bytes * c.shared_ffn / t
            ew = ew + tok * c.act_bytes * c.shared_ffn / t
    else:
        up, upf, upb = _linear(c, tok, gate * c.ffn / t, h, w)
        down, dnf, dnb = _linear(c, tok, h, c.ffn / t, w)
        act = tok * c.act_bytes * c.ffn / t
        ew = ew + act
    # torchtitan's selective "op" checkpoint recomputes every second matmul of the block, in the order
    # wq, wk, wv, wo, (w1, w3) or fc1, w2: wk, wo and w3 (SwiGLU) or w2 (GeLU) come out even
    every_second = qkv * c.k_share + out + (up / 2 if c.gated else down)
    # core attention: queries on this rank against all `seq` keys, heads split by TP
    if c.flash:
        attn_flops = 2.0 * tok * c.causal_keys * (c.q_width + c.v_width) / t
        attn_f = attn_flops / c.flash_rate
        attn_b = c.flash_backward * attn_f
    else:
        heads = c.heads / t
        d_qk, d_v = c.q_width / c.heads, c.v_width / c.heads
        batches = s.mbs * heads
        attn_f = batches * (_gemm(c, c.attn_rate, s.s_q, c.seq, d_qk) + _gemm(c, c.attn_rate, s.s_q, d_v, c.seq))
        scores = tok * c.seq * heads  # softmax (read + write) and dropout (read + write + mask)
        attn_f = attn_f + scores * (2 * ACT + (2 * ACT + 1) * drop) / c.ew_hbm
        attn_b = 2.0 * attn_f
    return _Layer(
        qkv=qkv, out=out, up=up, down=down, other=other, ew=ew / c.ew_hbm, norm_ew=norm_bytes / c.ew_hbm,
        act_ew=act / c.ew_hbm, quant_f=qf + of + upf + dnf, quant_b=qb + ob + upb + dnb, attn_f=attn_f,
        attn_b=attn_b, every_second_mm=every_second, shared=shared,
    )


# --------------------------------------------------------------------------------------------
# The layout: shapes, parameters and communicator placement
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Step:
    """The layout's shape as the terms need it (scalars or arrays)."""

    tp: Any
    pp: Any
    vpp: Any
    dp: Any
    cp: Any
    ep: Any
    zero: Any
    mbs: Any
    t: Any  # divides head and FFN widths
    r: Any  # divides hidden-width tensors: t with sequence parallelism, else 1
    sp: Any  # 1.0 with sequence parallelism
    s_q: Any  # queries per sequence on this rank
    tok: Any  # tokens per micro-batch on this rank
    micro: Any  # micro-batches per step per pipeline
    layers: Any  # layers of the slowest stage
    full: Any  # share of the stage's layers fully recomputed
    sel: Any  # 1.0 with selective recompute
    weight_casts: Any  # fp8 weight casts per micro-batch
    dp_shard: Any  # ZeRO-3/FSDP sharding group (HSDP), 0 = all of dp·cp
    et: Any  # expert tensor parallelism (tp unless the layout sets expert_tp)
    folded: Any  # 1.0 where expert_tp is set: Megatron-Core's expert rank order tp-ep-dp over tp·dp·cp
    offload: Any  # the layout's activation offload count (0: what the implementation states)


def _step(c: _Context, a: dict[str, Any]) -> _Step:
    tp, pp, dp, cp, mbs = a["tp"], a["pp"], a["dp"], a["cp"], a["micro_batch"]
    rc = a["recompute"]
    # the slowest stage: the most layers one rank holds under the framework's split (ceil(L/p) where refused)
    depth = c.dense_layers + c.moe_layers
    layers = a.get("stage_layers")  # given where several steps of the same shapes are built (step_time_floor)
    if layers is None:
        layers = max_stage_layers(depth, pp, a["vpp"], c.split)
        layers = np.where(layers > 0, layers, -(-depth // pp))
    # Megatron's block method reruns the first rnl layers of each of the rank's vpp model chunks; the uniform
    # method every layer (planner.model.flops.full_recompute_share, here for the slowest stage)
    rnl = a.get("recompute_num_layers", 0) * (c.recipe.recompute_method != "uniform")
    etp = a.get("expert_tp", 0)
    full_share = vmin(1.0, (a["vpp"] * rnl + (rnl == 0) * layers) / layers)
    micro = a["global_batch"] / (dp * mbs)
    s_q = c.seq / cp
    return _Step(
        tp=tp, pp=pp, vpp=a["vpp"], dp=dp, cp=cp, ep=a["ep"], zero=a["zero"], mbs=mbs, t=tp,
        r=1 + (a["sequence_parallel"] > 0) * (tp - 1), sp=(a["sequence_parallel"] > 0) * (tp > 1) * 1.0,
        s_q=s_q, tok=mbs * s_q, micro=micro, layers=layers, full=(rc == 2) * full_share, sel=(rc == 1) * 1.0,
        weight_casts=1.0 / micro if c.stack.fp8_weight_cache else 1.0, dp_shard=a.get("dp_shard", 0),
        et=etp + (etp == 0) * tp, folded=(etp > 0) * 1.0, offload=a.get("activation_offload_layers", 0),
    )


@dataclass(slots=True)
class _Params:
    """Parameters on one GPU of the slowest (last) stage, which also holds the output head."""

    layer: Any  # one layer's non-expert parameters
    dense: Any  # the stage's non-expert parameters, head included
    expert: Any
    head: Any
    vocab: Any  # vocabulary rows on this TP rank, padded as Megatron pads them


def _params(c: _Context, s: _Step) -> _Params:
    d_par, e_par = layer_params_on_rank(c.m, s.tp, s.ep, False, s.et)
    if c.moe_layers:
        moe_frac = c.moe_share
        dm, em = layer_params_on_rank(c.m, s.tp, s.ep, True, s.et)
        d_par = d_par * (1 - moe_frac) + dm * moe_frac
        e_par = em * moe_frac
    vocab = _padded_vocab(c, s.t)
    return _Params(layer=d_par, dense=s.layers * d_par + vocab * c.h, expert=s.layers * e_par, head=vocab * c.h,
                   vocab=vocab)


def _padded_vocab(c: _Context, t: Any) -> Any:
    return -(-c.vocab // (VOCAB_PAD * t)) * VOCAB_PAD  # per TP rank, padded as Megatron pads it


class _Groups:
    """Communicators in Megatron's rank order tp → cp → dp (ep inside it) → pp, placed on demand."""

    def __init__(self, c: _Context, s: _Step) -> None:
        self._ln, self._s = c.ln, s
        self._a2a = vmin(c.stack.cp_a2a_size, s.cp)
        self._n_dp = s.dp * s.cp
        self._shard_n = s.dp_shard + (s.dp_shard == 0) * self._n_dp

    @cached_property
    def tp(self) -> comm.Group:
        return comm.group(self._s.tp, 1, self._ln)

    @cached_property
    def cp(self) -> comm.Group:
        return comm.group(self._s.cp, self._s.tp, self._ln)

    @cached_property
    def cp_a2a(self) -> comm.Group:  # the hierarchical exchange's first level: neighbouring CP ranks
        return comm.group(self._a2a, self._s.tp, self._ln)

    @cached_property
    def cp_p2p(self) -> comm.Group:  # its second level: one rank of each first-level group
        return comm.group(self._s.cp / self._a2a, self._s.tp * self._a2a, self._ln)

    @cached_property
    def dp(self) -> comm.Group:  # dense gradients and optimizer shards span DP × CP
        return comm.group(self._n_dp, self._s.tp, self._ln)

    @cached_property
    def pp(self) -> comm.Group:
        return comm.group(self._s.pp, self._s.tp * self._n_dp, self._ln)

    @cached_property
    def ep(self) -> comm.Group:  # inside DP after TP·CP; folded (expert_tp set): right after the expert TP ranks
        s = self._s
        return comm.group(s.ep, s.et * (1 + (1 - s.folded) * (s.cp - 1)), self._ln)

    @cached_property
    def edp(self) -> comm.Group:  # expert weights: data parallel over tp·dp·cp/(ep·expert_tp)
        s = self._s
        return comm.group(self._n_dp * s.tp / (s.ep * s.et), s.et * s.ep, self._ln)

    @property
    def hsdp(self) -> bool:
        """Some layout shards over less than all of dp·cp (HSDP)."""
        return not (_scalar(self._s.dp_shard) and self._s.dp_shard == 0)

    @cached_property
    def shard(self) -> comm.Group:  # ZeRO-3/FSDP sharding group (HSDP: inside)
        return comm.group(self._shard_n, self._s.tp, self._ln) if self.hsdp else self.dp

    @cached_property
    def replica(self) -> comm.Group:  # HSDP: the shard's replicas
        return comm.group(self._n_dp / self._shard_n, self._s.tp * self._shard_n, self._ln)


# --------------------------------------------------------------------------------------------
# The terms
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Compute:
    """A micro-batch on the slowest stage, seconds."""

    layer: _Layer  # the stage's average layer
    fwd: Any  # forward of the stage's layers and the head
    bwd: Any  # backward, with the recompute it needs
    micro: Any  # everything the compute stream does for one micro-batch


def _selective(c: _Context, lay: _Layer) -> Any:
    """Forward work selective recompute repeats in backward, by the stack's recompute modules
    (megatron/core/transformer/transformer_config.py recompute_modules; torchtitan's SAC policy)."""
    mods = c.stack.recompute_modules
    work: Any = 0.0
    if "core_attn" in mods:
        work = work + lay.attn_f  # with flash kernels too: the attention output is not kept
    if "mlp" in mods:
        work = work + lay.up + lay.down - lay.shared + lay.act_ew
    if "moe" in mods:
        work = work + lay.up + lay.down + lay.other + lay.act_ew
    if "shared_experts" in mods:
        work = work + lay.shared
    if "moe_act" in mods:
        work = work + lay.act_ew
    if "layernorm" in mods:
        work = work + lay.norm_ew
    if "mla_up_proj" in mods:
        work = work + lay.qkv * c.mla_up_share
    if EVERY_SECOND_MATMUL in mods:
        work = work + lay.every_second_mm + lay.ew
    return work


def _compute(c: _Context, s: _Step, p: _Params) -> _Compute:
    lay = _layer(c, s, False)
    if c.moe_layers:
        lay = lay.mix(_layer(c, s, True), c.moe_share)
    recompute = s.full * lay.fwd + (0.0 if _scalar(s.sel) and not s.sel else s.sel * _selective(c, lay))
    # a layer runs at the CPU's pace when its kernels take longer to issue than to execute
    launch_f = c.kernels_fwd * c.launch_s
    fwd_layer = vmax(lay.fwd, launch_f)
    bwd_layer = vmax(lay.bwd + recompute, BACKWARD_KERNELS * launch_f + (s.full > 0) * launch_f)
    # the output layer stays 16-bit in fp8 recipes: Megatron's is a tensor_parallel.ColumnParallelLinear, not a TE
    # module (megatron/core/models/gpt/gpt_model.py); torchtitan's float8 skips it (Float8 filter_fqns ["output"])
    head_f = _gemm(c, c.attn_rate, s.tok, p.vocab, c.h, sixteen_bit=True)
    head_ew = s.tok * p.vocab * (CROSS_ENTROPY_BYTES[c.stack.cross_entropy] / 2) / c.hbm  # each of fwd and bwd
    fwd = s.layers * fwd_layer + head_f + head_ew
    bwd = s.layers * bwd_layer + 2 * head_f + head_ew
    # the wgrad GEMMs accumulate into the gradient buffer: read + write of every local gradient
    accumulate = (p.dense + p.expert) * 2 * c.grad_bytes / c.hbm
    return _Compute(layer=lay, fwd=fwd, bwd=bwd, micro=fwd + bwd + accumulate + _offload(c, s, fwd, bwd))


def _offload(c: _Context, s: _Step, fwd: Any, bwd: Any) -> Any:
    """Activation offload: the saved activations go to host memory during forward and come back during
    backward over the host link; what the compute of that pass does not hide is exposed. Transformer Engine
    spreads the N offloaded layers' copies evenly over the L layers, each under L/N layers' compute
    (transformer_engine/pytorch/cpu_offload.py AsyncDoubleBufferGroupOffloadHandler layer_window_map), so the
    pass as a whole is the window."""
    stated = offloaded_share(c.stack.activation_offload, c.stack.activation_offload_layers, c.m.layers)
    share = layout_offloaded_share(stated, s.offload, c.m.layers)
    if not np.any(share):
        return 0.0
    x = ActivationShape(s=s.s_q, b=s.mbs, t=s.t, r=s.r, dropout=c.dropout)
    impl = Implementation(attention="flash" if c.flash else "eager", fused_kernels=c.ew_hbm == c.hbm)
    per_layer = layer_activation_bytes(c.m, impl, x, "none", False)
    if c.moe_layers:
        w = c.moe_share
        per_layer = per_layer * (1 - w) + layer_activation_bytes(c.m, impl, x, "none", True) * w
    move = share * s.layers * per_layer / (c.eff.host_link_gbs * 1e9)
    return vmax(0.0, move - fwd) + vmax(0.0, move - bwd)


def _scalar(x: Any) -> bool:
    return not isinstance(x, np.ndarray)


def _hidden(c: _Context, comm_s: Any, window: Any) -> Any:
    """Exposed seconds of a collective overlapped with `window` seconds of compute: what does not fit,
    plus the slowdown it inflicts on the compute it shares the GPU with."""
    return vmax(0.0, comm_s - window) + c.eff.comm_interference * vmin(comm_s, window)


def _hidden_floor(c: _Context, comm_s: Any) -> Any:
    """The least `_hidden` charges a collective over any window: comm − (1 − i)·w below the collective's
    length, i·comm beyond it (i = comm_interference ≤ 1), so never less than i·comm."""
    return c.eff.comm_interference * comm_s


def _tp(c: _Context, s: _Step, g: _Groups, cmp: _Compute, floor: bool = False) -> Any:
    """Tensor-parallel collectives of one micro-batch: 4 per layer (2 forward, 2 backward), 2 more per fully
    recomputed layer and 1 per layer whose MLP block selective recompute reruns; SP's reduce-scatter + all-gather
    move an all-reduce's bytes. With TE's userbuffers (`tp_overlap`, SP only) each collective is pipelined with
    the GEMM next to it (transformer_engine/pytorch/module/base.py: qkv/fc1 forward and proj/fc2 dgrad
    ring-exchange all-gathers in TP chunks, proj/fc2 forward reduce-scatters in 4 chunks, the wgrad input
    all-gathers and dgrad reduce-scatters in bulk behind qkv/fc1's other backward GEMM); the first or last chunk
    stays exposed.
    `floor`: the chunks' exposed tails over their GEMMs dropped and the smaller of the two paths, a lower
    bound over sequence parallelism on or off (u = tp_overlap·SP mixes them convexly)."""
    lay = cmp.layer
    act = s.tok * c.h
    # an MoE layer whose experts are not split over TP (expert_tp < tp) has no TP collectives around them:
    # the token dispatcher moves the sequence-parallel input itself (half a layer's TP traffic)
    layers = s.layers * (1 - 0.5 * c.moe_share * (s.et < s.tp))
    # each all-reduce's worth is an all-gather and a reduce-scatter under SP; fp8 stacks gather the GEMM inputs
    # and output gradients already quantized (TE base.py grad_output_preprocess and layernorm_linear.py gather
    # fp8; torchao float8_tensor_parallel.py casts before redistribute), the reduce-scatters stay 16-bit
    ar = comm.all_reduce(act * ACT, g.tp)
    ag = comm.all_gather(act * (1 if c.stack.fp8_recipe else ACT), g.tp)
    fp8_gather_saving = comm.all_gather(act * ACT, g.tp) - ag
    plain = (4 + 2 * s.full) * (ar - s.sp * fp8_gather_saving)
    # torchtitan's op-level checkpoint saves reduce-scatter outputs but no all-gather or all-reduce
    # (activation_checkpoint.py _save_list): its backward replay gathers the attention and MLP inputs again
    # under SP, or repeats the two all-reduces without it
    op_rc = s.sel * (EVERY_SECOND_MATMUL in c.stack.recompute_modules)
    plain = plain + op_rc * 2 * (s.sp * ag + (1 - s.sp) * ar)
    # Megatron's selective recompute of the MLP block ("mlp"; "moe" where the experts split like TP) reruns its
    # forward with the collectives around it: one all-reduce's worth per such layer (transformer_layer.py, mlp.py)
    mods = c.stack.recompute_modules
    mlp_rc = s.sel * ((1 - c.moe_share) * ("mlp" in mods) + c.moe_share * ("moe" in mods) * (s.et >= s.tp))
    mlp_plain = mlp_rc * (ar - s.sp * fp8_gather_saving)
    if not c.eff.tp_overlap:
        return layers * plain + s.layers * mlp_plain
    rs = comm.reduce_scatter(act * ACT, g.tp)
    share = c.eff.tp_overlap_sm_share

    def tail(x: Any, gemm: Any) -> Any:  # what the GEMM beside a chunked collective does not cover
        return 0.0 if floor else vmax(0.0, x - gemm)

    def ring(x: Any, gemm: Any) -> Any:
        return x / s.tp + tail(x * (1 - 1 / s.tp), gemm)

    def pipelined(x: Any, gemm: Any) -> Any:
        return x / UB_PIPELINE_SPLITS + tail(x * (1 - 1 / UB_PIPELINE_SPLITS), gemm) + share * vmin(x, gemm)

    def bulk(x: Any, gemm: Any) -> Any:
        return tail(x, gemm) + share * vmin(x, gemm)

    fwd = ring(ag, lay.qkv) + pipelined(rs, lay.out) + ring(ag, lay.up) + pipelined(rs, lay.down)
    bwd = (ring(ag, lay.out) + ring(ag, lay.down) + bulk(ag, lay.qkv) + bulk(ag, lay.up) + bulk(rs, lay.qkv)
           + bulk(rs, lay.up))
    userbuffers = fwd * (1 + s.full) + bwd + op_rc * (ring(ag, lay.qkv) + ring(ag, lay.up))
    mlp_userbuffers = mlp_rc * (ring(ag, lay.up) + pipelined(rs, lay.down))
    if floor:
        return layers * vmin(plain, userbuffers) + s.layers * vmin(mlp_plain, mlp_userbuffers)
    u = c.eff.tp_overlap * s.sp
    return layers * ((1 - u) * plain + u * userbuffers) + s.layers * ((1 - u) * mlp_plain + u * mlp_userbuffers)


def _cp(c: _Context, s: _Step, g: _Groups, cmp: _Compute, floor: bool = False) -> Any:
    """Context parallel, per the stack's K/V exchange (`cp_exchange`). Transformer Engine's ring passes each K/V
    chunk to the next rank under the attention of the current one (forward and recompute), K/V and dK/dV in
    backward. PyTorch's context_parallel (torch/distributed/tensor/experimental/_attention.py, torchtitan) runs
    the kernel once per rank's chunk, the load-balanced causal work split evenly over the cp calls: the
    all-gather rotater fetches every rank's K/V in one collective behind the first call of each forward and
    backward, the all-to-all one a chunk behind each call; dK/dV go around the ring in fp32, each hop behind a
    backward call, the last one after them. Transformer Engine's all-to-all (`ulysses`) moves Q, K and V to head
    shards before attention and the output back, exposed; its all-gather (`te_allgather`) gathers every rank's K/V
    before the attention of each pass and reduce-scatters dK/dV after the backward, none of it under compute; its
    a2a+p2p (`hierarchical`) runs the all-to-all within groups of `cp_a2a_size` ranks and the ring across them.
    Every exchange runs again where recompute reruns the core attention: full recompute, or selective with
    core_attn among what it reruns (Megatron's default; torchtitan's op policy where SDPA's output is not saved)."""
    if _scalar(s.cp) and s.cp == 1:
        return 0.0
    lay = cmp.layer
    kv = s.tok * c.kernel_kv_width / s.t * ACT  # this rank's K and V, 16-bit
    # attention passes before the backward: the forward, and the recompute's
    fwd = 1 + s.full + s.sel * ("core_attn" in c.stack.recompute_modules)

    def p2p_ring(hops: Any, group: comm.Group) -> Any:
        """Transformer Engine's p2p ring: K/V in every pass and dK/dV besides in backward, each hop under the
        attention of the chunk before it."""
        total = hops * comm.p2p(kv, group) * (fwd + 2)
        if floor:
            return s.layers * _hidden_floor(c, total)
        return s.layers * _hidden(c, total, c.eff.cp_overlap * (lay.attn_f * fwd + lay.attn_b))

    if c.stack.cp_exchange in ("ulysses", "hierarchical"):
        # Q, K, V to head shards and the output back (flash_attn_a2a_communicate); backward: dO, then dQ, dK, dV.
        # Nothing computes while they move: the attention needs all of them. The hierarchical exchange does so in
        # groups of cp_a2a_size neighbouring CP ranks, then passes the head-sharded K/V (as many bytes as this
        # rank's own) around the ring of the groups under the attention (AttnFuncWithCPAndKVP2P, cp_size_a2a > 1)
        a2a = g.cp if c.stack.cp_exchange == "ulysses" else g.cp_a2a
        move = (s.cp > 1) * s.layers * (fwd + 1) * comm.all_to_all(
            s.tok * (c.q_width + c.v_width) / s.t * ACT + kv, a2a)
        if c.stack.cp_exchange == "ulysses":
            return move
        rounds = s.cp / c.stack.cp_a2a_size
        return move + p2p_ring((rounds > 1) * (rounds - 1), g.cp_p2p)
    if c.stack.cp_exchange == "te_allgather":
        # AttnFuncWithCPAndKVAllGather: "KV all-gather between CP ranks is exposed" (forward, recompute and
        # backward each gather again); the 16-bit dK/dV of the whole sequence are reduce-scattered after backward
        gathered = s.cp * kv
        passes = (fwd + 1) * (comm.all_gather(gathered, g.cp) + TE_ALLGATHER_PASS_BYTES * gathered / c.hbm)
        grads = comm.reduce_scatter(gathered, g.cp) + TE_ALLGATHER_GRAD_BYTES * gathered / c.hbm
        return (s.cp > 1) * s.layers * (passes + grads)
    if c.stack.cp_exchange == "ring":
        return p2p_ring((s.cp > 1) * (s.cp - 1), g.cp)
    calls_f, calls_b = c.eff.cp_overlap * lay.attn_f / s.cp, c.eff.cp_overlap * lay.attn_b / s.cp
    if c.stack.cp_exchange == "allgather":
        fetch, fetches = comm.all_gather(s.cp * kv, g.cp), 1.0
    else:
        fetch, fetches = comm.p2p(kv, g.cp), s.cp - 1
    dkv = comm.p2p(2 * kv, g.cp)  # fp32 dK and dV
    if floor:
        hidden = _hidden_floor(c, fetches * fetch * (fwd + 1) + (s.cp - 1) * dkv)
    else:
        hidden = fetches * (fwd * _hidden(c, fetch, calls_f) + _hidden(c, fetch, calls_b)) \
            + (s.cp - 1) * _hidden(c, dkv, calls_b)
    return (s.cp > 1) * s.layers * (hidden + dkv)


def _ep(c: _Context, s: _Step, g: _Groups, cmp: _Compute, floor: bool = False) -> Any:
    """Expert parallel: dispatch and combine, forward and backward (and recompute), by the token dispatcher
    (megatron/core/transformer/moe/token_dispatcher.py): all-to-all of one copy per routed expert; all-gather
    of the EP group's tokens and reduce-scatter of their outputs; or flex (DeepEP / HybridEP), which sends a
    token over the network once per node holding one of its experts and forwards the copies over NVLink.
    With `ep_overlap` that share of it runs under another micro-batch's compute (`floor`: at its least)."""
    if not c.moe_layers:
        return 0.0
    tokens = s.tok / s.r
    copies = tokens * c.moe_top_k * c.h * ACT
    if c.stack.moe_token_dispatcher == "allgather":
        move = comm.all_gather(tokens * c.h * ACT * g.ep.n, g.ep)
    elif c.stack.moe_token_dispatcher == "flex":
        move = comm.node_dedup_dispatch(copies, tokens * c.h * ACT * remote_nodes(c.moe_experts, c.moe_top_k,
                                                                                   g.ep.nodes), g.ep)
    else:
        move = comm.all_to_all(copies, g.ep)
    # dispatch and combine in forward and backward, and again where recompute reruns the MoE layer: full, or
    # selective with "moe" (megatron/core/transformer/moe/moe_layer.py checkpoints router, dispatch, experts, combine)
    reruns = s.full + s.sel * ("moe" in c.stack.recompute_modules)
    total = s.layers * c.moe_share * (4 + 2 * reruns) * move
    o = c.eff.ep_overlap
    if not o:
        return total
    hidden = _hidden_floor(c, total) if floor else _hidden(c, total, cmp.fwd + cmp.bwd)
    return (1 - o) * total + o * hidden


def remote_nodes(experts: int, top_k: int, nodes: Any) -> Any:
    """Expected number of other nodes holding at least one of a token's top-k experts, experts spread evenly
    over `nodes` and routing balanced (hypergeometric: a node is missed with probability C(E − E/n, k)/C(E, k))."""
    per_node = experts / nodes
    missed: Any = 1.0
    for i in range(top_k):
        missed = missed * vmax(0.0, (experts - per_node - i) / (experts - i))
    return (nodes - 1) * (1.0 - missed)


def _pp(c: _Context, s: _Step, g: _Groups) -> Any:
    """Pipeline: activations (scattered over TP, or SP-sharded) to the next stage per chunk, fwd and bwd."""
    if _scalar(s.pp) and s.pp == 1:
        return 0.0
    return (s.pp > 1) * 2 * s.vpp * comm.p2p(s.tok * c.h * ACT / s.t, g.pp)


@dataclass(slots=True)
class _Sharded:
    """ZeRO-3 / FSDP traffic: exposed seconds per micro-batch and per step."""

    micro: Any
    step: Any


def _sharded(c: _Context, s: _Step, g: _Groups, p: _Params, cmp: _Compute) -> _Sharded:
    """Gather the stage's parameters for forward (and again for backward when resharded after forward),
    reduce-scatter the gradients (HSDP: then all-reduce the shard over the replicas). Forward gathers run a
    block ahead; a backward gather issued before the block's backward hides behind it ("pre": FSDP2,
    DeepSpeed), one issued after the previous block's backward does not ("post": FSDP1 BACKWARD_POST).
    Under pipelining with FSDP2 unresharded, gathers and reduce-scatters happen once per step (the
    schedule's no-sync micro-batches); otherwise every micro-batch. The first gather and the last
    reduce-scatter of a pass are exposed."""
    st = c.stack
    kept = _fsdp_kept(c, s)  # FSDP's ZeRO-1/2: gathered parameters kept from forward to backward
    if _scalar(s.zero) and s.zero != 3 and not kept:
        return _Sharded(micro=0.0, step=0.0)
    # one collective per block (FSDP's flat parameter) or per parameter tensor (DeepSpeed), each paying
    # the ring's latency; the bandwidth term is the same
    extra = (s.layers * c.gathers_per_layer) * (g.shard.base_lat + g.shard.step_lat)

    def traffic(par: Any, shard: comm.Group, replica: comm.Group | None) -> tuple[Any, Any]:
        ag = comm.all_gather(par * c.param_bytes, shard) + extra
        rs = comm.reduce_scatter(par * c.grad_bytes, shard) + extra
        if replica is not None:
            rs = rs + comm.all_reduce(par / shard.n * c.grad_bytes, replica)
        return ag, rs

    ag, rs = traffic(p.dense, g.shard, g.replica if g.hsdp else None)
    if c.moe_layers:
        e_ag, e_rs = traffic(p.expert, g.edp, None)
        ag, rs = ag + e_ag, rs + e_rs
    first = comm.all_gather(p.layer * c.param_bytes, g.shard)
    last = comm.reduce_scatter(p.layer * c.grad_bytes, g.shard)
    pipelined = (s.pp > 1) * 1.0
    if st.reshard_after_forward is None:  # torchtitan keeps gathered parameters under PP, FSDP1 reshards
        reshard: Any = 1.0 - pipelined * (st.framework == "torchtitan")
    else:
        reshard = float(st.reshard_after_forward)
    reshard = reshard * (1.0 - kept)
    per_micro_ag = 1.0 - pipelined * (1 - reshard)  # with PP and no reshard: once per step
    # a prefetch shallower than a block hides only that share of the block's gather
    depth = 1.0 if st.prefetch_params is None else vmin(1.0, st.prefetch_params / p.layer)
    hide_f, hide_b = c.eff.zero3_overlap * depth * cmp.fwd, c.eff.zero3_overlap * depth * cmp.bwd
    per_micro_rs = 1.0 - pipelined if st.reduce_every_microbatch else 0.0
    ag_b = reshard * ag
    rs_m = per_micro_rs * rs
    fwd = per_micro_ag * (_hidden(c, ag, hide_f) + first)
    if st.zero3_prefetch == "post":
        bwd = ag_b + _hidden(c, rs_m, hide_b)
    else:
        bwd = _hidden(c, ag_b + rs_m, hide_b)
    bwd = bwd + per_micro_rs * last
    once_ag = (1 - per_micro_ag) * (_hidden(c, ag, hide_f) + first)
    once_rs = (1 - per_micro_rs) * (_hidden(c, rs, hide_b) + last)
    z3 = (s.zero == 3) * 1.0 + kept
    return _Sharded(micro=z3 * (fwd + bwd), step=z3 * (once_ag + once_rs))


def _fsdp_kept(c: _Context, s: _Step) -> Any:
    """1 where a layout is FSDP keeping its gathered parameters from forward to backward because it asked for
    ZeRO-1 or ZeRO-2, which FSDP has no other form of (Stack.fsdp); timed by `_sharded`, not `_dp`."""
    if not c.stack.fsdp:
        return 0.0
    return ((s.zero == 1) + (s.zero == 2)) * 1.0


def _bubble(s: _Step, t_micro: Any) -> Any:
    """1F1B fills and drains the pipeline: (p − 1)/v micro-batch slots (planner.model.pipeline.bubble_slots)."""
    return bubble_slots(s.pp, s.vpp) * t_micro


def _dp(c: _Context, s: _Step, g: _Groups, p: _Params, cmp: _Compute) -> Any:
    """ZeRO-0/1/2 data parallel: gradients reduced bucket by bucket under the last micro-batch's backward,
    the last bucket exposed (Megatron-Core's bucket: max(dp_bucket_params, dp_bucket_params_per_rank ×
    DP)), or after it (DeepSpeed's pipeline engine, and its engine without ZeRO); ZeRO-1/2 re-gather updated
    parameters under the next forward, or inside the optimizer step (`param_gather_overlap`). ZeRO-2 keeps only
    a gradient shard, so it reduces every micro-batch."""
    zero = s.zero
    z12 = (zero == 1) * 1.0 + (zero == 2)
    eff = c.eff
    after = vmax((s.pp > 1) * c.stack.grad_reduce_after_pipeline,
                 (zero == 0) * c.stack.replicated_reduce_after_backward)
    grad_window = eff.dp_overlap * cmp.bwd * (1.0 - after)
    gather_share = eff.param_gather_overlap if eff.param_gather_overlap is not None \
        else float(c.stack.overlap_param_gather)

    def reduction(par: Any, grp: comm.Group) -> Any:
        bucket = vmin(vmax(eff.dp_bucket_params, eff.dp_bucket_params_per_rank * grp.n), par)

        def reduce(n: Any) -> Any:
            if _scalar(z12):  # one layout: only the collective it runs
                return (comm.reduce_scatter if z12 else comm.all_reduce)(n * c.grad_bytes, grp)
            return (1 - z12) * comm.all_reduce(n * c.grad_bytes, grp) + z12 * comm.reduce_scatter(n * c.grad_bytes,
                                                                                                   grp)

        grads = vmax(reduce(bucket), _hidden(c, reduce(par), grad_window))
        grads = grads * (1 + (zero == 2) * (s.micro - 1))
        if _scalar(z12) and not z12:
            return grads
        gather = comm.all_gather(par * c.param_bytes, grp)
        params = z12 * vmax(comm.all_gather(bucket * c.param_bytes, grp), _hidden(c, gather, gather_share * cmp.fwd))
        return grads + params

    out = reduction(p.dense, g.dp)
    if c.moe_layers:
        out = out + reduction(p.expert, g.edp)
    return (zero != 3) * (1.0 - _fsdp_kept(c, s)) * out


def _embedding_sync(c: _Context, s: _Step, p: _Params) -> Any:
    """Tied embeddings split over the first and last stage all-reduce the shared matrix's gradient."""
    if not c.tied_pp_sync or (_scalar(s.pp) and s.pp == 1):
        return 0.0
    emb_g = comm.group(2, s.tp * s.cp * s.dp * vmax(1, s.pp - 1), c.ln)
    return (s.pp > 1) * comm.all_reduce(p.head * c.grad_bytes, emb_g)


def _optimizer(c: _Context, s: _Step, p: _Params) -> Any:
    """The optimizer steps the local shard (ZeRO ≥ 1) or every local parameter, and zeroes the grads."""
    shard = 1 + (s.zero >= 1) * (s.dp * s.cp - 1)
    local = p.dense / shard + p.expert / (1 + (s.zero >= 1) * (s.dp * s.cp * s.tp / (s.ep * s.et) - 1))
    return (local * c.opt_bytes + (p.dense + p.expert) * c.grad_bytes) / c.hbm


def _components(c: _Context, a: dict[str, Any]) -> dict[str, Any]:
    """Step time and its breakdown (seconds) for scalars or arrays of layout fields."""
    s = _step(c, a)
    p = _params(c, s)
    g = _Groups(c, s)
    cmp = _compute(c, s, p)
    tp = _tp(c, s, g, cmp)
    cp = _cp(c, s, g, cmp)
    ep = _ep(c, s, g, cmp)
    pp = _pp(c, s, g)
    sharded = _sharded(c, s, g, p, cmp)
    t_micro = cmp.micro + tp + cp + ep + pp + sharded.micro
    out = {
        "compute": s.micro * cmp.micro,
        "tp_comm": s.micro * tp,
        "pp_comm": s.micro * pp + _embedding_sync(c, s, p),
        "dp_comm": s.micro * sharded.micro + sharded.step + _dp(c, s, g, p, cmp),
        "cp_comm": s.micro * cp,
        "ep_comm": s.micro * ep,
        "bubble": _bubble(s, t_micro),
        "optimizer": _optimizer(c, s, p),
    }
    out["step_seconds"] = sum(out[k] for k in BREAKDOWN_KEYS)
    return out



# --------------------------------------------------------------------------------------------
# A floor under the step time, for the search's pruning
# --------------------------------------------------------------------------------------------


def _relaxed(c: _Context, aligned: bool) -> _Context:
    """The context the floor is computed in: activation offload moves nothing and, across micro-batch sizes
    (`aligned`), no GEMM pays the alignment penalty (whether the token count is aligned depends on the size).
    Both drop a term ≥ 0, and what is left of the compute is, per step, non-increasing in the micro-batch
    size (fewer micro-batches of the same tokens: the GEMMs' fixed traffic, the kernel launches and the
    gradient accumulation are paid fewer times)."""
    return replace(c, unaligned_penalty=0.0 if aligned else c.unaligned_penalty,
                   stack=replace(c.stack, activation_offload=False))


def _micro_floor(c: _Context, s: _Step, g: _Groups, cmp: _Compute) -> Any:
    """At most the seconds of one micro-batch on the slowest stage (`t_micro` of `_components`) at the same
    micro-batch size, for any recompute mode, sequence-parallel choice and ZeRO stage: compute without
    recompute, TP and CP at their floors, EP and PP as they are, ZeRO-3 traffic dropped (`s` is built
    without recompute and with SP wherever TP > 1; `cmp` its compute)."""
    return (cmp.micro + _tp(c, s, g, cmp, floor=True) + _cp(c, s, g, cmp, floor=True)
            + _ep(c, s, g, cmp, floor=True) + _pp(c, s, g))


def step_time_floor(
    m: ModelSpec,
    gpu: GpuSku,
    seq: int,
    arrays: dict[str, Any],
    *,
    impl: Implementation | None = None,
    efficiency: Efficiency | None = None,
    gpus_per_node: int | None = None,
    recipe: Recipe | None = None,
) -> np.ndarray:
    """A lower bound of `step_time_table`'s step seconds over a set of layouts that share tp, pp, vpp, dp, cp,
    ep and expert_tp (arrays of those, and global_batch), whatever their micro-batch size within [micro_batch_min,
    micro_batch_max], ZeRO stage within [zero_min, zero_max], recompute mode and sequence parallelism:

        floor = m_hi · t(b_hi) + (p − 1)/v · t(b_lo) + the least data-parallel term + optimizer + embedding sync

    with t the `_micro_floor` in the `_relaxed` context and m_hi the micro-batches per step at the largest
    micro-batch size b_hi. Per step every term of t is non-increasing in the micro-batch size (the same
    tokens in fewer, larger pieces; a collective's latency paid fewer times), so b_hi bounds the steady state
    of every layout in the set; per micro-batch every term grows with it, so the smallest, b_lo, bounds the
    bubble. Data-parallel traffic is exposed the least behind the longest forward and backward any layout of
    the set runs (`_hidden` only falls as its window grows): where the set has one micro-batch size, those
    without SP and with the most recompute, and activation offload likewise; across sizes, any. The search
    prunes whole sets whose floor already loses (planner.search.pruning); a property test holds it under every
    row of real grids."""
    base = _context(m, gpu, seq, impl or _DEFAULT_IMPL, efficiency or gpu.efficiency, gpus_per_node or gpu.node_size,
                    recipe or _DEFAULT_RECIPE)
    a = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    one_size = bool((a["micro_batch_min"] == a["micro_batch_max"]).all())
    c = _relaxed(base, aligned=not one_size)
    tp, z_lo, z_hi = a["tp"], a["zero_min"], a["zero_max"]
    depth = c.dense_layers + c.moe_layers
    layers = max_stage_layers(depth, a["pp"], a["vpp"], c.split)  # the same for every step below
    free = {"recompute": np.zeros_like(tp), "sequence_parallel": (tp > 1) * 1.0, "zero": z_hi,
            "stage_layers": np.where(layers > 0, layers, -(-depth // a["pp"]))}
    hi = _step(c, {**a, **free, "micro_batch": a["micro_batch_max"]})
    lo = _step(c, {**a, **free, "micro_batch": a["micro_batch_min"]})
    g, p = _Groups(c, hi), _params(c, hi)
    cmp = _compute(c, hi, p)
    steady = hi.micro * _micro_floor(c, hi, g, cmp)
    fill = _bubble(lo, _micro_floor(c, lo, _Groups(c, lo), _compute(c, lo, _params(c, lo))))
    # the longest passes of the set: at one micro-batch size, the most recompute without SP; across sizes,
    # unbounded (the exposure floors at comm_interference × the traffic)
    def longest(sp: float) -> _Compute:
        runs = [_compute(c, _step(c, {**a, **free, "micro_batch": a["micro_batch_max"],
                                      "recompute": np.full_like(tp, rc), "sequence_parallel": np.full_like(tp, sp)}), p)
                for rc in (1.0, 2.0)]
        return _Compute(layer=runs[0].layer, fwd=vmax(runs[0].fwd, runs[1].fwd), bwd=vmax(runs[0].bwd, runs[1].bwd),
                        micro=0.0)

    window = longest(0.0) if one_size else replace(cmp, fwd=UNBOUNDED_S, bwd=UNBOUNDED_S)
    # data-parallel traffic: the least of the ZeRO stages the set holds (ZeRO-2 reduces at least as ZeRO-1)
    replicated = _dp(c, replace(hi, zero=0.0), g, p, window)
    if c.stack.fsdp:  # FSDP's ZeRO-1/2: the same traffic, through `_sharded`
        kept = _sharded(c, replace(hi, zero=2.0), g, p, window)
        sharded = hi.micro * kept.micro + kept.step
    else:
        sharded = _dp(c, replace(hi, zero=1.0), g, p, window)
    z3 = _sharded(c, replace(hi, zero=3.0), g, p, window)
    dp = np.minimum(np.minimum(np.where(z_lo == 0, replicated, np.inf),
                               np.where((z_lo <= 2) & (z_hi >= 1), sharded, np.inf)),
                    np.where(z_hi == 3, hi.micro * z3.micro + z3.step, np.inf))
    # the optimizer steps the smallest shard at the highest stage (ZeRO ≥ 1 shards over dp·cp)
    out = steady + fill + dp + _optimizer(c, hi, p) + _embedding_sync(c, hi, p)
    if base.stack.activation_offload and one_size:
        # the offload traffic the longest passes leave exposed, the lesser over SP (across micro-batch sizes
        # none is kept: it is larger with larger ones)
        exposed = [_offload(base, _step(base, {**a, **free, "micro_batch": a["micro_batch_max"],
                                                "sequence_parallel": np.full_like(tp, sp)}), w.fwd, w.bwd)
                   for sp, w in ((0.0, window), (1.0, longest(1.0)))]
        out = out + hi.micro * vmin(exposed[0], exposed[1])
    return np.broadcast_to(np.asarray(out, dtype=np.float64), tp.shape).copy()


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def step_time_table(
    m: ModelSpec,
    gpu: GpuSku,
    seq: int,
    arrays: dict[str, Any],
    *,
    impl: Implementation | None = None,
    efficiency: Efficiency | None = None,
    gpus_per_node: int | None = None,
    recipe: Recipe | None = None,
) -> dict[str, np.ndarray]:
    """Step seconds and the breakdown columns for numpy arrays of layout fields: tp, pp, vpp, dp, cp,
    ep, zero, recompute (0 none, 1 selective, 2 full), sequence_parallel (0/1), micro_batch and
    global_batch, optionally recompute_num_layers and dp_shard (0: not set). The same formulas
    `training_time` evaluates for one layout."""
    c = _context(m, gpu, seq, impl or _DEFAULT_IMPL, efficiency or gpu.efficiency,
                 gpus_per_node or gpu.node_size, recipe or _DEFAULT_RECIPE)
    cols = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    n = len(cols["tp"])
    out = _components(c, cols)
    return {k: v if isinstance(v, np.ndarray) and v.shape == (n,) else np.full(n, v, dtype=np.float64)
            for k, v in out.items()}


def training_time(
    m: ModelSpec,
    layout: Layout,
    gpu: GpuSku,
    seq: int,
    tokens: float,
    *,
    impl: Implementation | None = None,
    efficiency: Efficiency | None = None,
    gpus_per_node: int | None = None,
) -> TimeEstimate:
    """Detailed time model of one layout (see the module docstring); `efficiency` defaults to the SKU's."""
    c = _context(m, gpu, seq, impl or _DEFAULT_IMPL, efficiency or gpu.efficiency,
                 gpus_per_node or gpu.node_size, Recipe.of(layout))
    out = _components(c, time_arrays(layout))
    breakdown = {k: float(out[k]) for k in BREAKDOWN_KEYS}
    flops = step_flops(m, seq, layout.global_batch * seq, layout.recompute,
                       full_share=full_recompute_share(layout, m.layers), modules=c.stack.recompute_modules)
    return summarise(m, layout, gpu, seq, tokens, float(out["step_seconds"]), flops, breakdown)
