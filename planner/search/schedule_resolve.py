"""A portfolio resolved into what the scheduler searches: prices per pool, candidate tables per job, and
the integer instance (planner.search.schedule_instance).

Each job's options come from `planner solve`'s own candidate tables (`job_candidates`): for every SKU of
its pools and every GPU count of a small geometric grid (whole nodes doubling from min_gpus to
max_gpus), the fastest layout that fits in memory and its run time. Jobs of the same shape (model, tokens,
batch, fixed layout, SKUs, GPU bounds) share one table. The run time then passes through one function,
the `Duration` hook, before it becomes periods: ideal time today; expected time with failures (checkpoint
and restart overheads) when a goodput model is plugged in there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.errors import InputError
from planner.portfolio import (
    TERM_DAYS,
    OnDemandPool,
    OwnedPool,
    Portfolio,
    PortfolioJob,
    PurchasePool,
    ReservationPool,
)
from planner.schema import GpuSku
from planner.search.candidates import JobCandidates
from planner.search.problem import Problem
from planner.search.schedule_instance import Instance, Option, Pool, PoolKind, Task
from planner.workloads.training.workload import TrainingWorkload

HOURS_PER_DAY = 24
# A pool without a GPU limit (on demand, purchases, reservations) still needs a top GPU count for the
# candidate grid: the largest published training fleets are 16-32k GPUs (Llama 3: 16,384 H100s).
UNLIMITED_GRID_TOP = 16_384

# (job name, SKU, GPUs, ideal seconds) → expected seconds: where failures and restarts will come in.
Duration = Callable[[str, str, int, int], int]


def ideal_duration(job: str, sku: str, gpus: int, seconds: int) -> int:
    """The time model's run time, without failures (the default Duration)."""
    return seconds


@dataclass(frozen=True)
class PoolTerms:
    """A pool's prices, resolved: what using, buying or reserving one GPU costs, with sources."""

    name: str
    kind: PoolKind
    gpu: GpuSku
    usage_usd_per_gpu_hour: float  # per GPU-hour run: on-demand rate, power, running cost, 0 reserved
    held_usd_per_gpu_hour: float  # purchases: per hour held; reservations: the committed rate
    unit: int  # GPUs bought (a node) or rented and reserved (a host, GpuSku.host_gpus: GB200 by 4-GPU tray)
    label: str  # where the rates come from
    notes: tuple[str, ...] = ()


@dataclass
class JobTable:
    """One job's candidate table (shared by jobs of the same shape)."""

    cands: JobCandidates
    problem: Problem  # what the table was built for (the scalar re-evaluation needs it)


@dataclass
class Resolved:
    portfolio: Portfolio
    jobs: list[PortfolioJob]  # expanded (repeats written out), in task order
    terms: list[PoolTerms]
    tables: list[JobTable]  # per task
    rows: list[list[int]]  # per task, per option: its row in the task's table
    instance: Instance
    dropped: dict[str, list[str]] = field(default_factory=dict)  # task → options left out and why


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------


def _catalog_rate(gpu: GpuSku, kind: str, provider: str | None, where: str) -> tuple[float, str]:
    from planner.pricing import select_price

    price = select_price(gpu, kind, provider)
    if price is None or price.usd_per_gpu_hour is None:
        who = f" from {provider}" if provider else ""
        raise InputError(f"{where}: {gpu.name} has no {kind} price{who} in the catalog; give usd_per_gpu_hour")
    return price.usd_per_gpu_hour, f"{price.provider} {price.kind} {price.date} ({price.source})"


