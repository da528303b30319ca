"""The hostile inputs of the input-safety review, one by one, through the CLI: each is refused with exit 2 and
one line naming the flag (or file and key), answered with exit 1 and its reason, or flagged; none crashes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from planner import safe_yaml
from planner.catalog import get_model
from planner.cli import app
from planner.interop.published import PACKAGED_REFERENCE
from planner.scenario import FixedLayout
from planner.schema import Layout
from planner.workloads.training.legality import layout_problems

runner = CliRunner()
SCENARIO = ("model: llama-2-7b\njob: {tokens: 2e9, seq_len: 4096, global_batch: 64}\n"
            "hardware: {skus: [h100-sxm], max_gpus: 8}\n")
ESTIMATE = ["estimate", "--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8"]
SHARED_RUNS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "published_runs.yaml"


def refused(args: list[str], *expected: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: "), line
    for text in expected:
        assert text in line, line
    return line


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("answers") / "s.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.mark.parametrize(("flag", "target", "expected"), [
    ("--plots", "/etc/passwd/x", "cannot write there"),
    ("--plots", "/proc/planner", "cannot write there"),
    ("--html", "/nonexistent-folder/r.html", "does not exist"),
    ("--html", "/tmp", "is a directory"),
    ("--out", "/nonexistent-folder/r.csv", "does not exist"),
    ("--out", "/etc/passwd/r.csv", "is not a directory"),
])
def test_output_targets_checked_before_any_work(scenario: Path, flag: str, target: str, expected: str) -> None:
    result = runner.invoke(app, ["compare", str(scenario), flag, target])
    assert result.exit_code == 2 and result.stdout == ""  # nothing computed, nothing printed
    assert result.stderr.startswith(f"error: {flag} {target}: ") and expected in result.stderr


def test_schema_out_checked(tmp_path: Path) -> None:
    refused(["schema", "--out", str(tmp_path)], "--out", "is a directory")
    refused(["schema", "--out", str(tmp_path / "missing" / "s.json")], "does not exist")
    assert runner.invoke(app, ["schema", "--out", str(tmp_path / "s.json")]).exit_code == 0


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "0", "1e40"])
@pytest.mark.parametrize("command", [ESTIMATE, ["review", "--deepspeed", "{}", "--model", "llama-2-7b", "--gpu",
                                                "h100", "--gpus", "8", "--no-better"]])
def test_tokens_finite_and_physical(value: str, command: list[str]) -> None:
    refused([*command, "--tokens", value], "--tokens")


@pytest.mark.parametrize(("flag", "value"), [("--gpus", "99999999999999999999"), ("--seq", "99999999999"),
                                             ("--global-batch", "1e20"), ("--context", "1000000000000")])
def test_counts_bounded(flag: str, value: str) -> None:
    refused([*ESTIMATE, flag, value], flag)


@pytest.mark.parametrize(("args", "flag"), [(["--margin", "inf"], "--margin"), (["--workers", "100000"], "--workers"),
                                            (["--top-k", "1000000000"], "--top-k"),
                                            (["--time-limit", "1e300"], "--time-limit")])
def test_solve_knobs_bounded(scenario: Path, args: list[str], flag: str) -> None:
    refused(["solve", str(scenario), *args], flag)


def test_compare_sweep_lists_capped(scenario: Path) -> None:
    refused(["compare", str(scenario), "--deadline", ",".join(str(d) for d in range(1, 20_001))],
            "--deadline", "20,000 points; at most 1,000")
    refused(["compare", str(scenario), "--deadline", "1e9"], "--deadline", "up to 3650")
    refused(["compare", str(scenario), "--budget", "1..1e12:1"], "--budget", "at most 1,000")
    for flag in ("--deadline", "--budget", "--kinds"):  # an empty value is refused, not read as the flag left out
        refused(["compare", str(scenario), flag, " "], flag, "empty")


def test_inference_tp_must_divide_heads() -> None:
    refused(["estimate", "--model", "llama-3-70b", "--gpu", "h100", "--tp", "3", "--inference"],
            "tp: 3 does not divide heads (64)")
    assert runner.invoke(app, ["estimate", "--model", "llama-3-70b", "--gpu", "h100", "--tp", "8",
                               "--inference"]).exit_code == 0


def test_model_config_folder(tmp_path: Path) -> None:
    refused(["estimate", "--model-config", str(tmp_path), "--gpu", "h100", "--gpus", "8"],
            "--model-config", "a folder without a config.json")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 2,
        "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 2048}))
    assert runner.invoke(app, ["estimate", "--model-config", str(tmp_path), "--gpu", "h100", "--gpus", "8"]
                         ).exit_code == 0


MEGATRON = ("--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 2048 "
            "--max-position-embeddings 2048 --micro-batch-size 1 --global-batch-size 8 --bf16 --vocab-size 32000")


@pytest.mark.parametrize(("extra", "expected"), [
    ("--num-experts 8 --moe-layer-freq [1]*10000000000", "a layer pattern has at most 1,024"),
    ("--num-experts 8 --moe-layer-freq 99999999999999", "a layer pattern has at most 1,024"),
    ("--seq-length 99999999999999999999", "--seq-length"),
    ("--global-batch-size 99999999999999999999", "--global-batch-size"),
])
def test_megatron_pathological_values(extra: str, expected: str) -> None:
    refused(["review", "--megatron-args", f"{MEGATRON} {extra}", "--gpu", "h100", "--gpus", "8", "--no-better"],
            expected)


def test_launcher_gpu_count_mismatch() -> None:
    shape = MEGATRON.replace("--num-layers 4", "--num-layers 16")
    script = (f"torchrun --nproc_per_node 8 --nnodes 1 pretrain_gpt.py {shape} "
              "--tensor-model-parallel-size 8 --pipeline-model-parallel-size 16")
    result = runner.invoke(app, ["review", "--megatron-args", script, "--gpu", "h100", "--gpus", "1024",
                                 "--no-better", "--format", "json"])
    (finding,) = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "gpu_count_mismatch"]
    assert "starts 8 GPUs" in finding["message"] and "1024" in finding["message"]


def test_fixed_micro_batch_that_splits_no_batch_is_infeasible(tmp_path: Path) -> None:
    path = tmp_path / "mb3.yaml"
    path.write_text(SCENARIO + "layout: {micro_batch: 3}\n")
    result = runner.invoke(app, ["solve", str(path)])
    assert result.exit_code == 1 and "not divisible by dp·micro_batch" in result.stdout + result.stderr


def test_many_nodes_refused_early(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("model: [" + "1," * (safe_yaml.MAX_NODES + 10) + "]\n")
    refused(["solve", str(path)], str(path), f"more than {safe_yaml.MAX_NODES:,} keys and values")


def test_published_runs_ship_with_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (PACKAGED_REFERENCE / "published_runs.yaml").is_file()
    if SHARED_RUNS.is_file():  # the shipped copy is the reference, byte for byte
        assert (PACKAGED_REFERENCE / "published_runs.yaml").read_bytes() == SHARED_RUNS.read_bytes()
    monkeypatch.setenv("PLANNER_REFERENCE", str(PACKAGED_REFERENCE))
    result = runner.invoke(app, ["review", "--published", "megatron-sc21-table1-gpt-1t", "--no-better"])
    assert result.exit_code == 0 and "measured" in result.stdout


README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_scenario_examples_run_as_written() -> None:
    """The README's `planner estimate|review scenarios/...` lines are accepted (no shipped scenario has an
    `estimate:` block, so each names its GPU and count)."""
    import shlex

    lines = [line.split("#")[0].split() for line in README.read_text().splitlines()
             if line.startswith(("planner estimate scenarios/", "planner review scenarios/"))]
    assert len(lines) >= 2
    root = README.parent
    for words in lines:
        args = [str(root / w) if w.startswith("scenarios/") else w for w in words[1:]]
        if args[0] == "review":
            args.append("--no-better")
        result = runner.invoke(app, args)
        assert result.exit_code in (0, 1), (shlex.join(words), result.stderr)


def test_emit_deepspeed_says_what_the_json_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "ds.yaml"
    path.write_text(SCENARIO + "layout: {tp: 2, pp: 2, vpp: 2}\n")
    result = runner.invoke(app, ["solve", str(path), "--emit", "deepspeed"])
    assert result.exit_code == 0 and json.loads(result.stdout)["train_batch_size"] == 64
    assert "cannot hold TP2, PP2, VPP2" in result.stderr


@pytest.mark.parametrize("command", [[], ["estimate"], ["review"], ["solve"], ["compare"], ["schema"],
                                     ["catalog", "models"]])
def test_piped_help_shows_whole_option_names_and_no_bool_metavar(command: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "--help" in result.stdout
    assert "<bool>" not in result.stdout and "…" not in result.stdout and "<int" not in result.stdout


def test_schema_format() -> None:
    import yaml

    as_json = json.loads(runner.invoke(app, ["schema"]).stdout)
    assert yaml.safe_load(runner.invoke(app, ["schema", "--format", "yaml"]).stdout) == as_json
    refused(["schema", "--format", "xml"], "--format")
    # an overlap share reads true/false as a switch (README): the schema takes them too, other numbers do not
    eff = as_json["$defs"]["EfficiencyOverride"]["properties"]
    assert {"type": "boolean"} in eff["tp_overlap"]["anyOf"] and {"type": "boolean"} not in eff["gemm"]["anyOf"]
    from planner import Scenario

    Scenario.model_validate({"model": "llama-2-7b", "job": {"tokens": 1e9, "seq_len": 2048, "global_batch": 8},
                             "efficiency": {"tp_overlap": True}})


@pytest.mark.parametrize(("flag", "content", "expected"), [
    ("--deepspeed", "[" * 100_000, "nested too deeply"),
    ("--torchtitan", "a=" + "[" * 10_000, "nested too deeply"),
    ("--deepspeed", "/dev/zero", "larger than"),
    ("--torchtitan", "/dev/zero", "larger than"),
    ("--megatron-args-file", "/dev/zero", "larger than"),
    ("--model-config", "/dev/zero", "larger than"),
])
def test_framework_files_deep_or_endless(tmp_path: Path, flag: str, content: str, expected: str) -> None:
    path = Path(content) if content.startswith("/dev/") else tmp_path / "f"
    if not content.startswith("/dev/"):
        path.write_text(content)
    refused(["review", flag, str(path), "--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8", "--no-better"]
            if flag != "--model-config" else ["estimate", flag, str(path), "--gpu", "h100", "--gpus", "8"],
            str(path), expected)


@pytest.mark.parametrize(("command", "path", "other"), [
    ("solve", "scenarios/serving/mix.yaml", "planner serve"),
    ("compare", "scenarios/portfolio_2027.yaml", "planner schedule"),  # compare reads serving scenarios too
    ("solve", "scenarios/portfolio_2027.yaml", "planner schedule"),
])
def test_another_commands_input_names_that_command(command: str, path: str, other: str) -> None:
    refused([command, path], f"run `{other} {path}`")


@pytest.mark.parametrize(("extra", "expected"), [
    ("job: {tokens: 2e9, seq_len: 4096, global_batch: 64, master_weights: remainder}\n"
     "implementation: {framework: torchtitan}\n", ("job.master_weights remainder", "torchtitan", "only fp32")),
    ("job: {tokens: 2e9, seq_len: 4096, global_batch: 64, optimizer: adam8bit, moment_dtype: bf16}\n",
     ("moment_dtype bf16", "adam8bit")),
    ("job: {tokens: 2e9, seq_len: 4096, global_batch: 64, moment_dtype: fp4}\n", ("job.moment_dtype",)),
    ("job: {tokens: 2e9, seq_len: 4096, global_batch: 64, precision: fp16, master_weights: remainder}\n",
     ("master_weights remainder", "fp16")),
])
def test_an_optimizer_state_a_framework_cannot_keep_is_refused(tmp_path: Path, extra: str,
                                                               expected: tuple[str, ...]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: llama-2-7b\nhardware: {skus: [h100-sxm], max_gpus: 8}\n" + extra)
    refused(["solve", str(path)], str(path), *expected)


def test_a_narrowed_optimizer_state_is_planned_with(tmp_path: Path) -> None:
    """Apex's bf16 optimizer state (no master, bf16 moments) reaches the plan: less optimizer memory than fp32."""
    peaks = []
    for state in ("", ", master_weights: none, moment_dtype: bf16"):
        path = tmp_path / "s.yaml"
        path.write_text(SCENARIO.replace("global_batch: 64", "global_batch: 64" + state)
                        + "layout: {sku: h100-sxm, gpus: 8, tp: 1, pp: 1, zero: 1, micro_batch: 1}\n")
        result = runner.invoke(app, ["solve", str(path), "--format", "json"])
        assert result.exit_code == 0, result.output
        plan = json.loads(result.stdout)["plans"][0]
        peaks.append(plan["memory"]["bytes"]["optimizer"])
    assert peaks[1] < peaks[0] / 2


