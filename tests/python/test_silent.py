"""Nothing silent (issue 12): every case here was a silent wrong answer, a coerced argument,
an unhelpful error or an uninterruptible call. Each test is the reproducer of one item."""
from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fisherkit
from fisherkit.natgrad import METHODS, natural_gradient
from interrupts import sigint_as_at_a_terminal

SHAPES = ("full", "layer", "unit", "diag")
HEADS = ("gaussian", "categorical", "bernoulli", "poisson")


def _labels(model: fisherkit.MLP, n: int, rng: np.random.Generator) -> np.ndarray:
    c = model.output_dim
    if model.head == "categorical":
        return rng.integers(0, c, n)
    if model.head == "gaussian":
        return rng.standard_normal((n, c))
    if model.head == "bernoulli":
        return rng.integers(0, 2, (n, c)).astype(float)
    return rng.poisson(1.0, (n, c)).astype(float)


# ------------------------------------------------------------------ layers without bias
def _pair(head: str = "categorical", sizes=(4, 6, 5, 3), bias=(False, True, False)):
    """A model with bias-free layers and the same model with zero biases in them: the first's
    Fisher is the second's restricted to the parameters that exist."""
    free = fisherkit.MLP.init(list(sizes), "tanh", head, seed=3, bias=list(bias))
    zero = fisherkit.MLP([(W, np.zeros(W.shape[0]) if b is None else b) for W, b in free.layers], free.activations,
                         head)
    idx = []  # the flat indices of the zero-bias model's parameters that the bias-free one has
    for (ws, bs), (_, b) in zip(zero.param_slices(), free.layers):
        idx.extend(range(ws.start, ws.stop))
        if b is not None:
            idx.extend(range(bs.start, bs.stop))
    return free, zero, np.array(idx)


def test_bias_free_layers_have_no_bias_parameters():
    free, zero, idx = _pair()
    assert free.n_params == 4 * 6 + 6 * 5 + 5 + 5 * 3
    assert free.biases[0] is None and free.biases[2] is None and free.biases[1] is not None
    assert free.n_params == idx.size
    np.testing.assert_array_equal(free.flat_params(), zero.flat_params()[idx])
    theta = np.arange(free.n_params, dtype=float)
    free.set_flat_params(theta)
    np.testing.assert_array_equal(free.flat_params(), theta)
    assert [b is None for _, b in free.unflatten(theta)] == [True, False, True]


@pytest.mark.parametrize("estimator", ["exact", "score", "hessian", "empirical"])
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_free_fisher_is_the_zero_bias_fisher_without_bias_rows(estimator, shape, rng):
    free, zero, idx = _pair()
    X = rng.standard_normal((9, 4))
    y = _labels(free, 9, rng) if estimator == "empirical" else None
    kw = dict(estimator=estimator, samples=2, seed=11)
    F = fisherkit.fisher(free, X, y, shape="full", **kw).to_dense()
    G = fisherkit.fisher(zero, X, y, shape="full", **kw).to_dense()
    np.testing.assert_allclose(F, G[np.ix_(idx, idx)], rtol=1e-12, atol=1e-14)
    S = fisherkit.fisher(free, X, y, shape=shape, **kw)
    assert S.n_params == free.n_params
    D = S.to_dense()
    mask = S.to_dense() != 0
    np.testing.assert_allclose(D[mask], F[mask], rtol=1e-12, atol=1e-14)


def test_bias_free_gradients_variance_and_products(rng):
    free, zero, idx = _pair("poisson")
    X = rng.standard_normal((7, 4))
    y = _labels(free, 7, rng)
    np.testing.assert_allclose(free.per_sample_grads(X, y), zero.per_sample_grads(X, y)[:, idx], rtol=1e-12)
    np.testing.assert_allclose(free.gradient(X, y)[1], zero.gradient(X, y)[1][idx], rtol=1e-12)
    np.testing.assert_allclose(free.jacobian(X), zero.jacobian(X)[:, :, idx], rtol=1e-12)
    v = rng.standard_normal(free.n_params)
    vz = np.zeros(zero.n_params)
    vz[idx] = v
    np.testing.assert_allclose(fisherkit.fisher_vector_product(free, X, v),
                               fisherkit.fisher_vector_product(zero, X, vz)[idx], rtol=1e-11)
    for shape in ("diag", "unit", "layer", "full"):
        for est in ("score", "hessian"):
            V = fisherkit.variance(free, X, estimator=est, shape=shape).to_dense()
            W = fisherkit.variance(zero, X, estimator=est, shape="full").to_dense()[np.ix_(idx, idx)]
            mask = V != 0
            np.testing.assert_allclose(V[mask], W[mask], rtol=1e-10, atol=1e-14)
    assert np.isfinite(fisherkit.variance(free, X, shape="trace"))


