"""The 2-D conv/pooling kernels: the numba + BLAS versions agree with their NumPy twins in
tinynn/kernels/reference (float64, norm-wise <= 1e-12), the reference backward passes are the exact adjoints of
the forward ones, and the padding arithmetic is TF's."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from pooling_inputs import pool_input
from spies import count_calls

from tinynn.kernels import conv2d as kc
from tinynn.kernels import parallel
from tinynn.kernels import pooling2d as kp
from tinynn.kernels import winograd as kw
from tinynn.kernels.fastmath import LINEAR, RELU
from tinynn.kernels.reference import conv2d as rc
from tinynn.kernels.reference import pooling2d as rp

TOL = 1e-12


def rel_err(ours, ref):
    """max |ours - ref| / max |ref| (norm-wise), after checking shape and dtype."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300)) if ref.size else 0.0


def _axis(draw, K, d, padding):
    """A legal input size along one axis: from the shortest (the receptive field for 'valid', 1 for 'same') up."""
    eff = (K - 1) * d + 1
    return (eff if padding == "valid" else 1) + draw(st.integers(0, 5))


@st.composite
def conv_geometry(draw, depthwise=False):
    """Any legal 2-D conv geometry: kernel 1-4 per axis, strides 1-3, dilation 1-3 (strides and dilation together
    only for the depthwise form, as in Keras), both paddings, groups, odd sizes, batch 1-3."""
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if not depthwise and max(sh, sw) > 1:
        dh = dw = 1
    padding = draw(st.sampled_from(["valid", "same"]))
    H, W = _axis(draw, KH, dh, padding), _axis(draw, KW, dw, padding)
    pt, Ho = rc.conv_output_size(H, KH, sh, dh, padding)
    pl, Wo = rc.conv_output_size(W, KW, sw, dw, padding)
    assert Ho >= 1 and Wo >= 1
    G = 1 if depthwise else draw(st.integers(1, 3))
    return dict(B=draw(st.integers(1, 3)), H=H, W=W, K=(KH, KW), s=(sh, sw), d=(dh, dw), pads=(pt, pl),
                out=(Ho, Wo), G=G, Cg=draw(st.integers(1, 4)), Fg=draw(st.integers(1, 4)),
                M=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**16)))  # fmt: skip


def _conv_arrays(g, dtype=np.float64):
    rng = np.random.default_rng(g["seed"])
    C, F = g["G"] * g["Cg"], g["G"] * g["Fg"]
    x = rng.standard_normal((g["B"], g["H"], g["W"], C)).astype(dtype)
    Wk = rng.standard_normal((*g["K"], g["Cg"], F)).astype(dtype)
    dz = rng.standard_normal((g["B"], *g["out"], F)).astype(dtype)
    return x, Wk, dz


def _geo(g):
    return g["s"], g["d"], g["pads"]


def geometry(H, W, K, s, d, padding, B=2, G=1, Cg=3, Fg=4, M=1, seed=1):
    """A geometry dict (as conv_geometry draws them) with the padding and output size computed."""
    (pt, Ho), (pl, Wo) = (rc.conv_output_size(n, k, st_, dl, padding) for n, k, st_, dl in zip((H, W), K, s, d))
    return dict(B=B, H=H, W=W, K=K, s=s, d=d, pads=(pt, pl), out=(Ho, Wo), G=G, Cg=Cg, Fg=Fg, M=M, seed=seed)


# The seed models' layers (3x3 valid, stride 1, one group) and a same-padded strided grouped one, pinned.
SEED_GEOMETRY = geometry(9, 8, (3, 3), (1, 1), (1, 1), "valid")
SAME_STRIDED = geometry(7, 6, (3, 2), (2, 3), (1, 1), "same", G=2, Cg=2, Fg=3, M=2, seed=2)
# 1x1, stride 1, one group: the forward reads its columns straight from x (a Dense layer on every pixel)
POINTWISE = geometry(5, 3, (1, 1), (1, 1), (1, 1), "valid", B=3, Cg=5, Fg=4, seed=3)


