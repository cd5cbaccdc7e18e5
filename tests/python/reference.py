"""Slow, obviously-correct float64 references for the tests: explicit per-sample loops,
dense matrices and central finite differences. Independent of fisherkit's engine: NumPy
only (the variance-sum reference at the end also uses fisherkit's head-moment contractions,
which test_moments checks against enumeration), with fisherkit's conventions: z_l = W_l a_{l-1}
+ b_l, h = z_L, parameters flattened per layer as W_l row-major then b_l."""
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
    if name == "gelu":
        cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        pdf = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        return z * cdf, cdf + z * pdf, pdf * (2 - z * z)
    if name == "silu":
        s = 1 / (1 + np.exp(-z))
        return z * s, s + z * s * (1 - s), s * (1 - s) * (2 + z * (1 - 2 * s))
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


# ----------------------------------------------------------------------------- Fisher estimators
def unit_index(sizes):
    """Per layer (n_out, n_in + 1): the flat index of each unit block's entries (row u of W_l,
    then b_l[u]), written out from the flattening convention."""
    idx, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = off + np.arange(n_out)[:, None] * n_in + np.arange(n_in)[None, :]
        idx.append(np.concatenate([w, off + n_out * n_in + np.arange(n_out)[:, None]], axis=1))
        off += n_out * n_in + n_out
    return idx


def t_stat(head, y, sigma=1.0, C=None):
    y = np.atleast_1d(np.asarray(y, float))
    if head == "categorical":
        e = np.zeros(C)
        e[int(y[0])] = 1
        return e
    return y / sigma**2 if head == "gaussian" else y


def eta(head, h, sigma=1.0):
    if head == "categorical":
        p = np.exp(h - h.max())
        return p / p.sum()
    if head == "gaussian":
        return h / sigma**2
    if head == "bernoulli":
        return 1 / (1 + np.exp(-h))
    return np.exp(h)


def ref_parts(model, X):
    """Per input: J (C x P), I(h) (C x C), H (C x P x P), h."""
    layers = model_layers(model)
    out = []
    for x in X:
        h = forward_one(layers, model.activations, x)[0]
        out.append((analytic_jacobian(layers, model.activations, x), head_cov(model.head, h, model.sigma),
                    fd_hessians(layers, model.activations, x), h))
    return out


def ref_exact(parts):
    return np.mean([J.T @ I @ J for J, I, _, _ in parts], axis=0)


def ref_sampled(model, parts, draws, estimator):
    """I1 or I2 from the given draws (N x S label rows)."""
    C = model.output_dim
    acc = []
    for (J, I, H, h), ys in zip(parts, draws):
        mats = []
        for y in ys:
            tau = t_stat(model.head, y, model.sigma, C) - eta(model.head, h, model.sigma)
            if estimator == "score":
                s = J.T @ tau
                mats.append(np.outer(s, s))
            else:
                mats.append(J.T @ I @ J - np.einsum("a,aij->ij", tau, H))
        acc.append(np.mean(mats, axis=0))
    return np.mean(acc, axis=0)


def restrict(dense, sizes, shape):
    """The reference dense matrix reduced to the structure of `shape` (block diagonal)."""
    P = dense.shape[0]
    mask = np.zeros((P, P), bool)
    if shape == "full":
        mask[:] = True
    elif shape == "diag":
        mask[np.diag_indices(P)] = True
    elif shape == "layer":
        off = 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            d = n_out * (n_in + 1)
            mask[off:off + d, off:off + d] = True
            off += d
    else:
        for ix in unit_index(sizes):
            mask[ix[:, :, None], ix[:, None, :]] = True
    return np.where(mask, dense, 0.0)



# ----------------------------------------------------------------------------- variance sums
from dataclasses import dataclass  # noqa: E402

from fisherkit._loader import _core  # noqa: E402


def _vr_model64(model):
    import fisherkit

    host = lambda a: a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)  # noqa: E731
    return fisherkit.MLP([(host(W), host(b)) for W, b in model.layers], model.activations, model.head,
                         sigma=model.sigma, dtype=np.float64)


