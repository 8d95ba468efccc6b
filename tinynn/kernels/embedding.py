r"""Embedding lookup gradient: a scatter-add of the output gradient rows into a dense table.

    y[n] = W[idx[n]]                    (gather; NumPy ``take``)
    δW[v] = Σ_{n : idx[n] = v} δy[n]    (scatter-add, rows in order n = 0, 1, …)

``scatter_add`` is the numba kernel; :func:`tinynn.kernels.reference.embedding.scatter_add` its NumPy twin
(``np.add.at``, much slower). Both add the rows in the same order, so they agree exactly.
"""

from __future__ import annotations

import numba
import numpy as np

from . import warmup
from .parallel import kernel_entry

__all__ = ["ready", "scatter_add"]


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


def ready(grad: np.ndarray) -> bool:
    """Whether the numba scatter-add can run on this table now (compiled, or still compiling in the background:
    :func:`tinynn.kernels.warmup.kernel_ready`)."""
    return warmup.kernel_ready(_scatter_add, grad, _NO_IDS, np.zeros((0, grad.shape[1]), grad.dtype))
