"""fisherkit.meanfield: the unit integrals A_k (docs/maths/natgrad.rst#natgrad-unit-integrals, oracle A4) and the
mean-field recursions (1.3), against an adaptive quadrature written here (no SciPy)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fisherkit import meanfield

_T15, _W15 = np.polynomial.legendre.leggauss(15)
_T30, _W30 = np.polynomial.legendre.leggauss(30)


def adaptive(f, a, b, tol=1e-14, depth=0):
    """Adaptive Gauss-Legendre: accept a panel when its 15- and 30-node rules agree."""
    h, m = 0.5 * (b - a), 0.5 * (a + b)
    i15 = h * np.dot(_W15, f(m + h * _T15))
    i30 = h * np.dot(_W30, f(m + h * _T30))
    if abs(i30 - i15) <= tol or depth > 40:
        return i30
    return adaptive(f, a, m, tol / 2, depth + 1) + adaptive(f, m, b, tol / 2, depth + 1)


def dphi2(act, u):
    """phi'(u)^2 by explicit per-activation formulas (independent of the library's)."""
    u = np.clip(np.asarray(u, dtype=np.float64), -700.0, 700.0)  # exp/cosh stay finite
    if act == "relu":
        return (u > 0).astype(np.float64)
    if act == "erf":
        return 4.0 / math.pi * np.exp(-2.0 * u * u)
    if act == "tanh":
        return 1.0 / np.cosh(np.clip(u, -170.0, 170.0)) ** 4
    if act == "sigmoid":
        sg = 1.0 / (1.0 + np.exp(-u))
        return (sg * (1.0 - sg)) ** 2
    if act == "softplus":
        return (1.0 / (1.0 + np.exp(-u))) ** 2
    if act == "gelu":  # d/du u Phi(u) = Phi(u) + u pdf(u)
        cdf = 0.5 * (1.0 + np.vectorize(math.erf)(u / math.sqrt(2.0)))
        return (cdf + u * np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)) ** 2
    if act == "silu":  # d/du u sigmoid(u) = sigmoid(u) (1 + u (1 - sigmoid(u)))
        sg = 1.0 / (1.0 + np.exp(-u))
        return (sg * (1.0 + u * (1.0 - sg))) ** 2
    raise AssertionError(act)


def ref_moments(act, s, c):
    """A_k by adaptive quadrature in z over [-40, 40], split at u = 0 (the ReLU kink) and
    at u = +-1, +-10 so that a narrow phi'^2 (width 1/s in z) is never missed by a panel."""
    pdf = lambda z: np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    cuts = [(u - c) / s for u in (-10.0, -1.0, 0.0, 1.0, 10.0)] if s > 0 else []
    breaks = sorted({-40.0, 40.0, *[z for z in cuts if -40 < z < 40]})
    out = []
    for k in range(3):
        f = lambda z, k=k: dphi2(act, s * z + c) * z**k * pdf(z)  # noqa: E731
        out.append(sum(adaptive(f, a, b) for a, b in zip(breaks[:-1], breaks[1:])))
    return out


S_GRID = [0.0, 0.05, 0.3, 0.5, 0.50001, 0.8, 1.0, 1.0001, 2.5, 7.0, 20.0, 50.0]
C_GRID = [-6.0, -1.0, 0.0, 0.4, 3.0, 25.0]


@pytest.mark.parametrize("act", ["relu", "erf", "tanh", "sigmoid", "softplus", "gelu", "silu"])
def test_unit_moments_against_adaptive_quadrature(act):
    """A4: closed forms (relu, erf) and the library quadrature (tanh, sigmoid, softplus,
    gelu, silu) agree with adaptive quadrature to 1e-10 absolute, vectorised over a grid of (s, c)."""
    s, c = np.meshgrid(S_GRID, C_GRID, indexing="ij")
    got = meanfield.unit_moments(act, s, c)
    for i, sv in enumerate(S_GRID):
        for j, cv in enumerate(C_GRID):
            if sv == 0.0:  # u = c exactly: A0 = A2 = phi'(c)^2, A1 = 0
                ref = [float(dphi2(act, cv)), 0.0, float(dphi2(act, cv))]
            else:
                ref = ref_moments(act, sv, cv)
            for k in range(3):
                assert abs(got[k][i, j] - ref[k]) <= 1e-10, (act, sv, cv, k, got[k][i, j], ref[k])