@pytest.mark.parametrize("command", ["estimate", "solve", "review"])
def test_errors_found_after_reading_name_the_file_and_key(tmp_path: Path, command: str) -> None:
    """A value the scenario file holds but the model rules out (a sequence beyond GPT-3's learned positions, an
    offload count of every layer) is one line naming the file and the key; the same value from a flag names the
    flag."""
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodel: gpt3-175b\njob: {tokens: 1e9, seq_len: 4096, global_batch: 64}\n"
                    "estimate: {gpu: h100-sxm, gpus: 64}\nhardware: {skus: [h100-sxm], max_gpus: 64}\n")
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert f"{path}: job.seq_len: 4096" in result.output
    path.write_text(path.read_text().replace("seq_len: 4096", "seq_len: 2048")
                    + "implementation: {activation_offload_layers: 96}\n")
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 2 and f"{path}: implementation.activation_offload_layers: 96" in result.output
    if command == "estimate":
        result = runner.invoke(app, [command, "--model", "gpt3-175b", "--gpu", "h100", "--gpus", "8", "--seq", "4096"])
        assert result.exit_code == 2 and "error: --seq: 4096" in result.output
        path.write_text(path.read_text().replace("activation_offload_layers: 96", "activation_offload_layers: 4")
                        + "layout: {tp: 3}\n")
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2 and f"{path}: estimate.gpus: 64 is not divisible" in result.output
        result = runner.invoke(app, [command, str(path), "--gpus", "62"])
        assert result.exit_code == 2 and "error: --gpus: 62 is not divisible" in result.output


