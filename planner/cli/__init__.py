"""The `planner` command line: a thin typer wrapper over the public API.

Heavy modules (pydantic models, numpy, pandas, ortools) are imported inside the commands so that
`planner --help` answers at once. Errors map to exit codes: 0 ok, 1 no feasible plan, 2 bad input.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="planner",
    help="Capacity planner for large-model training: which GPU, how many, which layout, what cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="List the GPUs and models planner knows.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class RecomputeOpt(StrEnum):
    none = "none"
    selective = "selective"
    full = "full"


class PrecisionOpt(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"


class ServeDtype(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    int8 = "int8"
    int4 = "int4"


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}" if code == 2 else message, err=True)
    raise typer.Exit(code)


def guarded(fn: Any) -> Any:
    """Run a command body; planner's own errors become one line and an exit code, never a traceback."""
    from planner.errors import InfeasibleError, InputError

    try:
        return fn()
    except InputError as e:
        fail(str(e), 2)
    except InfeasibleError as e:
        fail(str(e), 1)


def console():
    from rich.console import Console

    con = Console()
    if not con.is_terminal:  # piped or redirected: no terminal width to fit a wide table into
        con.width = PIPED_WIDTH
    return con


PIPED_WIDTH = 160


@app.command()
def estimate(
    scenario: Annotated[Path | None, typer.Argument(help="scenario YAML (flags override its keys)")] = None,
    model: Annotated[str | None, typer.Option(help="catalog model name")] = None,
    model_config: Annotated[Path | None, typer.Option(help="Hugging Face config.json")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU catalog name")] = None,
    gpus: Annotated[int | None, typer.Option(min=1, help="total GPUs")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(min=1, help="GPUs per node (NVLink domain)")] = None,
    tp: Annotated[int | None, typer.Option(min=1, help="tensor parallel size")] = None,
    pp: Annotated[int | None, typer.Option(min=1, help="pipeline parallel size")] = None,
    vpp: Annotated[int | None, typer.Option(min=1, help="virtual pipeline stages per rank")] = None,
    dp: Annotated[int | None, typer.Option(min=1, help="data parallel size (derived when omitted)")] = None,
    cp: Annotated[int | None, typer.Option(min=1, help="context parallel size")] = None,
    ep: Annotated[int | None, typer.Option(min=1, help="expert parallel size")] = None,
    zero: Annotated[int | None, typer.Option(min=0, max=3, help="ZeRO stage 0-3")] = None,
    recompute: Annotated[RecomputeOpt | None, typer.Option(help="activation recomputation")] = None,
    sequence_parallel: Annotated[bool | None, typer.Option("--sequence-parallel/--no-sequence-parallel")] = None,
    micro_batch: Annotated[int | None, typer.Option(min=1, help="sequences per micro-batch")] = None,
    global_batch: Annotated[int | None, typer.Option(min=1, help="sequences per optimizer step")] = None,
    seq: Annotated[int | None, typer.Option(min=1, help="sequence length")] = None,
    precision: Annotated[PrecisionOpt | None, typer.Option(help="GEMM precision")] = None,
    dropout: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="dropout probability")] = None,
    tokens: Annotated[float | None, typer.Option(min=1.0, help="tokens to train (default 20 per parameter)")] = None,
    mfu: Annotated[float | None, typer.Option(min=0.001, max=1.0, help="fixed model-FLOPs utilisation")] = None,
    hfu: Annotated[float | None, typer.Option(min=0.001, max=1.0, help="fixed hardware-FLOPs utilisation")] = None,
    inference: Annotated[bool, typer.Option("--inference", help="serving footprint instead of training")] = False,
    batch: Annotated[int, typer.Option(min=1, help="inference: concurrent sequences")] = 1,
    context: Annotated[int | None, typer.Option(min=1, help="inference: tokens per sequence")] = None,
    weight_dtype: Annotated[ServeDtype, typer.Option(help="inference: weight dtype")] = ServeDtype.bf16,
    kv_dtype: Annotated[ServeDtype, typer.Option(help="inference: KV-cache dtype")] = ServeDtype.bf16,
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
) -> None:
    """Exact per-GPU memory, FLOPs, step time and cost of one model on one GPU and layout."""

    def body() -> None:
        from planner.errors import InputError
        from planner.workflows.estimate import EstimateRequest, estimate_dict, run_estimate

        if mfu is not None and hfu is not None:
            raise InputError("--mfu and --hfu: give one, not both")
        if model and model_config:
            raise InputError("--model and --model-config: give one, not both")
        from planner.scenario import load_scenario

        sc = load_scenario(scenario) if scenario else None
        model_ref = str(model_config) if model_config else model
        if inference:
            return inference_body(sc, model_ref)
        req = EstimateRequest(
            model=model_ref, gpu=gpu, gpus=gpus, gpus_per_node=gpus_per_node, seq=seq, global_batch=global_batch,
            tokens=tokens, mfu=mfu, hfu=hfu, dropout=dropout, precision=precision.value if precision else None,
            layout={"tp": tp, "pp": pp, "vpp": vpp, "dp": dp, "cp": cp, "ep": ep, "zero": zero,
                    "recompute": recompute.value if recompute else None, "sequence_parallel": sequence_parallel,
                    "micro_batch": micro_batch},
            scenario=sc,
        )
        ev = run_estimate(req)
        out = estimate_dict(ev)
        if format == Format.table:
            from planner.report.tables import print_estimate

            print_estimate(console(), out)
        else:
            from planner.report.formats import render

            typer.echo(render(out, format.value))

    def inference_body(sc: Any, model_ref: str | None) -> None:
        from planner.catalog import get_gpu
        from planner.errors import InputError
        from planner.scenario import resolve_model
        from planner.workflows.estimate import run_inference_estimate

        ref = model_ref or (sc.model if sc else None)
        if ref is None:
            raise InputError("--model: give a catalog model, --model-config FILE, or a scenario")
        spec = resolve_model(ref)
        sku = get_gpu(gpu or (sc.estimate.gpu if sc and sc.estimate else None) or "h100-sxm")
        ctx = context or seq or spec.max_seq
        _, out = run_inference_estimate(spec, sku, batch=batch, context=ctx, tp=tp or 1, pp=pp or 1,
                                        weight_dtype=weight_dtype.value, kv_dtype=kv_dtype.value)
        if format == Format.table:
            from planner.report.tables import print_inference

            print_inference(console(), out)
        else:
            from planner.report.formats import render

            typer.echo(render(out, format.value))

    guarded(body)


