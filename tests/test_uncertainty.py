"""Step-time intervals from the calibration residuals: regimes, fallback for thin or unseen regimes, and the
best measured MFU per GPU generation (planner.model.uncertainty)."""

from __future__ import annotations

import pytest

from planner.catalog import get_gpu
from planner.model.uncertainty import (
    Regime,
    best_published_mfu,
    build_calibration,
    error_band,
    gpu_generation,
    load_calibration,
    parallel_regime,
    regime_of,
    step_time_interval,
)
from planner.schema import Layout

# Eight runs in one regime, three in another of the same generation and framework, one elsewhere.
RECORDS = [
    *({"id": f"a{i}", "generation": "hopper", "framework": "megatron-core", "parallel": "pipeline",
       "error": e, "mfu": 0.40 + e / 10} for i, e in enumerate([-0.1, -0.05, 0.0, 0.02, 0.04, 0.06, 0.08, 0.2])),
    *({"id": f"b{i}", "generation": "hopper", "framework": "megatron-core", "parallel": "tensor",
       "error": e, "mfu": 0.45} for i, e in enumerate([0.1, 0.12, 0.14])),
    {"id": "c0", "generation": "ampere", "framework": "fsdp", "parallel": "sharded", "error": -0.3, "mfu": 0.6},
]
CAL = build_calibration(RECORDS)


def test_regimes_are_read_from_the_plan() -> None:
    assert gpu_generation(get_gpu("h100-sxm")) == "hopper"
    assert gpu_generation("gb200") == "blackwell" and gpu_generation("a100-40gb") == "ampere"
    assert gpu_generation("tpu-v9") == "other"
    assert parallel_regime(Layout(dp=8, zero=3, global_batch=8)) == "sharded"
    assert parallel_regime(Layout(tp=8, pp=4, global_batch=8)) == "pipeline"
    assert parallel_regime(Layout(tp=8, global_batch=8)) == "tensor"
    assert parallel_regime(Layout(dp=8, global_batch=8)) == "data"
    assert parallel_regime(Layout(tp=2, pp=4, dp=8, ep=8, global_batch=64)) == "expert"  # EP before PP or ZeRO
    assert regime_of(Layout(tp=8, global_batch=8), "h100", "torchtitan") == Regime("hopper", "torchtitan", "tensor")


def test_a_populated_regime_uses_its_own_percentiles() -> None:
    """Eight residuals: at the k/(n+1) plotting position the 10th and 90th percentiles lie at ranks 0.9 and 8.1,
    so the band is the sample's range, which a ninth run falls inside 7 times in 9 on average (interpolating between
    the sample's own points would put them at ranks 1.7 and 7.3, a narrower band a new run leaves more often)."""
    band = error_band(Regime("hopper", "megatron-core", "pipeline"), CAL)
    assert band.level == "regime" and band.runs == 8
    assert (band.low, band.high) == pytest.approx((-0.1, 0.2))
    many = build_calibration([{**RECORDS[0], "id": f"m{i}", "error": i / 100} for i in range(99)])
    wide = many["bands"]["regime"]["hopper/megatron-core/pipeline"]
    assert (wide["p10"], wide["p90"]) == pytest.approx((0.09, 0.89))  # the 10th and 90th smallest of 99


def test_thin_and_unseen_regimes_fall_back_and_widen() -> None:
    thin = error_band(Regime("hopper", "megatron-core", "tensor"), CAL)  # 3 runs: generation × framework
    assert thin.level == "generation+framework" and thin.runs == 11
    own = CAL["bands"]["generation+framework"]["hopper/megatron-core"]
    assert thin.high - thin.median == pytest.approx(1.5 * (own["p90"] - own["median"]))
    unseen = error_band(Regime("blackwell", "torchtitan", "sharded"), CAL)
    assert unseen.level == "pooled"
    pooled = CAL["bands"]["pooled"]["all"]
    assert unseen.high - unseen.low > pooled["p90"] - pooled["p10"]  # widened, never narrower


def test_interval_scales_the_predicted_step() -> None:
    lay = Layout(tp=8, pp=4, global_batch=64)
    band = error_band(regime_of(lay, "h100"), CAL)
    lo, hi = step_time_interval(10.0, lay, "h100", calibration=CAL)
    assert (lo, hi) == pytest.approx((10 * (1 + band.low), 10 * (1 + band.high)))


