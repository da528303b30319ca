"""Time model: collective costs, pipeline bubble, breakdown, scalar vs vectorised, the seed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import get_gpu
from planner.model import comm
from planner.model.memory import layout_arrays
from planner.model.perf import (
    BREAKDOWN_KEYS,
    fixed_utilisation_time,
    step_time_table,
    training_time,
)
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
    for name, f in Efficiency.model_fields.items():
        if name != "source":
            assert f.description, f"Efficiency.{name} needs a description"
            assert f.default is not None or name == "gemm_fp8"


# --------------------------------------------------------------------------------------------
# One formula, two entry points
# --------------------------------------------------------------------------------------------

layouts = st.builds(
    lambda tp, pp, vpp, dp, cp, zero, rc, sp, mbs, acc: Layout(
        tp=tp, pp=pp, vpp=vpp if pp > 1 else 1, dp=dp, cp=cp, zero=0 if pp > 1 and zero == 3 else zero,
        recompute=rc, sequence_parallel=sp and tp > 1, micro_batch=mbs, global_batch=dp * mbs * acc,
    ),
    st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 3]),
    st.sampled_from([1, 2, 3, 16, 128]), st.sampled_from([1, 2, 4]), st.sampled_from([0, 1, 2, 3]),
    st.sampled_from(["none", "selective", "full"]), st.booleans(), st.sampled_from([1, 2, 8]),
    st.sampled_from([1, 4, 32]),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(layouts, min_size=1, max_size=8), st.sampled_from([GPT3, SMALL, MOE]), st.booleans())
def test_scalar_equals_vectorised(lays: list[Layout], m: ModelSpec, eager: bool) -> None:
    impl = Implementation(attention="eager", dropout=0.1) if eager else Implementation()
    if m.moe is not None:
        lays = [x.model_copy(update={"ep": math.gcd(8, x.dp * x.cp)}) for x in lays]
    rows = [layout_arrays(x) for x in lays]
    arrays = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    table = step_time_table(m, H100, 4096, arrays, impl=impl, gpus_per_node=8)
    for i, lay in enumerate(lays):
        est = training_time(m, lay, H100, 4096, 1e9, impl=impl, gpus_per_node=8)
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
