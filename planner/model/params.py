"""Parameter counts, exact to the parameter against the Hugging Face module tree.

Closed forms per block (checked against transformers' modules on the meta device in tests):
GPT-2/3 `L(12h² + 13h) + Vh + s·h + 2h`; Llama `L[h·a·d + 2h·k·d + a·d·h + 3hf + 2h] + 2Vh + h`;
MoE replaces the MLP by `E·mlp + S·mlp_shared + h·E`; MLA per DeepSeek-V2 (arXiv 2405.04434, §2.1); Qwen3's
query and key norms `2d` per layer (RMSNorm).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from planner.schema import ModelSpec


@dataclass(frozen=True)
class ParamCount:
    """Parameters by where they live. `total` is what the module tree holds."""

    embedding: int  # token embedding (input)
    embedding_norm: int  # a norm on the embedding output (BLOOM)
    position: int  # learned position embedding
    output: int  # untied LM head (0 when tied)
    final_norm: int
    attention: int  # all layers, incl. attention norms and biases
    mlp: int  # all layers, dense MLPs + experts + routers, incl. MLP norms
    per_layer_dense: int  # one layer with a dense MLP
    per_layer_moe: int  # one layer with an MoE MLP (0 for dense models)
    expert: int  # one routed expert
    active: int  # used by one token: total minus the experts it is not routed to

    @property
    def total(self) -> int:
        return (
            self.embedding + self.embedding_norm + self.position + self.output + self.final_norm + self.attention
            + self.mlp
        )

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding - self.position - self.output


def norm_params(m: ModelSpec, width: int) -> int:
    """LayerNorm has a weight and a bias, RMSNorm only a weight."""
    return 2 * width if m.norm == "layernorm" else width


def attention_dims(m: ModelSpec) -> tuple[int, int]:
    """(query-key width, value width) summed over heads: a·d_qk and a·d_v."""
    if m.mla is not None:
        return m.heads * (m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim), m.heads * m.mla.v_head_dim
    return m.heads * m.d_head, m.heads * m.d_head


def attention_weights(m: ModelSpec) -> int:
    """Matmul weights of one layer's attention (no norms, no biases)."""
    h, a = m.hidden, m.heads
    if m.mla is not None:
        x = m.mla
        qk = x.qk_nope_head_dim + x.qk_rope_head_dim
        q = h * x.q_lora_rank + x.q_lora_rank * a * qk if x.q_lora_rank else h * a * qk
        kv = h * (x.kv_lora_rank + x.qk_rope_head_dim) + x.kv_lora_rank * a * (
            x.qk_nope_head_dim + x.v_head_dim
        )
        return q + kv + a * x.v_head_dim * h
    d, k = m.d_head, m.n_kv_heads
    return h * a * d + 2 * h * k * d + a * d * h


def mla_up_weights(m: ModelSpec) -> int:
    """One layer's MLA up-projections (q_lora → heads·(nope + rope), kv_lora → heads·(nope + v)): what Megatron's
    `mla_up_proj` recompute reruns; 0 without MLA."""
    if m.mla is None:
        return 0
    x = m.mla
    q = x.q_lora_rank * m.heads * (x.qk_nope_head_dim + x.qk_rope_head_dim) if x.q_lora_rank else 0
    return q + x.kv_lora_rank * m.heads * (x.qk_nope_head_dim + x.v_head_dim)


def k_projection_weights(m: ModelSpec) -> int:
    """One layer's K projection (hidden → kv_heads·d_head): what torchtitan's op-level checkpoint reruns of the
    attention input (wk: every second matmul of wq, wk, wv, wo). MLA has no K projection of its own (its latent
    up-projection makes K and V): none."""
    return 0 if m.mla is not None else m.hidden * m.n_kv_heads * m.d_head


def qk_norm_width(m: ModelSpec) -> int:
    """Q and K elements per token the query/key norms normalise: (a + k)·d (0 without them)."""
    return 0 if m.qk_norm == "none" else (m.heads + m.n_kv_heads) * m.d_head


def qk_norm_params(m: ModelSpec) -> int:
    """One layer's query and key norms: one norm of head_dim each, shared by the heads (transformers
    Qwen3Attention q_norm/k_norm; Megatron-Core qk_layernorm)."""
    return 2 * norm_params(m, m.d_head) if m.qk_norm == "head" else 0


