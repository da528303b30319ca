"""The held-out published runs (planner/data/validation_runs.yaml) through planner's public path, and the pieces
that path needs: scenario-defined GPUs with a power limit, FSDP inside pipeline stages, and sequences a
learned position table cannot hold.

The issue's targets (median |step error| ≤ 10 %, worst ≤ 25 %, ≥ 95 % of configurations that ran predicted
to fit, reserved peaks within 15 %): the median and fit targets are reached, the worst and memory ones not;
VALIDATION.md lists the runs that miss and why. The test holds the levels measured today so that a change to the
physics cannot make them worse unnoticed."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

from planner.catalog import derive_gpus, get_gpu, get_model
from planner.errors import InputError
from planner.model.power import power_scale
from planner.scenario import Scenario
from planner.schema import GpuDefinition
from planner.search.problem import resolve_problem
from planner.workflows.estimate import EstimateRequest, estimate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import validation

# Levels measured on the held-out set (VALIDATION.md); the targets are validation.*_TARGET.
# the target (10 %), met: 9.3 % on 98 runs with the unstated knobs completed (planner: complete)
MEDIAN_NOW = validation.MEDIAN_TARGET
FIT_NOW = 1.0  # every configuration that ran is predicted to fit (the target: 95 %)
MEMORY_WITHIN_NOW = 23  # of the reserved / allocated peaks within MEMORY_TARGET
# Every held-out layout can be stated (Megatron-Core's EP folding over TP·DP·CP as layout.expert_tp).
REFUSED: dict[str, str] = {}


@pytest.fixture(scope="module")
def held_out() -> tuple[list[validation.HeldOut], list[tuple[str, str]]]:
    return validation.run_all()


def test_every_run_goes_through_the_public_path(held_out: tuple[list, list]) -> None:
    results, refused = held_out
    assert {rid for rid, _ in refused} == set(REFUSED)
    for rid, why in refused:
        assert REFUSED[rid] in why
    assert len(results) + len(refused) == len(validation.load_runs())
    assert all(r.evaluation.time.step_seconds > 0 and r.interval[0] < r.interval[1] for r in results)


def test_held_out_accuracy_holds_its_level(held_out: tuple[list, list]) -> None:
    results, _ = held_out
    s = validation.summary(results)
    assert s.median <= MEDIAN_NOW
    assert s.fit / s.runs >= FIT_NOW
    within = [r for r in results if r.memory_error is not None and abs(r.memory_error) <= validation.MEMORY_TARGET]
    assert len(within) >= MEMORY_WITHIN_NOW
    # the framework families NVIDIA publishes reach the step-time target; torchtitan's reserved peaks the memory one
    dgxc = [abs(r.error) for r in results if r.family == "DGX Cloud (NeMo)"]
    assert statistics.median(dgxc) <= validation.MEDIAN_TARGET
    titan = [abs(r.memory_error) for r in results if r.family.startswith("torchtitan") and r.memory_error is not None]
    assert statistics.median(titan) <= validation.MEMORY_TARGET


def test_torchtitan_pipeline_runs_are_expressible(held_out: tuple[list, list]) -> None:
    """FSDP2 inside each pipeline stage (zero 3 with pp > 1) is what torchtitan runs: estimated, not refused."""
    results, _ = held_out
    pp_runs = [r for r in results if r.family.startswith("torchtitan") and r.evaluation.layout.pp > 1]
    assert len(pp_runs) == 6
    assert all(r.evaluation.layout.zero == 3 and r.fits for r in pp_runs)


def test_op_level_checkpoint_gathers_tp_inputs_again(held_out: tuple[list, list]) -> None:
    """torchtitan's op-level selective checkpoint saves reduce-scatter outputs but no all-gather (activation_
    checkpoint.py _save_list), so its backward replay gathers the attention and MLP inputs again under SP: the 8B
    TP 8 run's exposed TP time is 4 all-reduces and 2 all-gathers a layer, 1.25 × that without recompute (bf16, one
    all-gather is half an all-reduce's bytes); Megatron's selective recompute (core attention) adds none."""
    results, _ = held_out
    by_id = {r.id: r for r in results}
    run_id = "torchtitan-2506-h100-llama3-8b-64gpu-fsdp8-tp8-bf16"
    assert by_id[run_id].evaluation.layout.recompute == "selective"
    run = next(r for r in validation.load_runs() if r["id"] == run_id)

    def tp_time(recompute: str, framework: str) -> float:
        p = run["planner"]
        changed = dict(run, planner=dict(p, layout=dict(p["layout"], recompute=recompute),
                                         implementation=dict(p["implementation"], framework=framework)))
        return validation.evaluate_run(changed).evaluation.time.breakdown["tp_comm"]

    assert tp_time("selective", "torchtitan") / tp_time("none", "torchtitan") == pytest.approx(1.25, abs=0.01)
    assert tp_time("selective", "megatron-core") == pytest.approx(tp_time("none", "megatron-core"))


def test_pipelining_keeps_a_receive_buffer_per_micro_batch(held_out: tuple[list, list]) -> None:
    """torch.distributed.pipelining allocates a forward-input and an input-gradient buffer for every micro-batch of
    the step on a middle stage (stage.py _prepare_forward_infra / _prepare_backward_infra), where Megatron posts one
    of each: doubling the 405B 1F1B run's micro-batches from 8 to 16 adds 8 × 2 sequence-sharded activations to its
    most loaded (middle) rank, and the interleaved run's reserved peak (72.7 GiB) is predicted within 5 %.
    (With every micro-batch's logits kept on the last stage, as @9dec370's pipelining did, 16 micro-batches move
    the peak to the last rank.)"""
    results, _ = held_out
    by_id = {r.id: r for r in results}
    assert abs(by_id["torchtitan-2412-h100-llama3.1-405b-512gpu-interleaved-1f1b"].memory_error or 1) <= 0.05
    run = next(r for r in validation.load_runs() if r["id"] == "torchtitan-2412-h100-llama3.1-405b-512gpu-1f1b")
    # the receive buffers alone: without the last stage's kept logits, which at 16 micro-batches outweigh them
    run = dict(run, planner=dict(run["planner"], implementation=dict(run["planner"]["implementation"],
                                                                     pipeline_outputs_kept=False)))
    job = run["planner"]["job"]
    doubled = dict(run, planner=dict(run["planner"], job=dict(job, global_batch=2 * job["global_batch"])))
    base, more = (validation.evaluate_run(r).evaluation.memory for r in (run, doubled))
    assert base.stage == more.stage == 1
    activation = 8192 * 4 * 16384 // 8 * 2  # seq × micro-batch × hidden / TP (sequence parallel), 16-bit
    assert more.buffers - base.buffers == pytest.approx(8 * 2 * activation, abs=2)


H100_500W = {"name": "h100-96gb-500w", "base": "h100-sxm", "memory_gib": 95.0, "hbm_tb_s": 2.4, "tdp_w": 500}


def test_scenario_gpu_with_a_power_limit_is_slower_by_the_power_rule() -> None:
    (capped,) = derive_gpus([GpuDefinition(**H100_500W)])
    base = get_gpu("h100-sxm")
    k = power_scale(500, 700)
    assert capped.efficiency.gemm == pytest.approx(base.efficiency.gemm * k)
    assert capped.efficiency.gemm_fp8 == pytest.approx(base.efficiency.gemm_fp8 * k)
    assert capped.hbm_bandwidth_tbs == 2.4 and capped.rated_tdp_w == 700
    # a definition built on the capped one scales from its base's own power, not twice from the rating
    (capped, lower) = derive_gpus([GpuDefinition(**H100_500W), GpuDefinition(name="h100-400w", base="h100-96gb-500w",
                                                                                tdp_w=400)])
    assert lower.efficiency.gemm == pytest.approx(base.efficiency.gemm * power_scale(400, 700))


def _scenario(**extra: object) -> Scenario:
    doc = {"gpus": [H100_500W], "model": "llama-3.1-8b", "job": {"tokens": 1e9, "seq_len": 8192, "global_batch": 64},
           "implementation": {"framework": "torchtitan"}, "layout": {"zero": 3, "recompute": "selective"}, **extra}
    return Scenario.model_validate(doc)


def test_scenario_gpus_reach_estimate_and_the_search() -> None:
    sc = _scenario(estimate={"gpu": "h100-96gb-500w", "gpus": 8})
    ev = estimate(EstimateRequest(scenario=sc))
    ref = estimate(EstimateRequest(scenario=sc, gpu="h100-sxm"))
    assert ev.gpu.name == "h100-96gb-500w" and ev.capacity_bytes == 95 * 2**30
    assert ev.time.step_seconds > ref.time.step_seconds
    problem = resolve_problem(_scenario(hardware={"skus": ["h100-96gb-500w", "h100-sxm"]}))
    assert [s.name for s in problem.skus] == ["h100-96gb-500w", "h100-sxm"]


def test_sequence_beyond_a_learned_position_table_is_refused() -> None:
    """GPT-3's learned table has 2048 rows: 4096 is refused naming the key; a rotary model may be extended."""
    job = {"tokens": 1e9, "seq_len": 4096, "global_batch": 64}
    gpt3 = Scenario.model_validate({"model": "gpt3-175b", "job": job, "layout": {"tp": 8, "pp": 8},
                                    "estimate": {"gpu": "h100-sxm", "gpus": 64}})
    with pytest.raises(InputError, match=r"job\.seq_len: 4096 .*learned position table \(2048"):
        estimate(EstimateRequest(scenario=gpt3))
    with pytest.raises(InputError, match=r"job\.seq_len"):
        resolve_problem(gpt3)
    rotary = get_model("llama-3.1-8b")
    longer = 2 * rotary.max_seq
    ev = estimate(EstimateRequest(model="llama-3.1-8b", gpu="h100-sxm", gpus=8, seq=longer, layout={"cp": 8}))
    assert ev.seq == longer and rotary.position == "rope"


