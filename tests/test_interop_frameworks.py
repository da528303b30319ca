"""Megatron-LM arguments, DeepSpeed JSON and torchtitan TOML: real launch files in, layouts out, and back.

Fixtures (tests/fixtures/frameworks/) are public configurations written out from their sources:
- megatron_gpt3_175b.sh: NVIDIA/Megatron-LM examples/gpt3/train_gpt3_175b_distributed.sh.
- megatron_llama3_8b_fp8.sh: NVIDIA/Megatron-LM examples/llama/train_llama3_8b_h100_fp8.sh (mock-data branch).
- megatron_llama2_70b_args.sh: NVIDIA/Megatron-LM examples/llama/train_llama2.sh, MODEL_SIZE=70 (quoted strings).
- deepspeed_zero3_auto_offload.json: the ZeRO-3 config of the Hugging Face transformers DeepSpeed docs.
- deepspeed_getting_started.json: the sample config of DeepSpeed's Getting Started page.
- deepspeed_zero_infinity.json: the ZeRO-Infinity block of DeepSpeed's ZeRO tutorial.
- torchtitan_llama3_8b.toml / torchtitan_llama3_70b.toml: pytorch/torchtitan train_configs for Llama 3.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from planner import EstimateRequest, estimate
from planner.catalog import get_model
from planner.errors import InputError
from planner.interop.deepspeed import deepspeed_config_from_layout, parse_deepspeed_config
from planner.interop.frameworks import export
from planner.interop.megatron import megatron_args_from_layout, padded_vocab, parse_megatron_args
from planner.interop.torchtitan import parse_torchtitan_toml, torchtitan_toml_from_layout
from planner.model.params import count_params
from planner.model.pipeline import PipelineSplit, virtual_stage_layers
from planner.model.presets import resolve
from planner.scenario import EfficiencyOverride
from planner.schema import Implementation, Layout, ModelSpec
from planner.workloads.training.legality import layout_problems

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"
SEQ = 4096


SHAPE = "--num-layers 32 --hidden-size 4096 --num-attention-heads 32 --max-position-embeddings 4096 --vocab-size 32000"


def _text(name: str) -> str:
    return (FIXTURES / name).read_text()


def _shape(m: ModelSpec) -> dict[str, Any]:
    """The fields that decide the module tree, without name, source, vocabulary and pretraining context."""
    return m.model_dump(exclude={"name", "source", "vocab", "pretrain_seq"})


# --------------------------------------------------------------------------------------------
# Megatron-LM: the published launch scripts
# --------------------------------------------------------------------------------------------


def test_megatron_gpt3_175b_example() -> None:
    gpt3 = get_model("gpt3-175b")
    cfg = parse_megatron_args(_text("megatron_gpt3_175b.sh"), model=gpt3)
    assert cfg.model is not None
    # Megatron's defaults give GPT-3's architecture: GeLU 4h MLP, LayerNorm, learned positions, biases, tied head.
    assert _shape(cfg.model) == _shape(gpt3)
    assert cfg.model.vocab == 51200  # GPT-2's 50257 tokens padded to a multiple of 128 × TP 8
    assert (cfg.tp, cfg.pp, cfg.vpp, cfg.cp, cfg.zero, cfg.recompute) == (8, 16, 1, 1, 0, "none")
    assert (cfg.micro_batch, cfg.global_batch, cfg.seq, cfg.precision) == (1, 1536, 2048, "fp16")
    assert cfg.fp32_grad_accumulation is False  # fp16 without --accumulate-allreduce-grads-in-fp32
    assert (cfg.dropout, cfg.attention_dropout, cfg.attention) == (0.1, 0.1, "flash")
    assert cfg.gpus_needed_per_dp_replica == 128
    assert cfg.to_layout(1024) == Layout(
        tp=8, pp=16, dp=8, zero=0, micro_batch=1, global_batch=1536, precision="fp16", fp32_grad_accumulation=False
    )
    assert cfg.unknown == [] and cfg.unsupported == {}
    assert {"--rampup-batch-size", "--data-path", "--vocab-file", "--lr", "--nproc_per_node"} <= set(cfg.ignored)
    assert cfg.implementation() == Implementation(attention="flash", dropout=0.1)


def test_megatron_vocab_comes_from_the_tokenizer() -> None:
    with pytest.raises(InputError, match=r"--vocab-size.*--model"):
        parse_megatron_args(_text("megatron_gpt3_175b.sh"))


def test_megatron_llama3_8b_fp8_example() -> None:
    cfg = parse_megatron_args(_text("megatron_llama3_8b_fp8.sh"), model=get_model("llama-3.1-8b"))
    m = cfg.model
    assert m is not None
    assert (m.layers, m.hidden, m.heads, m.kv_heads, m.ffn_hidden, m.max_seq) == (32, 4096, 32, 8, 14336, 8192)
    assert (m.mlp, m.position, m.bias, m.tied_embeddings) == ("swiglu", "rope", "none", False)
    # The script passes no --normalization: Megatron builds LayerNorm (with --apply-layernorm-1p), not RMSNorm.
    assert m.norm == "layernorm"
    assert any("norm layernorm ≠ rmsnorm" in note for note in cfg.notes)
    # NullTokenizer adds an end-of-document token to --vocab-size, then Megatron pads to a multiple of 128.
    assert m.vocab == 128384
    assert cfg.to_layout(8) == Layout(
        dp=8, zero=1, micro_batch=1, global_batch=128, precision="fp8", fp32_grad_accumulation=False
    )
    assert cfg.sequence_parallel is False and any("TP 1" in note for note in cfg.notes)
    assert cfg.unsupported == {}
    # --fp8-format hybrid --fp8-param-gather: fp8 parameters replace the bf16 ones (delayed scaling, the default)
    assert (cfg.fp8_recipe, cfg.fp8_param_gather) == (None, True)
    impl = cfg.implementation()
    assert (impl.framework, impl.fp8_recipe, impl.fp8_param_gather) == ("megatron-core", None, True)
    assert (cfg.dropout, cfg.attention_dropout) == (0.0, 0.0)
    assert cfg.unknown == []


def test_megatron_llama2_70b_quoted_strings() -> None:
    text = _text("megatron_llama2_70b_args.sh")
    # NUM_GROUPS is shell arithmetic; a value the layout needs cannot stay unexpanded.
    with pytest.raises(InputError, match=r"--num-query-groups: '\$NUM_GROUPS'"):
        parse_megatron_args(text)
    llama = get_model("llama-2-70b")
    cfg = parse_megatron_args(text, model=llama, env={"NUM_GROUPS": "8"})
    assert cfg.model is not None
    assert _shape(cfg.model) == _shape(llama) | {"max_seq": 32000}
    assert cfg.model.vocab == 32768
    assert cfg.to_layout(64) == Layout(tp=8, dp=8, zero=1, sequence_parallel=True, micro_batch=1, global_batch=8)
    assert cfg.attention == "flash" and cfg.unknown == [] and cfg.unsupported == {}


def test_megatron_argv_forms_and_unknown_flags() -> None:
    argv = [
        "--num-layers=32", "--hidden-size", "4096", "--num-attention-heads", "32", "--seq-length", "4096",
        "--max-position-embeddings", "4096", "--vocab-size", "32000", "--tensor-model-parallel-size=2",
        "--my-new-knob", "3", "--another-switch", "--micro-batch-size", "2", "--bf16",
    ]
    cfg = parse_megatron_args(argv)
    assert cfg.unknown == ["--my-new-knob", "--another-switch"]
    assert cfg.model is not None and cfg.model.layers == 32 and cfg.model.vocab == 32000
    assert cfg.tp == 2 and cfg.micro_batch == 2
    # Several flags on one line, a `\` continuation, and a comment; no global batch: micro-batch × dp.
    text = "--tensor-model-parallel-size 4 --pipeline-model-parallel-size 2 \\\n  --micro-batch-size 1  # note\n"
    layout = parse_megatron_args(text).to_layout(64)
    assert (layout.tp, layout.pp, layout.dp, layout.global_batch) == (4, 2, 8, 8)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("--num-layers --hidden-size 4096", "--num-layers: missing value"),
        ("--micro-batch-size", "--micro-batch-size: missing value"),
        ("--tensor-model-parallel-size eight", "--tensor-model-parallel-size: expected an integer, got 'eight'"),
        ("--hidden-dropout high", "--hidden-dropout: expected a number"),
        ("--bf16=yes", "--bf16: takes no value"),
        ("--pipeline-model-parallel-size ${PP}", r"--pipeline-model-parallel-size: '\$\{PP\}'"),
        (f"{SHAPE} --normalization BatchNorm", "--normalization: 'BatchNorm' is not one of LayerNorm, RMSNorm"),
        ("--bf16 --fp16", "--bf16 and --fp16"),
        ("--num-layers 32 --hidden-size 4096", "--num-attention-heads missing"),
        ('--data-path "unclosed', "cannot split"),
    ],
)
def test_megatron_errors_name_the_flag(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_megatron_args(text)


def test_megatron_irrelevant_variables_and_layout_errors() -> None:
    cfg = parse_megatron_args("--data-path $DATA --save ${CKPT} --tensor-model-parallel-size 8 --micro-batch-size 2")
    assert {"--data-path", "--save"} <= set(cfg.ignored)
    with pytest.raises(InputError, match=r"--gpus 12 is not a multiple of tp·pp·cp = 8·1·1 = 8"):
        cfg.to_layout(12)
    cfg = parse_megatron_args("--micro-batch-size 2 --global-batch-size 12")
    with pytest.raises(InputError, match=r"--global-batch-size 12 is not divisible by --micro-batch-size"):
        cfg.to_layout(4)
    with pytest.raises(InputError, match="--micro-batch-size"):
        parse_megatron_args("--bf16").to_layout(8)


@pytest.mark.parametrize(
    ("flags", "recompute", "keys", "unsupported"),
    [
        ("--recompute-activations", "selective", {}, set()),
        ("--checkpoint-activations", "full", {}, set()),
        ("--recompute-granularity full --recompute-method uniform --recompute-num-layers 1", "full", {}, set()),
        # 32 layers over PP4: 8 per stage, so block 8 is every layer
        ("--recompute-granularity full --recompute-method block --recompute-num-layers 8", "full", {}, set()),
        ("--recompute-granularity full --recompute-method block --recompute-num-layers 4", "full",
         {"recompute_num_layers": 4, "recompute_method": "block"}, set()),
        ("--recompute-granularity full --recompute-method uniform --recompute-num-layers 2", "full",
         {"recompute_num_layers": 2, "recompute_method": "uniform"}, set()),
        ("--recompute-granularity selective --recompute-modules core_attn mlp", "selective",
         {"recompute_modules": ["core_attn", "mlp"]}, set()),
        ("--recompute-granularity selective --recompute-modules moe_act mhc", "selective",
         {"recompute_modules": ["moe_act"]}, {"--recompute-modules"}),
        ("--recompute-granularity full --recompute-method block --recompute-num-layers 0", "none", {}, set()),
    ],
)
def test_megatron_recompute(flags: str, recompute: str, keys: dict[str, Any], unsupported: set[str]) -> None:
    cfg = parse_megatron_args(f"{SHAPE} --pipeline-model-parallel-size 4 --bf16 {flags}")
    assert cfg.recompute == recompute
    assert set(cfg.unsupported) == unsupported
    got = {"recompute_num_layers": cfg.recompute_num_layers, "recompute_method": cfg.recompute_method,
           "recompute_modules": cfg.recompute_modules}
    expected = {"recompute_num_layers": None, "recompute_method": "block", "recompute_modules": None} | keys
    assert got == expected


def test_megatron_pipeline_split_fp8_and_offload_flags() -> None:
    """Llama 3.1 405B as NeMo-2 runs it: 126 layers + embedding + loss over PP8·VPP8 (2 units a chunk)."""
    text = (
        "--num-layers 126 --hidden-size 16384 --num-attention-heads 128 --group-query-attention --num-query-groups 8 "
        "--ffn-hidden-size 53248 --swiglu --normalization RMSNorm --position-embedding-type rope "
        "--untie-embeddings-and-output-weights --disable-bias-linear --seq-length 8192 --max-position-embeddings 8192 "
        "--vocab-size 128256 --tensor-model-parallel-size 8 --pipeline-model-parallel-size 8 "
        "--num-layers-per-virtual-pipeline-stage 2 --account-for-embedding-in-pipeline-split "
        "--account-for-loss-in-pipeline-split --micro-batch-size 1 --global-batch-size 64 --bf16 "
        "--fp8-format hybrid --fp8-recipe tensorwise --fp8-param-gather --grad-reduce-in-bf16 "
        "--cpu-offloading --cuda-graph-impl transformer_engine --sequence-parallel --use-distributed-optimizer"
    )
    cfg = parse_megatron_args(text)
    assert cfg.vpp == 8 and cfg.unsupported == {}
    layout = cfg.to_layout(512)
    assert layout.account_for_embedding_in_pipeline_split and layout.account_for_loss_in_pipeline_split
    assert not layout_problems(cfg.model, layout, seq=8192)  # type: ignore[arg-type]
    assert (layout.precision, layout.fp32_grad_accumulation) == ("fp8", False)
    impl = cfg.implementation()
    # --cpu-offloading alone: Megatron's --cpu-offloading-num-layers defaults to 0, no layer is offloaded
    assert (impl.fp8_recipe, impl.fp8_param_gather, impl.activation_offload, impl.cuda_graphs) == (
        "current", True, False, True)
    assert any("--cpu-offloading without" in n for n in cfg.notes)
    back = parse_megatron_args(megatron_args_from_layout(cfg.model, layout, 8192, impl), model=cfg.model)
    assert back.to_layout(512) == layout and back.implementation() == impl
    # --cpu-offloading-num-layers N turns offload on for N layers (megatron/training/arguments.py); without a
    # count Megatron offloads none; planner's every layer is written as all but the last, as TE allows
    partial = parse_megatron_args(text.replace("--cpu-offloading", "--cpu-offloading-num-layers 40")).implementation()
    assert (partial.activation_offload, partial.activation_offload_layers) == (True, 40)
    assert "--cpu-offloading-num-layers 40" in megatron_args_from_layout(cfg.model, layout, 8192, partial)
    with pytest.raises(InputError, match="--cpu-offloading-num-layers: 126 must be below --num-layers"):
        parse_megatron_args(text.replace("--cpu-offloading", "--cpu-offloading-num-layers 126"))
    fine = parse_megatron_args(text.replace("--cpu-offloading", "--fine-grained-activation-offloading"))
    assert not fine.implementation().activation_offload  # module inputs only: kept on the GPU, said so
    assert "--fine-grained-activation-offloading" in fine.unsupported
    every = impl.model_copy(update={"activation_offload": True, "activation_offload_layers": None})
    assert "--cpu-offloading-num-layers 125" in megatron_args_from_layout(cfg.model, layout, 8192, every)
    with pytest.raises(InputError, match="activation_offload_layers"):
        megatron_args_from_layout(None, layout, 8192, every)
    # Megatron's first/last-stage layer counts
    uneven = parse_megatron_args(text.replace("--num-layers-per-virtual-pipeline-stage 2 --account-for-embedding-in-"
                                              "pipeline-split --account-for-loss-in-pipeline-split",
                                              "--decoder-first-pipeline-num-layers 14 "
                                              "--decoder-last-pipeline-num-layers 14"))
    lay = uneven.to_layout(512)
    assert (lay.pipeline_first_stage_layers, lay.pipeline_last_stage_layers) == (14, 14)
    again = parse_megatron_args(megatron_args_from_layout(uneven.model, lay, 8192), model=uneven.model)
    assert again.to_layout(512) == lay


def test_megatron_virtual_stages_moe_and_kernels() -> None:
    text = (
        f"{SHAPE} --pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 2 --swiglu "
        "--num-experts 8 --moe-router-topk 2 --moe-ffn-hidden-size 1408 --moe-shared-expert-intermediate-size 2816 "
        "--moe-layer-freq '([0]*1+[1]*31)' --expert-model-parallel-size 4 --transformer-impl local "
        "--attention-dropout 0.0 --hidden-dropout 0.0 --bf16"
    )
    cfg = parse_megatron_args(text)
    assert cfg.vpp == 4 and cfg.ep == 4 and cfg.attention == "eager"
    assert cfg.model is not None and cfg.model.moe is not None
    moe = cfg.model.moe
    assert (moe.experts, moe.top_k, moe.expert_ffn, moe.shared_experts, moe.shared_ffn, moe.dense_layers) == (
        8, 2, 1408, 1, 2816, 1
    )
    assert cfg.model.ffn_hidden == int(4 * 4096 * 2 / 3 / 64) * 64  # Megatron's SwiGLU default width
    cfg = parse_megatron_args(text.replace("'([0]*1+[1]*31)'", "'([1]*1+[0]*31)'"))
    assert "--moe-layer-freq" in cfg.unsupported


def test_megatron_export_refuses_what_it_cannot_say() -> None:
    layout = Layout(dp=8, global_batch=64, optimizer="adam8bit")
    with pytest.raises(InputError, match="adam8bit"):
        megatron_args_from_layout(None, layout, SEQ)
    attention_bias = get_model("llama-3.1-8b").model_copy(update={"bias": "attention"})
    with pytest.raises(InputError, match="bias"):
        megatron_args_from_layout(attention_bias, Layout(dp=8, global_batch=64), SEQ)


def test_exports_ask_for_the_overlaps_the_plan_is_timed_with() -> None:
    """A plan is timed with the gradient reduction under the backward and ZeRO's parameter all-gather under the
    forward; Megatron-LM does neither without --overlap-grad-reduce / --overlap-param-gather, DeepSpeed no gradient
    overlap at stages 1-2 without overlap_comm. The exports say so, and read back with nothing left exposed."""
    m = get_model("llama-2-7b")
    for zero in (0, 1):
        lay = Layout(tp=2, dp=8, zero=zero, micro_batch=1, global_batch=64)
        text = megatron_args_from_layout(m, lay, SEQ)
        assert "--overlap-grad-reduce" in text and ("--overlap-param-gather" in text) == (zero == 1)
        # ZeRO-0 gathers no parameters: without the flag, a sharded plan in its place would gather in the step
        assert parse_megatron_args(text, model=m).overlaps() == ({} if zero else {"param_gather_overlap": 0.0})
        ds = parse_deepspeed_config(deepspeed_config_from_layout(lay))
        assert ds.overlaps() == ({} if zero else {"dp_overlap": 0.0})  # ZeRO-0: the engine reduces after backward
    alone = megatron_args_from_layout(m, Layout(tp=8, dp=1, micro_batch=1, global_batch=8), SEQ)
    assert "--overlap-grad-reduce" not in alone  # no data parallelism, nothing to overlap
    plain = parse_megatron_args("--tensor-model-parallel-size 2 --use-distributed-optimizer", model=m)
    assert plain.overlaps() == {"dp_overlap": 0.0, "param_gather_overlap": 0.0}
    # a plan timed without them (a review's better plan keeps the input's overlaps) is written without them
    lay = Layout(tp=2, dp=8, zero=1, micro_batch=1, global_batch=64)
    text = export("megatron", lay, model=m, seq=SEQ, efficiency=EfficiencyOverride(**plain.overlaps()))
    assert "--overlap-grad-reduce" not in text and "--overlap-param-gather" not in text
    assert parse_megatron_args(text, model=m).overlaps() == plain.overlaps()


def test_megatron_softmax_type_carries_attention_sinks() -> None:
    """gpt-oss's learnable sinks are Megatron-Core's softmax_type "learnable", an argument since 0.16 (generated from
    TransformerConfig): written on export and read back with the window and its skip frequency, to the parameter."""
    oss = get_model("gpt-oss-20b")
    lay = Layout(dp=8, ep=8, global_batch=64)
    text = megatron_args_from_layout(oss, lay, SEQ)
    assert "--softmax-type learnable" in text and "--window-attn-skip-freq 2" in text
    again = parse_megatron_args(text, model=oss)
    assert again.model is not None and again.model.attention_sinks
    assert (again.model.sliding_window, again.model.window_layers) == (oss.sliding_window, oss.window_layers)
    assert count_params(again.model).total == count_params(oss).total
    assert not any("another shape" in n for n in again.notes)
    plain = parse_megatron_args(f"{SHAPE} --softmax-type off-by-one")
    assert plain.model is not None and not plain.model.attention_sinks and "--softmax-type" in plain.unsupported
    with pytest.raises(InputError, match="--softmax-type"):
        parse_megatron_args(f"{SHAPE} --softmax-type sinkful")


def test_megatron_router_has_the_linear_layers_bias() -> None:
    """Megatron-Core's TopKRouter holds a bias of one per expert when the linear layers have biases
    (megatron/core/transformer/moe/router.py, add_bias_linear), as gpt-oss's router does: Megatron arguments
    without --disable-bias-linear count it, 128 a layer here."""
    biased = parse_megatron_args(QWEN3_30B_A3B_ARGS.replace("--disable-bias-linear", ""))
    plain = parse_megatron_args(QWEN3_30B_A3B_ARGS)
    assert biased.model is not None and plain.model is not None and biased.model.bias == "all"
    with_biases = plain.model.model_copy(update={"bias": "all"})
    assert count_params(biased.model).total == count_params(with_biases).total
    router = count_params(with_biases).per_layer_moe - count_params(plain.model).per_layer_moe
    # q/k/v and o biases, each expert's fc1 (gate and up) and fc2 biases, and the router's
    assert router == (32 + 2 * 4) * 128 + 2048 + 128 * (2 * 768 + 2048) + 128


# --------------------------------------------------------------------------------------------
# DeepSpeed
# --------------------------------------------------------------------------------------------


def test_deepspeed_zero3_auto_offload() -> None:
    cfg = parse_deepspeed_config(FIXTURES / "deepspeed_zero3_auto_offload.json")
    assert (cfg.zero, cfg.offload_optimizer, cfg.precision, cfg.optimizer) == (3, True, None, "adamw")
    assert (cfg.micro_batch, cfg.grad_accum, cfg.train_batch, cfg.dp) == (None, None, None, None)
    assert set(cfg.unsupported) == {"zero_optimization.offload_param"}
    assert cfg.unknown == []
    with pytest.raises(InputError, match="train_batch_size and train_micro_batch_size_per_gpu"):
        cfg.to_layout(8)
    # The Trainer's per_device_train_batch_size and gradient_accumulation_steps fill the "auto"s.
    assert cfg.to_layout(8, micro_batch=2, grad_accum=4) == Layout(
        dp=8, zero=3, micro_batch=2, global_batch=64, fp32_grad_accumulation=False, offload_optimizer=True
    )


def test_deepspeed_getting_started() -> None:
    cfg = parse_deepspeed_config(FIXTURES / "deepspeed_getting_started.json")
    assert (cfg.zero, cfg.precision, cfg.optimizer) == (1, "fp16", "adamw")  # "zero_optimization": true is stage 1
    assert cfg.to_layout(8) == Layout(
        dp=8, zero=1, micro_batch=1, global_batch=8, precision="fp16", fp32_grad_accumulation=False
    )
    assert cfg.to_layout(4).micro_batch == 2
    with pytest.raises(InputError, match=r"train_batch_size 8 is not a multiple of gradient_accumulation_steps 1"):
        cfg.to_layout(3)
    with pytest.raises(InputError, match="train_batch_size is 8 in the file, 16 was given"):
        cfg.to_layout(8, global_batch=16)


def test_deepspeed_zero_infinity_block() -> None:
    cfg = parse_deepspeed_config(FIXTURES / "deepspeed_zero_infinity.json")
    assert (cfg.zero, cfg.offload_optimizer) == (3, True)
    assert {"zero_optimization.offload_param", "bf16"} == set(cfg.unsupported)
    assert cfg.to_layout(16, global_batch=32).micro_batch == 2


def test_deepspeed_batch_consistency_and_types() -> None:
    triple = {"train_batch_size": 100, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 8}
    with pytest.raises(InputError, match="train_batch_size 100 is not a multiple of train_micro_batch_size_per_gpu"):
        parse_deepspeed_config(triple)
    cfg = parse_deepspeed_config(triple | {"train_batch_size": 256})
    assert cfg.dp == 8
    with pytest.raises(InputError, match=r"train_batch_size 256 ≠ .* × data-parallel size 16 = 512"):
        cfg.to_layout(16)
    assert cfg.to_layout(16, tp=2).dp == 8
    with pytest.raises(InputError, match="key 'train_micro_batch_size_per_gpu' must be a positive integer"):
        parse_deepspeed_config({"train_micro_batch_size_per_gpu": "four"})
    with pytest.raises(InputError, match=r"zero_optimization\.stage"):
        parse_deepspeed_config({"zero_optimization": {"stage": 5}})
    with pytest.raises(InputError, match="invalid JSON"):
        parse_deepspeed_config('{"train_batch_size": }')
    with pytest.raises(InputError, match="pipeline engine"):
        parse_deepspeed_config({"zero_optimization": {"stage": 2}, "train_batch_size": 64}).to_layout(16, pp=2)


def test_deepspeed_activation_checkpointing_and_unknown_keys() -> None:
    cfg = parse_deepspeed_config(
        {"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": True}, "my_plugin": {},
         "activation_checkpointing": {"partition_activations": True, "cpu_checkpointing": True}}
    )
    assert cfg.recompute == "full" and cfg.unknown == ["my_plugin"]
    assert set(cfg.unsupported) == {"activation_checkpointing.partition_activations"}
    # checkpoints in CPU memory are activation offload; DeepSpeed's ZeRO and pipeline engine are its framework
    impl = cfg.implementation()
    assert (impl.framework, impl.activation_offload) == ("deepspeed", True)
    assert cfg.to_layout(8).fp32_grad_accumulation is True  # bf16 without ZeRO: DeepSpeed's BF16_Optimizer


def test_deepspeed_export_refuses_what_deepspeed_cannot_run() -> None:
    with pytest.raises(InputError, match="stage ≥ 1"):
        deepspeed_config_from_layout(Layout(dp=8, zero=0, global_batch=8, offload_optimizer=True))
    with pytest.raises(InputError, match="pipeline engine"):
        deepspeed_config_from_layout(Layout(pp=2, dp=4, zero=2, global_batch=8))


# --------------------------------------------------------------------------------------------
# torchtitan
# --------------------------------------------------------------------------------------------


def test_torchtitan_llama3_8b() -> None:
    cfg = parse_torchtitan_toml(FIXTURES / "torchtitan_llama3_8b.toml")
    assert cfg.model_name == "llama-3.1-8b" and cfg.model == get_model("llama-3.1-8b")
    assert cfg.shard == -1 and cfg.seq == 8192
    assert cfg.to_layout(64) == Layout(dp=64, zero=3, recompute="selective", micro_batch=1, global_batch=64)
    assert cfg.unsupported == {}  # the "op" policy is the torchtitan preset's selective recompute
    assert resolve(cfg.implementation()).selective == "op"


def test_torchtitan_llama3_70b() -> None:
    cfg = parse_torchtitan_toml(_text("torchtitan_llama3_70b.toml"))
    assert cfg.model_name == "llama-3.1-70b"
    assert cfg.to_layout(64) == Layout(
        tp=8, dp=8, zero=3, recompute="full", sequence_parallel=True, micro_batch=8, global_batch=64
    )
    assert cfg.unsupported == {}
    with pytest.raises(InputError, match=r"--gpus 60 is not a multiple of .* = 1·8·1·1 = 8"):
        cfg.to_layout(60)


def test_torchtitan_plans_are_what_torchtitan_runs_and_read_back_the_same(tmp_path: Path) -> None:
    """The search proposes only layouts torchtitan runs: no DDP (ZeRO-0) beside TP, PP or CP, and no ZeRO-1, which
    FSDP has no form of (it runs, and is timed and sized, as ZeRO-2: FSDP keeping gathered parameters); the best
    plan's TOML, pipeline split included, reviews back at the same step time."""
    from typer.testing import CliRunner

    from planner import Scenario, solve
    from planner.cli import app

    # the scenario states the current models' K/V (not repeated): a job TOML alone reads as the older ones
    doc = {"name": "tt", "model": "llama-3.1-70b", "job": {"tokens": 1e11, "seq_len": 32768, "global_batch": 64},
           "hardware": {"skus": ["h100-sxm"], "max_gpus": 256},
           "implementation": {"framework": "torchtitan", "kv_repeat": False}, "objective": "time", "top_k": 5}
    plans = solve(Scenario.model_validate(doc)).plans
    assert plans
    for p in plans:
        lay = p.evaluation.layout
        assert lay.zero != 1 and not (lay.zero == 0 and (lay.cp > 1 or (lay.dp > 1 and lay.tp * lay.pp > 1)))
    for fw in ("torchtitan", "fsdp"):
        z1, z2 = (estimate(EstimateRequest(model="llama-3.1-8b", gpu="h100-sxm", gpus=16, global_batch=64,
                                           layout={"zero": z}, implementation={"framework": fw})) for z in (1, 2))
        assert z1.time.step_seconds == z2.time.step_seconds and z1.memory.total == z2.memory.total, fw
    scenario = tmp_path / "tt.yaml"
    scenario.write_text(json.dumps(doc))
    runner = CliRunner()
    toml = runner.invoke(app, ["solve", str(scenario), "--emit", "torchtitan"])
    assert toml.exit_code == 0, toml.output
    assert toml.stdout.startswith("# Planned without repeating K/V per query head")
    (tmp_path / "tt.toml").write_text(toml.stdout)
    back = runner.invoke(app, ["review", str(scenario), "--torchtitan", str(tmp_path / "tt.toml"), "--gpu", "h100-sxm",
                               "--gpus", str(plans[0].evaluation.layout.gpus), "--format", "json"])
    assert back.exit_code in (0, 1), back.output
    got = json.loads(back.stdout)
    assert got["time"]["step_seconds"] == pytest.approx(plans[0].evaluation.time.step_seconds, rel=1e-9)
    assert got["layout"]["zero"] == plans[0].evaluation.layout.zero


