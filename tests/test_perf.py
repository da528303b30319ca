"""Time model: collective costs, pipeline bubble, breakdown, scalar vs vectorised, the seed numbers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import get_gpu
from planner.model import comm
from planner.model.memory import Recipe
from planner.model.perf import (
    BREAKDOWN_KEYS,
    fixed_utilisation_time,
    optimizer_step_bytes,
    step_time_table,
    training_time,
)
from planner.model.power import POWER_EXPONENT, power_limited, power_scale
from planner.model.stack import time_arrays
from planner.schema import Efficiency, Implementation, Layout, ModelSpec, MoESpec

A100 = get_gpu("a100-80gb")
H100 = get_gpu("h100-sxm")
GPT = dict(mlp="gelu", norm="layernorm", bias="all", position="learned", tied_embeddings=True)
GPT3 = ModelSpec(name="gpt3-175b", layers=96, hidden=12288, heads=96, ffn_hidden=4 * 12288, vocab=50257,
                 max_seq=2048, **GPT)
SMALL = ModelSpec(layers=24, hidden=2048, heads=16, ffn_hidden=8192, vocab=32000, max_seq=4096)
MOE = ModelSpec(layers=16, hidden=2048, heads=16, kv_heads=4, ffn_hidden=8192, vocab=32000, max_seq=4096,
                moe=MoESpec(experts=8, top_k=2, expert_ffn=4096))


# --------------------------------------------------------------------------------------------
# Collectives
# --------------------------------------------------------------------------------------------


def test_ring_all_reduce_inside_a_node_is_the_alpha_beta_formula() -> None:
    ln = comm.links(A100)
    nbytes = 256e6
    g = comm.group(8, 1, ln)  # TP 8 on an 8-GPU node
    assert g.spans == 0
    bw = A100.intra_node_gbs * 1e9 * A100.efficiency.intra_node
    latency = ln.base_lat + 2 * 7 * ln.hop_intra
    assert comm.all_reduce(nbytes, g) == pytest.approx(2 * 7 / 8 * nbytes / bw + latency)
    # all-gather and reduce-scatter move half the wire bytes of an all-reduce, one ring round
    assert comm.all_gather(nbytes, g) == pytest.approx(7 / 8 * nbytes / bw + ln.base_lat + 7 * ln.hop_intra)
    assert comm.reduce_scatter(nbytes, g) == comm.all_gather(nbytes, g)


def test_groups_cross_the_network_when_they_do_not_fit_in_a_node() -> None:
    ln = comm.links(A100, gpus_per_node=8)
    nic = A100.network_gbps / 8 * 1e9 * A100.efficiency.inter_node
    # DP over 4 nodes with TP 8 inside each: one rank per node, each ring hop on the NIC
    dp = comm.group(4, 8, ln)
    assert (dp.local, dp.nodes, dp.spans) == (1, 4, 1.0)
    assert dp.bus_bw == pytest.approx(nic)
    # NCCL's latency: 3 network steps between the 4 nodes
    assert dp.step_lat == pytest.approx(3 * ln.hop_inter)
    # TP 2 × DP 4 fits in one node: NVLink
    assert comm.group(4, 2, ln).spans == 0
    # 16 ranks, 8 per node: crosses, and may use as many NICs as Efficiency.nic_aggregation allows
    wide = comm.links(A100, A100.efficiency.model_copy(update={"nic_aggregation": 4}), 8)
    g = comm.group(16, 1, wide)
    assert g.spans == 1 and g.local == 8
    assert g.bus_bw == pytest.approx(min(A100.intra_node_gbs * 1e9 * 0.8, 4 * nic))
    # a single rank costs nothing
    assert comm.all_reduce(1e9, comm.group(1, 1, ln)) == 0


def test_network_collectives_are_slower_than_nvlink_ones() -> None:
    ln = comm.links(H100)
    inside = comm.all_reduce(1e9, comm.group(8, 1, ln))
    across = comm.all_reduce(1e9, comm.group(8, 8, ln))
    assert across > 5 * inside  # 50 GB/s NIC vs 450 GB/s NVLink per direction


def test_all_to_all_and_p2p() -> None:
    ln = comm.links(H100)
    # inside a node: (n-1)/n of the bytes over NVLink
    g = comm.group(8, 1, ln)
    assert comm.all_to_all(8e8, g) == pytest.approx(7 / 8 * 8e8 / ln.intra_bw + ln.base_lat + 7 * ln.hop_intra)
    # a pipeline neighbour on another node goes over the NIC
    pp = comm.group(4, 8, ln)
    assert comm.p2p(1e8, pp) == pytest.approx(1e8 / ln.nic_bw + ln.base_lat + ln.hop_inter)


# --------------------------------------------------------------------------------------------
# Step composition
# --------------------------------------------------------------------------------------------


def layout(**kw: object) -> Layout:
    base = dict(tp=8, pp=8, vpp=1, dp=4, micro_batch=1, global_batch=256, zero=1, recompute="full")
    base.update(kw)
    return Layout(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("vpp", [1, 3])
def test_bubble_is_p_minus_1_over_v_m_of_the_pipeline(vpp: int) -> None:
    untied = GPT3.model_copy(update={"tied_embeddings": False})  # no once-per-step embedding sync
    lay = layout(vpp=vpp)
    est = training_time(untied, lay, A100, 2048, 1e9)
    # everything done once per micro-batch on the slowest stage
    pipeline = sum(est.breakdown[k] for k in ("compute", "tp_comm", "cp_comm", "ep_comm", "pp_comm"))
    assert est.breakdown["bubble"] == pytest.approx((lay.pp - 1) / (vpp * lay.grad_accumulation) * pipeline)


def test_no_bubble_without_pipeline() -> None:
    est = training_time(GPT3, layout(pp=1, dp=32, zero=1), A100, 2048, 1e9)
    assert est.breakdown["bubble"] == 0
    assert est.breakdown["pp_comm"] == 0


@pytest.mark.parametrize("lay", [
    layout(),
    layout(pp=1, dp=32, zero=3, tp=1, global_batch=64),
    layout(recompute="selective", sequence_parallel=True, vpp=2),
    layout(cp=2, dp=2, zero=2),
])
def test_breakdown_sums_to_the_step(lay: Layout) -> None:
    est = training_time(GPT3, lay, H100, 2048, 1e12)
    assert set(est.breakdown) == set(BREAKDOWN_KEYS)
    assert sum(est.breakdown.values()) == pytest.approx(est.step_seconds)
    assert all(v >= 0 for v in est.breakdown.values())
    assert 0 < est.mfu < est.hfu < 1


def test_moe_and_context_parallel_pay_their_communication() -> None:
    lay = Layout(tp=2, pp=1, dp=16, cp=2, ep=8, zero=1, sequence_parallel=True, micro_batch=1, global_batch=64)
    est = training_time(MOE, lay, H100, 4096, 1e9)
    assert est.breakdown["ep_comm"] > 0
    assert sum(est.breakdown.values()) == pytest.approx(est.step_seconds)
    wide = training_time(MOE, lay.model_copy(update={"cp": 1, "dp": 32}), H100, 4096, 1e9)
    assert wide.breakdown["cp_comm"] == 0


def test_recompute_costs_time_and_overlap_saves_it() -> None:
    none = training_time(GPT3, layout(recompute="none"), A100, 2048, 1e9)
    full = training_time(GPT3, layout(recompute="full"), A100, 2048, 1e9)
    assert full.step_seconds > 1.2 * none.step_seconds  # about one more forward of every layer
    hidden = A100.efficiency.model_copy(update={"tp_overlap": 1.0})  # TE userbuffers: needs SP
    sp = layout(sequence_parallel=True)
    overlapped = training_time(GPT3, sp, A100, 2048, 1e9, efficiency=hidden)
    assert overlapped.breakdown["tp_comm"] < training_time(GPT3, sp, A100, 2048, 1e9).breakdown["tp_comm"]


def test_smaller_gemms_run_less_efficiently() -> None:
    """TP shards and small micro-batches shrink the GEMMs: per-GPU compute efficiency falls."""
    def hfu(tp: int, mbs: int) -> float:
        lay = Layout(tp=tp, dp=64 // tp, micro_batch=mbs, global_batch=64 * 8 // tp * mbs, recompute="full")
        est = training_time(SMALL, lay, H100, 4096, 1e9)
        return est.breakdown["compute"] and (est.hfu * est.step_seconds / est.breakdown["compute"])

    assert hfu(1, 4) > hfu(4, 4) > hfu(8, 1)


def test_misaligned_dimensions_cost_time() -> None:
    aligned = ModelSpec(layers=8, hidden=13824, heads=96, ffn_hidden=4 * 13824, vocab=51200, max_seq=2048, **GPT)
    odd = aligned.model_copy(update={"hidden": 14400, "ffn_hidden": 4 * 14400})
    lay = Layout(tp=8, micro_batch=1, global_batch=16, recompute="full")
    fast = training_time(aligned, lay, A100, 2048, 1e9)
    slow = training_time(odd, lay, A100, 2048, 1e9)
    assert slow.hfu < 0.85 * fast.hfu


def test_energy_is_tdp_times_gpus_times_time() -> None:
    est = training_time(GPT3, layout(), A100, 2048, 300e9)
    assert est.energy_kwh == pytest.approx(est.gpu_hours * A100.tdp_w / 1000)
    assert est.gpu_hours == pytest.approx(est.days * 24 * layout().gpus)


def test_efficiency_defaults_to_the_skus() -> None:
    a = training_time(GPT3, layout(), A100, 2048, 1e9)
    b = training_time(GPT3, layout(), A100, 2048, 1e9, efficiency=A100.efficiency)
    slower = training_time(GPT3, layout(), A100, 2048, 1e9,
                           efficiency=A100.efficiency.model_copy(update={"gemm": 0.5}))
    assert a.step_seconds == b.step_seconds < slower.step_seconds


def test_every_efficiency_field_is_documented() -> None:
    # null where the GPU lacks the kernels, or where the framework decides (param_gather_overlap)
    optional = {"gemm_fp8", "gemm_mxfp8", "gemm_fp8_block", "param_gather_overlap"}
    for name, f in Efficiency.model_fields.items():
        if name != "source":
            assert f.description, f"Efficiency.{name} needs a description"
            assert f.default is not None or f.default_factory is not None or name in optional


# --------------------------------------------------------------------------------------------
# One formula, two entry points
# --------------------------------------------------------------------------------------------

layouts = st.builds(
    lambda tp, pp, vpp, dp, cp, zero, rc, sp, mbs, acc, rnl, shard: Layout(
        tp=tp, pp=pp, vpp=vpp if pp > 1 else 1, dp=dp, cp=cp, zero=zero, recompute=rc,
        sequence_parallel=sp and tp > 1, micro_batch=mbs, global_batch=dp * mbs * acc,
        recompute_num_layers=rnl, dp_shard=shard if shard and (dp * cp) % shard == 0 else None,
    ),
    st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 3]),
    st.sampled_from([1, 2, 3, 16, 128]), st.sampled_from([1, 2, 4]), st.sampled_from([0, 1, 2, 3]),
    st.sampled_from(["none", "selective", "full"]), st.booleans(), st.sampled_from([1, 2, 8]),
    st.sampled_from([1, 4, 32]), st.sampled_from([None, 1, 4]), st.sampled_from([None, 2, 8]),
)
IMPLS = [
    Implementation(),
    Implementation(attention="eager", dropout=0.1),
    Implementation(framework="torchtitan", fused_kernels=False, reshard_after_forward=None),
    Implementation(framework="torchtitan", kv_repeat=True, cp_exchange="alltoall"),
    Implementation(cp_exchange="te_allgather", recompute_modules=("core_attn", "mlp")),
    Implementation(cp_exchange="hierarchical", cp_a2a_size=2),
    Implementation(framework="fsdp", fused_kernels=False, activation_offload=True),
    Implementation(framework="deepspeed", cuda_graphs=True),
]


@settings(max_examples=40, deadline=None)
@given(st.lists(layouts, min_size=1, max_size=8), st.sampled_from([GPT3, SMALL, MOE]), st.sampled_from(IMPLS),
       st.sampled_from(["bf16", "fp8"]), st.sampled_from([0.0, 1.0]))
def test_scalar_equals_vectorised(lays: list[Layout], m: ModelSpec, impl: Implementation, precision: str,
                                  tp_overlap: float) -> None:
    lays = [x.model_copy(update={"precision": precision}) for x in lays]
    if m.moe is not None:
        lays = [x.model_copy(update={"ep": math.gcd(8, x.dp * x.cp)}) for x in lays]
    eff = H100.efficiency.model_copy(update={"tp_overlap": tp_overlap})
    rows = [time_arrays(x) for x in lays]
    arrays = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    table = step_time_table(m, H100, 4096, arrays, impl=impl, gpus_per_node=8, efficiency=eff,
                            recipe=Recipe.of(lays[0]))
    for i, lay in enumerate(lays):
        est = training_time(m, lay, H100, 4096, 1e9, impl=impl, gpus_per_node=8, efficiency=eff)
        assert table["step_seconds"][i] == pytest.approx(est.step_seconds, rel=1e-12)
        for k in BREAKDOWN_KEYS:
            assert table[k][i] == pytest.approx(est.breakdown[k], rel=1e-12, abs=1e-15)


# --------------------------------------------------------------------------------------------
# Fixed utilisation: the blog-post arithmetic
# --------------------------------------------------------------------------------------------


def test_gpt3_on_1024_a100_at_45_percent_hfu_takes_about_34_days() -> None:
    lay = Layout(tp=8, pp=16, dp=8, recompute="full", global_batch=1536)
    est = fixed_utilisation_time(GPT3, lay, get_gpu("a100-40gb"), 2048, 300e9, hfu=0.45)
    assert est.days == pytest.approx(34.0, rel=0.05)
    assert est.mfu == pytest.approx(0.45 * 3 / 4, rel=0.02)  # recompute is a quarter of the work
    with pytest.raises(ValueError):
        fixed_utilisation_time(GPT3, lay, A100, 2048, 1e9)


# --------------------------------------------------------------------------------------------
# fp8 recipes against Transformer Engine's own GEMM benchmark
# --------------------------------------------------------------------------------------------

# TransformerEngine docs/examples/gemm_profiling/gemm_profiling.rst: one 5B layer (hidden 4096, FFN 16384,
# 15,872 tokens), the 12 GEMMs with their quantization ("autocast"), speed-up over bf16.
TE_GEMM_SPEEDUP = {
    "h200": {"delayed": 32.014 / 18.978, "current": 32.014 / 20.285, "blockwise": 32.014 / 22.882},
    "b300": {"delayed": 12.758 / 7.802, "current": 12.758 / 9.147, "mxfp8": 12.758 / 8.984},
}
TE_LAYER = ModelSpec(layers=24, hidden=4096, heads=32, ffn_hidden=16384, vocab=32000, max_seq=512, mlp="gelu",
                     norm="layernorm")


def layer_gemm_seconds(gpu_name: str, precision: str, recipe: str | None = None) -> float:
    """Forward, dgrad and wgrad GEMMs of one layer and their fp8 quantization, as training_time charges."""
    from planner.model import perf

    gpu = get_gpu(gpu_name)
    c = perf._build_context(TE_LAYER, gpu, 512, Implementation(framework="torchtitan", fp8_recipe=recipe),
                            gpu.efficiency, 8, Recipe(precision=precision))
    arrays = dict(tp=1, pp=1, vpp=1, dp=1, cp=1, ep=1, zero=0, recompute=0, sequence_parallel=0,
                  micro_batch=31, global_batch=31)
    lay = perf._layer(c, perf._step(c, arrays), False)
    return 3 * lay.gemm + lay.quant_f + lay.quant_b


@pytest.mark.parametrize(("gpu", "recipe"), [(g, r) for g, rs in TE_GEMM_SPEEDUP.items() for r in rs])
def test_fp8_recipe_speedups_match_transformer_engine(gpu: str, recipe: str) -> None:
    speedup = layer_gemm_seconds(gpu, "bf16") / layer_gemm_seconds(gpu, "fp8", recipe)
    assert speedup == pytest.approx(TE_GEMM_SPEEDUP[gpu][recipe], rel=0.10)


def test_fp8_recipe_falls_back_to_what_the_gpu_has() -> None:
    from planner.model.stack import resolve_fp8_recipe

    assert resolve_fp8_recipe(Implementation(fp8_recipe="mxfp8"), H100.efficiency) == "blockwise"
    assert resolve_fp8_recipe(Implementation(fp8_recipe="blockwise"), get_gpu("b200").efficiency) == "mxfp8"
    assert resolve_fp8_recipe(Implementation(), H100.efficiency) == "delayed"  # TE's default recipe
    assert resolve_fp8_recipe(Implementation(framework="torchtitan"), H100.efficiency) == "current"


# --------------------------------------------------------------------------------------------
# Overlap mechanisms of today's stacks
# --------------------------------------------------------------------------------------------

LLAMA70 = ModelSpec(layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672, vocab=128256, max_seq=8192)


def test_userbuffers_hide_tp_collectives_but_not_their_first_chunk() -> None:
    lay = Layout(tp=8, pp=1, dp=8, sequence_parallel=True, global_batch=64)
    plain = training_time(LLAMA70, lay, H100, 8192, 1e9).breakdown["tp_comm"]
    ub = training_time(LLAMA70, lay, H100, 8192, 1e9,
                       efficiency=H100.efficiency.model_copy(update={"tp_overlap": 1.0})).breakdown["tp_comm"]
    assert 0 < ub < 0.5 * plain


FSDP_LAYOUT = Layout(tp=1, pp=1, dp=64, zero=3, recompute="full", global_batch=64)


def test_fsdp1_backward_post_prefetch_exposes_the_backward_gathers() -> None:
    """Composer's BACKWARD_POST issues a block's gather after the previous block's backward."""
    pre = training_time(LLAMA70, FSDP_LAYOUT, A100, 8192, 1e9, impl=Implementation(framework="torchtitan"))
    post = training_time(LLAMA70, FSDP_LAYOUT, A100, 8192, 1e9, impl=Implementation(framework="fsdp"))
    assert post.breakdown["dp_comm"] > pre.breakdown["dp_comm"] + 0.5