@given(g=conv_geometry())
@example(g=SEED_GEOMETRY)
@example(g=SAME_STRIDED)
@example(g=POINTWISE)
def test_conv2d_matches_reference(g):
    x, Wk, dz = _conv_arrays(g)
    s, d, pads = _geo(g)
    z_ref = rc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"])
    dx_ref = rc.conv2d_backward_data(dz, Wk, (g["H"], g["W"]), s, d, pads, g["G"])
    dW_ref = rc.conv2d_backward_filter(x, dz, g["K"], s, d, pads, g["G"])
    assert rel_err(kc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"]), z_ref) <= TOL
    dx, dW = kc.conv2d_backward(x, Wk, dz, s, d, pads, g["G"])
    assert rel_err(dx, dx_ref) <= TOL and rel_err(dW, dW_ref) <= TOL
    none, dW_only = kc.conv2d_backward(x, Wk, dz, s, d, pads, g["G"], need_dx=False)
    assert none is None and rel_err(dW_only, dW_ref) <= TOL


@given(g=conv_geometry(), code=st.sampled_from(["linear", "relu", "tanh", "sigmoid", "hard_sigmoid"]),
       use_bias=st.booleans(), chunk_bytes=st.sampled_from([1, 1 << 22]))
@example(g=SEED_GEOMETRY, code="relu", use_bias=True, chunk_bytes=1)
@example(g=POINTWISE, code="tanh", use_bias=True, chunk_bytes=1)
def test_fused_bias_activation_matches_reference(g, code, use_bias, chunk_bytes):
    """conv2d_forward with a fused bias + activation, and conv2d_backward_fused (dz = act'(y) ⊙ dy and db per chunk),
    against the reference convolution with NumPy's bias, activation and derivative."""
    from tinynn import activations
    from tinynn.kernels.fastmath import activation_code

    act = activations.get(code)
    x, Wk, dy = _conv_arrays(g)
    s, d, pads = _geo(g)
    b = np.random.default_rng(g["seed"] + 2).standard_normal(Wk.shape[3]) if use_bias else None
    zb = rc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"]) + (0 if b is None else b)
    y_ref = act(zb)
    with mock.patch.object(kc, "CHUNK_BYTES", chunk_bytes), \
            mock.patch.object(kc, "FORWARD_CHUNK_BYTES", chunk_bytes):  # fmt: skip
        y = kc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"], bias=b, activation=activation_code(act))
        dx, dW, db = kc.conv2d_backward_fused(x, Wk, y, dy, activation_code(act), s, d, pads, g["G"])
    dz_ref = act.backward(zb, y, dy)  # from the kernel's y: a saturated tanh's 1 - y² is ill-conditioned
    # (the kernels' tanh and sigmoid are rational approximations within ~1e-15 of NumPy's in float64)
    assert rel_err(y, y_ref) <= TOL
    assert rel_err(dx, rc.conv2d_backward_data(dz_ref, Wk, (g["H"], g["W"]), s, d, pads, g["G"])) <= TOL
    assert rel_err(dW, rc.conv2d_backward_filter(x, dz_ref, g["K"], s, d, pads, g["G"])) <= TOL
    assert rel_err(db, dz_ref.reshape(-1, dz_ref.shape[-1]).sum(axis=0)) <= TOL


@given(g=conv_geometry(), code=st.sampled_from([None, "linear", "relu", "tanh", "sigmoid"]), use_bias=st.booleans(),
       chunk_bytes=st.sampled_from([1, 300, 1 << 22]), threads=st.sampled_from([1, 2, 3]),
       piece_work=st.sampled_from([1, 1 << 40]))
@example(g=SEED_GEOMETRY, code="relu", use_bias=True, chunk_bytes=1, threads=2, piece_work=1)
@example(g=POINTWISE, code="relu", use_bias=True, chunk_bytes=300, threads=2, piece_work=1)  # chunks cross images
@example(g=POINTWISE, code="linear", use_bias=False, chunk_bytes=1 << 22, threads=1, piece_work=1 << 40)
@example(g=geometry(9, 8, (3, 3), (1, 1), (1, 1), "same", B=1, Cg=2, Fg=3), code="relu", use_bias=True,
         chunk_bytes=1 << 22, threads=2, piece_work=1)
def test_conv2d_forward_pooled_matches_reference(g, code, use_bias, chunk_bytes, threads, piece_work):
    """conv2d_forward_pooled (the mean over the output pixels of act(z + b), never written out) against the mean
    of the reference convolution with NumPy's bias and activation; in chunks (down to one row, across images) and
    pieces of output rows (``piece_work`` 1: down to a row, an image's sums split over pieces; a batch of one
    split), groups included. (float64: the pieces go through Python; inside numba: tests/test_handoff.py.)"""
    from tinynn import activations
    from tinynn.kernels.fastmath import activation_code

    x, Wk, _ = _conv_arrays(g)
    s, d, pads = _geo(g)
    b = np.random.default_rng(g["seed"] + 3).standard_normal(Wk.shape[3]) if use_bias else None
    z = rc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"])
    y_ref = z if code is None else activations.get(code)(z + (0 if b is None else b))
    act = None if code is None else activation_code(activations.get(code))
    with mock.patch.object(kc, "CHUNK_BYTES", chunk_bytes), mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.object(kc, "FORWARD_CHUNK_BYTES", chunk_bytes), \
            mock.patch.object(kc, "PIECE_WORK", piece_work), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        for _ in range(2):  # the second call on the first one's buffers
            p = kc.conv2d_forward_pooled(x, Wk, s, d, pads, g["out"], g["G"], _WORKSPACE, bias=b, activation=act)
            assert rel_err(p, y_ref.mean(axis=(1, 2))) <= TOL


def test_conv2d_forward_pooled_on_winograd_shapes():
    """A 3×3 stride-1 one-group convolution wide enough for Winograd: pooled in pieces of its output."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7, 6, 32))
    Wk = rng.standard_normal((3, 3, 32, 33))
    b = rng.standard_normal(33)
    assert kc.uses_winograd(Wk.shape, (1, 1), (1, 1), 1)
    ref = np.maximum(rc.conv2d_forward(x, Wk, pads=(1, 1), out_hw=(7, 6)) + b, 0).mean(axis=(1, 2))
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": "2"}):
        p = kc.conv2d_forward_pooled(x, Wk, pads=(1, 1), out_hw=(7, 6), bias=b, activation=RELU)
    assert rel_err(p, ref) <= TOL


_WORKSPACE: dict = {}  # shared by every example: buffers get reused across calls and reallocated on new shapes


@given(g=conv_geometry(), chunk_bytes=st.sampled_from([1, 300, 1 << 22]), threads=st.sampled_from([1, 2, 3]))
@example(g=SEED_GEOMETRY, chunk_bytes=1, threads=2)
@example(g=POINTWISE, chunk_bytes=300, threads=2)
def test_conv2d_in_chunks_and_pieces_on_reused_workspace(g, chunk_bytes, threads):
    """Output rows split in chunks (down to one row, across image boundaries), the forward's rows in pieces (down to
    one row: ``PIECE_WORK`` 1) and the backward's images in pieces, on scratch buffers reused across calls and
    shapes."""
    x, Wk, dz = _conv_arrays(g)
    s, d, pads = _geo(g)
    z_ref = rc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"])
    dx_ref = rc.conv2d_backward_data(dz, Wk, (g["H"], g["W"]), s, d, pads, g["G"])
    dW_ref = rc.conv2d_backward_filter(x, dz, g["K"], s, d, pads, g["G"])
    with mock.patch.object(kc, "CHUNK_BYTES", chunk_bytes), mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.object(kc, "FORWARD_CHUNK_BYTES", chunk_bytes), \
            mock.patch.object(kc, "PIECE_WORK", 1), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        for _ in range(2):  # the second call runs on the buffers the first one left behind
            z = kc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"], workspace=_WORKSPACE)
            dx, dW = kc.conv2d_backward(x, Wk, dz, s, d, pads, g["G"], workspace=_WORKSPACE)
            assert rel_err(z, z_ref) <= TOL and rel_err(dx, dx_ref) <= TOL and rel_err(dW, dW_ref) <= TOL
    buffers = [buf for buf in _WORKSPACE.values() if isinstance(buf, np.ndarray)]  # (a pooled pass keeps its plan)
    assert not any(np.shares_memory(a, buf) for a in (z, dx, dW) for buf in buffers)


@given(g=conv_geometry())
def test_reference_conv2d_backward_is_the_adjoint_of_forward(g):
    """<conv(x, W), dz> = <x, conv_dx(dz)> = <W, conv_dW(x, dz)>: the references are right, not just consistent."""
    x, Wk, dz = _conv_arrays(g)
    s, d, pads = _geo(g)
    inner = np.sum(rc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"]) * dz)
    scale = np.sum(np.abs(x)) * np.sum(np.abs(Wk)) * np.max(np.abs(dz))
    assert abs(inner - np.sum(x * rc.conv2d_backward_data(dz, Wk, (g["H"], g["W"]), s, d, pads, g["G"]))) <= TOL * scale
    assert abs(inner - np.sum(Wk * rc.conv2d_backward_filter(x, dz, g["K"], s, d, pads, g["G"]))) <= TOL * scale


def test_reference_conv2d_against_a_direct_sum():
    """The tap-loop reference against the definition, written as a 7-deep loop (one small case)."""
    rng = np.random.default_rng(0)
    x, Wk = rng.standard_normal((2, 5, 6, 4)), rng.standard_normal((3, 2, 2, 6))
    (pt, Ho), (pl, Wo) = rc.conv_output_size(5, 3, 2, 1, "same"), rc.conv_output_size(6, 2, 1, 1, "same")
    z = rc.conv2d_forward(x, Wk, (2, 1), (1, 1), (pt, pl), (Ho, Wo), groups=2)
    expected = np.zeros_like(z)
    for b, i, j, f in np.ndindex(*expected.shape):
        g = f // 3
        for p, q, c in np.ndindex(3, 2, 2):
            h, w = i * 2 + p - pt, j + q - pl
            if 0 <= h < 5 and 0 <= w < 6:
                expected[b, i, j, f] += x[b, h, w, g * 2 + c] * Wk[p, q, c, f]
    np.testing.assert_allclose(z, expected, rtol=1e-13, atol=1e-13)


@given(g=conv_geometry())
@example(g=SAME_STRIDED)
def test_index_kernels_match_numpy_twins_and_are_adjoint(g):
    x, _, _ = _conv_arrays(g)
    s, d, pads = _geo(g)
    cols = kc.im2col(x, g["G"], g["K"], s, d, pads, g["out"])
    np.testing.assert_array_equal(cols, rc.im2col(x, g["G"], g["K"], s, d, pads, g["out"]))
    c = np.random.default_rng(g["seed"] + 1).standard_normal(cols.shape)
    dx = kc.col2im(c, (g["H"], g["W"]), s, d, pads)
    assert rel_err(dx, rc.col2im(c, (g["H"], g["W"]), s, d, pads)) <= TOL
    assert np.isclose(np.sum(cols * c), np.sum(x * dx), rtol=1e-12, atol=1e-12)  # <im2col x, c> = <x, col2im c>


@given(g=conv_geometry(depthwise=True), threads=st.sampled_from([1, 2]))
@example(g={**SEED_GEOMETRY, "M": 1}, threads=2)
@example(g=geometry(7, 6, (3, 2), (2, 1), (2, 3), "same", M=2), threads=1)  # strides and dilation together
@example(g=geometry(40, 9, (3, 3), (1, 1), (1, 1), "valid"), threads=2)  # 38 output rows: two DW_ROWS runs and a rest
@example(g=geometry(37, 5, (3, 3), (1, 1), (1, 1), "same", M=2), threads=1)  # the same on the per-pixel path
@example(g=geometry(12, 11, (3, 3), (1, 1), (2, 2), "same"), threads=1)  # 3×3 rows: all nine taps inside, and edges
@example(g=geometry(9, 13, (3, 3), (2, 1), (1, 1), "same"), threads=2)  # ... at a stride of 2 down the rows
def test_depthwise_matches_reference(g, threads):
    rng = np.random.default_rng(g["seed"])
    C, M = g["Cg"], g["M"]
    x = rng.standard_normal((g["B"], g["H"], g["W"], C))
    D = rng.standard_normal((*g["K"], C, M))
    du = rng.standard_normal((g["B"], *g["out"], C * M))
    s, d, pads = _geo(g)
    u_ref = rc.depthwise_conv2d_forward(x, D, s, d, pads, g["out"])
    dx_ref = rc.depthwise_conv2d_backward_data(du, D, (g["H"], g["W"]), s, d, pads)
    dD_ref = rc.depthwise_conv2d_backward_filter(x, du, g["K"], M, s, d, pads)
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        assert rel_err(kc.depthwise_conv2d_forward(x, D, s, d, pads, g["out"]), u_ref) <= TOL
        dx, dD = kc.depthwise_conv2d_backward(x, D, du, s, d, pads)
        none, dD_only = kc.depthwise_conv2d_backward(x, D, du, s, d, pads, need_dx=False)
    assert rel_err(dx, dx_ref) <= TOL and rel_err(dD, dD_ref) <= TOL
    assert none is None and rel_err(dD_only, dD_ref) <= TOL
    # the depthwise reference is the grouped conv with one group per channel: Wk[p,q,0,c·M+m] = D[p,q,c,m]
    W_grouped = D.reshape(*g["K"], 1, C * M)
    assert rel_err(u_ref, rc.conv2d_forward(x, W_grouped, s, d, pads, g["out"], groups=C)) <= TOL
    assert rel_err(dx_ref, rc.conv2d_backward_data(du, W_grouped, (g["H"], g["W"]), s, d, pads, groups=C)) <= TOL


@pytest.mark.parametrize("M", [1, 2])
def test_depthwise_filter_gradient_in_float32_sums_runs_of_rows_to_float32_rounding(M):
    """The depthwise backward sums each run of up to DW_ROWS output rows in float32 before its float64 sums: on 70
    output rows (five runs) of a 72×72 image, dD is within float32 rounding of the float64 reference on the same
    numbers, in both of the kernel's loops (M = 1: the flat one)."""
    assert kc.DW_ROWS < 70
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 72, 72, 6)).astype(np.float32)
    D = rng.standard_normal((3, 3, 6, M)).astype(np.float32)
    du = rng.standard_normal((2, 70, 70, 6 * M)).astype(np.float32)
    dD_ref = rc.depthwise_conv2d_backward_filter(x.astype(np.float64), du.astype(np.float64), (3, 3), M, (1, 1),
                                                 (1, 1), (0, 0))  # fmt: skip
    _, dD = kc.depthwise_conv2d_backward(x, D, du, need_dx=False)
    assert dD.dtype == np.float32 and rel_err(dD.astype(np.float64), dD_ref) <= 1e-6


@given(g=conv_geometry(depthwise=True), filters=st.sampled_from([1, 3, 16, 37]),
       code=st.sampled_from(["relu", "linear", "tanh"]), use_bias=st.booleans(), max_pooled=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), threads=st.sampled_from([1, 2]))
@example(g=geometry(9, 8, (3, 3), (1, 1), (1, 1), "valid", B=3, Cg=4), filters=37, code="relu", use_bias=True,
         max_pooled=True, dtype=np.float32, threads=2)  # odd Ho: each image's last output row formed, not read
