"""Dask benchmark (issue 16): the exact diagonal and unit-block Fisher of a 784-256-10 tanh
categorical MLP in float32, over rows of a memory-mapped ``.npy`` file, in one process and on
a LocalCluster of 1 and 2 worker processes (one compute thread each), as ratios to the one
process timed in the same run; then a projection of the unit-block Fisher of 100M rows over
8, 32 and 128 workers from the measured per-row cost, partial-result size, merge time and
transfer rate.

    python benchmarks/bench_dask.py [--rows 1048576] [--unit-rows 1048576] [--dir DIR]

Target: Dask with 1 worker at most 1.3x the time of one process. The file (rows x 784 float32,
3.2 GiB at 2^20 rows) is written to DIR (default: a temporary folder) and removed at the end.
The unit-block Fisher costs about sum_units (n_in + 1)^2 = 1.6e8 multiply-adds per row (a
few hundred rows per second per core), so ``--unit-rows`` smaller than ``--rows`` keeps it in
minutes; its per-row cost does not depend on the row count.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # before NumPy and fisherkit load their BLAS

import argparse  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import fisherkit  # noqa: E402

SIZES = [784, 256, 10]
WORKER_ENV = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def write_inputs(path: str, rows: int, cols: int, block: int = 1 << 16) -> None:
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols))
    rng = np.random.default_rng(0)
    for a in range(0, rows, block):
        b = min(rows, a + block)
        X[a:b] = rng.standard_normal((b - a, cols), dtype=np.float32)
    X.flush()
    del X


def hours(t: float) -> str:
    return f"{t / 3600:.2f} h" if t >= 3600 else f"{t / 60:.1f} min"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def max_rel(a: fisherkit.FisherMatrix, b: fisherkit.FisherMatrix) -> float:
    return max(float(np.abs(x - y).max()) / float(np.abs(y).max()) for x, y in zip(a.blocks, b.blocks))


def cluster(n_workers: int):
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                     dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                     env=WORKER_ENV)
    client = Client(c)
    client.run(fisherkit.set_num_threads, 1)
    return c, client


def _nbytes(a) -> int:
    return int(a.nbytes)


def transfer_rate(nbytes: int) -> float:
    """Bytes per second moving an array of `nbytes` from one worker to another over loopback
    (two worker processes; includes serialisation on both sides)."""
    c, client = cluster(2)
    try:
        a, b = list(client.scheduler_info()["workers"])
        best = math.inf
        for _ in range(2):
            src = client.submit(np.ones, nbytes // 4, dtype=np.float32, workers=[a], pure=False)
            src.result()
            t = time.perf_counter()
            client.submit(_nbytes, src, workers=[b], pure=False).result()
            best = min(best, time.perf_counter() - t)
            del src
        return nbytes / best
    finally:
        client.close()
        c.close()


def run_shape(model, path: str, shape: str, rows: int, block_rows: int, repeat: int) -> dict:
    import dask

    import fisherkit.distributed as fd

    mm = np.load(path, mmap_mode="r")[:rows]
    fisherkit.fisher(model, mm[:min(rows, 256)], shape=shape)  # warm-up
    one_best, F1 = math.inf, None
    for _ in range(repeat):
        F1 = None
        F1, t = timed(lambda: fisherkit.fisher(model, mm, shape=shape))
        one_best = min(one_best, t)
    out = {"shape": shape, "rows": rows, "block_rows": block_rows, "one": one_best,
           "result_bytes": sum(b.nbytes for b in F1.blocks)}
    for w in (1, 2):
        c, client = cluster(w)
        try:
            X = fd.from_npy(path, chunks=block_rows)[:rows]
            with dask.config.set(scheduler=client):
                fisherkit.fisher(model, X[:min(rows, 256)], shape=shape)  # warm-up (imports on workers)
                best, F = math.inf, None
                for _ in range(repeat):
                    F = None
                    F, t = timed(lambda: fisherkit.fisher(model, X, shape=shape))
                    best = min(best, t)
            out[f"dask{w}"] = best
            out[f"err{w}"] = max_rel(F, F1)
        finally:
            client.close()
            c.close()
    return out


def print_results(results: list[dict]) -> None:
    rows_out = []
    for r in results:
        rows_out.append([r["shape"], r["rows"], r["block_rows"], f"{r['rows'] / r['one']:,.0f}",
                         f"{r['rows'] / r['dask1']:,.0f}", f"{r['rows'] / r['dask2']:,.0f}",
                         f"{r['dask1'] / r['one']:.2f}", f"{r['one'] / r['dask2']:.2f}",
                         f"{max(r['err1'], r['err2']):.1e}"])
    print()
    C.print_table(rows_out, ["shape", "rows", "block", "rows/s 1 proc", "rows/s dask 1w", "rows/s dask 2w",
                             "dask1w/1proc time (<=1.3)", "speed-up 2w", "max rel diff"])
    print("(2 workers on this machine share 2 vCPUs whose floating-point units are one core's: "
          "FLOP-bound blocks cannot run twice as fast)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1 << 20, help="rows for the diagonal (and the file)")
    ap.add_argument("--unit-rows", type=int, default=1 << 20, help="rows for the unit-block Fisher")
    ap.add_argument("--block-rows", type=int, default=1 << 16, help="rows per Dask block (diagonal)")
    ap.add_argument("--unit-block-rows", type=int, default=None, help="rows per Dask block (unit; default rows/4)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of the diagonal (the unit runs once)")
    ap.add_argument("--target-rows", type=float, default=1e8, help="rows of the projected data set")
    ap.add_argument("--projection-block-rows", type=int, default=1 << 16)
    ap.add_argument("--network-gbps", type=float, default=10.0, help="link speed assumed in the projection")
    ap.add_argument("--shapes", default="diag,unit", help="which of diag,unit to run")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    fisherkit.set_num_threads(1)
    model = fisherkit.MLP.init(SIZES, activation="tanh", head="categorical", seed=0, dtype=np.float32)
    unit_block = args.unit_block_rows or max(1, args.unit_rows // 4)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "inputs.npy")
        shapes = args.shapes.split(",")
        rows = max(args.rows if "diag" in shapes else 0, args.unit_rows if "unit" in shapes else 0)
        _, tw = timed(lambda: write_inputs(path, rows, SIZES[0]))
        print(f"fisherkit {fisherkit.__version__}, {fisherkit.info()['blas']}; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f} (other jobs on this machine slow every column)")
        print(f"inputs: {rows} x {SIZES[0]} float32 in {os.path.getsize(path) / 2**30:.2f} GiB "
              f"(written in {tw:.1f} s; read back through the page cache)")
        results = []
        if "diag" in shapes:
            results.append(run_shape(model, path, "diag", args.rows, args.block_rows, args.repeat))
        if "unit" not in shapes:
            print_results(results)
            return
        results.append(run_shape(model, path, "unit", args.unit_rows, unit_block, 1))
        # the costs the projection is built on, in one process: the fixed cost of one block's
        # unit-block call (allocating and filling the result and its float64 accumulator; from
        # 64 rows), a merge of two partials, pickling one
        U, t_fixed = timed(lambda: fisherkit.fisher(model, np.load(path, mmap_mode="r")[:64], shape="unit"))
        t_fixed = max(0.0, t_fixed - 64 / (results[-1]["rows"] / results[-1]["one"]))
        _, t_merge = timed(lambda: U.merge(U))
        _, t_pickle = timed(lambda: pickle.dumps(U, protocol=5))
    unit = results[-1]
    R = unit["result_bytes"]
    loopback = transfer_rate(R)
    print_results(results)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")

    # projection: N rows over W workers, blocks of b rows, split_every k (fisherkit.distributed)
    r_row = unit["rows"] / unit["one"]  # rows/s of one compute thread
    N, b, k = args.target_rows, args.projection_block_rows, 4
    n_blocks = math.ceil(N / b)
    print(f"\nprojection: unit-block Fisher of {N:.0e} rows, blocks of {b} rows ({n_blocks} blocks), split_every={k}")
    print(f"measured: {r_row:.0f} rows/s per worker thread; fixed cost per block {t_fixed:.2f} s; "
          f"partial result {R / 2**20:.0f} MiB; merge of two "
          f"partials {t_merge:.2f} s; pickling one {t_pickle:.2f} s; loopback worker-to-worker "
          f"{loopback / 2**30:.2f} GiB/s")
    proj = []
    for label, bw in (("loopback", loopback), (f"{args.network_gbps:g} Gb/s", args.network_gbps * 1e9 / 8)):
        move = R / bw
        for W in (8, 32, 128):
            compute = N / (W * r_row)
            # every block pays the fixed cost of a call, and its partial is moved at most once and
            # merged once, on the workers, while
            # other blocks compute; the last ceil(log_k W) levels run after the compute ends,
            # then the result goes to the client
            per_block = (n_blocks / W) * (t_fixed + move + t_merge)
            tail = math.ceil(math.log(W, k)) * (k * move + (k - 1) * t_merge) + move
            total = compute + per_block + tail
            proj.append([label, W, hours(compute), hours(per_block + tail), hours(total),
                         f"{N / r_row / total:.1f}", f"{100 * compute / total:.1f}%"])
    C.print_table(proj, ["network", "workers", "compute", "reduction", "total", "speed-up vs 1", "efficiency"])
    mem = max(R * (k + 3), 3 * R)  # k inputs, output, merge temporaries; or result + float64 shadow
    print(f"memory per worker: about {mem / 2**30:.1f} GiB at the widest combine (k partials, output, "
          f"temporaries) or while computing (result + its float64 accumulator)")


if __name__ == "__main__":  # LocalCluster(processes=True) spawns workers that import this file
    main()
