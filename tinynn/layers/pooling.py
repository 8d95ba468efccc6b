r"""1-D pooling layers with Keras 3's names and defaults.

Symbols: x (B, L, C) channels-last (``data_format='channels_first'`` inputs (B, C, L) are transposed,
as Keras's TF backend does), pool size P, stride S (``strides=None`` means S = P), y (B, Lo, C).
Windows follow TF's padding rule (:func:`tinynn.kernels.conv.conv_padding` with K = P, d = 1):

    valid   Lo = ⌊(L - P)/S⌋ + 1   (Lo < 1 raises ValueError)
    same    Lo = ⌈L/S⌉, total = max((Lo-1)·S + P - L, 0), pl = ⌊total/2⌋ (extra pad on the right)

and window t holds the real steps ``W_t = [t·S - pl, t·S - pl + P) ∩ [0, L)``: max pooling pads with
-∞ and average pooling divides by the number of real steps |W_t| (the pads are excluded).

Masks: MaxPooling1D, AveragePooling1D and GlobalMaxPooling1D do not support masking (Keras drops the
mask, so padded steps take part in a global max). GlobalAveragePooling1D takes ``mask=`` into account
(a masked mean) and, like Keras, outputs no mask.

Code, reference first: :mod:`tinynn.kernels.reference.pooling` (``max_pool1d_forward`` / ``_backward``,
``avg_pool1d_forward`` / ``_backward``, ``global_max_pool1d_*``, ``global_avg_pool1d_*``: the 'reference' kernel
mode), then the numba twins in :mod:`tinynn.kernels.pooling` (the default 'fast' mode). A masked global average
stays a NumPy expression in both modes.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..kernels import pooling as K_pool
from ..kernels import warmup
from ..kernels.reference import pooling as R_pool
from ..kernels.reference.conv import conv_padding
from .arguments import data_format as standardize_data_format
from .arguments import one_of, positive_int_tuple
from .base import InputSpec, format_shape
from .conv import DataFormatLayer


def _fast(layer, x, mask) -> bool:
    """The fast kernels, unless in reference mode or still compiling (:func:`tinynn.kernels.warmup.fast_ready`)."""
    return config.kernel_mode() == "fast" and warmup.fast_ready(layer, x, mask)


class _Pool1DBase(DataFormatLayer):
    """Shared argument checks, data_format handling and geometry for the windowed poolings."""

    _config_keys = ("pool_size", "strides", "padding", "data_format")

    def __init__(self, pool_size, strides=None, padding: str = "valid", data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        who = self.who
        self.pool_size = positive_int_tuple(pool_size, 1, "pool_size", who)
        self.strides = self.pool_size if strides is None else positive_int_tuple(strides, 1, "strides", who)
        self.padding = one_of(padding, ("valid", "same"), "padding", who)
        self.data_format = standardize_data_format(data_format, who)
        self.input_spec = InputSpec(ndim=3)

    def _geometry(self, length: int, shape) -> tuple[int, int]:
        """(pad_left, L_out); ValueError naming the layer and the shape if the output would be empty."""
        (P,), (S,) = self.pool_size, self.strides
        pl, _, l_out = conv_padding(int(length), P, S, 1, self.padding)
        if l_out < 1:
            raise ValueError(
                f"{self.who}: input shape {format_shape(shape)} has {length} steps, fewer than pool_size={P}, so "
                f"padding={self.padding!r}, strides={S} would give an empty output (length {l_out})"
            )
        return pl, l_out

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.who} expects inputs of rank 3 (batch, steps, channels), got shape {format_shape(input_shape)}"
            )
        if input_shape[self._time_axis] is not None:
            self._geometry(input_shape[self._time_axis], input_shape)

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self.build(x.shape)  # only checks: rank and length errors quote the real shape, before any kernel
        return x

    def check_input(self, x: np.ndarray) -> None:
        super().check_input(x)
        self._geometry(x.shape[self._time_axis], x.shape)

    def compute_output_shape(self, input_shape):
        length = input_shape[self._time_axis]
        l_out = None if length is None else self._geometry(length, input_shape)[1]
        if self.data_format == "channels_last":
            return (input_shape[0], l_out, input_shape[2])
        return (input_shape[0], input_shape[1], l_out)


class MaxPooling1D(_Pool1DBase):
    r"""``MaxPooling1D(pool_size=2, strides=None, padding='valid', data_format=None)``.

    Forward::

        y[b,t,c] = max_{i ∈ W_t} x[b,i,c],    a[b,t,c] = first i ∈ W_t with x[b,i,c] = y[b,t,c]

    Backward (each window's gradient goes to its first maximum, as TF's MaxPoolGrad does)::

        dx[b,i,c] = Σ_{t: a[b,t,c] = i} dy[b,t,c]
    """

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)

    def forward(self, x, training=False, mask=None):
        self._kernels = K_pool if _fast(self, x, mask) else R_pool
        x = self._to_last(x)
        pl, l_out = self._geometry(x.shape[1], x.shape)
        P, S = self.pool_size[0], self.strides[0]
        if training:
            y, self._a = self._kernels.max_pool1d_forward(x, P, S, pl, l_out)
            self._x = None
        else:  # no argmax steps: a backward after an inference call finds them from x (see backward)
            y, self._a = self._kernels.max_pool1d_values(x, P, S, pl, l_out), None
            self._x, self._window = x, (P, S, pl, l_out)
        self._length = x.shape[1]
        return self._from_last(y)

    def backward(self, dy):
        self.gradients = []
        if self._a is None:  # the forward was an inference call
            self._a = self._kernels.max_pool1d_forward(self._x, *self._window)[1]
        return self._from_last(self._kernels.max_pool1d_backward(self._to_last(dy), self._a, self._length))


class AveragePooling1D(_Pool1DBase):
    r"""``AveragePooling1D(pool_size, strides=None, padding='valid', data_format=None)`` (pool_size is
    required, as in Keras).

    Forward, with n_t = |W_t| the number of real steps in window t::

        y[b,t,c] = Σ_{i ∈ W_t} x[b,i,c] / n_t

    Backward::

        dx[b,i,c] = Σ_{t: i ∈ W_t} dy[b,t,c] / n_t
    """

    def __init__(self, pool_size, strides=None, padding: str = "valid", data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)

    def forward(self, x, training=False, mask=None):
        self._kernels = K_pool if _fast(self, x, mask) else R_pool
        x = self._to_last(x)
        self._pl, l_out = self._geometry(x.shape[1], x.shape)
        self._length = x.shape[1]
        return self._from_last(self._kernels.avg_pool1d_forward(x, self.pool_size[0], self.strides[0], self._pl,
                                                                 l_out))

    def backward(self, dy):
        self.gradients = []
        P, S = self.pool_size[0], self.strides[0]
        dx = self._kernels.avg_pool1d_backward(self._to_last(dy), self._length, P, S, self._pl)
        return self._from_last(dx)


class _GlobalPool1DBase(DataFormatLayer):
    _config_keys = ("data_format", "keepdims")

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format, self.who)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=3)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.who} expects inputs of rank 3 (batch, steps, channels), got shape {format_shape(input_shape)}"
            )

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self.build(x.shape)  # only checks the rank, quoting the real shape
        return x

    def check_input(self, x: np.ndarray) -> None:
        super().check_input(x)
        if x.shape[self._time_axis] == 0:
            raise ValueError(f"{self.who} needs at least one step, got input shape {x.shape}")

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return tuple(1 if i == self._time_axis else s for i, s in enumerate(input_shape))
        return tuple(s for i, s in enumerate(input_shape) if i != self._time_axis)

    def _keep(self, dy: np.ndarray) -> np.ndarray:
        """dy with the steps axis restored (length 1) for broadcasting."""
        return dy if self.keepdims else np.expand_dims(dy, self._time_axis)

    def _restore(self, y: np.ndarray) -> np.ndarray:
        """The pooled (B, C) as this layer's output (with the steps axis when keepdims)."""
        return np.expand_dims(y, self._time_axis) if self.keepdims else y

    def _squeeze(self, dy: np.ndarray) -> np.ndarray:
        """dL/dy as (B, C)."""
        return np.squeeze(dy, self._time_axis) if self.keepdims else dy