@example(g=geometry(8, 10, (3, 2), (2, 1), (1, 1), "same", B=2, Cg=3, M=2), filters=16, code="tanh",
         use_bias=False, max_pooled=False, dtype=np.float64, threads=2)  # fmt: skip
@example(g=geometry(10, 9, (3, 3), (1, 1), (1, 1), "same", B=2, Cg=5), filters=3, code="linear", use_bias=True,
         max_pooled=True, dtype=np.float64, threads=1)  # fmt: skip
def test_separable_forward_image_by_image_matches_its_two_passes(g, filters, code, use_bias, max_pooled, dtype,
                                                                 threads):  # fmt: skip
    """A depthwise-separable forward image by image (each image's u in the cache, never written out): the numbers
    of depthwise_conv2d_forward then pointwise_forward with the bias and activation (up to the products' rounding:
    float64 1e-12, float32 1e-6 norm-wise) and in float64 the reference; with ``max_pooled``, the bits of the max
    pooling kernel on its own unpooled output; images shared over two threads."""
    from tinynn import activations
    from tinynn.kernels.fastmath import activation_code

    rng = np.random.default_rng(g["seed"])
    C, M = g["Cg"], g["M"]
    x = rng.standard_normal((g["B"], g["H"], g["W"], C)).astype(dtype)
    D = rng.standard_normal((*g["K"], C, M)).astype(dtype)
    P = rng.standard_normal((C * M, filters)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) if use_bias else None
    s, d, pads, out = g["s"], g["d"], g["pads"], g["out"]
    act = activations.get(code)
    if max_pooled and min(out) < 2:
        with pytest.raises(ValueError, match="no whole 2×2 window"):
            kc.separable_conv2d_forward(x, D, P, s, d, pads, out, b, activation_code(act), max_pooled=True)
        return
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        y = kc.separable_conv2d_forward(x, D, P, s, d, pads, out, b, activation_code(act))
        p = kc.separable_conv2d_forward(x, D, P, s, d, pads, out, b, activation_code(act), max_pooled=max_pooled)
    two_passes = kc.pointwise_forward(kc.depthwise_conv2d_forward(x, D, s, d, pads, out), P, b, activation_code(act))
    assert y.dtype == dtype and y.shape == two_passes.shape
    assert rel_err(y.astype(np.float64), two_passes.astype(np.float64)) <= (TOL if dtype == np.float64 else 1e-6)
    if dtype == np.float64:
        z_ref = rc.depthwise_conv2d_forward(x, D, s, d, pads, out) @ P + (0 if b is None else b)
        assert rel_err(y, act(z_ref)) <= TOL
    if max_pooled:
        pooled = kp.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0), (out[0] // 2, out[1] // 2))
        assert np.array_equal(p.view(np.uint8), pooled.view(np.uint8))
    else:
        assert np.array_equal(p.view(np.uint8), y.view(np.uint8))


@given(g=conv_geometry(depthwise=True), filters=st.sampled_from([1, 3, 16, 37]),
       code=st.sampled_from([None, "relu", "linear", "tanh"]), need_dx=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), threads=st.sampled_from([1, 2]))
@example(g=geometry(9, 8, (3, 3), (1, 1), (1, 1), "valid", B=3, Cg=4), filters=37, code="relu", need_dx=True,
         dtype=np.float32, threads=2)  # fmt: skip
@example(g=geometry(8, 10, (3, 2), (2, 1), (1, 1), "same", B=2, Cg=3, M=2), filters=16, code=None, need_dx=True,
         dtype=np.float64, threads=2)  # fmt: skip
def test_separable_backward_image_by_image_matches_its_two_passes(g, filters, code, need_dx, dtype, threads):
    """The backward of a depthwise-separable convolution image by image (du never written out): dx, dD, dP and db
    of pointwise_backward then depthwise_conv2d_backward (float64 1e-12, float32 1e-5 norm-wise: dP and dD sum in
    another order) and in float64 the reference's; from ∂L/∂y with an activation (db formed) or from ∂L/∂z (no
    db); without dx; images shared over two threads."""
    from tinynn import activations
    from tinynn.kernels.fastmath import activation_code

    rng = np.random.default_rng(g["seed"])
    C, M = g["Cg"], g["M"]
    x = rng.standard_normal((g["B"], g["H"], g["W"], C)).astype(dtype)
    D = rng.standard_normal((*g["K"], C, M)).astype(dtype)
    P = rng.standard_normal((C * M, filters)).astype(dtype)
    dy = rng.standard_normal((g["B"], *g["out"], filters)).astype(dtype)
    s, d, pads, out = g["s"], g["d"], g["pads"], g["out"]
    u = kc.depthwise_conv2d_forward(x, D, s, d, pads, out)
    act = None if code is None else activation_code(activations.get(code))
    y = None if code is None else kc.pointwise_forward(u, P, rng.standard_normal(filters).astype(dtype), act)
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        dx, dD, dP, db = kc.separable_conv2d_backward(x, D, P, u, dy, y, act, s, d, pads, need_dx=need_dx)
    if code is None:
        du, dP_two = kc.pointwise_backward(u, P, dy)
        db_two, dz = None, dy
    else:
        du, dP_two, db_two = kc.pointwise_backward(u, P, dy, y, act)
        dz = activations.get(code).backward(y, y, dy).astype(dtype)  # relu reads z > 0: y > 0 is the same
    dx_two, dD_two = kc.depthwise_conv2d_backward(x, D, du, s, d, pads, need_dx=need_dx)
    tol = TOL if dtype == np.float64 else 1e-5
    f64 = (lambda a: a.astype(np.float64))  # noqa: E731
    assert (dx is None) == (not need_dx) and (db is None) == (code is None)
    for ours, two in ((dx, dx_two), (dD, dD_two), (dP, dP_two), (db, db_two)):
        if ours is not None:
            assert ours.dtype == dtype and rel_err(f64(ours), f64(two)) <= tol
    if dtype == np.float64:
        du_ref = dz @ P.T
        assert rel_err(dP, np.einsum("bhwk,bhwf->kf", u, dz)) <= TOL
        assert rel_err(dD, rc.depthwise_conv2d_backward_filter(x, du_ref, g["K"], M, s, d, pads)) <= TOL
        if need_dx:
            assert rel_err(dx, rc.depthwise_conv2d_backward_data(du_ref, D, (g["H"], g["W"]), s, d, pads)) <= TOL
        if code is not None:
            assert rel_err(db, dz.sum(axis=(0, 1, 2))) <= TOL


def test_separable_forward_refuses_a_pointwise_kernel_that_does_not_fit():
    x, D = np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 3, 2))
    with pytest.raises(ValueError, match="do not fit 6 depthwise channels"):
        kc.separable_conv2d_forward(x, D, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="do not fit 6 depthwise channels"):
        kc.separable_conv2d_forward(x, D, np.zeros((6, 4)), bias=np.zeros(3))


def test_separable_backward_refuses_arrays_that_do_not_fit_before_its_kernel():
    """u, dy or y of another shape than x, D and P give (1, 3, 3, 6) and (1, 3, 3, 4): a ValueError naming them."""
    x, D, P = np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 3, 2)), np.zeros((6, 4))
    u, dy = np.zeros((1, 3, 3, 6)), np.zeros((1, 3, 3, 4))
    bad = [(np.zeros((1, 3, 3, 5)), dy, None), (u, np.zeros((1, 3, 2, 4)), None), (u, np.zeros((2, 3, 3, 4)), None),
           (u, dy, np.zeros((1, 3, 3, 3)))]  # fmt: skip
    for u_, dy_, y_ in bad:
        with pytest.raises(ValueError, match="separable_conv2d_backward: .* do not fit"):
            kc.separable_conv2d_backward(x, D, P, u_, dy_, y_ if y_ is not None else dy_, RELU)
    with pytest.raises(ValueError, match="separable_conv2d_backward: .* do not fit"):
        kc.separable_conv2d_backward(x, D, P, u, dy, None, RELU)  # an activation needs y


@st.composite
def winograd_geometry(draw):
    """3×3, stride 1: any size from the shortest legal input, both paddings, 1-5 channels and filters."""
    padding = draw(st.sampled_from(["valid", "same"]))
    return geometry(_axis(draw, 3, 1, padding), _axis(draw, 3, 1, padding), (3, 3), (1, 1), (1, 1), padding,
                    B=draw(st.integers(1, 3)), Cg=draw(st.integers(1, 5)), Fg=draw(st.integers(1, 5)),
                    seed=draw(st.integers(0, 2**16)))  # fmt: skip


@given(g=winograd_geometry(), code=st.sampled_from([None, "relu", "tanh", "linear"]), use_bias=st.booleans(),
       chunk_bytes=st.sampled_from([1, 1 << 20]), threads=st.sampled_from([1, 2]))
@example(g=geometry(9, 8, (3, 3), (1, 1), (1, 1), "same", Cg=5, Fg=4), code="relu", use_bias=True, chunk_bytes=1,
         threads=2)
