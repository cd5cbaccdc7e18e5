"""Import the compiled core. Its RPATH points at scipy-openblas32's library folder in
site-packages; if a relocated install breaks that, load the library by path first."""
from __future__ import annotations

import ctypes
import os

# fisherkit alternates OpenMP loops and OpenBLAS calls. Idle threads of either pool that
# spin steal the CPU the other pool needs (badly so where two vCPUs share one core), so
# both are told to sleep when idle. Read when the libraries load: set before importing
# the core, and only if the user has not chosen otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only by broken installs
    if "scipy_openblas" not in str(exc):
        raise
    import scipy_openblas32

    lib = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    from . import _core  # noqa: F401

__all__ = ["_core"]
