"""Closed-form variances of the sampled Fisher estimators (fisherkit.variance; issue 4,
docs/maths/variance.rst#variance).

Oracles, all independent of fisherkit's engine:
* O4: exact enumeration of the label support (categorical; Bernoulli over {0,1}^C; Poisson
  truncated; the 3-point Gauss-Hermite product rule for the Gaussian, exact to degree 5) of
  the per-draw estimator matrices I1(y) = s s^T and I2(y) = J^T I J - sum_a tau_a H_a, with J
  by explicit backpropagation and H by the complex step of that Jacobian (exact to rounding);
  sum_y p(y) (I(y) - F)^2 against the closed form for diag, unit, layer and full;
* O5: Monte Carlo over seeds of fisherkit.fisher with a 5-standard-error criterion per entry;
  structural zeros exactly zero in both;
* O7 bounds, O8 input sampling, O9 golden values, O10 float32 against float64.
"""
from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest

import fisherkit
from reference import head_support, variance_sum_reference

# the module itself: once __init__ exports the function fisherkit.variance, the package
# attribute `variance` is the function, not this module
fv = importlib.import_module("fisherkit.variance")

SIGMA = 0.7


# ============================================================================ test-local references
def _phi(name, z):
    """phi, phi' of a hidden activation; holomorphic so the complex step works."""
    if name == "tanh":
        t = np.tanh(z)
        return t, 1 - t * t
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s, s * (1 - s)
    if name == "softplus":
        s = 1 / (1 + np.exp(-z))
        return np.log(1 + np.exp(z)), s
    if name == "identity":
        return z, np.ones_like(z)
    if name == "relu":
        pos = np.real(z) > 0
        return np.where(pos, z, 0), pos.astype(float)
    raise ValueError(name)


def _geometry(layers):
    offs, off = [], 0
    for W, b in layers:
        offs.append(off)
        off += W.size + b.size
    return offs, off


def jacobian_c(layers, acts, x):
    """(h, J) with J = dh/dtheta (C x P) by explicit backpropagation, complex-safe."""
    a = np.asarray(x, dtype=complex)
    abars, zs = [], []
    L = len(layers)
    for l, (W, b) in enumerate(layers):
        abars.append(np.append(a, 1.0))
        z = W @ a + b
        zs.append(z)
        if l < L - 1:
            a = _phi(acts[l], z)[0]
    C = zs[-1].shape[0]
    offs, P = _geometry(layers)
    J = np.zeros((C, P), dtype=complex)
    delta = np.eye(C, dtype=complex)  # dh/dz_l, rows per output
    for l in range(L - 1, -1, -1):
        W, b = layers[l]
        n_out, n_in = W.shape
        for c in range(C):
            J[c, offs[l]:offs[l] + W.size] = np.outer(delta[c], abars[l][:-1]).ravel()
            J[c, offs[l] + W.size:offs[l] + W.size + n_out] = delta[c]
        if l > 0:
            delta = (delta @ W) * _phi(acts[l - 1], zs[l - 1])[1]
    return zs[-1], J


def unpack(layers, theta):
    out, off = [], 0
    for W, b in layers:
        out.append((theta[off:off + W.size].reshape(W.shape), theta[off + W.size:off + W.size + b.size]))
        off += W.size + b.size
    return out


def hessians_cs(layers, acts, x, step=1e-30):
    """(C, P, P) output Hessians by the complex step of the analytic Jacobian."""
    theta = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers]).astype(complex)
    P = theta.size
    C = layers[-1][0].shape[0]
    H = np.zeros((C, P, P))
    for i in range(P):
        t = theta.copy()
        t[i] += 1j * step
        H[:, :, i] = jacobian_c(unpack(layers, t), acts, x)[1].imag / step
    return 0.5 * (H + H.transpose(0, 2, 1))


def model_layers(model):
    return [(np.asarray(W, float), np.asarray(b, float)) for W, b in model.layers]


def enumerate_input(model, x):
    """Exact per-input, single-draw moments by enumerating the label support:
    F, Var(I1), Var(I2), Cov(I1, I2) (each P x P), plus the support (w, I1(y), I2(y))."""
    layers = model_layers(model)
    h, J = jacobian_c(layers, model.activations, x)
    h, J = h.real, J.real
    H = hessians_cs(layers, model.activations, x)
    _, w, T = head_support(model.head, h, model.sigma)
    tau = T - w @ T
    I = (tau * w[:, None]).T @ tau
    F = J.T @ I @ J
    s = tau @ J  # (Y, P) scores
    I1 = s[:, :, None] * s[:, None, :]
    I2 = F[None] - np.einsum("ya,apq->ypq", tau, H)
    D1, D2 = I1 - F, I2 - F
    V1 = np.einsum("y,ypq,ypq->pq", w, D1, D1)
    V2 = np.einsum("y,ypq,ypq->pq", w, D2, D2)
    C12 = np.einsum("y,ypq,ypq->pq", w, D1, D2)
    return dict(F=F, V1=V1, V2=V2, C12=C12, w=w, I1=I1, I2=I2, J=J, H=H)


