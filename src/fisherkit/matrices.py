"""Matrix objects returned by :func:`fisherkit.fisher`: one class per shape.

Every object holds the estimate *averaged* over its ``n_samples`` inputs, knows the
model's layer widths, and offers the same operations: ``to_dense()``, ``diagonal()``,
``mv(v)``, ``solve(v, damping)``, ``inverse(damping)``, ``trace()``, ``frobenius()``,
``eigvalsh()`` (per block for block shapes), ``merge(other)`` (exact, weighted by sample
counts, for streaming and distributed sums) and ``blocks`` (arrays per block in the
canonical order). Vectors are in the flat parameter order: per layer W_l row-major, then b_l.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._backend import get_array_module


def _layer_geometry(sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(n_out, n_in, flat offset of W) per layer."""
    out, off = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        out.append((n_out, n_in, off))
        off += n_out * n_in + n_out
    return out


def unit_index(sizes: Sequence[int]) -> list[Any]:
    """Per layer an (n_out, n_in + 1) integer array: flat parameter index of each unit
    block's entries (row u of W_l, then b_l[u])."""
    idx = []
    for n_out, n_in, off in _layer_geometry(sizes):
        u = np.arange(n_out)[:, None]
        j = np.arange(n_in)[None, :]
        w = off + u * n_in + j
        b = off + n_out * n_in + np.arange(n_out)[:, None]
        idx.append(np.concatenate([w, b], axis=1))
    return idx


