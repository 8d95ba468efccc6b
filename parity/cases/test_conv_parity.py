"""Conv1D, DepthwiseConv1D and SeparableConv1D against Keras 3: forward, dx and every weight gradient, with
random weights (biases included) and a random upstream gradient, over the whole option space.

TensorFlow's CPU kernels cannot run a ``channels_first`` Conv1D (Conv2D supports NHWC only there): on the
TensorFlow backend Keras's answer for it is computed under XLA (``tf.function(jit_compile=True)``), which
compiles the same Keras layer call; JAX and torch run it natively.

Keras 3 on TensorFlow (under XLA) adds a ``channels_first`` Conv1D's bias along the wrong axis whenever the number of
filters equals the output length (the (F, L_out) output is square): ``test_keras_tf_channels_first_bias_bug`` shows
it, and on TensorFlow those examples are compared with Keras's ``channels_last`` Conv1D of the same config and
weights between two transposes (:class:`ViaChannelsLast`), which is what ``channels_first`` means.

Conv1D (grouped too) runs in both of tinynn's kernel modes (``kernels``): 'fast' (the GEMM lowerings) and
'reference' (the NumPy twins of ``tinynn.kernels.reference.conv``), each against Keras."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import backend, bridge
from parity.harness import layer_parity
from parity.options import covers, examples
from tinynn import config, layers

# (No "elu": TF computes it in float32 as Eigen's vectorized exp(x) - 1, which near 0 is off by ~1e-4 relative,
# so an example whose outputs are all tiny fails float32 parity for a reason that has nothing to do with the
# convolution; the activations themselves are compared in test_dense_parity.)
ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "gelu", "softplus"]
DTYPES = st.sampled_from(["float64", "float32"])


def _min_length(kernel_size, dilation, padding):
    """The shortest legal input: the receptive field for 'valid', a single step otherwise."""
    return (kernel_size - 1) * dilation + 1 if padding == "valid" else 1


def _input(seed, shape, dtype):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _effective_dilation(case: dict) -> int:
    """Keras (and tinynn) reject strides > 1 with dilation_rate > 1 (tested in test_conv_layers): dilation
    is dropped to 1 there."""
    return 1 if case["strides"] > 1 else case["dilation"]


def keras_tf_bias_bug(layer, length: int) -> bool:
    """Whether Keras on TensorFlow (XLA) adds this channels_first Conv1D's bias along the wrong axis: F == L_out."""
    if layer.data_format != "channels_first" or not layer.use_bias or backend.current() != "tensorflow":
        return False
    return _l_out(layer, length) == layer.filters


def _l_out(layer, length: int) -> int:
    from tinynn.kernels.reference.conv import conv_padding

    return conv_padding(length, layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0], layer.padding)[2]


def via_channels_last(layer):
    """The Keras twin of a channels_first tinynn Conv1D computed as Keras's channels_last Conv1D between two
    transposes (the same config, so the same weight layout)."""
    config = bridge.keras_layer_for(layer).get_config()
    return _via_channels_last_class()(conv=dict(config, data_format="channels_last"), dtype=config["dtype"])


def _via_channels_last_class():
    import keras
    from keras import ops

    class ViaChannelsLast(keras.layers.Layer):
        """y = transpose(Conv1D_channels_last(transpose(x))): channels_first without the TF/XLA bias bug."""

        def __init__(self, conv, **kwargs):
            super().__init__(**kwargs)
            self.conv_config = conv
            self.conv = keras.layers.Conv1D.from_config(conv)

        def build(self, input_shape):
            self.conv.build((input_shape[0], input_shape[2], input_shape[1]))

        def call(self, x):
            return ops.transpose(self.conv(ops.transpose(x, (0, 2, 1))), (0, 2, 1))

        def get_config(self):
            return {**super().get_config(), "conv": self.conv_config}

    return ViaChannelsLast


def _conv1d_case(kernel_size, strides, dilation, padding, groups, group_channels, group_filters, extra_length,
                 batch, data_format, activation, use_bias, dtype, seed, kernels):
    dilation = _effective_dilation(dict(strides=strides, dilation=dilation))
    length = _min_length(kernel_size, dilation, padding) + extra_length
    layer = layers.Conv1D(
        groups * group_filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation,
        groups=groups, data_format=data_format, activation=activation, use_bias=use_bias, dtype=dtype,
    )  # fmt: skip
    channels = groups * group_channels
    shape = (batch, length, channels) if data_format == "channels_last" else (batch, channels, length)
    keras_layer = via_channels_last(layer) if keras_tf_bias_bug(layer, length) else None
    with config.kernels(kernels):
        report = layer_parity(layer, _input(seed, shape, dtype), seed=seed, xla=data_format == "channels_first",
                              keras_layer=keras_layer)
    report.assert_ok()


