"""Scenario files: what a user asks planner. Read with a safe YAML loader, validated by pydantic, and
every error names the file and the key.

A scenario says which model to train on how many tokens, which GPUs may be used and at what price,
the limits (deadline, budget, inventory), the objective, and optionally parts of the layout to fix.
`planner estimate SCENARIO.yaml` evaluates the fixed layout of its `estimate:` block; `planner solve`
searches everything left free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import BeforeValidator, Field, ValidationError, create_model, model_validator
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from planner import safe_yaml
from planner.errors import InputError, expect, format_validation_error
from planner.layout_rules import (
    RECOMPUTE_COUNT_KEYS,
    dp_shard_problem,
    expert_tp_problem,
    gpu_count_problem,
    recompute_count_problem,
    sequence_parallel_problem,
    virtual_stage_problem,
)
from planner.limits import (
    MAX_BUDGET_USD,
    MAX_DAYS,
    MAX_EXPERTS,
    MAX_LAYERS,
    MAX_TOKENS,
    MAX_TOP_K,
    MAX_USD_PER_GPU_HOUR,
    MIN_EFFICIENCY,
)
from planner.schema import (
    MASTER_WEIGHTS_HELP,
    MOMENT_DTYPE_HELP,
    OVERLAP_SUFFIX,
    BatchSize,
    Efficiency,
    GpuCount,
    GpuDefinition,
    GpuSku,
    Implementation,
    MasterWeights,
    ModelSpec,
    MomentDtype,
    Optimizer,
    Overheads,
    Precision,
    PriceKind,
    Recompute,
    Reliability,
    SeqLen,
    Strict,
    check_optimizer_state,
    master_weights_problem,
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


# Token counts may be written 300e9 or 300_000_000_000; finite and at most MAX_TOKENS.
BigNumber = Annotated[float, BeforeValidator(_number), Field(gt=0, le=MAX_TOKENS)]


class Job(Strict):
    """The training job: how much data, at what sequence length and batch."""

    tokens: BigNumber = Field(description="tokens to train on")
    seq_len: SeqLen = Field(description="sequence length of a training sample")
    global_batch: BatchSize = Field(description="sequences per optimizer step")
    precision: Precision = "bf16"
    optimizer: Optimizer = "adamw"
    fp32_grad_accumulation: bool = Field(
        True, description="fp32 gradient buffer and reduction (Megatron --grad-reduce-in-fp32; NeMo 2 turns it off)"
    )
    master_weights: MasterWeights = Field("fp32", description=MASTER_WEIGHTS_HELP)
    moment_dtype: MomentDtype = Field("fp32", description=MOMENT_DTYPE_HELP)

    @model_validator(mode="after")
    def _at_least_one_step(self) -> Job:
        check_optimizer_state(self.optimizer, self.moment_dtype, self.master_weights, self.precision)
        step = self.seq_len * self.global_batch
        if self.tokens < step:
            raise ValueError(
                f"tokens ({self.tokens:g}) is less than one optimizer step (seq_len × global_batch = {step:,})"
            )
        return self


class Hardware(Strict):
    """Which GPUs may be used, and how many of each (inventory)."""

    skus: list[str] | Literal["all"] = Field("all", description="candidate GPU catalog names")
    max_gpus: dict[str, GpuCount] | GpuCount | None = Field(
        None, description="inventory: one cap for every SKU, or a cap per SKU"
    )
    gpus_per_node: GpuCount | None = Field(None, description="default: the SKU's scale-up domain size")


def _per_sku(value: Any) -> Any:
    """A price per SKU is a mapping; a bare number says what it should be (one price for which GPU?)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"a map of GPU to $ per GPU-hour, e.g. {{h100-sxm: {value:g}}}, not one number")
    return value


class Pricing(Strict):
    kind: PriceKind = "on-demand"
    provider: str | None = Field(None, description="default: the first price of that kind in the catalog")
    usd_per_gpu_hour: Annotated[dict[str, Annotated[float, Field(gt=0, le=MAX_USD_PER_GPU_HOUR)]] | None,
                                BeforeValidator(_per_sku)] = Field(
        None, description="overrides per SKU, $ per GPU-hour")
    # GPUs are written off over 3-6 years (procurement_prices.md); 20 is past any server's life.
    amortisation_years: float = Field(4.0, gt=0, le=20, description="purchase: capex spread over this life")
    usd_per_kwh: float = Field(0.10, ge=0, le=10, description="purchase: electricity price")
    # The Uptime Institute's 2023 survey averages 1.58; 3 is past the worst sites it reports.
    pue: float = Field(1.3, ge=1, le=3, description="purchase: data-centre power usage effectiveness")


