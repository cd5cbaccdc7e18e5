"""Natural gradients without matrix inversion: kernel costs and training (issue 5).

    python benchmarks/bench_natgrad.py                 # both parts, about 3-5 minutes on 2 cores
    python benchmarks/bench_natgrad.py --part kernels  # (a) only
    python benchmarks/bench_natgrad.py --part training --epochs 20
    python benchmarks/bench_natgrad.py --part step     # (c) only

(a) Kernels, float64, in this process. For a layer of m = n units with fan-in n
    (1024 x 1024 and 4096 x 4096) the closed-form unit-wise natural gradient
    (``unit-meanfield``, docs/maths/natgrad.rst#natgrad-meanfield-solver) and the batched diagonal-plus-rank-2 solve
    ``fisherkit.linalg.dpr2_solve`` are timed as a ratio to a NumPy copy of one weight-sized
    array (read + write of m n values, the memory roofline; target <= 3x). The exact unit-block
    path (form (n+1)^2 blocks from N = 1024 inputs, Cholesky, two triangular solves) is timed
    on a subset of units and scaled to the layer (target: closed form >= 100x faster).
(b) Training a 64-128-128-10 tanh MLP on scikit-learn's bundled digits data (pip install
    scikit-learn; without it the script falls back to fisherkit.datasets.spirals and says so),
    minibatches of 256, same initialisation and seed for every method. Each method's learning
    rate is picked on a small grid (printed) by the training loss after a few epochs; then
    the full run reports epochs and wall time to reach a fixed training loss, the time per
    step and the final test accuracy. A plot (loss vs epoch and vs seconds) is saved to
    benchmarks/results/natgrad_training.png when matplotlib is installed.
(c) One optimizer step, ``optim.NaturalGradient(...).step`` against ``optim.SGD(...).step`` on the
    same batch: 784-256-256-10 tanh categorical MLP, batch 256, float64, one thread. Each
    method is timed with its default estimator and once with ``curvature_every`` (the
    statistics refreshed every k steps, the mean cost per step over k steps). The ``unit``
    method is also reported against its own flop bound: per layer the cheaper of forming and
    factoring the per-unit blocks (2 N (n+1)^2 + (n+1)^3 / 3 per unit) and the sample-space
    solve (one N x N Gram of the inputs, then N^3 / 3 per unit), at the GEMM rate measured
    in this process.
"""
from __future__ import annotations

import argparse
import os
import sys

# single-threaded BLAS/OpenMP for stable timings on a small shared machine (set before NumPy loads)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_of, measure_gemm_rate  # noqa: E402

import fisherkit as fk  # noqa: E402
from fisherkit import datasets, linalg, natgrad, optim  # noqa: E402
from fisherkit.matrices import _cholesky_solve  # noqa: E402
from fisherkit.meanfield import unit_moments  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


