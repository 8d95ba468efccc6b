"""The 2-D layers on their own: finite-difference gradchecks (float64, both kernel modes), shapes, channels_first,
weight layouts, configs, the reference/fast switch, Flatten/Dropout on images, and clear ValueErrors for bad input
raised before any numba kernel runs."""

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spies import count_calls

import tinynn as tn
from tinynn import config, layers
from tinynn.gradcheck import check_layer
from tinynn.kernels import conv2d as kc
from tinynn.kernels import pooling as kp1
from tinynn.kernels import pooling2d as kp

GRADCHECK_TOL = 1e-6

CONV_CASES = [
    (lambda: layers.Conv2D(4, 3, activation="tanh"), (2, 6, 5, 3)),
    (lambda: layers.Conv2D(3, (3, 2), strides=(2, 1), padding="same", activation="relu"), (2, 7, 6, 2)),
    (lambda: layers.Conv2D(6, (2, 3), padding="same", dilation_rate=(2, 1), groups=3, activation="sigmoid"),
     (2, 5, 6, 6)),
    (lambda: layers.Conv2D(4, 2, strides=3, groups=2, use_bias=False), (3, 7, 8, 4)),
    (lambda: layers.Conv2D(3, 3, padding="same", data_format="channels_first", activation="gelu"), (2, 2, 5, 4)),
    (lambda: layers.Conv2D(2, (2, 3), padding="valid"), (1, 2, 3, 1)),  # the shortest legal input
    (lambda: layers.DepthwiseConv2D(3, strides=2, dilation_rate=2, padding="same", depth_multiplier=2), (2, 7, 6, 3)),
    (lambda: layers.DepthwiseConv2D((2, 3), activation="tanh", data_format="channels_first"), (2, 3, 4, 5)),
    (lambda: layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="tanh"), (2, 5, 4, 3)),
    (lambda: layers.SeparableConv2D(2, 2, strides=(2, 1), dilation_rate=(1, 3), use_bias=False), (2, 6, 8, 2)),
    (lambda: layers.SeparableConv2D(3, 3, data_format="channels_first", activation="relu"), (2, 2, 5, 6)),
]
POOL_CASES = [
    (lambda: layers.MaxPooling2D(), (2, 5, 4, 3)),
    (lambda: layers.MaxPooling2D(3, strides=(2, 1), padding="same"), (2, 6, 5, 3)),
    (lambda: layers.MaxPooling2D((2, 3), strides=1, data_format="channels_first"), (2, 3, 4, 5)),
    (lambda: layers.AveragePooling2D(3), (2, 6, 7, 2)),
    (lambda: layers.AveragePooling2D((3, 2), strides=(2, 3), padding="same"), (2, 7, 8, 2)),
    (lambda: layers.AveragePooling2D(2, strides=1, padding="same", data_format="channels_first"), (2, 3, 4, 3)),
    (lambda: layers.GlobalMaxPooling2D(), (2, 4, 3, 3)),
    (lambda: layers.GlobalMaxPooling2D(keepdims=True, data_format="channels_first"), (2, 3, 4, 3)),
    (lambda: layers.GlobalAveragePooling2D(), (2, 4, 3, 3)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (3, 1, 5, 2)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True, data_format="channels_first"), (2, 3, 4, 3)),
    (lambda: layers.ZeroPadding2D(((1, 2), (0, 3))), (2, 3, 4, 2)),
    (lambda: layers.ZeroPadding2D(1, data_format="channels_first"), (2, 2, 3, 4)),
    (lambda: layers.UpSampling2D((2, 3)), (2, 3, 2, 2)),
    (lambda: layers.UpSampling2D(2, data_format="channels_first"), (2, 2, 3, 2)),
]
ALL_CASES = CONV_CASES + POOL_CASES


def as_dtype(layer, dtype):
    """The same layer config in another dtype."""
    return type(layer).from_config({**layer.get_config(), "dtype": dtype})


def _ids(cases):
    return [f"{make().__class__.__name__}-{i}" for i, (make, _) in enumerate(cases)]


@pytest.mark.parametrize("mode", ["fast", "reference"])
@pytest.mark.parametrize("make,shape", ALL_CASES, ids=_ids(ALL_CASES))
def test_gradcheck(make, shape, mode):
    layer = as_dtype(make(), "float64")
    x = np.random.default_rng(0).standard_normal(shape)
    layer(x)  # build, then give every weight (biases too) random values
    rng = np.random.default_rng(1)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    with config.kernels(mode):
        results = check_layer(layer, x, seed=2)
    assert len(results) == 1 + len(layer.get_weights())
    for r in results:
        assert r.relative_error < GRADCHECK_TOL, str(r)


@pytest.mark.parametrize("make,shape", ALL_CASES, ids=_ids(ALL_CASES))
def test_fast_and_reference_modes_agree_and_reference_runs_no_numba(make, shape, monkeypatch):
    """Both kernel modes give the same outputs and gradients (float64, ~1e-13); 'reference' calls no fast kernel."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    results = {}
    for mode in ("fast", "reference"):
        layer = as_dtype(make(), "float64")
        layer(x)
        layer.set_weights([np.random.default_rng(1).standard_normal(w.shape) for w in layer.get_weights()])
        with config.kernels(mode), monkeypatch.context() as patch:
            if mode == "reference":
                for module in (kc, kp, kp1):
                    for name in module.__all__:
                        patch.setattr(module, name, _boom)
            y = layer(x, training=True)
            dx = layer.backward(np.random.default_rng(2).standard_normal(y.shape))
        results[mode] = [y, dx, *layer.gradients]
    for fast, ref in zip(results["fast"], results["reference"]):
        np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(ref).max()))


def _boom(*args, **kwargs):
    raise AssertionError("a fast kernel ran in 'reference' mode (or before the input was checked)")


@pytest.mark.parametrize("make,shape", ALL_CASES, ids=_ids(ALL_CASES))
def test_output_shape_dtype_and_no_mutation(make, shape):
    for dtype in ("float32", "float64"):
        layer = as_dtype(make(), dtype)
        x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        x_copy = x.copy()
        y = layer(x, training=True)
        assert y.shape[1:] == tuple(layer.compute_output_shape((None, *shape[1:]))[1:])
        assert y.dtype == dtype
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        dy_copy = dy.copy()
        dx = layer.backward(dy)
        assert dx.shape == x.shape and dx.dtype == dtype
        assert all(g.dtype == dtype and g.shape == w.shape for g, w in zip(layer.gradients, layer.weights))
        np.testing.assert_array_equal(x, x_copy)
        np.testing.assert_array_equal(dy, dy_copy)


CHANNELS_FIRST_CASES = [
    lambda fmt: layers.Conv2D(4, 3, strides=2, padding="same", groups=2, activation="relu", data_format=fmt),
    lambda fmt: layers.Conv2D(3, (2, 3), dilation_rate=(1, 2), data_format=fmt),
    lambda fmt: layers.SeparableConv2D(3, 3, padding="same", depth_multiplier=2, data_format=fmt),
    lambda fmt: layers.DepthwiseConv2D(2, dilation_rate=2, data_format=fmt),
    lambda fmt: layers.MaxPooling2D(3, strides=2, padding="same", data_format=fmt),
    lambda fmt: layers.AveragePooling2D(3, strides=2, padding="same", data_format=fmt),
    lambda fmt: layers.GlobalAveragePooling2D(data_format=fmt, keepdims=True),
    lambda fmt: layers.GlobalMaxPooling2D(data_format=fmt, keepdims=True),
    lambda fmt: layers.ZeroPadding2D(((1, 0), (2, 1)), data_format=fmt),
    lambda fmt: layers.UpSampling2D((3, 2), data_format=fmt),
]


@pytest.mark.parametrize("make", CHANNELS_FIRST_CASES)
def test_channels_first_equals_transposed_channels_last(make):
    """Keras-TF cannot run every channels_first case on CPU; this pins channels_first down independently."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 6, 4))
    to_first = (0, 3, 1, 2)
    last, first = as_dtype(make("channels_last"), "float64"), as_dtype(make("channels_first"), "float64")
    last(x)
    first(x.transpose(to_first))
    weights = [rng.standard_normal(w.shape) for w in last.get_weights()]
    last.set_weights(weights)
    first.set_weights(weights)
    y_last, y_first = last(x), first(x.transpose(to_first))
    np.testing.assert_allclose(y_first, y_last.transpose(to_first), rtol=1e-12)
    dy = rng.standard_normal(y_last.shape)
    dx_last, dx_first = last.backward(dy), first.backward(dy.transpose(to_first))
    np.testing.assert_allclose(dx_first, dx_last.transpose(to_first), rtol=1e-12, atol=1e-14)
    for a, b in zip(first.gradients, last.gradients):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40), st.integers(1, 9)),
       dtype=st.sampled_from(["float32", "float64"]), keepdims=st.booleans(), seed=st.integers(0, 2**16))
