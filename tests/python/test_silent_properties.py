"""Property-based: every public function driven with wrong types, non-integral numbers,
booleans, strings, misaligned and read-only buffers and overflowing values answers with the
documented exception naming the argument, or a finite result (issue 12)."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

hyp = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fisherkit  # noqa: E402
from fisherkit import natgrad  # noqa: E402

MODEL = fisherkit.MLP.init([3, 4, 2], "tanh", "categorical", seed=0, bias_std=0.1)
RNG = np.random.default_rng(5)
X = RNG.standard_normal((6, 3))
Y = RNG.integers(0, 2, 6)
G = MODEL.gradient(X, Y)[1]

# (name, call taking the value, kinds of value it is documented to take)
INTEGER_ARGS = {
    "samples": [lambda v: fisherkit.fisher(MODEL, X, estimator="score", samples=v, seed=0),
                lambda v: fisherkit.variance(MODEL, X, samples=v),
                lambda v: fisherkit.heads.sample("categorical", X[:, :2], samples=v),
                lambda v: natgrad.natural_gradient(MODEL, X, G, method="unit", damping=1e-3, estimator="score",
                                                   samples=v, seed=0),
                lambda v: fisherkit.monte_carlo_variance(MODEL, X, samples=v, replicates=2),
                lambda v: fisherkit.recommend(MODEL, X, samples=v)],
    "seed": [lambda v: fisherkit.fisher(MODEL, X, estimator="score", seed=v),
             lambda v: fisherkit.heads.sample("categorical", X[:, :2], seed=v),
             lambda v: natgrad.curvature(MODEL, X, method="unit", estimator="score", seed=v),
             lambda v: fisherkit.monte_carlo_variance(MODEL, X, replicates=2, seed=v),
             lambda v: fisherkit.MLP.init([3, 2], seed=v)],
    "chunk": [lambda v: fisherkit.fisher(MODEL, X, chunk=v),
              lambda v: fisherkit.fisher(MODEL, X, shape="full", chunk=v),
              lambda v: fisherkit.variance(MODEL, X, shape="layer", chunk=v),
              lambda v: fisherkit.variance(MODEL, X, shape="trace", chunk=v),
              lambda v: fisherkit.fisher_vector_product(MODEL, X, G, chunk=v),
              lambda v: MODEL.forward(X, chunk=v),
              lambda v: MODEL.per_sample_grads(X, Y, chunk=v),
              lambda v: MODEL.jacobian(X, chunk=v),
              lambda v: MODEL.gradient(X, Y, chunk=v)],
    "index_offset": [lambda v: fisherkit.fisher(MODEL, X, estimator="score", seed=0, index_offset=v)],
    "max_bytes": [lambda v: fisherkit.fisher(MODEL, X, max_bytes=v),
                  lambda v: fisherkit.variance(MODEL, X, shape="full", max_bytes=v),
                  lambda v: MODEL.per_sample_grads(X, Y, max_bytes=v)],
    "sizes": [lambda v: fisherkit.MLP.init([3, v, 2])],
}
REAL_ARGS = {
    "damping": [lambda v: natgrad.natural_gradient(MODEL, X, G, method="unit", damping=v),
                lambda v: fisherkit.fisher(MODEL, X, shape="unit").solve(G, damping=v)],
    "sigma": [lambda v: fisherkit.heads.mean("gaussian", X, sigma=v),
              lambda v: fisherkit.MLP.init([3, 2], head="gaussian", sigma=v)],
}

# floats are refused even when integral (2.0): a count is an integer, not a rounded number
not_integers = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.just(np.float64(2.0)),
    st.just(np.bool_(True)),
    st.just(b"3"),
    st.lists(st.integers(0, 3), max_size=2),
)
out_of_range = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64))
not_reals = st.one_of(st.booleans(), st.text(max_size=4), st.just(b"1"), st.just(1 + 2j), st.just([1.0]))


def _names(exc: BaseException, name: str) -> bool:
    return f"'{name}'" in str(exc)


def _refused(table: dict, name: str, data: Any, values: Any, exc: type) -> None:
    """A call of `table[name]` with a value drawn from `values` raises `exc` naming `name`."""
    call = data.draw(st.sampled_from(table[name]))
    value = data.draw(values)
    with pytest.raises(exc) as info:
        call(value)
    assert _names(info.value, name), str(info.value)


@settings(max_examples=40)
@given(st.sampled_from(sorted(INTEGER_ARGS)), st.data())
def test_integer_arguments_take_integers_only(name, data):
    _refused(INTEGER_ARGS, name, data, not_integers, TypeError)


@settings(max_examples=40)
@given(st.sampled_from(sorted(INTEGER_ARGS)), st.data())
def test_integer_arguments_out_of_range_are_value_errors(name, data):
    call = data.draw(st.sampled_from(INTEGER_ARGS[name]))
    value = data.draw(out_of_range)
    if name == "max_bytes" and value > 0:
        return  # any budget >= 0 is one
    try:
        call(value)
    except ValueError as exc:
        assert _names(exc, name), str(exc)
    else:
        pytest.fail(f"{name}={value!r} was accepted")


@settings(max_examples=30)
@given(st.sampled_from(sorted(REAL_ARGS)), st.data())
def test_real_arguments_take_real_numbers_only(name, data):
    _refused(REAL_ARGS, name, data, not_reals, TypeError)


@settings(max_examples=30)
@given(st.sampled_from(sorted(REAL_ARGS)), st.data())
def test_real_arguments_non_finite_or_negative_are_value_errors(name, data):
    _refused(REAL_ARGS, name, data, st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, -1e-300]),
             ValueError)


def _buffer(a: np.ndarray, how: str) -> np.ndarray:
    if how == "misaligned":
        raw = bytearray(a.nbytes + 1)
        out = np.frombuffer(raw, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
        out[...] = a
        return out
    if how == "readonly":
        out = a.copy()
        out.setflags(write=False)
        return out
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "strided":
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    return a.astype(">f8") if how == "bigendian" else a


ARRAY_CALLS = {
    "fisher diag": lambda Xb, yb, v: fisherkit.fisher(MODEL, Xb).values,
    "fisher unit": lambda Xb, yb, v: fisherkit.fisher(MODEL, Xb, shape="unit").to_dense(),
    "fisher empirical": lambda Xb, yb, v: fisherkit.fisher(MODEL, Xb, yb, estimator="empirical", shape="full").to_dense(),
    "variance": lambda Xb, yb, v: fisherkit.variance(MODEL, Xb, shape="unit").to_dense(),
    "fvp": lambda Xb, yb, v: fisherkit.fisher_vector_product(MODEL, Xb, v),
    "jvp": lambda Xb, yb, v: MODEL.jvp(Xb, v),
    "per_sample_grads": lambda Xb, yb, v: MODEL.per_sample_grads(Xb, yb),
    "natural_gradient": lambda Xb, yb, v: natgrad.natural_gradient(MODEL, Xb, v, method="unit-correlated",
                                                                   damping=1e-2),
    "log_likelihood": lambda Xb, yb, v: MODEL.log_likelihood(Xb, yb),
    "heads.covariance": lambda Xb, yb, v: fisherkit.heads.covariance("bernoulli", Xb),
}


@settings(max_examples=60)
@given(st.sampled_from(sorted(ARRAY_CALLS)), st.sampled_from(["misaligned", "readonly", "fortran", "strided",
                                                             "bigendian"]), st.data())
def test_any_buffer_layout_gives_the_same_answer(call, how, data):
    f = ARRAY_CALLS[call]
    want = f(X, Y.astype(float), G)
    yb = Y.astype(float)
    got = f(_buffer(X, how), _buffer(yb, how) if how != "bigendian" else yb, _buffer(G, how))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@settings(max_examples=60)
@given(st.sampled_from(sorted(ARRAY_CALLS)), st.floats(min_value=1e150, max_value=1e300),
       st.integers(0, 5), st.sampled_from([1.0, -1.0]))
def test_overflowing_inputs_raise_naming_the_row_or_stay_finite(call, big, row, sign):
    Xb = X.copy()
    Xb[row] *= sign * big
    f = ARRAY_CALLS[call]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own arithmetic in a reference
        try:
            out = f(Xb, Y.astype(float), G)
        except ValueError as exc:
            text = str(exc)
            assert f"row {row}" in text or "overflow" in text or "not finite" in text or "'X'" in text, text
        else:
            assert np.isfinite(np.asarray(out)).all(), call


@settings(max_examples=40)
@given(st.sampled_from(["v", "grads"]), st.sampled_from(["complex", "nan", "inf", "string", "object"]))
def test_directions_and_gradients_must_be_real_and_finite(which, bad):
    v = G.astype(complex) * 1j if bad == "complex" else G.copy()
    if bad == "nan":
        v[1] = np.nan
    elif bad == "inf":
        v[2] = -np.inf
    elif bad == "string":
        v = v.astype(str)
    elif bad == "object":
        v = v.astype(object)
    call = ((lambda: fisherkit.fisher_vector_product(MODEL, X, v)) if which == "v"
            else (lambda: natgrad.natural_gradient(MODEL, X, v, method="diag", damping=1e-3)))
    expected = ValueError if bad in ("nan", "inf") else TypeError
    with pytest.raises(expected) as info:
        call()
    assert _names(info.value, which), str(info.value)