def test_a_broken_layout_rule_names_where_each_value_came_from(tmp_path: Path) -> None:
    """Each broken divisibility rule names the key that set the value: the scenario's `layout.tp` (with the file),
    the flag `--tp` when a flag overrode it, `job.global_batch` or `--global-batch` for the batch."""
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "layout: {tp: 3}\nestimate: {gpu: h100-sxm, gpus: 24}\n")
    line = refused(["estimate", str(path)], f"error: {path}: layout.tp: 3 does not divide heads (32)",
                   "layout.tp: 3 does not divide the node size (8)")
    assert "--tp" not in line
    line = refused(["estimate", str(path), "--tp", "6", "--gpus", "48"], "error: --tp: 6 does not divide heads (32)")
    assert str(path) not in line
    refused(["estimate", str(path), "--tp", "2", "--gpus", "48"],
            f"error: {path}: job.global_batch: 64 is not divisible by dp·micro_batch (24·1 = 24)")
    refused(["estimate", str(path), "--tp", "2", "--gpus", "48", "--global-batch", "63"],
            "error: --global-batch: 63 is not divisible")
    refused(["estimate", str(path), "--tp", "8", "--pp", "3", "--vpp", "2", "--gpus", "48"], "--pp·--vpp: 3·2: ")


def test_an_unknown_gpu_names_the_key_that_gave_it(tmp_path: Path) -> None:
    """hardware.skus, hardware.max_gpus and layout.sku each name themselves (with the file) for a GPU that is
    neither the catalog's nor the scenario's own."""
    path = tmp_path / "s.yaml"
    for hardware, key in (("{skus: [h100-sxn]}", "hardware.skus"),
                          ("{skus: [h100-sxm], max_gpus: {h100-sxn: 8}}", "hardware.max_gpus"),
                          ("{skus: all, max_gpus: {h100-sxn: 8}}", "hardware.max_gpus")):
        path.write_text(SCENARIO.replace("hardware: {skus: [h100-sxm], max_gpus: 8}", f"hardware: {hardware}"))
        refused(["solve", str(path)], f"error: {path}: {key}: unknown GPU 'h100-sxn'")
    path.write_text(SCENARIO.replace("skus: [h100-sxm], max_gpus: 8", "skus: all, max_gpus: 8")
                    + "layout: {sku: h100-sxn}\n")
    refused(["solve", str(path)], f"error: {path}: layout.sku: unknown GPU 'h100-sxn'")


