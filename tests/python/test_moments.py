"""Head moment contractions and per-unit variance scalars (docs/maths/heads.rst#heads-fourth-moments).

Oracles: exact enumeration of the label support (categorical; Bernoulli over {0,1}^C),
truncated sums (Poisson, tail < 1e-15) and the 3-point Gauss-Hermite product rule
(Gaussian; exact to degree 5 per coordinate), i.e. the enumeration and quadrature oracles, and
the golden 2-2-3 tanh network of section 10.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fisherkit._loader import _core

HEADS = ["gaussian", "categorical", "bernoulli", "poisson"]
SIGMA = 0.7


# ------------------------------------------------------------------ references (float64)


def support(head: str, h: np.ndarray, sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Weights (S,) and centred statistics tau (S, C) of the whole label support."""
    h = np.asarray(h, dtype=np.float64)
    C = len(h)
    if head == "categorical":
        p = np.exp(h - h.max())
        p /= p.sum()
        w, t = p, np.eye(C)
    elif head == "bernoulli":
        assert C <= 6
        p = 1.0 / (1.0 + np.exp(-h))
        ys = np.array(list(itertools.product([0.0, 1.0], repeat=C)))
        w = np.prod(np.where(ys == 1.0, p, 1.0 - p), axis=1)
        t = ys
    elif head == "poisson":
        lam = np.exp(h)
        axes, pmfs = [], []
        for lc in lam:
            kmax = int(lc + 25.0 * math.sqrt(lc) + 40)
            k = np.arange(kmax + 1, dtype=np.float64)
            logpmf = k * math.log(lc) - lc - np.array([math.lgamma(x + 1.0) for x in k])
            pmf = np.exp(logpmf)
            # the dropped tail is far below 1e-15, even weighted by k^4
            assert pmf[-1] * kmax**4 < 1e-16
            axes.append(k)
            pmfs.append(pmf)
        grids = np.meshgrid(*axes, indexing="ij")
        t = np.stack([g.ravel() for g in grids], axis=1)
        wg = np.meshgrid(*pmfs, indexing="ij")
        w = np.prod(np.stack([g.ravel() for g in wg], axis=1), axis=1)
    elif head == "gaussian":
        nodes = np.array([0.0, math.sqrt(3.0), -math.sqrt(3.0)])
        weights = np.array([2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0])
        eps = np.array(list(itertools.product(nodes, repeat=C)))
        w = np.prod(np.array(list(itertools.product(weights, repeat=C))), axis=1)
        t = (h + sigma * eps) / sigma**2
    else:
        raise ValueError(head)
    eta = w @ t
    return w, t - eta


def moment(w: np.ndarray, tau: np.ndarray, *vecs: np.ndarray) -> float:
    """E[prod_k (vecs[k] . tau)] over the support."""
    out = w.copy()
    for v in vecs:
        out = out * (tau @ v)
    return float(out.sum())


def scale(w: np.ndarray, tau: np.ndarray, *vecs: np.ndarray) -> float:
    """E[prod_k |vecs[k] . tau|]: the natural size of a contraction (for absolute slack)."""
    out = w.copy()
    for v in vecs:
        out = out * np.abs(tau @ v)
    return float(out.sum())


def rows_h(head: str, N: int, C: int, rng: np.random.Generator) -> np.ndarray:
    s = 0.6 if head == "poisson" else 1.0
    return rng.standard_normal((N, C)) * s


# ------------------------------------------------------------------ library wrappers


def lib_contraction(name: str, head: str, H, *vecs, sigma=SIGMA, **kw) -> np.ndarray:
    out = np.empty(H.shape[0], dtype=H.dtype)
    getattr(_core, name)(head, sigma, H, *vecs, out, **kw)
    return out


def lib_unit_scalars(head: str, H, G3, T3=None, sigma=SIGMA):
    """G3, T3: (N, C, n) -> q, r, w, c of shape (N, n) (w, c None without T3)."""
    N, C, n = G3.shape
    dt = H.dtype
    q, r = np.empty((N, n), dt), np.empty((N, n), dt)
    w = c = None
    if T3 is not None:
        w, c = np.empty((N, n), dt), np.empty((N, n), dt)
    _core.head_unit_scalars(head, sigma, H, G3.reshape(N, C * n),
                            None if T3 is None else T3.reshape(N, C * n), q, r, w, c)
    return q, r, w, c


