"""Run independent pieces of work on the machine's cores.

The numba kernels release the GIL (``nogil=True``), so Python threads can run two of them at once: the two
directions of a Bidirectional layer, the two halves of a large GEMM, δx next to δW. Keras/TensorFlow uses
every core the same way. Each piece runs single-threaded inside (BLAS is held to one thread:
``cblas.single_threaded``); nested calls from inside a parallel piece run sequentially, so there is never more
than one piece per core.

Three ways to hand out work: :func:`run_parallel` (fixed pieces, one per core: the two directions of a
Bidirectional layer, the batch halves of a recurrent loop); :func:`share` (ranges the cores claim when free; the
caller runs whatever a pool thread that has not started, or that shares the caller's core in a short call, leaves);
:func:`share_batch` (the batch policy on top of :func:`share` that the image kernels use: whether a pass is worth
splitting and how fine). :func:`scratch` gives a pulled range's task its per-worker buffers.

``TINYNN_NUM_THREADS`` overrides the number of threads (default: the cores this process may use).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from .. import config
from . import cblas, denormals

_local = threading.local()
_lock = threading.Lock()
_pool: _Pool | None = None
_pool_size = 0


#: How long (CPU clock ticks, ~0.4 ms) an idle worker keeps watching for the next piece before it sleeps, and a
#: caller waits spinning for a piece it handed out before it sleeps (:mod:`.spinwait`).
SPIN_CYCLES = 1_000_000
#: How often (clock ticks, ~20 µs) a spinning thread offers its core to another thread (``sched_yield``): when
#: another process holds the other core, the scheduler puts the two threads of a split on one core, and a spin
#: that never yields holds the core its partner needs (:mod:`.spinwait`; 0: never yield).
YIELD_CYCLES = 50_000
_spin = None  # (spinwait.spin_while_equal, spinwait.set_then_spin) once compiled (sleeping waits until then)
_handoff = None  # the module tinynn.kernels.handoff once its serve is compiled (the idle spin then watches its box)


def _spinner():
    """The busy-wait kernels if they are compiled for this process (else None: they are compiled or loaded in
    the background meanwhile, and the waits sleep)."""
    global _spin
    if _spin is None:
        from . import warmup

        samples = _spin_samples()
        if all(warmup.kernel_ready(kernel, *sample) for kernel, sample in samples):
            _spin = tuple(kernel for kernel, _ in samples)
    return _spin


def _spin_samples() -> tuple:
    from . import spinwait

    cell = spinwait.new_cell()
    return (spinwait.spin_while_equal, (cell, 0, 0, 0)), (spinwait.set_then_spin, (cell, cell, 0, 0, 0))


def warm_spinners() -> None:
    """Compile (or load from numba's cache) the busy-wait kernels. A layer's warm-up (:mod:`.warmup`) calls this:
    warm-ups run every kernel on their own thread and never wait on the pool, so without it a first run whose steps
    all ran on the NumPy twins (one ``train_on_batch``) would leave them uncompiled, and the next run would compile
    them while its first steps split work over the cores."""
    import numba

    for kernel, sample in _spin_samples():
        kernel.compile(tuple(numba.typeof(a) for a in sample))


def serving() -> bool:
    """Whether the pool's idle threads watch :mod:`.handoff`'s box (so a job posted there finds them): once its
    :func:`~.handoff.serve` is compiled. Asked by the threads that post jobs, never by a pool thread: compiling in a
    pool thread could still be under way when the process ends, and LLVM aborts when its globals are torn down
    under a running compile."""
    global _handoff
    if _handoff is None and _spinner() is not None:
        from . import handoff

        if handoff.serve_ready():
            _handoff = handoff
    return _handoff is not None


def _new_signal() -> tuple[np.ndarray, threading.Lock]:
    """(finished, done) for work handed to another thread: ``finished`` (a one-element array) turns 1 when the work
    is done, for a waiter spinning on it; ``done`` (a lock, held until then) is released then, for a waiter
    sleeping on it."""
    done = threading.Lock()
    done.acquire()
    return np.zeros(1, np.int64), done


def _wait(finished: np.ndarray, done: threading.Lock, timeout: float = -1) -> bool:
    """Wait for a :func:`_new_signal` pair: spin (without the GIL) up to :data:`SPIN_CYCLES` on ``finished``, then
    sleep on ``done`` (at most ``timeout`` seconds when given). True once the work is done."""
    if not finished[0] and SPIN_CYCLES > 0:
        spin = _spinner()
        if spin is not None:
            spin[0](finished, 0, SPIN_CYCLES, YIELD_CYCLES)
    return done.acquire(timeout=timeout)


#: Seconds a caller waits for a pool thread to start the piece it handed over before it takes the piece back and
#: runs it itself (a pool thread that is late, busy with another caller's piece, or gone: none can leave the caller
#: waiting for ever).
TAKE_BACK_AFTER = 0.05


class _Job:
    """One piece handed to a worker thread. ``finished`` (a one-element array) turns 1 when it is done, for a
    caller spinning on it; ``done`` (a bare lock) is released then, for a caller sleeping on it."""

    __slots__ = ("fn", "done", "finished", "value", "error", "taken")

    def __init__(self, fn: Callable):
        self.fn, self.value, self.error = fn, None, None
        self.finished, self.done = _new_signal()
        self.taken = threading.Lock()  # held by whoever runs fn: a pool thread or, taking it back, the caller

    def take(self) -> bool:
        """Claim the job (True once, for the one thread that then runs it)."""
        return self.taken.acquire(blocking=False)

    def run(self) -> None:
        try:
            self.value = _in_piece(self.fn)
        except BaseException as err:  # handed to the caller by result()
            self.error = err

    def result(self):
        """The job's value (or its error, raised), once it ran; the caller runs it itself if no pool thread has
        started it within :data:`TAKE_BACK_AFTER` seconds."""
        if not _wait(self.finished, self.done, TAKE_BACK_AFTER):
            if self.take():
                self.run()
                _drop_pool_without_threads()
            else:  # a pool thread is running it
                self.done.acquire()
        if self.error is not None:
            raise self.error
        return self.value


class _Pool:
    """``workers`` daemon threads pulling :class:`_Job`\\ s from one queue.

    A hand-off is quick while the worker is awake, but waking a sleeping thread costs tens of µs on a virtual
    machine (:mod:`.spinwait`), and concurrent.futures.ThreadPoolExecutor's futures add more. So an idle
    worker spins (without the GIL) for :data:`SPIN_CYCLES` watching ``posted`` (the count of jobs submitted)
    before it sleeps on the queue, and a caller spins as long on its job's ``finished`` cell before it sleeps
    on the job's lock: the parallel regions of one layer call, a few to tens of µs apart, then find each other
    awake (benchmarks/RESULTS.md)."""

    def __init__(self, workers: int):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.posted = np.zeros(1, np.int64)
        self.threads = [threading.Thread(target=self._serve, name=f"tinynn_{k}", daemon=True) for k in range(workers)]
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def _serve(self) -> None:
        """Run the queue's jobs for good. Nothing a job or the idle spin raises ends the thread: a job's error goes
        to its caller, any other is reported (``threading.excepthook``) and the thread goes on, keeping the next
        job it already took from the queue."""
        _mark_worker()
        job = None
        while True:
            if job is None:
                job = self.queue.get()
            if not job.take():  # its caller took it back and ran it
                job = None
                continue
            job.run()
            job.done.release()
            seen = int(self.posted[0])  # read before looking at the queue: a job put after it changes posted
            try:
                following = self.queue.get_nowait()
            except queue.Empty:
                following = None
            try:
                self._idle(job, following is None, seen)
            except BaseException as err:  # noqa: BLE001 - reported; the thread must live on
                job.finished[0] = 1
                threading.excepthook(threading.ExceptHookArgs((type(err), err, err.__traceback__,
                                                               threading.current_thread())))
            job = following

    def _idle(self, job: _Job, queue_empty: bool, seen: int) -> None:
        """Mark ``job`` finished; with an empty queue, first spin (without the GIL) watching for the next job."""
        # (a job that found itself on its caller's core does not spin there either: the caller needs the core)
        spin = _spinner() if queue_empty and SPIN_CYCLES > 0 and job.value is not _ON_CALLERS_CORE else None
        handoff = None if spin is None else _handoff  # (set by serving(), once serve is compiled)
        if spin is None:
            job.finished[0] = 1
        elif handoff is not None:  # the same, watching the hand-off box as well (jobs posted from numba)
            handoff.serve(job.finished, self.posted, seen, handoff.box(), SPIN_CYCLES, YIELD_CYCLES)
        else:  # mark it finished once the GIL is free for the caller, then watch for the next job
            spin[1](job.finished, self.posted, seen, SPIN_CYCLES, YIELD_CYCLES)

    def submit(self, fn: Callable) -> _Job:
        job = _Job(fn)
        self.queue.put(job)
        self.posted[0] += 1  # (a lost count between two submitting threads only makes a worker sleep sooner)
        return job


def _forget_pool() -> None:
    """After ``fork`` the child has none of the parent's threads: start a new pool when one is next needed."""
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


def _drop_pool_without_threads() -> None:
    """Start a new pool at the next call if no thread of the current one is alive."""
    global _pool, _pool_size
    with _lock:
        if _pool is not None and not _pool.alive():
            _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)

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


