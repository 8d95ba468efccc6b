"""The numba recurrent kernels agree with their NumPy reference twins; the fast tanh/sigmoid are accurate.

The references (``tinynn.kernels.reference.recurrent``) are the readable statement of the math (and are
themselves checked against Keras by the parity suite and against finite differences by the gradchecks).
"""

import contextlib
import os
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinynn import activations
from tinynn.kernels import blas, fastmath
from tinynn.kernels import embedding as emb_kernels
from tinynn.kernels import recurrent as K
from tinynn.kernels.reference import embedding as emb_reference
from tinynn.kernels.reference import recurrent as R

FAST = ["linear", "tanh", "sigmoid", "relu", "hard_sigmoid"]
# gates need a bounded recurrent_activation: with linear/relu gates too the cell state grows like c^(2^t)
# and overflows float32 within a few steps (hypothesis found it), which compares nothing
BOUNDED = ["tanh", "sigmoid", "hard_sigmoid"]
# The float32 kernels are compared with the float64 reference on the same (float32) inputs: float32 rounding
# through up to 7 recurrent steps, sums with cancellation (dU), and the rational tanh/sigmoid (within 3e-7
# of libm) put them ~1e-5 away in the worst cases hypothesis finds. Float32 parity with Keras (1e-5) is
# tested in tests/parity; the exact agreement of the two implementations is the float64 bound.
# Errors are norm-wise over one call's results (max |ours - ref| over the largest magnitude among the arrays
# the call returns): the kernels' rational sigmoid differs from libm's by a few ulp, and an exploding loop
# amplifies that like every other term (thorough found a linear-activation GRU whose gradients grew 10^4-fold
# in 7 steps: δh_0 1.04e-12 from the twin measured against itself, 5.6e-13 against the largest gradient).
TOL = {"float64": 1e-12, "float32": 1e-4}
SAME_DTYPE_TOL = {"float64": 1e-12, "float32": 1e-6}  # two float32 loops of the same operations


def rel_err(a, b, scale: float | None = None):
    """max |a - b| relative to ``scale`` (default: max |b|), floored at 1e-6."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    assert np.isfinite(b).all(), "the reference overflowed: the test inputs are too large"
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)) if scale is None else scale, 1e-6))


@st.composite
def loop_inputs(draw, gates):
    T = draw(st.integers(1, 7))
    B = draw(st.integers(1, 5))
    u = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    mask = None
    if draw(st.booleans()):
        mask = rng.random((T, B)) > draw(st.sampled_from([0.2, 0.5, 0.9]))
    rm = None
    if draw(st.booleans()):
        rate = draw(st.sampled_from([0.2, 0.6]))
        rm = (rng.random((gates, B, u)) >= rate) / (1 - rate)
    pair = None  # (x̃, W): the fast loops then form each step's xp_t = x̃_t W themselves
    if draw(st.booleans()):
        n_in = draw(st.integers(1, 4))
        pair = (rng.normal(size=(T, B, n_in)), rng.normal(0, 0.7, size=(n_in, gates * u)))
    return dict(
        T=T, B=B, u=u, rng=rng, mask=mask, rm=rm, pieces=draw(st.integers(1, 3)), pair=pair,
        xp=rng.normal(size=(T, B, gates * u)) if pair is None else pair[0] @ pair[1],
        U=rng.normal(0, 0.6, size=(u, gates * u)),
        b=rng.normal(size=gates * u) if draw(st.booleans()) else None,
        h0=rng.normal(size=(B, u)), c0=rng.normal(size=(B, u)),
        dseq=rng.normal(size=(T, B, u)) if draw(st.booleans()) else None,
        dhT=rng.normal(size=(B, u)), dcT=rng.normal(size=(B, u)),
    )


def _cast(d, dtype):
    def cast(v):
        if isinstance(v, tuple):
            return tuple(cast(a) for a in v)
        return v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v

    return {k: cast(v) for k, v in d.items()}


def _both(d, dtype):
    """Inputs for the kernel (in ``dtype``; ``xp`` the pair (x̃, W) when drawn) and for the reference (the same
    values in float64, with xp = x̃ W)."""
    ours = _cast(d, dtype)
    ref = _cast(ours, "float64")
    if d["pair"] is not None:
        ours["xp"] = K.Projection(*ours["pair"])
        ref["xp"] = ref["pair"][0] @ ref["pair"][1]
    return ours, ref


def _xp(d):
    """A fresh copy of the kernel's xp argument (the kernels consume it; a pair is only read)."""
    return d["xp"] if isinstance(d["xp"], tuple) else d["xp"].copy()


