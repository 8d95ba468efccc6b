"""Conv2D, DepthwiseConv2D and SeparableConv2D against Keras 3: forward, dx and every weight gradient, with random
weights (biases included) and a random upstream gradient, over the whole option space (both data formats).

TensorFlow's CPU kernels refuse a channels_first (NCHW) Conv2D and a depthwise convolution with different strides
along rows and columns. Keras itself routes grouped convolutions through XLA on CPU for the same kind of reason;
for those two cases the test does the same on the TensorFlow backend: Keras's side of the comparison (the Keras
layer's own call and its gradient) runs compiled by XLA (``layer_parity(..., xla=True)``, :func:`needs_xla`). JAX and
torch run every case natively. (Keras transposes channels_first depthwise/separable inputs to NHWC on CPU itself.)

Every option value appears under the ``ci`` profile: the explicit ``@example``s cover the values 12 derandomized
draws could miss (each data format, padding with and without strides and dilation, groups, use_bias=False, every
activation, both dtypes); the derived options are declared with :func:`parity.options.covers`.
"""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity import backend
from parity.harness import layer_parity
from parity.options import covers
from tinynn import layers

# (No "elu": TF computes it in float32 as Eigen's vectorized exp(x) - 1, which near 0 is off by ~1e-4 relative; the
# activations themselves are compared in test_dense_parity.)
ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "gelu", "softplus"]
DTYPES = st.sampled_from(["float64", "float32"])
FORMATS = st.sampled_from(["channels_last", "channels_first"])
PADDINGS = ["valid", "same"]


def needs_xla(layer) -> bool:
    """Cases TF's CPU kernels refuse: an NCHW Conv2D with one group ("Conv2D op currently only supports NHWC"), and
    a depthwise convolution with different strides along rows and columns ("Current implementation only supports
    equal length strides in the row and column dimensions")."""
    name = type(layer).__name__
    if name == "Conv2D":
        return layer.data_format == "channels_first" and layer.groups == 1
    return name in ("DepthwiseConv2D", "SeparableConv2D") and layer.strides[0] != layer.strides[1]


def _parity(layer, x, seed):
    layer_parity(layer, x, seed=seed, xla=needs_xla(layer)).assert_ok()


def _geometry(case: dict, conv2d: bool) -> tuple:
    """(padding, strided, dilated) of an example as the layer sees it (Conv2D drops dilation when strided)."""
    strided = max(case["strides"]) > 1
    dilated = max(case["dilation"]) > 1 and not (conv2d and strided)
    return case["padding"], strided, dilated


# every padding with each of: plain, strided, dilated (Conv2D); and strided together with dilated (depthwise kinds)
CONV2D_GEOMETRY = (lambda case: _geometry(case, True),
                   [(p, s, d) for p in PADDINGS for s, d in ((False, False), (True, False), (False, True))])
DEPTHWISE_GEOMETRY = (lambda case: _geometry(case, False),
                      [(p, s, d) for p in PADDINGS for s in (False, True) for d in (False, True)])


def _min_size(kernel_size, dilation, padding):
    """The shortest legal input along one axis: the receptive field for 'valid', a single pixel for 'same'."""
    return (kernel_size - 1) * dilation + 1 if padding == "valid" else 1


def _input(seed, batch, hw, channels, data_format, dtype):
    x = np.random.default_rng(seed).normal(size=(batch, *hw, channels))
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x).astype(dtype)


def _sizes(kernel, dilation, padding, extra):
    return tuple(_min_size(k, d, padding) + e for k, d, e in zip(kernel, dilation, extra))


def _clear_of_keras_bias_bug(layer, hw, channels, batch=2):
    """``hw`` widened, if needed, so that a channels_first output is not exactly as wide as it has channels.

    Keras 3.15's ``ops.add`` treats a bias reshaped to (1, F, 1, 1) as a ``tf.nn.bias_add`` and picks NHWC whenever
    the last axis also has size F, so Keras adds b[w] instead of b[f] there (demonstrated by
    :func:`test_keras_adds_a_channels_first_bias_along_the_width_when_width_equals_channels`). tinynn adds b[f]."""
    h, w = hw
    if layer.data_format != "channels_first":
        return hw
    while True:
        out = layer.compute_output_shape((batch, channels, h, w))
        if out[3] != out[1]:
            return h, w
        w += layer.strides[1]  # one more output column


