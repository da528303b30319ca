"""Expert parallelism folded over TP·DP·CP (Megatron-Core's MoE parallel folding, `layout.expert_tp`): the experts
split over expert_tp instead of tp, EP groups drawn from tp·dp·cp, expert state sharded over what is left."""

from __future__ import annotations

import pytest

from planner import solve
from planner.catalog import get_gpu, get_model
from planner.model.memory import Recipe, layer_params_on_rank, training_memory, training_memory_table
from planner.model.params import count_params
from planner.model.perf import training_time
from planner.scenario import Scenario
from planner.schema import Implementation, Layout, Overheads
from planner.search.plans import check_solution
from planner.search.problem import resolve_problem
from planner.workloads.training.legality import layout_problems

MIXTRAL = get_model("mixtral-8x7b")
FOLDED = Layout(tp=4, dp=2, ep=8, expert_tp=1, sequence_parallel=True, global_batch=16)
PLAIN = Layout(tp=4, dp=2, ep=2, sequence_parallel=True, global_batch=16)


def test_folding_is_legal_where_megatron_allows_it() -> None:
    assert layout_problems(MIXTRAL, FOLDED, seq=4096) == []
    assert any("must divide dp·cp" in p for p in layout_problems(MIXTRAL, FOLDED.model_copy(update={"expert_tp": None}),
                                                                  seq=4096))
    assert any("expert_tp: 3 does not divide tp" in p
               for p in layout_problems(MIXTRAL, FOLDED.model_copy(update={"expert_tp": 3}), seq=4096))
    assert any("sequence_parallel" in p
               for p in layout_problems(MIXTRAL, FOLDED.model_copy(update={"sequence_parallel": False}), seq=4096))
    assert any("mixture-of-experts" in p for p in layout_problems(get_model("llama-3.1-8b"),
                                                                  Layout(tp=2, dp=2, expert_tp=1, global_batch=4,
                                                                         sequence_parallel=True), seq=4096))


def test_every_expert_parameter_lives_on_ep_times_expert_tp_ranks() -> None:
    """ep·expert_tp ranks hold one copy of a layer's experts: their shares add up to the experts' parameters."""
    c = count_params(MIXTRAL)
    per_layer_experts = c.total - count_params(MIXTRAL.model_copy(update={"moe": None})).total
    per_layer_experts = per_layer_experts / MIXTRAL.layers
    e = MIXTRAL.moe
    assert e is not None
    dense_ffn = 3 * MIXTRAL.hidden * MIXTRAL.ffn_hidden  # the dense MLP the MoE one replaces
    experts_alone = per_layer_experts + dense_ffn - MIXTRAL.hidden * e.experts  # less the router
    for lay in (FOLDED, PLAIN):
        _, on_rank = layer_params_on_rank(MIXTRAL, lay.tp, lay.ep, True, lay.expert_tp)
        assert on_rank * lay.ep * (lay.expert_tp or lay.tp) == pytest.approx(experts_alone, rel=1e-9)


def test_folded_expert_state_shards_over_the_expert_data_parallel_ranks() -> None:
    """The distributed optimizer shards expert state over tp·dp·cp/(ep·expert_tp) ranks: folded (8 EP ranks
    over 8 GPUs, one replica) each rank keeps its own experts' state whole, where plain EP 2 over DP 2 gave each
    of the 4 TP ranks a quarter of 4 experts."""
    impl = Implementation()
    folded, plain = (training_memory(MIXTRAL, lay, 4096, impl) for lay in (FOLDED, PLAIN))
    # the same expert bytes per GPU either way (4·8/(8·1) experts' worth unsharded vs (8/2)/4 sharded over 1)
    assert folded.optimizer == pytest.approx(plain.optimizer, rel=0.05)
    table = training_memory_table(MIXTRAL, 4096, {"tp": 4, "pp": 1, "vpp": 1, "dp": 2, "cp": 1, "ep": 8, "zero": 1,
                                                  "recompute": 0, "sequence_parallel": 1, "micro_batch": 1,
                                                  "global_batch": 16, "expert_tp": 1},
                                  Recipe(), impl, Overheads())
    assert float(table["total"]) == pytest.approx(folded.total)


def test_folded_moe_layers_drop_their_tp_collectives_and_span_tp_with_ep() -> None:
    gpu = get_gpu("h100-sxm")
    folded, plain = (training_time(MIXTRAL, lay, gpu, 4096, 1e9).breakdown for lay in (FOLDED, PLAIN))
    assert folded["tp_comm"] == pytest.approx(plain["tp_comm"] / 2, rel=1e-6)  # every Mixtral layer is MoE
    assert folded["ep_comm"] > 0


def test_search_with_expert_tp_fixed_finds_folded_layouts() -> None:
    sc = Scenario.model_validate({
        "model": "mixtral-8x7b", "job": {"tokens": 1e10, "seq_len": 4096, "global_batch": 64},
        "hardware": {"skus": ["h100-sxm"], "max_gpus": 64}, "objective": "time",
        "layout": {"expert_tp": 1, "sequence_parallel": True, "tp": 4, "zero": 1, "vpp": 1},
    })
    pruned, full = solve(sc, top_k=3), solve(sc, top_k=3, prune=False)
    assert [p.evaluation.layout for p in pruned.plans] == [p.evaluation.layout for p in full.plans]
    problem = resolve_problem(sc)
    for s in pruned.solutions:
        assert check_solution(problem, s) == []
    layouts = [p.evaluation.layout for s in full.near_optimal + full.solutions for p in s.plans]
    assert all(lay.expert_tp == 1 for lay in layouts)
    assert any(lay.ep > lay.dp * lay.cp for lay in layouts)  # EP drawn from the TP ranks too


def test_search_tries_folding_on_its_own() -> None:
    """Without expert_tp in the scenario, a Megatron-Core MoE search tries the experts unsplit (expert_tp 1, EP
    folded over TP·DP·CP) beside the experts split like TP, once each: the same plans with and without pruning,
    each re-checked, and a layout whose EP is drawn from TP ranks among them where it wins."""
    sc = Scenario.model_validate({
        "model": "mixtral-8x7b", "job": {"tokens": 1e10, "seq_len": 4096, "global_batch": 64},
        "hardware": {"skus": ["h100-sxm"], "max_gpus": 64}, "objective": "cost",
        "layout": {"sequence_parallel": True, "tp": 8, "zero": 1, "vpp": 1, "pp": 1},
    })
    pruned, full = solve(sc, top_k=5), solve(sc, top_k=5, prune=False)
    assert [p.evaluation.layout for p in pruned.plans] == [p.evaluation.layout for p in full.plans]
    problem = resolve_problem(sc)
    for s in pruned.solutions:
        assert check_solution(problem, s) == []
    layouts = [p.evaluation.layout for p in full.plans]
    assert len(set(layouts)) == len(layouts)
    best = layouts[0]  # here the cheapest: 8 experts on 8 ranks of TP 8 × DP 2, unsplit
    assert best.expert_tp == 1 and best.ep > best.dp * best.cp
