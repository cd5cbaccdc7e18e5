"""Per-parameter bounds on the diagonal variance of the sampled estimators, from the head's
spectral constants (extreme eigenvalues of Cov(t|h) and of the fourth-moment tensor)."""
from __future__ import annotations

from typing import Any

from .._backend import to_float64
from ..matrices import FisherMatrix
from ..model import MLP, check_model
from ._common import check_estimator, check_samples, finish, rows, variance_sum

__all__ = ["variance_bounds"]


def variance_bounds(
    model: MLP,
    X: Any,
    estimator: str = "score",
    samples: int = 1,
    *,
    chunk: int | None = None,
) -> tuple[FisherMatrix, FisherMatrix]:
    """Per-parameter (lower, upper) bounds on the diagonal variance of ``estimator``, as two
    Diagonal objects with the fixed-X scaling 1/(N^2 S) sum_n::

        score:   ||J_i||^4 k_min - F_ii^2  <=  V1_i  <=  ||J_i||^4 k_max - F_ii^2
        hessian: ||H_i||^2 lambda_min      <=  V2_i  <=  ||H_i||^2 lambda_max

    with ``||J_(l,u,j)|| = |abar_j| ||G_l[:, u]||`` (G_l = dh/dz_l),
    ``||H_(l,u,j)|| = abar_j^2 ||T_l[:, u, u]||`` (the output-Hessian diagonal) and the head's spectral constants at each
    input (lambda: extreme eigenvalues of Cov(t|h); k: extreme values of the fourth central
    moment over unit vectors). For the categorical head the centred vectors are used
    (tighter); negative per-input lower bounds are raised to 0. For the Gaussian head both
    bounds are equalities. Computed by the compiled engine like the variances themselves: a
    GEMM over inputs per layer."""
    model = check_model(model)
    estimator = check_estimator(estimator)
    samples = check_samples(samples)
    Xc = rows(model, X)
    n = Xc.shape[0]
    if estimator == "exact":
        z = model.xp.zeros(model.layout.size("diag"))
        return finish(model, z, "diag", n, "lower(exact)"), finish(model, z, "diag", n, "upper(exact)")
    which = "v1" if estimator == "score" else "v2"
    scale = 1.0 / (float(n) * n * samples)
    lo = to_float64(variance_sum(model, Xc, f"{which}_lower", "diag", chunk)) * scale
    hi = to_float64(variance_sum(model, Xc, f"{which}_upper", "diag", chunk)) * scale
    return (finish(model, model.xp.asarray(lo), "diag", n, f"lower({estimator})"),
            finish(model, model.xp.asarray(hi), "diag", n, f"upper({estimator})"))
