"""Read and write torchtitan job TOML, and read the config torchtitan saves since its TOML files gave way to
Python config functions (February 2026; `_from_dump`, planner.interop.torchtitan_config writes that form): the
parallel degrees, activation checkpointing and batch of a run.

torchtitan trains with FSDP2 (`fully_shard`) over data_parallel_shard_degree × context_parallel_degree
ranks, which is ZeRO-3 in planner's terms; with FSDP's reshard_after_forward off (pipeline parallelism
turns it off by default, torchtitan/distributed/fsdp.py) parameters stay gathered from forward to backward,
which is ZeRO-2's memory. data_parallel_replicate_degree alone is DDP (ZeRO-0); with a shard degree as well
it is HSDP (`layout.dp_shard`). -1 for the shard degree means "the GPUs the other degrees leave".
`TorchtitanConfig.implementation()` carries the framework, the resharding policy, torchao float8 (tensorwise
scaling is current scaling; FSDP float8 all-gather is `fp8_param_gather`), MX (mxfp8) and a compiled loss
(cross_entropy `fused`).

Keys are read where the current JobConfig keeps them ([parallelism], [training], [activation_checkpoint],
[model], [optimizer], [float8], [mx], [compile]) and, for older files, under [training] or [experimental].
"""

from __future__ import annotations

import builtins
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from planner.catalog import get_model
from planner.errors import InputError, format_validation_error
from planner.interop.sources import parse_json_object, read_text
from planner.limits import MAX_GLOBAL_BATCH, MAX_GPUS, MAX_LAYERS, MAX_SEQ
from planner.model.pipeline import PipelineSplit, virtual_stage_layers
from planner.schema import (
    CpExchange,
    Fp8Recipe,
    Implementation,
    Layout,
    ModelSpec,
    MomentDtype,
    Optimizer,
    Precision,
    Recompute,
)
from planner.workloads.training.legality import data_parallel_problems

# The job TOML's first lines when the plan was timed for torchtitan's models after ff0829c10 (K/V not repeated).
KV_REPEAT_NOTE = ("# Planned without repeating K/V per query head (implementation.kv_repeat: false), as torchtitan's\n"
                  "# models run since ff0829c10 (January 2026). Job TOMLs are read as the torchtitan before its\n"
                  "# config functions (February 2026), whose models repeated them: review this file beside a scenario\n"
                  "# stating implementation.kv_repeat: false, or emit torchtitan-config for current torchtitan.\n")

# torchtitan's optimizer kernels (Trainer.Config optimizer.implementation); the last keeps Adam's moments in bf16
BF16_MOMENTS = "fused_opt_states_bf16"
OPTIMIZER_IMPLEMENTATIONS = ("for-loop", "foreach", "fused", BF16_MOMENTS)

# torchtitan model flavors whose shapes equal a catalog entry (dim, layers, heads, kv heads, multiple_of and
# ffn_dim_multiplier give the catalog's ffn_hidden; vocab from the tokenizer; untied output).
FLAVORS: dict[tuple[str, str], str] = {
    ("llama3", "8B"): "llama-3.1-8b",
    ("llama3", "70B"): "llama-3.1-70b",
    ("llama3", "405B"): "llama-3.1-405b",
    ("llama2", "7B"): "llama-2-7b",
    ("llama2", "13B"): "llama-2-13b",
    ("llama2", "70B"): "llama-2-70b",
    # torchtitan/models/deepseek_v3/__init__.py: "16B" has DeepSeek-V2-Lite's shape (27 layers, dim 2048, MLA with
    # kv_lora_rank 512, 64 routed experts of 1408 + 2 shared, top-6, one dense layer), "671B" DeepSeek-V3's
    ("deepseek_v3", "16B"): "deepseek-v2-lite",
    ("deepseek_v3", "671B"): "deepseek-v3",
    # torchtitan/models/qwen3/__init__.py qwen3_configs: Qwen3's shapes with per-head query/key RMSNorms
    ("qwen3", "8B"): "qwen3-8b",
    ("qwen3", "32B"): "qwen3-32b",
    ("qwen3", "30B-A3B"): "qwen3-30b-a3b",
    ("qwen3", "235B-A22B"): "qwen3-235b-a22b",
    # torchtitan/models/gpt_oss/__init__.py gptoss_configs: biased projections, experts and router, sinks, a
    # 128-key window in alternate layers
    ("gpt_oss", "20b"): "gpt-oss-20b",
    ("gpt_oss", "120b"): "gpt-oss-120b",
}
# Schedules that hold more than one model chunk per pipeline rank (torch.distributed.pipelining).
_LOOPED = ("interleaved1f1b", "loopedbfs", "interleavedzerobubble", "zbvzerobubble", "dualpipev")


