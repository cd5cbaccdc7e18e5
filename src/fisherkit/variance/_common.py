"""What the variance modules share: argument checks, the compiled per-input sums, and the
conversion of flat results to matrix objects."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from .._backend import to_numpy
from .._loader import _core
from .._validate import as_chunk, as_samples
from ..matrices import FisherMatrix, from_flat
from ..model import MLP, check_model

SAMPLED = ("score", "hessian")
WHICH = {"score": "v1", "hessian": "v2"}
WORKSPACE = 64 << 20  # bytes of float64 workspace per chunk in the small-problem paths


def check_estimator(estimator: str, name: str = "estimator") -> str:
    if estimator == "empirical":
        raise ValueError(
            "the variance of the empirical Fisher is not a function of the model: its labels come "
            "from the data, so its variance (and its bias) needs the data distribution q(y|x); "
            "use estimator='score' or 'hessian', or measure it over resampled data")
    if estimator not in ("exact",) + SAMPLED:
        raise ValueError(f"unknown {name} {estimator!r}; expected 'score', 'hessian' or 'exact'")
    return estimator


def check_shape(shape: str, allowed: Sequence[str]) -> str:
    if shape not in allowed:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(allowed)}")
    return shape


def check_samples(samples: Any) -> int:
    return as_samples(samples)


def rows(model: MLP, X: Any) -> Any:
    """The validated inputs (model._inputs), copied when a one-row view has row stride 0
    (NumPy's x[None]), which BLAS rejects as a leading dimension."""
    Xc, _ = model._inputs(X)
    if Xc.shape[0] == 1 and Xc.strides[0] == 0:
        Xc = Xc.copy()
    return Xc


def model64(model: MLP) -> MLP:
    """The model in float64 on the host (the small-problem paths compute in float64 and round
    once to the model's dtype)."""
    if model.dtype == np.float64 and model.xp is np:
        return model
    return MLP([(to_numpy(W), None if b is None else to_numpy(b)) for W, b in model.layers], model.activations, model.head,
               sigma=model.sigma, dtype=np.float64)


def chunks(n: int, per_input_bytes: int, chunk: int | None) -> Iterator[slice]:
    m = as_chunk(chunk) or max(1, WORKSPACE // max(per_input_bytes, 1))
    for a in range(0, n, m):
        yield slice(a, min(n, a + m))


def variance_sum(model: MLP, X: Any, which: str, shape: str, chunk: int | None, progress: Any = None) -> Any:
    """The compiled per-input sum of the single-draw quantity `which` (v1, v2, c12, fsq and the
    bounds v1_lower ... v2_upper) in fisher's flat layout of `shape` (diag or unit), in the
    model's dtype."""
    out = model.xp.empty(model.layout.size(shape), dtype=model.dtype)
    _core.variance_sum(*model._core_args(), model.head, model.sigma, X, which, shape, as_chunk(chunk), out, progress)
    return out


def output_hessians(m64: MLP, X: np.ndarray) -> np.ndarray:
    """(m, C, P, P) output Hessians d^2 h_c / dtheta^2 of a float64 model."""
    m, C, P = X.shape[0], m64.output_dim, m64.n_params
    out = np.empty((m, C * P * P))
    _core.output_hessians(*m64._core_args(), X, out)
    return out.reshape(m, C, P, P)


def output_gram(m64: MLP, X: np.ndarray) -> np.ndarray:
    """(m, C, C) per-input Grams J J^T of the output Jacobian of a float64 model."""
    C = m64.output_dim
    out = np.empty((X.shape[0], C * C))
    _core.output_gram(*m64._core_args(), X, out)
    return out.reshape(-1, C, C)


def fourth(head: str, sigma: float, h: np.ndarray, U: np.ndarray, V: np.ndarray, W: np.ndarray,
           Z: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape[0])
    _core.head_fourth_moment(head, sigma, h, U, V, W, Z, out, False)
    return out


def third(head: str, sigma: float, h: np.ndarray, U: np.ndarray, V: np.ndarray, W: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape[0])
    _core.head_third_cumulant(head, sigma, h, U, V, W, out)
    return out


def quadratic(head: str, sigma: float, h: np.ndarray, U: np.ndarray, V: np.ndarray) -> np.ndarray:
    out = np.empty(h.shape[0])
    _core.head_quadratic(head, sigma, h, U, V, out)
    return out


def flat_values(M: FisherMatrix) -> Any:
    xp = M.xp
    return xp.concatenate([xp.asarray(b).ravel() for b in M.blocks]) if M.shape_name != "diag" else M.values


def finish(model: MLP, flat: Any, shape: str, n: int, label: str) -> FisherMatrix:
    xp = model.xp
    return from_flat(xp.ascontiguousarray(xp.asarray(flat).astype(model.dtype, copy=False)), model.layout, shape, n,
                     label)


__all__ = ["check_model"]
