"""Per-sample gradients and the batch gradient of an MLP: fisherkit against NumPy and
against the GEMM / memory roofline, all measured in the same process.

    python benchmarks/bench_mlp.py                      # 784-256-256-10 tanh, N=1024, 1 and 2 threads
    python benchmarks/bench_mlp.py --threads 1 --dtypes float64 --repeat 3

Model: a tanh MLP with a categorical head (default sizes 784-256-256-10, N = 1024).
Per-sample gradients G (N x P) of -log p(y_n | x_n):
  forward   z_l = a_{l-1} W_l^T + b_l                  2 N sum_l n_in n_out flops (GEMM)
  backward  D_{l-1} = (D_l W_l) * phi'(z_{l-1})        2 N sum_{l>=2} n_in n_out flops (GEMM)
  outer     G[n, W_l] = D_l[n] a_{l-1}[n]^T            N P values written (no GEMM)
The batch gradient replaces the outer products by the GEMMs D_l^T a_{l-1}
(2 N sum_l n_in n_out flops) and writes only P values.

Baselines (see benchmarks/README.md):
  numpy      the same computation in vectorised NumPy, written below;
  flop bound the GEMM flops at the square-GEMM rate measured now (best of NumPy's BLAS and
             fisherkit's own scipy-openblas32);
  roofline   flop bound + the N P output bytes at the measured copy bandwidth (read + write
             bytes): the honest floor for per-sample gradients, whose cost is writing G.
Each thread count runs in a fresh child process started with OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS set (see _common.run_per_thread_count).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


# ----------------------------------------------------------------------------- NumPy reference
def np_forward(Ws: list[np.ndarray], bs: list[np.ndarray], X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Activations [a_0 = X, a_1, ..., a_{L-1}] (tanh hidden layers) and the logits h."""
    A = [X]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        Z = A[-1] @ W.T
        Z += b
        if l < len(Ws) - 1:
            np.tanh(Z, out=Z)
            A.append(Z)
        else:
            return A, Z
    raise AssertionError("unreachable")


def np_residual(H: np.ndarray, y: np.ndarray) -> np.ndarray:
    """softmax(h) - onehot(y): the gradient of -log p(y | h) with respect to h."""
    P = H - H.max(axis=1, keepdims=True)
    np.exp(P, out=P)
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(P.shape[0]), y] -= 1
    return P


def np_backward(Ws: list[np.ndarray], A: list[np.ndarray], D: np.ndarray) -> list[np.ndarray]:
    """[D_1, ..., D_L]: derivatives with respect to z_l, from D_L = residual (tanh' = 1 - a^2)."""
    Ds = [D]
    for l in range(len(Ws) - 1, 0, -1):
        Dn = Ds[0] @ Ws[l]
        Dn *= 1 - A[l] * A[l]
        Ds.insert(0, Dn)
    return Ds


def np_loss(H: np.ndarray, y: np.ndarray) -> float:
    m = H.max(axis=1)
    lse = m + np.log(np.exp(H - m[:, None]).sum(axis=1))
    return float((lse - H[np.arange(H.shape[0]), y]).mean())


def np_write_per_sample(Ws: list[np.ndarray], A: list[np.ndarray], Ds: list[np.ndarray], G: np.ndarray) -> np.ndarray:
    """Write the per-sample outer products into G (N x P), layer by layer: W_l row-major then b_l."""
    N, off = G.shape[0], 0
    for W, a, d in zip(Ws, A, Ds):
        no, ni = W.shape
        Gw = G[:, off:off + no * ni].reshape(N, no, ni)  # a view: splits the last axis only
        np.multiply(d[:, :, None], a[:, None, :], out=Gw)
        G[:, off + no * ni:off + no * ni + no] = d
        off += no * ni + no
    return G


def np_per_sample_grads(Ws, bs, X, y) -> np.ndarray:
    A, H = np_forward(Ws, bs, X)
    Ds = np_backward(Ws, A, np_residual(H, y))
    P = sum(W.size + b.size for W, b in zip(Ws, bs))
    return np_write_per_sample(Ws, A, Ds, np.empty((X.shape[0], P), X.dtype))


