"""Published training runs (published_runs.yaml) as planner inputs: model, layout, GPU and what was measured.

Each entry states its model shape, parallel sizes, batch, GPU and a measured throughput; what it leaves
out takes a documented default (Megatron-LM's micro-batch 1, the recompute its FLOP formula presumes).
The software a source ran changes the time model only through what its own text states: the attention
kernels of its era, dropout, overlap switches and, for BLOOM, its fabric. `compare` puts a prediction
next to the measurement the way the source counts it: the step time where one is published, else
TFLOP/s per GPU (hardware FLOPs, recompute included, where the source's formula counts them: Narayanan
et al. Eq. 3 with k = 4 in the SC21 tables and BLOOM; model FLOPs otherwise), else tokens/s per GPU.
benchmarks/accuracy.py and `planner review --published RUN_ID` both read the runs through this module.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from planner.catalog import get_gpu
from planner.model.flops import full_recompute_share, step_flops
from planner.schema import Efficiency, Framework, GpuSku, Implementation, Layout, ModelSpec, MoESpec

# Documented defaults for fields a source leaves out.
DEFAULT_MICRO_BATCH = 1  # Megatron-LM's --micro-batch-size default


@dataclass(frozen=True)
class Software:
    """What a source's framework and cluster ran, where it changes the time model (not fitted: read
    from the source's era and its own description)."""

    attention: str  # "eager" before fused flash kernels reached Megatron (Transformer Engine, 2023)
    dropout: float  # Megatron-LM GPT default hidden/attention dropout 0.1; BLOOM trained without
    network_gbps: float | None = None  # per-GPU scale-out rate where the source names a different fabric
    framework: Framework = "megatron-core"  # planner's implementation.framework for the stack that ran
    fused_kernels: bool = True  # Megatron/TE fuse norms, activations, bias-dropout-add; eager PyTorch does not
    grad_reduce_16bit: bool = False  # gradients reduced in bf16 (NeMo-2 grad_reduce_in_fp32: false, FSDP bf16 reduce)
    kv_repeat: bool = False  # K/V repeated per query head before the attention kernel (Implementation.kv_repeat)


ERA_2021 = Software(attention="eager", dropout=0.1)  # Megatron-LM 2021-2022: fused softmax, no flash
# Megatron-DeepSpeed 2022 without dropout, on Jean Zay: 4 × 100 Gb/s Omni-Path per 8-GPU node
# (bigscience tr11-176B-ml README, "Hardware")
BLOOM = Software(attention="eager", dropout=0.0, network_gbps=4 * 100 / 8)
MODERN = Software(attention="flash", dropout=0.1)  # Megatron-Core with Transformer Engine
MODERN_NO_DROPOUT = Software(attention="flash", dropout=0.0)  # Llama-style recipes train without dropout
# The ZeRO-3 rows of SC21 Table 2 ran DeepSpeed (Narayanan et al. 2021 §5.2)
DEEPSPEED_2021 = Software(attention="eager", dropout=0.1, framework="deepspeed")
# Composer + llm-foundry: PyTorch FSDP1, eager PyTorch ops around a Triton flash-attention kernel; MPT
# trains without dropout (llmfoundry/models/mpt/configuration_mpt.py: resid_pdrop 0, attn_pdrop 0); the
# PURE and (mid-2023) DEFAULT mixed precision reduce gradients in bf16 (composer/trainer/mosaic_fsdp.py
# get_mixed_precision: reduce_dtype unset takes FSDP's param_dtype)
COMPOSER = Software(attention="flash", dropout=0.0, framework="fsdp", fused_kernels=False, grad_reduce_16bit=True)
# torchtitan: FSDP2, eager RMSNorm, SwiGLU and rotary around SDPA's flash kernel, no dropout; K/V repeated per
# query head before SDPA until ff0829c10 (January 2026), after every published torchtitan run
TORCHTITAN = Software(attention="flash", dropout=0.0, framework="torchtitan", fused_kernels=False, kv_repeat=True)
# Model families whose published configs are Llama-style: SwiGLU, RMSNorm, rotary, no biases, untied head.
LLAMA_STYLE = ("llama", "mistral", "mixtral", "qwen", "deepseek", "gemma", "gpt-oss", "olmo", "yi-")


