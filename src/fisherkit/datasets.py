"""Small data sets that ship with fisherkit (generated, deterministic, no downloads)."""
from __future__ import annotations

from typing import Any

import numpy as np


def spirals(n: int = 600, classes: int = 3, noise: float = 0.15, seed: int = 0,
            dim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class: a classic non-linear classification task.

    Returns X (n x dim, float64; dims beyond 2 are small Gaussian nuisance features) and
    integer labels y (n,). Deterministic for a given seed.
    """
    if classes < 2 or n < classes or dim < 2:
        raise ValueError("need classes >= 2, n >= classes and dim >= 2")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    t = rng.uniform(0.15, 1.0, size=n)
    angle = 4.0 * t + 2.0 * np.pi * y / classes
    X = np.empty((n, dim))
    X[:, 0] = t * np.cos(angle) + noise * t * rng.standard_normal(n)
    X[:, 1] = t * np.sin(angle) + noise * t * rng.standard_normal(n)
    if dim > 2:
        X[:, 2:] = 0.1 * rng.standard_normal((n, dim - 2))
    X = (X - X.mean(0)) / X.std(0)
    return X, y.astype(np.int64)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1797 x 64, scaled to [0, 1]); needs scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits data set comes with scikit-learn: pip install scikit-learn") from exc
    d = load_digits()
    return d.data / 16.0, d.target.astype(np.int64)


def load(name: str, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    if name == "spirals":
        return spirals(**kw)
    if name == "digits":
        return digits()
    raise ValueError(f"unknown data set {name!r}; expected 'spirals' or 'digits'")
