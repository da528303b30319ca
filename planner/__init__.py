"""planner: capacity planning for large-model training.

The public API; the CLI only wraps it. Names are imported on first use so that `planner --help`
does not pay for pydantic, numpy or OR-Tools.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ModelSpec": "planner.schema",
    "GpuSku": "planner.schema",
    "Layout": "planner.schema",
    "Implementation": "planner.schema",
    "Overheads": "planner.schema",
    "Scenario": "planner.scenario",
    "load_scenario": "planner.scenario",
    "get_gpu": "planner.catalog",
    "get_model": "planner.catalog",
    "load_gpus": "planner.catalog",
    "load_models": "planner.catalog",
    "model_from_hf_config": "planner.interop.hf_config",
    "count_params": "planner.model.params",
    "step_flops": "planner.model.flops",
    "training_memory": "planner.model.memory",
    "inference_memory": "planner.model.memory",
    "training_time": "planner.model.perf",
    "evaluate": "planner.workloads.training.evaluation",
    "Evaluation": "planner.workloads.training.evaluation",
    "solve": "planner.search",
    "compare": "planner.workflows.compare",
    "review": "planner.workflows.review",
    "InputError": "planner.errors",
    "InfeasibleError": "planner.errors",
}

__all__ = [
    "Evaluation",
    "GpuSku",
    "Implementation",
    "InfeasibleError",
    "InputError",
    "Layout",
    "ModelSpec",
    "Overheads",
    "Scenario",
    "compare",
    "count_params",
    "evaluate",
    "get_gpu",
    "get_model",
    "inference_memory",
    "load_gpus",
    "load_models",
    "load_scenario",
    "model_from_hf_config",
    "review",
    "solve",
    "step_flops",
    "training_memory",
    "training_time",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'planner' has no attribute {name!r}")


if TYPE_CHECKING:  # for type checkers and editors
    from planner.catalog import get_gpu, get_model, load_gpus, load_models
    from planner.errors import InfeasibleError, InputError
    from planner.interop.hf_config import model_from_hf_config
    from planner.model.flops import step_flops
    from planner.model.memory import inference_memory, training_memory
    from planner.model.params import count_params
    from planner.model.perf import training_time
    from planner.scenario import Scenario, load_scenario
    from planner.schema import GpuSku, Implementation, Layout, ModelSpec, Overheads
    from planner.search import solve
    from planner.workflows.compare import compare
    from planner.workflows.review import review
    from planner.workloads.training.evaluation import Evaluation, evaluate
