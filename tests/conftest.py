"""Shared test configuration: hypothesis profiles, and a fourth conv backend (tests/einsum_backend.py), registered
so that every test that runs "all registered backends" runs it too.

``ci`` (selected by CI via HYPOTHESIS_PROFILE=ci, and whenever the CI variable is set) is deterministic and
bounded; ``dev`` is the default for local runs; ``thorough`` explores more examples.
"""
import os

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
