"""`estimate_inference(request)`: the serving memory footprint of one model on one GPU — weights, KV cache
for batch × context, the prefill workspace — beside the 1.2 × weights rule of thumb."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from planner.errors import InputError, expect, format_validation_error
from planner.model.memory import FitsOnGpu, InferenceMemory, inference_memory
from planner.model.params import ParamCount, count_params
from planner.scenario import Scenario
from planner.schema import GpuSku, Layout, ModelSpec
from planner.workflows.inputs import checked, given_model, pick
from planner.workloads.training.legality import layout_problems

__all__ = ["DEFAULT_SERVING_GPU", "InferenceEstimate", "InferenceRequest", "estimate_inference"]

# Without --gpu or a scenario's estimate.gpu: the most deployed serving GPU of the catalog's generation.
DEFAULT_SERVING_GPU = "h100-sxm"


@dataclass
class InferenceRequest:
    """What to size; None means 'not given' (the scenario or a default fills it)."""

    model: str | ModelSpec | None = None
    gpu: str | None = None
    batch: int = 1  # concurrent sequences
    context: int | None = None  # tokens per sequence (default: the model's longest)
    tp: int = 1
    pp: int = 1
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    scenario: Scenario | None = None


@dataclass(frozen=True)
class InferenceEstimate(FitsOnGpu):
    model: ModelSpec
    gpu: GpuSku
    batch: int
    context: int
    tp: int
    pp: int
    weight_dtype: str
    kv_dtype: str
    params: ParamCount
    memory: InferenceMemory  # per GPU

    @property
    def gpus(self) -> int:
        return self.tp * self.pp


def estimate_inference(request: InferenceRequest) -> InferenceEstimate:
    from planner.catalog import get_gpu

    expect(request, InferenceRequest, "estimate_inference(request)")
    sc = request.scenario
    model = given_model(request.model, sc)
    if model is None:
        raise InputError("--model: give a catalog model, --model-config FILE, or a scenario")
    gpu = get_gpu(pick(request.gpu, sc.estimate.gpu if sc and sc.estimate else None, DEFAULT_SERVING_GPU),
                  key="--gpu" if request.gpu is not None else None)
    context = pick(checked("--context", request.context), model.max_seq)
    serving_layout_problems(model, request.tp, request.pp)
    memory = inference_memory(model, request.batch, context, tp=request.tp, pp=request.pp,
                              weight_dtype=request.weight_dtype, kv_dtype=request.kv_dtype)
    return InferenceEstimate(model, gpu, request.batch, context, request.tp, request.pp, request.weight_dtype,
                             request.kv_dtype, count_params(model), memory)


def serving_layout_problems(model: ModelSpec, tp: int, pp: int) -> None:
    """Refuse a TP or PP size the serving engines cannot shard the model by: the same head, KV-head and FFN
    divisibility as training (vLLM's ModelConfig.verify_with_parallel_config and QKVParallelLinear ask the
    same), and no pipeline stage left without layers."""
    try:
        layout = Layout(tp=tp, pp=pp, global_batch=1)
    except ValidationError as e:
        raise InputError(format_validation_error(e, "--tp/--pp")) from None
    problems = [p for p in layout_problems(model, layout) if p.startswith(("tp:", "pp"))]
    if problems:
        raise InputError(f"illegal serving layout for {model.name}: " + "; ".join(problems))
