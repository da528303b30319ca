"""Flash-attention TFLOP/s on the calls planner's time model charges, next to the rate it predicts for each.

planner times causal attention as the score FLOPs the kernel executes (half of 4·q·k·heads·d under the causal
mask) at `efficiency.flash_attention` × the large-GEMM rate, FlashAttention-2 at 1/1.75 of the generation's own
kernel on Hopper and Blackwell, and a backward of 2.5 forwards (`planner.model.perf`). This script runs
PyTorch's scaled_dot_product_attention with each backend that runs here (flash: FlashAttention-2; cudnn: the
generation's own; efficient: the memory-efficient kernel), bf16, K/V given at their own head count
(enable_gqa), forward and forward + backward, on:

- whole causal sequences: Llama-3.1 8B (32 query heads, 8 KV heads) at 4,096, 8,192 and 32,768 tokens, and
  70B on one TP 8 rank (8 query heads, 1 KV head) at 8,192 and 32,768, each with 32,768 tokens per call;
- the calls PyTorch's load-balanced context parallelism makes per rank (torch/distributed/tensor/experimental/
  _attention.py, as torchtitan runs it) with 32,768 local tokens of the 8B: the causal local call, then per
  other rank a non-causal call of all local queries against half the keys, or half the queries against all.

Per call: milliseconds and TFLOP/s forward and backward (planner's convention: causal counts half), the
predicted TFLOP/s for the backend's kernel (flash → FlashAttention-2, cudnn → native; efficient has no planner
counterpart and is compared with FlashAttention-2's) and the ratio measured ÷ predicted.

    python benchmarks/gpu/attention.py --gpu h100-sxm        # about a minute on an H100
    python benchmarks/gpu/attention.py --smoke               # CPU, tiny shapes: checks the script
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from common import fmt, measured_report, median, num, script_main, table, time_op
from predict import attention_rates

from planner.schema import AttentionKernel, GpuSku

TOKENS = 32768  # tokens per call (batch × query length for whole sequences)
SEQUENCES = (("llama-3.1-8b", 32, 8, (4096, 8192, 32768)), ("llama-3.1-70b TP8", 8, 1, (8192, 32768)))
HEAD_DIM = 128
CP_MODEL = ("llama-3.1-8b", 32, 8)
SMOKE_SEQUENCES = (("smoke", 4, 2, (64, 128)),)
SMOKE_CP = ("smoke", 4, 2)
SMOKE_TOKENS = 128
SMOKE_HEAD_DIM = 16
BACKENDS = ("flash", "cudnn", "efficient")
PLANNER_KERNEL: dict[str, AttentionKernel] = {"flash": "fa2", "cudnn": "native", "efficient": "fa2"}


@dataclass(frozen=True)
class Call:
    """One attention call: `batch` × `heads` query heads over `q` queries and `k` keys."""

    case: str
    batch: int
    heads: int
    kv_heads: int
    q: int
    k: int
    causal: bool
    d: int

    @property
    def flops(self) -> float:
        """Forward FLOPs in planner's convention: QKᵀ and PV, half of them under a causal mask."""
        return 4.0 * self.batch * self.heads * self.q * self.k * self.d * (0.5 if self.causal else 1.0)


@dataclass(frozen=True)
class Row:
    call: Call
    backend: str
    fwd_s: float
    bwd_s: float  # forward + backward minus forward
    predicted_fwd: float  # FLOP/s
    predicted_bwd: float

    @property
    def fwd_ratio(self) -> float:
        return self.call.flops / self.fwd_s / self.predicted_fwd

    @property
    def bwd_ratio(self) -> float:
        return 2.5 * self.call.flops / self.bwd_s / self.predicted_bwd


