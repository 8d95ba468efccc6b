"""Image benchmarks M7 and M8: tinynn vs Keras (TensorFlow) and PyTorch, batch 32, float32, in the same run.

    python benchmarks/bench_images.py [repeats] [--models M7,M8] [--rounds N]

    M7  the seed's cats-vs-dogs convnet (150, 150, 3) -> Conv2D(32,3,relu) -> MaxPooling2D(2) -> Conv2D(64,3,relu)
        -> MaxPooling2D(2) -> Conv2D(128,3,relu) -> MaxPooling2D(2) -> Conv2D(128,3,relu) -> MaxPooling2D(2) -> Flatten
        -> Dropout(0.5) -> Dense(512,relu) -> Dense(1,sigmoid); binary cross-entropy, RMSprop(1e-4)
    M8  seed 003's stack (64, 64, 3) -> SeparableConv2D(32,3,relu) -> SeparableConv2D(64,3,relu) -> MaxPooling2D(2)
        -> SeparableConv2D(64,3,relu) -> SeparableConv2D(128,3,relu) -> MaxPooling2D(2) -> SeparableConv2D(64,3,relu)
        -> SeparableConv2D(128,3,relu) -> GlobalAveragePooling2D -> Dense(32,relu) -> Dense(10,softmax);
        categorical cross-entropy, RMSprop

Every framework runs in its own subprocess (its own peak RSS; the tinynn process never imports TensorFlow); Keras
starts from tinynn's initial weights, PyTorch (benchmarks/bench_torch.py) from its own, the faster of its default
thread count and one thread. tinynn runs once with an empty numba cache first (its first train call then includes
compiling every kernel). With ``--rounds N`` the frameworks' workers alternate N times, so that all of them see
the same machine load; each round reports train / predict medians of ``repeats`` calls after 2 warm-up calls, and
the summary gives the median over rounds and the best round.

For tinynn the worker also reports the GEMM share and the **fraction of numpy's sgemm rate**: every GEMM of the
image kernels goes through ``tinynn.kernels.blas.grouped_matmul`` (as the 1-D convolutions' do); the worker records
the shapes of one train step's products and the time spent in the GEMM-based kernels (Conv2D's forward and
backward, SeparableConv2D's 1×1 products; im2col, col2im and the Winograd transforms included), then times the same
products with ``numpy.matmul`` (as numpy threads them, and split over the cores as tinynn does, the better of the
two): fraction = numpy's time for those products / the kernels' time. (Winograd runs fewer FLOPs than the direct
convolution it replaces, so the fraction compares equal work: the same products.) The machine load
(``os.getloadavg``) is printed with every round.
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
B = 32
MODELS = ("M7", "M8")


def data(model: str, seed: int = 0):
    """One batch: images in [0, 1) (as ``rescale=1./255`` gives them) and the model's targets."""
    rng = np.random.default_rng(seed)
    if model == "M7":
        return rng.random((B, 150, 150, 3), dtype=np.float32), (rng.random((B, 1)) > 0.5).astype(np.float32)
    return rng.random((B, 64, 64, 3), dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, B)]


def build(model: str, lib):
    """The compiled model with ``lib`` = the tinynn or the keras module (the same code for both)."""
    L = lib.layers
    if model == "M7":
        net = lib.Sequential([
            L.Input(shape=(150, 150, 3)),
            L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Flatten(), L.Dropout(0.5), L.Dense(512, activation="relu"), L.Dense(1, activation="sigmoid"),
        ])  # fmt: skip
        net.compile(optimizer=lib.optimizers.RMSprop(learning_rate=1e-4), loss="binary_crossentropy")
        return net
    net = lib.Sequential([
        L.Input(shape=(64, 64, 3)),
        L.SeparableConv2D(32, 3, activation="relu"), L.SeparableConv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
        L.SeparableConv2D(64, 3, activation="relu"), L.SeparableConv2D(128, 3, activation="relu"), L.MaxPooling2D(2),
        L.SeparableConv2D(64, 3, activation="relu"), L.SeparableConv2D(128, 3, activation="relu"),
        L.GlobalAveragePooling2D(), L.Dense(32, activation="relu"), L.Dense(10, activation="softmax"),
    ])  # fmt: skip
    net.compile(optimizer=lib.optimizers.RMSprop(), loss="categorical_crossentropy")
    return net


