"""fisherkit over Dask arrays (fisherkit.distributed, issue 16).

Every result is compared with the one-process call on the same rows: the same matrix object
(class, sizes, n_samples, estimator, dtype) and the same values to 1e-12 of the largest
entry in float64, for chunks of 1 row, of 7 rows and of uneven sizes, under the synchronous
scheduler and under a LocalCluster of two worker processes on the loopback interface. Also:
errors name the global row, the model travels once per call, compute=False is lazy, a file
larger than the data in flight streams with bounded peak memory (measured in a subprocess),
and fisherkit works (and says how to install Dask) without Dask.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REQUIRED = bool(os.environ.get("FISHERKIT_REQUIRE_DASK"))  # CI: the Dask tests must run, not skip


def need(module: str):
    """`module`, skipping the test without it (failing instead under FISHERKIT_REQUIRE_DASK)."""
    return importlib.import_module(module) if REQUIRED else pytest.importorskip(module)


da = need("dask.array")
import dask  # noqa: E402
from dask.delayed import Delayed  # noqa: E402

import fisherkit  # noqa: E402

fd = importlib.import_module("fisherkit.distributed")
fv = importlib.import_module("fisherkit.variance")

ESTIMATORS = ["exact", "score", "hessian", "empirical"]
SHAPES = ["full", "layer", "unit", "diag"]
N = 23
CHUNKINGS = {"rows1": 1, "rows7": 7, "uneven": ((5, 11, 2, 5),)}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Two worker processes with one thread each, everything on the loopback interface: no
# dashboard, and the scheduler's HTTP server (health, metrics) on a free loopback port rather
# than the default 8787, which a second cluster would find taken.
LOOPBACK = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


# ============================================================================ helpers
@pytest.fixture(scope="module")
def problem():
    """A 3-5-4 tanh categorical MLP (phi'' != 0, so every Hessian block is random), N inputs,
    labels, and one NaN-free direction."""
    model = fisherkit.MLP.init([3, 5, 4], activation="tanh", head="categorical", seed=1, bias_std=0.3)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, 3))
    y = rng.integers(0, 4, N)
    return model, X, y


def chunked(X, chunking):
    spec = CHUNKINGS[chunking]
    return da.from_array(X, chunks=(spec[0], X.shape[1]) if isinstance(spec, tuple) else (spec, X.shape[1]))


def assert_same(got, want, tol=1e-12):
    """Same matrix object as the one-process result, values within tol x the largest entry."""
    assert type(got) is type(want)
    assert (got.sizes, got.n_samples, got.estimator, got.dtype) == (want.sizes, want.n_samples, want.estimator,
                                                                    want.dtype)
    for g, w in zip(got.blocks, want.blocks):
        assert g.shape == w.shape and g.dtype == w.dtype
        scale = float(np.abs(w).max())
        assert float(np.abs(g - w).max()) <= tol * max(scale, np.finfo(np.float64).tiny), (scale, np.abs(g - w).max())


def sync():
    return dask.config.set(scheduler="synchronous")


# ============================================================================ synchronous scheduler
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fisher_equals_one_process(problem, estimator, shape, chunking):
    model, X, y = problem
    y = y if estimator == "empirical" else None  # the other estimators warn that y is ignored
    kw = dict(estimator=estimator, shape=shape, samples=2, seed=5)
    want = fisherkit.fisher(model, X, y, **kw)
    with sync():
        got = fisherkit.fisher(model, chunked(X, chunking), y, **kw)
    assert_same(got, want)


@pytest.mark.parametrize("head", ["gaussian", "bernoulli", "poisson"])
def test_other_heads_float32_and_dask_labels(head):
    model = fisherkit.MLP.init([3, 4, 2], activation="sigmoid", head=head, seed=2, dtype=np.float32)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N, 3)).astype(np.float32)
    y = {"gaussian": rng.standard_normal((N, 2)), "bernoulli": rng.integers(0, 2, (N, 2)),
         "poisson": rng.poisson(1.0, (N, 2))}[head].astype(np.float32)
    Xd = chunked(X, "uneven")
    yd = da.from_array(y, chunks=(4, 2))  # other row chunks than X: aligned by fd
    eps = np.finfo(np.float32).eps
    with sync():
        for est, shape in (("score", "unit"), ("hessian", "diag"), ("empirical", "layer")):
            kw = dict(estimator=est, shape=shape, samples=3, seed=9)
            labels, dlabels = (y, yd) if est == "empirical" else (None, None)
            assert_same(fisherkit.fisher(model, Xd, dlabels, **kw), fisherkit.fisher(model, X, labels, **kw),
                        tol=64 * eps)
        loss, g = model.gradient(Xd, yd)
        loss0, g0 = model.gradient(X, y)
    assert abs(loss - loss0) <= 64 * eps * abs(loss0) and g.dtype == g0.dtype == np.float32
    assert np.abs(g - g0).max() <= 64 * eps * np.abs(g0).max()


def test_numpy_inputs_with_dask_labels_and_index_offset(problem):
    model, X, y = problem
    kw = dict(estimator="empirical", shape="unit")
    with sync():
        assert_same(fisherkit.fisher(model, X, da.from_array(y, chunks=6), **kw), fisherkit.fisher(model, X, y, **kw))
        # a slice of a longer stream: the blocks' offsets add to the caller's index_offset
        kw = dict(estimator="score", shape="diag", samples=2, seed=4, index_offset=100)
        assert_same(fisherkit.fisher(model, chunked(X, "rows7")[9:], **kw), fisherkit.fisher(model, X[9:], **kw))
        # empty blocks (from slicing) and several column blocks
        Xd = da.from_array(X, chunks=((0, 10, 0, 13), (2, 1)))
        assert_same(fisherkit.fisher(model, Xd, shape="layer"), fisherkit.fisher(model, X, shape="layer"))


def test_layer_subset_over_blocks(problem):
    """fisher(shape="layer", layers=[...]) over Dask blocks: the subset's blocks, merged."""
    model, X, _ = problem
    kw = dict(estimator="score", shape="layer", samples=2, seed=3, layers=[1])
    with sync():
        got = fisherkit.fisher(model, chunked(X, "rows7"), **kw)
        with pytest.raises(ValueError, match="'layers' selects blocks of shape 'layer'"):
            fisherkit.fisher(model, chunked(X, "rows7"), shape="diag", layers=[0])
        with pytest.raises(ValueError, match="'out' is not available with Dask inputs"):
            fisherkit.fisher(model, chunked(X, "rows7"), shape="diag", out=np.empty(model.layout.size("diag")))
    want = fisherkit.fisher(model, X, **kw)
    assert list(got.layers) == list(want.layers) == [1]
    assert np.abs(got.layer(1) - want.layer(1)).max() <= 1e-12 * np.abs(want.layer(1)).max()


