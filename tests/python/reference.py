"""Slow, obviously-correct float64 references for the tests: explicit per-sample loops,
dense matrices and central finite differences. Independent of fisherkit's engine: they
use only NumPy and the conventions of MATH.md."""
from __future__ import annotations

import math
from itertools import product

import numpy as np


def _act(name, z):
    """phi, phi', phi'' by hand."""
    if name == "identity":
        return z, np.ones_like(z), np.zeros_like(z)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(float), np.zeros_like(z)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1 - t * t, -2 * t * (1 - t * t)
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)
    if name == "softplus":
        s = 1 / (1 + np.exp(-z))
        return np.log1p(np.exp(z)), s, s * (1 - s)
    if name == "erf":
        g = 2 / math.sqrt(math.pi) * np.exp(-z * z)
        return np.vectorize(math.erf)(z), g, -2 * z * g
    raise ValueError(name)


def unpack(layers, theta):
    out, off = [], 0
    for W, b in layers:
        W2 = theta[off:off + W.size].reshape(W.shape)
        off += W.size
        b2 = theta[off:off + b.size]
        off += b.size
        out.append((W2, b2))
    return out


def flat(layers):
    return np.concatenate([np.concatenate([np.asarray(W, float).ravel(), np.asarray(b, float)]) for W, b in layers])


def forward_one(layers, acts, x):
    """h for one input, plus the per-layer (abar, z) lists."""
    a = np.asarray(x, float)
    abars, zs = [], []
    for l, (W, b) in enumerate(layers):
        abars.append(np.append(a, 1.0))
        z = np.asarray(W, float) @ a + np.asarray(b, float)
        zs.append(z)
        a = _act(acts[l], z)[0] if l < len(layers) - 1 else z
    return a, abars, zs


def forward(layers, acts, X):
    return np.array([forward_one(layers, acts, x)[0] for x in np.asarray(X, float)])


# ----------------------------------------------------------------------------- heads
def head_loglik(head, h, y, sigma=1.0):
    h = np.asarray(h, float)
    if head == "gaussian":
        y = np.asarray(y, float)
        return -np.sum((y - h) ** 2) / (2 * sigma**2) - 0.5 * len(h) * math.log(2 * math.pi * sigma**2)
    if head == "categorical":
        m = h.max()
        return h[int(np.ravel(y)[0])] - (m + math.log(np.exp(h - m).sum()))
    if head == "bernoulli":
        y = np.asarray(y, float)
        return float(np.sum(y * h - np.logaddexp(0, h)))
    if head == "poisson":
        y = np.asarray(y, float)
        return float(np.sum(y * h - np.exp(h) - np.array([math.lgamma(v + 1) for v in y])))
    raise ValueError(head)


def head_support(head, h, sigma=1.0, poisson_max=None):
    """(labels, probabilities or quadrature weights, t(y) rows) over the whole support.
    Gaussian: the 3-point Gauss-Hermite product rule (exact to degree 5 per coordinate)."""
    h = np.asarray(h, float)
    C = len(h)
    if head == "categorical":
        p = np.exp(h - h.max())
        p /= p.sum()
        return [np.array([c]) for c in range(C)], p, np.eye(C)
    if head == "bernoulli":
        p = 1 / (1 + np.exp(-h))
        ys = [np.array(v, float) for v in product([0.0, 1.0], repeat=C)]
        w = np.array([np.prod(np.where(v == 1, p, 1 - p)) for v in ys])
        return ys, w, np.array(ys)
    if head == "poisson":
        lam = np.exp(h)
        kmax = poisson_max or int(lam.max() + 12 * math.sqrt(lam.max()) + 30)
        ks = np.arange(kmax)
        pm = [np.exp(k_ * 0 + ks * math.log(l) - l - np.array([math.lgamma(k + 1) for k in ks])) for k_, l in zip(range(C), lam)]
        ys, w = [], []
        for idx in product(range(kmax), repeat=C):
            ys.append(np.array(idx, float))
            w.append(np.prod([pm[c][i] for c, i in enumerate(idx)]))
        return ys, np.array(w), np.array(ys)
    if head == "gaussian":
        nodes = np.array([0.0, math.sqrt(3), -math.sqrt(3)])
        wts = np.array([2 / 3, 1 / 6, 1 / 6])
        ys, w = [], []
        for idx in product(range(3), repeat=C):
            y = h + sigma * nodes[list(idx)]
            ys.append(y)
            w.append(np.prod(wts[list(idx)]))
        return ys, np.array(w), np.array(ys) / sigma**2
    raise ValueError(head)


def head_cov(head, h, sigma=1.0):
    ys, w, t = head_support(head, h, sigma)
    mu = w @ t
    tc = t - mu
    return (tc * w[:, None]).T @ tc


# ----------------------------------------------------------------------------- derivatives
def fd_jacobian(layers, acts, x, eps=1e-6):
    """dh/dtheta (C x P) by central differences."""
    theta = flat(layers)
    cols = []
    for i in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        hp = forward_one(unpack(layers, tp), acts, x)[0]
        hm = forward_one(unpack(layers, tm), acts, x)[0]
        cols.append((hp - hm) / (2 * eps))
    return np.array(cols).T


def analytic_jacobian(layers, acts, x):
    """dh/dtheta (C x P) by explicit per-sample backpropagation of each output row."""
    h, abars, zs = forward_one(layers, acts, x)
    L = len(layers)
    C = len(h)
    rows = []
    for c in range(C):
        delta = np.zeros(C)
        delta[c] = 1.0
        grads = [None] * L
        for l in range(L - 1, -1, -1):
            grads[l] = (np.outer(delta, abars[l][:-1]), delta.copy())
            if l > 0:
                delta = (np.asarray(layers[l][0], float).T @ delta) * _act(acts[l - 1], zs[l - 1])[1]
        rows.append(np.concatenate([np.concatenate([gW.ravel(), gb]) for gW, gb in grads]))
    return np.array(rows)


def fd_hessians(layers, acts, x, eps=1e-5):
    """d^2 h_c / dtheta^2 (C x P x P) by central differences of the analytic Jacobian."""
    theta = flat(layers)
    P = theta.size
    C = len(forward_one(layers, acts, x)[0])
    H = np.zeros((C, P, P))
    for i in range(P):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        Jp = analytic_jacobian(unpack(layers, tp), acts, x)
        Jm = analytic_jacobian(unpack(layers, tm), acts, x)
        H[:, :, i] = (Jp - Jm) / (2 * eps)
    return 0.5 * (H + H.transpose(0, 2, 1))


def nll_grad(layers, acts, head, x, y, sigma=1.0):
    """Gradient of -log p(y|x) via the chain rule J^T (eta - t(y)), J analytic."""
    h = forward_one(layers, acts, x)[0]
    J = analytic_jacobian(layers, acts, x)
    return J.T @ residual(head, h, y, sigma)


def residual(head, h, y, sigma=1.0):
    """eta(h) - t(y), by hand."""
    h = np.asarray(h, float)
    if head == "gaussian":
        return (h - np.asarray(y, float)) / sigma**2
    if head == "categorical":
        p = np.exp(h - h.max())
        p /= p.sum()
        e = np.zeros_like(h)
        e[int(np.ravel(y)[0])] = 1
        return p - e
    if head == "bernoulli":
        return 1 / (1 + np.exp(-h)) - np.asarray(y, float)
    if head == "poisson":
        return np.exp(h) - np.asarray(y, float)
    raise ValueError(head)


def model_layers(model):
    return [(np.asarray(W, float), np.asarray(b, float)) for W, b in model.layers]