@pytest.mark.parametrize("method", METHODS)
def test_bias_free_natural_gradient_every_method(method, rng):
    free, _, _ = _pair()
    X = rng.standard_normal((40, 4))
    y = _labels(free, 40, rng)
    _, g = free.gradient(X, y)
    step = natural_gradient(free, X, g, method=method, damping=1e-2)
    assert step.shape == (free.n_params,) and np.isfinite(step).all()
    pairs = natural_gradient(free, X, free.unflatten(g), method=method, damping=1e-2)
    assert [db is None for _, db in pairs] == [True, False, True]
    if method in ("unit", "full"):  # exact blocks: the damped solve of fisher()'s blocks
        F = fisherkit.fisher(free, X, shape=method)
        np.testing.assert_allclose(step, F.solve(g, damping=1e-2), rtol=1e-8, atol=1e-12)
    if method in ("kfac", "ekfac"):  # dense algebra on the Kronecker matrix (its entries: test_kfac.py)
        D = fisherkit.fisher(free, X, shape=method).to_dense()
        np.testing.assert_allclose(step, np.linalg.solve(D + 1e-2 * np.eye(free.n_params), g), rtol=1e-8,
                                   atol=1e-12)
    with pytest.raises(ValueError, match=r"grads'\[0\]: layer 0 has no bias"):
        natural_gradient(free, X, [(dW, np.zeros(dW.shape[0])) for dW, _ in free.unflatten(g)], method=method,
                         damping=1e-2)


def test_bias_free_npz_round_trip_and_structure(tmp_path, rng):
    free, _, _ = _pair()
    path = tmp_path / "m.npz"
    free.to_npz(path)
    back = fisherkit.MLP.from_npz(path)
    assert [b is None for b in back.biases] == [True, False, True]
    np.testing.assert_array_equal(back.flat_params(), free.flat_params())
    s = fisherkit.block_structure(free, rng.standard_normal((30, 4)))
    assert np.isfinite(s.rms["same_unit"])


# ------------------------------------------------------------------ zeros that were not
@pytest.mark.parametrize("shape", ["full", "layer", "unit", "diag", "trace"])
def test_variance_negative_chunk_is_refused_not_zeros(shape, rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="'chunk'"):
        fisherkit.variance(m, rng.standard_normal((5, 3)), shape=shape, chunk=-1)


def test_exact_variance_validates_inputs_before_its_zeros(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    assert float(np.abs(fisherkit.variance(m, X, estimator="exact").values).max()) == 0.0
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"argument 'X' contains NaN or Inf \(first at \[2, 1\]\)"):
        fisherkit.variance(m, X, estimator="exact")
    bad = m.copy()
    bad._weights[1][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"layers\[1\].weight"):
        fisherkit.variance(bad, X[:2], estimator="exact")


@pytest.mark.parametrize("entry", ["fisher", "kfac", "kfac_error", "fisher_operator", "curvature"])
def test_the_empirical_estimator_without_labels_is_refused_everywhere(entry, rng):
    from fisherkit.natgrad.statistics import curvature
    from fisherkit.operators import fisher_operator
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    calls = {"fisher": lambda: fisherkit.fisher(m, X, estimator="empirical"),
             "kfac": lambda: fisherkit.fisher(m, X, estimator="empirical", shape="kfac"),
             "kfac_error": lambda: fisherkit.kfac_error(m, X, estimator="empirical"),
             "fisher_operator": lambda: fisher_operator(m, X, estimator="empirical"),
             "curvature": lambda: curvature(m, X, method="unit", estimator="empirical")}
    with pytest.raises(ValueError, match=r"the empirical estimator needs labels: pass y"):
        calls[entry]()


