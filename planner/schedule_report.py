"""A schedule for people: display rows (what tables, CSV and Markdown show) and one self-contained HTML
page in the style of planner/html_report.py (tables, inline SVG plots, the assumptions, the portfolio
YAML; no script, no external file).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

from planner.html_report import CSS, table_html
from planner.search.schedule_result import ScheduleResult

CAPTIONS = {
    "gantt": "Each job from its start to the end of its GPU slot, coloured by pool; ticks mark deadlines "
             "(dashed: soft).",
    "capacity": "GPUs available in each pool over time (line: purchases arriving, reservations over their "
                "terms) and GPUs in use (filled).",
}


def job_rows(result: ScheduleResult) -> list[dict[str, Any]]:
    """One row per job, in display units."""
    return [{"job": j.name, "pool": j.pool, "sku": j.sku, "gpus": j.gpus, "layout": j.layout_text,
             "start": j.start.isoformat(), "end": j.end.isoformat(), "days": round(j.days, 1),
             "cost_usd": round(j.cost_usd), "deadline": j.deadline.isoformat() if j.deadline else "",
             "late_days": j.late_days} for j in result.jobs]


def pool_rows(result: ScheduleResult) -> list[dict[str, Any]]:
    """One row per pool: what is bought or reserved and when, utilisation, costs."""
    out = []
    for r in result.pools_frame().to_dict("records"):
        r["utilisation"] = "" if r["utilisation"] is None or r["utilisation"] != r["utilisation"] \
            else f"{r['utilisation']:.0%}"
        for k in ("usage_usd", "commitments_usd", "cost_usd"):
            r[k] = round(r[k])
        del r["pricing"]
        out.append(r)
    return out


def summary_lines(result: ScheduleResult) -> list[str]:
    """The headline: status, cost against the baseline, proof."""
    out = []
    if result.cost_usd is not None:
        if result.status == "optimal":
            gap = "proven optimal"
        elif result.gap is not None and result.bound_usd is not None:
            gap = f"within {result.gap:.2%} of the bound ${result.bound_usd:,.0f}"
        else:
            gap = "no bound"
        out.append(f"{result.status}: ${result.cost_usd:,.0f} in all ({gap}; {result.seconds:.1f} s)")
    else:
        out.append(f"{result.status}: no plan")
    b = result.baseline
    if b is not None:
        out.append(f"greedy baseline (earliest deadline first): ${b.cost_usd:,.0f}" if b.cost_usd is not None
                   else f"greedy baseline: no plan ({b.reason})")
    return out


def render(result: ScheduleResult, *, portfolio_yaml: str, figures: dict[str, Any] | None = None) -> str:
    """The page: headline, jobs, pools, how CP-SAT beats the baseline (or why nothing is feasible), plots,
    assumptions and price sources, and the portfolio file."""
    from planner.plots import svg_text
    from planner.schedule_plots import figures as make_figures

    figs = make_figures(result) if figures is None else figures
    title = f"planner schedule: {result.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _list(summary_lines(result), "summary"),
    ]
    if result.reasons:
        parts += ["<h2>Why no plan</h2>", _list(result.reasons, "reasons")]
    if result.jobs:
        parts += ["<h2>Jobs</h2>", f'<div id="jobs">{table_html(job_rows(result))}</div>',
                  "<h2>Pools</h2>", f'<div id="pools">{table_html(pool_rows(result))}</div>']
    if result.difference:
        parts += ["<h2>Against the greedy baseline</h2>", _list(result.difference, "difference")]
    if figs:
        parts.append("<h2>Plots</h2>")
        for name, fig in figs.items():
            data = base64.b64encode(svg_text(fig).encode()).decode("ascii")
            parts.append(f'<figure id="plot-{name}"><img alt="{html.escape(name)} plot" '
                         f'src="data:image/svg+xml;base64,{data}"><figcaption>'
                         f"{html.escape(CAPTIONS.get(name, ''))}</figcaption></figure>")
    parts += ["<h2>Assumptions and prices</h2>", _list(result.notes, "notes"),
              "<h2>Portfolio</h2>", f"<pre>{html.escape(portfolio_yaml)}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _list(items: Sequence[str], ident: str) -> str:
    return f'<ul class="notes" id="{ident}">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
