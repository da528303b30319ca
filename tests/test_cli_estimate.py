"""`planner estimate` end to end through the CLI: the seed numbers users know, JSON fields, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import app

runner = CliRunner()
GPT3_A100 = ["estimate", "--model", "gpt3-175b", "--gpu", "a100-40gb", "--gpus", "1024", "--recompute", "full",
             "--tokens", "300e9"]


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_gpt3_at_45_percent_hfu_takes_about_34_days() -> None:
    out = run_json(*GPT3_A100, "--hfu", "0.45")
    # 8·N·T / (1024 × 312 TFLOP/s × 0.45) ≈ 34 days, the figure quoted for GPT-3 on A100s
    assert out["time"]["days"] == pytest.approx(34.0, rel=0.05)
    assert out["time"]["hfu"] == pytest.approx(0.45)
    # HFU counts the recompute forward; MFU is about 3/4 of it with full recompute
    assert out["time"]["mfu"] == pytest.approx(0.45 * 3 / 4, rel=0.02)
    # 30 days instead: GPUs scale inversely with time → about 1,154 GPUs
    assert 1024 * out["time"]["days"] / 30 == pytest.approx(1154, rel=0.05)


def test_mfu_mode_counts_model_flops_only() -> None:
    hfu = run_json(*GPT3_A100, "--hfu", "0.45")
    mfu = run_json(*GPT3_A100, "--mfu", "0.45")
    # the same utilisation against fewer FLOPs (no recompute) gives a shorter run, by about 6/8
    assert mfu["time"]["days"] / hfu["time"]["days"] == pytest.approx(0.75, rel=0.02)


def test_twenty_bytes_per_parameter_rule() -> None:
    out = run_json("estimate", "--model", "gpt3-175b", "--gpu", "a100-80gb", "--gpus", "8", "--hfu", "0.45")
    assert out["params"]["total"] == 174_604_259_328
    assert out["rules_of_thumb"]["state_bytes_20_per_param"] / 1e12 == pytest.approx(3.5, rel=0.01)
    assert out["rules_of_thumb"]["min_gpus_for_state"] == 44


def test_json_has_the_promised_fields() -> None:
    out = run_json("estimate", "--model", "llama-2-7b", "--gpu", "a100-80gb", "--gpus", "8", "--zero", "3",
                   "--recompute", "full", "--micro-batch", "1", "--seq", "4096")
    for key in ("weights", "gradients", "optimizer", "activations", "buffers", "reserve", "total"):
        assert isinstance(out["memory"]["bytes"][key], int)
    mem = out["memory"]
    assert mem["bytes"]["total"] == sum(v for k, v in mem["bytes"].items() if k != "total")
    assert mem["fits"] == (mem["bytes"]["total"] <= mem["capacity_bytes"])
    assert out["params"]["total"] == 6_738_415_616
    assert out["params"]["active"] == out["params"]["total"]
    assert out["flops"]["hardware_per_step"] > out["flops"]["model_per_step"] > 0
    # the count and its label agree: causal attention scores at half (planner.model.flops)
    from planner.catalog import get_model
    from planner.model.flops import step_flops

    half = step_flops(get_model("llama-2-7b"), 4096, out["flops"]["tokens_per_step"], "full")
    assert out["flops"]["model_per_step"] == pytest.approx(half.model)
    assert "half" in out["flops"]["attention"]
    for key in ("step_seconds", "mfu", "hfu", "tflops_per_gpu", "days", "gpu_hours", "breakdown"):
        assert key in out["time"]
    assert "usd" in out["cost"]
    assert out["layout"]["dp"] == 8


def test_zero3_shards_state_over_data_parallel_ranks() -> None:
    z0 = run_json("estimate", "--model", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--zero", "0")
    z3 = run_json("estimate", "--model", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8", "--zero", "3")
    n = z0["params"]["total"]
    # Megatron bf16 with fp32 main grads: 2 + 4 + 12 B/param unsharded (formulas §4)
    state0 = sum(z0["memory"]["bytes"][k] for k in ("weights", "gradients", "optimizer"))
    assert state0 == pytest.approx(18 * n, rel=0.01)
    state3 = sum(z3["memory"]["bytes"][k] for k in ("weights", "gradients", "optimizer"))
    assert state3 == pytest.approx(18 * n / 8, rel=0.01)


def test_inference_footprint() -> None:
    out = run_json("estimate", "--model", "llama-3-70b", "--gpu", "h100-sxm", "--inference", "--batch", "16",
                   "--context", "8192", "--tp", "8")
    b = out["memory"]["bytes"]
    # GQA: 80 layers × 2 (K,V) × 8 KV heads × 128 × 2 B per token, one KV head per TP rank
    assert b["kv_cache"] == 80 * 2 * 1 * 128 * 2 * 16 * 8192
    assert b["weights"] == math.ceil(70_553_706_496 * 2 / 8)
    assert b["rule_of_thumb"] == math.ceil(1.2 * b["weights"])


def test_table_output_names_units() -> None:
    result = runner.invoke(app, ["estimate", "--model", "llama-2-7b", "--gpu", "a100-80gb", "--gpus", "8"])
    assert result.exit_code == 0, result.output
    assert "GiB = 2^30 bytes" in result.output


def test_scenario_file_and_flag_override(tmp_path: Path) -> None:
    sc = tmp_path / "s.yaml"
    sc.write_text(
        "model: llama-2-7b\njob: {tokens: 2e12, seq_len: 4096, global_batch: 1024}\n"
        "layout: {tp: 2, zero: 1}\nestimate: {gpu: h100-sxm, gpus: 64}\n"
    )
    out = run_json("estimate", str(sc))
    assert out["layout"]["tp"] == 2 and out["layout"]["dp"] == 32 and out["seq"] == 4096
    out = run_json("estimate", str(sc), "--tp", "4")
    assert out["layout"]["tp"] == 4 and out["layout"]["dp"] == 16


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "llama-2-7c", "--gpu", "h100"], "did you mean"),
        (["--model", "llama-2-7b", "--gpu", "h10"], "did you mean"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--tp", "3"], "tp"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--gpus", "16", "--tp", "16"], "spans nodes"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--gpus", "12", "--tp", "8"], "--gpus"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--gpus", "0"], "--gpus"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--gpus", "-4"], "--gpus"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8", "--global-batch", "12", "--micro-batch", "1"],
         "--global-batch: 12 is not divisible"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--hfu", "0.4", "--mfu", "0.4"], "--mfu"),
        (["--model", "llama-2-7b", "--gpu", "h100", "--ep", "2", "--gpus", "2"], "ep"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["estimate", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_bad_scenario_names_file_and_key(tmp_path: Path) -> None:
    sc = tmp_path / "bad.yaml"
    sc.write_text("model: llama-2-7b\njob: {tokens: 1e12, seq_len: 4096, global_batch: 64, typo_key: 1}\n")
    result = runner.invoke(app, ["estimate", str(sc)])
    assert result.exit_code == 2
    assert str(sc) in result.output and "job.typo_key" in result.output
    sc.write_text("model: [unclosed\n")
    result = runner.invoke(app, ["estimate", str(sc)])
    assert result.exit_code == 2 and "not valid YAML" in result.output
    result = runner.invoke(app, ["estimate", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_model_config_flag(tmp_path: Path) -> None:
    cfg = Path(__file__).parent / "fixtures" / "hf_configs" / "llama-2-7b.json"
    out = run_json("estimate", "--model-config", str(cfg), "--gpu", "a100-80gb", "--gpus", "8")
    assert out["params"]["total"] == 6_738_415_616
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["estimate", "--model-config", str(bad), "--gpu", "a100-80gb"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_inline_model_errors_name_the_missing_keys(tmp_path: Path) -> None:
    sc = tmp_path / "inline.yaml"
    sc.write_text("model: {layers: 2, hidden: 64}\njob: {tokens: 1e9, seq_len: 128, global_batch: 8}\n")
    result = runner.invoke(app, ["estimate", str(sc), "--gpu", "h100"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {sc}: model: missing required keys heads, ffn_hidden, vocab, max_seq"
    one = tmp_path / "one.yaml"
    one.write_text("model: {name: m, layers: 2, hidden: 64, heads: 4, ffn_hidden: 256, max_seq: 128}\n"
                   "job: {tokens: 1e9, seq_len: 128, global_batch: 8}\n")
    result = runner.invoke(app, ["estimate", str(one), "--gpu", "h100"])
    assert result.exit_code == 2 and result.output.strip() == f"error: {one}: model.vocab: Field required"
    assert "function-after" not in result.output and "model.str" not in result.output


def test_framework_and_fp8_recipe_flags_set_the_implementation(tmp_path: Path) -> None:
    """`--framework` and `--fp8-recipe` are implementation.framework and implementation.fp8_recipe on the command
    line (over a scenario's keys): torchtitan's eager kernels keep more for backward than Transformer Engine's
    fused ones, so the same 8B layout needs more activation memory; a bad value is one line naming the flag."""
    args = ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--zero", "3", "--micro-batch",
            "1", "--seq", "4096"]
    te, titan = run_json(*args), run_json(*args, "--framework", "torchtitan")
    assert titan["memory"]["bytes"]["activations"] > te["memory"]["bytes"]["activations"]
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\nmodel: llama-3.1-8b\njob: {tokens: 1.0e9, seq_len: 4096, global_batch: 8}\n"
                        "implementation: {framework: torchtitan}\n")
    over = run_json("estimate", str(scenario), "--gpu", "h100", "--gpus", "8", "--zero", "3", "--micro-batch", "1",
                    "--framework", "megatron-core")
    assert over["memory"]["bytes"]["activations"] == te["memory"]["bytes"]["activations"]
    fp8 = run_json(*args, "--precision", "fp8", "--fp8-recipe", "current")
    assert fp8["time"]["step_seconds"] < te["time"]["step_seconds"]
    bad = runner.invoke(app, [*args, "--framework", "jax"])
    assert bad.exit_code == 2 and "--framework" in bad.output


def test_cp_exchange_flags_set_the_implementation() -> None:
    """`--cp-exchange` and `--cp-a2a-size` are implementation.cp_exchange and cp_a2a_size on the command line: the
    exposed all-gather costs more than the ring; the heads rule of an all-to-all is judged against the flags (one
    line naming --cp), and the hierarchical exchange without its group size is one line naming the flag."""
    args = ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--gpus", "16", "--cp", "4", "--seq", "32768",
            "--global-batch", "16"]
    ring = run_json(*args, "--cp-exchange", "ring")
    gathered = run_json(*args, "--cp-exchange", "te_allgather")
    assert gathered["implementation"]["cp_exchange"] == "te_allgather"
    assert gathered["time"]["breakdown"]["cp_comm"] > ring["time"]["breakdown"]["cp_comm"]
    split = run_json(*args, "--tp", "2", "--cp-exchange", "hierarchical", "--cp-a2a-size", "2")
    assert (split["implementation"]["cp_exchange"], split["implementation"]["cp_a2a_size"]) == ("hierarchical", 2)
    for extra, flag in ((["--tp", "4", "--cp-exchange", "ulysses"], "--cp:"),
                        (["--cp-exchange", "hierarchical"], "--cp-exchange"), (["--cp-a2a-size", "2"], "--cp-a2a-size"),
                        (["--cp-exchange", "bogus"], "--cp-exchange")):
        bad = runner.invoke(app, [*args, *extra])
        assert bad.exit_code == 2 and flag in bad.output and "Value error" not in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1


def test_optimizer_state_flags_set_the_job() -> None:
    """`--master-weights` and `--moment-dtype` are job.master_weights and job.moment_dtype: Apex's 16-bit remainders
    and bf16 moments shrink the sharded optimizer state from 12 to 6 bytes a parameter; a master copy FSDP cannot
    keep, or a remainder of fp16 parameters, is one line naming the flag."""
    args = ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8", "--zero", "1", "--seq", "4096"]
    fp32 = run_json(*args)["memory"]["bytes"]["optimizer"]
    lean = run_json(*args, "--master-weights", "remainder", "--moment-dtype", "bf16")["memory"]["bytes"]["optimizer"]
    assert lean / fp32 == pytest.approx(6 / 12, rel=0.01)
    for extra in (["--framework", "fsdp"], ["--precision", "fp16"]):
        bad = runner.invoke(app, [*args, "--master-weights", "remainder", *extra])
        assert bad.exit_code == 2 and "--master-weights" in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1



def test_json_names_the_framework_knobs_it_used(tmp_path: Path) -> None:
    """`implementation`: every framework knob the models used, the scenario's choices over the framework's
    documented defaults (torchtitan's all-gather context-parallel exchange, Megatron-Core's ring)."""
    sc = tmp_path / "s.yaml"
    sc.write_text("name: knobs\nmodel: llama-3.1-8b\njob: {seq_len: 8192, global_batch: 64, tokens: 1.0e10}\n"
                  "implementation: {framework: torchtitan, kv_repeat: true}\n"
                  "layout: {dp: 4, cp: 2, zero: 3, recompute: full}\nestimate: {gpu: h100-sxm, gpus: 8}\n")
    knobs = run_json("estimate", str(sc))["implementation"]
    assert (knobs["framework"], knobs["cp_exchange"], knobs["kv_repeat"], knobs["state"]) == \
        ("torchtitan", "allgather", True, "fsdp2")
    plain = run_json("estimate", "--model", "llama-2-7b", "--gpu", "h100-sxm", "--gpus", "8")["implementation"]
    assert (plain["framework"], plain["cp_exchange"], plain["kv_repeat"]) == ("megatron-core", "ring", False)


def test_a_gpu_count_no_provider_rents_is_estimated_with_a_warning() -> None:
    """estimate is a calculator: any count is estimated, but one the search would not offer (66 GB200s: neither a
    whole NVL72 nor whole 4-GPU trays; 12 H100s: not whole 8-GPU nodes) says so and what a provider rents."""
    from planner import EstimateRequest, estimate
    from planner.report.dicts import warnings_list

    for gpu, n, rents in (("gb200", 66, 68), ("h100", 12, 16)):
        ev = estimate(EstimateRequest(model="llama-2-7b", gpu=gpu, gpus=n, layout={"tp": 2}))
        w = [x for x in warnings_list(ev) if x["code"] == "gpu_count"]
        assert len(w) == 1 and f"a provider rents {rents}" in w[0]["message"], (gpu, w)
    for gpu, n in (("gb200", 8), ("gb200", 144), ("h100", 16), ("h100", 4)):
        ev = estimate(EstimateRequest(model="llama-2-7b", gpu=gpu, gpus=n))
        assert ev.unsold_count is None, (gpu, n)
