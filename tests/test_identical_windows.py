"""Bit-identical input windows of a convolution give bit-identical outputs (tinynn.kernels.windows), whatever the
GEMM does with rows at different positions: the numba hash tables agree with the NumPy twin (sorting), the rule
holds in both kernel modes and both conv methods, and nothing but repeated windows changes."""

import itertools
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinynn as tn
from tinynn import config, layers
from tinynn.kernels import blas
from tinynn.kernels import conv as kc
from tinynn.kernels import windows as kw
from tinynn.kernels.reference import conv as rc
from tinynn.kernels.reference import windows as rw


@st.composite
def repetitive_input(draw, padding):
    """A conv geometry and an x whose steps come from a pool of 1-3 rows (one may be all zeros, one -0.0),
    so that repeated steps and windows abound; with 'same'/'causal' windows overlap the padding."""
    K, s, d = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    eff = (K - 1) * d + 1
    L = (eff if padding == "valid" else 1) + draw(st.integers(0, 12))
    B, C = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    pool = rng.normal(size=(3, C))
    if draw(st.booleans()):
        pool[0] = 0.0
    if draw(st.booleans()):
        pool[1] = -0.0  # equal to 0.0 in value, not in bits: its own id
    choice = rng.integers(0, draw(st.integers(1, 3)), size=(B, L))
    x = pool[choice]
    pl, _, l_out = kc.conv_padding(L, K, s, d, padding)
    return x, K, s, d, pl, l_out, seed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@given(data=st.data())
