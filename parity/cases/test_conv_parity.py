"""Conv1D, DepthwiseConv1D and SeparableConv1D against Keras 3: forward, dx and every weight gradient, with
random weights (biases included) and a random upstream gradient, over the whole option space."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.harness import layer_parity
from tinynn import layers

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


def _conv1d_case(kernel_size, strides, dilation, padding, groups, group_channels, group_filters, extra_length,
                 batch, activation, use_bias, dtype, seed):
    if strides > 1:
        dilation = 1  # Keras (and tinynn) reject strides > 1 with dilation_rate > 1; tested in test_conv_layers
    length = _min_length(kernel_size, dilation, padding) + extra_length
    layer = layers.Conv1D(
        groups * group_filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation,
        groups=groups, activation=activation, use_bias=use_bias, dtype=dtype,
    )  # fmt: skip
    x = _input(seed, (batch, length, groups * group_channels), dtype)
    layer_parity(layer, x, seed=seed).assert_ok()


CONV1D_OPTIONS = dict(
    kernel_size=st.integers(1, 9),
    strides=st.integers(1, 3),
    dilation=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same", "causal"]),
    group_channels=st.integers(1, 4),
    group_filters=st.integers(1, 4),
    extra_length=st.integers(0, 8),
    batch=st.integers(1, 3),
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)


@given(**CONV1D_OPTIONS)
def test_conv1d_parity(**case):
    _conv1d_case(groups=1, **case)


# Keras runs grouped convolutions through XLA on CPU, which compiles once per shape (~1 s): half the examples.
@settings(max_examples=max(2, settings.default.max_examples // 2))
@given(groups=st.integers(2, 3), **CONV1D_OPTIONS)
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