@pytest.mark.parametrize(("layout", "expected"), [
    ("{recompute: selective, recompute_num_layers: 2}", "recompute_num_layers needs recompute: full"),
    ("{recompute: none, recompute_method: block}", "recompute_method needs recompute: full"),
    ("{pp: 1, vpp: 2}", "vpp: 2 virtual stages need pp > 1"),
    ("{tp: 1, sequence_parallel: true}", "sequence_parallel: needs tp > 1"),
    ("{tp: 4, expert_tp: 8}", "expert_tp: 8 does not divide tp (4)"),
    ("{gpus: 8, tp: 2, pp: 2, dp: 4, cp: 1}", "gpus: tp·pp·dp·cp = 2·2·4·1 = 16, not 8"),
    ("{dp: 4, cp: 1, dp_shard: 3}", "dp_shard: 3 does not divide dp·cp (4)"),
])
def test_fixed_fields_that_contradict_each_other_are_bad_input(tmp_path: Path, layout: str, expected: str) -> None:
    """A contradiction between fixed keys is the scenario's fault whatever the model: exit 2 naming the file and
    key, not a search that reports no legal layout (exit 1)."""
    path = tmp_path / "contradiction.yaml"
    path.write_text(SCENARIO + f"layout: {layout}\n")
    refused(["solve", str(path)], str(path), "layout", expected)


@pytest.mark.parametrize("fields", [
    {"recompute": "selective", "recompute_num_layers": 2}, {"pp": 1, "vpp": 2},
    {"tp": 1, "sequence_parallel": True}, {"tp": 4, "expert_tp": 8, "ep": 2, "dp": 2},
    {"tp": 2, "pp": 2, "dp": 4, "cp": 1}, {"dp": 4, "cp": 1, "dp_shard": 3},
])
def test_a_contradiction_reads_the_same_at_load_and_in_the_legality_checks(fields: dict[str, Any]) -> None:
    """One rule, one message: what a fixed layout refuses on load is what the legality checks say of the same
    layout built whole (planner.layout_rules)."""
    gpus = 8 if "cp" in fields else None  # the one rule that needs the job's GPU count
    with pytest.raises(ValidationError) as err:
        FixedLayout.model_validate({**fields, **({"gpus": gpus} if gpus else {})})
    message = err.value.errors()[0]["msg"].removeprefix("Value error, ")
    layout = Layout.model_validate({"global_batch": 64, **fields})
    assert message in layout_problems(get_model("mixtral-8x7b"), layout, gpus=gpus)


