"""The one reading of "flags over the scenario's keys over defaults" that `estimate` and `review` share:
which model, GPU, node size, tokens, prices, overheads and efficiencies a configuration runs with, and
its layout from the scenario's `layout:` block and the flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from planner.errors import InputError, format_validation_error
from planner.limits import MAX_GPUS
from planner.model.params import count_params
from planner.pricing import priced
from planner.scenario import MAX_TOKENS, EfficiencyOverride, Pricing, Scenario, resolve_model
from planner.schema import (
    GpuCount,
    GpuSku,
    Implementation,
    Layout,
    ModelSpec,
    Overheads,
    Reliability,
    SeqLen,
    compute_dtype,
    master_weights_problem,
)
from planner.workloads.training.evaluation import Evaluation, evaluate
from planner.workloads.training.legality import layout_problems, offload_problem, sequence_problem

# Without --tokens: the compute-optimal budget of Hoffmann et al. 2022 (Chinchilla), ~20 tokens per parameter.
CHINCHILLA_TOKENS_PER_PARAM = 20.0


def pick(*values: Any) -> Any:
    """The first value given (not None)."""
    return next((v for v in values if v is not None), None)


# What a flag (or a request field of the Python API) may hold: the scenario keys' own types and bounds.
_FLAG_TYPES: dict[str, TypeAdapter[Any]] = {
    "--tokens": TypeAdapter(Annotated[float, Field(ge=1, le=MAX_TOKENS, allow_inf_nan=False)]),
    "--seq": TypeAdapter(SeqLen),
    "--context": TypeAdapter(SeqLen),
    "--gpus": TypeAdapter(GpuCount),
    "--gpus-per-node": TypeAdapter(GpuCount),
}


def checked(flag: str, value: Any) -> Any:
    """`value` validated as `flag`'s scenario key would be (finite, in its physical range); None passes."""
    if value is None:
        return None
    try:
        return _FLAG_TYPES[flag].validate_python(value)
    except ValidationError as e:
        raise InputError(f"{flag}: {value!r}: {e.errors(include_url=False)[0]['msg']}") from None


@dataclass
class Inputs:
    """Everything one evaluation needs, resolved: what `estimate` and `review` both evaluate."""

    model: ModelSpec
    layout: Layout
    gpu: GpuSku
    gpus_per_node: int
    seq: int
    tokens: float
    implementation: Implementation
    overheads: Overheads
    efficiency: EfficiencyOverride
    pricing: Pricing | None  # None: the SKU has no price of that kind (no cost is reported)

    def __post_init__(self) -> None:
        runs_on(self.gpu, self.layout.precision, self.implementation.fp8_recipe)

    def evaluate(self, layout: Layout | None = None) -> Evaluation:
        return evaluate(
            self.model, layout or self.layout, self.gpu, seq=self.seq, tokens=self.tokens,
            gpus_per_node=self.gpus_per_node, implementation=self.implementation, overheads=self.overheads,
            efficiency=self.efficiency, pricing=self.pricing,
        )


def default_tokens(model: ModelSpec) -> float:
    return CHINCHILLA_TOKENS_PER_PARAM * count_params(model).total


def given_model(model: str | ModelSpec | None, sc: Scenario | None) -> ModelSpec | None:
    """The model named by a flag, else by the scenario; None when neither names one."""
    ref = pick(model, sc.model if sc else None)
    if ref is None:
        return None
    try:
        return resolve_model(ref)
    except InputError as e:
        if model is None:  # the scenario's key, which its loader names
            raise
        raise InputError(f"--model: {e}") from None


def given_gpus(gpus: int | None, sc: Scenario | None) -> int | None:
    """The GPU count: a flag, the scenario's `estimate.gpus`, or its `layout.gpus`."""
    return pick(checked("--gpus", gpus), sc.estimate.gpus if sc and sc.estimate else None,
                sc.layout.gpus if sc else None)


