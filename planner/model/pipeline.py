"""Pipeline parallelism as the frameworks run it: which layers each stage holds, and how many
micro-batches of each of its model chunks are alive at its memory peak.

Split (virtual stage k = chunk·p + rank holds a contiguous run of layers, in order of k):
- Megatron-Core (megatron/core/transformer/transformer_block.py `get_num_layers_to_build`,
  transformer_layer.py `get_transformer_layer_offset`): L/p layers per rank, L/(p·v) per chunk.
  `account_for_embedding_in_pipeline_split` / `..._loss_...` count the embedding and the loss as one
  layer each, so (L + e + l)/(p·v) units per chunk with one layer less in the first (last) chunk:
  Llama 3.1 405B's 126 layers run as PP8·VPP8 (128 units, 2 per chunk). `--decoder-first/last-pipeline-
  num-layers` give the first (last) rank its own count, the other ranks share the rest evenly; every
  rank's count must split into its v chunks. Without any of these, a depth that does not divide L runs
  as ⌈L/p⌉ per stage and the rest on the last (Megatron-DeepSpeed's uniform partition, Megatron-Core's
  --decoder-last-pipeline-num-layers).
- An explicit layout (Megatron's --pipeline-model-parallel-layout, `layout.pipeline_layout`): the decoder layers of
  each virtual stage as written, e.g. DeepSeek-V3's PP4·VPP4 recipe 4, 4 × 14, 1 (the embedding with the first, MTP
  and the loss with the last).
- torchtitan (torchtitan/distributed/pipeline_parallel.py `_generate_llm_fqn_per_model_part`): the
  embedding and the output each weigh one layer (`pipeline_parallel_first/last_stage_less_layers` = 1);
  (L + 2) units over p·v stages, ⌊(L + 2)/(p·v)⌋ each and one more on the first (L + 2) mod (p·v)
  stages: 126 layers over 16 stages are 7, 8 × 14, 7.

Schedule (in-flight micro-batches): rank i runs min(2(p − i − 1) + (v − 1)·g + 1, M·v) forward chunk
passes before its first backward (g = micro-batches per round, p when M is a multiple of p), then one
forward and one backward each step; forward passes visit chunk (n // g) mod v and backward passes chunk
v − 1 − ((n − warmup) // g) mod v. This is Megatron-Core's
pipeline_parallel/schedules.py `forward_backward_pipelining_with_interleaving` and
torch.distributed.pipelining's ScheduleInterleaved1F1B (`_get_1f1b_rank_ops`); with v = 1 it is 1F1B,
min(p − i, M) micro-batches on rank i. `inflight_states` steps through that order and keeps every
chunk-count vector that can be a peak, so a stage whose chunks differ (the embedding in chunk 0 of
rank 0, the loss in the last chunk of rank p − 1, uneven splits) is charged what is really alive.

Functions take Python ints; the `*_table` helpers take numpy arrays of pp/vpp (a solver grid) and
evaluate each distinct combination once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

SplitStyle = Literal["megatron", "torchtitan"]
# torchtitan's ParallelismConfig.pipeline_parallel_first_stage_less_layers / last_stage_less_layers defaults
TORCHTITAN_INPUT_WEIGHT = 1
TORCHTITAN_OUTPUT_WEIGHT = 1


@dataclass(frozen=True)
class PipelineSplit:
    """How a framework assigns layers to pipeline stages (fixed per job, not searched)."""

    style: SplitStyle = "megatron"
    embedding_counts: bool = False  # Megatron account_for_embedding_in_pipeline_split
    loss_counts: bool = False  # Megatron account_for_loss_in_pipeline_split
    first_stage_layers: int | None = None  # Megatron decoder_first_pipeline_num_layers
    last_stage_layers: int | None = None  # Megatron decoder_last_pipeline_num_layers
    chunks: tuple[int, ...] | None = None  # Megatron pipeline_model_parallel_layout: layers per virtual stage


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=4096)
def virtual_stage_layers(
    layers: int, pp: int, vpp: int, split: PipelineSplit = PipelineSplit()
) -> tuple[int, ...] | str:
    """Transformer layers of each virtual stage k = chunk·pp + rank (k = 0 holds the embedding, k = pp·vpp − 1
    the output layer and loss), or why the framework refuses the split (a sentence naming the knob)."""
    stages = pp * vpp
    if split.chunks is not None:
        # an explicit layout (megatron/core/transformer/pipeline_parallel_layer_layout.py): it replaces the split
        if split.first_stage_layers is not None or split.last_stage_layers is not None or split.embedding_counts \
                or split.loss_counts:
            return ("pipeline_layout does not combine with first/last stage layer counts or counting the embedding "
                    "or loss as a layer")
        if len(split.chunks) != stages:
            return f"pipeline_layout has {len(split.chunks)} stages, pp·vpp = {pp}·{vpp} = {stages}"
        if sum(split.chunks) != layers:
            return f"pipeline_layout places {sum(split.chunks)} layers, the model has {layers}"
        return split.chunks
    if split.style == "torchtitan":
        if stages == 1:
            return (layers,)
        units = layers + TORCHTITAN_INPUT_WEIGHT + TORCHTITAN_OUTPUT_WEIGHT
        each, extra = divmod(units, stages)
        if each < max(1, TORCHTITAN_INPUT_WEIGHT, TORCHTITAN_OUTPUT_WEIGHT):
            return (f"{stages} pipeline stages of {layers} layers + embedding + output leave a stage without "
                    "a layer (torchtitan)")
        counts = [each + (k < extra) for k in range(stages)]
        counts[0] -= TORCHTITAN_INPUT_WEIGHT
        counts[-1] -= TORCHTITAN_OUTPUT_WEIGHT
        return tuple(counts)
    first, last = split.first_stage_layers, split.last_stage_layers
    accounted = split.embedding_counts or split.loss_counts
    if (first is not None or last is not None) and accounted:
        return "the first/last stage layer counts do not combine with counting the embedding or loss as a layer"
    if pp == 1:
        if vpp > 1:
            return "virtual stages need pp > 1"
        return (layers,)
    if first is None and last is None and not accounted and layers % pp:
        last = layers - (pp - 1) * ceil_div(layers, pp)  # ⌈L/p⌉ per stage, the rest on the last
        if last < 1:
            return f"{pp} stages of ⌈{layers}/{pp}⌉ layers leave the last stage empty"
    if first is not None or last is not None:
        given = [x for x in (first, last) if x is not None]
        rest, others = layers - sum(given), pp - len(given)
        if rest < 0 or any(x < 0 for x in given) or (others > 0 and (rest % others or rest < others)):
            return (f"{layers} layers less the first/last stage counts {given} do not split evenly over the "
                    f"other {others} stages")
        middle = rest // others if others else 0
        per_rank = [middle] * pp
        if first is not None:
            per_rank[0] = first
        if last is not None:
            per_rank[-1] = last
        if any(n % vpp for n in per_rank):
            return f"a stage's layers ({sorted(set(per_rank))}) do not split into {vpp} equal model chunks"
        return tuple(per_rank[k % pp] // vpp for k in range(stages))
    units = layers + split.embedding_counts + split.loss_counts
    if units % stages:
        what = " + embedding" * split.embedding_counts + " + loss" * split.loss_counts
        return f"pp·vpp = {pp}·{vpp} does not divide {layers} layers{what} ({units} units): chunks must be equal"
    each = units // stages
    counts = [each] * stages
    counts[0] -= split.embedding_counts
    counts[-1] -= split.loss_counts
    if min(counts) < 0:
        return "a model chunk would hold fewer than zero layers"
    return tuple(counts)


def split_problem(layers: int, pp: int, vpp: int, split: PipelineSplit = PipelineSplit()) -> str | None:
    got = virtual_stage_layers(layers, pp, vpp, split)
    return got if isinstance(got, str) else None


def chunk_layers(layers: int, pp: int, vpp: int, rank: int, split: PipelineSplit = PipelineSplit()) -> tuple[int, ...]:
    """Layers of each model chunk held by pipeline rank `rank` (ValueError when the split is refused)."""
    got = virtual_stage_layers(layers, pp, vpp, split)
    if isinstance(got, str):
        raise ValueError(got)
    return tuple(got[c * pp + rank] for c in range(vpp))


def rank_layers(layers: int, pp: int, vpp: int, rank: int, split: PipelineSplit = PipelineSplit()) -> int:
    return sum(chunk_layers(layers, pp, vpp, rank, split))


# --------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------


def _interleaved(pp: int, vpp: int, microbatches: int, rank: int) -> tuple[int, int, int]:
    """(warmup forwards, micro-batches per round, passes per direction) of a rank's 1F1B schedule."""
    total = microbatches * vpp
    if pp == 1 or vpp == 1:
        return (0 if pp == 1 else min(pp - rank - 1, microbatches)), 1, total
    rounds = max(1, microbatches // pp)
    group = microbatches // rounds  # micro-batches per round (pp when M is a multiple of pp)
    return min((vpp - 1) * group + 2 * (pp - rank - 1), total), group, total


def _fwd_chunk(n: int, group: int, vpp: int) -> int:
    return (n // group) % vpp


def _bwd_chunk(n: int, group: int, vpp: int, warmup: int) -> int:
    return vpp - 1 - ((n - warmup) // group) % vpp if vpp > 1 else 0


def schedule_order(pp: int, vpp: int, microbatches: int, rank: int) -> list[tuple[str, int]]:
    """The compute passes of pipeline rank `rank` in the order they run: ("F" | "B", chunk)."""
    warmup, group, total = _interleaved(pp, vpp, microbatches, rank)
    order = [("F", _fwd_chunk(n, group, vpp)) for n in range(warmup)]
    for n in range(warmup, total):  # steady state: one forward then one backward
        order += [("F", _fwd_chunk(n, group, vpp)), ("B", _bwd_chunk(n, group, vpp, warmup))]
    order += [("B", _bwd_chunk(n, group, vpp, warmup)) for n in range(total, total + warmup)]  # cooldown
    return order


def bubble_slots(pp: Any, vpp: Any) -> Any:
    """Micro-batch times a step spends beyond its micro-batches' own work, filling and draining the pipeline:
    (p − 1)/v when every chunk pass takes 1/v of a micro-batch's forward or backward (Narayanan et al. 2021
    §2.2). Running `schedule_order` with each pass waiting for the previous virtual stage (forward) or the next
    (backward) takes exactly (M + bubble_slots)·(t_f + t_b) (tests/test_pipeline.py)."""
    return (pp - 1) / vpp


@functools.lru_cache(maxsize=4096)
def inflight_states(pp: int, vpp: int, microbatches: int, rank: int) -> np.ndarray:
    """Micro-batches of each chunk alive right after each forward pass that can be the rank's memory peak:
    an (n, vpp) array of the vectors not dominated by another (each chunk count ≤ and one <).

    Only forwards raise a count: warmup states are covered by the first steady one, the cooldown only
    frees, and in steady state both chunk sequences repeat every group·vpp passes, so the counts after
    forward n + group·vpp equal those after forward n: one period of the schedule_order walk suffices."""
    if vpp == 1:
        return np.array([[1 if pp == 1 else min(pp - rank, microbatches)]], dtype=np.int64)
    warmup, group, total = _interleaved(pp, vpp, microbatches, rank)
    counts = [0] * vpp
    for n in range(warmup):
        counts[_fwd_chunk(n, group, vpp)] += 1
    seen: set[tuple[int, ...]] = {tuple(counts)}
    for n in range(warmup, min(total, warmup + group * vpp)):
        counts[_fwd_chunk(n, group, vpp)] += 1
        seen.add(tuple(counts))
        counts[_bwd_chunk(n, group, vpp, warmup)] -= 1
    return undominated(np.array(sorted(seen, key=lambda c: (-sum(c), c)), dtype=np.int64))  # largest first


# Elements one block of the dominance test compares at once (16 Mi booleans: 16 MiB per temporary array).
DOMINANCE_BLOCK = 2**24


def undominated(rows: np.ndarray) -> np.ndarray:
    """The rows no other row covers (≥ in every column), in their order; of equal rows the first. Weighted by
    any non-negative bytes per column, a covered row is never the largest."""
    n, v = rows.shape
    covered = np.zeros(n, dtype=bool)
    # blocks of coverers, so that the n × n × v comparison never holds more than DOMINANCE_BLOCK elements at once
    step = max(1, DOMINANCE_BLOCK // max(1, n * v))
    for lo in range(0, n, step):
        block = rows[lo:lo + step]
        covers = np.all(block[:, None, :] >= rows[None, :, :], axis=2)  # covers[i, j]: row lo+i ≥ row j everywhere
        equal = np.all(block[:, None, :] == rows[None, :, :], axis=2)
        earlier = np.arange(lo, lo + len(block))[:, None] < np.arange(n)[None, :]  # row lo+i comes before row j
        covered |= (covers & (~equal | earlier)).any(axis=0)
    return rows[~covered]


def inflight_chunks(pp: int, vpp: int, microbatches: int, rank: int) -> int:
    """Chunk activations alive at the rank's peak when every chunk weighs the same: 2(p − i − 1) + (v − 1)p + 1
    for interleaving (M a multiple of p, M ≥ p), min(p − i, M) for 1F1B."""
    return int(inflight_states(pp, vpp, microbatches, rank).sum(axis=1).max())


# --------------------------------------------------------------------------------------------
# Array helpers (a solver grid holds a few distinct pp/vpp/M combinations)
# --------------------------------------------------------------------------------------------


def combos(*columns: Any) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Each distinct combination of the integer columns (scalars or arrays of one shape), with the flat
    indices of the rows that hold it."""
    cols = np.broadcast_arrays(*[np.asarray(c, dtype=np.int64) for c in columns])
    if cols[0].size == 1:  # one layout: no grouping to do
        yield tuple(int(c.reshape(-1)[0]) for c in cols), np.zeros(1, dtype=np.int64)
        return
    flat = [c.reshape(-1) for c in cols]
    # one int64 key per row in mixed radix, then one stable sort: O(n log n), not O(n · combinations)
    key = np.zeros(len(flat[0]), dtype=np.int64)
    for c in flat:
        key = key * (int(c.max()) + 1) + c
    order = np.argsort(key, kind="stable")
    keys = key[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(keys)], strict=True):
        first = order[lo]
        yield tuple(int(c[first]) for c in flat), np.sort(order[lo:hi])


def rank_layers_table(layers: int, pp: Any, vpp: Any, rank: str, split: PipelineSplit = PipelineSplit()) -> Any:
    """Layers held by the first ("first"), second ("second") or last ("last") pipeline rank, or the most
    layers any rank holds ("max"), for scalars or arrays of pp and vpp; 0 where the split is refused."""
    shape = np.broadcast(np.asarray(pp), np.asarray(vpp)).shape
    out = np.zeros(int(np.prod(shape)) or 1, dtype=np.int64)
    for (p, v), idx in combos(pp, vpp):
        out[idx] = _rank_layers(layers, p, v, split).get(rank, 0)
    return out.reshape(shape) if shape else int(out[0])


@functools.lru_cache(maxsize=4096)
def _rank_layers(layers: int, p: int, v: int, split: PipelineSplit) -> dict[str, int]:
    """rank_layers_table's picks for one (pp, vpp); empty where the split is refused."""
    got = virtual_stage_layers(layers, p, v, split)
    if isinstance(got, str):
        return {}
    per_rank = [sum(got[c * p + r] for c in range(v)) for r in range(p)]
    return {"first": per_rank[0], "second": per_rank[min(1, p - 1)], "last": per_rank[-1], "max": max(per_rank)}


def max_stage_layers(layers: int, pp: Any, vpp: Any, split: PipelineSplit = PipelineSplit()) -> Any:
    """The most transformer layers one pipeline rank holds (the slowest stage's compute), array-ready."""
    return rank_layers_table(layers, pp, vpp, "max", split)
