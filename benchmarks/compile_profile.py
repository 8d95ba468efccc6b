"""Compile time per kernel family: what numba spends compiling a model's kernels, from an empty cache.

    python benchmarks/compile_profile.py M3            # prints the JSON that benchmarks/run.py reads

One fresh process per model, an empty numba cache (a temporary ``NUMBA_CACHE_DIR``) and ``TINYNN_COMPILE=wait``
(every kernel compiles in this process, when first called): the first train step and the first predict call
are run while numba's ``numba:compile`` events are recorded. Each compile's time (the thread's CPU time, so other
processes on the machine hardly change it) is charged to the tinynn kernel module being compiled — its
*family*: ``recurrent``, ``conv``, ``blas``, ``pooling``, ... — including the numba library functions it pulls in
(``np.empty``, ``min``, ...), but not other tinynn kernels it calls, which are charged to their own family.
Models come from benchmarks/run.py (``MODELS``, ``build_model``, ``model_data``), so new models are profiled
without changes here.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _family(dispatcher) -> str | None:
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    prefix = "tinynn.kernels."
    return module[len(prefix):].split(".")[0] if module.startswith(prefix) else None


def profile_in_this_process(model: str) -> dict:
    """Run the first train step and predict of ``model`` and charge every numba compile to its kernel family."""
    from numba.core import event

    records: list = []

    class Recorder(event.Listener):
        def on_start(self, e):
            records.append((1, time.thread_time(), e.data["dispatcher"]))

        def on_end(self, e):
            records.append((0, time.thread_time(), e.data["dispatcher"]))

    event.register("numba:compile", Recorder())
    import run

    x, y = run.model_data(model)
    net = run.build_model(model, "tinynn")
    t0 = time.perf_counter()
    net.train_on_batch(x, y)
    net.predict_on_batch(x)
    wall = time.perf_counter() - t0
    families: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    stack: list = []  # [family, start cpu, cpu of nested tinynn kernels]
    for starting, cpu, dispatcher in records:
        if starting:
            stack.append([_family(dispatcher), cpu, 0.0])
            continue
        family, start, nested = stack.pop()
        spent = cpu - start
        if family is None:  # a numba library function: its time stays with the tinynn kernel that pulled it in
            if not stack:
                families["(numba itself)"] += spent
            continue
        families[family] += spent - nested
        counts[family] += 1
        parent = next((frame for frame in reversed(stack) if frame[0] is not None), None)
        if parent is not None:
            parent[2] += spent
    return {"families": dict(families), "specialisations": dict(counts), "total": sum(families.values()),
            "first_calls_wall": wall}


def profile(model: str) -> dict:
    """:func:`profile_in_this_process` in a fresh process with an empty numba cache."""
    from common import run_worker

    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache, "TINYNN_COMPILE": "wait"}
        return run_worker("compile_profile.py", [model], env, f"compile profile of {model}")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import common  # noqa: F401 - this checkout's tinynn first

    print(json.dumps(profile_in_this_process(sys.argv[1])))
