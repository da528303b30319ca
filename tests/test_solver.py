"""The solver against brute force: CP-SAT's optimum equals the exhaustive enumerator's on random small
scenarios, and every plan it returns passes the independent re-check (`evaluate`). Then the
features one by one: lexicographic objectives, top-k, Pareto fronts, explanations, time limits,
determinism, several jobs on one inventory."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import SolveResult, solve
from planner.scenario import Scenario
from planner.search.exhaustive import enumerate_plans, objective_key
from planner.search.plans import check_solution
from planner.search.problem import resolve_problem

PRICED = ["h100-sxm", "a100-80gb", "l40s", "b200"]  # on-demand prices in the catalog, different node economics
# (GB200's 72-GPU domain rented in 4-GPU hosts has its own exhaustive test: tests/test_gpu_counts.py)


def tiny_model(layers: int, heads: int, moe: bool, head_dim: int = 64) -> dict[str, Any]:
    """Few layers and heads (a small space); head_dim 2048 makes a 3-5B model whose state and
    activations no longer fit everywhere, so memory prunes too."""
    hidden = head_dim * heads
    spec: dict[str, Any] = {"name": f"tiny-{layers}x{heads}x{head_dim}", "layers": layers, "hidden": hidden,
                            "heads": heads, "ffn_hidden": 4 * hidden, "vocab": 32_000, "max_seq": 4096}
    if moe:
        spec["moe"] = {"experts": 4, "top_k": 2, "expert_ffn": 2 * hidden}
    return spec


@st.composite
def small_scenarios(draw: Any) -> dict[str, Any]:
    """Spaces of a few hundred layouts: tiny models, small batches, one or two SKUs, a few GPUs."""
    layers = draw(st.sampled_from([2, 4]))
    heads = draw(st.sampled_from([2, 4]))
    moe = draw(st.booleans())
    head_dim = draw(st.sampled_from([64, 2048]))
    seq = draw(st.sampled_from([1024, 2048]))
    skus = draw(st.lists(st.sampled_from(PRICED), min_size=1, max_size=2, unique=True))
    inventory = draw(st.sampled_from([4, 8, 16]))
    per_sku = draw(st.booleans())
    fixed = draw(st.fixed_dictionaries({}, optional={
        "zero": st.sampled_from([0, 1, 3]),
        "recompute": st.sampled_from(["none", "full"]),
        "sequence_parallel": st.booleans(),
        "vpp": st.just(1),
    }))
    if moe and draw(st.integers(0, 3)) == 0:  # Megatron-Core's EP folding over TP·DP·CP
        fixed = {**fixed, "expert_tp": 1, "sequence_parallel": True}
    tokens = draw(st.sampled_from([2e9, 2e10, 2e11, 2e12]))
    sc: dict[str, Any] = {
        "name": "main",
        "model": tiny_model(layers, heads, moe, head_dim),
        "job": {"tokens": tokens, "seq_len": seq, "global_batch": draw(st.sampled_from([2, 4, 8]))},
        "hardware": {"skus": skus,
                     "max_gpus": {s: inventory for s in skus} if per_sku else inventory},
        "layout": fixed,
        "objective": draw(st.sampled_from(["cost", "time", "cost-then-time"])),
        "constraints": {},
    }
    if draw(st.booleans()):
        sc["constraints"]["deadline_days"] = draw(st.sampled_from([0.02, 0.2, 2.0]))
    if draw(st.booleans()):
        sc["constraints"]["budget_usd"] = draw(st.sampled_from([10.0, 100.0, 1000.0]))
    if draw(st.booleans()):
        sc["constraints"]["max_gpus"] = draw(st.sampled_from([2, 8]))
    if draw(st.integers(0, 4)) == 0:  # Transformer Engine's all-to-all CP exchanges: a rule on tp and cp together
        sc["implementation"] = draw(st.sampled_from([{"cp_exchange": "ulysses"},
                                                     {"cp_exchange": "hierarchical", "cp_a2a_size": 2}]))
    if draw(st.integers(0, 4)) == 0:  # Megatron's activation offload, its count searched: a rule on pp and recompute
        sc["implementation"] = {**sc.get("implementation", {}), "activation_offload": True}
    elif "implementation" not in sc and draw(st.integers(0, 3)) == 0:
        # another framework's rules: torchtitan's DDP only alone (a rule across the lattice's join), FSDP without
        # ZeRO-1, DeepSpeed without virtual stages
        sc["implementation"] = {"framework": draw(st.sampled_from(["torchtitan", "fsdp", "deepspeed"]))}
    mode = draw(st.sampled_from(["model", "mfu", "hfu"]))
    if mode != "model":
        sc["efficiency"] = {mode: 0.4}
    if draw(st.integers(0, 4)) == 0:  # sometimes a second job on the same inventory and budget
        sc["jobs"] = [{"name": "second", "model": tiny_model(2, 2, False),
                       "job": {"tokens": tokens / 4, "seq_len": 1024, "global_batch": 4},
                       "layout": {"zero": 1, "recompute": "none", "vpp": 1},
                       "deadline_days": draw(st.sampled_from([None, 0.5]))}]
    return sc


def keys_of(result: SolveResult, objective: str) -> tuple[int, ...]:
    best = result.solutions[0]
    return {"cost": (best.cost_cents,), "time": (best.time_s, best.cost_cents),
            "cost-then-time": (best.cost_cents, best.time_s)}[objective]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_cpsat_optimum_equals_exhaustive_optimum(data: dict[str, Any]) -> None:
    sc = Scenario.model_validate(data)
    result = solve(sc, top_k=2)
    ref = enumerate_plans(resolve_problem(sc))
    assert result.search_space_size == ref.space_size
    if ref.best is None:
        assert result.status == "infeasible"
        assert result.reasons and not result.plans
        return
    assert result.status == "optimal"
    assert keys_of(result, sc.objective) == ref.best
    # the winner achieves the key it reports, re-derived from the exhaustive side's units
    assert objective_key(sc.objective, ref.ranked[0][1]) == ref.best
    problem = resolve_problem(sc)
    for s in result.solutions + result.near_optimal:
        assert check_solution(problem, s) == []
        for p in s.plans:
            assert p.evaluation.fits and not p.evaluation.problems


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def base(**over: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "name": "seven",
        "model": "llama-2-7b",
        "job": {"tokens": 2e9, "seq_len": 4096, "global_batch": 64},
        "hardware": {"skus": ["h100-sxm", "a100-80gb", "l40s"], "max_gpus": 64},
        "objective": "cost",
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(sc.get(k), dict):
            sc[k] = {**sc[k], **v}
        else:
            sc[k] = v
    return sc


# fixes a few fields so that the exhaustive cross-checks below enumerate thousands, not 10^5, layouts
SMALL = {"zero": 1, "vpp": 1, "sequence_parallel": False}


def run(data: dict[str, Any], **kw: Any) -> SolveResult:
    return solve(Scenario.model_validate(data), **kw)


def test_lexicographic_cost_then_time_takes_the_fastest_of_the_cheapest() -> None:
    # fixed MFU makes cost independent of the GPU count, so cost ties across many plans
    data = base(efficiency={"mfu": 0.4}, objective="cost-then-time", hardware={"skus": ["h100-sxm"]}, layout=SMALL)
    lex = run(data)
    ref = enumerate_plans(resolve_problem(Scenario.model_validate(data)))
    assert lex.status == "optimal"
    assert keys_of(lex, "cost-then-time") == ref.best
    cheapest = ref.best[0]
    fastest_of_cheapest = min(max(o.time_s for o in combo) for key, combo in ref.ranked if key[0] == cheapest)
    assert lex.solutions[0].time_s == fastest_of_cheapest
    # cost alone reaches the same cost, but need not be that fast
    plain = run(base(efficiency={"mfu": 0.4}, hardware={"skus": ["h100-sxm"]}, layout=SMALL))
    assert plain.solutions[0].cost_cents == cheapest
    assert plain.solutions[0].time_s >= lex.solutions[0].time_s


def test_top_k_plans_are_distinct_and_ranked() -> None:
    r = run(base(), top_k=6)
    assert len(r.plans) == 6
    keys = [(p.sku, p.gpus, p.evaluation.layout) for p in r.plans]
    assert len(set(keys)) == 6
    costs = [s.cost_cents for s in r.solutions]
    assert costs == sorted(costs)
    # the near-optimal set lies within its margin and starts with the optimum
    assert r.near_optimal[0] == r.solutions[0]
    assert all(s.cost_cents <= costs[0] * (1 + r.margin) for s in r.near_optimal)


def test_pareto_front_is_non_dominated_and_spans_cheapest_to_fastest() -> None:
    data = base(hardware={"skus": ["h100-sxm", "a100-80gb"], "max_gpus": 32}, layout=SMALL)
    r = run(data, pareto=True)
    front = r.pareto
    assert len(front) >= 3
    for a in front:
        for b in front:
            if a is not b:
                assert not (a.cost_cents <= b.cost_cents and a.time_s <= b.time_s), "dominated point on the front"
    assert [s.cost_cents for s in front] == sorted(s.cost_cents for s in front)
    ref = enumerate_plans(resolve_problem(Scenario.model_validate(data)))
    assert front[0].cost_cents == min(k[0] for k, _ in ref.ranked)
    assert front[-1].time_s == min(c[0].time_s for _, c in ref.ranked)


def test_infeasible_memory_explained_with_the_smallest_footprint() -> None:
    r = run({"model": "gpt3-175b", "job": {"tokens": 300e9, "seq_len": 2048, "global_batch": 1536},
             "hardware": {"skus": ["rtx-4090"], "max_gpus": 8}})
    assert r.status == "infeasible" and not r.plans
    text = " ".join(r.reasons)
    assert "no legal layout fits in GPU memory" in text
    assert "smallest per-GPU memory" in text and "GiB" in text and "rtx-4090" in text


def test_infeasible_deadline_explained_with_numbers() -> None:
    data = base(hardware={"skus": ["h100-sxm"], "max_gpus": 8}, job={"tokens": 200e9},
                constraints={"deadline_days": 3})
    r = run(data)
    assert r.status == "infeasible"
    text = "\n".join(r.reasons)
    assert "fastest plan within the inventory takes" in text  # the fastest achievable days
    assert "meeting its deadline needs at least" in text  # the GPUs the deadline needs vs the inventory
    assert "h100-sxm inventory 8" in text
    assert "with the deadline lifted, the cheapest plan" in text  # the cheapest plan without it
    assert "these limits cannot all hold together" in text
    assert r.to_dict()["reasons"] == r.reasons


def test_infeasible_budget_names_the_cheapest_price() -> None:
    r = run(base(constraints={"budget_usd": 1.0}))
    assert r.status == "infeasible"
    assert any("above the $1 budget" in x for x in r.reasons)


def test_explain_reports_binding_constraints() -> None:
    free = run(base(hardware={"skus": ["h100-sxm"]}))
    fastest_free = free.solutions[0].time_s / 86_400
    r = run(base(hardware={"skus": ["h100-sxm"]}, constraints={"deadline_days": fastest_free / 3}), explain=True)
    assert r.status == "optimal"
    assert any(b.startswith("the ") and "deadline of seven binds" in b for b in r.binding)


def test_time_limit_returns_the_best_plan_so_far() -> None:
    data = base(jobs=[{"name": "b", "model": "llama-2-7b", "job": {"tokens": 1e9, "seq_len": 4096,
                                                                      "global_batch": 64}}],
                hardware={"max_gpus": 16}, constraints={"budget_usd": 5000})
    r = run(data, time_limit_s=0.5)
    assert r.status in ("optimal", "feasible")
    assert r.seconds < 5
    if r.status == "feasible":
        assert r.gap is not None and r.gap >= 0
    tiny = run(data, time_limit_s=1e-6)  # runs out before CP-SAT starts: never an exception
    assert tiny.status in ("optimal", "feasible", "unknown")
    if tiny.status == "unknown":
        assert "time limit" in tiny.reasons[0]
    else:
        assert check_solution(resolve_problem(Scenario.model_validate(data)), tiny.solutions[0]) == []


def test_same_input_twice_gives_the_same_json() -> None:
    data = base(jobs=[{"name": "b", "model": "llama-3.1-8b", "job": {"tokens": 1e9, "seq_len": 4096,
                                                                        "global_batch": 32},
                       "deadline_days": 2}])
    a = json.loads(run(data, pareto=True).to_json(timing=False))
    b = json.loads(run(data, pareto=True).to_json(timing=False))
    assert a == b


def test_jobs_share_the_inventory() -> None:
    alone = run(base(hardware={"skus": ["h100-sxm"], "max_gpus": 64}, objective="time"))
    need = alone.plans[0].gpus
    assert need > 32
    # two copies of the job on the same 64 GPUs: together they must fit, so each gets fewer
    both = run(base(hardware={"skus": ["h100-sxm"], "max_gpus": 64}, objective="time",
                    jobs=[{"name": "twin", "model": "llama-2-7b",
                           "job": {"tokens": 2e9, "seq_len": 4096, "global_batch": 64}}]))
    assert both.status == "optimal"
    assert sum(p.gpus for p in both.plans) <= 64
    assert both.solutions[0].time_s > alone.solutions[0].time_s
    assert [p.job for p in both.plans] == ["seven", "twin"]


def test_json_fields() -> None:
    out = json.loads(run(base(constraints={"deadline_days": 10})).to_json())
    assert out["status"] == "optimal"
    assert out["solver"]["seconds"] >= 0 and out["solver"]["search_space_size"] > 0
    plan = out["plans"][0]
    for key in ("sku", "gpus", "nodes"):
        assert key in plan
    assert set(plan["layout"]) >= {"tp", "pp", "vpp", "dp", "cp", "ep", "zero", "recompute", "sequence_parallel",
                                   "micro_batch"}
    assert set(plan["memory"]["bytes"]) >= {"weights", "gradients", "optimizer", "activations", "buffers", "reserve",
                                            "total"}
    assert plan["memory"]["capacity_bytes"] >= plan["memory"]["bytes"]["total"]
    assert set(plan["time"]) >= {"step_seconds", "mfu", "days", "gpu_hours"}
    assert plan["cost"]["usd"] > 0 and plan["cost"]["usd_per_million_tokens"] > 0


def test_fixed_layout_fields_are_respected() -> None:
    r = run(base(layout={"sku": "a100-80gb", "tp": 2, "zero": 1, "recompute": "selective"}), top_k=3)
    for p in r.plans:
        lay = p.evaluation.layout
        assert (p.sku, lay.tp, lay.zero, lay.recompute) == ("a100-80gb", 2, 1, "selective")


@pytest.mark.parametrize("bad", [{"jobs": [{"name": "seven", "model": "llama-2-7b",
                                            "job": {"tokens": 1e9, "seq_len": 4096, "global_batch": 64}}]}])
def test_duplicate_job_names_are_input_errors(bad: dict[str, Any]) -> None:
    from planner.errors import InputError

    with pytest.raises(InputError, match="unique"):
        run(base(**bad))


def test_fixed_pipeline_layout_is_searched_as_written() -> None:
    """A scenario's explicit layout fixes pp·vpp (here 4 stages: pp 4, or pp 2 with vpp 2); the search finds the
    same plans with and without pruning, every one of them re-checked."""
    chunks = [7, 9, 9, 7]
    data = base(model="llama-3.1-8b", objective="time",
                layout={"pipeline_layout": chunks, "zero": 1, "sequence_parallel": False},
                hardware={"skus": ["h100-sxm"], "max_gpus": 32})
    pruned, full = run(data, top_k=3), run(data, top_k=3, prune=False)
    assert [p.evaluation.layout for p in pruned.plans] == [p.evaluation.layout for p in full.plans]
    problem = resolve_problem(Scenario.model_validate(data))
    for s in full.solutions:
        assert check_solution(problem, s) == []
        for p in s.plans:
            lay = p.evaluation.layout
            assert lay.pp * lay.vpp == len(chunks) and list(lay.pipeline_layout or ()) == chunks


def test_a_price_offer_caps_its_sku() -> None:
    """A price whose source sells no more than N GPUs together (`max_gpus`: the catalog's peer-marketplace RTX 4090
    is single cards) caps the SKU at that price, under the scenario's own inventory; the optimum is the exhaustive
    reference's and stays within the offer."""
    sc = Scenario.model_validate(base(hardware={"skus": ["rtx-4090", "h100-sxm"], "max_gpus": 64}))
    assert {s.name: s.inventory for s in resolve_problem(sc).skus} == {"rtx-4090": 1, "h100-sxm": 64}
    offer = {"provider": "test cloud", "kind": "on-demand", "usd_per_gpu_hour": 0.5, "date": "2026-12-06",
             "source": "test", "max_gpus": 16}
    data = base(gpus=[{"name": "h100-offer", "base": "h100-sxm", "prices": [offer]}],
                hardware={"skus": ["h100-offer"], "max_gpus": 64}, layout=SMALL)
    problem = resolve_problem(Scenario.model_validate(data))
    assert [s.inventory for s in problem.skus] == [16]
    result = run(data)
    assert result.status == "optimal" and result.plans[0].gpus <= 16
    assert keys_of(result, "cost") == enumerate_plans(problem).best


