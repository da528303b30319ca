"""The serving simulator against closed forms: M/D/1 queueing, Little's law, the analytic decode step; length
distributions; preemption and admission; determinism; disaggregated pools."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from planner.catalog import get_gpu, get_model
from planner.model.serving import ServingEfficiency, serving_model
from planner.workloads.serving.engines import EngineOverride, resolve_engine
from planner.workloads.serving.simulation import (
    LengthDist,
    analytic_bounds,
    md1_wait,
    poisson_arrivals,
    simulate,
    simulate_disaggregated,
)

NO_HOST = ServingEfficiency(host_overhead_ms=0.0, host_us_per_request=0.0)


@pytest.fixture(scope="module")
def llama8b():
    gpu = get_gpu("h100")
    sm = serving_model(get_model("llama-3.1-8b"), gpu, weight_dtype="fp8", kv_dtype="fp8", seff=NO_HOST)
    return sm, gpu


def test_prefill_queue_matches_md1(llama8b) -> None:
    """One request at a time, one output token: the replica is a single deterministic server, so the mean wait
    before the prefill starts is Pollaczek-Khinchine's ρs/(2(1−ρ)) (DistServe §3.1)."""
    sm, gpu = llama8b
    eng = resolve_engine(EngineOverride(name="trtllm", max_num_seqs=1), gpu)
    n, prompt = 20_000, 2048
    alone = simulate(sm, eng, np.array([prompt]), np.array([1]), arrivals=np.zeros(1), warmup=0.0)
    s = float(alone.ttft[0])
    for rho in (0.5, 0.8):
        rate = rho / s
        arr = poisson_arrivals(rate, n, np.random.default_rng(7))
        sim = simulate(sm, eng, np.full(n, prompt), np.ones(n, dtype=np.int64), arrivals=arr)
        wait = float(np.mean(sim.ttft)) - s
        assert wait == pytest.approx(md1_wait(rate, s), rel=0.06)
    assert md1_wait(1.0, 1.0) == math.inf


def test_closed_loop_obeys_littles_law(llama8b) -> None:
    sm, gpu = llama8b
    eng = resolve_engine("vllm", gpu)
    c = 32
    sim = simulate(sm, eng, np.full(600, 512), np.full(600, 256), concurrency=c)
    # clients are busy with a request except for the short gap between one response and the next request
    assert sim.requests_per_s * float(np.mean(sim.e2e)) == pytest.approx(c, rel=0.05)


def test_single_client_decode_is_the_analytic_step(llama8b) -> None:
    sm, gpu = llama8b
    eng = resolve_engine("trtllm", gpu)
    sim = simulate(sm, eng, np.full(20, 1000), np.full(20, 200), concurrency=1)
    b = analytic_bounds(sm, eng, 1000, 200)
    assert float(np.mean(sim.tpot)) == pytest.approx(b.tpot_min_s, rel=0.02)
    assert float(np.mean(sim.ttft)) == pytest.approx(b.ttft_min_s, rel=0.05)
    full = simulate(sm, eng, np.full(2000, 1000), np.full(2000, 200), arrivals=np.zeros(2000), warmup=0.0)
    assert 0.6 * b.max_requests_per_s < full.requests_per_s < 1.2 * b.max_requests_per_s


def test_preemption_recomputes_and_finishes_every_request(llama8b) -> None:
    sm, gpu = llama8b
    eng = resolve_engine("vllm", gpu)  # reserves no future output: decodes outgrow a small pool
    n = 200
    sim = simulate(sm, eng, np.full(n, 1000), np.full(n, 1000), arrivals=np.zeros(n), kv_tokens=40_000, warmup=0.0)
    assert sim.preemptions > 0 and sim.unserved == 0 and len(sim.ttft) == n
    trt = resolve_engine("trtllm", gpu)  # GUARANTEED_NO_EVICT never preempts
    sim = simulate(sm, trt, np.full(n, 1000), np.full(n, 1000), arrivals=np.zeros(n), kv_tokens=40_000, warmup=0.0)
    assert sim.preemptions == 0 and sim.mean_batch <= 40_000 / 2000 + 1
    big = simulate(sm, trt, np.array([500, 50_000]), np.array([10, 10]), arrivals=np.zeros(2), kv_tokens=40_000)
    assert big.unserved == 1


