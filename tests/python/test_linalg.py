"""fisherkit.linalg: batched diagonal-plus-rank-2 solves/inverses and the rank-1 / rank-B
damped Fisher solves, against dense NumPy oracles (oracles: exact solves and inverses, the O(n) unit formula, the rank-B solve)."""
from __future__ import annotations

import numpy as np
import pytest

from fisherkit import linalg, meanfield

EPS32 = float(np.finfo(np.float32).eps)


# ------------------------------------------------------------------ dense references
def dense_blocks(d, U, S, damping=0.0):
    """The explicit matrices diag(d + damping) + U S U^T, by a per-block loop."""
    d = np.asarray(d, np.float64)
    U = np.asarray(U, np.float64)
    S = np.asarray(S, np.float64)
    batch, n = d.shape[:-1], d.shape[-1]
    flat_d, flat_U, flat_S = d.reshape(-1, n), U.reshape(-1, n, 2), S.reshape(-1, 2, 2)
    out = np.empty((flat_d.shape[0], n, n))
    for b in range(flat_d.shape[0]):
        out[b] = np.diag(flat_d[b] + damping) + flat_U[b] @ flat_S[b] @ flat_U[b].T
    return out.reshape(batch + (n, n))


def dense_solve(d, U, S, rhs, damping=0.0):
    A = dense_blocks(d, U, S, damping)
    r = np.asarray(rhs, np.float64)
    if r.shape == A.shape[:-1]:
        return np.linalg.solve(A, r[..., None])[..., 0]
    return np.linalg.solve(A, r)


def random_system(rng, batch, n, kind="psd"):
    d = rng.uniform(0.5, 2.0, batch + (n,))
    U = rng.normal(size=batch + (n, 2))
    if kind == "psd":
        L = rng.normal(size=batch + (2, 2))
        S = L @ np.swapaxes(L, -1, -2)
    elif kind == "unit":  # docs/maths/natgrad.rst#natgrad-meanfield-solver core [[A2 - A0, A1], [A1, 0]]: always singular-ish
        S = np.zeros(batch + (2, 2))
        S[..., 0, 0] = rng.uniform(-0.3, 1.0, batch)
        S[..., 0, 1] = S[..., 1, 0] = rng.uniform(-0.5, 0.5, batch)
        U = U / np.linalg.norm(U, axis=-2, keepdims=True)  # unit-norm directions
    elif kind == "rank1":
        v = rng.normal(size=batch + (2, 1))
        S = v @ np.swapaxes(v, -1, -2)
    elif kind == "zero":
        S = np.zeros(batch + (2, 2))
    elif kind == "nonsym":
        S = rng.normal(size=batch + (2, 2)) * 0.2
    else:
        raise AssertionError(kind)
    return d, U, S


def rel_err(x, ref):
    return float(np.max(np.abs(x - ref)) / max(np.max(np.abs(ref)), 1e-300))


# ------------------------------------------------------------------ dpr2_solve, float64
@pytest.mark.parametrize("n", [1, 2, 3, 7, 31, 101, 257])
@pytest.mark.parametrize("kind", ["psd", "unit", "rank1", "zero", "nonsym"])
@pytest.mark.parametrize("damping", [0.0, 0.37])
def test_dpr2_solve_matches_dense(rng, n, kind, damping):
    d, U, S = random_system(rng, (13,), n, kind)
    r = rng.normal(size=(13, n))
    x = linalg.dpr2_solve(d, U, S, r, damping=damping)
    assert x.dtype == np.float64 and x.shape == (13, n)
    assert rel_err(x, dense_solve(d, U, S, r, damping)) <= 1e-12


def test_dpr2_solve_singular_core_exact_cases(rng):
    # A1 = 0 and A2 = A0: the core C is exactly zero (docs/maths/natgrad.rst#natgrad-meanfield-solver) -> x = r / d.
    n = 11
    d = np.full((2, n), 0.7)
    U = rng.normal(size=(2, n, 2))
    S = np.zeros((2, 2, 2))
    S[1] = [[0.0, 0.4], [0.4, 0.0]]  # indefinite and singular? no: det = -0.16, but C-like
    r = rng.normal(size=(2, n))
    x = linalg.dpr2_solve(d, U, S, r)
    np.testing.assert_array_equal(x[0], r[0] / 0.7)
    assert rel_err(x[1], dense_solve(d[1], U[1], S[1], r[1])) <= 1e-12