def enumerate_set(model, X, samples=1):
    """Fixed-X variances of the S-draw estimate over X: (1/(N^2 S)) sum_n (per input)."""
    per = [enumerate_input(model, x) for x in np.asarray(X, float)]
    N = len(per)
    out = {k: sum(p[k] for p in per) / (N * N * samples) for k in ("V1", "V2", "C12")}
    out["F"] = sum(p["F"] for p in per) / N
    out["per"] = per
    return out


def unit_blocks_of(M, sizes):
    """Per layer (n_out, n_in+1, n_in+1) unit blocks of a P x P matrix (W row u, then b[u])."""
    out, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        blk = np.empty((n_out, n_in + 1, n_in + 1))
        for u in range(n_out):
            idx = [off + u * n_in + j for j in range(n_in)] + [off + n_out * n_in + u]
            blk[u] = M[np.ix_(idx, idx)]
        out.append(blk)
        off += n_out * n_in + n_out
    return out


def layer_blocks_of(M, sizes):
    out, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        d = n_out * (n_in + 1)
        out.append(M[off:off + d, off:off + d])
        off += d
    return out


def close(a, b, rel, what="", floor=1e-300):
    """max |a - b| <= rel * max(max |b|, floor) (floor: the scale of a quantity that is 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(float(np.abs(b).max()), floor)
    err = float(np.abs(a - b).max()) / scale
    assert err <= rel, f"{what}: max deviation {err:.3e} (relative to max {scale:.3e}) > {rel}"


CASES = [
    # (sizes, activation, head)
    ([3, 4, 3], "tanh", "categorical"),
    ([2, 3, 2, 3], "sigmoid", "categorical"),
    ([3, 5, 2], "softplus", "gaussian"),
    ([2, 3, 3], "tanh", "bernoulli"),
    ([2, 1, 2], "tanh", "poisson"),
    ([1, 2, 1], "sigmoid", "bernoulli"),
]


def make(sizes, act, head, seed=0, dtype=np.float64):
    return fisherkit.MLP.init(sizes, act, head, seed=seed, dtype=dtype, sigma=SIGMA, bias_std=0.3)


def inputs(n, d, seed=1):
    return np.random.default_rng(seed).standard_normal((n, d))


# ============================================================================ O4 exact
@pytest.mark.parametrize("sizes,act,head", CASES, ids=[f"{h}-{a}-{'x'.join(map(str, s))}" for s, a, h in CASES])
def test_exact_enumeration_all_shapes(sizes, act, head):
    model = make(sizes, act, head)
    assert model.n_params <= 40
    X = inputs(3, sizes[0])
    S = 2
    ref = enumerate_set(model, X, S)
    # unbiasedness (O3) of the oracle itself: the support means are F
    for p in ref["per"]:
        close(np.einsum("y,ypq->pq", p["w"], p["I1"]), p["F"], 1e-12, "E I1 = F")
        close(np.einsum("y,ypq->pq", p["w"], p["I2"]), p["F"], 1e-12, "E I2 = F")
    F = fisherkit.fisher(model, X, shape="full").matrix
    close(F, ref["F"], 1e-12, "exact Fisher")
    for est, key in (("score", "V1"), ("hessian", "V2")):
        full = fv.variance(model, X, estimator=est, shape="full", samples=S)
        assert isinstance(full, fisherkit.Dense) and full.matrix.shape == (model.n_params,) * 2
        close(full.matrix, ref[key], 1e-12, f"{est} full")
        d = fv.variance(model, X, estimator=est, shape="diag", samples=S)
        assert isinstance(d, fisherkit.Diagonal)
        close(d.values, np.diag(ref[key]), 1e-12, f"{est} diag")
        u = fv.variance(model, X, estimator=est, shape="unit", samples=S)
        for got, want in zip(u.blocks, unit_blocks_of(ref[key], sizes)):
            close(got, want, 1e-12, f"{est} unit")
        lay = fv.variance(model, X, estimator=est, shape="layer", samples=S)
        for got, want in zip(lay.blocks, layer_blocks_of(ref[key], sizes)):
            close(got, want, 1e-12, f"{est} layer")
        tr = fv.variance(model, X, estimator=est, shape="trace", samples=S)
        assert abs(tr - ref[key].sum()) <= 1e-12 * abs(ref[key].sum())
    floor = math.sqrt(np.abs(ref["V1"]).max() * np.abs(ref["V2"]).max())  # Cauchy-Schwarz scale
    full = fv.covariance(model, X, shape="full", samples=S).matrix
    close(full, ref["C12"], 1e-12, "C12 full", floor)
    close(fv.covariance(model, X, shape="diag", samples=S).values, np.diag(ref["C12"]), 1e-12, "C12 diag", floor)
    for got, want in zip(fv.covariance(model, X, shape="unit", samples=S).blocks, unit_blocks_of(ref["C12"], sizes)):
        close(got, want, 1e-12, "C12 unit", floor)
    if head == "gaussian":  # kappa3 = 0: exactly uncorrelated
        assert not np.any(full)


@pytest.mark.parametrize("head", ["categorical", "gaussian", "bernoulli", "poisson"])
def test_variances_match_numpy_reference_deep(head):
    """variance/covariance (diag, unit) against the float64 NumPy T-recursion reference of the
    tests, on a 4-hidden-layer net with mixed activations (identity and relu included)."""
    model = fisherkit.MLP.init([4, 5, 3, 6, 2, 3], ["tanh", "sigmoid", "softplus", "identity"], head,
                               seed=21, bias_std=0.4, sigma=SIGMA)
    X = inputs(11, 4) * 0.7
    n2 = float(X.shape[0]) ** 2
    for shape in ("diag", "unit"):
        v1_floor = float(np.abs(variance_sum_reference(model, X, "v1", shape, None)).max())
        for which, fn in (("v1", lambda: fv.variance(model, X, estimator="score", shape=shape)),
                          ("v2", lambda: fv.variance(model, X, estimator="hessian", shape=shape)),
                          ("c12", lambda: fv.covariance(model, X, shape=shape))):
            got = np.concatenate([np.ravel(b) for b in fn().blocks]) if shape == "unit" else fn().values
            want = variance_sum_reference(model, X, which, shape, 3) / n2
            close(got, want, 1e-12, f"{which} {shape}", floor=1e-300 if which != "c12" else v1_floor / n2)
    relu = fisherkit.MLP.init([3, 4, 4, 2], "relu", head, seed=2, sigma=SIGMA)
    close(fv.variance(relu, X[:, :3], shape="diag").values,
          variance_sum_reference(relu, X[:, :3], "v1", "diag", None) / n2, 1e-12, "relu v1")


def test_directional_variance_against_enumeration():
    model = make([3, 4, 3], "tanh", "categorical")
    X = inputs(4, 3)
    u = np.random.default_rng(5).standard_normal(model.n_params)
    per = [enumerate_input(model, x) for x in X]
    for est, key in (("score", "I1"), ("hessian", "I2")):
        want = sum(float(p["w"] @ (np.einsum("p,ypq,q->y", u, p[key], u) - u @ p["F"] @ u) ** 2) for p in per)
        want /= 16 * 3
        got = fv.directional_variance(model, X, u, est, samples=3)
        assert abs(got - want) <= 1e-12 * want
    # unit coordinate direction = the diagonal entry
    e = np.zeros(model.n_params)
    e[5] = 1.0
    assert np.isclose(fv.directional_variance(model, X, e, "score"),
                      fv.variance(model, X, shape="diag").values[5], rtol=1e-12, atol=0)


# ============================================================================ O9 golden
from golden import CATEGORICAL as GOLDEN_CAT  # noqa: E402
from golden import GAUSSIAN as GOLDEN_GAUSS  # noqa: E402
from golden import B1 as _B1, B2 as _B2, W1 as _W1, W2 as _W2  # noqa: E402


def golden_model(head, sigma=1.0, dtype=np.float64):
    return fisherkit.MLP([(_W1, _B1), (_W2, _B2)], "tanh", head, sigma=sigma, dtype=dtype)


X_GOLD = np.array([[0.8, -0.5]])


def _golden_close(got, want, what):
    got = np.asarray(got, float)
    err = np.abs(got - want)
    # the table has 10 significant digits: 1e-9 relative, exact zeros exactly
    assert np.all(err <= 1e-9 * np.abs(want) + 1e-15), f"{what}: {got} vs {want}"
    assert np.all(got[want == 0] == 0), what


def test_golden_categorical():
    m = golden_model("categorical")
    np.testing.assert_allclose(m.forward(X_GOLD)[0], [0.4288821297, -0.3994543071, 0.0380633784], rtol=1e-9, atol=1e-10)  # 10 decimals
    _golden_close(fisherkit.fisher(m, X_GOLD).values, GOLDEN_CAT[:, 0], "F")
    _golden_close(fv.variance(m, X_GOLD, estimator="score").values, GOLDEN_CAT[:, 1], "V1")
    _golden_close(fv.variance(m, X_GOLD, estimator="hessian").values, GOLDEN_CAT[:, 2], "V2")
    _golden_close(fv.covariance(m, X_GOLD).values, GOLDEN_CAT[:, 3], "C12")
    assert abs(fv.variance(m, X_GOLD, shape="trace") - 1.615235454) <= 1e-9 * 1.62
    assert abs(fv.variance(m, X_GOLD, estimator="hessian", shape="trace") - 4.332123474) <= 1e-9 * 4.34
    V1 = fv.variance(m, X_GOLD, shape="full").matrix
    V2 = fv.variance(m, X_GOLD, estimator="hessian", shape="full").matrix
    F = fisherkit.fisher(m, X_GOLD, shape="full").matrix
    for (i, j), f, v1, v2 in (((0, 1), -0.04947699608, 0.002386200717, 0.01354495897),
                              ((0, 10), -0.009886275872, 0.00140014776, 0.09570344812)):
        assert abs(F[i, j] - f) <= 1e-9 * abs(f)
        assert abs(V1[i, j] - v1) <= 1e-9 * v1 and abs(V1[j, i] - v1) <= 1e-9 * v1
        assert abs(V2[i, j] - v2) <= 1e-9 * v2


def test_golden_gaussian():
    m = golden_model("gaussian")
    _golden_close(fisherkit.fisher(m, X_GOLD).values, GOLDEN_GAUSS[:, 0], "F")
    _golden_close(fv.variance(m, X_GOLD, estimator="score").values, GOLDEN_GAUSS[:, 1], "V1")
    _golden_close(fv.variance(m, X_GOLD, estimator="hessian").values, GOLDEN_GAUSS[:, 2], "V2")
    assert np.abs(fv.covariance(m, X_GOLD).values).max() <= 1e-15
    assert abs(fv.variance(m, X_GOLD, shape="trace") - 65.86520432) <= 1e-9 * 65.9
    assert abs(fv.variance(m, X_GOLD, estimator="hessian", shape="trace") - 20.17482709) <= 1e-9 * 20.2
    V1 = fv.variance(m, X_GOLD, shape="full").matrix
    V2 = fv.variance(m, X_GOLD, estimator="hessian", shape="full").matrix
    assert abs(V1[0, 1] - 0.07192056725) <= 1e-9 * 0.072 and abs(V2[0, 1] - 0.05191417105) <= 1e-9 * 0.052
    assert abs(V1[0, 10] - 0.05492368821) <= 1e-9 * 0.055 and abs(V2[0, 10] - 0.4397263047) <= 1e-9 * 0.44
    m4 = golden_model("gaussian", sigma=0.5)  # sigma^2 = 0.25
    assert abs(fv.variance(m4, X_GOLD, estimator="hessian").values[0] - 0.5316011116) <= 1e-9 * 0.54
    F4 = fisherkit.fisher(m4, X_GOLD).values
    np.testing.assert_allclose(fv.variance(m4, X_GOLD).values, 2 * F4 * F4, rtol=1e-12)  # O6


# ============================================================================ O5 Monte Carlo
def _replicates(model, X, estimator, shape, S, R, seed0=1000):
    vals = []
    for r in range(R):
        est = fisherkit.fisher(model, X, estimator=estimator, shape=shape, samples=S, seed=seed0 + r)
        vals.append(np.asarray(est.matrix if shape == "full" else est.values, float).ravel())
    return np.array(vals)


def _five_se(vals, V, F, what):
    R = vals.shape[0]
    mean = vals.mean(0)
    d = vals - mean
    v = (d * d).mean(0) * R / (R - 1)
    m4 = (d ** 4).mean(0)
    se_v = np.sqrt(np.maximum(m4 - v * v, 0) / R)
    pos = V > 1e-14 * V.max()
    z = np.abs(v - V)[pos] / se_v[pos]
    assert z.max() < 5, f"{what}: max |z| of the variance {z.max():.2f}"
    se_m = np.sqrt(v / R)
    zm = np.abs(mean - F)[pos] / se_m[pos]
    assert zm.max() < 5, f"{what}: max |z| of the mean {zm.max():.2f}"
    return v


@pytest.mark.parametrize("head", ["categorical", "gaussian", "bernoulli"])
def test_monte_carlo_full_five_se(head):
    model = make([3, 4, 3] if head != "bernoulli" else [2, 3, 2], "tanh", head, seed=3)
    X = inputs(2, model.input_dim, seed=4)
    S, R = 2, 4000
    F = fisherkit.fisher(model, X, shape="full").matrix.ravel()
    for est in ("score", "hessian"):
        V = fv.variance(model, X, estimator=est, shape="full", samples=S).matrix.ravel()
        vals = _replicates(model, X, est, "full", S, R)
        v = _five_se(vals, V, F, f"{head} {est}")
        if est == "hessian":  # structurally zero: the last-layer block is exact
            zero = V == 0
            assert zero.sum() >= (model.sizes[-1] * (model.sizes[-2] + 1)) ** 2
            # the last layer's block of the Hessian estimate is the exact block, bit for bit
            P = model.n_params
            ws, bs = model.param_slices()[-1]
            last = np.zeros((P, P), bool)
            last[ws.start:bs.stop, ws.start:bs.stop] = True
            # (the replicates themselves are constant; a summed mean is not exact)
            assert np.all(np.ptp(vals[:, last.ravel()], axis=0) == 0)
            # other structurally zero entries cancel in the engine up to rounding
            assert np.all(v[zero] <= (1e-12 * np.abs(F).max()) ** 2)


def test_monte_carlo_covariance_same_draws():
    model = make([3, 4, 3], "sigmoid", "categorical", seed=7)
    X = inputs(2, 3, seed=8)
    R = 4000
    a = _replicates(model, X, "score", "diag", 1, R)
    b = _replicates(model, X, "hessian", "diag", 1, R)
    C12 = fv.covariance(model, X).values
    da, db = a - a.mean(0), b - b.mean(0)
    prod = da * db
    c = prod.sum(0) / (R - 1)
    se = np.sqrt(np.maximum((prod * prod).mean(0) - c * c, 0) / R)
    pos = np.abs(C12) > 1e-14 * np.abs(C12).max()
    assert pos.sum() > 0
    assert (np.abs(c - C12)[pos] / se[pos]).max() < 5


def test_relu_hessian_diagonal_exactly_zero():
    model = make([3, 5, 4, 3], "relu", "categorical", seed=2)
    X = inputs(4, 3)
    assert np.all(fv.variance(model, X, estimator="hessian").values == 0)
    assert np.all(fv.variance(model, X, estimator="hessian", shape="unit").blocks[0] == 0)
    assert np.all(fv.covariance(model, X).values == 0)
    mean, var = fv.monte_carlo_variance(model, X, "hessian", "diag", replicates=20, seed=3)
    assert np.all(var.values == 0)
    np.testing.assert_allclose(mean.values, fisherkit.fisher(model, X).values, rtol=1e-12, atol=1e-15)
    # cross-layer entries are not structurally zero
    full = fv.variance(model, X, estimator="hessian", shape="full").matrix
    assert full.max() > 0


def test_monte_carlo_variance_contract():
    """Replicate r uses the documented seed; mean/variance are the float64 sample moments."""
    model = make([2, 3, 2], "tanh", "categorical", seed=5)
    X = inputs(3, 2)
    R = 7
    mean, var = fv.monte_carlo_variance(model, X, "score", "unit", samples=2, replicates=R, seed=11)
    seeds = np.random.SeedSequence(11).generate_state(R, dtype=np.uint64) >> np.uint64(1)
    vals = np.array([np.concatenate([b.ravel() for b in fisherkit.fisher(
        model, X, estimator="score", shape="unit", samples=2, seed=int(s)).blocks]) for s in seeds])
    got_m = np.concatenate([b.ravel() for b in mean.blocks])
    got_v = np.concatenate([b.ravel() for b in var.blocks])
    np.testing.assert_allclose(got_m, vals.mean(0), rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(got_v, vals.var(0, ddof=1), rtol=1e-10, atol=1e-18)
    assert isinstance(var, fisherkit.UnitBlocks)


@pytest.mark.slow
def test_monte_carlo_large_replicates():
    model = make([3, 4, 3], "tanh", "poisson", seed=9)
    X = inputs(3, 3) * 0.5
    S, R = 3, 40000
    F = fisherkit.fisher(model, X, shape="full").matrix.ravel()
    for est in ("score", "hessian"):
        V = fv.variance(model, X, estimator=est, shape="full", samples=S).matrix.ravel()
        _five_se(_replicates(model, X, est, "full", S, R), V, F, f"poisson {est}")


# ============================================================================ O8 population
def test_population_unbiased_over_input_tuples_and_monte_carlo():
    model = make([2, 3, 3], "tanh", "categorical", seed=4)
    pool = inputs(4, 2, seed=6) * 1.5
    N, S = 3, 1
    per = [enumerate_input(model, x) for x in pool]
    Fs = np.array([np.diag(p["F"]) for p in per])
    Cs = {k: np.array([np.diag(p[k]) for p in per]) for k in ("V1", "V2")}
    truth = {k: (Fs.var(0) + Cs[k].mean(0) / S) / N for k in Cs}  # law of total variance
    # exact: the estimate is unbiased over all N-tuples of the pool (with replacement)
    for est, k in (("score", "V1"), ("hessian", "V2")):
        acc = np.zeros(model.n_params)
        tuples = list(itertools.product(range(len(pool)), repeat=N))
        for t in tuples:
            acc += fv.variance(model, pool[list(t)], estimator=est, samples=S, population=True).values
        close(acc / len(tuples), truth[k], 1e-12, f"population {est}")
    # Monte Carlo: random tuples and labels, 5 SE
    rng = np.random.default_rng(12)
    R = 4000
    for est, k in (("score", "V1"), ("hessian", "V2")):
        vals = np.array([fisherkit.fisher(model, pool[rng.integers(0, len(pool), N)], estimator=est,
                                          samples=S, seed=r).values for r in range(R)])
        _five_se(vals, truth[k], Fs.mean(0), f"population MC {est}")


def test_population_exact_estimator_is_x_part_only():
    model = make([2, 3, 3], "tanh", "categorical", seed=4)
    X = inputs(5, 2)
    Fs = np.array([fisherkit.fisher(model, X[i:i + 1]).values for i in range(5)])
    got = fv.variance(model, X, estimator="exact", population=True).values
    np.testing.assert_allclose(got, Fs.var(0, ddof=1) / 5, rtol=1e-10, atol=1e-18)
    v = fv.variance(model, X, population=True).values - fv.variance(model, X).values
    np.testing.assert_allclose(v, got, rtol=1e-9, atol=1e-18)
    full = fv.variance(model, X, estimator="exact", shape="full", population=True).matrix
    np.testing.assert_allclose(np.diag(full), got, rtol=1e-10, atol=1e-18)
    tr = fv.variance(model, X, estimator="exact", shape="trace", population=True)
    assert abs(tr - full.sum()) <= 1e-10 * full.sum()
    with pytest.raises(ValueError, match="at least 2 inputs"):
        fv.variance(model, X[:1], population=True)
    # a one-row view with row stride 0 (x[None]) gives the same as a copy
    np.testing.assert_array_equal(fv.variance(model, X[2][None], estimator="hessian").values,
                                  fv.variance(model, X[2:3].copy(), estimator="hessian").values)


# ============================================================================ O7 bounds
def test_trace_of_a_bias_free_model_is_the_sum_of_the_full_variance():
    """shape='trace' takes the C x C Gram of the output Jacobian: layers without bias add
    no constant input to its norms."""
    for bias in (False, [True, False]):
        model = fisherkit.MLP.init([3, 4, 3], "tanh", "categorical", seed=1, bias=bias, bias_std=0.3)
        X = np.random.default_rng(2).standard_normal((5, 3))
        for est in ("score", "hessian"):
            full = fv.variance(model, X, estimator=est, shape="full").matrix
            assert fv.variance(model, X, estimator=est, shape="trace") == pytest.approx(full.sum(), rel=1e-12)


def test_categorical_score_lower_bounds_are_raised_to_zero():
    """k_min = 0 for the categorical head, so every per-input lower bound ||J||^4 k_min - F^2
    is negative and is raised to 0: the lower bound is exactly zero."""
    model = fisherkit.MLP.init([3, 4, 3], "tanh", "categorical", seed=1, bias_std=0.3)
    X = np.random.default_rng(2).standard_normal((5, 3))
    lo, hi = fv.variance_bounds(model, X, "score")
    assert (lo.values == 0.0).all()
    assert (hi.values >= fv.variance(model, X, shape="diag").values).all()


def test_bounds_gaussian_equality_and_golden():
    m = golden_model("gaussian", sigma=0.8)
    X = inputs(5, 2)
    for est in ("score", "hessian"):
        lo, hi = fv.variance_bounds(m, X, est, samples=2)
        V = fv.variance(m, X, estimator=est, samples=2).values
        np.testing.assert_allclose(lo.values, V, rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(hi.values, V, rtol=1e-10, atol=1e-300)


try:
    from hypothesis import given, settings, strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover
    HAVE_HYPOTHESIS = False


if HAVE_HYPOTHESIS:
    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 10**6), act=st.sampled_from(["tanh", "sigmoid", "softplus"]),
           head=st.sampled_from(["categorical", "bernoulli", "poisson", "gaussian"]),
           width=st.integers(1, 5), C=st.integers(2, 4), n=st.integers(1, 4))
    def test_bounds_hold_on_random_nets(seed, act, head, width, C, n):
        model = fisherkit.MLP.init([3, width, C], act, head, seed=seed, bias_std=0.5, sigma=0.9)
        X = np.random.default_rng(seed + 1).standard_normal((n, 3))
        for est in ("score", "hessian"):
            lo, hi = fv.variance_bounds(model, X, est)
            V = fv.variance(model, X, estimator=est).values
            slack = 1e-12 * max(float(np.abs(V).max()), 1e-300)
            assert np.all(lo.values <= V + slack)
            assert np.all(V <= hi.values + slack)
else:  # pragma: no cover
    def test_bounds_hold_on_random_nets():
        pytest.skip("hypothesis not installed")


# ============================================================================ O10 float32
@pytest.mark.parametrize("shape", ["diag", "unit"])
def test_float32_matches_float64(shape):
    m64 = make([5, 7, 3], "tanh", "categorical", seed=11)
    m32 = fisherkit.MLP(m64.layers, "tanh", "categorical", dtype=np.float32)
    X = inputs(13, 5)
    for est in ("score", "hessian"):
        a = fv.variance(m32, X.astype(np.float32), estimator=est, shape=shape)
        b = fv.variance(m64, X, estimator=est, shape=shape)
        assert a.dtype == np.float32 and b.dtype == np.float64
        for x, y in zip(a.blocks, b.blocks):
            y = np.asarray(y)
            good = np.abs(y) > 1e-3 * np.abs(y).max()  # well-conditioned entries
            np.testing.assert_allclose(np.asarray(x, float)[good], y[good], rtol=1e-4)
    c32 = fv.covariance(m32, X.astype(np.float32)).values
    c64 = fv.covariance(m64, X).values
    good = np.abs(c64) > 1e-3 * np.abs(c64).max()
    np.testing.assert_allclose(c32[good], c64[good], rtol=1e-4)


# ============================================================================ recommend / alpha*
def test_recommend_against_brute_force():
    model = make([3, 4, 3], "tanh", "categorical", seed=13)
    X = inputs(3, 3)
    per = [enumerate_input(model, x) for x in X]
    rec = fv.recommend(model, X, samples=2)
    P = model.n_params
    alphas = np.linspace(-1.0, 2.0, 3001)
    for i in range(P):
        # variance of alpha I1 + (1 - alpha) I2 by enumeration, over the alpha grid
        var = np.zeros_like(alphas)
        for p in per:
            d1 = p["I1"][:, i, i] - p["F"][i, i]
            d2 = p["I2"][:, i, i] - p["F"][i, i]
            var += (p["w"][None, :] * (alphas[:, None] * d1 + (1 - alphas[:, None]) * d2) ** 2).sum(1)
        var /= len(per) ** 2 * 2
        v1, v2 = var[alphas == 1.0][0], var[np.isclose(alphas, 0.0)][0]
        assert np.isclose(rec.v_score[i], v1, rtol=1e-10, atol=1e-300)
        assert np.isclose(rec.v_hessian[i], v2, rtol=1e-10, atol=1e-300)
        assert bool(rec.hessian_wins[i]) == (v2 <= v1)
        assert rec.v_mix[i] <= var.min() * (1 + 1e-9) + 1e-300
        if v1 + v2 > 0 and np.ptp(var) > 1e-12 * var.max():
            assert abs(rec.alpha[i] - alphas[np.argmin(var)]) <= 2e-3 or rec.alpha[i] < -1 or rec.alpha[i] > 2
    # last layer: the Hessian estimator is exact and always wins
    last = rec.layers[-1]
    assert last["frac_hessian"] == 1.0 and last["mean_v_hessian"] == 0.0
    assert abs(last["frac_score"] + last["frac_hessian"] - 1) < 1e-12
    text = repr(rec)
    assert "hessian wins" in text and len(text.splitlines()) == 2 + model.n_layers
    assert set(rec.choice) <= {"score", "hessian"}


# ============================================================================ samples_needed
def test_samples_needed_formula():
    model = make([3, 4, 3], "tanh", "categorical", seed=2)
    X = inputs(5, 3)
    eps, conf = 0.1, 0.9
    V = fv.variance(model, X, estimator="score").values
    F = fisherkit.fisher(model, X).values
    want = np.ceil(V / ((1 - conf) * eps ** 2 * F ** 2))
    got = fv.samples_needed(model, X, eps, conf, "score", per_parameter=True)
    np.testing.assert_array_equal(got, np.maximum(want, 1))
    assert fv.samples_needed(model, X, eps, conf, "score") == int(want.max())
    # hessian: exact in the last layer -> 1 draw
    gh = fv.samples_needed(model, X, eps, conf, "hessian", per_parameter=True)
    assert np.all(gh[-(4 + 1) * 3:] == 1)
    # Gaussian head, one input: S = 2 / (delta eps^2) whatever the network
    g = make([3, 4, 2], "sigmoid", "gaussian", seed=1)
    s = fv.samples_needed(g, X[:1], 0.1, 0.95, "score", per_parameter=True)
    assert np.all(np.abs(s - 4000) <= 1)
    # the S it returns achieves the relative error bound of Chebyshev
    Sg = fv.samples_needed(model, X, eps, conf, "score")
    cv2 = fv.variance(model, X, samples=Sg).values / F ** 2
    assert np.all(cv2 <= (1 - conf) * eps ** 2 * (1 + 1e-12))


# ============================================================================ API and bad inputs
def test_exact_is_zero_and_layouts_match_fisher():
    model = make([3, 5, 2], "tanh", "categorical", seed=1)
    X = inputs(4, 3)
    for shape in ("diag", "unit", "layer", "full"):
        z = fv.variance(model, X, estimator="exact", shape=shape)
        f = fisherkit.fisher(model, X, shape=shape)
        assert type(z) is type(f)
        for a, b in zip(z.blocks, f.blocks):
            assert a.shape == b.shape and not np.any(a)
    assert fv.variance(model, X, estimator="exact", shape="trace") == 0.0
    np.testing.assert_array_equal(fv.covariance(model, X, ("exact", "score")).values, 0)
    same = fv.covariance(model, X, ("hessian", "hessian")).values
    np.testing.assert_array_equal(same, fv.variance(model, X, estimator="hessian").values)


def test_noncontiguous_and_odd_inputs():
    model = make([3, 1, 2], "sigmoid", "bernoulli", seed=4)
    Xbig = inputs(7, 6)
    Xnc = Xbig[::2, ::2]
    assert not Xnc.flags.c_contiguous
    for shape in ("diag", "unit", "full"):
        a = fv.variance(model, Xnc, estimator="hessian", shape=shape)
        b = fv.variance(model, np.ascontiguousarray(Xnc), estimator="hessian", shape=shape)
        for x, y in zip(a.blocks, b.blocks):
            np.testing.assert_array_equal(x, y)
    # chunking does not change the result
    a = fv.variance(model, Xbig[:, :3], shape="unit", chunk=2)
    b = fv.variance(model, Xbig[:, :3], shape="unit")
    for x, y in zip(a.blocks, b.blocks):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-300)


def test_bad_inputs():
    model = make([3, 4, 3], "tanh", "categorical")
    X = inputs(3, 3)
    with pytest.raises(ValueError, match="data distribution"):
        fv.variance(model, X, estimator="empirical")
    with pytest.raises(ValueError, match="unknown estimator"):
        fv.variance(model, X, estimator="fisher")
    with pytest.raises(ValueError, match="unknown shape"):
        fv.variance(model, X, shape="block")
    with pytest.raises(ValueError, match="samples"):
        fv.variance(model, X, samples=0)
    with pytest.raises(TypeError, match="samples"):
        fv.variance(model, X, samples=1.5)
    with pytest.raises(TypeError, match="model"):
        fv.variance("model", X)
    with pytest.raises(ValueError):
        fv.variance(model, X[:, :2])
    with pytest.raises(ValueError, match="unknown shape"):
        fv.covariance(model, X, shape="trace")
    with pytest.raises(ValueError, match="estimator_pair"):
        fv.covariance(model, X, ("score",))
    with pytest.raises(ValueError, match="data distribution"):
        fv.covariance(model, X, ("score", "empirical"))
    with pytest.raises(MemoryError, match="shape='unit' or shape='diag'"):
        fv.variance(model, X, estimator="hessian", shape="full", max_bytes=1000)
    with pytest.raises(ValueError, match="'u'"):
        fv.directional_variance(model, X, np.ones(3))
    with pytest.raises(ValueError, match="rel_error"):
        fv.samples_needed(model, X, 0.0, 0.9, "score")
    with pytest.raises(ValueError, match="confidence"):
        fv.samples_needed(model, X, 0.1, 1.0, "score")
    with pytest.raises(ValueError, match="replicates"):
        fv.monte_carlo_variance(model, X, replicates=1)
    with pytest.raises(ValueError, match="data distribution"):
        fv.variance_bounds(model, X, "empirical")
    with pytest.raises(ValueError, match="unknown shape"):
        fv.recommend(model, X, shape="full")


def test_fisher_with_stderr_is_the_square_root_of_the_closed_form_variance():
    model = make([3, 4, 3], "tanh", "categorical", seed=1)
    X = inputs(6, 3)
    for shape in ("diag", "unit", "layer", "full"):
        F, se = fisherkit.fisher(model, X, estimator="score", shape=shape, samples=3, seed=0, with_stderr=True)
        V = fv.variance(model, X, estimator="score", shape=shape, samples=3)
        assert type(se) is type(V) is type(F)
        for a, b in zip(se.blocks, V.blocks):
            np.testing.assert_array_equal(a, np.sqrt(b))
    _, se = fisherkit.fisher(model, X, estimator="exact", shape="diag", with_stderr=True)
    assert not np.any(se.values)
    with pytest.raises(ValueError, match="data distribution"):
        fisherkit.fisher(model, X, np.zeros(6, int), estimator="empirical", with_stderr=True)


def test_demo_section_table():
    import io
    import time

    from fisherkit import _demo_variance

    model = make([4, 6, 5, 3], "tanh", "categorical", seed=0)
    X = inputs(40, 4)
    buf = io.StringIO()
    t0 = time.perf_counter()
    _demo_variance.section(model, X, None, buf)
    assert time.perf_counter() - t0 < 5
    lines = buf.getvalue().strip().splitlines()
    assert "estimator variance" in lines[0]
    rows = [ln for ln in lines if ln.split() and ln.split()[0].isdigit()]
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3]
    assert rows[-1].split()[4] == "0.00e+00"  # last layer: sd(I2) = 0
