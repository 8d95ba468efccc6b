"""The conv/pooling kernels: numba + BLAS versions agree with the readable NumPy references (float64 <= 1e-12),
the backward kernels are the exact adjoints of the forward ones, and the padding arithmetic is TF's."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pooling_inputs import pool_input

from tinynn.kernels import conv as kc
from tinynn.kernels import parallel
from tinynn.kernels import pooling as kp
from tinynn.kernels.bias_activation import bias_activation_forward
from tinynn.kernels.fastmath import HARD_SIGMOID, LINEAR, RELU, SIGMOID, TANH
from tinynn.kernels.reference import conv as rc
from tinynn.kernels.reference import pooling as rp

TOL = 1e-12


def rel_err(ours, ref):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300)) if ref.size else 0.0


@st.composite
def conv_geometry(draw):
    """Any legal 1-D conv geometry: kernel 1-9, stride 1-3, dilation 1-3, all paddings, groups, odd sizes."""
    K = draw(st.integers(1, 9))
    s = draw(st.integers(1, 3))
    d = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    eff = (K - 1) * d + 1
    L = (eff if padding == "valid" else 1) + draw(st.integers(0, 9))
    G = draw(st.integers(1, 3))
    Cg, Fg, B = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    pl, pr, l_out = kc.conv_padding(L, K, s, d, padding)
    assert l_out >= 1
    return dict(B=B, L=L, K=K, s=s, d=d, G=G, Cg=Cg, Fg=Fg, pl=pl, l_out=l_out, seed=draw(st.integers(0, 2**16)))


def _arrays(g, dtype=np.float64):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["B"], g["L"], g["G"] * g["Cg"])).astype(dtype)
    W = rng.standard_normal((g["K"], g["Cg"], g["G"] * g["Fg"])).astype(dtype)
    dz = rng.standard_normal((g["B"], g["l_out"], g["G"] * g["Fg"])).astype(dtype)
    return x, W, dz


@given(g=conv_geometry(), method=st.sampled_from(["im2col", "shift", "auto"]))
def test_conv_ops_match_reference(g, method):
    x, W, dz = _arrays(g)
    s, d, pl, G, L, K = g["s"], g["d"], g["pl"], g["G"], g["L"], g["K"]
    z_ref = rc.conv1d_forward(x, W, s, d, pl, g["l_out"], G)
    dx_ref = rc.conv1d_backward_data(dz, W, L, s, d, pl, G)
    dW_ref = rc.conv1d_backward_filter(x, dz, K, s, d, pl, G)
    assert rel_err(kc.conv1d_forward(x, W, s, d, pl, g["l_out"], G, method), z_ref) <= TOL
    dx, dW = kc.conv1d_backward(x, W, dz, s, d, pl, G, method)
    assert rel_err(dx, dx_ref) <= TOL
    assert rel_err(dW, dW_ref) <= TOL
    assert rel_err(kc.conv1d_backward_data(dz, W, L, s, d, pl, G, method), dx_ref) <= TOL
    assert rel_err(kc.conv1d_backward_filter(x, dz, K, s, d, pl, G, method), dW_ref) <= TOL


@given(g=conv_geometry(), multiplier=st.integers(1, 3))
@example(g=dict(B=2, L=9, K=3, s=1, d=1, G=4, Cg=1, Fg=1, pl=1, l_out=9, seed=1), multiplier=1)  # 'same'
@example(g=dict(B=1, L=11, K=4, s=2, d=1, G=3, Cg=1, Fg=2, pl=0, l_out=4, seed=2), multiplier=2)  # strided, M = 2
@example(g=dict(B=2, L=10, K=3, s=1, d=3, G=2, Cg=1, Fg=1, pl=6, l_out=10, seed=3), multiplier=3)  # dilated causal
def test_depthwise_direct_kernel_matches_reference(g, multiplier):
    """One input channel per group (the depthwise layers): the direct loop against the reference, chunked too."""
    g = {**g, "Cg": 1, "Fg": multiplier}
    x, W, dz = _arrays(g)
    s, d, pl, G, L, K, l_out = g["s"], g["d"], g["pl"], g["G"], g["L"], g["K"], g["l_out"]
    if G < 2:
        assert kc.choose_method(L, l_out, 1, multiplier, s, "auto", 1) != "depthwise"
        return
    assert kc.choose_method(L, l_out, G, G * multiplier, s, "auto", G) == "depthwise"
    for chunk_bytes in (1, 1 << 22):
        with mock.patch.multiple(kc, FORWARD_CHUNK_BYTES=chunk_bytes, BACKWARD_CHUNK_BYTES=chunk_bytes,
                                 DX_CHUNK_BYTES=chunk_bytes, SEQUENTIAL_BYTES=0):
            z_ref = rc.conv1d_forward(x, W, s, d, pl, l_out, G)
            assert rel_err(kc.conv1d_forward(x, W, s, d, pl, l_out, G), z_ref) <= TOL
            dx, dW = kc.conv1d_backward(x, W, dz, s, d, pl, G)
            assert rel_err(dx, rc.conv1d_backward_data(dz, W, L, s, d, pl, G)) <= TOL
            assert rel_err(dW, rc.conv1d_backward_filter(x, dz, K, s, d, pl, G)) <= TOL
            assert rel_err(kc.conv1d_backward_data(dz, W, L, s, d, pl, G), dx) <= TOL
            assert rel_err(kc.conv1d_backward_filter(x, dz, K, s, d, pl, G), dW) <= TOL
    with pytest.raises(ValueError, match="one input channel per group"):
        kc.choose_method(L, l_out, 2 * G, 2 * G, s, "depthwise", G)


_WORKSPACE: dict = {}  # shared by every example: buffers get reused across calls and reallocated on new shapes


@given(g=conv_geometry(), method=st.sampled_from(["im2col", "shift"]), chunk_bytes=st.sampled_from([1, 300, 1 << 22]))
def test_conv_ops_in_batch_chunks_with_reused_workspace(g, method, chunk_bytes):
    """Batches split in chunks (down to one sample each) on scratch buffers reused across calls and shapes."""
    x, W, dz = _arrays(g)
    s, d, pl, G, L, l_out = g["s"], g["d"], g["pl"], g["G"], g["L"], g["l_out"]
    z_ref = rc.conv1d_forward(x, W, s, d, pl, l_out, G)
    dx_ref = rc.conv1d_backward_data(dz, W, L, s, d, pl, G)
    dW_ref = rc.conv1d_backward_filter(x, dz, g["K"], s, d, pl, G)
    with mock.patch.multiple(kc, FORWARD_CHUNK_BYTES=chunk_bytes, BACKWARD_CHUNK_BYTES=chunk_bytes,
                                 DX_CHUNK_BYTES=chunk_bytes, SEQUENTIAL_BYTES=0):
        for _ in range(2):  # the second call runs on the buffers the first one left behind
            z = kc.conv1d_forward(x, W, s, d, pl, l_out, G, method, workspace=_WORKSPACE)
            dx, dW = kc.conv1d_backward(x, W, dz, s, d, pl, G, method, workspace=_WORKSPACE)
            assert rel_err(z, z_ref) <= TOL and rel_err(dx, dx_ref) <= TOL and rel_err(dW, dW_ref) <= TOL
            assert rel_err(kc.conv1d_backward_data(dz, W, L, s, d, pl, G, method, _WORKSPACE), dx_ref) <= TOL
            assert rel_err(kc.conv1d_backward_filter(x, dz, g["K"], s, d, pl, G, method, _WORKSPACE), dW_ref) <= TOL
    assert _WORKSPACE and not any(np.shares_memory(a, buf) for a in (z, dx, dW) for buf in _WORKSPACE.values())


@given(g=conv_geometry(), chunk_bytes=st.sampled_from([1, 300, 1 << 22]))
def test_kept_forward_columns_serve_the_backward_of_the_same_input_only(g, chunk_bytes):
    """keep_cols: the backward of the same x reuses the forward's columns (no im2col); any other x never does."""
    x, W, dz = _arrays(g)
    s, d, pl, G, L, K, l_out = g["s"], g["d"], g["pl"], g["G"], g["L"], g["K"], g["l_out"]
    ws: dict = {}
    with mock.patch.multiple(kc, FORWARD_CHUNK_BYTES=chunk_bytes, BACKWARD_CHUNK_BYTES=chunk_bytes,
                                 DX_CHUNK_BYTES=chunk_bytes, SEQUENTIAL_BYTES=0):
        z = kc.conv1d_forward(x, W, s, d, pl, l_out, G, "im2col", workspace=ws, keep_cols=True)
        assert rel_err(z, rc.conv1d_forward(x, W, s, d, pl, l_out, G)) <= TOL
        kept = G == 1  # grouped columns are chunked group-major, so only G = 1 keeps them
        assert ("kept_cols_of" in ws) == kept
        with mock.patch.object(kc, "im2col", wraps=kc.im2col) as spy:
            dx, dW = kc.conv1d_backward(x, W, dz, s, d, pl, G, "im2col", workspace=ws)
        assert spy.called != kept
        assert rel_err(dx, rc.conv1d_backward_data(dz, W, L, s, d, pl, G)) <= TOL
        assert rel_err(dW, rc.conv1d_backward_filter(x, dz, K, s, d, pl, G)) <= TOL
        other = x[::-1] + 1.0  # same shape, another array: its own columns
        dW_other = kc.conv1d_backward_filter(other, dz, K, s, d, pl, G, "im2col", ws)
        assert rel_err(dW_other, rc.conv1d_backward_filter(other, dz, K, s, d, pl, G)) <= TOL
        kc.conv1d_forward(other, W, s, d, pl, l_out, G, "im2col", workspace=ws)  # a forward without keep_cols
        assert "kept_cols_of" not in ws
        with mock.patch.object(kc, "im2col", wraps=kc.im2col) as spy:
            assert rel_err(kc.conv1d_backward_filter(x, dz, K, s, d, pl, G, "im2col", ws),
                           rc.conv1d_backward_filter(x, dz, K, s, d, pl, G)) <= TOL
        assert spy.called


