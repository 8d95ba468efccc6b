"""Winograd F(2, 3) along the width for 3×3 Conv2Ds with few channels (tinynn.kernels.winograd_width): the numba
transforms equal their NumPy twins bit for bit, the twins' algorithm equals the direct convolution, and
conv2d_forward and conv2d_forward_pooled take it (counted) and equal the reference, at both paddings, odd and even
output widths, in chunks of one output row to all of them, on one and two threads."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tinynn import activations
from tinynn.kernels import conv2d as kc
from tinynn.kernels import parallel
from tinynn.kernels import winograd_width as kw
from tinynn.kernels.fastmath import activation_code
from tinynn.kernels.reference import conv2d as rc

TOL = 1e-12  # float64, norm-wise relative (max |ours - ref| / max |ref|)
TOL32 = 2e-6  # float32 against the float64 direct convolution


@pytest.fixture(autouse=True)
def other_cpus_rule(monkeypatch):
    """The tests below use the filter threshold of the CPUs other than Intel's (16) on any host; the Intel rule
    has its own test (test_an_intel_cpu_takes_64_filters_or_more)."""
    monkeypatch.setattr(kw, "INTEL_MIN_FILTERS", kw.MIN_FILTERS)


def rel_err(ours, ref, scale=None):
    """max |ours - ref| / max |scale| (default: ref). An activation's output is measured against its input z's size
    (|act'| <= 1 for the ones drawn here: the convolution's rounding of z is what reaches y)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    size = np.abs(ref if scale is None else scale).max()
    return float(np.abs(ours.astype(np.float64) - ref).max() / max(size, 1e-300))


@st.composite
def geometry(draw):
    """3×3, stride 1: 'valid' from the smallest input, 'same' from one pixel; odd and even output widths."""
    padding = draw(st.sampled_from(["valid", "same"]))
    low = 3 if padding == "valid" else 1
    H, W = draw(st.integers(low, 9)), draw(st.integers(low, 11))
    (pt, Ho), (pl, Wo) = rc.conv_output_size(H, 3, 1, 1, padding), rc.conv_output_size(W, 3, 1, 1, padding)
    return dict(B=draw(st.integers(1, 3)), H=H, W=W, C=draw(st.integers(1, 4)), F=draw(st.integers(1, 5)),
                pads=(pt, pl), out=(Ho, Wo), seed=draw(st.integers(0, 2**16)))  # fmt: skip


def _arrays(g, dtype=np.float64):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["B"], g["H"], g["W"], g["C"])).astype(dtype)
    Wk = rng.standard_normal((3, 3, g["C"], g["F"])).astype(dtype)
    return x, Wk


@given(g=geometry(), dtype=st.sampled_from([np.float64, np.float32]))
@example(g=dict(B=2, H=4, W=6, C=2, F=3, pads=(0, 0), out=(2, 4), seed=1), dtype=np.float32)
@example(g=dict(B=1, H=3, W=5, C=3, F=2, pads=(1, 1), out=(3, 5), seed=2), dtype=np.float64)
def test_transforms_equal_their_twins_bit_for_bit(g, dtype):
    x, _ = _arrays(g, dtype)
    xp = rc.winograd_width_padded(x, g["pads"], g["out"], 3)
    assert np.array_equal(kw._padded(x, g["pads"], g["out"], 3), xp)
    V = kw.input_transform(xp, 3)
    assert V.dtype == dtype and np.array_equal(V, rc.winograd_width_input_transform(xp, 3))
    M = np.random.default_rng(g["seed"]).standard_normal((4, V.shape[1], g["F"])).astype(dtype)
    z = kw.output_transform(M, g["B"], g["out"])
    assert np.array_equal(z, rc.winograd_width_output_transform(M, g["B"], g["out"]))


@given(g=geometry())
@example(g=dict(B=2, H=5, W=8, C=2, F=3, pads=(0, 0), out=(3, 6), seed=4))
@example(g=dict(B=1, H=4, W=7, C=2, F=2, pads=(1, 1), out=(4, 7), seed=5))
def test_the_twins_equal_the_direct_convolution(g):
    x, Wk = _arrays(g)
    assert rel_err(rc.winograd_width_forward(x, Wk, g["pads"], g["out"]),
                   rc.conv2d_forward(x, Wk, (1, 1), (1, 1), g["pads"], g["out"])) <= TOL  # fmt: skip


