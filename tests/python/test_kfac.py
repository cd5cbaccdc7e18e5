"""KFAC and EKFAC (fisher(shape="kfac" | "ekfac"), kfac_error, their standard errors, their
solves and natural gradients) against brute-force float64 references written here with
explicit per-input loops: the forward pass, the backward rows dh/dz_l per input, the head's
covariance by enumeration (reference.head_cov), the Kronecker products assembled entry by
entry in the flat parameter order."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit
import fisherkit.heads as heads
from fisherkit._engine import kronecker
from fisherkit.natgrad import natural_gradient
from reference import _act, eta, head_cov, residual, t_stat

ESTIMATORS = ["exact", "score", "empirical"]

NETS = [
    ([3, 4, 3], ["tanh"], "categorical"),
    ([2, 3, 3, 2], ["sigmoid", "gelu"], "gaussian"),
    ([2, 3, 2, 2], ["softplus", "silu"], "bernoulli"),
    ([3, 2, 2], ["erf"], "poisson"),
    ([2, 5, 1], ["relu"], "gaussian"),  # C = 1
    ([2, 3, 4, 3], ["identity", "tanh"], "categorical"),
]


def make(sizes, acts, head, seed=4, dtype=np.float64):
    return fisherkit.MLP.init(sizes, acts, head, seed=seed, bias_std=0.4, sigma=0.8,
                              weight_std=1.3 if head != "poisson" else 0.6, dtype=dtype)


def without_bias(model, layers):
    """The model with the biases of `layers` removed (a layer without bias: no b_l in the
    parameters, no 1 in its augmented input)."""
    pairs = [(W, None if l in layers else b) for l, (W, b) in enumerate(model.layers)]
    return fisherkit.MLP(pairs, model.activations, model.head, sigma=model.sigma, dtype=model.dtype)


def labels(model, X, seed=3):
    h = model.forward(X)
    return heads.sample(model.head, h, samples=1, seed=seed, sigma=model.sigma)[:, 0]


# ---------------------------------------------------------------------------- references
def per_input(model, x):
    """Per layer (abar, B) of one input: abar the augmented input (no 1 without bias), B the
    C x n_l matrix dh/dz_l, by explicit backpropagation; and h."""
    Ws = [np.asarray(W, float) for W in model.weights]
    bs = [None if b is None else np.asarray(b, float) for b in model.biases]
    a, abars, zs = np.asarray(x, float), [], []
    for l, (W, b) in enumerate(zip(Ws, bs)):
        abars.append(a if b is None else np.append(a, 1.0))
        z = W @ a + (0.0 if b is None else b)
        zs.append(z)
        a = _act(model.activations[l], z)[0] if l < len(Ws) - 1 else z
    h = a
    B = [None] * len(Ws)
    delta = np.eye(len(h))
    for l in range(len(Ws) - 1, -1, -1):
        B[l] = delta
        if l > 0:
            delta = (delta @ Ws[l]) * _act(model.activations[l - 1], zs[l - 1])[1][None, :]
    return h, abars, B


def gammas(model, X, y, estimator, samples, seed):
    """Per input and layer Gamma = sum over the estimator's rows of d d^T (d = B^T r)."""
    draws = heads.sample(model.head, model.forward(X), samples=samples, seed=seed, sigma=model.sigma) \
        if estimator == "score" else None
    out = []
    for n, x in enumerate(np.asarray(X, float)):
        h, abars, B = per_input(model, x)
        C = len(h)
        if estimator == "exact":
            R = head_cov(model.head, h, model.sigma)
        elif estimator == "score":
            taus = [t_stat(model.head, yy, model.sigma, C) - eta(model.head, h, model.sigma) for yy in draws[n]]
            R = sum(np.outer(t, t) for t in taus) / samples
        else:
            r = residual(model.head, h, np.atleast_1d(y[n]), model.sigma)
            R = np.outer(r, r)
        out.append([(abars[l], Bl.T @ R @ Bl) for l, Bl in enumerate(B)])
    return out


def ref_factors(model, X, y=None, estimator="exact", samples=1, seed=0):
    per = gammas(model, X, y, estimator, samples, seed)
    N = len(per)
    return [(sum(np.outer(p[l][0], p[l][0]) for p in per) / N, sum(p[l][1] for p in per) / N)
            for l in range(model.n_layers)]


def flat_index(model, l, u, j):
    n_out, n_in, _ = model.layout.dims(l)
    return u * n_in + j if j < n_in else n_out * n_in + u