@pytest.mark.parametrize("k", [1, 2, 8, 11])
def test_dpr2_solve_multiple_rhs(rng, k):
    d, U, S = random_system(rng, (9,), 23, "psd")
    r = rng.normal(size=(9, 23, k))
    x = linalg.dpr2_solve(d, U, S, r, damping=0.1)
    assert x.shape == (9, 23, k)
    assert rel_err(x, dense_solve(d, U, S, r, 0.1)) <= 1e-12


def test_dpr2_solve_ten_thousand_blocks(rng):
    d, U, S = random_system(rng, (10_000,), 5, "unit")
    r = rng.normal(size=(10_000, 5))
    x = linalg.dpr2_solve(d, U, S, r, damping=1e-3)
    assert rel_err(x, dense_solve(d, U, S, r, 1e-3)) <= 1e-12


def test_dpr2_solve_batch_shapes(rng):
    d, U, S = random_system(rng, (3, 4), 6, "psd")
    r = rng.normal(size=(3, 4, 6))
    x = linalg.dpr2_solve(d, U, S, r)
    assert x.shape == (3, 4, 6)
    assert rel_err(x, dense_solve(d, U, S, r)) <= 1e-12
    # no batch axis at all
    x1 = linalg.dpr2_solve(d[1, 2], U[1, 2], S[1, 2], r[1, 2])
    assert x1.shape == (6,)
    np.testing.assert_allclose(x1, x[1, 2], rtol=0, atol=1e-14)


def test_dpr2_solve_non_contiguous(rng):
    d, U, S = random_system(rng, (20,), 9, "psd")
    r = rng.normal(size=(20, 9))
    # strided views: every other block, Fortran order, a transposed layout of U
    dF = np.asfortranarray(d)[::2]
    Ut = np.ascontiguousarray(np.transpose(U, (2, 0, 1))).transpose(1, 2, 0)[::2]
    Sv = S[::2]
    rv = np.asfortranarray(r)[::2]
    assert not Ut.flags.c_contiguous and not rv.flags.c_contiguous
    x = linalg.dpr2_solve(dF, Ut, Sv, rv, damping=0.2)
    assert rel_err(x, dense_solve(d[::2], U[::2], S[::2], r[::2], 0.2)) <= 1e-12


def test_dpr2_solve_amari_unit_natural_gradient(rng):
    """The O(n) unit formula (alpha, y1, y2) equals dpr2_solve."""
    n = 300
    w = rng.normal(size=n) / np.sqrt(n)
    bias = 0.3
    r = np.linalg.norm(w)
    e = w / r
    A0, A1, A2 = (float(a) for a in meanfield.unit_moments("tanh", r, bias))
    D = A0 * A2 - A1**2
    g = rng.normal(size=n + 1)
    alpha = e @ g[:n]
    y1 = (A0 * alpha - A1 * g[n]) / D
    y2 = (A2 * g[n] - A1 * alpha) / D
    ref = np.concatenate([(g[:n] - alpha * e) / A0 + y1 * e, [y2]])
    U = np.zeros((n + 1, 2))
    U[:n, 0] = e
    U[n, 1] = 1.0
    S = np.array([[A2 - A0, A1], [A1, 0.0]])
    x = linalg.dpr2_solve(np.full(n + 1, A0), U, S, g)
    assert rel_err(x, ref) <= 1e-12
    assert x @ g > 0  # A7: an ascent direction


# ------------------------------------------------------------------ float32 and dtypes
@pytest.mark.parametrize("n", [1, 17, 400])
def test_dpr2_solve_float32(rng, n):
    """float32 inputs: the reductions and the 2 x 2 solve run in float64, so the only
    float32 error is the final rounding of each x_j (<= eps32/2 relative) plus the float64
    solve's own error (cond * 1e-16, tiny here). Compare with the float64 solve of the same
    float32-rounded inputs: |x - ref| <= eps32 |ref| + 1e-12 max|ref|."""
    d, U, S = random_system(rng, (31,), n, "psd")
    r = rng.normal(size=(31, n))
    d32, U32, S32, r32 = (a.astype(np.float32) for a in (d, U, S, r))
    x = linalg.dpr2_solve(d32, U32, S32, r32, damping=0.25)
    assert x.dtype == np.float32
    ref = dense_solve(d32, U32, S32, r32, np.float32(0.25))
    err = np.abs(x.astype(np.float64) - ref)
    assert np.all(err <= EPS32 * np.abs(ref) + 1e-12 * np.max(np.abs(ref)))


