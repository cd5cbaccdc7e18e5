"""Dask arrays in: Fisher matrices, variances, products and gradients over inputs that live in
blocks (a cluster's memory, a Zarr store, an HDF5 data set, a memory-mapped ``.npy`` file).

Every fisherkit quantity over inputs is an average (or a sum) over rows. Here each row block of
a ``dask.array.Array`` is handed to the compiled engine where the block lives (a Dask worker or
thread) with ``index_offset`` set to the block's global first row, so the labels drawn for a
row are the ones a single call over all rows draws. The partial results carry their row range
and are combined in a tree of `split_every`-way tasks: matrix objects by ``merge`` (weighted by
rows), raw sums over inputs by addition. The answer is the object one process returns, equal to
it up to rounding, whatever the chunking and the number of workers.

``fisherkit.fisher``, ``variance``, ``fisher_vector_product``, ``recommend``,
``samples_needed`` and ``MLP.gradient`` come here when given a Dask array and compute at once.
The functions of this module take the same arguments plus

* ``compute=False``: return a ``dask.delayed.Delayed`` whose ``.compute()`` (or
  ``dask.compute(...)`` together with other collections) gives the result;
* ``split_every``: how many partial results one combine task merges (memory of a combine:
  about ``split_every + 2`` results).

The model's weights enter the task graph once per call: scattered to every worker when a
``dask.distributed`` client runs the computation, otherwise one graph key that every block
task depends on. Memory on a worker is its block(s) in flight plus a few partial results;
nothing gathers the inputs. For a ``.npy`` file use :func:`from_npy` (each task reads its rows
from the file): ``dask.array.from_array(np.load(path, mmap_mode="r"))`` puts the mapped array
itself into the graph, which a distributed scheduler would pickle with all its data.

Dask is optional: ``pip install "fisherkit[dask]"``.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import heads as _heads
from ._backend import is_dask, register_dask, to_float64
from ._engine import KRONECKER_SHAPES, kronecker
from ._validate import as_chunk, check_fits
from .fisher import check_request
from .fisher import fisher as _fisher
from .fisher import fisher_vector_product as _fvp
from .matrices import FisherMatrix
from .model import MLP, check_model
from .variance import closed_form as _cf
from .variance import planning as _plan
from .variance._common import (WHICH, check_estimator, check_samples, check_shape, flat_values, model64, rows,
                               variance_sum)

__all__ = [
    "fisher",
    "variance",
    "fisher_vector_product",
    "gradient",
    "recommend",
    "samples_needed",
    "from_npy",
]

INSTALL_HINT = 'pip install "fisherkit[dask]"'
SPLIT_EVERY = 4


def _require_dask() -> Any:
    """The dask module, or an ImportError that says how to install it."""
    try:
        import dask
        import dask.array  # noqa: F401  (dask.array needs the [array] requirements)
    except ImportError as exc:
        raise ImportError(f"fisherkit's Dask support needs Dask with dask.array: {INSTALL_HINT}") from exc
    return dask


# ============================================================================ partial results
@dataclass
class _Part:
    """A partial result over the global rows [start, stop): a tuple of matrix objects (combined
    by ``merge``), raw sums over the rows (arrays or floats, combined by addition) or None."""

    start: int
    stop: int
    values: tuple[Any, ...]


def _combine(parts: list[_Part]) -> _Part:
    """One combine task of the reduction tree: the parts must tile a range of rows."""
    parts = sorted(parts, key=lambda p: p.start)
    for a, b in zip(parts, parts[1:]):
        if a.stop != b.start:
            raise RuntimeError(f"fisherkit.distributed: partial results over rows [{a.start}, {a.stop}) and "
                               f"[{b.start}, {b.stop}) do not tile a range; the reduction graph is broken")
    acc: list[Any] = []
    for v in parts[0].values:
        # copied once so that the in-place sums below never touch a task's input (a retried
        # or shared task must see its inputs unchanged)
        acc.append(v.copy() if _is_array(v) else v)
    for p in parts[1:]:
        for k, v in enumerate(p.values):
            if v is None:
                continue
            if isinstance(v, FisherMatrix):
                acc[k] = acc[k].merge(v)
            elif _is_array(v):
                acc[k] += v
            else:
                acc[k] = acc[k] + v
    return _Part(parts[0].start, parts[-1].stop, tuple(acc))


def _is_array(v: Any) -> bool:
    return v is not None and not isinstance(v, (FisherMatrix, float, int)) and hasattr(v, "shape")


_ROW = re.compile(r"(argument '(?:X|y)'[^\n]*?(?:first at \[|row ))(\d+)")


@contextlib.contextmanager
def _global_rows(start: int) -> Iterator[None]:
    """Re-raise the engine's ValueError about a row of the block with the row's index in the
    whole array, so the message is the one a single call over all rows gives."""
    try:
        yield
    except ValueError as exc:
        msg = str(exc)
        new = _ROW.sub(lambda m: m.group(1) + str(int(m.group(2)) + start), msg, count=1)
        if start == 0 or new == msg:
            raise
        raise ValueError(new) from None


def _sum64(model: MLP, a: Any) -> Any:
    """A raw sum over rows in float64, in the model's array library."""
    return model.xp.asarray(a, dtype=np.float64)