def test_global_average_pooling2d_fast_mean_is_within_the_rounding_of_a_sum(shape, dtype, keepdims, seed):
    """GlobalAveragePooling2D's fast mode (channels_last: the numba mean over the steps of (B, H·W, C), n = H·W
    numbers added one after the other, then one division) is within the rounding bound of such a sum of the exact
    mean: |ŷ - y| <= (n - 1)·u·mean|x| + u·|y| (u the unit roundoff), as NumPy's mean (reference mode) is."""
    x = (10 * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)
    layer = layers.GlobalAveragePooling2D(keepdims=keepdims, dtype=dtype)
    y = layer(x)
    assert layer._fast
    exact = x.astype(np.float64).mean(axis=(1, 2), keepdims=keepdims)
    u, n = np.finfo(dtype).eps / 2, shape[1] * shape[2]
    bound = (n - 1) * u * np.abs(x.astype(np.float64)).mean(axis=(1, 2), keepdims=keepdims) + u * np.abs(exact)
    assert np.all(np.abs(y - exact) <= bound)


def test_weight_layouts_are_keras():
    x = np.zeros((2, 10, 9, 6), np.float32)
    conv = layers.Conv2D(4, (3, 2), groups=2)
    conv(x)
    assert [w.shape for w in conv.get_weights()] == [(3, 2, 3, 4), (4,)]
    assert [n.split("/")[-1] for n in conv.weight_names] == ["kernel", "bias"]
    dw = layers.DepthwiseConv2D((5, 4), depth_multiplier=3)
    dw(x)
    assert [w.shape for w in dw.get_weights()] == [(5, 4, 6, 3), (18,)]
    assert dw.weight_names[0].endswith("/kernel")
    sep = layers.SeparableConv2D(7, 2, depth_multiplier=2)
    sep(x)
    assert [w.shape for w in sep.get_weights()] == [(2, 2, 6, 2), (1, 1, 12, 7), (7,)]
    assert [n.split("/")[-1] for n in sep.weight_names] == ["depthwise_kernel", "pointwise_kernel", "bias"]
    first = layers.Conv2D(4, 3, data_format="channels_first")
    first(np.zeros((2, 6, 10, 9), np.float32))
    assert first.kernel.shape == (3, 3, 6, 4)  # the same layout in both data formats
    for layer in (layers.MaxPooling2D(), layers.GlobalAveragePooling2D(), layers.ZeroPadding2D(),
                  layers.UpSampling2D()):
        layer(x)
        assert layer.get_weights() == []


def test_glorot_fans_of_conv2d_kernels():
    """fan_in = KH·KW·in, fan_out = KH·KW·out: the limit sqrt(6/(fan_in+fan_out)) bounds the kernel."""
    conv = layers.Conv2D(64, 3)
    conv(np.zeros((1, 9, 9, 32), np.float32))
    limit = np.sqrt(6 / (9 * 32 + 9 * 64))
    assert np.abs(conv.kernel).max() <= limit and np.abs(conv.kernel).max() > 0.9 * limit
    assert np.all(conv.bias == 0)


def test_keras_defaults():
    conv = layers.Conv2D(8, 3)
    assert (conv.strides, conv.padding, conv.dilation_rate, conv.groups, conv.use_bias, conv.data_format) == \
        ((1, 1), "valid", (1, 1), 1, True, "channels_last")  # fmt: skip
    assert layers.MaxPooling2D().pool_size == (2, 2) and layers.MaxPooling2D().strides == (2, 2)
    assert layers.AveragePooling2D(3, strides=(1, 2)).strides == (1, 2)
    assert layers.ZeroPadding2D().padding == ((1, 1), (1, 1))
    assert layers.ZeroPadding2D((2, 3)).padding == ((2, 2), (3, 3))
    assert layers.UpSampling2D().size == (2, 2)
    with pytest.raises(TypeError):
        layers.AveragePooling2D()  # as in Keras: no default pool_size


def test_config_round_trip():
    for layer in (
        layers.Conv2D(4, (3, 2), strides=2, padding="SAME", groups=2, activation="relu", name="c"),
        layers.SeparableConv2D(3, (5, 1), depth_multiplier=2, dilation_rate=2),
        layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, data_format="channels_first"),
        layers.MaxPooling2D(3, padding="Same"),
        layers.AveragePooling2D(4, strides=(2, 1)),
        layers.GlobalAveragePooling2D(keepdims=True),
        layers.GlobalMaxPooling2D(data_format="channels_first"),
        layers.ZeroPadding2D(((1, 2), (3, 0))),
        layers.UpSampling2D((1, 3), data_format="channels_first"),
    ):
        cfg = layer.get_config()
        clone = type(layer).from_config(cfg)
        assert clone.get_config() == cfg
    assert layers.MaxPooling2D(3).get_config()["strides"] == [3, 3]
    assert layers.Conv2D(1, 2, padding="SAME").padding == "same"


def test_masks_are_dropped():
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype(np.float32)
    for layer in (layers.Conv2D(2, 3), layers.MaxPooling2D(), layers.GlobalAveragePooling2D(), layers.ZeroPadding2D()):
        assert layer.supports_masking is False
        layer(x)
        assert layer.compute_mask(x, np.ones((2, 4), bool)) is None


def test_flatten_and_dropout_on_images():
    """Flatten moves a channels_first image's channels last first (Keras's element order); Dropout keeps 4-D shapes
    and its noise_shape broadcasts over the image axes."""
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # channels_first (B, C, H, W)
    flat = layers.Flatten(data_format="channels_first")
    y = flat(x)
    np.testing.assert_array_equal(y, x.transpose(0, 2, 3, 1).reshape(2, -1))
    np.testing.assert_array_equal(flat.backward(y), x)
    np.testing.assert_array_equal(layers.Flatten()(x), x.reshape(2, -1))
    tn.set_random_seed(0)
    drop = layers.Dropout(0.5, noise_shape=(None, 1, 1, 5))
    out = drop(np.ones((2, 3, 4, 5), np.float32), training=True)
    assert out.shape == (2, 3, 4, 5) and set(np.unique(out)) <= {0.0, 2.0}
    assert np.all(out == out[:, :1, :1, :])  # the same mask for every pixel of a sample
    np.testing.assert_array_equal(drop.backward(np.ones_like(out)), out)


