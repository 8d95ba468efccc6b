"""The two kernel modes compute the same training runs, and 'reference' really runs only plain NumPy.

``tinynn.config.set_kernels('reference')`` routes every layer through :mod:`tinynn.kernels.reference` (no numba,
no threads, no fused special cases). Each benchmark model M1-M6 (the definitions of ``benchmarks/``, float64,
a small data set, 2 epochs) is trained once per mode from the same initial weights on the same batches: every
History entry and every final weight agree to 1e-12 relative. In the reference run every numba dispatcher and
every thread hand-off of tinynn is replaced by a stub that fails the test if called.

The seeds' two image models (seed 001's MNIST convnet, whose 32->64 and 64->64 convolutions run Winograd in the
fast mode, and seed 003's SeparableConv2D stack) are compared the same way on small random images.

The sequences are STEPS long instead of the benchmark's 500 (batch 16 still splits every recurrent loop over
the cores). With 500 steps, M4's SimpleRNN stack trains so ill-conditioned that in the fast mode alone a
one-ulp change of the initial embeddings grew to ~1e-11 relative in six RMSprop steps: a comparison of the two
modes there would measure that growth, not the kernels (at 64-200 steps the same perturbation stays ~3e-14).
"""

from __future__ import annotations

import pathlib
import sys
import types

import numba
import numpy as np
import pytest

import tinynn
from tinynn import config, layers
from tinynn.kernels import parallel

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
TOL = 1e-12
N_SAMPLES, BATCH, EPOCHS, STEPS = 48, 16, 2, 128  # 3 steps per epoch
IMAGE_MODELS = ("mnist_convnet", "separable_stack")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_conv
        import bench_dense
        import bench_rnn

        yield types.SimpleNamespace(conv=bench_conv, dense=bench_dense, rnn=bench_rnn)
    finally:
        sys.path.remove(str(BENCH))


def _model_and_data(bench, name: str):
    """The benchmark's model ``name`` in float64 and N_SAMPLES of its data (integer ids or normal floats)."""
    rng = np.random.default_rng(7)
    previous = config.floatx()
    config.set_floatx("float64")
    try:
        if name == "M1":
            model = bench.conv.tinynn_model(stack=False, steps=STEPS)
            x = rng.integers(1, bench.conv.VOCAB, size=(N_SAMPLES, STEPS))
            y = (rng.random((N_SAMPLES, 1)) > 0.5).astype(np.float64)
        elif name == "M5":
            model = bench.dense.build_tinynn()
            x = rng.normal(size=(N_SAMPLES, 64))
            y = np.eye(10)[rng.integers(0, 10, N_SAMPLES)]
        else:
            model = bench.rnn.build(name, layers, tinynn.Sequential, steps=STEPS)
            x, _ = bench.rnn.data(name)
            x = x[:N_SAMPLES].astype(np.float64) if name == "M2" else x[:N_SAMPLES, :STEPS]
            y = rng.normal(size=(N_SAMPLES, 1)) if name != "M3" else (rng.random((N_SAMPLES, 1)) > 0.5) * 1.0
    finally:
        config.set_floatx(previous)
    assert all(w.dtype == np.float64 for w in model.get_weights())
    return model, x, y


