"""Rules among a layout's own fields, whatever the model, hardware and framework: one message each.

A scenario's fixed layout (planner.scenario.FixedLayout) checks them when it loads, where a field the search
chooses is None and no rule involving it applies; the legality checks (planner.workloads.training.legality)
check every complete layout with the same functions. Each returns 'field: what is wrong (what is allowed)'.
"""

from __future__ import annotations

import math

# what Megatron's --recompute-num-layers and --recompute-method choose among: full recompute's layers
RECOMPUTE_COUNT_KEYS = ("recompute_num_layers", "recompute_method")


def recompute_count_problem(key: str, recompute: str | None) -> str | None:
    """`key` (RECOMPUTE_COUNT_KEYS) picks which layers full recompute reruns; selective recompute reruns its
    modules in every layer and none reruns nothing (megatron/core/transformer/transformer_config.py)."""
    if recompute in ("none", "selective"):
        return f"{key} needs recompute: full (recompute is {recompute})"
    return None


def virtual_stage_problem(pp: int | None, vpp: int | None) -> str | None:
    """Virtual stages interleave model chunks over the pipeline's ranks: there must be more than one rank."""
    if vpp is not None and vpp > 1 and pp == 1:
        return f"vpp: {vpp} virtual stages need pp > 1 (pp is 1)"
    return None


def sequence_parallel_problem(tp: int | None, sequence_parallel: bool | None) -> str | None:
    """Sequence parallelism splits what tensor parallelism replicates over the TP group."""
    if sequence_parallel and tp == 1:
        return "sequence_parallel: needs tp > 1 (tp is 1)"
    return None


def expert_tp_problem(tp: int | None, expert_tp: int | None) -> str | None:
    """Megatron-Core's MoE parallel folding splits each TP group into expert-TP groups (parallel_state.py)."""
    if expert_tp is not None and tp is not None and tp % expert_tp:
        return f"expert_tp: {expert_tp} does not divide tp ({tp})"
    return None


def gpu_count_problem(gpus: int | None, tp: int | None, pp: int | None, dp: int | None,
                      cp: int | None) -> str | None:
    """Every GPU holds one (TP, PP, DP, CP) coordinate."""
    sizes = (tp, pp, dp, cp)
    if gpus is None or any(v is None for v in sizes):
        return None
    product = math.prod(v for v in sizes if v is not None)
    if product != gpus:
        return f"gpus: tp·pp·dp·cp = {'·'.join(map(str, sizes))} = {product}, not {gpus}"
    return None


def dp_shard_problem(dp_shard: int | None, dp: int | None, cp: int | None) -> str | None:
    """HSDP shards within groups of `dp_shard` data-parallel ranks (CP ranks shard too) and replicates across them."""
    if dp_shard is not None and dp is not None and cp is not None and (dp * cp) % dp_shard:
        return f"dp_shard: {dp_shard} does not divide dp·cp ({dp * cp})"
    return None
