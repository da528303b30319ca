"""Read and write DeepSpeed configuration JSON: ZeRO stage, offload, batch sizes, precision, checkpointing.

A DeepSpeed JSON holds only part of a layout: the ZeRO stage, the batch triple, the mixed-precision mode,
optimizer offload and the settings of DeepSpeed's own activation checkpointing. Tensor and pipeline sizes
belong to the model code or launcher (Megatron-DeepSpeed flags), so `to_layout` takes them as arguments.
"auto" values are the Hugging Face Trainer's placeholders, filled from its own arguments; `to_layout`
accepts those numbers as keywords.

The batch triple obeys DeepSpeed's rule train_batch_size = train_micro_batch_size_per_gpu ×
gradient_accumulation_steps × data-parallel size, with a missing member derived from the others as
DeepSpeed's _configure_train_batch_size does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from planner.errors import InputError, format_validation_error
from planner.interop.sources import parse_json_object, read_text
from planner.report.text import dotted_settings
from planner.schema import Implementation, Layout, Optimizer, Recompute

AUTO = "auto"
BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")

# Top-level keys DeepSpeed defines; others are listed in DeepSpeedConfig.unknown.
_KNOWN_KEYS_TEXT = """
    train_batch_size train_micro_batch_size_per_gpu gradient_accumulation_steps optimizer scheduler fp16 bf16
    bfloat16 amp zero_optimization activation_checkpointing gradient_clipping steps_per_print wall_clock_breakdown
    zero_allow_untested_optimizer zero_force_ds_cpu_optimizer communication_data_type
    seq_parallel_communication_data_type prescale_gradients gradient_predivide_factor sparse_gradients
    flops_profiler tensorboard wandb csv_monitor comet comms_logger data_types aio checkpoint elasticity pipeline
    autotuning compression_training data_efficiency memory_breakdown dump_state nebula sparse_attention
    curriculum_learning eigenvalue progressive_layer_drop timers use_data_before_expert_parallelism
    torch_autocast compile graph_harvesting disable_allgather
"""
KNOWN_KEYS = frozenset(_KNOWN_KEYS_TEXT.split())
# zero_optimization's keys and their stage3_* aliases (deepspeed/runtime/zero/config.py DeepSpeedZeroConfig, whose
# DeepSpeedConfigModel forbids any other): one outside them is listed as `zero_optimization.<key>`.
_ZERO_KEYS_TEXT = """
    stage contiguous_gradients reduce_scatter reduce_bucket_size use_multi_rank_bucket_allreduce allgather_partitions
    allgather_bucket_size overlap_comm load_from_fp32_weights elastic_checkpoint offload_param offload_optimizer
    zenflow sub_group_size cpu_offload_param cpu_offload_use_pin_memory cpu_offload prefetch_bucket_size
    stage3_prefetch_bucket_size param_persistence_threshold stage3_param_persistence_threshold
    model_persistence_threshold stage3_model_persistence_threshold max_live_parameters stage3_max_live_parameters
    max_reuse_distance stage3_max_reuse_distance gather_16bit_weights_on_model_save
    stage3_gather_16bit_weights_on_model_save module_granularity_threshold stage3_module_granularity_threshold
    use_all_reduce_for_fetch_params stage3_use_all_reduce_for_fetch_params allgather_sequential
    stage3_allgather_sequential partition_stream_chunk_size stage3_partition_stream_chunk_size
    stage3_gather_fp16_weights_on_model_save ignore_unused_parameters legacy_stage1 round_robin_gradients
    zero_hpz_partition_size zero_quantized_weights zero_quantized_nontrainable_weights zero_quantized_gradients
    zeropp_loco_param mics_shard_size mics_hierarchical_params_gather memory_efficient_linear
    pipeline_loading_checkpoint override_module_apply log_trace_cache_warnings enable_sanity_checks
    save_muon_momentum_buffer_in_memory leaf_module
