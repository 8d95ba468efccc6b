r"""2-D pooling layers with Keras 3's names and defaults.

Symbols: x (B, H, W, C) channels-last (``data_format='channels_first'`` inputs (B, C, H, W) are transposed, as
Keras's TF backend does), pool size (PH, PW), strides (SH, SW) (``strides=None`` means the pool size),
y (B, Ho, Wo, C). Windows follow TF's padding rule per axis
(:func:`tinynn.kernels.reference.conv2d.conv_output_size` with K = pool size, d = 1)::

    valid   Ho = ⌊(H - PH)/SH⌋ + 1   (Ho < 1 raises ValueError)
    same    Ho = ⌈H/SH⌉, total = max((Ho-1)·SH + PH - H, 0), pt = ⌊total/2⌋ (the extra row at the bottom)

and window (i, j) holds the real pixels ``R_i × C_j`` (``R_i = [i·SH - pt, i·SH - pt + PH) ∩ [0, H)``, likewise
for columns): max pooling pads with -∞, average pooling divides by the number of real pixels (the pads are
excluded).

Code, reference first: :mod:`tinynn.kernels.reference.pooling2d` (the 'reference' kernel mode), fast:
:mod:`tinynn.kernels.pooling2d`. The global poolings are NumPy reductions, but for GlobalAveragePooling2D on
channels-last inputs in fast mode: the numba mean over the steps of :mod:`tinynn.kernels.pooling` on
(B, H·W, C).

Masks: none of these layers supports masking (Keras drops the mask).
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..kernels import pooling as K_pool
from ..kernels import pooling2d as K_pool2d
from ..kernels import warmup
from ..kernels.reference import conv2d as R_conv2d
from ..kernels.reference import pooling2d as R_pool2d
from .arguments import data_format as standardize_data_format
from .arguments import one_of, positive_int_tuple
from .base import InputSpec, _ForwardRecord, format_shape
from .conv2d import ImageLayer, _Conv2DBase
from .pooling import BroadcastGradient


class _Pool2DBase(ImageLayer):
    """Shared argument checks, data_format handling and geometry for the windowed poolings."""

    _config_keys = ("pool_size", "strides", "padding", "data_format")

    def __init__(self, pool_size, strides=None, padding: str = "valid", data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        who = self.who
        self.pool_size = positive_int_tuple(pool_size, 2, "pool_size", who)
        self.strides = self.pool_size if strides is None else positive_int_tuple(strides, 2, "strides", who)
        self.padding = one_of(padding, ("valid", "same"), "padding", who)
        self.data_format = standardize_data_format(data_format, who)
        self.input_spec = InputSpec(ndim=4)

    def _geometry(self, hw, shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """((pt, pl), (Ho, Wo)); a ValueError naming the layer and the shape if the output would be empty."""
        pads, out = [], []
        for axis, size, P, S in zip(("rows", "columns"), hw, self.pool_size, self.strides):
            before, n = R_conv2d.conv_output_size(int(size), P, S, 1, self.padding)
            if n < 1:
                raise ValueError(
                    f"{self.who}: input shape {format_shape(shape)} has {size} {axis}, fewer than pool_size="
                    f"{self.pool_size}, so padding={self.padding!r}, strides={self.strides} would give an empty output"
                )
            pads.append(before)
            out.append(n)
        return (pads[0], pads[1]), (out[0], out[1])

    def build(self, input_shape):
        self._check_rank(input_shape)
        hw = [input_shape[a] for a in self._spatial_axes]
        if None not in hw:
            self._geometry(hw, input_shape)

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self.build(x.shape)  # only checks: rank and size errors quote the real shape, before any kernel
        return x

    def check_input(self, x: np.ndarray) -> None:
        super().check_input(x)
        self._geometry([x.shape[a] for a in self._spatial_axes], x.shape)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        hw = [input_shape[a] for a in self._spatial_axes]
        out = (None, None) if None in hw else self._geometry(hw, input_shape)[1]
        if self.data_format == "channels_last":
            return (input_shape[0], *out, input_shape[3])
        return (input_shape[0], input_shape[1], *out)

    def _prepare(self, x):
        """x channels-last and C-contiguous, the windows' geometry, the kernel mode (reference also while the fast
        kernels compile: :mod:`tinynn.kernels.warmup`)."""
        self._reference = config.kernel_mode() == "reference" or not warmup.fast_ready(self, x)
        x = np.ascontiguousarray(self._to_last(x))
        self._pads, self._out_hw = self._geometry(x.shape[1:3], x.shape)
        self._in_hw = x.shape[1:3]
        return x


class MaxPooling2D(_Pool2DBase):
    r"""``MaxPooling2D(pool_size=(2, 2), strides=None, padding='valid', data_format=None)``.

    Forward::

        y[b,i,j,c] = max_{(h,w) ∈ R_i × C_j} x[b,h,w,c]

    Backward (each window's gradient goes to its first maximum in row-major order, as TF's MaxPoolGrad does)::

        dx[b,h,w,c] = Σ_{(i,j): (h,w) is the first maximum of window (i,j) in channel c} dy[b,i,j,c]
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid", data_format: str | None = None,
                 **kwargs):  # fmt: skip
        super().__init__(pool_size, strides, padding, data_format, **kwargs)

    #: (k, the layer below, its output's rows and columns) after that layer's training ``forward_into``: the windows'
    #: first maxima (:func:`tinynn.kernels.reference.pooling2d.max_pool2d_window_index`), kept instead of x
    _window_maxima = None

    def forward(self, x, training=False, mask=None):
        x = self._prepare(x)
        args = (self.pool_size, self.strides, self._pads, self._out_hw)
        y = R_pool2d.max_pool2d_forward(x, *args) if self._reference else K_pool2d.max_pool2d_forward(x, *args)
        self._x, self._y, self._window_maxima = x, y, None
        return self._from_last(y)

    def keep_window_maxima(self, y, first, x_like, below) -> None:
        """The forward of ``below`` (a Conv2D) and this pooling as one (``Conv2D.forward_into`` in training): y the
        pooling's output (B, Ho, Wo, C), ``first`` its windows' first maxima, ``x_like`` an array of its input's
        shape and dtype (the protocol's checks). The backward then runs from them, not from x."""
        self._reference, self._x, self._y = False, None, y
        self._window_maxima = (first, below, x_like.shape[1:3])
        self._forward_record = _ForwardRecord(y, x_like)

    def backward(self, dy):
        self.gradients = []
        dy = self._last(dy)
        if self._window_maxima is not None:  # each window's dy at its first maximum
            first, _, in_hw = self._window_maxima
            dx = R_pool2d.max_pool2d_scatter(dy, first, in_hw)
            self._release("_y", "_window_maxima")
            return self._from_last(dx)
        args = (self._x, self._y, dy, self.pool_size, self.strides, self._pads)
        dx = R_pool2d.max_pool2d_backward(*args) if self._reference else K_pool2d.max_pool2d_backward(*args)
        self._release("_x", "_y")
        return self._from_last(dx)

    def fuses_backward_with(self, below) -> bool:
        """Whether :meth:`backward_through` may run this pooling's backward together with ``below``'s: both ran
        their last forward on the fast kernels, channels-last, ``below`` is a Conv2D-family layer that fused its
        activation into its kernel (so its backward needs only its output a = act(z) and dz), a is this pooling's
        input (the same array), and the windows do not overlap; or ``below``'s training ``forward_into`` ran both."""
        if self._window_maxima is not None:
            return self._window_maxima[1] is below
        return (isinstance(below, _Conv2DBase) and below._fused is not None and not below._reference
                and not self._reference and self._x is not None and self._x is getattr(below, "_y", None)
                and self.data_format == "channels_last" and below.data_format == "channels_last"
                and K_pool2d.disjoint_windows(self.pool_size, self.strides)
                and K_pool2d.backward_to_logits_ready(self._x.dtype))  # fmt: skip

    def warm_up_also(self) -> None:
        """In a warm-up (:mod:`tinynn.kernels.warmup`), after the training forward: compile the kernel of
        :meth:`backward_through` too (the activation code is an argument: one compile serves them all)."""
        if not self._reference and K_pool2d.disjoint_windows(self.pool_size, self.strides):
            K_pool2d.max_pool2d_backward_to_logits(self._x.copy(), self._y, np.ones_like(self._y), self.pool_size,
                                                   self.strides, self._pads, 0, in_place=True)  # fmt: skip

    def backward_through(self, dy, below):
        """dx of the layer ``below`` this pooling (:meth:`fuses_backward_with`) for dy = ∂L/∂y, the two backward
        passes as one: with a = act(z) below's output (this pooling's x) and dx the pooling's gradient above,

            dz = act'(a) ⊙ dx,   db = Σ_{b,h,w} dz

        in one pass over a that writes dz over a (neither layer reads a again), then below's backward from dz
        (``backward_from_logits``). The pooling's dx, the size of a, is never formed: the step's peak memory is
        that much lower, and one pass over it is saved. After below's training ``forward_into`` (no a kept) dz is
        formed from y and the windows' first maxima instead, with the same bits
        (:func:`tinynn.kernels.pooling2d.max_pool2d_backward_from_index`)."""
        dy = self._last(self._checked_upstream(dy)[1])
        self.gradients = []
        if self._window_maxima is not None:  # from the windows' first maxima (below's training forward_into)
            first, _, in_hw = self._window_maxima
            dz, db = K_pool2d.max_pool2d_backward_from_index(self._y, first, dy, in_hw, below._fused)
            self._release("_y", "_window_maxima")
            return below.backward_from_logits(dz, db if below.use_bias else None)
        dz, db = K_pool2d.max_pool2d_backward_to_logits(self._x, self._y, dy, self.pool_size, self.strides,
                                                        self._pads, below._fused, in_place=True)  # fmt: skip
        self._release("_x", "_y")
        return below.backward_from_logits(dz, db if below.use_bias else None)


