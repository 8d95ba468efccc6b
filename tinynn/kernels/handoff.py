r"""A convolution's forward shared with the pool's threads without the GIL: a job posted and claimed inside numba.

:func:`tinynn.kernels.parallel.share` hands work to a pool thread through Python: the pool thread, spinning
(:mod:`.spinwait`), sees the job, takes the GIL, runs the task's Python, and only then calls the kernel. That costs
tens of µs per call (the GIL changes hands, and a thread waiting for it is woken by the OS), about what the second
core saves on a product of a few million multiply-adds: the predict passes of Dense on every step and of Conv1D or
Conv2D at 32–64 filters stayed on one core or gained little from the second.

Here the work is :func:`tinynn.kernels.conv2d._forward_rows` over a list of output-row ranges, and the hand-off
happens inside numba. The mailbox ``box`` (int64, one per process) holds the job: the addresses, shapes and
integer arguments of its arrays. A pool thread idling in :func:`serve` (its spin between jobs) watches ``box``
besides the pool's queue count; the caller (:func:`run_rows`) writes the job, opens it, and then both claim ranges
from one atomic counter and run them::

    caller                                  pool thread in serve
    write the fields; box[JOB] = id         sees box[JOB] = id (new): box[ACTIVE] += 1, then box[JOB] == id still?
    i = box[NEXT]++ until i ≥ n: run i      (yes) i = box[NEXT]++ until i ≥ n: run i;  box[ACTIVE] -= 1
    box[JOB] = 0; wait while box[ACTIVE]    (no: the caller closed it) box[ACTIVE] -= 1, touching nothing

Every access to JOB, ACTIVE and NEXT is sequentially consistent, so a pool thread either is counted in ACTIVE
before the caller reads it (the caller waits for it) or reads JOB after the caller closed it (it leaves): the
caller's arrays are never read after :func:`run_rows` returns. No Python runs between the post and the return.

Each range's pooled sums go to their own rows of ``parts`` and come back in range order, and each range's output
rows are the same whoever runs them, so the result is the same bits as :func:`tinynn.kernels.parallel.share`'s
(``tests/test_handoff.py``). The caller claims ranges itself, so a pool thread that is asleep, busy or not
scheduled costs nothing: the caller then runs every range (:mod:`tinynn.kernels.parallel` wakes a sleeping pool
thread through its queue meanwhile). A failure inside a range is recorded (``box[ERROR]``) and the caller reruns
the pass in Python, which raises it with its message.

numba's disk cache checks only a kernel's own file, and :func:`serve` and :func:`run_rows` embed
:func:`~tinynn.kernels.conv2d._forward_rows`: after editing ``conv2d.py`` clear the caches (``__pycache__/*.nbi``,
``*.nbc``), or these run the old code (or fail in numba's boxing).

NumPy twin: the ranges one after the other (:func:`tinynn.kernels.reference.conv2d.conv2d_forward` computes the
same numbers); this module only decides which thread runs a range.
"""

from __future__ import annotations

import itertools
import os
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .. import config
from . import parallel, warmup
from .conv2d import _forward_rows
from .jitcache import load_without_refresh
from .spinwait import _clock, _pause, _sched_yield

_sched_getcpu = types.ExternalFunction("sched_getcpu", types.int32())

__all__ = ["ERROR", "SERVING", "new_box", "run_rows", "serve"]

# The mailbox's slots. JOB, ACTIVE, NEXT, ERROR, SERVING are changed atomically; the job's fields (X on) are
# written by the caller while no job is open.
JOB, ACTIVE, NEXT, ERROR, SERVING, WORKERS, CALLER_CPU = 0, 1, 2, 3, 4, 5, 7
X, X_SHAPE, WM, WM_SHAPE, BIAS = 8, 9, 13, 14, 16  # X_SHAPE: B, H, W, C; WM_SHAPE: K, F
ARGS = 17  # code, KH, KW, sh, sw, dh, dw, pt, pl, Ho, Wo, step: _forward_rows's integer arguments
COLS, COLS_SIZE, ZBUF, ZBUF_SIZE, Z, Z_ROWS, RANGES, N_RANGES, PARTS, OFFSETS = range(29, 39)
POOL_RANGES = 40  # how many ranges pool threads have run in this process (a count for the tests)
JOINED = 41  # pool threads that joined the open job: each takes the next row of the scratch (1, 2, ...)
BOX_SLOTS = 64


def new_box() -> np.ndarray:
    """An empty mailbox (no job open, no pool thread serving)."""
    return np.zeros(BOX_SLOTS, np.int64)


