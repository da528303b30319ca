"""`planner solve SCENARIO.yaml`: the cheapest (or fastest) plan, its runner-ups, and why.

Exit status: 0 a plan was found, 1 no plan satisfies the scenario (the explanation is printed),
2 the input is wrong (one line on stderr). `--emit megatron|deepspeed|torchtitan` prints only the best
plan in that framework's own form, ready to paste. ortools, numpy and pandas load inside the command, so
`planner --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from planner.search import Plan, SolveResult

FORMATS = ("table", "json", "csv", "markdown")


def solve_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML", show_default=False)],
    format: Annotated[str, typer.Option("--format", "-f", help="table, json, csv or markdown")] = "table",
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="plans to list (default: the scenario's top_k)")]
    = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="also trace the cost vs wall-clock Pareto front")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="say which limits bind the optimum")] = False,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.01, help="seconds; then the best plan so far")]
    = 60.0,
    margin: Annotated[float, typer.Option("--margin", min=0.0, help="near-optimal band over the optimum")] = 0.03,
    workers: Annotated[int, typer.Option("--workers", min=1, help="CP-SAT workers (1 = deterministic)")] = 1,
    emit_as: Annotated[str | None, typer.Option(
        "--emit", help="print only the best plan as megatron, deepspeed or torchtitan input")] = None,
) -> None:
    """Search every GPU, GPU count and parallel layout the scenario allows; print the optimum."""
    from planner.errors import InfeasibleError, InputError
    from planner.interop.frameworks import FRAMEWORKS

    try:
        if format not in FORMATS:
            raise InputError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
        if emit_as is not None and emit_as not in FRAMEWORKS:
            raise InputError(f"--emit: {emit_as!r} is not one of {', '.join(FRAMEWORKS)}")
        result = run(scenario, top_k=top_k, pareto=pareto, explain=explain, time_limit=time_limit, margin=margin,
                     workers=workers)
        text = framework_text(result, emit_as, scenario) if emit_as and result.plans else None
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(InputError.exit_code) from None
    if text is not None:
        typer.echo(text, nl=False)
    elif emit_as is not None:  # no plan: the reasons, not a config, and on stderr
        typer.echo("; ".join(result.reasons) or result.status, err=True)
    else:
        emit(result, format)
    if not result.plans:
        raise typer.Exit(InfeasibleError.exit_code)


def run(scenario: Path, *, top_k: int | None, pareto: bool, explain: bool, time_limit: float, margin: float,
        workers: int) -> SolveResult:
    """Load and solve, with a status line on stderr while the solver works."""
    from rich.console import Console

    from planner.scenario import load_scenario
    from planner.search import solve

    sc = load_scenario(scenario)
    err = Console(stderr=True)
    with err.status(f"solving {scenario.name}", spinner="dots") as status:
        return solve(sc, time_limit_s=time_limit, pareto=pareto, explain=explain, top_k=top_k, margin=margin,
                     num_workers=workers, progress=lambda msg: status.update(f"{scenario.name}: {msg}"))


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def framework_text(result: SolveResult, fmt: str, scenario: Path) -> str:
    """The best plan as paste-ready framework input; several jobs give one block each, named."""
    import json

    from planner.interop.frameworks import export
    from planner.scenario import load_scenario

    impl = load_scenario(scenario).implementation
    plans = result.plans if len(result.jobs) > 1 else result.plans[:1]
    texts = {p.job: export(fmt, p.evaluation.layout, model=p.evaluation.model, seq=p.evaluation.seq,
                           implementation=impl) for p in plans}
    if len(texts) == 1:
        return next(iter(texts.values()))
    if fmt == "deepspeed":  # JSON has no comments: one object keyed by job
        return json.dumps({job: json.loads(t) for job, t in texts.items()}, indent=2) + "\n"
    return "".join(f"# job {job}\n{t}\n" for job, t in texts.items())


def emit(result: SolveResult, fmt: str) -> None:
    from planner.report.formats import to_csv, to_json, to_markdown

    if fmt == "json":
        typer.echo(to_json(result.to_dict()))
    elif fmt == "csv":
        typer.echo(to_csv(plan_rows(result)), nl=False)
    elif fmt == "markdown":
        typer.echo(markdown(result, to_markdown), nl=False)
    else:
        from rich.console import Console

        print_result(Console(), result)


def plan_rows(result: SolveResult) -> list[dict[str, Any]]:
    """One flat row per plan (dotted keys), every row with the same columns."""
    from planner.report.formats import flatten

    rows = [dict(flatten(p)) for p in result.to_dict()["plans"]]
    if not rows:
        return [{"status": result.status, "reasons": "; ".join(result.reasons)}]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return [{"status": result.status} | {c: r.get(c, "") for c in cols} for r in rows]


def short_row(p: Plan) -> dict[str, Any]:
    ev = p.evaluation
    return {
        "job": p.job, "sku": p.sku, "gpus": p.gpus, "nodes": p.nodes, "layout": layout_text(ev),
        "memory_gib": round(ev.memory.total / 2**30, 1), "mfu": round(ev.time.mfu, 3),
        "days": round(ev.time.days, 2), "gpu_hours": round(ev.time.gpu_hours), "cost_usd": round(ev.cost_usd or 0.0),
        "usd_per_m_tokens": round(ev.usd_per_million_tokens or 0.0, 3),
    }


def markdown(result: SolveResult, to_markdown: Any) -> str:
    head = (f"**{result.status}** ({result.objective}), {result.seconds:.2f} s, "
            f"{result.search_space_size:,} layouts searched\n\n")
    if not result.plans:
        return head + "".join(f"- {r}\n" for r in result.reasons)
    body = to_markdown([{"rank": i + 1} | short_row(p) for i, p in enumerate(result.plans)])
    if result.binding:
        body += "\n" + "".join(f"- {b}\n" for b in result.binding)
    return head + body


def layout_text(ev: Any) -> str:
    lay = ev.layout
    return (f"TP{lay.tp} PP{lay.pp}" + (f" VPP{lay.vpp}" if lay.vpp > 1 else "") + f" DP{lay.dp}"
            + (f" CP{lay.cp}" if lay.cp > 1 else "") + (f" EP{lay.ep}" if lay.ep > 1 else "")
            + f" ZeRO-{lay.zero} rc={lay.recompute}" + (" SP" if lay.sequence_parallel else "")
            + f" mbs{lay.micro_batch}")


def print_result(con: Console, result: SolveResult) -> None:
    from rich.table import Table

    from planner.report.tables import fmt_cell, print_rows

    gap = f", gap {result.gap:.2%}" if result.gap else ""
    con.print(f"[bold]{result.status}[/] ({result.objective}) in {result.seconds:.2f} s{gap}: "
              f"{result.search_space_size:,} layouts, {result.candidates:,} candidates")
    if not result.plans:
        con.print("[red]no plan satisfies the scenario[/]")
        for r in result.reasons:
            con.print(f"  • {r}")
        return
    for p in (result.plans if len(result.jobs) > 1 else result.plans[:1]):
        print_plan(con, p)
    if len(result.jobs) > 1:
        best = result.solutions[0]
        con.print(f"[bold]all jobs[/]: ${best.cost_usd:,.0f}, last one done in {best.days:,.1f} days, "
                  f"{best.gpus:,} GPUs")
        alt = [{"rank": i + 2, "cost_usd": round(s.cost_usd), "days": round(s.days, 2), "gpus": s.gpus,
                "plans": "; ".join(f"{p.job}: {p.gpus} × {p.sku}" for p in s.plans)}
               for i, s in enumerate(result.solutions[1:])]
        if alt:
            print_rows(con, alt, "Runner-ups")
    elif len(result.plans) > 1:
        # runner-ups against the optimum, in the first objective's terms
        key = "time_s" if result.objective == "time" else "cost_cents"
        best = getattr(result.plans[0], key)
        rows = []
        for i, p in enumerate(result.plans):
            row = {"rank": i + 1} | short_row(p)
            del row["job"]
            row["vs_best"] = f"{getattr(p, key) / best - 1:+.1%}" if best else ""
            rows.append(row)
        print_rows(con, rows, f"Plan and runner-ups (vs_best: {'days' if key == 'time_s' else 'cost'})")
    n_near = len(result.near_optimal)
    con.print(f"{n_near} plan{'s' if n_near != 1 else ''} within {result.margin:.0%} of the optimum "
              "(ties under the model's error)")
    if result.pareto:
        t = Table(title="Cost vs wall-clock Pareto front", title_justify="left")
        for c in ("cost_usd", "days", "gpus", "plans"):
            t.add_column(c, justify="left" if c == "plans" else "right")
        for s in result.pareto:
            t.add_row(fmt_cell(round(s.cost_usd)), fmt_cell(round(s.days, 2)), fmt_cell(s.gpus),
                      "; ".join(f"{p.gpus} × {p.sku} {layout_text(p.evaluation)}" for p in s.plans))
        con.print(t)
    if result.binding:
        con.print("[bold]Binding constraints[/]")
        for b in result.binding:
            con.print(f"  • {b}")
    if result.skipped:
        con.print("[dim]skipped SKUs: " + "; ".join(result.skipped) + "[/]")


def print_plan(con: Console, p: Plan) -> None:
    from rich.table import Table

    from planner.report.tables import memory_table
    from planner.workflows.estimate import memory_dict

    ev = p.evaluation
    t = ev.time
    con.print(f"[bold]{p.job}[/]: [bold]{p.gpus:,} × {p.sku}[/] ({p.nodes:,} node{'s' if p.nodes != 1 else ''} of "
              f"{ev.gpus_per_node}), {layout_text(ev)}, global batch {ev.layout.global_batch} "
              f"({ev.layout.grad_accumulation} micro-batches/step)")
    con.print(memory_table(memory_dict(ev), f"Per-GPU memory, pipeline stage {ev.memory.stage}"))
    ft = Table(title="Time and cost", title_justify="left")
    ft.add_column("quantity")
    ft.add_column("value", justify="right")
    ft.add_row("step time", f"{t.step_seconds:.3f} s")
    for k, v in t.breakdown.items():
        if v:
            ft.add_row(f"  {k}", f"{v:.3f} s")
    ft.add_row("MFU / HFU", f"{t.mfu:.1%} / {t.hfu:.1%}")
    ft.add_row("tokens / s", f"{t.tokens_per_s:,.0f}")
    ft.add_row("days", f"{t.days:,.2f}")
    ft.add_row("GPU-hours", f"{t.gpu_hours:,.0f}")
    ft.add_row("energy (GPU TDP)", f"{t.energy_kwh / 1000:,.1f} MWh")
    if ev.cost_usd is not None and ev.rate is not None:
        ft.add_row("cost", f"${ev.cost_usd:,.0f} at ${ev.rate.usd_per_gpu_hour:.2f}/GPU-h ({ev.rate.label})")
        ft.add_row("$ per million tokens", f"{ev.usd_per_million_tokens:.3f}")
    con.print(ft)
