"""Scenario files: what a user asks planner. Read with a safe YAML loader, validated by pydantic, and
every error names the file and the key.

A scenario says which model to train on how many tokens, which GPUs may be used and at what price,
the limits (deadline, budget, inventory), the objective, and optionally parts of the layout to fix.
`planner estimate SCENARIO.yaml` evaluates the fixed layout of its `estimate:` block; `planner solve`
searches everything left free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, PositiveInt, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from planner.errors import InputError, format_validation_error
from planner.schema import (
    Efficiency,
    Implementation,
    ModelSpec,
    Optimizer,
    Overheads,
    Precision,
    PriceKind,
    Recompute,
    Strict,
)


def _number(v: Any) -> Any:
    """Accept 300e9 and 300_000_000_000 written as YAML strings (PyYAML reads '300e9' as a str)."""
    if isinstance(v, str):
        try:
            return float(v.replace("_", ""))
        except ValueError:
            return v
    return v


def _bounds(info: FieldInfo) -> dict[str, Any]:
    """The numeric bounds (gt, ge, le) of a field, to carry them over to its optional override."""
    out: dict[str, Any] = {}
    for m in info.metadata:
        for key in ("gt", "ge", "lt", "le"):
            if getattr(m, key, None) is not None:
                out[key] = getattr(m, key)
    return out


BigNumber = Annotated[float, BeforeValidator(_number), Field(gt=0)]


class Job(Strict):
    """The training job: how much data, at what sequence length and batch."""

    tokens: BigNumber = Field(description="tokens to train on")
    seq_len: PositiveInt = Field(description="sequence length of a training sample")
    global_batch: PositiveInt = Field(description="sequences per optimizer step")
    precision: Precision = "bf16"
    optimizer: Optimizer = "adamw"
    fp32_grad_accumulation: bool = True


class Hardware(Strict):
    """Which GPUs may be used, and how many of each (inventory)."""

    skus: list[str] | Literal["all"] = Field("all", description="candidate GPU catalog names")
    max_gpus: dict[str, PositiveInt] | PositiveInt | None = Field(
        None, description="inventory: one cap for every SKU, or a cap per SKU"
    )
    gpus_per_node: PositiveInt | None = Field(None, description="default: the SKU's scale-up domain size")


class Pricing(Strict):
    kind: PriceKind = "on-demand"
    provider: str | None = Field(None, description="default: the first price of that kind in the catalog")
    usd_per_gpu_hour: dict[str, float] | None = Field(None, description="overrides per SKU")
    amortisation_years: float = Field(4.0, gt=0, description="purchase: capex spread over this life")
    usd_per_kwh: float = Field(0.10, ge=0, description="purchase: electricity price")
    pue: float = Field(1.3, ge=1, description="purchase: data-centre power usage effectiveness")


class Constraints(Strict):
    deadline_days: float | None = Field(None, gt=0)
    budget_usd: float | None = Field(None, gt=0)
    max_gpus: PositiveInt | None = None
    min_gpus: PositiveInt | None = None


class FixedLayout(Strict):
    """Parts of the layout to hold fixed (what-if questions); anything left out is searched."""

    sku: str | None = None
    gpus: PositiveInt | None = None
    tp: PositiveInt | None = None
    pp: PositiveInt | None = None
    vpp: PositiveInt | None = None
    dp: PositiveInt | None = None
    cp: PositiveInt | None = None
    ep: PositiveInt | None = None
    zero: Literal[0, 1, 2, 3] | None = None
    recompute: Recompute | None = None
    sequence_parallel: bool | None = None
    micro_batch: PositiveInt | None = None
    offload_optimizer: bool | None = None
    recompute_num_layers: PositiveInt | None = None
    dp_shard: PositiveInt | None = None
    account_for_embedding_in_pipeline_split: bool | None = None
    account_for_loss_in_pipeline_split: bool | None = None
    recompute_method: Literal["uniform", "block"] | None = None
    pipeline_first_stage_layers: PositiveInt | None = None
    pipeline_last_stage_layers: PositiveInt | None = None


class _FixedUtilisation(Strict):
    """A fixed utilisation that bypasses the detailed time model (the blog-post back-of-envelope)."""

    mfu: float | None = Field(None, gt=0, le=1, description="fixed model-FLOPs utilisation")
    hfu: float | None = Field(None, gt=0, le=1, description="fixed hardware-FLOPs utilisation")

    @model_validator(mode="after")
    def _one_mode(self) -> _FixedUtilisation:
        if self.mfu is not None and self.hfu is not None:
            raise ValueError("give mfu or hfu, not both")
        return self


# Every Efficiency field can be overridden per scenario: the same names, all optional, one source of truth.
EfficiencyOverride = create_model(
    "EfficiencyOverride",
    __base__=_FixedUtilisation,
    __doc__="Overrides of the catalog's per-SKU efficiency defaults (`gemm: 0.6`), or `mfu`/`hfu` fixed.",
    **{
        name: (info.annotation | None, Field(None, description=info.description, **_bounds(info)))
        for name, info in Efficiency.model_fields.items()
        if name != "source"
    },
)


class EstimateTarget(Strict):
    """The one configuration `planner estimate SCENARIO.yaml` evaluates."""

    gpu: str
    gpus: PositiveInt
    gpus_per_node: PositiveInt | None = None


class ConcurrentJob(Strict):
    """Another job that runs at the same time as the main one, on the same inventory and budget
    (`jobs:`). The solver chooses every job's SKU, GPU count and layout together."""

    name: str = Field(description="unique among the scenario's jobs (the main job is named by `name:`)")
    model: str | ModelSpec = Field(description="catalog name, inline ModelSpec, or path to a HF config.json")
    job: Job
    deadline_days: float | None = Field(None, gt=0, description="this job's own deadline")
    min_gpus: PositiveInt | None = None
    max_gpus: PositiveInt | None = None
    layout: FixedLayout = FixedLayout()


