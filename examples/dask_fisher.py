"""The unit-block Fisher of a memory-mapped data set four times larger than the memory
budget, on a Dask cluster of two worker processes, with the memory measured.

    pip install "fisherkit[dask]"
    python examples/dask_fisher.py

It writes a 256 MiB float32 ``.npy`` file (2^20 rows x 64 inputs) to a temporary folder,
gives the workers a budget of 32 MiB each for the data they hold (64 MiB in all), starts a
``LocalCluster`` on the loopback interface, computes the exact unit-block Fisher of a
64-16-4 network over every row, and prints how much each worker's and the client's peak
resident memory grew: the blocks in flight, never the file.
"""
from __future__ import annotations

import os
import resource
import tempfile
import time

import numpy as np

ROWS, COLS = 1 << 20, 64
BLOCK_ROWS = 1 << 14  # 4 MiB of float32 inputs per task
BUDGET = 32 << 20  # bytes of data a worker may hold beyond its interpreter


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def reset_peak() -> int:
    """Reset this process's peak resident memory to its current value (Linux: writing 5 to
    /proc/self/clear_refs) and return that value in bytes."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_kib("VmRSS") * 1024


def peak() -> int:
    """Peak resident memory since the last reset_peak(), in bytes."""
    return _status_kib("VmHWM") * 1024


def write_inputs(path: str) -> None:
    """Random inputs written through a memory map, block by block (never all in memory)."""
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(ROWS, COLS))
    rng = np.random.default_rng(0)
    for a in range(0, ROWS, BLOCK_ROWS):
        X[a:a + BLOCK_ROWS] = rng.standard_normal((BLOCK_ROWS, COLS), dtype=np.float32)
    X.flush()
    del X


def main() -> None:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print('this example needs Dask: pip install "fisherkit[dask]"')
        return
    import fisherkit
    import fisherkit.distributed as fd

    model = fisherkit.MLP.init([COLS, 16, 4], activation="tanh", head="categorical", seed=0, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inputs.npy")
        write_inputs(path)
        size = os.path.getsize(path)
        # loopback only: no dashboard, the scheduler's HTTP endpoint on a free local port
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
                Client(cluster) as client:
            client.run(fisherkit.set_num_threads, 1)
            X = fd.from_npy(path, chunks=BLOCK_ROWS)  # each task reads its own rows
            # the first rows against one process; this also warms the workers up (imports)
            head = fisherkit.fisher(model, X[:3 * BLOCK_ROWS + 5], estimator="exact", shape="unit")
            before = client.run(reset_peak)
            client_before = reset_peak()
            t = time.perf_counter()
            F = fisherkit.fisher(model, X, estimator="exact", shape="unit", chunk=2048)
            seconds = time.perf_counter() - t
            after = client.run(peak)
            client_growth = peak() - client_before
        one = fisherkit.fisher(model, np.load(path, mmap_mode="r")[:3 * BLOCK_ROWS + 5], estimator="exact",
                               shape="unit")
    growth = {w: after[w] - before[w] for w in after}
    worst = max(growth.values())
    err = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(head.blocks, one.blocks))
    mib = 1 << 20
    print(f"data: {size / mib:.0f} MiB in {ROWS} rows; budget {BUDGET / mib:.0f} MiB per worker, "
          f"{2 * BUDGET / mib:.0f} MiB in all ({size / (2 * BUDGET):.1f}x smaller than the data)")
    print(f"unit-block Fisher of {model.sizes}: {F!r} in {seconds:.1f} s "
          f"({ROWS / seconds:,.0f} rows/s on 2 workers)")
    for w, g in sorted(growth.items()):
        print(f"  worker {w}: peak memory grew by {g / mib:.1f} MiB")
    print(f"  client: peak memory grew by {client_growth / mib:.1f} MiB (result: "
          f"{sum(b.nbytes for b in F.blocks) / mib:.2f} MiB)")
    print(f"first {3 * BLOCK_ROWS + 5} rows: Dask vs one process, largest relative difference {err:.1e}")
    print(f"memory bounded: {worst <= BUDGET}")


if __name__ == "__main__":  # LocalCluster(processes=True) spawns workers that import this file
    main()