def test_dpr2_dtype_promotion(rng):
    d, U, S = random_system(rng, (4,), 5, "psd")
    r = rng.normal(size=(4, 5))
    x = linalg.dpr2_solve(d.astype(np.float32), U, S.astype(np.float32), r.astype(np.float32))
    assert x.dtype == np.float64  # U is float64: everything goes to the wider type
    assert rel_err(x, dense_solve(d.astype(np.float32), U, S.astype(np.float32), r.astype(np.float32))) <= 1e-12
    xi = linalg.dpr2_solve(np.ones((4, 5), dtype=np.int64), U, S, r)
    assert xi.dtype == np.float64


# ------------------------------------------------------------------ dpr2_inverse
@pytest.mark.parametrize("n", [1, 2, 17, 1000])
def test_dpr2_inverse_times_block_is_identity(rng, n):
    """The explicit inverse of the isotropic unit FIM: ||G G^-1 - I||_max <= 1e-12."""
    blocks = 1 if n == 1000 else 6
    w = rng.normal(size=(blocks, n)) / np.sqrt(n)
    bias = rng.normal(size=blocks) * 0.3
    r = np.linalg.norm(w, axis=1)
    A0, A1, A2 = meanfield.unit_moments("tanh", r, bias)
    d = np.repeat(A0[:, None], n + 1, axis=1)
    U = np.zeros((blocks, n + 1, 2))
    U[:, :n, 0] = w / r[:, None]
    U[:, n, 1] = 1.0
    S = np.stack([np.stack([A2 - A0, A1], -1), np.stack([A1, np.zeros(blocks)], -1)], -2)
    Ginv = linalg.dpr2_inverse(d, U, S)
    G = dense_blocks(d, U, S)
    assert Ginv.shape == (blocks, n + 1, n + 1)
    assert np.max(np.abs(G @ Ginv - np.eye(n + 1))) <= 1e-12


@pytest.mark.parametrize("kind", ["psd", "rank1", "zero", "nonsym"])
def test_dpr2_inverse_matches_numpy(rng, kind):
    d, U, S = random_system(rng, (2, 3), 8, kind)
    inv = linalg.dpr2_inverse(d, U, S, damping=0.05)
    assert inv.shape == (2, 3, 8, 8)
    assert rel_err(inv, np.linalg.inv(dense_blocks(d, U, S, 0.05))) <= 1e-12
    inv32 = linalg.dpr2_inverse(d.astype(np.float32), U.astype(np.float32), S.astype(np.float32), damping=0.05)
    assert inv32.dtype == np.float32
    ref32 = np.linalg.inv(dense_blocks(d.astype(np.float32), U.astype(np.float32), S.astype(np.float32), np.float32(0.05)))
    assert rel_err(inv32, ref32) <= 4 * EPS32