def attention_params(m: ModelSpec) -> int:
    """One layer's attention: weights, biases, query/key norms and MLA's inner RMSNorms on the low-rank latents."""
    if m.mla is not None:
        return attention_weights(m) + (m.mla.q_lora_rank or 0) + m.mla.kv_lora_rank
    bias = 0
    if m.bias != "none":
        bias += (m.heads + 2 * m.n_kv_heads) * m.d_head
    if m.bias in ("attention", "all"):
        bias += m.hidden
    sinks = m.heads if m.attention_sinks else 0  # GptOssAttention.sinks; Megatron softmax_offset
    return attention_weights(m) + bias + qk_norm_params(m) + sinks


def mlp_weights(m: ModelSpec, ffn: int) -> int:
    """Matmul weights of one MLP of width `ffn`: 2 matrices (GeLU) or 3 (SwiGLU gate/up/down)."""
    return (3 if m.mlp == "swiglu" else 2) * m.hidden * ffn


def mlp_params(m: ModelSpec, ffn: int) -> int:
    """One dense MLP with its biases."""
    bias = (2 * ffn if m.mlp == "swiglu" else ffn) + m.hidden if m.bias == "all" else 0
    return mlp_weights(m, ffn) + bias


def router_params(m: ModelSpec) -> int:
    """The linear router of one MoE block, with a bias where the linear layers have one (Megatron-Core's
    TopKRouter with add_bias_linear; GptOssTopKRouter)."""
    assert m.moe is not None
    return (m.hidden + (1 if m.bias == "all" else 0)) * m.moe.experts


def moe_mlp_params(m: ModelSpec) -> int:
    """One MoE block: routed experts, shared experts and the linear router."""
    assert m.moe is not None
    e = m.moe
    return e.experts * mlp_params(m, e.expert_ffn) + e.shared_experts * mlp_params(m, e.shared_ffn) + router_params(m)


@functools.lru_cache(maxsize=256)  # every layout of a model asks again; ModelSpec is frozen
def count_params(m: ModelSpec) -> ParamCount:
    h = m.hidden
    attn_norm = norm_params(m, h)
    mlp_norm = 0 if m.shared_block_input else norm_params(m, h)  # a one-norm parallel block shares it
    attn = attention_params(m) + attn_norm
    dense = mlp_params(m, m.ffn_hidden) + mlp_norm
    moe = moe_mlp_params(m) + mlp_norm if m.moe else 0
    expert = mlp_params(m, m.moe.expert_ffn) if m.moe else 0
    embedding = m.vocab * h
    position = (m.max_seq + m.position_offset) * h if m.position == "learned" else 0
    output = 0 if m.tied_embeddings else m.vocab * h
    final_norm = norm_params(m, h)
    mlp_total = m.dense_layers * dense + m.moe_layers * moe
    total = embedding + position + output + final_norm + m.layers * attn + mlp_total
    total += norm_params(m, h) if m.embedding_norm else 0
    inactive = m.moe_layers * (m.moe.experts - m.moe.top_k) * expert if m.moe else 0
    return ParamCount(
        embedding=embedding,
        embedding_norm=norm_params(m, h) if m.embedding_norm else 0,
        position=position,
        output=output,
        final_norm=final_norm,
        attention=m.layers * attn,
        mlp=mlp_total,
        per_layer_dense=attn + dense,
        per_layer_moe=attn + moe if m.moe else 0,
        expert=expert,
        active=total - inactive,
    )


def matmul_params_per_token(m: ModelSpec) -> int:
    """Weights a token multiplies through: linear layers (routed top-k experts only), routers and the
    output head even when tied; no embeddings, norms or biases (the FLOP convention of formulas §3)."""
    total = (
        m.layers * attention_weights(m) + m.dense_layers * mlp_weights(m, m.ffn_hidden) + m.vocab * m.hidden
    )
    if m.moe:
        e = m.moe
        routed = e.top_k * mlp_weights(m, e.expert_ffn) + e.shared_experts * mlp_weights(m, e.shared_ffn)
        total += m.moe_layers * (routed + m.hidden * e.experts)
    return total