def np_gradient(Ws, bs, X, y) -> tuple[float, np.ndarray]:
    A, H = np_forward(Ws, bs, X)
    loss = np_loss(H, y)
    Ds = np_backward(Ws, A, np_residual(H, y))
    N = X.shape[0]
    parts = []
    for a, d in zip(A, Ds):
        parts.append((d.T @ a).ravel() / N)
        parts.append(d.sum(axis=0) / N)
    return loss, np.concatenate(parts)


# ----------------------------------------------------------------------------- one thread count
def flop_counts(sizes: list[int], N: int) -> dict[str, float]:
    pairs = list(zip(sizes[:-1], sizes[1:]))
    fwd = 2.0 * N * sum(i * o for i, o in pairs)
    bwd = 2.0 * N * sum(i * o for i, o in pairs[1:])
    return {"forward": fwd, "backward": bwd, "weight_grad": fwd}


def close(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> tuple[bool, float]:
    """allclose with a tolerance scaled to the dtype and to the size of b; the max error."""
    scale = float(np.abs(b).max()) or 1.0
    err = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) / scale
    return err <= (2e-4 if dtype == np.float32 else 1e-10), err


def run_dtype(dtype: np.dtype, sizes: list[int], N: int, repeat: int, diagnose: bool) -> dict[str, Any]:
    import fisherkit
    from fisherkit._loader import _core

    rng = np.random.default_rng(0)
    model = fisherkit.MLP.init(sizes, "tanh", "categorical", seed=0, dtype=dtype)
    Ws = [np.asarray(W) for W in model.weights]
    bs = [np.asarray(b) for b in model.biases]
    X = rng.standard_normal((N, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], N)
    P = model.n_params
    itemsize = np.dtype(dtype).itemsize

    # one N x P array is alive at a time (plus a block); refuse politely if even that won't fit
    from fisherkit._validate import available_memory

    out_bytes = float(N * P * itemsize)
    avail = available_memory()
    if out_bytes * 1.25 + (256 << 20) > avail:
        print(f"# {np.dtype(dtype).name}: skipped, N x P needs {out_bytes / 2**30:.2f} GiB and only "
              f"{avail / 2**30:.2f} GiB is available; try a smaller --n", file=sys.stderr)
        return {"dtype": np.dtype(dtype).name, "skipped": True}
    budget = int(avail * 0.8)  # the library's default budget is half; this benchmark holds one G

    # correctness first: fisherkit against the NumPy implementation (compared in row blocks)
    G_fk = model.per_sample_grads(X, y, max_bytes=budget)
    errs, colsum = [], np.zeros(P)
    for s0 in range(0, N, 128):
        blk = slice(s0, min(N, s0 + 128))
        G_blk = np_per_sample_grads(Ws, bs, X[blk], y[blk])
        errs.append(close(G_fk[blk], G_blk, dtype)[1])
        colsum += G_blk.sum(axis=0, dtype=np.float64)
    del G_fk, G_blk
    err_psg = max(errs)
    ok_psg = err_psg <= (2e-4 if dtype == np.float32 else 1e-10)
    loss_fk, g_fk = model.gradient(X, y)
    loss_np, g_np = np_gradient(Ws, bs, X, y)
    ok_g, err_g = close(g_fk, g_np, dtype)
    ok_gm, err_gm = close(g_np, colsum / N, dtype)
    ok_loss = abs(loss_fk - loss_np) <= (1e-4 if dtype == np.float32 else 1e-10) * max(1.0, abs(loss_np))
    if not (ok_psg and ok_g and ok_gm and ok_loss):
        raise SystemExit(f"{dtype.name}: fisherkit and NumPy disagree: per-sample rel err {err_psg:.2e}, "
                         f"gradient {err_g:.2e}, mean of per-sample vs gradient {err_gm:.2e}, "
                         f"loss {loss_fk} vs {loss_np}")

    # machine rates before the timings; measured again after them and the best kept, so a
    # disturbance during one measurement cannot make the bounds look easy
    gemm = C.measure_gemm_rate(dtype)
    bw = C.measure_bandwidth()
    fl = flop_counts(sizes, N)

    t = {}
    t["fk_psg"] = C.best_of(lambda: model.per_sample_grads(X, y, max_bytes=budget), repeat)
    t["np_psg"] = C.best_of(lambda: np_per_sample_grads(Ws, bs, X, y), repeat)
    t["fk_grad"] = C.best_of(lambda: model.gradient(X, y), repeat)
    t["np_grad"] = C.best_of(lambda: np_gradient(Ws, bs, X, y), repeat)

    if diagnose:
        # fisherkit's pieces
        t["fk_forward"] = C.best_of(lambda: model.forward(X), repeat)
        Xc, yc = model._inputs(X, y)
        G = np.ones((N, P), dtype)  # allocated and touched once
        args = (*model._core_args(), model.head, model.sigma, Xc, yc)
        t["fk_psg_prealloc"] = C.best_of(lambda: model.per_sample_grads(X, y, out=G), repeat)
        t["fk_psg_prealloc_chunkN"] = C.best_of(lambda: _core.per_sample_grads(*args, G, N), repeat)
        # the GEMMs alone, at the model's shapes, through NumPy
        A, H = np_forward(Ws, bs, X)
        Ds = np_backward(Ws, A, np_residual(H, y))
        Z = [np.empty((N, W.shape[0]), dtype) for W in Ws]
        Bk = [np.empty((N, W.shape[1]), dtype) for W in Ws]
        Gw = [np.empty(W.shape, dtype) for W in Ws]

        def fwd_gemms() -> None:
            for a, W, z in zip(A, Ws, Z):
                np.matmul(a, W.T, out=z)

        def bwd_gemms() -> None:
            for l in range(1, len(Ws)):
                np.matmul(Ds[l], Ws[l], out=Bk[l])

        def wgrad_gemms() -> None:
            for a, d, g in zip(A, Ds, Gw):
                np.matmul(d.T, a, out=g)

        t["np_fwd_gemms"] = C.best_of(fwd_gemms, repeat)
        t["np_bwd_gemms"] = C.best_of(bwd_gemms, repeat)
        t["np_wgrad_gemms"] = C.best_of(wgrad_gemms, repeat)
        t["np_outer_prealloc"] = C.best_of(lambda: np_write_per_sample(Ws, A, Ds, G), repeat)
        t["fill_G"] = C.best_of(lambda: G.fill(1.0), repeat)
        del G
        t["alloc_touch"] = C.best_of(lambda: np.ones((N, P), dtype), repeat)
        Zt = np.random.default_rng(2).standard_normal((N, sum(sizes[1:-1]))).astype(dtype)
        t["np_tanh"] = C.best_of(lambda: np.tanh(Zt), repeat)

    gemm2 = C.measure_gemm_rate(dtype)
    bw2 = C.measure_bandwidth()
    gemm = {k: max((v for v in (gemm[k], gemm2[k]) if v), default=None) for k in gemm}
    bw = {k: max(bw[k], bw2[k]) for k in bw}
    rate = C.gemm_rate(gemm) * 1e9
    return {
        "dtype": np.dtype(dtype).name, "N": N, "sizes": sizes, "P": P, "out_bytes": out_bytes,
        "gemm": gemm, "bw": bw, "rate": rate, "flops": fl,
        "errors": {"per_sample": err_psg, "gradient": err_g},
        "times": {k: {"min": v.min, "median": v.median} for k, v in t.items()},
    }


