r"""The bias + activation tail the convolution layers share: ``y = act(z + b)`` after the convolution ``z``.

Symbols: z the fresh convolution without bias, channels-last; b the bias (or None); y the output. The backward
forms ``dz = act'(z + b) ⊙ dy`` and ``db = Σ dz`` over every axis but the channels, then hands dz to the layer's
``backward_from_logits`` (the convolution's own gradients).

Reference mode: :func:`tinynn.kernels.reference.bias_activation.bias_activation_forward` / ``_backward`` (they keep
``z + b``). Fast mode: an activation the numba kernels implement takes one fused pass
(:mod:`tinynn.kernels.bias_activation`) that needs only y for the backward (``z + b`` is formed only if
:attr:`logits` asks for it); any other activation keeps ``z + b`` for its derivative. A layer that fused the
activation into its convolution kernel sets ``_fused`` and provides ``_backward_fused``.
"""

from __future__ import annotations

import numpy as np

from ..kernels import bias_activation as K_bias_act
from ..kernels.fastmath import activation_code
from ..kernels.reference import bias_activation as R_bias_act
from .base import Layer


class BiasActivationTail(Layer):
    """``_finish`` (forward tail), ``backward`` (its adjoint), ``_dx`` and ``logits`` for a layer with
    ``activation``, ``use_bias``, ``_reference`` (the kernel mode of the last forward) and ``_to_last`` /
    ``_from_last`` (its data_format at the edges)."""

    _reference = False  # the kernel mode of the last forward call (its backward uses the same)
    #: the activation code fused into the last forward's conv kernel (fast mode), else None
    _fused: int | None = None

    def _dy_last(self, dy: np.ndarray) -> np.ndarray:
        """The upstream gradient channels-last, as the tail's kernels read it."""
        return self._to_last(dy)

    def _finish(self, z: np.ndarray, bias) -> np.ndarray:
        """y = act(z + b) for z the fresh channels-last convolution; caches what the backward needs; returns y in
        data_format."""
        if self._reference:
            self._z, self._y = R_bias_act.bias_activation_forward(z, bias, self.activation)
            self._z_bias = None
            return self._from_last(self._y)
        code = activation_code(self.activation)
        if code is None:
            z = z + bias if self.use_bias else z
            self._y, self._z, self._z_bias = self.activation(z), z, None
        else:
            self._y = K_bias_act.bias_activation_forward(z, bias if self.use_bias else None, code)
            self._z, self._z_bias = z, (np.array(bias) if self.use_bias else None)  # a copy: the optimizer updates b
        return self._from_last(self._y)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dz = act'(z + b) ⊙ dy (and db = Σ dz in the same pass when fused), then :meth:`backward_from_logits`."""
        dy = self._dy_last(dy)
        if self._fused is not None:
            return self._backward_fused(dy)
        if self._reference:
            dz, db = R_bias_act.bias_activation_backward(self._z, self._y, dy, self.activation)
            return self.backward_from_logits(self._from_last(dz), db=db if self.use_bias else None)
        code = activation_code(self.activation)
        if code is None:
            dz = np.asarray(self.activation.backward(self._z, self._y, dy), dtype=self.dtype)
            return self.backward_from_logits(self._from_last(dz))
        dz, db = K_bias_act.bias_activation_backward(self._y, dy, code, self.use_bias)
        return self.backward_from_logits(self._from_last(dz), db=db)

    def _dx(self, dx: np.ndarray | None) -> np.ndarray | None:
        """dx in data_format, or None when the model said the input needs no gradient."""
        return None if dx is None else self._from_last(dx)

    @property
    def logits(self) -> np.ndarray:
        """The pre-activation z + b of the last forward call (in data_format), which the models' cross-entropy
        shortcut reads after a final sigmoid. A layer that fused its activation into the convolution kernel (fast
        mode; every numba activation but sigmoid) keeps only its output, so there it is known for 'linear' alone."""
        if getattr(self, "_z", None) is None and getattr(self, "_y", None) is not None:  # only y was kept
            if self.activation.name == "linear":
                return self._from_last(self._y)
            raise ValueError(f"{self.who}: the logits of the last forward call were not kept: its "
                             f"{self.activation.name!r} ran fused with the convolution (they are kept for 'sigmoid')")
        z = self._z if self._z_bias is None else self._z + self._z_bias
        return self._from_last(z)
