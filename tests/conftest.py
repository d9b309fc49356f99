"""Shared test configuration: hypothesis profiles, a fourth conv backend (tests/einsum_backend.py), registered
so that every test that runs "all registered backends" runs it too, and numba's threads shared out between
pytest-xdist's workers.

``ci`` (selected by CI via HYPOTHESIS_PROFILE=ci, and whenever the CI variable is set) is deterministic and
bounded; ``dev`` is the default for local runs; ``thorough`` explores more examples.
"""
import os

import numba
import pytest
from hypothesis import HealthCheck, settings

import tinyconv.kernels

from einsum_backend import EinsumBackend

tinyconv.kernels.register(EinsumBackend())

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


def _share_the_cores():
    """Each of pytest-xdist's N workers runs numba on cores/N threads by default (tests that need more set them):
    N workers of all-core parallel loops, whose idle threads spin, slow one another down badly on few cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS // workers))


_share_the_cores()


class RecordingBLAS:
    """Stands in for numpy's OpenBLAS: records every thread-count change (test_blas, test_workers)."""

    def __init__(self, threads):
        self.threads = threads
        self.calls = []

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.calls.append(n)
        self.threads = n


@pytest.fixture
def fake_blas(monkeypatch):
    """tinyconv.kernels.blas driving a RecordingBLAS of 4 threads instead of numpy's OpenBLAS."""
    from tinyconv.kernels import blas

    fake = RecordingBLAS(threads=4)
    monkeypatch.setattr(blas, "_openblas", fake)
    return fake