"""
ZERO_KEYS = frozenset(_ZERO_KEYS_TEXT.split())


@dataclass(frozen=True)
class DeepSpeedConfig:
    """What a DeepSpeed JSON fixes. None = "auto" or absent: the client (e.g. the HF Trainer) decides."""

    zero: Literal[0, 1, 2, 3] = 0
    offload_optimizer: bool = False
    micro_batch: int | None = None
    grad_accum: int | None = None
    train_batch: int | None = None
    precision: Literal["bf16", "fp16"] | None = None
    grad_accum_dtype: Literal["fp32", "bf16", "fp16"] | None = None  # data_types.grad_accum_dtype
    recompute: Recompute = "none"
    optimizer: Optimizer | None = None
    activation_offload: bool = False  # activation_checkpointing.cpu_checkpointing
    overlap_comm: bool = False  # zero_optimization.overlap_comm as DeepSpeed resolves it
    unknown: list[str] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    where: str = "DeepSpeed config"
    settings: dict[str, str] = field(default_factory=dict)  # the file's own keys, dotted, values as JSON

    @property
    def dp(self) -> int | None:
        """The data-parallel size the batch triple implies, when all three are numbers."""
        if None in (self.train_batch, self.micro_batch, self.grad_accum):
            return None
        assert self.train_batch and self.micro_batch and self.grad_accum
        return self.train_batch // (self.micro_batch * self.grad_accum)

    def overlaps(self) -> dict[str, float]:
        """The gradient reduction's overlap with the backward, as an Efficiency field: DeepSpeed overlaps it only
        with zero_optimization.overlap_comm, true by default at stage 3 alone (runtime/zero/config.py
        overlap_comm_valid); without ZeRO the engine all-reduces after the backward."""
        return {} if self.zero > 0 and self.overlap_comm else {"dp_overlap": 0.0}

    def implementation(self, base: Implementation | None = None) -> Implementation:
        """DeepSpeed's framework knobs over `base` (the model code's kernels: a scenario's implementation)."""
        return (base or Implementation()).model_copy(
            update={"framework": "deepspeed", "activation_offload": self.activation_offload})

    def to_layout(
        self,
        gpus: int,
        tp: int = 1,
        pp: int = 1,
        *,
        micro_batch: int | None = None,
        grad_accum: int | None = None,
        global_batch: int | None = None,
        precision: Literal["bf16", "fp16", "fp8"] | None = None,
        recompute: Recompute | None = None,
        optimizer: Optimizer | None = None,
    ) -> Layout:
        """The Layout on `gpus` GPUs with dp = gpus / (tp·pp). Keywords fill what the file leaves "auto"
        (as the HF Trainer does from its arguments); a keyword that contradicts a number in the file is an
        InputError. Precision defaults to bf16 and the optimizer to AdamW when the file leaves them open."""
        if gpus < 1 or gpus % (tp * pp):
            raise InputError(f"--gpus {gpus} is not a multiple of tp·pp = {tp}·{pp} = {tp * pp}")
        dp = gpus // (tp * pp)
        mbs = _merge(self.micro_batch, micro_batch, "train_micro_batch_size_per_gpu", self.where)
        gas = _merge(self.grad_accum, grad_accum, "gradient_accumulation_steps", self.where)
        tbs = _merge(self.train_batch, global_batch, "train_batch_size", self.where)
        mbs, gas, tbs = _resolve_batch(mbs, gas, tbs, dp, f"{self.where} on --gpus {gpus} (dp = {dp})")
        if pp > 1 and self.zero >= 2:
            raise InputError(
                f"{self.where}: zero_optimization.stage {self.zero} with pp {pp}: DeepSpeed's pipeline engine "
                "runs ZeRO stage 0 or 1 only"
            )
        if precision and self.precision and (precision == "fp16") != (self.precision == "fp16"):
            raise InputError(
                f"{self.where}: {self.precision}.enabled is true in the file, precision {precision} was given"
            )
        chosen = precision or self.precision or "bf16"
        # DeepSpeed's engine accumulates in fp32 by default only for bf16 without ZeRO (BF16_Optimizer);
        # ZeRO keeps gradients in the model dtype. data_types.grad_accum_dtype overrides.
        fp32_grads = self.grad_accum_dtype == "fp32" if self.grad_accum_dtype else chosen != "fp16" and self.zero == 0
        try:
            return Layout(
                tp=tp, pp=pp, dp=dp, zero=self.zero, recompute=recompute or self.recompute,
                sequence_parallel=False, micro_batch=mbs, global_batch=tbs, precision=chosen,
                fp32_grad_accumulation=fp32_grads,
                optimizer=optimizer or self.optimizer or "adamw", offload_optimizer=self.offload_optimizer,
            )
        except ValidationError as exc:
            raise InputError(format_validation_error(exc, self.where)) from exc


def _merge(file_value: int | None, given: int | None, key: str, where: str) -> int | None:
    if given is not None and file_value is not None and given != file_value:
        raise InputError(f"{where}: {key} is {file_value} in the file, {given} was given")
    return file_value if file_value is not None else given


