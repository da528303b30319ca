"""Read and write Megatron-LM launch arguments: the model shape and the parallel layout they describe.

`parse_megatron_args` takes a launch-script fragment (bash arrays, `\\` continuations, comments, simple
`NAME=value` assignments) or an argv list, and reads the flags that decide memory and time. No shell runs:
variables the text sets to plain values (and `${NAME:-default}`) are substituted, `$(...)` is not evaluated,
and both branches of an `if` are read, a repeated flag's last value winning as in argparse. Every other
flag is accounted for: a documented set (`IGNORED_FLAGS`: paths, logging, learning-rate schedule, seeds,
fusions, communication overlap) is listed in `MegatronConfig.ignored` (`overlaps()` reads the overlap switches
there); anything else lands in
`MegatronConfig.unknown` for the caller to warn about; flags that change the answer in a way planner does
not model go to `MegatronConfig.unsupported` with the reason. Nothing is dropped silently.

Megatron's own defaults apply to absent flags (validate_args in megatron/training/arguments.py): GeLU
MLP of 4·hidden, LayerNorm, learned absolute positions, biases on every linear layer, tied embeddings,
dropout 0.1, Adam with decoupled weight decay, and the vocabulary padded to a multiple of
--make-vocab-size-divisible-by (128) × TP.
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from pydantic import ValidationError

from planner.errors import InputError, format_validation_error
from planner.limits import MAX_FILE_BYTES
from planner.model.pipeline import PipelineSplit, virtual_stage_layers
from planner.model.presets import DEFAULT_TOKEN_DISPATCHER
from planner.schema import (
    MAX_EXPERTS,
    MAX_GLOBAL_BATCH,
    MAX_GPUS,
    MAX_LAYERS,
    MAX_SEQ,
    CpExchange,
    CrossEntropyKernel,
    CudaGraphScope,
    Fp8Recipe,
    Implementation,
    Layout,
    MasterWeights,
    MLASpec,
    ModelSpec,
    MoESpec,
    MomentDtype,
    Optimizer,
    Precision,
    Recompute,
    RecomputeModule,
    TokenDispatcher,
)
from planner.workloads.training.legality import last_stage_layers

# --------------------------------------------------------------------------------------------
# The flags planner reads, with their argparse kind: a value (int/float/str), a list of values, or a switch.
# --------------------------------------------------------------------------------------------

Kind = Literal["int", "float", "str", "list", "switch"]

UNDERSTOOD_FLAGS: dict[str, Kind] = {
    # model shape
    "--num-layers": "int",
    "--hidden-size": "int",
    "--ffn-hidden-size": "int",
    "--num-attention-heads": "int",
    "--group-query-attention": "switch",
    "--num-query-groups": "int",
    "--kv-channels": "int",
    "--seq-length": "int",
    "--max-position-embeddings": "int",
    "--padded-vocab-size": "int",
    "--vocab-size": "int",
    "--make-vocab-size-divisible-by": "int",
    "--tokenizer-type": "str",
    "--swiglu": "switch",
    "--squared-relu": "switch",
    "--quick-geglu": "switch",
    "--normalization": "str",
    "--untie-embeddings-and-output-weights": "switch",
    "--position-embedding-type": "str",
    "--use-rotary-position-embeddings": "switch",
    "--no-position-embedding": "switch",
    "--disable-bias-linear": "switch",
    "--add-qkv-bias": "switch",
    "--num-experts": "int",
    "--moe-router-topk": "int",
    "--moe-ffn-hidden-size": "int",
    "--moe-shared-expert-intermediate-size": "int",
    "--moe-layer-freq": "str",
    # multi-latent attention (megatron/training/arguments.py _add_mla_args; defaults there)
    "--multi-latent-attention": "switch",
    "--q-lora-rank": "int",
    "--kv-lora-rank": "int",
    "--qk-head-dim": "int",
    "--qk-pos-emb-head-dim": "int",
    "--v-head-dim": "int",
    # parallel layout
    "--tensor-model-parallel-size": "int",
    "--pipeline-model-parallel-size": "int",
    "--num-layers-per-virtual-pipeline-stage": "int",
    "--num-virtual-stages-per-pipeline-rank": "int",
    "--virtual-pipeline-model-parallel-size": "int",
    "--context-parallel-size": "int",
    "--expert-model-parallel-size": "int",
    "--expert-tensor-parallel-size": "int",
    "--sequence-parallel": "switch",
    "--use-distributed-optimizer": "switch",
    "--use-torch-fsdp2": "switch",
    "--use-megatron-fsdp": "switch",
    "--use-custom-fsdp": "switch",  # its name until 2025
    "--torch-fsdp2-no-reshard-after-forward": "switch",
    "--data-parallel-sharding-strategy": "str",
    # activation recompute
    "--recompute-granularity": "str",
    "--recompute-method": "str",
    "--recompute-num-layers": "int",
    "--recompute-modules": "list",
    "--recompute-activations": "switch",
    "--checkpoint-activations": "switch",
    "--checkpoint-num-layers": "int",
    "--distribute-saved-activations": "switch",
    # batch
    "--micro-batch-size": "int",
    "--global-batch-size": "int",
    # precision and gradients
    "--bf16": "switch",
    "--fp16": "switch",
    "--fp8-format": "str",
    "--fp8-recipe": "str",
    "--fp8-param-gather": "switch",
    "--accumulate-allreduce-grads-in-fp32": "switch",
    "--grad-reduce-in-bf16": "switch",
    # kernels and dropout
    "--attention-dropout": "float",
    "--hidden-dropout": "float",
    "--use-flash-attn": "switch",
    "--attention-backend": "str",
    # TransformerConfig.softmax_type: generated as an argument from Megatron-Core 0.16 on (core_v0.16.0
    # megatron/training/arguments.py builds the transformer group from TransformerConfig's fields)
    "--softmax-type": "str",
    "--transformer-impl": "str",
    # optimizer
    "--optimizer": "str",
    "--optimizer-cpu-offload": "switch",
    "--optimizer-offload-fraction": "float",
    "--use-precision-aware-optimizer": "switch",
    "--main-grads-dtype": "str",
    "--main-params-dtype": "str",
    "--exp-avg-dtype": "str",
    "--exp-avg-sq-dtype": "str",
    "--no-store-param-remainders": "switch",
    # read only to be reported as unsupported
    "--qk-layernorm": "switch",
    "--use-tp-pp-dp-mapping": "switch",
    "--first-last-layers-bf16": "switch",
    "--num-layers-at-start-in-bf16": "int",
    "--num-layers-at-end-in-bf16": "int",
    "--window-size": "str",
    "--window-attn-skip-freq": "str",
    "--hybrid-layer-pattern": "str",
    "--hybrid-override-pattern": "str",
    "--linear-attention-freq": "str",
    "--num-distributed-optimizer-instances": "int",
    "--outer-dp-sharding-strategy": "str",
    "--keep-fp8-transpose-cache": "switch",
    "--fp4-param-gather": "switch",
    "--te-precision-config-file": "str",
    "--yaml-cfg": "str",
    "--freeze-all-layers": "switch",
    "--fp16-lm-cross-entropy": "switch",
    "--mtp-num-layers": "int",
    "--decoder-first-pipeline-num-layers": "int",
    "--decoder-last-pipeline-num-layers": "int",
    "--pipeline-model-parallel-layout": "str",
    "--account-for-embedding-in-pipeline-split": "switch",
    "--account-for-loss-in-pipeline-split": "switch",
    "--moe-expert-capacity-factor": "float",
    "--cpu-offloading": "switch",
    "--cpu-offloading-num-layers": "int",
    "--fine-grained-activation-offloading": "switch",
    "--enable-cuda-graph": "switch",
    "--external-cuda-graph": "switch",
    "--cuda-graph-impl": "str",
    "--heterogeneous-layers-config-path": "str",
    "--moe-token-dispatcher-type": "str",
    "--moe-enable-deepep": "switch",
    "--cp-comm-type": "list",
    "--hierarchical-context-parallel-sizes": "list",
    "--cross-entropy-loss-fusion": "switch",
    "--cross-entropy-fusion-impl": "str",
}

# Transformer Engine's context-parallel exchanges as Megatron's --cp-comm-type names them. Megatron's help spells the
# all-gather "allgather", Transformer Engine's attention "all_gather" (transformer_config.py cp_comm_type;
# context_parallel.py attn_forward_func_with_cp), which is what Megatron hands it and what planner writes
CP_COMM_TYPE_OF: dict[CpExchange, str] = {"ring": "p2p", "ulysses": "a2a", "te_allgather": "all_gather",
                                          "hierarchical": "a2a+p2p"}
EXCHANGE_OF: dict[str, CpExchange] = {v: k for k, v in CP_COMM_TYPE_OF.items()} | {"allgather": "te_allgather"}
CP_COMM_TYPES = tuple(EXCHANGE_OF)
# Megatron-LM switches the review reads as overlaps (MegatronConfig.overlaps): listed apart from the ignored ones
OVERLAP_FLAGS = ("--tp-comm-overlap", "--overlap-grad-reduce", "--overlap-param-gather",
                 "--overlap-moe-expert-parallel-comm")


def cp_exchange_args(impl: Implementation, cp: int) -> list[str]:
    """The --cp-comm-type of a Transformer Engine exchange (and its hierarchical sizes); none for the ring, the
    default."""
    exchange = impl.cp_exchange or "ring"
    if exchange == "ring":
        return []
    out = [f"--cp-comm-type {CP_COMM_TYPE_OF[exchange]}"]
    if exchange == "hierarchical" and impl.cp_a2a_size:
        out.append(f"--hierarchical-context-parallel-sizes {impl.cp_a2a_size} {cp // impl.cp_a2a_size}")
    return out


def _hierarchical_cp_sizes(args: _Args, cp: int) -> list[int] | None:
    """--hierarchical-context-parallel-sizes as integers (None when not given); their product must be the CP size
    (megatron/core/parallel_state.py asserts it)."""
    words = args.values.get("--hierarchical-context-parallel-sizes")
    if words is None:
        return None
    sizes = []
    for w in words if isinstance(words, list) else [str(words)]:
        if not re.fullmatch(r"\d{1,7}", w) or int(w) < 1:
            raise InputError(f"--hierarchical-context-parallel-sizes: expected positive integers, got {w[:40]!r}")
        sizes.append(int(w))
    if math.prod(sizes) != cp:
        raise InputError(f"--hierarchical-context-parallel-sizes: {' × '.join(map(str, sizes))} is not the context "
                         f"parallel size {cp}")
    return sizes
# Flags that change neither memory nor the time model, listed in MegatronConfig.ignored when seen.
def _flag_set(*groups: str) -> frozenset[str]:
    return frozenset(word for group in groups for word in group.split())


# The launcher's process counts: ignored for the model, but they say how many GPUs the script starts.
LAUNCHER_COUNTS = {"--nproc_per_node": "nproc", "--nproc-per-node": "nproc", "--nnodes": "nnodes"}

IGNORED_FLAGS: frozenset[str] = _flag_set(
    # launcher (torchrun / deepspeed): the GPU count is planner's --gpus
    """--nproc_per_node --nproc-per-node --nnodes --node_rank --node-rank --master_addr --master-addr
    --master_port --master-port --rdzv_backend --rdzv-backend --rdzv_endpoint --rdzv-endpoint --rdzv_id
    --rdzv-id --standalone --max_restarts --max-restarts""",
    # data, tokenizer files and the data loader
    """ --data-path --train-data-path --valid-data-path --test-data-path --data-args-path
    --per-split-data-args-path --data-cache-path --split --vocab-file --merge-file --tokenizer-model
    --tiktoken-pattern --mock-data --num-workers --dataloader-type --num-dataset-builder-threads
    --no-create-attention-mask-in-dataloader --no-mmap-bin-files --append-eod --reset-position-ids
    --reset-attention-mask --eod-mask-loss""",
    # learning rate, weight decay, loss scaling, initialisation
    """ --lr --min-lr --lr-decay-style --lr-decay-iters --lr-decay-samples --lr-warmup-fraction
    --lr-warmup-iters --lr-warmup-samples --lr-warmup-init --decoupled-lr --decoupled-min-lr --weight-decay
    --start-weight-decay --end-weight-decay --weight-decay-incr-style --clip-grad --adam-beta1 --adam-beta2
    --adam-eps --sgd-momentum --loss-scale --initial-loss-scale --min-loss-scale --loss-scale-window
    --hysteresis --init-method-std --init-method-xavier-uniform""",
    # run length; a batch ramp-up ends at --global-batch-size, the steady state planner sizes
    """ --train-iters --train-samples --exit-interval --exit-duration-in-mins --rampup-batch-size
    --skip-train""",
    # checkpoint files
    """ --save --load --save-interval --ckpt-format --no-save-optim --no-save-rng --no-load-optim
    --no-load-rng --finetune --use-checkpoint-args --exit-on-missing-checkpoint --async-save
    --ckpt-fully-parallel-load --dist-ckpt-strictness --pretrained-checkpoint --use-dist-ckpt
    --auto-detect-ckpt-format --non-persistent-save-interval --non-persistent-ckpt-type""",
    # logging, evaluation, profiling
    """ --log-interval --eval-interval --eval-iters --tensorboard-dir --tensorboard-log-interval
    --tensorboard-queue-size --log-throughput --log-timers-to-tensorboard --log-validation-ppl-to-tensorboard
    --log-memory-to-tensorboard --log-params-norm --log-num-zeros-in-grad --timing-log-level
    --timing-log-option --wandb-project --wandb-exp-name --wandb-save-dir --profile --profile-step-start
    --profile-step-end --profile-ranks --use-pytorch-profiler --log-progress --logging-level --log-straggler
    --disable-straggler-on-startup --straggler-minmax-count --enable-experimental --no-one-logger --one-logger-async
    --one-logger-project --one-logger-run-name --app-tag-run-name --app-tag-run-version --enable-ft-package
    --calc-ft-timeouts --dist-ckpt-format --dist-ckpt-workers --ckpt-fully-parallel-save
    --ckpt-drop-redundant-extra-state --dataloader-defer-npy-index-mmap --dataloader-fast-cache-load
    --no-data-sharding --enable-msc --disable-msc --object-storage-cache-path""",
    # numerics that keep every tensor shape: RoPE base/scaling, norm epsilon, fp8 scaling recipe, seeds
    """ --seed --rotary-base --rotary-percent --rotary-seq-len-interpolation-factor --use-rope-scaling
    --rotary-scaling-factor --mscale --mscale-all-dim --te-rng-tracker --inference-rng-tracker --rope-type
    --no-rope-freq --yarn-beta-fast --yarn-beta-slow --yarn-original-max-position-embeddings
    --yarn-correction-range-round-to-int --no-yarn-correction-range-round-to-int --openai-gelu --check-for-large-grads
    --head-lr-mult --apply-wd-to-qk-layernorm --no-weight-decay-cond-type
    --rope-scaling-factor --norm-epsilon --layernorm-epsilon --apply-layernorm-1p --attention-softmax-in-fp32
    --apply-query-key-layer-scaling --fp8-margin --fp8-interval --fp8-amax-history-len
    --fp8-amax-compute-algo --no-fp8-wgrad --calculate-per-token-loss --deterministic-mode
    --check-for-nan-in-loss-and-grad --no-check-for-nan-in-loss-and-grad""",
    # fusions, communication overlap and router tuning: speed, not the tensors planner counts
    """ --no-masked-softmax-fusion --no-bias-gelu-fusion --no-bias-swiglu-fusion --no-bias-dropout-fusion
    --no-rope-fusion --no-persist-layer-norm --no-gradient-accumulation-fusion --overlap-grad-reduce
    --overlap-param-gather --overlap-param-gather-with-optimizer-step --tp-comm-overlap --overlap-p2p-comm
    --no-overlap-p2p-communication --align-grad-reduce --align-param-gather
    --no-async-tensor-model-parallel-allreduce --async-tensor-model-parallel-allreduce --distributed-backend
    --distributed-timeout-minutes --ddp-bucket-size --ddp-average-in-collective --defer-embedding-wgrad-compute
    --use-contiguous-parameters-in-local-ddp --moe-grouped-gemm --moe-permute-fusion --moe-flex-dispatcher-backend
    --moe-router-load-balancing-type --moe-aux-loss-coeff --moe-z-loss-coeff --moe-router-pre-softmax
    --moe-router-score-function --moe-router-topk-scaling-factor --moe-router-dtype
    --moe-router-enable-expert-bias --moe-router-bias-update-rate --moe-input-jitter-eps
    --overlap-moe-expert-parallel-comm --delay-wgrad-compute --moe-shared-expert-overlap --cuda-graph-scope
    --cuda-graph-modules --moe-router-fusion --moe-router-padding-for-fp8 --moe-router-num-groups
    --moe-router-group-topk --moe-apply-probs-on-input --moe-router-force-load-balancing --moe-hybridep-num-sms
    --moe-token-drop-policy --moe-pad-expert-input-to-capacity --high-priority-stream-groups
    --nccl-communicator-config-path --tp-comm-overlap-cfg --use-nccl-ub --ddp-num-buckets
    --ddp-pad-buckets-for-high-nccl-busbw --ddp-reduce-scatter-with-fp32-accumulation --create-all-gather-group
    --suggested-communication-unit-size --fsdp-double-buffer --fsdp-manual-registration --disable-symmetric-registration
    --no-align-param-gather --no-gradient-reduce-div-fusion --optimizer-cuda-graph --overlap-cpu-optimizer-d2h-h2d
    --no-pin-cpu-grads --no-pin-cpu-params --use-torch-optimizer-for-cpu-offload --reuse-grad-buf-for-mxfp8-param-ag""",
    # process setup; the allocator's cache flushing is inside planner's fragmentation allowance
    """ --use-mcore-models --use-legacy-models --use-cpu-initialization --no-initialization --manual-gc
    --manual-gc-interval --empty-unused-memory-level""",
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ASSIGNMENT = re.compile(rf"^(?:export\s+)?({_NAME})=(.*)$", re.DOTALL)
_REFERENCE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")
# Tokens of the surrounding shell, never a flag's value: array brackets, expansions of arrays, operators.
_SHELL_SYNTAX = re.compile(
    rf"^(?:[()]|\[\[|\]\]|;|&&|\|\||\||[<>].*|\d?>&\d|{_NAME}=.*|\$\{{?\w+\[@\]\}}?|\$@)$", re.DOTALL
)


@dataclass(frozen=True)
class MegatronConfig:
    """What a Megatron-LM launch says about the model and the layout, and what planner could not use.

    `global_batch` None means Megatron's default of micro_batch × data-parallel size. `gpus_needed_per_dp_replica`
    is tp·pp·cp: the GPU count must be a multiple of it (expert parallelism is carved out of dp·cp).
    """

    model: ModelSpec | None
    tp: int = 1
    pp: int = 1
    vpp: int = 1
    cp: int = 1
    ep: int = 1
    zero: Literal[0, 1, 2, 3] = 0
    recompute: Recompute = "none"
    sequence_parallel: bool = False
    micro_batch: int | None = None
    global_batch: int | None = None
    precision: Precision = "bf16"
    fp32_grad_accumulation: bool = True
    optimizer: Optimizer = "adamw"
    offload_optimizer: bool = False
    master_weights: MasterWeights = "fp32"
    moment_dtype: MomentDtype = "fp32"
    seq: int | None = None
    dropout: float = 0.1  # --hidden-dropout
    attention_dropout: float = 0.1
    attention: Literal["flash", "eager"] = "flash"
    fp8_recipe: Fp8Recipe | None = None
    fp8_param_gather: bool = False
    recompute_modules: list[RecomputeModule] | None = None
    recompute_num_layers: int | None = None
    recompute_method: Literal["uniform", "block"] = "block"
    account_for_embedding_in_pipeline_split: bool = False
    account_for_loss_in_pipeline_split: bool = False
    pipeline_first_stage_layers: int | None = None
    pipeline_last_stage_layers: int | None = None
    pipeline_layout: tuple[int, ...] | None = None
    activation_offload: bool = False
    activation_offload_layers: int | None = None
    cuda_graphs: bool = False
    cuda_graph_scope: CudaGraphScope | None = None  # full_iteration: the whole step
    reshard_after_forward: bool | None = None  # --torch-fsdp2-no-reshard-after-forward: False (FSDP2's ZeRO-2)
    moe_token_dispatcher: TokenDispatcher | None = None
    cross_entropy: CrossEntropyKernel | None = None  # None: Megatron's vocab-parallel loss
    cp_exchange: CpExchange | None = None  # one --cp-comm-type on every layer (a2a, all_gather, a2a+p2p); None: p2p
    cp_a2a_size: int | None = None  # a2a+p2p: the first level of --hierarchical-context-parallel-sizes
    expert_tp: int | None = None
    ignored: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    launched_gpus: int | None = None  # torchrun --nproc_per_node × --nnodes, when the script gives both plainly

    def launch_mismatch(self, gpus: int) -> str | None:
        """What disagrees when the launcher starts another GPU count than the `gpus` reviewed (the script run as
        written would not be this run); None when it agrees or does not say."""
        if self.launched_gpus is None or self.launched_gpus == gpus:
            return None
        replica = self.gpus_needed_per_dp_replica
        holds = "cannot hold" if self.launched_gpus % replica else "holds"
        return (f"the script's launcher starts {self.launched_gpus} GPUs (--nproc_per_node × --nnodes), not the "
                f"{gpus} reviewed; as written it {holds} TP{self.tp}·PP{self.pp}·CP{self.cp} = {replica}-GPU "
                "replicas: set its node count to match")

    @property
    def gpus_needed_per_dp_replica(self) -> int:
        return self.tp * self.pp * self.cp

    def overlaps(self) -> dict[str, float]:
        """The communication overlaps the arguments switch, as Efficiency fields: --tp-comm-overlap pipelines
        the TP collectives with their GEMMs (Transformer Engine userbuffers); --overlap-moe-expert-parallel-comm runs
        one micro-batch's expert all-to-all under another's compute; without --overlap-grad-reduce the
        gradient reduction waits for the backward to finish (its default, megatron/training/arguments.py
        store_true), where planner's megatron-core preset overlaps it as NeMo and Megatron-Bridge recipes do;
        without --overlap-param-gather the distributed optimizer all-gathers the updated parameters inside its
        step (megatron/core/optimizer/distrib_optimizer.py) instead of under the next forward."""
        out: dict[str, float] = {}
        if "--tp-comm-overlap" in self.ignored:
            out["tp_overlap"] = 1.0
        if "--overlap-moe-expert-parallel-comm" in self.ignored and self.ep > 1:
            out["ep_overlap"] = 1.0
        if "--overlap-grad-reduce" not in self.ignored:
            out["dp_overlap"] = 0.0
        if "--overlap-param-gather" not in self.ignored:  # also where ZeRO-0 reads none: for a plan that shards
            out["param_gather_overlap"] = 0.0
        return out

    def implementation(self) -> Implementation:
        """The kernels the arguments select. Flash attention regenerates its dropout mask, so only the
        hidden dropout leaves a saved mask there; eager attention also saves the attention-dropout mask."""
        return Implementation(
            attention=self.attention, dropout=self.dropout, framework="megatron-core",
            fp8_recipe=self.fp8_recipe, fp8_param_gather=self.fp8_param_gather,
            recompute_modules=self.recompute_modules, activation_offload=self.activation_offload,
            activation_offload_layers=self.activation_offload_layers, cuda_graphs=self.cuda_graphs,
            cuda_graph_scope=self.cuda_graph_scope,
            moe_token_dispatcher=self.moe_token_dispatcher,
            cross_entropy=self.cross_entropy, cp_exchange=self.cp_exchange, cp_a2a_size=self.cp_a2a_size,
            reshard_after_forward=self.reshard_after_forward,
        )

    def to_layout(self, gpus: int) -> Layout:
        """The Layout on `gpus` GPUs: dp = gpus / (tp·pp·cp), as Megatron derives it from the world size."""
        n = self.gpus_needed_per_dp_replica
        if gpus < 1 or gpus % n:
            raise InputError(
                f"--gpus {gpus} is not a multiple of tp·pp·cp = {self.tp}·{self.pp}·{self.cp} = {n} "
                "(--tensor-model-parallel-size × --pipeline-model-parallel-size × --context-parallel-size)"
            )
        dp = gpus // n
        if self.micro_batch is None:
            raise InputError("Megatron-LM arguments: missing --micro-batch-size (Megatron requires it)")
        global_batch = self.global_batch or self.micro_batch * dp
        if global_batch % (self.micro_batch * dp):
            raise InputError(
                f"--global-batch-size {global_batch} is not divisible by --micro-batch-size × data-parallel size "
                f"= {self.micro_batch} × {dp} (dp = --gpus {gpus} / tp·pp·cp {n})"
            )
        try:
            return Layout(
                tp=self.tp, pp=self.pp, vpp=self.vpp, dp=dp, cp=self.cp, ep=self.ep, zero=self.zero,
                recompute=self.recompute, sequence_parallel=self.sequence_parallel, micro_batch=self.micro_batch,
                global_batch=global_batch, precision=self.precision,
                fp32_grad_accumulation=self.fp32_grad_accumulation, optimizer=self.optimizer,
                offload_optimizer=self.offload_optimizer, master_weights=self.master_weights,
                moment_dtype=self.moment_dtype, recompute_num_layers=self.recompute_num_layers,
                recompute_method=self.recompute_method,
                account_for_embedding_in_pipeline_split=self.account_for_embedding_in_pipeline_split,
                account_for_loss_in_pipeline_split=self.account_for_loss_in_pipeline_split,
                pipeline_first_stage_layers=self.pipeline_first_stage_layers,
                pipeline_last_stage_layers=self.pipeline_last_stage_layers, expert_tp=self.expert_tp,
                pipeline_layout=self.pipeline_layout, activation_offload_layers=self.activation_offload_layers,
            )
        except ValidationError as exc:
            raise InputError(format_validation_error(exc, "Megatron-LM arguments")) from exc


# --------------------------------------------------------------------------------------------
# Tokenising a launch script
# --------------------------------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    """Drop `# ...` to the end of the line where bash would: at the start of a word, outside quotes."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote is None and c == "#" and (i == 0 or text[i - 1].isspace()):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if c == "\\" and quote != "'" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            continue
        if c in "'\"" and quote in (None, c):
            quote = None if quote == c else c
        out.append(c)
        i += 1
    return "".join(out)