@given(g=geometry(), code=st.sampled_from([None, "relu", "tanh"]), use_bias=st.booleans(),
       chunk_bytes=st.sampled_from([1, 3000, 1 << 20]), threads=st.sampled_from([1, 2]),
       dtype=st.sampled_from([np.float64, np.float32]))  # fmt: skip
@example(g=dict(B=3, H=6, W=7, C=3, F=4, pads=(1, 1), out=(6, 7), seed=3), code="relu", use_bias=True, chunk_bytes=1,
         threads=2, dtype=np.float64)  # fmt: skip
@example(g=dict(B=2, H=5, W=8, C=2, F=3, pads=(0, 0), out=(3, 6), seed=6), code="tanh", use_bias=False,
         chunk_bytes=3000, threads=1, dtype=np.float32)  # fmt: skip
def test_conv2d_forward_and_its_pooled_form_take_it(g, code, use_bias, chunk_bytes, threads, dtype):
    """With the thresholds lowered, conv2d_forward (plain and with its tail) and conv2d_forward_pooled run F(2, 3)
    along the width (counted) and equal the direct reference; the pooled mean's error is measured against the size
    of the pixels it averages."""
    x, Wk = _arrays(g, dtype)
    pads, out = g["pads"], g["out"]
    tol = TOL if dtype == np.float64 else TOL32
    z_ref = rc.conv2d_forward(x.astype(np.float64), Wk.astype(np.float64), (1, 1), (1, 1), pads, out)
    b = np.random.default_rng(g["seed"] + 1).standard_normal(g["F"]).astype(dtype) if use_bias else None
    act = None if code is None else activations.get(code)
    zb = z_ref + (0 if b is None or act is None else b)
    y_ref = zb if act is None else act(zb)
    acode = None if act is None else activation_code(act)
    plain, pooled = [], []
    real_plain, real_pooled = kw.winograd_width_conv2d, kw.winograd_width_conv2d_pooled
    with mock.patch.object(kw, "MIN_CHANNELS", 1), mock.patch.object(kw, "MIN_FILTERS", 1), \
            mock.patch.object(kw, "INTEL_MIN_FILTERS", 1), \
            mock.patch.object(kw, "MIN_WORK", 1), mock.patch.object(kw, "CHUNK_BYTES", chunk_bytes), \
            mock.patch.object(kw, "winograd_width_conv2d", lambda *a, **k: plain.append(1) or real_plain(*a, **k)), \
            mock.patch.object(kw, "winograd_width_conv2d_pooled",
                              lambda *a, **k: pooled.append(1) or real_pooled(*a, **k)), \
            mock.patch.object(parallel, "PARALLEL_WORK", 0), \
            mock.patch.dict("os.environ", {"TINYNN_NUM_THREADS": str(threads)}):  # fmt: skip
        assert kw.applies(Wk.shape, (1, 1), (1, 1), 1, dtype, g["B"] * out[0] * out[1])
        y = kc.conv2d_forward(x, Wk, (1, 1), (1, 1), pads, out, bias=b, activation=acode)
        p = kc.conv2d_forward_pooled(x, Wk, (1, 1), (1, 1), pads, out, workspace={}, bias=b, activation=acode)
    assert plain == [1] and pooled == [1]
    assert y.dtype == dtype and rel_err(y, y_ref, scale=zb) <= tol
    assert p.dtype == dtype and rel_err(p, y_ref.mean(axis=(1, 2)), scale=zb) <= tol


def test_conv2d_and_global_average_pooling_predict_through_it():
    """A Sequential's Conv2D(32, 3, relu) -> GlobalAveragePooling2D on 16 channels predicts 64 images through
    winograd_width_conv2d_pooled (counted) and 8 images through the pooled im2col chunks (below MIN_WORK); both equal
    the float64 reference convolution's pooled ReLU."""
    import tinynn as tn
    from tinynn import layers

    real = kw.winograd_width_conv2d_pooled
    for batch, expected in ((64, [1]), (8, [])):
        x = np.random.default_rng(batch).standard_normal((batch, 20, 20, 16)).astype(np.float32)
        model = tn.Sequential([layers.Input((20, 20, 16)), layers.Conv2D(32, 3, activation="relu",
                               bias_initializer="random_normal"), layers.GlobalAveragePooling2D()])  # fmt: skip
        calls = []
        counted = (lambda *a, _calls=calls, **k: _calls.append(1) or real(*a, **k))  # noqa: E731
        with mock.patch.object(kw, "winograd_width_conv2d_pooled", counted):
            pooled = model.predict_on_batch(x)
        conv = model.layers[0]
        kernel, bias = (w.astype(np.float64) for w in conv.get_weights())
        z = rc.conv2d_forward(x.astype(np.float64), kernel, (1, 1), (1, 1), (0, 0), (18, 18)) + bias
        assert calls == expected
        assert rel_err(pooled, np.maximum(z, 0).mean(axis=(1, 2)), scale=z) <= TOL32


