"""Shared helpers for the fisherkit benchmarks.

Everything here runs in the same process as the thing it is compared with: the machines
these benchmarks run on are noisy (a few vCPUs that may share one floating-point core, other
jobs on the host), so a baseline measured yesterday or in another process says little. Each
benchmark measures its own BLAS rate and memory bandwidth next to its timings and reports
ratios.

Threads. OpenBLAS and OpenMP read OPENBLAS_NUM_THREADS / OMP_NUM_THREADS once, when the
library loads. :func:`threads` changes them at run time where it can (fisherkit through
``fisherkit.set_num_threads``; NumPy's BLAS through threadpoolctl when it is installed, else
through the ``*_set_num_threads`` entry point of the OpenBLAS that NumPy loaded, found with
ctypes). To be sure, :func:`run_per_thread_count` re-executes the benchmark once per thread
count with those variables set before anything is imported; every benchmark script does
that for ``--threads 1,2``.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CHILD_FLAG = "--_child-json"


# ----------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Wall-clock seconds of repeated calls: the minimum (the least disturbed run, what
    ratios use) and the median (how typical the minimum is)."""

    min: float
    median: float
    times: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{fmt_time(self.min)} (median {fmt_time(self.median)})"


def best_of(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> Timing:
    """Time ``fn()`` with time.perf_counter: `warmup` untimed calls, then `repeat` timed
    ones. The result of each call is dropped before the next starts, so large outputs are
    freed (and re-allocated by the next call, as a user's loop would)."""
    if repeat < 1:
        raise ValueError(f"argument 'repeat' must be >= 1, got {repeat}")
    for _ in range(max(0, warmup)):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(min(times), statistics.median(times), times)


def interleaved(fn: Callable[[], Any], rf: Callable[[], Any], repeat: int, rf_times: list[float]) -> Timing:
    """best_of(fn, repeat, warmup=0), with a run of the roofline `rf` before each run of fn
    (its times appended to rf_times): both see the same moments of the machine, whose speed
    drifts by 10-20% over seconds here."""
    times = []
    for _ in range(repeat):
        rf_times.extend(best_of(rf, 1, warmup=0).times)
        times.extend(best_of(fn, 1, warmup=0).times)
    return Timing(min(times), statistics.median(times), times)


def fmt_time(t: float) -> str:
    if t >= 1.0:
        return f"{t:.3f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} us"


# ----------------------------------------------------------------------------- threads
def _numpy_openblas_setters() -> list[Callable[[int], None]]:
    """set_num_threads entry points of the OpenBLAS libraries loaded in this process other
    than fisherkit's (found through /proc/self/maps; Linux only)."""
    setters: list[Callable[[int], None]] = []
    try:
        with open("/proc/self/maps") as fh:
            libs = sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        return setters
    names = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
             "scipy_openblas_set_num_threads", "openblas_set_num_threads")
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                setters.append(fn)
                break
    return setters


def blas_thread_control() -> str:
    """How :func:`threads` reaches NumPy's BLAS here: 'threadpoolctl', 'ctypes' or 'env only'."""
    try:
        import threadpoolctl  # noqa: F401

        return "threadpoolctl"
    except ImportError:
        return "ctypes" if _numpy_openblas_setters() else "env only"


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Use `n` threads inside the block: fisherkit's OpenMP loops and BLAS
    (fisherkit.set_num_threads) and NumPy's BLAS (threadpoolctl if importable, else the
    OpenBLAS entry point through ctypes). Restores fisherkit's default (0) afterwards.
    Without either route NumPy's BLAS keeps the thread count it read from
    OPENBLAS_NUM_THREADS at import: launch through :func:`run_per_thread_count` then."""
    import fisherkit

    n = int(n)
    if n < 1:
        raise ValueError(f"argument 'n' must be >= 1, got {n}")
    fisherkit.set_num_threads(n)
    limiter = None
    try:
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=n, user_api="blas")
        except ImportError:
            for set_threads in _numpy_openblas_setters():
                set_threads(n)
            # fisherkit's own OpenBLAS may be among them; put it back to what fisherkit wants
            fisherkit.set_num_threads(n)
        yield
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        fisherkit.set_num_threads(0)


def run_per_thread_count(script: str, argv: Sequence[str], counts: Sequence[int],
                         extra_env: dict[str, str] | None = None) -> list[dict]:
    """Re-execute `script` once per thread count with OMP/OPENBLAS/MKL_NUM_THREADS set
    before import (plus `extra_env`), passing ``--threads k`` and a temporary JSON path
    (CHILD_FLAG) the child writes its results to. The child's stdout/stderr pass through.
    Returns the children's JSON results in order; raises if a child fails."""
    results = []
    for k in counts:
        env = dict(os.environ)
        env.update(extra_env or {})
        for var in THREAD_ENV:
            env[var] = str(k)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "result.json")
            cmd = [sys.executable, script, *argv, "--threads", str(k), CHILD_FLAG, path]
            proc = subprocess.run(cmd, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"benchmark child for --threads {k} failed (exit {proc.returncode})")
            with open(path) as fh:
                results.append(json.load(fh))
    return results


