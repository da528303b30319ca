"""planner.workflows.review: every published run reviewed (fits, predicted next to measured), plans handed back in each
framework's own format and read back unchanged, and the review's own rules (same hardware, illegal layouts
still reviewed, one input at a time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planner import solve
from planner.catalog import get_model
from planner.errors import InputError
from planner.interop.deepspeed import parse_deepspeed_config
from planner.interop.frameworks import FRAMEWORKS, changes, export, round_trip, settings
from planner.interop.megatron import parse_megatron_args
from planner.interop.published import build_case, load_runs, reference_dir
from planner.interop.torchtitan import parse_torchtitan_toml
from planner.interop.torchtitan_config import saved_config
from planner.scenario import EstimateTarget, FixedLayout, Hardware, Job, Scenario
from planner.schema import Implementation, Layout
from planner.workflows.review import ReviewRequest, review

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"
REFERENCE = reference_dir()
USABLE = [r["id"] for r in load_runs(REFERENCE) if not isinstance(build_case(r), str)] if REFERENCE else []
# The time model's worst error on a published run (tests/test_accuracy.py WORST_TARGET).
WORST_ERROR = 0.25


def scenario(layout: dict[str, Any] | None = None, gpus: int = 16, global_batch: int = 64,
             framework: str = "megatron-core") -> Scenario:
    """Llama-3.1 8B on `gpus` H100s, parts of the layout fixed, fastest first."""
    return Scenario(
        model="llama-3.1-8b", job=Job(tokens=1e10, seq_len=4096, global_batch=global_batch),
        hardware=Hardware(skus=["h100"]), layout=FixedLayout(sku="h100", gpus=gpus, **(layout or {})),
        estimate=EstimateTarget(gpu="h100", gpus=gpus), objective="time",
        implementation=Implementation(framework=framework),  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------------------
# Published runs
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(REFERENCE is None, reason="published_runs.yaml not found (set PLANNER_REFERENCE)")
@pytest.mark.parametrize("run_id", USABLE)
def test_published_run_fits_and_predicts_its_throughput(run_id: str) -> None:
    r = review(ReviewRequest(published=run_id), better=False)
    assert r.ok and r.evaluation.fits and not r.problems, r.findings
    assert r.published is not None
    assert r.published.measured > 0 and r.published.predicted > 0
    assert abs(r.published.error) <= WORST_ERROR, f"{r.published.quantity}: {r.published.error:+.1%}"
    assert r.to_dict()["published"]["id"] == run_id


# --------------------------------------------------------------------------------------------
# Round trips: a solved plan exported and read back is the same layout
# --------------------------------------------------------------------------------------------

# What each format can say: DeepSpeed's JSON has no TP/PP/CP/SP and full recompute or none (of every layer: a
# DeepSpeed job, whose search keeps every layer), and keeps fp32 gradients only with ZeRO ≤ 1; torchtitan's TP plan
# always shards the sequence.
EXPRESSIBLE: dict[str, dict[str, Any]] = {
    "megatron": {},
    "deepspeed": {"cp": 1, "vpp": 1, "sequence_parallel": False, "zero": 1, "recompute": "full"},
    "torchtitan": {"tp": 2, "zero": 3, "sequence_parallel": True},
    "torchtitan-config": {"tp": 2, "zero": 3, "sequence_parallel": True},
}


@pytest.mark.parametrize("fmt", FRAMEWORKS)
def test_solved_plan_round_trips(fmt: str) -> None:
    m = get_model("llama-3.1-8b")
    (plan,) = solve(scenario(EXPRESSIBLE[fmt], framework="deepspeed" if fmt == "deepspeed" else "megatron-core"),
                    top_k=1).plans
    layout = plan.evaluation.layout
    text = export(fmt, layout, model=m, seq=4096)
    if fmt == "megatron":
        back = parse_megatron_args(text, model=m).to_layout(layout.gpus)
    elif fmt == "deepspeed":
        back = parse_deepspeed_config(json.loads(text)).to_layout(layout.gpus, tp=layout.tp, pp=layout.pp)
    elif fmt == "torchtitan":
        back = parse_torchtitan_toml(text, model=m).to_layout(layout.gpus)
    else:  # a config function's fields, as torchtitan saves them
        back = parse_torchtitan_toml(saved_config(layout, 4096, m), model=m).to_layout(layout.gpus)
    assert back == layout
    assert round_trip(fmt, layout, model=m, seq=4096) == layout
    assert changes(fmt, text, text) == []


def test_changes_name_the_formats_keys() -> None:
    m = get_model("llama-3.1-8b")
    (plan,) = solve(scenario(), top_k=1).plans
    a = plan.evaluation.layout
    b = a.model_copy(update={"micro_batch": a.micro_batch * 2, "recompute": "full"})
    diff = {ch["key"]: (ch["from"], ch["to"]) for ch in changes("megatron", export("megatron", a, model=m, seq=4096),
                                                               export("megatron", b, model=m, seq=4096))}
    assert diff["--micro-batch-size"] == (str(a.micro_batch), str(2 * a.micro_batch))
    assert diff["--recompute-granularity"] == (None, "full")
    assert settings("deepspeed", '{"zero_optimization": {"stage": 3}}') == {"zero_optimization.stage": "3"}


# --------------------------------------------------------------------------------------------
# The review's rules
# --------------------------------------------------------------------------------------------


def test_scenario_review_keeps_the_hardware_and_the_batch() -> None:
    r = review(ReviewRequest(scenario=scenario({"tp": 8, "pp": 2, "recompute": "full", "micro_batch": 1})))
    assert r.ok and r.better is not None
    best = r.better.plan.evaluation
    assert (best.gpu.name, best.layout.gpus, best.layout.global_batch, best.seq) == ("h100-sxm", 16, 64, 4096)
    assert r.better.speedup == pytest.approx(r.evaluation.time.step_seconds / best.time.step_seconds)
    assert r.better.format == "layout" and all(ch["key"] in Layout.model_fields for ch in r.better.changes)
    codes = {f.code for f in r.findings}
    assert {"recompute_stronger_than_needed", "better_layout"} <= codes


def test_full_recompute_of_every_layer_is_told_a_partial_count_that_fits() -> None:
    """Llama 3 405B at TP8 PP16 DP64 on 8,192 H100 does not fit without recompute; recomputing every layer fits
    with room to spare, and Megatron's block method rerunning fewer layers of each chunk fits and is faster: the
    review says which count (the same layout keeps every other setting)."""
    sc = Scenario.model_validate({
        "name": "llama405", "model": "llama-3.1-405b",
        "job": {"tokens": 16 * 2**20, "seq_len": 8192, "global_batch": 2048},
        "hardware": {"skus": ["h100-sxm"]}, "estimate": {"gpu": "h100-sxm", "gpus": 8192},
        "layout": {"tp": 8, "pp": 16, "vpp": 4, "dp": 64, "sequence_parallel": True, "micro_batch": 1,
                   "recompute": "full", "account_for_embedding_in_pipeline_split": True,
                   "account_for_loss_in_pipeline_split": True},
    })
    r = review(ReviewRequest(scenario=sc), better=False)
    (f,) = [f for f in r.findings if f.code == "recompute_stronger_than_needed"]
    assert f.message.startswith("recompute full is stronger than needed: full of ")
    assert "per model chunk fits" in f.message


def test_a_recompute_that_does_not_fit_is_told_one_that_does() -> None:
    """torchtitan's layer-level selective checkpointing of every second layer (its default) recomputes half the
    layers and keeps the other half whole: Llama 3 8B at 16k tokens a GPU does not fit on an H100 that way, while
    the op-level policy does. A layout that does not fit is told which recompute fits, not that its own is
    "stronger than needed"."""
    toml = ("[parallelism]\ndata_parallel_shard_degree = 8\n[training]\nseq_len = 8192\nlocal_batch_size = 2\n"
            "[model]\nname = \"llama3\"\nflavor = \"8B\"\n")
    r = review(ReviewRequest(torchtitan=toml, gpu="h100", gpus=8), better=False)
    assert not r.evaluation.fits and r.evaluation.layout.recompute_num_layers == 16
    (f,) = [f for f in r.findings if f.code == "recompute_that_fits"]
    assert f.message.startswith("recompute full of 16 layer(s) per model chunk does not fit; selective fits")
    assert not any(f.code == "recompute_stronger_than_needed" for f in r.findings)


def test_illegal_layout_is_still_reviewed() -> None:
    # TP 16 across two 8-GPU nodes, and a batch of 100 sequences that micro-batches of 16 do not split into
    r = review(ReviewRequest(scenario=scenario({"tp": 16, "pp": 2, "micro_batch": 16}, gpus=32, global_batch=100)))
    assert not r.ok and r.exit_code == 1
    codes = {f.code: f for f in r.findings}
    assert codes["tp_spans_nodes"].severity == "error" and "s of the" in codes["tp_spans_nodes"].message
    assert codes["global_batch_not_divisible"].severity == "error"
    assert r.evaluation.time.step_seconds > 0 and r.evaluation.memory.total > 0
    # the better plan is legal on the same 32 GPUs
    assert r.better is not None and r.better.plan.evaluation.layout.gpus == 32
    assert r.better.plan.evaluation.fits


def test_deepspeed_better_plan_changes_only_json_keys() -> None:
    r = review(ReviewRequest(deepspeed=FIXTURES / "deepspeed_zero3_auto_offload.json", model="llama-2-7b", gpu="h100",
                             gpus=8, micro_batch=1, global_batch=64))
    assert r.ok
    assert any(f.code == "zero3_where_zero1_fits" for f in r.findings)
    assert any(f.code == "unsupported_setting" and "offload_param" in f.message for f in r.findings)
    if r.better is not None:  # TP, PP, CP and SP stay with the model code
        lay = r.better.plan.evaluation.layout
        assert (lay.tp, lay.pp, lay.cp, lay.sequence_parallel) == (1, 1, 1, False)
        assert r.better.format == "deepspeed" and all("-" not in str(ch["key"]) for ch in r.better.changes)


def test_changes_start_from_what_the_input_says() -> None:
    """A better plan's changes run from the input's own values (its "auto", a switch it sets), not from planner's
    rendering of the reviewed layout: a key the input leaves out is absent on the `from` side."""
    given = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
             "gradient_accumulation_steps": "auto", "bf16": {"enabled": True},
             "zero_optimization": {"stage": 3, "overlap_comm": True},
             "activation_checkpointing": {"partition_activations": True}}
    r = review(ReviewRequest(deepspeed=given, model="llama-2-7b", gpu="h100", gpus=8, micro_batch=1, global_batch=64))
    assert r.better is not None
    got = {ch["key"]: ch for ch in r.better.changes}
    assert got["train_micro_batch_size_per_gpu"]["from"] == '"auto"'
    assert "activation_checkpointing.cpu_checkpointing" not in got  # in neither the input nor the better plan
    assert all(ch["from"] != ch["to"] for ch in r.better.changes)
    if "activation_checkpointing.partition_activations" in got:
        assert got["activation_checkpointing.partition_activations"]["from"] == "true"


@pytest.mark.parametrize(
    ("request_fields", "match"),
    [
        ({}, "nothing to review"),
        ({"megatron_args": "--micro-batch-size 1", "published": "x"}, "one configuration"),
        ({"megatron_args": "--micro-batch-size 1", "model": "llama-3.1-8b", "gpu": "h100"}, "--gpus"),
        ({"deepspeed": {"train_batch_size": 8}, "gpu": "h100", "gpus": 8}, "--model"),
        ({"megatron_args": "--micro-batch-size 1", "model": "llama-3.1-8b", "gpus": 8}, "--gpu"),
    ],
)
def test_bad_requests_name_what_is_missing(request_fields: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        review(ReviewRequest(**request_fields), better=False)  # type: ignore[arg-type]


def test_the_expert_all_to_all_overlap_is_read_from_megatron_arguments() -> None:
    """--overlap-moe-expert-parallel-comm (with --delay-wgrad-compute, as Megatron-Bridge's MoE recipes set them)
    runs one micro-batch's expert all-to-all under another's compute: the review times it so (ep_overlap 1, a
    note says so); without expert parallelism there is nothing to overlap and no note."""
    args = ("--num-layers 8 --hidden-size 2048 --num-attention-heads 16 --seq-length 4096 --max-position-embeddings "
            "4096 --vocab-size 32000 --micro-batch-size 1 --global-batch-size 64 --num-experts 64 --moe-router-topk 8 "
            "--moe-ffn-hidden-size 768 --expert-model-parallel-size 8 --moe-token-dispatcher-type alltoall --bf16 "
            "--use-distributed-optimizer --overlap-grad-reduce")
    overlap = " --overlap-moe-expert-parallel-comm --delay-wgrad-compute --moe-shared-expert-overlap"
    plain, both = (review(ReviewRequest(megatron_args=a, gpu="h100", gpus=16), better=False)
                   for a in (args, args + overlap))
    assert both.evaluation.time.breakdown["ep_comm"] < plain.evaluation.time.breakdown["ep_comm"]
    assert any("ep_overlap 1" in f.message for f in both.findings)
    assert not any(f.code == "unknown_setting" for f in both.findings)
    # without the switch, the review says what it would save: the step as given less the step with it
    (hint,) = [f for f in plain.findings if f.code == "expert_all_to_all_not_overlapped"]
    saved = plain.evaluation.time.step_seconds - both.evaluation.time.step_seconds
    assert hint.message.startswith(f"--overlap-moe-expert-parallel-comm --delay-wgrad-compute would hide {saved:.2f} s")
    assert not any(f.code == "expert_all_to_all_not_overlapped" for f in both.findings)
    # nor where Megatron-Core refuses the switch (transformer_config.py): full recompute, or PP without virtual stages
    for refused in (" --recompute-granularity full --recompute-method uniform --recompute-num-layers 1",
                    " --pipeline-model-parallel-size 2"):
        r = review(ReviewRequest(megatron_args=args + refused, gpu="h100", gpus=16), better=False)
        assert not any(f.code == "expert_all_to_all_not_overlapped" for f in r.findings), refused
    dense = args.replace("--expert-model-parallel-size 8", "--expert-model-parallel-size 1")
    single = review(ReviewRequest(megatron_args=dense + overlap, gpu="h100", gpus=16), better=False)
    assert not any("ep_overlap" in f.message for f in single.findings)


def test_review_names_a_faster_transformer_engine_cp_exchange() -> None:
    """A Megatron run with context parallelism is timed under Transformer Engine's other exchanges on the same
    layout (ring, all-to-all where the heads split, all-gather, every a2a+p2p split); the fastest that fits and
    gains at least 5 % is named with its flags, its step and its speed-up, and it is what that run would be."""
    args = ("--num-layers 8 --hidden-size 4096 --num-attention-heads 32 --group-query-attention --num-query-groups 8 "
            "--seq-length 131072 --max-position-embeddings 131072 --vocab-size 32000 --micro-batch-size 1 "
            "--global-batch-size 2 --bf16 --use-distributed-optimizer --overlap-grad-reduce --swiglu "
            "--tensor-model-parallel-size 2 --sequence-parallel --context-parallel-size 8 --recompute-granularity full "
            "--recompute-method uniform --recompute-num-layers 1")
    gathered = review(ReviewRequest(megatron_args=args + " --cp-comm-type all_gather", gpu="h100", gpus=16),
                      better=False)
    (hint,) = [f for f in gathered.findings if f.code == "cp_exchange"]
    assert "--cp-comm-type a2a+p2p --hierarchical-context-parallel-sizes" in hint.message
    sizes = hint.message.split("--hierarchical-context-parallel-sizes ")[1].split(")")[0]
    named = review(ReviewRequest(megatron_args=args + f" --cp-comm-type a2a+p2p --hierarchical-context-parallel-sizes "
                                 f"{sizes}", gpu="h100", gpus=16), better=False)
    speedup = gathered.evaluation.time.step_seconds / named.evaluation.time.step_seconds
    assert speedup >= 1.05 and f"{speedup:.2f}× faster than through te_allgather" in hint.message
    assert not any(f.code == "cp_exchange" for f in named.findings)


def test_the_inputs_own_overlaps_are_timed() -> None:
    """Megatron-LM leaves gradient reduction after the backward unless --overlap-grad-reduce is given
    (arguments.py, store_true), all-gathers the distributed optimizer's updated parameters inside its step unless
    --overlap-param-gather is, and pipelines TP collectives with --tp-comm-overlap; torchtitan's async TP does the
    latter. The review times what the input sets (a note says so), unless the scenario's `efficiency:` says."""
    args = ("--num-layers 32 --hidden-size 4096 --num-attention-heads 32 --seq-length 4096 --max-position-embeddings "
            "4096 --vocab-size 32000 --micro-batch-size 1 --global-batch-size 64 --tensor-model-parallel-size 2 "
            "--sequence-parallel --bf16 --use-distributed-optimizer")
    plain, both = (review(ReviewRequest(megatron_args=a, gpu="h100", gpus=16), better=False)
                   for a in (args, args + " --overlap-grad-reduce --overlap-param-gather --tp-comm-overlap"))
    b0, b1 = plain.evaluation.time.breakdown, both.evaluation.time.breakdown
    assert b0["dp_comm"] > b1["dp_comm"] and b0["tp_comm"] > b1["tp_comm"]
    notes = [f.message for f in plain.findings if f.code == "note"]
    assert any("dp_overlap 0" in n for n in notes) and not any("tp_overlap" in n for n in notes)
    assert any("param_gather_overlap 0" in n for n in notes)
    assert not any("--overlap-grad-reduce" in f.message or "--overlap-param-gather" in f.message
                   for f in both.findings if f.code == "ignored_flags")
    # and says what the switches would save: the step with them on, less the step as given (one finding: Megatron
    # takes --overlap-param-gather only beside --overlap-grad-reduce)
    hint = [f for f in plain.findings if f.code == "gradient_reduction_not_overlapped"]
    assert len(hint) == 1 and hint[0].message.startswith("--overlap-grad-reduce --overlap-param-gather would hide")
    assert hint[0].message.endswith("behind the backward and the next forward")
    assert not any(f.code.endswith("_not_overlapped") for f in both.findings)
    # the parameter all-gather alone: inside the optimizer step without its switch, under the forward with it
    grads_only = review(ReviewRequest(megatron_args=args + " --overlap-grad-reduce --tp-comm-overlap", gpu="h100",
                                      gpus=16), better=False)
    assert grads_only.evaluation.time.breakdown["dp_comm"] > b1["dp_comm"]
    assert not any(f.code == "gradient_reduction_not_overlapped" for f in grads_only.findings)
    big = ("--num-layers 80 --hidden-size 8192 --num-attention-heads 64 --group-query-attention --num-query-groups 8 "
           "--ffn-hidden-size 28672 --swiglu --seq-length 4096 --max-position-embeddings 4096 --vocab-size 128256 "
           "--micro-batch-size 1 --global-batch-size 32 --tensor-model-parallel-size 8 --sequence-parallel --bf16 "
           "--use-distributed-optimizer --overlap-grad-reduce")
    wide = review(ReviewRequest(megatron_args=big, gpu="h100", gpus=256), better=False)
    (gather,) = [f for f in wide.findings if f.code == "parameter_gather_not_overlapped"]
    assert gather.message.startswith("--overlap-param-gather would hide") and "under the next forward" in gather.message
    sc = scenario({}).model_copy(update={"efficiency": scenario({}).efficiency.model_copy(
        update={"dp_overlap": 1.0, "param_gather_overlap": 1.0})})
    stated = review(ReviewRequest(megatron_args=args, scenario=sc, gpu="h100", gpus=16), better=False)
    assert stated.evaluation.time.breakdown["dp_comm"] == pytest.approx(b1["dp_comm"])
    toml = ("[parallelism]\ntensor_parallel_degree = 2\nenable_async_tensor_parallel = true\n"
            "[training]\nseq_len = 4096\n")
    tt = review(ReviewRequest(torchtitan=toml, model="llama-2-7b", gpu="h100", gpus=16), better=False)
    assert any("tp_overlap 1" in f.message for f in tt.findings)
    assert parse_torchtitan_toml(toml).async_tp and not parse_torchtitan_toml(toml.replace("= 2", "= 1")).async_tp
    # DeepSpeed overlaps the gradient reduction only with overlap_comm, on by default at stage 3 alone
    cases = ((2, None, True), (2, True, False), (3, None, False), (3, False, True), (0, None, True))
    for zero, overlap, taken in cases:
        ds = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "bf16": {"enabled": True},
              "zero_optimization": {"stage": zero} | ({} if overlap is None else {"overlap_comm": overlap})}
        r = review(ReviewRequest(deepspeed=ds, model="llama-2-7b", gpu="h100", gpus=8), better=False)
        assert any("dp_overlap 0" in f.message for f in r.findings) == taken, (zero, overlap)
