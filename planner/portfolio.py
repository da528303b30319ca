"""Portfolio files: a year of training jobs and the GPUs to run them on (`planner schedule`).

A portfolio names a planning horizon (start, end, step of a day or a week), the pools GPUs come from —
owned clusters, purchases (arriving after a lead time), reservations (paid over their term whether used
or not) and on-demand rentals — and the jobs, each a training job as in a scenario (model, tokens,
sequence, batch, precision; optionally a fixed SKU or layout) with a release date, a deadline (hard, or
soft at a price per day late), `after:` dependencies and GPU bounds. Prices left out come from the
catalogs (gpus.yaml, procurement.yaml). Read with a safe YAML loader; every error names the file and key.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from planner.errors import UNION_TAG_PREFIX, InputError, expect, format_validation_error
from planner.scenario import EfficiencyOverride, FixedLayout, Job, OwnGpus, read_yaml, refuse_other_formats
from planner.schema import GpuDefinition, Implementation, ModelSpec, Overheads, Strict

STEP_DAYS = {"day": 1, "week": 7}
# Planning more than five years ahead at daily steps makes models of millions of variables; nothing
# the catalogs price (terms of 1-3 years, lifetimes of 4-6) needs more.
MAX_HORIZON_DAYS = 5 * 366
TERM_DAYS = {"1y": 365, "3y": 3 * 365}

Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Rate = Annotated[float, Field(gt=0, le=1_000, allow_inf_nan=False, description="USD per GPU-hour")]
Gpus = Annotated[int, Field(gt=0, le=1_000_000)]


class Horizon(Strict):
    start: dt.date = Field(description="first day planned")
    end: dt.date = Field(description="the day after the last day planned (every job ends by then)")
    step: Literal["day", "week"] = Field("week", description="time resolution of the plan")

    @model_validator(mode="after")
    def _check(self) -> Horizon:
        days = (self.end - self.start).days
        if days < STEP_DAYS[self.step]:
            raise ValueError(f"end must be at least one {self.step} after start")
        if days > MAX_HORIZON_DAYS:
            raise ValueError(f"at most {MAX_HORIZON_DAYS} days ({days} given)")
        return self

    @property
    def step_days(self) -> int:
        return STEP_DAYS[self.step]

    @property
    def periods(self) -> int:
        """Whole steps in the horizon (a partial last step is not planned)."""
        return (self.end - self.start).days // self.step_days

    def date(self, period: int) -> dt.date:
        return self.start + dt.timedelta(days=period * self.step_days)

    def first_period_from(self, day: dt.date) -> int:
        """The first period that starts on or after `day` (a release rounds up)."""
        return max(0, math.ceil((day - self.start).days / self.step_days))

    def periods_by(self, day: dt.date) -> int:
        """How many whole periods end on or before `day` (a deadline rounds down)."""
        return max(0, (day - self.start).days // self.step_days)


class _Pool(Strict):
    name: str = Field(min_length=1, description="unique among the pools")
    sku: str = Field(description="GPU catalog name")


class OwnedPool(_Pool):
    """GPUs the lab already has: free to use but for their running cost."""

    kind: Literal["owned"]
    gpus: Gpus
    available_from: dt.date | None = Field(None, description="default: the horizon start")
    available_until: dt.date | None = Field(None, description="default: the horizon end")
    usd_per_gpu_hour: Usd | None = Field(
        None, description="running cost per GPU-hour used; default: the power, TDP × PUE × $/kWh")
    usd_per_kwh: Usd | None = Field(None, le=10, description="default: procurement.yaml")
    pue: float | None = Field(None, ge=1, le=3, description="default: procurement.yaml")


class PurchasePool(_Pool):
    """GPUs that can be bought: whole nodes, at least a minimum order, arriving after a lead time, held
    (amortised, colocated) from arrival to the horizon end, powered when they run."""

    kind: Literal["purchase"]
    usd_per_gpu: Usd | None = Field(None, gt=0, le=10_000_000,
                                    description="server price per GPU; default: the catalog's server price")
    network_share: float | None = Field(None, ge=0, le=2, description="network fabric over the server price")
    lead_time_weeks: float | None = Field(None, ge=0, le=260, description="order to delivery; default: catalog")
    min_order_gpus: Gpus | None = Field(None, description="smallest order; default: one node")
    max_gpus: Gpus | None = Field(None, description="most GPUs bought in all; default: no limit")
    order_from: dt.date | None = Field(None, description="earliest order date; default: the horizon start")
    order_until: dt.date | None = Field(None, description="latest order date; default: none")
    amortisation_years: float | None = Field(None, gt=0, le=20)
    usd_per_kwh: Usd | None = Field(None, le=10)
    pue: float | None = Field(None, ge=1, le=3)
    colocation_usd_per_kw_month: Usd | None = Field(None, le=10_000)
    server_kw_per_gpu_tdp: float | None = Field(None, ge=1, le=5)


class ReservationPool(_Pool):
    """Capacity reserved for a term, paid for every hour of it whether used or not."""

    kind: Literal["reservation"]
    term: Literal["1y", "3y"] = "1y"
    usd_per_gpu_hour: Rate | None = Field(None, description="committed rate; default: the catalog's reserved rate")
    provider: str | None = Field(None, description="which catalog provider's rate; default: the first")
    max_gpus: Gpus | None = Field(None, description="capacity on offer at any time; default: no limit")
    min_gpus: Gpus | None = Field(None, description="smallest reservation; default: one node")
    start_from: dt.date | None = None
    start_until: dt.date | None = None


class OnDemandPool(_Pool):
    """Rented by the hour, at most `max_gpus` at a time."""

    kind: Literal["on-demand"]
    usd_per_gpu_hour: Rate | None = Field(None, description="default: the catalog's on-demand rate")
    provider: str | None = None
    max_gpus: Gpus | None = Field(None, description="quota at any time; default: no limit")


POOL_KINDS = ("owned", "purchase", "reservation", "on-demand")


def _pool_kind(value: Any) -> str | None:
    """The union member a pool's `kind` picks, as a tag an error's key path leaves out (UNION_TAG_PREFIX)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return UNION_TAG_PREFIX + kind if kind in POOL_KINDS else None