def _words(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\\\n", " ")  # bash removes backslash-newline
    try:
        return shlex.split(_strip_comments(text))
    except ValueError as exc:  # unbalanced quotes
        raise InputError(f"Megatron-LM arguments: cannot split into words ({exc})") from exc


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Substitute $NAME, ${NAME} and ${NAME:-default} from `env`; unknown references stay as written. A value
    that grows past MAX_FILE_BYTES (A1=$A0$A0, A2=$A1$A1, …: every assignment doubles it) is refused as it grows."""
    size = len(value)

    def one(match: re.Match[str]) -> str:
        nonlocal size
        name = match.group(1) or match.group(3)
        if name in env:
            out = env[name]
        elif match.group(1) and match.group(2) is not None:
            out = _expand(match.group(2).strip("\"'"), env)
        else:
            return match.group(0)
        size += len(out)
        if size > MAX_FILE_BYTES:
            raise InputError(f"Megatron-LM arguments: ${name} expands past {MAX_FILE_BYTES:,} characters, more than "
                             "any launch script planner reads")
        return out

    return _REFERENCE.sub(one, value)


# --------------------------------------------------------------------------------------------
# Typed reads
# --------------------------------------------------------------------------------------------


class _Args:
    """The flags found, last occurrence winning as in argparse; every read error names the flag."""

    def __init__(self) -> None:
        self.values: dict[str, str | list[str] | bool] = {}

    def __contains__(self, flag: str) -> bool:
        return flag in self.values

    def raw(self, flag: str) -> str | None:
        value = self.values.get(flag)
        if value is None or isinstance(value, bool):
            return None
        text = " ".join(value) if isinstance(value, list) else value
        if "$" in text:
            raise InputError(
                f"{flag}: {text!r} refers to a shell variable or command this text does not set to a plain value; "
                "expand it, or set the variable (NAME=value) in the pasted text"
            )
        return text

    def switch(self, flag: str) -> bool:
        return bool(self.values.get(flag, False))

    def int(self, flag: str, default: int | None = None, minimum: int = 1) -> int | None:
        text = self.raw(flag)
        if text is None:
            return default
        if not re.fullmatch(r"[+-]?\d{1,20}", text):
            raise InputError(f"{flag}: expected an integer, got {text[:40]!r}")
        value = int(text)
        if value < minimum:
            raise InputError(f"{flag}: must be at least {minimum}, got {value}")
        maximum = _INT_MAXIMA.get(flag, _ANY_INT_MAX)
        if value > maximum:
            raise InputError(f"{flag}: {value:,} is past any physical run (at most {maximum:,})")
        return value

    def need_int(self, flag: str, default: builtins.int) -> builtins.int:  # `int` here is the method above
        value = self.int(flag, default)
        assert value is not None
        return value

    def float(self, flag: str, default: float) -> float:
        text = self.raw(flag)
        if text is None:
            return default
        try:
            return float(text)
        except ValueError:
            raise InputError(f"{flag}: expected a number, got {text!r}") from None

    def choice(self, flag: str, choices: Sequence[str], default: str | None = None) -> str | None:
        text = self.raw(flag)
        if text is None:
            return default
        if text not in choices:
            raise InputError(f"{flag}: {text!r} is not one of {', '.join(choices)}")
        return text


def _collect(
    words: Sequence[str], env: dict[str, str], given: Mapping[str, str], args: _Args, cfg: dict[str, list[str]]
) -> None:
    """Walk the words: record understood flags, list ignored and unknown ones, skip shell around them.
    `env` holds the variables set so far; `given` the caller's, which outlast assignments the text
    computes in ways not evaluated here."""
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word.startswith("--") and any(c.isspace() for c in word):
            # an unquoted array element such as "--fp8-format hybrid" is word-split by bash
            _collect(word.split(), env, given, args, cfg)
            continue
        assignment = _ASSIGNMENT.match(word)
        if assignment and not word.startswith("-"):
            name, value = assignment.groups()
            if re.search(r"(^|\s)--\w", value):  # GPT_ARGS="--num-layers 32 ...": the flags are used unquoted
                _collect(_words(value), env, given, args, cfg)
            elif not value.startswith("(") and "$" not in (expanded := _expand(value, env)) and "`" not in expanded:
                env[name] = expanded
            elif name not in given:
                env.pop(name, None)  # arrays, $(command) and $((arithmetic)) are not evaluated
            continue
        if not word.startswith("--") or word == "--":
            continue  # commands, script paths, array brackets, conditionals
        flag, eq, inline = word.partition("=")
        kind = UNDERSTOOD_FLAGS.get(flag)
        values: list[str] = []
        if eq:
            values = [inline]
        elif kind != "switch":
            # A value never starts with "--"; unknown flags take every following word that is not shell syntax.
            while i < len(words) and not words[i].startswith("--") and not _SHELL_SYNTAX.match(words[i]):
                values.append(words[i])
                i += 1
                if kind in ("int", "float", "str"):
                    break
        if kind is None:
            if flag in LAUNCHER_COUNTS and values:
                cfg["launch"].append(f"{LAUNCHER_COUNTS[flag]}={_expand(values[0], env)}")
            bucket = cfg["ignored"] if flag in IGNORED_FLAGS else cfg["unknown"]
            if flag not in bucket:
                bucket.append(flag)
            continue
        if kind == "switch":
            if eq:
                raise InputError(f"{flag}: takes no value, got {inline!r}")
            args.values[flag] = True
            continue
        if not values or values == [""]:
            raise InputError(f"{flag}: missing value")
        # A value still holding "$" after expansion is kept as written, so the error names the variable.
        words_out = [e if "$" not in (e := _expand(v, env)) else v for v in values]
        args.values[flag] = words_out if kind == "list" else words_out[0]


# --------------------------------------------------------------------------------------------
# Model shape
# --------------------------------------------------------------------------------------------


def padded_vocab(vocab: int, divisible_by: int, tp: int) -> int:
    """Megatron's _vocab_size_with_padding: round up to a multiple of divisible_by × TP."""
    multiple = divisible_by * tp
    return math.ceil(vocab / multiple) * multiple


# Integer flags that reach the model unvalidated, held to the scenario keys' ranges (planner.limits); every
# other integer ends in a validated field, and only needs to stay an exact machine integer until then.
_INT_MAXIMA = {
    "--seq-length": MAX_SEQ, "--max-position-embeddings": MAX_SEQ, "--micro-batch-size": MAX_GLOBAL_BATCH,
    "--global-batch-size": MAX_GLOBAL_BATCH, "--tensor-model-parallel-size": MAX_GPUS,
    "--pipeline-model-parallel-size": MAX_GPUS, "--context-parallel-size": MAX_GPUS,
    "--expert-model-parallel-size": MAX_EXPERTS, "--expert-tensor-parallel-size": MAX_GPUS,
    "--num-layers": MAX_LAYERS, "--decoder-first-pipeline-num-layers": MAX_LAYERS,
    "--decoder-last-pipeline-num-layers": MAX_LAYERS, "--num-layers-per-virtual-pipeline-stage": MAX_LAYERS,
    "--num-virtual-stages-per-pipeline-rank": MAX_LAYERS, "--virtual-pipeline-model-parallel-size": MAX_LAYERS,
    "--recompute-num-layers": MAX_LAYERS, "--checkpoint-num-layers": MAX_LAYERS, "--mtp-num-layers": MAX_LAYERS,
    "--cpu-offloading-num-layers": MAX_LAYERS, "--num-experts": MAX_EXPERTS, "--moe-router-topk": MAX_EXPERTS,
}
_ANY_INT_MAX = 2**53

# A --moe-layer-freq pattern written out for MAX_LAYERS layers ("0, " each) stays under this.
MAX_PATTERN_CHARS = 65_536


def _eval_pattern(text: str, flag: str) -> list[int]:
    """A --moe-layer-freq list expression such as "([0]*3+[1]*58)": integers, lists, + and * only, and no
    list or number beyond MAX_LAYERS (the pattern has one entry per layer), so that no input builds a huge list."""
    bad = f"{flag}: {text[:80]!r} is not an integer or a list expression like ([0]*3+[1]*58)"

    def bounded(value: int | list[int]) -> int | list[int]:
        size = len(value) if isinstance(value, list) else abs(value)
        if size > MAX_LAYERS:
            raise InputError(f"{flag}: {text[:80]!r} reaches {size:,}; a layer pattern has at most {MAX_LAYERS:,}")
        return value

    def ev(node: ast.AST) -> int | list[int]:
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return bounded(node.value)
        if isinstance(node, ast.List):
            items = [ev(e) for e in node.elts]
            if all(isinstance(x, int) for x in items):
                return bounded([x for x in items if isinstance(x, int)])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add) and type(left) is type(right):
                if isinstance(left, list) and isinstance(right, list):
                    bounded(len(left) + len(right))
                return bounded(left + right)  # type: ignore[operator]
            if isinstance(node.op, ast.Mult) and (isinstance(left, int) or isinstance(right, int)):
                if isinstance(left, list) or isinstance(right, list):
                    seq, times = (left, right) if isinstance(left, list) else (right, left)
                    bounded(len(seq) * max(0, int(times)))  # type: ignore[arg-type]
                else:
                    bounded(int(left) * int(right))
                return bounded(left * right)  # type: ignore[operator]
        raise ValueError

    if len(text) > MAX_PATTERN_CHARS:
        raise InputError(f"{flag}: {len(text):,} characters; a layer pattern needs at most {MAX_PATTERN_CHARS:,}")
    try:
        value = ev(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise InputError(bad) from None
    return value if isinstance(value, list) else [value]


def _moe(args: _Args, layers: int, ffn: int, unsupported: dict[str, str]) -> MoESpec | None:
    experts = args.int("--num-experts", None, minimum=0)
    if not experts:
        return None
    dense_layers = 0
    freq = args.raw("--moe-layer-freq")
    if freq is not None:
        pattern = _eval_pattern(freq, "--moe-layer-freq")
        if len(pattern) == 1:
            if pattern[0] != 1:
                unsupported["--moe-layer-freq"] = (
                    f"one MoE layer every {pattern[0]} layers; planner models the dense layers first"
                )
        elif len(pattern) != layers:
            raise InputError(f"--moe-layer-freq: the pattern has {len(pattern)} entries, --num-layers is {layers}")
        else:
            dense_layers = pattern.index(1) if 1 in pattern else layers
            if any(x != 1 for x in pattern[dense_layers:]) or any(x != 0 for x in pattern[:dense_layers]):
                unsupported["--moe-layer-freq"] = (
                    "dense and MoE layers interleaved; planner models the dense layers first"
                )
    shared = args.int("--moe-shared-expert-intermediate-size")
    expert_ffn = args.need_int("--moe-ffn-hidden-size", ffn)
    try:
        return MoESpec(
            experts=experts,
            top_k=args.need_int("--moe-router-topk", 2),
            expert_ffn=expert_ffn,
            # Megatron builds the shared experts as one MLP of this width; one expert of it counts the same (as
            # the catalog states one: no width where it is the routed experts')
            shared_experts=1 if shared else 0,
            shared_expert_ffn=shared if shared != expert_ffn else None,
            dense_layers=dense_layers,
        )
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, "Megatron-LM arguments (--num-experts)")) from exc


