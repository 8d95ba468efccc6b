"""The softmax kernel for short rows agrees with NumPy's softmax (its twin), and the layers take it only where it
applies (tinynn.kernels.softmax)."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from spies import count_calls

import tinynn
from tinynn import activations, config
from tinynn import layers as L
from tinynn.kernels import softmax as K

# Each row's sum is added left to right here, pairwise in NumPy: a few units in the last place, relative to the
# row's largest output (≤ 1).
TOL = {"float64": 1e-14, "float32": 1e-6}


@given(
    lead=st.lists(st.integers(0, 5), min_size=0, max_size=2),
    n=st.integers(1, K.MAX_ROW),
    dtype=st.sampled_from(["float64", "float32"]),
    scale=st.sampled_from([1e-3, 3.0, 80.0]),
    special=st.sampled_from(["none", "ties", "nan", "-inf row", "inf"]),
    seed=st.integers(0, 2**16),
)
@example(lead=[3], n=K.MAX_ROW, dtype="float32", scale=3.0, special="ties", seed=1)  # the longest rows taken
@example(lead=[0, 4], n=5, dtype="float64", scale=3.0, special="none", seed=0)  # no rows at all
def test_the_kernel_matches_numpy_softmax(lead, n, dtype, scale, special, seed):
    rng = np.random.default_rng(seed)
    z = (scale * rng.normal(size=(*lead, n))).astype(dtype)
    rows = z.reshape(-1, n)
    if rows.shape[0]:
        if special == "ties":  # equal maxima and equal entries
            rows[0, :] = np.round(rows[0, :])
            rows[0, -1] = rows[0, 0] = rows[0].max()
        elif special == "nan":
            rows[0, rng.integers(n)] = np.nan
        elif special == "-inf row":
            rows[0, :] = -np.inf
        elif special == "inf":
            rows[0, rng.integers(n)] = np.inf
    before = z.copy()

    y = K.softmax(z)
    with np.errstate(invalid="ignore"):  # (-inf - -inf: NaN, in both)
        y_ref = activations.softmax(z.copy())

    assert y.dtype == z.dtype and y.shape == z.shape
    assert np.array_equal(z, before, equal_nan=True)  # the input is never written
    assert np.array_equal(np.isnan(y), np.isnan(y_ref))
    finite = ~np.isnan(y_ref)
    assert np.max(np.abs(y - y_ref)[finite], initial=0.0) <= TOL[dtype]
    assert np.array_equal(K.softmax(np.asfortranarray(z)), y, equal_nan=True)


def test_the_kernel_refuses_what_it_cannot_take():
    for bad in (np.zeros((2, 3), np.int64), np.zeros((2, 0), np.float32), np.float32(1.0)):
        with pytest.raises(ValueError, match="softmax kernel"):
            K.softmax(np.asarray(bad))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_and_activation_take_the_kernel_for_short_rows_only(monkeypatch, dtype):
    calls = count_calls(monkeypatch, K, "_softmax_rows")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(dtype)
    short = tinynn.Sequential([L.Input((8,)), L.Dense(10, activation="softmax", dtype=dtype),
                               L.Dense(12), L.Activation("softmax", dtype=dtype)])  # fmt: skip
    y = short.predict_on_batch(x)
    assert len(calls) == 2
    with config.kernels("reference"):
        y_ref = short.predict_on_batch(x)
    assert len(calls) == 2  # the reference mode runs NumPy's
    assert np.max(np.abs(y - y_ref)) <= TOL[dtype]

    long = tinynn.Sequential([L.Input((8,)), L.Dense(K.MAX_ROW + 1, activation="softmax", dtype=dtype),
                              L.Dense(12, activation="relu", dtype=dtype)])  # fmt: skip
    long.predict_on_batch(x)
    assert len(calls) == 2  # rows past MAX_ROW, and other activations, keep NumPy's