def test_seed_mnist_convnet_shapes():
    """Seed 001's MNIST convnet: the layer shapes the book prints."""
    model = tn.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.Flatten(),
        layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    shapes, shape = [], (None, 28, 28, 1)
    for layer in model.layers:
        shape = layer.compute_output_shape(shape)
        shapes.append(shape[1:])
    assert shapes == [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 64), (576,), (64,), (10,)]
    assert model.count_params() == 93322


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def no_kernels(monkeypatch):
    """Any call into the fast kernels fails the test: errors must come first."""
    for module in (kc, kp):
        for name in module.__all__:
            monkeypatch.setattr(module, name, _boom)


def _built(layer, shape):
    layer.ensure_built((None, *shape[1:]))
    return layer


@pytest.mark.parametrize(
    "make,good,bad,words",
    [
        (lambda: layers.Conv2D(4, 3, name="c1"), (2, 9, 9, 3), (2, 9, 9), ["c1", "Conv2D", "rank 4", "(2, 9, 9)"]),
        (lambda: layers.Conv2D(4, 3, name="c2"), (2, 9, 9, 3), (2, 9, 9, 5),
         ["c2", "Conv2D", "size 3", "(2, 9, 9, 5)"]),
        (lambda: layers.Conv2D(4, 3, dilation_rate=3, name="c3"), (2, 9, 9, 3), (2, 6, 9, 3),
         ["c3", "(2, 6, 9, 3)", "7 rows"]),
        (lambda: layers.Conv2D(4, 3, data_format="channels_first", name="c4"), (2, 3, 9, 9), (2, 9, 9, 3),
         ["c4", "axis 1 of size 3"]),
        (lambda: layers.SeparableConv2D(2, 5, name="s1"), (2, 9, 9, 3), (2, 9, 4, 3),
         ["s1", "SeparableConv2D", "(2, 9, 4, 3)", "columns"]),
        (lambda: layers.DepthwiseConv2D(2, name="d1"), (2, 9, 9, 3), (2, 9, 9, 3, 1),
         ["d1", "DepthwiseConv2D", "rank 4"]),
        (lambda: layers.MaxPooling2D(4, name="p1"), (2, 9, 9, 3), (2, 3, 9, 3), ["p1", "MaxPooling2D", "(2, 3, 9, 3)"]),
        (lambda: layers.AveragePooling2D(2, name="p2"), (2, 9, 9, 3), (9, 9, 3), ["p2", "AveragePooling2D", "rank 4"]),
        (lambda: layers.GlobalMaxPooling2D(name="g1"), (2, 9, 9, 3), (2, 9, 3), ["g1", "GlobalMaxPooling2D", "rank 4"]),
        (lambda: layers.GlobalAveragePooling2D(name="g2"), (2, 9, 9, 3), (2, 0, 9, 3), ["g2", "pixel", "(2, 0, 9, 3)"]),
        (lambda: layers.ZeroPadding2D(name="z1"), (2, 9, 9, 3), (2, 9, 3), ["z1", "ZeroPadding2D", "rank 4"]),
        (lambda: layers.UpSampling2D(name="u1"), (2, 9, 9, 3), (2, 9, 9, 3, 3), ["u1", "UpSampling2D", "rank 4"]),
    ],
)
def test_bad_input_after_build(no_kernels, make, good, bad, words):
    layer = _built(make(), good)
    with pytest.raises(ValueError) as err:
        layer(np.zeros(bad, np.float32))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


@pytest.mark.parametrize(
    "make,shape,words",
    [
        (lambda: layers.Conv2D(4, 3, name="b1"), (2, 2, 5, 3), ["b1", "(2, 2, 5, 3)", "receptive field of 3 rows"]),
        (lambda: layers.Conv2D(4, (1, 4), dilation_rate=2, name="b1b"), (2, 5, 6, 3), ["b1b", "7 columns"]),
        (lambda: layers.Conv2D(4, 2, groups=2, name="b2"), (2, 5, 5, 3), ["b2", "divisible by groups=2", "3 input"]),
        (lambda: layers.Conv2D(4, 2, name="b3"), (2, 5, 5), ["b3", "rank 4", "(2, 5, 5)"]),
        (lambda: layers.SeparableConv2D(2, 3, dilation_rate=2, name="b4"), (1, 4, 9, 2),
         ["b4", "(1, 4, 9, 2)", "5 rows"]),
        (lambda: layers.AveragePooling2D(3, name="b5"), (1, 5, 2, 2), ["b5", "(1, 5, 2, 2)", "pool_size=(3, 3)"]),
        (lambda: layers.MaxPooling2D(3, data_format="channels_first", name="b6"), (1, 5, 2, 9), ["b6", "2 rows"]),
    ],
)
def test_bad_input_on_first_call(no_kernels, make, shape, words):
    with pytest.raises(ValueError) as err:
        make()(np.zeros(shape, np.float32))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_same_padding_accepts_one_pixel(no_kernels):
    assert layers.Conv2D(2, 9, padding="same").compute_output_shape((None, 1, 1, 3)) == (None, 1, 1, 2)
    assert layers.MaxPooling2D(5, padding="same").compute_output_shape((None, 1, 2, 3)) == (None, 1, 1, 3)
    assert layers.Conv2D(2, 4, strides=3).compute_output_shape((None, 4, 7, 3)) == (None, 1, 2, 2)
    assert layers.Conv2D(2, 3).compute_output_shape((None, None, None, 3)) == (None, None, None, 2)
    with pytest.raises(ValueError, match="empty output"):
        layers.Conv2D(2, 4, strides=3).compute_output_shape((None, 3, 9, 3))


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda: layers.Conv2D(4, 2.5), ["kernel_size", "2.5"]),
        (lambda: layers.Conv2D(4, (3, 3, 3)), ["kernel_size"]),
        (lambda: layers.Conv2D(4.0, 3), ["filters", "4.0"]),
        (lambda: layers.Conv2D(0, 3), ["filters", "0"]),
        (lambda: layers.Conv2D(4, 3, strides=(1, 0)), ["strides", "positive"]),
        (lambda: layers.Conv2D(4, 0), ["kernel_size", "positive"]),
        (lambda: layers.Conv2D(4, 3, strides=2, dilation_rate=2), ["strides > 1", "dilation_rate > 1"]),
        (lambda: layers.Conv2D(5, 3, groups=2), ["filters=5", "groups=2"]),
        (lambda: layers.Conv2D(4, 3, groups=0), ["groups"]),
        (lambda: layers.Conv2D(4, 3, padding="causal"), ["padding", "causal"]),
        (lambda: layers.Conv2D(4, 3, data_format="NCHW"), ["data_format"]),
        (lambda: layers.SeparableConv2D(4, 3, padding="full"), ["padding", "full"]),
        (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), ["depth_multiplier"]),
        (lambda: layers.DepthwiseConv2D(3, strides=0), ["strides"]),
        (lambda: layers.MaxPooling2D(1.5), ["pool_size", "1.5"]),
        (lambda: layers.MaxPooling2D(2, strides=0), ["strides"]),
        (lambda: layers.AveragePooling2D(2, padding="causal"), ["padding", "causal"]),
        (lambda: layers.GlobalMaxPooling2D(data_format="NCHW"), ["data_format"]),
        (lambda: layers.ZeroPadding2D(-1), ["padding", "-1"]),
        (lambda: layers.ZeroPadding2D((1, 2, 3)), ["padding"]),
        (lambda: layers.UpSampling2D(0), ["size"]),
        (lambda: layers.UpSampling2D(interpolation="bilinear"), ["nearest", "bilinear"]),
    ],
)
def test_bad_arguments(make, words):
    with pytest.raises(ValueError) as err:
        make()
    for w in words:
        assert w in str(err.value), (w, str(err.value))


