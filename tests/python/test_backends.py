"""One API over the two backends: NumPy arrays (the host executor) and CuPy arrays (the
CUDA executor; skipped without CuPy and a visible GPU). The passes are the same code for
both, so every case is checked against the brute-force float64 references (explicit
per-sample loops, analytic Jacobians, finite-difference Hessians): on the CPU here, on the
GPU where one is present. The routing of GPU arrays and the device checks are tested
without a GPU through an object that advertises host memory as device memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import fisherkit as fk
from fisherkit._loader import _core
from reference import (analytic_jacobian, forward, head_cov, head_loglik, model_layers, nll_grad, ref_exact,
                       ref_parts, ref_sampled, restrict, variance_sum_reference)

ESTIMATORS = ["exact", "score", "hessian", "empirical"]
SHAPES = ["diag", "unit", "layer", "full"]


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


@pytest.fixture(params=["numpy", "cupy"])
def backend(request) -> Iterator[Backend]:
    if request.param == "cupy":
        if not _gpu_ready():
            pytest.skip("CuPy and a visible CUDA device are needed for the GPU backend")
        import cupy

        yield Backend("cupy", cupy.asarray, True)
        return
    yield Backend("numpy", lambda a: a, False)


NETS = [
    # sizes, activations, head
    ([5, 7, 3], ["tanh"], "categorical"),
    ([4, 6, 5, 3], ["relu", "sigmoid"], "gaussian"),
    ([3, 5, 4, 6, 2], ["softplus", "tanh", "erf"], "bernoulli"),  # the general T recursion
    ([2, 1, 3], ["gelu"], "poisson"),
    ([3, 4, 2], ["silu"], "categorical"),
]


def _net(i: int, dtype: Any) -> fk.MLP:
    sizes, acts, head = NETS[i]
    return fk.MLP.init(sizes, activation=acts, head=head, seed=i + 1, dtype=dtype, bias_std=0.3)


def _data(m: fk.MLP, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, m.input_dim)).astype(m.dtype)
    y = fk.heads.sample(m.head, m.forward(X), seed=seed + 7, sigma=m.sigma)[:, 0]
    return X, y


def _tol(dtype: Any) -> float:
    return 1e-9 if dtype == np.float64 else 2e-4


def _close(got: Any, want: Any, dtype: Any, tol: float | None = None) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    t = _tol(dtype) if tol is None else tol
    scale = max(1e-30, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=t, atol=t * scale)


def _label_rows(m: fk.MLP, y: np.ndarray) -> np.ndarray:
    return y.reshape(len(y), -1) if m.head != "categorical" else y.reshape(-1, 1)


@pytest.mark.parametrize("net", range(len(NETS)))
def test_mlp_passes_against_per_sample_references(backend: Backend, net: int, dtype) -> None:
    m = _net(net, dtype)
    X, y = _data(m, 13)
    layers, acts = model_layers(m), m.activations
    X64 = X.astype(np.float64)
    md, Xd, yd = backend.model(m), backend.to_dev(X), backend.to_dev(y)
    _close(backend.host(md.forward(Xd, chunk=4)), forward(layers, acts, X64), dtype)
    yr = _label_rows(m, y)
    ll = [head_loglik(m.head, h, yy, m.sigma) for h, yy in zip(forward(layers, acts, X64), yr)]
    _close(backend.host(md.log_likelihood(Xd, yd, chunk=4)), ll, dtype)
    G = np.array([nll_grad(layers, acts, m.head, x, yy, m.sigma) for x, yy in zip(X64, yr)])
    _close(backend.host(md.per_sample_grads(Xd, yd, chunk=5)), G, dtype)
    loss, g = md.gradient(Xd, yd, chunk=6)
    assert abs(loss + np.mean(ll)) <= _tol(dtype) * max(1.0, abs(np.mean(ll)))
    _close(backend.host(g), G.mean(axis=0), dtype)
    J = np.array([analytic_jacobian(layers, acts, x) for x in X64[:4]])
    _close(backend.host(md.jacobian(Xd[:4])), J, dtype)


@pytest.mark.parametrize("net", range(len(NETS)))
def test_jvp_and_fisher_vector_products_against_dense_references(backend: Backend, net: int, dtype) -> None:
    m = _net(net, dtype)
    X, _ = _data(m, 9)
    layers, acts = model_layers(m), m.activations
    rng = np.random.default_rng(net)
    V = rng.normal(size=(m.n_params, 3)).astype(dtype)
    md, Xd = backend.model(m), backend.to_dev(X)
    J = np.array([analytic_jacobian(layers, acts, x) for x in X.astype(np.float64)])
    _close(backend.host(md.jvp(Xd, backend.to_dev(V[:, 0]), chunk=4)), J @ V[:, 0].astype(np.float64), dtype)
    F = ref_exact([(Jn, head_cov(m.head, h, m.sigma), None, h)
                   for Jn, h in zip(J, forward(layers, acts, X.astype(np.float64)))])
    _close(backend.host(fk.fisher_vector_product(md, Xd, backend.to_dev(V), chunk=4)), F @ V.astype(np.float64),
           dtype)
    _close(backend.host(fk.fisher_vector_product(md, Xd, backend.to_dev(V[:, 1]))), F @ V[:, 1].astype(np.float64),
           dtype)


@pytest.mark.parametrize("net", range(len(NETS)))
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("shape", SHAPES)
def test_fisher_every_estimator_and_shape(backend: Backend, net: int, estimator: str, shape: str) -> None:
    m = _net(net, np.float64)
    X, y = _data(m, 7, seed=net)
    md, Xd, yd = backend.model(m), backend.to_dev(X), backend.to_dev(y)
    labels = yd if estimator == "empirical" else None  # the others warn that y is ignored
    got = fk.fisher(md, Xd, labels, estimator=estimator, shape=shape, samples=3, seed=11, chunk=3).to_dense()
    parts = ref_parts(m, X)
    if estimator == "exact":
        ref = ref_exact(parts)
    elif estimator == "empirical":
        G = np.array([nll_grad(model_layers(m), m.activations, m.head, x, yy, m.sigma)
                      for x, yy in zip(X, _label_rows(m, y))])
        ref = G.T @ G / len(X)
    else:
        draws = fk.heads.sample(m.head, m.forward(X), samples=3, seed=11, sigma=m.sigma)
        ref = ref_sampled(m, parts, draws, estimator)
    # the Hessian reference uses finite-difference Hessians (error ~1e-9)
    _close(backend.host(got), restrict(ref, m.sizes, shape), np.float64, 1e-6 if estimator == "hessian" else 1e-9)


def test_fisher_chunking_and_offsets_agree(backend: Backend) -> None:
    """Streaming with index_offset and merge gives the one-shot estimate (same draws)."""
    m = _net(0, np.float64)
    X, _ = _data(m, 40)
    md, Xd = backend.model(m), backend.to_dev(X)
    whole = fk.fisher(md, Xd, estimator="score", shape="unit", samples=2, seed=3)
    a = fk.fisher(md, Xd[:17], estimator="score", shape="unit", samples=2, seed=3)
    b = fk.fisher(md, Xd[17:], estimator="score", shape="unit", samples=2, seed=3, index_offset=17)
    _close(backend.host(a.merge(b).to_dense()), backend.host(whole.to_dense()), np.float64, 1e-12)


@pytest.mark.parametrize("net", range(len(NETS)))
@pytest.mark.parametrize("estimator", ["score", "hessian"])
@pytest.mark.parametrize("shape", ["diag", "unit"])
def test_variance_against_the_numpy_reference(backend: Backend, net: int, estimator: str, shape: str, dtype) -> None:
    m = _net(net, dtype)
    X, _ = _data(m, 11, seed=net)
    md, Xd = backend.model(m), backend.to_dev(X)
    V = fk.variance(md, Xd, estimator=estimator, shape=shape, chunk=4)
    got = np.concatenate([np.ravel(backend.host(b)) for b in V.blocks]) if shape == "unit" else backend.host(V.values)
    want = variance_sum_reference(m, X.astype(np.float64), "v1" if estimator == "score" else "v2", shape, None)
    _close(got, want / len(X) ** 2, dtype, 1e-9 if dtype == np.float64 else 1e-3)


def test_dpr2_solve(backend: Backend) -> None:
    if backend.on_gpu:
        pytest.skip("dpr2_solve on CuPy arrays opens once its kernel has run on a GPU")
    rng = np.random.default_rng(5)
    B, k = 6, 9
    d = rng.uniform(1.0, 2.0, size=(B, k))
    U = rng.normal(size=(B, k, 2))
    S = np.array([[1.0, 0.2], [0.2, 0.5]])[None].repeat(B, axis=0)
    rhs = rng.normal(size=(B, k))
    got = fk.linalg.dpr2_solve(backend.to_dev(d), backend.to_dev(U), backend.to_dev(S), backend.to_dev(rhs), damping=0.1)
    dense = np.einsum("bi,ij->bij", d + 0.1, np.eye(k)) + U @ S @ np.swapaxes(U, 1, 2)
    _close(backend.host(got), np.linalg.solve(dense, rhs[..., None])[..., 0], np.float64, 1e-12)


# ---------------------------------------------------------------- routing without a GPU

class FakeDeviceArray:
    """Host memory advertised through __cuda_array_interface__: the core takes it for GPU
    memory, so a call dispatches to the CUDA backend (which fails before touching it when no
    GPU is visible or CUDA is not compiled in)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = np.ascontiguousarray(a)
        self.__cuda_array_interface__ = {
            "shape": self.a.shape, "typestr": self.a.dtype.str, "strides": None,
            "data": (self.a.ctypes.data, False), "version": 3, "stream": 1,
        }