# ------------------------------------------------------------------ dpr2 errors
def test_dpr2_errors(rng):
    d, U, S = random_system(rng, (5,), 4, "psd")
    r = rng.normal(size=(5, 4))
    bad = d.copy()
    bad[3, 2] = -0.1
    with pytest.raises(ValueError, match=r"'d' must be positive.*block 3, entry 2"):
        linalg.dpr2_solve(bad, U, S, r)
    # damping rescues a non-positive diagonal entry
    linalg.dpr2_solve(bad, U, S, r, damping=0.5)
    for name, arr in (("d", d), ("U", U), ("S", S), ("rhs", r)):
        a = arr.copy()
        a.reshape(5, -1)[2, 1] = np.nan
        args = {"d": d, "U": U, "S": S, "rhs": r}
        args[name] = a
        with pytest.raises(ValueError, match=rf"'{name}' contains NaN or Inf \(block 2"):
            linalg.dpr2_solve(args["d"], args["U"], args["S"], args["rhs"])
    dinf = d.copy()
    dinf[0, 0] = np.inf
    with pytest.raises(ValueError, match="'d' contains NaN or Inf"):
        linalg.dpr2_solve(dinf, U, S, r)
    # a singular block: I - e1 e1^T in block 3
    Us, Ss, ds = U.copy(), S.copy(), d.copy()
    ds[3] = 1.0
    Us[3] = 0.0
    Us[3, 0, 0] = 1.0
    Ss[3] = [[-1.0, 0.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="block 3 is singular"):
        linalg.dpr2_solve(ds, Us, Ss, r)
    with pytest.raises(ValueError, match="block 3 is singular"):
        linalg.dpr2_inverse(ds, Us, Ss)
    with pytest.raises(ValueError, match="'U' must have shape"):
        linalg.dpr2_solve(d, U[:, :3], S, r)
    with pytest.raises(ValueError, match="'S' must have shape"):
        linalg.dpr2_solve(d, U, S[:4], r)
    with pytest.raises(ValueError, match="'rhs' must have shape"):
        linalg.dpr2_solve(d, U, S, r[:, :3])
    with pytest.raises(ValueError, match="'damping'"):
        linalg.dpr2_solve(d, U, S, r, damping=-1.0)
    with pytest.raises(ValueError, match="'damping'"):
        linalg.dpr2_solve(d, U, S, r, damping=np.nan)
    with pytest.raises(TypeError, match="'rhs' must be a real numeric"):
        linalg.dpr2_solve(d, U, S, r.astype(np.complex128))
    with pytest.raises(ValueError, match="'d' must have a block size"):
        linalg.dpr2_solve(np.ones((3, 0)), np.ones((3, 0, 2)), np.ones((3, 2, 2)), np.ones((3, 0)))
    with pytest.raises(ValueError, match="'rhs' is required"):
        linalg.dpr2_solve(d, U, S, None)


# ------------------------------------------------------------------ rank-1
def dense_rank1(psi, g, lam):
    return np.linalg.solve(lam * np.eye(psi.size) + np.outer(psi, psi), g)


@pytest.mark.parametrize("p", [1, 2, 13, 997])
@pytest.mark.parametrize("lam", [0.05, 1.0, 30.0])
def test_rank1_matches_dense(rng, p, lam):
    psi = rng.normal(size=p)
    psi *= min(1.0, np.sqrt(100 * lam) / np.linalg.norm(psi))  # kappa = 1 + |psi|^2/lam <= 101
    g = rng.normal(size=p)
    x = linalg.rank1_solve(psi, g, lam)
    assert x.shape == (p,)
    assert rel_err(x, dense_rank1(psi, g, lam)) <= 1e-12


def test_rank1_properties(rng):
    p, lam = 50, 0.3
    psi = rng.normal(size=p)
    A = 1.7
    # same-sample identity: g = A psi -> d = A psi / (lam + |psi|^2)
    d = linalg.rank1_solve(psi, A * psi, lam)
    np.testing.assert_allclose(d, A * psi / (lam + psi @ psi), rtol=1e-14, atol=1e-15)
    for _ in range(20):  # ascent: d . g > 0
        g = rng.normal(size=p)
        q = rng.normal(size=p) * rng.uniform(0.1, 10)
        assert linalg.rank1_solve(q, g, rng.uniform(1e-3, 10)) @ g > 0
    g = rng.normal(size=p)
    # large damping: lam * d -> g, with error |psi|^2 / lam
    big = 1e8
    assert np.max(np.abs(big * linalg.rank1_solve(psi, g, big) - g)) <= 10 * (psi @ psi) / big * np.max(np.abs(g))
    # sign invariance (exact: the two sign flips cancel)
    np.testing.assert_array_equal(linalg.rank1_solve(psi, g, lam), linalg.rank1_solve(-psi, g, lam))


def test_rank1_batched_and_long(rng):
    m, p = 7, 19
    psi, g = rng.normal(size=(m, p)), rng.normal(size=(m, p))
    x = linalg.rank1_solve(psi, g, 0.4)
    assert x.shape == (m, p)
    for i in range(m):
        assert rel_err(x[i], dense_rank1(psi[i], g[i], 0.4)) <= 1e-12
    shared = linalg.rank1_solve(psi[0], g, 0.4)  # one score for every gradient row
    for i in range(m):
        assert rel_err(shared[i], dense_rank1(psi[0], g[i], 0.4)) <= 1e-12
    xs = linalg.rank1_solve(psi[::2, ::-1], g[::2, ::-1], 0.4)  # non-contiguous
    np.testing.assert_allclose(xs, x[::2, ::-1], rtol=1e-14, atol=1e-15)
    # a long vector (the split dot-product path), against the closed form in float64
    p = 300_007
    psi, g = rng.normal(size=p), rng.normal(size=p)
    lam = 5.0
    ref = (g - psi * (np.dot(psi, g) / (lam + np.dot(psi, psi)))) / lam
    assert rel_err(linalg.rank1_solve(psi, g, lam), ref) <= 1e-12
    # several long rows: each row its own split dot products and update
    psi, g = rng.normal(size=(3, p)), rng.normal(size=(3, p))
    x = linalg.rank1_solve(psi, g, lam)
    for i in range(3):
        ref = (g[i] - psi[i] * (np.dot(psi[i], g[i]) / (lam + np.dot(psi[i], psi[i])))) / lam
        assert rel_err(x[i], ref) <= 1e-12, i


def test_rank1_float32(rng):
    """Dot products accumulate in float64; each output is one rounding of a float64 value
    that loses at most kappa eps64 to cancellation: compare with the float64 formula on the
    float32-rounded inputs within eps32 |ref| + kappa 1e-15 max|ref|."""
    p, lam = 4001, 2.0
    psi = (rng.normal(size=p) * 0.05).astype(np.float32)
    g = rng.normal(size=p).astype(np.float32)
    x = linalg.rank1_solve(psi, g, lam)
    assert x.dtype == np.float32
    p64, g64 = psi.astype(np.float64), g.astype(np.float64)
    ref = (g64 - p64 * (p64 @ g64) / (lam + p64 @ p64)) / lam
    kappa = 1 + p64 @ p64 / lam
    assert np.all(np.abs(x - ref) <= EPS32 * np.abs(ref) + kappa * 1e-15 * np.max(np.abs(ref)))
    assert linalg.rank1_solve(psi, g.astype(np.float64), lam).dtype == np.float64


def test_rank1_errors(rng):
    psi, g = rng.normal(size=5), rng.normal(size=5)
    for lam in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="'damping'"):
            linalg.rank1_solve(psi, g, lam)
    with pytest.raises(TypeError, match="'damping'"):
        linalg.rank1_solve(psi, g, "big")
    with pytest.raises(ValueError, match="same length"):
        linalg.rank1_solve(psi, g[:4], 1.0)
    with pytest.raises(ValueError, match="'psi' must have 1 or 3 rows"):
        linalg.rank1_solve(rng.normal(size=(2, 5)), rng.normal(size=(3, 5)), 1.0)
    with pytest.raises(ValueError, match="'g' must be 1-D"):
        linalg.rank1_solve(psi, np.ones((2, 2, 5)), 1.0)
    bad = psi.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"'psi' contains NaN or Inf \(first at \[0, 3\]\)"):
        linalg.rank1_solve(bad, g, 1.0)
    with pytest.raises(ValueError, match="'g' contains NaN or Inf"):
        linalg.rank1_solve(psi, bad, 1.0)


