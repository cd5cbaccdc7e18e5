"""Natural gradients of MLPs without inverting the Fisher matrix (natgrad.md sections 1-2).

:func:`natural_gradient` preconditions a loss gradient with one of six approximations of
the Fisher information matrix F. Every unit-wise method uses the same abstraction
(natgrad.md 0, 4): the block of unit i of layer l is a scalar-weighted Gram of the unit's
augmented inputs ``x~ = [x^{l-1}; 1]``,

    G_i = (1/N) sum_s g2[s, i] x~_s x~_s^T,

where ``g2[s, i]`` is the per-sample metric weight of the unit (exact: rho^T Cov(t|h) rho
with rho = dh/du_i; score: squared backprop of a label drawn from the model; empirical:
squared backprop of the data label; bpm: Ollivier's backpropagated metric, the
diagonal of Cov(t|h) backpropagated with squared weights, one cheap pass, no sampling).

==================  ===========================================================  =============================
method              what is inverted                                             cost per layer (m units, fan-in n, N inputs)
==================  ===========================================================  =============================
``full``            the dense P x P FIM (reference; small models only)             P^3/3 + N C P^2
``unit``            exact unit blocks G_i + damping I, Cholesky per block          2 m N (n+1)^2 + m (n+1)^3 / 3
                    (all units batched); sample-space Woodbury when N < n + 1      m (N^2 n + N^3 / 3)
``unit-correlated`` natgrad.md 1.6b: Gaussian surrogate x ~ N(mu, Sigma) of the    N n^2 + n^3 (one eigh) + 3 m n^2
                    layer's inputs; Sigma shared by all units + per-unit rank 2
``unit-meanfield``  natgrad.md 1.5-1.7: isotropic inputs (mean m, variance v):     O(m n): row reductions + 3x3
                    scalar diagonal + rank 2, explicit O(n) inverse
``quasi-diagonal``  Ollivier's QD (natgrad.md 2.4): per edge the 2x2 system on     2 m N n (statistics) + O(m n)
                    (bias, weight), then the bias correction
``diag``            the diagonal of F                                              m N n
==================  ===========================================================  =============================

Trade-offs (natgrad.md 1.6, 1.9, 2.5, 5):

* ``unit`` is exact for the block-diagonal of F and works for any trained network, but
  forms and factors ``m (n+1)^2`` numbers per layer: fine up to a few hundred inputs per
  unit. The sample-space solver takes over when the batch is smaller than the fan-in
  (it needs ``damping > 0``).
* ``unit-meanfield`` never forms a matrix: O(n) per unit, memory-bound (two compiled row
  passes over W and the gradient, cpp/src/natgrad.cpp, plus O(1) scalar work per unit,
  including the Gaussian integrals A_k, which need quadrature for tanh). It assumes that a
  layer's inputs are uncorrelated with a common mean and variance. That holds for the first
  layer of a random net (where it matches the exact block at the Monte Carlo noise floor),
  but **not** for deeper layers, whose inputs inherit a spread covariance: there its
  natural-gradient cosine with the exact block drops to 0.5-0.9 (measured, natgrad.md T6).
* ``unit-correlated`` fixes that with the layer's input covariance (one n x n
  eigendecomposition per layer, shared by all units, so damping is exact for every unit);
  cosine >= 0.98 against the exact block in deep layers (natgrad.md A9).
* ``quasi-diagonal`` keeps one 2 x 2 system per edge; it is invariant to affine changes of
  each input activity (natgrad.md 2.5) but ignores weight-weight couplings.
* ``diag`` is the cheapest and is not invariant; ``full`` is the exact reference.

The mean-field methods scale each unit's block by ``beta_i``, the mean metric weight
backpropagated to the unit's *activity* (natgrad.md 1.3, 1.6), measured on the batch with
the chosen estimator. The output layer is treated as a layer of linear units.

Statistics can be computed once with :func:`curvature` and reused (or averaged across
steps with :meth:`Curvature.blend`), which is what :class:`fisherkit.optim.NaturalGradient`
does with its ``ema`` option.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import heads as _heads
from ._loader import _core
from .meanfield import unit_moments
from .model import MLP

__all__ = ["METHODS", "ESTIMATORS", "natural_gradient", "curvature", "Curvature", "layer_inputs", "unit_weights"]

METHODS = ("unit", "unit-meanfield", "unit-correlated", "quasi-diagonal", "diag", "full")
ESTIMATORS = ("exact", "score", "empirical", "bpm")
_ROW_BUDGET = 1 << 22  # elements of a temporary per chunk (32 MiB in float64)


# ------------------------------------------------------------------ validation
def _check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} in argument 'method'; expected one of {', '.join(METHODS)}")
    return method


def _check_estimator(estimator: Any) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r} in argument 'estimator'; expected one of "
                         f"{', '.join(ESTIMATORS)}")
    return estimator


def _check_damping(damping: Any) -> float:
    try:
        lam = float(damping)
    except (TypeError, ValueError):
        raise ValueError(f"argument 'damping' must be a real number, got {damping!r}") from None
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"argument 'damping' must be finite and >= 0, got {damping!r}")
    return lam


def _check_model(model: Any) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
    if model.xp is not np:
        raise NotImplementedError("natural gradients run on NumPy models; use a NumPy copy of the model")
    return model


def _split_grads(model: MLP, grads: Any) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool, Any]:
    """(per-layer (dW, db) in float64, was_flat, output dtype)."""
    if isinstance(grads, np.ndarray) or (not isinstance(grads, (list, tuple)) and hasattr(grads, "shape")):
        g = np.asarray(grads)
        if g.shape != (model.n_params,):
            raise ValueError(f"argument 'grads' must be a flat vector of shape ({model.n_params},) or a list of "
                             f"(dW, db) per layer, got an array of shape {g.shape}")
        dt = g.dtype if g.dtype in (np.float32, np.float64) else np.float64
        return [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in model.unflatten(g)], True, dt
    if not isinstance(grads, (list, tuple)) or len(grads) != model.n_layers:
        raise ValueError(f"argument 'grads' must be a list of {model.n_layers} (dW, db) pairs (one per layer) "
                         f"or a flat vector of {model.n_params} values")
    out, dt = [], None
    for l, (pair, (W, b)) in enumerate(zip(grads, model.layers)):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"argument 'grads'[{l}] must be a (dW, db) pair")
        dW, db = np.asarray(pair[0]), np.asarray(pair[1])
        if dW.shape != W.shape or db.shape != b.shape:
            raise ValueError(f"argument 'grads'[{l}] has shapes {dW.shape}, {db.shape}; expected {W.shape}, {b.shape}")
        for a in (dW, db):
            if a.dtype.kind not in "fiu":
                raise ValueError(f"argument 'grads'[{l}] must be real numeric, got dtype {a.dtype}")
        dt = dW.dtype if dt is None else np.result_type(dt, dW.dtype)
        out.append((np.asarray(dW, np.float64), np.asarray(db, np.float64)))
    dt = dt if dt in (np.float32, np.float64) else np.float64
    return out, False, dt


def _join(model: MLP, parts: list[tuple[np.ndarray, np.ndarray]], flat: bool, dtype: Any) -> Any:
    if flat:
        return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in parts]).astype(dtype, copy=False)
    return [(w.astype(dtype, copy=False), b.astype(dtype, copy=False)) for w, b in parts]


# ------------------------------------------------------------------ forward / backward statistics
def _activate(act: str, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi(U), phi'(U)) for the engine's activations."""
    if act == "identity":
        return U, np.ones_like(U)
    if act == "relu":
        return np.maximum(U, 0), (U > 0).astype(U.dtype)
    if act == "tanh":
        T = np.tanh(U)
        return T, 1 - T * T
    if act == "sigmoid":
        e = np.exp(-np.abs(U))
        S = np.where(U >= 0, 1 / (1 + e), e / (1 + e))
        return S, S * (1 - S)
    if act == "softplus":
        e = np.exp(-np.abs(U))
        S = np.where(U >= 0, 1 / (1 + e), e / (1 + e))
        return np.maximum(U, 0) + np.log1p(e), S
    if act == "erf":
        d = (2 / np.sqrt(np.pi)) * np.exp(-U * U)
        try:
            from scipy.special import erf
            return erf(U), d
        except ImportError:  # the engine's own erf: phi(U I + 0) I through a two-layer identity MLP
            n = U.shape[1]
            eye = np.eye(n, dtype=U.dtype)
            z = np.zeros(n, dtype=U.dtype)
            return MLP([(eye, z), (eye, z)], "erf", "gaussian", dtype=U.dtype).forward(U), d
    raise ValueError(f"unknown activation {act!r}")  # pragma: no cover - MLP validates


