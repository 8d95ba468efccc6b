"""Per-layer forward / backward milliseconds of M7 or M8 (bench_images.py's models), then a train step and predict.

    python benchmarks/prof_conv2d_layers.py [M7|M8] [repeats] [--cpu]

Each layer's ``forward`` (training) and ``backward`` (the first layer without dx, as in fit) are timed on the
activations of the batch after three warm-up train steps; medians of ``repeats`` passes. The layers run inside
``kernel_scope`` as the model runs them: outside it a numpy product in a layer (the Winograd kernel transform's
``einsum``) runs on numpy's BLAS threads, which then spin on the cores for tens of ms and halve the speed of the
next parallel kernel (conv2d_3's forward measured 15 ms that way against 10 ms in the scope). The machine load
(``os.getloadavg``) is printed with the numbers. ``--cpu`` times the calling thread's CPU time instead of the wall
clock: with ``TINYNN_NUM_THREADS=1`` every kernel runs on that thread, and its CPU time is far less disturbed than
the wall clock by other processes sharing the cores.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from bench_images import build, data

import tinynn
from tinynn.kernels.parallel import kernel_scope


def main(model: str = "M7", repeats: int = 5, clock=time.perf_counter) -> None:
    net = build(model, tinynn)
    x, y = data(model)
    for _ in range(3):
        net.train_on_batch(x, y)
    net.layers[0].input_gradient_needed = False  # as fit runs it: the first layer's dx is not needed
    fwd = {layer.name: [] for layer in net.layers}
    bwd = {layer.name: [] for layer in net.layers}
    with kernel_scope():  # as the model runs its layers (see the docstring)
        for _ in range(repeats):
            h = x
            for layer in net.layers:
                t0 = clock()
                h = layer.forward(h, training=True)
                fwd[layer.name].append(clock() - t0)
            dy = np.random.default_rng(0).standard_normal(h.shape).astype(np.float32)
            for layer in reversed(net.layers):
                t0 = clock()
                dy = layer.backward(dy)
                bwd[layer.name].append(clock() - t0)
    print(f"load {os.getloadavg()[0]:.2f}")
    for layer in net.layers:
        print(f"{layer.name:20s} {type(layer).__name__:22s} fwd {1e3 * np.median(fwd[layer.name]):7.2f} ms  "
              f"bwd {1e3 * np.median(bwd[layer.name]):7.2f} ms")  # fmt: skip
    for name, call in (("train step", lambda: net.train_on_batch(x, y)), ("predict", lambda: net.predict(x))):
        times = []
        for _ in range(repeats):
            t0 = clock()
            call()
            times.append(clock() - t0)
        print(f"{name} {1e3 * np.median(times):.1f} ms (load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--cpu"]
    main(args[0] if args else "M7", int(args[1]) if len(args) > 1 else 5,
         time.thread_time if "--cpu" in sys.argv else time.perf_counter)  # fmt: skip
