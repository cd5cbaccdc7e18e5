"""Property-based tests (hypothesis) of the public API.

Random architectures (widths including 1 and primes), activations, heads, dtypes, input
dtypes and memory layouts are checked against a small explicit NumPy reference written in
this file (per-sample loops, hand-written backpropagation, finite differences). Bad inputs
must raise a clean ValueError / TypeError / MemoryError whose message names the argument.

Tolerances are not one hard-coded number: the reference also propagates a first-order
rounding-error bound (unit roundoff ``eps`` of the model's dtype, dot products of length n
cost (n + 2) eps of the absolute magnitudes, activations are Lipschitz with constant <= 1.13,
their second derivatives are bounded), and a result must lie within a small multiple of
that bound. A wrong formula, a wrong parameter order or a stride bug is off by O(1), far
outside it; float32 rounding is inside it.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fisherkit  # noqa: E402
from fisherkit import heads  # noqa: E402

ACTS = ("identity", "relu", "tanh", "sigmoid", "softplus", "erf")
SMOOTH_ACTS = ("identity", "tanh", "sigmoid", "softplus", "erf")
HEADS = ("gaussian", "categorical", "bernoulli", "poisson")
DTYPES = (np.float32, np.float64)
LAYOUTS = ("c", "fortran", "transposed", "step", "reversed", "readonly", "list")

# Modest example counts and no deadline: CI runs this file on two slow shared cores.
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ERRORS = (ValueError, TypeError)

# ------------------------------------------------------------------------------------------
# The explicit float64 reference, with a first-order bound on the engine's rounding error.
# ------------------------------------------------------------------------------------------
_SQRT_PI_2 = 2.0 / math.sqrt(math.pi)
# Lipschitz constant of phi and a bound on |phi''| (relu: handled as a possible kink flip).
_LIP = {"identity": 1.0, "relu": 1.0, "tanh": 1.0, "sigmoid": 0.25, "softplus": 1.0, "erf": _SQRT_PI_2}
_D2 = {"identity": 0.0, "relu": 0.0, "tanh": 0.77, "sigmoid": 0.1, "softplus": 0.25, "erf": 0.97}


def phi(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi(z), phi'(z)) element by element; relu'(0) = 0 as documented."""
    if name == "identity":
        return z.copy(), np.ones_like(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0), (z > 0).astype(float)
    if name == "tanh":
        t = np.array([math.tanh(v) for v in z])
        return t, 1.0 - t * t
    if name == "sigmoid":
        s = np.array([1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v)) for v in z])
        return s, s * (1.0 - s)
    if name == "softplus":
        f = np.array([max(v, 0.0) + math.log1p(math.exp(-abs(v))) for v in z])
        s = np.array([1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v)) for v in z])
        return f, s
    if name == "erf":
        return np.array([math.erf(v) for v in z]), _SQRT_PI_2 * np.exp(-z * z)
    raise AssertionError(name)


def head_terms(head: str, h: np.ndarray, y: np.ndarray, sigma: float):
    """log p(y|h), a magnitude for its rounding, the residual r = d(-log p)/dh, and the
    Lipschitz constant of r in h (per output), all in float64."""
    C = h.size
    if head == "gaussian":
        s2 = sigma * sigma
        ll = -0.5 * np.sum((y - h) ** 2) / s2 - 0.5 * C * math.log(2 * math.pi * s2)
        mag = 0.5 * np.sum((y - h) ** 2) / s2 + 0.5 * C * abs(math.log(2 * math.pi * s2)) + np.sum(np.abs(y) + np.abs(h)) / s2
        return ll, mag, (h - y) / s2, np.full(C, 1.0 / s2)
    if head == "categorical":
        k = int(y[0])
        m = h.max()
        lse = m + math.log(np.sum(np.exp(h - m)))
        p = np.exp(h - lse)
        r = p.copy()
        r[k] -= 1.0
        return h[k] - lse, abs(h[k]) + abs(lse) + C, r, np.full(C, 2.0)
    if head == "bernoulli":
        sp = np.maximum(h, 0) + np.log1p(np.exp(-np.abs(h)))
        s = 1.0 / (1.0 + np.exp(-h))
        ll = np.sum(y * h - sp)
        return ll, np.sum(np.abs(y * h) + sp), s - y, np.full(C, 0.25)
    if head == "poisson":
        lg = np.array([math.lgamma(v + 1.0) for v in y])
        ll = np.sum(y * h - np.exp(h) - lg)
        return ll, np.sum(np.abs(y * h) + np.exp(h) + lg), np.exp(h) - y, 1.01 * np.exp(h)
    raise AssertionError(head)


