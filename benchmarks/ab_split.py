"""A/B of how a split product is shared between the cores (issue 12), in one process, configurations alternating.

    python benchmarks/ab_split.py [--cases Dense,Conv1D] [--points 128:100:64,...] [--configs one,old,new]
                                  [--rounds 15] [--calls 4]

Each point is the grid's model (benchmarks/grid.py: LAYER → head → Dense(1), float32). Configurations:

* ``one``: TINYNN_NUM_THREADS=1 (every product on the calling thread);
* ``old``: the share of main before this branch (the caller waits for the pool thread's job even when it ran
  every range itself), the split products in ``_PIECES_PER_THREAD`` pieces per thread as on main;
* ``new``: parallel.share as it is now (claims; the caller never waits for a job the pool has not started);
* ``newK`` / ``oldK``: the same with K pieces per thread for blas's split products;
* a suffix ``-sN``: the busy-waits of the pool and the caller last N clock ticks (``parallel.SPIN_CYCLES``; 0:
  sleeping waits only); ``-yN``: they yield the core every N ticks (``parallel.YIELD_CYCLES``; 0: never);
  ``-c0``/``-c1``: whether a pool thread on the caller's core stands aside in short calls
  (``parallel.SKIP_ON_CALLERS_CORE``); ``-wN``: calls below 2^N multiply-adds count as short
  (``parallel.STAND_ASIDE_WORK``); ``-hN``: the hand-off inside numba splits a pass from 2^N multiply-adds per
  thread (``conv2d.HANDOFF_MIN_WORK``).

Prints the median wall ms of predict_on_batch and train_on_batch per configuration, and the load average.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import grid  # noqa: E402 - puts this checkout's tinynn first on sys.path

os.environ.setdefault("TINYNN_COMPILE", "wait")

from tinynn.kernels import blas, conv, conv2d, parallel  # noqa: E402

_NEW_SHARE = parallel.share
_PIECES = blas._PIECES_PER_THREAD


def _old_share(task, ranges, work=None):
    """parallel.share as on main before this branch (run_parallel: the caller waits for every pool job)."""
    workers = min(parallel.num_threads(), len(ranges))
    if workers <= 1 or parallel.in_piece():
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

    parallel.run_parallel(*[lambda k=k: worker(k) for k in range(workers)])
    return results


_SPIN, _YIELD, _SKIP = parallel.SPIN_CYCLES, parallel.YIELD_CYCLES, parallel.SKIP_ON_CALLERS_CORE
_ASIDE = parallel.STAND_ASIDE_WORK
_HANDOFF_MIN = conv2d.HANDOFF_MIN_WORK


def configure(name: str) -> None:
    """``one`` | ``old[K]`` | ``new[K]``, then optionally ``-sN`` (busy-waits of N clock ticks:
    ``parallel.SPIN_CYCLES``) and ``-yN`` (a yield every N ticks of a busy-wait: ``parallel.YIELD_CYCLES``)."""
    base, *options = name.split("-")
    settings = {o[0]: int(float(o[1:])) for o in options}
    parallel.SPIN_CYCLES = settings.get("s", _SPIN)
    parallel.YIELD_CYCLES = settings.get("y", _YIELD)
    parallel.SKIP_ON_CALLERS_CORE = bool(settings.get("c", _SKIP))
    parallel.STAND_ASIDE_WORK = 2 ** settings["w"] if "w" in settings else _ASIDE
    conv2d.HANDOFF_MIN_WORK = 2 ** settings["h"] if "h" in settings else _HANDOFF_MIN
    os.environ["TINYNN_NUM_THREADS"] = "1" if base == "one" else "2"
    fn = _old_share if base.startswith("old") else _NEW_SHARE
    for module in (blas, conv, parallel):
        module.share = fn
    digits = base.removeprefix("old").removeprefix("new").removeprefix("one")
    blas._PIECES_PER_THREAD = int(digits) if digits else _PIECES


def _model(case, w: int, t: int, b: int):
    import tinynn as tn

    x, y = grid._data(case, w, t, b)
    net = tn.Sequential([tn.layers.Input(shape=x.shape[1:]), *case.layers(tn.layers, w), tn.layers.Dense(1)])
    net.compile(optimizer="rmsprop", loss="mse")
    return {"predict": lambda: net.predict_on_batch(x), "train": lambda: net.train_on_batch(x, y)}


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--cases", default="Dense,Conv1D")
    p.add_argument("--points", default="128:100:64")
    p.add_argument("--configs", default="one,old,new")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--no-train", action="store_true")
    args = p.parse_args(argv)
    configs = args.configs.split(",")
    for case_name in args.cases.split(","):
        case = grid.CASES[case_name]
        for point in args.points.split(","):
            w, t, b = (int(v) for v in point.split(":"))
            kinds = _model(case, w, t, b)
            if args.no_train:
                del kinds["train"]
            for name in configs:  # warm-up (compiles) in every configuration
                configure(name)
                for fn in kinds.values():
                    fn()
                    fn()
            times = {(k, c): [] for k in kinds for c in configs}
            load0 = os.getloadavg()
            for _ in range(args.rounds):
                for kind, fn in kinds.items():
                    for name in configs:
                        configure(name)
                        for _ in range(args.calls):
                            t0 = time.perf_counter()
                            fn()
                            times[kind, name].append((time.perf_counter() - t0) * 1e3)
            load1 = os.getloadavg()
            for kind in kinds:
                cells = " / ".join(f"{statistics.median(times[kind, c]):.3f}" for c in configs)
                print(f"{case_name} {point} {kind}: {'/'.join(configs)} ms {cells}  "
                      f"(n={len(times[kind, configs[0]])}, load {load0[0]:.2f}-{load1[0]:.2f})", flush=True)
    configure("new")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
