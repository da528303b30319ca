"""Step time, utilisation, days, GPU-hours and energy for a layout on a GPU.

Two modes. The fixed-utilisation mode (`mfu` or `hfu`) reproduces the back-of-envelope arithmetic
users know: time = FLOPs / (GPUs × peak × utilisation). The detailed mode builds one optimizer step
from one micro-batch on the slowest pipeline stage (its layers plus the output head):

- GEMMs at a shape-dependent rate. A GEMM of M×K by K×N moves at least 2(MK + KN + MN) bytes for its
  2MNK FLOPs; charging that traffic at HBM speed next to the math gives
  rate = peak · gemm / (1 + balance · (1/M + 1/N + 1/K)), balance = achievable FLOP/s ÷ achievable
  HBM bytes/s (NVIDIA, "Matrix Multiplication Background", DU-09799-001: a GEMM below the GPU's
  ops:byte ratio is memory bound). TP shards and small micro-batches shrink N, K and M, so the rate
  falls smoothly toward the memory bound; large GEMMs approach the measured `gemm` ceiling. A GEMM
  with a dimension off the 128-byte tensor-core alignment runs at `gemm_unaligned` of that rate; the
  vocabulary is padded to 128 × TP first, as Megatron-LM pads it.
- Attention: flash kernels at `flash_attention` × the GEMM rate, executing half the score FLOPs under
  the causal mask and 2.5 forwards' worth in backward (it recomputes the scores; Dao 2023 §3.1.2);
  eager attention as batched GEMMs on the full s² plus its softmax and dropout traffic.
- Element-wise work (norms, activations, bias/dropout/residual, rotary, softmax, MoE permutes, the
  fp32 cross-entropy) as bytes over HBM at `hbm` efficiency; backward moves twice the forward bytes.
- Recompute adds the forward it repeats: every layer for full, the attention core for selective.
- Communication (planner.model.comm) on the link it crosses: TP collectives per layer, CP ring K/V,
  EP all-to-all, PP activations per micro-batch and chunk, DP gradient and parameter traffic, ZeRO-3
  gathers, each hidden as far as its `Efficiency` overlap parameter allows.
- Pipeline: (M + (p − 1)/v) micro-batch slots for 1F1B, interleaved over v chunks; the bubble is the
  (p − 1)/v extra slots. Optimizer step: bytes touched per parameter shard over HBM.

The core `_components` is plain arithmetic on layout fields, so the same formulas take Python
scalars (`training_time`, one layout) or numpy arrays (`step_time_table`, a whole solver grid).
Energy: GPUs × TDP × wall time — an upper bound, since GPUs rarely sit at TDP for a whole step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from planner.model import comm
from planner.model.comm import vmax, vmin
from planner.model.flops import StepFlops, step_flops
from planner.model.memory import Recipe, layer_params_on_rank, layout_arrays
from planner.model.params import attention_dims, attention_weights
from planner.schema import Efficiency, GpuSku, Implementation, Layout, ModelSpec

SECONDS_PER_DAY = 86_400.0
BREAKDOWN_KEYS = ("compute", "tp_comm", "pp_comm", "dp_comm", "cp_comm", "ep_comm", "bubble", "optimizer")

# Counting constants (bytes or passes, not efficiencies).
ACT = 2  # bytes per 16-bit activation element
ALIGN_BYTES = 128  # A100/H100 tensor-core GEMMs run best on dimensions in multiples of 128 bytes
VOCAB_PAD = 128  # Megatron-LM pads the vocabulary to a multiple of 128 × TP (--make-vocab-size-divisible-by)
BACKWARD_BYTES = 2.0  # element-wise backward reads the saved input and the incoming gradient, writes one
FLASH_BACKWARD = 2.5  # flash backward: 5 matmuls against the forward's 2 (it recomputes QKᵀ)
CAUSAL_EXECUTED = 0.5  # flash kernels skip the masked half of the score blocks
CROSS_ENTROPY_BYTES = 24  # per logit: fp32 upcast, max, exp-sum, softmax and its gradient (fwd + bwd)
UNFUSED_BYTES = 2.0  # unfused element-wise ops (as Hugging Face writes them) each re-read and re-write
# Optimizer step, bytes per parameter of the local shard: AdamW reads and writes fp32 master, m and v
# (24), reads the fp32 gradient (4) twice (norm for clipping, then the update) and writes the 16-bit
# weight (2). SGD keeps one moment, 8-bit Adam two 1-byte moments.
OPTIMIZER_STEP_BYTES = {"adam": 34, "adamw": 34, "sgd": 26, "adam8bit": 22}

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
        energy_kwh=gpu_hours * gpu.tdp_w / 1000.0,
        mode=mode,
    )


def fixed_utilisation_time(
    m: ModelSpec, layout: Layout, gpu: GpuSku, seq: int, tokens: float, *, mfu: float | None = None,
    hfu: float | None = None,
) -> TimeEstimate:
    """Back-of-envelope: step time = FLOPs / (GPUs × dense 16-bit peak × utilisation). `hfu` counts the
    recompute FLOPs the layout executes (8·N·T with full recompute), `mfu` only model FLOPs (6·N·T)."""
    if (mfu is None) == (hfu is None):
        raise ValueError("give exactly one of mfu or hfu")
    flops = step_flops(m, seq, layout.global_batch * seq, layout.recompute)
    work, util = (flops.model, mfu) if mfu is not None else (flops.hardware, hfu)
    step = work / (layout.gpus * utilisation_peak(gpu, layout) * cast(float, util))
    mode = "fixed mfu" if mfu is not None else "fixed hfu"
    return summarise(m, layout, gpu, seq, tokens, step, flops, {"compute": step}, mode)


# --------------------------------------------------------------------------------------------
# Detailed model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Everything the step time needs that does not depend on the layout: model shape, kernels, GPU."""

    m: ModelSpec
    seq: int
    ln: comm.Links
    eff: Efficiency
    recipe: Recipe
    # model shape
    h: int
    heads: int
    kv_width: float  # K and V widths per token summed over KV heads (what CP exchanges)
    qk_width: int  # a·d_qk
    v_width: int  # a·d_v
    rope_width: float  # Q and K widths the rotary embedding touches
    attn_in_n: float  # output width of the input projection(s): Q, K, V (or MLA's) over h
    mlp_in_n: int  # fc1 width (gate + up for SwiGLU)
    ffn: int
    act_bytes: int  # element-wise bytes per inner MLP element (GeLU 4, SwiGLU 6)
    norms: int
    dense_layers: int
    moe_layers: int
    vocab: int
    tied_pp_sync: bool  # tied embeddings: first and last stage all-reduce the shared matrix's gradient
    moe_experts: int
    moe_top_k: int
    expert_in_n: int
    expert_ffn: int
    shared_in_n: int
    shared_ffn: int
    # kernels
    flash: bool
    dropout: bool
    # GPU
    gemm_rate: float  # FLOP/s of a large GEMM in the compute dtype
    balance: float  # FLOP per byte at which a GEMM's traffic costs as much as its math
    align: int  # elements per 128 bytes of a GEMM operand
    unaligned_penalty: float  # extra time of a GEMM with a misaligned dimension
    attn_rate: float  # FLOP/s of 16-bit batched attention GEMMs
    flash_rate: float
    hbm: float  # bytes/s achieved
    ew_hbm: float  # bytes/s of element-wise work, unfused kernels counted as moving more bytes
    grad_bytes: int
    opt_bytes: int


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


