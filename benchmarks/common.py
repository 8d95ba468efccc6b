"""Shared benchmark helpers: timing (median after warm-up), peak memory, Keras twins, result tables."""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))

# The tinynn of this checkout, even when another one is installed in the environment.
REPO = str(pathlib.Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(1, REPO)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Steady-state timings measure the fast kernels: compile them in place (the first call), never time the NumPy
# twins a layer runs while its kernels compile in the background. The cold-start runs ask for "background".
os.environ.setdefault("TINYNN_COMPILE", "wait")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def median_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, min_time: float = 0.0,
              setup: Callable[[], object] | None = None) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls; ``setup()``, if given, runs
    untimed before every call (e.g. the forward a layer's backward consumes)."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def first_call_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def first_calls_then_medians(train: Callable[[], object], predict: Callable[[], object], repeats: int,
                             warmup: int = 2) -> dict:
    """``first_train`` / ``first_predict``: the first call of each, in ms (compilation or tracing shows here);
    then ``train`` / ``predict``: the median ms of ``repeats`` calls each after ``warmup`` untimed ones."""
    first_train = first_call_ms(train)
    first_predict = first_call_ms(predict)
    return {"train": median_ms(train, repeats, warmup), "predict": median_ms(predict, repeats, warmup),
            "first_train": first_train, "first_predict": first_predict}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


class WorkerError(RuntimeError):
    """A benchmark worker process failed; ``last_line`` is the last line of its stderr."""

    def __init__(self, what: str, stderr: str):
        super().__init__(f"{what} failed:\n{stderr[-3000:]}")
        self.last_line = (stderr.strip().splitlines() or ["failed"])[-1]


def run_worker(script: str, args: list[str], env_extra: dict | None = None, what: str | None = None) -> dict:
    """Run ``python benchmarks/<script> *args`` in a fresh process (its own memory peak, its own threads) with
    ``env_extra`` added to the environment; the last line the worker prints is its JSON result."""
    # Python's bytecode cache as on any machine that did not turn it off: tinynn, run from its source folder, would
    # otherwise compile its ~100 modules in every worker (~0.2 s of CPU per cold start), while Keras's and PyTorch's
    # installed packages come with theirs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | (env_extra or {})
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args], env=env, capture_output=True,
                         text=True, cwd=HERE)  # fmt: skip
    if out.returncode != 0:
        raise WorkerError(what or f"{script} worker {args}", out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])
