"""The MLP engine against explicit NumPy references and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit
from reference import analytic_jacobian, fd_jacobian, forward, head_loglik, model_layers, nll_grad

ACTS = ["identity", "relu", "tanh", "sigmoid", "softplus", "erf"]
HEADS = ["gaussian", "categorical", "bernoulli", "poisson"]
# float32: a forward pass of depth L accumulates ~ L * width * eps relative error; 2e-5 is
# ~170 eps32 and comfortably above that for the widths below, far below any real bug.
TOL = {np.float64: 1e-11, np.float32: 2e-5}


def close_to_scale(got, want, dtype):
    """got equals want within TOL[dtype] of want's largest magnitude (entry-wise)."""
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * np.abs(want).max())


def reference_grads(m, X, y):
    """The per-sample gradients of a categorical model by the chain-rule reference, in
    float64 from X rounded to the model's dtype."""
    layers, Xr = model_layers(m), np.asarray(X).astype(m.dtype).astype(np.float64)
    return np.array([nll_grad(layers, m.activations, "categorical", x, yy) for x, yy in zip(Xr, y)])


def labels(head, n, c, rng):
    if head == "categorical":
        return rng.integers(0, c, n)
    if head == "bernoulli":
        return rng.integers(0, 2, (n, c)).astype(float)
    if head == "poisson":
        return rng.poisson(1.5, (n, c)).astype(float)
    return rng.standard_normal((n, c))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sizes", [[3, 5, 4], [1, 1, 2], [7, 2, 3, 11, 2], [4, 13]])