def test_winograd_conv2d_matches_the_direct_reference(g, code, use_bias, chunk_bytes, threads):
    """With Winograd switched on for any channel count, conv2d_forward (plain and fused) and both backward entry
    points equal the direct reference convolution; the numba transforms equal their NumPy twins."""
    from tinynn import activations
    from tinynn.kernels.fastmath import activation_code

    x, Wk, dz = _conv_arrays(g)
    s, d, pads, out, hw = g["s"], g["d"], g["pads"], g["out"], (g["H"], g["W"])
    tiles = rc.winograd_tiles(out)
    V = kw.input_transform(x, pads, tiles)
    assert rel_err(V, rc.winograd_input_transform(x, pads, tiles)) <= TOL
    M = np.random.default_rng(g["seed"]).standard_normal((16, V.shape[1], Wk.shape[3]))
    assert rel_err(kw.output_transform(M, g["B"], out), rc.winograd_output_transform(M, g["B"], out)) <= TOL
    z_ref = rc.conv2d_forward(x, Wk, s, d, pads, out)
    b = np.random.default_rng(g["seed"] + 1).standard_normal(Wk.shape[3]) if use_bias else None
    with mock.patch.object(kc, "WINOGRAD_MIN_CHANNELS", 1), mock.patch.object(kw, "CHUNK_BYTES", chunk_bytes), \
            mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        assert kc.uses_winograd(Wk.shape, s, d, 1)
        assert rel_err(kc.conv2d_forward(x, Wk, s, d, pads, out), z_ref) <= TOL
        dx, dW = kc.conv2d_backward(x, Wk, dz, s, d, pads)
        assert rel_err(dx, rc.conv2d_backward_data(dz, Wk, hw, s, d, pads)) <= TOL
        assert rel_err(dW, rc.conv2d_backward_filter(x, dz, (3, 3), s, d, pads)) <= TOL
        if code is not None:
            act = activations.get(code)
            zb = z_ref + (0 if b is None else b)
            y = kc.conv2d_forward(x, Wk, s, d, pads, out, bias=b, activation=activation_code(act))
            assert rel_err(y, act(zb)) <= TOL
            dz_act = act.backward(zb, y, dz)  # from the kernel's y: a saturated tanh's 1 - y² is ill-conditioned
            dx, dW, db = kc.conv2d_backward_fused(x, Wk, y, dz, activation_code(act), s, d, pads)
            assert rel_err(dx, rc.conv2d_backward_data(dz_act, Wk, hw, s, d, pads)) <= TOL
            assert rel_err(dW, rc.conv2d_backward_filter(x, dz_act, (3, 3), s, d, pads)) <= TOL
            assert rel_err(db, dz_act.reshape(-1, dz_act.shape[-1]).sum(axis=0)) <= TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_hw, F", [((7, 5), 3), ((8, 8), 16), ((9, 6), 37)])
def test_winograd_output_transforms_compiled_for_one_code_give_the_general_bits(out_hw, F, dtype):
    """The output transforms compiled with ReLU or 'none' as a constant (chosen by ``_output_transform_for``) give
    the bits of the general one with that code, odd output sizes (blocks cut at the edge) included; codes they do
    not take go to the general one."""
    TH, TW = rc.winograd_tiles(out_hw)
    rng = np.random.default_rng(F)
    M = rng.standard_normal((16, 2 * TH * TW, F)).astype(dtype)
    bias = rng.standard_normal(F).astype(dtype)
    for code in (RELU, -1):
        special = kw._output_transform_for(code)
        assert special is not kw._output_transform
        z = special(M, 0, TH, TW, bias, code, np.full((2, *out_hw, F), np.nan, dtype))
        z_general = kw._output_transform(M, 0, TH, TW, bias, code, np.full((2, *out_hw, F), np.nan, dtype))
        assert not np.isnan(z).any() and np.array_equal(z, z_general)
    assert kw._output_transform_for(LINEAR) is kw._output_transform


def _max_pooled_pair(x, Wk, g, b, code):
    """(the fused kernel's p, the max pooling kernel on winograd_conv2d's output): what the two layers compute."""
    pooled = (g["out"][0] // 2, g["out"][1] // 2)
    p = kw.winograd_conv2d_max_pooled(x, Wk, g["pads"], g["out"], b, code)
    z = kw.winograd_conv2d(x, Wk, g["pads"], g["out"], np.zeros(Wk.shape[3], x.dtype) if b is None else b, code)
    return p, kp.max_pool2d_forward(z, (2, 2), (2, 2), (0, 0), pooled), z, pooled


@given(g=winograd_geometry(), filters=st.sampled_from([1, 3, 16, 37]), relu=st.booleans(), use_bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), chunk_bytes=st.sampled_from([1, 2000, 1 << 20]),
       threads=st.sampled_from([1, 2]))
@example(g=geometry(5, 7, (3, 3), (1, 1), (1, 1), "valid", B=3, Cg=3), filters=37, relu=True, use_bias=True,
         dtype=np.float32, chunk_bytes=2000, threads=2)  # odd Ho and Wo: the last row and column of blocks skipped
@example(g=geometry(8, 9, (3, 3), (1, 1), (1, 1), "same", B=2, Cg=4), filters=16, relu=False, use_bias=True,
         dtype=np.float64, chunk_bytes=1 << 20, threads=2)  # fmt: skip
def test_winograd_max_pooled_gives_the_bits_of_the_pooled_convolution(g, filters, relu, use_bias, dtype, chunk_bytes,
                                                                    threads):  # fmt: skip
    """A 2×2, stride-2 max pooling taken block by block in Winograd's output transform gives the bits of the max
    pooling kernel on the convolution's output (linear and ReLU, with and without bias, both dtypes, in chunks of
    one, a few or all blocks, on one or two threads; 16 and 37 filters reach the vectorised loop's body), and in
    float64 the reference max pooling of the direct reference convolution."""
    g = dict(g, Fg=filters)
    if min(g["out"]) < 2:
        with pytest.raises(ValueError, match="no whole 2×2 window"):
            kw.winograd_conv2d_max_pooled(*_conv_arrays(g)[:2], g["pads"], g["out"], None, RELU)
        return
    x, Wk, _ = _conv_arrays(g, dtype)
    b = np.random.default_rng(g["seed"] + 1).standard_normal(filters).astype(dtype) if use_bias else None
    code = RELU if relu else LINEAR
    with mock.patch.object(kw, "CHUNK_BYTES", chunk_bytes), mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        p, pooled_z, z, pooled = _max_pooled_pair(x, Wk, g, b, code)
    assert p.dtype == dtype and p.shape == (g["B"], *pooled, filters)
    assert np.array_equal(p.view(np.uint8), pooled_z.view(np.uint8))
    if dtype == np.float64:
        z_ref = rc.conv2d_forward(x, Wk, (1, 1), (1, 1), g["pads"], g["out"]) + (0 if b is None else b)
        y_ref = np.maximum(z_ref, 0) if relu else z_ref
        assert rel_err(p, rp.max_pool2d_forward(y_ref, (2, 2), (2, 2), (0, 0), pooled)) <= TOL


def test_winograd_max_pooled_keeps_nan_windows_as_the_pooling_does():
    """A NaN pixel in the input reaches the outputs it is in (NaN windows next to windows of ReLU's zeros and of
    negative linear outputs): the same bits as the max pooling kernel on the convolution's output."""
    g = geometry(10, 9, (3, 3), (1, 1), (1, 1), "same", B=2, Cg=3, Fg=16)
    x, Wk, _ = _conv_arrays(g, np.float32)
    x[0, 4, 4, 1] = np.nan
    b = np.random.default_rng(5).standard_normal(16).astype(np.float32)
    for code in (RELU, LINEAR):
        p, pooled_z, _, _ = _max_pooled_pair(x, Wk, g, b, code)
        assert np.isnan(p).any() and not np.isnan(p).all()
        assert (p == 0).any() == (code == RELU) and (p < 0).any() == (code == LINEAR)
        assert np.array_equal(p.view(np.uint32), pooled_z.view(np.uint32))


@given(g=conv_geometry(), filters=st.sampled_from([1, 3, 16, 37]), relu=st.booleans(), use_bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), chunk_bytes=st.sampled_from([1, 4000, 1 << 20]),
       threads=st.sampled_from([1, 2]))
@example(g=geometry(9, 8, (3, 3), (1, 1), (1, 1), "valid", B=3, Cg=3), filters=37, relu=True, use_bias=True,
         dtype=np.float32, chunk_bytes=4000, threads=2)  # odd Ho: each image's last output row formed, not read
@example(g=geometry(7, 10, (2, 3), (2, 1), (1, 1), "same", B=2, Cg=4), filters=16, relu=False, use_bias=True,
         dtype=np.float64, chunk_bytes=1 << 20, threads=2)  # fmt: skip
@example(g=geometry(13, 8, (3, 3), (1, 1), (1, 1), "valid", B=2, Cg=3), filters=37, relu=True, use_bias=True,
         dtype=np.float32, chunk_bytes=4000, threads=1)  # chunks of 3 rows of p, cut at each image's end
@example(g=geometry(12, 9, (2, 2), (1, 1), (2, 1), "same", B=2, Cg=2), filters=16, relu=False, use_bias=False,
         dtype=np.float64, chunk_bytes=1 << 20, threads=1)  # a whole image's 6 rows of p per chunk
def test_im2col_max_pooled_gives_the_pooled_convolution(g, filters, relu, use_bias, dtype, chunk_bytes, threads):
    """One-group im2col convolutions of any geometry (1-4 channels: no Winograd), their 2×2 max pooling taken chunk
    by chunk of output rows (chunks of one or more rows of p, rows of p shared over two threads): the max pooling
    kernel on conv2d_forward's output (in its own chunks, on one thread) up to the products' rounding (BLAS may
    round a row differently in a product of another height: float64 1e-12, float32 1e-6 norm-wise), and in float64
    the reference pooling of the reference convolution."""
    g = dict(g, G=1, Fg=filters)
    assume(min(g["out"]) >= 2)
    x, Wk, _ = _conv_arrays(g, dtype)
    s, d, pads, out = g["s"], g["d"], g["pads"], g["out"]
    b = np.random.default_rng(g["seed"] + 1).standard_normal(Wk.shape[3]).astype(dtype) if use_bias else None
    code = RELU if relu else LINEAR
    with mock.patch.object(kc, "FORWARD_CHUNK_BYTES", chunk_bytes), mock.patch.object(kc, "PIECE_WORK", 0), \
            mock.patch.object(kc, "SMALL_CHUNK_MIN_PIXELS", 1 << 30), mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        p = kc.conv2d_forward_max_pooled(x, Wk, s, d, pads, out, bias=b, activation=code)
    y = kc.conv2d_forward(x, Wk, s, d, pads, out, bias=b, activation=code)
    pooled = (out[0] // 2, out[1] // 2)
    y_pooled = kp.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0), pooled)
    assert p.dtype == dtype
    assert rel_err(p.astype(np.float64), y_pooled.astype(np.float64)) <= (TOL if dtype == np.float64 else 1e-6)
    if dtype == np.float64:
        z_ref = rc.conv2d_forward(x, Wk, s, d, pads, out) + (0 if b is None else b)
        y_ref = np.maximum(z_ref, 0) if relu else z_ref
        assert rel_err(p, rp.max_pool2d_forward(y_ref, (2, 2), (2, 2), (0, 0), pooled)) <= TOL


