"""Recurrent benchmarks M2, M3, M4, M6: tinynn vs Keras (TensorFlow), batch 128, float32, same run.

    python benchmarks/bench_rnn.py [repeats] [--models M3,M6] [--xla]

    M2  (240, 14) -> Conv1D(32, 5, relu) -> MaxPooling1D(3) -> Conv1D(32, 5, relu) -> GRU(32) -> Dense(1); MAE
        (M2d: the same with GRU(32, dropout=0.1, recurrent_dropout=0.5), the Jena seed model)
    M3  Embedding(10000, 32), length 500 -> LSTM(32) -> Dense(1, sigmoid); binary cross-entropy
    M4  Embedding(10000, 32), length 500 -> SimpleRNN(32, return_sequences) -> SimpleRNN(32) -> Dense(1); MSE
    M6  Embedding(10000, 32), length 500 -> Bidirectional(LSTM(32)) -> Dense(1); MSE
    optimizer RMSprop everywhere; Keras gets tinynn's initial weights.

Each framework runs in its own subprocess (so each peak RSS is its own and the tinynn process never imports
TensorFlow): tinynn once with an empty numba cache (first call = compile time) and once with the warm cache,
then Keras (``jit_compile`` off, its CPU default; ``--xla`` adds a Keras run with ``jit_compile=True``).
Reported: train step (``train_on_batch``) and predict (``predict_on_batch``), median of ``repeats`` after 2
warm-up calls; the first train call; peak RSS; for tinynn a per-layer forward/backward breakdown. The
machine load is printed too: other processes on the 2 cores distort every number.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
from common import first_calls_then_medians, format_table, median_ms, peak_rss_mib, run_worker

HERE = os.path.dirname(os.path.abspath(__file__))
B = 128
TARGETS = {"M2": (39, 15), "M3": (113, 47), "M4": (94, 31), "M6": (260, 97)}  # issue 4: train / predict ms


def data(model: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    if model.startswith("M2"):
        x = rng.normal(size=(B, 240, 14)).astype(np.float32)
        y = rng.normal(size=(B, 1)).astype(np.float32)
    else:
        x = rng.integers(1, 10000, size=(B, 500)).astype(np.int32)
        y = (rng.random((B, 1)) > 0.5).astype(np.float32)
    return x, y


def build(model: str, L, seq, compile_kwargs=None, steps: int = 500):
    """The model from the module docstring with layer module L (tinynn.layers or keras.layers); ``steps``: the
    sequence length of M3/M4/M6 (500 in the benchmark; tests train the same stacks on shorter sequences)."""
    if model.startswith("M2"):
        rnn = L.GRU(32, dropout=0.1, recurrent_dropout=0.5) if model == "M2d" else L.GRU(32)
        body = [L.Input(shape=(240, 14)), L.Conv1D(32, 5, activation="relu"), L.MaxPooling1D(3),
                L.Conv1D(32, 5, activation="relu"), rnn, L.Dense(1)]  # fmt: skip
        loss = "mae"
    else:
        inp = L.Input(shape=(steps,), dtype="int32") if L.__name__.startswith("keras") else L.Input(shape=(steps,))
        head = {
            "M3": [L.LSTM(32), L.Dense(1, activation="sigmoid")],
            "M4": [L.SimpleRNN(32, return_sequences=True), L.SimpleRNN(32), L.Dense(1)],
            "M6": [L.Bidirectional(L.LSTM(32)), L.Dense(1)],
        }[model]
        body = [inp, L.Embedding(10000, 32), *head]
        loss = "binary_crossentropy" if model == "M3" else "mse"
    net = seq(body)
    net.compile(optimizer="rmsprop", loss=loss, **(compile_kwargs or {}))
    return net


def worker_tinynn(model: str, weights_path: str, repeats: int) -> dict:
    import tinynn as tn
    from tinynn import layers

    net = build(model, layers, tn.Sequential)
    assert "tensorflow" not in sys.modules
    np.savez(weights_path, *net.get_weights())
    x, y = data(model)
    timing = first_calls_then_medians(lambda: net.train_on_batch(x, y), lambda: net.predict_on_batch(x), repeats)
    breakdown, acts = [], [x]
    for layer in net.layers:
        acts.append(layer(acts[-1], training=True))
    g = np.random.default_rng(1).normal(size=acts[-1].shape).astype(np.float32)
    for layer, a in zip(reversed(net.layers), reversed(acts[:-1])):
        fwd = median_ms(lambda layer=layer, a=a: layer(a, training=True), max(3, repeats // 3), warmup=1)

        def fwd_bwd(layer=layer, a=a, g=g):
            layer(a, training=True)
            return layer.backward(g)

        both = median_ms(fwd_bwd, max(3, repeats // 3), warmup=1)
        breakdown.append({"layer": type(layer).__name__, "forward ms": f"{fwd:.1f}",
                          "backward ms": f"{both - fwd:.1f}"})
        g = fwd_bwd()
        if g is None:
            break
    return {**timing, "rss": peak_rss_mib(), "breakdown": breakdown[::-1]}


def worker_keras(model: str, weights_path: str, repeats: int, xla: bool) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    net = build(model, keras.layers, keras.Sequential, {"jit_compile": xla})
    with np.load(weights_path) as f:
        net.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
    x, y = data(model)
    timing = first_calls_then_medians(lambda: net.train_on_batch(x, y), lambda: net.predict_on_batch(x), repeats)
    return {**timing, "rss": peak_rss_mib()}


def _spawn(which: str, model: str, weights_path: str, repeats: int, env_extra: dict | None = None) -> dict:
    args = ["--worker", which, "--model", model, "--weights", weights_path,
           "--repeats", str(repeats)]
    return run_worker("bench_rnn.py", args, env_extra, f"{which} worker on {model}")


def main(argv: list[str]) -> None:
    if "--worker" in argv:
        arg = lambda k: argv[argv.index(k) + 1]  # noqa: E731
        which, model, weights, repeats = arg("--worker"), arg("--model"), arg("--weights"), int(arg("--repeats"))
        if which == "tinynn":
            result = worker_tinynn(model, weights, repeats)
        else:
            result = worker_keras(model, weights, repeats, xla=(which == "keras-xla"))
        print(json.dumps(result))
        return
    repeats = int(argv[0]) if argv and argv[0].isdigit() else 10
    models = argv[argv.index("--models") + 1].split(",") if "--models" in argv else ["M2", "M2d", "M3", "M4", "M6"]
    kerases = ["keras", "keras-xla"] if "--xla" in argv else ["keras"]
    rows, breakdowns, load = [], {}, [os.getloadavg()[0]]
    for model in models:
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "w.npz")
            cache = {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba_cache")}
            cold = _spawn("tinynn", model, weights, 2, cache)  # empty numba cache: compiles every kernel
            ours = _spawn("tinynn", model, weights, repeats, cache)  # warm cache
            theirs = {k: _spawn(k, model, weights, repeats) for k in kerases}
        load.append(os.getloadavg()[0])
        target = TARGETS.get(model)
        for what, key, k in (("train step", "train", 0), ("predict", "predict", 1)):
            row = {"model": model, "what": what, "tinynn ms": f"{ours[key]:.1f}",
                   "target ms": "" if target is None else f"<= {target[k]}"}  # fmt: skip
            for name, res in theirs.items():
                row[f"{name} ms"] = f"{res[key]:.1f}"
                row[f"{name}/tinynn"] = f"{res[key] / ours[key]:.2f}x"
            rows.append(row)
        rows.append({"model": model, "what": "first train call (cold numba cache)",
                     "tinynn ms": f"{cold['first_train']:.0f}",
                     **{f"{n} ms": f"{r['first_train']:.0f}" for n, r in theirs.items()}})  # fmt: skip
        rows.append({"model": model, "what": "first train call (warm cache)",
                     "tinynn ms": f"{ours['first_train']:.0f}"})
        rows.append({"model": model, "what": "peak RSS MiB", "tinynn ms": f"{ours['rss']:.0f}",
                     **{f"{n} ms": f"{r['rss']:.0f}" for n, r in theirs.items()}})  # fmt: skip
        breakdowns[model] = ours["breakdown"]
        print(f"{model} done", file=sys.stderr)
    cols = ["model", "what", "tinynn ms", "target ms"]
    for k in kerases:
        cols += [f"{k} ms", f"{k}/tinynn"]
    print(format_table(rows, cols))
    for model, bd in breakdowns.items():
        print(f"\ntinynn {model} per layer (median ms, training mode):")
        print(format_table(bd, ["layer", "forward ms", "backward ms"]))
    print(f"\nload average during the run: {', '.join(f'{v:.1f}' for v in load)} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main(sys.argv[1:])
