"""Serving capacity search: the cheapest fleet of replicas — one GPU SKU or a mix — that serves a traffic level
within its latency SLOs. The public function behind `planner serve SCENARIO.yaml`.

1. Candidates. Every (SKU, TP, batch limit) whose weights and one request fit is a replica type. For each
   request-size class its capacity is the highest Poisson rate at which the simulated replica
   (planner.workloads.serving.simulation) still meets the SLO percentiles: a bisection bracketed by the analytic bound,
   with common random numbers (the same lengths and unit-rate arrival sequence at every rate and candidate).
2. Selection (Mélange, Griggs et al. 2024, arXiv 2404.14527: a cost-aware bin packing). Each class's traffic is
   cut into equal slices; CP-SAT assigns slices to replica types and chooses integer replica counts so that every
   type's load — the sum over its slices of slice rate / capacity for that class — fits its replicas, at the
   lowest $/hour, within inventory caps and (optionally) a single SKU. Ties go to fewer GPUs, then to the type
   with more capacity. An exhaustive enumeration of the same integer data is the reference (tests).
3. Plan. Every pool is simulated again at its assigned mix and per-replica rate: predicted percentiles, SLO check,
   headroom (capacity over load − 1), and $ per million input and output tokens (the pool's cost split by the
   GPU time its prefill and decode tokens take).

The capacities do not depend on the total rate, so `pareto` re-solves only the selection for each rate.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import InfeasibleError, InputError, expect
from planner.model.serving import EngineConfig, ServingModel
from planner.pricing import hourly_rate
from planner.schema import GpuSku, ModelSpec
from planner.workloads.serving.engines import resolve_engine
from planner.workloads.serving.evaluation import max_concurrency, replica_model
from planner.workloads.serving.scenario import ServingScenario, TrafficClass, load_serving_scenario
from planner.workloads.serving.simulation import SimResult, StepTable, analytic_bounds, simulate
from planner.workloads.serving.uncertainty import serving_note

SCALE = 1_000_000  # load units per replica
COST_UNITS = 10_000  # 1e-4 $/hour per unit
DEFAULT_BATCH_LIMITS = (16, 32, 64, 128, 256, 512)
RATE_TOLERANCE = 0.04  # capacities are found to within 4 % (below the model's own error)
STEP_FACTOR = 1.3
MAX_EXPANSIONS = 8
MIN_RATE_SHARE = 1e-3  # below this share of the analytic bound a class counts as unservable
STEADY_TURNOVERS = 4  # a simulation holds at least this many times the requests the replica holds at once
SATURATION = 1.02  # a larger batch limit that adds less than 2 % capacity ends the limits of that (SKU, TP)


@dataclass(frozen=True)
class Candidate:
    """A replica type and its capacity (requests/s within the SLOs) for each traffic class."""

    sku: str
    tp: int
    batch_limit: int
    gpus: int
    usd_per_hour: float  # the whole replica
    price_label: str
    rates: tuple[float, ...]  # per class, requests/s per replica; 0 = cannot serve the class within the SLOs
    model: ServingModel = field(compare=False, repr=False)
    engine: EngineConfig = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.sku} tp{self.tp} b{self.batch_limit}"


@dataclass(frozen=True)
class Selection:
    """Replicas per candidate and slices of each class per candidate (the solver's integer answer)."""

    replicas: tuple[int, ...]
    slices: tuple[tuple[int, ...], ...]  # [candidate][class]
    cost_units: int
    gpus: int


@dataclass(frozen=True)
class PoolPlan:
    """Replicas of one type and what they serve, verified by simulation at the assigned load."""

    candidate: Candidate
    replicas: int
    qps: tuple[float, ...]  # per class, whole pool
    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    slo_met: bool
    headroom: float  # capacity over assigned load − 1
    prefill_share: float  # GPU time share of prefill tokens (splits cost between input and output)
    ttft_slo_ms: float  # TTFT at the SLO's percentile
    tpot_slo_ms: float

    @property
    def gpus(self) -> int:
        return self.replicas * self.candidate.gpus

    @property
    def usd_per_hour(self) -> float:
        return self.replicas * self.candidate.usd_per_hour

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        c = self.candidate
        return {
            "sku": c.sku, "tp": c.tp, "batch_limit": c.batch_limit, "replicas": self.replicas, "gpus": self.gpus,
            "usd_per_hour": self.usd_per_hour, "price": c.price_label,
            "qps": {n: q for n, q in zip(class_names, self.qps, strict=True) if q > 0},
            "capacity_qps_per_replica": {n: r for n, r in zip(class_names, c.rates, strict=True) if r > 0},
            "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "slo_met": self.slo_met, "headroom": self.headroom,
        }


@dataclass(frozen=True)
class ServingPlan:
    """The chosen fleet: pools, $/hour, $ per million tokens."""

    pools: tuple[PoolPlan, ...]
    qps: float
    usd_per_hour: float
    usd_per_million_input_tokens: float
    usd_per_million_output_tokens: float
    usd_per_million_tokens: float  # blended: all tokens
    status: str  # optimal | feasible
    class_names: tuple[str, ...]

    @property
    def gpus(self) -> int:
        return sum(p.gpus for p in self.pools)

    @property
    def skus(self) -> tuple[str, ...]:
        return tuple(sorted({p.candidate.sku for p in self.pools}))

    @property
    def slo_met(self) -> bool:
        return all(p.slo_met for p in self.pools)

    def to_dict(self) -> dict[str, Any]:
        return {
            "qps": self.qps, "status": self.status, "usd_per_hour": self.usd_per_hour, "gpus": self.gpus,
            "usd_per_million_input_tokens": self.usd_per_million_input_tokens,
            "usd_per_million_output_tokens": self.usd_per_million_output_tokens,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "slo_met": self.slo_met,
            "pools": [p.to_dict(self.class_names) for p in self.pools],
        }


@dataclass(frozen=True)
class ParetoPoint:
    qps: float
    usd_per_hour: float | None  # None: infeasible at this rate (inventory)
    gpus: int | None
    skus: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"qps": self.qps, "usd_per_hour": self.usd_per_hour, "gpus": self.gpus, "skus": list(self.skus)}


