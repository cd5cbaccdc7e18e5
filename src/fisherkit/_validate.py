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
    return xp.ascontiguousarray(arr, dtype=dtype)


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
    return xp.ascontiguousarray(arr, dtype=dtype)


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
        raise MemoryError(
            f"{what} needs {nbytes / 2**30:.2f} GiB but the budget is {limit / 2**30:.2f} GiB; "
            f"{suggestion}"
        )