def test_an_estimate_beyond_its_price_offer_says_so() -> None:
    from planner import EstimateRequest, estimate
    from planner.report.dicts import warnings_list

    sc = Scenario.model_validate({"name": "g", "model": "llama-2-7b",
                                  "job": {"tokens": 1e9, "seq_len": 4096, "global_batch": 64},
                                  "estimate": {"gpu": "rtx-4090", "gpus": 64}, "layout": {"tp": 4, "pp": 4}})
    codes = {w["code"]: w["message"] for w in warnings_list(estimate(EstimateRequest(scenario=sc)))}
    assert "1 × rtx-4090" in codes["beyond_price_offer"]


def test_a_memory_tight_optimum_recomputes_only_part_of_each_chunk() -> None:
    """Megatron's block recompute (--recompute-method block --recompute-num-layers n) is searched: Llama 3 405B on
    8,192 H100 at TP8 PP16 DP64 does not fit without recompute, and the fastest plan reruns one layer of each model
    chunk rather than all of them. Recomputing every layer of the same layout is slower; the plan is exported as
    Megatron arguments with that count."""
    from planner import EstimateRequest, estimate

    sc = Scenario.model_validate({
        "name": "llama405", "model": "llama-3.1-405b",
        "job": {"tokens": 16 * 2**20, "seq_len": 8192, "global_batch": 2048},
        "hardware": {"skus": ["h100-sxm"]},
        "layout": {"sku": "h100-sxm", "gpus": 8192, "tp": 8, "pp": 16, "dp": 64, "cp": 1, "sequence_parallel": True,
                   "micro_batch": 1, "account_for_embedding_in_pipeline_split": True,
                   "account_for_loss_in_pipeline_split": True},
        "objective": "time", "top_k": 1,
    })
    result = solve(sc)
    plan = result.plans[0]
    lay = plan.evaluation.layout
    assert lay.recompute == "full" and lay.recompute_num_layers is not None and lay.recompute_method == "block"
    assert plan.evaluation.fits
    fixed = {f: getattr(lay, f) for f in ("tp", "pp", "vpp", "dp", "zero", "sequence_parallel", "micro_batch",
                                          "account_for_embedding_in_pipeline_split",
                                          "account_for_loss_in_pipeline_split")}
    every, none = (estimate(EstimateRequest(model="llama-3.1-405b", gpu="h100-sxm", gpus=8192, seq=8192,
                                            global_batch=2048, layout={**fixed, "recompute": rc}))
                   for rc in ("full", "none"))
    assert every.time.step_seconds > plan.evaluation.time.step_seconds and not none.fits
    assert f"--recompute-num-layers {lay.recompute_num_layers}" in result.emit("megatron")