# ------------------------------------------------------------------ rank-B
@pytest.mark.parametrize("B,p", [(1, 7), (16, 300), (5, 3), (40, 41)])
def test_rankb_matches_dense(rng, B, p):
    """docs/maths/rank1.rst#rank1-rank-b: F_B = lam I + (1/B) sum_b psi_b psi_b^T; sample space == dense."""
    Psi = rng.normal(size=(B, p))
    g = rng.normal(size=p)
    lam = 0.5
    F = lam * np.eye(p) + Psi.T @ Psi / B
    x = linalg.rankb_solve(Psi, g, lam)
    assert x.shape == (p,)
    assert rel_err(x, np.linalg.solve(F, g)) <= 1e-12
    G = rng.normal(size=(3, p))
    X = linalg.rankb_solve(Psi, G, lam)
    assert rel_err(X, np.linalg.solve(F, G.T).T) <= 1e-12


def test_rankb_one_sample_is_rank1(rng):
    psi, g = rng.normal(size=33), rng.normal(size=33)
    np.testing.assert_allclose(linalg.rankb_solve(psi[None], g, 0.2), linalg.rank1_solve(psi, g, 0.2),
                               rtol=1e-13, atol=1e-14)


def test_rankb_float32_and_strided(rng):
    B, p = 8, 500
    Psi = rng.normal(size=(B, 2 * p))[:, ::2]
    g = rng.normal(size=p)
    lam = 1.0
    x = linalg.rankb_solve(Psi.astype(np.float32), g.astype(np.float32), lam)
    assert x.dtype == np.float32
    P64, g64 = Psi.astype(np.float32).astype(np.float64), g.astype(np.float32).astype(np.float64)
    ref = np.linalg.solve(lam * np.eye(p) + P64.T @ P64 / B, g64)
    # float32 Gram/gemm in BLAS: relative error ~ kappa * sqrt(p) * eps32, kappa = 1 + |Psi|^2/(B lam)
    kappa = 1 + np.linalg.norm(P64, 2) ** 2 / (B * lam)
    assert rel_err(x, ref) <= kappa * np.sqrt(p) * EPS32
    assert rel_err(linalg.rankb_solve(Psi, g, lam), np.linalg.solve(lam * np.eye(p) + Psi.T @ Psi / B, g)) <= 1e-12


