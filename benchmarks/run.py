"""`make bench`: the eight benchmark models M1-M8 side by side, tinynn vs Keras 3 (TensorFlow), and PyTorch when
installed; writes benchmarks/RESULTS.md and benchmarks/results.png.

    python benchmarks/run.py [--repeats 10] [--models M1,M3] [--no-plot] [--out benchmarks]

The models (batch 128, float32, RMSprop; Keras gets tinynn's initial weights):

    M1  Embedding(10000,128), len 500 -> Conv1D(32,7,relu) -> MaxPooling1D(5) -> Conv1D(32,7,relu)
        -> GlobalMaxPooling1D -> Dense(1,sigmoid); binary cross-entropy            (benchmarks/bench_conv.py)
    M2  (240,14) -> Conv1D(32,5,relu) -> MaxPooling1D(3) -> Conv1D(32,5,relu) -> GRU(32) -> Dense(1); MAE
    M3  Embedding(10000,32), len 500 -> LSTM(32) -> Dense(1,sigmoid)
    M4  Embedding(10000,32), len 500 -> SimpleRNN(32,seq) -> SimpleRNN(32) -> Dense(1)
    M6  Embedding(10000,32), len 500 -> Bidirectional(LSTM(32)) -> Dense(1)          (benchmarks/bench_rnn.py)
    M5  Input(64) -> Dense(32,relu) -> Dense(32,relu) -> Dense(10,softmax)           (benchmarks/bench_dense.py)
    M7  the seed's cats-vs-dogs convnet, (150,150,3) -> 4x [Conv2D(3x3,relu) -> MaxPooling2D(2)] -> Flatten
        -> Dropout(0.5) -> Dense(512,relu) -> Dense(1,sigmoid), batch 32          (benchmarks/bench_images.py)
    M8  seed 003's SeparableConv2D stack, (64,64,3) -> ... -> GlobalAveragePooling2D -> Dense(32) -> Dense(10),
        batch 32                                                                   (benchmarks/bench_images.py)

What is measured, every framework in its own subprocess (so peak memory is its own, and the tinynn process
never imports TensorFlow):

* train step (one ``train_on_batch``) and predict (one ``predict_on_batch``): the median of ``--repeats`` calls
  after 2 warm-up calls (the workers of bench_conv.py / bench_rnn.py; M5's worker is here), the fastest of
  :data:`PROCESSES` processes per framework, the frameworks taking turns;
* first-call compile time: tinynn's first train call with an empty numba cache minus the same with the warm
  cache (what numba's compilation costs once per machine); Keras's first call (tf.function tracing, every run);
* cold start: wall time from launching ``python`` to the end of the first train step (imports, building the
  model, the first step) — for tinynn as a new user's first run (an empty numba cache) and second run (the
  cache that first run filled);
* peak resident memory (``ru_maxrss``) of the worker process;
* PyTorch, when it is installed, with the twins in benchmarks/bench_torch.py (its own initial weights; its
  processes alternate between PyTorch's default thread count and one thread, since its spinning thread pool
  suffers most when the cores are shared).

The machine's load average is recorded: other processes on a small machine distort every number.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = {
    "M1": "Embedding(10000,128) len 500 → Conv1D(32,7) → MaxPool(5) → Conv1D(32,7) → GlobalMaxPool → Dense(1)",
    "M2": "(240,14) → Conv1D(32,5) → MaxPool(3) → Conv1D(32,5) → GRU(32) → Dense(1), MAE",
    "M3": "Embedding(10000,32) len 500 → LSTM(32) → Dense(1,sigmoid)",
    "M4": "Embedding(10000,32) len 500 → SimpleRNN(32,seq) → SimpleRNN(32) → Dense(1)",
    "M5": "Input(64) → Dense(32,relu) → Dense(32,relu) → Dense(10,softmax)",
    "M6": "Embedding(10000,32) len 500 → Bidirectional(LSTM(32)) → Dense(1)",
    "M7": "(150,150,3) → Conv2D(32,3) → MaxPool(2) → Conv2D(64,3) → MaxPool → Conv2D(128,3) → MaxPool → "
          "Conv2D(128,3) → MaxPool → Flatten → Dropout(0.5) → Dense(512) → Dense(1), batch 32",
    "M8": "(64,64,3) → SeparableConv2D(32,3) → SeparableConv2D(64,3) → MaxPool(2) → SeparableConv2D(64,3) → "
          "SeparableConv2D(128,3) → MaxPool(2) → SeparableConv2D(64,3) → SeparableConv2D(128,3) → "
          "GlobalAveragePooling2D → Dense(32) → Dense(10,softmax), batch 32",
}
FAMILY = {"M1": "conv", "M2": "rnn", "M3": "rnn", "M4": "rnn", "M5": "dense", "M6": "rnn", "M7": "image", "M8": "image"}


# ----------------------------------------------------------------------------- adapters: models and data
def model_data(model: str):
    """``(x, y)`` of one batch of ``model``, exactly what its bench_*.py worker trains on."""
    import numpy as np

    if FAMILY[model] == "conv":
        import bench_conv

        x_ids, _, y = bench_conv.data()
        return x_ids, y
    if FAMILY[model] == "rnn":
        import bench_rnn

        return bench_rnn.data(model)
    if FAMILY[model] == "image":
        import bench_images

        return bench_images.data(model)
    rng = np.random.default_rng(0)  # bench_dense.run's batch
    x = rng.normal(size=(128, 64)).astype("float32")
    return x, np.eye(10, dtype="float32")[rng.integers(0, 10, 128)]


def build_model(model: str, framework: str):
    """The compiled model in ``framework`` ('tinynn' or 'keras'), from the bench_*.py definitions."""
    family = FAMILY[model]
    if family == "image":
        import bench_images

        if framework == "tinynn":
            import tinynn as tn

            return bench_images.build(model, tn)
        import keras

        return bench_images.build(model, keras)
    if framework == "tinynn":
        if family == "conv":
            import bench_conv

            return bench_conv.tinynn_model(stack=False)
        if family == "rnn":
            import bench_rnn

            import tinynn as tn

            return bench_rnn.build(model, tn.layers, tn.Sequential)
        import bench_dense

        return bench_dense.build_tinynn()
    import keras

    if family == "rnn":
        import bench_rnn

        return bench_rnn.build(model, keras.layers, keras.Sequential)
    L = keras.layers
    if family == "conv":  # bench_conv.worker_keras builds this inline; the same layers here
        import bench_conv

        net = keras.Sequential([
            keras.Input(shape=(bench_conv.T,), dtype="int32"), L.Embedding(bench_conv.VOCAB, bench_conv.EMB),
            L.Conv1D(32, 7, activation="relu"), L.MaxPooling1D(5), L.Conv1D(32, 7, activation="relu"),
            L.GlobalMaxPooling1D(), L.Dense(1, activation="sigmoid"),
        ])
        net.compile(optimizer=keras.optimizers.RMSprop(), loss="binary_crossentropy")
        return net
    net = keras.Sequential([keras.Input(shape=(64,)), L.Dense(32, activation="relu"), L.Dense(32, activation="relu"),
                            L.Dense(10, activation="softmax")])  # bench_dense.build_keras without set_weights
    net.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    return net


# ----------------------------------------------------------------------------- workers (subprocesses)
def worker_dense(framework: str, weights_path: str, repeats: int) -> dict:
    """M5 in the same shape as bench_conv/bench_rnn's workers (bench_dense.py times in-process only)."""
    import numpy as np
    from common import first_calls_then_medians, peak_rss_mib

    net = build_model("M5", framework)
    if framework == "tinynn":
        assert "tensorflow" not in sys.modules
        np.savez(weights_path, *net.get_weights())
    else:
        with np.load(weights_path) as f:
            net.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
    x, y = model_data("M5")
    timing = first_calls_then_medians(lambda: net.train_on_batch(x, y), lambda: net.predict_on_batch(x),
                                      max(repeats, 50), warmup=5)
    return {**timing, "rss": peak_rss_mib()}


