"""The typed vocabulary of planner: models, GPUs, prices, layouts and the knobs of the physics.

Everything here is a pydantic v2 model with strict field names (unknown keys are errors), so a
typo in a scenario or a catalog is reported with the file and the key rather than ignored.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from planner.errors import BOOLEAN_COUNT, MISSPELT_KEY
from planner.limits import (
    MAX_BYTES_PER_GPU,
    MAX_EXPERTS,
    MAX_GLOBAL_BATCH,
    MAX_GPUS,
    MAX_LATENCY_US,
    MAX_LAYERS,
    MAX_SEQ,
    MAX_USD_PER_GPU,
    MAX_USD_PER_GPU_HOUR,
    MAX_VOCAB,
    MAX_WIDTH,
    MIN_EFFICIENCY,
    MIN_RATE,
    MIN_TFLOPS,
)
from planner.names import CpExchange, CudaGraphScope, Fp8Recipe, Framework, MasterWeights, MomentDtype

GIB = 2**30

# --------------------------------------------------------------------------------------------
# Physical ranges: every number a user can type is finite (Strict) and inside one of planner.limits.
# --------------------------------------------------------------------------------------------

GpuCount = Annotated[int, Field(ge=1, le=MAX_GPUS)]
PeakDtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "fp4"]
# The densest accelerator listed (GB300, dense fp4) peaks at 15 PFLOP/s; 10^5 TFLOP/s is far past it.
Tflops = Annotated[float, Field(ge=MIN_TFLOPS, le=100_000)]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
LayerCount = Annotated[int, Field(ge=1, le=MAX_LAYERS)]
SeqLen = Annotated[int, Field(ge=1, le=MAX_SEQ)]
BatchSize = Annotated[int, Field(ge=1, le=MAX_GLOBAL_BATCH)]
Fraction = Annotated[float, Field(gt=0, le=1)]
BytesPerGpu = Annotated[int, Field(ge=0, le=MAX_BYTES_PER_GPU)]


# How close (difflib's ratio) an unknown scenario key must be to a known one to be named as its misspelling: a
# dropped letter or underscore in a short key (objectiv, topk, maxgpus) scores 0.89–0.94; the parallel sizes beside
# each other (tp, pp, cp, dp) score 0.5.
KEY_SUGGESTION_CUTOFF = 0.8
KEYS_NAMED = 10  # unknown keys one line names before it counts the rest


class Strict(BaseModel):
    """Base for every planner model: unknown keys are errors, NaN and infinities are refused, a YAML boolean
    is not a number, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_misspelt_keys(cls, data: Any) -> Any:
        # an unknown key a letter or an underscore from a known one is named with the key meant, in one line with
        # the mapping's other unknown keys; unknown keys like no known one are left to pydantic's own error
        if not isinstance(data, dict):
            return data
        unknown = [k for k in data if k not in cls.model_fields]
        if not unknown or not all(isinstance(k, str) for k in unknown):
            return data
        near = {k: difflib.get_close_matches(k, list(cls.model_fields), n=1, cutoff=KEY_SUGGESTION_CUTOFF)
                for k in unknown}
        if not any(near.values()):
            return data
        named = [f"{k} (did you mean {near[k][0]}?)" if near[k] else k for k in unknown]
        if len(named) > KEYS_NAMED:  # the close ones first; the rest counted
            close_first = sorted(named, key=lambda n: "(did you mean" not in n)
            named = [*close_first[:KEYS_NAMED], f"and {len(named) - KEYS_NAMED:,} more"]
        # the keys go in the context, which pydantic inserts verbatim (a brace in a key is not a placeholder)
        if len(unknown) == 1:
            raise PydanticCustomError(MISSPELT_KEY, "unknown key (did you mean {meant}?)",
                                      {"field": unknown[0], "meant": near[unknown[0]][0]})
        raise PydanticCustomError(MISSPELT_KEY, "unknown keys {keys}", {"field": None, "keys": ", ".join(named)})

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        # pydantic's lax int and float read true as 1: `max_gpus: true` would plan for one GPU, `hfu: true` at 100 %
        if isinstance(data, dict):
            for key in _number_fields(cls).intersection(data):
                if key.endswith(OVERLAP_SUFFIX):
                    continue  # an overlap share reads as a switch: `tp_overlap: true` hides all of it
                value = data[key]
                if isinstance(value, (list, tuple, dict)):
                    value = next((v for v in (value.values() if isinstance(value, dict) else value)
                                  if isinstance(v, bool)), None)
                if isinstance(value, bool):
                    what = "an integer" if key in _number_fields(cls, int) else "a number"
                    raise PydanticCustomError(BOOLEAN_COUNT, f"expected {what}, got a boolean", {"field": key})
        return data


# Efficiency's shares of a collective hidden under compute (tp_overlap, dp_overlap, …): true and false read as
# 1 and 0, as a switch would; every other number refuses a boolean.
OVERLAP_SUFFIX = "_overlap"


@functools.cache
def _number_fields(model: type[BaseModel], kind: type = float) -> frozenset[str]:
    """The fields that hold numbers (`kind` float: an int or a float; int: an int), as a value, a literal, a
    sequence or a mapping of them, and no boolean."""
    return frozenset(name for name, field in model.model_fields.items()
                     if _number_annotation(field.annotation, (int,) if kind is int else (int, float)))


def _number_annotation(annotation: Any, kinds: tuple[type, ...]) -> bool:
    leaves: set[type] = set()

    def walk(t: Any) -> None:
        origin = typing.get_origin(t)
        if origin is Literal:
            leaves.update(type(v) for v in typing.get_args(t))
        elif origin is Annotated:
            walk(typing.get_args(t)[0])  # the type, not its constraints
        elif origin in (typing.Union, types.UnionType, tuple, list):
            for arg in typing.get_args(t):
                if arg is not Ellipsis:
                    walk(arg)
        elif origin is dict:
            walk(typing.get_args(t)[1])  # the values (keys are names)
        elif isinstance(t, type):
            leaves.add(t)
        else:
            leaves.add(object)  # anything else (Any, a forward reference): leave it to pydantic

    walk(annotation)
    return any(k in leaves for k in kinds) and bool not in leaves and object not in leaves


# --------------------------------------------------------------------------------------------
# Model architecture
# --------------------------------------------------------------------------------------------


class MoESpec(Strict):
    """Mixture-of-experts feed-forward (Mixtral, DeepSeek, Qwen-MoE)."""

    experts: int = Field(ge=1, le=MAX_EXPERTS, description="routed experts per MoE layer")
    top_k: int = Field(ge=1, le=MAX_EXPERTS, description="routed experts each token is sent to")
    expert_ffn: Width = Field(description="FFN hidden size of one routed expert")
    shared_experts: int = Field(0, ge=0, le=MAX_EXPERTS, description="always-on shared experts (DeepSeek)")
    shared_expert_ffn: Width | None = Field(
        None, description="FFN hidden size of one shared expert (default: expert_ffn)"
    )
    dense_layers: int = Field(0, ge=0, le=MAX_LAYERS, description="the first N layers keep a dense MLP (DeepSeek)")

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.top_k > self.experts:
            raise ValueError(f"top_k ({self.top_k}) exceeds experts ({self.experts})")
        return self

    @property
    def shared_ffn(self) -> int:
        return self.shared_expert_ffn or self.expert_ffn


