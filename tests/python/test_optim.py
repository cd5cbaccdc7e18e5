"""fisherkit.optim: steps against hand-written NumPy updates and dense solves."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit as fk
from fisherkit import datasets, natgrad, optim


def _problem(rng, dtype=np.float64):
    model = fk.MLP.init([4, 9, 7, 3], activation="tanh", seed=31, dtype=dtype, bias_std=0.1)
    X = rng.standard_normal((64, 4)).astype(dtype)
    y = rng.integers(0, 3, 64)
    return model, X, y


def test_sgd_momentum_matches_numpy(rng, dtype):
    model, X, y = _problem(rng, dtype)
    ref = model.copy()
    opt = optim.SGD(model, lr=0.1, momentum=0.9)
    theta = ref.flat_params().astype(np.float64)
    v = np.zeros_like(theta)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for _ in range(4):
        ref.set_flat_params(theta)
        loss_ref, g = ref.gradient(X, y)
        v = 0.9 * v + g
        theta = theta - 0.1 * v
        loss = opt.step(X, y)
        assert loss == pytest.approx(loss_ref, rel=tol)
        assert np.abs(model.flat_params() - theta).max() < tol * 10


def test_adam_matches_numpy(rng):
    model, X, y = _problem(rng)
    ref = model.copy()
    opt = optim.Adam(model, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    theta = ref.flat_params()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t in range(1, 6):
        ref.set_flat_params(theta)
        _, g = ref.gradient(X, y)
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        theta = theta - 0.01 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-6)
        opt.step(X, y)
        assert np.abs(model.flat_params() - theta).max() < 1e-12


def test_natural_gradient_full_step_is_dense_solve(rng):
    model, X, y = _problem(rng)
    theta0 = model.flat_params().copy()
    _, g = model.gradient(X, y)
    F = np.asarray(fk.fisher(model, X, shape="full").to_dense())
    opt = optim.NaturalGradient(model, lr=0.3, method="full", damping=1e-2)
    opt.step(X, y)
    expected = theta0 - 0.3 * np.linalg.solve(F + 1e-2 * np.eye(g.size), g)
    assert np.abs(model.flat_params() - expected).max() < 1e-10


def test_natural_gradient_ema_blends_statistics(rng):
    model, X, y = _problem(rng)
    X2 = rng.standard_normal((50, 4))
    y2 = rng.integers(0, 3, 50)
    opt = optim.NaturalGradient(model, lr=0.1, method="diag", damping=1e-3, ema=0.3)
    opt.step(X, y)
    c1 = natgrad.curvature(model, X2, method="diag")  # at the parameters of step 2
    first = opt.curvature
    theta = model.flat_params().copy()
    _, g = model.gradient(X2, y2)
    opt.step(X2, y2)
    for a, b, c in zip(first.layers, c1.layers, opt.curvature.layers):
        assert np.allclose(c["mii"], 0.7 * a["mii"] + 0.3 * b["mii"], rtol=1e-13)
    blended = first.blend(c1, 0.3)
    d = natgrad.natural_gradient(model, None, g, method="diag", damping=1e-3, curvature=blended)
    assert np.abs(model.flat_params() - (theta - 0.1 * d)).max() < 1e-13


@pytest.mark.parametrize("make", [
    lambda m: optim.SGD(m, lr=0.5),
    lambda m: optim.Adam(m, lr=0.02),
    lambda m: optim.NaturalGradient(m, lr=0.05, method="unit", damping=1e-2),
    lambda m: optim.NaturalGradient(m, lr=0.05, method="unit-meanfield", damping=1e-2, estimator="bpm"),
    lambda m: optim.NaturalGradient(m, lr=0.05, method="unit-correlated", damping=1e-2, ema=0.5),
    lambda m: optim.NaturalGradient(m, lr=0.05, method="quasi-diagonal", damping=1e-2, estimator="score"),
    lambda m: optim.NaturalGradient(m, lr=0.05, method="diag", damping=1e-2, curvature_every=3),
])
def test_short_training_decreases_loss(make):
    X, y = datasets.spirals(n=150, classes=3, seed=2)
    model = fk.MLP.init([2, 16, 16, 3], activation="tanh", seed=3)
    opt = make(model)
    first = opt.step(X, y)
    for _ in range(25):
        opt.step(X, y)
    assert model.loss(X, y) < 0.9 * first


def test_bad_arguments(rng):
    model, X, y = _problem(rng)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(model, lr=-1)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(model, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(model, lr=0.1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="method"):
        optim.NaturalGradient(model, lr=0.1, method="newton")
    with pytest.raises(ValueError, match="damping"):
        optim.NaturalGradient(model, lr=0.1, damping=-1e-3)
    with pytest.raises(ValueError, match="ema"):
        optim.NaturalGradient(model, lr=0.1, ema=0.0)
    with pytest.raises(TypeError, match="model"):
        optim.Adam("not a model", lr=0.1)


def test_curvature_every_default_per_method_and_validation():
    model = fk.MLP.init([3, 4, 2], "tanh", "categorical", seed=0)
    assert optim.NaturalGradient(model, 0.1, method="unit-correlated").curvature_every == 5
    assert optim.NaturalGradient(model, 0.1, method="unit-meanfield").curvature_every == 1
    assert optim.NaturalGradient(model, 0.1, method="unit-correlated", curvature_every=1).curvature_every == 1
    with pytest.raises(TypeError, match="'curvature_every'"):
        optim.NaturalGradient(model, 0.1, curvature_every=2.5)
    with pytest.raises(ValueError, match="'curvature_every'"):
        optim.NaturalGradient(model, 0.1, curvature_every=0)


def test_natural_gradient_refreshes_every_k_steps_with_new_draws(rng):
    """curvature_every=3 with a sampled estimator, against a hand-written loop: the
    statistics are recomputed at steps 0 and 3 only (at the parameters of those steps), and
    step t draws its labels with seed + t, so the two refreshes use different draws."""
    model, X, y = _problem(rng)
    ref = model.copy()
    kw = dict(method="diag", estimator="score", samples=2)
    opt = optim.NaturalGradient(model, lr=0.2, damping=1e-2, seed=5, curvature_every=3, **kw)
    theta = ref.flat_params().copy()
    curv = None
    for t in range(5):
        ref.set_flat_params(theta)
        if t % 3 == 0:
            curv = natgrad.curvature(ref, X, seed=5 + t, **kw)
        _, g = ref.gradient(X, y)
        theta = theta - 0.2 * natgrad.natural_gradient(ref, None, g, method="diag", damping=1e-2, curvature=curv)
        opt.step(X, y)
        np.testing.assert_allclose(model.flat_params(), theta, rtol=0, atol=1e-12)
    # the draws matter here (else a wrong seed could not fail the loop above): two seeds give
    # two different sets of statistics
    ref.set_flat_params(model.flat_params())
    same_seed = natgrad.curvature(ref, X, seed=5, **kw).layers[0]["mii"]
    assert not np.allclose(same_seed, natgrad.curvature(ref, X, seed=8, **kw).layers[0]["mii"])
