"""Test-session settings shared by every test module."""

from __future__ import annotations

import os

from hypothesis import settings

# pytest-xdist runs one worker per core (`make test`): PyTorch and the BLAS libraries would each start a thread per
# core in every worker, oversubscribing the cores and slowing the oracle tests that build real modules; one thread
# each keeps a worker to its core. Set before any test module imports torch or numpy.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

# Property tests draw the same examples on every run (the suite's verdict and its time do not depend on luck);
# `make fuzz` draws fresh ones (HYPOTHESIS_PROFILE=explore) and more of them (PLANNER_FUZZ_EXAMPLES).
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
