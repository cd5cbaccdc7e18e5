"""Natural policy gradients on Gymnasium environments (optional extra ``rl``: gymnasium).

``fisherkit.rl.train(env_id, algo="rank1", steps=..., seed=..., **hyperparameters)`` trains an
on-policy actor-critic whose actor step is plain policy gradient ("pg"), the rank-1
Sherman-Morrison natural step ("rank1", docs/maths/rank1.rst#rank1-policy-gradient, a reconstruction), the rank-B
sample-space damped empirical-Fisher step ("rankB") or conjugate gradient on exact
Fisher-vector products with a KL step length ("cg"). Policies and critics are fisherkit MLPs.
"""
from __future__ import annotations

from .gae import gae
from .policies import CategoricalPolicy, GaussianPolicy, Policy, make_policy
from .trainer import ALGOS, DEFAULTS, PSI_CHOICES, TrainResult, conjugate_gradient, natural_direction, train

__all__ = [
    "train",
    "TrainResult",
    "gae",
    "Policy",
    "CategoricalPolicy",
    "GaussianPolicy",
    "make_policy",
    "natural_direction",
    "conjugate_gradient",
    "ALGOS",
    "DEFAULTS",
    "PSI_CHOICES",
]
