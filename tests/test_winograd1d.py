"""Winograd F(2, 3) + F(2, 2) for Conv1D's five taps (tinynn.kernels.winograd1d): the numba transforms equal their
NumPy twins bit for bit, the twins' algorithm equals the direct convolution, and the fast entry points that choose it
(forward, both gradients, the fused backward) equal the reference convolution, at every padding, odd and even
output lengths, in chunks of one pair to all of them, on one and two threads."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tinynn import activations
from tinynn.kernels import conv as kc
from tinynn.kernels import parallel
from tinynn.kernels import winograd1d as kw
from tinynn.kernels.fastmath import activation_code
from tinynn.kernels.reference import conv as rc

TOL = 1e-12  # float64, norm-wise relative (max |ours - ref| / max |ref|)
TOL32 = 2e-6  # float32 against the float64 direct convolution


def rel_err(ours, ref):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-300))


@st.composite
def geometry(draw):
    """5 taps, stride 1: 'valid' from the shortest input, 'same' and 'causal' from one step; odd and even Lo."""
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    L = draw(st.integers(5 if padding == "valid" else 1, 23))
    pl, _, lo = rc.conv_padding(L, 5, 1, 1, padding)
    return dict(B=draw(st.integers(1, 3)), L=L, C=draw(st.integers(1, 5)), F=draw(st.integers(1, 5)), pl=pl, lo=lo,
                seed=draw(st.integers(0, 2**16)))  # fmt: skip


def _arrays(g, dtype=np.float64):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["B"], g["L"], g["C"])).astype(dtype)
    W = rng.standard_normal((5, g["C"], g["F"])).astype(dtype)
    dz = rng.standard_normal((g["B"], g["lo"], g["F"])).astype(dtype)
    return x, W, dz


@given(g=geometry(), dtype=st.sampled_from([np.float64, np.float32]))
@example(g=dict(B=2, L=6, C=3, F=2, pl=0, lo=2, seed=1), dtype=np.float32)
@example(g=dict(B=2, L=6, C=3, F=2, pl=4, lo=6, seed=2), dtype=np.float64)
def test_transforms_equal_their_twins_bit_for_bit(g, dtype):
    x, _, dz = _arrays(g, dtype)
    xp = rc.winograd1d_padded(x, g["pl"], g["lo"])
    assert np.array_equal(kw._padded(x, g["pl"], g["lo"]), xp)
    V = kw.input_transform(xp)
    assert V.dtype == dtype and np.array_equal(V, rc.winograd1d_input_transform(xp))
    M = np.random.default_rng(g["seed"]).standard_normal((7, V.shape[1], g["F"])).astype(dtype)
    assert np.array_equal(kw.output_transform(M, g["B"], g["lo"]), rc.winograd1d_output_transform(M, g["B"], g["lo"]))
    pairs = rc.winograd1d_pairs(g["lo"])
    assert np.array_equal(kw.gradient_transform(dz), rc.winograd1d_gradient_transform(dz, pairs))


@given(g=geometry())
@example(g=dict(B=1, L=5, C=1, F=1, pl=0, lo=1, seed=0))
@example(g=dict(B=2, L=12, C=2, F=3, pl=0, lo=8, seed=4))
def test_the_twins_equal_the_direct_convolution(g):
    x, W, dz = _arrays(g)
    pl, lo = g["pl"], g["lo"]
    assert rel_err(rc.winograd1d_conv1d_forward(x, W, pl, lo), rc.conv1d_forward(x, W, 1, 1, pl, lo)) <= TOL
    assert rel_err(rc.winograd1d_conv1d_backward_filter(x, dz, pl), rc.conv1d_backward_filter(x, dz, 5, 1, 1, pl)) \
        <= TOL  # fmt: skip


@given(g=geometry(), code=st.sampled_from([None, "relu", "tanh", "linear"]), use_bias=st.booleans(),
       chunk_bytes=st.sampled_from([1, 2000, 1 << 20]), threads=st.sampled_from([1, 2]),
       dtype=st.sampled_from([np.float64, np.float32]))  # fmt: skip
@example(g=dict(B=3, L=9, C=4, F=3, pl=2, lo=9, seed=3), code="relu", use_bias=True, chunk_bytes=1, threads=2,
         dtype=np.float64)  # fmt: skip
@example(g=dict(B=2, L=8, C=3, F=2, pl=2, lo=8, seed=5), code="tanh", use_bias=False, chunk_bytes=2000, threads=1,
         dtype=np.float32)  # fmt: skip
@example(g=dict(B=1, L=12, C=2, F=3, pl=4, lo=12, seed=7), code="linear", use_bias=True, chunk_bytes=1 << 20,
         threads=2, dtype=np.float64)  # fmt: skip
def test_fast_entry_points_equal_the_reference(g, code, use_bias, chunk_bytes, threads, dtype):
    """With Winograd switched on for any size, conv1d_forward (plain and with its tail), conv1d_backward and
    conv1d_backward_fused run it (counted) and equal the direct reference; so do the module's own functions."""
    x, W, dz = _arrays(g, dtype)
    x64, W64, dz64 = (a.astype(np.float64) for a in (x, W, dz))
    pl, lo, L = g["pl"], g["lo"], g["L"]
    tol = TOL if dtype == np.float64 else TOL32
    z_ref = rc.conv1d_forward(x64, W64, 1, 1, pl, lo)
    dx_ref = rc.conv1d_backward_data(dz64, W64, L, 1, 1, pl)
    dW_ref = rc.conv1d_backward_filter(x64, dz64, 5, 1, 1, pl)
    calls = []
    real = kw.winograd_conv1d
    with mock.patch.object(kw, "MIN_CHANNELS", 1), mock.patch.object(kw, "MIN_FILTERS", 1), \
            mock.patch.object(kw, "MIN_ROWS", 1), mock.patch.object(kw, "CHUNK_BYTES", chunk_bytes), \
            mock.patch.object(kw, "FILTER_CHUNK_BYTES", chunk_bytes), \
            mock.patch.object(kw, "winograd_conv1d", lambda *a, **k: calls.append(1) or real(*a, **k)), \
            mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        assert kc.choose_method(L, lo, g["C"], g["F"], 1) and kw.applies(W.shape, 1, 1, 1, dtype, g["B"] * lo)
        assert rel_err(kw.winograd_conv1d(x, W, pl, lo), z_ref) <= tol
        assert rel_err(kw.winograd_conv1d_backward_filter(x, dz, pl), dW_ref) <= tol
        assert rel_err(kw.winograd_conv1d_backward_data(dz, W, L, pl), dx_ref) <= tol
        calls.clear()
        assert rel_err(kc.conv1d_forward(x, W, 1, 1, pl, lo), z_ref) <= tol
        dx, dW = kc.conv1d_backward(x, W, dz, 1, 1, pl)
        assert rel_err(dx, dx_ref) <= tol and rel_err(dW, dW_ref) <= tol
        none, dW_only = kc.conv1d_backward(x, W, dz, 1, 1, pl, need_dx=False)
        assert none is None and rel_err(dW_only, dW_ref) <= tol
        distinct_steps = len(np.unique(x.reshape(-1, g["C"]), axis=0)) == g["B"] * L
        assert len(calls) == (1 if distinct_steps else 0) + 1  # the forward, and dx of the first backward call
        if code is None:
            return
        act = activations.get(code)
        b = np.random.default_rng(g["seed"] + 1).standard_normal(g["F"]).astype(dtype) if use_bias else None
        zb = z_ref + (0 if b is None else b)
        y = kc.conv1d_forward(x, W, 1, 1, pl, lo, workspace={}, keep_cols=True, bias=b,
                              activation_code=activation_code(act))  # fmt: skip
        assert rel_err(y, act(zb)) <= tol
        dz_act = act.backward(zb, y.astype(np.float64), dz64)  # from the kernel's y, as the layer does
        dx, dW, db = kc.conv1d_backward_fused(x, W, y, dz, activation_code(act), 1, 1, pl)
        assert rel_err(dx, rc.conv1d_backward_data(dz_act, W64, L, 1, 1, pl)) <= tol
        assert rel_err(dW, rc.conv1d_backward_filter(x64, dz_act, 5, 1, 1, pl)) <= tol
        assert rel_err(db, dz_act.reshape(-1, g["F"]).sum(axis=0)) <= tol
        # without dx: dz formed chunk by chunk (winograd_conv1d_backward_filter_fused), from dy or from the rows of
        # a global average pooling's gradient (a view with stride 0 along the steps)
        pooled = np.broadcast_to(dz[:, :1], dz.shape)
        fused, real_fused = [], kw.winograd_conv1d_backward_filter_fused
        for dy in (dz, pooled):
            dz_act = act.backward(zb, y.astype(np.float64), dy.astype(np.float64))
            with mock.patch.object(kw, "winograd_conv1d_backward_filter_fused",
                                   lambda *a, **k: fused.append(1) or real_fused(*a, **k)):  # fmt: skip
                none, dW, db = kc.conv1d_backward_fused(x, W, y, dy, activation_code(act), 1, 1, pl, need_dx=False)
            assert none is None and len(fused) == (1 if dy is dz else 2)
            assert rel_err(dW, rc.conv1d_backward_filter(x64, dz_act, 5, 1, 1, pl)) <= tol
            assert rel_err(db, dz_act.reshape(-1, g["F"]).sum(axis=0)) <= tol


