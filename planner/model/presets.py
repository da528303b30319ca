"""Framework presets: what `implementation.framework` means for memory (and the knobs the time model reads).

One table, `PRESETS`, says per framework what its kernels save for backward, how it lays out weights,
gradients and optimizer state, how it splits a pipeline and what it does with FSDP parameters. `resolve`
merges the scenario's explicit `Implementation` knobs over the preset into one frozen `Knobs` object, the
single place the memory model (planner.model.memory) and the time model read framework behaviour from.

Sources, one per preset (each field cites its file below):
- megatron-core: Megatron-LM / NeMo 2 / Megatron-Bridge with Transformer Engine. TE's LayerNormLinear
  saves the norm input, the (fp8 or 16-bit) norm output and fp32 statistics
  (transformer_engine/pytorch/module/layernorm_linear.py); Megatron's fused `bias_swiglu` saves its
  [gate, up] input (megatron/core/fusions/fused_bias_swiglu.py); TE/cuDNN fused attention saves q, k, v,
  out and fp32 softmax statistics (transformer_engine/pytorch/attention/dot_product_attention/backends.py
  FusedAttnFunc); vocab-parallel cross-entropy exponentiates the fp32 logits in place
  (megatron/core/tensor_parallel/cross_entropy.py). State: Megatron DDP with a contiguous gradient buffer
  (fp32 with grad_reduce_in_fp32, else bf16) and the distributed optimizer's fp32 main params and Adam
  moments sharded over DP (megatron/core/optimizer/distrib_optimizer.py).
- torchtitan: eager PyTorch modules (torchtitan/models/common/): nn.RMSNorm (CUDA `_fused_rms_norm`: input
  and fp32 rstd), SwiGLU as `w2(silu(w1 x) * w3 x)` (4 saved tensors), SDPA flash/cuDNN with enable_gqa,
  eager fp32 cross-entropy (torchtitan/components/loss.py). State: FSDP2 `fully_shard`, whose fp32 shard is
  the master (16/d B/param, torch/distributed/fsdp/_fully_shard/_fsdp_param.py), resharding after forward
  except with pipeline parallelism (torchtitan/distributed/fsdp.py `get_fsdp_reshard_after_forward_policy`);
  torchao float8 keeps 16-bit inputs for backward (torchao/float8/float8_linear.py).
- deepspeed: ZeRO (deepspeed/runtime/zero/stage_1_and_2.py, stage3.py `estimate_zero*_model_states_mem_needs`:
  2 + 18/d for stages 1-2, 18/d for stage 3) and BF16_Optimizer's unsharded fp32 gradient accumulation
  (deepspeed/runtime/bf16_optimizer.py); Megatron-DeepSpeed's fused kernels.
- fsdp: PyTorch FSDP1 (Composer / llm-foundry / Accelerate): flat fp32 parameters sharded, gradients cast
  back to fp32 shards (torch/distributed/fsdp/_runtime_utils.py `_post_backward_hook`), 16/d B/param. fp8
  runs Transformer Engine's modules (Composer's amp_fp8 wraps te.fp8_autocast around llm-foundry's te.Linear,
  composer/core/precision.py; Accelerate's default fp8 backend is TE), which save fp8 GEMM inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from planner.model.flops import DEFAULT_SELECTIVE
from planner.model.pipeline import PipelineSplit, SplitStyle
from planner.schema import (
    AttentionKernel,
    CpExchange,
    CrossEntropyKernel,
    CudaGraphScope,
    Fp8Recipe,
    Framework,
    GpuSku,
    Implementation,
    Layout,
    TokenDispatcher,
)

StateLayout = Literal["megatron", "deepspeed", "fsdp2", "fsdp1"]


@dataclass(frozen=True)
class Preset:
    """Documented defaults of one framework; every field overridable through `Implementation` where a key exists."""

    framework: Framework
    # --- what the kernels save for backward -------------------------------------------------------------
    # fused norms, activations and bias-dropout-add (Megatron/TE kernels) or eager PyTorch ops, one kernel each
    fused_kernels: bool
    fused_swiglu: bool  # Megatron's bias_swiglu saves [gate, up] + product (6f); eager SwiGLU keeps 4 tensors (8f)
    fp8_saves_quantized_inputs: bool  # TE saves fp8 GEMM inputs; torchao Float8Linear keeps 16-bit ones
    # what a column-parallel GEMM under sequence parallelism keeps for its weight gradient: Megatron and TE keep
    # the local sequence shard and all-gather it again in backward (megatron/core/tensor_parallel/layers.py,
    # transformer_engine/pytorch/module/layernorm_linear.py); torchtitan's DTensor plan redistributes the block
    # input to Replicate before wq/wk/wv, w1/w3 and the output layer (parallelize_llama.py apply_tp,
    # PrepareModuleInput) and autograd keeps that all-gathered tensor
    tp_keeps_gathered_input: bool
    # the loss kernel: Megatron's vocab-parallel CE exponentiates its fp32 copy in place
    # (megatron/core/tensor_parallel/cross_entropy.py); eager CE keeps fp32 log-probabilities and allocates fp32
    # gradients (torch log_softmax_backward); without fused kernels a framework runs the eager one
    cross_entropy: CrossEntropyKernel
    # what recompute "selective" means: Megatron's recompute_modules, or torchtitan's op-level policy that saves
    # every other matmul output, attention and collective outputs (torchtitan/distributed/activation_checkpoint.py)
    selective: Literal["modules", "op"]
    # a stage's output kept per micro-batch in flight until its backward: Megatron frees its data once sent
    # (deallocate_pipeline_outputs, set by megatron/training/argument_utils.py); DeepSpeed's pipe engine keeps
    # it partitioned over TP (pipe/engine.py pipe_buffers['outputs'], pipe_partitioned); torch.distributed.
    # pipelining keeps it whole (stage.py fwd_cache), sequence-sharded under torchtitan's TP plan
    stage_output: Literal["freed", "tp_partitioned", "kept"]
    # a stage's receive buffers: Megatron posts one send and one receive of a micro-batch's activation at a time
    # (megatron/core/pipeline_parallel/p2p_communication.py); torch.distributed.pipelining allocates, per stage it
    # hosts, a forward-input buffer (not the first stage) and an input-gradient buffer (not the last) for every
    # micro-batch of the step and keeps them (stage.py _prepare_forward_infra, _prepare_backward_infra)
    recv_buffer_per_microbatch: bool
    # MoE routing weights applied inside the experts' activation (Megatron-Core TEGroupedMLP's
    # weighted_bias_swiglu_impl, megatron/core/transformer/moe/experts.py): the expert output is not kept for
    # the weighted combine; eager experts multiply after fc2 and keep it
    moe_probs_in_activation: bool
    # the training loop drops its reference to the 16-bit logits before backward (torchtitan train.py `del pred`,
    # "need to free to before bwd to avoid peaking memory"); Hugging Face and Composer return them in the
    # model's output, which the trainer holds through backward
    frees_logits_before_backward: bool
    # a TP-sharded eager loss runs DTensor's loss_parallel (torch/distributed/tensor/parallel/loss.py): a
    # decomposed log-softmax, and a backward that allocates a zero gradient, exp of the log-probabilities and
    # their sum, each fp32, next to the saved log-probabilities (`_nll_loss_and_log_softmax_backward`)
    dtensor_loss_parallel: bool
    # --- state layout -----------------------------------------------------------------------------------
    state: StateLayout
    fsdp_reduce_fp32: bool  # FSDP reduce-scatter dtype (torchtitan mixed_precision_reduce float32 default)
    reshard_after_forward: bool  # FSDP default without pipeline parallelism
    reshard_with_pp: bool  # FSDP default with pipeline parallelism
    zero3_unit: Literal["layer", "live_cap"]  # FSDP: one block per unit; DeepSpeed: stage3_max_live_parameters
    # which flash-attention kernels run: "native" uses the GPU generation's own tensor-core path (TE's cuDNN
    # fused attention, transformer_engine/pytorch/attention/dot_product_attention/backends.py FusedAttention);
    # "fa2" is FlashAttention-2, written for Ampere's mma.sync (PyTorch SDPA's flash backend,
    # aten/src/ATen/native/transformers/cuda/flash_attn/; flash-attn 2.x); "triton" is the Triton FlashAttention
    # llm-foundry runs with attn_impl: triton (llmfoundry/models/layers/flash_attn_triton.py)
    attention_kernel: AttentionKernel
    # the kernel on Blackwell where the framework picks another there (None: `attention_kernel`)
    attention_kernel_blackwell: AttentionKernel | None
    # --- pipeline ---------------------------------------------------------------------------------------
    split: SplitStyle
    # --- fp8 ------------------------------------------------------------------------------------------
    fp8_recipe: Fp8Recipe  # default recipe on Hopper (Blackwell: mxfp8, see `resolve`)
    amax_history_len: int  # delayed scaling: amax values kept per fp8 tensor
    # --- overlap and launch (read by the time model; memory only for their buffers) -----------------------
    # TP collectives and the gradient reduction follow Efficiency.tp_overlap / dp_overlap in every preset (by
    # default no TE userbuffers, buckets under the backward); the importers set them from what an input states
    # ZeRO-1/2's all-gather of the updated parameters under the next forward (Efficiency.param_gather_overlap)
    overlap_param_gather: bool
    # the pipeline engine reduces gradients only after the step's last backward, whatever the overlap setting
    grad_reduce_after_pipeline: bool
    # without ZeRO the engine all-reduces the gradients after the backward, whatever the overlap setting
    replicated_reduce_after_backward: bool
    # --- what the time model reads (planner.model.stack) ----------------------------------------------------
    # TE casts a weight to fp8 on a step's first micro-batch and reuses it (`is_first_microbatch`,
    # transformer_engine/pytorch/module/linear.py); torchao casts per GEMM
    fp8_weight_cache: bool
    # ZeRO-3/FSDP backward prefetch: "pre" issues the next block's gather before this block's backward
    # (FSDP2, DeepSpeed), "post" after its gradients (Composer's BACKWARD_POST with limit_all_gathers,
    # composer/utils/parallelism.py)
    zero3_prefetch: Literal["pre", "post"]
    # parameters gathered ahead of use; None: the whole next block (DeepSpeed stage3_prefetch_bucket_size 5e7,
    # deepspeed/runtime/zero/config.py)
    prefetch_params: float | None
    # how context parallelism moves K/V (Implementation.cp_exchange): Transformer Engine's p2p ring
    # (transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py AttnFuncWithCPAndKVP2P; its
    # all-to-all and all-gather are `ulysses` and `te_allgather`), or PyTorch's context_parallel, whose rotate
    # method torchtitan leaves at its default all-gather (torchtitan config_manager.py context_parallel_rotate_method)
    cp_exchange: CpExchange
    # what a CUDA graph captures (Implementation.cuda_graph_scope): a layer, each graph with static input and output
    # buffers (Megatron transformer/cuda_graphs.py), or the whole forward and backward, whose only static inputs are
    # the step's tokens and labels (torchtitan/distributed/cudagraph.py wrap_with_cuda_graph, its default without
    # PP since August 2026)
    graph_scope: CudaGraphScope
    # ZeRO-3/FSDP reduce-scatter each micro-batch's gradients; Megatron's DDP once per step, bucket by bucket
    # under the last micro-batch's backward (megatron/core/distributed/param_and_grad_buffer.py)
    reduce_every_microbatch: bool
    source: str


PRESETS: dict[Framework, Preset] = {
    "megatron-core": Preset(
        framework="megatron-core", attention_kernel="native", attention_kernel_blackwell=None,
        fused_kernels=True, fused_swiglu=True, fp8_saves_quantized_inputs=True, tp_keeps_gathered_input=False,
        cross_entropy="vocab_parallel",
        selective="modules",
        stage_output="freed", recv_buffer_per_microbatch=False, moe_probs_in_activation=True,
        frees_logits_before_backward=False, dtensor_loss_parallel=False,
        state="megatron", fsdp_reduce_fp32=True, reshard_after_forward=True, reshard_with_pp=True,
        zero3_unit="layer", split="megatron",
        # Megatron TransformerConfig.fp8_recipe default "delayed"; NeMo-2 recipes fp8_amax_history_len 1024
        fp8_recipe="delayed", amax_history_len=1024,
        # NeMo-2 / Megatron-Bridge performance recipes: DDP overlap_param_gather on
        overlap_param_gather=True, grad_reduce_after_pipeline=False,
        replicated_reduce_after_backward=False,
        fp8_weight_cache=True, zero3_prefetch="pre", prefetch_params=None, reduce_every_microbatch=False,
        cp_exchange="ring",
        graph_scope="layer",
        source="Megatron-LM megatron/core (transformer_config.py, distributed/, optimizer/distrib_optimizer.py); "
        "TransformerEngine transformer_engine/pytorch/module/",
    ),
    "torchtitan": Preset(
        # eager unless torch.compile is on (torchtitan/config/job_config.py `compile` defaults to off)
        framework="torchtitan", attention_kernel="fa2",
        # SDPA's cuDNN backend first on compute capability 10.0 (torchtitan/models/attention.py
        # ScaledDotProductAttention._init_backend, May 2025 on)
        attention_kernel_blackwell="native",
        fused_kernels=False, fused_swiglu=False, fp8_saves_quantized_inputs=False, tp_keeps_gathered_input=True,
        cross_entropy="fp32",
        selective="op",
        stage_output="kept", recv_buffer_per_microbatch=True, moe_probs_in_activation=False,
        frees_logits_before_backward=True, dtensor_loss_parallel=True,
        state="fsdp2", fsdp_reduce_fp32=True, reshard_after_forward=True, reshard_with_pp=False,
        zero3_unit="layer", split="torchtitan", fp8_recipe="current", amax_history_len=0,
        # torchtitan/config/configs.py: FSDP prefetches under compute
        overlap_param_gather=True, grad_reduce_after_pipeline=False,
        replicated_reduce_after_backward=False,
        fp8_weight_cache=False, zero3_prefetch="pre", prefetch_params=None, reduce_every_microbatch=True,
        cp_exchange="allgather",
        graph_scope="step",
        source="torchtitan torchtitan/models/common/, torchtitan/distributed/{fsdp,pipeline_parallel}.py, run_train.sh",
    ),
    "deepspeed": Preset(
        framework="deepspeed", attention_kernel="fa2", attention_kernel_blackwell=None,
        fused_kernels=True, fused_swiglu=True, fp8_saves_quantized_inputs=True, tp_keeps_gathered_input=False,
        cross_entropy="vocab_parallel",
        selective="modules",
        stage_output="tp_partitioned", recv_buffer_per_microbatch=False, moe_probs_in_activation=False,
        frees_logits_before_backward=False, dtensor_loss_parallel=False,
        state="deepspeed", fsdp_reduce_fp32=False, reshard_after_forward=True, reshard_with_pp=True,
        zero3_unit="live_cap", split="megatron", fp8_recipe="delayed", amax_history_len=1024,
        # ZeRO-1/2's step all-gathers the updated parameters before it returns (runtime/zero/stage_1_and_2.py
        # step: all_gather_dp_groups); the pipeline engine reduces gradients in the step's last instruction
        # (runtime/pipe/schedule.py TrainSchedule: ReduceGrads after the final backward); without ZeRO the engine's
        # backward ends with the all-reduce (runtime/engine.py allreduce_gradients: buffered_allreduce_fallback)
        overlap_param_gather=False, grad_reduce_after_pipeline=True,
        replicated_reduce_after_backward=True,
        fp8_weight_cache=False, zero3_prefetch="pre", prefetch_params=5e7, reduce_every_microbatch=True,
        cp_exchange="ring",
        graph_scope="layer",
        source="DeepSpeed deepspeed/runtime/zero/{stage_1_and_2,stage3}.py, runtime/bf16_optimizer.py",
    ),
    "fsdp": Preset(
        # eager PyTorch modules around PyTorch SDPA (Accelerate, Composer); llm-foundry's MPT may name its
        # Triton kernel instead (implementation.attention_kernel: triton)
        framework="fsdp", attention_kernel="fa2", attention_kernel_blackwell=None,
        fused_kernels=False, fused_swiglu=False, fp8_saves_quantized_inputs=True, tp_keeps_gathered_input=False,
        cross_entropy="fp32",
        selective="modules",
        stage_output="kept", recv_buffer_per_microbatch=False, moe_probs_in_activation=False,
        frees_logits_before_backward=False, dtensor_loss_parallel=False,
        state="fsdp1", fsdp_reduce_fp32=False, reshard_after_forward=True, reshard_with_pp=True,
        zero3_unit="layer", split="megatron", fp8_recipe="delayed", amax_history_len=1024,
        overlap_param_gather=True, grad_reduce_after_pipeline=False,
        replicated_reduce_after_backward=False,
        fp8_weight_cache=False, zero3_prefetch="post", prefetch_params=None, reduce_every_microbatch=True,
        cp_exchange="ring",
        graph_scope="layer",
        source="PyTorch torch/distributed/fsdp/ (FSDP1 FlatParameter); Composer/llm-foundry FSDP config",
    ),
}

# Bytes per element of a saved fp8 GEMM input, data plus scales, by recipe (TE tensor/*.py):
# per-tensor scaling (delayed, current): 1 B, one fp32 scale per tensor; MXFP8: 1 B + one E8M0 scale per 32
# elements (mxfp8_tensor.py); blockwise: 1 B + one fp32 scale per 1×128 block (float8_blockwise_tensor.py).
FP8_ACTIVATION_BYTES: dict[Fp8Recipe, float] = {"delayed": 1.0, "current": 1.0, "mxfp8": 1 + 1 / 32,
                                                "blockwise": 1 + 4 / 128}
# Bytes per GEMM weight parameter of TE's fp8 copy: row-wise data plus the column-wise (transposed) copy the
# wgrad/dgrad GEMMs need (Hopper's fp8 GEMMs take only TN layouts, float8_tensor.py `_transpose`); MXFP8 and
# blockwise also keep both directions with their scales (32-element E8M0; 128×128 fp32 blocks for weights).
FP8_WEIGHT_BYTES: dict[Fp8Recipe, float] = {"delayed": 2.0, "current": 2.0, "mxfp8": 2 * (1 + 1 / 32),
                                            "blockwise": 2 * (1 + 4 / (128 * 128))}
# fp8 tensors with scaling state per GEMM (input, weight, grad-output): TE's FP8 meta, fp32 amax history.
FP8_TENSORS_PER_GEMM = 3
# The MoE recipes of NeMo 2 / Megatron-Bridge set --moe-token-dispatcher-type alltoall (Megatron-Core's own
# default is allgather); torchtitan (torchtitan/distributed/expert_parallel.py) and DeepSpeed-MoE all-to-all too.
DEFAULT_TOKEN_DISPATCHER: TokenDispatcher = "alltoall"


@dataclass(frozen=True)
class Knobs:
    """The resolved framework behaviour of one job: the preset with the scenario's explicit choices on top.

    Memory reads the kernel, state, FSDP, pipeline, fp8 and context-parallel fields; the time model reads
    `framework`, `fp8_recipe` / `fp8_param_gather` (fp8 GEMM rates, fp8 all-gathers), the overlap fields,
    `cp_exchange` / `cp_a2a_size` / `kv_repeat` and `cuda_graphs`. `reshard(pp)` answers per pipeline depth.
    """

    framework: Framework
    fused_kernels: bool
    fused_norm: bool
    fused_swiglu: bool
    fused_softmax: bool
    attention: Literal["flash", "eager"]
    attention_kernel: AttentionKernel
    op_sac_saves_attention: bool  # torchtitan's op-level checkpoint keeps the attention kernel's output
    pipeline_outputs_kept: bool  # the last stage holds every micro-batch's logits until the step ends
    dropout: float
    fp8: bool
    fp8_recipe: Fp8Recipe
    fp8_param_gather: bool
    fp8_activation_bytes: float  # bytes per element of a saved GEMM input (2.0 when no fp8 input is saved)
    fp8_weight_bytes: float  # bytes per GEMM weight parameter of the fp8 copy (0 without fp8)
    amax_history_len: int
    recompute_modules: tuple[str, ...]
    cross_entropy: CrossEntropyKernel
    loss_chunks: int  # 1: the loss over a micro-batch's tokens at once
    selective: Literal["modules", "op"]
    stage_output: Literal["freed", "tp_partitioned", "kept"]
    state: StateLayout
    fsdp_reduce_fp32: bool
    reshard_without_pp: bool
    reshard_with_pp: bool
    zero3_unit: Literal["layer", "live_cap"]
    split: PipelineSplit
    activation_offload: bool
    activation_offload_layers: int | None  # None: every layer's activations (with activation_offload)
    cuda_graphs: bool
    layer_graph_buffers: bool  # per-layer graphs, each holding static input and output buffers
    moe_token_dispatcher: TokenDispatcher
    cp_exchange: CpExchange
    cp_a2a_size: int | None  # the all-to-all level of the hierarchical exchange
    kv_repeat: bool  # the attention kernel gets K and V at the query heads' width
    overlap_param_gather: bool
    grad_reduce_after_pipeline: bool
    replicated_reduce_after_backward: bool
    preset: Preset = field(repr=False, compare=False)

    def reshard(self, pp: int) -> bool:
        return self.reshard_with_pp if pp > 1 else self.reshard_without_pp

    def offloaded_share(self, layers: int) -> float:
        """The share of a model's layers whose activations go to host memory (0 without offload)."""
        return offloaded_share(self.activation_offload, self.activation_offload_layers, layers)