PAIR = st.tuples(st.integers(1, 3), st.integers(1, 3))
CONV2D_OPTIONS = dict(
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    strides=PAIR,
    dilation=PAIR,
    padding=st.sampled_from(["valid", "same"]),
    group_channels=st.integers(1, 3),
    group_filters=st.integers(1, 3),
    extra=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    batch=st.integers(1, 2),
    data_format=FORMATS,
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)


def _conv2d_case(kernel, strides, dilation, padding, groups, group_channels, group_filters, extra, batch, data_format,
                 activation, use_bias, dtype, seed):  # fmt: skip
    if max(strides) > 1:
        dilation = (1, 1)  # Keras (and tinynn) reject strides > 1 with dilation_rate > 1; tested in test_conv2d_layers
    layer = layers.Conv2D(
        groups * group_filters, kernel, strides=strides, padding=padding, dilation_rate=dilation, groups=groups,
        data_format=data_format, activation=activation, use_bias=use_bias, dtype=dtype,
    )  # fmt: skip
    hw = _clear_of_keras_bias_bug(layer, _sizes(kernel, dilation, padding, extra), groups * group_channels, batch)
    x = _input(seed, batch, hw, groups * group_channels, data_format, dtype)
    _parity(layer, x, seed)


BASE = dict(kernel=(3, 3), strides=(1, 1), dilation=(1, 1), padding="valid", group_channels=2, group_filters=3,
            extra=(2, 3), batch=2, data_format="channels_last", activation="relu", use_bias=True, dtype="float32",
            seed=7)  # fmt: skip


@covers(geometry=CONV2D_GEOMETRY)
@given(**CONV2D_OPTIONS)
@example(**{**BASE, "data_format": "channels_first", "padding": "same", "strides": (2, 3), "activation": None,
            "dtype": "float64"})
@example(**{**BASE, "dilation": (2, 3), "padding": "same", "use_bias": False, "activation": "tanh", "dtype": "float64"})
@example(**{**BASE, "kernel": (1, 4), "strides": (3, 1), "activation": "sigmoid", "data_format": "channels_first"})
@example(**{**BASE, "kernel": (4, 2), "dilation": (3, 1), "activation": "gelu", "extra": (0, 0)})
@example(**{**BASE, "kernel": (2, 1), "activation": "softplus", "dtype": "float64", "extra": (0, 1)})
@example(**{**BASE, "kernel": (3, 2), "padding": "same", "extra": (0, 2), "use_bias": False})
def test_conv2d_parity(**case):
    _conv2d_case(groups=1, **case)