def worker_cold_start(model: str, framework: str) -> dict:
    """Build ``model`` and run one train step; the parent measures launch -> ``t_done``. tinynn's background
    compilation (if any) is then waited for, so that it does not run on into the next measurement."""
    x, y = model_data(model)
    net = build_model(model, framework)
    net.train_on_batch(x, y)
    done = time.time()
    if framework == "tinynn":
        from tinynn.kernels import warmup

        warmup.wait_until_idle()
    return {"t_done": done}


def _run_worker(args: list[str], env_extra: dict | None = None) -> dict:
    from common import run_worker  # here, not at the top: the cold-start worker imports nothing it does not need

    return run_worker("run.py", args, env_extra)


def cold_start_seconds(model: str, framework: str, env_extra: dict | None = None) -> float:
    """Launch -> first train step done, with tinynn's default background compilation (a new user's first run)."""
    t0 = time.time()
    env = {"TINYNN_COMPILE": "background", **(env_extra or {})}
    done = _run_worker(["--cold-start", model, framework], env)["t_done"]
    return done - t0


def steady(model: str, framework: str, weights: str, repeats: int, env_extra: dict | None = None) -> dict:
    """Train/predict medians, first calls and peak RSS of one framework, via the bench_*.py workers."""
    family = FAMILY[model]
    if family == "conv":
        import bench_conv

        return bench_conv._spawn(framework, False, weights, repeats, env_extra)
    if family == "rnn":
        import bench_rnn

        return bench_rnn._spawn(framework, model, weights, repeats, env_extra)
    if family == "image":
        import bench_images

        return bench_images._spawn(framework, model, weights, repeats, env_extra)
    return _run_worker(["--worker-dense", framework, weights, str(repeats)], env_extra)