@dataclass
class ServingSolution:
    """What `planner serve SCENARIO.yaml` prints: the plan, the best single-SKU plan, the candidates and the
    cost-against-QPS trace."""

    scenario: ServingScenario
    plan: ServingPlan
    best_single_sku: ServingPlan | None
    candidates: list[Candidate]
    pareto: list[ParetoPoint]
    seconds: float
    simulations: int
    extrapolated: str | None = None  # how far the model's regime is from the published runs (serving/uncertainty.py)

    def candidates_table(self) -> list[dict[str, Any]]:
        names = self.plan.class_names
        return [
            {"sku": c.sku, "tp": c.tp, "batch_limit": c.batch_limit, "gpus": c.gpus,
             "usd_per_hour": c.usd_per_hour,
             **{f"qps_{n}": r for n, r in zip(names, c.rates, strict=True)},
             **{f"usd_per_qps_{n}": (c.usd_per_hour / r if r > 0 else None)
                for n, r in zip(names, c.rates, strict=True)}}
            for c in self.candidates
        ]

    def to_dict(self) -> dict[str, Any]:
        single = self.best_single_sku
        return {
            "scenario": self.scenario.name,
            "model": self.scenario.model if isinstance(self.scenario.model, str) else self.scenario.model.name,
            "plan": self.plan.to_dict(),
            "best_single_sku": single.to_dict() if single else None,
            "mix_saving": (1 - self.plan.usd_per_hour / single.usd_per_hour) if single else None,
            "pareto": [p.to_dict() for p in self.pareto],
            "candidates": self.candidates_table(),
            "search": {"seconds": self.seconds, "simulations": self.simulations},
        }


# --------------------------------------------------------------------------------------------
# 1. Candidates
# --------------------------------------------------------------------------------------------


@dataclass
class _Workload:
    """One class's sampled requests and unit-rate arrival sequence (common random numbers)."""

    cls: TrafficClass
    inputs: np.ndarray
    outputs: np.ndarray
    unit_arrivals: np.ndarray  # a rate-1 Poisson process; divided by the rate for any rate


def _sample_size(s: ServingScenario) -> int:
    """Requests sampled per class: enough for the largest batch limit's steady state."""
    sv = s.serving
    limits = sv.search.batch_limits or DEFAULT_BATCH_LIMITS
    return max(sv.search.requests, STEADY_TURNOVERS * max(limits))