def calls(smoke: bool) -> list[Call]:
    tokens, d = (SMOKE_TOKENS, SMOKE_HEAD_DIM) if smoke else (TOKENS, HEAD_DIM)
    out = []
    for name, heads, kv, seqs in SMOKE_SEQUENCES if smoke else SEQUENCES:
        out += [Call(f"{name} causal {s}", max(1, tokens // s), heads, kv, s, s, True, d) for s in seqs]
    name, heads, kv = SMOKE_CP if smoke else CP_MODEL
    half = tokens // 2
    out += [Call(f"{name} CP local (causal)", 1, heads, kv, tokens, tokens, True, d),
            Call(f"{name} CP queries × half the keys", 1, heads, kv, tokens, half, False, d),
            Call(f"{name} CP half the queries × keys", 1, heads, kv, half, tokens, False, d)]
    return out


def _backend(name: str):
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}[name]


def attention_fns(c: Call, backend: str, dev: torch.device):
    """Closures for one forward and for one forward + backward of the call under `backend`."""
    from torch.nn.attention import sdpa_kernel

    bf = torch.bfloat16
    q = torch.randn(c.batch, c.heads, c.q, c.d, dtype=bf, device=dev, requires_grad=True)
    k = torch.randn(c.batch, c.kv_heads, c.k, c.d, dtype=bf, device=dev, requires_grad=True)
    v = torch.randn(c.batch, c.kv_heads, c.k, c.d, dtype=bf, device=dev, requires_grad=True)
    grad = torch.randn(c.batch, c.heads, c.q, c.d, dtype=bf, device=dev)
    gqa = c.kv_heads != c.heads
    kernel = _backend(backend)

    def fwd() -> torch.Tensor:
        with sdpa_kernel([kernel]), torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=c.causal, enable_gqa=gqa)

    def fwd_bwd() -> None:
        with sdpa_kernel([kernel]):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=c.causal, enable_gqa=gqa)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    return fwd, fwd_bwd


def measure(gpu: GpuSku, dev: torch.device, smoke: bool, warmup: int,
            iters: int) -> tuple[list[Row], dict[str, str]]:
    """Rows for every call and backend that ran, and why a backend did not."""
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for backend in BACKENDS if dev.type == "cuda" else ("flash",):
        fwd_rate, bwd_rate = attention_rates(gpu, PLANNER_KERNEL[backend])
        for c in calls(smoke):
            try:
                fwd, fwd_bwd = attention_fns(c, backend, dev)
                fwd_s = median(time_op(fwd, dev, warmup=warmup, iters=iters))
                both_s = median(time_op(fwd_bwd, dev, warmup=warmup, iters=iters))
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # the reason is the report
                skipped.setdefault(backend, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
                continue
            finally:
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(Row(c, backend, fwd_s, max(both_s - fwd_s, 1e-12), fwd_rate, bwd_rate))
    return rows, skipped


def report(gpu: GpuSku, rows: list[Row], skipped: dict[str, str], smoke: bool) -> str:
    out = ["## Attention throughput vs planner's flash-attention rate\n"]
    if smoke:
        out.append(f"Smoke run: tiny shapes on the CPU; predictions for {gpu.name}. Nothing here is a measurement.\n")
    else:
        out.append(f"bf16 scaled_dot_product_attention, {TOKENS:,} tokens per call, head dim {HEAD_DIM}; TFLOP/s in "
                   "planner's convention (causal counts half; backward = 2.5 forwards); predicted = planner's rate "
                   "for the backend's kernel (flash: FlashAttention-2, cudnn: native, efficient: compared with "
                   "FlashAttention-2); ratio = measured ÷ predicted.\n")
    for backend, why in skipped.items():
        out.append(f"- {backend}: skipped or partly skipped: {why}\n")
    if not rows:
        return "\n".join(out)
    medians = ", ".join(
        f"{b} fwd {num(statistics.median(r.fwd_ratio for r in rows if r.backend == b))} / bwd "
        f"{num(statistics.median(r.bwd_ratio for r in rows if r.backend == b))}"
        for b in dict.fromkeys(r.backend for r in rows))
    out.append(f"\n**Median ratio measured ÷ predicted: {medians}** ({len(rows)} calls; > 1: faster than planner "
               "predicts)\n")
    body = [[r.backend, r.call.case, f"{r.call.batch}×{r.call.heads}/{r.call.kv_heads}×{r.call.q}×{r.call.k}",
             fmt(r.fwd_s * 1e3, ".3f"), f"{r.call.flops / r.fwd_s / 1e12:.3g}", f"{r.predicted_fwd / 1e12:.3g}",
             num(r.fwd_ratio), fmt(r.bwd_s * 1e3, ".3f"), f"{2.5 * r.call.flops / r.bwd_s / 1e12:.3g}",
             f"{r.predicted_bwd / 1e12:.3g}", num(r.bwd_ratio)] for r in rows]
    out.append(table(("backend", "call", "b×heads/kv×q×k", "fwd ms", "fwd TFLOP/s", "pred", "ratio", "bwd ms",
                      "bwd TFLOP/s", "pred", "ratio"), body))
    return "\n".join(out)


def run(gpu: GpuSku, smoke: bool, *, warmup: int | None = None, iters: int | None = None) -> str:
    return measured_report(measure, report, gpu, smoke, warmup, iters, 3, 10)


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, "attention", run, "case", 3, 10, argv)


if __name__ == "__main__":
    raise SystemExit(main())
