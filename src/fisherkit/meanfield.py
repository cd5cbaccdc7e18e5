"""Mean-field order parameters of random MLPs and the unit Gaussian integrals A_k.

docs/maths/natgrad.rst#natgrad-meanfield-order-parameters Pure NumPy, vectorised over arrays of units.

* :func:`unit_moments` -- ``A_k(s, c) = E_z[phi'(s z + c)^2 z^k]``, k = 0, 1, 2, z ~ N(0, 1):
  closed forms for ``relu``, ``erf`` (phi(u) = erf(u), gamma = 1) and ``identity``;
  quadrature for ``tanh``, ``sigmoid`` and ``softplus``.
* :func:`meanfield_forward` -- q^l, A_hat^l, m^l, v^l per layer (forward recursion).
* :func:`meanfield_backward` -- the mean backprop factor beta_bar^l per layer.
* :func:`unit_statistics` -- per-unit (s_i, c_i) of a layer, so that u_i ~ N(c_i, s_i^2).

Quadrature (docs/maths/natgrad.rst#natgrad-unit-integrals recommendation, with the Hermite range narrowed for tanh):
probabilists' Gauss-Hermite with 64 nodes when s <= 0.5 (tanh) or s <= 1 (sigmoid,
softplus), where it is exact to ~1e-15; otherwise Gauss-Legendre in u-space over the Gaussian window [c - 12 s, c + 12 s],
split into a core panel [-U, U] (256 nodes; U = 20 tanh, 40 sigmoid and softplus) and the
two tail panels outside it (128 nodes each; the tails only matter for activations whose
phi'^2 or phi^2 does not decay, e.g. softplus, or tanh^2 in the forward recursion).
Measured absolute error against adaptive quadrature: <= 1e-13 for s in [0, 50] and
``|c| <= 25`` (tests/python/test_meanfield.py asserts 1e-10).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from ._validate import as_int

__all__ = [
    "ACTIVATIONS",
    "unit_moments",
    "meanfield_forward",
    "meanfield_backward",
    "unit_statistics",
    "MeanField",
]

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "softplus", "erf", "gelu", "silu")
_QUADRATURE = ("tanh", "sigmoid", "softplus", "gelu", "silu")
_CORE = {"tanh": 20.0, "sigmoid": 40.0, "softplus": 40.0, "gelu": 40.0, "silu": 40.0}
# Largest s for Gauss-Hermite: its error grows with s / (distance of phi's nearest complex
# pole from the real axis): pi/2 for tanh, pi for sigmoid/softplus. Measured max abs error
# of 64-node Gauss-Hermite on A_k: tanh 3.7e-15 at s = 0.5 but 1.8e-7 at s = 1; sigmoid and
# softplus <= 2e-15 at s = 1. Above the threshold the u-space Gauss-Legendre is used.
_HERMITE_MAX_S = {"tanh": 0.5, "sigmoid": 1.0, "softplus": 1.0, "gelu": 0.5, "silu": 0.5}
_SQRT2PI = np.sqrt(2.0 * np.pi)
_CHUNK = 4096

_nodes: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _rule(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in _nodes:
        if name == "hermite":
            x, w = np.polynomial.hermite_e.hermegauss(64)
            _nodes[name] = (x, w / _SQRT2PI)
        else:
            _nodes[name] = np.polynomial.legendre.leggauss(int(name))
    return _nodes[name]


def _check_activation(activation: str, name: str = "activation") -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} in argument '{name}'; expected one of "
                         f"{', '.join(ACTIVATIONS)}")
    return activation


# ------------------------------------------------------------------ element functions
def _expit(u: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _dphi2(act: str, u: np.ndarray) -> np.ndarray:
    """phi'(u)^2, evaluated without cancellation in the tails."""
    if act == "tanh":
        e = np.exp(-2.0 * np.abs(u))
        sech = 2.0 * np.sqrt(e) / (1.0 + e)
        return sech**4
    if act == "sigmoid":
        e = np.exp(-np.abs(u))
        return (e / (1.0 + e) ** 2) ** 2
    if act == "softplus":
        return _expit(u) ** 2
    if act == "gelu":
        return (_norm_cdf(u) + u * np.exp(-0.5 * u * u) / _SQRT2PI) ** 2
    if act == "silu":
        s = _expit(u)
        return (s * (1.0 + u * (1.0 - s))) ** 2
    raise AssertionError(act)