@given(g=conv_geometry())
def test_reference_backward_is_the_adjoint_of_forward(g):
    """<conv(x, W), dz> = <x, conv_dx(dz)> = <W, conv_dW(x, dz)>: the references are right, not just consistent."""
    x, W, dz = _arrays(g)
    s, d, pl, G = g["s"], g["d"], g["pl"], g["G"]
    inner = np.sum(rc.conv1d_forward(x, W, s, d, pl, g["l_out"], G) * dz)
    scale = np.sum(np.abs(x)) * np.sum(np.abs(W)) * np.max(np.abs(dz))
    assert abs(inner - np.sum(x * rc.conv1d_backward_data(dz, W, g["L"], s, d, pl, G))) <= TOL * scale
    assert abs(inner - np.sum(W * rc.conv1d_backward_filter(x, dz, g["K"], s, d, pl, G))) <= TOL * scale


@given(g=conv_geometry())
def test_index_kernels_match_numpy_twins_and_are_adjoint(g):
    x, W, dz = _arrays(g)
    s, d, pl, G, K, L, l_out = g["s"], g["d"], g["pl"], g["G"], g["K"], g["L"], g["l_out"]
    cols = kc.im2col(x, G, K, s, d, pl, l_out)
    np.testing.assert_array_equal(cols, rc.im2col(x, G, K, s, d, pl, l_out))
    U = kc.spread(dz, G, L, K, s, d, pl)
    np.testing.assert_array_equal(U, rc.spread(dz, G, L, K, s, d, pl))
    rng = np.random.default_rng(g["seed"] + 1)
    c = rng.standard_normal(cols.shape)
    Z = rng.standard_normal(U.shape)
    assert rel_err(kc.col2im(c, L, s, d, pl), rc.col2im(c, L, s, d, pl)) <= TOL
    assert rel_err(kc.shift_add(Z, s, d, pl, l_out), rc.shift_add(Z, s, d, pl, l_out)) <= TOL
    # col2im is im2col's adjoint and spread is shift_add's: <A v, w> = <v, Aᵀ w>
    assert np.isclose(np.sum(cols * c), np.sum(x * kc.col2im(c, L, s, d, pl)), rtol=1e-12, atol=1e-12)
    assert np.isclose(np.sum(kc.shift_add(Z, s, d, pl, l_out) * dz), np.sum(Z * U), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["im2col", "shift"])