def _image_model_and_data(name: str):
    """Seed 001's MNIST convnet on (28, 28, 1) digits, or seed 003's SeparableConv2D stack on (32, 32, 3) images
    (its six valid 3x3 convolutions and two poolings need >= 30 pixels), float64, one-hot targets."""
    rng = np.random.default_rng(7)
    L = layers
    if name == "mnist_convnet":
        model = tinynn.Sequential([
            L.Input(shape=(28, 28, 1)),
            L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
            L.Conv2D(64, (3, 3), activation="relu"),
            L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
        ])  # fmt: skip
        x = rng.random((N_SAMPLES, 28, 28, 1))
    else:
        model = tinynn.Sequential([
            L.Input(shape=(32, 32, 3)),
            L.SeparableConv2D(32, 3, activation="relu"), L.SeparableConv2D(64, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.SeparableConv2D(64, 3, activation="relu"), L.SeparableConv2D(128, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.SeparableConv2D(64, 3, activation="relu"), L.SeparableConv2D(128, 3, activation="relu"),
            L.GlobalAveragePooling2D(), L.Dense(32, activation="relu"), L.Dense(10, activation="softmax"),
        ])  # fmt: skip
        x = rng.random((N_SAMPLES, 32, 32, 3))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model, x, np.eye(10)[rng.integers(0, 10, N_SAMPLES)]


def _train(bench, name: str, mode: str, initial=None):
    tinynn.set_random_seed(1)
    if name in IMAGE_MODELS:
        previous = config.floatx()
        config.set_floatx("float64")
        try:
            model, x, y = _image_model_and_data(name)
        finally:
            config.set_floatx(previous)
    else:
        model, x, y = _model_and_data(bench, name)
    if initial is not None:
        model.set_weights(initial)
    start = model.get_weights()
    tinynn.set_random_seed(2)  # the same shuffles in both modes
    with config.kernels(mode):
        history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    return start, history.history, model.get_weights()


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture
def no_fast_kernels(monkeypatch):
    """Every numba dispatcher and thread hand-off in tinynn's modules fails the test when called — but for
    ``handoff.serve``, the pool threads' idle wait, which they may still run after an earlier fast-mode call (a
    stub there raised in the pool's thread, not in the test; a job reaches it only through ``handoff.run_rows``,
    which fails)."""
    from tinynn.kernels import handoff

    def forbidden(what):
        def stub(*args, **kwargs):
            raise AssertionError(f"the reference kernel mode called {what}")

        return stub

    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("tinynn") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if value is handoff.serve:
                continue
            if isinstance(value, numba.core.dispatcher.Dispatcher):
                monkeypatch.setattr(module, attr, forbidden(f"the numba kernel {module_name}.{attr}"))
            elif value is parallel.run_parallel or value is parallel.row_pieces:
                monkeypatch.setattr(module, attr, forbidden(f"{module_name}.{attr} (threads)"))


@pytest.mark.parametrize("name", ["M1", "M2", "M3", "M4", "M5", "M6", *IMAGE_MODELS])
def test_benchmark_models_train_the_same_in_both_kernel_modes(bench, name, request, monkeypatch):
    from tinynn.kernels import conv2d, recurrent
    from tinynn.layers.recurrent import bidirectional

    pieces = []  # the fast run's threads: batch pieces of each recurrent loop, and Bidirectional's two directions
    monkeypatch.setattr(recurrent, "row_pieces", lambda *a: pieces.append(len(parallel.row_pieces(*a))) or
                        parallel.row_pieces(*a))
    monkeypatch.setattr(bidirectional, "run_parallel", lambda *fns: pieces.append(len(fns)) or
                        parallel.run_parallel(*fns))
    share = parallel.share  # parallel.share_batch's: the image kernels' batch ranges, pulled by the cores
    monkeypatch.setattr(parallel, "share", lambda task, ranges: pieces.append(len(ranges)) or share(task, ranges))
    winograd, uses_winograd = [], conv2d.uses_winograd  # the fast run's Winograd convolutions (MNIST convnet)
    monkeypatch.setattr(conv2d, "uses_winograd", lambda *a: winograd.append(uses_winograd(*a)) or winograd[-1])
    start, fast_history, fast_weights = _train(bench, name, "fast")
    monkeypatch.undo()
    if name in ("M2", "M3", "M4", "M6", *IMAGE_MODELS) and parallel.num_threads() > 1:
        assert max(pieces) > 1  # the comparison covers the threaded paths
    if name == "mnist_convnet":
        assert any(winograd)  # ... and Winograd
    request.getfixturevalue("no_fast_kernels")  # from here on, nothing fast may run
    start_ref, ref_history, ref_weights = _train(bench, name, "reference", initial=start)
    assert all(np.array_equal(a, b) for a, b in zip(start, start_ref))
    assert fast_history.keys() == ref_history.keys() and len(fast_history["loss"]) == EPOCHS
    errors = [_rel(fast_history[k], ref_history[k]) for k in fast_history]
    errors += [_rel(f, r) for f, r in zip(fast_weights, ref_weights)]
    assert not any(np.array_equal(s, f) for s, f in zip(start, fast_weights) if s.size > 1)  # it trained
    print(f"{name}: worst relative difference fast vs reference {max(errors):.2e}")
    assert max(errors) <= TOL, (name, errors)


def test_the_stubs_catch_a_fast_kernel(no_fast_kernels):
    """The guard of the test above can fail: the 'fast' mode calls a stubbed kernel."""
    layer = layers.LSTM(3)
    with pytest.raises(AssertionError, match="reference kernel mode called"):
        layer(np.ones((2, 4, 2)))


def test_kernel_mode_switch():
    assert config.kernel_mode() == "fast"
    with config.kernels("reference"):
        assert config.kernel_mode() == "reference"
        with config.kernels("fast"):
            assert config.kernel_mode() == "fast"
        assert config.kernel_mode() == "reference"
    assert config.kernel_mode() == "fast"
    with pytest.raises(ValueError, match="mode must be one of"):
        config.set_kernels("numba")
    with pytest.raises(ValueError), config.kernels("slow"):
        pass
    assert config.kernel_mode() == "fast"


@pytest.mark.parametrize("make", [
    lambda: layers.SimpleRNN(3, return_sequences=True), lambda: layers.LSTM(3, return_state=True),
    lambda: layers.GRU(3, reset_after=False), lambda: layers.Bidirectional(layers.LSTM(2)),
    lambda: layers.Conv1D(3, 2, activation="relu"), lambda: layers.MaxPooling1D(2), lambda: layers.Embedding(9, 3),
], ids=["SimpleRNN", "LSTM", "GRU", "Bidirectional", "Conv1D", "MaxPooling1D", "Embedding"])
def test_reference_mode_allows_repeated_backward(make):
    """The reference kernels keep the forward's cache: backward twice gives the same dx and gradients. The fast
    recurrent kernels consume it (in place), and say so."""
    rng = np.random.default_rng(0)
    layer = make()
    x = rng.integers(0, 9, size=(2, 6)) if isinstance(layer, layers.Embedding) else rng.normal(size=(2, 6, 4))
    with config.kernels("reference"):
        y = layer(x, training=True)
        dy = [rng.normal(size=o.shape) for o in y] if isinstance(y, list) else rng.normal(size=y.shape)
        runs = [(layer.backward(dy), [np.asarray(g).copy() for g in layer.gradients]) for _ in range(3)]
    for dx, grads in runs[1:]:
        assert (dx is None) == (runs[0][0] is None)
        if dx is not None:
            np.testing.assert_array_equal(dx, runs[0][0])
        for g, g0 in zip(grads, runs[0][1]):
            np.testing.assert_array_equal(g, g0)
    layer(x, training=True)  # fast mode
    layer.backward(dy)
    if isinstance(layer, (layers.SimpleRNN, layers.LSTM, layers.GRU, layers.Bidirectional)):
        with pytest.raises(ValueError, match="already called after the last forward"):
            layer.backward(dy)