def test_te_context_parallelism_refuses_windows_and_sinks_outside_its_exchanges() -> None:
    """Transformer Engine runs context parallelism over a sliding window only through its all-to-all or
    all-gather exchange, and over attention sinks only through the all-to-all (context_parallel.py asserts both):
    an estimate names the key, and the search's legality check prunes the same layouts."""
    from planner.schema import Implementation, Layout
    from planner.workloads.training.legality import layout_problems

    job = {"tokens": 1e9, "seq_len": 32768, "global_batch": 8}
    doc = {"model": "mistral-7b", "job": job, "layout": {"tp": 2, "cp": 4},
           "estimate": {"gpu": "h100-sxm", "gpus": 8}}
    with pytest.raises(InputError, match=r"layout\.cp: 4 with a sliding window needs implementation\.cp_exchange "
                                         r"ulysses or te_allgather .*refuses ring"):
        estimate(EstimateRequest(scenario=Scenario.model_validate(doc)))
    a2a = Scenario.model_validate({**doc, "implementation": {"cp_exchange": "ulysses"}})
    ok = estimate(EstimateRequest(scenario=a2a))
    assert ok.layout.cp == 4
    oss = get_model("gpt-oss-20b")
    lay = Layout(tp=1, pp=1, dp=2, cp=4, global_batch=8)
    te = Implementation(framework="megatron-core", cp_exchange="te_allgather")
    problems = layout_problems(oss, lay, impl=te)
    assert any("attention sinks needs implementation.cp_exchange ulysses" in p for p in problems)
    assert not layout_problems(oss, lay, impl=te.model_copy(update={"cp_exchange": "ulysses"}))
    assert not layout_problems(oss, lay.model_copy(update={"cp": 1, "dp": 8}), impl=te)
    assert not any(p.startswith("cp:") for p in layout_problems(oss, lay, impl=Implementation(framework="torchtitan")))


def test_offloading_every_layer_is_refused() -> None:
    """Transformer Engine offloads at most all layers but the last: more is refused naming the key, in the
    estimate and the search alike."""
    sc = Scenario.model_validate({"model": "llama-3.1-8b", "job": {"tokens": 1e9, "seq_len": 8192, "global_batch": 8},
                                  "implementation": {"activation_offload_layers": 32},
                                  "estimate": {"gpu": "h100-sxm", "gpus": 8}})
    with pytest.raises(InputError, match=r"implementation\.activation_offload_layers: 32 .* at most 31"):
        estimate(EstimateRequest(scenario=sc))
    with pytest.raises(InputError, match=r"implementation\.activation_offload_layers"):
        resolve_problem(sc)
    fine = sc.model_copy(update={"implementation": sc.implementation.model_copy(
        update={"activation_offload_layers": 31})})
    assert estimate(EstimateRequest(scenario=fine)).memory.total > 0