# ----------------------------------------------------------------------------- (a) kernels
def kernels(repeat: int) -> None:
    print("== (a) closed-form unit natural gradient vs a copy of the weights (float64) ==")
    rng = np.random.default_rng(0)
    print(f"{'layer':>11} {'copy':>9} {'dpr2_solve':>18} {'meanfield relu':>18} {'meanfield tanh':>18} {'A_k tanh':>9}")
    closed_1024 = None
    dpr2_rows: list[str] = []
    for n in (1024, 4096):
        W = rng.standard_normal((n, n)) / np.sqrt(n)
        dst = np.empty_like(W)
        t_copy = best_of(lambda: np.copyto(dst, W), repeat).min
        # dpr2: the isotropic unit FIM (docs/maths/natgrad.rst#natgrad-dpr2) as diag + rank 2 with damping
        d = np.ones((n, n + 1))
        U = rng.standard_normal((n, n + 1, 2))
        S = np.tile(np.array([[0.5, 0.2], [0.2, 0.0]]), (n, 1, 1))
        rhs = rng.standard_normal((n, n + 1))
        # dpr2_solve against one copy of its inputs (d, U, S, rhs: 4n(n+1) values) into fresh
        # arrays, as the solve writes a fresh result: both pay the same page faults
        for dt in (np.float64, np.float32):
            ins = [a.astype(dt) for a in (d, U, S, rhs)]
            t_in = best_of(lambda: [a.copy() for a in ins], repeat).min
            t_dt = best_of(lambda: linalg.dpr2_solve(*ins, damping=1e-3), repeat).min
            dpr2_rows.append(f"{n:>5}x{n:<5} {np.dtype(dt).name:>8} {t_in * 1e3:>9.2f}ms {t_dt * 1e3:>9.2f}ms "
                             f"{t_dt / t_in:>6.2f}x")
        t_dpr2 = best_of(lambda: linalg.dpr2_solve(d, U, S, rhs, damping=1e-3), repeat).min
        row = f"{n:>5}x{n:<5} {t_copy * 1e3:>7.2f}ms {t_dpr2 * 1e3:>9.2f}ms ({t_dpr2 / t_copy:4.1f}x)"
        for act in ("relu", "tanh"):
            model = fk.MLP([(W, 0.1 * rng.standard_normal(n)), (np.zeros((2, n)), np.zeros(2))], act, "categorical")
            X = rng.standard_normal((256, n))
            curv = natgrad.curvature(model, X, method="unit-meanfield", estimator="bpm")
            grads = [(rng.standard_normal((n, n)), rng.standard_normal(n)), (np.zeros((2, n)), np.zeros(2))]
            t = best_of(lambda: natgrad.natural_gradient(model, None, grads, method="unit-meanfield",
                                                         damping=1e-3, curvature=curv), repeat).min
            row += f" {t * 1e3:>9.2f}ms ({t / t_copy:4.1f}x)"
            if n == 1024 and act == "tanh":
                closed_1024 = t
        s = rng.uniform(0.8, 1.2, n)
        c = rng.normal(0, 0.1, n)
        t_ak = best_of(lambda: unit_moments("tanh", s, c), repeat).min
        row += f" {t_ak * 1e3:>7.2f}ms"
        print(row)
    print("(ratios to the copy; 'meanfield' is natural_gradient with precomputed statistics: two compiled row\n"
          " passes over W and G plus O(m) scalar work; for tanh that includes the A_k quadrature of\n"
          " meanfield.unit_moments, listed separately, which costs O(m x 256 nodes) and does not shrink with n)")
    print(f"\ndpr2_solve (one right-hand side per block) against one copy of its inputs into fresh arrays "
          f"(target <= 2x):\n{'blocks':>11} {'dtype':>8} {'copy':>11} {'dpr2_solve':>11} {'ratio':>7}")
    print("\n".join(dpr2_rows))
    # exact unit blocks at 1024 x 1024, on a subset of units, scaled to the layer
    n, N, sub = 1024, 1024, 8
    X = rng.standard_normal((N, n))
    Xt = np.hstack([X, np.ones((N, 1))])
    g2 = rng.random((N, sub))
    grhs = rng.standard_normal((sub, n + 1, 1))

    def exact() -> None:
        blocks = (g2.T[:, None, :] * Xt.T[None]) @ Xt / N
        blocks[:, np.arange(n + 1), np.arange(n + 1)] += 1e-3
        Lc = np.linalg.cholesky(blocks)
        np.linalg.solve(np.swapaxes(Lc, 1, 2), np.linalg.solve(Lc, grhs))

    def factor_only() -> None:
        Lc = np.linalg.cholesky(blocks_fixed)
        np.linalg.solve(np.swapaxes(Lc, 1, 2), np.linalg.solve(Lc, grhs))

    blocks_fixed = (g2.T[:, None, :] * Xt.T[None]) @ Xt / N + 1e-3 * np.eye(n + 1)
    t_exact = best_of(exact, 2).min * (n / sub)
    t_fact = best_of(factor_only, 2).min * (n / sub)
    print(f"exact unit blocks, 1024x1024 layer, N={N} (timed on {sub} units, scaled x{n // sub}): "
          f"form+factor+solve {t_exact:.2f} s, factor+solve only {t_fact:.2f} s; closed form (tanh) "
          f"{closed_1024 * 1e3:.2f} ms -> {t_exact / closed_1024:,.0f}x faster ({t_fact / closed_1024:,.0f}x vs "
          "factor+solve only)")


