"""``fisherkit.fisher``: the Fisher information matrix of an MLP, in every estimator and
shape, streamed over chunks of inputs in the compiled core."""
from __future__ import annotations

from typing import Any, Sequence


from . import heads as _heads
from ._backend import dask_call, is_dask
from ._engine import ESTIMATORS, KRONECKER_SHAPES, SHAPES, check_kronecker_estimator, estimate
from ._loader import _core
from ._progress import reporter
from ._validate import as_budget, as_chunk, as_index_offset, as_int, as_samples, check_labels, warn_unused
from .matrices import FisherMatrix
from .model import MLP, check_model
from .variance.closed_form import kronecker_standard_error, standard_error

__all__ = ["fisher", "fisher_vector_product", "ESTIMATORS", "SHAPES"]


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
    progress: Any = None,
    layers: Sequence[int] | None = None,
    out: Any = None,
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
    shape : {"full", "layer", "unit", "diag", "kfac", "ekfac"}
        P x P; one block per layer; one (n_in+1)^2 block per unit (bias last); the diagonal;
        ``kfac``: per layer the Kronecker factors A_l = mean abar abar^T (augmented input,
        bias last) and G_l = mean B^T Cov(t|h) B (B = dh/dz_l; sampled or at the labels for
        ``score`` / ``empirical``), the layer block approximated by G_l (x) A_l in the
        unit-major order (docs/maths/kfac.rst#kfac-factors); ``ekfac``: the eigenbases of those
        factors with the diagonal re-fitted in them (George et al. 2018;
        docs/maths/kfac.rst#kfac-ekfac). Both take ``exact``, ``score`` and ``empirical``. Both
        factors are averages over the inputs (and draws): curvlinops' and BackPACK's
        conventions differ by documented constants
        (docs/guide/kfac.rst#guide-kfac-conventions).
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
        memory, consulted from 32 MiB up). A request beyond it raises MemoryError before
        allocating.
    index_offset : int
        Global index of X's first row, so that chunks of one stream drawn with one seed
        and merged with ``.merge`` equal the estimate over the whole stream.

    with_stderr : bool
        Also return the standard error of every entry: the square root of the closed-form
        fixed-input variance of this estimate (``fisherkit.variance``), in the same layout;
        zeros for "exact"; not available for "empirical". For ``kfac`` the standard errors of
        the factors' entries (A_l: zeros), for ``ekfac`` of the scales with the eigenbases held
        fixed (docs/maths/kfac.rst#kfac-variance).
    layers : list of int, optional
        With ``shape="layer"``: compute only these layers' blocks (0-based), e.g. the block of
        one layer of a network whose full set of blocks would not fit in memory.
    progress : None, True or callable
        Report progress between chunks: a callable taking (done, total) inputs, or True for a
        progress bar (tqdm). Ctrl-C stops the computation at the next chunk in any case.
    out : array, optional
        A buffer to write the result into instead of a new array, for the matrix shapes
        (``full``, ``layer``, ``unit``, ``diag``): C-contiguous, of the model's dtype and array
        library, with ``model.layout.size(shape)`` entries (with `layers`, the sum of the
        selected blocks' sizes), in the layout of ``model.layout``. The returned matrix object
        is views of it. Reusing one buffer across calls saves the allocation and the page
        faults of a large result; its previous contents are never read.

    Returns
    -------
    Dense, LayerBlocks, UnitBlocks, Diagonal, KFAC or EKFAC, averaged over the N inputs (and draws);
    with ``with_stderr=True`` the pair (estimate, standard error).
    """
    y = ignored_labels(estimator, y)
    if is_dask(X, y):  # Dask arrays: row blocks on workers, merged (fisherkit.distributed)
        if out is not None:
            raise ValueError("argument 'out' is not available with Dask inputs (the result is merged from blocks)")
        return dask_call("fisher", model, X, y, estimator=estimator, shape=shape, samples=samples, seed=seed,
                         chunk=chunk, max_bytes=max_bytes, index_offset=index_offset, with_stderr=with_stderr,
                         layers=layers)
    check_model(model)
    y, samples, index_offset, chunk, subset = check_request(model, estimator, shape, y, samples, index_offset,
                                                            chunk, with_stderr, layers)
    key = _heads.resolve_seed(seed)
    max_bytes = as_budget(max_bytes)
    Xc, yc = model._inputs(X, y)
    with reporter(progress, f"fisher ({estimator}, {shape})") as cb:
        result = estimate(model, Xc, yc, estimator, shape, samples, key, chunk, index_offset, max_bytes, cb, subset,
                          out)
    if not with_stderr:
        return result
    if shape in KRONECKER_SHAPES:
        return result, kronecker_standard_error(model, Xc, result, estimator, samples, chunk)
    return result, standard_error(model, Xc, estimator, shape, samples, chunk, max_bytes)


def check_request(model: MLP, estimator: str, shape: str, y: Any, samples: Any, index_offset: Any, chunk: Any,
                  with_stderr: bool, layers: Any) -> tuple[Any, int, int, int, list[int] | None]:
    """The arguments of :func:`fisher` checked, for it and for its Dask twin
    (``fisherkit.distributed.fisher``): returns (y, samples, index_offset, chunk, layers),
    y dropped (with a warning) unless the estimator uses labels."""
    y = ignored_labels(estimator, y)
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    samples = as_samples(samples)
    index_offset = as_index_offset(index_offset)
    check_labels(estimator, y)
    if with_stderr and estimator == "empirical":
        raise ValueError("with_stderr=True is not available for the empirical Fisher: its variance "
                         "needs the data distribution")
    if shape in KRONECKER_SHAPES:
        check_kronecker_estimator(estimator, shape)
    subset = check_layers(model, shape, layers, with_stderr)
    return y, samples, index_offset, as_chunk(chunk), subset


def ignored_labels(estimator: Any, y: Any) -> Any:
    """`y` for the estimator: checked name; labels passed to an estimator that draws its own
    (or needs none) are a warning, and dropped."""
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
    if estimator == "empirical":
        return y
    warn_unused(y, "y", f"estimator={estimator!r} does not use labels (only 'empirical' does; "
                        f"{'exact sums over' if estimator == 'exact' else 'sampled ones draw'} the model's own)")
    return None


def check_layers(model: MLP, shape: str, layers: Any, with_stderr: bool) -> list[int] | None:
    if layers is None:
        return None
    if shape != "layer":
        raise ValueError(f"argument 'layers' selects blocks of shape 'layer', not {shape!r}")
    if with_stderr:
        raise ValueError("argument 'layers' cannot be combined with with_stderr=True")
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"argument 'layers' must be a list of layer indices, got {type(layers).__name__}")
    ids = [as_int(l, "layers", minimum=0, maximum=model.n_layers - 1) for l in layers]
    if not ids or ids != sorted(set(ids)):
        raise ValueError(f"argument 'layers' must list distinct layer indices in ascending order, got {list(layers)}")
    return ids


def fisher_vector_product(model: MLP, X: Any, v: Any, *, chunk: int | None = None) -> Any:
    """Exact Fisher times vectors: (1/N) sum_n J_n^T Cov(t|h_n) J_n v, streamed in the
    compiled core (one tangent forward pass along all k directions and one backward pass of
    k rows per input, in a single pass over X; no Jacobian and no P x P matrix). `v` has
    shape (P,) or (P, k); the result has the same shape. This is the Gauss-Newton/Fisher-vector
    product used by conjugate-gradient natural gradients and Lanczos. A Dask array `X` is
    summed block by block on its workers (:mod:`fisherkit.distributed`)."""
    if is_dask(X):
        return dask_call("fisher_vector_product", model, X, v, chunk=chunk)
    check_model(model)
    chunk = as_chunk(chunk)
    Xc, _ = model._inputs(X)
    xp = model.xp
    V = xp.asarray(v)
    if V.ndim == 1:
        return fisher_vector_product(model, Xc, V[:, None], chunk=chunk)[:, 0]
    if V.ndim != 2 or V.shape[0] != model.n_params or V.shape[1] < 1:
        raise ValueError(f"argument 'v' must have shape ({model.n_params},) or ({model.n_params}, k), "
                         f"got {tuple(V.shape)}")
    Vc = model._directions(V)
    out = xp.empty(Vc.shape, dtype=model.dtype)
    _core.fisher_vector_product(*model._core_args(), model.head, model.sigma, Xc, Vc, out, chunk)
    return out
