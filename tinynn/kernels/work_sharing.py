r"""Share a pass over a batch out over the cores, in small pieces each core pulls when it is free.

Why pulled and not fixed halves: on cores shared with other processes one of two threads is often descheduled for
a while; with fixed halves the other then waits for it at the end, with pulled pieces it takes over the remaining
work. The image kernels (:mod:`tinynn.kernels.conv2d`, :mod:`tinynn.kernels.winograd`,
:mod:`tinynn.kernels.pooling2d`) run their numba loops (which release the GIL) and single-threaded BLAS calls
(numpy's BLAS held to one thread by :func:`tinynn.kernels.parallel.kernel_scope`) inside the pieces. The pulling
itself is :func:`tinynn.kernels.parallel.share`; this module adds the batch policy (when a pass is worth
splitting, how fine) and the per-worker scratch buffers, which the 1-D convolutions use too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import cblas
from .parallel import kernel_scope, num_threads, share

__all__ = ["scratch", "share_batch"]

#: Below this much work (multiply-adds, or numbers touched) a pass runs on the calling thread in one piece.
PARALLEL_WORK = 1 << 21
#: About this many pieces per thread (more pieces even out the threads' finishing times; fewer cost less).
PIECES_PER_THREAD = 8


def share_batch(task: Callable[[int, int, int], object], items: int, work: float, blas: bool = True) -> list:
    """``task(worker, start, stop)`` over consecutive ranges covering ``range(items)``; returns the results in range
    order.

    One call over everything when ``work`` is small, when there is one core, or when the pass calls BLAS and
    numpy's BLAS cannot be held to one thread (``blas``; it then threads each product itself). Otherwise each of
    the cores' threads pulls the next range until none is left; ``worker`` (0, 1, ...) names the thread, so
    that a task can keep per-thread scratch buffers and partial sums. BLAS runs single-threaded throughout.
    """
    workers = min(num_threads(), items)
    if work < PARALLEL_WORK or workers <= 1 or (blas and not cblas.can_limit_threads()):
        return [task(0, 0, items)]
    grain = max(1, -(-items // (PIECES_PER_THREAD * workers)))
    ranges = [(start, min(items, start + grain)) for start in range(0, items, grain)]
    with kernel_scope():  # BLAS on one thread per core; results in range order, whichever thread ran a range
        return share(task, ranges)


def scratch(workspace: dict, name: str, shape, dtype) -> np.ndarray:
    """A C-contiguous ``shape`` view of the reusable buffer ``workspace[name]`` (grown when too small): the per-worker
    scratch of a task (name it after the ``worker`` argument, e.g. ``f"cols{worker}"``)."""
    size = int(np.prod(shape))
    buf = workspace.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = workspace[name] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)
