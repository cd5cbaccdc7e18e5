"""KFAC and EKFAC benchmarks (issue 13), as ratios to baselines measured in the same process:

On 784-128-10 and 784-1024-512-10 (tanh, categorical head), N = 1024, float64 and float32,
one thread:

1. the exact KFAC factors (fisher(..., shape="kfac")) against their GEMM roofline: the
   forward pass (2 N sum_l n_in n_out), the backward pass of C rows per input
   (2 N C sum_{l>=2} n_in n_out) and the two SYRKs per layer (N k_l^2 + N C n_l^2, k_l =
   n_in + 1), at the GEMM rate measured here. Target <= 1.5x. And against the same BLAS
   calls of the same shapes (NumPy's matmul, SciPy's SYRKs), timed alternately with the
   factors (fastest against fastest): SYRKs run below the square-GEMM rate, and this ratio
   is what the engine adds to them. Target <= 1.2x.
2. EKFAC (shape="ekfac": the factors, their eigendecompositions, the re-fit pass) against the
   roofline of its two passes (the second: forward, backward, the rotations 2 N k_l^2 and
   2 N C n_l^2, the GEMM 2 N n_l k_l), the eigendecompositions shown apart.
3. a damped solve K.solve(v, 1e-3) with the eigendecompositions cached (4 sum_l n_l k_l
   (n_l + k_l) flops), and the first solve, which computes them.
4. kfac_error against its roofline (the factor and EKFAC passes plus the Grams of the input
   pairs) and against the factors' time. Target on 784-128-10: < 10x the factors.
5. curvlinops' KFACLinearOperator (fisher_type="type-2", separate_weight_and_bias=False:
   the same matrix) and BackPACK's KFLR on the same weights and inputs, where installed.
   Target: the factors at least 5x faster than the fastest peer.

Times are medians of --repeat runs (the minimum in the table too). The machine is noisy;
the table goes to benchmarks/results/kfac.md with --write.

    python benchmarks/bench_kfac.py [--repeat 5] [--quick] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import fisherkit  # noqa: E402

N = 1024
NETS = ([784, 128, 10], [784, 1024, 512, 10])
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "kfac.md")


def factor_flops(sizes: list[int], n: int) -> float:
    C_ = sizes[-1]
    f = 0.0
    for l, (ni, no) in enumerate(zip(sizes[:-1], sizes[1:])):
        f += 2.0 * n * ni * no  # forward
        if l > 0:
            f += 2.0 * n * C_ * ni * no  # backward rows into this layer's inputs
        f += n * (ni + 1) ** 2 + n * C_ * no ** 2  # the two SYRKs (half of a GEMM each)
    return f


def ekfac_pass_flops(sizes: list[int], n: int) -> float:
    C_ = sizes[-1]
    f = 0.0
    for l, (ni, no) in enumerate(zip(sizes[:-1], sizes[1:])):
        k = ni + 1
        f += 2.0 * n * ni * no + (2.0 * n * C_ * ni * no if l > 0 else 0.0)
        f += 2.0 * n * k * k + 2.0 * n * C_ * no * no + 2.0 * n * no * k
    return f


def pair_flops(sizes: list[int], n: int) -> float:
    """The GEMMs of kfac_error's input pairs (n^2 ordered pairs, as the engine computes them)."""
    C_ = sizes[-1]
    f = 0.0
    for ni, no in zip(sizes[:-1], sizes[1:]):
        per = no * (no + 1) / 2 if no + 1 <= 2 * C_ * C_ else C_ * C_ * no
        f += 2.0 * n * n * (per + ni + 1)
    return f


def solve_flops(sizes: list[int]) -> float:
    return sum(4.0 * no * (ni + 1) * (no + ni + 1) for ni, no in zip(sizes[:-1], sizes[1:]))


def timed(fn, repeat: int) -> C.Timing:
    return C.best_of(fn, repeat=repeat, warmup=1)


def checked_timing(name: str, run, first_g, want: np.ndarray, repeat: int) -> tuple[float, float]:
    """(median, min) seconds of a peer's `run`, after checking that its first layer's G factor
    (`first_g` of run()'s result) matches fisherkit's `want`."""
    G = first_g(run())
    if not np.allclose(G, want, rtol=1e-3, atol=1e-3 * np.abs(G).max()):
        raise RuntimeError(f"{name}'s G factor differs from fisherkit's")
    t = timed(run, repeat)
    return t.median, t.min


