"""`planner schedule PORTFOLIO.yaml`: a year of jobs on owned, bought, reserved and rented GPUs, planned with
CP-SAT beside the greedy baseline; Gantt and capacity plots, a self-contained HTML report.

Exit status: 0 a plan (optimal, or feasible with its gap), 1 none (the reasons say which deadline, which
pool and by how much), 2 the input is wrong, 3 an internal error (a plan failing the independent re-check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner import MAX_TIME_LIMIT_S, MAX_WORKERS
from planner.cli.common import output_dir, output_file, run, write_report
from planner.report import Format


def schedule_command(
    portfolio: Annotated[Path, typer.Argument(help="portfolio YAML (planner schema --portfolio)", show_default=False)],
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.1, max=MAX_TIME_LIMIT_S,
                                              help="seconds for the CP-SAT search; then the best plan and its gap")]
    = 60.0,
    workers: Annotated[int, typer.Option("--workers", min=1, max=MAX_WORKERS,
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
        from planner.report import schedule_figures, schedule_html, spinner, write_schedule_plots

        for path, flag in ((out, "--out"), (html, "--html")):
            output_file(path, flag)
        output_dir(plots, "--plots")
        pf = load_portfolio(portfolio)
        with spinner(portfolio.name) as say:
            result = schedule(pf, time_limit=time_limit, workers=workers, progress=say)
        write_report(result, format.value, out, plots, html, figures=schedule_figures,
                     write_plots=write_schedule_plots, page=schedule_html, source=portfolio)
        return 0 if result.jobs else 1

    run(body, portfolio)
