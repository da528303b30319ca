"""planner: capacity planning for large-model training.

The public API; the CLI only wraps it. Each workflow takes a request (a Scenario, or a request type
built from flags and a scenario) and returns a result type that `render` and `to_dict` show:

    estimate(EstimateRequest) -> Evaluation          estimate_inference(InferenceRequest) -> InferenceEstimate
    solve(Scenario, ...) -> SolveResult              review(ReviewRequest, ...) -> Review
    compare(Scenario, ...) -> pandas.DataFrame       run_comparison(CompareRequest) -> CompareResult
    serve(ServingScenario) -> ServingSolution        compare_serving(ServingScenario) -> ServingCompareResult
    schedule(Portfolio, ...) -> ScheduleResult

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
    "with_basis": "planner.scenario",
    "get_gpu": "planner.catalog",
    "get_model": "planner.catalog",
    "load_gpus": "planner.catalog",
    "load_models": "planner.catalog",
    "model_from_hf_config": "planner.interop.hf_config",
    # the names some scenario keys accept (flag choices too)
    "Fp8Recipe": "planner.names",
    "CpExchange": "planner.names",
    "Framework": "planner.names",
    "MasterWeights": "planner.names",
    "MomentDtype": "planner.names",
    # the physical ranges every number a user types is checked against
    "MAX_BUDGET_USD": "planner.limits",
    "MAX_DAYS": "planner.limits",
    "MAX_EXPERTS": "planner.limits",
    "MAX_FILE_BYTES": "planner.limits",
    "MAX_GLOBAL_BATCH": "planner.limits",
    "MAX_GPUS": "planner.limits",
    "MAX_LAYERS": "planner.limits",
    "MAX_MARGIN": "planner.limits",
    "MAX_QPS": "planner.limits",
    "MAX_CONCURRENCY": "planner.limits",
    "MAX_SIMULATED_REQUESTS": "planner.limits",
    "MAX_SEED": "planner.limits",
    "MIN_QPS": "planner.limits",
    "MAX_SEQ": "planner.limits",
    "MAX_SWEEP_POINTS": "planner.limits",
    "MAX_TIME_LIMIT_S": "planner.limits",
    "MAX_TOKENS": "planner.limits",
    "MAX_TOP_K": "planner.limits",
    "MAX_WORKERS": "planner.limits",
    "FRAMEWORKS": "planner.interop",
    "not_in_deepspeed_config": "planner.interop.deepspeed",
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
    "compare_serving": "planner.workflows.compare_serving",
    "is_serving_file": "planner.workflows.compare_serving",
    "ServingComparison": "planner.workflows.compare_serving",
    "ServingCompareResult": "planner.workflows.compare_serving",
    "schedule": "planner.workflows.schedule",
    "ScheduleResult": "planner.workflows.schedule",
    "Portfolio": "planner.portfolio",
    "load_portfolio": "planner.portfolio",
    "portfolio_json_schema": "planner.portfolio",
    "serve": "planner.workflows.serve",
    "evaluate_deployment": "planner.workflows.serve",
    "evaluate_disaggregated": "planner.workflows.serve",
    "DisaggregatedResult": "planner.workflows.serve",
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
    "MAX_BUDGET_USD",
    "MAX_CONCURRENCY",
    "MAX_DAYS",
    "MAX_EXPERTS",
    "MAX_FILE_BYTES",
    "MAX_GLOBAL_BATCH",
    "MAX_GPUS",
    "MAX_LAYERS",
    "MAX_MARGIN",
    "MAX_QPS",
    "MAX_SEED",
    "MAX_SEQ",
    "MAX_SIMULATED_REQUESTS",
    "MAX_SWEEP_POINTS",
    "MAX_TIME_LIMIT_S",
    "MAX_TOKENS",
    "MAX_TOP_K",
    "MAX_WORKERS",
    "MIN_QPS",
    "NEAR_OPTIMAL_MARGIN",
    "Better",
    "CompareRequest",
    "CompareResult",
    "Comparison",
    "CpExchange",
    "DeploymentResult",
    "DisaggregatedResult",
    "EstimateRequest",
    "Evaluation",
    "Finding",
    "Fp8Recipe",
    "Framework",
    "FrameworkName",
    "GpuSku",
    "Implementation",
    "InfeasibleError",
    "InferenceEstimate",
    "InferenceRequest",
    "InputError",
    "Layout",
    "MasterWeights",
    "ModelSpec",
    "MomentDtype",
    "Overheads",
    "Plan",
    "Portfolio",
    "Review",
    "ReviewRequest",
    "Scenario",
    "ScheduleResult",
    "ServingCompareResult",
    "ServingComparison",
    "ServingScenario",
    "ServingSolution",
    "Solution",
    "SolveResult",
    "TrainingWorkload",
    "Workload",
    "compare",
    "compare_serving",
    "count_params",
    "estimate",
    "estimate_inference",
    "evaluate",
    "evaluate_deployment",
    "evaluate_disaggregated",
    "get_gpu",
    "get_model",
    "inference_memory",
    "is_serving_file",
    "load_gpus",
    "load_models",
    "load_portfolio",
    "load_scenario",
    "load_serving_scenario",
    "model_from_hf_config",
    "not_in_deepspeed_config",
    "portfolio_json_schema",
    "render",
    "review",
    "run_comparison",
    "scenario_json_schema",
    "schedule",
    "serve",
    "serving_json_schema",
    "solve",
    "step_flops",
    "to_dict",
    "training_memory",
    "training_time",
    "with_basis",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'planner' has no attribute {name!r}")


if TYPE_CHECKING:  # for type checkers and editors
    from planner.catalog import get_gpu, get_model, load_gpus, load_models
    from planner.errors import InfeasibleError, InputError
    from planner.interop import FRAMEWORKS, FrameworkName
    from planner.interop.deepspeed import not_in_deepspeed_config
    from planner.interop.hf_config import model_from_hf_config
    from planner.limits import (
        MAX_BUDGET_USD,
        MAX_CONCURRENCY,
        MAX_DAYS,
        MAX_EXPERTS,
        MAX_FILE_BYTES,
        MAX_GLOBAL_BATCH,
        MAX_GPUS,
        MAX_LAYERS,
        MAX_MARGIN,
        MAX_QPS,
        MAX_SEED,
        MAX_SEQ,
        MAX_SIMULATED_REQUESTS,
        MAX_SWEEP_POINTS,
        MAX_TIME_LIMIT_S,
        MAX_TOKENS,
        MAX_TOP_K,
        MAX_WORKERS,
        MIN_QPS,
    )
    from planner.model.flops import step_flops
    from planner.model.memory import inference_memory, training_memory
    from planner.model.params import count_params
    from planner.model.perf import training_time
    from planner.names import CpExchange, Fp8Recipe, Framework, MasterWeights, MomentDtype
    from planner.portfolio import Portfolio, load_portfolio, portfolio_json_schema
    from planner.report.output import render, to_dict
    from planner.scenario import Scenario, load_scenario, scenario_json_schema, with_basis
    from planner.schema import GpuSku, Implementation, Layout, ModelSpec, Overheads
    from planner.search import NEAR_OPTIMAL_MARGIN
    from planner.search.plans import Plan, Solution
    from planner.workflows.compare import CompareRequest, CompareResult, Comparison, compare, run_comparison
    from planner.workflows.compare_serving import (
        ServingCompareResult,
        ServingComparison,
        compare_serving,
        is_serving_file,
    )
    from planner.workflows.estimate import EstimateRequest, estimate
    from planner.workflows.inference import InferenceEstimate, InferenceRequest, estimate_inference
    from planner.workflows.review import Better, Finding, Review, ReviewRequest, review
    from planner.workflows.schedule import ScheduleResult, schedule
    from planner.workflows.serve import (
        DeploymentResult,
        DisaggregatedResult,
        ServingScenario,
        ServingSolution,
        evaluate_deployment,
        evaluate_disaggregated,
        load_serving_scenario,
        serve,
    )
    from planner.workflows.solve import SolveResult, solve
    from planner.workloads import Workload
    from planner.workloads.serving.scenario import serving_json_schema
    from planner.workloads.training.workload import TrainingWorkload
