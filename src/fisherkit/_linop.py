"""SciPy ``LinearOperator`` views of fisherkit matrix objects (re-exported by
:mod:`fisherkit.operators`; every matrix object's ``as_linear_operator()`` is this). SciPy
is optional: it is imported when an operator is built, and its absence is an ImportError
that says how to install it."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["linear_operator", "scipy_linalg"]


def scipy_linalg() -> Any:
    try:
        import scipy.sparse.linalg as spla
    except ImportError:
        raise ImportError('fisherkit linear operators need SciPy: pip install "fisherkit[scipy]" '
                          "(or pip install scipy)") from None
    return spla


def linear_operator(matrix: Any) -> Any:
    """A ``scipy.sparse.linalg.LinearOperator`` for a fisherkit matrix object (``Dense``,
    ``LayerBlocks``, ``UnitBlocks``, ``Diagonal``, ``KFAC``, ``EKFAC``, or anything with ``mv(v)`` accepting (P,)
    and (P, k), ``n_params`` and ``dtype``): products are ``matrix.mv``, one call for all
    columns of a ``matmat``. The matrices are symmetric, so ``rmatvec`` is ``matvec``."""
    spla = scipy_linalg()
    for attr in ("mv", "n_params", "dtype"):
        if not hasattr(matrix, attr):
            raise TypeError(f"argument 'matrix' must be a fisherkit matrix object with mv, n_params and dtype "
                            f"(as fisherkit.fisher returns), got {type(matrix).__name__} without {attr!r}")
    P = int(matrix.n_params)
    dtype = np.dtype(matrix.dtype)

    def _product(V: np.ndarray) -> np.ndarray:
        return np.asarray(matrix.mv(np.ascontiguousarray(V, dtype=dtype)))

    return spla.LinearOperator((P, P), matvec=_product, rmatvec=_product, matmat=_product,
                               rmatmat=_product, dtype=dtype)
