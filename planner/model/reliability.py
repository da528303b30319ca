"""Goodput under failures: the expected wall-clock of a training job that fails, checkpoints and restarts.

A synchronous job on N GPUs stops whenever any of them fails. Failures arrive as a Poisson process at
rate λ = N / gpus_per_node · r_f (r_f per node-day; Kokolis et al. 2024, arXiv 2410.21680, §IV: job MTTF
= 1 / (N_nodes · r_f)), so the job's mean time between failures is M = 1/λ. The job saves a checkpoint
after every τ seconds of training; a save stalls training for δ (the whole write when synchronous, only
the device-to-host copy when asynchronous) and becomes durable w after it ends (asynchronous: the
background write; synchronous: 0). A failure rolls the job back to the last durable checkpoint and costs
a restart R (detection, rescheduling, initialisation, checkpoint load) during which a failure restarts
the restart. The expected wall-clock for T seconds of ideal training is then exactly (docs/goodput.md)

    E[wall] = T/τ · M · e^{(R + w)/M} · (e^{(τ + δ)/M} − 1)

Daly's complete model (Daly 2006, FGCS 22(3)) with the asynchronous write's exposure w added to
the restart: from the instant the previous checkpoint became durable, the job needs τ + δ seconds without
a failure to make the next one durable, and after a failure R + w without one to be back there. Its
first-order form is T·(1 + δ/τ + (R + w + (τ + δ)/2)/M): per failure, half an interval and the in-progress
save are lost, plus the restart. Planned stops (a save and a restart without detection or lost work) and
maintenance windows take a fixed fraction f of the wall-clock: E[total] = E[wall] / (1 − f).

The checkpoint interval defaults to Daly's higher-order optimum of that formula (Daly 2006; Young 1974 is
its first term), never shorter than the asynchronous write it has to wait for, and rounded up to
whole training steps when the step time is known.

Everything is array-ready (GPU counts, ideal seconds, checkpoint bytes as numpy arrays) so the solver can
turn a whole candidate table into expected seconds in one call.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from planner.model.memory import Recipe, state_bytes_per_param
from planner.model.params import count_params
from planner.model.perf import SECONDS_PER_DAY, TimeEstimate
from planner.schema import FP32_PARAM_FRAMEWORKS, Framework, Layout, ModelSpec, Reliability, StorageBandwidth

GB = 1e9  # storage and PCIe bandwidths are quoted in decimal GB/s
# A checkpoint of an FP32_PARAM_FRAMEWORKS job holds its fp32 parameters as the master (torchtitan
# components/checkpoint.py saves the model and optimizer state dicts). The others save 16-bit weights next to the
# optimizer's master copy and moments as it keeps them (megatron/training/checkpointing.py generate_state_dict with
# the distributed optimizer's sharded state; DeepSpeed's mp_rank_*_model_states.pt and zero_pp_rank_*_optim_states.pt).
# The spread of published fleets' failure rates per 1,000 node-days (Kokolis et al. 2024, arXiv 2410.21680:
# RSC-2 2.34, RSC-1 6.50): every expected time also comes as the range those rates give.
PUBLISHED_RATE_RANGE = (2.34, 6.50)
# A job that never finishes: expected seconds are clipped here (a century) so they stay integers.
MAX_SECONDS = 100 * 365 * SECONDS_PER_DAY

ReliabilityChoice = Reliability | Literal["none"] | None


# --------------------------------------------------------------------------------------------
# Inputs: failure rate, checkpoint size, save, load and restart times
# --------------------------------------------------------------------------------------------


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> np.ndarray:
    """A user-facing number as an array: finite and positive (or zero), else a ValueError naming it."""
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if np.any(a < 0) or (not allow_zero and np.any(a == 0)):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    return a


def mtbf_seconds(gpus: Any, reliability: Reliability) -> Any:
    """Mean time between unexpected failures of a job on `gpus` GPUs, seconds (Kokolis et al. 2024,
    arXiv 2410.21680, §IV: MTTF = 1 / (N_nodes · r_f)); a fraction of a node fails pro rata."""
    nodes = _check_positive("gpus", gpus) / reliability.gpus_per_node
    return SECONDS_PER_DAY / (nodes * reliability.failures_per_1000_node_days / 1000)


def expected_interruptions(gpus: Any, days: Any, reliability: Reliability | None = None) -> Any:
    """Unexpected interruptions of a job on `gpus` GPUs over `days` of wall-clock (Poisson mean)."""
    reliability = reliability or Reliability()
    return _check_positive("days", days, allow_zero=True) * SECONDS_PER_DAY / mtbf_seconds(gpus, reliability)


def checkpoint_bytes_per_param(optimizer: str = "adamw", framework: Framework = "megatron-core",
                               master_weights: str = "fp32", moment_dtype: str = "fp32") -> float:
    """Bytes per parameter a training checkpoint holds: the optimizer's master copy and moments as it keeps them
    (Megatron's distributed optimizer saves a bf16 model's int16 remainders and the moments in their dtype,
    distrib_optimizer.py sharded_state_dict), plus the 16-bit model weights where those are a separate copy.
    Gradients, fp8 weight caches and activations are not saved, and an offloaded optimizer is saved all the same,
    so the recipe's precision and offload do not matter. Adam: 14 B (Megatron-Core, DeepSpeed), 12 B (FSDP,
    torchtitan)."""
    recipe = Recipe(optimizer=optimizer, master_weights=master_weights, moment_dtype=moment_dtype)
    weights, _, optimizer_state = state_bytes_per_param(recipe, 0, 1)
    return float(optimizer_state) + (0.0 if framework in FP32_PARAM_FRAMEWORKS else float(weights))


class OptimizerState(Protocol):
    """What sizes a checkpoint: a Layout or a memory Recipe."""

    @property
    def optimizer(self) -> str: ...
    @property
    def master_weights(self) -> str: ...
    @property
    def moment_dtype(self) -> str: ...


def checkpoint_bytes(m: ModelSpec, state: OptimizerState, framework: Framework = "megatron-core") -> int:
    """Bytes of one checkpoint of the whole model (every expert, one copy of replicated state): what a
    distributed checkpoint writes however the layout shards it."""
    per_param = checkpoint_bytes_per_param(state.optimizer, framework, state.master_weights, state.moment_dtype)
    return math.ceil(count_params(m).total * per_param)


def storage_seconds(nbytes: Any, gpus: Any, bandwidth: StorageBandwidth, gpus_per_node: int) -> Any:
    """Seconds to move `nbytes` between the job's nodes and checkpoint storage: every node streams its share
    at the per-node rate, together capped by the file system's aggregate rate."""
    nodes = np.ceil(_check_positive("gpus", gpus) / gpus_per_node)
    rate = nodes * bandwidth.per_node_gb_per_s * GB
    if bandwidth.aggregate_gb_per_s is not None:
        rate = np.minimum(rate, bandwidth.aggregate_gb_per_s * GB)
    return _check_positive("checkpoint_bytes", nbytes) / rate