# ============================================================================ inputs and graph
@dataclass
class _Blocks:
    """Row blocks of the inputs: per block a Delayed of X (and of y), its global first row."""

    X: list[Any]
    y: list[Any]
    starts: list[int]
    n: int
    client: Any


def _as_dask(name: str, a: Any, rows_like: Any = None) -> Any:
    import dask.array as da

    if is_dask(a):
        if not isinstance(a, da.Array):
            raise TypeError(f"argument '{name}' must be a dask.array.Array (or a NumPy array), "
                            f"got {type(a).__module__}.{type(a).__name__}")
        return a
    arr = np.asarray(a)
    if rows_like is not None and arr.ndim >= 1 and arr.shape[0] == rows_like.shape[0]:
        return da.from_array(arr, chunks=(rows_like.chunks[0],) + tuple((s,) for s in arr.shape[1:]))
    return da.from_array(arr, chunks=(-1,) * arr.ndim if arr.ndim else ())


def _known_rows(name: str, a: Any) -> None:
    if any(math.isnan(c) for c in a.chunks[0]) if a.ndim else False:
        raise ValueError(f"argument '{name}' has blocks of unknown size (NaN chunks); call "
                         f"{name}.compute_chunk_sizes() first: the global row offsets key the label draws")


def _check_inputs(model: MLP, X: Any) -> None:
    """The checks of the engine's boundary (fisherkit._validate.as_matrix), on the array's
    metadata only."""
    if X.dtype.kind not in "fiub":
        raise TypeError(f"argument 'X' must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"argument 'X' must be 2-D (rows x columns), got shape {tuple(X.shape)}")
    _known_rows("X", X)
    if X.shape[0] == 0:
        raise ValueError("argument 'X' is an empty batch (0 rows)")
    if X.shape[1] != model.input_dim:
        raise ValueError(f"argument 'X' must have {model.input_dim} columns, got shape {tuple(X.shape)}")


def _check_labels(model: MLP, y: Any, n: int) -> None:
    """The checks of fisherkit._validate.as_labels, on the array's metadata only."""
    if y.dtype.kind not in "fiub":
        raise TypeError(f"argument 'y' must be numeric, got dtype {y.dtype}")
    cols = 1 if model.head == "categorical" else model.output_dim
    shape = (y.shape[0], 1) if y.ndim == 1 and cols == 1 else tuple(y.shape)  # as_labels reshapes so
    if len(shape) != 2 or shape != (n, cols):
        want = f"({n},) or ({n}, 1)" if cols == 1 else f"({n}, {cols})"
        raise ValueError(f"argument 'y' must have shape {want} for the {model.head} head, got {shape}")
    _known_rows("y", y)


def _active_client() -> Any:
    """The dask.distributed Client that ``.compute()`` would use now, or None."""
    try:
        from distributed import Client
    except ImportError:
        return None
    dask = _require_dask()
    try:
        get = dask.base.get_scheduler()
    except Exception:  # a misconfigured scheduler: let compute() report it
        return None
    client = getattr(get, "__self__", None)
    return client if isinstance(client, Client) else None


def _refuse_embedded_memmap(name: str, a: Any) -> None:
    """A distributed scheduler pickles graph literals with all their bytes: a memory-mapped
    array inside the graph would be shipped whole. Refuse it with the way out."""
    for v in dict(a.__dask_graph__()).values():
        if isinstance(getattr(v, "value", v), np.memmap):
            raise ValueError(
                f"argument '{name}' is a Dask array over an np.memmap (dask.array.from_array on a memory "
                "map): a distributed scheduler would pickle the whole mapped file into the task graph. "
                f"Use fisherkit.distributed.from_npy(path) instead: each task then reads its own rows")


def _blocks(model: MLP, X: Any, y: Any = None) -> _Blocks:
    """Validated row blocks of X (and y, aligned with X's rows) as lists of Delayed."""
    _require_dask()
    if not is_dask(X) and y is not None and is_dask(y):
        y = _as_dask("y", y)
        X = _as_dask("X", X, rows_like=y)
    else:
        X = _as_dask("X", X)
    _check_inputs(model, X)
    n = int(X.shape[0])
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    client = _active_client()
    if client is not None:
        _refuse_embedded_memmap("X", X)
    yb: list[Any] = [None] * X.numblocks[0]
    if y is not None:
        y = _as_dask("y", y, rows_like=X)
        _check_labels(model, y, n)
        if client is not None:
            _refuse_embedded_memmap("y", y)
        y = y.rechunk({0: X.chunks[0], 1: -1} if y.ndim == 2 else {0: X.chunks[0]})
        yb = list(y.to_delayed().ravel())
    sizes = [int(c) for c in X.chunks[0]]
    starts = [int(s) for s in np.concatenate([[0], np.cumsum(sizes)[:-1]])]
    keep = [i for i, c in enumerate(sizes) if c > 0]  # empty blocks (from slicing) hold no inputs
    xb = list(X.to_delayed().ravel())
    return _Blocks([xb[i] for i in keep], [yb[i] for i in keep], [starts[i] for i in keep], n, client)


def _shared(obj: Any, blocks: _Blocks, what: str, token: str, compute: bool) -> Any:
    """`obj` (the model, and vectors every block needs) as ONE graph dependency: scattered to all
    workers when a distributed client computes now, else one literal key of the graph (which
    a scheduler ships to each worker once, not once per block)."""
    if compute and blocks.client is not None:
        return blocks.client.scatter(obj, broadcast=True, hash=False)
    dask = _require_dask()
    return dask.delayed(obj, name=f"fisherkit-{what}-shared-{token}", traverse=False)


def _check_split_every(split_every: Any) -> int:
    if isinstance(split_every, bool) or not isinstance(split_every, (int, np.integer)) or int(split_every) < 2:
        raise ValueError(f"argument 'split_every' must be an integer >= 2, got {split_every!r}")
    return int(split_every)


def _reduce(what: str, token: str, block_fn: Callable[..., _Part], block_args: Sequence[tuple[Any, ...]],
            finish_fn: Callable[..., Any], finish_args: tuple[Any, ...], split_every: int, compute: bool) -> Any:
    """Block tasks, a tree of combine tasks, one finishing task; computed now or returned lazily."""
    dask = _require_dask()
    delayed = dask.delayed
    level = [delayed(block_fn, pure=True)(*args, dask_key_name=f"fisherkit-{what}-block-{token}-{i}")
             for i, args in enumerate(block_args)]
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), split_every):
            group = level[j:j + split_every]
            nxt.append(group[0] if len(group) == 1 else delayed(_combine, pure=True)(
                group, dask_key_name=f"fisherkit-{what}-combine-{token}-{depth}-{j // split_every}"))
        level = nxt
    out = delayed(finish_fn, pure=True)(level[0], *finish_args, dask_key_name=f"fisherkit-{what}-{token}")
    return out.compute() if compute else out


