"""Real-PyTorch oracles for the activation and FLOP models (shared by the test modules).

`saved_bytes` counts what autograd keeps for backward: every tensor that passes through
`torch.autograd.graph.saved_tensors_hooks` during a forward, each storage once (by
`untyped_storage().data_ptr()`, full storage size), parameters left out. Bool masks count 1 B/elt.

`GPTLayer` / `GPTModel` mirror Megatron-LM's GPT block (Korthikanti et al. 2022, §4): sequence-first
[s, b, h]; one fused QKV column-parallel linear split into views; `baddbmm` scores; a causal softmax
that saves only its 16-bit output (Megatron's fused kernel); attention dropout through
`aten.native_dropout` (bool mask, the fused CUDA path: `F.dropout` on the CPU saves a 16-bit scaled
mask instead); a row-parallel output linear; bias-dropout-add; fc1 → tanh-GeLU → fc2.
Tensor parallelism is simulated as the rank-local shard (a/t heads, f/t FFN); sequence parallelism
runs the LayerNorm and dropout regions on s/t tokens, and the column-parallel linears keep only the
un-gathered input for backward, as Megatron's `LinearWithGradAccumulationAndAsyncCommunication` does.
Communication is shape-equivalent (repeat / narrow) and saves nothing.

The module is an oracle for *bytes and FLOPs*, not for numerics: the simulated collectives do not
produce the values a real TP group would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from planner.schema import ModelSpec

BF16 = torch.bfloat16

# A reentrant checkpoint keeps the CPU RNG state (a 5,056-byte ByteTensor) on its ctx, outside
# save_for_backward: saved_tensors_hooks never see it, so the byte counts below do not include it.
CHECKPOINT_RNG_STATE_BYTES = 5056


# --------------------------------------------------------------------------------------------
# Saved-tensor accounting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    """One storage autograd keeps for backward."""

    shape: tuple[int, ...]  # shape of the first tensor seen on this storage
    dtype: torch.dtype
    nbytes: int  # the whole storage


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def saved_storages(
    fn: Callable[..., object],
    *inputs: object,
    params: Iterable[torch.Tensor] = (),
    exclude: Iterable[torch.Tensor] = (),
) -> list[Saved]:
    """Run `fn(*inputs)` and list each storage saved for backward once.

    Storages of `params` (default: `fn.parameters()` when `fn` is a module) and of `exclude` are left
    out. The forward's outputs are kept alive until the count is done, so no address is reused.
    """
    if isinstance(fn, nn.Module):
        params = [*params, *fn.parameters()]
    skip = {_storage_key(p) for p in [*params, *exclude]}
    seen: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    storages: dict[int, Saved] = {}
    for t in seen:
        key = _storage_key(t)
        if key == 0 or key in skip or key in storages:
            continue
        storages[key] = Saved(tuple(t.shape), t.dtype, t.untyped_storage().nbytes())
    del out
    return list(storages.values())


def saved_bytes(
    fn: Callable[..., object],
    *inputs: object,
    params: Iterable[torch.Tensor] = (),
    exclude: Iterable[torch.Tensor] = (),
) -> int:
    """Bytes autograd keeps for backward after `fn(*inputs)`, each storage once, parameters excluded."""
    return sum(s.nbytes for s in saved_storages(fn, *inputs, params=params, exclude=exclude))


def layer_norm_stats_itemsize(dtype: torch.dtype = BF16) -> int:
    """Bytes per element of the mean/rstd that `F.layer_norm` saves on this machine for `dtype` input.

    CUDA keeps them in fp32 (4 B); the CPU kernel keeps them in the input dtype (2 B for bf16).
    The planner counts the CUDA layout, so tests add the difference (see `ln_stats_gap`).
    """
    x = torch.zeros(2, 4, dtype=dtype, requires_grad=True)
    w = torch.ones(4, dtype=dtype, requires_grad=True)
    got = saved_storages(lambda z: F.layer_norm(z, (4,), w), x, params=[w], exclude=[x])
    stats = [s for s in got if s.shape == (2, 1)]
    assert len(stats) == 2, got
    return stats[0].dtype.itemsize


def ln_stats_gap(rows: int, norms: int = 1, dtype: torch.dtype = BF16) -> int:
    """Bytes the CPU's LayerNorm statistics fall short of CUDA's fp32 mean + rstd, over `norms`
    LayerNorms each normalising `rows` rows."""
    return norms * 2 * rows * (4 - layer_norm_stats_itemsize(dtype))


# --------------------------------------------------------------------------------------------
# Megatron-style pieces
# --------------------------------------------------------------------------------------------


class CausalSoftmax(torch.autograd.Function):
    """Upper-triangular masked softmax that saves only its 16-bit output (Megatron's
    `ScaledUpperTriangMaskedSoftmax`); computed in fp32, returned in the input dtype."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor) -> torch.Tensor:
        sq, sk = scores.shape[-2:]
        mask = torch.ones(sq, sk, dtype=torch.bool).triu_(1)
        probs = torch.softmax(scores.float().masked_fill(mask, float("-inf")), dim=-1).to(scores.dtype)
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (probs,) = ctx.saved_tensors
        p, g = probs.float(), grad.float()
        return (p * (g - (g * p).sum(-1, keepdim=True))).to(grad.dtype)