def test_unit_moments_special_values():
    A0, A1, A2 = meanfield.unit_moments("relu", 1.3, 0.0)
    np.testing.assert_allclose([A0, A1, A2], [0.5, 1 / math.sqrt(2 * math.pi), 0.5], rtol=1e-15)
    s = 0.7
    A0, A1, A2 = meanfield.unit_moments("erf", s, 0.0)
    kappa = 1 + 4 * s * s
    assert A1 == 0.0
    np.testing.assert_allclose(A2, A0 / kappa, rtol=1e-15)
    np.testing.assert_allclose(A0, 4 / math.pi / math.sqrt(kappa), rtol=1e-15)
    A0, A1, A2 = meanfield.unit_moments("identity", [1.0, 2.0], 3.0)
    np.testing.assert_array_equal(A0, [1, 1]) and np.testing.assert_array_equal(A1, [0, 0])
    # positivity (A7): D = A0 A2 - A1^2 > 0 for a spread of units
    rng = np.random.default_rng(3)
    s, c = rng.uniform(0.05, 10, 200), rng.normal(0, 3, 200)
    for act in ("relu", "erf", "tanh", "sigmoid", "softplus"):
        A0, A1, A2 = meanfield.unit_moments(act, s, c)
        assert np.all(A0 * A2 - A1**2 > 0), act


def test_unit_moments_stein_identity():
    """A1 = s E[(phi'^2)'(u)] for erf, where (phi'^2)' = -4u phi'^2: an independent relation."""
    s, c = 0.8, 0.35
    A0, A1, _ = meanfield.unit_moments("erf", s, c)
    E_u = s * A1 + c * A0  # E[phi'^2 u]
    np.testing.assert_allclose(A1, s * (-4.0) * E_u, rtol=1e-14)


