"""The serving search: CP-SAT's selection equals exhaustive enumeration, the shipped Mélange scenario's mix beats
the best single SKU, every pool is re-checked by simulation, scenario errors name the file and key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planner.errors import InfeasibleError, InputError
from planner.search.serving import (
    SCALE,
    SelectionProblem,
    select_cpsat,
    select_exhaustive,
    selection_problem,
    solve_serving,
)
from planner.workloads.serving.scenario import load_serving_scenario

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _random_problem(rng: np.random.Generator, mix: bool, inventory: bool) -> SelectionProblem:
    n_c, n_k, slices = 3, 2, 4
    skus = ("a", "b", "a")
    gpus = tuple(int(x) for x in rng.choice([1, 2, 4], size=n_c))
    cost = tuple(int(g * rng.integers(10_000, 40_000)) for g in gpus)
    load: list[tuple[int | None, ...]] = []
    for _ in range(n_c):
        row = tuple(None if rng.random() < 0.2 else int(rng.integers(SCALE // 10, 2 * SCALE)) for _ in range(n_k))
        load.append(row)
    for k in range(n_k):  # every class servable by someone
        if all(load[t][k] is None for t in range(n_c)):
            load[0] = tuple(SCALE // 2 if i == k else v for i, v in enumerate(load[0]))
    return SelectionProblem(
        cost=cost, gpus=gpus, sku=skus, rank=(2, 0, 1), load=tuple(load), slices=slices, max_replicas=12,
        inventory={"b": int(rng.integers(2, 8))} if inventory else {}, total_gpus=None, mix=mix,
    )


def test_any_scenario_seed_reaches_the_solver() -> None:
    """A scenario's seed may be any non-negative int64 (numpy's generators take it); CP-SAT's own random_seed is an
    int32, so the seed is folded into its range: the largest seed solves, to the same optimum."""
    from planner.limits import MAX_SEED

    p = _random_problem(np.random.default_rng(3), mix=True, inventory=False)
    small, large = select_cpsat(p, 0), select_cpsat(p, MAX_SEED)
    assert small is not None and large is not None
    assert (large.cost_units, large.gpus) == (small.cost_units, small.gpus)


@pytest.mark.parametrize("seed", range(12))
def test_cpsat_selection_equals_exhaustive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = _random_problem(rng, mix=bool(seed % 2), inventory=seed % 3 == 0)
    ref, got = select_exhaustive(p), select_cpsat(p)
    if ref is None:
        assert got is None
        return
    assert got is not None
    assert (got.cost_units, got.gpus) == (ref.cost_units, ref.gpus)
    # the CP-SAT answer is itself feasible under an independent check
    for t, reps in enumerate(got.replicas):
        units = sum(got.slices[t][k] * (p.load[t][k] or 0) for k in range(2))
        assert units <= reps * SCALE
    assert all(sum(got.slices[t][k] for t in range(3)) == p.slices for k in range(2))


@pytest.fixture(scope="module")
def mix_solution():
    return solve_serving(SCENARIOS / "serving" / "mix.yaml", pareto=[10.0, 30.0])


def test_mix_of_two_skus_beats_the_best_single_sku(mix_solution) -> None:
    plan, single = mix_solution.plan, mix_solution.best_single_sku
    assert single is not None
    assert len(plan.skus) == 2
    assert plan.usd_per_hour < single.usd_per_hour
    assert plan.status == "optimal" and plan.slo_met and single.slo_met
    d = mix_solution.to_dict()
    json.dumps(d)
    assert d["mix_saving"] > 0
    assert d["plan"]["usd_per_million_output_tokens"] > d["plan"]["usd_per_million_input_tokens"] > 0


def test_plan_on_the_scenarios_candidates_is_the_exhaustive_optimum(mix_solution) -> None:
    s = mix_solution.scenario
    cands = mix_solution.candidates
    # the exhaustive reference on the two best candidates per SKU (a small space), with the scenario's data
    best = sorted(cands, key=lambda c: -sum(c.rates) / c.usd_per_hour)
    small = [c for sku in ("a100-80gb", "h100-sxm") for c in [x for x in best if x.sku == sku][:2]]
    qps = [s.serving.traffic.qps * c.share for c in s.serving.traffic.resolved_classes()]
    coarse = s.model_copy(update={"serving": s.serving.model_copy(
        update={"search": s.serving.search.model_copy(update={"slices": 4})})})
    p = selection_problem(small, qps, coarse)
    assert select_cpsat(p).cost_units == select_exhaustive(p).cost_units


def test_every_pool_is_rechecked_and_has_headroom(mix_solution) -> None:
    for pool in mix_solution.plan.pools:
        assert pool.slo_met
        assert pool.headroom >= mix_solution.scenario.serving.search.headroom - 1e-9
        assert pool.ttft_ms["p99"] <= mix_solution.scenario.serving.slo.ttft_ms
        assert pool.tpot_ms["p99"] <= mix_solution.scenario.serving.slo.tpot_ms
    pareto = mix_solution.pareto
    assert [p.qps for p in pareto] == [10.0, 30.0]
    assert pareto[0].usd_per_hour <= pareto[1].usd_per_hour == pytest.approx(mix_solution.plan.usd_per_hour)


def test_shipped_scenarios_validate() -> None:
    s = load_serving_scenario(SCENARIOS / "serving" / "llama70b.yaml")
    assert s.serving.traffic.qps == 40 and s.serving.slo.percentile == 99
    assert s.serving.traffic.resolved_classes()[0].input.p99 == 6000


def test_scenario_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: llama-3.1-8b\nserving:\n  traffic: {qps: 5, input: 100, output: 50}\n"
                   "  slo: {ttft_ms: 500, tpot_ms: 50, percentil: 99}\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*serving\.slo\.percentil"):
        load_serving_scenario(bad)
    bad.write_text("model: llama-3.1-8b\nserving:\n  traffic: {qps: -5, input: 100, output: 50}\n"
                   "  slo: {ttft_ms: 500, tpot_ms: 50}\n")
    with pytest.raises(InputError, match=r"serving\.traffic\.qps"):
        load_serving_scenario(bad)
    bad.write_text("model: llama-3.1-8b\nserving:\n  traffic:\n    qps: 5\n    classes:\n"
                   "      - {name: a, share: 0.5, input: 10, output: 10}\n  slo: {ttft_ms: 500, tpot_ms: 50}\n")
    with pytest.raises(InputError, match=r"sum to 0\.5"):
        load_serving_scenario(bad)
    bad.write_text("model: llama-3.1-8b\njob: {tokens: 1e9, seq_len: 2048, global_batch: 8}\n")
    with pytest.raises(InputError, match="no `serving:` block"):
        load_serving_scenario(bad)


def test_impossible_slo_is_infeasible_with_numbers(tmp_path: Path) -> None:
    f = tmp_path / "tight.yaml"
    f.write_text("model: llama-3.1-8b\nhardware: {skus: [l40s]}\nserving:\n"
                 "  traffic: {qps: 5, input: 8000, output: 50}\n  slo: {ttft_ms: 5, tpot_ms: 50}\n"
                 "  search: {tp: [1], batch_limits: [16]}\n")
    with pytest.raises(InfeasibleError, match=r"TTFT p99 <= 5 ms.*fastest replica alone: TTFT \d+ ms"):
        solve_serving(f, pareto=False)


def test_caps_that_hold_too_few_replicas_say_how_many_are_needed(tmp_path: Path) -> None:
    """Every class has a replica type that meets the SLOs, but the caps hold too few: the answer gives the GPUs the
    traffic needs at least and names the caps that rule it out (the replica cap per type without any
    hardware.max_gpus, the GPU cap with one)."""
    f = tmp_path / "caps.yaml"
    base = ("model: llama-3.1-8b\nhardware: {skus: [h100-sxm]%s}\nserving:\n"
            "  traffic: {qps: %s, input: 1000, output: 100}\n  slo: {ttft_ms: 2000, tpot_ms: 100}\n"
            "  search: {tp: [1], batch_limits: [64], max_replicas: 4}\n")
    f.write_text(base % ("", "400"))
    with pytest.raises(InfeasibleError, match=r"400 requests/s need at least \d[\d,]* GPUs \(with one type, "
                                              r"[\d,]+ × h100-sxm tp1 b64, [\d,]+ GPUs\); the caps allow "
                                              r"serving\.search\.max_replicas 4 of each replica type$"):
        solve_serving(f, pareto=False)
    f.write_text(base % (", max_gpus: 1", "40"))
    with pytest.raises(InfeasibleError, match=r"hardware\.max_gpus 1 GPUs in all$"):
        solve_serving(f, pareto=False)
