"""`planner compare SCENARIO.yaml`: every GPU × price option side by side, each with its optimal plan;
deadline or budget sweeps, plots, and a self-contained HTML report.

Exit status: 0 some option has a plan, 1 none has (each row says why), 2 the input is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from planner.cli.common import run
from planner.report import Format

SWEEP_MAX_POINTS = 1_000


def parse_sweep(text: str, flag: str) -> list[float]:
    """'10..90:5' → 10, 15, …, 90; '10,20,45' → those values; '30' → one value. Positive numbers."""
    from planner import InputError

    def number(s: str) -> float:
        try:
            v = float(s.strip().replace("_", ""))
        except ValueError:
            raise InputError(f"{flag}: {s.strip()!r} is not a number (give LO..HI:STEP or a comma list)") from None
        if not math.isfinite(v) or v <= 0:
            raise InputError(f"{flag}: {s.strip()} must be a positive number")
        return v

    if ".." not in text:
        return [number(v) for v in text.split(",")]
    lo_text, _, rest = text.partition("..")
    hi_text, colon, step_text = rest.partition(":")
    if not colon:
        raise InputError(f"{flag}: {text!r} needs a step: LO..HI:STEP, e.g. 10..90:5")
    lo, hi, step = number(lo_text), number(hi_text), number(step_text)
    if hi < lo:
        raise InputError(f"{flag}: {text!r} runs backwards ({hi:g} < {lo:g})")
    n = math.floor((hi - lo) / step + 1e-9) + 1
    if n > SWEEP_MAX_POINTS:
        raise InputError(f"{flag}: {text!r} is {n:,} points; at most {SWEEP_MAX_POINTS:,}")
    return [round(lo + i * step, 9) for i in range(n)]


def compare_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML", show_default=False)],
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", help="write the output to this file, not stdout")] = None,
    deadline: Annotated[str | None, typer.Option("--deadline", help="sweep the deadline, days: LO..HI:STEP or a list")]
    = None,
    budget: Annotated[str | None, typer.Option("--budget", help="sweep the budget, USD: LO..HI:STEP or a list")]
    = None,
    kinds: Annotated[str | None, typer.Option(
        "--kinds", help="price kinds to compare, comma-separated (default on-demand,reserved-1y,reserved-3y,purchase;"
        " also spot, capacity-block)")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="write the plots (PNG and SVG) into this folder")]
    = None,
    html: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="processes for sweep points "
                                                "(default: every core once a sweep is large enough to pay)")] = None,
) -> None:
    """Every GPU × price option (on-demand per provider, reserved, purchase) with its optimal plan."""

    def body() -> int:
        from planner import CompareRequest, load_scenario, run_comparison
        from planner.report import figures, html_page, progress_bar, render, write_plots

        deadlines = parse_sweep(deadline, "--deadline") if deadline else []
        budgets = parse_sweep(budget, "--budget") if budget else []
        chosen = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
        sc = load_scenario(scenario)
        request = CompareRequest(sc, deadlines=tuple(deadlines), budgets=tuple(budgets), workers=workers,
                                 **({"kinds": tuple(chosen)} if chosen is not None else {}))
        with progress_bar(scenario.name) as say:
            result = run_comparison(request, progress=say)
        if out is None:
            render(result, format.value)
        else:
            with out.open("w") as fh:
                render(result, format.value, fh)
            typer.echo(f"wrote {out}", err=True)
        figs = figures(result) if plots or html else None
        if plots:
            for p in write_plots(result, plots, figs):
                typer.echo(f"wrote {p}", err=True)
        if html:
            html.write_text(html_page(result, scenario.read_text(), figs))
            typer.echo(f"wrote {html}", err=True)
        return 0 if result.feasible else 1

    run(body)
