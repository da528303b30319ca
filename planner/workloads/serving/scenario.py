"""Serving scenario files: a model, the traffic it must serve, the latency SLOs, the engine and the hardware it
may rent. `planner serve SCENARIO.yaml` reads one (a file with a `serving:` block), and the search picks the
cheapest mix of GPU SKUs, TP sizes, replica counts and batch limits that meets the SLOs.

```yaml
name: llama70b-chat
model: llama-3.1-70b            # catalog name, inline ModelSpec, or config.json path
# gpus: [{name: h100-96gb-500w, base: h100-sxm, memory_gib: 95.0, tdp_w: 500}]  # own GPUs, as in training
hardware: {skus: [h100-sxm, h200, a100-80gb], max_gpus: {h200: 16}}
pricing: {kind: on-demand}      # default: each SKU's first on-demand catalog price
serving:
  traffic:
    qps: 40                     # mean request rate at peak (Poisson)
    input: {mean: 2000, p99: 6000}   # or a number, or {histogram: [[len, weight], ...]}
    output: {mean: 300, p99: 1000}
    prefix_hit_rate: 0.0
    # classes: [{name: chat, share: 0.8, input: 500, output: 300}, ...]  # request-size classes (Mélange)
  slo: {ttft_ms: 1000, tpot_ms: 50, percentile: 99, attainment: 0.99}
  engine: vllm                  # vllm | trtllm | sglang, or {name: vllm, max_num_seqs: 128}
  weight_dtype: fp8
  kv_dtype: fp8
  search: {tp: [1, 2, 4, 8], batch_limits: [16, 32, 64, 128, 256], headroom: 0.1, mix: true}
  pareto_qps: [10, 20, 40, 80]
```
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PositiveInt, ValidationError, model_validator

from planner.errors import InputError, expect, format_validation_error
from planner.limits import MAX_CONCURRENCY, MAX_GPUS, MAX_QPS, MAX_SEED, MIN_QPS
from planner.model.serving import KvDtype, ServingEfficiency, WeightDtype
from planner.scenario import Hardware, OwnGpus, Pricing, _number, read_yaml, refuse_other_formats
from planner.schema import GpuDefinition, ModelSpec, Strict
from planner.workloads.serving.engines import EngineOverride
from planner.workloads.serving.simulation import LengthDist

PositiveNumber = Annotated[float, BeforeValidator(_number), Field(gt=0, allow_inf_nan=False)]
Rate = Annotated[float, BeforeValidator(_number), Field(ge=MIN_QPS, le=MAX_QPS, allow_inf_nan=False)]  # requests/s


def _length(v: Any) -> Any:
    """A bare number is a fixed length."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if isinstance(v, float) and not v.is_integer():
            return v
        return {"fixed": int(v)}
    return v


Length = Annotated[LengthDist, BeforeValidator(_length)]


class TrafficClass(Strict):
    """A request-size class with its share of the traffic (Mélange splits traffic by request size)."""

    name: str
    share: float = Field(gt=0, le=1, description="fraction of requests in this class")
    input: Length
    output: Length
    prefix_hit_rate: float | None = Field(None, ge=0, lt=1)


class Traffic(Strict):
    """The load to serve: a Poisson request rate and the request lengths (one distribution, or classes)."""

    qps: Rate = Field(description="mean requests per second at peak")
    input: Length | None = None
    output: Length | None = None
    prefix_hit_rate: float = Field(0.0, ge=0, lt=1, description="share of prompt tokens served from the prefix cache")
    classes: list[TrafficClass] | None = Field(None, description="request-size classes instead of input/output")

    @model_validator(mode="after")
    def _shape(self) -> Traffic:
        if self.classes:
            if self.input is not None or self.output is not None:
                raise ValueError("give either input/output or classes, not both")
            total = sum(c.share for c in self.classes)
            if not math.isclose(total, 1.0, rel_tol=1e-6):
                raise ValueError(f"class shares sum to {total:g}, not 1")
            names = [c.name for c in self.classes]
            if len(set(names)) != len(names):
                raise ValueError("class names must be unique")
        elif self.input is None or self.output is None:
            raise ValueError("give input and output lengths (or classes)")
        return self

    def resolved_classes(self) -> list[TrafficClass]:
        if self.classes:
            hit = {"prefix_hit_rate": self.prefix_hit_rate}
            return [c if c.prefix_hit_rate is not None else c.model_copy(update=hit) for c in self.classes]
        assert self.input is not None and self.output is not None
        return [TrafficClass(name="all", share=1.0, input=self.input, output=self.output,
                             prefix_hit_rate=self.prefix_hit_rate)]


