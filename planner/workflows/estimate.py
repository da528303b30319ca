"""`estimate(request)`: one model, one GPU, one layout → the exact footprint, FLOPs, time and cost.

`EstimateRequest` gathers what the CLI flags and a scenario's keys say (flags win); `resolve` turns it
into `Inputs`, `estimate` into an Evaluation (planner.report.dicts.estimate_dict is its JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planner.errors import InputError
from planner.scenario import Scenario
from planner.schema import Implementation, ModelSpec
from planner.workflows import inputs
from planner.workflows.inputs import Inputs, pick
from planner.workloads.training.evaluation import Evaluation

__all__ = ["EstimateRequest", "estimate", "resolve"]


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
    scenario: Scenario | None = None


def resolve(req: EstimateRequest) -> Inputs:
    """Merge flags over scenario keys over defaults, derive dp, and validate the layout."""
    if req.mfu is not None and req.hfu is not None:
        raise InputError("--mfu and --hfu: give one, not both")
    sc = req.scenario
    model = inputs.given_model(req.model, sc)
    if model is None:
        raise InputError("--model: give a catalog model, --model-config FILE, or a scenario")
    hw = inputs.hardware(sc, model, gpu=req.gpu, gpus_per_node=req.gpus_per_node, tokens=req.tokens)
    seq = pick(req.seq, sc.job.seq_len if sc else None, model.max_seq)
    layout = inputs.layout(sc, model, overrides=req.layout, gpus=inputs.given_gpus(req.gpus, sc),
                           global_batch=req.global_batch, precision=req.precision, node=hw["gpus_per_node"],
                           seq=seq, strict=True)
    impl = sc.implementation if sc else Implementation()
    if req.dropout is not None:
        impl = impl.model_copy(update={"dropout": req.dropout})
    if req.mfu is not None or req.hfu is not None:
        hw["efficiency"] = hw["efficiency"].model_copy(update={"mfu": req.mfu, "hfu": req.hfu})
    return Inputs(model=model, layout=layout, seq=seq, implementation=impl, **hw)


def estimate(request: EstimateRequest) -> Evaluation:
    """The exact per-GPU memory, FLOPs, step time and cost of one configuration. InputError for input that
    names nothing planner knows or a layout that breaks a rule."""
    return resolve(request).evaluate()