def _window(args: _Args, layers: int, unsupported: dict[str, str]) -> tuple[int | None, int | None]:
    """(sliding_window, window_layers) from --window-size (left, right), a query seeing `left` keys before itself
    (Transformer Engine's window_size), and --window-attn-skip-freq N: every N-th layer attends fully
    (megatron/core/transformer/utils.py is_layer_window_attention)."""
    raw = args.raw("--window-size")
    if raw is None:
        return None, None
    sides = [int(n) for n in re.findall(r"-?\d+", raw)]
    if len(sides) != 2 or sides[0] < 0 or sides[1] != 0:
        unsupported["--window-size"] = f"{raw}: only a causal window (left, 0) is modelled; timed as full attention"
        return None, None
    window = sides[0] + 1
    freq = args.raw("--window-attn-skip-freq")
    if freq is None:
        return window, None
    if freq.strip().isdigit() and int(freq) > 0:
        return window, layers - layers // int(freq)
    unsupported["--window-attn-skip-freq"] = f"{freq}: a per-layer pattern is not read; every layer is windowed"
    return window, None


def _mla(args: _Args, notes: list[str]) -> MLASpec | None:
    """Multi-latent attention's shape from its flags, Megatron's defaults where one is not given
    (megatron/training/arguments.py: q_lora_rank None = a full-rank query projection, kv_lora_rank 32, qk_head_dim
    128, qk_pos_emb_head_dim 64, v_head_dim 128). Megatron builds the latent RMSNorms only with --qk-layernorm;
    planner counts them always (q_lora_rank + kv_lora_rank weights a layer)."""
    if not args.switch("--multi-latent-attention"):
        return None
    if not args.switch("--qk-layernorm"):
        notes.append("--multi-latent-attention without --qk-layernorm: Megatron builds no latent RMSNorms, which "
                     "planner counts (q_lora_rank + kv_lora_rank weights a layer)")
    try:
        return MLASpec(
            q_lora_rank=args.int("--q-lora-rank"), kv_lora_rank=args.need_int("--kv-lora-rank", 32),
            qk_nope_head_dim=args.need_int("--qk-head-dim", 128),
            qk_rope_head_dim=args.need_int("--qk-pos-emb-head-dim", 64), v_head_dim=args.need_int("--v-head-dim", 128),
        )
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, "Megatron-LM arguments (--multi-latent-attention)")) from exc


