r"""First calls while numba compiles: a layer runs its NumPy twins until its kernels are ready.

numba compiles a kernel the first time it is called with new argument types, and caches the machine code on
disk (``cache=True``). With an empty cache (a fresh install, a new environment, a new dtype) compiling a
model's kernels takes seconds to tens of seconds, far longer than the first training steps themselves.

So in the default ``"background"`` compile mode (:func:`tinynn.config.compile_mode`) a layer asks
:func:`fast_ready` before a forward call whether its fast kernels are ready for this input. The first time it
asks (per layer configuration, input dtype and shape, mask or not), a *warm-up* is queued on one background
thread: a copy of the layer, built from its config, runs forward (training and inference) and backward in
fast mode on a one-sample slice of the input, which loads every kernel it needs from numba's disk cache or
compiles it. The asking thread waits while the warm-up only loads from the cache (a warm cache: the layer
then runs fast from its first call); as soon as the warm-up starts compiling (numba's ``numba:compile``
event) or when the background thread is already busy compiling for another layer, it stops waiting and the
call runs on the NumPy twins (:mod:`tinynn.kernels.reference`), as do the layer's later calls until its
warm-up is done. The backward of a call always uses its forward's kernels.

Both paths compute the same numbers up to rounding (``tests/test_kernel_modes.py``); a training run whose
first steps ran on the twins differs from one that did not by float rounding only. ``"wait"`` mode
(``TINYNN_COMPILE=wait`` or ``tinynn.config.set_compile("wait")``; the test suite uses it) compiles in the
calling thread instead, as numba does by default. Kernels called outside the layers compile when called.

Non-layer callers (the optimizer's sparse scatter-add) ask :func:`kernel_ready` about one numba function and
its arguments instead: compiled for these types → True; else the signature is compiled (or loaded) in the
background and the caller uses its NumPy twin meanwhile.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import deque

import numpy as np

from .. import config

__all__ = ["fast_ready", "kernel_ready", "pending", "wait_until_idle"]

_lock = threading.Condition()
_tasks: dict = {}  # key -> _Task
_queue: deque = deque()
_worker: threading.Thread | None = None
_current: _Task | None = None
_local = threading.local()
_per_layer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> {signature: _Task}


class _Task:
    """One warm-up: ``run()`` in the background thread; ``state`` queued -> running -> compiling -> done."""

    def __init__(self, run):
        self.run = run
        self.state = "queued"
        self.ok = False

    @property
    def finished(self) -> bool:
        return self.state == "done"


def _in_warmup() -> bool:
    return bool(getattr(_local, "warming", False))


def _work() -> None:
    global _current
    while True:
        with _lock:
            while not _queue:
                _lock.wait()
            task = _current = _queue.popleft()
            task.state = "running"
        _local.warming = True
        try:
            task.run()
            ok = True
        except Exception:  # noqa: BLE001 - the real call (fast mode) will raise it where the user sees it
            ok = False
        finally:
            _local.warming = False
        with _lock:
            task.state, task.ok, _current = "done", ok, None
            _lock.notify_all()


def _on_compile_start() -> None:
    """numba is about to compile (not load from its cache): waiters of the running warm-up stop waiting."""
    if threading.current_thread() is _worker:
        with _lock:
            if _current is not None and _current.state == "running":
                _current.state = "compiling"
                _lock.notify_all()


def _start_worker() -> None:
    global _worker
    if _worker is not None:
        return
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, event_):
            _on_compile_start()

        def on_end(self, event_):
            pass

    event.register("numba:compile", _Listener())
    _worker = threading.Thread(target=_work, name="tinynn-compile", daemon=True)
    _worker.start()


def _submit(key, run) -> _Task:
    """The task of ``key`` (queued now if new)."""
    with _lock:
        task = _tasks.get(key)
        if task is None:
            task = _tasks[key] = _Task(run)
            _start_worker()
            _queue.append(task)
            _lock.notify_all()
        return task


def _wait_while_loading(task: _Task) -> bool:
    """Wait while ``task`` is the only work and only loads from the cache; True if it finished well."""
    with _lock:
        while True:
            if task.finished:
                return task.ok
            if task.state == "compiling":
                return False
            if task.state == "queued" and (_current is not None or not _queue or _queue[0] is not task):
                return False  # the background thread is busy with another layer's kernels
            _lock.wait()


def _ready(task: _Task) -> bool:
    """Use the fast kernels once the warm-up finished (also when it failed: the fast call then raises or compiles
    in place, where the error shows)."""
    return task.finished


# ----------------------------------------------------------------------------- layers
def _signature(x, mask) -> tuple:
    xs = x if isinstance(x, (list, tuple)) else [x]
    return tuple((np.asarray(a).dtype.str, np.shape(a)[1:]) for a in xs) + (mask is None,)


def _layer_key(layer, signature) -> tuple | None:
    try:
        cfg = dict(layer.get_config())
    except Exception:  # noqa: BLE001 - a layer without a config: no background warm-up
        return None
    cfg.pop("name", None)
    return (type(layer).__name__, json.dumps(cfg, sort_keys=True, default=str), signature,
            bool(getattr(layer, "input_gradient_needed", True)))


def _first(a, n):
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return [_first(v, n) for v in a]
    return np.ascontiguousarray(np.asarray(a)[:n])


def _ones_like(y):
    if isinstance(y, (list, tuple)):
        return [_ones_like(v) for v in y]
    return np.ones_like(y)


def _warm_up_run(layer, x, mask):
    """A function that runs a copy of ``layer`` on one sample of ``x`` (the stateful layer's batch) in fast mode."""
    cls, cfg = type(layer), layer.get_config()
    n = int(getattr(layer, "batch_size", None) or 1) if getattr(layer, "stateful", False) else 1
    xs, ms = _first(x, n), _first(mask, n)
    need_dx = bool(getattr(layer, "input_gradient_needed", True))

    def run():
        clone = cls.from_config(cfg)
        kwargs = {} if ms is None else {"mask": ms}
        y = clone(xs, training=True, **kwargs)
        clone.input_gradient_needed = need_dx
        clone.backward(_ones_like(y))
        clone(xs, training=False, **kwargs)

    return run


def fast_ready(layer, x, mask=None) -> bool:
    """Whether ``layer`` should run its fast kernels on ``x`` now (module docstring). Always True in "wait"
    compile mode and inside a warm-up."""
    if config.compile_mode() == "wait" or _in_warmup():
        return True
    signature = _signature(x, mask)
    known = _per_layer.get(layer)
    task = None if known is None else known.get(signature)
    if task is None:
        key = _layer_key(layer, signature)
        if key is None:
            return True
        try:
            run = _warm_up_run(layer, x, mask)
        except Exception:  # noqa: BLE001
            return True
        task = _submit(key, run)
        _per_layer.setdefault(layer, {})[signature] = task
        if task.finished:
            return True
        return _wait_while_loading(task)
    return _ready(task)


# ----------------------------------------------------------------------------- single kernels
def kernel_ready(dispatcher, *args) -> bool:
    """Whether the numba function ``dispatcher`` is compiled for these arguments; if not, its signature is
    compiled (or loaded from the cache) in the background and False is returned meanwhile."""
    if config.compile_mode() == "wait" or _in_warmup():
        return True
    import numba

    signature = tuple(numba.typeof(a) for a in args)
    if signature in dispatcher.overloads:
        return True
    task = _submit((id(dispatcher), signature), lambda: dispatcher.compile(signature))
    return task.finished or _wait_while_loading(task)


# ----------------------------------------------------------------------------- inspection
def pending() -> int:
    """How many warm-ups are queued or running."""
    with _lock:
        return len(_queue) + (_current is not None)


def wait_until_idle(timeout: float | None = None) -> bool:
    """Block until every queued warm-up is done (True) or ``timeout`` seconds passed (False)."""
    with _lock:
        return _lock.wait_for(lambda: not _queue and _current is None, timeout)
