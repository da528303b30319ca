"""`planner schedule PORTFOLIO.yaml`: a year of jobs on owned, bought, reserved and rented GPUs, planned with
CP-SAT beside the greedy baseline; Gantt and capacity plots, a self-contained HTML report.

Exit status: 0 a plan (optimal, or feasible with its gap), 1 none (the reasons say which deadline, which
pool and by how much), 2 the input is wrong, 3 an internal error (a plan failing the independent re-check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.cli.common import run
from planner.report import Format


def schedule_command(
    portfolio: Annotated[Path, typer.Argument(help="portfolio YAML (planner schema --portfolio)", show_default=False)],
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.1, max=86_400,
                                              help="seconds for the CP-SAT search; then the best plan and its gap")]
    = 60.0,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256,
                                         help="CP-SAT threads (deterministic for a given count)")] = 1,
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", help="write the output to this file, not stdout")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="write the Gantt and capacity plots (PNG and SVG) "
                                               "into this folder")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report")] = None,
) -> None:
    """Which GPUs to buy or reserve, when, and which job runs where, when and on how many GPUs."""

    def body() -> int:
        from planner import load_portfolio, schedule
        from planner.report import render, schedule_figures, schedule_html, spinner, write_schedule_plots

        pf = load_portfolio(portfolio)
        with spinner(portfolio.name) as say:
            result = schedule(pf, time_limit=time_limit, workers=workers, progress=say)
        if out is None:
            render(result, format.value)
        else:
            with out.open("w") as fh:
                render(result, format.value, fh)
            typer.echo(f"wrote {out}", err=True)
        figs = schedule_figures(result) if plots or html else None
        if plots:
            for p in write_schedule_plots(result, plots, figs):
                typer.echo(f"wrote {p}", err=True)
        if html:
            html.write_text(schedule_html(result, portfolio.read_text(), figs))
            typer.echo(f"wrote {html}", err=True)
        return 0 if result.jobs else 1

    run(body)