def pool_terms(portfolio: Portfolio) -> list[PoolTerms]:
    from planner.catalog import load_procurement
    from planner.procurement import held_usd_per_gpu_hour, power_usd_per_gpu_hour, server_price

    proc = load_procurement()
    out = []
    for i, p in enumerate(portfolio.pools):
        where = f"pools.{i} ({p.name})"
        gpu = portfolio.gpu(p.sku, f"{where}: sku")
        unit = gpu.host_on(gpu.node_size)  # a node spanning several hosts is rented host by host
        kwh = getattr(p, "usd_per_kwh", None)
        pue = getattr(p, "pue", None)
        power = power_usd_per_gpu_hour(gpu, pue=pue if pue is not None else proc.pue.value,
                                       usd_per_kwh=kwh if kwh is not None else proc.usd_per_kwh.value)
        power_label = (f"power {gpu.tdp_w} W × PUE {pue if pue is not None else proc.pue.value:g} × "
                       f"${kwh if kwh is not None else proc.usd_per_kwh.value:g}/kWh")
        if isinstance(p, OwnedPool):
            use = p.usd_per_gpu_hour if p.usd_per_gpu_hour is not None else power
            label = "running cost (portfolio)" if p.usd_per_gpu_hour is not None else power_label
            out.append(PoolTerms(p.name, "owned", gpu, use, 0.0, unit, label))
        elif isinstance(p, OnDemandPool):
            rate, label = ((p.usd_per_gpu_hour, "portfolio") if p.usd_per_gpu_hour is not None
                           else _catalog_rate(gpu, "on-demand", p.provider, where))
            out.append(PoolTerms(p.name, "on-demand", gpu, rate, 0.0, unit, label))
        elif isinstance(p, ReservationPool):
            kind = f"reserved-{p.term}"
            rate, label = ((p.usd_per_gpu_hour, "portfolio") if p.usd_per_gpu_hour is not None
                           else _catalog_rate(gpu, kind, p.provider, where))
            out.append(PoolTerms(p.name, "reservation", gpu, 0.0, rate, unit, label))
        else:
            assert isinstance(p, PurchasePool)
            price = p.usd_per_gpu
            label = "server price (portfolio)"
            if price is None:
                found = server_price(gpu, proc)
                if found is None or found.usd_per_gpu is None:
                    raise InputError(f"{where}: {gpu.name} has no purchase price in the catalog; give usd_per_gpu")
                price, label = found.usd_per_gpu, f"{found.provider} {found.date} ({found.source})"
            share = p.network_share if p.network_share is not None else proc.network_share.value
            years = p.amortisation_years or proc.amortisation_years.value
            colo = (p.colocation_usd_per_kw_month if p.colocation_usd_per_kw_month is not None
                    else proc.colocation_usd_per_kw_month.value)
            kw = p.server_kw_per_gpu_tdp or proc.server_kw_per_gpu_tdp.value
            held = held_usd_per_gpu_hour(gpu, price * (1 + share), amortisation_years=years,
                                         colocation_usd_per_kw_month=colo, server_kw_per_gpu_tdp=kw)
            notes = (f"${price:,.0f} per GPU × (1 + {share:g} network) over {years:g} years, colocation "
                     f"${colo:g}/kW-month × {gpu.tdp_w / 1000 * kw:.2f} kW; {power_label} when running",)
            out.append(PoolTerms(p.name, "purchase", gpu, power, held, gpu.node_size, label, notes))  # whole nodes
    return out


def lead_time_days(pool: PurchasePool, gpu: GpuSku) -> float:
    from planner.catalog import load_procurement

    if pool.lead_time_weeks is not None:
        return pool.lead_time_weeks * 7
    entry = load_procurement().sku(gpu)
    if entry is None:
        raise InputError(f"pools ({pool.name}): no lead time for {gpu.name} in catalogs/procurement.yaml; "
                         "give lead_time_weeks")
    return entry.lead_time_weeks * 7


# --------------------------------------------------------------------------------------------
# Candidate tables
# --------------------------------------------------------------------------------------------


def gpu_grid(lo: int, hi: int, node: int) -> list[int]:
    """Whole nodes doubling from the first count ≥ lo up to hi (and a part of one node below it)."""
    counts = [g for g in (1, 2, 4) if g < node and lo <= g <= hi]
    g = max(node, node * math.ceil(lo / node))
    while g <= hi:
        counts.append(g)
        g *= 2
    return counts


def _pool_cap(portfolio: Portfolio, name: str) -> int:
    p = next(p for p in portfolio.pools if p.name == name)
    cap = p.gpus if isinstance(p, OwnedPool) else p.max_gpus
    return cap if cap is not None else UNLIMITED_GRID_TOP


