"""A plan as torchtitan's current configuration: a Python config function (February 2026 on, when config
functions selected with `--module/--config` replaced the job TOML; torchtitan/config/README.md).

`saved_config` is the plan in the shape torchtitan saves a resolved Trainer.Config in (`--debug.save_config_file`,
which planner.interop.torchtitan reads), restricted to the fields the plan sets, plus the converters the
function passes to `model_registry` (a saved config cannot record them). `config_function` writes those fields
as assignments over the model's registry function (`llama3_8b()` …), the form torchtitan's README recommends
for a run's own configuration; `config_settings` reads the assignments back, for a review's changes.

What the current torchtitan cannot express is refused (InputError): partial recompute (FullAC wraps every
block, SelectiveAC is the per-op policy), tensorwise or delayed fp8 and fp8 parameter all-gathers
(Float8LinearConverter scales rowwise, planner's `blockwise`; MXFP8LinearConverter is `mxfp8`), and EP whose
experts split over TP (torchtitan's EP borrows ranks from FSDP and TP, experts unsplit: `expert_tp` 1).
"""

from __future__ import annotations

import json
import re
from typing import Any

from planner.catalog import get_model
from planner.errors import InputError
from planner.interop.torchtitan import BF16_MOMENTS, FLAVORS, parallelism_section, training_checks
from planner.schema import Implementation, Layout, ModelSpec

# torchtitan's registry function per flavor (torchtitan/models/{llama3,deepseek_v3}/config_registry.py @b5bcd76)
REGISTRY = {("llama3", "8B"): "llama3_8b", ("llama3", "70B"): "llama3_70b", ("llama3", "405B"): "llama3_405b",
            ("deepseek_v3", "16B"): "deepseek_v3_16b", ("deepseek_v3", "671B"): "deepseek_v3_671b"}
CONVERTER_CLASSES = {"float8": "Float8LinearConverter", "mxfp8": "MXFP8LinearConverter"}


def saved_config(layout: Layout, seq: int, model: ModelSpec | str | None = None,
                 implementation: Implementation | None = None) -> dict[str, Any]:
    """The fields a plan sets, in the shape of torchtitan's saved Trainer.Config; InputError for what the current
    torchtitan cannot run (the module doc)."""
    spec = get_model(model) if isinstance(model, str) else model
    impl = implementation or Implementation(framework="torchtitan")
    toml = parallelism_section(layout, impl, spec)
    training_checks(layout)
    if layout.recompute_num_layers is not None:
        raise InputError("recompute_num_layers: torchtitan's FullAC wraps every block; it has no partial recompute")
    if layout.ep > 1 and layout.tp > 1 and layout.expert_tp != 1:
        raise InputError("ep with experts split over TP: torchtitan's EP borrows ranks from FSDP and TP and keeps "
                         "each expert whole (expert_tp 1)")
    parallelism: dict[str, Any] = {k: v for k, v in toml.items()
                                   if k not in ("pipeline_parallel_microbatch_size", "expert_tensor_parallel_degree")}
    if isinstance(parts := parallelism.get("module_fqns_per_model_part"), list):
        # the output projection is `lm_head` in today's models (distributed/pipeline_parallel.py), `output` before
        parallelism["module_fqns_per_model_part"] = [["lm_head" if f == "output" else f for f in p] for p in parts]
    if layout.tp > 1:
        parallelism["enable_sequence_parallel"] = layout.sequence_parallel
    if layout.pp > 1:  # every micro-batch of a step in one pipeline schedule
        parallelism["num_pp_microbatches"] = layout.global_batch // (layout.dp * layout.micro_batch)
    training: dict[str, Any] = {
        "num_tokens_per_microbatch_per_dp_rank": layout.micro_batch * seq,
        "num_tokens_per_train_step": layout.global_batch * seq,
        "max_context_length": seq,
        "mixed_precision_param": "bfloat16",
        "mixed_precision_reduce": "float32",
    }
    if layout.offload_optimizer:
        training["enable_cpu_offload"] = True
    # today's trainer captures the step in one CUDA graph by default, and refuses to under pipeline or expert
    # parallelism (trainer.py _validate_cuda_graphs): off unless the plan was timed with graphs
    if impl.cuda_graphs and layout.pp > 1:
        raise InputError("cuda_graphs with pp > 1: torchtitan's CUDA graphs do not support pipeline parallelism")
    if impl.cuda_graphs and layout.ep > 1:
        raise InputError("cuda_graphs with ep > 1: torchtitan graphs expert parallelism only with dispatchers that "
                         "never synchronise the host (HybridEP non-blocking, MinimalAsyncEP), which planner does "
                         "not write")
    training["disable_cuda_graphs"] = not impl.cuda_graphs
    checkpoint: dict[str, Any] | None = {
        "none": None, "full": {}, "selective": {"force_recompute_mm_shapes_by_fqns": ["moe.router.gate"]},
    }[layout.recompute]
    converters: list[str] = []
    if layout.precision == "fp8":
        if impl.fp8_recipe not in ("blockwise", "mxfp8"):
            raise InputError(f"fp8_recipe {impl.fp8_recipe or 'the default'}: torchtitan's Float8LinearConverter "
                             "scales rowwise (blockwise) and its MXFP8LinearConverter is mxfp8")
        if impl.fp8_param_gather:
            raise InputError("fp8_param_gather: torchtitan's rowwise and MX converters all-gather 16-bit parameters")
        converters = ["mxfp8" if impl.fp8_recipe == "mxfp8" else "float8"]
    flavor = next((k for k, v in FLAVORS.items() if spec is not None and v == spec.name), None)
    out: dict[str, Any] = {
        "model_spec": {"name": flavor[0] if flavor else None, "flavor": flavor[1] if flavor else None,
                       "converters": converters},
        "parallelism": parallelism, "training": training, "activation_checkpoint": checkpoint,
        # the loss under torch.compile, the model left eager as planner times it
        "compile": {"enable": True, "components": ["loss"]} if impl.cross_entropy == "fused" else {"enable": False},
        "optimizer": {"param_groups": [{"optimizer_name": "Adam" if layout.optimizer == "adam" else "AdamW"}],
                      "implementation": BF16_MOMENTS if layout.moment_dtype == "bf16" else "fused"},
    }
    vocab = {"global_vocab_size": spec.vocab} if spec is not None else {}
    chunks = impl.loss_chunks or 1
    out["loss"] = {"num_chunks": chunks, "loss_fn": vocab} if chunks > 1 else vocab
    return out


