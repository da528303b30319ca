"""`planner review`: a real configuration in (scenario, Megatron-LM arguments, DeepSpeed JSON, torchtitan TOML or
saved config, or a published run), a verdict, findings and a better plan on the same hardware out.

Exit status: 0 the configuration is legal and fits (warnings may remain), 1 it does not fit or breaks a rule
(the error findings say which), 2 the input cannot be read. With --emit only the paste-ready text is
printed; the exit status still describes the reviewed configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner import (
    MAX_FILE_BYTES,
    MAX_GLOBAL_BATCH,
    MAX_GPUS,
    MAX_SEQ,
    MAX_TIME_LIMIT_S,
    MAX_TOKENS,
    FrameworkName,
)
from planner.cli.basis import ConfidenceFlag, ReliabilityFlag, ReliabilityOpt, reliability_value
from planner.cli.common import emit_text, run
from planner.cli.common import model_config as given_model
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
    torchtitan: Annotated[Path | None, typer.Option(
        "--torchtitan", help="torchtitan job TOML, or the JSON config it saves (--debug.save_config_file)")] = None,
    published: Annotated[str | None, typer.Option(
        "--published", help="a run id of published_runs.yaml: measured next to predicted")] = None,
    model: Annotated[str | None, typer.Option(help="catalog model name")] = None,
    model_config: Annotated[Path | None, typer.Option(help="Hugging Face config.json")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU catalog name")] = None,
    gpus: Annotated[int | None, typer.Option(min=1, max=MAX_GPUS, help="GPUs given")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(
        min=1, max=MAX_GPUS, help="GPUs per node (NVLink domain)")] = None,
    tokens: Annotated[float | None, typer.Option(
        min=1.0, max=MAX_TOKENS, help="tokens to train (days and cost)")] = None,
    seq: Annotated[int | None, typer.Option(
        min=1, max=MAX_SEQ, help="sequence length where the input has none")] = None,
    tp: Annotated[int | None, typer.Option(
        min=1, max=MAX_GPUS, help="DeepSpeed: the model code's tensor parallel size")] = None,
    pp: Annotated[int | None, typer.Option(
        min=1, max=MAX_GPUS, help="DeepSpeed: the pipeline parallel size")] = None,
    micro_batch: Annotated[int | None, typer.Option(
        min=1, max=MAX_GLOBAL_BATCH, help="DeepSpeed: fills an \"auto\" micro-batch")] = None,
    global_batch: Annotated[int | None, typer.Option(
        min=1, max=MAX_GLOBAL_BATCH, help="DeepSpeed: fills an \"auto\" batch")] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", help="NAME=VALUE for a shell variable the Megatron-LM arguments use (repeatable)")] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    emit: Annotated[FrameworkName | None, typer.Option(
        "--emit", help="print only the better plan (or the reviewed one) as that framework's input")] = None,
    better: Annotated[bool, typer.Option("--better/--no-better", help="search the same hardware for a faster plan")]
    = True,
    time_limit: Annotated[float, typer.Option(
        "--time-limit", min=0.01, max=MAX_TIME_LIMIT_S, help="seconds for that search")] = 30.0,
    confidence: ConfidenceFlag = None,
    reliability: ReliabilityFlag = ReliabilityOpt.scenario,
) -> None:
    """Review a real parallelism config: fits or not, step time, MFU, days, cost, findings, a better plan.

    Exit status: 0 legal and fits (warnings may remain); 1 does not fit or breaks a rule; 2 bad input.
    """

    def body() -> int:
        from planner import InputError, ReviewRequest, load_scenario, review
        from planner.report import render

        if megatron_args is not None and megatron_args_file is not None:
            raise InputError("--megatron-args and --megatron-args-file: give one, not both")
        request = ReviewRequest(
            scenario=load_scenario(scenario) if scenario else None,
            megatron_args=megatron_args if megatron_args_file is None else read_text(megatron_args_file),
            deepspeed=deepspeed, torchtitan=torchtitan, published=published,
            model=given_model(model_config, model), gpu=gpu, gpus=gpus, gpus_per_node=gpus_per_node,
            tokens=tokens, seq=seq, tp=tp, pp=pp, micro_batch=micro_batch, global_batch=global_batch,
            env=parse_env(env or []), reliability=reliability_value(reliability),
            confidence=confidence,
        )
        rev = review(request, better=better, time_limit_s=time_limit)
        if emit is not None:
            emit_text(lambda: rev.emit(emit.value), emit.value, rev.emitted_layout, format.value,
                      rev.config.implementation.framework)
        else:
            render(rev, format.value)
        return rev.exit_code

    run(body, scenario)


def read_text(path: Path) -> str:
    """A launch script or argument file: at most MAX_FILE_BYTES of UTF-8 (not /dev/zero, not a dataset)."""
    from planner import InputError

    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise InputError(f"{path}: cannot read Megatron-LM arguments (larger than "
                             f"{MAX_FILE_BYTES // 2**10:,} KiB)")
        return raw.decode("utf-8")
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