def gpus_origin(gpus: int | None, sc: Scenario | None) -> str:
    """Where `given_gpus` took the count from: the flag or the scenario key, for its error messages."""
    if gpus is not None or sc is None:
        return "--gpus"
    return "estimate.gpus" if sc.estimate and sc.estimate.gpus is not None else "layout.gpus"


def hardware(sc: Scenario | None, model: ModelSpec, *, gpu: str | None, gpus_per_node: int | None,
             tokens: float | None) -> dict[str, Any]:
    """GPU, node size, tokens, prices, overheads and efficiencies (Inputs' fields): flags over the
    scenario over defaults."""
    from planner.catalog import get_gpu

    target = sc.estimate if sc else None
    name = pick(gpu, target.gpu if target else None, sc.layout.sku if sc else None)
    if name is None:
        raise InputError("--gpu: give a GPU from `planner catalog gpus` and --gpus a count (or a scenario's "
                         "`estimate: {gpu: ..., gpus: ...}` block)")
    try:
        sku = sc.gpu(name) if sc else get_gpu(name)
    except InputError as e:
        if gpu is None:
            raise
        raise InputError(f"--gpu: {e}") from None
    return {
        "gpu": sku,
        "gpus_per_node": pick(checked("--gpus-per-node", gpus_per_node), target.gpus_per_node if target else None,
                              sc.hardware.gpus_per_node if sc else None, sku.node_size),
        "tokens": float(pick(checked("--tokens", tokens), sc.job.tokens if sc else None, default_tokens(model))),
        "pricing": priced(sku, sc.pricing if sc else Pricing()),
        "overheads": sc.overheads if sc else Overheads(),
        "efficiency": sc.efficiency if sc else EfficiencyOverride(),
    }


def runs_on(gpu: GpuSku, precision: str, fp8_recipe: str | None = None) -> None:
    """InputError where the GPU has no tensor cores for the layout's precision (fp8 before Hopper) or its fp8
    recipe (MXFP8 before Blackwell)."""
    if not gpu.supports(precision):
        raise InputError(f"--gpu: {gpu.name} has no {precision} tensor cores, which precision {precision} "
                         f"(--precision, job.precision) needs")
    if not gpu.supports(compute_dtype(precision, fp8_recipe)):
        raise InputError(f"--gpu: {gpu.name} has no block-scaled fp8 tensor cores, which the mxfp8 recipe "
                         f"(--fp8-recipe, implementation.fp8_recipe) needs; on it fp8 runs per-tensor (delayed, "
                         f"current) or blockwise scaling")


def validated(kind: type[Any], data: Mapping[str, Any], where: str) -> Any:
    """`data` as the pydantic model `kind`; an InputError naming `where` and the key when it is not one."""
    try:
        return kind.model_validate(dict(data))
    except ValidationError as e:
        raise InputError(format_validation_error(e, where)) from None


def reliability_choice(value: Any) -> Reliability | Literal["none"] | None:
    """A request's `reliability` as the model takes it: a Reliability, "none", or None (the scenario's); a
    mapping is validated as a scenario's `reliability:` key would be, anything else is an InputError."""
    if value is None or value == "none" or isinstance(value, Reliability):
        return value
    if isinstance(value, Mapping):
        return validated(Reliability, value, "reliability")
    raise InputError(f"reliability: expected 'none' or a Reliability (failures, checkpoints), got {value!r}")