def test_reshard_after_forward_costs_a_second_gather() -> None:
    keep = training_time(LLAMA70, FSDP_LAYOUT, A100, 8192, 1e9,
                         impl=Implementation(framework="torchtitan", reshard_after_forward=False))
    reshard = training_time(LLAMA70, FSDP_LAYOUT, A100, 8192, 1e9,
                            impl=Implementation(framework="torchtitan", reshard_after_forward=True))
    assert reshard.breakdown["dp_comm"] > keep.breakdown["dp_comm"]


def test_fsdp_inside_pipeline_stages_gathers_once_per_step() -> None:
    """torchtitan with PP keeps gathered parameters over the step's micro-batches (no reshard, no sync)."""
    lay = Layout(tp=1, pp=4, vpp=2, dp=16, zero=3, recompute="full", global_batch=128)
    tt = training_time(LLAMA70, lay, H100, 8192, 1e9, impl=Implementation(framework="torchtitan"))
    every = training_time(LLAMA70, lay, H100, 8192, 1e9,
                          impl=Implementation(framework="torchtitan", reshard_after_forward=True))
    assert tt.breakdown["dp_comm"] < every.breakdown["dp_comm"]


def test_hsdp_keeps_the_gathers_inside_the_node() -> None:
    full = training_time(LLAMA70, FSDP_LAYOUT, A100, 8192, 1e9, impl=Implementation(framework="torchtitan"))
    hsdp = training_time(LLAMA70, FSDP_LAYOUT.model_copy(update={"dp_shard": 8}), A100, 8192, 1e9,
                         impl=Implementation(framework="torchtitan"))
    assert hsdp.breakdown["dp_comm"] < full.breakdown["dp_comm"]


