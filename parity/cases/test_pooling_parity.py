"""1-D pooling layers against Keras 3: forward and dx (random upstream gradient), both data formats, both paddings,
ties (TF routes a max-pool window's gradient to its first maximum; reduce_max splits it), and masks.
MaxPooling1D and AveragePooling1D run in both of tinynn's kernel modes ('fast': numba; 'reference': the NumPy
twins of ``tinynn.kernels.reference.pooling``), each against Keras."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity.harness import layer_parity
from parity.options import covers, examples
from tinynn import config, layers

DTYPES = st.sampled_from(["float64", "float32"])


def _input(seed, batch, length, channels, data_format, dtype, ties):
    x = np.random.default_rng(seed).normal(size=(batch, length, channels))
    if ties:
        x = np.round(x)  # many equal values: exercises the tie rules of the max gradients
    if data_format == "channels_first":
        x = x.transpose(0, 2, 1)
    return np.ascontiguousarray(x).astype(dtype)


def _windows(length, pool_size, strides, padding):
    """Start and end of every pooling window over [0, length) (TF's 'same': the padding split left/right)."""
    stride = strides or pool_size
    if padding == "valid":
        starts = range(0, length - pool_size + 1, stride)
    else:
        out = -(-length // stride)
        left = max((out - 1) * stride + pool_size - length, 0) // 2
        starts = [i * stride - left for i in range(out)]
    return [(max(s, 0), min(s + pool_size, length)) for s in starts]


def _has_tied_window(kw) -> bool:
    """Whether a max-pooling example has a window whose maximum occurs more than once (a tie)."""
    if kw["kind"] != "max" or not kw["ties"]:
        return False
    length = (kw["pool_size"] if kw["padding"] == "valid" else 1) + kw["extra_length"]
    x = _input(kw["seed"], kw["batch"], length, kw["channels"], "channels_last", "float64", True)
    for a, b in _windows(length, kw["pool_size"], kw["strides"], kw["padding"]):
        w = x[:, a:b]
        if ((w == w.max(axis=1, keepdims=True)).sum(axis=1) > 1).any():
            return True
    return False


POOL_BASE = dict(kind="max", pool_size=3, strides=None, padding="same", extra_length=7, channels=2, batch=2,
                 data_format="channels_last", ties=True, dtype="float32", seed=0, kernels="fast")  # seed 0: ties


@covers(tied_max_window=(lambda kw: (kw["kernels"], _has_tied_window(kw)), [("fast", True), ("reference", True)]),
        kind_padding=(lambda kw: (kw["kind"], kw["padding"], kw["kernels"]),
                      [(k, p, m) for k in ("max", "average") for p in ("valid", "same")
                       for m in ("fast", "reference")]))
@given(
    kind=st.sampled_from(["max", "average"]),
    pool_size=st.integers(1, 6),
    strides=st.one_of(st.none(), st.integers(1, 4)),
    padding=st.sampled_from(["valid", "same"]),
    extra_length=st.integers(0, 9),
    channels=st.integers(1, 4),
    batch=st.integers(1, 3),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    ties=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
    kernels=st.sampled_from(["fast", "reference"]),
)
@examples(POOL_BASE, dict(), dict(kind="average", strides=1, pool_size=6, padding="valid", extra_length=9),
          dict(strides=4, pool_size=1, extra_length=0, padding="valid", data_format="channels_first",
               dtype="float64"),
          dict(kernels="reference"), dict(kernels="reference", padding="valid", pool_size=2, strides=1, seed=3),
          dict(kind="average", kernels="reference", padding="valid", pool_size=4, strides=3, extra_length=5),
          dict(kind="average", padding="same", pool_size=5, strides=2, extra_length=6, dtype="float64"))
def test_pooling1d_parity(
    kind, pool_size, strides, padding, extra_length, channels, batch, data_format, ties, dtype, seed, kernels
):
    length = (pool_size if padding == "valid" else 1) + extra_length  # from the shortest legal input up
    cls = layers.MaxPooling1D if kind == "max" else layers.AveragePooling1D
    layer = cls(pool_size, strides=strides, padding=padding, data_format=data_format, dtype=dtype)
    x = _input(seed, batch, length, channels, data_format, dtype, ties)
    with config.kernels(kernels):
        report = layer_parity(layer, x, seed=seed)
    report.assert_ok()


def _has_tied_maximum(kw) -> bool:
    x = _input(kw["seed"], kw["batch"], kw["length"], kw["channels"], "channels_last", "float64", kw["ties"])
    return bool(((x == x.max(axis=1, keepdims=True)).sum(axis=1) > 1).any())


@covers(tied_maximum=(lambda kw: (kw["kernels"], _has_tied_maximum(kw)), [("fast", True), ("reference", True)]))
@given(
    length=st.integers(1, 9),
    channels=st.integers(1, 4),
    batch=st.integers(1, 3),
    keepdims=st.booleans(),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    ties=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
    kernels=st.sampled_from(["fast", "reference"]),
)
@examples(dict(length=6, channels=3, batch=3, keepdims=False, data_format="channels_last", ties=True,
               dtype="float64", seed=0),
          dict(kernels="fast"), dict(kernels="reference", length=9))
def test_global_max_pooling1d_parity(length, channels, batch, keepdims, data_format, ties, dtype, seed, kernels):
    """Both kernel paths (numba and the NumPy twin), with tied maxima: Keras splits their gradient equally."""
    layer = layers.GlobalMaxPooling1D(data_format=data_format, keepdims=keepdims, dtype=dtype)
    x = _input(seed, batch, length, channels, data_format, dtype, ties)
    with config.kernels(kernels):
        layer_parity(layer, x, seed=seed).assert_ok()


@given(
    length=st.integers(1, 9),
    channels=st.integers(1, 4),
    batch=st.integers(1, 4),
    keepdims=st.booleans(),
    data_format=st.sampled_from(["channels_last", "channels_first"]),
    masked=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
@examples(dict(length=9, channels=2, batch=4, keepdims=True, data_format="channels_first", masked=True,
               dtype="float32", seed=6))
def test_global_average_pooling1d_parity(length, channels, batch, keepdims, data_format, masked, dtype, seed):
    rng = np.random.default_rng(seed + 1)
    mask = None
    if masked:
        mask = rng.random((batch, length)) < 0.6
        mask[0] = False  # a fully masked row: 0/0 = NaN forward (both sides), zero gradient
    layer = layers.GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims, dtype=dtype)
    x = _input(seed, batch, length, channels, data_format, dtype, ties=False)
    layer_parity(layer, x, seed=seed, mask=mask).assert_ok()


def _keras_mask_fed(keras_layer):
    """A Keras layer computing ``keras_layer`` on x carrying ``mask`` the way Keras carries masks (as after
    Embedding(mask_zero=True)): the mask is attached to the tensor, not passed as an argument."""
    import keras

    class AttachMask(keras.layers.Layer):
        def call(self, x, mask=None):
            return x

        def compute_mask(self, x, mask=None):
            return mask

    class Fed(keras.layers.Layer):
        def __init__(self):
            super().__init__(dtype=keras_layer.dtype_policy)
            self.attach, self.inner = AttachMask(dtype=keras_layer.dtype_policy), keras_layer

        def call(self, x, mask=None):
            return self.inner(self.attach(x, mask=mask))

    return Fed()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_global_max_pooling_ignores_mask_like_keras(dtype):
    import keras

    mask = np.array([[True, True, False, False, False], [True, False, True, True, False]])
    x = _input(3, 2, 5, 3, "channels_last", dtype, ties=False)
    twin = _keras_mask_fed(keras.layers.GlobalMaxPooling1D(dtype=dtype))
    with pytest.warns(UserWarning, match="does not support masking"):  # Keras saw the mask and dropped it
        report = layer_parity(layers.GlobalMaxPooling1D(dtype=dtype), x, seed=3, mask=mask, keras_layer=twin)
    report.assert_ok()


def test_seed_model_pooling_parity():
    """The seed convnets' pooling layers at their real sizes: MaxPooling1D(5) after a 494-step relu conv."""
    x = np.maximum(_input(0, 2, 494, 32, "channels_last", "float32", ties=False), 0)  # relu zeros: ties
    layer_parity(layers.MaxPooling1D(5, dtype="float32"), x, seed=0).assert_ok()
    layer_parity(layers.GlobalMaxPooling1D(dtype="float32"), x[:, :92], seed=0).assert_ok()