def _vr_chunks(n, per_input_bytes, chunk):
    m = int(chunk) if chunk else max(1, (64 << 20) // max(per_input_bytes, 1))
    for a in range(0, n, m):
        yield slice(a, min(n, a + m))


@dataclass
class _Layer:
    """Per-input factors of one layer for a chunk of m inputs (float64):
    abar (m, n_in+1), G = dh/dz_l (m, C, n_l), Tdiag = T_l[c, u, u] (m, C, n_l) or None."""

    abar: np.ndarray
    G: np.ndarray
    Tdiag: np.ndarray | None


def _vr_act(name, z):
    return _act(name, z)


def _factors(m64, X: np.ndarray, need_T: bool):
    """Natural parameters h (m, C) and per-layer factors (docs/maths/variance.rst#variance-per-unit-scalars): G_L = I,
    G_l = (G_{l+1} W_{l+1}) diag(phi'_l), and the output-Hessian diagonals without the full
    T_l: diag(T_l[c]) = sum_{m >= l} (A_{l->m} o A_{l->m})^T v_m(c) with
    v_m(c) = (G_{m+1}[c] W_{m+1}) o phi''_m and A_{l->m} = dz_m/dz_l (A_{l->l} = I,
    A_{l->l+1} = W_{l+1} D_l): O(C n^2) per input and layer pair, plus O(n^3) per deeper
    link of the chain, independent of C."""
    Ws = [np.asarray(W) for W in m64.weights]
    bs = [np.asarray(b) for b in m64.biases]
    acts = m64.activations
    L = len(Ws)
    a = X
    abars, zs = [], []
    for l in range(L):
        abars.append(np.concatenate([a, np.ones((a.shape[0], 1))], axis=1))
        z = a @ Ws[l].T + bs[l]
        zs.append(z)
        if l < L - 1:
            a = _vr_act(acts[l], z)[0]
    h = zs[-1]
    m, C = h.shape
    G = np.broadcast_to(np.eye(C), (m, C, C))
    Gs: list[np.ndarray] = [np.ascontiguousarray(G)] * L
    d1s: list[np.ndarray] = [np.empty(0)] * L
    vs: list[np.ndarray] = [np.empty(0)] * L
    for l in range(L - 2, -1, -1):
        _, d1, d2 = _vr_act(acts[l], zs[l])
        M = G @ Ws[l + 1]  # (m, C, n_l)
        G = M * d1[:, None, :]
        Gs[l], d1s[l] = G, d1
        if need_T:
            vs[l] = M * d2[:, None, :]
    layers = []
    for l in range(L):
        Td = None
        if need_T:
            if l == L - 1:
                Td = np.zeros((m, C, C))  # T_L = 0: the output layer is affine in its parameters
            else:
                Td = vs[l].copy()
                A = None  # A_{l->k} (m, n_k, n_l)
                for k in range(l + 1, L - 1):
                    Wd = Ws[k][None, :, :] * d1s[k - 1][:, None, :]  # W_k D_{k-1}
                    A = Wd if A is None else Wd @ A
                    Td += np.einsum("mkn,mck->mcn", A * A, vs[k], optimize=True)
        layers.append(_Layer(abars[l], Gs[l], Td))
    return h, layers


def _unit_scalars(m64, h: np.ndarray, lay: _Layer) -> tuple[np.ndarray, ...]:
    """q, r (and w, c when Tdiag is known), each (m, n_l), from the head-moment binding."""
    m, C, n = lay.G.shape
    q, r = np.empty((m, n)), np.empty((m, n))
    w = np.empty((m, n)) if lay.Tdiag is not None else None
    c = np.empty((m, n)) if lay.Tdiag is not None else None
    Td = None if lay.Tdiag is None else lay.Tdiag.reshape(m, C * n)
    _core.head_unit_scalars(m64.head, m64.sigma, h, np.ascontiguousarray(lay.G).reshape(m, C * n), Td, q, r, w, c)
    return q, r, w, c


def _per_unit_bytes(model, need_T: bool) -> int:
    C = model.output_dim
    n = max(model.sizes)
    return 8 * (3 * n * n * int(need_T) + 6 * C * n + 4 * sum(model.sizes))


def variance_sum_reference(model, X: np.ndarray, which: str, shape: str, chunk: int | None) -> np.ndarray:
    """Float64 NumPy reference of the compiled variance sums: the SUM over inputs of the
    per-input, single-draw element-wise quantity `which` (v1, v2, c12, fsq) in the flat layout
    of `shape` (diag or unit), from an explicit NumPy backpropagation of G_l = dh/dz_l and the
    output-Hessian diagonals (the per-unit scalars from the head moment contractions, which
    test_moments checks against enumeration)."""
    m64 = _vr_model64(model)
    need_T = which in ("v2", "c12")
    geo = list(zip(model.sizes[1:], model.sizes[:-1]))
    acc = [np.zeros((o, i + 1)) if shape == "diag" else np.zeros((o, i + 1, i + 1)) for o, i in geo]
    for sl in _vr_chunks(X.shape[0], _per_unit_bytes(model, need_T), chunk):
        h, layers = _factors(m64, X[sl], need_T)
        for l, lay in enumerate(layers):
            q, r, w, c = _unit_scalars(m64, h, lay)
            s = {"v1": r, "v2": w, "c12": c, "fsq": q * q}[which]
            a2 = lay.abar * lay.abar
            if shape == "diag":
                acc[l] += s.T @ (a2 * a2)
            else:
                acc[l] += np.einsum("nu,nj,nk->ujk", s, a2, a2, optimize=True)
    return _flatten(acc, shape)


def _flatten(acc: list[np.ndarray], shape: str) -> np.ndarray:
    """Per-layer (n_out, n_in+1) [diag] or (n_out, k, k) [unit] arrays -> fisher's flat layout."""
    parts = []
    for blk in acc:
        if shape == "diag":
            parts += [blk[:, :-1].ravel(), blk[:, -1]]
        else:
            parts.append(blk.ravel())
    return np.concatenate(parts)