def test_torchtitan_degrees_and_errors() -> None:
    ddp = parse_torchtitan_toml("[parallelism]\ndata_parallel_replicate_degree = 8\ndata_parallel_shard_degree = 1\n")
    assert ddp.to_layout(8).zero == 0 and "parallelism.data_parallel_replicate_degree" not in ddp.unsupported
    # torchtitan's default selective_ac_option "2" wraps every second layer: listed, taken as full
    assert ddp.recompute == "full" and "activation_checkpoint.selective_ac_option" in ddp.unsupported
    with pytest.raises(InputError, match=r"--gpus 16 ≠ the product"):
        ddp.to_layout(16)
    # HSDP: 2 replicas of 4-way shards
    hsdp = parse_torchtitan_toml("[parallelism]\ndata_parallel_replicate_degree = 2\ndata_parallel_shard_degree = 4\n")
    assert "parallelism.data_parallel_replicate_degree" not in hsdp.unsupported
    assert (hsdp.to_layout(8).dp, hsdp.to_layout(8).dp_shard, hsdp.to_layout(8).zero) == (8, 4, 3)
    assert "data_parallel_replicate_degree = 2" in torchtitan_toml_from_layout(hsdp.to_layout(8), SEQ)
    # one layer in 4 checkpointed with a known model: a block count of ⌈32/4⌉ recomputed layers
    every4 = parse_torchtitan_toml('[activation_checkpoint]\nmode = "selective"\nselective_ac_option = "4"\n',
                                   model=get_model("llama-3.1-8b"))
    assert (every4.recompute, every4.recompute_num_layers, every4.unsupported) == ("full", 8, {})
    # float8 with FSDP float8 all-gather, PP with the interleaved schedule's default two stages per rank
    fp8 = parse_torchtitan_toml(
        '[model]\nconverters = ["float8"]\n[float8]\nenable_fsdp_float8_all_gather = true\n'
        '[parallelism]\npipeline_parallel_degree = 4\npipeline_parallel_schedule = "Interleaved1F1B"\n'
        '[training]\nlocal_batch_size = 8\n', model=get_model("llama-3.1-8b"))
    impl = fp8.implementation()
    assert (impl.framework, impl.fp8_recipe, impl.fp8_param_gather, fp8.vpp) == ("torchtitan", "current", True, 2)
    assert fp8.to_layout(8).precision == "fp8"
    pipeline = parse_torchtitan_toml(
        "[parallelism]\npipeline_parallel_degree = 2\n[training]\nlocal_batch_size = 8\nglobal_batch_size = 64\n"
    )
    layout = pipeline.to_layout(8)  # PP keeps FSDP parameters gathered across micro-batches: ZeRO-2's memory
    assert (layout.zero, layout.dp, layout.micro_batch, layout.global_batch) == (2, 4, 1, 64)
    with pytest.raises(InputError, match=r"activation_checkpoint\.mode"):
        parse_torchtitan_toml('[activation_checkpoint]\nmode = "partial"\n')
    with pytest.raises(InputError, match=r"parallelism\.tensor_parallel_degree must be a positive integer"):
        parse_torchtitan_toml('[parallelism]\ntensor_parallel_degree = "8"\n')
    with pytest.raises(InputError, match=r"training\.global_batch_size 60 is not a multiple"):
        parse_torchtitan_toml("[training]\nlocal_batch_size = 2\nglobal_batch_size = 60\n").to_layout(8)
    with pytest.raises(InputError, match="invalid TOML"):
        parse_torchtitan_toml("[training\nseq_len = 1\n")
    with pytest.raises(InputError, match="zero: 0 with cp > 1"):
        torchtitan_toml_from_layout(Layout(dp=2, cp=2, zero=0, global_batch=8), SEQ)


