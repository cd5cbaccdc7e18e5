"""Build facts and process-level settings."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from ._loader import _core, default_threads

# The compiled module sits beside the installed C++ package (headers, library, CMake
# config); in an editable install that is site-packages, not the source tree.
_HERE = Path(_core.__file__).resolve().parent


def cmake_dir() -> str:
    """Folder to pass to ``find_package(fisherkit CONFIG)`` (as ``fisherkit_DIR``)."""
    return str(_HERE / "share" / "cmake" / "fisherkit")


def include_dir() -> str:
    """Folder holding the C++ headers (``fisherkit/fisherkit.hpp``)."""
    return str(_HERE / "include")


def _gpu_visible() -> bool:
    if not _core.cuda_compiled():
        return False
    return _core.cuda_device_count() > 0


def info() -> dict[str, Any]:
    """The build: version, BLAS, OpenMP threads, CUDA compiled in, GPU visible, CuPy."""
    try:
        import cupy  # noqa: F401

        cupy_version: str | None = cupy.__version__
    except Exception:  # noqa: BLE001 - any import failure means "no usable CuPy"
        cupy_version = None
    return {
        "version": _core.version(),
        "blas": _core.blas_name(),
        "openmp": _core.openmp_enabled(),
        "threads": _core.num_threads(),
        "cuda_compiled": _core.cuda_compiled(),
        "gpu_visible": _gpu_visible(),
        "cuda_devices": _core.cuda_device_count(),
        # cuBLAS is loaded on the first GPU GEMM: its path then, else where it will be looked for
        "cublas": _core.cublas_library() or os.environ.get("FISHERKIT_CUBLAS", "libcublas.so.13/.12 by soname"),
        "cupy": cupy_version,
        "cmake_dir": cmake_dir(),
    }


def set_num_threads(n: int) -> None:
    """Threads for fisherkit's OpenMP loops and its BLAS; 0 restores fisherkit's default
    (``FISHERKIT_NUM_THREADS``, else 1 on machines with at most 2 CPUs, whose vCPUs usually
    share one core, else the OpenMP/OpenBLAS default)."""
    n = int(n)
    if n < 0:
        raise ValueError(f"argument 'n' must be >= 0, got {n}")
    _core.set_num_threads(n if n > 0 else default_threads())


def num_threads() -> int:
    return int(_core.num_threads())


_blas_controller: tuple[int, Any] | None = None  # (len(sys.modules) when made, the controller)


def blas_threads() -> Any:
    """A context in which NumPy's BLAS uses fisherkit's thread count (threadpoolctl, when
    installed; else nothing changes). On small shared machines NumPy's default of one
    thread per CPU made batched small solves 100 times slower, and the eigendecomposition
    of a 785 x 785 KFAC factor 20 times slower.

    threadpoolctl finds the BLAS libraries by listing every loaded library, which took
    0.8 ms here, 9% of a KFAC solve: the controller is made once and made again only after
    more modules were imported (an import is what loads another BLAS)."""
    global _blas_controller
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()

    n = num_threads()
    if n <= 0:
        return contextlib.nullcontext()
    if _blas_controller is None or _blas_controller[0] != len(sys.modules):
        controller = ThreadpoolController().select(user_api="blas")
        _blas_controller = (len(sys.modules), controller)
    return _blas_controller[1].limit(limits=n)