def _phi(act: str, u: np.ndarray) -> np.ndarray:
    if act == "tanh":
        return np.tanh(u)
    if act == "sigmoid":
        return _expit(u)
    if act == "softplus":
        return np.maximum(u, 0.0) + np.log1p(np.exp(-np.abs(u)))
    if act == "gelu":
        return u * _norm_cdf(u)
    if act == "silu":
        return u * _expit(u)
    raise AssertionError(act)


def _norm_cdf(a: np.ndarray) -> np.ndarray:
    """Phi(a), accurate to ~1e-16 absolute (and to a few ulp relative in the lower tail):
    0.5 -+ integral of the pdf by 64-node Gauss-Legendre for |a| < 3, the Mills-ratio
    continued fraction (evaluated bottom-up, 200 terms) for |a| >= 3."""
    a = np.asarray(a, dtype=np.float64)
    x = np.abs(a)
    q = np.empty_like(x)  # q = Phi(-|a|)
    small = x < 3.0
    if np.any(small):
        xs = x[small]
        t, w = _rule("64")
        nodes = 0.5 * xs[:, None] * (t + 1.0)
        integral = 0.5 * xs * (np.exp(-0.5 * nodes**2) @ w) / _SQRT2PI
        q[small] = 0.5 - integral
    if np.any(~small):
        xl = x[~small]
        r = np.zeros_like(xl)
        for k in range(200, 0, -1):
            r = k / (xl + r)
        q[~small] = np.exp(-0.5 * xl**2) / _SQRT2PI / (xl + r)
    return np.where(a < 0, q, 1.0 - q)


# ------------------------------------------------------------------ quadrature
def _expect(fn: Any, act: str, s: np.ndarray, c: np.ndarray, powers: Sequence[int]) -> list[np.ndarray]:
    """E_z[fn(s z + c) z^k] for k in powers, over flat arrays s, c (see the module doc)."""
    core = _CORE[act]
    out = [np.empty_like(s) for _ in powers]
    small = s <= _HERMITE_MAX_S[act]
    if np.any(small):
        x, w = _rule("hermite")
        ss, cs = s[small], c[small]
        for lo in range(0, ss.size, _CHUNK):
            sl = slice(lo, lo + _CHUNK)
            f = fn(ss[sl, None] * x + cs[sl, None]) * w
            o_idx = np.flatnonzero(small)[sl]
            for o, k in zip(out, powers):
                o[o_idx] = f @ (x**k)
    if np.any(~small):
        idx = np.flatnonzero(~small)
        sb, cb = s[idx], c[idx]
        lo_w, hi_w = cb - 12.0 * sb, cb + 12.0 * sb
        a = np.clip(-core, lo_w, hi_w)
        b = np.clip(core, lo_w, hi_w)
        panels = ((lo_w, a, "128"), (a, b, "256"), (b, hi_w, "128"))
        acc = [np.zeros(idx.size) for _ in powers]
        for p_lo, p_hi, rule in panels:
            t, w = _rule(rule)
            half = 0.5 * (p_hi - p_lo)
            live = np.flatnonzero(half > 0)
            for lo in range(0, live.size, _CHUNK):
                j = live[lo:lo + _CHUNK]
                u = (p_lo[j] + half[j])[:, None] + half[j, None] * t
                z = (u - cb[j, None]) / sb[j, None]
                f = fn(u) * np.exp(-0.5 * z**2) * (half[j] / (sb[j] * _SQRT2PI))[:, None]
                for ac, k in zip(acc, powers):
                    ac[j] += (f * z**k) @ w
        for o, ac in zip(out, acc):
            o[idx] = ac
    return out


