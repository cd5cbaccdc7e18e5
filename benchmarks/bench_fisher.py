"""Fisher estimator benchmarks (issue 3), as ratios to baselines measured in the same
process (these machines are noisy):

1. exact "full" for a 20-64-64-5 relu categorical MLP, N = 1024, float64, against the SYRK
   it needs (N C P^2 flops: the Gram of N*C pseudo-gradient rows) at the BLAS rate measured
   here. Target <= 1.5x.
2. exact "diag" and "unit" for 784-256-256-10 tanh categorical, N = 1024: diag against a
   per-sample gradient pass (target <= 3x), unit against its per-unit SYRKs
   (sum_l n_l N (n_{l-1}+1)^2 flops) at the BLAS rate (target <= 1.5x); and "unit" for
   20-48-48-5, N = 4096, whose fan-in below 64 takes one packed GEMM per layer, against the
   same flops at the GEMM rate (issue 14's target: <= 1.3x), and against the GEMMs the pass
   runs (forward, backward over N C rows, the packed Grams) timed in NumPy at their shapes.
3. Peak extra memory (RSS above the inputs) of "diag" at N = 65536 against N = 1024, each in
   a fresh subprocess (target <= 2x).

    python benchmarks/bench_fisher.py [--threads 1,2] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import fisherkit  # noqa: E402


def _status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: now; VmHWM: this process image's peak,
    unlike ru_maxrss, which keeps the parent's peak across fork+exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(n: int) -> None:
    """Runs in a fresh process: peak RSS of fisher(diag) above the RSS with X in memory."""
    model = fisherkit.MLP.init([784, 256, 256, 10], "tanh", "categorical", seed=0)
    X = np.random.default_rng(0).standard_normal((n, 784))
    fisherkit.fisher(model, X[:64], shape="diag")  # load libraries, warm up
    base = _status_kib("VmHWM") * 1024  # the peak so far, X and the warm-up included
    fisherkit.fisher(model, X, shape="diag")
    peak = _status_kib("VmHWM") * 1024
    rss = _status_kib("VmRSS") * 1024
    print(json.dumps({"n": n, "extra": max(peak - min(base, rss), 0), "x_bytes": X.nbytes}))


def unit_pass_gemms(sizes: list[int], n: int, dtype: Any) -> C.Roofline:
    """The GEMMs the exact unit pass of a categorical MLP cannot avoid, run by NumPy and SciPy
    at the same shapes (a floor under the pass, beside the flop bound): the forward, the
    backward over the n C rows of the output's square-root covariance, and each layer's
    weighted unit Grams: for 8 units or more the packed GEMM fisherkit runs, else one SYRK
    per unit. Building the triangles, the head and the activations are left out: the pass's
    own work, not GEMMs."""
    rf = C.Roofline(dtype)
    rf.forward(sizes, n)
    rf.backprop(sizes, n * sizes[-1])
    for n_in, n_out in C.layer_shapes(sizes):
        if n_out >= 8:
            rf.packed_gram(n_out, n, n_in + 1)
        else:
            rf.syrk(n_in + 1, n, count=n_out)
    return rf


def bench(threads: int, quick: bool) -> list[list[str]]:
    rows = []
    repeat = 2 if quick else 3
    with C.threads(threads):
        rate64 = C.gemm_rate(C.measure_gemm_rate(np.float64))
        rate32 = C.gemm_rate(C.measure_gemm_rate(np.float32))
        rng = np.random.default_rng(0)
        # 1. exact full
        m = fisherkit.MLP.init([20, 64, 64, 5], "relu", "categorical", seed=0)
        X = rng.standard_normal((1024, 20))
        P = m.n_params
        t = C.best_of(lambda: fisherkit.fisher(m, X, shape="full"), repeat).min
        bound = 1024 * 5 * P * P / (rate64 * 1e9)
        rows.append([threads, "float64", f"exact full 20-64-64-5 (P={P})", C.fmt_time(t),
                     f"SYRK {C.fmt_time(bound)}", f"{t / bound:.2f}x", "<= 1.5x"])
        # 2. diag and unit
        sizes = [784, 256, 256, 10]
        X = rng.standard_normal((1024, 784))
        y = rng.integers(0, 10, 1024)
        unit_flops = sum(o * 1024 * (i + 1) ** 2 for i, o in zip(sizes[:-1], sizes[1:]))
        for dtype, rate in ((np.float64, rate64), (np.float32, rate32)):
            m = fisherkit.MLP.init(sizes, "tanh", "categorical", seed=0, dtype=dtype)
            G = np.empty((1024, m.n_params), dtype)
            psg = C.best_of(lambda: m.per_sample_grads(X, y, out=G), repeat).min
            d = C.best_of(lambda: fisherkit.fisher(m, X, shape="diag"), repeat).min
            rows.append([threads, np.dtype(dtype).name, "exact diag 784-256-256-10", C.fmt_time(d),
                         f"per-sample grads {C.fmt_time(psg)}", f"{d / psg:.2f}x", "<= 3x"])
            for est in ("score", "hessian"):
                te = C.best_of(lambda: fisherkit.fisher(m, X, estimator=est, shape="diag", seed=0), repeat).min
                rows.append([threads, np.dtype(dtype).name, f"{est} diag (S=1)", C.fmt_time(te),
                             f"per-sample grads {C.fmt_time(psg)}", f"{te / psg:.2f}x", "-"])
            if not quick or dtype == np.float64:
                u = C.best_of(lambda: fisherkit.fisher(m, X, shape="unit"), 1 if quick else 2).min
                ub = unit_flops / (rate * 1e9)
                rows.append([threads, np.dtype(dtype).name, "exact unit 784-256-256-10", C.fmt_time(u),
                             f"SYRKs {C.fmt_time(ub)}", f"{u / ub:.2f}x", "<= 1.5x"])
        small = [20, 48, 48, 5]
        Xs = rng.standard_normal((4096, 20))
        small_flops = sum(o * 4096 * (i + 1) ** 2 for i, o in zip(small[:-1], small[1:]))
        for dtype, rate in ((np.float64, rate64), (np.float32, rate32)):
            m = fisherkit.MLP.init(small, "tanh", "categorical", seed=0, dtype=dtype)
            Xd = Xs.astype(dtype)
            buf = np.empty(m.layout.size("unit"), dtype)
            u = C.best_of(lambda: fisherkit.fisher(m, Xd, shape="unit", out=buf), repeat).min
            ub = small_flops / (rate * 1e9)
            rows.append([threads, np.dtype(dtype).name, "exact unit 20-48-48-5 N=4096, out=", C.fmt_time(u),
                         f"GEMM rate {C.fmt_time(ub)}", f"{u / ub:.2f}x", "<= 1.3x"])
            floor = C.best_of(unit_pass_gemms(small, 4096, dtype), repeat).min
            rows.append([threads, np.dtype(dtype).name, "  the same, against the GEMMs the pass runs", C.fmt_time(u),
                         f"NumPy GEMMs {C.fmt_time(floor)} ({floor / ub:.2f}x the bound)", f"{u / floor:.2f}x", "-"])
        rows.append([threads, "-", "BLAS rate (fisherkit's OpenBLAS)", "-",
                     f"{rate64:.1f} / {rate32:.1f} GFLOP/s f64/f32", "-", "-"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return 0
    print(f"fisherkit {fisherkit.__version__}; load average {os.getloadavg()}")
    rows = []
    for k in C.parse_thread_counts(args.threads):
        rows += bench(k, args.quick)
    C.print_table(rows, ["thr", "dtype", "what", "time", "baseline", "ratio", "target"])
    mem = {}
    for n in (1024, 65536):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n)], capture_output=True,
                             text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        mem[n] = json.loads(out.stdout.strip().splitlines()[-1])
    r = mem[65536]["extra"] / max(mem[1024]["extra"], 1)
    print(f"\npeak extra memory of exact diag: N=1024 {mem[1024]['extra'] / 2**20:.1f} MiB, "
          f"N=65536 {mem[65536]['extra'] / 2**20:.1f} MiB (X itself: {mem[65536]['x_bytes'] / 2**20:.0f} MiB) "
          f"-> {r:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
