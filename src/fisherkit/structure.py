"""How unit-wise block-diagonal is an MLP's Fisher matrix? (docs/maths/natgrad.rst#natgrad-unit-blocks)

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
with many outputs the largest one (B) decays like ``n^-1/2`` (docs/maths/natgrad.rst#natgrad-unit-blocks), with a
scalar output it does not decay.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ._loader import _core
from ._validate import as_int
from .fisher import fisher
from .model import MLP, check_model

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


def _labels(model: MLP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per flat parameter: (layer, unit, input index; bias = n_in)."""
    P = model.n_params
    lay, unit, inp = np.empty(P, np.int64), np.empty(P, np.int64), np.empty(P, np.int64)
    for l, idx in enumerate(model.layout.unit_index()):
        lay[idx] = l
        unit[idx] = np.arange(idx.shape[0])[:, None]
        inp[idx] = np.arange(idx.shape[1])[None, :]
    return lay, unit, inp


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
    the Monte Carlo bias of the mean (docs/maths/natgrad.rst#natgrad-unit-blocks), which
    needs at least 2 inputs (ValueError otherwise).
    """
    check_model(model, host_only=True, what="block_structure")
    Xc, _ = model._inputs(X)
    la, ua, ja = _labels(model)
    if pairs is None:
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
    k = as_int(pairs, "pairs", minimum=1)
    if Xc.shape[0] < 2:
        raise ValueError("sampled pairs estimate squared entries without the bias of the mean's square, which "
                         f"needs at least 2 inputs; argument 'X' has {Xc.shape[0]}")
    rng = np.random.default_rng(as_int(seed, "seed", minimum=0))
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
    rms = _pair_rms(model, Xc, chosen, as_int(chunk, "chunk", minimum=1))
    counts = {c: int(a.size) for c, (a, _) in chosen.items()}
    nan = {c: float("nan") for c in CLASSES}
    return BlockStructure(rms, dict(nan), dict(nan), counts, float("nan"), True)


def _pair_rms(model: MLP, Xc: np.ndarray, chosen: dict[str, tuple[np.ndarray, np.ndarray]],
              chunk: int) -> dict[str, float]:
    """Per class, the RMS over its pairs (a, b) of F_ab / sqrt(F_aa F_bb), with F_ab^2
    estimated without the bias of the mean's square: (s1^2 - s2) / (N (N - 1)), s1 and s2
    the sums over the N inputs of the per-input entries and of their squares."""
    N = Xc.shape[0]
    la, ua, ja = _labels(model)
    classes = list(chosen)
    s1 = {c: np.zeros(len(chosen[c][0])) for c in classes}
    s2 = {c: np.zeros(len(chosen[c][0])) for c in classes}
    diag = np.asarray(fisher(model, Xc, estimator="exact", shape="diag").values, dtype=np.float64)
    for D, xt in _factors(model, Xc, chunk):
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

        for c in classes:
            a, b = chosen[c]
            t = np.einsum("psc,psc->ps", column(a), column(b))  # (pairs, n): per-sample products
            s1[c] += t.sum(axis=1)
            s2[c] += (t * t).sum(axis=1)
    rms = {}
    for c in classes:
        a, b = chosen[c]
        sq = (s1[c] ** 2 - s2[c]) / (N * (N - 1))  # unbiased estimate of F_ab^2
        den = diag[a] * diag[b]
        good = den > 0
        rms[c] = float(np.sqrt(max(np.mean(sq[good] / den[good]), 0.0))) if good.any() else float("nan")
    return rms


def _factors(model: MLP, X: np.ndarray, chunk: int) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Per chunk of inputs: per layer D (n, C, m) with sum_c D[s, c, i] D[s, c, i'] the exact
    metric between units i and i' at input s (the square root of Cov(t|h) backpropagated to
    the pre-activations, from the compiled statistics pass) and the augmented inputs
    xt (n, k_l), in float64."""
    lay, C = model.layout, model.output_dim
    for lo in range(0, X.shape[0], max(1, chunk)):
        Xs = np.ascontiguousarray(X[lo:lo + chunk])
        n = Xs.shape[0]
        requests = [{"rows": np.empty((n, C * lay.dims(l)[0]), model.dtype),
                     "inputs": np.empty((n, lay.dims(l)[1]), model.dtype)} for l in range(lay.n_layers)]
        _core.unit_statistics(*model._core_args(), model.head, model.sigma, Xs, None, "exact", 1, 0, 0, 0, requests,
                              None)
        D = [r["rows"].astype(np.float64).reshape(n, C, -1) for r in requests]
        xt = []
        for l, r in enumerate(requests):
            x = r["inputs"].astype(np.float64)
            xt.append(np.concatenate([x, np.ones((n, 1))], axis=1) if lay.bias[l] else x)
        yield D, xt
