"""The per-layer solves of each natural-gradient method, on the compiled kernels: batched
Cholesky or the sample-space solve (unit), the diagonal-plus-rank-2 solves (unit-meanfield:
the scalar-diagonal row kernel; unit-correlated: dpr2_solve in the eigenbasis of the layer's
input covariance), and the quasi-diagonal update. Orchestration only: the O(m) per-unit
coefficients come from the Gaussian integrals of :mod:`fisherkit.meanfield`."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._loader import _core
from .._validate import check_damping
from ..linalg import dpr2_solve
from ..matrices import _cholesky_solve
from ..meanfield import unit_moments
from ..model import MLP, check_model
from ..kronecker import DAMPING_MODES
from .statistics import KRONECKER_METHODS, Curvature, check_estimator, check_method, eigen
from .statistics import curvature as _curvature

Parts = list[tuple[np.ndarray, np.ndarray]]


def _layer_error(l: int, exc: ValueError) -> ValueError:
    return ValueError(f"layer {l}: {exc}")


def split_grads(model: MLP, grads: Any) -> tuple[Parts, bool, Any]:
    """(per-layer (dW, db) in float64, was_flat, output dtype)."""
    if isinstance(grads, np.ndarray) or (not isinstance(grads, (list, tuple)) and hasattr(grads, "shape")):
        g = np.asarray(grads)
        if g.shape != (model.n_params,):
            raise ValueError(f"argument 'grads' must be a flat vector of shape ({model.n_params},) or a list of "
                             f"(dW, db) per layer, got an array of shape {g.shape}")
        if g.dtype.kind not in "fiu":
            raise TypeError(f"argument 'grads' must be real numeric, got dtype {g.dtype}")
        dt = g.dtype if g.dtype in (np.float32, np.float64) else np.float64
        parts = [(np.asarray(w, np.float64), None if b is None else np.asarray(b, np.float64))
                 for w, b in model.unflatten(g)]
    else:
        if not isinstance(grads, (list, tuple)) or len(grads) != model.n_layers:
            raise ValueError(f"argument 'grads' must be a list of {model.n_layers} (dW, db) pairs (one per layer) "
                             f"or a flat vector of {model.n_params} values")
        parts, dt = [], None
        for l, (pair, (W, b)) in enumerate(zip(grads, model.layers)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"argument 'grads'[{l}] must be a (dW, db) pair")
            if (pair[1] is None) != (b is None):
                raise ValueError(f"argument 'grads'[{l}]: layer {l} {'has no' if b is None else 'has a'} bias, so its "
                                 f"db must be {'None' if b is None else f'an array of shape {b.shape}'}")
            dW = np.asarray(pair[0])
            db = None if b is None else np.asarray(pair[1])
            if dW.shape != W.shape or (db is not None and db.shape != b.shape):
                raise ValueError(f"argument 'grads'[{l}] has shapes {dW.shape}, {None if db is None else db.shape}; "
                                 f"expected {W.shape}, {None if b is None else b.shape}")
            for a in (dW, db):
                if a is not None and a.dtype.kind not in "fiu":
                    raise TypeError(f"argument 'grads'[{l}] must be real numeric, got dtype {a.dtype}")
            dt = dW.dtype if dt is None else np.result_type(dt, dW.dtype)
            parts.append((np.asarray(dW, np.float64), None if db is None else np.asarray(db, np.float64)))
        dt = dt if dt in (np.float32, np.float64) else np.float64
    for l, (dW, db) in enumerate(parts):
        if not (np.isfinite(dW).all() and (db is None or np.isfinite(db).all())):
            raise ValueError(f"argument 'grads' contains NaN or Inf (layer {l})")
    return parts, not isinstance(grads, (list, tuple)), dt


def join(parts: Parts, flat: bool, dtype: Any) -> Any:
    if flat:
        return np.concatenate([w.ravel() if b is None else np.concatenate([w.ravel(), b])
                               for w, b in parts]).astype(dtype, copy=False)
    return [(w.astype(dtype, copy=False), None if b is None else b.astype(dtype, copy=False)) for w, b in parts]


def solve_unit(st: dict[str, Any], gW: np.ndarray, gb: np.ndarray | None, lam: float,
               l: int) -> tuple[np.ndarray, np.ndarray | None]:
    rhs = np.ascontiguousarray(gW if gb is None else np.concatenate([gW, gb[:, None]], axis=1))
    if "blocks" in st:
        x = _cholesky_solve(st["blocks"], rhs[..., None], lam, f"layer {l}, unit")[..., 0]
    else:
        xt, g2 = st["xt"], st["g2"]
        if lam <= 0:
            raise ValueError(f"layer {l}: the batch (N={xt.shape[0]}) is smaller than the fan-in + 1 "
                             f"({xt.shape[1]}), so the unit blocks are singular; pass damping > 0")
        x = np.empty_like(rhs)
        _core.unit_sample_space_solve(np.ascontiguousarray(xt, np.float64), np.ascontiguousarray(g2, np.float64),
                                      rhs, lam, x)
    return (x, None) if gb is None else (x[:, :-1], x[:, -1])


def solve_quasi_diagonal(st: dict[str, Any], gW: np.ndarray, gb: np.ndarray | None, lam: float, l: int,
                         diag_only: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if gb is None:  # no bias: Ollivier's coupling is with the bias, so QD is the diagonal solve
        dW, _ = solve_quasi_diagonal(st, gW, np.zeros(gW.shape[0]), lam, l, True)
        return dW, None
    dW, db = np.empty_like(gW), np.empty_like(gb)
    m0i = None if diag_only else np.ascontiguousarray(st["m0i"], np.float64)
    try:
        _core.quasi_diagonal_solve(np.ascontiguousarray(st["m00"], np.float64), m0i,
                                   np.ascontiguousarray(st["mii"], np.float64), np.ascontiguousarray(gW),
                                   np.ascontiguousarray(gb), lam, dW, db)
    except ValueError as exc:
        raise _layer_error(l, exc) from None
    return dW, db


def solve_meanfield(st: dict[str, Any], W: np.ndarray, b: np.ndarray, gW: np.ndarray, gb: np.ndarray, lam: float,
                    act: str, l: int) -> tuple[np.ndarray, np.ndarray]:
    """The isotropic mean-field unit block with damping, G = beta v A0 (I_n + 0) + lam I +
    beta [h, e] C [h, e]^T (h = (m 1, 1), e = (w / |w|, 0)), solved with its bias eliminated:
    the weight block is a I_n + U S U^T with U = [1, w] (the compiled row kernel)."""
    m, v, beta = float(st["m"]), float(st["v"]), np.asarray(st["beta"], np.float64)
    W64 = np.ascontiguousarray(W, dtype=np.float64)
    r2 = np.einsum("ij,ij->i", W64, W64)
    S_w = W64.sum(axis=1)
    r = np.sqrt(r2)
    live = r > 0
    inv_r = np.where(live, 1.0 / np.where(live, r, 1.0), 0.0)
    bias = b is not None  # without one, the weight block alone: no bias to eliminate
    A0, A1, A2 = unit_moments(act, r * np.sqrt(v), m * S_w + (np.asarray(b, np.float64) if bias else 0.0))
    a = beta * v * A0 + lam
    gamma = beta * A0 + lam if bias else np.ones_like(a)
    if not (np.all(a > 0) and np.all(gamma > 0)):
        raise ValueError(f"layer {l}: the mean-field unit FIM has a zero diagonal (dead unit or constant inputs); "
                         "pass damping > 0")
    sv = np.sqrt(v)
    c00, c01, c11 = beta * A0, beta * sv * A1, beta * v * (A2 - A0)
    # with U = [1, w]: [m 1, w/r] = U diag(m, 1/r), so the weight block's rank-2 core and the
    # weight-bias column are
    c = np.stack([c00 * m, c01 * inv_r], axis=1)
    S = np.stack([c00 * m * m, c01 * m * inv_r, c01 * m * inv_r, c11 * inv_r * inv_r], axis=1)
    if bias:
        S -= (c[:, :, None] * c[:, None, :]).reshape(-1, 4) / gamma[:, None]
    q = np.ascontiguousarray(c * (gb / gamma)[:, None] if bias else np.zeros_like(c))
    dW = np.empty_like(W64)
    ux = np.empty((W64.shape[0], 2))
    try:
        _core.dpr2_rows_solve(np.ascontiguousarray(a), W64, np.ascontiguousarray(S), q, np.ascontiguousarray(gW),
                              dW, ux)
    except ValueError as exc:
        raise _layer_error(l, exc) from None
    if not bias:
        return dW, None
    db = (gb - c[:, 0] * ux[:, 0] - c[:, 1] * ux[:, 1]) / gamma
    return dW, db


def solve_correlated(st: dict[str, Any], W: np.ndarray, b: np.ndarray, gW: np.ndarray, gb: np.ndarray, lam: float,
                     act: str, l: int) -> tuple[np.ndarray, np.ndarray]:
    """The correlated-input unit block, G = beta (A0 (Sigma + 0) + A0 h h^T + A1 (h k^T + k h^T)
    + (A2 - A0) k k^T) + lam I with h = (mu, 1), k = (Sigma w / sigma_u, 0): in the eigenbasis Q
    of Sigma the weight block is diag(beta A0 ev + lam) + U S U^T with U = [Q^T mu, Q^T k]
    (dpr2_solve for all units), the bias eliminated by its Schur complement."""
    mu, beta = np.asarray(st["mu"], np.float64), np.asarray(st["beta"], np.float64)
    eig = st if "Q" in st else eigen(st["sigma"])
    ev, Q = eig["ev"], eig["Q"]
    W64 = np.asarray(W, np.float64)
    Wq = W64 @ Q
    muq = Q.T @ mu
    Gq = gW @ Q
    su = np.sqrt((Wq * Wq) @ ev)
    live = su > 0
    kq = np.where(live[:, None], Wq * ev[None, :] / np.where(live, su, 1.0)[:, None], 0.0)  # Q^T Sigma w / sigma_u
    bias = b is not None  # without one, the weight block alone: no bias to eliminate
    A0, A1, A2 = unit_moments(act, su, W64 @ mu + (np.asarray(b, np.float64) if bias else 0.0))
    d = (beta * A0)[:, None] * ev[None, :] + lam
    gamma = beta * A0 + lam if bias else np.ones_like(A0)
    if not (np.all(d > 0) and np.all(gamma > 0)):
        raise ValueError(f"layer {l}: the correlated-input unit FIM is singular (degenerate input covariance or "
                         "dead unit); pass damping > 0")
    c = np.stack([beta * A0, beta * A1], axis=1)
    S = np.stack([beta * A0, beta * A1, beta * A1, beta * (A2 - A0)], axis=1)
    if bias:
        S -= (c[:, :, None] * c[:, None, :]).reshape(-1, 4) / gamma[:, None]
    U = np.stack([np.broadcast_to(muq, kq.shape), kq], axis=2)
    q = c * (gb / gamma)[:, None] if bias else np.zeros_like(c)
    rhs = Gq - muq[None, :] * q[:, :1] - kq * q[:, 1:]
    try:
        xq = dpr2_solve(d, U, S.reshape(-1, 2, 2), rhs)
    except ValueError as exc:
        raise _layer_error(l, exc) from None
    if not bias:
        return xq @ Q.T, None
    ux0, ux1 = xq @ muq, np.einsum("ij,ij->i", kq, xq)
    db = (gb - c[:, 0] * ux0 - c[:, 1] * ux1) / gamma
    return xq @ Q.T, db


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
    damping_mode: str = "exact",
    progress: Any = None,
) -> Any:
    """The preconditioned step ``(F_approx + damping I)^-1 grads`` of an MLP.

    Parameters
    ----------
    model : MLP (NumPy arrays)
    X : array (N, n_0)
        Inputs over which the curvature is estimated (ignored when ``curvature`` is given).
    grads : list of (dW, db) per layer, or a flat vector (P,)
        The gradient to precondition; the result has the same layout (and dtype).
    method : {"unit", "unit-meanfield", "unit-correlated", "quasi-diagonal", "diag", "full", "kfac", "ekfac"}
        See :mod:`fisherkit.natgrad` for what each inverts, its cost and its accuracy.
        ``kfac`` / ``ekfac``: the layer blocks of ``fisher(..., shape="kfac" | "ekfac")``,
        solved by the matrix object (docs/maths/kfac.rst#kfac-damping).
    damping : float >= 0
        Tikhonov damping added to the diagonal of every block (for ``quasi-diagonal`` and
        ``diag``: to M_ii and M_00 / F_ii). The sample-space ``unit`` solver needs > 0.
    damping_mode : {"exact", "factored"}
        Method ``kfac`` only: ``exact`` adds the damping to each Kronecker block exactly
        (through the factors' eigendecompositions); ``factored`` is Martens & Grosse's factored
        Tikhonov damping with their pi correction.
    estimator : {"exact", "score", "empirical", "bpm"}
        Per-sample metric weights (``kfac``/``ekfac``: not ``bpm``); ``empirical`` needs ``y``. ``exact`` costs C backward rows
        per input (C outputs), ``score`` one per draw, ``bpm`` one GEMM per layer with squared
        weights (an approximation: it drops cross-unit terms of the backprop).
    samples, seed : label draws per input and their seed for ``estimator="score"``.
    curvature : Curvature, optional
        Precomputed (e.g. averaged) statistics from :func:`curvature` for ``method``.
    progress : None, True or callable
        Report the pass over X between chunks: a callable taking (done, total) inputs, or
        True for a progress bar (tqdm). Ctrl-C stops it at the next chunk in any case.

    Raises ValueError naming the argument for an unknown method or estimator, negative
    damping, grads of the wrong layout or with NaN/Inf, and for singular blocks (naming the
    layer and unit) when the damping is too small.
    """
    model = check_model(model, host_only=True, what="natural gradients")
    method = check_method(method)
    lam = check_damping(damping)
    check_estimator(estimator)
    if damping_mode not in DAMPING_MODES:
        raise ValueError(f"argument 'damping_mode' must be one of {', '.join(DAMPING_MODES)}, got {damping_mode!r}")
    if damping_mode != "exact" and method != "kfac":
        raise ValueError(f"argument 'damping_mode': {damping_mode!r} damping applies to method 'kfac' only")
    parts, flat, dtype = split_grads(model, grads)
    if curvature is None:
        curvature = _curvature(model, X, method=method, estimator=estimator, y=y, samples=samples, seed=seed,
                               progress=progress)
    elif not isinstance(curvature, Curvature) or curvature.method != method:
        raise ValueError(f"argument 'curvature' must be a Curvature of method {method!r}")
    if method in KRONECKER_METHODS:
        g = join(parts, True, np.float64)
        M = curvature.matrix
        kw = {"damping_mode": damping_mode} if method == "kfac" else {}
        return join([(w, b) for w, b in model.unflatten(np.asarray(M.solve(g, lam, **kw), np.float64))], flat, dtype)
    if method == "full":
        g = join(parts, True, np.float64)
        try:
            x = _cholesky_solve(curvature.dense[None], g[None, :, None], lam, "block")[0, :, 0]
        except ValueError:
            raise ValueError("the damped Fisher matrix is not positive definite; pass damping > 0") from None
        return join([(w, b) for w, b in model.unflatten(x)], flat, dtype)
    acts = model.activations + ["identity"]
    out = []
    for l, ((W, b), (gW, gb), st) in enumerate(zip(model.layers, parts, curvature.layers)):
        if method == "unit":
            out.append(solve_unit(st, gW, gb, lam, l))
        elif method in ("quasi-diagonal", "diag"):
            out.append(solve_quasi_diagonal(st, gW, gb, lam, l, method == "diag"))
        elif method == "unit-meanfield":
            out.append(solve_meanfield(st, W, b, gW, gb, lam, acts[l], l))
        else:
            out.append(solve_correlated(st, W, b, gW, gb, lam, acts[l], l))
    return join(out, flat, dtype)
