"""Time to answer the worst inputs of each kind the input limits allow: the largest YAML planner parses, the
deepest nesting, the longest sweep list, a Megatron layer pattern of 10^10 entries, counts of 10^20. Each runs
in-process through the CLI; the table gives its exit status and seconds, measured in this one run. Two inputs are
valid but as large as the limits allow: a 1,200-job chain of `after:` (exit 1: no plan) and a 1,024-layer model.

    .venv/bin/python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from planner import safe_yaml  # noqa: E402
from planner.cli import app  # noqa: E402

BASE = "model: llama-2-7b\njob: {tokens: 2e9, seq_len: 4096, global_batch: 64}\nhardware: {skus: [h100-sxm]}\n"
MEGATRON = ("--num-layers 4 --hidden-size 512 --num-attention-heads 8 --seq-length 2048 "
            "--max-position-embeddings 2048 --micro-batch-size 1 --global-batch-size 8 --bf16 --vocab-size 32000")


def cases(folder: Path) -> dict[str, list[str]]:
    def scenario(name: str, text: str) -> str:
        path = folder / f"{name}.yaml"
        path.write_text(text)
        return str(path)

    keys = "".join(f"k{i}: 1\n" for i in range(safe_yaml.MAX_BYTES // 12))  # just under the byte limit
    return {
        "unknown keys up to the byte limit (node cap)": ["solve", scenario("keys", BASE + keys)],
        "a flow list past the node limit": ["solve", scenario("flow", "model: [" + "1," * 400_000 + "]\n")],
        "100k nested brackets": ["solve", scenario("deep", "model: " + "[" * 100_000)],
        "5k unknown keys": ["solve", scenario("k5", BASE + "".join(f"k{i}: 1\n" for i in range(5_000)))],
        "seq_len 1e20": ["solve", scenario("seq", BASE.replace("seq_len: 4096", "seq_len: 100000000000000000000"))],
        "global_batch 1e20": ["solve", scenario("gb", BASE.replace("global_batch: 64",
                                                                  "global_batch: 100000000000000000000"))],
        "compare --deadline 1..20000 as a list": ["compare", scenario("cmp", BASE), "--deadline",
                                                  ",".join(str(d) for d in range(1, 20_001))],
        "--moe-layer-freq [1]*1e10": ["review", "--megatron-args", MEGATRON + " --num-experts 8 --moe-layer-freq "
                                      "[1]*10000000000", "--gpu", "h100", "--gpus", "8", "--no-better"],
        "estimate --tokens inf": ["estimate", "--model", "llama-2-7b", "--gpu", "h100", "--gpus", "8",
                                  "--tokens", "inf"],
        "schedule: 1,200 jobs in one after: chain": ["schedule", scenario("chain", chain(1_200)), "--time-limit", "20"],
        "solve: a 1,024-layer model": ["solve", scenario("deep_model", BASE.replace(
            "model: llama-2-7b", "model: {name: deep, layers: 1024, hidden: 4096, heads: 32, ffn_hidden: 11008, "
            "vocab: 32000, max_seq: 4096, mlp: swiglu, norm: rmsnorm, position: rope}")), "--time-limit", "20"],
    }


def chain(jobs: int) -> str:
    """A portfolio of `jobs` 8B runs, each waiting for the one before (`after:`), on a 64-GPU cluster: more than a
    year of work, so no plan; its CP-SAT model has an energy window for every pair of jobs."""
    lines = ["name: chain", "horizon: {start: 2027-01-04, end: 2028-01-03, step: week}",
             "pools: [{name: own, kind: owned, sku: h100, gpus: 64}]", "jobs:"]
    for i in range(jobs):
        lines.append(f"  - {{name: j{i}, model: llama-3.1-8b, job: {{tokens: 1e9, seq_len: 4096, global_batch: 64}}"
                     + (f", after: [j{i - 1}]}}" if i else "}"))
    return "\n".join(lines) + "\n"


def main() -> None:
    runner = CliRunner()
    runner.invoke(app, ["catalog", "gpus", "--format", "json"])  # imports and catalogs loaded once, untimed
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, args in cases(Path(tmp)).items():
            start = time.perf_counter()
            result = runner.invoke(app, args)
            rows.append((name, result.exit_code, time.perf_counter() - start))
    print(f"{'input':46} {'exit':>4} {'seconds':>8}")
    for name, code, seconds in rows:
        print(f"{name:46} {code:>4} {seconds:8.2f}")


if __name__ == "__main__":
    main()