# ----------------------------------------------------------------------------- (c) one step
# (method, estimator): every method with the exact metric (C backward rows per input), and the
# mean-field method with one sampled backward row (bpm), whose pass costs about a gradient's
STEP_METHODS = [("unit-meanfield", "exact"), ("unit-meanfield", "bpm"), ("unit-correlated", "exact"),
                ("unit", "exact"), ("quasi-diagonal", "exact"), ("diag", "exact")]


def step(repeat: int, every: int) -> None:
    sizes, batch = [784, 256, 256, 10], 256
    print(f"\n== (c) one optimizer step: {'-'.join(map(str, sizes))} tanh categorical, batch {batch}, float64 ==")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    rates = measure_gemm_rate(np.float64, 512)
    gemm = 1e9 * max(r for r in (rates.get("fisherkit"), rates.get("numpy")) if r)

    def timed(make: Callable[[fk.MLP], Any], steps: int) -> float:
        model = fk.MLP.init(sizes, activation="tanh", seed=0)
        opt = make(model)
        opt.step(X, y)  # warm-up (allocations, first statistics)

        def run() -> None:
            for _ in range(steps):
                opt.step(X, y)

        return best_of(run, repeat).min / steps

    t_sgd = timed(lambda m: optim.SGD(m, 1e-3), 1)
    print(f"{'method':<17} {'estimator':<9} {'every':>5} {'ms/step':>9} {'x SGD':>7}")
    print(f"{'SGD':<17} {'':<9} {'':>5} {t_sgd * 1e3:>9.2f} {1.0:>7.2f}")
    for method, estimator in STEP_METHODS:
        for k in sorted({1, every}):
            t = timed(lambda m: optim.NaturalGradient(m, 1e-3, method=method, damping=1e-2, estimator=estimator,
                                                      curvature_every=k), k)
            print(f"{method:<17} {estimator:<9} {k:>5} {t * 1e3:>9.2f} {t / t_sgd:>7.2f}")
    # the bound: GEMM-shaped work at the GEMM rate, the per-unit factorisations at the rate the
    # engine's batched Cholesky (the same LAPACK the solver calls) reaches at that size
    chol_rates: dict[int, float] = {}

    def chol_rate(n: int) -> float:
        if n not in chol_rates:
            rng_c = np.random.default_rng(1)
            A = rng_c.standard_normal((32, n, n + 8))
            blocks = A @ A.transpose(0, 2, 1) / n
            rhs = rng_c.standard_normal((32, n, 1))
            t = best_of(lambda: _cholesky_solve(blocks, rhs, 0.0, "block"), repeat).min
            chol_rates[n] = 32 * (n ** 3 / 3 + 2 * n * n) / t
        return chol_rates[n]

    bound = 0.0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        k = n_in + 1
        blocks = 2 * batch * k * k * n_out / gemm + n_out * (k ** 3 / 3 + 2 * k * k) / chol_rate(k)
        sample = ((2 * batch * batch * k + 4 * n_out * batch * k) / gemm
                  + n_out * (batch ** 3 / 3 + 2 * batch * batch) / chol_rate(batch))
        bound += min(blocks, sample)  # the solver the method picks: unit blocks or the sample space
    rates = ", ".join(f"n={n}: {r / 1e9:.1f}" for n, r in sorted(chol_rates.items()))
    print(f"unit method bound (per layer the cheaper of unit blocks and the sample-space solve; GEMMs at "
          f"{gemm / 1e9:.1f} GFLOP/s, per-unit Cholesky at the measured {rates} GFLOP/s): {bound * 1e3:.2f} ms")


# ----------------------------------------------------------------------------- (b) training
def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    try:
        X, y = datasets.digits()
        name = "digits (scikit-learn)"
    except ImportError:
        print("scikit-learn is not installed (pip install scikit-learn): falling back to fisherkit.datasets.spirals")
        X, y = datasets.spirals(n=1800, classes=10, dim=64, seed=0)
        name = "spirals (fallback)"
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    X, y = X[perm], y[perm]
    cut = int(0.75 * len(y))
    return X[:cut], y[:cut], X[cut:], y[cut:], name


