"""Serving physics: the time of one engine iteration, and the memory a replica holds.

An inference engine runs iterations: each carries the decode tokens of the running requests (one each) and
prefill chunks of new prompts, up to a token budget. One iteration on one GPU of a TP×PP replica costs

- GEMMs: the weights they stream from HBM plus their FLOPs at the GEMM rate plus their activation operands —
  the additive roofline of planner.model.perf (NVIDIA DU-09799-001: below the ops:byte ratio a GEMM is
  memory bound), with the catalog's measured `gemm`/`gemm_fp8` and `hbm` efficiencies. Decode is the small-M
  end (weights dominate), prefill the large-M end (FLOPs dominate). Weight-only int4 (Marlin/AWQ) streams
  0.5 B/weight but multiplies at the 16-bit rate; fp8/int8/fp4 weights use the GPU's low-precision tensor
  cores where it has them (W8A8, NVFP4), else run weight-only.
- MoE: a step of T tokens touches E·(1 − (1 − k/E)^T) of a layer's E experts (uniform top-k routing), so
  decode reads few experts at small batch and all of them at large batch.
- Attention: decode reads every running request's KV cache (memory bound, at `kv_stream` of the HBM rate);
  prefill chunks compute QKᵀ and PV against their prefix at the flash-attention rate. KV bytes per token for
  MHA/GQA/MQA and MLA's compressed latent come from planner.model.memory.kv_cache_bytes_per_token.
- Element-wise kernels (fused residual+norm, activation, rotary, activation quantisation) as HBM traffic.
- TP: two all-reduces per layer of the step's hidden states on the link the group crosses (planner.model.comm),
  or the engines' one-shot NVLink all-reduce when that is faster (vLLM custom_all_reduce.cuh, TRT-LLM
  customAllReduceKernels); MoE with expert parallelism all-to-alls the routed tokens instead. PP: the replica
  keeps one micro-batch per stage in flight; an iteration of the whole batch is p stage times plus the sends.
- Overheads: a fixed GPU cost per kernel (`kernel_overhead_us`, even inside a CUDA graph), the CPU's launch
  time when a step is not replayed from a CUDA graph (the GPU waits when kernels are shorter than launches),
  and the engine's per-iteration host work (scheduling, sampling), hidden by an overlap scheduler.

Memory per GPU: weights (embeddings and LM head stay 16-bit in quantised checkpoints), the activation
workspace of one token-budget forward, a reserve, and the paged KV pool the engine sizes from what is left.

Every function takes numpy arrays or scalars for the per-iteration counts, so the simulator precomputes a
table over token counts once per deployment and the search evaluates whole grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from planner.model import comm
from planner.model.flops import window_pairs
from planner.model.memory import QUANT_GROUP, kv_cache_bytes_per_token, kv_kept_tokens, kv_window_share
from planner.model.params import attention_dims, attention_weights, count_params, mlp_weights
from planner.schema import Efficiency, GpuSku, ModelSpec, Overheads, Strict

Num = Any

WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
KvDtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4", "fp4")

# Storage bytes per element.
DTYPE_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5}
# Scale bytes per element: group-wise int4/int8 (GPTQ/AWQ) one fp16 scale per QUANT_GROUP weights; NVFP4 one
# fp8 E4M3 scale per 16 values (NVIDIA TensorRT Model Optimizer, NVFP4 format).
SCALE_BYTES = {"int8": 2.0 / QUANT_GROUP, "int4": 2.0 / QUANT_GROUP, "fp4": 1.0 / 16}
ACT_BYTES = 2  # 16-bit activations between kernels

# Dense tensor-core peaks the catalog schema has no key for (TFLOP/s, TOP/s for int8), from the project's
# hardware reference (hardware.md §1, dense columns). Blackwell Ultra cuts int8, so B300 has none.
LOW_PRECISION_PEAKS: dict[str, dict[str, float]] = {
    "a100-40gb": {"int8": 624.0},
    "a100-80gb": {"int8": 624.0},
    "a100-80gb-pcie": {"int8": 624.0},
    "h100-sxm": {"int8": 1978.9},
    "h100-pcie": {"int8": 1513.0},
    "h100-nvl": {"int8": 1670.5},
    "h800": {"int8": 1978.9},
    "h200": {"int8": 1978.9},
    "h20": {"int8": 296.0},
    "b200": {"int8": 4500.0, "fp4": 9000.0},
    "gb200": {"int8": 5000.0, "fp4": 10000.0},
    "b300": {"fp4": 13125.0},
    "l40s": {"int8": 733.0},
    "l4": {"int8": 242.5},
    "rtx-4090": {"int8": 660.6},
    "rtx-5090": {"fp4": 1676.0},
    "mi300x": {"int8": 2614.9},
    "mi325x": {"int8": 2614.9},
    "mi355x": {"int8": 5033.2, "fp4": 10066.4},
}

# Kernels one decoder layer launches in a fused engine: two fused residual+norm(+quant), QKV GEMM, rotary and
# KV-cache write, attention, output GEMM, two all-reduces, gate/up GEMM, activation(+quant), down GEMM
# (vLLM's Llama layer with its custom ops; TRT-LLM's PyTorch Llama decoder layer). MoE adds the router GEMM,
# top-k, permute, the grouped expert GEMMs and the un-permute.
KERNELS_PER_LAYER = 11
MOE_EXTRA_KERNELS = 5
# NVLink-class scale-up (per GPU per direction) above which engines use their one-shot all-reduce kernels;
# over PCIe without NVLink vLLM disables its custom all-reduce beyond two GPUs.
NVLINK_MIN_GBS = 100.0


class ServingEfficiency(Strict):
    """Serving-specific efficiencies, on top of the catalog's per-SKU `Efficiency` (which supplies the GEMM
    and HBM rates shared with the training model). One parameter set for every engine and GPU, calibrated on
    the TensorRT-LLM throughput table in the project's serving reference (benchmarks/serve.py reports it)."""

    weight_stream: float = Field(
        0.95, gt=0, le=1,
        description="decode GEMMs' weight streaming rate over the catalog's achieved HBM (copy) rate; skinny "
        "GEMMs split K over few CTAs and stream slightly below a copy kernel (calibrated; weakly constrained: "
        "0.75-0.95 move the calibration error by under a point)",
    )
    kv_stream: float = Field(
        0.80, gt=0, le=1,
        description="paged decode attention's KV read rate over the achieved HBM rate: gathers of 16-64 token "
        "blocks and the softmax pass between the K and V reads (calibrated)",
    )
    kernel_overhead_us: float = Field(
        3.0, ge=0,
        description="GPU time each kernel costs beyond its work (launch inside a graph, ramp-up and tail wave; "
        "calibrated)",
    )
    host_overhead_ms: float = Field(
        1.0, ge=0,
        description="engine host work per iteration besides the per-request part (scheduler pass, launching the "
        "step); exposed unless the engine overlaps it with the GPU step. A planner estimate the calibration runs "
        "(overlapped TensorRT-LLM) do not constrain",
    )
    gemm_overlap: float = Field(
        0.5, ge=0, le=1,
        description="share of the shorter of a GEMM's weight streaming and its math hidden under the longer: 0 is "
        "the training model's additive roofline, 1 the serving reference's max(); Hopper/Blackwell GEMMs "
        "pipeline TMA loads under the tensor cores, which matters near the ridge (decode at batch 100-500)",
    )
    fp4_gemm: float = Field(
        0.45, gt=0, le=1,
        description="NVFP4/MXFP4 GEMM rate over the dense fp4 peak. The catalog measures fp8 GEMMs only; block-scaled "
        "fp4 GEMMs (scale loads per 16 values, smaller tiles at serving shapes) reach about 1.3x the fp8 rate "
        "rather than 2x in the calibration runs (TensorRT-LLM Llama-3.3-70B and 3.1-405B NVFP4 on B200/GB200)",
    )
    host_us_per_request: float = Field(
        10.0, ge=0,
        description="host work per running request per iteration (input preparation, sampling bookkeeping, "
        "detokenisation and streaming in the engine's Python loop); with thousands of short requests it, not "
        "the GPU, sets the iteration time. A planner estimate the calibration runs do not constrain",
    )
    allreduce_latency_us: float = Field(
        6.0, ge=0,
        description="latency of the engines' one-shot NVLink all-reduce (peer-buffer reads and a barrier flag); a "
        "planner estimate, an NVLink round trip being 2-3 us",
    )
    source: str = (
        "weight_stream, kv_stream, gemm_overlap, kernel_overhead_us, fp4_gemm: calibrated together on the 18 "
        "TensorRT-LLM throughput runs of the serving reference (planner/data/serving_validation.yaml, "
        "calibration rows; benchmarks/serve.py); the rest are planner estimates"
    )


