"""GEMM TFLOP/s on the shapes planner's time model charges, next to the efficiency it predicts for each.

For Llama-3 8B, 70B and Llama-3.1 405B at TP 1, 2, 4, 8 and micro-batches of 1, 2, 4, 8 sequences of
4,096 tokens: the four dense GEMMs of one layer on one TP rank (QKV, attention output, MLP up with gate
and up fused, MLP down; widths from planner's own context, benchmarks/gpu/predict.py), each as the
forward GEMM and the two backward GEMMs nn.Linear runs:

    fwd    Y[T×N]  = X[T×K] · Wᵀ        (W is N×K, as nn.Linear stores it)
    dgrad  dX[T×K] = dY[T×N] · W
    wgrad  dW[N×K] = dYᵀ · X            (inner dimension T)

in bf16 (torch.mm with the transposes above) and in fp8 e4m3 through torch._scaled_mm where the GPU and
torch have it (per-tensor scales, bf16 output, the row-major × column-major layout it requires, as
Transformer Engine runs every fp8 GEMM; fast accumulation in the forward only, TE's default). Each
distinct GEMM runs `--warmup` times, then `--iters` times between CUDA events with the L2 cache
overwritten before each, and the median is kept.

Per shape: milliseconds, TFLOP/s, measured efficiency (over the catalog's dense peak of the dtype),
planner's predicted efficiency for that shape (`predicted_gemm_seconds`, i.e. `planner.model.perf._gemm`)
and the ratio measured ÷ predicted (> 1: the GPU is faster than planner assumes). Summary: the median
ratio per dtype, pass and model, and the best measured efficiency next to the catalog's `gemm`.

    python benchmarks/gpu/gemm.py --gpu h100-sxm            # a few minutes on an H100
    python benchmarks/gpu/gemm.py --smoke                   # CPU, tiny shapes: checks the script
"""

from __future__ import annotations

import argparse
import gc
import statistics
from collections import defaultdict
from dataclasses import dataclass

import torch
from common import GIB, device, fmt, header, l2_flusher, median, num, repetitions, resolve_gpu, table, time_op
from predict import dense_peak_flops, layer_gemms, predicted_gemm_seconds

from planner.catalog import get_model
from planner.schema import GpuSku, ModelSpec

MODELS = ("llama-3-8b", "llama-3-70b", "llama-3.1-405b")
TPS = (1, 2, 4, 8)
MICRO_BATCHES = (1, 2, 4, 8)
SEQ = 4096
PASSES = ("fwd", "dgrad", "wgrad")
SMOKE_MODEL = ModelSpec(name="smoke-llama", layers=2, hidden=256, heads=4, kv_heads=2, ffn_hidden=512, vocab=1024,
                        max_seq=128)
SMOKE_TPS = (1, 2)
SMOKE_TOKENS = (64, 128)


@dataclass(frozen=True)
class Shape:
    model: str
    gemm: str
    tp: int
    tokens: int
    pas: str
    m: int  # output rows
    n: int  # output columns
    k: int  # inner dimension

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k


@dataclass(frozen=True)
class Row:
    shape: Shape
    dtype: str
    seconds: float
    measured_eff: float
    predicted_eff: float

    @property
    def tflops(self) -> float:
        return self.shape.flops / self.seconds / 1e12

    @property
    def ratio(self) -> float:
        return self.measured_eff / self.predicted_eff


def shapes(smoke: bool) -> list[Shape]:
    models = [SMOKE_MODEL] if smoke else [get_model(n) for n in MODELS]
    tps = SMOKE_TPS if smoke else TPS
    tokens = SMOKE_TOKENS if smoke else tuple(b * SEQ for b in MICRO_BATCHES)
    out = []
    for model in models:
        for tp in tps:
            for name, n, k in layer_gemms(model, tp):
                for t in tokens:
                    dims = {"fwd": (t, n, k), "dgrad": (t, k, n), "wgrad": (n, k, t)}
                    out += [Shape(model.name, name, tp, t, p, *dims[p]) for p in PASSES]
    return out


def fp8_unavailable(dev: torch.device, gpu: GpuSku) -> str | None:
    """Why the fp8 rows are skipped, or None when torch._scaled_mm runs here."""
    if "fp8" not in gpu.peak_tflops:
        return f"the catalog lists no fp8 peak for {gpu.name}"
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return f"torch {torch.__version__} has no torch._scaled_mm / float8_e4m3fn"
    if dev.type == "cuda" and torch.cuda.get_device_capability() < (8, 9):
        return f"compute capability {torch.cuda.get_device_capability()} has no fp8 tensor cores (needs 8.9+)"
    try:
        a = torch.randn(32, 32, device=dev).to(torch.float8_e4m3fn)
        b = torch.randn(32, 32, device=dev).to(torch.float8_e4m3fn).t()
        one = torch.ones((), device=dev)
        torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    except Exception as exc:  # the reason is the report
        return f"torch._scaled_mm failed on {dev.type}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return None