def test_seed_none_is_drawn_once_for_all_blocks(problem, monkeypatch):
    model, X, _ = problem
    calls = []
    resolve = fisherkit.heads.resolve_seed
    monkeypatch.setattr(fisherkit.heads, "resolve_seed", lambda s: calls.append(s) or resolve(s))
    with sync():
        F = fisherkit.fisher(model, chunked(X, "rows1"), estimator="score", seed=None)
    assert calls.count(None) == 1 and len(set(c for c in calls if c is not None)) == 1
    assert F.n_samples == N


@pytest.mark.parametrize("chunking", ["rows1", "uneven"])
@pytest.mark.parametrize("population", [False, True])
@pytest.mark.parametrize("shape", ["diag", "unit", "layer", "full", "trace"])
@pytest.mark.parametrize("estimator", ["score", "hessian", "exact"])
def test_variance_equals_one_process(problem, estimator, shape, population, chunking):
    """Blocks of one row too: a block's variance alone would be wrong (weights N_b^2 / N^2, and
    the input-sampling part needs the global mean)."""
    model, X, _ = problem
    kw = dict(estimator=estimator, shape=shape, samples=3, population=population)
    want = fisherkit.variance(model, X, **kw)
    with sync():
        got = fisherkit.variance(model, chunked(X, chunking), **kw)
    if shape == "trace":
        assert isinstance(got, float) and got == pytest.approx(want, rel=1e-12, abs=0)
    else:
        assert_same(got, want)


def test_weighted_mean_of_block_variances_is_not_the_variance(problem):
    """The trap the combination avoids: the row-weighted mean of the blocks' variances is
    about (number of blocks) times the variance of the whole estimate."""
    model, X, _ = problem
    parts = [fisherkit.variance(model, X[a:b]) for a, b in ((0, 12), (12, N))]
    naive = sum(p.n_samples * p.values for p in parts) / N
    with sync():
        got = fisherkit.variance(model, chunked(X, "rows7")).values
    assert np.allclose(got, fisherkit.variance(model, X).values, rtol=1e-12, atol=0)
    assert np.median(naive / got) > 1.5