@given(g=geometry(), code=st.sampled_from([None, "relu", "tanh"]), use_bias=st.booleans(),
       chunk_bytes=st.sampled_from([1, 2000, 1 << 20]), threads=st.sampled_from([1, 2]),
       dtype=st.sampled_from([np.float64, np.float32]))  # fmt: skip
@example(g=dict(B=3, L=8, C=2, F=3, pl=0, lo=4, seed=6), code="relu", use_bias=True, chunk_bytes=1, threads=2,
         dtype=np.float32)  # fmt: skip
def test_the_pooled_forward_is_the_mean_of_the_forward(g, code, use_bias, chunk_bytes, threads, dtype):
    """winograd_conv1d_pooled = (1 / Lo) Σ_t act(conv(x, W) + b) of the direct reference, in chunks of one pair to
    all of them (a chunk may end inside a sample), on one and two threads."""
    x, W, _ = _arrays(g, dtype)
    rng = np.random.default_rng(g["seed"] + 2)
    b = rng.standard_normal(g["F"]).astype(dtype) if use_bias else None
    zb = rc.conv1d_forward(x.astype(np.float64), W.astype(np.float64), 1, 1, g["pl"], g["lo"])
    zb = zb + (0 if b is None or code is None else b)
    y = zb if code is None else activations.get(code)(zb)
    with mock.patch.object(kw, "CHUNK_BYTES", chunk_bytes), mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        p = kw.winograd_conv1d_pooled(x, W, g["pl"], g["lo"], b,
                                     None if code is None else activation_code(activations.get(code)))
    assert p.dtype == dtype and p.shape == (g["B"], g["F"])
    # a mean may cancel: its error is measured against the size of the steps it averages
    err = np.abs(p.astype(np.float64) - y.mean(axis=1)).max() / max(np.abs(y).max(), 1e-300)
    assert err <= (TOL if dtype == np.float64 else TOL32)