def _build_context(
    m: ModelSpec, gpu: GpuSku, seq: int, impl: Implementation, eff: Efficiency, gpus_per_node: int, recipe: Recipe
) -> _Context:
    h = m.hidden
    qk, v = attention_dims(m)
    swiglu = m.mlp == "swiglu"
    gate = 2 if swiglu else 1  # fc1 width per FFN unit: gate and up for SwiGLU
    if m.mla is not None:
        kv_width = float(qk + v)  # MLA materialises per-head K and V for the ring exchange
        rope_width = float((m.heads + 1) * m.mla.qk_rope_head_dim)
    else:
        kv_width = float(2 * m.n_kv_heads * m.d_head)
        rope_width = float((m.heads + m.n_kv_heads) * m.d_head) if m.position == "rope" else 0.0
    e = m.moe
    fp8 = recipe.precision == "fp8"
    peak16 = gpu.peak("fp16" if recipe.precision == "fp16" else "bf16") * 1e12
    gemm_rate = gpu.peak("fp8") * 1e12 * (eff.gemm_fp8 or eff.gemm) if fp8 else peak16 * eff.gemm
    hbm = gpu.hbm_bandwidth_tbs * 1e12 * eff.hbm
    operand_bytes = 1 if fp8 else ACT
    return _Context(
        m=m,
        seq=seq,
        ln=comm.links(gpu, eff, gpus_per_node),
        eff=eff,
        recipe=recipe,
        h=h,
        heads=m.heads,
        kv_width=kv_width,
        qk_width=qk,
        v_width=v,
        rope_width=rope_width,
        attn_in_n=(attention_weights(m) - v * h) / h,
        mlp_in_n=gate * m.ffn_hidden,
        ffn=m.ffn_hidden,
        act_bytes=6 if swiglu else 4,
        norms=m.norms_per_layer,
        dense_layers=m.dense_layers,
        moe_layers=m.moe_layers,
        vocab=m.vocab,
        tied_pp_sync=m.tied_embeddings,
        moe_experts=e.experts if e else 1,
        moe_top_k=e.top_k if e else 0,
        expert_in_n=gate * e.expert_ffn if e else 0,
        expert_ffn=e.expert_ffn if e else 0,
        shared_in_n=gate * e.shared_experts * e.shared_ffn if e else 0,
        shared_ffn=e.shared_experts * e.shared_ffn if e else 0,
        flash=impl.attention == "flash",
        dropout=impl.dropout > 0,
        gemm_rate=gemm_rate,
        balance=gemm_rate / hbm * operand_bytes / 2,
        align=ALIGN_BYTES // operand_bytes,
        unaligned_penalty=1.0 / eff.gemm_unaligned - 1.0,
        attn_rate=peak16 * eff.gemm,
        flash_rate=peak16 * eff.gemm * eff.flash_attention,
        hbm=hbm,
        ew_hbm=hbm if impl.fused_kernels else hbm / UNFUSED_BYTES,
        grad_bytes=4 if recipe.fp32_grad_accumulation else 2,
        opt_bytes=OPTIMIZER_STEP_BYTES[recipe.optimizer],
    )


