"""The fused bias + activation kernels agree with NumPy's separate passes (tinynn.kernels.bias_activation)."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from spies import count_calls

from tinynn import activations
from tinynn.kernels import bias_activation as K
from tinynn.kernels.fastmath import activation_code
from tinynn.kernels.reference import bias_activation as R

FUSED = ["linear", "relu", "tanh", "sigmoid", "hard_sigmoid"]
# The kernels' rational tanh/sigmoid (Eigen's, as TensorFlow's) are within 3e-7 of libm's in float32 and a few
# ulp in float64 (tests/test_recurrent_kernels.py), so y is compared relative to max(|y|, 1). The backward is
# compared on the kernel's own y: a derivative written from the output (1 - y² for tanh) amplifies y's last-ulp
# differences wherever y is near ±1, in the NumPy formula just as in the kernel.
TOL = {"float64": 1e-13, "float32": 1e-6}


def rel_err(a, b, floor=1e-6):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), floor))


@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    name=st.sampled_from(FUSED),
    dtype=st.sampled_from(["float64", "float32"]),
    use_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(shape=[4, 5], name="relu", dtype="float32", use_bias=True, seed=0)  # relu's own in-place loop
def test_fused_forward_and_backward_match_the_numpy_passes(shape, name, dtype, use_bias, seed):
    rng = np.random.default_rng(seed)
    act = activations.get(name)
    z = (3 * rng.normal(size=shape)).astype(dtype)
    bias = rng.normal(size=shape[-1]).astype(dtype) if use_bias else None
    dy = rng.normal(size=shape).astype(dtype)
    z_ref, y_ref = R.bias_activation_forward(z, bias, act)
    z_before, dy_before = z.copy(), dy.copy()

    y = K.bias_activation_forward(z, bias, activation_code(act))
    dz, db = K.bias_activation_backward(y, dy, activation_code(act), bias_sum=use_bias)
    dz_ref, db_ref = R.bias_activation_backward(z_ref, y, dy, act)

    assert y.dtype == dz.dtype == np.dtype(dtype)
    assert np.array_equal(z, z_before)  # inputs are never written
    assert rel_err(y, y_ref, floor=1.0) <= TOL[dtype]
    assert rel_err(dz, dz_ref) <= TOL[dtype]
    assert np.array_equal(dy, dy_before)
    assert np.array_equal(K.bias_activation_forward(np.asfortranarray(z), bias, activation_code(act)), y)
    rows = z.reshape(-1, z.shape[-1]).copy()  # the image kernels' in-place form: y written over z
    K.bias_activation_rows(rows, np.zeros(z.shape[-1], dtype) if bias is None else bias, activation_code(act), rows)
    assert np.array_equal(rows.reshape(z.shape), y)
    if use_bias:
        assert db.dtype == np.dtype(dtype)
        assert rel_err(db, db_ref) <= TOL[dtype] * max(1, shape[0])  # sums of up to 81 terms
    else:
        assert db is None


@given(
    shape=st.tuples(st.integers(1, 5), st.integers(2, 7), st.integers(1, 9)),
    name=st.sampled_from(FUSED),
    dtype=st.sampled_from(["float64", "float32"]),
    use_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_backward_of_a_mean_over_the_steps_reads_its_gradient_once(shape, name, dtype, use_bias, seed):
    """bias_activation_backward with dy broadcast along the steps (a read-only view with stride 0, as
    GlobalAveragePooling1D.backward_broadcast hands it over) runs _backward_broadcast: the same bits as with dy
    written out, and the NumPy passes' result (which broadcast the view as it is) within the tolerance."""
    rng = np.random.default_rng(seed)
    act = activations.get(name)
    z = (3 * rng.normal(size=shape)).astype(dtype)
    y = K.bias_activation_forward(z, None, activation_code(act))
    g = rng.normal(size=(shape[0], shape[2])).astype(dtype)
    dy = np.broadcast_to(g[:, None, :], shape)
    assert dy.strides[1] == 0
    with pytest.MonkeyPatch.context() as patch:  # (hypothesis: no function-scoped monkeypatch fixture)
        calls = count_calls(patch, K, "_backward_broadcast")
        dz, db = K.bias_activation_backward(y, dy, activation_code(act), bias_sum=use_bias)
    assert calls == [1]
    dz_full, db_full = K.bias_activation_backward(y, np.ascontiguousarray(dy), activation_code(act), use_bias)
    assert np.array_equal(dz, dz_full)
    assert (db is None and db_full is None) or np.array_equal(db, db_full)
    dz_ref, _ = R.bias_activation_backward(z, y, dy, act)
    assert rel_err(dz, dz_ref) <= TOL[dtype]


