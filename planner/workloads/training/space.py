"""The training layouts a job may run with, as a grid of integer columns.

The SKU-independent grid is built by crossing small axes (dp × micro-batch, cp, ep, tp × SP,
pp × vpp × ZeRO, recompute × partial recompute count × activation offload count) and filtering after each cross,
so it never exists in its unfiltered form.
Legality is decided by `layout_problems` itself, evaluated once per distinct combination of the fields
a rule reads and broadcast back, so the solver and `planner estimate` reject exactly the same layouts.
Per SKU, `runnable` adds what depends on the hardware (TP inside a node, GPU counts sold).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.model.pipeline import PipelineSplit, virtual_stage_layers
from planner.model.presets import PRESETS
from planner.workloads.grid import Columns, GpuCounts, Grid, Slices, axis, cross, divisors, rows, where
from planner.workloads.training.layout import RECOMPUTE, SEARCHED
from planner.workloads.training.legality import layout_problems

if TYPE_CHECKING:
    from planner.schema import Implementation
    from planner.workloads.training.workload import TrainingWorkload

# Context parallelism splits the sequence into 2·cp chunks for a load-balanced ring. Below ~1k tokens
# per rank the KV exchange of each ring step (fixed size) can no longer hide behind that step's
# attention compute (shrinking with the chunk), and no published run goes there; a layout that fixes
# cp is searched as given.
MIN_TOKENS_PER_CP_RANK = 1024
# The layout extras a scenario may fix whose legality rules read searched fields (planner.workloads.training.
# legality): dp_shard must divide dp·cp, recompute_num_layers needs full recompute, pipeline_layout has pp·vpp
# stages.
EXTRA_READS = {"dp_shard": ("dp", "cp"), "recompute_num_layers": ("recompute",), "pipeline_layout": ("pp", "vpp")}
# The implementation keys whose legality rules read searched fields: the loss chunks must divide a micro-batch's
# tokens per CP rank, the all-to-all exchanges each TP rank's heads over their group (within cp).
IMPL_READS = {"loss_chunks": ("micro_batch", "cp"), "cp_exchange": ("tp", "cp"), "cp_a2a_size": ("tp", "cp")}
# Frameworks whose full recompute may cover only part of each model chunk (Megatron-Core --recompute-method block
# --recompute-num-layers n, megatron/core/transformer/transformer_block.py _checkpointed_forward): the search tries
# n at powers of two below the chunk's layers, next to every layer (code 0). The others' partial schemes
# (torchtitan's every-k-th-layer checkpoint, DeepSpeed's checkpoint count) keep the same memory per recomputed
# layer but are not searched.
PARTIAL_RECOMPUTE_FRAMEWORKS = ("megatron-core",)
# Frameworks whose MoE layers may split experts otherwise than TP (Megatron-Core --expert-tensor-parallel-size,
# torchtitan expert_tensor_parallel_degree): their search tries the experts unsplit (expert_tp 1), EP folded over
# TP·DP·CP, next to the experts split like TP (code 0).
EXPERT_TP_FRAMEWORKS = ("megatron-core", "torchtitan")
# Frameworks whose activation offload count the search chooses where the scenario turns offload on without one
# (Megatron-Core --cpu-offloading-num-layers, Transformer Engine's cpu_offload: the first N layers, without
# pipelining or recompute): N at a quarter, half and three quarters of the layers and all but the last, next to
# none (code 0). Opt-in: on PCIe-attached GPUs the copies share the GPU's link with its NIC, which the time model
# does not charge (planner.model.perf._offload).
OFFLOAD_FRAMEWORKS = ("megatron-core",)



def axis_domains(w: TrainingWorkload, max_node: int) -> dict[str, list[int]]:
    """Values each layout field may take before legality: the space `solve` and the exhaustive
    enumerator both search. A field the scenario fixes has that one value."""
    m, seq, batch = w.model, w.seq, w.global_batch
    cps = [c for c in divisors(seq) if c == 1 or seq // c >= MIN_TOKENS_PER_CP_RANK]
    # splits that count the embedding and the loss as layers (Megatron's flags, torchtitan's default weights)
    counted = (bool(w.fixed.account_for_embedding_in_pipeline_split)
               + bool(w.fixed.account_for_loss_in_pipeline_split))
    units = m.layers + (2 if w.implementation.framework == "torchtitan" else counted)
    dom: dict[str, list[int]] = {
        "tp": [t for t in divisors(m.heads) if t <= max_node],
        # even splits, plus even depths up to 16 and power-of-two depths with a shorter last stage
        # (uneven splits, e.g. BLOOM's 70 layers on 12 stages, DeepSeek-V3's 61 on 16)
        "pp": sorted(set(divisors(m.layers)) | {p for p in range(2, 17, 2) if p <= m.layers}
                     | {2**i for i in range(m.layers.bit_length()) if 2**i <= m.layers} | set(divisors(units))),
        "vpp": sorted(set(divisors(m.layers)) | set(divisors(units))),
        "dp": divisors(batch),
        "cp": cps,
        "ep": divisors(m.moe.experts) if m.moe else [1],
        # FSDP has no optimizer-only sharding: its ZeRO-1 runs, and is timed and sized, as its ZeRO-2 (Stack.fsdp)
        "zero": [0, 2, 3] if PRESETS[w.implementation.framework].state in ("fsdp2", "fsdp1") else [0, 1, 2, 3],
        "recompute": list(range(len(RECOMPUTE))),
        "sequence_parallel": [0, 1],
        "micro_batch": divisors(batch),
        "expert_tp": [0, 1] if m.moe and w.implementation.framework in EXPERT_TP_FRAMEWORKS else [0],
        "recompute_num_layers": [0, *partial_recompute_counts(m.layers)] if partial_recompute_searched(w) else [0],
        "activation_offload_layers": [0, *offload_counts(m.layers)] if w.offload_search else [0],
    }
    if w.fixed.pipeline_layout is not None:  # an explicit layout has pp·vpp stages
        stages = len(w.fixed.pipeline_layout)
        dom["pp"] = [p for p in divisors(stages) if p <= m.layers]
        dom["vpp"] = divisors(stages)
    for f in SEARCHED:
        v = getattr(w.fixed, f, None)  # activation offload is fixed by the implementation's keys instead
        if v is not None:
            dom[f] = [RECOMPUTE.index(v) if f == "recompute" else int(v)]
    return dom


def partial_recompute_counts(layers: int) -> list[int]:
    """The partial recompute counts tried: powers of two below the model's layers (a count at or above a model
    chunk's layers recomputes all of it)."""
    return [2**i for i in range(layers.bit_length()) if 2**i < layers]