def run_child(k: int, args: argparse.Namespace) -> dict[str, Any]:
    import fisherkit

    env = {v: os.environ[v] for v in sorted(os.environ)
           if v.startswith(("OMP_", "OPENBLAS_", "GOMP_", "MKL_"))}
    res = {"threads": k, "blas_control": C.blas_thread_control(), "env": env, "results": []}
    res["load_before"] = os.getloadavg()[0]
    with C.threads(k):
        res["fisherkit_blas"] = fisherkit.info()["blas"]
        for d in args.dtypes.split(","):
            res["results"].append(run_dtype(np.dtype(d), args.sizes, args.n, args.repeat, args.diagnose))
    res["load_after"] = os.getloadavg()[0]
    return res


# ----------------------------------------------------------------------------- report
def report(children: list[dict[str, Any]]) -> None:
    rows, diag_rows, machine_rows, summaries = [], [], [], []
    for ch in children:
        k = ch["threads"]
        for r in ch["results"]:
            if r.get("skipped"):
                summaries.append(f"{r['dtype']} threads={k}: skipped (not enough free memory for N x P)")
                continue
            T = {name: v["min"] for name, v in r["times"].items()}
            med = {name: v["median"] for name, v in r["times"].items()}
            fl, rate, bw = r["flops"], r["rate"], r["bw"]
            g = r["gemm"]
            machine_rows.append([k, r["dtype"], g["numpy"], g["fisherkit"] or "-", g["forward"] or "-",
                                 bw["copy"], bw["fill"], bw["fresh"]])
            psg_flop = (fl["forward"] + fl["backward"]) / rate
            psg_write = r["out_bytes"] / (bw["copy"] * 1e9)
            psg_roof = psg_flop + psg_write
            grad_flop = (fl["forward"] + fl["backward"] + fl["weight_grad"]) / rate
            rows.append([k, r["dtype"], "per_sample_grads", C.fmt_time(T["fk_psg"]), C.fmt_time(med["fk_psg"]),
                         C.fmt_time(T["np_psg"]), T["fk_psg"] / T["np_psg"],
                         C.fmt_time(psg_flop), T["fk_psg"] / psg_flop,
                         C.fmt_time(psg_roof), T["fk_psg"] / psg_roof])
            rows.append([k, r["dtype"], "gradient", C.fmt_time(T["fk_grad"]), C.fmt_time(med["fk_grad"]),
                         C.fmt_time(T["np_grad"]), T["fk_grad"] / T["np_grad"],
                         C.fmt_time(grad_flop), T["fk_grad"] / grad_flop, "-", "-"])
            if "fk_forward" in T:
                fwd_flop = fl["forward"] / rate
                bwd_flop = fl["backward"] / rate
                est_write = T["fk_psg_prealloc"] - T["fk_forward"] - T["np_bwd_gemms"]
                diag_rows += [
                    [k, r["dtype"], "fk forward (public MLP.forward)", C.fmt_time(T["fk_forward"]), C.fmt_time(fwd_flop)],
                    [k, r["dtype"], "np forward GEMMs at model shapes", C.fmt_time(T["np_fwd_gemms"]), C.fmt_time(fwd_flop)],
                    [k, r["dtype"], "np backward GEMMs (D_l W_l)", C.fmt_time(T["np_bwd_gemms"]), C.fmt_time(bwd_flop)],
                    [k, r["dtype"], "np weight-grad GEMMs (D^T a)", C.fmt_time(T["np_wgrad_gemms"]), C.fmt_time(fwd_flop)],
                    [k, r["dtype"], "fk per_sample_grads, public (fresh G)", C.fmt_time(T["fk_psg"]), C.fmt_time(psg_roof)],
                    [k, r["dtype"], "fk per_sample_grads into touched G", C.fmt_time(T["fk_psg_prealloc"]), C.fmt_time(psg_roof)],
                    [k, r["dtype"], "  same, chunk=N", C.fmt_time(T["fk_psg_prealloc_chunkN"]), C.fmt_time(psg_roof)],
                    [k, r["dtype"], "  its write phase (est: touched - fwd - bwd)", C.fmt_time(est_write), C.fmt_time(psg_write)],
                    [k, r["dtype"], "np outer products into touched G", C.fmt_time(T["np_outer_prealloc"]), C.fmt_time(psg_write)],
                    [k, r["dtype"], "G.fill(1) (touched, write only)", C.fmt_time(T["fill_G"]), C.fmt_time(psg_write)],
                    [k, r["dtype"], "np.ones((N,P)) (page faults + write)", C.fmt_time(T["alloc_touch"]), C.fmt_time(psg_write)],
                    [k, r["dtype"], "np.tanh of the hidden pre-activations", C.fmt_time(T["np_tanh"]), "-"],
                ]
            tgt_gemm = "yes" if T["fk_psg"] <= 1.5 * psg_roof else "NO"
            tgt_np = "yes" if T["fk_psg"] < T["np_psg"] else "NO"
            summaries.append(
                f"{r['dtype']} threads={k}: per_sample_grads {C.fmt_time(T['fk_psg'])} = "
                f"{T['fk_psg'] / T['np_psg']:.2f}x NumPy ({tgt_np} faster), "
                f"{T['fk_psg'] / psg_roof:.2f}x flop+write roofline (<=1.5x: {tgt_gemm}), "
                f"{T['fk_psg'] / psg_flop:.1f}x flop-only bound; gradient {T['fk_grad'] / T['np_grad']:.2f}x NumPy, "
                f"{T['fk_grad'] / grad_flop:.2f}x its GEMM bound")
    done = [r for ch in children for r in ch["results"] if not r.get("skipped")]
    if not done:
        print("\n".join(summaries))
        return
    r0 = done[0]
    print()
    print(f"MLP {'-'.join(map(str, r0['sizes']))} tanh categorical, N = {r0['N']}, P = {r0['P']}; "
          f"fisherkit BLAS: {children[0]['fisherkit_blas']}; NumPy BLAS threads via {children[0]['blas_control']}")
    for ch in children:
        print(f"threads={ch['threads']}: 1-minute load average {ch['load_before']:.1f} before, "
              f"{ch['load_after']:.1f} after (machine has {os.cpu_count()} CPUs); environment: "
              + " ".join(f"{a}={b}" for a, b in ch["env"].items()))
    print()
    print("Machine, measured in each child (GEMM GFLOP/s at n=1024; bandwidth GB/s):")
    C.print_table(machine_rows, ["thr", "dtype", "gemm numpy", "gemm fk-blas", "gemm fk-forward",
                                 "bw copy(r+w)", "bw fill", "bw fresh-alloc"])
    print()
    print("Timings (min of repeats; ratios use the min):")
    C.print_table(rows, ["thr", "dtype", "op", "fisherkit", "fk median", "numpy", "fk/np",
                         "flop bound", "fk/flop", "flop+write", "fk/roof"])
    if diag_rows:
        print()
        print("Where per_sample_grads spends its time (min of repeats; 'ideal' = at the measured GEMM rate / copy bandwidth):")
        C.print_table(diag_rows, ["thr", "dtype", "piece", "time", "ideal"])
    print()
    for s in summaries:
        print(s)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--n", type=int, default=1024, help="samples N (default 1024)")
    p.add_argument("--sizes", default="784,256,256,10", help="layer widths (default 784,256,256,10)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats per measurement (min is reported)")
    p.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                   help="skip the breakdown of per_sample_grads into forward, backward and writes")
    p.add_argument("--no-reexec", action="store_true",
                   help="run every thread count in this process (threads set at run time only)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the per-thread-count children, e.g. "
                        "OMP_WAIT_POLICY=passive (repeatable)")
    p.add_argument(C.CHILD_FLAG, dest="child_json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    counts = C.parse_thread_counts(args.threads)

    if args.child_json:
        res = run_child(counts[0], args)
        with open(args.child_json, "w") as fh:
            json.dump(res, fh)
        print(f"# threads={counts[0]} done", file=sys.stderr)
        return
    if args.no_reexec:
        children = [run_child(k, args) for k in counts]
    else:
        passthrough = [a for i, a in enumerate(argv) if not (a.startswith("--threads") or
                       (i > 0 and argv[i - 1] == "--threads"))]
        extra = dict(e.split("=", 1) for e in args.env)
        children = C.run_per_thread_count(os.path.abspath(__file__), passthrough, counts, extra)
    report(children)


if __name__ == "__main__":
    main()