@dataclass(frozen=True)
class SaveCosts:
    """What one checkpoint costs, seconds (scalars or arrays)."""

    blocking: Any  # training stalls per save: the write (sync) or the device-to-host copy (async)
    exposure: Any  # after the stall, until the checkpoint is durable: the background write (async), else 0
    load: Any  # reading it back on a restart


def save_costs(nbytes: Any, gpus: Any, reliability: Reliability) -> SaveCosts:
    """Blocking, exposure and load times of a checkpoint of `nbytes` saved by `gpus` GPUs. An asynchronous
    save copies each GPU's share of the state to pinned host memory (Megatron-Core's fully parallel save
    spreads replicated shards over the data-parallel ranks: dist_checkpointing/strategies/fully_parallel.py;
    PyTorch DCP async_save stages the same way), then a background process writes it."""
    ck = reliability.checkpoint
    write = storage_seconds(nbytes, gpus, ck.write, reliability.gpus_per_node)
    load = storage_seconds(nbytes, gpus, ck.read, reliability.gpus_per_node)
    if ck.save == "sync":
        return SaveCosts(blocking=write, exposure=np.zeros_like(write), load=load)
    copy = np.asarray(nbytes, dtype=np.float64) / np.asarray(gpus, dtype=np.float64) / (ck.host_copy_gb_per_s * GB)
    return SaveCosts(blocking=copy, exposure=write, load=load)


