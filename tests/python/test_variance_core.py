"""The compiled variance engine (variance_sum, output_hessians) against exact enumeration
over the head's support with finite-difference Hessians, including deep nets whose
T-diagonals chain A_{l->m} across several layers."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit
from fisherkit._loader import _core
from reference import analytic_jacobian, fd_hessians, forward_one, head_support, model_layers


def _eta(head, h, sigma):
    if head == "categorical":
        p = np.exp(h - h.max())
        return p / p.sum()
    return {"gaussian": h / sigma**2, "bernoulli": 1 / (1 + np.exp(-h)), "poisson": np.exp(h)}[head]


def _enumerated(model, X):
    """Per input, exact single-draw (co)variances of every entry of I1 and I2 by
    enumerating the head's support: returns dict of (N, P, P) arrays v1, v2, c12 and F."""
    layers = model_layers(model)
    head, sigma = model.head, model.sigma
    out = {k: [] for k in ("v1", "v2", "c12", "F")}
    for x in X:
        h = forward_one(layers, model.activations, x)[0]
        J = analytic_jacobian(layers, model.activations, x)
        H = fd_hessians(layers, model.activations, x)
        ys, w, t = head_support(head, h, sigma)
        eta = _eta(head, h, sigma)
        I1, I2 = [], []
        for tt in t:
            tau = tt - eta
            s = J.T @ tau
            I1.append(np.outer(s, s))
            I2.append(-np.einsum("a,aij->ij", tau, H))  # I2 - J^T I J
        I1, I2 = np.array(I1), np.array(I2)
        F = np.einsum("k,kij->ij", w, I1)
        d1, d2 = I1 - F, I2
        out["F"].append(F)
        out["v1"].append(np.einsum("k,kij->ij", w, d1 * d1))
        out["v2"].append(np.einsum("k,kij->ij", w, d2 * d2))
        out["c12"].append(np.einsum("k,kij->ij", w, d1 * d2))
    return {k: np.array(v) for k, v in out.items()}


def _core_sum(model, X, which, shape):
    size = model.layout.size(shape)
    out = np.empty(size)
    _core.variance_sum(model.weights, model.biases, model.activations, model.head, model.sigma,
                       np.ascontiguousarray(X, float), which, shape, 0, out)
    return out


CASES = [
    ([2, 3, 3, 3, 2], "tanh", "categorical"),
    ([2, 3, 2, 3, 2, 3], "sigmoid", "categorical"),   # 4 hidden layers
    ([3, 4, 3, 2], "softplus", "bernoulli"),
    ([2, 3, 3, 3, 2], "erf", "gaussian"),
    ([2, 3, 2, 2], "tanh", "poisson"),
    ([2, 3, 3, 2], "silu", "categorical"),            # phi'' of the activations not above
    ([2, 3, 3, 2], "gelu", "gaussian"),
]


@pytest.mark.parametrize("sizes,act,head", CASES, ids=lambda v: str(v))
def test_diag_and_unit_match_enumeration(sizes, act, head):
    model = fisherkit.MLP.init(sizes, act, head, seed=1, bias_std=0.3, sigma=0.9,
                               weight_std=0.9 if head == "poisson" else 1.4)
    X = np.random.default_rng(2).standard_normal((3, sizes[0]))
    ref = _enumerated(model, X)
    idx = fisherkit.matrices.unit_index(model.sizes)
    for which in ("v1", "v2", "c12", "fsq"):
        R = ref["F"] ** 2 if which == "fsq" else ref[which]
        total = R.sum(0)
        diag = _core_sum(model, X, which, "diag")
        tol = 1e-6 if which in ("v2", "c12") else 1e-10  # finite-difference Hessians
        # c12 is identically 0 for the Gaussian head: compare it on the scale of v1 and v2
        scale = max(np.abs(np.diag(ref[k].sum(0))).max() for k in ("v1", "v2")) if which == "c12" \
            else np.abs(np.diag(total)).max()
        np.testing.assert_allclose(diag, np.diag(total), rtol=tol, atol=tol * scale)
        unit = _core_sum(model, X, which, "unit")
        off = 0
        for ix in idx:
            n_out, k = ix.shape
            blocks = unit[off:off + n_out * k * k].reshape(n_out, k, k)
            off += n_out * k * k
            np.testing.assert_allclose(blocks, total[ix[:, :, None], ix[:, None, :]], rtol=tol, atol=tol * scale)


def test_output_hessians_match_finite_differences():
    model = fisherkit.MLP.init([2, 3, 3, 3, 2], "tanh", "categorical", seed=3, bias_std=0.3)
    X = np.random.default_rng(4).standard_normal((3, 2))
    P, C = model.n_params, model.output_dim
    out = np.empty((3, C * P * P))
    _core.output_hessians(model.weights, model.biases, model.activations, X, out)
    for n in range(3):
        ref = fd_hessians(model_layers(model), model.activations, X[n])
        np.testing.assert_allclose(out[n].reshape(C, P, P), ref, rtol=1e-7, atol=1e-8)


def test_float32_and_bad_arguments():
    m64 = fisherkit.MLP.init([4, 6, 5, 3], "tanh", "categorical", seed=5)
    m32 = fisherkit.MLP(m64.layers, m64.activations, "categorical", dtype=np.float32)
    X = np.random.default_rng(6).standard_normal((40, 4))
    for which in ("v1", "v2", "c12"):
        a = _core_sum(m64, X, which, "diag")
        out = np.empty(m32.n_params, np.float32)
        _core.variance_sum(m32.weights, m32.biases, m32.activations, "categorical", 1.0,
                           X.astype(np.float32), which, "diag", 0, out)
        big = np.abs(a) > 1e-3 * np.abs(a).max()
        np.testing.assert_allclose(out[big], a[big], rtol=1e-4)
    with pytest.raises(ValueError, match="unknown moment"):
        _core_sum(m64, X, "v3", "diag")
    with pytest.raises(ValueError, match="'diag' and 'unit'"):
        _core_sum(m64, X, "v1", "layer")