class FisherMatrix:
    """Common behaviour; see the module docstring."""

    shape_name = ""

    def __init__(self, sizes: Sequence[int], n_samples: int, estimator: str, dtype: Any) -> None:
        self.sizes = [int(s) for s in sizes]
        self.n_samples = int(n_samples)
        self.estimator = estimator
        self.dtype = np.dtype(dtype)

    @property
    def n_params(self) -> int:
        return sum(o * i + o for o, i, _ in _layer_geometry(self.sizes))

    @property
    def xp(self) -> Any:
        return get_array_module(("blocks", self.blocks[0]))

    # subclasses: blocks, to_dense, diagonal, mv, _solve_blocks, eigvalsh, _combine
    @property
    def blocks(self) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def trace(self) -> float:
        return float(self.diagonal().sum())

    def frobenius(self) -> float:
        """Frobenius norm of the P x P matrix this object represents."""
        return float(np.sqrt(sum(float((b.astype(np.float64) ** 2).sum()) for b in self._frob_parts())))

    def _frob_parts(self) -> list[Any]:
        return self.blocks

    def _check_vector(self, v: Any, name: str = "v") -> Any:
        xp = get_array_module(("v", v), ("matrix", self.blocks[0]))
        v = xp.asarray(v)
        if v.shape[:1] != (self.n_params,) or v.ndim not in (1, 2):
            raise ValueError(f"argument '{name}' must have shape ({self.n_params},) or ({self.n_params}, k), got {tuple(v.shape)}")
        return v

    def merge(self, other: "FisherMatrix") -> "FisherMatrix":
        """The estimate over the union of both objects' inputs (weighted by n_samples)."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        if other.sizes != self.sizes or other.estimator != self.estimator:
            raise ValueError("cannot merge estimates of different models or estimators "
                             f"({self.sizes}/{self.estimator} vs {other.sizes}/{other.estimator})")
        n = self.n_samples + other.n_samples
        a, b = self.n_samples / n, other.n_samples / n
        blocks = [a * x + b * y for x, y in zip(self.blocks, other.blocks)]
        return self._with_blocks(blocks, n)

    def _with_blocks(self, blocks: list[Any], n: int) -> "FisherMatrix":  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(estimator={self.estimator!r}, sizes={self.sizes}, "
                f"n_params={self.n_params}, n_samples={self.n_samples}, dtype={self.dtype.name})")


def _damped(blocks: Any, damping: float) -> Any:
    if damping:
        n = blocks.shape[-1]
        xp = get_array_module(("blocks", blocks))
        return blocks + damping * xp.eye(n, dtype=blocks.dtype)
    return blocks


def _cholesky_solve(blocks: Any, rhs: Any, damping: float, what: str) -> Any:
    """Batched SPD solve of (blocks + damping I) x = rhs; names the first block that is not
    positive definite."""
    xp = get_array_module(("blocks", blocks))
    A = _damped(blocks, damping)
    try:
        Lc = xp.linalg.cholesky(A)
    except Exception as exc:  # numpy.linalg.LinAlgError / cupy equivalent
        mins = xp.linalg.eigvalsh(A).min(axis=-1).reshape(-1)
        bad = int(xp.argmax(mins <= 0)) if bool((mins <= 0).any()) else int(xp.argmin(mins))
        raise ValueError(
            f"{what} {bad} is not positive definite (smallest eigenvalue {float(mins[bad]):.3e}); "
            "pass damping > 0"
        ) from exc
    # two triangular solves via a generic solve (batched, stable on the factor)
    z = xp.linalg.solve(Lc, rhs)
    return xp.linalg.solve(xp.swapaxes(Lc, -1, -2), z)


def _check_damping(damping: float) -> float:
    damping = float(damping)
    if not np.isfinite(damping) or damping < 0:
        raise ValueError(f"argument 'damping' must be finite and >= 0, got {damping}")
    return damping


class Dense(FisherMatrix):
    """The full P x P matrix."""

    shape_name = "full"

    def __init__(self, matrix: Any, sizes: Sequence[int], n_samples: int, estimator: str) -> None:
        super().__init__(sizes, n_samples, estimator, matrix.dtype)
        self.matrix = matrix

    @property
    def blocks(self) -> list[Any]:
        return [self.matrix]

    def _with_blocks(self, blocks: list[Any], n: int) -> "Dense":
        return Dense(blocks[0], self.sizes, n, self.estimator)

    def to_dense(self) -> Any:
        return self.matrix

    def diagonal(self) -> Any:
        return self.xp.diagonal(self.matrix).copy()

    def mv(self, v: Any) -> Any:
        return self.matrix @ self._check_vector(v)

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        v = self._check_vector(v)
        damping = _check_damping(damping)
        rhs = v if v.ndim == 2 else v[:, None]
        x = _cholesky_solve(self.matrix[None], rhs[None], damping, "block")[0]
        return x if v.ndim == 2 else x[:, 0]

    def inverse(self, damping: float = 0.0) -> Any:
        damping = _check_damping(damping)
        xp = self.xp
        return _cholesky_solve(self.matrix[None], xp.eye(self.n_params, dtype=self.dtype)[None], damping, "block")[0]

    def eigvalsh(self) -> Any:
        return self.xp.linalg.eigvalsh(self.matrix)


class LayerBlocks(FisherMatrix):
    """One D_l x D_l block per layer (weights then bias of that layer, D_l = n_l (n_{l-1}+1))."""

    shape_name = "layer"

    def __init__(self, blocks: list[Any], sizes: Sequence[int], n_samples: int, estimator: str) -> None:
        super().__init__(sizes, n_samples, estimator, blocks[0].dtype)
        self._blocks = list(blocks)

    @property
    def blocks(self) -> list[Any]:
        return self._blocks

    def _with_blocks(self, blocks: list[Any], n: int) -> "LayerBlocks":
        return LayerBlocks(blocks, self.sizes, n, self.estimator)

    def _offsets(self) -> list[tuple[int, int]]:
        return [(off, off + o * i + o) for o, i, off in _layer_geometry(self.sizes)]

    def to_dense(self) -> Any:
        xp = self.xp
        out = xp.zeros((self.n_params, self.n_params), dtype=self.dtype)
        for (a, b), B in zip(self._offsets(), self._blocks):
            out[a:b, a:b] = B
        return out

    def diagonal(self) -> Any:
        xp = self.xp
        return xp.concatenate([xp.diagonal(B) for B in self._blocks])

    def mv(self, v: Any) -> Any:
        v = self._check_vector(v)
        return self.xp.concatenate([B @ v[a:b] for (a, b), B in zip(self._offsets(), self._blocks)])

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        v = self._check_vector(v)
        damping = _check_damping(damping)
        parts = []
        for l, ((a, b), B) in enumerate(zip(self._offsets(), self._blocks)):
            rhs = v[a:b] if v.ndim == 2 else v[a:b, None]
            x = _cholesky_solve(B[None], rhs[None], damping, f"layer {l} (block")[0]
            parts.append(x if v.ndim == 2 else x[:, 0])
        return self.xp.concatenate(parts)

    def inverse(self, damping: float = 0.0) -> list[Any]:
        """Per layer, the inverse of (block + damping I)."""
        damping = _check_damping(damping)
        xp = self.xp
        return [_cholesky_solve(B[None], xp.eye(B.shape[0], dtype=self.dtype)[None], damping,
                                f"layer {l} (block")[0] for l, B in enumerate(self._blocks)]

    def eigvalsh(self) -> list[Any]:
        return [self.xp.linalg.eigvalsh(B) for B in self._blocks]


class UnitBlocks(FisherMatrix):
    """Per layer an array (n_l, n_{l-1}+1, n_{l-1}+1): one block per unit (row u of W_l
    followed by b_l[u])."""

    shape_name = "unit"

    def __init__(self, blocks: list[Any], sizes: Sequence[int], n_samples: int, estimator: str) -> None:
        super().__init__(sizes, n_samples, estimator, blocks[0].dtype)
        self._blocks = list(blocks)
        self._index = unit_index(self.sizes)

    @property
    def blocks(self) -> list[Any]:
        return self._blocks

    def _with_blocks(self, blocks: list[Any], n: int) -> "UnitBlocks":
        return UnitBlocks(blocks, self.sizes, n, self.estimator)

    def _gather(self, v: Any) -> list[Any]:
        xp = self.xp
        return [v[xp.asarray(ix)] for ix in self._index]  # (n_out, k) or (n_out, k, m)

    def _scatter(self, parts: list[Any], like: Any) -> Any:
        xp = self.xp
        out = xp.empty_like(like)
        for ix, p in zip(self._index, parts):
            out[xp.asarray(ix)] = p
        return out

    def to_dense(self) -> Any:
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
        damping = _check_damping(damping)
        parts = []
        for l, (B, vv) in enumerate(zip(self._blocks, self._gather(v))):
            rhs = vv if v.ndim == 2 else vv[..., None]
            x = _cholesky_solve(B, rhs, damping, f"layer {l}, unit")
            parts.append(x if v.ndim == 2 else x[..., 0])
        return self._scatter(parts, v)

    def inverse(self, damping: float = 0.0) -> list[Any]:
        """Per layer, the inverses of the damped unit blocks (n_l, k, k)."""
        damping = _check_damping(damping)
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

    def __init__(self, values: Any, sizes: Sequence[int], n_samples: int, estimator: str) -> None:
        super().__init__(sizes, n_samples, estimator, values.dtype)
        self.values = values

    @property
    def blocks(self) -> list[Any]:
        """Per layer, the diagonal entries of that layer's parameters (views)."""
        return [self.values[off:off + o * i + o] for o, i, off in _layer_geometry(self.sizes)]

    def _frob_parts(self) -> list[Any]:
        return [self.values]

    def _with_blocks(self, blocks: list[Any], n: int) -> "Diagonal":
        return Diagonal(self.xp.concatenate(blocks), self.sizes, n, self.estimator)

    def to_dense(self) -> Any:
        return self.xp.diag(self.values)

    def diagonal(self) -> Any:
        return self.values.copy()

    def mv(self, v: Any) -> Any:
        v = self._check_vector(v)
        return self.values * v if v.ndim == 1 else self.values[:, None] * v

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        v = self._check_vector(v)
        damping = _check_damping(damping)
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
