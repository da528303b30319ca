"""FLOPs per training step: model FLOPs (what MFU counts) and hardware FLOPs (with recompute).

Matmuls count 2·m·n·k, as torch.utils.flop_counter does. Model FLOPs per step are
`6·N_matmul·T + 6·L·s·a·(d_qk + d_v)·T·c` (Narayanan et al. 2021 eq. 3 / Korthikanti et al. 2022 §6
generalised to GQA, MLA and MoE).

Convention (`causal`): planner counts the causal attention scores QKᵀ and softmax·V at half, c = ½ —
the work a causal kernel executes (flash attention skips the masked blocks) and what current Megatron-LM
counts (megatron/training/training.py num_floating_point_operations: "/ 2 # causal mask"). With the full
s² counted, MFU at long context exceeds what the GPU can execute (at 1M tokens the scores are nearly all
the work, and a full count doubles them). Many published tables count them in full (SC21, Korthikanti,
Megatron-Core 2024, NeMo, MosaicML, torchtitan); `causal=False` gives that count, and
planner.interop.published.compare puts each source's measurement next to a prediction in the source's
own convention. torch.utils.flop_counter counts what eager attention executes: the full s².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.model.params import (
    attention_dims,
    k_projection_weights,
    matmul_params_per_token,
    mla_up_weights,
    mlp_weights,
)
from planner.schema import Layout, ModelSpec, Recompute

# torchtitan's selective "op" policy keeps every other matmul of a block and recomputes the rest together with every
# element-wise op (activation_checkpoint.py, _get_custom_policy): a recompute module of its own.
EVERY_SECOND_MATMUL = "every_second_mm"
# Megatron's selective recompute by default: core attention (Korthikanti et al. 2022 §5).
DEFAULT_SELECTIVE = ("core_attn",)


def window_pairs(end: Any, start: Any, window: float, share: float) -> Any:
    """Causal (query, key) pairs of the queries at positions [start, end), averaged over layers of which `share`
    attend through a `window`-key sliding window: P(end) − P(start) with P(n) = n²/2 in full layers and
    min(n, w)²/2 + w·max(n − w, 0) in windowed ones (the continuous forms of Σ keys a query; Beltagy et al. 2020,
    arXiv 2004.05150 §3.1: O(s·w) work). Scalars or numpy arrays."""
    new = end - start
    full = new * start + new * new / 2.0
    if not share:
        return full

    def w_prefix(n: Any) -> Any:
        low = np.minimum(n, window)
        return low * low / 2.0 + window * np.maximum(n - window, 0.0)

    return (1.0 - share) * full + share * (w_prefix(end) - w_prefix(start))


def causal_keys_per_query(m: ModelSpec, seq: int) -> float:
    """Keys one query attends to under the causal mask, averaged over positions and layers: s/2 with full
    attention; a window of w keys (itself included) over s > w positions leaves w − w²/(2s) of them, the causal
    triangle less what falls before the window (`window_pairs` over the whole sequence)."""
    if m.sliding_window is None:
        return seq / 2
    return float(window_pairs(seq, 0, float(m.sliding_window), m.n_window_layers / m.layers)) / seq


def attention_forward_flops_per_token(m: ModelSpec, seq: int, causal: bool = False) -> float:
    """QKᵀ and softmax·V of one token against `seq` keys, all layers, forward only; `causal` counts the keys
    the causal mask (and a sliding window) leaves, what a flash kernel executes."""
    qk, v = attention_dims(m)
    keys = causal_keys_per_query(m, seq) if causal else seq
    return 2.0 * keys * (qk + v) * m.layers


def head_matmul_params(m: ModelSpec) -> int:
    return m.vocab * m.hidden


@dataclass(frozen=True)
class StepFlops:
    model: float  # forward + backward, no recompute: the MFU numerator
    hardware: float  # what the GPUs execute, recompute included: the HFU numerator
    tokens: int


def full_recompute_share(layout: Layout, layers: int) -> float:
    """The share of a model's layers a full recompute reruns: every layer, unless Megatron's block method
    (--recompute-method block --recompute-num-layers n, megatron/core/transformer/transformer_block.py
    _checkpointed_forward) reruns only the first n layers of each of the pp·vpp model chunks; the uniform method
    checkpoints every layer, n at a time."""
    n = layout.recompute_num_layers
    if layout.recompute != "full" or n is None or layout.recompute_method == "uniform":
        return 1.0
    return min(1.0, layout.pp * layout.vpp * n / layers)


def selective_recompute_flops_per_token(m: ModelSpec, seq: int, modules: Sequence[str] = DEFAULT_SELECTIVE,
                                        causal: bool = True) -> float:
    """Forward FLOPs per token that selective recompute repeats, module by module as the time model reruns them
    (planner.model.perf `_selective`: Megatron-Core's recompute_modules, torchtitan's op policy). Element-wise
    modules (layernorm, moe_act) execute no matmul FLOPs."""
    e = m.moe
    routed = m.moe_layers * e.top_k * mlp_weights(m, e.expert_ffn) if e else 0
    shared = m.moe_layers * e.shared_experts * mlp_weights(m, e.shared_ffn) if e else 0
    weights = 0.0
    if "mlp" in modules:  # the layer's MLP: the dense one, or a MoE layer's routed experts
        weights += m.dense_layers * mlp_weights(m, m.ffn_hidden) + routed
    if "moe" in modules and e:
        weights += routed + shared + m.moe_layers * m.hidden * e.experts
    if "shared_experts" in modules:
        weights += shared
    if "mla_up_proj" in modules:
        weights += m.layers * mla_up_weights(m)
    if EVERY_SECOND_MATMUL in modules:  # wk, wo and w3 (SwiGLU) or w2: one hidden × width matrix of each MLP
        _, v = attention_dims(m)
        widths = m.dense_layers * m.ffn_hidden + (
            m.moe_layers * (e.top_k * e.expert_ffn + e.shared_experts * e.shared_ffn) if e else 0)
        weights += m.layers * (k_projection_weights(m) + v * m.hidden) + m.hidden * widths
    attn = attention_forward_flops_per_token(m, seq, causal) if "core_attn" in modules else 0.0
    return 2.0 * weights + attn


def step_flops(
    m: ModelSpec, seq: int, tokens: int, recompute: Recompute = "none", causal: bool = True, full_share: float = 1.0,
    modules: Sequence[str] = DEFAULT_SELECTIVE,
) -> StepFlops:
    """FLOPs of one optimizer step over `tokens` tokens of sequence length `seq`; `causal` halves the
    attention scores (planner's convention, see the module docstring); `full_share` of the layers is rerun by a
    full recompute (`full_recompute_share`); selective recompute reruns `modules`."""
    n_matmul = matmul_params_per_token(m)
    attn_fwd = attention_forward_flops_per_token(m, seq, causal)
    model = (6.0 * n_matmul + 3.0 * attn_fwd) * tokens
    extra = 0.0
    if recompute == "selective":
        extra = selective_recompute_flops_per_token(m, seq, modules, causal) * tokens
    elif recompute == "full":  # one more forward of every recomputed layer, not of the output head
        extra = full_share * (2.0 * (n_matmul - head_matmul_params(m)) + attn_fwd) * tokens
    return StepFlops(model=model, hardware=model + extra, tokens=tokens)
