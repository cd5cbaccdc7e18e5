"""Closed-form estimator variances (issue 4), as ratios measured in the same process:

1. ``variance(shape="diag")`` of the score and Hessian estimators for a 784-256-256-10 tanh
   categorical MLP, N = 1024, against ``fisher(estimator="exact", shape="diag")`` on the same
   inputs. Targets: score <= 2x, Hessian <= 6x (it needs the output-Hessian diagonals).
2. The closed form against ``monte_carlo_variance`` at the replicate count R that gives 10%
   relative precision of every variance entry. The relative standard error of a sample
   variance is about sqrt((kurtosis - 1) / R); the kurtosis of the replicate values is
   measured from a pilot run (median and 90th percentile over the entries), and R is taken
   for the 90th percentile. The Monte Carlo time is the per-replicate cost measured on the
   pilot times R (both are fisher calls of the same size, so this extrapolation is linear).

    python benchmarks/bench_variance.py [--threads 1,2] [--quick]
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import fisherkit  # noqa: E402
fv = importlib.import_module("fisherkit.variance")  # the module (fisherkit.variance may be the function)


def bench(threads: int, quick: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    repeat = 2 if quick else 3
    sizes = [784, 256, 256, 10]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1024, 784))
    with C.threads(threads):
        for dtype in (np.float64, np.float32):
            m = fisherkit.MLP.init(sizes, "tanh", "categorical", seed=0, dtype=dtype)
            Xd = X.astype(dtype)
            t_exact = C.best_of(lambda: fisherkit.fisher(m, Xd, shape="diag"), repeat).min
            name = np.dtype(dtype).name
            rows.append([threads, name, "exact diag (baseline)", C.fmt_time(t_exact), "-", "1.00x", "-"])
            times = {}
            for est, target in (("score", "<= 2x"), ("hessian", "<= 6x")):
                t = C.best_of(lambda: fv.variance(m, Xd, estimator=est, shape="diag"), repeat).min
                times[est] = t
                rows.append([threads, name, f"variance {est} diag", C.fmt_time(t), C.fmt_time(t_exact),
                             f"{t / t_exact:.2f}x", target])
            t = C.best_of(lambda: fv.covariance(m, Xd, shape="diag"), repeat).min
            rows.append([threads, name, "covariance diag", C.fmt_time(t), C.fmt_time(t_exact),
                         f"{t / t_exact:.2f}x", "-"])
            if dtype == np.float32 and quick:
                continue
            # Monte Carlo at 10% relative precision
            pilot = 16 if quick else 40
            for est in ("score", "hessian"):
                t0 = time.perf_counter()
                vals = np.array([fisherkit.fisher(m, Xd, estimator=est, shape="diag", seed=1000 + r).values
                                 for r in range(pilot)], dtype=np.float64)
                per_rep = (time.perf_counter() - t0) / pilot
                d = vals - vals.mean(0)
                v = (d * d).mean(0)
                ok = v > 1e-12 * v.max()
                kurt = (d ** 4).mean(0)[ok] / v[ok] ** 2
                k50, k90 = np.percentile(kurt, [50, 90])
                R = int(np.ceil((k90 - 1) / 0.1 ** 2)) + 1
                t_mc = per_rep * R
                rows.append([threads, name, f"MC {est} diag, R={R} (kurtosis median {k50:.2f}, p90 {k90:.2f})",
                             C.fmt_time(t_mc), f"closed form {C.fmt_time(times[est])}",
                             f"{t_mc / times[est]:.0f}x faster", "orders of magnitude"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(f"fisherkit {fisherkit.__version__}; load average {os.getloadavg()}")
    rows: list[list[str]] = []
    for k in C.parse_thread_counts(args.threads):
        rows += bench(k, args.quick)
    C.print_table(rows, ["thr", "dtype", "what", "time", "baseline", "ratio", "target"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
