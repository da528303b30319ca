"""A serving comparison for people and machines: its display rows, the cost-against-QPS pivot, titles and notes;
JSON, CSV, Markdown and the table; the plots (throughput against latency per SKU, cost per million output tokens
against request rate) and the HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from planner.report.dicts import records
from planner.report.formats import to_json
from planner.report.tables import print_titled, titled_markdown
from planner.report.terminal import console
from planner.report.text import literal, rounded
from planner.workloads.serving.uncertainty import serving_note

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from planner.workflows.compare_serving import ServingCompareResult, ServingComparison

__all__ = ["cost_figure", "display_rows", "figures", "html_page", "latency_figure", "notes", "print_table",
           "sweep_rows", "text", "titles"]


def _num(v: Any, digits: int) -> Any:
    return None if v is None or pd.isna(v) else rounded(v, digits)


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def display_rows(df: pd.DataFrame, percentile: float) -> list[dict[str, Any]]:
    """The columns people read, rounded (the frame keeps full precision)."""
    p = f"p{percentile:g}"
    rows = []
    for r in df.to_dict(orient="records"):
        gap = r.get("gap")
        rows.append({
            "sku": r["sku"], "pricing": _text(r["pricing"]), "usd_per_gpu_hour": _num(r["usd_per_gpu_hour"], 2),
            "fleet": _text(r["fleet"]), "gpus": None if pd.isna(r["gpus"]) else int(r["gpus"]),
            "usd_per_hour": _num(r["usd_per_hour"], 2),
            "usd_per_m_input": _num(r["usd_per_million_input_tokens"], 3),
            "usd_per_m_output": _num(r["usd_per_million_output_tokens"], 3),
            f"ttft_{p}_ms": _num(r["ttft_ms"], 0), f"tpot_{p}_ms": _num(r["tpot_ms"], 1),
            "headroom": None if pd.isna(r["headroom"]) else f"{r['headroom']:.0%}",
            "vs_best": None if gap is None or pd.isna(gap) else ("best" if gap == 0 else f"{gap:+.1%}"),
            "reason": _text(r["reason"]) or "",
        })
    return rows


def sweep_rows(df: pd.DataFrame, skus: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The cost-against-QPS trace as one row per request rate and one column per SKU (in `skus` order, then the
    mix): the cheapest fleet's $/hour, None where the SKU has none."""
    ok = df[df["feasible"]]
    table = ok.groupby(["qps", "sku"], sort=False)["usd_per_hour"].min().unstack("sku")
    present = set(df["sku"])
    cols = [s for s in (skus or dict.fromkeys(df["sku"])) if s in present and s != "mix"]
    cols += ["mix"] if "mix" in present else []
    out = []
    for q in dict.fromkeys(df["qps"]):
        row: dict[str, Any] = {"qps": int(q) if float(q).is_integer() else rounded(q, 3)}
        for s in cols:
            v = table.at[q, s] if q in table.index and s in table.columns else None
            row[s] = _num(v, 2)
        out.append(row)
    return out


def titles(cmp: ServingComparison) -> tuple[str, str]:
    """(the options table's title, the sweep's)."""
    name = cmp.scenario.name
    return (f"{name}: every GPU × price option at {cmp.qps:g} requests/s, cheapest fleet first",
            f"{name}: $/hour of the cheapest fleet per GPU (the scenario's pricing) and of the mix, by request rate")


def notes(cmp: ServingComparison, base: pd.DataFrame) -> list[str]:
    """What every row assumes, for the footnotes of tables and reports."""
    s = cmp.scenario
    sv, p = s.serving, s.pricing
    slo = sv.slo
    out = [f"traffic {cmp.qps:g} requests/s; SLOs TTFT p{slo.percentile:g} ≤ {slo.ttft_ms:,g} ms and TPOT "
           f"p{slo.percentile:g} ≤ {slo.tpot_ms:,g} ms; capacity headroom {sv.search.headroom:.0%}; "
           "latencies re-simulated at each pool's load (the worst pool's shown)",
           "$ per million input and output tokens: the fleet's $/hour split by the GPU time prefill and decode take"]
    mix = base[base["sku"] == "mix"]
    if not mix.empty:
        out.append(f"mix: the fleet search over every GPU at the scenario's pricing ({p.kind}), "
                   f"{mix['mix_saving'].iat[0]:.1%} below the best single GPU at that pricing")
    elif cmp.mixes:
        out.append(f"mix: no mix of GPUs beats the best single GPU at the scenario's pricing ({p.kind})")
    if "purchase" in cmp.kinds:
        kwh = f"{p.usd_per_kwh:.2f}" if round(p.usd_per_kwh, 2) == p.usd_per_kwh else f"{p.usd_per_kwh:g}"
        out.append(f"purchase: capex amortised over {p.amortisation_years:g} years of full use, plus GPU TDP × "
                   f"PUE {p.pue:g} × ${kwh}/kWh")
    missing = [k for k in cmp.kinds if not any(o.kind == k for o in cmp.options)]
    if missing:
        out.append(f"no {', '.join(missing)} price in the catalog for these GPUs")
    if (caveat := serving_note(cmp.model)) is not None:
        out.append(caveat)
    return out


def _shown(result: ServingCompareResult) -> tuple[str, list[dict[str, Any]]]:
    cmp = result.comparison
    title, sweep_title = titles(cmp)
    if result.sweep is not None:
        return sweep_title, sweep_rows(result.sweep, cmp.skus)
    return title, display_rows(result.base, cmp.scenario.serving.slo.percentile)


