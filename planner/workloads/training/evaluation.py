"""Evaluate one plan: a model, a layout and a GPU → parameters, FLOPs, memory, time and cost.

This is the independent check of every constraint: `planner estimate` reports it, and every plan the
solver returns is re-evaluated here and must pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.model.flops import StepFlops, step_flops
from planner.model.memory import MemoryBreakdown, training_memory
from planner.model.params import ParamCount, count_params
from planner.model.perf import TimeEstimate, fixed_utilisation_time, training_time
from planner.pricing import HourlyRate, hourly_rate
from planner.scenario import EfficiencyOverride, Pricing
from planner.schema import Efficiency, GpuSku, Implementation, Layout, ModelSpec, Overheads
from planner.workloads.training.legality import layout_problems


@dataclass(frozen=True)
class Evaluation:
    model: ModelSpec
    gpu: GpuSku
    layout: Layout
    gpus_per_node: int
    seq: int
    tokens: float
    params: ParamCount
    flops: StepFlops
    memory: MemoryBreakdown
    time: TimeEstimate
    rate: HourlyRate | None
    problems: list[str]  # legality violations; empty for a runnable layout

    @property
    def capacity_bytes(self) -> int:
        return self.gpu.hbm_bytes

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.capacity_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.capacity_bytes - self.memory.total

    @property
    def gpus(self) -> int:
        return self.layout.gpus

    @property
    def nodes(self) -> int:
        return math.ceil(self.layout.gpus / self.gpus_per_node)

    @property
    def cost_usd(self) -> float | None:
        if self.rate is None:
            return None
        return self.time.gpu_hours * self.rate.usd_per_gpu_hour

    @property
    def usd_per_million_tokens(self) -> float | None:
        cost = self.cost_usd
        return None if cost is None else cost / (self.tokens / 1e6)


def merged_efficiency(gpu: GpuSku, override: EfficiencyOverride | None) -> Efficiency:
    """The SKU's efficiency defaults with the scenario's overrides applied."""
    if override is None:
        return gpu.efficiency
    changes = {k: v for k, v in override.model_dump(exclude={"mfu", "hfu"}).items() if v is not None}
    return gpu.efficiency.model_copy(update=changes)


def evaluate(
    model: ModelSpec,
    layout: Layout,
    gpu: GpuSku,
    *,
    seq: int,
    tokens: float,
    gpus_per_node: int | None = None,
    implementation: Implementation | None = None,
    overheads: Overheads | None = None,
    efficiency: EfficiencyOverride | None = None,
    pricing: Pricing | None = None,
    rate: HourlyRate | None = None,
) -> Evaluation:
    """Everything planner knows about one plan. Legality problems are reported, not raised.

    The cost comes from `rate`, or from the catalog price `pricing` selects; without either, no cost."""
    if pricing is not None and rate is not None:
        raise ValueError("give pricing or rate, not both")
    impl = implementation or Implementation()
    node = gpus_per_node or gpu.node_size
    eff = efficiency or EfficiencyOverride()
    flops = step_flops(model, seq, layout.global_batch * seq, layout.recompute)
    memory = training_memory(model, layout, seq, impl, overheads)
    if eff.mfu is not None or eff.hfu is not None:
        time = fixed_utilisation_time(model, layout, gpu, seq, tokens, mfu=eff.mfu, hfu=eff.hfu)
    else:
        time = training_time(
            model, layout, gpu, seq, tokens, impl=impl, efficiency=merged_efficiency(gpu, eff), gpus_per_node=node
        )
    if pricing is not None:
        rate = hourly_rate(gpu, pricing)
    return Evaluation(
        model=model,
        gpu=gpu,
        layout=layout,
        gpus_per_node=node,
        seq=seq,
        tokens=tokens,
        params=count_params(model),
        flops=flops,
        memory=memory,
        time=time,
        rate=rate,
        problems=layout_problems(model, layout, node_size=node, seq=seq, framework=impl.framework),
    )