class Ref:
    """Float64 reference for one model and one input row, with error bounds for the
    engine's arithmetic in unit roundoff `eps`."""

    def __init__(self, model: fisherkit.MLP, x: np.ndarray):
        self.Ws = [np.asarray(W, dtype=np.float64) for W in model.weights]
        self.bs = [np.asarray(b, dtype=np.float64) for b in model.biases]
        self.acts = model.activations
        self.eps = float(np.finfo(model.dtype).eps)
        eps = self.eps
        L = len(self.Ws)
        a = np.asarray(x, dtype=np.float64)
        ea = np.zeros_like(a)
        self.a, self.ea, self.z, self.ez = [a], [ea], [], []
        for l in range(L):
            W, b = self.Ws[l], self.bs[l]
            aW = np.abs(W)
            z = np.array([sum(W[u, j] * a[j] for j in range(a.size)) + b[u] for u in range(W.shape[0])])
            ez = aW @ ea + (W.shape[1] + 2) * eps * (aW @ np.abs(a) + np.abs(b))
            self.z.append(z)
            self.ez.append(ez)
            if l < L - 1:
                a, _ = phi(self.acts[l], z)
                ea = _LIP[self.acts[l]] * ez + 4 * eps * (np.abs(a) + 1e-300)
                self.a.append(a)
                self.ea.append(ea)
        self.h = self.z[-1]
        self.eh = self.ez[-1]

    def backward(self, r: np.ndarray, er: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat gradient (canonical order: per layer W row-major, then b) of r . h with
        respect to the parameters, and a bound on its rounding error given |dr| <= er."""
        eps = self.eps
        L = len(self.Ws)
        d, ed = np.asarray(r, float), np.asarray(er, float)
        parts: list = [None] * L
        for l in range(L - 1, -1, -1):
            a, ea = self.a[l], self.ea[l]
            gW = np.outer(d, a)
            egW = np.outer(ed, np.abs(a)) + np.outer(np.abs(d), ea) + 2 * eps * np.abs(gW)
            parts[l] = (gW.ravel(), egW.ravel(), d.copy(), ed.copy())
            if l == 0:
                break
            W = self.Ws[l]
            back = W.T @ d
            eback = np.abs(W).T @ ed + (W.shape[0] + 2) * eps * (np.abs(W).T @ np.abs(d))
            z, ez = self.z[l - 1], self.ez[l - 1]
            _, p1 = phi(self.acts[l - 1], z)
            if self.acts[l - 1] == "relu":
                ep1 = np.where(np.abs(z) <= 4 * ez, 1.0, 0.0)  # the kink may flip
            else:
                ep1 = _D2[self.acts[l - 1]] * 4 * ez + 8 * eps * np.abs(p1) + 8 * eps
            d_new = back * p1
            ed = eback * np.abs(p1) + (np.abs(back) + eback) * ep1 + eps * np.abs(d_new)
            d = d_new
        g = np.concatenate([np.concatenate([gw, gb]) for gw, _, gb, _ in parts])
        eg = np.concatenate([np.concatenate([egw, egb]) for _, egw, _, egb in parts])
        return g, eg

    def head(self, head: str, y: np.ndarray, sigma: float):
        """(log p, its error bound, residual, residual error bound)."""
        eps = self.eps
        C = self.h.size
        ll, mag, r, lip = head_terms(head, self.h, np.asarray(y, float), sigma)
        ell = float(np.sum(np.abs(r) * 2 * self.eh) + 8 * (C + 4) * eps * (mag + 1.0))
        yf = np.asarray(y, float)
        if head == "gaussian":
            scale = (np.abs(self.h) + np.abs(yf)) / sigma**2
        elif head == "poisson":
            scale = np.exp(self.h) + np.abs(yf)
        else:  # probabilities minus a 0/1 target
            scale = np.ones(C)
        er = lip * 2 * np.max(self.eh) + 8 * (C + 2) * eps * scale
        return ll, ell, r, er


def within(got, want, bound, what: str, factor: float = 4.0, dtype=None) -> None:
    """|got - want| <= factor * bound + floor elementwise, with a readable failure. The floor
    (a thousand of the smallest subnormals of `dtype`, default got's dtype) absorbs the
    absolute rounding of subnormal intermediates, which relative bounds do not cover."""
    dtype = np.dtype(dtype if dtype is not None else np.asarray(got).dtype)
    floor = 1e3 * float(np.finfo(dtype).smallest_subnormal) if dtype.kind == "f" else 0.0
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    lim = factor * np.asarray(bound, dtype=np.float64) + max(floor, 1e-300)
    err = np.abs(got - want)
    bad = ~(err <= lim)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} entries off; worst err {err[bad].max():.3e} vs allowed "
        f"{lim[bad][np.argmax(err[bad])]:.3e} (got {got[bad][:4]}, want {want[bad][:4]})"
    )


def mentions(exc: BaseException, name: str) -> bool:
    """The message names argument `name`: quoted, as the library does ('X', 'y', 'H'), or
    for longer names at least as a whole word ("unknown head ...")."""
    if f"'{name}'" in str(exc):
        return True
    return len(name) > 2 and re.search(rf"\b{re.escape(name)}\b", str(exc)) is not None


# ------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------
WIDTHS = st.one_of(st.sampled_from([1, 2, 3, 5, 7, 11, 13]), st.integers(1, 9))


@st.composite
def models(draw, heads_=HEADS, dtypes=DTYPES, acts=ACTS, max_layers=4):
    head = draw(st.sampled_from(heads_))
    n_layers = draw(st.integers(1, max_layers))
    sizes = [draw(WIDTHS) for _ in range(n_layers + 1)]
    if head == "categorical" and sizes[-1] < 2:
        sizes[-1] = draw(st.sampled_from([2, 3, 5]))
    if n_layers > 1 and draw(st.booleans()):
        activation = [draw(st.sampled_from(acts)) for _ in range(n_layers - 1)]
    else:
        activation = draw(st.sampled_from(acts))
    return fisherkit.MLP.init(
        sizes, activation, head,
        seed=draw(st.integers(0, 2**32 - 1)),
        dtype=draw(st.sampled_from(dtypes)),
        sigma=draw(st.sampled_from([1.0, 0.37, 2.5])),
        bias_std=draw(st.sampled_from([0.0, 0.5])),
        weight_std=draw(st.sampled_from([None, 1.5])),
    )


def inputs(n: int, d: int):
    """Float values exactly representable in float32 (so conversion to the model's dtype is
    exact), with hypothesis' favourite edge cases (0, +-1, subnormals, the range ends)."""
    return hnp.arrays(np.float64, (n, d), elements=st.floats(-3, 3, width=32, allow_subnormal=True))


def labels(head: str, n: int, c: int):
    if head == "categorical":
        return hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1))
    if head == "bernoulli":
        return hnp.arrays(np.float64, (n, c), elements=st.sampled_from([0.0, 1.0]))
    if head == "poisson":
        return hnp.arrays(np.float64, (n, c), elements=st.integers(0, 7).map(float))
    return hnp.arrays(np.float64, (n, c), elements=st.floats(-3, 3, width=32))


