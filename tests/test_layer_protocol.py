"""A layer class written without any checks gets the protocol's checks from tinynn.layers.base: here toy layers
(a two-input sum, a two-output split) as the merge layers and multi-output layers of other areas would be."""

from __future__ import annotations

import numpy as np
import pytest

from tinynn.layers import Layer
from tinynn.layers.base import LayerCallError


class ToySum(Layer):
    """y = x_0 + x_1; a list of inputs, so backward returns a list of dx. No checks of its own."""

    takes_list_input = True

    def forward(self, x, training=False, mask=None):
        return x[0] + x[1]

    def backward(self, dy):
        self.gradients = []
        return [dy, dy]


class ToySplit(Layer):
    """[y_0, y_1] = [x[..., :1], x[..., 1:]]; two outputs, so backward takes a list of two upstream gradients."""

    def forward(self, x, training=False, mask=None):
        self._shape = x.shape
        return [x[..., :1], x[..., 1:]]

    def backward(self, dy):
        self.gradients = []
        d0, d1 = (np.zeros(s, self.dtype) if d is None else d for d, s in zip(dy, [(*self._shape[:-1], 1),
                                                                                   (*self._shape[:-1], 2)]))
        return np.concatenate([d0, d1], axis=-1)


class ToyWrongDx(Layer):
    def forward(self, x, training=False, mask=None):
        return x

    def backward(self, dy):
        return dy[:, :1]  # a bug: dx of the wrong shape


def test_a_list_input_layer_gets_input_and_upstream_checks():
    layer = ToySum(name="toy_sum")
    a, b = np.ones((2, 3)), np.full((2, 3), 2.0)
    with pytest.raises(LayerCallError, match=r"'toy_sum' \(ToySum\): backward needs a forward call first"):
        layer.backward(np.ones((2, 3)))
    np.testing.assert_array_equal(layer.forward([a, b]), a + b)  # direct forward on an unbuilt layer builds it
    assert layer.built
    dx = layer.backward(np.ones((2, 3), np.int64))  # an integer dy is cast to the output's dtype
    assert isinstance(dx, list) and all(d.dtype == np.float32 for d in dx)
    with pytest.raises(ValueError, match=r"'toy_sum' \(ToySum\): backward expects dy of shape \(2, 3\).*got \(1, 3\)"):
        layer.backward(np.ones((1, 3)))  # broadcastable, still refused
    with pytest.raises(ValueError, match=r"'toy_sum' \(ToySum\) expects a list of arrays"):
        layer(a)
    with pytest.raises(ValueError, match=r"'toy_sum' \(ToySum\) expects numeric input 1, got dtype complex128"):
        layer([a, b.astype(complex)])
    with pytest.raises(ValueError, match=r"'toy_sum' \(ToySum\) takes 2 inputs, so its mask must be a list of 2"):
        layer([a, b], mask=np.ones(2, bool))


def test_a_multi_output_layer_gets_list_checks():
    layer = ToySplit(name="split")
    x = np.arange(12.0).reshape(2, 2, 3)
    y0, y1 = layer(x)
    with pytest.raises(ValueError, match=r"'split' \(ToySplit\) returns 2 arrays.*list of 2 upstream gradients"):
        layer.backward(np.ones((2, 2, 3)))
    with pytest.raises(ValueError, match=r"backward expects dy\[1\] of shape \(2, 2, 2\).*got \(2, 2, 1\)"):
        layer.backward([np.ones(y0.shape), np.ones((2, 2, 1))])
    dx = layer.backward([None, np.ones(y1.shape)])  # None: no gradient from that output
    np.testing.assert_array_equal(dx, np.concatenate([np.zeros(y0.shape), np.ones(y1.shape)], axis=-1))
    with pytest.raises(ValueError, match=r"'split' \(ToySplit\) expects a boolean mask of shape \(2, 2\)"):
        layer.supports_masking = True
        layer(x, mask=np.ones((2, 3), bool))


def test_a_wrong_dx_is_reported_as_a_bug_of_the_layer():
    layer = ToyWrongDx(name="buggy")
    layer(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"'buggy' \(ToyWrongDx\): backward returned dx of shape \(2, 1\)"):
        layer.backward(np.ones((2, 3)))


def test_call_order_errors_are_value_errors():
    assert issubclass(LayerCallError, ValueError) and issubclass(LayerCallError, RuntimeError)