CONV1D_OPTIONS = dict(
    kernel_size=st.integers(1, 9),
    strides=st.integers(1, 3),
    dilation=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same", "causal"]),
    group_channels=st.integers(1, 4),
    group_filters=st.integers(1, 4),
    extra_length=st.integers(0, 8),
    batch=st.integers(1, 3),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
    kernels=st.sampled_from(["fast", "reference"]),
)
PADDINGS = ["valid", "same", "causal"]
# every padding with and without (effective) dilation: causal padding with dilation shifts by (k-1)·d
padding_dilated = (lambda case: (case["padding"], _effective_dilation(case) > 1),
                   [(p, d) for p in PADDINGS for d in (False, True)])
CONV1D_BASE = dict(kernel_size=3, strides=1, dilation=2, padding="causal", group_channels=2, group_filters=2,
                   extra_length=3, batch=2, data_format="channels_last", activation="relu", use_bias=True,
                   dtype="float64", seed=5, kernels="fast")


@covers(padding_dilated=padding_dilated)
@given(**CONV1D_OPTIONS)
@examples(CONV1D_BASE, dict(), dict(padding="same", dtype="float32", data_format="channels_first", kernel_size=9,
                                    extra_length=8),
          dict(padding="valid", dilation=3, activation="softplus", group_channels=4, group_filters=4))
def test_conv1d_parity(**case):
    _conv1d_case(groups=1, **case)


