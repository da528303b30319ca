"""Pipeline stages and schedules against the real schedule code, and the stage splits the frameworks run.

The oracle for the schedule is torch.distributed.pipelining itself: the per-rank action lists that
`ScheduleInterleaved1F1B` and `Schedule1F1B` build (their `_calculate_single_rank_operations` /
`_get_pipeline_order`, run on a bare instance: no process group needed). Stepping through those actions and
counting each chunk's forward passes not yet matched by a backward gives the activations really alive; the
planner's `inflight_states` must give the same peaks, chunk by chunk. Splits are checked against the
frameworks' documented examples (Megatron-Core's transformer_block.py, torchtitan's pipeline_parallel.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from planner.catalog import get_model
from planner.model import pipeline
from planner.model.memory import Recipe, pipeline_outputs_held, rank_plan
from planner.model.pipeline import PipelineSplit, inflight_states, schedule_order, virtual_stage_layers
from planner.schema import Layout
from planner.workloads.training.legality import layout_problems

torch = pytest.importorskip("torch")
from torch.distributed.pipelining import schedules as S  # noqa: E402

CASES = [(2, 2, 4), (2, 2, 8), (4, 2, 8), (4, 2, 16), (4, 4, 16), (8, 2, 16), (4, 3, 8), (8, 4, 32), (4, 2, 4)]


def torch_actions(pp: int, vpp: int, microbatches: int, rank: int) -> list[tuple[str, int]]:
    """("F" | "B", chunk) of one rank, in the order torch.distributed.pipelining runs them."""
    if vpp == 1:
        sched = object.__new__(S.Schedule1F1B)
        sched._num_stages, sched._n_microbatches = pp, microbatches
        actions = sched._get_pipeline_order()[rank]
    else:
        sched = object.__new__(S.ScheduleInterleaved1F1B)
        sched.pp_group_size, sched.n_local_stages, sched._n_microbatches = pp, vpp, microbatches
        sched.number_of_rounds = max(1, microbatches // pp)
        sched.microbatches_per_round = microbatches // sched.number_of_rounds
        actions = sched._calculate_single_rank_operations(rank)
    out = []
    for a in actions:
        if a is None or a.computation_type not in (S._ComputationType.FORWARD, S._ComputationType.FULL_BACKWARD):
            continue
        out.append(("F" if a.computation_type == S._ComputationType.FORWARD else "B", a.stage_index // pp))
    return out


def live_peaks(order: list[tuple[str, int]], vpp: int) -> list[np.ndarray]:
    counts = np.zeros(vpp, dtype=int)
    peaks = []
    for kind, chunk in order:
        counts[chunk] += 1 if kind == "F" else -1
        if kind == "F":
            peaks.append(counts.copy())
    return peaks


@pytest.mark.parametrize(("pp", "vpp", "m"), CASES)
def test_schedule_is_torchs(pp: int, vpp: int, m: int) -> None:
    for rank in range(pp):
        theirs = torch_actions(pp, vpp, m, rank)
        assert schedule_order(pp, vpp, m, rank) == theirs
        # every chunk-count vector alive after a forward is covered by one of the planner's peak states
        states = inflight_states(pp, vpp, m, rank)
        for seen in live_peaks(theirs, vpp):
            assert any((s >= seen).all() for s in states)
        assert {tuple(s) for s in states} <= {tuple(p) for p in live_peaks(theirs, vpp)}


@pytest.mark.parametrize(("pp", "vpp", "m"), [c for c in CASES if c[2] % c[0] == 0 and c[2] >= c[0]])
def test_interleaved_in_flight_counts(pp: int, vpp: int, m: int) -> None:
    """Known error fixed: the last stage holds (v − 1)·p + 1 chunk activations, not v; rank i holds
    Megatron's num_warmup_microbatches + 1 = 2(p − i − 1) + (v − 1)p + 1 (schedules.py), capped at M·v."""
    for rank in range(pp):
        alive = max(int(p.sum()) for p in live_peaks(torch_actions(pp, vpp, m, rank), vpp))
        megatron = min(2 * (pp - rank - 1) + (vpp - 1) * pp + 1, m * vpp) if vpp > 1 else min(pp - rank, m)
        assert alive == megatron == pipeline.inflight_chunks(pp, vpp, m, rank)
    last = max(int(p.sum()) for p in live_peaks(torch_actions(pp, vpp, m, pp - 1), vpp))
    assert last == (vpp - 1) * pp + 1


