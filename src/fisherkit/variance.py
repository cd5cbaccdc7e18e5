"""How good is a Fisher estimate: closed-form variances of the sampled estimators.

``fisherkit.fisher(model, X, estimator="score" | "hessian", samples=S)`` averages, over the N
inputs and S label draws per input, a random matrix whose mean is the exact Fisher. This
module returns the *element-wise variance* of that estimate (math/variance.md sections 4-5),
its covariance between the two estimators (same draws), bounds, a per-parameter
recommendation with the optimal mixing weight, the draws needed for a target relative error,
a Monte Carlo check, and directional and total (trace) summaries.

Scaling (math/variance.md 4.2). With the inputs fixed and the labels drawn from the model:

    Var(I_hat) = 1/(N^2 S) * sum_n C_k(x_n),

where C_k(x) is the per-input, single-draw element-wise variance:
``Var(I1_ij) = K(J_i,J_j,J_i,J_j) - F_ij^2``, ``Var(I2_ij) = H_ij^T I(h) H_ij`` and
``Cov(I1_ij, I2_ij) = -kappa3(J_i, J_j, H_ij)``. With ``population=True`` the input-sampling
part (1/N) * Cov_x(F(x)) is added, estimated by the sample variance of the per-input Fisher
entries across the given inputs.

Cost. ``shape="diag"`` and ``"unit"`` reduce to per-unit scalars (q, r, w, c) and one GEMM
per layer over inputs, as the exact Fisher does; the Hessian estimator needs the output
Hessian's diagonal per unit (the T recursion). ``"layer"`` and ``"full"`` form per-input output
Jacobians and (for the Hessian estimator) output Hessians, O(C P^2) memory per input: small
problems only, refused with MemoryError beyond the memory budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from . import heads as _heads
from ._backend import is_dask
from ._loader import _core
from ._validate import as_chunk, check_fits, format_bytes
from .fisher import _wrap, fisher, result_size
from .matrices import FisherMatrix, _layer_geometry
from .model import MLP

__all__ = [
    "variance",
    "covariance",
    "variance_bounds",
    "recommend",
    "Recommendation",
    "samples_needed",
    "monte_carlo_variance",
    "directional_variance",
]

VARIANCE_SHAPES = ("full", "layer", "unit", "diag", "trace")
_SAMPLED = ("score", "hessian")
_WHICH = {"score": "v1", "hessian": "v2"}
_WORKSPACE = 64 << 20  # bytes of float64 workspace per chunk in the Python paths


# ============================================================================ validation
def _check_model(model: Any) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
    return model


def _check_estimator(estimator: str, name: str = "estimator") -> str:
    if estimator == "empirical":
        raise ValueError(
            "the variance of the empirical Fisher is not a function of the model: its labels come "
            "from the data, so its variance (and its bias) needs the data distribution q(y|x); "
            "use estimator='score' or 'hessian', or measure it over resampled data")
    if estimator not in ("exact",) + _SAMPLED:
        raise ValueError(f"unknown {name} {estimator!r}; expected 'score', 'hessian' or 'exact'")
    return estimator


def _check_samples(samples: Any) -> int:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)):
        raise TypeError(f"argument 'samples' must be an integer, got {type(samples).__name__}")
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"argument 'samples' must be >= 1, got {samples}")
    return samples


def _check_shape(shape: str, allowed: Sequence[str]) -> str:
    if shape not in allowed:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(allowed)}")
    return shape


def _rows(model: MLP, X: Any) -> Any:
    """The validated inputs (model._inputs), copied when a one-row view has row stride 0
    (NumPy's x[None]), which BLAS rejects as a leading dimension."""
    Xc, _ = model._inputs(X)
    if Xc.shape[0] == 1 and Xc.strides[0] == 0:
        Xc = Xc.copy()
    return Xc


def _host(a: Any) -> np.ndarray:
    get = getattr(a, "get", None)  # CuPy -> NumPy
    return np.asarray(get() if callable(get) else a)


def _model64(model: MLP) -> MLP:
    """The model in float64 on the host (the Python small-problem paths compute in float64
    and round once to the model's dtype)."""
    if model.dtype == np.float64 and model.xp is np:
        return model
    return MLP([(_host(W), _host(b)) for W, b in model.layers], model.activations, model.head,
               sigma=model.sigma, dtype=np.float64)


# ============================================================================ activations
def _act(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi, phi', phi'' of a hidden activation, float64, vectorised."""
    if name == "identity":
        return z, np.ones_like(z), np.zeros_like(z)
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(z.dtype), np.zeros_like(z)
    if name == "tanh":
        t = np.tanh(z)
        d = 1.0 - t * t
        return t, d, -2.0 * t * d
    if name == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * z))
        d = s * (1.0 - s)
        return s, d, d * (1.0 - 2.0 * s)
    if name == "softplus":
        s = 0.5 * (1.0 + np.tanh(0.5 * z))
        return np.logaddexp(0.0, z), s, s * (1.0 - s)
    if name == "erf":
        from scipy.special import erf  # scipy is a dependency of the test/bench extras only

        g = (2.0 / math.sqrt(math.pi)) * np.exp(-z * z)
        return erf(z), g, -2.0 * z * g
    raise ValueError(f"unknown activation {name!r}")  # pragma: no cover - validated by MLP


