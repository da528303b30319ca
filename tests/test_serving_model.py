"""Serving physics: KV and weight bytes against the reference's anchors, dtype paths, MoE expert reads, engine
presets against their source files' defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.catalog import get_gpu, get_model
from planner.errors import InputError
from planner.model.params import count_params
from planner.model.serving import ServingEfficiency, gemm_path, serving_model, weight_bytes_per_param
from planner.schema import GIB, Overheads
from planner.workloads.serving.engines import EngineOverride, resolve_engine, trtllm_bench_engine


def test_kv_bytes_per_token_match_the_reference_anchors() -> None:
    # serving.md: Llama-3-70B 2·80·8·128·2 B = 327,680 B; 8B 2·32·8·128·2 = 131,072 B (bf16, one GPU)
    assert serving_model(get_model("llama-3-70b"), get_gpu("h100")).kv_bytes_per_token == 327_680
    assert serving_model(get_model("llama-3.1-8b"), get_gpu("h100")).kv_bytes_per_token == 131_072
    # TP shards KV heads; fp8 halves the bytes
    assert serving_model(get_model("llama-3-70b"), get_gpu("h100"), tp=4, kv_dtype="fp8").kv_bytes_per_token == 40_960
    # MLA caches the 512-wide latent and the 64-wide RoPE key per layer, replicated over TP (DeepSeek-V2 §2.1.2)
    ds = serving_model(get_model("deepseek-v3"), get_gpu("h200"), tp=8, weight_dtype="fp8", kv_dtype="bf16")
    assert ds.kv_bytes_per_token == 61 * (512 + 64) * 2


def test_weight_bytes_by_dtype() -> None:
    m = get_model("llama-3.1-8b")
    c = count_params(m)
    embed = c.embedding + c.output
    fp8 = serving_model(m, get_gpu("h100"), weight_dtype="fp8")
    assert fp8.weight_bytes == pytest.approx((c.total - embed) * 1.0 + embed * 2.0)
    int4 = serving_model(m, get_gpu("h100"), tp=2, weight_dtype="int4")
    assert int4.weight_bytes == pytest.approx(((c.total - embed) * (0.5 + 2 / 128) + embed * 2.0) / 2)
    assert weight_bytes_per_param("fp4") == pytest.approx(0.5 + 1 / 16)  # NVFP4: one fp8 scale per 16 values


def test_gemm_paths_follow_the_tensor_cores() -> None:
    h100, a100, b200 = get_gpu("h100"), get_gpu("a100-80gb"), get_gpu("b200")
    assert gemm_path(h100, "fp8").rate == pytest.approx(1978.9e12 * h100.efficiency.gemm_fp8)
    assert gemm_path(h100, "int4").rate == pytest.approx(989.4e12 * h100.efficiency.gemm)  # weight-only W4A16
    assert gemm_path(a100, "fp8").weight_only  # no fp8 tensor cores: Marlin-style dequantisation
    assert gemm_path(a100, "int8").rate == pytest.approx(624e12 * a100.efficiency.gemm)  # W8A8 int8
    assert gemm_path(b200, "fp4").rate == pytest.approx(9000e12 * ServingEfficiency().fp4_gemm)
    with pytest.raises(ValueError, match="fp4"):
        gemm_path(h100, "fp4")
    with pytest.raises(ValueError, match="dtype"):
        serving_model(get_model("llama-3.1-8b"), h100, weight_dtype="fp3")


def test_decode_at_batch_one_streams_the_weights() -> None:
    """One decode token costs about the per-GPU weights over the streaming bandwidth, plus per-kernel and
    all-reduce latencies; never less than the weights at the spec bandwidth."""
    gpu = get_gpu("h100")
    sm = serving_model(get_model("llama-3.1-70b"), gpu, tp=2, weight_dtype="fp8", kv_dtype="fp8")
    eng = resolve_engine("trtllm", gpu)
    step = float(sm.decode_step_seconds(1, 1000, eng))
    floor = sm.weight_bytes / (gpu.hbm_bandwidth_tbs * 1e12)
    assert floor < step < 1.6 * floor


def test_moe_reads_only_the_experts_a_batch_touches() -> None:
    gpu = get_gpu("h100")
    sm = serving_model(get_model("mixtral-8x7b"), gpu, tp=2, weight_dtype="fp8")
    one, many = float(sm.gemm_seconds(1, 1)), float(sm.gemm_seconds(256, 256))
    every = (sm.dense_weight_read + sm.head_bytes + sm.moe_layers * 8 * sm.expert_bytes) / (
        sm.hbm * sm.seff.weight_stream)
    top2 = (sm.dense_weight_read + sm.head_bytes + sm.moe_layers * 8 * (2 / 8) * sm.expert_bytes) / (
        sm.hbm * sm.seff.weight_stream)
    assert one == pytest.approx(top2, rel=0.05)  # one token reads its top-2 experts
    assert many >= every  # 256 tokens touch all 8
    with pytest.raises(ValueError, match="expert parallelism"):
        serving_model(get_model("llama-3.1-8b"), gpu, tp=2, ep=2)
    assert serving_model(get_model("mixtral-8x7b"), gpu, tp=2, ep=2).tp_comm_seconds(64) > 0


def test_tensor_parallel_collectives_on_the_link_they_cross() -> None:
    m = get_model("llama-3.1-8b")
    assert serving_model(m, get_gpu("h100")).tp_comm_seconds(64) == 0
    nvlink = float(serving_model(m, get_gpu("h100"), tp=4).tp_comm_seconds(4096))
    pcie = float(serving_model(m, get_gpu("l40s"), tp=4).tp_comm_seconds(4096))
    assert 0 < nvlink < pcie


@pytest.mark.parametrize(
    ("engine", "gpu", "seqs", "budget"),
    [
        ("vllm", "h100", 1024, 8192),  # arg_utils.py get_batch_defaults: >= 70 GiB and not A100
        ("vllm", "a100-80gb", 256, 2048),  # A100 excluded (PR #17885)
        ("vllm", "l4", 256, 2048),
        ("sglang", "h200", 4096, 8192),  # chunked_prefill_size 8192 below 160 GB
        ("sglang", "b200", 4096, 16384),
        ("sglang", "rtx-4090", 4096, 2048),
        ("trtllm", "h100", 2048, 8192),  # llm_args.py max_batch_size / max_num_tokens
    ],
)
def test_engine_presets_follow_their_sources(engine: str, gpu: str, seqs: int, budget: int) -> None:
    e = resolve_engine(engine, get_gpu(gpu))
    assert (e.max_num_seqs, e.token_budget) == (seqs, budget)


def test_engine_semantics_and_overrides() -> None:
    h100 = get_gpu("h100")
    vllm, trt, sgl = (resolve_engine(n, h100) for n in ("vllm", "trtllm", "sglang"))
    assert vllm.chunked_prefill and vllm.mixed_batches and vllm.reserve_ratio_init == 0
    assert not trt.chunked_prefill and trt.reserve_ratio_init == 1.0  # GUARANTEED_NO_EVICT
    assert sgl.chunked_prefill and not sgl.mixed_batches and sgl.reserve_ratio_init == 0.7
    assert resolve_engine(EngineOverride(name="vllm", max_num_seqs=64), h100).max_num_seqs == 64
    with pytest.raises(InputError, match="unknown engine"):
        resolve_engine("tgi", h100)


def test_kv_pool_by_the_engines_memory_rule() -> None:
    gpu = get_gpu("h100")
    sm = serving_model(get_model("llama-3.1-8b"), gpu, weight_dtype="bf16")
    o = Overheads()
    vllm = resolve_engine("vllm", gpu)
    fixed = sm.weight_bytes + sm.workspace_bytes(vllm.token_budget, vllm.max_num_seqs) + o.reserve_bytes \
        + o.comm_buffer_bytes
    expect = (0.9 * gpu.hbm_bytes - fixed) / sm.kv_bytes_per_token
    assert sm.kv_pool_tokens(vllm) == pytest.approx(expect, abs=16)  # whole 16-token blocks
    trt = resolve_engine("trtllm", gpu)
    fixed_t = sm.weight_bytes + sm.workspace_bytes(trt.token_budget, trt.max_num_seqs) + o.reserve_bytes \
        + o.comm_buffer_bytes
    assert sm.kv_pool_tokens(trt) == pytest.approx(0.9 * (gpu.hbm_bytes - fixed_t) / sm.kv_bytes_per_token, abs=32)
    assert serving_model(get_model("llama-3.1-405b"), gpu, weight_dtype="bf16").kv_pool_tokens(vllm) == 0


def test_trtllm_bench_rounds_as_its_tuning_code() -> None:
    """tensorrt_llm/bench/build/tuning.py: batch rounded up to 32 below 256 (at least 64), token budget
    batch·(1 + ISL/OSL) rounded up to 256 below 4096 (at least 2048)."""
    gpu = get_gpu("h200")
    sm = serving_model(get_model("llama-3.1-70b"), gpu, weight_dtype="fp8", kv_dtype="fp8")
    over = trtllm_bench_engine(sm, 1000, 1000)
    requests = 0.95 * (gpu.hbm_bytes - sm.weight_bytes) / (sm.kv_bytes_per_token * 2000)
    assert over.max_num_seqs == 128 * math.ceil(requests / 128)  # 256 <= requests < 1024 here
    assert over.token_budget == max(2048, 256 * math.ceil(requests * 2 / 256))
    assert over.cuda_graph_max_batch == 8192


def test_trtllm_bench_prices_a_checkpoint_its_table_lacks_at_two_bytes() -> None:
    """The harness sizes the engine as param_count × BYTES_PER_ELEM[quant_algo] (2 B for anything outside its
    NVFP4 / FP8 table, gpt-oss's MXFP4 among them) and the KV by kv_cache_quant_algo likewise; windows do not enter."""
    from planner.model.params import count_params

    gpu = get_gpu("b200")
    m = get_model("gpt-oss-20b")
    sm = serving_model(m, gpu, weight_dtype="fp4", kv_dtype="fp8")
    own = trtllm_bench_engine(sm, 1000, 1000)
    harness = trtllm_bench_engine(sm, 1000, 1000, weight_bytes=2.0, kv_bytes=2.0)
    per_token = 2 * m.layers * m.n_kv_heads * m.d_head * 2.0  # every attention layer, 16-bit
    requests = 0.95 * (gpu.hbm_bytes - count_params(m).total * 2.0) / (per_token * 2000)
    assert harness.max_num_seqs == 256 * math.ceil(requests / 256)  # requests ≥ 1024 here
    assert own.max_num_seqs > harness.max_num_seqs


def test_step_time_is_array_ready() -> None:
    gpu = get_gpu("h100")
    sm = serving_model(get_model("llama-3.1-8b"), gpu, weight_dtype="fp8")
    tokens = np.array([1.0, 64.0, 512.0, 8192.0])
    t = sm.gpu_seconds(tokens, tokens, tokens * 1000, 0.0)
    assert t.shape == (4,) and np.all(np.diff(t) > 0)
    assert float(sm.gpu_seconds(64.0, 64.0, 64000.0, 0.0)) == pytest.approx(t[1])
    assert sm.gpu.hbm_bytes / GIB > 70