def _tagged(kind: str) -> Tag:
    return Tag(UNION_TAG_PREFIX + kind)


Pool = Annotated[
    Annotated[OwnedPool, _tagged("owned")] | Annotated[PurchasePool, _tagged("purchase")]
    | Annotated[ReservationPool, _tagged("reservation")] | Annotated[OnDemandPool, _tagged("on-demand")],
    Discriminator(_pool_kind, custom_error_type="pool_kind",
                  custom_error_message="kind must be one of " + ", ".join(POOL_KINDS)),
]


class Repeat(Strict):
    """The same job again every `every_days`, `count` times in all (release and deadline shift along)."""

    every_days: int = Field(ge=0, le=3660, description="0: identical copies released together")
    count: int = Field(ge=2, le=1000)


class PortfolioJob(Strict):
    """A training job with its place in time."""

    name: str = Field(min_length=1)
    model: str | ModelSpec = Field(description="catalog name, inline ModelSpec, or path to a HF config.json")
    job: Job
    layout: FixedLayout = Field(FixedLayout(), description="fixed parts (sku, gpus, tp, ...); the rest is searched")
    release: dt.date | None = Field(None, description="earliest start; default: the horizon start")
    deadline: dt.date | None = Field(None, description="end by this date; default: the horizon end")
    penalty_usd_per_day: Usd | None = Field(
        None, le=1e9, description="a soft deadline: this much per day late; default: the deadline is hard")
    after: list[str] = Field(default_factory=list, description="jobs that must end before this one starts")
    min_gpus: Gpus | None = None
    max_gpus: Gpus | None = None
    gpu_counts: list[Gpus] | None = Field(
        None, description="GPU counts to consider; default: whole nodes doubling from min_gpus to max_gpus")
    pools: list[str] | None = Field(None, description="pools the job may run in; default: all")
    repeat: Repeat | None = None

    @model_validator(mode="after")
    def _check(self) -> PortfolioJob:
        if self.min_gpus and self.max_gpus and self.min_gpus > self.max_gpus:
            raise ValueError(f"min_gpus ({self.min_gpus}) exceeds max_gpus ({self.max_gpus})")
        if self.release and self.deadline and self.deadline <= self.release:
            raise ValueError("deadline must come after release")
        if self.penalty_usd_per_day is not None and self.deadline is None:
            raise ValueError("penalty_usd_per_day needs a deadline")
        return self


