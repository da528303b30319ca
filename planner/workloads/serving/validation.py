"""Re-create published serving benchmarks with the serving model and compare (planner/data/serving_validation.yaml).

Each row is run the way its benchmark ran: `max-load` queues every request at once and divides the output tokens
by the makespan (trtllm-bench throughput), `static` prefills one batch together and decodes it to the end
(TensorRT-LLM's gptSessionBenchmark), `clients` runs closed-loop clients and averages TTFT and TPOT over
requests (genai-perf / AIPerf), `first-token` times one request's prefill alone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from planner.errors import InputError
from planner.model.serving import ServingEfficiency
from planner.model.uncertainty import residual_percentile
from planner.schema import ModelSpec
from planner.workloads.serving.engines import EngineOverride, resolve_engine, trtllm_bench_engine
from planner.workloads.serving.evaluation import replica_model
from planner.workloads.serving.simulation import simulate

DATA = Path(__file__).parents[2] / "data" / "serving_validation.yaml"
METRICS = ("output_tokens_per_s", "ttft_ms", "tpot_ms")
# Closed-loop runs: requests per client (the first wave is warm-up) and a floor.
CLIENT_REQUESTS = 6
MIN_CLIENT_REQUESTS = 40


@dataclass(frozen=True)
class Row:
    source: str
    model: str | ModelSpec
    gpu: str
    tp: int
    mode: str
    input: int
    output: int
    measured: dict[str, float]
    pp: int = 1
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    engine: Any = "trtllm"
    concurrency: int | None = None
    batch: int | None = None
    requests: int | None = None
    per_gpu: bool = False
    calibration: bool = False
    # trtllm-bench's own bytes per parameter and KV element where its table prices the checkpoint otherwise
    # (engines.trtllm_bench_engine): {weights: B, kv: B}
    bench_bytes: dict[str, float] | None = None
    label: str = field(default="", compare=False)


@functools.lru_cache
def load_rows(path: str | None = None) -> tuple[dict[str, Any], tuple[Row, ...]]:
    """(sources, rows) of the validation file."""
    p = Path(path) if path else DATA
    data = yaml.safe_load(p.read_text())
    models = {k: ModelSpec.model_validate(v) for k, v in (data.get("models") or {}).items()}
    rows = []
    for i, raw in enumerate(data["rows"]):
        raw = dict(raw)
        if raw["source"] not in data["sources"]:
            raise InputError(f"{p}: rows[{i}]: unknown source {raw['source']!r}")
        if raw["model"] in models:
            raw["model"] = models[raw["model"]]
        raw.setdefault("output", 1)
        label = (f"{raw['model'] if isinstance(raw['model'], str) else raw['model'].name} {raw['gpu']} "
                 f"tp{raw.get('tp', 1)} {raw['weight_dtype']} {raw['mode']} {raw['input']}/{raw['output']}")
        if raw.get("concurrency"):
            label += f" c={raw['concurrency']}"
        if raw.get("batch"):
            label += f" bs={raw['batch']}"
        rows.append(Row(label=label, **raw))
    return data["sources"], tuple(rows)


def predict(row: Row, seff: ServingEfficiency | None = None, max_requests: int | None = None) -> dict[str, float]:
    """The model's prediction of every metric the row measured."""
    from planner.catalog import get_gpu, get_model

    m = row.model if isinstance(row.model, ModelSpec) else get_model(row.model)
    gpu = get_gpu(row.gpu)
    sm = replica_model(m, gpu, tp=row.tp, pp=row.pp, weight_dtype=row.weight_dtype, kv_dtype=row.kv_dtype, seff=seff)
    n_gpu = row.tp * row.pp
    if row.mode == "max-load":
        if row.engine == "trtllm-bench":
            b = row.bench_bytes or {}
            over = trtllm_bench_engine(sm, row.input, row.output, weight_bytes=b.get("weights"), kv_bytes=b.get("kv"))
        else:
            over = _override(row.engine)
        eng = resolve_engine(over, gpu)
        n = min(row.requests or 1000, max_requests or 10**9)
        sim = simulate(sm, eng, np.full(n, row.input), np.full(n, row.output), arrivals=np.zeros(n), warmup=0.0)
        out = {"output_tokens_per_s": sim.output_tokens_per_s}
    elif row.mode == "static":
        assert row.batch is not None
        bs = row.batch
        # one batch, prefilled in one pass then decoded together; TensorRT engines launch few kernels
        eng = resolve_engine(EngineOverride(
            name="trtllm", max_num_seqs=bs, token_budget=bs * row.input, chunked_prefill=False, mixed_batches=False,
            memory_fraction=0.95, cuda_graph_max_batch=bs,
        ), gpu)
        sim = simulate(sm, eng, np.full(bs, row.input), np.full(bs, row.output), arrivals=np.zeros(bs),
                       kv_tokens=max(sm.kv_pool_tokens(eng), bs * (row.input + row.output + eng.block_size)),
                       warmup=0.0)
        out = {"output_tokens_per_s": sim.output_tokens_per_s}
    elif row.mode == "clients":
        assert row.concurrency is not None
        eng = resolve_engine(_override(row.engine), gpu)
        c = row.concurrency
        n = max(MIN_CLIENT_REQUESTS, CLIENT_REQUESTS * c)
        sim = simulate(sm, eng, np.full(n, row.input), np.full(n, row.output), concurrency=c)
        out = {"output_tokens_per_s": sim.output_tokens_per_s, "ttft_ms": float(np.mean(sim.ttft)) * 1e3,
               "tpot_ms": float(np.mean(sim.tpot)) * 1e3}
    elif row.mode == "first-token":
        eng = resolve_engine(EngineOverride(name="trtllm", chunked_prefill=False,
                                            token_budget=max(row.input, 8192)), gpu)
        sim = simulate(sm, eng, np.array([row.input]), np.array([1]), arrivals=np.zeros(1), warmup=0.0)
        out = {"ttft_ms": float(sim.ttft[0]) * 1e3}
    else:
        raise InputError(f"unknown validation mode {row.mode!r}")
    if row.per_gpu and "output_tokens_per_s" in out:
        out["output_tokens_per_s"] /= n_gpu
    return {k: v for k, v in out.items() if k in row.measured}


