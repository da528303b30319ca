"""Framework presets and the memory they imply: state layouts (a real FSDP2 step on CPU/gloo), what
Transformer Engine saves in fp8, recompute modules and partial recompute, FSDP resharding inside pipeline
stages, HSDP, the caching allocator's view, and the published runs' framework_settings as scenario keys.

Where no CPU oracle exists (Transformer Engine's fp8 kernels, DeepSpeed's ZeRO), the expected numbers are
the frameworks' own documented or source-stated formulas, written out term by term here.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.catalog import get_model
from planner.interop.published import build_case, framework_of, recipe_keys
from planner.model.memory import (
    ActivationShape,
    Recipe,
    layer_activation_bytes,
    layer_gemm_weights_on_rank,
    recompute_dropped,
    state_bytes_per_param,
    training_memory,
)
from planner.model.presets import FP8_ACTIVATION_BYTES, PRESETS, knobs_dict, resolve
from planner.schema import GIB, Implementation, Layout, Overheads

LLAMA = get_model("llama-3.1-8b")


def per_param(recipe: Recipe, zero: int, d: int, state: str) -> float:
    return float(sum(state_bytes_per_param(recipe, np.int64(zero), d, state)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# State layouts
# --------------------------------------------------------------------------------------------


def test_fsdp2_holds_16_over_d_measured() -> None:
    """A real `fully_shard` + AdamW step on 2 gloo ranks: fp32 shards are the master, 16/d B/param."""
    pytest.importorskip("torch")
    from fsdp_oracle import fsdp2_state_bytes

    for w, g, o, dtype in fsdp2_state_bytes(2):
        assert dtype == "torch.float32"  # the sharded parameter is fp32: no separate master copy
        wd, gd, od = (float(x) for x in state_bytes_per_param(Recipe(), np.int64(3), 2, "fsdp2"))
        assert (w, g, o) == (wd, gd, od) == (2.0, 2.0, 4.0)
    assert per_param(Recipe(), 3, 8, "fsdp2") == 16 / 8


@pytest.mark.parametrize("d", [2, 8, 64])
def test_deepspeed_zero_layouts(d: int) -> None:
    """DeepSpeed's estimators (stage_1_and_2.py: 2 + 18/d; stage3.py: 18/d) and BF16_Optimizer's unsharded
    fp32 gradient accumulation (bf16_optimizer.py)."""
    fp32 = Recipe()
    assert per_param(fp32, 3, d, "deepspeed") == pytest.approx(18 / d)
    assert per_param(fp32, 2, d, "deepspeed") == pytest.approx(2 + 18 / d)
    assert per_param(fp32, 1, d, "deepspeed") == pytest.approx(2 + 2 + 4 + 12 / d)  # BF16_Optimizer, ZeRO-1
    assert per_param(Recipe(fp32_grad_accumulation=False), 1, d, "deepspeed") == pytest.approx(2 + 2 + 16 / d)
    # next to Megatron's distributed optimizer (6 + 12/d) and FSDP's 16/d at ZeRO-3
    assert per_param(fp32, 1, d, "megatron") == pytest.approx(6 + 12 / d)
    assert per_param(fp32, 3, d, "fsdp1") == pytest.approx(16 / d)


def test_fsdp_inside_pipeline_stages_keeps_params_and_grads() -> None:
    """torchtitan runs FSDP2 in each pipeline stage without resharding: the stage's 16-bit parameters stay
    gathered and its gradients accumulate unsharded in fp32 until the last micro-batch (stage.py)."""
    impl = Implementation(framework="torchtitan")
    base = Layout(pp=4, dp=8, zero=3, global_batch=256, recompute="full")
    mem = training_memory(LLAMA, base, 8192, impl)
    resharded = training_memory(LLAMA, base, 8192, impl.model_copy(update={"reshard_after_forward": True}))
    per_stage = mem.weights / (4 / 8 + 2)  # sharded fp32 (4/d) + gathered bf16 (2)
    assert mem.gradients == pytest.approx(per_stage * (4 / 8 + 4), rel=1e-6)
    # an explicit reshard still accumulates unsharded gradients across the micro-batches of the schedule
    assert resharded.weights == pytest.approx(mem.weights, rel=1e-6)
    one_stage = training_memory(LLAMA, base.model_copy(update={"pp": 1, "dp": 32}), 8192, impl)
    assert one_stage.weights == pytest.approx(llama_params() * 4 / 32, rel=1e-6)  # resharded: shards only


def llama_params() -> int:
    from planner.model.params import count_params

    return count_params(LLAMA).total


def test_hsdp_shards_inside_dp_shard() -> None:
    impl = Implementation(framework="torchtitan")
    full = training_memory(LLAMA, Layout(dp=64, zero=3, global_batch=64), 8192, impl)
    hsdp = training_memory(LLAMA, Layout(dp=64, zero=3, global_batch=64, dp_shard=8), 8192, impl)
    assert hsdp.optimizer == pytest.approx(full.optimizer * 8, rel=1e-6)
    assert hsdp.weights == pytest.approx(llama_params() * 4 / 8, rel=1e-6)


# --------------------------------------------------------------------------------------------
# fp8 (Transformer Engine formulas: layernorm_linear.py, linear.py, tensor/*.py)
# --------------------------------------------------------------------------------------------


def test_fp8_activations_follow_transformer_engine() -> None:
    """TE saves each GEMM input in fp8 (1 B, plus scales for MXFP8 / blockwise): the QKV and fc1 inputs (the
    norm outputs) and fc2's input shrink, while the attention output is kept in 16-bit by the attention kernel
    and once more in fp8 by the output projection."""
    s, b, t = 4096, 1, 2
    x16 = ActivationShape(s=s, b=b, t=t, r=t, dropout=False)
    h, f, ad = LLAMA.hidden, LLAMA.ffn_hidden, LLAMA.heads * LLAMA.d_head
    bf16 = layer_activation_bytes(LLAMA, Implementation(), x16, "none", False)
    for recipe, per_elt in FP8_ACTIVATION_BYTES.items():
        k = resolve(Implementation(fp8_recipe=recipe), precision="fp8")
        assert k.fp8_activation_bytes == per_elt
        x8 = ActivationShape(s=s, b=b, t=t, r=t, dropout=False, gemm_in=per_elt)
        fp8 = layer_activation_bytes(LLAMA, k, x8, "none", False)
        expected = bf16 + s * b * ((per_elt - 2) * (2 * h / t + f / t) + per_elt * ad / t)
        assert fp8 == pytest.approx(expected)
    assert FP8_ACTIVATION_BYTES["mxfp8"] == 1 + 1 / 32  # one E8M0 scale per 32 elements


def test_fp8_weight_copies_and_param_gather() -> None:
    """Delayed/current scaling keep an fp8 copy of each GEMM weight and its transpose (2 B/param) next to the
    bf16 weight; with fp8_param_gather the fp8 parameter replaces the bf16 one (the distributed optimizer's
    fp32 master is unchanged), so the copies cost nothing extra."""
    lay = Layout(tp=1, dp=8, zero=1, global_batch=64, precision="fp8")
    bf16 = training_memory(LLAMA, lay.model_copy(update={"precision": "bf16"}), 8192)
    fp8 = training_memory(LLAMA, lay, 8192)
    gathered = training_memory(LLAMA, lay, 8192, Implementation(fp8_param_gather=True))
    gemm = LLAMA.layers * layer_gemm_weights_on_rank(LLAMA, 1, 1, False)[0]
    assert fp8.weights - bf16.weights == pytest.approx(2 * gemm, abs=2)
    assert gathered.weights - bf16.weights == pytest.approx(0, abs=2)
    assert gathered.optimizer == fp8.optimizer == bf16.optimizer
    # torchao (torchtitan) keeps no fp8 weight cache and saves 16-bit inputs
    tt = resolve(Implementation(framework="torchtitan"), precision="fp8")
    assert (tt.fp8_weight_bytes, tt.fp8_activation_bytes) == (0.0, 2.0)


# --------------------------------------------------------------------------------------------
# Recompute
# --------------------------------------------------------------------------------------------


def test_recompute_modules_drop_what_megatron_recomputes() -> None:
    x = ActivationShape(s=4096, b=1, t=1, r=1, dropout=False)
    none = layer_activation_bytes(LLAMA, Implementation(), x, "none", False)
    sb, h, f = 4096, LLAMA.hidden, LLAMA.ffn_hidden
    mlp = resolve(Implementation(recompute_modules=["mlp"]))
    # the dense MLP past its input: pre-MLP RMSNorm rstd, fc1 input, [gate, up] and fc2 input
    assert recompute_dropped(LLAMA, mlp, x, False) == 4 * sb + 2 * sb * h + 6 * sb * f
    assert layer_activation_bytes(LLAMA, mlp, x, "selective", False) == none - recompute_dropped(LLAMA, mlp, x, False)
    norms = resolve(Implementation(recompute_modules=["layernorm"]))
    assert recompute_dropped(LLAMA, norms, x, False) == 2 * 2 * sb * h
    # flash attention leaves nothing large for core_attn to drop; eager attention its s² tensors
    assert recompute_dropped(LLAMA, resolve(Implementation()), x, False) == 0
    eager = resolve(Implementation(attention="eager"))
    assert recompute_dropped(LLAMA, eager, x, False) == 2 * LLAMA.heads * sb * 4096
    moe = get_model("mixtral-8x7b")
    assert moe.moe is not None
    act = resolve(Implementation(recompute_modules=["moe_act"]))
    assert recompute_dropped(moe, act, x, True) == moe.moe.top_k * sb * 2 * moe.moe.expert_ffn


def test_partial_recompute_block_and_uniform() -> None:
    """Megatron's block method recomputes N layers of each chunk and keeps the rest: memory rises linearly
    from full recompute to none; uniform groups store one input per group."""
    base = Layout(pp=4, dp=2, global_batch=64, recompute="full")
    acts = [training_memory(LLAMA, base.model_copy(update={"recompute_num_layers": n}), 8192).activations
            for n in (1, 2, 4, 7)]
    full = training_memory(LLAMA, base, 8192).activations
    none = training_memory(LLAMA, base.model_copy(update={"recompute": "none"}), 8192).activations
    assert full < acts[-1] < acts[2] < acts[1] < acts[0] < none
    # each recomputed layer per chunk trades one kept layer for its input, on every micro-batch in flight
    assert acts[0] - acts[1] == pytest.approx((acts[1] - acts[2]) / 2, rel=1e-9)
    uniform = training_memory(LLAMA, base.model_copy(update={"recompute_num_layers": 2,
                                                             "recompute_method": "uniform"}), 8192)
    assert uniform.activations < acts[-1]


def test_torchtitan_selective_is_the_op_policy() -> None:
    """torchtitan's selective ("op") saves every other matmul output, attention outputs and the layer input;
    Megatron's selective (core_attn with flash) keeps nearly everything."""
    x = ActivationShape(s=8192, b=1, t=1, r=1, dropout=False)
    tt = resolve(Implementation(framework="torchtitan"))
    sb, h, f = 8192, LLAMA.hidden, LLAMA.ffn_hidden
    kv = LLAMA.n_kv_heads * LLAMA.d_head
    op = layer_activation_bytes(LLAMA, tt, x, "selective", False)
    assert op == 2 * sb * h + 2 * sb * (h + kv) + 2 * sb * f + 2 * sb * h + 2 * sb * h + 4 * LLAMA.heads * sb
    none = layer_activation_bytes(LLAMA, tt, x, "none", False)
    assert op < 0.5 * none
    meg = layer_activation_bytes(LLAMA, Implementation(), x, "selective", False)
    assert meg == layer_activation_bytes(LLAMA, Implementation(), x, "none", False)


