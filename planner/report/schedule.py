"""A schedule for machines and people: the JSON of `planner schedule --format json`, pandas tables, display
rows (what the rich tables, CSV and Markdown show), and one self-contained HTML page in the style of
planner/report/html.py (tables, inline SVG plots, the assumptions, the portfolio YAML; no script, no
external file).

JSON field names are the stable interface: add fields, never rename them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from planner.report.formats import to_csv, to_json, to_markdown
from planner.report.html import figure_html, page_head, table_html
from planner.report.terminal import console
from planner.report.text import cell, md_literal, rounded, usd
from planner.workloads.training.layout import as_fields

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from planner.workflows.schedule import Baseline, JobPlan, PoolPlan, ScheduleResult

CAPTIONS = {
    "gantt": "Each job from its start to the end of its GPU slot, coloured by pool; ticks mark deadlines "
             "(dashed: soft).",
    "capacity": "GPUs available in each pool over time (line: purchases arriving, reservations over their "
                "terms) and GPUs in use (filled).",
}
BASELINE_METHOD = "earliest-deadline-first list scheduling, cheapest option at its earliest start"

# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def job_dict(j: JobPlan) -> dict[str, Any]:
    return {
        "name": j.name, "pool": j.pool, "sku": j.sku, "gpus": j.gpus,
        "start": j.start.isoformat(), "end": j.end.isoformat(), "cost_usd": j.cost_usd,
        "layout": as_fields(j.layout), "layout_text": j.layout_text,
        "days": j.days, "usage_usd": j.usage_usd, "penalty_usd": j.penalty_usd,
        "deadline": None if j.deadline is None else j.deadline.isoformat(), "hard_deadline": j.hard,
        "late_days": j.late_days,
    }


def pool_dict(p: PoolPlan) -> dict[str, Any]:
    return {
        "name": p.name, "sku": p.sku,
        "purchases": [{"order_date": b.order_date.isoformat(), "arrival_date": b.arrival_date.isoformat(),
                       "gpus": b.gpus, "cost_usd": b.cost_usd} for b in p.purchases],
        "reservations": [{"start": r.start.isoformat(), "end": r.end.isoformat(), "gpus": r.gpus,
                          "cost_usd": r.cost_usd} for r in p.reservations],
        "capacity": list(p.capacity), "used": list(p.used),
        "kind": p.kind, "usage_usd": p.usage_usd, "commitments_usd": p.commitments_usd,
        "utilisation": p.utilisation, "pricing": p.pricing,
    }


def baseline_dict(b: Baseline) -> dict[str, Any]:
    return {"cost_usd": b.cost_usd, "status": b.status, "reason": b.reason, "method": BASELINE_METHOD}


def schedule_dict(r: ScheduleResult, timing: bool = True) -> dict[str, Any]:
    """The JSON of `planner schedule` (`timing=False` leaves out the seconds, for reproducible output)."""
    from planner.search.schedule_cpsat import SEED

    return {
        "status": r.status,
        "solver": {"seconds": round(r.seconds, 3) if timing else None, "gap": r.gap, "bound": r.bound_usd,
                   "engine": f"CP-SAT (ortools {version('ortools')})", "num_workers": r.workers,
                   "random_seed": SEED},
        "jobs": [job_dict(j) for j in r.jobs],
        "pools": [pool_dict(p) for p in r.pools],
        "cost_usd": r.cost_usd,
        "baseline": None if r.baseline is None else baseline_dict(r.baseline),
        "name": r.name,
        "horizon": {"start": r.horizon_start.isoformat(), "step_days": r.step_days,
                    "dates": [d.isoformat() for d in r.dates]},
        "cost_breakdown": r.cost_breakdown if r.jobs else None,
        "difference": r.difference,
        "reasons": r.reasons,
        "notes": r.notes,
    }


# --------------------------------------------------------------------------------------------
# pandas tables
# --------------------------------------------------------------------------------------------


def jobs_frame(r: ScheduleResult) -> pd.DataFrame:
    """One row per job: pool, SKU, GPUs, layout, start, end, days, costs, deadline, lateness."""
    cols = ["job", "pool", "sku", "gpus", "layout", "start", "end", "days", "usage_usd", "penalty_usd",
            "cost_usd", "deadline", "late_days"]
    return pd.DataFrame([{"job": j.name, "pool": j.pool, "sku": j.sku, "gpus": j.gpus, "layout": j.layout_text,
                          "start": j.start, "end": j.end, "days": j.days, "usage_usd": j.usage_usd,
                          "penalty_usd": j.penalty_usd, "cost_usd": j.cost_usd, "deadline": j.deadline,
                          "late_days": j.late_days} for j in r.jobs], columns=cols)


def pools_frame(r: ScheduleResult) -> pd.DataFrame:
    """One row per pool: what is bought or reserved and when, peak use, utilisation, costs."""
    cols = ["pool", "kind", "sku", "bought", "reserved", "peak_used", "utilisation", "usage_usd",
            "commitments_usd", "cost_usd", "pricing"]
    rows = [{
        "pool": p.name, "kind": p.kind, "sku": p.sku,
        "bought": "; ".join(f"{b.gpus:,} ordered {b.order_date}, arrive {b.arrival_date}" for b in p.purchases),
        "reserved": "; ".join(f"{x.gpus:,} {x.start} to {x.end}" for x in p.reservations),
        "peak_used": max(p.used, default=0), "utilisation": p.utilisation, "usage_usd": p.usage_usd,
        "commitments_usd": p.commitments_usd, "cost_usd": p.usage_usd + p.commitments_usd, "pricing": p.pricing,
    } for p in r.pools]
    return pd.DataFrame(rows, columns=cols)


def capacity_frame(r: ScheduleResult) -> pd.DataFrame:
    """One row per (pool, period): GPUs available and in use (the capacity-over-time plot's data)."""
    dates = r.dates
    return pd.DataFrame([{"pool": p.name, "date": dates[t], "capacity": p.capacity[t], "used": p.used[t]}
                         for p in r.pools for t in range(r.periods)], columns=["pool", "date", "capacity", "used"])


# --------------------------------------------------------------------------------------------
# display rows and text
# --------------------------------------------------------------------------------------------


def job_rows(r: ScheduleResult) -> list[dict[str, Any]]:
    """One row per job, in display units."""
    return [{"job": j.name, "pool": j.pool, "sku": j.sku, "gpus": j.gpus, "layout": j.layout_text,
             "start": j.start.isoformat(), "end": j.end.isoformat(), "days": rounded(j.days, 1),
             "cost_usd": round(j.cost_usd), "deadline": j.deadline.isoformat() if j.deadline else "",
             "late_days": j.late_days} for j in r.jobs]


def pool_rows(r: ScheduleResult) -> list[dict[str, Any]]:
    """One row per pool: what is bought or reserved and when, utilisation, costs."""
    out = []
    for row in pools_frame(r).to_dict("records"):
        u = row["utilisation"]
        row["utilisation"] = "" if u is None or u != u else f"{u:.1%}"
        for k in ("usage_usd", "commitments_usd", "cost_usd"):
            row[k] = round(row[k])
        del row["pricing"]
        out.append(row)
    return out


def summary_lines(r: ScheduleResult) -> list[str]:
    """The headline: status, cost against the baseline, proof."""
    out = []
    if r.cost_usd is not None:
        if r.status == "optimal":
            proof = "proven optimal"
        elif r.gap is not None and r.bound_usd is not None:
            proof = f"within {r.gap:.2%} of the bound {usd(r.bound_usd)}"
        else:
            proof = "no bound"
        out.append(f"{r.status}: {usd(r.cost_usd)} in all ({proof}; {r.seconds:.2f} s)")
    else:
        out.append(f"{r.status}: no plan")
    b = r.baseline
    if b is not None:
        out.append(f"greedy baseline (earliest deadline first): {usd(b.cost_usd)}" if b.cost_usd is not None
                   else f"greedy baseline: no plan ({b.reason})")
    return out


def text(r: ScheduleResult, fmt: str) -> str:
    """JSON (the whole result), CSV (one row per job, or the status and reasons without a plan) or
    Markdown (headline, jobs, pools, the difference to the baseline, the assumptions)."""
    if fmt == "json":
        return to_json(schedule_dict(r)) + "\n"
    if fmt == "csv":
        return to_csv(job_rows(r) or [{"status": r.status, "reasons": "; ".join(r.reasons)}])
    parts = ["\n".join(f"- {md_literal(s)}" for s in summary_lines(r))]
    if r.reasons:
        parts += ["**Why no plan**", "\n".join(f"- {md_literal(s)}" for s in r.reasons)]
    if r.jobs:
        parts += ["**Jobs**", _markdown(job_rows(r)), "**Pools**", _markdown(pool_rows(r))]
    if r.difference:
        parts += ["**Against the greedy baseline**", "\n".join(f"- {md_literal(s)}" for s in r.difference)]
    parts += ["**Assumptions and prices**", "\n".join(f"- {md_literal(s)}" for s in r.notes)]
    return "\n\n".join(parts) + "\n"


def _markdown(rows: list[dict[str, Any]]) -> str:
    """Display rows as a Markdown table, numbers with thousands separators (as the HTML page shows them)."""
    return to_markdown([{k: cell(v) for k, v in row.items()} for row in rows]).rstrip()


def print_table(r: ScheduleResult, file: IO[str] | None = None) -> None:
    """Rich tables on the one console: headline, jobs, pools, the difference, why no plan, assumptions."""
    from planner.report.tables import print_rows
    from planner.report.terminal import safe

    con = console(file)
    for line in summary_lines(r):
        con.print(safe(line))
    if r.jobs:
        print_rows(con, job_rows(r), "Jobs")
        print_rows(con, pool_rows(r), "Pools")
    for title, lines in (("Why no plan", r.reasons), ("Against the greedy baseline", r.difference),
                         ("Assumptions and prices", r.notes)):
        if lines:
            con.print(f"\n[bold]{title}[/bold]")
            for line in lines:
                con.print(f"  {safe(line)}")


# --------------------------------------------------------------------------------------------
# plots and the page
# --------------------------------------------------------------------------------------------


def schedule_figures(r: ScheduleResult) -> dict[str, Figure]:
    """The Gantt chart and the capacity-over-time plot (none without a plan)."""
    from planner.report.schedule_plots import figures

    return figures(r)


def write_schedule_plots(r: ScheduleResult, out_dir: Path, figs: dict[str, Figure] | None = None) -> list[Path]:
    """The schedule's plots as PNG and SVG in `out_dir` (created); the paths written."""
    from planner.report.plots import save

    return save(schedule_figures(r) if figs is None else figs, out_dir)


def schedule_html(r: ScheduleResult, portfolio_yaml: str, figs: dict[str, Figure] | None = None) -> str:
    """The page: headline, jobs, pools, how CP-SAT beats the baseline (or why nothing is feasible), plots,
    assumptions and price sources, and the portfolio file."""
    from planner.report.plots import svg_text

    figs = schedule_figures(r) if figs is None else figs
    title = f"planner schedule: {r.name}"
    parts = [
        page_head(title),
        _list(summary_lines(r), "summary"),
    ]
    if r.reasons:
        parts += ["<h2>Why no plan</h2>", _list(r.reasons, "reasons")]
    if r.jobs:
        parts += ["<h2>Jobs</h2>", f'<div id="jobs">{table_html(job_rows(r))}</div>',
                  "<h2>Pools</h2>", f'<div id="pools">{table_html(pool_rows(r))}</div>']
    if r.difference:
        parts += ["<h2>Against the greedy baseline</h2>", _list(r.difference, "difference")]
    if figs:
        parts.append("<h2>Plots</h2>")
        # the comparison's figure markup, with this page's captions
        parts += [figure_html(name, svg_text(fig)).replace("<figcaption></figcaption>",
                                                           f"<figcaption>{html.escape(CAPTIONS.get(name, ''))}"
                                                           "</figcaption>") for name, fig in figs.items()]
    parts += ["<h2>Assumptions and prices</h2>", _list(r.notes, "notes"),
              "<h2>Portfolio</h2>", f"<pre>{html.escape(portfolio_yaml)}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _list(items: Sequence[str], ident: str) -> str:
    return f'<ul class="notes" id="{ident}">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