def test_deepspeed_shallow_prefetch_and_per_tensor_gathers_cost_more_than_fsdp2() -> None:
    ds = training_time(GPT3, Layout(dp=384, zero=3, recompute="full", micro_batch=4, global_batch=1536), A100,
                       2048, 1e9, impl=Implementation(framework="deepspeed"))
    tt = training_time(GPT3, Layout(dp=384, zero=3, recompute="full", micro_batch=4, global_batch=1536), A100,
                       2048, 1e9, impl=Implementation(framework="torchtitan"))
    assert ds.step_seconds > 1.2 * tt.step_seconds


def test_megatron_bucket_grows_with_the_data_parallel_group() -> None:
    """Megatron-Core's default bucket is max(40M, 1M × DP) parameters: more DP, larger exposed bucket."""
    e = Efficiency()
    assert max(e.dp_bucket_params, e.dp_bucket_params_per_rank * 48) == 48_000_000


def test_overlapped_traffic_slows_the_compute_beside_it() -> None:
    quiet = A100.efficiency.model_copy(update={"comm_interference": 0.0})
    a = training_time(LLAMA70, FSDP_LAYOUT, A100, 8192, 1e9, impl=Implementation(framework="torchtitan"),
                      efficiency=quiet)
    b = training_time(LLAMA70, FSDP_LAYOUT, A100, 8192, 1e9, impl=Implementation(framework="torchtitan"))
    assert b.step_seconds > a.step_seconds