class GlobalMaxPooling1D(_GlobalPool1DBase):
    r"""``GlobalMaxPooling1D(data_format=None, keepdims=False)``: max over the steps axis. Masks are
    ignored (Keras does not support masking here, so masked steps take part in the max).

    Forward::  y[b,c] = max_t x[b,t,c]

    Backward (tf.reduce_max's gradient: ties share the gradient equally)::

        e[b,t,c] = [x[b,t,c] = y[b,c]],   n[b,c] = Σ_t e[b,t,c]
        dx[b,t,c] = e[b,t,c] / n[b,c] · dy[b,c]
    """

    def forward(self, x, training=False, mask=None):
        self._kernels = K_pool if _fast(self, x, None) else R_pool
        self._x = self._to_last(x)
        self._y = self._kernels.global_max_pool1d_forward(self._x)  # (B, C)
        return self._restore(self._y)

    def backward(self, dy):
        self.gradients = []
        dx = self._kernels.global_max_pool1d_backward(self._x, self._y, self._squeeze(dy))
        return self._from_last(dx)


class BroadcastGradient:
    """``backward_broadcast`` for a global average pooling, whose gradient dy / P (P the steps or pixels pooled) is
    the same row at every position of a sample: the Sequential chain's backward calls it instead of ``backward``
    when the layer below has ``accepts_broadcast_dy`` (Dense, Conv1D, Conv2D). The layer's ``backward`` returns
    dx as a read-only broadcast view (strides 0 along the pooled axes) while ``_broadcast_dx`` is set, where its
    last forward allows (fast mode, channels_last, no mask), so the layer below never reads P copies of dy; the
    call still goes through the protocol's checks of dy."""

    _broadcast_dx = False

    def backward_broadcast(self, dy):
        self._broadcast_dx = True
        try:
            return self.backward(dy)
        finally:
            self._broadcast_dx = False