def test_forward_matches_reference(act, dtype, sizes):
    rng = np.random.default_rng(1)
    m = fisherkit.MLP.init(sizes, act, "categorical" if sizes[-1] > 1 else "gaussian", seed=3,
                           dtype=dtype, bias_std=0.3)
    X = rng.standard_normal((9, sizes[0]))
    ref = forward(model_layers(m), m.activations, X.astype(dtype).astype(float))
    got = m.forward(X)
    assert got.dtype == dtype and got.shape == (9, sizes[-1])
    np.testing.assert_allclose(got, ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("act", ["tanh", "softplus", "erf", "relu"])
def test_per_sample_grads_match_chain_rule_and_finite_differences(head, act):
    rng = np.random.default_rng(2)
    m = fisherkit.MLP.init([3, 4, 5, 3], act, head, seed=5, bias_std=0.2, sigma=0.7)
    X = rng.standard_normal((6, 3))
    y = labels(head, 6, 3, rng)
    G = m.per_sample_grads(X, y)
    layers = model_layers(m)
    yr = y.reshape(6, -1)
    for n in range(6):
        np.testing.assert_allclose(G[n], nll_grad(layers, m.activations, head, X[n], yr[n], 0.7),
                                   rtol=1e-10, atol=1e-12)
    # finite differences of the log-likelihood itself (not of our chain rule)
    theta = m.flat_params()
    eps = 1e-6
    for i in rng.choice(m.n_params, 12, replace=False):
        mp, mm = m.copy(), m.copy()
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        mp.set_flat_params(tp)
        mm.set_flat_params(tm)
        fd = -(mp.log_likelihood(X, y) - mm.log_likelihood(X, y)) / (2 * eps)
        np.testing.assert_allclose(G[:, i], fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("act", ACTS)
def test_jacobian_matches_central_differences(act):
    rng = np.random.default_rng(3)
    m = fisherkit.MLP.init([2, 3, 4, 3], act, "categorical", seed=7, bias_std=0.5)
    X = rng.standard_normal((3, 2)) + 0.1  # keep relu away from its kink
    J = m.jacobian(X)
    for n in range(3):
        fd = fd_jacobian(model_layers(m), m.activations, X[n])
        np.testing.assert_allclose(J[n], fd, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(J[n], analytic_jacobian(model_layers(m), m.activations, X[n]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("head", HEADS)
def test_log_likelihood_and_gradient(head):
    rng = np.random.default_rng(4)
    m = fisherkit.MLP.init([4, 6, 2], "tanh", head, seed=1, sigma=1.3)
    X = rng.standard_normal((10, 4))
    y = labels(head, 10, 2, rng)
    ll = m.log_likelihood(X, y)
    h = forward(model_layers(m), m.activations, X)
    yr = y.reshape(10, -1)
    np.testing.assert_allclose(ll, [head_loglik(head, h[n], yr[n], 1.3) for n in range(10)], rtol=1e-12)
    loss, g = m.gradient(X, y)
    assert loss == pytest.approx(-ll.mean(), rel=1e-12)
    np.testing.assert_allclose(g, m.per_sample_grads(X, y).mean(0), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float32_agrees_with_float64(dtype):
    rng = np.random.default_rng(5)
    m64 = fisherkit.MLP.init([8, 16, 16, 4], "tanh", "categorical", seed=2)
    m = fisherkit.MLP(m64.layers, m64.activations, "categorical", dtype=dtype)
    X = rng.standard_normal((32, 8))
    y = rng.integers(0, 4, 32)
    G64 = m64.per_sample_grads(X, y)
    G = m.per_sample_grads(X, y)
    assert G.dtype == dtype
    # relative to the scale of the gradients: float32 eps (1.2e-7) times depth x width slack
    close_to_scale(G, G64, dtype)


def test_chunk_and_layout_independence():
    rng = np.random.default_rng(6)
    m = fisherkit.MLP.init([5, 7, 3], "sigmoid", "categorical", seed=0)
    Xf = np.asfortranarray(rng.standard_normal((23, 5)))
    y = rng.integers(0, 3, 23)
    base = m.per_sample_grads(np.ascontiguousarray(Xf), y)
    np.testing.assert_array_equal(m.per_sample_grads(Xf, y), base)  # the layout: bit for bit
    for chunk in (1, 2, 7, 0, 1000):  # the first layer's products of later chunks sum in another order
        close_to_scale(m.per_sample_grads(Xf, y, chunk=chunk), base, np.float64)
    Xbig = rng.standard_normal((10, 12))
    view = Xbig[::2, 1:11:2]  # non-contiguous view, 5 columns
    np.testing.assert_array_equal(m.forward(view), m.forward(view.copy()))
    Xt = rng.standard_normal((5, 9)).T  # transposed view
    np.testing.assert_array_equal(m.forward(Xt), m.forward(np.ascontiguousarray(Xt)))


def test_flat_params_order_and_npz_roundtrip(tmp_path):
    m = fisherkit.MLP.init([3, 2, 2], "relu", "bernoulli", seed=9, bias_std=1.0)
    (W1, b1), (W2, b2) = m.layers
    expect = np.concatenate([W1.ravel(), b1, W2.ravel(), b2])
    np.testing.assert_array_equal(m.flat_params(), expect)
    assert m.n_params == expect.size == 3 * 2 + 2 + 2 * 2 + 2
    path = tmp_path / "m.npz"
    m.to_npz(path)
    m2 = fisherkit.MLP.from_npz(path)
    assert m2.sizes == m.sizes and m2.activations == m.activations and m2.head == m.head
    np.testing.assert_array_equal(m2.flat_params(), m.flat_params())
    m2.set_flat_params(np.zeros(m.n_params))
    assert np.all(m.flat_params() == expect)  # copies, not aliases


def test_mixed_dtype_inputs_are_converted_once():
    m = fisherkit.MLP.init([3, 4, 2], "tanh", "categorical", dtype=np.float32)
    X = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert m.forward(X).dtype == np.float32
    np.testing.assert_allclose(m.forward(X), m.forward(X.astype(np.float32)))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: fisherkit.MLP([(np.ones((3, 2)), np.ones(3)), (np.ones((2, 4)), np.ones(2))]), "do not chain"),
        (lambda: fisherkit.MLP([(np.ones((3, 2)), np.ones(2))]), "bias"),
        (lambda: fisherkit.MLP([(np.ones((3, 2)), np.ones(3)), (np.ones((2, 3)), np.ones(2))], "swish"), "activation"),
        (lambda: fisherkit.MLP([(np.ones((3, 2)), np.ones(3))], head="laplace"), "head"),
        (lambda: fisherkit.MLP([(np.ones((1, 2)), np.ones(1))], head="categorical"), "2 outputs"),
        (lambda: fisherkit.MLP([(np.ones((3, 2)), np.ones(3))], head="gaussian", sigma=0.0), "sigma"),
        (lambda: fisherkit.MLP([]), "empty"),
        (lambda: fisherkit.MLP.init([3], "tanh"), "sizes"),
        (lambda: fisherkit.MLP([(np.ones((3, 2)), np.ones(3)), (np.ones((2, 3)), np.ones(2))], ["tanh", "relu"]), "one activation per hidden layer"),
    ],
)
def test_bad_models_are_rejected(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_bad_inputs_are_rejected():
    m = fisherkit.MLP.init([3, 4, 3], "tanh", "categorical")
    X = np.zeros((2, 3))
    with pytest.raises(ValueError, match="'X' must have 3 columns"):
        m.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="empty batch"):
        m.forward(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="2-D"):
        m.forward(np.zeros(3))
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"'X' contains NaN or Inf \(first at \[1, 2\]\)"):
        m.forward(bad)
    with pytest.raises(ValueError, match="class index"):
        m.log_likelihood(X, [0, 3])
    with pytest.raises(ValueError, match="class index"):
        m.log_likelihood(X, [0.5, 1])
    with pytest.raises(ValueError, match="'y' must have shape"):
        m.log_likelihood(X, [0, 1, 2])
    mw = m.copy()
    mw.weights[1][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"layers\[1\].weight' contains NaN or Inf"):
        mw.forward(X)
    with pytest.raises(MemoryError, match="jacobian"):
        m.jacobian(X, max_bytes=10)
    with pytest.raises(TypeError, match="numeric"):
        m.forward(np.array([["a", "b", "c"]]))
    mp = fisherkit.MLP.init([2, 2], head="poisson")
    with pytest.raises(ValueError, match="count"):
        mp.log_likelihood(np.zeros((1, 2)), [[1.0, -1.0]])
    mb = fisherkit.MLP.init([2, 2], head="bernoulli")
    with pytest.raises(ValueError, match="0 or 1"):
        mb.log_likelihood(np.zeros((1, 2)), [[1.0, 0.5]])


def test_init_is_reproducible_and_scaled():
    a = fisherkit.MLP.init([50, 40, 3], "relu", seed=11)
    b = fisherkit.MLP.init([50, 40, 3], "relu", seed=11)
    np.testing.assert_array_equal(a.flat_params(), b.flat_params())
    W1 = a.weights[0]
    assert W1.std() == pytest.approx(np.sqrt(2 / 50), rel=0.1)  # He scale for relu


def test_out_buffers_are_written_and_checked():
    rng = np.random.default_rng(7)
    m = fisherkit.MLP.init([4, 5, 3], "tanh", "categorical", seed=1)
    X = rng.standard_normal((6, 4))
    y = rng.integers(0, 3, 6)
    buf = np.full((6, m.n_params), np.nan)
    got = m.per_sample_grads(X, y, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, m.per_sample_grads(X, y))
    jb = np.empty((6, 3, m.n_params))
    assert m.jacobian(X, out=jb) is jb
    np.testing.assert_array_equal(jb, m.jacobian(X))
    with pytest.raises(ValueError, match="'out' must be a C-contiguous float64 array of shape"):
        m.per_sample_grads(X, y, out=np.empty((6, m.n_params), np.float32))
    with pytest.raises(ValueError, match="'out'"):
        m.jacobian(X, out=np.empty((3, 6, m.n_params)).transpose(1, 0, 2))


def test_single_row_with_zero_stride():
    """NumPy's x[None] has row stride 0: valid for one row, and must not reach BLAS as lda=0."""
    m = fisherkit.MLP.init([5, 4, 3], "tanh", "categorical", seed=2)
    X = np.random.default_rng(8).standard_normal((3, 5))
    one = X[1][None]
    assert one.strides[0] == 0 or one.shape[0] == 1
    np.testing.assert_array_equal(m.forward(one), m.forward(X[1:2].copy()))
    np.testing.assert_array_equal(fisherkit.fisher(m, one).values, fisherkit.fisher(m, X[1:2].copy()).values)
    w1 = np.random.default_rng(9).standard_normal(4)[None]  # a one-row weight with stride 0
    m1 = fisherkit.MLP([(m.weights[0], m.biases[0]), (w1, np.zeros(1))], "tanh", "gaussian")
    np.testing.assert_allclose(m1.forward(X)[:, 0], np.tanh(X @ m.weights[0].T + m.biases[0]) @ w1[0], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_layer_products_beside_the_stores_match_at_every_chunk_and_alignment(dtype):
    """In float64 the host computes the first layer's products X W_1^T of every chunk but the
    first in the loop that stores the chunk before (float32 keeps BLAS's GEMM). Those sums do
    not depend on where `out` lies, so the rows are bit-equal across alignments of `out`;
    across chunk sizes (chunk 1 fuses every row after the first, one chunk none) they agree to
    rounding, and all match the chain-rule reference. Fan-in 131: whole SIMD vectors and a
    remainder; an odd P, so rows start at every alignment."""
    rng = np.random.default_rng(12)
    m = fisherkit.MLP.init([131, 17, 3], "tanh", "categorical", seed=6, dtype=dtype, bias_std=0.3)
    P, N = m.n_params, 13
    X = rng.standard_normal((N, 131))
    y = rng.integers(0, 3, N)
    want = reference_grads(m, X, y)
    base = m.per_sample_grads(X, y, chunk=N)  # one chunk: BLAS's products only
    close_to_scale(base, want, dtype)
    for chunk in (1, 2, 5, 12):
        first = None
        for offset in (0, 1, 3):
            buf = np.full(N * P + offset, np.nan, dtype=dtype)
            out = buf[offset:].reshape(N, P)
            m.per_sample_grads(X, y, chunk=chunk, out=out)
            first = out.copy() if first is None else first
            np.testing.assert_array_equal(out, first, err_msg=f"chunk={chunk} offset={offset}")
        close_to_scale(first, want, dtype)
        close_to_scale(first, base, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [0, 1])
def test_wide_rows_are_streamed_correctly_at_every_alignment(dtype, offset):
    """Rows of 4 SIMD vectors and more (32 float64 or 64 float32 values with AVX-512, half
    that with AVX) go out by non-temporal stores after a scalar head that aligns them; the
    narrower ones stay scalar. Fan-ins on both sides of both thresholds, an odd P (so the
    rows of successive inputs start at every alignment), and an `out` one element off the
    allocation's alignment, against the chain-rule references."""
    rng = np.random.default_rng(11)
    sizes = [130, 65, 64, 63, 33, 32, 31, 3]
    m = fisherkit.MLP.init(sizes, "tanh", "categorical", seed=5, dtype=dtype, bias_std=0.3)
    P, N = m.n_params, 11
    assert P % 2 == 1
    X = rng.standard_normal((N, sizes[0]))
    y = rng.integers(0, 3, N)
    want = reference_grads(m, X, y)
    buf = np.full(N * P + offset, np.nan, dtype=dtype)
    out = buf[offset:].reshape(N, P)
    assert m.per_sample_grads(X, y, out=out) is out
    assert np.isnan(buf[:offset]).all()
    close_to_scale(out, want, dtype)
    for chunk in (1, 4):  # other GEMM shapes: equal to rounding, not bit for bit
        close_to_scale(m.per_sample_grads(X, y, chunk=chunk), want, dtype)
    jb = np.full(3 * 3 * P + offset, np.nan, dtype=dtype)
    J = jb[offset:].reshape(3, 3, P)
    m.jacobian(X[:3], out=J)
    Xr = X[:3].astype(dtype).astype(np.float64)
    close_to_scale(J, np.array([analytic_jacobian(model_layers(m), m.activations, x) for x in Xr]), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", list(fisherkit.model.ACTIVATIONS))
def test_activations_of_wide_layers_match_reference(act, dtype):
    """Hidden layers of 37 and 70 units: the activation loops (built with -ffast-math and
    glibc's vector maths) run whole SIMD vectors plus a remainder, in both dtypes. The
    narrow layers of the other tests (13 units at most) ran only the scalar remainder in
    float32. Two inputs are large enough to saturate every activation and reach the clamps
    that keep exp from overflowing. The forward pass (phi) and the per-sample gradients
    (phi') against the float64 references."""
    rng = np.random.default_rng(17)
    m = fisherkit.MLP.init([5, 37, 70, 3], act, "categorical", seed=7, dtype=dtype, bias_std=0.5)
    X = np.vstack([2.0 * rng.standard_normal((9, 5)), 60.0 * rng.standard_normal((2, 5))])
    y = rng.integers(0, 3, len(X))
    close_to_scale(m.forward(X), forward(model_layers(m), m.activations, X.astype(dtype).astype(np.float64)), dtype)
    close_to_scale(m.per_sample_grads(X, y), reference_grads(m, X, y), dtype)