def relayout(A: np.ndarray, kind: str):
    """The same values as A in another memory layout (or container)."""
    A = np.asarray(A)
    if kind == "c" or A.ndim == 0:
        return A
    if kind == "fortran":
        return np.asfortranarray(A)
    if kind == "transposed":
        return np.ascontiguousarray(A.T).T
    if kind == "step":
        big = np.zeros(tuple(2 * s + 1 for s in A.shape[:1]) + tuple(3 * s + 2 for s in A.shape[1:]), A.dtype)
        idx = (slice(1, None, 2),) + (slice(2, None, 3),) * (A.ndim - 1)
        big[idx] = A
        return big[idx]
    if kind == "reversed":
        rev = (slice(None, None, -1),) * A.ndim
        return np.ascontiguousarray(A[rev])[rev]
    if kind == "readonly":
        B = A.copy()
        B.flags.writeable = False
        return B
    if kind == "list":
        return A.tolist()
    raise AssertionError(kind)


@st.composite
def problems(draw, heads_=HEADS, dtypes=DTYPES, acts=ACTS, max_n=9):
    m = draw(models(heads_, dtypes, acts))
    n = draw(st.integers(1, max_n))
    X = draw(inputs(n, m.input_dim))
    y = draw(labels(m.head, n, m.output_dim))
    return m, X, y


# ------------------------------------------------------------------------------------------
# Correct answers
# ------------------------------------------------------------------------------------------
@MEDIUM
@given(problems())
def test_forward_predict_loglik_match_reference(prob):
    m, X, y = prob
    eps = float(np.finfo(m.dtype).eps)
    H = m.forward(X)
    assert H.dtype == m.dtype and H.shape == (X.shape[0], m.output_dim)
    P = m.predict(X)
    assert P.dtype == m.dtype and P.shape == H.shape
    LL = m.log_likelihood(X, y)
    assert LL.dtype == m.dtype and LL.shape == (X.shape[0],)
    for i in range(X.shape[0]):
        ref = Ref(m, X[i])
        within(H[i], ref.h, ref.eh, f"forward row {i}")
        ll, ell, _, _ = ref.head(m.head, np.atleast_1d(y[i]), m.sigma)
        within(LL[i], ll, ell, f"log_likelihood row {i}")
        h, eh = ref.h, ref.eh
        if m.head == "gaussian":
            mean, emean = h, eh
        elif m.head == "categorical":
            mean = np.exp(h - h.max()) / np.sum(np.exp(h - h.max()))
            emean = 2 * np.max(eh) + 8 * h.size * eps * (mean + 1e-30)
        elif m.head == "bernoulli":
            mean = 1 / (1 + np.exp(-h))
            emean = 0.25 * eh + 8 * eps * mean
        else:
            mean = np.exp(h)
            emean = 1.01 * mean * eh + 8 * eps * mean
        within(P[i], mean, emean, f"predict row {i}")
    assert m.loss(X, y) == pytest.approx(-float(np.mean(LL.astype(np.float64))), rel=8 * eps, abs=8 * eps)


@MEDIUM
@given(problems())
def test_gradients_and_jacobian_match_backprop_reference(prob):
    m, X, y = prob
    N, C, P = X.shape[0], m.output_dim, m.n_params
    G = m.per_sample_grads(X, y)
    J = m.jacobian(X)
    loss, g = m.gradient(X, y)
    assert G.shape == (N, P) and G.dtype == m.dtype
    assert J.shape == (N, C, P) and J.dtype == m.dtype
    assert g.shape == (P,) and g.dtype == m.dtype and isinstance(loss, float)
    eps = float(np.finfo(m.dtype).eps)
    gsum, egsum, llsum = np.zeros(P), np.zeros(P), 0.0
    for i in range(N):
        ref = Ref(m, X[i])
        _, _, r, er = ref.head(m.head, np.atleast_1d(y[i]), m.sigma)
        gi, egi = ref.backward(r, er)
        within(G[i], gi, egi, f"per_sample_grads row {i}")
        gsum += gi
        egsum += egi + np.abs(gi) * eps * N
        llsum += ref.head(m.head, np.atleast_1d(y[i]), m.sigma)[0]
        for c in range(C):
            e = np.zeros(C)
            e[c] = 1.0
            jc, ejc = ref.backward(e, np.zeros(C))
            within(J[i, c], jc, ejc, f"jacobian row {i}, output {c}")
    within(g, gsum / N, egsum / N, "gradient")
    # per_sample_grads averages to gradient(); the loss it returns is loss().
    within(G.astype(np.float64).mean(axis=0), g, 2 * egsum / N, "mean of per_sample_grads vs gradient",
           dtype=m.dtype)
    assert loss == pytest.approx(m.loss(X, y), rel=16 * eps, abs=16 * eps)
    assert loss == pytest.approx(-llsum / N, rel=1e3 * eps, abs=1e3 * eps * (1 + abs(llsum) / N))


