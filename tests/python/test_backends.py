"""One API over three backends: the CPU engine (NumPy arrays), the portable passes of the
CUDA backend run by the host executor (NumPy arrays with the test switch on), and the
CUDA backend itself (CuPy arrays; skipped without CuPy and a visible GPU).

Every public function is called on each backend and compared with the CPU engine. The
"portable" case runs the GPU backend's algorithms line for line on the CPU (only the
executor's primitives differ: kernels and cuBLAS there, loops and OpenBLAS here), so
these tests check the CUDA path's maths on machines without a GPU.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import fisherkit as fk
from fisherkit._loader import _core
from fisherkit.fisher import result_size

ESTIMATORS = ["exact", "score", "hessian", "empirical"]
SHAPES = ["diag", "unit", "layer", "full"]


@contextlib.contextmanager
def portable(on: bool) -> Iterator[None]:
    prev = _core._use_portable_passes(on)
    try:
        yield
    finally:
        _core._use_portable_passes(prev)


@dataclass
class Backend:
    name: str
    to_dev: Callable[[Any], Any]
    on_gpu: bool

    def model(self, m: fk.MLP) -> fk.MLP:
        return m.to("cuda") if self.on_gpu else m

    def host(self, a: Any) -> np.ndarray:
        return a.get() if self.on_gpu else np.asarray(a)


def _gpu_ready() -> bool:
    try:
        import cupy

        return bool(fk.info()["gpu_visible"]) and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy or no driver: no GPU backend
        return False


@pytest.fixture(params=["numpy", "portable", "cupy"])
def backend(request) -> Iterator[Backend]:
    if request.param == "cupy":
        if not _gpu_ready():
            pytest.skip("CuPy and a visible CUDA device are needed for the GPU backend")
        import cupy

        yield Backend("cupy", cupy.asarray, True)
        return
    with portable(request.param == "portable"):
        yield Backend(request.param, lambda a: a, False)


def reference(fn: Callable[[], Any]) -> Any:
    """fn() on the CPU engine, whatever the backend under test."""
    with portable(False):
        return fn()


NETS = [
    # sizes, activations, head
    ([5, 7, 3], ["tanh"], "categorical"),
    ([4, 6, 5, 3], ["relu", "sigmoid"], "gaussian"),
    ([3, 5, 4, 6, 2], ["softplus", "tanh", "erf"], "bernoulli"),
    ([2, 1, 3], ["tanh"], "poisson"),
]


def _net(i: int, dtype: Any) -> fk.MLP:
    sizes, acts, head = NETS[i]
    return fk.MLP.init(sizes, activation=acts, head=head, seed=i + 1, dtype=dtype)


def _data(m: fk.MLP, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m.input_dim)).astype(m.dtype)
    y = fk.heads.sample(m.head, m.forward(X), seed=seed + 7, sigma=m.sigma)[:, 0]
    return X, y


def _tol(dtype: Any) -> float:
    return 1e-10 if dtype == np.float64 else 2e-4


def _close(got: Any, want: Any, dtype: Any) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=_tol(dtype), atol=_tol(dtype) * scale)


@pytest.mark.parametrize("net", range(len(NETS)))
def test_mlp_passes(backend: Backend, net: int, dtype) -> None:
    m = _net(net, dtype)
    X, y = _data(m, 29)
    md, Xd, yd = backend.model(m), backend.to_dev(X), backend.to_dev(y)
    _close(backend.host(md.forward(Xd, chunk=8)), reference(lambda: m.forward(X)), dtype)
    _close(backend.host(md.log_likelihood(Xd, yd, chunk=8)), reference(lambda: m.log_likelihood(X, y)), dtype)
    loss, g = md.gradient(Xd, yd, chunk=8)
    loss_r, g_r = reference(lambda: m.gradient(X, y))
    assert abs(loss - loss_r) <= _tol(dtype) * max(1.0, abs(loss_r))
    _close(backend.host(g), g_r, dtype)
    _close(backend.host(md.per_sample_grads(Xd, yd, chunk=8)), reference(lambda: m.per_sample_grads(X, y)), dtype)


@pytest.mark.parametrize("net", range(len(NETS)))
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("shape", SHAPES)
def test_fisher_every_estimator_and_shape(backend: Backend, net: int, estimator: str, shape: str, dtype) -> None:
    m = _net(net, dtype)
    X, y = _data(m, 23, seed=net)
    md, Xd, yd = backend.model(m), backend.to_dev(X), backend.to_dev(y)
    kw = dict(estimator=estimator, shape=shape, samples=3, seed=11, chunk=7)
    if backend.name != "numpy" and estimator == "hessian" and shape in ("layer", "full"):
        with pytest.raises(ValueError, match="not in the portable"):
            fk.fisher(md, Xd, yd, **kw)
        return
    got = fk.fisher(md, Xd, yd, **kw).to_dense()
    want = reference(lambda: fk.fisher(m, X, y, **kw).to_dense())
    _close(backend.host(got), want, dtype)


def test_fisher_chunking_and_offsets_agree(backend: Backend) -> None:
    """Streaming with index_offset and merge gives the one-shot estimate (same draws)."""
    m = _net(0, np.float64)
    X, _ = _data(m, 40)
    md, Xd = backend.model(m), backend.to_dev(X)
    whole = fk.fisher(md, Xd, estimator="score", shape="unit", samples=2, seed=3)
    a = fk.fisher(md, Xd[:17], estimator="score", shape="unit", samples=2, seed=3)
    b = fk.fisher(md, Xd[17:], estimator="score", shape="unit", samples=2, seed=3, index_offset=17)
    _close(backend.host(a.merge(b).to_dense()), backend.host(whole.to_dense()), np.float64)


@pytest.mark.parametrize("net", range(len(NETS)))
@pytest.mark.parametrize("which", ["v1", "v2", "c12", "fsq"])
@pytest.mark.parametrize("shape", ["diag", "unit"])
def test_variance_core(backend: Backend, net: int, which: str, shape: str, dtype) -> None:
    m = _net(net, dtype)
    X, _ = _data(m, 19, seed=net)
    md, Xd = backend.model(m), backend.to_dev(X)
    xp = md.xp
    out = xp.empty(result_size(m.sizes, shape), dtype=dtype)
    _core.variance_sum(*md._core_args(), m.head, m.sigma, Xd, which, shape, 5, out)
    want = np.empty(result_size(m.sizes, shape), dtype=dtype)
    reference(lambda: _core.variance_sum(*m._core_args(), m.head, m.sigma, X, which, shape, 0, want))
    _close(backend.host(out), want, dtype)


@pytest.mark.parametrize("estimator", ["score", "hessian"])
@pytest.mark.parametrize("shape", ["diag", "unit"])
def test_variance_api(backend: Backend, estimator: str, shape: str) -> None:
    m = _net(1, np.float64)
    X, _ = _data(m, 15)
    md, Xd = backend.model(m), backend.to_dev(X)
    got = fk.variance(md, Xd, estimator=estimator, shape=shape, samples=2)
    want = reference(lambda: fk.variance(m, X, estimator=estimator, shape=shape, samples=2))
    _close(backend.host(got.to_dense()), want.to_dense(), np.float64)


@pytest.mark.parametrize("method", ["unit", "unit-correlated", "diag", "quasi-diagonal"])
def test_natural_gradient(backend: Backend, method: str) -> None:
    m = _net(0, np.float64)
    X, y = _data(m, 31)
    md, Xd, yd = backend.model(m), backend.to_dev(X), backend.to_dev(y)
    _, g = md.gradient(Xd, yd)
    got = fk.natgrad.natural_gradient(md, Xd, g, method=method, damping=1e-3)
    want = reference(lambda: fk.natgrad.natural_gradient(m, X, m.gradient(X, y)[1], method=method, damping=1e-3))
    _close(backend.host(got), want, np.float64)


def test_dpr2_solve(backend: Backend) -> None:
    rng = np.random.default_rng(5)
    B, k = 6, 9
    d = rng.uniform(1.0, 2.0, size=(B, k))
    U = rng.normal(size=(B, k, 2))
    S = np.array([[1.0, 0.2], [0.2, 0.5]])[None].repeat(B, axis=0)
    rhs = rng.normal(size=(B, k))
    got = fk.linalg.dpr2_solve(backend.to_dev(d), backend.to_dev(U), backend.to_dev(S), backend.to_dev(rhs), damping=0.1)
    dense = np.einsum("bi,ij->bij", d + 0.1, np.eye(k)) + U @ S @ np.swapaxes(U, 1, 2)
    _close(backend.host(got), np.linalg.solve(dense, rhs[..., None])[..., 0], np.float64)


# ---------------------------------------------------------------- routing without a GPU

class FakeDeviceArray:
    """Host memory advertised through __cuda_array_interface__: the core takes it for GPU
    memory, so a call routes to the CUDA entry points (which fail before touching it when
    no GPU is visible or CUDA is not compiled in)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = np.ascontiguousarray(a)
        self.__cuda_array_interface__ = {
            "shape": self.a.shape, "typestr": self.a.dtype.str, "strides": None,
            "data": (self.a.ctypes.data, False), "version": 3, "stream": 1,
        }