@contextlib.contextmanager
def _batch_pieces(n: int):
    """Run the kernels' batch rows in ``n`` pieces on ``n`` threads, however small the loop.

    (Real layers split only loops above ``K._PARALLEL_LOOP_WORK``, far larger than hypothesis's inputs.)
    """
    saved_work, saved_env = K._PARALLEL_LOOP_WORK, os.environ.get("TINYNN_NUM_THREADS")
    K._PARALLEL_LOOP_WORK = 0 if n > 1 else 1 << 62
    os.environ["TINYNN_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        K._PARALLEL_LOOP_WORK = saved_work
        if saved_env is None:
            os.environ.pop("TINYNN_NUM_THREADS")
        else:
            os.environ["TINYNN_NUM_THREADS"] = saved_env


def _assert_all_close(ours, ref, dtype, what, tol=TOL):
    scale = max(float(np.max(np.abs(b))) if np.size(b) else 0.0 for b in ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        err = rel_err(a, b, scale)
        assert err <= tol[dtype], f"{what}[{k}]: relative error {err:.2e} > {tol[dtype]:.0e}"


@given(loop_inputs(1), st.sampled_from(FAST), st.sampled_from(["float64", "float32"]))
def test_simple_rnn_kernel_matches_reference(d, act_name, dtype):
    d, r = _both(d, dtype)
    act = activations.get(act_name)
    with _batch_pieces(d["pieces"]):
        hs1, c1 = K.simple_rnn_forward(_xp(d), d["b"], d["U"], d["rm"], d["mask"], d["h0"], act)
        g1 = K.simple_rnn_backward(c1, d["U"], d["rm"], d["mask"], hs1, d["dseq"], d["dhT"], act)
    hs2, c2 = R.simple_rnn_forward(r["xp"].copy(), r["b"], r["U"], r["rm"], r["mask"], r["h0"], act)
    _assert_all_close([hs1], [hs2], dtype, "forward")
    g2 = R.simple_rnn_backward(c2, r["U"], r["rm"], r["mask"], hs2, r["dseq"], r["dhT"], act)
    _assert_all_close(g1, g2, dtype, "backward")


@given(loop_inputs(4), st.sampled_from(FAST), st.sampled_from(BOUNDED), st.sampled_from(["float64", "float32"]))
def test_lstm_kernel_matches_reference(d, act_name, rec_name, dtype):
    d, r = _both(d, dtype)
    act, rec = activations.get(act_name), activations.get(rec_name)
    with _batch_pieces(d["pieces"]):
        hs1, cs1, c1 = K.lstm_forward(_xp(d), d["b"], d["U"], d["rm"], d["mask"], d["h0"], d["c0"], act,
                                      rec)
        g1 = K.lstm_backward(c1, d["U"], d["rm"], d["mask"], hs1, cs1, d["dseq"], d["dhT"], d["dcT"], act, rec)
    hs2, cs2, c2 = R.lstm_forward(r["xp"].copy(), r["b"], r["U"], r["rm"], r["mask"], r["h0"], r["c0"], act, rec)
    _assert_all_close([hs1, cs1], [hs2, cs2], dtype, "forward")
    g2 = R.lstm_backward(c2, r["U"], r["rm"], r["mask"], hs2, cs2, r["dseq"], r["dhT"], r["dcT"], act, rec)
    _assert_all_close(g1, g2, dtype, "backward")


@given(loop_inputs(4), st.sampled_from(["float64", "float32"]))
def test_lstm_kernel_with_keras_default_activations(d, dtype):
    """tanh / sigmoid, Keras's defaults, run the fused one-pass row loops of the kernel: always drawn here."""
    test_lstm_kernel_matches_reference.hypothesis.inner_test(d, "tanh", "sigmoid", dtype)


@given(loop_inputs(3), st.booleans(), st.sampled_from(FAST), st.sampled_from(BOUNDED),
       st.sampled_from(["float64", "float32"]))
def test_gru_kernel_matches_reference(d, reset_after, act_name, rec_name, dtype):
    b_rec = d["rng"].normal(size=3 * d["u"]) if reset_after else np.zeros(3 * d["u"])
    d, r = _both({**d, "b_rec": b_rec}, dtype)
    act, rec = activations.get(act_name), activations.get(rec_name)
    with _batch_pieces(d["pieces"]):
        hs1, c1 = K.gru_forward(_xp(d), d["b"], d["U"], d["b_rec"], d["rm"], d["mask"], d["h0"], act, rec,
                                reset_after)
        g1 = K.gru_backward(c1, d["U"], d["rm"], d["mask"], hs1, d["dseq"], d["dhT"], act, rec, reset_after)
    hs2, c2 = R.gru_forward(r["xp"].copy(), r["b"], r["U"], r["b_rec"], r["rm"], r["mask"], r["h0"], act, rec,
                            reset_after)
    _assert_all_close([hs1], [hs2], dtype, "forward")
    g2 = R.gru_backward(c2, r["U"], r["rm"], r["mask"], hs2, r["dseq"], r["dhT"], act, rec, reset_after)
    _assert_all_close(g1, g2, dtype, "backward")


def _inference_inputs(d, gates=4):
    """x̃, W of ``d`` (drawn, or made here when ``d`` drew a precomputed xp)."""
    if d["pair"] is not None:
        return d["pair"]
    n_in = 3
    return d["rng"].normal(size=(d["T"], d["B"], n_in)), d["rng"].normal(0, 0.7, size=(n_in, gates * d["u"]))


def _inference_projection(x1, W1, layout, sequence):
    """The :class:`Projection` of x̃ (T, B, n_in) in ``layout`` (see ``_check_lstm_inference``), and the array the
    loop reads (to check it is left as it was)."""
    if layout == "time-major":
        return K.Projection(x1, W1, keep_gates=False, sequence=sequence), x1
    reverse = layout == "reversed"
    x_bm = np.ascontiguousarray((x1[::-1] if reverse else x1).transpose(1, 0, 2))
    return K.Projection(x_bm, W1, keep_gates=False, batch_major=True, reverse=reverse, sequence=sequence), x_bm


def _check_lstm_inference(d, x, W, dtype, layout="time-major", sequence=True):
    """Inference (no gates kept, tanh/sigmoid): the numba loop ``_lstm_inference`` equals its twin
    ``R.lstm_inference``, and the twin equals ``R.lstm_forward`` (the statement of the math) on xp = x̃ W.

    ``layout``: x̃ handed over time-major (T, B, n_in), or batch-major (B, T, n_in) as a layer has it, forwards or
    "reversed" (go_backwards: processing step t reads x[:, T-1-t]). ``sequence`` False: only the final states are
    written, and only they (and the initial ones) are compared."""
    tanh, sigmoid = activations.get("tanh"), activations.get("sigmoid")
    ours = [a.astype(dtype) if a is not None else None for a in (x, W, d["b"], d["U"], d["h0"], d["c0"])]
    x1, W1, b1, U1, h01, c01 = ours
    proj, read = _inference_projection(x1, W1, layout, sequence)
    before = read.copy()
    with _batch_pieces(d["pieces"]):
        hs1, cs1, cache = K.lstm_forward(proj, b1, U1, None, d["mask"], h01, c01, tanh, sigmoid)
    assert cache is None
    np.testing.assert_array_equal(read, before)  # the caller's array is only read
    x2, W2, b2, U2, h02, c02 = [a.astype("float64") if a is not None else None for a in ours]
    hs2, cs2 = R.lstm_inference(x2, W2, b2, U2, d["mask"], h02, c02)
    steps = slice(None) if sequence else [0, d["T"]]
    _assert_all_close([hs1[steps], cs1[steps]], [hs2[steps], cs2[steps]], dtype, "inference")
    hs3, cs3, _ = R.lstm_forward(x2 @ W2, b2, U2, None, d["mask"], h02, c02, tanh, sigmoid)
    _assert_all_close([hs2, cs2], [hs3, cs3], "float64", "twin")


@given(loop_inputs(4), st.sampled_from(["float64", "float32"]), st.sampled_from(["time-major", "batch-major",
                                                                                "reversed"]), st.booleans())
def test_lstm_inference_kernel_matches_its_twin(d, dtype, layout, sequence):
    _check_lstm_inference(d, *_inference_inputs(d), dtype, layout, sequence)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("B, masked, pieces, layout, sequence", [(7, False, 1, "time-major", True),
                                                                 (7, True, 2, "batch-major", True),
                                                                 (7, True, 3, "reversed", False),
                                                                 (7, False, 2, "reversed", True),
                                                                 (1, True, 1, "batch-major", True),
                                                                 (3, True, 3, "reversed", True)])
def test_lstm_inference_kernel_masks_and_pieces(B, masked, pieces, layout, sequence, dtype):
    """Every branch of the inference loop, whatever hypothesis draws: masked columns, several batch pieces, pieces
    of one row (products as row vectors)."""
    rng = np.random.default_rng(7)
    T, u = 6, 5
    d = dict(rng=rng, T=T, B=B, u=u, pieces=pieces, pair=None, mask=(rng.random((T, B)) > 0.4) if masked else None,
             U=rng.normal(0, 0.6, size=(u, 4 * u)), b=rng.normal(size=4 * u), h0=rng.normal(size=(B, u)),
             c0=rng.normal(size=(B, u)))
    if masked:
        assert not d["mask"].all() and d["mask"].any()
    _check_lstm_inference(d, *_inference_inputs(d), dtype, layout, sequence)


@contextlib.contextmanager
def _unit_split(n: int):
    """Make the LSTM inference loop split the hidden units between ``n`` threads meeting at every step
    (``K._lstm_inference_units``), however small the loop and however busy the machine."""
    saved = (K._UNIT_SPLIT_UNITS, K._PARALLEL_LOOP_WORK, K._busy_machine, K.UNIT_SPLIT_PAUSE,
             os.environ.get("TINYNN_NUM_THREADS"))
    K._UNIT_SPLIT_UNITS, K._PARALLEL_LOOP_WORK, K._busy_machine, K.UNIT_SPLIT_PAUSE = 1, 0, lambda threads: False, 0.0
    K._unit_split_paused_until = 0.0
    os.environ["TINYNN_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        K._UNIT_SPLIT_UNITS, K._PARALLEL_LOOP_WORK, K._busy_machine, K.UNIT_SPLIT_PAUSE = saved[:4]
        if saved[4] is None:
            os.environ.pop("TINYNN_NUM_THREADS")
        else:
            os.environ["TINYNN_NUM_THREADS"] = saved[4]


def _check_lstm_inference_units(d, x, W, dtype, threads, layout="time-major", sequence=True):
    """The unit-split inference loop (``threads`` threads, each owning a range of hidden units) equals its twin
    ``R.lstm_inference_units`` on the same ranges; that twin equals ``R.lstm_inference``; and the loop returns what
    the fast training forward (gates kept) returns on the same inputs, to the last few bits: the two loops make the
    same operations in the same order, but the inference loop's products are zᵀ = Uᵀ hᵀ (the batch as BLAS's N)
    where training's are z = h U (the batch as M), and whether OpenBLAS rounds those alike depends on its CPU
    kernel (equal with its SkylakeX and Sandybridge kernels, ~1 ulp apart in the last batch column with its
    Haswell and Zen kernels)."""
    tanh, sigmoid = activations.get("tanh"), activations.get("sigmoid")
    ours = [a.astype(dtype) if a is not None else None for a in (x, W, d["b"], d["U"], d["h0"], d["c0"])]
    x1, W1, b1, U1, h01, c01 = ours
    proj, read = _inference_projection(x1, W1, layout, sequence)
    before = read.copy()
    threads = min(threads, d["u"])
    with _unit_split(threads):
        assert K._unit_threads(d["T"], d["B"], d["u"]) == threads
        hs1, cs1, cache = K.lstm_forward(proj, b1, U1, None, d["mask"], h01, c01, tanh, sigmoid)
    assert cache is None
    np.testing.assert_array_equal(read, before)  # the caller's array is only read
    x2, W2, b2, U2, h02, c02 = [a.astype("float64") if a is not None else None for a in ours]
    bounds = K._unit_bounds(d["u"], threads)
    assert len(bounds) == threads and all(j1 > j0 for j0, j1 in bounds)
    hs2, cs2 = R.lstm_inference_units(x2, W2, b2, U2, d["mask"], h02, c02, bounds)
    steps = slice(None) if sequence else [0, d["T"]]
    _assert_all_close([hs1[steps], cs1[steps]], [hs2[steps], cs2[steps]], dtype, "inference by units")
    hs3, cs3 = R.lstm_inference(x2, W2, b2, U2, d["mask"], h02, c02)
    _assert_all_close([hs2, cs2], [hs3, cs3], "float64", "twin")
    hs4, cs4, _ = K.lstm_forward(K.Projection(x1, W1), b1, U1, None, d["mask"], h01, c01, tanh, sigmoid)
    _assert_all_close([hs1[steps], cs1[steps]], [hs4[steps], cs4[steps]], dtype, "inference vs training forward",
                      SAME_DTYPE_TOL)


@given(loop_inputs(4), st.sampled_from(["float64", "float32"]), st.sampled_from(["time-major", "batch-major",
                                                                                "reversed"]), st.booleans())
def test_lstm_inference_by_units_matches_its_twin(d, dtype, layout, sequence):
    _check_lstm_inference_units(d, *_inference_inputs(d), dtype, 1 + d["pieces"], layout, sequence)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("B, u, masked, threads, layout, sequence", [(7, 5, True, 2, "batch-major", True),
                                                                     (7, 5, True, 3, "reversed", False),
                                                                     (1, 6, True, 2, "batch-major", True),
                                                                     (1, 3, False, 3, "reversed", True),
                                                                     (5, 40, True, 2, "time-major", True),
                                                                     (3, 144, False, 2, "reversed", False)])
def test_lstm_inference_by_units_masks_threads_and_widths(B, u, masked, threads, layout, sequence, dtype):
    """Every branch of the unit-split loop: masked columns, 2 and 3 threads (one unit each at u = 3), a batch of one
    row (products as row vectors), ranges cut at multiples of 16 units (u = 40, 144)."""
    rng = np.random.default_rng(9)
    T = 6
    d = dict(rng=rng, T=T, B=B, u=u, pair=None, mask=(rng.random((T, B)) > 0.4) if masked else None,
             U=rng.normal(0, 0.6 / np.sqrt(u), size=(u, 4 * u)), b=rng.normal(size=4 * u), h0=rng.normal(size=(B, u)),
             c0=rng.normal(size=(B, u)))
    if masked:
        assert not d["mask"].all() and d["mask"].any()
    _check_lstm_inference_units(d, *_inference_inputs(d), dtype, threads, layout, sequence)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lstm_inference_by_units_that_stop_meeting(dtype, monkeypatch):
    """Threads that give up waiting for each other (patience 0: at the first wait) stop at a common step; the loop
    finishes as batch pieces from there, with the same results (twin, and the training forward)."""
    monkeypatch.setattr(K, "UNIT_SPLIT_PATIENCE", 0)
    rng = np.random.default_rng(10)
    stops = K._unit_split_stops
    for B, u, threads, layout, sequence in [(6, 32, 2, "batch-major", True), (6, 32, 2, "reversed", False),
                                            (1, 7, 3, "reversed", True), (4, 20, 3, "time-major", False)]:
        T = 8
        d = dict(rng=rng, T=T, B=B, u=u, pair=None, mask=rng.random((T, B)) > 0.3,
                 U=rng.normal(0, 0.6 / np.sqrt(u), size=(u, 4 * u)), b=rng.normal(size=4 * u),
                 h0=rng.normal(size=(B, u)), c0=rng.normal(size=(B, u)))
        _check_lstm_inference_units(d, *_inference_inputs(d), dtype, threads, layout, sequence)
    assert K._unit_split_stops > stops  # (which step they stop at depends on the threads' timing)


def test_unit_split_is_chosen_only_with_free_cores(monkeypatch):
    """The unit-split loop runs only where its per-step meeting cannot stall: wide enough, more than one thread,
    not from inside a parallel piece (its core is taken), not on a machine busier than its cores."""
    from tinynn.kernels import parallel

    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    monkeypatch.setattr(K, "_busy_machine", lambda threads: False)
    monkeypatch.setattr(K, "_unit_split_paused_until", 0.0)
    assert K._unit_threads(100, 64, 256) == 2
    assert K._unit_threads(100, 1, 128) == 2
    assert K._unit_threads(100, 64, 64) == 1  # narrow: batch pieces
    assert K._unit_threads(100, 256, 256) == 1  # a large batch of moderate width: batch pieces
    assert K._unit_threads(100, 256, 512) == 2
    with parallel.sequential():
        assert K._unit_threads(100, 64, 256) == 1
    monkeypatch.setattr(K, "_busy_machine", lambda threads: True)
    assert K._unit_threads(100, 64, 256) == 1
    monkeypatch.setattr(K, "_busy_machine", lambda threads: False)
    monkeypatch.setattr(K, "_unit_split_paused_until", time.monotonic() + 60)  # a recent call stopped meeting
    assert K._unit_threads(100, 64, 256) == 1
    monkeypatch.setattr(K, "_unit_split_paused_until", 0.0)
    monkeypatch.setenv("TINYNN_NUM_THREADS", "1")
    monkeypatch.setattr(K, "_busy_machine", lambda threads: False)
    assert K._unit_threads(100, 64, 256) == 1


def _check_gru_inference(d, x, W, b_rec, dtype, layout="time-major", sequence=True):
    """The GRU's inference loop ``_gru_inference`` (reset_after, tanh/sigmoid) equals its twin ``R.gru_inference``,
    and the twin equals ``R.gru_forward`` on xp = x̃ W (as ``_check_lstm_inference``)."""
    tanh, sigmoid = activations.get("tanh"), activations.get("sigmoid")
    ours = [a.astype(dtype) if a is not None else None for a in (x, W, d["b"], d["U"], b_rec, d["h0"])]
    x1, W1, b1, U1, br1, h01 = ours
    proj, read = _inference_projection(x1, W1, layout, sequence)
    before = read.copy()
    with _batch_pieces(d["pieces"]):
        hs1, cache = K.gru_forward(proj, b1, U1, br1, None, d["mask"], h01, tanh, sigmoid, True)
    assert cache is None
    np.testing.assert_array_equal(read, before)
    x2, W2, b2, U2, br2, h02 = [a.astype("float64") if a is not None else None for a in ours]
    hs2 = R.gru_inference(x2, W2, b2, U2, br2, d["mask"], h02)
    steps = slice(None) if sequence else [0, d["T"]]
    _assert_all_close([hs1[steps]], [hs2[steps]], dtype, "inference")
    hs3, _ = R.gru_forward(x2 @ W2, b2, U2, br2, None, d["mask"], h02, tanh, sigmoid, True)
    _assert_all_close([hs2], [hs3], "float64", "twin")


@given(loop_inputs(3), st.sampled_from(["float64", "float32"]), st.sampled_from(["time-major", "batch-major",
                                                                                "reversed"]), st.booleans())
def test_gru_inference_kernel_matches_its_twin(d, dtype, layout, sequence):
    b_rec = d["rng"].normal(size=3 * d["u"])
    _check_gru_inference(d, *_inference_inputs(d, 3), b_rec, dtype, layout, sequence)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("B, masked, pieces, layout, sequence", [(7, False, 1, "time-major", True),
                                                                 (7, True, 2, "batch-major", True),
                                                                 (7, True, 3, "reversed", False),
                                                                 (1, True, 1, "batch-major", True),
                                                                 (3, True, 3, "reversed", True)])
def test_gru_inference_kernel_masks_and_pieces(B, masked, pieces, layout, sequence, dtype):
    """Every branch of the GRU inference loop: masked columns, several batch pieces, pieces of one row."""
    rng = np.random.default_rng(8)
    T, u = 6, 5
    d = dict(rng=rng, T=T, B=B, u=u, pieces=pieces, pair=None, mask=(rng.random((T, B)) > 0.4) if masked else None,
             U=rng.normal(0, 0.6, size=(u, 3 * u)), b=rng.normal(size=3 * u), h0=rng.normal(size=(B, u)))
    _check_gru_inference(d, *_inference_inputs(d, 3), rng.normal(size=3 * u), dtype, layout, sequence)


@pytest.mark.parametrize("copy_rows", [1, 1 << 30])  # backward by a copy of Uᵀ / by U read transposed
@pytest.mark.parametrize("dropout", [False, True])
def test_backward_loops_multiply_by_u_transposed_either_way(copy_rows, dropout, monkeypatch):
    """Both ways the backward loops can multiply δz by Uᵀ (``_u_for_backward``) give the reference's gradients, with
    and without recurrent dropout (per-gate blocks), for every cell."""
    monkeypatch.setattr(K, "_COPY_UT_ROWS", copy_rows)
    for gates, check in ((1, test_simple_rnn_kernel_matches_reference), (4, test_lstm_kernel_matches_reference),
                         (3, test_gru_kernel_matches_reference)):
        rng = np.random.default_rng(gates)
        T, B, u = 4, 5, 3
        d = dict(T=T, B=B, u=u, rng=rng, mask=rng.random((T, B)) > 0.3, pieces=2, pair=None,
                 rm=(rng.random((gates, B, u)) >= 0.4) / 0.6 if dropout else None,
                 xp=rng.normal(size=(T, B, gates * u)), U=rng.normal(0, 0.6, size=(u, gates * u)),
                 b=rng.normal(size=gates * u), h0=rng.normal(size=(B, u)), c0=rng.normal(size=(B, u)),
                 dseq=rng.normal(size=(T, B, u)), dhT=rng.normal(size=(B, u)), dcT=rng.normal(size=(B, u)))
        for dtype in ("float64", "float32"):
            if gates == 3:
                for reset_after in (False, True):
                    check.hypothesis.inner_test(dict(d), reset_after, "tanh", "sigmoid", dtype)
            elif gates == 4:
                check.hypothesis.inner_test(dict(d), "tanh", "sigmoid", dtype)
            else:
                check.hypothesis.inner_test(dict(d), "tanh", dtype)


def test_unknown_activation_runs_the_reference_path():
    """Activations without a numba implementation (e.g. softsign) go through the NumPy twin, same API."""
    rng = np.random.default_rng(0)
    xp, U, h0 = rng.normal(size=(3, 2, 4 * 2)), rng.normal(size=(2, 8)), rng.normal(size=(2, 2))
    soft = activations.get("softsign")
    assert fastmath.activation_code(soft) is None
    hs, cs, cache = K.lstm_forward(xp.copy(), None, U, None, None, h0, h0, soft, activations.sigmoid)
    hs2, cs2, _ = R.lstm_forward(xp, None, U, None, None, h0, h0, soft, activations.sigmoid)
    np.testing.assert_array_equal(hs, hs2)
    assert isinstance(cache, tuple)  # the reference's (z, gates) cache


@pytest.mark.parametrize("dtype, abs_tol", [("float64", 1.5e-15), ("float32", 4e-7)])
def test_fast_tanh_and_sigmoid_accuracy(dtype, abs_tol):
    import numba

    @numba.njit(error_model="numpy")
    def apply(x, t, s):
        for i in range(x.size):
            t[i] = fastmath.tanh_fast(x[i])
            s[i] = fastmath.sigmoid_fast(x[i])

    x = np.concatenate([np.linspace(-60, 60, 200001), [0.0, 1e-30, -1e-30, 1e-8]]).astype(dtype)
    t, s = np.empty_like(x), np.empty_like(x)
    apply(x, t, s)
    x64 = x.astype(np.float64)
    assert np.max(np.abs(t - np.tanh(x64))) <= abs_tol
    assert np.max(np.abs(s - 1 / (1 + np.exp(-x64)))) <= abs_tol
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))
    t_neg, s_neg = np.empty_like(x), np.empty_like(x)
    apply(-x, t_neg, s_neg)
    np.testing.assert_array_equal(t, -t_neg)  # odd symmetry, exactly
    assert t[np.argmax(x)] == 1 and t[np.argmin(x)] == -1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_activate_and_derivative_passes(dtype):
    rng = np.random.default_rng(1)
    z = (3 * rng.normal(size=(4, 9))).astype(dtype)
    for name, code in fastmath._CODES.items():
        fn = activations.get(name)
        a = z.copy()
        fastmath.activate(a, 2, 7, code)
        np.testing.assert_array_equal(a[:, :2], z[:, :2])  # columns outside [j0, j1) untouched
        np.testing.assert_array_equal(a[:, 7:], z[:, 7:])
        atol = 4e-7 if dtype == "float32" else 1e-15
        np.testing.assert_allclose(a[:, 2:7], fn(z[:, 2:7].astype(np.float64)), atol=atol, rtol=0)
        d = np.full_like(z, np.nan)
        fastmath.derivative(d, a, 2, 7, code)
        want = fn.backward(z[:, 2:7].astype(np.float64), fn(z[:, 2:7].astype(np.float64)), np.ones((4, 5)))
        np.testing.assert_allclose(d[:, 2:7], want, atol=1e-6 if dtype == "float32" else 1e-14, rtol=0)
        assert np.isnan(d[:, :2]).all()


@given(st.integers(1, 300), st.integers(1, 70), st.integers(1, 40), st.sampled_from(["float64", "float32"]),
       st.integers(0, 2**16))
def test_single_threaded_gemms_match_matmul(M, K_, N, dtype, seed):
    """blas.matmul / matmul_nt / matmul_tn (single-threaded BLAS pieces, the transposed operand read in place)
    against NumPy."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(M, K_)).astype(dtype), rng.normal(size=(K_, N)).astype(dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    ref = a.astype(np.float64) @ b.astype(np.float64)
    scale = max(np.abs(ref).max(), 1.0)
    assert np.abs(blas.matmul(a, b) - ref).max() / scale < tol
    assert np.abs(blas.matmul_nt(a, np.ascontiguousarray(b.T)) - ref).max() / scale < tol
    assert np.abs(blas.matmul_tn(np.ascontiguousarray(a.T), b) - ref).max() / scale < tol
    assert blas.matmul(a, b).dtype == dtype


@given(st.integers(1, 20), st.integers(1, 6), st.integers(0, 60), st.sampled_from(["float64", "float32"]),
       st.integers(0, 2**16))
def test_embedding_scatter_add_matches_add_at(V, D, N, dtype, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, V, size=N)
    dy = rng.normal(size=(N, D)).astype(dtype)
    g0 = rng.normal(size=(V, D)).astype(dtype)
    ours = emb_kernels.scatter_add(g0.copy(), idx, dy)
    ref = emb_reference.scatter_add(g0.copy(), idx, dy)
    np.testing.assert_array_equal(ours, ref)  # same order of additions: bit-identical


@pytest.mark.parametrize("threads", ["1", "2"])
def test_large_gemms_split_over_threads(threads, monkeypatch):
    """Products above blas._PARALLEL_WORK run in pieces on two threads (column blocks for aᵀ b): same result."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
    monkeypatch.setattr(blas, "_PARALLEL_WORK", 1 << 21)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3001, 48)), rng.normal(size=(48, 40))
    assert a.size * b.shape[1] >= blas._PARALLEL_WORK
    ref = a @ b
    np.testing.assert_allclose(blas.matmul(a, b), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blas.matmul_nt(a, np.ascontiguousarray(b.T)), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blas.matmul_tn(np.ascontiguousarray(a.T), b), ref, rtol=1e-12, atol=1e-12)
    at = rng.normal(size=(5000, 30))
    np.testing.assert_allclose(blas.matmul_tn(at, at[:, :29]), at.T @ at[:, :29], rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("layer_name", ["SimpleRNN", "LSTM", "GRU"])
def test_large_layer_loops_split_their_batch_over_threads(layer_name, monkeypatch):
    """A layer-sized loop (above K._PARALLEL_LOOP_WORK) runs its batch in 2 pieces; results equal 1 thread's."""
    from tinynn import layers

    rng = np.random.default_rng(5)
    B, T, n_in, u = 64, 64, 6, 24
    x = rng.normal(size=(B, T, n_in))
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, size=(B, 1))
    dy = rng.normal(size=(B, T, u))
    layer = getattr(layers, layer_name)(u, return_sequences=True, dtype="float64", bias_initializer="random_normal")
    layer.build(x.shape)
    G = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[layer_name]
    assert T * B * u * G * u >= K._PARALLEL_LOOP_WORK  # this test would not exercise the split otherwise
    results = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
        assert len(K.row_pieces(B, T * B * u * G * u, K._PARALLEL_LOOP_WORK)) == int(threads)
        y = layer(x, training=True, mask=mask)
        dx = layer.backward(dy)
        results[threads] = [y, dx, *layer.gradients]
    for one, two in zip(results["1"], results["2"]):
        assert rel_err(two, one) <= 1e-13


@given(B=st.integers(1, 4), T=st.integers(1, 6), F=st.integers(1, 3), reverse=st.booleans(), masked=st.booleans(),
       seed=st.integers(0, 2**16))
def test_layout_copies_match_their_numpy_twins(B, T, F, reverse, masked, seed):
    """kernels.layout's numba copies equal reference.layout's (exactly: they only move numbers)."""
    from tinynn.kernels import layout
    from tinynn.kernels.reference import layout as reference_layout

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, F))
    mask = rng.random((T, B)) > 0.4 if masked else None
    xt = layout.to_time_major(x, reverse, mask)
    np.testing.assert_array_equal(xt, reference_layout.to_time_major(x, reverse, mask))
    np.testing.assert_array_equal(layout.to_batch_major(xt, reverse, mask),
                                  reference_layout.to_batch_major(xt, reverse, mask))
    if mask is None:
        np.testing.assert_array_equal(layout.to_batch_major(xt, reverse), x)  # the inverse
    with pytest.raises(ValueError, match="does not fit"):
        layout.to_time_major(x, reverse, np.ones((B, T + 1), bool))  # a wrong mask never reaches numba