@FAST
@given(problems(dtypes=(np.float64,), acts=SMOOTH_ACTS, max_n=5), st.integers(0, 2**32 - 1))
def test_gradient_and_jacobian_match_finite_differences(prob, seed):
    """Directional central differences in float64 (smooth activations only: a relu kink
    inside the stencil would make the difference quotient meaningless)."""
    m, X, y = prob
    v = np.random.default_rng(seed).standard_normal(m.n_params)
    v /= np.linalg.norm(v)
    theta = m.flat_params().copy()
    step = 1e-5
    plus, minus = m.copy(), m.copy()
    plus.set_flat_params(theta + step * v)
    minus.set_flat_params(theta - step * v)
    _, g = m.gradient(X, y)
    fd = (plus.loss(X, y) - minus.loss(X, y)) / (2 * step)
    # error ~ step^2 |f'''| + eps |f| / step; both far below 1e-5 for these O(1) models.
    assert float(g @ v) == pytest.approx(fd, rel=1e-5, abs=1e-5 * (1 + abs(m.loss(X, y))))
    Jv = np.einsum("ncp,p->nc", m.jacobian(X), v)
    fdJ = (plus.forward(X) - minus.forward(X)) / (2 * step)
    np.testing.assert_allclose(Jv, fdJ, rtol=1e-5, atol=1e-5 * (1 + np.abs(m.forward(X)).max()))


# ------------------------------------------------------------------------------------------
# Layouts, input dtypes, chunking: the same numbers
# ------------------------------------------------------------------------------------------
@MEDIUM
@given(problems(), st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS))
def test_layout_of_inputs_does_not_change_results(prob, xlayout, ylayout):
    """Non-contiguous, Fortran, reversed, read-only and list inputs give bit-for-bit the
    results of the contiguous array (the conversion is exact; the engine sees one layout)."""
    m, X, y = prob
    Xv, yv = relayout(X, xlayout), relayout(y, ylayout)
    X_before = np.array(Xv, copy=True)
    np.testing.assert_array_equal(m.forward(Xv), m.forward(X))
    np.testing.assert_array_equal(m.log_likelihood(Xv, yv), m.log_likelihood(X, y))
    np.testing.assert_array_equal(m.per_sample_grads(Xv, yv), m.per_sample_grads(X, y))
    np.testing.assert_array_equal(m.jacobian(Xv), m.jacobian(X))
    l1, g1 = m.gradient(Xv, yv)
    l0, g0 = m.gradient(X, y)
    assert l1 == l0
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(np.asarray(Xv), X_before)  # inputs are not modified


@MEDIUM
@given(models(), st.integers(1, 7), st.sampled_from(["int64", "int32", "uint8", "bool", "float16", "float32", "float64"]), st.data())
def test_input_dtype_is_converted_exactly_once(m, n, xdtype, data):
    """Integer, boolean, half and the other float dtype are converted to the model's dtype:
    the result equals the result on X.astype(model dtype), bit for bit."""
    if xdtype == "bool":
        X = data.draw(hnp.arrays(np.bool_, (n, m.input_dim)))
    elif xdtype.startswith("int") or xdtype == "uint8":
        X = data.draw(hnp.arrays(np.dtype(xdtype), (n, m.input_dim), elements=st.integers(0, 3)))
    else:
        X = data.draw(hnp.arrays(np.dtype(xdtype), (n, m.input_dim), elements=st.floats(-3, 3, width=16)))
    Xm = X.astype(m.dtype)
    np.testing.assert_array_equal(m.forward(X), m.forward(Xm))
    np.testing.assert_array_equal(m.jacobian(X), m.jacobian(Xm))
    for i in range(n):
        ref = Ref(m, Xm[i].astype(np.float64))
        within(m.forward(X[i:i + 1])[0], ref.h, ref.eh, f"forward of {xdtype} row {i}")


@MEDIUM
@given(problems(), st.sampled_from(["int64", "int32", "uint8", "float32", "float64", "bool"]))
def test_label_dtype_is_converted(prob, ydtype):
    """Labels given as any integer, float or (where 0/1 fits the head) boolean dtype."""
    m, X, y = prob
    if ydtype == "bool":
        if m.head == "categorical":
            y = np.minimum(y, 1)
        elif m.head in ("gaussian", "poisson"):
            y = np.clip(np.round(np.abs(y)), 0, 1)
    if ydtype == "uint8":
        y = np.abs(np.round(y))
    yc = np.asarray(y).astype(ydtype)
    want = m.log_likelihood(X, np.asarray(yc, dtype=np.float64))
    np.testing.assert_array_equal(m.log_likelihood(X, yc), want)
    np.testing.assert_array_equal(m.per_sample_grads(X, yc), m.per_sample_grads(X, np.asarray(yc, dtype=np.float64)))
    if m.head == "categorical":
        np.testing.assert_array_equal(m.log_likelihood(X, yc.reshape(-1, 1)), want)


