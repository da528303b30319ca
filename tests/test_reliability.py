"""Goodput under failures: the closed form against a discrete-event simulation, published figures, and inputs.

The simulation is written from the mechanism, not from the formula: a job walks a timeline of
(compute τ, save δ) segments; Poisson failures roll it back to the last durable checkpoint (a synchronous
save is durable when it ends, an asynchronous one a background write w later); every failure costs a
restart R, itself cut short by further failures. Many independent jobs advance one event at a time as
numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from planner.catalog import get_model
from planner.errors import InputError
from planner.model import reliability as rm
from planner.model.perf import SECONDS_PER_DAY
from planner.scenario import Scenario
from planner.schema import Layout, Reliability

HOUR = 3600.0


def simulate(mtbf, interval, blocking, exposure, restart, segments, jobs, rng):
    """Mean wall-clock of `jobs` simulated runs of `segments` checkpoint intervals for each configuration
    (equal-length parameter arrays). Returns (mean, standard error) per configuration."""
    cols = [np.repeat(np.asarray(v, dtype=np.float64), jobs) for v in (mtbf, interval, blocking, exposure, restart,
                                                                        segments)]
    mtbf, tau, delta, w, r, segments = cols
    a = tau + delta + np.maximum(0.0, w - tau)  # a save waits for the previous background write
    end = segments * a + w  # the last checkpoint is durable
    n = len(a)
    out = np.empty(n)
    # state of the jobs still running: index, wall-clock, timeline position, checkpoint resumed from, restarting
    i, t, x, resume, restarting = np.arange(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, bool)
    while len(i):
        f = rng.exponential(mtbf[i])
        aa, ww, rr = a[i], w[i], r[i]
        left = end[i] - x
        finish = ~restarting & (f >= left)
        fail = ~restarting & ~finish
        back = restarting & (f >= rr)  # a restart that no failure interrupts
        t += np.where(finish, left, np.where(back, rr, f))
        pos = x + f
        durable = np.maximum(resume, np.floor((pos - ww) / aa))  # checkpoint k is durable at k·a + w
        resume = np.where(fail, durable, resume)
        x = np.where(fail, durable * aa, x)
        restarting = (restarting & ~back) | fail
        out[i[finish]] = t[finish]
        keep = ~finish
        i, t, x, resume, restarting = i[keep], t[keep], x[keep], resume[keep], restarting[keep]
    out = out.reshape(-1, jobs)
    return out.mean(axis=1), out.std(axis=1, ddof=1) / math.sqrt(jobs)


def start_edge(mtbf, exposure, restart):
    """The simulated job also has to reach its first checkpoint's durability (w) once from a fresh start."""
    lam = 1 / np.asarray(mtbf)
    return -np.expm1(-lam * exposure) * np.exp(lam * (restart + exposure)) / lam


# -------------------------------------------------------------------------------------------------
# (a) closed form against the simulation
# -------------------------------------------------------------------------------------------------


def test_closed_form_matches_discrete_event_simulation():
    rng = np.random.default_rng(13)
    grid = []
    restart = 600.0
    for mtbf in (1 * HOUR, 4 * HOUR):  # failure rates
        for tau_over_m in (0.05, 0.3, 1.0):  # short, near-optimal and far too long intervals
            # save costs: free, synchronous, asynchronous with a write shorter and longer than the interval
            for delta_over_m, w_over_tau in ((0.0, 0.0), (0.02, 0.0), (0.002, 0.5), (0.01, 1.5)):
                grid.append((mtbf, tau_over_m * mtbf, delta_over_m * mtbf, w_over_tau * tau_over_m * mtbf, restart))
    mtbf, tau, delta, w, r = (np.array(c) for c in zip(*grid, strict=True))
    segments = np.clip(np.round(40 * mtbf / tau), 40, 400)  # about 40 MTBFs of work: tens of failures per job
    mean, se = simulate(mtbf, tau, delta, w, r, segments, jobs=2000, rng=rng)
    closed = segments * tau * rm.failure_stretch(tau, delta, w, r, mtbf) + start_edge(mtbf, w, r)
    err = mean / closed - 1
    assert np.all(se / mean < 0.005)  # the simulation resolves 2 %
    assert np.max(np.abs(err)) < 0.02, list(zip(grid, err, strict=True))