@dataclass
class _Stats:
    """Per layer: inputs x^{l-1} (N, n), per-sample unit weights g2 (N, m) and activity-level
    weights b2 (N, m) (g2 = b2 phi'^2), all averaged over label draws."""

    ins: list[np.ndarray]
    g2: list[np.ndarray]
    b2: list[np.ndarray]


def _backprop_stats(model: MLP, X: np.ndarray, y: Any, estimator: str, samples: int, seed: Any) -> _Stats:
    layers = model.layers
    L = len(layers)
    acts = model.activations + ["identity"]
    ins, dphi = [], []
    A = X
    for l, (W, b) in enumerate(layers):
        ins.append(A)
        U = A @ W.T + b
        A, d = _activate(acts[l], U)
        dphi.append(d)
    H = A
    N, K = H.shape
    if estimator == "bpm":
        return _bpm_stats(model, ins, dphi, H)
    dt = H.dtype
    g2 = [np.empty((N, W.shape[0]), dt) for W, _ in layers]
    b2 = [np.empty((N, W.shape[0]), dt) for W, _ in layers]
    if estimator == "exact":
        G, wgt = K, 1.0
    elif estimator == "empirical":
        G, wgt = 1, 1.0
    else:
        G, wgt = samples, 1.0 / samples
        draws = _heads.sample(model.head, H, samples=samples, seed=seed, sigma=model.sigma)
    width = max(model.sizes)
    step = max(1, min(N, (1 << 18) // max(1, G * width)))  # backprop rows per chunk stay in cache
    scale = 1.0 / model.sigma ** 2 if model.head == "gaussian" else 1.0
    for lo in range(0, N, step):
        sl = slice(lo, min(N, lo + step))
        n = sl.stop - lo
        Hc = H[sl]
        if estimator == "exact":
            B = _heads.sqrt_covariance(model.head, Hc, sigma=model.sigma)  # (n, K, K), B B^T = Cov
            D = np.ascontiguousarray(np.swapaxes(B, 1, 2)).reshape(n * K, K)
        else:
            mean = _heads.mean(model.head, Hc, sigma=model.sigma)
            t = _target(model, y[sl] if estimator == "empirical" else draws[sl], n, K)
            D = ((mean[:, None, :] - t) * scale).reshape(n * G, K).astype(dt)

        def group(Z: np.ndarray) -> np.ndarray:
            Z3 = Z.reshape(n, G, -1)
            out = np.einsum("sgc,sgc->sc", Z3, Z3)
            return out * wgt if wgt != 1.0 else out

        g2[L - 1][sl] = b2[L - 1][sl] = group(D)
        for l in range(L - 1, 0, -1):
            Dx = D @ layers[l][0]
            b2[l - 1][sl] = group(Dx)
            D = (Dx.reshape(n, G, -1) * dphi[l - 1][sl, None, :]).reshape(n * G, -1)
            g2[l - 1][sl] = group(D)
    return _Stats(ins, g2, b2)


def _bpm_stats(model: MLP, ins: list[np.ndarray], dphi: list[np.ndarray], H: np.ndarray) -> _Stats:
    """Ollivier's backpropagated metric (natgrad.md 2.3): diag Cov(t|h) at the output, then
    ``b2^l = g2^{l+1} (W^{l+1})^2`` and ``g2^l = b2^l phi'^2`` per sample; one pass with squared
    weights and no sampling. It drops the cross terms between units (mean-field backprop)."""
    layers = model.layers
    L = len(layers)
    cov = _heads.covariance(model.head, H, sigma=model.sigma)
    g = np.ascontiguousarray(np.diagonal(cov, axis1=1, axis2=2))
    g2: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    b2: list[np.ndarray] = [None] * L  # type: ignore[list-item]
    g2[L - 1] = b2[L - 1] = g
    for l in range(L - 1, 0, -1):
        W = layers[l][0]
        b2[l - 1] = g2[l] @ (W * W)
        g2[l - 1] = b2[l - 1] * dphi[l - 1] ** 2
    return _Stats(ins, g2, b2)


def _target(model: MLP, y: Any, N: int, K: int) -> np.ndarray:
    """t(y) as (N, S, K) for labels (N,) / (N, S) (categorical) or (N, K) / (N, S, K)."""
    y = np.asarray(y)
    if model.head == "categorical":
        return np.eye(K)[y.reshape(N, -1).astype(np.int64)]
    return y.astype(np.float64).reshape(N, -1, K)


# ------------------------------------------------------------------ curvature statistics
@dataclass
class Curvature:
    """Curvature statistics of one method, per layer (see :func:`curvature`).

    ``layers[l]`` is a dict of arrays whose keys depend on the method: ``blocks`` (unit),
    ``xt``/``g2`` (unit, sample space), ``m``/``v``/``beta`` (unit-meanfield),
    ``mu``/``sigma``/``beta`` (unit-correlated), ``m00``/``m0i``/``mii`` (quasi-diagonal,
    diag); ``dense`` holds the P x P matrix of method ``full``. ``n_samples`` is the batch size.
    """

    method: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    dense: Any = None
    n_samples: int = 0

    def blend(self, new: "Curvature", ema: float) -> "Curvature":
        """Exponential moving average ``(1 - ema) * self + ema * new`` of every statistic
        (``ema`` = weight of the new batch, in (0, 1]). Layers held in sample-space form
        cannot be averaged and take the new batch's values."""
        if new.method != self.method or len(new.layers) != len(self.layers):
            raise ValueError("argument 'new' holds statistics of another method or model")
        ema = float(ema)
        if not 0 < ema <= 1:
            raise ValueError(f"argument 'ema' must be in (0, 1], got {ema}")
        mix = lambda a, b: (1 - ema) * a + ema * b  # noqa: E731
        layers = []
        for old, cur in zip(self.layers, new.layers):
            if set(old) != set(cur) or "xt" in cur:
                layers.append(cur)
            else:
                layers.append({k: mix(old[k], cur[k]) for k in cur})
        dense = None if new.dense is None else mix(self.dense, new.dense)
        return Curvature(self.method, layers, dense, new.n_samples)


def curvature(
    model: MLP,
    X: Any,
    *,
    method: str,
    estimator: str = "exact",
    y: Any = None,
    samples: int = 1,
    seed: int | None = None,
) -> Curvature:
    """Curvature statistics of ``method`` over the inputs ``X`` (N, n_0).

    ``estimator``: ``exact`` (Cov(t|h) of the head, no sampling; C backward passes),
    ``score`` (``samples`` labels drawn from the model per input; seed as in
    :func:`fisherkit.fisher`), ``empirical`` (the data labels ``y``; biased) or ``bpm``
    (backpropagated metric, natgrad.md 2.3; cheapest, approximate). Returns a
    :class:`Curvature` for :func:`natural_gradient`'s ``curvature`` argument.
    """
    model = _check_model(model)
    method = _check_method(method)
    estimator = _check_estimator(estimator)
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"argument 'samples' must be >= 1, got {samples}")
    if estimator == "empirical" and y is None:
        raise ValueError("the empirical estimator needs labels: pass y (or use estimator='exact')")
    Xc, yc = model._inputs(X, y if estimator == "empirical" else None)
    N = int(Xc.shape[0])
    if N < 1:
        raise ValueError("argument 'X' has no rows")
    if method == "full":
        from .fisher import fisher

        if estimator == "bpm":
            raise ValueError("argument 'estimator': method 'full' takes 'exact', 'score' or 'empirical', not 'bpm'")

        F = fisher(model, Xc, yc, estimator=estimator, shape="full", samples=samples, seed=seed)
        return Curvature(method, [{} for _ in range(model.n_layers)], np.asarray(F.to_dense(), np.float64), N)
    st = _backprop_stats(model, Xc, yc, estimator, samples, seed)
    layers = []
    for l, (W, b) in enumerate(model.layers):
        x, g2, b2 = st.ins[l], st.g2[l], st.b2[l]
        n = x.shape[1]
        if method == "unit":
            xt = np.concatenate([x, np.ones((N, 1), x.dtype)], axis=1)
            if N < n + 1:
                layers.append({"xt": xt.astype(np.float64), "g2": g2.astype(np.float64)})
            else:
                layers.append({"blocks": _unit_blocks(xt, g2)})
        elif method in ("quasi-diagonal", "diag"):
            entry = {"m00": g2.mean(axis=0).astype(np.float64), "mii": (g2.T @ (x * x)).astype(np.float64) / N}
            if method == "quasi-diagonal":
                entry["m0i"] = (g2.T @ x).astype(np.float64) / N
            layers.append(entry)
        elif method == "unit-meanfield":
            x64 = x.astype(np.float64)
            m = float(x64.mean())
            v = float(((x64 - m) ** 2).mean())
            layers.append({"m": np.array(m), "v": np.array(v), "beta": b2.mean(axis=0).astype(np.float64)})
        else:  # unit-correlated
            x64 = x.astype(np.float64)
            mu = x64.mean(axis=0)
            xc = x64 - mu
            layers.append({"mu": mu, "sigma": (xc.T @ xc) / N, "beta": b2.mean(axis=0).astype(np.float64)})
    return Curvature(method, layers, None, N)


def _unit_blocks(xt: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """(m, k, k) blocks (1/N) Xt^T diag(g2[:, i]) Xt, batched GEMMs over chunks of units."""
    N, k = xt.shape
    m = g2.shape[1]
    x64 = xt.astype(np.float64)
    w = g2.astype(np.float64) / N
    out = np.empty((m, k, k))
    step = max(1, _ROW_BUDGET // max(1, N * k))
    for lo in range(0, m, step):
        sl = slice(lo, lo + step)
        out[sl] = (w[:, sl].T[:, None, :] * x64.T[None]) @ x64
    return out


# ------------------------------------------------------------------ per-layer solvers
def _solve_unit(st: dict[str, Any], gW: np.ndarray, gb: np.ndarray, lam: float, l: int) -> tuple[np.ndarray, np.ndarray]:
    rhs = np.concatenate([gW, gb[:, None]], axis=1)
    if "blocks" in st:
        A = st["blocks"] + lam * np.eye(rhs.shape[1])
        try:
            Lc = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            mins = np.linalg.eigvalsh(A).min(axis=1)
            bad = int(np.argmin(mins))
            raise ValueError(f"layer {l}, unit {bad}: the damped unit block is not positive definite (smallest "
                             f"eigenvalue {mins[bad]:.3e}); pass damping > 0") from None
        z = np.linalg.solve(Lc, rhs[..., None])
        x = np.linalg.solve(np.swapaxes(Lc, 1, 2), z)[..., 0]
    else:
        if lam <= 0:
            raise ValueError(f"layer {l}: the batch (N={st['xt'].shape[0]}) is smaller than the fan-in + 1 "
                             f"({st['xt'].shape[1]}), so the unit blocks are singular; pass damping > 0")
        xt, g2 = st["xt"], st["g2"]
        N = xt.shape[0]
        sw = np.sqrt(g2 / N).T  # (m, N)
        gram = xt @ xt.T
        M = sw[:, :, None] * gram[None] * sw[:, None, :]
        M[:, np.arange(N), np.arange(N)] += lam
        xi_g = sw * (rhs @ xt.T)  # (m, N) = Xi g per unit
        yv = np.linalg.solve(M, xi_g[..., None])[..., 0]
        x = (rhs - (sw * yv) @ xt) / lam
    return x[:, :-1], x[:, -1]


def _solve_qd(st: dict[str, Any], gW: np.ndarray, gb: np.ndarray, lam: float, l: int, diag_only: bool) -> tuple[np.ndarray, np.ndarray]:
    m00 = st["m00"] + lam
    mii = st["mii"] + lam
    if not (np.all(m00 > 0) and np.all(mii > 0)):
        raise ValueError(f"layer {l}: a metric statistic is zero (dead unit or input); pass damping > 0")
    if diag_only:
        return gW / mii, gb / m00
    m0i = st["m0i"]
    den = mii * m00[:, None] - m0i * m0i
    if not np.all(den > 0):
        raise ValueError(f"layer {l}: a quasi-diagonal 2x2 system is singular; pass damping > 0")
    dW = (gW * m00[:, None] - gb[:, None] * m0i) / den
    db = gb / m00 - np.einsum("ij,ij->i", m0i, dW) / m00
    return dW, db


def _moments(act: str, s: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return unit_moments(act, s, c)


def _solve_meanfield(st: dict[str, Any], W: np.ndarray, b: np.ndarray, gW: np.ndarray, gb: np.ndarray,
                     lam: float, act: str, l: int) -> tuple[np.ndarray, np.ndarray]:
    """natgrad.md 1.7, general damped form: G = a I + U3 C3 U3^T, U3 = [h, e~, f]."""
    m, v, beta = float(st["m"]), float(st["v"]), st["beta"]
    n = W.shape[1]
    W64 = np.ascontiguousarray(W, dtype=np.float64)
    G64 = np.ascontiguousarray(gW, dtype=np.float64)
    mu = W64.shape[0]
    red = np.empty((mu, 4))
    _core.unit_row_reductions(W64, G64, red)  # pass 1: |w|^2, sum w, w.g, sum g per row
    r2, S, wg, gs = red[:, 0], red[:, 1], red[:, 2], red[:, 3]
    r = np.sqrt(r2)
    live = r > 0
    rs = np.where(live, r, 1.0)
    A0, A1, A2 = _moments(act, r * np.sqrt(v), m * S + b.astype(np.float64))
    a = beta * v * A0 + lam
    if not np.all(a > 0):
        raise ValueError(f"layer {l}: the mean-field unit FIM has a zero diagonal (dead unit or constant inputs); "
                         "pass damping > 0")
    sv = np.sqrt(v)
    C3 = np.zeros((mu, 3, 3))
    C3[:, 0, 0] = A0
    C3[:, 0, 1] = C3[:, 1, 0] = sv * A1
    C3[:, 1, 1] = v * (A2 - A0)
    C3[:, 2, 2] = -v * A0
    C3 *= beta[:, None, None]
    K = np.zeros((mu, 3, 3))
    K[:, 0, 0] = m * m * n + 1
    K[:, 0, 1] = K[:, 1, 0] = np.where(live, m * S / rs, 0.0)
    K[:, 0, 2] = K[:, 2, 0] = 1
    K[:, 1, 1] = live
    K[:, 2, 2] = 1
    q = np.stack([m * gs + gb, wg / rs, gb], axis=1)
    Mt = a[:, None, None] * np.eye(3) + K @ C3
    y = (C3 @ np.linalg.solve(Mt, q[..., None]))[..., 0]
    # pass 2: n~_w = (g_w - y1 m 1 - y2 w / r) / a, one fused sweep
    coef = np.ascontiguousarray(np.stack([1.0 / a, -y[:, 1] / (rs * a), -y[:, 0] * m / a], axis=1))
    dW = np.empty_like(G64)
    _core.unit_row_combine(G64, W64, coef, dW)
    db = (gb - y[:, 0] - y[:, 2]) / a
    return dW, db


def _solve_correlated(st: dict[str, Any], W: np.ndarray, b: np.ndarray, gW: np.ndarray, gb: np.ndarray,
                      lam: float, act: str, l: int) -> tuple[np.ndarray, np.ndarray]:
    """natgrad.md 1.6b: G = P + U C U^T, P = a (Sigma + 1) + lam I, U = [h, kappa, f], in the
    eigenbasis of Sigma so that every unit's damping is exact."""
    mu, Sigma, beta = st["mu"], st["sigma"], st["beta"]
    ev, Q = np.linalg.eigh(Sigma)
    ev = np.maximum(ev, 0.0)
    W64 = W.astype(np.float64)
    Wq = W64 @ Q
    muq = Q.T @ mu
    Gq = gW @ Q
    su2 = (Wq * Wq) @ ev
    su = np.sqrt(su2)
    live = su > 0
    sus = np.where(live, su, 1.0)
    A0, A1, A2 = _moments(act, su, W64 @ mu + b.astype(np.float64))
    a = beta * A0
    with np.errstate(divide="ignore"):
        D = 1.0 / (a[:, None] * ev[None, :] + lam)
        pb = 1.0 / (a + lam)
    if not (np.all(np.isfinite(D)) and np.all(np.isfinite(pb))):
        raise ValueError(f"layer {l}: the correlated-input unit FIM is singular (degenerate input covariance or "
                         "dead unit); pass damping > 0")
    kq = np.where(live[:, None], Wq * ev[None, :] / sus[:, None], 0.0)  # Q^T Sigma w / sigma_u
    Dmu = D * muq[None, :]
    Dk = D * kq
    mm = len(a)
    K = np.zeros((mm, 3, 3))
    K[:, 0, 0] = Dmu @ muq + pb
    K[:, 0, 1] = K[:, 1, 0] = np.einsum("ij,ij->i", Dmu, kq)
    K[:, 0, 2] = K[:, 2, 0] = pb
    K[:, 1, 1] = np.einsum("ij,ij->i", Dk, kq)
    K[:, 2, 2] = pb
    C = np.zeros((mm, 3, 3))
    C[:, 0, 0] = A0
    C[:, 0, 1] = C[:, 1, 0] = A1
    C[:, 1, 1] = A2 - A0
    C[:, 2, 2] = -A0
    C *= beta[:, None, None]
    q = np.stack([np.einsum("ij,ij->i", Dmu, Gq) + pb * gb,
                  np.einsum("ij,ij->i", Dk, Gq), pb * gb], axis=1)
    y = (C @ np.linalg.solve(np.eye(3) + K @ C, q[..., None]))[..., 0]
    xq = D * (Gq - y[:, :1] * muq[None, :] - y[:, 1:2] * kq)
    return xq @ Q.T, pb * (gb - y[:, 0] - y[:, 2])


# ------------------------------------------------------------------ public entry point
def natural_gradient(
    model: MLP,
    X: Any,
    grads: Any,
    *,
    method: str,
    damping: float,
    estimator: str = "exact",
    y: Any = None,
    samples: int = 1,
    seed: int | None = None,
    curvature: Curvature | None = None,
) -> Any:
    """The preconditioned step ``(F_approx + damping I)^-1 grads`` of an MLP.

    Parameters
    ----------
    model : MLP (NumPy arrays)
    X : array (N, n_0)
        Inputs over which the curvature is estimated (ignored when ``curvature`` is given).
    grads : list of (dW, db) per layer, or a flat vector (P,)
        The gradient to precondition; the result has the same layout (and dtype).
    method : {"unit", "unit-meanfield", "unit-correlated", "quasi-diagonal", "diag", "full"}
        See the module docstring for what each inverts, its cost and its accuracy.
    damping : float >= 0
        Tikhonov damping added to the diagonal of every block (for ``quasi-diagonal`` and
        ``diag``: to M_ii and M_00 / F_ii). The sample-space ``unit`` solver needs > 0.
    estimator : {"exact", "score", "empirical", "bpm"}
        Per-sample metric weights (module docstring); ``empirical`` needs ``y``. ``exact``
        costs C backward passes (C outputs), ``score`` one per draw, ``bpm`` one pass with
        squared weights (an approximation: it drops cross-unit terms of the backprop).
    samples, seed : label draws per input and their seed for ``estimator="score"``.
    curvature : Curvature, optional
        Precomputed (e.g. averaged) statistics from :func:`curvature` for ``method``.

    Raises ValueError naming the argument for an unknown method or estimator, negative
    damping, grads of the wrong layout, and for singular blocks when damping is 0.
    """
    model = _check_model(model)
    method = _check_method(method)
    lam = _check_damping(damping)
    _check_estimator(estimator)
    parts, flat, dtype = _split_grads(model, grads)
    if curvature is None:
        curvature = globals()["curvature"](model, X, method=method, estimator=estimator, y=y,
                                           samples=samples, seed=seed)
    elif not isinstance(curvature, Curvature) or curvature.method != method:
        raise ValueError(f"argument 'curvature' must be a Curvature of method {method!r}")
    if method == "full":
        F = curvature.dense
        P = F.shape[0]
        g = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in parts])
        try:
            Lc = np.linalg.cholesky(F + lam * np.eye(P))
        except np.linalg.LinAlgError:
            raise ValueError("the damped Fisher matrix is not positive definite; pass damping > 0") from None
        x = np.linalg.solve(Lc.T, np.linalg.solve(Lc, g))
        out = [(w, b) for w, b in model.unflatten(x)]
        return _join(model, out, flat, dtype)
    acts = model.activations + ["identity"]
    out = []
    for l, ((W, b), (gW, gb), st) in enumerate(zip(model.layers, parts, curvature.layers)):
        if method == "unit":
            out.append(_solve_unit(st, gW, gb, lam, l))
        elif method in ("quasi-diagonal", "diag"):
            out.append(_solve_qd(st, gW, gb, lam, l, method == "diag"))
        elif method == "unit-meanfield":
            out.append(_solve_meanfield(st, W, b, gW, gb, lam, acts[l], l))
        else:
            out.append(_solve_correlated(st, W, b, gW, gb, lam, acts[l], l))
    return _join(model, out, flat, dtype)


def layer_inputs(model: MLP, X: Any) -> list[np.ndarray]:
    """Inputs x^{l-1} (N, n_{l-1}) of every layer (a NumPy forward pass)."""
    model = _check_model(model)
    Xc, _ = model._inputs(X)
    acts = model.activations + ["identity"]
    out, A = [], Xc
    for l, (W, b) in enumerate(model.layers):
        out.append(A)
        A = _activate(acts[l], A @ W.T + b)[0]
    return out


def unit_weights(model: MLP, X: Any, *, estimator: str = "exact", y: Any = None, samples: int = 1,
                 seed: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer the per-sample metric weights of every unit, ``g2`` (N, m) for the unit's
    pre-activation and ``b2`` (N, m) for its activity (natgrad.md 0 and 1.3), averaged over
    label draws. The exact unit block is ``Xt^T diag(g2[:, i]) Xt / N``."""
    model = _check_model(model)
    estimator = _check_estimator(estimator)
    Xc, yc = model._inputs(X, y if estimator == "empirical" else None)
    st = _backprop_stats(model, Xc, yc, estimator, int(samples), seed)
    return st.g2, st.b2