def overlaps_of(other: str, settings: dict[str, Any] | None = None) -> dict[str, float]:
    """Overlap switches a run's own text states (Efficiency fields; defaults otherwise): its
    `parallelism.other` flags and, where the entry has them, its recipe's `framework_settings`."""
    flags: dict[str, float] = {}
    tp = str((settings or {}).get("tp_comm_overlap", "")).lower()
    # Transformer Engine pipelines TP collectives with the GEMMs; torchtitan's async TP does the same through
    # Inductor's micro-pipelined all-gather/reduce-scatter matmuls (parallelize_llama.py enable_async_tensor_parallel)
    async_tp = _flag((settings or {}).get("async_tp", (settings or {}).get("enable_async_tensor_parallel")))
    # "True, <ub cfg>" as a recipe reads, or NeMo 1's yaml key stated verbatim ("ub_tp_comm_overlap true (yaml)")
    if "--tp-comm-overlap" in other or re.match(r"(ub_tp_comm_overlap:?\s*)?true", tp) or async_tp:
        flags["tp_overlap"] = 1.0
    if "DDP impl = local" in other or "BF16_Optimizer" in other:
        # Megatron's "local" DDP and DeepSpeed's pipeline engine reduce gradients after backward
        flags["dp_overlap"] = 0.0
    if "overlap_grad_reduce false" in str((settings or {}).get("ddp", "")).lower():
        flags["dp_overlap"] = 0.0
    if "overlap_param_gather false" in str((settings or {}).get("ddp", "")).lower():
        flags["param_gather_overlap"] = 0.0  # the distributed optimizer all-gathers inside its step
    # Megatron-Core's EP all-to-all overlap (--overlap-moe-expert-parallel-comm)
    moe = str((settings or {}).get("moe_a2a_overlap", "")).lower()
    if re.search(r"overlap_moe_expert_parallel_comm:?\s*true", moe) or "--overlap-moe-expert-parallel-comm" in other:
        flags["ep_overlap"] = 1.0
    return flags


def llama_style(run: dict[str, Any]) -> bool:
    name = f"{run['model'].get('name') or ''} {run['id']}".lower()
    return any(k in name for k in LLAMA_STYLE)


def software_of(run: dict[str, Any]) -> Software:
    """The stack a run used, from its source and its recipe's `framework_settings` (framework, gradient
    reduction dtype)."""
    title = (run.get("source") or {}).get("title", "")
    settings = run.get("framework_settings") or {}
    framework = str(settings.get("framework", "")).lower()
    par = run.get("parallelism") or {}
    if "BigScience" in title or "BLOOM" in title:
        return BLOOM
    if "Narayanan" in title or "Korthikanti" in title:
        return DEEPSPEED_2021 if par.get("zero_stage") == 3 else ERA_2021
    if "composer" in framework or "llm-foundry" in title or "MosaicML" in title:
        return COMPOSER
    if "torchtitan" in title.lower() or "torchtitan" in framework or "FSDP2" in str(par.get("other") or ""):
        return TORCHTITAN
    sw = MODERN_NO_DROPOUT if llama_style(run) else MODERN
    if settings.get("grad_reduce_in_fp32") is False:
        sw = replace(sw, grad_reduce_16bit=True)
    return sw


@dataclass
class Case:
    """One published run ready to evaluate: `gpu` carries the source's fabric, `efficiency` its overlaps."""

    id: str
    model: ModelSpec
    layout: Layout
    gpu: GpuSku
    gpus_per_node: int
    seq: int
    impl: Implementation
    efficiency: Efficiency
    hardware_flops: bool  # the source's TFLOP/s count recompute
    measured_tflops: float | None
    measured_step: float | None
    measured_tokens_per_gpu: float | None
    notes: list[str] = field(default_factory=list)
    measured_memory: MeasuredMemory | None = None

    @property
    def sku(self) -> GpuSku:
        """The GPU with the run's own efficiencies, for `planner.workloads.training.evaluation.evaluate`."""
        return self.gpu.model_copy(update={"efficiency": self.efficiency})


