"""A/B of tinynn's cold start (launch -> end of the first ``train_on_batch``) between checkouts, runs alternating.

    python benchmarks/cold_start.py --checkouts /work/main /work/wt-x [--models M1,M7] [--repeats 3] [--empty]

Each run is ``run.py``'s cold-start worker of that checkout (``run.worker_cold_start``, default background compile
mode), run from this script so that it also reports its CPU time (all threads) at the end of the step. *warm*: every
checkout gets its own numba cache folder, filled the way ``run.py`` fills it: by a new user's first run (one
cold start on the empty folder, reported apart as ``first run``); then ``--repeats`` runs per checkout alternate, each
a second run. *empty* (``--empty``): a fresh cache folder for every run. Prints the medians and the load average;
``--json`` also writes every time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

KEEP_BYTECODE = False  # --pyc: drop PYTHONDONTWRITEBYTECODE in the workers (as benchmarks/common.run_worker does)


def _python(root: str, args: list[str], env_extra: dict) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    if KEEP_BYTECODE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)  # run.py's workers put their own checkout first
    out = subprocess.run([sys.executable, *args], cwd=os.path.join(root, "benchmarks"), env=env,
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{root} {args}: {out.stderr[-2000:]}")
    return out.stdout


def worker(model: str) -> dict:
    """run.py's cold-start worker (``run.worker_cold_start``) of the checkout whose benchmarks/ is the working
    folder, also reporting this process's CPU time (all its threads) at the end of the first step."""
    sys.path.insert(0, os.getcwd())
    import run

    x, y = run.model_data(model)
    net = run.build_model(model, "tinynn")
    net.train_on_batch(x, y)
    done, cpu = time.time(), time.process_time()
    from tinynn.kernels import warmup

    warmup.wait_until_idle()
    return {"t_done": done, "cpu": cpu}


def cold_start(root: str, model: str, cache: str) -> tuple[float, float]:
    """(launch -> first step done s, the worker's CPU s) for the checkout ``root``, numba's cache in ``cache``."""
    t0 = time.time()
    out = _python(root, [os.path.abspath(__file__), "--worker", model], {"TINYNN_COMPILE": "background",
                                                                          "NUMBA_CACHE_DIR": cache})
    done = json.loads(out.strip().splitlines()[-1])
    return done["t_done"] - t0, done["cpu"]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(argv[1])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkouts", nargs="+", required=True)
    p.add_argument("--models", default="M1,M2,M3,M4,M5,M6,M7,M8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--empty", action="store_true", help="a fresh numba cache for every run")
    p.add_argument("--json", help="write every time here")
    p.add_argument("--pyc", action="store_true", help="let the workers write and use Python's bytecode cache")
    args = p.parse_args(argv)
    global KEEP_BYTECODE
    KEEP_BYTECODE = args.pyc
    names = [os.path.basename(os.path.normpath(c)) for c in args.checkouts]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            caches = [os.path.join(tmp, f"{model}_{i}") for i in range(len(args.checkouts))]
            first = {}
            if not args.empty:
                for root, cache, name in zip(args.checkouts, caches, names):
                    first[name] = cold_start(root, model, cache)[0]  # a new user's first run fills the cache
            times: dict = {name: [] for name in names}
            cpus: dict = {name: [] for name in names}
            loads = [os.getloadavg()[0]]
            for r in range(args.repeats):
                for i, (root, name) in enumerate(zip(args.checkouts, names)):
                    cache = os.path.join(tmp, f"{model}_{i}_empty{r}") if args.empty else caches[i]
                    wall, cpu = cold_start(root, model, cache)
                    times[name].append(wall)
                    cpus[name].append(cpu)
                loads.append(os.getloadavg()[0])
            results[model] = {"times": times, "cpu": cpus, "first_run": first, "load": loads}
            cells = "  ".join(f"{n} {statistics.median(t):.2f} s ({', '.join(f'{v:.2f}' for v in t)}; "
                              f"CPU {statistics.median(cpus[n]):.2f})"
                              + (f" [first run {first[n]:.2f}]" if n in first else "") for n, t in times.items())
            print(f"{model} {'empty' if args.empty else 'warm'}: {cells}  load {min(loads):.1f}-{max(loads):.1f}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