class AveragePooling2D(_Pool2DBase):
    r"""``AveragePooling2D(pool_size, strides=None, padding='valid', data_format=None)`` (pool_size is required, as
    in Keras).

    Forward, with n_ij = |R_i|·|C_j| the number of real pixels in window (i, j)::

        y[b,i,j,c] = Σ_{(h,w) ∈ R_i × C_j} x[b,h,w,c] / n_ij

    Backward::

        dx[b,h,w,c] = Σ_{(i,j): (h,w) ∈ R_i × C_j} dy[b,i,j,c] / n_ij
    """

    def __init__(self, pool_size, strides=None, padding: str = "valid", data_format: str | None = None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)

    def forward(self, x, training=False, mask=None):
        x = self._prepare(x)
        args = (self.pool_size, self.strides, self._pads, self._out_hw)
        y = R_pool2d.avg_pool2d_forward(x, *args) if self._reference else K_pool2d.avg_pool2d_forward(x, *args)
        return self._from_last(y)

    def backward(self, dy):
        self.gradients = []
        dy = self._last(dy)
        args = (dy, self._in_hw, self.pool_size, self.strides, self._pads)
        return self._from_last(R_pool2d.avg_pool2d_backward(*args) if self._reference
                               else K_pool2d.avg_pool2d_backward(*args))  # fmt: skip


