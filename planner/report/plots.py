"""Plots of a comparison: the cost vs wall-clock Pareto front per SKU, the sweep curve, and the memory
and step-time breakdowns of the chosen plans as stacked bars.

matplotlib is imported inside the functions, and figures are drawn on an Agg canvas without pyplot:
no global figure registry, no interactive backend, nothing to close. Every figure is saved as PNG
and SVG; SVGs are reproducible (fixed hash salt, no date).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from planner.model.perf import BREAKDOWN_KEYS
from planner.workflows.compare import MEMORY_PARTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RC: dict[Any, Any] = {"svg.hashsalt": "planner", "svg.fonttype": "path", "font.size": 9}
PNG_DPI = 150


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def sku_colors(skus: list[str]) -> dict[str, Any]:
    """One colour per SKU, the same in every figure."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(skus) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(skus)}


def _money(v: float, _pos: int | None = None) -> str:
    return f"${v / 1e6:,.3g}M" if abs(v) >= 1e6 else f"${v / 1e3:,.3g}k" if abs(v) >= 1e3 else f"${v:,.0f}"


def _ticks(axis: Any, fmt: Any) -> None:
    """Label a log axis at 1, 2 and 5 per decade: one decade of cost needs more than its end points."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_formatter(FuncFormatter(fmt))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(fmt))


def chosen(base: pd.DataFrame) -> pd.DataFrame:
    """Each SKU's best feasible row (rows come best first)."""
    return base[base["feasible"]].drop_duplicates("sku")


def pareto_figure(pareto: pd.DataFrame, colors: dict[str, Any], deadline_days: float | None) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    for sku, front in pareto.groupby("sku", sort=False):
        front = front.sort_values("days")
        rate = front["usd_per_gpu_hour"].iat[0]
        ax.plot(front["days"], front["cost_usd"], drawstyle="steps-post", marker="o", markersize=3, linewidth=1.2,
                color=colors.get(str(sku)), label=f"{sku} ({front['pricing'].iat[0]}, ${rate:,.2f}/GPU-h)")
    if deadline_days is not None:
        ax.axvline(deadline_days, color="0.4", linestyle="--", linewidth=1)
        ax.annotate(f"deadline {deadline_days:g} d", (deadline_days, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", color="0.3")
    ax.set(xscale="log", yscale="log", xlabel="wall-clock days", ylabel="cost",
           title="Cost vs time: the Pareto front per SKU (its lowest hourly rate)")
    _ticks(ax.yaxis, _money)
    _ticks(ax.xaxis, lambda v, _pos: f"{v:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    return fig


def sweep_figure(sweep: pd.DataFrame, by: str, colors: dict[str, Any]) -> Figure:
    """Cost vs deadline (deadline sweep) or days vs budget (budget sweep), each SKU at its best option."""
    from matplotlib.ticker import FuncFormatter

    value = "cost_usd" if by == "deadline_days" else "days"
    ok = sweep[sweep["feasible"]]
    curves = ok.groupby(["sku", by], sort=False)[value].min().reset_index()
    fig = _figure()
    ax = fig.add_subplot()
    for sku, c in curves.groupby("sku", sort=False):
        ax.plot(c[by], c[value], marker="o", markersize=3, linewidth=1.2, color=colors.get(str(sku)), label=str(sku))
    if by == "deadline_days":
        ax.set(yscale="log", xlabel="deadline (days)", ylabel="cost of the cheapest plan",
               title="Cost vs deadline per SKU")
        _ticks(ax.yaxis, _money)
    else:
        ax.set(xlabel="budget", ylabel="days of the fastest plan", title="Time vs budget per SKU")
        ax.xaxis.set_major_formatter(FuncFormatter(_money))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    return fig


def _stacked(ax: Axes, labels: list[str], parts: dict[str, list[float]]) -> None:
    from matplotlib import colormaps

    cmap = colormaps["Set2"]
    bottom = [0.0] * len(labels)
    for i, (name, values) in enumerate(parts.items()):
        if not any(values):
            continue
        ax.bar(labels, values, bottom=bottom, label=name, color=cmap(i % cmap.N), width=0.6)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    ax.tick_params(axis="x", labelsize=7)


def _bars_width(n: int) -> float:
    return min(13.0, max(6.0, 0.7 * n + 2.5))


def memory_figure(base: pd.DataFrame) -> Figure:
    rows = chosen(base)
    labels = [f"{r.sku}\n{r.gpus:,} GPUs" for r in rows.itertuples()]
    fig = _figure(_bars_width(len(rows)))
    ax = fig.add_subplot()
    _stacked(ax, labels, {p: rows[f"memory_{p}_gib"].tolist() for p in MEMORY_PARTS})
    ax.scatter(labels, rows["capacity_gib"], marker="_", s=900, color="black", zorder=3, label="capacity")
    ax.set(ylabel="GiB per GPU (binding pipeline stage)", title="Memory of each SKU's chosen plan")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def step_figure(base: pd.DataFrame) -> Figure:
    rows = chosen(base)
    labels = [f"{r.sku}\n{r.gpus:,} GPUs" for r in rows.itertuples()]
    fig = _figure(_bars_width(len(rows)))
    ax = fig.add_subplot()
    _stacked(ax, labels, {p.replace("_", " "): rows[f"step_{p}_s"].tolist() for p in BREAKDOWN_KEYS})
    ax.set(ylabel="seconds per optimizer step", title="Step time of each SKU's chosen plan")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def figures(base: pd.DataFrame, pareto: pd.DataFrame, sweep: pd.DataFrame | None = None, by: str | None = None,
            deadline_days: float | None = None) -> dict[str, Figure]:
    """Named figures: pareto, cost_vs_deadline or days_vs_budget (with a sweep), memory, step_time."""
    from matplotlib import rc_context

    colors = sku_colors(list(dict.fromkeys(base["sku"])))
    out = {}
    with rc_context(RC):  # text sizes are read when the artists are made
        if not pareto.empty:
            out["pareto"] = pareto_figure(pareto, colors, deadline_days)
        if sweep is not None and by is not None and sweep["feasible"].any():
            out["cost_vs_deadline" if by == "deadline_days" else "days_vs_budget"] = sweep_figure(sweep, by, colors)
        if base["feasible"].any():
            out["memory"] = memory_figure(base)
            out["step_time"] = step_figure(base)
    return out


def svg_text(fig: Figure) -> str:
    import io

    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def save(figs: dict[str, Figure], out_dir: Path) -> list[Path]:
    """Each figure as NAME.png and NAME.svg in out_dir (created)."""
    from matplotlib import rc_context

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with rc_context(RC):
        for name, fig in figs.items():
            png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
            fig.savefig(png, dpi=PNG_DPI, metadata={"Software": None})
            fig.savefig(svg, metadata={"Date": None})
            paths += [png, svg]
    return paths