def job_table(portfolio: Portfolio, job: PortfolioJob, skus: list[str], cap: int,
              cache: dict[str, JobTable]) -> JobTable:
    """The job's candidate table over `skus` with at most `cap` GPUs, from planner solve's machinery."""
    from planner.scenario import Scenario
    from planner.search.candidates import job_candidates
    from planner.search.problem import resolve_problem

    scenario = Scenario.model_validate({
        "name": job.name, "gpus": portfolio.gpus, "model": job.model, "job": job.job,
        "layout": job.layout.model_copy(update={"gpus": None}),
        "hardware": {"skus": skus},
        "pricing": {"usd_per_gpu_hour": dict.fromkeys(skus, 1.0)},  # costs are the pools' business
        "constraints": {"max_gpus": cap},
        "efficiency": portfolio.efficiency, "implementation": portfolio.implementation,
        "overheads": portfolio.overheads,
    })
    # the layout grid, memory and step times do not depend on the tokens: one table per shape
    key = scenario.model_dump_json(exclude={"name": True, "job": {"tokens"}})
    if key not in cache:
        problem = resolve_problem(scenario)
        cache[key] = JobTable(job_candidates(problem, problem.jobs[0]), problem)
    return cache[key]


def job_seconds(table: JobTable, k: int, job: PortfolioJob) -> int:
    """Whole seconds of row k's layout running `job` (its own tokens: tables are shared across token
    counts), counted by the training workload's steps and rounded up as `planner solve` rounds them."""
    workload = table.cands.job.workload
    assert isinstance(workload, TrainingWorkload)
    steps = replace(workload, job=job.job).steps
    return math.ceil(int(table.cands.table.step_us[k]) * steps / 1e6)  # candidates.integer_units' time_s


# --------------------------------------------------------------------------------------------
# The instance
# --------------------------------------------------------------------------------------------


def resolve(portfolio: Portfolio, *, duration: Duration = ideal_duration,
            cache: dict[str, JobTable] | None = None) -> Resolved:
    """Prices, candidate tables and the integer instance of a portfolio."""
    h = portfolio.horizon
    T, step = h.periods, h.step_days
    terms = pool_terms(portfolio)
    pools: list[Pool] = []
    for p, t in zip(portfolio.pools, terms, strict=True):
        pools.append(_instance_pool(p, t, portfolio))
    jobs = portfolio.expanded_jobs()
    names = {j.name: i for i, j in enumerate(jobs)}
    # each job's entry in the file (a repeat's copies, NAME-1, NAME-2, ..., come from one)
    entry = {n: i for i, j in enumerate(portfolio.jobs)
             for n in ([f"{j.name}-{k + 1}" for k in range(j.repeat.count)] if j.repeat else [j.name])}
    cache = {} if cache is None else cache
    tasks: list[Task] = []
    tables: list[JobTable] = []
    rows: list[list[int]] = []
    dropped: dict[str, list[str]] = {}
    for j in jobs:
        allowed = [i for i, p in enumerate(portfolio.pools) if j.pools is None or p.name in j.pools]
        if j.layout.sku is not None:
            key = f"jobs.{entry[j.name]}.layout.sku"
            want = portfolio.gpu(j.layout.sku, key).name
            allowed = [i for i in allowed if terms[i].gpu.name == want]
            if not allowed:
                raise InputError(f"{key}: {want} is in none of the pools job {j.name} may use")
        skus = list(dict.fromkeys(terms[i].gpu.name for i in allowed))
        caps = [_pool_cap(portfolio, portfolio.pools[i].name) for i in allowed]
        top = min(max(caps), j.max_gpus or UNLIMITED_GRID_TOP)
        if j.layout.gpus is not None:
            counts = [j.layout.gpus]
        elif j.gpu_counts is not None:
            counts = sorted(set(j.gpu_counts))
        else:
            node = min(terms[i].unit for i in allowed)
            counts = gpu_grid(j.min_gpus or node, top, node)
        top = max([top, *counts])
        table = job_table(portfolio, j, skus, top, cache)
        cand = table.cands.table
        options: list[Option] = []
        where: list[int] = []
        notes: list[str] = []
        for i in allowed:
            rate = terms[i].usage_usd_per_gpu_hour
            for g in counts:
                if (j.min_gpus and g < j.min_gpus) or (j.max_gpus and g > j.max_gpus):
                    continue
                hit = np.flatnonzero((cand.sku == terms[i].gpu.name) & (cand.gpus == g))
                if len(hit) == 0:
                    continue
                k = int(hit[0])
                seconds = duration(j.name, terms[i].gpu.name, g, job_seconds(table, k, j))
                periods = max(1, math.ceil(seconds / (step * 86_400)))
                if periods > T:
                    notes.append(f"{terms[i].name} × {g:,}: {seconds / 86_400:,.1f} days, longer than the horizon")
                    continue
                usage = math.ceil(g * seconds / 3600 * rate)
                options.append(Option(i, g, periods, seconds, usage, k))
                where.append(k)
        release = h.first_period_from(j.release) if j.release else 0
        deadline = h.periods_by(j.deadline) if j.deadline else None
        penalty = 0 if j.penalty_usd_per_day is None else math.ceil(j.penalty_usd_per_day)
        if deadline is not None and penalty == 0 and j.penalty_usd_per_day is not None:
            penalty = 1  # a soft deadline at $0 per day is still soft
        tasks.append(Task(j.name, release, deadline, penalty, tuple(names[a] for a in j.after), tuple(options),
                          due_day=None if j.deadline is None else (j.deadline - h.start).days))
        tables.append(table)
        rows.append(where)
        if notes:
            dropped[j.name] = notes
    inst = Instance(T, step, tuple(tasks), tuple(pools))
    return Resolved(portfolio, jobs, terms, tables, rows, inst, dropped)