@catalog_app.command("gpus")
def catalog_gpus(format: Annotated[Format, typer.Option("--format", "-f")] = Format.table) -> None:
    """GPUs with dense peaks, memory, interconnect, power and default price."""

    def body() -> None:
        from planner.catalog import load_gpus
        from planner.report.tables import gpu_rows

        rows = gpu_rows(load_gpus().values())
        emit_rows(rows, format, "GPUs (dense peaks, no sparsity; memory in GiB = 2^30 B)")

    guarded(body)


@catalog_app.command("models")
def catalog_models(format: Annotated[Format, typer.Option("--format", "-f")] = Format.table) -> None:
    """Models with their exact parameter counts."""

    def body() -> None:
        from planner.catalog import load_models
        from planner.report.tables import model_rows

        emit_rows(model_rows(load_models().values()), format, "Models (parameters counted exactly)")

    guarded(body)


def emit_rows(rows: list[dict[str, Any]], fmt: Format, title: str) -> None:
    from planner.report.formats import to_csv, to_json, to_markdown

    if fmt == Format.json:
        typer.echo(to_json(rows))
    elif fmt == Format.csv:
        typer.echo(to_csv(rows), nl=False)
    elif fmt == Format.markdown:
        typer.echo(to_markdown(rows), nl=False)
    else:
        from planner.report.tables import print_rows

        print_rows(console(), rows, title)


@app.command()
def schema(out: Annotated[Path | None, typer.Option(help="write to this file instead of stdout")] = None) -> None:
    """JSON Schema of the scenario format, for editors."""
    import json

    from planner.scenario import scenario_json_schema

    text = json.dumps(scenario_json_schema(), indent=2)
    if out:
        out.write_text(text + "\n")
    else:
        typer.echo(text)


def register_commands() -> None:
    """Commands living in their own modules (each imports its heavy dependencies only when it runs)."""
    from planner.cli.compare import compare_command
    from planner.cli.review import review_command
    from planner.cli.solve import solve_command

    app.command("solve")(solve_command)
    app.command("review")(review_command)
    app.command("compare")(compare_command)


register_commands()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
