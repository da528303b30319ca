"""`planner solve SCENARIO.yaml`: the cheapest (or fastest) plan, its runner-ups, and why.

Exit status: 0 a plan was found, 1 no plan satisfies the scenario (the explanation is printed), 2 the
input is wrong. `--emit megatron|deepspeed|torchtitan` prints only the best plan in that framework's own
form, ready to paste.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner import MAX_MARGIN, MAX_TIME_LIMIT_S, MAX_TOP_K, MAX_WORKERS, NEAR_OPTIMAL_MARGIN, FrameworkName
from planner.cli.basis import ConfidenceFlag, ReliabilityFlag, ReliabilityOpt, reliability_value
from planner.cli.common import EMIT_FRAMEWORK, emit_text, run
from planner.report import Format


def solve_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML", show_default=False)],
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", min=1, max=MAX_TOP_K, help="plans to list (default: the scenario's top_k)")]
    = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="also trace the cost vs wall-clock Pareto front")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="say which limits bind the optimum")] = False,
    time_limit: Annotated[float, typer.Option(
        "--time-limit", min=0.01, max=MAX_TIME_LIMIT_S, help="seconds; then the best plan so far")]
    = 60.0,
    margin: Annotated[float, typer.Option(
        "--margin", min=0.0, max=MAX_MARGIN, help="near-optimal band over the optimum")]
    = NEAR_OPTIMAL_MARGIN,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=MAX_WORKERS, help="CP-SAT workers (1 = deterministic)")] = 1,
    emit: Annotated[FrameworkName | None, typer.Option(
        "--emit", help="print only the best plan as that framework's input")] = None,
    confidence: ConfidenceFlag = None,
    reliability: ReliabilityFlag = ReliabilityOpt.scenario,
) -> None:
    """Search every GPU, GPU count and parallel layout the scenario allows; print the optimum."""

    def body() -> int:
        from planner import load_scenario, solve, with_basis
        from planner.report import render, spinner
        sc = with_basis(load_scenario(scenario), reliability=reliability_value(reliability),
                        confidence=confidence)
        with spinner(f"solving {scenario.name}") as say:
            result = solve(sc, time_limit_s=time_limit, pareto=pareto, explain=explain, top_k=top_k, margin=margin,
                           num_workers=workers, progress=say)
        if emit is not None:  # no plan: InfeasibleError, the reasons on stderr
            best = result.plans[0].evaluation if result.plans else None  # none: emit says why (exit 1)
            emit_text(lambda: result.emit(emit.value), emit.value, best and best.layout, format.value,
                      best.framework if best else EMIT_FRAMEWORK[emit.value])
        else:
            render(result, format.value)
        return 0 if result.plans else 1

    run(body, scenario)
