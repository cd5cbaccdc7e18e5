"""Matrix objects returned by :func:`fisherkit.fisher`: one class per shape.

Every object holds the estimate *averaged* over its ``n_samples`` inputs, knows the
model's layout, and offers the same operations: ``to_dense()``, ``diagonal()``,
``mv(v)``, ``solve(v, damping)``, ``inverse(damping)``, ``trace()``, ``frobenius()``,
``eigvalsh()`` (per block for block shapes), ``merge(other)`` (exact, weighted by sample
counts, for streaming and distributed sums), ``as_linear_operator()`` (a SciPy
``LinearOperator`` over ``mv``) and ``blocks`` (arrays per block in the canonical order). The
Kronecker-factored shapes (``KFAC``, ``EKFAC``) live in :mod:`fisherkit.kronecker`. Vectors are in the flat parameter order: per layer W_l row-major, then b_l.

A result computed by fisherkit carries its :class:`Provenance` (what model, estimator,
draws and input rows it comes from), and ``merge`` refuses results that do not belong
together: other weights, head, activations, dtype, estimator, draws or seed, or input rows
that overlap.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from ._backend import get_array_module
from ._layout import Layout, layout_of, unit_index
from ._linop import linear_operator
from ._loader import _core
from ._validate import check_damping, check_fits

__all__ = ["Provenance", "FisherMatrix", "Dense", "LayerBlocks", "UnitBlocks", "Diagonal", "unit_index"]


@dataclass(frozen=True)
class Provenance:
    """What an estimate was computed from. ``model`` is a fingerprint of the weights, biases,
    activations, head, sigma and dtype (``MLP.fingerprint()``); ``samples`` and ``seed`` the
    label draws (None where the estimator draws none); ``rows`` the half-open ranges of global
    input indices [start, stop) averaged over (from ``index_offset``)."""

    model: str
    estimator: str
    samples: int | None
    seed: int | None
    dtype: str
    rows: tuple[tuple[int, int], ...]

    def combined(self, other: "Provenance") -> "Provenance":
        """The provenance of the merge of two estimates; ValueError saying why they cannot
        be combined."""
        for name, why in (("model", "different models (weights, biases, activations, head or sigma)"),
                          ("estimator", "different estimators"), ("dtype", "different dtypes"),
                          ("samples", "different numbers of draws per input"), ("seed", "different seeds")):
            if getattr(self, name) != getattr(other, name):
                raise ValueError(f"cannot merge estimates of {why}: {getattr(self, name)!r} vs "
                                 f"{getattr(other, name)!r}")
        rows = sorted(self.rows + other.rows)
        for (a0, a1), (b0, b1) in zip(rows, rows[1:]):
            if b0 < a1:
                raise ValueError(f"cannot merge estimates over overlapping input rows [{a0}, {a1}) and [{b0}, {b1}): "
                                 "each input must be counted once (pass index_offset for each chunk of a stream)")
        merged: list[tuple[int, int]] = []
        for r in rows:
            if merged and merged[-1][1] == r[0]:
                merged[-1] = (merged[-1][0], r[1])
            else:
                merged.append(r)
        return replace(self, rows=tuple(merged))


class FisherMatrix:
    """Common behaviour; see the module docstring."""

    shape_name = ""

    def __init__(self, sizes: Sequence[int], n_samples: int, estimator: str, dtype: Any, *,
                 bias: Sequence[bool] | None = None, provenance: Provenance | None = None) -> None:
        self.layout: Layout = layout_of(sizes, bias)
        self.sizes = list(self.layout.sizes)
        self.n_samples = int(n_samples)
        self.estimator = estimator
        self.dtype = np.dtype(dtype)
        self.provenance = provenance

    @property
    def n_params(self) -> int:
        return self.layout.n_params

    @property
    def xp(self) -> Any:
        return get_array_module(("blocks", self.blocks[0]))

    # subclasses: blocks, to_dense, diagonal, mv, solve, inverse, eigvalsh, _with_blocks
    @property
    def blocks(self) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def trace(self) -> float:
        return float(self.diagonal().sum())

    def _dense_fits(self, max_bytes: int | None) -> None:
        """to_dense() forms P x P values: refuse (MemoryError with the bytes) beyond the budget."""
        P = self.n_params
        check_fits(P * P * self.dtype.itemsize, f"to_dense() of {P} parameters (a {P} x {P} matrix)",
                   f"keep the {type(self).__name__} and use mv, solve, diagonal or trace, which never form it",
                   max_bytes)

    def frobenius(self) -> float:
        """Frobenius norm of the P x P matrix this object represents."""
        return float(np.sqrt(sum(float((b.astype(np.float64) ** 2).sum()) for b in self._frob_parts())))

    def _frob_parts(self) -> list[Any]:
        return self.blocks

    def as_linear_operator(self) -> Any:
        """This matrix as a ``scipy.sparse.linalg.LinearOperator`` (P x P, this object's
        dtype, symmetric), for ``eigsh``, ``cg``, ``minres`` and the like: every product is
        one call of :meth:`mv` (all columns of a ``matmat`` at once). Needs SciPy
        (``pip install "fisherkit[scipy]"``); NumPy arrays only."""
        return linear_operator(self)

    def _check_vector(self, v: Any, name: str = "v") -> Any:
        xp = get_array_module(("v", v), ("matrix", self.blocks[0]))
        v = xp.asarray(v)
        if v.shape[:1] != (self.n_params,) or v.ndim not in (1, 2):
            raise ValueError(f"argument '{name}' must have shape ({self.n_params},) or ({self.n_params}, k), got {tuple(v.shape)}")
        if v.dtype.kind not in "fiu":
            raise TypeError(f"argument '{name}' must be real numeric, got dtype {v.dtype}")
        if not bool(xp.isfinite(v).all()):
            raise ValueError(f"argument '{name}' contains NaN or Inf")
        return v

    def merge(self, other: "FisherMatrix") -> "FisherMatrix":
        """The estimate over the union of both objects' inputs (weighted by n_samples).
        Refuses (ValueError, saying why) estimates of other models, estimators, dtypes or
        draws, and estimates over overlapping input rows."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        if (other.layout.sizes, other.layout.bias) != (self.layout.sizes, self.layout.bias) or other.estimator != self.estimator:
            raise ValueError("cannot merge estimates of different models or estimators "
                             f"({self.sizes}/{self.estimator} vs {other.sizes}/{other.estimator})")
        if (self.provenance is None) != (other.provenance is None):
            raise ValueError("cannot merge an estimate computed by fisherkit with one built by hand (no provenance)")
        prov = None if self.provenance is None else self.provenance.combined(other.provenance)  # type: ignore[arg-type]
        n = self.n_samples + other.n_samples
        a, b = self.n_samples / n, other.n_samples / n
        blocks = [a * x + b * y for x, y in zip(self.blocks, other.blocks)]
        out = self._with_blocks(blocks, n)
        out.provenance = prov
        return out

    def _with_blocks(self, blocks: list[Any], n: int) -> "FisherMatrix":  # pragma: no cover
        raise NotImplementedError

    def _kw(self) -> dict[str, Any]:
        return {"bias": self.layout.bias, "provenance": self.provenance}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(estimator={self.estimator!r}, sizes={self.sizes}, "
                f"n_params={self.n_params}, n_samples={self.n_samples}, dtype={self.dtype.name})")