def _literal(value: Any, compute: bool) -> Any:
    """A result that needs no pass over the data, lazy when asked."""
    if compute:
        return value
    return _require_dask().delayed(value, traverse=False)


def _token() -> str:
    return uuid.uuid4().hex[:16]


# ============================================================================ fisher
def _fisher_block(shared: MLP, X: Any, y: Any, start: int, opts: dict[str, Any], which: str | None) -> _Part:
    model = shared
    Xc = rows(model, X)  # converted once, for the Fisher and the variance sums
    with _global_rows(start):
        F = _fisher(model, Xc, y, estimator=opts["estimator"], shape=opts["shape"], samples=opts["samples"],
                    seed=opts["seed"], chunk=opts["chunk"], max_bytes=opts["max_bytes"],
                    index_offset=opts["index_offset"] + start, layers=opts["layers"])
        vsum = None
        if which is not None and opts["shape"] == "kfac":
            vsum = _sum64(model, _cf.kronecker_variance_sum(model, Xc, None, opts["chunk"]))
        elif which is not None:
            vsum = _sum64(model, _cf.per_input_sum(model, Xc, which, opts["shape"], opts["chunk"],
                                                   opts["max_bytes"]))
    return _Part(start, start + Xc.shape[0], (F, vsum))


def _fisher_finish(part: _Part, shared: MLP, opts: dict[str, Any], with_stderr: bool) -> Any:
    F = part.values[0]
    if not with_stderr:
        return F
    n, estimator = part.stop - part.start, opts["estimator"]
    if opts["shape"] in KRONECKER_SHAPES:
        return F, _cf.kronecker_root(shared, n, F, estimator, opts["samples"], part.values[1])
    V = _cf.from_sums(shared, n, opts["shape"], opts["samples"], f"var({estimator})", ysum=part.values[1])
    return F, _cf.root(V, estimator)


