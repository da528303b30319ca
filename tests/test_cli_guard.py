"""The one guard every command runs in: exit 0 done, 1 no feasible plan (with its numbers), 2 bad input (one
line naming the flag), 3 an internal error (one line; `--debug` shows the traceback); a closed pipe ends
quietly with 0; user text prints literally; tables do not depend on the terminal's width."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import app

runner = CliRunner()
ESTIMATE = ["estimate", "--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8"]
HOSTILE = "[link=file:///etc/passwd]x[/link] [bold]y\x1b[31mred\x1b]0;title\x07"


def boom(*_args: object, **_kwargs: object) -> None:
    raise ZeroDivisionError("boom\nsecond line")


def test_internal_error_is_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("planner.workflows.estimate.estimate", boom)
    result = runner.invoke(app, ESTIMATE)
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error: ZeroDivisionError: boom second line" in lines[0]
    assert "--debug" in lines[0] and "Traceback" not in result.output


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("planner.workflows.estimate.estimate", boom)
    result = runner.invoke(app, ["--debug", *ESTIMATE])
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.stderr and "ZeroDivisionError: boom" in result.stderr


@pytest.mark.parametrize("args", [
    ["estimate", "--gpus", "0"],  # out of range
    ["estimate", "--no-such-flag"],
    ["solve", "x.yaml", "--format", "xml"],  # not a choice
    ["solve"],  # missing argument
    ["no-such-command"],
])
def test_usage_errors_are_one_line_naming_the_flag(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Usage:" not in result.output and "╭" not in result.output


def test_infeasible_emit_exits_1_with_the_numbers(tmp_path: Path) -> None:
    path = tmp_path / "tight.yaml"
    path.write_text("model: llama-2-7b\njob: {tokens: 200e9, seq_len: 4096, global_batch: 64}\n"
                    "hardware: {skus: [h100-sxm], max_gpus: 8}\nconstraints: {deadline_days: 3}\n")
    result = runner.invoke(app, ["solve", str(path), "--emit", "megatron"])
    assert result.exit_code == 1 and result.stdout == ""
    assert "needs at least" in result.stderr and "GPUs" in result.stderr


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_closed_pipe_exits_0_quietly(fmt: str) -> None:
    """`planner estimate ... | head`: the reader is gone before planner writes, in a machine format and in a table
    (rich's console exits 1 on a closed pipe by itself; planner's hands it to the guard)."""
    code = "from planner.cli import main; main()"
    p = subprocess.Popen([sys.executable, "-c", code, *ESTIMATE, "--format", fmt], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 0
    assert err == b""


def test_user_text_prints_literally(tmp_path: Path) -> None:
    path = tmp_path / "hostile.yaml"
    name = HOSTILE.replace("\x1b", "\\e").replace("\x07", "\\a")
    path.write_text(f'name: "{name}"\nmodel: llama-2-7b\njob: {{tokens: 2e9, seq_len: 4096, global_batch: 64}}\n'
                    "hardware: {skus: [h100-sxm]}\nconstraints: {max_gpus: 8}\n")
    for fmt in ("table", "markdown", "csv"):
        out = runner.invoke(app, ["solve", str(path), "--format", fmt]).stdout
        assert "\x1b" not in out and "\x07" not in out, fmt
        assert "\\x1b[31mred" in out or (fmt == "csv" and "\\x1b" in out), fmt
    table = runner.invoke(app, ["solve", str(path)]).stdout
    assert "[link=file:///etc/passwd]x[/link] [bold]y" in table  # markup shown, not interpreted


def test_tables_do_not_depend_on_the_terminal_width(tmp_path: Path) -> None:
    narrow = runner.invoke(app, [*ESTIMATE, "--zero", "1"], env={"COLUMNS": "40"}).stdout
    wide = runner.invoke(app, [*ESTIMATE, "--zero", "1"], env={"COLUMNS": "400"}).stdout
    assert narrow == wide and "…" not in narrow
    assert "Hyperstack on-demand" in narrow or "on-demand" in narrow  # the cost row, whole


def test_emit_says_what_the_format_cannot_run_and_whose_plan_it_is(tmp_path: Path) -> None:
    """--emit for what the target cannot run is bad input naming the flag; a plan searched under another framework
    is emitted with a note that its memory and time there are not the plan's."""
    path = tmp_path / "fp8.yaml"
    path.write_text("model: llama-3.1-8b\njob: {tokens: 2e9, seq_len: 4096, global_batch: 64, precision: fp8}\n"
                    "implementation: {framework: torchtitan, fp8_recipe: current}\n"
                    "hardware: {skus: [h100-sxm], max_gpus: 8}\n")
    bad = runner.invoke(app, ["solve", str(path), "--emit", "torchtitan-config"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --emit torchtitan-config: fp8_recipe current")
    other = path.with_name("mcore.yaml")
    other.write_text("model: llama-3.1-8b\njob: {tokens: 2e9, seq_len: 4096, global_batch: 64}\n"
                     "hardware: {skus: [h100-sxm], max_gpus: 8}\n")
    out = runner.invoke(app, ["solve", str(other), "--emit", "torchtitan"])
    assert out.exit_code == 0 and out.stdout.lstrip().startswith(("[", "#"))
    assert "searched and timed under implementation.framework megatron-core" in out.stderr
    same = runner.invoke(app, ["solve", str(other), "--emit", "megatron"])
    assert same.exit_code == 0 and same.stderr == ""