class Portfolio(OwnGpus, Strict):
    name: str = "portfolio"
    description: str | None = None
    gpus: list[GpuDefinition] = Field(
        default_factory=list,
        description="GPUs this portfolio defines, each inheriting from a catalog entry (`base:`, whose prices and "
        "procurement terms it keeps); usable as a pool's sku and a job's layout.sku",
    )
    horizon: Horizon
    pools: list[Pool] = Field(min_length=1)
    jobs: list[PortfolioJob] = Field(min_length=1)
    efficiency: EfficiencyOverride = EfficiencyOverride()
    implementation: Implementation = Implementation()
    overheads: Overheads = Overheads()

    @model_validator(mode="after")
    def _check(self) -> Portfolio:
        pools = [p.name for p in self.pools]
        dup = sorted({n for n in pools if pools.count(n) > 1})
        if dup:
            raise ValueError(f"pool names must be unique; repeated: {', '.join(dup)}")
        names = [j.name for j in self.expanded_jobs()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"job names must be unique (repeats are named NAME-1, NAME-2, ...); repeated: "
                             f"{', '.join(dup)}")
        h = self.horizon
        for j in self.jobs:
            for dep in j.after:
                if dep not in names and not any(dep == k.name for k in self.jobs):
                    raise ValueError(f"job {j.name}: after: unknown job {dep!r}")
            for p in j.pools or []:
                if p not in pools:
                    raise ValueError(f"job {j.name}: pools: unknown pool {p!r}")
            for key in ("release", "deadline"):
                day = getattr(j, key)
                if day is not None and not h.start <= day <= h.end:
                    raise ValueError(f"job {j.name}: {key} {day} is outside the horizon {h.start} to {h.end}")
        _no_cycle({j.name: j.after for j in self.jobs})
        return self

    def expanded_jobs(self) -> list[PortfolioJob]:
        """The jobs with every `repeat:` written out (NAME-1, NAME-2, ...); `after:` a repeated job means
        after all of its repeats."""
        out: list[PortfolioJob] = []
        groups = {j.name: [f"{j.name}-{i + 1}" for i in range(j.repeat.count)] for j in self.jobs if j.repeat}
        for j in self.jobs:
            after = [n for dep in j.after for n in groups.get(dep, [dep])]
            if j.repeat is None:
                out.append(j.model_copy(update={"after": after}))
                continue
            for i in range(j.repeat.count):
                shift = dt.timedelta(days=i * j.repeat.every_days)
                out.append(j.model_copy(update={
                    "name": f"{j.name}-{i + 1}", "repeat": None, "after": after,
                    "release": None if j.release is None else j.release + shift,
                    "deadline": None if j.deadline is None else j.deadline + shift,
                }))
        return out


def _no_cycle(after: dict[str, list[str]]) -> None:
    """ValueError naming a job on a cycle of `after:` (a job that waits, through others, for itself)."""
    try:
        TopologicalSorter(after).prepare()
    except CycleError as e:
        first = e.args[1][0]
        raise ValueError(f"job {first}: after: forms a cycle through {first}") from None


def load_portfolio(path: str | Path) -> Portfolio:
    """Read and validate a portfolio file (InputError naming the file and key on any problem)."""
    expect(path, (str, os.PathLike), "load_portfolio(path)")
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: a portfolio is a mapping of keys (horizon, pools, jobs), got {type(data).__name__}")
    if "pools" not in data and "jobs" not in data:
        refuse_other_formats(data, path, "portfolio", ("serving scenario", "training scenario"))
    try:
        portfolio = Portfolio.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(e, str(path))) from None
    # a config.json model path is relative to the portfolio file
    jobs = []
    for j in portfolio.jobs:
        if isinstance(j.model, str) and j.model.endswith(".json") and not Path(j.model).is_absolute():
            j = j.model_copy(update={"model": str(path.parent / j.model)})
        jobs.append(j)
    portfolio = portfolio.model_copy(update={"jobs": jobs})
    check_names(portfolio, str(path))
    return portfolio


def check_names(portfolio: Portfolio, where: str) -> None:
    """Every pool's SKU and every job's model is one the catalogs (or a config.json) know: an InputError
    naming the file and the key otherwise, before any search starts."""
    from planner.catalog import get_gpu
    from planner.scenario import resolve_model

    try:
        custom = portfolio.custom_gpus()
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    for i, pool in enumerate(portfolio.pools):
        try:
            get_gpu(pool.sku, custom)
        except InputError as e:
            raise InputError(f"{where}: pools.{i}.sku ({pool.name}): {e}") from None
    for i, job in enumerate(portfolio.jobs):
        try:
            resolve_model(job.model)
        except InputError as e:
            raise InputError(f"{where}: jobs.{i}.model ({job.name}): {e}") from None
        if job.layout.sku is not None:
            get_gpu(job.layout.sku, custom, f"{where}: jobs.{i}.layout.sku ({job.name})")


def portfolio_json_schema() -> dict[str, Any]:
    """JSON Schema of the portfolio format, for editors."""
    schema = Portfolio.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "planner portfolio"
    # the pools pick their member by `kind` (a callable discriminator, for one-line errors): say so to editors
    mapping = {get_args(cls.model_fields["kind"].annotation)[0]: f"#/$defs/{cls.__name__}"
               for cls in (OwnedPool, PurchasePool, ReservationPool, OnDemandPool)}
    schema["properties"]["pools"]["items"]["discriminator"] = {"propertyName": "kind", "mapping": mapping}
    return schema