def _instance_pool(p: Any, t: PoolTerms, portfolio: Portfolio) -> Pool:
    h = portfolio.horizon
    T, step = h.periods, h.step_days
    step_hours = step * HOURS_PER_DAY
    if isinstance(p, OwnedPool):
        first = h.first_period_from(p.available_from) if p.available_from else 0
        last = h.periods_by(p.available_until) if p.available_until else T
        return Pool(p.name, "owned", t.gpu.name, capacity=tuple(p.gpus if first <= s < last else 0 for s in range(T)))
    if isinstance(p, OnDemandPool):
        return Pool(p.name, "on-demand", t.gpu.name, capacity=None if p.max_gpus is None else (p.max_gpus,) * T)
    if isinstance(p, ReservationPool):
        term = TERM_DAYS[p.term] // step  # whole periods inside the term: capacity is never overstated
        first = h.first_period_from(p.start_from) if p.start_from else 0
        last = h.periods_by(p.start_until) if p.start_until else T - 1
        starts = tuple(range(first, min(last, T - 1) + 1))
        term_usd = math.ceil(t.unit * t.held_usd_per_gpu_hour * TERM_DAYS[p.term] * HOURS_PER_DAY)
        min_units = math.ceil((p.min_gpus or t.unit) / t.unit)
        return Pool(p.name, "reservation", t.gpu.name, unit=t.unit, max_gpus=p.max_gpus, min_units=min_units,
                    term=term, starts=starts, unit_usd=(term_usd,) * len(starts))
    assert isinstance(p, PurchasePool)
    lead = math.ceil(lead_time_days(p, t.gpu) / step)
    first = h.first_period_from(p.order_from) if p.order_from else 0
    last = h.periods_by(p.order_until) if p.order_until else T
    starts = tuple(s for s in range(first, min(last + 1, T)) if s + lead < T)
    unit_usd = tuple(math.ceil(t.unit * t.held_usd_per_gpu_hour * (T - s - lead) * step_hours) for s in starts)
    min_units = math.ceil((p.min_order_gpus or t.unit) / t.unit)
    return Pool(p.name, "purchase", t.gpu.name, unit=t.unit, max_gpus=p.max_gpus, min_units=min_units, lead=lead,
                starts=starts, unit_usd=unit_usd)