def _slot_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@intrinsic
def _load(typingctx, box, index):
    def codegen(context, builder, signature, args):
        ptr = _slot_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, ordering="seq_cst", align=8)

    return types.int64(box, index), codegen


@intrinsic
def _store(typingctx, box, index, value):
    def codegen(context, builder, signature, args):
        ptr = _slot_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, ordering="seq_cst", align=8)
        return context.get_dummy_value()

    return types.void(box, index, types.int64), codegen


@intrinsic
def _fetch_add(typingctx, box, index, value):
    """box[index] += value atomically; returns the value before."""

    def codegen(context, builder, signature, args):
        ptr = _slot_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], ordering="seq_cst")

    return types.int64(box, index, types.int64), codegen


@intrinsic
def _pointer(typingctx, address, like):
    """The address (an int64) as a pointer to ``like``'s dtype (``like``: any array of that dtype)."""
    pointer_type = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer_type))

    return pointer_type(types.int64, like), codegen


@intrinsic
def _address(typingctx, array):
    """An array's data address as an int64."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(array), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _run_range(i, x, Wm, bias, a, cols, zbuf, z, ranges, parts, offsets):  # pragma: no cover - compiled
    """Range i of the job: output rows ranges[i] of z (``parts`` empty), or their pooled sums into the rows
    offsets[i] .. offsets[i+1]-1 of ``parts`` (the images b0 = ranges[i, 0] // Ho on)."""
    F = Wm.shape[1]
    r0, r1, Ho = ranges[i, 0], ranges[i, 1], a[9]
    pooled = parts.size > 0
    rows = offsets[i + 1] - offsets[i] if pooled else 0
    sums = parts[offsets[i] * F : offsets[i] * F + rows * F].reshape((rows, F))
    _forward_rows(x, Wm, bias, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], Ho, a[10], r0, r1, a[11],
                  cols, zbuf, z, r0 // Ho if pooled else 0, sums)  # fmt: skip


@numba.njit(cache=True, nogil=True, inline="always")
def _claim_and_run(box, x, Wm, bias, a, cols, zbuf, z, ranges, parts, offsets, pool):  # pragma: no cover
    """Claim ranges (box[NEXT]++) and run them until none is left (``pool``: this is a pool thread, counted in
    box[POOL_RANGES]); a failure sets box[ERROR] and ends the claiming (the ranges left are claimed by nobody: the
    caller reruns the pass)."""
    n = ranges.shape[0]
    while True:
        i = _fetch_add(box, NEXT, 1)
        if i >= n:
            return
        if pool:
            _fetch_add(box, POOL_RANGES, 1)
        try:
            _run_range(i, x, Wm, bias, a, cols, zbuf, z, ranges, parts, offsets)
        except Exception:  # noqa: BLE001 - reported through the box; the caller reruns and raises it
            _store(box, ERROR, 1)
            _store(box, NEXT, n)
            return


@numba.njit(cache=True, nogil=True, inline="always")
def _join(box, worker, like):  # pragma: no cover - compiled
    """A pool thread's part of the open job, for its dtype (``like``: an empty array of it): rebuild the arrays
    from the box's addresses, with this thread's own scratch (row ``worker`` of the job's cols and zbuf)."""
    B, H, W, C = box[X_SHAPE], box[X_SHAPE + 1], box[X_SHAPE + 2], box[X_SHAPE + 3]
    K, F = box[WM_SHAPE], box[WM_SHAPE + 1]
    x = numba.carray(_pointer(box[X], like), (B, H, W, C))
    Wm = numba.carray(_pointer(box[WM], like), (K, F))
    bias = numba.carray(_pointer(box[BIAS], like), (F,))
    nc, nz = box[COLS_SIZE], box[ZBUF_SIZE]
    cols = numba.carray(_pointer(box[COLS] + worker * nc * like.itemsize, like), (nc,))
    zbuf = numba.carray(_pointer(box[ZBUF] + worker * nz * like.itemsize, like), (nz,))
    z = numba.carray(_pointer(box[Z], like), (box[Z_ROWS], F))
    n = box[N_RANGES]
    index = np.empty(0, np.int64)
    ranges = numba.carray(_pointer(box[RANGES], index), (n, 2))
    offsets = numba.carray(_pointer(box[OFFSETS], index), (n + 1,))
    total = offsets[n] * F if box[PARTS] != 0 else 0
    parts = numba.carray(_pointer(box[PARTS], np.empty(0, np.float64)), (total,))
    _claim_and_run(box, x, Wm, bias, box[ARGS : ARGS + 12], cols, zbuf, z, ranges, parts, offsets, True)


@numba.njit(cache=True, nogil=True)
def serve(flag, posted, seen, box, cycles, yield_cycles):  # pragma: no cover - compiled
    """A pool thread's idle spin: ``flag[0] = 1`` (its last job is done), then watch for ``cycles`` clock ticks
    both ``posted[0]`` (the pool's queue count: return when it is no longer ``seen``) and ``box`` (join each new
    job while it has scratch for one more thread; the wait starts again after a job). Offers the core to other
    threads every ``yield_cycles`` ticks. Returns posted[0], also early when a job's caller runs on this thread's
    core and asked it to stand aside (the thread then sleeps on the pool's queue until it is woken again)."""
    _store(flag, 0, 1)
    _fetch_add(box, SERVING, 1)
    last = 0
    start, next_yield = _clock(), yield_cycles
    reads = 0
    while True:
        current = _load(posted, 0)
        if current != seen:
            break
        job = _load(box, JOB)
        if job != 0 and job != last:
            last = job
            _fetch_add(box, ACTIVE, 1)
            aside = False
            if _load(box, JOB) == job:
                aside = box[CALLER_CPU] >= 0 and _sched_getcpu() == box[CALLER_CPU]
                worker = -1 if aside else _fetch_add(box, JOINED, 1) + 1  # its scratch row (the caller has row 0)
                if 0 < worker < box[WORKERS]:
                    _join(box, worker, np.empty(0, np.float32))
            _fetch_add(box, ACTIVE, -1)
            if aside:  # on the caller's core: leave the core to it and sleep (a thread woken up later is placed
                break  # on a free core, where it can help)
            start, next_yield, reads = _clock(), yield_cycles, 0
            continue
        reads += 1
        elapsed = _clock() - start
        if elapsed >= cycles or (elapsed == 0 and reads >= cycles):
            break
        if yield_cycles > 0 and (elapsed if elapsed > 0 else reads) >= next_yield:
            _sched_yield()
            next_yield += yield_cycles
        else:
            _pause()
    _fetch_add(box, SERVING, -1)
    return _load(posted, 0)


@numba.njit(cache=True, nogil=True)
def run_rows(box, job, x, Wm, bias, a, cols, zbuf, z, ranges, parts, offsets, workers, yield_cycles,
             stand_aside):  # pragma: no cover - compiled  # fmt: skip
    """The caller's side: post job number ``job`` (new each call, nonzero) for the pool threads 1 .. workers-1 in
    ``serve``, claim and run ranges as worker 0 (``cols``, ``zbuf``: (workers, n) scratch, one row per thread),
    close the job and wait for the threads still inside a range. Returns box[ERROR] (1: a range failed).

    ``stand_aside``: a pool thread that finds itself on this thread's core does not join (a short job: the two
    would only take turns on that core, as :data:`tinynn.kernels.parallel.SKIP_ON_CALLERS_CORE` says)."""
    box[X], box[X_SHAPE], box[X_SHAPE + 1], box[X_SHAPE + 2], box[X_SHAPE + 3] = (
        _address(x), x.shape[0], x.shape[1], x.shape[2], x.shape[3])  # fmt: skip
    box[WM], box[WM_SHAPE], box[WM_SHAPE + 1], box[BIAS] = _address(Wm), Wm.shape[0], Wm.shape[1], _address(bias)
    for k in range(12):
        box[ARGS + k] = a[k]
    box[COLS], box[COLS_SIZE], box[ZBUF], box[ZBUF_SIZE] = _address(cols), cols.shape[1], _address(zbuf), zbuf.shape[1]
    box[Z], box[Z_ROWS] = _address(z), z.shape[0]
    box[RANGES], box[N_RANGES], box[OFFSETS] = _address(ranges), ranges.shape[0], _address(offsets)
    box[PARTS] = _address(parts) if parts.size > 0 else 0
    box[WORKERS] = workers
    box[CALLER_CPU] = _sched_getcpu() if stand_aside else -1
    _store(box, ERROR, 0)
    _store(box, JOINED, 0)
    _store(box, NEXT, 0)
    _store(box, JOB, job)
    _claim_and_run(box, x, Wm, bias, a, cols[0], zbuf[0], z, ranges, parts, offsets, False)
    _store(box, JOB, 0)
    start, next_yield = _clock(), yield_cycles
    while _load(box, ACTIVE) != 0:
        if yield_cycles > 0 and _clock() - start >= next_yield:
            _sched_yield()
            next_yield += yield_cycles
        else:
            _pause()
    return _load(box, ERROR)


#: The dtypes jobs are posted for. numba links a kernel's callees into it, so every dtype serve takes is another copy
#: of _forward_rows compiled into it (float32 and float64: 11 s of CPU for M7's first run); float64 passes (parity
#: checks, not speed) hand their ranges out through Python.
DTYPES = (np.dtype(np.float32),)
_box = new_box()
_box_lock = threading.Lock()
_job_ids = itertools.count(1)
_ready: set = set()  # dtypes whose run_rows is compiled


def _forget_box() -> None:
    """After ``fork`` the child has none of the parent's pool threads (and no job open)."""
    global _box, _box_lock
    _box, _box_lock = new_box(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_box)


def box() -> np.ndarray:
    """This process's mailbox (for the pool threads' :func:`serve`)."""
    return _box


def _run_rows_sample(dtype) -> tuple:
    d = np.dtype(dtype)
    v, m, i2 = np.empty(1, d), np.empty((1, 1), d), np.empty((1, 2), np.int64)
    return (_box, 1, np.empty((1, 1, 1, 1), d), m, v, np.zeros(12, np.int64), m, m, m, i2, np.empty(0),
            np.empty(1, np.int64), 1, 1, True)  # fmt: skip


def _serve_sample() -> tuple:
    cell = np.zeros(1, np.int64)
    return (cell, cell, 0, _box, 1, 0)


def serve_ready() -> bool:
    """Whether :func:`serve` is compiled: in "wait" mode and in a warm-up it is compiled (or loaded) here and now;
    otherwise, if it is not, it is compiled or loaded in the background and False returned."""
    if config.compile_mode() == "wait" or warmup._in_warmup():
        serve.compile(tuple(numba.typeof(a) for a in _serve_sample()))
        return True
    return warmup.kernel_ready(serve, *_serve_sample())


def warm(dtype) -> None:
    """Compile (or load from numba's cache) :func:`run_rows` for ``dtype`` and :func:`serve`: a layer's warm-up
    (:mod:`tinynn.kernels.warmup`) calls this, so that its later passes find them ready (nothing for a dtype the
    hand-off does not take)."""
    if np.dtype(dtype) not in DTYPES:
        return
    for fn, sample in ((run_rows, _run_rows_sample(dtype)), (serve, _serve_sample())):
        fn.compile(tuple(numba.typeof(a) for a in sample))


def ready(dtype) -> bool:
    """Whether a caller can post jobs of ``dtype``: float32 (:data:`DTYPES`), :func:`run_rows` is compiled and the
    pool's threads watch the box (:func:`serve` is compiled). If not, what is missing compiles in the background
    meanwhile."""
    d = np.dtype(dtype)
    if d in _ready:
        return True
    if d not in DTYPES:
        return False
    if config.compile_mode() == "wait" or warmup._in_warmup():  # run_rows compiles when called
        return parallel.serving()
    ok = parallel.serving() and warmup.kernel_ready(run_rows, *_run_rows_sample(d))
    if ok:
        _ready.add(d)
    return ok


def forward_rows(x, Wm, bias, code: int, args: tuple, Wo: int, step: int, ranges: list[tuple[int, int]],
                 z: np.ndarray | None, F: int, ws: dict, workers: int, work: float = 0.0,
                 keep=None) -> list | None:  # fmt: skip
    """:func:`tinynn.kernels.conv2d._forward_rows` over ``ranges`` of output rows, claimed by this thread and the
    pool's threads in :func:`serve`: into z (B·Ho·Wo, F) when given, else each range's pooled sums. Returns, in
    range order, (b0, the range's sums of images b0, ...) (z given: (0, None)), or None when the box is taken
    by another thread or a range failed (the caller then runs the ranges its own way, which raises the failure).

    ``args``: (KH, KW, sh, sw, dh, dw, pt, pl, Ho), as :func:`_forward_rows` takes them; ``workers``: the threads
    that may take part (this one and the pool's); ``work``: the pass's multiply-adds (below
    :data:`tinynn.kernels.parallel.STAND_ASIDE_WORK` a pool thread on this thread's core stands aside);
    ``keep(job)``: called with the :class:`Job` when it ran (a caller that repeats the pass posts it again with
    :func:`run_job`)."""
    job = prepare(x, Wm, code, args, Wo, step, ranges, z is None, F, ws, workers, work)
    parts = run_job(job, x, Wm, bias, z)
    if parts is None:
        return None
    if keep is not None:
        keep(job)
    return [(0, None)] * len(ranges) if z is not None else pooled_sums(job, parts)


class Job:
    """A pass's hand-off for one call shape, as :func:`prepare` lays it out and :func:`run_job` posts it: the
    ranges (an (n, 2) array), where each range's pooled sums go (``offsets``; ``views``: (b0, first, end) of
    each range's sums in the parts), :func:`_forward_rows`'s integer arguments (``numbers``), the per-thread
    scratch (``cols``, ``zbuf``: one row per thread), and who may take part."""

    __slots__ = ("ranges", "offsets", "views", "numbers", "cols", "zbuf", "no_z", "n_parts", "F", "workers",
                 "stand_aside")  # fmt: skip


def prepare(x, Wm, code: int, args: tuple, Wo: int, step: int, ranges: list[tuple[int, int]], pooled: bool,
            F: int, ws: dict, workers: int, work: float) -> Job:  # fmt: skip
    """The :class:`Job` of :func:`forward_rows`'s pass (its arguments; ``pooled``: no z, each range's sums)."""
    job = Job()
    job.ranges, job.offsets, job.views, job.numbers = _plan(ranges, args[8], F, (code, *args, Wo, step))
    n = min(step, max(r1 - r0 for r0, r1 in ranges)) * Wo  # a chunk's output pixels, as the Python route's
    job.cols = parallel.scratch(ws, "handoff_cols", (workers, n * Wm.shape[0]), x.dtype)
    job.zbuf = parallel.scratch(ws, "handoff_z", (workers, n * F if pooled else 1), x.dtype)
    job.no_z = np.empty((0, F), x.dtype)
    job.n_parts = int(job.offsets[-1]) * F if pooled else 0
    job.F, job.workers = F, workers
    job.stand_aside = parallel.SKIP_ON_CALLERS_CORE and work < parallel.STAND_ASIDE_WORK
    return job


def run_job(job: Job, x, Wm, bias, z: np.ndarray | None = None) -> np.ndarray | None:
    """Post ``job`` for x, Wm, bias (into z when given, else pooled) and run it (:func:`run_rows`): the ranges'
    pooled sums (float64, flat; empty when z is given), or None when the box is taken by another thread, an
    array is read-only (not :func:`run_rows`'s compiled types) or a range failed."""
    if not (x.flags.writeable and Wm.flags.writeable and bias.flags.writeable):
        return None
    if not _box_lock.acquire(blocking=False):
        return None
    try:
        parts = np.zeros(job.n_parts, np.float64)
        workers = job.workers
        if _box[SERVING] < workers - 1:  # a pool thread that sleeps: wake it through the queue (it joins if it can)
            pool = parallel._pool_for(workers - 1)
            for _ in range(workers - 1 - int(_box[SERVING])):
                pool.submit(_nothing)
        failed = run_rows(_box, next(_job_ids), x, Wm, bias, job.numbers, job.cols, job.zbuf,
                          job.no_z if z is None else z, job.ranges, parts, job.offsets, workers,
                          parallel.YIELD_CYCLES, job.stand_aside)  # fmt: skip
        return None if failed else parts
    finally:
        _box_lock.release()


def pooled_sums(job: Job, parts: np.ndarray) -> list:
    """(b0, the sums of images b0, ... (rows, F)) of each range of ``job``, in range order, from its ``parts``."""
    F = job.F
    return [(b0, parts[p0:p1].reshape(-1, F)) for b0, p0, p1 in job.views]


def _plan(ranges: list[tuple[int, int]], Ho: int, F: int, numbers: tuple) -> tuple:
    """(ranges as an (n, 2) array, offsets, [(b0, first, end) of each range's sums in parts], ``numbers`` as an
    int64 array): range i pools into rows offsets[i] .. offsets[i+1]-1 of parts, one per image it reaches (b0: its
    first image). Kept per call shape: a model's passes repeat the same few."""
    key = (tuple(ranges), F, numbers)
    plan = _plans.get(key)
    if plan is None:
        r = np.array(ranges, np.int64)
        offsets = np.zeros(len(r) + 1, np.int64)
        np.cumsum((r[:, 1] - 1) // Ho + 1 - r[:, 0] // Ho, out=offsets[1:])
        views = [(int(r0) // Ho, int(offsets[i]) * F, int(offsets[i + 1]) * F) for i, (r0, _) in enumerate(ranges)]
        if len(_plans) >= 64:
            _plans.clear()
        plan = _plans[key] = (r, offsets, views, np.array(numbers, np.int64))
    return plan


_plans: dict = {}


def _nothing() -> None:
    return None


load_without_refresh(globals())  # cached kernels load without refreshing numba (tinynn.kernels.jitcache)