def _ekfac_block(shared: MLP, bases: Any, X: Any, y: Any, start: int, opts: dict[str, Any], with_var: bool) -> _Part:
    """One row block of the EKFAC scales in the eigenbases of the merged KFAC (the same bases
    in every block, so the blocks merge exactly)."""
    model = shared
    with _global_rows(start):
        Xc, yc = model._inputs(X, y)
        E = kronecker(model, Xc, yc, opts["estimator"], "ekfac", opts["samples"], opts["seed"], as_chunk(opts["chunk"]),
                      opts["index_offset"] + start, opts["max_bytes"], None, bases)
        vsum = _sum64(model, _cf.kronecker_variance_sum(model, Xc, bases, opts["chunk"])) if with_var else None
    return _Part(start, start + X.shape[0], (E, vsum))


def _ekfac_finish(part: _Part, shared: MLP, kfac: Any, opts: dict[str, Any], with_stderr: bool) -> Any:
    E = part.values[0].with_kfac(kfac)  # a new object: a task's input stays as it was
    if not with_stderr:
        return E
    n = part.stop - part.start
    return E, _cf.kronecker_root(shared, n, E, opts["estimator"], opts["samples"], part.values[1])


def _eigenbases(K: Any) -> Any:
    return K.eigenbases()


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
    layers: Sequence[int] | None = None,
    compute: bool = True,
    split_every: int = SPLIT_EVERY,
) -> Any:
    """:func:`fisherkit.fisher` over a Dask array `X` (and `y`): every row block computed by the
    engine with ``index_offset`` + its global first row, partial matrices merged in a tree.

    The result is the matrix object (and with ``with_stderr=True`` the pair) that the call on
    the whole array in one process returns, with the same labels drawn for every row; with
    ``compute=False`` a Delayed of it. ``seed=None`` draws one seed for all blocks. `chunk` and
    `max_bytes` apply inside each block; the result itself must fit in `max_bytes` on the
    client. A NaN/Inf or a bad label raises the ValueError of the one-process call, naming
    the row of `X` (or `y`)."""
    model = check_model(model)
    y, samples, index_offset, chunk, layers = check_request(model, estimator, shape, y, samples, index_offset, chunk,
                                                            with_stderr, layers)
    split_every = _check_split_every(split_every)
    size = (model.layout.size(shape) if shape not in KRONECKER_SHAPES
            else model.layout.size("kfac") + (model.n_params if shape == "ekfac" else 0))
    suggestion = ("use shape='unit' or shape='diag', which fit in memory"
                  if shape in ("full", "layer") else "use shape='diag' or a smaller model")
    check_fits(size * model.dtype.itemsize, f"the {shape!r} Fisher of {model.n_params} parameters", suggestion,
               max_bytes)
    blocks = _blocks(model, X, y)
    opts = dict(estimator=estimator, shape=shape, samples=samples, seed=_heads.resolve_seed(seed), chunk=chunk,
                max_bytes=max_bytes, index_offset=int(index_offset), layers=layers)
    which = WHICH.get(estimator) if with_stderr else None
    token = _token()
    shared = _shared(model, blocks, "fisher", token, compute)
    if shape == "ekfac":  # the merged KFAC's eigenbases first, then the scales in them per block
        kopts = {**opts, "shape": "kfac"}
        args = [(shared, xb, yb, s, kopts, None) for xb, yb, s in zip(blocks.X, blocks.y, blocks.starts)]
        K = _reduce("fisher-kfac", token, _fisher_block, args, _fisher_finish, (shared, kopts, False), split_every,
                    False)
        bases = _require_dask().delayed(_eigenbases, pure=True)(K, dask_key_name=f"fisherkit-eigenbases-{token}")
        args = [(shared, bases, xb, yb, s, opts, which is not None)
                for xb, yb, s in zip(blocks.X, blocks.y, blocks.starts)]
        return _reduce("fisher-ekfac", token, _ekfac_block, args, _ekfac_finish, (shared, K, opts, with_stderr),
                       split_every, compute)
    args = [(shared, xb, yb, s, opts, which) for xb, yb, s in zip(blocks.X, blocks.y, blocks.starts)]
    return _reduce("fisher", token, _fisher_block, args, _fisher_finish, (shared, opts, with_stderr),
                   split_every, compute)


