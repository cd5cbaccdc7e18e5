"""How far the Kronecker-factored Fisher is from the exact layer blocks: ``kfac_error``.

Per layer the relative Frobenius distance ||F_l - G_l (x) A_l||_F / ||F_l||_F of KFAC (and of
EKFAC) from the layer block F_l of the same estimator, computed exactly without forming F_l
(docs/maths/kfac.rst#kfac-error): ||F_l||^2 is a double sum over pairs of inputs of
tr(Gamma_n Gamma_m) (abar_n . abar_m)^2, evaluated by GEMMs over pairs of chunks in the
compiled core; the cross term <F_l, G_l (x) A_l> is one more sum over inputs, and for EKFAC
it is the squared norm of its scales (they are F_l's diagonal in the eigenbasis). So a
784-1024-10 network, whose first layer block would need 5 TB, gets its KFAC error in the
time of a few GEMMs over input pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import heads as _heads
from ._backend import to_float64
from ._engine import check_kronecker_estimator, kronecker
from ._loader import _core
from ._progress import reporter
from ._validate import as_chunk, as_index_offset, as_samples, check_labels
from .kronecker import EKFAC, KFAC, _sq, ekfac_from_flat
from .model import MLP, check_model

__all__ = ["kfac_error", "KFACError"]


@dataclass(frozen=True)
class KFACError:
    """Per layer (arrays of n_layers values, float64): ``kfac`` and ``ekfac``, the relative
    Frobenius distances of KFAC and EKFAC from the layer block (``ekfac`` None when not
    computed); ``norm`` = ||F_l||_F, the block's Frobenius norm (NaN distances where it is 0);
    ``estimate``, the EKFAC (with its KFAC as ``estimate.kfac``) or, without EKFAC, the KFAC
    they were measured for."""

    kfac: np.ndarray
    ekfac: np.ndarray | None
    norm: np.ndarray
    estimate: KFAC | EKFAC


def kfac_error(model: MLP, X: Any, y: Any = None, *, estimator: str = "exact", samples: int = 1,
               seed: int | None = None, chunk: int | None = None, index_offset: int = 0,
               max_bytes: int | None = None, ekfac: bool = True, progress: Any = None) -> KFACError:
    """The distance of ``fisher(..., shape="kfac")`` and ``fisher(..., shape="ekfac")`` from the
    layer blocks of ``fisher(..., shape="layer")``, per layer, for the same estimator and draws.

    Parameters
    ----------
    model : MLP
    X : array (N, n_0)
    y : array, optional
        Labels, for ``estimator="empirical"``.
    estimator : {"exact", "score", "empirical"}
        The Fisher both sides estimate; ``score`` uses the same `samples` draws per input
        (keyed by `seed` and `index_offset`) for the layer block and for the factors, so the
        distance is the approximation's alone.
    ekfac : bool
        Also the EKFAC distance (default). Its scales come from the same pass as the pairs of
        inputs, and give KFAC's cross term too; it costs the eigendecompositions of the
        factors. ``ekfac=False``: KFAC's alone, its cross term from one more GEMM per layer.
    chunk, progress
        As for :func:`fisherkit.fisher`.
    max_bytes : int, optional
        Memory budget: the factors must fit in it, and the per-input summaries of the input
        pairs are kept for as many inputs as fit in half of it (default: 256 MiB of them);
        beyond that the inputs are taken in blocks and later blocks' rows recomputed.

    Returns
    -------
    KFACError
        ``.kfac`` and ``.ekfac`` (per layer, EKFAC <= KFAC always), ``.norm`` and
        ``.estimate``.

    Cost: the KFAC pass, then one pass with, per layer, O(N^2 (min(M^2 n_l, n_l^2 / 2) + k_l))
    for the pairs of inputs (M backward rows per input: C for ``exact``, ``samples`` for
    ``score``, 1 for ``empirical``; k_l = n_{l-1} + 1); with EKFAC the factors'
    eigendecompositions. Memory: the factors and O(chunk^2 M^2) workspace, never a layer
    block.
    """
    check_model(model)
    check_kronecker_estimator(estimator, "kfac")
    samples = as_samples(samples)
    index_offset = as_index_offset(index_offset)
    check_labels(estimator, y)
    if estimator != "empirical":
        y = None
    Xc, yc = model._inputs(X, y)
    seed_ = _heads.resolve_seed(seed)
    ch = as_chunk(chunk)
    xp, L = model.xp, model.n_layers
    keep = 0 if max_bytes is None else max(int(max_bytes) // 2, 1)
    with reporter(progress, f"kfac_error ({estimator})") as cb:
        K = kronecker(model, Xc, yc, estimator, "kfac", samples, seed_, ch, index_offset, max_bytes, cb)
        args = (*model._core_args(), model.head, model.sigma, Xc, yc, estimator, samples, seed_, ch, index_offset)
        sq = xp.empty(L, dtype=np.float64)
        E = None
        if ekfac:
            bases = K.eigenbases()
            s = xp.empty(model.n_params, dtype=model.dtype)
            _core.kfac_error_sums(*args, None, bases, keep, sq, None, s, cb)
            E = ekfac_from_flat(bases, s, model.layout, int(Xc.shape[0]), estimator, K.provenance, K)
        else:
            cross = xp.empty(L, dtype=np.float64)
            _core.kfac_error_sums(*args, K.flat(), None, keep, sq, cross, None, cb)
    sq = to_float64(sq)
    kf = np.array([_sq(A) * _sq(G) for A, G in K.factors])
    if E is not None:  # <F, G (x) A> = sum_ij lambda_G,i lambda_A,j s_ij: F's diagonal in the eigenbasis
        cross = np.array([float(to_float64(lg) @ to_float64(sc) @ to_float64(la))
                          for (la, _, lg, _), sc in zip(K.eigen(), E.scales)])
        ek = np.array([_sq(sc) for sc in E.scales])
    cross = to_float64(cross)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_k = np.sqrt(np.maximum(sq - 2 * cross + kf, 0.0) / sq)
        rel_e = np.sqrt(np.maximum(sq - ek, 0.0) / sq) if E is not None else None
    zero = ~(sq > 0)
    rel_k[zero] = np.nan
    if rel_e is not None:
        rel_e[zero] = np.nan
    return KFACError(rel_k, rel_e, np.sqrt(np.maximum(sq, 0.0)), E if E is not None else K)
