"""benchmarks/gpu/run_all.py --smoke: the GPU benchmarks run end to end on the CPU (tiny shapes) and print
their report. The measurements themselves need a GPU and are not part of the test suite."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None,
    reason="the GPU benchmarks need torch and transformers",
)
def test_run_all_smoke():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu" / "run_all.py"), "--smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert out.startswith("# planner GPU benchmarks\n")
    for text in ("| torch |", "| CUDA (torch build) |", "| catalog SKU (predictions) | h100-sxm", "SMOKE",
                 "## GEMM throughput", "**Median ratio measured ÷ predicted: bf16 ", "## HBM bandwidth",
                 "## Attention throughput", "**Median ratio measured ÷ predicted: flash fwd ",
                 "## MoE blocks", "**Median ratio measured ÷ predicted: experts fwd ",
                 "## Training steps", "**Median step-time ratio measured ÷ predicted: "):
        assert text in out, text
    assert "FAILED" not in out
