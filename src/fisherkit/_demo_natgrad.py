"""``fisherkit demo`` section: SGD against natural-gradient methods (issue 5).

The lead hooks :func:`section` into ``fisherkit.demo._extra_sections``. It trains copies of
the demo's model (same initial weights) full-batch for a fixed number of steps and prints
the loss reached and the time per step; a few seconds on two cores.
"""
from __future__ import annotations

import time
from typing import IO, Any

import numpy as np

from . import optim
from .model import MLP

_STEPS = 100
_RUNS = (
    ("SGD", lambda m: optim.SGD(m, lr=0.5)),
    ("quasi-diagonal", lambda m: optim.NaturalGradient(m, lr=0.1, method="quasi-diagonal", damping=1e-2)),
    ("unit-meanfield", lambda m: optim.NaturalGradient(m, lr=0.02, method="unit-meanfield", damping=1e-2,
                                                       estimator="bpm")),
    ("unit-correlated", lambda m: optim.NaturalGradient(m, lr=0.1, method="unit-correlated", damping=1e-2)),
    ("unit", lambda m: optim.NaturalGradient(m, lr=0.1, method="unit", damping=1e-2)),
)


def section(model: MLP, X: Any, y: Any, out: IO[str]) -> None:
    """Print a short comparison of SGD and natural-gradient methods training copies of
    ``model`` on (X, y): loss after a fixed number of full-batch steps and time per step."""
    print("\n== natural gradients without matrix inversion (fisherkit.optim) " + "=" * 4, file=out)
    X = np.asarray(X)
    y = np.asarray(y)
    start = model.loss(X, y)
    print(f"{_STEPS} full-batch steps from the same weights (initial loss {start:.4f}); "
          f"damping 1e-2, learning rates fixed (not tuned; the isotropic unit-meanfield needs a smaller one)", file=out)
    print(f"{'method':<16} {'lr':>5} {'final loss':>11} {'ms/step':>8}", file=out)
    for name, make in _RUNS:
        m = model.copy()
        opt = make(m)
        t0 = time.perf_counter()
        for _ in range(_STEPS):
            opt.step(X, y)
        dt = (time.perf_counter() - t0) / _STEPS
        loss = m.loss(X, y)
        print(f"{name:<16} {opt.lr:>5g} {loss:>11.4f} {dt * 1e3:>8.2f}", file=out)
    print("(unit: exact unit blocks, Cholesky; unit-meanfield: closed form, O(n) per unit, backpropagated "
          "metric; unit-correlated: shared input covariance + per-unit rank 2; quasi-diagonal: Ollivier)",
          file=out)