def test_max_pooled_leaves_to_the_two_layers_what_it_does_not_take():
    """None (nothing done) for a grouped convolution, one F(2, 3) along the width runs, and an output without a
    whole 2×2 window; an activation other than linear or ReLU raises."""
    from tinynn.kernels import winograd_width

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 6, 4))
    assert kc.conv2d_forward_max_pooled(x, rng.standard_normal((3, 3, 2, 4)), groups=2) is None
    assert kc.conv2d_forward_max_pooled(x[:, :4, :3], rng.standard_normal((3, 3, 4, 4))) is None  # 2×1 output
    with mock.patch.object(winograd_width, "MIN_CHANNELS", 1), mock.patch.object(winograd_width, "MIN_WORK", 1), \
            mock.patch.object(winograd_width, "INTEL_MIN_FILTERS", 16):  # fmt: skip
        assert winograd_width.applies((3, 3, 4, 16), (1, 1), (1, 1), 1, x.dtype, 2 * 5 * 4)
        assert kc.conv2d_forward_max_pooled(x, rng.standard_normal((3, 3, 4, 16))) is None
    with pytest.raises(ValueError, match="not linear or ReLU"):
        kc.conv2d_forward_max_pooled(x, rng.standard_normal((3, 3, 4, 4)), activation=1)


def test_winograd_max_pooled_refuses_what_it_does_not_compute():
    g = geometry(6, 6, (3, 3), (1, 1), (1, 1), "valid", Cg=2, Fg=3)
    x, Wk, _ = _conv_arrays(g)
    for code in (None, 1):  # no code (the unbiased z), tanh
        with pytest.raises(ValueError, match="not linear or ReLU"):
            kw.winograd_conv2d_max_pooled(x, Wk, g["pads"], g["out"], None, code)
    with pytest.raises(ValueError, match="needs a \\(3, 3, 2, F\\) kernel"):
        kw.winograd_conv2d_max_pooled(x, Wk[:2], g["pads"], g["out"], None, RELU)


@given(g=winograd_geometry(), chunk_bytes=st.sampled_from([1, 2000, 1 << 20]))
@example(g=geometry(5, 7, (3, 3), (1, 1), (1, 1), "valid", Cg=3, Fg=2), chunk_bytes=2000)  # odd Ho and Wo
def test_winograd_products_and_chunk_loops_match_their_twins(g, chunk_bytes):
    """The 16 products in one numba call (plain, and transposed with β = 1) equal NumPy's; the forward and the filter
    gradient, run in chunks of 1, a few or all blocks, equal their NumPy twins, the twin of dWk equals the direct
    conv2d_backward_filter, and the numba gradient transform equals its twin."""
    x, Wk, dz = _conv_arrays(g)
    pads, out = g["pads"], g["out"]
    tiles = rc.winograd_tiles(out)
    U, V = rc.winograd_kernel_transform(Wk), rc.winograd_input_transform(x, pads, tiles)
    assert rel_err(kw._products(V, U, np.empty((16, V.shape[1], U.shape[2])), False, 0.0), V @ U) <= TOL
    Y = kw.gradient_transform(dz, tiles)
    assert rel_err(Y, rc.winograd_gradient_transform(dz, tiles)) <= TOL
    dU0 = np.random.default_rng(g["seed"]).standard_normal(U.shape)
    assert rel_err(kw._products(V, Y, dU0.copy(), True, 1.0), dU0 + V.transpose(0, 2, 1) @ Y) <= TOL
    dW_ref = rc.conv2d_backward_filter(x, dz, (3, 3), (1, 1), (1, 1), pads)
    assert rel_err(rc.winograd_conv2d_backward_filter(x, dz, pads), dW_ref) <= TOL
    with mock.patch.object(kw, "CHUNK_BYTES", chunk_bytes), mock.patch.object(kw, "FILTER_CHUNK_BYTES", chunk_bytes):
        assert rel_err(kw.winograd_conv2d(x, Wk, pads, out), rc.winograd_conv2d_forward(x, Wk, pads, out)) <= TOL
        assert rel_err(kw.winograd_conv2d_backward_filter(x, dz, pads), dW_ref) <= TOL


@given(C=st.integers(1, 6), F=st.integers(1, 6), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_winograd_kernel_transforms_match_their_twins(C, F, dtype, seed):
    """The fast kernel transform U = G Wk Gᵀ, the input gradient's U' taken from U (its planes permuted and
    transposed), and the adjoint dWk = Gᵀ dU G equal their NumPy twins (float64 to TOL, float32 to its rounding);
    the caller's kernel is read, never written."""
    rng = np.random.default_rng(seed)
    Wk = rng.standard_normal((3, 3, C, F)).astype(dtype)
    dU = rng.standard_normal((16, C, F)).astype(dtype)
    tol = TOL if dtype == np.float64 else 1e-6
    Wrot = np.ascontiguousarray(Wk[::-1, ::-1].transpose(0, 1, 3, 2))
    Wk_before = Wk.copy()
    U = kw.kernel_transform(Wk, dtype)
    assert rel_err(U, rc.winograd_kernel_transform(Wk)) <= tol
    assert rel_err(kw.turned_kernel_transform(U), rc.winograd_kernel_transform(Wrot)) <= tol
    assert rel_err(kw.filter_from_transformed(dU), rc.winograd_filter_from_transformed(dU)) <= tol
    view = Wk[:, :, :, ::-1]  # a strided view is read as its values
    assert rel_err(kw.kernel_transform(view, dtype), rc.winograd_kernel_transform(np.ascontiguousarray(view))) <= tol
    assert np.array_equal(Wk, Wk_before)


@pytest.mark.parametrize("form", ["F(2x2, 3x3)", "F(2, 3) along the width"])
def test_the_kept_winograd_kernel_follows_the_kernel(monkeypatch, form):
    """U is kept in the workspace with a copy of its kernel (winograd.kept_transform, for both Winograd forms): a
    forward with the same kernel reuses it (the same array: no transform), and so does F(2×2, 3×3)'s input gradient
    after it; a kernel changed in place (as an optimizer step changes it) or a new kernel of another shape gets a new
    U, and every pass equals the reference of the kernel it was given."""
    from tinynn.kernels import winograd_width as kww

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 7, 3))
    Wk = rng.standard_normal((3, 3, 3, 4))
    ws = {}
    wide = form != "F(2x2, 3x3)"
    key, module, name = ("ww_kernel", kww, "_kernel_transform") if wide else ("wg_kernel", kw, "kernel_transform")
    pads, out = ((1, 1), (6, 7)) if wide else ((0, 0), (4, 5))

    def check(kernel):
        run = kww.winograd_width_conv2d if wide else kw.winograd_conv2d
        y = run(x, kernel, pads, out, workspace=ws)
        assert rel_err(y, rc.conv2d_forward(x, kernel, (1, 1), (1, 1), pads, out)) <= TOL
        return ws[key][1]

    U = check(Wk)
    transforms = count_calls(monkeypatch, module, name)
    assert check(Wk) is U and transforms == []
    if not wide:
        dz = rng.standard_normal((2, 4, 5, 4))
        dx = kw.winograd_conv2d_backward_data(dz, Wk, (6, 7), (0, 0), ws)
        assert ws[key][1] is U and transforms == []
        assert rel_err(dx, rc.conv2d_backward_data(dz, Wk, (6, 7), (1, 1), (1, 1), (0, 0))) <= TOL
    Wk[1, 2, 0, 3] += 0.5  # in place
    assert check(Wk) is not U and transforms == [1]
    check(rng.standard_normal((3, 3, 3, 5)))
    assert transforms == [1, 1]


def test_winograd_refuses_a_kernel_that_does_not_fit_before_transforming_it():
    x = np.zeros((1, 5, 5, 2), np.float32)
    for Wk in (np.zeros((3, 3, 3, 4), np.float32), np.zeros((2, 3, 2, 4), np.float32), np.zeros((3, 3, 2), np.float32)):
        with pytest.raises(ValueError, match="needs a \\(3, 3, 2, F\\) kernel"):
            kw.winograd_conv2d(x, Wk, (0, 0), (3, 3))
    with pytest.raises(ValueError, match="backward_data: needs a \\(3, 3, C, 4\\) kernel"):
        kw.winograd_conv2d_backward_data(np.zeros((1, 3, 3, 4), np.float32), np.zeros((3, 3, 2, 5), np.float32), (5, 5),
                                         (0, 0))