def test_megatron_offloads_activations_only_without_pipelining_or_recompute() -> None:
    """Megatron-Core's TransformerConfig refuses --cpu-offloading with pipeline parallelism or recomputation: the
    estimate says so naming the field, and the search proposes neither beside a fixed offload."""
    from planner.schema import Implementation, Layout
    from planner.workflows.solve import solve
    from planner.workloads.training.legality import layout_problems

    m = get_model("llama-3-70b")
    offload = Implementation(framework="megatron-core", activation_offload=True, activation_offload_layers=40)
    problems = layout_problems(m, Layout(tp=8, pp=2, dp=4, recompute="full", global_batch=64), impl=offload)
    assert any(p.startswith("pp: 2 with activation offload") for p in problems)
    assert any(p.startswith("recompute: full with activation offload") for p in problems)
    assert not layout_problems(m, Layout(tp=8, pp=1, dp=8, global_batch=64), impl=offload)
    # torchtitan and FSDP trainers have no such rule
    assert not layout_problems(m, Layout(tp=8, pp=2, dp=4, recompute="full", global_batch=64),
                               impl=offload.model_copy(update={"framework": "torchtitan"}))
    sc = Scenario.model_validate({
        "model": "llama-3-70b", "job": {"tokens": 1e10, "seq_len": 8192, "global_batch": 256},
        "hardware": {"skus": ["gb200"]}, "pricing": {"usd_per_gpu_hour": {"gb200": 10.0}},
        "objective": "time", "top_k": 5, "layout": {"gpus": 64},
        "implementation": {"activation_offload": True, "activation_offload_layers": 40}})
    result = solve(sc)
    assert result.plans and all(p.evaluation.layout.pp == 1 and p.evaluation.layout.recompute == "none"
                                for p in result.plans)


def test_gb200_nvl72_is_the_scale_up_domain_for_tp_cp_and_ep() -> None:
    """GB200 NVL72: all 72 GPUs share NVLink, so TP·CP (32 GPUs) and EP groups stay on NVLink; the same layout
    on 8-GPU nodes sends its CP ring and EP all-to-all over the network."""
    from planner.model.perf import training_time
    from planner.schema import Layout
    from planner.workloads.training.legality import layout_problems

    gb200 = get_gpu("gb200")
    assert gb200.node_size == 72
    m = get_model("llama-3.1-405b")
    lay = Layout(tp=8, cp=4, dp=2, sequence_parallel=True, global_batch=8, recompute="full")
    assert layout_problems(m, lay, gpus=64, node_size=gb200.node_size, seq=131072) == []
    rack, boards = (training_time(m, lay, gb200, 131072, 1e9, gpus_per_node=n).breakdown for n in (72, 8))
    assert rack["cp_comm"] < boards["cp_comm"]
    moe = get_model("mixtral-8x7b")
    ep = Layout(tp=4, dp=16, ep=8, sequence_parallel=True, global_batch=64)
    assert layout_problems(moe, ep, gpus=64, node_size=72, seq=4096) == []
    rack, boards = (training_time(moe, ep, gb200, 4096, 1e9, gpus_per_node=n).breakdown for n in (72, 8))
    assert rack["ep_comm"] < boards["ep_comm"]