# Keras runs grouped convolutions through XLA on CPU, which compiles once per shape (~1 s): half the examples.
@settings(max_examples=max(2, settings.default.max_examples // 2))
@covers(padding_dilated=padding_dilated)
@given(groups=st.integers(2, 3), **CONV1D_OPTIONS)
@examples(dict(CONV1D_BASE, groups=2), dict(), dict(groups=3, padding="same", data_format="channels_first",
                                                    dtype="float32"),
          dict(padding="valid", dilation=3, activation="tanh"),
          dict(kernel_size=9, strides=3, group_channels=4, activation="softplus", extra_length=2),
          dict(groups=3, activation="gelu", padding="same", kernels="reference", dtype="float32"))
def test_grouped_conv1d_parity(**case):
    _conv1d_case(**case)


@given(
    kernel_size=st.integers(1, 9),
    strides=st.integers(1, 3),
    dilation=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    channels=st.integers(1, 4),
    depth_multiplier=st.integers(1, 3),
    extra_length=st.integers(0, 8),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
def test_depthwise_conv1d_parity(
    kernel_size, strides, dilation, padding, channels, depth_multiplier, extra_length, data_format, activation,
    use_bias, dtype, seed,
):  # fmt: skip
    """strides > 1 with dilation > 1 is legal here: Keras 3 runs the dilated conv at stride 1 and subsamples."""
    length = _min_length(kernel_size, dilation, padding) + extra_length
    layer = layers.DepthwiseConv1D(
        kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier, data_format=data_format,
        dilation_rate=dilation, activation=activation, use_bias=use_bias, dtype=dtype,
    )  # fmt: skip
    shape = (2, length, channels) if data_format == "channels_last" else (2, channels, length)
    layer_parity(layer, _input(seed, shape, dtype), seed=seed).assert_ok()


@given(
    filters=st.integers(1, 5),
    kernel_size=st.integers(1, 9),
    strides=st.integers(1, 3),
    dilation=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    channels=st.integers(1, 4),
    depth_multiplier=st.integers(1, 3),
    extra_length=st.integers(0, 8),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
@examples(dict(filters=3, kernel_size=3, strides=1, dilation=1, padding="same", channels=2, depth_multiplier=2,
               extra_length=4, data_format="channels_last", use_bias=True, dtype="float32", seed=7),
          *[dict(activation=a, dtype=d) for a, d in [("relu", "float64"), ("tanh", "float32"), ("sigmoid", "float64")]])
def test_separable_conv1d_parity(
    filters, kernel_size, strides, dilation, padding, channels, depth_multiplier, extra_length, data_format,
    activation, use_bias, dtype, seed,
):  # fmt: skip
    length = _min_length(kernel_size, dilation, padding) + extra_length
    layer = layers.SeparableConv1D(
        filters, kernel_size, strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation,
        depth_multiplier=depth_multiplier, activation=activation, use_bias=use_bias, dtype=dtype,
    )  # fmt: skip
    shape = (2, length, channels) if data_format == "channels_last" else (2, channels, length)
    layer_parity(layer, _input(seed, shape, dtype), seed=seed).assert_ok()


# The shortest legal input for each padding, pinned (hypothesis reaches it, but not necessarily in 12 examples).
@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: layers.Conv1D(3, 9, dilation_rate=3, dtype="float64"), (2, 25, 2)),  # L = (9-1)·3 + 1
        (lambda: layers.Conv1D(3, 9, strides=3, dtype="float64"), (2, 9, 2)),
        (lambda: layers.Conv1D(4, 7, padding="same", strides=3, groups=2, dtype="float64"), (2, 1, 2)),
        (lambda: layers.Conv1D(2, 5, padding="causal", dilation_rate=2, dtype="float64"), (2, 1, 3)),
        (lambda: layers.SeparableConv1D(2, 4, strides=2, dilation_rate=2, dtype="float64"), (2, 7, 3)),
        (lambda: layers.DepthwiseConv1D(6, padding="same", strides=2, dilation_rate=3, dtype="float64"), (2, 1, 3)),
        (lambda: layers.Conv1D(16, 5, activation="relu", dtype="float32"), (3, 50, 1)),  # the seed-002 layer
    ],
)
def test_conv_shortest_inputs_parity(make, shape):
    layer_parity(make(), _input(0, shape, make().dtype), seed=1).assert_ok()


@pytest.mark.parametrize("shape,filters,kernel_size", [((1, 1, 2), 2, 1), ((2, 2, 4), 4, 1), ((2, 3, 5), 4, 2)])
def test_keras_tf_channels_first_bias_bug(shape, filters, kernel_size):
    """Keras 3 on TensorFlow, channels_first Conv1D with filters == output length, under XLA (TF's CPU kernels
    cannot run channels_first at all): the bias lands on the time axis. tinynn agrees with Keras's own
    channels_last layer on transposed data (a recorded parity comparison); Keras's channels_first answer on
    TensorFlow is off by about the bias (checked here, outside the parity table). On the other backends Keras's
    channels_first layer is compared directly. (When the TensorFlow check fails, Keras fixed the bug: drop the
    workaround in ``_conv1d_case``.)"""
    x = _input(3, shape, "float64")
    layer = layers.Conv1D(filters, kernel_size, data_format="channels_first", dtype="float64")
    assert _l_out(layer, shape[2]) == filters
    if backend.current() != "tensorflow":
        layer_parity(layer, x, seed=4).assert_ok()
        return
    layer_parity(layer, x, seed=4, keras_layer=via_channels_last(layer), xla=True).assert_ok()
    import keras
    import tensorflow as tf  # the TensorFlow backend's own bug, shown on TensorFlow

    direct = keras.layers.Conv1D(filters, kernel_size, data_format="channels_first", dtype="float64")
    direct.build(shape)
    direct.set_weights(layer.get_weights())
    keras_y = tf.function(direct, jit_compile=True)(tf.constant(x)).numpy()
    ours = layer(x)
    W, b = layer.get_weights()
    by_definition = np.stack([np.einsum("bck,kcf->bf", x[:, :, t:t + kernel_size], W)
                              for t in range(filters)], axis=-1) + b[None, :, None]
    np.testing.assert_allclose(ours, by_definition, rtol=1e-12, atol=1e-12)
    keras_err = np.abs(keras_y - by_definition).max()
    assert keras_err > 0.1 * np.abs(b).max(), f"Keras on TensorFlow computes this case correctly now ({keras_err})"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("padding,activation,training", [("valid", "relu", True), ("same", "tanh", False),
                                                         ("causal", None, True), ("same", "sigmoid", True)])
def test_winograd_conv1d_parity(padding, activation, training, dtype, monkeypatch):
    """Conv1D(64, 5) on 64 channels over 16 × 70 steps: the fast kernels run Winograd's F(2, 3) + F(2, 2) here
    (forward and both gradients, counted), at a size where it runs without lowered thresholds; against Keras at the
    usual tolerances. An odd output length too ('causal' on 69 steps)."""
    from tinynn.kernels import winograd1d

    calls = []
    for name in ("winograd_conv1d", "winograd_conv1d_backward_filter"):
        real = getattr(winograd1d, name)
        monkeypatch.setattr(winograd1d, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    length = 69 if padding == "causal" else 70
    layer = layers.Conv1D(64, 5, padding=padding, activation=activation, dtype=dtype)
    x = _input(3, (16, length, 64), dtype)
    assert winograd1d.applies((5, 64, 64), 1, 1, 1, dtype, 16 * (length - 4 if padding == "valid" else length))
    layer_parity(layer, x, seed=4, training=training).assert_ok()
    assert len(calls) >= 3  # the forward (twice: build and compare), dW, and dx by the forward on dz
