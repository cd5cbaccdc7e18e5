"""Shared pytest fixtures for fisherkit's Python tests (kept deliberately small).

Tolerances: a test that compares a fisherkit result in dtype T with a float64 reference
should scale its tolerance by ``np.finfo(T).eps`` (2.2e-16 for float64, 1.2e-7 for
float32) and by the size of the computation, rather than hard-code one number for both.
"""
from __future__ import annotations

import numpy as np
import pytest

try:  # hypothesis is a test extra; the property tests skip without it.
    from hypothesis import settings as _hyp_settings

    # CI runs on two slow shared cores: no per-example deadline, and a fixed derandomised
    # profile when FISHERKIT_HYPOTHESIS_PROFILE=ci (reproducible failures in logs).
    _hyp_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
    _hyp_settings.register_profile("dev", deadline=None)
    import os as _os

    _hyp_settings.load_profile(_os.environ.get("FISHERKIT_HYPOTHESIS_PROFILE", "dev"))
except ImportError:  # pragma: no cover - depends on the environment
    pass


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test (tests stay independent of execution order)."""
    return np.random.default_rng(20240611)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request) -> type:
    """Both floating dtypes the engine is instantiated for."""
    return request.param


@pytest.fixture
def eps(dtype) -> float:
    """Unit roundoff of `dtype`: multiply by an operation count to get a tolerance."""
    return float(np.finfo(dtype).eps)