def gemm_fn(s: Shape, dtype: str, dev: torch.device):
    """A closure running the GEMM once into a preallocated output, with operands laid out as in training."""
    t = s.tokens
    n, k = {"fwd": (s.n, s.k), "dgrad": (s.k, s.n), "wgrad": (s.m, s.n)}[s.pas]  # the layer's N and K
    if dtype == "bf16":
        bf = torch.bfloat16
        if s.pas == "fwd":  # X · Wᵀ
            a, b = torch.randn(t, k, dtype=bf, device=dev), torch.randn(n, k, dtype=bf, device=dev).t()
        elif s.pas == "dgrad":  # dY · W
            a, b = torch.randn(t, n, dtype=bf, device=dev), torch.randn(n, k, dtype=bf, device=dev)
        else:  # dYᵀ · X
            a, b = torch.randn(t, n, dtype=bf, device=dev).t(), torch.randn(t, k, dtype=bf, device=dev)
        out = torch.empty(s.m, s.n, dtype=bf, device=dev)
        return lambda: torch.mm(a, b, out=out)
    f8 = torch.float8_e4m3fn
    a8 = torch.randn(s.m, s.k, device=dev, dtype=torch.bfloat16).to(f8)  # row-major
    b8 = torch.randn(s.n, s.k, device=dev, dtype=torch.bfloat16).to(f8).t()  # column-major
    one = torch.ones((), device=dev)
    out8 = torch.empty(s.m, s.n, dtype=torch.bfloat16, device=dev)
    fast = s.pas == "fwd"
    return lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                    use_fast_accum=fast, out=out8)


def measure(gpu: GpuSku, dev: torch.device, dtypes: list[str], smoke: bool, warmup: int,
            iters: int) -> tuple[list[Row], list[str]]:
    """Rows for every shape and dtype that ran, and the shapes that ran out of memory."""
    flush = l2_flusher(dev)
    cache: dict[tuple[str, str, int, int, int], float | None] = {}
    rows, oom = [], []
    for s in shapes(smoke):
        for dtype in dtypes:
            key = (dtype, s.pas, s.m, s.n, s.k)
            if key not in cache:
                fn = None
                try:
                    fn = gemm_fn(s, dtype, dev)
                    cache[key] = median(time_op(fn, dev, warmup=warmup, iters=iters, flush=flush))
                except torch.cuda.OutOfMemoryError:
                    cache[key] = None
                    oom.append(f"{dtype} {s.pas} {s.m}×{s.n}×{s.k}")
                finally:
                    del fn
                    if dev.type == "cuda" and (s.m * s.k + s.k * s.n + s.m * s.n) * 2 > GIB:
                        gc.collect()
                        torch.cuda.empty_cache()
            seconds = cache[key]
            if seconds is None:
                continue
            peak = dense_peak_flops(gpu, dtype)
            predicted = predicted_gemm_seconds(gpu, s.m, s.n, s.k, dtype)
            rows.append(Row(s, dtype, seconds, s.flops / seconds / peak, s.flops / predicted / peak))
    return rows, oom


def _stats(rows: list[Row]) -> list[str]:
    r = sorted(x.ratio for x in rows)
    lo, hi = r[0], r[-1]
    q = statistics.quantiles(r, n=10) if len(r) >= 2 else [r[0]] * 9
    return [str(len(rows)), num(statistics.median(r)), num(q[0]), num(q[-1]), num(lo), num(hi),
            num(statistics.median(x.measured_eff for x in rows)),
            num(statistics.median(x.predicted_eff for x in rows))]