class MLASpec(Strict):
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank compressed Q and KV."""

    q_lora_rank: Width | None = Field(None, description="None = full-rank Q projection")
    kv_lora_rank: Width
    qk_rope_head_dim: Width
    qk_nope_head_dim: Width
    v_head_dim: Width


class ModelSpec(Strict):
    """A decoder-only transformer, described exactly enough to count every parameter."""

    name: str = "custom"
    source: str | None = Field(None, description="where the shape comes from (paper table, config.json)")
    layers: int = Field(ge=1, le=MAX_LAYERS)
    hidden: Width
    heads: Width
    kv_heads: Width | None = Field(None, description="KV heads: = heads MHA, < heads GQA, 1 MQA")
    head_dim: Width | None = Field(None, description="default hidden // heads")
    ffn_hidden: Width
    vocab: int = Field(ge=1, le=MAX_VOCAB)
    max_seq: SeqLen = Field(description="maximum sequence length (learned positions)")
    pretrain_seq: SeqLen | None = Field(
        None, description="the context it was pretrained at before context extension stretched it to max_seq "
        "(config.json rope_scaling.original_max_position_embeddings): the sequence an estimate assumes when none is "
        "given; null = max_seq")
    mlp: Literal["gelu", "swiglu", "squared-relu"] = Field(
        "swiglu", description="squared-relu: relu(x)² between two matrices (Nemotron-4), shaped like gelu"
    )
    norm: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    bias: Literal["none", "qkv", "attention", "all"] = Field(
        "none", description="qkv: q/k/v biases (Qwen2); attention: q/k/v/o (Llama attention_bias); all: + MLP"
    )
    position: Literal["learned", "rope"] = "rope"
    qk_norm: Literal["none", "head"] = Field(
        "none", description="norms on the queries and keys before rotary: head = one norm of head_dim shared by "
        "every head (Qwen3, Megatron --qk-layernorm)"
    )
    attention_sinks: bool = Field(
        False, description="a learned logit per head that every query's softmax includes (gpt-oss sinks; "
        "Megatron-Core softmax_type learnable)"
    )
    sliding_window: int | None = Field(
        None, ge=1, le=MAX_SEQ, description="keys a query of a sliding-window layer attends to, itself included "
        "(Mistral 7B v0.1: 4096); null: every layer attends to the whole causal prefix"
    )
    window_layers: int | None = Field(
        None, ge=0, le=MAX_LAYERS, description="how many layers use the sliding window (default: all of them)"
    )
    tied_embeddings: bool = False
    parallel_block: bool = Field(False, description="attention and MLP run side by side (Falcon, GPT-J, NeoX)")
    parallel_norms: Literal[1, 2] = Field(1, description="norms of a parallel block: 1 shared (Falcon-7B), 2 (NeoX)")
    embedding_norm: bool = Field(False, description="a norm right after the token embedding (BLOOM)")
    position_offset: int = Field(0, ge=0, le=MAX_SEQ, description="extra rows of the learned position table (OPT: 2)")
    moe: MoESpec | None = None
    mla: MLASpec | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(
                f"hidden ({self.hidden}) is not divisible by heads ({self.heads}); give head_dim"
            )
        if self.moe is not None and self.moe.dense_layers > self.layers:
            raise ValueError("moe.dense_layers exceeds layers")
        if self.pretrain_seq is not None and self.pretrain_seq > self.max_seq:
            raise ValueError(f"pretrain_seq ({self.pretrain_seq}) exceeds max_seq ({self.max_seq})")
        if self.window_layers is not None and (self.sliding_window is None or self.window_layers > self.layers):
            raise ValueError(f"window_layers ({self.window_layers}) needs a sliding_window and at most layers "
                             f"({self.layers}) layers")
        if self.mla is not None and self.attention_sinks:
            raise ValueError("attention_sinks: multi-latent attention with sinks is not modelled")
        if self.mla is not None and self.qk_norm != "none":
            raise ValueError("qk_norm: multi-latent attention's query and key norms are its latent norms, counted "
                             "with mla; leave qk_norm out")
        return self

    @property
    def n_window_layers(self) -> int:
        """Layers that attend through the sliding window."""
        if self.sliding_window is None:
            return 0
        return self.layers if self.window_layers is None else self.window_layers

    @property
    def training_seq(self) -> int:
        """The sequence length a training estimate assumes when none is given: the pretraining context."""
        return self.pretrain_seq or self.max_seq

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def norms_per_layer(self) -> int:
        return self.parallel_norms if self.parallel_block else 2

    @property
    def shared_block_input(self) -> bool:
        """Attention and MLP read the same normalised tensor (one-norm parallel block)."""
        return self.parallel_block and self.parallel_norms == 1

    @property
    def moe_layers(self) -> int:
        return 0 if self.moe is None else self.layers - self.moe.dense_layers

    @property
    def dense_layers(self) -> int:
        return self.layers - self.moe_layers


# --------------------------------------------------------------------------------------------
# Hardware and prices
# --------------------------------------------------------------------------------------------

PriceKind = Literal["on-demand", "reserved-1y", "reserved-3y", "spot", "capacity-block", "purchase"]


class Price(Strict):
    """One price point: an hourly rate per GPU, or a purchase price per GPU (capex)."""

    provider: str
    kind: PriceKind = "on-demand"
    usd_per_gpu_hour: float | None = Field(None, gt=0, le=MAX_USD_PER_GPU_HOUR)
    usd_per_gpu: float | None = Field(
        None, gt=0, le=MAX_USD_PER_GPU, description="purchase price per GPU incl. its server share"
    )
    date: str
    source: str
    note: str | None = None
    max_gpus: GpuCount | None = Field(
        None, description="the most GPUs the offer rents or sells as one cluster, where its source says (a peer "
        "marketplace's single cards: 1); null: not stated. The search caps the SKU there at this price"
    )

    @model_validator(mode="after")
    def _check(self) -> Price:
        if (self.usd_per_gpu_hour is None) == (self.usd_per_gpu is None):
            raise ValueError("give exactly one of usd_per_gpu_hour (rental) or usd_per_gpu (purchase)")
        if self.kind == "purchase" and self.usd_per_gpu is None:
            raise ValueError("a purchase price needs usd_per_gpu")
        return self


def compute_dtype(precision: str, fp8_recipe: str | None) -> str:
    """The tensor-core format a job needs: its precision, or `mxfp8` for fp8 under MX block scaling (whose
    32-element E8M0 scales only Blackwell's tensor cores apply; GpuSku.block_scaled_fp8)."""
    return "mxfp8" if precision == "fp8" and fp8_recipe == "mxfp8" else precision


# HBM bytes per element TE's quantization kernels move per fp8 GEMM, by recipe (Efficiency.fp8_quantize_bytes)
FP8_QUANTIZE_BYTES: dict[Fp8Recipe, float] = {"delayed": 6.0, "current": 12.0, "mxfp8": 10.0, "blockwise": 10.0}


class Efficiency(Strict):
    """Achievable fractions of peak, per SKU, and the overlap assumptions of the time model.

    Every default is named and sourced: the first five come from measurements per SKU in
    catalogs/gpus.yaml; the rest are properties of the software stack (NCCL, Megatron-LM, flash
    attention) that hold for every SKU unless a catalog entry or a scenario overrides them.
    """

    gemm: float = Field(0.70, ge=MIN_EFFICIENCY, le=1, description="large bf16 GEMM TFLOP/s over dense peak")
    gemm_fp8: float | None = Field(None, ge=MIN_EFFICIENCY, le=1, description="large fp8 GEMM over fp8 peak")
    hbm: float = Field(0.85, ge=MIN_EFFICIENCY, le=1, description="achieved HBM copy bandwidth over spec")
    intra_node: float = Field(0.80, ge=MIN_EFFICIENCY, le=1, description="NCCL bus bandwidth over NVLink unidir spec")
    inter_node: float = Field(0.80, ge=MIN_EFFICIENCY, le=1, description="NCCL bus bandwidth over NIC line rate")
    flash_attention: float = Field(
        0.65,
        ge=MIN_EFFICIENCY,
        le=1,
        description=(
            "fused (flash) attention rate over the large-GEMM rate, forward and backward together. "
            "FlashAttention-2 reaches 50-73% of A100 peak forward (Dao 2023, arXiv 2307.08691) against "
            "87% for a large GEMM; FlashAttention-3 reaches 75% of H100 peak forward (Shah et al. 2024, "
            "arXiv 2407.08608) against 80%; backward kernels run slower than forward in both. Calibrated on the "
            "published runs within that range (benchmarks/calibrate.py): 0.65"
        ),
    )
    gemm_unaligned: float = Field(
        0.68,
        ge=MIN_EFFICIENCY,
        le=1,
        description=(
            "GEMM rate when a dimension is not a multiple of 128 bytes (64 16-bit elements), relative to "
            "an aligned one: tensor-core kernels are tiled for that alignment (NVIDIA, Matrix Multiplication "
            "Background, DU-09799-001 §2.2). BigScience measured 94.4 against 120.1 TFLOP/s for hidden 14400 "
            "against 13824 with the same A100 layout (TP8 PP10 DP4; bigscience tr11-176B-ml "
            "chronicles-prequel.md, 'tile and wave quantization'), which this value reproduces"
        ),
    )
    nic_aggregation: float = Field(
        1.5,
        ge=1,
        le=64,
        description=(
            "NICs one GPU's share of an inter-node ring collective uses when several ranks of the group share "
            "a node (at most that many ranks). NCCL opens several rings that leave the node at different GPUs, "
            "so a full-node group drives every NIC: a 16 GiB all-reduce over 4 x 8 B200 reaches 382 GB/s busbw "
            "on 8 x 50 GB/s (stas00/ml-engineering network/README.md, NCCL 2.27), but the 64-512 MiB collectives "
            "of training reach a quarter to half of that. Calibrated on the published runs (one value for all, "
            "benchmarks/calibrate.py): 1.5"
        ),
    )
    nccl_base_latency_us: float = Field(
        8.4,
        ge=0,
        le=MAX_LATENCY_US,
        description="fixed latency of one ring collective (NCCL src/graph/tuning.cc, ring/Simple)"
    )
    nccl_hop_latency_nvlink_us: float = Field(
        3.4,
        ge=0,
        le=MAX_LATENCY_US,
        description="latency per ring step over NVLink (NCCL tuning.cc hwLat, ring/Simple)"
    )
    nccl_hop_latency_net_us: float = Field(
        9.6,
        ge=0,
        le=MAX_LATENCY_US,
        description="latency per ring step across the network (NCCL tuning.cc hwLat, ring/Simple)"
    )
    tp_overlap: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "fraction of a layer's GEMM time that can hide its tensor-parallel collectives. 0: Megatron-LM "
            "issues them on the compute stream between dependent GEMMs; 1 with Transformer Engine's "
            "userbuffers (--tp-comm-overlap), which pipelines them chunk by chunk with the GEMMs"
        ),
    )
    dp_overlap: float = Field(
        1.0,
        ge=0,
        le=1,
        description=(
            "fraction of the last micro-batch's backward that hides the gradient reduction: PyTorch DDP and "
            "Megatron-Core reduce gradient buckets as backward produces them (Li et al. 2020, PyTorch "
            "Distributed); DeepSpeed's pipeline engine reduces after the last backward whatever this says "
            "(deepspeed/runtime/pipe/schedule.py TrainSchedule: ReduceGrads in the final step)"
        ),
    )
    param_gather_overlap: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "fraction of the first micro-batch's forward that hides the ZeRO-1/2 all-gather of the updated "
            "parameters: Megatron-Core overlaps it with --overlap-param-gather and otherwise all-gathers inside "
            "the optimizer step (megatron/core/optimizer/distrib_optimizer.py); DeepSpeed's ZeRO-1/2 step always "
            "all-gathers before it returns (deepspeed/runtime/zero/stage_1_and_2.py step). null: the framework's "
            "default (0 for deepspeed, else 1)"
        ),
    )
    dp_bucket_params: int = Field(
        40_000_000,
        gt=0,
        le=10**13,
        description=(
            "parameters per gradient bucket; the last bucket's reduction is always exposed "
            "(Megatron-Core DistributedDataParallelConfig.bucket_size default)"
        ),
    )
    zero3_overlap: float = Field(
        1.0,
        ge=0,
        le=1,
        description=(
            "fraction of compute that hides ZeRO-3 parameter gathers and gradient reduce-scatters: the next "
            "layer's parameters are prefetched while this one computes (PyTorch FSDP, Zhao et al. 2023, "
            "§3.3; DeepSpeed stage3_prefetch_bucket_size); the first layer's gather is always exposed"
        ),
    )
    ep_overlap: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "fraction of a micro-batch's compute that hides the MoE dispatch and combine: Megatron-Core's "
            "--overlap-moe-expert-parallel-comm runs one micro-batch's all-to-all under another's forward or "
            "backward (megatron/core/pipeline_parallel/combined_1f1b.py); 0 = exposed, as by default"
        ),
    )
    cp_overlap: float = Field(
        1.0,
        ge=0,
        le=1,
        description=(
            "fraction of attention compute that hides the context-parallel K/V ring exchange "
            "(ring attention sends the next chunk while computing on the current one; Liu et al. 2023)"
        ),
    )
    dp_bucket_params_per_rank: int = Field(
        1_000_000,
        ge=0,
        description=(
            "gradient-bucket parameters added per data-parallel rank: Megatron-Core's default bucket is "
            "max(dp_bucket_params, this × DP size) parameters (megatron/core/distributed/"
            "distributed_data_parallel.py), so larger DP groups stay bandwidth-bound"
        ),
    )
    comm_interference: float = Field(
        0.19,
        ge=0,
        le=1,
        description=(
            "fraction by which compute slows down while a NCCL collective runs beside it (its kernels take "
            "SMs and HBM bandwidth): overlapped execution slowed computation by 18.9% on average over GPT and "
            "Llama layers on A100, H100, MI250 and MI210 (arXiv 2507.03114, 'Characterizing "
            "Compute-Communication Overlap in GPU-Accelerated Distributed Deep Learning'); charged on the "
            "overlapped span of every hidden collective"
        ),
    )
    tp_overlap_sm_share: float = Field(
        0.12,
        ge=0,
        lt=1,
        description=(
            "share of the SMs Transformer Engine's userbuffers take from a GEMM it overlaps with a pipelined "
            "or bulk reduce-scatter/all-gather: 16 SMs by default (transformer_engine/pytorch/module/base.py "
            "initialize_ub, num_sm=16 with set_sm_margin), 16 of H100's 132; ring-exchange all-gathers run on "
            "copy engines and take none"
        ),
    )
    gemm_mxfp8: float | None = Field(
        None,
        ge=MIN_EFFICIENCY,
        le=1,
        description=(
            "MXFP8 (1×32 block-scaled) GEMM rate relative to a per-tensor fp8 GEMM, on GPUs with native "
            "block-scaled tensor cores (Blackwell); null where MXFP8 is not native. Transformer Engine's "
            "pre-quantized 5B-layer benchmark on B300 took 7.16 ms per layer in MXFP8 against 6.81 ms in "
            "per-tensor fp8 (TransformerEngine docs/examples/gemm_profiling/gemm_profiling.rst): 0.95"
        ),
    )
    gemm_fp8_block: float | None = Field(
        None,
        ge=MIN_EFFICIENCY,
        le=1,
        description=(
            "fp8 block-scaled GEMM rate (1×128 activation, 128×128 weight blocks, DeepSeek-V3 style) relative "
            "to a per-tensor fp8 GEMM where cuBLAS runs it natively (Hopper); null elsewhere (on Blackwell "
            "Transformer Engine emulates it with MXFP8). TE's 5B-layer benchmark on H200: 22.88 ms per layer "
            "with block scaling against 16.79 ms pre-quantized per-tensor; with block quantization charged "
            "like MXFP8's, the GEMMs run at 0.84 (TransformerEngine docs/examples/gemm_profiling)"
        ),
    )
    fp8_quantize_bytes: dict[Fp8Recipe, float] = Field(
        default_factory=lambda: dict(FP8_QUANTIZE_BYTES),
        description=(
            "HBM bytes per element that Transformer Engine's quantization kernels move around each fp8 GEMM "
            "(input, weight and output-gradient elements; amax, scale, cast and the transposed or column-wise "
            "copy), by recipe. From TE's GEMM benchmark of a 5B layer in autocast against pre-quantized mode "
            "(docs/examples/gemm_profiling): per-layer overheads of 0.99 ms (delayed), 2.34 ms (current) and "
            "1.82 ms (MXFP8) on B300, 2.2 ms (delayed) and 3.5 ms (current) on H200, over 1.24 G quantized "
            "elements at 85% of spec HBM bandwidth: 5.4-7.3, 11.6-12.8 and 10 bytes per element"
        ),
    )
    host_link_gbs: float = Field(
        25.0,
        ge=MIN_RATE,
        description=(
            "achievable GPU↔host bandwidth per direction, GB/s, for activation offload: PCIe Gen4 x16 "
            "(32 GB/s spec) moves about 25 GB/s in practice; catalog entries give Gen5 and NVLink-C2C parts"
        ),
    )
    kernel_launch_us: float = Field(
        6.0,
        ge=0,
        description=(
            "CPU time to issue one kernel from eager PyTorch (dispatcher, autograd and the CUDA launch): "
            "a layer whose GPU work is shorter than its kernels' issue time runs at the CPU's pace. A few "
            "microseconds per launch (NVIDIA, 'Getting Started with CUDA Graphs'); CUDA graphs replay a "
            "captured step with `graph_launch_us` per kernel instead"
        ),
    )
    graph_launch_us: float = Field(
        1.0,
        ge=0,
        description="GPU-side time per kernel node of a replayed CUDA graph (no CPU issue per kernel)",
    )
    source: str = "planner defaults (see docs in catalogs/gpus.yaml)"


