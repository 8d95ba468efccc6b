"""Dense, Activation, Flatten, Reshape, Dropout, Input: the layers of a multilayer perceptron."""

from __future__ import annotations

import numpy as np

from .. import activations, config, graph
from .. import initializers as _init
from ..kernels import bias_activation as K_bias_act
from ..kernels import blas as K_blas
from ..kernels import softmax as K_softmax
from ..kernels import warmup
from ..kernels.fastmath import LINEAR, RELU, activation_code
from ..kernels.parallel import kernel_entry, kernel_scope
from ..kernels.reference.dense import dense_backward, dense_forward
from ..utils import make_rng
from .arguments import one_of, positive_int
from .base import InputSpec, Layer, format_shape

#: The rows (B·T) from which, in predict, Dense -> GlobalAveragePooling1D runs as one pass
#: (:meth:`Dense.forward_pooled`). A repeated pass runs its kept plan (:func:`tinynn.kernels.conv2d.
#: conv2d_forward_pooled`), so from one sequence of 64 steps on it costs less than the two layers' own calls
#: (benchmarks/RESULTS.md).
POOLED_MIN_ROWS = 1 << 6


class Dense(Layer):
    r"""Fully connected layer on the last axis.

    Shapes: x (..., n_in), kernel W (n_in, units), bias b (units,), y (..., units).

    Forward::

        z = x @ W + b
        y = act(z)

    Backward, given dL/dy (flattened over the leading axes to rows)::

        dz = act'(z) ⊙ dy            (activation.backward)
        dW = xᵀ @ dz                 (n_in, units)
        db = Σ_rows dz               (units,)
        dx = dz @ Wᵀ                 (..., n_in)

    Code, reference first: :func:`tinynn.kernels.reference.dense.dense_forward` / ``dense_backward`` (the
    'reference' kernel mode); fast: the products in single-threaded BLAS pieces on the cores
    (:mod:`tinynn.kernels.blas`) and, for linear and relu, the bias and activation in one pass each way
    (:mod:`tinynn.kernels.bias_activation`); in predict, on a sequence followed by GlobalAveragePooling1D, the two
    layers as one pass (:meth:`forward_pooled`).
    """

    supports_masking = True
    accepts_broadcast_dy = True  # a dy broadcast along the steps (GlobalAveragePooling1D.backward_broadcast)
    _config_keys = ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer")

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = positive_int(units, "units", self.who)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)
        self._ws: dict = {}  # reusable scratch buffers of forward_pooled's kernel (tinynn.kernels.conv2d)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"{self.who} needs inputs of rank >= 2 with a known last axis, got {format_shape(input_shape)}"
            )
        n_in = input_shape[-1]
        self.add_weight("kernel", (n_in, self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: n_in})

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def forward(self, x, training=False, mask=None):
        # small layers: NumPy's matmul and activation (the same BLAS; less call overhead than the kernels' pieces)
        self._fast = (config.kernel_mode() == "fast" and x.size * self.units >= K_blas.PARALLEL_WORK
                      and warmup.fast_ready(self, x, mask))
        bias = self.bias if self.use_bias else None
        self._x, self._xw, self._b = x, None, None
        if not self._fast:
            self._z, self._y = dense_forward(x, self.kernel, bias, self._activate)
            return self._y
        with kernel_scope():
            return self._fast_forward(x, bias)

    def _activate(self, z):
        """act(z); a softmax over short rows by its kernel (:func:`tinynn.kernels.softmax.apply`)."""
        return K_softmax.apply(self.activation, z)

    def _fused_code(self):
        """The activation code the fused bias+activation kernel runs for this layer: linear and relu only, which
        it computes exactly. tanh / sigmoid keep NumPy's exact functions here: a Dense layer is often the output,
        where the kernels' rational approximation saturates a sigmoid to exactly 1 sooner, zeroing the gradient
        y(1 - y) that Keras keeps tiny but non-zero (Grad-CAM normalises such gradients)."""
        code = activation_code(self.activation)
        return code if code in (LINEAR, RELU) else None

    def _fast_forward(self, x, bias):
        rows = x.reshape(-1, x.shape[-1])
        code = self._fused_code()
        if code is None:
            xw = K_blas.matmul(rows, self.kernel)  # x W without bias, (N, u)
            if bias is not None:
                xw += bias
            self._z = xw.reshape(*x.shape[:-1], self.units)
            self._y = self._activate(self._z)
            return self._y
        # y = act(x W + b), each block of rows right after its product (still in cache); z = x W + b is formed
        # only if the logits are asked for
        xw = np.empty((rows.shape[0], self.units), np.result_type(rows, self.kernel))
        y = np.empty_like(xw)
        b = np.zeros(self.units, xw.dtype) if bias is None else np.ascontiguousarray(bias, xw.dtype)
        # the bare loop on each block (row slices of C-contiguous arrays; b (units,) by construction): the checked
        # entry point's Python cost is paid per block on each core (benchmarks/RESULTS.md)
        K_blas.matmul(rows, self.kernel, out=xw, epilogue=lambda i0, i1: K_bias_act.bias_activation_rows(
            xw[i0:i1], b, code, y[i0:i1]))
        self._z, self._xw, self._b = None, xw, None if bias is None else np.array(bias)
        self._y = y.reshape(*x.shape[:-1], self.units)
        return self._y

    def pools_with(self, layer) -> bool:
        """Whether ``layer`` (the next one) is a GlobalAveragePooling1D that :meth:`forward_pooled` can take on: it
        averages over the steps of this layer's (B, T, units) output (channels_last) in this layer's dtype."""
        from .pooling import GlobalAveragePooling1D

        return (type(layer) is GlobalAveragePooling1D and layer.data_format == "channels_last"
                and layer.dtype == self.dtype)  # fmt: skip

    def forward_pooled(self, x, pool) -> np.ndarray | None:
        """Inference only: ``pool(self(x))`` for x (B, T, n_in) and ``pool`` a GlobalAveragePooling1D
        (:meth:`pools_with`), without the (B, T, units) output::

            p[b, u] = (1 / T) Σ_t act(x[b, t] @ W + b)[u]

        This is a pointwise (1×1) convolution of a T×1 image, each chunk of steps' product pooled while it is in
        the cache (:func:`tinynn.kernels.conv2d.conv2d_forward_pooled`). Neither layer keeps a forward to run a
        backward from. None (nothing done: call the two layers) unless the fast kernels run, the activation is one
        the fused tail computes exactly (linear, relu: :meth:`_fused_code`) and x has :data:`POOLED_MIN_ROWS` rows
        (B·T) or more."""
        from ..kernels import conv2d as K_conv2d

        x = self.accept_input(x)
        code = self._fused_code()
        if (x.ndim != 3 or code is None or config.kernel_mode() != "fast"
                or x.shape[0] * x.shape[1] < POOLED_MIN_ROWS
                or not K_conv2d.forward_pooled_ready(x.dtype)):  # fmt: skip
            return None
        x = np.ascontiguousarray(x)
        self._x = self._xw = self._z = self._y = None
        self._forward_record = pool._forward_record = None  # a backward now raises (no forward to run it from)
        p = K_conv2d.conv2d_forward_pooled(x[:, :, None, :], self.kernel[None, None], workspace=self._ws,
                                           bias=self.bias if self.use_bias else None, activation=code,
                                           pieces_per_thread=K_blas._PIECES_PER_THREAD)  # fmt: skip
        return pool._restore(p)  # with the steps axis when keepdims

    def backward(self, dy):
        if self._fast and self._xw is not None:
            dz, db = K_bias_act.bias_activation_backward(self._y, np.asarray(dy, self._y.dtype), self._fused_code(),
                                                         self.use_bias)
            return self.backward_from_logits(dz, db)
        return self.backward_from_logits(self.activation.backward(self.logits, self._y, dy))

    def backward_from_logits(self, dz, db=None):
        """Backward pass starting from dL/dz (used when the loss is fused with sigmoid/softmax); ``db`` = Σ dz if
        already known."""
        if not self._fast:
            dx, dW, db = dense_backward(self._x, self.kernel, dz, self.use_bias, self.input_gradient_needed)
        else:
            dx, dW, db = self._fast_backward(dz, db)
        self.gradients = [dW, db] if self.use_bias else [dW]
        return dx

    @kernel_entry
    def _fast_backward(self, dz, db):
        x_rows, dz_rows = self._x.reshape(-1, self._x.shape[-1]), dz.reshape(-1, self.units)
        dW = K_blas.matmul_tn(x_rows, dz_rows)
        if self.use_bias and db is None:
            db = dz_rows.sum(axis=0)
        dx = K_blas.matmul_nt(dz_rows, self.kernel).reshape(self._x.shape) if self.input_gradient_needed else None
        return dx, dW, db

    @property
    def logits(self):
        """The pre-activation z of the last forward call."""
        if self._z is None and self._xw is not None:
            z = self._xw if self._b is None else self._xw + self._b
            return z.reshape(self._y.shape)
        return self._z