# the searches test blocks of 256 values at once and then look inside the block that failed:
# the first bad entry is named wherever it lies, with later ones in its block and beyond
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row, col", [(0, 0), (255, 2), (256, 0), (257, 1), (599, 2)])
def test_the_first_nan_is_named_wherever_it_lies(row, col, dtype, rng):
    m = fisherkit.MLP.init([3, 600, 2], seed=0, dtype=dtype)
    X = rng.standard_normal((600, 3)).astype(dtype)
    for r, c in ((row, col), (row, 2), (row + 1, 0), (row + 300, 1)):
        if r < 600 and (r, c) >= (row, col):
            X[r, c] = np.nan if c % 2 else np.inf
    with pytest.raises(ValueError, match=rf"argument 'X' contains NaN or Inf \(first at \[{row}, {col}\]\)"):
        fisherkit.fisher(m, X, shape="diag")
    bad = m.copy()  # a vector (one value per row of the scan): the bias of 600 units
    for k in (row, row + 1, row + 300):
        if k < 600:
            bad._biases[0][k] = np.nan
    with pytest.raises(ValueError, match=rf"layers\[0\].bias' contains NaN or Inf \(first at \[{row}, 0\]\)"):
        fisherkit.fisher(bad, np.zeros((2, 3), dtype), shape="diag")


@pytest.mark.parametrize("row", [4, 255, 256, 300, 599])
def test_an_overflow_is_named_at_its_first_row_wherever_it_lies(row):
    # as the Poisson test below, over 600 rows: rows `row` and later overflow exp(h)
    m = fisherkit.MLP([(np.eye(4), None), (np.full((2, 4), 180.0), None)], "tanh", "poisson")
    X = np.zeros((600, 4))
    X[row:row + 2] = 10.0
    X[min(row + 290, 599)] = 10.0
    y = np.ones((600, 2))
    for call in (lambda: m.log_likelihood(X, y), lambda: m.per_sample_grads(X, y),
                 lambda: fisherkit.fisher(m, X, shape="diag"), lambda: fisherkit.fisher(m, X, shape="unit")):
        with pytest.raises(ValueError, match=rf"(overflow|not finite).* row {row}\b"):
            call()


# ------------------------------------------------------------------ overflow
@pytest.mark.parametrize("shape", ["diag", "unit", "layer", "full", "kfac", "ekfac"])
def test_a_sum_that_overflows_with_every_row_finite_names_its_rows(shape):
    # one linear float32 layer into a Gaussian head: the weight's Fisher entry sums x^2 = 1e37
    # per row; 16-row chunks reach 3.2e38 after two chunks and overflow float32 in the third
    m = fisherkit.MLP([(np.ones((1, 1)), np.zeros(1))], "identity", "gaussian", dtype=np.float32)
    X = np.full((64, 1), np.float32(np.sqrt(1e37)))
    with pytest.raises(ValueError, match=r"overflows float32 summed over input rows 32 to 47 \(every row alone"):
        fisherkit.fisher(m, X, shape=shape, chunk=16)
    with pytest.raises(ValueError, match=r"overflows float32 summed over input rows 0 to 63"):
        fisherkit.fisher(m, X, shape=shape)
    assert np.isfinite(fisherkit.fisher(m, X[:24], shape=shape, chunk=16).to_dense()).all()


