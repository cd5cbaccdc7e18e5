"""``fisherkit.fisher``: the Fisher information matrix of an MLP, in every estimator and
shape, streamed over chunks of inputs in the compiled core."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import heads as _heads
from ._backend import is_dask
from ._loader import _core
from ._validate import as_chunk, check_fits
from .matrices import Dense, Diagonal, FisherMatrix, LayerBlocks, UnitBlocks, _layer_geometry
from .model import MLP

ESTIMATORS = ("exact", "score", "hessian", "empirical")
SHAPES = ("full", "layer", "unit", "diag")


def result_size(sizes: list[int], shape: str) -> int:
    """Number of values of the flat result of `shape` for layer widths `sizes`."""
    geo = _layer_geometry(sizes)
    if shape == "diag":
        return sum(o * i + o for o, i, _ in geo)
    if shape == "full":
        p = sum(o * i + o for o, i, _ in geo)
        return p * p
    if shape == "unit":
        return sum(o * (i + 1) ** 2 for o, i, _ in geo)
    return sum((o * (i + 1)) ** 2 for o, i, _ in geo)


def _wrap(flat: Any, sizes: list[int], shape: str, n: int, estimator: str) -> FisherMatrix:
    if shape == "diag":
        return Diagonal(flat, sizes, n, estimator)
    if shape == "full":
        p = int(round(flat.size ** 0.5))
        return Dense(flat.reshape(p, p), sizes, n, estimator)
    blocks, off = [], 0
    for o, i, _ in _layer_geometry(sizes):
        k = i + 1
        if shape == "unit":
            blocks.append(flat[off:off + o * k * k].reshape(o, k, k))
            off += o * k * k
        else:
            d = o * k
            blocks.append(flat[off:off + d * d].reshape(d, d))
            off += d * d
    cls = UnitBlocks if shape == "unit" else LayerBlocks
    return cls(blocks, sizes, n, estimator)


def fisher(
    model: MLP,
    X: Any,
    y: Any = None,
    *,
    estimator: str = "exact",
    shape: str = "diag",
    samples: int = 1,
    seed: int | None = None,
    chunk: int | None = None,
    max_bytes: int | None = None,
    index_offset: int = 0,
    with_stderr: bool = False,
) -> FisherMatrix | tuple[FisherMatrix, FisherMatrix]:
    """Estimate the Fisher information matrix of `model` over the inputs `X`.

    Parameters
    ----------
    model : MLP
    X : array (N, n_0)
        Inputs. Converted once to the model's dtype if needed.
    y : array, optional
        Labels, needed (only) by ``estimator="empirical"``.
    estimator : {"exact", "score", "hessian", "empirical"}
        ``exact``: (1/N) sum_n J_n^T Cov(t|h_n) J_n, no sampling. ``score`` (I1): average
        of score outer products with `samples` labels drawn from the model per input.
        ``hessian`` (I2): average negative Hessian of the log-likelihood at `samples`
        drawn labels (indefinite in general; within-layer terms need phi''). ``empirical``:
        score outer products at the given labels (biased unless y ~ model).
    shape : {"full", "layer", "unit", "diag"}
        P x P; one block per layer; one (n_in+1)^2 block per unit (bias last); the diagonal.
    samples : int
        Label draws per input for ``score`` and ``hessian``.
    seed : int, optional
        Key of the counter-based generator: the same seed gives the same estimate whatever
        `chunk` and the thread count. None draws fresh entropy.
    chunk : int, optional
        Inputs per chunk (default: about 32 MiB of workspace). Memory is the result plus
        O(chunk x (C x max width + P)) workspace; the N x C x P Jacobian is never formed.
    max_bytes : int, optional
        Memory budget for the result and its workspace (default: half the available
        memory). A request beyond it raises MemoryError before allocating.
    index_offset : int
        Global index of X's first row, so that chunks of one stream drawn with one seed
        and merged with ``.merge`` equal the estimate over the whole stream.

    with_stderr : bool
        Also return the standard error of every entry: the square root of the closed-form
        fixed-input variance of this estimate (``fisherkit.variance``), in the same layout;
        zeros for "exact"; not available for "empirical".

    Returns
    -------
    Dense, LayerBlocks, UnitBlocks or Diagonal, averaged over the N inputs (and draws);
    with ``with_stderr=True`` the pair (estimate, standard error).
    """
    if is_dask(X, y):  # Dask arrays: row blocks on workers, merged (fisherkit.distributed)
        from . import distributed  # lazy: distributed imports this module
        return distributed.fisher(model, X, y, estimator=estimator, shape=shape, samples=samples, seed=seed,
                                  chunk=chunk, max_bytes=max_bytes, index_offset=index_offset,
                                  with_stderr=with_stderr)
    if not isinstance(model, MLP):
        raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"argument 'samples' must be >= 1, got {samples}")
    if estimator == "empirical" and y is None:
        raise ValueError("the empirical estimator needs labels: pass y (or use estimator='exact')")
    if with_stderr and estimator == "empirical":
        raise ValueError("with_stderr=True is not available for the empirical Fisher: its variance "
                         "needs the data distribution")
    if estimator != "empirical":
        y = None
    Xc, yc = model._inputs(X, y)
    sizes = model.sizes
    size = result_size(sizes, shape)
    item = model.dtype.itemsize
    extra = size * 8 if model.dtype == np.float32 else 0  # float64 accumulator
    suggestion = ("use shape='unit' or shape='diag', which fit in memory"
                  if shape in ("full", "layer") else "use shape='diag' or a smaller model")
    check_fits(size * item + extra, f"the {shape!r} Fisher of {model.n_params} parameters", suggestion, max_bytes)
    out = model.xp.empty(size, dtype=model.dtype)
    _core.fisher(*model._core_args(), model.head, model.sigma, Xc, yc, estimator, shape, samples,
                 _heads.resolve_seed(seed), as_chunk(chunk), int(index_offset), out)
    result = _wrap(out, sizes, shape, Xc.shape[0], estimator)
    if not with_stderr:
        return result
    from .variance import _stderr  # lazy: variance.py imports this module

    return result, _stderr(model, Xc, estimator, shape, samples, chunk, max_bytes)


def fisher_vector_product(model: MLP, X: Any, v: Any, *, chunk: int | None = None) -> Any:
    """Exact Fisher times vectors: (1/N) sum_n J_n^T Cov(t|h_n) J_n v, streamed in the
    compiled core (one tangent forward and one backward pass per chunk; no Jacobian and no
    P x P matrix). `v` has shape (P,) or (P, k); the result has the same shape. This is the
    Gauss-Newton/Fisher-vector product used by conjugate-gradient natural gradients."""
    if is_dask(X):  # Dask arrays: row blocks on workers, summed (fisherkit.distributed)
        from . import distributed  # lazy: distributed imports this module
        return distributed.fisher_vector_product(model, X, v, chunk=chunk)
    if not isinstance(model, MLP):
        raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
    Xc, _ = model._inputs(X)
    xp = model.xp
    V = xp.asarray(v)
    if V.ndim == 2 and V.shape[0] == model.n_params:
        cols = [fisher_vector_product(model, Xc, V[:, j], chunk=chunk) for j in range(V.shape[1])]
        return xp.stack(cols, axis=1)
    vc = model._direction(V)
    out = xp.empty(model.n_params, dtype=model.dtype)
    _core.fisher_vector_product(*model._core_args(), model.head, model.sigma, Xc, vc, out, as_chunk(chunk))
    return out
