"""Flatten, Reshape and Dropout against Keras 3: forward and dx for a random upstream gradient.

Dropout's random masks come from TensorFlow's stateless RNG, which NumPy cannot reproduce
(keras-semantics §12): it is compared in inference mode (any rate: the identity) and in training mode at
rate 0; its training-mode statistics are tested in tests/test_core_layers.py.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from parity.harness import layer_parity
from tinynn import layers

DTYPES = st.sampled_from(["float64", "float32"])


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    batch=st.integers(1, 3),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
def test_flatten_parity(shape, batch, data_format, dtype, seed):
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype(dtype)
    layer_parity(layers.Flatten(data_format=data_format, dtype=dtype), x, seed=seed).assert_ok()


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    batch=st.integers(1, 3),
    split=st.integers(0, 2),
    unknown=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
def test_reshape_parity(shape, batch, split, unknown, dtype, seed):
    """Reshape (…) to (size/k, k) for a divisor k of the size, optionally with a -1."""
    size = int(np.prod(shape))
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    k = divisors[min(split, len(divisors) - 1)]
    target = (size // k, k)
    if unknown:
        target = (-1, k)
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype(dtype)
    layer_parity(layers.Reshape(target, dtype=dtype), x, seed=seed).assert_ok()


@given(
    rate=st.floats(0.0, 0.9),
    noise_axis=st.booleans(),
    training=st.booleans(),
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=3),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
def test_dropout_parity(rate, noise_axis, training, shape, dtype, seed):
    if training:
        rate = 0.0  # the masks of rate > 0 cannot be reproduced outside TensorFlow (see the module docstring)
    noise_shape = (None, 1, *shape[1:]) if noise_axis and len(shape) > 1 else None
    x = np.random.default_rng(seed).normal(size=(2, *shape)).astype(dtype)
    layer = layers.Dropout(rate, noise_shape=noise_shape, dtype=dtype)
    layer_parity(layer, x, seed=seed, training=training).assert_ok()
