"""The GPU counts a job may run on: whole nodes, part of one, or whole hosts where a scale-up domain spans
several (GB200 NVL72: 72 GPUs over 18 trays of 4, rented and scheduled tray by tray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from planner.catalog import get_gpu
from planner.cli import app
from planner.scenario import Scenario
from planner.search.exhaustive import enumerate_plans
from planner.search.problem import resolve_problem
from planner.workflows.solve import solve
from planner.workloads.grid import GpuCounts

runner = CliRunner()
JOB = "job: {tokens: 1.0e10, seq_len: 4096, global_batch: 64}\n"


def test_counts_on_a_rack_scale_domain_come_in_whole_hosts() -> None:
    gpus = np.arange(1, 300)
    rack = GpuCounts(cap=1000, hosts=(4,))
    ok = set(gpus[rack.allowed(gpus, 72)].tolist())
    assert {4, 8, 36, 64, 72, 128, 144, 256} <= ok  # trays, part of a rack, whole racks, NVIDIA's recipe sizes
    assert {3, 9, 18} <= ok  # a divisor of the domain stays one part of it
    assert not {5, 66, 70, 130} & ok
    # without hosts, only whole domains or part of one
    assert set(gpus[GpuCounts(cap=1000).allowed(gpus, 72)].tolist()) == {1, 2, 3, 4, 6, 8, 9, 12, 18, 24, 36, 72,
                                                                          144, 216, 288}


def test_the_catalog_states_gb200_hosts_and_checks_they_divide_the_domain() -> None:
    gb200 = get_gpu("gb200")
    assert (gb200.node_size, gb200.host_gpus) == (72, 4)
    assert gb200.host_on(72) == 4 and gb200.host_on(36) == 4
    assert gb200.host_on(2) == 2  # a scenario's smaller gpus_per_node is its own host
    assert get_gpu("h100-sxm").host_on(8) == 8


def test_a_gpu_whose_host_does_not_divide_its_domain_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: llama-2-7b\n" + JOB + "gpus: [{name: odd-rack, base: gb200, host_gpus: 5}]\n"
                    "hardware: {skus: [odd-rack]}\npricing: {usd_per_gpu_hour: {odd-rack: 10.0}}\n")
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 2 and "host_gpus: 5 does not divide node_size (72)" in result.stderr


def _gb200(gpus: int) -> str:
    return ("model: llama-2-7b\n" + JOB + "hardware: {skus: [gb200]}\n"
            f"pricing: {{usd_per_gpu_hour: {{gb200: 10.0}}}}\nobjective: time\nlayout: {{gpus: {gpus}}}\n")


def test_solve_runs_gb200_on_whole_trays_as_nvidia_does(tmp_path: Path) -> None:
    """64 GB200 GPUs (16 trays of one NVL72) is how NVIDIA's recipes run; it used to be refused as unsold."""
    path = tmp_path / "s.yaml"
    path.write_text(_gb200(64))
    result = runner.invoke(app, ["solve", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plans"][0]
    assert plan["gpus"] == 64 and plan["sku"] == "gb200" and plan["gpus_per_node"] == 72
    path.write_text(_gb200(66))
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 1 and "whole nodes or hosts" in result.stdout + result.stderr


def test_the_optimum_over_whole_hosts_equals_the_exhaustive_one() -> None:
    """On GB200 with a 16-GPU inventory, 16 (four trays) is sold though it divides no NVL72: CP-SAT and the
    exhaustive reference see the same space and the same optimum."""
    tiny = {"name": "tiny", "layers": 2, "hidden": 4096, "heads": 4, "ffn_hidden": 16384, "vocab": 1024,
            "max_seq": 2048}
    sc = Scenario.model_validate({
        "name": "trays", "model": tiny, "job": {"tokens": 2e11, "seq_len": 1024, "global_batch": 16},
        "hardware": {"skus": ["gb200"], "max_gpus": 16}, "objective": "time"})
    result = solve(sc, top_k=1)
    ref = enumerate_plans(resolve_problem(sc))
    assert result.search_space_size == ref.space_size
    assert ref.best is not None and (result.solutions[0].time_s, result.solutions[0].cost_cents) == ref.best
    assert result.plans[0].evaluation.layout.gpus == 16


def test_a_fixed_count_no_sku_sells_is_answered_not_a_crash(tmp_path: Path) -> None:
    """12 H100 (one and a half nodes of 8) is no plan: exit 1 with the reason (the search's slices were empty
    and its bounds indexed them)."""
    path = tmp_path / "s.yaml"
    path.write_text("model: llama-2-7b\n" + JOB + "hardware: {skus: [h100-sxm]}\n"
                    "pricing: {usd_per_gpu_hour: {h100-sxm: 3.0}}\nobjective: time\nlayout: {gpus: 12}\n")
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 1 and "no GPU count" in result.stdout + result.stderr
