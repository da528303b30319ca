"""A portfolio as integers: what the CP-SAT model, the greedy baseline, the exhaustive reference and the
re-check all read.

Time is counted in whole periods (a day or a week) from the horizon start. Every rounding goes against
the plan: a job holds its GPUs for whole periods (its run time rounded up), a release date rounds up to
the next period start, a hard deadline down to the last period end before it, a lead time up. A soft
deadline's penalty counts the days from its own date to the end of the job's last period (late_days). Money is whole
US dollars, rounded up per option and per commitment unit, so a plan the solver accepts never costs
less than the prices say.

A pool is either a fixed capacity per period (an owned cluster, an on-demand quota or an unlimited
on-demand offer), or a capacity decided by commitments: a purchase order of `units` × `unit` GPUs
placed at period s arrives at s + lead and stays; a reservation starting at s lasts `term` periods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

PoolKind = Literal["owned", "purchase", "reservation", "on-demand"]
POOL_KINDS: tuple[PoolKind, ...] = ("owned", "purchase", "reservation", "on-demand")


@dataclass(frozen=True)
class Option:
    """One way to run a task: on one pool with a GPU count, for a duration, at a usage cost."""

    pool: int
    gpus: int
    periods: int  # capacity held: whole periods, the run time rounded up
    seconds: int  # the run time the duration was computed from
    usage_usd: int  # GPU-hours × the pool's usage rate (on-demand price, power, running cost), rounded up
    row: int = -1  # the job's candidate-table row (its layout); -1 for synthetic tables


@dataclass(frozen=True)
class Task:
    """One job: when it may start, when it should end, what it waits for, and how it may run."""

    name: str
    release: int  # first period it may start in
    deadline: int | None  # it should end by the start of this period (None: by the horizon end)
    penalty_usd: int  # per day late; 0 = a hard deadline
    after: tuple[int, ...]  # tasks that must end before it starts
    options: tuple[Option, ...]
    # the deadline in days from the horizon start, which a soft deadline's lateness counts from (None: the period
    # boundary `deadline`); a hard deadline rounds down to `deadline`
    due_day: int | None = None

    @property
    def hard(self) -> bool:
        return self.deadline is not None and self.penalty_usd == 0

    def due(self, step_days: int) -> int | None:
        """The deadline in days from the horizon start (None without one)."""
        if self.deadline is None:
            return None
        return self.due_day if self.due_day is not None else self.deadline * step_days


@dataclass(frozen=True)
class Pool:
    """GPUs of one SKU on one footing. `capacity` is the fixed GPUs per period (None: unlimited, or
    decided by commitments when `starts` is not empty)."""

    name: str
    kind: PoolKind
    sku: str
    capacity: tuple[int, ...] | None = None
    unit: int = 1  # GPUs per commitment unit (a node)
    max_gpus: int | None = None  # commitments: most GPUs held at any time
    min_units: int = 1  # smallest commitment (a purchase's minimum order), in units
    lead: int = 0  # periods from a commitment to its capacity (purchase lead time)
    term: int | None = None  # periods the capacity lasts (a reservation's term); None = to the end
    starts: tuple[int, ...] = ()  # periods a commitment may be made in
    unit_usd: tuple[int, ...] = ()  # cost of one unit committed in each of `starts`

    @property
    def committed(self) -> bool:
        """Capacity decided by commitments (purchases, reservations), not given."""
        return self.kind in ("purchase", "reservation")

    def active(self, start: int, period: int) -> bool:
        """Whether a commitment made in `start` provides capacity in `period`."""
        first = start + self.lead
        return first <= period and (self.term is None or period < first + self.term)

    def covers(self, start: int, first: int, end: int) -> bool:
        """Whether a commitment made in `start` provides capacity in every period of [first, end)."""
        begin = start + self.lead
        return begin <= first and (self.term is None or end <= begin + self.term)

    def fixed(self, period: int) -> int | None:
        """The given capacity in a period (None: unlimited or committed)."""
        return None if self.capacity is None else self.capacity[period]


@dataclass(frozen=True)
class Instance:
    periods: int
    step_days: int
    tasks: tuple[Task, ...]
    pools: tuple[Pool, ...]

    def index(self, name: str) -> int:
        return next(i for i, t in enumerate(self.tasks) if t.name == name)


@dataclass(frozen=True)
class Commitment:
    pool: int
    period: int  # when ordered (purchase) or started (reservation)
    units: int


@dataclass(frozen=True)
class Decisions:
    """A schedule: an option and a start period per task, and the commitments made."""

    choice: tuple[int, ...]
    start: tuple[int, ...]
    commitments: tuple[Commitment, ...] = field(default_factory=tuple)

    def option(self, inst: Instance, j: int) -> Option:
        return inst.tasks[j].options[self.choice[j]]

    def end(self, inst: Instance, j: int) -> int:
        return self.start[j] + self.option(inst, j).periods


# --------------------------------------------------------------------------------------------
# Accounting (the objective, written once for the baseline and the result; the re-check recomputes it)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    usage_usd: int  # on-demand hours, power and running costs of the GPU-hours used
    commitments_usd: int  # purchases (amortised over the horizon) and reservations (their whole term)
    penalty_usd: int  # tardiness

    @property
    def total_usd(self) -> int:
        return self.usage_usd + self.commitments_usd + self.penalty_usd


def commitment_usd(pool: Pool, c: Commitment) -> int:
    return c.units * pool.unit_usd[pool.starts.index(c.period)]


def late_days(inst: Instance, j: int, end: int) -> int:
    """Days task j ending at period `end` is past its deadline, counted from the deadline's date (a soft deadline is
    charged `penalty_usd` for each): the end of period `end` is day end × step_days."""
    due = inst.tasks[j].due(inst.step_days)
    return 0 if due is None else max(0, end * inst.step_days - due)


def costs(inst: Instance, d: Decisions) -> Costs:
    usage = sum(d.option(inst, j).usage_usd for j in range(len(inst.tasks)))
    commit = sum(commitment_usd(inst.pools[c.pool], c) for c in d.commitments)
    penalty = sum(t.penalty_usd * late_days(inst, j, d.end(inst, j)) for j, t in enumerate(inst.tasks))
    return Costs(usage, commit, penalty)


def capacity_profile(inst: Instance, pool_index: int, commitments: Sequence[Commitment]) -> list[int] | None:
    """GPUs available in each period (None: unlimited)."""
    pool = inst.pools[pool_index]
    if pool.capacity is not None:
        return list(pool.capacity)
    if not pool.committed:
        return None
    cap = [0] * inst.periods
    for c in commitments:
        if c.pool == pool_index:
            for t in range(inst.periods):
                if pool.active(c.period, t):
                    cap[t] += c.units * pool.unit
    return cap


def usage_profile(inst: Instance, d: Decisions, pool_index: int) -> list[int]:
    """GPUs in use in each period."""
    used = [0] * inst.periods
    for j in range(len(inst.tasks)):
        o = d.option(inst, j)
        if o.pool == pool_index:
            for t in range(d.start[j], min(inst.periods, d.start[j] + o.periods)):
                used[t] += o.gpus
    return used


# --------------------------------------------------------------------------------------------
# What each option needs before any other job is placed
# --------------------------------------------------------------------------------------------


def earliest_capacity(inst: Instance, pool_index: int) -> int:
    """First period a pool can provide any GPU."""
    pool = inst.pools[pool_index]
    if pool.capacity is not None:
        return next((t for t, c in enumerate(pool.capacity) if c > 0), inst.periods)
    if pool.committed:
        return min((s + pool.lead for s in pool.starts), default=inst.periods)
    return 0


def most_gpus(inst: Instance, pool_index: int) -> int | None:
    """The most GPUs a pool can ever provide at once (None: unlimited)."""
    pool = inst.pools[pool_index]
    if pool.capacity is not None:
        return max(pool.capacity, default=0)
    if pool.committed:
        return pool.max_gpus
    return None


def first_window(capacity: Sequence[int], gpus: int, periods: int, after: int) -> int | None:
    """First period from `after` that starts `periods` periods in a row with at least `gpus` GPUs."""
    run = 0
    for p in range(after, len(capacity)):
        run = run + 1 if capacity[p] >= gpus else 0
        if run == periods:
            return p - periods + 1
    return None


def option_start(inst: Instance, j: int, k: int) -> int | None:
    """The earliest period option k of task j could start in on its own, from its release and its pool alone (None:
    never: more GPUs than the pool ever holds, or no run of periods with that many)."""
    t, o = inst.tasks[j], inst.tasks[j].options[k]
    pool = inst.pools[o.pool]
    top = most_gpus(inst, o.pool)
    if top is not None and o.gpus > top:
        return None
    if pool.capacity is not None:
        return first_window(pool.capacity, o.gpus, o.periods, t.release)
    return max(t.release, earliest_capacity(inst, o.pool))


def option_problem(inst: Instance, j: int, k: int) -> str | None:
    """Why option k of task j can never be used on its own (None: it can)."""
    t, o = inst.tasks[j], inst.tasks[j].options[k]
    pool = inst.pools[o.pool]
    top = most_gpus(inst, o.pool)
    if top is not None and o.gpus > top:
        return f"{o.gpus:,} GPUs > the {top:,} {pool.name} can hold"
    first = option_start(inst, j, k)
    if first is None:
        return f"{pool.name} never has {o.gpus:,} GPUs for {o.periods} periods in a row after the release"
    if first + o.periods > inst.periods:
        return f"runs {o.periods} periods from period {first}, past the horizon ({inst.periods})"
    if t.hard and t.deadline is not None and first + o.periods > t.deadline:
        return f"ends in period {first + o.periods} at the earliest, deadline {t.deadline}"
    return None


def viable(inst: Instance) -> list[list[int]]:
    """Per task, the options that can be used on their own (what every search considers)."""
    return [[k for k in range(len(t.options)) if option_problem(inst, j, k) is None]
            for j, t in enumerate(inst.tasks)]


def topological(inst: Instance) -> list[int]:
    """Tasks in an order where every task follows the tasks it waits for (ValueError on a cycle): a depth-first
    post-order, walked with an explicit stack so that a long chain of `after:` cannot exhaust the recursion limit."""
    order: list[int] = []
    state = [0] * len(inst.tasks)  # 0 new, 1 on the stack, 2 done
    for root in range(len(inst.tasks)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, iter(inst.tasks[root].after))]
        while stack:
            j, deps = stack[-1]
            for i in deps:
                if state[i] == 1:
                    raise ValueError(f"`after:` forms a cycle through {inst.tasks[i].name}")
                if state[i] == 0:
                    state[i] = 1
                    stack.append((i, iter(inst.tasks[i].after)))
                    break
            else:
                stack.pop()
                state[j] = 2
                order.append(j)
    return order


def earliest_starts(inst: Instance, options: Sequence[Sequence[int]]) -> list[int]:
    """Each task's earliest start: its release, its pools' first capacity, and its predecessors'
    fastest possible ends."""
    est = [0] * len(inst.tasks)
    for j in topological(inst):
        t = inst.tasks[j]
        pred = [est[i] + min((inst.tasks[i].options[k].periods for k in options[i]), default=inst.periods)
                for i in t.after]
        ready = min((earliest_capacity(inst, t.options[k].pool) for k in options[j]), default=0)
        est[j] = max([t.release, ready, *pred])
    return est


def latest_ends(inst: Instance, options: Sequence[Sequence[int]], *, hard: bool = True) -> list[int]:
    """Each task's latest end: the horizon end, its hard deadline (with `hard`), and room for its
    successors' fastest options before theirs."""
    T = inst.periods
    due = [min(T, t.deadline) if hard and t.hard and t.deadline is not None else T for t in inst.tasks]
    fastest = [min((t.options[k].periods for k in options[j]), default=T) for j, t in enumerate(inst.tasks)]
    for j in reversed(topological(inst)):
        for i in inst.tasks[j].after:
            due[i] = min(due[i], due[j] - fastest[j])
    return due