# Keras runs grouped convolutions through XLA on CPU, which compiles once per shape (~1 s): half the examples.
@settings(max_examples=max(2, settings.default.max_examples // 2))
@covers(geometry=CONV2D_GEOMETRY)
@given(groups=st.integers(2, 3), **CONV2D_OPTIONS)
@example(groups=2, **{**BASE, "data_format": "channels_first", "padding": "same", "strides": (1, 2),
                      "dtype": "float64", "use_bias": False})  # fmt: skip
@example(groups=3, **{**BASE, "dilation": (2, 1), "activation": "tanh", "group_channels": 1})
@example(groups=2, **{**BASE, "padding": "same", "activation": "softplus", "dtype": "float64", "batch": 1})
@example(groups=2, **{**BASE, "padding": "same", "dilation": (1, 2), "activation": "sigmoid", "kernel": (2, 3)})
def test_grouped_conv2d_parity(**case):
    _conv2d_case(**case)


DEPTHWISE_OPTIONS = dict(
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    strides=PAIR,
    dilation=PAIR,
    padding=st.sampled_from(["valid", "same"]),
    channels=st.integers(1, 4),
    depth_multiplier=st.integers(1, 3),
    extra=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    data_format=FORMATS,
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
DW_BASE = dict(kernel=(3, 3), strides=(1, 1), dilation=(1, 1), padding="valid", channels=3, depth_multiplier=1,
               extra=(2, 3), data_format="channels_last", activation="relu", use_bias=True, dtype="float32", seed=3)


@covers(geometry=DEPTHWISE_GEOMETRY)
@given(**DEPTHWISE_OPTIONS)
@example(**{**DW_BASE, "strides": (2, 1), "dilation": (2, 3), "padding": "same", "depth_multiplier": 2,
            "data_format": "channels_first", "activation": None, "use_bias": False, "dtype": "float64"})
@example(**{**DW_BASE, "kernel": (2, 4), "strides": (1, 3), "depth_multiplier": 3, "activation": "tanh"})
@example(**{**DW_BASE, "dilation": (1, 2), "activation": "sigmoid", "dtype": "float64", "extra": (0, 0)})
@example(**{**DW_BASE, "activation": "gelu", "data_format": "channels_first", "padding": "same"})
@example(**{**DW_BASE, "activation": "softplus", "dtype": "float64"})
@example(**{**DW_BASE, "padding": "same", "dilation": (2, 2), "depth_multiplier": 2})
def test_depthwise_conv2d_parity(kernel, strides, dilation, padding, channels, depth_multiplier, extra, data_format,
                                 activation, use_bias, dtype, seed):  # fmt: skip
    """strides > 1 with dilation > 1 is legal here: Keras 3 runs the dilated conv at stride 1 and subsamples."""
    layer = layers.DepthwiseConv2D(
        kernel, strides=strides, padding=padding, depth_multiplier=depth_multiplier, data_format=data_format,
        dilation_rate=dilation, activation=activation, use_bias=use_bias, dtype=dtype,
    )  # fmt: skip
    hw = _clear_of_keras_bias_bug(layer, _sizes(kernel, dilation, padding, extra), channels)
    _parity(layer, _input(seed, 2, hw, channels, data_format, dtype), seed)


@covers(geometry=DEPTHWISE_GEOMETRY)
@given(filters=st.integers(1, 4), **DEPTHWISE_OPTIONS)
@example(filters=4, **{**DW_BASE, "strides": (1, 2), "dilation": (3, 2), "padding": "same", "depth_multiplier": 2,
                       "data_format": "channels_first", "activation": None, "use_bias": False, "dtype": "float64"})
@example(filters=2, **{**DW_BASE, "kernel": (4, 1), "strides": (3, 2), "depth_multiplier": 3, "activation": "tanh"})
@example(filters=3, **{**DW_BASE, "dilation": (2, 1), "activation": "sigmoid", "dtype": "float64", "extra": (0, 0)})
@example(filters=1, **{**DW_BASE, "activation": "gelu", "data_format": "channels_first", "padding": "same"})
@example(filters=4, **{**DW_BASE, "activation": "softplus", "dtype": "float64"})
@example(filters=3, **{**DW_BASE, "strides": (2, 2), "padding": "same", "extra": (3, 4)})
def test_separable_conv2d_parity(filters, kernel, strides, dilation, padding, channels, depth_multiplier, extra,
                                 data_format, activation, use_bias, dtype, seed):  # fmt: skip
    layer = layers.SeparableConv2D(
        filters, kernel, strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation,
        depth_multiplier=depth_multiplier, activation=activation, use_bias=use_bias, dtype=dtype,
    )  # fmt: skip
    hw = _clear_of_keras_bias_bug(layer, _sizes(kernel, dilation, padding, extra), channels)
    _parity(layer, _input(seed, 2, hw, channels, data_format, dtype), seed)


# The seeds' layers at their real sizes (the first conv of the MNIST and cats-vs-dogs convnets, seed 003's first
# SeparableConv2D), wide 3×3 convolutions (Winograd in tinynn), and the smallest legal inputs.
@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: layers.Conv2D(32, 3, activation="relu", dtype="float32"), (2, 28, 28, 1)),
        (lambda: layers.Conv2D(32, 3, activation="relu", dtype="float32"), (1, 150, 150, 3)),
        (lambda: layers.SeparableConv2D(32, 3, activation="relu", dtype="float32"), (2, 64, 64, 3)),
        # 3×3 stride-1 convolutions with >= 32 channels run Winograd F(2×2, 3×3) in tinynn's fast mode
        (lambda: layers.Conv2D(64, 3, activation="relu", dtype="float32"), (2, 13, 11, 32)),
        (lambda: layers.Conv2D(32, 3, padding="same", activation="tanh", dtype="float64"), (2, 9, 10, 48)),
        (lambda: layers.Conv2D(3, (4, 2), dilation_rate=(3, 2), dtype="float64"), (2, 10, 3, 2)),  # H = (4-1)·3 + 1
        (lambda: layers.Conv2D(4, 5, padding="same", strides=3, groups=2, dtype="float64"), (2, 1, 1, 2)),
        (lambda: layers.DepthwiseConv2D(3, padding="same", strides=2, dilation_rate=3, dtype="float64"), (2, 1, 2, 3)),
    ],
)
def test_conv2d_real_and_shortest_inputs_parity(make, shape):
    layer = make()
    x = np.random.default_rng(0).normal(size=shape).astype(layer.dtype)
    _parity(layer, x, 1)


