"""Import the compiled core. Its RPATH points at scipy-openblas32's library folder in
site-packages; if a relocated install breaks that, load the library by path first."""
from __future__ import annotations

import ctypes
import os

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