def _workloads(classes: Sequence[TrafficClass], n: int, seed: int) -> list[_Workload]:
    out = []
    for i, c in enumerate(classes):
        rng = np.random.default_rng([seed, i])
        out.append(_Workload(c, c.input.sample(n, rng), c.output.sample(n, rng),
                             _unit_rate(np.cumsum(rng.exponential(1.0, size=n)))))
    return out


def _unit_rate(arrivals: np.ndarray) -> np.ndarray:
    """Arrival times rescaled so that the sample's own rate is exactly 1 (so `arrivals / q` offers exactly q). A
    few hundred Poisson arrivals run 5-15 % above or below their mean rate, and with common random numbers that
    error is the same at every rate: a slow sample overstated every capacity, and one more than 10 % slow failed
    the keep-up check at every rate (no capacity at all)."""
    return arrivals * (len(arrivals) / arrivals[-1])


class _Counter:
    def __init__(self) -> None:
        self.n = 0


def _meets(sim: SimResult, s: ServingScenario, offered: float) -> bool:
    """The SLO percentiles hold and the replica keeps up: requests finish, while requests still arrive, at the
    offered rate (a queue that grows through a finite run can still show passable percentiles)."""
    slo = s.serving.slo
    return sim.keeps_up(offered) and sim.meets(slo.ttft_ms / 1e3, slo.tpot_ms / 1e3, slo.percentile, slo.attainment)