@dataclass(frozen=True)
class TorchtitanConfig:
    """What a torchtitan job file fixes. `shard` -1 means the GPUs the other degrees leave."""

    model_name: str | None = None  # catalog name, when [model] name/flavor map to one
    model: ModelSpec | None = None
    flavor: str | None = None
    replicate: int = 1
    shard: int = -1
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    expert_tp: int | None = None  # parallelism.expert_tensor_parallel_degree where the file sets one
    pipeline_layout: tuple[int, ...] | None = None  # parallelism.module_fqns_per_model_part, as layers per part
    vpp: int = 1
    reshard_after_forward: Literal["default", "always", "never"] = "default"
    local_batch: int = 8
    global_batch: int | None = None  # None: local_batch × dp, torchtitan's default
    pp_microbatch: int = 1
    seq: int = 2048
    recompute: Recompute = "selective"
    sequence_parallel: bool = True  # parallelism.enable_sequence_parallel: with TP, norms and dropout sharded
    precision: Precision = "bf16"
    fp32_grad_accumulation: bool = True
    optimizer: Optimizer = "adamw"
    moment_dtype: MomentDtype = "fp32"  # bf16: optimizer.implementation fused_opt_states_bf16 (saved configs)
    offload_optimizer: bool = False
    recompute_num_layers: int | None = None
    fp8_recipe: Fp8Recipe | None = None
    fp8_param_gather: bool = False
    compiled_loss: bool = False  # the loss under torch.compile: one Inductor kernel on the bf16 logits
    loss_chunks: int | None = None  # ChunkedLossWrapper num_chunks (saved configs)
    async_tp: bool = False  # TP collectives micro-pipelined with their matmuls (Inductor's async TP)
    cp_rotate: CpExchange | None = None  # context_parallel_rotate_method where the file states it
    cuda_graphs: bool = False  # the forward and backward captured as one CUDA graph (saved configs, August 2026)
    precision_read: bool = True  # False: the file cannot say (a saved Trainer.Config records no converters)
    toml: bool = True  # a job TOML; False: a saved Trainer.Config (torchtitan from February 2026)
    unsupported: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # keys of the job TOML that look like a misspelt one read
    where: str = "torchtitan config"

    def degrees(self, gpus: int) -> tuple[int, int]:
        """(replicate, shard) on `gpus` GPUs, resolving shard -1; InputError when they do not multiply out."""
        others = self.replicate * self.tp * self.pp * self.cp
        if self.shard == -1:
            if gpus < 1 or gpus % others:
                raise InputError(
                    f"--gpus {gpus} is not a multiple of data_parallel_replicate_degree·tensor·pipeline·context "
                    f"degrees = {self.replicate}·{self.tp}·{self.pp}·{self.cp} = {others} "
                    f"({self.where}: data_parallel_shard_degree = -1 takes the rest)"
                )
            return self.replicate, gpus // others
        if others * self.shard != gpus:
            raise InputError(
                f"--gpus {gpus} ≠ the product of the [parallelism] degrees in {self.where}: "
                f"replicate {self.replicate} · shard {self.shard} · tp {self.tp} · pp {self.pp} · cp {self.cp} "
                f"= {others * self.shard}"
            )
        return self.replicate, self.shard

    def implementation(self, base: Implementation | None = None) -> Implementation:
        """The kernels and framework knobs the file selects, over `base` (a scenario's implementation)."""
        policy = {"always": True, "never": False}.get(self.reshard_after_forward)
        stated = base.model_fields_set if base else set()
        return (base or Implementation()).model_copy(update={
            # job TOMLs come from torchtitan before its config functions (February 2026), which repeated K/V per
            # query head before SDPA until ff0829c10 (January 2026); a scenario beside the file may say otherwise
            "kv_repeat": base.kv_repeat if base and "kv_repeat" in stated else self.toml,
            "cp_exchange": self.cp_rotate or (base.cp_exchange if base else None),
            "cuda_graphs": base.cuda_graphs if base and "cuda_graphs" in stated else self.cuda_graphs,
            "framework": "torchtitan", "reshard_after_forward": policy, "fp8_recipe": self.fp8_recipe,
            "fp8_param_gather": self.fp8_param_gather, "recompute_modules": None,
            "cross_entropy": "fused" if self.compiled_loss else (base.cross_entropy if base else None),
            "loss_chunks": self.loss_chunks if not self.toml else (base.loss_chunks if base else None),
        })

    def to_layout(self, gpus: int) -> Layout:
        """The Layout on `gpus` GPUs: dp = replicate × shard; ZeRO 3 (or 2, see the module doc) under FSDP."""
        replicate, shard = self.degrees(gpus)
        dp = replicate * shard
        fsdp = shard > 1 or self.cp > 1  # torchtitan applies fully_shard over the shard × cp ranks
        hsdp = fsdp and replicate > 1  # shard inside each replica, replicate across
        resharded = self.reshard_after_forward == "always" or (self.reshard_after_forward == "default" and self.pp == 1)
        zero: Literal[0, 2, 3] = (3 if resharded else 2) if fsdp else 0
        global_batch = self.global_batch or self.local_batch * dp
        if global_batch % (self.local_batch * dp):
            raise InputError(
                f"{self.where}: training.global_batch_size {global_batch} is not a multiple of "
                f"training.local_batch_size {self.local_batch} × data-parallel degree {dp}"
            )
        if self.pp > 1 and self.local_batch % self.pp_microbatch:
            raise InputError(
                f"{self.where}: training.local_batch_size {self.local_batch} is not a multiple of "
                f"parallelism.pipeline_parallel_microbatch_size {self.pp_microbatch}"
            )
        try:
            return Layout(
                tp=self.tp, pp=self.pp, vpp=self.vpp, dp=dp, cp=self.cp, ep=self.ep, zero=zero,
                recompute=self.recompute,
                sequence_parallel=self.tp > 1 and self.sequence_parallel,
                micro_batch=self.pp_microbatch if self.pp > 1 else self.local_batch,
                global_batch=global_batch, precision=self.precision,
                fp32_grad_accumulation=self.fp32_grad_accumulation, optimizer=self.optimizer,
                moment_dtype=self.moment_dtype,
                offload_optimizer=self.offload_optimizer and fsdp,  # CPU offload is an FSDP option
                dp_shard=shard * self.cp if hsdp else None,
                recompute_num_layers=self.recompute_num_layers, expert_tp=self.expert_tp,
                pipeline_layout=self.pipeline_layout,
            )
        except ValidationError as exc:
            raise InputError(format_validation_error(exc, self.where)) from exc


def _model_parts(t: _Toml, par: tuple[str, ...], pp: int) -> tuple[int, ...] | None:
    """Transformer layers per model part of parallelism.module_fqns_per_model_part (torchtitan/config/
    job_config.py: one list of module FQNs per pipeline stage, `layers.N` for the blocks), or None."""
    found = t.find("module_fqns_per_model_part", *par)
    if found is None:
        return None
    name, parts = found
    if not isinstance(parts, list) or not parts or not all(
            isinstance(p, list) and all(isinstance(f, str) for f in p) for p in parts):
        raise InputError(f"{t.where}: {name} must be a list of lists of module names")
    if len(parts) % pp:
        raise InputError(f"{t.where}: {name} has {len(parts)} model parts, not a multiple of "
                         f"pipeline_parallel_degree {pp}")
    return tuple(sum(1 for f in p if re.fullmatch(r"layers\.\d+", f)) for p in parts)