class Activation(Layer):
    """``y = act(x)`` elementwise (softmax along the last axis); ``dx = act.backward(x, y, dy)``."""

    supports_masking = True
    _config_keys = ("activation",)

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def forward(self, x, training=False, mask=None):
        self._x, self._y = x, K_softmax.apply(self.activation, x)
        return self._y

    def backward(self, dy):
        self.gradients = []
        return self.activation.backward(self._x, self._y, dy)

    def backward_from_logits(self, dz):
        self.gradients = []
        return dz

    @property
    def logits(self):
        return self._x


class Flatten(Layer):
    """``y = x.reshape(B, -1)`` in C order; ``dx = dy.reshape(x.shape)``. Masks are dropped, as in Keras."""

    _config_keys = ("data_format",)

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = one_of(data_format, (None, "channels_last", "channels_first"), "data_format",
                                  self.who) or "channels_last"

    def build(self, input_shape):
        self.input_spec = InputSpec(min_ndim=1, axes={i: s for i, s in enumerate(input_shape) if i > 0})

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(s is None for s in rest) else int(np.prod(rest))
        return (input_shape[0], size)

    def forward(self, x, training=False, mask=None):
        self._shape = x.shape
        if self.data_format == "channels_first" and x.ndim > 2:
            x = np.moveaxis(x, 1, -1)
        self._moved_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        self.gradients = []
        dx = dy.reshape(self._moved_shape)
        if self.data_format == "channels_first" and dx.ndim > 2:
            dx = np.moveaxis(dx, -1, 1)
        return dx


