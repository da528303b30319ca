"""Model-state bytes, ZeRO sharding, pipeline in-flight counts, and scalar == vectorised memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import get_model
from planner.model.memory import (
    RECOMPUTE_CODES,
    Recipe,
    inference_memory,
    inflight_microbatches,
    layout_arrays,
    state_bytes_per_param,
    training_memory,
    training_memory_table,
)
from planner.schema import Implementation, Layout, ModelSpec, Overheads


def per_param(recipe: Recipe, zero: int, d: int) -> float:
    return float(sum(state_bytes_per_param(recipe, np.int64(zero), d)))


@pytest.mark.parametrize("d", [1, 2, 8, 64])
def test_state_bytes_follow_megatron_and_zero(d: int) -> None:
    megatron = Recipe()  # bf16 params, fp32 main grads, fp32 master + Adam moments
    assert per_param(megatron, 0, d) == 18  # Megatron's documented 18 B/param
    assert per_param(megatron, 1, d) == pytest.approx(6 + 12 / d)  # distributed optimizer: 6 + 12/d
    assert per_param(megatron, 2, d) == pytest.approx(2 + 16 / d)
    assert per_param(megatron, 3, d) == pytest.approx(18 / d)
    bf16_grads = Recipe(fp32_grad_accumulation=False)
    assert per_param(bf16_grads, 0, d) == 16
    assert per_param(bf16_grads, 1, d) == pytest.approx(4 + 12 / d)
    assert per_param(Recipe(offload_optimizer=True), 0, d) == 6
    assert per_param(Recipe(optimizer="sgd"), 0, d) == 14


def test_adam_and_sgd_state_match_torch() -> None:
    """Moment bytes per parameter, read off a real optimizer step."""
    torch = pytest.importorskip("torch")
    from planner.model.memory import OPTIMIZER_MOMENT_BYTES

    for name, make in {
        "adamw": lambda p: torch.optim.AdamW(p),
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    }.items():
        model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Linear(96, 32))
        opt = make(model.parameters())
        model(torch.randn(4, 64)).sum().backward()
        opt.step()
        n = sum(p.numel() for p in model.parameters())
        state = sum(
            t.numel() * t.element_size()
            for s in opt.state.values()
            for t in s.values()
            if torch.is_tensor(t) and t.dim() > 0  # AdamW's scalar `step` is negligible
        )
        assert state / n == OPTIMIZER_MOMENT_BYTES[name]


def test_narrowed_optimizer_state_matches_torch_and_the_remainder_completes_fp32() -> None:
    """A bf16 model stepped by AdamW directly keeps bf16 moments and no master (Apex with optim.dtype bf16):
    master_weights none, moment_dtype bf16, read off a real step. The 16-bit remainder Apex and Megatron keep
    instead of an fp32 master holds exactly what the bf16 parameter drops: the two make the fp32 value bit for bit."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Linear(96, 32)).to(torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 64, dtype=torch.bfloat16)).float().sum().backward()
    opt.step()
    n = sum(p.numel() for p in model.parameters())
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                if torch.is_tensor(t) and t.dim() > 0)
    master, moments = Recipe(master_weights="none", moment_dtype="bf16").optimizer_bytes()
    assert state / n == master + moments == 4
    bf16_state = Recipe(master_weights="none", moment_dtype="bf16", fp32_grad_accumulation=False)
    assert per_param(bf16_state, 1, 8) == 4 + 4 / 8
    # the remainder: the low 16 bits of each fp32 word (the bf16 parameter is the high 16, truncated)
    fp32 = torch.randn(1000, dtype=torch.float32)
    bits = fp32.view(torch.int32)
    high, low = bits >> 16, bits & 0xFFFF
    assert torch.equal(((high << 16) | low).view(torch.float32), fp32)
    assert Recipe(master_weights="remainder").optimizer_bytes()[0] * 8 == 16
    assert per_param(Recipe(master_weights="remainder"), 1, 8) == pytest.approx(6 + 10 / 8)