# ------------------------------------------------------------------ public API
def unit_moments(activation: str, s: Any, c: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three Gaussian integrals of a unit with pre-activation u = s z + c, z ~ N(0, 1).

    ``A_k(s, c) = E_z[phi'(s z + c)^2 z^k]`` for k = 0, 1, 2 (docs/maths/natgrad.rst#natgrad-unit-integrals). ``s`` (>= 0)
    and ``c`` are broadcast against each other; the three results have the broadcast shape,
    float64. Closed forms (a = c / s, pdf/cdf of N(0, 1)):

    * relu: ``A0 = Phi(a)``, ``A1 = pdf(a)``, ``A2 = Phi(a) - a pdf(a)`` (relu'(0) = 0 at s = 0);
    * erf (phi(u) = erf(u), beta = 2, kappa = 1 + 2 beta s^2, mu = -2 beta s c / kappa):
      ``A0 = (4/pi) kappa^-1/2 exp(-beta c^2 / kappa)``, ``A1 = A0 mu``,
      ``A2 = A0 (1/kappa + mu^2)``;
    * identity: (1, 0, 1).

    tanh, sigmoid and softplus use the quadrature described in the module docstring
    (absolute error <= 1e-12). The unit-FIM entries follow: G = A0 I + (A2 - A0) e e^T +
    A1 (e f^T + f e^T) for the paper's setting (docs/maths/natgrad.rst#natgrad-isotropic-unit).
    """
    act = _check_activation(activation)
    s_arr = np.asarray(s)
    c_arr = np.asarray(c)
    for name, a in (("s", s_arr), ("c", c_arr)):
        if a.dtype.kind not in "fiub":
            raise TypeError(f"argument '{name}' must be real numbers, got dtype {a.dtype}")
    try:
        sb, cb = np.broadcast_arrays(s_arr.astype(np.float64), c_arr.astype(np.float64))
    except ValueError:
        raise ValueError(f"arguments 's' and 'c' do not broadcast: shapes {s_arr.shape} and {c_arr.shape}") from None
    if not np.all(np.isfinite(sb)) or np.any(sb < 0):
        raise ValueError("argument 's' must be finite and >= 0 (a standard deviation)")
    if not np.all(np.isfinite(cb)):
        raise ValueError("argument 'c' contains NaN or Inf")
    shape = sb.shape
    sf, cf = sb.ravel(), cb.ravel()
    if act == "identity":
        ones = np.ones(shape)
        return ones, np.zeros(shape), ones.copy()
    if act == "relu":
        pos = sf > 0
        a = np.where(pos, cf / np.where(pos, sf, 1.0), 0.0)
        pdf = np.exp(-0.5 * a**2) / _SQRT2PI
        cdf = _norm_cdf(a)
        step = (cf > 0).astype(np.float64)
        A0 = np.where(pos, cdf, step)
        A1 = np.where(pos, pdf, 0.0)
        A2 = np.where(pos, cdf - a * pdf, step)
        return A0.reshape(shape), A1.reshape(shape), A2.reshape(shape)
    if act == "erf":
        beta = 2.0
        kappa = 1.0 + 2.0 * beta * sf**2
        mu = -2.0 * beta * sf * cf / kappa
        A0 = (4.0 / np.pi) / np.sqrt(kappa) * np.exp(-beta * cf**2 / kappa)
        return A0.reshape(shape), (A0 * mu).reshape(shape), (A0 * (1.0 / kappa + mu**2)).reshape(shape)
    A0, A1, A2 = _expect(lambda u: _dphi2(act, u), act, sf, cf, (0, 1, 2))
    return A0.reshape(shape), A1.reshape(shape), A2.reshape(shape)


def _activity_moments(act: str, q: float) -> tuple[float, float]:
    """(m, A_hat) = (E[phi(sqrt(q) z)], E[phi(sqrt(q) z)^2])."""
    s = np.sqrt(q)
    if act == "identity":
        return 0.0, q
    if act == "relu":
        return s / _SQRT2PI, 0.5 * q
    if act == "erf":
        return 0.0, float(2.0 / np.pi * np.arcsin(2.0 * q / (1.0 + 2.0 * q)))
    sa, ca = np.array([s]), np.array([0.0])
    m1 = _expect(lambda u: _phi(act, u), act, sa, ca, (0,))[0]
    m2 = _expect(lambda u: _phi(act, u) ** 2, act, sa, ca, (0,))[0]
    return float(m1[0]), float(m2[0])


def _per_layer(value: Any, depth: int, name: str) -> list[Any]:
    if isinstance(value, (str, int, float, np.floating, np.integer)):
        return [value] * depth
    vals = list(value)
    if len(vals) != depth:
        raise ValueError(f"argument '{name}' must be one value or one per layer ({depth}), got {len(vals)}")
    return vals


class MeanField(NamedTuple):
    """Order parameters indexed by layer l = 0..L (index 0 is the input layer).

    q[l] = sigma_w2 A_hat[l-1] + sigma_b2 (pre-activation variance; q[0] is NaN: inputs have
    no pre-activation), a_hat[l] = E[phi(u)^2], m[l] = E[phi(u)], v[l] = a_hat[l] - m[l]^2.
    Layer l's units see inputs with mean m[l-1] and variance v[l-1].
    """

    q: np.ndarray
    a_hat: np.ndarray
    m: np.ndarray
    v: np.ndarray


def meanfield_forward(
    sigma_w2: float | Sequence[float],
    sigma_b2: float | Sequence[float],
    activation: str | Sequence[str],
    depth: int,
    *,
    input_second_moment: float = 1.0,
    input_mean: float = 0.0,
) -> MeanField:
    """Forward mean-field recursion of docs/maths/natgrad.rst#natgrad-meanfield-order-parameters for ``depth`` hidden layers.

    Weights W^l_ij ~ N(0, sigma_w2 / n_{l-1}), biases ~ N(0, sigma_b2) (variances, one value
    or one per layer). ``A_hat^0 = input_second_moment`` (``|x|^2 / n_0``; 1 for x ~ N(0, I)),
    ``q^l = sigma_w2 A_hat^{l-1} + sigma_b2``, ``A_hat^l = E[phi(sqrt(q^l) z)^2]``,
    ``m^l = E[phi(sqrt(q^l) z)]``, ``v^l = A_hat^l - (m^l)^2``; m^0 = ``input_mean`` (the
    mean of an input coordinate) and v^0 = A_hat^0 - (m^0)^2. Closed forms for relu
    (m = sqrt(q / 2 pi), A_hat = q / 2), identity and erf (A_hat = (2/pi) asin(2q/(1+2q)));
    quadrature otherwise. Returns a :class:`MeanField` of arrays of length depth + 1.
    """
    depth = as_int(depth, "depth", minimum=0)
    acts = [_check_activation(a, "activation") for a in _per_layer(activation, depth, "activation")]
    sw = [float(x) for x in _per_layer(sigma_w2, depth, "sigma_w2")]
    sb = [float(x) for x in _per_layer(sigma_b2, depth, "sigma_b2")]
    for name, vals in (("sigma_w2", sw), ("sigma_b2", sb)):
        if any(not np.isfinite(x) or x < 0 for x in vals):
            raise ValueError(f"argument '{name}' must hold finite variances >= 0, got {vals}")
    a0, m0 = float(input_second_moment), float(input_mean)
    if not (np.isfinite(a0) and np.isfinite(m0) and a0 >= m0 * m0):
        raise ValueError("arguments 'input_second_moment' and 'input_mean' must be finite with "
                         f"input_second_moment >= input_mean^2, got {a0} and {m0}")
    q, a_hat, m, v = [np.nan], [a0], [m0], [a0 - m0 * m0]
    for l in range(depth):
        ql = sw[l] * a_hat[-1] + sb[l]
        ml, al = _activity_moments(acts[l], ql)
        q.append(ql)
        a_hat.append(al)
        m.append(ml)
        v.append(max(al - ml * ml, 0.0))
    return MeanField(np.array(q), np.array(a_hat), np.array(m), np.array(v))


def meanfield_backward(
    sizes: Sequence[int],
    sigma_w2: float | Sequence[float],
    activation: str | Sequence[str],
    q: Any,
    *,
    sigma_v2: float | None = None,
) -> np.ndarray:
    """Mean backprop factor ``beta_bar^l = E[sum_o (d f_o / d x^l_i)^2]`` (docs/maths/natgrad.rst#natgrad-meanfield-order-parameters).

    ``sizes`` = [n_0, n_1, ..., n_L, K] (inputs, L hidden widths, outputs); ``q`` the
    pre-activation variances from :func:`meanfield_forward` (length L + 1, q[0] unused);
    ``sigma_w2`` the hidden weight variances (one or one per hidden layer); ``sigma_v2`` the
    output-layer weight variance (V_oi ~ N(0, sigma_v2 / n_L); default: the last hidden
    layer's sigma_w2). Recursion: ``beta^L = K sigma_v2 / n_L`` and
    ``beta^l = sigma_w2^{l+1} (n_{l+1} / n_l) A0(sqrt(q^{l+1}), 0) beta^{l+1}`` with
    A0 = E[phi'^2] (:func:`unit_moments`). Returns beta[0..L]; beta[0] is the input
    sensitivity.
    """
    sizes = [as_int(x, "sizes", minimum=1) for x in sizes]
    if len(sizes) < 3 or any(x < 1 for x in sizes):
        raise ValueError(f"argument 'sizes' must be [n_0, n_1, ..., n_L, K] with L >= 1 positive widths, got {sizes}")
    L = len(sizes) - 2
    acts = [_check_activation(a, "activation") for a in _per_layer(activation, L, "activation")]
    sw = [float(x) for x in _per_layer(sigma_w2, L, "sigma_w2")]
    qa = np.asarray(q, dtype=np.float64)
    if qa.shape != (L + 1,):
        raise ValueError(f"argument 'q' must have length {L + 1} (depth + 1), got shape {qa.shape}")
    if not np.all(np.isfinite(qa[1:])) or np.any(qa[1:] < 0):
        raise ValueError("argument 'q' must hold finite variances >= 0 in q[1:]")
    sv = sw[-1] if sigma_v2 is None else float(sigma_v2)
    if not (np.isfinite(sv) and sv >= 0):
        raise ValueError(f"argument 'sigma_v2' must be a finite variance >= 0, got {sigma_v2}")
    beta = np.empty(L + 1)
    beta[L] = sizes[L + 1] * sv / sizes[L]
    for l in range(L - 1, -1, -1):
        A0 = unit_moments(acts[l], np.sqrt(qa[l + 1]), 0.0)[0]
        beta[l] = sw[l] * sizes[l + 1] / sizes[l] * float(A0) * beta[l + 1]
    return beta


def unit_statistics(W: Any, b: Any, m: float, v: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit (s_i, c_i) of a layer whose inputs have mean m and variance v (docs/maths/natgrad.rst#natgrad
    1.3): ``s_i = |w_i| sqrt(v)``, ``c_i = m sum_j w_ij + b_i``, so u_i ~ N(c_i, s_i^2).
    W is (n_out, n_in), b is (n_out,); float64 results of shape (n_out,)."""
    Wa = np.asarray(W, dtype=np.float64)
    ba = np.asarray(b, dtype=np.float64)
    if Wa.ndim != 2:
        raise ValueError(f"argument 'W' must be 2-D (n_out, n_in), got shape {Wa.shape}")
    if ba.shape != (Wa.shape[0],):
        raise ValueError(f"argument 'b' must have shape ({Wa.shape[0]},), got {ba.shape}")
    if not (np.isfinite(m) and np.isfinite(v) and v >= 0):
        raise ValueError(f"arguments 'm' and 'v' must be finite with v >= 0, got {m} and {v}")
    s = np.sqrt(np.einsum("ij,ij->i", Wa, Wa) * v)
    c = m * Wa.sum(axis=1) + ba
    return s, c
