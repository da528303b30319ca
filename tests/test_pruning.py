"""The search that prunes (planner.search.pruning): its floors hold under every row of real grids, on every
stack the time and memory models know, and a pruned solve returns exactly what evaluating every layout
returns — the plan, the runner-ups and the near-optimal set, ties broken the same way."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_solver import small_scenarios

from planner import solve
from planner.scenario import Scenario, load_scenario
from planner.search.problem import resolve_problem
from planner.workloads.grid import Slices
from planner.workloads.training.workload import TrainingWorkload

STACKS: dict[str, dict[str, Any]] = {
    "gpt3 megatron-core": {"model": "gpt3-175b", "job": {"seq_len": 2048, "global_batch": 256}},
    "llama torchtitan fp8 tp-overlap": {
        "model": "llama-3-8b", "job": {"seq_len": 8192, "global_batch": 64, "precision": "fp8"},
        "implementation": {"framework": "torchtitan", "fp8_recipe": "current"}, "efficiency": {"tp_overlap": 1.0}},
    "mixtral deepspeed eager": {
        "model": "mixtral-8x7b", "job": {"seq_len": 4096, "global_batch": 64},
        "implementation": {"framework": "deepspeed", "attention": "eager"}},
    "deepseek-v2-lite megatron fp8 graphs": {
        "model": "deepseek-v2-lite", "job": {"seq_len": 4096, "global_batch": 128, "precision": "fp8",
                                             "fp32_grad_accumulation": False},
        "implementation": {"framework": "megatron-core", "cuda_graphs": True, "fp8_param_gather": True,
                           "cp_exchange": "ulysses"}},
    "llama megatron te all-gather cp": {
        "model": "llama-3.1-8b", "job": {"seq_len": 16384, "global_batch": 16},
        "implementation": {"framework": "megatron-core", "cp_exchange": "te_allgather"}},
    "llama megatron hierarchical cp": {
        "model": "llama-3.1-8b", "job": {"seq_len": 16384, "global_batch": 16},
        "implementation": {"framework": "megatron-core", "cp_exchange": "hierarchical", "cp_a2a_size": 2}},
    "llama torchtitan chunked loss": {
        "model": "llama-3.1-8b", "job": {"seq_len": 8192, "global_batch": 64},
        "implementation": {"framework": "torchtitan", "loss_chunks": 8, "kv_repeat": True}},
    "llama torchtitan HSDP": {
        "model": "llama-2-13b", "job": {"seq_len": 4096, "global_batch": 64},
        "implementation": {"framework": "torchtitan", "cp_exchange": "alltoall"}, "layout": {"dp_shard": 2}},
    "gpt3 partial recompute, split flags": {
        "model": "gpt3-175b", "job": {"seq_len": 2048, "global_batch": 128},
        "layout": {"recompute": "full", "recompute_num_layers": 1, "account_for_embedding_in_pipeline_split": True,
                   "account_for_loss_in_pipeline_split": True}},
    "llama fsdp offload, 90 % confidence": {
        "model": "llama-2-13b", "job": {"seq_len": 4096, "global_batch": 64},
        "implementation": {"framework": "fsdp", "activation_offload": True},
        "constraints": {"confidence": 0.9}},
}


def stack_scenario(over: dict[str, Any]) -> Scenario:
    sc: dict[str, Any] = {"name": "floors", "hardware": {"skus": ["a100-40gb", "h100-sxm", "b200", "l40s"],
                                                         "max_gpus": 256}}
    for key, value in over.items():
        sc[key] = value
    sc["job"] = {"tokens": 1e11, **over["job"]}
    return Scenario.model_validate(sc)


def grid_and_slices(sc: Scenario) -> tuple[Any, TrainingWorkload, Slices]:
    p = resolve_problem(sc)
    job = p.jobs[0]
    w = job.workload
    assert isinstance(w, TrainingWorkload)
    skus = p.skus_for(job)
    sl = w.slices(sorted({s.node for s in skus}), job.counts(max(p.cap(s, job) for s in skus)))
    assert sl is not None and sl.rows is not None and sl.groups is not None and sl.group is not None
    return p, w, sl


@pytest.mark.parametrize("name", list(STACKS))
def test_floors_hold_under_every_row(name: str) -> None:
    p, w, sl = grid_and_slices(stack_scenario(STACKS[name]))
    job = p.jobs[0]
    assert sl.rows is not None and sl.groups is not None and sl.group is not None
    grid = sl.rows(np.ones(len(sl), dtype=bool))
    whole = w.grid(sorted({s.node for s in p.skus_for(job)}), job.counts(max(p.cap(s, job) for s in p.skus)))
    # the slices partition the grid, row for row in the grid's own order
    assert all(np.array_equal(grid.cols[f], whole.cols[f]) for f in whole.cols)
    of = grid.cols["slice"].astype(np.int64)
    assert np.array_equal(np.bincount(of, minlength=len(sl)), sl.size)
    assert np.array_equal(sl.gpus[of], grid.gpus)
    group = sl.group[of]
    assert np.array_equal(np.bincount(group, minlength=len(sl.groups)), sl.groups.size)
    for f in ("tp", "pp", "vpp", "dp", "cp", "ep"):
        assert np.array_equal(sl.cols[f][of], grid.cols[f]) and np.array_equal(sl.groups.cols[f][group], grid.cols[f])
    mb, groups = grid.cols["micro_batch"], sl.groups.cols
    assert (groups["micro_batch_min"][group] <= mb).all() and (mb <= groups["micro_batch_max"][group]).all()
    memory = w.memory(grid, np.arange(len(grid)))
    assert (w.memory_floor(sl.groups)[group] <= memory).all()
    checked = 0
    for sku in p.skus_for(job):
        rows = np.flatnonzero(w.runnable(grid, sku.node, job.counts(p.cap(sku, job))))
        assert np.array_equal(np.unique(of[rows]), np.flatnonzero(w.slice_runnable(sl, sku.node,
                                                                                    job.counts(p.cap(sku, job)))))
        step = w.step_seconds(grid, rows, sku.gpu, sku.node)
        ids = np.arange(len(sl))
        fine = w.step_floor(sl, ids, sku.gpu, sku.node)[of[rows]]
        coarse = w.step_floor(sl.groups, np.arange(len(sl.groups)), sku.gpu, sku.node)[group[rows]]
        assert (fine <= step * (1 + 1e-12)).all(), f"{sku.name}: step floor above a row's step time"
        assert (coarse <= fine * (1 + 1e-12)).all(), f"{sku.name}: a group's floor above its slice's"
        factor = np.broadcast_to(w.step_factor(grid, rows, sku.gpu), step.shape)
        assert (np.broadcast_to(w.floor_factor(sl, ids, sku.gpu), ids.shape)[of[rows]] <= factor).all()
        checked += len(rows)
        # the floor is a bound worth having: within a small factor of the best row of each slice
        best = np.full(len(sl), np.inf)
        np.minimum.at(best, of[rows], step)
        live = np.isfinite(best)
        assert np.median(best[live] / w.step_floor(sl, ids, sku.gpu, sku.node)[live]) < 1.4
    assert checked > 10_000


def without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    out = json.loads(json.dumps(d))
    for k in keys:
        out["solver"].pop(k)
    return out


def same_answer(sc: Scenario, **kw: Any) -> None:
    pruned, full = solve(sc, prune=True, **kw), solve(sc, prune=False, **kw)
    assert full.layouts_evaluated == full.search_space_size == pruned.search_space_size
    # every output but what the search looked at: plans, runner-ups, near-optimal set, status, reasons
    assert without(pruned.to_dict(timing=False), "candidates", "layouts_evaluated", "layouts_pruned") == \
        without(full.to_dict(timing=False), "candidates", "layouts_evaluated", "layouts_pruned")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_pruned_solve_equals_the_full_evaluation(data: dict[str, Any]) -> None:
    same_answer(Scenario.model_validate(data), top_k=3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_pruned_pareto_front_equals_the_full_evaluation(data: dict[str, Any]) -> None:
    same_answer(Scenario.model_validate(data), top_k=3, pareto=True)


@pytest.mark.parametrize("path", ["scenarios/compare_gpt3.yaml"])
def test_shipped_fronts_prune_to_the_same_points(path: str) -> None:
    """--pareto reads the non-dominated plans only: the same front as evaluating every layout, from fewer."""
    sc = load_scenario(path)
    same_answer(sc, pareto=True)
    result = solve(sc, pareto=True)
    assert len(result.pareto) > 2 and result.layouts_evaluated < result.search_space_size


@pytest.mark.parametrize("path", ["scenarios/gpt3_30days.yaml", "scenarios/finetune_7b_8gpus.yaml"])
def test_shipped_scenarios_prune_to_the_same_plans(path: str) -> None:
    sc = load_scenario(path)
    same_answer(sc)
    result = solve(sc)
    assert result.layouts_evaluated < result.search_space_size


@pytest.mark.parametrize("objective", ["time", "cost-then-time"])
@pytest.mark.parametrize("limit", [{"budget_usd": 6e6}, {"deadline_days": 20}, {"confidence": 0.9}])
def test_objectives_and_limits_prune_to_the_same_plans(objective: str, limit: dict[str, Any]) -> None:
    sc = Scenario.model_validate({
        "name": "llama", "model": "llama-3.1-70b", "job": {"tokens": 1.5e12, "seq_len": 8192, "global_batch": 512},
        "hardware": {"skus": ["h100-sxm", "a100-80gb", "b200"], "max_gpus": 2048}, "objective": objective,
        "constraints": limit, "top_k": 7})
    same_answer(sc, margin=0.05)


def test_gpt3_evaluates_a_small_share_of_its_layouts() -> None:
    result = solve(load_scenario("scenarios/gpt3_30days.yaml"))
    assert result.search_space_size >= 10 * result.layouts_evaluated
    d = result.to_dict()["solver"]
    assert d["layouts_evaluated"] + d["layouts_pruned"] == d["search_space_size"]


def frames_equal(sc: Scenario, **sweep: Any) -> None:
    from planner.workflows.compare import CompareRequest, run_comparison

    pruned = run_comparison(CompareRequest(sc, workers=1, **sweep))
    full = run_comparison(CompareRequest(sc, workers=1, prune=False, **sweep))
    pd.testing.assert_frame_equal(pruned.base, full.base)
    if sweep:
        pd.testing.assert_frame_equal(pruned.sweep, full.sweep)
    # the pruned search of what lies beyond an inventory answers the same "needs N GPUs"
    assert any("needs" in str(r) or "fits on" in str(r) for r in full.frame["reason"])


def test_comparison_beyond_inventories_prunes_to_the_same_rows() -> None:
    frames_equal(load_scenario("scenarios/compare_gpt3.yaml"), deadlines=tuple(float(d) for d in range(10, 95, 5)))


@pytest.mark.parametrize("sweep", [{"deadlines": (3.0, 7.0, 30.0)}, {"budgets": (2e4, 1e5, 1e6)}])
def test_comparison_sweeps_prune_to_the_same_rows(sweep: dict[str, Any]) -> None:
    sc = Scenario.model_validate({
        "name": "inventories", "model": "llama-2-13b", "job": {"tokens": 2e11, "seq_len": 4096, "global_batch": 256},
        "hardware": {"max_gpus": {"h100-sxm": 64, "a100-80gb": 32, "l40s": 16, "rtx-4090": 8}},
        "constraints": {"deadline_days": 10}})
    frames_equal(sc, **sweep)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=8),
       st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=8))
def test_domination_as_defined(found: list[tuple[int, int]], points: list[tuple[int, int]]) -> None:
    from planner.search.pruning import _dominated

    c, t = (np.asarray([f[i] for f in found], dtype=np.int64) for i in (0, 1))
    pc, pt = (np.asarray([p[i] for p in points], dtype=np.int64) for i in (0, 1))
    want = [any(fc <= x and ft <= y and (fc < x or ft < y) for fc, ft in found) for x, y in points]
    assert _dominated(c, t, pc, pt).tolist() == want