def _gemm(c: _Context, rate: float, mm: Any, n: Any, k: Any) -> Any:
    """Seconds of one M×K·K×N GEMM: math at the large-GEMM rate plus its operand traffic, slower
    when a dimension breaks the 128-byte alignment tensor-core kernels are tiled for."""
    a = c.align
    misaligned = 1.0 - (mm % a == 0) * (n % a == 0) * (k % a == 0)
    return 2.0 * mm * n * k / rate * (1.0 + c.balance * (1.0 / mm + 1.0 / n + 1.0 / k)) * (
        1.0 + c.unaligned_penalty * misaligned
    )


def _layer_passes(
    c: _Context, tok: Any, t: Any, r: Any, s_q: Any, b: Any, ep: Any, moe: bool
) -> tuple[Any, Any, Any, Any]:
    """One layer, one micro-batch, one GPU, forward: (GEMM seconds, element-wise seconds, core
    attention seconds, core attention backward seconds). `tok` tokens on this rank, `t` the TP size
    dividing head/FFN widths, `r` the divisor of hidden-width tensors (t with SP, else 1)."""
    h = c.h
    # projections around attention
    dense = _gemm(c, c.gemm_rate, tok, c.attn_in_n / t, h) + _gemm(c, c.gemm_rate, tok, h, c.v_width / t)
    hid = tok * h / r  # hidden-width elements on this rank
    drop = 1 if c.dropout else 0
    # norms (read + write), two bias-dropout-residual adds (two reads, one write, a mask)
    ew = hid * (c.norms * 2 * ACT + 2 * (3 * ACT + drop)) + tok * c.rope_width / t * 2 * ACT
    if moe:
        k = c.moe_top_k
        routed = tok * k  # routed token copies processed on this GPU (balanced routing)
        local = c.moe_experts / ep  # experts on this GPU, each a GEMM of routed/local rows
        rows = routed / local
        dense = dense + _gemm(c, c.gemm_rate, tok / r, c.moe_experts, h)  # router
        dense = dense + local * (
            _gemm(c, c.gemm_rate, rows, c.expert_in_n / t, h) + _gemm(c, c.gemm_rate, rows, h, c.expert_ffn / t)
        )
        ew = ew + routed * c.act_bytes * c.expert_ffn / t + 4 * ACT * routed * h / r  # act, permute+unpermute
        if c.shared_ffn:
            dense = dense + _gemm(c, c.gemm_rate, tok, c.shared_in_n / t, h)
            dense = dense + _gemm(c, c.gemm_rate, tok, h, c.shared_ffn / t)
            ew = ew + tok * c.act_bytes * c.shared_ffn / t
    else:
        dense = dense + _gemm(c, c.gemm_rate, tok, c.mlp_in_n / t, h) + _gemm(c, c.gemm_rate, tok, h, c.ffn / t)
        ew = ew + tok * c.act_bytes * c.ffn / t
    # core attention: queries on this rank against all `seq` keys, heads split by TP
    if c.flash:
        attn_flops = 2.0 * tok * c.seq * (c.qk_width + c.v_width) / t * CAUSAL_EXECUTED
        attn_fwd = attn_flops / c.flash_rate
        attn_bwd = FLASH_BACKWARD * attn_fwd
    else:
        heads = c.heads / t
        d_qk, d_v = c.qk_width / c.heads, c.v_width / c.heads
        batches = b * heads
        attn_fwd = batches * (_gemm(c, c.attn_rate, s_q, c.seq, d_qk) + _gemm(c, c.attn_rate, s_q, d_v, c.seq))
        scores = tok * c.seq * heads  # softmax (read + write) and dropout (read + write + mask)
        attn_fwd = attn_fwd + scores * (2 * ACT + (2 * ACT + 1) * drop) / c.ew_hbm
        attn_bwd = 2.0 * attn_fwd
    return dense, ew / c.ew_hbm, attn_fwd, attn_bwd


