"""planner's predictions for single kernels, which its public API only gives as parts of a whole step.

`training_time` charges every GEMM of a layer through `planner.model.perf._gemm`, with the rate, the
compute/traffic balance and the alignment `planner.model.perf._build_context` derives from the GPU, its
`Efficiency` and the precision. `predicted_gemm_seconds` calls those two functions as they are (read-only:
nothing in planner is patched or copied), so a change to the efficiency curve shows up here unchanged.
`layer_gemms` reads the four dense GEMM widths of one layer from the same context, as
`perf._layer` charges them, and `predicted_hbm_bytes_per_s` the HBM rate element-wise work and the
optimizer step are charged at.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import ROOT  # noqa: F401  (puts the repository on sys.path)

from planner.model import perf
from planner.model.memory import Recipe
from planner.model.stack import time_arrays
from planner.schema import AttentionKernel, Efficiency, GpuSku, Implementation, Layout, ModelSpec

# _gemm reads only GPU- and precision-dependent fields of the context (rate, balance, align,
# unaligned_penalty); the model shape the context also carries does not enter, so any model will do.
_PROBE = ModelSpec(name="gemm-probe", layers=1, hidden=128, heads=1, ffn_hidden=128, vocab=128, max_seq=128)


def gemm_context(gpu: GpuSku, dtype: str = "bf16", model: ModelSpec | None = None,
                 efficiency: Efficiency | None = None) -> perf._Context:
    """The context `training_time` builds for `gpu` at precision `dtype` (bf16, fp16 or fp8)."""
    return perf._build_context(model or _PROBE, gpu, 2048, Implementation(), efficiency or gpu.efficiency,
                               gpu.node_size, Recipe(precision=dtype))


def predicted_gemm_seconds(gpu: GpuSku, m: int, n: int, k: int, dtype: str = "bf16",
                           efficiency: Efficiency | None = None) -> float:
    """Seconds planner charges for one M×K·K×N GEMM in `dtype`: `perf._gemm` at the context's large-GEMM
    rate (dense peak × efficiency.gemm, or × gemm_fp8 for fp8), slowed by its operand traffic and by a
    dimension off the 128-byte tensor-core alignment. training_time charges a layer's backward as twice
    its forward GEMMs, so a dgrad or wgrad GEMM (the same three sizes, permuted) is predicted the same."""
    c = gemm_context(gpu, dtype, efficiency=efficiency)
    return float(perf._gemm(c, c.gemm_rate, m, n, k))


def dense_peak_flops(gpu: GpuSku, dtype: str) -> float:
    """The dense tensor-core peak the efficiencies are fractions of, FLOP/s."""
    return gpu.peak(dtype) * 1e12


def predicted_hbm_bytes_per_s(gpu: GpuSku, efficiency: Efficiency | None = None) -> float:
    """Achieved HBM rate of the time model: spec bandwidth × efficiency.hbm (the context's `hbm`)."""
    return float(gemm_context(gpu, "bf16", efficiency=efficiency).hbm)


def layer_gemms(model: ModelSpec, tp: int) -> list[tuple[str, int, int]]:
    """(name, N, K) of the dense GEMMs of one layer on one TP rank, forward: Y[tokens×N] = X[tokens×K]·W.
    QKV (column-parallel), attention output (row-parallel), MLP up (gate and up fused for SwiGLU, column-
    parallel) and MLP down (row-parallel), with the widths `perf._layer` charges."""
    c = gemm_context(_gpu_for_shapes(), "bf16", model=model)
    h = c.h
    shapes = [("qkv", c.attn_in_n / tp, h), ("attn_out", h, c.v_width / tp),
              ("mlp_up", c.mlp_in_n / tp, h), ("mlp_down", h, c.ffn / tp)]
    out = []
    for name, n, k in shapes:
        if n != int(n) or k != int(k):
            raise ValueError(f"{model.name} {name} at TP{tp}: {n}×{k} is not a whole shard")
        out.append((name, int(n), int(k)))
    return out


def _gpu_for_shapes() -> GpuSku:
    from planner.catalog import get_gpu

    return get_gpu("h100-sxm")  # shapes do not depend on the GPU; any catalog entry builds the context


def attention_rates(gpu: GpuSku, kernel: AttentionKernel = "native",
                    efficiency: Efficiency | None = None) -> tuple[float, float]:
    """(forward, backward) attention FLOP/s planner charges for `kernel` (native, fa2 or triton) in bf16, FLOPs in
    its convention (causal counts half; a backward counts perf.FLASH_BACKWARD forwards): the context's
    `flash_rate`, and the same over the kernel's backward share (`flash_backward`)."""
    c = perf._build_context(_PROBE, gpu, 2048, Implementation(attention_kernel=kernel), efficiency or gpu.efficiency,
                            gpu.node_size, Recipe(precision="bf16"))
    return float(c.flash_rate), float(perf.FLASH_BACKWARD * c.flash_rate / c.flash_backward)


@dataclass(frozen=True)
class MoeBlockSeconds:
    experts_fwd: float  # the local experts' GEMMs, forward
    block_fwd_bwd: float  # router, experts, activation and token permutation, forward + backward


def moe_block_seconds(gpu: GpuSku, model: ModelSpec, tokens: int, ep: int) -> MoeBlockSeconds:
    """What `training_time` charges one EP rank's MoE block for a micro-batch of `tokens` tokens (bf16, TP 1,
    EP `ep`, routing balanced), from `perf._layer` as it is: the expert GEMMs (`up` + `down`), the router GEMM
    (`other`) and the element-wise work the MoE layer adds to a dense layer's (the experts' activation and the
    permute and unpermute); a backward of twice the GEMMs and perf.BACKWARD_BYTES times the element-wise work."""
    c = perf._build_context(model, gpu, tokens, Implementation(), gpu.efficiency, gpu.node_size,
                            Recipe(precision="bf16"))
    s = perf._step(c, time_arrays(Layout(dp=ep, ep=ep, global_batch=ep)))
    moe, dense = perf._layer(c, s, True), perf._layer(c, s, False)
    gemm = float(moe.up + moe.down + moe.other)
    ew = float(moe.ew - (dense.ew - dense.act_ew))  # the dense layer's norms, residuals and rotary are not here
    return MoeBlockSeconds(experts_fwd=float(moe.up + moe.down),
                           block_fwd_bwd=3.0 * gemm + (1.0 + perf.BACKWARD_BYTES) * ew)