def make_optimizer(name: str, model: fk.MLP, lr: float, damping: float) -> Any:
    if name == "SGD":
        return optim.SGD(model, lr)
    if name == "Adam":
        return optim.Adam(model, lr)
    if name == "unit-meanfield (bpm)":
        return optim.NaturalGradient(model, lr, method="unit-meanfield", damping=damping, estimator="bpm")
    return optim.NaturalGradient(model, lr, method=name, damping=damping)


GRIDS = {
    "SGD": [0.1, 0.3, 1.0, 3.0],
    "Adam": [1e-3, 3e-3, 1e-2, 3e-2],
}
NG_GRID = [0.003, 0.01, 0.03, 0.1]
METHODS = ["SGD", "Adam", "diag", "quasi-diagonal", "unit", "unit-meanfield", "unit-meanfield (bpm)",
           "unit-correlated"]


def run(name: str, lr: float, data: tuple, epochs: int, batch: int, damping: float, target: float | None,
        stop_at_target: bool = False, make: Callable[[fk.MLP], Any] | None = None) -> dict[str, Any]:
    Xtr, ytr, Xte, yte = data
    model = fk.MLP.init([Xtr.shape[1], 128, 128, int(ytr.max()) + 1], activation="tanh", seed=0)
    opt = make(model) if make is not None else make_optimizer(name, model, lr, damping)
    rng = np.random.default_rng(1)
    losses, times, elapsed, steps = [model.loss(Xtr, ytr)], [0.0], 0.0, 0
    hit_epoch = hit_time = None
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(len(ytr))
        t0 = time.perf_counter()
        for lo in range(0, len(ytr), batch):
            idx = perm[lo:lo + batch]
            opt.step(Xtr[idx], ytr[idx])
            steps += 1
        elapsed += time.perf_counter() - t0
        loss = model.loss(Xtr, ytr)
        if not np.isfinite(loss):
            loss = float("inf")
        losses.append(loss)
        times.append(elapsed)
        if target is not None and hit_epoch is None and loss <= target:
            hit_epoch, hit_time = epoch, elapsed
            if stop_at_target:
                break
        if loss == float("inf"):
            break
    acc = float((model.forward(Xte).argmax(1) == yte).mean()) if np.isfinite(losses[-1]) else float("nan")
    return {"losses": losses, "times": times, "hit_epoch": hit_epoch, "hit_time": hit_time, "acc": acc,
            "per_step": elapsed / max(steps, 1), "final": losses[-1]}


def training(epochs: int, tune_epochs: int, batch: int, damping: float, target: float, methods: list[str]) -> None:
    Xtr, ytr, Xte, yte, dname = load_data()
    data = (Xtr, ytr, Xte, yte)
    print(f"\n== (b) training a {Xtr.shape[1]}-128-128-{int(ytr.max()) + 1} tanh MLP on {dname}: "
          f"{len(ytr)} train / {len(yte)} test, minibatch {batch}, damping {damping:g}, target loss {target:g} ==")
    results = {}
    for name in methods:
        grid = GRIDS.get(name, NG_GRID)
        scores = {}
        for lr in grid:
            r = run(name, lr, data, tune_epochs, batch, damping, None)
            scores[lr] = r["final"]
        best = min(scores, key=lambda k: scores[k])
        print(f"{name:<22} lr grid (train loss after {tune_epochs} epochs): " +
              ", ".join(f"{lr:g}: {v:.3f}" for lr, v in scores.items()) + f"  -> lr {best:g}")
        results[name] = (best, run(name, best, data, epochs, batch, damping, target))
    sgd_step = results["SGD"][1]["per_step"] if "SGD" in results else None
    print(f"\n{'method':<22} {'lr':>6} {'epochs to':>10} {'seconds to':>11} {'ms/step':>8} {'x SGD':>6} "
          f"{'final loss':>11} {'test acc':>9}")
    print(f"{'':<22} {'':>6} {'loss ' + format(target, 'g'):>10} {'loss ' + format(target, 'g'):>11}")
    for name, (lr, r) in results.items():
        he = "-" if r["hit_epoch"] is None else str(r["hit_epoch"])
        ht = "-" if r["hit_time"] is None else f"{r['hit_time']:.2f}"
        rel = f"{r['per_step'] / sgd_step:.2f}" if sgd_step else "-"
        print(f"{name:<22} {lr:>6g} {he:>10} {ht:>11} {r['per_step'] * 1e3:>8.2f} {rel:>6} {r['final']:>11.4f} "
              f"{r['acc']:>9.3f}")
    print(f"('-': target not reached in {epochs} epochs; time excludes the per-epoch evaluation)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, (lr, r) in results.items():
        ax[0].semilogy(range(len(r["losses"])), r["losses"], label=f"{name} (lr {lr:g})")
        ax[1].loglog(r["times"][1:], r["losses"][1:], label=name)
    for a, xl in zip(ax, ("epoch", "seconds of training (log)")):
        a.axhline(target, color="gray", lw=0.8, ls="--")
        a.set_xlabel(xl)
        a.set_ylabel("training loss")
    ax[0].legend(fontsize=7)
    fig.suptitle(f"{dname}: 64-128-128-10 tanh MLP, minibatch {batch}")
    fig.tight_layout()
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "natgrad_training.png")
    fig.savefig(path, dpi=110)
    print(f"plot saved to {path}")