def _cholesky_solve(blocks: Any, rhs: Any, damping: float, what: str) -> Any:
    """Batched SPD solve of (blocks + damping I) x = rhs (blocks (B, k, k), rhs (B, k, m)) by
    the compiled Cholesky kernel (NumPy) or cuSOLVER through CuPy; names the first block that
    is not positive definite, with its smallest eigenvalue."""
    xp = get_array_module(("blocks", blocks))
    B, k = int(blocks.shape[0]), int(blocks.shape[-1])
    m = int(rhs.shape[-1])
    if xp is np:
        A = np.ascontiguousarray(blocks, dtype=np.float64).reshape(B, k * k)
        r = np.ascontiguousarray(rhs, dtype=np.float64).reshape(B, k * m)
        out = np.empty_like(r)
        status = np.zeros(B, dtype=np.int32)
        _core.unit_block_solve(A, r, damping, out, m, status)
        bad = np.flatnonzero(status)
        x = out.reshape(B, k, m).astype(blocks.dtype, copy=False)
    else:
        A = blocks + damping * xp.eye(k, dtype=blocks.dtype)
        try:
            Lc = xp.linalg.cholesky(A)
            x = xp.linalg.solve(xp.swapaxes(Lc, -1, -2), xp.linalg.solve(Lc, rhs))
            bad = np.flatnonzero(~np.isfinite(xp.asnumpy(x)).reshape(B, -1).all(axis=1))
        except Exception:  # cupy's LinAlgError
            bad = np.arange(B)
    if bad.size:
        b = int(bad[0])
        lam = float(np.linalg.eigvalsh(np.asarray(blocks[b] if xp is np else xp.asnumpy(blocks[b]),
                                                  dtype=np.float64)).min()) + damping
        raise ValueError(f"{what} {b} is not positive definite (smallest eigenvalue {lam:.3e}); pass damping > 0")
    return x