def test_unit_moments_shapes_and_errors():
    A0, A1, A2 = meanfield.unit_moments("tanh", np.ones((2, 3)), np.zeros(3))
    assert A0.shape == A1.shape == A2.shape == (2, 3)
    assert np.ndim(meanfield.unit_moments("relu", 1.0, 0.0)[0]) == 0
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        meanfield.unit_moments("mish", 1.0, 0.0)
    with pytest.raises(ValueError, match="'s' must be finite and >= 0"):
        meanfield.unit_moments("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="'c' contains NaN"):
        meanfield.unit_moments("tanh", 1.0, np.nan)
    with pytest.raises(ValueError, match="do not broadcast"):
        meanfield.unit_moments("tanh", np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="'s' must be real"):
        meanfield.unit_moments("tanh", np.ones(2, dtype=complex), 0.0)


# ------------------------------------------------------------------ forward recursion
def ref_activity(act, q):
    phi = {"tanh": np.tanh, "sigmoid": lambda u: 1 / (1 + np.exp(-u)),
           "softplus": lambda u: np.logaddexp(0.0, u), "erf": np.vectorize(math.erf),
           "relu": lambda u: np.maximum(u, 0.0)}[act]
    s = math.sqrt(q)
    pdf = lambda z: np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    m = adaptive(lambda z: phi(s * z) * pdf(z), -40, 0) + adaptive(lambda z: phi(s * z) * pdf(z), 0, 40)
    a = adaptive(lambda z: phi(s * z) ** 2 * pdf(z), -40, 0) + adaptive(lambda z: phi(s * z) ** 2 * pdf(z), 0, 40)
    return m, a


@pytest.mark.parametrize("act,sw,sb", [("tanh", 1.5, 0.01), ("sigmoid", 4.0, 0.5), ("softplus", 1.0, 0.1),
                                       ("erf", 2.0, 0.0), ("relu", 1.7, 0.2), ("tanh", 30.0, 1.0)])
def test_meanfield_forward_against_quadrature(act, sw, sb):
    mf = meanfield.meanfield_forward(sw, sb, act, 4)
    assert mf.q.shape == mf.a_hat.shape == mf.m.shape == mf.v.shape == (5,)
    assert np.isnan(mf.q[0]) and mf.a_hat[0] == 1.0 and mf.m[0] == 0.0 and mf.v[0] == 1.0
    a_prev = 1.0
    for l in range(1, 5):
        q = sw * a_prev + sb
        m, a = ref_activity(act, q)
        assert abs(mf.q[l] - q) <= 1e-12 * q
        assert abs(mf.m[l] - m) <= 1e-10 and abs(mf.a_hat[l] - a) <= 1e-10, (l, mf, m, a)
        np.testing.assert_allclose(mf.v[l], mf.a_hat[l] - mf.m[l] ** 2, rtol=1e-14, atol=1e-16)
        a_prev = a


def test_meanfield_forward_reference_values():
    """docs/maths/natgrad.rst#natgrad-meanfield-order-parameters: tanh (1.5, 0.01) q = 1.51, 0.714, 0.511, 0.426; the ReLU fixed point."""
    mf = meanfield.meanfield_forward(1.5, 0.01, "tanh", 4)
    np.testing.assert_allclose(mf.q[1:], [1.51, 0.714, 0.511, 0.426], atol=6e-4)
    assert np.all(np.abs(mf.m[1:]) < 1e-15)
    mf = meanfield.meanfield_forward(2.0, 0.0, "relu", 3)
    np.testing.assert_allclose(mf.q[1:], 2.0, rtol=1e-15)
    np.testing.assert_allclose(mf.m[1:], math.sqrt(2 / (2 * math.pi)), rtol=1e-15)
    np.testing.assert_allclose(mf.v[1:], 1 - 1 / math.pi, rtol=1e-14)


def test_meanfield_forward_per_layer_and_errors():
    mf = meanfield.meanfield_forward([1.0, 2.0], [0.0, 0.1], ["tanh", "relu"], 2,
                                     input_second_moment=2.0, input_mean=0.5)
    assert mf.v[0] == 2.0 - 0.25
    assert mf.q[1] == 2.0 and abs(mf.q[2] - (2.0 * mf.a_hat[1] + 0.1)) < 1e-15
    with pytest.raises(ValueError, match="'activation' must be one value or one per layer"):
        meanfield.meanfield_forward(1.0, 0.0, ["tanh"], 2)
    with pytest.raises(ValueError, match="'sigma_w2' must hold finite variances"):
        meanfield.meanfield_forward(-1.0, 0.0, "tanh", 2)
    with pytest.raises(ValueError, match="'depth'"):
        meanfield.meanfield_forward(1.0, 0.0, "tanh", -1)
    with pytest.raises(ValueError, match="input_second_moment"):
        meanfield.meanfield_forward(1.0, 0.0, "tanh", 1, input_second_moment=0.1, input_mean=1.0)


# ------------------------------------------------------------------ backward recursion
def test_meanfield_backward_linear_net_monte_carlo():
    """For a linear net the mean-field backward recursion is exact in expectation over the
    Gaussian weights: compare beta^l with Monte Carlo over weight draws (5 standard errors)."""
    sizes, sw, sv = [5, 7, 6, 3], 1.3, 0.7
    q = meanfield.meanfield_forward(sw, 0.0, "identity", 2).q
    beta = meanfield.meanfield_backward(sizes, sw, "identity", q, sigma_v2=sv)
    rng = np.random.default_rng(7)
    R = 20000
    W1 = rng.normal(0, math.sqrt(sw / 5), (R, 7, 5))
    W2 = rng.normal(0, math.sqrt(sw / 7), (R, 6, 7))
    V = rng.normal(0, math.sqrt(sv / 6), (R, 3, 6))
    J2 = V
    J1 = np.einsum("roa,rab->rob", V, W2)
    J0 = np.einsum("rob,rbc->roc", J1, W1)
    for l, J in ((2, J2), (1, J1), (0, J0)):
        samples = (J**2).sum(axis=1).mean(axis=1)  # mean over units i of sum_o J_oi^2
        mean, se = samples.mean(), samples.std(ddof=1) / math.sqrt(R)
        assert abs(mean - beta[l]) <= 5 * se, (l, mean, beta[l], se)
    np.testing.assert_allclose(beta[2], 3 * sv / 6, rtol=1e-15)


def test_meanfield_backward_uses_A0_and_errors():
    sizes = [4, 8, 8, 2]
    mf = meanfield.meanfield_forward(1.5, 0.0, "tanh", 2)
    beta = meanfield.meanfield_backward(sizes, 1.5, "tanh", mf.q)
    A0 = meanfield.unit_moments("tanh", np.sqrt(mf.q[2]), 0.0)[0]
    np.testing.assert_allclose(beta[1], 1.5 * 8 / 8 * A0 * beta[2], rtol=1e-15)
    np.testing.assert_allclose(beta[2], 2 * 1.5 / 8, rtol=1e-15)
    with pytest.raises(ValueError, match="'q' must have length 3"):
        meanfield.meanfield_backward(sizes, 1.5, "tanh", mf.q[:2])
    with pytest.raises(ValueError, match="'sizes'"):
        meanfield.meanfield_backward([3, 2], 1.5, "tanh", mf.q)


def test_unit_statistics():
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(5, 9)), rng.normal(size=5)
    s, c = meanfield.unit_statistics(W, b, 0.3, 0.6)
    for i in range(5):
        assert abs(s[i] - math.sqrt(sum(w * w for w in W[i]) * 0.6)) < 1e-14
        assert abs(c[i] - (0.3 * sum(W[i]) + b[i])) < 1e-14
    with pytest.raises(ValueError, match="'b' must have shape"):
        meanfield.unit_statistics(W, b[:4], 0.0, 1.0)