def lib_layer_block(head: str, H, G3, T4=None, sigma=SIGMA):
    """G3: (N, C, n); T4: (N, C, n, n) -> U1, U2 of shape (N, n, n)."""
    N, C, n = G3.shape
    U1 = np.empty((N, n * n), H.dtype)
    U2 = None if T4 is None else np.empty((N, n * n), H.dtype)
    _core.head_layer_block(head, sigma, H, G3.reshape(N, C * n),
                           None if T4 is None else T4.reshape(N, C * n * n), U1, U2)
    return U1.reshape(N, n, n), None if U2 is None else U2.reshape(N, n, n)


def sizes(head):
    Cs = [1, 2, 3, 5] if head in ("gaussian", "categorical", "bernoulli") else [1, 2, 3]
    return [C for C in Cs if not (head == "categorical" and C == 1)]


# ------------------------------------------------------------------ O1: contractions


@pytest.mark.parametrize("head", HEADS)
def test_contractions_match_enumeration(head):
    rng = np.random.default_rng(10)
    for C in sizes(head):
        N = 4
        H = rows_h(head, N, C, rng)
        U, V, W, Z = (rng.standard_normal((N, C)) for _ in range(4))
        quad = lib_contraction("head_quadratic", head, H, U, V)
        k3 = lib_contraction("head_third_cumulant", head, H, U, V, W)
        K = lib_contraction("head_fourth_moment", head, H, U, V, W, Z)
        k4 = lib_contraction("head_fourth_moment", head, H, U, V, W, Z, cumulant=True)
        for n in range(N):
            w, tau = support(head, H[n])
            u, v, x, z = U[n], V[n], W[n], Z[n]
            ref_q = moment(w, tau, u, v)
            ref_3 = moment(w, tau, u, v, x)
            ref_K = moment(w, tau, u, v, x, z)
            I = lambda a, b: moment(w, tau, a, b)  # noqa: E731
            ref_4 = ref_K - I(u, v) * I(x, z) - I(u, x) * I(v, z) - I(u, z) * I(v, x)
            s2, s3, s4 = scale(w, tau, u, v), scale(w, tau, u, v, x), scale(w, tau, u, v, x, z)
            assert abs(quad[n] - ref_q) <= 1e-12 * s2, (C, n)
            assert abs(k3[n] - ref_3) <= 1e-12 * s3, (C, n)
            assert abs(K[n] - ref_K) <= 1e-12 * s4, (C, n)
            assert abs(k4[n] - ref_4) <= 1e-12 * (s4 + s2 * s2 * 3), (C, n)
            if head == "gaussian":
                assert k3[n] == 0.0 and k4[n] == 0.0


@pytest.mark.parametrize("head", HEADS)
def test_covariance_contraction_equals_dense_covariance(head):
    rng = np.random.default_rng(11)
    C = 3
    H = rows_h(head, 5, C, rng)
    cov = np.empty((5, C * C))
    _core.head_covariance(head, SIGMA, H, cov, False)
    for a in range(C):
        for b in range(C):
            E = np.zeros((5, C)); E[:, a] = 1
            F = np.zeros((5, C)); F[:, b] = 1
            got = lib_contraction("head_quadratic", head, H, E, F)
            np.testing.assert_allclose(got, cov[:, a * C + b], rtol=1e-13, atol=1e-15)


