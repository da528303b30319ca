"""Evaluate one serving deployment: a model on a GPU with a TP (and PP) layout, under an engine, at a client
concurrency or a request rate. The public function behind `planner serve --model M --gpu G --tp N ...`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from planner.errors import InfeasibleError, InputError, expect
from planner.limits import MAX_CONCURRENCY, MAX_GPUS, MAX_SEED, MAX_SIMULATED_REQUESTS
from planner.model.serving import DTYPES, EngineConfig, ServingEfficiency, ServingModel, serving_model
from planner.schema import GpuSku, ModelSpec, Overheads
from planner.workloads.serving.engines import EngineOverride, resolve_engine
from planner.workloads.serving.simulation import (
    PERCENTILES,
    AnalyticBounds,
    DisaggResult,
    LengthDist,
    SimResult,
    analytic_bounds,
    poisson_arrivals,
    simulate,
    simulate_disaggregated,
)
from planner.workloads.serving.uncertainty import serving_note

# Requests one evaluation simulates: enough for a stable p99 after warm-up, bounded so that one deployment
# stays well under a second (about ITERATION_BUDGET engine iterations: requests x output / concurrency).
MIN_REQUESTS = 400
REQUESTS_PER_CLIENT = 8
MAX_REQUESTS = 4000
ITERATION_BUDGET = 40_000
FEWEST_REQUESTS = 50
# Requests of a disaggregated evaluation by default: one Poisson stream through both pools, 60 per p99 sample.
DISAGG_REQUESTS = 600


@dataclass(frozen=True)
class DeploymentResult:
    """Latency percentiles, throughput and memory of one deployment (one replica of tp×pp GPUs).

    Latencies in ms over the requests after warm-up; throughput for the whole replica; memory per GPU. When the
    deployment does not fit, latencies and throughput are None and `fits` is False.
    """

    model: str
    gpu: str
    tp: int
    pp: int
    engine: str
    weight_dtype: str
    kv_dtype: str
    concurrency: int | None
    qps: float | None
    input_len: float
    output_len: float
    ttft_ms: dict[str, float] | None
    tpot_ms: dict[str, float] | None
    output_tokens_per_s: float | None
    requests_per_s: float | None
    weights_bytes: int
    kv_cache_bytes: int  # KV of the requests the deployment holds at once (min(concurrency, max_concurrency))
    workspace_bytes: int  # activations of one token-budget forward and the framework reserve
    fits: bool
    max_concurrency: int  # requests of this shape the KV pool and the batch limit hold at once
    kv_pool_tokens: int
    engine_config: EngineConfig | None = None
    extrapolated: str | None = None  # how far the model's regime is from the published runs (serving/uncertainty.py)
    bounds: AnalyticBounds | None = None
    sim: SimResult | None = field(default=None, repr=False)

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.workspace_bytes

    @property
    def unfit(self) -> str | None:
        """Why the deployment does not fit, with its numbers; None when it fits."""
        if self.fits:
            return None
        return (f"does not fit: weights {self.weights_bytes / 2**30:.1f} GiB per GPU, {self.max_concurrency} requests "
                "fit the KV pool")

    @property
    def overload(self) -> str | None:
        """Why the latencies describe no steady state, when the replica does not keep up with --qps; else None."""
        if self.qps is None or self.sim is None or self.sim.keeps_up():
            return None
        return overload_note(self.qps, self.sim.completion_rate, len(self.sim.e2e),
                             sustained=self.sim.requests_per_s)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `planner serve ... --format json`: exactly these keys."""
        return {
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "throughput": {
                "output_tokens_per_s": self.output_tokens_per_s,
                "requests_per_s": self.requests_per_s,
            },
            "memory": {
                "bytes": {"weights": self.weights_bytes, "kv_cache": self.kv_cache_bytes, "total": self.total_bytes},
                "fits": self.fits,
            },
            "max_concurrency": self.max_concurrency,
        }


