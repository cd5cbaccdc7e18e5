"""fisherkit.fisher: every estimator x shape against brute-force float64 references
(finite-difference Hessians, analytic per-sample Jacobians, exact enumeration)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import fisherkit
import fisherkit.heads as heads
from reference import (analytic_jacobian, fd_hessians, forward_one, head_cov, head_support, model_layers, nll_grad,
                       ref_exact, ref_parts, ref_sampled, restrict)

SHAPES = ["full", "layer", "unit", "diag"]


def labels_from_draws(head, draws):
    return draws  # (N, S) indices or (N, S, C)


NETS = [
    ([3, 4, 3], "tanh", "categorical"),
    ([2, 3, 3, 2], "sigmoid", "gaussian"),
    ([2, 3, 2, 2], "softplus", "bernoulli"),
    ([3, 2, 2], "erf", "poisson"),
    ([2, 5, 1], "tanh", "gaussian"),      # C = 1
    ([1, 3, 2, 3], "relu", "categorical"),
    ([2, 3, 3, 3, 2], "tanh", "categorical"),  # 3 hidden layers: the general T recursion
]


@pytest.fixture(scope="module", params=NETS, ids=lambda p: f"{p[1]}-{p[2]}-{len(p[0])-1}L")
def case(request):
    sizes, act, head = request.param
    model = fisherkit.MLP.init(sizes, act, head, seed=4, bias_std=0.4, sigma=0.8,
                               weight_std=1.3 if head != "poisson" else 0.6)
    X = np.random.default_rng(9).standard_normal((4, sizes[0])) + 0.05
    return model, X, ref_parts(model, X)


@pytest.mark.parametrize("shape", SHAPES)
def test_exact(case, shape):
    model, X, parts = case
    F = fisherkit.fisher(model, X, estimator="exact", shape=shape)
    ref = restrict(ref_exact(parts), model.sizes, shape)
    np.testing.assert_allclose(F.to_dense(), ref, rtol=1e-9, atol=1e-11 * np.abs(ref).max())
    assert F.n_samples == len(X) and F.estimator == "exact"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("estimator", ["score", "hessian"])
def test_sampled_estimators_match_reference_on_the_same_draws(case, shape, estimator):
    model, X, parts = case
    S, seed = 3, 77
    F = fisherkit.fisher(model, X, estimator=estimator, shape=shape, samples=S, seed=seed)
    draws = heads.sample(model.head, model.forward(X), samples=S, seed=seed, sigma=model.sigma)
    ref = restrict(ref_sampled(model, parts, draws, estimator), model.sizes, shape)
    # the Hessian reference uses finite-difference Hessians (error ~1e-9)
    tol = 1e-9 if estimator == "score" else 1e-6
    np.testing.assert_allclose(F.to_dense(), ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("head", ["gaussian", "categorical", "bernoulli", "poisson"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_hidden_layer_unit_weights_from_the_head_covariance(head, dtype):
    """With one hidden layer, the exact and Hessian "diag" and "unit" shapes take that layer's
    unit weights from the head's covariance (diagonal, or diagonal minus rank 1 for the
    categorical head) instead of its C backward rows per input. Against the references for
    every head with C = 3, both dtypes, chunks of 4 and 1 inputs and one chunk of all; and,
    without biases, against the blocks of the "full" shape, which takes the backward rows."""
    X = np.random.default_rng(11).standard_normal((11, 5)) + 0.1
    kw = dict(seed=3, bias_std=0.4, sigma=0.8, dtype=dtype, weight_std=1.3 if head != "poisson" else 0.6)
    model = fisherkit.MLP.init([5, 7, 3], "tanh", head, **kw)
    parts = ref_parts(model, X)
    draws = heads.sample(model.head, model.forward(X.astype(dtype)).astype(float), samples=2, seed=5,
                         sigma=model.sigma)
    bare = fisherkit.MLP.init([5, 7, 3], "tanh", head, bias=False, **kw)
    cases = [(model, "exact", ref_exact(parts)), (model, "hessian", ref_sampled(model, parts, draws, "hessian"))]
    cases += [(bare, est, fisherkit.fisher(bare, X.astype(dtype), estimator=est, shape="full", samples=2,
                                           seed=5).to_dense().astype(float)) for est in ("exact", "hessian")]
    for m, estimator, dense in cases:
        # float64: 1e-9, and the finite-difference Hessians' 1e-6; float32: 1e-4
        tol = 1e-4 if dtype == np.float32 else (1e-6 if estimator == "hessian" and m is model else 1e-9)
        for shape in ("diag", "unit"):
            mask = np.eye(len(dense), dtype=bool)
            if shape == "unit":  # unit u of a layer: weight row u, then its bias where there is one
                for (ws, bs), n_out in zip(m.layout.param_slices(), m.sizes[1:]):
                    n_in = (ws.stop - ws.start) // n_out
                    for u in range(n_out):
                        ix = list(range(ws.start + u * n_in, ws.start + (u + 1) * n_in)) + ([bs.start + u] if bs else [])
                        mask[np.ix_(ix, ix)] = True
            ref = np.where(mask, dense, 0.0)
            for chunk in (0, 4, 1):
                F = fisherkit.fisher(m, X.astype(dtype), estimator=estimator, shape=shape, samples=2, seed=5,
                                     chunk=chunk)
                np.testing.assert_allclose(F.to_dense(), ref, rtol=tol, atol=tol * np.abs(ref).max(),
                                           err_msg=f"{estimator} {shape} chunk={chunk} biases={m is model}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unit_weights_are_summed_across_register_blocks_of_every_width(dtype):
    """The unit weights of "diag" and "unit" are sums over the C backward rows (two hidden
    layers), the C classes of the head's covariance (one hidden layer) or the draws (score
    estimator), computed in register blocks of 256 bytes of units (32 in float64, 64 in
    float32). Layers of one unit fewer, exactly, one more and two blocks and a remainder
    against the explicit reference (and the score estimator on the same draws)."""
    block = 256 // np.dtype(dtype).itemsize
    X = np.random.default_rng(2).standard_normal((5, 3))
    tol = 1e-9 if dtype == np.float64 else 1e-4
    for width in (block - 1, block, block + 1, 2 * block + 5):
        for sizes in ([3, width, 4], [3, width, 4, 3]):
            model = fisherkit.MLP.init(sizes, "tanh", "categorical", seed=width, bias_std=0.3, dtype=dtype)
            parts = ref_parts(model, X)
            draws = heads.sample(model.head, model.forward(X.astype(dtype)).astype(float), samples=3, seed=1)
            for estimator, dense in (("exact", ref_exact(parts)),
                                     ("score", ref_sampled(model, parts, draws, "score"))):
                for shape in ("diag", "unit"):
                    ref = restrict(dense, model.sizes, shape)
                    F = fisherkit.fisher(model, X.astype(dtype), estimator=estimator, shape=shape, samples=3, seed=1)
                    np.testing.assert_allclose(F.to_dense(), ref, rtol=tol, atol=tol * np.abs(ref).max(),
                                               err_msg=f"{estimator} {shape} sizes={sizes}")


@pytest.mark.parametrize("dtype, gap", [(np.float64, 30.0), (np.float32, 20.0)])
def test_a_confident_class_keeps_the_relative_accuracy_of_its_output_weights(dtype, gap):
    """A categorical head with p_0 -> 1 (1 - p_0 ~ 2e-13 in float64, 4e-9 in float32): the
    output layer's weights I_cc = p_c (1 - p_c) take 1 - p_0 as the sum of the other
    classes, where p_0 - p_0^2 would keep only the rounding of p_0. Every output-layer entry
    of "diag" (entry by entry) and "unit" (block by block), exact and Hessian estimators
    (T_L = 0: the same output blocks), one hidden layer, against an explicit float64 loop
    over the inputs with 1 - p_0 summed from the other classes, and against the same entries
    of "layer" (the Gram of the backward rows); the heads' covariance and its square root
    against the closed form."""
    model = fisherkit.MLP.init([4, 6, 3], "tanh", "categorical", seed=2, dtype=dtype)
    layers = [(W, b) for W, b in model.layers]
    model = fisherkit.MLP([layers[0], (layers[1][0], np.array([gap, 0.0, 0.0], dtype))], "tanh", "categorical")
    X = np.random.default_rng(4).standard_normal((9, 4)).astype(dtype)
    ref = np.zeros((3, 7, 7))  # per output unit: (weight row, bias) x (weight row, bias)
    for x in X.astype(np.float64):
        h, abars, _ = forward_one(model_layers(model), model.activations, x)
        p = np.exp(h - h.max()) / np.exp(h - h.max()).sum()
        for c in range(3):
            ref[c] += p[c] * np.delete(p, c).sum() * np.outer(abars[1], abars[1]) / len(X)
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    (ws, bs) = model.layout.param_slices()[1]
    out = np.r_[ws.start:ws.stop, bs.start:bs.stop]
    ix = [list(range(u * 6, (u + 1) * 6)) + [18 + u] for u in range(3)]  # unit u: weight row u, then its bias
    ref_diag = np.zeros(21)
    for u in range(3):
        ref_diag[ix[u]] = np.diag(ref[u])
    for estimator in ("exact", "hessian"):
        kw = dict(estimator=estimator, samples=2, seed=3)
        Lb = fisherkit.fisher(model, X, shape="layer", **kw).blocks[1].astype(np.float64)
        d = fisherkit.fisher(model, X, shape="diag", **kw).values[out].astype(np.float64)
        U = fisherkit.fisher(model, X, shape="unit", **kw).blocks[1]
        for got in (d, np.diag(Lb)):
            np.testing.assert_allclose(got, ref_diag, rtol=rtol, atol=0, err_msg=estimator)
        for u, block in enumerate(U):
            for got in (block, Lb[np.ix_(ix[u], ix[u])]):
                np.testing.assert_allclose(got, ref[u], rtol=rtol, atol=rtol * np.abs(ref[u]).max(), err_msg=estimator)
    H = np.array([[gap, 0.0, 0.0]], dtype)
    rest = 2 * np.exp(-np.float64(gap))  # 1 - p_0 = rest / (1 + rest)
    p0, q0 = 1 / (1 + rest), rest / (1 + rest)
    I = heads.covariance("categorical", H)
    np.testing.assert_allclose(float(I[0, 0, 0]), p0 * q0, rtol=rtol)
    B = heads.sqrt_covariance("categorical", H)[0].astype(np.float64)
    np.testing.assert_allclose((B @ B.T)[0, 0], p0 * q0, rtol=rtol)


def test_reference_estimators_are_unbiased_by_enumeration(case):
    """The oracle itself: support-weighted per-draw I1 and I2 equal J^T I J (1e-12). For the
    Poisson head the support is truncated where the tail mass is below 1e-15."""
    model, X, parts = case
    for (J, I, H, h), x in zip(parts, X):
        ys, w, _ = head_support(model.head, h, model.sigma)
        for est in ("score", "hessian"):
            mats = [ref_sampled(model, [(J, I, H, h)], [[y]], est) for y in ys]
            mean = np.einsum("k,kij->ij", w, np.array(mats))
            np.testing.assert_allclose(mean, J.T @ I @ J, rtol=1e-12, atol=1e-12 * np.abs(J.T @ I @ J).max())


@pytest.mark.parametrize("shape", SHAPES)
def test_empirical_enumeration_equals_exact(shape):
    """Probability-weighted empirical Fishers over every label = the exact Fisher (1e-12)."""
    for head in ("categorical", "bernoulli"):
        model = fisherkit.MLP.init([2, 3, 2], "tanh", head, seed=2, bias_std=0.3)
        X = np.random.default_rng(1).standard_normal((3, 2))
        exact = fisherkit.fisher(model, X, shape=shape).to_dense()
        total = np.zeros_like(exact)
        H = model.forward(X)
        for n in range(3):
            ys, w, _ = head_support(head, H[n])
            for y, p in zip(ys, w):
                yl = y[0] if head == "categorical" else y
                total += p * fisherkit.fisher(model, X[n:n + 1], np.atleast_2d(yl), estimator="empirical",
                                              shape=shape).to_dense() / 3
        np.testing.assert_allclose(total, exact, rtol=1e-12, atol=1e-14)


def test_empirical_matches_per_sample_gradients():
    model = fisherkit.MLP.init([4, 5, 3], "relu", "categorical", seed=0)
    X = np.random.default_rng(3).standard_normal((11, 4))
    y = np.arange(11) % 3
    G = model.per_sample_grads(X, y)
    F = fisherkit.fisher(model, X, y, estimator="empirical", shape="full")
    np.testing.assert_allclose(F.to_dense(), G.T @ G / 11, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("estimator", ["exact", "score", "hessian"])
def test_shapes_agree_with_each_other(estimator):
    model = fisherkit.MLP.init([3, 5, 4, 3], "tanh", "categorical", seed=1, bias_std=0.2)
    X = np.random.default_rng(2).standard_normal((13, 3))
    kw = dict(estimator=estimator, samples=2, seed=5)
    full = fisherkit.fisher(model, X, shape="full", **kw).to_dense()
    diag = fisherkit.fisher(model, X, shape="diag", **kw).values
    np.testing.assert_allclose(np.diag(full), diag, rtol=1e-10, atol=1e-14)
    for shape in ("layer", "unit"):
        F = fisherkit.fisher(model, X, shape=shape, **kw)
        np.testing.assert_allclose(F.diagonal(), diag, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(F.to_dense(), restrict(full, model.sizes, shape), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("estimator", ["exact", "score", "hessian"])
def test_unit_blocks_of_many_narrow_units_agree_with_the_full_matrix(estimator, dtype):
    """Layers of at least 8 units with blocks at most 128 wide take the packed GEMM (w^T Q over
    row blocks of Q, at most 512 rows); the others one SYRK per unit. Both against the full
    matrix's blocks (one SYRK of the pseudo-gradient rows), with signed weights (hessian),
    ReLU zeros, a bias-free layer, N = 1100 (row blocks 512, 512, 76) and chunks of 7, and the
    widths on either side of the switch (128 packed, 129 not). The exact full matrix itself,
    and the per-sample gradients of the 130-unit case, come from explicit backpropagation
    (reference.py)."""
    tol = 1e-10 if dtype == np.float64 else 2e-4
    for sizes, act, bias in (([5, 9, 8, 3], "relu", [True, False, True]), ([127, 8, 3], "tanh", True),
                             ([128, 8, 3], "tanh", True)):
        model = fisherkit.MLP.init(sizes, act, "categorical", seed=1, bias=bias, bias_std=0.2, dtype=dtype)
        X = np.random.default_rng(2).standard_normal((1100 if sizes[0] < 100 else 90, sizes[0])).astype(dtype)
        kw = dict(estimator=estimator, samples=2, seed=5)
        full = fisherkit.fisher(model, X, shape="full", **kw).to_dense().astype(np.float64)
        scale = np.abs(full).max()
        if estimator == "exact" and bias is True:  # and the full matrix against explicit backpropagation
            layers, acts = model_layers(model), model.activations
            Js = [analytic_jacobian(layers, acts, x) for x in X.astype(np.float64)]
            Is = [head_cov(model.head, forward_one(layers, acts, x)[0]) for x in X.astype(np.float64)]
            ref = np.mean([J.T @ I @ J for J, I in zip(Js, Is)], axis=0)
            np.testing.assert_allclose(full, ref, rtol=tol, atol=tol * scale)
        for chunk in (0, 7):
            U = fisherkit.fisher(model, X, shape="unit", chunk=chunk, **kw)
            for (ws, bs), blocks in zip(model.layout.param_slices(), U.blocks):
                n_in = (ws.stop - ws.start) // len(blocks)
                for u, block in enumerate(blocks):  # unit u: weight row u, then its bias
                    ix = list(range(ws.start + u * n_in, ws.start + (u + 1) * n_in)) + ([bs.start + u] if bs else [])
                    np.testing.assert_allclose(block, full[np.ix_(ix, ix)], rtol=tol, atol=tol * scale)
    # 130 units of width 128: in float64 two groups of units (each G within 8 MiB); the
    # empirical Fisher against the per-sample gradients
    model = fisherkit.MLP.init([127, 130, 3], "tanh", "categorical", seed=1, dtype=dtype)
    X = np.random.default_rng(3).standard_normal((64, 127)).astype(dtype)
    y = np.random.default_rng(4).integers(0, 3, 64)
    layers = model_layers(model)  # the per-sample gradients by explicit backpropagation
    G = np.array([nll_grad(layers, model.activations, model.head, x, t) for x, t in zip(X.astype(np.float64), y)])
    for chunk in (0, 16):  # chunks before the last sum all units at once (the last emits in groups)
        U = fisherkit.fisher(model, X, y, estimator="empirical", shape="unit", chunk=chunk)
        (ws, bs), blocks = model.layout.param_slices()[0], U.blocks[0]
        for u in (0, 1, 126, 127, 129):
            ix = list(range(ws.start + u * 127, ws.start + (u + 1) * 127)) + [bs.start + u]
            want = G[:, ix].T @ G[:, ix] / 64
            np.testing.assert_allclose(blocks[u], want, rtol=tol, atol=tol * np.abs(want).max())
    # the variance sums take the same unit Grams: their diagonal against the diagonal shape's GEMMs
    model = fisherkit.MLP.init([5, 9, 8, 3], "tanh", "categorical", seed=1, dtype=dtype)
    X = np.random.default_rng(2).standard_normal((700, 5)).astype(dtype)
    if estimator != "exact":
        vu = fisherkit.variance(model, X, estimator=estimator, shape="unit").diagonal()
        vd = fisherkit.variance(model, X, estimator=estimator, shape="diag").values
        np.testing.assert_allclose(vu, vd, rtol=tol, atol=tol * np.abs(vd).max())


def test_merge_chunk_and_thread_independence():
    model = fisherkit.MLP.init([3, 6, 3], "sigmoid", "categorical", seed=3)
    X = np.random.default_rng(4).standard_normal((40, 3))
    for shape in SHAPES:
        for est in ("exact", "score", "hessian"):
            whole = fisherkit.fisher(model, X, estimator=est, shape=shape, samples=2, seed=11)
            a = fisherkit.fisher(model, X[:15], estimator=est, shape=shape, samples=2, seed=11)
            b = fisherkit.fisher(model, X[15:], estimator=est, shape=shape, samples=2, seed=11, index_offset=15)
            m = a.merge(b)
            assert m.n_samples == 40
            np.testing.assert_allclose(m.to_dense(), whole.to_dense(), rtol=1e-12, atol=1e-15)
            for chunk in (1, 7):
                c = fisherkit.fisher(model, X, estimator=est, shape=shape, samples=2, seed=11, chunk=chunk)
                np.testing.assert_allclose(c.to_dense(), whole.to_dense(), rtol=1e-12, atol=1e-15)
    try:
        fisherkit.set_num_threads(1)
        one = fisherkit.fisher(model, X, estimator="score", shape="unit", seed=3).to_dense()
        fisherkit.set_num_threads(2)
        two = fisherkit.fisher(model, X, estimator="score", shape="unit", seed=3).to_dense()
    finally:
        fisherkit.set_num_threads(0)
    np.testing.assert_allclose(one, two, rtol=1e-12, atol=1e-15)


def test_blas_threads_sets_numpys_blas_to_fisherkits_count_and_restores_it():
    """info.blas_threads: NumPy's BLAS at fisherkit's thread count inside, its own count back
    after; the controller it keeps between calls is remade when a module is imported."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fisherkit.info import blas_threads

    def counts():
        return {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    if not counts():
        pytest.skip("threadpoolctl finds no BLAS library in this process")
    try:
        for fk_threads, outer in ((1, 2), (2, 1), (1, 2)):
            fisherkit.set_num_threads(fk_threads)
            with threadpoolctl.threadpool_limits(limits=outer, user_api="blas"):
                before = counts()
                with blas_threads():
                    assert set(counts().values()) == {fk_threads}
                assert counts() == before
        sys.modules["_fisherkit_test_new_module"] = type(sys)("_fisherkit_test_new_module")
        fisherkit.set_num_threads(1)
        with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
            with blas_threads():
                assert set(counts().values()) == {1}
    finally:
        sys.modules.pop("_fisherkit_test_new_module", None)
        fisherkit.set_num_threads(0)


def test_hessian_estimator_structural_zeros():
    """Last layer: I2 equals the exact block (zero variance). ReLU: the I2 diagonal is exact."""
    model = fisherkit.MLP.init([3, 4, 4, 3], "tanh", "categorical", seed=6, bias_std=0.3)
    X = np.random.default_rng(5).standard_normal((9, 3))
    ex = fisherkit.fisher(model, X, shape="layer").blocks[-1]
    h2 = fisherkit.fisher(model, X, estimator="hessian", shape="layer", samples=1, seed=1).blocks[-1]
    np.testing.assert_allclose(h2, ex, rtol=1e-12, atol=1e-15)
    relu = fisherkit.MLP.init([3, 6, 5, 3], "relu", "gaussian", seed=2)
    d_ex = fisherkit.fisher(relu, X, shape="diag").values
    d_h2 = fisherkit.fisher(relu, X, estimator="hessian", shape="diag", seed=4).values
    np.testing.assert_allclose(d_h2, d_ex, rtol=1e-12, atol=1e-15)
    u_ex = fisherkit.fisher(relu, X, shape="unit").to_dense()
    u_h2 = fisherkit.fisher(relu, X, estimator="hessian", shape="unit", seed=4).to_dense()
    np.testing.assert_allclose(u_h2, u_ex, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("estimator", ["exact", "score", "hessian"])
def test_float32_agrees_with_float64(shape, estimator):
    m64 = fisherkit.MLP.init([5, 7, 4], "tanh", "categorical", seed=8)
    m32 = fisherkit.MLP(m64.layers, m64.activations, m64.head, dtype=np.float32)
    X = np.random.default_rng(6).standard_normal((50, 5))
    kw = dict(estimator=estimator, shape=shape, samples=2, seed=9)
    F64 = fisherkit.fisher(m64, X, **kw).to_dense()
    F32 = fisherkit.fisher(m32, X, **kw)
    assert F32.dtype == np.float32
    # BLAS sums in float32 (eps 6e-8 x terms), chunks added in float32
    np.testing.assert_allclose(F32.to_dense(), F64, rtol=0, atol=2e-5 * np.abs(F64).max())


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_accuracy_over_many_chunks(shape):
    """A float32 result accumulates its chunks in float32 (no float64 shadow of the result):
    over 16384 inputs in 64 chunks it stays within 2e-6 of the float64 result, relative to
    the largest entry (measured at N = 65536 in 16 chunks: 2.5e-7 diag to 7.9e-7 full; the
    documented bound is 1e-6 there)."""
    m64 = fisherkit.MLP.init([20, 32, 16, 5], "tanh", "categorical", seed=3)
    m32 = fisherkit.MLP(m64.layers, m64.activations, m64.head, dtype=np.float32)
    X = np.random.default_rng(4).standard_normal((16384, 20))
    F64 = fisherkit.fisher(m64, X, shape=shape, chunk=256).to_dense()
    F32 = fisherkit.fisher(m32, X.astype(np.float32), shape=shape, chunk=256).to_dense()
    err = float(np.abs(F32.astype(np.float64) - F64).max() / np.abs(F64).max())
    assert err < 2e-6, err


def test_matrix_objects_against_dense_linear_algebra():
    model = fisherkit.MLP.init([3, 4, 3], "tanh", "categorical", seed=10, bias_std=0.5)
    X = np.random.default_rng(7).standard_normal((30, 3))
    rng = np.random.default_rng(8)
    for shape in SHAPES:
        F = fisherkit.fisher(model, X, shape=shape)
        D = F.to_dense()
        v = rng.standard_normal(model.n_params)
        V = rng.standard_normal((model.n_params, 3))
        np.testing.assert_allclose(F.mv(v), D @ v, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(F.mv(V), D @ V, rtol=1e-12, atol=1e-14)
        lam = 1e-2
        A = D + lam * np.eye(model.n_params)
        np.testing.assert_allclose(F.solve(v, damping=lam), np.linalg.solve(A, v), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(F.solve(V, damping=lam), np.linalg.solve(A, V), rtol=1e-8, atol=1e-10)
        assert F.trace() == pytest.approx(np.trace(D), rel=1e-12)
        assert F.frobenius() == pytest.approx(np.linalg.norm(D), rel=1e-12)
        ev = F.eigvalsh()
        parts = [e.reshape(-1, e.shape[-1]) for e in (ev if isinstance(ev, list) else [ev])]
        assert all((np.diff(e, axis=-1) >= 0).all() for e in parts), "eigvalsh is ascending, block by block"
        allev = np.sort(np.concatenate([np.ravel(e) for e in parts]))
        np.testing.assert_allclose(allev, np.linalg.eigvalsh(D), rtol=1e-9, atol=1e-12)
        inv = F.inverse(damping=lam)
        if shape == "full":
            np.testing.assert_allclose(inv @ A, np.eye(model.n_params), atol=1e-9)
        elif shape == "diag":
            np.testing.assert_allclose(inv, 1 / np.diag(A), rtol=1e-12)
        else:  # per layer: the inverse of each damped layer block, or of each damped unit block
            lay = model.layout
            for l, Il in enumerate(inv):
                s = lay.layer_slice(l)
                Dl = D[s, s]
                if shape == "layer":
                    np.testing.assert_allclose(Il, np.linalg.inv(Dl + lam * np.eye(len(Dl))), rtol=1e-9, atol=1e-9)
                    continue
                n_out, k = lay.sizes[l + 1], lay.unit_width[l]
                for u in range(n_out):
                    ix = np.r_[u * (k - 1):(u + 1) * (k - 1), n_out * (k - 1) + u]  # row u of W_l, then b_l[u]
                    Du = Dl[np.ix_(ix, ix)]
                    np.testing.assert_allclose(Il[u], np.linalg.inv(Du + lam * np.eye(k)), rtol=1e-9, atol=1e-9)
    # softmax Fishers are singular: undamped solves must name the block
    with pytest.raises(ValueError, match="not positive definite|not positive"):
        fisherkit.fisher(model, X, shape="layer").solve(np.ones(model.n_params))


def test_bad_arguments():
    model = fisherkit.MLP.init([3, 4, 3], "tanh", "categorical")
    X = np.zeros((2, 3))
    with pytest.raises(ValueError, match="unknown estimator"):
        fisherkit.fisher(model, X, estimator="fisher")
    with pytest.raises(ValueError, match="unknown shape"):
        fisherkit.fisher(model, X, shape="shampoo")
    with pytest.raises(ValueError, match="needs labels"):
        fisherkit.fisher(model, X, estimator="empirical")
    with pytest.raises(ValueError, match="samples"):
        fisherkit.fisher(model, X, estimator="score", samples=0)
    # the result (7.51 KiB) and the workspace of one chunk
    with pytest.raises(MemoryError, match=r"\(result and workspace\) needs [\d.]+ KiB but the budget is 100 bytes; "
                                          r"use shape='unit' or shape='diag'"):
        fisherkit.fisher(model, X, shape="full", max_bytes=100)
    with pytest.raises(TypeError, match="model"):
        fisherkit.fisher("model", X)
    with pytest.raises(ValueError, match="different models"):
        a = fisherkit.fisher(model, X)
        b = fisherkit.fisher(fisherkit.MLP.init([3, 5, 3]), X)
        a.merge(b)


def test_big_dense_request_refused_before_allocating():
    big = fisherkit.MLP.init([784, 128, 10], "tanh", "categorical", dtype=np.float64)
    with pytest.raises(MemoryError, match=r"needs 77\.\d\d GiB"):  # 77.17 GiB of result, and workspace
        fisherkit.fisher(big, np.zeros((1, 784)), shape="full")


def test_the_automatic_budget_is_read_for_requests_of_32_mib_and_more(monkeypatch):
    # reading the available memory costs a sixth of a small call, so requests below 32 MiB
    # skip it; from 32 MiB up the automatic budget refuses what does not fit
    import fisherkit._validate as validate
    reads = []
    monkeypatch.setattr(validate, "available_memory", lambda: reads.append(1) or 0)
    small = fisherkit.MLP.init([20, 30, 5], seed=0)  # full: 785^2 x 8 bytes = 4.7 MiB
    fisherkit.fisher(small, np.zeros((3, 20)), shape="full")
    assert reads == []
    with pytest.raises(MemoryError, match="but the budget is 100 bytes"):  # an explicit budget always holds
        fisherkit.fisher(small, np.zeros((3, 20)), shape="full", max_bytes=100)
    wide = fisherkit.MLP.init([40, 50, 5], seed=0)  # full: 2305^2 x 8 bytes = 40.5 MiB, and workspace
    with pytest.raises(MemoryError, match=r"needs 4\d\.\d\d MiB but the budget is 0 bytes"):
        fisherkit.fisher(wide, np.zeros((3, 40)), shape="full")
    assert reads == [1]


@pytest.mark.parametrize("head", ["categorical", "gaussian", "bernoulli", "poisson"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fisher_vector_product_equals_dense_fisher(head, dtype):
    model = fisherkit.MLP.init([4, 6, 5, 3], "tanh", head, seed=2, bias_std=0.3, dtype=dtype,
                               weight_std=0.8)
    X = np.random.default_rng(11).standard_normal((17, 4))
    F = fisherkit.fisher(fisherkit.MLP(model.layers, model.activations, head, dtype=np.float64), X,
                         shape="full").to_dense()
    rng = np.random.default_rng(12)
    v = rng.standard_normal(model.n_params)
    V = rng.standard_normal((model.n_params, 3))
    tol = 1e-11 if dtype == np.float64 else 2e-5
    got = fisherkit.fisher_vector_product(model, X, v, chunk=5)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, F @ v, rtol=0, atol=tol * np.abs(F @ v).max())
    np.testing.assert_allclose(fisherkit.fisher_vector_product(model, X, V), F @ V, rtol=0,
                               atol=tol * np.abs(F @ V).max())
    with pytest.raises(ValueError, match="'v' must have shape"):
        fisherkit.fisher_vector_product(model, X, np.ones(3))


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus", "erf", "relu"])
def test_jvp_first_and_second_order_against_finite_differences(act):
    model = fisherkit.MLP.init([3, 5, 4, 2], act, "gaussian", seed=3, bias_std=0.4)
    X = np.random.default_rng(13).standard_normal((6, 3)) + 0.05
    v = np.random.default_rng(14).standard_normal(model.n_params)
    d1, d2 = model.jvp(X, v, second_order=True)
    J = model.jacobian(X)
    np.testing.assert_allclose(d1, J @ v, rtol=1e-12, atol=1e-13)
    theta = model.flat_params()
    eps = 1e-4

    def h_at(t):
        m = model.copy()
        m.set_flat_params(t)
        return m.forward(X)

    fd2 = (h_at(theta + eps * v) - 2 * h_at(theta) + h_at(theta - eps * v)) / eps**2
    np.testing.assert_allclose(d2, fd2, rtol=1e-5, atol=1e-6)
    # and against the finite-difference Hessians of the reference
    layers = model_layers(model)
    for n in range(2):
        Hn = fd_hessians(layers, model.activations, X[n])
        np.testing.assert_allclose(d2[n], np.einsum("i,cij,j->c", v, Hn, v), rtol=1e-6, atol=1e-8)


def test_with_stderr_returns_the_closed_form_standard_error():
    model = fisherkit.MLP.init([3, 5, 3], "tanh", "categorical", seed=4)
    X = np.random.default_rng(15).standard_normal((12, 3))
    for shape in ("diag", "unit"):
        F, se = fisherkit.fisher(model, X, estimator="score", shape=shape, samples=3, seed=1, with_stderr=True)
        V = fisherkit.variance(model, X, estimator="score", shape=shape, samples=3)
        assert type(se) is type(F)
        np.testing.assert_allclose(se.to_dense() ** 2, V.to_dense(), rtol=1e-12, atol=1e-300)
    with pytest.raises(ValueError, match="empirical"):
        fisherkit.fisher(model, X, np.zeros(12, int), estimator="empirical", with_stderr=True)


def test_layer_subset_computes_only_the_selected_blocks():
    model = fisherkit.MLP.init([4, 5, 3, 2], "tanh", "categorical", seed=3)
    X = np.random.default_rng(4).standard_normal((17, 4))
    allb = fisherkit.fisher(model, X, estimator="score", shape="layer", samples=2, seed=5)
    part = fisherkit.fisher(model, X, estimator="score", shape="layer", samples=2, seed=5, layers=[0, 2])
    assert part.layers == (0, 2) and len(part.blocks) == 2
    np.testing.assert_array_equal(part.layer(0), allb.blocks[0])
    np.testing.assert_array_equal(part.layer(2), allb.blocks[2])
    assert [e.shape for e in part.eigvalsh()] == [(25,), (8,)]
    for call in (part.to_dense, lambda: part.mv(np.ones(model.n_params)), part.diagonal):
        with pytest.raises(ValueError, match=r"layers \[1\] were not computed"):
            call()
    with pytest.raises(ValueError, match="layer 1 was not computed"):
        part.layer(1)
    other = fisherkit.fisher(model, X, estimator="score", shape="layer", samples=2, seed=5, layers=[1])
    with pytest.raises(ValueError, match="cannot merge blocks of layers"):
        part.merge(other)
    with pytest.raises(ValueError, match="ascending"):
        fisherkit.fisher(model, X, shape="layer", layers=[2, 0])
    with pytest.raises(ValueError, match="'layers'"):
        fisherkit.fisher(model, X, shape="layer", layers=[3])
    with pytest.raises(TypeError, match="'layers'"):
        fisherkit.fisher(model, X, shape="layer", layers=[True])
    with pytest.raises(ValueError, match="shape 'layer'"):
        fisherkit.fisher(model, X, shape="unit", layers=[0])
    # the memory check counts only the selected blocks (and the workspace of one chunk)
    workspace = fisherkit._core.fisher_workspace(*model._core_args(), X, "exact", "layer", 1, 0, [0, 2])
    need = part.blocks[0].nbytes + part.blocks[1].nbytes + workspace
    fisherkit.fisher(model, X, shape="layer", layers=[0, 2], max_bytes=need)
    with pytest.raises(MemoryError):
        fisherkit.fisher(model, X, shape="layer", max_bytes=need)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("estimator", ["exact", "score", "hessian"])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_prior_contents_of_the_result_buffer_never_leak(act, estimator, dtype):
    """The symmetric shapes are written by the last chunk without a zero fill: a result buffer
    full of NaN (fisher's `out=`, or a strided one through the core) gives the values of a
    fresh result, with one chunk or many (a chunk of 1, and 7 not dividing N), for every
    layer subset. ReLU units that are off for a whole chunk have no row to sum."""
    model = fisherkit.MLP.init([4, 5, 3, 2], act, "categorical", seed=3, dtype=dtype)
    X = np.random.default_rng(4).standard_normal((17, 4)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    parts_of = ref_parts(model, X) if estimator == "exact" else None

    def arrays(F, shape):  # the arrays of a result, in the flat layout's order
        return [F.matrix] if shape == "full" else [F.values] if shape == "diag" else list(F.blocks)

    for shape, layers in (("full", None), ("layer", None), ("layer", [0, 2]), ("layer", [1]), ("unit", None),
                          ("diag", None)):
        kw = dict(estimator=estimator, shape=shape, samples=2, seed=5, layers=layers)
        fresh = fisherkit.fisher(model, X, **kw)
        expect = np.concatenate([np.ravel(b) for b in arrays(fresh, shape)])
        if estimator == "exact" and layers is None:  # the fresh result itself against the reference
            ref = restrict(ref_exact(parts_of), model.sizes, shape)
            np.testing.assert_allclose(fresh.to_dense(), ref, rtol=tol, atol=tol * np.abs(ref).max())
        for chunk in (0, 1, 7):
            buf = np.full(expect.size, np.nan, dtype)
            F = fisherkit.fisher(model, X, chunk=chunk, out=buf, **kw)
            assert all(np.shares_memory(p, buf) for p in arrays(F, shape))
            np.testing.assert_allclose(buf, expect, rtol=tol, atol=tol * np.abs(expect).max())
            strided = np.full(3 * expect.size, np.nan, dtype)
            fisherkit._core.fisher(*model._core_args(), model.head, model.sigma, X, None, estimator, shape, 2, 5,
                                   chunk, 0, strided[::3], None, layers or [])
            np.testing.assert_allclose(strided[::3], expect, rtol=tol, atol=tol * np.abs(expect).max())
            assert np.isnan(np.delete(strided, np.s_[::3])).all()  # the entries between are not touched


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_symmetric_results_are_mirrored_across_tiles_and_blocks(dtype):
    """The symmetric shapes are emitted from their upper triangles in tiles of 64 x 64, whose
    lower halves are mirrored in 8 x 8 blocks (scalar on the diagonal and at the edges). A
    full matrix of P = 213 (four tiles, the last 21 wide) and layer blocks of 91, 98 and 24
    (one tile and a part, two, one): exactly symmetric, and equal to the explicit reference,
    fresh, into out= and into a strided buffer."""
    model = fisherkit.MLP.init([6, 13, 7, 3], "tanh", "categorical", seed=8, bias_std=0.3, dtype=dtype)
    X = np.random.default_rng(3).standard_normal((5, 6))
    dense = ref_exact(ref_parts(model, X))
    tol = 1e-9 if dtype == np.float64 else 1e-4
    Xc = X.astype(dtype)
    for shape in ("full", "layer"):
        ref = restrict(dense, model.sizes, shape)
        F = fisherkit.fisher(model, Xc, shape=shape)
        mats = [F.matrix] if shape == "full" else list(F.blocks)
        assert [m.shape[0] for m in mats] == ([213] if shape == "full" else [91, 98, 24])
        for m in mats:
            np.testing.assert_array_equal(m, m.T)
        np.testing.assert_allclose(F.to_dense(), ref, rtol=tol, atol=tol * np.abs(ref).max(), err_msg=shape)
        flat = np.concatenate([m.ravel() for m in mats])
        buf = np.full(flat.size, np.nan, dtype)
        fisherkit.fisher(model, Xc, shape=shape, out=buf)
        np.testing.assert_array_equal(buf, flat)
        strided = np.full(2 * flat.size, np.nan, dtype)
        fisherkit._core.fisher(*model._core_args(), model.head, model.sigma, Xc, None, "exact", shape, 1, 0, 0, 0,
                               strided[::2], None, [])
        np.testing.assert_array_equal(strided[::2], flat)


def test_out_buffer_is_checked():
    model = fisherkit.MLP.init([4, 5, 3], "tanh", "categorical", seed=3)
    X = np.random.default_rng(4).standard_normal((9, 4))
    size = model.layout.size("unit")
    with pytest.raises(ValueError, match=rf"argument 'out' must be a C-contiguous float64 array of shape \({size},\)"):
        fisherkit.fisher(model, X, shape="unit", out=np.empty(size + 1))
    with pytest.raises(ValueError, match="float64"):
        fisherkit.fisher(model, X, shape="unit", out=np.empty(size, np.float32))
    with pytest.raises(ValueError, match="not C-contiguous"):
        fisherkit.fisher(model, X, shape="unit", out=np.empty(2 * size)[::2])
    ro = np.empty(size)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fisherkit.fisher(model, X, shape="unit", out=ro)
    with pytest.raises(TypeError, match="argument 'out' must be a numpy array"):
        fisherkit.fisher(model, X, shape="unit", out=[0.0] * size)
    with pytest.raises(ValueError, match="'out' is not available for shape 'kfac'"):
        fisherkit.fisher(model, X, shape="kfac", out=np.empty(size))
    # with out=, the budget counts only the workspace
    workspace = fisherkit._core.fisher_workspace(*model._core_args(), X, "exact", "full", 1, 0, [])
    buf = np.empty(model.layout.size("full"))
    fisherkit.fisher(model, X, shape="full", out=buf, max_bytes=workspace)
    with pytest.raises(MemoryError):
        fisherkit.fisher(model, X, shape="full", max_bytes=workspace)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts minor page faults (getrusage on Linux)")
def test_workspace_is_kept_between_calls():
    """A second call with the same workspaces takes them from the per-thread cache: without
    it every call page-faults its MBs back from the kernel (5300 to 5800 faults a call here,
    0 with the cache)."""
    import resource

    model = fisherkit.MLP.init([784, 128, 10], "tanh", "categorical", seed=1)
    X = np.random.default_rng(0).standard_normal((1024, 784))
    out = np.empty(model.layout.size("diag"))
    faults = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fisherkit.fisher(model, X, shape="diag", chunk=1024, out=out)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert min(faults[1:]) < 500, faults  # the chunk's buffers of 1024 rows: over 4000 pages


def test_merge_refuses_results_that_do_not_belong_together():
    model = fisherkit.MLP.init([3, 4, 2], "tanh", "categorical", seed=1)
    X = np.random.default_rng(2).standard_normal((20, 3))
    kw = dict(estimator="score", shape="diag", samples=2, seed=7)
    a = fisherkit.fisher(model, X[:10], **kw)
    b = fisherkit.fisher(model, X[10:], index_offset=10, **kw)
    whole = fisherkit.fisher(model, X, **kw)
    merged = a.merge(b)
    np.testing.assert_allclose(merged.values, whole.values, rtol=1e-14)
    assert merged.provenance.rows == ((0, 20),)
    with pytest.raises(ValueError, match="overlapping input rows"):
        a.merge(a)
    # ranges sharing one row, and a range inside another, in either order
    for lo, hi in ((9, 20), (3, 4), (0, 1)):
        c = fisherkit.fisher(model, X[lo:hi], index_offset=lo, **kw)
        for first, second in ((a, c), (c, a)):
            with pytest.raises(ValueError, match=rf"overlapping input rows .*\[{lo}, {hi}\)"):
                first.merge(second)
    assert merged.merge(fisherkit.fisher(model, X[:1], index_offset=20, **kw)).provenance.rows == ((0, 21),)
    with pytest.raises(ValueError, match="different seeds"):
        a.merge(fisherkit.fisher(model, X[10:], index_offset=10, **{**kw, "seed": 8}))
    with pytest.raises(ValueError, match="different numbers of draws"):
        a.merge(fisherkit.fisher(model, X[10:], index_offset=10, **{**kw, "samples": 3}))
    other = model.copy()
    other.set_flat_params(other.flat_params() * 1.01)
    with pytest.raises(ValueError, match="different models"):
        a.merge(fisherkit.fisher(other, X[10:], index_offset=10, **kw))
    with pytest.raises(ValueError, match="different models or estimators"):
        fisherkit.fisher(model, X[:10]).merge(fisherkit.fisher(model, X[10:], index_offset=10, estimator="empirical",
                                                                y=np.zeros(10, int)))
    m32 = fisherkit.MLP(model.layers, model.activations, model.head, dtype=np.float32)
    with pytest.raises(ValueError, match="different"):
        a.merge(fisherkit.fisher(m32, X[10:], index_offset=10, **kw))
    # exact results merge whatever the seed, draws are not involved
    e1 = fisherkit.fisher(model, X[:10], seed=1)
    e2 = fisherkit.fisher(model, X[10:], index_offset=10, seed=2)
    np.testing.assert_allclose(e1.merge(e2).values, fisherkit.fisher(model, X).values, rtol=1e-14)


def test_fingerprint_of_large_arrays_samples_but_sees_a_training_step():
    from fisherkit.model import FINGERPRINT_VALUES

    model = fisherkit.MLP.init([400, 300, 3], "tanh", "categorical", seed=1)  # 120000 weights > the sample
    assert model.layers[0][0].size > FINGERPRINT_VALUES
    same = model.copy()
    assert same.fingerprint() == model.fingerprint()
    X = np.random.default_rng(0).standard_normal((8, 400))
    _, g = model.gradient(X, np.zeros(8, int))
    same.set_flat_params(same.flat_params() - 0.1 * g)   # one SGD step changes every weight
    assert same.fingerprint() != model.fingerprint()


def test_fingerprint_sees_everything_the_model_computes_with():
    """Each of activation, head, sigma, dtype, a layer's bias (present but zero), and one
    weight changes the fingerprint; so merge refuses estimates across any of them."""
    model = fisherkit.MLP.init([3, 4, 2], "tanh", "gaussian", seed=3, bias_std=0.1)
    W, b = model.layers[1]
    no_bias = fisherkit.MLP([model.layers[0], (W, None)], model.activations, "gaussian")
    zero_bias = fisherkit.MLP([model.layers[0], (W, np.zeros_like(b))], model.activations, "gaussian")
    nudged = model.copy()
    theta = nudged.flat_params()
    theta[5] += 1e-12
    nudged.set_flat_params(theta)
    L = model.layers  # the same weights and biases, one other setting each
    others = {"activation": fisherkit.MLP(L, "erf", "gaussian"),
              "head": fisherkit.MLP(L, "tanh", "poisson"),
              "sigma": fisherkit.MLP(L, "tanh", "gaussian", sigma=2.0),
              "dtype": fisherkit.MLP(L, "tanh", "gaussian", dtype=np.float32),
              "one weight": nudged}
    assert fisherkit.MLP(L, "tanh", "gaussian").fingerprint() == model.fingerprint()
    assert model.copy().fingerprint() == model.fingerprint()
    assert no_bias.fingerprint() != zero_bias.fingerprint()
    for what, other in others.items():
        assert other.fingerprint() != model.fingerprint(), what
    X = np.random.default_rng(4).standard_normal((6, 3))
    a = fisherkit.fisher(model, X[:3])
    with pytest.raises(ValueError, match="different models"):
        a.merge(fisherkit.fisher(others["sigma"], X[3:], index_offset=3))
    with pytest.raises(ValueError, match="different models"):
        a.merge(fisherkit.fisher(others["activation"], X[3:], index_offset=3))


def test_unit_block_solve_of_wide_blocks_uses_the_blocked_cholesky_correctly():
    """Blocks wider than 128 take the blocked Cholesky (panels of 64): solves agree with dense
    algebra, and a singular block is named."""
    model = fisherkit.MLP.init([200, 3, 2], "tanh", "categorical", seed=2)
    X = np.random.default_rng(3).standard_normal((600, 200))
    U = fisherkit.fisher(model, X, shape="unit")
    v = np.random.default_rng(4).standard_normal(model.n_params)
    x = U.solve(v, damping=1e-3)
    dense = U.to_dense() + 1e-3 * np.eye(model.n_params)
    np.testing.assert_allclose(dense @ x, v, rtol=1e-8, atol=1e-8 * np.abs(v).max())
    few = fisherkit.fisher(model, X[:50], shape="unit")  # 50 inputs < 201: singular blocks
    with pytest.raises(ValueError, match="not positive definite"):
        few.solve(v, damping=0.0)