def _model(
    args: _Args, tp: int, reference: ModelSpec | None, unsupported: dict[str, str], notes: list[str]
) -> ModelSpec | None:
    shape = ("--num-layers", "--hidden-size", "--num-attention-heads")
    given = [f for f in shape if f in args]
    if not given:
        return None
    if any(f in args for f in ("--heterogeneous-layers-config-path", "--hybrid-layer-pattern",
                               "--hybrid-override-pattern")):
        return None  # reported as unsupported by the caller; the model comes from --model
    missing = [f for f in shape if f not in args]
    if missing:
        raise InputError(f"Megatron-LM arguments: {', '.join(given)} given but {', '.join(missing)} missing")
    layers, hidden, heads = (args.need_int(f, 0) for f in shape)
    swiglu = args.switch("--swiglu") or args.switch("--quick-geglu")
    # validate_args: SwiGLU keeps 4h-MLP parameters, rounded down to a multiple of 64.
    ffn = args.need_int("--ffn-hidden-size", int(4 * hidden * 2 / 3 / 64) * 64 if swiglu else 4 * hidden)
    mla = _mla(args, notes)
    kv_channels = args.int("--kv-channels")
    if kv_channels is None and hidden % heads and mla is None:
        raise InputError(
            f"--hidden-size {hidden} is not divisible by --num-attention-heads {heads}: give --kv-channels"
        )
    head_dim = None if kv_channels is None or (hidden % heads == 0 and kv_channels == hidden // heads) else kv_channels
    if mla is not None:
        head_dim = None  # MLA's head widths are its own (qk_head_dim + qk_pos_emb_head_dim, v_head_dim)
    kv_heads = args.need_int("--num-query-groups", 1) if args.switch("--group-query-attention") else heads
    if mla is not None:
        kv_heads = heads  # every head has its own K and V, decompressed from the shared latent
    if "--num-query-groups" in args and not args.switch("--group-query-attention"):
        notes.append("--num-query-groups without --group-query-attention: Megatron ignores it (multi-head attention)")
    seq = args.int("--seq-length")
    max_seq = args.int("--max-position-embeddings", seq)
    if max_seq is None:
        raise InputError("Megatron-LM arguments: missing --max-position-embeddings (Megatron requires it)")

    norm = args.choice("--normalization", ("LayerNorm", "RMSNorm"), "LayerNorm")
    positions = ("learned_absolute", "rope", "relative", "none", "mrope", "yarn")
    position = args.choice("--position-embedding-type", positions, "learned_absolute")
    if args.switch("--use-rotary-position-embeddings"):
        position = "rope"
    if position == "relative":
        unsupported["--position-embedding-type"] = "relative position biases (T5) are not counted"
    learned = position == "learned_absolute" and not args.switch("--no-position-embedding")
    if args.switch("--disable-bias-linear"):
        bias = "qkv" if args.switch("--add-qkv-bias") else "none"
    else:
        bias = "all"  # add_bias_linear defaults on: q/k/v, output projection and both MLP matrices
    # --qk-layernorm without MLA: one norm of kv-channels on every head's query and key
    # (megatron/core/transformer/attention.py SelfAttention q_layernorm / k_layernorm)
    qk_norm = "head" if args.switch("--qk-layernorm") and mla is None else "none"
    window, window_layers = _window(args, layers, unsupported)
    # "learnable": a logit per head in every layer's softmax (dot_product_attention.py softmax_offset), gpt-oss's
    # sinks; "off-by-one" adds a fixed zero logit, no parameter
    softmax = args.choice("--softmax-type", ("vanilla", "off-by-one", "learnable"), "vanilla")
    if softmax == "off-by-one":
        unsupported["--softmax-type"] = "off-by-one: a fixed zero-logit sink with no parameter, timed as vanilla"
    if args.int("--mtp-num-layers", 0, minimum=0):
        unsupported["--mtp-num-layers"] = "multi-token-prediction layers are not modelled"

    vocab, where = _vocab(args, tp, reference)
    notes.append(where)
    fields = {
        "layers": layers, "hidden": hidden, "heads": heads, "kv_heads": None if kv_heads == heads else kv_heads,
        "head_dim": head_dim, "ffn_hidden": ffn, "vocab": vocab, "max_seq": max_seq,
        "mlp": "swiglu" if swiglu else "gelu", "norm": "rmsnorm" if norm == "RMSNorm" else "layernorm",
        "bias": bias, "position": "learned" if learned else "rope", "qk_norm": qk_norm,
        "tied_embeddings": not args.switch("--untie-embeddings-and-output-weights"),
        "moe": _moe(args, layers, ffn, unsupported), "mla": mla,
        "sliding_window": window, "window_layers": window_layers, "attention_sinks": softmax == "learnable",
    }
    try:
        spec = ModelSpec(
            name=reference.name if reference else "megatron", source=f"Megatron-LM arguments; {where}", **fields
        )
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, "Megatron-LM arguments")) from exc
    if reference is not None:
        differ = [
            f"{key} {getattr(spec, key)} ≠ {getattr(reference, key)}"
            for key in ("layers", "hidden", "heads", "n_kv_heads", "d_head", "ffn_hidden", "mlp", "norm", "bias",
                        "position", "tied_embeddings", "moe", "mla", "attention_sinks")
            if getattr(spec, key) != getattr(reference, key)
        ]
        if spec.position == "learned" and spec.max_seq != reference.max_seq:
            differ.append(f"max_seq {spec.max_seq} ≠ {reference.max_seq}")
        if differ:
            notes.append(f"the arguments describe another shape than {reference.name}: {'; '.join(differ)}")
    return spec


