"""What every GPU benchmark shares: the import path, the device header, the timer and markdown tables.

The header names what the numbers were measured on (nvidia-smi name, driver, power limit and SM clock,
torch and its CUDA, cuDNN, transformers, the planner commit) and the catalog SKU the predictions use,
so a report pasted into BENCHMARKS.md says where it came from.
"""

from __future__ import annotations

import datetime as _dt
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch  # noqa: E402

from planner.catalog import get_gpu  # noqa: E402
from planner.schema import GIB, GpuSku  # noqa: E402

SMOKE_SKU = "h100-sxm"  # predictions in a --smoke run (no GPU to detect)
L2_FLUSH_BYTES = 256 * 2**20  # larger than the L2 of any catalog GPU (H100 50 MiB, B200 126 MiB)

# nvidia-smi device names → catalog names; the first matching rule wins
_SKU_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("GH200",), "gh200"),  # not in the catalog: asks for --gpu
    (("GB200",), "gb200"),
    (("B300",), "b300"),
    (("B200",), "b200"),
    (("H200",), "h200"),
    (("H100", "NVL"), "h100-nvl"),
    (("H100", "PCIE"), "h100-pcie"),
    (("H100",), "h100-sxm"),
    (("H800",), "h800"),
    (("H20",), "h20"),
    (("A100", "40GB"), "a100-40gb"),
    (("A100", "PCIE"), "a100-80gb-pcie"),
    (("A100",), "a100-80gb"),
    (("L40S",), "l40s"),
    (("L4",), "l4"),
    (("4090",), "rtx-4090"),
    (("5090",), "rtx-5090"),
    (("V100",), "v100-32gb"),
)


def device(smoke: bool) -> torch.device:
    """cuda for a measurement, cpu for --smoke; a measurement without a GPU is an error."""
    if smoke:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or pass --smoke for the CPU check")
    return torch.device("cuda")


def resolve_gpu(name: str | None, smoke: bool) -> GpuSku:
    """The catalog SKU the predictions use: --gpu, else guessed from the CUDA device name."""
    if name:
        return get_gpu(name)
    if smoke or not torch.cuda.is_available():
        return get_gpu(SMOKE_SKU)
    dev = torch.cuda.get_device_name().upper()
    for words, sku in _SKU_RULES:
        if all(w in dev for w in words):
            try:
                return get_gpu(sku)
            except Exception:  # a rule naming a SKU the catalog lacks: ask for --gpu
                break
    raise SystemExit(f"cannot tell the catalog SKU of {torch.cuda.get_device_name()!r}: pass --gpu NAME")


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def nvidia_smi() -> dict[str, str]:
    """Name, driver, memory, power limit and max SM clock of GPU 0 as nvidia-smi reports them."""
    fields = ("name", "driver_version", "memory.total", "power.limit", "clocks.max.sm")
    out = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader", "-i", "0"])
    if out is None:
        out = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader", "-i", "0"])
        fields = fields[:2]
    if not out:
        return {}
    return dict(zip(fields, (v.strip() for v in out.splitlines()[0].split(",")), strict=False))