# --------------------------------------------------------------------------------------------
# Engine presets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineConfig:
    """An engine preset resolved for one GPU: the numbers the simulator runs with."""

    name: str
    max_num_seqs: int
    token_budget: int
    chunked_prefill: bool
    mixed_batches: bool
    memory_fraction: float
    memory_fraction_of: str
    block_size: int
    reserve_ratio_init: float
    reserve_ratio_min: float
    reserve_ratio_decay_steps: int
    prefix_caching: bool
    cuda_graph_max_batch: int
    overlap_scheduler: bool



# --------------------------------------------------------------------------------------------
# Dtypes and GEMM rates
# --------------------------------------------------------------------------------------------


def peak_tflops(gpu: GpuSku, dtype: str) -> float | None:
    """Dense tensor-core peak for a compute dtype, or None when the GPU has no such tensor cores."""
    if dtype in ("bf16", "fp16"):
        return gpu.peak(dtype)
    if dtype in gpu.peak_tflops:
        return gpu.peak_tflops[dtype]
    # a scenario GPU has the tensor cores of the catalog part it derives from
    return LOW_PRECISION_PEAKS.get(gpu.name, LOW_PRECISION_PEAKS.get(gpu.base or "", {})).get(dtype)


def weight_bytes_per_param(dtype: str) -> float:
    """Bytes a quantised weight occupies, its scales included."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return DTYPE_BYTES[dtype] + SCALE_BYTES.get(dtype, 0.0)


@dataclass(frozen=True)
class GemmPath:
    """How a weight dtype multiplies on a GPU."""

    compute_dtype: str  # the tensor-core dtype the GEMMs run in
    rate: float  # achievable FLOP/s of a large GEMM
    quantised_activations: bool  # activations are quantised before each GEMM (W8A8, W4A4)
    weight_only: bool  # weights are dequantised to 16-bit inside the GEMM (W4A16, W8A16)


def gemm_path(
    gpu: GpuSku, weight_dtype: str, eff: Efficiency | None = None, seff: ServingEfficiency | None = None
) -> GemmPath:
    """fp8/int8/fp4 weights use matching tensor cores when the GPU has them (activations quantised on the fly,
    the rate at the catalog's fp8 GEMM efficiency); otherwise, and for int4, weights are dequantised in the
    GEMM and multiply at the 16-bit rate (Marlin, AWQ kernels). fp4 without fp4 tensor cores is refused."""
    eff = eff or gpu.efficiency
    weight_bytes_per_param(weight_dtype)
    bf16 = gpu.peak("bf16") * 1e12 * eff.gemm
    if weight_dtype in ("bf16", "fp16"):
        return GemmPath(weight_dtype, bf16, False, False)
    low = peak_tflops(gpu, weight_dtype)
    if weight_dtype == "int4" or low is None:
        if weight_dtype == "fp4":
            raise ValueError(f"fp4 weights need fp4 tensor cores (Blackwell); {gpu.name} has none")
        return GemmPath("bf16", bf16, False, True)
    share = (seff or ServingEfficiency()).fp4_gemm if weight_dtype == "fp4" else (eff.gemm_fp8 or eff.gemm)
    return GemmPath(weight_dtype, low * 1e12 * share, True, False)


# --------------------------------------------------------------------------------------------
# The per-iteration model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingModel:
    """One replica's physics on one GPU: per-GPU constants precomputed from the model, GPU and layout."""

    m: ModelSpec
    gpu: GpuSku
    tp: int
    pp: int
    ep: int
    weight_dtype: str
    kv_dtype: str
    eff: Efficiency
    seff: ServingEfficiency
    path: GemmPath
    # memory, per GPU
    weight_bytes: float
    kv_bytes_per_token: float  # this GPU's share of one token's K and V (all its layers)
    # per-stage constants (layers / pp on each GPU)
    layers: float  # decoder layers on one pipeline stage
    moe_layers: float
    dense_weight_read: float  # bytes of non-expert weights one stage streams per iteration
    expert_bytes: float  # bytes of one routed expert on this GPU
    head_bytes: float  # LM head bytes (last stage; spread over stages here)
    flops_per_token: float  # matmul FLOPs of one token on this GPU (routed experts: top-k), head excluded
    head_flops_per_seq: float
    act_bytes_per_token: float  # GEMM operand traffic and element-wise kernels per token
    attn_flops_prefill: float  # FLOPs per (query, key) pair on this GPU, prefill (all stage layers)
    attn_flops_decode: float
    experts: int
    top_k: int
    # rates
    hbm: float  # achieved copy bandwidth, bytes/s
    attn_rate: float
    ln: comm.Links

    # sliding-window layers keep and read only the last `window` tokens' K and V (vLLM's and SGLang's window
    # managers free the blocks behind it); `window_share` of the KV bytes and decode attention is theirs
    @property
    def window(self) -> float:
        return math.inf if self.m.sliding_window is None else float(self.m.sliding_window)

    @property
    def window_share(self) -> float:
        return kv_window_share(self.m)

    # ---- memory -------------------------------------------------------------------------

    def workspace_bytes(self, token_budget: int, max_seqs: int) -> float:
        """Transient tensors of one token-budget forward (one layer's widest activations) and fp32 logits
        for every sequence: the peak the engines profile before sizing the KV pool."""
        m = self.m
        ffn = max(m.ffn_hidden, (m.moe.expert_ffn * m.moe.top_k) if m.moe else 0)
        return 2.0 * token_budget * (4 * m.hidden + 3 * ffn / self.tp) + 4.0 * max_seqs * m.vocab / self.tp

    def kv_pool_tokens(self, engine: EngineConfig, overheads: Overheads | None = None) -> int:
        """Tokens the engine's paged KV pool holds on this replica (whole blocks)."""
        o = overheads or Overheads()
        fixed = self.weight_bytes + self.workspace_bytes(engine.token_budget, engine.max_num_seqs)
        fixed += o.reserve_bytes + o.comm_buffer_bytes
        hbm = float(self.gpu.hbm_bytes)
        pool = engine.memory_fraction * (hbm - fixed) if engine.memory_fraction_of == "free" \
            else engine.memory_fraction * hbm - fixed
        if pool <= 0:
            return 0
        blocks = int(pool // (self.kv_bytes_per_token * engine.block_size))
        return blocks * engine.block_size

    def kv_tokens(self, context: Num) -> Num:
        """KV cache of one sequence of `context` tokens in units of `kv_bytes_per_token` (every layer's K and V of
        one token): its context, less what the sliding-window layers have freed beyond the window. Decode
        attention reads the same keys, so this is also the sequence's share of `decode_ctx`."""
        return kv_kept_tokens(self.m, context)

    # ---- time ---------------------------------------------------------------------------

    def gemm_seconds(self, tokens: Num, seqs: Num) -> Num:
        """Weights streamed, FLOPs and operand traffic of one stage's GEMMs for `tokens` tokens, of which
        `seqs` produce logits."""
        stream = self.hbm * self.seff.weight_stream
        read: Num = self.dense_weight_read + self.head_bytes
        if self.experts:
            touched = 1.0 - (1.0 - self.top_k / self.experts) ** np.asarray(tokens, dtype=float)
            read = read + self.moe_layers * self.experts * touched * self.expert_bytes
        memory = read / stream + tokens * self.act_bytes_per_token / self.hbm
        math_s = tokens * self.flops_per_token / self.path.rate
        longer = np.maximum(memory, math_s)
        # the LM head's FLOPs (logits of `seqs` sequences) are few; kept linear so iterations tabulate by tokens
        head = seqs * self.head_flops_per_seq / self.path.rate
        return longer + (1.0 - self.seff.gemm_overlap) * (memory + math_s - longer) + head

    def attention_seconds(self, decode_ctx: Num, prefill_pairs: Num) -> Num:
        """Decode attention reads `decode_ctx` cached tokens; prefill computes `prefill_pairs` (query, key)
        pairs (a chunk of c tokens after s0 cached ones has c·s0 + c²/2)."""
        kv_read = decode_ctx * self.kv_bytes_per_token / self.pp / (self.hbm * self.seff.kv_stream)  # stage share
        flops = decode_ctx * self.attn_flops_decode + prefill_pairs * self.attn_flops_prefill
        return kv_read + flops / self.attn_rate

    def tp_comm_seconds(self, tokens: Num) -> Num:
        """One stage's tensor-parallel collectives for `tokens` hidden states."""
        if self.tp == 1:
            return 0.0 * tokens
        nbytes = tokens * self.m.hidden * ACT_BYTES
        g = comm.group(self.tp, 1, self.ln)
        ring = comm.all_reduce(nbytes, g)
        one_shot = self.tp <= self.ln.gpus_per_node and (
            self.gpu.intra_node_gbs >= NVLINK_MIN_GBS or self.tp == 2
        )
        ar = ring
        if one_shot:
            custom = self.seff.allreduce_latency_us * 1e-6 + 2.0 * (self.tp - 1) / self.tp * nbytes / self.ln.intra_bw
            ar = comm.vmin(ring, custom)
        dense_layers = self.layers - self.moe_layers
        if self.ep > 1 and self.experts:
            # attention all-reduce, then dispatch and combine of the routed copies (each token to top-k)
            routed = nbytes * self.top_k
            a2a = 2.0 * comm.all_to_all(routed, comm.group(self.ep, 1, self.ln))
            return self.layers * ar + dense_layers * ar + self.moe_layers * a2a
        return 2.0 * self.layers * ar

    def kernels(self) -> float:
        return self.layers * KERNELS_PER_LAYER + self.moe_layers * MOE_EXTRA_KERNELS

    def gpu_seconds(self, tokens: Num, seqs: Num, decode_ctx: Num, prefill_pairs: Num) -> Num:
        """GPU time of one iteration of the whole replica: p stage times, each on a 1/p share of the batch
        (one micro-batch per stage in flight), plus the pipeline sends."""
        p = self.pp
        t, s, c, a = tokens / p, seqs / p, decode_ctx / p, prefill_pairs / p
        stage = self.gemm_seconds(t, s) + self.attention_seconds(c, a) + self.tp_comm_seconds(t)
        stage = stage + self.kernels() * self.seff.kernel_overhead_us * 1e-6
        total = p * stage
        if p > 1:
            g = comm.group(p, self.tp, self.ln)
            total = total + (p - 1) * comm.p2p(t * self.m.hidden * ACT_BYTES, g)
        return total

    def launch_seconds(self) -> float:
        """CPU time to launch one iteration's kernels outside a CUDA graph: the catalog's `kernel_launch_us`, the
        same eager-issue cost the training model charges."""
        return self.pp * self.kernels() * self.eff.kernel_launch_us * 1e-6

    def step_seconds(
        self, tokens: Num, seqs: Num, decode_ctx: Num, prefill_pairs: Num, graphed: Any, overlap: bool
    ) -> Num:
        """Wall time of one iteration: GPU time, never less than the CPU's launches when not replayed from a
        CUDA graph, plus (or, with an overlap scheduler, at least) the host's per-iteration work, which grows
        with the running requests."""
        gpu = self.gpu_seconds(tokens, seqs, decode_ctx, prefill_pairs)
        t = np.where(graphed, gpu, np.maximum(gpu, self.launch_seconds()))
        host = self.host_seconds(seqs)
        return np.maximum(t, host) if overlap else t + host

    def host_seconds(self, seqs: Num) -> Num:
        """The engine's CPU work for one iteration of `seqs` running requests."""
        return self.seff.host_overhead_ms * 1e-3 + seqs * self.seff.host_us_per_request * 1e-6

    # ---- closed forms -------------------------------------------------------------------

    def prefill_pairs(self, prompt: Num, cached: Num = 0) -> Num:
        """(query, key) pairs of a prompt's causal attention after `cached` prefix tokens, averaged over layers:
        a chunk of c tokens after s0 cached ones has c·s0 + c²/2; a sliding-window layer gives a query at most
        `window` keys."""
        return window_pairs(prompt, cached, self.window, self.window_share)

    def decode_step_seconds(self, batch: Num, context: Num, engine: EngineConfig) -> Num:
        """One decode-only iteration of `batch` requests at mean context `context`."""
        graphed = batch <= engine.cuda_graph_max_batch
        return self.step_seconds(batch, batch, batch * self.kv_tokens(context), 0.0, graphed,
                                 engine.overlap_scheduler)

    def prefill_seconds(self, prompt: Num, engine: EngineConfig, cached: Num = 0) -> Num:
        """Prefill of one prompt alone, in chunks of the token budget when the engine chunks."""
        new = np.maximum(np.asarray(prompt, dtype=float) - cached, 1.0)
        chunk = float(engine.token_budget) if engine.chunked_prefill else new
        chunks = np.maximum(np.ceil(new / chunk), 1.0)
        per = new / chunks
        pairs = self.prefill_pairs(prompt, cached)
        step = self.step_seconds(per, 1.0, 0.0, pairs / chunks, False, engine.overlap_scheduler)
        return chunks * step


def serving_model(
    m: ModelSpec,
    gpu: GpuSku,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    weight_dtype: str = "bf16",
    kv_dtype: str | None = None,
    eff: Efficiency | None = None,
    seff: ServingEfficiency | None = None,
) -> ServingModel:
    """Precompute one replica's per-GPU constants. `ep` > 1 shards routed experts over the TP group
    (ep must equal tp: attention stays tensor-parallel, experts expert-parallel, as vLLM's
    --enable-expert-parallel and TRT-LLM's moe_expert_parallel_size do on one replica)."""
    eff = eff or gpu.efficiency
    seff = seff or ServingEfficiency()
    kv_dtype = kv_dtype or "bf16"
    for name, value in (("tp", tp), ("pp", pp), ("ep", ep)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if ep > 1 and (m.moe is None or ep != tp):
        raise ValueError(f"ep={ep}: expert parallelism needs an MoE model and ep equal to tp ({tp})")
    if pp > m.layers:
        raise ValueError(f"pp={pp} exceeds the model's {m.layers} layers")
    # engines shard attention heads evenly and KV heads evenly or replicated (vLLM QKVParallelLinear)
    kv = m.n_kv_heads
    if m.heads % tp or (kv % tp if kv >= tp else tp % kv):
        raise ValueError(f"tp={tp}: the model's {m.heads} attention heads and {kv} KV heads do not split over "
                         f"{tp} GPUs")
    path = gemm_path(gpu, weight_dtype, eff, seff)
    wb = weight_bytes_per_param(weight_dtype)
    kvb = weight_bytes_per_param(kv_dtype)
    c = count_params(m)
    h = m.hidden
    # embeddings and LM head stay 16-bit in quantised checkpoints (ModelOpt, llm-compressor and AutoAWQ skip them)
    embed = c.embedding + c.position + c.output
    weights = ((c.total - embed) * wb + embed * 2.0) / (tp * pp)
    layers = m.layers / pp
    moe_layers = m.moe_layers / pp
    dense_layers = layers - moe_layers
    gate = 2 if m.mlp == "swiglu" else 1
    attn_w = attention_weights(m)
    dense_mlp = mlp_weights(m, m.ffn_hidden)
    experts, top_k, expert_w, shared_w, router = 0, 0, 0, 0, 0
    expert_ffn = shared_ffn = 0
    if m.moe is not None:
        e = m.moe
        experts, top_k = e.experts, e.top_k
        expert_w = mlp_weights(m, e.expert_ffn)
        shared_w = e.shared_experts * mlp_weights(m, e.shared_ffn)
        router = h * e.experts
        expert_ffn, shared_ffn = e.expert_ffn, e.shared_experts * e.shared_ffn
    non_expert = layers * attn_w + dense_layers * dense_mlp + moe_layers * (shared_w + router)
    head = m.vocab * h
    flops_tok = 2.0 * (non_expert + moe_layers * top_k * expert_w) / tp
    # GEMM operands (input read, output written) and element-wise kernels, per token on this GPU
    qk, v = attention_dims(m)
    attn_in_n = (attn_w - v * h) / h  # Q, K, V (or MLA's) projection output width
    attn_io = (h + attn_in_n / tp) + (v / tp + h)
    dense_io = (h + gate * m.ffn_hidden / tp) + (m.ffn_hidden / tp + h)
    moe_io = top_k * ((h + gate * expert_ffn / tp) + (expert_ffn / tp + h)) + (
        (h + gate * shared_ffn / tp) + (shared_ffn / tp + h) if shared_ffn else 0.0
    )
    gemm_io = layers * attn_io + dense_layers * dense_io + moe_layers * moe_io
    act_elems = dense_layers * m.ffn_hidden + moe_layers * (top_k * expert_ffn + shared_ffn)
    # two fused residual-add+norms (read x and residual, write both), SwiGLU/GeLU (read gate·ffn, write ffn),
    # rotary on Q and K, and activation quantisation (read 16-bit, write 8/4-bit) before each GEMM input
    elementwise = layers * 2 * 4 * h * ACT_BYTES + act_elems / tp * (gate + 1) * ACT_BYTES
    elementwise += layers * attn_in_n / tp * 2 * ACT_BYTES
    if path.quantised_activations:
        elementwise += (layers * (2 * h + v / tp) + dense_layers * m.ffn_hidden / tp
                        + moe_layers * (top_k * expert_ffn + shared_ffn) / tp) * (ACT_BYTES + DTYPE_BYTES[weight_dtype])
    act_bytes = gemm_io * ACT_BYTES + elementwise
    if m.mla is not None:
        # decode runs the absorbed form: every head attends over the kv_lora_rank latent plus the shared RoPE key
        x = m.mla
        decode_w = m.heads * (2 * x.kv_lora_rank + x.qk_rope_head_dim)
    else:
        decode_w = qk + v
    peak16 = gpu.peak("bf16") * 1e12
    kv_token = kv_cache_bytes_per_token(m, tp, kvb)
    return ServingModel(
        m=m, gpu=gpu, tp=tp, pp=pp, ep=ep, weight_dtype=weight_dtype, kv_dtype=kv_dtype, eff=eff, seff=seff,
        path=path, weight_bytes=weights, kv_bytes_per_token=kv_token, layers=layers, moe_layers=moe_layers,
        dense_weight_read=non_expert * wb / tp, expert_bytes=expert_w * wb / tp, head_bytes=head * 2.0 / tp / pp,
        flops_per_token=flops_tok, head_flops_per_seq=2.0 * head / tp / pp, act_bytes_per_token=act_bytes,
        attn_flops_prefill=2.0 * (qk + v) * layers / tp, attn_flops_decode=2.0 * decode_w * layers / tp,
        experts=experts, top_k=top_k, hbm=gpu.hbm_bandwidth_tbs * 1e12 * eff.hbm,
        attn_rate=peak16 * eff.gemm * eff.flash_attention, ln=comm.links(gpu, eff),
    )