def layout(sc: Scenario | None, model: ModelSpec, *, overrides: Mapping[str, Any], gpus: int | None,
           global_batch: int | None, precision: str | None, node: int, seq: int, strict: bool,
           implementation: Implementation | None = None, state: Mapping[str, Any] | None = None,
           seq_key: str = "job.seq_len", gpus_key: str = "--gpus") -> Layout:
    """The scenario's `layout:` with the flags' `overrides`, dp derived from `gpus`, and its job's optimizer
    state with the flags' `state` (master_weights, moment_dtype). `strict` (estimate) refuses a count the other
    sizes do not divide and any illegal layout; otherwise (review) dp is the count over the other sizes, at least
    1, and an illegal layout is returned to be judged. `seq_key`, `gpus_key`: where `seq` and `gpus` came from (the
    flag or the scenario key), named in errors."""
    checked("--seq", seq)
    if (why := sequence_problem(model, seq, seq_key)) is not None:
        raise InputError(why)
    if sc is not None and (why := offload_problem(model, sc.implementation.activation_offload_layers)) is not None:
        raise InputError(why)
    fixed: dict[str, Any] = sc.layout.model_dump(exclude={"sku", "gpus"}, exclude_none=True) if sc else {}
    fixed.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("tp", "pp", "cp", "dp"):  # the sizes dp is derived from, before any arithmetic on them
        size = fixed.get(key)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_GPUS):
            raise InputError(f"layout.{key}: must be a whole number from 1 to {MAX_GPUS:,}, got {size!r}")
    if bad := [k for k in fixed if not isinstance(k, str)]:
        raise InputError(f"layout: {bad[0]!r} is not a layout key")
    tp, pp, cp = fixed.get("tp", 1), fixed.get("pp", 1), fixed.get("cp", 1)
    if "dp" not in fixed:
        if gpus is None:
            fixed["dp"] = 1
        elif strict and gpus % (tp * pp * cp):
            raise InputError(f"{gpus_key}: {gpus} is not divisible by tp·pp·cp = {tp}·{pp}·{cp} = {tp * pp * cp}")
        else:
            fixed["dp"] = max(1, gpus // (tp * pp * cp))
    batch = pick(global_batch, sc.job.global_batch if sc else None, fixed["dp"] * fixed.get("micro_batch", 1))
    recipe: dict[str, Any] = {"precision": pick(precision, sc.job.precision if sc else None, "bf16")}
    if sc:
        recipe |= {"optimizer": sc.job.optimizer, "fp32_grad_accumulation": sc.job.fp32_grad_accumulation,
                   "master_weights": sc.job.master_weights, "moment_dtype": sc.job.moment_dtype}
    flags = {k: v for k, v in (state or {}).items() if v is not None}
    recipe |= flags
    try:
        out = Layout(global_batch=batch, **recipe, **fixed)
    except ValidationError as e:
        # the optimizer-state rules are the layout's own (no key): name the flags that set them
        given = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items())
        own = flags and all(not err["loc"] for err in e.errors())
        raise InputError(format_validation_error(e, f"job ({given})" if own else "layout")) from None
    impl = implementation or (sc.implementation if sc else Implementation())
    fw = impl.framework
    if (why := master_weights_problem(fw, out.master_weights)) is not None:
        raise InputError(("--master-weights " if "master_weights" in flags else "job.master_weights ") + why)
    if strict:
        problems = layout_problems(model, out, gpus=gpus, node_size=node, seq=seq, impl=impl)
        if problems:
            origins = {k: f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None}
            origins.setdefault("global_batch", "--global-batch" if global_batch is not None else "job.global_batch")
            origins["gpus"] = gpus_key
            in_scenario = sc.layout.model_fields_set if sc else set()
            raise InputError("; ".join(named(p, origins, in_scenario) for p in problems))
    return out


def named(problem: str, origins: Mapping[str, str], scenario_keys: set[str]) -> str:
    """A layout rule's 'field: why' with the field named where its value came from: the flag (`--tp`), the
    scenario key (`layout.tp`, `job.global_batch`), or the bare field when a default set it. 'pp·vpp: …'
    names both."""
    field, sep, why = problem.partition(": ")
    parts = field.split("·")
    if not sep or any(not part.isidentifier() for part in parts):
        return problem
    names = [origins.get(f) or (f"layout.{f}" if f in scenario_keys else f) for f in parts]
    if len(names) > 1 and all(n.startswith("layout.") for n in names):
        names = [names[0], *(n.removeprefix("layout.") for n in names[1:])]
    return f"{'·'.join(names)}: {why}"