# Architecture generation by catalog-name prefix (the longest prefix wins): what a catalog entry is when its
# `generation` is not stated. A scenario's `gpus:` entry inherits its base's generation.
Generation = Literal["volta", "ampere", "hopper", "blackwell", "ada", "cdna2", "cdna3", "cdna4", "other"]
GENERATION_PREFIXES: tuple[tuple[str, Generation], ...] = (
    ("v100", "volta"), ("a100", "ampere"), ("a10", "ampere"), ("h100", "hopper"), ("h200", "hopper"),
    ("h800", "hopper"), ("h20", "hopper"), ("gh200", "hopper"), ("b100", "blackwell"), ("b200", "blackwell"),
    ("gb200", "blackwell"), ("b300", "blackwell"), ("gb300", "blackwell"), ("rtx-5090", "blackwell"),
    ("l40s", "ada"), ("l4", "ada"), ("rtx-4090", "ada"), ("mi250", "cdna2"), ("mi300", "cdna3"),
    ("mi325", "cdna3"), ("mi355", "cdna4"),
)


def generation_of_name(name: str) -> Generation:
    """The architecture generation a GPU name starts with, 'other' when no prefix matches."""
    low = name.lower()
    for prefix, gen in sorted(GENERATION_PREFIXES, key=lambda p: -len(p[0])):
        if low.startswith(prefix):
            return gen
    return "other"


