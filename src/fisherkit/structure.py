"""How unit-wise block-diagonal is an MLP's Fisher matrix? (natgrad.md 1.1 and 1.9)

:func:`block_structure` classifies every pair of parameters (a, b), a != b, by where it
sits relative to the unit blocks (a unit owns row i of W_l and b_l[i]; its inputs are
indexed j = 0..n-1 and the bias is input n):

=========================  =====  ===================================================
class                      tag    pairs
=========================  =====  ===================================================
``same_unit``              A      same unit, different inputs (inside the unit block)
``same_layer``             B + C  different units of one layer
``same_layer_same_input``  B      ... with the same input index j
``same_layer_other_input`` C      ... with different input indices
``across_layers``                 different layers
``adjacent_layers``        D      layers l and l + 1
=========================  =====  ===================================================

For each class it reports the RMS of the normalised entries
``C_ab = F_ab / sqrt(F_aa F_bb)``, the mass ``sum F_ab^2`` and the ratio of that mass to
the in-block mass (the squared Frobenius norm of the unit blocks, diagonals included).
Amari, Karakida and Oizumi show that the off-block classes are small for wide random nets;
with many outputs the largest one (B) decays like ``n^-1/2`` (natgrad.md 1.9), with a
scalar output it does not decay.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from . import heads as _heads
from .model import MLP

__all__ = ["BlockStructure", "block_structure", "CLASSES"]

CLASSES = ("same_unit", "same_layer", "same_layer_same_input", "same_layer_other_input",
           "across_layers", "adjacent_layers")


@dataclass
class BlockStructure:
    """Result of :func:`block_structure`; dictionaries keyed by :data:`CLASSES`.

    ``rms``: RMS of the normalised entries of the class; ``mass``: sum of F_ab^2 over the
    class (ordered pairs); ``ratio``: mass / ``in_block_mass``; ``counts``: number of
    ordered pairs (or of sampled pairs when ``sampled``). In sampled mode ``mass`` and
    ``ratio`` are not available (NaN) and ``rms`` uses an unbiased estimate of each squared
    entry (the Monte Carlo noise of the N-sample mean removed).
    """

    rms: dict[str, float]
    mass: dict[str, float]
    ratio: dict[str, float]
    counts: dict[str, int]
    in_block_mass: float
    sampled: bool

    def __str__(self) -> str:
        lines = [f"{'class':<24} {'pairs':>10} {'rms C_ab':>10} {'mass ratio':>11}"]
        for c in CLASSES:
            lines.append(f"{c:<24} {self.counts[c]:>10d} {self.rms[c]:>10.4f} {self.ratio[c]:>11.4f}")
        return "\n".join(lines)


def _labels(sizes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per flat parameter: (layer, unit, input index; bias = n_in)."""
    lay, unit, inp = [], [], []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        u = np.repeat(np.arange(n_out), n_in)
        j = np.tile(np.arange(n_in), n_out)
        lay.append(np.full(n_out * n_in + n_out, l))
        unit.append(np.concatenate([u, np.arange(n_out)]))
        inp.append(np.concatenate([j, np.full(n_out, n_in)]))
    return np.concatenate(lay), np.concatenate(unit), np.concatenate(inp)


def _class_masks(la: np.ndarray, ua: np.ndarray, ja: np.ndarray, lb: np.ndarray, ub: np.ndarray,
                 jb: np.ndarray) -> dict[str, np.ndarray]:
    same_layer = la == lb
    same_unit = same_layer & (ua == ub)
    diff_unit = same_layer & (ua != ub)
    return {
        "same_unit": same_unit & (ja != jb),
        "same_layer": diff_unit,
        "same_layer_same_input": diff_unit & (ja == jb),
        "same_layer_other_input": diff_unit & (ja != jb),
        "across_layers": ~same_layer,
        "adjacent_layers": np.abs(la - lb) == 1,
    }