def test_winograd_is_chosen_for_wide_3x3_stride_1_convolutions_only():
    assert kc.uses_winograd((3, 3, 32, 64), (1, 1), (1, 1), 1)
    assert not kc.uses_winograd((3, 3, 3, 32), (1, 1), (1, 1), 1)  # a K = 3 GEMM: im2col is faster
    assert not kc.uses_winograd((3, 3, 64, 64), (2, 2), (1, 1), 1)
    assert not kc.uses_winograd((3, 3, 64, 64), (1, 1), (2, 2), 1)
    assert not kc.uses_winograd((3, 3, 32, 64), (1, 1), (1, 1), 2)
    assert not kc.uses_winograd((3, 2, 64, 64), (1, 1), (1, 1), 1)
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 32)).astype(np.float32)
    Wk = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    z = kc.conv2d_forward(x, Wk, pads=(1, 1), out_hw=(6, 5))  # float32 through Winograd: ~1e-6 of the direct one
    z_ref = rc.conv2d_forward(x.astype(np.float64), Wk.astype(np.float64), pads=(1, 1), out_hw=(6, 5))
    assert z.dtype == np.float32 and rel_err(z.astype(np.float64), z_ref) < 5e-6


@given(rows=st.integers(1, 40), K=st.integers(1, 6), F=st.integers(1, 6), threads=st.sampled_from([1, 2, 3]),
       chunk_bytes=st.sampled_from([64, 1 << 21]), seed=st.integers(0, 2**16))
@example(rows=37, K=3, F=5, threads=2, chunk_bytes=64, seed=0)  # several chunks of rows in each piece
def test_pointwise_products_match_numpy(rows, K, F, threads, chunk_bytes, seed):
    """SeparableConv2D's 1×1 products on row pieces (one per thread; the backward in chunks of rows, dP summed over
    them) equal the plain matmuls of the reference path."""
    rng = np.random.default_rng(seed)
    u, P, dz = rng.standard_normal((rows, 1, K)), rng.standard_normal((K, F)), rng.standard_normal((rows, 1, F))
    b = rng.standard_normal(F)
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), mock.patch.object(kc, "CHUNK_BYTES", chunk_bytes), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        z = kc.pointwise_forward(u, P)
        du, dP = kc.pointwise_backward(u, P, dz)
        y = kc.pointwise_forward(u, P, b, RELU)
        du_f, dP_f, db_f = kc.pointwise_backward(u, P, dz, y, RELU)
    assert rel_err(z, u @ P) <= TOL and rel_err(du, dz @ P.T) <= TOL
    assert rel_err(dP, u.reshape(-1, K).T @ dz.reshape(-1, F)) <= TOL
    g = np.where(u @ P + b > 0, dz, 0)  # relu's gradient
    assert rel_err(y, np.maximum(u @ P + b, 0)) <= TOL and rel_err(du_f, g @ P.T) <= TOL
    assert rel_err(dP_f, u.reshape(-1, K).T @ g.reshape(-1, F)) <= TOL and rel_err(db_f, g.reshape(-1, F).sum(0)) <= TOL


def test_conv2d_float32_close_to_float64():
    g = SAME_STRIDED
    x, Wk, dz = _conv_arrays(g)
    s, d, pads = _geo(g)
    z64 = kc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"])
    x32, W32, dz32 = x.astype(np.float32), Wk.astype(np.float32), dz.astype(np.float32)
    z32 = kc.conv2d_forward(x32, W32, s, d, pads, g["out"], g["G"])
    dx32, dW32 = kc.conv2d_backward(x32, W32, dz32, s, d, pads, g["G"])
    dx64, dW64 = kc.conv2d_backward(x, Wk, dz, s, d, pads, g["G"])
    assert z32.dtype == dx32.dtype == dW32.dtype == np.float32
    for a, b in ((z32, z64), (dx32, dx64), (dW32, dW64)):
        assert rel_err(a.astype(np.float64), b) < 1e-6
    D = np.random.default_rng(0).standard_normal((3, 3, 4, 2))
    u64 = kc.depthwise_conv2d_forward(x, D, (1, 1), (1, 1), (1, 1), (7, 6))
    u32 = kc.depthwise_conv2d_forward(x32, D.astype(np.float32), (1, 1), (1, 1), (1, 1), (7, 6))
    assert u32.dtype == np.float32 and rel_err(u32.astype(np.float64), u64) < 1e-6


# Verified against Keras in keras-semantics §2 (1-D, the same rule per axis): (size, K, s, d) -> pad before.
@pytest.mark.parametrize("size,K,s,d,before", [(10, 4, 1, 1, 1), (10, 4, 2, 1, 1), (11, 3, 2, 1, 1), (10, 2, 3, 1, 0),
                                               (10, 4, 1, 2, 3)])
