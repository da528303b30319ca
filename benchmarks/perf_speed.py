"""Speed of the time model on one core: `training_time` one layout at a time, and `step_time_table` over a
grid of layouts in the solver's chunks (the same formulas). Both rates are measured in this one run.

    .venv/bin/python benchmarks/perf_speed.py
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.catalog import get_gpu  # noqa: E402
from planner.model.perf import step_time_table, training_time  # noqa: E402
from planner.schema import Layout, ModelSpec  # noqa: E402

GPT3 = ModelSpec(name="gpt3-175b", layers=96, hidden=12288, heads=96, ffn_hidden=4 * 12288, vocab=50257,
                 max_seq=2048, mlp="gelu", norm="layernorm", bias="all", position="learned", tied_embeddings=True)
SEQ = 2048
GLOBAL_BATCH = 1536
CHUNK = 1 << 18  # rows per vectorised call (the search uses planner.workloads.grid.CHUNK)
AXES = {
    "tp": [1, 2, 4, 8], "pp": [1, 2, 4, 8, 12, 16, 24, 32], "vpp": [1, 2, 3, 4, 6, 8],
    "dp": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256], "cp": [1, 2, 4], "ep": [1],
    "zero": [0, 1, 2, 3], "recompute": [0, 1, 2], "sequence_parallel": [0, 1], "micro_batch": [1, 2, 4, 8],
}


def grid() -> dict[str, np.ndarray]:
    cols = np.array(list(itertools.product(*AXES.values())), dtype=np.int64).T
    arrays = dict(zip(AXES, cols, strict=True))
    arrays["global_batch"] = np.full(cols.shape[1], GLOBAL_BATCH, dtype=np.int64)
    return arrays


def layouts(n: int) -> list[Layout]:
    rng = np.random.default_rng(0)
    names = {0: "none", 1: "selective", 2: "full"}
    out = []
    for _ in range(n):
        tp, pp, dp = (int(rng.choice(AXES[k])) for k in ("tp", "pp", "dp"))
        mbs = int(rng.choice(AXES["micro_batch"]))
        out.append(Layout(tp=tp, pp=pp, vpp=int(rng.choice(AXES["vpp"])) if pp > 1 else 1, dp=dp,
                          zero=int(rng.choice([0, 1, 2])), recompute=names[int(rng.integers(3))],
                          sequence_parallel=tp > 1 and bool(rng.integers(2)), micro_batch=mbs,
                          global_batch=dp * mbs * 8))
    return out


def scalar_rate(seconds: float = 2.0) -> float:
    gpu = get_gpu("h100-sxm")
    pool = layouts(1000)
    training_time(GPT3, pool[0], gpu, SEQ, 300e9)  # warm the per-model context cache
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for lay in pool:
            training_time(GPT3, lay, gpu, SEQ, 300e9)
        calls += len(pool)
    return calls / (time.perf_counter() - start)


def vector_rate(arrays: dict[str, np.ndarray]) -> tuple[int, float]:
    gpu = get_gpu("h100-sxm")
    n = len(arrays["tp"])
    chunks = [{k: v[lo:lo + CHUNK] for k, v in arrays.items()} for lo in range(0, n, CHUNK)]
    step_time_table(GPT3, gpu, SEQ, chunks[0])  # warm-up: first-touch page faults of the temporaries
    start = time.perf_counter()
    for chunk in chunks:
        step_time_table(GPT3, gpu, SEQ, chunk)
    return n, n / (time.perf_counter() - start)


def main() -> int:
    arrays = grid()
    rows, vec = vector_rate(arrays)
    sc = scalar_rate()
    print(f"model: {GPT3.name}, seq {SEQ}, global batch {GLOBAL_BATCH}, GPU h100-sxm; one core")
    print(f"scalar training_time:       {sc:>12,.0f} evaluations/s")
    print(f"vectorised step_time_table: {vec:>12,.0f} layouts/s  ({rows:,} layouts in chunks of {CHUNK:,})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
