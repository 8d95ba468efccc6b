r"""Conv2D, DepthwiseConv2D and SeparableConv2D with Keras 3's names, defaults and weight layouts.

Shared symbols: x (B, H, W, C) channels-last (``data_format='channels_first'`` inputs (B, C, H, W) are transposed
to channels-last, computed, and the outputs/gradients transposed back; the weights are the same either way).
(KH, KW) = kernel_size, (sh, sw) = strides, (dh, dw) = dilation_rate; per axis the receptive field is
eff = (K-1)·d + 1, and the padding before (pt rows, pl columns) and the output size (Ho, Wo) follow TF's rule
(:func:`tinynn.kernels.reference.conv2d.conv_output_size`)::

    valid   pt = 0,                          Ho = ⌊(H - eff)/sh⌋ + 1   (Ho < 1 raises ValueError)
    same    Ho = ⌈H/sh⌉, total = max((Ho-1)·sh + eff - H, 0), pt = ⌊total/2⌋ (the extra row at the bottom)

``xp`` is x with that zero padding. The convolution itself is a cross-correlation:
``conv(x, Wk)[b,i,j,f] = Σ_{p,q,c} xp[b, i·sh + p·dh, j·sw + q·dw, c] Wk[p,q,c,f]``.

Code, reference first: :mod:`tinynn.kernels.reference.conv2d` (``conv2d_forward``, ``conv2d_backward_data``,
``conv2d_backward_filter`` and their depthwise forms), which the 'reference' kernel mode runs together with the
NumPy activation; fast: :mod:`tinynn.kernels.conv2d` (im2col + one GEMM per batch chunk for Conv2D, numba loops for
the depthwise part) and the fused bias+activation of :mod:`tinynn.kernels.bias_activation` (the 'fast' mode).

Masks: none of these layers supports masking (Keras drops the mask), so ``compute_mask`` returns None.
"""

from __future__ import annotations

import numpy as np

from .. import activations, config
from .. import initializers as _init
from ..kernels import conv2d as K_conv2d
from ..kernels import pooling2d as K_pool2d
from ..kernels import warmup
from ..kernels.fastmath import LINEAR, RELU, activation_code
from ..kernels.reference import conv2d as R_conv2d
from ..kernels.reference import pooling2d as R_pool2d
from .arguments import data_format as standardize_data_format
from .arguments import one_of, positive_int, positive_int_tuple
from .base import InputSpec, Layer, _ForwardRecord, format_shape
from .bias_activation import BiasActivationTail


class ImageLayer(Layer):
    """A layer on images with a ``data_format``: channels_last (B, H, W, C) or channels_first (B, C, H, W).

    The kernels work channels-last; ``_to_last`` / ``_from_last`` transpose at the layer's edges."""

    data_format = "channels_last"

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    @property
    def _spatial_axes(self) -> tuple[int, int]:
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _to_last(self, a: np.ndarray) -> np.ndarray:
        return a if self.data_format == "channels_last" else a.transpose(0, 2, 3, 1)

    def _from_last(self, a: np.ndarray) -> np.ndarray:
        return a if self.data_format == "channels_last" else a.transpose(0, 3, 1, 2)

    def _check_rank(self, shape) -> None:
        if len(shape) != 4:
            layout = "(batch, rows, cols, channels)" if self.data_format == "channels_last" else \
                "(batch, channels, rows, cols)"  # fmt: skip
            raise ValueError(
                f"{self.who} expects inputs of rank 4 {layout} for data_format={self.data_format!r}, got shape "
                f"{format_shape(shape)}"
            )

    def _release(self, *names: str) -> None:
        """Fast mode: the backward is done, so drop the forward's cached arrays ``names`` (set to None) and mark the
        forward consumed (a further backward needs a new forward). Between train steps the layers then hold no
        activations: on M7 that was ~200 MB held into the next step's forward. The reference mode keeps its cache
        (it allows repeated backward calls)."""
        if getattr(self, "_reference", False):
            return
        for name in names:
            setattr(self, name, None)
        self.consume_forward()

    def _last(self, dy: np.ndarray) -> np.ndarray:
        """An upstream gradient (checked by the layer protocol: the forward output's shape and dtype) channels-last
        and C-contiguous, in the layer's dtype."""
        return np.ascontiguousarray(self._to_last(dy), dtype=self.dtype)