def test_selective_recompute_follows_the_framework() -> None:
    """Megatron reruns the core attention; torchtitan's SAC reruns every second matmul: more work."""
    lay = Layout(tp=1, dp=64, zero=3, recompute="selective", global_batch=64)
    mc = training_time(LLAMA70, lay, H100, 8192, 1e9, impl=Implementation())
    tt = training_time(LLAMA70, lay, H100, 8192, 1e9, impl=Implementation(recompute_modules=None,
                                                                           framework="torchtitan"))
    mlp = training_time(LLAMA70, lay, H100, 8192, 1e9, impl=Implementation(recompute_modules=["core_attn", "mlp"]))
    assert mc.breakdown["compute"] < mlp.breakdown["compute"]
    assert mc.breakdown["compute"] < tt.breakdown["compute"]


def test_partial_full_recompute_lies_between_none_and_all_layers() -> None:
    def compute(**kw: object) -> float:
        return training_time(GPT3, layout(**kw), A100, 2048, 1e9).breakdown["compute"]

    assert compute(recompute="none") < compute(recompute="full", recompute_num_layers=4) < compute(recompute="full")


def test_block_recompute_reruns_its_layers_in_every_model_chunk() -> None:
    """Megatron's block method reruns the first n layers of each model chunk (transformer_block.py
    _checkpointed_forward), so with interleaving a rank reruns vpp·n layers; the uniform method reruns every layer.
    The recompute seconds and the hardware FLOPs both follow the share rerun."""
    from planner.model.flops import full_recompute_share, step_flops

    def run(**kw: object) -> tuple[float, float]:
        lay = Layout(tp=8, pp=4, vpp=2, dp=1, global_batch=32, micro_batch=1, **kw)
        t = training_time(LLAMA70, lay, H100, 8192, 1e9)
        return t.breakdown["compute"], t.hfu

    none, full = run(recompute="none"), run(recompute="full")
    half = run(recompute="full", recompute_num_layers=5)  # 80 layers in 8 chunks of 10: half of each rerun
    assert half[0] - none[0] == pytest.approx(0.5 * (full[0] - none[0]), rel=1e-6)
    assert run(recompute="full", recompute_num_layers=5, recompute_method="uniform") == pytest.approx(full)
    lay = Layout(tp=8, pp=4, vpp=2, dp=1, global_batch=32, recompute="full", recompute_num_layers=5)
    assert full_recompute_share(lay, 80) == 0.5
    f = [step_flops(LLAMA70, 8192, 1, r, full_share=s) for r, s in (("none", 1.0), ("full", 0.5), ("full", 1.0))]
    assert f[1].hardware - f[0].hardware == pytest.approx(0.5 * (f[2].hardware - f[0].hardware))