def test_prefix_cache_and_engines_change_latency_as_they_should(llama8b) -> None:
    sm, gpu = llama8b
    rng = np.random.default_rng(1)
    n = 400
    arr = poisson_arrivals(8.0, n, rng)
    ins, outs = np.full(n, 4000), np.full(n, 200)
    eng = resolve_engine("vllm", gpu)
    cold = simulate(sm, eng, ins, outs, arrivals=arr)
    warm = simulate(sm, eng, ins, outs, arrivals=arr, prefix_hit=0.75)
    assert np.median(warm.ttft) < 0.5 * np.median(cold.ttft)
    # prefill-only iterations (SGLang's default) start prompts sooner and stall the running decodes
    mixed = simulate(sm, resolve_engine(EngineOverride(name="sglang", mixed_batches=True), gpu), ins, outs,
                     arrivals=arr)
    alone = simulate(sm, resolve_engine("sglang", gpu), ins, outs, arrivals=arr)
    assert np.mean(alone.ttft) < np.mean(mixed.ttft)
    assert np.mean(alone.tpot) > np.mean(mixed.tpot)


def test_simulation_is_deterministic(llama8b) -> None:
    sm, gpu = llama8b
    eng = resolve_engine("sglang", gpu)
    ins = LengthDist(mean=1000, p99=4000).sample(300, np.random.default_rng(3))
    outs = LengthDist(mean=200, p99=800).sample(300, np.random.default_rng(4))
    a = simulate(sm, eng, ins, outs, concurrency=16, seed=5)
    b = simulate(sm, eng, ins, outs, concurrency=16, seed=5)
    assert np.array_equal(a.ttft, b.ttft) and a.output_tokens_per_s == b.output_tokens_per_s


def test_lognormal_lengths_hit_mean_and_p99() -> None:
    d = LengthDist(mean=2000, p99=6000)
    x = d.sample(200_000, np.random.default_rng(0))
    assert float(np.mean(x)) == pytest.approx(2000, rel=0.02)
    assert float(np.percentile(x, 99)) == pytest.approx(6000, rel=0.05)
    assert d.quantile(0.99) == pytest.approx(6000, rel=1e-6)
    h = LengthDist(histogram=[(100, 3.0), (1000, 1.0)])
    assert h.expected() == pytest.approx(325.0)
    assert set(np.unique(h.sample(1000, np.random.default_rng(0)))) == {100, 1000}
    assert LengthDist.of(7).sample(3, np.random.default_rng(0)).tolist() == [7, 7, 7]
    for bad in ({"mean": 100, "p99": 50}, {"mean": 100, "p99": 5000}, {"fixed": 5, "mean": 5}, {"p99": 9},
                {"histogram": [(10, 0.0)]}):
        with pytest.raises(ValidationError):
            LengthDist(**bad)


def test_disaggregated_pools_decode_without_prefill_interference(llama8b) -> None:
    sm, gpu = llama8b
    eng = resolve_engine("vllm", gpu)
    n = 400
    arr = poisson_arrivals(10.0, n, np.random.default_rng(2))
    ins, outs = np.full(n, 3000), np.full(n, 300)
    colocated = simulate(sm, eng, ins, outs, arrivals=arr)
    split = simulate_disaggregated(sm, eng, 1, sm, eng, 1, ins, outs, arr, link_gbs=50.0)
    assert np.percentile(split.tpot, 99) < np.percentile(colocated.tpot, 99)
    assert float(np.mean(split.kv_transfer_s)) == pytest.approx(3000 * sm.kv_bytes_per_token / 50e9)
    assert np.all(split.ttft >= split.kv_transfer_s)
    slow = simulate_disaggregated(sm, eng, 1, sm, eng, 1, ins, outs, arr, link_gbs=0.5)
    assert np.median(slow.ttft) > np.median(split.ttft)


def test_static_batch_runs_prefill_then_decode(llama8b) -> None:
    sm, gpu = llama8b
    bs = 64
    eng = replace(resolve_engine(EngineOverride(name="trtllm", max_num_seqs=bs, token_budget=bs * 128,
                                                mixed_batches=False), gpu))
    sim = simulate(sm, eng, np.full(bs, 128), np.full(bs, 64), arrivals=np.zeros(bs), warmup=0.0)
    assert sim.iterations == 1 + 63  # one prefill of the whole batch, then 63 decode steps
    assert np.ptp(sim.ttft) == 0


