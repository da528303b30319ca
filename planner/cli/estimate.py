"""`planner estimate`: one model, one GPU, one layout (flags over a scenario's keys); `--inference` for the
serving footprint."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from planner import (  # the limits and names flags share with scenario keys
    MAX_EXPERTS,
    MAX_GLOBAL_BATCH,
    MAX_GPUS,
    MAX_LAYERS,
    MAX_SEQ,
    MAX_TOKENS,
    CpExchange,
    Fp8Recipe,
    Framework,
    MasterWeights,
    MomentDtype,
)
from planner.cli.basis import ReliabilityFlag, ReliabilityOpt, reliability_value
from planner.cli.common import model_config as given_model
from planner.cli.common import run
from planner.report import Format


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


def estimate_command(
    scenario: Annotated[Path | None, typer.Argument(help="scenario YAML (flags override its keys)")] = None,
    model: Annotated[str | None, typer.Option(help="catalog model name")] = None,
    model_config: Annotated[Path | None, typer.Option(help="Hugging Face config.json")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU catalog name")] = None,
    gpus: Annotated[int | None, typer.Option(min=1, max=MAX_GPUS, help="total GPUs")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(
        min=1, max=MAX_GPUS, help="GPUs per node (NVLink domain)")] = None,
    tp: Annotated[int | None, typer.Option(min=1, max=MAX_GPUS, help="tensor parallel size")] = None,
    pp: Annotated[int | None, typer.Option(min=1, max=MAX_GPUS, help="pipeline parallel size")] = None,
    vpp: Annotated[int | None, typer.Option(
        min=1, max=MAX_LAYERS, help="virtual pipeline stages per rank")] = None,
    dp: Annotated[int | None, typer.Option(
        min=1, max=MAX_GPUS, help="data parallel size (derived when omitted)")] = None,
    cp: Annotated[int | None, typer.Option(min=1, max=MAX_GPUS, help="context parallel size")] = None,
    ep: Annotated[int | None, typer.Option(min=1, max=MAX_EXPERTS, help="expert parallel size")] = None,
    expert_tp: Annotated[int | None, typer.Option(
        min=1, max=MAX_GPUS, help="expert tensor parallel size (below --tp: EP folds over TP·DP·CP)")] = None,
    zero: Annotated[int | None, typer.Option(min=0, max=3, help="ZeRO stage 0-3")] = None,
    recompute: Annotated[RecomputeOpt | None, typer.Option(help="activation recomputation")] = None,
    recompute_num_layers: Annotated[int | None, typer.Option(
        min=1, max=MAX_LAYERS, help="with --recompute full: recompute only this many layers of each model chunk "
        "(Megatron --recompute-method block)")] = None,
    sequence_parallel: Annotated[bool | None, typer.Option("--sequence-parallel/--no-sequence-parallel")] = None,
    micro_batch: Annotated[int | None, typer.Option(
        min=1, max=MAX_GLOBAL_BATCH, help="sequences per micro-batch")] = None,
    global_batch: Annotated[int | None, typer.Option(
        min=1, max=MAX_GLOBAL_BATCH, help="sequences per optimizer step")] = None,
    seq: Annotated[int | None, typer.Option(
        min=1, max=MAX_SEQ, help="sequence length (default: the scenario's job.seq_len, else the model's context)"
    )] = None,
    precision: Annotated[PrecisionOpt | None, typer.Option(help="GEMM precision")] = None,
    framework: Annotated[Framework | None, typer.Option(
        help="training stack whose kernels, state layout and overlaps to model (implementation.framework)")] = None,
    fp8_recipe: Annotated[Fp8Recipe | None, typer.Option(
        help="fp8 scaling recipe with --precision fp8 (implementation.fp8_recipe)")] = None,
    cp_exchange: Annotated[CpExchange | None, typer.Option(
        help="how context parallelism moves K/V (implementation.cp_exchange)")] = None,
    cp_a2a_size: Annotated[int | None, typer.Option(
        min=2, max=MAX_GPUS, help="all-to-all group of --cp-exchange hierarchical (implementation.cp_a2a_size)"
    )] = None,
    activation_offload_layers: Annotated[int | None, typer.Option(
        min=1, max=MAX_LAYERS, help="the first N layers' activations in host memory from forward to backward "
        "(Megatron --cpu-offloading-num-layers)")] = None,
    master_weights: Annotated[MasterWeights | None, typer.Option(
        help="the optimizer's master copy of 16-bit parameters (job.master_weights)")] = None,
    moment_dtype: Annotated[MomentDtype | None, typer.Option(
        help="Adam's moment dtype (job.moment_dtype)")] = None,
    dropout: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="dropout probability")] = None,
    tokens: Annotated[float | None, typer.Option(
        min=1.0, max=MAX_TOKENS, help="tokens to train (default 20 per parameter)")] = None,
    mfu: Annotated[float | None, typer.Option(min=0.001, max=1.0, help="fixed model-FLOPs utilisation")] = None,
    hfu: Annotated[float | None, typer.Option(min=0.001, max=1.0, help="fixed hardware-FLOPs utilisation")] = None,
    inference: Annotated[bool, typer.Option("--inference", help="serving footprint instead of training")] = False,
    batch: Annotated[int, typer.Option(min=1, max=MAX_GLOBAL_BATCH, help="inference: concurrent sequences")] = 1,
    context: Annotated[int | None, typer.Option(
        min=1, max=MAX_SEQ, help="inference: tokens per sequence")] = None,
    weight_dtype: Annotated[ServeDtype, typer.Option(help="inference: weight dtype")] = ServeDtype.bf16,
    kv_dtype: Annotated[ServeDtype, typer.Option(help="inference: KV-cache dtype")] = ServeDtype.bf16,
    format: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.table,
    reliability: ReliabilityFlag = ReliabilityOpt.scenario,
) -> None:
    """Exact per-GPU memory, FLOPs, step time and cost of one model on one GPU and layout."""

    def body() -> None:
        from planner import (
            EstimateRequest,
            InferenceRequest,
            estimate,
            estimate_inference,
            load_scenario,
        )
        from planner.report import render

        sc = load_scenario(scenario) if scenario else None
        model_ref = given_model(model_config, model)
        if inference:
            render(estimate_inference(InferenceRequest(
                model=model_ref, gpu=gpu, batch=batch, context=context or seq, tp=tp or 1, pp=pp or 1,
                weight_dtype=weight_dtype.value, kv_dtype=kv_dtype.value, scenario=sc)), format.value)
            return
        render(estimate(EstimateRequest(
            model=model_ref, gpu=gpu, gpus=gpus, gpus_per_node=gpus_per_node, seq=seq, global_batch=global_batch,
            tokens=tokens, mfu=mfu, hfu=hfu, dropout=dropout, precision=precision.value if precision else None,
            layout={"tp": tp, "pp": pp, "vpp": vpp, "dp": dp, "cp": cp, "ep": ep, "expert_tp": expert_tp, "zero": zero,
                    "recompute": recompute.value if recompute else None, "sequence_parallel": sequence_parallel,
                    "micro_batch": micro_batch, "recompute_num_layers": recompute_num_layers},
            scenario=sc, reliability=reliability_value(reliability),
            implementation={"framework": framework, "fp8_recipe": fp8_recipe, "cp_exchange": cp_exchange,
                            "cp_a2a_size": cp_a2a_size, "activation_offload_layers": activation_offload_layers},
            state={"master_weights": master_weights, "moment_dtype": moment_dtype},
        )), format.value)

    run(body, scenario)
