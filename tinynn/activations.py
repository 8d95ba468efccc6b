"""Activation functions with their derivatives, as Keras 3 defines them.

Each activation ``a = f(z)`` is an :class:`ActivationFunction`: calling it gives ``f(z)``; its
``backward(z, a, da)`` returns ``dz = da * f'(z)`` (softmax: the Jacobian-vector product
``dz = a * (da - Σ_j da_j a_j)`` along the softmax axis). Both the pre-activation ``z`` and the output
``a`` are passed so that each derivative uses whichever is cheaper and more accurate.

Definitions (``keras/src/activations/activations.py``):
    relu(z) = max(z, 0)                      relu'(z) = [z > 0]
    sigmoid(z) = 1 / (1 + e^-z)              σ' = a (1 - a)
    hard_sigmoid(z) = clip(z/6 + 1/2, 0, 1)  derivative 1/6 on -3 < z < 3
    tanh                                     1 - a²
    softmax(z)_i = e^{z_i} / Σ_j e^{z_j}
    gelu(z) = z Φ(z), Φ(z) = erfc(-z/√2)/2 (exact form)       Φ(z) + z φ(z)
    elu(z) = z if z > 0 else e^z - 1         1 or a + 1
    selu(z) = λ elu_α(z)                     λ or λ α e^z
    softplus(z) = log(1 + e^z)               σ(z)
    softsign(z) = z / (1 + |z|)              1 / (1 + |z|)²
    swish(z) = silu(z) = z σ(z)              σ(z) (1 + z (1 - σ(z)))
    leaky_relu(z) = z if z > 0 else 0.2 z    1 or 0.2
    relu6(z) = min(max(z, 0), 6)             [0 < z < 6]
    exponential(z) = e^z                     a
    linear(z) = z                            1
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .lazy import LazyModule

special = LazyModule("scipy.special")  # erfc (gelu): imported when first used

ArrayFn = Callable[..., np.ndarray]

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
LEAKY_RELU_SLOPE = float(np.float32(0.2))  # TF's leaky_relu takes alpha as a float32 attribute


class ActivationFunction:
    """A named elementwise (or softmax) function with its hand-written derivative."""

    def __init__(self, name: str, forward: ArrayFn, backward: ArrayFn):
        self.__name__ = name
        self.name = name
        self._forward = forward
        self._backward = backward

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self._forward(z)

    def backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
        """dL/dz given dL/da, the input ``z`` and the output ``a = f(z)``."""
        return self._backward(z, a, da)

    def __repr__(self) -> str:
        return f"<activation {self.name}>"


def _cast(value, like: np.ndarray):
    return np.asarray(value, dtype=like.dtype)


def expit(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^-z) with no overflow: with e = e^-|z|, σ = 1 / (1 + e) for z ≥ 0 and e / (1 + e) for
    z < 0 (the two branches of scipy.special.expit, here in NumPy so that a sigmoid does not import scipy)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1, e) / (1 + e)


def _softmax(z, axis=-1):
    shifted = z - z.max(axis=axis, keepdims=True)
    e = np.exp(shifted, out=shifted)  # (in place: the same numbers, fewer temporaries)
    return np.divide(e, e.sum(axis=axis, keepdims=True), out=e)


def _softmax_backward(z, a, da, axis=-1):
    return a * (da - np.sum(da * a, axis=axis, keepdims=True))


# TF computes Φ(z) = erfc(-z · c)/2 with c = 1/√2 cast through float32 (tf.cast of a Python float makes a
# float32 constant first), so float64 Keras uses c = 0.70710677... We use the same constant to match it.
_GELU_C = float(np.float32(0.7071067811865476))


def _gelu(z):
    # The erfc form keeps precision for negative z, where 1 + erf(.) cancels.
    return 0.5 * z * special.erfc(-z * _GELU_C)


def _gelu_backward(z, a, da):
    cdf = 0.5 * special.erfc(-z * _GELU_C)
    pdf = np.exp(-((z * _GELU_C) ** 2)) * (_GELU_C / math.sqrt(math.pi))  # d/dz of erfc(-cz)/2
    return da * (cdf + z * pdf)


def _swish_backward(z, a, da):
    s = expit(z)
    return da * (s * (1.0 + z * (1.0 - s)))


linear = ActivationFunction("linear", lambda z: z, lambda z, a, da: da)
relu = ActivationFunction("relu", lambda z: np.maximum(z, _cast(0, z)), lambda z, a, da: da * (z > 0))
sigmoid = ActivationFunction("sigmoid", expit, lambda z, a, da: da * a * (1.0 - a))
hard_sigmoid = ActivationFunction(
    "hard_sigmoid",
    lambda z: np.clip(z / _cast(6, z) + _cast(0.5, z), 0, 1).astype(z.dtype),
    lambda z, a, da: da * ((z > -3) & (z < 3)) / _cast(6, da),
)
tanh = ActivationFunction("tanh", np.tanh, lambda z, a, da: da * (1.0 - a * a))
softmax = ActivationFunction("softmax", _softmax, _softmax_backward)
gelu = ActivationFunction("gelu", _gelu, _gelu_backward)
elu = ActivationFunction(
    "elu", lambda z: np.where(z > 0, z, np.expm1(z)), lambda z, a, da: da * np.where(z > 0, 1.0, a + 1.0)
)
selu = ActivationFunction(
    "selu",
    lambda z: (SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(z))).astype(z.dtype),
    lambda z, a, da: da * np.where(z > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * np.exp(z)).astype(da.dtype),
)
softplus = ActivationFunction(
    "softplus", lambda z: np.logaddexp(_cast(0, z), z), lambda z, a, da: da * expit(z)
)
softsign = ActivationFunction(
    "softsign", lambda z: z / (1.0 + np.abs(z)), lambda z, a, da: da / np.square(1.0 + np.abs(z))
)
swish = ActivationFunction("swish", lambda z: z * expit(z), _swish_backward)
silu = ActivationFunction("silu", lambda z: z * expit(z), _swish_backward)
leaky_relu = ActivationFunction(
    "leaky_relu",
    lambda z: np.where(z > 0, z, _cast(LEAKY_RELU_SLOPE, z) * z),
    lambda z, a, da: da * np.where(z > 0, 1.0, LEAKY_RELU_SLOPE).astype(da.dtype),
)
relu6 = ActivationFunction(
    "relu6", lambda z: np.clip(z, 0, 6).astype(z.dtype), lambda z, a, da: da * ((z > 0) & (z < 6))
)
exponential = ActivationFunction("exponential", np.exp, lambda z, a, da: da * a)

ALL: dict[str, ActivationFunction] = {
    f.name: f
    for f in (
        linear, relu, sigmoid, hard_sigmoid, tanh, softmax, gelu, elu, selu,
        softplus, softsign, swish, silu, leaky_relu, relu6, exponential,
    )
}


def get(identifier: str | ActivationFunction | None) -> ActivationFunction:
    """Resolve an activation the way ``keras.activations.get`` does: None -> linear, names, or objects."""
    if identifier is None:
        return linear
    if isinstance(identifier, ActivationFunction):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ALL:
            return ALL[key]
        raise ValueError(f"Unknown activation {identifier!r}; tinynn knows {sorted(ALL)}")
    raise ValueError(
        f"Activation {identifier!r} is not a tinynn activation. tinynn writes every derivative by hand, so "
        "pass a name, a tinynn.activations function, or ActivationFunction(name, forward, backward)."
    )


def serialize(fn: ActivationFunction) -> str:
    if fn.name not in ALL or ALL[fn.name] is not fn:
        raise ValueError(f"Activation {fn.name!r} is custom and cannot be saved by name")
    return fn.name
