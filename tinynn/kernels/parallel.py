"""Run independent pieces of work on the machine's cores.

The numba kernels release the GIL (``nogil=True``), so Python threads can run two of them at once: the two
directions of a Bidirectional layer, the two halves of a large GEMM, δx next to δW. Keras/TensorFlow uses
every core the same way. Each piece runs single-threaded inside (BLAS is held to one thread:
``cblas.single_threaded``); nested calls from inside a parallel piece run sequentially, so there is never more
than one piece per core.

Three ways to hand out work: :func:`run_parallel` (fixed pieces, one per core: the two directions of a
Bidirectional layer, the batch halves of a recurrent loop); :func:`share` (ranges the cores pull when free);
:func:`share_batch` (the batch policy on top of :func:`share` that the image kernels use: whether a pass is worth
splitting and how fine). :func:`scratch` gives a pulled range's task its per-worker buffers.

``TINYNN_NUM_THREADS`` overrides the number of threads (default: the cores this process may use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from .. import config
from . import cblas, denormals

_local = threading.local()
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0

#: Below this much work (multiply-adds, or numbers touched) :func:`share_batch` runs a pass on the calling thread.
PARALLEL_WORK = 1 << 21
#: :func:`share_batch`'s pieces per thread (more pieces even out the threads' finishing times; fewer cost less).
PIECES_PER_THREAD = 8


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
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tinynn", initializer=_mark_worker)
            _pool_size = workers
        return _pool


def _mark_worker() -> None:
    _local.worker = True


def _in_piece(fn: Callable):
    if getattr(_local, "worker", False):  # tinynn's own threads run only kernels: subnormals flushed for good
        denormals.enable_in_this_thread()
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


class _KernelScope:
    """The context manager :func:`kernel_scope` returns (a class, not a generator: it is entered several times per
    layer call, and only the outermost entry on a thread does anything)."""

    __slots__ = ()

    def __enter__(self):
        depth = getattr(_local, "scope_depth", 0)
        if depth == 0:
            cblas.enter_single_threaded()
            ftz = config.kernel_mode() == "fast" and denormals.enter_flush_to_zero()
            _local.scope_ftz = ftz
        _local.scope_depth = depth + 1
        return self

    def __exit__(self, *exc):
        depth = _local.scope_depth - 1
        _local.scope_depth = depth
        if depth == 0:
            if _local.scope_ftz:
                denormals.exit_flush_to_zero()
            cblas.exit_single_threaded()
        return False


_SCOPE = _KernelScope()


def kernel_scope() -> _KernelScope:
    """What every fast kernel call runs inside: numpy's BLAS on one thread per caller (:mod:`.cblas`) and, in the
    'fast' kernel mode, subnormal floats flushed to zero on the calling thread (:mod:`.denormals`; the
    'reference' mode runs no numba at all). tinynn's worker threads keep both for good; nested scopes cost
    next to nothing."""
    return _SCOPE


def kernel_entry(fn: Callable) -> Callable:
    """Decorator: run ``fn`` inside :func:`kernel_scope`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with kernel_scope():
            return fn(*args, **kwargs)

    return wrapper


@contextmanager
def sequential() -> Iterator[None]:
    """Inside the block this thread runs every piece itself, one after the other (as inside a parallel piece)."""
    previous = getattr(_local, "busy", False)
    _local.busy = True
    try:
        yield
    finally:
        _local.busy = previous


def in_piece() -> bool:
    """True inside a piece that :func:`run_parallel` or :func:`share` runs (its core is already taken)."""
    return bool(getattr(_local, "busy", False))


def share(task: Callable[[int, int, int], object], ranges: list[tuple[int, int]]) -> list:
    """``task(worker, start, stop)`` for every range; the results in the order of ``ranges``.

    Each free core pulls the next range when it is done with one (unlike :func:`run_parallel`'s fixed shares),
    so a core slowed down by another process on the machine takes fewer ranges and the other does not wait
    for it at the end. ``worker`` (0, 1, ...) names the thread, for per-thread scratch buffers and partial
    sums. Sequential (worker 0) when there is one core or when called from inside a parallel piece.
    """
    workers = min(num_threads(), len(ranges))
    if workers <= 1 or in_piece():
        return [task(0, i0, i1) for i0, i1 in ranges]
    results: list = [None] * len(ranges)
    position = [0]
    lock = threading.Lock()

    def worker(k: int) -> None:
        while True:
            with lock:
                i = position[0]
                position[0] = i + 1
            if i >= len(ranges):
                return
            results[i] = task(k, *ranges[i])

    run_parallel(*[lambda k=k: worker(k) for k in range(workers)])
    return results


def even_ranges(length: int, pieces: int) -> list[tuple[int, int]]:
    """``range(length)`` cut into ``pieces`` contiguous, non-empty ranges of nearly equal size."""
    pieces = max(1, min(pieces, length))
    bounds = [length * k // pieces for k in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def share_batch(task: Callable[[int, int, int], object], items: int, work: float, blas: bool = True) -> list:
    """``task(worker, start, stop)`` over consecutive ranges covering ``range(items)``; returns the results in range
    order.

    One call over everything when ``work < PARALLEL_WORK``, when there is one core, or when the pass calls BLAS and
    numpy's BLAS cannot be held to one thread (``blas``; it then threads each product itself). Otherwise ranges of
    ``g = ⌈items / (PIECES_PER_THREAD · workers)⌉`` items, pulled by the cores (:func:`share`) inside
    :func:`kernel_scope` (BLAS on one thread per core). The ranges depend only on ``items``, ``work``, the thread
    count and the BLAS found, and the results come back in range order whichever thread ran a range, so partial
    sums added in that order give the same bits on every run.
    """
    workers = min(num_threads(), items)
    if work < PARALLEL_WORK or workers <= 1 or (blas and not cblas.can_limit_threads()):
        return [task(0, 0, items)]
    grain = max(1, -(-items // (PIECES_PER_THREAD * workers)))
    ranges = [(start, min(items, start + grain)) for start in range(0, items, grain)]
    with kernel_scope():
        return share(task, ranges)


def scratch(workspace: dict, name: str, shape, dtype) -> np.ndarray:
    """A C-contiguous ``shape`` view of the reusable buffer ``workspace[name]`` (grown when too small): the
    per-worker scratch of a :func:`share` task (name it after the ``worker`` argument, e.g. ``f"cols{worker}"``)."""
    size = int(np.prod(shape))
    buf = workspace.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = workspace[name] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)