def ref_layer_block(model, X, l, y=None, estimator="exact", samples=1, seed=0):
    """F_l in the layer's flat order, entry by entry: (1/N) sum_n Gamma[u, v] abar_j abar_k."""
    per = gammas(model, X, y, estimator, samples, seed)
    n_out, k = model.sizes[l + 1], model.layout.unit_width[l]
    D = n_out * k
    F = np.zeros((D, D))
    for p in per:
        abar, Gam = p[l]
        for u in range(n_out):
            for j in range(k):
                for v in range(n_out):
                    for kk in range(k):
                        F[flat_index(model, l, u, j), flat_index(model, l, v, kk)] += Gam[u, v] * abar[j] * abar[kk]
    return F / len(per)


def kron_flat(model, l, A, G):
    """G (x) A in layer l's flat order, entry by entry."""
    n_out, k = G.shape[0], A.shape[0]
    D = n_out * k
    K = np.zeros((D, D))
    for u in range(n_out):
        for j in range(k):
            for v in range(n_out):
                for kk in range(k):
                    K[flat_index(model, l, u, j), flat_index(model, l, v, kk)] = G[u, v] * A[j, kk]
    return K


def flat_scales(model, l, s):
    """EKFAC scales s[i, j] (eigenvector i of G, j of A) at the flat position of (i, j)."""
    out = np.zeros(s.size)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            out[flat_index(model, l, i, j)] = s[i, j]
    return out


def block_diag(blocks):
    P = sum(b.shape[0] for b in blocks)
    out = np.zeros((P, P))
    o = 0
    for b in blocks:
        out[o:o + b.shape[0], o:o + b.shape[0]] = b
        o += b.shape[0]
    return out


def tol(dtype):
    return 1e-11 if dtype == np.float64 else 2e-5


# ---------------------------------------------------------------------------- factors
@pytest.fixture(params=NETS, ids=lambda p: f"{'-'.join(p[1])}-{p[2]}-{len(p[0]) - 1}L")
def net(request):
    return request.param


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_factors_against_per_input_reference(net, estimator, dtype):
    sizes, acts, head = net
    model = make(sizes, acts, head, dtype=dtype)
    X = np.random.default_rng(9).standard_normal((5, sizes[0])) + 0.05
    y = labels(model, X) if estimator == "empirical" else None
    K = fisherkit.fisher(model, X, y, estimator=estimator, shape="kfac", samples=3, seed=21)
    ref = ref_factors(make(sizes, acts, head), X, y, estimator, 3, 21)
    assert K.dtype == dtype and K.n_samples == 5 and K.estimator == estimator
    for (A, G), (Ar, Gr) in zip(K.factors, ref):
        np.testing.assert_allclose(A, Ar, rtol=tol(dtype), atol=tol(dtype) * np.abs(Ar).max())
        np.testing.assert_allclose(G, Gr, rtol=tol(dtype), atol=tol(dtype) * np.abs(Gr).max())