# ============================================================================ per-unit factors
@dataclass
class _Layer:
    """Per-input factors of one layer for a chunk of m inputs (float64):
    abar (m, n_in+1), G = dh/dz_l (m, C, n_l), Tdiag = T_l[c, u, u] (m, C, n_l) or None."""

    abar: np.ndarray
    G: np.ndarray
    Tdiag: np.ndarray | None


def _chunks(n: int, per_input_bytes: int, chunk: int | None) -> Iterator[slice]:
    m = int(chunk) if chunk else max(1, _WORKSPACE // max(per_input_bytes, 1))
    for a in range(0, n, m):
        yield slice(a, min(n, a + m))


def _factors(m64: MLP, X: np.ndarray, need_T: bool) -> tuple[np.ndarray, list[_Layer]]:
    """Natural parameters h (m, C) and per-layer factors (math/variance.md 5.2): G_L = I,
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
            a = _act(acts[l], z)[0]
    h = zs[-1]
    m, C = h.shape
    G = np.broadcast_to(np.eye(C), (m, C, C))
    Gs: list[np.ndarray] = [np.ascontiguousarray(G)] * L
    d1s: list[np.ndarray] = [np.empty(0)] * L
    vs: list[np.ndarray] = [np.empty(0)] * L
    for l in range(L - 2, -1, -1):
        _, d1, d2 = _act(acts[l], zs[l])
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


def _unit_scalars(m64: MLP, h: np.ndarray, lay: _Layer) -> tuple[np.ndarray, ...]:
    """q, r (and w, c when Tdiag is known), each (m, n_l), from the head-moment binding."""
    m, C, n = lay.G.shape
    q, r = np.empty((m, n)), np.empty((m, n))
    w = np.empty((m, n)) if lay.Tdiag is not None else None
    c = np.empty((m, n)) if lay.Tdiag is not None else None
    Td = None if lay.Tdiag is None else lay.Tdiag.reshape(m, C * n)
    _core.head_unit_scalars(m64.head, m64.sigma, h, np.ascontiguousarray(lay.G).reshape(m, C * n), Td, q, r, w, c)
    return q, r, w, c


def _per_unit_bytes(model: MLP, need_T: bool) -> int:
    C = model.output_dim
    n = max(model.sizes)
    return 8 * (3 * n * n * int(need_T) + 6 * C * n + 4 * sum(model.sizes))


def _numpy_variance_sum(model: MLP, X: np.ndarray, which: str, shape: str, chunk: int | None) -> np.ndarray:
    """NumPy reference of ``_core.variance_sum`` (float64): the SUM over inputs of the
    per-input, single-draw element-wise quantity `which` in the flat layout of `shape`."""
    m64 = _model64(model)
    need_T = which in ("v2", "c12")
    geo = _layer_geometry(model.sizes)
    acc = [np.zeros((o, i + 1)) if shape == "diag" else np.zeros((o, i + 1, i + 1)) for o, i, _ in geo]
    for sl in _chunks(X.shape[0], _per_unit_bytes(model, need_T), chunk):
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


def _variance_sum(model: MLP, X: Any, which: str, shape: str, chunk: int | None) -> Any:
    """The compiled ``_core.variance_sum`` (diag/unit): the flat sum over inputs, in the
    model's dtype. ``_numpy_variance_sum`` is its float64 NumPy reference (tests)."""
    out = model.xp.empty(result_size(model.sizes, shape), dtype=model.dtype)
    _core.variance_sum(*model._core_args(), model.head, model.sigma, X, which, shape, as_chunk(chunk), out)
    return out


# ============================================================================ element-wise (small problems)
def _output_hessians(m64: MLP, X: np.ndarray) -> np.ndarray:
    """(m, C, P, P) output Hessians d^2 h_c / dtheta^2 of a float64 model."""
    m, C, P = X.shape[0], m64.output_dim, m64.n_params
    out = np.empty((m, C * P * P))
    _core.output_hessians(*m64._core_args(), X, out)
    return out.reshape(m, C, P, P)


def _fourth(head: str, sigma: float, h: np.ndarray, U: np.ndarray, V: np.ndarray, W: np.ndarray,
            Z: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape[0])
    _core.head_fourth_moment(head, sigma, h, U, V, W, Z, out, False)
    return out


def _third(head: str, sigma: float, h: np.ndarray, U: np.ndarray, V: np.ndarray, W: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape[0])
    _core.head_third_cumulant(head, sigma, h, U, V, W, out)
    return out


def _quadratic(head: str, sigma: float, h: np.ndarray, U: np.ndarray, V: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape[0])
    _core.head_quadratic(head, sigma, h, U, V, out)
    return out


def _blocks_of(model: MLP, shape: str) -> list[tuple[int, int]]:
    P = model.n_params
    if shape == "full":
        return [(0, P)]
    return [(off, off + o * i + o) for o, i, off in _layer_geometry(model.sizes)]


def _elementwise_sum(model: MLP, X: np.ndarray, which: str, shape: str, chunk: int | None,
                     max_bytes: int | None) -> np.ndarray:
    """SUM over inputs of the per-input element-wise quantity for shape 'full' or 'layer'
    (flat, fisher's layout), from per-input Jacobians and output Hessians in float64."""
    m64 = _model64(model)
    C, P = model.output_dim, model.n_params
    blocks = _blocks_of(model, shape)
    D2 = sum((b - a) ** 2 for a, b in blocks)
    need_H = which in ("v2", "c12")
    per_input = 8 * (C * P + (C * P * P if need_H else 0) + 6 * C * max((b - a) ** 2 for a, b in blocks))
    check_fits(8 * D2 + per_input,
               f"the element-wise {which} variance of shape {shape!r} ({P} parameters; per input "
               f"{format_bytes(per_input)} for Jacobian{', output Hessians' if need_H else ''} and workspace)",
               "use shape='unit' or shape='diag', which stream per-unit scalars", max_bytes)
    acc = [np.zeros((b - a, b - a)) for a, b in blocks]
    head, sigma = model.head, model.sigma
    for sl in _chunks(X.shape[0], per_input, chunk):
        Xs = X[sl]
        m = Xs.shape[0]
        h = np.asarray(m64.forward(Xs))
        J = np.asarray(m64.jacobian(Xs))  # (m, C, P)
        Hs = _output_hessians(m64, Xs) if need_H else None
        Icov = np.asarray(_heads.covariance(head, h, sigma=sigma))  # (m, C, C)
        for k, (a, b) in enumerate(blocks):
            D = b - a
            Jb = J[:, :, a:b]
            if which == "fsq":
                F = np.einsum("mci,mcd,mdj->mij", Jb, Icov, Jb, optimize=True)
                acc[k] += (F * F).sum(axis=0)
                continue
            if which == "v2":
                Hb = Hs[:, :, a:b, a:b]
                acc[k] += np.einsum("mcij,mcd,mdij->ij", Hb, Icov, Hb, optimize=True)
                continue
            JT = np.ascontiguousarray(Jb.transpose(0, 2, 1))  # (m, D, C)
            Ui = np.broadcast_to(JT[:, :, None, :], (m, D, D, C)).reshape(-1, C)
            Vj = np.broadcast_to(JT[:, None, :, :], (m, D, D, C)).reshape(-1, C)
            hr = np.repeat(h, D * D, axis=0)
            if which == "v1":
                F = np.einsum("mci,mcd,mdj->mij", Jb, Icov, Jb, optimize=True)
                K = _fourth(head, sigma, hr, Ui, Vj, Ui, Vj).reshape(m, D, D)
                acc[k] += (K - F * F).sum(axis=0)
            else:  # c12
                Hv = np.ascontiguousarray(Hs[:, :, a:b, a:b].transpose(0, 2, 3, 1)).reshape(-1, C)
                acc[k] -= _third(head, sigma, hr, Ui, Vj, Hv).reshape(m, D, D).sum(axis=0)
    return np.concatenate([blk.ravel() for blk in acc])


def _sum(model: MLP, Xc: Any, which: str, shape: str, chunk: int | None, max_bytes: int | None) -> np.ndarray:
    if shape in ("diag", "unit"):
        return _variance_sum(model, Xc, which, shape, chunk)
    return _elementwise_sum(model, np.asarray(_host(Xc), dtype=np.float64), which, shape, chunk, max_bytes)


def _x_part(model: MLP, Xc: Any, shape: str, chunk: int | None, max_bytes: int | None) -> Any:
    """(1/N) * sample variance across inputs of the per-input exact Fisher entries (flat)."""
    n = Xc.shape[0]
    if n < 2:
        raise ValueError("population=True estimates the input-sampling variance from the spread of the "
                         "per-input Fisher matrices: it needs at least 2 inputs")
    fsq = _sum(model, Xc, "fsq", shape, chunk, max_bytes)
    mean = _flat_values(fisher(model, Xc, estimator="exact", shape=shape, chunk=chunk, max_bytes=max_bytes))
    xp = model.xp
    mean = xp.asarray(mean, dtype=np.float64)
    fsq = xp.asarray(fsq, dtype=np.float64)
    return xp.maximum(fsq - n * mean * mean, 0.0) / ((n - 1) * n)


def _flat_values(M: FisherMatrix) -> Any:
    xp = M.xp
    return xp.concatenate([xp.asarray(b).ravel() for b in M.blocks]) if M.shape_name != "diag" else M.values


def _finish(model: MLP, flat: Any, shape: str, n: int, label: str) -> FisherMatrix:
    xp = model.xp
    return _wrap(xp.ascontiguousarray(xp.asarray(flat).astype(model.dtype, copy=False)), model.sizes, shape, n, label)


# ============================================================================ public API
def variance(
    model: MLP,
    X: Any,
    *,
    estimator: str = "score",
    shape: str = "diag",
    samples: int = 1,
    population: bool = False,
    chunk: int | None = None,
    max_bytes: int | None = None,
) -> FisherMatrix | float:
    """Element-wise variance of ``fisher(model, X, estimator=..., shape=..., samples=...)``.

    Parameters
    ----------
    model : MLP
    X : array (N, n_0)
        The inputs the estimate averages over.
    estimator : {"score", "hessian", "exact"}
        ``score`` (I1, per draw J^T tau tau^T J) or ``hessian`` (I2, per draw
        J^T I J - sum_a tau_a H_a). ``exact`` has no sampling noise: zeros. ``empirical``
        raises ValueError: its labels come from the data, so its variance needs the data
        distribution.
    shape : {"diag", "unit", "layer", "full", "trace"}
        The layout of the result, the same as :func:`fisherkit.fisher` returns for that
        shape (``full``: the P x P matrix of Var(I_ij); ``layer``/``unit``: per block).
        ``trace`` returns the float sum_ij Var(I_ij) over all P^2 entries (math/variance.md
        4.5): for ``score`` from the C x C Gram J J^T per input, built from per-layer factors
        without any P x P (or C x P) object; for ``hessian`` from sum_ab I_ab <H_a, H_b>_F,
        which needs the C output Hessians (C P^2 per input): small problems only.
    samples : int
        Label draws per input S: the variance scales as 1/S.
    population : bool
        False (default): inputs fixed, randomness from the drawn labels only,
        Var = 1/(N^2 S) sum_n C(x_n). True: the inputs are also treated as a sample from the
        input distribution and (1/N) Cov_x(F(x)) is added. That x-part is an *estimate* (the
        sample variance of the per-input Fisher entries across the N given inputs, needs
        N >= 2), not a closed form; it is the same for both estimators.
    chunk : int, optional
        Inputs per chunk (default: automatic).
    max_bytes : int, optional
        Memory budget for the ``layer``/``full``/``trace`` small-problem paths (default: half
        the available memory); beyond it MemoryError names the bytes.

    Returns
    -------
    Diagonal, UnitBlocks, LayerBlocks or Dense holding variances (``estimator`` reads e.g.
    ``"var(score)"``), or a float for ``shape="trace"``.

    Cost: ``diag``/``unit`` as the exact Fisher of that shape plus, for ``hessian``, the
    output-Hessian diagonal per unit; ``layer``/``full``: O(N C P^2) time and O(C P^2)
    memory per input.
    """
    if is_dask(X):  # Dask arrays: raw sums per row block, combined (fisherkit.distributed)
        from . import distributed  # lazy: distributed imports this module
        return distributed.variance(model, X, estimator=estimator, shape=shape, samples=samples,
                                    population=population, chunk=chunk, max_bytes=max_bytes)
    model = _check_model(model)
    estimator = _check_estimator(estimator)
    shape = _check_shape(shape, VARIANCE_SHAPES)
    samples = _check_samples(samples)
    Xc = _rows(model, X)
    n = Xc.shape[0]
    if shape == "trace":
        return _trace(model, Xc, estimator, samples, population, chunk, max_bytes)
    label = f"var({estimator})"
    if estimator == "exact" and not population:
        return _finish(model, model.xp.zeros(result_size(model.sizes, shape)), shape, n, label)
    xp = model.xp
    total = xp.zeros(result_size(model.sizes, shape), dtype=np.float64)
    if estimator != "exact":
        total = total + xp.asarray(_sum(model, Xc, _WHICH[estimator], shape, chunk, max_bytes),
                                   dtype=np.float64) / (float(n) * n * samples)
    if population:
        total = total + _x_part(model, Xc, shape, chunk, max_bytes)
    return _finish(model, total, shape, n, label)


def _stderr(model: MLP, X: Any, estimator: str, shape: str, samples: int, chunk: int | None = None,
            max_bytes: int | None = None) -> FisherMatrix:
    """Standard errors sqrt(Var) of ``fisher(model, X, estimator, shape, samples)`` (fixed
    inputs), as a matrix object of the same layout: what ``fisher(..., with_stderr=True)``
    returns next to the estimate. ``exact`` gives zeros; ``empirical`` raises ValueError."""
    V = variance(model, X, estimator=estimator, shape=shape, samples=samples, chunk=chunk, max_bytes=max_bytes)
    xp = model.xp
    flat = xp.sqrt(xp.maximum(xp.asarray(_flat_values(V)), 0))  # type: ignore[arg-type]
    return _wrap(flat, model.sizes, shape, V.n_samples, f"stderr({estimator})")  # type: ignore[union-attr]


def covariance(
    model: MLP,
    X: Any,
    estimator_pair: tuple[str, str] = ("score", "hessian"),
    shape: str = "diag",
    samples: int = 1,
    *,
    population: bool = False,
    chunk: int | None = None,
    max_bytes: int | None = None,
) -> FisherMatrix:
    """Element-wise covariance Cov(I1_ij, I2_ij) of the score and Hessian estimates computed
    from the *same* label draws (``fisher(..., seed=s)`` for both estimators):
    1/(N^2 S) sum_n -kappa3(J_i, J_j, H_ij) (math/variance.md 4.1). A pair of equal estimators
    gives :func:`variance`; a pair with ``"exact"`` gives zeros (plus the x-part with
    ``population=True``, which is the same for every pair). Shapes as :func:`variance`
    except ``trace``."""
    model = _check_model(model)
    if not isinstance(estimator_pair, (tuple, list)) or len(estimator_pair) != 2:
        raise ValueError(f"argument 'estimator_pair' must be a pair of estimator names, got {estimator_pair!r}")
    e1 = _check_estimator(estimator_pair[0], "estimator_pair[0]")
    e2 = _check_estimator(estimator_pair[1], "estimator_pair[1]")
    shape = _check_shape(shape, ("full", "layer", "unit", "diag"))
    samples = _check_samples(samples)
    if e1 == e2:
        return variance(model, X, estimator=e1, shape=shape, samples=samples, population=population,
                        chunk=chunk, max_bytes=max_bytes)  # type: ignore[return-value]
    Xc = _rows(model, X)
    n = Xc.shape[0]
    xp = model.xp
    total = xp.zeros(result_size(model.sizes, shape), dtype=np.float64)
    if "exact" not in (e1, e2):
        total = total + xp.asarray(_sum(model, Xc, "c12", shape, chunk, max_bytes), dtype=np.float64) / (float(n) * n * samples)
    if population:
        total = total + _x_part(model, Xc, shape, chunk, max_bytes)
    return _finish(model, total, shape, n, f"cov({e1},{e2})")


def _trace(model: MLP, Xc: Any, estimator: str, samples: int, population: bool, chunk: int | None,
           max_bytes: int | None) -> float:
    n = Xc.shape[0]
    if estimator == "exact" and not population:
        return 0.0
    m64 = _model64(model)
    X = np.asarray(_host(Xc), dtype=np.float64)
    head, sigma = model.head, model.sigma
    C, P = model.output_dim, model.n_params
    total = 0.0
    frob_n = 0.0  # sum_n ||F(x_n)||_F^2 = tr(I G I G)
    if estimator == "hessian":
        per_input = 8 * C * P * P * 2
        check_fits(per_input, f"variance(shape='trace', estimator='hessian') of {P} parameters (C output "
                   f"Hessians of P x P per input: {format_bytes(per_input)})",
                   "use variance(shape='diag').trace() for the diagonal part, or estimator='score'", max_bytes)
    for sl in _chunks(n, _per_unit_bytes(model, False) + (8 * C * P * P * 2 if estimator == "hessian" else 0), chunk):
        h, layers = _factors(m64, X[sl], need_T=False)
        # Gram G = J J^T = sum_l ||abar_{l-1}||^2 G_l G_l^T (J_(l,u,j) = G_l[:, u] abar_j)
        Gram = sum((lay.abar * lay.abar).sum(axis=1)[:, None, None] * (lay.G @ lay.G.transpose(0, 2, 1))
                   for lay in layers)
        Icov = np.asarray(_heads.covariance(head, h, sigma=sigma))
        IG = Icov @ Gram
        tr_igig = np.einsum("mab,mba->m", IG, IG)
        frob_n += float(tr_igig.sum())
        if estimator == "score":
            lam, V = np.linalg.eigh(Gram)
            B = V * np.sqrt(np.maximum(lam, 0.0))[:, None, :]  # Gram = B B^T, columns b_k
            m = B.shape[0]
            Bt = np.ascontiguousarray(B.transpose(0, 2, 1))  # (m, k, C)
            U = np.broadcast_to(Bt[:, :, None, :], (m, C, C, C)).reshape(-1, C)
            W = np.broadcast_to(Bt[:, None, :, :], (m, C, C, C)).reshape(-1, C)
            K = _fourth(head, sigma, np.repeat(h, C * C, axis=0), U, U, W, W)
            total += float(K.sum()) - float(tr_igig.sum())
        elif estimator == "hessian":
            Hs = _output_hessians(m64, X[sl])
            Gam = np.einsum("mapq,mbpq->mab", Hs, Hs, optimize=True)
            total += float(np.einsum("mab,mab->", Icov, Gam))
    out = total / (float(n) * n * samples) if estimator != "exact" else 0.0
    if population:
        if n < 2:
            raise ValueError("population=True needs at least 2 inputs")
        check_fits(8 * P * P, f"the x-part of variance(shape='trace', population=True) ({P} x {P} mean Fisher)",
                   "use population=False, or shape='diag' with population=True", max_bytes)
        Fm = np.asarray(_host(fisher(m64, X, estimator="exact", shape="full", chunk=chunk).matrix))
        out += max(frob_n - n * float((Fm * Fm).sum()), 0.0) / ((n - 1) * n)
    return out


def directional_variance(
    model: MLP,
    X: Any,
    u: Any,
    estimator: str = "score",
    *,
    samples: int = 1,
    population: bool = False,
) -> float:
    """Var(u^T I_hat u) of the estimate along the parameter direction `u` (P,)
    (math/variance.md 4.5), by one forward-mode pass over X: per input
    Var(u^T I1 u) = K(Ju, Ju, Ju, Ju) - (u^T F u)^2 and Var(u^T I2 u) = d^T I d with
    d_a = u^T H_a u (``MLP.jvp(second_order=True)``); fixed-X scaling 1/(N^2 S) sum_n, plus
    (1/N) * the sample variance of u^T F(x_n) u across inputs with ``population=True``."""
    model = _check_model(model)
    estimator = _check_estimator(estimator)
    samples = _check_samples(samples)
    Xc = _rows(model, X)
    n = Xc.shape[0]
    m64 = _model64(model)
    X64 = np.asarray(_host(Xc), dtype=np.float64)
    uv = np.asarray(_host(m64._direction(_host(u), "u")), dtype=np.float64)
    if not np.all(np.isfinite(uv)):
        raise ValueError("argument 'u' must be finite")
    h = np.asarray(m64.forward(X64))
    Ju, d = m64.jvp(X64, uv, second_order=True)
    head, sigma = model.head, model.sigma
    quad = _quadratic(head, sigma, h, Ju, Ju)
    if estimator == "score":
        per = _fourth(head, sigma, h, Ju, Ju, Ju, Ju) - quad * quad
    elif estimator == "hessian":
        per = _quadratic(head, sigma, h, d, d)
    else:
        per = np.zeros(n)
    out = float(per.sum()) / (float(n) * n * samples)
    if population:
        if n < 2:
            raise ValueError("population=True needs at least 2 inputs")
        out += float(np.var(quad, ddof=1)) / n
    return out


def variance_bounds(
    model: MLP,
    X: Any,
    estimator: str = "score",
    samples: int = 1,
    *,
    chunk: int | None = None,
) -> tuple[FisherMatrix, FisherMatrix]:
    """Per-parameter (lower, upper) bounds on the diagonal variance of ``estimator``
    (math/variance.md 5.4), as two Diagonal objects with the fixed-X scaling 1/(N^2 S) sum_n:

        score:   ||J_i||^4 k_min - F_ii^2  <=  V1_i  <=  ||J_i||^4 k_max - F_ii^2
        hessian: ||H_i||^2 lambda_min      <=  V2_i  <=  ||H_i||^2 lambda_max

    with ||J_(l,u,j)|| = |abar_j| ||G_l[:, u]||, ||H_(l,u,j)|| = abar_j^2 ||T_l[:, u, u]|| and the
    head's spectral constants (2.1). For the categorical head the centred vectors are used
    (tighter); negative per-input lower bounds are raised to 0. For the Gaussian head both
    bounds are equalities. Uses per-input output-Jacobian/Hessian factors per unit in NumPy:
    O(N C n^3) per layer, meant for moderate widths."""
    model = _check_model(model)
    estimator = _check_estimator(estimator)
    samples = _check_samples(samples)
    Xc = _rows(model, X)
    n = Xc.shape[0]
    size = result_size(model.sizes, "diag")
    if estimator == "exact":
        z = model.xp.zeros(size)
        return _finish(model, z, "diag", n, "lower(exact)"), _finish(model, z, "diag", n, "upper(exact)")
    m64 = _model64(model)
    X64 = np.asarray(_host(Xc), dtype=np.float64)
    need_T = estimator == "hessian"
    geo = _layer_geometry(model.sizes)
    lo = [np.zeros((o, i + 1)) for o, i, _ in geo]
    hi = [np.zeros((o, i + 1)) for o, i, _ in geo]
    for sl in _chunks(n, _per_unit_bytes(model, need_T), chunk):
        h, layers = _factors(m64, X64[sl], need_T)
        consts = np.empty((h.shape[0], 4))
        _core.head_spectral_constants(model.head, model.sigma, h, consts)
        lmin, lmax, kmin, kmax = (consts[:, k:k + 1] for k in range(4))
        p = np.asarray(_heads.mean("categorical", h)) if model.head == "categorical" else None
        for l, lay in enumerate(layers):
            a4 = lay.abar ** 4
            if estimator == "score":
                g = lay.G
                if p is not None:
                    g = g - np.einsum("mc,mcu->mu", p, g)[:, None, :]
                ng2 = (g * g).sum(axis=1)
                q = _unit_scalars(m64, h, _Layer(lay.abar, lay.G, None))[0]
                blo = np.maximum(ng2 * ng2 * kmin - q * q, 0.0)
                bhi = np.maximum(ng2 * ng2 * kmax - q * q, 0.0)
            else:
                t = lay.Tdiag
                if p is not None:
                    t = t - np.einsum("mc,mcu->mu", p, t)[:, None, :]
                nt2 = (t * t).sum(axis=1)
                blo, bhi = nt2 * lmin, nt2 * lmax
            lo[l] += blo.T @ a4
            hi[l] += bhi.T @ a4
    scale = 1.0 / (float(n) * n * samples)
    return (_finish(model, _flatten(lo, "diag") * scale, "diag", n, f"lower({estimator})"),
            _finish(model, _flatten(hi, "diag") * scale, "diag", n, f"upper({estimator})"))


# ============================================================================ recommendation
@dataclass
class Recommendation:
    """Per-parameter choice between the score (I1) and Hessian (I2) estimators at equal draws.

    Attributes (flat arrays in fisher's layout of `shape`):
      v_score, v_hessian, cov : Var(I1), Var(I2), Cov(I1, I2) (same draws), fixed-X scaling.
      alpha : the variance-minimising weight of the unbiased mix alpha I1 + (1 - alpha) I2,
        alpha* = (V2 - C12) / (V1 + V2 - 2 C12); 0 where I1 = I2 almost surely (denominator 0).
      v_mix : the variance of the mix at alpha*.
      hessian_wins : True where V2 <= V1 (ties, e.g. both zero, go to the Hessian estimator,
        which is exact in the last layer).
      layers : per layer a dict: layer, n_params, frac_score, frac_hessian, mean_alpha,
        mean_v_score, mean_v_hessian, mean_v_mix.
    """

    shape: str
    samples: int
    v_score: np.ndarray
    v_hessian: np.ndarray
    cov: np.ndarray
    alpha: np.ndarray
    v_mix: np.ndarray
    hessian_wins: np.ndarray
    layers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def choice(self) -> np.ndarray:
        """Per parameter 'hessian' or 'score'."""
        return np.where(self.hessian_wins, "hessian", "score")

    def table(self) -> str:
        head = (f"{'layer':>5} {'params':>7} {'score wins':>10} {'hessian wins':>12} {'mean alpha*':>11} "
                f"{'mean Var(I1)':>12} {'mean Var(I2)':>12} {'mean Var(mix)':>13}")
        rows = [head]
        for d in self.layers:
            rows.append(f"{d['layer']:>5} {d['n_params']:>7} {100 * d['frac_score']:>9.1f}% "
                        f"{100 * d['frac_hessian']:>11.1f}% {d['mean_alpha']:>11.3f} {d['mean_v_score']:>12.3e} "
                        f"{d['mean_v_hessian']:>12.3e} {d['mean_v_mix']:>13.3e}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Recommendation(shape={self.shape!r}, samples={self.samples})\n{self.table()}"


def recommend(model: MLP, X: Any, shape: str = "diag", samples: int = 1, *, chunk: int | None = None) -> Recommendation:
    """Which estimator to sample, per parameter (math/variance.md 5.5): the one with the
    smaller variance at the same number of draws, the optimal mixing weight alpha* and the
    variance of that mix, and a per-layer summary (fraction of parameters where each wins).
    ``shape``: "diag" (per parameter) or "unit" (per unit-block entry)."""
    if is_dask(X):  # Dask arrays: raw sums per row block, combined (fisherkit.distributed)
        from . import distributed  # lazy: distributed imports this module
        return distributed.recommend(model, X, shape, samples, chunk=chunk)
    model = _check_model(model)
    shape = _check_shape(shape, ("diag", "unit"))
    samples = _check_samples(samples)
    Xc = _rows(model, X)
    n = Xc.shape[0]
    scale = 1.0 / (float(n) * n * samples)
    v1 = np.asarray(_host(_variance_sum(model, Xc, "v1", shape, chunk)), dtype=np.float64) * scale
    v2 = np.asarray(_host(_variance_sum(model, Xc, "v2", shape, chunk)), dtype=np.float64) * scale
    c12 = np.asarray(_host(_variance_sum(model, Xc, "c12", shape, chunk)), dtype=np.float64) * scale
    den = v1 + v2 - 2.0 * c12
    tiny = np.finfo(model.dtype).eps * 8 * np.maximum(v1 + v2, np.finfo(np.float64).tiny)
    ok = den > tiny
    alpha = np.where(ok, (v2 - c12) / np.where(ok, den, 1.0), 0.0)
    vmix = alpha * alpha * v1 + (1 - alpha) ** 2 * v2 + 2 * alpha * (1 - alpha) * c12
    vmix = np.maximum(np.minimum(vmix, np.minimum(v1, v2)), 0.0)
    wins = v2 <= v1
    layers = []
    off = 0
    for l, (o, i, _) in enumerate(_layer_geometry(model.sizes)):
        k = o * (i + 1) if shape == "diag" else o * (i + 1) ** 2
        s = slice(off, off + k)
        off += k
        layers.append({
            "layer": l + 1, "n_params": o * (i + 1),
            "frac_score": float(np.mean(~wins[s])), "frac_hessian": float(np.mean(wins[s])),
            "mean_alpha": float(np.mean(alpha[s])), "mean_v_score": float(np.mean(v1[s])),
            "mean_v_hessian": float(np.mean(v2[s])), "mean_v_mix": float(np.mean(vmix[s])),
        })
    return Recommendation(shape, samples, v1, v2, c12, alpha, vmix, wins, layers)


def samples_needed(
    model: MLP,
    X: Any,
    rel_error: float,
    confidence: float,
    estimator: str = "score",
    *,
    per_parameter: bool = False,
) -> Any:
    """Label draws per input S so that every diagonal entry of the estimate is within a
    relative error `rel_error` of the exact Fisher (of X) with probability >= `confidence`,
    by Chebyshev (math/variance.md 5.1): S_i = ceil(V_i / (delta eps^2 F_ii^2)) with
    delta = 1 - confidence and V_i the one-draw variance of the estimate over X (fixed-X
    scaling with S = 1). Returns the maximum over parameters (an int, at least 1), or with
    ``per_parameter=True`` the float array of S_i (inf where F_ii = 0 < V_i; 1 where the
    estimate is exact). Chebyshev is conservative: the normal approximation needs about
    z_{1-delta/2}^2 delta times fewer draws."""
    if is_dask(X):  # Dask arrays: raw sums per row block, combined (fisherkit.distributed)
        from . import distributed  # lazy: distributed imports this module
        return distributed.samples_needed(model, X, rel_error, confidence, estimator, per_parameter=per_parameter)
    model = _check_model(model)
    estimator = _check_estimator(estimator)
    rel_error, confidence = float(rel_error), float(confidence)
    if not (math.isfinite(rel_error) and rel_error > 0):
        raise ValueError(f"argument 'rel_error' must be > 0, got {rel_error}")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"argument 'confidence' must be in (0, 1), got {confidence}")
    delta = 1.0 - confidence
    V = np.asarray(_host(variance(model, X, estimator=estimator, shape="diag").values), dtype=np.float64)  # type: ignore[union-attr]
    F = np.asarray(_host(fisher(model, X, estimator="exact", shape="diag").values), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = np.where(V > 0, np.ceil(V / (delta * rel_error ** 2 * F * F)), 1.0)
    S = np.where(V > 0, np.where(F == 0, np.inf, np.maximum(S, 1.0)), 1.0)
    if per_parameter:
        return S
    worst = float(S.max())
    if not math.isfinite(worst):
        raise ValueError("some parameter has zero Fisher information but a positive variance: no number of "
                         "draws reaches a relative error there (use per_parameter=True to see which)")
    return int(worst)


# ============================================================================ Monte Carlo
def monte_carlo_variance(
    model: MLP,
    X: Any,
    estimator: str = "score",
    shape: str = "diag",
    samples: int = 1,
    replicates: int = 100,
    seed: int | None = 0,
    *,
    chunk: int | None = None,
) -> tuple[FisherMatrix, FisherMatrix]:
    """Empirical element-wise mean and variance of ``fisher(model, X, estimator, shape,
    samples, seed=s_r)`` over `replicates` independent seeds s_r (derived from `seed` by
    numpy.random.SeedSequence; replicate r draws the same labels as a direct call to
    ``fisher`` with seed s_r). Returns (mean, variance) as matrix objects of `shape`; the
    variance uses the unbiased (R - 1) normaliser, accumulated in float64 by Welford's
    update. The relative standard error of each variance entry is about sqrt((kurtosis - 1)/R),
    i.e. about 10% at R = 200 for Gaussian-like replicate values, more for heavy tails. Costs
    `replicates` calls of fisher: this is what the closed form (:func:`variance`) avoids."""
    model = _check_model(model)
    if estimator == "empirical":
        _check_estimator(estimator)
    shape = _check_shape(shape, ("full", "layer", "unit", "diag"))
    samples = _check_samples(samples)
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or int(replicates) < 2:
        raise ValueError(f"argument 'replicates' must be an integer >= 2, got {replicates!r}")
    R = int(replicates)
    Xc = _rows(model, X)
    seeds = np.random.SeedSequence(_heads.resolve_seed(seed)).generate_state(R, dtype=np.uint64) >> np.uint64(1)
    xp = model.xp
    mean = m2 = None
    for r in range(R):
        est = fisher(model, Xc, estimator=estimator, shape=shape, samples=samples, seed=int(seeds[r]), chunk=chunk)
        v = xp.asarray(_flat_values(est), dtype=np.float64)
        if mean is None:
            mean, m2 = v.copy(), xp.zeros_like(v)
            continue
        d = v - mean
        mean += d / (r + 1)
        m2 += d * (v - mean)
    n = Xc.shape[0]
    return (_finish(model, mean, shape, n, f"mc-mean({estimator})"),
            _finish(model, m2 / (R - 1), shape, n, f"mc-var({estimator})"))