def fmt(t: C.Timing) -> str:
    return f"{C.fmt_time(t.median)} (min {C.fmt_time(t.min)})"


def factor_roofline(sizes: list[int], n: int, dtype) -> C.Roofline:
    """The BLAS calls of the exact factors, on operands of their shapes: the forward GEMMs,
    the backward GEMMs of C rows per input, and per layer the SYRKs of the N augmented
    inputs (k_l wide) and of the N C backward rows (n_l wide)."""
    rf = C.Roofline(dtype)
    rf.forward(sizes, n)
    rf.backprop(sizes, n * sizes[-1])
    for ni, no in C.layer_shapes(sizes):
        rf.syrk(ni + 1, n)
        rf.syrk(no, n * sizes[-1])
    return rf


def peers(sizes: list[int], model: fisherkit.MLP, X: np.ndarray, y: np.ndarray, dtype, repeat: int) -> dict:
    """Seconds (median, min) of curvlinops' KFAC factors and BackPACK's KFLR, when installed."""
    out: dict[str, tuple[float, float] | str] = {}
    try:
        import warnings

        import torch

        warnings.filterwarnings("ignore")
        torch.set_num_threads(1)
    except ImportError:
        return {"curvlinops": "torch not installed", "backpack": "torch not installed"}
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    mods = []
    for l, (W, b) in enumerate(model.layers):
        lin = torch.nn.Linear(W.shape[1], W.shape[0]).to(tdt)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(np.asarray(W)))
            lin.bias.copy_(torch.as_tensor(np.asarray(b)))
        mods.append(lin)
        if l < model.n_layers - 1:
            mods.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*mods)
    Xt, yt = torch.as_tensor(X.astype(dtype)), torch.as_tensor(y)
    K = fisherkit.fisher(model, X, shape="kfac")
    try:
        from curvlinops import KFACLinearOperator

        def cl():
            op = KFACLinearOperator(net, torch.nn.CrossEntropyLoss(), list(net.parameters()), [(Xt, yt)],
                                    fisher_type="type-2", separate_weight_and_bias=False, check_deterministic=False)
            op.compute_kronecker_factors()
            return op

        out["curvlinops"] = checked_timing("curvlinops", cl, lambda op: op._gradient_covariances["0"].numpy(),
                                           K.factors[0][1], repeat)
    except ImportError:
        out["curvlinops"] = "not installed"
    try:
        from backpack import backpack, extend
        from backpack.extensions import KFLR

        enet, lossf = extend(net), extend(torch.nn.CrossEntropyLoss())

        def bp():
            enet.zero_grad()
            loss = lossf(enet(Xt), yt)
            with backpack(KFLR()):
                loss.backward()

        out["backpack"] = checked_timing("BackPACK", bp, lambda _: net[0].weight.kflr[0].numpy(), K.factors[0][1],
                                         repeat)
    except ImportError:
        out["backpack"] = "not installed"
    return out