@pytest.mark.parametrize("make,shape", ALL_CASES, ids=_ids(ALL_CASES))
def test_backward_rejects_an_upstream_gradient_of_another_shape(make, shape):
    layer = make()
    y = layer(np.ones(shape, np.float32), training=True)
    with pytest.raises(ValueError, match=r"backward expects dy of shape"):
        layer.backward(np.ones((y.shape[0] + 1, *y.shape[1:]), np.float32))  # another batch size


LOGITS_CASES = [(make, shape) for make, shape in CONV_CASES
                if not (isinstance(make(), (layers.Conv2D, layers.SeparableConv2D))
                        and make().activation.name in ("relu", "tanh"))]  # fused: no logits kept (see below)


@pytest.mark.parametrize("make,shape", LOGITS_CASES, ids=_ids(LOGITS_CASES))
def test_logits_are_the_pre_activation_of_the_last_forward_call(make, shape):
    """``logits`` = z + b: the fused bias+activation path forms it on request, after any later weight update."""
    layer = as_dtype(make(), "float64")
    x = np.random.default_rng(0).standard_normal(shape)
    layer(x)
    rng = np.random.default_rng(1)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    linear = type(layer).from_config({**layer.get_config(), "activation": None})
    linear(x)
    linear.set_weights(layer.get_weights())
    y = layer(x, training=True)
    for w in layer.weights:
        w += 1.0  # an optimizer step (in place) after the forward pass must not change its logits
    np.testing.assert_allclose(layer.logits, linear(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(layer.activation(layer.logits), y, rtol=1e-13, atol=1e-13)


def test_fused_conv2d_keeps_logits_only_where_the_loss_shortcut_reads_them():
    """A fast-mode Conv2D (or SeparableConv2D) runs relu/tanh inside its kernel and keeps only y; sigmoid keeps z
    (the loss shortcut reads it)."""
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3))
    relu = layers.Conv2D(2, 3, activation="relu", name="fused", dtype="float64")
    relu(x)
    with pytest.raises(ValueError, match="'fused'.*'relu' ran fused"):
        relu.logits  # noqa: B018
    with config.kernels("reference"):
        relu(x)
        np.testing.assert_allclose(np.maximum(relu.logits, 0), relu(x))
    sigmoid = layers.Conv2D(2, 3, activation="sigmoid", dtype="float64")
    y = sigmoid(x)
    np.testing.assert_allclose(1 / (1 + np.exp(-sigmoid.logits)), y, rtol=1e-13)


def test_first_layer_skips_dx_but_not_dw():
    """As the first layer of a model (input_gradient_needed False) a conv returns no dx and the same weight grads."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 5, 3))
    for make in (lambda: layers.Conv2D(4, 3, dtype="float64"), lambda: layers.SeparableConv2D(4, 3, dtype="float64")):
        layer = make()
        y = layer(x, training=True)
        dy = rng.standard_normal(y.shape)
        layer.backward(dy)
        full = [g.copy() for g in layer.gradients]
        layer.input_gradient_needed = False
        layer(x, training=True)
        assert layer.backward(dy) is None
        for a, b in zip(layer.gradients, full):
            np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("make", [
    lambda: layers.Conv2D(4, 3, activation="relu"),  # fused activation: _backward_fused
    lambda: layers.Conv2D(4, 3, activation="tanh"),  # bias/activation tail, then backward_from_logits
    lambda: layers.SeparableConv2D(4, 3, activation="relu"),
    lambda: layers.SeparableConv2D(4, 3),
    lambda: layers.DepthwiseConv2D(3),
    lambda: layers.MaxPooling2D(),
])  # fmt: skip
def test_fast_backward_releases_the_forward_cache_and_reference_keeps_it(make):
    """Fast mode: after the backward the layer holds no activations (a model then keeps none between train steps)
    and a second backward asks for a new forward; a new forward's backward gives the same gradients. Reference
    mode keeps the cache (repeated backward calls stay allowed)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 7, 6, 3))
    layer = make()
    layer(x)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    y = layer(x)
    assert not layer._reference  # the fast kernels ran
    dy = rng.normal(size=y.shape)
    dx = layer.backward(dy)
    grads = [g.copy() for g in layer.gradients]
    cached = [a for a in ("_x", "_y", "_z", "_u") if getattr(layer, a, None) is not None]
    assert cached == []
    with pytest.raises(ValueError, match="already called after the last forward"):
        layer.backward(dy)
    layer(x)
    np.testing.assert_array_equal(layer.backward(dy), dx)
    for a, b in zip(layer.gradients, grads):
        np.testing.assert_array_equal(a, b)
    with config.kernels("reference"):
        layer(x)
        dx_ref = layer.backward(dy)
        assert layer._x is not None
        np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=0, atol=0)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
def test_predict_pools_conv2d_in_one_pass_as_the_two_layers_do(data_format, keepdims, activation, monkeypatch):
    """predict / predict_on_batch run Conv2D -> GlobalAveragePooling2D as one pass (Conv2D.forward_pooled: the conv
    output is never written out) and give what the two layers give one after the other (model(x), which does not
    fuse) in float64; a backward after the fused predict asks for a forward instead of using a stale one."""
    shape = (5, 9, 8, 3) if data_format == "channels_last" else (5, 3, 9, 8)
    x = np.random.default_rng(7).normal(size=shape)
    f64 = {"dtype": "float64"}
    net = tn.Sequential([
        layers.Input(shape=shape[1:]), layers.Conv2D(4, 3, activation=activation, data_format=data_format, **f64),
        layers.GlobalAveragePooling2D(data_format=data_format, keepdims=keepdims, **f64), layers.Dense(2, **f64),
    ])  # fmt: skip
    conv, pool = net.layers[0], net.layers[1]
    assert conv.pools_with(pool)
    expected = net(x)  # the layers one by one
    calls = count_calls(monkeypatch, kc, "conv2d_forward_pooled")
    np.testing.assert_allclose(net.predict_on_batch(x), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.predict(x, batch_size=2), expected, rtol=1e-12, atol=1e-14)
    assert len(calls) == 4  # one per batch: the fused pass ran
    with pytest.raises(ValueError, match="forward"):
        conv.backward(np.ones((5, 7, 6, 4) if data_format == "channels_last" else (5, 4, 7, 6)))
    with pytest.raises(ValueError, match="forward"):
        pool.backward(np.ones(expected.shape[:1] + pool.compute_output_shape(conv.compute_output_shape(shape))[1:]))