def refresh_sweep(epochs: int, tune_epochs: int, batch: int, damping: float, target: float,
                  method: str = "unit-correlated", everies: tuple[int, ...] = (1, 2, 5, 10, 20)) -> None:
    """How often `method` needs its curvature (statistics and the eigendecomposition of each
    layer's input covariance): training on the same data with ``curvature_every`` k, at the
    learning rate tuned for k = 1. The optimizer's default is the largest k whose final
    training loss stays within 10% of k = 1's and that reaches the target no later."""
    Xtr, ytr, Xte, yte, dname = load_data()
    data = (Xtr, ytr, Xte, yte)

    def train(lr: float, k: int, n_epochs: int) -> dict[str, Any]:
        return run(method, lr, data, n_epochs, batch, damping, target, make=lambda model: optim.NaturalGradient(
            model, lr, method=method, damping=damping, curvature_every=k))

    scores = {lr: train(lr, 1, tune_epochs)["final"] for lr in NG_GRID}
    lr = min(scores, key=lambda v: scores[v])
    print(f"\n== (d) curvature refresh for {method} on {dname}, lr {lr:g} (tuned at every=1), damping "
          f"{damping:g}, {epochs} epochs, target loss {target:g} ==")
    print(f"{'every':>5} {'final loss':>11} {'epochs to target':>17} {'ms/step':>8} {'test acc':>9}")
    rows = {}
    for k in everies:
        r = train(lr, k, epochs)
        rows[k] = r
        he = "-" if r["hit_epoch"] is None else str(r["hit_epoch"])
        print(f"{k:>5} {r['final']:>11.4f} {he:>17} {r['per_step'] * 1e3:>8.2f} {r['acc']:>9.3f}")
    base = rows[everies[0]]
    ok = [k for k, r in rows.items() if r["final"] <= 1.1 * base["final"]
          and (base["hit_epoch"] is None or (r["hit_epoch"] is not None and r["hit_epoch"] <= base["hit_epoch"]))]
    print(f"largest every within 10% of every=1's final loss and no later to the target: {max(ok)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("all", "kernels", "training", "step", "refresh"), default="all")
    ap.add_argument("--every", type=int, default=10, help="curvature_every for part (c)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--tune-epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--damping", type=float, default=1e-2)
    ap.add_argument("--target", type=float, default=0.1)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    print(f"fisherkit {fk.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    if args.part in ("all", "kernels"):
        kernels(args.repeat)
    if args.part in ("all", "step"):
        step(args.repeat, args.every)
    if args.part in ("all", "training"):
        training(args.epochs, args.tune_epochs, args.batch, args.damping, args.target, args.methods.split(","))
    if args.part in ("all", "refresh"):
        refresh_sweep(args.epochs, args.tune_epochs, args.batch, args.damping, args.target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
