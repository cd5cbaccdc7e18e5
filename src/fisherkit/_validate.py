"""Argument conversion at the API boundary: done once, with messages a person can act on.
Deep checks (NaN/Inf, label ranges, shapes that chain) run again in the C++ core."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype: Any) -> np.dtype:
    d = np.dtype(dtype)
    if d not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {d}")
    return d


def as_matrix(xp: Any, a: Any, name: str, dtype: np.dtype, cols: int | None = None) -> Any:
    """A C-contiguous 2-D array of `dtype` (converted once if needed)."""
    if a is None:
        raise ValueError(f"argument '{name}' is required")
    arr = xp.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"argument '{name}' must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"argument '{name}' must be 2-D (rows x columns), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"argument '{name}' is an empty batch (0 rows)")
    if cols is not None and arr.shape[1] != cols:
        raise ValueError(f"argument '{name}' must have {cols} columns, got shape {tuple(arr.shape)}")
    return _convert(xp, arr, dtype, name)


def _convert(xp: Any, arr: Any, dtype: np.dtype, name: str, copy: bool = False) -> Any:
    """C-contiguous `dtype` copy (or view when allowed) of `arr`. Narrowing float64 to
    float32 must not turn finite values into Inf: that is reported as out of range."""
    narrowing = arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize
    with np.errstate(over="ignore"):
        out = xp.array(arr, dtype=dtype, order="C", copy=True) if copy else xp.ascontiguousarray(arr, dtype=dtype)
    if narrowing and not bool(xp.isfinite(out).all()) and bool(xp.isfinite(arr).all()):
        raise ValueError(f"argument '{name}' has finite values beyond the range of {np.dtype(dtype).name} "
                         "(the model's dtype); rescale it or use a float64 model")
    return out


def as_labels(xp: Any, y: Any, name: str, head: str, n: int, c: int, dtype: np.dtype) -> Any:
    """Labels in the core's layout: (N, 1) class indices for categorical, (N, C) otherwise."""
    if y is None:
        raise ValueError(f"argument '{name}' is required")
    arr = xp.asarray(y)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"argument '{name}' must be numeric, got dtype {arr.dtype}")
    cols = 1 if head == "categorical" else c
    if arr.ndim == 1 and cols == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape != (n, cols):
        want = f"({n},) or ({n}, 1)" if cols == 1 else f"({n}, {cols})"
        raise ValueError(
            f"argument '{name}' must have shape {want} for the {head} head, got {tuple(arr.shape)}"
        )
    return _convert(xp, arr, dtype, name)


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), or a conservative fallback."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def check_fits(nbytes: int, what: str, suggestion: str, budget: int | None = None) -> None:
    """Raise MemoryError before allocating `nbytes` for `what` beyond the budget (default:
    half the available memory)."""
    limit = available_memory() // 2 if budget is None else budget
    if nbytes > limit:
        raise MemoryError(f"{what} needs {format_bytes(nbytes)} but the budget is {format_bytes(limit)}; {suggestion}")


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def as_chunk(chunk: Any) -> int:
    """A chunk size: a non-negative integer (0 or None: automatic)."""
    if chunk is None:
        return 0
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)):
        raise TypeError(f"argument 'chunk' must be an integer, got {type(chunk).__name__}")
    chunk = int(chunk)
    if chunk < 0 or chunk > 2**40:
        raise ValueError(f"argument 'chunk' must be between 0 (automatic) and 2**40, got {chunk}")
    return chunk
