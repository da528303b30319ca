"""Evaluate one plan: a model, a layout and a GPU → parameters, FLOPs, memory, time and cost.

This is the independent check of every constraint: `planner estimate` reports it, and every plan the
solver returns is re-evaluated here and must pass.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from planner.model.flops import StepFlops, full_recompute_share, step_flops
from planner.model.memory import FitsOnGpu, MemoryBreakdown, training_memory
from planner.model.params import ParamCount, count_params
from planner.model.perf import SECONDS_PER_DAY, TimeEstimate, fixed_utilisation_time, gpu_energy_kwh, training_time
from planner.model.presets import Knobs, resolve
from planner.model.reliability import ExpectedTime, checkpoint_bytes, expected_time
from planner.model.stack import stack_of
from planner.model.uncertainty import (
    attention_variants,
    error_band,
    error_quantile,
    extrapolation,
    memory_margin,
    peak_range,
    regime_of,
)
from planner.pricing import HourlyRate, hourly_rate
from planner.scenario import EfficiencyOverride, Pricing
from planner.schema import Efficiency, Framework, GpuSku, Implementation, Layout, ModelSpec, Overheads
from planner.workloads.expected import IDEAL, Basis, planned_seconds
from planner.workloads.training.legality import layout_problems


@dataclass(frozen=True)
class Evaluation(FitsOnGpu):
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
    basis: Basis = field(default=IDEAL)  # failures and confidence the plan is judged with
    implementation: Implementation = field(default_factory=Implementation)  # the scenario's framework knobs
    overheads: Overheads = field(default_factory=Overheads)  # the scenario's memory overheads

    @property
    def framework(self) -> Framework:
        return self.implementation.framework

    # -- how sure: the step-time band of the plan's regime, and what lies outside the calibration --------

    @functools.cached_property
    def band(self) -> tuple[float, float]:
        """Relative step error (low, high): the 10th–90th percentile of the model's error in this plan's
        regime (planner.model.uncertainty.error_band), widened to include 0 so the range holds the estimate."""
        b = error_band(regime_of(self.layout, self.gpu, self.framework))
        return min(b.low, 0.0), max(b.high, 0.0)

    @property
    def step_seconds_range(self) -> tuple[float, float]:
        lo, hi = self.band
        return self.time.step_seconds * (1 + lo), self.time.step_seconds * (1 + hi)

    @property
    def days_range(self) -> tuple[float, float]:
        """Expected days (with failures) at the low and high ends of the step-time band."""
        lo, hi = self.band
        return self.expected.days * (1 + lo), self.expected.days * (1 + hi)

    @functools.cached_property
    def default_peak(self) -> int:
        """The peak this plan has under planner's default overheads: what the held-out runs' measured peaks were
        compared with, so headroom a scenario adds (`overheads.fragmentation`, `reserve_bytes`) counts as margin."""
        if self.overheads == Overheads():
            return self.memory.total
        return training_memory(self.model, self.layout, self.seq, self.implementation, Overheads()).total

    @property
    def memory_range(self) -> tuple[float, float]:
        """[low, high] bytes of the peak the GPU will hold: the default-overheads peak over the memory model's error
        on the held-out runs with a measured peak, widened to hold the prediction (uncertainty.peak_range)."""
        return peak_range(self.default_peak, self.memory.total)

    @functools.cached_property
    def memory_margin(self) -> str | None:
        """`memory_margin`: why a plan predicted to fit may not (None when the high end of its range fits too)."""
        return memory_margin(self.default_peak, self.capacity_bytes, self.memory.total)

    @functools.cached_property
    def knobs(self) -> Knobs:
        """Every framework knob the memory and time models used: the scenario's choices over the framework's
        documented defaults, for this layout and GPU (planner.model.presets.resolve)."""
        return resolve(self.implementation, self.layout, self.gpu)

    @functools.cached_property
    def warnings(self) -> list[str]:
        """`extrapolated`: why the plan lies outside what the calibration runs measured (empty inside)."""
        return extrapolation(self.layout, self.gpu, self.framework, self.time.mfu, seq=self.seq,
                             moe=self.model.moe is not None, cp_exchange=self.knobs.cp_exchange,
                             attention=attention_variants(self.model), offload=self.knobs.activation_offload)

    @property
    def unsold_count(self) -> str | None:
        """Why the GPU count is not one the search offers (`gpu_count` warning): neither whole nodes, nor a divisor of
        a node, nor whole hosts of a rack-scale node (planner.workloads.grid.GpuCounts); None when it is."""
        from planner.workloads.grid import GpuCounts

        n, node, host = self.layout.gpus, self.gpus_per_node, self.gpu.host_gpus
        hosts = (host,) if host is not None and host < node else ()
        if GpuCounts(n, hosts=hosts).allowed(n, node):
            return None
        whole = f"whole nodes of {node:,}, a divisor of {node:,}" + (f" or whole hosts of {host}" if hosts else "")
        unit = hosts[0] if hosts else node  # what a provider rents by
        return (f"{n:,} × {self.gpu.name} is not a count the search offers ({whole}); the cost counts {n:,} GPUs, "
                f"a provider rents {-(-n // unit) * unit:,}")

    @property
    def beyond_offer(self) -> str | None:
        """Why the cost is not one the price's offer sells: more GPUs than it rents together (Price.max_gpus)."""
        r = self.rate
        if r is None or r.max_gpus is None or self.layout.gpus <= r.max_gpus:
            return None
        return (f"{r.label} rents at most {r.max_gpus:,} × {self.gpu.name} together; {self.layout.gpus:,} are costed "
                f"at its rate")

    # -- planned: expected with failures, at the planning quantile ------------------------------------

    @functools.cached_property
    def checkpoint_bytes(self) -> int:
        return checkpoint_bytes(self.model, self.layout, self.framework)

    @functools.cached_property
    def expected(self) -> ExpectedTime:
        """Ideal and expected wall-clock with failures, checkpoints and restarts (point estimate). The
        interval is not rounded to whole steps, so its days are exactly what `planned_seconds` plans with."""
        return expected_time(self.time.days * SECONDS_PER_DAY, self.layout.gpus, self.checkpoint_bytes,
                             self.basis.reliability or "none")

    @functools.cached_property
    def confidence_factor(self) -> float:
        """1 + the planning quantile of the step error in this regime; 1 at the point estimate."""
        c = self.basis.confidence
        return 1.0 if c is None else 1.0 + error_quantile(regime_of(self.layout, self.gpu, self.framework), c)

    @functools.cached_property
    def planned_seconds(self) -> float:
        """The wall-clock deadline, budget and objective are judged on (planner.workloads.expected)."""
        steps = self.tokens / self.flops.tokens
        return float(planned_seconds(self.time.step_seconds, self.layout.gpus, steps, self.checkpoint_bytes,
                                     self.basis, self.confidence_factor))

    @property
    def planned_days(self) -> float:
        return self.planned_seconds / SECONDS_PER_DAY

    @property
    def planned_cost_usd(self) -> float | None:
        """None without a price, or when the job never ends (checkpoints outlast the time between them)."""
        if self.rate is None or not math.isfinite(self.planned_seconds):
            return None
        return self.planned_seconds * self.gpus / 3600 * self.rate.usd_per_gpu_hour

    @property
    def gpus(self) -> int:
        return self.layout.gpus

    @property
    def nodes(self) -> int:
        return math.ceil(self.layout.gpus / self.gpus_per_node)

    @property
    def gpu_hours(self) -> float:
        """Expected GPU-hours with failures (the ideal ones with `reliability: none`): what the cost follows."""
        return self.expected.gpu_hours

    @property
    def energy_kwh(self) -> float:
        """The GPUs at TDP over the expected GPU-hours (what the cost follows; the ideal run's is `time.energy_kwh`):
        an upper bound, before PUE."""
        return gpu_energy_kwh(self.gpu_hours, self.gpu)

    @property
    def cost_usd(self) -> float | None:
        """None without a price, or when the job never ends (its expected GPU-hours are infinite)."""
        if self.rate is None or not math.isfinite(self.gpu_hours):
            return None
        return self.gpu_hours * self.rate.usd_per_gpu_hour

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
    basis: Basis = IDEAL,
) -> Evaluation:
    """Everything planner knows about one plan. Legality problems are reported, not raised.

    The cost comes from `rate`, or from the catalog price `pricing` selects; without either, no cost. `basis`
    says whether failures count (default: the ideal time) and at which step-error quantile deadlines hold."""
    if pricing is not None and rate is not None:
        raise ValueError("give pricing or rate, not both")
    impl = implementation or Implementation()
    node = gpus_per_node or gpu.node_size
    eff = efficiency or EfficiencyOverride()
    modules = stack_of(impl, layout.precision, merged_efficiency(gpu, eff), gpu).recompute_modules
    flops = step_flops(model, seq, layout.global_batch * seq, layout.recompute,
                       full_share=full_recompute_share(layout, model.layers), modules=modules)
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
        problems=layout_problems(model, layout, node_size=node, seq=seq, impl=impl),
        basis=basis,
        implementation=impl,
        overheads=overheads or Overheads(),
    )