@example(data=None)  # every window identical
def test_numba_ids_match_the_numpy_twin(padding, dtype, data):
    case = data.draw(repetitive_input(padding)) if data is not None else (np.zeros((2, 6, 3)), 2, 1, 1, 0, 5, 0)
    x, K, s, d, pl, l_out, seed = case
    x = x.astype(dtype)
    ids, zero_id = kw.row_ids(x)
    ids_ref, zero_ref = rw.row_ids(x)
    np.testing.assert_array_equal(ids, ids_ref)
    assert zero_id == zero_ref
    rep = kw.window_ids(ids, zero_id, K, s, d, pl, l_out)
    np.testing.assert_array_equal(rep, rw.window_ids(ids_ref, zero_ref, K, s, d, pl, l_out))
    z = np.random.default_rng(seed).normal(size=(x.shape[0], l_out, 2)).astype(dtype)
    np.testing.assert_array_equal(kw.share_identical_windows(z.copy(), x, K, s, d, pl),
                                  rw.share_identical_windows(z.copy(), x, K, s, d, pl))
    # the rule itself: windows with equal bits (padding taps read as +0.0) have equal representatives
    xp = np.concatenate([np.zeros((x.shape[0], pl, x.shape[2]), dtype), x,
                         np.zeros((x.shape[0], l_out * s + K * d, x.shape[2]), dtype)], axis=1)  # fmt: skip
    taps = np.arange(l_out)[:, None] * s + np.arange(K)[None, :] * d
    win = xp[:, taps].reshape(x.shape[0] * l_out, -1)
    bits = win.view(np.dtype(f"u{x.dtype.itemsize}"))
    same_bits = (bits[:, None, :] == bits[None, :, :]).all(-1)
    np.testing.assert_array_equal(same_bits, rep[:, None] == rep[None, :])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_ids_of_a_large_input_hashed_in_pieces_match_the_numpy_twin(dtype):
    """Enough words to hash the rows in one piece per core (``PARALLEL_HASH_WORDS``): repeats within and across the
    pieces, runs, all-zero steps and -0.0 (bits differ from +0.0) give the twin's ids."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(64, 240, 10)).astype(dtype)
    assert x.size * x.itemsize // 8 >= kw.PARALLEL_HASH_WORDS
    x[:, :7] = 0  # left padding: one run of zero steps per sample
    x[40, 100:] = x[2, 100:]  # the end of a late sample repeats an early one (another piece)
    x[30, 50:60] = x[30, 49]  # a run
    x[5, 3] = -0.0
    ids, zero_id = kw.row_ids(x)
    ids_ref, zero_ref = rw.row_ids(x)
    np.testing.assert_array_equal(ids, ids_ref)
    assert zero_id == zero_ref >= 0
    assert len(np.unique(ids)) < ids.size


def _position_dependent(grouped_matmul):
    """A GEMM that rounds each row differently (as some BLAS micro-kernels do for rows at different positions):
    row r of the result is scaled by 1 + r·2⁻²⁰."""

    def gemm(a, b, out=None):
        result = grouped_matmul(a, b, out)
        rows = result.shape[1]
        result *= (1 + np.arange(rows) * 2.0**-20).astype(result.dtype)[None, :, None]
        return result

    return gemm


def _left_padded_ids(rng, n, length, vocab):
    lengths = rng.integers(1, length, n)
    ids = rng.integers(1, vocab, size=(n, length))
    return np.where(np.arange(length)[None, :] >= length - lengths[:, None], ids, 0)


@pytest.mark.parametrize("method", ["shift", "im2col"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_windows_stay_identical_under_a_position_dependent_gemm(method, dtype):
    rng = np.random.default_rng(1)
    table = rng.normal(size=(6, 5)).astype(dtype)
    x = table[_left_padded_ids(rng, 9, 20, 6)]  # (9, 20, 5): zero-id rows repeat, real ids repeat too
    W = rng.normal(size=(3, 5, 4)).astype(dtype)
    with mock.patch.object(kc.blas, "grouped_matmul", _position_dependent(blas.grouped_matmul)):
        z = kc.conv1d_forward(x, W, method=method, workspace={})
        raw = kc._conv1d_forward(x, W, 1, 1, 0, 18, 1, method, {}, False)
    rep = kw.window_ids(*kw.row_ids(x), 3, 1, 1, 0, 18)
    rows, raw_rows = z.reshape(-1, 4), raw.reshape(-1, 4)
    assert len(np.unique(raw_rows[rep != np.arange(rep.size)], axis=0)) > 1  # the mock did break the ties
    np.testing.assert_array_equal(rows, raw_rows[rep])  # each window: its first identical window's output
    first = rep == np.arange(rep.size)
    np.testing.assert_array_equal(rows[first], raw_rows[first])  # nothing else changed


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_conv1d_layer_on_left_padded_embeddings_gives_one_output_for_all_padded_windows(mode):
    """Seed 000's first layers in float32: every window that lies in the padding has the same output vector."""
    rng = np.random.default_rng(2)
    ids = _left_padded_ids(rng, 16, 60, 50)
    tn.set_random_seed(3)
    model = tn.Sequential([layers.Embedding(50, 16, input_shape=(60,), dtype="float32"),
                           layers.Conv1D(8, 7, activation="relu", dtype="float32")])  # fmt: skip
    model.layers[1].bias[...] = rng.normal(size=8)
    with config.kernels(mode), mock.patch.object(kc.blas, "grouped_matmul", _position_dependent(blas.grouped_matmul)):
        y = model.predict(ids, batch_size=16)
    padded = np.array([[not ids[b, t : t + 7].any() for t in range(54)] for b in range(16)])
    assert padded.sum() > 100
    assert len(np.unique(y[padded], axis=0)) == 1


def test_a_hash_collision_never_gives_a_window_another_windows_output():
    """With every row hashed alike (a forced collision) all windows get window (0, 0) as representative; the copy
    compares the windows' bits, so only the window truly identical to it takes its output, and the others
    (even the ones identical to some other window) keep their own: a collision can cost sharing, never values."""

    def same_hash_for_every_row(bits, m1, m2, hashes):
        hashes[:] = 7

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 12, 4)).astype(np.float32)
    x[1, :6] = x[0, :6]  # windows 0-3 of sample 1 equal windows 0-3 of sample 0
    z = rng.normal(size=(3, 10, 2)).astype(np.float32)
    with mock.patch.object(kw, "_row_hashes", same_hash_for_every_row):
        assert len(np.unique(kw.row_ids(x)[0])) < len(np.unique(rw.row_ids(x)[0]))  # different rows merged
        shared = kw.share_identical_windows(z.copy(), x, 3, 1, 1, 0)
    expected = z.copy()
    expected[1, 0] = z[0, 0]
    np.testing.assert_array_equal(shared, expected)


