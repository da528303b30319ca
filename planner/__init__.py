"""planner: capacity planning for large-model training.

The public API; the CLI only wraps it. Each workflow takes a request (a Scenario, or a request type
built from flags and a scenario) and returns a result type that `render` and `to_dict` show:

    estimate(EstimateRequest) -> Evaluation          estimate_inference(InferenceRequest) -> InferenceEstimate
    solve(Scenario, ...) -> SolveResult              review(ReviewRequest, ...) -> Review
    compare(Scenario, ...) -> pandas.DataFrame       run_comparison(CompareRequest) -> CompareResult

Names are imported on first use so that `planner --help` does not pay for pydantic, numpy or OR-Tools.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    # inputs
    "ModelSpec": "planner.schema",
    "GpuSku": "planner.schema",
    "Layout": "planner.schema",
    "Implementation": "planner.schema",
    "Overheads": "planner.schema",
    "Scenario": "planner.scenario",
    "load_scenario": "planner.scenario",
    "scenario_json_schema": "planner.scenario",
    "get_gpu": "planner.catalog",
    "get_model": "planner.catalog",
    "load_gpus": "planner.catalog",
    "load_models": "planner.catalog",
    "model_from_hf_config": "planner.interop.hf_config",
    "FRAMEWORKS": "planner.interop",
    "FrameworkName": "planner.interop",
    "InputError": "planner.errors",
    "InfeasibleError": "planner.errors",
    # the physics
    "count_params": "planner.model.params",
    "step_flops": "planner.model.flops",
    "training_memory": "planner.model.memory",
    "inference_memory": "planner.model.memory",
    "training_time": "planner.model.perf",
    # workloads
    "Workload": "planner.workloads",
    "TrainingWorkload": "planner.workloads.training.workload",
    "evaluate": "planner.workloads.training.evaluation",
    "Evaluation": "planner.workloads.training.evaluation",
    # workflows
    "EstimateRequest": "planner.workflows.estimate",
    "estimate": "planner.workflows.estimate",
    "InferenceRequest": "planner.workflows.inference",
    "InferenceEstimate": "planner.workflows.inference",
    "estimate_inference": "planner.workflows.inference",
    "solve": "planner.workflows.solve",
    "SolveResult": "planner.workflows.solve",
    "Plan": "planner.search.plans",
    "Solution": "planner.search.plans",
    "NEAR_OPTIMAL_MARGIN": "planner.search",
    "review": "planner.workflows.review",
    "ReviewRequest": "planner.workflows.review",
    "Review": "planner.workflows.review",
    "Finding": "planner.workflows.review",
    "Better": "planner.workflows.review",
    "compare": "planner.workflows.compare",
    "Comparison": "planner.workflows.compare",
    "CompareRequest": "planner.workflows.compare",
    "CompareResult": "planner.workflows.compare",
    "run_comparison": "planner.workflows.compare",
    "serve": "planner.workflows.serve",
    "evaluate_deployment": "planner.workflows.serve",
    "load_serving_scenario": "planner.workflows.serve",
    "ServingScenario": "planner.workflows.serve",
    "ServingSolution": "planner.workflows.serve",
    "DeploymentResult": "planner.workflows.serve",
    "serving_json_schema": "planner.workloads.serving.scenario",
    # output
    "render": "planner.report.output",
    "to_dict": "planner.report.output",
}

__all__ = [
    "FRAMEWORKS",
    "NEAR_OPTIMAL_MARGIN",
    "Better",
    "CompareRequest",
    "CompareResult",
    "Comparison",
    "DeploymentResult",
    "EstimateRequest",
    "Evaluation",
    "Finding",
    "FrameworkName",
    "GpuSku",
    "Implementation",
    "InfeasibleError",
    "InferenceEstimate",
    "InferenceRequest",
    "InputError",
    "Layout",
    "ModelSpec",
    "Overheads",
    "Plan",
    "Review",
    "ReviewRequest",
    "Scenario",
    "ServingScenario",
    "ServingSolution",
    "Solution",
    "SolveResult",
    "TrainingWorkload",
    "Workload",
    "compare",
    "count_params",
    "estimate",
    "estimate_inference",
    "evaluate",
    "evaluate_deployment",
    "get_gpu",
    "get_model",
    "inference_memory",
    "load_gpus",
    "load_models",
    "load_scenario",
    "load_serving_scenario",
    "model_from_hf_config",
    "render",
    "review",
    "run_comparison",
    "scenario_json_schema",
    "serve",
    "serving_json_schema",
    "solve",
    "step_flops",
    "to_dict",
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
    from planner.interop import FRAMEWORKS, FrameworkName
    from planner.interop.hf_config import model_from_hf_config
    from planner.model.flops import step_flops
    from planner.model.memory import inference_memory, training_memory
    from planner.model.params import count_params
    from planner.model.perf import training_time
    from planner.report.output import render, to_dict
    from planner.scenario import Scenario, load_scenario, scenario_json_schema
    from planner.schema import GpuSku, Implementation, Layout, ModelSpec, Overheads
    from planner.search import NEAR_OPTIMAL_MARGIN
    from planner.search.plans import Plan, Solution
    from planner.workflows.compare import CompareRequest, CompareResult, Comparison, compare, run_comparison
    from planner.workflows.estimate import EstimateRequest, estimate
    from planner.workflows.inference import InferenceEstimate, InferenceRequest, estimate_inference
    from planner.workflows.review import Better, Finding, Review, ReviewRequest, review
    from planner.workflows.serve import (
        DeploymentResult,
        ServingScenario,
        ServingSolution,
        evaluate_deployment,
        load_serving_scenario,
        serve,
    )
    from planner.workflows.solve import SolveResult, solve
    from planner.workloads import Workload
    from planner.workloads.serving.scenario import serving_json_schema
    from planner.workloads.training.workload import TrainingWorkload