def test_consistent_fixed_fields_still_load(tmp_path: Path) -> None:
    path = tmp_path / "fine.yaml"
    path.write_text(SCENARIO + "layout: {gpus: 8, tp: 2, pp: 1, dp: 4, cp: 1, recompute: full, "
                    "recompute_num_layers: 2, recompute_method: block}\n")
    result = runner.invoke(app, ["solve", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plans"][0]
    assert plan["layout"]["recompute_num_layers"] == 2


def test_a_key_with_a_control_character_stays_on_its_line(tmp_path: Path) -> None:
    """A YAML key may hold a newline ("a\\nb") or be empty: the error names it escaped or quoted, one line each."""
    path = tmp_path / "keys.yaml"
    path.write_text(SCENARIO.replace("hardware: {", 'layout: {"a\\nb": 1}\nhardware: {'))
    refused(["solve", str(path)], "layout.a\\nb: unknown key")
    path.write_text(SCENARIO.replace("hardware: {", 'layout: {"": 2}\nhardware: {'))
    refused(["solve", str(path)], 'layout."": unknown key')


@pytest.mark.parametrize("value", [1e20, 2**25, {"mean": math.inf}, {"mean": 100, "p99": 1e30},
                                   {"histogram": [[1e20, 1]]}])
def test_request_lengths_beyond_any_sequence_are_refused(tmp_path: Path, value: Any) -> None:
    """A request of 1e20 tokens (or an infinite mean) was an internal error (an int too large for C): lengths stop
    at planner.limits.MAX_SEQ, named by key."""
    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "scenarios" / "serving" / "llama70b.yaml").read_text())
    doc["serving"]["traffic"]["input"] = value
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    refused(["serve", str(path)], str(path), "serving.traffic.input")


@pytest.mark.parametrize(("extra", "expected"), [
    # a rate or a utilisation at a subnormal value used to overflow the step time (exit 3, NumPy warnings)
    ("efficiency: {hfu: 1.0e-20}\n", "efficiency.hfu: Input should be greater than or equal to 0.001"),
    ("efficiency: {mfu: 1.0e-308}\n", "efficiency.mfu"),
    ("gpus: [{name: g1, base: h100-sxm, hbm_tb_s: 1.0e-300}]\n", "gpus.0.hbm_tb_s"),
    ("gpus: [{name: g1, base: h100-sxm, peak_tflops: {bf16: 1.0e-300}}]\n", "gpus.0.peak_tflops.bf16"),
    ("gpus: [{name: g1, base: h100-sxm, intra_node_gbs: 1.0e-300}]\n", "gpus.0.intra_node_gbs"),
    ("gpus: [{name: g1, base: h100-sxm, efficiency: {gemm: 1.0e-300}}]\n", "efficiency.gemm"),
    ("reliability: {checkpoint: {write: {per_node_gb_per_s: 1.0e-300}}}\n", "per_node_gb_per_s"),
    # a YAML boolean is not a number: `hfu: true` would have planned at 100 % utilisation
    ("efficiency: {hfu: true}\n", "efficiency.hfu: expected a number, got a boolean"),
    ("constraints: {deadline_days: true}\n", "constraints.deadline_days: expected a number, got a boolean"),
    ("pricing: {pue: true}\n", "pricing.pue: expected a number"),
])
@pytest.mark.parametrize("command", ["estimate", "solve"])
def test_rates_have_physical_floors_and_booleans_are_not_numbers(tmp_path: Path, extra: str, expected: str,
                                                                    command: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "estimate: {gpu: h100-sxm, gpus: 8}\n" + extra)
    refused([command, str(path)], expected)


