"""Structured linear solves behind the natural gradients (docs/maths/natgrad.rst#natgrad-meanfield-solver).

=================  ============================================================  ==========
function           solves                                                        cost
=================  ============================================================  ==========
``dpr2_solve``     (diag(d + damping) + U S U^T) x = rhs, batched blocks          O(n) each
``dpr2_inverse``   the n x n inverse of the same blocks                           O(n^2) each
``rank1_solve``    (damping I + psi psi^T) x = g  (Sherman-Morrison)              O(p)
``rankb_solve``    (damping I + Psi^T Psi / B) x = g  (sample space, B x B)       O(pB^2+B^3)
=================  ============================================================  ==========

All functions take NumPy arrays of float32 or float64 and return the inputs' dtype; when
inputs differ, everything is converted once to the wider type (integers count as float64).
Non-contiguous inputs are copied once. The work runs in the compiled core with the GIL
released.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import get_array_module
from ._loader import _core
from ._validate import check_damping, check_fits

__all__ = ["dpr2_solve", "dpr2_inverse", "rank1_solve", "rankb_solve"]


def _common_dtype(named: list[tuple[str, Any]]) -> np.dtype:
    dts = []
    for name, a in named:
        if a.dtype.kind not in "fiub":
            raise TypeError(f"argument '{name}' must be a real numeric array, got dtype {a.dtype}")
        dts.append(a.dtype)
    wide = np.result_type(*dts)
    return np.dtype(np.float32) if wide in (np.float16, np.float32) else np.dtype(np.float64)


def _xp_arrays(named: list[tuple[str, Any]]) -> tuple[Any, list[Any]]:
    xp = get_array_module(*named)
    arrs = []
    for name, a in named:
        if a is None:
            raise ValueError(f"argument '{name}' is required")
        arrs.append(xp.asarray(a))
    return xp, arrs


def _dpr2_prepare(d: Any, U: Any, S: Any, damping: Any) -> tuple[Any, tuple[int, ...], int, list[Any], float]:
    xp, (d, U, S) = _xp_arrays([("d", d), ("U", U), ("S", S)])
    if d.ndim < 1:
        raise ValueError("argument 'd' must have shape (..., n), got a scalar")
    batch, n = tuple(d.shape[:-1]), int(d.shape[-1])
    if n < 1:
        raise ValueError(f"argument 'd' must have a block size n >= 1, got shape {tuple(d.shape)}")
    if tuple(U.shape) != batch + (n, 2):
        raise ValueError(
            f"argument 'U' must have shape {batch + (n, 2)} (d's shape + (2,)), got {tuple(U.shape)}"
        )
    if tuple(S.shape) != batch + (2, 2):
        raise ValueError(f"argument 'S' must have shape {batch + (2, 2)}, got {tuple(S.shape)}")
    return xp, batch, n, [d, U, S], check_damping(damping)


def _flat(xp: Any, a: Any, rows: int, cols: int, dtype: np.dtype) -> Any:
    return xp.ascontiguousarray(a, dtype=dtype).reshape(rows, cols)


def dpr2_solve(d: Any, U: Any, S: Any, rhs: Any, *, damping: float = 0.0) -> Any:
    """Solve ``(diag(d + damping) + U S U^T) x = rhs`` for a batch of independent blocks.

    Parameters
    ----------
    d : array (..., n)
        The diagonal of every block; ``d + damping`` must be finite and > 0.
    U : array (..., n, 2)
        The two rank-2 directions of every block (columns of U).
    S : array (..., 2, 2)
        The 2 x 2 core of every block. It may be singular (e.g. the unit-FIM core
        ``[[A2 - A0, A1], [A1, 0]]`` of docs/maths/natgrad.rst#natgrad-meanfield-solver) and need not be symmetric; only the
        whole block must be invertible.
    rhs : array (..., n) or (..., n, k)
        One or k right-hand sides per block.
    damping : float, keyword
        Added to every diagonal entry (``A + damping I``), default 0.

    Returns
    -------
    x : array with the shape of ``rhs`` and the common dtype.

    The leading batch shape ``...`` (any number of axes, also none) must be the same for all
    four arrays; it is flattened in C order to B blocks, and block indices in error messages
    count in that order. Method: the push-through Woodbury identity
    ``x = D^-1 (r - U y)``, ``(I + S U^T D^-1 U) y = S U^T D^-1 r``, one 2 x 2 solve per
    block with the reductions accumulated in float64 (also for float32 inputs), O(n k) per
    block and memory-bound. Raises ValueError for shape mismatches, NaN/Inf, a
    non-positive damped diagonal, or a block that is singular to working precision (naming
    the block), TypeError for non-real dtypes.
    """
    xp, batch, n, (d, U, S), lam = _dpr2_prepare(d, U, S, damping)
    if rhs is None:
        raise ValueError("argument 'rhs' is required")
    rhs = xp.asarray(rhs)
    if tuple(rhs.shape) == batch + (n,):
        k = 1
    elif rhs.ndim == len(batch) + 2 and tuple(rhs.shape[:-1]) == batch + (n,):
        k = int(rhs.shape[-1])
        if k < 1:
            raise ValueError(f"argument 'rhs' has no right-hand sides (shape {tuple(rhs.shape)})")
    else:
        raise ValueError(
            f"argument 'rhs' must have shape {batch + (n,)} or {batch + (n,)} + (k,), "
            f"got {tuple(rhs.shape)}"
        )
    dtype = _common_dtype([("d", d), ("U", U), ("S", S), ("rhs", rhs)])
    B = int(np.prod(batch, dtype=np.int64))
    out_shape = tuple(rhs.shape)
    if xp is not np:
        # cuda/dpr2.cu and the binding already route CuPy arrays (with a per-block status
        # array); this switch opens once that path has been verified on a GPU.
        raise NotImplementedError("dpr2_solve on CuPy arrays is not available yet; use NumPy arrays")
    dc = _flat(xp, d, B, n, dtype)
    Uc = _flat(xp, U, B, 2 * n, dtype)
    Sc = _flat(xp, S, B, 4, dtype)
    rc = _flat(xp, rhs, B, n * k, dtype)
    out = np.empty((B, n * k), dtype=dtype)
    _core.dpr2_solve(dc, Uc, Sc, rc, k, lam, out)
    return out.reshape(out_shape)


def dpr2_inverse(d: Any, U: Any, S: Any, *, damping: float = 0.0) -> Any:
    """Explicit inverses ``(diag(d + damping) + U S U^T)^-1`` of a batch of blocks.

    Shapes as in :func:`dpr2_solve` (``d`` (..., n), ``U`` (..., n, 2), ``S`` (..., 2, 2));
    returns an array (..., n, n) in the common dtype. Uses
    ``A^-1 = D^-1 - (D^-1 U) Z (D^-1 U)^T`` with ``Z = (I + S K)^-1 S``, O(n^2) per block
    (docs/maths/natgrad.rst#natgrad-meanfield-solver); meant for small n and as a test oracle. Raises MemoryError when the
    result would exceed half the available memory, otherwise as :func:`dpr2_solve`.
    """
    xp, batch, n, (d, U, S), lam = _dpr2_prepare(d, U, S, damping)
    dtype = _common_dtype([("d", d), ("U", U), ("S", S)])
    B = int(np.prod(batch, dtype=np.int64))
    if xp is not np:
        raise NotImplementedError("dpr2_inverse on CuPy arrays is not available yet; use NumPy arrays")
    check_fits(B * n * n * dtype.itemsize, f"dpr2_inverse of {B} blocks of size {n}",
               "use dpr2_solve, which never forms the inverse")
    out = np.empty((B, n * n), dtype=dtype)
    _core.dpr2_inverse(_flat(xp, d, B, n, dtype), _flat(xp, U, B, 2 * n, dtype),
                       _flat(xp, S, B, 4, dtype), lam, out)
    return out.reshape(batch + (n, n))


def rank1_solve(psi: Any, g: Any, damping: float) -> Any:
    """Sherman-Morrison solve ``(damping I + psi psi^T) x = g`` (docs/maths/rank1.rst#rank1-sherman-morrison).

    ``x = (g - psi (psi . g) / (damping + psi . psi)) / damping``, O(p) with the dot
    products accumulated in float64.

    Parameters
    ----------
    psi : array (p,) or (m, p)
        The score vector(s); one row per gradient row, or one vector shared by all rows.
    g : array (p,) or (m, p)
        The gradient(s).
    damping : float
        lambda > 0 (the empirical one-sample Fisher psi psi^T has rank 1).

    Returns x with the broadcast shape of ``psi`` and ``g`` ((p,) or (m, p)).
    """
    lam = check_damping(damping, strict=True)
    xp, (psi, g) = _xp_arrays([("psi", psi), ("g", g)])
    if xp is not np:
        raise NotImplementedError("rank1_solve on CuPy arrays is not available yet; use NumPy arrays")
    for name, a in (("psi", psi), ("g", g)):
        if a.ndim not in (1, 2):
            raise ValueError(f"argument '{name}' must be 1-D (p,) or 2-D (m, p), got shape {tuple(a.shape)}")
    p = int(g.shape[-1])
    if int(psi.shape[-1]) != p:
        raise ValueError(
            f"arguments 'psi' and 'g' must have the same length p, got {tuple(psi.shape)} and {tuple(g.shape)}"
        )
    if psi.ndim == 2 and g.ndim == 2 and psi.shape[0] not in (1, g.shape[0]):
        raise ValueError(
            f"argument 'psi' must have 1 or {g.shape[0]} rows (one per row of g), got {psi.shape[0]}"
        )
    dtype = _common_dtype([("psi", psi), ("g", g)])
    m = g.shape[0] if g.ndim == 2 else (psi.shape[0] if psi.ndim == 2 else 1)
    out_shape = (m, p) if (g.ndim == 2 or psi.ndim == 2) else (p,)
    pc = np.ascontiguousarray(psi, dtype=dtype).reshape(-1, p)
    gc = np.ascontiguousarray(g, dtype=dtype).reshape(-1, p)
    if gc.shape[0] != m:
        gc = np.ascontiguousarray(np.broadcast_to(gc, (m, p)))
    out = np.empty((m, p), dtype=dtype)
    _core.rank1_solve(pc, gc, lam, out)
    return out.reshape(out_shape)


def rankb_solve(Psi: Any, g: Any, damping: float) -> Any:
    """Solve the damped rank-B empirical Fisher ``(damping I_p + Psi^T Psi / B) x = g``.

    Scaling (docs/maths/rank1.rst#rank1-rank-b): ``F_B = damping I + (1/B) sum_b psi_b psi_b^T``, the damped
    *mean* of the B one-sample Fishers, so ``B = 1`` equals :func:`rank1_solve`. Solved in
    sample space (the sample-space solve of docs/maths/natgrad.rst#natgrad-exact-unit-blocks)::

        x = (g - Psi^T y / B) / damping,   (damping I_B + Psi Psi^T / B) y = Psi g

    with the B x B Gram matrix from BLAS and a float64 Cholesky; O(p B^2 + B^3 + p B m).

    Parameters
    ----------
    Psi : array (B, p)
        One score (per-sample gradient of log-likelihood) per row.
    g : array (p,) or (m, p)
        The gradient(s) to precondition.
    damping : float
        lambda > 0.

    Returns x with the shape of ``g``.
    """
    lam = check_damping(damping, strict=True)
    xp, (Psi, g) = _xp_arrays([("Psi", Psi), ("g", g)])
    if xp is not np:
        raise NotImplementedError("rankb_solve on CuPy arrays is not available yet; use NumPy arrays")
    if Psi.ndim != 2 or Psi.shape[0] < 1:
        raise ValueError(f"argument 'Psi' must be 2-D (B, p) with B >= 1, got shape {tuple(Psi.shape)}")
    p = int(Psi.shape[1])
    if g.ndim not in (1, 2) or int(g.shape[-1]) != p:
        raise ValueError(f"argument 'g' must have shape ({p},) or (m, {p}), got {tuple(g.shape)}")
    dtype = _common_dtype([("Psi", Psi), ("g", g)])
    Pc = np.ascontiguousarray(Psi, dtype=dtype)
    gc = np.ascontiguousarray(g, dtype=dtype).reshape(-1, p)
    out = np.empty(gc.shape, dtype=dtype)
    _core.rankb_solve(Pc, gc, lam, out)
    return out.reshape(g.shape)