@pytest.mark.parametrize("dtype, h", [(np.float64, 720.0), (np.float32, 100.0)])
def test_poisson_overflow_is_an_error_naming_the_row(dtype, h):
    # tanh(10) ~ 1, so row 4 has h = 720 (float64) or 100 (float32) and exp(h) overflows
    m = fisherkit.MLP([(np.eye(4), None), (np.full((2, 4), h / 4), None)], "tanh", "poisson", dtype=dtype)
    X = np.zeros((6, 4))
    X[4] = 10.0
    y = np.ones((6, 2))
    calls = {
        **{f"fisher {e} {s}": (lambda e=e, s=s: fisherkit.fisher(m, X, y if e == "empirical" else None, estimator=e,
                                                                   shape=s, seed=0))
           for e in ("exact", "score", "hessian", "empirical") for s in SHAPES},
        "per_sample_grads": lambda: m.per_sample_grads(X, y),
        "gradient": lambda: m.gradient(X, y),
        "log_likelihood": lambda: m.log_likelihood(X, y),
        "fisher_vector_product": lambda: fisherkit.fisher_vector_product(m, X, np.ones(m.n_params)),
        **{f"variance score {s}": (lambda s=s: fisherkit.variance(m, X, estimator="score", shape=s))
           for s in ("diag", "unit")},
        "natural_gradient": lambda: natural_gradient(m, X, np.ones(m.n_params), method="unit", damping=1e-3),
        "natural_gradient bpm": lambda: natural_gradient(m, X, np.ones(m.n_params), method="unit", damping=1e-3,
                                                         estimator="bpm"),
        "heads.mean": lambda: fisherkit.heads.mean("poisson", np.full((3, 2), h, dtype)),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"(overflow|not finite).*(row 4|row of H 0|row 0)") as info:
            call()
        assert "row" in str(info.value) and ("float32" in str(info.value)) == (dtype == np.float32), name
    for shape in ("diag", "unit"):  # phi''(10) rounds to 0 in float32: an error or a finite result
        try:
            V = fisherkit.variance(m, X, estimator="hessian", shape=shape)
        except ValueError as exc:
            assert "input row 4" in str(exc)
        else:
            assert np.isfinite(V.to_dense()).all()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("shape", SHAPES)
def test_huge_finite_inputs_raise_instead_of_inf(head, shape, rng):
    m = fisherkit.MLP.init([3, 5, 2], "relu", head, seed=1)
    X = rng.standard_normal((8, 3))
    X[5] *= 1e200
    # an error naming row 5, or a finite result (a saturated head's rows contribute exact zeros)
    for call in (lambda: fisherkit.fisher(m, X, shape=shape), lambda: fisherkit.fisher(m, X, shape=shape,
                                                                                       estimator="score", seed=1),
                 lambda: fisherkit.variance(m, X, shape="diag" if shape in ("full", "layer") else shape)):
        try:
            F = call()
        except ValueError as exc:
            assert re.search(r"overflows float64 at input row 5|not finite at input row 5", str(exc)), str(exc)
        else:
            assert np.isfinite(F.to_dense()).all()
    if head == "gaussian":  # its pseudo-outputs never vanish: the 1e400 products must be caught
        with pytest.raises(ValueError, match="overflows float64 at input row 5"):
            fisherkit.fisher(m, X, shape=shape)


def test_float32_result_beyond_range_is_an_error():
    m = fisherkit.MLP([(np.eye(2), None), (np.eye(2), None)], "identity", "gaussian", dtype=np.float32)
    X = np.full((3, 2), 3e19, np.float32)  # x^2 = 9e38 > float32 max after the float64 sum
    with pytest.raises(ValueError, match="float32"):
        fisherkit.fisher(m, X, shape="diag")


# ------------------------------------------------------------------ one coercion rule
BAD_INTS = [(2.5, TypeError), (True, TypeError), ("2", TypeError), (np.float64(3.0), TypeError), (None, TypeError)]


@pytest.mark.parametrize("value, exc", BAD_INTS[:4] + [(-1, ValueError), (2**64 + 5, ValueError)])
def test_seed_is_an_integer_in_range_everywhere(value, exc, rng):  # (None is "fresh entropy")
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    _, g = m.gradient(X, rng.integers(0, 2, 5))
    calls = [lambda: fisherkit.fisher(m, X, estimator="score", seed=value),
             lambda: fisherkit.heads.sample("categorical", X[:, :2], seed=value),
             lambda: natural_gradient(m, X, g, method="unit", damping=1e-3, estimator="score", seed=value),
             lambda: fisherkit.monte_carlo_variance(m, X, replicates=2, seed=value),
             lambda: fisherkit.MLP.init([3, 2], seed=value)]
    for call in calls:
        with pytest.raises(exc, match="'seed'"):
            call()


