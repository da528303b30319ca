"""Plots of a schedule: a Gantt chart of the jobs (one row each, coloured by pool, deadlines marked) and
the capacity of every pool over time against what is in use.

Drawn like planner/report/plots.py: matplotlib imported inside the functions, figures on an Agg canvas without
pyplot, saved as PNG and SVG with `planner.report.plots.save` (reproducible SVGs).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from planner.report.plots import RC, _figure, _money

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from planner.workflows.schedule import ScheduleResult


def pool_colors(result: ScheduleResult) -> dict[str, Any]:
    """One colour per pool, the same in every figure."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {p.name: cmap(i % cmap.N) for i, p in enumerate(result.pools)}


def gantt_figure(result: ScheduleResult) -> Figure:
    """Each job a bar from its start to the end of its GPU slot, coloured by pool and labelled with its
    GPUs; a deadline is a black tick (dashed when soft)."""
    from matplotlib.dates import date2num
    from matplotlib.patches import Patch

    colors = pool_colors(result)
    jobs = result.jobs
    fig = _figure(10.0, max(3.0, 0.28 * len(jobs) + 1.6))
    ax = fig.add_subplot()
    for i, j in enumerate(jobs):
        left = date2num(j.start)
        ax.barh(i, date2num(j.end) - left, left=left, height=0.7, color=colors[j.pool], edgecolor="white",
                linewidth=0.5)
        ax.annotate(f"{j.gpus:,} × {j.sku}", (left, i), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=6.5, color="black")
        if j.deadline is not None:
            ax.plot([date2num(j.deadline)] * 2, [i - 0.4, i + 0.4], color="black", linewidth=1.2,
                    linestyle="-" if j.hard else "--")
    ax.set_yticks(range(len(jobs)), [j.name for j in jobs])
    ax.invert_yaxis()
    _date_axis(ax, result)
    used = [p for p in result.pools if any(j.pool == p.name for j in jobs)]
    ax.legend(handles=[Patch(color=colors[p.name], label=f"{p.name} ({p.kind})") for p in used],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    cost = f", {_money(result.cost_usd)}" if result.cost_usd is not None else ""
    ax.set(title=f"{result.name}: jobs over time ({result.status}{cost}); ticks mark deadlines")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def capacity_figure(result: ScheduleResult) -> Figure:
    """Per pool, GPUs available (step line; purchases arriving, reservations starting and ending) and
    GPUs in use (filled)."""
    from matplotlib.dates import date2num

    colors = pool_colors(result)
    pools = [p for p in result.pools if any(p.used) or any(c for c in p.capacity if c)]
    n = max(1, len(pools))
    fig = _figure(10.0, 1.7 * n + 0.8)
    edges = [date2num(d) for d in [*result.dates, result.dates[-1] + dt.timedelta(days=result.step_days)]]
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    for ax, p in zip(axes, pools, strict=False):
        used = list(p.used)
        ax.fill_between(edges, [*used, used[-1]], step="post", color=colors[p.name], alpha=0.55, linewidth=0,
                        label="in use")
        if all(c is not None for c in p.capacity):
            cap = [int(c or 0) for c in p.capacity]
            ax.step(edges, [*cap, cap[-1]], where="post", color="black", linewidth=1.0, label="available")
            top = max(max(cap), max(used), 1)
        else:
            top = max(max(used), 1)
            ax.annotate("no limit", (0.995, 0.9), xycoords="axes fraction", ha="right", fontsize=7, color="0.3")
        for b in p.purchases:
            ax.axvline(date2num(b.arrival_date), color="0.3", linestyle=":", linewidth=1)
            ax.annotate(f"+{b.gpus:,} arrive", (date2num(b.arrival_date), top), xytext=(2, -9),
                        textcoords="offset points", fontsize=6.5, color="0.2")
        ax.set_ylim(0, top * 1.15)
        ax.set_ylabel("GPUs", fontsize=7)
        ax.set_title(f"{p.name} ({p.kind}, {p.sku})", fontsize=8, loc="left")
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=7, frameon=False)
    _date_axis(axes[-1], result)
    return fig


def _date_axis(ax: Any, result: ScheduleResult) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num

    loc = AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))
    end = result.dates[-1] + dt.timedelta(days=result.step_days)
    ax.set_xlim(date2num(result.horizon_start), date2num(end))


def figures(result: ScheduleResult) -> dict[str, Figure]:
    """Named figures of a schedule with a plan: gantt and capacity (none without a plan)."""
    from matplotlib import rc_context

    if not result.jobs:
        return {}
    with rc_context(RC):
        return {"gantt": gantt_figure(result), "capacity": capacity_figure(result)}
