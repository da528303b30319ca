"""torchtitan's current configuration (February 2026 on): the Trainer.Config it saves as JSON
(`--debug.save_config_file`) in, a config function out, and the two agreeing over legal layouts.

torchtitan_llama3_8b_config.json is `--module llama3 --config llama3_8b` as Trainer.Config.to_dict writes it
(torchtitan @b5bcd76, torchtitan/trainer.py; config_registry.py llama3_8b: 8192 tokens per micro-batch at
8192 context, SelectiveAC, ChunkedLossWrapper over 8 chunks, AdamW, FlexAttention), its model tree cut to the
fields planner reads (dim, vocab_size, one entry per layer with its attention's inner_attention)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_interop_frameworks import SEQ, legal_layouts
from typer.testing import CliRunner

from planner.catalog import get_model
from planner.cli import app
from planner.errors import InputError
from planner.interop.frameworks import changes, export, round_trip_with_implementation
from planner.interop.torchtitan import parse_torchtitan_toml
from planner.interop.torchtitan_config import config_function, config_settings, saved_config
from planner.schema import Implementation, Layout, ModelSpec

SAVED = Path(__file__).parent / "fixtures" / "frameworks" / "torchtitan_llama3_8b_config.json"
runner = CliRunner()


def saved(**changes: Any) -> dict[str, Any]:
    """The fixture with `section__key` fields (or whole sections) replaced; None is JSON null."""
    data = json.loads(SAVED.read_text())
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if not key:
            data[section] = value
        else:
            data[section][key] = value
    return data


def test_the_llama3_8b_registry_config_as_saved() -> None:
    cfg = parse_torchtitan_toml(SAVED)
    assert (cfg.model_name, cfg.seq, cfg.toml, cfg.precision_read) == ("llama-3.1-8b", 8192, False, False)
    assert cfg.to_layout(64) == Layout(dp=64, zero=3, recompute="selective", micro_batch=1, global_batch=64)
    assert cfg.unsupported == {}
    assert cfg.loss_chunks == 8 and cfg.implementation().loss_chunks == 8  # ChunkedLossWrapper(num_chunks=8)
    assert any("quantisation converters" in n for n in cfg.notes)
    assert any("FlexAttention (triton kernels" in n for n in cfg.notes)  # llama3_8b's attn_backend="flex"
    assert parse_torchtitan_toml(saved(loss={"global_vocab_size": 128256})).implementation().loss_chunks is None


def test_tokens_pipeline_and_checkpoint_policies() -> None:
    # tokens per step and per micro-batch in whole sequences; PP runs num_pp_microbatches per schedule
    pp = parse_torchtitan_toml(saved(
        training__num_tokens_per_microbatch_per_dp_rank=2 * 8192, training__num_tokens_per_train_step=256 * 8192,
        parallelism__pipeline_parallel_degree=4, parallelism__num_pp_microbatches=8,
        parallelism__tensor_parallel_degree=2, activation_checkpoint={"preserve_rng_state": True}))
    layout = pp.to_layout(64)  # dp 8 = 64 / (tp 2 · pp 4)
    assert (layout.tp, layout.pp, layout.dp, layout.micro_batch, layout.global_batch) == (2, 4, 8, 2, 256)
    assert layout.grad_accumulation == 16 and layout.recompute == "full" and layout.zero == 2
    assert layout.sequence_parallel
    assert parse_torchtitan_toml(saved(parallelism__tensor_parallel_degree=2,
                                       parallelism__enable_sequence_parallel=False)).to_layout(8).sequence_parallel \
        is False
    assert parse_torchtitan_toml(saved(activation_checkpoint=None)).recompute == "none"
    budget = parse_torchtitan_toml(saved(activation_checkpoint={"memory_budget": 0.5, "debug": False}))
    assert budget.recompute == "selective" and "activation_checkpoint" in budget.unsupported
    # EP borrows ranks from FSDP and TP, experts unsplit
    ep = parse_torchtitan_toml(saved(parallelism__expert_parallel_degree=4, parallelism__tensor_parallel_degree=2),
                               model=get_model("mixtral-8x7b"))
    assert ep.to_layout(16).expert_tp == 1 and ep.to_layout(16).ep == 4
    # what planner cannot take as it is says so
    odd = parse_torchtitan_toml(saved(training__dtype="bfloat16", parallelism__context_parallel_load_balancer=None,
                                      parallelism__context_parallel_degree=2))
    assert {"training.dtype", "parallelism.context_parallel_load_balancer"} <= set(odd.unsupported)
    other = parse_torchtitan_toml(saved(), model=get_model("llama-2-7b"))
    assert "model_spec.model" in other.unsupported and "hidden 4096" not in other.unsupported["model_spec.model"]
    assert "vocab 128256" in other.unsupported["model_spec.model"]


@pytest.mark.parametrize(("change", "message"), [
    ({"training__num_tokens_per_microbatch_per_dp_rank": 5000}, "not a multiple of training.max_context_length"),
    ({"training__num_tokens_per_train_step": 1000}, "num_tokens_per_train_step 1000 is not a multiple"),
    ({"training__max_context_length": "8k"}, "max_context_length must be a positive integer"),
    ({"parallelism__enable_sequence_parallel": "yes"}, "enable_sequence_parallel must be true or false"),
    ({"activation_checkpoint": ["full"]}, "activation_checkpoint must be a mapping or null"),
    ({"parallelism": 4}, "parallelism must be a mapping"),
    ({"loss": {"num_chunks": 0}}, "num_chunks must be a positive integer"),
    ({"optimizer": {"param_groups": -1}}, "param_groups must be a list"),
    ({"optimizer": {"param_groups": [{"optimizer_name": ["AdamW"]}]}}, "optimizer_name must be a name"),
])
def test_bad_saved_configs_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_torchtitan_toml(saved(**change))


def test_review_reads_it_and_hands_back_a_config_function(tmp_path: Path) -> None:
    """`planner review --torchtitan config.json`: the better plan's changes are the saved config's own keys and
    `--emit torchtitan-config` a config function; a scenario beside it gives the precision the file cannot."""
    r = runner.invoke(app, ["review", "--torchtitan", str(SAVED), "--gpu", "h100", "--gpus", "64", "--format",
                            "json"])
    assert r.exit_code == 0, r.output
    better = json.loads(r.stdout)["better"]
    assert better["format"] == "torchtitan-config"
    assert all(c["key"].split(".")[0] in ("parallelism", "training", "activation_checkpoint", "compile", "model_spec")
               for c in better["changes"])
    r = runner.invoke(app, ["review", "--torchtitan", str(SAVED), "--gpu", "h100", "--gpus", "64", "--emit",
                            "torchtitan-config"])
    assert r.exit_code == 0 and "config = llama3_8b()" in r.stdout and "return config" in r.stdout
    compile(r.stdout, "plan.py", "exec")  # valid Python
    sc = tmp_path / "s.yaml"
    sc.write_text("model: llama-3.1-8b\njob: {tokens: 1e11, seq_len: 8192, global_batch: 64, precision: fp8}\n"
                  "implementation: {framework: torchtitan, fp8_recipe: mxfp8}\nestimate: {gpu: b200, gpus: 64}\n")
    r = runner.invoke(app, ["review", str(sc), "--torchtitan", str(SAVED), "--no-better", "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["layout"]["precision"] == "fp8"
    assert any("from the scenario's job.precision" in f["message"] for f in out["findings"])


def _implementation(draw: st.DrawFn, layout: Layout) -> Implementation:
    fp8 = layout.precision == "fp8"
    return Implementation(framework="torchtitan",
                          fp8_recipe=draw(st.sampled_from(["blockwise", "mxfp8"])) if fp8 else None,
                          cross_entropy=draw(st.sampled_from([None, "fused"])),
                          loss_chunks=draw(st.sampled_from([None, 2, 8])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(legal_layouts(), st.data())
def test_config_function_round_trip(case: tuple[ModelSpec, Layout], data: st.DataObject) -> None:
    """What the config function sets reads back, through the saved-config reader, as the layout (ZeRO-1/2 as FSDP
    without resharding, a lone data-parallel rank unsharded) and the framework knobs it was written with; its text
    assigns every one of those fields."""
    m, layout = case
    assume(layout.precision != "fp16" and layout.fp32_grad_accumulation and layout.optimizer != "sgd")
    assume(layout.zero > 0 or (layout.cp == 1 and (layout.dp == 1 or layout.tp * layout.pp == 1)))
    sharded = layout.zero > 0 and layout.dp * layout.cp > 1
    assume(sharded or not layout.offload_optimizer)
    units, stages = m.layers + 2, layout.pp * layout.vpp
    assume(layout.vpp <= 2 or -(-units // -(-units // stages)) == stages)
    impl = _implementation(data.draw, layout)
    if layout.ep > 1 and layout.tp > 1:
        with pytest.raises(InputError, match="experts split over TP"):
            saved_config(layout, SEQ, m, impl)
        layout = layout.model_copy(update={"expert_tp": 1, "sequence_parallel": True})
        assume(sharded)
    cfg = saved_config(layout, SEQ, m, impl)
    back, knobs = round_trip_with_implementation("torchtitan-config", layout, model=m, seq=SEQ, implementation=impl)
    assert back == layout.model_copy(update={"zero": (3 if layout.zero == 3 else 2) if sharded else 0})
    assert (knobs.fp8_recipe, knobs.cross_entropy == "fused", knobs.loss_chunks) == \
        (impl.fp8_recipe, impl.cross_entropy == "fused", impl.loss_chunks)
    text = config_function(layout, SEQ, m, impl)
    compile(text, "plan.py", "exec")
    written = config_settings(text)
    for section in ("parallelism", "training"):
        for key, value in cfg[section].items():
            assert json.loads(written[f"{section}.{key}"].replace("True", "true").replace("False", "false")) == value


def test_what_todays_torchtitan_cannot_run_is_refused() -> None:
    m = get_model("llama-3.1-8b")
    base = Layout(dp=8, zero=3, recompute="full", global_batch=8)
    with pytest.raises(InputError, match="no partial recompute"):
        saved_config(base.model_copy(update={"recompute_num_layers": 4}), SEQ, m)
    fp8 = base.model_copy(update={"precision": "fp8"})
    with pytest.raises(InputError, match="scales rowwise"):
        saved_config(fp8, SEQ, m, Implementation(framework="torchtitan", fp8_recipe="current"))
    with pytest.raises(InputError, match="fp8_param_gather"):
        saved_config(fp8, SEQ, m, Implementation(framework="torchtitan", fp8_recipe="mxfp8", fp8_param_gather=True))
    text = export("torchtitan-config", fp8, model=m, seq=SEQ,
                  implementation=Implementation(framework="torchtitan", fp8_recipe="mxfp8"))
    assert 'config.model_spec = model_registry("8B", converters=[MXFP8LinearConverter.Config()])' in text
    # a model with no torchtitan flavor: the user's own function is the base
    split = saved_config(Layout(pp=2, vpp=2, dp=4, zero=2, recompute="full", global_batch=16,
                                pipeline_layout=(8, 8, 8, 8)), SEQ, m)
    parts = split["parallelism"]["module_fqns_per_model_part"]
    assert parts[0][0] == "tok_embeddings" and parts[-1][-2:] == ["norm", "lm_head"]  # today's module names
    other = export("torchtitan-config", base, model=get_model("mixtral-8x7b"), seq=SEQ)
    assert "config = base_config()" in other
    diff = changes("torchtitan-config", export("torchtitan-config", base, model=m, seq=SEQ),
                   export("torchtitan-config", base.model_copy(update={"recompute": "none"}), model=m, seq=SEQ))
    assert diff == [{"key": "activation_checkpoint", "from": "FullAC.Config()", "to": "None"}]
    assert copy.deepcopy(saved_config(base, SEQ, m))["activation_checkpoint"] == {}


def test_torchtitan_flavors_are_the_catalog_models() -> None:
    """torchtitan's deepseek_v3 "16B" has DeepSeek-V2-Lite's shape and "671B" DeepSeek-V3's, its qwen3 and gpt_oss
    flavors the Qwen3 and gpt-oss models' (torchtitan/models/{qwen3,gpt_oss}/__init__.py): a saved config of either
    names the catalog model, and a saved model tree of that shape raises no difference."""
    for family, flavor, name, shape in (("deepseek_v3", "16B", "deepseek-v2-lite", (2048, 102400, 27)),
                                        ("deepseek_v3", "671B", "deepseek-v3", (7168, 129280, 61)),
                                        ("qwen3", "8B", "qwen3-8b", (4096, 151936, 36)),
                                        ("qwen3", "30B-A3B", "qwen3-30b-a3b", (2048, 151936, 48)),
                                        ("gpt_oss", "120b", "gpt-oss-120b", (2880, 201088, 36))):
        dim, vocab, layers = shape
        cfg = parse_torchtitan_toml(saved(model_spec={"name": family, "flavor": flavor, "model": {
            "dim": dim, "vocab_size": vocab, "layers": [{}] * layers}}))
        assert cfg.model_name == name and "model_spec.model" not in cfg.unsupported
        m = get_model(name)
        assert (m.hidden, m.vocab, m.layers) == shape


def test_loss_chunks_must_divide_a_micro_batchs_tokens(tmp_path: Path) -> None:
    """ChunkedLossWrapper asserts equal chunks of the tokens a rank holds: a saved config that breaks it is an
    error finding (exit 1), a scenario that does is refused naming the key, and the solver offers no such layout
    (the same answer as the exhaustive enumeration, which checks the rule on each whole layout)."""
    odd = saved(loss={"num_chunks": 7, "loss_fn": {}})
    r = runner.invoke(app, ["review", "--torchtitan", _write(tmp_path, odd), "--gpu", "h100", "--gpus", "64",
                            "--no-better", "--format", "json"])
    assert r.exit_code == 1, r.output
    assert any(f["code"] == "illegal_layout" and "loss_chunks: 7 does not divide" in f["message"]
               for f in json.loads(r.stdout)["findings"])
    sc = tmp_path / "s.yaml"
    sc.write_text("model: llama-3.1-8b\njob: {tokens: 1e11, seq_len: 8192, global_batch: 64}\n"
                  "implementation: {framework: torchtitan, loss_chunks: 7}\nestimate: {gpu: h100, gpus: 8}\n")
    r = runner.invoke(app, ["estimate", str(sc)])
    assert r.exit_code == 2 and f"{sc}: implementation.loss_chunks: 7 does not divide the 8,192 tokens" in r.output


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_the_solver_offers_no_layout_the_loss_chunks_rule_breaks() -> None:
    """With 3 chunks a 4096-token micro-batch splits only when the micro-batch (over cp) holds a multiple of 3
    sequences: the solver's space is the exhaustive enumeration's, which checks the rule on every whole layout, and
    its plans keep it."""
    from planner.scenario import Scenario
    from planner.search.exhaustive import enumerate_plans
    from planner.search.problem import resolve_problem
    from planner.workflows.solve import solve

    sc = Scenario.model_validate({
        "name": "chunks", "model": "llama-2-7b", "job": {"tokens": 2e9, "seq_len": 4096, "global_batch": 48},
        "hardware": {"skus": ["h100-sxm"], "max_gpus": 16}, "objective": "cost",
        "implementation": {"framework": "torchtitan", "loss_chunks": 3},
        "layout": {"zero": 1, "vpp": 1, "sequence_parallel": False, "pp": 1}})
    result = solve(sc, top_k=3)
    ref = enumerate_plans(resolve_problem(sc))
    assert result.search_space_size == ref.space_size > 0
    assert result.plans and ref.best is not None and result.solutions[0].cost_cents == ref.best[0]
    for plan in result.plans:
        lay = plan.evaluation.layout
        assert (lay.micro_batch * 4096 // lay.cp) % 3 == 0 and not plan.evaluation.problems
    free = sc.model_copy(update={"implementation": sc.implementation.model_copy(update={"loss_chunks": None})})
    assert solve(free, top_k=1).search_space_size > result.search_space_size


def test_bf16_optimizer_moments() -> None:
    """torchtitan's fused_opt_states_bf16 (April 2026) keeps Adam's moments in bf16 beside FSDP's fp32 parameter
    shards: a saved config with it is job.moment_dtype bf16 (FSDP2's optimizer state 8/d → 4/d bytes per
    parameter), a plan with bf16 moments is written with it and reads back; a job TOML cannot say it."""
    groups = json.loads(SAVED.read_text())["optimizer"]["param_groups"]
    cfg = parse_torchtitan_toml(saved(optimizer={"param_groups": groups, "implementation": "fused_opt_states_bf16"}))
    layout = cfg.to_layout(8)
    assert layout.moment_dtype == "bf16" and layout.master_weights == "fp32"
    assert parse_torchtitan_toml(saved()).to_layout(8).moment_dtype == "fp32"
    with pytest.raises(InputError, match=r"optimizer\.implementation must be one of"):
        parse_torchtitan_toml(saved(optimizer={"param_groups": groups, "implementation": "apex"}))
    m = get_model("llama-3.1-8b")
    text = config_function(layout, SEQ, m)
    assert 'config.optimizer.implementation = "fused_opt_states_bf16"' in text
    assert "optimizer.implementation" not in config_function(layout.model_copy(update={"moment_dtype": "fp32"}),
                                                            SEQ, m)
    back, _ = round_trip_with_implementation("torchtitan-config", layout, model=m, seq=SEQ)
    assert back.moment_dtype == "bf16"
    with pytest.raises(InputError, match="job TOML keeps fp32 moments"):
        export("torchtitan", layout, model=m, seq=SEQ)
    with pytest.raises(InputError, match="moment_dtype fp8"):
        saved_config(layout.model_copy(update={"moment_dtype": "fp8"}), SEQ, m)


def test_todays_step_cuda_graph() -> None:
    """torchtitan captures the forward and backward in one CUDA graph unless training.disable_cuda_graphs
    (August 2026; never with PP): a saved config's graphs are read, a config function states them (today's trainer
    refuses graphs under PP and EP, so those plans write them off), and a whole-step graph adds none of Megatron's
    per-layer static buffers."""
    today = parse_torchtitan_toml(SAVED)  # llama3_8b: disable_cuda_graphs false, no PP
    assert today.implementation().cuda_graphs is True and any("one CUDA graph" in n for n in today.notes)
    assert parse_torchtitan_toml(saved(training__disable_cuda_graphs=True)).implementation().cuda_graphs is False
    older = saved()
    del older["training"]["disable_cuda_graphs"]
    assert parse_torchtitan_toml(older).implementation().cuda_graphs is False
    piped = saved(parallelism__pipeline_parallel_degree=2, parallelism__num_pp_microbatches=2)
    assert parse_torchtitan_toml(piped).implementation().cuda_graphs is False
    with pytest.raises(InputError, match=r"training\.disable_cuda_graphs must be true or false"):
        parse_torchtitan_toml(saved(training__disable_cuda_graphs="no"))
    m = get_model("llama-3.1-8b")
    base = Layout(dp=8, zero=3, recompute="full", global_batch=8)
    graphs = Implementation(framework="torchtitan", cuda_graphs=True)
    assert saved_config(base, SEQ, m)["training"]["disable_cuda_graphs"] is True
    assert saved_config(base, SEQ, m, graphs)["training"]["disable_cuda_graphs"] is False
    assert "config.training.disable_cuda_graphs = False" in config_function(base, SEQ, m, graphs)
    with pytest.raises(InputError, match="pipeline parallelism"):
        saved_config(Layout(pp=2, dp=4, zero=2, recompute="full", global_batch=8), SEQ, m, graphs)
    from planner.model.memory import training_memory
    plain = training_memory(m, base, SEQ, Implementation(framework="torchtitan")).total
    assert training_memory(m, base, SEQ, graphs).total == plain
    megatron = base.model_copy(update={"zero": 1})
    assert training_memory(m, megatron, SEQ, Implementation(cuda_graphs=True)).total > \
        training_memory(m, megatron, SEQ, Implementation()).total


def test_the_solver_keeps_the_ulysses_heads_rule() -> None:
    """With the all-to-all CP exchange every TP rank's heads must split cp ways: the solver's space is the
    exhaustive enumeration's (which checks the rule on whole layouts), its optimum the same, and its plans keep
    the rule; the ring's space is larger."""
    from planner.scenario import Scenario
    from planner.search.exhaustive import enumerate_plans
    from planner.search.problem import resolve_problem
    from planner.workflows.solve import solve

    sc = Scenario.model_validate({
        "name": "ulysses", "model": "llama-3.1-8b", "job": {"tokens": 2e9, "seq_len": 16384, "global_batch": 16},
        "hardware": {"skus": ["h100-sxm"], "max_gpus": 16}, "objective": "cost",
        "implementation": {"cp_exchange": "ulysses"}, "layout": {"zero": 1, "vpp": 1, "pp": 1, "micro_batch": 1}})
    result = solve(sc, top_k=3)
    ref = enumerate_plans(resolve_problem(sc))
    assert result.search_space_size == ref.space_size > 0
    assert result.plans and ref.best is not None and result.solutions[0].cost_cents == ref.best[0]
    m = get_model("llama-3.1-8b")  # 32 query heads, 8 K/V heads
    for plan in result.plans:
        lay = plan.evaluation.layout
        assert (m.n_kv_heads // lay.tp) % lay.cp == 0 and not plan.evaluation.problems
    ring = sc.model_copy(update={"implementation": sc.implementation.model_copy(update={"cp_exchange": None})})
    assert solve(ring, top_k=1).search_space_size > result.search_space_size


def test_a_misspelt_key_is_reported_with_the_key_meant() -> None:
    """A key one letter from one planner reads in the same section is a typo that would leave the setting at its
    default (TP 1 here): review says so; torchtitan's own keys (a [validation] `enabled`) are not flagged."""
    fixture = Path(__file__).parent / "fixtures" / "frameworks" / "torchtitan_llama3_8b.toml"
    text = fixture.read_text()
    assert parse_torchtitan_toml(text).unknown == []
    typo = parse_torchtitan_toml(text.replace("tensor_parallel_degree", "tensor_parallel_degre")
                                 + "\n[validation]\nenabled = true\n")
    assert typo.unknown == ["parallelism.tensor_parallel_degre (did you mean tensor_parallel_degree?)"]
    assert typo.tp == 1


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("batch_size = 1", "batch_size = 9223372036854775807", "training.batch_size must be at most 4,194,304"),
    ("tensor_parallel_degree = 1", "tensor_parallel_degree = 2000000", "tensor_parallel_degree must be at most"),
])
def test_an_integer_past_its_physical_range_is_one_line_naming_the_toml_key(key: str, value: str,
                                                                            expected: str) -> None:
    fixture = Path(__file__).parent / "fixtures" / "frameworks" / "torchtitan_llama3_8b.toml"
    with pytest.raises(InputError, match=expected) as e:
        parse_torchtitan_toml(fixture.read_text().replace(key, value))
    assert "\n" not in str(e.value)
