r"""ZeroPadding2D and UpSampling2D with Keras 3's names and defaults (plain NumPy in both kernel modes: each is one
copy forward and one slice or block sum backward).

Symbols: x (B, H, W, C) channels-last (``data_format='channels_first'``: (B, C, H, W), the same formulas on the
other axes). Masks are not supported (Keras drops them).
"""

from __future__ import annotations

import numpy as np

from .arguments import data_format as standardize_data_format
from .arguments import is_int, positive_int_tuple
from .base import InputSpec
from .conv2d import ImageLayer


def _non_negative_pair(value, name: str, who: str) -> tuple[int, int]:
    if is_int(value):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(is_int(v) and v >= 0 for v in pair):
        raise ValueError(f"{who}: {name} must be a non-negative int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


class ZeroPadding2D(ImageLayer):
    r"""``ZeroPadding2D(padding=(1, 1), data_format=None)``: rows and columns of zeros around each image.

    ``padding``: an int (the same on all four sides), ``(rows, cols)`` (symmetric), or
    ``((top, bottom), (left, right))``.

    Forward::   y[b, t + h, l + w, c] = x[b,h,w,c], zeros elsewhere;  y (B, t + H + bo, l + W + r, C)

    Backward::  dx[b,h,w,c] = dy[b, t + h, l + w, c]   (the padding's gradient is dropped)
    """

    _config_keys = ("padding", "data_format")

    def __init__(self, padding=(1, 1), data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        who = self.who
        if is_int(padding):
            padding = ((padding, padding), (padding, padding))
        try:
            entries = tuple(padding)
        except TypeError:
            entries = ()
        if len(entries) != 2:
            raise ValueError(f"{who}: padding must be an int, a pair (rows, cols) or ((top, bottom), (left, right)), "
                             f"got {padding!r}")
        self.padding = tuple(_non_negative_pair(e, "each padding entry", who) for e in entries)
        self.data_format = standardize_data_format(data_format, who)
        self.input_spec = InputSpec(ndim=4)

    def build(self, input_shape):
        self._check_rank(input_shape)

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self._check_rank(x.shape)
        return x

    def get_config(self):
        cfg = super().get_config()
        cfg["padding"] = [list(p) for p in self.padding]
        return cfg

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        out = list(input_shape)
        for axis, (before, after) in zip(self._spatial_axes, self.padding):
            if out[axis] is not None:
                out[axis] += before + after
        return tuple(out)

    def forward(self, x, training=False, mask=None):
        widths = [(0, 0)] * 4
        for axis, pad in zip(self._spatial_axes, self.padding):
            widths[axis] = pad
        self._in_shape = x.shape
        return np.pad(x, widths)

    def backward(self, dy):
        self.gradients = []
        index = [slice(None)] * 4
        for axis, (before, _) in zip(self._spatial_axes, self.padding):
            index[axis] = slice(before, before + self._in_shape[axis])
        return np.array(dy[tuple(index)], dtype=self.dtype)


class UpSampling2D(ImageLayer):
    r"""``UpSampling2D(size=(2, 2), data_format=None, interpolation='nearest')``: each pixel repeated sh × sw times.

    Forward::   y[b, h·sh + r, w·sw + s, c] = x[b,h,w,c]   (0 <= r < sh, 0 <= s < sw);  y (B, sh·H, sw·W, C)

    Backward::  dx[b,h,w,c] = Σ_{r,s} dy[b, h·sh + r, w·sw + s, c]   (the sum over each block)

    Only ``interpolation='nearest'`` is implemented. (Keras-TF computes 'bilinear' in float32 even for float64
    layers and returns no input gradient for it, so there is no Keras answer to test a backward against.)
    """

    _config_keys = ("size", "data_format", "interpolation")

    def __init__(self, size=(2, 2), data_format: str | None = None, interpolation: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        who = self.who
        self.size = positive_int_tuple(size, 2, "size", who)
        self.data_format = standardize_data_format(data_format, who)
        if not isinstance(interpolation, str) or interpolation.lower() != "nearest":
            raise ValueError(f"{who}: tinynn implements interpolation='nearest' only, got {interpolation!r}")
        self.interpolation = "nearest"
        self.input_spec = InputSpec(ndim=4)

    def build(self, input_shape):
        self._check_rank(input_shape)

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self._check_rank(x.shape)
        return x

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        out = list(input_shape)
        for axis, factor in zip(self._spatial_axes, self.size):
            if out[axis] is not None:
                out[axis] *= factor
        return tuple(out)

    def forward(self, x, training=False, mask=None):
        x_last = self._to_last(x)
        self._in_shape = x_last.shape
        y = np.repeat(np.repeat(x_last, self.size[0], axis=1), self.size[1], axis=2)
        return self._from_last(y)

    def backward(self, dy):
        self.gradients = []
        B, H, W, C = self._in_shape
        sh, sw = self.size
        dx = self._to_last(dy).reshape(B, H, sh, W, sw, C).sum(axis=(2, 4), dtype=self.dtype)
        return self._from_last(dx)
