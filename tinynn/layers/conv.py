r"""Conv1D, DepthwiseConv1D and SeparableConv1D with Keras 3's names, defaults and weight layouts.

Shared symbols: x (B, L, C) channels-last (``data_format='channels_first'`` inputs (B, C, L) are
transposed to channels-last, computed, and the outputs/gradients transposed back — TF cannot run a
channels-first Conv1D on CPU at all, so Keras has no answer there; weights are the same either way).
K = kernel_size, s = strides, d = dilation_rate, eff = (K-1)·d + 1 the receptive field, pl the left
padding and Lo the output length from :func:`tinynn.kernels.conv.conv_padding`:

    valid   pl = 0,                         Lo = ⌊(L - eff)/s⌋ + 1   (Lo < 1 raises ValueError)
    same    Lo = ⌈L/s⌉, total = max((Lo-1)·s + eff - L, 0), pl = ⌊total/2⌋ (extra pad on the right)
    causal  pl = (K-1)·d, no right pad,      Lo = ⌈L/s⌉               (Conv1D only, as in Keras)

``xp`` is x padded with pl zeros on the left (and the rest on the right). The convolution itself is a
cross-correlation: ``conv(x, W)[b,t,f] = Σ_k Σ_c xp[b, t·s+k·d, c] W[k,c,f]``.

Code, reference first: :func:`tinynn.kernels.reference.conv.conv1d_forward`, ``conv1d_backward_data`` (dx) and
``conv1d_backward_filter`` (dW), and :mod:`tinynn.kernels.reference.bias_activation` for the bias and activation
tail (the 'reference' kernel mode runs these); fast: :func:`tinynn.kernels.conv.conv1d_forward` /
``conv1d_backward`` (im2col or shift lowering to one GEMM per batch chunk) and the fused
:mod:`tinynn.kernels.bias_activation` (the default 'fast' mode).

Masks: none of these layers supports masking (Keras 3 drops the mask with a warning), so
``compute_mask`` returns None.
"""

from __future__ import annotations

import numpy as np

from .. import activations, config
from .. import initializers as _init
from ..kernels import blas as K_blas
from ..kernels import conv as K_conv
from ..kernels import conv2d as K_conv2d
from ..kernels import warmup
from ..kernels import winograd1d as K_winograd1d
from ..kernels.fastmath import LINEAR, SIGMOID, activation_code
from ..kernels.reference import conv as R_conv
from .arguments import data_format as standardize_data_format
from .arguments import one_of, positive_int, positive_int_tuple
from .base import InputSpec, Layer, _ForwardRecord, format_shape
from .bias_activation import BiasActivationTail


class DataFormatLayer(Layer):
    """A 1-D layer with a ``data_format``: channels_last (B, L, C) or channels_first (B, C, L).

    The kernels work channels-last; ``_to_last`` / ``_from_last`` transpose at the layer's edges.
    """

    data_format = "channels_last"
    _who = Layer.who  # the former name of the error prefix, for subclasses written against it

    @property
    def _time_axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    def _to_last(self, a: np.ndarray) -> np.ndarray:
        return a if self.data_format == "channels_last" else a.transpose(0, 2, 1)

    _from_last = _to_last  # the transposition is its own inverse

    def expected_mask_shape(self, x):
        """(batch, steps) wherever the steps axis is; None if the layer drops masks."""
        if not self.supports_masking:
            return None
        return (x.shape[0], x.shape[self._time_axis])


