r"""The optimizers' ops on row-sparse gradients, fused: one pass over the occurrence rows, no temporaries.

The chain ``t_n = ±(c·v_n^{1|2}) / D[i_n]`` and the in-order scatter ``out[i_n] += t_n`` are stated in
:mod:`tinynn.kernels.reference.sparse` (the NumPy twin, ``np.add.at`` over the materialised rows). Here each
element goes through the same IEEE operations in the same order, so both give bitwise the same ``out``
(``tests/test_sparse.py``). For an Embedding on 128 × 500 ids an RMSprop step materialised ~6 arrays of
64,000 × 128 rows in NumPy; this is one read of the rows and the touched table rows.
"""

from __future__ import annotations

import numba
import numpy as np

from . import warmup
from .jitcache import load_without_refresh

__all__ = ["ready", "scatter_chain"]


@numba.njit(cache=True, nogil=True, error_model="numpy")  # IEEE division (x/0 = ±inf, as the twin): vectorised
def _scatter_chain(out, idx, v, squared, c, scaled, D, divided, negate):  # pragma: no cover - compiled
    F = out.shape[1]
    for n in range(idx.shape[0]):
        r = idx[n]
        vn, o, d = v[n], out[r], D[r]
        for f in range(F):
            t = vn[f]
            if squared:
                t = t * t
            if scaled:
                t = c * t
            if divided:
                t = t / d[f]
            if negate:
                t = -t
            o[f] += t
    return out


def scatter_chain(out: np.ndarray, idx: np.ndarray, v: np.ndarray, squared: bool = False, c=None, D=None,
                  negate: bool = False) -> np.ndarray:  # fmt: skip
    """As :func:`tinynn.kernels.reference.sparse.scatter_chain`, for 2-D ``out`` (V, F), rows ``v`` (N, F) and
    ids ``idx`` (N,) in [0, V); ``c`` a scalar of out's dtype, ``D`` (V, F) or None. Checked here: the numba
    loop does no bounds checks."""
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    V, F = out.shape
    if idx.ndim != 1 or v.shape != (idx.shape[0], F) or (D is not None and D.shape != (V, F)):
        raise ValueError(f"scatter_chain: ids {idx.shape}, rows {v.shape} and D {getattr(D, 'shape', None)} do not "
                         f"fit a ({V}, {F}) table")  # fmt: skip
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(f"scatter_chain: ids must be in [0, {V}), got [{idx.min()}, {idx.max()}]")
    dtype = out.dtype.type
    v = np.ascontiguousarray(v, dtype=out.dtype)
    D_rows = out if D is None else np.ascontiguousarray(D, dtype=out.dtype)  # never read when D is None
    return _scatter_chain(out, idx, v, bool(squared), dtype(0 if c is None else c), c is not None, D_rows,
                          D is not None, bool(negate))  # fmt: skip


_NO_IDS = np.zeros(0, np.int64)


def ready(out: np.ndarray) -> bool:
    """Whether the numba chain can run on the table ``out`` now (compiled, or still compiling in the background:
    :func:`tinynn.kernels.warmup.kernel_ready`); the NumPy twin gives the same bits meanwhile."""
    rows, zero = np.zeros((0, out.shape[1]), out.dtype), out.dtype.type(0)
    return warmup.kernel_ready(_scatter_chain, out, _NO_IDS, rows, False, zero, False, out, False, False)


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
