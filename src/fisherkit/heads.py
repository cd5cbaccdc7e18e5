"""Exponential-family output heads, by name.

=============  ==========================  ===================  ==========================
name           distribution of y given h   label layout         E[y | h]
=============  ==========================  ===================  ==========================
gaussian       N(h, sigma^2 I)             (N, C) reals         h
categorical    softmax(h)                  (N,) class indices   softmax(h)
bernoulli      independent sigmoid(h_c)    (N, C) in {0, 1}     sigmoid(h)
poisson        independent Poisson(e^h_c)  (N, C) counts        exp(h)
=============  ==========================  ===================  ==========================

The network output h is the head's natural parameter (docs/maths/heads.rst#heads-exponential-family); these
functions are vectorised over the rows of H and run in the compiled core.
"""
from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from ._backend import get_array_module
from ._loader import _core
from ._validate import as_labels, as_matrix, as_real, as_samples, as_seed

NAMES = ("gaussian", "categorical", "bernoulli", "poisson")


def check_name(head: str) -> str:
    if head not in NAMES:
        raise ValueError(f"unknown head {head!r}; expected one of {', '.join(NAMES)}")
    return head


def _sigma(sigma: Any) -> float:
    return as_real(sigma, "sigma", minimum=0.0, strict=True)


def _prep(H: Any, head: str) -> tuple[Any, Any]:
    check_name(head)
    xp = get_array_module(("H", H))
    arr = xp.asarray(H)
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    Hc = as_matrix(xp, arr, "H", dtype)
    if Hc.shape[1] == 0:
        raise ValueError("argument 'H' has no columns (a head needs at least one output)")
    return xp, Hc


def log_likelihood(head: str, H: Any, y: Any, *, sigma: float = 1.0) -> Any:
    """log p(y_n | h_n) for every row (normalised, base measure included)."""
    xp, Hc = _prep(H, head)
    get_array_module(("H", H), ("y", y))
    yc = as_labels(xp, y, "y", head, Hc.shape[0], Hc.shape[1], Hc.dtype)
    out = xp.empty(Hc.shape[0], dtype=Hc.dtype)
    _core.head_log_likelihood(head, _sigma(sigma), Hc, yc, out)
    return out


def mean(head: str, H: Any, *, sigma: float = 1.0) -> Any:
    """E[y | h] per row: the mean, class probabilities, success probabilities or rates."""
    xp, Hc = _prep(H, head)
    out = xp.empty_like(Hc)
    _core.head_mean(head, _sigma(sigma), Hc, out)
    return out


def covariance(head: str, H: Any, *, sigma: float = 1.0) -> Any:
    """Cov(t | h) per row, shape (N, C, C): the head's Fisher information in h."""
    xp, Hc = _prep(H, head)
    n, c = Hc.shape
    out = xp.empty((n, c * c), dtype=Hc.dtype)
    _core.head_covariance(head, _sigma(sigma), Hc, out, False)
    return out.reshape(n, c, c)


def sqrt_covariance(head: str, H: Any, *, sigma: float = 1.0) -> Any:
    """A factor B per row with B B^T = Cov(t | h), shape (N, C, C)."""
    xp, Hc = _prep(H, head)
    n, c = Hc.shape
    out = xp.empty((n, c * c), dtype=Hc.dtype)
    _core.head_covariance(head, _sigma(sigma), Hc, out, True)
    return out.reshape(n, c, c)


def resolve_seed(seed: int | None) -> int:
    """A 64-bit seed: an integer in [0, 2**64) (not a bool, a float or a string); None draws
    fresh entropy."""
    s = as_seed(seed)
    return secrets.randbits(63) if s is None else s


def sample(head: str, H: Any, *, samples: int = 1, seed: int | None = None, sigma: float = 1.0) -> Any:
    """Draw `samples` labels per row from the model: shape (N, samples) of class indices
    (int64) for categorical, (N, samples, C) otherwise. Counter-based: the same seed gives
    the same draws whatever the thread count."""
    xp, Hc = _prep(H, head)
    samples = as_samples(samples)
    key = resolve_seed(seed)
    n, c = Hc.shape
    cols = 1 if head == "categorical" else c
    out = xp.empty((n * samples, cols), dtype=Hc.dtype)
    _core.head_sample(head, _sigma(sigma), Hc, key, samples, out, 0)
    if head == "categorical":
        return out.reshape(n, samples).astype(xp.int64)
    return out.reshape(n, samples, c)