class Dense(FisherMatrix):
    """The full P x P matrix."""

    shape_name = "full"

    def __init__(self, matrix: Any, sizes: Sequence[int], n_samples: int, estimator: str, **kw: Any) -> None:
        super().__init__(sizes, n_samples, estimator, matrix.dtype, **kw)
        self.matrix = matrix

    @property
    def blocks(self) -> list[Any]:
        return [self.matrix]

    def _with_blocks(self, blocks: list[Any], n: int) -> "Dense":
        return Dense(blocks[0], self.sizes, n, self.estimator, **self._kw())

    def to_dense(self, max_bytes: int | None = None) -> Any:
        """The P x P matrix itself (no copy, so no budget to check)."""
        return self.matrix

    def diagonal(self) -> Any:
        return self.xp.diagonal(self.matrix).copy()

    def mv(self, v: Any) -> Any:
        return self.matrix @ self._check_vector(v)

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        v = self._check_vector(v)
        damping = check_damping(damping)
        rhs = v if v.ndim == 2 else v[:, None]
        x = _cholesky_solve(self.matrix[None], rhs[None], damping, "block")[0]
        return x if v.ndim == 2 else x[:, 0]

    def inverse(self, damping: float = 0.0) -> Any:
        damping = check_damping(damping)
        xp = self.xp
        return _cholesky_solve(self.matrix[None], xp.eye(self.n_params, dtype=self.dtype)[None], damping, "block")[0]

    def eigvalsh(self) -> Any:
        return self.xp.linalg.eigvalsh(self.matrix)