@pytest.mark.parametrize("drop", [[0], [1], [0, 1]])
def test_layers_without_bias(drop):
    model = without_bias(make([3, 4, 3], ["tanh"], "categorical"), drop)
    X = np.random.default_rng(2).standard_normal((6, 3))
    K = fisherkit.fisher(model, X, shape="kfac")
    E = fisherkit.fisher(model, X, shape="ekfac")
    for l, ((A, G), (Ar, Gr)) in enumerate(zip(K.factors, ref_factors(model, X))):
        assert A.shape == ((3 if l == 0 else 4) + (l not in drop),) * 2
        np.testing.assert_allclose(A, Ar, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(G, Gr, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(K.layer(l), kron_flat(model, l, Ar, Gr), rtol=1e-12, atol=1e-14)
    F = fisherkit.fisher(model, X, shape="layer")
    for l in range(2):
        np.testing.assert_allclose(F.blocks[l], ref_layer_block(model, X, l), rtol=1e-11, atol=1e-14)
    err = fisherkit.kfac_error(model, X)
    for l in range(2):
        Fl = F.blocks[l]
        for got, M in ((err.kfac[l], K.layer(l)), (err.ekfac[l], E.layer(l))):
            assert abs(got - np.linalg.norm(Fl - M) / np.linalg.norm(Fl)) < 1e-10


@pytest.mark.parametrize("head,C", [("categorical", 3), ("gaussian", 1), ("bernoulli", 1), ("poisson", 2)])
def test_single_input_is_exact(head, C):
    """One input: A = abar abar^T and G = Gamma, so G (x) A is the layer block exactly."""
    model = make([3, 4, C] if head != "categorical" else [3, 4, 3], ["tanh"], head, seed=5)
    x = np.random.default_rng(1).standard_normal((1, 3))
    F = fisherkit.fisher(model, x, shape="layer")
    K = fisherkit.fisher(model, x, shape="kfac")
    E = fisherkit.fisher(model, x, shape="ekfac")
    err = fisherkit.kfac_error(model, x)
    for l in range(2):
        s = np.abs(F.blocks[l]).max()
        np.testing.assert_allclose(K.layer(l), F.blocks[l], atol=1e-13 * s)
        np.testing.assert_allclose(E.layer(l), F.blocks[l], atol=1e-12 * s)
    assert np.all(err.kfac < 1e-6) and np.all(err.ekfac < 1e-6)


def test_one_output_last_layer_is_exact_for_constant_gamma():
    """One output and a Gaussian head: the last layer's Gamma_n = 1/sigma^2 for every input,
    so its block is G (x) A exactly for any number of inputs."""
    model = make([3, 4, 1], ["tanh"], "gaussian", seed=2)
    X = np.random.default_rng(3).standard_normal((9, 3))
    F = fisherkit.fisher(model, X, shape="layer")
    K = fisherkit.fisher(model, X, shape="kfac")
    np.testing.assert_allclose(K.layer(1), F.blocks[1], rtol=1e-12, atol=1e-15)
    assert fisherkit.kfac_error(model, X).kfac[1] < 1e-7
    np.testing.assert_allclose(K.factors[1][1], [[1 / model.sigma ** 2]], rtol=1e-13)


# ---------------------------------------------------------------------------- matrix algebra
@pytest.fixture(scope="module")
def small():
    model = make([3, 4, 3], ["tanh"], "categorical", seed=7)
    X = np.random.default_rng(5).standard_normal((10, 3))
    return model, X


def dense_kfac(model, K):
    return block_diag([kron_flat(model, l, A, G) for l, (A, G) in enumerate(K.factors)])


def test_kfac_products_against_dense_algebra(small, rng):
    model, X = small
    K = fisherkit.fisher(model, X, shape="kfac")
    D = dense_kfac(model, K)
    P = model.n_params
    np.testing.assert_allclose(K.to_dense(), D, atol=1e-15)
    v, V = rng.standard_normal(P), rng.standard_normal((P, 3))
    np.testing.assert_allclose(K.mv(v), D @ v, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(K.mv(V), D @ V, rtol=1e-12, atol=1e-14)
    lam = 1e-2
    np.testing.assert_allclose(K.solve(v, lam), np.linalg.solve(D + lam * np.eye(P), v), rtol=1e-9)
    np.testing.assert_allclose(K.solve(V, lam), np.linalg.solve(D + lam * np.eye(P), V), rtol=1e-9)
    np.testing.assert_allclose(K.inverse(lam).to_dense(), np.linalg.inv(D + lam * np.eye(P)), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(K.diagonal(), np.diag(D), rtol=1e-13)
    assert abs(K.trace() - np.trace(D)) < 1e-12 * np.trace(D)
    assert abs(K.frobenius() - np.linalg.norm(D)) < 1e-12 * np.linalg.norm(D)
    for l, ev in enumerate(K.eigvalsh()):
        s = model.layout.layer_slice(l)
        np.testing.assert_allclose(ev, np.linalg.eigvalsh(D[s, s]), atol=1e-13)


@pytest.mark.parametrize("pi", [True, False])
def test_factored_damping_is_martens_grosse(small, rng, pi):
    model, X = small
    K = fisherkit.fisher(model, X, shape="kfac")
    lam, P = 3e-2, model.n_params
    blocks = []
    for l, (A, G) in enumerate(K.factors):
        p = np.sqrt((np.trace(A) / A.shape[0]) / (np.trace(G) / G.shape[0])) if pi else 1.0
        ga, gg = p * np.sqrt(lam), np.sqrt(lam) / p
        blocks.append(kron_flat(model, l, A + ga * np.eye(A.shape[0]), G + gg * np.eye(G.shape[0])))
    D = block_diag(blocks)
    v = rng.standard_normal(P)
    np.testing.assert_allclose(K.solve(v, lam, damping_mode="factored", pi=pi), np.linalg.solve(D, v), rtol=1e-9)
    inv = K.inverse(lam, damping_mode="factored", pi=pi)
    assert isinstance(inv, fisherkit.KFAC)
    np.testing.assert_allclose(inv.to_dense(), np.linalg.inv(D), rtol=1e-8, atol=1e-10)


def test_ekfac_against_its_definition_and_dense_algebra(small, rng):
    model, X = small
    E = fisherkit.fisher(model, X, shape="ekfac")
    F = fisherkit.fisher(model, X, shape="layer")
    P = model.n_params
    blocks = []
    for l, ((Qa, Qg), s) in enumerate(zip(E.bases, E.scales)):
        A, G = E.kfac.factors[l]
        np.testing.assert_allclose(Qa.T @ Qa, np.eye(len(Qa)), atol=1e-12)
        np.testing.assert_allclose((Qa * np.linalg.eigvalsh(A)) @ Qa.T, A, atol=1e-12)
        np.testing.assert_allclose((Qg * np.linalg.eigvalsh(G)) @ Qg.T, G, atol=1e-12)
        # the diagonal of the layer block in the product basis, entry by entry
        n_out, k = s.shape
        Fl = F.blocks[l]
        want = np.zeros((n_out, k))
        for i in range(n_out):
            for j in range(k):
                q = np.zeros(Fl.shape[0])
                for u in range(n_out):
                    for jj in range(k):
                        q[flat_index(model, l, u, jj)] = Qg[u, i] * Qa[jj, j]
                want[i, j] = q @ Fl @ q
        np.testing.assert_allclose(s, want, rtol=1e-11, atol=1e-15)
        Q = kron_flat(model, l, Qa, Qg)  # the product basis; rows and columns in the flat order
        blocks.append((Q * flat_scales(model, l, s)) @ Q.T)
    D = block_diag(blocks)
    np.testing.assert_allclose(E.to_dense(), D, atol=1e-14)
    v = rng.standard_normal((P, 2))
    np.testing.assert_allclose(E.mv(v), D @ v, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(E.solve(v, 1e-2), np.linalg.solve(D + 1e-2 * np.eye(P), v), rtol=1e-9)
    np.testing.assert_allclose(E.inverse(1e-2).to_dense(), np.linalg.inv(D + 1e-2 * np.eye(P)), rtol=1e-8,
                               atol=1e-10)
    np.testing.assert_allclose(E.diagonal(), np.diag(D), rtol=1e-11)
    # the trace of the rotated diagonal is the trace of the layer blocks
    assert abs(E.trace() - np.trace(F.to_dense())) < 1e-12 * E.trace()
    assert abs(E.frobenius() - np.linalg.norm(D)) < 1e-12 * E.frobenius()
    for l, ev in enumerate(E.eigvalsh()):
        s = model.layout.layer_slice(l)
        np.testing.assert_allclose(ev, np.linalg.eigvalsh(D[s, s]), atol=1e-13)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_ekfac_is_never_farther_than_kfac(seed, estimator):
    """The theorem: in a fixed basis the Frobenius-nearest diagonal is the block's own
    diagonal there, and KFAC is diagonal in its eigenbasis, so ||F - EKFAC|| <= ||F - KFAC||."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(2, 5)), int(rng.integers(2, 6)), int(rng.integers(2, 4))]
    model = make(sizes, [["tanh", "relu", "sigmoid"][seed % 3]], ["categorical", "bernoulli", "gaussian"][seed % 3],
                 seed=seed)
    X = rng.standard_normal((int(rng.integers(2, 12)), sizes[0]))
    y = labels(model, X, seed) if estimator == "empirical" else None
    kw = dict(estimator=estimator, samples=2, seed=seed)
    F = fisherkit.fisher(model, X, y, shape="layer", **kw)
    K = fisherkit.fisher(model, X, y, shape="kfac", **kw)
    E = fisherkit.fisher(model, X, y, shape="ekfac", **kw)
    for l in range(model.n_layers):
        dk, de = np.linalg.norm(F.blocks[l] - K.layer(l)), np.linalg.norm(F.blocks[l] - E.layer(l))
        assert de <= dk + 1e-12 * np.linalg.norm(F.blocks[l])


# ---------------------------------------------------------------------------- kfac_error
def test_kfac_error_of_chunks_wider_than_a_gamma_group():
    """Chunks of more than 32 inputs (the packed Gammas are formed in groups of 32) and a last
    partial group: the distances against dense norms of fisher's layer, KFAC and EKFAC blocks."""
    model = make([3, 4, 3], ["tanh"], "categorical", seed=11)
    X = np.random.default_rng(12).standard_normal((71, 3))
    F = fisherkit.fisher(model, X, shape="layer")
    for chunk in (None, 40, 71):
        err = fisherkit.kfac_error(model, X, chunk=chunk)
        K, E = fisherkit.fisher(model, X, shape="kfac"), err.estimate
        for l in range(model.n_layers):
            nf = np.linalg.norm(F.blocks[l])
            assert abs(err.kfac[l] - np.linalg.norm(F.blocks[l] - K.layer(l)) / nf) < 1e-10, (chunk, l)
            assert abs(err.ekfac[l] - np.linalg.norm(F.blocks[l] - E.layer(l)) / nf) < 1e-10, (chunk, l)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("sizes,head", [([3, 4, 3], "categorical"),  # packed Gamma Grams
                                        ([3, 9, 2], "categorical"),  # n_out + 1 > 2 C^2: backward-row Grams
                                        ([2, 3, 2, 2], "poisson")])
def test_kfac_error_against_dense(estimator, sizes, head):
    model = make(sizes, ["tanh"] * (len(sizes) - 2), head, seed=11)
    X = np.random.default_rng(12).standard_normal((13, sizes[0]))
    y = labels(model, X) if estimator == "empirical" else None
    kw = dict(estimator=estimator, samples=2, seed=8)
    F = fisherkit.fisher(model, X, y, shape="layer", **kw)
    err = fisherkit.kfac_error(model, X, y, **kw)
    K, E = err.estimate.kfac, err.estimate
    for l in range(model.n_layers):
        Fl = ref_layer_block(model, X, l, y, estimator, 2, 8)
        np.testing.assert_allclose(F.blocks[l], Fl, rtol=1e-10, atol=1e-14)
        nf = np.linalg.norm(Fl)
        assert abs(err.norm[l] - nf) <= 1e-10 * nf
        Kd = kron_flat(model, l, *ref_factors(model, X, y, estimator, 2, 8)[l])
        assert abs(err.kfac[l] - np.linalg.norm(Fl - Kd) / nf) < 1e-10
        assert abs(err.ekfac[l] - np.linalg.norm(Fl - E.layer(l)) / nf) < 1e-10
        np.testing.assert_allclose(K.layer(l), Kd, rtol=1e-11, atol=1e-15)
    # the same sums for every chunk size and block of kept inputs (one and several sweeps),
    # and KFAC's distance from its own cross term (without EKFAC)
    for chunk, max_bytes in ((1, None), (4, None), (3, 6000), (5, 5000)):  # [3, 9, 2]: 2 and 3 sweeps
        again = fisherkit.kfac_error(model, X, y, chunk=chunk, max_bytes=max_bytes, **kw)
        np.testing.assert_allclose(again.kfac, err.kfac, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(again.ekfac, err.ekfac, rtol=1e-11, atol=1e-12)
        alone = fisherkit.kfac_error(model, X, y, chunk=chunk, max_bytes=max_bytes, ekfac=False, **kw)
        np.testing.assert_allclose(alone.kfac, err.kfac, rtol=1e-10, atol=1e-12)
        assert alone.ekfac is None and isinstance(alone.estimate, fisherkit.KFAC)
    np.testing.assert_allclose(np.concatenate([s.ravel() for s in E.scales]),
                               np.concatenate([s.ravel() for s in fisherkit.fisher(model, X, y, shape="ekfac",
                                                                                   **kw).scales]), rtol=1e-12,
                               atol=1e-15)


def test_kfac_error_float32_and_zero_blocks():
    model = make([3, 5, 3], ["tanh"], "categorical", seed=1, dtype=np.float32)
    X = np.random.default_rng(0).standard_normal((20, 3))
    e32 = fisherkit.kfac_error(model, X)
    e64 = fisherkit.kfac_error(make([3, 5, 3], ["tanh"], "categorical", seed=1), X)
    np.testing.assert_allclose(e32.kfac, e64.kfac, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(e32.ekfac, e64.ekfac, rtol=1e-3, atol=1e-4)
    # a dead relu layer: its blocks below are zero, the distance undefined (NaN), not 0
    dead = fisherkit.MLP([(np.zeros((2, 3)), -np.ones(2)), (np.ones((2, 2)), np.zeros(2))], "relu", "categorical")
    e = fisherkit.kfac_error(dead, X)
    assert np.isnan(e.kfac[0]) and e.norm[0] == 0 and np.isfinite(e.kfac[1])


# ---------------------------------------------------------------------------- variances
def _five_se(vals, V, what):
    R = vals.shape[0]
    d = vals - vals.mean(0)
    v = (d * d).mean(0) * R / (R - 1)
    se_v = np.sqrt(np.maximum((d ** 4).mean(0) - v * v, 0) / R)
    pos = V > 1e-12 * V.max()
    assert pos.sum() > 0
    z = np.abs(v - V)[pos] / se_v[pos]
    assert z.max() < 5, f"{what}: max |z| of the variance {z.max():.2f}"


@pytest.mark.parametrize("head", ["categorical", "gaussian", "bernoulli", "poisson"])
def test_factor_variance_against_monte_carlo(head):
    model = make([3, 4, 3] if head != "poisson" else [2, 3, 2], ["tanh"], head, seed=3)
    X = np.random.default_rng(4).standard_normal((3, model.input_dim))
    S, R = 2, 3000
    _, se = fisherkit.fisher(model, X, estimator="score", shape="kfac", samples=S, seed=0, with_stderr=True)
    V = np.concatenate([(s.factors[l][1] ** 2).ravel() for s in [se] for l in range(model.n_layers)])
    assert all(np.all(A == 0) for A, _ in se.factors)  # A does not depend on the labels
    vals = np.array([np.concatenate([G.ravel() for _, G in fisherkit.fisher(
        model, X, estimator="score", shape="kfac", samples=S, seed=100 + r).factors]) for r in range(R)])
    _five_se(vals, V, f"{head} G")
    G_exact = np.concatenate([G.ravel() for _, G in fisherkit.fisher(model, X, shape="kfac").factors])
    np.testing.assert_allclose(vals.mean(0), G_exact, atol=5 * np.sqrt(V.max() / R))


@pytest.mark.parametrize("head", ["categorical", "bernoulli"])
def test_ekfac_scale_variance_against_monte_carlo(head):
    """With the eigenbases held fixed (those of the exact KFAC), the sampled scales' variance
    is the closed form; fisher(with_stderr=True) uses the estimate's own bases."""
    model = make([3, 4, 3], ["tanh"], head, seed=6)
    X = np.random.default_rng(7).standard_normal((3, 3))
    S, R = 2, 3000
    bases = fisherkit.fisher(model, X, shape="ekfac").eigenbases()
    Xc, _ = model._inputs(X)
    from fisherkit.variance.closed_form import kronecker_variance_sum
    V = np.asarray(kronecker_variance_sum(model, Xc, bases)) / (X.shape[0] ** 2 * S)
    vals = np.array([np.concatenate([s.ravel() for s in kronecker(model, Xc, None, "score", "ekfac", S, 500 + r, 0, 0,
                                                                    bases=bases).scales]) for r in range(R)])
    _five_se(vals, V, f"{head} EKFAC scales")
    E, se = fisherkit.fisher(model, X, estimator="score", shape="ekfac", samples=S, seed=1, with_stderr=True)
    V2 = np.asarray(kronecker_variance_sum(model, Xc, E.eigenbases())) / (X.shape[0] ** 2 * S)
    np.testing.assert_allclose(np.concatenate([s.ravel() for s in se.scales]), np.sqrt(V2), rtol=1e-12)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(se.bases, E.bases))


def test_stderr_exact_is_zero_and_empirical_refused(small):
    model, X = small
    for shape in ("kfac", "ekfac"):
        _, se = fisherkit.fisher(model, X, shape=shape, with_stderr=True)
        assert se.frobenius() == 0
        with pytest.raises(ValueError, match="empirical"):
            fisherkit.fisher(model, X, np.zeros(len(X), int), estimator="empirical", shape=shape, with_stderr=True)


# ---------------------------------------------------------------------------- merge, chunks, errors
def test_merge_and_chunk_independence(small):
    model, X = small
    kw = dict(estimator="score", samples=2, seed=4)
    for shape in ("kfac", "ekfac"):
        whole = fisherkit.fisher(model, X, shape=shape, **kw)
        for chunk in (1, 3):
            again = fisherkit.fisher(model, X, shape=shape, chunk=chunk, **kw)
            for a, b in zip(again.blocks, whole.blocks):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    K = fisherkit.fisher(model, X, shape="kfac", **kw)
    parts = [fisherkit.fisher(model, X[:4], shape="kfac", **kw),
             fisherkit.fisher(model, X[4:], shape="kfac", index_offset=4, **kw)]
    merged = parts[0].merge(parts[1])
    for a, b in zip(merged.blocks, K.blocks):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert merged.provenance.rows == ((0, 10),)
    with pytest.raises(ValueError, match="overlapping"):
        parts[0].merge(parts[0])
    with pytest.raises(ValueError, match="seed"):
        parts[0].merge(fisherkit.fisher(model, X[4:], shape="kfac", index_offset=4, estimator="score", samples=2,
                                        seed=5))
    # EKFAC over the chunks of one stream, in the bases of the merged KFAC: exact
    Xc, _ = model._inputs(X)
    B = merged.eigenbases()
    e0 = kronecker(model, Xc[:4], None, "score", "ekfac", 2, 4, 0, 0, bases=B)
    e1 = kronecker(model, Xc[4:], None, "score", "ekfac", 2, 4, 0, 4, bases=B)
    ew = kronecker(model, Xc, None, "score", "ekfac", 2, 4, 0, 0, bases=B)
    for a, b in zip(e0.merge(e1).scales, ew.scales):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="different eigenbases"):
        fisherkit.fisher(model, X[:4], shape="ekfac").merge(
            fisherkit.fisher(model, X[4:], shape="ekfac", index_offset=4))
    with pytest.raises(TypeError):
        K.merge(fisherkit.fisher(model, X, shape="diag"))


def test_bad_arguments(small):
    model, X = small
    with pytest.raises(ValueError, match="'exact', 'score', 'empirical'|exact, score, empirical.*hessian"):
        fisherkit.fisher(model, X, shape="kfac", estimator="hessian")
    with pytest.raises(ValueError, match="hessian"):
        fisherkit.kfac_error(model, X, estimator="hessian")
    with pytest.raises(ValueError, match="layers"):
        fisherkit.fisher(model, X, shape="kfac", layers=[0])
    K = fisherkit.fisher(model, X, shape="kfac")
    with pytest.raises(ValueError, match="damping_mode"):
        K.solve(np.ones(model.n_params), 1e-3, damping_mode="tikhonov")
    with pytest.raises(ValueError, match="damping"):
        K.solve(np.ones(model.n_params), -1.0)
    with pytest.raises(ValueError, match="layer 1.*not positive definite.*damping > 0"):
        K.solve(np.ones(model.n_params))  # the categorical G of the last layer is singular
    with pytest.raises(ValueError, match="shape"):
        K.mv(np.ones(model.n_params + 1))
    with pytest.raises(MemoryError, match="as_linear_operator"):
        K.to_dense(max_bytes=100)
    with pytest.raises(MemoryError, match="layer 0"):
        fisherkit.fisher(model, X, shape="ekfac").layer(0, max_bytes=100)
    with pytest.raises(ValueError, match="argument 'l'"):
        K.layer(2)
    with pytest.raises(MemoryError, match="'kfac' Fisher"):
        fisherkit.fisher(model, X, shape="kfac", max_bytes=10)
    with pytest.raises(ValueError, match="needs labels"):
        fisherkit.kfac_error(model, X, estimator="empirical")


# ---------------------------------------------------------------------------- natural gradients
@pytest.mark.parametrize("method", ["kfac", "ekfac"])
def test_natural_gradient_is_the_matrix_solve(small, method, rng):
    model, X = small
    y = labels(model, X)
    _, g = model.gradient(X, y)
    for est in ("exact", "score", "empirical"):
        d = natural_gradient(model, X, g, method=method, damping=1e-2, estimator=est,
                             y=y if est == "empirical" else None, samples=2, seed=3)
        M = fisherkit.fisher(model, X, y if est == "empirical" else None, shape=method, estimator=est, samples=2,
                             seed=3)
        np.testing.assert_allclose(d, np.linalg.solve(M.to_dense() + 1e-2 * np.eye(model.n_params), g), rtol=1e-8)
    d = natural_gradient(model, X, model.unflatten(g), method="kfac", damping=1e-2, damping_mode="factored")
    K = fisherkit.fisher(model, X, shape="kfac")
    np.testing.assert_allclose(np.concatenate([np.concatenate([w.ravel(), b]) for w, b in d]),
                               K.solve(g, 1e-2, damping_mode="factored"), rtol=1e-10)
    with pytest.raises(ValueError, match="damping_mode"):
        natural_gradient(model, X, g, method="ekfac", damping=1e-2, damping_mode="factored")
    with pytest.raises(ValueError, match="bpm"):
        natural_gradient(model, X, g, method=method, damping=1e-2, estimator="bpm")


@pytest.mark.parametrize("method,mode", [("kfac", "exact"), ("kfac", "factored"), ("ekfac", "exact")])
def test_optimizer_trains_and_averages(method, mode):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    model = make([4, 8, 3], ["tanh"], "categorical", seed=1)
    opt = fisherkit.optim.NaturalGradient(model, lr=0.5, method=method, damping=1e-2, ema=0.7, damping_mode=mode,
                                          curvature_every=2)
    losses = [opt.step(X, y) for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0]
    assert isinstance(opt.curvature.matrix, fisherkit.KFAC if method == "kfac" else fisherkit.EKFAC)
    with pytest.raises(ValueError, match="damping_mode"):
        fisherkit.optim.NaturalGradient(model, lr=0.5, method="unit", damping_mode="factored")


def test_ekfac_blend_is_the_projected_average(small):
    model, X = small
    a = fisherkit.fisher(model, X[:5], shape="ekfac")
    b = fisherkit.fisher(model, X[5:], shape="ekfac", index_offset=5)
    m = a.blend(b, 0.3)
    K = a.kfac.blend(b.kfac, 0.3)
    for (A, G), (A2, G2), (Aa, Ga), (Ab, Gb) in zip(m.kfac.factors, K.factors, a.kfac.factors, b.kfac.factors):
        np.testing.assert_allclose(A, 0.7 * Aa + 0.3 * Ab, rtol=1e-13)
        np.testing.assert_allclose(G, 0.7 * Ga + 0.3 * Gb, rtol=1e-13)
    # the scales are the diagonal, in the new bases, of the average of the two EKFAC matrices
    avg = 0.7 * a.to_dense() + 0.3 * b.to_dense()
    for l, ((Qa, Qg), s) in enumerate(zip(m.bases, m.scales)):
        Q = kron_flat(model, l, Qa, Qg)
        sl = model.layout.layer_slice(l)
        np.testing.assert_allclose(flat_scales(model, l, s), np.diag(Q.T @ avg[sl, sl] @ Q), rtol=1e-10, atol=1e-15)
    same = b.blend(b, 1.0)
    np.testing.assert_allclose(same.to_dense(), b.to_dense(), atol=1e-13)


# ---------------------------------------------------------------------------- SciPy operators
SHAPES_ALL = ["full", "layer", "unit", "diag", "kfac", "ekfac"]


@pytest.mark.parametrize("shape", SHAPES_ALL)
def test_as_linear_operator_eigsh_and_cg(small, shape, dtype):
    spla = pytest.importorskip("scipy.sparse.linalg")
    model0, X = small
    model = make([3, 4, 3], ["tanh"], "categorical", seed=7, dtype=dtype)
    M = fisherkit.fisher(model, X, shape=shape)
    op = M.as_linear_operator()
    assert op.shape == (model.n_params,) * 2 and op.dtype == dtype
    D = np.asarray(M.to_dense(), np.float64)
    top = np.sort(spla.eigsh(op, k=3, which="LA", return_eigenvectors=False))
    np.testing.assert_allclose(top, np.linalg.eigvalsh(D)[-3:], rtol=10 * tol(dtype) ** 0.5 if dtype == np.float32
                               else 1e-9)
    lam = 0.05
    b = np.random.default_rng(1).standard_normal(model.n_params).astype(dtype)
    damped = op + lam * spla.aslinearoperator(np.eye(model.n_params, dtype=dtype))
    x, info = spla.cg(damped, b, rtol=1e-10 if dtype == np.float64 else 1e-5, maxiter=2000)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(D + lam * np.eye(model.n_params), b),
                               rtol=1e-7 if dtype == np.float64 else 2e-3, atol=1e-8 if dtype == np.float64 else 1e-3)


def test_fisher_operator_eigsh_matches_the_dense_fisher(small):
    spla = pytest.importorskip("scipy.sparse.linalg")
    from fisherkit.operators import fisher_operator
    model, X = small
    op = fisher_operator(model, X, chunk=3)
    top = np.sort(spla.eigsh(op, k=2, which="LA", return_eigenvectors=False))
    np.testing.assert_allclose(top, np.linalg.eigvalsh(fisherkit.fisher(model, X, shape="full").matrix)[-2:], rtol=1e-9)


# ---------------------------------------------------------------------------- Dask, GPU
def test_dask_kfac_equals_one_process(small):
    da = pytest.importorskip("dask.array")
    import dask

    model, X = small
    Xd = da.from_array(X, chunks=(4, 3))
    with dask.config.set(scheduler="synchronous"):
        for est in ("exact", "score"):
            K, se = fisherkit.fisher(model, Xd, shape="kfac", estimator=est, samples=2, seed=3, with_stderr=True)
            W, sw = fisherkit.fisher(model, X, shape="kfac", estimator=est, samples=2, seed=3, with_stderr=True)
            assert isinstance(K, fisherkit.KFAC) and K.n_samples == W.n_samples
            for a, b in zip(K.blocks + se.blocks, W.blocks + sw.blocks):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        # EKFAC: the merged KFAC's eigenbases, then the scales in them per block
        E, se = fisherkit.fisher(model, Xd, shape="ekfac", estimator="score", samples=2, seed=3, with_stderr=True)
        W, sw = fisherkit.fisher(model, X, shape="ekfac", estimator="score", samples=2, seed=3, with_stderr=True)
        assert isinstance(E, fisherkit.EKFAC) and isinstance(E.kfac, fisherkit.KFAC)
        np.testing.assert_allclose(E.to_dense(), W.to_dense(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(se.to_dense(), sw.to_dense(), rtol=1e-9, atol=1e-14)
        lazy = fisherkit.distributed.fisher(model, Xd, shape="ekfac", compute=False)
        np.testing.assert_allclose(lazy.compute().to_dense(), fisherkit.fisher(model, X, shape="ekfac").to_dense(),
                                   rtol=1e-10, atol=1e-14)


def _gpu_ready() -> bool:
    try:
        import cupy

        return bool(fisherkit.info()["gpu_visible"]) and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy or no driver: no GPU backend
        return False


@pytest.mark.skipif(not _gpu_ready(), reason="CuPy and a visible CUDA device are needed for the GPU backend")
def test_gpu_agrees_with_host(small):
    import cupy

    model, X = small
    g = model.to("cuda")
    Xg = cupy.asarray(X)
    for shape in ("kfac", "ekfac"):
        for est in ("exact", "score"):
            h = fisherkit.fisher(model, X, shape=shape, estimator=est, samples=2, seed=1)
            d = fisherkit.fisher(g, Xg, shape=shape, estimator=est, samples=2, seed=1)
            np.testing.assert_allclose(cupy.asnumpy(d.to_dense()), h.to_dense(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(fisherkit.kfac_error(g, Xg).kfac, fisherkit.kfac_error(model, X).kfac, rtol=1e-9)
    _, se_h = fisherkit.fisher(model, X, shape="kfac", estimator="score", with_stderr=True)
    _, se_d = fisherkit.fisher(g, Xg, shape="kfac", estimator="score", with_stderr=True)
    np.testing.assert_allclose(cupy.asnumpy(se_d.flat()), se_h.flat(), rtol=1e-10, atol=1e-14)
