"""`planner review`: a real configuration in (scenario, Megatron-LM arguments, DeepSpeed JSON, torchtitan TOML
or a published run), a verdict, findings and a better plan on the same hardware out.

Exit status: 0 the configuration is legal and fits (warnings may remain), 1 it does not fit or breaks a rule
(the error findings say which), 2 the input cannot be read. With --emit only the paste-ready text is
printed; the exit status still describes the reviewed configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner import FrameworkName
from planner.cli.common import run
from planner.report import Format


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
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    emit: Annotated[FrameworkName | None, typer.Option(
        "--emit", help="print only the better plan (or the reviewed one) as that framework's input")] = None,
    better: Annotated[bool, typer.Option("--better/--no-better", help="search the same hardware for a faster plan")]
    = True,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.01, help="seconds for that search")] = 30.0,
) -> None:
    """Review a real parallelism config: fits or not, step time, MFU, days, cost, findings, a better plan.

    Exit status: 0 legal and fits (warnings may remain); 1 does not fit or breaks a rule; 2 bad input.
    """

    def body() -> int:
        from planner import InputError, ReviewRequest, load_scenario, review
        from planner.report import render

        if model and model_config:
            raise InputError("--model and --model-config: give one, not both")
        if megatron_args is not None and megatron_args_file is not None:
            raise InputError("--megatron-args and --megatron-args-file: give one, not both")
        request = ReviewRequest(
            scenario=load_scenario(scenario) if scenario else None,
            megatron_args=megatron_args if megatron_args_file is None else read_text(megatron_args_file),
            deepspeed=deepspeed, torchtitan=torchtitan, published=published,
            model=str(model_config) if model_config else model, gpu=gpu, gpus=gpus, gpus_per_node=gpus_per_node,
            tokens=tokens, seq=seq, tp=tp, pp=pp, micro_batch=micro_batch, global_batch=global_batch,
            env=parse_env(env or []),
        )
        rev = review(request, better=better, time_limit_s=time_limit)
        if emit is not None:
            typer.echo(rev.emit(emit.value), nl=False)
        else:
            render(rev, format.value)
        return rev.exit_code

    run(body)


def read_text(path: Path) -> str:
    from planner import InputError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def parse_env(pairs: list[str]) -> dict[str, str]:
    from planner import InputError

    out = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise InputError(f"--env: {pair!r} is not NAME=VALUE")
        out[name] = value
    return out