def offloaded_share(offload: bool, offload_layers: int | None, layers: int) -> float:
    """Megatron offloads the activations of `cpu_offloading_num_layers` layers, every layer where the count is not
    given: Transformer Engine offloads the first N and reloads them last, so the saved activations peak at L − N
    layers' worth (transformer_engine/pytorch/cpu_offload.py OffloadSynchronizer._default_offload_sync_init)."""
    if not offload:
        return 0.0
    return 1.0 if offload_layers is None else min(1.0, offload_layers / layers)


def layout_offloaded_share(stated: float, count: Any, layers: int) -> Any:
    """The offloaded share of each layout (scalars or arrays): its own count (`Layout.activation_offload_layers`,
    what the search chooses; 0 unset) where set, else the implementation's `stated` share."""
    return np.where(np.asarray(count) > 0, np.minimum(1.0, np.asarray(count) / layers), stated)


def _blackwell(gpu: GpuSku | None) -> bool:
    return gpu is not None and gpu.arch == "blackwell"


def default_fp8_recipe(framework: Framework, gpu: GpuSku | None = None) -> Fp8Recipe:
    """The recipe a framework runs when the scenario names none: MXFP8 on Blackwell (TE's MXFP8BlockScaling,
    the only block-scaled fp8 Blackwell's tensor cores run natively), else the preset's Hopper default."""
    if _blackwell(gpu) and framework != "torchtitan":
        return "mxfp8"
    return PRESETS[framework].fp8_recipe