class GlobalAveragePooling1D(BroadcastGradient, _GlobalPool1DBase):
    r"""``GlobalAveragePooling1D(data_format=None, keepdims=False)``: mean over the steps axis; with a
    boolean mask m (B, T) the masked mean (masked steps excluded; a fully masked row gives 0/0 = NaN,
    as in Keras). Outputs no mask.

    Forward::

        no mask:  y[b,c] = Σ_t x[b,t,c] / T
        mask:     n[b] = Σ_t m[b,t],   y[b,c] = Σ_t m[b,t] x[b,t,c] / n[b]

    Backward::

        no mask:  dx[b,t,c] = dy[b,c] / T
        mask:     dx[b,t,c] = m[b,t] · dy[b,c] / n[b]     (0 at masked steps, even when n[b] = 0)
    """

    supports_masking = True

    def compute_mask(self, x, mask):
        return None

    def forward(self, x, training=False, mask=None):
        axis = self._time_axis
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if mask is None:
            self._m = None
            self._steps = x.shape[axis]
            self._kernels = K_pool if _fast(self, x, None) else R_pool
            return self._restore(self._kernels.global_avg_pool1d_forward(self._to_last(x)))
        mask = np.asarray(mask)  # its shape (batch, steps) is checked before forward runs (Layer.check_mask)
        m = np.expand_dims(mask.astype(bool), 2 if axis == 1 else 1)  # (B, T, 1) or (B, 1, T)
        n = m.sum(axis=axis, keepdims=True).astype(x.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(m, x, 0).sum(axis=axis, keepdims=True) / n
        self._m, self._n = m, n
        return y if self.keepdims else np.squeeze(y, axis)

    def backward(self, dy):
        self.gradients = []
        if self._m is None:
            if self._broadcast_dx and self._kernels is K_pool and self.data_format == "channels_last":
                g = np.ascontiguousarray(self._squeeze(dy))
                g = g / g.dtype.type(self._steps)  # dy / T, as the kernel divides
                return np.broadcast_to(g[:, None, :], (g.shape[0], self._steps, g.shape[1]))
            return self._from_last(self._kernels.global_avg_pool1d_backward(self._squeeze(dy), self._steps))
        dy = self._keep(dy)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._m, dy / self._n, 0).astype(dy.dtype)