# --------------------------------------------------------------------------------------------
# Round trips over legal layouts
# --------------------------------------------------------------------------------------------

MODELS = ("llama-3.1-8b", "mixtral-8x7b", "qwen3-30b-a3b")


@st.composite
def legal_layouts(draw: st.DrawFn, extras: bool = False) -> tuple[ModelSpec, Layout]:
    """A model and a layout planner accepts for it (legality.layout_problems is empty) at sequence SEQ; with
    `extras`, Megatron's partial recompute and pipeline-split flags too."""
    m = get_model(draw(st.sampled_from(MODELS)))
    tp = draw(st.sampled_from([1, 2, 4, 8]))
    pp = draw(st.sampled_from([1, 2, 4]))
    dp = draw(st.sampled_from([1, 2, 4, 8]))
    cp = draw(st.sampled_from([1, 2]))
    mbs, gas = draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 4, 8]))
    vpp = draw(st.sampled_from([1, 2, 4])) if pp > 1 and gas % pp == 0 else 1
    ep = draw(st.sampled_from([e for e in (1, 2, 4, 8) if (dp * cp) % e == 0])) if m.moe else 1
    layout = Layout(
        tp=tp, pp=pp, vpp=vpp, dp=dp, cp=cp, ep=ep,
        zero=draw(st.sampled_from([0, 1] if pp > 1 else [0, 1, 2, 3])),
        recompute=draw(st.sampled_from(["none", "selective", "full"])),
        sequence_parallel=tp > 1 and draw(st.booleans()),
        micro_batch=mbs, global_batch=mbs * gas * dp,
        precision=draw(st.sampled_from(["bf16", "fp16", "fp8"])),
        fp32_grad_accumulation=draw(st.booleans()),
        optimizer=draw(st.sampled_from(["adam", "adamw", "sgd"])),
        offload_optimizer=draw(st.booleans()),
    )
    if extras and pp > 1:
        layout = layout.model_copy(update={
            "account_for_embedding_in_pipeline_split": draw(st.booleans()),
            "account_for_loss_in_pipeline_split": draw(st.booleans()),
        })
    if extras and pp > 1 and not (layout.account_for_embedding_in_pipeline_split
                                  or layout.account_for_loss_in_pipeline_split) and draw(st.integers(0, 3)) == 0:
        # an explicit layout: the layers cut anywhere into pp·vpp stages (Megatron --pipeline-model-parallel-layout)
        cuts = sorted(draw(st.lists(st.integers(0, m.layers), min_size=pp * vpp - 1, max_size=pp * vpp - 1)))
        edges = [0, *cuts, m.layers]
        layout = layout.model_copy(update={"pipeline_layout": tuple(b - a for a, b in itertools.pairwise(edges))})
    if extras and m.moe is not None and layout.sequence_parallel and draw(st.booleans()):
        # Megatron-Core's EP folding: experts unsplit, EP over TP·DP·CP
        fold = [e for e in (1, 2, 4, 8) if (tp * dp * cp) % e == 0 and m.moe.experts % e == 0]
        layout = layout.model_copy(update={"expert_tp": 1, "ep": draw(st.sampled_from(fold))})
    if extras and layout.recompute == "full" and draw(st.booleans()):
        chunk = m.layers // (pp * vpp)
        method = draw(st.sampled_from(["block", "uniform"]))
        count = draw(st.integers(1, chunk - 1) if method == "block" else st.integers(2, 8)) if chunk > 1 else None
        if count is not None:
            layout = layout.model_copy(update={"recompute_num_layers": count, "recompute_method": method})
    assume(not layout_problems(m, layout, seq=SEQ))
    return m, layout