def test_conv_ops_float32_close_to_float64(method):
    g = dict(B=2, L=13, K=4, s=1, d=2, G=2, Cg=3, Fg=2, pl=3, l_out=13, seed=3)
    x, W, dz = _arrays(g)
    z64 = kc.conv1d_forward(x, W, 1, 2, 3, 13, 2, method)
    z32 = kc.conv1d_forward(x.astype(np.float32), W.astype(np.float32), 1, 2, 3, 13, 2, method)
    x32, W32, dz32 = x.astype(np.float32), W.astype(np.float32), dz.astype(np.float32)
    dx32, dW32 = kc.conv1d_backward(x32, W32, dz32, 1, 2, 3, 2, method)
    dx64, dW64 = kc.conv1d_backward(x, W, dz, 1, 2, 3, 2, method)
    assert z32.dtype == dx32.dtype == dW32.dtype == np.float32
    assert rel_err(z32.astype(np.float64), z64) < 1e-6
    assert rel_err(dx32.astype(np.float64), dx64) < 1e-6 and rel_err(dW32.astype(np.float64), dW64) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding, K, d, chunk_bytes", [("valid", 3, 1, 4 << 20), ("same", 4, 2, 1),
                                                        ("causal", 3, 3, 1), ("same", 5, 1, 4 << 20)])  # fmt: skip