def text(result: ServingCompareResult, fmt: str) -> str:
    """JSON (every row and column, `pools` included), CSV (every column but `pools`), or Markdown (the table)."""
    frame = result.frame
    if fmt == "json":
        return to_json(records(frame)) + "\n"
    if fmt == "csv":
        flat = frame.drop(columns=["pools"])
        return flat.map(lambda v: literal(v) if isinstance(v, str) else v).to_csv(index=False, lineterminator="\n")
    return titled_markdown(*_shown(result), notes(result.comparison, result.base))


def print_table(result: ServingCompareResult, file: IO[str] | None = None) -> None:
    print_titled(console(file), *_shown(result), notes(result.comparison, result.base))


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def latency_figure(curves: pd.DataFrame, cmp: ServingComparison, colors: dict[str, Any]) -> Figure:
    """Output tokens/s per GPU against TPOT (left) and TTFT (right) at the SLO percentile, one line per SKU at its
    fleet's TP and largest batch limit as closed-loop clients double; the SLOs dashed."""
    from planner.report.plots import _figure

    slo = cmp.scenario.serving.slo
    p = f"p{slo.percentile:g}"
    fig = _figure(11.0, 4.5)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, col, limit, name in ((axes[0], "tpot_ms", slo.tpot_ms, "TPOT"), (axes[1], "ttft_ms", slo.ttft_ms, "TTFT")):
        for sku, c in curves.groupby("sku", sort=False):
            label = f"{sku} tp{c['tp'].iat[0]} b{c['batch_limit'].iat[0]}"
            ax.plot(c[col], c["output_tokens_per_s_per_gpu"], marker="o", markersize=3, linewidth=1.2,
                    color=colors.get(str(sku)), label=label)
            last = c.iloc[-1]
            ax.annotate(f"{int(last['concurrency'])} clients", (last[col], last["output_tokens_per_s_per_gpu"]),
                        xytext=(3, 3), textcoords="offset points", fontsize=6, color="0.4")
        ax.axvline(limit, color="0.4", linestyle="--", linewidth=1)
        ax.annotate(f"SLO {limit:,g} ms", (limit, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", color="0.3")
        ax.set(xscale="log", xlabel=f"{name} {p} (ms)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("output tokens/s per GPU (the replica's / TP)")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    fig.suptitle("Throughput against latency per GPU, 1, 2, 4, … clients")
    return fig


def cost_figure(curve: pd.DataFrame, cmp: ServingComparison, colors: dict[str, Any]) -> Figure:
    """$ per million output tokens (decode's share of the fleet's $/hour) of the cheapest fleet per SKU and of the
    mix, against request rate; the scenario's rate dashed."""
    from matplotlib.ticker import FuncFormatter

    from planner.report.plots import _figure, _ticks

    ok = curve[curve["feasible"]]
    fig = _figure()
    ax = fig.add_subplot()
    for sku, c in ok.groupby("sku", sort=False):
        c = c.sort_values("qps")
        mix = sku == "mix"
        ax.plot(c["qps"], c["usd_per_million_output_tokens"], marker="o", markersize=3,
                linewidth=2.0 if mix else 1.2, color="black" if mix else colors.get(str(sku)),
                label="mix of GPUs" if mix else str(sku), zorder=3 if mix else 2)
    ax.axvline(cmp.qps, color="0.4", linestyle="--", linewidth=1)
    ax.annotate(f"{cmp.qps:g} requests/s", (cmp.qps, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                textcoords="offset points", color="0.3")
    ax.set(xscale="log", xlabel="requests/s", ylim=(0, None),
           ylabel=r"\$ per million output tokens (decode's share of \$/hour)",
           title=f"Cost per million output tokens against request rate ({cmp.scenario.pricing.kind} prices)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"${v:,.3g}"))  # one $ per label: no mathtext
    _ticks(ax.xaxis, lambda v, _pos: f"{v:g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    return fig


def figures(result: ServingCompareResult) -> dict[str, Figure]:
    """Named figures: throughput_latency (per SKU) and cost_vs_qps (the sweep, else the default rates)."""
    from matplotlib import rc_context

    from planner.report.plots import RC, sku_colors

    cmp = result.comparison
    colors = sku_colors(cmp.skus)
    curves, cost = cmp.latency_curves(), result.cost_curve()
    out = {}
    with rc_context(RC):
        if not curves.empty:
            out["throughput_latency"] = latency_figure(curves, cmp, colors)
        if cost["feasible"].any():
            out["cost_vs_qps"] = cost_figure(cost, cmp, colors)
    return out


def html_page(result: ServingCompareResult, scenario_yaml: str, figs: dict[str, Any] | None = None) -> str:
    """One self-contained page: the options, the cost-against-QPS trace, the plots, price sources, the scenario."""
    from planner.report.compare import source_rows
    from planner.report.html import render as page

    cmp = result.comparison
    title, sweep_title = titles(cmp)
    figs = figures(result) if figs is None else figs
    return page(title=title, notes=notes(cmp, result.base),
                table=display_rows(result.base, cmp.scenario.serving.slo.percentile), figures=figs,
                scenario_yaml=scenario_yaml, sources=source_rows(result.base),
                sweep=sweep_rows(result.cost_curve(), cmp.skus), sweep_title=sweep_title)