def test_activation_offload_pays_the_host_link_it_cannot_hide() -> None:
    lay = Layout(tp=1, dp=8, global_batch=8, micro_batch=1)
    base = training_time(LLAMA70, lay, H100, 8192, 1e9).step_seconds
    slow = H100.efficiency.model_copy(update={"host_link_gbs": 5.0})
    off = training_time(LLAMA70, lay, H100, 8192, 1e9, impl=Implementation(activation_offload=True), efficiency=slow)
    assert off.step_seconds > base
    # Megatron --cpu-offloading-num-layers: half the layers move half the bytes
    half = training_time(LLAMA70, lay, H100, 8192, 1e9, impl=Implementation(activation_offload_layers=40),
                         efficiency=slow)
    assert base < half.step_seconds < off.step_seconds


def test_tiny_layers_run_at_the_cpus_pace_unless_graphed() -> None:
    tiny = ModelSpec(layers=12, hidden=256, heads=4, ffn_hidden=1024, vocab=8192, max_seq=128)
    lay = Layout(dp=1, global_batch=8, micro_batch=1)
    eager = training_time(tiny, lay, H100, 128, 1e6)
    graphed = training_time(tiny, lay, H100, 128, 1e6, impl=Implementation(cuda_graphs=True))
    assert graphed.step_seconds < 0.7 * eager.step_seconds


def test_gb200_nvl72_keeps_tp_and_ep_groups_on_nvlink() -> None:
    gb = get_gpu("gb200")
    ln = comm.links(gb)
    assert comm.group(16, 1, ln).spans == 0  # TP 16 inside the 72-GPU NVLink domain
    assert comm.group(64, 1, ln).spans == 0  # EP 64 too
    assert comm.group(8, 16, ln).spans == 1  # DP across racks crosses the network


# --------------------------------------------------------------------------------------------
# Power limits
# --------------------------------------------------------------------------------------------


def test_power_rule_reproduces_the_a100_pcie_measurement() -> None:
    """Same GA100 silicon: 252.9 TFLOP/s at 300 W against 271.2 at 400 W (MAMF, stas00/ml-engineering)."""
    assert power_scale(300, 400) == pytest.approx(252.9 / 271.2)
    assert 0.2 < POWER_EXPONENT < 1 / 3  # below the dynamic-power bound f ∝ P^(1/3)
    assert power_scale(900, 700) == 1.0


def test_power_limited_h100_runs_slower() -> None:
    h500 = power_limited(H100.model_copy(update={"name": "h100-96gb-500w", "tdp_w": 500}), rated_w=H100.tdp_w)
    assert h500.efficiency.gemm == pytest.approx(H100.efficiency.gemm * (500 / 700) ** POWER_EXPONENT)
    lay = layout(tp=8, pp=1, dp=8)
    slow, full = (training_time(GPT3, lay, g, 2048, 1e9).step_seconds for g in (h500, H100))
    assert slow > full
    assert power_limited(H100, rated_w=700) is H100


# --------------------------------------------------------------------------------------------
# MFU and HFU never exceed 1: causal attention counted as it is executed
# --------------------------------------------------------------------------------------------

LLAMA8 = ModelSpec(layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, vocab=128256, max_seq=8192)


