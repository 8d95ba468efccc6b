r"""Array layouts the kernels work in, and the copies between them.

* Recurrent loops run time-major: ``to_time_major`` (B, T, F) -> (T, B, F) and ``to_batch_major`` back, with an
  optional time reversal (``go_backwards``) and mask (rows zeroed where m is False) in the same copy.
* Grouped convolutions run one GEMM per group: ``split_groups`` (B, T, G·n) -> (G, B·T, n) and
  ``merge_groups`` back.

The numba copies loop over rows: several times faster than ``np.ascontiguousarray(x.transpose(1, 0, 2))``
(measurements: ``benchmarks/RESULTS.md``). NumPy twins: :mod:`tinynn.kernels.reference.layout`.
"""

from __future__ import annotations

import numba
import numpy as np

from .jitcache import load_without_refresh

__all__ = ["merge_groups", "split_groups", "to_batch_major", "to_time_major"]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _to_time_major(x, reverse, mask, out):
    """out[t, b] = x[b, t'] (· mask[t, b]), t' = T-1-t if reverse else t."""
    B, T, F = x.shape
    use_mask = mask.shape[0] > 0
    for b in range(B):
        for t in range(T):
            dst, src = out[t, b], x[b, T - 1 - t if reverse else t]
            if use_mask and not mask[t, b]:
                for f in range(F):
                    dst[f] = 0
            else:
                for f in range(F):
                    dst[f] = src[f]


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _to_batch_major(y, reverse, mask, out):
    """out[b, t'] = y[t, b] (· mask[t, b]), t' = T-1-t if reverse else t."""
    T, B, F = y.shape
    use_mask = mask.shape[0] > 0
    for b in range(B):
        for t in range(T):
            dst, src = out[b, T - 1 - t if reverse else t], y[t, b]
            if use_mask and not mask[t, b]:
                for f in range(F):
                    dst[f] = 0
            else:
                for f in range(F):
                    dst[f] = src[f]


_NO_MASK = np.zeros((0, 0), np.bool_)


def _mask_arg(mask: np.ndarray | None, T: int, B: int) -> np.ndarray:
    if mask is None:
        return _NO_MASK
    if mask.shape != (T, B):  # numba does no bounds checks: a wrong mask would read outside it
        raise ValueError(f"layout: mask {mask.shape} does not fit (T, B) = {(T, B)}")
    return np.ascontiguousarray(mask, np.bool_)


def to_time_major(x: np.ndarray, reverse: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
    """(B, T, F) -> (T, B, F), optionally reversing time and zeroing rows where ``mask`` (T, B) is False."""
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[1], x.shape[0], x.shape[2]), x.dtype)
    _to_time_major(x, bool(reverse), _mask_arg(mask, x.shape[1], x.shape[0]), out)
    return out


def to_batch_major(y: np.ndarray, reverse: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
    """(T, B, F) -> (B, T, F): the inverse of :func:`to_time_major` (``mask`` indexed (T, B) like ``y``)."""
    y = np.ascontiguousarray(y)
    out = np.empty((y.shape[1], y.shape[0], y.shape[2]), y.dtype)
    _to_batch_major(y, bool(reverse), _mask_arg(mask, y.shape[0], y.shape[1]), out)
    return out


def split_groups(a: np.ndarray, groups: int) -> np.ndarray:
    """(B, T, G·n) -> contiguous (G, B·T, n); a free reshape when G = 1."""
    B, T, N = a.shape
    if groups == 1:
        return np.ascontiguousarray(a).reshape(1, B * T, N)
    return np.ascontiguousarray(a.reshape(B * T, groups, N // groups).transpose(1, 0, 2))


def merge_groups(a_g: np.ndarray, B: int, T: int) -> np.ndarray:
    """(G, B·T, n) -> (B, T, G·n)."""
    G, _, n = a_g.shape
    if G == 1:
        return a_g.reshape(B, T, n)
    return np.ascontiguousarray(a_g.transpose(1, 0, 2)).reshape(B, T, G * n)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