class Slo(Strict):
    """Latency objectives: TTFT and TPOT at a percentile, and optionally the share of requests meeting both."""

    ttft_ms: PositiveNumber = Field(description="time to first token")
    tpot_ms: PositiveNumber = Field(description="time per output token after the first")
    percentile: float = Field(99.0, gt=0, lt=100, description="pXX of TTFT and of TPOT must meet the SLOs")
    attainment: float | None = Field(None, gt=0, le=1, description="share of requests meeting both (goodput)")


class ServingSearch(Strict):
    """What the search may choose, and how closely it simulates each candidate."""

    tp: list[Annotated[int, Field(ge=1, le=MAX_GPUS)]] = Field([1, 2, 4, 8], min_length=1,
                                                             description="tensor-parallel sizes per replica")
    batch_limits: list[Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]] | None = Field(
        None, description="max_num_seqs values to try (default 16..512 by doubling, within the engine's limit)"
    )
    headroom: float = Field(0.0, ge=0, le=10, description="capacity margin: replicas serve qps × (1 + headroom)")
    mix: bool = Field(True, description="allow a mix of SKUs (else the best single SKU)")
    max_replicas: PositiveInt = Field(512, le=MAX_GPUS, description="replicas per candidate at most")
    requests: PositiveInt = Field(300, ge=50, le=20000, description="requests per simulation")
    slices: PositiveInt = Field(10, le=100, description="parts each class's traffic is split into for assignment")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds the sampled request lengths and arrivals")


class ServingSpec(Strict):
    """The `serving:` block."""

    traffic: Traffic
    slo: Slo
    engine: str | EngineOverride = "vllm"
    weight_dtype: WeightDtype = "bf16"
    kv_dtype: KvDtype | None = Field(None, description="default bf16")
    search: ServingSearch = ServingSearch()
    efficiency: ServingEfficiency = ServingEfficiency()
    pareto_qps: list[Rate] | None = Field(None, description="request rates for the cost-vs-QPS trace")


class ServingScenario(OwnGpus, Strict):
    name: str = "serving"
    description: str | None = None
    gpus: list[GpuDefinition] = Field(
        default_factory=list,
        description="GPUs this scenario defines, each inheriting from a catalog entry (`base:`); usable in "
        "hardware.skus and hardware.max_gpus",
    )
    model: str | ModelSpec = Field(description="catalog name, inline ModelSpec, or path to a HF config.json")
    hardware: Hardware = Hardware()
    pricing: Pricing = Pricing()
    serving: ServingSpec


def is_serving_scenario(data: Any) -> bool:
    """A scenario file is a serving scenario when it has a `serving:` block."""
    return isinstance(data, dict) and "serving" in data


def load_serving_scenario(path: str | Path) -> ServingScenario:
    """Read and validate a serving scenario; every problem is an InputError naming the file and key."""
    expect(path, (str, os.PathLike), "load_serving_scenario(path)")
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: a serving scenario is a mapping with a `serving:` block, got {type(data).__name__}")
    if "serving" not in data:
        refuse_other_formats(data, path, "serving scenario", ("portfolio",))
        raise InputError(f"{path}: no `serving:` block (a training scenario? use `planner solve`)")
    try:
        scenario = ServingScenario.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(e, str(path))) from None
    try:
        scenario.custom_gpus()
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    if isinstance(scenario.model, str) and scenario.model.endswith(".json"):
        model_path = Path(scenario.model)
        if not model_path.is_absolute():
            scenario = scenario.model_copy(update={"model": str(path.parent / model_path)})
    return scenario


def serving_json_schema() -> dict[str, Any]:
    """JSON Schema of the serving scenario format, for editors."""
    schema = ServingScenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "planner serving scenario"
    return schema
