"""The compiled Fisher pass as a matrix object, for the public modules built on it
(``fisher`` and the variance modules): arguments already validated, memory checked here."""
from __future__ import annotations

from typing import Any

from ._backend import fresh_result
from ._loader import _core
from ._validate import check_fits
from .kronecker import ekfac_from_flat, kfac_from_flat
from .matrices import FisherMatrix, LayerBlocks, Provenance, from_flat
from .model import MLP

ESTIMATORS = ("exact", "score", "hessian", "empirical")
SHAPES = ("full", "layer", "unit", "diag", "kfac", "ekfac")
KRONECKER_SHAPES = ("kfac", "ekfac")
KRONECKER_ESTIMATORS = ("exact", "score", "empirical")


def provenance(model: MLP, estimator: str, samples: int, seed: int, index_offset: int, n: int) -> Provenance:
    sampled = estimator in ("score", "hessian")
    return Provenance(model.fingerprint(), estimator, samples if sampled else None, seed if sampled else None,
                      model.dtype.name, ((index_offset, index_offset + n),))


def estimate(model: MLP, Xc: Any, yc: Any, estimator: str, shape: str, samples: int, seed: int, chunk: int,
             index_offset: int, max_bytes: int | None = None, progress: Any = None,
             layers: list[int] | None = None, out: Any = None) -> FisherMatrix:
    """fisher() on validated inputs (Xc, yc in the core's layout): refuses a result beyond the
    memory budget before allocating it, runs the compiled pass, wraps the flat result. `layers`:
    the subset of layer blocks (shape "layer"); `out`: the caller's flat buffer for the result
    (checked here; the matrix object is views of it)."""
    if shape in KRONECKER_SHAPES:
        if out is not None:
            raise ValueError(f"argument 'out' is not available for shape {shape!r} (a Kronecker-factored result "
                             "is a set of factors, not one flat array)")
        return kronecker(model, Xc, yc, estimator, shape, samples, seed, chunk, index_offset, max_bytes, progress)
    layout = model.layout
    size = layout.size(shape) if layers is None else sum(layout.layer_params(l) ** 2 for l in layers)
    # one chunk's buffers (sized by samples); the result accumulates in place
    workspace = _core.fisher_workspace(*model._core_args(), Xc, estimator, shape, samples, chunk, layers or [])
    if workspace > size * model.dtype.itemsize and (samples > 1 or chunk > 0):
        suggestion = ("pass fewer samples (the workspace holds samples rows per input)" if samples > 1
                      else "pass a smaller chunk")
    else:
        suggestion = ("use shape='unit' or shape='diag', which fit in memory" if shape in ("full", "layer")
                      else "use shape='diag', or a smaller model" if shape == "unit" else "use a smaller model")
    if out is None:
        check_fits(size * model.dtype.itemsize + workspace,
                   f"the {shape!r} Fisher of {model.n_params} parameters (result and workspace)", suggestion, max_bytes)
        out = fresh_result(model.xp, size, model.dtype)
    else:
        out = model._out_buffer(out, (size,))
        check_fits(workspace, f"the workspace of the {shape!r} Fisher of {model.n_params} parameters",
                   "pass a smaller chunk", max_bytes)
    _core.fisher(*model._core_args(), model.head, model.sigma, Xc, yc, estimator, shape, samples, seed, chunk,
                 index_offset, out, progress, layers or [])
    n = int(Xc.shape[0])
    prov = provenance(model, estimator, samples, seed, index_offset, n)
    if layers is None:
        return from_flat(out, layout, shape, n, estimator, prov)
    blocks, off = [], 0
    for l in layers:
        d = layout.layer_params(l)
        blocks.append(out[off:off + d * d].reshape(d, d))
        off += d * d
    return LayerBlocks(blocks, layout.sizes, n, estimator, bias=layout.bias, provenance=prov, layers=layers)


def check_kronecker_estimator(estimator: str, shape: str, what: str = "shape") -> None:
    """`estimator` has a Kronecker-factored form; ValueError naming `what` (shape or method)."""
    if estimator not in KRONECKER_ESTIMATORS:
        why = " (its output-Hessian term has no Kronecker form)" if estimator == "hessian" else ""
        raise ValueError(f"{what} {shape!r} takes the estimators {', '.join(KRONECKER_ESTIMATORS)}, not "
                         f"{estimator!r}{why}")


def kronecker(model: MLP, Xc: Any, yc: Any, estimator: str, shape: str, samples: int, seed: int, chunk: int,
              index_offset: int, max_bytes: int | None = None, progress: Any = None, bases: Any = None) -> Any:
    """fisher(shape="kfac" | "ekfac") on validated inputs: the factors by the compiled KFAC
    pass and, for "ekfac", the diagonal re-fitted in their eigenbases (or in `bases`, flat in
    the 'kfac' layout, when given: then the result carries no KFAC) by the EKFAC pass over
    the same rows (the same draws)."""
    check_kronecker_estimator(estimator, shape)
    layout, dt, xp = model.layout, model.dtype, model.xp
    size, P = layout.size("kfac"), model.n_params
    # the factors (and for EKFAC their eigenbases and the scales), accumulated in place
    need = size * dt.itemsize + (0 if shape == "kfac" else size * dt.itemsize + P * dt.itemsize)
    check_fits(need, f"the {shape!r} Fisher of {model.n_params} parameters", "use shape='diag' or a smaller model",
               max_bytes)
    n = int(Xc.shape[0])
    prov = provenance(model, estimator, samples, seed, index_offset, n)
    args = (*model._core_args(), model.head, model.sigma, Xc, yc, estimator, samples, seed, chunk, index_offset)
    K = None
    if bases is None:
        flat = xp.empty(size, dtype=dt)
        _core.kfac_factors(*args, flat, progress)
        K = kfac_from_flat(flat, layout, n, estimator, prov)
        if shape == "kfac":
            return K
        bases = K.eigenbases()
    scales = xp.empty(P, dtype=dt)
    _core.ekfac_diagonal(*args, bases, scales, progress)
    return ekfac_from_flat(bases, scales, layout, n, estimator, prov, K)
