"""Which layouts a framework can run: the divisibility rules of Megatron-LM / Megatron-Core.

Each rule returns a message that names the field, so the same checks explain a rejected
`planner estimate` and prune the solver's grid.
"""

from __future__ import annotations

import planner.layout_rules as rules
from planner.model.pipeline import split_problem
from planner.model.presets import PRESETS, pipeline_split
from planner.schema import Implementation, Layout, ModelSpec

_DEFAULT_IMPL = Implementation()


def last_stage_layers(layers: int, pp: int) -> int:
    """Layers on the last stage when they do not split evenly: every other stage takes ⌈L/p⌉ (Megatron-Core's
    --decoder-last-pipeline-num-layers; Megatron-DeepSpeed's uniform partition)."""
    return layers - (pp - 1) * -(-layers // pp)


def sequence_problem(m: ModelSpec, seq: int, key: str = "job.seq_len") -> str | None:
    """A learned position table has `max_seq` rows (GPT-3: 2048, Brown et al. 2020 §2.1): a longer sequence has
    positions with no embedding to look up. Rotary positions are computed, so a rotary model may be trained
    past the context it was built for (context extension), and only the learned table refuses."""
    if m.position == "learned" and seq > m.max_seq:
        return (f"{key}: {seq} is longer than {m.name}'s learned position table ({m.max_seq} positions); "
                f"use seq_len ≤ {m.max_seq} or a rotary model")
    return None


def offload_problem(m: ModelSpec, offload_layers: int | None) -> str | None:
    """Transformer Engine offloads at most every layer but the last (cpu_offload.py get_cpu_offload_context:
    num_layers ≤ model_layers − 1; Megatron's cpu_offloading_num_layers < num_layers)."""
    if offload_layers is not None and offload_layers >= m.layers:
        return (f"implementation.activation_offload_layers: {offload_layers} is not below {m.name}'s {m.layers} "
                f"layers (the last layer's activations stay on the GPU; at most {m.layers - 1})")
    return None


def loss_chunk_problem(layout: Layout, seq: int, chunks: int | None) -> str | None:
    """torchtitan's ChunkedLossWrapper splits a micro-batch's tokens on each rank (micro_batch·seq/cp, the decoder's
    flat token dimension) into equal chunks and asserts they divide (components/loss.py `_chunk_local`)."""
    tokens = layout.micro_batch * seq // layout.cp
    if chunks is not None and chunks > 1 and tokens % chunks:
        return (f"implementation.loss_chunks: {chunks} does not divide the {tokens:,} tokens per rank of a micro-batch "
                f"(micro_batch·seq/cp = {layout.micro_batch}·{seq}/{layout.cp}); torchtitan's ChunkedLossWrapper "
                "needs equal chunks")
    return None


def cp_heads_problem(m: ModelSpec, layout: Layout, impl: Implementation) -> str | None:
    """Transformer Engine's all-to-all exchange hands each rank of its group whole heads of Q and of K/V
    (context_parallel.py flash_attn_a2a_communicate splits the heads dimension over the group): the whole CP
    group (`ulysses`) or groups of `cp_a2a_size` neighbouring CP ranks, which must divide cp (`hierarchical`:
    Megatron's hierarchical_context_parallel_sizes multiply to the CP size)."""
    if impl.cp_exchange not in ("ulysses", "hierarchical") or layout.cp == 1:
        return None
    group = layout.cp if impl.cp_exchange == "ulysses" else impl.cp_a2a_size or layout.cp
    if layout.cp % group:
        return (f"cp: {layout.cp} does not split into all-to-all groups of implementation.cp_a2a_size {group} "
                "(the hierarchical exchange's levels multiply to cp)")
    q = m.heads // layout.tp
    kv = m.heads // layout.tp if m.mla is not None else max(1, m.n_kv_heads // layout.tp)
    if q % group or kv % group:
        key = "cp" if impl.cp_exchange == "ulysses" else "implementation.cp_a2a_size"
        return (f"{key}: {group} does not divide the {q} query and {kv} K/V heads per TP rank; the all-to-all of "
                f"implementation.cp_exchange {impl.cp_exchange} (Transformer Engine's) gives each rank of its group "
                "whole heads")
    return None


# Transformer Engine's CP exchanges (Implementation.cp_exchange names) that run sliding-window attention, and the
# one that runs learnable-softmax (sink) attention: attn_forward_func_with_cp asserts both
# (transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py; Megatron-Bridge sets gpt-oss's
# cp_comm_type to "a2a", recipes/gpt_oss/gpt_oss.py)
TE_CP_WITH_WINDOW = ("ulysses", "te_allgather")
TE_CP_WITH_SINKS = ("ulysses",)


def cp_attention_problem(m: ModelSpec, layout: Layout, impl: Implementation) -> str | None:
    """Context parallelism under Transformer Engine (megatron-core) runs a sliding window only through its
    all-to-all or all-gather exchange and attention sinks only through the all-to-all."""
    if layout.cp == 1 or impl.framework != "megatron-core":
        return None
    exchange = impl.cp_exchange or PRESETS[impl.framework].cp_exchange
    for feature, allowed in (("attention sinks", TE_CP_WITH_SINKS), ("a sliding window", TE_CP_WITH_WINDOW)):
        present = m.attention_sinks if feature == "attention sinks" else m.sliding_window is not None
        if present and exchange not in allowed:
            return (f"cp: {layout.cp} with {feature} needs implementation.cp_exchange "
                    f"{' or '.join(allowed)} (Transformer Engine's context parallelism refuses {exchange} for it; "
                    "Megatron --cp-comm-type a2a" + (" or all_gather)" if len(allowed) > 1 else ")"))
    return None


def offload_problems(m: ModelSpec, layout: Layout, impl: Implementation) -> list[str]:
    """Megatron-Core offloads activations (--cpu-offloading, Transformer Engine's cpu_offload) only without
    pipeline parallelism and without activation recomputation: TransformerConfig.__post_init__ raises "Currently
    there is no support for Pipeline parallelism with CPU offloading" and "CPU offloading does not work when
    activation recomputation is enabled" (megatron/core/transformer/transformer_config.py). A layout's own offload
    count (what the search chooses) is Megatron-Core's, below the model's layers."""
    out = []
    n = layout.activation_offload_layers
    if n is not None:
        if impl.framework != "megatron-core":
            out.append(f"activation_offload_layers: {n} is Megatron-Core's --cpu-offloading-num-layers; under "
                       f"{impl.framework} state implementation.activation_offload instead")
        elif (why := offload_problem(m, n)) is not None:
            out.append(why.removeprefix("implementation."))
    offloads = impl.activation_offload or impl.activation_offload_layers is not None or n is not None
    if impl.framework != "megatron-core" or not offloads:
        return out
    if layout.pp > 1:
        out.append(f"pp: {layout.pp} with activation offload: Megatron-Core offloads activations only "
                   "without pipeline parallelism (pp 1)")
    if layout.recompute != "none":
        out.append(f"recompute: {layout.recompute} with activation offload: Megatron-Core offloads "
                   "activations only without recomputation (recompute none)")
    return out


def data_parallel_problems(layout: Layout, framework: str) -> list[str]:
    """What a framework's data parallelism cannot run: torchtitan runs plain DDP (ZeRO-0) only as the one
    parallelism ("DDP has not supported > 1D parallelism", torchtitan parallelize_llama apply_ddp) and always shards
    over the context-parallel ranks (its FSDP mesh is dp_shard × cp)."""
    if framework != "torchtitan" or layout.zero != 0:
        return []
    if layout.cp > 1:
        return ["zero: 0 with cp > 1: torchtitan shards parameters over the context-parallel ranks (FSDP; zero ≥ 2)"]
    if layout.dp > 1 and layout.tp * layout.pp > 1:
        return ["zero: 0 (DDP) with tp or pp: torchtitan runs DDP only without other parallelism (zero ≥ 2: FSDP)"]
    return []


def layout_problems(
    m: ModelSpec,
    layout: Layout,
    gpus: int | None = None,
    node_size: int | None = None,
    seq: int | None = None,
    impl: Implementation = _DEFAULT_IMPL,
) -> list[str]:
    """Every rule the layout breaks, as 'field: what is wrong (what is allowed)'; empty when legal. Pipeline
    splits and FSDP with pipeline parallelism follow what the framework runs (planner.model.pipeline); the
    implementation's `loss_chunks` must divide a micro-batch's tokens per rank, and the all-to-all CP exchanges
    (`ulysses`, `hierarchical`) each TP rank's heads."""
    framework = impl.framework
    out: list[str] = []
    if seq is not None and (why := sequence_problem(m, seq)) is not None:
        out.append(why)
    if seq is not None and (why := loss_chunk_problem(layout, seq, impl.loss_chunks)) is not None:
        out.append(why)
    if (why := cp_heads_problem(m, layout, impl)) is not None:
        out.append(why)
    if (why := cp_attention_problem(m, layout, impl)) is not None:
        out.append(why)
    out += offload_problems(m, layout, impl)
    t, p, v = layout.tp, layout.pp, layout.vpp
    if m.heads % t:
        out.append(f"tp: {t} does not divide heads ({m.heads})")
    if m.mla is None and m.n_kv_heads % t and t % m.n_kv_heads:
        out.append(f"tp: {t} and kv_heads ({m.n_kv_heads}) must divide one another")
    if m.ffn_hidden % t:
        out.append(f"tp: {t} does not divide ffn_hidden ({m.ffn_hidden})")
    split = pipeline_split(layout, PRESETS[framework].split)
    if (why := rules.virtual_stage_problem(p, v)) is not None:
        out.append(why)
    elif (why := split_problem(m.layers, p, v, split)) is not None:
        out.append(f"pp·vpp: {p}·{v}: {why}")
    micro = layout.grad_accumulation
    if v > 1 and framework == "deepspeed":
        # DeepSpeed's pipeline engine runs one stage per rank (deepspeed/runtime/pipe/schedule.py TrainSchedule)
        out.append(f"vpp: {v}: DeepSpeed's pipeline engine has no interleaved schedule (one stage per rank)")
    elif v > 1 and framework == "torchtitan":
        rounds = max(1, micro // p)  # torch.distributed.pipelining ScheduleInterleaved1F1B
        if micro % rounds:
            out.append(f"vpp: interleaving needs micro-batches per step ({micro}) divisible by {rounds} rounds")
    elif v > 1 and micro % p:
        out.append(f"vpp: interleaving needs micro-batches per step ({micro}) divisible by pp ({p})")
    if layout.ep > 1:
        if m.moe is None:
            out.append(f"ep: {layout.ep} needs a mixture-of-experts model")
        elif m.moe.experts % layout.ep:
            out.append(f"ep: {layout.ep} does not divide experts ({m.moe.experts})")
        if layout.expert_tp is None and (layout.dp * layout.cp) % layout.ep:
            out.append(f"ep: {layout.ep} must divide dp·cp ({layout.dp * layout.cp}); with expert_tp below tp it "
                       "may fold over TP too")
    if layout.expert_tp is not None:
        # Megatron-Core's MoE parallel folding: ETP × EP × EDP = TP × CP × DP (parallel_state.py)
        et, ranks = layout.expert_tp, t * layout.dp * layout.cp
        if m.moe is None:
            out.append("expert_tp: needs a mixture-of-experts model")
        elif (why := rules.expert_tp_problem(t, et)) is not None:
            out.append(why)
        elif ranks % (layout.ep * et):
            out.append(f"expert_tp: ep·expert_tp = {layout.ep}·{et} must divide tp·dp·cp ({ranks})")
        elif et < t and not layout.sequence_parallel:
            out.append("expert_tp: below tp the MoE layers take sequence-parallel input (set sequence_parallel)")
    if (why := rules.sequence_parallel_problem(t, layout.sequence_parallel)) is not None:
        out.append(why)
    if layout.global_batch % (layout.dp * layout.micro_batch):
        out.append(
            f"global_batch: {layout.global_batch} is not divisible by dp·micro_batch "
            f"({layout.dp}·{layout.micro_batch} = {layout.dp * layout.micro_batch})"
        )
    if layout.zero >= 2 and p > 1 and framework != "torchtitan":
        # torchtitan runs FSDP2 inside each pipeline stage; Megatron-FSDP, DeepSpeed's pipeline engine and FSDP1
        # trainers do not combine gradient or parameter sharding with pipeline parallelism (DeepSpeed's
        # runtime/pipe/engine.py asserts "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism")
        out.append(f"zero: stage {layout.zero} does not combine with pipeline parallelism under {framework} "
                   "(use zero ≤ 1 with pp > 1; torchtitan shards inside pipeline stages)")
    out += data_parallel_problems(layout, framework)
    if (why := rules.dp_shard_problem(layout.dp_shard, layout.dp, layout.cp)) is not None:
        out.append(why)
    if layout.recompute_num_layers is not None \
            and (why := rules.recompute_count_problem("recompute_num_layers", layout.recompute)) is not None:
        out.append(why)
    if seq is not None and layout.cp > 1 and seq % (2 * layout.cp):
        out.append(
            f"cp: sequence {seq} must split into 2·cp = {2 * layout.cp} equal chunks (load-balanced ring)"
        )
    if (why := rules.gpu_count_problem(gpus, t, p, layout.dp, layout.cp)) is not None:
        out.append(why)
    if node_size is not None and t > node_size:
        out.append(f"tp: {t} spans nodes (at most {node_size} GPUs share NVLink)")
    elif node_size is not None and node_size % t:
        out.append(f"tp: {t} does not divide the node size ({node_size}), so some TP groups would straddle nodes")
    return out