def test_sliding_window_layers_keep_only_the_window() -> None:
    """gpt-oss windows half its layers to 128 keys: the engines' window managers free those layers' blocks
    behind the window, so a long request holds about half the KV of the same model without windows, more requests
    fit the pool, decode reads less and a prompt's windowed layers compute fewer (query, key) pairs."""
    from planner.model.memory import kv_cache_bytes_per_token
    from planner.workloads.serving.evaluation import max_concurrency

    gpu = get_gpu("h100")
    m = get_model("gpt-oss-20b")
    full = m.model_copy(update={"sliding_window": None, "window_layers": None})
    sm = serving_model(m, gpu, seff=NO_HOST)
    twin = serving_model(full, gpu, seff=NO_HOST)
    assert sm.kv_bytes_per_token == twin.kv_bytes_per_token and sm.window_share == 0.5
    for c in (64, 128, 8192, 100_000):  # the memory model's per-token average, checked against transformers' cache
        assert float(sm.kv_tokens(c)) * sm.kv_bytes_per_token == pytest.approx(
            kv_cache_bytes_per_token(m, 1, 2, c) * c)
        assert twin.kv_tokens(c) == c
    assert float(sm.kv_tokens(8192)) == 4096 + 64
    eng = resolve_engine("vllm", gpu)
    assert max_concurrency(sm, eng, 8192, 1024) >= 1.9 * max_concurrency(twin, eng, 8192, 1024)
    assert sm.decode_step_seconds(64, 32_768, eng) < 0.8 * twin.decode_step_seconds(64, 32_768, eng)
    # pairs of a windowed layer: Σ min(p + 1, w) over the prompt's positions, in its continuous form
    w, n = 128, 10_000
    exact = sum(min(p + 1, w) for p in range(n))
    assert float(sm.prefill_pairs(n)) == pytest.approx(0.5 * n * n / 2 + 0.5 * exact, rel=1e-3)
    assert float(sm.prefill_pairs(n, 6_000)) == pytest.approx(
        0.5 * (n * n - 6_000 ** 2) / 2 + 0.5 * sum(min(p + 1, w) for p in range(6_000, n)), rel=1e-3)
    # the simulator charges the same footprint: a pool that holds 12 windowed requests holds 6 without windows
    pool = int(12 * sm.kv_tokens(9216))
    ins, outs = np.full(120, 8192), np.full(120, 1024)
    win = simulate(sm, eng, ins, outs, concurrency=12, kv_tokens=pool)
    base = simulate(twin, eng, ins, outs, concurrency=12, kv_tokens=pool)
    assert win.unserved == base.unserved == 0
    assert win.mean_batch > 1.5 * base.mean_batch and win.preemptions <= base.preemptions
    assert win.output_tokens_per_s > 1.3 * base.output_tokens_per_s
    # a request longer than the pool in tokens fits when its windowed layers hold only the window
    one = simulate(sm, eng, np.array([int(1.6 * pool)]), np.array([8]), arrivals=np.zeros(1), kv_tokens=pool)
    assert one.unserved == 0
    assert simulate(twin, eng, np.array([int(1.6 * pool)]), np.array([8]), arrivals=np.zeros(1),
                    kv_tokens=pool).unserved == 1


@settings(max_examples=60, deadline=None)
@given(window=st.integers(1, 1 << 20), share=st.floats(0.0, 1.0), start=st.integers(0, 1 << 20),
       new=st.integers(1, 1 << 20))
def test_window_pairs_are_the_keys_each_query_sees(window: int, share: float, start: int, new: int) -> None:
    """The closed form is ∫ min(p, w) dp over the queries' positions: equal to the midpoint sum of min(p + ½, w)
    (exact on each linear piece), never above full causal attention, equal to it when the window covers the
    prompt, and a mix of layers lies between the two."""
    from planner.model.serving import window_pairs

    end = start + new
    full = window_pairs(end, start, float(window), 0.0)
    pairs = window_pairs(end, start, float(window), 1.0)
    midpoint = float(np.minimum(np.arange(start, end) + 0.5, window).sum())
    assert pairs == pytest.approx(midpoint, rel=1e-9, abs=0.125)
    assert pairs <= full * (1 + 1e-12)
    if window >= end:
        assert pairs == pytest.approx(full)
    mixed = window_pairs(end, start, float(window), share)
    assert min(pairs, full) * (1 - 1e-9) <= mixed <= max(pairs, full) * (1 + 1e-9)
