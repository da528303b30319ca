"""One self-contained static HTML page of a comparison: the tables, the plots (inline base64 SVG
images, so no file travels with it and no id of one plot can clash with another's), the price
sources and the scenario YAML. No script, no external stylesheet, font or image: it can be mailed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from planner.report.text import cell, numeric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12.5px; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; }
th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.infeasible td { color: #777; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: .8em; overflow-x: auto; font-size: 12px; }
ul.notes { color: #444; font-size: 13px; }
"""

CAPTIONS = {
    "pareto": "Cost against expected wall-clock days with failures (as planned): each point is the cheapest plan "
              "faster than the one to its right.",
    "goodput": "Goodput (ideal / expected time with failures, checkpoints and restarts) against GPU count for the "
               "best plan's job: larger clusters fail more often.",
    "cost_vs_deadline": "Cost of the cheapest plan at each deadline, each GPU at its best price option.",
    "days_vs_budget": "Days of the fastest plan within each budget, each GPU at its best price option.",
    "memory": "Per-GPU memory of each GPU's chosen plan (binding pipeline stage); the bar marks the capacity.",
    "step_time": "Seconds per optimizer step of each GPU's chosen plan, by component.",
    "throughput_latency": "Output tokens/s per GPU against TPOT and TTFT at the SLO percentile: each GPU at its "
                          "fleet's TP and largest batch limit, closed-loop clients doubling; dashed: the SLOs.",
    "cost_vs_qps": "$ per million output tokens (decode's share of the fleet's $/hour) of the cheapest fleet per GPU "
                   "at the scenario's pricing, and of the mix, against request rate.",
}


def page_head(title: str) -> str:
    """The opening of a self-contained page: doctype, the shared style and the title as its heading."""
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>")


def table_html(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of one shape as an HTML table; numbers right-aligned, rows without a plan greyed."""
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    attrs = {c: ' class="num"' if numeric(rows, c) else "" for c in cols}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = "".join(f"<td{attrs[c]}>{html.escape(cell(r.get(c)))}</td>" for c in cols)
        cls = ' class="infeasible"' if r.get("reason") else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_html(name: str, svg: str) -> str:
    data = base64.b64encode(svg.encode()).decode("ascii")
    caption = CAPTIONS.get(name, "")
    return (f'<figure id="plot-{name}"><img alt="{html.escape(name)} plot" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(
    *,
    title: str,
    notes: Sequence[str],
    table: Sequence[dict[str, Any]],
    figures: dict[str, Figure],
    scenario_yaml: str,
    sources: Sequence[dict[str, Any]] = (),
    sweep: Sequence[dict[str, Any]] = (),
    sweep_title: str = "",
) -> str:
    """The page. `table` and `sweep` are display rows (planner.report.compare.display_rows / sweep_rows)."""
    from planner.report.plots import svg_text

    parts = [
        page_head(title),
        '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
        "<h2>Every GPU and price option</h2>",
        f'<div id="comparison">{table_html(table)}</div>',
    ]
    if sweep:
        parts += [f"<h2>{html.escape(sweep_title)}</h2>", f'<div id="sweep">{table_html(sweep)}</div>']
    if figures:
        parts.append("<h2>Plots</h2>")
        parts += [figure_html(name, svg_text(fig)) for name, fig in figures.items()]
    if sources:
        parts += ["<h2>Price sources</h2>", f'<div id="sources">{table_html(sources)}</div>']
    parts += ["<h2>Scenario</h2>", f"<pre>{html.escape(scenario_yaml)}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"
