"""Every plan says how sure it is and counts failures: ideal and expected days, goodput, the model's error
range, reliability figures and `extrapolated` warnings in estimate, solve, compare and review; deadlines
and budgets held to the expected time with failures at `constraints.confidence`; one monotone transform
from ideal step seconds to planned seconds that the solver, the exhaustive reference and the re-check share.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_solver import keys_of, small_scenarios
from typer.testing import CliRunner

from planner import EstimateRequest, estimate, solve
from planner.cli import app
from planner.model.reliability import stretch_factor
from planner.model.uncertainty import best_published_mfu, error_quantile, memory_band, regime_of
from planner.report.compare import display_rows
from planner.report.dicts import estimate_dict, plan_dict
from planner.scenario import Scenario, with_basis
from planner.schema import GIB, Reliability
from planner.search.exhaustive import enumerate_plans
from planner.search.plans import check_solution
from planner.search.problem import resolve_problem
from planner.workflows.compare import CompareRequest, compare, run_comparison
from planner.workflows.review import ReviewRequest, review
from planner.workloads.expected import Basis, planned_seconds, planned_units

# Issue 13's check: the blog figure of ~34 days for GPT-3 on 1,024 A100-40GB at 45 % HFU
ISSUE_13 = ["estimate", "--model", "gpt3-175b", "--gpu", "a100-40gb", "--gpus", "1024", "--recompute", "full",
            "--tokens", "300e9", "--hfu", "0.45"]


def gpt3(**kw: Any) -> dict[str, Any]:
    ev = estimate(EstimateRequest(model="gpt3-175b", gpu="a100-40gb", gpus=1024, tokens=300e9, hfu=0.45,
                                  layout={"recompute": "full"}, **kw))
    return estimate_dict(ev)


@pytest.fixture(scope="module")
def gpt3_json() -> dict[str, Any]:
    return gpt3()


def assert_consistent(d: dict[str, Any]) -> None:
    """The fields of issues 9 and 13, present and consistent with one another."""
    t, r = d["time"], d["reliability"]
    for k in ("step_seconds", "step_seconds_range", "days", "days_ideal", "days_range", "goodput"):
        assert k in t, k
    for k in ("expected_interruptions", "checkpoint_interval_minutes", "checkpoint_bytes"):
        assert k in r, k
    assert {"fits", "capacity_bytes"} <= set(d["memory"]) and "total" in d["memory"]["bytes"]
    assert t["days_ideal"] <= t["days"] + 1e-12
    assert 0 < t["goodput"] <= 1 and t["goodput"] == pytest.approx(t["days_ideal"] / t["days"])
    lo, hi = t["step_seconds_range"]
    assert lo <= t["step_seconds"] <= hi
    lo, hi = t["days_range"]
    assert lo <= t["days"] <= hi
    assert t["days_planned"] >= t["days"] * (1 - 1e-12) or t["confidence"] is not None
    assert r["checkpoint_bytes"] > 0
    if d["cost"]["usd"] is not None:  # the cost follows the expected GPU-hours
        assert d["cost"]["usd"] == pytest.approx(t["gpu_hours"] * d["cost"]["usd_per_gpu_hour"])
    lo, hi = d["memory"]["bytes_range"]
    assert lo <= d["memory"]["bytes"]["total"] <= hi
    # energy follows the GPU-hours the cost does (expected), beside the ideal run's
    assert t["energy_mwh"] / t["energy_mwh_ideal"] == pytest.approx(t["gpu_hours"] / t["gpu_hours_ideal"])
    for w in d["warnings"]:
        assert w["code"] in ("extrapolated", "memory_margin") and w["reasons"]
        assert w["message"].startswith(w["code"].replace("_", " "))


# --------------------------------------------------------------------------------------------
# estimate
# --------------------------------------------------------------------------------------------


def test_estimate_fields_are_present_and_consistent(gpt3_json: dict[str, Any]) -> None:
    assert_consistent(gpt3_json)
    t, r = gpt3_json["time"], gpt3_json["reliability"]
    assert 33 < t["days_ideal"] < 36  # issue 13: still about 34 days ideal ...
    assert t["days"] > t["days_ideal"] and r["expected_interruptions"] > 1  # ... and failures on 1,024 GPUs
    assert r["checkpoint_interval_minutes"] > 0 and r["model"] == "failures"


def test_issue_13_table_shows_ideal_and_expected_days_side_by_side(gpt3_json: dict[str, Any]) -> None:
    out = CliRunner().invoke(app, ISSUE_13)
    assert out.exit_code == 0, out.output
    ideal, expected = gpt3_json["time"]["days_ideal"], gpt3_json["time"]["days"]
    assert f"{ideal:,.2f} | {expected:,.2f}" in out.output
    assert "ideal | expected with failures" in out.output and "goodput" in out.output
    assert re.search(r"step time range .*\d+\.\d{3} – \d+\.\d{3} s", out.output)


def test_reliability_none_is_the_ideal_time() -> None:
    d = gpt3(reliability="none")
    assert_consistent(d)
    t, r = d["time"], d["reliability"]
    assert t["days"] == t["days_ideal"] and t["goodput"] == 1.0 and r["model"] == "none"
    assert r["expected_interruptions"] == 0 and r["checkpoint_interval_minutes"] is None
    out = CliRunner().invoke(app, [*ISSUE_13, "--reliability", "none", "-f", "json"])
    assert out.exit_code == 0 and json.loads(out.output)["time"]["goodput"] == 1.0


def test_mfu_above_the_best_published_is_extrapolated() -> None:
    best = best_published_mfu("h100-sxm")
    assert best is not None
    ev = estimate(EstimateRequest(model="llama-2-7b", gpu="h100-sxm", gpus=8, mfu=min(0.95, best + 0.2)))
    d = estimate_dict(ev)
    assert ev.time.mfu > best
    assert [w["code"] for w in d["warnings"]][:1] == ["extrapolated"]
    assert any("above the best measured" in r for r in d["warnings"][0]["reasons"])
    out = CliRunner().invoke(app, ["estimate", "--model", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8",
                                   "--mfu", f"{min(0.95, best + 0.2)}"])
    assert out.exit_code == 0 and "extrapolated: MFU" in out.output


# --------------------------------------------------------------------------------------------
# the one transform
# --------------------------------------------------------------------------------------------


def b200_gpt3(**layout: Any) -> Any:
    return estimate(EstimateRequest(model="gpt3-175b", gpu="b200", gpus=128, tokens=300e9, global_batch=1536,
                                    layout={"tp": 4, "pp": 4, "sequence_parallel": True, **layout}))


def test_a_plan_that_fits_by_less_than_the_memory_models_error_says_so() -> None:
    """`memory.bytes_range` is the predicted peak over the measured peaks' error on the held-out runs
    (heldout_bands.yaml `memory`: measured / predicted − 1, 10th–90th percentile); a plan whose high end is above
    the capacity while its prediction fits carries `memory_margin` (the README's first plan: 177 of 179 GiB), one
    with room or one that does not fit at all (its verdict says so) does not. No fit changes."""
    b = memory_band()
    assert b is not None and b["runs"] >= 20 and b["p10"] < 0 < b["p90"]
    tight = b200_gpt3(vpp=3, micro_batch=4, recompute="none")
    roomy = b200_gpt3(vpp=3, micro_batch=1, recompute="full")
    short = b200_gpt3(sequence_parallel=False, micro_batch=4, recompute="none")
    for ev in (tight, roomy, short):
        d = estimate_dict(ev)
        total = d["memory"]["bytes"]["total"]
        assert d["memory"]["bytes_range"] == [round(total * (1 + b["p10"])), round(total * (1 + b["p90"]))]
        codes = [w["code"] for w in d["warnings"]]
        assert ("memory_margin" in codes) == (ev is tight), codes
    assert tight.fits and total_high(tight) > tight.capacity_bytes >= tight.memory.total
    assert roomy.fits and total_high(roomy) <= roomy.capacity_bytes
    assert not short.fits
    w = next(w for w in estimate_dict(tight)["warnings"] if w["code"] == "memory_margin")
    assert f"{total_high(tight) / GIB:,.1f} GiB" in w["message"] and f"on {b['runs']} published runs" in w["message"]
    # headroom the scenario plans with is margin: the range is the default overheads' peak over the measured error
    from planner.schema import Overheads
    from planner.workloads.training.evaluation import evaluate

    roomier = evaluate(tight.model, tight.layout, tight.gpu, seq=tight.seq, tokens=tight.tokens,
                       implementation=tight.implementation, overheads=Overheads(fragmentation=0.2))
    assert roomier.memory.total > tight.memory.total and roomier.default_peak == tight.memory.total
    assert roomier.memory_range[1] == max(roomier.memory.total, total_high(tight))
    # planned with that headroom, the README's question gets plans that fit with margin, at a cost
    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "scenarios" / "gpt3_30days.yaml").read_text("utf-8"))
    plain = solve(Scenario.model_validate(doc))
    roomy_plans = solve(Scenario.model_validate({**doc, "overheads": {"fragmentation": 0.2}}))
    assert all(p.evaluation.memory_margin for p in plain.plans)
    assert roomy_plans.plans and not any(p.evaluation.memory_margin for p in roomy_plans.plans)
    assert roomy_plans.plans[0].evaluation.cost_usd >= plain.plans[0].evaluation.cost_usd
    out = CliRunner().invoke(app, ["estimate", "--model", "gpt3-175b", "--gpu", "b200", "--gpus", "128", "--tp", "4",
                                   "--pp", "4", "--vpp", "3", "--sequence-parallel", "--micro-batch", "4",
                                   "--global-batch", "1536", "--recompute", "none", "--tokens", "300e9"],
                             env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "peak range (p10–p90 of the model's error)" in out.output and "memory margin:" in out.output


def total_high(ev: Any) -> float:
    return float(ev.memory_range[1])


def test_planned_seconds_is_monotone_and_the_integer_units_round_up() -> None:
    rng = np.random.default_rng(0)
    step = np.sort(rng.uniform(0.1, 30.0, 64))
    gpus = rng.choice([8, 64, 1024, 16384], 64)
    basis = Basis(Reliability(), 0.9)
    for factor in (1.0, 1.3):
        s = planned_seconds(step, 1024, 1e5, 2e12, basis, factor)
        assert (np.diff(s) >= 0).all()  # non-decreasing in the step
        assert (planned_seconds(step, 1024, 1e5, 2e12, basis, factor * 1.1) >= s).all()  # and in the factor
    s = planned_seconds(step, gpus, 1e5, 2e12, basis, 1.2)
    _, job_us, time_s, cents = planned_units(step, gpus, 2.0, 1e5, 2e12, basis, 1.2)
    assert (time_s >= s).all() and (job_us >= s * 1e6 * (1 - 1e-12)).all()
    assert (cents >= s * gpus * 2.0 / 36).all()  # ¢ at $2/GPU-h
    # the ideal basis at factor 1 is exactly step µs × steps, as before failures were counted
    _, job_us, _, _ = planned_units(step, gpus, 2.0, 1000, 2e12)
    assert (job_us == np.ceil(step * 1e6).astype(np.int64) * 1000).all()


def test_larger_clusters_pay_for_their_failure_rate() -> None:
    k = stretch_factor(np.array([64, 512, 4096, 32768]), 2e12, Reliability())
    assert (k >= 1).all() and (np.diff(k) > 0).all()
    assert (stretch_factor(np.array([64, 32768]), 2e12, "none") == 1).all()


# --------------------------------------------------------------------------------------------
# solve
# --------------------------------------------------------------------------------------------


def seven(**constraints: Any) -> Scenario:
    return Scenario.model_validate({
        "name": "seven", "model": "llama-2-7b", "job": {"tokens": 5e10, "seq_len": 4096, "global_batch": 64},
        "hardware": {"skus": ["h100-sxm", "a100-80gb"], "max_gpus": 64}, "objective": "cost",
        "layout": {"zero": 1, "vpp": 1, "sequence_parallel": False}, "constraints": constraints,
    })


def quantile_days(ev: Any, confidence: float) -> float:
    """Expected days with failures at the `confidence` quantile of the step-time error, from the model
    directly (not through the planner's transform)."""
    return float(ev.expected.days * (1 + error_quantile(regime_of(ev.layout, ev.gpu, ev.framework), confidence)))


@pytest.fixture(scope="module")
def point_and_09() -> tuple[Any, Any, float]:
    point = solve(seven(), top_k=3)
    deadline = point.plans[0].evaluation.expected.days * 0.9  # binding for the cheapest plan
    return solve(seven(deadline_days=deadline), top_k=3), solve(seven(deadline_days=deadline, confidence=0.9),
                                                                 top_k=3), deadline


def test_plans_carry_the_fields_and_the_deadline_includes_failures(point_and_09: tuple[Any, Any, float]) -> None:
    point, _, deadline = point_and_09
    assert point.plans
    for p in point.plans:
        d = plan_dict(p)
        assert_consistent(d)
        assert d["time"]["days"] <= deadline  # expected with failures, not only the ideal time
    best = point.solutions[0]
    assert best.days == pytest.approx(point.plans[0].evaluation.expected.days, rel=1e-4)


def test_confidence_09_never_picks_a_plan_that_misses_the_deadline_at_the_09_quantile(
        point_and_09: tuple[Any, Any, float]) -> None:
    point, sure, deadline = point_and_09
    assert sure.plans
    problem = resolve_problem(seven(deadline_days=deadline, confidence=0.9))
    for s in sure.solutions + sure.near_optimal:
        assert check_solution(problem, s) == []
        for p in s.plans:
            assert quantile_days(p.evaluation, 0.9) <= deadline * (1 + 1e-9)
            assert plan_dict(p)["time"]["confidence"] == 0.9
    # holding the deadline at the 0.9 quantile costs at least as much as at the point estimate
    assert sure.solutions[0].cost_cents >= point.solutions[0].cost_cents


def test_every_proposed_plan_above_the_best_published_mfu_is_extrapolated() -> None:
    sc = seven().model_copy(update={"efficiency": seven().efficiency.model_copy(update={"mfu": 0.75})})
    result = solve(sc, top_k=3, pareto=True)
    assert result.plans
    for s in result.solutions + result.near_optimal + result.pareto:
        for p in s.plans:
            best = best_published_mfu(p.evaluation.gpu)
            if best is None or p.evaluation.time.mfu > best:
                assert "extrapolated" in [w["code"] for w in plan_dict(p)["warnings"]]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios(), st.sampled_from([None, 0.5, 0.9]), st.sampled_from(["default", "none", "harsh"]))
def test_solver_equals_exhaustive_with_failures_and_confidence(data: dict[str, Any], confidence: float | None,
                                                               reliability: str) -> None:
    if reliability == "none":
        data["reliability"] = "none"
    elif reliability == "harsh":  # a failure-prone fleet: larger clusters pay visibly
        data["reliability"] = {"failures_per_1000_node_days": 50.0}
    if confidence is not None:
        data["constraints"]["confidence"] = confidence
    sc = Scenario.model_validate(data)
    result = solve(sc, top_k=2)
    ref = enumerate_plans(resolve_problem(sc))
    if ref.best is None:
        assert result.status == "infeasible"
        return
    assert keys_of(result, sc.objective) == ref.best
    problem = resolve_problem(sc)
    for s in result.solutions:
        assert check_solution(problem, s) == []


# --------------------------------------------------------------------------------------------
# compare and review
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison() -> Any:
    return run_comparison(CompareRequest(seven(deadline_days=20.0), kinds=("on-demand",)))


def test_compare_rows_show_expected_days_and_goodput(comparison: Any) -> None:
    ok = comparison.base[comparison.base["feasible"]]
    assert not ok.empty
    assert (ok["days_ideal"] <= ok["days"]).all() and ((ok["goodput"] > 0) & (ok["goodput"] <= 1)).all()
    assert ((ok["days_low"] <= ok["days"]) & (ok["days"] <= ok["days_high"])).all()
    assert (ok["days_planned"] <= 20.0).all()


def test_compare_rows_carry_the_peak_range_and_the_memory_margin(comparison: Any) -> None:
    ok = comparison.base[comparison.base["feasible"]]
    assert (ok["memory_high_gib"] >= ok["memory_gib"]).all()
    tight = ok["memory_high_gib"] > ok["capacity_gib"]
    assert (ok["memory_margin"].notna() == tight).all()
    shown = {r["layout"]: r["warnings"] for r in display_rows(comparison.base)}
    for _, r in ok.iterrows():
        assert ("memory_margin" in shown[r["layout"]]) == (r["memory_high_gib"] > r["capacity_gib"])


def test_compare_goodput_curve_and_plot(comparison: Any) -> None:
    from planner.report import figures

    curve = comparison.comparison.goodput(comparison.base)
    assert curve["chosen"].sum() == 1
    g = curve["goodput"].to_numpy()
    assert g[-1] < g[0]  # more GPUs, more failures (between, whole nodes and aggregate bandwidth ripple it)
    assert ((curve["goodput"] > 0) & (curve["goodput"] <= 1)).all()
    assert "goodput" in figures(comparison)
    pareto = comparison.comparison.pareto()
    assert not pareto.empty and (pareto["days"] > 0).all()


def test_compare_confidence_holds_the_deadline_at_the_quantile() -> None:
    df = compare(seven(deadline_days=20.0, confidence=0.9), kinds=("on-demand",))
    ok = df[df["feasible"]]
    assert not ok.empty and (ok["days_planned"] <= 20.0).all() and (ok["days_planned"] >= ok["days"]).all()


def test_review_reports_the_fields_and_plans_at_the_confidence() -> None:
    sc = Scenario.model_validate({
        "name": "r", "model": "llama-2-7b", "job": {"tokens": 2e10, "seq_len": 4096, "global_batch": 64},
        "hardware": {"skus": ["h100-sxm"]},
        "layout": {"sku": "h100-sxm", "gpus": 8, "tp": 2, "pp": 1, "micro_batch": 1},
    })
    rev = review(ReviewRequest(scenario=sc, confidence=0.9), better=False)
    d = rev.to_dict()
    assert_consistent(d)
    assert d["time"]["confidence"] == 0.9 and d["time"]["days_planned"] > d["time"]["days"]
    ideal = review(ReviewRequest(scenario=with_basis(sc, reliability="none")), better=False).to_dict()
    assert ideal["time"]["goodput"] == 1.0 and ideal["time"]["days"] == pytest.approx(d["time"]["days_ideal"])


def test_confidence_flag_out_of_range_is_exit_2(tmp_path: Any) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: llama-2-7b\nhardware: {skus: [h100-sxm], max_gpus: 8}\njob: {tokens: 1e9}\n")
    out = CliRunner().invoke(app, ["solve", str(path), "--confidence", "1.5"])
    assert out.exit_code == 2
