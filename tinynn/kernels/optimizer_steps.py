r"""Dense optimizer steps in one pass: RMSprop's and Adam's update of a variable and its slots, per element.

For a dense gradient g, with every scalar in the variable's dtype::

    RMSprop (centered=False, momentum=0):   v ← ρ·v + (1-ρ)·(g·g)
                                            w ← w - (η·g) / sqrt(v + ε)
    Adam (amsgrad=False):                   m ← m + (g - m)·(1-β₁)
                                            v ← v + (g·g - v)·(1-β₂)
                                            w ← w - (m·α) / (sqrt(v) + ε)      α = η·sqrt(1-β₂ᵗ) / (1-β₁ᵗ)

For an Embedding's row-sparse gradient (rows g_n for ids i_n, one per occurrence; :mod:`tinynn.sparse`) RMSprop's
step is, per table row r with occurrences n₁ < n₂ < … (none for most rows in a small batch)::

    RMSprop rows:   S  = 0 + (1-ρ)·(g_{n₁}·g_{n₁}) + (1-ρ)·(g_{n₂}·g_{n₂}) + …     (summed in occurrence order)
                    v[r] ← ρ·v[r] + S
                    q  = sqrt(v[r] + ε)
                    w[r] ← w[r] + -((η·g_{n₁}) / q),  then + -((η·g_{n₂}) / q), …

the occurrences grouped by row first (a stable counting sort), the rows shared between the cores: each row's
occurrences are read twice while they are in the cache, and v and w once, where the twin's sparse ops read every
occurrence twice from memory and v about six times.

The NumPy twin is the optimizer's own ``update_step`` (:mod:`tinynn.optimizers.rmsprop`, :mod:`~.adam`), which
states these lines with whole-array and sparse ops and handles every other case (centered, momentum, amsgrad, Adam
on IndexedSlices) and the 'reference' kernel mode. Each element here goes through the same IEEE operations in the
same order (no fast-math, no fused multiply-add), so both give the same bits (``tests/test_optimizer_steps.py``);
the loop does in one pass what the twin does in about eight, each with its own temporary: on a (320, 128) kernel
in float32, ~14 µs instead of ~57, and a bias of 128 numbers ~1.3 µs instead of ~6 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import numba
import numpy as np

from .. import config
from . import denormals, warmup
from .jitcache import load_without_refresh
from .parallel import num_threads, share

__all__ = ["adam", "fits", "fits_rows", "rmsprop", "rmsprop_rows"]


@numba.njit(error_model="numpy", cache=True, nogil=True)  # IEEE division and sqrt: the loop vectorises
def _rmsprop(w, g, v, rho, one_minus_rho, epsilon, lr):  # pragma: no cover - compiled
    for i in range(w.shape[0]):
        gi = g[i]
        vi = rho * v[i] + one_minus_rho * (gi * gi)
        v[i] = vi
        w[i] = w[i] - (lr * gi) / np.sqrt(vi + epsilon)


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _adam(w, g, m, v, one_minus_beta_1, one_minus_beta_2, alpha, epsilon):  # pragma: no cover - compiled
    for i in range(w.shape[0]):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta_1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - (mi * alpha) / (np.sqrt(vi) + epsilon)


@numba.njit(cache=True, nogil=True)
def _group_by_row(ids, rows):  # pragma: no cover - compiled
    """(starts (rows+1,), order (N,)): the occurrences of row r are order[starts[r]:starts[r+1]], ascending."""
    starts = np.zeros(rows + 1, np.int64)
    for n in range(ids.shape[0]):
        starts[ids[n] + 1] += 1
    for r in range(rows):
        starts[r + 1] += starts[r]
    fill = starts[:-1].copy()
    order = np.empty(ids.shape[0], np.int64)
    for n in range(ids.shape[0]):
        r = ids[n]
        order[fill[r]] = n
        fill[r] += 1
    return starts, order


@numba.njit(error_model="numpy", cache=True, nogil=True)
def _rmsprop_rows(w, v, g, order, starts, r0, r1, rho, one_minus_rho, epsilon, lr):  # pragma: no cover - compiled
    """Rows r0 <= r < r1 of the row-sparse step (module docstring): w, v (V, F), g (N, F). (The same loops over
    flat arrays with computed offsets did not vectorise and ran several times slower.)"""
    F = w.shape[1]
    s = np.empty(F, w.dtype)
    for r in range(r0, r1):
        wr, vr = w[r], v[r]
        for f in range(F):
            s[f] = 0
        for j in range(starts[r], starts[r + 1]):
            gn = g[order[j]]
            for f in range(F):
                gi = gn[f]
                s[f] += one_minus_rho * (gi * gi)
        for f in range(F):
            vi = rho * vr[f] + s[f]
            vr[f] = vi
            s[f] = np.sqrt(vi + epsilon)  # q
        for j in range(starts[r], starts[r + 1]):
            gn = g[order[j]]
            for f in range(F):
                wr[f] += -((lr * gn[f]) / s[f])


def _flat(*arrays: np.ndarray) -> tuple:
    return tuple(a.reshape(-1) for a in arrays)


def fits(w: np.ndarray, g, *slots: np.ndarray) -> bool:
    """Whether a fused step may update ``w`` and ``slots`` from ``g``: the 'fast' kernel mode, a dense gradient of
    w's shape and dtype (float32 or float64), w and the slots contiguous arrays of that shape and dtype, w
    writeable. Otherwise the optimizer runs its NumPy twin."""
    if config.kernel_mode() != "fast" or type(g) is not np.ndarray or w.dtype not in (np.float32, np.float64):
        return False
    return (g.shape == w.shape and g.dtype == w.dtype and w.flags.c_contiguous and w.flags.writeable
            and all(s.shape == w.shape and s.dtype == w.dtype and s.flags.c_contiguous for s in slots))  # fmt: skip


#: (kernel, dtype) pairs found compiled: the arguments' types follow from the dtype alone (1-D contiguous arrays
#: and scalars of it), so later steps skip :func:`tinynn.kernels.warmup.kernel_ready` (~5 µs, more than a small
#: variable's whole step).
_READY: set = set()


def _run(kernel, args: tuple) -> bool:
    key = (kernel, args[0].dtype)
    if key not in _READY:
        if not warmup.kernel_ready(kernel, *args):
            return False
        _READY.add(key)
    kernel(*args)
    return True


def rmsprop(w: np.ndarray, g: np.ndarray, v: np.ndarray, rho, one_minus_rho, epsilon, lr) -> bool:
    """RMSprop's dense step (module docstring) in place, if its kernel is ready (compiled, or loading in the
    background: then False, nothing done, and the caller runs the twin). Call only where :func:`fits`."""
    t = w.dtype.type
    return _run(_rmsprop, (*_flat(w, np.ascontiguousarray(g), v), t(rho), t(one_minus_rho), t(epsilon), t(lr)))


def adam(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, one_minus_beta_1, one_minus_beta_2, alpha,
         epsilon) -> bool:  # fmt: skip
    """Adam's dense step (module docstring) in place, as :func:`rmsprop`."""
    t = w.dtype.type
    return _run(_adam, (*_flat(w, np.ascontiguousarray(g), m, v), t(one_minus_beta_1), t(one_minus_beta_2), t(alpha),
                        t(epsilon)))  # fmt: skip