def device_info(smoke: bool) -> list[tuple[str, str]]:
    """(field, value) rows of the report header."""
    rows: list[tuple[str, str]] = []
    smi = nvidia_smi()
    if smi:
        rows.append(("nvidia-smi name", smi.get("name", "?")))
        rows.append(("driver", smi.get("driver_version", "?")))
        for key, label in (("memory.total", "memory (nvidia-smi)"), ("power.limit", "power limit"),
                           ("clocks.max.sm", "max SM clock")):
            if key in smi:
                rows.append((label, smi[key]))
    else:
        rows.append(("nvidia-smi", "not available"))
    if torch.cuda.is_available() and not smoke:
        props = torch.cuda.get_device_properties(0)
        rows.append(("torch device", f"{props.name}, compute capability {props.major}.{props.minor}, "
                                     f"{props.multi_processor_count} SMs, {props.total_memory / GIB:.2f} GiB"))
    rows.append(("torch", torch.__version__))
    rows.append(("CUDA (torch build)", str(torch.version.cuda)))
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    rows.append(("cuDNN", str(cudnn)))
    try:
        import transformers

        rows.append(("transformers", transformers.__version__))
    except ImportError:
        rows.append(("transformers", "not installed"))
    rows.append(("python", f"{platform.python_version()} on {platform.machine()}"))
    commit = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    rows.append(("planner commit", (commit or "unknown") + (" (modified)" if dirty else "")))
    rows.append(("date", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")))
    return rows


def sku_line(gpu: GpuSku) -> str:
    e = gpu.efficiency
    peaks = ", ".join(f"{k} {v:g}" for k, v in gpu.peak_tflops.items() if k in ("bf16", "fp8"))
    fp8 = f", gemm_fp8 {e.gemm_fp8:g}" if e.gemm_fp8 is not None else ""
    return (f"{gpu.name}: dense {peaks} TFLOP/s, HBM {gpu.hbm_bandwidth_tbs:g} TB/s, "
            f"{gpu.hbm_bytes / GIB:.2f} GiB; efficiency gemm {e.gemm:g}{fp8}, hbm {e.hbm:g}")


def header(gpu: GpuSku, smoke: bool, title: str = "planner GPU benchmarks") -> str:
    rows = [*device_info(smoke), ("catalog SKU (predictions)", sku_line(gpu))]
    if smoke:
        rows.append(("mode", "SMOKE: CPU, tiny shapes, a couple of iterations; the numbers check the scripts, "
                             "they measure nothing"))
    else:
        rows.append(("mode", "measurement"))
    return f"# {title}\n\n" + table(("field", "value"), rows) + "\n"


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def l2_flusher(dev: torch.device) -> Callable[[], None] | None:
    """Overwrites a buffer larger than L2 before each timed call, so no operand starts out cached."""
    if dev.type != "cuda":
        return None
    buf = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=dev)
    return lambda: buf.zero_()


def time_op(fn: Callable[[], Any], dev: torch.device, *, warmup: int, iters: int,
            flush: Callable[[], None] | None = None) -> list[float]:
    """Seconds of `iters` calls of `fn` after `warmup` untimed ones. On a GPU each call sits between two
    CUDA events (the L2 flush, if any, before the first), all queued before one synchronize; on the CPU,
    perf_counter around each call."""
    for _ in range(warmup):
        fn()
    synchronize(dev)
    if dev.type == "cuda":
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        for start, end in pairs:
            if flush is not None:
                flush()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) / 1e3 for start, end in pairs]
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def repetitions(smoke: bool, warmup: int | None, iters: int | None, default_warmup: int,
                default_iters: int) -> tuple[int, int]:
    """(warm-up, timed) runs: the ones asked for, else the script's defaults; 1 and 2 in a smoke run."""
    return (warmup if warmup is not None else (1 if smoke else default_warmup),
            iters if iters is not None else (2 if smoke else default_iters))


def measured_report(measure: Callable[..., tuple[Any, Any]], report: Callable[..., str], gpu: GpuSku, smoke: bool,
                    warmup: int | None, iters: int | None, default_warmup: int, default_iters: int) -> str:
    """A script's `run`: `measure(gpu, device, smoke, warmup, iters)` → (rows, skipped), then its report."""
    warmup, iters = repetitions(smoke, warmup, iters, default_warmup, default_iters)
    rows, skipped = measure(gpu, device(smoke), smoke, warmup, iters)
    return report(gpu, rows, skipped, smoke)


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def common_args(parser: Any) -> None:
    parser.add_argument("--gpu", help="catalog SKU for the predictions (default: from the CUDA device name)")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, a couple of iterations")


def num(x: float) -> str:
    """Three decimals, or two significant digits below 0.01 (a smoke run's CPU numbers)."""
    return format(x, ".3f") if x == 0 or abs(x) >= 0.01 else format(x, ".2g")


def script_main(doc: str | None, title: str, run: Callable[..., str], unit: str, warmup: int, iters: int,
                argv: list[str] | None = None) -> int:
    """The command line of one benchmark script: --gpu, --smoke, --warmup and --iters (defaults `warmup` and
    `iters` per `unit`; 1 and 2 in a smoke run), then its report under the device header."""
    import argparse

    p = argparse.ArgumentParser(description=(doc or title).splitlines()[0])
    common_args(p)
    p.add_argument("--warmup", type=int, help=f"untimed runs per {unit} (default {warmup}; smoke 1)")
    p.add_argument("--iters", type=int, help=f"timed runs per {unit}, median kept (default {iters}; smoke 2)")
    a = p.parse_args(argv)
    gpu = resolve_gpu(a.gpu, a.smoke)
    print(header(gpu, a.smoke, f"planner GPU benchmarks: {title}"))
    print(run(gpu, a.smoke, warmup=a.warmup, iters=a.iters))
    return 0