@pytest.mark.parametrize(("p", "v", "m", "expected_layers_per_l"), [
    (4, 1, 16, 1.0),  # 1F1B: the first stage holds p micro-batches of L/p layers = L
    (8, 1, 4, 0.5),  # fewer micro-batches than stages
    (4, 2, 16, 1 + 3 / 8),  # interleaved: L(1 + (p−1)/(pv))
    (8, 4, 32, 1 + 7 / 32),
])
def test_pipeline_in_flight(p: int, v: int, m: int, expected_layers_per_l: float) -> None:
    # in-flight micro-batches × (L/p layers) / L
    assert inflight_microbatches(np.int64(p), np.int64(v), np.int64(m)) / p == pytest.approx(expected_layers_per_l)


def test_first_stage_binds_under_1f1b() -> None:
    m = get_model("llama-2-13b")
    layout = Layout(tp=2, pp=4, dp=2, global_batch=64, micro_batch=1, recompute="none")
    assert training_memory(m, layout, 4096).stage == 0


layouts = st.builds(
    dict,
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2, 4, 8]),
    vpp=st.sampled_from([1, 2]),
    dp=st.sampled_from([1, 2, 4, 16]),
    cp=st.sampled_from([1, 2]),
    zero=st.sampled_from([0, 1, 2, 3]),
    recompute=st.sampled_from(["none", "selective", "full"]),
    sequence_parallel=st.booleans(),
    micro_batch=st.sampled_from([1, 2, 4]),
    model=st.sampled_from(["llama-3-8b", "gpt3-6.7b", "mixtral-8x7b", "deepseek-v2-lite", "falcon-7b"]),
    dropout=st.sampled_from([0.0, 0.1]),
    attention=st.sampled_from(["flash", "eager"]),
    framework=st.sampled_from(["megatron-core", "torchtitan", "deepspeed", "fsdp"]),
    precision=st.sampled_from(["bf16", "fp8"]),
    fp8_param_gather=st.booleans(),
    split=st.sampled_from([{}, {"account_for_embedding_in_pipeline_split": True,
                                "account_for_loss_in_pipeline_split": True}]),
    partial=st.sampled_from([None, 1, 2]),
)


@settings(max_examples=60, deadline=None)
@given(layouts)
def test_vectorised_memory_equals_scalar(d: dict) -> None:
    m = get_model(d.pop("model"))
    impl = Implementation(dropout=d.pop("dropout"), attention=d.pop("attention"), framework=d.pop("framework"),
                          fp8_param_gather=d.pop("fp8_param_gather"))
    ep = 2 if m.moe and (d["dp"] * d["cp"]) % 2 == 0 else 1
    extras = d.pop("split")
    partial = d.pop("partial")
    if partial is not None and d["recompute"] == "full":
        extras["recompute_num_layers"] = partial
    layout = Layout(global_batch=d["dp"] * d["micro_batch"] * 8, ep=ep, **d, **extras)
    scalar = training_memory(m, layout, 4096, impl)
    arrays = {k: np.array([v, v]) for k, v in layout_arrays(layout).items()}
    table = training_memory_table(m, 4096, arrays, Recipe.of(layout), impl, Overheads())
    assert int(table["total"][0]) == scalar.total
    assert int(table["activations"][1]) == scalar.activations


def test_recompute_shrinks_activations() -> None:
    m = get_model("llama-3-8b")
    acts = {
        mode: training_memory(m, Layout(dp=8, global_batch=64, micro_batch=2, recompute=mode), 8192).activations
        for mode in RECOMPUTE_CODES
    }
    assert acts["full"] < acts["selective"] <= acts["none"]


def test_mla_kv_cache_is_the_compressed_latent() -> None:
    m = get_model("deepseek-v3")
    mem = inference_memory(m, batch=1, context=1000, tp=8)
    assert m.mla is not None
    assert mem.kv_cache == m.layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) * 2 * 1000