@pytest.mark.skipif(_gpu_ready(), reason="checks the behaviour without a visible GPU")
def test_gpu_arrays_route_to_the_cuda_entry_points() -> None:
    m = _net(0, np.float64)
    X, _ = _data(m, 4)
    Ws = [FakeDeviceArray(W) for W in m.weights]
    bs = [FakeDeviceArray(b) for b in m.biases]
    out = FakeDeviceArray(np.empty(result_size(m.sizes, "diag")))
    expected = "no CUDA device is visible" if _core.cuda_compiled() else "built without CUDA"
    with pytest.raises(RuntimeError, match=expected):
        _core.fisher(Ws, bs, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact", "diag",
                     1, 0, 0, 0, out)
    o2 = FakeDeviceArray(np.empty((4, m.output_dim)))
    with pytest.raises(RuntimeError, match=expected):
        _core.forward(Ws, bs, m.activations, FakeDeviceArray(X), o2, 0)


@pytest.mark.skipif(not _core.cuda_compiled(), reason="the device checks live in the CUDA passes")
def test_device_mismatch_is_named_before_any_gpu_work() -> None:
    m = _net(0, np.float64)
    X, _ = _data(m, 4)
    out = FakeDeviceArray(np.empty(result_size(m.sizes, "diag")))
    # host weights, GPU inputs
    with pytest.raises(ValueError, match="argument 'X' is in GPU memory but the MLP's weights are in host"):
        _core.fisher(m.weights, m.biases, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact",
                     "diag", 1, 0, 0, 0, out)
    # weights split across devices
    Ws = [FakeDeviceArray(m.weights[0]), m.weights[1]]
    bs = [FakeDeviceArray(b) for b in m.biases]
    with pytest.raises(ValueError, match="live on different devices"):
        _core.fisher(Ws, bs, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact", "diag",
                     1, 0, 0, 0, out)
    # GPU inputs and weights, host output
    Ws = [FakeDeviceArray(W) for W in m.weights]
    with pytest.raises(ValueError, match="argument 'out' is in host memory"):
        _core.fisher(Ws, bs, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact", "diag",
                     1, 0, 0, 0, np.empty(result_size(m.sizes, "diag")))