@given(
    images=st.integers(1, 4),
    pixels=st.integers(1, 7),
    F=st.integers(1, 9),
    span=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    name=st.sampled_from(FUSED),
    dtype=st.sampled_from(["float64", "float32"]),
    seed=st.integers(0, 2**16),
)
@example(images=3, pixels=5, F=4, span=(0.1, 0.8), name="relu", dtype="float32", seed=0)  # starts and ends inside
def test_a_chunk_of_a_pooled_gradient_reads_one_row_per_image(images, pixels, F, span, name, dtype, seed):
    """activation_gradient_broadcast_rows on the rows p0 .. p0 + N - 1 of images of ``pixels`` rows each (a chunk of
    an image kernel, which may start and end inside an image), with dy[n] = g[(p0 + n) // pixels]: dz and db bit for
    bit those of activation_gradient_rows on dy written out."""
    rng = np.random.default_rng(seed)
    code = activation_code(activations.get(name))
    total = images * pixels
    p0 = min(int(span[0] * total), total - 1)
    N = max(1, int(span[1] * (total - p0)))
    y = K.bias_activation_forward((3 * rng.normal(size=(N, F))).astype(dtype), None, code)
    g = rng.normal(size=(images, F)).astype(dtype)
    dy = g[(p0 + np.arange(N)) // pixels]
    dz, db = np.empty_like(y), np.empty(F, np.float64)
    K.activation_gradient_broadcast_rows(y, g, p0, pixels, code, True, dz, db)
    dz_full, db_full = np.empty_like(y), np.empty(F, np.float64)
    K.activation_gradient_rows(y, dy, code, True, dz_full, db_full)
    assert np.array_equal(dz, dz_full) and np.array_equal(db, db_full)


def test_relu_is_exact_and_its_bias_gradient_is_summed_in_float64():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3000, 4)).astype(np.float32)
    bias = np.array([0.5, -0.5, 1e-3, 0.0], np.float32)
    y = K.bias_activation_forward(z, bias, activation_code(activations.relu))
    zb = z + bias
    assert np.array_equal(y, np.maximum(zb, 0))
    dy = (1 + rng.random((3000, 4))).astype(np.float32) * 1e4
    dz, db = K.bias_activation_backward(y, dy, activation_code(activations.relu))
    assert np.array_equal(dz, dy * (zb > 0))
    exact = (dy.astype(np.float64) * (zb > 0)).sum(axis=0)
    assert np.all(db == exact.astype(np.float32))  # one rounding at the end


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_relu_kernel_treats_nan_and_infinities_as_numpys_maximum(dtype):
    """relu in each kernel that applies it (the fused tail out of place and in place, activate_row, the pooled
    convolution's sums, Winograd's output transform) gives np.maximum(v, 0): NaN stays NaN, -inf gives 0, inf stays
    inf (the reference relu is np.maximum; the kernels' former ``v if v > 0 else v * 0`` turned -inf into NaN)."""
    from tinynn.kernels import conv2d, fastmath, winograd

    relu = activation_code(activations.relu)
    special = np.array([np.nan, -np.inf, np.inf, -2.0, -0.0, 0.0, 3.0, -1e-30], dtype)
    z = np.tile(special, (3, 1))
    bias = np.zeros(z.shape[1], dtype)
    want = np.maximum(z, 0)
    np.testing.assert_array_equal(K.bias_activation_forward(z, bias, relu), want)
    inplace = z.copy()
    K.bias_activation_rows(inplace, bias, relu, inplace)
    np.testing.assert_array_equal(inplace, want)
    row = special.copy()
    fastmath.activate_row(row, relu)
    np.testing.assert_array_equal(row, want[0])
    sums = np.zeros((1, z.shape[1]))
    conv2d._pool_rows(z.copy(), bias, relu, 0, 3, 1, 0, sums)  # one image of 3 × 1 pixels
    np.testing.assert_array_equal(sums[0], want.astype(np.float64).sum(axis=0))
    # Winograd: a zero image and kernel, so every output pixel is relu(bias) (F = 8 filters, one per special value)
    out = winograd.winograd_conv2d(np.zeros((1, 4, 4, 1), dtype), np.zeros((3, 3, 1, 8), dtype), (0, 0), (2, 2),
                                   bias=special, activation=relu)
    np.testing.assert_array_equal(out.reshape(4, 8), np.tile(want[0], (4, 1)))


