"""The compiled Fisher pass as a matrix object, for the public modules built on it
(``fisher`` and the variance modules): arguments already validated, memory checked here."""
from __future__ import annotations

from typing import Any

from ._loader import _core
from ._validate import check_fits
from .matrices import FisherMatrix, LayerBlocks, Provenance, from_flat
from .model import MLP

ESTIMATORS = ("exact", "score", "hessian", "empirical")
SHAPES = ("full", "layer", "unit", "diag")


def provenance(model: MLP, estimator: str, samples: int, seed: int, index_offset: int, n: int) -> Provenance:
    sampled = estimator in ("score", "hessian")
    return Provenance(model.fingerprint(), estimator, samples if sampled else None, seed if sampled else None,
                      model.dtype.name, ((index_offset, index_offset + n),))


def estimate(model: MLP, Xc: Any, yc: Any, estimator: str, shape: str, samples: int, seed: int, chunk: int,
             index_offset: int, max_bytes: int | None = None, progress: Any = None,
             layers: list[int] | None = None) -> FisherMatrix:
    """fisher() on validated inputs (Xc, yc in the core's layout): refuses a result beyond the
    memory budget before allocating it, runs the compiled pass, wraps the flat result. `layers`:
    the subset of layer blocks (shape "layer")."""
    layout = model.layout
    size = layout.size(shape) if layers is None else sum(layout.layer_params(l) ** 2 for l in layers)
    # the float64 accumulator of a float32 result and one chunk's buffers (sized by samples)
    workspace = _core.fisher_workspace(*model._core_args(), Xc, estimator, shape, samples, chunk, layers or [])
    if workspace > size * model.dtype.itemsize and (samples > 1 or chunk > 0):
        suggestion = ("pass fewer samples (the workspace holds samples rows per input)" if samples > 1
                      else "pass a smaller chunk")
    else:
        suggestion = ("use shape='unit' or shape='diag', which fit in memory" if shape in ("full", "layer")
                      else "use shape='diag', or a smaller model" if shape == "unit" else "use a smaller model")
    check_fits(size * model.dtype.itemsize + workspace,
               f"the {shape!r} Fisher of {model.n_params} parameters (result and workspace)", suggestion, max_bytes)
    out = model.xp.empty(size, dtype=model.dtype)
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
