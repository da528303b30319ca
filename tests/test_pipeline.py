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
    return [(kind, stage // pp) for kind, stage, _ in torch_passes(pp, vpp, microbatches, rank)]


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


def torch_passes(pp: int, vpp: int, microbatches: int, rank: int) -> list[tuple[str, int, int]]:
    """("F" | "B", virtual stage, micro-batch) of one rank, in the order torch.distributed.pipelining runs them."""
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
    kinds = {S._ComputationType.FORWARD: "F", S._ComputationType.FULL_BACKWARD: "B"}
    return [(kinds[a.computation_type], a.stage_index, a.microbatch_index) for a in actions
            if a is not None and a.computation_type in kinds]


def makespan(passes: list[list[tuple[str, int, int]]], stages: int, t_pass: dict[str, float]) -> float:
    """When the last pass ends: each rank runs its passes in order, a forward once the previous virtual stage's
    forward of the same micro-batch is done, a backward once its own forward and the next stage's backward are
    (activations and gradients sent asynchronously, at no cost)."""
    done: dict[tuple[str, int, int], float] = {}
    free, nxt = [0.0] * len(passes), [0] * len(passes)
    while any(nxt[r] < len(passes[r]) for r in range(len(passes))):
        progressed = False
        for r, mine in enumerate(passes):
            while nxt[r] < len(mine):
                kind, stage, mb = mine[nxt[r]]
                deps = [("F", stage - 1, mb)] if kind == "F" and stage > 0 else []
                if kind == "B":
                    deps += [("F", stage, mb)] + ([("B", stage + 1, mb)] if stage < stages - 1 else [])
                if any(d not in done for d in deps):
                    break
                free[r] = max([free[r]] + [done[d] for d in deps]) + t_pass[kind]
                done[(kind, stage, mb)] = free[r]
                nxt[r] += 1
                progressed = True
        assert progressed, "the schedule deadlocks"
    return max(free)


@pytest.mark.parametrize(("pp", "vpp", "m"), CASES)
@pytest.mark.parametrize("backward", [2.0, 3.0])  # a backward is two forwards, three with full recompute
def test_the_bubble_is_what_the_schedule_takes(pp: int, vpp: int, m: int, backward: float) -> None:
    """The time model's pipeline term against the real schedule: torch.distributed.pipelining's own passes, each
    chunk pass 1/v of a micro-batch's forward or backward, finish in (M + bubble_slots)·(t_f + t_b)."""
    passes = [torch_passes(pp, vpp, m, r) for r in range(pp)]
    took = makespan(passes, pp * vpp, {"F": 1.0 / vpp, "B": backward / vpp})
    assert took == pytest.approx((m + pipeline.bubble_slots(pp, vpp)) * (1.0 + backward))


def deepspeed_train_schedule(m: int, p: int, stage: int) -> list[tuple[str, int]]:
    """A stage's instructions under DeepSpeed's pipeline engine (deepspeed/runtime/pipe/schedule.py TrainSchedule):
    2(M + p − 1) steps; even stages run forwards on even steps and backwards on odd ones, odd stages the other
    way round, so neighbours always run opposite passes. A step first exchanges with the neighbours, a forward
    step receiving its input and sending back the gradient of the last backward, a backward step sending on the
    output of the last forward and receiving its gradient, then computes. ("F"/"B", micro-batch) or
    ("recv_act" | "send_grad" | "send_act" | "recv_grad", -1)."""
    out: list[tuple[str, int]] = []
    prev = -1
    for step in range(2 * (m + p - 1)):
        forward = step % 2 == stage % 2
        half = step // 2 if step % 2 == 0 else (step - 1) // 2
        if forward:
            mb = half - stage // 2
        elif step % 2 == 0:
            mb = half - p + (stage + 1) // 2
        else:
            mb = half - p + 1 + stage // 2
        if forward and stage > 0:
            out += [("recv_act", -1)] * (0 <= mb < m) + [("send_grad", -1)] * (0 <= prev < m)
        if not forward and stage < p - 1:
            out += [("send_act", -1)] * (0 <= prev < m) + [("recv_grad", -1)] * (0 <= mb < m)
        if 0 <= mb < m:
            out.append(("F" if forward else "B", mb))
        prev = mb
    return out


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (4, 5), (8, 16), (35, 160), (35, 240)])
def test_deepspeeds_pipeline_schedule_has_the_1f1b_bubble(p: int, m: int) -> None:
    """DeepSpeed's engine alternates forward and backward steps in lockstep with blocking, paired send/recv (the
    communication "is blocking and must be paired", schedule.py): a rank waits at each exchange until its
    neighbour reaches the matching one. It still finishes in (M + p − 1)·(t_f + t_b), the bubble planner charges
    (MT-NLG's 35 stages among the cases), holding as many micro-batches in flight as 1F1B."""
    t_f, t_b = 1.0, 3.0
    progs = [deepspeed_train_schedule(m, p, s) for s in range(p)]
    assert all(sum(op == "F" for op, _ in prog) == sum(op == "B" for op, _ in prog) == m for prog in progs)
    # and it holds the micro-batches planner's memory model charges a 1F1B stage with: min(p − s, M)
    for s, prog in enumerate(progs):
        alive = list(itertools.accumulate((op == "F") - (op == "B") for op, _ in prog))
        assert max(alive) == pipeline.inflight_chunks(p, 1, m, s)
    partner = {"send_act": (1, "recv_act"), "recv_act": (-1, "send_act"),
               "send_grad": (-1, "recv_grad"), "recv_grad": (1, "send_grad")}
    clock, nxt = [0.0] * p, [0] * p
    while any(nxt[s] < len(progs[s]) for s in range(p)):
        progressed = False
        for s in range(p):
            while nxt[s] < len(progs[s]):
                op = progs[s][nxt[s]][0]
                if op in ("F", "B"):
                    clock[s] += t_f if op == "F" else t_b
                else:
                    step, want = partner[op]
                    q = s + step
                    if nxt[q] >= len(progs[q]) or progs[q][nxt[q]][0] != want:
                        break
                    clock[s] = clock[q] = max(clock[s], clock[q])
                    nxt[q] += 1
                nxt[s] += 1
                progressed = True
        assert progressed, "the schedule deadlocks"
    assert max(clock) == pytest.approx((m + pipeline.bubble_slots(p, 1)) * (t_f + t_b))


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