def test_conv1d_and_global_average_pooling_predict_through_the_pooled_winograd():
    """A Sequential's Conv1D(128, 5) -> GlobalAveragePooling1D on 64 channels predicts through winograd_conv1d_pooled
    (counted) and gives the two layers' own answer; with 64 filters the pooled im2col chunks run instead."""
    import tinynn as tn
    from tinynn import layers

    x = np.random.default_rng(0).standard_normal((16, 70, 64)).astype(np.float32)
    real = kw.winograd_conv1d_pooled
    for filters, expected in ((128, [1]), (64, [])):
        model = tn.Sequential([layers.Input((70, 64)), layers.Conv1D(filters, 5, activation="relu"),
                               layers.GlobalAveragePooling1D()])  # fmt: skip
        calls = []
        counted = (lambda *a, _calls=calls, **k: _calls.append(1) or real(*a, **k))  # noqa: E731
        with mock.patch.object(kw, "winograd_conv1d_pooled", counted):
            pooled = model.predict_on_batch(x)
        conv, pool = model.layers
        assert calls == expected
        assert rel_err(pooled, pool(conv(x)).astype(np.float64)) <= TOL32


def test_winograd_is_chosen_for_wide_five_tap_convolutions_over_enough_steps_only():
    f32, f64 = np.float32, np.float64
    assert kw.applies((5, 64, 64), 1, 1, 1, f32, 1024)
    assert kw.applies((5, 128, 128), 1, 1, 1, f32, 64 * 96) and kw.applies((5, 64, 256), 1, 1, 1, f32, 64 * 96)
    assert not kw.applies((5, 128, 256), 1, 1, 1, f32, 64 * 96)  # U outgrows half the L2 cache
    assert not kw.applies((5, 128, 128), 1, 1, 1, f64, 64 * 96) and kw.applies((5, 64, 128), 1, 1, 1, f64, 4096)
    assert not kw.applies((5, 64, 64), 1, 1, 1, f32, 1023)  # one short sample: the transforms cost more
    assert not kw.applies((3, 64, 64), 1, 1, 1, f32, 4096)
    assert not kw.applies((7, 64, 64), 1, 1, 1, f32, 4096)
    assert not kw.applies((5, 64, 64), 2, 1, 1, f32, 4096)
    assert not kw.applies((5, 64, 64), 1, 2, 1, f32, 4096)
    assert not kw.applies((5, 32, 64), 1, 1, 2, f32, 4096)
    assert not kw.applies((5, 32, 64), 1, 1, 1, f32, 4096)  # each product sums over C: too short
    assert not kw.applies((5, 64, 32), 1, 1, 1, f32, 4096)


