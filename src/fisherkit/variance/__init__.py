"""How good is a Fisher estimate: closed-form variances of the sampled estimators.

``fisherkit.fisher(model, X, estimator="score" | "hessian", samples=S)`` averages, over the N
inputs and S label draws per input, a random matrix whose mean is the exact Fisher. This
package gives the element-wise variance of that estimate and its covariance between the two
estimators (:mod:`.closed_form`), bounds (:mod:`.bounds`), the better estimator per parameter
with the optimal mix and the draws needed for a relative error (:mod:`.planning`), and
Monte Carlo and directional checks (:mod:`.checks`).
"""
from __future__ import annotations

from .bounds import variance_bounds
from .checks import directional_variance, monte_carlo_variance
from .closed_form import VARIANCE_SHAPES, covariance, variance
from .planning import Recommendation, recommend, samples_needed

__all__ = [
    "variance",
    "covariance",
    "variance_bounds",
    "recommend",
    "Recommendation",
    "samples_needed",
    "monte_carlo_variance",
    "directional_variance",
    "VARIANCE_SHAPES",
]
