"""The ``fisherkit demo`` section on estimator variance (issue 4): per layer, the exact
diagonal FIM, the standard deviation of each sampled estimator (one draw per input, inputs
fixed), the upper bounds of docs/maths/variance.rst#variance-bounds and the per-parameter recommendation."""
from __future__ import annotations

import time
from typing import IO, Any

import numpy as np

from .fisher import fisher
from .model import MLP
from .variance import recommend, variance_bounds


def _per_layer(values: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    out, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        k = n_out * (n_in + 1)
        out.append(values[off:off + k])
        off += k
    return out


def _median_log_ratio(bound: np.ndarray, v: np.ndarray) -> str:
    ok = v > 0
    if not ok.any():
        return "-"
    return f"{float(np.median(np.log(bound[ok] / v[ok]))):.2f}"


def section(model: MLP, X: Any, y: Any, out: IO[str], max_inputs: int = 512) -> None:
    """Print the variance table for `model` on (at most `max_inputs` of) `X`. `y` is unused:
    the variances concern labels drawn from the model, not the data's labels."""
    del y
    title = "estimator variance (diagonal, S=1 draw per input, inputs fixed)"
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)), file=out)
    Xs = np.asarray(X)[:max_inputs]
    t0 = time.perf_counter()
    F = np.asarray(fisher(model, Xs, estimator="exact", shape="diag").values, dtype=np.float64)
    rec = recommend(model, Xs)
    _, hi1 = variance_bounds(model, Xs, "score")
    _, hi2 = variance_bounds(model, Xs, "hessian")
    dt = time.perf_counter() - t0
    sizes = model.sizes
    Fl = _per_layer(F, sizes)
    V1 = _per_layer(rec.v_score, sizes)
    V2 = _per_layer(rec.v_hessian, sizes)
    B1 = _per_layer(np.asarray(hi1.values, dtype=np.float64), sizes)
    B2 = _per_layer(np.asarray(hi2.values, dtype=np.float64), sizes)
    print(f"N={Xs.shape[0]} inputs; closed forms, bounds and recommendation in {dt:.2f} s", file=out)
    head = (f"{'layer':>5} {'params':>6} {'mean F':>9} {'mean sd(I1)':>11} {'mean sd(I2)':>11} "
            f"{'sd bound I1':>11} {'sd bound I2':>11} {'log(b/V1)':>9} {'log(b/V2)':>9} {'I2 wins':>7} {'alpha*':>7}")
    print(head, file=out)
    for l, info in enumerate(rec.layers):
        print(f"{l + 1:>5} {info['n_params']:>6} {Fl[l].mean():>9.2e} {np.sqrt(V1[l]).mean():>11.2e} "
              f"{np.sqrt(V2[l]).mean():>11.2e} {np.sqrt(B1[l]).mean():>11.2e} {np.sqrt(B2[l]).mean():>11.2e} "
              f"{_median_log_ratio(B1[l], V1[l]):>9} {_median_log_ratio(B2[l], V2[l]):>9} "
              f"{100 * info['frac_hessian']:>6.1f}% {info['mean_alpha']:>7.2f}", file=out)
    print("(sd = standard deviation of the S=1 estimate over these inputs; bounds: docs/maths/variance.rst#variance-bounds, "
          "log(b/V) = median log(upper bound / variance) >= 0; 'I2 wins': share of parameters where the "
          "Hessian estimator has the smaller variance, alpha* = mean optimal weight of I1 in the mix; "
          "the last layer's Hessian estimate is exact)", file=out)