def test_bad_shapes_are_refused_before_any_kernel_runs():
    x = np.zeros((2, 10, 3))
    with pytest.raises(ValueError, match=r"winograd_conv1d: needs .* got x \(2, 10, 3\), kernel \(3, 3, 4\)"):
        kw.winograd_conv1d(x, np.zeros((3, 3, 4)), 0, 8)
    with pytest.raises(ValueError, match="kernel \\(5, 2, 4\\)"):
        kw.winograd_conv1d(x, np.zeros((5, 2, 4)), 0, 6)
    with pytest.raises(ValueError, match="pad_left 5"):
        kw.winograd_conv1d(x, np.zeros((5, 3, 4)), 5, 6)
    with pytest.raises(ValueError, match="dz \\(3, 6, 4\\) does not match x \\(2, 10, 3\\)"):
        kw.winograd_conv1d_backward_filter(x, np.zeros((3, 6, 4)), 0)


def test_the_transforms_are_the_stated_matrices():
    """The twins' formulas are Bᵀ d, G W, Aᵀ m and A g with the matrices reference.conv states (WINOGRAD1D_BT,
    WINOGRAD1D_G, WINOGRAD1D_AT), and those matrices are F(2, 3) on steps 0-3 plus F(2, 2) on steps 3-5 (with W, the
    direct sum of the five taps)."""
    rng = np.random.default_rng(0)
    exact = dict(rtol=1e-15, atol=1e-15)  # the same sums, maybe in another order
    xp = rng.standard_normal((4, 6, 3))  # four samples of six steps: one pair each (Lp = 6), three channels
    assert np.allclose(rc.winograd1d_input_transform(xp), np.einsum("ar,trc->atc", rc.WINOGRAD1D_BT, xp), rtol=0,
                       atol=0)  # fmt: skip
    W = rng.standard_normal((5, 3, 2))
    assert np.allclose(rc.winograd1d_kernel_transform(W), np.einsum("ak,kcf->acf", rc.WINOGRAD1D_G, W), **exact)
    M = rng.standard_normal((7, 4, 2))
    assert np.allclose(rc.winograd1d_output_transform(M, 4, 2).transpose(1, 0, 2),
                       np.einsum("ia,atf->itf", rc.WINOGRAD1D_AT, M), **exact)  # fmt: skip
    g = rng.standard_normal((4, 2, 2))
    assert np.allclose(rc.winograd1d_gradient_transform(g, 1), np.einsum("ai,tif->atf", rc.WINOGRAD1D_AT.T, g), **exact)
    # Aᵀ [(G w) ⊙ (Bᵀ d)] is the correlation of the six steps with the five taps, for each of the two outputs
    w = rng.standard_normal(5)
    for t in range(4):
        steps = xp[t, :, 0]
        y = rc.WINOGRAD1D_AT @ ((rc.WINOGRAD1D_G @ w) * (rc.WINOGRAD1D_BT @ steps))
        assert np.allclose(y, [steps[0:5] @ w, steps[1:6] @ w], rtol=1e-14, atol=1e-14)