# --------------------------------------------------------------------------------------------
# What frameworks log, and the resolved knobs
# --------------------------------------------------------------------------------------------


def test_reserved_allocated_and_device_totals() -> None:
    mem = training_memory(LLAMA, Layout(dp=8, global_batch=64), 8192, overheads=Overheads())
    assert mem.total - mem.reserved == Overheads().reserve_bytes  # CUDA context and workspaces: outside torch
    assert mem.reserved == pytest.approx(mem.allocated * (1 + Overheads().fragmentation), abs=8)
    assert set(mem.as_dict()) == {"weights", "gradients", "optimizer", "activations", "buffers", "reserve", "total"}


def test_knobs_resolve_presets_and_overrides() -> None:
    k = resolve(Implementation(framework="torchtitan"))
    assert (k.reshard(1), k.reshard(4), k.state, k.split.style, k.fused_swiglu) == (True, False, "fsdp2",
                                                                                   "torchtitan", False)
    k = resolve(Implementation(framework="torchtitan", reshard_after_forward=True))
    assert k.reshard(4) is True
    assert resolve(Implementation(), precision="fp8").fp8_recipe == PRESETS["megatron-core"].fp8_recipe
    from planner.catalog import get_gpu

    assert resolve(Implementation(), precision="fp8", gpu=get_gpu("b200")).fp8_recipe == "mxfp8"
    assert knobs_dict(resolve(Implementation()))["framework"] == "megatron-core"


