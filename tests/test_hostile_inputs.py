"""Every input gets an answer: hypothesis throws valid and hostile scenarios and flag values at every
command and asserts an exit status in {0, 1, 2} (never 3, never a traceback), an error naming the file and
key or the flag for 2, and only finite numbers for 0. Time is bounded by the input limits
(planner.limits, planner.safe_yaml); benchmarks measure it, this file only keeps the examples few."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.cli import app

runner = CliRunner()
# a dozen examples per command in the suite; `make fuzz` asks for more (and fresh ones, tests/conftest.py)
FEW = settings(max_examples=int(os.environ.get("PLANNER_FUZZ_EXAMPLES", "12")), deadline=None,
               suppress_health_check=list(HealthCheck))

# A small valid scenario every command answers in well under a second: one SKU, one node.
BASE: dict[str, Any] = {
    "name": "hostile",
    "model": "llama-2-7b",
    "job": {"tokens": 2e9, "seq_len": 4096, "global_batch": 64},
    "hardware": {"skus": ["h100-sxm"], "max_gpus": 8},
    "constraints": {"deadline_days": 30},
    "estimate": {"gpu": "h100-sxm", "gpus": 8},
}
# (path of keys, for nested replacement); the leaves a user types
KEYS = [("job", "tokens"), ("job", "seq_len"), ("job", "global_batch"), ("hardware", "max_gpus"),
        ("constraints", "deadline_days"), ("constraints", "budget_usd"), ("constraints", "min_gpus"),
        ("pricing", "usd_per_gpu_hour"), ("pricing", "pue"), ("layout", "tp"), ("layout", "micro_batch"),
        ("layout", "sku"), ("efficiency", "gemm"), ("overheads", "reserve_bytes"), ("estimate", "gpus"),
        ("model",), ("top_k",), ("objective",), ("hardware", "skus"), ("unknown_key",), ("layout", "expert_tp"),
        ("implementation", "moe_token_dispatcher"), ("implementation", "attention_kernel"),
        ("implementation", "cross_entropy"), ("implementation", "activation_offload_layers"),
        ("implementation", "loss_chunks"), ("efficiency", "ep_overlap"), ("gpus",), ("name",),
        ("implementation", "cp_exchange"), ("implementation", "cp_a2a_size"), ("implementation", "cuda_graph_scope"),
        ("layout", "gpus"), ("layout", "pp"), ("layout", "dp"), ("layout", "recompute"),
        ("layout", "recompute_num_layers")]

HOSTILE_NUMBERS = st.sampled_from([0, -1, 3, 7, 1e-30, 1e20, 10**30, math.inf, -math.inf, math.nan, 2**63])
HOSTILE_TEXT = st.sampled_from(["", "inf", "nan", "-5", "1e400", "h100-sxm", "b200", "[link=file:///x]y",
                                "\x1b[31mred", "café", "../../etc/passwd", "a" * 300])
LEAF = st.one_of(HOSTILE_NUMBERS, HOSTILE_TEXT, st.booleans(), st.none(), st.integers(-(10**6), 10**6),
                 st.floats(allow_nan=True, allow_infinity=True))
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=6)


def edited(base: dict[str, Any], edits: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """A copy of `base` with each (key path, value) edit applied."""
    data = json.loads(json.dumps(base))
    for path, value in edits:
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return data


def scenario_text(edits: list[tuple[tuple[str, ...], Any]], base: dict[str, Any] = BASE) -> str:
    """`base` (the training scenario by default) with each (key path, value) edit applied, as YAML."""
    return yaml.safe_dump(edited(base, edits), allow_unicode=True)


RAW_FILES = st.one_of(
    st.binary(max_size=200),
    st.just(b"model: " + b"[" * 5000),
    st.just(("model:\n" + "".join(" " * i + "a:\n" for i in range(1, 120))).encode()),
    st.just(b"name: a\nname: b\n"),
    st.just("name: café\n".encode("latin-1")),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
# An inline model (attention variants included) whose own keys are the hostile ones.
INLINE = edited(BASE, [(("model",), {"name": "inline", "layers": 4, "hidden": 512, "heads": 8, "kv_heads": 2,
                                     "ffn_hidden": 1024, "vocab": 1000, "max_seq": 8192, "qk_norm": "head",
                                     "sliding_window": 1024, "window_layers": 2, "attention_sinks": True,
                                     "moe": {"experts": 8, "top_k": 2, "expert_ffn": 256}})])
MODEL_KEYS = [("model", k) for k in ("sliding_window", "window_layers", "attention_sinks", "qk_norm", "head_dim",
                                     "bias", "kv_heads", "layers", "max_seq")] + [("model", "moe", "top_k")]
SCENARIOS = st.one_of(
    st.lists(st.tuples(st.sampled_from(KEYS), VALUE), max_size=3).map(lambda e: scenario_text(e).encode()),
    st.lists(st.tuples(st.sampled_from(MODEL_KEYS), VALUE), max_size=2).map(
        lambda e: scenario_text(e, INLINE).encode()),
    RAW_FILES,
)


def check(args: list[str]) -> None:
    """The contract: 0, 1 or 2; no traceback; 2 says `error:` and names a file, key or flag; 0 prints finite
    numbers (JSON output is parsed with NaN and infinities refused)."""
    result = runner.invoke(app, args)
    output = result.stdout + result.stderr
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.stderr[-2000:])
    assert "Traceback" not in output and "internal error" not in output, (args, output[-2000:])
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert lines and lines[0].startswith("error: "), (args, result.stderr)
        assert len(lines) <= 11, (args, len(lines))
    if result.exit_code == 0 and "json" in args:
        json.loads(result.stdout, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))


def write(content: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="planner-hostile-"))
    path = folder / "s.yaml"
    path.write_bytes(content)
    return path


@FEW
@given(content=SCENARIOS, command=st.sampled_from(["solve", "estimate", "review", "compare"]))
def test_scenarios_every_command(content: bytes, command: str) -> None:
    path = write(content)
    extra = {"solve": ["--time-limit", "5"], "review": ["--no-better"], "estimate": [], "compare": []}[command]
    check([command, str(path), *extra, "--format", "json"])


FLAG_VALUES = st.sampled_from(["0", "-1", "1", "3", "8", "nan", "inf", "-inf", "1e400", "99999999999999999999",
                               "abc", "", "1.5", "1e15", "/", "/dev/null", "[1]*999999999"])
ESTIMATE_FLAGS = ["--gpus", "--gpus-per-node", "--tp", "--pp", "--vpp", "--dp", "--cp", "--ep", "--expert-tp", "--zero",
                  "--recompute-num-layers",
                  "--micro-batch", "--global-batch", "--seq", "--dropout", "--tokens", "--mfu", "--hfu",
                  "--precision", "--recompute", "--model", "--gpu", "--model-config", "--batch", "--context",
                  "--framework", "--fp8-recipe", "--master-weights", "--moment-dtype", "--cp-exchange", "--cp-a2a-size",
                  "--activation-offload-layers"]


@FEW
@given(flags=st.lists(st.tuples(st.sampled_from(ESTIMATE_FLAGS), FLAG_VALUES), min_size=1, max_size=3),
       inference=st.booleans())
def test_estimate_flags(flags: list[tuple[str, str]], inference: bool) -> None:
    args = ["estimate", "--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8"]
    for flag, value in flags:
        args += [flag, value]
    check(args + (["--inference"] if inference else []) + ["--format", "json"])


MEGATRON = ("--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 2048 "
            "--max-position-embeddings 2048 --micro-batch-size 1 --global-batch-size 8 --bf16 --vocab-size 32000")
MEGATRON_FLAGS = ["--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--num-experts",
                  "--moe-layer-freq", "--seq-length", "--global-batch-size", "--hidden-dropout",
                  "--num-layers-per-virtual-pipeline-stage", "--recompute-num-layers", "--nproc_per_node",
                  "--expert-tensor-parallel-size", "--moe-token-dispatcher-type", "--expert-model-parallel-size",
                  "--context-parallel-size", "--cp-comm-type", "--hierarchical-context-parallel-sizes",
                  "--multi-latent-attention", "--q-lora-rank", "--kv-lora-rank", "--qk-pos-emb-head-dim",
                  "--softmax-type", "--window-size", "--window-attn-skip-freq", "--qk-layernorm"]


@FEW
@given(flags=st.lists(st.tuples(st.sampled_from(MEGATRON_FLAGS), FLAG_VALUES), min_size=1, max_size=3),
       gpus=st.sampled_from(["1", "8", "1048576"]))
def test_review_megatron_args(flags: list[tuple[str, str]], gpus: str) -> None:
    text = MEGATRON + "".join(f" {flag} '{value}'" for flag, value in flags)
    check(["review", "--megatron-args", text, "--gpu", "h100", "--gpus", gpus, "--no-better", "--format", "json"])


OTHER = st.sampled_from([
    ["solve", "{s}", "--top-k", "{v}"], ["solve", "{s}", "--margin", "{v}"], ["solve", "{s}", "--workers", "{v}"],
    ["solve", "{s}", "--time-limit", "{v}"], ["compare", "{s}", "--deadline", "{v}"],
    ["compare", "{s}", "--budget", "{v}"], ["compare", "{s}", "--kinds", "{v}"], ["compare", "{s}", "--out", "{d}/{v}"],
    ["compare", "{s}", "--plots", "{d}/{v}/x"], ["compare", "{s}", "--html", "{d}/{v}"], ["schema", "--out", "{d}/{v}"],
    ["review", "--published", "{v}"], ["review", "--deepspeed", "{v}", "--model", "llama-2-7b", "--gpu", "h100"],
    ["review", "--torchtitan", "{v}", "--gpu", "h100", "--gpus", "8"], ["catalog", "{v}"],
    ["review", "{s}", "--tokens", "{v}", "--no-better"], ["estimate", "{s}", "--tokens", "{v}"],
])


@FEW
@given(template=OTHER, value=st.one_of(FLAG_VALUES, st.sampled_from(["1..1e9:1", "1,2,,3", "10..1:1", "/proc",
                                                                      "/etc/passwd", "on-demand,nope"])))
def test_other_flags(template: list[str], value: str) -> None:
    path = write(scenario_text([]).encode())
    # output paths stay inside the example's own folder
    check([part.replace("{s}", str(path)).replace("{d}", str(path.parent)).replace("{v}", value) for part in template])


SERVE_FLAGS = ["--tp", "--pp", "--concurrency", "--qps", "--input-len", "--output-len", "--weight-dtype",
               "--kv-dtype", "--engine", "--requests", "--seed", "--prefill-replicas", "--decode-replicas",
               "--decode-gpu", "--decode-tp", "--model", "--gpu"]


@FEW
@given(flags=st.lists(st.tuples(st.sampled_from(SERVE_FLAGS), FLAG_VALUES), min_size=1, max_size=3))
def test_serve_flags(flags: list[tuple[str, str]]) -> None:
    args = ["serve", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--requests", "50"]
    for flag, value in flags:
        args += [flag, value]
    check([*args, "--format", "json"])


# A small serving scenario: one SKU, a few TP and batch choices, a short simulation.
SERVING: dict[str, Any] = {
    "name": "hostile-serving",
    "model": "llama-3-8b",
    "hardware": {"skus": ["h100-sxm"]},
    "serving": {"traffic": {"qps": 5, "input": {"mean": 512}, "output": {"mean": 128}},
                "slo": {"ttft_ms": 2000, "tpot_ms": 100, "percentile": 90},
                "search": {"tp": [1, 2], "batch_limits": [32]}},
}
SERVING_KEYS = [("serving", "traffic", "qps"), ("serving", "traffic", "input"), ("serving", "traffic", "output"),
                ("serving", "slo", "ttft_ms"), ("serving", "slo", "percentile"), ("serving", "engine"),
                ("serving", "weight_dtype"), ("serving", "search", "tp"), ("serving", "search", "batch_limits"),
                ("serving", "search", "seed"),
                ("hardware", "skus"), ("hardware", "max_gpus"), ("model",), ("gpus",), ("serving", "unknown_key")]
# A scenario's own GPU: plausible keys with hostile values, named so hardware.skus / max_gpus may pick it.
GPU_DEFINITION = st.fixed_dictionaries(
    {"name": st.sampled_from(["h100-own", "h100-sxm", "", "a" * 300, "b200"]),
     "base": st.sampled_from(["h100-sxm", "b200", "h100-own", "nope", ""])},
    optional={"tdp_w": st.one_of(HOSTILE_NUMBERS, st.integers(1, 2000)),
              "memory_gib": st.one_of(HOSTILE_NUMBERS, st.floats(1, 300)),
              "hbm_tb_s": HOSTILE_NUMBERS, "node_size": HOSTILE_NUMBERS, "generation": HOSTILE_TEXT,
              "efficiency": st.dictionaries(st.sampled_from(["gemm", "hbm", "nvlink"]), LEAF, max_size=2)})
OWN_GPUS = st.lists(GPU_DEFINITION, min_size=1, max_size=2).map(
    lambda g: [(("gpus",), g), (("hardware", "skus"), ["h100-own"]), (("hardware", "max_gpus"), {"h100-own": 8})])


@FEW
@given(edits=st.one_of(st.lists(st.tuples(st.sampled_from(SERVING_KEYS), VALUE), max_size=2), OWN_GPUS),
       command=st.sampled_from(["serve", "compare"]))
def test_serving_scenarios(edits: list[tuple[tuple[str, ...], Any]], command: str) -> None:
    check([command, str(write(scenario_text(edits, SERVING).encode())), "--format", "json"])


# A small portfolio: two weeks' horizon, one owned pool and a cloud quota, one small job.
PORTFOLIO: dict[str, Any] = {
    "name": "hostile-portfolio",
    "horizon": {"start": "2027-01-04", "end": "2027-02-01", "step": "week"},
    "pools": [{"name": "own", "kind": "owned", "sku": "h100", "gpus": 8},
              {"name": "cloud", "kind": "on-demand", "sku": "h100", "max_gpus": 16}],
    "jobs": [{"name": "a", "model": "gpt3-125m", "job": {"tokens": 1e11, "seq_len": 2048, "global_batch": 256},
              "max_gpus": 16}],
}
PORTFOLIO_KEYS = [("horizon", "end"), ("horizon", "step"), ("pools",), ("jobs",), ("gpus",), ("name",),
                  ("implementation", "framework"), ("efficiency", "gemm")]
OWN_POOL = st.lists(GPU_DEFINITION, min_size=1, max_size=2).map(
    lambda g: [(("gpus",), g), (("pools",), [{"name": "own", "kind": "owned", "sku": "h100-own", "gpus": 8}])])


@FEW
@given(edits=st.one_of(st.lists(st.tuples(st.sampled_from(PORTFOLIO_KEYS), VALUE), max_size=2), OWN_POOL))
def test_portfolios(edits: list[tuple[tuple[str, ...], Any]]) -> None:
    check(["schedule", str(write(scenario_text(edits, PORTFOLIO).encode())), "--time-limit", "5", "--format", "json"])


def test_a_yaml_boolean_is_not_a_count() -> None:
    """pydantic's lax int reads `true` as 1; a count typed as a boolean is refused with its key, in a mapping
    (a per-SKU cap), a list (a pipeline layout) and a scenario GPU's catalog entry alike. Boolean switches and
    overlap shares (0..1, `tp_overlap: true` = all hidden) still take booleans; a measured number does not."""
    gpu = {"name": "h100-cap", "base": "h100-sxm", "prices": [{"provider": "p", "kind": "on-demand",
                                                               "usd_per_gpu_hour": 2.0, "max_gpus": True}]}
    for path, value, key in [(("hardware", "max_gpus"), True, "hardware.max_gpus"),
                             (("hardware", "max_gpus"), {"h100-sxm": False}, "hardware.max_gpus"),
                             (("job", "global_batch"), True, "job.global_batch"),
                             (("layout", "pipeline_layout"), [True, 2], "layout.pipeline_layout"),
                             (("gpus",), [gpu], "max_gpus")]:
        result = runner.invoke(app, ["estimate", str(write(scenario_text([(path, value)]).encode()))])
        assert result.exit_code == 2, (path, result.stdout, result.stderr)
        assert key in result.stderr and "expected an integer, got a boolean" in result.stderr, result.stderr
    switched = scenario_text([(("layout", "tp"), 2), (("layout", "sequence_parallel"), True),
                              (("efficiency", "tp_overlap"), True)])
    assert runner.invoke(app, ["estimate", str(write(switched.encode()))]).exit_code == 0
    measured = runner.invoke(app, ["estimate", str(write(scenario_text([(("efficiency", "gemm"), True)]).encode()))])
    assert measured.exit_code == 2 and "efficiency.gemm: expected a number, got a boolean" in measured.stderr


# torchtitan's saved config (tests/fixtures/frameworks/torchtitan_llama3_8b_config.json) with hostile values
SAVED_TORCHTITAN = json.loads((Path(__file__).parent / "fixtures" / "frameworks"
                               / "torchtitan_llama3_8b_config.json").read_text())
SAVED_KEYS = [("training", "num_tokens_per_microbatch_per_dp_rank"), ("training", "num_tokens_per_train_step"),
              ("training", "max_context_length"), ("training", "dtype"), ("parallelism", "data_parallel_shard_degree"),
              ("parallelism", "tensor_parallel_degree"), ("parallelism", "pipeline_parallel_degree"),
              ("parallelism", "num_pp_microbatches"), ("parallelism", "enable_sequence_parallel"),
              ("parallelism", "module_fqns_per_model_part"), ("parallelism", "expert_parallel_degree"),
              ("activation_checkpoint",), ("model_spec",), ("model_spec", "flavor"), ("model_spec", "converters"),
              ("optimizer", "param_groups"), ("optimizer", "implementation"), ("compile", "components"), ("loss",),
              ("parallelism",), ("parallelism", "context_parallel_degree"),
              ("parallelism", "context_parallel_rotate_method"), ("training", "disable_cuda_graphs")]


@FEW
@given(edits=st.lists(st.tuples(st.sampled_from(SAVED_KEYS), VALUE), max_size=3))
def test_torchtitan_saved_configs(edits: list[tuple[tuple[str, ...], Any]]) -> None:
    path = Path(tempfile.mkdtemp(prefix="planner-hostile-")) / "config.json"
    path.write_text(json.dumps(edited(SAVED_TORCHTITAN, edits), allow_nan=True))
    check(["review", "--torchtitan", str(path), "--gpu", "h100", "--gpus", "64", "--no-better", "--format", "json"])

