"""``fisherkit demo``: the report (``fisherkit.report``) on a network trained first on
built-in data: the generated spirals (default) or scikit-learn's digits."""
from __future__ import annotations

import time
from pathlib import Path
from typing import IO

import numpy as np

from . import datasets
from .model import MLP


def _train(model: MLP, X: np.ndarray, y: np.ndarray, epochs: int, lr: float, out: IO[str]) -> None:
    """Full-batch gradient descent with the compiled gradients, a line every fifth of the way."""
    print("training (full-batch gradient descent, compiled gradients)", file=out)
    t0 = time.perf_counter()
    for epoch in range(epochs + 1):
        loss, g = model.gradient(X, y)
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs:
            acc = float((model.forward(X).argmax(1) == y).mean())
            print(f"  epoch {epoch:4d}  loss {loss:.4f}  accuracy {acc:.3f}  |grad| {np.linalg.norm(g):.3e}", file=out)
        if epoch < epochs:
            model.set_flat_params(model.flat_params() - lr * g)
    print(f"  ({epochs} steps in {time.perf_counter() - t0:.2f} s)", file=out)


def run(data: str = "spirals", seed: int = 0, quick: bool = False, out_dir: str | Path = "fisherkit-demo",
        max_seconds: float = 120.0, quiet: bool = False, out: IO[str] | None = None) -> int:
    """Train the demo network on `data`, write its report into `out_dir` and print the
    summary. Returns the exit status (2 when the digits need scikit-learn)."""
    import sys

    from .report import _need_matplotlib, report

    _need_matplotlib()  # before training: the page is the point of the demo
    out = out or sys.stdout
    if data == "spirals":
        X, y = datasets.spirals(n=300 if quick else 900, classes=3, seed=seed)
    else:
        try:
            X, y = datasets.digits()
        except ImportError:
            print("fisherkit demo: --data digits uses scikit-learn's bundled digits; install it with "
                  "pip install scikit-learn (or run the demo on the built-in spirals)", file=sys.stderr)
            return 2
        if quick:
            X, y = X[:400], y[:400]
    classes = int(y.max()) + 1
    hidden = [16, 16] if quick else [32, 32]
    model = MLP.init([X.shape[1], *hidden, classes], activation="tanh", head="categorical", seed=seed)
    print(f"fisherkit demo: data={data} (N={X.shape[0]}, d={X.shape[1]}, classes={classes}); {model}", file=out)
    _train(model, X, y, epochs=40 if quick else 300, lr=0.5, out=out)
    rep = report(model, X, y, out=out_dir, max_seconds=max_seconds, seed=seed, quiet=quiet,
                 source=f"built-in {data}")
    print(rep.summary(), file=out)
    print(f"page: {(Path(out_dir) / 'report.html').resolve()}", file=out)
    return 0