# --------------------------------------------------------------------------- the distinct-steps forward
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@given(data=st.data())
@example(data=None)  # every step all zeros: no distinct step at all
def test_distinct_rows_and_shift_add_rows_match_their_numpy_twins(padding, dtype, data):
    case = data.draw(repetitive_input(padding)) if data is not None else (np.zeros((2, 6, 3)), 2, 1, 1, 0, 5, 0)
    x, K, s, d, pl, l_out, seed = case
    x = x.astype(dtype)
    ids, zero_id = kw.row_ids(x)
    assert kw.verify_ids(x, ids, 0, ids.size) and rw.verify_ids(x, ids, 0, ids.size)
    if ids.size > 1:  # a wrong id: step 1 said to equal step 0 (true only if their bits are equal)
        wrong = ids.copy().reshape(-1)
        wrong[1] = 0
        equal = np.array_equal(x.reshape(-1, x.shape[2])[1].view(np.uint8), x.reshape(-1, x.shape[2])[0].view(np.uint8))
        assert kw.verify_ids(x, wrong, 0, ids.size) == rw.verify_ids(x, wrong, 0, ids.size) == equal
        assert kw.verify_ids(x, wrong, 2, ids.size) and rw.verify_ids(x, wrong, 2, ids.size)  # outside the range
    firsts, compact = kw.distinct_rows(x, ids, zero_id)
    firsts_ref, compact_ref = rw.distinct_rows(x, *rw.row_ids(x))
    np.testing.assert_array_equal(firsts, firsts_ref)
    np.testing.assert_array_equal(compact, compact_ref)
    flat = x.reshape(-1, x.shape[2])
    used = compact >= 0
    np.testing.assert_array_equal(flat[firsts[compact[used]]], x[used])  # each step has the bits of its first
    assert not flat[compact.reshape(-1) < 0].any()  # -1: the all-(+0) steps, and only those
    Zu = np.random.default_rng(seed).normal(size=(firsts.size, K, 3)).astype(dtype)
    expected = rc.shift_add_rows(Zu, compact, s, d, pl, l_out)
    np.testing.assert_array_equal(kc.shift_add_rows(Zu, compact, s, d, pl, l_out), expected)
    garbage = np.full(expected.shape, np.nan, dtype)  # an out buffer's old contents are overwritten, not read
    np.testing.assert_array_equal(kc.shift_add_rows(Zu, compact, s, d, pl, l_out, out=garbage), expected)


