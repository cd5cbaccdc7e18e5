"""GPU benchmarks of the CUDA backend (CuPy arrays). Runs only where CuPy sees a GPU; it
exits with a message elsewhere.

Workload: 784-1024-512-256-128-64-10 ReLU categorical at N = 512 (the MLP of curvlinops'
published benchmark). Every timing is taken with CUDA events on the current stream, after
a warm-up call, and compared with a baseline measured in the same process on the same
device:

* exact diagonal FIM, exact unit-block FIM, score-estimator variance diagonal
  -> ratio to one batch gradient (forward + backward of the mean NLL) by fisherkit
  (target for the diagonal FIM: within 3x);
* dpr2_solve on a 4096 x 4096 layer (4096 blocks of 4097) -> bytes it must move divided by
  its time, as a fraction of the bandwidth of a device-to-device copy measured here
  (target: at least 50%).

Usage: python benchmarks/bench_gpu.py [--dtype float32|float64] [--repeat 10]
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import numpy as np

import fisherkit as fk


def gpu_time(cupy: Any, fn: Callable[[], Any], repeat: int) -> float:
    """Minimum seconds of fn() over `repeat` calls, timed with events on the current stream."""
    fn()
    cupy.cuda.get_current_stream().synchronize()
    best = float("inf")
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--n", type=int, default=512)
    args = ap.parse_args()
    try:
        import cupy
    except ImportError:
        print("bench_gpu: CuPy is not installed (pip install 'fisherkit[cuda12]'); nothing to measure")
        return 0
    if not fk.info()["gpu_visible"]:
        print("bench_gpu: no CUDA device visible to fisherkit; nothing to measure")
        return 0
    dtype = np.dtype(args.dtype)
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    print(f"device: {props['name'].decode()}  dtype: {dtype.name}  N = {args.n}")
    print(f"cuBLAS: {fk.info().get('cublas', '?')}")

    sizes = [784, 1024, 512, 256, 128, 64, 10]
    model = fk.MLP.init(sizes, activation="relu", head="categorical", seed=0, dtype=dtype).to("cuda")
    rng = np.random.default_rng(0)
    X = cupy.asarray(rng.normal(size=(args.n, sizes[0])).astype(dtype))
    y = cupy.asarray(rng.integers(0, sizes[-1], size=args.n).astype(dtype))

    t_grad = gpu_time(cupy, lambda: model.gradient(X, y), args.repeat)
    print(f"batch gradient (baseline):        {t_grad * 1e3:8.3f} ms")
    rows = [
        ("exact diagonal FIM", lambda: fk.fisher(model, X, estimator="exact", shape="diag"), 3.0),
        ("exact unit-block FIM", lambda: fk.fisher(model, X, estimator="exact", shape="unit"), None),
        ("score variance diagonal", lambda: fk.variance(model, X, estimator="score", shape="diag"), None),
    ]
    for name, fn, target in rows:
        t = gpu_time(cupy, fn, args.repeat)
        goal = f"  (target <= {target:g}x)" if target else ""
        print(f"{name + ':':34s}{t * 1e3:8.3f} ms = {t / t_grad:6.2f}x the gradient{goal}")

    # dpr2_solve on a 4096 x 4096 layer: 4096 blocks of k = 4097 (weights + bias)
    B, k = 4096, 4097
    d = cupy.asarray(rng.uniform(1.0, 2.0, size=(B, k)).astype(dtype))
    U = cupy.asarray(rng.normal(size=(B, k, 2)).astype(dtype))
    S = cupy.asarray(np.tile(np.array([[1.0, 0.3], [0.3, 0.0]], dtype=dtype), (B, 1, 1)))
    rhs = cupy.asarray(rng.normal(size=(B, k)).astype(dtype))
    t_solve = gpu_time(cupy, lambda: fk.linalg.dpr2_solve(d, U, S, rhs, damping=1e-3), args.repeat)
    moved = (d.nbytes + U.nbytes + S.nbytes + 2 * rhs.nbytes)  # read d, U, S, rhs; write x
    src = cupy.empty(64 << 20, dtype=np.uint8)
    dst = cupy.empty_like(src)
    t_copy = gpu_time(cupy, lambda: dst.__setitem__(Ellipsis, src), args.repeat)
    bw_copy = 2 * src.nbytes / t_copy
    bw_solve = moved / t_solve
    print(f"device copy bandwidth:            {bw_copy / 1e9:8.1f} GB/s")
    print(f"dpr2_solve 4096 x 4097:           {t_solve * 1e3:8.3f} ms = {bw_solve / 1e9:.1f} GB/s "
          f"= {100 * bw_solve / bw_copy:.0f}% of the copy (target >= 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
