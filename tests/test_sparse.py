"""tinynn.sparse: IndexedSlices densify by an in-order scatter-add, square per occurrence, and update variables
one occurrence at a time, as TF's sparse ops do for Keras's optimizers."""

import itertools

import numpy as np
import pytest

from tinynn import config, optimizers
from tinynn.sparse import IndexedSlices, assign_add, assign_sub, densify, divide, scale, square


def test_dense_form_sums_duplicates_and_square_is_per_occurrence():
    values = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    g = IndexedSlices(values, [2, 0, 2], (4, 2))
    assert np.array_equal(np.asarray(g), [[3, -1], [0, 0], [1.5, 2.5], [0, 0]])
    assert np.array_equal(densify(square(g)), [[9, 1], [0, 0], [1.25, 4.25], [0, 0]])
    assert np.array_equal(square(np.asarray(g)), np.square(np.asarray(g)))
    assert np.array_equal(densify(scale(2.0, g)), 2 * np.asarray(g))
    d = np.array([[1.0, 2.0], [4.0, 4.0], [2.0, 0.5], [8.0, 8.0]])
    assert np.array_equal(divide(g, d).values, values / d[[2, 0, 2]])  # each occurrence by its own row


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_assign_sub_applies_one_occurrence_at_a_time(mode):
    """1 - 2⁻²⁵ rounds back to 1 in float32 (a tie, to even): three occurrences applied one at a time leave
    the row at 1, while subtracting their sum (1.5·2⁻²⁴) would move it. TF's scatter_sub gives 1."""
    tiny = np.float32(2.0**-25)
    g = IndexedSlices(np.full((3, 2), tiny, np.float32), [1, 1, 1], (3, 2))
    w = np.ones((3, 2), np.float32)
    with config.kernels(mode):
        assign_sub(w, g)
    assert np.array_equal(w, np.ones((3, 2), np.float32))
    summed = np.ones((3, 2), np.float32)
    summed -= np.asarray(g)
    assert not np.array_equal(summed[1], w[1])
    with config.kernels(mode):
        assign_add(w, g)  # 1 + 2⁻²⁵ also rounds to 1
        assert np.array_equal(w, np.ones((3, 2), np.float32))
        dense = np.ones((3, 2), np.float32)
        assign_sub(dense, np.full((3, 2), tiny, np.float32))
        assert np.array_equal(dense, np.ones((3, 2), np.float32) - tiny)


def test_fast_and_reference_scatter_agree_bitwise():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 5, 400)
    idx[::3] = 0
    values = (rng.normal(size=(400, 3)) * 10.0 ** rng.integers(-8, 0, (400, 1))).astype(np.float32)
    g = IndexedSlices(values, idx, (5, 3))
    out = {}
    for mode in ("fast", "reference"):
        w = rng.normal(size=(5, 3)).astype(np.float32) if mode == "fast" else out["w0"]
        out["w0"] = w.copy()
        with config.kernels(mode):
            assign_sub(w, g)
        out[mode] = w
    assert np.array_equal(out["fast"], out["reference"])


@pytest.mark.parametrize("chain", [False, True])
def test_the_scatter_runs_the_numpy_twin_while_its_kernel_is_not_ready(monkeypatch, chain):
    """In the background compile mode a kernel still compiling is not waited for: the twin gives the same bits."""
    from tinynn.kernels import embedding as fast_embedding
    from tinynn.kernels import sparse as fast_sparse

    rng = np.random.default_rng(1)
    idx = rng.integers(0, 6, 300)
    g = IndexedSlices(rng.normal(size=(300, 4)).astype(np.float32), idx, (6, 4))
    w0 = rng.normal(size=(6, 4)).astype(np.float32)

    def step(w):
        return assign_sub(w, scale(square(g), np.float32(0.5))) if chain else assign_add(w, g)

    expected = step(w0.copy())  # the kernels (the suite runs in "wait" mode: always ready)
    kernel = fast_sparse if chain else fast_embedding
    asked = []
    monkeypatch.setattr(kernel, "ready", lambda w: asked.append(w.shape) or False)
    monkeypatch.setattr(fast_sparse, "scatter_chain", lambda *a, **k: pytest.fail("kernel called"))
    monkeypatch.setattr(fast_embedding, "scatter_add", lambda *a, **k: pytest.fail("kernel called"))
    assert np.array_equal(step(w0.copy()), expected) and asked == [(6, 4)]


