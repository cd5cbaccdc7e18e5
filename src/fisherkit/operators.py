"""Fisher matrices as SciPy linear operators, for iterative solvers and eigensolvers.

:func:`fisher_operator` wraps the exact Fisher of a model over a data set without forming
it: every product is a call of :func:`fisherkit.fisher_vector_product` (one tangent
forward and one backward pass per chunk of inputs), so ``scipy.sparse.linalg.eigsh``,
``cg`` or ``minres`` work on networks whose P x P matrix would never fit in memory.
:func:`linear_operator` does the same for any matrix object that :func:`fisherkit.fisher`
returns (``Dense``, ``LayerBlocks``, ``UnitBlocks``, ``Diagonal``), through its ``mv``.

SciPy is optional: it is imported when an operator is built, and its absence is an
ImportError that says how to install it (``pip install "fisherkit[scipy]"``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._linop import linear_operator, scipy_linalg
from ._validate import check_labels
from .model import MLP, check_model
from .fisher import fisher_vector_product

__all__ = ["fisher_operator", "linear_operator", "OPERATOR_ESTIMATORS"]

# The estimators that have a deterministic product. The sampled ones (score, hessian)
# change with their seed, so an iterative solver would see a different matrix at each
# call: compute them with fisherkit.fisher and wrap the result with linear_operator.
OPERATOR_ESTIMATORS = ("exact", "empirical")
_CHUNK_BYTES = 32 << 20  # bytes of inputs per product call when `chunk` is not given


def _rows_per_chunk(X: Any, chunk: int | None) -> int:
    if chunk is not None:
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or int(chunk) < 1:
            raise ValueError(f"argument 'chunk' must be a positive number of rows, got {chunk!r}")
        return int(chunk)
    row_bytes = max(1, int(np.prod(X.shape[1:])) * X.dtype.itemsize)
    return max(1, _CHUNK_BYTES // row_bytes)


def fisher_operator(model: MLP, X: Any, y: Any = None, *, estimator: str = "exact",
                    chunk: int | None = None) -> Any:
    """The Fisher matrix of ``model`` over the inputs ``X`` as a
    ``scipy.sparse.linalg.LinearOperator`` of shape (P, P) and the model's dtype.

    Parameters
    ----------
    model : MLP (NumPy arrays)
    X : array (N, n_0)
        Inputs; may be a memory-mapped array (``numpy.load(..., mmap_mode="r")``): it is read
        ``chunk`` rows at a time, never converted whole.
    y : array, optional
        Labels; needed by ``estimator="empirical"`` only.
    estimator : {"exact", "empirical"}
        ``exact``: (1/N) sum_n J_n^T Cov(t|h_n) J_n, the products of
        :func:`fisherkit.fisher_vector_product`. ``empirical``: (1/N) sum_n g_n g_n^T with g_n
        the gradient of -log p(y_n | x_n), from per-sample gradients of one chunk at a time
        (memory chunk x P).
    chunk : int, optional
        Rows of ``X`` per product call (default: about 32 MiB of inputs). The result does
        not depend on it beyond rounding.

    The operator is symmetric (``rmatvec`` is ``matvec``). ``matmat`` of k columns makes one
    product call per chunk with all k columns at once. Each product costs one pass over the
    N inputs: an eigensolver's cost is its number of products times that pass.
    """
    spla = scipy_linalg()
    model = check_model(model)
    if estimator not in OPERATOR_ESTIMATORS:
        raise ValueError(f"argument 'estimator': {estimator!r} has no deterministic product; expected one of "
                         f"{', '.join(OPERATOR_ESTIMATORS)} (for 'score' or 'hessian' compute the matrix with "
                         "fisherkit.fisher(...) and wrap it with fisherkit.operators.linear_operator)")
    check_labels(estimator, y)
    if getattr(X, "ndim", None) != 2:
        X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != model.input_dim:
        raise ValueError(f"argument 'X' must have shape (N, {model.input_dim}), got {tuple(X.shape)}")
    N = int(X.shape[0])
    if N == 0:
        raise ValueError("argument 'X' is an empty batch (0 rows)")
    if y is not None and len(y) != N:
        raise ValueError(f"argument 'y' has {len(y)} rows but 'X' has {N}")
    step = _rows_per_chunk(X, chunk)
    P, dtype = model.n_params, model.dtype

    def _product(V: np.ndarray) -> np.ndarray:

        V = np.ascontiguousarray(V, dtype=dtype)
        out = np.zeros(V.shape, dtype=np.float64)
        for lo in range(0, N, step):
            hi = min(N, lo + step)
            Xc = np.asarray(X[lo:hi])
            if estimator == "exact":
                part = fisher_vector_product(model, Xc, V)
            else:
                G = model.per_sample_grads(Xc, np.asarray(y[lo:hi]))  # (rows, P)
                part = G.T @ (G @ V) / (hi - lo)  # the chunk's mean, like fisher_vector_product's
            out += (hi - lo) * np.asarray(part, dtype=np.float64)
        return (out / N).astype(dtype, copy=False)

    return spla.LinearOperator((P, P), matvec=_product, rmatvec=_product, matmat=_product,
                               rmatmat=_product, dtype=dtype)