def test_rankb_errors(rng):
    Psi, g = rng.normal(size=(3, 6)), rng.normal(size=6)
    with pytest.raises(ValueError, match="'damping'"):
        linalg.rankb_solve(Psi, g, 0.0)
    with pytest.raises(ValueError, match="'Psi' must be 2-D"):
        linalg.rankb_solve(Psi[0], g, 1.0)
    with pytest.raises(ValueError, match="'g' must have shape"):
        linalg.rankb_solve(Psi, g[:5], 1.0)
    bad = Psi.copy()
    bad[1, 4] = np.inf
    with pytest.raises(ValueError, match=r"'Psi' contains NaN or Inf \(first at \[1, 4\]\)"):
        linalg.rankb_solve(bad, g, 1.0)
    with pytest.raises(ValueError, match="Gram matrix Psi Psi\\^T overflowed"):
        linalg.rankb_solve(Psi * 1e200, g, 1.0)


def test_cupy_inputs_not_implemented():
    cupy = pytest.importorskip("cupy")
    if not cupy.cuda.is_available():
        pytest.skip("no CUDA device")
    a = cupy.ones((2, 3))
    with pytest.raises(NotImplementedError):
        linalg.dpr2_solve(a, cupy.ones((2, 3, 2)), cupy.zeros((2, 2, 2)), a)
    with pytest.raises(TypeError, match="different devices"):
        linalg.dpr2_solve(a, np.ones((2, 3, 2)), np.zeros((2, 2, 2)), np.ones((2, 3)))


def test_dpr2_solve_with_status_marks_and_fills_failed_blocks():
    """With a status array (the GPU's protocol, open to C++ and binding callers) a failed block
    reports its code there and comes back all NaN, every right-hand side; the others solve."""
    from fisherkit._loader import _core

    B, n, k = 3, 3, 2
    d = np.ones((B, n))
    d[1, 0] = -5.0  # block 1: not positive
    U = np.ones((B, 2 * n))
    S = np.tile(np.eye(2).ravel(), (B, 1))
    rhs = np.random.default_rng(0).standard_normal((B, n * k))
    out = np.zeros((B, n * k))
    status = np.full(B, -1, dtype=np.int32)
    _core.dpr2_solve(d, U, S, rhs, k, 0.0, out, status)
    assert status[0] == 0 and status[2] == 0 and status[1] != 0
    assert np.isnan(out[1]).all()
    for b in (0, 2):
        Ub = U[b].reshape(n, 2)
        A = np.diag(d[b]) + Ub @ S[b].reshape(2, 2) @ Ub.T
        np.testing.assert_allclose(out[b].reshape(n, k), np.linalg.solve(A, rhs[b].reshape(n, k)), rtol=1e-12)