def test_flash_attention_kernels_follow_the_framework() -> None:
    """PyTorch SDPA (torchtitan) and flash-attn 2 (Composer) run FlashAttention-2: on Hopper the attention time is
    1.75× TE's native kernel's (FA3 paper: FA3 1.5-2.0× faster than FA2 on H100); on Ampere FA2 is native."""
    from planner.model.perf import FA2_ON_NEWER_GPUS, training_time
    from planner.schema import Implementation, Layout

    m = get_model("llama-3.1-8b")
    lay = Layout(dp=8, global_batch=8)
    seq = 32768

    def attention_share(gpu: str, framework: str) -> float:
        impl = Implementation(framework=framework, fused_kernels=True)
        long, short = (training_time(m, lay, get_gpu(gpu), s, 1e9, impl=impl).breakdown["compute"] / s
                       for s in (seq, seq // 2))
        return long - short  # per-token compute that grows with the sequence: attention

    assert attention_share("h100-sxm", "torchtitan") == pytest.approx(
        attention_share("h100-sxm", "megatron-core") / FA2_ON_NEWER_GPUS, rel=0.05)
    assert attention_share("a100-80gb", "torchtitan") == pytest.approx(
        attention_share("a100-80gb", "megatron-core"), rel=0.05)
    # torchtitan puts SDPA's cuDNN backend first on Blackwell (models/attention.py): the generation's own kernel
    assert attention_share("b200", "torchtitan") == pytest.approx(
        attention_share("b200", "megatron-core"), rel=0.05)


def test_op_checkpoint_without_attention_on_its_save_list(held_out: tuple[list, list]) -> None:
    """torchtitan's op-level checkpoint before b39377f left cuDNN attention (its Blackwell kernel) off the save
    list: backward reruns the attention and the layer keeps neither its output nor its log-sum-exp. The torchao
    B200 runs (torchtitan @6fc499f) then come within 15 % of their reserved peaks; the time grows by the
    attention's forward."""
    from planner.model.memory import ActivationShape, layer_activation_bytes
    from planner.model.perf import training_time
    from planner.model.presets import resolve
    from planner.schema import Implementation, Layout

    results, _ = held_out
    torchao = [r for r in results if r.id.startswith("torchao-2508-b200")]
    assert len(torchao) == 3
    assert all(abs(r.memory_error or 1) <= validation.MEMORY_TARGET for r in torchao)
    m = get_model("llama-3.1-8b")
    x = ActivationShape(s=8192, b=1, t=1, r=1, dropout=False)
    saved, rerun = (layer_activation_bytes(m, resolve(Implementation(framework="torchtitan", op_sac_saves_attention=v)),
                                           x, "selective", False) for v in (None, False))
    assert saved - rerun == 2 * 8192 * 4096 + 4 * 32 * 8192  # the 16-bit output and the fp32 log-sum-exp
    lay = Layout(dp=8, global_batch=8, recompute="selective", zero=3)
    kept, again = (training_time(m, lay, get_gpu("b200"), 8192, 1e9, impl=Implementation(
        framework="torchtitan", op_sac_saves_attention=v)).breakdown["compute"] for v in (None, False))
    assert again > kept


def test_eager_kernels_are_the_default_of_pytorch_native_frameworks() -> None:
    from planner.model.presets import resolve
    from planner.schema import Implementation

    assert resolve(Implementation(framework="torchtitan")).fused_norm is False
    assert resolve(Implementation(framework="fsdp")).fused_kernels is False
    assert resolve(Implementation(framework="megatron-core")).fused_swiglu is True
    assert resolve(Implementation(framework="torchtitan", fused_kernels=True)).fused_norm is True


def test_triton_attention_kernel_runs_at_the_fa2_papers_ratios() -> None:
    """llm-foundry's attn_impl: triton: FlashAttention-2 is 1.3-1.5× faster forward and about 2× backward
    (Dao 2023 §4.1); the attention time grows accordingly, on Hopper on top of FA2's own share."""
    from planner.model.perf import TRITON_FLASH_BACKWARD, TRITON_FLASH_FORWARD, training_time
    from planner.schema import Implementation, Layout

    m = get_model("llama-3.1-8b")
    lay = Layout(dp=8, global_batch=8)
    fwd_bwd = (1 + 2.5) / (1 / TRITON_FLASH_FORWARD + 2.5 / TRITON_FLASH_BACKWARD)  # planner.model.perf FLASH_BACKWARD

    def attention(kernel: str, gpu: str) -> float:
        impl = Implementation(framework="fsdp", attention_kernel=kernel, fused_kernels=True)
        long, short = (training_time(m, lay, get_gpu(gpu), s, 1e9, impl=impl).breakdown["compute"] / s
                       for s in (32768, 16384))
        return long - short

    for gpu in ("a100-80gb", "h100-sxm"):
        assert attention("fa2", gpu) / attention("triton", gpu) == pytest.approx(fwd_bwd, rel=0.05)
    assert 1 / 2.0 <= fwd_bwd <= 1 / 1.3


def test_mosaicml_runs_with_their_triton_kernel_reach_the_target(held_out: tuple[list, list]) -> None:
    """The MosaicML runs state attn_impl triton; so expressed, they are within the held-out target."""
    results, _ = held_out
    mosaic = [r for r in results if r.family == "MosaicML FSDP"]
    assert len(mosaic) == 12
    assert statistics.median(abs(r.error) for r in mosaic) <= validation.MEDIAN_TARGET
    assert max(abs(r.error) for r in mosaic) <= validation.WORST_TARGET


def test_remote_nodes_matches_sampled_routing() -> None:
    """The expected number of other nodes a token's top-k experts touch, against sampled routing."""
    import numpy as np

    from planner.model.perf import remote_nodes

    rng = np.random.default_rng(0)
    for experts, k, nodes in ((128, 8, 2), (256, 8, 4), (64, 6, 8), (8, 2, 2)):
        picks = np.argsort(rng.random((20_000, experts)), axis=1)[:, :k]  # k distinct experts per token
        node_of = picks // (experts // nodes)
        touched = np.array([len(set(row)) for row in node_of])
        # a token's own node is node 0 here: the other nodes it reaches
        other = np.array([len(set(row) - {0}) for row in node_of])
        assert touched.mean() >= other.mean()
        assert remote_nodes(experts, k, nodes) == pytest.approx(other.mean(), rel=0.03)


def test_flex_dispatcher_sends_a_token_once_per_node(held_out: tuple[list, list]) -> None:
    """HybridEP / DeepEP (Megatron's flex dispatcher) deduplicate a token's copies per destination node: across
    nodes Qwen3-30B-A3B (top-8 of 128) crosses the network once instead of ~4 times; inside one node it moves what
    all-to-all moves. The HybridEP run of the Megatron-Bridge docs is then predicted within the target."""
    from planner.model.perf import training_time
    from planner.schema import Implementation, Layout

    results, _ = held_out
    (hybrid,) = [r for r in results if r.id == "mbridge-doc-h100-bf16-qwen3-30b-a3b-16gpu-hybridep"]
    assert abs(hybrid.error) <= validation.MEDIAN_TARGET
    m = hybrid.evaluation.model
    gpu = get_gpu("h100-sxm")

    def ep_time(dispatcher: str, ep: int) -> float:
        lay = Layout(dp=ep, ep=ep, global_batch=ep * 4)
        impl = Implementation(moe_token_dispatcher=dispatcher)  # type: ignore[arg-type]
        return training_time(m, lay, gpu, 4096, 1e9, impl=impl, gpus_per_node=8).breakdown["ep_comm"]

    assert ep_time("flex", 16) < ep_time("alltoall", 16) / 2.5
    assert ep_time("flex", 8) == pytest.approx(ep_time("alltoall", 8), rel=0.01)
    # all-gather moves the EP group's tokens (ep of them), all-to-all top-k copies: the same at ep = top-k = 8
    assert ep_time("allgather", 8) == pytest.approx(ep_time("alltoall", 8), rel=0.01)
    assert ep_time("allgather", 16) > ep_time("alltoall", 16)


def test_the_output_layer_stays_16_bit_in_fp8_recipes() -> None:
    """Megatron's output layer is not a TE module and torchtitan's float8 skips `output`: the head's time grows
    with the vocabulary at the 16-bit rate in an fp8 job as in a bf16 one."""
    from planner.model.perf import training_time
    from planner.schema import Implementation, Layout

    m = get_model("llama-3.1-8b")
    gpu = get_gpu("h100-sxm")
    impl = Implementation(fp8_recipe="current")

    def head(precision: str) -> float:
        lay = Layout(dp=8, global_batch=8, precision=precision)  # type: ignore[arg-type]
        small, large = (training_time(m.model_copy(update={"vocab": v}), lay, gpu, 8192, 1e9, impl=impl).step_seconds
                        for v in (64 * 1024, 128 * 1024))
        return large - small

    assert head("fp8") == pytest.approx(head("bf16"), rel=0.02)


def test_async_tp_overlaps_tensor_parallel_collectives(held_out: tuple[list, list]) -> None:
    """torchtitan's async TP (micro-pipelined collective matmuls) overlaps TP traffic as TE's userbuffers do: the
    70B 2-D run with it measured 6 % faster than without (876 against 829 tokens/s per GPU); both are predicted
    within the target, the overlapped one faster."""
    from planner.interop.published import overlaps_of

    assert overlaps_of("", {"async_tp": True}) == {"tp_overlap": 1.0}
    assert overlaps_of("", {"async_tp": False}) == {}
    results, _ = held_out
    by_id = {r.id: r for r in results}
    plain, overlapped = (by_id[f"torchtitan-2412-h100-llama3.1-70b-256gpu-2d{s}"] for s in ("", "-asynctp"))
    assert overlapped.evaluation.time.step_seconds < plain.evaluation.time.step_seconds
    assert max(abs(overlapped.error), abs(plain.error)) <= validation.MEDIAN_TARGET


def test_fp8_tensor_parallelism_gathers_in_fp8(held_out: tuple[list, list]) -> None:
    """Under sequence parallelism fp8 stacks all-gather GEMM inputs and output gradients already quantized
    (torchao Float8ColwiseParallel / Float8RowwiseParallel, TE's fp8 gathers); the reduce-scatters stay 16-bit.
    The measured float8 70B 2-D run (TP 8 without async TP) is predicted within the target, and the same layout's
    exposed TP time in fp8 is three quarters of the 16-bit one (one gather at half the bytes per pair)."""
    results, _ = held_out
    by_id = {r.id: r for r in results}
    plain = by_id["torchtitan-2412-h100-llama3.1-70b-256gpu-2d"]
    assert plain.evaluation.layout.precision == "fp8" and plain.evaluation.layout.sequence_parallel
    assert abs(plain.error) <= validation.MEDIAN_TARGET
    run = next(r for r in validation.load_runs() if r["id"] == plain.id)
    sixteen = dict(run, planner=dict(run["planner"], job=dict(run["planner"]["job"], precision="bf16"),
                                     implementation={k: v for k, v in run["planner"]["implementation"].items()
                                                     if k != "fp8_recipe"}))
    bf16 = validation.evaluate_run(sixteen)
    ratio = plain.evaluation.time.breakdown["tp_comm"] / bf16.evaluation.time.breakdown["tp_comm"]
    assert ratio == pytest.approx(0.75, abs=0.02)


def test_nemo1_userbuffer_switch_is_read_as_stated() -> None:
    """NeMo 1 recipes state TE's TP overlap as their yaml key (`ub_tp_comm_overlap: true`, launcher 24.07
    conf/training/llama/llama2_70b.yaml); "false" keeps it off."""
    from planner.interop.published import overlaps_of

    assert overlaps_of("", {"tp_comm_overlap": "ub_tp_comm_overlap true, ub_cfg_h100_h8192_tp4_mbs1_seqlen4096"}) \
        == {"tp_overlap": 1.0}
    assert overlaps_of("", {"tp_comm_overlap": "ub_tp_comm_overlap true (yaml)"}) == {"tp_overlap": 1.0}
    assert overlaps_of("", {"tp_comm_overlap": "True, userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192"}) \
        == {"tp_overlap": 1.0}
    assert overlaps_of("", {"tp_comm_overlap": "ub_tp_comm_overlap false in yaml (overrides unknown)"}) == {}
    assert overlaps_of("", {"tp_comm_overlap": False}) == {}


def test_eager_logits_are_sharded_over_tensor_parallelism(held_out: tuple[list, list]) -> None:
    """torchtitan's column-parallel output layer leaves the 16-bit logits sharded over TP (loss_parallel): every
    torchtitan configuration that ran, the 8B one at TP 8 and 12 sequences of 8192 tokens included, fits."""
    from planner.model.memory import ActivationShape, extras_bytes
    from planner.model.presets import resolve
    from planner.schema import Implementation

    m = get_model("llama-3.1-8b")
    k = resolve(Implementation(framework="torchtitan"))
    # the 16-bit and fp32 logits shard over the vocabulary (the hidden-width tensors, as this shape states them,
    # over the sequence)
    loss = {t: extras_bytes(m, k, ActivationShape(s=8192, b=12, t=t, r=t, dropout=False))[1] for t in (1, 8)}
    assert loss[8] == pytest.approx(loss[1] / 8, rel=0.001)
    results, _ = held_out
    titan = [r for r in results if r.family.startswith("torchtitan")]
    assert len(titan) == 24 and all(r.fits for r in titan)


def test_dtensor_tensor_parallelism_keeps_the_gathered_input(held_out: tuple[list, list]) -> None:
    """torchtitan's TP plan all-gathers a block's input to Replicate before its column-parallel projections, and
    autograd keeps that full tensor for their weight gradients; Megatron/TE keep the local shard and gather it
    again in backward. PyTorch's saved tensors show it (a concatenation stands in for the all-gather: three
    projections of one gathered input save it once, whole); planner's shape keeps it whole under torchtitan
    (fp8 where torchao's float8 TP gathers fp8), the shard under Megatron, and the 70B 2-D async-TP run's reserved
    peak comes within the target."""
    import torch

    from planner.model.memory import activation_shape
    from planner.model.presets import resolve
    from planner.schema import Implementation

    tp, rows, width = 8, 64, 32
    shard = torch.randn(rows, width, dtype=torch.bfloat16, requires_grad=True)
    weights = [torch.randn(width, width, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        gathered = torch.cat([shard] * tp)
        outs = [torch.nn.functional.linear(gathered, w) for w in weights]
    assert saved[gathered.data_ptr()] == tp * rows * width * 2 and sum(o.numel() for o in outs) > 0

    arrays = {"tp": 8, "cp": 1, "micro_batch": 1, "sequence_parallel": 1}
    col = {fw: activation_shape(8192, arrays, resolve(Implementation(framework=fw))).col_in
           for fw in ("torchtitan", "megatron-core")}
    assert float(col["torchtitan"]) == 2.0 and float(col["megatron-core"]) == 2.0 / 8
    fp8 = resolve(Implementation(framework="torchtitan", fp8_recipe="current"), precision="fp8")
    assert float(activation_shape(8192, arrays, fp8).col_in) == 1.0
    results, _ = held_out
    run = next(r for r in results if r.id == "torchtitan-2412-h100-llama3.1-70b-256gpu-2d-asynctp")
    assert run.memory_error is not None and abs(run.memory_error) <= validation.MEMORY_TARGET


def test_a_fused_cross_entropy_keeps_only_the_16_bit_logits(held_out: tuple[list, list]) -> None:
    """llm-foundry's MPT runs flash-attn's fused cross-entropy by default (loss_fn fused_crossentropy): it keeps
    the 16-bit logits and an fp32 log-sum-exp and writes one 16-bit gradient, where an eager loss keeps fp32
    log-probabilities and allocates fp32 gradients. MPT-3B at 3 × 8192 tokens a micro-batch, without
    checkpointing, ran on 80 GB GPUs (bf16 on A100 and H100, fp8 on H100): it fits so, not with an fp32 loss.
    Transformer Engine's parallel cross-entropy (Megatron --cross-entropy-fusion-impl te) keeps the same and
    allocates no gradient: it is written over the logits in forward."""
    from planner.model.memory import ActivationShape, extras_bytes
    from planner.model.presets import resolve
    from planner.schema import Implementation

    m = get_model("llama-3.1-8b")
    x = ActivationShape(s=8192, b=2, t=1, r=1, dropout=False)
    sbv = 8192 * 2 * m.vocab
    _, fused, fused_transient = extras_bytes(m, resolve(Implementation(framework="fsdp", cross_entropy="fused")), x)
    _, eager, eager_transient = extras_bytes(m, resolve(Implementation(framework="fsdp")), x)
    assert eager - fused == pytest.approx(4 * sbv, rel=0.001)  # the fp32 log-probabilities, less the fp32 lse
    assert (fused_transient, eager_transient) == (2 * sbv, 8 * sbv)
    # Transformer Engine's kernel writes the gradient over the logits in forward: the same kept, nothing more
    _, te, te_transient = extras_bytes(m, resolve(Implementation(framework="fsdp", cross_entropy="fused_inplace")), x)
    assert (te, te_transient) == (fused, 0)
    results, _ = held_out
    assert next(r for r in results if r.id == "mosaicml-mpt-3b-h100-8gpu-seq8192-fp8").fits
    run = next(r for r in validation.load_runs() if r["id"] == "mosaicml-mpt-3b-h100-8gpu-seq8192-fp8")
    sc = validation.scenario_of(run)
    as_eager = sc.model_copy(update={"implementation": sc.implementation.model_copy(update={"cross_entropy": "fp32"})})
    assert not estimate(EstimateRequest(scenario=as_eager)).fits


def test_nemo1_keeps_the_optimizer_state_its_yaml_names(held_out: tuple[list, list]) -> None:
    """NeMo 1 runs Apex DistributedFusedAdam in the launcher yaml's optim.dtype: Nemotron-4 340B's is bf16, so it
    keeps bf16 moments and no master copy, and reduces bf16 gradients (grad_sync_dtype). So the 128-GPU layout
    NVIDIA ran (TP8·PP8·DP2, two optimizer shards) fits its 80 GB; with an fp32 state it would not.
    The other 24.07 rows keep fp32 state as the 16-bit remainders of their bf16 parameters."""
    results, _ = held_out
    rid = "nemo-24.07-h100-fp8-nemotron4-340b-128gpu"
    assert next(r for r in results if r.id == rid).fits
    run = next(r for r in validation.load_runs() if r["id"] == rid)
    sc = validation.scenario_of(run)
    fp32 = sc.model_copy(update={"job": sc.job.model_copy(update={
        "master_weights": "fp32", "moment_dtype": "fp32", "fp32_grad_accumulation": True})})
    assert not estimate(EstimateRequest(scenario=fp32)).fits
    others = [r for r in validation.load_runs() if r["id"].startswith("nemo-24.07") and r["id"] != rid]
    assert {r["planner"]["job"]["master_weights"] for r in others} == {"remainder"}


def test_fsdp_gathers_the_output_layers_gradients_after_the_loss(held_out: tuple[list, list]) -> None:
    """FSDP keeps the output layer's unit gathered from its forward through its backward, but its gradients and
    their fp32 reduce-scatter copy exist only in the output layer's own backward, after the loss freed what it
    saved. Counted so, torchtitan's FSDP-only reserved peaks (Llama 3.1 8B: 8 to 128 H100s, 8K to 256K tokens,
    eager and compiled, bf16 and float8, the float8 runs gathering float8 weights as their completion chooses) come
    within 11 %, the compiled runs' within 6 % (eager runs reserve some 7 % more than compiled ones with the same
    saved tensors: allocator slack planner does not model)."""
    results, _ = held_out
    fsdp = [r for r in results if r.family.startswith("torchtitan") and r.memory_error is not None
            and r.evaluation.layout.tp == r.evaluation.layout.pp == 1]
    assert len(fsdp) == 12
    assert all(abs(r.memory_error or 1) <= 0.11 for r in fsdp)
    compiled = [r for r in fsdp if "compile" in r.id or "2506" in r.id]
    assert len(compiled) == 6 and all(abs(r.memory_error or 1) <= 0.06 for r in compiled)
    # the eager 8B run binds in the loss's backward (fp32 gradients of the logits): its buffers hold the gathered
    # output matrix, not that matrix's 16-bit gradients and their fp32 copy as well
    run = next(r for r in results if r.id == "torchtitan-2412-h100-llama3.1-8b-8gpu-fsdp")
    output_matrix = 128_256 * 4096
    assert run.evaluation.memory.buffers < output_matrix * (2 + 2 + 4)


def test_megatron_fsdp_keeps_fp8_parameter_shards_and_offloads_what_does_not_fit(
        held_out: tuple[list, list]) -> None:
    """Megatron-FSDP with fp8 parameters keeps the 1-byte shard between uses; a gathered unit brings its fp8 copy
    and drops its transpose cache after use (megatron_fsdp.py), so no rank holds the whole model's fp8 weights.
    The GB200 and GB300 Llama 3 70B recipes then offload the activations of just enough layers
    (--cpu-offloading-num-layers 40 and 20 of 80): both predicted within 3 % under capacity, and five fewer
    offloaded layers would not fit."""
    import copy

    for rid, layers in (("mbridge-26.04-gb200-fp8cs-llama3-70b-64gpu", 40),
                        ("mbridge-26.04-gb300-fp8cs-llama3-70b-64gpu", 20)):
        run = next(r for r in validation.load_runs() if r["id"] == rid)
        assert run["planner"]["implementation"]["activation_offload_layers"] == layers
        got = validation.evaluate_run(run).evaluation
        assert got.memory.weights < 2 * 2**30  # 70B over 64 ranks: the fp8 shard, 16-bit norms
        assert 0.97 * got.capacity_bytes < got.memory.total <= got.capacity_bytes
        fewer = copy.deepcopy(run)
        fewer["planner"]["implementation"]["activation_offload_layers"] = layers - 5
        assert validation.evaluate_run(fewer).evaluation.memory.total > got.capacity_bytes


def test_torchtitan_compiles_its_loss_with_the_model(held_out: tuple[list, list]) -> None:
    """torchtitan runs its loss under torch.compile when it compiles the model (components/loss.py, 2025 on):
    Inductor keeps the bf16 logits and a log-sum-exp, not fp32 log-probabilities. The June 2025 H200 runs'
    reserved peaks (Llama 3.1 8B, 2 × 8192 tokens a GPU) come within 15 % so; with an eager fp32 loss planner
    over-predicts them by more than a quarter."""
    results, _ = held_out
    for gpus in (32, 64):
        rid = f"torchtitan-2506-h200-llama3.1-8b-{gpus}gpu-fsdp-float8"
        got = next(r for r in results if r.id == rid)
        assert got.memory_error is not None and abs(got.memory_error) <= validation.MEMORY_TARGET
        run = next(r for r in validation.load_runs() if r["id"] == rid)
        sc = validation.scenario_of(run)
        eager = sc.model_copy(update={"implementation": sc.implementation.model_copy(update={"cross_entropy": "fp32"})})
        peak = estimate(EstimateRequest(scenario=eager)).memory.reserved
        assert peak / got.measured_memory > 1.25


def test_megatron_weighs_routed_tokens_inside_the_expert_activation(held_out: tuple[list, list]) -> None:
    """Megatron-Core multiplies the routing weights in the experts' fused SwiGLU (weighted_bias_swiglu_impl), so
    the expert output is not kept for the combine: 2h bytes less per routed copy, 4 more for the fp32 weight.
    Qwen3-30B-A3B at micro-batch 8 on B300, as Megatron-Bridge ran it, then fits."""
    from planner.model.memory import ActivationShape, layer_activation_bytes
    from planner.schema import Implementation

    m = get_model("mixtral-8x7b")
    x = ActivationShape(s=4096, b=1, t=1, r=1, dropout=False)
    mega, eager = (layer_activation_bytes(m, Implementation(framework=f, fused_kernels=True), x, "none", True)
                   for f in ("megatron-core", "deepspeed"))
    assert m.moe is not None
    assert eager - mega == pytest.approx(4096 * m.moe.top_k * (2 * m.hidden - 4))
    results, _ = held_out
    (qwen,) = [r for r in results if r.id == "mbridge-26.04-b300-mxfp8-qwen3-30b-a3b-8gpu"]
    assert qwen.fits


def test_megatron_ep_overlap_hides_the_dispatch_under_compute(held_out: tuple[list, list]) -> None:
    """--overlap-moe-expert-parallel-comm runs one micro-batch's all-to-all under another's compute: Qwen3-235B on
    256 H100 (EP 32 folded over TP 2 × DP 16, four nodes of all-to-all) is predicted within the target with it."""
    from planner.interop.published import overlaps_of

    assert overlaps_of("", {"moe_a2a_overlap": "overlap_moe_expert_parallel_comm True, delay_wgrad_compute True"}) \
        == {"ep_overlap": 1.0}
    results, _ = held_out
    (qwen,) = [r for r in results if r.id == "mbridge-26.04-h100-fp8cs-qwen3-235b-a22b-256gpu"]
    lay = qwen.evaluation.layout
    assert lay.expert_tp == 1 and lay.ep > lay.dp * lay.cp
    assert abs(qwen.error) <= validation.MEDIAN_TARGET


def test_gradient_sharding_with_pipeline_parallelism_only_under_torchtitan() -> None:
    """DeepSpeed's pipeline engine refuses ZeRO-2 and ZeRO-3 ("incompatible with pipeline parallelism"), and
    Megatron-FSDP and FSDP1 trainers do not pipeline either; torchtitan runs FSDP2 inside each stage."""
    from planner.schema import Implementation, Layout
    from planner.workloads.training.legality import layout_problems

    m = get_model("llama-3.1-8b")
    lay = Layout(tp=1, pp=2, dp=4, zero=2, global_batch=64)
    for framework in ("megatron-core", "deepspeed", "fsdp"):
        problems = layout_problems(m, lay, impl=Implementation(framework=framework))
        assert any(p.startswith(f"zero: stage 2 does not combine with pipeline parallelism under {framework}")
                   for p in problems), (framework, problems)
    assert not layout_problems(m, lay, impl=Implementation(framework="torchtitan"))
    assert not layout_problems(m, lay.model_copy(update={"zero": 1}))


def test_unstated_knobs_are_completed_as_the_fastest_layout_that_fits(held_out: tuple[list, list]) -> None:
    """Llama 3's paper states TP, CP, PP and DP but not the virtual stages, SP, micro-batch, recompute or ZeRO: the
    harness completes exactly those, by a time-objective solve, and no other legal completion that fits is faster."""
    results, _ = held_out
    run = next(r for r in validation.load_runs() if r["id"] == "llama3-405b-h100-8192gpu-cp1-seq8k")
    unknown = run["planner"]["complete"]
    held = next(r for r in results if r.id == run["id"])
    assert set(held.completed) == set(unknown) and held.fits
    lay = held.evaluation.layout
    stated = run["planner"]["layout"]
    assert (lay.tp, lay.pp, lay.dp, lay.cp) == (stated["tp"], stated["pp"], stated["dp"], stated["cp"])
    best = held.evaluation.time.step_seconds
    for change in ({"vpp": 2}, {"recompute": "selective", "recompute_num_layers": None},
                   {"recompute_num_layers": None}, {"sequence_parallel": False}, {"micro_batch": 2}):
        other = estimate(EstimateRequest(scenario=validation.scenario_of(run, {**held.completed, **change})))
        assert not other.fits or other.time.step_seconds >= best, change
    # a run that states its whole layout is evaluated as written
    stated_run = next(r for r in validation.load_runs() if not r["planner"].get("complete"))
    assert validation.completed_knobs(stated_run) == {}


def test_an_unstated_switch_is_completed_as_the_faster_setting_that_fits() -> None:
    """NeMo 24.07's table does not say whether its fp8 runs gathered fp8 parameters: GPT-3 20B's completion turns
    the gather on, which fits where the bf16 copy does not; only on/off implementation switches complete so."""
    run = next(r for r in validation.load_runs() if r["id"] == "nemo-24.07-h100-fp8-gpt3-20b-64gpu")
    assert run["planner"]["complete"] == ["fp8_param_gather"]
    assert validation.completed_knobs(run) == {"fp8_param_gather": True}
    on = estimate(EstimateRequest(scenario=validation.scenario_of(run)))
    off = estimate(EstimateRequest(scenario=validation.scenario_of(run, {"fp8_param_gather": False})))
    assert on.fits and not off.fits
    assert "fp8_param_gather" in validation.IMPLEMENTATION_KNOBS and "fp8_recipe" not in validation.IMPLEMENTATION_KNOBS


def test_a_recipe_that_leaves_a_ddp_overlap_off_is_timed_so() -> None:
    """A recipe's ddp settings that turn the gradient reduction's or the parameter all-gather's overlap off are
    read as the efficiency fields that expose them; the calibration and held-out recipes all state them on."""
    from planner.interop.published import overlaps_of

    assert overlaps_of("", {"ddp": "overlap_grad_reduce True, overlap_param_gather True"}) == {}
    assert overlaps_of("", {"ddp": "overlap_grad_reduce True, overlap_param_gather False"}) == \
        {"param_gather_overlap": 0.0}
    assert overlaps_of("", {"ddp": "overlap_grad_reduce False, overlap_param_gather False"}) == \
        {"dp_overlap": 0.0, "param_gather_overlap": 0.0}


def test_llama3_long_context_runs_the_papers_all_gather_exchange(held_out: tuple[list, list]) -> None:
    """Meta's CP all-gathers K and V before attention with the gather exposed ("our CP implementation adopts an
    all-gather based method", Llama 3 paper §3.3.2): the 128K row states `cp_exchange: te_allgather`. Its measured
    380 TFLOP/s per GPU is then predicted within the worst-case target, where a ring that hides the exchange under
    attention was 21.6 % optimistic; the exposed gather makes the step slower than the ring's, never faster."""
    results, _ = held_out
    run = next(r for r in results if r.id == "llama3-405b-h100-16384gpu-cp16-seq128k")
    assert run.evaluation.layout.cp == 16
    assert abs(run.error) <= validation.WORST_TARGET
    raw = next(r for r in validation.load_runs() if r["id"] == run.id)
    assert raw["planner"]["implementation"]["cp_exchange"] == "te_allgather"
    ring = validation.evaluate_run(dict(raw, planner=dict(raw["planner"], implementation={
        k: v for k, v in raw["planner"]["implementation"].items() if k != "cp_exchange"})))
    assert ring.evaluation.time.breakdown["cp_comm"] < run.evaluation.time.breakdown["cp_comm"]
    assert ring.error > run.error


def test_the_quoted_bands_are_the_validation_run(held_out: tuple[list, list]) -> None:
    """planner/data/heldout_bands.yaml (what the warnings of MoE plans and of plans on a GPU generation without
    calibration runs quote, and the measured peaks' error behind every plan's peak range) is what re-running the
    held-out set gives today: a change to the physics must rewrite it (`benchmarks/validation.py --write`). The
    warnings and ranges quote it; no prediction, time band or fit reads it."""
    from planner.model.uncertainty import extrapolation, heldout_bands
    from planner.schema import Layout

    fresh, stored = validation.heldout_bands(held_out[0]), heldout_bands()
    assert set(fresh["regimes"]) == set(stored["regimes"]) == {"dense", "moe"}
    assert set(fresh["generations"]) == set(stored["generations"]) >= {"hopper", "blackwell"}
    for group in ("regimes", "generations"):
        for name, band in fresh[group].items():
            kept = stored[group][name]
            assert band["runs"] == kept["runs"] and band["models"] == kept["models"], (group, name)
            for q in ("p10", "median", "p90"):
                assert band[q] == pytest.approx(kept[q], abs=2e-3), (group, name, q)
    mem, kept = fresh["memory"], stored["memory"]
    assert mem["runs"] == kept["runs"] == sum(r.memory_error is not None for r in held_out[0])
    assert mem["models"] == kept["models"] and mem["frameworks"] == kept["frameworks"]
    for q in ("p10", "median", "p90"):
        assert mem[q] == pytest.approx(kept[q], abs=2e-3), ("memory", q)
    moe, bw = stored["regimes"]["moe"], stored["generations"]["blackwell"]
    lay, ep = Layout(tp=1, pp=1, dp=8, global_batch=64), Layout(tp=1, pp=1, dp=8, ep=8, global_batch=64)
    said = " ".join(extrapolation(ep, "h100-sxm", moe=True))
    assert f"on {moe['runs']} published MoE runs" in said and f"median {moe['median']:+.0%}" in said
    assert "held out" not in " ".join(extrapolation(lay, "h100-sxm"))  # a calibrated dense regime
    said = " ".join(extrapolation(lay, "b200"))
    assert f"on {bw['runs']} published dense runs on blackwell GPUs held out for validation" in said
    said = " ".join(extrapolation(ep, "b200", moe=True))  # an MoE plan quotes the MoE runs, not the dense ones
    assert "dense runs" not in said and "published MoE runs" in said