def restart_seconds(load: Any, reliability: Reliability, planned: bool = False) -> Any:
    """One restart: detection, rescheduling, initialisation and the checkpoint load, or the measured total.
    A planned stop skips detection (its total, when given, is taken whole)."""
    r = reliability.restart
    if r.total_minutes is not None:
        return np.full_like(np.asarray(load, dtype=np.float64), r.total_minutes * 60)
    detection = 0.0 if planned else r.detection_minutes
    return (detection + r.rescheduling_minutes + r.initialisation_minutes) * 60 + np.asarray(load)


# --------------------------------------------------------------------------------------------
# Checkpoint interval
# --------------------------------------------------------------------------------------------


def young_interval(blocking: Any, mtbf: Any) -> Any:
    """First-order optimal compute time between checkpoints, √(2δM) (Young 1974, CACM 17(9))."""
    return np.sqrt(2 * np.asarray(blocking) * mtbf)


def daly_interval(blocking: Any, mtbf: Any) -> Any:
    """Higher-order optimum of the expected wall-clock above: √(2δM)·[1 + ⅓√(δ/2M) + ⅑(δ/2M)] − δ for δ < 2M,
    else M (Daly 2006, FGCS 22(3)). Within 0.1 % of the exact optimum for δ ≤ M/6 (Young's
    first term alone: 22 % short there)."""
    d, m = np.asarray(blocking, dtype=np.float64), np.asarray(mtbf, dtype=np.float64)
    x = d / (2 * m)
    return np.where(d < 2 * m, np.sqrt(2 * d * m) * (1 + np.sqrt(x) / 3 + x / 9) - d, m)


def checkpoint_interval(costs: SaveCosts, mtbf: Any, reliability: Reliability,
                        step_seconds: float | None = None) -> Any:
    """Training seconds between checkpoints: the scenario's minutes, or Daly's optimum for the blocking cost,
    at least the asynchronous write (a save cannot start before the previous one is written), and a whole
    number of training steps when the step time is known (frameworks save every k iterations)."""
    minutes = reliability.checkpoint.interval_minutes
    if minutes == "auto":
        tau = np.maximum(daly_interval(costs.blocking, mtbf), costs.exposure)
    else:
        tau = np.broadcast_to(np.float64(minutes * 60), np.shape(mtbf))
    if step_seconds is not None:
        step = float(_check_positive("step_seconds", step_seconds))
        tau = np.maximum(1, np.ceil(tau / step - 1e-9)) * step
    if np.any(tau <= 0):
        raise ValueError("the checkpoint interval is zero: a checkpoint must take some time to save")
    return tau


# --------------------------------------------------------------------------------------------
# Expected wall-clock: the one formula
# --------------------------------------------------------------------------------------------


