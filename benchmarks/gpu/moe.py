"""Mixture-of-experts blocks: the grouped expert GEMMs' rate and the host's issue time, next to planner's.

planner times a MoE layer's experts as one GEMM per local expert at the large-GEMM rate, slowed by its operand
traffic (`perf._gemm`; rows = the rank's routed token copies over its experts, routing balanced), the router as
one GEMM and the activation and token permutation as element-wise traffic; a layer runs at the CPU's pace only
when its kernels take longer to issue (`efficiency.kernel_launch_us` each, for the handful of kernels a dense
layer launches) than to run. On the MoE runs of Megatron-Bridge's tables planner is optimistic most where no
CUDA graph covers the MoE layer and the GPU is fastest (planner/data/VALIDATION.md), the mark of a block the host
cannot keep fed. This script measures both sides on one GPU with a MoE block as PyTorch trainers write it
(router GEMM, softmax and top-k in fp32, token copies sorted by expert, `torch._grouped_mm` over the local
experts, SwiGLU, the weighted copies added back to their tokens), bf16:

- the expert MLP alone (two grouped GEMMs and SwiGLU) on the routed rows one EP rank receives under balanced
  routing, forward and forward + backward, TFLOP/s against planner's prediction for the same rows;
- the whole block, forward + backward: GPU time against planner's, the host time to issue it (the Python call
  timed with nothing waiting on the GPU), the CUDA kernels it launches (counted by the profiler; ATen ops on
  the CPU), hence host microseconds per kernel against planner's `kernel_launch_us`;
- wall time per block with nothing and with one host sync (the per-expert token counts copied to the host
  before the experts run, as Megatron's all-to-all token dispatcher does every layer): what a sync per layer
  costs once the host can no longer run ahead.

No expert-parallel communication runs: each case is the work of one rank of the EP degree it names.

    python benchmarks/gpu/moe.py --gpu h100-sxm        # well under a minute on an H100
    python benchmarks/gpu/moe.py --smoke               # CPU, tiny shapes: checks the script
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from common import fmt, measured_report, median, num, script_main, synchronize, table, time_op
from predict import moe_block_seconds

from planner.schema import GpuSku, ModelSpec, MoESpec

TOKENS = 4096  # tokens per micro-batch on the rank (one 4,096-token sequence)


@dataclass(frozen=True)
class Case:
    """One EP rank of a MoE layer: `local` of `experts` experts, `tokens` tokens routed top-`top_k`."""

    name: str
    hidden: int
    experts: int
    top_k: int
    ffn: int  # one expert's FFN width (SwiGLU: gate and up each this wide)
    local: int
    tokens: int

    @property
    def ep(self) -> int:
        return self.experts // self.local

    @property
    def rows(self) -> int:
        """Routed token copies this rank's experts process (balanced routing: as many as its tokens send)."""
        return self.tokens * self.top_k

    @property
    def expert_flops(self) -> float:
        """Forward FLOPs of the expert MLP: the gate+up and down GEMMs over every routed row."""
        return 2.0 * self.rows * self.hidden * 3 * self.ffn

    def model(self) -> ModelSpec:
        return ModelSpec(name=self.name, layers=1, hidden=self.hidden, heads=max(1, self.hidden // 128),
                         ffn_hidden=self.ffn, vocab=32000, max_seq=self.tokens, mlp="swiglu",
                         moe=MoESpec(experts=self.experts, top_k=self.top_k, expert_ffn=self.ffn))


# (name, hidden, experts, top-k, expert FFN, local experts): the MoE layers of the Megatron-Bridge runs in
# planner/data/validation_runs.yaml at their EP degrees, and Mixtral's few wide experts
CASES = (("qwen3-30b-a3b EP16", 2048, 128, 8, 768, 8), ("qwen3-30b-a3b EP8", 2048, 128, 8, 768, 16),
         ("qwen3-235b-a22b EP8", 4096, 128, 8, 1536, 16), ("deepseek-v3 EP32", 7168, 256, 8, 2048, 8),
         ("mixtral-8x7b EP1", 4096, 8, 2, 14336, 8))
SMOKE_CASES = (("smoke EP2", 64, 8, 2, 32, 4),)
SMOKE_TOKENS = 64


def cases(smoke: bool) -> list[Case]:
    tokens = SMOKE_TOKENS if smoke else TOKENS
    return [Case(*c, tokens=tokens) for c in (SMOKE_CASES if smoke else CASES)]


class Block:
    """The block's weights and one micro-batch's input on `dev`; `experts`, `block` and `synced_block` run it."""

    def __init__(self, c: Case, dev: torch.device) -> None:
        bf = torch.bfloat16
        g = torch.Generator(device="cpu").manual_seed(0)

        def rand(*shape: int, scale: float) -> torch.Tensor:
            return (torch.randn(*shape, generator=g) * scale).to(dev, bf).requires_grad_()

        self.c = c
        self.x = rand(c.tokens, c.hidden, scale=1.0)
        self.router = rand(c.experts, c.hidden, scale=c.hidden ** -0.5)
        self.w_up = rand(c.local, c.hidden, 2 * c.ffn, scale=c.hidden ** -0.5)  # gate and up, side by side
        self.w_down = rand(c.local, c.ffn, c.hidden, scale=c.ffn ** -0.5)
        self.rows = rand(c.rows, c.hidden, scale=1.0)  # routed rows in expert order, for the experts alone
        # balanced: every local expert gets rows/local of them, the last the remainder
        self.offsets = torch.minimum((torch.arange(c.local) + 1) * (c.rows // c.local), torch.tensor(c.rows))
        self.offsets[-1] = c.rows
        self.offsets = self.offsets.to(dev, torch.int32)
        self.grad_rows = torch.randn(c.rows, c.hidden, generator=g).to(dev, bf)
        self.grad_x = torch.randn(c.tokens, c.hidden, generator=g).to(dev, bf)

    def _mlp(self, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        hidden = torch._grouped_mm(rows, self.w_up, offs=offsets)
        gate, up = hidden.chunk(2, dim=-1)
        return torch._grouped_mm(torch.nn.functional.silu(gate) * up, self.w_down, offs=offsets)

    def experts(self) -> torch.Tensor:
        return self._mlp(self.rows, self.offsets)

    def experts_fwd_bwd(self) -> None:
        self.experts().backward(self.grad_rows)
        self._clear()

    def block(self, sync: bool = False) -> torch.Tensor:
        """Router, token copies sorted by local expert (expert id mod local: the copies one rank of the EP group
        receives, spread as the router spreads them), grouped expert MLP, weighted copies added back. Nothing
        waits on the GPU unless `sync`, which copies the per-expert counts to the host first."""
        c = self.c
        probs = (self.x @ self.router.t()).float().softmax(dim=-1)
        weights, chosen = probs.topk(c.top_k, dim=-1)
        slot = (chosen % c.local).flatten()
        order = slot.argsort(stable=True)
        counts = torch.zeros(c.local, dtype=torch.int32, device=slot.device).scatter_add_(
            0, slot, torch.ones_like(slot, dtype=torch.int32))
        if sync:
            counts.tolist()  # the dispatcher's device-to-host copy: the host waits for the GPU here
        token = order // c.top_k
        out = self._mlp(self.x.index_select(0, token), counts.cumsum(0, dtype=torch.int32))
        out = out * weights.flatten().index_select(0, order).unsqueeze(-1).to(out.dtype)
        return torch.zeros_like(self.x).index_add(0, token, out)

    def block_fwd_bwd(self, sync: bool = False) -> None:
        self.block(sync).backward(self.grad_x)
        self._clear()

    def _clear(self) -> None:
        for t in (self.x, self.router, self.w_up, self.w_down, self.rows):
            t.grad = None


def issue_seconds(fn: Callable[[], None], dev: torch.device, iters: int) -> float:
    """Host seconds to issue `fn` (wall time of the call, the GPU idle before it and nothing in it waiting on
    the GPU), median of `iters`."""
    out = []
    for _ in range(iters):
        synchronize(dev)
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    synchronize(dev)
    return median(out)


def wall_seconds(fn: Callable[[], None], dev: torch.device, iters: int) -> float:
    """Wall seconds per call of `iters` back-to-back calls, the GPU drained at the end."""
    synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(dev)
    return (time.perf_counter() - t0) / iters


def launches(fn: Callable[[], None], dev: torch.device) -> int:
    """CUDA kernels one call launches (the profiler's kernel events); on the CPU, the ATen ops it dispatches."""
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        synchronize(dev)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            synchronize(dev)
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


@dataclass(frozen=True)
class Row:
    case: Case
    experts_fwd_s: float
    experts_both_s: float
    block_gpu_s: float
    block_issue_s: float
    kernels: int
    wall_s: float
    synced_wall_s: float
    predicted_experts_fwd_s: float
    predicted_block_s: float
    launch_us: float

    @property
    def experts_flops_per_s(self) -> float:
        return self.case.expert_flops / self.experts_fwd_s

    @property
    def predicted_experts_flops_per_s(self) -> float:
        return self.case.expert_flops / self.predicted_experts_fwd_s

    @property
    def host_us_per_kernel(self) -> float:
        return self.block_issue_s / max(self.kernels, 1) * 1e6


def measure(gpu: GpuSku, dev: torch.device, smoke: bool, warmup: int,
            iters: int) -> tuple[list[Row], dict[str, str]]:
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for c in cases(smoke):
        try:
            b = Block(c, dev)
            fwd = median(time_op(b.experts, dev, warmup=warmup, iters=iters))
            both = median(time_op(b.experts_fwd_bwd, dev, warmup=warmup, iters=iters))
            gpu_s = median(time_op(b.block_fwd_bwd, dev, warmup=warmup, iters=iters))
            issue = issue_seconds(b.block_fwd_bwd, dev, iters)
            kernels = launches(b.block_fwd_bwd, dev)
            wall = wall_seconds(b.block_fwd_bwd, dev, iters)
            synced = wall_seconds(lambda b=b: b.block_fwd_bwd(sync=True), dev, iters)
        except (RuntimeError, torch.cuda.OutOfMemoryError, NotImplementedError) as exc:  # the reason is the report
            skipped[c.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            continue
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        pred = moe_block_seconds(gpu, c.model(), c.tokens, c.ep)
        rows.append(Row(c, fwd, max(both, 1e-12), gpu_s, issue, kernels, wall, synced, pred.experts_fwd,
                        pred.block_fwd_bwd, gpu.efficiency.kernel_launch_us))
    return rows, skipped


def report(gpu: GpuSku, rows: list[Row], skipped: dict[str, str], smoke: bool) -> str:
    out = ["## MoE blocks: grouped expert GEMMs and host issue time vs planner\n"]
    if smoke:
        out.append(f"Smoke run: tiny shapes on the CPU; predictions for {gpu.name}. Nothing here is a measurement.\n")
    else:
        out.append(f"bf16, {TOKENS:,} tokens per micro-batch on the rank, routed top-k to its local experts (one rank "
                   "of the EP degree named, no communication). Experts: two torch._grouped_mm and SwiGLU over the "
                   "routed rows; ratio = measured ÷ predicted TFLOP/s (planner's `perf._layer` experts). Block: "
                   "router, sort, experts, weighted scatter, forward + backward; host = time to issue it, per kernel "
                   f"against planner's kernel_launch_us ({gpu.efficiency.kernel_launch_us:g} µs); wall with one host "
                   "sync = the per-expert counts copied to the host before the experts.\n")
    for name, why in skipped.items():
        out.append(f"- {name}: skipped: {why}\n")
    if not rows:
        return "\n".join(out)

    ratio_f = statistics.median(r.experts_flops_per_s / r.predicted_experts_flops_per_s for r in rows)
    ratio_b = statistics.median(r.predicted_block_s / r.block_gpu_s for r in rows)
    host = statistics.median(r.host_us_per_kernel for r in rows)
    out.append(f"\n**Median ratio measured ÷ predicted: experts fwd {num(ratio_f)}, block GPU time "
               f"{num(ratio_b)}; host {host:.1f} µs per kernel** ({len(rows)} cases; > 1: faster than planner "
               "predicts)\n")
    body = [[r.case.name, f"{r.case.local}/{r.case.experts} top{r.case.top_k}", f"{r.case.rows:,}",
             fmt(r.experts_fwd_s * 1e3, ".3f"), f"{r.experts_flops_per_s / 1e12:.3g}",
             f"{r.predicted_experts_flops_per_s / 1e12:.3g}",
             num(r.experts_flops_per_s / r.predicted_experts_flops_per_s),
             fmt(r.experts_both_s * 1e3, ".3f"), fmt(r.block_gpu_s * 1e3, ".3f"), fmt(r.predicted_block_s * 1e3, ".3f"),
             fmt(r.block_issue_s * 1e3, ".3f"), str(r.kernels), f"{r.host_us_per_kernel:.1f}",
             fmt(r.wall_s * 1e3, ".3f"), fmt(r.synced_wall_s * 1e3, ".3f")] for r in rows]
    out.append(table(("case", "local experts", "routed rows", "experts fwd ms", "TFLOP/s", "pred", "ratio",
                      "experts fwd+bwd ms", "block GPU ms", "pred ms", "block host ms", "kernels", "host µs/kernel",
                      "wall ms", "wall ms, 1 sync"), body))
    return "\n".join(out)


def run(gpu: GpuSku, smoke: bool, *, warmup: int | None = None, iters: int | None = None) -> str:
    return measured_report(measure, report, gpu, smoke, warmup, iters, 3, 10)


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, "MoE blocks", run, "case", 3, 10, argv)


if __name__ == "__main__":
    raise SystemExit(main())