@st.composite
def megatron_implementations(draw: st.DrawFn, layout: Layout, moe: bool = False, layers: int = 64) -> Implementation:
    """The implementation keys Megatron-LM arguments carry, for a layout's precision and recompute (and the
    token dispatcher of an MoE model, and the layers offload may take: all but the last)."""
    fp8 = layout.precision == "fp8"
    return Implementation(
        fp8_recipe=draw(st.sampled_from([None, "delayed", "current", "mxfp8", "blockwise"])) if fp8 else None,
        fp8_param_gather=fp8 and draw(st.booleans()),
        recompute_modules=draw(st.sampled_from([None, ["core_attn", "mlp"], ["layernorm", "moe_act"]]))
        if layout.recompute == "selective" else None,
        activation_offload=(offload := layers > 1 and draw(st.booleans())),
        activation_offload_layers=draw(st.integers(1, layers - 1)) if offload else None,  # Megatron states a count
        cuda_graphs=draw(st.booleans()),
        moe_token_dispatcher=draw(st.sampled_from(["alltoall", "allgather", "flex"])) if moe else None,
    )


ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@ROUND_TRIP
@given(legal_layouts(extras=True), st.booleans(), st.data())
def test_megatron_round_trip(case: tuple[ModelSpec, Layout], with_model: bool, data: st.DataObject) -> None:
    m, layout = case
    if not with_model:  # the pipeline-split flags need the layer count to derive the chunks
        assume(not (layout.account_for_embedding_in_pipeline_split or layout.account_for_loss_in_pipeline_split))
    impl = data.draw(megatron_implementations(layout, moe=with_model and m.moe is not None, layers=m.layers))
    text = megatron_args_from_layout(m if with_model else None, layout, SEQ, impl)
    cfg = parse_megatron_args(text, model=m if with_model else None)  # the vocabulary is the tokenizer's
    # Megatron's "adam" is AdamW (decoupled weight decay); the offload count reads back into the layout as well as
    # the implementation (a plan's own count, as `solve` chooses it, is the layout's); the rest as written.
    assert cfg.to_layout(layout.gpus) == layout.model_copy(
        update={"optimizer": "adamw" if layout.optimizer == "adam" else layout.optimizer,
                "activation_offload_layers": impl.activation_offload_layers}
    )
    assert cfg.seq == SEQ and cfg.unknown == [] and cfg.unsupported == {}
    assert cfg.implementation() == impl
    if with_model:
        assert cfg.model is not None
        assert _shape(cfg.model) == _shape(m)
        assert cfg.model.vocab == padded_vocab(m.vocab, 128, layout.tp)
    else:
        assert cfg.model is None