# ============================================================================ variance
def _variance_block(shared: MLP, X: Any, start: int, opts: dict[str, Any]) -> _Part:
    """Raw sums over the block's rows: the single-draw variance (``which``) and, for the
    population variance, the squares of the per-input Fisher entries and their mean (a
    matrix object, merged)."""
    model = shared
    which, shape, chunk, max_bytes = opts["which"], opts["shape"], opts["chunk"], opts["max_bytes"]
    n = X.shape[0]
    with _global_rows(start):
        Xc = rows(model, X)
        ysum = fsq = mean = None
        if shape == "trace":
            if which is not None:  # the block's trace variance at S = 1 is ysum / n^2
                ysum = float(_cf.variance(model, Xc, estimator=opts["estimator"], shape="trace", samples=1,
                                           chunk=chunk, max_bytes=max_bytes)) * float(n) * n
            if opts["population"]:
                fsq = float(to_float64(_cf.per_input_sum(model, Xc, "fsq", "full", chunk, max_bytes)).sum())
                mean = _fisher(model64(model), Xc, estimator="exact", shape="full", chunk=chunk, index_offset=start)
        else:
            if which is not None:
                ysum = _sum64(model, _cf.per_input_sum(model, Xc, which, shape, chunk, max_bytes))
            if opts["population"]:
                fsq = _sum64(model, _cf.per_input_sum(model, Xc, "fsq", shape, chunk, max_bytes))
                mean = _fisher(model, Xc, estimator="exact", shape=shape, chunk=chunk, max_bytes=max_bytes,
                               index_offset=start)
    return _Part(start, start + n, (ysum, fsq, mean))


def _variance_finish(part: _Part, shared: MLP, opts: dict[str, Any]) -> Any:
    """fisherkit.variance's combination (closed_form.from_sums) of the summed parts."""
    model = shared
    ysum, fsq, mean = part.values
    n, samples, shape = part.stop - part.start, opts["samples"], opts["shape"]
    label = f"var({opts['estimator']})"
    if shape != "trace":
        return _cf.from_sums(model, n, shape, samples, label, ysum, fsq,
                             None if mean is None else flat_values(mean))
    out = ysum / (float(n) * n * samples) if ysum is not None else 0.0
    if opts["population"]:
        Fm = to_float64(mean.matrix)
        out += float(_cf.input_part(np, fsq, float((Fm * Fm).sum()), n))
    return out