def _vocab(args: _Args, tp: int, reference: ModelSpec | None) -> tuple[int, str]:
    """The embedding rows Megatron allocates, and a sentence saying where the number comes from."""
    padded = args.int("--padded-vocab-size")
    if padded is not None:
        return padded, f"vocab {padded} from --padded-vocab-size"
    divisible = args.need_int("--make-vocab-size-divisible-by", 128)
    given = args.int("--vocab-size")
    if given is not None:
        tokens = given
        source = f"--vocab-size {given}"
        if args.raw("--tokenizer-type") == "NullTokenizer":
            tokens, source = given + 1, f"--vocab-size {given} + the NullTokenizer's end-of-document token"
    elif reference is not None:
        tokens, source = reference.vocab, f"the tokenizer of {reference.name} ({reference.vocab})"
    else:
        tokenizer = args.raw("--tokenizer-type") or "the tokenizer"
        raise InputError(
            f"Megatron-LM arguments: the vocabulary comes from {tokenizer}'s files, which are not in the arguments: "
            "give --vocab-size, or name the model (--model) whose tokenizer the run uses"
        )
    vocab = padded_vocab(tokens, divisible, tp)
    return vocab, f"vocab {tokens} from {source}, padded to {vocab} (multiple of {divisible} × TP {tp})"


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


# Megatron-Core's layer characters (megatron/core/transformer/pipeline_parallel_layer_layout.py): embedding,
# transformer (decoder) layer, multi-token-prediction layer, loss
LAYOUT_CHARS = frozenset("EtmL")


@functools.lru_cache(maxsize=64)  # read once for the virtual stages and once for the split
def pipeline_layout_from_str(text: str) -> tuple[tuple[int, ...], int]:
    """(decoder layers per virtual stage, MTP layers) of a --pipeline-model-parallel-layout string, read as
    Megatron-Core's `parse_str_to_list` reads it: commas dropped, `(…)*n` then `x*n` unrolled, stages split at
    `|` ("Et*3|(tt|)*29,m|L"); the embedding must open the first stage and the loss close the last."""
    flag = "--pipeline-model-parallel-layout"
    s = text.replace(",", "").replace(" ", "").strip("'\"")
    for pattern in (r"\(([^()]+)\)\*(\d+)", r"(.)\*(\d+)"):
        for _ in range(MAX_LAYERS):
            m = re.search(pattern, s)
            if m is None:
                break
            times = int(m.group(2))
            if times > MAX_LAYERS or len(m.group(1)) * times > 16 * MAX_LAYERS:
                raise InputError(f"{flag}: repetition *{times} is longer than any model")
            s = s[:m.start()] + m.group(1) * times + s[m.end():]
    stages = s.split("|")
    bad = set(s) - LAYOUT_CHARS - {"|"}
    if bad or not stages or len(stages) > MAX_LAYERS:
        raise InputError(f"{flag}: {text!r} is not a layout of E, t, m and L stages separated by | "
                         f"(unexpected {''.join(sorted(bad)) or 'length'})")
    if "E" not in stages[0] or "L" not in stages[-1] or s.count("E") != 1 or s.count("L") != 1:
        raise InputError(f"{flag}: {text!r} must hold the embedding (E) in its first stage and the loss (L) in its "
                         "last, once each")
    return tuple(st.count("t") for st in stages), s.count("m")


def pipeline_layout_str(chunks: tuple[int, ...]) -> str:
    """A --pipeline-model-parallel-layout string for decoder layers per virtual stage."""
    parts = ["t" * n for n in chunks]
    parts[0], parts[-1] = "E" + parts[0], parts[-1] + "L"
    return "|".join(parts)