class _Conv2DBase(ImageLayer, BiasActivationTail):
    """Argument checks, geometry and data_format handling shared by the family; the bias/activation tail is
    :class:`tinynn.layers.bias_activation.BiasActivationTail` (Conv2D and SeparableConv2D may fuse the activation
    into the convolution kernel: ``_fused``)."""

    #: (p, k) of a training :meth:`Conv2D.forward_into`: the max pooling's output and its windows' first maxima,
    #: kept instead of this layer's output
    _window_maxima = None

    def _dy_last(self, dy: np.ndarray) -> np.ndarray:
        return self._last(dy)

    def __init__(self, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias, **kwargs):
        super().__init__(**kwargs)
        who = self.who
        self.kernel_size = positive_int_tuple(kernel_size, 2, "kernel_size", who)
        self.strides = positive_int_tuple(strides, 2, "strides", who)
        self.dilation_rate = positive_int_tuple(dilation_rate, 2, "dilation_rate", who)
        self.padding = one_of(padding, ("valid", "same"), "padding", who)
        self.data_format = standardize_data_format(data_format, who)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self._ws: dict = {}  # reusable scratch buffers of the conv kernels (see tinynn.kernels.conv2d)

    # ------------------------------------------------------------------ geometry
    def _geometry(self, hw, shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """((pt, pl), (Ho, Wo)) for an input of ``hw`` rows and columns; a ValueError naming the layer if the
        padded input is smaller than the kernel's receptive field (an empty output)."""
        pads, out = [], []
        for axis, size, k, s, d in zip(("rows", "columns"), hw, self.kernel_size, self.strides, self.dilation_rate):
            before, n = R_conv2d.conv_output_size(int(size), k, s, d, self.padding)
            if n < 1:
                eff = (k - 1) * d + 1
                raise ValueError(
                    f"{self.who}: input shape {format_shape(shape)} has {size} {axis}, but kernel_size="
                    f"{self.kernel_size} with dilation_rate={self.dilation_rate} has a receptive field of {eff} "
                    f"{axis}, so padding={self.padding!r}, strides={self.strides} would give an empty output; the "
                    f"input needs >= {eff} {axis}"
                )
            pads.append(before)
            out.append(n)
        return (pads[0], pads[1]), (out[0], out[1])

    def _check_shape(self, input_shape) -> int:
        """Rank 4 with a known channel axis; returns the channel count (and checks the size if known)."""
        self._check_rank(input_shape)
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(f"{self.who} needs a known channel axis, got input shape {format_shape(input_shape)}")
        hw = [input_shape[a] for a in self._spatial_axes]
        if None not in hw:
            self._geometry(hw, input_shape)
        return int(channels)

    def _spec(self, channels: int) -> InputSpec:
        return InputSpec(ndim=4, axes={self._channel_axis: channels})

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self._check_shape(x.shape)  # rank and size errors quote the real shape, before build and kernels
        return x

    def check_input(self, x: np.ndarray) -> None:
        super().check_input(x)
        self._geometry([x.shape[a] for a in self._spatial_axes], x.shape)

    def _output_shape(self, input_shape, out_channels: int):
        self._check_rank(input_shape)
        hw = [input_shape[a] for a in self._spatial_axes]
        out = (None, None) if None in hw else self._geometry(hw, input_shape)[1]
        if self.data_format == "channels_last":
            return (input_shape[0], *out, out_channels)
        return (input_shape[0], out_channels, *out)

    def _prepare(self, x: np.ndarray):
        """x channels-last and C-contiguous (kept for the backward), its padding and output size, the kernel mode:
        the reference kernels in reference mode and while the fast ones compile (:mod:`tinynn.kernels.warmup`)."""
        self._reference = config.kernel_mode() == "reference" or not warmup.fast_ready(self, x)
        x = np.ascontiguousarray(self._to_last(x))
        self._x = x
        self._pads, self._out_hw = self._geometry(x.shape[1:3], x.shape)
        return x

    def _dz(self, dz) -> np.ndarray:
        """dL/dz channels-last, C-contiguous, in the layer's dtype (activations may hand back a wider dtype)."""
        return self._last(dz)

    def _bias_gradient(self, dz: np.ndarray, db: np.ndarray | None) -> np.ndarray:
        """db = Σ_{b,i,j} dz (dz channels-last), unless the fused backward already computed it."""
        if db is not None:
            return db
        return dz.reshape(-1, dz.shape[-1]).sum(axis=0, dtype=np.float64).astype(self.dtype)


def _max_pools_after(conv, layer) -> bool:
    """Whether ``layer`` is a 2×2, stride-2, unpadded MaxPooling2D that the Conv2D-family layer ``conv`` can take
    on in its ``forward_into``: both channels-last in the same dtype, ``conv`` with a linear or ReLU activation."""
    from .pooling2d import MaxPooling2D

    return (type(layer) is MaxPooling2D and layer.pool_size == (2, 2) and layer.strides == (2, 2)
            and layer.padding == "valid" and layer.data_format == conv.data_format == "channels_last"
            and layer.dtype == conv.dtype and activation_code(conv.activation) in (LINEAR, RELU))  # fmt: skip


#: what a Conv2D-family forward caches for its backward (released after a fast-mode backward)
_CONV_CACHE = ("_x", "_y", "_z", "_z_bias", "_window_maxima")


class Conv2D(_Conv2DBase):
    r"""2-D convolution: ``Conv2D(filters, kernel_size, strides=(1, 1), padding='valid', data_format=None,
    dilation_rate=(1, 1), groups=1, activation=None, use_bias=True, kernel_initializer='glorot_uniform',
    bias_initializer='zeros')``.

    Shapes: x (B, H, W, C), kernel Wk (KH, KW, C/G, F), bias b (F,), y (B, Ho, Wo, F); G = groups, Cg = C/G,
    Fg = F/G, filter f belongs to group g(f) = f // Fg and reads input channels [g·Cg, (g+1)·Cg).

    Forward::

        z[b,i,j,f] = b[f] + Σ_{p,q} Σ_c xp[b, i·sh + p·dh, j·sw + q·dw, g(f)·Cg + c] · Wk[p,q,c,f]
        y = act(z)

    Backward, given dy (B, Ho, Wo, F)::

        dz = act'(z) ⊙ dy
        db[f]       = Σ_{b,i,j} dz[b,i,j,f]                                                 (F,)
        dWk[p,q,c,f] = Σ_{b,i,j} xp[b, i·sh + p·dh, j·sw + q·dw, g(f)·Cg + c] · dz[b,i,j,f]    (KH, KW, Cg, F)
        dx[b,h,w,g·Cg+c] = Σ_{(i,j,p,q): i·sh+p·dh-pt = h, j·sw+q·dw-pl = w} Σ_{f ∈ g} dz[b,i,j,f] · Wk[p,q,c,f]

    Keras's errors: strides > 1 together with dilation_rate > 1, filters or input channels not divisible by
    groups, an empty output (input smaller than the receptive field).
    """

    #: a dy broadcast over each image's pixels (GlobalAveragePooling2D.backward_broadcast): the fused backward reads
    #: one row per image (tinynn.kernels.conv2d.conv2d_backward_fused)
    accepts_broadcast_dy = True
    _config_keys = (
        "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
        "activation", "use_bias", "kernel_initializer", "bias_initializer",
    )  # fmt: skip

    def _dy_last(self, dy: np.ndarray) -> np.ndarray:
        last = self._to_last(dy)
        if (self._fused is not None and last.dtype == self.dtype and last.strides[1] == 0
                and last.strides[2] == 0):  # fmt: skip
            return last  # a mean's gradient as a view: the fused backward reads one row per image
        return self._last(dy)

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate=(1, 1),
        groups: int = 1,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias, **kwargs)
        who = self.who
        self.filters = positive_int(filters, "filters", who)
        self.groups = positive_int(groups, "groups", who)
        if self.filters % self.groups:
            raise ValueError(f"{who}: filters={self.filters} must be divisible by groups={self.groups}")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{who}: strides > 1 not supported in conjunction with dilation_rate > 1 (as in Keras); got "
                f"strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)

    def build(self, input_shape):
        channels = self._check_shape(input_shape)
        if channels % self.groups:
            raise ValueError(
                f"{self.who}: the {channels} input channels must be divisible by groups={self.groups} "
                f"(input shape {format_shape(input_shape)})"
            )
        self.add_weight("kernel", (*self.kernel_size, channels // self.groups, self.filters), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)
        self.input_spec = self._spec(channels)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    def forward(self, x, training=False, mask=None):
        """z = conv(x, Wk) + b, y = act(z). Fast mode: the bias and a numba activation run inside the conv kernel,
        chunk by chunk while the chunk is in the cache (except sigmoid, whose logits the models' loss shortcut
        reads: that one keeps z)."""
        x = self._prepare(x)
        args = (self.strides, self.dilation_rate, self._pads, self._out_hw, self.groups)
        bias = self.bias if self.use_bias else None
        self._fused = self._window_maxima = None
        if self._reference:
            return self._finish(R_conv2d.conv2d_forward(x, self.kernel, *args), bias)
        code = activation_code(self.activation)
        if code is None or self.activation.name == "sigmoid":
            z = K_conv2d.conv2d_forward(x, self.kernel, *args, workspace=self._ws)
            return self._finish(z, bias)
        self._y = K_conv2d.conv2d_forward(x, self.kernel, *args, workspace=self._ws, bias=bias, activation=code)
        self._z = self._z_bias = None
        self._fused = code
        return self._from_last(self._y)

    def pools_with(self, layer) -> bool:
        """Whether ``layer`` (the next one) is a GlobalAveragePooling2D that :meth:`forward_pooled` can take on."""
        from .pooling2d import GlobalAveragePooling2D

        return (type(layer) is GlobalAveragePooling2D and layer.data_format == self.data_format
                and layer.dtype == self.dtype)  # fmt: skip

    def forward_pooled(self, x, pool) -> np.ndarray | None:
        """Inference only: ``pool(self(x))`` for ``pool`` a GlobalAveragePooling2D (:meth:`pools_with`), without the
        (B, Ho, Wo, F) output: p[b,f] = (1 / (Ho·Wo)) Σ_{i,j} act(z + b)[b,i,j,f], each chunk of the convolution
        pooled while it is in the cache (:func:`tinynn.kernels.conv2d.conv2d_forward_pooled`). Neither layer keeps
        a forward to run a backward from. None (nothing done: call the two layers) unless the fast kernels run the
        convolution by im2col (one group, no Winograd) with a numba activation."""
        x = self.accept_input(x)
        code = activation_code(self.activation)
        if (code is None or self.groups != 1 or config.kernel_mode() == "reference"
                or K_conv2d.uses_winograd(self.kernel.shape, self.strides, self.dilation_rate, self.groups)):
            return None
        x = self._prepare(x)
        if self._reference:
            return None
        self._x = None
        self._forward_record = pool._forward_record = None  # a backward now raises (no forward to run it from)
        p = K_conv2d.conv2d_forward_pooled(x, self.kernel, self.strides, self.dilation_rate, self._pads,
                                           self._out_hw, 1, workspace=self._ws,
                                           bias=self.bias if self.use_bias else None, activation=code)  # fmt: skip
        return pool._restore(p)  # with the spatial axes when keepdims

    def feeds(self, layer) -> bool:
        """Whether ``layer`` (the next one) is a 2×2, stride-2, unpadded MaxPooling2D that :meth:`forward_into` may
        take on: both channels-last in the same dtype, this layer with a linear or ReLU activation (whether the
        kernels take the convolution, which depends on the input's channels, is asked in the call)."""
        return _max_pools_after(self, layer)

    def forward_into(self, x, pool, training: bool = False) -> np.ndarray | None:
        """``pool(self(x))`` for ``pool`` the MaxPooling2D of :meth:`feeds`, without writing out the (B, Ho, Wo, F)
        output: Winograd forms each pooling window as one block of its outputs, im2col pools each chunk of output
        rows while it is in the cache (:func:`tinynn.kernels.conv2d.conv2d_forward_max_pooled`: Winograd's the bits
        of the two layers' calls, im2col's those numbers up to the products' rounding). In inference neither layer
        keeps a forward to run a backward from. In training the pair keeps, instead of this layer's output a, the
        pooling's output p and each window's first maximum k (one byte per window and channel, the tap 2r + s): a
        at a window's first maximum is p, and the gradient reaches no other pixel, so the pair's backward
        (:meth:`MaxPooling2D.backward_through`) forms dz = act'(a) ⊙ dx from p, k and dy alone, the bits of the two
        layers' backward. None (nothing done: call the two layers) in reference mode, while the kernels compile, for
        a grouped convolution or one by F(2, 3) along the width, and for an output without a whole window."""
        # the pairing asked again: the layers' settings may have changed since the chain chose its pairs
        if config.kernel_mode() == "reference" or not _max_pools_after(self, pool):
            return None
        x = self.accept_input(x)
        by_winograd = K_conv2d.uses_winograd(self.kernel.shape, self.strides, self.dilation_rate, self.groups)
        if not K_conv2d.max_pooled_ready(self.dtype, by_winograd, index=training):
            return None
        given, x = x, self._prepare(x)
        if self._reference:
            return None
        code, bias = activation_code(self.activation), self.bias if self.use_bias else None
        out = K_conv2d.conv2d_forward_max_pooled(x, self.kernel, self.strides, self.dilation_rate, self._pads,
                                                 self._out_hw, self.groups, self._ws, bias, code,
                                                 index=training)  # fmt: skip
        if out is None:
            return None
        if not training:
            self._x = self._window_maxima = pool._window_maxima = None
            self._forward_record = pool._forward_record = None  # a backward now raises (no forward to run it from)
            return out
        p, first = out
        a_like = np.broadcast_to(np.zeros((), self.dtype), (x.shape[0], *self._out_hw, self.filters))  # a's shape
        self._y = self._z = self._z_bias = None
        self._fused, self._window_maxima = code, (p, first)
        self._forward_record = _ForwardRecord(a_like, given)  # dy of a's shape, dx of x's (the protocol's checks)
        pool.keep_window_maxima(p, first, a_like, self)
        return p

    def warm_up_also(self) -> None:
        """In a warm-up (:mod:`tinynn.kernels.warmup`), after the training forward: compile the kernel of
        :meth:`forward_into`'s one pass with a max pooling too (a linear or ReLU layer, channels-last)."""
        if (self._fused in (LINEAR, RELU) and not self._reference and self.data_format == "channels_last"
                and min(self._out_hw) >= 2):  # fmt: skip
            for index in (False, True):
                out = K_conv2d.conv2d_forward_max_pooled(self._x, self.kernel, self.strides, self.dilation_rate,
                                                         self._pads, self._out_hw, self.groups,
                                                         bias=self.bias if self.use_bias else None,
                                                         activation=self._fused, index=index)  # fmt: skip
            if out is not None:  # and the pair's backward from the windows' first maxima
                K_pool2d.max_pool2d_backward_from_index(*out, np.zeros_like(out[0]), self._out_hw, self._fused)

    def _backward_fused(self, dy):
        """dz = act'(y) ⊙ dy, db = Σ dz and the conv backward, chunk by chunk in one kernel (dy channels-last). After
        a training :meth:`forward_into` (a backward not taken with the pooling's, dy its dx: 0 off the windows' first
        maxima) y is formed as p at those pixels and 0 elsewhere, which gives every pixel the same dz."""
        if self._y is None and self._window_maxima is not None:
            self._y = R_pool2d.max_pool2d_scatter(*self._window_maxima, self._out_hw)
        dx, dW, db = K_conv2d.conv2d_backward_fused(
            self._x, self.kernel, self._y, dy, self._fused, self.strides, self.dilation_rate, self._pads, self.groups,
            need_dx=self.input_gradient_needed, workspace=self._ws,
        )  # fmt: skip
        self.gradients = [dW, db] if self.use_bias else [dW]
        self._release(*_CONV_CACHE)
        return self._dx(dx)

    def backward_from_logits(self, dz, db=None):
        """Backward pass from dL/dz (in data_format; ``db`` = Σ dz if already known): fills [dWk, db], returns dx."""
        dz = self._dz(dz)
        geometry = (self.strides, self.dilation_rate, self._pads, self.groups)
        if self._reference:
            dx = R_conv2d.conv2d_backward_data(dz, self.kernel, self._x.shape[1:3], *geometry) \
                if self.input_gradient_needed else None  # fmt: skip
            dW = R_conv2d.conv2d_backward_filter(self._x, dz, self.kernel_size, *geometry)
        else:
            dx, dW = K_conv2d.conv2d_backward(self._x, self.kernel, dz, *geometry,
                                              need_dx=self.input_gradient_needed, workspace=self._ws)  # fmt: skip
        self.gradients = [dW, self._bias_gradient(dz, db)] if self.use_bias else [dW]
        self._release(*_CONV_CACHE)
        return self._dx(dx)


class _DepthwiseMixin:
    """The depthwise convolution u = Σ_{p,q} xp · D (no bias) through the kernels of the current mode."""

    def _depthwise(self, x, D):
        args = (self.strides, self.dilation_rate, self._pads, self._out_hw)
        if self._reference:
            return R_conv2d.depthwise_conv2d_forward(x, D, *args)
        return K_conv2d.depthwise_conv2d_forward(x, D, *args)

    def _depthwise_backward(self, D, du):
        """(dx or None, dD) for du = ∂L/∂u (channels-last)."""
        geometry = (self.strides, self.dilation_rate, self._pads)
        need_dx = self.input_gradient_needed
        if self._reference:
            dx = R_conv2d.depthwise_conv2d_backward_data(du, D, self._x.shape[1:3], *geometry) if need_dx else None
            return dx, R_conv2d.depthwise_conv2d_backward_filter(self._x, du, self.kernel_size, D.shape[3], *geometry)
        return K_conv2d.depthwise_conv2d_backward(self._x, D, du, *geometry, need_dx=need_dx)


class DepthwiseConv2D(_DepthwiseMixin, _Conv2DBase):
    r"""Depthwise 2-D convolution: ``DepthwiseConv2D(kernel_size, strides=(1, 1), padding='valid',
    depth_multiplier=1, data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
    depthwise_initializer='glorot_uniform', bias_initializer='zeros')``.

    Shapes: x (B, H, W, C), kernel D (KH, KW, C, M) with M = depth_multiplier, bias b (C·M,), y (B, Ho, Wo, C·M).
    Output channel c·M + m filters input channel c only.

    Forward::

        z[b,i,j,c·M+m] = b[c·M+m] + Σ_{p,q} xp[b, i·sh + p·dh, j·sw + q·dw, c] · D[p,q,c,m]
        y = act(z)

    Backward, given dy::

        dz = act'(z) ⊙ dy
        db[c·M+m]  = Σ_{b,i,j} dz[b,i,j,c·M+m]
        dD[p,q,c,m] = Σ_{b,i,j} xp[b, i·sh + p·dh, j·sw + q·dw, c] · dz[b,i,j,c·M+m]
        dx[b,h,w,c] = Σ_{(i,j,p,q) reading (h,w)} Σ_m dz[b,i,j,c·M+m] · D[p,q,c,m]

    As in Keras 3, strides > 1 and dilation_rate > 1 may be combined here (Keras runs the dilated convolution
    at stride 1 and subsamples, which is the formula above).
    """

    _config_keys = (
        "kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate",
        "activation", "use_bias", "depthwise_initializer", "bias_initializer",
    )  # fmt: skip

    def __init__(
        self,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias: bool = True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias, **kwargs)
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", self.who)
        self.depthwise_initializer = _init.get(depthwise_initializer)
        self.bias_initializer = _init.get(bias_initializer)

    def build(self, input_shape):
        channels = self._check_shape(input_shape)
        self.add_weight("kernel", (*self.kernel_size, channels, self.depth_multiplier), self.depthwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (channels * self.depth_multiplier,), self.bias_initializer)
        self.input_spec = self._spec(channels)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        return self._output_shape(input_shape, input_shape[self._channel_axis] * self.depth_multiplier)

    def forward(self, x, training=False, mask=None):
        x = self._prepare(x)
        return self._finish(self._depthwise(x, self.kernel), self.bias if self.use_bias else None)

    def backward_from_logits(self, dz, db=None):
        """Backward pass from dL/dz (in data_format; ``db`` = Σ dz if already known): fills [dD, db], returns dx."""
        dz = self._dz(dz)
        dx, dD = self._depthwise_backward(self.kernel, dz)
        self.gradients = [dD, self._bias_gradient(dz, db)] if self.use_bias else [dD]
        self._release(*_CONV_CACHE)
        return self._dx(dx)


class SeparableConv2D(_DepthwiseMixin, _Conv2DBase):
    r"""Depthwise-separable 2-D convolution: ``SeparableConv2D(filters, kernel_size, strides=(1, 1),
    padding='valid', data_format=None, dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
    depthwise_initializer='glorot_uniform', pointwise_initializer='glorot_uniform', bias_initializer='zeros')``.

    Shapes: x (B, H, W, C), depthwise kernel D (KH, KW, C, M), pointwise kernel P (1, 1, C·M, F), bias b (F,),
    u (B, Ho, Wo, C·M) the depthwise output (no bias in between, as in Keras), y (B, Ho, Wo, F).

    Forward::

        u[b,i,j,c·M+m] = Σ_{p,q} xp[b, i·sh + p·dh, j·sw + q·dw, c] · D[p,q,c,m]     (DepthwiseConv2D, no bias)
        z = u @ P[0,0] + b                                                           (one GEMM over B·Ho·Wo rows)
        y = act(z)

    Backward, given dy::

        dz = act'(z) ⊙ dy
        db = Σ_{b,i,j} dz                                   (F,)
        dP[0,0] = Σ_{b,i,j} u[b,i,j]ᵀ dz[b,i,j]             (C·M, F)
        du = dz @ P[0,0]ᵀ                                   (B, Ho, Wo, C·M)
        dD[p,q,c,m] = Σ_{b,i,j} xp[b, i·sh + p·dh, j·sw + q·dw, c] · du[b,i,j,c·M+m]
        dx[b,h,w,c] = Σ_{(i,j,p,q) reading (h,w)} Σ_m du[b,i,j,c·M+m] · D[p,q,c,m]

    strides > 1 and dilation_rate > 1 may be combined (as in Keras 3).
    """

    _config_keys = (
        "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier",
        "activation", "use_bias", "depthwise_initializer", "pointwise_initializer", "bias_initializer",
    )  # fmt: skip

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate=(1, 1),
        depth_multiplier: int = 1,
        activation=None,
        use_bias: bool = True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias, **kwargs)
        self.filters = positive_int(filters, "filters", self.who)
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", self.who)
        self.depthwise_initializer = _init.get(depthwise_initializer)
        self.pointwise_initializer = _init.get(pointwise_initializer)
        self.bias_initializer = _init.get(bias_initializer)

    def build(self, input_shape):
        channels = self._check_shape(input_shape)
        M = self.depth_multiplier
        self.add_weight("depthwise_kernel", (*self.kernel_size, channels, M), self.depthwise_initializer)
        self.add_weight("pointwise_kernel", (1, 1, channels * M, self.filters), self.pointwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)
        self.input_spec = self._spec(channels)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    def forward(self, x, training=False, mask=None):
        """u = depthwise(x; D), z = u P + b, y = act(z). Fast mode: the bias and a numba activation run inside the
        1×1 product's pieces (except sigmoid, whose logits the models' loss shortcut reads: that one keeps z); out of
        training, image by image with each image's u used while it is in the cache and not kept
        (:func:`tinynn.kernels.conv2d.separable_conv2d_forward`: a backward forms u again)."""
        x = self._prepare(x)
        P = self.pointwise_kernel[0, 0]
        bias = self.bias if self.use_bias else None
        self._fused = None
        code = None if self._reference else activation_code(self.activation)
        fused = code is not None and self.activation.name != "sigmoid"
        if fused and not training and K_conv2d.separable_ready(self.dtype):
            self._u, self._z, self._z_bias, self._fused = None, None, None, code
            self._y = K_conv2d.separable_conv2d_forward(x, self.depthwise_kernel, P, *self._geometry_args(), bias,
                                                        code, workspace=self._ws)  # fmt: skip
            return self._from_last(self._y)
        u = self._u = self._depthwise(x, self.depthwise_kernel)
        if self._reference:
            return self._finish((u.reshape(-1, u.shape[-1]) @ P).reshape(*u.shape[:3], self.filters), bias)
        if not fused:
            return self._finish(K_conv2d.pointwise_forward(u, P), bias)
        self._y = K_conv2d.pointwise_forward(u, P, bias, code)
        self._z = self._z_bias = None
        self._fused = code
        return self._from_last(self._y)

    def _geometry_args(self) -> tuple:
        return (self.strides, self.dilation_rate, self._pads, self._out_hw)

    def _depthwise_output(self) -> np.ndarray:
        """u of the last forward (formed again from x when that forward did not keep it)."""
        if self._u is None:
            self._u = self._depthwise(self._x, self.depthwise_kernel)
        return self._u

    def feeds(self, layer) -> bool:
        """Whether ``layer`` (the next one) is a 2×2, stride-2, unpadded MaxPooling2D that :meth:`forward_into` can
        take on (both channels-last in the same dtype, this layer with a linear or ReLU activation)."""
        return _max_pools_after(self, layer)

    def forward_into(self, x, pool, training: bool = False) -> np.ndarray | None:
        """Inference only: ``pool(self(x))`` for ``pool`` the MaxPooling2D of :meth:`feeds`, image by image, neither
        u nor y written out (:func:`tinynn.kernels.conv2d.separable_conv2d_forward` with ``max_pooled``). Neither
        layer keeps a forward to run a backward from. None (nothing done: call the two layers) in training, in
        reference mode, while the kernel compiles, or for an output without a whole window."""
        if (training or config.kernel_mode() == "reference" or not _max_pools_after(self, pool)
                or not K_conv2d.separable_ready(self.dtype)):  # fmt: skip
            return None
        x = self._prepare(self.accept_input(x))
        if self._reference or min(self._out_hw) < 2:
            return None
        p = K_conv2d.separable_conv2d_forward(x, self.depthwise_kernel, self.pointwise_kernel[0, 0],
                                              *self._geometry_args(), self.bias if self.use_bias else None,
                                              activation_code(self.activation), max_pooled=True,
                                              workspace=self._ws)  # fmt: skip
        self._x = self._u = None
        self._forward_record = pool._forward_record = None  # a backward now raises (no forward to run it from)
        return p

    def _backward_fused(self, dy):
        """dz = act'(y) ⊙ dy and db inside the 1×1 product's backward pieces, then the depthwise backward; image by
        image when its kernel is compiled (:func:`tinynn.kernels.conv2d.separable_conv2d_backward`: du never
        written out)."""
        u, P = self._depthwise_output(), self.pointwise_kernel[0, 0]
        if K_conv2d.separable_backward_ready(self.dtype):
            dx, dD, dP, db = K_conv2d.separable_conv2d_backward(
                self._x, self.depthwise_kernel, P, u, dy, self._y, self._fused, self.strides, self.dilation_rate,
                self._pads, need_dx=self.input_gradient_needed, workspace=self._ws)  # fmt: skip
        else:
            du, dP, db = K_conv2d.pointwise_backward(u, P, dy, self._y, self._fused)
            dx, dD = self._depthwise_backward(self.depthwise_kernel, du)
        self.gradients = [dD, dP[None, None], db] if self.use_bias else [dD, dP[None, None]]
        self._release(*_CONV_CACHE, "_u")
        return self._dx(dx)

    def backward_from_logits(self, dz, db=None):
        """Backward pass from dL/dz (in data_format; ``db`` = Σ dz if already known): fills [dD, dP, db], returns dx."""
        dz = self._dz(dz)
        P = self.pointwise_kernel[0, 0]
        u = self._depthwise_output()
        if self._reference:
            u_rows, dz_rows = u.reshape(-1, P.shape[0]), dz.reshape(-1, self.filters)
            du, dP = (dz_rows @ P.T).reshape(u.shape), u_rows.T @ dz_rows
            dx, dD = self._depthwise_backward(self.depthwise_kernel, du)
        elif K_conv2d.separable_backward_ready(self.dtype):  # image by image, du never written out
            dx, dD, dP, _ = K_conv2d.separable_conv2d_backward(
                self._x, self.depthwise_kernel, P, u, dz, None, None, self.strides, self.dilation_rate, self._pads,
                need_dx=self.input_gradient_needed, workspace=self._ws)  # fmt: skip
        else:
            du, dP = K_conv2d.pointwise_backward(u, P, dz)
            dx, dD = self._depthwise_backward(self.depthwise_kernel, du)
        dP = dP[None, None]
        grads = [dD, dP]
        if self.use_bias:
            grads.append(self._bias_gradient(dz, db))
        self.gradients = grads
        self._release(*_CONV_CACHE, "_u")
        return self._dx(dx)