def bench(repeat: int, quick: bool) -> tuple[list[list[str]], dict]:
    rows: list[list[str]] = []
    facts: dict = {}
    with C.threads(1):
        for dtype in (np.float64, np.float32):
            rate = C.gemm_rate(C.measure_gemm_rate(dtype)) * 1e9
            dn = np.dtype(dtype).name
            facts[f"gemm_{dn}"] = rate / 1e9
            rows.append(["-", dn, "GEMM rate (1024^3, this process)", f"{rate / 1e9:.1f} GFLOP/s", "-", "-", "-"])
            for sizes in NETS:
                net = "-".join(map(str, sizes))
                rng = np.random.default_rng(0)
                X = rng.standard_normal((N, sizes[0])).astype(dtype)
                y = rng.integers(0, sizes[-1], N)
                m = fisherkit.MLP.init(sizes, "tanh", "categorical", seed=0, dtype=dtype)
                tf = timed(lambda: fisherkit.fisher(m, X, shape="kfac"), repeat)
                bf = factor_flops(sizes, N) / rate
                rows.append([net, dn, "KFAC factors (exact)", fmt(tf), C.fmt_time(bf), f"{tf.median / bf:.2f}x",
                             "<= 1.5x"])
                rf, rf_times = factor_roofline(sizes, N, dtype), []
                rf()
                tb = C.interleaved(lambda: fisherkit.fisher(m, X, shape="kfac"), rf, max(repeat, 10), rf_times)
                rows.append([net, dn, "KFAC factors against the same BLAS calls", fmt(tb),
                             f"{C.fmt_time(min(rf_times))} (same shapes)", f"{tb.min / min(rf_times):.2f}x (min/min)",
                             "<= 1.2x"])
                facts[f"{net}/{dn}/same_blas"] = {"factors": tb.min, "blas": min(rf_times)}
                K = fisherkit.fisher(m, X, shape="kfac")

                def eigh():
                    K._eig = None  # drop the cache: time the eigendecompositions themselves
                    return K.eigen()

                te = timed(eigh, repeat)
                te_ek = timed(lambda: fisherkit.fisher(m, X, shape="ekfac"), repeat)
                be = (factor_flops(sizes, N) + ekfac_pass_flops(sizes, N)) / rate
                rows.append([net, dn, "EKFAC (factors, eigh, re-fit)", fmt(te_ek), C.fmt_time(be),
                             f"{(te_ek.median - te.median) / be:.2f}x without eigh", "-"])
                rows.append([net, dn, "  of which eigh of the factors", fmt(te), "-", "-", "-"])
                v = rng.standard_normal(m.n_params).astype(dtype)
                K.solve(v, 1e-3)
                ts = timed(lambda: K.solve(v, 1e-3), repeat)
                bs = solve_flops(sizes) / rate
                rows.append([net, dn, "damped solve (eigenbases cached)", fmt(ts), C.fmt_time(bs),
                             f"{ts.median / bs:.2f}x", "-"])
                rows.append([net, dn, "damped solve, first (with eigh)", C.fmt_time(ts.median + te.median), "-", "-",
                             "-"])
                reps = 1 if (quick or len(sizes) > 3) else max(2, repeat // 2)
                tk = timed(lambda: fisherkit.kfac_error(m, X), reps)
                bk = (factor_flops(sizes, N) + ekfac_pass_flops(sizes, N) + pair_flops(sizes, N)) / rate
                rows.append([net, dn, "kfac_error (KFAC and EKFAC)", fmt(tk), C.fmt_time(bk),
                             f"{tk.median / bk:.2f}x; {tk.median / tf.median:.1f}x the factors",
                             "< 10x the factors" if len(sizes) == 3 else "-"])
                facts[f"{net}/{dn}"] = {"factors": tf.median, "kfac_error": tk.median,
                                        "error": fisherkit.kfac_error(m, X[:256]).kfac.tolist()}
                if quick and len(sizes) > 3:
                    continue
                pr = peers(sizes, m, X, y, dtype, max(2, repeat // 2))
                best = None
                for name, val in pr.items():
                    if isinstance(val, str):
                        rows.append([net, dn, f"{name} KFAC factors", val, "-", "-", "-"])
                        continue
                    best = val[0] if best is None else min(best, val[0])
                    rows.append([net, dn, f"{name} KFAC factors", f"{C.fmt_time(val[0])} (min {C.fmt_time(val[1])})",
                                 "fisherkit factors", f"{val[0] / tf.median:.1f}x slower", ">= 5x"])
                facts[f"{net}/{dn}"]["peers"] = {k: (v if isinstance(v, str) else v[0]) for k, v in pr.items()}
    return rows, facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help=f"write the table to {RESULTS}")
    args = ap.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1" and not os.environ.get("_FK_CHILD"):
        # one thread from the start: OpenBLAS and OpenMP read these at load
        env = dict(os.environ, _FK_CHILD="1", **{k: "1" for k in C.THREAD_ENV})
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    load0 = os.getloadavg()
    t0 = time.time()
    rows, facts = bench(args.repeat, args.quick)
    head = ["net", "dtype", "what", "time: median (min)", "GEMM roofline", "ratio", "target"]
    C.print_table(rows, head)
    note = (f"fisherkit {fisherkit.__version__}, one thread, N = {N}, tanh, categorical head; load average "
            f"{load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after; {time.time() - t0:.0f} s")
    print("\n" + note)
    print(json.dumps(facts, indent=1, default=float))
    if args.write:
        with open(RESULTS, "w") as fh:
            fh.write("# KFAC and EKFAC: times and GEMM rooflines (`benchmarks/bench_kfac.py`)\n\n")
            fh.write(note + ". Times are medians of the repeats (minimum in parentheses); a roofline is the "
                     "computation's GEMM flops at the square-GEMM rate measured in the same process, or (\"same "
                     "shapes\") the computation's own BLAS calls on operands of their shapes, timed alternately "
                     "with fisherkit.\n\n")
            fh.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
            for r in rows:
                fh.write("| " + " | ".join(str(c) for c in r) + " |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