def _pool_for(workers: int) -> _Pool:
    global _pool, _pool_size
    pool = _pool
    if pool is not None and _pool_size == workers:
        return pool
    with _lock:
        if _pool is None or _pool_size != workers:  # a changed count starts a new pool; the old threads idle on
            _pool = _Pool(workers)                  # their queue (they hold nothing)
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
    futures = [pool.submit(fn) for fn in fns[1:]]
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


def _cpu_reader() -> Callable[[], int] | None:
    """``sched_getcpu`` (the core the calling thread runs on now), or None where libc has none."""
    try:
        import ctypes

        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn if fn() >= 0 else None


_current_cpu = _cpu_reader()
#: A pool thread that finds itself on the core of the :func:`share` caller it would help takes no range when the
#: call is short (``work`` below :data:`STAND_ASIDE_WORK`): the two would only take turns on that core (the
#: scheduler puts them together when other processes hold the cores), and the caller alone is as fast, without the
#: switches. A longer call (several scheduler time slices) gains from a second runnable thread even on one core: it
#: gets a larger share of cores that other processes also use (measurements: benchmarks/RESULTS.md).
SKIP_ON_CALLERS_CORE = True
#: Multiply-adds (about 3 ms on one core) from which a pool thread helps even on the caller's core.
STAND_ASIDE_WORK = 1 << 27
_ON_CALLERS_CORE = object()  # what a pool thread's job returns when it ran nothing for that reason