class LayerBlocks(FisherMatrix):
    """One D_l x D_l block per layer (weights then bias of that layer, D_l = n_l k_l). With
    ``layers`` (a subset computed by ``fisher(..., shape="layer", layers=[...])``) it holds
    only those layers' blocks: ``blocks``, ``layer(l)``, ``eigvalsh`` and ``inverse`` work
    per block, and what needs the whole matrix (``to_dense``, ``mv``, ``solve``, ``diagonal``,
    ``trace``, ``frobenius``) says which layers are missing."""

    shape_name = "layer"

    def __init__(self, blocks: list[Any], sizes: Sequence[int], n_samples: int, estimator: str, *,
                 layers: Sequence[int] | None = None, **kw: Any) -> None:
        super().__init__(sizes, n_samples, estimator, blocks[0].dtype, **kw)
        self.layers = tuple(range(self.layout.n_layers)) if layers is None else tuple(int(l) for l in layers)
        if len(blocks) != len(self.layers):
            raise ValueError(f"argument 'blocks' must hold one block per layer of {list(self.layers)}, got {len(blocks)}")
        self._blocks = list(blocks)

    @property
    def blocks(self) -> list[Any]:
        return self._blocks

    def layer(self, l: int) -> Any:
        """The block of layer l (0-based)."""
        if l not in self.layers:
            raise ValueError(f"argument 'l': layer {l} was not computed (this object holds layers {list(self.layers)})")
        return self._blocks[self.layers.index(l)]

    def _kw(self) -> dict[str, Any]:
        return {**super()._kw(), "layers": self.layers}

    def _with_blocks(self, blocks: list[Any], n: int) -> "LayerBlocks":
        return LayerBlocks(blocks, self.sizes, n, self.estimator, **self._kw())

    def merge(self, other: "FisherMatrix") -> "FisherMatrix":
        if isinstance(other, LayerBlocks) and other.layers != self.layers:
            raise ValueError(f"cannot merge blocks of layers {list(self.layers)} with blocks of layers "
                             f"{list(other.layers)}")
        return super().merge(other)

    def _whole(self, what: str) -> None:
        if len(self.layers) != self.layout.n_layers:
            missing = sorted(set(range(self.layout.n_layers)) - set(self.layers))
            raise ValueError(f"{what} needs every layer's block, but layers {missing} were not computed "
                             f"(fisher(..., layers=...) computed layers {list(self.layers)})")

    def _offsets(self) -> list[tuple[int, int]]:
        sl = [self.layout.layer_slice(l) for l in self.layers]
        return [(s.start, s.stop) for s in sl]

    def to_dense(self, max_bytes: int | None = None) -> Any:
        """The P x P matrix (zeros outside the blocks); MemoryError beyond `max_bytes` (default:
        half the available memory)."""
        self._whole("to_dense()")
        self._dense_fits(max_bytes)
        xp = self.xp
        out = xp.zeros((self.n_params, self.n_params), dtype=self.dtype)
        for (a, b), B in zip(self._offsets(), self._blocks):
            out[a:b, a:b] = B
        return out

    def diagonal(self) -> Any:
        self._whole("diagonal()")
        xp = self.xp
        return xp.concatenate([xp.diagonal(B) for B in self._blocks])

    def frobenius(self) -> float:
        self._whole("frobenius()")
        return super().frobenius()

    def mv(self, v: Any) -> Any:
        self._whole("mv()")
        v = self._check_vector(v)
        return self.xp.concatenate([B @ v[a:b] for (a, b), B in zip(self._offsets(), self._blocks)])

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        self._whole("solve()")
        v = self._check_vector(v)
        damping = check_damping(damping)
        parts = []
        for l, ((a, b), B) in zip(self.layers, zip(self._offsets(), self._blocks)):
            rhs = v[a:b] if v.ndim == 2 else v[a:b, None]
            x = _cholesky_solve(B[None], rhs[None], damping, f"layer {l}, block")[0]
            parts.append(x if v.ndim == 2 else x[:, 0])
        return self.xp.concatenate(parts)

    def inverse(self, damping: float = 0.0) -> list[Any]:
        """Per layer, the inverse of (block + damping I)."""
        damping = check_damping(damping)
        xp = self.xp
        return [_cholesky_solve(B[None], xp.eye(B.shape[0], dtype=self.dtype)[None], damping,
                                f"layer {l}, block")[0] for l, B in zip(self.layers, self._blocks)]

    def eigvalsh(self) -> list[Any]:
        return [self.xp.linalg.eigvalsh(B) for B in self._blocks]


class UnitBlocks(FisherMatrix):
    """Per layer an array (n_l, n_{l-1}+1, n_{l-1}+1): one block per unit (row u of W_l
    followed by b_l[u])."""

    shape_name = "unit"

    def __init__(self, blocks: list[Any], sizes: Sequence[int], n_samples: int, estimator: str, **kw: Any) -> None:
        super().__init__(sizes, n_samples, estimator, blocks[0].dtype, **kw)
        self._blocks = list(blocks)
        self._index = self.layout.unit_index()

    @property
    def blocks(self) -> list[Any]:
        return self._blocks

    def _with_blocks(self, blocks: list[Any], n: int) -> "UnitBlocks":
        return UnitBlocks(blocks, self.sizes, n, self.estimator, **self._kw())

    def _gather(self, v: Any) -> list[Any]:
        xp = self.xp
        return [v[xp.asarray(ix)] for ix in self._index]  # (n_out, k) or (n_out, k, m)

    def _scatter(self, parts: list[Any], like: Any) -> Any:
        xp = self.xp
        out = xp.empty_like(like)
        for ix, p in zip(self._index, parts):
            out[xp.asarray(ix)] = p
        return out

    def to_dense(self, max_bytes: int | None = None) -> Any:
        """The P x P matrix (zeros outside the unit blocks); MemoryError beyond `max_bytes`
        (default: half the available memory)."""
        self._dense_fits(max_bytes)
        xp = self.xp
        out = xp.zeros((self.n_params, self.n_params), dtype=self.dtype)
        for ix, B in zip(self._index, self._blocks):
            ixx = xp.asarray(ix)
            out[ixx[:, :, None], ixx[:, None, :]] = B
        return out

    def diagonal(self) -> Any:
        xp = self.xp
        diag = xp.empty(self.n_params, dtype=self.dtype)
        for ix, B in zip(self._index, self._blocks):
            diag[xp.asarray(ix)] = xp.diagonal(B, axis1=1, axis2=2)
        return diag

    def mv(self, v: Any) -> Any:
        v = self._check_vector(v)
        parts = []
        for B, vv in zip(self._blocks, self._gather(v)):
            parts.append(B @ vv if v.ndim == 2 else (B @ vv[..., None])[..., 0])
        return self._scatter(parts, v)

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        v = self._check_vector(v)
        damping = check_damping(damping)
        parts = []
        for l, (B, vv) in enumerate(zip(self._blocks, self._gather(v))):
            rhs = vv if v.ndim == 2 else vv[..., None]
            x = _cholesky_solve(B, rhs, damping, f"layer {l}, unit")
            parts.append(x if v.ndim == 2 else x[..., 0])
        return self._scatter(parts, v)

    def inverse(self, damping: float = 0.0) -> list[Any]:
        """Per layer, the inverses of the damped unit blocks (n_l, k, k)."""
        damping = check_damping(damping)
        xp = self.xp
        out = []
        for l, B in enumerate(self._blocks):
            eye = xp.broadcast_to(xp.eye(B.shape[-1], dtype=self.dtype), B.shape)
            out.append(_cholesky_solve(B, eye, damping, f"layer {l}, unit"))
        return out

    def eigvalsh(self) -> list[Any]:
        """Per layer, (n_l, k) eigenvalues of every unit block."""
        return [self.xp.linalg.eigvalsh(B) for B in self._blocks]


