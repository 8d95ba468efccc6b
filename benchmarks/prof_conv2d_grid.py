"""Where the grid's Conv2D predict time goes, and what the alternative algorithms take on the same shapes.

    python benchmarks/prof_conv2d_grid.py [--cpu] [--repeats N] [WIDTH:LENGTH:BATCH ...]

The model is grid.py's Conv2D case: Input(side, side, 16) -> Conv2D(width, 3, relu) -> GlobalAveragePooling2D ->
Dense(1), side = grid.image_side(length). For each point, in rounds that alternate the variants (medians):

- ``predict``: ``predict_on_batch``; ``conv`` / ``gap`` / ``dense``: each layer's forward alone;
- ``im2col`` / ``winograd``: ``conv2d_forward`` with bias + ReLU, the algorithm forced (``WINOGRAD_MIN_CHANNELS``
  moved for the call), and ``conv_chosen`` as the layer chooses;
- the im2col path's parts on one thread: ``cols`` (the im2col of every chunk), ``gemm`` (the chunks' products
  through ``blas.gemm``), ``epilogue`` (bias + ReLU on z);
- ``np_sgemm``: numpy's one product (B·Ho·Wo, 9·16) @ (9·16, width) (one thread with ``--cpu``).

``--cpu`` times the calling thread's CPU time (run it with ``TINYNN_NUM_THREADS=1``: every kernel on that thread);
otherwise the wall clock. The machine load is printed with every point.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TINYNN_COMPILE", "wait")

import numpy as np  # noqa: E402
from grid import IMAGE_CHANNELS, image_side  # noqa: E402

import tinynn as tn  # noqa: E402
from tinynn.kernels import blas, cblas  # noqa: E402
from tinynn.kernels import conv2d as K  # noqa: E402
from tinynn.kernels.bias_activation import bias_activation_rows  # noqa: E402
from tinynn.kernels.fastmath import RELU  # noqa: E402

POINTS = ("32:100:64", "64:100:64", "128:100:64", "256:100:64", "128:50:64", "128:100:1")


def forced(algorithm: str, x, Wk, bias, ws):
    """conv2d_forward (stride 1, valid, bias + ReLU) with ``algorithm`` 'im2col', 'winograd' or 'chosen'."""
    saved = K.WINOGRAD_MIN_CHANNELS
    K.WINOGRAD_MIN_CHANNELS = {"im2col": 1 << 30, "winograd": 1, "chosen": saved}[algorithm]
    try:
        return K.conv2d_forward(x, Wk, workspace=ws, bias=bias, activation=RELU)
    finally:
        K.WINOGRAD_MIN_CHANNELS = saved


def parts(x, Wk, bias):
    """The im2col path's three parts as callables, chunked as conv2d_forward chunks one piece of all images."""
    B, H, W, C = x.shape
    F = Wk.shape[3]
    Ho, Wo = H - 2, W - 2
    Kd = 9 * C
    Wm = Wk.reshape(Kd, F)
    chunks = K._chunks(0, B * Ho, Wo * Kd * x.itemsize)
    bufs = [np.empty((1, r1 - r0, Wo, 3, 3, C), x.dtype) for r0, r1 in chunks]
    z = np.empty((B * Ho * Wo, F), x.dtype)
    args = (3, 3, 1, 1, 1, 1, 0, 0, Ho)

    def cols():
        for (r0, _), buf in zip(chunks, bufs):
            K._im2col_rows(x, *args, r0, buf)

    def gemm():
        for (r0, r1), buf in zip(chunks, bufs):
            blas.gemm(buf.reshape(-1, Kd), Wm, z[r0 * Wo : r1 * Wo], False, False, 0.0)

    def epilogue():
        bias_activation_rows(z, bias, RELU, z)

    cols()
    return {"cols": cols, "gemm": gemm, "epilogue": epilogue}


def point(width: int, length: int, batch: int, repeats: int, clock) -> dict:
    side = image_side(length)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, side, side, IMAGE_CHANNELS)).astype(np.float32)
    y = rng.normal(size=(batch, 1)).astype(np.float32)
    L = tn.layers
    net = tn.Sequential([L.Input(shape=x.shape[1:]), L.Conv2D(width, 3, activation="relu"),
                         L.GlobalAveragePooling2D(), L.Dense(1)])  # fmt: skip
    net.compile(optimizer="rmsprop", loss="mse")
    net.train_on_batch(x, y)
    conv, gap, dense = net.layers
    Wk, bias = conv.kernel, conv.bias
    h1 = conv.forward(x)
    h2 = gap.forward(h1)
    ws: dict = {}
    cols = np.ascontiguousarray(
        K.im2col(x, 1, (3, 3), (1, 1), (1, 1), (0, 0), (side - 2, side - 2)).reshape(-1, 9 * IMAGE_CHANNELS))
    out = np.empty((cols.shape[0], width), np.float32)
    Wm = np.ascontiguousarray(Wk.reshape(-1, width))
    part = parts(x, Wk, bias)

    def np_sgemm():
        if clock is time.thread_time:
            with cblas.single_threaded():
                np.matmul(cols, Wm, out=out)
        else:
            np.matmul(cols, Wm, out=out)

    def in_scope(fn):
        def run():
            with cblas.single_threaded():
                fn()
        return run

    fns = {
        "predict": lambda: net.predict_on_batch(x),
        "conv": lambda: conv.forward(x),
        "gap": lambda: gap.forward(h1),
        "dense": lambda: dense.forward(h2),
        "conv_chosen": lambda: forced("chosen", x, Wk, bias, ws),
        "im2col": lambda: forced("im2col", x, Wk, bias, ws),
        "winograd": lambda: forced("winograd", x, Wk, bias, ws),
        "cols": part["cols"],
        "gemm": in_scope(part["gemm"]),
        "epilogue": part["epilogue"],
        "np_sgemm": np_sgemm,
    }
    times: dict = {name: [] for name in fns}
    for fn in fns.values():  # warm-up (compiles)
        fn()
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(1e3 * (clock() - t0))
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    args = sys.argv[1:]
    clock = time.thread_time if "--cpu" in args else time.perf_counter
    repeats = 15
    if "--repeats" in args:
        repeats = int(args[args.index("--repeats") + 1])
    chosen = [a for a in args if a.count(":") == 2] or list(POINTS)
    print(f"clock {'thread CPU' if clock is time.thread_time else 'wall'}, threads "
          f"{os.environ.get('TINYNN_NUM_THREADS', 'default')}, repeats {repeats}")  # fmt: skip
    for spec in chosen:
        w, t, b = (int(v) for v in spec.split(":"))
        load = os.getloadavg()[0]
        r = point(w, t, b, repeats, clock)
        cells = "  ".join(f"{k} {v:.3f}" for k, v in r.items())
        print(f"{spec:11s} load {load:.2f}->{os.getloadavg()[0]:.2f}  {cells}")


if __name__ == "__main__":
    main()