class _Claims:
    """The ranges of one :func:`share` call and who has them: ``next`` (the first range nobody has claimed) and
    ``outstanding`` (ranges the pool's threads have claimed and not finished), both changed under ``lock``.

    The caller claims ranges like the pool's threads do, and once none is left it waits only for the ``outstanding``
    ones: a helper job the pool has not started yet (its core busy with another process) finds nothing left when it
    does start, and nobody waits for it. The helper that finishes the last outstanding range after the last claim
    sets ``finished`` (for a caller spinning on it) and releases ``done`` (for a caller sleeping on it)."""

    __slots__ = ("task", "ranges", "results", "lock", "next", "outstanding", "finished", "done", "error", "cpu")

    def __init__(self, task: Callable[[int, int, int], object], ranges: list[tuple[int, int]], short: bool = False):
        self.task, self.ranges = task, ranges
        self.cpu = _current_cpu() if short and _current_cpu is not None and SKIP_ON_CALLERS_CORE else -1
        self.results: list = [None] * len(ranges)
        self.lock = threading.Lock()
        self.next, self.outstanding, self.error = 0, 0, None
        self.finished, self.done = _new_signal()

    def _claim(self, helper: bool) -> int:
        with self.lock:
            i = self.next
            if i >= len(self.ranges):
                return -1
            self.next = i + 1
            self.outstanding += helper
            return i

    def help(self, worker: int) -> object:
        """A pool thread's job: claim and run ranges until none is left (none while it runs on the caller's core in a
        short call)."""
        while True:
            if self.cpu >= 0 and _current_cpu() == self.cpu:
                return _ON_CALLERS_CORE
            if (i := self._claim(True)) < 0:
                return None
            try:
                self.results[i] = self.task(worker, *self.ranges[i])
            except BaseException as err:  # handed to the caller; nobody claims anything after it
                self.error = err
            with self.lock:
                if self.error is not None:
                    self.next = len(self.ranges)
                self.outstanding -= 1
                last = self.outstanding == 0 and self.next >= len(self.ranges)
            if last:
                self.finished[0] = 1
                self.done.release()

    def run(self) -> list:
        """The caller's share: claim and run ranges as worker 0, then wait for the ranges the helpers hold."""
        try:
            while (i := self._claim(False)) >= 0:
                self.results[i] = self.task(0, *self.ranges[i])
        finally:
            with self.lock:
                self.next = len(self.ranges)  # (after an error: nobody starts another range)
                waiting = self.outstanding > 0
            if waiting:  # a helper is inside a range (it writes into the caller's arrays): wait for it to end
                _wait(self.finished, self.done)
        if self.error is not None:
            raise self.error
        return self.results


def share(task: Callable[[int, int, int], object], ranges: list[tuple[int, int]], work: float | None = None) -> list:
    """``task(worker, start, stop)`` for every range; the results in the order of ``ranges``.

    The calling thread and the pool's threads claim the ranges one at a time from a shared counter
    (:class:`_Claims`), so a core slowed down by another process on the machine takes fewer ranges and the other
    does not wait for it at the end; the caller runs every range that no pool thread has started and never waits
    for a pool thread that has not started; when the call's ``work`` (multiply-adds) is given and small, a pool
    thread that finds itself on the caller's own core takes no range (:data:`SKIP_ON_CALLERS_CORE`). So a busy
    second core costs next to nothing and an idle one shares the work. ``worker`` (0 for the caller, 1, ... for the
    pool's threads) names the thread, for per-thread scratch buffers and partial sums. Sequential (worker 0) when
    there is one core or when called from inside a parallel piece.
    """
    workers = min(num_threads(), len(ranges))
    if workers <= 1 or in_piece():
        return [task(0, i0, i1) for i0, i1 in ranges]
    claims = _Claims(task, ranges, work is not None and work < STAND_ASIDE_WORK)
    pool = _pool_for(num_threads() - 1)
    for k in range(1, workers):
        pool.submit(lambda k=k: claims.help(k))
    return _in_piece(claims.run)


def sum_in_order(parts: list) -> np.ndarray:
    """Σ of the partial sums that :func:`share` / :func:`share_batch` return, added in range order: the same order
    whichever core ran a range, so the result never depends on the scheduling (``parts[0]`` is not changed)."""
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


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
    size = math.prod(shape)  # (np.prod costs some µs: a ufunc reduction over a new array)
    buf = workspace.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = workspace[name] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)
