"""A/B of tinynn's cold start (launch -> end of the first ``train_on_batch``) between checkouts, runs alternating.

    python benchmarks/cold_start.py --checkouts /work/main /work/wt-x [--models M1,M7] [--repeats 3] [--empty]

Each run is ``run.py``'s cold-start worker of that checkout (``run.cold_start_seconds``: default background compile
mode). *warm*: every checkout gets its own numba cache folder, filled the way ``run.py`` fills it (two steady-state
workers in "wait" mode); the first cold start after that is reported apart (``after steady``: it may still compile
what only the background warm-ups need), then ``--repeats`` runs per checkout alternate. *empty* (``--empty``): a
fresh cache folder for every run. Prints the medians and the load average; ``--json`` also writes every time.
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


def _python(root: str, args: list[str], env_extra: dict) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    env.pop("PYTHONPATH", None)  # run.py's workers put their own checkout first
    out = subprocess.run([sys.executable, *args], cwd=os.path.join(root, "benchmarks"), env=env,
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{root} {args}: {out.stderr[-2000:]}")
    return out.stdout


def cold_start(root: str, model: str, cache: str) -> float:
    """run.cold_start_seconds of the checkout ``root``, with numba's cache in ``cache``."""
    t0 = time.time()
    out = _python(root, ["run.py", "--cold-start", model, "tinynn"], {"TINYNN_COMPILE": "background",
                                                                       "NUMBA_CACHE_DIR": cache})
    return json.loads(out.strip().splitlines()[-1])["t_done"] - t0


def fill_like_run(root: str, model: str, cache: str, weights: str) -> None:
    """The two steady-state workers run.py's measure() runs before its cold starts (they fill the cache)."""
    code = ("import sys, run\nfor _ in range(2):\n"
            f"    run.steady({model!r}, 'tinynn', {weights!r}, 2, {{'NUMBA_CACHE_DIR': {cache!r}}})\n")
    _python(root, ["-c", code], {})


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkouts", nargs="+", required=True)
    p.add_argument("--models", default="M1,M2,M3,M4,M5,M6,M7,M8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--empty", action="store_true", help="a fresh numba cache for every run")
    p.add_argument("--json", help="write every time here")
    args = p.parse_args(argv)
    names = [os.path.basename(os.path.normpath(c)) for c in args.checkouts]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            caches = [os.path.join(tmp, f"{model}_{i}") for i in range(len(args.checkouts))]
            first = {}
            if not args.empty:
                for root, cache, name in zip(args.checkouts, caches, names):
                    fill_like_run(root, model, cache, os.path.join(tmp, "w.npz"))
                    first[name] = cold_start(root, model, cache)
            times: dict = {name: [] for name in names}
            loads = [os.getloadavg()[0]]
            for r in range(args.repeats):
                for i, (root, name) in enumerate(zip(args.checkouts, names)):
                    cache = os.path.join(tmp, f"{model}_{i}_empty{r}") if args.empty else caches[i]
                    times[name].append(cold_start(root, model, cache))
                loads.append(os.getloadavg()[0])
            results[model] = {"times": times, "after_steady": first, "load": loads}
            cells = "  ".join(f"{n} {statistics.median(t):.2f} s ({', '.join(f'{v:.2f}' for v in t)})"
                              + (f" [after steady {first[n]:.2f}]" if n in first else "") for n, t in times.items())
            print(f"{model} {'empty' if args.empty else 'warm'}: {cells}  load {min(loads):.1f}-{max(loads):.1f}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