def variance(
    model: MLP,
    X: Any,
    *,
    estimator: str = "score",
    shape: str = "diag",
    samples: int = 1,
    population: bool = False,
    chunk: int | None = None,
    max_bytes: int | None = None,
    compute: bool = True,
    split_every: int = SPLIT_EVERY,
) -> Any:
    """:func:`fisherkit.variance` over a Dask array `X`.

    The fixed-input variance 1/(N^2 S) sum_n C(x_n) is NOT a weighted mean of the blocks'
    variances (a block of N_b rows weighs N_b^2 / N^2): each block returns its raw sum
    sum_{n in b} C(x_n) and the sums are added. With ``population=True`` each block also
    returns sum_{n in b} F(x_n)^2 (entry-wise) and its exact Fisher; the input-sampling part
    (sum_n F(x_n)^2 - N Fbar^2) / ((N - 1) N) is formed once, from the global sums and the
    merged mean Fbar, as the one-process call does. Blocks may hold a single row."""
    model = check_model(model)
    estimator = check_estimator(estimator)
    shape = check_shape(shape, _cf.VARIANCE_SHAPES)
    samples = check_samples(samples)
    split_every = _check_split_every(split_every)
    blocks = _blocks(model, X)
    n = blocks.n
    if estimator == "exact" and not population:
        zero = 0.0 if shape == "trace" else _cf.from_sums(model, n, shape, samples, f"var({estimator})")
        return _literal(zero, compute)
    if population and n < 2:
        raise ValueError("population=True needs at least 2 inputs" if shape == "trace" else
                         "population=True estimates the input-sampling variance from the spread of the "
                         "per-input Fisher matrices: it needs at least 2 inputs")
    opts = dict(estimator=estimator, shape=shape, samples=samples, population=bool(population), chunk=chunk,
                max_bytes=max_bytes, which=WHICH.get(estimator))
    token = _token()
    shared = _shared(model, blocks, "variance", token, compute)
    args = [(shared, xb, s, opts) for xb, s in zip(blocks.X, blocks.starts)]
    return _reduce("variance", token, _variance_block, args, _variance_finish, (shared, opts), split_every, compute)


# ============================================================================ products and gradients
def _fvp_block(shared: tuple[MLP, Any], X: Any, start: int, chunk: int | None) -> _Part:
    model, v = shared
    with _global_rows(start):
        out = _fvp(model, X, v, chunk=chunk)
    return _Part(start, start + X.shape[0], (_sum64(model, out) * X.shape[0],))


def _fvp_finish(part: _Part, shared: tuple[MLP, Any]) -> Any:
    model = shared[0]
    return (part.values[0] / (part.stop - part.start)).astype(model.dtype)


def fisher_vector_product(model: MLP, X: Any, v: Any, *, chunk: int | None = None, compute: bool = True,
                          split_every: int = SPLIT_EVERY) -> Any:
    """:func:`fisherkit.fisher_vector_product` over a Dask array `X`: (1/N) sum_b N_b Fv_b, where
    Fv_b is the engine's product over block b. `v` ((P,) or (P, k)) travels once per call
    with the model."""
    model = check_model(model)
    V = model.xp.asarray(v)
    P = model.n_params
    if not (tuple(V.shape) == (P,) or (V.ndim == 2 and V.shape[0] == P)):
        raise ValueError(f"argument 'v' must have shape ({P},), got {tuple(V.shape)}")
    split_every = _check_split_every(split_every)
    blocks = _blocks(model, X)
    token = _token()
    shared = _shared((model, V), blocks, "fvp", token, compute)
    args = [(shared, xb, s, chunk) for xb, s in zip(blocks.X, blocks.starts)]
    return _reduce("fvp", token, _fvp_block, args, _fvp_finish, (shared,), split_every, compute)


def _gradient_block(shared: MLP, X: Any, y: Any, start: int, chunk: int) -> _Part:
    model = shared
    n = X.shape[0]
    with _global_rows(start):
        loss, g = model.gradient(X, y, chunk=chunk)
    return _Part(start, start + n, (float(loss) * n, _sum64(model, g) * n))


def _gradient_finish(part: _Part, shared: MLP) -> tuple[float, Any]:
    n = part.stop - part.start
    return part.values[0] / n, (part.values[1] / n).astype(shared.dtype)


