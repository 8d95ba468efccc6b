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
import pathlib
import threading
import weakref
from collections import deque

import numpy as np

from .. import config
from .parallel import sequential

__all__ = ["fast_ready", "kernel_ready", "pending", "wait_until_idle"]

_lock = threading.Condition()
_tasks: dict = {}  # key -> _Task
_queue: deque = deque()
_worker: threading.Thread | None = None
_current: list | None = None  # the batch of warm-ups the background thread is running
_local = threading.local()
_per_layer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> {signature: _Task}


class _Task:
    """One warm-up: ``run()`` in the background thread (``spec``: the same for a fresh process, see
    :func:`_compile_in_subprocess`); ``state`` queued -> running -> compiling -> done."""

    def __init__(self, run, spec):
        self.run, self.spec = run, spec
        self.state = "queued"
        self.ok = False

    @property
    def finished(self) -> bool:
        return self.state == "done"


def _in_warmup() -> bool:
    return bool(getattr(_local, "warming", False))


class _NeedsCompile(Exception):
    """Raised by the compile listener to stop the background thread's first try, which may only load."""


def _finish(task: _Task, ok: bool) -> None:
    with _lock:
        task.state, task.ok = "done", ok
        _lock.notify_all()


def _work() -> None:  # noqa: C901 - one loop, read top to bottom
    """The background thread: takes every queued warm-up, first only loading from numba's cache; the ones that
    need compiling are compiled in a separate Python process (no contention for this process's GIL), then
    loaded here."""
    global _current
    _local.warming = True
    while True:
        with _lock:
            while not _queue:
                _lock.wait()
            batch = list(_queue)
            _queue.clear()
            needs = [t for t in batch if t.state == "compiling"]  # a fresh cache: straight to the other process
            for task in batch:
                if task.state == "queued":
                    task.state = "running"
            _current = batch
        for task in batch:
            if task in needs:
                continue
            _local.loading_only = True
            try:
                with sequential():  # every kernel on this thread, where the compile listener sees it
                    task.run()
                _finish(task, True)
            except _NeedsCompile:
                needs.append(task)
            except Exception:  # noqa: BLE001 - the real call (fast mode) will raise it where the user sees it
                _finish(task, False)
            finally:
                _local.loading_only = False
        if needs:
            _compile_in_subprocess([t.spec for t in needs])
            for task in needs:  # load what the other process compiled (or compile here if it could not)
                try:
                    with sequential():
                        task.run()
                    _finish(task, True)
                except Exception:  # noqa: BLE001
                    _finish(task, False)
        with _lock:
            global _fresh
            _current, _fresh = None, False  # the cache holds kernels now: later warm-ups try loading first
            _lock.notify_all()


def _on_compile_start() -> None:
    """numba is about to compile (not load from its cache): in the background thread's first try, stop; the
    waiters of those warm-ups stop waiting."""
    if threading.current_thread() is _worker and getattr(_local, "loading_only", False):
        with _lock:
            for task in _current or ():
                if task.state == "running":
                    task.state = "compiling"
            _lock.notify_all()
        raise _NeedsCompile


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