@pytest.mark.skipif(_gpu_ready(), reason="checks the behaviour without a visible GPU")
def test_gpu_arrays_dispatch_to_the_cuda_backend() -> None:
    m = _net(0, np.float64)
    X, _ = _data(m, 4)
    Ws = [FakeDeviceArray(W) for W in m.weights]
    bs = [FakeDeviceArray(b) for b in m.biases]
    out = FakeDeviceArray(np.empty(m.layout.size("diag")))
    expected = "no CUDA device is visible" if _core.cuda_compiled() else "built without CUDA"
    with pytest.raises(RuntimeError, match=expected):
        _core.fisher(Ws, bs, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact", "diag",
                     1, 0, 0, 0, out)
    o2 = FakeDeviceArray(np.empty((4, m.output_dim)))
    with pytest.raises(RuntimeError, match=expected):
        _core.forward(Ws, bs, m.activations, FakeDeviceArray(X), o2, 0)
    with pytest.raises(RuntimeError, match=expected):
        _core.head_mean(m.head, m.sigma, FakeDeviceArray(X[:, :3]), FakeDeviceArray(np.empty((4, 3))))


def test_device_mismatch_is_named_before_any_gpu_work() -> None:
    m = _net(0, np.float64)
    X, _ = _data(m, 4)
    out = FakeDeviceArray(np.empty(m.layout.size("diag")))
    # host weights, GPU inputs: the host backend names X
    with pytest.raises(ValueError, match="argument 'X' is in GPU memory, but this computation runs in host memory"):
        _core.fisher(m.weights, m.biases, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact",
                     "diag", 1, 0, 0, 0, out)
    # weights split across devices
    Ws = [FakeDeviceArray(m.weights[0]), m.weights[1]]
    bs = [FakeDeviceArray(b) for b in m.biases]
    with pytest.raises(ValueError, match="live on different devices"):
        _core.fisher(Ws, bs, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact", "diag",
                     1, 0, 0, 0, out)
    if not _core.cuda_compiled():
        return
    # GPU inputs and weights, host output: the CUDA backend names out before touching the device
    Ws = [FakeDeviceArray(W) for W in m.weights]
    with pytest.raises(ValueError, match="argument 'out' is in host memory"):
        _core.fisher(Ws, bs, m.activations, m.head, m.sigma, FakeDeviceArray(X), None, "exact", "diag",
                     1, 0, 0, 0, np.empty(m.layout.size("diag")))