def test_chunk0_micro_batches_in_flight() -> None:
    """Known error fixed: the first stage's embedding extras count the micro-batches of chunk 0 alive, which
    peak at 2p on rank 0 (p of the first round, p of the next before chunk 0's backwards start), not the
    (2(p − 1) + (v − 1)p + 1)/v stage-equivalents the old model charged."""
    for pp, vpp, m in [(4, 2, 16), (8, 4, 32), (2, 2, 8)]:
        peaks = live_peaks(torch_actions(pp, vpp, m, 0), vpp)
        chunk0 = max(int(p[0]) for p in peaks)
        assert max(int(s[0]) for s in inflight_states(pp, vpp, m, 0)) == chunk0 == 2 * pp
        old = (2 * (pp - 1) + (vpp - 1) * pp + 1) / vpp
        assert chunk0 > old
    # and the memory model charges exactly that: the embedding coefficient of rank 0's worst state
    m = get_model("llama-3.1-8b")
    plan = rank_plan(m, 4, 2, 16, "first", Recipe(), PipelineSplit())
    assert plan.coefs[:, 4].max() == 8  # 2p micro-batches of chunk 0 carry the embedding's saved tensors
    last = rank_plan(m, 4, 2, 16, "last", Recipe(), PipelineSplit())
    assert last.coefs[:, 5].max() == 1 and last.coefs[:, :4].sum(axis=1).max() == 4 * ((2 - 1) * 4 + 1)


def test_megatron_split_counts_embedding_and_loss() -> None:
    """Llama 3.1 405B: 126 layers + embedding + loss = 128 units, PP8·VPP8 and PP16·VPP4 (2 per chunk)."""
    split = PipelineSplit(embedding_counts=True, loss_counts=True)
    for pp, vpp in [(8, 8), (16, 4)]:
        got = virtual_stage_layers(126, pp, vpp, split)
        assert not isinstance(got, str)
        assert got[0] == 1 and got[-1] == 1 and set(got[1:-1]) == {2} and sum(got) == 126
    assert isinstance(virtual_stage_layers(126, 8, 8), str)  # without the flags the chunks are unequal
    m = get_model("llama-3.1-405b")
    flagged = Layout(tp=8, pp=8, vpp=8, dp=4, global_batch=64, account_for_embedding_in_pipeline_split=True,
                     account_for_loss_in_pipeline_split=True)
    assert not layout_problems(m, flagged, seq=8192)
    assert layout_problems(m, flagged.model_copy(update={"account_for_loss_in_pipeline_split": False}), seq=8192)


def test_megatron_first_last_stage_layers() -> None:
    split = PipelineSplit(first_stage_layers=7, last_stage_layers=7)
    got = virtual_stage_layers(126, 16, 1, split)
    assert got == (7,) + (8,) * 14 + (7,)
    assert isinstance(virtual_stage_layers(126, 16, 4, split), str)  # 7 layers do not split into 4 chunks
    assert virtual_stage_layers(70, 12, 1) == (6,) * 11 + (4,)  # ⌈L/p⌉, the rest on the last (BLOOM)


def test_torchtitan_split() -> None:
    """torchtitan's default: the embedding and the output weigh one layer; 126 layers over 16 stages are
    7, 8 × 14, 7 (the issue's example, pipeline_parallel.py `_generate_llm_fqn_per_model_part`)."""
    got = virtual_stage_layers(126, 8, 2, PipelineSplit(style="torchtitan"))
    assert got == (7,) + (8,) * 14 + (7,)
    assert virtual_stage_layers(32, 4, 1, PipelineSplit(style="torchtitan")) == (8, 9, 8, 7)  # 34 units: 9, 9, 8, 8
    # rank 0 holds virtual stages 0 and 8 (loop style): 7 + 8; the slowest rank 8 + 8
    assert pipeline.rank_layers(126, 8, 2, 0, PipelineSplit(style="torchtitan")) == 15
    assert pipeline.max_stage_layers(126, np.array([8, 16]), np.array([2, 1]), PipelineSplit(style="torchtitan")
                                     ).tolist() == [16, 8]


def test_rank_layers_table_is_array_ready() -> None:
    split = PipelineSplit(embedding_counts=True, loss_counts=True)
    pp, vpp = np.array([8, 16, 4, 2]), np.array([8, 4, 1, 1])
    got = pipeline.rank_layers_table(126, pp, vpp, "first", split)
    assert got.tolist() == [15, 7, 31, 63]
    assert pipeline.rank_layers_table(126, 8, 8, "last", split) == 15
    assert pipeline.max_stage_layers(126, pp, vpp, split).tolist() == [16, 8, 32, 63]


def test_inflight_states_equal_the_whole_schedule_walk() -> None:
    """inflight_states walks one period of the steady state; the full schedule_order walk agrees."""
    from planner.model.pipeline import inflight_states, schedule_order

    def walked(pp: int, vpp: int, mb: int, rank: int) -> list[tuple[int, ...]]:
        counts, seen = [0] * vpp, set()
        for kind, chunk in schedule_order(pp, vpp, mb, rank):
            counts[chunk] += 1 if kind == "F" else -1
            if kind == "F":
                seen.add(tuple(counts))
        keep: list[tuple[int, ...]] = []
        for s in sorted(seen, key=sum, reverse=True):
            if not any(all(a >= b for a, b in zip(o, s, strict=True)) for o in keep):
                keep.append(s)
        return sorted(keep)

    for pp, vpp, mb in itertools.product((2, 3, 4, 8), (2, 3, 5), (1, 2, 5, 8, 12, 17, 32)):
        for rank in range(pp):
            assert sorted(map(tuple, inflight_states(pp, vpp, mb, rank).tolist())) == walked(pp, vpp, mb, rank)


