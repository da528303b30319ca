"""`planner review`: a real configuration in (scenario, Megatron-LM arguments, DeepSpeed JSON, torchtitan TOML
or a published run), a verdict, findings and a better plan on the same hardware out.

Exit status: 0 the configuration is legal and fits (warnings may remain), 1 it does not fit or breaks a rule
(the error findings say which), 2 the input cannot be read (one line on stderr). With --emit only the
paste-ready text is printed; the exit status still describes the reviewed configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from planner.workflows.review import Review

FORMATS = ("table", "json", "csv", "markdown")
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def review_command(
    scenario: Annotated[Path | None, typer.Argument(
        help="scenario YAML: its layout: and estimate: are the configuration; beside a framework file, it gives "
             "the model, GPU, count, job and prices", show_default=False)] = None,
    megatron_args: Annotated[str | None, typer.Option(
        "--megatron-args", help="Megatron-LM arguments, quoted (GPU count from --gpus or the scenario)")] = None,
    megatron_args_file: Annotated[Path | None, typer.Option(
        "--megatron-args-file", help="launch script or file holding Megatron-LM arguments")] = None,
    deepspeed: Annotated[Path | None, typer.Option("--deepspeed", help="DeepSpeed config JSON (with a model)")] = None,
    torchtitan: Annotated[Path | None, typer.Option("--torchtitan", help="torchtitan job TOML")] = None,
    published: Annotated[str | None, typer.Option(
        "--published", help="a run id of published_runs.yaml: measured next to predicted")] = None,
    model: Annotated[str | None, typer.Option(help="catalog model name")] = None,
    model_config: Annotated[Path | None, typer.Option(help="Hugging Face config.json")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU catalog name")] = None,
    gpus: Annotated[int | None, typer.Option(min=1, help="GPUs given")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(min=1, help="GPUs per node (NVLink domain)")] = None,
    tokens: Annotated[float | None, typer.Option(min=1.0, help="tokens to train (days and cost)")] = None,
    seq: Annotated[int | None, typer.Option(min=1, help="sequence length where the input has none")] = None,
    tp: Annotated[int | None, typer.Option(min=1, help="DeepSpeed: the model code's tensor parallel size")] = None,
    pp: Annotated[int | None, typer.Option(min=1, help="DeepSpeed: the pipeline parallel size")] = None,
    micro_batch: Annotated[int | None, typer.Option(min=1, help="DeepSpeed: fills an \"auto\" micro-batch")] = None,
    global_batch: Annotated[int | None, typer.Option(min=1, help="DeepSpeed: fills an \"auto\" batch")] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", help="NAME=VALUE for a shell variable the Megatron-LM arguments use (repeatable)")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json, csv or markdown")] = "table",
    emit: Annotated[str | None, typer.Option(
        "--emit", help="print only the better plan (or the reviewed one) as megatron, deepspeed or torchtitan input")]
    = None,
    better: Annotated[bool, typer.Option("--better/--no-better", help="search the same hardware for a faster plan")]
    = True,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.01, help="seconds for that search")] = 30.0,
) -> None:
    """Review a real parallelism config: fits or not, step time, MFU, days, cost, findings, a better plan.

    Exit status: 0 legal and fits (warnings may remain); 1 does not fit or breaks a rule; 2 bad input.
    """
    from planner.errors import InputError
    from planner.interop.frameworks import FRAMEWORKS

    try:
        if format not in FORMATS:
            raise InputError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
        if emit is not None and emit not in FRAMEWORKS:
            raise InputError(f"--emit: {emit!r} is not one of {', '.join(FRAMEWORKS)}")
        if model and model_config:
            raise InputError("--model and --model-config: give one, not both")
        if megatron_args is not None and megatron_args_file is not None:
            raise InputError("--megatron-args and --megatron-args-file: give one, not both")
        rev = run(
            scenario, megatron_args=megatron_args if megatron_args_file is None else read_text(megatron_args_file),
            deepspeed=deepspeed, torchtitan=torchtitan, published=published,
            model=str(model_config) if model_config else model, gpu=gpu, gpus=gpus, gpus_per_node=gpus_per_node,
            tokens=tokens, seq=seq, tp=tp, pp=pp, micro_batch=micro_batch, global_batch=global_batch,
            env=parse_env(env or []), better=better, time_limit=time_limit,
        )
        text = rev.emit(emit) if emit else None
    except InputError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(InputError.exit_code) from None
    if text is not None:
        typer.echo(text, nl=False)
    else:
        output(rev, format)
    if rev.exit_code:
        raise typer.Exit(rev.exit_code)


def read_text(path: Path) -> str:
    from planner.errors import InputError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def parse_env(pairs: list[str]) -> dict[str, str]:
    from planner.errors import InputError

    out = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise InputError(f"--env: {pair!r} is not NAME=VALUE")
        out[name] = value
    return out


def run(scenario: Path | None, *, better: bool, time_limit: float, **fields: Any) -> Review:
    from planner.scenario import load_scenario
    from planner.workflows.review import ReviewRequest, review

    req = ReviewRequest(scenario=load_scenario(scenario) if scenario else None, **fields)
    return review(req, better=better, time_limit_s=time_limit)


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def output(rev: Review, fmt: str) -> None:
    from planner.report.formats import render, to_json

    if fmt == "json":
        typer.echo(to_json(rev.to_dict()))
    elif fmt == "csv":
        typer.echo(render(flat(rev), "csv"), nl=False)
    elif fmt == "markdown":
        typer.echo(markdown(rev), nl=False)
    else:
        from rich.console import Console

        print_review(Console(), rev)


def flat(rev: Review) -> dict[str, Any]:
    """The JSON with findings and changes as one line each, for key/value CSV."""
    d = rev.to_dict()
    d["findings"] = {str(i + 1): f"{f['severity']} {f['code']}: {f['message']}" for i, f in enumerate(d["findings"])}
    if d["better"]:
        d["better"]["changes"] = {str(ch["key"]): f"{ch['from']} → {ch['to']}" for ch in d["better"]["changes"]}
    return d


def summary_rows(rev: Review) -> list[dict[str, Any]]:
    from planner.cli.solve import layout_text

    ev = rev.evaluation
    t = ev.time
    rows: list[tuple[str, Any]] = [
        ("configuration", f"{rev.config.source}: {ev.model.name} on {ev.layout.gpus} × {ev.gpu.name}"),
        ("layout", layout_text(ev)),
        ("verdict", verdict(rev)),
        ("memory per GPU (GiB)", f"{ev.memory.total / 2**30:,.1f} of {ev.capacity_bytes / 2**30:,.1f}, "
                                 f"pipeline stage {ev.memory.stage}"),
        ("step time (s)", round(t.step_seconds, 3)),
        ("MFU", round(t.mfu, 3)),
        ("tokens / s", round(t.tokens_per_s)),
        (f"days for {ev.tokens:.3g} tokens", round(t.days, 2)),
        ("cost (USD)", round(ev.cost_usd) if ev.cost_usd is not None else None),
    ]
    if rev.published is not None and rev.config.case is not None:
        p = rev.published
        rows.append((f"measured {p.quantity}", p.measured))
        rows.append((f"predicted {p.quantity}", round(p.predicted, 3)))
    if rev.better is not None:
        rows.append(("better on the same hardware", f"{layout_text(rev.better.plan.evaluation)}, "
                                                     f"{rev.better.speedup:.2f}× faster"))
    return [{"quantity": k, "value": v} for k, v in rows]


def verdict(rev: Review) -> str:
    ev = rev.evaluation
    if not ev.fits:
        return f"does not fit: short by {-ev.headroom_bytes / 2**30:,.1f} GiB on pipeline stage {ev.memory.stage}"
    room = f"{ev.headroom_bytes / 2**30:,.1f} GiB free on the most loaded pipeline stage ({ev.memory.stage})"
    return f"fits, {room}" + ("" if not rev.problems else "; but the layout breaks a rule")


def markdown(rev: Review) -> str:
    from planner.report.formats import to_markdown

    text = to_markdown(summary_rows(rev))
    if rev.findings:
        text += "\n" + to_markdown([f.to_dict() for f in rev.findings])
    if rev.better is not None and rev.better.changes:
        text += f"\nChanges ({rev.better.format}):\n\n" + to_markdown(rev.better.changes)
    return text


def print_review(con: Console, rev: Review) -> None:
    from rich.table import Table

    from planner.cli.solve import layout_text
    from planner.report.tables import print_estimate
    from planner.workflows.estimate import estimate_dict
    from planner.workflows.review import setting_text

    print_estimate(con, estimate_dict(rev.evaluation))
    style = "green" if rev.ok else "bold red"
    con.print(f"[{style}]{verdict(rev)}[/]")
    if rev.published is not None and rev.config.case is not None:
        p = rev.published
        con.print(f"published run {rev.config.case.id}: measured {p.quantity} {p.measured:,.2f}, predicted "
                  f"{p.predicted:,.2f} ({p.error:+.1%})")
    if rev.findings:
        t = Table(title="Findings", title_justify="left")
        for col in ("severity", "code", "message"):
            t.add_column(col)
        for f in rev.findings:
            t.add_row(f"[{SEVERITY_STYLE[f.severity]}]{f.severity}[/]", f.code, f.message)
        con.print(t)
    b = rev.better
    if b is not None:
        ev = b.plan.evaluation
        con.print(f"[bold]Better on the same hardware[/]: {layout_text(ev)}, {b.speedup:.2f}× the reviewed speed "
                  f"(step {ev.time.step_seconds:.3f} s, MFU {ev.time.mfu:.1%}, {ev.time.days:,.1f} days, "
                  f"{ev.memory.total / 2**30:,.1f} GiB per GPU)")
        if b.changes:
            ct = Table(title=f"Changes ({b.format})", title_justify="left")
            for col in ("key", "from", "to"):
                ct.add_column(col)
            for ch in b.changes:
                ct.add_row(str(ch["key"]), setting_text(ch["from"]), setting_text(ch["to"]))
            con.print(ct)

