"""Time planning for ``fisherkit report``: a deadline shared by the sections, a GEMM rate
measured in this process, and the largest number of inputs whose predicted cost fits.

Costs are predicted two ways. The parts that grow with the number of inputs are timed on a
small pilot and scaled linearly (the pilot's fixed overhead is scaled too, so the
prediction errs on the long side). The parts that do not (eigendecompositions, Cholesky
factorisations of blocks) are counted in floating-point operations and divided by the
measured GEMM rate, times :data:`SAFETY`.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

SAFETY = 1.5  # flop-model predictions are multiplied by this
BYTES_PER_SECOND = 1e9  # writing fresh memory, generously slow (page faults, other jobs on the machine)


class Budget:
    """Seconds left before a deadline, and a section's share of them. A section of weight w
    gets w / (w + weights of the sections after it) of the time left, so what a section
    does not use goes to the later ones."""

    def __init__(self, seconds: float, reserve: float) -> None:
        self.start = time.perf_counter()
        self.seconds = float(seconds)
        self.reserve = float(reserve)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left for computing (the reserve for writing the page excluded)."""
        return self.seconds - self.reserve - self.elapsed()

    def share(self, weight: float, later_weights: float) -> float:
        return max(0.0, self.left()) * weight / (weight + later_weights)


def gemm_rate() -> float:
    """Floating-point operations per second of a 384 x 384 float64 GEMM here (best of 7: the
    machine may be shared, and one slow run should not make the plan timid)."""
    a = np.random.default_rng(0).standard_normal((384, 384))
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * 384 ** 3 / max(best, 1e-6)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """(fn(), seconds it took)."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def largest_fitting(predict: Callable[[int], float], seconds: float, lo: int, hi: int) -> int | None:
    """The largest n in [lo, hi] with predict(n) <= seconds (predict grows with n), or None
    when not even lo fits."""
    if hi < lo or predict(lo) > seconds:
        return None
    if predict(hi) <= seconds:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predict(mid) <= seconds:
            lo = mid
        else:
            hi = mid
    return lo


def eigh_flops(k: int) -> float:
    """Eigenvalues of a symmetric k x k matrix (tridiagonal reduction and QR), counted
    generously: the reduction runs at matrix-vector speed, well below the GEMM rate
    (calibrated on 785 x 785 blocks here: about 9 k^3 GEMM-rate flops)."""
    return 9.0 * float(k) ** 3


def unit_solve_flops(m: int, k: int, n: int, solves: int = 1) -> float:
    """Forming m unit blocks of size k from n inputs and solving with them `solves` times
    (natgrad's 'unit' method: a Cholesky factorisation and two batched general solves per
    damping when n >= k, else an n x n sample-space system per unit), in GEMM-rate flops.
    NumPy's batched small GEMMs and LU ran at about a third of the GEMM rate here, hence
    the factors 3."""
    if n >= k:
        return 3.0 * (2.0 * m * n * k * k + solves * m * (k ** 3 / 3.0 + 4.0 * k ** 3 / 3.0))
    return 3.0 * solves * m * (2.0 * n * n * k + 2.0 * n ** 3 / 3.0)


def kfac_error_flops(sizes: Sequence[int], n: int) -> float:
    """The pairs-of-inputs part of fisherkit.kfac_error (exact estimator, C = sizes[-1]
    backward rows per input) on n inputs, in GEMM-rate flops: per layer the Gram of the
    backward rows or of the packed Gamma_n (whichever is cheaper) and of the augmented
    inputs, over the n^2 ordered pairs, plus the elementwise work on the n x n pair terms
    (counted at a tenth of the GEMM rate)."""
    C = int(sizes[-1])
    flops = 0.0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        per = min(C * C * n_out, n_out * (n_out + 1) / 2) + n_in + 1
        flops += 2.0 * n * n * per + 10.0 * n * n * (C * C if n_out + 1 > 2 * C * C else 4)
    return flops