def gradient(model: MLP, X: Any, y: Any, *, chunk: int = 0, compute: bool = True,
             split_every: int = SPLIT_EVERY) -> Any:
    """:meth:`fisherkit.MLP.gradient` over Dask arrays: (mean negative log-likelihood, its
    gradient), the row-weighted means of the blocks' values."""
    model = check_model(model)
    if y is None:
        raise ValueError("argument 'y' is required")
    split_every = _check_split_every(split_every)
    blocks = _blocks(model, X, y)
    token = _token()
    shared = _shared(model, blocks, "gradient", token, compute)
    args = [(shared, xb, yb, s, chunk) for xb, yb, s in zip(blocks.X, blocks.y, blocks.starts)]
    return _reduce("gradient", token, _gradient_block, args, _gradient_finish, (shared,), split_every, compute)


# ============================================================================ planning
def _recommend_block(shared: MLP, X: Any, start: int, shape: str, chunk: int | None) -> _Part:
    model = shared
    with _global_rows(start):
        Xc = rows(model, X)
        sums = tuple(to_float64(variance_sum(model, Xc, w, shape, chunk)) for w in ("v1", "v2", "c12"))
    return _Part(start, start + X.shape[0], sums)


def _recommend_finish(part: _Part, shared: MLP, shape: str, samples: int) -> Any:
    return _plan.recommendation(shared, part.stop - part.start, shape, samples, *part.values)


def recommend(model: MLP, X: Any, shape: str = "diag", samples: int = 1, *, chunk: int | None = None,
              compute: bool = True, split_every: int = SPLIT_EVERY) -> Any:
    """:func:`fisherkit.recommend` over a Dask array `X`: the three raw sums over inputs
    (Var(I1), Var(I2), Cov(I1, I2) per input and draw) are added over blocks, then scaled by
    1/(N^2 S) once."""
    model = check_model(model)
    shape = check_shape(shape, ("diag", "unit"))
    samples = check_samples(samples)
    split_every = _check_split_every(split_every)
    blocks = _blocks(model, X)
    token = _token()
    shared = _shared(model, blocks, "recommend", token, compute)
    args = [(shared, xb, s, shape, chunk) for xb, s in zip(blocks.X, blocks.starts)]
    return _reduce("recommend", token, _recommend_block, args, _recommend_finish, (shared, shape, samples),
                   split_every, compute)


def _samples_block(shared: MLP, X: Any, start: int, which: str | None) -> _Part:
    model = shared
    with _global_rows(start):
        Xc = rows(model, X)
        vsum = None if which is None else to_float64(variance_sum(model, Xc, which, "diag", None))
        F = _fisher(model, Xc, estimator="exact", shape="diag", index_offset=start)
    return _Part(start, start + X.shape[0], (vsum, F))


def _samples_finish(part: _Part, shared: MLP, rel_error: float, confidence: float, per_parameter: bool) -> Any:
    vsum, F = part.values
    V = _cf.from_sums(shared, part.stop - part.start, "diag", 1, "var", ysum=vsum)
    return _plan.draws_needed(V.values, F.values, rel_error, confidence, per_parameter)


def samples_needed(model: MLP, X: Any, rel_error: float, confidence: float, estimator: str = "score", *,
                   per_parameter: bool = False, compute: bool = True, split_every: int = SPLIT_EVERY) -> Any:
    """:func:`fisherkit.samples_needed` over a Dask array `X`: one pass over the blocks gives the
    raw sum of the diagonal single-draw variances and the exact diagonal (merged)."""
    model = check_model(model)
    estimator = check_estimator(estimator)
    rel_error, confidence = _plan.check_targets(rel_error, confidence)
    split_every = _check_split_every(split_every)
    blocks = _blocks(model, X)
    token = _token()
    shared = _shared(model, blocks, "samples", token, compute)
    args = [(shared, xb, s, WHICH.get(estimator)) for xb, s in zip(blocks.X, blocks.starts)]
    return _reduce("samples", token, _samples_block, args, _samples_finish,
                   (shared, rel_error, confidence, bool(per_parameter)), split_every, compute)