def _rng(seed: int) -> np.random.Generator:
    """The request sampler; a seed numpy cannot take (negative, past 2^63) is bad input."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return np.random.default_rng(seed)


def overload_note(offered: float, completing: float, requests: int, what: str = "the replica",
                  sustained: float | None = None) -> str:
    """The overload warning: the offered rate, the rate requests completed at while they arrived (and over the whole
    run, `sustained`: the throughput shown beside it, its queue drained)."""
    whole = f" ({sustained:.3g}/s over the whole run, its queue drained)" if sustained is not None else ""
    return (f"overloaded: {offered:g} requests/s offered, {what} completes {completing:.3g}/s while requests "
            f"arrive{whole}; its queue grows without bound, and the latencies are those of a finite run of {requests} "
            "requests, not a steady state")


def _resolve(model: str | ModelSpec, gpu: str | GpuSku, gpu_flag: str = "--gpu") -> tuple[ModelSpec, GpuSku]:
    """The model and GPU named by `planner serve`'s flags (an unknown name is bad input naming its flag)."""
    from planner.catalog import get_gpu
    from planner.scenario import resolve_model

    expect(model, (str, ModelSpec), "model")
    expect(gpu, (str, GpuSku), "gpu")
    try:
        m = resolve_model(model) if isinstance(model, str) else model
    except InputError as e:
        raise InputError(f"--model: {e}") from None
    g = get_gpu(gpu, key=gpu_flag) if isinstance(gpu, str) else gpu
    return m, g


def replica_model(model: ModelSpec, gpu: GpuSku, **layout: Any) -> ServingModel:
    """The physics of one replica (planner.model.serving.serving_model); a layout or dtype the model refuses
    (fp4 without fp4 tensor cores, ep without experts, tp not dividing the heads) is an InputError."""
    try:
        return serving_model(model, gpu, **layout)
    except ValueError as e:
        raise InputError(str(e)) from None


def _check_dtype(name: str, value: str) -> None:
    if value not in DTYPES:
        raise InputError(f"--{name.replace('_', '-')}: unknown dtype {value!r}; known: {', '.join(DTYPES)}")


def workspace_bytes(sm: ServingModel, engine: EngineConfig, overheads: Overheads | None = None) -> int:
    o = overheads or Overheads()
    return math.ceil(sm.workspace_bytes(engine.token_budget, engine.max_num_seqs) + o.reserve_bytes
                     + o.comm_buffer_bytes)


