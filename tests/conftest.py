"""Test-session settings shared by every test module."""

from __future__ import annotations

import os

# pytest-xdist runs one worker per core (`make test`): PyTorch and the BLAS libraries would each start a thread per
# core in every worker, oversubscribing the cores and slowing the oracle tests that build real modules; one thread
# each keeps a worker to its core. Set before any test module imports torch or numpy.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