def test_verify_ids_finds_a_hash_collision_and_the_convolution_then_takes_the_checked_path():
    """With every row hashed alike, row_ids merges different steps; verify_ids says so, the distinct-steps forward
    is not used and the output is still the convolution's (the window copy checks bits)."""

    def same_hash_for_every_row(bits, m1, m2, hashes):
        hashes[:] = 7

    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3, 4))[:, rng.integers(0, 3, 40)]  # (2, 40, 4): 6 distinct steps, repeated
    W = rng.normal(size=(3, 4, 5))
    with mock.patch.object(kw, "_row_hashes", same_hash_for_every_row):
        ids, _ = kw.row_ids(x)
        assert not kw.verify_ids(x, ids, 0, ids.size)
        with mock.patch.object(kc, "shift_add_rows", wraps=kc.shift_add_rows) as spy:
            z = kc.conv1d_forward(x, W, workspace={})
        assert not spy.called
    np.testing.assert_allclose(z, rc.conv1d_forward(x, W), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_the_distinct_steps_forward_equals_the_reference_and_shares_identical_windows(padding, dtype):
    """Left-padded embeddings (many repeated steps): the forward takes the distinct-steps path (one product per
    distinct step), agrees with the reference, and identical windows get identical outputs even when the GEMM
    rounds each row differently (the products of identical steps are one row, summed in one order)."""
    rng = np.random.default_rng(7)
    table = rng.normal(size=(6, 5)).astype(dtype)
    table[0] = 0.0
    x = table[_left_padded_ids(rng, 9, 24, 6)]
    W = rng.normal(size=(3, 5, 4)).astype(dtype)
    pl, _, l_out = kc.conv_padding(24, 3, 1, 2, padding)

    real_matmul = blas.matmul

    def position_dependent_matmul(a, b, out=None):
        result = real_matmul(a, b, out)
        result *= (1 + np.arange(result.shape[0]) * 2.0**-20).astype(result.dtype)[:, None]
        return result

    with mock.patch.object(kc, "shift_add_rows", wraps=kc.shift_add_rows) as spy, \
            mock.patch.object(kc.blas, "matmul", position_dependent_matmul):  # fmt: skip
        z = kc.conv1d_forward(x, W, 1, 2, pl, l_out, workspace={})
    assert spy.called
    rep = kw.window_ids(*kw.row_ids(x), 3, 1, 2, pl, l_out)
    rows = z.reshape(-1, 4)
    assert (rep != np.arange(rep.size)).sum() > 20
    np.testing.assert_array_equal(rows, rows[rep])
    exact = kc.conv1d_forward(x, W, 1, 2, pl, l_out, workspace={})
    np.testing.assert_allclose(exact, rc.conv1d_forward(x, W, 1, 2, pl, l_out), rtol=1e-5 if dtype == np.float32
                               else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@given(data=st.data())
def test_spread_rows_matches_its_numpy_twin_and_is_shift_add_rows_adjoint(padding, dtype, data):
    x, K, s, d, pl, l_out, seed = data.draw(repetitive_input(padding))
    F = data.draw(st.sampled_from([3, 16, 37]), label="F")  # the vectorised adds' remainder only, body, both
    x = x.astype(dtype)
    firsts, compact = kw.distinct_rows(x, *kw.row_ids(x))
    rng = np.random.default_rng(seed)
    dz = rng.normal(size=(x.shape[0], l_out, F)).astype(dtype)
    Uu = kc.spread_rows(dz, compact, K, s, d, pl, np.zeros((firsts.size, K, F), dtype))
    np.testing.assert_array_equal(Uu, rc.spread_rows(dz, compact, K, s, d, pl, firsts.size))
    split = np.zeros_like(Uu)  # tap ranges, as the cores share them
    kc.spread_rows(dz, compact, K, s, d, pl, split, 0, K // 2)
    kc.spread_rows(dz, compact, K, s, d, pl, split, K // 2, K)
    np.testing.assert_array_equal(split, Uu)
    Zu = rng.normal(size=Uu.shape)
    assert np.isclose(np.sum(kc.shift_add_rows(Zu, compact, s, d, pl, l_out) * dz), np.sum(Zu * Uu), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_training_forward_keeps_its_distinct_steps_for_the_weight_gradient(dtype):
    """keep_cols (training): the backward on the same x sums dW over the distinct steps (spread_rows), and gives
    the reference's gradients; another x, or a forward without keep_cols, gets the full product. dx's chunks
    (``DX_CHUNK_BYTES``) as the defaults make them and down to one sample each."""
    rng = np.random.default_rng(8)
    table = rng.normal(size=(7, 6)).astype(dtype)
    x = table[_left_padded_ids(rng, 5, 30, 7)]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for F, dx_chunk in itertools.product((3, 8), (kc.DX_CHUNK_BYTES, 1)):  # dx by the shift method (F < C: dW
        # then runs as one task beside dx's chunks) or im2col
        W, dz = rng.normal(size=(4, 6, F)).astype(dtype), rng.normal(size=(5, 30, F)).astype(dtype)
        assert kc.choose_method(30, 30, 6, F, 1) == ("shift" if F == 3 else "im2col")
        for keep, other, need_dx in ((True, False, True), (True, False, False), (True, True, True),
                                     (False, False, True)):  # fmt: skip
            ws = {}
            kc.conv1d_forward(x, W, 1, 1, 3, 30, workspace=ws, keep_cols=keep)
            xb = x.copy() if other else x
            with mock.patch.object(kc, "spread_rows", wraps=kc.spread_rows) as spy, \
                    mock.patch.multiple(kc, DX_CHUNK_BYTES=dx_chunk, SEQUENTIAL_BYTES=0 if dx_chunk == 1 else
                                        kc.SEQUENTIAL_BYTES):
                dx, dW = kc.conv1d_backward(xb, W, dz, 1, 1, 3, need_dx=need_dx, workspace=ws)
            assert spy.called == (keep and not other)
            np.testing.assert_allclose(dW, rc.conv1d_backward_filter(x, dz, 4, 1, 1, 3), **tol)
            if need_dx:
                np.testing.assert_allclose(dx, rc.conv1d_backward_data(dz, W, 30, 1, 1, 3), **tol)
            else:
                assert dx is None


def test_the_window_pass_is_skipped_only_when_no_two_windows_can_be_identical():
    """All steps distinct and nonzero, every window with a tap inside x: no pass (nothing to share). A repeated
    step, an all-zero step or a window lying wholly in the padding: the pass runs."""
    rng = np.random.default_rng(9)

    def runs_the_pass(x, K, d, padding):
        pl, _, l_out = kc.conv_padding(x.shape[1], K, 1, d, padding)
        W = rng.normal(size=(K, x.shape[2], 2))
        with mock.patch.object(kw, "share_identical_windows", wraps=kw.share_identical_windows) as spy:
            z = kc.conv1d_forward(x, W, 1, d, pl, l_out, method="im2col", workspace={})
        np.testing.assert_allclose(z, rc.conv1d_forward(x, W, 1, d, pl, l_out), rtol=1e-12, atol=1e-12)
        return spy.called

    x = rng.normal(size=(3, 9, 4))
    assert not runs_the_pass(x, 3, 1, "valid")
    assert not runs_the_pass(x, 3, 2, "same")
    repeated, zero = x.copy(), x.copy()
    repeated[2, 5] = repeated[0, 1]
    zero[1, 3] = 0.0
    assert runs_the_pass(repeated, 3, 1, "valid")
    assert runs_the_pass(zero, 3, 1, "valid")
    assert runs_the_pass(rng.normal(size=(3, 1, 4)), 2, 3, "same")  # L=1, taps at -1 and 2: window 0 is all padding


def test_the_step_map_kernels_reject_maps_that_would_index_out_of_bounds():
    """The numba loops index with the step map and the ids unchecked: the Python entries check them first."""
    x = np.zeros((2, 5, 3))
    Zu, dz = np.zeros((4, 2, 3)), np.zeros((2, 4, 3))
    for bad in (np.full((2, 5), 4), np.full((2, 5), -2), np.zeros((2, 5), np.int32)):
        with pytest.raises(ValueError, match="shift_add_rows"):
            kc.shift_add_rows(Zu, bad, 1, 1, 0, 4)
        with pytest.raises(ValueError, match="spread_rows"):
            kc.spread_rows(dz, bad, 2, 1, 1, 0, np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="distinct_rows"):
        kw.distinct_rows(x, np.full((2, 5), 10), -1)
    with pytest.raises(ValueError, match="verify_ids"):
        kw.verify_ids(x, np.full(10, -1), 0, 10)


# --------------------------------------------------------------------------- step ids from an Embedding's ids
@given(data=st.data())
@example(data=None)  # one id repeated everywhere
def test_first_positions_matches_its_numpy_twin(data):
    """The numba first-occurrence ranks of lookup ids equal the twin's (np.unique, re-ranked by first position)."""
    if data is None:
        idx = np.full((3, 7), 4)
    else:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        idx = rng.integers(0, data.draw(st.integers(1, 30)), size=(data.draw(st.integers(1, 5)),
                                                                   data.draw(st.integers(1, 20))))
    compact, firsts = kw.first_positions(idx)
    compact_ref, firsts_ref = rw.first_positions(idx)
    np.testing.assert_array_equal(compact, compact_ref)
    np.testing.assert_array_equal(firsts, firsts_ref)
    np.testing.assert_array_equal(idx.reshape(-1)[firsts[compact]], idx.reshape(-1))  # each step's first occurrence
    with pytest.raises(ValueError, match="first_positions"):
        kw.first_positions(np.array([0, -1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_ids_from_an_embeddings_ids_equal_the_hashed_ones(dtype):
    """An Embedding output noted with its ids gets the canonical step ids of row_ids (the twin's) without hashing
    every step, also when different ids have bitwise-equal rows (copied rows, several all-zero rows: one zero_id);
    another array, or the noted one changed in place after the lookup, gets none (then the forward hashes)."""
    rng = np.random.default_rng(11)
    table = rng.normal(size=(12, 5)).astype(dtype)
    table[3] = table[7]
    table[[0, 9]] = 0.0
    table[5] = -0.0  # equal to 0.0 in value, not in bits
    ids = _left_padded_ids(rng, 4, 25, 12)
    ids[1, -4:] = [3, 7, 9, 5]
    x = layers.Embedding(12, 5, dtype=dtype)  # the layer notes its output in the fast kernel mode
    x.ensure_built((None, 25))
    x.set_weights([table])
    y = x(ids)
    got = kw.lookup_row_ids(y)
    expected, zero_expected = rw.row_ids(y)
    assert got is not None
    np.testing.assert_array_equal(got[0], expected)
    assert got[1] == zero_expected >= 0
    assert kw.lookup_row_ids(y.copy()) is None
    with config.kernels("reference"):
        y_ref = x(ids)
    assert kw.lookup_row_ids(y_ref) is None and kw.lookup_row_ids(y) is not None  # the reference mode notes nothing
    y[1, 22] += 1.0  # a step changed after the lookup (its rows equal the step before it): the ids no longer hold
    assert kw.lookup_row_ids(y) is None


def test_embedding_then_conv1d_is_bitwise_the_same_with_or_without_the_lookup_ids():
    """Embedding -> Conv1D on left-padded ids, with copied and all-zero table rows: predictions and three training
    steps give the same bits whether the convolution takes its step ids from the Embedding's ids (the pair run as
    one: Embedding.forward_into) or the layers run one by one and it hashes them."""
    rng = np.random.default_rng(12)
    ids = _left_padded_ids(rng, 16, 60, 50)
    y = rng.normal(size=(16, 1)).astype(np.float32)

    def run():
        model = tn.Sequential([layers.Input((60,)), layers.Embedding(50, 8), layers.Conv1D(6, 5, activation="relu"),
                               layers.MaxPooling1D(2), layers.Conv1D(4, 3, padding="same"),
                               layers.GlobalMaxPooling1D(), layers.Dense(1)])
        model.compile(optimizer="rmsprop", loss="mse")
        rng_w = np.random.default_rng(13)
        weights = [rng_w.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()]
        weights[0][[3, 11]], weights[0][[0, 9]] = weights[0][7], 0.0
        model.set_weights(weights)
        out = [model.predict_on_batch(ids)]
        for _ in range(3):
            model.train_on_batch(ids, y)
        return out + model.get_weights()

    with mock.patch.object(kw, "row_ids", wraps=kw.row_ids) as spy:
        with_ids = run()
        assert (16, 60, 8) not in [call.args[0].shape for call in spy.call_args_list]  # no step of y was hashed
    with mock.patch.object(kw, "note_lookup", lambda y, ids: None), \
            mock.patch.object(layers.Embedding, "feeds", lambda self, layer: False), \
            mock.patch.object(kw, "row_ids", wraps=kw.row_ids) as spy:  # the layers one by one, y hashed
        hashed = run()
        assert (16, 60, 8) in [call.args[0].shape for call in spy.call_args_list]
    for a, b in zip(with_ids, hashed):
        np.testing.assert_array_equal(a, b)