def test_explicit_layout_is_read_as_megatron_reads_it() -> None:
    """--pipeline-model-parallel-layout: Megatron-Core's own docstring example, and DeepSeek-V3's PP4·VPP4 layout
    from Megatron-Bridge (embedding + 4, 4 × 14, 1 + MTP + loss)."""
    from planner.errors import InputError
    from planner.interop.megatron import pipeline_layout_from_str, pipeline_layout_str

    assert pipeline_layout_from_str("Ettt|(tt|)*29,m|L") == ((3, *[2] * 29, 0, 0), 1)
    assert pipeline_layout_from_str("Et*4|(t*4|)*14tmL") == ((4, *[4] * 14, 1), 1)
    assert pipeline_layout_from_str(pipeline_layout_str((3, 4, 5))) == ((3, 4, 5), 0)
    for bad in ("tt|L", "Ett|tt", "Ex|tL", "E(t|)*999999L"):
        with pytest.raises(InputError, match="--pipeline-model-parallel-layout"):
            pipeline_layout_from_str(bad)


def test_explicit_layout_equal_to_a_split_gives_the_same_memory_and_time() -> None:
    """Llama 3.1 405B as PP8·VPP8 with the embedding and loss counted as layers is the layout 1, 2 × 62, 1: the
    same stages, memory and step time whichever way it is written."""
    from planner.catalog import get_gpu
    from planner.model.memory import training_memory
    from planner.model.perf import training_time

    m = get_model("llama-3.1-405b")
    flags = Layout(tp=8, pp=8, vpp=8, dp=2, sequence_parallel=True, global_batch=32, recompute="selective",
                   account_for_embedding_in_pipeline_split=True, account_for_loss_in_pipeline_split=True)
    chunks = (1, *[2] * 62, 1)
    explicit = flags.model_copy(update={"account_for_embedding_in_pipeline_split": False,
                                        "account_for_loss_in_pipeline_split": False, "pipeline_layout": chunks})
    assert virtual_stage_layers(126, 8, 8, PipelineSplit(chunks=chunks)) == virtual_stage_layers(
        126, 8, 8, PipelineSplit(embedding_counts=True, loss_counts=True))
    assert layout_problems(m, explicit, seq=8192) == []
    assert training_memory(m, explicit, 8192).total == training_memory(m, flags, 8192).total
    gpu = get_gpu("h100-sxm")
    assert training_time(m, explicit, gpu, 8192, 1e9).step_seconds == pytest.approx(
        training_time(m, flags, gpu, 8192, 1e9).step_seconds)


def test_explicit_layout_legality() -> None:
    m = get_model("llama-3.1-8b")
    base = Layout(pp=2, vpp=2, global_batch=8, pipeline_layout=(8, 8, 8, 8))
    assert layout_problems(m, base, seq=4096) == []
    assert any("has 4 stages, pp·vpp = 4·2" in p for p in layout_problems(m, base.model_copy(update={"pp": 4}),
                                                                          seq=4096))
    assert any("places 31 layers" in p
               for p in layout_problems(m, base.model_copy(update={"pipeline_layout": (8, 8, 8, 7)}), seq=4096))
    assert any("does not combine" in p for p in layout_problems(
        m, base.model_copy(update={"account_for_loss_in_pipeline_split": True}), seq=4096))


def test_a_real_pipelined_step_holds_what_the_schedule_says() -> None:
    """End to end: a torch.distributed.pipelining step on 2 gloo ranks (tests/pipeline_oracle.py), its saved block
    activations followed storage by storage. The most alive at once on each rank are the planner's in-flight
    chunks: min(p − rank, M) under 1F1B, 2(p − rank − 1) + (v − 1)p + 1 under interleaving."""
    pytest.importorskip("torch.distributed.pipelining")
    from pipeline_oracle import pipelined_step

    pp, m = 2, 6
    for schedule, vpp in (("1f1b", 1), ("interleaved", 2)):
        planned = [float(inflight_states(pp, vpp, m, rank).sum(axis=1).max()) for rank in range(pp)]
        chunks, held = pipelined_step(schedule, pp, m)
        assert chunks == planned
        # step() keeps every micro-batch's output on the last rank for its merge (implementation.
        # pipeline_outputs_kept, as torchtitan ran it before return_outputs=False)
        assert held == [0] * (pp - 1) + [pipeline_outputs_held(pp, m)]