def module_fqns(chunks: tuple[int, ...]) -> list[list[str]]:
    """parallelism.module_fqns_per_model_part for decoder layers per stage: the embedding with the first part,
    the final norm and output with the last (torchtitan's Llama module names)."""
    parts, start = [], 0
    for n in chunks:
        parts.append([f"layers.{i}" for i in range(start, start + n)])
        start += n
    parts[0].insert(0, "tok_embeddings")
    parts[-1] += ["norm", "output"]
    return parts


# The largest value each integer key may take (planner.limits); a parallel degree is a GPU count (MAX_GPUS).
INT_MAXIMUM = {"seq_len": MAX_SEQ, "batch_size": MAX_GLOBAL_BATCH, "local_batch_size": MAX_GLOBAL_BATCH,
               "global_batch_size": MAX_GLOBAL_BATCH, "pipeline_parallel_microbatch_size": MAX_GLOBAL_BATCH,
               "pipeline_parallel_layers_per_stage": MAX_LAYERS, "num_chunks": MAX_SEQ,
               # a saved Trainer.Config states its batch in tokens and its sequence as max_context_length
               "max_context_length": MAX_SEQ, "num_pp_microbatches": MAX_GLOBAL_BATCH,
               "num_tokens_per_microbatch_per_dp_rank": MAX_SEQ * MAX_GLOBAL_BATCH,
               "num_tokens_per_train_step": MAX_SEQ * MAX_GLOBAL_BATCH}

# How close (difflib's ratio) an unread key must be to a read one to be reported as its misspelling: one letter
# dropped or swapped in a 20-letter key scores 0.95–0.97; torchtitan's own neighbouring keys (context_parallel_degree
# beside context_parallel_rotate_method) score below 0.8.
MISSPELT_CUTOFF = 0.9


