"""Run independent pieces of work on the machine's cores.

The numba kernels release the GIL (``nogil=True``), so Python threads can run two of them at once: the two
directions of a Bidirectional layer, the two halves of a large GEMM, δx next to δW. Keras/TensorFlow uses
every core the same way. Each piece runs single-threaded inside (see ``fastmath.gemm``); nested calls from
inside a parallel piece run sequentially, so there is never more than one piece per core.

``TINYNN_NUM_THREADS`` overrides the number of threads (default: the cores this process may use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_local = threading.local()
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def num_threads() -> int:
    """How many threads tinynn's kernels may use."""
    env = os.environ.get("TINYNN_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _pool_for(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tinynn")
            _pool_size = workers
        return _pool


def _in_piece(fn: Callable):
    _local.busy = True
    try:
        return fn()
    finally:
        _local.busy = False


def row_pieces(rows: int, work: float, min_work: float) -> list[tuple[int, int]]:
    """Split ``range(rows)`` into one contiguous ``(start, stop)`` piece per free core.

    One piece (no split) when ``work`` is below ``min_work`` (a thread hand-off costs tens of µs), when there
    are fewer rows than cores, or when called from inside a parallel piece (its core is already taken).
    """
    n = 1 if work < min_work or getattr(_local, "busy", False) else min(num_threads(), rows)
    n = max(1, n)
    bounds = [rows * k // n for k in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run_parallel(*fns: Callable) -> list:
    """Call every ``fn()`` and return their results in order; concurrently when there are free cores.

    The calling thread runs the first one itself, the others go to a pool of (cores - 1) threads.
    """
    threads = min(num_threads(), len(fns))
    if threads <= 1 or getattr(_local, "busy", False):
        return [fn() for fn in fns]
    pool = _pool_for(num_threads() - 1)
    futures = [pool.submit(_in_piece, fn) for fn in fns[1:]]
    first = _in_piece(fns[0])
    return [first] + [f.result() for f in futures]