def resolve(impl: Implementation, layout: Layout | None = None, gpu: GpuSku | None = None, *,
            precision: str | None = None, split: PipelineSplit | None = None) -> Knobs:
    """One frozen object with every framework knob decided: explicit `impl` fields win over the preset.

    `layout` (or `precision` and `split`) supplies the job's numeric recipe and Megatron's pipeline-split
    flags; `gpu` picks the fp8 recipe default for its generation.
    """
    p = PRESETS[impl.framework]
    prec = precision or (layout.precision if layout is not None else "bf16")
    fp8 = prec == "fp8"
    recipe = impl.fp8_recipe or default_fp8_recipe(impl.framework, gpu)
    saves_fp8 = fp8 and p.fp8_saves_quantized_inputs
    if split is None:
        split = PipelineSplit(style=p.split)
        if layout is not None:
            split = pipeline_split(layout, p.split)
    reshard = impl.reshard_after_forward
    fused = p.fused_kernels if impl.fused_kernels is None else impl.fused_kernels
    return Knobs(
        framework=impl.framework,
        fused_kernels=fused,
        fused_norm=fused,
        fused_swiglu=fused and p.fused_swiglu,
        fused_softmax=fused,
        attention=impl.attention,
        attention_kernel=impl.attention_kernel or (p.attention_kernel_blackwell if _blackwell(gpu) else None)
        or p.attention_kernel,
        op_sac_saves_attention=impl.op_sac_saves_attention is not False,
        pipeline_outputs_kept=impl.pipeline_outputs_kept,
        dropout=impl.dropout,
        fp8=fp8,
        fp8_recipe=recipe,
        fp8_param_gather=fp8 and impl.fp8_param_gather,
        fp8_activation_bytes=FP8_ACTIVATION_BYTES[recipe] if saves_fp8 else 2.0,
        # torchao keeps no fp8 weight cache: it casts the 16-bit (or FSDP-gathered fp8) weight per GEMM
        fp8_weight_bytes=FP8_WEIGHT_BYTES[recipe] if fp8 and p.fp8_saves_quantized_inputs else 0.0,
        amax_history_len=p.amax_history_len if recipe == "delayed" else 0,
        recompute_modules=tuple(impl.recompute_modules or DEFAULT_SELECTIVE),
        cross_entropy=impl.cross_entropy or (p.cross_entropy if fused else "fp32"),
        loss_chunks=impl.loss_chunks or 1,
        stage_output=p.stage_output,
        selective=p.selective if impl.recompute_modules is None else "modules",
        state=p.state,
        # the FSDP reduce dtype follows the job's gradient dtype (torchtitan mixed_precision_reduce)
        fsdp_reduce_fp32=p.fsdp_reduce_fp32 and (layout is None or layout.fp32_grad_accumulation),
        reshard_without_pp=p.reshard_after_forward if reshard is None else reshard,
        reshard_with_pp=p.reshard_with_pp if reshard is None else reshard,
        zero3_unit=p.zero3_unit,
        split=split,
        # the layout's own offload count (a search's choice) wins over what the implementation states
        activation_offload=(impl.activation_offload or impl.activation_offload_layers is not None
                            or (layout is not None and layout.activation_offload_layers is not None)),
        activation_offload_layers=(layout.activation_offload_layers
                                   if layout is not None and layout.activation_offload_layers is not None
                                   else impl.activation_offload_layers),
        cuda_graphs=impl.cuda_graphs,
        layer_graph_buffers=impl.cuda_graphs and (impl.cuda_graph_scope or p.graph_scope) == "layer",
        moe_token_dispatcher=impl.moe_token_dispatcher or DEFAULT_TOKEN_DISPATCHER,
        cp_exchange=impl.cp_exchange or p.cp_exchange,
        cp_a2a_size=impl.cp_a2a_size,
        kv_repeat=impl.kv_repeat,
        overlap_param_gather=p.overlap_param_gather,
        grad_reduce_after_pipeline=p.grad_reduce_after_pipeline,
        replicated_reduce_after_backward=p.replicated_reduce_after_backward,
        preset=p,
    )


def pipeline_split(layout: Layout, style: SplitStyle = "megatron") -> PipelineSplit:
    """The pipeline split a layout asks for under a framework's split style."""
    return PipelineSplit(
        style=style,
        embedding_counts=layout.account_for_embedding_in_pipeline_split,
        loss_counts=layout.account_for_loss_in_pipeline_split,
        first_stage_layers=layout.pipeline_first_stage_layers,
        last_stage_layers=layout.pipeline_last_stage_layers,
        chunks=tuple(layout.pipeline_layout) if layout.pipeline_layout is not None else None,
    )


def knobs_dict(k: Knobs) -> dict[str, object]:
    """The resolved knobs as plain values (for JSON and reports)."""
    out: dict[str, object] = {}
    for f in fields(k):
        if f.name == "preset":
            continue
        v = getattr(k, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else (vars(v) if isinstance(v, PipelineSplit) else v)
    return out

