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



def default_threads() -> int:
    """fisherkit's default thread count: FISHERKIT_NUM_THREADS if set; else 0 (OpenMP's and
    OpenBLAS's own default, which honour OMP_NUM_THREADS / OPENBLAS_NUM_THREADS) when the
    user set those or the machine has more than 2 CPUs; else 1. Small VMs' 2 vCPUs are
    usually two hyperthreads of one core, where a second thread only slows the first
    (measured here: 2 threads made small-batch RL 6x slower)."""
    env = os.environ.get("FISHERKIT_NUM_THREADS")
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"FISHERKIT_NUM_THREADS must be an integer, got {env!r}") from None
    if "OMP_NUM_THREADS" in os.environ or "OPENBLAS_NUM_THREADS" in os.environ:
        return 0
    return 1 if (os.cpu_count() or 1) <= 2 else 0


_core.set_num_threads(default_threads())


def _find_cublas() -> None:
    """Point the core's run-time cuBLAS loader at a wheel's libcublas (nvidia-cublas-cu12:
    nvidia/cublas/lib; CUDA 13 wheels: nvidia/cu13/lib), unless FISHERKIT_CUBLAS is set.
    Without one, the core tries libcublas.so.13/.12 by soname (a copy CuPy already loaded,
    or the system's)."""
    if os.environ.get("FISHERKIT_CUBLAS") or not _core.cuda_compiled():
        return
    import glob
    import sys

    for base in sys.path:
        for pattern in ("nvidia/cu13/lib/libcublas.so.13*", "nvidia/cublas/lib/libcublas.so.13*",
                        "nvidia/cublas/lib/libcublas.so.12*"):
            hits = sorted(glob.glob(os.path.join(base or ".", pattern)))
            if hits:
                os.environ["FISHERKIT_CUBLAS"] = hits[0]
                return


_find_cublas()

__all__ = ["_core", "default_threads"]