@MEDIUM
@given(problems(max_n=12), st.sampled_from([1, 2, 3, 5]))
def test_chunking_does_not_change_results(prob, chunk):
    """chunk=k and the default agree to within the rounding bound (BLAS may block
    differently for different row counts, so bit-equality is not promised)."""
    m, X, y = prob
    N = X.shape[0]
    F1, F0 = m.forward(X, chunk=chunk), m.forward(X)
    G1, G0 = m.per_sample_grads(X, y, chunk=chunk), m.per_sample_grads(X, y)
    J1, J0 = m.jacobian(X, chunk=chunk), m.jacobian(X)
    L1, L0 = m.log_likelihood(X, y, chunk=chunk), m.log_likelihood(X, y)
    (l1, g1), (l0, g0) = m.gradient(X, y, chunk=chunk), m.gradient(X, y)
    eps = float(np.finfo(m.dtype).eps)
    egsum = np.zeros(m.n_params)
    for i in range(N):
        ref = Ref(m, X[i])
        within(F1[i], F0[i], 2 * ref.eh, f"forward chunk={chunk} row {i}")
        ll, ell, r, er = ref.head(m.head, np.atleast_1d(y[i]), m.sigma)
        within(L1[i], L0[i], 2 * ell, f"log_likelihood chunk={chunk} row {i}")
        gi, egi = ref.backward(r, er)
        within(G1[i], G0[i], 2 * egi, f"per_sample_grads chunk={chunk} row {i}")
        egsum += egi + np.abs(gi) * eps * N
        for c in range(m.output_dim):
            e = np.zeros(m.output_dim)
            e[c] = 1.0
            jc, ejc = ref.backward(e, np.zeros_like(e))
            within(J1[i, c], J0[i, c], 2 * ejc, f"jacobian chunk={chunk} row {i}")
    within(g1, g0, 2 * egsum / N, f"gradient chunk={chunk}")
    assert l1 == pytest.approx(l0, rel=1e3 * eps, abs=1e3 * eps)


@FAST
@given(problems(max_n=4), st.sampled_from(["jacobian", "per_sample_grads"]), st.integers(0, 64))
def test_memory_budget_refuses_with_memory_error(prob, method, budget):
    m, X, y = prob
    need = X.shape[0] * m.n_params * np.dtype(m.dtype).itemsize
    if method == "jacobian":
        need *= m.output_dim
        call = lambda b: m.jacobian(X, max_bytes=b)  # noqa: E731
    else:
        call = lambda b: m.per_sample_grads(X, y, max_bytes=b)  # noqa: E731
    if need > budget:
        with pytest.raises(MemoryError, match=method):
            call(budget)
    out = call(need)  # exactly the size needed fits
    assert out.shape[0] == X.shape[0]


# ------------------------------------------------------------------------------------------
# Heads
# ------------------------------------------------------------------------------------------
@st.composite
def head_problems(draw):
    head = draw(st.sampled_from(HEADS))
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 6))
    c = draw(st.sampled_from([2, 3, 5, 7] if head == "categorical" else [1, 2, 3, 5, 7]))
    H = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(-6, 6, width=32))).astype(dtype)
    y = draw(labels(head, n, c))
    sigma = draw(st.sampled_from([1.0, 0.37, 2.5]))
    return head, H, y, sigma


@MEDIUM
@given(head_problems(), st.sampled_from(LAYOUTS[:-1]))
def test_heads_match_reference(prob, layout):
    head, H, y, sigma = prob
    eps = float(np.finfo(H.dtype).eps)
    Hv = relayout(H, layout)
    ll = heads.log_likelihood(head, Hv, y, sigma=sigma)
    mean = heads.mean(head, Hv, sigma=sigma)
    cov = heads.covariance(head, Hv, sigma=sigma)
    B = heads.sqrt_covariance(head, Hv, sigma=sigma)
    n, c = H.shape
    assert ll.shape == (n,) and mean.shape == (n, c) and cov.shape == B.shape == (n, c, c)
    assert ll.dtype == mean.dtype == cov.dtype == B.dtype == H.dtype
    for i in range(n):
        h = H[i].astype(np.float64)
        want_ll, mag, r, _ = head_terms(head, h, np.atleast_1d(y[i]).astype(float), sigma)
        within(ll[i], want_ll, 8 * (c + 4) * eps * (mag + 1), f"{head} log_likelihood row {i}")
        if head == "gaussian":
            mu, I = h, np.eye(c) / sigma**2
        elif head == "categorical":
            mu = np.exp(h - h.max()) / np.sum(np.exp(h - h.max()))
            I = np.diag(mu) - np.outer(mu, mu)
        elif head == "bernoulli":
            mu = 1 / (1 + np.exp(-h))
            I = np.diag(mu / (1 + np.exp(h)))  # 1 - mu as sigmoid(-h): no cancellation for h >> 0
        else:
            mu = np.exp(h)
            I = np.diag(mu)
        within(mean[i], mu, 8 * c * eps * (np.abs(mu) + (head == "categorical")), f"{head} mean row {i}")
        scale = np.abs(I).max() + (head == "categorical")
        within(cov[i], I, np.full((c, c), 16 * c * eps * scale), f"{head} covariance row {i}")
        Bi = B[i].astype(np.float64)
        within(Bi @ Bi.T, I, np.full((c, c), 16 * c * eps * (scale + np.abs(Bi).max() ** 2)),
               f"{head} sqrt_covariance row {i}", dtype=H.dtype)