def test_daly_interval_is_the_optimum_of_the_closed_form():
    mtbf = 3 * HOUR
    for delta in (1.0, 30.0, 300.0, 1800.0):
        taus = np.linspace(1.0, 4 * mtbf, 400_001)
        best = taus[np.argmin(rm.failure_stretch(taus, delta, 0.0, 600.0, mtbf))]
        best_cost = rm.failure_stretch(best, delta, 0.0, 600.0, mtbf)
        daly = rm.daly_interval(delta, mtbf)
        assert abs(daly / best - 1) < 0.01
        assert rm.failure_stretch(daly, delta, 0.0, 600.0, mtbf) / best_cost - 1 < 1e-5
        assert rm.young_interval(delta, mtbf) == pytest.approx(math.sqrt(2 * delta * mtbf))
    assert rm.daly_interval(3 * mtbf, mtbf) == mtbf  # a save longer than 2M: checkpoint every MTBF


# -------------------------------------------------------------------------------------------------
# (b) published figures
# -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama3_405b():
    m = get_model("llama-3.1-405b")
    layout = Layout(tp=8, pp=16, dp=128, global_batch=2048)  # Llama 3 §3.3.2: 16,384 H100
    return m, layout


def test_llama3_interruptions_and_goodput(llama3_405b):
    m, layout = llama3_405b
    # 419 unexpected interruptions in 54 days on 16,384 H100 (arXiv 2407.21783, Table 5)
    assert rm.expected_interruptions(16_384, 54) == pytest.approx(419, abs=1)
    nbytes = rm.checkpoint_bytes(m, layout)
    assert nbytes == pytest.approx(14 * 405.85e9, rel=0.01)  # bf16 weights + fp32 master + Adam moments
    # its checkpoint figures: Tectonic's 2 TB/s sustained (§3.3.1) for 5.7 TB, about 350 MB per GPU
    rel = Reliability.model_validate({"checkpoint": {"write": {"aggregate_gb_per_s": 2000}}})
    ideal_days = 50.0
    r = rm.expected_time(ideal_days * SECONDS_PER_DAY, 16_384, nbytes, rel)
    assert r.goodput > 0.90  # "effective training time above 90 %"
    assert r.expected_interruptions == pytest.approx(419 * r.days / 54, rel=0.01)
    assert r.planned_interruptions == pytest.approx(47 * r.days / 54, rel=0.01)
    assert r.mtbf_hours == pytest.approx(54 * 24 / 419, rel=1e-6)
    assert sum(r.lost_days.values()) == pytest.approx(r.days - r.days_ideal, rel=1e-9)
    assert r.days_range[0] < r.days < r.days_range[1]  # Meta's fleets: 2.34 and 6.50 per 1,000 node-days
    assert all(v >= 0 for v in r.lost_days.values())


def _meta_study(interval_minutes, gpus, restart_minutes):
    """Kokolis et al. 2024 (arXiv 2410.21680, §IV) E[ETTR] scenarios: RSC-1's 6.50 failures per 1,000
    node-days, non-blocking checkpoints, restart overhead u0 = 5 minutes."""
    rel = Reliability.model_validate({
        "failures_per_1000_node_days": 6.5, "planned_per_1000_node_days": 0,
        "restart": {"total_minutes": restart_minutes},
        "checkpoint": {"save": "async", "interval_minutes": interval_minutes},
    })
    return rm.expected_time(30 * SECONDS_PER_DAY, gpus, 10**9, rel)


def test_meta_reliability_study_scenarios():
    # projected MTTF: 1.8 h at 16,384 GPUs, 0.23 h at 131,072
    rsc1 = Reliability(failures_per_1000_node_days=6.5)
    assert rm.mtbf_seconds(16_384, rsc1) / HOUR == pytest.approx(1.8, abs=0.01)
    assert rm.mtbf_seconds(131_072, rsc1) / HOUR == pytest.approx(0.23, abs=0.01)
    # the whole of RSC-1 (16k GPUs) as one job: E[ETTR] 0.70 with 60-minute checkpoints, 0.93 with 5-minute ones
    assert _meta_study(60, 16_384, 5).goodput == pytest.approx(0.70, abs=0.03)
    assert _meta_study(5, 16_384, 5).goodput == pytest.approx(0.93, abs=0.03)
    # half of RSC-1 (8k GPUs): 0.9 with 30-minute checkpoints and a 1-minute queue after each failure
    assert _meta_study(30, 8_000, 5 + 1).goodput == pytest.approx(0.90, abs=0.03)


