"""The public API: every exported name resolves to the object it promises, and the README example runs."""

from __future__ import annotations

import inspect

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
