"""Closed-form element-wise variances of the sampled Fisher estimators (Soen & Sun), their
covariance, and the standard errors ``fisher(..., with_stderr=True)`` returns.

Scaling. With the inputs fixed and the labels drawn from the model, the estimate over N
inputs and S draws per input has ``Var(I_hat) = 1/(N^2 S) * sum_n C_k(x_n)``, where C_k(x) is
the per-input, single-draw element-wise variance: ``Var(I1_ij) = K(J_i,J_j,J_i,J_j) - F_ij^2``,
``Var(I2_ij) = H_ij^T I(h) H_ij`` and ``Cov(I1_ij, I2_ij) = -kappa3(J_i, J_j, H_ij)`` (K, kappa3:
the head's fourth central moment and third cumulant of the sufficient statistic; J the output
Jacobian, H the output Hessians). With ``population=True`` the input-sampling part
(1/N) * Cov_x(F(x)) is added, estimated by the sample variance of the per-input Fisher entries.

Cost. ``diag`` and ``unit`` reduce to per-unit scalars and one GEMM per layer over inputs in
the compiled engine, as the exact Fisher does. ``layer`` and ``full`` are built from per-input
output Jacobians and (for the Hessian estimator) output Hessians: O(C P^2) memory per input,
small problems only, refused with MemoryError beyond the memory budget. ``trace`` for the score
estimator needs only the C x C Gram J J^T per input.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import heads as _heads
from .._backend import dask_call, is_dask, to_float64, to_numpy
from .._engine import estimate
from .._loader import _core
from .._progress import reporter
from .._validate import as_budget, as_chunk, check_fits, format_bytes
from ..kronecker import ekfac_from_flat, kfac_from_flat
from ..matrices import FisherMatrix, from_flat
from ..model import MLP, check_model
from ._common import (WHICH, check_estimator, check_samples, check_shape, chunks, finish, flat_values,
                      fourth, model64, output_gram, output_hessians, rows, third, variance_sum)

VARIANCE_SHAPES = ("full", "layer", "unit", "diag", "trace")

__all__ = ["variance", "covariance", "standard_error", "kronecker_standard_error", "kronecker_root",
           "kronecker_variance_sum", "VARIANCE_SHAPES"]


def _blocks_of(model: MLP, shape: str) -> list[tuple[int, int]]:
    if shape == "full":
        return [(0, model.n_params)]
    lay = model.layout
    return [(lay.layer_slice(l).start, lay.layer_slice(l).stop) for l in range(lay.n_layers)]


def _elementwise_sum(model: MLP, X: np.ndarray, which: str, shape: str, chunk: int | None,
                     max_bytes: int | None, progress: Any = None) -> np.ndarray:
    """SUM over inputs of the per-input element-wise quantity for shape 'full' or 'layer'
    (flat, fisher's layout), from per-input Jacobians and output Hessians in float64."""
    m64 = model64(model)
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
    for sl in chunks(X.shape[0], per_input, chunk):
        if progress is not None:
            progress(sl.start, X.shape[0])
        Xs = X[sl]
        m = Xs.shape[0]
        h = np.asarray(m64.forward(Xs))
        J = np.asarray(m64.jacobian(Xs))  # (m, C, P)
        Hs = output_hessians(m64, Xs) if need_H else None
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
                K = fourth(head, sigma, hr, Ui, Vj, Ui, Vj).reshape(m, D, D)
                acc[k] += (K - F * F).sum(axis=0)
            else:  # c12
                Hv = np.ascontiguousarray(Hs[:, :, a:b, a:b].transpose(0, 2, 3, 1)).reshape(-1, C)
                acc[k] -= third(head, sigma, hr, Ui, Vj, Hv).reshape(m, D, D).sum(axis=0)
    return np.concatenate([blk.ravel() for blk in acc])


def per_input_sum(model: MLP, Xc: Any, which: str, shape: str, chunk: int | None,
                  max_bytes: int | None, progress: Any = None) -> Any:
    """SUM over the rows of `Xc` of the per-input, single-draw quantity `which` (v1, v2, c12 or
    fsq, the squared per-input exact Fisher entries) in fisher's flat layout of `shape`.
    `progress`: None or a callable taking (done, total) inputs."""
    if shape in ("diag", "unit"):
        return variance_sum(model, Xc, which, shape, chunk, progress)
    return _elementwise_sum(model, to_float64(Xc), which, shape, chunk, max_bytes, progress)


def input_part(xp: Any, fsq: Any, mean_sq: Any, n: int) -> Any:
    """(1/N) * the sample variance across N inputs of per-input Fisher entries, from the sum of
    their squares `fsq` and N * `mean_sq` (the squared mean), clipped at 0 against rounding."""
    if n < 2:
        raise ValueError("population=True estimates the input-sampling variance from the spread of the "
                         "per-input Fisher matrices: it needs at least 2 inputs")
    return xp.maximum(xp.asarray(fsq, dtype=np.float64) - n * xp.asarray(mean_sq, dtype=np.float64), 0.0) / (
        (n - 1) * n)


def from_sums(model: MLP, n: int, shape: str, samples: int, label: str, ysum: Any = None, fsq: Any = None,
              mean: Any = None) -> FisherMatrix:
    """The variance over N inputs from sums over them: ``ysum / (N^2 S)`` (ysum: the sum of the
    single-draw quantity, None for no sampling noise) plus, given `fsq` and the flat mean exact
    Fisher `mean`, the input-sampling part. Sums over disjoint row ranges add, so a caller may
    form them anywhere (fisherkit.distributed forms them on workers)."""
    xp = model.xp
    total = xp.zeros(model.layout.size(shape), dtype=np.float64)
    if ysum is not None:
        total = total + xp.asarray(ysum, dtype=np.float64) / (float(n) * n * samples)
    if fsq is not None:
        m = xp.asarray(mean, dtype=np.float64)
        total = total + input_part(xp, fsq, m * m, n)
    return finish(model, total, shape, n, label)


def _population_sums(model: MLP, Xc: Any, shape: str, chunk: int | None, max_bytes: int | None,
                     progress: Any = None) -> tuple[Any, Any]:
    if Xc.shape[0] < 2:
        input_part(model.xp, 0.0, 0.0, Xc.shape[0])  # raises
    fsq = per_input_sum(model, Xc, "fsq", shape, chunk, max_bytes, progress)
    return fsq, flat_values(estimate(model, Xc, None, "exact", shape, 1, 0, as_chunk(chunk), 0, max_bytes,
                                     progress=progress))


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
    progress: Any = None,
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
        ``trace`` returns the float sum_ij Var(I_ij) over all P^2 entries (docs/maths/variance.rst#variance
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
        Memory budget for the result and the ``layer``/``full``/``trace`` small-problem paths
        (default: half the available memory); beyond it MemoryError names the bytes, before
        anything is allocated.
    progress : None, True or callable
        Report the passes over X between chunks: a callable taking (done, total) inputs, or
        True for a progress bar (tqdm). Ctrl-C stops the computation at the next chunk.

    Returns
    -------
    Diagonal, UnitBlocks, LayerBlocks or Dense holding variances (``estimator`` reads e.g.
    ``"var(score)"``), or a float for ``shape="trace"``.

    Cost: ``diag``/``unit`` as the exact Fisher of that shape plus, for ``hessian``, the
    output-Hessian diagonal per unit; ``layer``/``full``: O(N C P^2) time and O(C P^2)
    memory per input.
    """
    if is_dask(X):  # Dask arrays: raw sums per row block on workers, added (fisherkit.distributed)
        return dask_call("variance", model, X, estimator=estimator, shape=shape, samples=samples,
                         population=population, chunk=chunk, max_bytes=max_bytes)
    model = check_model(model)
    estimator = check_estimator(estimator)
    shape = check_shape(shape, VARIANCE_SHAPES)
    samples = check_samples(samples)
    chunk = as_chunk(chunk)
    max_bytes = as_budget(max_bytes)
    if not isinstance(population, (bool, np.bool_)):
        raise TypeError(f"argument 'population' must be True or False, got {type(population).__name__}")
    Xc = rows(model, X)
    n = Xc.shape[0]
    if estimator == "exact" and not population:
        # no sampling noise: zeros, but only for inputs and weights that are valid (one
        # forward pass checks them in the engine: NaN/Inf, overflow)
        model.forward(Xc, chunk=chunk)
    if shape == "trace":
        return _trace(model, Xc, estimator, samples, population, chunk, max_bytes)
    size = model.layout.size(shape)  # the float64 sum and the result, before any of it exists
    check_fits(size * (8 + model.dtype.itemsize), f"the {shape!r} variance of {model.n_params} parameters",
               "use shape='unit' or shape='diag'" if shape in ("full", "layer")
               else "use shape='diag'" if shape == "unit" else "use a smaller model", max_bytes)
    with reporter(progress, f"variance ({estimator}, {shape})") as cb:
        ysum = None if estimator == "exact" else per_input_sum(model, Xc, WHICH[estimator], shape, chunk, max_bytes,
                                                               cb)
        fsq, mean = _population_sums(model, Xc, shape, chunk, max_bytes, cb) if population else (None, None)
    return from_sums(model, n, shape, samples, f"var({estimator})", ysum, fsq, mean)


def standard_error(model: MLP, X: Any, estimator: str, shape: str, samples: int, chunk: int | None = None,
            max_bytes: int | None = None) -> FisherMatrix:
    """Standard errors sqrt(Var) of ``fisher(model, X, estimator, shape, samples)`` (fixed
    inputs), as a matrix object of the same layout: what ``fisher(..., with_stderr=True)``
    returns next to the estimate. ``exact`` gives zeros; ``empirical`` raises ValueError."""
    V = variance(model, X, estimator=estimator, shape=shape, samples=samples, chunk=chunk, max_bytes=max_bytes)
    return root(V, estimator)  # type: ignore[arg-type]


def kronecker_variance_sum(model: MLP, Xc: Any, bases: Any = None, chunk: int | None = None) -> Any:
    """The compiled per-input sum of the single-draw variance of the score estimator's G_l
    entries ('kfac' layout, zeros for A_l) or, with `bases` (flat, 'kfac' layout), of its
    EKFAC scales in those bases (P values) (docs/maths/kfac.rst#kfac-variance)."""
    size = model.n_params if bases is not None else model.layout.size("kfac")
    out = model.xp.empty(size, dtype=model.dtype)
    _core.kfac_variance_sum(*model._core_args(), model.head, model.sigma, Xc, bases, out, as_chunk(chunk))
    return out


def kronecker_standard_error(model: MLP, Xc: Any, F: FisherMatrix, estimator: str, samples: int,
                             chunk: int | None = None) -> FisherMatrix:
    """Standard errors of ``fisher(model, X, estimator, shape="kfac" | "ekfac", samples)`` with
    the inputs fixed, in the layout of `F` (the estimate): for KFAC the factors' entries
    (A_l: zeros, it does not depend on the labels; G_l: the closed form of
    docs/maths/kfac.rst#kfac-variance), for EKFAC the scales with F's eigenbases held fixed.
    The entry ((u, j), (v, k)) of G (x) A then has standard error A_jk se(G_uv). ``exact``
    gives zeros."""
    bases = F.eigenbases() if F.shape_name == "ekfac" else None  # type: ignore[attr-defined]
    vsum = None if estimator == "exact" else kronecker_variance_sum(model, Xc, bases, chunk)
    return kronecker_root(model, int(Xc.shape[0]), F, estimator, samples, vsum)


def kronecker_root(model: MLP, n: int, F: FisherMatrix, estimator: str, samples: int, vsum: Any) -> FisherMatrix:
    """The standard errors of a KFAC or EKFAC estimate `F` over n inputs from the sum over them
    of the single-draw variances `vsum` (kronecker_variance_sum; None: zeros). Sums over
    disjoint rows add, so fisherkit.distributed forms them on its workers."""
    ekfac = F.shape_name == "ekfac"
    xp = model.xp
    if vsum is None:
        flat = xp.zeros(model.n_params if ekfac else model.layout.size("kfac"), dtype=model.dtype)
    else:
        v = xp.asarray(vsum, dtype=np.float64)
        flat = xp.sqrt(xp.maximum(v, 0.0) / (float(n) * n * samples)).astype(model.dtype)
    label = f"stderr({estimator})"
    if ekfac:
        return ekfac_from_flat(F.eigenbases(), flat, model.layout, n, label)  # type: ignore[attr-defined]
    return kfac_from_flat(flat, model.layout, n, label)


def root(V: FisherMatrix, estimator: str) -> FisherMatrix:
    """The entry-wise square root of a variance: the standard errors, in V's layout."""
    xp = V.xp
    flat = xp.sqrt(xp.maximum(xp.asarray(flat_values(V)), 0))
    return from_flat(flat, V.layout, V.shape_name, V.n_samples, f"stderr({estimator})")


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
    1/(N^2 S) sum_n -kappa3(J_i, J_j, H_ij) (docs/maths/variance.rst#variance-elementwise). A pair of equal estimators
    gives :func:`variance`; a pair with ``"exact"`` gives zeros (plus the x-part with
    ``population=True``, which is the same for every pair). Shapes as :func:`variance`
    except ``trace``."""
    model = check_model(model)
    if not isinstance(estimator_pair, (tuple, list)) or len(estimator_pair) != 2:
        raise ValueError(f"argument 'estimator_pair' must be a pair of estimator names, got {estimator_pair!r}")
    e1 = check_estimator(estimator_pair[0], "estimator_pair[0]")
    e2 = check_estimator(estimator_pair[1], "estimator_pair[1]")
    shape = check_shape(shape, ("full", "layer", "unit", "diag"))
    samples = check_samples(samples)
    if e1 == e2:
        return variance(model, X, estimator=e1, shape=shape, samples=samples, population=population,
                        chunk=chunk, max_bytes=max_bytes)  # type: ignore[return-value]
    Xc = rows(model, X)
    ysum = per_input_sum(model, Xc, "c12", shape, chunk, max_bytes) if "exact" not in (e1, e2) else None
    fsq, mean = _population_sums(model, Xc, shape, chunk, max_bytes) if population else (None, None)
    return from_sums(model, Xc.shape[0], shape, samples, f"cov({e1},{e2})", ysum, fsq, mean)


def _trace(model: MLP, Xc: Any, estimator: str, samples: int, population: bool, chunk: int | None,
           max_bytes: int | None) -> float:
    n = Xc.shape[0]
    if estimator == "exact" and not population:
        return 0.0
    m64 = model64(model)
    X = to_float64(Xc)
    head, sigma = model.head, model.sigma
    C, P = model.output_dim, model.n_params
    total = 0.0
    frob_n = 0.0  # sum_n ||F(x_n)||_F^2 = tr(I G I G)
    if estimator == "hessian":
        per_input = 8 * C * P * P * 2
        check_fits(per_input, f"variance(shape='trace', estimator='hessian') of {P} parameters (C output "
                   f"Hessians of P x P per input: {format_bytes(per_input)})",
                   "use variance(shape='diag').trace() for the diagonal part, or estimator='score'", max_bytes)
    for sl in chunks(n, 8 * (4 * C * C + sum(model.sizes)) + (8 * C * P * P * 2 if estimator == "hessian" else 0),
                     chunk):
        h = np.asarray(m64.forward(X[sl]))
        Gram = output_gram(m64, X[sl])  # J J^T per input, from the engine's per-layer factors
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
            K = fourth(head, sigma, np.repeat(h, C * C, axis=0), U, U, W, W)
            total += float(K.sum()) - float(tr_igig.sum())
        elif estimator == "hessian":
            Hs = output_hessians(m64, X[sl])
            Gam = np.einsum("mapq,mbpq->mab", Hs, Hs, optimize=True)
            total += float(np.einsum("mab,mab->", Icov, Gam))
    out = total / (float(n) * n * samples) if estimator != "exact" else 0.0
    if population:
        if n < 2:
            input_part(np, 0.0, 0.0, n)  # raises
        check_fits(8 * P * P, f"the x-part of variance(shape='trace', population=True) ({P} x {P} mean Fisher)",
                   "use population=False, or shape='diag' with population=True", max_bytes)
        Fm = to_numpy(estimate(m64, X, None, "exact", "full", 1, 0, as_chunk(chunk), 0, max_bytes).matrix)
        out += float(input_part(np, frob_n, float((Fm * Fm).sum()), n))
    return out