@ROUND_TRIP
@given(legal_layouts())
def test_deepspeed_round_trip(case: tuple[ModelSpec, Layout]) -> None:
    _, layout = case
    assume(layout.cp == 1 and layout.ep == 1 and layout.vpp == 1)  # no place for them in DeepSpeed's JSON
    assume(not (layout.offload_optimizer and layout.zero == 0) and not (layout.pp > 1 and layout.zero >= 2))
    config = deepspeed_config_from_layout(layout)
    cfg = parse_deepspeed_config(json.loads(json.dumps(config)))
    precision = "fp16" if layout.precision == "fp16" else "bf16"  # fp8 GEMMs run inside a bf16 config
    expected = layout.model_copy(
        update={
            "precision": precision,
            "recompute": "full" if layout.recompute == "full" else "none",  # selective is the model code's
            "sequence_parallel": False,
            "optimizer": "adamw",  # the client code's optimizer
            # DeepSpeed accumulates in fp32 only for bf16 with ZeRO 0/1; otherwise in the model dtype
            "fp32_grad_accumulation": layout.fp32_grad_accumulation and precision == "bf16" and layout.zero <= 1,
        }
    )
    assert cfg.to_layout(layout.gpus, tp=layout.tp, pp=layout.pp) == expected
    assert cfg.unknown == [] and cfg.unsupported == {}


