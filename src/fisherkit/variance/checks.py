"""Checks of the closed forms: the empirical variance over independent replicates (Monte
Carlo), and the variance along one parameter direction from a forward-mode pass."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import to_float64, to_numpy
from .. import heads as _heads
from .._engine import estimate
from .._validate import as_chunk, as_int
from ..matrices import FisherMatrix
from ..model import MLP, check_model
from ._common import (check_estimator, check_samples, check_shape, finish, flat_values, fourth, model64,
                      quadratic, rows)

__all__ = ["monte_carlo_variance", "directional_variance"]


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
    model = check_model(model)
    if estimator == "empirical":
        check_estimator(estimator)
    shape = check_shape(shape, ("full", "layer", "unit", "diag"))
    samples = check_samples(samples)
    R = as_int(replicates, "replicates", minimum=2)
    chunk = as_chunk(chunk)
    key = _heads.resolve_seed(seed)
    Xc = rows(model, X)
    seeds = np.random.SeedSequence(key).generate_state(R, dtype=np.uint64) >> np.uint64(1)
    xp = model.xp
    mean = m2 = None
    for r in range(R):
        est = estimate(model, Xc, None, estimator, shape, samples, int(seeds[r]), as_chunk(chunk), 0)
        v = xp.asarray(flat_values(est), dtype=np.float64)
        if mean is None:
            mean, m2 = v.copy(), xp.zeros_like(v)
            continue
        d = v - mean
        mean += d / (r + 1)
        m2 += d * (v - mean)
    n = Xc.shape[0]
    return (finish(model, mean, shape, n, f"mc-mean({estimator})"),
            finish(model, m2 / (R - 1), shape, n, f"mc-var({estimator})"))


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
    (docs/maths/variance.rst#variance-trace), by one forward-mode pass over X: per input
    Var(u^T I1 u) = K(Ju, Ju, Ju, Ju) - (u^T F u)^2 and Var(u^T I2 u) = d^T I d with
    d_a = u^T H_a u (``MLP.jvp(second_order=True)``); fixed-X scaling 1/(N^2 S) sum_n, plus
    (1/N) * the sample variance of u^T F(x_n) u across inputs with ``population=True``."""
    model = check_model(model)
    estimator = check_estimator(estimator)
    samples = check_samples(samples)
    Xc = rows(model, X)
    n = Xc.shape[0]
    m64 = model64(model)
    X64 = to_float64(Xc)
    uv = to_float64(m64._direction(to_numpy(u), "u"))
    if not np.all(np.isfinite(uv)):
        raise ValueError("argument 'u' must be finite")
    h = np.asarray(m64.forward(X64))
    Ju, d = m64.jvp(X64, uv, second_order=True)
    head, sigma = model.head, model.sigma
    quad = quadratic(head, sigma, h, Ju, Ju)
    if estimator == "score":
        per = fourth(head, sigma, h, Ju, Ju, Ju, Ju) - quad * quad
    elif estimator == "hessian":
        per = quadratic(head, sigma, h, d, d)
    else:
        per = np.zeros(n)
    out = float(per.sum()) / (float(n) * n * samples)
    if population:
        if n < 2:
            raise ValueError("population=True needs at least 2 inputs")
        out += float(np.var(quad, ddof=1)) / n
    return out
