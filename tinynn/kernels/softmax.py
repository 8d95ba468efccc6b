r"""Softmax along the last axis, for the short rows of a classifier's output.

Symbols: z (N, n) the rows (any leading axes flattened), y (N, n)::

    m_i = max_j z_ij        e_ij = exp(z_ij - m_i)        y_ij = e_ij / Σ_j e_ij

NumPy's version (:func:`tinynn.activations.softmax`, the NumPy twin; ``tests/test_softmax.py`` compares the two)
reduces along the last axis twice, and NumPy's reductions over short rows pay a fixed cost per row that outweighs
a short row's own work (a third of a small classifier's predict, benchmarks/RESULTS.md). Here the max and the
shift are one numba pass, ``exp`` NumPy's own (vectorised) over the whole array, and the sums and the division a
second numba pass.

The max propagates NaN as NumPy's does (a row with a NaN is all NaN); a row of -inf gives NaN (-inf - -inf), as in
NumPy. Each row's sum is added left to right in the dtype, where NumPy adds pairwise: the results agree to a few
units in the last place. Rows longer than :data:`MAX_ROW` keep NumPy's passes, which are vectorised along the row.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import activations, config
from . import warmup
from .jitcache import load_without_refresh

__all__ = ["MAX_ROW", "apply", "ready", "softmax"]

#: The longest rows this module takes; longer ones run NumPy's softmax (its reductions along a long row are
#: vectorised, these loops are not: at 1,000 columns NumPy was the faster, benchmarks/RESULTS.md).
MAX_ROW = 64


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _shift_by_row_max(z, out):  # pragma: no cover - compiled
    """out[i] = z[i] - max_j z[i, j] (NaN if the row holds a NaN)."""
    N, n = z.shape
    for i in range(N):
        zi, oi = z[i], out[i]
        m = zi[0]
        for j in range(1, n):
            v = zi[j]
            if v > m:
                m = v
            elif np.isnan(v):
                m = v
                break
        for j in range(n):
            oi[j] = zi[j] - m
    return out


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _divide_by_row_sum(e):  # pragma: no cover - compiled
    """e[i] /= Σ_j e[i, j], in place."""
    N, n = e.shape
    for i in range(N):
        ei = e[i]
        s = ei[0]
        for j in range(1, n):
            s += ei[j]
        for j in range(n):
            ei[j] = ei[j] / s
    return e


def softmax(z: np.ndarray) -> np.ndarray:
    """y = softmax(z) along the last axis (module docstring), a new array; z (..., n) float32 or float64, n ≥ 1."""
    if z.dtype.type not in _FLOATS or z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(f"softmax kernel: needs a float32 or float64 array with a non-empty last axis, got "
                         f"{z.dtype} {z.shape}")  # fmt: skip
    return _softmax_rows(z)


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    rows = np.ascontiguousarray(z).reshape(-1, z.shape[-1])
    out = np.empty_like(rows)
    if rows.shape[0]:
        _shift_by_row_max(rows, out)
        np.exp(out, out=out)
        _divide_by_row_sum(out)
    return out.reshape(z.shape)


_FLOATS = (np.float32, np.float64)
_ready: set = set()  # dtypes whose two kernels are compiled


def ready(dtype) -> bool:
    """Whether both kernels are compiled for ``dtype``; if not, they are compiled (or loaded) in the background and
    False is returned meanwhile (:func:`tinynn.kernels.warmup.kernel_ready`; always True in "wait" compile mode)."""
    return warmup.kernels_ready(_ready, dtype, _samples)


def _samples(dtype) -> list:
    """The kernels with arguments of the numba types :func:`apply` passes for ``dtype``."""
    m = np.empty((1, 1), dtype)
    return [(_shift_by_row_max, (m, m)), (_divide_by_row_sum, (m,))]


def apply(activation, z: np.ndarray) -> np.ndarray:
    """``activation(z)``, by :func:`softmax` when it is the softmax over rows of at most :data:`MAX_ROW` in float32
    or float64, the kernels are in use (fast mode) and compiled (:func:`ready`); else the activation itself."""
    if (activation is activations.softmax and z.ndim and 0 < z.shape[-1] <= MAX_ROW and z.dtype.type in _FLOATS
            and config.kernel_mode() == "fast" and ready(z.dtype)):  # fmt: skip
        return _softmax_rows(z)
    return activation(z)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