class _GlobalPool2DBase(ImageLayer):
    _config_keys = ("data_format", "keepdims")

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format, self.who)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=4)

    def build(self, input_shape):
        self._check_rank(input_shape)

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self._check_rank(x.shape)  # quoting the real shape
        return x

    def check_input(self, x: np.ndarray) -> None:
        super().check_input(x)
        if any(x.shape[a] == 0 for a in self._spatial_axes):
            raise ValueError(f"{self.who} needs at least one pixel, got input shape {format_shape(x.shape)}")

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        if self.keepdims:
            return tuple(1 if i in self._spatial_axes else s for i, s in enumerate(input_shape))
        return tuple(s for i, s in enumerate(input_shape) if i not in self._spatial_axes)

    def _keep(self, dy: np.ndarray) -> np.ndarray:
        """dy (shape and dtype checked by the layer protocol) with the two spatial axes restored (size 1) for
        broadcasting."""
        return dy if self.keepdims else np.expand_dims(dy, self._spatial_axes)

    def _restore(self, y: np.ndarray) -> np.ndarray:
        """The pooled (B, C) as this layer's output (with the two spatial axes when keepdims)."""
        return np.expand_dims(y, self._spatial_axes) if self.keepdims else y


class GlobalMaxPooling2D(_GlobalPool2DBase):
    r"""``GlobalMaxPooling2D(data_format=None, keepdims=False)``: max over the rows and columns.

    Forward::  y[b,c] = max_{h,w} x[b,h,w,c]

    Backward (tf.reduce_max's gradient: ties share the gradient equally)::

        e[b,h,w,c] = [x[b,h,w,c] = y[b,c]],   n[b,c] = Σ_{h,w} e[b,h,w,c]
        dx[b,h,w,c] = e[b,h,w,c] / n[b,c] · dy[b,c]
    """

    def forward(self, x, training=False, mask=None):
        axes = self._spatial_axes
        y = x.max(axis=axes, keepdims=True)
        e = (x == y).astype(x.dtype)
        self._share = e / e.sum(axis=axes, keepdims=True)
        return y if self.keepdims else np.squeeze(y, axes)

    def backward(self, dy):
        self.gradients = []
        return self._share * self._keep(dy)


class GlobalAveragePooling2D(BroadcastGradient, _GlobalPool2DBase):
    r"""``GlobalAveragePooling2D(data_format=None, keepdims=False)``: mean over the rows and columns.

    Forward::  y[b,c] = Σ_{h,w} x[b,h,w,c] / (H·W)

    Backward::  dx[b,h,w,c] = dy[b,c] / (H·W)
    """

    _fast = False  # the last forward ran the numba mean (fast mode, channels_last)

    def forward(self, x, training=False, mask=None):
        self._in_shape = x.shape
        self._fast = (self.data_format == "channels_last" and config.kernel_mode() == "fast"
                      and warmup.fast_ready(self, x))  # fmt: skip
        if self._fast:
            B, H, W, C = x.shape
            return self._restore(K_pool.global_avg_pool1d_forward(x.reshape(B, H * W, C)))
        return x.mean(axis=self._spatial_axes, keepdims=self.keepdims)

    def backward(self, dy):
        self.gradients = []
        dy = self._keep(dy)
        H, W = (self._in_shape[a] for a in self._spatial_axes)
        dx = np.broadcast_to(dy / dy.dtype.type(H * W), self._in_shape)
        return dx if self._broadcast_dx and self._fast else dx.copy()