class Reshape(Layer):
    """``y = x.reshape((B, *target_shape))`` (one -1 allowed); ``dx = dy.reshape(x.shape)``."""

    _config_keys = ("target_shape",)

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            self.target_shape = tuple(int(s) for s in target_shape)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{self.who}: target_shape must be a tuple of ints, got {target_shape!r}") from err
        if sum(s == -1 for s in self.target_shape) > 1 or any(s == 0 or s < -1 for s in self.target_shape):
            raise ValueError(f"{self.who}: invalid target_shape {target_shape!r} (positive sizes and at most one -1)")

    def _resolve(self, input_shape):
        rest = input_shape[1:]
        if any(s is None for s in rest):
            return self.target_shape
        total = int(np.prod(rest))
        known = int(np.prod([s for s in self.target_shape if s != -1]))
        if -1 in self.target_shape:
            if total % known:
                raise ValueError(
                    f"{self.who}: cannot reshape input {format_shape(input_shape)} to {self.target_shape}"
                )
            return tuple(total // known if s == -1 else s for s in self.target_shape)
        if total != known:
            raise ValueError(
                f"{self.who}: total size of the input {format_shape(input_shape)} is {total}, "
                f"target_shape {self.target_shape} has {known}"
            )
        return self.target_shape

    def build(self, input_shape):
        self._resolve(input_shape)
        self.input_spec = InputSpec(axes={i: s for i, s in enumerate(input_shape) if i > 0})

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._resolve(input_shape))

    def forward(self, x, training=False, mask=None):
        self._shape = x.shape
        return x.reshape((x.shape[0], *self._resolve(x.shape)))

    def backward(self, dy):
        self.gradients = []
        return dy.reshape(self._shape)