class _Conv1DBase(DataFormatLayer, BiasActivationTail):
    """Argument checks, geometry and data_format handling shared by the family; the bias/activation tail is
    :class:`tinynn.layers.bias_activation.BiasActivationTail`."""

    _allow_causal = False

    def __init__(self, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias, **kwargs):
        super().__init__(**kwargs)
        who = self.who
        self.kernel_size = positive_int_tuple(kernel_size, 1, "kernel_size", who)
        self.strides = positive_int_tuple(strides, 1, "strides", who)
        self.dilation_rate = positive_int_tuple(dilation_rate, 1, "dilation_rate", who)
        allowed = ("valid", "same", "causal") if self._allow_causal else ("valid", "same")
        self.padding = one_of(padding, allowed, "padding", who)
        self.data_format = standardize_data_format(data_format, who)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self._ws: dict = {}  # reusable scratch buffers of the conv kernels (see tinynn.kernels.conv)

    # ------------------------------------------------------------------ geometry
    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    def _geometry(self, length: int, shape) -> tuple[int, int, int]:
        """(pad_left, pad_right, L_out) for ``length`` steps; ValueError naming the layer if the output is empty."""
        (k,), (s,), (d,) = self.kernel_size, self.strides, self.dilation_rate
        pl, pr, l_out = K_conv.conv_padding(int(length), k, s, d, self.padding)
        if l_out < 1:
            eff = (k - 1) * d + 1
            raise ValueError(
                f"{self.who}: input shape {format_shape(shape)} has {length} steps, but kernel_size={k} with "
                f"dilation_rate={d} has a receptive field of {eff} steps, so padding={self.padding!r}, "
                f"strides={s} would give an empty output (length {l_out}); the input needs >= {eff} steps"
            )
        return pl, pr, l_out

    def _check_shape(self, input_shape) -> int:
        """Rank 3 with a known channel axis; returns the channel count (and checks the length if known)."""
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.who} expects inputs of rank 3 (batch, steps, channels) for data_format="
                f"{self.data_format!r}, got shape {format_shape(input_shape)}"
            )
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(f"{self.who} needs a known channel axis, got input shape {format_shape(input_shape)}")
        if input_shape[self._time_axis] is not None:
            self._geometry(input_shape[self._time_axis], input_shape)
        return int(channels)

    def _spec(self, channels: int) -> InputSpec:
        return InputSpec(ndim=3, axes={self._channel_axis: channels})

    def prepare_input(self, x) -> np.ndarray:
        x = super().prepare_input(x)
        self._check_shape(x.shape)  # rank and length errors quote the real shape, before build and kernels
        return x

    def check_input(self, x: np.ndarray) -> None:
        super().check_input(x)
        self._geometry(x.shape[self._time_axis], x.shape)

    def _output_shape(self, input_shape, out_channels: int):
        length = input_shape[self._time_axis]
        l_out = None if length is None else self._geometry(length, input_shape)[2]
        if self.data_format == "channels_last":
            return (input_shape[0], l_out, out_channels)
        return (input_shape[0], out_channels, l_out)

    # ------------------------------------------------------------------ the convolution, in either kernel mode
    def _choose_kernels(self, x, mask) -> None:
        """Reference kernels in reference mode, and while the fast ones compile (:mod:`tinynn.kernels.warmup`);
        the backward of this forward uses the same."""
        self._reference = config.kernel_mode() == "reference" or not warmup.fast_ready(self, x, mask)

    def _matmul(self, a: np.ndarray, b: np.ndarray, transpose: str = "") -> np.ndarray:
        """op(a) @ op(b) in the forward's kernel mode, op = ᵀ for the operands named in ``transpose`` ('a', 'b');
        fast: single-threaded BLAS pieces on the cores, the transposed operand read in place."""
        if self._reference:
            return (a.T if "a" in transpose else a) @ (b.T if "b" in transpose else b)
        if transpose == "a":
            return K_blas.matmul_tn(a, b)
        return K_blas.matmul_nt(a, b) if transpose == "b" else K_blas.matmul(a, b)

    def _conv(self, x: np.ndarray, W: np.ndarray, pl: int, l_out: int, groups: int, keep_cols: bool = False):
        """z = conv(x, W) without bias (channels-last), through the kernels of the current mode (the backward of
        this forward uses the same mode)."""
        s, d = self.strides[0], self.dilation_rate[0]
        if self._reference:
            return R_conv.conv1d_forward(x, W, s, d, pl, l_out, groups)
        return K_conv.conv1d_forward(x, W, s, d, pl, l_out, groups, workspace=self._ws, keep_cols=keep_cols)

    def _conv_backward(self, x: np.ndarray, W: np.ndarray, dz: np.ndarray, groups: int):
        """(dx or None, dW) of :meth:`_conv` for dz = ∂L/∂z (channels-last); dx is None when not needed."""
        s, d, pl = self.strides[0], self.dilation_rate[0], self._pl
        need_dx = self.input_gradient_needed
        if self._reference:
            dx = R_conv.conv1d_backward_data(dz, W, x.shape[1], s, d, pl, groups) if need_dx else None
            return dx, R_conv.conv1d_backward_filter(x, dz, W.shape[0], s, d, pl, groups)
        return K_conv.conv1d_backward(x, W, dz, s, d, pl, groups, need_dx=need_dx, workspace=self._ws)

    @staticmethod
    def _bias_gradient(dz: np.ndarray, db: np.ndarray | None) -> np.ndarray:
        """db = Σ_b Σ_t dz (dz channels-last), unless the fused backward already computed it."""
        return dz.sum(axis=(0, 1)) if db is None else db

    def _dz(self, dz) -> np.ndarray:
        """dL/dz channels-last in the layer's dtype (activations may hand back a wider dtype)."""
        return np.asarray(self._to_last(dz), dtype=self.dtype)


