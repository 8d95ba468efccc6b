"""M1 benchmark: Embedding(10000, 128) on int sequences of length 500 -> Conv1D(32, 7, relu) -> MaxPooling1D(5)
-> Conv1D(32, 7, relu) -> GlobalMaxPooling1D -> Dense(1, sigmoid); binary cross-entropy, RMSprop, batch 128,
float32. tinynn and Keras (TensorFlow) are timed in the same run, each in its own subprocess so that each
peak RSS is its own (the tinynn process never imports TensorFlow).

    python benchmarks/bench_conv.py [repeats] [--stack] [--rounds N]

Reported per framework: train step (one ``train_on_batch``) and predict (one ``predict_on_batch``), the
median and the minimum of ``repeats`` runs after warm-up, train and predict timed in turns so that both see
the same load (with ``--rounds N`` the two frameworks' workers alternate N times and each keeps its best
round: on a shared 2-core machine other processes distort every number); the first call (tinynn: numba
compile with an empty cache, and loading from a warm cache; Keras: tf.function tracing); peak RSS. For
tinynn also the GEMM share of the step (every convolution FLOP goes through ``tinynn.kernels.blas.grouped_matmul``,
which is wrapped with a timer; the share is the median over runs of GEMM time / step time of the same run)
and a per-layer breakdown.

Without ``tinynn.layers.Embedding`` (or with ``--stack``) it benchmarks the conv/pool stack alone on float
inputs (128, 500, 128) (forward + backward incl. dx, random upstream gradient; Keras: the same stack's
``tf.GradientTape`` step inside one ``tf.function``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from common import first_call_ms, format_table, median_ms, peak_rss_mib, run_worker

HERE = os.path.dirname(os.path.abspath(__file__))
B, T, VOCAB, EMB = 128, 500, 10000, 128


def data(seed=0):
    rng = np.random.default_rng(seed)
    x_ids = rng.integers(1, VOCAB, size=(B, T)).astype(np.int32)
    x_emb = rng.normal(size=(B, T, EMB)).astype(np.float32)
    y = (rng.random((B, 1)) > 0.5).astype(np.float32)
    return x_ids, x_emb, y


# --------------------------------------------------------------------------- tinynn
def tinynn_model(stack: bool, steps: int = T):
    import tinynn as tn
    from tinynn import layers, optimizers

    body = [
        layers.Conv1D(32, 7, activation="relu"),
        layers.MaxPooling1D(5),
        layers.Conv1D(32, 7, activation="relu"),
        layers.GlobalMaxPooling1D(),
        layers.Dense(1, activation="sigmoid"),
    ]
    if stack:
        model = tn.Sequential([layers.Input(shape=(steps, EMB)), *body])
    else:
        model = tn.Sequential([layers.Input(shape=(steps,)), layers.Embedding(VOCAB, EMB), *body])
    model.compile(optimizer=optimizers.RMSprop(), loss="binary_crossentropy")
    return model


class GemmTimer:
    """Wraps tinynn.kernels.blas.grouped_matmul and accumulates the time spent in it."""

    def __init__(self):
        from tinynn.kernels import blas

        self.blas, self.inner, self.total = blas, blas.grouped_matmul, 0.0

    def __enter__(self):
        def timed(a, b, out=None):
            t0 = time.perf_counter()
            result = self.inner(a, b, out)
            self.total += time.perf_counter() - t0
            return result

        self.blas.grouped_matmul = timed
        return self

    def __exit__(self, *exc):
        self.blas.grouped_matmul = self.inner


def interleaved(fns: dict, repeats: int, gemm_timer: GemmTimer | None = None, warmup: int = 2) -> dict:
    """Time the callables in turns (train, predict, train, ...), so that both see the same machine load.

    Returns for each name: the median and the minimum ms over ``repeats`` runs and, with a GEMM timer, the
    median GEMM ms and the median per-run GEMM share (GEMM time / step time of the same run)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    runs: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if gemm_timer is not None:
                gemm_timer.total = 0.0
            t0 = time.perf_counter()
            fn()
            runs[name].append((time.perf_counter() - t0, gemm_timer.total if gemm_timer is not None else 0.0))
    out = {}
    for name, rs in runs.items():
        out[name] = statistics.median(t for t, _ in rs) * 1e3
        out[name + "_min"] = min(t for t, _ in rs) * 1e3
        if gemm_timer is not None:
            out["gemm_" + name] = statistics.median(g for _, g in rs) * 1e3
            out["gemm_share_" + name] = statistics.median(g / t for t, g in rs)
    return out