def test_predict_fuses_only_what_forward_pooled_takes(monkeypatch):
    """No fused pass for a GlobalAveragePooling2D of the other data_format, a grouped convolution, Winograd's
    shapes, the reference kernel mode, or training; the results are the layers' own."""
    calls = count_calls(monkeypatch, kc, "conv2d_forward_pooled")
    rng = np.random.default_rng(8)

    def model(conv, pool, channels=4):
        return tn.Sequential([layers.Input(shape=(8, 8, channels)), conv, pool, layers.Dense(1, dtype="float64")])

    x = rng.normal(size=(2, 8, 8, 4))
    f64 = {"dtype": "float64"}
    other = model(layers.Conv2D(4, 3, **f64), layers.GlobalAveragePooling2D(data_format="channels_first", **f64))
    assert not other.layers[0].pools_with(other.layers[1])
    grouped = model(layers.Conv2D(4, 3, groups=2, activation="relu", **f64), layers.GlobalAveragePooling2D(**f64))
    wide = model(layers.Conv2D(32, 3, activation="relu", **f64), layers.GlobalAveragePooling2D(**f64), channels=32)
    for net, xs in ((other, x), (grouped, x), (wide, rng.normal(size=(2, 8, 8, 32)))):
        np.testing.assert_allclose(net.predict_on_batch(xs), net(xs), rtol=1e-12, atol=1e-14)
    assert calls == []
    plain = model(layers.Conv2D(4, 3, activation="relu", **f64), layers.GlobalAveragePooling2D(**f64))
    with config.kernels("reference"):
        ref = plain.predict_on_batch(x)
    assert calls == []
    np.testing.assert_allclose(plain.predict_on_batch(x), ref, rtol=1e-12, atol=1e-14)
    assert calls == [1]
    plain.compile(optimizer="sgd", loss="mse")
    plain.train_on_batch(x, np.zeros((2, 1)))  # training: the layers one by one, backward included
    assert calls == [1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channels,activation,use_bias,padding,hw", [
    (32, "relu", True, "valid", (11, 10)), (32, "relu", False, "same", (9, 12)), (32, "linear", True, "same", (8, 7)),
    (5, "relu", True, "valid", (11, 10)), (5, "linear", False, "same", (9, 12)),
])  # fmt: skip
def test_predict_runs_conv2d_and_its_max_pooling_as_one_pass(dtype, channels, activation, use_bias, padding, hw,
                                                             monkeypatch):  # fmt: skip
    """predict / predict_on_batch take a Conv2D and the 2×2 max pooling after it in one pass (Conv2D.forward_into:
    the convolution's output is never written): Winograd's (32 channels in) with the bits of the layers one after the
    other (model(x)), im2col's (5 channels) within the products' rounding; a backward after it asks for a forward;
    a training step takes the pair too (keeping the windows' first maxima: the tests below)."""
    from tinynn.kernels import winograd as kw

    x = np.random.default_rng(9).normal(size=(3, *hw, channels)).astype(dtype)
    net = tn.Sequential([
        layers.Input(shape=x.shape[1:]), layers.Conv2D(40, 3, activation=activation, use_bias=use_bias,
                                                       padding=padding, bias_initializer="random_normal",
                                                       dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype), layers.Flatten(dtype=dtype), layers.Dense(2, dtype=dtype),
    ])  # fmt: skip
    conv, pool = net.layers[0], net.layers[1]
    winograd = kc.uses_winograd(conv.kernel.shape, (1, 1), (1, 1), 1)
    assert conv.feeds(pool) and winograd == (channels >= 32)
    expected = net(x)  # the layers one by one
    by_batches = np.concatenate([net(x[:2]), net(x[2:])])  # a batch of one may take other BLAS kernels
    calls = count_calls(monkeypatch, kc, "conv2d_forward_max_pooled")
    blocks = count_calls(monkeypatch, kw, "winograd_conv2d_max_pooled")
    if winograd:
        same = np.testing.assert_array_equal
    else:
        same = functools.partial(np.testing.assert_allclose, rtol=1e-6 if dtype == "float32" else 1e-12, atol=0)
    same(net.predict_on_batch(x), expected)
    same(net.predict(x, batch_size=2), by_batches)
    assert len(calls) == 3 and len(blocks) == (3 if winograd else 0)  # one per batch
    with pytest.raises(ValueError, match="forward"):
        conv.backward(np.ones(conv.compute_output_shape(x.shape), dtype))
    net.compile(optimizer="sgd", loss="mse")
    net.train_on_batch(x, np.zeros((3, 2), dtype))
    assert len(calls) == 4


def test_predict_runs_conv2d_and_max_pooling_one_by_one_where_the_pair_does_not_apply(monkeypatch):
    """No one-pass pair for another activation, a pooling of other windows, strides or padding, channels_first, a
    grouped convolution (the kernels decline it), or the reference kernel mode; the results are the layers' own."""
    calls = count_calls(monkeypatch, kc, "conv2d_forward_max_pooled")
    rng = np.random.default_rng(10)
    f64 = {"dtype": "float64"}

    def model(conv, pool, channels=32, data_format="channels_last"):
        shape = (9, 8, channels) if data_format == "channels_last" else (channels, 9, 8)
        net = tn.Sequential([layers.Input(shape=shape), conv, pool, layers.Flatten(**f64), layers.Dense(1, **f64)])
        return net, rng.normal(size=(2, *shape))

    cases = [
        (layers.Conv2D(32, 3, activation="tanh", **f64), layers.MaxPooling2D(2, **f64)),
        (layers.Conv2D(32, 3, activation="relu", **f64), layers.MaxPooling2D(2, strides=1, **f64)),
        (layers.Conv2D(32, 3, activation="relu", **f64), layers.MaxPooling2D(2, padding="same", **f64)),
        (layers.Conv2D(32, 3, activation="relu", **f64), layers.MaxPooling2D(3, **f64)),
        (layers.Conv2D(32, 3, activation="relu", **f64), layers.AveragePooling2D(2, **f64)),
    ]
    for conv, pool in cases:
        net, x = model(conv, pool)
        assert not conv.feeds(pool)
        np.testing.assert_array_equal(net.predict_on_batch(x), net(x))
    first, x = model(layers.Conv2D(32, 3, activation="relu", data_format="channels_first", **f64),
                     layers.MaxPooling2D(2, data_format="channels_first", **f64), data_format="channels_first")
    assert not first.layers[0].feeds(first.layers[1])
    np.testing.assert_array_equal(first.predict_on_batch(x), first(x))
    assert calls == []
    grouped, x = model(layers.Conv2D(32, 3, groups=2, activation="relu", **f64), layers.MaxPooling2D(2, **f64))
    assert grouped.layers[0].feeds(grouped.layers[1])  # the kernels decline it in the call
    np.testing.assert_array_equal(grouped.predict_on_batch(x), grouped(x))
    assert calls == [1]
    plain, x = model(layers.Conv2D(32, 3, activation="relu", **f64), layers.MaxPooling2D(2, **f64))
    with config.kernels("reference"):
        ref = plain.predict_on_batch(x)
    assert calls == [1]
    np.testing.assert_allclose(plain.predict_on_batch(x), ref, rtol=1e-12, atol=1e-14)
    assert calls == [1, 1]
    plain.layers[0].activation = tn.activations.get("tanh")  # after the model chose its pairs: asked again
    with config.kernels("reference"):
        ref = plain.predict_on_batch(x)
    np.testing.assert_allclose(plain.predict_on_batch(x), ref, rtol=1e-12, atol=1e-14)
    assert calls == [1, 1]


def _spy_signatures(monkeypatch, seen: dict, owner, name: str) -> None:
    """From here on every call of ``owner.name`` (the real function still runs) adds its arguments' numba types to
    ``seen[name]``."""
    import numba

    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a: seen.setdefault(name, set()).add(tuple(map(numba.typeof, a)))
                        or real(*a))  # fmt: skip


