"""`planner solve` end to end: every worked scenario solves to a proven optimum whose plan passes the
independent re-check, and the exit codes tell a plan (0), no plan (1) and bad input (2) apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from planner.catalog import get_gpu
from planner.cli import app
from planner.scenario import load_scenario
from planner.schema import Layout
from planner.search.problem import basis_of, scenario_jobs
from planner.workloads.training.evaluation import evaluate
from planner.workloads.training.layout import EXTRAS

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
runner = CliRunner()

def solve_json(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["solve", str(path), "--format", "json", *args])
    return result.exit_code, json.loads(result.stdout)


def recheck(path: Path, out: dict[str, Any]) -> None:
    """Re-evaluate each plan from its JSON with `evaluate`: legal, fits, within every limit."""
    sc = load_scenario(path)
    jobs = {j.name: j for j in scenario_jobs(sc)}
    total_cost, used = 0.0, {}
    for plan in out["plans"] if len(jobs) > 1 else out["plans"][:1]:
        job = jobs[plan["job"]]
        lay = plan["layout"]
        fields = ("tp", "pp", "vpp", "dp", "cp", "ep", "zero", "recompute", "sequence_parallel", "micro_batch",
                  "global_batch", "precision", "expert_tp", *EXTRAS)  # and the fixed extras a plan runs
        w = job.workload
        r = w.template.recipe  # the job's numeric recipe, which the plan's JSON layout does not repeat
        layout = Layout(**{k: lay[k] for k in fields if k in lay}, optimizer=r.optimizer,
                        fp32_grad_accumulation=r.fp32_grad_accumulation, offload_optimizer=r.offload_optimizer)
        gpu = get_gpu(plan["sku"])
        ev = evaluate(w.model, layout, gpu, seq=w.seq, tokens=w.tokens, gpus_per_node=plan["gpus_per_node"],
                      implementation=sc.implementation, overheads=sc.overheads, efficiency=sc.efficiency,
                      pricing=sc.pricing, basis=basis_of(sc))
        assert not ev.problems, ev.problems
        assert ev.fits and ev.memory.total == plan["memory"]["bytes"]["total"]
        assert layout.gpus == plan["gpus"]
        if job.deadline_days is not None:
            assert ev.planned_days <= job.deadline_days
        assert ev.cost_usd == pytest.approx(plan["cost"]["usd"])
        total_cost += ev.cost_usd or 0.0
        used[gpu.name] = used.get(gpu.name, 0) + layout.gpus
    if sc.constraints.budget_usd is not None:
        assert total_cost <= sc.constraints.budget_usd
    if sc.constraints.max_gpus is not None:
        assert sum(used.values()) <= sc.constraints.max_gpus
    inv = sc.hardware.max_gpus
    for name, n in used.items():
        cap = inv.get(name) if isinstance(inv, dict) else inv
        assert cap is None or n <= cap


# portfolio_*.yaml are `planner schedule` portfolios, not scenarios (tests/test_schedule.py runs them)
@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.glob("*.yaml") if not p.name.startswith("portfolio")))
def test_worked_scenario_solves_to_a_proven_optimum(name: str) -> None:
    code, out = solve_json(SCENARIOS / name)
    assert code == 0
    assert out["status"] == "optimal"
    assert out["plans"]
    recheck(SCENARIOS / name, out)


def test_table_output_names_the_plan() -> None:
    result = runner.invoke(app, ["solve", str(SCENARIOS / "finetune_7b_8gpus.yaml"), "--explain"])
    assert result.exit_code == 0, result.output
    for text in ("optimal", "Per-GPU memory", "MFU", "tokens / s", "GPU-hours", "$ per million tokens",
                 "Plan and runner-ups", "Binding constraints"):
        assert text in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_machine_formats(fmt: str) -> None:
    result = runner.invoke(app, ["solve", str(SCENARIOS / "finetune_7b_8gpus.yaml"), "--format", fmt])
    assert result.exit_code == 0
    first = result.stdout.splitlines()[0]
    assert ("sku" in first) if fmt == "csv" else ("optimal" in first)


def test_infeasible_exits_1_with_an_explanation(tmp_path: Path) -> None:
    path = tmp_path / "tight.yaml"
    path.write_text("model: llama-2-7b\njob: {tokens: 200e9, seq_len: 4096, global_batch: 64}\n"
                    "hardware: {skus: [h100-sxm], max_gpus: 8}\nconstraints: {deadline_days: 3}\n")
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 1
    assert "no plan satisfies" in result.stdout and "needs at least" in result.stdout
    code, out = solve_json(path)
    assert code == 1 and out["status"] == "infeasible" and out["reasons"]


@pytest.mark.parametrize("args", [["missing.yaml"], ["BAD", "--format", "xml"]])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: no-such-model\njob: {tokens: 1e9, seq_len: 2048, global_batch: 8}\n")
    argv = [str(tmp_path / a) if a.endswith(".yaml") else (str(path) if a == "BAD" else a) for a in args]
    result = runner.invoke(app, ["solve", *argv])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_unknown_model_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: no-such-model\njob: {tokens: 1e9, seq_len: 2048, global_batch: 8}\n")
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 2 and "unknown model" in result.stderr


def test_markdown_keeps_what_the_table_shows() -> None:
    """`--pareto --format markdown` carries the Pareto front, the near-optimal count and the skipped SKUs, as the
    table does."""
    table = runner.invoke(app, ["solve", str(SCENARIOS / "mixtral_8x7b_ep.yaml"), "--pareto"])
    md = runner.invoke(app, ["solve", str(SCENARIOS / "mixtral_8x7b_ep.yaml"), "--pareto", "--format", "markdown"])
    assert table.exit_code == md.exit_code == 0
    for text in ("Pareto front", "within 3% of the optimum"):
        assert text in table.stdout and text in md.stdout, text
    assert ("skipped SKUs" in table.stdout) == ("skipped SKUs" in md.stdout)


def test_markdown_ranks_against_the_best_and_catalogs_show_nothing_as_a_dash() -> None:
    """solve's Markdown carries vs_best as the table does; catalog Markdown shows an absent figure as '—', not None,
    and every GPU's source."""
    md = runner.invoke(app, ["solve", str(SCENARIOS / "gpt3_30days.yaml"), "--format", "markdown"])
    header = next(line for line in md.stdout.splitlines() if line.startswith("| rank"))
    assert header.endswith("| vs_best |")
    gpus = runner.invoke(app, ["catalog", "gpus", "--format", "markdown"])
    assert gpus.exit_code == 0 and "None" not in gpus.stdout and "| source |" in gpus.stdout.splitlines()[0]
