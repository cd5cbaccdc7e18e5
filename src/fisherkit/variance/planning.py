"""Which estimator to sample and how many draws: the per-parameter choice between the score
and Hessian estimators with the optimal mix, and the draws needed for a relative error."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import dask_call, is_dask, to_float64
from .._engine import estimate
from .._validate import as_real
from ..model import MLP, check_model
from ._common import check_estimator, check_samples, check_shape, rows, variance_sum
from .closed_form import variance

__all__ = ["Recommendation", "recommend", "samples_needed", "recommendation", "draws_needed", "check_targets"]


@dataclass
class Recommendation:
    """Per-parameter choice between the score (I1) and Hessian (I2) estimators at equal draws.

    The arrays are flat, in fisher's layout of `shape`.

    Attributes
    ----------
    v_score, v_hessian, cov : arrays
        Var(I1), Var(I2), Cov(I1, I2) (same draws), fixed-X scaling.
    alpha : array
        The variance-minimising weight of the unbiased mix alpha I1 + (1 - alpha) I2,
        alpha* = (V2 - C12) / (V1 + V2 - 2 C12); 0 where I1 = I2 almost surely.
    v_mix : array
        The variance of the mix at alpha*.
    hessian_wins : array of bool
        True where V2 <= V1 (ties, e.g. both zero, go to the Hessian estimator, which is exact
        in the last layer).
    layers : list of dict
        Per layer: layer, n_params, frac_score, frac_hessian, mean_alpha, mean_v_score,
        mean_v_hessian, mean_v_mix.
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
    """Which estimator to sample, per parameter (docs/maths/variance.rst#variance-which-estimator): the one with the
    smaller variance at the same number of draws, the optimal mixing weight alpha* and the
    variance of that mix, and a per-layer summary (fraction of parameters where each wins).
    ``shape``: "diag" (per parameter) or "unit" (per unit-block entry)."""
    if is_dask(X):
        return dask_call("recommend", model, X, shape, samples, chunk=chunk)
    model = check_model(model)
    shape = check_shape(shape, ("diag", "unit"))
    samples = check_samples(samples)
    Xc = rows(model, X)
    sums = [variance_sum(model, Xc, which, shape, chunk) for which in ("v1", "v2", "c12")]
    return recommendation(model, Xc.shape[0], shape, samples, *sums)


def recommendation(model: MLP, n: int, shape: str, samples: int, v1_sum: Any, v2_sum: Any,
                   c12_sum: Any) -> Recommendation:
    """The Recommendation from the sums over the N inputs of the single-draw Var(I1), Var(I2)
    and Cov(I1, I2) (sums over disjoint rows add: fisherkit.distributed forms them on
    workers)."""
    scale = 1.0 / (float(n) * n * samples)
    v1, v2, c12 = (to_float64(s) * scale for s in (v1_sum, v2_sum, c12_sum))
    den = v1 + v2 - 2.0 * c12
    tiny = np.finfo(model.dtype).eps * 8 * np.maximum(v1 + v2, np.finfo(np.float64).tiny)
    ok = den > tiny
    alpha = np.where(ok, (v2 - c12) / np.where(ok, den, 1.0), 0.0)
    vmix = alpha * alpha * v1 + (1 - alpha) ** 2 * v2 + 2 * alpha * (1 - alpha) * c12
    vmix = np.maximum(np.minimum(vmix, np.minimum(v1, v2)), 0.0)
    wins = v2 <= v1
    layers = []
    lay = model.layout
    for l in range(lay.n_layers):
        off, nxt = lay.offset(shape, l), (lay.offset(shape, l + 1) if l + 1 < lay.n_layers else lay.size(shape))
        s = slice(off, nxt)
        layers.append({
            "layer": l + 1, "n_params": lay.layer_params(l),
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
    by Chebyshev (docs/maths/variance.rst#variance-samples-needed): S_i = ceil(V_i / (delta eps^2 F_ii^2)) with
    delta = 1 - confidence and V_i the one-draw variance of the estimate over X (fixed-X
    scaling with S = 1). Returns the maximum over parameters (an int, at least 1), or with
    ``per_parameter=True`` the float array of S_i (inf where F_ii = 0 < V_i; 1 where the
    estimate is exact). Chebyshev is conservative: the normal approximation needs about
    z_{1-delta/2}^2 delta times as many draws (0.19 at 95%)."""
    if is_dask(X):
        return dask_call("samples_needed", model, X, rel_error, confidence, estimator, per_parameter=per_parameter)
    model = check_model(model)
    estimator = check_estimator(estimator)
    rel_error, confidence = check_targets(rel_error, confidence)
    Xc = rows(model, X)
    V = variance(model, Xc, estimator=estimator, shape="diag")
    F = estimate(model, Xc, None, "exact", "diag", 1, 0, 0, 0)
    return draws_needed(V.values, F.values, rel_error, confidence, per_parameter)  # type: ignore[union-attr, attr-defined]


def check_targets(rel_error: Any, confidence: Any) -> tuple[float, float]:
    rel_error, confidence = as_real(rel_error, "rel_error"), as_real(confidence, "confidence")
    if not (math.isfinite(rel_error) and rel_error > 0):
        raise ValueError(f"argument 'rel_error' must be > 0, got {rel_error}")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"argument 'confidence' must be in (0, 1), got {confidence}")
    return rel_error, confidence


def draws_needed(V: Any, F: Any, rel_error: float, confidence: float, per_parameter: bool) -> Any:
    """Chebyshev's draws per input from the one-draw diagonal variance `V` and the exact
    diagonal `F` (see samples_needed)."""
    V = to_float64(V)
    F = to_float64(F)
    delta = 1.0 - confidence
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