def test_stderr_products_and_planning(problem):
    model, X, y = problem
    Xd = chunked(X, "uneven")
    rng = np.random.default_rng(11)
    with sync():
        for est in ("score", "hessian", "exact"):
            F, se = fisherkit.fisher(model, Xd, estimator=est, shape="unit", seed=2, with_stderr=True)
            F0, se0 = fisherkit.fisher(model, X, estimator=est, shape="unit", seed=2, with_stderr=True)
            assert_same(F, F0)
            assert_same(se, se0)
        for v in (rng.standard_normal(model.n_params), rng.standard_normal((model.n_params, 3))):
            got, want = fisherkit.fisher_vector_product(model, Xd, v), fisherkit.fisher_vector_product(model, X, v)
            assert got.shape == want.shape and got.dtype == want.dtype
            assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
        loss, g = model.gradient(Xd, y)
        loss0, g0 = model.gradient(X, y)
        assert loss == pytest.approx(loss0, rel=1e-12) and np.abs(g - g0).max() <= 1e-12 * np.abs(g0).max()
        for shape in ("diag", "unit"):
            r, r0 = fisherkit.recommend(model, Xd, shape, samples=2), fisherkit.recommend(model, X, shape, samples=2)
            for f in ("v_score", "v_hessian", "cov", "alpha", "v_mix"):
                a, b = getattr(r, f), getattr(r0, f)
                assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max(), f
            assert np.array_equal(r.hessian_wins, r0.hessian_wins) and (r.shape, r.samples) == (r0.shape, r0.samples)
            for d, d0 in zip(r.layers, r0.layers):
                assert d.keys() == d0.keys() and all(d[k] == pytest.approx(d0[k], rel=1e-12) for k in d)
        for est in ("score", "hessian", "exact"):
            want = fisherkit.samples_needed(model, X, 0.1, 0.9, est)
            assert fisherkit.samples_needed(model, Xd, 0.1, 0.9, est) == want
            S = fisherkit.samples_needed(model, Xd, 0.2, 0.8, est, per_parameter=True)
            assert np.array_equal(S, fisherkit.samples_needed(model, X, 0.2, 0.8, est, per_parameter=True))


def test_lazy_results_compose(problem):
    model, X, y = problem
    Xd = chunked(X, "rows7")
    lazy = [fd.fisher(model, Xd, estimator="score", shape="unit", seed=1, compute=False),
            fd.variance(model, Xd, shape="diag", population=True, compute=False),
            fd.variance(model, Xd, estimator="exact", compute=False),
            fd.gradient(model, Xd, y, compute=False),
            fd.fisher(model, Xd, split_every=2, compute=False)]
    assert all(isinstance(d, Delayed) for d in lazy)
    with sync():
        F, V, Z, (loss, _), D = dask.compute(*lazy)
    assert_same(F, fisherkit.fisher(model, X, estimator="score", shape="unit", seed=1))
    assert_same(V, fisherkit.variance(model, X, shape="diag", population=True))
    assert_same(Z, fisherkit.variance(model, X, estimator="exact"))
    assert_same(D, fisherkit.fisher(model, X))
    assert loss == pytest.approx(model.gradient(X, y)[0], rel=1e-12)


def test_a_combine_task_leaves_its_inputs_unchanged():
    """The reduction tree's combine step sums parts that other tasks produced; a retried or
    shared task must find them as they were, so the sums go into copies."""
    from fisherkit.distributed import _combine, _Part

    first, second = np.arange(4.0), np.full(4, 10.0)
    parts = [_Part(3, 7, (second, 2.0, None)), _Part(0, 3, (first, 1.0, None))]
    out = _combine(parts)
    assert (out.start, out.stop) == (0, 7)
    np.testing.assert_array_equal(out.values[0], first + second)
    assert out.values[1:] == (3.0, None)
    np.testing.assert_array_equal(first, np.arange(4.0))
    np.testing.assert_array_equal(second, np.full(4, 10.0))
    with pytest.raises(RuntimeError, match=r"rows \[0, 3\) and \[4, 7\) do not tile"):
        _combine([_Part(0, 3, (first,)), _Part(4, 7, (second,))])


