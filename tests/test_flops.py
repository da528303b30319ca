"""planner.model.flops.step_flops against torch.utils.flop_counter.FlopCounterMode.

The counter sees every matmul of a real forward + backward (2·m·n·k each, full s² for the scores).
It does not count the CPU flash SDPA kernel nor `aten._grouped_mm`, so attention runs eager and
Mixtral's experts run the eager loop. Model FLOPs are checked to 0.1 % (they come out exact);
recompute is checked through hardware FLOPs: checkpointed layers run their forward again, the
output head does not. Tokens T = b·s. fp32 is used: FLOPs do not depend on the dtype.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from oracles import GPTLayer, GPTModel, gpt_spec, llama_config, mixtral_config  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from planner.model.flops import causal_keys_per_query, step_flops  # noqa: E402
from planner.schema import ModelSpec, MoESpec  # noqa: E402

REL = 1e-3
F32 = torch.float32


def counted(loss_fn) -> int:
    """FLOPs of one forward and backward."""
    with FlopCounterMode(display=False) as fc:
        loss_fn().backward()
    return fc.get_total_flops()


# (L, s, b, h, a, f, V)
GPT_MODELS = [(2, 64, 2, 128, 4, 512, 1000), (3, 128, 1, 256, 8, 768, 2048), (2, 96, 3, 192, 6, 768, 512)]


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("shape", GPT_MODELS, ids=lambda v: "L{}s{}b{}h{}a{}f{}V{}".format(*v))
def test_gpt_model(shape, recompute):
    n_layers, s, b, h, a, f, vocab = shape
    torch.manual_seed(0)
    ids = torch.randint(0, vocab, (b, s))
    expected = step_flops(gpt_spec(n_layers, s, h, a, f, vocab), s, b * s, recompute, causal=False)
    plain = GPTModel(n_layers, h, a, f, vocab, s, dropout=0.1, dtype=F32)
    assert counted(lambda: plain(ids, ids)) == pytest.approx(expected.model, rel=REL)
    if recompute != "none":
        model = GPTModel(n_layers, h, a, f, vocab, s, dropout=0.1, recompute=recompute, dtype=F32)
        assert counted(lambda: model(ids, ids)) == pytest.approx(expected.hardware, rel=REL)
        assert expected.hardware > expected.model


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize(("t", "sp"), [(1, False), (2, False), (4, True)])
def test_gpt_layer_per_rank(t, sp, recompute):
    """One layer on one TP rank does 1/t of the layer's FLOPs (the head cancels in L=2 minus L=1)."""
    s, b, h, a, f = 64, 2, 256, 8, 768
    r = t if sp else 1
    torch.manual_seed(0)
    layer = GPTLayer(h, a, f, t=t, sp=sp, dropout=0.1, recompute=recompute, dtype=F32)
    x = torch.randn(s // r, b, h, requires_grad=True)
    got = counted(lambda: layer(x).float().sum())
    two, one = (step_flops(gpt_spec(n, s, h, a, f, 512), s, b * s, recompute, causal=False) for n in (2, 1))
    assert got * t == pytest.approx(two.hardware - one.hardware, rel=REL)


def test_counter_counts_full_scores():
    """The counter counts the whole s² score matrix eager attention computes; planner's convention counts
    the causal half a flash kernel executes (planner.model.flops)."""
    n_layers, s, b, h, a, f, vocab = GPT_MODELS[0]
    torch.manual_seed(0)
    ids = torch.randint(0, vocab, (b, s))
    model = GPTModel(n_layers, h, a, f, vocab, s, dropout=0.0, dtype=F32)
    got = counted(lambda: model(ids, ids))
    m = gpt_spec(n_layers, s, h, a, f, vocab)
    assert got == pytest.approx(step_flops(m, s, b * s, causal=False).model, rel=REL)
    assert got > step_flops(m, s, b * s).model * (1 + REL)


# (L, s, b, h, a, k_v, f, V): GQA (k_v = a/2, a/4) and MHA
LLAMA_MODELS = [(2, 64, 2, 128, 4, 2, 352, 1000), (2, 128, 1, 256, 8, 2, 688, 2048), (3, 96, 2, 192, 6, 6, 512, 768)]


@pytest.mark.parametrize("recompute", ["none", "full"])
@pytest.mark.parametrize("shape", LLAMA_MODELS, ids=lambda v: "L{}s{}b{}h{}a{}kv{}f{}V{}".format(*v))
def test_llama(shape, recompute):
    from transformers import LlamaForCausalLM

    n_layers, s, b, h, a, kv, f, vocab = shape
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(h, a, kv, f, vocab, s, "eager", layers=n_layers))
    model.train()
    if recompute == "full":  # HF checkpoints each decoder layer; the head is not recomputed
        model.activation_checkpointing_enable({"use_reentrant": True})
    ids = torch.randint(0, vocab, (b, s))
    got = counted(lambda: model(input_ids=ids, labels=ids, use_cache=False).loss)
    m = ModelSpec(layers=n_layers, hidden=h, heads=a, kv_heads=kv, ffn_hidden=f, vocab=vocab, max_seq=s)
    expected = step_flops(m, s, b * s, recompute, causal=False)
    assert got == pytest.approx(expected.hardware, rel=REL)
    if recompute == "none":
        assert got == pytest.approx(expected.model, rel=REL)


