"""`estimate(request)`: one model, one GPU, one layout → the exact footprint, FLOPs, time and cost.

`EstimateRequest` gathers what the CLI flags and a scenario's keys say (flags win); `resolve` turns it
into `Inputs`, `estimate` into an Evaluation (planner.report.dicts.estimate_dict is its JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from planner.errors import InputError, expect
from planner.model.reliability import resolve as resolve_reliability
from planner.scenario import Scenario
from planner.schema import Implementation, ModelSpec, Reliability
from planner.workflows import inputs
from planner.workflows.inputs import Inputs, pick
from planner.workloads.expected import Basis
from planner.workloads.training.evaluation import Evaluation
from planner.workloads.training.legality import offload_problem

__all__ = ["EstimateRequest", "basis", "estimate", "resolve"]


@dataclass
class EstimateRequest:
    """Every input of an estimate; None means 'not given' (a scenario or a default fills it)."""

    model: str | ModelSpec | None = None
    gpu: str | None = None
    gpus: int | None = None
    gpus_per_node: int | None = None
    seq: int | None = None
    global_batch: int | None = None
    tokens: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    dropout: float | None = None
    precision: str | None = None
    layout: dict[str, Any] = field(default_factory=dict)  # tp, pp, vpp, dp, cp, ep, zero, recompute, ...
    implementation: dict[str, Any] = field(default_factory=dict)  # framework, fp8_recipe, ... over the scenario's
    state: dict[str, Any] = field(default_factory=dict)  # master_weights, moment_dtype over the scenario's job
    scenario: Scenario | None = None
    # failures, checkpoints and restarts (docs/goodput.md): "none" for the ideal time; None: the scenario's
    # `reliability`, else the defaults
    reliability: Reliability | Literal["none"] | None = None


def basis(req: EstimateRequest) -> Basis:
    """What the estimate's expected time counts: the request's reliability over the scenario's over the
    defaults, at the point estimate (an estimate holds nothing to a deadline)."""
    chosen = inputs.reliability_choice(req.reliability)
    given = chosen if chosen is not None else (
        req.scenario.reliability if req.scenario is not None else Reliability())
    return Basis(resolve_reliability(given))


def resolve(req: EstimateRequest) -> Inputs:
    """Merge flags over scenario keys over defaults, derive dp, and validate the layout."""
    if req.mfu is not None and req.hfu is not None:
        raise InputError("--mfu and --hfu: give one, not both")
    sc = req.scenario
    model = inputs.given_model(req.model, sc)
    if model is None:
        raise InputError("--model: give a catalog model, --model-config FILE, or a scenario")
    hw = inputs.hardware(sc, model, gpu=req.gpu, gpus_per_node=req.gpus_per_node, tokens=req.tokens)
    seq = inputs.checked("--seq", pick(req.seq, sc.job.seq_len if sc else None, model.training_seq))
    impl = sc.implementation if sc else Implementation()
    given = {k: v for k, v in req.implementation.items() if v is not None}
    if req.dropout is not None:
        given["dropout"] = req.dropout
    if given:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        impl = inputs.validated(Implementation, {**impl.model_dump(exclude_unset=True), **given},
                                f"implementation ({flags})")
        offload = given.get("activation_offload_layers")
        if offload is not None and (why := offload_problem(model, offload)) is not None:
            key = "implementation.activation_offload_layers"
            raise InputError("--activation-offload-layers" + why.removeprefix(key))
    layout = inputs.layout(sc, model, overrides=req.layout, gpus=inputs.given_gpus(req.gpus, sc),
                           global_batch=req.global_batch, precision=req.precision, node=hw["gpus_per_node"],
                           seq=seq, strict=True, implementation=impl, state=req.state,
                           seq_key="--seq" if req.seq is not None else "job.seq_len",
                           gpus_key=inputs.gpus_origin(req.gpus, sc))
    if req.mfu is not None or req.hfu is not None:  # in the range a scenario's efficiency.mfu / hfu takes
        eff = hw["efficiency"]
        hw["efficiency"] = inputs.validated(type(eff), {**eff.model_dump(exclude_unset=True), "mfu": req.mfu,
                                                        "hfu": req.hfu}, "--mfu" if req.mfu is not None else "--hfu")
    return Inputs(model=model, layout=layout, seq=seq, implementation=impl, **hw)


def estimate(request: EstimateRequest) -> Evaluation:
    """The exact per-GPU memory, FLOPs, step time and cost of one configuration. InputError for input that
    names nothing planner knows or a layout that breaks a rule. Its time is ideal and expected with failures
    (`Evaluation.expected`), with the model's error band and any extrapolation warning."""
    expect(request, EstimateRequest, "estimate(request)")
    return replace(resolve(request).evaluate(), basis=basis(request))