class GpuSku(Strict):
    """One accelerator as sold: dense peaks, memory, interconnect, power and prices."""

    name: str = Field(description="catalog id, e.g. h100-sxm")
    aliases: list[str] = []
    vendor: str
    description: str
    peak_tflops: dict[PeakDtype, Tflops] = Field(
        description="dense (no 2:4 sparsity) tensor-core peak per dtype, TFLOP/s"
    )
    hbm_bytes: int = Field(
        ge=1, le=MAX_BYTES_PER_GPU, description="memory the driver reports (nvidia-smi total), bytes"
    )
    marketed_gb: float | None = Field(None, description="the vendor's memory label (what blog arithmetic divides by)")
    hbm_bandwidth_tbs: float = Field(ge=MIN_RATE, le=1000, description="spec memory bandwidth, TB/s (decimal)")
    node_size: GpuCount = Field(8, description="GPUs in one scale-up (NVLink/xGMI) domain")
    host_gpus: GpuCount | None = Field(
        None, description="GPUs of one host (a compute tray) where the scale-up domain spans several hosts: a job "
        "may run on any whole number of them (GB200 NVL72: 18 trays of 4 GPUs); null = node_size")
    intra_node_gbs: float = Field(ge=MIN_RATE, le=100_000, description="scale-up bandwidth per GPU per direction, GB/s")
    network_gbps: float = Field(ge=MIN_RATE, le=100_000, description="scale-out NIC bandwidth per GPU, Gbit/s")
    tdp_w: int = Field(ge=1, le=100_000, description="board power, W")
    rated_tdp_w: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="the board power its peaks and efficiencies were measured at, when `tdp_w` is a lower "
        "power limit (a scenario's `gpus:` entry that caps a catalog part); null = tdp_w",
    )
    block_scaled_fp8: bool = Field(
        False, description="tensor cores that apply MX block scales in the GEMM (MXFP8: Blackwell); without them "
        "Transformer Engine refuses the mxfp8 recipe")
    generation: Generation | None = Field(
        None, description="architecture generation (hopper, blackwell, …): which kernels and fp8 recipes the "
        "frameworks pick on it; null = from the catalog name (a scenario GPU inherits its base's)")
    base: str | None = Field(None, description="the catalog entry a scenario GPU derives from (null: a catalog entry)")
    efficiency: Efficiency = Efficiency()
    prices: list[Price] = []
    source: str

    @property
    def arch(self) -> Generation:
        """The architecture generation: the stated one, else the one the name starts with."""
        return self.generation or generation_of_name(self.name)

    @model_validator(mode="after")
    def _check(self) -> GpuSku:
        if "bf16" not in self.peak_tflops and "fp16" not in self.peak_tflops:
            raise ValueError("peak_tflops needs bf16 or fp16")
        if self.host_gpus is not None and self.node_size % self.host_gpus:
            raise ValueError(f"host_gpus: {self.host_gpus} does not divide node_size ({self.node_size})")
        return self

    def host_on(self, node: int) -> int:
        """GPUs of one host on scale-up domains of `node` GPUs (a scenario's gpus_per_node): `host_gpus` where
        it divides the domain, else the whole domain."""
        return self.host_gpus if self.host_gpus is not None and node % self.host_gpus == 0 else node

    def supports(self, dtype: str) -> bool:
        """Whether the GPU has tensor cores for a compute dtype (bf16 and fp16 stand in for each other; mxfp8,
        planner.schema.compute_dtype, needs block-scaled fp8)."""
        table = self.peak_tflops
        if dtype == "mxfp8":
            return "fp8" in table and self.block_scaled_fp8
        return dtype in table or (dtype in ("bf16", "fp16") and ("bf16" in table or "fp16" in table))

    def peak(self, dtype: str) -> float:
        """Dense peak TFLOP/s for a compute dtype, falling back bf16 ↔ fp16 (V100 has no bf16)."""
        from planner.errors import InputError

        table = self.peak_tflops
        if dtype in table:
            return table[dtype]
        if dtype in ("bf16", "fp16") and self.supports(dtype):
            return table.get("bf16") or table["fp16"]
        raise InputError(f"{self.name} has no {dtype} tensor cores: precision {dtype} cannot run on it")