@pytest.mark.parametrize("model", [LLAMA8, LLAMA70], ids=["8b", "70b"])
@pytest.mark.parametrize("seq", [8192, 65536, 262144, 1048576])
@pytest.mark.parametrize("gpu", ["h100-sxm", "b200"])
def test_utilisation_stays_below_one_at_long_context(model: ModelSpec, seq: int, gpu: str) -> None:
    sku = get_gpu(gpu)
    cp = max(1, seq // 16384)
    lay = Layout(tp=8, cp=cp, dp=1, sequence_parallel=True, recompute="full", global_batch=1)
    est = training_time(model, lay, sku, seq, 1e9)
    assert 0 < est.mfu <= est.hfu <= max(sku.efficiency.gemm, sku.efficiency.gemm_fp8 or 0)


def test_mla_up_projection_recompute_reruns_the_up_projections() -> None:
    """recompute_modules [mla_up_proj] reruns MLA's q/kv up-projections in backward: the added time is those
    GEMMs' FLOPs at a GEMM rate (between 30 % and 100 % of the bf16 peak); a model without MLA pays nothing."""
    from planner.catalog import get_gpu, get_model
    from planner.model.perf import training_time
    from planner.schema import Implementation, Layout

    gpu = get_gpu("h100-sxm")
    m = get_model("deepseek-v3")
    assert m.mla is not None
    x = m.mla
    up = (x.q_lora_rank * m.heads * (x.qk_nope_head_dim + x.qk_rope_head_dim)
          + x.kv_lora_rank * m.heads * (x.qk_nope_head_dim + x.v_head_dim))
    lay = Layout(tp=8, pp=16, dp=8, ep=8, sequence_parallel=True, global_batch=64, recompute="selective")
    seq = 4096
    none, mla = (training_time(m, lay, gpu, seq, 1e9, impl=Implementation(recompute_modules=mods)).breakdown
                 for mods in (["moe_act"], ["moe_act", "mla_up_proj"]))
    extra = mla["compute"] - none["compute"]
    layers = -(-m.layers // lay.pp)
    flops = 2 * seq * up / lay.tp * layers * lay.grad_accumulation  # every micro-batch, the slowest stage's layers
    rate = flops / extra
    assert 0.3 * gpu.peak("bf16") * 1e12 < rate < gpu.peak("bf16") * 1e12
    dense = get_model("llama-3.1-8b")
    plain = Layout(dp=8, global_batch=8, recompute="selective")
    a, b = (training_time(dense, plain, gpu, seq, 1e9, impl=Implementation(recompute_modules=mods)).step_seconds
            for mods in (["core_attn"], ["core_attn", "mla_up_proj"]))
    assert a == b


def test_the_optimizer_step_moves_the_state_it_keeps() -> None:
    """AdamW with an fp32 master reads and writes master, m and v (24 B), reads the fp32 gradient twice and writes
    the bf16 weight: 34 B; SGD 26, 8-bit Adam 22. Apex's bf16 state (no master, bf16 moments) moves 2·4 + 8 + 2·2
    = 20 B: it reads the bf16 weight it updates; the fp32 remainder 2·(2 + 8) + 8 + 2·2 = 32."""
    assert [optimizer_step_bytes(Recipe(optimizer=o)) for o in ("adamw", "sgd", "adam8bit")] == [34, 26, 22]
    assert optimizer_step_bytes(Recipe(master_weights="none", moment_dtype="bf16")) == 20
    assert optimizer_step_bytes(Recipe(master_weights="remainder")) == 32


def test_pytorch_context_parallel_moves_repeated_kv_and_waits_for_the_last_gradient_hop() -> None:
    """PyTorch's context parallelism (torchtitan) exchanges K/V as the kernel gets them: repeated per query head,
    heads/kv_heads times the bytes, an all-gather behind one kernel call per pass; and its last fp32 dK/dV hop
    runs after every backward call, under none. Across nodes (CP beyond TP·CP = 8) the exchange is exposed;
    Transformer Engine's ring of the compact K/V stays under the attention."""
    llama = ModelSpec(layers=8, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672, vocab=128256, max_seq=131072)
    lay = Layout(tp=8, cp=4, dp=1, sequence_parallel=True, recompute="full", global_batch=1)
    seq = 131072

    def cp_seconds(**impl: object) -> float:
        return training_time(llama, lay, H100, seq, 1e9, impl=Implementation(**impl)).breakdown["cp_comm"]

    ring = cp_seconds(framework="megatron-core")
    compact = cp_seconds(framework="torchtitan")
    repeated = cp_seconds(framework="torchtitan", kv_repeat=True)
    assert ring < compact < repeated
    # heads/kv_heads = 8 times the bytes, less of them hidden
    assert repeated / compact > 6
    # at least the last dK/dV hop of every layer: this rank's K and V (64 heads of 128 over TP 8) in fp32, over
    # the NIC (the CP group's ranks sit TP = 8 apart, one per node)
    kv = (seq / lay.cp) * 2 * llama.heads * llama.d_head / lay.tp * 2
    hop = comm.p2p(2 * kv, comm.group(lay.cp, lay.tp, comm.links(H100)))
    assert repeated >= llama.layers * hop


# a long-context 70B-class stack at TP 8 × CP 4, 131,072 tokens: Transformer Engine's exposed CP exchanges
LONG_LLAMA = ModelSpec(layers=8, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672, vocab=128256, max_seq=131072)
LONG_LAYOUT = Layout(tp=8, cp=4, dp=1, sequence_parallel=True, recompute="full", global_batch=1)
LONG_SEQ = 131072


def cp_comm_seconds(impl: Implementation, recompute: str = "full") -> float:
    lay = LONG_LAYOUT.model_copy(update={"recompute": recompute})
    return training_time(LONG_LLAMA, lay, H100, LONG_SEQ, 1e9, impl=impl).breakdown["cp_comm"]


def long_context(impl: Implementation) -> tuple[Any, comm.Group]:
    """The time model's context for LONG_LLAMA under `impl`, and its CP group (ranks TP apart, one per node)."""
    from planner.model.perf import _build_context

    c = _build_context(LONG_LLAMA, H100, LONG_SEQ, impl, H100.efficiency, 8, Recipe.of(LONG_LAYOUT))
    return c, comm.group(LONG_LAYOUT.cp, LONG_LAYOUT.tp, comm.links(H100))


def test_transformer_engine_all_gather_is_exposed_every_pass() -> None:
    """Transformer Engine's all-gather CP exchange (Megatron --cp-comm-type all_gather; context_parallel.py
    AttnFuncWithCPAndKVAllGather, "KV all-gather between CP ranks is exposed") gathers every rank's K/V before the
    attention of each pass (forward, recompute forward, backward) and reduce-scatters the 16-bit dK/dV after the
    backward, with nothing computing beside them: it costs more than the ring, which hides its hops under the
    attention, and a recompute pass adds one gather."""
    from planner.model.perf import TE_ALLGATHER_GRAD_BYTES, TE_ALLGATHER_PASS_BYTES

    impl = Implementation(cp_exchange="te_allgather")
    c, g = long_context(impl)
    gathered = LONG_SEQ * c.kernel_kv_width / LONG_LAYOUT.tp * 2  # every rank's 16-bit K and V of this TP shard
    gather = comm.all_gather(gathered, g) + TE_ALLGATHER_PASS_BYTES * gathered / c.hbm
    grads = comm.reduce_scatter(gathered, g) + TE_ALLGATHER_GRAD_BYTES * gathered / c.hbm
    assert cp_comm_seconds(impl) == pytest.approx(LONG_LLAMA.layers * (3 * gather + grads))
    assert cp_comm_seconds(impl, "none") == pytest.approx(LONG_LLAMA.layers * (2 * gather + grads))
    assert cp_comm_seconds(impl) > cp_comm_seconds(Implementation(cp_exchange="ring"))


def test_ulysses_moves_qkv_and_the_output_exposed() -> None:
    """Transformer Engine's all-to-all CP exchange (Megatron --cp-comm-type a2a) sends Q, K and V to head shards
    and the output back, and the same bytes in backward, with nothing computing beside them: an all-to-all of
    (Q + K + V + O) per pass, forward, recompute forward and backward."""
    impl = Implementation(cp_exchange="ulysses")
    c, g = long_context(impl)
    tokens = LONG_SEQ // LONG_LAYOUT.cp
    per_rank = tokens * (c.q_width + c.v_width + c.kernel_kv_width) / LONG_LAYOUT.tp * 2
    move = comm.all_to_all(per_rank, g)
    assert cp_comm_seconds(impl) == pytest.approx(LONG_LLAMA.layers * 3 * move)
    assert cp_comm_seconds(impl, "none") == pytest.approx(LONG_LLAMA.layers * 2 * move)


def test_an_exchange_runs_again_where_recompute_reruns_the_attention() -> None:
    """Selective recompute of the core attention (Megatron's default module) reruns its CP exchange as full
    recompute does; selective recompute of the MLP alone does not."""
    for impl in (Implementation(cp_exchange="ulysses"), Implementation(cp_exchange="te_allgather")):
        core = cp_comm_seconds(impl, "selective")
        assert core == pytest.approx(cp_comm_seconds(impl, "full"))
        mlp = impl.model_copy(update={"recompute_modules": ["mlp"]})
        assert cp_comm_seconds(mlp, "selective") == pytest.approx(cp_comm_seconds(impl, "none"))
        assert cp_comm_seconds(impl, "none") < core


def test_hierarchical_exchange_is_ulysses_in_groups_then_the_ring() -> None:
    """Transformer Engine's a2a+p2p (Megatron --cp-comm-type a2a+p2p --hierarchical-context-parallel-sizes A P):
    the all-to-all of Q, K, V and O within groups of A neighbouring CP ranks, exposed in every pass, then the ring
    of the head-sharded K/V (as many bytes as the rank's own) over the P groups, under the attention. With A = cp
    it is the all-to-all alone; the ring hidden under the attention makes it cost less than the ring's exposed
    share plus a full-group all-to-all would."""
    ulysses = cp_comm_seconds(Implementation(cp_exchange="ulysses"))
    assert cp_comm_seconds(Implementation(cp_exchange="hierarchical", cp_a2a_size=4)) == pytest.approx(ulysses)
    impl = Implementation(cp_exchange="hierarchical", cp_a2a_size=2)
    c, _ = long_context(impl)
    tokens = LONG_SEQ // LONG_LAYOUT.cp
    per_rank = tokens * (c.q_width + c.v_width + c.kernel_kv_width) / LONG_LAYOUT.tp * 2
    pairs = comm.group(2, LONG_LAYOUT.tp, comm.links(H100))
    a2a = LONG_LLAMA.layers * 3 * comm.all_to_all(per_rank, pairs)
    both = cp_comm_seconds(impl)
    ring_share = both - a2a
    assert ring_share >= 0  # the ring over the 2 groups: at most its exposed part
    kv = tokens * c.kernel_kv_width / LONG_LAYOUT.tp * 2
    hop = comm.p2p(kv, comm.group(2, LONG_LAYOUT.tp * 2, comm.links(H100)))
    assert ring_share <= LONG_LLAMA.layers * 4 * hop + 1e-12


def test_hierarchical_ring_is_exactly_its_hops_when_nothing_hides_them() -> None:
    """With no attention to hide under (cp_overlap 0, no interference), the hierarchical exchange is its all-to-all
    within pairs plus every hop of the ring over the two groups: K/V in the forward and the recompute, K/V and
    dK/dV in backward, four hops a layer."""
    impl = Implementation(cp_exchange="hierarchical", cp_a2a_size=2)
    eff = H100.efficiency.model_copy(update={"cp_overlap": 0.0, "comm_interference": 0.0})
    c, _ = long_context(impl)
    tokens = LONG_SEQ // LONG_LAYOUT.cp
    per_rank = tokens * (c.q_width + c.v_width + c.kernel_kv_width) / LONG_LAYOUT.tp * 2
    a2a = 3 * comm.all_to_all(per_rank, comm.group(2, LONG_LAYOUT.tp, comm.links(H100)))
    hop = comm.p2p(tokens * c.kernel_kv_width / LONG_LAYOUT.tp * 2, comm.group(2, 2 * LONG_LAYOUT.tp, comm.links(H100)))
    est = training_time(LONG_LLAMA, LONG_LAYOUT, H100, LONG_SEQ, 1e9, impl=impl, efficiency=eff)
    assert est.breakdown["cp_comm"] == pytest.approx(LONG_LLAMA.layers * (a2a + 4 * hop))


def test_the_expert_all_to_all_runs_again_where_recompute_reruns_the_moe_layer() -> None:
    """Megatron's selective recompute of "moe" checkpoints the whole MoE layer, its dispatch and combine included
    (megatron/core/transformer/moe/moe_layer.py): the all-to-all reruns in backward as under full recompute; a
    selective recompute of the core attention alone leaves it as without recompute."""
    lay = Layout(tp=1, dp=8, ep=8, global_batch=64)

    def ep_seconds(recompute: str, modules: list[str] | None = None) -> float:
        impl = Implementation(recompute_modules=modules)
        est = training_time(MOE, lay.model_copy(update={"recompute": recompute}), H100, 4096, 1e9, impl=impl)
        return est.breakdown["ep_comm"]

    assert ep_seconds("selective", ["moe"]) == pytest.approx(ep_seconds("full"))
    assert ep_seconds("selective", ["core_attn"]) == pytest.approx(ep_seconds("none"))
    assert ep_seconds("none") < ep_seconds("full")


def test_selective_recompute_of_the_mlp_reruns_its_tp_collectives() -> None:
    """Megatron's selective recompute of "mlp" reruns the MLP block's forward, its all-gather and reduce-scatter
    under SP included: one all-reduce's worth more per layer, with or without TE's userbuffers; recomputing the
    core attention alone adds none (its collectives sit outside it)."""
    lay = Layout(tp=8, dp=2, sequence_parallel=True, recompute="selective", global_batch=16)

    def tp_seconds(modules: list[str] | None, recompute: str = "selective", overlap: float = 0.0) -> float:
        eff = H100.efficiency.model_copy(update={"tp_overlap": overlap})
        est = training_time(SMALL, lay.model_copy(update={"recompute": recompute}), H100, 4096, 1e9,
                            impl=Implementation(recompute_modules=modules), efficiency=eff)
        return est.breakdown["tp_comm"]

    for overlap in (0.0, 1.0):
        none = tp_seconds(None, "none", overlap)
        assert tp_seconds(["core_attn"], overlap=overlap) == pytest.approx(none)
        assert none < tp_seconds(["mlp"], overlap=overlap) < tp_seconds(None, "full", overlap)
    ar = comm.all_reduce(4096 * SMALL.hidden * 2, comm.group(8, 1, comm.links(H100)))
    assert tp_seconds(["mlp"]) - tp_seconds(None, "none") == pytest.approx(lay.grad_accumulation * SMALL.layers * ar)


def test_a_sliding_window_runs_the_keys_it_attends_to() -> None:
    """Flash attention executes the keys a query attends to: a 4,096-key window over a 32K sequence leaves about
    a quarter of the causal triangle's work in the windowed layers, so the step takes less; with the sequence
    inside the window nothing changes. (The sources' full-s² MFU convention is not planner's; see flops.py.)"""
    windowed = SMALL.model_copy(update={"sliding_window": 4096, "max_seq": 32768})
    full = windowed.model_copy(update={"sliding_window": None})
    half = windowed.model_copy(update={"window_layers": 12})
    lay = Layout(tp=1, pp=1, dp=8, zero=1, micro_batch=1, global_batch=8)
    steps = [training_time(m, lay, H100, 32768, 1e9).step_seconds for m in (windowed, half, full)]
    assert steps[0] < steps[1] < steps[2]
    # the attention the window saves: (s/2 − (w − w²/2s)) keys a query, all layers, forward and backward
    assert steps[2] - steps[0] == pytest.approx(2 * (steps[2] - steps[1]), rel=1e-6)
    assert training_time(windowed, lay, H100, 4096, 1e9).step_seconds == pytest.approx(
        training_time(full, lay, H100, 4096, 1e9).step_seconds)


@settings(max_examples=25, deadline=None)
@given(pp=st.sampled_from([1, 2, 4]), vpp=st.sampled_from([1, 2]), n=st.sampled_from([1, 2, 3]),
       mbs=st.sampled_from([1, 2]))
def test_block_recompute_lies_between_none_and_every_layer(pp: int, vpp: int, n: int, mbs: int) -> None:
    """Rerunning fewer layers of each chunk saves time and costs memory, never beyond the two ends: the memory of
    a partial recompute is at least full recompute's (the search's memory floor counts full recompute) and at most
    no recompute's, its step at least no recompute's and at most full recompute's, both monotone in the count."""
    from planner.model.memory import training_memory

    def run(**kw: object) -> tuple[float, float]:
        lay = Layout(tp=4, pp=pp, vpp=vpp, dp=2, global_batch=8 * pp, micro_batch=mbs, sequence_parallel=True, **kw)
        mem = training_memory(LLAMA8, lay, 8192, Implementation()).total
        return mem, training_time(LLAMA8, lay, H100, 8192, 1e9).step_seconds

    none, full = run(recompute="none"), run(recompute="full")
    fewer, more = run(recompute="full", recompute_num_layers=n), run(recompute="full", recompute_num_layers=n + 1)
    for part in (fewer, more):
        assert full[0] <= part[0] <= none[0] and none[1] <= part[1] <= full[1]
    assert more[0] <= fewer[0] and fewer[1] <= more[1]


def test_zero1_parameter_gather_and_pipelined_reduction_follow_the_framework() -> None:
    """Megatron-Core gathers the distributed optimizer's updated parameters under the next forward (with
    --overlap-param-gather, its recipes' setting); DeepSpeed's ZeRO-1/2 step all-gathers them before it returns
    (runtime/zero/stage_1_and_2.py), its pipeline engine reduces gradients only after the last backward
    (runtime/pipe/schedule.py) and so does its engine without ZeRO: exposed whatever `dp_overlap` says.
    `param_gather_overlap` overrides the framework's all-gather."""
    lay = Layout(tp=2, dp=16, zero=1, micro_batch=1, global_batch=64)

    def dp_comm(framework: str, layout: Layout = lay, **eff: float) -> float:
        e = H100.efficiency.model_copy(update=eff)
        t = training_time(SMALL, layout, H100, 4096, 1e9, impl=Implementation(framework=framework), efficiency=e)
        return t.breakdown["dp_comm"]

    core = dp_comm("megatron-core")
    assert dp_comm("megatron-core", param_gather_overlap=0.0) > core
    assert dp_comm("megatron-core", param_gather_overlap=1.0) == pytest.approx(core)
    ds = dp_comm("deepspeed")
    assert ds == pytest.approx(dp_comm("deepspeed", param_gather_overlap=0.0))
    assert ds > dp_comm("deepspeed", param_gather_overlap=1.0)
    piped = lay.model_copy(update={"pp": 2, "dp": 8})
    assert dp_comm("deepspeed", piped) == pytest.approx(dp_comm("deepspeed", piped, dp_overlap=0.0))
    assert dp_comm("megatron-core", piped) < dp_comm("megatron-core", piped, dp_overlap=0.0)
    # without ZeRO DeepSpeed's engine all-reduces after the backward (runtime/engine.py allreduce_gradients)
    plain = lay.model_copy(update={"zero": 0})
    assert dp_comm("deepspeed", plain) == pytest.approx(dp_comm("deepspeed", plain, dp_overlap=0.0))
    assert dp_comm("megatron-core", plain) < dp_comm("megatron-core", plain, dp_overlap=0.0)
