"""A GPU run below its rated power: what a power limit does to the achievable compute rate.

A power cap lowers the clock until the board's draw fits (the firmware throttles frequency, not voltage
alone). Dynamic power goes as f·V² with V rising with f, so P ∝ f³ where voltage tracks frequency,
which bounds the loss at (P/P_rated)^(1/3); static power and memory-bound phases make the real loss
smaller. The measured exponent comes from the same silicon at two power limits: GA100 as A100 SXM
(400 W) reaches 271.2 TFLOP/s of bf16 matmul, as A100 PCIe (300 W) 252.9 TFLOP/s
(stas00/ml-engineering compute/accelerator/README.md, "Maximum Achievable Matmul FLOPS" table):
0.9325 = 0.75^0.243. So the tensor-core rates scale with (P/P_rated)^POWER_EXPONENT below the rated
power and not above it (a higher cap than the rating buys little: GH200 at 900 W measures 4% over H100
at 700 W in the same table). HBM bandwidth and the interconnect do not depend on the core clock.

`power_limited(gpu, rated_w)` is the rule as a function of the GpuSku: a scenario's `gpus:` entry with
`base:` and a lower `tdp_w` (H100 96 GB at 500 W, as Meta's torchtitan H100 numbers ran) gets its
efficiency scaled by it.
"""

from __future__ import annotations

import math

from planner.schema import GpuSku

POWER_EXPONENT = math.log(252.9 / 271.2) / math.log(300 / 400)  # 0.243, A100 PCIe 300 W vs SXM 400 W MAMF


def power_scale(power_w: float, rated_w: float, exponent: float = POWER_EXPONENT) -> float:
    """Achievable compute rate at `power_w` over the rate at the rated power: (P/P_rated)^exponent,
    1 at or above the rating."""
    if power_w <= 0 or rated_w <= 0:
        raise ValueError("power limits must be positive")
    return min(1.0, power_w / rated_w) ** exponent


def power_limited(gpu: GpuSku, rated_w: float, exponent: float = POWER_EXPONENT) -> GpuSku:
    """`gpu` (whose `tdp_w` is the power it runs at) with its GEMM and attention efficiencies scaled for
    running below `rated_w`, the TDP of the SKU its efficiencies were measured on."""
    k = power_scale(gpu.tdp_w, rated_w, exponent)
    if k == 1.0:
        return gpu
    eff = gpu.efficiency
    update: dict[str, float] = {"gemm": eff.gemm * k}
    if eff.gemm_fp8 is not None:
        update["gemm_fp8"] = eff.gemm_fp8 * k
    note = f"; compute scaled by {k:.3f} for {gpu.tdp_w} W of a {rated_w:g} W rating (planner.model.power)"
    return gpu.model_copy(update={"efficiency": eff.model_copy(update={**update, "source": eff.source + note})})
