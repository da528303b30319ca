"""The public API: every exported name resolves to the object it promises, and the README example runs."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import planner


@pytest.mark.parametrize("name", planner.__all__)
def test_exports_resolve(name: str) -> None:
    obj = getattr(planner, name)
    assert not inspect.ismodule(obj), f"planner.{name} is shadowed by a submodule"


def test_readme_example() -> None:
    ev = planner.evaluate(
        planner.get_model("llama-3-70b"), planner.Layout(tp=8, pp=4, dp=8, global_batch=1024),
        planner.get_gpu("h100"), seq=8192, tokens=15e12,
    )
    assert ev.fits and ev.memory.total < ev.capacity_bytes
    assert 0 < ev.time.mfu < 1 and ev.time.days > 0


def test_unknown_name() -> None:
    with pytest.raises(AttributeError):
        _ = planner.not_a_thing


def test_readme_scenario_format_block_validates() -> None:
    from pathlib import Path

    import yaml

    from planner.scenario import Scenario

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("## Scenario format")[1].split("```yaml")[1].split("```")[0]
    assert Scenario.model_validate(yaml.safe_load(block)).constraints.deadline_days == 30


@pytest.mark.parametrize(("workflow", "request_type", "result_type"), [
    ("estimate", "EstimateRequest", "Evaluation"),
    ("estimate_inference", "InferenceRequest", "InferenceEstimate"),
    ("solve", "Scenario", "SolveResult"),
    ("review", "ReviewRequest", "Review"),
    ("run_comparison", "CompareRequest", "CompareResult"),
])
def test_every_workflow_exports_its_request_and_result(workflow: str, request_type: str, result_type: str) -> None:
    fn = getattr(planner, workflow)
    hints = inspect.signature(fn)
    first = next(iter(hints.parameters.values()))
    assert request_type in str(first.annotation) and result_type in str(hints.return_annotation)
    assert inspect.isclass(getattr(planner, request_type)) and inspect.isclass(getattr(planner, result_type))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: planner.solve(None), "solve(scenario): expected Scenario, got NoneType"),
    (lambda: planner.compare("scenarios/gpt3_30days.yaml"), "compare(scenario): expected Scenario, got str"),
    (lambda: planner.CompareRequest(None), "CompareRequest.scenario: expected Scenario, got NoneType"),
    (lambda: planner.estimate({"model": "gpt3-175b"}), "estimate(request): expected EstimateRequest, got dict"),
    (lambda: planner.review(None), "review(request): expected ReviewRequest, got NoneType"),
    (lambda: planner.review(planner.ReviewRequest(deepspeed=5)),
     "ReviewRequest.deepspeed: expected str or Path or Mapping, got int"),
    (lambda: planner.schedule("scenarios/portfolio_2027.yaml"), "schedule(portfolio): expected Portfolio, got str"),
    (lambda: planner.serve(None), "scenario: expected ServingScenario or str or Path, got NoneType"),
    (lambda: planner.compare_serving(3), "scenario: expected ServingScenario or str or Path, got int"),
    (lambda: planner.evaluate_deployment(None, "h100"), "model: expected str or ModelSpec, got NoneType"),
    (lambda: planner.evaluate_deployment("llama-3.1-8b", 100), "gpu: expected str or GpuSku, got int"),
    (lambda: planner.estimate_inference(None), "estimate_inference(request): expected InferenceRequest, got NoneType"),
    (lambda: planner.get_gpu(None), "get_gpu(name): expected str, got NoneType"),
    (lambda: planner.get_model(True), "get_model(name): expected str, got bool"),
    (lambda: planner.load_scenario(None), "load_scenario(path): expected str or PathLike, got NoneType"),
    (lambda: planner.load_portfolio(5), "load_portfolio(path): expected str or PathLike, got int"),
    (lambda: planner.load_serving_scenario(b"x.yaml"),
     "load_serving_scenario(path): expected str or PathLike, got bytes"),
])
def test_an_argument_of_the_wrong_python_type_is_bad_input(call: Any, message: str) -> None:
    """The API answers a wrong type as the CLI answers a wrong value: InputError naming the argument, not an
    AttributeError from deep inside."""
    with pytest.raises(planner.InputError) as e:
        call()
    assert str(e.value) == message