def test_an_inference_forward_with_many_channels_runs_one_product_per_tap(padding, K, d, chunk_bytes, dtype):
    """'auto', stride 1, one group, C >= TAPS_MIN_CHANNELS and F > C (im2col territory), no columns to keep: one
    product per tap into the same rows (kernels.conv._taps_forward), in batch chunks down to one sample; equal to
    the reference; a training forward (keep_cols) keeps its im2col columns instead."""
    rng = np.random.default_rng(4)
    B, L, C, F = 5, 19, kc.TAPS_MIN_CHANNELS, kc.TAPS_MIN_CHANNELS + 7
    x, W = rng.normal(size=(B, L, C)).astype(dtype), rng.normal(size=(K, C, F)).astype(dtype)
    pl, _, l_out = kc.conv_padding(L, K, 1, d, padding)
    assert kc.choose_method(L, l_out, C, F, 1) == "im2col"
    tol = 1e-5 if dtype == np.float32 else 1e-12
    with mock.patch.multiple(kc, FORWARD_CHUNK_BYTES=chunk_bytes, SEQUENTIAL_BYTES=0):
        for keep, budget in ((False, kc.KEEP_COLS_BYTES), (True, kc.KEEP_COLS_BYTES), (True, 1)):
            ws = {}
            kept = keep and budget > 1  # columns beyond the budget are not kept: nothing to copy them for
            with mock.patch.object(kc, "im2col", wraps=kc.im2col) as spy, \
                    mock.patch.object(kc, "KEEP_COLS_BYTES", budget):  # fmt: skip
                z = kc.conv1d_forward(x, W, 1, d, pl, l_out, workspace=ws, keep_cols=keep)
            assert spy.called == kept and ("kept_cols_of" in ws) == kept
            assert rel_err(z, rc.conv1d_forward(x, W, 1, d, pl, l_out)) <= tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_short_samples_with_many_channels_and_fewer_filters_run_one_product_per_tap(padding, dtype):
    """'auto' in shift territory (F < C, stride 1, one group), C >= TAPS_MIN_CHANNELS: the products per tap when a
    sample's x is at most TAPS_SHIFT_SAMPLE_BYTES, else the shift method; both equal to the reference."""
    rng = np.random.default_rng(16)
    B, L, K, d, C, F = 4, 17, 3, 2, kc.TAPS_MIN_CHANNELS, 5
    x, W = rng.normal(size=(B, L, C)).astype(dtype), rng.normal(size=(K, C, F)).astype(dtype)
    pl, _, l_out = kc.conv_padding(L, K, 1, d, padding)
    assert kc.choose_method(L, l_out, C, F, 1) == "shift"
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for limit, taps_expected in ((L * C * x.itemsize, True), (L * C * x.itemsize - 1, False)):
        with mock.patch.object(kc, "TAPS_SHIFT_SAMPLE_BYTES", limit), \
                mock.patch.object(kc, "_taps_forward", wraps=kc._taps_forward) as taps:
            for keep in (False, True):
                z = kc.conv1d_forward(x, W, 1, d, pl, l_out, workspace={}, keep_cols=keep)
                assert rel_err(z, rc.conv1d_forward(x, W, 1, d, pl, l_out)) <= tol
        assert taps.call_count == (2 if taps_expected else 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", ["taps", "im2col", "shift", "depthwise", "groups", "distinct", "window pass"])
def test_the_fused_bias_activation_tail_gives_the_bits_of_the_separate_pass(path, dtype):
    """conv1d_forward(..., bias, activation_code) = bias_activation_forward(conv1d_forward(...), bias, code) bit for
    bit on every path (each batch chunk's rows get the tail right after they are computed; the window pass copies
    whole rows after it), for every activation the kernels implement, with and without a bias."""
    rng = np.random.default_rng(14)
    B, L, K, s, d, pl, G, method = 6, 23, 3, 1, 1, 1, 1, "auto"
    C, F = {"taps": (kc.TAPS_MIN_CHANNELS, 70), "im2col": (4, 9), "shift": (8, 3), "depthwise": (5, 10),
            "groups": (6, 9), "distinct": (5, 4), "window pass": (5, 9)}[path]
    if path == "im2col":
        s = 2
    G = {"depthwise": 5, "groups": 3}.get(path, 1)
    x = rng.normal(size=(B, L, C)).astype(dtype)
    if path == "distinct":  # a few distinct steps and all-zero padding: the distinct-steps forward
        x = np.concatenate([np.zeros((1, C)), rng.normal(size=(3, C))]).astype(dtype)[rng.integers(0, 4, (B, L))]
    if path == "window pass":  # repeated windows but too many distinct steps for the distinct-steps forward
        x[3] = x[1]
    l_out = (L + 2 * pl - (K - 1) * d - 1) // s + 1
    W, b = rng.normal(size=(K, C // G, F)).astype(dtype), rng.normal(size=F).astype(dtype)
    expected_method = {"taps": "im2col", "im2col": "im2col", "shift": "shift", "depthwise": "depthwise"}.get(path)
    if expected_method:
        assert kc.choose_method(L, l_out, C, F, s, method, G) == expected_method
    with mock.patch.multiple(kc, FORWARD_CHUNK_BYTES=1, SEQUENTIAL_BYTES=0), \
            mock.patch.object(kc, "_taps_forward", wraps=kc._taps_forward) as taps, \
            mock.patch.object(kc, "shift_add_rows", wraps=kc.shift_add_rows) as distinct, \
            mock.patch.object(kc.windows, "share_identical_windows", wraps=kc.windows.share_identical_windows) as wp:
        for code in (LINEAR, TANH, SIGMOID, RELU, HARD_SIGMOID):
            for bias in (b, None):
                y = kc.conv1d_forward(x, W, s, d, pl, l_out, G, method, workspace={}, bias=bias, activation_code=code)
                z = kc.conv1d_forward(x, W, s, d, pl, l_out, G, method, workspace={})
                np.testing.assert_array_equal(y, bias_activation_forward(z, bias, code))
    assert taps.called == (path == "taps") and distinct.called == (path == "distinct")
    if path in ("window pass", "distinct"):
        assert wp.called == (path == "window pass")  # the distinct-steps forward needs no window pass


def test_auto_method_choice():
    assert kc.choose_method(500, 494, 128, 32, 1) == "shift"  # the benchmark's first conv: F < C, s = 1
    assert kc.choose_method(98, 92, 32, 32, 1) == "im2col"
    assert kc.choose_method(500, 250, 128, 32, 2) == "im2col"  # strided: shift would waste FLOPs
    with pytest.raises(ValueError, match="method"):
        kc.choose_method(5, 5, 1, 1, 1, "fft")


# TF's 'same' rule, checked with Keras: (L, K, s, d) -> (left, right), the extra pad on the right.
@pytest.mark.parametrize(
    "L,K,s,d,expected",
    [(10, 4, 1, 1, (1, 2)), (10, 4, 2, 1, (1, 1)), (11, 3, 2, 1, (1, 1)), (10, 2, 3, 1, (0, 1)), (10, 4, 1, 2, (3, 3))],
)
def test_same_padding_split(L, K, s, d, expected):
    pl, pr, l_out = kc.conv_padding(L, K, s, d, "same")
    assert (pl, pr) == expected and l_out == -(-L // s)


def test_causal_and_valid_padding():
    assert kc.conv_padding(10, 4, 1, 3, "causal") == (9, 0, 10)
    assert kc.conv_padding(10, 4, 2, 1, "causal") == (3, 0, 5)
    assert kc.conv_padding(10, 4, 1, 3, "valid") == (0, 0, 1)
    assert kc.conv_padding(9, 4, 1, 3, "valid")[2] == 0  # one step too short: empty output
    with pytest.raises(ValueError, match="padding"):
        kc.conv_padding(10, 3, 1, 1, "full")


def test_kernel_wrappers_reject_inconsistent_shapes():
    x = np.zeros((2, 5, 4))
    with pytest.raises(ValueError, match="groups"):
        kc.conv1d_forward(x, np.zeros((3, 3, 2)), groups=1)
    with pytest.raises(ValueError, match="empty output"):
        kc.conv1d_forward(x, np.zeros((6, 4, 2)))
    with pytest.raises(ValueError, match="dz"):
        kc.conv1d_backward(x, np.zeros((3, 4, 2)), np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="geometry"):
        kp.max_pool1d_forward(x, 2, 2, 0, 4)  # the last window would start past the end
    with pytest.raises(ValueError, match="argmax"):
        kp.max_pool1d_backward(np.zeros((2, 2, 4)), np.full((2, 2, 4), 7), 5)
    with pytest.raises(ValueError, match=r"argmax steps outside \[0, 5\)"):
        kp.max_pool1d_backward(np.zeros((2, 2, 4)), np.full((2, 2, 4), -1), 5)


# --------------------------------------------------------------------------- pooling
@st.composite
def pool_geometry(draw):
    P, S = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    padding = draw(st.sampled_from(["valid", "same"]))
    L = (P if padding == "valid" else 1) + draw(st.integers(0, 10))
    pl, _, l_out = kc.conv_padding(L, P, S, 1, padding)
    return dict(B=draw(st.integers(1, 3)), L=L, C=draw(st.integers(1, 4)), P=P, S=S, pl=pl, l_out=l_out,
                values=draw(st.sampled_from(["normal", "ties", "nans"])), seed=draw(st.integers(0, 2**16)))  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_values_on_batch_pieces(dtype):
    """Large enough to run on batch pieces (share_batch): the values of the argmax kernel, bit for bit, also with
    ties, in odd-sized pieces and with 'same' padding."""
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((37, 301, 64)) * 2).astype(dtype)
    for P, S, padding in ((3, 3, "valid"), (4, 2, "same"), (5, 1, "valid")):
        pl, _, l_out = kc.conv_padding(x.shape[1], P, S, 1, padding)
        y = kp.max_pool1d_values(x, P, S, pl, l_out)
        np.testing.assert_array_equal(y, kp.max_pool1d_forward(x, P, S, pl, l_out)[0])
        np.testing.assert_array_equal(y, rp.max_pool1d_values(x, P, S, pl, l_out))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_training_kernels_on_batch_pieces(dtype):
    """The training forward (values and argmax steps) and backward, large enough for batch pieces: the twin's bits
    with ties and 'same' padding; an argmax step outside x in the last sample is still refused."""
    rng = np.random.default_rng(4)
    x = np.round(rng.standard_normal((37, 301, 64)) * 2).astype(dtype)
    assert 4 * x.size >= parallel.PARALLEL_WORK
    for P, S, padding in ((3, 3, "valid"), (4, 2, "same"), (5, 1, "valid")):
        pl, _, l_out = kc.conv_padding(x.shape[1], P, S, 1, padding)
        y, a = kp.max_pool1d_forward(x, P, S, pl, l_out)
        y_ref, a_ref = rp.max_pool1d_forward(x, P, S, pl, l_out)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(a, a_ref)
        dy = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_array_equal(kp.max_pool1d_backward(dy, a, x.shape[1]),
                                      rp.max_pool1d_backward(dy, a, x.shape[1]))  # fmt: skip
    a[-1, -1, -1] = x.shape[1]
    with pytest.raises(ValueError, match="argmax steps outside"):
        kp.max_pool1d_backward(dy, a, x.shape[1])


@given(g=pool_geometry())
@example(g=dict(B=2, L=9, C=3, P=3, S=2, pl=0, l_out=4, values="nans", seed=3))
def test_pool_kernels_match_reference(g):
    rng = np.random.default_rng(g["seed"])
    xm, x = pool_input(rng, (g["B"], g["L"], g["C"]), g["values"])
    args = (g["P"], g["S"], g["pl"], g["l_out"])
    y, a = kp.max_pool1d_forward(xm, *args)
    y_ref, a_ref = rp.max_pool1d_forward(xm, *args)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(a, a_ref)
    np.testing.assert_array_equal(kp.max_pool1d_values(xm, *args), y)  # inference: the values alone, same bits
    np.testing.assert_array_equal(rp.max_pool1d_values(xm, *args), y_ref)
    dy = rng.standard_normal(y.shape)
    assert rel_err(kp.max_pool1d_backward(dy, a, g["L"]), rp.max_pool1d_backward(dy, a, g["L"])) <= TOL
    assert rel_err(kp.avg_pool1d_forward(x, *args), rp.avg_pool1d_forward(x, *args)) <= TOL
    dx = kp.avg_pool1d_backward(dy, g["L"], g["P"], g["S"], g["pl"])
    assert rel_err(dx, rp.avg_pool1d_backward(dy, g["L"], g["P"], g["S"], g["pl"])) <= TOL
    # adjoint: <avg(x), dy> = <x, avg_dx(dy)>
    assert np.isclose(np.sum(kp.avg_pool1d_forward(x, *args) * dy), np.sum(x * dx), rtol=1e-12, atol=1e-12)


@given(B=st.integers(1, 3), L=st.integers(1, 9), C=st.integers(1, 5), ties=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
@example(B=2, L=6, C=3, ties=True, dtype=np.float32, seed=3)  # tied maxima share their gradient
@example(B=1, L=1, C=1, ties=False, dtype=np.float64, seed=0)
def test_global_pool_kernels_match_reference(B, L, C, ties, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, L, C))
    x = (np.round(x) if ties else x).astype(dtype)
    dy = rng.standard_normal((B, C)).astype(dtype)
    tol = TOL if dtype == np.float64 else 1e-6
    y = kp.global_max_pool1d_forward(x)
    np.testing.assert_array_equal(y, rp.global_max_pool1d_forward(x))
    dx = kp.global_max_pool1d_backward(x, y, dy)
    assert rel_err(dx, rp.global_max_pool1d_backward(x, y, dy)) <= tol
    np.testing.assert_allclose(dx.sum(axis=1), dy, rtol=1e-5)  # every dy shared out in full
    assert rel_err(kp.global_avg_pool1d_forward(x), rp.global_avg_pool1d_forward(x)) <= tol
    assert rel_err(kp.global_avg_pool1d_backward(dy, L), rp.global_avg_pool1d_backward(dy, L)) <= tol


def test_global_max_pool_keeps_nan_as_numpy():
    x = np.array([[[1.0], [np.nan], [3.0]]])
    assert np.isnan(kp.global_max_pool1d_forward(x)).all() and np.isnan(rp.global_max_pool1d_forward(x)).all()


def test_same_average_pool_excludes_padding():
    # checked with Keras: x = 1..7, P=3 -> [1.5, 4, 6.5]; P=4, S=3 -> [2, 4.5, 6.5]
    x = np.arange(1.0, 8.0).reshape(1, 7, 1)
    pl, _, l_out = kc.conv_padding(7, 3, 3, 1, "same")
    np.testing.assert_allclose(kp.avg_pool1d_forward(x, 3, 3, pl, l_out).ravel(), [1.5, 4, 6.5])
    pl, _, l_out = kc.conv_padding(7, 4, 3, 1, "same")
    np.testing.assert_allclose(kp.avg_pool1d_forward(x, 4, 3, pl, l_out).ravel(), [2, 4.5, 6.5])


def test_max_pool_padding_never_wins():
    x = -np.arange(1.0, 6.0).reshape(1, 5, 1)  # all negative: a zero pad would win
    pl, _, l_out = kc.conv_padding(5, 4, 2, 1, "same")
    y, _ = kp.max_pool1d_forward(x, 4, 2, pl, l_out)
    assert np.all(y < 0)


def test_small_passes_run_as_one_range_and_large_ones_in_chunks_for_the_cores():
    assert kc._chunk_ranges(8, 1000, kc.FORWARD_CHUNK_BYTES) == [(0, 8)]  # 8 kB of scratch: no hand-off
    ranges = kc._chunk_ranges(64, kc.SEQUENTIAL_BYTES, kc.FORWARD_CHUNK_BYTES)
    assert len(ranges) >= min(64, 2 * kc.num_threads()) and ranges[0][0] == 0 and ranges[-1][1] == 64
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_a_pass_with_little_scratch_but_much_work_is_split():
    """Few filters write little scratch for many multiply-adds: the work alone decides then."""
    small_scratch = kc.SEQUENTIAL_BYTES // 64 - 1
    assert kc._chunk_ranges(64, small_scratch, kc.FORWARD_CHUNK_BYTES, kc.SEQUENTIAL_WORK - 1) == [(0, 64)]
    ranges = kc._chunk_ranges(64, small_scratch, kc.FORWARD_CHUNK_BYTES, kc.SEQUENTIAL_WORK)
    assert len(ranges) == min(64, 2 * kc.num_threads()) and ranges[0][0] == 0 and ranges[-1][1] == 64


@pytest.mark.parametrize("C", [64, 128])
def test_a_few_filter_convolution_hands_its_batch_to_the_cores(C, monkeypatch):
    """Conv1D(32, 5) on (64, 100, C) float32 in inference (products per tap into the output rows): under 1 MB of
    scratch, but 2^26+ multiply-adds. It gives the cores several batch ranges, and equals the reference (float32
    tolerance)."""
    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    seen = []
    real_share = kc.share
    monkeypatch.setattr(kc, "share", lambda task, ranges, work=None: seen.append(len(ranges))
                        or real_share(task, ranges, work))
    rng = np.random.default_rng(7)
    B, L, K, F = 64, 100, 5, 32
    x, W = rng.standard_normal((B, L, C)).astype(np.float32), rng.standard_normal((K, C, F)).astype(np.float32)
    assert B * L * F * 4 < kc.SEQUENTIAL_BYTES <= B * L * K * C * 4  # (taps' scratch < 1 MB < im2col's columns)
    z = kc.conv1d_forward(x, W)
    ref = rc.conv1d_forward(x.astype(np.float64), W.astype(np.float64)).astype(np.float32)
    assert seen == [4] and rel_err(z, ref) <= 1e-5


def _act_and_derivative(code, z):
    """(act(z), act'(z) as a function of y) in NumPy, for the codes the 2-D fused backward reads."""
    if code == RELU:
        return np.maximum(z, 0), lambda y: (y > 0).astype(y.dtype)
    if code == TANH:
        return np.tanh(z), lambda y: 1 - y * y
    return z, np.ones_like


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code", [RELU, TANH, LINEAR])
@pytest.mark.parametrize("padding, K, s, d", [("valid", 5, 1, 1), ("same", 4, 2, 1), ("causal", 3, 1, 2)])
@pytest.mark.parametrize("broadcast_dy", [False, True])
def test_a_long_training_pass_runs_by_the_2d_kernels_with_the_reference_numbers(padding, K, s, d, code, dtype,
                                                                                broadcast_dy, monkeypatch):
    """From FUSED_MIN_ROWS output steps (lowered here to reach the path at a small size) a one-group training
    forward (keep_cols) runs as the 2-D convolution of an L×1 image with the bias and activation fused, and
    conv1d_backward_fused by the 2-D fused backward: y, dx, dW and db agree with the NumPy references (float64 1e-12,
    float32 1e-5 relative), for a full dy and for a global average pooling's broadcast view. Below the threshold
    both run this module's pair, with the same numbers up to rounding."""
    from tinynn.kernels import conv2d as k2

    rng = np.random.default_rng(K + s + d + code)
    B, L, C, F = 5, 17, 6, kc.FUSED_MIN_FILTERS + 1
    pl, _, l_out = kc.conv_padding(L, K, s, d, padding)
    x = rng.standard_normal((B, L, C)).astype(dtype)
    W = (rng.standard_normal((K, C, F)) * 0.5).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    dy = rng.standard_normal((B, 1 if broadcast_dy else l_out, F)).astype(dtype)
    if broadcast_dy:
        dy = np.broadcast_to(dy, (B, l_out, F))
    y64, act_prime = _act_and_derivative(code, rc.conv1d_forward(x.astype(np.float64), W.astype(np.float64), s, d,
                                                                 pl, l_out, 1) + b)  # fmt: skip
    dz64 = act_prime(y64) * dy
    expected = (y64, rc.conv1d_backward_data(dz64, W.astype(np.float64), L, s, d, pl, 1),
                rc.conv1d_backward_filter(x.astype(np.float64), dz64, K, s, d, pl, 1), dz64.sum(axis=(0, 1)))
    tol = TOL if dtype == np.float64 else 1e-5
    for min_rows, by_2d in ((1, True), (B * l_out + 1, False)):
        monkeypatch.setattr(kc, "FUSED_MIN_ROWS", min_rows)
        assert kc.trains_by_conv2d(W, dtype, B * l_out) == by_2d
        ws: dict = {}
        fused_2d = k2.conv2d_backward_fused
        with mock.patch.object(k2, "conv2d_forward", wraps=k2.conv2d_forward) as forward_2d, \
                mock.patch.object(k2, "conv2d_backward_fused", wraps=fused_2d) as backward_2d:  # fmt: skip
            y = kc.conv1d_forward(x, W, s, d, pl, l_out, workspace=ws, keep_cols=True, bias=b, activation_code=code)
            dx, dW, db = kc.conv1d_backward_fused(x, W, y, dy, code, s, d, pl, 1, need_dx=True, workspace=ws)
            no_dx, dW_only, _ = kc.conv1d_backward_fused(x, W, y, dy, code, s, d, pl, 1, need_dx=False, workspace=ws)
        assert forward_2d.called == by_2d and backward_2d.called == by_2d
        assert ("kept_cols_of" in ws) != by_2d  # the 2-D pair keeps no columns
        assert no_dx is None and np.array_equal(dW_only, dW)
        for ours, ref in zip((y, dx, dW, db), expected):
            assert ours.shape == ref.shape
            assert float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref))) <= tol