def _compile_in_subprocess(specs: list) -> bool:
    """Compile the warm-ups ``specs`` into numba's disk cache in a fresh Python process (the same interpreter,
    tinynn and cache folder). False if that process could not run (the caller then compiles in this one).

    The process outlives this one if this one ends first: it finishes filling the cache, so the next run starts
    warm (it is niced, and quits after its list)."""
    import os
    import pickle
    import subprocess
    import sys

    root = str(pathlib.Path(__file__).resolve().parents[2])  # the folder holding this tinynn package
    env = dict(os.environ, TINYNN_COMPILE="wait")
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    try:
        child = subprocess.Popen([sys.executable, "-c", "from tinynn.kernels import warmup; warmup._serve()"],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        child.stdin.write(pickle.dumps(specs))
        child.stdin.close()
        return child.wait(timeout=900) == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _serve() -> None:
    """The other process's side of :func:`_compile_in_subprocess`: run every warm-up spec read from stdin."""
    import os
    import pickle
    import sys

    try:
        os.nice(5)  # the process waiting for these kernels runs its NumPy twins meanwhile: leave it the cores
    except (AttributeError, OSError):
        pass
    config.set_compile("wait")
    _local.warming = True  # kernels that take data-dependent paths compile them all in a warm-up (kernels.conv)
    for spec in pickle.loads(sys.stdin.buffer.read()):
        try:
            _run_spec(spec)
        except Exception:  # noqa: BLE001 - the waiting process compiles (and reports) this one itself
            continue


def _run_spec(spec) -> None:
    if spec[0] == "layer":
        _, class_name, cfg, xs, ms, need_dx = spec
        from ..layers import registry

        _run_layer(registry()[class_name], cfg, xs, ms, need_dx)
    else:
        import importlib

        import numba

        _, module, name, args = spec
        dispatcher = getattr(importlib.import_module(module), name)
        dispatcher.compile(tuple(numba.typeof(a) for a in args))


def _cache_is_fresh() -> bool:
    """True when numba's cache holds no tinynn kernel yet (a first run: no warm-up can only load, so nobody
    waits for one). Read from numba's cache folder of the kernels (internal attributes: False if they moved)."""
    from . import denormals

    try:
        folder = pathlib.Path(denormals._read_mode._cache._cache_path)
    except AttributeError:
        return False
    return not any(not p.name.startswith("denormals.") for p in folder.glob("*.nbi"))


_fresh: bool | None = None


def _submit(key, run, spec) -> _Task:
    """The task of ``key`` (queued now if new; marked compiling at once when the cache is fresh)."""
    global _fresh
    with _lock:
        task = _tasks.get(key)
        if task is None:
            if _fresh is None:
                _fresh = _cache_is_fresh()
            task = _tasks[key] = _Task(run, spec)
            if _fresh:
                task.state = "compiling"
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
            if task.state == "queued" and _current:
                return False  # the background thread is busy with other layers' kernels
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
            needs_input_gradient(layer))


def needs_input_gradient(layer) -> bool:
    """Whether the warm-up of ``layer`` runs its backward with the input gradient. Not when a model feeds the layer
    only its own inputs in every graph it belongs to (``warmup_reads_only_data``, set by :class:`tinynn.graph.Graph`):
    training then skips that gradient (``input_gradient_needed`` is False during the backward only), and loading or
    compiling its kernels would be wasted. Should a backward want it after all, its kernels load (or compile) where
    it is called."""
    if getattr(layer, "warmup_reads_only_data", False):
        return False
    return bool(getattr(layer, "input_gradient_needed", True))


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


def _run_layer(cls, cfg, xs, ms, need_dx) -> None:
    """A copy of the layer from its config, forward (training and not) and backward on ``xs`` in fast mode."""
    clone = cls.from_config(cfg)
    kwargs = {} if ms is None else {"mask": ms}
    y = clone(xs, training=True, **kwargs)
    also = getattr(clone, "warm_up_also", None)  # kernels the layer runs together with a neighbour
    if also is not None:
        also()
    clone.input_gradient_needed = need_dx
    clone.backward(_ones_like(y))
    clone(xs, training=False, **kwargs)
    global _spinners_warm
    if not _spinners_warm:
        from .parallel import warm_spinners

        warm_spinners()
        _spinners_warm = True


_spinners_warm = False  # parallel.warm_spinners ran in this process


def _warm_up(layer, x, mask):
    """(run, spec): a warm-up of ``layer`` on one sample of ``x`` (a stateful layer's whole batch)."""
    cls, cfg = type(layer), layer.get_config()
    n = int(getattr(layer, "batch_size", None) or 1) if getattr(layer, "stateful", False) else 1
    xs, ms = _first(x, n), _first(mask, n)
    need_dx = needs_input_gradient(layer)
    return (lambda: _run_layer(cls, cfg, xs, ms, need_dx)), ("layer", cls.__name__, cfg, xs, ms, need_dx)