def test_the_max_pooled_readiness_check_asks_for_the_signatures_the_pair_runs(monkeypatch):
    """In background compile mode Conv2D.forward_into runs the pair only once the kernel its path runs, compiled from
    sample arguments (conv2d.max_pooled_ready: Winograd's or im2col's), is there: the samples must have
    the numba types of the real calls (im2col's and Winograd's), or the background would compile specialisations
    nobody runs. While they are not there, the layers run one by one."""
    import numba

    from tinynn.kernels import winograd as kw

    seen: dict = {}
    spy = functools.partial(_spy_signatures, monkeypatch, seen)
    spy(kc, "_forward_rows_max")
    spy(kw, "_output_transform_max")
    for dtype in ("float32", "float64"):
        seen.clear()
        for channels in (32, 5):  # Winograd, im2col
            x = np.random.default_rng(17).normal(size=(2, 9, 8, channels)).astype(dtype)
            conv, pool = layers.Conv2D(32, 3, activation="relu", dtype=dtype), layers.MaxPooling2D(dtype=dtype)
            assert conv.forward_into(x, pool) is not None
            with monkeypatch.context() as still_compiling:
                still_compiling.setattr(kc, "max_pooled_ready", lambda d, by_winograd, index=False: False)
                assert conv.forward_into(x, pool) is None
        rows, blocks = kc._forward_rows_max_sample(dtype), kw._max_sample(dtype)
        assert seen == {"_forward_rows_max": {tuple(map(numba.typeof, rows))},
                        "_output_transform_max": {tuple(map(numba.typeof, blocks))}}


def _separable_stack(x: np.ndarray, filters: tuple[int, int]):
    """SeparableConv2D(relu) -> MaxPooling2D(2) -> SeparableConv2D(tanh, same, depth_multiplier 2) ->
    GlobalAveragePooling2D -> Dense(2) on x's shape and dtype (random biases)."""
    dtype = x.dtype.name
    return tn.Sequential([
        layers.Input(shape=x.shape[1:]),
        layers.SeparableConv2D(filters[0], 3, activation="relu", bias_initializer="random_normal", dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype),
        layers.SeparableConv2D(filters[1], 3, padding="same", depth_multiplier=2, activation="tanh", dtype=dtype),
        layers.GlobalAveragePooling2D(dtype=dtype), layers.Dense(2, dtype=dtype),
    ])  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_runs_separable_conv2d_image_by_image_and_with_its_max_pooling(dtype, monkeypatch):
    """Out of training SeparableConv2D runs image by image, each image's depthwise output used in the cache and not
    kept (kernels.conv2d.separable_conv2d_forward), and predict takes a 2×2 max pooling after it in the same pass:
    the layers' training forward and the reference mode's numbers (float32 1e-6, float64 1e-12 relative)."""
    x = np.random.default_rng(11).normal(size=(3, 12, 11, 6)).astype(dtype)
    net = _separable_stack(x, (16, 12))
    assert net.layers[0].feeds(net.layers[1]) and not net.layers[2].feeds(net.layers[3])
    tol = {"rtol": 1e-6 if dtype == "float32" else 1e-12, "atol": 0}
    h = x
    for layer in net.layers:
        h = layer.forward(h, training=True)
    with config.kernels("reference"):
        ref = net.predict_on_batch(x)
    calls = count_calls(monkeypatch, kc, "separable_conv2d_forward")
    ours = net.predict_on_batch(x)
    assert len(calls) == 2  # the pair, then the second layer on its own
    np.testing.assert_allclose(ours, h, **tol)
    np.testing.assert_allclose(ours, ref, rtol=1e-5 if dtype == "float32" else 1e-12, atol=0)