class GatherLinear(torch.autograd.Function):
    """Column-parallel linear under sequence parallelism: all-gather the [s/t, b, h] shard along the
    sequence (here: repeat it t times, shape-equivalent), multiply, and keep only the local shard
    for backward, where it is gathered again."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, t: int) -> torch.Tensor:
        ctx.t = t
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return F.linear(torch.cat([x] * t, dim=0), weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        full = torch.cat([x] * ctx.t, dim=0)
        grad_full = grad.matmul(weight)
        grad_x = torch.stack(grad_full.chunk(ctx.t, dim=0)).sum(0)  # reduce-scatter
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_w = g2.t().matmul(full.reshape(-1, full.shape[-1]))
        grad_b = g2.sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None


class ReduceScatter(torch.autograd.Function):
    """Row-parallel output under sequence parallelism: [s, b, h] → [s/t, b, h] (shape-equivalent)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, t: int) -> torch.Tensor:
        ctx.t = t
        return x.narrow(0, 0, x.shape[0] // t).clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return torch.cat([grad] * ctx.t, dim=0), None


Recompute = Literal["none", "selective", "full"]


class GPTLayer(nn.Module):
    """One Megatron-style GPT layer on one TP rank. Input and output are [s/r, b, h]."""

    def __init__(
        self,
        h: int,
        a: int,
        f: int,
        t: int = 1,
        sp: bool = False,
        dropout: float = 0.1,
        recompute: Recompute = "none",
        attention: Literal["eager", "flash"] = "eager",
        dtype: torch.dtype = BF16,
    ) -> None:
        super().__init__()
        assert h % a == 0 and a % t == 0 and f % t == 0
        if attention == "flash":
            assert dropout == 0.0, "the CPU flash kernel has no dropout"
        self.h, self.t, self.sp, self.p = h, t, sp, dropout
        self.heads, self.d = a // t, h // a
        self.recompute, self.attention = recompute, attention

        def w(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, dtype=dtype) * 0.02)

        def zeros(n: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(n, dtype=dtype))

        def ones(n: int) -> nn.Parameter:
            return nn.Parameter(torch.ones(n, dtype=dtype))

        self.ln1_w, self.ln1_b = ones(h), zeros(h)
        self.qkv_w, self.qkv_b = w(3 * h // t, h), zeros(3 * h // t)
        self.proj_w, self.proj_b = w(h, h // t), zeros(h)
        self.ln2_w, self.ln2_b = ones(h), zeros(h)
        self.fc1_w, self.fc1_b = w(f // t, h), zeros(f // t)
        self.fc2_w, self.fc2_b = w(h, f // t), zeros(h)

    # communication -----------------------------------------------------------------------------
    def _column(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.sp and self.t > 1:
            return GatherLinear.apply(x, weight, bias, self.t)
        return F.linear(x, weight, bias)  # copy-to-TP-region is the identity in forward

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.sp and self.t > 1:
            return ReduceScatter.apply(x, self.t)
        return x  # all-reduce: same shape

    def _bias_dropout_add(self, x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        y = x + bias
        if self.p > 0:
            y, _ = torch.ops.aten.native_dropout(y, self.p, True)
        return residual + y

    # attention --------------------------------------------------------------------------------
    def core_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """[s, b, np, d] q/k/v views → context [s, b, np·d] (Megatron's CoreAttention)."""
        s, b, n, d = q.shape
        qb = q.reshape(s, b * n, d).transpose(0, 1)
        kb = k.reshape(s, b * n, d).transpose(0, 1).transpose(1, 2)
        buf = torch.empty(b * n, s, s, dtype=q.dtype)
        scores = torch.baddbmm(buf, qb, kb, beta=0.0, alpha=1.0 / math.sqrt(d))
        probs = CausalSoftmax.apply(scores.view(b, n, s, s))
        if self.p > 0:
            probs, _ = torch.ops.aten.native_dropout(probs, self.p, True)
        ctx = torch.bmm(probs.view(b * n, s, s), v.reshape(s, b * n, d).transpose(0, 1))
        return ctx.view(b, n, s, d).permute(2, 0, 1, 3).contiguous().view(s, b, n * d)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm'd input [s/r, b, h] → output projection before the reduce, [s, b, h]."""
        qkv = self._column(x, self.qkv_w, self.qkv_b)
        s, b = qkv.shape[:2]
        q, k, v = qkv.view(s, b, self.heads, 3 * self.d).split(self.d, dim=-1)
        if self.attention == "flash":
            # [b, np, s, d] views into the QKV buffer. The CPU flash kernel lays its output out like
            # the query, i.e. sequence-first, so the projection input below is a view of the output
            # the kernel saves (as with Transformer Engine's sbhd layout: no copy between the two).
            qb, kb, vb = (z.permute(1, 2, 0, 3) for z in (q, k, v))
            o = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True)
            return F.linear(o.permute(2, 0, 1, 3).reshape(s, b, self.heads * self.d), self.proj_w)
        if self.recompute == "selective":
            ctx = checkpoint(self.core_attention, q, k, v, use_reentrant=True)
        else:
            ctx = self.core_attention(q, k, v)
        return F.linear(ctx, self.proj_w)  # row-parallel; its bias goes to bias-dropout-add

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.h
        y = F.layer_norm(x, (h,), self.ln1_w, self.ln1_b)
        x = self._bias_dropout_add(self._reduce(self._attention(y)), self.proj_b, x)
        y = F.layer_norm(x, (h,), self.ln2_w, self.ln2_b)
        y = F.gelu(self._column(y, self.fc1_w, self.fc1_b), approximate="tanh")
        return self._bias_dropout_add(self._reduce(F.linear(y, self.fc2_w)), self.fc2_b, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute == "full":
            return checkpoint(self._forward, x, use_reentrant=True)
        return self._forward(x)


class GPTModel(nn.Module):
    """Embedding (+ learned positions) → dropout → L GPTLayers → final LayerNorm → tied head →
    fp32 cross-entropy (Megatron passes `logits.float()` to its cross-entropy). TP = 1."""

    def __init__(
        self,
        layers: int,
        h: int,
        a: int,
        f: int,
        vocab: int,
        max_seq: int,
        dropout: float = 0.1,
        recompute: Recompute = "none",
        dtype: torch.dtype = BF16,
    ) -> None:
        super().__init__()
        self.h, self.p = h, dropout
        self.word = nn.Parameter(torch.randn(vocab, h, dtype=dtype) * 0.02)
        self.pos = nn.Parameter(torch.randn(max_seq, h, dtype=dtype) * 0.02)
        self.layers = nn.ModuleList(
            GPTLayer(h, a, f, dropout=dropout, recompute=recompute, dtype=dtype) for _ in range(layers)
        )
        self.lnf_w = nn.Parameter(torch.ones(h, dtype=dtype))
        self.lnf_b = nn.Parameter(torch.zeros(h, dtype=dtype))

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, s = ids.shape
        positions = torch.arange(s).unsqueeze(0).expand(b, s)
        x = F.embedding(ids, self.word) + F.embedding(positions, self.pos)
        x = x.transpose(0, 1).contiguous()  # [s, b, h]
        if self.p > 0:
            x, _ = torch.ops.aten.native_dropout(x, self.p, True)
        for layer in self.layers:
            x = layer(x)
        x = F.layer_norm(x, (self.h,), self.lnf_w, self.lnf_b)
        logits = F.linear(x, self.word)  # [s, b, V], tied output layer
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.t().reshape(-1))


# --------------------------------------------------------------------------------------------
# Hugging Face builders (transformers 5.x)
# --------------------------------------------------------------------------------------------


def llama_config(h: int, a: int, kv: int, f: int, vocab: int, seq: int, attn: str, layers: int = 2):
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=h,
        intermediate_size=f,
        num_attention_heads=a,
        num_key_value_heads=kv,
        num_hidden_layers=layers,
        vocab_size=vocab,
        max_position_embeddings=seq,
        attn_implementation=attn,
    )


def mixtral_config(h: int, a: int, kv: int, f: int, vocab: int, seq: int, experts: int, top_k: int, layers: int = 2):
    from transformers import MixtralConfig

    return MixtralConfig(
        hidden_size=h,
        intermediate_size=f,
        num_attention_heads=a,
        num_key_value_heads=kv,
        num_hidden_layers=layers,
        vocab_size=vocab,
        max_position_embeddings=seq,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
        attn_implementation="eager",
        experts_implementation="eager",
    )


def causal_mask(b: int, s: int, dtype: torch.dtype = BF16) -> torch.Tensor:
    """The additive 4-D mask HF's eager attention receives from `create_causal_mask`."""
    m = torch.full((s, s), torch.finfo(dtype).min, dtype=dtype).triu_(1)
    return m.view(1, 1, s, s).expand(b, 1, s, s)


def hf_layer_call(layer: nn.Module, rotary: nn.Module, b: int, s: int, attn: str, dtype: torch.dtype = BF16):
    """What one decoder layer receives inside the HF model: (fn, x, cos, sin).

    `fn(x)` calls the layer as `LlamaModel.forward` does; cos/sin are the per-model RoPE tables (shared by
    all layers), returned so a caller can exclude them from a per-layer count."""
    x = torch.randn(b, s, layer.hidden_size, dtype=dtype, requires_grad=True)
    positions = torch.arange(s).unsqueeze(0)
    cos, sin = rotary(x, positions)
    mask = causal_mask(b, s, dtype) if attn == "eager" else None  # sdpa: None → is_causal

    def fn(z: torch.Tensor) -> torch.Tensor:
        return layer(z, attention_mask=mask, position_embeddings=(cos, sin), position_ids=positions)

    return fn, x, cos, sin


def gpt_spec(layers: int, s: int, h: int, a: int, f: int, vocab: int = 1024) -> ModelSpec:
    return ModelSpec(
        layers=layers,
        hidden=h,
        heads=a,
        ffn_hidden=f,
        vocab=vocab,
        max_seq=s,
        mlp="gelu",
        norm="layernorm",
        bias="all",
        position="learned",
        tied_embeddings=True,
    )