def test_same_padding_puts_the_extra_pad_after(size, K, s, d, before):
    assert rc.conv_output_size(size, K, s, d, "same") == (before, -(-size // s))


def test_valid_output_size_and_unknown_padding():
    assert rc.conv_output_size(10, 4, 2, 1, "valid") == (0, 4)
    assert rc.conv_output_size(9, 4, 1, 3, "valid")[1] == -0  # (9 - 10) // 1 + 1 = 0: empty
    with pytest.raises(ValueError, match="padding"):
        rc.conv_output_size(10, 3, 1, 1, "causal")


def test_kernel_wrappers_reject_inconsistent_shapes():
    x = np.zeros((2, 5, 5, 4))
    with pytest.raises(ValueError, match="groups"):
        kc.conv2d_forward(x, np.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="empty output"):
        kc.conv2d_forward(x, np.zeros((6, 3, 4, 2)))
    with pytest.raises(ValueError, match="dz"):
        kc.conv2d_backward(x, np.zeros((3, 3, 4, 2)), np.zeros((2, 3, 3, 5)))
    with pytest.raises(ValueError, match="depthwise"):
        kc.depthwise_conv2d_forward(x, np.zeros((3, 3, 3, 1)))
    with pytest.raises(ValueError, match="du"):
        kc.depthwise_conv2d_backward(x, np.zeros((3, 3, 4, 1)), np.zeros((2, 3, 3, 5)))
    with pytest.raises(ValueError, match="geometry"):
        kp.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (4, 2))  # the last window would start past the end
    with pytest.raises(ValueError, match="do not fit"):
        kp.max_pool2d_backward(x, np.zeros((2, 2, 2, 4)), np.zeros((2, 2, 3, 4)), (2, 2), (2, 2), (0, 0))


# --------------------------------------------------------------------------- pooling
@st.composite
def pool_geometry(draw, disjoint: bool = False):
    """Any legal pooling geometry (pool 1-4, strides 1-3), or with ``disjoint`` one whose windows do not overlap
    (strides equal to the pool or one more: gaps between windows); both paddings, odd sizes."""
    PH, PW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if disjoint:
        SH, SW = PH + draw(st.integers(0, 1)), PW + draw(st.integers(0, 1))
    else:
        SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    H, W = _axis(draw, PH, 1, padding), _axis(draw, PW, 1, padding)
    pt, Ho = rc.conv_output_size(H, PH, SH, 1, padding)
    pl, Wo = rc.conv_output_size(W, PW, SW, 1, padding)
    channels = st.sampled_from([1, 2, 3, 4, 16, 37])  # the vectorised channel loops' remainder, body, both
    return dict(B=draw(st.integers(1, 3)), H=H, W=W, C=draw(channels), pool=(PH, PW), s=(SH, SW),
                pads=(pt, pl), out=(Ho, Wo), values=draw(st.sampled_from(["normal", "ties", "nans"])),
                seed=draw(st.integers(0, 2**16)))  # fmt: skip


@given(g=pool_geometry(), threads=st.sampled_from([1, 2]))
@example(g=dict(B=2, H=5, W=4, C=3, pool=(3, 3), s=(1, 2), pads=(1, 1), out=(5, 2), values="ties", seed=0), threads=2)
@example(g=dict(B=2, H=5, W=7, C=3, pool=(2, 2), s=(2, 2), pads=(0, 0), out=(2, 3), values="ties", seed=1), threads=2)
@example(g=dict(B=2, H=4, W=7, C=2, pool=(3, 2), s=(3, 3), pads=(1, 0), out=(2, 3), values="ties", seed=2), threads=1)
@example(g=dict(B=2, H=5, W=4, C=3, pool=(3, 3), s=(1, 2), pads=(1, 1), out=(5, 2), values="nans", seed=4), threads=2)
@example(g=dict(B=2, H=5, W=7, C=3, pool=(2, 2), s=(2, 2), pads=(0, 0), out=(2, 3), values="nans", seed=5), threads=1)
def test_pool2d_kernels_match_reference(g, threads):
    """Max pooling's backward runs a one-pass kernel when the windows do not overlap (strides >= pool: the examples
    with an odd size, gaps between windows and 'same' padding) and the general one otherwise."""
    rng = np.random.default_rng(g["seed"])
    xm, x = pool_input(rng, (g["B"], g["H"], g["W"], g["C"]), g["values"])  # the first maximum in row-major order
    args = (g["pool"], g["s"], g["pads"], g["out"])
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        y = kp.max_pool2d_forward(xm, *args)
        np.testing.assert_array_equal(y, rp.max_pool2d_forward(xm, *args))
        dy = rng.standard_normal(y.shape)
        dx = kp.max_pool2d_backward(xm, y, dy, *args[:3])
        assert rel_err(dx, rp.max_pool2d_backward(xm, y, dy, *args[:3])) <= TOL
        a = kp.avg_pool2d_forward(x, *args)
        assert rel_err(a, rp.avg_pool2d_forward(x, *args)) <= TOL
        da = kp.avg_pool2d_backward(dy, (g["H"], g["W"]), *args[:3])
    assert rel_err(da, rp.avg_pool2d_backward(dy, (g["H"], g["W"]), *args[:3])) <= TOL
    assert np.isclose(np.sum(a * dy), np.sum(x * da), rtol=1e-12, atol=1e-12)  # adjoint
    # each window sends its whole gradient to exactly one pixel of its own
    assert np.isclose(dx.sum(), dy.sum(), rtol=1e-12, atol=1e-12)


ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu", "hard_sigmoid")


@given(g=pool_geometry(disjoint=True), activation=st.sampled_from(ACTIVATIONS), dtype=st.sampled_from(["f8", "f4"]),
       in_place=st.booleans(), threads=st.sampled_from([1, 2]))  # fmt: skip
@example(g=dict(B=2, H=5, W=7, C=3, pool=(2, 2), s=(2, 2), pads=(0, 0), out=(2, 3), values="ties", seed=1),
         activation="relu", dtype="f4", in_place=True, threads=2)  # fmt: skip
@example(g=dict(B=2, H=4, W=7, C=2, pool=(3, 2), s=(3, 3), pads=(1, 0), out=(2, 3), values="nans", seed=2),
         activation="tanh", dtype="f8", in_place=False, threads=1)  # fmt: skip
@example(g=dict(B=3, H=5, W=3, C=4, pool=(2, 1), s=(2, 2), pads=(0, 0), out=(3, 2), values="normal", seed=3),
         activation="hard_sigmoid", dtype="f4", in_place=True, threads=2)  # fmt: skip
def test_max_pool_backward_to_logits_matches_its_twin(g, activation, dtype, in_place, threads):
    """The pair kernel of MaxPooling2D.backward_through: dz = act'(a) ⊙ dx, db = Σ dz, for a = act(z) the pooled
    input, in one pass (over a itself when in_place). dz has the two-pass twin's bits (every activation the
    kernels fuse, ties, NaN, rows and columns no window reads); db is summed in another order (1e-12 relative in
    float64, float32's rounding of it)."""
    from tinynn import activations
    from tinynn.kernels.fastmath import activation_code

    rng = np.random.default_rng(g["seed"])
    xm, _ = pool_input(rng, (g["B"], g["H"], g["W"], g["C"]), g["values"])
    a = activations.get(activation)(xm).astype(dtype)  # an activation's output, as the layer below hands it
    args = (g["pool"], g["s"], g["pads"])
    y = rp.max_pool2d_forward(a, *args, g["out"])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dz_ref, db_ref = rp.max_pool2d_backward_to_logits(a, y, dy, *args, activation)
    a_in = a.copy()
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        dz, db = kp.max_pool2d_backward_to_logits(a_in, y, dy, *args, activation_code(activations.get(activation)),
                                                  in_place=in_place)  # fmt: skip
    np.testing.assert_array_equal(dz, dz_ref)
    assert (dz is a_in) == in_place
    assert in_place or np.array_equal(a_in, a, equal_nan=True)  # not in place: a is left as it was
    assert db.dtype == db_ref.dtype == a.dtype
    tol = 1e-12 if dtype == "f8" else 1e-6
    finite = np.isfinite(db_ref)
    np.testing.assert_array_equal(np.isfinite(db), finite)
    np.testing.assert_allclose(db[finite], db_ref[finite], rtol=tol, atol=tol * np.abs(dz).sum())


def test_max_pool_backward_to_logits_refuses_overlapping_windows_and_a_read_only_a():
    a = np.zeros((1, 4, 4, 2))
    y = np.zeros((1, 3, 3, 2))
    with pytest.raises(ValueError, match="windows overlap"):
        kp.max_pool2d_backward_to_logits(a, y, y, (2, 2), (1, 1), (0, 0), RELU)
    y2 = np.zeros((1, 2, 2, 2))
    a.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        kp.max_pool2d_backward_to_logits(a, y2, y2, (2, 2), (2, 2), (0, 0), RELU, in_place=True)
    with pytest.raises(ValueError, match="do not fit"):
        kp.max_pool2d_backward_to_logits(a, y2, np.zeros((1, 2, 3, 2)), (2, 2), (2, 2), (0, 0), RELU)


def test_max_pool_routes_ties_to_the_first_pixel_in_row_major_order():
    x = np.array([[0.0, 5.0], [5.0, 5.0]]).reshape(1, 2, 2, 1)
    y = rp.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1))
    expected = np.array([[0.0, 1.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)
    np.testing.assert_array_equal(rp.max_pool2d_backward(x, y, np.ones((1, 1, 1, 1)), (2, 2), (2, 2), (0, 0)), expected)
    np.testing.assert_array_equal(kp.max_pool2d_backward(x, y, np.ones((1, 1, 1, 1)), (2, 2), (2, 2), (0, 0)), expected)


def test_same_pooling_excludes_the_padding():
    """Average: the mean of the real pixels only; max: all-negative inputs never lose to a zero pad."""
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    pt, Ho = rc.conv_output_size(3, 2, 2, 1, "same")
    y = kp.avg_pool2d_forward(x, (2, 2), (2, 2), (pt, pt), (Ho, Ho))
    np.testing.assert_allclose(y[0, :, :, 0], [[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2], [(7 + 8) / 2, 9]])
    m = kp.max_pool2d_forward(-x, (2, 2), (2, 2), (pt, pt), (Ho, Ho))
    np.testing.assert_array_equal(m[0, :, :, 0], [[-1, -3], [-7, -9]])


def test_forward_row_pieces_cover_every_row_once_in_range_order_on_one_thread_blas(monkeypatch):
    """_share_rows: per thread up to PIECES_PER_THREAD ranges of PIECE_WORK or more, covering range(rows) once,
    results in range order (rows of one image split as soon as the work fills a piece per thread); one call on one
    thread below that, below PARALLEL_WORK or with one core; numpy's BLAS held to one thread in every piece (also
    the lone one)."""
    from tinynn.kernels import cblas

    get = cblas._bind()["threads"][0] if cblas.can_limit_threads() else None
    seen = []

    def task(k, r0, r1):
        seen.append((k, r0, r1, None if get is None else get()))
        return r0

    monkeypatch.setenv("TINYNN_NUM_THREADS", "2")
    work = 2 * kc.PIECE_WORK  # enough for one piece per thread
    assert work >= parallel.PARALLEL_WORK
    if get is not None:
        assert kc._share_rows(task, 18, work) == [0, 9]
        assert sorted(r[1:3] for r in seen) == [(0, 9), (9, 18)] and {r[0] for r in seen} <= {0, 1}
        seen.clear()
        starts = kc._share_rows(task, 37, 1e12)  # many pieces: PIECES_PER_THREAD per thread
        assert len(starts) == 2 * parallel.PIECES_PER_THREAD and starts == sorted(starts)
        assert sorted(i for _, a, b, _ in seen for i in range(a, b)) == list(range(37))
        assert {r[3] for r in seen} == {1}
    seen.clear()
    assert kc._share_rows(task, 18, parallel.PARALLEL_WORK - 1) == [0] and seen[0][:3] == (0, 0, 18)
    assert kc._share_rows(task, 18, work - 1) == [0]  # less than a piece per thread
    monkeypatch.setenv("TINYNN_NUM_THREADS", "1")
    assert kc._share_rows(task, 18, 1e12) == [0]
    assert all(r[3] in (None, 1) for r in seen)


@st.composite
def im2col_or_winograd(draw):
    """(winograd, geometry): any geometry for im2col, a 3×3 stride-1 one for Winograd (switched on for it)."""
    winograd = draw(st.booleans())
    return winograd, draw(winograd_geometry() if winograd else conv_geometry())


@given(case=im2col_or_winograd(), code=st.sampled_from(["linear", "relu", "tanh", "sigmoid"]),
       dtype=st.sampled_from(["float64", "float32"]), chunk_bytes=st.sampled_from([1, 300, 1 << 22]),
       threads=st.sampled_from([1, 2]))
@example(case=(False, POINTWISE), code="relu", dtype="float32", chunk_bytes=300, threads=2)  # chunks cross images
@example(case=(False, SEED_GEOMETRY), code="tanh", dtype="float64", chunk_bytes=1, threads=2)
@example(case=(False, geometry(3, 3, (3, 3), (1, 1), (1, 1), "valid")), code="relu", dtype="float64",
         chunk_bytes=1, threads=1)  # one output pixel: dy is taken as it is
@example(case=(True, geometry(9, 8, (3, 3), (1, 1), (1, 1), "same", Cg=5, Fg=4)), code="relu", dtype="float32",
         chunk_bytes=1, threads=2)
def test_the_backward_of_a_mean_over_the_pixels_reads_its_gradient_once_per_image(case, code, dtype, chunk_bytes,
                                                                                  threads):
    """conv2d_backward_fused given dy as the gradient of a global average pooling, a view of one row per image
    (strides 0 along both image axes, as GlobalAveragePooling2D.backward_broadcast hands it over): each chunk's
    activation gradient reads that row (activation_gradient_broadcast_rows), and dx, dW and db are bit for bit those
    of the same call with dy written out. In chunks down to one output row (across images), on 1 or 2 threads, by
    im2col or by Winograd."""
    from tinynn import activations
    from tinynn.kernels.fastmath import activation_code

    winograd, g = case
    x, Wk, _ = _conv_arrays(g, dtype)
    s, d, pads = _geo(g)
    act = activation_code(activations.get(code))
    rng = np.random.default_rng(g["seed"] + 5)
    y = kc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"], bias=rng.standard_normal(Wk.shape[3]).astype(dtype),
                          activation=act)  # fmt: skip
    row = rng.standard_normal((g["B"], 1, 1, Wk.shape[3])).astype(dtype)
    dy = np.broadcast_to(row, y.shape)
    spread = y.shape[1] * y.shape[2] > 1  # one pixel: nothing to gain, dy is taken as it is
    with pytest.MonkeyPatch.context() as patch:  # (hypothesis: no function-scoped monkeypatch fixture)
        calls = count_calls(patch, kc, "activation_gradient_broadcast_rows")
        for name, value in (("CHUNK_BYTES", chunk_bytes), ("WINOGRAD_MIN_CHANNELS", 1 if winograd else 1 << 30)):
            patch.setattr(kc, name, value)
        patch.setattr(kw, "CHUNK_BYTES", chunk_bytes)
        patch.setattr(parallel, "PARALLEL_WORK", 0)
        patch.setenv("TINYNN_NUM_THREADS", str(threads))
        assert kc.uses_winograd(Wk.shape, s, d, g["G"]) == winograd
        viewed = kc.conv2d_backward_fused(x, Wk, y, dy, act, s, d, pads, g["G"])
        ran = len(calls)
        written = kc.conv2d_backward_fused(x, Wk, y, np.ascontiguousarray(dy), act, s, d, pads, g["G"])
    assert (ran > 0) == spread and len(calls) == ran
    for a, b in zip(viewed, written):
        np.testing.assert_array_equal(a, b)


def test_the_pooled_gradient_is_written_out_while_its_kernel_compiles(monkeypatch):
    """Until activation_gradient_broadcast_rows is compiled for the call's types (compiled in the background
    meanwhile: warmup.kernel_ready says no), conv2d_backward_fused writes the broadcast dy out and runs as before."""
    from tinynn.kernels import warmup

    real = warmup.kernel_ready
    monkeypatch.setattr(warmup, "kernel_ready", lambda fn, *a: fn is not kc.activation_gradient_broadcast_rows
                        and real(fn, *a))  # fmt: skip
    calls = count_calls(monkeypatch, kc, "activation_gradient_broadcast_rows")
    x, Wk, _ = _conv_arrays(SEED_GEOMETRY)
    s, d, pads = _geo(SEED_GEOMETRY)
    y = kc.conv2d_forward(x, Wk, s, d, pads, SEED_GEOMETRY["out"], activation=RELU)
    dy = np.broadcast_to(np.arange(1.0, 1 + Wk.shape[3])[None, None, None], y.shape)
    viewed = kc.conv2d_backward_fused(x, Wk, y, dy, RELU, s, d, pads)
    written = kc.conv2d_backward_fused(x, Wk, y, np.ascontiguousarray(dy), RELU, s, d, pads)
    assert not calls
    for a, b in zip(viewed, written):
        np.testing.assert_array_equal(a, b)


@st.composite
def pooled_im2col_or_winograd(draw):
    """(winograd, geometry) as :func:`im2col_or_winograd`, of one group and with a whole 2×2 window of output (the
    convolutions conv2d_forward_max_pooled takes)."""
    winograd = draw(st.booleans())
    geometries = winograd_geometry() if winograd else conv_geometry(depthwise=True)  # depthwise: one group
    return winograd, draw(geometries.filter(lambda g: min(g["out"]) >= 2))


@given(case=pooled_im2col_or_winograd(), relu=st.booleans(), values=st.sampled_from(["ties", "nans"]),
       dtype=st.sampled_from(["float64", "float32"]), chunk_bytes=st.sampled_from([1, 300, 1 << 22]),
       threads=st.sampled_from([1, 2]))
@example(case=(True, geometry(9, 8, (3, 3), (1, 1), (1, 1), "valid", B=3, Cg=4, Fg=5)), relu=True, values="ties",
         dtype="float32", chunk_bytes=300, threads=2)  # odd Ho: the last row of blocks skipped
@example(case=(False, geometry(11, 7, (3, 3), (1, 1), (1, 1), "same", B=2, Cg=3, Fg=4)), relu=False,
         values="nans", dtype="float64", chunk_bytes=1, threads=2)  # fmt: skip
def test_the_max_pooled_forward_keeps_each_windows_first_maximum(case, relu, values, dtype, chunk_bytes, threads):
    """conv2d_forward_max_pooled(index=True), the training forward of a Conv2D and its 2×2 max pooling: p has the bits
    of the pass without the index, and k is each window's first maximum in row-major order (a NaN window: its first
    NaN) of the convolution's output y, as the NumPy twin finds it in y; by im2col and by Winograd, in chunks, on one
    or two threads. The data are small integers (exact products, so y is the same in every pass, and many ties:
    ReLU's zeros, equal sums) or have a NaN pixel."""
    winograd, g = case
    rng = np.random.default_rng(g["seed"])
    x = rng.integers(-2, 3, (g["B"], g["H"], g["W"], g["G"] * g["Cg"])).astype(dtype)
    Wk = rng.integers(-1, 2, (*g["K"], g["Cg"], g["G"] * g["Fg"])).astype(dtype)
    b = rng.integers(-1, 2, Wk.shape[3]).astype(dtype)
    if values == "nans":
        x[0, g["H"] // 2, g["W"] // 2, 0] = np.nan
    s, d, pads = _geo(g)
    code = RELU if relu else LINEAR
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("CHUNK_BYTES", chunk_bytes), ("WINOGRAD_MIN_CHANNELS", 1 if winograd else 1 << 30)):
            patch.setattr(kc, name, value)
        patch.setattr(kw, "CHUNK_BYTES", chunk_bytes)
        patch.setattr(parallel, "PARALLEL_WORK", 0)
        patch.setenv("TINYNN_NUM_THREADS", str(threads))
        args = (x, Wk, s, d, pads, g["out"], g["G"], None, b, code)
        p = kc.conv2d_forward_max_pooled(*args)
        kept = kc.conv2d_forward_max_pooled(*args, index=True)
        y = kc.conv2d_forward(x, Wk, s, d, pads, g["out"], g["G"], bias=b, activation=code)
    assert p is not None
    p_kept, k = kept
    assert k.dtype == np.uint8 and k.shape == p.shape
    assert np.array_equal(p_kept.view(np.uint8), p.view(np.uint8))
    Hp, Wp = p.shape[1:3]
    y_windows = y[:, : 2 * Hp, : 2 * Wp]
    np.testing.assert_array_equal(p, rp.max_pool2d_forward(y_windows, (2, 2), (2, 2), (0, 0), (Hp, Wp)))
    np.testing.assert_array_equal(k, rp.max_pool2d_window_index(y_windows))


@given(g=st.fixed_dictionaries({"B": st.integers(1, 3), "H": st.integers(2, 9), "W": st.integers(2, 9),
                                "C": st.sampled_from([1, 3, 16, 37]), "seed": st.integers(0, 2**16)}),
       values=st.sampled_from(["ties", "nans", "normal"]), relu=st.booleans(),
       dtype=st.sampled_from(["f8", "f4"]), threads=st.sampled_from([1, 2]))  # fmt: skip
@example(g={"B": 2, "H": 5, "W": 7, "C": 16, "seed": 1}, values="ties", relu=True, dtype="f4", threads=2)
@example(g={"B": 3, "H": 6, "W": 9, "C": 37, "seed": 2}, values="nans", relu=False, dtype="f8", threads=2)
def test_max_pool_backward_from_the_first_maxima_gives_the_bits_of_the_pair_kernel(g, values, relu, dtype, threads):
    """max_pool2d_backward_from_index (the training pair's backward from p and the windows' first maxima k) gives the
    bits of max_pool2d_backward_to_logits (from a itself): dz and db, ties, NaN, odd rows and columns no window
    reads, 16 and 37 channels (the vectorised loop's body); the NumPy twins of both agree too."""
    rng = np.random.default_rng(g["seed"])
    xm, _ = pool_input(rng, (g["B"], g["H"], g["W"], g["C"]), values)
    a = (np.maximum(xm, 0) if relu else xm).astype(dtype)  # ReLU's output or a linear one, as the conv hands it
    Hp, Wp = g["H"] // 2, g["W"] // 2
    args = ((2, 2), (2, 2), (0, 0))
    y = rp.max_pool2d_forward(a, *args, (Hp, Wp))
    k = rp.max_pool2d_window_index(a)
    dy = rng.standard_normal(y.shape).astype(dtype)
    code, activation = (RELU, "relu") if relu else (LINEAR, "linear")
    with mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        dz, db = kp.max_pool2d_backward_from_index(y, k, dy, a.shape[1:3], code)
        dz_a, db_a = kp.max_pool2d_backward_to_logits(a, y, dy, *args, code)
    np.testing.assert_array_equal(dz.view(np.uint8), dz_a.view(np.uint8))
    np.testing.assert_array_equal(db.view(np.uint8), db_a.view(np.uint8))
    dz_ref, db_ref = rp.max_pool2d_backward_from_index(y, k, dy, a.shape[1:3], activation)
    dz_ref_a, db_ref_a = rp.max_pool2d_backward_to_logits(a, y, dy, *args, activation)
    np.testing.assert_array_equal(dz_ref, dz_ref_a)
    np.testing.assert_array_equal(dz, dz_ref)
    np.testing.assert_array_equal(db_ref, db_ref_a)


def test_max_pool_backward_from_the_first_maxima_refuses_what_does_not_fit():
    """Shapes, k's dtype and the activation are checked before the kernel runs, naming the function."""
    y = np.zeros((1, 2, 3, 2))
    k = np.zeros(y.shape, np.uint8)
    with pytest.raises(ValueError, match="backward_from_index: .* do not fit a 2×2, stride-2 pooling of 7 × 9"):
        kp.max_pool2d_backward_from_index(y, k, y, (7, 9), RELU)
    with pytest.raises(ValueError, match="backward_from_index: .*int64"):
        kp.max_pool2d_backward_from_index(y, k.astype(np.int64), y, (4, 6), RELU)
    with pytest.raises(ValueError, match="backward_from_index: activation code"):
        kp.max_pool2d_backward_from_index(y, k, y, (4, 6), 1)
    dz, db = kp.max_pool2d_backward_from_index(y, k, y, (5, 6), RELU)  # an odd row no window reads
    assert dz.shape == (1, 5, 6, 2) and db.shape == (2,)
