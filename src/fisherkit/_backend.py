"""The one place that decides NumPy or CuPy (or Dask, whose blocks are NumPy arrays) from the
arrays a call is given."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

# a fresh host result at least this large has its pages touched when it is allocated
_PREFAULT_BYTES = 16 << 20
_PAGE = 4096


def fresh_result(xp: Any, shape: Any, dtype: Any) -> Any:
    """``xp.empty(shape, dtype)`` for a result a long compiled call fills. A large NumPy result
    has one byte per 4 KiB written at once: on a virtual machine that hands freed memory back
    to its host, a page first written seconds into the call faults several times slower than
    one touched while still in the guest (unit blocks of 784-256-256-10, 1.4 GB in float64:
    8.1 -> 4.8 s, the touch itself 0.14 s). The call overwrites every value."""
    out = xp.empty(shape, dtype=dtype)
    if xp is np and out.nbytes >= _PREFAULT_BYTES:
        raw = out.reshape(-1).view(np.uint8)
        for start in range(0, raw.size, _PREFAULT_BYTES):  # slices: Ctrl-C is seen between them
            raw[start:start + _PREFAULT_BYTES:_PAGE] = 0
    return out


def _is_cupy(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def is_dask(*arrays: Any) -> bool:
    """True when any of `arrays` is a Dask collection (``dask.array.Array``): such calls are
    computed block by block by ``fisherkit.distributed``. Never imports Dask (without it no
    Dask array can exist)."""
    return any(type(a).__module__.split(".")[0] == "dask" and hasattr(a, "__dask_graph__")
               for a in arrays)


_DASK: dict[str, Callable[..., Any]] = {}


def register_dask(name: str, fn: Callable[..., Any]) -> None:
    """Register the Dask implementation of public operation `name` (fisherkit.distributed does,
    when the package loads): the public functions route Dask arrays here without importing the
    module that builds on them."""
    _DASK[name] = fn


def dask_call(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run the registered Dask implementation of `name`."""
    fn = _DASK.get(name)
    if fn is None:  # pragma: no cover - fisherkit/__init__ imports fisherkit.distributed
        raise RuntimeError(f"no Dask implementation of {name!r} is registered (import fisherkit.distributed)")
    return fn(*args, **kwargs)


def get_array_module(*named: tuple[str, Any]) -> Any:
    """Return numpy or cupy for the given ``(name, array)`` pairs.

    Arrays that are None or Python scalars are ignored. Mixing NumPy and CuPy arrays is a
    ``TypeError`` that says which argument lives where.
    """
    on_gpu, on_cpu = [], []
    for name, a in named:
        if a is None or np.isscalar(a):
            continue
        (on_gpu if _is_cupy(a) else on_cpu).append(name)
    if on_gpu and on_cpu:
        raise TypeError(
            "arguments live on different devices: "
            f"{', '.join(on_gpu)} on the GPU (CuPy), {', '.join(on_cpu)} on the CPU (NumPy); "
            "move them to one device (cupy.asarray / cupy.asnumpy)"
        )
    if on_gpu:
        import cupy

        return cupy
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Host copy of an array of either library."""
    if _is_cupy(a):
        return a.get()
    return np.asarray(a)


def to_float64(a: Any) -> np.ndarray:
    """Host float64 copy of an array of either library (no copy for a float64 NumPy array)."""
    return np.asarray(to_numpy(a), dtype=np.float64)