class Dropout(Layer):
    """Inverted dropout, active only when ``training=True``.

    Forward: ``m ~ Bernoulli(1 - rate)`` (broadcast along ``noise_shape``'s 1-axes),
    ``y = x ⊙ m / (1 - rate)``; rate 1 gives zeros. Backward: ``dx = dy ⊙ m / (1 - rate)``.
    At inference ``y = x`` and ``dx = dy``. The scaling is applied once, at training time only.
    """

    supports_masking = True
    _config_keys = ("rate", "noise_shape", "seed")

    def __init__(self, rate: float, noise_shape=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"{self.who}: rate must be a number in [0, 1], got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._rng = make_rng(seed)
        self._scale = None

    def _mask_shape(self, x):
        if self.noise_shape is None:
            return x.shape
        if len(self.noise_shape) != x.ndim:
            raise ValueError(f"{self.who}: noise_shape {self.noise_shape} must have rank {x.ndim} (input {x.shape})")
        return tuple(x.shape[i] if s is None else int(s) for i, s in enumerate(self.noise_shape))

    def forward(self, x, training=False, mask=None):
        if not training or self.rate == 0:
            self._scale = None
            return x
        if self.rate == 1:
            self._scale = np.zeros(self._mask_shape(x), dtype=x.dtype)
        else:
            keep = self._rng.random(self._mask_shape(x)) >= self.rate
            self._scale = keep.astype(x.dtype) / x.dtype.type(1 - self.rate)
        return x * self._scale

    def backward(self, dy):
        self.gradients = []
        return dy if self._scale is None else dy * self._scale


class InputLayer(Layer):
    """The layer behind ``layers.Input``: declares a model input (no computation). Its output is the symbolic
    tensor ``Input`` returns (``input_layer.output``)."""

    supports_masking = True

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, **kwargs):
        kwargs.pop("sparse", None)  # Keras's dense-only defaults, accepted for configs
        kwargs.pop("ragged", None)
        kwargs.pop("optional", None)
        if batch_shape is not None:
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if shape is None:
            raise ValueError("Input: a shape is required, e.g. layers.Input(shape=(64,))")
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        self.shape_arg = tuple(None if s is None else int(s) for s in shape)
        self.input_dtype = dtype
        super().__init__(name=name, input_shape=self.shape_arg, batch_size=batch_size, **kwargs)
        self.built = True  # nothing to build (Keras's summary shows its 0 params as built)
        tensor_dtype = self.dtype if dtype is None else np.dtype(dtype).name
        graph.make_input(self, tensor_dtype)

    @property
    def shape(self):
        return (self.batch_size, *self.shape_arg)

    def forward(self, x, training=False, mask=None):
        return x

    def backward(self, dy):
        self.gradients = []
        return dy

    def get_config(self):
        """``dtype`` is the input tensor's (an Embedding's ids are ``int32``; a float64 model's inputs float64)."""
        return {"name": self.name, "shape": list(self.shape_arg), "batch_size": self.batch_size,
                "dtype": self.output.dtype}


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, **kwargs) -> graph.KerasTensor:
    """``layers.Input(shape=(...))`` as in Keras 3: the symbolic tensor of a new ``InputLayer``.

    Call layers on it to build a functional model (``tinynn.Model(inputs, outputs)``), or pass it first to a
    ``Sequential`` (``Sequential([layers.Input(shape=(64,)), ...])``, ``model.add(layers.Input(...))``).
    """
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape, **kwargs)
    return layer.output