@FAST
@given(head_problems(), st.integers(1, 4), st.integers(0, 2**63 - 1))
def test_head_samples_are_valid_and_counter_based(prob, samples, seed):
    head, H, _, sigma = prob
    n, c = H.shape
    S = heads.sample(head, H, samples=samples, seed=seed, sigma=sigma)
    if head == "categorical":
        assert S.shape == (n, samples) and S.dtype == np.int64
        assert ((S >= 0) & (S < c)).all()
    else:
        assert S.shape == (n, samples, c) and S.dtype == H.dtype
        assert np.isfinite(S).all()
        if head == "bernoulli":
            assert np.isin(S, [0, 1]).all()
        if head == "poisson":
            assert ((S >= 0) & (S == np.round(S))).all()
    # Same seed, same draws; a draw depends on (seed, row, sample), not on the batch.
    np.testing.assert_array_equal(heads.sample(head, H, samples=samples, seed=seed, sigma=sigma), S)
    k = max(1, n // 2)
    np.testing.assert_array_equal(heads.sample(head, H[:k], samples=samples, seed=seed, sigma=sigma), S[:k])
    # Every draw is a valid label for the head's own log-likelihood.
    ys = S[:, 0] if head == "categorical" else S[:, 0, :]
    assert np.isfinite(heads.log_likelihood(head, H, ys, sigma=sigma)).all()


# ------------------------------------------------------------------------------------------
# Bad input: a clean error naming the argument, never a crash
# ------------------------------------------------------------------------------------------
def _call(m: fisherkit.MLP, method: str, X, y):
    if method == "forward":
        return m.forward(X)
    if method == "predict":
        return m.predict(X)
    if method == "jacobian":
        return m.jacobian(X)
    return getattr(m, method)(X, y)


X_METHODS = ("forward", "predict", "jacobian", "log_likelihood", "loss", "gradient", "per_sample_grads")
Y_METHODS = ("log_likelihood", "loss", "gradient", "per_sample_grads")


@MEDIUM
@given(problems(max_n=5), st.sampled_from(X_METHODS), st.sampled_from(
    ["nan", "inf", "-inf", "wide", "narrow", "1d", "3d", "0d", "empty", "complex", "str", "object", "none"]),
    st.data())
def test_bad_X_raises_error_naming_X(prob, method, kind, data):
    m, X, y = prob
    n, d = X.shape
    pos = None
    if kind in ("nan", "inf", "-inf"):
        i = data.draw(st.integers(0, n - 1))
        j = data.draw(st.integers(0, d - 1))
        Xb = X.copy()
        Xb[i, j] = float(kind)
        Xb = relayout(Xb, data.draw(st.sampled_from(LAYOUTS[:-1])))
        first = np.argwhere(~np.isfinite(np.asarray(Xb)))[0]
        pos = f"[{first[0]}, {first[1]}]"
    elif kind == "wide":
        Xb = np.ones((n, d + data.draw(st.integers(1, 3))))
    elif kind == "narrow":
        if d == 1:
            Xb = np.ones((n, 0))
        else:
            Xb = X[:, : data.draw(st.integers(1, d - 1))]
    elif kind == "1d":
        Xb = X[0]
    elif kind == "3d":
        Xb = X[None]
    elif kind == "0d":
        Xb = np.float64(1.0)
    elif kind == "empty":
        Xb = np.zeros((0, d))
    elif kind == "complex":
        Xb = X.astype(np.complex128)
    elif kind == "str":
        Xb = X.astype(str)
    elif kind == "object":
        Xb = np.array([[object()] * d] * n, dtype=object)
    else:
        Xb = None
    with pytest.raises(ERRORS) as info:
        _call(m, method, Xb, y)
    assert mentions(info.value, "X"), str(info.value)
    if pos is not None:
        assert pos in str(info.value), f"{info.value} should point at the first bad entry {pos}"


def _bad_labels(head: str, y: np.ndarray, kind: str, row: int):
    """A label array with one bad row (None where `kind` does not apply to `head`)."""
    yb = np.array(y, dtype=np.float64)
    if kind == "shape_rows":
        return np.concatenate([yb, yb[:1]])
    if kind == "shape_cols":
        return np.ones((y.shape[0], 2)) if head == "categorical" else yb[:, :-1] if yb.shape[1] > 1 else np.ones((y.shape[0], 3))
    if kind == "3d":
        return yb[None, ..., None]
    if kind == "str":
        return yb.astype(str)
    if kind == "none":
        return None
    bad_values = {
        "categorical": {"nan": np.nan, "inf": np.inf, "neg": -1.0, "frac": 0.5, "huge": 1e20},
        "bernoulli": {"nan": np.nan, "inf": np.inf, "neg": -1.0, "frac": 0.5, "too_big": 2.0},
        "poisson": {"nan": np.nan, "inf": np.inf, "neg": -1.0, "frac": 1.5},
        "gaussian": {"nan": np.nan, "inf": -np.inf},
    }[head]
    if kind not in bad_values:
        return None
    if yb.ndim == 1:
        yb[row] = bad_values[kind]
    else:
        yb[row, -1] = bad_values[kind]
    return yb


@MEDIUM
@given(problems(max_n=5), st.sampled_from(Y_METHODS), st.sampled_from(
    ["nan", "inf", "neg", "frac", "too_big", "huge", "class_C", "shape_rows", "shape_cols", "3d", "str", "none"]),
    st.data())
def test_bad_y_raises_error_naming_y(prob, method, kind, data):
    m, X, y = prob
    n = X.shape[0]
    row = data.draw(st.integers(0, n - 1))
    if kind == "class_C":
        if m.head != "categorical":
            return
        yb = np.array(y, dtype=np.int64)
        yb[row] = m.output_dim  # one past the last class
    else:
        yb = _bad_labels(m.head, y, kind, row)
        if yb is None and kind != "none":
            return
    with pytest.raises(ERRORS) as info:
        _call(m, method, X, yb)
    assert mentions(info.value, "y"), str(info.value)
    if kind in ("nan", "inf", "neg", "frac", "too_big", "huge", "class_C"):
        assert f"row {row}" in str(info.value), f"{info.value} should name row {row}"


@FAST
@given(models(), st.integers(1, 4), st.data())
def test_extreme_finite_inputs_never_crash(m, n, data):
    """Any finite input (up to the dtype's largest float): a clean error or an answer of the
    right shape and dtype, for every method. Values the dtype can hold only, so that the
    conversion itself cannot overflow (that case is tested separately)."""
    width = 32 if m.dtype == np.float32 else 64
    X = data.draw(hnp.arrays(np.float64, (n, m.input_dim),
                             elements=st.floats(allow_nan=False, allow_infinity=False, width=width)))
    y = data.draw(labels(m.head, n, m.output_dim))
    shapes = {"forward": (n, m.output_dim), "predict": (n, m.output_dim), "jacobian": (n, m.output_dim, m.n_params),
              "log_likelihood": (n,), "per_sample_grads": (n, m.n_params)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow notes in the reference
        for method in X_METHODS:
            try:
                out = _call(m, method, X, y)
            except (ValueError, TypeError, MemoryError) as exc:
                assert str(exc), method
                continue
            if method == "loss":
                assert isinstance(out, float)
            elif method == "gradient":
                assert isinstance(out[0], float) and out[1].shape == (m.n_params,)
            else:
                assert out.shape == shapes[method] and out.dtype == m.dtype


@FAST
@given(problems(max_n=4), st.sampled_from(["weight", "bias"]), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_non_finite_parameters_are_named(prob, which, value, data):
    m, X, y = prob
    l = data.draw(st.integers(0, m.n_layers - 1))
    layers = [(W.copy(), b.copy()) for W, b in m.layers]
    arr = layers[l][0] if which == "weight" else layers[l][1]
    arr.flat[data.draw(st.integers(0, arr.size - 1))] = value
    name = f"layers[{l}].{which}"
    try:
        bad = fisherkit.MLP(layers, m.activations, m.head, sigma=m.sigma)
    except ValueError as exc:  # refusing at construction is fine too
        assert name in str(exc)
        return
    for method in X_METHODS:
        with pytest.raises(ValueError, match=re.escape(name)):
            _call(bad, method, X, y)


# ------------------------------------------------------------------------------------------
# Bad construction
# ------------------------------------------------------------------------------------------
def _layers(sizes, rng):
    return [(rng.standard_normal((o, i)), rng.standard_normal(o)) for i, o in zip(sizes[:-1], sizes[1:])]


@MEDIUM
@given(st.lists(WIDTHS, min_size=2, max_size=4), st.sampled_from(
    ["bad_act", "bad_act_list", "act_count", "bad_head", "chain", "bias_len", "weight_1d", "weight_3d",
     "bias_2d", "not_pair", "empty", "sigma", "dtype", "categorical_1", "init_sizes"]),
    st.text(min_size=0, max_size=8), st.data())
def test_bad_construction_raises_error_naming_argument(sizes, kind, text, data):
    rng = np.random.default_rng(len(sizes))
    sizes = list(sizes)
    sizes[-1] = max(sizes[-1], 2)
    layers = _layers(sizes, rng)
    n_hidden = len(layers) - 1
    act, head, kw = "tanh", "categorical", {}
    if kind == "bad_act":
        act, name = text if text not in ACTS else text + "?", "activation"
    elif kind == "bad_act_list":
        if n_hidden == 0:
            return
        act = ["relu"] * n_hidden
        k = data.draw(st.integers(0, n_hidden - 1))
        act[k] = text if text not in ACTS else text + "?"
        name = f"activation[{k}]"
    elif kind == "act_count":
        act = ["relu"] * (n_hidden + data.draw(st.sampled_from([-1, 1, 2])))
        if len(act) < 0 or len(act) == n_hidden:
            return
        name = "activation"
    elif kind == "bad_head":
        head, name = (text if text not in HEADS else text + "?"), "head"
    elif kind == "chain":
        if len(layers) < 2:
            return
        k = data.draw(st.integers(1, len(layers) - 1))
        W, b = layers[k]
        layers[k] = (np.ones((W.shape[0], W.shape[1] + data.draw(st.integers(1, 3)))), b)
        name = f"layers[{k}]"
    elif kind == "bias_len":
        k = data.draw(st.integers(0, len(layers) - 1))
        W, b = layers[k]
        layers[k] = (W, np.ones(b.size + 1))
        name = f"layers[{k}].bias"
    elif kind in ("weight_1d", "weight_3d"):
        k = data.draw(st.integers(0, len(layers) - 1))
        W, b = layers[k]
        layers[k] = (W.ravel() if kind == "weight_1d" else W[None], b)
        name = f"layers[{k}].weight"
    elif kind == "bias_2d":
        k = data.draw(st.integers(0, len(layers) - 1))
        W, b = layers[k]
        layers[k] = (W, b[:, None])
        name = f"layers[{k}].bias"
    elif kind == "not_pair":
        k = data.draw(st.integers(0, len(layers) - 1))
        layers[k] = layers[k][0]
        name = f"layers[{k}]"
    elif kind == "empty":
        layers, name = [], "layers"
    elif kind == "sigma":
        kw["sigma"] = data.draw(st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, -1e-300]))
        name = "sigma"
    elif kind == "dtype":
        kw["dtype"] = data.draw(st.sampled_from([np.int64, np.float16, np.complex128, "int32", np.bool_]))
        name = "dtype"
    elif kind == "categorical_1":
        layers[-1] = (layers[-1][0][:1], layers[-1][1][:1])
        name = "categorical"
    else:  # init_sizes
        bad = data.draw(st.sampled_from([[], [3], [3, 0], [0, 2], [2, -1, 2]]))
        with pytest.raises(ValueError, match="'sizes'"):
            fisherkit.MLP.init(bad)
        return
    with pytest.raises(ERRORS) as info:
        fisherkit.MLP(layers, act, head, **kw)
    assert name in str(info.value), f"{info.value!r} should name {name}"


@FAST
@given(head_problems(), st.sampled_from(
    ["unknown", "nan", "1d", "3d", "empty", "no_cols", "str", "y_bad", "y_shape", "samples", "seed", "sigma"]),
    st.data())
def test_heads_bad_input_raises_error_naming_argument(prob, kind, data):
    head, H, y, sigma = prob
    fn = data.draw(st.sampled_from(["log_likelihood", "mean", "covariance", "sqrt_covariance", "sample"]))

    def call(h=head, Hb=H, yb=y, **kw):
        kw.setdefault("sigma", sigma)
        if fn == "log_likelihood":
            return heads.log_likelihood(h, Hb, yb, **kw)
        if fn == "sample":
            return heads.sample(h, Hb, seed=kw.pop("seed", 1), **kw)
        kw.pop("seed", None)
        kw.pop("samples", None)
        return getattr(heads, fn)(h, Hb, **kw)

    expect, kw, args = ERRORS, {}, {}
    if kind == "unknown":
        args["h"], name = head + "x", "head"
    elif kind == "nan":
        Hb = H.copy()
        Hb[data.draw(st.integers(0, H.shape[0] - 1)), 0] = data.draw(st.sampled_from([np.nan, np.inf]))
        args["Hb"], name = Hb, "H"
    elif kind == "1d":
        args["Hb"], name = H[0], "H"
    elif kind == "3d":
        args["Hb"], name = H[None], "H"
    elif kind == "empty":
        args["Hb"], name = H[:0], "H"
    elif kind == "no_cols":
        args["Hb"], name = H[:, :0], "H"
        if head != "categorical":  # consistent labels, so that only H is wrong
            args["yb"] = np.zeros((H.shape[0], 0))
    elif kind == "str":
        args["Hb"], name = H.astype(str), "H"
    elif kind in ("y_bad", "y_shape"):
        if fn != "log_likelihood":
            return
        yb = _bad_labels(head, y, "nan" if kind == "y_bad" else "shape_rows", 0)
        args["yb"], name = yb, "y"
    elif kind == "samples":
        if fn != "sample":
            return
        kw["samples"], name = data.draw(st.sampled_from([0, -3])), "samples"
    elif kind == "seed":
        if fn != "sample":
            return
        kw["seed"], name = -1, "seed"
    else:
        if head != "gaussian":
            return
        kw["sigma"], name = data.draw(st.sampled_from([0.0, -2.0, np.nan, np.inf])), "sigma"
    with pytest.raises(expect) as info:
        call(**args, **kw)
    assert mentions(info.value, name), f"{info.value!r} should name {name}"


@pytest.mark.parametrize("which", ["weight", "bias"])
@pytest.mark.parametrize("bad", ["complex", "text"])
def test_non_numeric_parameters_are_refused_naming_them(which, bad):
    W, b = np.ones((2, 3)), np.zeros(2)
    arr = W if which == "weight" else b
    arr = arr + 1j if bad == "complex" else np.full(arr.shape, "a")
    layers = [(arr, b)] if which == "weight" else [(W, arr)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # judge the outcome, not NumPy's warning on the way
        try:
            fisherkit.MLP(layers, head="gaussian")
        except (TypeError, ValueError) as exc:
            assert f"layers[0].{which}" in str(exc), str(exc)
        else:
            pytest.fail(f"{bad} {which} accepted")


def test_float32_model_with_overflowing_float64_input_is_a_clean_error():
    """A finite float64 value beyond float32's range becomes Inf on conversion: the result
    must still be an error naming X (NumPy's cast warning is silenced here on purpose; see
    the report about it)."""
    m = fisherkit.MLP.init([2, 3, 2], dtype=np.float32)
    X = np.array([[1e300, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="'X'"):
            m.forward(X)
