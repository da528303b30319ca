"""The serving public API behind `planner serve`: the JSON of one deployment, refusals with reasons, and the
model's accuracy on the serving reference's measured throughputs (one parameter set) and on latency at a
given concurrency."""

from __future__ import annotations

import json

import pytest

from planner.errors import InputError
from planner.workloads.serving.evaluation import evaluate_deployment, evaluate_disaggregated
from planner.workloads.serving.simulation import LengthDist
from planner.workloads.serving.validation import load_rows, median_error, run


def test_evaluate_json_has_exactly_the_documented_fields() -> None:
    r = evaluate_deployment("llama-3.1-70b", "h100", tp=2, concurrency=8, input_len=2000, output_len=300,
                            weight_dtype="fp8", kv_dtype="fp8", engine="vllm")
    d = r.to_dict()
    json.dumps(d)
    assert set(d) == {"ttft_ms", "tpot_ms", "throughput", "memory", "max_concurrency"}
    assert set(d["ttft_ms"]) == set(d["tpot_ms"]) == {"p50", "p90", "p99"}
    assert set(d["throughput"]) == {"output_tokens_per_s", "requests_per_s"}
    assert set(d["memory"]) == {"bytes", "fits"} and set(d["memory"]["bytes"]) == {"weights", "kv_cache", "total"}
    assert d["memory"]["fits"] and d["max_concurrency"] > 8
    assert d["ttft_ms"]["p50"] <= d["ttft_ms"]["p90"] <= d["ttft_ms"]["p99"]
    assert d["memory"]["bytes"]["total"] > d["memory"]["bytes"]["weights"] + d["memory"]["bytes"]["kv_cache"]
    # throughput and latency are consistent for a closed loop: clients / (TTFT + (O-1)·TPOT) requests per second
    lat = (d["ttft_ms"]["p50"] + 299 * d["tpot_ms"]["p50"]) / 1e3
    assert d["throughput"]["requests_per_s"] == pytest.approx(8 / lat, rel=0.15)


def test_deployment_that_does_not_fit_says_so() -> None:
    d = evaluate_deployment("llama-3.1-405b", "h100", tp=1, concurrency=1).to_dict()
    assert d["memory"]["fits"] is False and d["ttft_ms"] is None and d["max_concurrency"] == 0


def test_qps_mode_and_length_distributions() -> None:
    r = evaluate_deployment("llama-3.1-8b", "a100-80gb", qps=4.0, concurrency=None, input_len=LengthDist(mean=800,
                            p99=3000), output_len=LengthDist(mean=200, p99=600), engine="sglang", requests=300)
    assert r.requests_per_s == pytest.approx(4.0, rel=0.2)
    assert r.to_dict() == evaluate_deployment(
        "llama-3.1-8b", "a100-80gb", qps=4.0, concurrency=None, input_len=LengthDist(mean=800, p99=3000),
        output_len=LengthDist(mean=200, p99=600), engine="sglang", requests=300).to_dict()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight_dtype": "fp3"}, "--weight-dtype"),
        ({"kv_dtype": "e5m2"}, "--kv-dtype"),
        ({"concurrency": 0}, "--concurrency"),
        ({"qps": 2.0}, "not both"),
        ({"concurrency": None, "qps": float("inf")}, "--qps"),
        ({"gpu": "h1000"}, "unknown GPU"),
        ({"engine": "tgi"}, "unknown engine"),
        ({"tp": 0}, "tp must be a positive integer"),
        ({"weight_dtype": "fp4"}, "fp4 weights need fp4 tensor cores"),
    ],
)
def test_bad_input_is_an_input_error(kwargs: dict, match: str) -> None:
    args = {"model": "llama-3.1-8b", "gpu": "h100", "concurrency": 1} | kwargs
    with pytest.raises(InputError, match=match):
        evaluate_deployment(**args)


def test_disaggregated_evaluation() -> None:
    r = evaluate_disaggregated("llama-3.1-8b", 6.0, 3000, 200, prefill_gpu="h100", decode_gpu="h100",
                               weight_dtype="fp8", kv_dtype="fp8", requests=300)
    d = r.to_dict()
    assert d["link"] == "nvlink" and d["gpus"] == 2 and d["kv_transfer_ms"] > 0
    far = evaluate_disaggregated("llama-3.1-8b", 6.0, 3000, 200, prefill_gpu="h100", decode_gpu="h200",
                                 weight_dtype="fp8", kv_dtype="fp8", requests=300)
    assert far.link == "network" and far.kv_transfer_ms > r.kv_transfer_ms


@pytest.fixture(scope="module")
def calibration():
    rows = tuple(r for r in load_rows()[1] if r.calibration)
    return run(rows, max_requests=800)


def test_reproduces_the_reference_throughputs_with_one_parameter_set(calibration) -> None:
    """serving.md's measured points (TensorRT-LLM perf overview) with the default ServingEfficiency."""
    assert len(calibration) == 18
    assert median_error(calibration, "output_tokens_per_s") <= 0.08
    assert all(abs(r.errors()["output_tokens_per_s"]) <= 0.20 for r in calibration)


def test_latency_at_concurrency_within_target() -> None:
    """NVIDIA NIM Llama-3.3-70B FP8 TP2 H100: TTFT, ITL and throughput at concurrency 1-100 (not calibrated on)."""
    rows = tuple(r for r in load_rows()[1] if r.source == "nim-llama-3.3-70b")
    res = run(rows)
    assert median_error(res, "ttft_ms") <= 0.20
    assert median_error(res, "tpot_ms") <= 0.20
    assert median_error(res, "output_tokens_per_s") <= 0.20


def test_a_seed_numpy_cannot_take_is_bad_input() -> None:
    """A negative seed (or one past 2^63) is an InputError from the API, not numpy's ValueError."""
    import pytest

    from planner import evaluate_deployment
    from planner.errors import InputError

    with pytest.raises(InputError, match="seed must be an integer"):
        evaluate_deployment("llama-3-8b", "h100-sxm", concurrency=1, seed=-1)


def test_the_quoted_error_bands_are_the_validation_run() -> None:
    """planner/data/serving_bands.yaml (what `planner serve` quotes for MoE deployments) is what re-running every
    published serving row gives today: a change to the serving physics must rewrite it
    (`benchmarks/serve.py --write`)."""
    from planner.workloads.serving.uncertainty import load_bands
    from planner.workloads.serving.validation import bands

    fresh = bands(run())
    stored = load_bands()
    assert set(fresh) == set(stored) == {"dense", "moe"}
    for regime, b in fresh.items():
        assert b["rows"] == stored[regime]["rows"] and b["models"] == stored[regime]["models"]
        for q in ("p10", "median", "p90"):
            assert b[q] == pytest.approx(stored[regime][q], abs=2e-3), (regime, q)
    assert stored["moe"]["p10"] > 0  # every band quoted as an upper bound is one