def _components(c: _Context, a: dict[str, Any]) -> dict[str, Any]:
    """Step time and its breakdown (seconds) for scalars or arrays of layout fields."""
    tp, pp, vpp, dp, cp, ep = a["tp"], a["pp"], a["vpp"], a["dp"], a["cp"], a["ep"]
    zero, rc, sp, mbs, gbs = a["zero"], a["recompute"], a["sequence_parallel"], a["micro_batch"], a["global_batch"]
    ln, eff, h = c.ln, c.eff, c.h
    full = (rc == 2) * 1.0
    sel = (rc == 1) * 1.0
    z3 = (zero == 3) * 1.0
    z12 = (zero == 1) * 1.0 + (zero == 2)
    t = tp
    r = 1 + (sp > 0) * (tp - 1)
    s_q = c.seq / cp  # queries per sequence on this rank
    tok = mbs * s_q
    micro = gbs / (dp * mbs)  # micro-batches per step per pipeline
    layers = -(-(c.dense_layers + c.moe_layers) // pp)  # the slowest stage holds ceil(L/p) layers
    moe_frac = c.moe_layers / (c.dense_layers + c.moe_layers)

    # ---- compute of one micro-batch on the slowest (last) stage ---------------------------------
    gemm_f, ew_f, a_f, a_b = _layer_passes(c, tok, t, r, s_q, mbs, ep, False)
    if c.moe_layers:
        moe = _layer_passes(c, tok, t, r, s_q, mbs, ep, True)
        gemm_f, ew_f, a_f, a_b = (x * (1 - moe_frac) + y * moe_frac for x, y in zip(
            (gemm_f, ew_f, a_f, a_b), moe, strict=True))
    o_f = gemm_f + ew_f
    bwd = 2.0 * gemm_f + BACKWARD_BYTES * ew_f + a_b
    recompute = full * (o_f + a_f) + sel * (0.0 if c.flash else 1.0) * a_f
    vocab = -(-c.vocab // (VOCAB_PAD * t)) * VOCAB_PAD  # per TP rank, padded as Megatron pads it
    head_f = _gemm(c, c.gemm_rate, tok, vocab, h)
    head_ew = tok * vocab * (CROSS_ENTROPY_BYTES / 2) / c.hbm  # each of forward and backward
    fwd_micro = layers * (o_f + a_f) + head_f + head_ew
    bwd_micro = layers * (bwd + recompute) + 2 * head_f + head_ew
    # parameters on this GPU (the last stage also holds the head)
    d_par, e_par = layer_params_on_rank(c.m, tp, ep, False)
    if c.moe_layers:
        dm, em = layer_params_on_rank(c.m, tp, ep, True)
        d_par = d_par * (1 - moe_frac) + dm * moe_frac
        e_par = em * moe_frac
    head_par = vocab * h
    dense_par = layers * d_par + head_par
    expert_par = layers * e_par
    # the wgrad GEMMs accumulate into the gradient buffer: read + write of every local gradient
    compute_micro = fwd_micro + bwd_micro + (dense_par + expert_par) * 2 * c.grad_bytes / c.hbm

    # ---- groups, in Megatron's rank order tp → cp → dp (ep inside it) → pp ------------------------
    tp_g = comm.group(tp, 1, ln)
    cp_g = comm.group(cp, tp, ln)
    dp_g = comm.group(dp * cp, tp, ln)  # dense gradients and optimizer shards span DP × CP
    pp_g = comm.group(pp, tp * cp * dp, ln)

    # ---- tensor parallel: 4 collectives per layer (2 fwd, 2 bwd), 2 more when recomputed; SP's
    # reduce-scatter + all-gather move the same bytes. Hidden only behind the layer's GEMMs ---------
    act_bytes = tok * h * ACT
    tp_all = (4 + 2 * full) * comm.all_reduce(act_bytes, tp_g)
    tp_micro = layers * vmax(0.0, tp_all - eff.tp_overlap * gemm_f * (3 + full))

    # ---- context parallel: ring exchange of K/V (fwd), K/V + dK/dV (bwd), hidden behind attention ----
    cp_step = (cp > 1) * comm.p2p(tok * c.kv_width / t * ACT, cp_g)
    cp_comm = (cp - 1) * cp_step * (3 + full)
    cp_micro = layers * vmax(0.0, cp_comm - eff.cp_overlap * (a_f * (1 + full) + a_b))

    # ---- expert parallel: dispatch + combine all-to-all, fwd and bwd (and recompute) ----------------
    ep_micro: Any = 0.0
    if c.moe_layers:
        ep_g = comm.group(ep, tp * cp, ln)
        a2a = comm.all_to_all(tok / r * c.moe_top_k * h * ACT, ep_g)
        ep_micro = layers * moe_frac * (4 + 2 * full) * a2a

    # ---- pipeline: activations (scatter/gather over TP, or SP-sharded) per chunk, fwd and bwd -------
    pp_micro = (pp > 1) * 2 * vpp * comm.p2p(act_bytes / t, pp_g)

    # ---- ZeRO-3: gather the stage's parameters each micro-batch (fwd, bwd, recompute), reduce-scatter
    # the gradients; prefetched under compute, except the first layer's gather -----------------------
    def gathers(par: Any, g: comm.Group) -> Any:
        return (2 + full) * comm.all_gather(par * ACT, g) + comm.reduce_scatter(par * c.grad_bytes, g)

    z3_comm = gathers(dense_par, dp_g)
    if c.moe_layers:
        edp_g = comm.group(dp * cp / ep, tp * ep, ln)  # expert weights: data parallel over dp·cp/ep
        z3_comm = z3_comm + gathers(expert_par, edp_g)
    z3_first = comm.all_gather(d_par * ACT, dp_g)
    z3_micro = z3 * (vmax(0.0, z3_comm - eff.zero3_overlap * compute_micro) + z3_first)

    t_micro = compute_micro + tp_micro + cp_micro + ep_micro + pp_micro + z3_micro
    bubble = (pp - 1) / vpp * t_micro

    # ---- data parallel (ZeRO 0-2): gradients reduced under the last backward, the last bucket
    # exposed; ZeRO-1/2 re-gather updated parameters under the next forward. ZeRO-2 keeps only a
    # gradient shard, so it reduces every micro-batch -----------------------------------------------
    def reduction(par: Any, g: comm.Group) -> Any:
        bucket = vmin(eff.dp_bucket_params, par)

        def reduce(n: Any) -> Any:
            return (1 - z12) * comm.all_reduce(n * c.grad_bytes, g) + z12 * comm.reduce_scatter(n * c.grad_bytes, g)

        grads = vmax(reduce(bucket), reduce(par) - eff.dp_overlap * bwd_micro)
        grads = grads * (1 + (zero == 2) * (micro - 1))
        gather = comm.all_gather(par * ACT, g) - eff.dp_overlap * fwd_micro
        params = z12 * vmax(comm.all_gather(bucket * ACT, g), gather)
        return grads + params

    dp_step = reduction(dense_par, dp_g)
    if c.moe_layers:
        dp_step = dp_step + reduction(expert_par, edp_g)
    dp_step = (1 - z3) * dp_step

    # tied embeddings split over the first and last stage: all-reduce of the shared matrix's gradient
    emb_sync: Any = 0.0
    if c.tied_pp_sync:
        emb_g = comm.group(2, tp * cp * dp * vmax(1, pp - 1), ln)
        emb_sync = (pp > 1) * comm.all_reduce(head_par * c.grad_bytes, emb_g)

    # ---- optimizer: the local shard (ZeRO ≥ 1) or every local parameter, plus zeroing the grads ------
    shard = 1 + (zero >= 1) * (dp * cp - 1)
    local = dense_par / shard + expert_par / (1 + (zero >= 1) * (dp * cp / ep - 1))
    optimizer = (local * c.opt_bytes + (dense_par + expert_par) * c.grad_bytes) / c.hbm

    out = {
        "compute": micro * compute_micro,
        "tp_comm": micro * tp_micro,
        "pp_comm": micro * pp_micro + emb_sync,
        "dp_comm": micro * z3_micro + dp_step,
        "cp_comm": micro * cp_micro,
        "ep_comm": micro * ep_micro,
        "bubble": bubble,
        "optimizer": optimizer,
    }
    out["step_seconds"] = sum(out[k] for k in BREAKDOWN_KEYS)
    return out


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
    global_batch. The same formulas `training_time` evaluates for one layout."""
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
    out = _components(c, layout_arrays(layout))
    breakdown = {k: float(out[k]) for k in BREAKDOWN_KEYS}
    flops = step_flops(m, seq, layout.global_batch * seq, layout.recompute)
    return summarise(m, layout, gpu, seq, tokens, float(out["step_seconds"]), flops, breakdown)

