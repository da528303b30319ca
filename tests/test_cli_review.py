"""`planner review` end to end on real launch files (tests/fixtures/frameworks, see test_interop_frameworks.py
for their sources): the verdict, the findings each one earns, the better plan in the input's own format, and
the exit codes (0 legal and fits, 1 does not fit or breaks a rule, 2 bad input). Crafted variants add one
flag to a real file to provoke one finding each."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from planner.catalog import get_model
from planner.cli import app
from planner.interop.deepspeed import parse_deepspeed_config
from planner.interop.megatron import parse_megatron_args
from planner.interop.published import reference_dir
from planner.interop.torchtitan import parse_torchtitan_toml

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"
GPT3 = (FIXTURES / "megatron_gpt3_175b.sh").read_text()
GPT3_ON_A100 = ["--model", "gpt3-175b", "--gpu", "a100-80gb", "--gpus", "1024"]
runner = CliRunner()

def review(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["review", *args, "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def codes(out: dict[str, Any], severity: str | None = None) -> set[str]:
    return {f["code"] for f in out["findings"] if severity is None or f["severity"] == severity}


def finding(out: dict[str, Any], code: str) -> dict[str, str]:
    (f,) = [f for f in out["findings"] if f["code"] == code]
    return f


# --------------------------------------------------------------------------------------------
# Megatron-LM
# --------------------------------------------------------------------------------------------


def test_megatron_gpt3_175b_launch_script() -> None:
    code, out = review("--megatron-args-file", str(FIXTURES / "megatron_gpt3_175b.sh"), *GPT3_ON_A100,
                       "--tokens", "300e9")
    assert code == 0 and out["ok"] and out["memory"]["fits"] and out["legal"]
    assert (out["layout"]["tp"], out["layout"]["pp"], out["layout"]["dp"]) == (8, 16, 8)
    assert out["memory"]["headroom_bytes"] > 0 and out["memory"]["binding_stage"] == 0
    assert out["time"]["step_seconds"] > 0 and 0 < out["time"]["mfu"] < 1 and out["cost"]["usd"] > 0
    assert "--lr" in finding(out, "ignored_flags")["message"]  # listed, not silently dropped
    better = out["better"]
    assert better["speedup"] > 1 and better["format"] == "megatron"
    assert better["sku"] == "a100-80gb" and better["gpus"] == 1024 and better["layout"]["global_batch"] == 1536
    assert all(ch["key"].startswith("--") for ch in better["changes"])
    assert better["memory"]["fits"] and better["time"]["step_seconds"] == pytest.approx(
        out["time"]["step_seconds"] / better["speedup"])


def test_megatron_tp_across_nodes() -> None:
    code, out = review("--megatron-args", GPT3 + " --tensor-model-parallel-size 16 --pipeline-model-parallel-size 8",
                       *GPT3_ON_A100)
    assert code == 1 and not out["legal"]
    assert "spans nodes" in finding(out, "tp_spans_nodes")["message"]
    assert "tp_spans_nodes" in codes(out, "error")
    assert out["better"]["layout"]["tp"] <= 8  # a plan that runs, on the same 1024 GPUs


def test_megatron_deep_pipeline_with_few_micro_batches() -> None:
    # 128 sequences in micro-batches of 2 over DP 8: 8 micro-batches per step for 16 pipeline stages
    code, out = review("--megatron-args", GPT3 + " --global-batch-size 128 --micro-batch-size 2", *GPT3_ON_A100)
    assert code == 0
    bubble = finding(out, "pipeline_bubble")
    assert bubble["severity"] == "warning" and "PP 16 with 8 micro-batches" in bubble["message"]
    assert "micro_batch" in codes(out, "warning")  # micro-batch 1 doubles the micro-batches per step


def test_megatron_global_batch_not_divisible_and_too_few_gpus() -> None:
    code, out = review("--megatron-args", GPT3 + " --global-batch-size 1500", *GPT3_ON_A100)
    assert code == 1 and "1500" in finding(out, "global_batch_not_divisible")["message"]
    code, out = review("--megatron-args-file", str(FIXTURES / "megatron_gpt3_175b.sh"), "--model", "gpt3-175b",
                       "--gpu", "a100-80gb", "--gpus", "64")
    assert code == 1 and "more GPUs than given" in finding(out, "gpu_count_mismatch")["message"]
    assert out["better"]["gpus"] == 64


def test_megatron_recompute_stronger_than_needed() -> None:
    full = " --recompute-granularity full --recompute-method uniform --recompute-num-layers 1"
    code, out = review("--megatron-args", GPT3 + full, *GPT3_ON_A100)
    assert code == 0
    message = finding(out, "recompute_stronger_than_needed")["message"]
    assert "none fits" in message and "× faster" in message and "GiB unused" in message


def test_megatron_llama2_70b_quoted_strings_and_shell_variables() -> None:
    args = ["--megatron-args-file", str(FIXTURES / "megatron_llama2_70b_args.sh"), "--model", "llama-2-70b",
            "--gpu", "h100", "--gpus", "64"]
    result = runner.invoke(app, ["review", *args])
    assert result.exit_code == 2 and "NUM_GROUPS" in result.output  # shell arithmetic the reader cannot do
    code, out = review(*args, "--env", "NUM_GROUPS=8")
    assert code == 0
    # TP 8 × DP 8 with a global batch of 8 sequences: the gradient all-reduce outweighs the compute
    assert "dp_comm" in finding(out, "exposed_communication")["message"]


def test_megatron_llama3_8b_fp8_models_its_fp8_settings() -> None:
    _, out = review("--megatron-args-file", str(FIXTURES / "megatron_llama3_8b_fp8.sh"), "--model", "llama-3.1-8b",
                    "--gpu", "h100", "--gpus", "8")
    unsupported = [f for f in out["findings"] if f["code"] == "unsupported_setting"]
    assert not any("--fp8-param-gather" in f["message"] for f in unsupported)  # fp8 parameters are modelled
    assert all(f["severity"] == "warning" for f in unsupported)
    assert out["layout"]["precision"] == "fp8"


# --------------------------------------------------------------------------------------------
# DeepSpeed and torchtitan
# --------------------------------------------------------------------------------------------

DEEPSPEED = ["--deepspeed", str(FIXTURES / "deepspeed_zero3_auto_offload.json"), "--model", "llama-2-7b",
             "--gpu", "h100", "--gpus", "8", "--micro-batch", "1", "--global-batch", "64"]


def test_deepspeed_zero3_where_zero1_fits() -> None:
    code, out = review(*DEEPSPEED)
    assert code == 0 and out["layout"]["zero"] == 3
    assert "ZeRO-1 fits" in finding(out, "zero3_where_zero1_fits")["message"]
    assert "offload_param" in " ".join(f["message"] for f in out["findings"] if f["code"] == "unsupported_setting")
    text = runner.invoke(app, ["review", *DEEPSPEED, "--emit", "deepspeed"]).stdout
    cfg = parse_deepspeed_config(json.loads(text))  # paste-ready JSON, read back by the importer
    expected = out["better"]["layout"] if out["better"] else out["layout"]
    assert (cfg.micro_batch, cfg.train_batch) == (expected["micro_batch"], 64)


def test_torchtitan_llama3_8b() -> None:
    args = ["--torchtitan", str(FIXTURES / "torchtitan_llama3_8b.toml"), "--gpu", "h100", "--gpus", "64"]
    code, out = review(*args)
    assert code == 0 and out["model"] == "llama-3.1-8b" and out["layout"]["zero"] == 3
    # the op-level selective checkpoint is modelled (the torchtitan preset's selective recompute)
    assert not any("selective_ac_option" in f["message"] for f in out["findings"] if f["code"] == "unsupported_setting")
    better = out["better"]
    assert better["format"] == "torchtitan" and better["speedup"] > 1
    assert all("." in ch["key"] for ch in better["changes"])  # section.key of the TOML
    text = runner.invoke(app, ["review", *args, "--emit", "torchtitan"]).stdout
    back = parse_torchtitan_toml(tomllib.loads(text), model=get_model("llama-3.1-8b")).to_layout(64)
    assert {k: getattr(back, k) for k in better["layout"] if k != "grad_accumulation"} == {
        k: v for k, v in better["layout"].items() if k != "grad_accumulation"}


def test_torchtitan_llama3_70b_table() -> None:
    result = runner.invoke(app, ["review", "--torchtitan", str(FIXTURES / "torchtitan_llama3_70b.toml"),
                                 "--gpu", "a100-80gb", "--gpus", "64"])
    assert result.exit_code == 0, result.output
    for text in ("Per-GPU memory", "most loaded pipeline stage", "step time", "MFU", "Findings",
                 "Better on the same hardware", "Changes (torchtitan)"):
        assert text in result.stdout


# --------------------------------------------------------------------------------------------
# Scenarios, published runs, formats and exit codes
# --------------------------------------------------------------------------------------------


def test_scenario_review_reports_what_estimate_reports(tmp_path: Path) -> None:
    path = tmp_path / "review.yaml"
    path.write_text(
        "model: llama-3-70b\njob: {tokens: 1e12, seq_len: 4096, global_batch: 64}\n"
        "layout: {tp: 8, pp: 4, zero: 1, recompute: full, sequence_parallel: true, micro_batch: 1}\n"
        "estimate: {gpu: h100, gpus: 128}\n"
    )
    code, out = review(str(path))
    estimate = json.loads(runner.invoke(app, ["estimate", str(path), "--format", "json"]).stdout)
    assert code == 0 and out["memory"] == estimate["memory"] and out["time"] == estimate["time"]
    assert out["better"]["format"] == "layout" and {"pipeline_bubble", "recompute_stronger_than_needed"} <= codes(out)
    for fmt in ("csv", "markdown"):
        result = runner.invoke(app, ["review", str(path), "--format", fmt])
        assert result.exit_code == 0 and "recompute_stronger_than_needed" in result.stdout


@pytest.mark.skipif(reference_dir() is None, reason="published_runs.yaml not found (set PLANNER_REFERENCE)")
def test_published_run_measured_next_to_predicted() -> None:
    run_id = "megatron-sc21-table1-gpt-1t"
    result = runner.invoke(app, ["review", "--published", run_id, "--no-better"])
    assert result.exit_code == 0, result.output
    assert f"published run {run_id}: measured hardware TFLOP/s per GPU 163.00, predicted" in " ".join(
        result.stdout.split())
    code, out = review("--published", run_id, "--no-better")
    assert code == 0 and out["published"]["measured"] == 163 and abs(out["published"]["error"]) < 0.25
    assert runner.invoke(app, ["review", "--published", "no-such-run"]).exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--megatron-args", GPT3, "--model", "gpt3-175b", "--gpu", "a100-80gb"],  # no GPU count
        ["--megatron-args", GPT3, *GPT3_ON_A100, "--emit", "nemo"],
        ["--deepspeed", str(FIXTURES / "deepspeed_getting_started.json"), "--gpu", "h100", "--gpus", "8"],  # no model
        ["--megatron-args-file", "/nonexistent/args.sh", *GPT3_ON_A100],
    ],
)
def test_bad_input_exits_2(args: list[str]) -> None:
    result = runner.invoke(app, ["review", *args])
    assert result.exit_code == 2 and result.output.startswith("error: "), result.output


# --------------------------------------------------------------------------------------------
# planner solve --emit: the best plan in each framework's form reads back as the same layout
# --------------------------------------------------------------------------------------------

EXPRESSIBLE = {
    "megatron": "",
    "deepspeed": "cp: 1, vpp: 1, sequence_parallel: false, zero: 1, recompute: full, ",
    "torchtitan": "tp: 2, zero: 3, sequence_parallel: true, ",
}


@pytest.mark.parametrize("fmt", sorted(EXPRESSIBLE))
def test_solve_emit_round_trip(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"{fmt}.yaml"
    path.write_text(
        "model: llama-3.1-8b\njob: {tokens: 1e10, seq_len: 4096, global_batch: 64}\nhardware: {skus: [h100]}\n"
        f"layout: {{{EXPRESSIBLE[fmt]}sku: h100, gpus: 16}}\nobjective: time\n"
        + ("implementation: {framework: deepspeed}\n" if fmt == "deepspeed" else "")
    )
    plan = json.loads(runner.invoke(app, ["solve", str(path), "--format", "json"]).stdout)["plans"][0]
    result = runner.invoke(app, ["solve", str(path), "--emit", fmt])
    assert result.exit_code == 0, result.output
    m, lay = get_model("llama-3.1-8b"), plan["layout"]
    if fmt == "megatron":
        back = parse_megatron_args(result.stdout, model=m).to_layout(16)
    elif fmt == "deepspeed":
        back = parse_deepspeed_config(json.loads(result.stdout)).to_layout(16, tp=lay["tp"], pp=lay["pp"])
    else:
        back = parse_torchtitan_toml(result.stdout, model=m).to_layout(16)
    assert {k: getattr(back, k) for k in lay if k != "grad_accumulation"} == {
        k: v for k, v in lay.items() if k != "grad_accumulation"}