def has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


#: Processes per framework for the train and predict times; each time is the fastest process's median (as the grid
#: keeps each point's fastest): one process may fall in a slow spell of the shared machine, when every layer runs
#: ~1.5× slower for seconds (M5's predict 49-50 µs or 62-78 µs from one process to the next, benchmarks/RESULTS.md).
PROCESSES = 2


def _keep_fastest(record: dict, other: dict) -> None:
    """record's train and predict times become the faster of its own and ``other``'s."""
    for key in ("train", "predict"):
        if key in other:
            record[key] = min(record[key], other[key])


def measure(model: str, repeats: int) -> dict:
    """Every number for one model; a framework that fails is recorded with its error, the rest go on. Train and
    predict: the fastest of :data:`PROCESSES` processes per framework, taken in turns (tinynn, Keras, PyTorch,
    then again); PyTorch's processes run with its default threads and with one."""
    result: dict = {"model": model}
    keras_ok, torch_ok = has("keras") and has("tensorflow"), has("torch")
    torch_threads = ([], ["1"])  # PyTorch's processes: default threads, then one thread
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.npz")
        empty_cache = {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba_cache")}
        try:
            cold = steady(model, "tinynn", weights, 2, empty_cache)  # compiles every kernel
            ours = steady(model, "tinynn", weights, repeats, empty_cache)  # the same cache, now warm
            ours["compile_ms"] = cold["first_train"] - ours["first_train"]
            ours["first_train_cold_cache"] = cold["first_train"]
            # a new user's first run (empty cache), then their second (the cache as that first run left it: the
            # steady workers above run in "wait" mode, which skips what only background compilation needs)
            first_run = {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba_cache_2")}
            ours["cold_start_empty_cache"] = cold_start_seconds(model, "tinynn", first_run)
            ours["cold_start_warm_cache"] = cold_start_seconds(model, "tinynn", first_run)
            import compile_profile

            ours["compile_profile"] = compile_profile.profile(model)
            result["tinynn"] = ours
        except Exception as err:  # noqa: BLE001 - reported in the table
            result["tinynn"] = {"error": str(err).splitlines()[0] if str(err) else repr(err)}
            return result
        for turn in range(PROCESSES):
            if turn > 0:
                try:
                    _keep_fastest(ours, steady(model, "tinynn", weights, repeats, empty_cache))
                except Exception as err:  # noqa: BLE001 - reported in the table, as a first process's failure is
                    result["tinynn"] = {"error": str(err).splitlines()[0] if str(err) else repr(err)}
                    return result
            if keras_ok and "error" not in result.get("keras", {}):
                try:
                    theirs = steady(model, "keras", weights, repeats)
                    if turn == 0:
                        theirs["cold_start"] = cold_start_seconds(model, "keras")
                        result["keras"] = theirs
                    else:
                        _keep_fastest(result["keras"], theirs)
                except Exception as err:  # noqa: BLE001
                    result["keras"] = {"error": str(err).splitlines()[0]}
            if torch_ok and "error" not in result.get("torch", {}):
                try:
                    run = _run_torch([model, str(repeats), *torch_threads[turn % 2]])
                    if turn == 0:
                        t0 = time.time()
                        run["cold_start"] = _run_torch(["--cold-start", model])["t_done"] - t0
                        result["torch"] = run
                    else:
                        _keep_fastest(result["torch"], run)
                except Exception as err:  # noqa: BLE001
                    result["torch"] = {"error": str(err).splitlines()[0]}
    return result


def _run_torch(args: list[str]) -> dict:
    from common import run_worker

    return run_worker("bench_torch.py", args, what=f"PyTorch worker {args}")


# ----------------------------------------------------------------------------- reporting
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "numba", "scipy", "tensorflow", "keras", "torch"):
        if has(mod):
            from importlib.metadata import PackageNotFoundError, version

            for dist in (mod, "tensorflow-cpu" if mod == "tensorflow" else mod):
                try:
                    versions[mod] = version(dist)
                    break
                except PackageNotFoundError:
                    continue
    return {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "versions": versions}


def _f(value, fmt: str | None = None) -> str:
    """Blank for a missing value; by default 3 significant figures (0.412, 4.12, 41.2, 412)."""
    if value is None:
        return ""
    if fmt is not None:
        return fmt.format(value)
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _ratio(theirs, ours) -> str:
    return "" if theirs is None or ours is None or ours == 0 else f"{theirs / ours:.2f}×"


def rows_of(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """(speed rows, start-up and memory rows) for the tables."""
    speed, startup = [], []
    for r in results:
        o, k = r.get("tinynn", {}), r.get("keras", {})
        if "error" in o:
            speed.append({"model": r["model"], "tinynn train ms": "error: " + o["error"][:60]})
            continue
        t = r.get("torch", {})
        row = {
            "model": r["model"],
            "tinynn train ms": _f(o.get("train")), "Keras train ms": _f(k.get("train")),
            "Keras/tinynn train": _ratio(k.get("train"), o.get("train")),
        }
        if "torch" in r:
            row.update({"PyTorch train ms": _f(t.get("train")),
                        "PyTorch/tinynn train": _ratio(t.get("train"), o.get("train"))})
        row.update({
            "tinynn predict ms": _f(o.get("predict")), "Keras predict ms": _f(k.get("predict")),
            "Keras/tinynn predict": _ratio(k.get("predict"), o.get("predict")),
        })
        if "torch" in r:
            row.update({"PyTorch predict ms": _f(t.get("predict")),
                        "PyTorch/tinynn predict": _ratio(t.get("predict"), o.get("predict"))})
        speed.append(row)
        startup.append({
            "model": r["model"],
            "tinynn compile ms": _f(max(o["compile_ms"], 0.0), "{:.0f}") if "compile_ms" in o else "",
            "tinynn 1st step ms (warm cache)": _f(o.get("first_train"), "{:.0f}"),
            "Keras 1st step ms": _f(k.get("first_train"), "{:.0f}"),
            "tinynn cold start s (warm / empty cache)":
                f"{o['cold_start_warm_cache']:.1f} / {o['cold_start_empty_cache']:.1f}",
            "Keras cold start s": _f(k.get("cold_start")),
            "tinynn peak MiB": _f(o.get("rss"), "{:.0f}"), "Keras peak MiB": _f(k.get("rss"), "{:.0f}"),
        })
        if "torch" in r:
            startup[-1].update({"PyTorch 1st step ms": _f(t.get("first_train"), "{:.0f}"),
                                "PyTorch cold start s": _f(t.get("cold_start")),
                                "PyTorch peak MiB": _f(t.get("rss"), "{:.0f}")})
    return speed, startup


def compile_rows(results: list[dict]) -> list[dict]:
    """Per model: numba's compile time per kernel family (CPU seconds, empty cache; benchmarks/compile_profile.py)."""
    rows = []
    for r in results:
        prof = r.get("tinynn", {}).get("compile_profile")
        if not prof:
            continue
        row = {"model": r["model"], "total s": f"{prof['total']:.1f}"}
        for family, seconds in sorted(prof["families"].items(), key=lambda kv: -kv[1]):
            n = prof.get("specialisations", {}).get(family)
            row[family] = f"{seconds:.2f}" + (f" ({n})" if n else "")
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


#: RESULTS.md's last section, written by hand (measurements behind kernel design choices): kept by write_results.
KEPT_SECTION = "## Kernel design measurements"
#: The section benchmarks/grid.py writes: kept by write_results.
GRID_SECTION = "## Scaling grid"


def write_results(results: list[dict], info: dict, out: pathlib.Path, repeats: int, load: list[float]) -> str:
    speed, startup = rows_of(results)
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    text = "\n".join([
        "# Benchmark results",
        "",
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores), Python {info['python']}; {versions}.",
        f"Load average during the run: {', '.join(f'{v:.1f}' for v in load)} (other processes share the cores, so "
        "absolute numbers are noisy; the ratios within one row were measured minutes apart).",
        "Batch 128 (M7, M8: 32), float32, RMSprop; each framework in its own processes; median of "
        f"{repeats} calls after 2 warm-up calls (M5: 50 calls), the fastest of {PROCESSES} processes per framework "
        "(the frameworks taking turns). Keras starts from tinynn's initial weights; PyTorch "
        "(benchmarks/bench_torch.py, when installed) from its own, its processes with its default thread count "
        "and with one thread. Regenerate with `make bench`.",
        "",
        "## Train step and predict per batch",
        "",
        markdown_table(speed),
        "",
        "## Start-up, compilation and memory",
        "",
        "*compile* = tinynn's first train call with an empty numba cache minus the same call with the cache warm "
        "(paid once per machine: kernels are cached on disk). *1st step* = the first `train_on_batch` in a fresh "
        "process (Keras traces its `tf.function` there every run). *cold start* = from launching `python` to the "
        "end of the first train step (imports, model, first step). *peak* = the worker's maximum resident memory.",
        "",
        markdown_table(startup),
        "",
        "*Cold start* runs tinynn as a new user would: with an empty cache every layer starts on its NumPy twins "
        "while a separate process compiles its kernels (`tinynn/kernels/warmup.py`); the fast kernels take over "
        "when they are ready. Compile time per kernel family — CPU seconds numba spends compiling each tinynn "
        "kernel module's functions (with the numba library code they pull in) at the first train step and "
        "predict call, empty cache, in that process (`benchmarks/compile_profile.py`; in parentheses the "
        "number of compiled specialisations):",
        "",
        markdown_table(compile_rows(results)),
        "",
        "## Models",
        "",
        *[f"- **{m}** {MODELS[m]}" for m in [r["model"] for r in results]],
        "",
    ])
    previous = out / "RESULTS.md"
    if previous.exists():  # the scaling grid (benchmarks/grid.py) and the hand-written design notes survive
        old = previous.read_text(encoding="utf-8")
        if GRID_SECTION in old:
            start = old.index(GRID_SECTION)
            end = old.find("\n## ", start + len(GRID_SECTION))
            text += "\n" + (old[start:] if end < 0 else old[start:end + 1])
        if KEPT_SECTION in old:
            text += "\n" + old[old.index(KEPT_SECTION):]
    previous.write_text(text, encoding="utf-8")
    return text


def plot(results: list[dict], path: pathlib.Path, info: dict) -> pathlib.Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        print("(matplotlib not installed: no bar chart)")
        return None
    ok = [r for r in results if "error" not in r.get("tinynn", {})]
    if not ok:
        return None
    names = [r["model"] for r in ok]
    panels = [("train step (ms, log scale)", "train", None), ("predict per batch (ms, log scale)", "predict", None),
              ("cold start: launch → first step done (s)", "cold", None), ("peak memory (MiB)", "rss", None)]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    xs = np.arange(len(names))
    for ax, (title, key, _) in zip(axes, panels):
        if key == "cold":
            series = [("tinynn (warm numba cache)", [r["tinynn"]["cold_start_warm_cache"] for r in ok], "tab:blue"),
                      ("tinynn (empty cache)", [r["tinynn"]["cold_start_empty_cache"] for r in ok], "lightsteelblue"),
                      ("Keras", [r.get("keras", {}).get("cold_start", np.nan) for r in ok], "tab:orange")]
        else:
            series = [("tinynn", [r["tinynn"][key] for r in ok], "tab:blue"),
                      ("Keras", [r.get("keras", {}).get(key, np.nan) for r in ok], "tab:orange")]
        if any("torch" in r for r in ok):
            series.append(("PyTorch", [r.get("torch", {}).get("cold_start" if key == "cold" else key, np.nan)
                                       for r in ok], "tab:red"))
        width = 0.8 / len(series)
        for i, (label, values, color) in enumerate(series):
            ax.bar(xs + (i - (len(series) - 1) / 2) * width, values, width, label=label, color=color)
        ax.set_xticks(xs, names)
        ax.set_title(title, fontsize=10)
        if key in ("train", "predict"):
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    others = "Keras 3 (TensorFlow CPU)" + (" and PyTorch" if any("torch" in r for r in ok) else "")
    fig.suptitle(f"tinynn vs {others}, batch 128, float32 — {info['date']}, {info['cpu']}, "
                 f"{info['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker-dense"]:
        print(json.dumps(worker_dense(argv[1], argv[2], int(argv[3]))))
        return 0
    if argv[:1] == ["--cold-start"]:
        print(json.dumps(worker_cold_start(argv[1], argv[2])))
        return 0
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of M1..M8")
    p.add_argument("--out", type=pathlib.Path, default=HERE, help="folder for RESULTS.md and results.png")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    models = [m.strip().upper() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    info, load, results = machine(), [os.getloadavg()[0]], []
    for model in models:
        t0 = time.perf_counter()
        print(f"{model}: {MODELS[model]} ...", file=sys.stderr, flush=True)
        results.append(measure(model, args.repeats))
        load.append(os.getloadavg()[0])
        print(f"{model} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = HERE / "out" / "results.json"  # the raw numbers (benchmarks/out/ is not committed)
    raw.parent.mkdir(exist_ok=True)
    raw.write_text(json.dumps({"machine": info, "load": load, "results": results}, indent=1, default=str))
    text = write_results(results, info, args.out, args.repeats, load)
    print(text)
    if not args.no_plot:
        path = plot(results, args.out / "results.png", info)
        if path:
            print(f"bar chart: {path}")
    return 1 if any("error" in r.get("tinynn", {}) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