class GpuDefinition(Strict):
    """A GPU a scenario defines (`gpus:`) in the catalog's own format, inheriting every field it does not
    state from a catalog entry (`base:`): a power-capped or larger-memory variant, or a part not yet in
    the catalog. `memory_gib` and `hbm_tb_s` are shorthands for `hbm_bytes` and `hbm_bandwidth_tbs`."""

    name: str = Field(min_length=1, max_length=100, description="the name the scenario uses for it")
    base: str = Field(description="catalog GPU it inherits from")
    description: str | None = None
    source: str | None = Field(None, description="where its figures come from")
    memory_gib: float | None = Field(None, gt=0, le=MAX_BYTES_PER_GPU / GIB, description="usable memory, GiB")
    hbm_bytes: int | None = Field(None, ge=1, le=MAX_BYTES_PER_GPU)
    hbm_tb_s: float | None = Field(None, ge=MIN_RATE, le=1000, description="memory bandwidth, TB/s")
    hbm_bandwidth_tbs: float | None = Field(None, ge=MIN_RATE, le=1000)
    peak_tflops: dict[PeakDtype, Tflops] | None = Field(None, description="merged over the base's peaks")
    node_size: GpuCount | None = None
    host_gpus: GpuCount | None = None
    intra_node_gbs: float | None = Field(None, ge=MIN_RATE, le=100_000)
    network_gbps: float | None = Field(None, ge=MIN_RATE, le=100_000)
    tdp_w: int | None = Field(
        None, ge=1, le=100_000, description="board power; below the base's it is a power limit (slower clocks)"
    )
    block_scaled_fp8: bool | None = Field(None, description="MX block-scaled fp8 tensor cores (default: the base's)")
    generation: Generation | None = Field(None, description="architecture generation (default: the base's)")
    efficiency: dict[str, float] | None = Field(None, description="overrides of the base's Efficiency fields")
    prices: list[Price] | None = None

    @model_validator(mode="after")
    def _one_each(self) -> GpuDefinition:
        for short, full in (("memory_gib", "hbm_bytes"), ("hbm_tb_s", "hbm_bandwidth_tbs")):
            if getattr(self, short) is not None and getattr(self, full) is not None:
                raise ValueError(f"give {short} or {full}, not both")
        return self


# --------------------------------------------------------------------------------------------
# Layout and training recipe
# --------------------------------------------------------------------------------------------

Recompute = Literal["none", "selective", "full"]
Precision = Literal["bf16", "fp16", "fp8"]
Optimizer = Literal["adam", "adamw", "sgd", "adam8bit"]
MASTER_WEIGHTS_HELP = ("master copy of the 16-bit parameters: fp32, remainder (the 16 bits bf16 drops: Apex "
                       "store_param_remainders, Megatron --use-precision-aware-optimizer), fp16, or none (the 16-bit "
                       "parameters are updated in place: Apex optim.dtype bf16)")
MOMENT_DTYPE_HELP = ("dtype of the optimizer's moments (Megatron --exp-avg-dtype/--exp-avg-sq-dtype with "
                     "--use-precision-aware-optimizer, Apex optim.dtype, torchtitan optimizer.implementation "
                     "fused_opt_states_bf16); adam8bit keeps its own 8-bit moments")


def check_optimizer_state(optimizer: str, moment_dtype: str, master_weights: str, precision: str) -> None:
    """8-bit Adam quantises its moments itself: another moment dtype would be a second, contradictory answer. The
    16-bit remainder completes a bf16 parameter (fp8 recipes keep bf16 weights), not an fp16 one."""
    if optimizer == "adam8bit" and moment_dtype != "fp32":
        raise ValueError(f"moment_dtype {moment_dtype}: adam8bit keeps its moments in 8 bits; leave moment_dtype fp32")
    if master_weights == "remainder" and precision == "fp16":
        raise ValueError("master_weights remainder: the 16-bit remainder completes bf16 parameters, not fp16 ones")


# Frameworks whose sharded parameters stay fp32 and are the master copy (FSDP's mixed precision casts to bf16 only
# for compute: torch.distributed.fsdp MixedPrecisionPolicy); the others keep 16-bit parameters and a master apart.
FP32_PARAM_FRAMEWORKS = frozenset({"torchtitan", "fsdp"})


def master_weights_problem(framework: str, master_weights: str) -> str | None:
    """Why a framework cannot keep that master copy (FSDP's fp32 shard is the master), or None."""
    if framework in FP32_PARAM_FRAMEWORKS and master_weights != "fp32":
        return f"{master_weights}: {framework} keeps its sharded fp32 parameters as the master; only fp32"
    return None