# (L, s, b, h, a, k_v, f, V, E, k)
MIXTRAL_MODELS = [(2, 64, 2, 128, 4, 2, 256, 1000, 8, 2), (2, 128, 1, 256, 8, 2, 512, 2048, 8, 2)]


@pytest.mark.parametrize("shape", MIXTRAL_MODELS, ids=lambda v: "L{}s{}b{}h{}a{}kv{}f{}V{}E{}k{}".format(*v))
def test_mixtral(shape):
    """Top-2 of 8: only the routed experts' weights (and the router) count per token."""
    from transformers import MixtralForCausalLM

    n_layers, s, b, h, a, kv, f, vocab, experts, top_k = shape
    torch.manual_seed(0)
    model = MixtralForCausalLM(mixtral_config(h, a, kv, f, vocab, s, experts, top_k, layers=n_layers))
    model.train()
    ids = torch.randint(0, vocab, (b, s))
    got = counted(lambda: model(input_ids=ids, labels=ids, use_cache=False).loss)
    m = ModelSpec(
        layers=n_layers,
        hidden=h,
        heads=a,
        kv_heads=kv,
        ffn_hidden=f,
        vocab=vocab,
        max_seq=s,
        moe=MoESpec(experts=experts, top_k=top_k, expert_ffn=f),
    )
    assert got == pytest.approx(step_flops(m, s, b * s, causal=False).model, rel=REL)


@pytest.mark.parametrize(("s", "w", "windowed"), [(512, 128, None), (512, 128, 5), (300, 64, 2), (128, 256, None)])
def test_sliding_window_keys_are_the_masks(s: int, w: int, windowed: int | None) -> None:
    """Keys a query attends to, averaged over positions and layers, against the pairs transformers' sliding-window
    causal mask (masking_utils, what Mistral's and Qwen2's attention use) and its causal mask allow; planner counts
    the continuous triangle (s/2 a query under the causal mask), so the two differ by half a key per query."""
    from transformers.masking_utils import causal_mask_function, sliding_window_causal_mask_function

    q, k = torch.arange(s).view(-1, 1), torch.arange(s).view(1, -1)
    allowed_window = int(sliding_window_causal_mask_function(w)(0, 0, q, k).sum()) / s
    allowed_full = int(causal_mask_function(0, 0, q, k).sum()) / s
    m = ModelSpec(layers=8, hidden=256, heads=4, ffn_hidden=512, vocab=512, max_seq=s, sliding_window=w,
                  window_layers=windowed)
    n = 8 if windowed is None else windowed
    expected = (n * allowed_window + (8 - n) * allowed_full) / 8
    assert causal_keys_per_query(m, s) == pytest.approx(expected, abs=0.5 + 1e-9)
    full = m.model_copy(update={"sliding_window": None, "window_layers": None})
    assert causal_keys_per_query(full, s) == s / 2
    # model FLOPs count the window's keys; the sources' full-s² convention (causal=False) does not change
    assert step_flops(m, s, s).model < step_flops(full, s, s).model or w >= s
    assert step_flops(m, s, s, causal=False).model == step_flops(full, s, s, causal=False).model


def test_hardware_flops_count_the_modules_selective_recompute_reruns() -> None:
    """HFU's numerator counts what selective recompute executes, module by module as the time model reruns it: the
    attention scores of core_attn, the MLP's matmuls of mlp (2 FLOPs a weight a token), torchtitan's every second
    matmul (wk, wo and one MLP matrix); element-wise modules add none. Rerunning the MLPs costs time and adds their
    FLOPs, so HFU does not fall."""
    from planner import EstimateRequest, estimate
    from planner.catalog import get_model
    from planner.model.flops import EVERY_SECOND_MATMUL, selective_recompute_flops_per_token
    from planner.model.params import attention_weights, k_projection_weights, mlp_weights

    m = get_model("llama-3.1-8b")
    seq, tokens = 8192, 64 * 8192
    base = step_flops(m, seq, tokens, "none")
    mlp = step_flops(m, seq, tokens, "selective", modules=("mlp",))
    assert mlp.hardware - base.hardware == pytest.approx(2 * m.layers * mlp_weights(m, m.ffn_hidden) * tokens)
    assert selective_recompute_flops_per_token(m, seq, ("layernorm", "moe_act")) == 0
    qkv = attention_weights(m) - m.heads * m.d_head * m.hidden  # the attention input projection
    assert k_projection_weights(m) / qkv == pytest.approx(1 / 6)  # 8 KV heads of 32 query heads: K is 1,024 of 6,144
    d = m.hidden * m.d_head
    every = 2 * m.layers * (m.n_kv_heads * d + m.heads * d + m.hidden * m.ffn_hidden)
    assert selective_recompute_flops_per_token(m, seq, (EVERY_SECOND_MATMUL,)) == pytest.approx(every)

    def run(rc: str, mods: list[str] | None) -> Any:
        impl = {"framework": "megatron-core"} | ({"recompute_modules": mods} if mods else {})
        return estimate(EstimateRequest(model="llama-3.1-8b", gpu="h100-sxm", gpus=8, tokens=1e12, global_batch=64,
                                        seq=seq, layout={"recompute": rc, "micro_batch": 1}, implementation=impl))

    none, sel = run("none", None), run("selective", ["mlp"])
    assert sel.time.step_seconds > none.time.step_seconds and sel.time.hfu >= none.time.hfu
    assert sel.flops.hardware == pytest.approx(mlp.hardware)