def test_the_2d_training_pair_keeps_identical_windows_identical_and_its_limits(monkeypatch):
    """On the 2-D path too, bit-identical input windows get bit-identical outputs (the window pass runs after it:
    max poolings resolve their exact ties by position); inference forwards and passes beyond the limits keep this
    module's kernels."""
    from tinynn.kernels import conv2d as k2

    monkeypatch.setattr(kc, "FUSED_MIN_ROWS", 1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 23, 5)).astype(np.float32)
    x[3] = x[1]  # repeated windows, too many distinct steps for the distinct-steps forward
    F = kc.FUSED_MIN_FILTERS
    W, b = rng.standard_normal((3, 5, F)).astype(np.float32), rng.standard_normal(F).astype(np.float32)
    with mock.patch.object(k2, "conv2d_forward", wraps=k2.conv2d_forward) as forward_2d, \
            mock.patch.object(kc.windows, "share_identical_windows",
                              wraps=kc.windows.share_identical_windows) as window_pass:  # fmt: skip
        y = kc.conv1d_forward(x, W, 1, 1, 1, 23, workspace={}, keep_cols=True, bias=b, activation_code=RELU)
        assert forward_2d.call_count == 1 and window_pass.called
        np.testing.assert_array_equal(y[3], y[1])
        kc.conv1d_forward(x, W, 1, 1, 1, 23, workspace={}, bias=b, activation_code=RELU)  # inference
        assert forward_2d.call_count == 1
    rows = 1 << 20
    assert kc.trains_by_conv2d(np.zeros((5, 64, 256), np.float32), np.float32, rows)
    assert not kc.trains_by_conv2d(np.zeros((5, 64, kc.FUSED_MAX_FILTERS + 1), np.float32), np.float32, rows)
    too_wide = kc.CONV2D_MAX_WEIGHT_BYTES // (5 * 256 * 4) + 1  # channels whose (K·C × F) matrix passes the limit
    assert not kc.trains_by_conv2d(np.zeros((5, too_wide, 256), np.float32), np.float32, rows)
    assert not kc.trains_by_conv2d(np.zeros((5, 64, kc.FUSED_MIN_FILTERS - 1), np.float32), np.float32, rows)
    monkeypatch.undo()
    rows = kc.FUSED_MIN_ROWS
    assert kc.trains_by_conv2d(np.zeros((5, 64, 128), np.float32), np.float32, rows)
    assert not kc.trains_by_conv2d(np.zeros((5, 64, 128), np.float32), np.float32, rows - 1)
    # a layer's warm-up runs one sample: it compiles the long passes' 2-D kernels too, and returns its own paths'
    from tinynn.kernels import warmup

    dy = rng.standard_normal((6, 23, F)).astype(np.float32)
    monkeypatch.setattr(warmup._local, "warming", True, raising=False)
    with mock.patch.object(k2, "conv2d_forward", wraps=k2.conv2d_forward) as forward_2d, \
            mock.patch.object(k2, "conv2d_backward_fused", wraps=k2.conv2d_backward_fused) as backward_2d:  # fmt: skip
        y_warm = kc.conv1d_forward(x, W, 1, 1, 1, 23, workspace={}, keep_cols=True, bias=b, activation_code=RELU)
        grads = kc.conv1d_backward_fused(x, W, y_warm, dy, RELU, 1, 1, 1, 1, need_dx=True, workspace={})
        assert forward_2d.call_count == 1 and backward_2d.call_count == 1
    monkeypatch.setattr(warmup._local, "warming", False)
    y = kc.conv1d_forward(x, W, 1, 1, 1, 23, keep_cols=True, bias=b, activation_code=RELU)
    for ours, theirs in zip((y_warm, *grads), (y, *kc.conv1d_backward_fused(x, W, y_warm, dy, RELU, 1, 1, 1, 1))):
        assert float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))) <= 1e-5  # other paths, float32 rounding


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding, K, s, d", [("valid", 5, 1, 1), ("same", 4, 2, 1), ("causal", 3, 1, 2)])
def test_a_convolution_of_lookups_from_the_table_gives_the_bits_of_the_formed_lookups(padding, K, s, d, dtype):
    """conv1d_forward_lookup(table, ids, ...) = conv1d_forward(table[ids], ...) bit for bit (the Embedding's output
    noted, as a layer call does), with every tail code and without a bias: repeated ids, an all-zero row and two ids
    whose rows are bitwise equal (they merge); None when too many steps are distinct (the caller forms the lookups)."""
    rng = np.random.default_rng(K + s + d)
    V, C, F, B, L = 40, 6, 5, 4, 30
    table = rng.standard_normal((V, C)).astype(dtype)
    table[0] = 0.0
    table[7] = table[11]
    ids = rng.integers(0, 12, (B, L))
    ids[:, :8] = 0  # left padding
    pl, _, l_out = kc.conv_padding(L, K, s, d, padding)
    W, b = rng.standard_normal((K, C, F)).astype(dtype), rng.standard_normal(F).astype(dtype)
    x = table[ids]
    for code in (LINEAR, TANH, RELU, HARD_SIGMOID, None):
        for bias in (b, None):
            ours = kc.conv1d_forward_lookup(table, ids, W, s, d, pl, l_out, {}, bias, code)
            kc.windows.note_lookup(x, ids)
            theirs = kc.conv1d_forward(x, W, s, d, pl, l_out, workspace={}, bias=bias, activation_code=code)
            np.testing.assert_array_equal(ours, theirs)
    assert rel_err(ours.astype(np.float64), rc.conv1d_forward(x.astype(np.float64), W.astype(np.float64), s, d, pl,
                                                              l_out, 1)) <= (TOL if dtype == np.float64 else 1e-5)
    all_distinct = rng.permutation(V)[: B * 10].reshape(B, 10)
    assert kc.conv1d_forward_lookup(table, all_distinct, W, 1, 1, 0, 10 - K + 1) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding, K, s, d", [("valid", 5, 1, 1), ("same", 4, 2, 1), ("causal", 3, 1, 2)])