def test_rmsprop_accumulates_per_occurrence_squares_for_slices():
    values = np.array([[1.0, 2.0], [3.0, -1.0]])
    w = np.zeros((3, 2))
    opt = optimizers.RMSprop(learning_rate=0.125, rho=0.9)  # exact in float32 (floatx of η)
    opt.apply([IndexedSlices(values, [1, 1], (3, 2))], [w])
    v = opt.get_state()["velocity_0"]
    assert np.allclose(v[1], 0.1 * (values**2).sum(0))  # Σ g², not (Σ g)² = [16, 1]
    # each occurrence takes its own step η·g_n / sqrt(v + ε)
    step = (0.125 * values / np.sqrt(v[1] + 1e-7)).sum(0)
    np.testing.assert_allclose(w[1], -step, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_chain_kernel_equals_its_numpy_twin_bitwise(dtype):
    """Every combination of the chain's ops (square, scale, divide, negate), many repeats of one id."""
    from tinynn.kernels import sparse as fast
    from tinynn.kernels.reference import sparse as reference

    rng = np.random.default_rng(3)
    idx = rng.integers(0, 7, 500)
    idx[::2] = 0
    v = (rng.normal(size=(500, 3)) * 10.0 ** rng.integers(-6, 1, (500, 1))).astype(dtype)
    D = (rng.random((7, 3)) + 0.5).astype(dtype)
    w = rng.normal(size=(7, 3)).astype(dtype)
    for squared, scaled, divided, negate in itertools.product([False, True], repeat=4):
        args = (squared, dtype(0.1) if scaled else None, D if divided else None, negate)
        out_fast = fast.scatter_chain(w.copy(), idx, v, *args)
        out_ref = reference.scatter_chain(w.copy(), idx, v, *args)
        assert np.array_equal(out_fast, out_ref), args
    D0 = D.copy()
    D0[0, 1] = 0.0  # IEEE division in both (numba's "numpy" error model): ±inf or NaN, no raise
    with np.errstate(divide="ignore", invalid="ignore"):
        out_ref = reference.scatter_chain(w.copy(), idx, v, False, None, D0, False)
    out_fast = fast.scatter_chain(w.copy(), idx, v, False, None, D0, False)
    assert not np.isfinite(out_ref[0, 1]) and np.array_equal(out_fast, out_ref, equal_nan=True)


def test_recorded_ops_give_the_values_of_the_ops_applied_one_by_one():
    """square -> scale -> divide is recorded and run fused; any other order computes the rows first."""
    rng = np.random.default_rng(4)
    g = IndexedSlices(rng.normal(size=(6, 2)).astype(np.float32), [0, 1, 0, 2, 0, 1], (3, 2))
    D = (rng.random((3, 2)) + 0.5).astype(np.float32)
    c = np.float32(0.3)
    v = g.values
    chained = divide(scale(c, square(g)), D)
    assert chained.pending
    np.testing.assert_array_equal(chained.values, (c * np.square(v)) / D[g.indices])
    reordered = square(scale(c, g))  # scale first: the rows are computed, then squared
    np.testing.assert_array_equal(reordered.values, np.square(c * v))
    for mode in ("fast", "reference"):
        with config.kernels(mode):
            dense = densify(divide(scale(c, square(g)), D))
        expected = np.zeros((3, 2), np.float32)
        np.add.at(expected, g.indices, (c * np.square(v)) / D[g.indices])
        np.testing.assert_array_equal(dense, expected)