def test_default_threaded_scheduler(problem):
    model, X, _ = problem
    got = fisherkit.fisher(model, chunked(X, "rows1"), estimator="hessian", shape="unit", seed=3)
    assert_same(got, fisherkit.fisher(model, X, estimator="hessian", shape="unit", seed=3))


def test_model_is_one_key_of_the_graph(problem):
    """The weights travel once per call, not once per block: exactly one task of the graph
    pickles to the model's size, and the whole graph to little more."""
    _, X, _ = problem
    model = fisherkit.MLP.init([3, 1500, 4], seed=0)  # 12 k parameters, ~ 100 kB
    nbytes = sum(W.nbytes + b.nbytes for W, b in model.layers)
    lazy = fd.fisher(model, chunked(X, "rows1"), compute=False)
    cloudpickle = need("cloudpickle")  # what dask serialises tasks with
    sizes = [len(cloudpickle.dumps(v)) for v in dict(lazy.__dask_graph__()).values()]
    assert sum(s > nbytes // 2 for s in sizes) == 1
    assert sum(sizes) < 1.5 * nbytes
    assert len(sizes) > N  # one task per block and more


def test_errors_name_the_global_row(problem):
    model, X, y = problem
    Xn = X.copy()
    Xn[16, 2] = np.nan  # block 2 of the 7-row chunking, its local row 2
    yb = y.copy()
    yb[19] = 9
    cases = [(lambda A, b: fisherkit.fisher(model, A, estimator="score", seed=1), Xn, None),
             (lambda A, b: fisherkit.variance(model, A, shape="unit"), Xn, None),
             (lambda A, b: model.gradient(A, b), X, yb),
             (lambda A, b: fisherkit.fisher(model, A, b, estimator="empirical"), X, yb)]
    for call, A, b in cases:
        with pytest.raises(ValueError) as one:
            call(A, b)
        assert ("row 19" in str(one.value)) or ("[16, 2]" in str(one.value))
        with sync(), pytest.raises(ValueError) as many:
            call(chunked(A, "rows7"), None if b is None else da.from_array(b, chunks=7))
        assert str(many.value) == str(one.value)


def test_bad_arguments_are_refused_as_in_one_process(problem):
    model, X, y = problem
    bad = [(dict(X=X[:, :2]), ValueError), (dict(X=X[:, 0]), ValueError), (dict(X=X[:0]), ValueError),
           (dict(X=X.astype(str)), TypeError), (dict(X=X, y=y[:-1], estimator="empirical"), ValueError),
           (dict(X=X, estimator="fancy"), ValueError), (dict(X=X, shape="kite"), ValueError)]
    for kw, exc in bad:
        kw = dict(kw)
        A = kw.pop("X")
        with pytest.raises(exc) as one:
            fisherkit.fisher(model, A, **kw)
        with pytest.raises(exc) as many:
            fisherkit.fisher(model, da.from_array(A), **kw)
        assert str(many.value) == str(one.value)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        Xd = da.from_array(X, chunks=5)
        fisherkit.fisher(model, Xd[Xd[:, 0] > 0])
    with pytest.raises(ValueError, match="split_every"):
        fd.fisher(model, da.from_array(X), split_every=1)
    with pytest.raises(ValueError, match="at least 2 inputs"):
        fisherkit.variance(model, da.from_array(X[:1]), population=True)
    with pytest.raises(ValueError, match=r"argument 'v' must have shape \(44,\)"):
        fisherkit.fisher_vector_product(model, da.from_array(X), np.ones(3))


def test_file_sources_stream_in_blocks(problem, tmp_path):
    """.npy through from_npy (path or memmap), Zarr, HDF5: the one-process result."""
    model, X, _ = problem
    want = fisherkit.fisher(model, X, estimator="score", shape="unit", seed=8)
    np.save(tmp_path / "x.npy", X)
    sources = [fd.from_npy(tmp_path / "x.npy", chunks=7),
               fd.from_npy(np.load(tmp_path / "x.npy", mmap_mode="r"), chunks=4)]
    np.save(tmp_path / "xf.npy", np.asfortranarray(X))
    sources.append(fd.from_npy(tmp_path / "xf.npy", chunks=6))
    zarr = need("zarr")
    z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(6, 3), dtype="f8")
    z[:] = X
    sources.append(da.from_zarr(str(tmp_path / "x.zarr")))
    h5py = need("h5py")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["X"] = X
    with h5py.File(tmp_path / "x.h5", "r") as f, sync():
        sources.append(da.from_array(f["X"], chunks=(5, 3)))
        for Xd in sources:
            assert_same(fisherkit.fisher(model, Xd, estimator="score", shape="unit", seed=8), want)
    assert sources[0].dask.keys() == fd.from_npy(tmp_path / "x.npy", chunks=7).dask.keys()
    with pytest.raises(ValueError, match="view"):
        fd.from_npy(np.load(tmp_path / "x.npy", mmap_mode="r")[3:])
    with pytest.raises(TypeError, match="source"):
        fd.from_npy(X)