class Constraints(Strict):
    deadline_days: float | None = Field(None, gt=0, le=MAX_DAYS)
    budget_usd: float | None = Field(None, gt=0, le=MAX_BUDGET_USD)
    max_gpus: GpuCount | None = None
    min_gpus: GpuCount | None = None
    confidence: float | None = Field(
        None, ge=0.5, le=0.99,
        description="plan so the deadline and budget hold at this quantile of the time model's step-time error in "
        "the plan's regime (e.g. 0.9); default: the point estimate")

    @model_validator(mode="after")
    def _ordered(self) -> Constraints:
        if self.min_gpus is not None and self.max_gpus is not None and self.min_gpus > self.max_gpus:
            raise ValueError(f"min_gpus ({self.min_gpus}) exceeds max_gpus ({self.max_gpus})")
        return self


class FixedLayout(Strict):
    """Parts of the layout to hold fixed (what-if questions); anything left out is searched."""

    sku: str | None = None
    gpus: GpuCount | None = None
    tp: GpuCount | None = None
    pp: GpuCount | None = None
    vpp: Annotated[int, Field(ge=1, le=MAX_LAYERS)] | None = None
    dp: GpuCount | None = None
    cp: GpuCount | None = None
    ep: Annotated[int, Field(ge=1, le=MAX_EXPERTS)] | None = None
    zero: Literal[0, 1, 2, 3] | None = None
    recompute: Recompute | None = None
    sequence_parallel: bool | None = None
    micro_batch: BatchSize | None = None
    offload_optimizer: bool | None = None
    recompute_num_layers: Annotated[int, Field(ge=1, le=MAX_LAYERS)] | None = Field(
        None, description="full recompute of this many layers per model chunk; unset, solve tries every layer and "
        "(Megatron-Core, block method) 1, 2, 4, ... layers below a chunk's; a count as large as the model's layers "
        "holds every layer")
    dp_shard: GpuCount | None = None
    expert_tp: GpuCount | None = None
    pipeline_layout: tuple[Annotated[int, Field(ge=0, le=MAX_LAYERS)], ...] | None = Field(None, min_length=1,
                                                                                        max_length=MAX_LAYERS)
    account_for_embedding_in_pipeline_split: bool | None = None
    account_for_loss_in_pipeline_split: bool | None = None
    recompute_method: Literal["uniform", "block"] | None = None
    pipeline_first_stage_layers: Annotated[int, Field(ge=1, le=MAX_LAYERS)] | None = None
    pipeline_last_stage_layers: Annotated[int, Field(ge=1, le=MAX_LAYERS)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FixedLayout:
        """Fixed fields that contradict one another whatever the model and hardware: bad input, not a
        search that finds nothing (the legality checks apply the same rules, planner.layout_rules)."""
        problems = [recompute_count_problem(key, self.recompute) for key in RECOMPUTE_COUNT_KEYS
                    if getattr(self, key) is not None]
        problems += [virtual_stage_problem(self.pp, self.vpp),
                     sequence_parallel_problem(self.tp, self.sequence_parallel),
                     expert_tp_problem(self.tp, self.expert_tp),
                     gpu_count_problem(self.gpus, self.tp, self.pp, self.dp, self.cp),
                     dp_shard_problem(self.dp_shard, self.dp, self.cp)]
        if (why := next((p for p in problems if p is not None), None)) is not None:
            raise ValueError(why)
        return self


class _FixedUtilisation(Strict):
    """A fixed utilisation that bypasses the detailed time model (the blog-post back-of-envelope)."""

    mfu: float | None = Field(None, ge=MIN_EFFICIENCY, le=1, description="fixed model-FLOPs utilisation")
    hfu: float | None = Field(None, ge=MIN_EFFICIENCY, le=1, description="fixed hardware-FLOPs utilisation")

    @model_validator(mode="after")
    def _one_mode(self) -> _FixedUtilisation:
        if self.mfu is not None and self.hfu is not None:
            raise ValueError("give mfu or hfu, not both")
        return self


def _switch_too(schema: JsonDict) -> None:
    """An overlap share's JSON Schema also takes true/false, as the loader reads them (Strict._no_boolean_numbers)."""
    kinds = schema.setdefault("anyOf", [])
    assert isinstance(kinds, list)
    kinds.insert(0, {"type": "boolean"})


# Every Efficiency field can be overridden per scenario: the same names, all optional, one source of truth.
EfficiencyOverride = create_model(  # type: ignore[call-overload]  # fields made at import: opaque to mypy
    "EfficiencyOverride",
    __base__=_FixedUtilisation,
    __doc__="Overrides of the catalog's per-SKU efficiency defaults (`gemm: 0.6`), or `mfu`/`hfu` fixed.",
    **{
        name: (cast(Any, info.annotation) | None, Field(
            None, description=info.description, **_bounds(info),
            json_schema_extra=_switch_too if name.endswith(OVERLAP_SUFFIX) else None))
        for name, info in Efficiency.model_fields.items()
        if name != "source"
    },
)


class EstimateTarget(Strict):
    """The one configuration `planner estimate SCENARIO.yaml` evaluates."""

    gpu: str
    gpus: GpuCount
    gpus_per_node: GpuCount | None = None


class ConcurrentJob(Strict):
    """Another job that runs at the same time as the main one, on the same inventory and budget
    (`jobs:`). The solver chooses every job's SKU, GPU count and layout together."""

    name: str = Field(description="unique among the scenario's jobs (the main job is named by `name:`)")
    model: str | ModelSpec = Field(description="catalog name, inline ModelSpec, or path to a HF config.json")
    job: Job
    deadline_days: float | None = Field(None, gt=0, le=MAX_DAYS, description="this job's own deadline")
    min_gpus: GpuCount | None = None
    max_gpus: GpuCount | None = None
    layout: FixedLayout = FixedLayout()


class OwnGpus:
    """What a file that may define GPUs under `gpus:` (training and serving scenarios, portfolios) offers: those
    GPUs as full SKUs, and a lookup among them and the catalog."""

    if TYPE_CHECKING:
        gpus: list[GpuDefinition]

    def custom_gpus(self) -> tuple[GpuSku, ...]:
        """The file's own `gpus:` as full SKUs (planner.catalog.derive_gpus)."""
        from planner.catalog import derive_gpus

        return derive_gpus(self.gpus)

    def gpu(self, name: str, key: str | None = None) -> GpuSku:
        """The GPU `name` names among the file's own and the catalog's; InputError naming `key` if none."""
        from planner.catalog import get_gpu

        return get_gpu(name, self.custom_gpus(), key)


class Scenario(OwnGpus, Strict):
    name: str = "scenario"
    description: str | None = None
    gpus: list[GpuDefinition] = Field(
        default_factory=list,
        description="GPUs this scenario defines, each inheriting from a catalog entry (`base:`); usable in "
        "hardware.skus, estimate.gpu and --gpu",
    )
    model: str | ModelSpec = Field(description="catalog name, inline ModelSpec, or path to a HF config.json")
    job: Job
    hardware: Hardware = Hardware()
    pricing: Pricing = Pricing()
    constraints: Constraints = Constraints()
    layout: FixedLayout = FixedLayout()
    objective: Literal["cost", "time", "cost-then-time"] = "cost"
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="plans to list")
    efficiency: EfficiencyOverride = EfficiencyOverride()
    implementation: Implementation = Implementation()
    overheads: Overheads = Overheads()
    estimate: EstimateTarget | None = None
    jobs: list[ConcurrentJob] = Field(
        default_factory=list,
        description="further jobs sharing hardware inventory, budget and constraints.max_gpus with the main job "
        "(model/job above, whose deadline is constraints.deadline_days)",
    )
    reliability: Reliability | Literal["none"] = Field(
        Reliability(), description="failures, checkpoints, restarts, maintenance (docs/goodput.md); none = ideal time"
    )

    @model_validator(mode="after")
    def _names_agree(self) -> Scenario:
        """A fixed SKU or a price for a SKU outside an explicit candidate list is a typo, not a wish."""
        if isinstance(self.hardware.skus, list):
            skus = [_canonical_sku(k) for k in self.hardware.skus]
            fixed = [("layout.sku", self.layout.sku)] + [(f"jobs.{j.name}.layout.sku", j.layout.sku) for j in self.jobs]
            for key, sku in fixed:
                if sku is not None and _canonical_sku(sku) not in skus:
                    raise ValueError(f"{key} {sku!r} is not among hardware.skus {skus}")
            for sku in self.pricing.usd_per_gpu_hour or {}:
                if _canonical_sku(sku) not in skus:
                    raise ValueError(f"pricing.usd_per_gpu_hour names {sku!r}, not among hardware.skus {skus}")
        framework = self.implementation.framework
        for key, job in [("job", self.job)] + [(f"jobs.{j.name}.job", j.job) for j in self.jobs]:
            if (why := master_weights_problem(framework, job.master_weights)) is not None:
                raise ValueError(f"{key}.master_weights {why}")
        return self