def undominated(inst: Instance, options: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """Per task, the viable options no other option of it beats: one on the same pool with no more
    GPUs, no more periods and no more cost can replace it in any schedule (ties keep the first)."""
    out = []
    for j, ks in enumerate(options if options is not None else viable(inst)):
        opts = inst.tasks[j].options
        keep = []
        for k in ks:
            a = opts[k]
            if not any(b.pool == a.pool and b.gpus <= a.gpus and b.periods <= a.periods and b.usage_usd <= a.usage_usd
                       and ((b.gpus, b.periods, b.usage_usd) != (a.gpus, a.periods, a.usage_usd) or i < k)
                       for i in ks if i != k for b in (opts[i],)):
                keep.append(k)
        out.append(keep)
    return out


def useful_starts(inst: Instance, pool_index: int) -> list[int]:
    """The commitment periods of a pool worth considering: a start is dropped when another costs no
    more and provides capacity in every period it does (a reservation whose term runs past the horizon
    end is best started as early as it may be)."""
    pool = inst.pools[pool_index]
    cover = {s: frozenset(t for t in range(inst.periods) if pool.active(s, t)) for s in pool.starts}
    cost = dict(zip(pool.starts, pool.unit_usd, strict=True))
    keep = []
    for s in pool.starts:
        if not cover[s]:
            continue
        if any(cost[r] <= cost[s] and cover[r] >= cover[s] and ((cost[r], len(cover[r])) != (cost[s], len(cover[s]))
                                                                 or r < s)
               for r in pool.starts if r != s):
            continue
        keep.append(s)
    return keep