@pytest.mark.parametrize("F", [5, 9])  # stride 1 and fewer filters than channels: the shift method's dx; else im2col
def test_the_backward_of_a_convolution_of_lookups_gives_the_bits_of_the_formed_lookups(padding, K, s, d, F, dtype):
    """A training conv1d_forward_lookup (keep) and conv1d_backward_lookup give the bits of conv1d_forward on the
    formed lookups (noted, keep_cols) and conv1d_backward_fused: y, dx, dW and db, with and without dx, for every
    fused activation, a random upstream gradient and a non-zero bias."""
    rng = np.random.default_rng(K + s + d + F)
    V, C, B, L = 40, 6, 4, 30
    table = rng.standard_normal((V, C)).astype(dtype)
    table[0] = 0.0
    table[7] = table[11]
    ids = rng.integers(0, 12, (B, L))
    ids[:, :8] = 0
    pl, _, l_out = kc.conv_padding(L, K, s, d, padding)
    W, b = rng.standard_normal((K, C, F)).astype(dtype), rng.standard_normal(F).astype(dtype)
    x = table[ids]
    shift_calls = []
    real_shift = kc._distinct_backward_shift
    with mock.patch.object(kc, "_distinct_backward_shift", lambda *a: shift_calls.append(1) or real_shift(*a)):
        for code in (LINEAR, TANH, RELU, HARD_SIGMOID):
            for need_dx in (True, False):
                ws_ours, ws_theirs = {}, {}
                y = kc.conv1d_forward_lookup(table, ids, W, s, d, pl, l_out, ws_ours, b, code, keep=True)
                kc.windows.note_lookup(x, ids)
                y_theirs = kc.conv1d_forward(x, W, s, d, pl, l_out, workspace=ws_theirs, keep_cols=True, bias=b,
                                             activation_code=code)  # fmt: skip
                np.testing.assert_array_equal(y, y_theirs)
                dy = rng.standard_normal(y.shape).astype(dtype)
                ours = kc.conv1d_backward_lookup(W, y, dy, code, s, d, pl, need_dx, ws_ours)
                theirs = kc.conv1d_backward_fused(x, W, y_theirs, dy, code, s, d, pl, need_dx=need_dx,
                                                  workspace=ws_theirs)  # fmt: skip
                assert (ours[0] is None) == (theirs[0] is None) == (not need_dx)
                for a, e in zip(ours, theirs):
                    if e is not None:
                        np.testing.assert_array_equal(a, e)
    assert bool(shift_calls) == (kc.choose_method(L, l_out, C, F, s) == "shift")