def test_mixing_numpy_and_cupy_is_a_type_error_naming_the_arguments() -> None:
    fake_cupy = type("ndarray", (), {"__module__": "cupy._core.core"})
    m = _net(0, np.float64)
    with pytest.raises(TypeError, match=r"X on the GPU \(CuPy\).*on the CPU \(NumPy\)"):
        fk.fisher(m, fake_cupy())


def test_info_reports_cuda() -> None:
    facts = fk.info()
    assert facts["cuda_compiled"] == _core.cuda_compiled()
    assert facts["gpu_visible"] == (_core.cuda_compiled() and _core.cuda_device_count() > 0)


def test_passes_check_values_on_the_executor_naming_the_argument() -> None:
    m = _net(0, np.float64)
    X, y = _data(m, 6)
    out = np.empty(m.layout.size("diag"))
    args = (m.weights, m.biases, m.activations, m.head, m.sigma)
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
    with pytest.raises(ValueError, match="the network output is not finite at input row 0"):
        _core.forward([np.ones((3, 5))], [np.zeros(3)], [], np.full((6, 5), 1e308), np.empty((6, 3)), 0)
    with pytest.raises(ValueError, match="argument 'out' must have"):
        _core.fisher(*args, X, None, "exact", "diag", 1, 0, 0, 0, out[:-1])
