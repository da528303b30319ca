"""What the software stack does, as the time model needs it: one frozen object per job.

The framework's behaviour is decided once, in the presets (planner/model/presets.py `resolve`, which
merges the scenario's explicit `implementation` keys over the framework's documented defaults, each with
its source file); `stack_of` is the time model's view of that decision, plus what depends on the GPU's
tensor cores (a block-scaled fp8 recipe the GPU lacks runs as the one it has). Layout-level knobs
(recompute_num_layers, dp_shard) travel in the layout arrays (`time_arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner.model.flops import EVERY_SECOND_MATMUL
from planner.model.memory import layout_arrays
from planner.model.presets import Knobs, default_fp8_recipe, resolve
from planner.schema import Efficiency, Fp8Recipe, GpuSku, Implementation, Layout

# torchtitan's selective "op" policy (EVERY_SECOND_MATMUL, planner.model.flops): SDPA's output is saved unless
# implementation.op_sac_saves_attention says not (activation_checkpoint.py, _get_custom_policy).


@dataclass(frozen=True)
class Stack:
    """The framework behaviour the step time depends on (scalars: fixed for a job)."""

    framework: str
    fused_kernels: bool
    attention_kernel: str  # "native", "fa2" or "triton" (planner.model.presets.Preset.attention_kernel)
    fp8_recipe: Fp8Recipe | None  # None: bf16/fp16 GEMMs
    fp8_param_gather: bool
    fp8_weight_cache: bool  # fp8 weight casts reused across a step's micro-batches
    recompute_modules: tuple[str, ...]  # what selective recompute reruns
    zero3_prefetch: str  # "pre": next gather issued before this block's backward; "post": after it
    prefetch_params: float | None  # parameters gathered ahead of use; None: the whole next block
    reshard_after_forward: bool | None  # None: the framework decides per layout (FSDP2: not with PP)
    reduce_every_microbatch: bool  # ZeRO-3/FSDP reduce-scatters each micro-batch's gradients
    activation_offload: bool
    activation_offload_layers: int | None  # None: every layer (planner.model.presets.offloaded_share)
    cuda_graphs: bool
    moe_token_dispatcher: str  # "alltoall", "allgather" or "flex" (planner.schema.TokenDispatcher)
    cp_exchange: str  # "ring", "allgather", "alltoall", "ulysses", "te_allgather" or "hierarchical" (schema.CpExchange)
    cp_a2a_size: int  # the hierarchical exchange's all-to-all group (1 for the others)
    kv_repeat: bool  # K and V reach the attention kernel at the query heads' width
    cross_entropy: str  # the loss kernel (planner.schema.CrossEntropyKernel)
    overlap_param_gather: bool  # ZeRO-1/2 parameter all-gather under the next forward (Efficiency overrides)
    grad_reduce_after_pipeline: bool  # with pp > 1 the gradients are reduced after the last backward
    replicated_reduce_after_backward: bool  # without ZeRO the gradients are all-reduced after the backward
    # FSDP (torchtitan's FSDP2, PyTorch FSDP1) has no optimizer-only sharding: ZeRO-1 and ZeRO-2 run as FSDP that
    # keeps gathered parameters from forward to backward (reshard_after_forward False, SHARD_GRAD_OP), the
    # memory model's reading too (planner.model.memory: "FSDP has no ZeRO-1")
    fsdp: bool = False


def resolve_fp8_recipe(impl: Implementation, eff: Efficiency, gpu: GpuSku | None = None) -> Fp8Recipe:
    """The recipe a job's fp8 GEMMs run: the stated one, else the framework's default for the GPU
    (presets.default_fp8_recipe); a block-scaled recipe the GPU lacks falls back to the one it has (TE
    emulates FP8 block scaling with MXFP8 on Blackwell; Hopper has no MXFP8 tensor cores, its block-scaled
    GEMMs are 1×128/128×128)."""
    recipe = impl.fp8_recipe or default_fp8_recipe(impl.framework, gpu)
    if recipe == "blockwise" and eff.gemm_fp8_block is None and eff.gemm_mxfp8 is not None:
        return "mxfp8"
    if recipe == "mxfp8" and eff.gemm_mxfp8 is None and eff.gemm_fp8_block is not None:
        return "blockwise"
    return recipe


def _op_policy(k: Knobs) -> tuple[str, ...]:
    """What torchtitan's op-level checkpoint reruns: every second matmul, and the attention kernel where its
    output is not on the save list."""
    return (EVERY_SECOND_MATMUL,) if k.op_sac_saves_attention else (EVERY_SECOND_MATMUL, "core_attn")


def stack_of(impl: Implementation, precision: str, eff: Efficiency, gpu: GpuSku | None = None) -> Stack:
    """The time model's view of the resolved framework knobs (planner.model.presets.resolve)."""
    k = resolve(impl, gpu=gpu, precision=precision)
    p = k.preset
    fp8 = precision == "fp8"
    return Stack(
        framework=k.framework,
        fused_kernels=k.fused_kernels,
        attention_kernel=k.attention_kernel,
        fp8_recipe=resolve_fp8_recipe(impl, eff, gpu) if fp8 else None,
        fp8_param_gather=k.fp8_param_gather,
        fp8_weight_cache=p.fp8_weight_cache,
        recompute_modules=_op_policy(k) if k.selective == "op" else k.recompute_modules,
        zero3_prefetch=p.zero3_prefetch,
        prefetch_params=p.prefetch_params,
        reshard_after_forward=impl.reshard_after_forward,
        reduce_every_microbatch=p.reduce_every_microbatch,
        activation_offload=k.activation_offload,
        activation_offload_layers=k.activation_offload_layers,
        cuda_graphs=k.cuda_graphs,
        moe_token_dispatcher=k.moe_token_dispatcher,
        cp_exchange=k.cp_exchange,
        cp_a2a_size=k.cp_a2a_size or 1,
        kv_repeat=k.kv_repeat,
        cross_entropy=k.cross_entropy,
        overlap_param_gather=k.overlap_param_gather,
        grad_reduce_after_pipeline=k.grad_reduce_after_pipeline,
        replicated_reduce_after_backward=k.replicated_reduce_after_backward,
        fsdp=k.state in ("fsdp2", "fsdp1"),
    )


def time_arrays(layout: Layout) -> dict[str, Any]:
    """A Layout as the numbers the array-ready time formulas take: the memory model's columns plus the
    time-side ones (0 stands for "not set": every layer recomputed, sharding over all of dp·cp)."""
    out: dict[str, Any] = dict(layout_arrays(layout))
    out["dp_shard"] = layout.dp_shard or 0
    return out