def test_a_backward_after_an_inference_forward_forms_the_depthwise_output_again():
    """A SeparableConv2D forward out of training keeps no depthwise output u; a backward after it (as a gradient
    with respect to the input asks) forms u again from x: the gradients of a training forward's backward."""
    rng = np.random.default_rng(12)
    x, dy = rng.normal(size=(2, 9, 8, 4)), rng.normal(size=(2, 7, 6, 5))
    layer = layers.SeparableConv2D(5, 3, activation="relu", bias_initializer="random_normal", dtype="float64")
    layer(x)
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    grads = [g.copy() for g in layer.gradients]
    layer.forward(x, training=False)
    assert layer._u is None
    np.testing.assert_allclose(layer.backward(dy), dx, rtol=1e-12, atol=0)
    for ours, theirs in zip(layer.gradients, grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


def test_the_separable_readiness_check_asks_for_the_signature_the_forward_runs(monkeypatch):
    """separable_ready compiles _separable_images from sample arguments: they must have the numba types of the
    real calls (plain and pooled, both dtypes), or the background would compile a specialisation nobody runs; while
    it is not compiled, the layer runs its two passes."""
    import numba

    real, seen = kc._separable_images, set()
    monkeypatch.setattr(kc, "_separable_images", lambda *a: seen.add(tuple(map(numba.typeof, a))) or real(*a))
    for dtype in ("float32", "float64"):
        seen.clear()
        x = np.random.default_rng(13).normal(size=(2, 9, 8, 3)).astype(dtype)
        layer, pool = layers.SeparableConv2D(4, 3, activation="relu", dtype=dtype), layers.MaxPooling2D(dtype=dtype)
        layer(x)
        layer.forward(x, training=False)
        assert layer._u is None and layer.forward_into(x, pool) is not None
        assert seen == {tuple(map(numba.typeof, kc._separable_sample(dtype)))}
        with monkeypatch.context() as still_compiling:
            still_compiling.setattr(kc, "separable_ready", lambda d: False)
            layer.forward(x, training=False)
            assert layer._u is not None and layer.forward_into(x, pool) is None


def _pair_model(conv, pool, shape):
    return tn.Sequential([layers.Input(shape=shape), conv, pool, layers.Flatten(dtype=conv.dtype),
                          layers.Dense(3, dtype=conv.dtype)])  # fmt: skip


def _two_layers_in_training(monkeypatch) -> None:
    """From here on a training forward runs a Conv2D and the max pooling above it one by one (no
    ``Conv2D.forward_into``, which keeps the windows' first maxima): the reference the pair is held to."""
    forward_into = layers.Conv2D.forward_into
    monkeypatch.setattr(layers.Conv2D, "forward_into", lambda self, x, pool, training=False:
                        None if training else forward_into(self, x, pool, training))  # fmt: skip


def _forward_backward(net, x, dy):
    """(dx, every layer's gradients) of one forward and backward through the model's layer protocol."""
    net.forward(x, training=True)
    dx = net.backward(dy)
    return dx, [g.copy() for layer in net.layers for g in layer.gradients]


PAIR_CASES = [
    (lambda: layers.Conv2D(4, 3, activation="relu"), lambda: layers.MaxPooling2D(), (3, 9, 8, 2)),
    (lambda: layers.Conv2D(3, (2, 3), activation="tanh", use_bias=False), lambda: layers.MaxPooling2D((3, 2), 3,
                                                                                                     "same"),
     (2, 8, 9, 3)),  # fmt: skip
    (lambda: layers.Conv2D(33, 3, activation="linear"), lambda: layers.MaxPooling2D(2), (2, 7, 6, 32)),  # Winograd
    (lambda: layers.SeparableConv2D(5, 3, activation="hard_sigmoid"), lambda: layers.MaxPooling2D((2, 1)),
     (2, 7, 6, 3)),
    (lambda: layers.Conv2D(2, 2, strides=2, activation="relu"), lambda: layers.MaxPooling2D(2, 3), (2, 17, 16, 2)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_separable_conv2d_trains_through_its_image_by_image_backward(dtype, monkeypatch):
    """A train step's SeparableConv2D backward runs image by image (kernels.conv2d.separable_conv2d_backward, du
    never written out; counted): from ∂L/∂y (its own fused backward) and from ∂L/∂z (a max pooling's one-pass
    backward above it). Its gradients are those of the two passes it replaces (the 1×1 product's backward, then
    the depthwise one) within float32 1e-5 / float64 1e-12 relative, and the samples it is compiled from in the
    background have the numba types of the real calls."""
    import numba

    rng = np.random.default_rng(14)
    x = rng.normal(size=(3, 12, 11, 4)).astype(dtype)
    net = _separable_stack(x, (8, 6))
    dy = rng.normal(size=(3, 2)).astype(dtype)
    real, seen = kc._separable_backward_images, set()
    monkeypatch.setattr(kc, "_separable_backward_images", lambda *a: seen.add(tuple(map(numba.typeof, a)))
                        or real(*a))  # fmt: skip
    calls = count_calls(monkeypatch, kc, "separable_conv2d_backward")
    dx, grads = _forward_backward(net, x, dy)
    assert len(calls) == 2
    assert seen == {tuple(map(numba.typeof, kc._separable_backward_sample(dtype)))}
    monkeypatch.setattr(kc, "separable_backward_ready", lambda d: False)
    dx_two, grads_two = _forward_backward(net, x, dy)
    assert len(calls) == 2
    tol = {"rtol": 1e-5 if dtype == "float32" else 1e-12, "atol": 0}
    np.testing.assert_allclose(dx, dx_two, **tol)
    for ours, two in zip(grads, grads_two, strict=True):
        scale = np.abs(two).max()
        np.testing.assert_allclose(ours / scale, two / scale, rtol=0, atol=tol["rtol"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make_conv, make_pool, shape", PAIR_CASES)
def test_max_pooling_and_the_conv_below_run_their_backward_as_one_pass(make_conv, make_pool, shape, dtype,
                                                                      monkeypatch):  # fmt: skip
    """In a Sequential's backward, a MaxPooling2D above a Conv2D-family layer that fused its activation runs both
    backward passes as one (MaxPooling2D.backward_through: dz written over the conv's output, no dx of the
    pooling): the same bits as the two layers one after the other (every gradient and the input's), in training
    and through the model's layer protocol, with relu zeros as ties."""
    rng = np.random.default_rng(11)
    conv, pool = make_conv(), make_pool()
    conv.dtype = pool.dtype = dtype
    net = _pair_model(conv, pool, shape[1:])
    net.set_weights([rng.normal(0, 0.5, w.shape) for w in net.get_weights()])  # non-zero biases too
    x = rng.normal(size=shape).astype(dtype)
    dy = rng.normal(size=(shape[0], 3)).astype(dtype)
    calls = count_calls(monkeypatch, type(pool), "backward_through")
    dx, grads = _forward_backward(net, x, dy)
    assert calls == [1]
    monkeypatch.setattr(type(pool), "fuses_backward_with", lambda self, below: False)
    _two_layers_in_training(monkeypatch)
    dx_two, grads_two = _forward_backward(net, x, dy)
    assert calls == [1]
    np.testing.assert_array_equal(dx, dx_two)
    for g, g_two in zip(grads, grads_two, strict=True):
        np.testing.assert_array_equal(g, g_two)
    assert conv._y is None and pool._x is None  # both caches released


def test_train_steps_with_the_one_pass_pair_are_the_two_layers_steps(monkeypatch):
    """train_on_batch (the first layer skipping its dx) with the pair, against the same model without it: the same
    losses and weights, bit for bit, over three steps."""
    rng = np.random.default_rng(12)
    nets = []
    for _ in range(2):
        net = _pair_model(layers.Conv2D(6, 3, activation="relu"), layers.MaxPooling2D(2), (10, 9, 3))
        net.compile(optimizer=tn.optimizers.RMSprop(1e-3), loss="mse")
        nets.append(net)
    nets[1].set_weights([rng.normal(0, 0.5, w.shape) for w in nets[0].get_weights()])
    nets[0].set_weights(nets[1].get_weights())
    x, y = rng.random((4, 10, 9, 3)), rng.normal(size=(4, 3))
    calls = count_calls(monkeypatch, layers.MaxPooling2D, "backward_through")
    fuses, forward_into = layers.MaxPooling2D.fuses_backward_with, layers.Conv2D.forward_into
    for step in range(3):
        loss = nets[0].train_on_batch(x, y)
        assert len(calls) == step + 1
        monkeypatch.setattr(layers.MaxPooling2D, "fuses_backward_with", lambda self, below: False)
        _two_layers_in_training(monkeypatch)
        assert nets[1].train_on_batch(x, y) == loss
        monkeypatch.setattr(layers.MaxPooling2D, "fuses_backward_with", fuses)
        monkeypatch.setattr(layers.Conv2D, "forward_into", forward_into)
    for w, w_two in zip(nets[0].get_weights(), nets[1].get_weights(), strict=True):
        np.testing.assert_array_equal(w, w_two)


def test_the_one_pass_pair_runs_only_where_nothing_else_reads_the_conv_output(monkeypatch):
    """No pair (the layers one by one, the same results) when the conv output is a model output the caller holds
    (a functional model's run keeps every tensor), the windows overlap, the kernels run in reference mode, the
    activation is not fused into the conv (sigmoid keeps its logits; DepthwiseConv2D fuses none) or the layers are
    channels_first."""
    calls = count_calls(monkeypatch, layers.MaxPooling2D, "backward_through")
    rng = np.random.default_rng(13)
    x = rng.normal(size=(2, 8, 8, 3))
    inp = layers.Input(shape=(8, 8, 3))
    a = layers.Conv2D(4, 3, activation="relu", dtype="float64")(inp)
    out = layers.Flatten(dtype="float64")(layers.MaxPooling2D(dtype="float64")(a))
    both = tn.Model(inp, [a, out])
    a_value, out_value = both.forward(x, training=True)
    kept = a_value.copy()
    both.backward([np.ones_like(a_value), np.ones_like(out_value)])
    np.testing.assert_array_equal(a_value, kept)  # the caller's array is not written over
    f64 = {"dtype": "float64"}
    for net in (_pair_model(layers.Conv2D(4, 3, activation="relu", **f64), layers.MaxPooling2D(2, 1, **f64),
                            (8, 8, 3)),
                _pair_model(layers.Conv2D(4, 3, activation="sigmoid", **f64), layers.MaxPooling2D(**f64), (8, 8, 3)),
                _pair_model(layers.DepthwiseConv2D(2, activation="relu", **f64), layers.MaxPooling2D(**f64), (8, 8, 3)),
                _pair_model(layers.Conv2D(4, 3, activation="relu", data_format="channels_first", **f64),
                            layers.MaxPooling2D(data_format="channels_first", **f64), (3, 8, 8))):  # fmt: skip
        xs = x if net.layers[0].data_format == "channels_last" else x.transpose(0, 3, 1, 2)
        _forward_backward(net, xs, np.ones((2, 3)))
    net = _pair_model(layers.Conv2D(4, 3, activation="relu", **f64), layers.MaxPooling2D(**f64), (8, 8, 3))
    with config.kernels("reference"):
        dx_ref, grads_ref = _forward_backward(net, x, np.ones((2, 3)))
    assert calls == []
    dx, grads = _forward_backward(net, x, np.ones((2, 3)))
    assert calls == [1]
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-14)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-14)


def test_the_one_pass_pair_checks_dy_and_the_call_order_as_backward_does():
    """MaxPooling2D.backward_through takes the protocol's checks of a backward before any kernel runs: a dy of
    another shape is refused naming the pooling, and a second backward after the pair consumed the forward asks for
    a new forward."""
    f64 = {"dtype": "float64"}
    net = _pair_model(layers.Conv2D(4, 3, activation="relu", **f64), layers.MaxPooling2D(**f64), (8, 8, 3))
    conv, pool = net.layers[0], net.layers[1]
    net.forward(np.random.default_rng(14).normal(size=(2, 8, 8, 3)), training=True)
    assert pool.fuses_backward_with(conv)
    with pytest.raises(ValueError, match=f"{pool.name}.*backward expects.*shape"):
        pool.backward_through(np.ones((2, 4, 4, 4)), conv)
    pool.backward_through(np.ones((2, 3, 3, 4)), conv)
    with pytest.raises(ValueError, match="already called after the last forward"):
        pool.backward_through(np.ones((2, 3, 3, 4)), conv)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channels,activation,hw", [(32, "relu", (11, 10)), (32, "linear", (9, 12)),
                                                   (3, "relu", (12, 11)), (5, "linear", (10, 9))])  # fmt: skip
def test_a_training_step_runs_conv2d_and_its_max_pooling_as_one_pass(dtype, channels, activation, hw, monkeypatch):
    """train_on_batch takes a Conv2D and the 2×2 max pooling after it in one forward pass too (Conv2D.forward_into
    with training: the conv output a is never written; the pooling keeps its windows' first maxima) and one backward
    pass from them (MaxPooling2D.backward_through): three steps give the two layers' losses and weights (Winograd,
    32 channels in: bit for bit; im2col: the products' rounding), with odd output sizes, and release both layers'
    caches after each step."""
    rng = np.random.default_rng(21)
    nets = []
    for _ in range(2):
        net = tn.Sequential([layers.Input(shape=(*hw, channels)),
                             layers.Conv2D(40, 3, activation=activation, bias_initializer="random_normal", dtype=dtype),
                             layers.MaxPooling2D(2, dtype=dtype), layers.Flatten(dtype=dtype),
                             layers.Dense(2, dtype=dtype)])  # fmt: skip
        net.compile(optimizer=tn.optimizers.RMSprop(1e-3), loss="mse")
        nets.append(net)
    nets[1].set_weights(nets[0].get_weights())
    x, y = rng.normal(size=(4, *hw, channels)).astype(dtype), rng.normal(size=(4, 2)).astype(dtype)
    conv, pool = nets[0].layers[0], nets[0].layers[1]
    winograd = kc.uses_winograd(conv.kernel.shape, (1, 1), (1, 1), 1)
    assert winograd == (channels >= 32)
    kept = count_calls(monkeypatch, layers.MaxPooling2D, "keep_window_maxima")
    through = count_calls(monkeypatch, layers.MaxPooling2D, "backward_through")
    losses = [nets[0].train_on_batch(x, y) for _ in range(3)]
    assert kept == through == [1, 1, 1]
    assert conv._y is None and conv._window_maxima is None and pool._y is None and pool._window_maxima is None
    _two_layers_in_training(monkeypatch)
    losses_two = [nets[1].train_on_batch(x, y) for _ in range(3)]
    assert len(kept) == 3
    tol = {"rtol": 0, "atol": 0} if winograd else {"rtol": 1e-12 if dtype == "float64" else 1e-5, "atol": 1e-7}
    np.testing.assert_allclose(losses, losses_two, **tol)
    for w, w_two in zip(nets[0].get_weights(), nets[1].get_weights(), strict=True):
        np.testing.assert_allclose(w, w_two, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channels,activation", [(32, "relu"), (33, "linear"), (4, "relu")])
def test_the_training_pairs_backward_taken_apart_gives_the_two_layers_gradients(dtype, channels, activation):
    """After the pair's training forward (Conv2D.forward_into), the layers' own backward calls, one by one (as a
    model's general backward runs them), work from the windows' first maxima: the pooling's dx puts each window's dy
    at its first maximum, and the conv's backward forms its output there from p; dx, every gradient and the
    pooling's dx equal the two layers' (Winograd: bit for bit), odd output rows and columns included; a second
    backward asks for a forward."""
    rng = np.random.default_rng(22)
    conv = layers.Conv2D(6, 3, activation=activation, bias_initializer="random_normal", dtype=dtype)
    pool = layers.MaxPooling2D(2, dtype=dtype)
    x = np.round(rng.normal(size=(3, 9, 10, channels)), 1).astype(dtype)
    p = pool.forward(conv.forward(x, training=True), training=True)  # the layers one by one
    dy = rng.normal(size=p.shape).astype(dtype)
    dx_pool = pool.backward(dy)
    dx_two = conv.backward(dx_pool)
    grads_two = [g.copy() for g in conv.gradients]
    p_one = conv.forward_into(x, pool, training=True)
    assert p_one is not None and conv._y is None and pool._x is None
    tol = {"rtol": 0, "atol": 0} if channels >= 32 else {"rtol": 1e-12 if dtype == "float64" else 1e-5, "atol": 1e-7}
    np.testing.assert_allclose(p_one, p, **tol)
    dx_pool_one = pool.backward(dy)
    np.testing.assert_allclose(dx_pool_one, dx_pool, **tol)
    dx_one = conv.backward(dx_pool_one)
    np.testing.assert_allclose(dx_one, dx_two, **tol)
    for g, g_two in zip(conv.gradients, grads_two, strict=True):
        np.testing.assert_allclose(g, g_two, **tol)
    assert conv._y is None and conv._window_maxima is None
    with pytest.raises(ValueError, match="already called after the last forward"):
        pool.backward(dy)


def test_the_training_pairs_readiness_check_asks_for_the_signatures_it_runs(monkeypatch):
    """The training pair (conv2d.max_pooled_ready with index) asks for the kernels of its forward (Winograd's
    _output_transform_max_index, im2col's _forward_rows_max with the first maxima) and of its backward
    (pooling2d._max_bwd_from_index) with the numba types of the real calls; while they are not there a training
    step runs the layers one by one."""
    import numba

    from tinynn.kernels import pooling2d as kp
    from tinynn.kernels import winograd as kw

    seen: dict = {}
    spy = functools.partial(_spy_signatures, monkeypatch, seen)
    spy(kc, "_forward_rows_max")
    spy(kw, "_output_transform_max_index")
    spy(kp, "_max_bwd_from_index")
    for dtype in ("float32", "float64"):
        seen.clear()
        for channels in (32, 5):  # Winograd, im2col
            x = np.random.default_rng(23).normal(size=(2, 9, 8, channels)).astype(dtype)
            conv, pool = layers.Conv2D(32, 3, activation="relu", dtype=dtype), layers.MaxPooling2D(dtype=dtype)
            p = conv.forward_into(x, pool, training=True)
            assert p is not None and pool.fuses_backward_with(conv)
            pool.backward_through(np.ones_like(p), conv)
            with monkeypatch.context() as still_compiling:
                still_compiling.setattr(kc, "max_pooled_ready", lambda d, by_winograd, index=False: not index)
                assert conv.forward_into(x, pool, training=True) is None
        rows, blocks = kc._forward_rows_max_sample(dtype), kw._max_sample(dtype, index=True)
        backward = kp.backward_from_index_kernel(dtype)[1]
        assert seen == {"_forward_rows_max": {tuple(map(numba.typeof, rows))},
                        "_output_transform_max_index": {tuple(map(numba.typeof, blocks))},
                        "_max_bwd_from_index": {tuple(map(numba.typeof, backward))}}