def test_the_lowest_legal_rates_give_finite_answers_without_warnings(tmp_path: Path) -> None:
    """Every floor at once on a large job: absurd but finite numbers, exit 0, nothing on stderr."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: gpt3-175b\njob: {tokens: 1.0e15, seq_len: 2048, global_batch: 4194304}\n"
        "hardware: {skus: [g1], max_gpus: 8}\nestimate: {gpu: g1, gpus: 1}\nefficiency: {hfu: 0.001}\n"
        "gpus: [{name: g1, base: h100-sxm, peak_tflops: {bf16: 0.001, fp16: 0.001}, hbm_tb_s: 0.001, "
        "intra_node_gbs: 0.001, network_gbps: 0.001, memory_gib: 1000}]\n")
    result = runner.invoke(app, ["estimate", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = json.loads(result.stdout)
    assert math.isfinite(out["time"]["step_seconds"]) and math.isfinite(out["cost"]["usd"])


@pytest.mark.parametrize(("replace", "expected"), [
    # a union's branches used to print one line each: the key, then what it takes
    (("model: llama-2-7b", "model: 5"), "model: Input should be a valid string or a valid dictionary"),
    (("max_gpus: 8", "max_gpus: {h100-sxm: 0}"), "hardware.max_gpus.h100-sxm: Input should be greater than or equal"),
    (("skus: [h100-sxm]", "skus: [1]"), "hardware.skus.0: Input should be a valid string"),
    (("model: llama-2-7b", "model: nope"), "s.yaml: model: unknown model 'nope'"),
])
def test_one_mistake_one_line_naming_file_and_key(tmp_path: Path, replace: tuple[str, str], expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace(*replace))
    refused(["solve", str(path)], expected)


def test_a_mistake_inside_a_union_key_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "reliability: {failures_per_1000_node_days: 0}\n")
    refused(["solve", str(path)], "reliability.failures_per_1000_node_days: Input should be greater than 0")


def test_an_unknown_model_in_another_job_names_that_job(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "jobs: [{name: b, model: nope2, job: {tokens: 1.0e9, seq_len: 2048, "
                               "global_batch: 8}}]\n")
    refused(["solve", str(path)], "s.yaml: jobs.b.model: unknown model 'nope2'")


def test_megatron_variables_that_double_without_end_are_refused_fast(tmp_path: Path) -> None:
    """A0=1, A1=$A0$A0, …: forty assignments would expand to a terabyte; the value is refused as it grows."""
    path = tmp_path / "args.sh"
    path.write_text("\n".join(["A0=1"] + [f"A{i}=$A{i - 1}$A{i - 1}" for i in range(1, 40)] + ["--num-layers $A39"]))
    refused(["review", "--megatron-args-file", str(path), "--model", "gpt3-175b", "--gpu", "a100-80gb", "--gpus",
             "64", "--no-better"], "expands past")


def test_deepspeed_json_with_a_key_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"
    path.write_text('{"train_batch_size": 8, "train_batch_size": 16, "train_micro_batch_size_per_gpu": 1}')
    refused(["review", "--deepspeed", str(path), "--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8",
             "--no-better"], "ds.json: key 'train_batch_size' is given twice")


def test_serving_search_needs_a_tp_size(tmp_path: Path) -> None:
    serving = Path(__file__).resolve().parents[1] / "scenarios" / "serving" / "llama70b.yaml"
    path = tmp_path / "s.yaml"
    path.write_text(serving.read_text().replace("tp: [1, 2, 4, 8]", "tp: []"))
    refused(["serve", str(path)], "serving.search.tp")


def test_portfolio_after_cycle_names_the_file(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[1] / "scenarios" / "portfolio_2027.yaml"
    data = yaml.safe_load(src.read_text())
    first = data["jobs"][0]["name"]
    data["jobs"][0]["after"] = [first]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    refused(["schedule", str(path)], "p.yaml", f"job {first}: after: forms a cycle through {first}")


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_emit_prints_the_frameworks_text_and_refuses_a_format(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    refused(["solve", str(path), "--emit", "megatron", "--format", fmt], "--emit and --format")


def test_review_emit_deepspeed_says_what_the_json_cannot_hold() -> None:
    result = runner.invoke(app, ["review", "--megatron-args", "--tensor-model-parallel-size 8 --micro-batch-size 1 "
                                 "--global-batch-size 64", "--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8",
                                 "--emit", "deepspeed", "--no-better"])
    assert json.loads(result.stdout)["train_micro_batch_size_per_gpu"] == 1
    assert "cannot hold TP8" in result.stderr


def test_markdown_cells_hold_pipes_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text('name: "a|b\\nc"\n' + SCENARIO.replace("skus: [h100-sxm]", 'skus: ["g|1"]')
                    + 'gpus: [{name: "g|1", base: h100-sxm}]\n')
    result = runner.invoke(app, ["solve", str(path), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    cells = [len(re.split(r"(?<!\\)\|", line)) for line in table]  # cells between unescaped pipes
    assert len(table) >= 3 and len(set(cells)) == 1, cells
    assert "a\\|b c" in table[2] and "g\\|1" in table[2]


def test_solve_time_limit_bounds_the_layout_evaluation_of_many_jobs(tmp_path: Path) -> None:
    """Several jobs skip the pruned search and evaluate every layout grid; the time limit now bounds that too (it
    bounded only CP-SAT): exit 1, and the reason says where the time went."""
    jobs = "".join(f"  - {{name: j{i}, model: llama-2-7b, job: {{tokens: 1.0e9, seq_len: 2048, global_batch: 64}}}}\n"
                   for i in range(3))
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "jobs:\n" + jobs)
    result = runner.invoke(app, ["solve", str(path), "--time-limit", "0.01"])
    assert result.exit_code == 1, result.output
    assert "time limit ran out while evaluating the layouts of job" in result.output


def test_deepspeed_nested_zero_key_outside_deepspeeds_schema_is_reported(tmp_path: Path) -> None:
    """DeepSpeedZeroConfig forbids keys it does not define; review lists them as it lists unknown top-level keys."""
    path = tmp_path / "ds.json"
    path.write_text('{"train_batch_size": 64, "train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true}, '
                    '"zero_optimization": {"stage": 2, "overlap_comm": true, "stage3_max_live_parameters": 1e9, '
                    '"wat": 1}}')
    result = runner.invoke(app, ["review", "--deepspeed", str(path), "--model", "llama-2-7b", "--gpu", "h100",
                                 "--gpus", "8", "--no-better", "--format", "json"])
    unknown = [f["message"] for f in json.loads(result.stdout)["findings"] if f["code"] == "unknown_setting"]
    assert unknown == ["zero_optimization.wat: not a DeepSpeed setting planner knows; not taken into account"]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"mfu": 0}, "--mfu"), ({"mfu": 2}, "--mfu"), ({"hfu": float("nan")}, "--hfu"),
    ({"layout": {"tp": 0}}, "layout.tp"), ({"layout": {"pp": "x"}}, "layout.pp"),
    ({"seq": "x"}, "--seq"), ({"reliability": "sometimes"}, "reliability"),
])
def test_the_python_api_checks_what_the_flags_check(changes: dict[str, Any], expected: str) -> None:
    """The CLI's flags are range-checked by typer; the same request built in Python meets the same checks (a tp of
    0 divided by zero, an mfu of 0 too, an unknown reliability was read as none)."""
    from planner import EstimateRequest, InputError, estimate

    with pytest.raises(InputError, match=expected) as e:
        estimate(EstimateRequest(model="llama-2-7b", gpu="h100", gpus=8, **changes))
    assert "\n" not in str(e.value)


def test_a_job_that_never_ends_has_no_cost_rather_than_an_infinite_one() -> None:
    """Checkpoints of a 10^17-parameter model outlast the time between planned stops: the expected time is
    'never' and the cost is null, with no NaN and no NumPy warning."""
    import warnings

    from planner import EstimateRequest, ModelSpec, estimate, to_dict

    model = ModelSpec(name="huge", layers=1000, hidden=4194304, heads=32768, ffn_hidden=4194304, vocab=32000,
                      max_seq=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_dict(estimate(EstimateRequest(model=model, gpu="h100", gpus=1)))
    assert out["cost"]["usd"] is None and out["time"]["days"] is None
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize(("text", "expected"), [
    ("tokens: " + "9" * 5000, "not a planner file"),  # past Python's 4,300-digit integer conversion
    ("model: " + "x" * 300, "unknown model"),  # a name too long to be a path is a catalog name
])
def test_a_scenario_value_the_system_refuses_is_bad_input(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("model: llama-2-7b", text) if text.startswith("model") else SCENARIO + text + "\n")
    refused(["solve", str(path)], expected)


def test_serving_batch_limits_are_bounded(tmp_path: Path) -> None:
    serving = Path(__file__).resolve().parents[1] / "scenarios" / "serving" / "llama70b.yaml"
    path = tmp_path / "s.yaml"
    path.write_text(serving.read_text().replace("batch_limits: [32, 64, 128, 256]", "batch_limits: [100000000]"))
    refused(["serve", str(path)], "serving.search.batch_limits.0")


def test_a_qwen3_moe_dense_layer_list_of_another_type_is_refused() -> None:
    from planner import InputError, model_from_hf_config

    cfg = {"model_type": "qwen3_moe", "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 3072,
           "num_hidden_layers": 4, "vocab_size": 1000, "max_position_embeddings": 4096, "num_experts": 8,
           "num_experts_per_tok": 2, "moe_intermediate_size": 768, "mlp_only_layers": [0, "a"]}
    with pytest.raises(InputError, match="mlp_only_layers"):
        model_from_hf_config(cfg)


@pytest.mark.parametrize(("knobs", "expected"), [
    ({"margin": float("nan")}, "--margin"), ({"num_workers": -1}, "--workers"), ({"top_k": -1}, "--top-k"),
    ({"time_limit_s": float("nan")}, "--time-limit"), ({"time_limit_s": 0}, "--time-limit"),
])
def test_solve_knobs_from_python_meet_the_flags_ranges(knobs: dict[str, Any], expected: str) -> None:
    from planner import InputError, Scenario, solve

    with pytest.raises(InputError, match=expected):
        solve(Scenario.model_validate(yaml.safe_load(SCENARIO)), **knobs)


@pytest.mark.parametrize(("sweep", "expected"), [
    ({"deadlines": [float("nan")]}, "--deadline"), ({"deadlines": [-1]}, "--deadline"), ({"budgets": [0]}, "--budget"),
    ({"deadlines": [1.0] * 1001}, "at most 1,000"),
])
def test_compare_sweeps_from_python_meet_the_flags_ranges(sweep: dict[str, Any], expected: str) -> None:
    from planner import InputError, Scenario, compare

    with pytest.raises(InputError, match=expected):
        compare(Scenario.model_validate(yaml.safe_load(SCENARIO)), **sweep)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"input_len": 0}, "--input-len"), ({"output_len": float("nan")}, "--output-len"),
    ({"requests": -1}, "--requests"), ({"concurrency": 10**7}, "--concurrency"), ({"pp": 0}, "--pp"),
])
def test_one_deployment_from_python_meets_the_flags_ranges(kwargs: dict[str, Any], expected: str) -> None:
    """A length of 0 or NaN raised a raw pydantic or NumPy error; 10^7 clients ran out of memory."""
    from planner import InputError, evaluate_deployment

    with pytest.raises(InputError, match=expected) as e:
        evaluate_deployment("llama-3.1-8b", "h100", **kwargs)
    assert "\n" not in str(e.value)


def test_solve_time_limit_bounds_the_pruned_search_of_one_job() -> None:
    """One job's pruned search checks the time limit between its batches of layouts, as the full grids do: the
    answer is 'unknown' with the job named, never a search that runs on past --time-limit."""
    from planner import load_scenario, solve

    root = Path(__file__).resolve().parent.parent
    result = solve(load_scenario(root / "scenarios" / "gpt3_30days.yaml"), time_limit_s=1e-6)
    assert result.status == "unknown" and result.solutions == []
    assert result.reasons == ["the time limit ran out while evaluating the layouts of job gpt3-30days: allow more "
                              "time (--time-limit), or narrow hardware.skus"]


@pytest.mark.parametrize(("text", "said"), [
    (SCENARIO + "objectiv: cost\n", "s.yaml: objectiv: unknown key (did you mean objective?)"),
    (SCENARIO + "objectiv: cost\ntopk: 3\n",
     "s.yaml: unknown keys objectiv (did you mean objective?), topk (did you mean top_k?)"),
    (SCENARIO.replace("max_gpus: 8", "maxgpus: 8"), "s.yaml: hardware.maxgpus: unknown key (did you mean max_gpus?)"),
    (SCENARIO.replace("model: llama-2-7b", "model: {name: m, layers: 2, hiden: 64, heads: 4, ffn_hidden: 256, "
                      "vocab: 1000, max_seq: 128}"), "s.yaml: model.hiden: unknown key (did you mean hidden?)"),
    (SCENARIO + "layout: {tp: 2, ppp: 2}\n", "s.yaml: layout.ppp: unknown key (did you mean pp?)"),
    (SCENARIO.replace("global_batch: 64", "global_batch: 64, sequence: 5"), "s.yaml: job.sequence: unknown key"),
])
def test_an_unknown_key_near_a_known_one_is_named_with_it(tmp_path: Path, text: str, said: str) -> None:
    """A key a letter or an underscore from one the mapping takes is reported with the key meant, every such key
    of one mapping in one line; a key like none of them is just unknown."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    line = refused(["solve", str(path)])
    assert line == f"error: {tmp_path}/{said}", line


