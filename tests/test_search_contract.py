"""The seams of the search: the layout codec converts one layout between its forms losslessly, the
candidate table is a typed contract, and a job's table keeps one fastest fitting layout per (SKU, GPUs)."""

from __future__ import annotations

import numpy as np
import pytest

from planner.scenario import Scenario
from planner.search.candidates import CandidateTable, job_candidates
from planner.search.cpsat import OBJECTIVES, preference
from planner.search.problem import resolve_problem
from planner.workloads.training.layout import encode, grid_arrays, layout_arrays


@pytest.fixture(scope="module")
def seven() -> tuple:
    sc = Scenario.model_validate({
        "name": "seven", "model": "llama-2-7b", "job": {"tokens": 2e9, "seq_len": 4096, "global_batch": 64},
        "hardware": {"skus": ["h100-sxm", "a100-80gb"], "max_gpus": 16}, "layout": {"vpp": 1},
    })
    problem = resolve_problem(sc)
    return problem, job_candidates(problem, problem.jobs[0])


def test_codec_round_trips_grid_rows(seven: tuple) -> None:
    _, c = seven
    w = c.job.workload
    rows = np.random.default_rng(0).choice(len(c.grid), size=200, replace=False)
    batch = grid_arrays(c.grid.cols, rows, w.global_batch)
    for i, row in enumerate(rows.tolist()):
        layout = w.layout(c.grid, row)
        assert encode(layout) == c.grid.codes(row)  # grid codes → Layout → grid codes
        assert layout_arrays(layout) == {k: int(v[i]) for k, v in batch.items()}  # the arrays the models read


def test_candidate_table_is_typed(seven: tuple) -> None:
    _, c = seven
    t = c.table
    assert len(t) and sorted(t.rank.tolist()) == list(range(len(t)))
    pairs = list(zip(t.sku.tolist(), t.gpus.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs)  # one candidate per (SKU, GPU count)
    assert (t.memory[t.sku == "a100-80gb"] <= 80 * 2**30).all()
    frame = t.to_frame()
    assert list(frame.columns) == ["sku", "sku_index", "gpus", "row", "memory", "step_us", "time_s", "cost_cents",
                                   "rank"]
    with pytest.raises(TypeError, match="int64"):
        CandidateTable(t.sku, t.sku_index.astype(np.int32), t.gpus, t.row, t.memory, t.step_us, t.time_s,
                       t.cost_cents, t.rank)
    with pytest.raises(ValueError, match="rows"):
        CandidateTable(t.sku, t.sku_index[:-1], t.gpus, t.row, t.memory, t.step_us, t.time_s, t.cost_cents, t.rank)


def test_preference_is_the_solvers_optimum(seven: tuple) -> None:
    """With one job and no limits, the selector's first choice is the first row of its own order."""
    from planner.search.cpsat import Selector

    problem, c = seven
    for objective, keys in OBJECTIVES.items():
        best = Selector(problem, [c]).lexicographic(keys).selection
        assert best is not None and best.picks[0] == int(preference(c.table, keys)[0]), objective


FIXED_EXTRAS = [
    {"recompute": "full", "recompute_num_layers": 4},
    {"recompute": "full", "recompute_num_layers": 2, "recompute_method": "uniform"},
    {"dp_shard": 2},
    {"account_for_embedding_in_pipeline_split": True, "account_for_loss_in_pipeline_split": True},
]


@pytest.mark.parametrize("extras", FIXED_EXTRAS, ids=lambda e: ",".join(e))
def test_grid_rows_evaluate_as_the_scalar_model_with_fixed_extras(extras: dict) -> None:
    """The knobs a scenario fixes beside the searched fields (partial recompute, HSDP, Megatron's split flags)
    reach the grid's memory and step time as they reach `evaluate`, and do not empty the grid."""
    sc = Scenario.model_validate({
        "name": "extras", "model": "llama-2-13b", "job": {"tokens": 2e10, "seq_len": 4096, "global_batch": 64},
        "hardware": {"skus": ["h100-sxm"], "max_gpus": 32}, "layout": extras,
    })
    p = resolve_problem(sc)
    job, sku = p.jobs[0], p.skus[0]
    c = job_candidates(p, job)
    assert len(c.table) and c.space_size > 0
    w = job.workload
    rows = np.random.default_rng(0).choice(len(c.grid), size=min(150, len(c.grid)), replace=False)
    step = w.step_seconds(c.grid, rows, sku.gpu, sku.node)
    for r, s in zip(rows.tolist(), step.tolist(), strict=True):
        lay = w.layout(c.grid, r)
        assert w.problems(lay, sku.node) == []
        ev = w.evaluate(lay, sku.gpu, sku.node, sku.rate)
        assert c.memory[r] == ev.memory.total
        assert s == pytest.approx(ev.time.step_seconds, rel=1e-12)