def block_structure(model: MLP, X: Any, y: Any = None, *, estimator: str = "exact", pairs: int | None = None,
                    seed: int = 0, chunk: int = 64) -> BlockStructure:
    """Off-block versus in-block mass of the Fisher matrix of ``model`` over inputs ``X``.

    Without ``pairs`` (small models) the full P x P Fisher of ``estimator`` is formed with
    :func:`fisherkit.fisher` and every pair is classified (P^2 memory). With ``pairs = k``
    (any size; exact estimator) k random pairs per class are drawn (``seed``) and their
    entries accumulated from per-sample backpropagated factors over chunks of ``chunk``
    inputs, O(N C P) time and no P x P memory; the squared entries are estimated without
    the Monte Carlo bias of the mean (natgrad.md 1.9).
    """
    if not isinstance(model, MLP):
        raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
    Xc, _ = model._inputs(X)
    la, ua, ja = _labels(model.sizes)
    if pairs is None:
        from .fisher import fisher

        F = np.asarray(fisher(model, Xc, y, estimator=estimator, shape="full").to_dense(), dtype=np.float64)
        d = np.sqrt(np.maximum(np.diag(F), 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            Cn = np.where(np.outer(d, d) > 0, F / np.outer(d, d), 0.0)
        masks = _class_masks(la[:, None], ua[:, None], ja[:, None], la[None], ua[None], ja[None])
        in_block = (la[:, None] == la[None]) & (ua[:, None] == ua[None])
        F2 = F * F
        inb = float(F2[in_block].sum())
        rms = {c: float(np.sqrt((Cn[mk] ** 2).mean())) if mk.any() else float("nan") for c, mk in masks.items()}
        mass = {c: float(F2[mk].sum()) for c, mk in masks.items()}
        ratio = {c: mass[c] / inb if inb > 0 else float("nan") for c in masks}
        counts = {c: int(mk.sum()) for c, mk in masks.items()}
        return BlockStructure(rms, mass, ratio, counts, inb, False)
    if estimator != "exact":
        raise ValueError("argument 'estimator': sampled pairs support the exact estimator only")
    k = int(pairs)
    if k < 1:
        raise ValueError(f"argument 'pairs' must be >= 1, got {pairs}")
    rng = np.random.default_rng(seed)
    P = la.size
    chosen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in CLASSES:
        a_list, b_list, have, tries = [], [], 0, 0
        while have < k and tries < 200:
            a = rng.integers(0, P, 8 * k)
            b = rng.integers(0, P, 8 * k)
            ok = _class_masks(la[a], ua[a], ja[a], la[b], ua[b], ja[b])[c] & (a != b)
            a_list.append(a[ok])
            b_list.append(b[ok])
            have += int(ok.sum())
            tries += 1
        chosen[c] = (np.concatenate(a_list)[:k], np.concatenate(b_list)[:k])
    N = Xc.shape[0]
    s1 = {c: np.zeros(len(chosen[c][0])) for c in CLASSES}
    s2 = {c: np.zeros(len(chosen[c][0])) for c in CLASSES}
    diag = np.zeros(P)
    for D, xt in _factors(model, Xc, int(chunk)):
        # per sample s and column c: d theta_a = D[l_a][u_a, s, c] xt[l_a][s, j_a]
        Dt = [np.ascontiguousarray(np.moveaxis(Dl, 2, 0)) for Dl in D]  # (m, n, C): unit rows contiguous
        n_rows = xt[0].shape[0]

        def column(idx: np.ndarray) -> np.ndarray:
            out = np.empty((idx.size, n_rows, Dt[0].shape[2]))
            for l in np.unique(la[idx]):
                sel = np.flatnonzero(la[idx] == l)
                ii = idx[sel]
                out[sel] = Dt[l][ua[ii]] * xt[l][:, ja[ii]].T[:, :, None]
            return out

        for c in CLASSES:
            a, b = chosen[c]
            t = np.einsum("psc,psc->ps", column(a), column(b))  # (pairs, n): per-sample products
            s1[c] += t.sum(axis=1)
            s2[c] += (t * t).sum(axis=1)
        for l, (Dl, xl) in enumerate(zip(D, xt)):
            sq = np.einsum("scu,scu->su", Dl, Dl)  # (n, m)
            n_out, n_in = Dl.shape[2], xl.shape[1] - 1
            blk = sq.T @ (xl * xl)  # (m, n+1)
            off = int(np.flatnonzero(la == l)[0])
            diag[off:off + n_out * n_in] += blk[:, :n_in].ravel()
            diag[off + n_out * n_in:off + n_out * n_in + n_out] += blk[:, n_in]
    diag /= N
    rms, counts = {}, {}
    for c in CLASSES:
        a, b = chosen[c]
        sq = (s1[c] ** 2 - s2[c]) / (N * (N - 1))  # unbiased estimate of F_ab^2
        den = diag[a] * diag[b]
        good = den > 0
        rms[c] = float(np.sqrt(max(np.mean(sq[good] / den[good]), 0.0))) if good.any() else float("nan")
        counts[c] = int(a.size)
    nan = {c: float("nan") for c in CLASSES}
    return BlockStructure(rms, dict(nan), dict(nan), counts, float("nan"), True)


def _factors(model: MLP, X: np.ndarray, chunk: int) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Per chunk of inputs: per layer D (n, C, m) with sum_c D[s, c, i] D[s, c, i'] the
    metric between units i and i' (square root of Cov(t|h) backpropagated to
    pre-activations) and the augmented inputs xt (n, n_in + 1)."""
    from .natgrad import _activate

    acts = model.activations + ["identity"]
    layers = model.layers
    for lo in range(0, X.shape[0], max(1, chunk)):
        A = X[lo:lo + chunk].astype(np.float64)
        n = A.shape[0]
        xt, dphi = [], []
        for l, (W, b) in enumerate(layers):
            xt.append(np.concatenate([A, np.ones((n, 1))], axis=1))
            A, d = _activate(acts[l], A @ W.T.astype(np.float64) + b)
            dphi.append(d)
        B = _heads.sqrt_covariance(model.head, A, sigma=model.sigma)  # (n, K, K)
        K = B.shape[1]
        Dc = np.ascontiguousarray(np.swapaxes(B, 1, 2), dtype=np.float64)  # (n, c, K): column c of B as a row
        D = [None] * len(layers)
        D[-1] = Dc
        for l in range(len(layers) - 1, 0, -1):
            W = layers[l][0].astype(np.float64)
            Dc = (Dc.reshape(n * K, -1) @ W).reshape(n, K, -1) * dphi[l - 1][:, None, :]
            D[l - 1] = Dc
        yield D, xt