def test_winograd_width_is_chosen_for_3x3_stride_1_convolutions_with_few_channels_only():
    f32 = np.float32
    assert kw.applies((3, 3, 16, 32), (1, 1), (1, 1), 1, f32, 64 * 18 * 18)
    assert not kw.applies((3, 3, 16, 32), (1, 1), (1, 1), 1, f32, 1000)  # too short (MIN_WORK)
    assert not kw.applies((3, 3, 3, 32), (1, 1), (1, 1), 1, f32, 1 << 16)  # a 9-number product: too thin
    assert not kw.applies((3, 3, 8, 32), (1, 1), (1, 1), 1, f32, 1 << 16)  # 24 numbers: still too thin
    assert kw.applies((3, 3, 12, 32), (1, 1), (1, 1), 1, f32, 1 << 16)
    assert not kw.applies((3, 3, 16, 32), (1, 1), (1, 1), 1, f32, 8 * 18 * 18)  # short: im2col splits it natively
    assert not kw.applies((3, 3, 16, 8), (1, 1), (1, 1), 1, f32, 1 << 16)
    assert not kw.applies((3, 3, 16, 1024), (1, 1), (1, 1), 1, f32, 1 << 16)  # U over half the L2 cache
    assert not kw.applies((3, 3, 16, 32), (2, 2), (1, 1), 1, f32, 1 << 16)
    assert not kw.applies((3, 3, 16, 32), (1, 1), (2, 2), 1, f32, 1 << 16)
    assert not kw.applies((3, 3, 16, 32), (1, 1), (1, 1), 2, f32, 1 << 16)
    assert not kw.applies((5, 5, 16, 32), (1, 1), (1, 1), 1, f32, 1 << 16)
    # 32 channels in and out: F(2×2, 3×3) takes it first (conv2d.uses_winograd)
    assert kc.uses_winograd((3, 3, 32, 32), (1, 1), (1, 1), 1)


def test_an_intel_cpu_takes_64_filters_or_more(monkeypatch):
    """On an Intel CPU im2col keeps 16-63 filters (its small-matrix chunks ran them faster there); elsewhere 16."""
    from tinynn.kernels import cblas

    monkeypatch.undo()  # the real INTEL_MIN_FILTERS
    f32, pixels = np.float32, 256 * 18 * 18
    for vendor, takes_32 in (("GenuineIntel", False), ("AuthenticAMD", True), ("", True)):
        monkeypatch.setattr(cblas, "cpu_vendor", lambda vendor=vendor: vendor)
        assert kw.applies((3, 3, 16, 32), (1, 1), (1, 1), 1, f32, pixels) is takes_32
        assert kw.applies((3, 3, 16, 64), (1, 1), (1, 1), 1, f32, pixels)
        assert kw.applies((3, 3, 16, 16), (1, 1), (1, 1), 1, f32, pixels) is takes_32


def test_bad_shapes_are_refused_before_any_kernel_runs():
    x = np.zeros((2, 6, 6, 3))
    with pytest.raises(ValueError, match=r"winograd_width_conv2d: needs .* got x \(2, 6, 6, 3\), kernel \(3, 5, 3, 4"):
        kw.winograd_width_conv2d(x, np.zeros((3, 5, 3, 4)), (0, 0), (4, 2))
    with pytest.raises(ValueError, match=r"kernel \(3, 3, 2, 4\)"):
        kw.winograd_width_conv2d(x, np.zeros((3, 3, 2, 4)), (0, 0), (4, 4))
    with pytest.raises(ValueError, match=r"pads \(0, 3\)"):
        kw.winograd_width_conv2d_pooled(x, np.zeros((3, 3, 3, 4)), (0, 3), (4, 4))
