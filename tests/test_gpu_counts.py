"""The GPU counts a job may run on: whole nodes or part of one."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from planner.cli import app

runner = CliRunner()
JOB = "job: {tokens: 1.0e10, seq_len: 4096, global_batch: 64}\n"


def test_a_fixed_count_no_sku_sells_is_answered_not_a_crash(tmp_path: Path) -> None:
    """12 H100 (one and a half nodes of 8) is no plan: exit 1 with the reason (the search's slices were empty
    and its bounds indexed them)."""
    path = tmp_path / "s.yaml"
    path.write_text("model: llama-2-7b\n" + JOB + "hardware: {skus: [h100-sxm]}\n"
                    "pricing: {usd_per_gpu_hour: {h100-sxm: 3.0}}\nobjective: time\nlayout: {gpus: 12}\n")
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 1 and "no GPU count" in result.stdout + result.stderr