@pytest.mark.parametrize("framework", ["torchtitan", "fsdp", "deepspeed"])
def test_framework_rules_across_the_search_join_match_the_exhaustive_space(framework: str) -> None:
    """torchtitan's DDP-only-alone rule reads ZeRO (the pipeline side of the search lattice) with tp, dp and cp (the
    data side): the lattice splits its shapes by ZeRO-0 so that the solver's legal space is the exhaustive one, and
    no plan breaks the rule; FSDP's search has no ZeRO-1, DeepSpeed's no virtual stages."""
    data = {"name": "fw", "model": tiny_model(4, 4, False, 64),
            "job": {"tokens": 2e10, "seq_len": 1024, "global_batch": 8},
            "hardware": {"skus": ["h100-sxm"], "max_gpus": 16}, "implementation": {"framework": framework},
            "objective": "time"}
    sc = Scenario.model_validate(data)
    result = solve(sc, top_k=50)
    ref = enumerate_plans(resolve_problem(sc))
    assert result.search_space_size == ref.space_size and keys_of(result, "time") == ref.best
    for p in result.plans:
        lay = p.evaluation.layout
        assert not p.evaluation.problems
        if framework == "torchtitan":
            assert not (lay.zero == 0 and (lay.cp > 1 or (lay.dp > 1 and lay.tp * lay.pp > 1)))
        if framework in ("torchtitan", "fsdp"):
            assert lay.zero != 1
        if framework == "deepspeed":
            assert lay.vpp == 1