def _vpp(args: _Args, layers: int | None, pp: int) -> int:
    layout_text = args.raw("--pipeline-model-parallel-layout")
    if layout_text is not None:  # the layout's stages are pp·vpp
        n_stages = len(pipeline_layout_from_str(layout_text)[0])
        if n_stages % pp:
            raise InputError(f"--pipeline-model-parallel-layout: {n_stages} stages are not a multiple of "
                             f"--pipeline-model-parallel-size {pp}")
        return n_stages // pp
    per_virtual = args.int("--num-layers-per-virtual-pipeline-stage")
    if per_virtual is not None:
        if layers is None:
            raise InputError("--num-layers-per-virtual-pipeline-stage: needs --num-layers to derive the virtual stages")
        # validate_args counts the embedding and the loss as layers when their split flags are set
        units = (layers + args.switch("--account-for-embedding-in-pipeline-split")
                 + args.switch("--account-for-loss-in-pipeline-split"))
        if units % pp or (units // pp) % per_virtual:
            raise InputError(
                f"--num-layers-per-virtual-pipeline-stage {per_virtual} does not divide the {units} / {pp} "
                "layers of a pipeline stage (--num-layers, with the embedding and loss where their "
                "--account-for-*-in-pipeline-split flags count them, / --pipeline-model-parallel-size)"
            )
        return units // pp // per_virtual
    per_rank = args.int("--num-virtual-stages-per-pipeline-rank")
    return per_rank or args.need_int("--virtual-pipeline-model-parallel-size", 1)


@dataclass(frozen=True)
class _Recompute:
    mode: Recompute = "none"
    modules: list[RecomputeModule] | None = None
    num_layers: int | None = None
    method: Literal["uniform", "block"] = "block"


MODULES: tuple[RecomputeModule, ...] = ("core_attn", "mlp", "moe_act", "layernorm", "mla_up_proj", "moe",
                                        "shared_experts")


def _recompute(args: _Args, layers: int | None, pp: int, vpp: int, split: PipelineSplit,
               unsupported: dict[str, str]) -> _Recompute:
    granularity = args.choice("--recompute-granularity", ("full", "selective"))
    method = args.choice("--recompute-method", ("uniform", "block"))
    count = args.int("--recompute-num-layers", None, minimum=0)
    if args.switch("--checkpoint-activations"):  # the 2021 spelling of full, uniform, --checkpoint-num-layers
        granularity, method = granularity or "full", method or "uniform"
        count = count if count is not None else args.int("--checkpoint-num-layers")
    if args.switch("--recompute-activations"):  # validate_args turns it into selective
        granularity = "selective"
    if granularity is None:
        return _Recompute()
    if granularity == "selective":
        modules = args.values.get("--recompute-modules")
        if not isinstance(modules, list):
            return _Recompute("selective")
        known = [m for m in modules if m in MODULES]
        other = [m for m in modules if m not in MODULES]
        if other:
            unsupported["--recompute-modules"] = f"recomputing {', '.join(other)} is not modelled"
        return _Recompute("selective", known or None)
    if args.switch("--distribute-saved-activations"):
        unsupported["--distribute-saved-activations"] = "checkpointed inputs split over TP ranks are not modelled"
    count = 1 if count is None else count
    if count == 0:
        return _Recompute()
    if method == "block":
        chunk = None
        if layers:
            got = virtual_stage_layers(layers, pp, vpp, split)
            chunk = max(got) if not isinstance(got, str) else None
        # a block count covering every layer of a model chunk is plain full recompute
        return _Recompute("full", num_layers=count if chunk is None or count < chunk else None)
    if count == 1:
        return _Recompute("full")  # every layer its own checkpoint: plain full recompute
    return _Recompute("full", num_layers=count, method="uniform")


def _zero(args: _Args, unsupported: dict[str, str]) -> Literal[0, 1, 2, 3]:
    if args.switch("--use-torch-fsdp2"):
        return 3
    if args.switch("--use-megatron-fsdp") or args.switch("--use-custom-fsdp"):
        strategies = {"no_shard": 0, "optim": 1, "optim_grads": 2, "optim_grads_params": 3}
        strategy = args.choice("--data-parallel-sharding-strategy", tuple(strategies))
        if strategy is None:
            unsupported["--use-megatron-fsdp"] = (
                "without --data-parallel-sharding-strategy the sharding depends on the Megatron version; taken as 3"
            )
            return 3
        return strategies[strategy]  # type: ignore[return-value]
    return 1 if args.switch("--use-distributed-optimizer") else 0


def _precision(args: _Args, unsupported: dict[str, str]) -> tuple[Precision, bool]:
    """The GEMM dtype, and whether gradients accumulate in an fp32 main_grad buffer."""
    if args.switch("--bf16") and args.switch("--fp16"):
        raise InputError("--bf16 and --fp16 are both given (Megatron accepts one)")
    fp8 = args.choice("--fp8-format", ("e4m3", "hybrid"))
    if args.switch("--fp16"):
        # validate_args turns on fp32 accumulation for bf16 only; fp16 keeps fp16 gradient buffers.
        return ("fp8" if fp8 else "fp16"), args.switch("--accumulate-allreduce-grads-in-fp32")
    if not args.switch("--bf16"):
        unsupported["--bf16"] = "neither --bf16 nor --fp16: fp32 training is not modelled; taken as bf16"
    bf16_grads = args.switch("--grad-reduce-in-bf16") or (
        args.switch("--use-precision-aware-optimizer")
        and args.choice("--main-grads-dtype", ("fp32", "bf16"), "fp32") == "bf16")
    return ("fp8" if fp8 else "bf16"), not bf16_grads


def _optimizer_state(args: _Args, precision: Precision) -> tuple[MasterWeights, MomentDtype]:
    """The master copy and moment dtype of Megatron-Core's precision-aware optimizer (megatron/core/optimizer/
    distrib_optimizer.py: with bf16 parameters it keeps only the 16-bit remainder of an fp32 master unless
    --no-store-param-remainders); without --use-precision-aware-optimizer, Megatron keeps everything fp32."""
    dtypes = {flag: args.choice(flag, choices, "fp32") for flag, choices in (
        ("--main-params-dtype", ("fp32", "fp16")), ("--exp-avg-dtype", ("fp32", "fp16", "bf16", "fp8")),
        ("--exp-avg-sq-dtype", ("fp32", "fp16", "bf16", "fp8")), ("--main-grads-dtype", ("fp32", "bf16")))}
    if not args.switch("--use-precision-aware-optimizer"):
        narrowed = [flag for flag, dtype in dtypes.items() if dtype != "fp32"]
        if narrowed:
            raise InputError(f"{narrowed[0]} {dtypes[narrowed[0]]}: Megatron needs --use-precision-aware-optimizer "
                             "for an optimizer state other than fp32")
        return "fp32", "fp32"
    if dtypes["--exp-avg-dtype"] != dtypes["--exp-avg-sq-dtype"]:
        raise InputError(f"--exp-avg-dtype {dtypes['--exp-avg-dtype']} and --exp-avg-sq-dtype "
                         f"{dtypes['--exp-avg-sq-dtype']}: planner models both Adam moments in one dtype")
    moments = cast(MomentDtype, dtypes["--exp-avg-dtype"])
    if precision != "fp16" and not args.switch("--no-store-param-remainders"):
        return "remainder", moments
    return ("fp16" if dtypes["--main-params-dtype"] == "fp16" else "fp32"), moments


def _optimizer(args: _Args, unsupported: dict[str, str]) -> tuple[Optimizer, bool]:
    name = args.raw("--optimizer") or "adam"
    offload = args.switch("--optimizer-cpu-offload")
    if offload and args.float("--optimizer-offload-fraction", 1.0) < 1.0:
        unsupported["--optimizer-offload-fraction"] = "a partial optimizer offload is not modelled; taken as all of it"
    if name == "sgd":
        return "sgd", offload
    if name != "adam":
        unsupported["--optimizer"] = f"{name!r} is not modelled; its state is taken as Adam's"
    # Megatron's adam is decoupled weight decay (apex/TE FusedAdam in AdamW mode, or torch AdamW).
    return "adamw", offload


def _attention(args: _Args) -> Literal["flash", "eager"]:
    backend = args.choice("--attention-backend", ("auto", "flash", "fused", "unfused", "local"))
    if args.switch("--use-flash-attn") or backend in ("auto", "flash", "fused"):
        return "flash"
    if backend in ("unfused", "local") or args.choice("--transformer-impl", ("local", "transformer_engine")) == "local":
        return "eager"
    return "flash"  # Transformer Engine, the default implementation, picks a flash or fused kernel


def parse_megatron_args(
    text_or_argv: str | Sequence[str], *, model: ModelSpec | None = None, env: Mapping[str, str] | None = None
) -> MegatronConfig:
    """Read Megatron-LM arguments: a launch-script fragment, the quoted argument string, or an argv list.

    `model` is the model the run trains (planner's --model): its vocabulary stands in for the tokenizer's
    when no vocab flag is given, and a shape that differs from it is noted. `env` gives values for shell
    variables the text uses without setting. Raises InputError naming the flag for a missing or malformed
    value, a needed value left as an unexpanded $VAR, or a shape without a vocabulary.
    """
    words = list(text_or_argv) if not isinstance(text_or_argv, str) else _words(text_or_argv)
    args = _Args()
    lists: dict[str, list[str]] = {"ignored": [], "unknown": [], "launch": []}
    _collect(words, dict(env or {}), env or {}, args, lists)
    unsupported: dict[str, str] = {}
    notes: list[str] = []

    tp = args.need_int("--tensor-model-parallel-size", 1)
    pp = args.need_int("--pipeline-model-parallel-size", 1)
    cp = args.need_int("--context-parallel-size", 1)
    ep = args.need_int("--expert-model-parallel-size", 1)
    # --expert-tensor-parallel-size (default: tp); below tp, EP folds over TP·DP·CP (layout.expert_tp)
    etp = args.int("--expert-tensor-parallel-size")
    if etp == tp:
        etp = None
    first = args.int("--decoder-first-pipeline-num-layers")
    last = args.int("--decoder-last-pipeline-num-layers")
    layers = args.int("--num-layers")
    if last is not None and first is None and layers is not None and last == last_stage_layers(layers, pp):
        last = None  # planner's default for a depth that does not divide the layers
    split = PipelineSplit("megatron", args.switch("--account-for-embedding-in-pipeline-split"),
                          args.switch("--account-for-loss-in-pipeline-split"), first, last)
    layout_text = args.raw("--pipeline-model-parallel-layout")
    chunks: tuple[int, ...] | None = None
    if layout_text is not None:
        chunks, mtp = pipeline_layout_from_str(layout_text)
        split = PipelineSplit("megatron", chunks=chunks)  # the layout replaces the other split flags
        if mtp:
            notes.append(f"--pipeline-model-parallel-layout: {mtp} MTP layer(s) are not modelled")
    for flag, why in (
        ("--heterogeneous-layers-config-path", "per-layer shapes are not read; give the model with --model"),
        ("--use-tp-pp-dp-mapping", "ranks in TP → PP → DP order are placed as TP → CP → DP → PP"),
        ("--first-last-layers-bf16", "the first and last layers' GEMMs run in bf16; every layer is timed in fp8"),
        ("--moe-expert-capacity-factor", "token dropping and padding to an expert capacity are not modelled"),
        ("--hybrid-layer-pattern", "hybrid (Mamba, linear-attention) layers are not read; give the model with --model"),
        ("--hybrid-override-pattern", "hybrid (Mamba) layers are not read; give the model with --model"),
        ("--linear-attention-freq", "linear-attention layers are not modelled (counted as softmax attention)"),
        ("--num-distributed-optimizer-instances", "the optimizer state is taken as sharded over all of DP, not within "
         "each of its instances"),
        ("--outer-dp-sharding-strategy", "Megatron-FSDP's hybrid sharding is taken as sharding over all of DP"),
        ("--keep-fp8-transpose-cache", "Megatron-FSDP's kept fp8 transpose cache is not counted"),
        ("--fp4-param-gather", "FP4 parameters are not modelled"),
        ("--te-precision-config-file", "per-module precision overrides are not read"),
        ("--yaml-cfg", "arguments in a YAML file are not read"),
        ("--freeze-all-layers", "frozen layers (no gradients or optimizer state) are not modelled"),
        ("--fp16-lm-cross-entropy", "the 16-bit loss is sized as Megatron's fp32 one"),
    ):
        if flag in args:
            unsupported[flag] = why
    # --cpu-offloading-num-layers N > 0 turns --cpu-offloading on (megatron/training/arguments.py); its default is
    # 0, and Transformer Engine then offloads no layer (cpu_offload.py OffloadSynchronizer)
    offload_layers = args.int("--cpu-offloading-num-layers") or None
    act_offload = offload_layers is not None
    if args.switch("--fine-grained-activation-offloading"):
        # megatron/core/transformer/transformer_config.py offload_modules: the inputs of the listed submodules only
        unsupported["--fine-grained-activation-offloading"] = (
            "offloads the inputs of --offload-modules only; planner keeps those activations on the GPU")
    if args.switch("--cpu-offloading") and offload_layers is None:
        notes.append("--cpu-offloading without --cpu-offloading-num-layers offloads no layer (Megatron's count "
                     "defaults to 0)")
    graph_impl = args.choice("--cuda-graph-impl", ("none", "local", "transformer_engine", "full_iteration"))
    cuda_graphs = (args.switch("--enable-cuda-graph") or args.switch("--external-cuda-graph")
                   or graph_impl not in (None, "none"))

    # --cp-comm-type (one for all layers, or one per layer): Transformer Engine's context-parallel exchange;
    # p2p, the default, is planner's ring (megatron/training/arguments.py)
    comm_types = args.values.get("--cp-comm-type")
    kinds = comm_types if isinstance(comm_types, list) else ["p2p"]
    if bad := [k for k in kinds if k not in CP_COMM_TYPES]:
        raise InputError(f"--cp-comm-type: {bad[0]!r} is not one of {', '.join(CP_COMM_TYPES)}")
    # one exchange on every layer: Transformer Engine's all-to-all, all-gather or a2a+p2p (over the two levels of
    # --hierarchical-context-parallel-sizes, all-to-all first: megatron/core/parallel_state.py)
    exchange = EXCHANGE_OF[kinds[0]] if cp > 1 and all(k == kinds[0] for k in kinds) else None
    exchange = None if exchange == "ring" else exchange
    a2a_size = None
    if exchange == "hierarchical":
        levels = _hierarchical_cp_sizes(args, cp)
        if levels is None or len(levels) != 2 or levels[0] == 1:
            exchange = None
        else:
            a2a_size = levels[0]
    if cp > 1 and exchange is None and (other := sorted(set(kinds) - {"p2p"})):
        unsupported["--cp-comm-type"] = (
            f"{', '.join(other)}: per-layer mixes of exchanges, and a2a+p2p without two levels of "
            "--hierarchical-context-parallel-sizes (all-to-all, then p2p), are timed as Transformer Engine's p2p ring "
            "(one type on every layer: a2a is implementation.cp_exchange ulysses, all_gather te_allgather, a2a+p2p "
            "hierarchical)")
    # --moe-token-dispatcher-type (default allgather); flex runs DeepEP/HybridEP, as --moe-enable-deepep did
    dispatcher = args.choice("--moe-token-dispatcher-type", ("allgather", "alltoall", "flex", "alltoall_seq"),
                             "flex" if args.switch("--moe-enable-deepep") else "allgather")
    # --cross-entropy-loss-fusion with --cross-entropy-fusion-impl te runs Transformer Engine's parallel
    # cross-entropy on the 16-bit logits (megatron/core/models/common/language_module/language_module.py);
    # the native fusion keeps Megatron's fp32 copy
    ce_impl = args.choice("--cross-entropy-fusion-impl", ("native", "te"), "native")
    fused_te = args.switch("--cross-entropy-loss-fusion") and ce_impl == "te"
    cross_entropy = "fused_inplace" if fused_te else None
    spec = _model(args, tp, model, unsupported, notes)
    trained = spec if spec is not None else model  # the arguments' shape, else the model given beside them
    layers = spec.layers if spec else args.int("--num-layers") or (model.layers if model else None)
    if offload_layers is not None and layers is not None and offload_layers >= layers:
        raise InputError(f"--cpu-offloading-num-layers: {offload_layers} must be below --num-layers ({layers}): "
                         "Transformer Engine keeps the last layer's activations on the GPU")
    vpp = _vpp(args, layers, pp)
    sequence_parallel = args.switch("--sequence-parallel")
    if sequence_parallel and tp == 1:
        sequence_parallel = False
        notes.append("--sequence-parallel with TP 1: Megatron turns it off")
    precision, fp32_grads = _precision(args, unsupported)
    optimizer, offload = _optimizer(args, unsupported)
    master_weights, moment_dtype = _optimizer_state(args, precision)
    hidden_dropout = args.float("--hidden-dropout", 0.1)
    attention_dropout = args.float("--attention-dropout", 0.1)
    for flag, p in (("--hidden-dropout", hidden_dropout), ("--attention-dropout", attention_dropout)):
        if not 0 <= p < 1:
            raise InputError(f"{flag}: must be in [0, 1), got {p}")
    attention = _attention(args)
    if attention == "eager" and (hidden_dropout > 0) != (attention_dropout > 0):
        unsupported["--attention-dropout"] = (
            f"attention dropout {attention_dropout} with hidden dropout {hidden_dropout}: planner applies one rate "
            "to both masks"
        )
    rc = _recompute(args, layers, pp, vpp, split, unsupported)
    fp8_recipe = None
    if precision == "fp8":
        named = args.choice("--fp8-recipe", ("tensorwise", "delayed", "mxfp8", "blockwise", "custom"))
        if named == "custom":
            unsupported["--fp8-recipe"] = "a custom quantizer is not modelled; taken as delayed scaling"
        # no --fp8-recipe: Megatron's default (delayed), which is also the preset's (planner.model.presets)
        fp8_recipe = {"tensorwise": "current", "delayed": "delayed", "mxfp8": "mxfp8", "blockwise": "blockwise",
                      "custom": "delayed"}.get(named) if named else None
    elif "--fp8-param-gather" in args:
        notes.append("--fp8-param-gather without --fp8-format: Megatron rejects it (fp8_param needs fp8)")
    return MegatronConfig(
        model=spec, tp=tp, pp=pp, vpp=vpp, cp=cp, ep=ep, zero=_zero(args, unsupported),
        recompute=rc.mode, recompute_modules=rc.modules, recompute_num_layers=rc.num_layers,
        recompute_method=rc.method, fp8_recipe=fp8_recipe,  # type: ignore[arg-type]
        fp8_param_gather=precision == "fp8" and args.switch("--fp8-param-gather"),
        account_for_embedding_in_pipeline_split=split.embedding_counts,
        account_for_loss_in_pipeline_split=split.loss_counts,
        pipeline_first_stage_layers=None if chunks else first, pipeline_last_stage_layers=None if chunks else last,
        pipeline_layout=chunks, activation_offload=act_offload, activation_offload_layers=offload_layers,
        cuda_graphs=cuda_graphs,
        # --cuda-graph-impl full_iteration captures the whole forward and backward (megatron/training/training.py)
        cuda_graph_scope="step" if graph_impl == "full_iteration" else None,
        # Megatron's FSDP2 reshards after forward unless told not to (arguments.py torch_fsdp2_reshard_after_forward)
        reshard_after_forward=False if args.switch("--torch-fsdp2-no-reshard-after-forward") else None,
        moe_token_dispatcher=("alltoall" if dispatcher == "alltoall_seq" else dispatcher)  # type: ignore[arg-type]
        if trained is not None and trained.moe is not None else None,
        expert_tp=etp, cross_entropy=cross_entropy,  # type: ignore[arg-type]
        cp_exchange=exchange, cp_a2a_size=a2a_size,
        sequence_parallel=sequence_parallel,
        micro_batch=args.int("--micro-batch-size"), global_batch=args.int("--global-batch-size"),
        precision=precision, fp32_grad_accumulation=fp32_grads, optimizer=optimizer, offload_optimizer=offload,
        master_weights=master_weights, moment_dtype=moment_dtype, seq=args.int("--seq-length"),
        dropout=hidden_dropout, attention_dropout=attention_dropout,
        attention=attention, ignored=lists["ignored"], unknown=lists["unknown"], unsupported=unsupported,
        notes=notes, launched_gpus=_launched_gpus(lists["launch"]),
    )


def _optimizer_state_flags(layout: Layout) -> list[str]:
    """Megatron-Core's precision-aware optimizer flags for the layout's master copy and moments (and the CPU
    offload, which needs it); none when everything is fp32 and on the GPU."""
    master, moments = layout.master_weights, layout.moment_dtype
    if master == "none":
        raise InputError("master_weights none: Megatron-Core always keeps a master copy (fp32, its remainder or fp16)")
    if not layout.offload_optimizer and master == "fp32" and moments == "fp32":
        return []
    flags = ["--optimizer-cpu-offload"] if layout.offload_optimizer else []
    flags.append("--use-precision-aware-optimizer")
    if master == "fp16":
        flags.append("--main-params-dtype fp16")
    if master in ("fp32", "fp16") and layout.precision != "fp16":
        flags.append("--no-store-param-remainders")  # Megatron's default keeps only the remainder of bf16 params
    if moments != "fp32":
        flags += [f"--exp-avg-dtype {moments}", f"--exp-avg-sq-dtype {moments}"]
    return flags


def _launched_gpus(launch: list[str]) -> int | None:
    """GPUs the launcher starts (torchrun --nproc_per_node × --nnodes, nnodes 1 when omitted); None when the
    script does not say it in plain integers (a $VARIABLE, an elastic range 1:4, nproc 'gpu')."""
    given = dict(item.split("=", 1) for item in launch)
    nproc, nnodes = given.get("nproc", ""), given.get("nnodes", "1")
    if not (nproc.isdigit() and nnodes.isdigit()) or len(nproc) + len(nnodes) > 12:
        return None
    return int(nproc) * int(nnodes)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def _model_flags(m: ModelSpec, tp: int) -> list[str]:
    refuse = {
        "bias": m.bias == "attention" and "q/k/v/o biases without MLP biases have no Megatron-LM flag",
        "parallel_block": m.parallel_block and "parallel attention/MLP blocks have no Megatron-LM flag",
        "embedding_norm": m.embedding_norm and "a norm after the embedding has no Megatron-LM flag",
        "position_offset": m.position_offset > 0 and "extra position rows have no Megatron-LM flag",
    }
    for key, why in refuse.items():
        if why:
            raise InputError(f"model {m.name}: {key}: {why}")
    divisible = 128
    flags = [
        f"# vocabulary: {m.vocab} from the tokenizer; Megatron pads it to {padded_vocab(m.vocab, divisible, tp)} "
        f"(a multiple of --make-vocab-size-divisible-by {divisible} × TP {tp})",
        f"--num-layers {m.layers}",
        f"--hidden-size {m.hidden}",
        f"--ffn-hidden-size {m.ffn_hidden}",
        f"--num-attention-heads {m.heads}",
    ]
    if m.mla is not None:
        # the latent RMSNorms planner counts need --qk-layernorm (megatron/core/transformer/multi_latent_attention.py)
        x = m.mla
        flags += ["--multi-latent-attention", "--qk-layernorm", f"--kv-lora-rank {x.kv_lora_rank}",
                  f"--qk-head-dim {x.qk_nope_head_dim}", f"--qk-pos-emb-head-dim {x.qk_rope_head_dim}",
                  f"--v-head-dim {x.v_head_dim}"] + ([f"--q-lora-rank {x.q_lora_rank}"] if x.q_lora_rank else [])
    elif m.n_kv_heads != m.heads:
        flags += ["--group-query-attention", f"--num-query-groups {m.n_kv_heads}"]
    if m.qk_norm == "head":
        flags.append("--qk-layernorm")
    if m.attention_sinks:
        flags.append("--softmax-type learnable")  # Megatron-Core 0.16 and newer (TransformerConfig.softmax_type)
    if m.sliding_window is not None:
        flags.append(f'--window-size "({m.sliding_window - 1}, 0)"')
        if m.window_layers is not None:
            freq = next((n for n in range(1, m.layers + 1) if m.layers - m.layers // n == m.window_layers), None)
            if freq is None:
                raise InputError(f"model {m.name}: window_layers {m.window_layers}: Megatron-LM windows all layers "
                                 f"but every N-th (--window-attn-skip-freq); no N leaves {m.window_layers} of "
                                 f"{m.layers}")
            flags.append(f"--window-attn-skip-freq {freq}")
    if m.head_dim is not None and m.mla is None:
        flags.append(f"--kv-channels {m.head_dim}")
    flags.append(f"--max-position-embeddings {m.max_seq}")
    if m.mlp == "swiglu":
        flags.append("--swiglu")
    flags.append(f"--normalization {'RMSNorm' if m.norm == 'rmsnorm' else 'LayerNorm'}")
    flags.append(f"--position-embedding-type {'rope' if m.position == 'rope' else 'learned_absolute'}")
    if not m.tied_embeddings:
        flags.append("--untie-embeddings-and-output-weights")
    if m.bias in ("none", "qkv"):
        flags.append("--disable-bias-linear")
    if m.bias == "qkv":
        flags.append("--add-qkv-bias")
    if m.moe is not None:
        e = m.moe
        flags += [f"--num-experts {e.experts}", f"--moe-router-topk {e.top_k}", f"--moe-ffn-hidden-size {e.expert_ffn}"]
        if e.shared_experts:
            flags.append(f"--moe-shared-expert-intermediate-size {e.shared_experts * e.shared_ffn}")
        if e.dense_layers:
            pattern = f"([0]*{e.dense_layers}+[1]*{m.layers - e.dense_layers})"
            flags.append(f"--moe-layer-freq {shlex.quote(pattern)}")
    return flags


def megatron_args_from_layout(
    model: ModelSpec | None, layout: Layout, seq: int, implementation: Implementation | None = None, *,
    overlap_grad: bool = True, overlap_param: bool = True,
) -> str:
    """Paste-ready Megatron-LM arguments, one flag per line joined by ` \\` continuations.

    With a model, the shape flags come first (a comment line above them gives the padded vocabulary,
    which Megatron takes from the tokenizer). Dropout is written explicitly because Megatron's default
    is 0.1 and planner's is the implementation's (0.0 unless given). InputError for what Megatron-LM
    cannot express: an 8-bit optimizer, or a model feature without a flag.
    """
    impl = implementation or Implementation()
    lines = _model_flags(model, layout.tp) if model is not None else []
    lines.append(f"--seq-length {seq}")
    if model is None:
        lines.append(f"--max-position-embeddings {seq}")
    lines += [f"--tensor-model-parallel-size {layout.tp}", f"--pipeline-model-parallel-size {layout.pp}"]
    first, last = layout.pipeline_first_stage_layers, layout.pipeline_last_stage_layers
    counted = layout.account_for_embedding_in_pipeline_split or layout.account_for_loss_in_pipeline_split
    if layout.pipeline_layout is not None:
        lines.append(f"--pipeline-model-parallel-layout {shlex.quote(pipeline_layout_str(layout.pipeline_layout))}")
    elif model is not None and layout.pp > 1 and model.layers % layout.pp and first is last is None and not counted:
        last = last_stage_layers(model.layers, layout.pp)
    if first is not None:
        lines.append(f"--decoder-first-pipeline-num-layers {first}")
    if last is not None:
        lines.append(f"--decoder-last-pipeline-num-layers {last}")
    if layout.account_for_embedding_in_pipeline_split:
        lines.append("--account-for-embedding-in-pipeline-split")
    if layout.account_for_loss_in_pipeline_split:
        lines.append("--account-for-loss-in-pipeline-split")
    if layout.vpp > 1 and layout.pipeline_layout is None:  # a layout's stages say the chunks themselves
        # Megatron derives chunks from layers per chunk only for even splits; uneven ones name the chunk count
        units = (model.layers + layout.account_for_embedding_in_pipeline_split
                 + layout.account_for_loss_in_pipeline_split) if model is not None else 0
        if model is not None and first is None and last is None and units % (layout.pp * layout.vpp) == 0:
            lines.append(f"--num-layers-per-virtual-pipeline-stage {units // (layout.pp * layout.vpp)}")
        else:
            lines.append(f"--num-virtual-stages-per-pipeline-rank {layout.vpp}")
    if layout.cp > 1:
        lines.append(f"--context-parallel-size {layout.cp}")
        if impl.cp_exchange in ("allgather", "alltoall"):
            raise InputError(f"cp_exchange {impl.cp_exchange}: that is PyTorch's context parallelism; Megatron-LM "
                             "exchanges K/V by Transformer Engine's ring (p2p), all-to-all (cp_exchange ulysses), "
                             "all-gather (cp_exchange te_allgather) or a2a+p2p (cp_exchange hierarchical)")
        lines += cp_exchange_args(impl, layout.cp)
    if layout.ep > 1:
        lines.append(f"--expert-model-parallel-size {layout.ep}")
    if layout.expert_tp is not None:
        lines.append(f"--expert-tensor-parallel-size {layout.expert_tp}")
    if model is not None and model.moe is not None:
        lines.append(f"--moe-token-dispatcher-type {impl.moe_token_dispatcher or DEFAULT_TOKEN_DISPATCHER}")
    if layout.sequence_parallel:
        lines.append("--sequence-parallel")
    if layout.zero == 1:
        lines.append("--use-distributed-optimizer")
    elif layout.zero >= 2:
        strategy = "optim_grads" if layout.zero == 2 else "optim_grads_params"
        lines += ["--use-megatron-fsdp", f"--data-parallel-sharding-strategy {strategy}"]
    if layout.dp * layout.cp > 1 and overlap_grad:
        # the plan is timed with the gradient reduction under the backward and the sharded parameters gathered
        # under the forward, as planner's megatron-core preset runs them (unless the plan was timed without:
        # `overlap_grad`, `overlap_param`); Megatron does neither unless told (store_true flags;
        # --overlap-param-gather needs --overlap-grad-reduce, megatron/training/arguments.py)
        lines.append("--overlap-grad-reduce")
        if layout.zero >= 1 and overlap_param:
            lines.append("--overlap-param-gather")
    if layout.recompute == "selective":
        lines.append("--recompute-granularity selective")
        if impl.recompute_modules is not None:
            lines.append(f"--recompute-modules {' '.join(impl.recompute_modules)}")
    elif layout.recompute == "full":
        if layout.recompute_num_layers is None:
            lines += ["--recompute-granularity full", "--recompute-method uniform", "--recompute-num-layers 1"]
        else:
            lines += ["--recompute-granularity full", f"--recompute-method {layout.recompute_method}",
                      f"--recompute-num-layers {layout.recompute_num_layers}"]
    lines += [f"--micro-batch-size {layout.micro_batch}", f"--global-batch-size {layout.global_batch}"]
    if layout.precision == "fp16":
        lines.append("--fp16")
        if layout.fp32_grad_accumulation:
            lines.append("--accumulate-allreduce-grads-in-fp32")
    else:
        lines.append("--bf16")
        if layout.precision == "fp8":
            lines.append("--fp8-format hybrid")
            if impl.fp8_recipe is not None:
                lines.append(f"--fp8-recipe {'tensorwise' if impl.fp8_recipe == 'current' else impl.fp8_recipe}")
            if impl.fp8_param_gather:
                lines.append("--fp8-param-gather")
        if not layout.fp32_grad_accumulation:
            lines.append("--grad-reduce-in-bf16")
    if layout.optimizer == "adam8bit":
        raise InputError("optimizer adam8bit: Megatron-LM has no 8-bit optimizer flag")
    lines.append(f"--optimizer {'sgd' if layout.optimizer == 'sgd' else 'adam'}")
    lines += _optimizer_state_flags(layout)
    if layout.activation_offload_layers is not None:  # the count a search chose
        lines.append(f"--cpu-offloading-num-layers {layout.activation_offload_layers}")
    elif impl.activation_offload or impl.activation_offload_layers is not None:
        # Megatron offloads a count of layers, at most all but the last (Transformer Engine keeps that one)
        count = impl.activation_offload_layers or (model.layers - 1 if model is not None else None)
        if count is None or count < 1:
            raise InputError("activation offload of every layer: Megatron-LM offloads --cpu-offloading-num-layers "
                             "N < the model's layers; give implementation.activation_offload_layers")
        lines.append(f"--cpu-offloading-num-layers {count}")
    if impl.cuda_graphs:
        scope = "full_iteration" if impl.cuda_graph_scope == "step" else "transformer_engine"
        lines.append(f"--cuda-graph-impl {scope}")
    if impl.cross_entropy == "fused_inplace":
        lines += ["--cross-entropy-loss-fusion", "--cross-entropy-fusion-impl te"]
    lines += [f"--attention-dropout {impl.dropout}", f"--hidden-dropout {impl.dropout}"]
    if impl.attention == "eager":
        lines.append("--attention-backend unfused")
    comments = [line for line in lines if line.startswith("#")]
    flags = [line for line in lines if not line.startswith("#")]
    return "\n".join([*comments, " \\\n".join(flags)]) + "\n"
