"""Synthetic but realistic portfolio instances, for the scheduler's benchmark and randomised tests.

The candidate tables are not computed by the time model (that would make a 200-job benchmark measure
the model, not the scheduler): each job gets an amount of work in H100 GPU-weeks and its run time on g
GPUs is work / (g · speed · efficiency(g)), with a parallel efficiency that drops 3 % per doubling
from 64 GPUs and a B200 2.2× as fast per GPU as an H100 (2,250 against 989 dense BF16 TFLOP/s in
catalogs/gpus.yaml), close to what `planner solve` tables show for 8B-405B models. The pools mirror
scenarios/portfolio_2027.yaml at weekly steps, with prices from catalogs/gpus.yaml and
catalogs/procurement.yaml: an owned H100 cluster, B200 purchases with a 12-week lead time, H100 1-year
reservations and H100 on demand.
"""

from __future__ import annotations

import math
import random
from typing import Any

from planner.search.schedule_instance import Instance, Option, Pool, Task

HOURS_PER_WEEK = 168
B200_SPEEDUP = 2250 / 989.4
EFFICIENCY_PER_DOUBLING = 0.97
COUNTS = (64, 128, 256, 512, 1024)  # the smallest one is the reference of the parallel efficiency
# $/GPU-hour: power of an owned or bought GPU (TDP × PUE 1.56 × $0.0806/kWh), H100 on demand
# (Hyperstack), 1-year H100 reservation (neocloud contract index, 2026-03)
H100_POWER, B200_POWER, H100_ON_DEMAND, H100_RESERVED_1Y = 0.088, 0.126, 3.20, 2.35
# a B200 bought: $64,375 per GPU (DGX B200 $515k / 8) × 1.086 network, over 5 years, + colocation
B200_HELD_PER_HOUR = 64_375 * 1.086 / (5 * 8_760) + 195 * 12 / 8_760 * 1.0 * 1.82


def synthetic_pools(periods: int, scale: int = 1) -> tuple[Pool, ...]:
    """The four pools of a lab `scale` times the size of the example's (512 owned H100s, at most 1,024
    bought B200s, 1,024 reserved and 1,024 on-demand H100s)."""
    lead = 12
    buy_starts = tuple(range(0, max(0, periods - lead)))
    reserve_starts = tuple(range(periods))
    return (
        Pool("h100-owned", "owned", "h100-sxm", capacity=(512 * scale,) * periods),
        Pool("b200-buy", "purchase", "b200", unit=8, max_gpus=1024 * scale, min_units=8, lead=lead, starts=buy_starts,
             unit_usd=tuple(math.ceil(8 * B200_HELD_PER_HOUR * HOURS_PER_WEEK * (periods - s - lead))
                            for s in buy_starts)),
        Pool("h100-reserved-1y", "reservation", "h100-sxm", unit=8, max_gpus=1024 * scale, term=52,
             starts=reserve_starts, unit_usd=(math.ceil(8 * H100_RESERVED_1Y * 8_760),) * periods),
        Pool("h100-on-demand", "on-demand", "h100-sxm", capacity=(1024 * scale,) * periods),
    )


def _hours(work_gpu_weeks: float, gpus: int, speed: float) -> float:
    eff = EFFICIENCY_PER_DOUBLING ** math.log2(gpus / COUNTS[0])
    return work_gpu_weeks * HOURS_PER_WEEK / (gpus * speed * eff)


# A lab year: (share of the jobs, work in H100 GPU-weeks, GPU counts allowed, deadline slack over the
# fastest option or None, $ per week late or None for a hard deadline)
ROLES = (
    ("pretrain", 0.08, (2_000, 10_000), (256, 512, 1024), (1.3, 2.0), None),
    ("fine-tune", 0.20, (50, 500), (64, 128, 256, 512), (2.0, 5.0), (50_000, 200_000)),
    ("eval", 0.72, (5, 80), (64, 128, 256), (2.0, 6.0), (5_000, 30_000)),
)


def _role(j: int, jobs: int) -> tuple[Any, ...]:
    """Roles in fixed proportions, interleaved deterministically over the job indices."""
    u, acc = (j + 0.5) / jobs, 0.0
    for role in ROLES:
        acc += role[1]
        if u < acc:
            return role
    return ROLES[-1]


def synthetic_instance(jobs: int, periods: int = 52, seed: int = 0) -> Instance:
    """`jobs` jobs over `periods` weeks, in the proportions of ROLES: a few pre-training runs with hard
    deadlines, fine-tunes that wait for one of them, and evaluations and ablations all year with soft
    deadlines. Pools grow with the lab: one example-sized lab per 50 jobs."""
    rnd = random.Random(seed)
    pools = synthetic_pools(periods, max(1, round(jobs / 50)))
    rates = {"h100-owned": H100_POWER, "b200-buy": B200_POWER, "h100-reserved-1y": 0.0,
             "h100-on-demand": H100_ON_DEMAND}
    tasks: list[Task] = []
    pretrains: list[int] = []
    for j in range(jobs):
        name, _, (w_lo, w_hi), counts, (s_lo, s_hi), pen = _role(j, jobs)
        work = math.exp(rnd.uniform(math.log(w_lo), math.log(w_hi)))
        options = []
        for p, pool in enumerate(pools):
            speed = B200_SPEEDUP if pool.sku == "b200" else 1.0
            for g in counts:
                h = _hours(work, g, speed)
                options.append(Option(p, g, max(1, math.ceil(h / HOURS_PER_WEEK)), math.ceil(h * 3600),
                                      math.ceil(g * h * rates[pool.name])))
        fastest = min(o.periods for o in options if not pools[o.pool].committed)  # no lead time
        after: tuple[int, ...] = ()
        if name == "pretrain":
            release = rnd.randrange(0, periods // 2)
            pretrains.append(j)
        elif name == "fine-tune" and pretrains and rnd.random() < 0.6:
            after = (rnd.choice(pretrains),)
            release = tasks[after[0]].release
        else:
            release = rnd.randrange(0, periods - 2)
        window = math.ceil(fastest * rnd.uniform(s_lo, s_hi)) + 1
        release = min(release, periods - window)
        deadline = release + window
        if after:
            deadline = periods
        # the role's $ per week late, charged per day
        penalty = 0 if pen is None else math.ceil(rnd.randrange(pen[0], pen[1] + 1, 1_000) / 7)
        tasks.append(Task(f"{name}-{j:03d}", release, deadline, penalty, after, tuple(options)))
    return Instance(periods, 7, tuple(tasks), pools)
