"""2-D pooling, ZeroPadding2D and UpSampling2D against Keras 3: forward and dx (random upstream gradient), both data
formats, both paddings, overlapping windows and ties (TF routes a max-pool window's gradient to its first maximum
in row-major order; reduce_max splits it equally). Explicit ``@example``s put every option value in the ``ci``
profile's 12 derandomized examples."""

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from parity.harness import layer_parity
from tinynn import layers

DTYPES = st.sampled_from(["float64", "float32"])
FORMATS = st.sampled_from(["channels_last", "channels_first"])
PAIR = st.tuples(st.integers(1, 3), st.integers(1, 3))


def _input(seed, batch, hw, channels, data_format, dtype, ties=False):
    x = np.random.default_rng(seed).normal(size=(batch, *hw, channels))
    if ties:
        x = np.round(x)  # many equal values: exercises the tie rules of the max gradients
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x).astype(dtype)


POOL_BASE = dict(kind="max", pool=(2, 2), strides=None, padding="valid", extra=(1, 2), channels=2, batch=2,
                 data_format="channels_last", ties=False, dtype="float32", seed=5)  # fmt: skip


@given(
    kind=st.sampled_from(["max", "average"]),
    pool=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    strides=st.one_of(st.none(), PAIR),
    padding=st.sampled_from(["valid", "same"]),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    channels=st.integers(1, 3),
    batch=st.integers(1, 2),
    data_format=FORMATS,
    ties=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
@example(**{**POOL_BASE, "pool": (3, 2), "strides": (1, 2), "padding": "same", "ties": True, "dtype": "float64",
            "data_format": "channels_first"})  # overlapping windows with ties
@example(**{**POOL_BASE, "kind": "average", "pool": (3, 4), "strides": (2, 3), "padding": "same", "extra": (0, 1),
            "data_format": "channels_first", "dtype": "float64"})
@example(**{**POOL_BASE, "kind": "average", "ties": True})
@example(**{**POOL_BASE, "pool": (4, 1), "strides": (3, 3), "extra": (0, 0), "ties": True})
def test_pooling2d_parity(kind, pool, strides, padding, extra, channels, batch, data_format, ties, dtype, seed):
    hw = tuple((p if padding == "valid" else 1) + e for p, e in zip(pool, extra))  # from the shortest legal input up
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls(pool, strides=strides, padding=padding, data_format=data_format, dtype=dtype)
    x = _input(seed, batch, hw, channels, data_format, dtype, ties)
    layer_parity(layer, x, seed=seed).assert_ok()


GLOBAL_BASE = dict(kind="max", hw=(3, 4), channels=2, batch=2, keepdims=False, data_format="channels_last",
                   ties=False, dtype="float32", seed=1)  # fmt: skip


@given(
    kind=st.sampled_from(["max", "average"]),
    hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    channels=st.integers(1, 3),
    batch=st.integers(1, 3),
    keepdims=st.booleans(),
    data_format=FORMATS,
    ties=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
@example(**{**GLOBAL_BASE, "keepdims": True, "data_format": "channels_first", "ties": True, "dtype": "float64"})
@example(**{**GLOBAL_BASE, "kind": "average", "keepdims": True, "data_format": "channels_first"})
@example(**{**GLOBAL_BASE, "kind": "average", "hw": (1, 1), "dtype": "float64"})
def test_global_pooling2d_parity(kind, hw, channels, batch, keepdims, data_format, ties, dtype, seed):
    cls = layers.GlobalMaxPooling2D if kind == "max" else layers.GlobalAveragePooling2D
    layer = cls(data_format=data_format, keepdims=keepdims, dtype=dtype)
    layer_parity(layer, _input(seed, batch, hw, channels, data_format, dtype, ties), seed=seed).assert_ok()


@given(
    top=st.integers(0, 3), bottom=st.integers(0, 3), left=st.integers(0, 3), right=st.integers(0, 3),
    form=st.sampled_from(["int", "pair", "pairs"]),
    hw=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    data_format=FORMATS,
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
@example(top=1, bottom=2, left=0, right=3, form="pairs", hw=(2, 3), data_format="channels_first", dtype="float64",
         seed=0)
@example(top=2, bottom=0, left=1, right=0, form="pair", hw=(1, 1), data_format="channels_last", dtype="float32", seed=1)
@example(top=3, bottom=0, left=0, right=0, form="int", hw=(3, 2), data_format="channels_first", dtype="float32", seed=2)
@example(top=0, bottom=1, left=3, right=2, form="pairs", hw=(2, 1), data_format="channels_last", dtype="float64",
         seed=3)
def test_zero_padding2d_parity(top, bottom, left, right, form, hw, data_format, dtype, seed):
    padding = {"int": top, "pair": (top, left), "pairs": ((top, bottom), (left, right))}[form]
    layer = layers.ZeroPadding2D(padding, data_format=data_format, dtype=dtype)
    layer_parity(layer, _input(seed, 2, hw, 3, data_format, dtype), seed=seed).assert_ok()


@given(size=PAIR, hw=st.tuples(st.integers(1, 4), st.integers(1, 4)), data_format=FORMATS, dtype=DTYPES,
       seed=st.integers(0, 2**16))  # fmt: skip
@example(size=(2, 3), hw=(3, 2), data_format="channels_first", dtype="float64", seed=0)
@example(size=(1, 2), hw=(1, 4), data_format="channels_last", dtype="float32", seed=1)
def test_up_sampling2d_parity(size, hw, data_format, dtype, seed):
    layer = layers.UpSampling2D(size, data_format=data_format, dtype=dtype)
    layer_parity(layer, _input(seed, 2, hw, 3, data_format, dtype), seed=seed).assert_ok()


def test_seed_model_pooling2d_parity():
    """The seed convnets' pooling at a real size: MaxPooling2D(2) after a 148×148×32 relu conv (relu zeros: ties),
    and the GlobalAveragePooling2D that ends seed 003's stack."""
    x = np.maximum(_input(0, 1, (148, 148), 32, "channels_last", "float32"), 0)
    layer_parity(layers.MaxPooling2D(2, dtype="float32"), x, seed=0).assert_ok()
    layer_parity(layers.GlobalAveragePooling2D(dtype="float32"), x[:, :9, :9], seed=0).assert_ok()