# Megatron-Core's --recompute-modules (megatron/core/transformer/transformer_config.py recompute_modules).
# Megatron-Core's --moe-token-dispatcher-type (megatron/core/transformer/moe/token_dispatcher.py); flex runs
# DeepEP or HybridEP (--moe-flex-dispatcher-backend), which send a token once per destination node.
TokenDispatcher = Literal["alltoall", "allgather", "flex"]
RecomputeModule = Literal["core_attn", "mlp", "moe_act", "layernorm", "mla_up_proj", "moe", "shared_experts"]


class Layout(Strict):
    """How one training job is split over GPUs, and the numeric recipe it runs with."""

    tp: GpuCount = 1
    pp: GpuCount = 1
    vpp: int = Field(1, ge=1, le=MAX_LAYERS, description="virtual pipeline stages (model chunks) per PP rank")
    dp: GpuCount = 1
    cp: GpuCount = 1
    ep: int = Field(ge=1, le=MAX_EXPERTS, default=1, description="expert parallel size, carved out of dp·cp (Megatron)")
    zero: Literal[0, 1, 2, 3] = Field(1, description="0 DDP, 1 distributed optimizer, 2 +grads, 3 +params")
    recompute: Recompute = "none"
    sequence_parallel: bool = False
    micro_batch: BatchSize = 1
    global_batch: BatchSize = Field(description="sequences per optimizer step")
    precision: Precision = Field("bf16", description="GEMM dtype; fp8 keeps bf16 weights")
    fp32_grad_accumulation: bool = Field(True, description="fp32 main_grad buffer (Megatron)")
    optimizer: Optimizer = "adamw"
    offload_optimizer: bool = Field(False, description="optimizer state and master weights in CPU RAM")
    master_weights: MasterWeights = Field("fp32", description=MASTER_WEIGHTS_HELP)
    moment_dtype: MomentDtype = Field("fp32", description=MOMENT_DTYPE_HELP)
    recompute_num_layers: int | None = Field(
        None,
        ge=1,
        le=MAX_LAYERS,
        description="full recompute of only this many layers per model chunk (Megatron --recompute-num-layers "
        "with recompute_method block; with uniform, the layers per checkpointed group); null = every layer "
        "when recompute is full",
    )
    dp_shard: GpuCount | None = Field(
        None,
        description="ZeRO/FSDP sharding group size within dp·cp (HSDP: shard inside, replicate across); "
        "null = shard over the whole dp·cp group",
    )
    pipeline_layout: tuple[Annotated[int, Field(ge=0, le=MAX_LAYERS)], ...] | None = Field(
        None, min_length=1, max_length=MAX_LAYERS,
        description="decoder layers of each virtual pipeline stage k = chunk·pp + rank, pp·vpp of them (Megatron "
        "--pipeline-model-parallel-layout; the embedding sits with the first, the loss with the last); null = the "
        "framework's split",
    )
    expert_tp: GpuCount | None = Field(
        None,
        description="tensor parallelism of the routed experts (Megatron --expert-tensor-parallel-size), a divisor "
        "of tp; below tp, expert parallelism folds over TP·DP·CP (ep·expert_tp divides tp·dp·cp); null = tp",
    )
    account_for_embedding_in_pipeline_split: bool = Field(
        False, description="the embedding counts as a layer when splitting layers over pipeline stages (Megatron)"
    )
    account_for_loss_in_pipeline_split: bool = Field(
        False, description="the output layer and loss count as a layer when splitting over pipeline stages (Megatron)"
    )
    recompute_method: Literal["uniform", "block"] = Field(
        "block",
        description="how recompute_num_layers applies (Megatron --recompute-method, megatron/core/transformer/"
        "transformer_block.py _checkpointed_forward): block recomputes that many layers of each model chunk and "
        "keeps the rest; uniform checkpoints every group of that many layers",
    )
    pipeline_first_stage_layers: LayerCount | None = Field(
        None,
        description="layers on the first pipeline stage, the other stages sharing the rest evenly (Megatron "
        "--decoder-first-pipeline-num-layers, megatron/core/transformer/transformer_block.py)",
    )
    pipeline_last_stage_layers: LayerCount | None = Field(
        None,
        description="layers on the last pipeline stage (Megatron --decoder-last-pipeline-num-layers); null with an "
        "uneven depth = ⌈layers/pp⌉ per stage and the rest on the last",
    )
    activation_offload_layers: LayerCount | None = Field(
        None,
        description="the first N transformer layers' activations kept in host memory from their forward to their "
        "backward (Megatron-Core --cpu-offloading-num-layers N, Transformer Engine's cpu_offload), as `solve` chooses "
        "it; null = what implementation.activation_offload states (none by default)",
    )

    @model_validator(mode="after")
    def _optimizer_state(self) -> Layout:
        check_optimizer_state(self.optimizer, self.moment_dtype, self.master_weights, self.precision)
        return self

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def grad_accumulation(self) -> int:
        return self.global_batch // (self.dp * self.micro_batch)


# Flash-attention kernels planner tells apart by speed (planner.model.perf `_flash_kernel_share`).
AttentionKernel = Literal["native", "fa2", "triton"]
# How the loss reads the logits (planner.model.memory `extras_bytes`): what it keeps and what backward allocates.
CrossEntropyKernel = Literal["fp32", "vocab_parallel", "fused", "fused_inplace"]