def max_rate(
    sm: ServingModel, eng: EngineConfig, w: _Workload, s: ServingScenario, pool: int, table: StepTable,
    counter: _Counter | None = None, guess: float | None = None,
) -> float:
    """The highest request rate (req/s) one replica sustains within the SLOs for this class, to RATE_TOLERANCE:
    a first probe at `guess` (or 0.8 x the analytic throughput bound), a bracket grown or shrunk by STEP_FACTOR,
    then bisection on a log scale, every probe a simulation with the class's common random numbers."""
    slo = s.serving.slo
    hit = w.cls.prefix_hit_rate or 0.0
    mean_in, mean_out = float(np.mean(w.inputs)), float(np.mean(w.outputs))
    b = analytic_bounds(sm, eng, mean_in, mean_out, pool, prefix_hit=hit)
    if b.max_batch < 1 or b.ttft_min_s > slo.ttft_ms / 1e3 or b.tpot_min_s > slo.tpot_ms / 1e3:
        return 0.0

    n = min(len(w.inputs), max(s.serving.search.requests, STEADY_TURNOVERS * b.max_batch))
    unit = _unit_rate(w.unit_arrivals[:n])

    def ok(q: float) -> bool:
        if counter is not None:
            counter.n += 1
        sim = simulate(sm, eng, w.inputs[:n], w.outputs[:n], arrivals=unit / q, kv_tokens=pool,
                       prefix_hit=hit, table=table)
        return _meets(sim, s, q)

    bound = b.max_requests_per_s
    q0 = guess if guess else 0.8 * bound
    if ok(q0):
        lo, hi = q0, q0 * STEP_FACTOR
        for _ in range(MAX_EXPANSIONS):
            if not ok(hi):
                break
            lo, hi = hi, hi * STEP_FACTOR
        else:
            return lo
    else:
        lo, hi = q0 / STEP_FACTOR, q0
        while not ok(lo):
            lo, hi = lo / STEP_FACTOR, lo
            if lo < bound * MIN_RATE_SHARE:
                return 0.0
    while hi / lo > 1 + RATE_TOLERANCE:
        mid = math.sqrt(lo * hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _skus(s: ServingScenario) -> list[GpuSku]:
    from planner.catalog import load_gpus

    hw = s.hardware
    if hw.skus == "all":
        out = []
        for g in (*load_gpus().values(), *s.custom_gpus()):
            try:
                hourly_rate(g, s.pricing)
            except InputError:
                continue  # no price of this kind: not rentable under this pricing
            out.append(g)
        return out
    return [s.gpu(n, "hardware.skus") for n in hw.skus]


def serving_candidates(
    s: ServingScenario, m: ModelSpec | None = None, counter: _Counter | None = None
) -> tuple[list[Candidate], list[str]]:
    """Every replica type the scenario allows, with its per-class capacity; and notes on what was skipped."""
    from planner.scenario import resolve_model

    m = m or resolve_model(s.model)
    sv = s.serving
    classes = sv.traffic.resolved_classes()
    works = _workloads(classes, _sample_size(s), sv.search.seed)
    notes: list[str] = []
    out: list[Candidate] = []
    for g in _skus(s):
        rate = hourly_rate(g, s.pricing)
        node = s.hardware.gpus_per_node or g.node_size
        for tp in sorted(set(sv.search.tp)):
            if tp > node or m.heads % tp:
                continue
            try:
                sm = replica_model(m, g, tp=tp, weight_dtype=sv.weight_dtype, kv_dtype=sv.kv_dtype,
                                   seff=sv.efficiency)
            except InputError as e:
                notes.append(f"{g.name}: {e}")
                break
            base = resolve_engine(sv.engine, g)
            limits = sorted(set(sv.search.batch_limits or [b for b in DEFAULT_BATCH_LIMITS if b <= base.max_num_seqs]))
            previous_cap = None
            best: list[float] = [0.0] * len(works)
            for limit in limits:
                eng = _with_limit(base, limit)
                pool = sm.kv_pool_tokens(eng)
                caps = [max_concurrency(sm, eng, float(np.mean(w.inputs)), float(np.mean(w.outputs)), pool)
                        for w in works]
                if max(caps) < 1:
                    break  # weights and workspace leave no room for one request; larger limits only need more
                if previous_cap is not None and caps == previous_cap and all(c < limit for c in caps):
                    break  # the KV pool already caps every class below this limit: larger limits change nothing
                previous_cap = caps
                table = StepTable.build(sm, eng.token_budget + eng.max_num_seqs, eng.overlap_scheduler)
                rates = tuple(
                    max_rate(sm, eng, w, s, pool, table, counter, guess=best[k] or None) if cap >= 1 else 0.0
                    for k, (w, cap) in enumerate(zip(works, caps, strict=True))
                )
                out.append(Candidate(g.name, tp, limit, tp, rate.usd_per_gpu_hour * tp, rate.label, rates, sm, eng))
                if all(r <= b * SATURATION for r, b in zip(rates, best, strict=True)):
                    break  # saturated: the previous limit already carried as much
                best = [max(r, b) for r, b in zip(rates, best, strict=True)]
    return out, notes


def _with_limit(eng: EngineConfig, limit: int) -> EngineConfig:
    from dataclasses import replace

    return replace(eng, max_num_seqs=limit)


# --------------------------------------------------------------------------------------------
# 2. Selection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionProblem:
    """The integer data both the CP-SAT model and the exhaustive reference solve."""

    cost: tuple[int, ...]  # per candidate replica, COST_UNITS
    gpus: tuple[int, ...]
    sku: tuple[str, ...]
    rank: tuple[int, ...]  # tie-break: lower is preferred (more capacity)
    load: tuple[tuple[int | None, ...], ...]  # [candidate][class]: load units of one slice; None = cannot serve
    slices: int
    max_replicas: int
    inventory: dict[str, int]  # per SKU GPU cap
    total_gpus: int | None
    mix: bool


def selection_problem(cands: Sequence[Candidate], class_qps: Sequence[float], s: ServingScenario) -> SelectionProblem:
    sv = s.serving
    slices = sv.search.slices
    load = tuple(
        tuple(
            # any positive rate takes at least one unit: a vanishing rate still needs a replica to serve it
            (max(1, math.ceil(SCALE * (q * (1 + sv.search.headroom) / slices) / r - 1e-9)) if r > 0 else None)
            if q > 0 else 0
            for q, r in zip(class_qps, c.rates, strict=True)
        )
        for c in cands
    )
    # tie-break: more total capacity per dollar first, then catalog/grid order
    score = [sum(r for r in c.rates) / c.usd_per_hour for c in cands]
    order = sorted(range(len(cands)), key=lambda i: (-score[i], i))
    rank = [0] * len(cands)
    for pos, i in enumerate(order):
        rank[i] = pos
    hw = s.hardware
    inventory: dict[str, int] = {}
    total = None
    if isinstance(hw.max_gpus, dict):
        inventory = {s.gpu(k, "hardware.max_gpus").name: v for k, v in hw.max_gpus.items()}
    elif isinstance(hw.max_gpus, int):
        total = hw.max_gpus
    return SelectionProblem(
        cost=tuple(round(c.usd_per_hour * COST_UNITS) for c in cands), gpus=tuple(c.gpus for c in cands),
        sku=tuple(c.sku for c in cands), rank=tuple(rank), load=load, slices=slices,
        max_replicas=sv.search.max_replicas, inventory=inventory, total_gpus=total, mix=sv.search.mix,
    )


# CP-SAT's random_seed is an int32 (ortools/sat/sat_parameters.proto); scenario seeds reach 2^63 − 1 (MAX_SEED)
CPSAT_SEEDS = 2**31


def select_cpsat(p: SelectionProblem, seed: int = 0) -> Selection | None:
    """Minimise $/hour, then GPUs, then rank, with CP-SAT (two solves: the cost optimum, then the tie-break
    with cost fixed). None when nothing fits the inventory."""
    from ortools.sat.python import cp_model

    n_c, n_k = len(p.cost), (len(p.load[0]) if p.load else 0)

    def build(cost_cap: int | None) -> tuple[Any, list[Any], list[list[Any]]]:
        model = cp_model.CpModel()
        n = [model.new_int_var(0, p.max_replicas, f"n{t}") for t in range(n_c)]
        x: list[list[Any]] = []
        for t in range(n_c):
            row = []
            for k in range(n_k):
                ub = 0 if p.load[t][k] is None else p.slices
                row.append(model.new_int_var(0, ub, f"x{t}_{k}"))
            x.append(row)
            terms = [(x[t][k], p.load[t][k]) for k in range(n_k) if p.load[t][k]]
            if terms:
                model.add(sum(v * c for v, c in terms) <= SCALE * n[t])
        for k in range(n_k):
            model.add(sum(x[t][k] for t in range(n_c)) == p.slices)
        for sku, cap in p.inventory.items():
            idx = [t for t in range(n_c) if p.sku[t] == sku]
            if idx:
                model.add(sum(n[t] * p.gpus[t] for t in idx) <= cap)
        if p.total_gpus is not None:
            model.add(sum(n[t] * p.gpus[t] for t in range(n_c)) <= p.total_gpus)
        if not p.mix:
            skus = sorted(set(p.sku))
            used = {u: model.new_bool_var(f"use_{u}") for u in skus}
            model.add(sum(used.values()) <= 1)
            for t in range(n_c):
                model.add(n[t] <= p.max_replicas * used[p.sku[t]])
        cost = sum(n[t] * p.cost[t] for t in range(n_c))
        if cost_cap is None:
            model.minimize(cost)
        else:
            model.add(cost <= cost_cap)
            big = 1 + sum(p.rank) + n_c
            model.minimize(sum(n[t] * (p.gpus[t] * big * p.max_replicas + p.rank[t]) for t in range(n_c)))
        return model, n, x

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed % CPSAT_SEEDS  # the scenario's seed, folded into CP-SAT's int32 range
    solver.parameters.max_time_in_seconds = 30.0
    model, n, x = build(None)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    best = round(solver.objective_value)
    model, n, x = build(best)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):  # pragma: no cover - the first solution is feasible
        return None
    reps = tuple(int(solver.value(v)) for v in n)
    sl = tuple(tuple(int(solver.value(v)) for v in row) for row in x)
    return Selection(reps, sl, sum(r * c for r, c in zip(reps, p.cost, strict=True)),
                     sum(r * g for r, g in zip(reps, p.gpus, strict=True)))


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to write `total` as an ordered sum of `parts` non-negative integers."""
    out = []
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        prev, comp = -1, []
        for b in bars:
            comp.append(b - prev - 1)
            prev = b
        comp.append(total + parts - 2 - prev)
        out.append(tuple(comp))
    return out


def select_exhaustive(p: SelectionProblem) -> Selection | None:
    """The same selection by enumeration: every split of every class's slices over the candidates, each with
    the fewest replicas that carry its load. For small spaces (tests)."""
    n_c, n_k = len(p.cost), len(p.load[0])
    per_class = []
    for k in range(n_k):
        opts = [comp for comp in _compositions(p.slices, n_c)
                if all(comp[t] == 0 or p.load[t][k] is not None for t in range(n_c))]
        per_class.append(opts)
    best: tuple[int, int, int] | None = None
    best_sel: Selection | None = None
    for combo in itertools.product(*per_class):
        reps = []
        for t in range(n_c):
            units = sum(combo[k][t] * (p.load[t][k] or 0) for k in range(n_k))
            reps.append(-(-units // SCALE))
        if any(r > p.max_replicas for r in reps):
            continue
        if any(sum(reps[t] * p.gpus[t] for t in range(n_c) if p.sku[t] == sku) > cap
               for sku, cap in p.inventory.items()):
            continue
        gpus = sum(reps[t] * p.gpus[t] for t in range(n_c))
        if p.total_gpus is not None and gpus > p.total_gpus:
            continue
        if not p.mix and len({p.sku[t] for t in range(n_c) if reps[t]}) > 1:
            continue
        cost = sum(reps[t] * p.cost[t] for t in range(n_c))
        key = (cost, gpus, sum(reps[t] * p.rank[t] for t in range(n_c)))
        if best is None or key < best:
            best = key
            best_sel = Selection(tuple(reps), tuple(tuple(combo[k][t] for k in range(n_k)) for t in range(n_c)),
                                 cost, gpus)
    return best_sel


# --------------------------------------------------------------------------------------------
# 3. Plans
# --------------------------------------------------------------------------------------------


def _pool_plan(
    c: Candidate, replicas: int, qps: tuple[float, ...], works: Sequence[_Workload], s: ServingScenario
) -> PoolPlan:
    """Simulate one replica of the pool at its share of the assigned traffic: the classes' own requests and
    arrival sequences (the ones its capacities were found with), merged in time order."""
    per = [q / replicas for q in qps]
    times, ins, outs, hits = [], [], [], []
    for w, q in zip(works, per, strict=True):
        if q > 0:
            times.append(w.unit_arrivals / q)
            ins.append(w.inputs)
            outs.append(w.outputs)
            hits.append(np.full(len(w.inputs), w.cls.prefix_hit_rate or 0.0))
    n = max(s.serving.search.requests, STEADY_TURNOVERS * c.batch_limit)
    order = np.argsort(np.concatenate(times), kind="stable")[:n]
    arrivals = np.concatenate(times)[order]
    hit = float(np.mean(np.concatenate(hits)[order]))
    sim = simulate(c.model, c.engine, np.concatenate(ins)[order], np.concatenate(outs)[order], arrivals=arrivals,
                   prefix_hit=hit)
    load = sum(q / r for q, r in zip(per, c.rates, strict=True) if q > 0)
    busy = sim.prefill_seconds + sim.decode_seconds
    pct = s.serving.slo.percentile
    return PoolPlan(
        candidate=c, replicas=replicas, qps=qps, ttft_ms=sim.percentiles("ttft"), tpot_ms=sim.percentiles("tpot"),
        slo_met=_meets(sim, s, sum(per)), headroom=(1.0 / load - 1.0) if load > 0 else math.inf,
        prefill_share=sim.prefill_seconds / busy if busy > 0 else 0.0,
        ttft_slo_ms=sim.at("ttft", pct), tpot_slo_ms=sim.at("tpot", pct),
    )


def _plan(
    sel: Selection, cands: Sequence[Candidate], class_qps: Sequence[float], works: Sequence[_Workload],
    s: ServingScenario, status: str,
) -> ServingPlan:
    pools = []
    for t, reps in enumerate(sel.replicas):
        if reps == 0:
            continue
        qps = tuple(q * sel.slices[t][k] / s.serving.search.slices for k, q in enumerate(class_qps))
        pools.append(_pool_plan(cands[t], reps, qps, works, s))
    usd = sum(p.usd_per_hour for p in pools)
    in_tok = sum(q * float(np.mean(w.inputs)) for q, w in zip(class_qps, works, strict=True)) * 3600
    out_tok = sum(q * float(np.mean(w.outputs)) for q, w in zip(class_qps, works, strict=True)) * 3600
    usd_in = sum(p.usd_per_hour * p.prefill_share for p in pools)
    return ServingPlan(
        pools=tuple(pools), qps=sum(class_qps), usd_per_hour=usd,
        usd_per_million_input_tokens=usd_in / in_tok * 1e6 if in_tok else math.inf,
        usd_per_million_output_tokens=(usd - usd_in) / out_tok * 1e6 if out_tok else math.inf,
        usd_per_million_tokens=usd / (in_tok + out_tok) * 1e6, status=status,
        class_names=tuple(w.cls.name for w in works),
    )


def cheapest_fleet(
    s: ServingScenario, cands: Sequence[Candidate], class_qps: Sequence[float], *, mix: bool | None = None,
) -> ServingPlan | None:
    """The cheapest fleet of these candidates (as priced) that carries `class_qps` (requests/s per traffic class)
    within the SLOs: the selection `solve_serving` makes, each pool re-simulated at its load. `mix` overrides
    `serving.search.mix` (False: one SKU). None when some class has no candidate that serves it, or the inventory
    and replica caps cannot hold enough replicas."""
    if mix is not None and mix != s.serving.search.mix:
        s = s.model_copy(update={"serving": s.serving.model_copy(
            update={"search": s.serving.search.model_copy(update={"mix": mix})})})
    classes = s.serving.traffic.resolved_classes()
    if not cands or any(all(c.rates[k] <= 0 for c in cands) for k in range(len(classes))):
        return None
    sel = select_cpsat(selection_problem(cands, class_qps, s), s.serving.search.seed)
    if sel is None:
        return None
    return _plan(sel, cands, class_qps, _workloads(classes, _sample_size(s), s.serving.search.seed), s, "optimal")


def _infeasible_message(cands: Sequence[Candidate], classes: Sequence[TrafficClass], s: ServingScenario,
                        class_qps: Sequence[float]) -> str:
    slo = s.serving.slo
    lines = []
    for k, c in enumerate(classes):
        if not any(cd.rates[k] > 0 for cd in cands):
            lines.append(f"class {c.name!r}: no candidate meets TTFT p{slo.percentile:g} <= {slo.ttft_ms:g} ms and "
                         f"TPOT p{slo.percentile:g} <= {slo.tpot_ms:g} ms")
            best = min(
                (analytic_bounds(cd.model, cd.engine, c.input.expected(), c.output.expected())
                 for cd in cands), key=lambda b: b.ttft_min_s + b.tpot_min_s, default=None,
            )
            if best is not None:
                lines.append(f"  fastest replica alone: TTFT {best.ttft_min_s * 1e3:.0f} ms, "
                             f"TPOT {best.tpot_min_s * 1e3:.1f} ms")
    if not lines:
        lines.append(_caps_message(cands, class_qps, s))
    return "; ".join(lines)


def _caps_message(cands: Sequence[Candidate], class_qps: Sequence[float], s: ServingScenario) -> str:
    """Every class has a replica type that serves it, but the caps hold too few replicas: how many the traffic
    needs at least (each class on its most GPU-efficient type; the fewest replicas of one type alone) against
    the caps that rule them out."""
    gpus = sum(q * min(cd.gpus / cd.rates[k] for cd in cands if cd.rates[k] > 0)
               for k, q in enumerate(class_qps) if q > 0)

    def alone(cd: Candidate) -> float:  # replicas of one type carrying every class
        return sum(q / cd.rates[k] if cd.rates[k] > 0 else math.inf for k, q in enumerate(class_qps) if q > 0)

    best = min(cands, key=lambda cd: alone(cd) * cd.gpus)
    caps = [f"serving.search.max_replicas {s.serving.search.max_replicas:,} of each replica type"]
    hw = s.hardware.max_gpus
    if isinstance(hw, int):
        caps.append(f"hardware.max_gpus {hw:,} GPUs in all")
    elif isinstance(hw, dict):
        caps.append("hardware.max_gpus " + ", ".join(f"{k} {v:,}" for k, v in hw.items()))
    reps = alone(best)
    one = (f"with one type, {math.ceil(reps):,} × {best.label}, {math.ceil(reps) * best.gpus:,} GPUs"
           if math.isfinite(reps) else "no one type serves every class")
    return (f"{s.serving.traffic.qps:,.6g} requests/s need at least {math.ceil(gpus):,} GPUs ({one}); the caps "
            f"allow {' and '.join(caps)}")


def solve_serving(scenario: ServingScenario | str | Path, *, pareto: bool | Sequence[float] = True) -> ServingSolution:
    """Find the cheapest fleet that serves a serving scenario's traffic within its SLOs (`planner serve
    SCENARIO.yaml`).

    Args:
        scenario: a ServingScenario or the path of a YAML file with a `serving:` block.
        pareto: also trace the cheapest fleet against request rate — at `serving.pareto_qps`, at the given
            rates, or (True, no rates in the file) at 0.25×, 0.5×, 1×, 2× and 4× the scenario's rate.

    Returns:
        ServingSolution: `plan` (pools of (SKU, TP, batch limit, replicas) with predicted TTFT/TPOT p50/p90/p99
        at their assigned load, headroom, `usd_per_hour`, `usd_per_million_input_tokens`,
        `usd_per_million_output_tokens`), `best_single_sku` for comparison, the candidates with their
        capacities, and the pareto trace. `to_dict()` is the JSON of `planner serve SCENARIO.yaml --format json`.

    Raises:
        InputError: a bad scenario (unknown model, SKU or engine; a value out of range).
        InfeasibleError: no replica type meets the SLOs for some class, or the inventory is too small; the
            message gives the numbers that rule it out.
    """
    from planner.scenario import resolve_model

    t0 = time.perf_counter()
    expect(scenario, (ServingScenario, str, Path), "scenario")
    s = load_serving_scenario(scenario) if isinstance(scenario, (str, Path)) else scenario
    m = resolve_model(s.model)
    counter = _Counter()
    cands, notes = serving_candidates(s, m, counter)
    classes = s.serving.traffic.resolved_classes()
    if not cands:
        raise InfeasibleError("no (SKU, TP) holds the model's weights and one request" + (
            ": " + "; ".join(notes) if notes else ""))
    class_qps = [s.serving.traffic.qps * c.share for c in classes]
    works = _workloads(classes, _sample_size(s), s.serving.search.seed)
    problem = selection_problem(cands, class_qps, s)
    if any(all(problem.load[t][k] is None for t in range(len(cands))) for k in range(len(classes))):
        raise InfeasibleError(_infeasible_message(cands, classes, s, class_qps))
    sel = select_cpsat(problem, s.serving.search.seed)
    if sel is None:
        raise InfeasibleError(_infeasible_message(cands, classes, s, class_qps))
    plan = _plan(sel, cands, class_qps, works, s, "optimal")
    single = None
    if s.serving.search.mix and len({c.sku for c in cands}) > 1:
        single = cheapest_fleet(s, cands, class_qps, mix=False)
    elif not s.serving.search.mix:
        single = plan
    points: list[ParetoPoint] = []
    if pareto:
        rates = list(pareto) if not isinstance(pareto, bool) else (
            s.serving.pareto_qps or [s.serving.traffic.qps * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)])
        points = serving_pareto(s, cands, rates)
    return ServingSolution(s, plan, single, cands, points, time.perf_counter() - t0, counter.n, serving_note(m))


def serving_pareto(s: ServingScenario, cands: Sequence[Candidate], rates: Sequence[float]) -> list[ParetoPoint]:
    """The cheapest fleet at each request rate (same class shares and capacities; only the selection re-runs)."""
    classes = s.serving.traffic.resolved_classes()
    out = []
    for q in sorted(rates):
        if not (q > 0 and math.isfinite(q)):
            raise InputError(f"pareto rates must be positive finite numbers, got {q!r}")
        problem = selection_problem(cands, [q * c.share for c in classes], s)
        sel = select_cpsat(problem, s.serving.search.seed)
        if sel is None:
            out.append(ParetoPoint(q, None, None, ()))
            continue
        skus = tuple(sorted({cands[t].sku for t, r in enumerate(sel.replicas) if r}))
        out.append(ParetoPoint(q, sel.cost_units / COST_UNITS, sel.gpus, skus))
    return out


__all__ = [
    "Candidate",
    "ParetoPoint",
    "PoolPlan",
    "Selection",
    "SelectionProblem",
    "ServingPlan",
    "ServingSolution",
    "cheapest_fleet",
    "max_rate",
    "select_cpsat",
    "select_exhaustive",
    "selection_problem",
    "serving_candidates",
    "serving_pareto",
    "solve_serving",
]