def test_gpt3_estimate_keeps_its_ideal_days_and_adds_expected_ones():
    m = get_model("gpt3-175b")
    layout = Layout(tp=8, pp=16, dp=8, recompute="full", global_batch=1536)
    ideal = 34 * SECONDS_PER_DAY
    r = rm.expected_time(ideal, 1024, rm.checkpoint_bytes(m, layout), Reliability(), step_seconds=25.0)
    assert r.days_ideal == pytest.approx(34)
    assert 1.0 < r.days / r.days_ideal < 1.05
    assert r.checkpoint_interval_minutes * 60 % 25.0 == pytest.approx(0, abs=1e-6)  # whole steps
    j = r.as_json()
    assert set(j["time"]) == {"days_ideal", "days", "goodput"}
    assert {"expected_interruptions", "checkpoint_interval_minutes", "checkpoint_bytes"} <= set(j["reliability"])
    none = rm.expected_time(ideal, 1024, r.checkpoint_bytes, "none")
    assert (none.days, none.goodput, none.expected_interruptions) == (34, 1.0, 0.0)


# -------------------------------------------------------------------------------------------------
# The cost of scale, and what the solver gets
# -------------------------------------------------------------------------------------------------


def test_larger_clusters_pay_for_their_failures():
    m = get_model("gpt3-175b")
    nbytes = rm.checkpoint_bytes(m, Layout(global_batch=1536))
    k = rm.stretch_factor(np.array([1200, 2304]), nbytes, Reliability())
    assert 1 < k[0] < k[1]  # same ideal GPU-hours, so the smaller cluster costs less
    curve = rm.goodput_curve(1e6, [64, 256, 1024, 4096, 16_384, 65_536], nbytes, Reliability())
    assert np.all(np.diff(curve["goodput"]) < 0)
    assert np.all(np.diff(curve["gpu_hours"]) > 0)
    assert np.allclose(curve["days"] * curve["goodput"], curve["days_ideal"])
    assert np.all(rm.goodput_curve(1e6, [64, 4096], nbytes, "none")["goodput"] == 1)


def test_expected_seconds_is_integer_monotone_and_bounded():
    ideal = np.array([0.0, 0.4, 1.0, 3600.0, 3600.5, 86_400.0 * 30])
    s = rm.expected_seconds(ideal, 2048, 2.45e12, Reliability())
    assert s.dtype == np.int64
    assert np.all(np.diff(s) >= 0) and np.all(s >= np.ceil(ideal))
    assert np.all(rm.expected_seconds(ideal, 2048, 2.45e12, "none") == np.ceil(ideal))
    # a job whose every checkpoint interval is cut by failures cannot finish: clipped, still an integer
    hopeless = Reliability(failures_per_1000_node_days=1000, restart={"total_minutes": 600})
    assert rm.expected_seconds(86_400.0, 10**6, 1e15, hopeless) == rm.MAX_SECONDS


def test_async_saves_block_only_for_the_copy_and_are_exposed_for_the_write():
    rel = Reliability.model_validate({"checkpoint": {"save": "async"}})
    c = rm.save_costs(8e12, 1024, rel)
    assert c.blocking == pytest.approx(8e12 / 1024 / 25e9)
    assert c.exposure == pytest.approx(8e12 / (128 * 1e9))
    sync = rm.save_costs(8e12, 1024, Reliability())
    assert (sync.blocking, sync.exposure) == (pytest.approx(c.exposure), 0)
    tau = rm.checkpoint_interval(c, rm.mtbf_seconds(1024, rel), rel)
    assert tau >= c.exposure  # the next save never starts before the previous write ends
    assert rm.checkpoint_bytes_per_param("adamw", "torchtitan") == 12  # fp32 params are the master copy
    assert rm.checkpoint_bytes_per_param("adamw", "megatron-core") == 14
    # a narrowed optimizer state is saved as kept: Apex's bf16 state 2 + 4, Megatron's remainder 2 + 2 + 8
    assert rm.checkpoint_bytes_per_param("adamw", "megatron-core", "none", "bf16") == 6
    assert rm.checkpoint_bytes_per_param("adamw", "megatron-core", "remainder") == 12
    m = get_model("llama-2-7b")
    narrowed = Layout(global_batch=8, master_weights="none", moment_dtype="bf16")
    assert rm.checkpoint_bytes(m, narrowed) * 14 == pytest.approx(rm.checkpoint_bytes(m, Layout(global_batch=8)) * 6,
                                                                  abs=14)