def fast_ready(layer, x, mask=None) -> bool:
    """Whether ``layer`` should run its fast kernels on ``x`` now (module docstring). Always True in "wait"
    compile mode and inside a warm-up."""
    known = _per_layer.get(layer)
    if known is not None and mask is None and type(x) is np.ndarray:  # the common call: a warm-up that finished
        task = known.get(((x.dtype.str, x.shape[1:]), True))  # (_signature(x, None), read directly)
        if task is not None and task.finished:
            return True
    if config.compile_mode() == "wait" or _in_warmup():
        return True
    signature = _signature(x, mask)
    task = None if known is None else known.get(signature)
    if task is None:
        key = _layer_key(layer, signature)
        if key is None:
            return True
        try:
            run, spec = _warm_up(layer, x, mask)
        except Exception:  # noqa: BLE001
            return True
        task = _submit(key, run, spec)
        _per_layer.setdefault(layer, {})[signature] = task
        if task.finished:
            return True
        return _wait_while_loading(task)
    return _ready(task)


# ----------------------------------------------------------------------------- single kernels
_compiled_for: set = set()  # (id(dispatcher), _type_key(args)) that kernel_ready found compiled


def _type_key(args: tuple) -> tuple:
    """What numba's types of ``args`` depend on, read cheaply: an array's class, dtype, rank, layout, and whether
    it is writeable and aligned; a scalar's class (the callers pass small ints, which numba types by class).
    ``numba.typeof`` takes some µs per argument (its Python path), which a kernel with twenty arguments asked
    on every call paid hundreds of times over."""
    return tuple((type(a), a.dtype.str, a.ndim, a.flags.c_contiguous, a.flags.f_contiguous, a.flags.writeable,
                  a.flags.aligned) if isinstance(a, np.ndarray) else type(a) for a in args)  # fmt: skip


def kernel_ready(dispatcher, *args) -> bool:
    """Whether the numba function ``dispatcher`` is compiled for these arguments; if not, its signature is
    compiled (or loaded from the cache) in the background and False is returned meanwhile. A yes is remembered
    per argument types (:func:`_type_key`): compiled code never goes away."""
    if config.compile_mode() == "wait" or _in_warmup():
        return True
    key = (id(dispatcher), _type_key(args))
    if key in _compiled_for:
        return True
    import numba

    signature = tuple(numba.typeof(a) for a in args)
    if signature in dispatcher.overloads:
        _compiled_for.add(key)
        return True
    spec = ("kernel", dispatcher.py_func.__module__, dispatcher.py_func.__name__, args)
    task = _submit((id(dispatcher), signature), lambda: dispatcher.compile(signature), spec)
    return task.finished or _wait_while_loading(task)


def kernels_ready(known: set, dtype, samples) -> bool:
    """Whether every numba kernel in ``samples(d)`` — pairs (dispatcher, sample arguments with the numba types the
    caller passes for dtype d) — is compiled for ``dtype`` (:func:`kernel_ready` each, all asked at once, so that
    what is missing compiles in the background together). A yes found by looking is remembered in ``known``, the
    caller's set of dtypes (compiled code never goes away, and keying the sample arguments costs µs per call); the
    yes of "wait" compile mode or a warm-up, given without looking, is not."""
    d = np.dtype(dtype)
    if d in known:
        return True
    if config.compile_mode() == "wait" or _in_warmup():
        return True
    if all([kernel_ready(dispatcher, *args) for dispatcher, args in samples(d)]):
        known.add(d)
        return True
    return False


# ----------------------------------------------------------------------------- inspection
def pending() -> int:
    """How many warm-ups are queued or running."""
    with _lock:
        return len(_queue) + sum(not t.finished for t in _current or ())


def wait_until_idle(timeout: float | None = None) -> bool:
    """Block until every queued warm-up is done (True) or ``timeout`` seconds passed (False)."""
    with _lock:
        return _lock.wait_for(lambda: not _queue and _current is None, timeout)
