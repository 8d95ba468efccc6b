r"""Embedding lookup and its gradient: a gather of table rows, a scatter-add of the output gradient rows.

    y[n] = W[idx[n]]                    (gather)
    δW[v] = Σ_{n : idx[n] = v} δy[n]    (scatter-add, rows in order n = 0, 1, …)

``gather`` and ``scatter_add`` are the numba kernels; :func:`tinynn.kernels.reference.embedding.embedding_forward`
(NumPy ``take``) and :func:`tinynn.kernels.reference.embedding.scatter_add` (``np.add.at``, much slower) their
NumPy twins. The gather copies rows (the same bits); the scatter-adds add the rows in the same order, so they agree
exactly.
"""

from __future__ import annotations

import numba
import numpy as np

from . import warmup
from .jitcache import load_without_refresh
from .parallel import even_ranges, kernel_entry, kernel_scope, num_threads, share

__all__ = ["gather", "gather_ready", "ready", "scatter_add"]


@numba.njit(cache=True, nogil=True)
def _gather(W, idx, y, r0, r1):  # pragma: no cover - compiled
    """y[n] = W[idx[n]] for r0 <= n < r1 (row copies)."""
    for n in range(r0, r1):
        src, dst = W[idx[n]], y[n]
        for d in range(src.shape[0]):
            dst[d] = src[d]


#: From this many numbers in y the rows of a lookup are split between the cores (a large lookup is a memory copy
#: that one core does not saturate: benchmarks/RESULTS.md); smaller ones are one NumPy ``take``.
GATHER_SPLIT = 1 << 20


def gather(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """y (N, D) with y[n] = W[idx[n]], for a table W (V, D) and ids idx (N,) int64 in [0, V) (checked here: the
    numba loop does no bounds checks); the bits of ``np.take(W, idx, axis=0)``."""
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    V, D = W.shape
    if idx.ndim != 1:
        raise ValueError(f"gather: ids must be one-dimensional, got shape {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(f"gather: ids must be in [0, {V}), got [{idx.min()}, {idx.max()}]")
    if idx.shape[0] * D < GATHER_SPLIT:
        return np.take(W, idx, axis=0)
    W = np.ascontiguousarray(W)
    y = np.empty((idx.shape[0], D), W.dtype)
    with kernel_scope():
        share(lambda _, r0, r1: _gather(W, idx, y, r0, r1), even_ranges(idx.shape[0], num_threads()))
    return y


@numba.njit(cache=True, nogil=True)
def _scatter_add(grad, idx, dy):
    D = grad.shape[1]
    for n in range(idx.shape[0]):
        row = idx[n]
        for d in range(D):
            grad[row, d] += dy[n, d]


@kernel_entry
def scatter_add(grad: np.ndarray, idx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``grad[idx[n]] += dy[n]`` for every n, in place; grad (V, D), idx (N,) int64 in [0, V), dy (N, D).

    Shapes and the id range are checked here: the numba loop does no bounds checks."""
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    V, D = grad.shape
    if idx.ndim != 1 or dy.shape != (idx.shape[0], D):
        raise ValueError(f"scatter_add: ids {idx.shape} and rows {dy.shape} do not fit a ({V}, {D}) table")
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(f"scatter_add: ids must be in [0, {V}), got [{idx.min()}, {idx.max()}]")
    _scatter_add(grad, idx, np.ascontiguousarray(dy, dtype=grad.dtype))
    return grad


_NO_IDS = np.zeros(0, np.int64)


def gather_ready(W: np.ndarray) -> bool:
    """Whether the numba gather can run on this table now (as :func:`ready`)."""
    return warmup.kernel_ready(_gather, W, _NO_IDS, np.zeros((0, W.shape[1]), W.dtype), 0, 0)


def ready(grad: np.ndarray) -> bool:
    """Whether the numba scatter-add can run on this table now (compiled, or still compiling in the background:
    :func:`tinynn.kernels.warmup.kernel_ready`)."""
    return warmup.kernel_ready(_scatter_add, grad, _NO_IDS, np.zeros((0, grad.shape[1]), grad.dtype))


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