def _resolve_batch(
    mbs: int | None, gas: int | None, tbs: int | None, dp: int, where: str
) -> tuple[int, int, int]:
    """Fill the batch triple as DeepSpeed does; InputError naming the keys when it cannot or they disagree."""
    if tbs is not None and mbs is not None and gas is not None:
        if tbs != mbs * gas * dp:
            raise InputError(
                f"{where}: train_batch_size {tbs} ≠ train_micro_batch_size_per_gpu {mbs} × "
                f"gradient_accumulation_steps {gas} × data-parallel size {dp} = {mbs * gas * dp}"
            )
    elif tbs is not None and mbs is not None:
        if tbs % (mbs * dp):
            raise InputError(
                f"{where}: train_batch_size {tbs} is not a multiple of train_micro_batch_size_per_gpu {mbs} × "
                f"data-parallel size {dp}"
            )
        gas = tbs // (mbs * dp)
    elif tbs is not None:
        gas = gas or 1
        if tbs % (gas * dp):
            raise InputError(
                f"{where}: train_batch_size {tbs} is not a multiple of gradient_accumulation_steps {gas} × "
                f"data-parallel size {dp}"
            )
        mbs = tbs // (gas * dp)
    elif mbs is not None:
        gas = gas or 1
        tbs = mbs * gas * dp
    else:
        raise InputError(
            f"{where}: train_batch_size and train_micro_batch_size_per_gpu are both missing or \"auto\": "
            "give one of them (micro_batch= or global_batch=)"
        )
    assert mbs is not None and gas is not None and tbs is not None
    return mbs, gas, tbs


