"""fisherkit.structure.block_structure against explicit loops over the full Fisher matrix."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit as fk
from fisherkit.structure import CLASSES, block_structure


def _owner(sizes):
    """(layer, unit, input) per flat parameter, by explicit loops (bias = input n_in)."""
    out = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        for u in range(n_out):
            for j in range(n_in):
                out.append((l, u, j))
        for u in range(n_out):
            out.append((l, u, n_in))
    return out


def _classes(owner_a, owner_b):
    """The classes of an off-diagonal pair of parameters, from their (layer, unit, input)."""
    (la, ua, ja), (lb, ub, jb) = owner_a, owner_b
    if la == lb and ua == ub:
        return ["same_unit"]
    if la == lb:
        return ["same_layer", "same_layer_same_input" if ja == jb else "same_layer_other_input"]
    return ["across_layers"] + (["adjacent_layers"] if abs(la - lb) == 1 else [])


def test_full_mode_matches_loops(rng):
    model = fk.MLP.init([3, 5, 1, 2], activation="tanh", head="gaussian", seed=41, bias_std=0.2)
    X = rng.standard_normal((200, 3))
    res = block_structure(model, X)
    F = np.asarray(fk.fisher(model, X, shape="full").to_dense())
    own = _owner(model.sizes)
    P = len(own)
    vals = {c: [] for c in CLASSES}
    mass = {c: 0.0 for c in CLASSES}
    inb = 0.0
    for a in range(P):
        for b in range(P):
            if own[a][:2] == own[b][:2]:
                inb += F[a, b] ** 2
            if a == b:
                continue
            cn = F[a, b] / np.sqrt(F[a, a] * F[b, b])
            for c in _classes(own[a], own[b]):
                vals[c].append(cn)
                mass[c] += F[a, b] ** 2
    assert res.in_block_mass == pytest.approx(inb, rel=1e-12)
    for c in CLASSES:
        assert res.counts[c] == len(vals[c])
        assert res.rms[c] == pytest.approx(np.sqrt(np.mean(np.square(vals[c]))), rel=1e-10)
        assert res.mass[c] == pytest.approx(mass[c], rel=1e-10)
        assert res.ratio[c] == pytest.approx(mass[c] / inb, rel=1e-10)
    assert "same_unit" in str(res)


def test_sampled_mode_agrees_with_full(rng):
    # 400 sampled pairs of each class: the RMS of the sample is within sampling error of
    # the RMS over all pairs (the full Fisher is estimated from the same inputs)
    model = fk.MLP.init([5, 6, 6, 4], activation="tanh", head="gaussian", seed=42, weight_std=1.2, bias_std=0.1)
    X = rng.standard_normal((600, 5))
    full = block_structure(model, X)
    samp = block_structure(model, X, pairs=400, seed=3)
    assert samp.sampled and not full.sampled
    for c in CLASSES:
        assert samp.rms[c] == pytest.approx(full.rms[c], rel=0.25), c


def test_sampled_estimate_of_every_pair_matches_per_input_fishers(rng):
    """The sampled mode's estimator, given every pair of each class: F_ab^2 estimated by
    (s1^2 - s2) / (N (N - 1)) from the per-input Fishers F_n (each its own fisher call), over
    the diagonal of the mean, against explicit loops. N = 4 makes the bias correction large."""
    from fisherkit.structure import _pair_rms

    model = fk.MLP.init([3, 4, 2, 2], activation="tanh", head="categorical", seed=5, bias_std=0.5)
    X = rng.standard_normal((4, 3))
    own = _owner(model.sizes)
    P, N = len(own), len(X)
    Fn = [np.asarray(fk.fisher(model, X[n:n + 1], shape="full").to_dense()) for n in range(N)]
    d = np.diag(sum(Fn) / N)
    pairs = {c: ([], []) for c in CLASSES}
    ref = {c: [] for c in CLASSES}
    for a in range(P):
        for b in range(P):
            if a == b:
                continue
            s1 = sum(F[a, b] for F in Fn)
            s2 = sum(F[a, b] ** 2 for F in Fn)
            for c in _classes(own[a], own[b]):
                pairs[c][0].append(a)
                pairs[c][1].append(b)
                ref[c].append((s1 * s1 - s2) / (N * (N - 1)) / (d[a] * d[b]))
    chosen = {c: (np.array(a), np.array(b)) for c, (a, b) in pairs.items()}
    got = _pair_rms(model, X, chosen, chunk=3)  # two chunks
    for c in CLASSES:
        assert got[c] == pytest.approx(np.sqrt(max(np.mean(ref[c]), 0.0)), rel=1e-9), c
    with pytest.raises(ValueError, match="at least 2 inputs"):
        block_structure(model, X[:1], pairs=5)


def test_bad_arguments(rng):
    model = fk.MLP.init([2, 3, 2], seed=1)
    X = rng.standard_normal((5, 2))
    with pytest.raises(ValueError, match="pairs"):
        block_structure(model, X, pairs=0)
    with pytest.raises(ValueError, match="estimator"):
        block_structure(model, X, pairs=10, estimator="empirical")
    with pytest.raises(TypeError, match="model"):
        block_structure(None, X)


@pytest.mark.slow
def test_off_block_decay_many_outputs():
    """docs/maths/natgrad.rst#natgrad-unit-blocks / A6: with K = n outputs the class-B entries decay like n^-1/2."""
    rng = np.random.default_rng(5)
    widths = [32, 64, 128, 256]
    rms = []
    for n in widths:
        model = fk.MLP.init([n, n, n, n, n], activation="tanh", head="gaussian", seed=n,
                            weight_std=np.sqrt(1.5), bias_std=0.1)
        X = rng.standard_normal((1000, n))
        rms.append(block_structure(model, X, pairs=300, seed=1).rms["same_layer_same_input"])
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert -0.65 <= slope <= -0.35
    scaled = np.array(rms) * np.sqrt(widths)
    assert scaled.max() / scaled.min() < 1.6