def test_best_mfu_per_generation() -> None:
    assert best_published_mfu("h100", CAL) == pytest.approx(0.45)
    assert best_published_mfu("a100-80gb", CAL) == pytest.approx(0.6)
    assert best_published_mfu("b200", CAL) is None  # no calibration run: anything there extrapolates


def test_shipped_calibration_has_every_level() -> None:
    cal = load_calibration()
    assert cal["bands"]["pooled"]["all"]["runs"] >= 40
    assert {"ampere", "hopper"} <= set(cal["best_mfu"])
    assert all(0 < b["mfu"] < 1 for b in cal["best_mfu"].values())
    lo, hi = step_time_interval(1.0, Layout(tp=8, pp=8, global_batch=64), "h100")
    assert lo < 1.0 < hi


def test_expert_parallel_plans_are_flagged_extrapolated() -> None:
    """No calibration run dispatches MoE tokens over expert-parallel ranks: a plan that does carries the
    `extrapolated` warning saying so; the same GPU and regime without EP does not get that reason."""
    from planner.model.uncertainty import extrapolation
    from planner.schema import Layout

    moe = extrapolation(Layout(tp=8, dp=8, ep=8, sequence_parallel=True, global_batch=64), "h100-sxm")
    dense = extrapolation(Layout(tp=8, dp=8, sequence_parallel=True, global_batch=64), "h100-sxm")
    assert any("expert parallelism 8" in r for r in moe)
    assert not any("expert parallelism" in r for r in dense)


def test_a_mixture_of_experts_model_is_flagged_even_without_expert_parallelism() -> None:
    """No calibration run trains an MoE model: its router, permutation and grouped GEMMs are extrapolated at any EP
    degree, and a plan says so once (with the all-to-all when EP > 1); an estimate of Mixtral carries it."""
    from planner import EstimateRequest, estimate
    from planner.model.uncertainty import extrapolation, load_calibration
    from planner.schema import Layout

    assert not any(c.get("moe") for c in load_calibration()["coverage"].values())
    replicated = extrapolation(Layout(tp=8, dp=8, sequence_parallel=True, global_batch=64), "h100-sxm", moe=True)
    dispatched = extrapolation(Layout(tp=8, dp=8, ep=8, sequence_parallel=True, global_batch=64), "h100-sxm",
                               moe=True)
    assert [r for r in replicated if "mixture-of-experts" in r] and not any("all-to-all" in r for r in replicated)
    assert sum("mixture-of-experts" in r for r in dispatched) == 1
    assert any("all-to-all" in r for r in dispatched) and not any("expert parallelism 8" in r for r in dispatched)
    ev = estimate(EstimateRequest(model="mixtral-8x7b", gpu="h100-sxm", gpus=64, layout={"tp": 8, "pp": 1}))
    assert any("mixture-of-experts model" in w for w in ev.warnings)


def test_context_parallel_and_long_sequences_beyond_calibration_are_flagged() -> None:
    """The calibration runs on Hopper split sequences over at most CP 2 and run at most 8K tokens: a plan with a
    wider ring or a longer sequence carries the `extrapolated` warning naming each; one inside them does not."""
    from planner.model.uncertainty import extrapolation, load_calibration
    from planner.schema import Layout

    cov = load_calibration()["coverage"]["hopper"]
    inside = Layout(tp=8, cp=cov["cp"], dp=4, sequence_parallel=True, global_batch=64)
    wide = Layout(tp=8, cp=2 * cov["cp"], dp=2, sequence_parallel=True, global_batch=64)
    assert not any("context parallelism" in r or "sequence length" in r
                   for r in extrapolation(inside, "h100-sxm", seq=cov["seq"]))
    reasons = extrapolation(wide, "h100-sxm", seq=16 * cov["seq"])
    assert any(f"context parallelism {2 * cov['cp']}" in r for r in reasons)
    assert any(f"sequence length {16 * cov['seq']:,}" in r for r in reasons)