class Conv1D(_Conv1DBase):
    r"""1-D convolution: ``Conv1D(filters, kernel_size, strides=1, padding='valid', data_format=None,
    dilation_rate=1, groups=1, activation=None, use_bias=True, kernel_initializer='glorot_uniform',
    bias_initializer='zeros')``.

    Shapes: x (B, L, C), kernel W (K, C/G, F), bias b (F,), y (B, Lo, F); G = groups, Cg = C/G,
    Fg = F/G, filter f belongs to group g(f) = f // Fg and reads input channels [g·Cg, (g+1)·Cg).

    Forward::

        z[b,t,f] = b[f] + Σ_k Σ_c xp[b, t·s + k·d, g(f)·Cg + c] · W[k,c,f]
        y = act(z)

    Backward, given dy (B, Lo, F)::

        dz = act'(z) ⊙ dy
        db[f]     = Σ_b Σ_t dz[b,t,f]                                        (F,)
        dW[k,c,f] = Σ_b Σ_t xp[b, t·s + k·d, g(f)·Cg + c] · dz[b,t,f]        (K, Cg, F)
        dx[b,i,g·Cg+c] = Σ_{t,k: t·s+k·d-pl = i} Σ_{f ∈ g} dz[b,t,f] · W[k,c,f]   (B, L, C)

    Keras's errors: strides > 1 together with dilation_rate > 1, filters or input channels not
    divisible by groups, an empty output (input shorter than the receptive field).
    """

    _allow_causal = True
    #: a dy broadcast along the steps (GlobalAveragePooling1D.backward_broadcast): the activation gradient reads one
    #: row per sequence (tinynn.kernels.bias_activation.bias_activation_backward)
    accepts_broadcast_dy = True
    _config_keys = (
        "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
        "activation", "use_bias", "kernel_initializer", "bias_initializer",
    )  # fmt: skip

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate=1,
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
        if self.strides[0] > 1 and self.dilation_rate[0] > 1:
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
        self.add_weight("kernel", (self.kernel_size[0], channels // self.groups, self.filters), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)
        self.input_spec = self._spec(channels)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    #: the last forward ran on an Embedding's table and ids (:meth:`forward_lookup` in training): no x was formed
    _on_lookups = False

    def forward(self, x, training=False, mask=None):
        self._choose_kernels(x, mask)
        x = self._to_last(x)
        pl, _, l_out = self._geometry(x.shape[1], x.shape)
        self._x, self._pl = x, pl
        bias = self.bias if self.use_bias else None
        code = None if self._reference else activation_code(self.activation)
        self._fused, self._on_lookups = None, False
        if code is not None and code != SIGMOID:
            # fast mode: the bias and activation run on each batch chunk of the convolution's output while it is
            # in the cache (the same numbers as _finish); sigmoid keeps its logits for the losses. A training call
            # keeps y for the fused backward (act'(y) ⊙ dy and the convolution's gradients: _backward_fused).
            (s,), (d,) = self.strides, self.dilation_rate
            self._y = K_conv.conv1d_forward(x, self.kernel, s, d, pl, l_out, self.groups, workspace=self._ws,
                                            keep_cols=training, bias=bias, activation_code=code)
            self._z, self._z_bias = (self._y if code == LINEAR else None), None
            if training:
                self._fused = code
            return self._from_last(self._y)
        z = self._conv(x, self.kernel, pl, l_out, self.groups, keep_cols=training)
        return self._finish(z, bias)

    def pools_with(self, layer) -> bool:
        """Whether ``layer`` (the next one) is a GlobalAveragePooling1D that :meth:`forward_pooled` can take on."""
        from .pooling import GlobalAveragePooling1D

        return (type(layer) is GlobalAveragePooling1D and layer.data_format == self.data_format
                and layer.dtype == self.dtype)  # fmt: skip

    def forward_pooled(self, x, pool) -> np.ndarray | None:
        """Inference only: ``pool(self(x))`` for ``pool`` a GlobalAveragePooling1D (:meth:`pools_with`), without the
        (B, Lo, F) output::

            p[b, f] = (1 / Lo) Σ_t act(z + b)[b, t, f]

        This is the convolution as a 2-D one of an L×1 image with a K×1 kernel (strides (s, 1), dilation (d, 1),
        padding (pl, 0)), each chunk of output steps pooled while it is in the cache
        (:func:`tinynn.kernels.conv2d.conv2d_forward_pooled`), or, where Winograd runs this convolution
        (:func:`tinynn.kernels.winograd1d.applies`), its chunks pooled the same way
        (:func:`tinynn.kernels.winograd1d.winograd_conv1d_pooled`). Neither layer keeps a forward to run a backward
        from.
        None (nothing done: call the two layers) unless the fast kernels run a one-group convolution with a numba
        activation."""
        x = self.accept_input(x)
        code = activation_code(self.activation)
        if code is None or self.groups != 1 or config.kernel_mode() == "reference":
            return None
        self._choose_kernels(x, None)
        if self._reference:
            return None
        x = np.ascontiguousarray(self._to_last(x))
        pl, _, l_out = self._geometry(x.shape[1], x.shape)
        (s,), (d,) = self.strides, self.dilation_rate
        bias = self.bias if self.use_bias else None
        winograd = K_winograd1d.applies(self.kernel.shape, s, d, self.groups, x.dtype, x.shape[0] * l_out)
        if winograd and self.filters >= K_winograd1d.POOLED_MIN_FILTERS and K_winograd1d.pooled_ready(x.dtype):
            self._x = None
            self._forward_record = pool._forward_record = None
            p = K_winograd1d.winograd_conv1d_pooled(x, self.kernel, pl, l_out, bias, code, self._ws)
            return pool._restore(p)
        if not K_conv2d.forward_pooled_ready(x.dtype):
            return None
        self._x = None
        self._forward_record = pool._forward_record = None  # a backward now raises (no forward to run it from)
        p = K_conv2d.conv2d_forward_pooled(x[:, :, None, :], self.kernel[:, None], (s, 1), (d, 1), (pl, 0),
                                           (l_out, 1), 1, workspace=self._ws, bias=bias, activation=code)  # fmt: skip
        return pool._restore(p)  # with the steps axis when keepdims

    def reads_lookups(self, dtype) -> bool:
        """Whether :meth:`forward_lookup` can take an Embedding's table of this dtype: a channels-last, one-group
        convolution of that dtype whose activation the kernels fuse (every numba one but sigmoid)."""
        code = activation_code(self.activation)
        return (code is not None and code != SIGMOID and self.groups == 1 and self.data_format == "channels_last"
                and np.dtype(dtype) == self.dtype)  # fmt: skip

    def forward_lookup(self, table: np.ndarray, ids: np.ndarray, training: bool = False) -> np.ndarray | None:
        """``self(table[ids])`` for an Embedding's table (V, C) and ids (B, L) in [0, V) (its
        :meth:`~tinynn.layers.Embedding.forward_into`), without the (B, L, C) lookup
        (:func:`tinynn.kernels.conv.conv1d_forward_lookup`: the distinct ids' rows from the table, the same numbers
        bit for bit). None (nothing done: call the two layers) unless the fast kernels run a built, channels-last,
        one-group convolution with a numba activation (not sigmoid) and few enough of the steps are distinct.
        Inference keeps no forward to run a backward from; a training call keeps the distinct steps, and its
        backward (:func:`tinynn.kernels.conv.conv1d_backward_lookup`) gives the numbers of the two layers' calls."""
        if (not self.built or not self.reads_lookups(table.dtype) or ids.ndim != 2
                or config.kernel_mode() == "reference" or table.shape[1] != self.kernel.shape[1]):  # fmt: skip
            return None
        code = activation_code(self.activation)
        B, L = ids.shape
        self._choose_kernels(np.take(table, ids[:1], axis=0), None)  # a one-sample lookup: the warm-up's signature
        if self._reference:
            return None
        pl, _, l_out = self._geometry(L, (B, L, table.shape[1]))
        (s,), (d,) = self.strides, self.dilation_rate
        y = K_conv.conv1d_forward_lookup(table, ids, self.kernel, s, d, pl, l_out, workspace=self._ws,
                                         bias=self.bias if self.use_bias else None, activation_code=code,
                                         keep=training)  # fmt: skip
        if y is None:
            return None
        self._y, self._z, self._z_bias = y, (y if code == LINEAR else None), None
        if training:
            self._x, self._pl, self._fused, self._on_lookups = None, pl, code, True
            x_like = self._ws["distinct_of"][0]  # the kernel's shape-only stand-in for x (B, L, C)
            self._forward_record = _ForwardRecord(y, x_like)  # dy of y's shape, dx of x's (the protocol's checks)
        else:
            self._x, self._fused, self._forward_record, self._on_lookups = None, None, None, False
        return y

    def backward_from_logits(self, dz, db=None):
        """Backward pass from dL/dz (in data_format; ``db`` = Σ dz if already known): fills [dW, db], returns dx."""
        dz = self._dz(dz)
        dx, dW = self._conv_backward(self._x, self.kernel, dz, self.groups)
        self.gradients = [dW, self._bias_gradient(dz, db)] if self.use_bias else [dW]
        return self._dx(dx)

    def _backward_fused(self, dy):
        """dz = act'(y) ⊙ dy, db = Σ dz and the convolution's gradients after a fused training forward (dy
        channels-last): :func:`tinynn.kernels.conv.conv1d_backward_fused`."""
        (s,), (d,) = self.strides, self.dilation_rate
        if self._on_lookups:
            dx, dW, db = K_conv.conv1d_backward_lookup(self.kernel, self._y, np.asarray(dy, dtype=self.dtype),
                                                       self._fused, s, d, self._pl, self.input_gradient_needed,
                                                       self._ws)  # fmt: skip
            self.gradients = [dW, db] if self.use_bias else [dW]
            return self._dx(dx)
        dx, dW, db = K_conv.conv1d_backward_fused(
            self._x, self.kernel, self._y, np.asarray(dy, dtype=self.dtype), self._fused, s, d, self._pl, self.groups,
            need_dx=self.input_gradient_needed, workspace=self._ws,
        )  # fmt: skip
        self.gradients = [dW, db] if self.use_bias else [dW]
        return self._dx(dx)


class DepthwiseConv1D(_Conv1DBase):
    r"""Depthwise 1-D convolution: ``DepthwiseConv1D(kernel_size, strides=1, padding='valid',
    depth_multiplier=1, data_format=None, dilation_rate=1, activation=None, use_bias=True,
    depthwise_initializer='glorot_uniform', bias_initializer='zeros')``.

    Shapes: x (B, L, C), kernel D (K, C, M) with M = depth_multiplier, bias b (C·M,), y (B, Lo, C·M).
    Output channel c·M + m filters input channel c only. This is a grouped convolution with G = C groups
    and kernel ``W = D.reshape(K, 1, C·M)``.

    Forward::

        z[b,t,c·M+m] = b[c·M+m] + Σ_k xp[b, t·s + k·d, c] · D[k,c,m]
        y = act(z)

    Backward, given dy::

        dz = act'(z) ⊙ dy
        db[c·M+m] = Σ_b Σ_t dz[b,t,c·M+m]
        dD[k,c,m] = Σ_b Σ_t xp[b, t·s + k·d, c] · dz[b,t,c·M+m]
        dx[b,i,c] = Σ_{t,k: t·s+k·d-pl = i} Σ_m dz[b,t,c·M+m] · D[k,c,m]

    As in Keras 3, strides > 1 and dilation_rate > 1 may be combined here (Keras runs the dilated
    convolution at stride 1 and subsamples, which is the formula above); 'causal' is not accepted.
    """

    _config_keys = (
        "kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate",
        "activation", "use_bias", "depthwise_initializer", "bias_initializer",
    )  # fmt: skip

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate=1,
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
        self.add_weight("kernel", (self.kernel_size[0], channels, self.depth_multiplier), self.depthwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (channels * self.depth_multiplier,), self.bias_initializer)
        self.input_spec = self._spec(channels)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, input_shape[self._channel_axis] * self.depth_multiplier)

    def forward(self, x, training=False, mask=None):
        self._choose_kernels(x, mask)
        x = self._to_last(x)
        pl, _, l_out = self._geometry(x.shape[1], x.shape)
        self._x, self._pl = x, pl
        K, C, M = self.kernel.shape
        z = self._conv(x, self.kernel.reshape(K, 1, C * M), pl, l_out, groups=C)
        return self._finish(z, self.bias if self.use_bias else None)

    def backward_from_logits(self, dz, db=None):
        """Backward pass from dL/dz (in data_format; ``db`` = Σ dz if already known): fills [dD, db], returns dx."""
        dz = self._dz(dz)
        K, C, M = self.kernel.shape
        dx, dW = self._conv_backward(self._x, self.kernel.reshape(K, 1, C * M), dz, groups=C)
        dD = dW.reshape(K, C, M)
        self.gradients = [dD, self._bias_gradient(dz, db)] if self.use_bias else [dD]
        return self._dx(dx)


class SeparableConv1D(_Conv1DBase):
    r"""Depthwise-separable 1-D convolution: ``SeparableConv1D(filters, kernel_size, strides=1,
    padding='valid', data_format=None, dilation_rate=1, depth_multiplier=1, activation=None,
    use_bias=True, depthwise_initializer='glorot_uniform', pointwise_initializer='glorot_uniform',
    bias_initializer='zeros')``.

    Shapes: x (B, L, C), depthwise kernel D (K, C, M), pointwise kernel P (1, C·M, F), bias b (F,),
    u (B, Lo, C·M) the depthwise output (no bias in between, as in Keras), y (B, Lo, F).

    Forward::

        u[b,t,c·M+m] = Σ_k xp[b, t·s + k·d, c] · D[k,c,m]            (DepthwiseConv1D without bias)
        z = u @ P[0] + b
        y = act(z)

    Backward, given dy::

        dz = act'(z) ⊙ dy
        db = Σ_b Σ_t dz                  (F,)
        dP[0] = Σ_b u[b]ᵀ @ dz[b]         (C·M, F)
        du = dz @ P[0]ᵀ                   (B, Lo, C·M)
        dD[k,c,m] = Σ_b Σ_t xp[b, t·s + k·d, c] · du[b,t,c·M+m]
        dx[b,i,c] = Σ_{t,k: t·s+k·d-pl = i} Σ_m du[b,t,c·M+m] · D[k,c,m]

    strides > 1 and dilation_rate > 1 may be combined (as in Keras 3); 'causal' is not accepted.
    """

    _config_keys = (
        "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier",
        "activation", "use_bias", "depthwise_initializer", "pointwise_initializer", "bias_initializer",
    )  # fmt: skip

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate=1,
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
        self.add_weight("depthwise_kernel", (self.kernel_size[0], channels, M), self.depthwise_initializer)
        self.add_weight("pointwise_kernel", (1, channels * M, self.filters), self.pointwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)
        self.input_spec = self._spec(channels)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)

    def forward(self, x, training=False, mask=None):
        self._choose_kernels(x, mask)
        x = self._to_last(x)
        pl, _, l_out = self._geometry(x.shape[1], x.shape)
        self._x, self._pl = x, pl
        K, C, M = self.depthwise_kernel.shape
        u = self._conv(x, self.depthwise_kernel.reshape(K, 1, C * M), pl, l_out, groups=C)
        self._u = u
        z = self._matmul(u.reshape(-1, C * M), self.pointwise_kernel[0]).reshape(*u.shape[:2], self.filters)
        return self._finish(z, self.bias if self.use_bias else None)

    def backward_from_logits(self, dz, db=None):
        """Backward pass from dL/dz (in data_format; ``db`` = Σ dz if already known): fills [dD, dP, db], returns dx."""
        dz = self._dz(dz)
        K, C, M = self.depthwise_kernel.shape
        P = self.pointwise_kernel[0]
        u2, dz2 = self._u.reshape(-1, C * M), dz.reshape(-1, self.filters)
        dP = self._matmul(u2, dz2, "a")[None]
        du = self._matmul(dz2, P, "b").reshape(dz.shape[0], dz.shape[1], C * M)
        dx, dD = self._conv_backward(self._x, self.depthwise_kernel.reshape(K, 1, C * M), du, groups=C)
        grads = [dD.reshape(K, C, M), dP]
        if self.use_bias:
            grads.append(self._bias_gradient(dz, db))
        self.gradients = grads
        return self._dx(dx)