# -------------------------------------------------------------------------------------------------
# (c) hostile values
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    {"failures_per_1000_node_days": -1}, {"failures_per_1000_node_days": 0},
    {"failures_per_1000_node_days": math.inf}, {"failures_per_1000_node_days": math.nan},
    {"restart": {"detection_minutes": -1}}, {"restart": {"total_minutes": math.inf}},
    {"checkpoint": {"interval_minutes": 0}}, {"checkpoint": {"interval_minutes": math.nan}},
    {"checkpoint": {"interval_minutes": "often"}}, {"checkpoint": {"write": {"per_node_gb_per_s": 0}}},
    {"checkpoint": {"read": {"aggregate_gb_per_s": -5}}}, {"checkpoint": {"host_copy_gb_per_s": math.inf}},
    {"checkpoint": {"save": "sometimes"}}, {"maintenance": 1.0}, {"maintenance": -0.1},
    {"maintenance": {"hours": 24, "every_days": 1}}, {"maintenance": {"hours": 0, "every_days": 7}},
    {"planned_per_1000_node_days": math.nan}, {"gpus_per_node": 0}, {"failures_per_1000_node_days": 2, "mtbf": 3},
])
def test_reliability_rejects_hostile_values(data):
    with pytest.raises(ValidationError):
        Reliability.model_validate(data)


def test_scenario_reliability_key(tmp_path):
    base = {"model": "gpt3-175b", "job": {"tokens": 3e11, "seq_len": 2048, "global_batch": 1536}}
    assert Scenario.model_validate(base).reliability == Reliability()  # failures unless the user says none
    assert Scenario.model_validate({**base, "reliability": "none"}).reliability == "none"
    path = tmp_path / "s.yaml"
    path.write_text("model: gpt3-175b\njob: {tokens: 3e11, seq_len: 2048, global_batch: 1536}\n"
                    "reliability: {failures_per_1000_node_days: .inf}\n")
    from planner.scenario import load_scenario

    with pytest.raises(InputError, match=r"s\.yaml: reliability\.failures_per_1000_node_days: .*finite"):
        load_scenario(path)


@pytest.mark.parametrize(("args", "match"), [
    ((-1.0, 1024, 1e12), "ideal_seconds must be non-negative"),
    ((math.nan, 1024, 1e12), "ideal_seconds must be finite"),
    ((1.0, 0, 1e12), "gpus must be positive"),
    ((1.0, math.inf, 1e12), "gpus must be finite"),
    ((1.0, 1024, 0), "checkpoint_bytes must be positive"),
    ((1.0, 1024, math.nan), "checkpoint_bytes must be finite"),
])
def test_model_functions_reject_hostile_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        rm.expected_time(*args, Reliability())
    with pytest.raises(ValueError, match=match):
        rm.expected_seconds(*args, Reliability())


def test_a_job_that_cannot_finish_has_no_days_and_no_goodput():
    rel = Reliability(planned_per_1000_node_days=1000, restart={"total_minutes": 1440}, maintenance=0.5)
    r = rm.expected_time(86_400.0, 64, 1e12, rel)  # planned stops take longer than the time between them
    assert (r.days, r.goodput) == (math.inf, 0.0)
    assert r.as_json()["time"]["days"] is None
    with pytest.raises(ValueError, match="step_seconds must be positive"):
        rm.expected_time(86_400.0, 64, 1e12, Reliability(), step_seconds=0)