def test_keras_adds_a_channels_first_bias_along_the_width_when_width_equals_channels():
    """The Keras bug the cases above steer clear of, on the TensorFlow backend: a channels_first DepthwiseConv2D (which
    TF runs on CPU) whose output is as wide as it has channels. Keras's answer is then not its own channels_last
    answer transposed, but that plus b[w] - b[c]; tinynn's is the transposed channels_last answer (which Keras
    computes right). On JAX and torch Keras adds b[c], as tinynn does."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 2, 3, 5))  # (B, C, H, W): C·M = 2·2 = 4 output channels, Wo = 5 - 2 + 1 = 4
    ours_cf = layers.DepthwiseConv2D((1, 2), depth_multiplier=2, data_format="channels_first", dtype="float64")
    ours_cf(x)
    weights = [rng.normal(size=w.shape) for w in ours_cf.get_weights()]
    ours_cf.set_weights(weights)
    theirs = {}
    for fmt, xin in (("channels_first", x), ("channels_last", x.transpose(0, 2, 3, 1))):
        k = keras.layers.DepthwiseConv2D((1, 2), depth_multiplier=2, data_format=fmt, dtype="float64")
        k.build(xin.shape)
        k.set_weights(weights)
        theirs[fmt] = backend.numpy(k(backend.tensor(xin)))
    keras_last = theirs["channels_last"].transpose(0, 3, 1, 2)
    bias = weights[1]
    np.testing.assert_allclose(ours_cf(x), keras_last, rtol=1e-13)
    if backend.current() == "tensorflow":
        np.testing.assert_allclose(theirs["channels_first"], keras_last - bias[None, :, None, None] + bias,
                                   rtol=1e-13)
    else:
        np.testing.assert_allclose(theirs["channels_first"], keras_last, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("padding,activation,training", [("valid", "relu", True), ("same", "tanh", False),
                                                         ("valid", None, False), ("same", "sigmoid", True)])
def test_winograd_width_conv2d_parity(padding, activation, training, dtype, monkeypatch):
    """Conv2D(64, 3) on 16 channels over 48 images of 20 × 20 or 20 × 19 pixels: the fast forward runs Winograd's
    F(2, 3) along the width here (counted; output widths 18 and 19), at a size where it runs without lowered
    thresholds on any CPU; against Keras at the usual tolerances, with dx and the weight gradients of the usual
    backward."""
    from tinynn.kernels import winograd_width

    calls = []
    real = winograd_width.winograd_width_conv2d
    monkeypatch.setattr(winograd_width, "winograd_width_conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer = layers.Conv2D(64, 3, padding=padding, activation=activation, dtype=dtype)
    width = 20 if padding == "valid" else 19  # output widths 18 and 19
    x = np.random.default_rng(7).normal(size=(48, 20, width, 16)).astype(dtype)
    assert winograd_width.applies((3, 3, 16, 64), (1, 1), (1, 1), 1, dtype, 48 * 18 * 18)
    layer_parity(layer, x, seed=8, training=training).assert_ok()
    assert len(calls) >= 2  # build and compare