def interleaved(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Time the callables in turns (train, predict, train, ...): the median and minimum ms of each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    runs: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, ts in runs.items():
        out[name], out[name + "_min"] = statistics.median(ts), min(ts)
    return out


# --------------------------------------------------------------------------- tinynn
class GemmRecorder:
    """Wraps the GEMM entry points of the image kernels (``blas.grouped_matmul`` and ``grouped_matmul_tn``:
    records each product's shape and time; the Winograd convolutions' 16 products per chunk of blocks run in one numba
    call, so ``winograd.winograd_conv2d`` and ``winograd_conv2d_backward_filter`` record their shapes only)
    and the GEMM-based kernels (Conv2D's forward / backward, SeparableConv2D's 1×1 products: their total time,
    im2col, col2im and the Winograd transforms included)."""

    KERNELS = ("conv2d_forward", "conv2d_backward", "conv2d_backward_fused", "pointwise_forward", "pointwise_backward")

    def __init__(self):
        from tinynn.kernels import blas, winograd
        from tinynn.kernels import conv2d as kc

        self.kc, self.blas = kc, blas
        self.originals = {name: getattr(kc, name) for name in self.KERNELS}
        self.grouped_matmul, self.grouped_matmul_tn = blas.grouped_matmul, blas.grouped_matmul_tn
        self.kw = winograd
        self.winograd_conv2d = winograd.winograd_conv2d
        self.winograd_filter = winograd.winograd_conv2d_backward_filter
        self.reset()

    def reset(self):
        self.shapes, self.gemm_s, self.kernel_s = [], 0.0, 0.0

    def __enter__(self):
        gemm = self.grouped_matmul

        def timed_gemm(a, b, out=None):
            t0 = time.perf_counter()
            result = gemm(a, b, out)
            self.gemm_s += time.perf_counter() - t0
            self.shapes.append((a.shape[0], a.shape[1], a.shape[2], b.shape[2], a.dtype.str))
            return result

        gemm_tn = self.grouped_matmul_tn

        def timed_gemm_tn(a, b, out=None, **kwargs):  # aᵀ @ b: recorded as the (m, k) @ (k, n) product of that size
            t0 = time.perf_counter()
            result = gemm_tn(a, b, out, **kwargs)
            self.gemm_s += time.perf_counter() - t0
            self.shapes.append((a.shape[0], a.shape[2], a.shape[1], b.shape[2], a.dtype.str))
            return result

        def timed(fn):
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                result = fn(*args, **kwargs)
                self.kernel_s += time.perf_counter() - t0
                return result

            return wrapper

        wino = self.winograd_conv2d

        def recorded_winograd(x, Wk, pads, out_hw, *args, **kwargs):  # its products run in numba (winograd._products)
            tiles = x.shape[0] * (-(-out_hw[0] // 2)) * (-(-out_hw[1] // 2))
            self.shapes.append((16, tiles, Wk.shape[2], Wk.shape[3], x.dtype.str))
            return wino(x, Wk, pads, out_hw, *args, **kwargs)

        wino_filter = self.winograd_filter

        def recorded_winograd_filter(x, dz, *args, **kwargs):  # ∂L/∂U[ξ] = V[ξ]ᵀ @ Y[ξ]: (C, tiles) @ (tiles, F)
            tiles = x.shape[0] * (-(-dz.shape[1] // 2)) * (-(-dz.shape[2] // 2))
            self.shapes.append((16, x.shape[3], tiles, dz.shape[3], x.dtype.str))
            return wino_filter(x, dz, *args, **kwargs)

        self.blas.grouped_matmul, self.blas.grouped_matmul_tn = timed_gemm, timed_gemm_tn
        self.kw.winograd_conv2d = recorded_winograd
        self.kw.winograd_conv2d_backward_filter = recorded_winograd_filter
        for name in self.KERNELS:
            setattr(self.kc, name, timed(self.originals[name]))
        return self

    def __exit__(self, *exc):
        for name, fn in self.originals.items():
            setattr(self.kc, name, fn)
        self.blas.grouped_matmul, self.blas.grouped_matmul_tn = self.grouped_matmul, self.grouped_matmul_tn
        self.kw.winograd_conv2d = self.winograd_conv2d
        self.kw.winograd_conv2d_backward_filter = self.winograd_filter

    @staticmethod
    def numpy_seconds(shapes, repeats: int = 3) -> tuple[float, float]:
        """numpy.matmul on the same products (fresh arrays, best of ``repeats``): (as numpy runs it, with its BLAS's
        own threads; rows split over the cores' threads with single-threaded BLAS, as tinynn runs it)."""
        from tinynn.kernels import cblas
        from tinynn.kernels.parallel import num_threads, run_parallel

        rng = np.random.default_rng(0)
        totals = [0.0, 0.0]
        for G, m, k, n, dtype in shapes:
            a, b = rng.random((m, k)).astype(dtype), rng.random((k, n)).astype(dtype)
            out = np.empty((m, n), dtype)
            bounds = np.linspace(0, m, num_threads() + 1).astype(int)
            pieces = list(zip(bounds[:-1], bounds[1:]))
            for slot in (0, 1):
                best = np.inf
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    for _g in range(G):
                        if slot == 0:
                            np.matmul(a, b, out=out)
                        else:
                            with cblas.single_threaded():
                                run_parallel(*[lambda r0=r0, r1=r1, a=a, b=b, out=out: np.matmul(a[r0:r1], b,
                                                                                                 out=out[r0:r1])
                                               for r0, r1 in pieces])  # fmt: skip
                    best = min(best, time.perf_counter() - t0)
                totals[slot] += best
        return totals[0], totals[1]


def worker_tinynn(model: str, weights_path: str, repeats: int) -> dict:
    import tinynn as tn

    net = build(model, tn)
    assert "tensorflow" not in sys.modules
    np.savez(weights_path, *net.get_weights())
    x, y = data(model)
    first_train = first_call_ms(lambda: net.train_on_batch(x, y))
    first_predict = first_call_ms(lambda: net.predict_on_batch(x))
    timing = interleaved({"train": lambda: net.train_on_batch(x, y), "predict": lambda: net.predict_on_batch(x)},
                         repeats)
    result = {**timing, "first_train": first_train, "first_predict": first_predict, "rss": peak_rss_mib()}
    with GemmRecorder() as rec:
        shares = []
        for _ in range(3):
            rec.reset()
            t0 = time.perf_counter()
            net.train_on_batch(x, y)
            step = time.perf_counter() - t0
            shares.append((rec.kernel_s, rec.gemm_s, step, list(rec.shapes)))
    kernel_s, gemm_s, step, shapes = min(shares, key=lambda s: s[0])
    if shapes and kernel_s > 0:
        plain_s, split_s = GemmRecorder.numpy_seconds(shapes)
        numpy_s = min(plain_s, split_s)
        flops = sum(2 * G * m * k * n for G, m, k, n, _ in shapes)
        result.update({"conv_kernel_ms": kernel_s * 1e3, "conv_gemm_ms": gemm_s * 1e3, "numpy_gemm_ms": numpy_s * 1e3,
                       "numpy_plain_ms": plain_s * 1e3, "numpy_split_ms": split_s * 1e3,
                       "sgemm_fraction": numpy_s / kernel_s, "conv_gflops": flops / 1e9,
                       "kernel_gflop_s": flops / kernel_s / 1e9, "numpy_gflop_s": flops / numpy_s / 1e9,
                       "conv_share_of_step": kernel_s / step})  # fmt: skip
    result["breakdown"] = _breakdown(net, x, max(3, repeats // 3))
    # "rss" is the peak of the timed train/predict calls, the point where the Keras worker measures its own; the
    # diagnostics above (GEMM recording, the per-layer breakdown holding every layer's activations) raise it further
    result["rss_with_diagnostics"] = peak_rss_mib()
    return result


def _breakdown(net, x, repeats: int) -> list[dict]:
    """Forward and backward ms of each layer on this batch's activations (the first layer skips dx, as in fit)."""
    acts = [x]
    for layer in net.layers:
        acts.append(layer(acts[-1], training=True))
    g = np.random.default_rng(1).normal(size=acts[-1].shape).astype(np.float32)
    rows = []
    for i in reversed(range(len(net.layers))):
        layer, a = net.layers[i], acts[i]
        layer.input_gradient_needed = i > 0
        fwd = median_ms(lambda layer=layer, a=a: layer(a, training=True), repeats, warmup=1)
        # each backward after its own untimed forward (a fast-mode backward consumes its forward's cache)
        bwd = median_ms(lambda layer=layer, g=g: layer.backward(g), repeats, warmup=1,
                        setup=lambda layer=layer, a=a: layer(a, training=True))
        layer(a, training=True)
        g = layer.backward(g)
        rows.append({"layer": type(layer).__name__, "forward ms": round(fwd, 2), "backward ms": round(bwd, 2)})
        del layer.input_gradient_needed
    return rows[::-1]


# --------------------------------------------------------------------------- Keras
def worker_keras(model: str, weights_path: str, repeats: int) -> dict:
    import keras

    net = build(model, keras)
    with np.load(weights_path) as f:
        net.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
    x, y = data(model)
    first_train = first_call_ms(lambda: net.train_on_batch(x, y))
    first_predict = first_call_ms(lambda: net.predict_on_batch(x))
    timing = interleaved({"train": lambda: net.train_on_batch(x, y), "predict": lambda: net.predict_on_batch(x)},
                         repeats)
    return {**timing, "first_train": first_train, "first_predict": first_predict, "rss": peak_rss_mib()}


# --------------------------------------------------------------------------- driver
def _spawn(which: str, model: str, weights_path: str, repeats: int, env_extra: dict | None = None) -> dict:
    args = ["--worker", which, model, weights_path, str(repeats)]
    return run_worker("bench_images.py", args, env_extra, f"{which} {model} worker")


def _torch(model: str, repeats: int) -> dict | None:
    """The faster of PyTorch's default thread count and one thread (None without PyTorch)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    runs = []
    for threads in ([], ["1"]):
        runs.append(run_worker("bench_torch.py", [model, str(repeats), *threads], what="PyTorch worker"))
    return min(runs, key=lambda r: r["train"])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        which, model, weights, repeats = argv[1], argv[2], argv[3], int(argv[4])
        fn = worker_tinynn if which == "tinynn" else worker_keras
        print(json.dumps(fn(model, weights, repeats)))
        return
    repeats = int(argv[0]) if argv and argv[0].isdigit() else 10
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 1
    models = argv[argv.index("--models") + 1].split(",") if "--models" in argv else list(MODELS)
    for model in models:
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "w.npz")
            cache = {"NUMBA_CACHE_DIR": os.path.join(tmp, "numba_cache")}
            cold = _spawn("tinynn", model, weights, 2, cache)  # empty numba cache: compiles every kernel
            per_round = []
            for r in range(rounds):
                load = os.getloadavg()[0]
                row = {"tinynn": _spawn("tinynn", model, weights, repeats, cache), "keras": _spawn("keras", model,
                       weights, repeats), "torch": _torch(model, repeats), "load": (load, os.getloadavg()[0])}
                per_round.append(row)
                line = ", ".join(f"{k} {v['train']:.0f}/{v['predict']:.0f}" for k, v in row.items()
                                 if isinstance(v, dict))  # fmt: skip
                print(f"{model} round {r + 1}: train/predict ms {line}; load {row['load'][0]:.1f} -> "
                      f"{row['load'][1]:.1f}", flush=True)
        _summary(model, cold, per_round)


def _summary(model: str, cold: dict, per_round: list[dict]) -> None:
    rows = []
    names = [n for n in ("tinynn", "keras", "torch") if per_round[0][n] is not None]
    med = {n: {k: statistics.median(r[n][k] for r in per_round) for k in ("train", "predict", "rss")} for n in names}
    best = {n: {k: min(r[n][k] for r in per_round) for k in ("train", "predict")} for n in names}
    for what in ("train", "predict"):
        fastest = min(med[n][what] for n in names if n != "tinynn")
        rows.append({"model": model, "what": f"{what} ms (median over rounds / best round)",
                     **{n: f"{med[n][what]:.1f} / {best[n][what]:.1f}" for n in names},
                     "fastest other ÷ tinynn": f"{fastest / med['tinynn'][what]:.2f}x"})
    rows.append({"model": model, "what": "peak RSS MiB", **{n: f"{med[n]['rss']:.0f}" for n in names}})
    rows.append({"model": model, "what": "first train call ms (tinynn: empty numba cache)",
                 "tinynn": f"{cold['first_train']:.0f}",
                 **{n: f"{per_round[0][n]['first_train']:.0f}" for n in names if n != "tinynn"}})
    rows.append({"model": model, "what": "first train call ms, warm cache",
                 "tinynn": f"{per_round[0]['tinynn']['first_train']:.0f}"})
    print(format_table(rows, ["model", "what", *names, "fastest other ÷ tinynn"]))
    ours = per_round[-1]["tinynn"]
    if "sgemm_fraction" in ours:
        print(f"\nGEMM-based kernels (Conv2D, 1x1 products), one train step: {ours['conv_gflops']:.2f} GFLOP of GEMMs "
              f"in {ours['conv_kernel_ms']:.0f} ms of kernels ({ours['kernel_gflop_s']:.0f} GFLOP/s; the GEMM calls "
              f"alone {ours['conv_gemm_ms']:.0f} ms, summed over threads); numpy.matmul on the same products: "
              f"{ours['numpy_plain_ms']:.0f} ms as numpy threads it, {ours['numpy_split_ms']:.0f} ms split over the "
              f"cores -> the kernels reach {ours['sgemm_fraction']:.0%} of numpy's (best) sgemm rate; they are "
              f"{ours['conv_share_of_step']:.0%} of the step")
    print(f"\ntinynn per layer (median ms, float32, batch {B}):")
    print(format_table(ours["breakdown"], ["layer", "forward ms", "backward ms"]))
    loads = [v for r in per_round for v in r["load"]]
    print(f"load average {min(loads):.1f}-{max(loads):.1f} during {len(per_round)} round(s), {os.cpu_count()} cores\n")


if __name__ == "__main__":
    main(sys.argv[1:])