@ROUND_TRIP
@given(legal_layouts())
def test_torchtitan_round_trip(case: tuple[ModelSpec, Layout]) -> None:
    m, layout = case
    assume(layout.precision != "fp16" and layout.fp32_grad_accumulation and layout.optimizer != "sgd")
    assume(layout.zero > 0 or (layout.cp == 1 and (layout.dp == 1 or layout.tp * layout.pp == 1)))
    sharded = layout.zero > 0 and layout.dp * layout.cp > 1
    assume(sharded or not layout.offload_optimizer)  # CPU offload is an FSDP option
    chunks = None
    if layout.vpp > 2:
        # torchtitan sizes stages by pipeline_parallel_layers_per_stage over layers + embedding + output; where no
        # whole count gives pp·vpp stages, the same even split is written stage by stage (module_fqns_per_model_part)
        units, stages = m.layers + 2, layout.pp * layout.vpp
        if -(-units // -(-units // stages)) != stages:
            got = virtual_stage_layers(m.layers, layout.pp, layout.vpp, PipelineSplit("torchtitan"))
            assert not isinstance(got, str)
            chunks = got
    text = torchtitan_toml_from_layout(layout, SEQ, m)
    cfg = parse_torchtitan_toml(text, model=m)  # Mixtral is no torchtitan flavor: the model comes from the caller
    expected = layout.model_copy(
        update={
            # FSDP2 is ZeRO-3; ZeRO-1/2 are written as FSDP without resharding (ZeRO-2's memory);
            # a single data-parallel rank shards nothing
            "zero": (3 if layout.zero == 3 else 2) if sharded else 0,
            "sequence_parallel": layout.tp > 1,  # torchtitan's TP plan always shards the sequence
            **({"pipeline_layout": chunks} if chunks else {}),
        }
    )
    assert cfg.to_layout(layout.gpus) == expected
    assert cfg.seq == SEQ and cfg.model == m
    # op-level selective checkpointing and FSDP's CPU offload are listed, as for any file that uses them
    assert set(cfg.unsupported) <= {"activation_checkpoint.selective_ac_option", "training.enable_cpu_offload"}


def test_megatron_token_dispatcher_is_read() -> None:
    """--moe-token-dispatcher-type sets implementation.moe_token_dispatcher (Megatron's default allgather when
    absent; --moe-enable-deepep is the older spelling of flex); a dense model has no dispatcher."""
    moe = "--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 1024 --num-experts 8 " \
          "--moe-router-topk 2 --expert-model-parallel-size 2 --max-position-embeddings 1024 --vocab-size 32000"
    for extra, want in (("", "allgather"), ("--moe-token-dispatcher-type alltoall", "alltoall"),
                        ("--moe-token-dispatcher-type flex --moe-flex-dispatcher-backend hybridep", "flex"),
                        ("--moe-enable-deepep", "flex")):
        cfg = parse_megatron_args(f"{moe} {extra}")
        assert cfg.implementation().moe_token_dispatcher == want, extra
        assert cfg.unknown == []
    dense = parse_megatron_args("--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 1024 "
                                "--max-position-embeddings 1024 --vocab-size 32000")
    assert dense.implementation().moe_token_dispatcher is None


def test_megatron_arguments_without_a_shape_take_it_from_the_model_given() -> None:
    """A launch line may leave the shape to --model (no --num-layers, --hidden-size, ...): the virtual stages
    derive from its layers and an MoE model's dispatcher is still read."""
    mixtral = get_model("mixtral-8x7b")
    cfg = parse_megatron_args("--pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 2 "
                              "--expert-model-parallel-size 8 --moe-token-dispatcher-type alltoall", model=mixtral)
    assert cfg.model is None and cfg.vpp == mixtral.layers // (4 * 2)
    assert cfg.implementation().moe_token_dispatcher == "alltoall"
    dense = parse_megatron_args("--moe-token-dispatcher-type alltoall", model=get_model("llama-2-7b"))
    assert dense.implementation().moe_token_dispatcher is None
    with pytest.raises(InputError, match="needs --num-layers"):
        parse_megatron_args("--pipeline-model-parallel-size 4 --num-layers-per-virtual-pipeline-stage 2")


def test_megatron_cross_entropy_fusion_is_read_and_written() -> None:
    """--cross-entropy-loss-fusion with --cross-entropy-fusion-impl te runs Transformer Engine's parallel
    cross-entropy (implementation.cross_entropy fused_inplace); the native fusion, te without the fusion switch,
    or neither keeps Megatron's vocab-parallel loss (the framework default, None). The exported flags read back
    to the same kernel."""
    dense = "--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 1024 " \
            "--max-position-embeddings 1024 --vocab-size 32000 --micro-batch-size 1 --global-batch-size 8"
    for extra, want in (("", None), ("--cross-entropy-loss-fusion", None),
                        ("--cross-entropy-loss-fusion --cross-entropy-fusion-impl native", None),
                        ("--cross-entropy-fusion-impl te", None),
                        ("--cross-entropy-loss-fusion --cross-entropy-fusion-impl te", "fused_inplace")):
        cfg = parse_megatron_args(f"{dense} {extra}")
        assert cfg.implementation().cross_entropy == want, extra
        assert cfg.unknown == [] and not any("cross-entropy" in flag for flag in cfg.ignored), extra
    fused = parse_megatron_args(f"{dense} --cross-entropy-loss-fusion --cross-entropy-fusion-impl te")
    args = megatron_args_from_layout(fused.model, fused.to_layout(8), 1024, fused.implementation())
    assert "--cross-entropy-fusion-impl te" in args
    assert parse_megatron_args(args, model=fused.model).implementation().cross_entropy == "fused_inplace"
    with pytest.raises(InputError, match="--cross-entropy-fusion-impl"):
        parse_megatron_args(f"{dense} --cross-entropy-fusion-impl triton")


def test_megatron_precision_aware_optimizer_is_read_and_written() -> None:
    """--use-precision-aware-optimizer narrows the optimizer state (megatron/core/optimizer/distrib_optimizer.py):
    with bf16 parameters the fp32 master keeps only its 16-bit remainder unless --no-store-param-remainders,
    --exp-avg-dtype / --exp-avg-sq-dtype set the moments, --main-grads-dtype bf16 the gradients. The exported
    flags read back to the same state; a narrowed dtype without the switch is refused as Megatron refuses it."""
    dense = "--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 1024 --bf16 " \
            "--max-position-embeddings 1024 --vocab-size 32000 --micro-batch-size 1 --global-batch-size 8"
    for extra, want in (
            ("", ("fp32", "fp32", True)),
            ("--use-precision-aware-optimizer", ("remainder", "fp32", True)),
            ("--use-precision-aware-optimizer --no-store-param-remainders", ("fp32", "fp32", True)),
            ("--use-precision-aware-optimizer --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16 --main-grads-dtype bf16",
             ("remainder", "bf16", False)),
            ("--use-precision-aware-optimizer --no-store-param-remainders --main-params-dtype fp16 "
             "--exp-avg-dtype fp8 --exp-avg-sq-dtype fp8", ("fp16", "fp8", True))):
        cfg = parse_megatron_args(f"{dense} {extra}")
        layout = cfg.to_layout(8)
        assert (layout.master_weights, layout.moment_dtype, layout.fp32_grad_accumulation) == want, extra
        assert cfg.unknown == [] and cfg.unsupported == {}, extra
        args = megatron_args_from_layout(cfg.model, layout, 1024, cfg.implementation())
        back = parse_megatron_args(args, model=cfg.model).to_layout(8)
        assert (back.master_weights, back.moment_dtype, back.fp32_grad_accumulation) == want, args
    with pytest.raises(InputError, match="--exp-avg-dtype bf16: Megatron needs --use-precision-aware-optimizer"):
        parse_megatron_args(f"{dense} --exp-avg-dtype bf16")
    with pytest.raises(InputError, match="one dtype"):
        parse_megatron_args(f"{dense} --use-precision-aware-optimizer --exp-avg-dtype fp8 --exp-avg-sq-dtype bf16")
    none = Layout(dp=8, global_batch=8, master_weights="none", moment_dtype="bf16")
    with pytest.raises(InputError, match="master_weights none"):
        megatron_args_from_layout(get_model("llama-3.1-8b"), none, 1024, Implementation())
    # DeepSpeed and torchtitan step fp32 master partitions / shards with fp32 moments: nothing to write it as
    with pytest.raises(InputError, match="DeepSpeed's ZeRO optimizer"):
        deepspeed_config_from_layout(none)
    with pytest.raises(InputError, match="torchtitan's AdamW"):
        torchtitan_toml_from_layout(none, 1024, "llama-3.1-8b")


def test_torchtitan_compiled_loss_is_the_fused_cross_entropy() -> None:
    """A loss under torch.compile ([compile] enable with "loss" among the components, torchtitan's default, or an
    older file's [training] compile) keeps only the bf16 logits: cross_entropy fused; compiling the model alone,
    or nothing, leaves the eager fp32 loss. A fused loss is written as a compiled loss and reads back so."""
    base = "[parallelism]\ndata_parallel_shard_degree = 8\n"
    for extra, want in (("", None), ("[compile]\nenable = true\n", "fused"),
                        ('[compile]\nenable = true\ncomponents = ["model"]\n', None),
                        ('[compile]\nenable = true\ncomponents = ["model", "loss"]\n', "fused"),
                        ("[compile]\nenable = false\n", None), ("[training]\ncompile = true\n", "fused")):
        assert parse_torchtitan_toml(base + extra).implementation().cross_entropy == want, extra
    with pytest.raises(InputError, match=r"compile\.enable must be true or false"):
        parse_torchtitan_toml(base + '[compile]\nenable = "yes"\n')
    with pytest.raises(InputError, match=r"compile\.components"):
        parse_torchtitan_toml(base + "[compile]\nenable = true\ncomponents = 3\n")
    layout = Layout(dp=8, zero=3, recompute="selective", global_batch=16, micro_batch=2)
    impl = Implementation(framework="torchtitan", cross_entropy="fused")
    text = torchtitan_toml_from_layout(layout, SEQ, "llama-3.1-8b", impl)
    assert '[compile]\nenable = true\ncomponents = ["loss"]' in text
    assert parse_torchtitan_toml(text).implementation().cross_entropy == "fused"
    assert "[compile]" not in torchtitan_toml_from_layout(layout, SEQ, "llama-3.1-8b")


def test_torchtitan_module_fqns_carry_an_explicit_pipeline_layout() -> None:
    """parallelism.module_fqns_per_model_part (one list of module names per model part) holds an uneven layout:
    written from layout.pipeline_layout with the embedding in the first part and norm + output in the last, and
    read back as layers per part; a part count that pp does not divide is refused."""
    layout = Layout(pp=2, vpp=2, dp=4, zero=3, recompute="full", global_batch=32, pipeline_layout=(7, 9, 9, 7))
    text = torchtitan_toml_from_layout(layout, SEQ, "llama-3.1-8b")
    assert '"tok_embeddings", "layers.0"' in text and '"layers.31", "norm", "output"]]' in text
    back = parse_torchtitan_toml(text).to_layout(layout.gpus)
    assert (back.pp, back.vpp, back.pipeline_layout) == (2, 2, (7, 9, 9, 7))
    bad = text.replace("pipeline_parallel_degree = 2", "pipeline_parallel_degree = 3")
    with pytest.raises(InputError, match="module_fqns_per_model_part has 4 model parts"):
        parse_torchtitan_toml(bad)


def test_torchtitan_context_parallel_exchange_and_repeated_kv() -> None:
    """A job TOML's context_parallel_rotate_method ([experimental] in 2024, [parallelism] in 2025) is the stack's
    K/V exchange, and the TOML era's models repeated K/V per query head before SDPA (kv_repeat, unless a scenario
    beside the file states it); an all-to-all rotation is written back and reads back the same."""
    base = "[parallelism]\ndata_parallel_shard_degree = 2\ncontext_parallel_degree = 4\n"
    plain = parse_torchtitan_toml(base)
    assert (plain.implementation().cp_exchange, plain.implementation().kv_repeat) == (None, True)
    assert resolve(plain.implementation()).cp_exchange == "allgather"  # torchtitan's default rotate method
    assert any("kv_repeat" in note for note in plain.notes)
    rotate = 'context_parallel_rotate_method = "alltoall"\n'
    for text in (base + rotate, "[experimental]\n" + rotate + base):
        assert parse_torchtitan_toml(text).implementation().cp_exchange == "alltoall"
    beside = Implementation.model_validate({"framework": "torchtitan", "kv_repeat": False})
    assert plain.implementation(beside).kv_repeat is False
    assert plain.implementation(Implementation(framework="torchtitan")).kv_repeat is True
    with pytest.raises(InputError, match=r"parallelism\.context_parallel_rotate_method must be 'allgather' or"):
        parse_torchtitan_toml(base + 'context_parallel_rotate_method = "ring"\n')
    layout = Layout(dp=2, cp=4, zero=3, recompute="full", global_batch=2, micro_batch=1)
    text = torchtitan_toml_from_layout(layout, SEQ, "llama-3.1-8b",
                                       Implementation(framework="torchtitan", cp_exchange="alltoall"))
    assert parse_torchtitan_toml(text).implementation().cp_exchange == "alltoall"
    assert "rotate_method" not in torchtitan_toml_from_layout(layout, SEQ, "llama-3.1-8b")


def test_megatron_cp_comm_type_is_read() -> None:
    """--cp-comm-type (one type, or one per layer): p2p is planner's ring; hierarchical a2a+p2p and per-layer mixes
    are named as timed as the ring, where CP > 1; anything else is bad input."""
    text = _text("megatron_llama3_8b_fp8.sh")
    assert "--cp-comm-type" not in parse_megatron_args(text + " --cp-comm-type p2p").unsupported
    assert "--cp-comm-type" not in parse_megatron_args(text + " --cp-comm-type a2a").unsupported  # CP 1
    cfg = parse_megatron_args(text + " --context-parallel-size 2 --cp-comm-type p2p a2a+p2p allgather")
    assert "a2a+p2p, allgather" in cfg.unsupported["--cp-comm-type"] and cfg.unknown == []
    assert cfg.implementation().cp_exchange is None  # a mix: the ring
    with pytest.raises(InputError, match=r"--cp-comm-type: 'ring' is not one of"):
        parse_megatron_args(text + " --cp-comm-type ring")


def test_megatron_a2a_context_parallelism_is_ulysses() -> None:
    """--cp-comm-type a2a on every layer is Transformer Engine's all-to-all exchange (implementation.cp_exchange
    ulysses), written back as such; its layout rule wants each TP rank's query and K/V heads to split cp ways."""
    text = _text("megatron_llama3_8b_fp8.sh") + " --context-parallel-size 2 --cp-comm-type a2a"
    cfg = parse_megatron_args(text, model=get_model("llama-3.1-8b"))
    assert cfg.implementation().cp_exchange == "ulysses" and "--cp-comm-type" not in cfg.unsupported
    layout = cfg.to_layout(8)
    assert "--cp-comm-type a2a" in megatron_args_from_layout(cfg.model, layout, SEQ, cfg.implementation())
    assert "--cp-comm-type" not in megatron_args_from_layout(cfg.model, layout, SEQ, Implementation())
    m = get_model("llama-3.1-8b")  # 32 query heads, 8 K/V heads
    ok = Layout(tp=2, cp=4, dp=1, sequence_parallel=True, global_batch=8)
    bad = Layout(tp=4, cp=4, dp=1, sequence_parallel=True, global_batch=8)
    ulysses = Implementation(cp_exchange="ulysses")
    assert not [p for p in layout_problems(m, ok, impl=ulysses) if p.startswith("cp:")]
    assert any("2 K/V heads per TP rank" in p for p in layout_problems(m, bad, impl=ulysses))
    assert not [p for p in layout_problems(m, bad) if p.startswith("cp:")]  # the ring has no such rule


def test_megatron_all_gather_context_parallelism_is_transformer_engines() -> None:
    """--cp-comm-type all_gather (Transformer Engine's spelling; Megatron's help says allgather) on every layer is
    Transformer Engine's all-gather exchange (implementation.cp_exchange te_allgather), written back in the
    spelling Transformer Engine's attention accepts (context_parallel.py attn_forward_func_with_cp)."""
    text = _text("megatron_llama3_8b_fp8.sh") + " --context-parallel-size 2"
    for spelling in ("all_gather", "allgather"):
        cfg = parse_megatron_args(text + f" --cp-comm-type {spelling}", model=get_model("llama-3.1-8b"))
        assert cfg.implementation().cp_exchange == "te_allgather" and "--cp-comm-type" not in cfg.unsupported
        args = megatron_args_from_layout(cfg.model, cfg.to_layout(8), SEQ, cfg.implementation())
        assert "--cp-comm-type all_gather" in args
        again = parse_megatron_args(args, model=get_model("llama-3.1-8b"))
        assert again.implementation().cp_exchange == "te_allgather"


def test_megatron_a2a_p2p_is_the_hierarchical_exchange() -> None:
    """--cp-comm-type a2a+p2p with two levels of --hierarchical-context-parallel-sizes (all-to-all, then p2p) is
    implementation.cp_exchange hierarchical with cp_a2a_size the first level, written back as such; without the
    sizes it is timed as the ring (a note says so), sizes that do not multiply to the CP size are bad input. The
    all-to-all level must divide cp and each TP rank's heads."""
    m = get_model("llama-3.1-8b")  # 32 query heads, 8 K/V heads
    text = _text("megatron_llama3_8b_fp8.sh") + " --context-parallel-size 4 --cp-comm-type a2a+p2p"
    cfg = parse_megatron_args(text + " --hierarchical-context-parallel-sizes 2 2", model=m)
    impl = cfg.implementation()
    assert (impl.cp_exchange, impl.cp_a2a_size) == ("hierarchical", 2) and "--cp-comm-type" not in cfg.unsupported
    args = megatron_args_from_layout(cfg.model, cfg.to_layout(8), SEQ, impl)
    assert "--cp-comm-type a2a+p2p" in args and "--hierarchical-context-parallel-sizes 2 2" in args
    again = parse_megatron_args(args, model=m).implementation()
    assert (again.cp_exchange, again.cp_a2a_size) == ("hierarchical", 2)
    bare = parse_megatron_args(text, model=m)
    assert bare.implementation().cp_exchange is None and "a2a+p2p" in bare.unsupported["--cp-comm-type"]
    with pytest.raises(InputError, match="is not the context parallel size 4"):
        parse_megatron_args(text + " --hierarchical-context-parallel-sizes 2 4", model=m)
    with pytest.raises(InputError, match="expected positive integers"):
        parse_megatron_args(text + " --hierarchical-context-parallel-sizes 2 x", model=m)
    lay = Layout(tp=2, cp=4, dp=1, sequence_parallel=True, global_batch=8)
    ok = Implementation(cp_exchange="hierarchical", cp_a2a_size=2)
    assert not [p for p in layout_problems(m, lay, impl=ok) if p.startswith(("cp", "implementation"))]
    thin = layout_problems(m, lay.model_copy(update={"tp": 8}), impl=ok)  # 1 K/V head per TP rank
    assert any(p.startswith("implementation.cp_a2a_size: 2 does not divide") for p in thin)
    odd = layout_problems(m, lay.model_copy(update={"cp": 6}), impl=Implementation(cp_exchange="hierarchical",
                                                                                     cp_a2a_size=4))
    assert any("does not split into all-to-all groups" in p for p in odd)
    with pytest.raises(ValidationError, match="go together"):
        Implementation(cp_a2a_size=2)
    with pytest.raises(ValidationError, match="go together"):
        Implementation(cp_exchange="hierarchical")


DEEPSEEK_V3_ARGS = """
--num-layers 61 --hidden-size 7168 --ffn-hidden-size 18432 --num-attention-heads 128
--multi-latent-attention --q-lora-rank 1536 --kv-lora-rank 512 --qk-head-dim 128 --qk-pos-emb-head-dim 64
--v-head-dim 128 --qk-layernorm --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights
--disable-bias-linear --position-embedding-type rope --rotary-scaling-factor 40 --mscale 1.0 --mscale-all-dim 1.0
--num-experts 256 --moe-layer-freq ([0]*3+[1]*58) --moe-ffn-hidden-size 2048 --moe-shared-expert-intermediate-size 2048
--moe-router-topk 8 --moe-router-score-function sigmoid --moe-router-enable-expert-bias --moe-router-num-groups 8
--moe-router-group-topk 4 --moe-router-fusion --moe-permute-fusion --moe-grouped-gemm --overlap-moe-expert-parallel-comm
--vocab-size 129280 --tokenizer-type HuggingFaceTokenizer --max-position-embeddings 163840 --seq-length 4096
--micro-batch-size 1 --global-batch-size 8192 --bf16 --tensor-model-parallel-size 2
--pipeline-model-parallel-size 16 --expert-model-parallel-size 64
"""


def test_megatron_multi_latent_attention_is_read() -> None:
    """DeepSeek-V3 as Megatron-LM arguments (multi-latent attention, dense first layers, a shared expert): the
    shape is the catalog's to the parameter, with the MLA widths from their flags; the MoE and RoPE tuning flags
    around it are known. Without --qk-layernorm Megatron builds no latent norms, which a note says planner counts;
    an MLA flag left out takes Megatron's default."""
    cfg = parse_megatron_args(DEEPSEEK_V3_ARGS)
    catalog = get_model("deepseek-v3")
    assert cfg.unknown == [] and cfg.unsupported == {}
    assert cfg.model is not None and cfg.model.mla == catalog.mla and cfg.model.moe == catalog.moe
    assert count_params(cfg.model).total == count_params(catalog).total == 671_026_404_352
    again = parse_megatron_args(DEEPSEEK_V3_ARGS, model=catalog)
    assert not any("another shape" in n for n in again.notes)
    bare = parse_megatron_args(DEEPSEEK_V3_ARGS.replace("--qk-layernorm", "").replace("--v-head-dim 128", ""))
    assert any("without --qk-layernorm" in n for n in bare.notes)
    assert bare.model is not None and bare.model.mla is not None and bare.model.mla.v_head_dim == 128
    # and written back: the same shape read again
    layout = Layout(tp=2, pp=16, dp=8, ep=64, expert_tp=1, sequence_parallel=True, global_batch=8192)
    back = parse_megatron_args(megatron_args_from_layout(catalog, layout, 4096, Implementation()), model=catalog)
    assert back.unknown == [] and back.unsupported == {} and not any("another shape" in n for n in back.notes)
    assert back.model is not None and (back.model.mla, back.model.moe) == (catalog.mla, catalog.moe)


def test_todays_megatron_flags_are_known() -> None:
    """Flags of today's Megatron-LM launches are known: those that change neither memory nor time are listed as
    ignored, those planner does not model are named with why (hybrid layer patterns leave the model to --model),
    and FSDP2 without resharding after forward is read (implementation.reshard_after_forward false)."""
    text = _text("megatron_llama3_8b_fp8.sh")
    speed = ("--tp-comm-overlap-cfg ub.yaml --use-nccl-ub --ddp-num-buckets 4 --ddp-pad-buckets-for-high-nccl-busbw "
             "--rope-type yarn --yarn-beta-fast 32 --no-one-logger --enable-ft-package --dist-ckpt-workers 4 "
             "--check-for-large-grads --fsdp-double-buffer --optimizer-cuda-graph")
    cfg = parse_megatron_args(f"{text} {speed}")
    assert cfg.unknown == [] and cfg.unsupported == {}
    assert {"--use-nccl-ub", "--rope-type", "--fsdp-double-buffer"} <= set(cfg.ignored)
    noted = ("--window-size (4096,0) --num-distributed-optimizer-instances 2 --keep-fp8-transpose-cache "
             "--freeze-all-layers --yaml-cfg args.yaml")
    cfg = parse_megatron_args(f"{text} {noted}")
    noted_flags = {"--num-distributed-optimizer-instances", "--keep-fp8-transpose-cache", "--freeze-all-layers",
                   "--yaml-cfg"}
    assert cfg.unknown == [] and noted_flags <= set(cfg.unsupported) and "--window-size" not in cfg.unsupported
    assert cfg.model is not None and cfg.model.sliding_window == 4097  # 4,096 keys before the query, and itself
    hybrid = parse_megatron_args(f"{text} --hybrid-layer-pattern M-M*-M-")
    assert hybrid.model is None and "give the model with --model" in hybrid.unsupported["--hybrid-layer-pattern"]
    for extra, reshard in (("", None), (" --torch-fsdp2-no-reshard-after-forward", False)):
        fsdp2 = parse_megatron_args(f"{text} --use-torch-fsdp2{extra}")
        assert fsdp2.zero == 3 and fsdp2.implementation().reshard_after_forward is reshard


def test_megatron_full_iteration_graphs_capture_the_step() -> None:
    """--cuda-graph-impl full_iteration captures the whole forward and backward (implementation.cuda_graph_scope
    step): none of the per-layer graphs' static input and output buffers (transformer_engine and local keep them),
    and it is written back as such."""
    from planner.model.memory import training_memory

    m = get_model("llama-3.1-8b")
    text = _text("megatron_llama3_8b_fp8.sh")
    step = parse_megatron_args(text + " --cuda-graph-impl full_iteration", model=m)
    layer = parse_megatron_args(text + " --cuda-graph-impl transformer_engine", model=m)
    assert (step.implementation().cuda_graph_scope, layer.implementation().cuda_graph_scope) == ("step", None)
    lay = layer.to_layout(8)
    plain = training_memory(m, lay, SEQ, layer.implementation().model_copy(update={"cuda_graphs": False})).total
    assert training_memory(m, lay, SEQ, step.implementation()).total == plain
    assert training_memory(m, lay, SEQ, layer.implementation()).total > plain
    back = megatron_args_from_layout(m, lay, SEQ, step.implementation())
    assert "--cuda-graph-impl full_iteration" in back
    assert parse_megatron_args(back, model=m).implementation().cuda_graph_scope == "step"


def test_each_framework_writes_only_its_own_cp_exchange() -> None:
    """torchtitan's context parallelism is PyTorch's (all-gather or all-to-all rotation), Megatron-LM's is
    Transformer Engine's (ring or all-to-all heads): a plan timed with the other's exchange is refused by name."""
    m = get_model("llama-3.1-8b")
    layout = Layout(dp=2, cp=4, zero=3, recompute="full", global_batch=2, micro_batch=1)
    for exchange in ("ring", "ulysses", "te_allgather", "hierarchical"):
        impl = Implementation(framework="torchtitan", cp_exchange=exchange,
                              cp_a2a_size=2 if exchange == "hierarchical" else None)
        with pytest.raises(InputError, match=f"cp_exchange {exchange}: torchtitan's context parallelism"):
            torchtitan_toml_from_layout(layout, SEQ, m, impl)
    megatron = Layout(tp=2, cp=4, dp=1, sequence_parallel=True, global_batch=8)
    with pytest.raises(InputError, match="cp_exchange allgather: that is PyTorch's"):
        megatron_args_from_layout(m, megatron, SEQ, Implementation(cp_exchange="allgather"))
    assert "--cp-comm-type" not in megatron_args_from_layout(m, megatron, SEQ, Implementation(cp_exchange="ring"))


QWEN3_30B_A3B_ARGS = """
--num-layers 48 --hidden-size 2048 --ffn-hidden-size 6144 --num-attention-heads 32 --group-query-attention
--num-query-groups 4 --kv-channels 128 --qk-layernorm --normalization RMSNorm --swiglu --disable-bias-linear
--untie-embeddings-and-output-weights --position-embedding-type rope --rotary-base 1000000 --num-experts 128
--moe-router-topk 8 --moe-ffn-hidden-size 768 --moe-grouped-gemm --vocab-size 151936 --max-position-embeddings 40960
--seq-length 4096 --micro-batch-size 1 --global-batch-size 1024 --bf16 --expert-model-parallel-size 8
"""


def test_megatron_query_key_norms_are_counted() -> None:
    """Qwen3-30B-A3B as Megatron-LM arguments: --qk-layernorm puts a norm of kv-channels on every head's query and
    key (megatron/core/transformer/attention.py), which makes the shape the catalog's to the parameter; written
    back, the flag returns."""
    catalog = get_model("qwen3-30b-a3b")
    cfg = parse_megatron_args(QWEN3_30B_A3B_ARGS)
    assert cfg.unknown == [] and cfg.unsupported == {}
    assert cfg.model is not None and _shape(cfg.model) == _shape(catalog)
    assert count_params(cfg.model.model_copy(update={"vocab": catalog.vocab})).total == count_params(catalog).total
    assert count_params(catalog).total == 30_532_122_624
    without = parse_megatron_args(QWEN3_30B_A3B_ARGS.replace("--qk-layernorm", ""))
    assert without.model is not None and without.model.qk_norm == "none"
    layout = Layout(dp=8, ep=8, global_batch=1024)
    text = megatron_args_from_layout(catalog, layout, 4096, Implementation())
    assert "--qk-layernorm" in text.split()
    assert _shape(parse_megatron_args(text, model=catalog).model) == _shape(catalog)


def test_megatron_sliding_windows_are_read_and_written() -> None:
    """--window-size (left, 0) is a window of left + 1 keys (Transformer Engine's window_size), and
    --window-attn-skip-freq N leaves every N-th layer full (megatron/core/transformer/utils.py
    is_layer_window_attention): gpt-oss's alternate layers; written back, the same shape returns."""
    base = QWEN3_30B_A3B_ARGS.replace("--qk-layernorm", "")
    cfg = parse_megatron_args(base + ' --window-size "(127, 0)" --window-attn-skip-freq 2')
    assert cfg.model is not None and (cfg.model.sliding_window, cfg.model.window_layers) == (128, 24)
    assert cfg.unsupported == {}
    every = parse_megatron_args(base + " --window-size (4095,0)")
    assert every.model is not None and (every.model.sliding_window, every.model.n_window_layers) == (4096, 48)
    two_sided = parse_megatron_args(base + ' --window-size "(128, 128)"')
    assert two_sided.model is not None and two_sided.model.sliding_window is None
    assert "--window-size" in two_sided.unsupported
    layout = Layout(dp=8, ep=8, global_batch=1024)
    text = megatron_args_from_layout(cfg.model, layout, 4096, Implementation())
    back = parse_megatron_args(text, model=cfg.model).model
    assert back is not None and (back.sliding_window, back.window_layers) == (128, 24)
    odd = cfg.model.model_copy(update={"window_layers": 41})  # 48 // N is never 7: no N leaves 41 windowed
    with pytest.raises(InputError, match="window-attn-skip-freq"):
        megatron_args_from_layout(odd, layout, 4096, Implementation())
