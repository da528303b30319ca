"""HBM bandwidth: device-to-device copies and a STREAM-like triad, against the catalog spec and the
bandwidth planner's time model charges (spec × efficiency.hbm).

- copy: `dst.copy_(src)` of 1, 2, 4 and 8 GiB byte tensors (a cudaMemcpy device-to-device); bytes moved =
  2 × size (read + write).
- triad fp32: `torch.add(b, c, alpha=3, out=a)` on three arrays of the size each (STREAM's a = b + s·c);
  bytes moved = 3 × size.
- triad bf16: the same on 16-bit arrays, the dtype of the element-wise work planner charges at HBM speed.

Each runs `--warmup` times, then `--iters` times between CUDA events; the median is kept. The largest
size needs 3 × 8 GiB = 24 GiB free. Columns: TB/s (decimal, as the spec), TB/s ÷ spec, the catalog's
efficiency.hbm, and ratio = measured ÷ (spec × efficiency.hbm), i.e. measured ÷ predicted bandwidth.

    python benchmarks/gpu/hbm.py --gpu h100-sxm
    python benchmarks/gpu/hbm.py --smoke
"""

from __future__ import annotations

import gc

import torch
from common import GIB, device, median, num, repetitions, script_main, table, time_op
from predict import predicted_hbm_bytes_per_s

from planner.schema import GpuSku

SIZES = (1 * GIB, 2 * GIB, 4 * GIB, 8 * GIB)
SMOKE_SIZES = (8 * 2**20, 16 * 2**20)
KERNELS = ("copy", "triad fp32", "triad bf16")


def kernel(name: str, size: int, dev: torch.device):
    """(closure, bytes moved per call) for one kernel on arrays of `size` bytes each."""
    if name == "copy":
        src = torch.ones(size, dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), 2 * size
    dtype = torch.float32 if name == "triad fp32" else torch.bfloat16
    n = size // torch.empty((), dtype=dtype).element_size()
    a = torch.empty(n, dtype=dtype, device=dev)
    b = torch.ones(n, dtype=dtype, device=dev)
    c = torch.full((n,), 2.0, dtype=dtype, device=dev)
    return (lambda: torch.add(b, c, alpha=3.0, out=a)), 3 * size


def run(gpu: GpuSku, smoke: bool, *, warmup: int | None = None, iters: int | None = None) -> str:
    dev = device(smoke)
    warmup, iters = repetitions(smoke, warmup, iters, 2, 10)
    spec = gpu.hbm_bandwidth_tbs * 1e12
    predicted = predicted_hbm_bytes_per_s(gpu)
    rows, best = [], {}
    for name in KERNELS:
        for size in SMOKE_SIZES if smoke else SIZES:
            try:
                fn, moved = kernel(name, size, dev)
                seconds = median(time_op(fn, dev, warmup=warmup, iters=iters))
            except torch.cuda.OutOfMemoryError:
                rows.append([name, f"{size / GIB:.3g}", "—", "—", "out of memory", "—", "—", "—"])
                continue
            finally:
                fn = None
                gc.collect()
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            bw = moved / seconds
            best[name] = max(best.get(name, 0.0), bw)
            rows.append([name, f"{size / GIB:.3g}", f"{moved / GIB:.3g}", f"{seconds * 1e3:.3f}", f"{bw / 1e12:.3f}",
                         num(bw / spec), f"{gpu.efficiency.hbm:g}", num(bw / predicted)])
    out = ["## HBM bandwidth vs efficiency.hbm\n"]
    if smoke:
        out.append(f"Smoke run: {', '.join(f'{s >> 20} MiB' for s in SMOKE_SIZES)} arrays on the CPU; spec and "
                   f"efficiency of {gpu.name}. Nothing here is a measurement.\n")
    out.append(f"Spec {gpu.hbm_bandwidth_tbs:g} TB/s; planner charges element-wise work and the optimizer step at "
               f"spec × efficiency.hbm = {predicted / 1e12:.3f} TB/s. ratio = measured ÷ that.\n")
    out.append(table(("kernel", "GiB per array", "GiB moved", "ms", "TB/s", "÷ spec", "efficiency.hbm",
                      "ratio"), rows))
    if best:
        out.append("\nBest per kernel (the efficiency.hbm it implies is TB/s ÷ spec):\n")
        out.append(table(("kernel", "TB/s", "implied efficiency.hbm", "catalog", "ratio"),
                         [[k, f"{v / 1e12:.3f}", num(v / spec), f"{gpu.efficiency.hbm:g}", num(v / predicted)]
                          for k, v in best.items()]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, "HBM", run, "size", 2, 10, argv)


if __name__ == "__main__":
    raise SystemExit(main())
