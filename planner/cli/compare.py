"""`planner compare SCENARIO.yaml`: every GPU × price option side by side, each with its optimal plan;
deadline or budget sweeps, plots, and a self-contained HTML report.

Exit status: 0 some option has a plan, 1 none has (each row says why), 2 the input is wrong (one line
on stderr). pandas, numpy, ortools and matplotlib load inside the command, so `planner --help` stays
fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pandas as pd

    from planner.workflows.compare import Comparison

FORMATS = ("table", "json", "csv", "markdown")
SWEEP_MAX_POINTS = 1_000
WIDE = 240  # characters per line of the table format when not printing to a terminal


def parse_sweep(text: str, flag: str) -> list[float]:
    """'10..90:5' → 10, 15, …, 90; '10,20,45' → those values; '30' → one value. Positive numbers."""
    from planner.errors import InputError

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
    format: Annotated[str, typer.Option("--format", "-f", help="table, json, csv or markdown")] = "table",
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
    from planner.errors import InfeasibleError, InputError

    try:
        if format not in FORMATS:
            raise InputError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
        deadlines = parse_sweep(deadline, "--deadline") if deadline else []
        budgets = parse_sweep(budget, "--budget") if budget else []
        if deadlines and budgets:
            raise InputError("--deadline and --budget: sweep one limit at a time")
        chosen = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
        cmp, base, sweep = run(scenario, chosen, deadlines, budgets, workers)
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(InputError.exit_code) from None
    by = "deadline_days" if deadlines else "budget_usd" if budgets else None
    if out is None:
        emit(cmp, base, sweep, by, format, None)
    else:
        with out.open("w") as fh:
            emit(cmp, base, sweep, by, format, fh)
        typer.echo(f"wrote {out}", err=True)
    if plots or html:
        from planner.report import plots as plotting

        figs = plotting.figures(base, cmp.pareto(), sweep, by, cmp.scenario.constraints.deadline_days)
        if plots:
            for p in plotting.save(figs, plots):
                typer.echo(f"wrote {p}", err=True)
        if html:
            html.write_text(report(cmp, base, sweep, by, figs, scenario.read_text()))
            typer.echo(f"wrote {html}", err=True)
    frame = sweep if sweep is not None else base
    if not frame["feasible"].any():
        raise typer.Exit(InfeasibleError.exit_code)


def run(scenario: Path, kinds: list[str] | None, deadlines: list[float], budgets: list[float],
        workers: int | None) -> tuple[Comparison, pd.DataFrame, pd.DataFrame | None]:
    """Evaluate every option once, then the scenario's own limits and any sweep, with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from planner.scenario import load_scenario
    from planner.workflows.compare import DEFAULT_KINDS, Comparison

    sc = load_scenario(scenario)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    err = Console(stderr=True)
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"{scenario.name}: resolving", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, description=f"{scenario.name}: {what}", completed=done, total=total or None)

        cmp = Comparison(sc, kinds=kinds or DEFAULT_KINDS, progress=progress)
        progress(0, 0, "choosing a plan per option")
        base = cmp.frame()
        sweep = None
        if deadlines or budgets:
            sweep = cmp.sweep(deadlines=deadlines, budgets=budgets, workers=workers, progress=progress)
    return cmp, base, sweep


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def titles(cmp: Comparison, by: str | None) -> tuple[str, str]:
    name = cmp.scenario.name
    sweep = ("cost of the cheapest plan per GPU (its best price option) by deadline, days" if by == "deadline_days"
             else "days of the fastest plan per GPU (its best price option) by budget, USD")
    return f"{name}: every GPU × price option, best first", f"{name}: {sweep}"


def emit(cmp: Comparison, base: pd.DataFrame, sweep: pd.DataFrame | None, by: str | None, fmt: str,
         fh: Any) -> None:
    from planner.report.formats import to_json
    from planner.workflows.compare import display_rows, records, sweep_rows

    frame = sweep if sweep is not None else base
    if fmt == "json":
        text = to_json(records(frame)) + "\n"
    elif fmt == "csv":
        text = frame.to_csv(index=False, lineterminator="\n")
    elif fmt == "markdown":
        title, sweep_title = titles(cmp, by)
        if sweep is not None and by is not None:
            text = f"**{sweep_title}**\n\n" + markdown(sweep_rows(sweep, by, cmp.skus))
        else:
            text = f"**{title}**\n\n" + markdown(display_rows(base))
        text += "\n" + "".join(f"- {n}\n" for n in cmp.notes(by))
    else:
        from rich.console import Console

        from planner.report.tables import print_rows
        from planner.workflows.compare import cell

        con = Console(file=fh, width=WIDE, no_color=True) if fh else Console()
        if not con.is_terminal:  # piped or a file: no terminal width to wrap a dozen columns into
            con.width = WIDE
        title, sweep_title = titles(cmp, by)
        if sweep is not None and by is not None:
            print_rows(con, sweep_rows(sweep, by, cmp.skus), sweep_title, cell)
        else:
            print_rows(con, display_rows(base), title, cell)
        for n in cmp.notes(by):
            con.print(f"[dim]{n}[/]")
        return
    if fh:
        fh.write(text)
    else:
        typer.echo(text, nl=False)


def markdown(rows: list[dict[str, Any]]) -> str:
    from planner.report.formats import to_markdown
    from planner.workflows.compare import cell

    return to_markdown([{k: cell(v) for k, v in r.items()} for r in rows])


def report(cmp: Comparison, base: pd.DataFrame, sweep: pd.DataFrame | None, by: str | None, figs: dict[str, Any],
           scenario_yaml: str) -> str:
    from planner.report.html import render
    from planner.workflows.compare import display_rows, source_rows, sweep_rows

    title, sweep_title = titles(cmp, by)
    return render(title=title, notes=cmp.notes(), table=display_rows(base), figures=figs, scenario_yaml=scenario_yaml,
                  sources=source_rows(base), sweep=sweep_rows(sweep, by, cmp.skus) if sweep is not None and by else (),
                  sweep_title=sweep_title)
