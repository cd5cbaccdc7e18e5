"""``fisherkit demo``: a real computation on built-in data, printed as a report.

Each section is a function; later features add sections."""
from __future__ import annotations

import time
from typing import IO, Any

import numpy as np

from . import datasets
from .model import MLP


def _section(out: IO[str], title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)), file=out)


def _train(model: MLP, X: np.ndarray, y: np.ndarray, epochs: int, lr: float, out: IO[str]) -> None:
    _section(out, "training (full-batch gradient descent, compiled gradients)")
    t0 = time.perf_counter()
    for epoch in range(epochs + 1):
        loss, g = model.gradient(X, y)
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs:
            acc = float((model.forward(X).argmax(1) == y).mean())
            print(f"epoch {epoch:4d}  loss {loss:.4f}  accuracy {acc:.3f}  |grad| {np.linalg.norm(g):.3e}", file=out)
        if epoch < epochs:
            model.set_flat_params(model.flat_params() - lr * g)
    print(f"({epochs} steps in {time.perf_counter() - t0:.2f} s)", file=out)


def _gradients(model: MLP, X: np.ndarray, y: np.ndarray, out: IO[str]) -> None:
    _section(out, "per-sample gradients and output Jacobian")
    G = model.per_sample_grads(X, y)
    _, g = model.gradient(X, y)
    print(f"per-sample gradients: {G.shape[0]} x {G.shape[1]}; "
          f"mean of rows vs batch gradient: max |diff| = {np.abs(G.mean(0) - g).max():.2e}", file=out)
    norms = np.linalg.norm(G, axis=1)
    print(f"gradient norm per sample: median {np.median(norms):.3e}, max {norms.max():.3e}", file=out)
    for (ws, bs), n in zip(model.param_slices(), range(model.n_layers)):
        share = float((G[:, ws] ** 2).sum() + (G[:, bs] ** 2).sum()) / float((G ** 2).sum())
        print(f"  layer {n + 1}: {ws.stop - ws.start + bs.stop - bs.start:6d} parameters, "
              f"{100 * share:5.1f}% of the summed squared gradient", file=out)
    J = model.jacobian(X[:8])
    print(f"output Jacobian of 8 inputs: shape {J.shape}", file=out)


def _fisher_section(model: MLP, X: np.ndarray, y: np.ndarray, out: IO[str]) -> None:
    from .fisher import fisher

    _section(out, "Fisher information (diagonal), exact vs sampled estimators")
    t0 = time.perf_counter()
    exact = fisher(model, X, estimator="exact", shape="diag")
    t_exact = time.perf_counter() - t0
    S = 4
    est = {name: fisher(model, X, y, estimator=name, shape="diag", samples=S, seed=1)
           for name in ("score", "hessian", "empirical")}
    print(f"exact diagonal of {model.n_params} parameters over N={X.shape[0]} inputs in {t_exact * 1e3:.1f} ms; "
          f"sampled estimators with S={S} draws per input", file=out)
    head = f"{'layer':>5} {'params':>7} {'mean F_ii':>11} " + " ".join(f"{n + ' rel.err':>16}" for n in est)
    print(head, file=out)
    for l, blk in enumerate(exact.blocks):
        row = f"{l + 1:>5} {blk.size:>7} {blk.mean():>11.3e} "
        for F in est.values():
            other = F.blocks[l]
            row += f"{np.linalg.norm(other - blk) / np.linalg.norm(blk):>16.3f} "
        print(row, file=out)
    print("(rel.err = |estimate - exact| / |exact| per layer; score and hessian are unbiased and shrink as "
          "1/sqrt(N S); the empirical Fisher uses the data's labels and is biased)", file=out)
    U = fisher(model, X, estimator="exact", shape="unit")
    ev = np.concatenate([e.ravel() for e in U.eigvalsh()])
    print(f"unit blocks: {sum(b.shape[0] for b in U.blocks)} blocks, eigenvalues in [{ev.min():.2e}, {ev.max():.2e}], "
          f"trace {U.trace():.4f} (= diagonal trace {exact.trace():.4f})", file=out)


def run(data: str = "spirals", seed: int = 0, quick: bool = False, out: IO[str] | None = None) -> int:
    import sys

    out = out or sys.stdout
    if data == "spirals":
        X, y = datasets.spirals(n=300 if quick else 900, classes=3, seed=seed)
    else:
        X, y = datasets.digits()
    classes = int(y.max()) + 1
    hidden = [16, 16] if quick else [32, 32]
    model = MLP.init([X.shape[1], *hidden, classes], activation="tanh", head="categorical", seed=seed)
    print(f"fisherkit demo: data={data} (N={X.shape[0]}, d={X.shape[1]}, classes={classes}); {model}", file=out)
    _train(model, X, y, epochs=40 if quick else 300, lr=0.5, out=out)
    _gradients(model, X, y, out)
    for section in _extra_sections():
        section(model, X, y, out)
    return 0


def _extra_sections() -> list[Any]:
    """Sections contributed by the features built on the engine."""
    from . import _demo_natgrad, _demo_variance

    return [_fisher_section, _demo_variance.section, _demo_natgrad.section]
