"""Argument conversion at the API boundary: done once, with messages a person can act on.
Deep checks (NaN/Inf, label ranges, shapes that chain) run again in the C++ core."""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype: Any) -> np.dtype:
    d = np.dtype(dtype)
    if d.kind == "f" and d.byteorder not in ("=", "|"):
        d = d.newbyteorder("=")  # a big-endian float64 is a float64: the data are converted once
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
    """C-contiguous, aligned `dtype` copy (or view when allowed) of `arr`. Complex values are
    refused (TypeError), never silently cut to their real part. Narrowing float64 to float32
    must not turn finite values into Inf: that is reported as out of range. A misaligned
    buffer (``np.frombuffer(buf, offset=1)``) is copied once here, never read unaligned."""
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"argument '{name}' must be real numeric, got dtype {arr.dtype}")
    narrowing = arr.dtype.kind == "f" and arr.dtype.itemsize > np.dtype(dtype).itemsize
    flags = getattr(arr, "flags", None)
    copy = copy or (flags is not None and not getattr(flags, "aligned", True))
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


def as_budget(max_bytes: Any) -> int | None:
    """A memory budget in bytes: None (automatic) or an integer >= 0."""
    if max_bytes is None:
        return None
    return as_int(max_bytes, "max_bytes", minimum=0)


# Below this, the automatic budget is not consulted: reading the available memory costs
# 30 us, a sixth of a small call, and a request this size fails only on a machine that is
# already out of memory (where the allocation itself raises MemoryError).
UNCHECKED_BYTES = 32 << 20


def check_fits(nbytes: int, what: str, suggestion: str, budget: int | None = None) -> None:
    """Raise MemoryError before allocating `nbytes` for `what` beyond the budget (default:
    half the available memory, consulted for requests of UNCHECKED_BYTES and more); a budget
    that is not a byte count is a TypeError or ValueError naming 'max_bytes'."""
    budget = as_budget(budget)
    if budget is None and nbytes < UNCHECKED_BYTES:
        return
    limit = available_memory() // 2 if budget is None else budget
    if nbytes > limit:
        raise MemoryError(f"{what} needs {format_bytes(nbytes)} but the budget is {format_bytes(limit)}; {suggestion}")


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def as_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A count or index: a Python or NumPy integer (not a bool, a float or a string), within
    [minimum, maximum]; else TypeError / ValueError naming the argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"argument '{name}' must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"argument '{name}' must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"argument '{name}' must be <= {maximum}, got {v}")
    return v


def as_seed(seed: Any) -> int | None:
    """A generator key: None (fresh entropy) or an integer in [0, 2**64)."""
    if seed is None:
        return None
    return as_int(seed, "seed", minimum=0, maximum=2**64 - 1)


def as_out(xp: Any, out: Any, shape: tuple[int, ...], dtype: np.dtype, name: str = "out") -> Any:
    """An output buffer the caller passed: an array of the model's array library, of this
    shape and dtype, C-contiguous, writeable and aligned (it is written in place, so it
    cannot be converted)."""
    if not hasattr(out, "shape") or not hasattr(out, "dtype") or not hasattr(out, "flags"):
        raise TypeError(f"argument '{name}' must be a {xp.__name__} array to write into, got {type(out).__name__}")
    want = f"a C-contiguous {np.dtype(dtype).name} array of shape {shape}"
    if tuple(out.shape) != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"argument '{name}' must be {want}, got {out.dtype} {tuple(out.shape)}"
                         f"{'' if out.flags.c_contiguous else ' (not C-contiguous)'}")
    if not getattr(out.flags, "writeable", True):
        raise ValueError(f"argument '{name}' is read-only; pass a writeable array")
    if not getattr(out.flags, "aligned", True):
        raise ValueError(f"argument '{name}' is not aligned to its {out.dtype.itemsize}-byte items (a buffer "
                         "at an odd offset); pass an array NumPy allocated")
    return out


def check_labels(estimator: str, y: Any) -> None:
    """The empirical estimator sums the gradients at the caller's labels: without y it is a
    ValueError (the one message every entry point gives)."""
    if estimator == "empirical" and y is None:
        raise ValueError("the empirical estimator needs labels: pass y (or use estimator='exact')")


def warn_unused(value: Any, name: str, why: str) -> None:
    """A warning when the caller passed `name` to a computation that does not use it."""
    if value is not None:
        warnings.warn(f"argument '{name}' is ignored: {why}", UserWarning, stacklevel=3)


def as_chunk(chunk: Any) -> int:
    """A chunk size: a non-negative integer (0 or None: automatic)."""
    if chunk is None:
        return 0
    return as_int(chunk, "chunk", minimum=0, maximum=2**40)


def as_samples(samples: Any) -> int:
    """Label draws per input: an integer >= 1."""
    return as_int(samples, "samples", minimum=1, maximum=2**31 - 1)


def as_index_offset(offset: Any) -> int:
    """Global index of the first input row: an integer in [0, 2**63)."""
    return as_int(offset, "index_offset", minimum=0, maximum=2**63 - 1)


def as_real(value: Any, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """A finite real number (Python or NumPy number, not a bool or a string) >= minimum
    (> minimum when strict)."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"argument '{name}' must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"argument '{name}' must be finite, got {value!r}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        raise ValueError(f"argument '{name}' must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return v


def check_damping(damping: Any, strict: bool = False) -> float:
    """Tikhonov damping: a finite real number >= 0 (> 0 when strict)."""
    return as_real(damping, "damping", minimum=0.0, strict=strict)
