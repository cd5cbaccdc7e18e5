"""The Kronecker-factored Fisher matrices that :func:`fisherkit.fisher` returns for
``shape="kfac"`` and ``shape="ekfac"`` (docs/maths/kfac.rst#kfac-factors).

Layer l of a KFAC holds two factors: ``A_l`` (k_l x k_l), the mean of abar abar^T over the
inputs, abar = (a_{l-1}, 1) the layer's augmented input (bias last; no bias entry for a
layer without bias), and ``G_l`` (n_l x n_l), the mean of B^T Cov(t|h) B with B = dh/dz_l
(or its sampled / empirical counterpart). Its layer block is ``G_l (x) A_l`` in the
unit-major order (unit u, input j) that the unit blocks use; in the flat parameter order
(W_l row-major, then b_l) that block is permuted, and every method here works in the flat
order. Both factors are averages, so ``G_l (x) A_l`` has the scale of every fisherkit
Fisher (one input and one output: exactly the layer block).

An EKFAC keeps the eigenbases Q_A, Q_G of a KFAC's factors and, per layer, an n_l x k_l
array of scales s fitted in the product basis: the exact diagonal of the layer block in
that basis (docs/maths/kfac.rst#kfac-ekfac), so it is at least as close as KFAC to the
layer block in Frobenius norm.

Vectors are in the flat parameter order, (P,) or (P, k), as for the other matrix objects.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._backend import get_array_module
from ._layout import Layout
from ._validate import check_damping, check_fits
from .info import blas_threads
from .matrices import FisherMatrix, Provenance

__all__ = ["KFAC", "EKFAC", "DAMPING_MODES", "kfac_from_flat", "ekfac_from_flat"]

DAMPING_MODES = ("exact", "factored")


def _grid(layout: Layout, l: int, v: Any) -> Any:
    """Layer l's part of v (P, m) as (m, n_out, k): entry [c, u, j] the parameter of unit u
    and input j (j = n_in: the bias)."""
    xp = get_array_module(("v", v))
    n_out, n_in, bias = layout.dims(l)
    s = layout.layer_slice(l)
    m = v.shape[1]
    W = v[s.start:s.start + n_out * n_in].reshape(n_out, n_in, m)
    if bias:
        W = xp.concatenate([W, v[s.start + n_out * n_in:s.stop][:, None, :]], axis=1)
    return xp.ascontiguousarray(W.transpose(2, 0, 1))


def _flat(layout: Layout, l: int, V: Any) -> Any:
    """The inverse of _grid: (m, n_out, k) to layer l's (D_l, m) rows of a flat vector."""
    xp = get_array_module(("V", V))
    n_out, n_in, bias = layout.dims(l)
    T = V.transpose(1, 2, 0)  # (n_out, k, m)
    parts = [T[:, :n_in, :].reshape(n_out * n_in, -1)]
    if bias:
        parts.append(T[:, n_in, :])
    return xp.concatenate(parts, axis=0)


def _local_index(layout: Layout, l: int) -> np.ndarray:
    """(n_out, k): the index within layer l's parameters of entry (u, j) of the grid."""
    return layout.unit_index()[l] - layout.param_offset[l]


def _apply(layout: Layout, v: Any, fn: Any) -> Any:
    """fn(l, grid (m, n_out, k)) -> grid, applied per layer to v (P,) or (P, m), with NumPy's
    BLAS at fisherkit's thread count."""
    xp = get_array_module(("v", v))
    V = v if v.ndim == 2 else v[:, None]
    with blas_threads():
        out = xp.concatenate([_flat(layout, l, fn(l, _grid(layout, l, V))) for l in range(layout.n_layers)], axis=0)
    return out if v.ndim == 2 else out[:, 0]


def _eigh(M: Any) -> tuple[Any, Any]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric factor, in float64."""
    xp = get_array_module(("factor", M))
    return xp.linalg.eigh(xp.asarray(M, dtype=np.float64))


def _check_positive(den: Any, l: int, what: str) -> None:
    """The eigenvalues `den` of layer l's damped block are positive (relative to the largest)."""
    lo, hi = float(den.min()), float(abs(den).max())
    if not lo > hi * den.size * np.finfo(np.float64).eps:
        raise ValueError(f"layer {l}: the {what} is not positive definite (smallest eigenvalue {lo:.3e}); "
                         "pass damping > 0")