class Diagonal(FisherMatrix):
    """The diagonal (P,)."""

    shape_name = "diag"

    def __init__(self, values: Any, sizes: Sequence[int], n_samples: int, estimator: str, **kw: Any) -> None:
        super().__init__(sizes, n_samples, estimator, values.dtype, **kw)
        self.values = values

    @property
    def blocks(self) -> list[Any]:
        """Per layer, the diagonal entries of that layer's parameters (views)."""
        return [self.values[self.layout.layer_slice(l)] for l in range(self.layout.n_layers)]

    def _frob_parts(self) -> list[Any]:
        return [self.values]

    def _with_blocks(self, blocks: list[Any], n: int) -> "Diagonal":
        return Diagonal(self.xp.concatenate(blocks), self.sizes, n, self.estimator, **self._kw())

    def to_dense(self, max_bytes: int | None = None) -> Any:
        """The P x P diagonal matrix; MemoryError beyond `max_bytes` (default: half the
        available memory)."""
        self._dense_fits(max_bytes)
        return self.xp.diag(self.values)

    def diagonal(self) -> Any:
        return self.values.copy()

    def mv(self, v: Any) -> Any:
        v = self._check_vector(v)
        return self.values * v if v.ndim == 1 else self.values[:, None] * v

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        v = self._check_vector(v)
        damping = check_damping(damping)
        d = self.values + damping
        if not bool((d > 0).all()):
            bad = int(self.xp.argmin(d))
            raise ValueError(f"diagonal entry {bad} is {float(d[bad]):.3e} (not positive); pass damping > 0")
        return v / d if v.ndim == 1 else v / d[:, None]

    def inverse(self, damping: float = 0.0) -> Any:
        """1 / (diagonal + damping), the inverse's diagonal."""
        return self.solve(self.xp.ones(self.n_params, dtype=self.dtype), damping)

    def eigvalsh(self) -> Any:
        return self.xp.sort(self.values)


def from_flat(flat: Any, layout: Layout, shape: str, n_samples: int, estimator: str,
              provenance: Provenance | None = None) -> FisherMatrix:
    """The matrix object of `shape` over a flat engine result in the layout's order (views,
    no copies)."""
    kw = {"bias": layout.bias, "provenance": provenance}
    if shape == "diag":
        return Diagonal(flat, layout.sizes, n_samples, estimator, **kw)
    if shape == "full":
        p = layout.n_params
        return Dense(flat.reshape(p, p), layout.sizes, n_samples, estimator, **kw)
    blocks = []
    for l in range(layout.n_layers):
        n_out, k = layout.sizes[l + 1], layout.unit_width[l]
        off = layout.offset(shape, l)
        if shape == "unit":
            blocks.append(flat[off:off + n_out * k * k].reshape(n_out, k, k))
        else:
            d = n_out * k
            blocks.append(flat[off:off + d * d].reshape(d, d))
    cls = UnitBlocks if shape == "unit" else LayerBlocks
    return cls(blocks, layout.sizes, n_samples, estimator, **kw)