def max_concurrency(sm: ServingModel, engine: EngineConfig, input_len: float, output_len: float,
                    kv_tokens: int | None = None) -> int:
    """Requests of this shape the replica holds at once: whole-block KV footprints in the pool, capped by the
    engine's batch limit."""
    pool = kv_tokens if kv_tokens is not None else sm.kv_pool_tokens(engine)
    per = math.ceil((input_len + output_len) / engine.block_size) * engine.block_size
    return int(min(engine.max_num_seqs, pool // max(float(sm.kv_tokens(per)), 1)))


def default_requests(concurrency: int | None, qps: float | None, mean_out: float) -> int:
    """Requests to simulate: 8 per client (at least 400, at most 4000), fewer when that many would take more than
    ITERATION_BUDGET iterations (a single client at long outputs), never fewer than 3 per client or 50."""
    clients = concurrency or 64
    n = min(MAX_REQUESTS, max(MIN_REQUESTS, REQUESTS_PER_CLIENT * clients))
    affordable = int(ITERATION_BUDGET * clients / max(mean_out, 1.0))
    return max(FEWEST_REQUESTS, 3 * clients, min(n, affordable)) if qps is None else n


def _lengths(value: Any, flag: str) -> LengthDist:
    """Tokens per request as a LengthDist; an InputError naming the flag for a length out of its range."""
    try:
        return LengthDist.of(value)
    except ValidationError as e:
        raise InputError(f"{flag}: {e.errors(include_url=False)[0]['msg']}") from None
    except (ValueError, TypeError) as e:
        raise InputError(f"{flag}: {value!r} is not a token count or a length distribution ({e})") from None


def evaluate_deployment(
    model: str | ModelSpec,
    gpu: str | GpuSku,
    tp: int = 1,
    concurrency: int | None = 1,
    input_len: int | LengthDist = 1024,
    output_len: int | LengthDist = 256,
    *,
    weight_dtype: str = "bf16",
    kv_dtype: str | None = None,
    engine: str | EngineOverride = "vllm",
    pp: int = 1,
    ep: int = 1,
    qps: float | None = None,
    requests: int | None = None,
    prefix_hit_rate: float = 0.0,
    seed: int = 0,
    efficiency: ServingEfficiency | None = None,
) -> DeploymentResult:
    """Evaluate one serving deployment by simulating its engine (`planner serve --model M --gpu G --tp N
    --concurrency C --input-len I --output-len O [--weight-dtype fp8 --kv-dtype fp8] --format json`).

    Args:
        model: catalog name, Hugging Face config.json path, or ModelSpec.
        gpu: catalog name or alias, or GpuSku.
        tp: tensor-parallel GPUs per replica; pp: pipeline stages (GPUs per replica = tp × pp);
            ep: expert parallelism for MoE models (1, or equal to tp).
        concurrency: closed loop — this many clients, each sending its next request when the last finishes
            (what `--max-concurrency` benchmark clients do). Give `qps` instead for Poisson arrivals.
        input_len, output_len: tokens per request, fixed (int) or a LengthDist (mean and p99, or histogram).
        weight_dtype: bf16, fp16, fp8, int8, int4 (weight-only), fp4 (Blackwell/MI355X tensor cores).
        kv_dtype: KV-cache dtype; default bf16.
        engine: `vllm`, `trtllm`, `sglang` (catalogs/engines.yaml), or an EngineOverride.
        requests: requests to simulate (default: 8 per client, at least 400, at most 4000).
        prefix_hit_rate: share of each prompt served from the prefix cache.
        seed: seeds lengths and arrivals; the same inputs give the same result.
        efficiency: serving efficiency overrides (ServingEfficiency); the GPU's catalog efficiency still applies.

    Returns:
        DeploymentResult; `to_dict()` has exactly `ttft_ms.{p50,p90,p99}`, `tpot_ms.{p50,p90,p99}`,
        `throughput.{output_tokens_per_s,requests_per_s}` (the replica), `memory.bytes.{weights,kv_cache,total}`
        (per GPU; kv_cache is what min(concurrency, max_concurrency) requests hold), `memory.fits` and
        `max_concurrency`. A deployment whose weights and workspace do not fit, or whose KV pool cannot hold
        one request, has `fits` False and null latencies.

    Raises:
        InputError: unknown model, GPU, engine or dtype; a number out of its physical range.
    """
    m, g = _resolve(model, gpu)
    _check_dtype("weight_dtype", weight_dtype)
    kv_dtype = kv_dtype or "bf16"
    _check_dtype("kv_dtype", kv_dtype)
    if (concurrency is None) == (qps is None):
        raise InputError("give --concurrency (closed loop) or --qps (Poisson arrivals), not both")
    counts = (("--concurrency", concurrency, MAX_CONCURRENCY), ("--tp", tp, MAX_GPUS), ("--pp", pp, MAX_GPUS),
              ("--ep", ep, MAX_GPUS), ("--requests", requests, MAX_SIMULATED_REQUESTS))
    for flag, value, high in counts:
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                                  or not 1 <= value <= high):
            raise InputError(f"{flag} must be a positive integer up to {high:,}, got {value!r}")
    if qps is not None and not (isinstance(qps, (int, float)) and math.isfinite(qps) and qps > 0):
        raise InputError(f"--qps must be a positive finite number, got {qps!r}")
    if not (0.0 <= prefix_hit_rate < 1.0):
        raise InputError(f"prefix_hit_rate must be in [0, 1), got {prefix_hit_rate!r}")
    lin, lout = _lengths(input_len, "--input-len"), _lengths(output_len, "--output-len")
    if tp * pp > 1024:
        raise InputError(f"tp × pp = {tp * pp} GPUs per replica is beyond any scale-up domain")
    sm = replica_model(m, g, tp=tp, pp=pp, ep=ep, weight_dtype=weight_dtype, kv_dtype=kv_dtype, seff=efficiency)
    eng = resolve_engine(engine, g)
    mean_in, mean_out = lin.expected(), lout.expected()
    pool = sm.kv_pool_tokens(eng)
    cap = max_concurrency(sm, eng, mean_in, mean_out, pool)
    work = workspace_bytes(sm, eng)
    weights = math.ceil(sm.weight_bytes)
    held = min(concurrency or cap, cap)
    kv_bytes = math.ceil(held * float(sm.kv_tokens(mean_in + mean_out)) * sm.kv_bytes_per_token)
    fits = pool > 0 and cap >= 1
    common = dict(
        model=m.name, gpu=g.name, tp=tp, pp=pp, engine=eng.name, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
        concurrency=concurrency, qps=qps, input_len=mean_in, output_len=mean_out, weights_bytes=weights,
        kv_cache_bytes=kv_bytes, workspace_bytes=work, max_concurrency=cap, kv_pool_tokens=pool,
        engine_config=eng, extrapolated=serving_note(m),
    )
    if not fits:
        return DeploymentResult(ttft_ms=None, tpot_ms=None, output_tokens_per_s=None, requests_per_s=None,
                                fits=False, **common)  # type: ignore[arg-type]
    rng = _rng(seed)
    n = requests or default_requests(concurrency, qps, mean_out)
    ins, outs = lin.sample(n, rng), lout.sample(n, rng)
    if qps is not None:
        sim = simulate(sm, eng, ins, outs, arrivals=poisson_arrivals(qps, n, rng), kv_tokens=pool,
                       prefix_hit=prefix_hit_rate)
    else:
        sim = simulate(sm, eng, ins, outs, concurrency=concurrency, kv_tokens=pool, prefix_hit=prefix_hit_rate)
    bounds = analytic_bounds(sm, eng, mean_in, mean_out, pool, prefix_hit=prefix_hit_rate)
    return DeploymentResult(
        ttft_ms=sim.percentiles("ttft"), tpot_ms=sim.percentiles("tpot"),
        output_tokens_per_s=sim.output_tokens_per_s, requests_per_s=sim.requests_per_s, fits=sim.unserved == 0,
        bounds=bounds, sim=sim, **common,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class DisaggPool:
    """One pool of a disaggregated deployment: its replica layout and memory per GPU. `kv_cache_bytes` is what
    `max_concurrency` requests hold (prompts alone on the prefill pool, prompt and output on the decode pool)."""

    gpu: str
    tp: int
    replicas: int
    weights_bytes: int
    kv_cache_bytes: int
    workspace_bytes: int
    max_concurrency: int
    kv_pool_tokens: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.workspace_bytes

    @property
    def fits(self) -> bool:
        return self.kv_pool_tokens > 0 and self.max_concurrency >= 1

    def memory_dict(self) -> dict[str, Any]:
        return {"bytes": {"weights": self.weights_bytes, "kv_cache": self.kv_cache_bytes, "total": self.total_bytes},
                "fits": self.fits}


@dataclass(frozen=True)
class DisaggregatedResult:
    """A prefill pool and a decode pool: latency percentiles (ms), throughput, and the KV hand-off."""

    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    output_tokens_per_s: float
    requests_per_s: float
    kv_transfer_ms: float  # mean per request
    link: str  # nvlink | network
    gpus: int
    result: DisaggResult = field(repr=False)
    model: str = ""
    engine: str = ""
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    qps: float = 0.0
    input_len: float = 0.0
    output_len: float = 0.0
    prefill: DisaggPool | None = None
    decode: DisaggPool | None = None
    extrapolated: str | None = None

    @property
    def overload(self) -> str | None:
        """Why the latencies describe no steady state, when a pool's replica does not keep up with its share of
        --qps (requests go round-robin over the replicas); else None."""
        if self.prefill is None or self.decode is None:
            return None
        for name, sim, pool in (("a prefill replica", self.result.prefill, self.prefill),
                                ("a decode replica", self.result.decode, self.decode)):
            if not sim.keeps_up():
                return overload_note(self.qps / pool.replicas, sim.completion_rate, len(sim.e2e), name,
                                     sustained=sim.requests_per_s)
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `planner serve ... --prefill-replicas P --decode-replicas D --format json`; `memory` per
        pool (per GPU) as the one-deployment JSON has it."""
        d: dict[str, Any] = {
            "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms,
            "throughput": {"output_tokens_per_s": self.output_tokens_per_s, "requests_per_s": self.requests_per_s},
            "kv_transfer_ms": self.kv_transfer_ms, "link": self.link, "gpus": self.gpus,
        }
        if self.prefill is not None and self.decode is not None:
            d["memory"] = {"prefill": self.prefill.memory_dict(), "decode": self.decode.memory_dict()}
        return d


def _pool(sm: ServingModel, eng: EngineConfig, replicas: int, input_len: float, output_len: float) -> DisaggPool:
    pool = sm.kv_pool_tokens(eng)
    cap = max_concurrency(sm, eng, input_len, output_len, pool)
    per_request = float(sm.kv_tokens(input_len + output_len)) * sm.kv_bytes_per_token
    return DisaggPool(gpu=sm.gpu.name, tp=sm.tp, replicas=replicas, weights_bytes=math.ceil(sm.weight_bytes),
                      kv_cache_bytes=math.ceil(cap * per_request),
                      workspace_bytes=workspace_bytes(sm, eng), max_concurrency=cap, kv_pool_tokens=pool)


def evaluate_disaggregated(
    model: str | ModelSpec,
    qps: float,
    input_len: int | LengthDist = 1024,
    output_len: int | LengthDist = 256,
    *,
    prefill_gpu: str | GpuSku = "h100-sxm",
    prefill_tp: int = 1,
    prefill_replicas: int = 1,
    decode_gpu: str | GpuSku | None = None,
    decode_tp: int = 1,
    decode_replicas: int = 1,
    weight_dtype: str = "bf16",
    kv_dtype: str | None = None,
    engine: str | EngineOverride = "vllm",
    requests: int | None = None,
    seed: int = 0,
    efficiency: ServingEfficiency | None = None,
) -> DisaggregatedResult:
    """Evaluate disaggregated prefill and decode pools at a Poisson `qps` (DistServe/Splitwise). The KV cache of
    each prompt moves from its prefill replica to a decode replica over NVLink when both pools fit one scale-up
    domain of the same SKU, else over the prefill GPUs' NICs, each GPU sending its own shard.

    Returns:
        DisaggregatedResult; `to_dict()` has `ttft_ms.{p50,p90,p99}`, `tpot_ms.{p50,p90,p99}`,
        `throughput.{output_tokens_per_s,requests_per_s}` (both pools together), `kv_transfer_ms` (mean),
        `link` (nvlink or network), `gpus` and `memory.{prefill,decode}` (`bytes.{weights,kv_cache,total}` per
        GPU, `fits`), as `planner serve --prefill-replicas P --decode-replicas D --format json` prints it.

    Raises:
        InputError: unknown model, GPU, engine or dtype; a pool whose layout the model refuses; answers of one
        token (no decode phase).
        InfeasibleError: a pool whose weights leave no KV memory, a request longer than a pool's KV cache holds
        (exit 1).
    """
    m, pg = _resolve(model, prefill_gpu)
    dg = _resolve(m, decode_gpu, "--decode-gpu")[1] if decode_gpu is not None else pg
    _check_dtype("weight_dtype", weight_dtype)
    kv_dtype = kv_dtype or "bf16"
    _check_dtype("kv_dtype", kv_dtype)
    if not (isinstance(qps, (int, float)) and math.isfinite(qps) and qps > 0):
        raise InputError(f"qps must be a positive finite number, got {qps!r}")
    if min(prefill_tp, prefill_replicas, decode_tp, decode_replicas) < 1:
        raise InputError("disaggregated pools need at least one prefill and one decode replica of tp >= 1")
    if prefill_tp * prefill_replicas + decode_tp * decode_replicas > MAX_GPUS:
        raise InputError(f"--prefill-replicas/--decode-replicas: the pools together exceed {MAX_GPUS:,} GPUs")
    try:
        psm = replica_model(m, pg, tp=prefill_tp, weight_dtype=weight_dtype, kv_dtype=kv_dtype, seff=efficiency)
    except InputError as e:
        raise InputError(f"prefill pool (--gpu {pg.name} --tp {prefill_tp}): {e}") from None
    try:
        dsm = replica_model(m, dg, tp=decode_tp, weight_dtype=weight_dtype, kv_dtype=kv_dtype, seff=efficiency)
    except InputError as e:
        raise InputError(f"decode pool (--decode-gpu {dg.name} --decode-tp {decode_tp}): {e}") from None
    pe, de = resolve_engine(engine, pg), resolve_engine(engine, dg)
    for name, sm, eng in (("prefill pool (--gpu/--tp)", psm, pe), ("decode pool (--decode-gpu/--decode-tp)", dsm, de)):
        if sm.kv_pool_tokens(eng) <= 0:
            raise InfeasibleError(f"{name} does not fit: weights {sm.weight_bytes / 2**30:,.1f} GiB per GPU leave no "
                                  f"KV memory on {sm.gpu.name} ({sm.gpu.hbm_bytes / 2**30:,.1f} GiB) at tp={sm.tp}")
    gpus = prefill_tp * prefill_replicas + decode_tp * decode_replicas
    same_domain = pg.name == dg.name and gpus <= pg.node_size
    if same_domain:
        link, gbs = "nvlink", pg.intra_node_gbs * pg.efficiency.intra_node
    else:
        link, gbs = "network", pg.network_gbps / 8 * pg.efficiency.inter_node
    rng = _rng(seed)
    requests = requests or DISAGG_REQUESTS
    lin, lout = LengthDist.of(input_len), LengthDist.of(output_len)
    ins, outs = lin.sample(requests, rng), lout.sample(requests, rng)
    if not (outs > 1).any():
        raise InputError("--output-len: disaggregated pools need answers of 2 tokens or more (the decode pool "
                         "makes tokens 2..O)")
    # the pools' simulations pair every request's prefill with its decode: each must hold the longest request
    for name, sm, eng, need in (("prefill pool", psm, pe, int(ins.max())), ("decode pool", dsm, de,
                                                                            int((ins + outs).max()))):
        if (held := float(sm.kv_tokens(need))) > (pool := sm.kv_pool_tokens(eng)):
            windowed = f" (its sliding-window layers' share counted for the window: {held:,.0f})" \
                if held != need else ""
            raise InfeasibleError(f"{name}: a request of {need:,} tokens{windowed} exceeds the {pool:,}-token KV "
                                  f"cache of one replica ({sm.gpu.name}, tp={sm.tp})")
    arrivals = poisson_arrivals(qps, requests, rng)
    r = simulate_disaggregated(psm, pe, prefill_replicas, dsm, de, decode_replicas, ins, outs, arrivals, gbs)
    return DisaggregatedResult(
        ttft_ms=r.percentiles("ttft"), tpot_ms=r.percentiles("tpot"), output_tokens_per_s=r.output_tokens_per_s,
        requests_per_s=r.decode.requests_per_s * decode_replicas, kv_transfer_ms=float(np.mean(r.kv_transfer_s)) * 1e3,
        link=link, gpus=gpus, result=r, model=m.name, engine=pe.name, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
        qps=float(qps), input_len=lin.expected(), output_len=lout.expected(),
        prefill=_pool(psm, pe, prefill_replicas, lin.expected(), 1.0),
        decode=_pool(dsm, de, decode_replicas, lin.expected(), lout.expected()), extrapolated=serving_note(m),
    )


__all__ = [
    "PERCENTILES",
    "DeploymentResult",
    "DisaggPool",
    "DisaggregatedResult",
    "evaluate_deployment",
    "evaluate_disaggregated",
    "max_concurrency",
]
