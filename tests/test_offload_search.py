"""Activation offload as the search chooses it: under Megatron-Core, `implementation.activation_offload: true` without a
count lets `solve` pick how many layers Transformer Engine offloads (none, a quarter, half, three quarters or all but
the last), at pp 1 without recompute, as NVIDIA's GB200 recipes run Llama 3 70B."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from planner.catalog import get_model
from planner.cli import app
from planner.interop.megatron import megatron_args_from_layout, parse_megatron_args
from planner.scenario import Scenario
from planner.search.exhaustive import enumerate_plans
from planner.search.problem import resolve_problem
from planner.workflows.estimate import EstimateRequest, estimate
from planner.workflows.solve import solve
from planner.workloads.training.space import offload_counts

runner = CliRunner()


def gb200_70b(implementation: dict[str, Any]) -> dict[str, Any]:
    """Llama 3 70B in fp8 on 64 GB200, fastest first: memory-tight enough that offload pays."""
    return {"model": "llama-3-70b", "job": {"tokens": 1e10, "seq_len": 8192, "global_batch": 256, "precision": "fp8"},
            "hardware": {"skus": ["gb200"]}, "pricing": {"usd_per_gpu_hour": {"gb200": 10.0}},
            "objective": "time", "top_k": 3, "layout": {"gpus": 64}, "implementation": implementation}


def test_the_counts_tried() -> None:
    assert offload_counts(80) == [20, 40, 60, 79]  # NVIDIA's recipes offload 20 and 40 of Llama 3 70B's 80
    assert offload_counts(4) == [1, 2, 3] and offload_counts(2) == [1] and offload_counts(1) == []


def test_solve_offloads_only_when_asked_and_then_chooses_the_count() -> None:
    off = solve(Scenario.model_validate(gb200_70b({})))
    assert all(p.evaluation.layout.activation_offload_layers is None for p in off.plans)
    on = solve(Scenario.model_validate(gb200_70b({"activation_offload": True})))
    best = on.plans[0].evaluation
    assert best.layout.activation_offload_layers in offload_counts(80)
    assert best.layout.pp == 1 and best.layout.recompute == "none"  # Megatron's rules for cpu_offloading
    assert best.time.step_seconds < off.plans[0].evaluation.time.step_seconds
    assert any("activation offload: no calibration run" in w for w in best.warnings)
    # the plan is what the implementation gives with that count stated: one model, two spellings
    n = best.layout.activation_offload_layers
    sc = Scenario.model_validate({**gb200_70b({}), "estimate": {"gpu": "gb200", "gpus": 64}})
    lay = best.layout
    fields = {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "zero": lay.zero, "recompute": lay.recompute,
              "sequence_parallel": lay.sequence_parallel, "micro_batch": lay.micro_batch}
    again = estimate(EstimateRequest(scenario=sc, layout=fields, implementation={"activation_offload_layers": n}))
    assert again.memory.total == best.memory.total
    assert again.time.step_seconds == best.time.step_seconds


def test_more_offloaded_layers_keep_less_on_the_gpu() -> None:
    sc = Scenario.model_validate({**gb200_70b({}), "estimate": {"gpu": "gb200", "gpus": 64}})
    fields = {"tp": 1, "pp": 1, "zero": 3, "micro_batch": 2}
    acts = [estimate(EstimateRequest(scenario=sc, layout=fields, implementation=impl)).memory.activations
            for impl in ({}, *({"activation_offload_layers": n} for n in offload_counts(80)))]
    assert all(a > b for a, b in itertools.pairwise(acts))


def test_the_optimum_with_offload_equals_the_exhaustive_one() -> None:
    tiny = {"name": "tiny", "layers": 4, "hidden": 2048, "heads": 8, "ffn_hidden": 8192, "vocab": 1024,
            "max_seq": 4096}
    sc = Scenario.model_validate({
        "name": "offload", "model": tiny, "job": {"tokens": 2e11, "seq_len": 4096, "global_batch": 16},
        "hardware": {"skus": ["h100-sxm"], "max_gpus": 8}, "objective": "time",
        "implementation": {"activation_offload": True}})
    result = solve(sc, top_k=1)
    ref = enumerate_plans(resolve_problem(sc))
    assert result.search_space_size == ref.space_size
    assert ref.best is not None and (result.solutions[0].time_s, result.solutions[0].cost_cents) == ref.best
    assert any(o.layout.activation_offload_layers for _, combo in ref.ranked for o in combo)  # offload was feasible


def test_a_plans_offload_reads_back_from_megatron_arguments(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(gb200_70b({"activation_offload": True})))
    plan = json.loads(runner.invoke(app, ["solve", str(path), "--format", "json"]).stdout)["plans"][0]
    n = plan["layout"]["activation_offload_layers"]
    assert n in offload_counts(80)
    result = runner.invoke(app, ["solve", str(path), "--emit", "megatron"])
    assert result.exit_code == 0 and f"--cpu-offloading-num-layers {n}" in result.stdout
    m = get_model("llama-3-70b")
    back = parse_megatron_args(result.stdout, model=m).to_layout(64)
    assert back.activation_offload_layers == n and back.pp == 1 and back.recompute == "none"
    assert f"--cpu-offloading-num-layers {n}" in megatron_args_from_layout(m, back, 8192)


def test_estimate_flag_states_the_count_and_names_itself_when_wrong() -> None:
    args = ["estimate", "--model", "llama-3-70b", "--gpu", "gb200", "--gpus", "64", "--zero", "3", "--micro-batch", "2",
            "--format", "json"]
    flagged = json.loads(runner.invoke(app, [*args, "--activation-offload-layers", "40"]).stdout)
    plain = json.loads(runner.invoke(app, args).stdout)
    assert flagged["memory"]["bytes"]["activations"] < plain["memory"]["bytes"]["activations"]
    too_many = runner.invoke(app, [*args, "--activation-offload-layers", "80"])
    assert too_many.exit_code == 2 and too_many.stderr.startswith("error: --activation-offload-layers: 80 is not below")
    piped = runner.invoke(app, [*args, "--activation-offload-layers", "40", "--pp", "2"])
    assert piped.exit_code == 2 and "--pp: 2 with activation offload" in piped.stderr