def worker_tinynn(stack: bool, weights_path: str, repeats: int) -> dict:
    t_import = time.perf_counter()
    model = tinynn_model(stack)
    import_ms = (time.perf_counter() - t_import) * 1e3
    if not stack:
        assert "tensorflow" not in sys.modules
    np.savez(weights_path, *model.get_weights())
    x_ids, x_emb, y = data()
    x = x_emb if stack else x_ids
    first_train = first_call_ms(lambda: model.train_on_batch(x, y))
    first_predict = first_call_ms(lambda: model.predict_on_batch(x))
    with GemmTimer() as gt:
        steps = {"train": lambda: model.train_on_batch(x, y), "predict": lambda: model.predict_on_batch(x)}
        timing = interleaved(steps, repeats, gt)
    # per-layer breakdown: forward and backward of each layer on the activations of this batch
    breakdown = []
    acts = [x]
    for layer in model.layers:
        acts.append(layer(acts[-1], training=True))
    dy = np.random.default_rng(1).normal(size=acts[-1].shape).astype(np.float32)
    grads = [dy]
    for layer, a in zip(reversed(model.layers), reversed(acts[:-1])):
        layer(a, training=True)
        fwd = median_ms(lambda layer=layer, a=a: layer(a, training=True), max(3, repeats // 3), warmup=1)
        layer(a, training=True)
        g = grads[-1]
        bwd = median_ms(lambda layer=layer, g=g: layer.backward(g), max(3, repeats // 3), warmup=1)
        layer(a, training=True)
        grads.append(layer.backward(g))
        breakdown.append({"layer": type(layer).__name__, "forward ms": round(fwd, 2), "backward ms": round(bwd, 2)})
        if grads[-1] is None:
            break
    return {**timing, "first_train": first_train, "first_predict": first_predict, "import_build": import_ms,
            "rss": peak_rss_mib(), "breakdown": breakdown[::-1]}  # fmt: skip


# --------------------------------------------------------------------------- Keras
def worker_keras(stack: bool, weights_path: str, repeats: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    L = keras.layers
    body = [L.Conv1D(32, 7, activation="relu"), L.MaxPooling1D(5), L.Conv1D(32, 7, activation="relu"),
            L.GlobalMaxPooling1D(), L.Dense(1, activation="sigmoid")]  # fmt: skip
    if stack:
        model = keras.Sequential([keras.Input(shape=(T, EMB)), *body])
    else:
        model = keras.Sequential([keras.Input(shape=(T,), dtype="int32"), L.Embedding(VOCAB, EMB), *body])
    model.compile(optimizer=keras.optimizers.RMSprop(), loss="binary_crossentropy")
    with np.load(weights_path) as f:
        model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
    x_ids, x_emb, y = data()
    if stack:
        x = tf.constant(x_emb)
        dy = tf.constant(np.random.default_rng(1).normal(size=(B, 1)).astype(np.float32))

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = model(x, training=True)
                loss = tf.reduce_sum(out * dy)
            return tape.gradient(loss, [x, *model.trainable_variables])

        def train_fn():
            return [g.numpy() for g in step()[:1]]

        def predict_fn():
            return model.predict_on_batch(x_emb)
    else:

        def train_fn():
            return model.train_on_batch(x_ids, y)

        def predict_fn():
            return model.predict_on_batch(x_ids)

    first_train, first_predict = first_call_ms(train_fn), first_call_ms(predict_fn)
    timing = interleaved({"train": train_fn, "predict": predict_fn}, repeats)
    return {**timing, "first_train": first_train, "first_predict": first_predict, "rss": peak_rss_mib()}


# --------------------------------------------------------------------------- driver
def _spawn(which: str, stack: bool, weights_path: str, repeats: int, env_extra: dict | None = None) -> dict:
    args = ["--worker", which, "--weights", weights_path, "--repeats", str(repeats)] + (["--stack"] if stack else [])
    return run_worker("bench_conv.py", args, env_extra, f"{which} worker")


def main(argv: list[str]) -> None:
    if "--worker" in argv:
        which = argv[argv.index("--worker") + 1]
        weights = argv[argv.index("--weights") + 1]
        repeats = int(argv[argv.index("--repeats") + 1])
        fn = worker_tinynn if which == "tinynn" else worker_keras
        print(json.dumps(fn("--stack" in argv, weights, repeats)))
        return
    repeats = int(argv[0]) if argv and argv[0].isdigit() else 10
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 1
    load_before = os.getloadavg()[0]
    import tinynn.layers

    stack = "--stack" in argv or not hasattr(tinynn.layers, "Embedding")
    name = "conv/pool stack (no Embedding)" if stack else "M1 Embedding+Conv1D text CNN"
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.npz")
        cache = {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba_cache")}
        cold = _spawn("tinynn", stack, weights, 3, cache)  # empty numba cache: compiles every kernel
        ours_runs, theirs_runs = [], []
        for _ in range(rounds):  # alternate the frameworks; each keeps its best round (the least disturbed)
            ours_runs.append(_spawn("tinynn", stack, weights, repeats, cache))  # warm cache
            theirs_runs.append(_spawn("keras", stack, weights, repeats))
        ours = min(ours_runs, key=lambda r: r["train"])
        theirs = min(theirs_runs, key=lambda r: r["train"])
    rows = []
    for what, key in (("train step" if not stack else "fwd+bwd step", "train"), ("predict", "predict")):
        rows.append({"model": name, "what": what + " (median / min)",
                     "tinynn ms": f"{ours[key]:.1f} / {ours[key + '_min']:.1f}",
                     "keras ms": f"{theirs[key]:.1f} / {theirs[key + '_min']:.1f}",
                     "keras/tinynn": f"{theirs[key] / ours[key]:.2f}x",
                     "GEMM share": f"{ours['gemm_share_' + key]:.0%} ({ours['gemm_' + key]:.0f} ms)"})
    rows.append({"model": name, "what": "first train call, cold numba cache",
                 "tinynn ms": f"{cold['first_train']:.0f}", "keras ms": f"{theirs['first_train']:.0f}"})
    rows.append({"model": name, "what": "first train call, warm cache", "tinynn ms": f"{ours['first_train']:.0f}"})
    rows.append({"model": name, "what": "first predict call", "tinynn ms": f"{ours['first_predict']:.0f}",
                 "keras ms": f"{theirs['first_predict']:.0f}"})
    rows.append({"model": name, "what": "peak RSS MiB", "tinynn ms": f"{ours['rss']:.0f}",
                 "keras ms": f"{theirs['rss']:.0f}"})
    print(format_table(rows, ["model", "what", "tinynn ms", "keras ms", "keras/tinynn", "GEMM share"]))
    print("\ntinynn per layer (median ms, float32, batch 128):")
    print(format_table(ours["breakdown"], ["layer", "forward ms", "backward ms"]))
    print(f"\ncompile cost (cold - warm first train call): {cold['first_train'] - ours['first_train']:.0f} ms; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores; "
          f"best of {rounds} alternating round(s) per framework")


if __name__ == "__main__":
    main(sys.argv[1:])