class _Kronecker(FisherMatrix):
    """What KFAC and EKFAC share: per-layer structure over grids, dense views within a
    memory budget, and the linear-operator / vector checks of every matrix object."""

    def _budgeted(self, size: int, what: str, max_bytes: int | None) -> None:
        check_fits(size * self.dtype.itemsize, f"{what} of {self.n_params} parameters",
                   "use mv/solve (matrix-free) or as_linear_operator() instead", max_bytes)

    def _block(self, l: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def layer(self, l: int, *, max_bytes: int | None = None) -> Any:
        """The dense D_l x D_l block of layer l (0-based) in that layer's flat parameter order;
        MemoryError beyond `max_bytes` (default: half the available memory)."""
        if not 0 <= int(l) < self.layout.n_layers:
            raise ValueError(f"argument 'l' must be a layer index in [0, {self.layout.n_layers}), got {l}")
        d = self.layout.layer_params(int(l))
        self._budgeted(d * d, f"the dense block of layer {l}", max_bytes)
        K = self._block(int(l))  # unit-major (u, j) order
        ix = self.xp.asarray(_local_index(self.layout, int(l)).ravel())
        out = self.xp.empty((d, d), dtype=K.dtype)
        out[ix[:, None], ix[None, :]] = K
        return out

    def to_dense(self, *, max_bytes: int | None = None) -> Any:
        """The P x P block-diagonal matrix; MemoryError beyond `max_bytes` (default: half the
        available memory)."""
        P = self.n_params
        self._budgeted(P * P, "the dense matrix", max_bytes)
        out = self.xp.zeros((P, P), dtype=self.dtype)
        for l in range(self.layout.n_layers):
            s = self.layout.layer_slice(l)
            out[s, s] = self.layer(l)
        return out

    def _out_dtype(self, v: Any) -> Any:
        return np.result_type(self.dtype, v.dtype if v.dtype.kind == "f" else np.float64)


class KFAC(_Kronecker):
    """Per layer the Kronecker factors (A_l, G_l): the layer block G_l (x) A_l (see the module
    docstring for the order). ``factors[l]`` is the pair; ``blocks`` lists A_0, G_0, A_1, ...
    (``merge`` averages them: exactly the factors over the union of the inputs).

    ``solve(v, damping)`` inverts each block with its damping added exactly, through the
    eigendecompositions of the factors (computed once, cached); ``damping_mode="factored"``
    uses Martens & Grosse's factored Tikhonov damping (G + gamma/pi I) (x) (A + gamma pi I)
    with gamma = sqrt(damping) and their pi correction (``pi=False``: pi = 1).
    """

    shape_name = "kfac"

    def __init__(self, factors: Sequence[tuple[Any, Any]], sizes: Sequence[int], n_samples: int, estimator: str,
                 **kw: Any) -> None:
        factors = [(A, G) for A, G in factors]
        if not factors:
            raise ValueError("argument 'factors' is empty")
        super().__init__(sizes, n_samples, estimator, factors[0][0].dtype, **kw)
        if len(factors) != self.layout.n_layers:
            raise ValueError(f"argument 'factors' must hold one (A, G) pair per layer ({self.layout.n_layers}), "
                             f"got {len(factors)}")
        for l, (A, G) in enumerate(factors):
            n_out, k = self.layout.sizes[l + 1], self.layout.unit_width[l]
            if tuple(A.shape) != (k, k) or tuple(G.shape) != (n_out, n_out):
                raise ValueError(f"layer {l}: the factors must have shapes ({k}, {k}) and ({n_out}, {n_out}), got "
                                 f"{tuple(A.shape)} and {tuple(G.shape)}")
        self.factors = factors
        self._eig: list[tuple[Any, Any, Any, Any]] | None = None
        self._bases: list[tuple[Any, Any]] | None = None  # the eigenvectors in this object's dtype

    @property
    def blocks(self) -> list[Any]:
        return [M for pair in self.factors for M in pair]

    def _with_blocks(self, blocks: list[Any], n: int) -> "KFAC":
        return KFAC(list(zip(blocks[0::2], blocks[1::2])), self.sizes, n, self.estimator, **self._kw())

    def eigen(self) -> list[tuple[Any, Any, Any, Any]]:
        """Per layer (eigenvalues of A, eigenvectors of A, eigenvalues of G, eigenvectors of G),
        float64, ascending; computed once."""
        if self._eig is None:
            with blas_threads():
                self._eig = [(*_eigh(A), *_eigh(G)) for A, G in self.factors]
        return self._eig

    def _block(self, l: int) -> Any:
        A, G = self.factors[l]
        return self.xp.kron(G, A)

    def diagonal(self) -> Any:
        xp = self.xp
        d = [(xp.diagonal(G)[:, None] * xp.diagonal(A)[None, :])[None] for A, G in self.factors]
        return _apply(self.layout, xp.ones((self.n_params, 1), dtype=self.dtype), lambda l, V: d[l] * V)[:, 0]

    def trace(self) -> float:
        xp = self.xp
        return float(sum(float(xp.trace(A)) * float(xp.trace(G)) for A, G in self.factors))

    def frobenius(self) -> float:
        return float(np.sqrt(sum(_sq(A) * _sq(G) for A, G in self.factors)))

    def mv(self, v: Any) -> Any:
        v = self._check_vector(v)
        dt = self._out_dtype(v)
        return _apply(self.layout, v.astype(dt, copy=False),
                      lambda l, V: self.factors[l][1].astype(dt, copy=False) @ V @ self.factors[l][0].astype(dt, copy=False))

    def _denominators(self, damping: float, mode: str, pi: bool) -> list[Any]:
        """Per layer the (n_out, k) eigenvalues of the damped block in the eigenbasis."""
        if mode not in DAMPING_MODES:
            raise ValueError(f"argument 'damping_mode' must be one of {', '.join(DAMPING_MODES)}, got {mode!r}")
        gammas = self.factored_damping(damping, pi) if mode == "factored" else None
        out = []
        for l, (la, _, lg, _) in enumerate(self.eigen()):
            if gammas is None:
                den = lg[:, None] * la[None, :] + damping
                _check_positive(den, l, "damped layer block")
            else:
                ga, gg = gammas[l]
                den = (lg + gg)[:, None] * (la + ga)[None, :]
                _check_positive(den, l, "factored damped layer block")
            out.append(den)
        return out

    def factored_damping(self, damping: float, pi: bool = True) -> list[tuple[float, float]]:
        """Per layer the (gamma_A, gamma_G) added to A_l and G_l by factored Tikhonov damping:
        gamma_A = pi sqrt(damping), gamma_G = sqrt(damping) / pi, with Martens & Grosse's
        pi = sqrt((tr A / k) / (tr G / n_out)) (1 with ``pi=False``, or when a trace is 0)."""
        damping = check_damping(damping)
        root = float(np.sqrt(damping))
        out = []
        for A, G in self.factors:
            ta, tg = float(self.xp.trace(A)) / A.shape[0], float(self.xp.trace(G)) / G.shape[0]
            p = float(np.sqrt(ta / tg)) if pi and ta > 0 and tg > 0 else 1.0
            out.append((root * p, root / p))
        return out

    def solve(self, v: Any, damping: float = 0.0, *, damping_mode: str = "exact", pi: bool = True) -> Any:
        """(F_kfac + damping I)^-1 v per layer block (``damping_mode="exact"``), or the inverse
        of the factored Tikhonov damping (``"factored"``; ``pi`` as :meth:`factored_damping`),
        through the factors' eigendecompositions (computed once) in this object's dtype.
        ValueError naming the layer when a damped block is not positive definite."""
        v = self._check_vector(v)
        dens = self._denominators(check_damping(damping), damping_mode, pi)
        return self._in_eigenbasis([1.0 / d for d in dens], self.estimator).mv(v)

    def _in_eigenbasis(self, scales: list[Any], estimator: str) -> "EKFAC":
        """The matrix with these eigenvalues (per layer n_out x k) in the factors' eigenbases."""
        if self._bases is None:
            self._bases = [(Qa.astype(self.dtype), Qg.astype(self.dtype)) for _, Qa, _, Qg in self.eigen()]
        return EKFAC(self._bases, [sc.astype(self.dtype) for sc in scales], self.sizes, self.n_samples, estimator,
                     bias=self.layout.bias)

    def inverse(self, damping: float = 0.0, *, damping_mode: str = "exact", pi: bool = True) -> "_Kronecker":
        """The inverse of the damped matrix as a matrix object: with exact damping an
        :class:`EKFAC` in the factors' eigenbases (its scales 1 / (lambda_G lambda_A + damping));
        with factored damping a :class:`KFAC` of the inverted damped factors."""
        damping = check_damping(damping)
        dens = self._denominators(damping, damping_mode, pi)
        dt = self.dtype
        if damping_mode == "exact":
            return self._in_eigenbasis([1.0 / d for d in dens], f"inverse({self.estimator})")
        inv = []
        for (la, Qa, lg, Qg), (ga, gg) in zip(self.eigen(), self.factored_damping(damping, pi)):
            inv.append((((Qa / (la + ga)) @ Qa.T).astype(dt), ((Qg / (lg + gg)) @ Qg.T).astype(dt)))
        return KFAC(inv, self.sizes, self.n_samples, f"inverse({self.estimator})", bias=self.layout.bias)

    def eigvalsh(self) -> list[Any]:
        """Per layer the D_l eigenvalues of G_l (x) A_l (products of the factors'), ascending."""
        xp = self.xp
        return [xp.sort((lg[:, None] * la[None, :]).ravel()).astype(self.dtype) for la, _, lg, _ in self.eigen()]

    def blend(self, new: "KFAC", weight: float) -> "KFAC":
        """The running average ``(1 - weight) self + weight new`` of the factors (an
        optimizer's exponential moving average; no provenance: it mixes batches)."""
        if not isinstance(new, KFAC) or (new.layout.sizes, new.layout.bias) != (self.layout.sizes, self.layout.bias):
            raise ValueError("argument 'new' must be a KFAC of the same architecture")
        w = float(weight)
        pairs = [((1 - w) * A + w * A2, (1 - w) * G + w * G2) for (A, G), (A2, G2) in zip(self.factors, new.factors)]
        return KFAC(pairs, self.sizes, new.n_samples, self.estimator, bias=self.layout.bias)

    def flat(self) -> Any:
        """The factors as one flat array in the 'kfac' layout (A_l then G_l per layer,
        row-major), as the engine writes and reads them."""
        xp = self.xp
        return xp.concatenate([M.ravel() for M in self.blocks])

    def eigenbases(self) -> Any:
        """The eigenvectors of every factor as one flat array in the 'kfac' layout (Q_A then Q_G
        per layer, eigenvectors in the columns), in this object's dtype: what the engine's
        EKFAC pass takes."""
        xp = self.xp
        return xp.concatenate([xp.concatenate([Qa.ravel(), Qg.ravel()]) for _, Qa, _, Qg in self.eigen()]).astype(
            self.dtype)


class EKFAC(_Kronecker):
    """Per layer eigenbases (Q_A, Q_G) and scales s (n_out, k_l): the layer block
    (Q_G (x) Q_A) diag(s) (Q_G (x) Q_A)^T, in the unit-major order of :class:`KFAC`.
    ``scales[l]`` are its eigenvalues; ``bases[l]`` the pair of orthogonal matrices (eigenvectors
    in the columns); ``kfac`` the KFAC whose eigenbases these are (when fisher computed it).
    ``merge`` averages the scales of two EKFACs in the same bases (exact: the diagonal in a
    fixed basis is a mean over inputs) and refuses EKFACs in different bases."""

    shape_name = "ekfac"

    def __init__(self, bases: Sequence[tuple[Any, Any]], scales: Sequence[Any], sizes: Sequence[int],
                 n_samples: int, estimator: str, *, kfac: KFAC | None = None, **kw: Any) -> None:
        bases = [(Qa, Qg) for Qa, Qg in bases]
        scales = list(scales)
        if not scales:
            raise ValueError("argument 'scales' is empty")
        super().__init__(sizes, n_samples, estimator, scales[0].dtype, **kw)
        L = self.layout.n_layers
        if len(bases) != L or len(scales) != L:
            raise ValueError(f"arguments 'bases' and 'scales' must hold one entry per layer ({L}), got "
                             f"{len(bases)} and {len(scales)}")
        for l, ((Qa, Qg), s) in enumerate(zip(bases, scales)):
            n_out, k = self.layout.sizes[l + 1], self.layout.unit_width[l]
            if tuple(Qa.shape) != (k, k) or tuple(Qg.shape) != (n_out, n_out) or tuple(s.shape) != (n_out, k):
                raise ValueError(f"layer {l}: bases must be ({k}, {k}) and ({n_out}, {n_out}) and scales "
                                 f"({n_out}, {k}), got {tuple(Qa.shape)}, {tuple(Qg.shape)}, {tuple(s.shape)}")
        self.bases = bases
        self.scales = scales
        self.kfac = kfac

    @property
    def blocks(self) -> list[Any]:
        return self.scales

    def with_kfac(self, kfac: KFAC | None) -> "EKFAC":
        """This EKFAC (the same arrays and provenance) carrying `kfac` as its KFAC."""
        return EKFAC(self.bases, self.scales, self.sizes, self.n_samples, self.estimator, bias=self.layout.bias,
                     provenance=self.provenance, kfac=kfac)

    def _kw(self) -> dict[str, Any]:
        return {**super()._kw(), "kfac": None}

    def _with_blocks(self, blocks: list[Any], n: int) -> "EKFAC":
        return EKFAC(self.bases, blocks, self.sizes, n, self.estimator, **self._kw())

    def merge(self, other: FisherMatrix) -> FisherMatrix:
        if isinstance(other, EKFAC):
            xp = self.xp
            for l, (a, b) in enumerate(zip(self.bases, other.bases)):
                if not all(bool(xp.array_equal(x, y)) for x, y in zip(a, b)):
                    raise ValueError(f"cannot merge EKFACs in different eigenbases (layer {l}): compute both "
                                     "with the bases of one KFAC, or merge the KFACs and re-fit")
        return super().merge(other)

    def projected(self, bases: Sequence[tuple[Any, Any]]) -> list[Any]:
        """Per layer the diagonal of this matrix in other eigenbases (Q_A', Q_G'):
        (R_G o R_G) s (R_A o R_A)^T with R = Q'^T Q, the nearest EKFAC in those bases in
        Frobenius norm."""
        out = []
        for (Qa, Qg), (Pa, Pg), s in zip(self.bases, bases, self.scales):
            Ra, Rg = Pa.T @ Qa, Pg.T @ Qg
            out.append((Rg * Rg) @ s @ (Ra * Ra).T)
        return out

    def blend(self, new: "EKFAC", weight: float) -> "EKFAC":
        """The running average of two EKFACs that carry their KFACs: the factors averaged, then
        ``(1 - weight) self + weight new`` projected onto the eigenbases of the averaged factors
        (the scales of each re-expressed in the new bases, :meth:`projected`)."""
        if not isinstance(new, EKFAC) or self.kfac is None or new.kfac is None:
            raise ValueError("argument 'new' must be an EKFAC, and both must carry their KFAC (as fisher returns them)")
        K = self.kfac.blend(new.kfac, weight)
        bases = [(Qa.astype(self.dtype), Qg.astype(self.dtype)) for _, Qa, _, Qg in K.eigen()]
        w = float(weight)
        scales = [((1 - w) * a + w * b).astype(self.dtype)
                  for a, b in zip(self.projected(bases), new.projected(bases))]
        return EKFAC(bases, scales, self.sizes, new.n_samples, self.estimator, bias=self.layout.bias, kfac=K)

    def _block(self, l: int) -> Any:
        xp = self.xp
        Qa, Qg = self.bases[l]
        Q = xp.kron(Qg, Qa)
        return (Q * self.scales[l].ravel()[None, :]) @ Q.T

    def diagonal(self) -> Any:
        xp = self.xp
        d = [((Qg * Qg) @ s @ (Qa * Qa).T)[None] for (Qa, Qg), s in zip(self.bases, self.scales)]
        return _apply(self.layout, xp.ones((self.n_params, 1), dtype=self.dtype), lambda l, V: d[l] * V)[:, 0]

    def trace(self) -> float:
        return float(sum(float(s.sum()) for s in self.scales))

    def frobenius(self) -> float:
        return float(np.sqrt(sum(_sq(s) for s in self.scales)))

    def _rotated(self, v: Any, scale: Any) -> Any:
        dt = self._out_dtype(v)

        def one(l: int, V: Any) -> Any:
            Qa, Qg = (Q.astype(dt, copy=False) for Q in self.bases[l])
            return Qg @ ((Qg.T @ V @ Qa) * scale(l).astype(dt, copy=False)) @ Qa.T

        return _apply(self.layout, v.astype(dt, copy=False), one)

    def mv(self, v: Any) -> Any:
        v = self._check_vector(v)
        return self._rotated(v, lambda l: self.scales[l])

    def _damped(self, damping: float) -> list[Any]:
        damping = check_damping(damping)
        out = []
        for l, s in enumerate(self.scales):
            den = s.astype(np.float64) + damping
            _check_positive(den, l, "damped layer block")
            out.append(den)
        return out

    def solve(self, v: Any, damping: float = 0.0) -> Any:
        """(F_ekfac + damping I)^-1 v: exact damping, the scales are the eigenvalues."""
        v = self._check_vector(v)
        dens = self._damped(damping)
        return self._rotated(v, lambda l: 1.0 / dens[l])

    def inverse(self, damping: float = 0.0) -> "EKFAC":
        """The inverse of the damped matrix: an EKFAC in the same bases, scales 1 / (s + damping)."""
        dens = self._damped(damping)
        return EKFAC(self.bases, [(1.0 / d).astype(self.dtype) for d in dens], self.sizes, self.n_samples,
                     f"inverse({self.estimator})", bias=self.layout.bias)

    def eigvalsh(self) -> list[Any]:
        """Per layer the scales, ascending: the eigenvalues of each layer block."""
        return [self.xp.sort(s.ravel()) for s in self.scales]

    def eigenbases(self) -> Any:
        """The bases as one flat array in the 'kfac' layout (see :meth:`KFAC.eigenbases`)."""
        xp = self.xp
        return xp.concatenate([xp.concatenate([Qa.ravel(), Qg.ravel()]) for Qa, Qg in self.bases]).astype(self.dtype)


def _sq(M: Any) -> float:
    """The squared Frobenius norm, in float64."""
    return float((M.astype(np.float64) ** 2).sum())


def kfac_from_flat(flat: Any, layout: Layout, n_samples: int, estimator: str,
                   provenance: Provenance | None = None) -> KFAC:
    """The KFAC over an engine result in the 'kfac' layout (views, no copies)."""
    pairs = []
    for l in range(layout.n_layers):
        n_out, k = layout.sizes[l + 1], layout.unit_width[l]
        o = layout.offset("kfac", l)
        pairs.append((flat[o:o + k * k].reshape(k, k), flat[o + k * k:o + k * k + n_out * n_out].reshape(n_out, n_out)))
    return KFAC(pairs, layout.sizes, n_samples, estimator, bias=layout.bias, provenance=provenance)


def ekfac_from_flat(bases: Any, scales: Any, layout: Layout, n_samples: int, estimator: str,
                    provenance: Provenance | None = None, kfac: KFAC | None = None) -> EKFAC:
    """The EKFAC over flat bases ('kfac' layout) and flat scales (P values: per layer n_out x k
    at the layer's parameter offset), as the engine writes them (views, no copies)."""
    qs = kfac_from_flat(bases, layout, n_samples, estimator).factors
    sc = []
    for l in range(layout.n_layers):
        n_out, k = layout.sizes[l + 1], layout.unit_width[l]
        o = layout.param_offset[l]
        sc.append(scales[o:o + n_out * k].reshape(n_out, k))
    return EKFAC(qs, sc, layout.sizes, n_samples, estimator, bias=layout.bias, provenance=provenance, kfac=kfac)