class _Reader:
    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def section(self, key: str) -> Mapping[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise InputError(f"{self.where}: key '{key}' must be an object, got {json.dumps(value, default=repr)}")
        return value

    def count(self, key: str) -> int | None:
        """A positive integer, or None for "auto" or absent."""
        value = self.data.get(key)
        if value is None or value == AUTO:
            return None
        # 2.0 is accepted as JSON writers make it; bool is not a count.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            got = json.dumps(value, default=repr)
            raise InputError(f"{self.where}: key '{key}' must be a positive integer or \"auto\", got {got}")
        return value


def _enabled(section: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = section.get("enabled", False)
    if value == AUTO:
        return None
    if not isinstance(value, bool):
        raise InputError(f"{where}: key '{key}.enabled' must be true, false or \"auto\", got {json.dumps(value)}")
    return value


def _offload_device(zero: Mapping[str, Any], key: str, where: str) -> str:
    section = zero.get(key)
    if section is None:
        return "none"
    if not isinstance(section, Mapping):
        raise InputError(f"{where}: key 'zero_optimization.{key}' must be an object")
    device = section.get("device", "none")
    if device not in ("none", "cpu", "nvme", AUTO):
        raise InputError(f"{where}: key 'zero_optimization.{key}.device' must be none, cpu or nvme, got {device!r}")
    return "none" if device == AUTO else str(device)


def _read(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    if isinstance(source, Mapping):
        return source, "DeepSpeed config"
    if isinstance(source, str) and source.lstrip().startswith("{"):
        text, where = source, "DeepSpeed config"
    else:
        text, where = read_text(source, "DeepSpeed config")
    data = parse_json_object(text, where)
    return data, where


def parse_deepspeed_config(path_or_dict: str | os.PathLike[str] | Mapping[str, Any]) -> DeepSpeedConfig:
    """A DeepSpeedConfig from a JSON file, JSON text, or an already parsed dict.

    InputError (naming the file and key) for malformed values, and for a batch triple whose three numbers
    do not give a whole data-parallel size.
    """
    data, where = _read(path_or_dict)
    r = _Reader(data, where)
    unsupported: dict[str, str] = {}
    notes: list[str] = []

    raw_zero = data.get("zero_optimization")
    if isinstance(raw_zero, bool):  # the original spelling: true meant stage 1
        zero_section: Mapping[str, Any] = {"stage": 1 if raw_zero else 0}
    else:
        zero_section = r.section("zero_optimization")
    stage = zero_section.get("stage", 0)
    if stage not in (0, 1, 2, 3) or isinstance(stage, bool):
        raise InputError(f"{where}: key 'zero_optimization.stage' must be 0, 1, 2 or 3, got {json.dumps(stage)}")
    optimizer_device = _offload_device(zero_section, "offload_optimizer", where)
    offload = optimizer_device != "none" or zero_section.get("cpu_offload") is True
    if optimizer_device == "nvme":
        notes.append("offload_optimizer.device nvme: the optimizer state leaves the GPU as with cpu")
    if _offload_device(zero_section, "offload_param", where) != "none" or zero_section.get("cpu_offload_params"):
        unsupported["zero_optimization.offload_param"] = (
            "parameter offload is not modelled: planner keeps the ZeRO-3 weight shards in GPU memory "
            "(memory overestimated) and leaves out their PCIe traffic (time underestimated)"
        )
    overlap = zero_section.get("overlap_comm")
    if overlap is not None and not isinstance(overlap, bool):
        raise InputError(f"{where}: key 'zero_optimization.overlap_comm' must be true or false, "
                         f"got {json.dumps(overlap)}")
    hpz = zero_section.get("zero_hpz_partition_size", 1)
    if isinstance(hpz, int) and hpz > 1:
        unsupported["zero_optimization.zero_hpz_partition_size"] = (
            "ZeRO++ keeps a secondary weight shard per node, not modelled"
        )
    mics = zero_section.get("mics_shard_size", -1)
    if isinstance(mics, int) and mics > 0:
        unsupported["zero_optimization.mics_shard_size"] = "MiCS shards within sub-groups, not over all DP ranks"

    train, micro, accum = (r.count(k) for k in BATCH_KEYS)
    if micro is not None and accum is not None and train is not None and train % (micro * accum):
        raise InputError(
            f"{where}: train_batch_size {train} is not a multiple of train_micro_batch_size_per_gpu {micro} × "
            f"gradient_accumulation_steps {accum}: no whole data-parallel size satisfies DeepSpeed's rule"
        )
    auto = [k for k in BATCH_KEYS if data.get(k) == AUTO]
    if auto:
        notes.append(f"{', '.join(auto)}: \"auto\", filled in by the Hugging Face Trainer from its arguments")

    bf16_key = "bf16" if "bf16" in data else "bfloat16"
    bf16 = _enabled(r.section(bf16_key), bf16_key, where)
    fp16 = _enabled(r.section("fp16"), "fp16", where)
    if bf16 and fp16:
        raise InputError(f"{where}: {bf16_key}.enabled and fp16.enabled are both true")
    precision: Literal["bf16", "fp16"] | None = "bf16" if bf16 else "fp16" if fp16 else None
    if precision is None:
        if bf16 is None or fp16 is None:
            notes.append("bf16/fp16 enabled: \"auto\" (the Trainer's --bf16/--fp16 decide); bf16 unless given")
        else:
            unsupported["bf16"] = "neither bf16 nor fp16 enabled: fp32 training is not modelled; taken as bf16"
    if "amp" in data and _enabled(r.section("amp"), "amp", where):
        unsupported["amp"] = "NVIDIA apex AMP is not modelled; taken as bf16/fp16 mixed precision"

    accum_dtype = r.section("data_types").get("grad_accum_dtype")
    if accum_dtype not in (None, "fp32", "bf16", "fp16"):
        raise InputError(f"{where}: key 'data_types.grad_accum_dtype' must be fp32, bf16 or fp16, got {accum_dtype!r}")

    recompute: Recompute = "none"
    cpu_checkpoints = False
    if "activation_checkpointing" in data:
        ac = r.section("activation_checkpointing")
        recompute = "full"
        notes.append(
            "activation_checkpointing configures deepspeed.checkpointing, which the model code must call "
            "(Megatron-DeepSpeed does; Hugging Face models use the Trainer's --gradient_checkpointing): "
            "taken as full recompute"
        )
        if ac.get("partition_activations"):
            unsupported["activation_checkpointing.partition_activations"] = (
                "checkpoints split over model-parallel ranks are not modelled (each rank keeps its full copy)"
            )
        cpu_checkpoints = ac.get("cpu_checkpointing") is True  # checkpointed layer inputs held in CPU memory

    optimizer: Optimizer | None = None
    opt = r.section("optimizer")
    if opt:
        kind = str(opt.get("type", "")).lower()
        params: Mapping[str, Any] = opt["params"] if isinstance(opt.get("params"), Mapping) else {}
        if kind in ("adam", "fusedadam", "cpuadam", "deepspeedcpuadam"):
            # DeepSpeed's Adam runs in AdamW mode unless params.adam_w_mode is false.
            optimizer = "adam" if params.get("adam_w_mode") is False else "adamw"
        elif kind == "adamw":
            optimizer = "adamw"
        elif kind == "sgd":
            optimizer = "sgd"
        else:
            unsupported["optimizer.type"] = f"{opt.get('type')!r} is not modelled; its state is taken as Adam's"
    else:
        notes.append("no optimizer section: the client code's optimizer is used; AdamW unless given")

    return DeepSpeedConfig(
        zero=stage, offload_optimizer=offload, micro_batch=micro, grad_accum=accum, train_batch=train,
        precision=precision, grad_accum_dtype=accum_dtype, recompute=recompute, optimizer=optimizer,
        activation_offload=cpu_checkpoints, overlap_comm=stage == 3 if overlap is None else overlap,
        unknown=[k for k in data if k not in KNOWN_KEYS]
        + [f"zero_optimization.{k}" for k in zero_section if k not in ZERO_KEYS],
        unsupported=unsupported, notes=notes, where=where,
        settings=dotted_settings(json.loads(json.dumps(data))),  # a Mapping read as plain dicts
    )


def not_in_deepspeed_config(layout: Layout) -> list[str]:
    """The parts of a layout a DeepSpeed config cannot hold (the model code and launcher set them), as
    'TP4'-style labels; empty when the JSON says everything."""
    parts = [f"{name}{size}" for name, size in (("TP", layout.tp), ("PP", layout.pp), ("VPP", layout.vpp),
                                                 ("CP", layout.cp), ("EP", layout.ep)) if size > 1]
    if layout.sequence_parallel:
        parts.append("sequence parallelism")
    if layout.recompute == "selective":
        parts.append("selective recompute")
    if layout.recompute == "full" and layout.recompute_num_layers is not None:
        parts.append(f"recompute of {layout.recompute_num_layers} layer(s) per model chunk")
    if layout.activation_offload_layers is not None:
        parts.append(f"activation offload of {layout.activation_offload_layers} layer(s)")
    return parts


def deepspeed_config_from_layout(layout: Layout, implementation: Implementation | None = None) -> dict[str, Any]:
    """A paste-ready DeepSpeed config (dump it with json.dumps) for the layout's DeepSpeed-side fields.

    Written: the batch triple, the ZeRO stage (with overlap_comm, as the plan is timed), optimizer offload,
    bf16/fp16 (fp8 GEMMs run inside a bf16 config, from Transformer Engine in the model code), fp32 gradient
    accumulation where DeepSpeed offers it (bf16 with ZeRO 0 or 1), and an activation_checkpointing section for
    full recompute. Not written, as DeepSpeed's JSON has no place for them: TP/PP/CP sizes, sequence parallelism,
    selective and partial recompute (model code and launcher), and the optimizer, which the client code builds.
    InputError where DeepSpeed cannot run the layout: optimizer offload without ZeRO, a narrowed optimizer state,
    or ZeRO 2/3 with pipeline parallelism.
    """
    if layout.offload_optimizer and layout.zero == 0:
        raise InputError("offload_optimizer: DeepSpeed offloads the optimizer only with zero_optimization.stage ≥ 1")
    if (layout.master_weights, layout.moment_dtype) != ("fp32", "fp32"):
        raise InputError(f"master_weights {layout.master_weights}, moment_dtype {layout.moment_dtype}: DeepSpeed's "
                         "ZeRO optimizer steps fp32 master partitions with fp32 moments")
    if layout.pp > 1 and layout.zero >= 2:
        raise InputError(f"zero {layout.zero} with pp {layout.pp}: DeepSpeed's pipeline engine runs ZeRO 0 or 1 only")
    zero: dict[str, Any] = {"stage": layout.zero}
    if layout.zero >= 1:
        # the plan is timed with the gradient reduction under the backward; DeepSpeed overlaps it at stages 1-2
        # only when told (runtime/zero/config.py overlap_comm, true by default at stage 3 alone: written there too,
        # so that a change of stage is not read as a change of overlap)
        zero["overlap_comm"] = True
    if layout.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_batch_size": layout.global_batch,
        "train_micro_batch_size_per_gpu": layout.micro_batch,
        "gradient_accumulation_steps": layout.grad_accumulation,
        "fp16" if layout.precision == "fp16" else "bf16": {"enabled": True},
        "zero_optimization": zero,
    }
    if layout.precision != "fp16" and layout.zero <= 1:
        default = layout.zero == 0
        if layout.fp32_grad_accumulation != default:
            config["data_types"] = {"grad_accum_dtype": "fp32" if layout.fp32_grad_accumulation else "bf16"}
    if layout.recompute == "full":
        offload = bool(implementation and implementation.activation_offload)
        config["activation_checkpointing"] = {"partition_activations": False, "cpu_checkpointing": offload}
    return config