# ============================================================================ data larger than memory
class _NpyRows:
    """Array-like over a ``.npy`` file for ``dask.array.from_array``. A block of rows (C order)
    is a mapping of just those rows: the engine reads the pages in place (no copy into fresh
    memory), and dropping the block unmaps them, so a task holds its block and nothing else
    (a mapping of the whole file would keep every page ever read resident). Pickles as the
    path."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype, offset: int, fortran: bool) -> None:
        self.path, self.shape, self.dtype, self.offset, self.fortran = path, shape, dtype, offset, fortran
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if key else slice(None)
        if isinstance(rows, slice) and not self.fortran:
            a, b, step = rows.indices(self.shape[0])
            if step == 1:
                b = max(a, b)
                shape = (b - a,) + self.shape[1:]
                if b == a or 0 in shape:
                    block = np.empty(shape, dtype=self.dtype)
                else:
                    per_row = int(np.prod(self.shape[1:], dtype=np.int64))
                    block = np.memmap(self.path, dtype=self.dtype, mode="r", shape=shape,
                                      offset=self.offset + a * per_row * self.dtype.itemsize)
                return block[(slice(None),) + key[1:]] if len(key) > 1 else block
        mm = np.load(self.path, mmap_mode="r")  # other keys: copy out of a short-lived mapping
        try:
            return np.array(mm[key])
        finally:
            del mm


def from_npy(source: str | os.PathLike[str] | np.memmap, chunks: Any = "auto") -> Any:
    """A ``dask.array.Array`` over a ``.npy`` file (a path, or an ``np.memmap`` / the result of
    ``np.load(path, mmap_mode=...)`` over a whole file) whose tasks each read their own rows.

    `chunks`: rows per block (an int), or any Dask chunk specification; the default splits
    rows automatically (Dask's ``array.chunk-size``) and keeps the other axes whole. Memory of
    a task is one block; the graph holds only the path."""
    dask = _require_dask()
    import dask.array as da

    if isinstance(source, np.memmap):
        import mmap

        if not isinstance(source.base, mmap.mmap) or source.filename is None:
            raise ValueError("argument 'source' must be a path or an np.memmap over a whole file, got a view of "
                             "one; pass the path (or the memmap np.load returned) instead")
        path, shape, dtype, offset = os.fspath(source.filename), source.shape, source.dtype, source.offset
        fortran = bool(source.flags.f_contiguous and not source.flags.c_contiguous)
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"argument 'source' must be a path to a .npy file or an np.memmap, "
                            f"got {type(source).__name__}")
        path = os.fspath(source)
        mm = np.load(path, mmap_mode="r")
        if not isinstance(mm, np.memmap):
            raise ValueError(f"argument 'source' ({path!r}) is not a single .npy array")
        shape, dtype, offset = mm.shape, mm.dtype, mm.offset
        fortran = bool(mm.flags.f_contiguous and not mm.flags.c_contiguous)
        del mm
    if dtype.hasobject or len(shape) == 0:
        raise ValueError(f"argument 'source' must hold a numeric array with at least one axis, "
                         f"got dtype {dtype} and shape {shape}")
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, bool):
        if int(chunks) < 1:
            raise ValueError(f"argument 'chunks' must be >= 1 rows per block, got {chunks}")
        chunks = (int(chunks),) + (-1,) * (len(shape) - 1)
    elif isinstance(chunks, str) and chunks == "auto":
        chunks = ("auto",) + (-1,) * (len(shape) - 1)
    st = os.stat(path)
    name = "fisherkit-npy-" + dask.base.tokenize(os.path.abspath(path), st.st_size, st.st_mtime_ns, shape,
                                                 str(dtype), chunks)
    rows = _NpyRows(path, tuple(int(s) for s in shape), np.dtype(dtype), int(offset), fortran)
    return da.from_array(rows, chunks=chunks, name=name, meta=np.empty((0,) * len(shape), dtype=dtype))


for _name, _fn in (("fisher", fisher), ("variance", variance), ("fisher_vector_product", fisher_vector_product),
                   ("gradient", gradient), ("recommend", recommend), ("samples_needed", samples_needed)):
    register_dask(_name, _fn)