@pytest.mark.parametrize("context", [12, 40])
def test_sliding_window_layers_cache_only_the_window(context: int) -> None:
    """The K/V cache transformers keeps for a Mistral-shaped model with a 16-key window, every layer windowed
    and half of them: a windowed layer holds the last 15 tokens after a forward (DynamicSlidingWindowLayer; the
    next token's K and V make 16, what a serving engine's window blocks hold), a full layer every token."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    w, layers = 16, 4
    for windowed in (layers, 2):
        kinds = ["sliding_attention"] * windowed + ["full_attention"] * (layers - windowed)
        cfg = transformers.Qwen2Config(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                       num_key_value_heads=2, num_hidden_layers=layers, vocab_size=100,
                                       max_position_embeddings=256, use_sliding_window=True, sliding_window=w,
                                       layer_types=kinds)
        model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
        cache = model(torch.randint(0, 100, (1, context)), use_cache=True).past_key_values
        held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
        m = ModelSpec(layers=layers, hidden=64, heads=4, kv_heads=2, ffn_hidden=128, vocab=100, max_seq=256,
                      sliding_window=w, window_layers=windowed)
        per_layer_token = 2 * 2 * 16 * 2  # K and V, 2 heads of 16, bf16
        next_token = windowed * per_layer_token if context >= w else 0
        assert inference_memory(m, batch=1, context=context).kv_cache == held + next_token


shapes = st.fixed_dictionaries({
    "tp": st.sampled_from([1, 2, 4]), "pp": st.sampled_from([1, 2, 3, 4, 8]), "vpp": st.sampled_from([1, 2, 4]),
    "dp": st.sampled_from([1, 2, 4]), "cp": st.sampled_from([1, 1, 2, 4]), "micro_batch": st.sampled_from([1, 2]),
    "zero": st.sampled_from([0, 1, 3]),
    "recompute": st.sampled_from(["none", "selective", "full"]), "sequence_parallel": st.booleans(),
})


@settings(max_examples=25, deadline=None)
@given(st.lists(shapes, min_size=2, max_size=6), st.booleans(), st.sampled_from(["bf16", "fp8"]),
       st.sampled_from([8, 24, 48]), st.sampled_from([None, "allgather", "alltoall", "te_allgather"]))
def test_mixed_rows_in_one_call_equal_their_scalar_memory(rows: list[dict], graphs: bool, precision: str,
                                                          batch: int, exchange: str | None) -> None:
    """A grid mixes pipeline shapes (stages, virtual stages, micro-batches) in one call; every row equals the
    layout evaluated alone, whatever its neighbours (CUDA graphs' per-layer buffers, fp8 caches and PyTorch's
    context-parallel buffers too)."""
    m = get_model("llama-3-8b")
    impl = Implementation(cuda_graphs=graphs, cp_exchange=exchange) if exchange in (None, "te_allgather") else \
        Implementation(framework="torchtitan", cuda_graphs=graphs, cp_exchange=exchange, kv_repeat=True)
    layouts = [Layout(global_batch=batch * r["dp"] * r["micro_batch"], precision=precision, **r) for r in rows]
    arrays = {k: np.array([layout_arrays(x)[k] for x in layouts]) for k in layout_arrays(layouts[0])}
    recipe = Recipe.of(layouts[0])
    table = training_memory_table(m, 2048, arrays, recipe, impl, Overheads())
    for i, x in enumerate(layouts):
        assert int(table["total"][i]) == training_memory(m, x, 2048, impl).total, x


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 6), min_size=7, max_size=7), min_size=1, max_size=12),
       st.lists(st.floats(0, 1e9), min_size=7, max_size=7))
def test_dropping_covered_states_keeps_every_peak(states: list[list[int]], weights: list[int]) -> None:
    """A rank's peak is the largest weighted in-flight state; states another covers never are, for any
    non-negative bytes per kind."""
    from planner.model.pipeline import undominated

    a, w = np.array(states, dtype=np.int64), np.array(weights, dtype=np.int64)  # integers: sums exact
    kept = undominated(a)
    assert len(kept) <= len(a)
    assert (kept @ w).max() == (a @ w).max()


def test_context_parallel_exchange_holds_what_pytorch_allocates() -> None:
    """PyTorch's context-parallel attention backward (torchtitan's CP) run on 4 and 2 gloo ranks
    (tests/cp_oracle.py), every storage followed: what it holds beyond the kernel's own backward is planner's
    `cp_exchange_bytes` for both rotate methods, on K/V repeated per query head as torchtitan fed SDPA. A
    collective that completes late keeps its inputs a while longer (the concatenated K/V and fp32 dK/dV it sends:
    at most 3 × the 16-bit K/V more), never less."""
    pytest.importorskip("torch.distributed.tensor.experimental._context_parallel")
    from cp_oracle import BATCH, HEAD_DIM, HEADS, TOKENS, exchange_bytes

    from planner.model.memory import ActivationShape, cp_exchange_bytes
    from planner.model.presets import resolve
    from planner.schema import ModelSpec

    m = ModelSpec(layers=1, hidden=HEADS * HEAD_DIM, heads=HEADS, kv_heads=1, ffn_hidden=512, vocab=512,
                  max_seq=4 * TOKENS)
    x = ActivationShape(s=TOKENS, b=BATCH, t=1, r=1, dropout=False)
    kv16 = 2 * BATCH * TOKENS * 2 * HEADS * HEAD_DIM
    for (method, cp), measured in exchange_bytes().items():
        k = resolve(Implementation(framework="torchtitan", kv_repeat=True, cp_exchange=method))
        planned = float(cp_exchange_bytes(m, k, x, cp))
        assert planned <= measured <= planned + 3 * kv16, (method, cp, measured, planned)
    # Transformer Engine's ring is not counted, and one rank exchanges nothing
    ring = resolve(Implementation(framework="megatron-core"))
    assert cp_exchange_bytes(m, ring, x, 4) == 0.0
    assert float(cp_exchange_bytes(m, resolve(Implementation(framework="torchtitan")), x, 1)) == 0.0


def test_transformer_engine_exchanges_carry_no_pytorch_cp_buffers() -> None:
    """PyTorch's context-parallel buffers belong to its rotations only: Transformer Engine's ring and all-to-all
    (Ulysses) exchanges are not charged them."""
    from planner.model.memory import ActivationShape, cp_exchange_bytes
    from planner.model.presets import resolve

    m = get_model("llama-3.1-8b")
    x = ActivationShape(s=4096, b=1, t=1, r=1, dropout=False)
    for exchange in ("ring", "ulysses"):
        assert cp_exchange_bytes(m, resolve(Implementation(cp_exchange=exchange)), x, 4) == 0.0
    assert float(cp_exchange_bytes(m, resolve(Implementation(cp_exchange="allgather")), x, 4)) > 0


def test_transformer_engine_all_gather_holds_the_whole_sequence_k_v() -> None:
    """Transformer Engine's all-gather exchange holds, until its backward returns, the gathered K/V, the
    full-length 16-bit dK/dV, each step's dK/dV (2·cp + 1 half-chunks) and the dK/dV reordered to rank order
    (context_parallel.py AttnFuncWithCPAndKVAllGather.backward): (4·cp + 1/2) × this rank's 16-bit K/V, none at
    CP 1."""
    from planner.model.memory import ActivationShape, cp_exchange_bytes
    from planner.model.presets import resolve

    m = get_model("llama-3.1-8b")  # 8 K/V heads of 128
    x = ActivationShape(s=4096, b=1, t=1, r=1, dropout=False)
    kv16 = 4096 * 2 * 8 * 128 * 2
    k = resolve(Implementation(cp_exchange="te_allgather"))
    for cp in (2, 4, 8):
        assert float(cp_exchange_bytes(m, k, x, cp)) == (4 * cp + 0.5) * kv16
    assert float(cp_exchange_bytes(m, k, x, 1)) == 0.0