def test_bad_shapes_raise_clear_errors():
    relu = activation_code(activations.relu)
    with pytest.raises(ValueError, match=r"bias \(2,\) does not fit z \(4, 3\)"):
        K.bias_activation_forward(np.zeros((4, 3)), np.zeros(2), relu)
    with pytest.raises(ValueError, match=r"dy \(4, 2\) does not match y \(4, 3\)"):
        K.bias_activation_backward(np.zeros((4, 3)), np.zeros((4, 2)), relu)


@pytest.mark.parametrize("broadcast", [False, True])
@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_large_tails_run_in_row_ranges_on_the_cores_with_the_same_numbers(name, broadcast, monkeypatch):
    """From parallel.PARALLEL_WORK numbers the forward and backward run in row ranges pulled by the cores (here: a
    threshold of 0 and 2-3 threads, so even this small case splits): y and dz are the one-range numbers bit for bit,
    and db (the ranges' float64 partial sums added in range order, rounded once) the one-range db and the float64
    sum of dz within float32 rounding."""
    from tinynn.kernels import parallel

    rng = np.random.default_rng(3)
    B, T, F = 5, 7, 6
    z = (3 * rng.normal(size=(B, T, F))).astype(np.float32)
    bias = rng.normal(size=F).astype(np.float32)
    g = rng.normal(size=(B, 1, F)).astype(np.float32)
    dy = np.broadcast_to(g, (B, T, F)) if broadcast else rng.normal(size=(B, T, F)).astype(np.float32)
    code = activation_code(activations.get(name))
    y1 = K.bias_activation_forward(z, bias, code)
    dz1, db1 = K.bias_activation_backward(y1, dy, code)
    monkeypatch.setattr(parallel, "PARALLEL_WORK", 0)
    pieces, real = [], K.share_batch
    monkeypatch.setattr(K, "share_batch", lambda *a, **k: (lambda out: pieces.append(len(out)) or out)(real(*a, **k)))
    for threads in ("2", "3"):
        monkeypatch.setenv("TINYNN_NUM_THREADS", threads)
        y = K.bias_activation_forward(z, bias, code)
        dz, db = K.bias_activation_backward(y, dy, code)
        np.testing.assert_array_equal(y, y1)
        np.testing.assert_array_equal(dz, dz1)
        exact = dz1.reshape(-1, F).astype(np.float64).sum(axis=0)
        assert rel_err(db, exact) <= 2e-7 and rel_err(db, db1) <= 2e-7
    assert len(pieces) == 4 and min(pieces) > 1  # every pass split into ranges