def test_mixing_numpy_and_cupy_is_a_type_error_naming_the_arguments() -> None:
    fake_cupy = type("ndarray", (), {"__module__": "cupy._core.core"})
    m = _net(0, np.float64)
    with pytest.raises(TypeError, match=r"X on the GPU \(CuPy\).*on the CPU \(NumPy\)"):
        fk.fisher(m, fake_cupy())


def test_portable_switch_is_off_by_default_and_restores() -> None:
    assert _core._use_portable_passes(False) is False
    with portable(True):
        assert _core._use_portable_passes(True) is True
    assert _core._use_portable_passes(False) is False


def test_info_reports_cuda() -> None:
    facts = fk.info()
    assert facts["cuda_compiled"] == _core.cuda_compiled()
    assert facts["gpu_visible"] == (_core.cuda_compiled() and _core.cuda_device_count() > 0)


def test_portable_passes_validate_like_the_cpu_engine() -> None:
    m = _net(0, np.float64)
    X, y = _data(m, 6)
    out = np.empty(result_size(m.sizes, "diag"))
    args = (m.weights, m.biases, m.activations, m.head, m.sigma)
    with portable(True):
        Xbad = X.copy()
        Xbad[3, 2] = np.nan
        with pytest.raises(ValueError, match=r"argument 'X' contains NaN or Inf \(first at \[3, 2\]\)"):
            _core.fisher(*args, Xbad, None, "exact", "diag", 1, 0, 0, 0, out)
        ybad = y.reshape(-1, 1).astype(np.float64)
        ybad[4, 0] = 9
        with pytest.raises(ValueError, match="argument 'y' row 4 is not a class index"):
            _core.fisher(*args, X, ybad, "empirical", "diag", 1, 0, 0, 0, out)
        Wbad = [W.copy() for W in m.weights]
        Wbad[1][0, 1] = np.inf
        with pytest.raises(ValueError, match=r"argument 'layers\[1\].weight' contains NaN or Inf"):
            _core.fisher(Wbad, m.biases, m.activations, m.head, m.sigma, X, None, "exact", "diag", 1, 0, 0, 0, out)
        with pytest.raises(ValueError, match="the network output is not finite"):
            _core.forward([np.ones((3, 5))], [np.zeros(3)], [], np.full((6, 5), 1e308), np.empty((6, 3)), 0)
        with pytest.raises(ValueError, match="argument 'out' must have"):
            _core.fisher(*args, X, None, "exact", "diag", 1, 0, 0, 0, out[:-1])