@dataclass(frozen=True)
class Comparison:
    """A predicted throughput next to the measured one, in the quantity the source published."""

    quantity: str
    measured: float
    predicted: float
    error: float  # predicted / measured throughput − 1 (on step time: measured / predicted − 1)
    predicted_tflops: float  # TFLOP/s per GPU counted as the source counts them


def compare(case: Case, step_seconds: float) -> Comparison:
    """The prediction next to the measurement, each in the source's own convention. The step time is the
    direct measurement; tokens per second per GPU follow from it without any FLOP formula; TFLOP/s
    (or MFU × peak) carries the source's formula, so the predicted TFLOP/s is counted the source's way:
    recompute included where its formula counts it (Eq. 3 with k = 4), and the causal attention scores in
    full — every source in published_runs.yaml counts them so (published_runs.md §2), unlike planner's
    own MFU, which halves them (planner.model.flops)."""
    lay = case.layout
    tokens = lay.global_batch * case.seq
    flops = step_flops(case.model, case.seq, tokens, lay.recompute, causal=False,
                       full_share=full_recompute_share(lay, case.model.layers))
    work = flops.hardware if case.hardware_flops else flops.model
    tflops = work / (step_seconds * lay.gpus) / 1e12
    if case.measured_step is not None:
        return Comparison("step seconds", case.measured_step, step_seconds, case.measured_step / step_seconds - 1,
                          tflops)
    if case.measured_tokens_per_gpu is not None:
        per_gpu = tokens / (step_seconds * lay.gpus)
        return Comparison("tokens/s per GPU", case.measured_tokens_per_gpu, per_gpu,
                          per_gpu / case.measured_tokens_per_gpu - 1, tflops)
    assert case.measured_tflops is not None
    kind = "hardware" if case.hardware_flops else "model"
    return Comparison(f"{kind} TFLOP/s per GPU", case.measured_tflops, tflops, tflops / case.measured_tflops - 1,
                      tflops)


# The published runs ship with the package (data with sources), so `review --published` works anywhere.
PACKAGED_REFERENCE = Path(__file__).resolve().parents[1] / "data"


def reference_dir() -> Path | None:
    """$PLANNER_REFERENCE, else ../shared/reference beside the repository, else the copy shipped in
    planner/data; None when the file is absent."""
    env = os.environ.get("PLANNER_REFERENCE")
    if env:
        return Path(env) if (Path(env) / "published_runs.yaml").is_file() else None
    for path in (Path(__file__).resolve().parents[2].parent / "shared" / "reference", PACKAGED_REFERENCE):
        if (path / "published_runs.yaml").is_file():
            return path
    return None


def load_runs(ref: Path) -> list[dict[str, Any]]:
    return yaml.safe_load((ref / "published_runs.yaml").read_text())["runs"]


@functools.lru_cache(maxsize=4)
def _runs_by_id(path: Path, mtime_ns: int) -> dict[str, dict[str, Any]]:
    """The runs of one file version by id (parsing the YAML takes longer than reviewing a run)."""
    return {r["id"]: r for r in load_runs(path.parent)}


def gpu_of(text: str) -> GpuSku:
    """Catalog SKU for a source's GPU description ('A100-SXM4-80GB (DGX A100, Selene)', 'H100')."""
    t = text.upper()
    if "A100" in t:
        return get_gpu("a100-40gb" if re.search(r"\b40 ?GB", t) else "a100-80gb")
    if "H100" in t:
        return get_gpu("h100-pcie" if "PCIE" in t else "h100-nvl" if "NVL" in t else "h100-sxm")
    if "H200" in t:
        return get_gpu("h200")
    return get_gpu(text.split()[0])