def _canonical_sku(name: str) -> str:
    """The catalog name behind an alias (h100 → h100-sxm); an unknown name stays as written (the search
    reports it with a did-you-mean)."""
    from planner.catalog import get_gpu

    try:
        return get_gpu(name).name
    except InputError:
        return name


def read_yaml(path: Path) -> Any:
    """Safe-load a YAML file; a missing, non-UTF-8, duplicate-keyed or malformed file is an InputError naming it."""
    return safe_yaml.read_yaml(path)


# The input formats by the top-level key that marks them, and the command that reads each
FORMATS = {"serving scenario": ("serving", "planner serve"), "portfolio": ("pools", "planner schedule"),
           "training scenario": ("model", "planner solve")}


def refuse_other_formats(data: dict[str, Any], path: Path, kind: str, others: tuple[str, ...]) -> None:
    """InputError naming the command that reads `path` where its keys mark one of the `others` formats, checked in
    that order (a serving scenario names a model too), for a loader of `kind` whose own keys the file lacks."""
    for other in others:
        key, command = FORMATS[other]
        if key in data:
            raise InputError(f"{path}: {key}: a {other}, not a {kind}; run `{command} {path}`")


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    expect(path, (str, os.PathLike), "load_scenario(path)")
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: a scenario is a mapping of keys (model, job, ...), got {type(data).__name__}")
    if "job" not in data:
        refuse_other_formats(data, path, "training scenario", ("serving scenario", "portfolio"))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(e, str(path))) from None
    if isinstance(scenario.model, str) and scenario.model.endswith(".json"):
        # a config.json path is relative to the scenario file
        model_path = Path(scenario.model)
        if not model_path.is_absolute():
            scenario = scenario.model_copy(update={"model": str(path.parent / model_path)})
    from planner.catalog import get_model

    for key, ref in [("model", scenario.model)] + [(f"jobs.{j.name}.model", j.model) for j in scenario.jobs]:
        if isinstance(ref, str) and not _is_config_path(ref):
            try:
                get_model(ref)
            except InputError as e:  # the catalog's "unknown model …", with the file and key it came from
                raise InputError(f"{path}: {key}: {e}") from None
    return scenario