class _Toml:
    """Typed reads; every failure is an InputError naming the file and the section.key."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where
        self.asked: dict[str, set[str]] = {}  # section → the keys read there

    def find(self, key: str, *sections: str) -> tuple[str, Any] | None:
        for section in sections:
            self.asked.setdefault(section, set()).add(key)
            table = self.data.get(section)
            if isinstance(table, Mapping) and table.get(key) is not None:  # JSON null: not set
                return f"{section}.{key}", table[key]
        return None

    def int(self, key: str, default: int, *sections: str, minimum: int = 1) -> int:
        found = self.find(key, *sections)
        if found is None:
            return default
        name, value = found
        if isinstance(value, bool) or not isinstance(value, int) or (value < minimum and value != -1):
            raise InputError(f"{self.where}: {name} must be a positive integer, got {value!r}")
        if value > (top := INT_MAXIMUM.get(key, MAX_GPUS)):  # a degree is a GPU count
            raise InputError(f"{self.where}: {name} must be at most {top:,}, got {value:,}")
        if value == -1 and key != "data_parallel_shard_degree":
            if key == "global_batch_size":
                return default
            raise InputError(f"{self.where}: {name} must be a positive integer, got -1")
        return value

    def misspelt(self) -> list[str]:
        """`section.key` of the keys that are not read but lie within a letter or two of one read in the same
        section (`tensor_parallel_degre`): probably a typo that leaves the setting at its default, said with the
        key meant. Keys far from every read one are torchtitan settings that change neither memory nor time."""
        out = []
        for section, table in self.data.items():
            asked = self.asked.get(section, set())
            if not isinstance(table, Mapping) or not asked:
                continue
            for key in table:
                if isinstance(key, builtins.str) and key not in asked and (
                        near := difflib.get_close_matches(key, asked, n=1, cutoff=MISSPELT_CUTOFF)):
                    out.append(f"{section}.{key} (did you mean {near[0]}?)")
        return out

    def str(self, key: str, default: str, *sections: str) -> str:
        found = self.find(key, *sections)
        if found is None:
            return default
        name, value = found
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InputError(f"{self.where}: {name} must be a string, got {value!r}")
        return str(value)


def _read(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Mapping[str, Any], str, bool]:
    """(the sections, the name for messages, whether it is the JSON of a resolved Trainer.Config)."""
    if isinstance(source, Mapping):
        return source, "torchtitan config", "model_spec" in source
    if isinstance(source, str) and ("\n" in source or "[" in source or "=" in source or "{" in source):
        text, where = source, "torchtitan config"
    else:
        text, where = read_text(source, "torchtitan config")
    if text.lstrip().startswith("{"):
        return parse_json_object(text, where), where, True
    try:
        return tomllib.loads(text), where, False
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: invalid TOML: {exc}") from exc
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to be a torchtitan config") from None


def _section(data: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: {name} must be a mapping, got {type(value).__name__}")
    return value


def _from_dump(data: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, str], list[str], bool]:
    """The JSON torchtitan writes of a resolved Trainer.Config (`--debug.save_config_file NAME`, or printed with
    `--debug.print_config`; trainer.py `Trainer.Config.to_dict`, February 2026 on, when Python config functions
    replaced the job TOML) as the sections the TOML reader takes, with what it cannot tell.

    Its batch is in tokens: `training.num_tokens_per_microbatch_per_dp_rank` per forward,
    `num_tokens_per_train_step` per step (-1: one micro-batch, or `parallelism.num_pp_microbatches`, per DP rank),
    sequences of `training.max_context_length`. Configs serialise their fields without their class
    (configurable.py `Configurable.Config.to_dict`), so the activation-checkpoint policy is told by its fields
    (SelectiveAC's `force_recompute_mm_shapes_by_fqns`, MemoryBudgetAC's `memory_budget`, FullAC only the common
    ones; null: none), and the quantisation converters leave no trace (a Float8 or MXFP8 Linear config keeps only
    Linear's public fields): the precision is bf16 unless the reader is told otherwise, or the mapping is one
    planner wrote (`torchtitan_config.saved_config`), whose `model_spec.converters` names the converters its
    config function passes to model_registry (float8: Float8LinearConverter, rowwise; mxfp8). The last item
    says whether the precision was read."""
    unsupported: dict[str, str] = {}
    notes: list[str] = []
    training = dict(_section(data, "training", where))
    parallelism = dict(_section(data, "parallelism", where))
    raw = _Toml({"training": training, "parallelism": parallelism, "loss": _section(data, "loss", where)}, where)
    seq = raw.int("max_context_length", 2048, "training")
    per_forward = raw.int("num_tokens_per_microbatch_per_dp_rank", 16384, "training")
    if per_forward % seq:
        raise InputError(f"{where}: training.num_tokens_per_microbatch_per_dp_rank {per_forward} is not a multiple "
                         f"of training.max_context_length {seq}: planner plans whole sequences per micro-batch")
    micro = per_forward // seq
    pp = raw.int("pipeline_parallel_degree", 1, "parallelism")
    forwards = raw.int("num_pp_microbatches", 1, "parallelism") if pp > 1 else 1
    # -1 (the default): one gradient-accumulation step's tokens
    step = raw.int("num_tokens_per_train_step", 0, "training") if training.get(
        "num_tokens_per_train_step", -1) not in (-1, None) else 0
    training.update(seq_len=seq, local_batch_size=micro * forwards)
    if step:
        if step % seq:
            raise InputError(f"{where}: training.num_tokens_per_train_step {step} is not a multiple of "
                             f"training.max_context_length {seq}")
        training["global_batch_size"] = step // seq
    parallelism["pipeline_parallel_microbatch_size"] = micro
    if raw.int("expert_parallel_degree", 1, "parallelism") > 1:
        # EP borrows ranks from FSDP and TP, the experts unsplit (configs.py ParallelismConfig.expert_parallel_degree)
        parallelism["expert_tensor_parallel_degree"] = 1
    if training.get("dtype") == "bfloat16":
        unsupported["training.dtype"] = ("bfloat16 parameters, gradients and optimizer state without an fp32 copy "
                                         "are not read; taken as mixed precision (set job.master_weights none)")
    for key in ("pipeline_parallel_first_stage_less_layers", "pipeline_parallel_last_stage_less_layers"):
        if parallelism.get(key, 1) != 1 and pp > 1 and not parallelism.get("module_fqns_per_model_part"):
            unsupported[f"parallelism.{key}"] = "a stage split other than torchtitan's default is not read"
    if parallelism.get("context_parallel_load_balancer", "headtail") is None:
        unsupported["parallelism.context_parallel_load_balancer"] = (
            "no load balancing: planner models the load-balanced ring, whose ranks do equal causal work")

    checkpoint: dict[str, Any]
    ac = data.get("activation_checkpoint")
    if ac is None:
        checkpoint = {"mode": "none"}
    elif not isinstance(ac, Mapping):
        raise InputError(f"{where}: activation_checkpoint must be a mapping or null, got {type(ac).__name__}")
    elif "memory_budget" in ac:
        checkpoint = {"mode": "selective", "selective_ac_option": "op"}
        unsupported["activation_checkpoint"] = (
            "MemoryBudgetAC (the compiler chooses what to recompute) is not modelled; taken as the per-op policy")
    elif "force_recompute_mm_shapes_by_fqns" in ac:
        checkpoint = {"mode": "selective", "selective_ac_option": "op"}  # SelectiveAC: the per-op policy
    else:
        checkpoint = {"mode": "full"}  # FullAC: every block wrapped

    opt_section = _section(data, "optimizer", where)
    groups = opt_section.get("param_groups") or []
    if not isinstance(groups, list):
        raise InputError(f"{where}: optimizer.param_groups must be a list, got {type(groups).__name__}")
    given = [g.get("optimizer_name") for g in groups if isinstance(g, Mapping)]
    if not all(isinstance(n, str) for n in given):
        raise InputError(f"{where}: optimizer.param_groups[].optimizer_name must be a name (AdamW, Adam, ...)")
    optimizer = {"name": given[0]} if len(set(given)) == 1 else {}
    if len(set(given)) > 1:
        unsupported["optimizer.param_groups"] = "several optimizers over parameter groups: taken as AdamW's state"
    kernel = opt_section.get("implementation", "fused")
    if kernel not in OPTIMIZER_IMPLEMENTATIONS:
        raise InputError(f"{where}: optimizer.implementation must be one of {', '.join(OPTIMIZER_IMPLEMENTATIONS)}, "
                         f"got {kernel!r}")
    optimizer["implementation"] = kernel

    spec = _section(data, "model_spec", where)
    model: dict[str, Any] = {"name": spec.get("name") or "unknown", "flavor": spec.get("flavor") or "unknown"}
    float8: dict[str, Any] = {}
    converters = spec.get("converters")
    if converters is not None:
        if not isinstance(converters, list) or not all(c in ("float8", "mxfp8") for c in converters):
            raise InputError(f"{where}: model_spec.converters must be a list of float8 / mxfp8, got {converters!r}")
        model["converters"] = ["mx" if c == "mxfp8" else c for c in converters]
        float8["recipe_name"] = "rowwise"  # Float8LinearConverter's only scalings are rowwise
    else:
        notes.append("the saved config does not record quantisation converters (Float8 / MXFP8 Linear configs "
                     "serialise as Linear): read as bf16 unless a scenario beside it states job.precision")
    loss = {"num_chunks": raw.int("num_chunks", 1, "loss")}  # ChunkedLossWrapper's; 1: the loss over all tokens
    sections = {"training": training, "parallelism": parallelism, "activation_checkpoint": checkpoint,
                "optimizer": optimizer, "model": model, "float8": float8, "loss": loss,
                "compile": dict(_section(data, "compile", where))}
    return sections, unsupported, notes, converters is not None


def _converters(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value] if isinstance(value, list) else []


def parse_torchtitan_toml(
    path_or_text: str | os.PathLike[str] | Mapping[str, Any], *, model: ModelSpec | None = None
) -> TorchtitanConfig:
    """A TorchtitanConfig from a job TOML file, TOML text, or an already parsed mapping.

    Absent keys take torchtitan's JobConfig defaults. `model` (planner's --model) stands in for a flavor
    with no catalog equivalent; without either, `model` stays None with a note. InputError for malformed
    values or an unknown activation-checkpoint mode.
    """
    data, where, dump = _read(path_or_text)
    unsupported: dict[str, str] = {}
    notes: list[str] = []
    saved_model: Any = None
    precision_read = True
    if dump:
        saved_model = _section(data, "model_spec", where).get("model")
        data, unsupported, notes, precision_read = _from_dump(data, where)
    t = _Toml(data, where)
    par = ("parallelism", "training", "experimental")  # older files kept the degrees under [training]

    name, flavor = t.str("name", "llama3", "model"), t.str("flavor", "debugmodel", "model")
    model_name = FLAVORS.get((name, flavor))
    model = model or (get_model(model_name) if model_name else None)
    if model is None:
        notes.append(f"model {name} flavor {flavor} has no catalog equivalent: give the model with --model")

    if dump and model is not None and (why := _dims_differ(saved_model, model)) is not None:
        unsupported["model_spec.model"] = why
    if dump and (flex := _flex_attention(saved_model)) is not None:
        notes.append(f"attention: FlexAttention ({flex}; block-causal masks over packed documents, torchtitan's "
                     "default from 2026) is timed as the preset's SDPA flash kernel")
    tp, pp = t.int("tensor_parallel_degree", 1, *par), t.int("pipeline_parallel_degree", 1, *par)
    sp = t.find("enable_sequence_parallel", *par)
    if sp is not None and not isinstance(sp[1], bool):
        raise InputError(f"{where}: {sp[0]} must be true or false, got {sp[1]!r}")
    cp, ep = t.int("context_parallel_degree", 1, *par), t.int("expert_parallel_degree", 1, *par)
    rotate = t.find("context_parallel_rotate_method", *par)  # [experimental] (2024), [parallelism] (2025)
    if cp > 1 and not dump:
        notes.append("context parallelism exchanges K/V repeated per query head, as torchtitan's models fed SDPA "
                     "before ff0829c10 (January 2026); for a later run set implementation.kv_repeat: false in a "
                     "scenario beside the file")
    if rotate is not None and rotate[1] not in ("allgather", "alltoall"):
        raise InputError(f"{where}: {rotate[0]} must be 'allgather' or 'alltoall', got {rotate[1]!r}")
    etp = t.int("expert_tensor_parallel_degree", 0, *par, minimum=0)  # 0: not set (the experts split like TP)
    replicate = t.int("data_parallel_replicate_degree", 1, *par)
    shard = t.int("data_parallel_shard_degree", -1, *par)
    if replicate > 1 and shard == -1:
        notes.append("data_parallel_replicate_degree with data_parallel_shard_degree -1: HSDP over the GPUs left")
    reshard = t.str("fsdp_reshard_after_forward", "default", *par)
    if reshard not in ("default", "always", "never"):
        raise InputError(f"{where}: parallelism.fsdp_reshard_after_forward must be default, always or never")

    vpp = 1
    schedule = t.str("pipeline_parallel_schedule", "1F1B", *par)
    if pp > 1 and schedule.lower() in _LOOPED:
        per_stage = t.int("pipeline_parallel_layers_per_stage", 0, *par, minimum=0)
        if not per_stage:
            vpp = 2  # torchtitan's default for multi-stage schedules: two stages per rank
        elif model is not None:
            # torchtitan/distributed/pipeline_parallel.py: ⌈(layers + embedding + output) / layers per stage⌉
            stages = -(-(model.layers + 2) // per_stage)
            if stages % pp:
                raise InputError(f"{where}: parallelism.pipeline_parallel_layers_per_stage {per_stage} gives "
                                 f"{stages} stages, not a multiple of pipeline_parallel_degree {pp}")
            vpp = stages // pp
        else:
            unsupported["parallelism.pipeline_parallel_schedule"] = (
                f"{schedule} with pipeline_parallel_layers_per_stage and no known layer count: "
                "the stages per rank are not read; taken as 1"
            )
    elif pp > 1 and schedule.lower() == "gpipe":
        unsupported["parallelism.pipeline_parallel_schedule"] = (
            "GPipe keeps every micro-batch's activations until the backward; planner models 1F1B"
        )
    if t.find("pipeline_parallel_split_points", *par) and pp > 1:
        unsupported["parallelism.pipeline_parallel_split_points"] = "uneven pipeline stages are not modelled"
    if pp > 1 and not dump:
        notes.append("torchtitan before e5ef99aab (October 2025) kept the last stage's logits of every micro-batch "
                     "until the step ended (torch.distributed.pipelining merged them for step()); for a run of "
                     "that version set implementation.pipeline_outputs_kept in a scenario beside the file")
    chunks = _model_parts(t, par, pp)
    if chunks is not None:
        vpp = len(chunks) // pp

    recompute_num_layers: int | None = None
    mode = t.str("mode", "selective", "activation_checkpoint")
    if mode not in ("none", "selective", "full"):
        raise InputError(f"{where}: activation_checkpoint.mode must be none, selective or full, got {mode!r}")
    recompute: Recompute = mode  # type: ignore[assignment]
    if mode == "selective":
        # "op": the torchtitan preset's selective recompute is its op-level policy (presets.Preset.selective)
        option = t.str("selective_ac_option", "2", "activation_checkpoint")
        if option.isdigit() and int(option) == 1:
            recompute = "full"  # every layer wrapped
        elif option.isdigit() and int(option) > 1:
            # one layer in N wrapped in full checkpointing (torchtitan activation_checkpoint.py): as many recomputed
            # layers per stage as Megatron's block method with ⌈layers per stage / N⌉
            recompute = "full"
            layers_per_rank = None
            if model is not None:
                got = virtual_stage_layers(model.layers, pp, vpp, PipelineSplit("torchtitan"))
                layers_per_rank = max(got) if not isinstance(got, str) else None
            if layers_per_rank is None:
                unsupported["activation_checkpoint.selective_ac_option"] = (
                    f"one layer in {option} checkpointed without a known layer count: taken as full"
                )
            else:
                recompute_num_layers = -(-layers_per_rank // int(option))
        elif option != "op":
            raise InputError(f"{where}: activation_checkpoint.selective_ac_option must be 'op' or an integer")

    local = t.int("local_batch_size", 0, "training") or t.int("batch_size", 8, "training")
    global_batch = t.int("global_batch_size", 0, "training") or None
    pp_micro = t.int("pipeline_parallel_microbatch_size", 1, *par)
    seq = t.int("seq_len", 2048, "training")

    precision: Precision = "bf16"
    if t.str("mixed_precision_param", "bfloat16", "training", "parallelism") == "float32":
        unsupported["training.mixed_precision_param"] = "fp32 parameters in compute are not modelled; taken as bf16"
    model_table: Mapping[str, Any] = data["model"] if isinstance(data.get("model"), Mapping) else {}
    converters = _converters(model_table.get("converters", []))
    float8: Mapping[str, Any] = data["float8"] if isinstance(data.get("float8"), Mapping) else {}
    fp8_recipe: Fp8Recipe | None = None
    fp8_gather = False
    if any(c in ("float8", "mx") for c in converters) or float8.get("enable_float8_linear") is True:
        precision = "fp8"
        # torchao float8: tensorwise (dynamic current scaling, the default) or rowwise scales; MX: mxfp8
        recipe_name = str(float8.get("recipe_name") or "tensorwise").lower()
        fp8_recipe = "mxfp8" if "mx" in converters else "blockwise" if recipe_name.startswith("rowwise") else "current"
        fp8_gather = float8.get("enable_fsdp_float8_all_gather") is True
    reduce = t.str("mixed_precision_reduce", "float32", "training", "parallelism")

    compiled_loss = _compiled_loss(t)
    loss_chunks = t.int("num_chunks", 1, "loss") if dump else 1  # ChunkedLossWrapper (saved configs)
    # torchtitan captures the forward and backward in one CUDA graph unless training.disable_cuda_graphs
    # (trainer.py, f84224af0, August 2026; never with pipeline parallelism); configs saved before have no key
    no_graphs = t.find("disable_cuda_graphs", "training") if dump else None
    if no_graphs is not None and not isinstance(no_graphs[1], bool):
        raise InputError(f"{where}: {no_graphs[0]} must be true or false, got {no_graphs[1]!r}")
    cuda_graphs = no_graphs is not None and not no_graphs[1] and pp == 1
    if cuda_graphs:
        notes.append("the forward and backward run as one CUDA graph (training.disable_cuda_graphs false, "
                     "torchtitan's default from August 2026): kernels replay without their CPU launches")
    # async TP: [experimental] (2024), [parallelism] (2025), compile (saved configs, 2026)
    async_tp = t.find("enable_async_tensor_parallel", "parallelism", "experimental", "compile")
    if async_tp is not None and not isinstance(async_tp[1], bool):
        raise InputError(f"{where}: {async_tp[0]} must be true or false, got {async_tp[1]!r}")

    offload = t.find("enable_cpu_offload", "training", "parallelism")
    if offload and offload[1] is True:
        unsupported[offload[0]] = (
            "FSDP CPU offload moves parameters and gradients too; planner offloads the optimizer state only"
        )
    opt_name = t.str("name", "AdamW", "optimizer")
    optimizer: Optimizer = "adamw"
    if opt_name == "Adam":
        optimizer = "adam"
    elif opt_name != "AdamW":
        unsupported["optimizer.name"] = f"{opt_name!r} is not modelled; its state is taken as AdamW's"
    # torchtitan's fused Adam/AdamW with bf16 moments on FSDP's fp32 shards (components/optimizer/optimizer.py
    # fused_opt_states_bf16, April 2026)
    moment_dtype: MomentDtype = "bf16" if t.str("implementation", "fused", "optimizer") == BF16_MOMENTS else "fp32"
    if t.find("early_step_in_backward", "optimizer") == ("optimizer.early_step_in_backward", True):
        unsupported["optimizer.early_step_in_backward"] = "gradients freed during the backward are not modelled"

    return TorchtitanConfig(
        model_name=model_name, model=model, flavor=flavor, replicate=replicate, shard=shard, tp=tp, pp=pp, cp=cp,
        ep=ep, vpp=vpp, reshard_after_forward=reshard,  # type: ignore[arg-type]
        sequence_parallel=sp is None or sp[1],
        expert_tp=etp if etp and etp != tp else None, pipeline_layout=chunks,
        local_batch=local, global_batch=global_batch, pp_microbatch=pp_micro, seq=seq, recompute=recompute,
        precision=precision, fp32_grad_accumulation=reduce == "float32", optimizer=optimizer, moment_dtype=moment_dtype,
        offload_optimizer=bool(offload and offload[1] is True), recompute_num_layers=recompute_num_layers,
        fp8_recipe=fp8_recipe, fp8_param_gather=fp8_gather, compiled_loss=compiled_loss, unsupported=unsupported,
        notes=notes, where=where, precision_read=precision_read, toml=not dump,
        async_tp=async_tp is not None and async_tp[1] and tp > 1,
        loss_chunks=loss_chunks if loss_chunks > 1 else None,
        cp_rotate=rotate[1] if rotate is not None else None, cuda_graphs=cuda_graphs,
        unknown=[] if dump else t.misspelt(),
    )


def _flex_attention(saved: Any) -> str | None:
    """The FlexAttention backend a saved model's first layer runs ("triton", or its kernel_options BACKEND), None
    for another attention (VarlenAttention keeps `window_size`; FlexAttention.Config holds `block_size` and
    `kernel_options`, torchtitan/models/common/attention.py)."""
    layers = saved.get("layers") if isinstance(saved, Mapping) else None
    first = layers[0] if isinstance(layers, list) and layers else None
    attention = first.get("attention") if isinstance(first, Mapping) else None
    inner = attention.get("inner_attention") if isinstance(attention, Mapping) else None
    if not isinstance(inner, Mapping) or "block_size" not in inner:
        return None
    options = inner.get("kernel_options")
    backend = options.get("BACKEND") if isinstance(options, Mapping) else None
    return f"{str(backend).lower()} backend" if backend else "triton kernels"


def _dims_differ(saved: Any, model: ModelSpec) -> str | None:
    """Where the saved model config's shape (Decoder.Config `dim`, `vocab_size`, one entry per layer in `layers`)
    is not `model`'s, the difference; None where it agrees or says nothing."""
    if not isinstance(saved, Mapping):
        return None
    theirs = {"hidden": saved.get("dim"), "vocab": saved.get("vocab_size"),
              "layers": len(saved["layers"]) if isinstance(saved.get("layers"), list) else None}
    differ = [f"{k} {v} (planner's {model.name}: {getattr(model, k)})" for k, v in theirs.items()
              if isinstance(v, int) and not isinstance(v, bool) and v != getattr(model, k)]
    if not differ:
        return None
    return "the saved model has " + ", ".join(differ) + "; planned with the catalog model (give --model)"