def first(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def moe_of(md: dict[str, Any]) -> MoESpec | str | None:
    moe = md.get("moe")
    if not moe:
        return None
    experts = first(moe, "experts", "num_experts", "n_experts", "routed_experts")
    top_k = first(moe, "top_k", "topk", "experts_per_token", "active_experts")
    ffn = first(moe, "expert_ffn", "expert_ffn_hidden", "moe_ffn_hidden", "ffn_hidden")
    if None in (experts, top_k, ffn):
        return "MoE shape (experts, top-k, expert FFN) not stated"
    return MoESpec(experts=experts, top_k=top_k, expert_ffn=ffn,
                   shared_experts=first(moe, "shared_experts", "n_shared_experts") or 0,
                   dense_layers=first(moe, "dense_layers", "first_k_dense", "first_k_dense_replace") or 0)


def stated_style(md: dict[str, Any]) -> dict[str, Any]:
    """The architecture choices an entry states, read from its keys or its prose ('LayerNorm with bias
    (low_precision_layernorm)', 'learned absolute (wpe ...)', `biases: true`)."""
    out: dict[str, Any] = {}
    if md.get("mlp") in ("gelu", "swiglu"):
        out["mlp"] = md["mlp"]
    norm = str(md.get("norm") or "").lower()
    if "rms" in norm:
        out["norm"] = "rmsnorm"
    elif "layernorm" in norm:
        out["norm"] = "layernorm"
    if md.get("bias") in ("none", "qkv", "attention", "all"):
        out["bias"] = md["bias"]
    elif isinstance(md.get("biases"), bool):
        out["bias"] = "all" if md["biases"] else "none"
    position = str(md.get("position") or md.get("position_embedding") or "").lower()
    if position.startswith(("learned", "rope", "rotary")):
        out["position"] = "learned" if position.startswith("learned") else "rope"
    if isinstance(md.get("tied_embeddings"), bool):
        out["tied_embeddings"] = md["tied_embeddings"]
    return out


def model_of(run: dict[str, Any]) -> ModelSpec | str:
    """GPT-style runs: GeLU, LayerNorm, biases everywhere, learned positions, tied embeddings, FFN 4h.
    Llama-family runs: SwiGLU, RMSNorm, rotary, no biases, untied head. Fields the entry states win."""
    md = run["model"]
    h = md["hidden"]
    llama = llama_style(run)
    ffn = md.get("ffn_hidden") or (None if llama else 4 * h)
    moe = moe_of(md)
    if isinstance(moe, str):
        return moe
    if ffn is None and moe is not None:
        ffn = moe.expert_ffn
    if ffn is None:
        return "FFN width not stated"
    style = (dict(mlp="swiglu", norm="rmsnorm", bias="none", position="rope", tied_embeddings=False) if llama
             else dict(mlp="gelu", norm="layernorm", bias="all", position="learned", tied_embeddings=True))
    style.update(stated_style(md))
    return ModelSpec(
        name=md.get("name") or run["id"], layers=md["layers"], hidden=h, heads=md["heads"],
        kv_heads=md.get("kv_heads"), head_dim=md.get("head_dim"), ffn_hidden=ffn, vocab=md["vocab"],
        max_seq=md["seq_len"], moe=moe, **style,
    )


# --------------------------------------------------------------------------------------------
# What the run's framework and recipe set (`framework_settings:`), as scenario keys
# --------------------------------------------------------------------------------------------

FP8_RECIPES = {"delayed": "delayed", "tensorwise": "current", "current": "current", "per-tensor": "current",
               "mxfp8": "mxfp8", "blockwise": "blockwise", "block": "blockwise"}
RECOMPUTE_MODULE_NAMES = ("core_attn", "mlp", "moe_act", "layernorm", "mla_up_proj", "moe", "shared_experts")


def _flag(value: Any) -> bool | None:
    """A setting's truth value: a YAML bool, or prose that starts with one ('True (ub_tp_comm_overlap ...)',
    'n/a (model.fp8=false)', 'bf16 (optim.grad_sync_dtype: bf16)'); None when it states neither."""
    if isinstance(value, bool):
        return value
    if value is None:
        return None
    text = str(value).strip().lower()
    if re.match(r"(true|yes|on|enabled)\b", text):
        return True
    if re.match(r"(false|no|off|disabled|n/a|none|null)\b", text):
        return False
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    found = re.match(r"\s*(\d+)\b", str(value or ""))
    return int(found.group(1)) if found else None


def framework_of(run: dict[str, Any]) -> str:
    """implementation.framework of a run: its framework_settings' framework, else what its source ran."""
    fs = run.get("framework_settings") or {}
    text = " ".join(str(x) for x in (fs.get("framework"), fs.get("fsdp"), (run.get("source") or {}).get("title"),
                                     (run.get("parallelism") or {}).get("other"), run["id"]) if x).lower()
    if "torchtitan" in text:
        return "torchtitan"
    if any(k in text for k in ("composer", "llm-foundry", "mosaicml", "accelerate", "fsdp (v1)", "fsdp1")):
        return "fsdp"
    if any(k in text for k in ("deepspeed", "bigscience", "bloom", "mt-nlg")):
        return "deepspeed"
    if (run.get("parallelism") or {}).get("zero_stage") == 3 and "megatron" not in str(fs.get("framework", "")).lower():
        return "deepspeed"  # the SC21 ZeRO-3 baseline is DeepSpeed's (Narayanan et al. 2021, Table 2)
    return "megatron-core"


def recipe_keys(run: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The scenario keys a run's recipe sets: (implementation fields, layout fields, notes on what was read).

    Reads `framework_settings:` (grad_reduce_in_fp32 / grad_reduce_dtype / fsdp_mixed_precision, an Apex
    distributed_optimizer and its optimizer_dtype, fp8_recipe,
    fp8_param_gather, recompute and its modules / num_layers / method, Megatron's pipeline-split flags and
    first/last-stage layer counts, FSDP sharding and resharding, data_parallel_shard_degree, activation
    offload, CUDA graphs) and the framework; values may be YAML booleans or prose that starts with one.
    """
    fs: dict[str, Any] = run.get("framework_settings") or {}
    par = run.get("parallelism") or {}
    framework = framework_of(run)
    impl: dict[str, Any] = {"framework": framework}
    lay: dict[str, Any] = {}
    notes: list[str] = []

    def setting(*names: str) -> Any:
        return next((fs[n] for n in names if n in fs and fs[n] is not None), None)

    # gradient dtype: Megatron grad_reduce_in_fp32 (NeMo-2 turns it off), Apex grad_sync_dtype, FSDP reduce dtype
    grads = _flag(setting("grad_reduce_in_fp32", "accumulate_allreduce_grads_in_fp32"))
    dtype = str(setting("grad_reduce_dtype", "fsdp_mixed_precision", "mixed_precision_reduce") or "").lower()
    if grads is None and dtype:
        if dtype.startswith(("bf16", "bfloat16", "fp16", "pure")):
            grads = False
        elif dtype.startswith(("fp32", "float32")):
            grads = True
    if grads is not None:
        lay["fp32_grad_accumulation"] = grads
    # Apex DistributedFusedAdam as NeMo 1 sets it up for a bf16 model (megatron_amp_O2; nemo/collections/nlp/models/
    # language_modeling/megatron_base_model.py setup_optimization): its state in optim.dtype, fp32 by default,
    # keeping only the 16-bit remainders of the bf16 parameters; in bf16 it keeps no master at all
    apex = "apex" in str(setting("distributed_optimizer") or "").lower()
    if apex and not str(run.get("precision") or "").lower().startswith("fp16"):
        state = str(setting("optimizer_dtype") or "fp32").lower()
        if state.startswith(("bf16", "bfloat16")):
            lay["master_weights"], lay["moment_dtype"] = "none", "bf16"
        else:
            lay["master_weights"] = "remainder"
    # the flash kernel: llm-foundry's attn_impl triton is slower than FlashAttention-2 (planner.model.perf)
    said = f"{setting('attention', 'attn_impl') or ''} {par.get('other') or ''}".lower()
    if re.search(r"attn_impl:?\s*triton", said):
        impl["attention_kernel"] = "triton"
    # the loss kernel: llm-foundry's MPT defaults to flash-attn's fused cross-entropy (loss_fn fused_crossentropy,
    # llmfoundry/models/mpt/modeling_mpt.py ComposerMPTCausalLM, v0.1.0 on); Megatron's
    # cross_entropy_fusion_impl 'te' runs Transformer Engine's, which writes the gradient over the logits; a loss
    # under torch.compile is one Inductor kernel on the 16-bit logits as well (torchtitan components/loss.py)
    loss = str(setting("loss_fn", "cross_entropy") or "").lower()
    said_te = re.search(r"cross_entropy_fusion_impl\W+te\b", " ".join(str(v) for v in fs.values()).lower())
    if said_te:
        impl["cross_entropy"] = "fused_inplace"
    elif "fused" in loss or "torch.compile" in loss or (
            not loss and "llm-foundry" in str(setting("framework") or "").lower()):
        impl["cross_entropy"] = "fused"
    # the MoE token dispatcher, the first one the recipe names
    named = re.search(r"flex|hybridep|deepep|all-?to-?all|all-?gather",
                      f"{setting('dispatcher') or ''} {setting('moe') or ''}".lower())
    if named:
        word = named.group(0).replace("-", "")
        impl["moe_token_dispatcher"] = word if word in ("alltoall", "allgather") else "flex"
    # fp8
    recipe = str(setting("fp8_recipe") or "").strip().lower()
    name = next((v for k_, v in FP8_RECIPES.items() if recipe.startswith(k_)), None)
    if name is not None:
        impl["fp8_recipe"] = name
        lay["precision"] = "fp8"
    if _flag(setting("fp8_param_gather", "fp8_params", "fp8_param")) and name is not None:
        impl["fp8_param_gather"] = True
    # recompute: granularity, modules, partial layers
    text = " ".join(str(setting(k_) or "") for k_ in ("recompute", "recompute_granularity", "activation_checkpoint",
                                                    "activation_checkpointing")).lower()
    modules = setting("recompute_modules")
    if modules is not None:
        listed = modules if isinstance(modules, list) else re.findall(r"[a-z_]+", str(modules).lower())
        mods = [m for m in RECOMPUTE_MODULE_NAMES if m in [str(x).lower() for x in listed]]
        if mods:
            impl["recompute_modules"] = mods
    if text.startswith("selective") or "selective" in text.split("(")[0]:
        lay["recompute"] = "selective"
    elif text.startswith(("full", "true")) or " full" in text.split("(")[0]:
        lay["recompute"] = "full"
    elif text.startswith(("none", "false")):
        lay["recompute"] = "none"
    num = _count(setting("recompute_num_layers"))
    if num:
        lay["recompute_num_layers"] = num
        method = str(setting("recompute_method") or "block").lower()
        lay["recompute_method"] = "uniform" if method.startswith("uniform") else "block"
    # pipeline split
    for key in ("account_for_embedding_in_pipeline_split", "account_for_loss_in_pipeline_split"):
        if _flag(setting(key)):
            lay[key] = True
    first = _count(setting("decoder_first_pipeline_num_layers", "num_layers_in_first_pipeline_stage"))
    last = _count(setting("decoder_last_pipeline_num_layers", "num_layers_in_last_pipeline_stage"))
    if first:
        lay["pipeline_first_stage_layers"] = first
    if last:
        lay["pipeline_last_stage_layers"] = last
    # FSDP sharding and resharding
    sharding = str(setting("fsdp", "sharding_strategy", "fsdp_sharding_strategy") or "").upper()
    if "HYBRID_SHARD" in sharding or "HSDP" in sharding:
        lay["dp_shard"] = (run.get("hardware") or {}).get("gpus_per_node") or 8  # shard inside a node
        notes.append("HSDP: shards within a node")
    elif "SHARD_GRAD_OP" in sharding:
        impl["reshard_after_forward"] = False
    etp = _count(setting("expert_tensor_parallel_size", "expert_tp"))
    if etp and etp != par.get("tp", 1):
        lay["expert_tp"] = etp
    shard = _count(setting("data_parallel_shard_degree", "dp_shard"))
    if shard:
        lay["dp_shard"] = shard
    reshard = setting("reshard_after_forward", "fsdp_reshard_after_forward")
    if reshard is not None:
        said = str(reshard).lower()
        flag = _flag(reshard)
        flag = True if said.startswith("always") else False if said.startswith("never") else flag
        if flag is not None:
            impl["reshard_after_forward"] = flag
    if _flag(setting("activation_offload", "activation_cpu_offload")):
        impl["activation_offload"] = True
    # Megatron's cpu_offloading offloads cpu_offloading_num_layers layers, 0 by default (megatron_args's reading)
    offload_layers = setting("cpu_offloading_num_layers")
    if isinstance(offload_layers, int) and not isinstance(offload_layers, bool) and offload_layers > 0:
        impl["activation_offload"] = True
        impl["activation_offload_layers"] = offload_layers
    if _flag(setting("cuda_graphs", "cuda_graph", "enable_cuda_graph")):
        impl["cuda_graphs"] = True
    if par.get("zero_stage") is None and _flag(setting("distributed_optimizer")):
        lay["zero"] = 1
    return impl, lay, notes


# --------------------------------------------------------------------------------------------
# Measured memory, read the way the source measured it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredMemory:
    """A published per-GPU memory: `kind` is what it counts (device: nvidia-smi; reserved: the caching
    allocator's peak, torch.cuda.max_memory_reserved, as torchtitan and NeMo log it; allocated: tensors)."""

    bytes: float
    kind: str
    text: str


def measured_memory_of(meas: dict[str, Any]) -> MeasuredMemory | None:
    """nvidia-smi prints MiB, torch logs GiB: a "GB" from either is binary; "decimal" or "1e9" GB are not."""
    value = meas.get("memory_gb_per_gpu")
    if value is None:
        return None
    unit = str(meas.get("memory_unit") or "")
    kind_text = f"{unit} {meas.get('memory_kind') or ''}".lower()
    scale = 1e9 if ("decimal" in kind_text or "1e9" in kind_text) else 2**30
    kind = ("device" if "nvidia-smi" in kind_text else "allocated" if "allocated" in kind_text
            else "reserved")
    return MeasuredMemory(float(value) * scale, kind, kind_text.strip())


def predicted_memory(mem: Any, kind: str) -> int:
    """The part of a MemoryBreakdown a measurement of `kind` counts."""
    return int({"device": mem.total, "reserved": mem.reserved, "allocated": mem.allocated}[kind])


@dataclass(frozen=True)
class Measured:
    """What a run measured, in its source's convention (Case's measured_* fields)."""

    hardware_flops: bool  # the source's TFLOP/s count recompute (Narayanan Eq. 3 with k = 4)
    tflops: float | None
    step: float | None
    tokens_per_gpu: float | None
    memory: MeasuredMemory | None


def measured_of(run: dict[str, Any], gpu: GpuSku, precision: str) -> Measured | str:
    """The run's measurement, or why it has none usable. An MFU alone becomes TFLOP/s against `gpu`'s peak
    in `precision` (NVIDIA's FP8 tables state MFU against the FP8 peak, published_runs.md §2)."""
    meas, count = run["measured"], run["hardware"]["count"]
    accounting = run.get("flops_accounting") or ""
    hardware_flops = bool(re.search(r"k ?= ?4|factor 4|4\*2 co-efficient", accounting))
    tokens_per_gpu = meas.get("tokens_per_s_per_gpu") or (meas["tokens_per_s"] / count if meas.get("tokens_per_s")
                                                          else None)
    if all(meas.get(k) is None for k in ("tflops_per_gpu", "mfu", "step_time_s")) and tokens_per_gpu is None:
        return "no throughput or step time measured"
    tflops = meas.get("tflops_per_gpu")
    if tflops is None and meas.get("mfu") is not None:
        tflops = meas["mfu"] * gpu.peak("fp8" if precision == "fp8" else "bf16")
    return Measured(hardware_flops, tflops, meas.get("step_time_s"), tokens_per_gpu, measured_memory_of(meas))


def build_case(run: dict[str, Any]) -> Case | str:
    """A runnable case, or the reason the run cannot be evaluated."""
    par, batch, meas, hw = run["parallelism"], run["batch"], run["measured"], run["hardware"]
    model = model_of(run)
    if isinstance(model, str):
        return model
    if par.get("tp") is None or par.get("pp") is None:
        return "TP/PP not stated"
    if batch.get("global_batch") is None:
        return "global batch not stated"
    hardware_flops = bool(re.search(r"k ?= ?4|factor 4|4\*2 co-efficient", run.get("flops_accounting") or ""))
    notes: list[str] = []
    count = hw["count"]
    if all(meas.get(k) is None for k in ("tflops_per_gpu", "mfu", "step_time_s", "tokens_per_s_per_gpu",
                                         "tokens_per_s")):
        return "no throughput or step time measured"
    tp, pp = par["tp"], par["pp"]
    cp = par.get("cp") or 1
    other = par.get("other") or ""
    dp = par.get("dp") or count // (tp * pp * cp)
    if tp * pp * cp * dp != count:
        return f"TP·PP·CP·DP = {tp * pp * cp * dp} ≠ {count} GPUs"
    mbs = batch.get("micro_batch")
    if mbs is None:
        mbs = DEFAULT_MICRO_BATCH
        notes.append(f"mbs={mbs} (Megatron default)")
    recompute = par.get("recompute")
    if recompute is None:
        # Eq. 3 with k = 4 counts a recomputed forward: the source's FLOP formula presumes it
        recompute = "full" if hardware_flops else "none"
        notes.append(f"recompute={recompute} (not stated)")
    zero = par.get("zero_stage")
    if zero is None:
        zero = 1 if "overlap-param-gather" in other else 0  # that flag needs the distributed optimizer
        notes.append(f"zero={zero} (not stated)")
    sp = par.get("sequence_parallel")
    if sp is None:
        sp = tp > 1 and "tp-comm-overlap" in other  # TP communication overlap requires SP
        notes.append(f"sp={int(sp)} (not stated)")
    stated = str(run.get("precision") or "").lower()
    precision = "fp16" if stated.startswith("fp16") else "fp8" if stated.startswith("fp8") else "bf16"
    sw = software_of(run)
    impl_keys, layout_keys, read = recipe_keys(run)
    notes += read
    fields: dict[str, Any] = dict(
        tp=tp, pp=pp, vpp=par.get("vpp") or 1, dp=dp, cp=cp, ep=par.get("ep") or 1, zero=zero,
        recompute=recompute, sequence_parallel=bool(sp), micro_batch=mbs, global_batch=batch["global_batch"],
        precision=precision,
        # Megatron keeps fp16 gradients with fp16 training; bf16 accumulates into fp32 main_grad
        fp32_grad_accumulation=precision == "bf16" and not sw.grad_reduce_16bit,
    )
    if layout_keys.get("precision") == "fp8" and precision != "fp8":
        layout_keys.pop("precision")  # an fp8 recipe named in a bf16 run's settings is not in use
        impl_keys.pop("fp8_recipe", None)
        impl_keys.pop("fp8_param_gather", None)
    fields.update({k: v for k, v in layout_keys.items() if k != "zero" or par.get("zero_stage") is None})
    layout = Layout(**fields)
    if layout.global_batch % (dp * mbs):
        return f"global batch {layout.global_batch} not divisible by dp·mbs = {dp * mbs}"
    gpu = gpu_of(hw["gpu"])
    if sw.network_gbps is not None:
        gpu = gpu.model_copy(update={"network_gbps": sw.network_gbps})
    measured = measured_of(run, gpu, precision)
    assert not isinstance(measured, str)
    return Case(
        id=run["id"], model=model, layout=layout, gpu=gpu, gpus_per_node=hw.get("gpus_per_node") or 8,
        seq=run["model"]["seq_len"],
        impl=Implementation(attention=sw.attention, dropout=sw.dropout, fused_kernels=sw.fused_kernels,
                            kv_repeat=sw.kv_repeat, **impl_keys),
        efficiency=gpu.efficiency.model_copy(update=overlaps_of(other, run.get("framework_settings"))),
        hardware_flops=hardware_flops, measured_tflops=measured.tflops, measured_step=measured.step,
        measured_tokens_per_gpu=measured.tokens_per_gpu, notes=notes, measured_memory=measured.memory,
    )


def find_case(run_id: str, ref: Path | None = None) -> Case:
    """The usable published run `run_id`; InputError naming the reference file, the ids, or why it is unusable."""
    from planner.errors import InputError

    ref = ref or reference_dir()
    if ref is None:
        raise InputError("--published: published_runs.yaml not found in $PLANNER_REFERENCE (a folder holding it)")
    path = ref / "published_runs.yaml"
    runs = _runs_by_id(path, path.stat().st_mtime_ns)
    if run_id not in runs:
        near = [i for i in runs if run_id.lower() in i.lower()][:8]
        hint = f"; similar: {', '.join(near)}" if near else f"; {len(runs)} runs, e.g. {', '.join(list(runs)[:3])}"
        raise InputError(f"--published: no run {run_id!r} in {path}{hint}")
    case = build_case(runs[run_id])
    if isinstance(case, str):
        raise InputError(f"--published {run_id}: cannot be reviewed: {case}")
    return case
