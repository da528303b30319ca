"""A scenario resolved once into what the search needs: jobs (each a workload with its limits), SKU
options (GPU, node size, inventory, hourly rate) and the global limits. Nothing downstream reads the
Scenario again: catalog lookups, prices and efficiencies are settled here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.errors import InputError
from planner.model.reliability import resolve as resolve_reliability
from planner.pricing import HourlyRate, hourly_rate
from planner.scenario import FixedLayout, Job, Scenario, resolve_model
from planner.schema import GpuSku, ModelSpec, compute_dtype
from planner.workloads import Workload
from planner.workloads.expected import Basis
from planner.workloads.grid import GpuCounts
from planner.workloads.training.legality import offload_problem, sequence_problem
from planner.workloads.training.workload import TrainingWorkload

# Without any inventory or cap a job could be spread over millions of GPUs; the largest published
# training fleets are 16-32k GPUs (Llama 3: 16,384 H100), so an uncapped search stops at 32,768.
DEFAULT_MAX_GPUS = 32_768


@dataclass(frozen=True)
class SkuOption:
    """One GPU type the scenario allows, with what the scenario says about it."""

    gpu: GpuSku
    node: int  # GPUs per node (NVLink domain) in this scenario
    host: int  # GPUs per host: the unit a job's GPU count comes in where a node spans several (GpuSku.host_on)
    inventory: int | None  # the cap on this SKU across all jobs (scenario, or the price's offer); None = none
    rate: HourlyRate

    @property
    def name(self) -> str:
        return self.gpu.name


@dataclass(frozen=True)
class JobSpec:
    """One job: its workload and its own limits."""

    name: str
    workload: Workload
    deadline_days: float | None
    min_gpus: int | None = None
    max_gpus: int | None = None
    sku: str | None = None  # the catalog name of the one SKU the job must use
    gpus: int | None = None  # the one GPU count the job must use
    precision: str = "bf16"  # the tensor-core format (schema.compute_dtype): a GPU without it cannot run the job

    def counts(self, cap: int, skus: Sequence[SkuOption] = ()) -> GpuCounts:
        """The GPU counts this job may run on, at most `cap`, in whole hosts of these SKUs where a node spans
        several."""
        hosts = tuple(sorted({s.host for s in skus if s.host < s.node}))
        return GpuCounts(cap, self.min_gpus or 1, self.gpus, hosts)


@dataclass(frozen=True)
class Problem:
    """What `solve` searches: jobs, SKU options and the limits that couple the jobs."""

    jobs: tuple[JobSpec, ...]
    skus: tuple[SkuOption, ...]
    objective: str  # cost | time | cost-then-time
    skipped: tuple[str, ...] = ()  # SKUs left out, with the reason
    max_gpus: int | None = None  # all jobs together
    min_gpus: int | None = None
    budget_usd: float | None = None
    lifted_caps: bool = False  # built for an explanation: inventories and GPU caps ignored

    def cap(self, sku: SkuOption, job: JobSpec) -> int:
        """Most GPUs of `sku` that `job` may use on its own."""
        if self.lifted_caps:
            return DEFAULT_MAX_GPUS
        caps = [DEFAULT_MAX_GPUS, sku.inventory, self.max_gpus, job.max_gpus]
        return min(c for c in caps if c is not None)

    def skus_for(self, job: JobSpec) -> list[SkuOption]:
        """The SKUs one job may use (all, or the one it fixes) that have tensor cores for its precision."""
        return [s for s in self.skus if (job.sku is None or s.name == job.sku) and s.gpu.supports(job.precision)]


def basis_of(scenario: Scenario) -> Basis:
    """What the scenario holds plans to: its `reliability` (none = the ideal time) and constraints.confidence."""
    return Basis(resolve_reliability(scenario.reliability), scenario.constraints.confidence)


def scenario_jobs(scenario: Scenario) -> list[JobSpec]:
    """The scenario's main job (top-level model/job/layout, constraints.deadline_days) and its `jobs:`."""
    from planner.catalog import get_gpu

    custom = scenario.custom_gpus()

    def spec(name: str, workload: TrainingWorkload, deadline: float | None, lo: int | None,
             hi: int | None) -> JobSpec:
        fixed = workload.fixed
        key = "layout.sku" if name == scenario.name else f"jobs.{name}.layout.sku"
        return JobSpec(name, workload, deadline, lo, hi, get_gpu(fixed.sku, custom, key).name if fixed.sku else None,
                       fixed.gpus, compute_dtype(workload.job.precision, scenario.implementation.fp8_recipe))

    def workload(model: str | ModelSpec, job: Job, fixed: FixedLayout, where: str = "") -> TrainingWorkload:
        spec_ = resolve_model(model)
        if (why := sequence_problem(spec_, job.seq_len)) is not None:
            raise InputError(where + why)
        if (why := offload_problem(spec_, scenario.implementation.activation_offload_layers)) is not None:
            raise InputError(where + why)
        return TrainingWorkload.of(spec_, job, fixed, scenario.implementation, scenario.overheads,
                                   scenario.efficiency, basis_of(scenario))

    main = workload(scenario.model, scenario.job, scenario.layout)
    out = [spec(scenario.name, main, scenario.constraints.deadline_days, None, None)]
    for j in scenario.jobs:
        out.append(spec(j.name, workload(j.model, j.job, j.layout, f"jobs.{j.name}."), j.deadline_days, j.min_gpus,
                        j.max_gpus))
    names = [j.name for j in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"jobs: names must be unique (the main job is named by `name:`); repeated: {', '.join(dup)}")
    return out