def _compiled_loss(t: _Toml) -> bool:
    """Whether the loss runs under torch.compile. Inductor fuses the fp32 upcast, log-softmax and its gradient
    into kernels that keep only the bf16 logits and a log-sum-exp (planner's `fused` cross-entropy).

    [compile] enable with "loss" among components (default ["model", "loss"], torchtitan config/configs.py
    CompileConfig); older files' [training] compile compiled the loss with the model (components/loss.py
    build_cross_entropy_loss from February 2025; train.py left it eager between December 2024 and then).
    """
    found = t.find("enable", "compile") or t.find("compile", "training")
    if found is None:
        return False
    name, enabled = found
    if not isinstance(enabled, bool):
        raise InputError(f"{t.where}: {name} must be true or false, got {enabled!r}")
    components = t.find("components", "compile") if name == "compile.enable" else None
    if components is not None and (not isinstance(components[1], list)
                                   or not all(isinstance(c, str) for c in components[1])):
        raise InputError(f"{t.where}: compile.components must be a list of names, got {components[1]!r}")
    return enabled and (components is None or "loss" in components[1])


TomlValue = int | str | bool | list[str] | list[list[str]]


def _toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parallelism_section(layout: Layout, impl: Implementation, spec: ModelSpec | None) -> dict[str, TomlValue]:
    """The [parallelism] keys of a layout (the job TOML's names; torchtitan's saved configs keep them, micro-batch
    counts aside). ZeRO-1 and ZeRO-2 have no FSDP2 form: both are written as FSDP with reshard_after_forward
    "never" (ZeRO-2's memory, at most ZeRO-1's). InputError where torchtitan cannot run the layout: plain DDP
    combined with TP/PP/CP, ZeRO-0 with context parallelism (FSDP always shards over the CP ranks), an optimizer
    state narrower than fp32 master weights and fp32 or bf16 moments, or virtual stages without the model's layer
    count."""
    if layout.master_weights != "fp32" or layout.moment_dtype not in ("fp32", "bf16"):
        raise InputError(f"master_weights {layout.master_weights}, moment_dtype {layout.moment_dtype}: torchtitan's "
                         "AdamW steps FSDP's fp32 parameter shards, with fp32 moments or (fused_opt_states_bf16) bf16")
    if layout.cp > 1 and impl.cp_exchange in ("ring", "ulysses", "te_allgather", "hierarchical"):
        raise InputError(f"cp_exchange {impl.cp_exchange}: torchtitan's context parallelism is PyTorch's, which "
                         "rotates K/V by all-gather or all-to-all (cp_exchange allgather or alltoall)")
    parallel: dict[str, TomlValue] = {}
    if problems := data_parallel_problems(layout, "torchtitan"):
        raise InputError("; ".join(problems))
    if layout.zero == 0:
        parallel.update(data_parallel_replicate_degree=layout.dp, data_parallel_shard_degree=1)
    else:
        shard = layout.dp_shard // layout.cp if layout.dp_shard and layout.dp_shard % layout.cp == 0 else None
        if shard and layout.dp % shard == 0 and shard < layout.dp:  # HSDP: shard inside, replicate across
            parallel.update(data_parallel_replicate_degree=layout.dp // shard, data_parallel_shard_degree=shard)
        else:
            parallel.update(data_parallel_replicate_degree=1, data_parallel_shard_degree=layout.dp)
        # torchtitan's default reshards after forward without PP and keeps parameters gathered with PP.
        if layout.zero < 3 or (impl.reshard_after_forward is False):
            parallel["fsdp_reshard_after_forward"] = "never"
        elif layout.pp > 1:
            parallel["fsdp_reshard_after_forward"] = "always"
    parallel.update(
        tensor_parallel_degree=layout.tp, pipeline_parallel_degree=layout.pp, context_parallel_degree=layout.cp
    )
    if layout.ep > 1:
        parallel["expert_parallel_degree"] = layout.ep
    if layout.expert_tp is not None:
        parallel["expert_tensor_parallel_degree"] = layout.expert_tp
    if layout.pp > 1:
        parallel["pipeline_parallel_microbatch_size"] = layout.micro_batch
        parallel["pipeline_parallel_schedule"] = "Interleaved1F1B" if layout.vpp > 1 else "1F1B"
        if layout.pipeline_layout is not None:
            parallel["module_fqns_per_model_part"] = module_fqns(layout.pipeline_layout)
        elif layout.vpp > 2:
            if spec is None:
                raise InputError("vpp > 2: pipeline_parallel_layers_per_stage needs the model's layer count (model=)")
            # torchtitan's split counts the embedding and the output as one layer each
            units, stages = spec.layers + 2, layout.pp * layout.vpp
            per_stage = -(-units // stages)
            if -(-units // per_stage) == stages:
                parallel["pipeline_parallel_layers_per_stage"] = per_stage
            else:  # no whole layers per stage gives that many stages: the same even split, stage by stage
                got = virtual_stage_layers(spec.layers, layout.pp, layout.vpp, PipelineSplit("torchtitan"))
                if isinstance(got, str):
                    raise InputError(f"vpp {layout.vpp}: {got}")
                parallel["module_fqns_per_model_part"] = module_fqns(got)
    return parallel


def training_checks(layout: Layout) -> None:
    """InputError for what torchtitan's trainer cannot run: reductions or compute outside bf16/fp32, the optimizers
    it does not build, CPU offload without FSDP."""
    if not layout.fp32_grad_accumulation:
        raise InputError("fp32_grad_accumulation false: torchtitan reduces and keeps gradients in float32")
    if layout.precision == "fp16":
        raise InputError("precision fp16: torchtitan trains in bfloat16 (mixed_precision_param)")
    if layout.offload_optimizer and (layout.zero == 0 or layout.dp * layout.cp == 1):
        raise InputError("offload_optimizer: torchtitan offloads through FSDP, which needs zero ≥ 1 and dp·cp > 1")
    if layout.optimizer not in ("adam", "adamw"):
        raise InputError(f"optimizer {layout.optimizer}: torchtitan builds Adam or AdamW")
    if layout.activation_offload_layers is not None:
        raise InputError("activation_offload_layers: torchtitan's trainer does not offload activations "
                         "(Megatron-Core's --cpu-offloading does)")


def torchtitan_toml_from_layout(layout: Layout, seq: int, model: ModelSpec | str | None = None,
                                implementation: Implementation | None = None) -> str:
    """The [parallelism], [activation_checkpoint] and [training] sections of a torchtitan job file.

    With a model that is a torchtitan flavor, a [model] section names it; fp8 adds the float8 converter.
    ZeRO-1 and ZeRO-2 have no FSDP2 form: both are written as FSDP with reshard_after_forward "never"
    (ZeRO-2's memory, at most ZeRO-1's), which reads back as zero 2. InputError where torchtitan cannot run
    the layout: plain DDP combined with TP/PP/CP, ZeRO-0 with context parallelism (FSDP always shards over
    the CP ranks), an optimizer torchtitan does not build or a narrowed optimizer state, or virtual stages without
    the model's layer count.
    """
    spec = get_model(model) if isinstance(model, str) else model
    impl = implementation or Implementation(framework="torchtitan")
    parallel = parallelism_section(layout, impl, spec)
    if layout.cp > 1 and impl.cp_exchange == "alltoall":
        parallel["context_parallel_rotate_method"] = "alltoall"  # the default gathers every rank's K/V at once
    training_checks(layout)
    if (impl.loss_chunks or 1) > 1:
        raise InputError("loss_chunks: torchtitan's job TOML has no chunked loss (ChunkedLossWrapper came with its "
                         "config functions: --emit torchtitan-config)")
    if layout.moment_dtype != "fp32":
        raise InputError(f"moment_dtype {layout.moment_dtype}: torchtitan's job TOML keeps fp32 moments (bf16 ones, "
                         f"optimizer.implementation {BF16_MOMENTS}, came with its config functions: --emit "
                         "torchtitan-config)")
    checkpoint: dict[str, TomlValue] = {"mode": layout.recompute}
    if layout.recompute == "selective":
        checkpoint["selective_ac_option"] = "op"
    elif layout.recompute == "full" and layout.recompute_num_layers is not None and spec is not None:
        got = virtual_stage_layers(spec.layers, layout.pp, layout.vpp, PipelineSplit("torchtitan"))
        per_rank = max(got) if not isinstance(got, str) else spec.layers
        # every N-th layer checkpointed recomputes ⌈layers per stage / N⌉ of them
        every = max(1, per_rank // layout.recompute_num_layers)
        if every > 1:
            checkpoint.update(mode="selective", selective_ac_option=str(every))

    training: dict[str, TomlValue] = {
        # with PP one step's micro-batches all run in one pipeline schedule; without, local = micro-batch
        "local_batch_size": layout.global_batch // layout.dp if layout.pp > 1 else layout.micro_batch,
        "global_batch_size": layout.global_batch,
        "seq_len": seq,
        "mixed_precision_param": "bfloat16",
    }
    if layout.offload_optimizer:
        training["enable_cpu_offload"] = True

    sections: list[tuple[str, dict[str, TomlValue]]] = []
    flavor = next((k for k, v in FLAVORS.items() if spec is not None and v == spec.name), None)
    model_section: dict[str, TomlValue] = {}
    if flavor:
        model_section.update(name=flavor[0], flavor=flavor[1])
    float8: dict[str, TomlValue] = {}
    if layout.precision == "fp8":
        model_section["converters"] = ["mx"] if impl.fp8_recipe == "mxfp8" else ["float8"]
        if impl.fp8_recipe == "blockwise":
            float8["recipe_name"] = "rowwise"
        if impl.fp8_param_gather:
            float8["enable_fsdp_float8_all_gather"] = True
    if model_section:
        sections.append(("model", model_section))
    if float8:
        sections.append(("float8", float8))
    if impl.cross_entropy == "fused":  # the loss under torch.compile, the model left eager as planner times it
        sections.append(("compile", {"enable": True, "components": ["loss"]}))
    sections.append(("optimizer", {"name": "Adam" if layout.optimizer == "adam" else "AdamW"}))
    sections += [("parallelism", parallel), ("activation_checkpoint", checkpoint), ("training", training)]
    # a job TOML is read back as the torchtitan that read such files, whose models repeated K/V per query head
    # (TorchtitanConfig.implementation); a plan timed without the repeat says how to read it back the same
    gqa = spec is not None and spec.n_kv_heads < spec.heads
    note = KV_REPEAT_NOTE if gqa and not impl.kv_repeat else ""
    return note + "\n".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items()) for name, table in sections
    )