def _is_config_path(model: str) -> bool:
    """A model reference that names a Hugging Face config.json (or the folder holding one), not a catalog entry.
    A blank name is neither: the current folder is no model."""
    if not model.strip():
        return False
    if model.endswith(".json"):
        return True
    try:
        return Path(model).is_file() or Path(model).is_dir()
    except (OSError, ValueError):  # a name too long for a path, or with a NUL byte: a catalog name, then
        return False


def with_basis(scenario: Scenario, *, reliability: Literal["none"] | None = None,
               confidence: float | None = None) -> Scenario:
    """The scenario with `--reliability none` (the ideal time) and `--confidence Q` over its own keys; None
    leaves a key as the scenario has it. InputError for a confidence outside Constraints' range."""
    update: dict[str, Any] = {}
    if reliability is not None:
        update["reliability"] = reliability
    if confidence is not None:
        try:
            update["constraints"] = Constraints.model_validate(
                scenario.constraints.model_dump(exclude_unset=True) | {"confidence": confidence})
        except ValidationError as e:
            raise InputError(f"--confidence: {e.errors()[0]['msg']}") from None
    return scenario.model_copy(update=update) if update else scenario


def resolve_model(model: str | ModelSpec) -> ModelSpec:
    """A catalog name, an inline spec, or a path to a Hugging Face config.json → ModelSpec."""
    if isinstance(model, ModelSpec):
        return model
    if _is_config_path(model):
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

