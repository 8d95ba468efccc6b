r"""The activation codes of the numba kernels, vectorisable tanh / sigmoid, and per-row activation passes.

Why: numba turns ``math.tanh`` / ``math.exp`` into scalar libm calls (no SVML here), which LLVM cannot
vectorise; a naive LSTM loop spent most of its time there. A rational approximation is pure
arithmetic (FMA, min/max, one division), so LLVM vectorises it 8 floats (AVX2) at a time:

    tanh(x) ≈ (x + x³·P(x²)) / Q(x²),  x clamped to [-c, c]

with Eigen's minimax coefficients (the ones TensorFlow's own CPU kernels use):
float32 a [9/8] rational, max error 5 ulp on R (≈ 3e-7 absolute); float64 a [19/18] rational, max error
8 ulp (≈ 9e-16 absolute). ``sigmoid(x) = ½·tanh(x/2) + ½`` (absolute error < 1.5e-7 / 5e-16).

Two more things keep the loops vectorised: ``error_model="numpy"`` on every kernel (numba's default
"python" model tests each float division for ZeroDivisionError, a branch that blocks vectorisation),
and dispatching on the activation *outside* the inner loops (``activate`` / ``derivative`` loop over a
column range of a 2-D array with the branch hoisted).

Activation codes (activations the numba kernels know; others run the NumPy reference path)::

    LINEAR a = z            a' = 1
    TANH   a = tanh z       a' = 1 - a²
    SIGMOID a = σ(z)        a' = a (1 - a)
    RELU   a = max(z, 0)    a' = [a > 0]
    HARD_SIGMOID a = clip(z/6 + ½, 0, 1)   a' = [0 < a < 1] / 6

Every derivative is written in terms of the output ``a``, so the kernels store activations only.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .. import activations as _activations
from .jitcache import load_without_refresh

LINEAR, TANH, SIGMOID, RELU, HARD_SIGMOID = 0, 1, 2, 3, 4
_CODES = {"linear": LINEAR, "tanh": TANH, "sigmoid": SIGMOID, "relu": RELU, "hard_sigmoid": HARD_SIGMOID}


def activation_code(fn) -> int | None:
    """The kernel code of a tinynn activation, or None if the numba kernels do not implement it."""
    code = _CODES.get(getattr(fn, "name", None))
    if code is None or _activations.ALL.get(fn.name) is not fn:
        return None
    return code


# Eigen (GenericPacketMathFunctions.h, ptanh_float / ptanh_double): odd numerator, even denominator.
_A32 = (1.394553628e-8, 2.102733560e-5, 3.520756727e-3, 1.340216100e-1)
_B32 = (8.015776984e-7, 3.326951409e-4, 2.597254514e-2, 4.673548340e-1)
_C32 = 7.90738964080810547  # the approximation reaches exactly ±1 here (no FMA contraction)
_A64 = (
    2.6158007860482230e-23, 7.6534862268749319e-19, 3.1309488231386680e-15, 4.2303918148209176e-12,
    2.4618379131293676e-09, 6.8644367682497074e-07, 9.3839087674268880e-05, 5.9809711724441161e-03,
    1.5184719640284322e-01,
)
_B64 = (
    6.463747022670968018e-21, 5.782506856739003571e-17, 1.293019623712687916e-13, 1.123643448069621992e-10,
    4.492975677839633985e-08, 8.785185266237658698e-06, 8.295161192716231542e-04, 3.437448108450402717e-02,
    4.851805297361760360e-01,
)
_C64 = 17.714196154005176


def tanh_fast(x):
    """Rational tanh (see module docstring); in Python it is ``np.tanh``."""
    return np.tanh(x)


def sigmoid_fast(x):
    """``½ tanh(x/2) + ½``; in Python it is the exact logistic function."""
    return 0.5 * np.tanh(0.5 * x) + 0.5


def relu_fast(x):
    """``max(x, 0)`` as NumPy's ``maximum`` gives it: NaN stays NaN, -inf gives 0; in Python it is that. Compiled,
    one compare and select (``0 if x < 0 else x``), which LLVM vectorises; the earlier ``x if x > 0 else x * 0``
    took a multiply more and gave NaN for -inf."""
    return np.maximum(x, 0)


@overload(relu_fast)
def _relu_fast_impl(x):
    if isinstance(x, types.Float):
        zero = np.float32(0.0) if x.bitwidth == 32 else 0.0

        def impl(x):
            return zero if x < 0 else x

        return impl
    return None


@overload(tanh_fast)
def _tanh_fast_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        a0, a1, a2, a3 = (np.float32(v) for v in _A32)
        b0, b1, b2, b3 = (np.float32(v) for v in _B32)
        c, one = np.float32(_C32), np.float32(1.0)

        def impl32(x):
            x = min(max(x, -c), c)
            x2 = x * x
            p = ((a0 * x2 + a1) * x2 + a2) * x2 + a3
            q = (((b0 * x2 + b1) * x2 + b2) * x2 + b3) * x2 + one
            return (x2 * x * p + x) / q

        return impl32
    if isinstance(x, types.Float):
        A, Bq, c = _A64, _B64, _C64

        def impl64(x):
            x = min(max(x, -c), c)
            x2 = x * x
            p = A[0]
            p = p * x2 + A[1]
            p = p * x2 + A[2]
            p = p * x2 + A[3]
            p = p * x2 + A[4]
            p = p * x2 + A[5]
            p = p * x2 + A[6]
            p = p * x2 + A[7]
            p = p * x2 + A[8]
            q = Bq[0]
            q = q * x2 + Bq[1]
            q = q * x2 + Bq[2]
            q = q * x2 + Bq[3]
            q = q * x2 + Bq[4]
            q = q * x2 + Bq[5]
            q = q * x2 + Bq[6]
            q = q * x2 + Bq[7]
            q = q * x2 + Bq[8]
            q = q * x2 + 1.0
            return (x2 * x * p + x) / q

        return impl64
    return None


@overload(sigmoid_fast)
def _sigmoid_fast_impl(x):
    if isinstance(x, types.Float):
        half = np.float32(0.5) if x.bitwidth == 32 else 0.5

        def impl(x):
            return half * tanh_fast(half * x) + half

        return impl
    return None


@numba.njit(error_model="numpy", cache=True, nogil=True)
def activate_row(v, code):
    """``v = act(v)`` in place on a 1-D slice (a row's gate block).

    The loops run from 0 over a 1-D slice: with 2-D indexing, or a loop from a runtime j0 > 0, numba's
    negative-index wraparound cannot be proven dead and LLVM does not vectorise the loop.
    """
    n = v.shape[0]
    if code == TANH:
        for j in range(n):
            v[j] = tanh_fast(v[j])
    elif code == SIGMOID:
        for j in range(n):
            v[j] = sigmoid_fast(v[j])
    elif code == RELU:
        for j in range(n):
            v[j] = relu_fast(v[j])
    elif code == HARD_SIGMOID:
        for j in range(n):
            x = v[j] / type(v[j])(6.0) + type(v[j])(0.5)
            v[j] = min(max(x, x * 0), type(x)(1.0))


@numba.njit(error_model="numpy", cache=True, nogil=True)
def derivative_row(d, a, code):
    """``d = act'(·)`` from the output ``a`` (1-D slices)."""
    n = a.shape[0]
    if code == LINEAR:
        for j in range(n):
            d[j] = type(a[j])(1.0)
    elif code == TANH:
        for j in range(n):
            v = a[j]
            d[j] = type(v)(1.0) - v * v
    elif code == SIGMOID:
        for j in range(n):
            v = a[j]
            d[j] = v * (type(v)(1.0) - v)
    elif code == RELU:
        for j in range(n):
            d[j] = type(a[j])(1.0) if a[j] > 0 else type(a[j])(0.0)
    else:  # HARD_SIGMOID
        for j in range(n):
            v = a[j]
            d[j] = type(v)(1.0 / 6.0) if (v > 0 and v < 1) else type(v)(0.0)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def activate(z, j0, j1, code):
    """``z[:, j0:j1] = act(z[:, j0:j1])`` in place (z 2-D, C-contiguous), one row slice at a time."""
    for b in range(z.shape[0]):
        activate_row(z[b, j0:j1], code)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def derivative(d, a, j0, j1, code):
    """``d[:, j0:j1] = act'(·)`` written from the activation's output ``a[:, j0:j1]``."""
    for b in range(a.shape[0]):
        derivative_row(d[b, j0:j1], a[b, j0:j1], code)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