#: The shortest table row (bytes) the row-sparse step takes: on narrower rows the loops are too short and the
#: twin's sparse ops, which stream the occurrences in order, were faster (benchmarks/RESULTS.md).
ROWS_MIN_BYTES = 64


def fits_rows(w: np.ndarray, g, v: np.ndarray) -> bool:
    """Whether :func:`rmsprop_rows` may update the table ``w`` (V, F) and its velocity ``v`` from ``g``: the 'fast'
    kernel mode, ``g`` an :class:`tinynn.sparse.IndexedSlices` with no op recorded on it and rows (N, F) of w's
    dtype, w and v contiguous (V, F) float32/float64 arrays, w writeable, rows of at least :data:`ROWS_MIN_BYTES`.
    Otherwise the optimizer runs its twin."""
    from ..sparse import IndexedSlices  # the package's sparse module imports the kernels

    if config.kernel_mode() != "fast" or not isinstance(g, IndexedSlices) or g.pending:
        return False
    rows = g._rows
    return (w.ndim == 2 and w.dtype in (np.float32, np.float64) and w.flags.c_contiguous and w.flags.writeable
            and v.shape == w.shape and v.dtype == w.dtype and v.flags.c_contiguous and g.dense_shape == w.shape
            and rows.ndim == 2 and rows.shape[1] == w.shape[1] and rows.dtype == w.dtype
            and g.indices.shape == rows.shape[:1] and w.shape[1] * w.itemsize >= ROWS_MIN_BYTES)  # fmt: skip


#: Ranges of table rows per core in the row-sparse step: the cores claim them one at a time (:func:`share`).
ROW_PIECES_PER_THREAD = 2
#: Below this many numbers (occurrence rows plus table rows, times F) the step runs on the calling thread alone.
ROWS_SHARED_FROM = 1 << 20


def _row_ranges(starts: np.ndarray, pieces: int) -> list[tuple[int, int]]:
    """Contiguous row ranges of about equal work: a row costs its two dense passes plus two per occurrence."""
    rows = starts.shape[0] - 1
    cost = 2 * starts + np.arange(rows + 1)  # work before row r; rises with r
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, pieces) / pieces)
    bounds = np.unique(np.concatenate(([0], cuts, [rows])))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


_ROWS_READY: set = set()  # dtypes whose row-sparse kernels are compiled


def _rows_samples(d) -> list:
    """The row-sparse step's kernels with arguments of the numba types :func:`rmsprop_rows` passes for dtype ``d``."""
    table, ids, t = np.empty((1, 1), d), np.empty(1, np.int64), np.dtype(d).type(0)
    return [(_group_by_row, (ids, 1)), (_rmsprop_rows, (table, table, table, ids, ids, 0, 0, t, t, t, t))]


def rmsprop_rows(w: np.ndarray, g, v: np.ndarray, rho, one_minus_rho, epsilon, lr) -> bool:
    """RMSprop's row-sparse step (module docstring) in place, if its kernels are ready (else False, nothing done:
    the caller runs the twin). Call only where :func:`fits_rows`; the ids are checked to lie in the table here."""
    ids = np.ascontiguousarray(g.indices, dtype=np.int64)
    V, F = w.shape
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"RMSprop on an Embedding table of {V} rows: gradient ids must be in [0, {V}), got "
                         f"[{ids.min()}, {ids.max()}]")  # fmt: skip
    t = w.dtype.type
    rows = np.ascontiguousarray(g._rows)
    scalars = (t(rho), t(one_minus_rho), t(epsilon), t(lr))
    if not warmup.kernels_ready(_ROWS_READY, w.dtype, _rows_samples):
        return False
    starts, order = _group_by_row(ids, V)

    def piece(_, r0, r1):
        with denormals.keep_subnormals():  # tinynn's worker threads flush them; the twin keeps them
            _rmsprop_rows(w, v, rows, order, starts, r0, r1, *scalars)

    if (ids.shape[0] + V) * F < ROWS_SHARED_FROM:
        piece(0, 0, V)
    else:
        share(piece, _row_ranges(starts, ROW_PIECES_PER_THREAD * num_threads()))
    return True


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