def test_a_line_of_unknown_keys_names_ten_and_counts_the_rest(tmp_path: Path) -> None:
    """Thousands of unknown keys beside a misspelt one stay one short line: the close ones first."""
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "".join(f"k{i}: 1\n" for i in range(3_000)) + "objectiv: cost\n")
    line = refused(["solve", str(path)])
    assert line.startswith(f"error: {path}: unknown keys objectiv (did you mean objective?), k0, k1, ")
    assert line.endswith(", k8, and 2,991 more") and len(line) < 300, line


def test_a_brace_in_an_unknown_key_is_printed_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "objectiv: cost\n'a{keys}b': 1\n")
    line = refused(["solve", str(path)])
    assert line == f"error: {path}: unknown keys objectiv (did you mean objective?), a{{keys}}b", line


@pytest.mark.parametrize(("args", "said"), [
    (["estimate", "--model", "nope", "--gpu", "h100"], "error: --model: unknown model 'nope'"),
    (["estimate", "--model", "", "--gpu", "h100"], "error: --model: unknown model ''"),
    (["estimate", "--model", "gpt3-175b", "--gpu", "nope"], "error: --gpu: unknown GPU 'nope'"),
    (["estimate", "--inference", "--model", "llama-3.1-8b", "--gpu", "nope"], "error: --gpu: unknown GPU 'nope'"),
    (["serve", "--model", "nope", "--gpu", "h100"], "error: --model: unknown model 'nope'"),
    (["serve", "--model", "llama-3.1-8b", "--gpu", "nope"], "error: --gpu: unknown GPU 'nope'"),
    (["serve", "--model", "llama-3.1-8b", "--gpu", "h100", "--qps", "1", "--prefill-replicas", "1",
      "--decode-replicas", "1", "--decode-gpu", "nope"], "error: --decode-gpu: unknown GPU 'nope'"),
])
def test_an_unknown_name_on_the_command_line_names_its_flag(args: list[str], said: str) -> None:
    """A model or GPU name from a flag is refused naming the flag, as a scenario's is refused naming its key; an empty
    name is a name, not the current folder read as a config.json."""
    line = refused(args)
    assert line.startswith(said), line


def test_one_price_for_every_sku_says_what_the_key_takes(tmp_path: Path) -> None:
    """pricing.usd_per_gpu_hour is a price per GPU: a bare number is refused saying so, not 'a valid dictionary'."""
    path = tmp_path / "price.yaml"
    path.write_text("model: llama-2-7b\njob: {tokens: 1e10, seq_len: 4096, global_batch: 64}\n"
                    "hardware: {skus: [h100-sxm], max_gpus: 16}\npricing: {usd_per_gpu_hour: 2.5}\n")
    said = "pricing.usd_per_gpu_hour: a map of GPU to $ per GPU-hour, e.g. {h100-sxm: 2.5}, not one number"
    assert refused(["solve", str(path)]) == f"error: {path}: {said}"