def test_undominated_in_blocks_equals_the_whole_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dominance test runs in blocks of coverers to bound its memory; any block size gives the same rows."""
    import planner.model.pipeline as pipeline

    rng = np.random.default_rng(0)
    rows = rng.integers(0, 4, size=(60, 5))
    whole = pipeline.undominated(rows)
    monkeypatch.setattr(pipeline, "DOMINANCE_BLOCK", 7 * 60 * 5)
    assert np.array_equal(pipeline.undominated(rows), whole)
    covered = [i for i in range(len(rows)) if any((rows[j] >= rows[i]).all() and ((rows[j] > rows[i]).any() or j < i)
                                                  for j in range(len(rows)) if j != i)]
    assert len(whole) == len(rows) - len(covered)


def test_deepspeed_has_no_interleaved_schedule() -> None:
    """DeepSpeed's pipeline engine runs one stage per rank (runtime/pipe/schedule.py TrainSchedule): virtual stages
    are refused under framework deepspeed, and the search offers none."""
    from planner import Scenario, solve
    from planner.schema import Implementation

    m = get_model("llama-2-7b")
    lay = Layout(tp=1, pp=4, vpp=2, dp=2, micro_batch=1, global_batch=64)
    assert any(p.startswith("vpp: 2: DeepSpeed") for p in layout_problems(m, lay, impl=Implementation(
        framework="deepspeed")))
    assert not layout_problems(m, lay)  # Megatron interleaves
    doc = {"model": "llama-2-7b", "job": {"tokens": 1e9, "seq_len": 4096, "global_batch": 64},
           "hardware": {"skus": ["a100-40gb"], "max_gpus": 32}, "implementation": {"framework": "deepspeed"},
           "layout": {"pp": 4}, "objective": "time", "top_k": 5}
    plans = solve(Scenario.model_validate(doc)).plans
    assert plans and all(p.evaluation.layout.vpp == 1 for p in plans)