# --------------------------------------------------------------------------------------------
# Published runs' framework_settings
# --------------------------------------------------------------------------------------------


def test_recipe_keys_read_framework_settings() -> None:
    run = {
        "id": "nemo-llama3.1-405b-fp8", "source": {"title": "NVIDIA NeMo-2 recipe"},
        "parallelism": {"zero_stage": 1}, "hardware": {"gpus_per_node": 8},
        "framework_settings": {
            "framework": "NeMo 25.02 container, Megatron-Core", "grad_reduce_in_fp32": False,
            "fp8_recipe": "tensorwise (Float8CurrentScaling)", "fp8_param_gather": "True (fp8_params)",
            "recompute": "full (block)", "recompute_method": "block", "recompute_num_layers": 2,
            "recompute_modules": "[core_attn, mlp]", "account_for_embedding_in_pipeline_split": True,
            "account_for_loss_in_pipeline_split": "True", "activation_offload": "n/a", "cuda_graphs": True,
        },
    }
    impl, lay, _ = recipe_keys(run)
    assert impl == {"framework": "megatron-core", "fp8_recipe": "current", "fp8_param_gather": True,
                    "recompute_modules": ["core_attn", "mlp"], "cuda_graphs": True}
    assert lay == {"fp32_grad_accumulation": False, "precision": "fp8", "recompute": "full",
                   "recompute_num_layers": 2, "recompute_method": "block",
                   "account_for_embedding_in_pipeline_split": True, "account_for_loss_in_pipeline_split": True}
    # Megatron --cpu-offloading-num-layers N turns offload on for N layers
    offload = {**run, "framework_settings": {**run["framework_settings"], "cpu_offloading_num_layers": 40}}
    impl, _, _ = recipe_keys(offload)
    assert (impl["activation_offload"], impl["activation_offload_layers"]) == (True, 40)
    tt = {"id": "torchtitan-h100-llama3-8b", "source": {"title": "torchtitan"}, "parallelism": {},
          "framework_settings": {"framework": "torchtitan @abc", "fsdp_reshard_after_forward": "never",
                                 "data_parallel_shard_degree": 8, "activation_checkpoint": "selective (op)"}}
    impl, lay, _ = recipe_keys(tt)
    assert impl == {"framework": "torchtitan", "reshard_after_forward": False}
    assert lay == {"dp_shard": 8, "recompute": "selective"}
    # torchtitan compiles its loss with the model (components/loss.py build_cross_entropy_loss, 2025 on)
    tt["framework_settings"]["loss_fn"] = "cross_entropy_loss under torch.compile"
    assert recipe_keys(tt)[0]["cross_entropy"] == "fused"
    assert framework_of({"id": "bloom-176b", "source": {"title": "BigScience BLOOM"}, "parallelism": {}}) == "deepspeed"
    mosaic = {"id": "mosaicml-mpt-7b", "source": {"title": "llm-foundry"}, "parallelism": {},
              "framework_settings": {"framework": "Composer + llm-foundry", "fsdp": "FULL_SHARD",
                                     "fsdp_mixed_precision": "PURE (bf16 reduce)"}}
    impl, lay, _ = recipe_keys(mosaic)
    # llm-foundry's default loss is flash-attn's fused cross-entropy; a recipe that names its loss_fn wins
    assert impl == {"framework": "fsdp", "cross_entropy": "fused"} and lay == {"fp32_grad_accumulation": False}
    mosaic["framework_settings"]["loss_fn"] = "torch_crossentropy"
    assert "cross_entropy" not in recipe_keys(mosaic)[0]
    # NeMo 1's Apex DistributedFusedAdam keeps the bf16 parameters' remainders; in bf16 (optim.dtype) no master
    nemo1 = {"id": "nemo-24.07-gpt3", "source": {"title": "NeMo"}, "parallelism": {}, "precision": "fp8",
             "framework_settings": {"framework": "NeMo-1 megatron_gpt_pretraining",
                                    "distributed_optimizer": "Apex distributed_fused_adam"}}
    assert recipe_keys(nemo1)[1] == {"master_weights": "remainder"}
    nemo1["framework_settings"]["optimizer_dtype"] = "bf16 (yaml optim.dtype)"
    assert recipe_keys(nemo1)[1] == {"master_weights": "none", "moment_dtype": "bf16"}
    assert recipe_keys({**nemo1, "precision": "fp16"})[1] == {}  # an fp16 model keeps an fp32 master (store_params)


def test_published_nvidia_runs_fit_and_bloom_within_15_percent() -> None:
    from planner.interop.published import load_runs, predicted_memory, reference_dir

    ref = reference_dir()
    if ref is None:
        pytest.skip("published_runs.yaml not available")
    for run in load_runs(ref):
        case = build_case(run)
        if isinstance(case, str):
            continue
        mem = training_memory(case.model, case.layout, case.seq, case.impl)
        assert mem.total <= case.gpu.hbm_bytes, case.id
        if case.measured_memory is not None:
            pred = predicted_memory(mem, case.measured_memory.kind)
            assert abs(pred / case.measured_memory.bytes - 1) <= 0.15, (case.id, pred / GIB)