class Scenario(Strict):
    name: str = "scenario"
    description: str | None = None
    model: str | ModelSpec = Field(description="catalog name, inline ModelSpec, or path to a HF config.json")
    job: Job
    hardware: Hardware = Hardware()
    pricing: Pricing = Pricing()
    constraints: Constraints = Constraints()
    layout: FixedLayout = FixedLayout()
    objective: Literal["cost", "time", "cost-then-time"] = "cost"
    top_k: PositiveInt = 5
    efficiency: EfficiencyOverride = EfficiencyOverride()
    implementation: Implementation = Implementation()
    overheads: Overheads = Overheads()
    estimate: EstimateTarget | None = None
    jobs: list[ConcurrentJob] = Field(
        default_factory=list,
        description="further jobs sharing hardware inventory, budget and constraints.max_gpus with the main job "
        "(model/job above, whose deadline is constraints.deadline_days)",
    )


def read_yaml(path: Path) -> Any:
    """Safe-load a YAML file; a missing file or a syntax error becomes an InputError naming it."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: a scenario is a mapping of keys (model, job, ...), got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(e, str(path))) from None
    if isinstance(scenario.model, str) and scenario.model.endswith(".json"):
        # a config.json path is relative to the scenario file
        model_path = Path(scenario.model)
        if not model_path.is_absolute():
            scenario = scenario.model_copy(update={"model": str(path.parent / model_path)})
    return scenario


def resolve_model(model: str | ModelSpec) -> ModelSpec:
    """A catalog name, an inline spec, or a path to a Hugging Face config.json → ModelSpec."""
    if isinstance(model, ModelSpec):
        return model
    if model.endswith(".json") or Path(model).is_file():
        from planner.interop.hf_config import model_from_hf_config

        return model_from_hf_config(model)
    from planner.catalog import get_model

    return get_model(model)


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of the scenario format, for editors (`planner schema`)."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "planner scenario"
    return schema