class Implementation(Strict):
    """Which kernels the framework runs: changes what autograd saves, not the math."""

    attention: Literal["flash", "eager"] = Field("flash", description="flash: no s² tensor saved")
    attention_kernel: AttentionKernel | None = Field(
        None, description="which flash kernel runs: native (the GPU generation's own: cuDNN/TE fused attention, "
        "FlashAttention-3 on Hopper), fa2 (FlashAttention-2, PyTorch SDPA's flash backend), triton (the Triton "
        "FlashAttention of llm-foundry's attn_impl: triton); null = the framework's default",
    )
    fused_kernels: bool | None = Field(
        None, description="fused norms/SwiGLU/softmax (Megatron, TE); False = eager PyTorch ops, as Hugging Face "
        "writes them; null = the framework's default (fused: megatron-core, deepspeed; eager: torchtitan, fsdp)",
    )
    cross_entropy: CrossEntropyKernel | None = Field(
        None, description="how the loss reads the logits: fp32 (eager PyTorch on an fp32 copy: torchtitan, Hugging "
        "Face), vocab_parallel (Megatron's: the fp32 copy exponentiated in place), fused (one kernel on the 16-bit "
        "logits, keeping them and an fp32 log-sum-exp, writing a new 16-bit gradient: flash-attn's cross_entropy, "
        "llm-foundry's default loss_fn fused_crossentropy), fused_inplace (the same, the gradient written over the "
        "logits in forward: Transformer Engine's parallel cross-entropy, Megatron --cross-entropy-fusion-impl te); "
        "null = the framework's default",
    )
    loss_chunks: int | None = Field(
        None, ge=1, le=MAX_SEQ, description="the output layer and loss run over 1/N of a micro-batch's tokens at a "
        "time, forward and backward at once, before the decoder's backward (torchtitan's ChunkedLossWrapper "
        "num_chunks, its registry configs' default since 2026: 8); null = all tokens at once",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="hidden and attention dropout probability")
    framework: Framework = Field(
        "megatron-core",
        description="megatron-core (Megatron-LM with Transformer Engine, NeMo 2, Megatron-Bridge), torchtitan (FSDP2), "
        "deepspeed, fsdp (PyTorch FSDP1 / Composer / Accelerate): sets the defaults of the knobs below",
    )
    fp8_recipe: Fp8Recipe | None = Field(
        None, description="fp8 scaling recipe when precision is fp8; null = the framework's default for the GPU"
    )
    fp8_param_gather: bool = Field(
        False, description="keep and all-gather parameters in fp8 (Megatron --fp8-param-gather): no bf16 weight copy"
    )
    recompute_modules: list[RecomputeModule] | None = Field(
        None, description="what selective recompute recomputes (Megatron --recompute-modules); null = core_attn"
    )
    op_sac_saves_attention: bool | None = Field(
        None, description="torchtitan's op-level selective checkpoint keeps the attention kernel's output; false: "
        "it reruns attention in backward, as torchtitan did for cuDNN attention (its Blackwell kernel) before "
        "b39377f (December 2025) put every SDPA backend on its save list; null = kept",
    )
    pipeline_outputs_kept: bool = Field(
        False, description="the last pipeline stage keeps every micro-batch's output (its 16-bit logits) until the "
        "step ends: torch.distributed.pipelining merges them for step()'s return (stage.py output_chunks), as "
        "torchtitan ran it before e5ef99aab (October 2025) passed return_outputs=False",
    )
    reshard_after_forward: bool | None = Field(
        None,
        description="FSDP/ZeRO-3: free gathered parameters after forward and gather again for backward; "
        "null = the framework's default (FSDP2: yes, except torchtitan with pipeline parallelism)",
    )
    moe_token_dispatcher: TokenDispatcher | None = Field(
        None, description="how MoE tokens reach their experts (Megatron --moe-token-dispatcher-type): alltoall (one "
        "copy per routed expert), allgather (every rank gathers the EP group's tokens), flex (DeepEP/HybridEP: one "
        "copy per destination node, forwarded over NVLink); null = alltoall, what the MoE recipes set",
    )
    cp_exchange: CpExchange | None = Field(
        None, description="how context parallelism moves K/V between ranks: ring (Transformer Engine's p2p ring, "
        "Megatron --cp-comm-type p2p: each K/V chunk goes to the next rank under the attention of the current "
        "one), allgather (PyTorch's context_parallel with its default rotate method, as torchtitan runs it: one "
        "all-gather of every rank's K/V per attention call, dK/dV passed around the ring in fp32; "
        "torch/distributed/tensor/experimental/_attention.py), alltoall (the same with K/V passed chunk by chunk: "
        "torchtitan context_parallel_rotate_method alltoall), ulysses (Transformer Engine's all-to-all, "
        "DeepSpeed-Ulysses, Megatron --cp-comm-type a2a: Q, K and V go from sequence shards to head shards before "
        "attention and the output back after, none of it under compute; each CP rank takes whole heads), "
        "te_allgather (Transformer Engine's all-gather, Megatron --cp-comm-type all_gather: every rank's K/V "
        "gathered before the attention of each pass, exposed, and dK/dV reduce-scattered in 16 bits after the "
        "backward), hierarchical (Transformer Engine's a2a+p2p, Megatron --cp-comm-type a2a+p2p: the all-to-all "
        "over groups of cp_a2a_size neighbouring CP ranks, then the p2p ring over the cp/cp_a2a_size groups); "
        "null = the framework's default (torchtitan: allgather, the others: ring)",
    )
    cp_a2a_size: int | None = Field(
        None, ge=2, le=MAX_GPUS, description="the all-to-all level of the hierarchical CP exchange: CP ranks per "
        "head-sharding group, neighbours in CP rank order (Megatron --hierarchical-context-parallel-sizes A P, "
        "megatron/core/parallel_state.py create_hierarchical_groups); it must divide cp and each TP rank's query and "
        "K/V heads; only with cp_exchange hierarchical",
    )
    kv_repeat: bool = Field(
        False, description="the attention kernel receives K and V repeated to every query head, as torchtitan's "
        "models did (repeat_kv before SDPA) until ff0829c10 (January 2026): they are saved, exchanged under "
        "context parallelism and buffered at the query heads' width",
    )
    activation_offload: bool = Field(
        False, description="activations offloaded to CPU memory between fwd and bwd; under megatron-core without "
        "activation_offload_layers, solve chooses how many layers (none, a quarter, half, three quarters or all but "
        "the last: Megatron's count, at pp 1 without recompute) and estimate offloads every layer")
    activation_offload_layers: int | None = Field(
        None, ge=1, le=MAX_LAYERS, description="how many transformer layers' activations go to CPU memory "
        "(Megatron --cpu-offloading-num-layers, which implies --cpu-offloading; Transformer Engine offloads the "
        "first N); null = every layer when activation_offload is on",
    )
    cuda_graphs: bool = Field(False, description="CUDA graphs capture the step (fewer launches, static buffers)")
    cuda_graph_scope: CudaGraphScope | None = Field(
        None, description="what one CUDA graph captures: layer (a graph per layer, each with static input and output "
        "buffers: Megatron --cuda-graph-impl local or transformer_engine) or step (the whole forward and backward, "
        "whose only static inputs are the tokens and labels: Megatron --cuda-graph-impl full_iteration, torchtitan's "
        "graph); null = the framework's (torchtitan: step, the others: layer); read only with cuda_graphs",
    )

    @model_validator(mode="after")
    def _hierarchical_cp(self) -> Implementation:
        if (self.cp_exchange == "hierarchical") != (self.cp_a2a_size is not None):
            raise ValueError("cp_exchange hierarchical and cp_a2a_size go together: the hierarchical exchange needs "
                             "its all-to-all group size, and no other exchange has one")
        return self


class Overheads(Strict):
    """Memory that is neither model state nor activations. Defaults are documented in README."""

    # CUDA context + cuBLAS/NCCL workspaces measured around 0.5-1 GiB per process on Hopper.
    reserve_bytes: BytesPerGpu = Field(int(1.0 * GIB), description="CUDA context and library workspaces")
    # PyTorch's caching allocator typically leaves 5-10 % of the peak unusable to fragmentation.
    fragmentation: float = Field(0.05, ge=0, lt=1, description="fraction of allocated bytes lost")
    # Megatron's DDP bucket / NCCL staging: a fixed communication buffer per GPU.
    comm_buffer_bytes: BytesPerGpu = Field(int(0.5 * GIB), description="NCCL and bucket staging buffers")
    # ZeRO-3 gathers parameters just in time. DeepSpeed caps the gathered ones at stage3_max_live_parameters
    # (default 1e9); FSDP holds the wrapped layer being computed and the prefetched next one.
    zero3_live_params: int | None = Field(
        1_000_000_000, gt=0, le=10**13, description="ZeRO-3 gathered-parameter cap; null = two whole layers (FSDP)"
    )