def resolve_problem(scenario: Scenario, *, lift_caps: bool = False) -> Problem:
    """Catalog lookups, inventory and prices. SKUs without a price of the scenario's kind are skipped
    (and listed) when the scenario allows all SKUs; a SKU named explicitly must have one."""
    from planner.catalog import get_gpu, load_gpus

    custom = scenario.custom_gpus()  # the scenario's own `gpus:`, searched with the catalog's
    hw = scenario.hardware
    jobs = scenario_jobs(scenario)
    inventory = hw.max_gpus
    if hw.skus == "all":
        # an inventory written per SKU is the list of what one has
        names = (list(inventory) if isinstance(inventory, dict)
                 else [*load_gpus(), *(g.name for g in custom)])
        explicit = isinstance(inventory, dict)
    else:
        names, explicit = list(hw.skus), True
    fixed_skus = {j.sku for j in jobs if j.sku is not None}
    if len(jobs) == 1 and fixed_skus:
        names, explicit = list(fixed_skus), True
    skus: list[SkuOption] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for name in names:
        gpu = get_gpu(name, custom, "hardware.skus" if hw.skus != "all" else "hardware.max_gpus")
        if gpu.name in seen:
            continue
        seen.add(gpu.name)
        try:
            rate = hourly_rate(gpu, scenario.pricing)
        except InputError:
            if explicit:
                raise
            skipped.append(f"{gpu.name} (no {scenario.pricing.kind} price)")
            continue
        if isinstance(inventory, dict):
            cap = next((v for k, v in inventory.items()
                        if get_gpu(k, custom, "hardware.max_gpus").name == gpu.name), None)
        else:
            cap = inventory
        if rate.max_gpus is not None:  # the price buys no more than its offer rents together
            cap = rate.max_gpus if cap is None else min(cap, rate.max_gpus)
        node = hw.gpus_per_node or gpu.node_size
        skus.append(SkuOption(gpu, node, gpu.host_on(node), cap, rate))
    if not skus:
        raise InputError("hardware: no GPU SKU with a price to search (" + "; ".join(skipped) + ")")
    for j in jobs:
        if j.sku is not None and j.sku not in seen:
            raise InputError(f"layout.sku: {j.sku} is not among the scenario's SKUs")
    # a GPU without tensor cores for a job's precision cannot run it: listed, not searched, for that job
    idle = [s for s in skus if not any(s.gpu.supports(j.precision) for j in jobs)]
    skipped += [f"{s.name} (no {'/'.join(sorted({j.precision for j in jobs}))} tensor cores)" for s in idle]
    skus = [s for s in skus if s not in idle]
    for j in jobs:
        if not any(s.gpu.supports(j.precision) and (j.sku is None or s.name == j.sku) for s in skus):
            key = "implementation.fp8_recipe" if j.precision == "mxfp8" else "job.precision"
            where = key if j is jobs[0] or key.startswith("implementation") else f"jobs.{j.name}.{key}"
            cores = "block-scaled fp8 (Blackwell)" if j.precision == "mxfp8" else j.precision
            raise InputError(f"{where}: {j.precision} needs {cores} tensor cores, which no GPU the scenario "
                             f"allows has")
    c = scenario.constraints
    return Problem(tuple(jobs), tuple(skus), scenario.objective, tuple(skipped), c.max_gpus, c.min_gpus,
                   c.budget_usd, lift_caps)