def test_the_backward_of_a_convolution_of_lookups_needs_its_forward():
    """conv1d_backward_lookup refuses a workspace without a training forward of that geometry (none yet, an
    inference forward, another geometry) before any kernel runs."""
    rng = np.random.default_rng(9)
    table, W = rng.standard_normal((10, 3)), rng.standard_normal((2, 3, 4))
    ids = np.zeros((2, 6), np.int64)
    y, dy = np.zeros((2, 5, 4)), np.ones((2, 5, 4))
    for ws in ({}, {"distinct_of": None}):
        with pytest.raises(ValueError, match="no training forward on an Embedding's ids"):
            kc.conv1d_backward_lookup(W, y, dy, RELU, 1, 1, 0, True, ws)
    inference = {}
    kc.conv1d_forward_lookup(table, ids, W, 1, 1, 0, 5, inference, None, RELU)
    with pytest.raises(ValueError, match="no training forward"):
        kc.conv1d_backward_lookup(W, y, dy, RELU, 1, 1, 0, True, inference)
    trained = {}
    kc.conv1d_forward_lookup(table, ids, W, 1, 1, 0, 5, trained, None, RELU, keep=True)
    with pytest.raises(ValueError, match="strides 2"):
        kc.conv1d_backward_lookup(W, y, dy, RELU, 2, 1, 0, True, trained)
    with pytest.raises(ValueError, match=r"W \(2, 3, 5\)"):
        kc.conv1d_backward_lookup(np.zeros((2, 3, 5)), y, dy, RELU, 1, 1, 0, True, trained)
    with pytest.raises(ValueError, match="no training forward"):
        kc.conv1d_backward_lookup(W, y, dy.astype(np.float32), RELU, 1, 1, 0, True, trained)
    kc.conv1d_backward_lookup(W, y, dy, RELU, 1, 1, 0, True, trained)


def test_a_convolution_of_lookups_rejects_bad_input_before_any_kernel():
    table, W = np.zeros((10, 3), np.float32), np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 10\), got \[0, 10\]"):
        kc.conv1d_forward_lookup(table, np.array([[0, 10, 1]]), W, 1, 1, 0, 2)
    with pytest.raises(ValueError, match="do not fit W"):
        kc.conv1d_forward_lookup(table[:, :2], np.array([[0, 1, 1]]), W, 1, 1, 0, 2)
    with pytest.raises(ValueError, match="do not fit W"):
        kc.conv1d_forward_lookup(table.astype(np.float64), np.array([[0, 1, 1]]), W, 1, 1, 0, 2)
