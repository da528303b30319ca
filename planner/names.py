"""The names some scenario keys accept, as plain Literals, so that the CLI can offer them as flag choices
without loading pydantic; planner.schema builds its fields from them (one list for keys and flags)."""

from __future__ import annotations

from typing import Literal

# The software stack a job runs on; each sets documented defaults for its knobs (planner/model/presets).
Framework = Literal["megatron-core", "torchtitan", "deepspeed", "fsdp"]
# Transformer Engine's fp8 scaling recipes (transformer_engine/common/recipe/__init__.py): DelayedScaling,
# Float8CurrentScaling, MXFP8BlockScaling (Blackwell), Float8BlockScaling (DeepSeek-V3-style 1x128/128x128 blocks).
Fp8Recipe = Literal["delayed", "current", "mxfp8", "blockwise"]
# What the optimizer keeps as the master copy of a 16-bit parameter (planner.model.memory `MASTER_WEIGHT_BYTES`):
# fp32; remainder, the 16 low bits that with the bf16 parameter make the fp32 value (Apex DistributedFusedAdam
# store_param_remainders, as NeMo 1 sets it; Megatron-Core's precision-aware optimizer by default); fp16; none, the
# 16-bit parameters updated in place (Apex with optim.dtype bf16 on a bf16 model).
MasterWeights = Literal["fp32", "remainder", "fp16", "none"]
# The dtype of the optimizer's moments (Megatron --exp-avg-dtype / --exp-avg-sq-dtype, Apex optim.dtype).
MomentDtype = Literal["fp32", "bf16", "fp16", "fp8"]
# How context parallelism moves K/V (planner.model.perf `_cp`): Transformer Engine's ring (p2p), all-to-all
# (ulysses), all-gather and a2a+p2p (hierarchical); PyTorch's context_parallel rotations (allgather, alltoall).
CpExchange = Literal["ring", "allgather", "alltoall", "ulysses", "te_allgather", "hierarchical"]
# What one CUDA graph captures (planner.model.memory's static buffers): a layer, or the whole forward and backward.
CudaGraphScope = Literal["layer", "step"]