def offload_counts(layers: int) -> list[int]:
    """The activation offload counts tried: a quarter, half and three quarters of the layers, rounded up, and all
    but the last (Transformer Engine offloads at most layers − 1; NVIDIA's Llama 3 70B recipes offload 20 and 40
    of 80)."""
    return sorted(({-(-layers * k // 4) for k in (1, 2, 3)} | {layers - 1}) - {0, layers})


def offload_searched(impl: Implementation) -> bool:
    """Whether the search chooses the activation offload count: a framework that offloads a count of layers, offload
    on and no count given."""
    return impl.framework in OFFLOAD_FRAMEWORKS and impl.activation_offload and impl.activation_offload_layers is None


def partial_recompute_searched(w: TrainingWorkload) -> bool:
    """Whether the search tries recomputing only part of each model chunk: a framework that can, full recompute
    in the domain, and the block method (the uniform method reruns every layer whatever its group size)."""
    return (w.implementation.framework in PARTIAL_RECOMPUTE_FRAMEWORKS and w.fixed.recompute in (None, "full")
            and w.fixed.recompute_method != "uniform")


def redundant_recompute_layers(w: TrainingWorkload, dom: dict[str, list[int]], pp: Any, vpp: Any,
                               recompute_num_layers: Any) -> Any:
    """Where a partial recompute covers every layer of each model chunk of (pp, vpp), the full recompute that
    the domain also holds (code 0): one layout, searched once."""
    if 0 not in dom["recompute_num_layers"]:
        return np.zeros(np.shape(recompute_num_layers), dtype=bool)
    return recompute_num_layers >= chunk_layers(w, pp, vpp)


def chunk_layers(w: TrainingWorkload, pp: Any, vpp: Any) -> Any:
    """The most decoder layers one model chunk holds under the job's pipeline split (even where it is refused)."""
    split = w.template.recipe.split(PRESETS[w.implementation.framework].split)

    def one(p: int, v: int) -> int:
        return _most_layers(w.model.layers, p, v, split)

    if np.ndim(pp) == 0:
        return one(int(pp), int(vpp))
    shapes = {(int(p), int(v)) for p, v in zip(np.ravel(pp), np.ravel(vpp), strict=True)}
    most = {sv: one(*sv) for sv in shapes}
    return np.asarray([most[(int(p), int(v))] for p, v in zip(np.ravel(pp), np.ravel(vpp), strict=True)],
                      dtype=np.int64).reshape(np.shape(pp))


@functools.lru_cache(maxsize=4096)
def _most_layers(layers: int, pp: int, vpp: int, split: PipelineSplit) -> int:
    counts = virtual_stage_layers(layers, pp, vpp, split)
    return max(counts) if not isinstance(counts, str) else -(-layers // (pp * vpp))


def redundant_expert_tp(dom: dict[str, list[int]], tp: Any, expert_tp: Any) -> Any:
    """Where an expert_tp code restates the default (experts over all of TP: code ≥ tp) while the domain also
    holds the default (code 0): one layout, searched once."""
    return (0 in dom["expert_tp"]) & (expert_tp >= tp)


def fixed_field_problems(w: TrainingWorkload, node: int) -> list[str]:
    """What `layout_problems` says about the fields the scenario fixes (others at their defaults)."""
    fixed = {f: v[0] for f, v in axis_domains(w, node).items() if getattr(w.fixed, f, None) is not None}
    if "dp" not in fixed and "micro_batch" in fixed:
        fixed["dp"] = 1
    return _problems(w, fixed, node)


def _problems(w: TrainingWorkload, codes: dict[str, int], node: int | None) -> list[str]:
    """layout_problems of a layout given by some fields' codes (others at their defaults); a fixed extra's
    rule, and an implementation key's, is checked where the fields it reads are given, not against defaults."""
    layout = w.template.layout(**codes)
    unread = {k: None for k, reads in EXTRA_READS.items() if not set(reads) <= set(codes)}
    blank = {k: None for k, reads in IMPL_READS.items() if not set(reads) <= set(codes)}
    impl = w.implementation.model_copy(update=blank) if blank else w.implementation
    return layout_problems(w.model, layout.model_copy(update=unread) if unread else layout, node_size=node,
                           seq=w.seq, impl=impl)


def legal(w: TrainingWorkload, t: Columns, fields: Sequence[str], node: int | None = None) -> np.ndarray:
    """layout_problems on each distinct combination of `fields` (others at their defaults), broadcast
    back to the rows. `fields` must hold every field the rules about them read, so a default never
    decides; a `global_batch` column stands for the micro-batches per step where a rule reads those."""
    if rows(t) == 0:
        return np.zeros(0, dtype=bool)
    # Columns are small non-negative integers: index each by its present values (bincount, no sort)
    # and combine the indices in mixed radix, so finding the distinct combinations is O(rows).
    code = np.zeros(rows(t), dtype=np.int64)
    values = []
    for f in fields:
        present = np.flatnonzero(np.bincount(t[f]))
        code = code * len(present) + np.searchsorted(present, t[f])
        values.append(present)
    used = np.flatnonzero(np.bincount(code))
    ok = np.zeros(int(used[-1]) + 1, dtype=bool)
    for c in used.tolist():
        row, rest = {}, c
        for f, vals in zip(reversed(fields), reversed(values), strict=True):
            rest, i = divmod(rest, len(vals))
            row[f] = int(vals[i])
        ok[c] = not _problems(w, row, node)
    return ok[code]


def _filtered(w: TrainingWorkload, t: Columns, fields: Sequence[str]) -> Columns:
    return where(t, legal(w, t, fields))


def empty_grid() -> Grid:
    return Grid({f: np.zeros(0, dtype=np.int32) for f in (*SEARCHED, "gpus")}, SEARCHED)


# What the step-time floor reads of a layout besides the pipeline shape (pp, vpp): every row of a group shares
# these (perf.step_time_floor), every row of a slice also the micro-batch size.
GROUP_FIELDS = ("tp", "dp", "cp", "ep", "expert_tp")
SLICE_FIELDS = (*GROUP_FIELDS, "micro_batch")


@dataclass(frozen=True)
class Lattice:
    """The legal layouts of one job before they are rows: data-side rows (dp, micro-batch, cp, ep, tp, SP)
    joined with pipeline shapes (pp, vpp), each admitted pair standing for every (ZeRO, recompute) row of its
    shape. Whatever subset is asked for, rows come out in one global order (data row, then pipeline row),
    the order of the whole grid, so ties between layouts break the same way in a part and in the whole."""

    data: Columns
    pipe: Columns  # pp, vpp, zero, recompute; the rows of one shape are contiguous
    shape: np.ndarray  # per pipeline row: its shape's index
    ok: np.ndarray  # data rows × shapes: the join admits the pair (GPU count sold, interleaving legal)

    @property
    def shapes(self) -> int:
        return self.ok.shape[1]

    def rows(self, ok: np.ndarray | None = None, slice_of: np.ndarray | None = None) -> Grid:
        """The grid rows of the admitted (data row, shape) pairs `ok` (default: all), in global order, with
        each row's global position (`order`: data row × pipeline rows + pipeline row) and, given the slice
        of every (data row, shape) pair, each row's slice (column `slice`)."""
        pairs = self.ok if ok is None else ok
        ia, ib = np.nonzero(pairs[:, self.shape])
        t, pipe = self.data, self.pipe
        # int32 halves the gather; grid_arrays hands the models int64 (their byte products overflow int32)
        cols = {**{k: v.astype(np.int32)[ia] for k, v in t.items()},
                **{k: v.astype(np.int32)[ib] for k, v in pipe.items()}}
        cols["gpus"] = (t["tp"] * t["dp"] * t["cp"]).astype(np.int32)[ia] * pipe["pp"].astype(np.int32)[ib]
        if slice_of is not None:
            cols["slice"] = slice_of[ia, self.shape[ib]].astype(np.int32)
        return Grid(cols, SEARCHED, order=ia.astype(np.int64) * len(self.shape) + ib)

    def slices(self) -> Slices:
        """The admitted layouts in slices (SLICE_FIELDS and the pipeline shape), grouped (`Slices.groups`) by
        GROUP_FIELDS and the shape: per slice or group those fields, the micro-batch and ZeRO ranges its rows
        span, its GPU count and how many rows it holds."""
        t, pipe, n_k = self.data, self.pipe, self.shapes
        di, kj = np.nonzero(self.ok)
        first_pipe = np.searchsorted(self.shape, np.arange(n_k))  # each shape's first pipeline row
        z_lo = np.minimum.reduceat(pipe["zero"], first_pipe).astype(np.int64)
        z_hi = np.maximum.reduceat(pipe["zero"], first_pipe).astype(np.int64)
        weight = np.bincount(self.shape, minlength=n_k)[kj]  # rows each admitted pair stands for
        coarse = _numbered(group_ids(t, GROUP_FIELDS)[di] * n_k + kj)
        fine = _numbered(group_ids(t, SLICE_FIELDS)[di] * n_k + kj)

        def level(sid: np.ndarray) -> tuple[Columns, np.ndarray, np.ndarray]:
            n = int(sid.max()) + 1 if len(sid) else 0
            first = np.full(n, len(sid), dtype=np.int64)
            np.minimum.at(first, sid, np.arange(len(sid)))
            d0, k0 = di[first], kj[first]
            mb = t["micro_batch"][di]
            mb_lo = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
            mb_hi = np.zeros(n, dtype=np.int64)
            np.minimum.at(mb_lo, sid, mb)
            np.maximum.at(mb_hi, sid, mb)
            cols = {f: t[f][d0].astype(np.int64) for f in GROUP_FIELDS}
            cols.update(pp=pipe["pp"][first_pipe][k0].astype(np.int64),
                        vpp=pipe["vpp"][first_pipe][k0].astype(np.int64), micro_batch_min=mb_lo,
                        micro_batch_max=mb_hi, zero_min=z_lo[k0], zero_max=z_hi[k0])
            gpus = cols["tp"] * cols["dp"] * cols["cp"] * cols["pp"]
            return cols, gpus, np.bincount(sid, weights=weight, minlength=n).astype(np.int64)

        slice_of = np.full(self.ok.shape, -1, dtype=np.int64)
        slice_of[di, kj] = fine

        def rows_of(selected: np.ndarray) -> Grid:
            ok = np.zeros_like(self.ok)
            pick = selected[fine]
            ok[di[pick], kj[pick]] = True
            return self.rows(ok, slice_of)

        group = np.zeros(int(fine.max()) + 1 if len(fine) else 0, dtype=np.int64)
        group[fine] = coarse
        groups = Slices(*level(coarse), rows=None)
        return Slices(*level(fine), rows=rows_of, groups=groups, group=group)


def _numbered(code: np.ndarray) -> np.ndarray:
    """Each code's rank among the distinct codes (non-negative ints), in code order."""
    used = np.flatnonzero(np.bincount(code)) if len(code) else np.zeros(0, dtype=np.int64)
    index = np.zeros(int(used[-1]) + 1 if len(used) else 1, dtype=np.int64)
    index[used] = np.arange(len(used))
    return index[code]


def group_ids(t: Columns, fields: Sequence[str]) -> np.ndarray:
    """Each row's index among the distinct combinations of `fields` in use (small non-negative ints)."""
    code = np.zeros(rows(t), dtype=np.int64)
    for f in fields:
        present = np.flatnonzero(np.bincount(t[f]))
        lookup = np.zeros(int(present[-1]) + 1, dtype=np.int64)
        lookup[present] = np.arange(len(present))
        code = code * len(present) + lookup[t[f]]
        used = np.flatnonzero(np.bincount(code))  # renumber as we go: the radix stays the rows' count
        lookup = np.zeros(int(used[-1]) + 1, dtype=np.int64)
        lookup[used] = np.arange(len(used))
        code = lookup[code]
    return code


def lattice(w: TrainingWorkload, nodes: Sequence[int], counts: GpuCounts) -> Lattice | None:
    """The legal layouts of the job on nodes of any of these sizes, on GPU counts `counts` allows, as a
    lattice (None when there are none)."""
    cap = counts.cap
    dom = axis_domains(w, max(nodes))
    # data side: dp × micro-batch × cp × ep × (tp, SP), filtered as each axis joins
    t = _filtered(w, cross(axis("dp", dom["dp"]), axis("micro_batch", dom["micro_batch"])), ["dp", "micro_batch"])
    t = cross(t, _filtered(w, axis("cp", dom["cp"]), ["cp"]))
    if (w.implementation.loss_chunks or 1) > 1:  # a rule on micro_batch and cp together
        t = where(t, legal(w, {"micro_batch": t["micro_batch"], "cp": t["cp"]}, ["micro_batch", "cp"]))
    t = where(t, t["dp"] * t["cp"] <= cap)
    folded = any(dom["expert_tp"])  # EP may then fold over TP too: judged once TP has joined
    t = cross(t, axis("ep", dom["ep"]))
    if not folded:
        t = _filtered(w, cross(t, axis("expert_tp", dom["expert_tp"])), ["ep", "dp", "cp", "expert_tp"])
    tp = _filtered(w, cross(axis("tp", dom["tp"]), axis("sequence_parallel", dom["sequence_parallel"])),
                   ["tp", "sequence_parallel"])
    t = cross(t, tp)
    if w.implementation.cp_exchange in ("ulysses", "hierarchical"):  # a rule on tp and cp together
        t = where(t, legal(w, {"tp": t["tp"], "cp": t["cp"]}, ["tp", "cp"]))
    if folded:
        t = cross(t, axis("expert_tp", dom["expert_tp"]))
        t = where(t, ~redundant_expert_tp(dom, t["tp"], t["expert_tp"]))
        # the expert rules read dp and cp only through whether ep (or ep·expert_tp, with tp) divides dp·cp (every
        # other rule on these fields has been judged): gcd(dp·cp, experts·max tp) keeps every such divisibility,
        # so each distinct (ep, expert_tp, tp, SP, that gcd) is judged once, as dp with cp = 1 and as many sequences
        experts = w.model.moe.experts if w.model.moe else 1
        ranks = np.gcd(t["dp"] * t["cp"], experts * max(dom["tp"]))
        key = {"ep": t["ep"], "expert_tp": t["expert_tp"], "tp": t["tp"], "sequence_parallel": t["sequence_parallel"],
               "dp": ranks, "global_batch": ranks}
        t = where(t, legal(w, key, list(key)))
    t = where(t, t["tp"] * t["dp"] * t["cp"] <= cap)
    # model side: pp × vpp × ZeRO × recompute × partial recompute × activation offload (crossed in that order: one
    # shape's rows stay together)
    pipe = cross(cross(axis("pp", dom["pp"]), axis("vpp", dom["vpp"])), axis("zero", dom["zero"]))
    pipe["global_batch"] = pipe["pp"]  # neutral here: as many micro-batches as stages
    pipe = _filtered(w, pipe, ["pp", "vpp", "zero", "global_batch"])
    del pipe["global_batch"]
    pipe = cross(pipe, _filtered(w, axis("recompute", dom["recompute"]), ["recompute"]))
    pipe = _filtered(w, cross(pipe, axis("recompute_num_layers", dom["recompute_num_layers"])),
                     ["recompute", "recompute_num_layers"])
    pipe = where(pipe, ~redundant_recompute_layers(w, dom, pipe["pp"], pipe["vpp"], pipe["recompute_num_layers"]))
    pipe = _filtered(w, cross(pipe, axis("activation_offload_layers", dom["activation_offload_layers"])),
                     ["pp", "recompute", "activation_offload_layers"])
    if rows(t) == 0 or rows(pipe) == 0:
        return None
    # a shape is a (pp, vpp) and, where a rule couples ZeRO-0 with the data side (torchtitan's DDP:
    # legality.data_parallel_problems), whether its rows are ZeRO-0 (the first rows of each (pp, vpp): ZeRO is
    # crossed right after vpp)
    ddp = (pipe["zero"] == 0) if w.implementation.framework == "torchtitan" else np.zeros(rows(pipe), dtype=bool)
    new_shape = np.r_[True, (np.diff(pipe["pp"]) != 0) | (np.diff(pipe["vpp"]) != 0) | (np.diff(ddp) != 0)]
    shape = np.cumsum(new_shape) - 1
    first = np.flatnonzero(new_shape)
    pp, vpp = pipe["pp"][first], pipe["vpp"][first]
    # The join's rules read the shape, not recompute: GPU counts sold and within the cap, interleaving, which
    # couples pp and vpp with the micro-batches per step (Layout.grad_accumulation), and the ZeRO-0 shapes' rule.
    gpus = (t["tp"] * t["dp"] * t["cp"])[:, None] * pp[None, :]  # Layout.gpus
    ok = counts.sold(nodes)[np.minimum(gpus, cap + 1)]
    steps = w.global_batch // (t["dp"] * t["micro_batch"])
    ga, ga_index = np.unique(steps, return_inverse=True)
    inter = cross({"global_batch": ga}, {"pp": pp, "vpp": vpp})
    ok &= legal(w, inter, ["pp", "vpp", "global_batch"]).reshape(len(ga), -1)[ga_index.reshape(-1)]
    if ddp[first].any():
        ok[:, ddp[first]] &= _ddp_legal(w, t, pp[ddp[first]])
    if not ok.any():  # no data side joins a pipeline shape on a GPU count that is sold
        return None
    return Lattice(t, pipe, shape, ok)


def _ddp_legal(w: TrainingWorkload, t: Columns, pp: np.ndarray) -> np.ndarray:
    """Data rows × ZeRO-0 shapes (their pp): whether the rule coupling ZeRO-0 with tp, dp, cp and pp admits the
    pair, judged by layout_problems once per distinct (tp, dp, cp) and pp (a global batch of dp·pp sequences: a
    micro-batch per stage, which no other rule on these fields minds)."""
    side = {"tp": t["tp"], "dp": t["dp"], "cp": t["cp"]}
    code = (t["tp"] * (int(t["dp"].max()) + 1) + t["dp"]) * (int(t["cp"].max()) + 1) + t["cp"]
    _, pick, back = np.unique(code, return_index=True, return_inverse=True)
    inter = cross({k: v[pick] for k, v in side.items()}, {"pp": pp, "zero": np.zeros(len(pp), dtype=np.int64)})
    inter["global_batch"] = inter["dp"] * inter["pp"]
    fields = ["tp", "dp", "cp", "global_batch", "pp", "zero"]
    return legal(w, inter, fields).reshape(len(pick), len(pp))[back.reshape(-1)]


def build_grid(w: TrainingWorkload, nodes: Sequence[int], counts: GpuCounts) -> Grid:
    """The legal layouts of the job on nodes of any of these sizes, on GPU counts `counts` allows."""
    lat = lattice(w, nodes, counts)
    return empty_grid() if lat is None else lat.rows()


def runnable(w: TrainingWorkload, grid: Grid, node: int, counts: GpuCounts) -> np.ndarray:
    """Rows runnable on a SKU with nodes of `node` GPUs: TP inside a node, a GPU count it is sold in."""
    if len(grid) == 0:
        return np.zeros(0, dtype=bool)
    return runnable_on(w, grid.cols["tp"], grid.gpus, node, counts, grid.memo)


def runnable_on(w: TrainingWorkload, tp: np.ndarray, gpus: np.ndarray, node: int, counts: GpuCounts,
                memo: dict[Any, np.ndarray] | None = None) -> np.ndarray:
    """`runnable`'s two rules on columns of tp and GPU counts (grid rows or slices); `memo` keeps the per-TP
    verdict of a grid."""
    key = ("tp_on_node", node)
    if memo is None or key not in memo:
        tps = np.flatnonzero(np.bincount(tp))
        ok = np.zeros(tps[-1] + 1, dtype=bool)
        ok[tps] = legal(w, {"tp": tps}, ["tp"], node=node)
        if memo is None:
            memo = {}
        memo[key] = ok
    sold = counts.sold([node])  # a lookup, not a % per row
    return memo[key][tp] & sold[np.minimum(gpus, counts.cap + 1)]
