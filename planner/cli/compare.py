"""`planner compare SCENARIO.yaml`: every GPU × price option side by side, each with its optimal plan;
deadline or budget sweeps, plots, and a self-contained HTML report. A serving scenario (a `serving:` block)
gets the cheapest fleet per GPU × price option, the mix of GPUs when it is cheaper, and `--qps` sweeps.

Exit status: 0 some option has a plan, 1 none has (each row says why), 2 the input is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated

import typer

from planner import MAX_BUDGET_USD, MAX_DAYS, MAX_QPS, MAX_SWEEP_POINTS, MAX_WORKERS, MIN_QPS
from planner.cli.basis import ConfidenceFlag, ReliabilityFlag, ReliabilityOpt, reliability_value
from planner.cli.common import output_dir, output_file, run, write_report
from planner.report import Format

# What each swept flag may reach (the scenario keys' own bounds).
SWEEP_HIGH = {"--deadline": MAX_DAYS, "--budget": MAX_BUDGET_USD, "--qps": MAX_QPS}  # --qps: as `planner serve --qps`
SWEEP_LOW = {"--qps": MIN_QPS}


def parse_sweep(text: str, flag: str) -> list[float]:
    """'10..90:5' → 10, 15, …, 90; '10,20,45' → those values; '30' → one value. Positive numbers up to
    the flag's bound, at most MAX_SWEEP_POINTS of them."""
    from planner import InputError

    high, low = SWEEP_HIGH.get(flag, math.inf), SWEEP_LOW.get(flag, 0.0)

    def number(s: str) -> float:
        try:
            v = float(s.strip().replace("_", ""))
        except ValueError:
            raise InputError(f"{flag}: {s.strip()!r} is not a number (give LO..HI:STEP or a comma list)") from None
        if not math.isfinite(v) or v <= 0 or v > high or v < low:
            lo = f"from {low:g} " if low else "positive, "
            raise InputError(f"{flag}: {s.strip()} must be a number {lo}up to {high:g}")
        return v

    def count(n: int) -> int:
        if n > MAX_SWEEP_POINTS:
            raise InputError(f"{flag}: {n:,} points; at most {MAX_SWEEP_POINTS:,}")
        return n

    if ".." not in text:
        items = text.split(",", MAX_SWEEP_POINTS)  # a longer list is refused before it is read
        count(len(items) if len(items) <= MAX_SWEEP_POINTS else text.count(",") + 1)
        return [number(v) for v in items]
    lo_text, _, rest = text.partition("..")
    hi_text, colon, step_text = rest.partition(":")
    if not colon:
        raise InputError(f"{flag}: {text!r} needs a step: LO..HI:STEP, e.g. 10..90:5")
    lo, hi, step = number(lo_text), number(hi_text), number(step_text)
    if hi < lo:
        raise InputError(f"{flag}: {text!r} runs backwards ({hi:g} < {lo:g})")
    n = count(math.floor((hi - lo) / step + 1e-9) + 1)
    return [round(lo + i * step, 9) for i in range(n)]


def compare_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML", show_default=False)],
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    out: Annotated[Path | None, typer.Option("--out", help="write the output to this file, not stdout")] = None,
    deadline: Annotated[str | None, typer.Option("--deadline", help="sweep the deadline, days: LO..HI:STEP or a list")]
    = None,
    budget: Annotated[str | None, typer.Option("--budget", help="sweep the budget, USD: LO..HI:STEP or a list")]
    = None,
    qps: Annotated[str | None, typer.Option(
        "--qps", help="serving scenarios: sweep the request rate, requests/s: LO..HI:STEP or a list")] = None,
    kinds: Annotated[str | None, typer.Option(
        "--kinds", help="price kinds to compare, comma-separated (default on-demand,reserved-1y,reserved-3y,purchase;"
        " also spot, capacity-block)")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="write the plots (PNG and SVG) into this folder")]
    = None,
    html: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=MAX_WORKERS,
        help="processes for sweep points (default: every core once a sweep is large enough to pay)")] = None,
    confidence: ConfidenceFlag = None,
    reliability: ReliabilityFlag = ReliabilityOpt.scenario,
) -> None:
    """Every GPU × price option (on-demand per provider, reserved, purchase) with its optimal plan (training) or
    its cheapest fleet within the SLOs (serving)."""

    def body() -> int:
        from planner import (
            CompareRequest,
            InputError,
            compare_serving,
            is_serving_file,
            load_scenario,
            run_comparison,
            with_basis,
        )
        from planner.report import figures, html_page, progress_bar, write_plots

        output_file(out, "--out")
        output_file(html, "--html")
        output_dir(plots, "--plots")
        for flag, given_text in (("--deadline", deadline), ("--budget", budget), ("--qps", qps), ("--kinds", kinds)):
            if given_text is not None and not given_text.strip():
                raise InputError(f"{flag}: empty; give a value or leave the flag out")
        deadlines = parse_sweep(deadline, "--deadline") if deadline else []
        budgets = parse_sweep(budget, "--budget") if budget else []
        rates = parse_sweep(qps, "--qps") if qps else []
        chosen = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
        if is_serving_file(scenario):
            training = {"--deadline": deadline, "--budget": budget, "--workers": workers, "--confidence": confidence,
                        "--reliability": None if reliability is ReliabilityOpt.scenario else reliability}
            given = [flag for flag, value in training.items() if value is not None]
            if given:
                raise InputError(f"{given[0]}: applies to training scenarios; {scenario} is a serving scenario "
                                 "(sweep its request rate with --qps)")
            with progress_bar(scenario.name) as say:
                served = compare_serving(scenario, qps=rates, progress=say,
                                         **({"kinds": tuple(chosen)} if chosen is not None else {}))
            write_report(served, format.value, out, plots, html, figures=figures, write_plots=write_plots,
                         page=html_page, source=scenario)
            return 0 if served.feasible else 1
        if rates:
            raise InputError(f"--qps: sweeps a serving scenario's request rate; {scenario} is a training scenario")
        sc = with_basis(load_scenario(scenario), reliability=reliability_value(reliability),
                        confidence=confidence)
        request = CompareRequest(sc, deadlines=tuple(deadlines), budgets=tuple(budgets), workers=workers)
        if chosen is not None:
            request = dataclasses.replace(request, kinds=tuple(chosen))
        with progress_bar(scenario.name) as say:
            result = run_comparison(request, progress=say)
        write_report(result, format.value, out, plots, html, figures=figures, write_plots=write_plots,
                     page=html_page, source=scenario)
        return 0 if result.feasible else 1

    run(body, scenario)
