"""Engine presets (catalogs/engines.yaml): vLLM, TensorRT-LLM and SGLang scheduling defaults, resolved for one
GPU into the `EngineConfig` the physics and the simulator run with."""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

from pydantic import Field, PositiveInt

from planner.errors import InputError
from planner.model.params import count_params
from planner.model.serving import EngineConfig, ServingModel, weight_bytes_per_param
from planner.schema import GIB, GpuSku, Strict


class EngineTier(Strict):
    """Defaults that depend on the GPU: the first tier the GPU's memory reaches applies."""

    min_memory_gib: float = Field(ge=0)
    exclude: list[str] = Field([], description="catalog-name substrings this tier does not apply to")
    max_num_seqs: PositiveInt
    token_budget: PositiveInt


class EngineSpec(Strict):
    """An inference engine's default scheduling (catalogs/engines.yaml)."""

    name: str
    description: str = ""
    chunked_prefill: bool = Field(description="prompts are split into chunks that fit the token budget")
    mixed_batches: bool = Field(description="prefill and decode tokens share one iteration")
    memory_fraction: float = Field(gt=0, le=1)
    memory_fraction_of: Literal["total", "free"] = Field(
        description="total: weights, activations and KV within this fraction of the GPU (vLLM, SGLang); "
        "free: the KV pool is this fraction of what is left after weights (TensorRT-LLM)"
    )
    block_size: PositiveInt = Field(description="tokens per KV-cache block (page)")
    reserve_ratio_init: float = Field(
        ge=0, le=1, description="share of a request's remaining output reserved in KV when admitting it"
    )
    reserve_ratio_min: float = Field(ge=0, le=1)
    reserve_ratio_decay_steps: PositiveInt = Field(description="iterations from init to min; reset on preemption")
    prefix_caching: bool = True
    cuda_graph_max_batch: int = Field(ge=0, description="decode batches up to this size replay a CUDA graph")
    overlap_scheduler: bool = Field(description="host work of iteration i+1 overlaps the GPU step i")
    tiers: list[EngineTier]
    source: str


class EngineOverride(Strict):
    """An engine preset by name with any field changed (`engine: {name: vllm, max_num_seqs: 128}`)."""

    name: str = "vllm"
    max_num_seqs: PositiveInt | None = None
    token_budget: PositiveInt | None = None
    chunked_prefill: bool | None = None
    mixed_batches: bool | None = None
    memory_fraction: float | None = Field(None, gt=0, le=1)
    block_size: PositiveInt | None = None
    prefix_caching: bool | None = None
    cuda_graph_max_batch: int | None = Field(None, ge=0)
    overlap_scheduler: bool | None = None


@functools.lru_cache
def load_engines() -> dict[str, EngineSpec]:
    """Engine presets from catalogs/engines.yaml, keyed by name."""
    from planner.catalog import _load

    return _load("engines.yaml", "engines", EngineSpec)


def resolve_engine(engine: str | EngineOverride, gpu: GpuSku) -> EngineConfig:
    """The engine's defaults for this GPU, with a scenario's overrides applied."""
    over = EngineOverride(name=engine) if isinstance(engine, str) else engine
    specs = load_engines()
    spec = specs.get(over.name.lower())
    if spec is None:
        raise InputError(f"unknown engine {over.name!r}; known engines: {', '.join(sorted(specs))}")
    gib = gpu.hbm_bytes / GIB
    tier = next(
        (t for t in spec.tiers if gib >= t.min_memory_gib and not any(x in gpu.name for x in t.exclude)),
        spec.tiers[-1],
    )
    values: dict[str, Any] = {
        "name": spec.name, "max_num_seqs": tier.max_num_seqs, "token_budget": tier.token_budget,
        "chunked_prefill": spec.chunked_prefill, "mixed_batches": spec.mixed_batches,
        "memory_fraction": spec.memory_fraction, "memory_fraction_of": spec.memory_fraction_of,
        "block_size": spec.block_size, "reserve_ratio_init": spec.reserve_ratio_init,
        "reserve_ratio_min": spec.reserve_ratio_min, "reserve_ratio_decay_steps": spec.reserve_ratio_decay_steps,
        "prefix_caching": spec.prefix_caching, "cuda_graph_max_batch": spec.cuda_graph_max_batch,
        "overlap_scheduler": spec.overlap_scheduler,
    }
    for key, value in over.model_dump(exclude={"name"}).items():
        if value is not None:
            values[key] = value
    return EngineConfig(**values)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def trtllm_bench_engine(
    model: ServingModel, input_len: int, output_len: int, kv_fraction: float = 0.95, *,
    weight_bytes: float | None = None, kv_bytes: float | None = None,
) -> EngineOverride:
    """The batch limits `trtllm-bench throughput` picks for a dataset (NVIDIA/TensorRT-LLM
    tensorrt_llm/bench/build/tuning.py, calc_engine_setting and finetune_setting): the requests the KV memory
    holds at ISL+OSL, capped at 4096 and rounded up optimistically, and a token budget of that batch times
    (1 + ISL/OSL) capped at 32768. The published perf-overview runs add CUDA graphs up to 8192 with padding
    and a KV fraction of 0.95 (docs/source/performance/perf-overview.md).

    The harness prices every parameter and KV element by its table of the checkpoint's quant_algo and
    kv_cache_quant_algo (BYTES_PER_ELEM: NVFP4 0.5, FP8 1, anything else 2 B); `weight_bytes` and `kv_bytes`
    state those where they differ from the deployment's own (gpt-oss's MXFP4 checkpoint: 2 and 2), else the
    deployment's weights and KV are taken as they are."""
    n = model.tp * model.pp
    # the harness counts every attention layer's K and V over the whole replica, sliding windows or not
    # (tensorrt_llm/bench/build/tuning.py calc_engine_setting byte_per_token)
    per_token = model.kv_bytes_per_token * n
    if kv_bytes is not None:
        per_token *= kv_bytes / weight_bytes_per_param(model.kv_dtype)
    engine = model.weight_bytes * n if weight_bytes is None else count_params(model.m).total * weight_bytes
    available = float(model.gpu.hbm_bytes) * n - engine
    requests = kv_fraction * available / (per_token * (input_len + output_len))
    raw_bs = min(requests, 4096) / model.pp
    raw_token = min(raw_bs * (1 + input_len / output_len), 32768)
    if raw_bs < 256:
        bs = max(64, 32 * ceil_div(math.ceil(raw_bs), 32))
    elif raw_bs < 1024:
        bs = 128 * ceil_div(math.ceil(raw_bs), 128)
    else:
        bs = 256 * ceil_div(math.ceil(raw_bs), 256)
    if raw_token < 4096:
        tokens = max(2048, 256 * ceil_div(math.ceil(raw_token), 256))
    elif raw_token < 8192:
        tokens = 512 * ceil_div(math.ceil(raw_token), 512)
    else:
        tokens = 1024 * ceil_div(math.ceil(raw_token), 1024)
    return EngineOverride(
        name="trtllm", max_num_seqs=bs, token_budget=tokens, memory_fraction=kv_fraction, cuda_graph_max_batch=8192
    )
