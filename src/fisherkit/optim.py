"""Optimizers that train a :class:`fisherkit.MLP` in place (NumPy).

All share one interface, so comparisons are one line::

    opt = NaturalGradient(model, lr=0.5, method="unit-meanfield", damping=1e-3)
    for X_batch, y_batch in batches:
        loss = opt.step(X_batch, y_batch)

``step(X, y)`` computes the mean negative log-likelihood and its gradient with the
compiled :meth:`MLP.gradient`, forms the step, updates the model's parameters in place
and returns the loss *before* the update.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import natgrad as _ng
from ._validate import as_int, as_samples, as_seed, check_damping
from .kronecker import DAMPING_MODES
from .model import MLP
from .natgrad.statistics import check_estimator, check_method

__all__ = ["SGD", "Adam", "NaturalGradient"]


def _positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"argument '{name}' must be a real number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"argument '{name}' must be finite and {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


class _Optimizer:
    def __init__(self, model: MLP, lr: float) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
        self.model = model
        self.lr = _positive(lr, "lr")
        self.steps = 0

    def _direction(self, X: Any, y: Any, g: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, X: Any, y: Any) -> float:
        """One update on the batch (X, y); returns the loss before the update."""
        loss, g = self.model.gradient(X, y)
        d = self._direction(X, y, g)
        self.model.set_flat_params(self.model.flat_params() - d)
        self.steps += 1
        return loss


class SGD(_Optimizer):
    """Gradient descent with heavy-ball momentum: ``v <- momentum v + g``, ``theta <- theta - lr v``."""

    def __init__(self, model: MLP, lr: float, momentum: float = 0.0) -> None:
        super().__init__(model, lr)
        self.momentum = _positive(momentum, "momentum", allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"argument 'momentum' must be < 1, got {momentum!r}")
        self._v: np.ndarray | None = None

    def _direction(self, X: Any, y: Any, g: np.ndarray) -> np.ndarray:
        if self.momentum:
            self._v = g.copy() if self._v is None else self.momentum * self._v + g
            return self.lr * self._v
        return self.lr * g


class Adam(_Optimizer):
    """Adam (Kingma and Ba) with bias correction:
    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``theta <- theta - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``."""

    def __init__(self, model: MLP, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(model, lr)
        b1, b2 = (float(b) for b in betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"argument 'betas' must lie in [0, 1), got {betas!r}")
        self.betas = (b1, b2)
        self.eps = _positive(eps, "eps")
        self._m: np.ndarray | None = None
        self._v: np.ndarray | None = None

    def _direction(self, X: Any, y: Any, g: np.ndarray) -> np.ndarray:
        b1, b2 = self.betas
        if self._m is None:
            self._m = np.zeros_like(g)
            self._v = np.zeros_like(g)
        self._m = b1 * self._m + (1 - b1) * g
        self._v = b2 * self._v + (1 - b2) * g * g
        t = self.steps + 1
        mhat = self._m / (1 - b1 ** t)
        vhat = self._v / (1 - b2 ** t)
        return self.lr * mhat / (np.sqrt(vhat) + self.eps)


# curvature_every by default, per method (the rest: 1); see NaturalGradient
CURVATURE_EVERY = {"unit-correlated": 5}


class NaturalGradient(_Optimizer):
    """Natural-gradient descent ``theta <- theta - lr (F~ + damping I)^-1 g``.

    ``method`` and ``estimator`` as in :func:`fisherkit.natgrad.natural_gradient`.
    ``ema`` in (0, 1] is the weight of the newest batch in a running average of the
    curvature statistics (1: use the current batch only). ``curvature_every`` recomputes
    the statistics every k steps (in between the last average is reused, as K-FAC does).
    Its default (None) is 1, except for ``unit-correlated``, whose statistics include an
    eigendecomposition of each layer's input covariance: 5 there (``CURVATURE_EVERY``). On
    digits (64-128-128-10 tanh, batch 256, 20 epochs; ``benchmarks/bench_natgrad.py --part
    refresh``) k = 5 ended within 3% of k = 1's training loss (0.0159 against 0.0154) at
    a third of the cost per step (80 against 225 ms); k = 10 was 17% worse and k = 20
    diverged.
    ``curvature_batch`` caps the number of rows of each batch used for the statistics (the
    first rows; None: all). ``seed`` keys the label draws of the sampled estimators: the
    statistics of step t are drawn with ``seed + t``, so each refresh draws new labels and a
    run is reproducible (None: fresh entropy at every refresh). ``damping_mode``:
    ``"factored"`` for Martens & Grosse's factored damping with ``method="kfac"`` (see
    :func:`fisherkit.natgrad.natural_gradient`). With ``kfac`` and ``ekfac`` the running
    average is of the factors (and, for EKFAC, of the scales re-expressed in the averaged
    factors' eigenbases).
    """

    def __init__(self, model: MLP, lr: float, method: str = "unit-meanfield", damping: float = 1e-3,
                 ema: float = 1.0, *, estimator: str = "exact", samples: int = 1, seed: int | None = 0,
                 curvature_every: int | None = None, curvature_batch: int | None = None,
                 damping_mode: str = "exact") -> None:
        super().__init__(model, lr)
        self.method = check_method(method)
        self.damping = check_damping(damping)
        if damping_mode not in DAMPING_MODES or (damping_mode != "exact" and self.method != "kfac"):
            raise ValueError(f"argument 'damping_mode' must be 'exact' (or 'factored' with method 'kfac'), got "
                             f"{damping_mode!r}")
        self.damping_mode = damping_mode
        self.estimator = check_estimator(estimator)
        ema = float(ema)
        if not 0 < ema <= 1:
            raise ValueError(f"argument 'ema' must be in (0, 1], got {ema!r}")
        self.ema = ema
        self.samples = as_samples(samples)
        self.seed = as_seed(seed)
        if curvature_every is None:
            curvature_every = CURVATURE_EVERY.get(self.method, 1)
        self.curvature_every = as_int(curvature_every, "curvature_every", minimum=1)
        self.curvature_batch = None if curvature_batch is None else as_int(curvature_batch, "curvature_batch",
                                                                            minimum=1)
        self.curvature: _ng.Curvature | None = None

    def step(self, X: Any, y: Any) -> float:
        """One update on the batch (X, y); returns the loss before the update. On a step that
        refreshes the curvature (and uses the whole batch for it) the loss, its gradient and
        the statistics come from one compiled pass over the batch."""
        refresh = self.curvature is None or self.steps % self.curvature_every == 0
        if refresh and self.curvature_batch is None:
            new, loss, g = _ng.curvature_and_gradient(self.model, X, y, method=self.method, estimator=self.estimator,
                                                      samples=self.samples, seed=self._seed())
            self._absorb(new)
        else:
            loss, g = self.model.gradient(X, y)
            if refresh:
                # the labels only for the empirical metric (the others warn that they ignore y)
                ys = y[: self.curvature_batch] if y is not None and self.estimator == "empirical" else None
                Xs = X[: self.curvature_batch]
                self._absorb(_ng.curvature(self.model, Xs, method=self.method, estimator=self.estimator, y=ys,
                                           samples=self.samples, seed=self._seed()))
        d = _ng.natural_gradient(self.model, None, g, method=self.method, damping=self.damping,
                                 curvature=self.curvature, damping_mode=self.damping_mode)
        self.model.set_flat_params(self.model.flat_params() - self.lr * d)
        self.steps += 1
        return float(loss)

    def _seed(self) -> int | None:
        return None if self.seed is None else (self.seed + self.steps) % 2**64

    def _absorb(self, new: _ng.Curvature) -> None:
        self.curvature = new if self.curvature is None or self.ema == 1 else self.curvature.blend(new, self.ema)
