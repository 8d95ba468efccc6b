"""Dense and Activation against Keras: forward, dx, dW, db with random weights and upstream gradients."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from parity.harness import layer_parity
from parity.options import examples
from tinynn import activations, layers

ACTIVATIONS = sorted(activations.ALL)


def every_activation(first_dtype: int) -> list[dict]:
    """Each activation once under any profile (12 random draws cannot name 16 values), dtypes alternating."""
    return [dict(activation=a, dtype=("float64", "float32")[(i + first_dtype) % 2]) for i, a in enumerate(ACTIVATIONS)]


@given(
    units=st.integers(1, 7),
    n_in=st.integers(1, 6),
    batch=st.integers(1, 5),
    extra_axes=st.lists(st.integers(1, 3), max_size=2),
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
    seed=st.integers(0, 2**16),
)
@examples(dict(units=3, n_in=4, batch=2, extra_axes=[], use_bias=True, seed=11),
          *[dict(v, units=1 + i % 7) for i, v in enumerate(every_activation(0))])  # every units value too
def test_dense_parity(units, n_in, batch, extra_axes, activation, use_bias, dtype, seed):
    x = np.random.default_rng(seed).normal(size=(batch, *extra_axes, n_in)).astype(dtype)
    layer = layers.Dense(units, activation=activation, use_bias=use_bias, dtype=dtype)
    layer_parity(layer, x, seed=seed).assert_ok()


@given(
    activation=st.sampled_from(ACTIVATIONS),
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=3),
    dtype=st.sampled_from(["float64", "float32"]),
    seed=st.integers(0, 2**16),
)
@examples(dict(shape=[3, 4], seed=12), *every_activation(1))
def test_activation_layer_parity(activation, shape, dtype, seed):
    x = (3 * np.random.default_rng(seed).normal(size=shape)).astype(dtype)
    layer_parity(layers.Activation(activation, dtype=dtype), x, seed=seed).assert_ok()