# --------------------------------------------------------------------------------------------
# Reliability: failures, checkpoints, restarts and maintenance (planner/model/reliability.py, docs/goodput.md)
# --------------------------------------------------------------------------------------------

# Llama 3 405B: 419 unexpected interruptions in a 54-day snapshot on 16,384 H100 = 2,048 eight-GPU nodes
# (Dubey et al. 2024, arXiv 2407.21783, §3.3.4 and Table 5): 419 / (2,048 × 54) × 1,000 = 3.79.
LLAMA3_FAILURES_PER_1000_NODE_DAYS = 419 / (2048 * 54) * 1000
# The same snapshot had 47 planned interruptions (firmware upgrades, configuration or dataset updates).
LLAMA3_PLANNED_PER_1000_NODE_DAYS = 47 / (2048 * 54) * 1000


class MaintenanceWindow(Strict):
    """Scheduled downtime: `hours` of every `every_days` days the job cannot run."""

    hours: float = Field(gt=0, le=8760, description="hours of downtime per period")
    every_days: float = Field(gt=0, le=3650, description="length of the period, days")

    @model_validator(mode="after")
    def _check(self) -> MaintenanceWindow:
        if self.hours >= self.every_days * 24:
            raise ValueError(f"{self.hours:g} hours of maintenance every {self.every_days:g} days leave no time")
        return self

    @property
    def fraction(self) -> float:
        return self.hours / (self.every_days * 24)


class Restart(Strict):
    """What one unexpected interruption costs before training resumes, besides the lost work.

    The checkpoint load is computed from the checkpoint size and `checkpoint.read`; `total_minutes` replaces
    all four parts (detection, rescheduling, initialisation and load) by one measured figure."""

    detection_minutes: float = Field(
        3.0, ge=0, le=1440,
        description="from the failure to the job being torn down: a crash is seen at once, a hang only after the "
        "watchdog's step timeout (180 s in Megatron-Bridge's resiliency defaults, nvidia-resiliency-ext)",
    )
    rescheduling_minutes: float = Field(
        1.0, ge=0, le=1440,
        description="replacing the failed node and requeueing the job: 1 minute for a top-priority job with spare "
        "nodes (Kokolis et al. 2024, arXiv 2410.21680, §IV ETTR scenarios)",
    )
    initialisation_minutes: float = Field(
        5.0, ge=0, le=1440,
        description="process launch, NCCL communicators, model build and warm-up: the restart overhead u0 = 5 min "
        "Kokolis et al. (arXiv 2410.21680) assume against measured jobs (range 5-20 min)",
    )
    total_minutes: float | None = Field(
        None, ge=0, le=1440, description="one measured restart time including the checkpoint load; replaces the parts"
    )


class StorageBandwidth(Strict):
    """Checkpoint storage bandwidth: per node, capped by what the file system delivers in aggregate."""

    per_node_gb_per_s: float = Field(
        1.0, ge=MIN_RATE, le=1000,
        description="GB/s (10^9 B) one node reads or writes. Llama 3: 2 TB/s sustained over 2,048 nodes = 0.98 "
        "(arXiv 2407.21783, §3.3.1); BLOOM: 2.3 TB in 40 s over 48 nodes = 1.2 (bigscience tr11-176B-ml chronicles)",
    )
    aggregate_gb_per_s: float | None = Field(
        None, ge=MIN_RATE, le=1e6, description="GB/s of the whole file system (Llama 3's Tectonic: 2,000 sustained, "
        "7,000 peak); null = no cap beyond the nodes'",
    )


class Checkpointing(Strict):
    """How often and how the training state is saved."""

    save: Literal["sync", "async"] = Field(
        "sync",
        description="sync: training waits for the write (Megatron-LM and torchtitan default); async: training "
        "waits only for the device-to-host copy, a background process writes (--async-save, DCP async_save)",
    )
    interval_minutes: Literal["auto"] | float = Field(
        "auto",
        description="training time between checkpoints, minutes (0 < m <= 10,080, a week); auto = Daly's optimum "
        "for the failure rate and save cost (Young 1974; Daly 2006)",
    )
    write: StorageBandwidth = StorageBandwidth()
    read: StorageBandwidth = Field(
        StorageBandwidth(), description="restart load bandwidth (no published read figure: the write figure)"
    )
    host_copy_gb_per_s: float = Field(
        25.0, ge=MIN_RATE, le=1000,
        description="async saves: device-to-host copy rate per GPU, GB/s; PCIe 4.0 x16 moves 32 GB/s per "
        "direction and pinned copies reach about 80 % of it (PCIe 5.0 doubles it)",
    )

    @model_validator(mode="after")
    def _check(self) -> Checkpointing:
        m = self.interval_minutes
        if m != "auto" and not 0 < m <= 10080:
            raise ValueError(f"interval_minutes must be 'auto' or minutes in (0, 10080], got {m:g}")
        return self


class Reliability(Strict):
    """Failures, checkpoints, restarts and maintenance: turns the ideal training time into the expected one.

    Unexpected failures arrive at a constant rate per node (Poisson), so a job on N nodes fails every
    1/(N·rate) on average: Meta measured 2.3-6.5 failures per 1,000 node-days on two A100 clusters
    (Kokolis et al. 2024, arXiv 2410.21680: RSC-2 2.34, RSC-1 6.50) and 3.8 on Llama 3's H100 job."""

    failures_per_1000_node_days: float = Field(
        LLAMA3_FAILURES_PER_1000_NODE_DAYS, gt=0, le=1000,
        description="unexpected interruptions per 1,000 node-days: 3.79 = Llama 3 405B's 419 in 54 days on 2,048 "
        "nodes (arXiv 2407.21783, Table 5); Meta's research clusters 2.34-6.50 (arXiv 2410.21680)",
    )
    gpus_per_node: int = Field(
        8, ge=1, le=72, description="GPUs in the node the failure rate counts (8-GPU HGX/DGX nodes in both sources)"
    )
    restart: Restart = Restart()
    checkpoint: Checkpointing = Checkpointing()
    planned_per_1000_node_days: float = Field(
        LLAMA3_PLANNED_PER_1000_NODE_DAYS, ge=0, le=1000,
        description="planned stops of the job (firmware upgrades, configuration or dataset updates) per 1,000 "
        "node-days, each a durable save and a restart without detection or lost work: 0.425 = Llama 3's 47 in "
        "54 days on 2,048 nodes (arXiv 2407.21783, §3.3.4)",
    )
    maintenance: MaintenanceWindow | float = Field(
        0.0, description="scheduled downtime besides those stops: a fraction of the wall-clock in [0, 1), or "
        "{hours, every_days}",
    )

    @model_validator(mode="after")
    def _check(self) -> Reliability:
        m = self.maintenance
        if not isinstance(m, MaintenanceWindow) and not 0 <= m < 1:
            raise ValueError(f"maintenance must be a fraction of the wall-clock in [0, 1) or {{hours, every_days}}, "
                             f"got {m:g}")
        return self

    @property
    def maintenance_fraction(self) -> float:
        return self.maintenance.fraction if isinstance(self.maintenance, MaintenanceWindow) else self.maintenance