def config_function(layout: Layout, seq: int, model: ModelSpec | str | None = None,
                    implementation: Implementation | None = None, name: str = "planner_plan") -> str:
    """A torchtitan config function that runs the plan: the model's registry function with every field the plan
    sets assigned; save it in a module and run `--module that.module --config planner_plan`."""
    cfg = saved_config(layout, seq, model, implementation)
    spec = cfg["model_spec"]
    key = (spec["name"], spec["flavor"])
    base = REGISTRY.get(key)
    imports = ["from torchtitan.trainer import Trainer"]
    lines = [f"def {name}() -> Trainer.Config:"]
    if base:
        imports.append(f"from torchtitan.models.{spec['name']}.config_registry import {base}")
        lines.append(f"    config = {base}()")
    else:  # no torchtitan flavor of this model: the user's own function for it is the base
        lines.append("    config = base_config()  # your torchtitan config function for this model")
    if spec["converters"]:
        classes = [CONVERTER_CLASSES[c] for c in spec["converters"]]
        imports.append(f"from torchtitan.components.quantization import {', '.join(classes)}")
        converters = f"converters=[{', '.join(c + '.Config()' for c in classes)}]"
        if base:
            imports.append(f"from torchtitan.models.{spec['name']} import model_registry")
            lines.append(f"    config.model_spec = model_registry({json.dumps(spec['flavor'])}, {converters})")
        else:
            lines.append(f"    # config.model_spec = your model's model_registry(..., {converters})")
    for section in ("parallelism", "training"):
        lines += [f"    config.{section}.{k} = {_python(v)}" for k, v in cfg[section].items()]
    ac = cfg["activation_checkpoint"]
    if ac is None:
        lines.append("    config.activation_checkpoint = None")
    else:
        policy = "SelectiveAC" if ac else "FullAC"
        imports.append(f"from torchtitan.distributed.activation_checkpoint import {policy}")
        lines.append(f"    config.activation_checkpoint = {policy}.Config()")
    lines += [f"    config.compile.{k} = {_python(v)}" for k, v in cfg["compile"].items()]
    loss = cfg["loss"]
    vocab_size = loss.get("loss_fn", loss).get("global_vocab_size")
    vocab = f"global_vocab_size={vocab_size}" if vocab_size else ""
    if "num_chunks" in loss:
        imports.append("from torchtitan.components.loss import ChunkedLossWrapper, CrossEntropyLoss")
        lines.append(f"    config.loss = ChunkedLossWrapper.Config(num_chunks={loss['num_chunks']}, "
                     f"loss_fn=CrossEntropyLoss.Config({vocab}))")
    else:
        imports.append("from torchtitan.components.loss import CrossEntropyLoss")
        lines.append(f"    config.loss = CrossEntropyLoss.Config({vocab})")
    opt = cfg["optimizer"]["param_groups"][0]["optimizer_name"]
    lines.append(f"    config.optimizer.param_groups[0].optimizer_name = {_python(opt)}")
    if cfg["optimizer"]["implementation"] == BF16_MOMENTS:  # the registry functions run the fused kernel
        lines.append(f"    config.optimizer.implementation = {_python(BF16_MOMENTS)}")
    lines.append("    return config")
    return "\n".join([*sorted(set(imports)), "", "", *lines]) + "\n"


def _python(value: Any) -> str:
    """A Python literal (True/False/None, strings quoted, nested lists)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_python(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


_ASSIGN = re.compile(r"^\s+config\.([\w.\[\]]+) = (.+?)(?:\s+#.*)?$")


def config_settings(text: str) -> dict[str, str]:
    """Key → value text of the assignments in a `config_function` text (planner's own output: no code runs)."""
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := _ASSIGN.match(line))}