def test_context_parallelism_through_an_uncalibrated_exchange_is_flagged() -> None:
    """The Hopper calibration runs split sequences over Transformer Engine's ring only: a CP 2 plan through
    PyTorch's all-gather exchange (torchtitan) is `extrapolated`, saying which exchange was measured; the same
    layout through the ring is not, and an estimate of a torchtitan CP plan carries the reason."""
    from planner import EstimateRequest, estimate
    from planner.model.uncertainty import extrapolation, load_calibration
    from planner.schema import Layout

    cov = load_calibration()["coverage"]["hopper"]
    assert cov["cp_exchanges"] == ["ring"] and cov["cp"] >= 2
    lay = Layout(tp=8, cp=2, dp=4, sequence_parallel=True, global_batch=64)
    assert not any("K/V exchange" in r for r in extrapolation(lay, "h100-sxm", cp_exchange="ring"))
    gathered = extrapolation(lay, "h100-sxm", cp_exchange="allgather")
    assert any("allgather K/V exchange" in r and "measured: ring" in r for r in gathered)
    ev = estimate(EstimateRequest(model="llama-3.1-8b", gpu="h100-sxm", gpus=8, seq=8192,
                                  layout={"dp": 4, "cp": 2, "zero": 3, "recompute": "full"},
                                  implementation={"framework": "torchtitan"}))
    assert any("allgather K/V exchange" in w for w in ev.warnings)


def test_sliding_windows_and_sinks_are_flagged_extrapolated() -> None:
    """No calibration run's model has a sliding window or attention sinks: a plan for one says its attention is
    extrapolated (gpt-oss both, Mistral 7B v0.1 the window); Llama does not get that reason."""
    from planner import EstimateRequest, estimate
    from planner.model.uncertainty import extrapolation, load_calibration
    from planner.schema import Layout

    assert not any(c.get("attention") for c in load_calibration()["coverage"].values())
    lay = Layout(tp=8, dp=8, sequence_parallel=True, global_batch=64)
    both = extrapolation(lay, "h100-sxm", attention=["sliding window", "attention sinks"])
    assert [r for r in both if r.startswith("sliding window and attention sinks: no calibration run")]
    assert not any("sliding window" in r for r in extrapolation(lay, "h100-sxm"))
    oss = estimate(EstimateRequest(model="gpt-oss-20b", gpu="h100-sxm", gpus=8, layout={"ep": 8}, seq=4096))
    assert any(w.startswith("sliding window and attention sinks") for w in oss.warnings)
    mistral = estimate(EstimateRequest(model="mistral-7b", gpu="h100-sxm", gpus=8, seq=8192))
    assert any(w.startswith("sliding window:") for w in mistral.warnings)
    llama = estimate(EstimateRequest(model="llama-3.1-8b", gpu="h100-sxm", gpus=8, seq=8192))
    assert not any("sliding window" in w for w in llama.warnings)


def test_expert_parallel_plans_fall_back_from_the_shipped_calibration() -> None:
    """No calibration run routes experts, so an EP plan's band comes from a coarser grouping, widened, never
    the narrower band of the dense pipeline runs of its generation and framework."""
    from planner.model.uncertainty import load_calibration

    cal = load_calibration()
    expert = error_band(Regime("hopper", "megatron-core", "expert"), cal)
    dense = error_band(Regime("hopper", "megatron-core", "pipeline"), cal)
    assert expert.level != "regime" and expert.high - expert.low > dense.high - dense.low



def test_a_generation_without_calibration_runs_still_names_what_no_run_covers() -> None:
    """No calibration run used a Blackwell GPU: an estimate there says so, and still names what no run on any GPU
    measured (a mixture-of-experts model, its all-to-all, sinks and windows), each once; a dense Llama there gets
    only the generation's reason."""
    from planner import EstimateRequest, estimate
    from planner.model.uncertainty import load_calibration

    assert "blackwell" not in load_calibration()["coverage"]
    oss = estimate(EstimateRequest(model="gpt-oss-120b", gpu="gb200", gpus=64, layout={"ep": 64}, seq=4096))
    assert oss.warnings[0].startswith("no calibration run on blackwell GPUs")
    assert sum("mixture-of-experts model: no calibration run on any GPU" in w for w in oss.warnings) == 1
    sinks = "sliding window and attention sinks: no calibration run on any GPU"
    assert sum(w.startswith(sinks) for w in oss.warnings) == 1
    llama = estimate(EstimateRequest(model="llama-3.1-8b", gpu="b200", gpus=8, seq=8192))
    generation = [w for w in llama.warnings if "calibration run" in w]
    assert len(generation) == 1 and generation[0].startswith(
        "no calibration run on blackwell GPUs: the step time is extrapolated from other generations; on ")
    assert "published dense runs on blackwell GPUs held out for validation" in generation[0]