# ============================================================================ peak memory
_MEMORY_RUN = textwrap.dedent("""
    import sys
    import numpy as np, dask, fisherkit, fisherkit.distributed as fd
    model = fisherkit.MLP.init([64, 16, 4], seed=0, dtype=np.float32)
    X = fd.from_npy(sys.argv[1], chunks=16384)
    with dask.config.set(scheduler="synchronous"):
        fisherkit.fisher(model, X[:16384], shape="unit")  # warm up (imports, first allocations)
        F = fisherkit.fisher(model, X, shape="unit")
    assert F.n_samples == X.shape[0]
    print([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
def test_peak_memory_does_not_grow_with_rows(tmp_path):
    """64 k and 1 M rows of 64 float32 inputs (16 MiB and 256 MiB files): the peak resident
    memory of the run (a fresh interpreter) grows by less than 2x; gathering the inputs
    would add the whole 256 MiB to an interpreter of about 100 MiB."""
    peaks = {}
    for rows in (1 << 16, 1 << 20):
        path = tmp_path / f"x{rows}.npy"
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 64))
        for a in range(0, rows, 1 << 16):
            mm[a:a + (1 << 16)] = np.random.default_rng(a).standard_normal((1 << 16, 64), dtype=np.float32)
        mm.flush()
        del mm
        out = subprocess.run([sys.executable, "-c", _MEMORY_RUN, str(path)], capture_output=True, text=True,
                             timeout=300, check=True)
        peaks[rows] = int(out.stdout.split()[-1])  # KiB
        path.unlink()
    assert peaks[1 << 20] < 2 * peaks[1 << 16], peaks


# ============================================================================ without Dask
def test_without_dask_fisherkit_works_and_names_the_extra(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    code = textwrap.dedent(f"""
        import sys
        sys.modules["dask"] = None  # import dask now raises ImportError
        import numpy as np, fisherkit
        import fisherkit.distributed as fd
        from fisherkit._backend import is_dask
        model = fisherkit.MLP.init([3, 4, 2], seed=0)
        X = np.random.default_rng(0).standard_normal((10, 3))
        assert fisherkit.fisher(model, X).n_samples == 10 and not is_dask(X)
        for call in (lambda: fd.from_npy({str(tmp_path / "x.npy")!r}), lambda: fd.fisher(model, X)):
            try:
                call()
            except ImportError as exc:
                print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all('pip install "fisherkit[dask]"' in line for line in lines)


# ============================================================================ a real cluster
@pytest.fixture(scope="module")
def client():
    """Two worker processes on the loopback interface, one thread each; closed at the end."""
    distributed = need("distributed")
    with distributed.LocalCluster(**LOOPBACK) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c
    assert c.status == "closed"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_cluster_fisher_equals_one_process(client, problem, estimator, shape):
    model, X, y = problem
    y = y if estimator == "empirical" else None  # the other estimators warn that y is ignored
    kw = dict(estimator=estimator, shape=shape, samples=2, seed=5)
    with dask.config.set(scheduler=client):
        got = fisherkit.fisher(model, chunked(X, "uneven"), None if y is None else da.from_array(y, chunks=3), **kw)
    assert_same(got, fisherkit.fisher(model, X, y, **kw))


def test_cluster_variances_products_and_files(client, problem, tmp_path):
    model, X, y = problem
    v = np.random.default_rng(1).standard_normal(model.n_params)
    np.save(tmp_path / "x.npy", X)
    with dask.config.set(scheduler=client):
        for shape in ("unit", "trace"):
            got = fisherkit.variance(model, chunked(X, "rows1"), estimator="hessian", shape=shape, population=True)
            want = fisherkit.variance(model, X, estimator="hessian", shape=shape, population=True)
            if shape == "trace":
                assert got == pytest.approx(want, rel=1e-12)
            else:
                assert_same(got, want)
        Xd = fd.from_npy(tmp_path / "x.npy", chunks=7)
        got = fisherkit.fisher_vector_product(model, Xd, v)
        want = fisherkit.fisher_vector_product(model, X, v)
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
        assert model.gradient(Xd, y)[0] == pytest.approx(model.gradient(X, y)[0], rel=1e-12)
        assert fisherkit.samples_needed(model, Xd, 0.1, 0.9) == fisherkit.samples_needed(model, X, 0.1, 0.9)
        r = fisherkit.recommend(model, Xd, "unit")
        assert np.abs(r.alpha - fisherkit.recommend(model, X, "unit").alpha).max() <= 1e-9
        h5py = need("h5py")  # distributed ships h5py data sets by file name
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f["X"] = X
        with h5py.File(tmp_path / "x.h5", "r") as f:
            assert_same(fisherkit.fisher(model, da.from_array(f["X"], chunks=(6, 3)), shape="unit"),
                        fisherkit.fisher(model, X, shape="unit"))
        lazy = fd.fisher(model, Xd, estimator="score", seed=2, compute=False)  # no scatter: one graph key
        assert_same(client.compute(lazy).result(timeout=60), fisherkit.fisher(model, X, estimator="score", seed=2))


def test_cluster_scatters_the_model_once_per_call(client, problem, monkeypatch):
    distributed = need("distributed")
    model, X, _ = problem
    sent = []
    scatter = distributed.Client.scatter
    def spy(self, data, *a, **k):
        sent.append((data, k.get("broadcast")))
        return scatter(self, data, *a, **k)

    monkeypatch.setattr(distributed.Client, "scatter", spy)
    with dask.config.set(scheduler=client):
        F = fisherkit.fisher(model, chunked(X, "rows1"), shape="unit")
    assert len(sent) == 1 and sent[0][0] is model and sent[0][1] is True
    assert_same(F, fisherkit.fisher(model, X, shape="unit"))


def test_cluster_refuses_a_graph_that_would_ship_a_memory_map(client, problem, tmp_path):
    model, X, _ = problem
    np.save(tmp_path / "x.npy", X)
    Xd = da.from_array(np.load(tmp_path / "x.npy", mmap_mode="r"), chunks=7)
    with dask.config.set(scheduler=client), pytest.raises(ValueError, match="from_npy"):
        fisherkit.fisher(model, Xd)
    with sync():  # one process: the mapping is shared, nothing is pickled
        assert_same(fisherkit.fisher(model, Xd), fisherkit.fisher(model, X))


def test_worker_error_then_cluster_closes(problem):
    """A NaN in one block: the ValueError of one process (global row) comes back at once; the
    cluster still computes afterwards and is closed by the context managers."""
    distributed = need("distributed")
    model, X, _ = problem
    Xn = X.copy()
    Xn[13, 0] = np.inf
    with pytest.raises(ValueError) as one:
        fisherkit.fisher(model, Xn, shape="unit")
    with distributed.LocalCluster(**LOOPBACK) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        with dask.config.set(scheduler=c), pytest.raises(ValueError) as many:
            fisherkit.fisher(model, chunked(Xn, "rows7"), shape="unit")
        assert str(many.value) == str(one.value)
        lazy = fd.fisher(model, chunked(Xn, "uneven"), shape="unit", compute=False)
        with pytest.raises(ValueError) as again:
            c.compute(lazy).result(timeout=60)
        assert str(again.value) == str(one.value)
        with dask.config.set(scheduler=c):
            assert_same(fisherkit.fisher(model, chunked(X, "rows7")), fisherkit.fisher(model, X))
        procs = [w.process.process for w in cluster.workers.values()]
    assert c.status == "closed" and cluster.status.name == "closed"
    assert not any(p is not None and p.is_alive() for p in procs)


# ============================================================================ the example
def test_dask_example_runs_with_bounded_memory():
    out = subprocess.run([sys.executable, str(EXAMPLES / "dask_fisher.py")], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "memory bounded: True" in out and "n_samples=1048576" in out
