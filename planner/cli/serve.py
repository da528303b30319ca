"""`planner serve`: serving capacity planning.

`planner serve SCENARIO.yaml` finds the cheapest fleet (SKU or mix of SKUs, TP, replicas, batch limit) that
serves the scenario's traffic within its latency SLOs; `--pareto` traces cost against request rate.
`planner serve --model M --gpu G --tp N --concurrency C --input-len I --output-len O` evaluates one deployment;
with `--qps Q --prefill-replicas P --decode-replicas D [--decode-gpu G2 --decode-tp N2]` it is disaggregated:
P replicas of G × tp N run prefill and D replicas of G2 × tp N2 decode (DistServe/Splitwise).
A --qps the deployment does not keep up with is flagged (overloaded: its queue grows, the latencies shown are those
of a finite run), and a mixture-of-experts model is flagged extrapolated with the published runs' error band.
Exit status: 0 done; 1 no fleet meets the SLOs, or the one deployment does not fit (the numbers that rule it
out on stderr); 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner import MAX_CONCURRENCY, MAX_GPUS, MAX_QPS, MAX_SEED, MAX_SIMULATED_REQUESTS, MIN_QPS
from planner.cli.common import run, say
from planner.report import Format

DTYPES = "bf16, fp16, fp8, int8, int4, fp4"


def warn_overload(note: str | None, fmt: Format) -> None:
    """Machine formats keep their keys: an overloaded or extrapolated deployment is said on stderr (the table
    shows it)."""
    if note and fmt != Format.table:
        say(f"warning: {note}")


def serve_command(
    scenario: Annotated[Path | None, typer.Argument(help="serving scenario YAML (a `serving:` block)",
                                                    show_default=False)] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    pareto: Annotated[bool, typer.Option("--pareto", help="also trace the cheapest fleet against request rate")]
    = False,
    plots: Annotated[Path | None, typer.Option("--plots", help="write the plots (PNG and SVG) to this directory")]
    = None,
    model: Annotated[str | None, typer.Option("--model", help="catalog model or HF config.json (one deployment)")]
    = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="GPU SKU (one deployment)")] = None,
    tp: Annotated[int, typer.Option("--tp", min=1, max=1024, help="tensor-parallel GPUs per replica")] = 1,
    pp: Annotated[int, typer.Option("--pp", min=1, max=1024, help="pipeline stages per replica")] = 1,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, max=MAX_CONCURRENCY, help="closed-loop clients (default 1 unless --qps)")] = None,
    qps: Annotated[float | None, typer.Option("--qps", min=MIN_QPS, max=MAX_QPS, help="Poisson request rate instead")]
    = None,
    input_len: Annotated[int, typer.Option("--input-len", min=1, max=10_000_000, help="prompt tokens")] = 1024,
    output_len: Annotated[int, typer.Option("--output-len", min=1, max=10_000_000, help="output tokens")] = 256,
    weight_dtype: Annotated[str, typer.Option("--weight-dtype", help=DTYPES)] = "bf16",
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", help=DTYPES)] = "bf16",
    engine: Annotated[str, typer.Option("--engine", help="vllm, trtllm or sglang")] = "vllm",
    requests: Annotated[int | None, typer.Option(
        "--requests", min=50, max=MAX_SIMULATED_REQUESTS, help="requests to simulate")]
    = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED,
                                      help="seeds request lengths and arrivals")] = 0,
    prefill_replicas: Annotated[int | None, typer.Option(
        "--prefill-replicas", min=1, max=MAX_GPUS, help="disaggregated: prefill replicas of --gpu × --tp (needs --qps)",
        show_default=False)] = None,
    decode_replicas: Annotated[int | None, typer.Option(
        "--decode-replicas", min=1, max=MAX_GPUS, help="disaggregated: decode replicas of --decode-gpu × --decode-tp",
        show_default=False)] = None,
    decode_gpu: Annotated[str | None, typer.Option("--decode-gpu", help="decode pool's GPU SKU (default: --gpu)",
                                                   show_default=False)] = None,
    decode_tp: Annotated[int | None, typer.Option("--decode-tp", min=1, max=1024,
                                                  help="decode pool's tensor-parallel GPUs per replica (default: --tp)",
                                                  show_default=False)] = None,
) -> None:
    """Serving capacity: the cheapest fleet for a scenario's traffic within its SLOs, or one deployment."""

    def body() -> int:
        from planner import InputError, evaluate_deployment, evaluate_disaggregated, serve
        from planner.report import render, spinner, write_plots

        if scenario is not None:
            if model is not None or gpu is not None:
                raise InputError("give a scenario file or --model/--gpu (one deployment), not both")
            with spinner(f"planning {scenario.name}"):
                result = serve(scenario, pareto=pareto)
            render(result, format.value)
            warn_overload(result.extrapolated, format)
            if plots is not None:
                write_plots(result, plots)
            return 0
        if model is None or gpu is None:
            raise InputError("give a serving scenario file, or --model and --gpu for one deployment")
        if pareto or plots is not None:
            raise InputError("--pareto and --plots need a serving scenario file")
        if prefill_replicas is not None or decode_replicas is not None:
            if prefill_replicas is None or decode_replicas is None:
                missing = "--prefill-replicas" if prefill_replicas is None else "--decode-replicas"
                raise InputError(f"{missing}: disaggregated pools need both --prefill-replicas and --decode-replicas")
            if concurrency is not None:
                raise InputError("--concurrency: disaggregated pools are evaluated at a Poisson --qps, not closed loop")
            if qps is None:
                raise InputError("--qps: disaggregated pools need a request rate")
            if pp > 1:
                raise InputError("--pp: disaggregated pools run tensor parallelism only (pp 1)")
            pools = evaluate_disaggregated(
                model, qps, input_len, output_len, prefill_gpu=gpu, prefill_tp=tp, prefill_replicas=prefill_replicas,
                decode_gpu=decode_gpu, decode_tp=decode_tp if decode_tp is not None else tp,
                decode_replicas=decode_replicas, weight_dtype=weight_dtype, kv_dtype=kv_dtype, engine=engine,
                requests=requests, seed=seed)
            render(pools, format.value)
            warn_overload(pools.extrapolated, format)
            warn_overload(pools.overload, format)
            return 0
        for flag, value in (("--decode-gpu", decode_gpu), ("--decode-tp", decode_tp)):
            if value is not None:
                raise InputError(f"{flag}: needs --prefill-replicas and --decode-replicas (disaggregated pools)")
        clients = concurrency if concurrency is not None or qps is not None else 1
        deployment = evaluate_deployment(
            model, gpu, tp=tp, pp=pp, concurrency=clients, qps=qps, input_len=input_len, output_len=output_len,
            weight_dtype=weight_dtype, kv_dtype=kv_dtype, engine=engine, requests=requests, seed=seed)
        render(deployment, format.value)
        if deployment.unfit:  # as review: a layout that does not fit is no plan (the table says why)
            if format != Format.table:
                say(deployment.unfit)
            return 1
        warn_overload(deployment.extrapolated, format)
        warn_overload(deployment.overload, format)
        return 0

    run(body, scenario)
