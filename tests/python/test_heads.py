"""Heads: moments by exact enumeration / quadrature, sampling by Monte Carlo."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit.heads as heads
from reference import head_cov, head_loglik, head_support

HEADS = ["gaussian", "categorical", "bernoulli", "poisson"]


def _h(head, C, rng):
    h = rng.standard_normal((4, C)) * 0.8
    return h


@pytest.mark.parametrize("head,C", [(h, c) for h in HEADS for c in (1, 2, 3) if not (h == "categorical" and c == 1)])
def test_mean_covariance_and_sqrt_by_enumeration(head, C):
    rng = np.random.default_rng(0)
    H = _h(head, C, rng)
    sigma = 0.7
    mean = heads.mean(head, H, sigma=sigma)
    cov = heads.covariance(head, H, sigma=sigma)
    B = heads.sqrt_covariance(head, H, sigma=sigma)
    for n in range(len(H)):
        ys, w, t = head_support(head, H[n], sigma)
        assert w.sum() == pytest.approx(1.0, abs=1e-13)
        ey = w @ np.array([np.broadcast_to(y, (len(y),)) for y in ys], float)
        if head == "categorical":
            ey = w  # E[y] reported as class probabilities
        np.testing.assert_allclose(mean[n], ey, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(cov[n], head_cov(head, H[n], sigma), rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(B[n] @ B[n].T, cov[n], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("head", HEADS)
def test_log_likelihood_normalised_and_matches_reference(head):
    rng = np.random.default_rng(1)
    C = 2
    H = _h(head, C, rng)
    for n in range(len(H)):
        ys, w, _ = head_support(head, H[n], 1.0)
        ll = np.array([head_loglik(head, H[n], y) for y in ys])
        Y = np.array([np.atleast_1d(y) for y in ys])
        got = heads.log_likelihood(head, np.repeat(H[n:n + 1], len(ys), 0), Y if head != "categorical" else Y[:, 0])
        np.testing.assert_allclose(got, ll, rtol=1e-12, atol=1e-12)
        if head != "gaussian":  # a probability mass function sums to one over its support
            assert np.exp(got).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sampling_moments_reproducibility(head, dtype):
    rng = np.random.default_rng(2)
    H = (rng.standard_normal((3, 3)) * 0.7).astype(dtype)
    if head == "poisson":
        H[0, 0] = np.log(45.0)  # exercise the PTRS branch (lambda >= 30)
    S = 20000
    draws = heads.sample(head, H, samples=S, seed=123)
    again = heads.sample(head, H, samples=S, seed=123)
    np.testing.assert_array_equal(draws, again)
    other = heads.sample(head, H, samples=S, seed=124)
    assert not np.array_equal(draws, other)
    mean = heads.mean(head, H.astype(np.float64))
    cov = heads.covariance(head, H.astype(np.float64))
    for n in range(3):
        if head == "categorical":
            t = np.eye(3)[draws[n]]
        else:
            t = draws[n].astype(np.float64)
            if head == "gaussian":
                t = t  # sigma = 1: t = y
        emp = t.mean(0)
        target = mean[n]
        var = np.diag(cov[n]) if head != "gaussian" else np.ones(3)
        se = np.sqrt(var / S)
        assert np.all(np.abs(emp - target) < 5 * se + 1e-12), (emp, target, se)
        # second moments: empirical covariance within 5 standard errors (4th-moment based)
        tc = t - target
        emp_cov = tc.T @ tc / S
        se_cov = np.sqrt(((tc[:, :, None] * tc[:, None, :]) ** 2).mean(0) / S)
        assert np.all(np.abs(emp_cov - (cov[n] if head != "gaussian" else np.eye(3))) < 5 * se_cov + 1e-12)


def test_sample_prefix_property_and_shapes():
    H = np.zeros((5, 4))
    a = heads.sample("categorical", H, samples=3, seed=7)
    b = heads.sample("categorical", H[:2], samples=3, seed=7)
    assert a.shape == (5, 3) and a.dtype == np.int64
    np.testing.assert_array_equal(a[:2], b)  # draw (n, s) depends on (seed, n, s) only
    g = heads.sample("gaussian", H, samples=2, seed=1)
    assert g.shape == (5, 2, 4)


def test_bad_head_inputs():
    with pytest.raises(ValueError, match="unknown head"):
        heads.mean("laplace", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="'H' contains NaN"):
        heads.mean("categorical", np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="samples"):
        heads.sample("bernoulli", np.zeros((1, 2)), samples=0)
    with pytest.raises(ValueError, match="seed"):
        heads.sample("bernoulli", np.zeros((1, 2)), seed=-1)
    with pytest.raises(ValueError, match="at least 2 outputs"):
        heads.mean("categorical", np.zeros((3, 1)))


def test_the_gaussian_square_root_factor_is_one_over_sigma_where_its_square_overflows():
    # 1 / sigma^2 overflows float32 at sigma = 1e-20; the factor itself, 1 / sigma, does not
    H = np.zeros((2, 3), np.float32)
    B = heads.sqrt_covariance("gaussian", H, sigma=1e-20)
    want = np.float32(1) / np.float32(1e-20)
    np.testing.assert_array_equal(B, np.broadcast_to(np.eye(3, dtype=np.float32) * want, (2, 3, 3)))