def parse_thread_counts(text: str) -> list[int]:
    counts = [int(t) for t in text.split(",") if t.strip()]
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"--threads must list positive integers, got {text!r}")
    return counts


# ----------------------------------------------------------------------------- machine rates
def _fisherkit_blas_gemm(dtype: np.dtype) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None:
    """C = A @ B (C-contiguous square matrices) through the cblas_?gemm of the
    scipy-openblas32 library that fisherkit links (the same shared object, so the same
    thread setting), called with ctypes. None when it cannot be found."""
    try:
        import fisherkit  # noqa: F401 - loads the library first
        import scipy_openblas32

        lib = ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(),
                                       scipy_openblas32.get_library(fullname=True)))
        prefix = scipy_openblas32.get_prefix() if hasattr(scipy_openblas32, "get_prefix") else "scipy_"
        fn = getattr(lib, f"{prefix}cblas_{'s' if dtype == np.float32 else 'd'}gemm")
    except (ImportError, OSError, AttributeError):
        return None
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    i = ctypes.c_int
    fn.argtypes = [i, i, i, i, i, i, scalar, ctypes.c_void_p, i, ctypes.c_void_p, i, scalar,
                   ctypes.c_void_p, i]
    fn.restype = None
    row_major, no_trans = 101, 111

    def gemm(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> None:
        m, k = A.shape
        n = B.shape[1]
        fn(row_major, no_trans, no_trans, m, n, k, 1.0, A.ctypes.data, k, B.ctypes.data, n, 0.0,
           C.ctypes.data, n)

    return gemm


def measure_gemm_rate(dtype: Any, n: int = 1024, repeat: int = 5, warmup: int = 1) -> dict[str, float | None]:
    """GFLOP/s (2 n^3 flops) of a square n x n GEMM, three ways, in this process:
      numpy:     np.matmul (NumPy's own OpenBLAS);
      fisherkit: cblas_?gemm of fisherkit's scipy-openblas32, called through ctypes;
      forward:   fisherkit.MLP.forward of a one-layer identity model on n inputs in one chunk,
                 the public GEMM-shaped call: the GEMM plus per-call O(n^2) work (finite
                 checks of X and W, bias add, copy-out), so it is lower than 'fisherkit' by
                 exactly that overhead.
    A value is None when that route is unavailable."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(1)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty((n, n), dtype)
    flops = 2.0 * n * n * n
    out: dict[str, float | None] = {"numpy": None, "fisherkit": None, "forward": None}
    out["numpy"] = flops / best_of(lambda: np.matmul(A, B, out=C), repeat, warmup).min / 1e9
    gemm = _fisherkit_blas_gemm(dtype)
    if gemm is not None:
        out["fisherkit"] = flops / best_of(lambda: gemm(A, B, C), repeat, warmup).min / 1e9
        if not np.allclose(C, A @ B, rtol=1e-3, atol=1e-3 * n):
            raise RuntimeError("fisherkit's cblas gemm reached through ctypes gave a wrong product")
    try:
        import fisherkit

        model = fisherkit.MLP([(B, np.zeros(n, dtype))], activation=[], head="gaussian", dtype=dtype)
        out["forward"] = flops / best_of(lambda: model.forward(A, chunk=n), repeat, warmup).min / 1e9
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        print(f"# fisherkit forward GEMM rate unavailable: {exc}", file=sys.stderr)
    return out


def gemm_rate(rates: dict[str, float | None]) -> float:
    """The rate a bound should use: the faster of the two BLAS libraries measured (what
    this machine demonstrably does in this process), not the forward route."""
    return max(rates[k] for k in ("numpy", "fisherkit") if rates.get(k))


def measure_bandwidth(nbytes: int = 256 << 20, repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Memory bandwidth in GB/s (1e9 bytes) from large NumPy operations on arrays much larger
    than the caches:
      copy: np.copyto between two touched arrays, counting read + write bytes (2 x nbytes);
      fill: a.fill(1) on a touched array (write only, nbytes);
      fresh: np.ones of nbytes into a new allocation (page faults plus first write), the rate
             at which a freshly allocated output can be produced at best."""
    n = max(1, nbytes // 8)
    a = np.ones(n)
    b = np.ones(n)
    t_copy = best_of(lambda: np.copyto(b, a), repeat, warmup).min
    t_fill = best_of(lambda: b.fill(1.0), repeat, warmup).min
    del a
    t_fresh = best_of(lambda: np.ones(n), repeat, warmup).min
    return {"copy": 2 * 8 * n / t_copy / 1e9, "fill": 8 * n / t_fill / 1e9, "fresh": 8 * n / t_fresh / 1e9}


def machine_summary(dtype: Any, n: int = 1024) -> dict[str, Any]:
    """GEMM rates for `dtype` and bandwidths, measured now, in this process."""
    return {"gemm": measure_gemm_rate(dtype, n), "bw": measure_bandwidth()}


# ----------------------------------------------------------------------------- rooflines
def layer_shapes(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """(n_in, n_out) of each layer of an MLP of widths `sizes`."""
    return list(zip(sizes[:-1], sizes[1:]))


class Roofline:
    """BLAS calls and stores of given shapes on preallocated operands (GEMMs through NumPy's
    matmul, SYRKs through SciPy's BLAS); calling the object runs them all once."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(7)
        self.ops: list[Callable[[], Any]] = []
        self.gemm_flops = 0.0
        self.parts: list[str] = []  # the SYRKs and stores, described

    def _rand(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape).astype(self.dtype)

    def gemm(self, m: int, k: int, n: int) -> None:
        A, B, out = self._rand(m, k), self._rand(k, n), np.empty((m, n), self.dtype)
        self.ops.append(lambda: np.matmul(A, B, out=out))
        self.gemm_flops += 2.0 * m * k * n

    def forward(self, sizes: Sequence[int], n: int) -> None:
        """The forward GEMMs of n inputs: (n x n_{l-1}) @ (n_{l-1} x n_l)."""
        for n_in, n_out in layer_shapes(sizes):
            self.gemm(n, n_in, n_out)

    def backprop(self, sizes: Sequence[int], rows: int) -> None:
        """The backward GEMMs of `rows` rows: (rows x n_l) @ (n_l x n_{l-1}), l = L..2."""
        for n_in, n_out in layer_shapes(sizes)[1:]:
            self.gemm(rows, n_out, n_in)

    def syrk(self, n: int, k: int, count: int = 1) -> None:
        """`count` SYRKs C = A^T A of k rows of length n, each into its own n x n output."""
        import scipy.linalg.blas as scipy_blas

        a = self._rand(k, n).T  # Fortran order (n x k): a a^T = A^T A without a copy
        out = np.empty((count, n, n), self.dtype)
        views = [out[i].T for i in range(count)]  # Fortran-ordered n x n outputs
        fn = scipy_blas.ssyrk if self.dtype == np.float32 else scipy_blas.dsyrk
        if not np.shares_memory(fn(1.0, a, c=views[0], overwrite_c=1), out):
            raise RuntimeError("SciPy's syrk copied its output: the roofline would time a copy")

        def run() -> None:
            for v in views:
                fn(1.0, a, c=v, overwrite_c=1)

        self.ops.append(run)
        gflop = count * k * n * (n + 1) / 1e9
        times = f"{count} x " if count > 1 else ""
        self.parts.append(f"{times}SYRK {n}x{n} K={k} ({gflop:.3g} GFLOP)")

    def packed_gram(self, units: int, n: int, k: int) -> None:
        """The weighted Grams of `units` units over n rows of width k as one GEMM of the units'
        weights (units x n) against the packed upper triangles of the rows' outer products
        (n x k(k+1)/2), in row blocks of about 2 MiB of the triangles, as fisherkit's packed
        unit Gram runs it (its building of the triangles is not included)."""
        kp = k * (k + 1) // 2
        rows = max(64, min(512, (2 << 20) // (kp * self.dtype.itemsize)))
        W, Q = self._rand(units, n), self._rand(n, kp)
        G, T = np.zeros((units, kp), self.dtype), np.empty((units, kp), self.dtype)

        def run() -> None:
            for s0 in range(0, n, rows):
                np.matmul(W[:, s0:s0 + rows], Q[s0:s0 + rows], out=T)
                np.add(G, T, out=G)

        self.ops.append(run)
        self.gemm_flops += 2.0 * units * n * kp

    def stores(self, nbytes: int, fresh: bool) -> None:
        """Write `nbytes` (a nonzero byte: some machines store zeros faster) with glibc's memset,
        whose large fills use streaming stores, into a buffer already touched or, with
        `fresh`, into a new allocation (its page faults included)."""
        n = max(1, nbytes // self.dtype.itemsize)
        memset = _memset()
        if fresh:
            self.ops.append(lambda: memset(np.empty(n, self.dtype), 0x3F))
        else:
            dst = np.ones(n, self.dtype)
            self.ops.append(lambda: memset(dst, 0x3F))
        self.parts.append(f"stores of {_bytes(n * self.dtype.itemsize)} (memset)" + (" into a fresh array" if fresh else ""))

    def __call__(self) -> None:
        for op in self.ops:
            op()

    def describe(self) -> str:
        parts = ([f"GEMMs {self.gemm_flops / 1e9:.3g} GFLOP"] if self.gemm_flops else []) + self.parts
        return " + ".join(parts)


def _memset() -> Callable[[np.ndarray, int], None]:
    """memset(array, byte) over the array's bytes: glibc's through ctypes, else NumPy's fill."""
    try:
        fn = ctypes.CDLL(None).memset
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
        fn.restype = ctypes.c_void_p
    except (OSError, AttributeError):
        return lambda a, byte: a.view(np.uint8).fill(byte)
    return lambda a, byte: fn(a.ctypes.data, byte, a.nbytes)


def _bytes(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


# ----------------------------------------------------------------------------- output
def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], file: Any = None) -> None:
    """A plain left-aligned text table (floats printed with 3 significant digits)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) if body else len(str(h))
              for i, h in enumerate(headers)]
    out = file or sys.stdout
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    print(line, file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in body:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)), file=out)