def failure_stretch(interval: Any, blocking: Any, exposure: Any, restart: Any, mtbf: Any) -> Any:
    """Expected wall-clock per second of ideal training under Poisson failures (≥ 1; inf if the job cannot
    finish): τ⁻¹ · M · e^{(R + w)/M} · (e^{(τ + δ)/M} − 1), the complete model of Daly 2006 (FGCS 22(3))
    with the asynchronous write's exposure w. When the write outlasts the interval the next save waits
    for it, so the stall becomes δ + w − τ."""
    tau = np.asarray(interval, dtype=np.float64)
    stall = np.asarray(blocking) + np.maximum(0.0, np.asarray(exposure) - tau)
    m = np.asarray(mtbf, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = m / tau * np.exp((np.asarray(restart) + exposure) / m) * np.expm1((tau + stall) / m)
    return np.where(np.isnan(out), np.inf, out)


def planned_stops_per_day(gpus: Any, reliability: Reliability) -> Any:
    """Planned stops of a job on `gpus` GPUs per day of wall-clock, pro rata to its nodes like failures."""
    return _check_positive("gpus", gpus) / reliability.gpus_per_node * reliability.planned_per_1000_node_days / 1000


def _planned_fraction(gpus: Any, costs: SaveCosts, reliability: Reliability) -> Any:
    """Fraction of the wall-clock lost to planned stops (each a durable save and a restart without detection,
    Llama 3 §3.3.4) and to maintenance windows."""
    stop = costs.blocking + costs.exposure + restart_seconds(costs.load, reliability, planned=True)
    return planned_stops_per_day(gpus, reliability) * stop / SECONDS_PER_DAY + reliability.maintenance_fraction


def _evaluate(ideal_seconds: Any, gpus: Any, nbytes: Any, reliability: Reliability,
              step_seconds: float | None = None) -> dict[str, Any]:
    """Every quantity of the model for arrays of ideal seconds, GPU counts and checkpoint bytes."""
    ideal = _check_positive("ideal_seconds", ideal_seconds, allow_zero=True)
    mtbf = mtbf_seconds(gpus, reliability)
    costs = save_costs(nbytes, gpus, reliability)
    restart = restart_seconds(costs.load, reliability)
    tau = checkpoint_interval(costs, mtbf, reliability, step_seconds)
    failing = failure_stretch(tau, costs.blocking, costs.exposure, restart, mtbf)
    # planned stops that take longer than the time between them leave no time to train: the job never ends
    planned = np.minimum(_planned_fraction(gpus, costs, reliability), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stretch = np.where(planned < 1, failing / (1 - planned), np.inf)
        running = np.where(ideal > 0, ideal * failing, 0.0)  # wall-clock while the job holds its nodes
        total = np.where(ideal > 0, ideal * stretch, 0.0)
    failures = running / mtbf
    stall = costs.blocking + np.maximum(0.0, costs.exposure - tau)
    with np.errstate(invalid="ignore"):
        checkpointing = ideal * stall / tau
        restarting = failures * mtbf * -np.expm1(-restart / mtbf)  # a restart cut short by a failure ends early
    # a job that never ends (total inf) loses without end to planned stops, and to maintenance only if it has any
    share = reliability.maintenance_fraction
    with np.errstate(invalid="ignore"):
        planned_lost = np.where(np.isinf(total), np.inf, total * (planned - share))
    maintenance = total * share if share else np.zeros_like(total)
    return {
        "ideal": ideal, "total": total, "running": running, "stretch": stretch, "mtbf": mtbf,
        "interval": tau, "costs": costs, "restart": restart, "failures": failures,
        "planned_stops": total * planned_stops_per_day(gpus, reliability) / SECONDS_PER_DAY,
        "lost": {
            "checkpoint": checkpointing,
            "restart": restarting,
            "rework": running - ideal - checkpointing - restarting,  # work and saves a failure threw away
            "planned": planned_lost,
            "maintenance": maintenance,
        },
    }


# --------------------------------------------------------------------------------------------
# Public results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedTime:
    """Ideal and expected wall-clock of one plan, and where the difference goes."""

    days_ideal: float
    days: float  # expected, with failures, checkpoints, restarts and maintenance
    goodput: float  # days_ideal / days
    expected_interruptions: float  # unexpected failures over the expected wall-clock
    planned_interruptions: float
    checkpoint_interval_minutes: float | None  # training time between checkpoints; None with reliability none
    checkpoint_bytes: int
    save_seconds: float  # training stall per checkpoint
    restart_minutes: float  # one restart after a failure, load included
    mtbf_hours: float | None
    gpu_hours: float  # expected: what the cost follows
    lost_days: dict[str, float]  # checkpoint, restart, rework, planned, maintenance: sums to days - days_ideal
    days_range: tuple[float, float]  # expected days from the lowest to the highest published fleet failure rate

    def as_json(self) -> dict[str, dict[str, Any]]:
        """The `time` and `reliability` members of a plan's JSON (issue 13's field names)."""
        return goodput_json(self)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def goodput_json(result: ExpectedTime) -> dict[str, dict[str, Any]]:
    """{"time": {days_ideal, days, goodput}, "reliability": {expected_interruptions, checkpoint_interval_minutes,
    checkpoint_bytes, ...}}: merge "time" into the estimate's time object (replacing its days) and add
    "reliability" beside it. A job that cannot finish has days null and goodput 0."""
    r = result
    return {
        "time": {"days_ideal": r.days_ideal, "days": _finite(r.days), "goodput": r.goodput},
        "reliability": {
            "expected_interruptions": _finite(r.expected_interruptions),
            "planned_interruptions": _finite(r.planned_interruptions),
            "checkpoint_interval_minutes": r.checkpoint_interval_minutes,
            "checkpoint_bytes": r.checkpoint_bytes,
            "save_seconds": r.save_seconds,
            "restart_minutes": r.restart_minutes,
            "mtbf_hours": r.mtbf_hours,
            "lost_days": {k: _finite(v) for k, v in r.lost_days.items()},
            "days_range": [_finite(d) for d in r.days_range],
        },
    }


def resolve(reliability: ReliabilityChoice) -> Reliability | None:
    """A scenario's `reliability` value as the model takes it: None for `none` (ideal time)."""
    return reliability if isinstance(reliability, Reliability) else None


def expected_time(ideal_seconds: float, gpus: int, nbytes: int, reliability: ReliabilityChoice,
                  step_seconds: float | None = None) -> ExpectedTime:
    """Expected wall-clock of a job that needs `ideal_seconds` of failure-free training on `gpus` GPUs and
    saves `nbytes` per checkpoint. `reliability` none gives the ideal time back."""
    rel = resolve(reliability)
    nbytes = int(_check_positive("checkpoint_bytes", nbytes))
    if rel is None:
        ideal = float(_check_positive("ideal_seconds", ideal_seconds, allow_zero=True))
        _check_positive("gpus", gpus)
        zero = {k: 0.0 for k in ("checkpoint", "restart", "rework", "planned", "maintenance")}
        days = ideal / SECONDS_PER_DAY
        return ExpectedTime(days, days, 1.0, 0.0, 0.0, None, nbytes, 0.0, 0.0, None, ideal * gpus / 3600, zero,
                            (days, days))
    e = _evaluate(ideal_seconds, gpus, nbytes, rel, step_seconds)
    total, ideal = float(e["total"]), float(e["ideal"])
    low, high = min(rel.failures_per_1000_node_days, PUBLISHED_RATE_RANGE[0]), max(
        rel.failures_per_1000_node_days, PUBLISHED_RATE_RANGE[1])
    days_range = tuple(
        float(_evaluate(ideal, gpus, nbytes, rel.model_copy(update={"failures_per_1000_node_days": rate}),
                        step_seconds)["total"]) / SECONDS_PER_DAY
        for rate in (low, high)
    )
    return ExpectedTime(
        days_ideal=ideal / SECONDS_PER_DAY,
        days=total / SECONDS_PER_DAY,
        goodput=ideal / total if total > 0 and math.isfinite(total) else (1.0 if total == 0 else 0.0),
        expected_interruptions=float(e["failures"]),
        planned_interruptions=float(e["planned_stops"]),
        checkpoint_interval_minutes=float(e["interval"]) / 60,
        checkpoint_bytes=nbytes,
        save_seconds=float(e["costs"].blocking + np.maximum(0.0, e["costs"].exposure - e["interval"])),
        restart_minutes=float(e["restart"]) / 60,
        mtbf_hours=float(e["mtbf"]) / 3600,
        gpu_hours=total * gpus / 3600,
        lost_days={k: float(v) / SECONDS_PER_DAY if not np.isnan(v) else math.inf for k, v in e["lost"].items()},
        days_range=(days_range[0], days_range[1]),
    )


def expected_time_for(estimate: TimeEstimate, m: ModelSpec, layout: Layout, reliability: ReliabilityChoice,
                      framework: Framework = "megatron-core") -> ExpectedTime:
    """expected_time for a time-model estimate of one layout: its days, GPUs, step time and checkpoint size."""
    return expected_time(estimate.days * SECONDS_PER_DAY, layout.gpus, checkpoint_bytes(m, layout, framework),
                         reliability, estimate.step_seconds)


# --------------------------------------------------------------------------------------------
# For the solver and the plots
# --------------------------------------------------------------------------------------------


def stretch_factor(gpus: Any, nbytes: Any, reliability: ReliabilityChoice) -> Any:
    """Expected wall-clock per ideal second (≥ 1, inf when the job cannot finish) for arrays of GPU counts
    and checkpoint sizes. It does not depend on the ideal time, so expected time and cost stay linear in it."""
    rel = resolve(reliability)
    if rel is None:
        return np.ones(np.broadcast(np.asarray(gpus), np.asarray(nbytes)).shape)
    if np.ndim(gpus) == 0 and np.ndim(nbytes) == 0:  # the scalar re-check asks the same few counts many times
        return _scalar_stretch(float(gpus), float(nbytes), rel)
    return _evaluate(0.0, gpus, nbytes, rel)["stretch"]


@functools.lru_cache(maxsize=4096)
def _scalar_stretch(gpus: float, nbytes: float, reliability: Reliability) -> float:
    return float(_evaluate(0.0, gpus, nbytes, reliability)["stretch"])


def expected_seconds(ideal_seconds: Any, gpus: Any, nbytes: Any, reliability: ReliabilityChoice) -> Any:
    """Expected wall-clock in whole seconds, rounded up, for arrays of ideal seconds (floats, e.g. the solver's
    step µs × steps / 1e6), GPU counts and checkpoint sizes. Non-decreasing in the ideal seconds (linear before
    rounding), so the fastest layout per (SKU, GPU count) stays the best; a job that cannot finish is clipped
    at MAX_SECONDS (a century) to stay an integer, which no deadline admits."""
    ideal = _check_positive("ideal_seconds", ideal_seconds, allow_zero=True)
    seconds = ideal * stretch_factor(gpus, nbytes, reliability)
    return np.ceil(np.minimum(seconds, MAX_SECONDS)).astype(np.int64)


def goodput_curve(ideal_gpu_hours: float, gpus: Any, nbytes: int,
                  reliability: ReliabilityChoice) -> pd.DataFrame:
    """The cost of scale: for a job of `ideal_gpu_hours` (perfect scaling: ideal days = GPU-hours / GPUs / 24),
    ideal and expected days, goodput, interruptions and the checkpoint interval at each GPU count."""
    n = np.atleast_1d(_check_positive("gpus", gpus))
    ideal = _check_positive("ideal_gpu_hours", ideal_gpu_hours) * 3600 / n
    rel = resolve(reliability)
    if rel is None:
        total, failures, interval = ideal, np.zeros_like(n), np.full_like(n, np.nan)
    else:
        e = _evaluate(ideal, n, nbytes, rel)
        total, failures, interval = e["total"], e["failures"], e["interval"] / 60
    return pd.DataFrame({
        "gpus": n.astype(np.int64),
        "days_ideal": ideal / SECONDS_PER_DAY,
        "days": total / SECONDS_PER_DAY,
        "goodput": np.where(np.isfinite(total), ideal / total, 0.0),
        "expected_interruptions": failures,
        "checkpoint_interval_minutes": interval,
        "gpu_hours": total * n / 3600,
    })