def _override(engine: Any) -> EngineOverride:
    if isinstance(engine, str):
        return EngineOverride(name=engine)
    return EngineOverride.model_validate(engine)


@dataclass(frozen=True)
class RowResult:
    row: Row
    predicted: dict[str, float]

    def errors(self) -> dict[str, float]:
        """Signed relative error per metric: predicted / measured − 1."""
        return {k: self.predicted[k] / v - 1.0 for k, v in self.row.measured.items() if k in self.predicted}


def run(
    rows: tuple[Row, ...] | None = None, seff: ServingEfficiency | None = None, max_requests: int | None = None
) -> list[RowResult]:
    rows = rows if rows is not None else load_rows()[1]
    return [RowResult(r, predict(r, seff, max_requests)) for r in rows]


def summary(results: list[RowResult]) -> dict[str, dict[str, float]]:
    """Median and max absolute error per (group, metric); groups: calibration, validation, and each source."""
    groups: dict[str, dict[str, list[float]]] = {}
    for res in results:
        keys = ["calibration" if res.row.calibration else "validation"]
        if not res.row.calibration:
            keys.append(res.row.source)
        for key in keys:
            for metric, err in res.errors().items():
                groups.setdefault(key, {}).setdefault(metric, []).append(abs(err))
    return {
        g: {f"{m}_median": float(np.median(v)) for m, v in ms.items()}
        | {f"{m}_max": float(np.max(v)) for m, v in ms.items()}
        | {f"{m}_n": float(len(v)) for m, v in ms.items()}
        for g, ms in groups.items()
    }


def median_error(results: list[RowResult], metric: str, calibration: bool | None = None) -> float:
    errs = [abs(r.errors()[metric]) for r in results
            if metric in r.errors() and (calibration is None or r.row.calibration == calibration)]
    return float(np.median(errs)) if errs else math.nan


def regime_of(m: ModelSpec) -> str:
    """The serving regimes the bands are kept for: dense models, and mixture-of-experts ones (their routed GEMMs,
    expert weight reads and kernels are what the calibration rows, all dense, do not exercise)."""
    return "moe" if m.moe is not None else "dense"


def bands(results: list[RowResult]) -> dict[str, dict[str, Any]]:
    """Per regime, the signed throughput error (predicted / measured − 1) over every published row that measured
    throughput: its 10th, 50th and 90th percentile, the row count and the models (planner/data/serving_bands.yaml)."""
    from planner.catalog import get_model

    by: dict[str, list[tuple[float, str]]] = {}
    for res in results:
        err = res.errors().get("output_tokens_per_s")
        if err is None:
            continue
        m = res.row.model if isinstance(res.row.model, ModelSpec) else get_model(res.row.model)
        by.setdefault(regime_of(m), []).append((err, m.name))
    out: dict[str, dict[str, Any]] = {}
    for regime, rows in sorted(by.items()):
        errs = np.array([e for e, _ in rows])
        lo, hi = residual_percentile(errs, (10, 90))  # the training bands' estimator (planner.model.uncertainty)
        out[regime] = {"rows": len(rows), "p10": round(float(lo), 4),
                       "median": round(float(np.median(errs)), 4), "p90": round(float(hi), 4),
                       "models": sorted({n for _, n in rows})}
    return out