def test_seed_two_to_the_64_plus_5_is_not_seed_5(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="'seed' must be <= 18446744073709551615"):
        fisherkit.fisher(m, X, estimator="score", seed=2**64 + 5)
    a = fisherkit.fisher(m, X, estimator="score", seed=np.uint64(2**64 - 1)).values
    assert np.isfinite(a).all()


@pytest.mark.parametrize("value, exc", BAD_INTS[:4] + [(0, ValueError), (-3, ValueError)])
def test_samples_chunk_index_offset_sizes(value, exc, rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    checks = [("samples", lambda: fisherkit.fisher(m, X, estimator="score", samples=value)),
              ("samples", lambda: fisherkit.heads.sample("categorical", X[:, :2], samples=value)),
              ("samples", lambda: fisherkit.variance(m, X, samples=value)),
              ("sizes", lambda: fisherkit.MLP.init([3, value, 2]))]
    if value != 0:
        checks += [("chunk", lambda: fisherkit.fisher(m, X, chunk=value)),
                   ("chunk", lambda: fisherkit.variance(m, X, shape="full", chunk=value)),
                   ("chunk", lambda: m.per_sample_grads(X, np.zeros(5, int), chunk=value)),
                   ("chunk", lambda: fisherkit.fisher_vector_product(m, X, np.ones(m.n_params), chunk=value)),
                   ("index_offset", lambda: fisherkit.fisher(m, X, index_offset=value))]
    for name, call in checks:
        with pytest.raises(exc, match=f"'{name}'"):
            call()
    with pytest.raises(ValueError, match="'index_offset' must be <= "):
        fisherkit.fisher(m, X, index_offset=2**63)


@pytest.mark.parametrize("value, exc", [(-1, ValueError), (2.5, TypeError), ("big", TypeError), (True, TypeError)])
def test_max_bytes_must_be_a_byte_count(value, exc, rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    y = np.zeros(5, int)
    for call in (lambda: fisherkit.fisher(m, X, max_bytes=value),
                 lambda: fisherkit.variance(m, X, max_bytes=value),
                 lambda: m.per_sample_grads(X, y, max_bytes=value),
                 lambda: m.jacobian(X, max_bytes=value),
                 lambda: fisherkit.fisher(m, X, shape="unit").to_dense(max_bytes=value)):
        with pytest.raises(exc, match="'max_bytes'"):
            call()


def test_complex_and_nan_directions_and_gradients(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    v = np.ones(m.n_params) * (1 + 1j)
    with pytest.raises(TypeError, match="'v' must be real"):
        fisherkit.fisher_vector_product(m, X, v)
    with pytest.raises(TypeError, match="'v' must be real"):
        m.jvp(X, v)
    with pytest.raises(TypeError, match="'grads' must be real"):
        natural_gradient(m, X, v, method="unit", damping=1e-3)
    g = np.ones(m.n_params)
    g[3] = np.nan
    with pytest.raises(ValueError, match="'grads' contains NaN"):
        natural_gradient(m, X, g, method="diag", damping=1e-3)
    with pytest.raises(ValueError, match="argument 'v' contains NaN"):
        fisherkit.fisher_vector_product(m, X, g)


def test_labels_given_to_an_estimator_that_ignores_them_warn(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    y = rng.integers(0, 2, 5)
    for est in ("exact", "score", "hessian"):
        with pytest.warns(UserWarning, match=f"argument 'y' is ignored: estimator='{est}'"):
            fisherkit.fisher(m, X, y, estimator=est, seed=0)
    _, g = m.gradient(X, y)
    with pytest.warns(UserWarning, match="argument 'y' is ignored"):
        natural_gradient(m, X, g, method="unit", damping=1e-3, y=y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fisherkit.fisher(m, X, y, estimator="empirical")


def test_n_layers_of_a_model_file_must_be_an_integer(tmp_path):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    m.to_npz(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        arrays = dict(z)
    arrays["n_layers"] = np.array(2.7)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="'n_layers' must be one integer"):
        fisherkit.MLP.from_npz(tmp_path / "bad.npz")


# ------------------------------------------------------------------ buffers
def _misaligned(a: np.ndarray) -> np.ndarray:
    buf = bytearray(a.nbytes + 1)
    out = np.frombuffer(buf, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def test_misaligned_inputs_are_copied_once_and_give_the_same_result(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((6, 3))
    y = rng.integers(0, 2, 6).astype(float)
    Xm, ym = _misaligned(X), _misaligned(y)
    np.testing.assert_array_equal(fisherkit.fisher(m, Xm).values, fisherkit.fisher(m, X).values)
    np.testing.assert_array_equal(m.per_sample_grads(Xm, ym), m.per_sample_grads(X, y))
    v = rng.standard_normal(m.n_params)
    np.testing.assert_array_equal(fisherkit.fisher_vector_product(m, X, _misaligned(v)),
                                  fisherkit.fisher_vector_product(m, X, v))
    mm = fisherkit.MLP([(_misaligned(W), _misaligned(b)) for W, b in m.layers], m.activations, m.head)
    np.testing.assert_array_equal(mm.forward(X), m.forward(X))


def test_narrowing_to_float32_names_the_overflow_not_a_nan(rng):
    """Finite float64 inputs beyond float32's range become inf when converted for a float32
    model: the error says so, rather than reporting NaN or Inf the caller never passed."""
    m = fisherkit.MLP.init([3, 4, 2], seed=0, dtype=np.float32)
    X = rng.standard_normal((4, 3))
    X[2, 1] = 1e300
    for call in (lambda: fisherkit.fisher(m, X), lambda: m.forward(X),
                 lambda: m.per_sample_grads(X, np.zeros(4, int))):
        with pytest.raises(ValueError, match="argument 'X' has finite values beyond the range of float32"):
            call()
    with pytest.raises(ValueError, match="argument 'X' contains NaN or Inf"):  # a real inf stays that error
        X[2, 1] = np.inf
        m.forward(X)


def test_the_compiled_boundary_refuses_misaligned_arrays(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    Xm = _misaligned(rng.standard_normal((6, 3)))
    out = np.empty((6, 2))
    with pytest.raises(ValueError, match="argument 'X' is not aligned"):
        fisherkit._core.forward(*m._core_args(), Xm, out, 0)


def test_out_buffers_are_checked(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((6, 3))
    y = rng.integers(0, 2, 6)
    shape = (6, m.n_params)
    with pytest.raises(TypeError, match="argument 'out' must be a numpy array"):
        m.per_sample_grads(X, y, out=np.zeros(shape).tolist())
    ro = np.zeros(shape)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="argument 'out' is read-only"):
        m.per_sample_grads(X, y, out=ro)
    with pytest.raises(ValueError, match="argument 'out' is not aligned"):
        m.per_sample_grads(X, y, out=_misaligned(np.zeros(shape)))
    with pytest.raises(ValueError, match="argument 'out' must be a C-contiguous float64"):
        m.jacobian(X, out=np.zeros((6, 2, m.n_params), np.float32))


# ------------------------------------------------------------------ errors that help
def test_errors_name_the_argument(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    y = rng.integers(0, 2, 5)
    _, g = m.gradient(X, y)
    with pytest.raises(TypeError, match="argument 'damping' must be a real number"):
        fisherkit.fisher(m, X, shape="full").solve(g, damping="x")
    Xn = X.copy()
    Xn[1, 2] = np.nan
    for call in (lambda: natural_gradient(m, Xn, g, method="unit-meanfield", damping=1e-3),
                 lambda: fisherkit.variance(m, Xn, shape="full")):
        with pytest.raises(ValueError, match=r"argument 'X' contains NaN"):
            call()
    F = fisherkit.fisher(m, X[:1], shape="full")
    with pytest.raises(ValueError, match="not positive definite.*pass damping > 0"):
        F.solve(g)  # singular: a ValueError saying what to do, not numpy's LinAlgError


def test_huge_weights_in_meanfield_are_named_or_finite(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((20, 3))
    _, g = m.gradient(X, rng.integers(0, 2, 20))
    for layer in (0, 1):
        big = m.copy()
        big._weights[layer][...] *= 1e150
        try:
            step = natural_gradient(big, X, g, method="unit-meanfield", damping=1e-3)
        except ValueError as exc:
            assert "'s'" not in str(exc) and ("layer" in str(exc) or "overflow" in str(exc)), str(exc)
        else:
            assert np.isfinite(step).all()


def test_sample_workspace_passes_the_memory_budget(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="'samples' must be <="):
        fisherkit.fisher(m, X, estimator="score", samples=10**12)
    with pytest.raises(MemoryError, match=r"needs [\d.]+ GiB.*fewer samples"):
        fisherkit.fisher(m, X, estimator="score", samples=2**31 - 1, max_bytes=2**30)


def test_memory_errors_check_before_allocating_and_suggest_something_else(rng):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    X = rng.standard_normal((5, 3))
    with pytest.raises(MemoryError) as info:
        fisherkit.fisher(m, X, shape="diag", max_bytes=16)
    assert "shape='diag'" not in str(info.value)
    with pytest.raises(MemoryError, match="'full' variance"):
        fisherkit.variance(m, X, estimator="exact", shape="full", max_bytes=16)
    U = fisherkit.fisher(m, X, shape="unit")
    with pytest.raises(MemoryError, match=r"to_dense\(\) of 26 parameters"):
        U.to_dense(max_bytes=100)
    assert U.to_dense().shape == (26, 26)


def test_from_npz_refuses_bad_files_and_reads_other_byte_orders(tmp_path):
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    good = tmp_path / "m.npz"
    m.to_npz(good)
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="trunc.npz.*(not a readable|truncated)"):
        fisherkit.MLP.from_npz(tmp_path / "trunc.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    with pytest.raises(ValueError, match="entry 'n_layers' is missing.*weights"):
        fisherkit.MLP.from_npz(tmp_path / "foreign.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        fisherkit.MLP.from_npz(tmp_path / "text.npz")
    with np.load(good) as z:
        arrays = dict(z)
    del arrays["head"]
    np.savez(tmp_path / "nohead.npz", **arrays)
    with pytest.raises(ValueError, match="entry 'head' is missing"):
        fisherkit.MLP.from_npz(tmp_path / "nohead.npz")
    for kind, want in ((">f8", np.float64), ("<f2", np.float64), (">f4", np.float32)):
        with np.load(good) as z:
            arrays = {k: (z[k].astype(kind) if k[0] in "Wb" and k != "bias" else z[k]) for k in z.files}
        np.savez(tmp_path / "o.npz", **arrays)
        back = fisherkit.MLP.from_npz(tmp_path / "o.npz")
        assert back.dtype == want
        np.testing.assert_allclose(back.flat_params(), m.flat_params(), rtol=1e-3 if kind == "<f2" else 1e-7)


def test_device_strings():
    m = fisherkit.MLP.init([3, 4, 2], seed=0)
    assert m.to("cpu").device == "cpu" and m.to("CPU").device == "cpu"
    for bad in ("cuda:x", "tpu", "cuda:-1", 3):
        with pytest.raises(ValueError, match="argument 'device'"):
            m.to(bad)
    if importlib.util.find_spec("cupy") is None:
        for ok in ("cuda", "cuda:0", "gpu"):
            with pytest.raises(RuntimeError, match="needs CuPy"):
                m.to(ok)


def test_cli_version_and_unknown_environment(capsys):
    from fisherkit import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fisherkit {fisherkit.__version__}"
    pytest.importorskip("gymnasium")
    assert cli.main(["rl", "--env", "NoSuchEnv-v0", "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert "unknown Gymnasium environment 'NoSuchEnv-v0'" in err and "Traceback" not in err


def test_rl_progress_bar_stops_at_the_requested_steps():
    from fisherkit.rl.cli import _Progress

    s = io.StringIO()
    _Progress(s)({"step": 512, "steps": 100, "episodes": 3, "mean_return": 1.0, "elapsed": 0.1})
    assert "100/100 steps" in s.getvalue() and "512" not in s.getvalue()


def test_demo_digits_without_scikit_learn_is_a_message(capsys, monkeypatch):
    import builtins

    from fisherkit import cli

    real = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    assert cli.main(["demo", "--data", "digits", "--quick", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "scikit-learn" in err and "Traceback" not in err


# ------------------------------------------------------------------ long calls
@pytest.mark.parametrize("call", ["fisher", "variance", "natural_gradient", "per_sample_grads"])
def test_progress_is_reported(call, rng):
    m = fisherkit.MLP.init([5, 8, 3], seed=0)
    X = rng.standard_normal((300, 5))
    y = rng.integers(0, 3, 300)
    seen = []

    def cb(done, total):
        seen.append((done, total))

    if call == "fisher":
        fisherkit.fisher(m, X, shape="unit", chunk=20, progress=cb)
    elif call == "variance":
        fisherkit.variance(m, X, shape="unit", chunk=20, progress=cb)
    elif call == "natural_gradient":
        natural_gradient(m, X, m.gradient(X, y)[1], method="unit", damping=1e-3, progress=cb)
    else:
        m.per_sample_grads(X, y, chunk=20, progress=cb)
    assert seen and seen[-1] == (300, 300) and all(t == 300 for _, t in seen)


_INTERRUPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import numpy as np
    import fisherkit
    from fisherkit.natgrad import natural_gradient

    which = sys.argv[1]
    m = fisherkit.MLP.init([784, 256, 10], seed=0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1 << 16)

    def run(n):
        X = rng.standard_normal((n, 784))
        if which == "fisher":
            fisherkit.fisher(m, X, shape="unit")
        elif which == "variance":
            fisherkit.variance(m, X, shape="unit")
        elif which == "natural_gradient":
            natural_gradient(m, X, np.zeros(m.n_params), method="unit", damping=1e-3)
        else:
            m.per_sample_grads(X, y[:n], max_bytes=1 << 34)

    # a call of about 4 s or more, except per-sample gradients, whose time is their output's
    # stores: at most 4 GiB of them (CI machines have 24 GiB), interrupted a quarter of the way
    # through a warm call (the call itself writes a fresh output, which takes longer)
    pn = 1024 if which == "per_sample_grads" else 64
    pilot = float("inf")
    for _ in range(2):  # the faster of two pilots (the first pays for warming up)
        t0 = time.perf_counter(); run(pn); pilot = min(pilot, (time.perf_counter() - t0) / pn)
    n = int(min(1 << 16, max(256, 4.0 / max(pilot, 1e-9))))
    if which == "per_sample_grads":
        n = min(n, (4 << 30) // (8 * m.n_params))
    delay = min(1.0, 0.25 * n * pilot)
    sent = []
    threading.Timer(delay, lambda: (sent.append(time.perf_counter()), os.kill(os.getpid(), signal.SIGINT))).start()
    t0 = time.perf_counter()
    try:
        run(n)
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - sent[0], time.perf_counter() - t0)
    else:
        print("finished", time.perf_counter() - t0)
""")


@pytest.mark.parametrize("call", ["fisher", "variance", "natural_gradient", "per_sample_grads"])
def test_ctrl_c_interrupts_a_long_call_within_half_a_second(call):
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT, call], capture_output=True, text=True, timeout=300,
                          preexec_fn=sigint_as_at_a_terminal)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[0] == "interrupted", proc.stdout
    latency, elapsed = float(words[1]), float(words[2])
    assert latency < 0.5, f"{call}: KeyboardInterrupt {latency:.2f} s after SIGINT ({elapsed:.2f} s into the call)"


def test_report_of_a_bias_free_model(tmp_path, rng):
    pytest.importorskip("matplotlib")
    m = fisherkit.MLP.init([5, 8, 3], seed=0, bias=[False, True])
    X = rng.standard_normal((120, 5))
    y = rng.integers(0, 3, 120)
    fisherkit.report(m, X, y, out=tmp_path / "rep", max_seconds=8, quiet=True)
    with np.load(tmp_path / "rep" / "results.npz") as z:
        assert int(z["model/layer_params"].sum()) == m.n_params == 5 * 8 + 8 * 3 + 3