def report(gpu: GpuSku, rows: list[Row], skipped: dict[str, str], oom: list[str], smoke: bool) -> str:
    out = ["## GEMM throughput vs planner's GEMM efficiency curve\n"]
    if smoke:
        out.append(f"Smoke run: {SMOKE_MODEL.name} (hidden {SMOKE_MODEL.hidden}), TP {SMOKE_TPS}, tokens "
                   f"{SMOKE_TOKENS}, on the CPU; predictions for {gpu.name}. Nothing here is a measurement.\n")
    else:
        out.append(f"Llama-3 8B / 70B / 3.1-405B layer GEMMs, TP {TPS}, micro-batch {MICRO_BATCHES} × {SEQ} "
                   f"tokens; fwd, dgrad and wgrad as nn.Linear runs them. Efficiency = TFLOP/s over the dense "
                   f"peak ({', '.join(f'{d} {gpu.peak(d):g}' for d in sorted({r.dtype for r in rows}))} TFLOP/s); "
                   "predicted = planner.model.perf._gemm for the shape; ratio = measured ÷ predicted.\n")
    for dtype, why in skipped.items():
        out.append(f"- {dtype}: skipped: {why}\n")
    if oom:
        out.append(f"- out of memory, left out: {', '.join(oom)}\n")
    if not rows:
        return "\n".join(out)
    medians = ", ".join(f"{d} {num(statistics.median(r.ratio for r in rows if r.dtype == d))}"
                        for d in dict.fromkeys(r.dtype for r in rows))
    out.append(f"\n**Median ratio measured ÷ predicted: {medians}** "
               f"({len(rows)} shapes; > 1: faster than planner predicts)\n")
    out.append("\n### Summary (ratio = measured ÷ predicted efficiency)\n")
    head = ("dtype", "group", "shapes", "median ratio", "p10", "p90", "min", "max", "median meas eff",
            "median pred eff")
    groups = (("all", lambda r: "all"), ("pass", lambda r: f"pass {r.shape.pas}"),
              ("model", lambda r: f"model {r.shape.model}"), ("gemm", lambda r: f"gemm {r.shape.gemm}"),
              ("tp", lambda r: f"TP{r.shape.tp}"), ("tokens", lambda r: f"tokens {r.shape.tokens}"))
    summary = []
    for dtype in dict.fromkeys(r.dtype for r in rows):
        for _, key in groups:
            by: dict[str, list[Row]] = defaultdict(list)
            for r in rows:
                if r.dtype == dtype:
                    by[key(r)].append(r)
            summary += [[dtype, group, *_stats(rs)] for group, rs in by.items()]
    out.append(table(head, summary))
    ceil_rows = []
    for dtype in dict.fromkeys(r.dtype for r in rows):
        rs = [r for r in rows if r.dtype == dtype]
        best = max(rs, key=lambda r: r.measured_eff)
        catalog = gpu.efficiency.gemm if dtype != "fp8" else (gpu.efficiency.gemm_fp8 or gpu.efficiency.gemm)
        field = "gemm" if dtype != "fp8" else "gemm_fp8"
        s = best.shape
        ceil_rows.append([dtype, f"{best.tflops:.1f}", num(best.measured_eff), f"{field} = {catalog:g}",
                          num(best.measured_eff / catalog), f"{s.model} {s.gemm} {s.pas} TP{s.tp} "
                          f"{s.m}×{s.n}×{s.k}"])
    out.append("\nLarge-GEMM ceiling: the best measured efficiency against the catalog value the curve tends to\n")
    out.append(table(("dtype", "best TFLOP/s", "best eff", "catalog", "best ÷ catalog", "shape (M×N×K)"), ceil_rows))
    lines = ["\n### Per shape\n"]
    for dtype in dict.fromkeys(r.dtype for r in rows):
        lines.append(f"\n{dtype}:\n\n")
        body = [[r.shape.model, r.shape.gemm, r.shape.pas, r.shape.tp, r.shape.tokens,
                 f"{r.shape.m}×{r.shape.n}×{r.shape.k}", fmt(r.seconds * 1e3, ".3f"), f"{r.tflops:.3g}",
                 num(r.measured_eff), num(r.predicted_eff), num(r.ratio)]
                for r in rows if r.dtype == dtype]
        lines.append(table(("model", "gemm", "pass", "TP", "tokens", "M×N×K", "ms", "TFLOP/s", "meas eff",
                            "pred eff", "ratio"), body))
    return "\n".join(out) + "".join(lines)


def run(gpu: GpuSku, smoke: bool, *, warmup: int | None = None, iters: int | None = None,
        dtypes: tuple[str, ...] = ("bf16", "fp8")) -> str:
    dev = device(smoke)
    warmup, iters = repetitions(smoke, warmup, iters, 3, 10)
    skipped: dict[str, str] = {}
    wanted = []
    for d in dtypes:
        why = fp8_unavailable(dev, gpu) if d == "fp8" else None
        if why:
            skipped[d] = why
        else:
            wanted.append(d)
    rows, oom = measure(gpu, dev, wanted, smoke, warmup, iters)
    return report(gpu, rows, skipped, oom, smoke)


def main(argv: list[str] | None = None) -> int:
    from common import common_args

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p)
    p.add_argument("--warmup", type=int, help="untimed calls per GEMM (default 3; smoke 1)")
    p.add_argument("--iters", type=int, help="timed calls per GEMM, median kept (default 10; smoke 2)")
    p.add_argument("--dtypes", default="bf16,fp8", help="comma list of bf16, fp8 (default both)")
    a = p.parse_args(argv)
    gpu = resolve_gpu(a.gpu, a.smoke)
    print(header(gpu, a.smoke, "planner GPU benchmarks: GEMM"))
    print(run(gpu, a.smoke, warmup=a.warmup, iters=a.iters, dtypes=tuple(a.dtypes.split(","))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