def test_categorical_tensors_shift_invariance_and_marginals():
    """K(1, ., ., .) = 0, I 1 = 0; the one-hot marginal K_aaaa = p(1-p)(1-3p(1-p))."""
    rng = np.random.default_rng(12)
    C = 5
    H = rng.standard_normal((3, C))
    ones = np.ones((3, C))
    V, W, Z = (rng.standard_normal((3, C)) for _ in range(3))
    K = lib_contraction("head_fourth_moment", "categorical", H, ones, V, W, Z)
    q = lib_contraction("head_quadratic", "categorical", H, ones, V)
    assert np.all(np.abs(K) < 1e-15) and np.all(np.abs(q) < 1e-15)
    p = np.exp(H - H.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    for a in range(C):
        E = np.zeros((3, C)); E[:, a] = 1
        Kaa = lib_contraction("head_fourth_moment", "categorical", H, E, E, E, E)
        v = p[:, a] * (1 - p[:, a])
        np.testing.assert_allclose(Kaa, v * (1 - 3 * v), rtol=1e-13)


def test_independent_heads_closed_forms_one_output():
    """Poisson mu4 = lambda + 3 lambda^2; Bernoulli kappa3 = v(1-2p), kappa4 = v(1-6v)."""
    h = np.array([[-1.3], [0.0], [0.4], [2.0]])
    one = np.ones_like(h)
    lam = np.exp(h[:, 0])
    K = lib_contraction("head_fourth_moment", "poisson", h, one, one, one, one)
    np.testing.assert_allclose(K, lam + 3 * lam**2, rtol=1e-14)
    p = 1 / (1 + np.exp(-h[:, 0])); v = p * (1 - p)
    k3 = lib_contraction("head_third_cumulant", "bernoulli", h, one, one, one)
    k4 = lib_contraction("head_fourth_moment", "bernoulli", h, one, one, one, one, cumulant=True)
    np.testing.assert_allclose(k3, v * (1 - 2 * p), rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(k4, v * (1 - 6 * v), rtol=1e-13)


# ------------------------------------------------------------------ per-unit scalars


@pytest.mark.parametrize("head", HEADS)
def test_unit_scalars_match_enumeration(head):
    """q = E (g.tau)^2, r = Var (g.tau)^2, w = Var(tau_d.tau), c = Cov((g.tau)^2, -tau_d.tau)."""
    rng = np.random.default_rng(20)
    for C in sizes(head):
        for n_units in (1, 3):
            N = 3
            H = rows_h(head, N, C, rng)
            G3 = rng.standard_normal((N, C, n_units))
            T3 = rng.standard_normal((N, C, n_units))
            q, r, w, c = lib_unit_scalars(head, H, G3, T3)
            q2, r2, w2, c2 = lib_unit_scalars(head, H, G3)  # without Tdiag
            assert w2 is None and c2 is None
            np.testing.assert_allclose(q2, q, rtol=1e-13)  # same maths, other instruction mix
            np.testing.assert_allclose(r2, r, rtol=1e-13)
            for n in range(N):
                wt, tau = support(head, H[n])
                for u in range(n_units):
                    g, td = G3[n, :, u], T3[n, :, u]
                    s = tau @ g
                    d = -(tau @ td)
                    ref_q = wt @ s**2
                    ref_r = wt @ (s**2 - ref_q) ** 2  # the variance of one draw of (g.tau)^2
                    ref_w = wt @ d**2
                    ref_c = wt @ ((s**2 - ref_q) * d)
                    tol = 1e-12
                    assert abs(q[n, u] - ref_q) <= tol * ref_q + 1e-300
                    assert abs(r[n, u] - ref_r) <= tol * (wt @ s**4), (C, n, u)
                    assert abs(w[n, u] - ref_w) <= tol * ref_w + 1e-300
                    assert abs(c[n, u] - ref_c) <= tol * (wt @ (s**2 * np.abs(d))) + 1e-300


@pytest.mark.parametrize("head", HEADS)
def test_unit_scalars_equal_the_contractions(head):
    """q = I(g,g), r = K(g,g,g,g) - q^2, w = I(t,t), c = -kappa3(g,g,t) through the library."""
    rng = np.random.default_rng(21)
    C, N = 3, 6
    H = rows_h(head, N, C, rng)
    g = rng.standard_normal((N, C))
    t = rng.standard_normal((N, C))
    q, r, w, c = lib_unit_scalars(head, H, g[:, :, None], t[:, :, None])
    qq = lib_contraction("head_quadratic", head, H, g, g)
    K = lib_contraction("head_fourth_moment", head, H, g, g, g, g)
    np.testing.assert_allclose(q[:, 0], qq, rtol=1e-13)
    np.testing.assert_allclose(r[:, 0], K - qq**2, rtol=1e-10)  # raw form: agrees in float64
    np.testing.assert_allclose(w[:, 0], lib_contraction("head_quadratic", head, H, t, t), rtol=1e-13)
    k3 = lib_contraction("head_third_cumulant", head, H, g, g, t)
    np.testing.assert_allclose(c[:, 0], -k3, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("head", HEADS)
def test_layer_block_matches_enumeration(head):
    """U1[u,u'] = Var((g_u.tau)(g_u'.tau)); U2[u,u'] = Var(T[:,u,u'].tau); diagonals r and w."""
    rng = np.random.default_rng(22)
    for C in sizes(head):
        N, n_units = 2, 3
        H = rows_h(head, N, C, rng)
        G3 = rng.standard_normal((N, C, n_units))
        T4 = rng.standard_normal((N, C, n_units, n_units))
        T4 = 0.5 * (T4 + T4.transpose(0, 1, 3, 2))
        U1, U2 = lib_layer_block(head, H, G3, T4)
        _, r, w, _ = lib_unit_scalars(head, H, G3, np.einsum("ncuu->ncu", T4).copy())
        for n in range(N):
            wt, tau = support(head, H[n])
            S = tau @ G3[n]  # (support, n_units)
            for u in range(n_units):
                for v in range(n_units):
                    prod = S[:, u] * S[:, v]
                    m = wt @ prod
                    ref1 = wt @ (prod - m) ** 2
                    ref2 = wt @ (tau @ T4[n, :, u, v]) ** 2
                    assert abs(U1[n, u, v] - ref1) <= 1e-12 * (wt @ prod**2), (C, u, v)
                    assert abs(U2[n, u, v] - ref2) <= 1e-12 * ref2 + 1e-300
            np.testing.assert_array_equal(U1[n], U1[n].T)
            np.testing.assert_allclose(np.diag(U1[n]), r[n], rtol=1e-12)
            np.testing.assert_allclose(np.diag(U2[n]), w[n], rtol=1e-13)
    U1b, U2b = lib_layer_block(head, H, G3)
    assert U2b is None
    np.testing.assert_allclose(U1b, U1, rtol=1e-13)


# ------------------------------------------------------------------ O6: structural identities


def test_gaussian_r_is_twice_q_squared_and_c_is_zero():
    rng = np.random.default_rng(30)
    for sigma in (1.0, 0.5, 2.3):
        H = rng.standard_normal((5, 4))
        G3 = rng.standard_normal((5, 4, 7))
        q, r, w, c = lib_unit_scalars("gaussian", H, G3, G3, sigma=sigma)
        np.testing.assert_allclose(r, 2 * q**2, rtol=1e-15)
        np.testing.assert_allclose(q, (G3**2).sum(1) / sigma**2, rtol=1e-14)
        assert np.all(c == 0.0)


def test_bernoulli_at_one_half_gives_zero_score_variance():
    rng = np.random.default_rng(31)
    H = np.zeros((3, 1))
    G3 = rng.standard_normal((3, 1, 4))
    q, r, _, _ = lib_unit_scalars("bernoulli", H, G3)
    assert np.all(r == 0.0)
    np.testing.assert_allclose(q, 0.25 * G3[:, 0] ** 2, rtol=1e-15)
    # several outputs at p = 1/2, but g touches one output only: still exactly zero
    H = np.zeros((2, 3))
    G3 = np.zeros((2, 3, 2)); G3[:, 1, :] = rng.standard_normal((2, 2))
    _, r, _, _ = lib_unit_scalars("bernoulli", H, G3)
    assert np.all(r == 0.0)
    # and nonzero when it touches two (r = 2 sum_{c != c'} v v' g^2 g'^2 > 0)
    G3[:, 0, :] = 1.0
    _, r, _, _ = lib_unit_scalars("bernoulli", H, G3)
    np.testing.assert_allclose(r[:, 0], 4 * 0.25 * 0.25 * G3[:, 1, 0] ** 2, rtol=1e-14)


def test_categorical_stable_form_in_float32():
    """p = (0.5001, 0.4999), g = (1, -1): r = 16 p1 p2 (p1 - p2)^2 = 1.6000e-7 (docs/maths/heads.rst#heads-fourth-moments)."""
    p = np.array([0.5001, 0.4999])
    exact = 16 * p[0] * p[1] * (p[0] - p[1]) ** 2
    assert exact == pytest.approx(1.6e-7, rel=1e-4)
    H = np.log(p)[None, :]
    G3 = np.array([1.0, -1.0])[None, :, None]
    q64, r64, _, _ = lib_unit_scalars("categorical", H, G3)
    assert r64[0, 0] == pytest.approx(exact, rel=1e-9)
    q32, r32, _, _ = lib_unit_scalars("categorical", H.astype(np.float32), G3.astype(np.float32))
    assert r32.dtype == np.float32
    assert abs(float(r32[0, 0]) - exact) <= 1e-3 * exact
    # the raw form sum p g~^4 - q^2 evaluated in float32 loses most digits here
    pf = p.astype(np.float32)
    gt = np.array([1, -1], np.float32) - np.float32(pf @ np.array([1, -1], np.float32))
    qf = np.float32(pf @ gt**2)
    raw = np.float32(pf @ gt**4) - qf * qf
    assert abs(float(raw) - exact) > 1e-2 * exact


@pytest.mark.parametrize("head", HEADS)
def test_float32_agrees_with_float64(head):
    rng = np.random.default_rng(32)
    N, C, n = 7, 3, 5
    H = rows_h(head, N, C, rng)
    G3 = rng.standard_normal((N, C, n))
    T3 = rng.standard_normal((N, C, n))
    f64 = lib_unit_scalars(head, H, G3, T3)
    f32 = lib_unit_scalars(head, H.astype(np.float32), G3.astype(np.float32), T3.astype(np.float32))
    q, r, w, c = f64
    for a64, a32, ref in zip(f64, f32, [q, r, w, np.sqrt(r * w)]):
        assert a32.dtype == np.float32
        # well-conditioned: relative to the entry itself, or for c to its Cauchy-Schwarz scale
        np.testing.assert_allclose(a32, a64, rtol=1e-4, atol=1e-5 * np.max(ref))
    sp64 = np.empty((N, 4)); sp32 = np.empty((N, 4), np.float32)
    _core.head_spectral_constants(head, SIGMA, H, sp64)
    _core.head_spectral_constants(head, SIGMA, H.astype(np.float32), sp32)
    np.testing.assert_allclose(sp32, sp64, rtol=1e-5, atol=1e-7)


def test_non_contiguous_views():
    rng = np.random.default_rng(33)
    N, C, n = 5, 3, 4
    for head in HEADS:
        Hbig = rng.standard_normal((C, 2 * N)) * 0.6
        H = Hbig.T[::2]  # column stride != 1
        G3 = rng.standard_normal((N, C, n))
        T3 = rng.standard_normal((N, C, n))
        Gbig = np.zeros((N, 2 * C * n)); Gbig[:, ::2] = G3.reshape(N, C * n)
        Tbig = np.zeros((2 * N, C * n)); Tbig[::2] = T3.reshape(N, C * n)
        outs = [np.full((N, 3 * n), np.nan)[:, ::3] for _ in range(4)]
        _core.head_unit_scalars(head, SIGMA, H, Gbig[:, ::2], Tbig[::2], *outs)
        ref = lib_unit_scalars(head, np.ascontiguousarray(H), G3, T3)
        for got, want in zip(outs, ref):
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300)
        U = rng.standard_normal((C, N)).T
        got = lib_contraction("head_fourth_moment", head, H, U, U, U, U)
        want = lib_contraction("head_fourth_moment", head, np.ascontiguousarray(H), *(np.ascontiguousarray(U),) * 4)
        np.testing.assert_allclose(got, want, rtol=1e-14)


# ------------------------------------------------------------------ spectral constants


def _random_units(C: int, rng: np.random.Generator, m: int = 4000) -> np.ndarray:
    U = rng.standard_normal((m, C))
    U = np.vstack([U, np.eye(C), rng.standard_normal((m, C)) ** 5])  # axes and spiky ones
    return U / np.linalg.norm(U, axis=1, keepdims=True)


@pytest.mark.parametrize("head", HEADS)
def test_spectral_constants_bound_the_true_extremes(head):
    rng = np.random.default_rng(40)
    for C in sizes(head):
        N = 4
        H = rows_h(head, N, C, rng) * 1.5
        if head == "categorical" and C == 2:
            H[0] = [0.0, 0.0]  # p = 1/2: lambda_max = 1/2 exactly
        sp = np.empty((N, 4))
        _core.head_spectral_constants(head, SIGMA, H, sp)
        U = _random_units(C, rng)
        for n in range(N):
            if head == "poisson":
                # independent coordinates: moments of each from its own truncated sum, then
                # E(u.tau)^4 = sum mu4_c u_c^4 + 6 sum_{c<c'} var_c var_c' u_c^2 u_c'^2
                marg = [support(head, H[n, c:c + 1]) for c in range(C)]
                var = np.array([w1 @ t1[:, 0] ** 2 for w1, t1 in marg])
                mu4 = np.array([w1 @ t1[:, 0] ** 4 for w1, t1 in marg])
                ev = np.sort(var)
                U2 = U**2
                k = U2**2 @ (mu4 - 3 * var**2) + 3 * (U2 @ var) ** 2
            else:
                w, tau = support(head, H[n])
                cov = (tau * w[:, None]).T @ tau
                ev = np.linalg.eigvalsh(cov)
                k = w @ (tau @ U.T) ** 4
            lmin, lmax, kmin, kmax = sp[n]
            slack = 1e-12 * max(1.0, ev[-1], k.max())
            assert lmin <= ev[0] + slack and lmax >= ev[-1] - slack
            assert kmin <= k.min() + slack and kmax >= k.max() - slack
            assert 0 <= lmin <= lmax and 0 <= kmin <= kmax
            if head in ("gaussian", "bernoulli", "poisson"):  # exact eigenvalues
                np.testing.assert_allclose([lmin, lmax], [ev[0], ev[-1]], rtol=1e-12)
            if head == "gaussian":
                np.testing.assert_allclose(sp[n], [1 / SIGMA**2] * 2 + [3 / SIGMA**4] * 2, rtol=1e-14)
                np.testing.assert_allclose([k.min(), k.max()], [kmin, kmax], rtol=1e-12)
            if head == "poisson":  # k_max attained on the largest axis
                np.testing.assert_allclose(kmax, k.max(), rtol=1e-12)
            if head in ("bernoulli", "poisson") and C == 1:
                np.testing.assert_allclose([kmin, kmax], [k[0], k[0]], rtol=1e-12)
            if head == "categorical":
                assert lmin == 0.0 and kmin == 0.0
                p = np.exp(H[n] - H[n].max()); p /= p.sum()
                assert lmax == pytest.approx(min(p.max(), 0.5), rel=1e-14)
                assert kmax <= 1.0 / 3.0 + 1e-15


def test_spectral_constants_are_the_documented_bounds_not_weaker_ones():
    """Where lambda and k are bounds rather than exact values, they are the documented
    formulas (a looser bound would still pass the validity checks above): categorical
    k_max = min(1/3, 2 min(max p, 1/2)); Bernoulli k_min = max(min v^2, 1 / sum_c 1/(v_c (1 - 3 v_c)))
    and k_max = max(max kappa4_c, 0) + 3 max v^2, kappa4 = v (1 - 6 v) the fourth cumulant."""
    H = np.array([[0.0, 0.1, -0.2, 0.05, 0.3, -0.1, 0.2, 0.0],   # categorical: 2 lambda_max < 1/3
                  [3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],      # 1/3 < 2 lambda_max
                  np.zeros(8),                                    # Bernoulli v = 1/4: min v^2 wins
                  np.linspace(-4.0, 4.0, 8)])                     # Bernoulli: the harmonic term wins
    sp = np.empty((4, 4))
    _core.head_spectral_constants("categorical", 1.0, H, sp)
    for n in (0, 1):
        p = np.exp(H[n] - H[n].max())
        p /= p.sum()
        assert sp[n, 3] == pytest.approx(min(1 / 3, 2 * min(p.max(), 0.5)), rel=1e-14)
    assert sp[0, 3] < 1 / 3 - 1e-3
    _core.head_spectral_constants("bernoulli", 1.0, H, sp)
    for n in (2, 3):
        v = 1 / (1 + np.exp(-H[n])) * (1 / (1 + np.exp(H[n])))
        kmin = max(v.min() ** 2, 1 / np.sum(1 / (v * (1 - 3 * v))))
        kmax = max((v * (1 - 6 * v)).max(), 0.0) + 3 * v.max() ** 2
        np.testing.assert_allclose(sp[n], [v.min(), v.max(), kmin, kmax], rtol=1e-13)
    assert sp[2, 2] == pytest.approx(1 / 16, rel=1e-14)


def test_categorical_fourth_moment_supremum_is_below_k_max():
    """p = (q, 1-q, ~0, ...), q = (3 - sqrt 3)/6, u = (e1 - e2)/sqrt 2 approaches 1/3."""
    qv = (3 - math.sqrt(3)) / 6
    H = np.array([[math.log(qv), math.log(1 - qv), -60.0, -60.0]])
    u = np.array([[1.0, -1.0, 0.0, 0.0]]) / math.sqrt(2)
    K = lib_contraction("head_fourth_moment", "categorical", H, u, u, u, u)
    sp = np.empty((1, 4))
    _core.head_spectral_constants("categorical", 1.0, H, sp)
    assert K[0] == pytest.approx(1 / 3, rel=1e-12)
    assert K[0] <= sp[0, 3] + 1e-15


# ------------------------------------------------------------------ golden network (section 10)

from golden import B1, B2, W1, W2, X  # noqa: E402
from golden import CATEGORICAL as GOLD_CAT  # noqa: E402
from golden import GAUSSIAN as GOLD_GAUSS  # noqa: E402


def golden_per_parameter(head: str, sigma: float, dtype=np.float64):
    """F, V1, V2, C12 (15 each) from the per-unit scalars of both layers and abar."""
    z1 = W1 @ X + B1
    a1 = np.tanh(z1)
    h = W2 @ a1 + B2
    d1 = 1 - a1**2
    dd1 = -2 * a1 * d1  # tanh''
    G1 = W2 * d1[None, :]  # (C, 2): dh/dz1
    T1d = W2 * dd1[None, :]  # (C, 2): T_1[:, u, u] = W2[:, u] tanh''(z1_u)
    G2 = np.eye(3)
    T2d = np.zeros((3, 3))
    H = h[None, :].astype(dtype)
    s1 = lib_unit_scalars(head, H, G1[None].astype(dtype), T1d[None].astype(dtype), sigma=sigma)
    s2 = lib_unit_scalars(head, H, G2[None].astype(dtype), T2d[None].astype(dtype), sigma=sigma)
    out = np.zeros((15, 4))
    ab1 = np.append(X, 1.0)
    ab2 = np.append(a1, 1.0)
    k = 0
    for ab, sc, n_units, base_w, base_b in ((ab1, s1, 2, 0, 4), (ab2, s2, 3, 6, 12)):
        q, r, w, c = (s[0].astype(np.float64) for s in sc)
        for u in range(n_units):
            for j in range(len(ab)):
                idx = base_b + u if j == len(ab) - 1 else base_w + u * (len(ab) - 1) + j
                a2, a4 = ab[j] ** 2, ab[j] ** 4
                out[idx] = [a2 * q[u], a4 * r[u], a4 * w[u], a4 * c[u]]
                k += 1
    assert k == 15
    return out, h


def test_golden_network_categorical():
    got, h = golden_per_parameter("categorical", 1.0)
    np.testing.assert_allclose(h, [0.4288821297, -0.3994543071, 0.0380633784], atol=1e-10)
    np.testing.assert_allclose(got, GOLD_CAT, rtol=1e-9, atol=1e-13)
    got32, _ = golden_per_parameter("categorical", 1.0, np.float32)
    np.testing.assert_allclose(got32, GOLD_CAT, rtol=1e-4, atol=1e-8)


def test_golden_network_gaussian():
    got, _ = golden_per_parameter("gaussian", 1.0)
    np.testing.assert_allclose(got[:, :3], GOLD_GAUSS, rtol=1e-9, atol=1e-13)
    assert np.all(got[:, 3] == 0.0)
    got, _ = golden_per_parameter("gaussian", 0.5)  # sigma^2 = 0.25
    assert got[0, 2] == pytest.approx(0.5316011116, rel=1e-9)
    np.testing.assert_allclose(got[:, 1], 2 * got[:, 0] ** 2, rtol=1e-14)


def test_golden_unit_block_off_diagonal():
    """Var(I1_01) = x0^2 x1^2 r_0 and Var(I2_01) = x0^2 x1^2 w_0 (unit block of W1 row 0)."""
    z1 = W1 @ X + B1
    a1 = np.tanh(z1)
    h = W2 @ a1 + B2
    d1 = 1 - a1**2
    G1 = (W2 * d1[None, :])[None]
    T4 = np.zeros((1, 3, 2, 2))
    T4[0, :, 0, 0] = W2[:, 0] * (-2 * a1[0] * d1[0])
    T4[0, :, 1, 1] = W2[:, 1] * (-2 * a1[1] * d1[1])
    U1, U2 = lib_layer_block("categorical", h[None, :], G1, T4, sigma=1.0)
    f = X[0] ** 2 * X[1] ** 2
    assert f * U1[0, 0, 0] == pytest.approx(0.002386200717, rel=1e-9)
    assert f * U2[0, 0, 0] == pytest.approx(0.01354495897, rel=1e-9)
    assert U2[0, 0, 1] == 0.0 and U2[0, 1, 0] == 0.0


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_clear_errors():
    H = np.zeros((2, 3))
    G = np.zeros((2, 6))
    q, r = np.zeros((2, 2)), np.zeros((2, 2))
    with pytest.raises(ValueError, match="'G' must have C\\*n columns"):
        _core.head_unit_scalars("categorical", 1.0, H, np.zeros((2, 7)), None, q, r, None, None)
    with pytest.raises(ValueError, match="'G' must have 2 rows"):
        _core.head_unit_scalars("categorical", 1.0, H, np.zeros((3, 6)), None, q, r, None, None)
    with pytest.raises(ValueError, match="argument 'q' must have shape \\(2, 2\\)"):
        _core.head_unit_scalars("categorical", 1.0, H, G, None, np.zeros((2, 3)), r, None, None)
    with pytest.raises(ValueError, match="'Tdiag' must have shape"):
        _core.head_unit_scalars("categorical", 1.0, H, G, np.zeros((2, 5)), q, r, q.copy(), r.copy())
    with pytest.raises(ValueError, match="need 'Tdiag'"):
        _core.head_unit_scalars("categorical", 1.0, H, G, None, q, r, q.copy(), r.copy())
    with pytest.raises(ValueError, match="'w' must have shape"):
        _core.head_unit_scalars("categorical", 1.0, H, G, G, q, r, None, r.copy())
    with pytest.raises(TypeError, match="'G' has the wrong dtype"):
        _core.head_unit_scalars("categorical", 1.0, H, G.astype(np.float32), None, q, r, None, None)
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.head_unit_scalars("categorical", 1.0, H.astype(int), G, None, q, r, None, None)
    with pytest.raises(ValueError, match="at least 2 outputs"):
        _core.head_unit_scalars("categorical", 1.0, np.zeros((2, 1)), np.zeros((2, 2)), None, q, r, None, None)
    with pytest.raises(ValueError, match="sigma"):
        _core.head_unit_scalars("gaussian", 0.0, H, G, None, q, r, None, None)
    with pytest.raises(ValueError, match="sigma"):
        _core.head_spectral_constants("gaussian", float("nan"), H, np.zeros((2, 4)))
    bad = H.copy(); bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="'H' contains NaN or Inf \\(first at \\[1, 2\\]\\)"):
        _core.head_unit_scalars("poisson", 1.0, bad, G, None, q, r, None, None)
    with pytest.raises(ValueError, match="unknown head 'softplus'"):
        _core.head_spectral_constants("softplus", 1.0, H, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="'out' must have shape \\(2, 4\\)"):
        _core.head_spectral_constants("poisson", 1.0, H, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'out' must have 2 entries"):
        _core.head_quadratic("poisson", 1.0, H, H, H, np.zeros(3))
    with pytest.raises(ValueError, match="argument 'W' must have shape \\(2, 3\\)"):
        _core.head_third_cumulant("poisson", 1.0, H, H, H, np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="'Z' must be 2-D"):
        _core.head_fourth_moment("poisson", 1.0, H, H, H, H, np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="'q' is read-only"):
        ro = np.zeros((2, 2)); ro.setflags(write=False)
        _core.head_unit_scalars("categorical", 1.0, H, G, None, ro, r, None, None)
    with pytest.raises(ValueError, match="'T' must have shape \\(2, 12\\)"):
        _core.head_layer_block("categorical", 1.0, H, G, np.zeros((2, 6)), np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="needs 'T'"):
        _core.head_layer_block("categorical", 1.0, H, G, None, np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="'U1' must have shape \\(2, 4\\)"):
        _core.head_layer_block("categorical", 1.0, H, G, None, np.zeros((2, 2)), None)


def test_empty_batch_and_zero_units():
    H = np.zeros((0, 3))
    out = np.zeros((0, 4))
    _core.head_spectral_constants("categorical", 1.0, H, out)
    q = np.zeros((2, 0))
    _core.head_unit_scalars("categorical", 1.0, np.zeros((2, 3)), np.zeros((2, 0)), None, q, q.copy(), None, None)
