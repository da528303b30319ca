"""What the software stack does, as the time model needs it: one frozen object per job.

The time model reads the framework's behaviour through `stack_of` only, so that the framework presets
(planner/model/presets.py, which resolve `implementation.framework` into every knob) replace the raw
reads below in one place. Each default is the framework's own, with the file it comes from:

- megatron-core (Megatron-LM with Transformer Engine, NeMo 2, Megatron-Bridge): ZeRO-1/2 reduce gradients
  once per step, bucket by bucket under the last micro-batch's backward (megatron/core/distributed/
  param_and_grad_buffer.py); TE caches a micro-batch's fp8 weight casts for the rest of the step
  (`is_first_microbatch`, transformer_engine/pytorch/module/linear.py); fp8 defaults to TE's
  DelayedScaling (transformer_engine/common/recipe/__init__.py); selective recompute is Megatron's
  `--recompute-modules` (default core_attn, megatron/core/transformer/transformer_config.py).
- torchtitan (FSDP2): prefetches the next block's all-gather in forward and backward, reshards after
  forward unless pipeline parallelism is on (torchtitan/distributed/fsdp.py
  get_fsdp_reshard_after_forward_policy), reduce-scatters every micro-batch, and with pipelining once per
  step (torch/distributed/pipelining/stage.py backward_maybe_with_nosync); its selective "op" checkpoint
  recomputes every second matmul of a block (torchtitan/distributed/activation_checkpoint.py); float8
  training scales tensor-wise from the current amax.
- fsdp (PyTorch FSDP1 / Composer / Accelerate): Composer's defaults backward_prefetch=BACKWARD_POST and
  limit_all_gathers=True (composer/utils/parallelism.py; in 2023 composer/trainer/dist_strategy.py):
  forward gathers run one block ahead (the rate limiter allows no deeper), backward issues the next
  gather only after the current block's gradients, so it is exposed; gradients reduce every micro-batch.
- deepspeed: ZeRO-3 prefetches at most stage3_prefetch_bucket_size parameters ahead (default 5e7,
  deepspeed/runtime/zero/config.py and constants.py) in both passes, and reduces every micro-batch: a
  block larger than that bucket waits for most of its own gather.
Layout-level knobs (recompute_num_layers, dp_shard) travel in the layout arrays (`time_arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner.model.memory import layout_arrays
from planner.schema import Efficiency, Implementation, Layout

# Megatron-Core's default selective recompute (transformer_config.py recompute_modules default).
MEGATRON_RECOMPUTE_MODULES = ("core_attn",)
# DeepSpeed ZeRO-3's default prefetch depth in parameters (stage3_prefetch_bucket_size).
DEEPSPEED_PREFETCH_PARAMS = 50_000_000
# torchtitan's selective "op" policy keeps every other matmul of a block and recomputes the rest together
# with every element-wise op; SDPA's output is saved (activation_checkpoint.py, _get_custom_policy).
EVERY_SECOND_MATMUL = "every_second_mm"


@dataclass(frozen=True)
class Stack:
    """The framework behaviour the step time depends on (scalars: fixed for a job)."""

    framework: str
    fused_kernels: bool
    fp8_recipe: str | None  # None: bf16/fp16 GEMMs
    fp8_param_gather: bool
    fp8_weight_cache: bool  # fp8 weight casts reused across a step's micro-batches
    recompute_modules: tuple[str, ...]  # what selective recompute reruns
    zero3_prefetch: str  # "pre": next gather issued before this block's backward; "post": after it
    prefetch_params: float | None  # parameters gathered ahead of use; None: the whole next block
    reshard_after_forward: bool | None  # None: the framework decides per layout (FSDP2: not with PP)
    reduce_every_microbatch: bool  # ZeRO-3/FSDP reduce-scatters each micro-batch's gradients
    activation_offload: bool
    cuda_graphs: bool


def resolve_fp8_recipe(impl: Implementation, eff: Efficiency) -> str:
    """The recipe a job's fp8 GEMMs run: the stated one, else the framework's default; a block-scaled
    recipe the GPU lacks falls back to the one it has (TE emulates FP8 block scaling with MXFP8 on
    Blackwell; Hopper has no MXFP8 tensor cores, its block-scaled GEMMs are 1×128/128×128)."""
    recipe = impl.fp8_recipe or ("current" if impl.framework == "torchtitan" else "delayed")
    if recipe == "blockwise" and eff.gemm_fp8_block is None and eff.gemm_mxfp8 is not None:
        return "mxfp8"
    if recipe == "mxfp8" and eff.gemm_mxfp8 is None and eff.gemm_fp8_block is not None:
        return "blockwise"
    return recipe


def stack_of(impl: Implementation, precision: str, eff: Efficiency) -> Stack:
    """The job's stack from the raw Implementation fields and the framework's documented defaults."""
    fw = impl.framework
    if impl.recompute_modules is not None:
        modules = tuple(impl.recompute_modules)
    elif fw == "torchtitan":
        modules = (EVERY_SECOND_MATMUL,)
    else:
        modules = MEGATRON_RECOMPUTE_MODULES
    return Stack(
        framework=fw,
        fused_kernels=impl.fused_kernels,
        fp8_recipe=resolve_fp8_recipe(impl, eff) if precision == "fp8" else None,
        fp8_param_gather=impl.fp8_param_gather and precision == "fp8",
        fp8_weight_cache=fw == "megatron-core",
        recompute_modules=modules,
        zero3_prefetch="post" if fw == "fsdp" else "pre",
        prefetch_params=DEEPSPEED_PREFETCH_PARAMS if fw == "deepspeed" else None,
        reshard_after_forward=impl.reshard_after_forward,
        reduce_every_microbatch=fw != "megatron-core",
        activation_offload=impl.activation_offload,
        cuda_graphs=impl.cuda_graphs,
    )


def time_arrays(layout: Layout) -> dict[str, Any]:
    """A Layout as the numbers the array-ready time formulas take: the memory model's columns plus the
    time-side ones (0 stands for "not set": every layer recomputed, sharding over all of dp·cp)."""
    out: dict[str, Any] = dict(layout_arrays(layout))
    out["recompute_num_layers"] = layout.recompute_num_layers or 0
    out["dp_shard"] = layout.dp_shard or 0
    return out
