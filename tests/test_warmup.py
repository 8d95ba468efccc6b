"""Background compilation (tinynn.kernels.warmup): while a layer's kernels compile, it runs its NumPy twins and
gives the same numbers; once they are ready it runs them. The suite itself runs in "wait" mode (conftest)."""

import json
import os
import pathlib
import pickle
import subprocess
import sys

import numba
import numpy as np
import pytest
from spies import count_calls

from tinynn import config, layers
from tinynn.kernels import blas, warmup


@pytest.fixture
def background(monkeypatch):
    """Background compile mode with a clean task table; the compiling process replaced by compiling here."""
    monkeypatch.setattr(config, "_COMPILE", "background")
    monkeypatch.setattr(warmup, "_tasks", {})
    monkeypatch.setattr(warmup, "_fresh", False)
    monkeypatch.setattr(warmup, "_compile_in_subprocess", lambda specs: False)
    yield
    assert warmup.wait_until_idle(timeout=120)


def _fresh_kernel():
    """A numba function no process has compiled (new code object: the disk cache cannot hold it)."""
    namespace: dict = {}
    exec("def f(x):\n    return x * 2.0 + 1.0\n", namespace)  # noqa: S102 - a throwaway kernel for the test
    return numba.njit(namespace["f"])


def test_wait_mode_is_always_ready():
    assert config.compile_mode() == "wait"  # tests/conftest.py
    layer = layers.Dense(3)
    assert warmup.fast_ready(layer, np.ones((2, 4), np.float32))
    assert warmup.kernel_ready(_fresh_kernel(), 1.0)


def test_a_kernel_that_needs_compiling_is_not_ready_until_compiled(background):
    kernel = _fresh_kernel()
    assert not warmup.kernel_ready(kernel, 1.0)  # the background thread met a compile: do not wait for it
    assert warmup.wait_until_idle(timeout=120)
    assert warmup.kernel_ready(kernel, 1.0) and kernel(1.0) == 3.0


def test_a_kernel_found_compiled_is_not_typed_again_but_new_argument_types_are(background, monkeypatch):
    """kernel_ready remembers a yes per argument types (numba.typeof costs µs per argument on every call); an array
    of another dtype, rank, layout or writeability, or a scalar of another class, is asked about afresh."""
    namespace: dict = {}
    exec("def g(a, s):\n    return a.sum() * s\n", namespace)  # noqa: S102 - a throwaway kernel for the test
    kernel = numba.njit(namespace["g"])
    a = np.ones((3, 4), np.float32)
    kernel(a, 2)
    typed = []
    real_typeof = numba.typeof
    monkeypatch.setattr(numba, "typeof", lambda v: typed.append(v) or real_typeof(v))
    assert warmup.kernel_ready(kernel, a, 2) and len(typed) == 2
    assert warmup.kernel_ready(kernel, np.zeros((5, 6), np.float32), 7) and len(typed) == 2  # remembered
    read_only = a.copy()
    read_only.flags.writeable = False
    for other in [(a.astype(np.float64), 2), (a[0], 2), (a.T, 2), (read_only, 2), (a, 2.0)]:
        del typed[:]
        assert not warmup.kernel_ready(kernel, *other) and len(typed) == 2  # not compiled for these types
    assert warmup.wait_until_idle(timeout=120)
    assert warmup.kernel_ready(kernel, a.T, 2)  # compiled in the background meanwhile


def test_the_pooled_predict_asks_for_its_kernel_once_per_dtype_once_it_is_compiled(background, monkeypatch):
    """conv2d.forward_pooled_ready (asked on every fused predict call of Conv1D, Conv2D and Dense) remembers a yes
    per dtype: keying its 22 sample arguments cost more than the rest of a small call's Python. A no is asked
    again; "wait" mode says yes without asking (and remembers nothing)."""
    from tinynn.kernels import conv2d

    answers, asked = [False, True], []
    monkeypatch.setattr(conv2d, "_pooled_ready", set())
    monkeypatch.setattr(warmup, "kernel_ready", lambda fn, *args: asked.append(args[0].dtype) or answers.pop(0))
    assert not conv2d.forward_pooled_ready(np.float32) and len(asked) == 1  # compiling in the background
    assert conv2d.forward_pooled_ready(np.float32) and len(asked) == 2
    assert conv2d.forward_pooled_ready(np.float32) and len(asked) == 2  # remembered
    monkeypatch.setattr(warmup, "kernel_ready", lambda fn, *args: asked.append(args[0].dtype) or True)
    assert conv2d.forward_pooled_ready(np.float64) and asked[-1] == np.float64  # another dtype: asked
    monkeypatch.setattr(conv2d, "_pooled_ready", set())
    monkeypatch.setattr(config, "_COMPILE", "wait")
    before = len(asked)
    for _ in range(2):
        assert conv2d.forward_pooled_ready(np.float32)
    assert len(asked) == before and not conv2d._pooled_ready


def test_a_layer_runs_its_numpy_twins_while_compiling_then_the_fast_kernels(background, monkeypatch):
    """The warm-up meets a compile, so the first calls run the reference path (no fast BLAS call); the
    numbers equal the fast path's; after the warm-up the fast kernels run."""
    kernel = _fresh_kernel()
    real_run = warmup._run_layer

    def run_needing_a_compile(*args):
        kernel(1.0)  # a compile event inside the warm-up, as with an empty cache
        real_run(*args)

    monkeypatch.setattr(warmup, "_run_layer", run_needing_a_compile)
    fast_calls = count_calls(monkeypatch, blas, "matmul")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype(np.float32)  # large enough for the fast path (small Dense layers use NumPy)
    layer = layers.Dense(64, activation="relu", bias_initializer="random_normal", dtype="float32")
    y_first = layer(x)
    assert not fast_calls  # the NumPy twin ran
    assert warmup.wait_until_idle(timeout=120)
    y_fast = layer(x)
    assert fast_calls  # now the fast kernels
    np.testing.assert_allclose(y_fast, y_first, rtol=1e-6, atol=1e-6)


def test_a_layer_whose_kernels_load_from_the_cache_is_fast_from_its_first_call(background, monkeypatch):
    layer = layers.Dense(64, dtype="float32")
    x = np.ones((512, 64), np.float32)
    with _wait():
        layer(x)  # compiled (or loaded) here, in this process
    fast_calls = count_calls(monkeypatch, blas, "matmul")
    other = layers.Dense(64, dtype="float32")  # a new layer: its warm-up only loads, so the caller waits for it
    other(x)
    assert fast_calls


def test_a_layer_fed_only_model_inputs_warms_up_without_its_input_gradient(background, monkeypatch):
    """Training never asks the first layer of a model for its input gradient, so its warm-up skips that backward
    (its kernels would be loaded or compiled for nothing); a layer that also reads another layer's output in some
    model keeps it. The training step's numbers do not depend on the warm-ups."""
    from tinynn import models

    need_dx = {}
    real_warm_up = warmup._warm_up

    def recording(layer, x, mask):
        run, spec = real_warm_up(layer, x, mask)
        need_dx[layer.name] = spec[5]
        return run, spec

    monkeypatch.setattr(warmup, "_warm_up", recording)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype(np.float32)  # large enough for the fast path (see above)
    y = rng.normal(size=(512, 64)).astype(np.float32)

    def model():
        first = layers.Dense(64, activation="relu", name="first")
        net = models.Sequential([layers.Input((64,)), first, layers.Dense(64, name="second")])
        net.compile(optimizer="sgd", loss="mse")
        return net, first

    net, first = model()
    assert not warmup.needs_input_gradient(first) and warmup.needs_input_gradient(net.layers[1])
    with _wait():
        expected = model()[0]
        expected.set_weights(net.get_weights())
        expected_loss = expected.train_on_batch(x, y)
    assert net.train_on_batch(x, y) == expected_loss
    assert warmup.wait_until_idle(timeout=120)
    assert need_dx == {"first": False, "second": True}
    assert all(np.array_equal(a, b) for a, b in zip(net.get_weights(), expected.get_weights()))

    inputs = layers.Input((64,))
    models.Model(inputs, first(layers.Dense(64)(inputs)))  # the same layer behind another one: dx needed there
    assert warmup.needs_input_gradient(first)


class _wait:
    """The "wait" compile mode inside the block."""

    def __enter__(self):
        self.previous = config._COMPILE
        config.set_compile("wait")

    def __exit__(self, *exc):
        config.set_compile(self.previous)


def _serve_in_another_process(spec, cache) -> None:
    """Run the compiling process's loop (``warmup._serve``) on ``spec`` in a fresh interpreter whose numba cache
    folder is ``cache``."""
    root = str(pathlib.Path(warmup.__file__).resolve().parents[2])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": root, "TINYNN_COMPILE": "wait"}
    done = subprocess.run([sys.executable, "-c", "from tinynn.kernels import warmup; warmup._serve()"],
                          input=pickle.dumps([spec]), env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_compiling_process_fills_the_cache(tmp_path):
    """The other process's side: a kernel spec compiled there lands in numba's cache folder."""
    args = (np.zeros((2, 3)), np.zeros(0, np.int64), np.zeros((0, 3)))
    spec = ("kernel", "tinynn.kernels.embedding", "_scatter_add", args)
    _serve_in_another_process(spec, tmp_path)
    assert any("_scatter_add" in p.name for p in tmp_path.rglob("*.nbi"))


def test_a_layer_warm_up_also_fills_the_cache_with_the_pools_busy_wait_kernels(tmp_path):
    """A warm-up runs every kernel on its own thread, never waiting on the pool; it compiles the pool's busy-wait
    kernels too, so that a first run whose steps all ran on the NumPy twins leaves them in the cache (else the next
    run would compile them during its first steps)."""
    xs = np.random.default_rng(0).normal(size=(1, 5)).astype(np.float32)
    spec = ("layer", "Dense", layers.Dense(3).get_config(), xs, None, True)
    _serve_in_another_process(spec, tmp_path)
    cached = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    assert {"spinwait.spin_while_equal", "spinwait.set_then_spin"} <= cached, cached


def test_a_max_pooling_warm_up_also_compiles_the_kernel_it_shares_with_the_conv_below(tmp_path):
    """MaxPooling2D.backward_through's kernel runs when the pooling and the conv below it are both fast, which no
    single layer's warm-up would reach: the pooling's warm-up compiles it (``warm_up_also``), with the numba types
    of the real call (the ones ``backward_to_logits_ready`` asks about), so a first run leaves it in the cache."""
    from tinynn.kernels import pooling2d

    xs = np.random.default_rng(0).normal(size=(1, 6, 6, 3)).astype(np.float32)
    spec = ("layer", "MaxPooling2D", layers.MaxPooling2D(2).get_config(), xs, None, True)
    _serve_in_another_process(spec, tmp_path)
    assert any(p.name.startswith("pooling2d._max_bwd_disjoint_act") for p in tmp_path.rglob("*.nbi"))
    samples = {tuple(map(numba.typeof, pooling2d._backward_to_logits_sample(d))) for d in (np.float32, np.float64)}
    for dtype in (np.float32, np.float64):
        a = np.random.default_rng(1).random((2, 4, 4, 3)).astype(dtype)
        y = pooling2d.max_pool2d_forward(a, (2, 2), (2, 2), (0, 0), (2, 2))
        pooling2d.max_pool2d_backward_to_logits(a, y, np.ones_like(y), (2, 2), (2, 2), (0, 0), 3, in_place=True)
    assert set(pooling2d._max_bwd_disjoint_act.overloads) <= samples


class _Spy:
    """A kernel module whose attribute reads are recorded (which fast kernels a layer called)."""

    def __init__(self, module, calls: list):
        self._module, self._calls = module, calls

    def __getattr__(self, name):
        self._calls.append(name)
        return getattr(self._module, name)


IMAGE_LAYERS = {
    "Conv2D": lambda: layers.Conv2D(4, 3, padding="same", activation="relu", bias_initializer="random_normal"),
    "Conv2D channels_first": lambda: layers.Conv2D(4, (2, 3), strides=2, data_format="channels_first",
                                                    bias_initializer="random_normal"),
    "SeparableConv2D": lambda: layers.SeparableConv2D(5, 3, depth_multiplier=2, bias_initializer="random_normal"),
    "DepthwiseConv2D": lambda: layers.DepthwiseConv2D(3, padding="same", bias_initializer="random_normal"),
    "MaxPooling2D": lambda: layers.MaxPooling2D(2, padding="same"),
    "AveragePooling2D channels_first": lambda: layers.AveragePooling2D(2, data_format="channels_first"),
}


@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
def test_image_layers_run_their_numpy_twins_while_compiling_then_the_fast_kernels(background, monkeypatch, name):
    """The 2-D family joins the warm-up like the 1-D layers: no fast kernel before its warm-up is done (the
    warm-up's clone, built from the config, sees the input in the layer's own data format), the same numbers
    forward and backward, the fast kernels afterwards."""
    from tinynn.layers import conv2d as conv2d_layers
    from tinynn.layers import pooling2d as pooling2d_layers

    kernel = _fresh_kernel()
    real_run = warmup._run_layer

    def run_needing_a_compile(*args):
        kernel(1.0)
        real_run(*args)

    monkeypatch.setattr(warmup, "_run_layer", run_needing_a_compile)
    calls: list = []
    monkeypatch.setattr(conv2d_layers, "K_conv2d", _Spy(conv2d_layers.K_conv2d, calls))
    monkeypatch.setattr(pooling2d_layers, "K_pool2d", _Spy(pooling2d_layers.K_pool2d, calls))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 7, 5)).astype(np.float32)
    layer = IMAGE_LAYERS[name]()
    y_first = layer(x, training=True)
    dy = rng.normal(size=y_first.shape).astype(np.float32)
    dx_first = layer.backward(dy)
    assert not calls, calls  # the NumPy twins ran, forward and backward
    assert warmup.wait_until_idle(timeout=300)
    y_fast = layer(x, training=True)
    dx_fast = layer.backward(dy)
    assert calls  # now the fast kernels
    np.testing.assert_allclose(y_fast, y_first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx_fast, dx_first, rtol=1e-5, atol=1e-6)


_FIRST_STEP_FROM_AN_EMPTY_CACHE = '''
import json, sys, threading
import numpy as np
from numba.core import event

compiles = []  # (thread, kernel) of every numba compile in this process


class Recorder(event.Listener):
    def on_start(self, e):
        f = e.data["dispatcher"].py_func
        compiles.append((threading.current_thread().name, f"{f.__module__}.{f.__name__}"))

    def on_end(self, e):
        pass


event.register("numba:compile", Recorder())
from tinynn import config, layers, models
from tinynn.kernels import warmup

assert config.compile_mode() == "background"
image_layers = [
    layers.Conv2D(8, 3, padding="same", activation="relu"),  # 3x3, stride 1: Winograd
    layers.MaxPooling2D(2),
    layers.SeparableConv2D(8, 3, activation="relu"),  # depthwise + pointwise
    layers.DepthwiseConv2D(3, padding="same"),
    layers.Conv2D(6, 3, strides=2, data_format="channels_first"),  # im2col
    layers.AveragePooling2D(2, padding="same"),
]
model = models.Sequential([layers.Input((16, 16, 3)), *image_layers, layers.GlobalAveragePooling2D(), layers.Dense(1)])
model.compile(optimizer="rmsprop", loss="mse")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(4, 16, 16, 3)).astype("float32"), rng.normal(size=(4, 1)).astype("float32")
model.train_on_batch(x, y)
first = [layer._reference for layer in image_layers]
on_caller_thread = [k for t, k in compiles if t == threading.current_thread().name]
numba_compiler_ready = "numba.np.arraymath" in sys.modules  # imported by the first refresh of numba's target
idle = warmup.wait_until_idle(timeout=900)
before = len(compiles)
model.train_on_batch(x, y)
model.predict(x, verbose=0)
print(json.dumps({"first": first, "after": [layer._reference for layer in image_layers], "idle": idle,
                  "on_caller_thread": on_caller_thread, "compiled_after": compiles[before:],
                  "numba_compiler_ready": numba_compiler_ready}))
'''


def _first_steps_in_a_fresh_process(script: str, cache_dir) -> dict:
    """Run ``script`` in a fresh process with an empty numba cache (``cache_dir``), the default "background"
    compile mode and the real compiling process; its last printed line is its JSON result."""
    root = str(pathlib.Path(warmup.__file__).resolve().parents[2])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": root, "TINYNN_COMPILE": "background"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

def test_an_image_model_never_waits_for_a_compile_from_an_empty_cache(tmp_path):
    """A fresh process, an empty numba cache, the default "background" mode and the real compiling process: the
    first train step of a Conv2D / SeparableConv2D / DepthwiseConv2D / pooling model runs every 2-D layer on its
    NumPy twins and compiles nothing on the calling thread, whose process never initialises numba's compiler (the
    FTZ switch of tinynn.kernels.denormals is built without it); once the warm-ups are done, every layer runs
    its fast kernels, loaded from the cache the other process filled (nothing compiles here)."""
    result = _first_steps_in_a_fresh_process(_FIRST_STEP_FROM_AN_EMPTY_CACHE, tmp_path)
    assert result["first"] == [True] * 6  # the NumPy twins, no waiting
    assert result["on_caller_thread"] == [] and not result["numba_compiler_ready"]
    assert result["idle"] and result["after"] == [False] * 6  # the fast kernels now
    assert result["compiled_after"] == []


_TEXT_CNN_FIRST_STEP = _FIRST_STEP_FROM_AN_EMPTY_CACHE.split("image_layers = [")[0] + '''
rng = np.random.default_rng(0)
lengths = rng.integers(5, 40, 8)
ids = np.where(np.arange(40)[None, :] >= 40 - lengths[:, None], rng.integers(1, 20, (8, 40)), 0)  # left-padded
ids[0] = np.arange(1, 41)  # the warm-up's sample: every step distinct (alone, it would not take the distinct path)
conv_layers = [layers.Conv1D(6, 5, activation="relu"), layers.Conv1D(4, 3, padding="same")]
model = models.Sequential([layers.Input((40,)), layers.Embedding(50, 8), conv_layers[0], layers.MaxPooling1D(2),
                           conv_layers[1], layers.GlobalMaxPooling1D(), layers.Dense(1)])
model.compile(optimizer="rmsprop", loss="mse")
y = rng.normal(size=(8, 1)).astype("float32")
model.train_on_batch(ids, y)
first = [layer._reference for layer in conv_layers]
on_caller_thread = [k for t, k in compiles if t == threading.current_thread().name]
idle = warmup.wait_until_idle(timeout=900)
before = len(compiles)
model.train_on_batch(ids, y)
model.predict(ids, verbose=0)
print(json.dumps({"first": first, "after": [layer._reference for layer in conv_layers], "idle": idle,
                  "on_caller_thread": on_caller_thread, "compiled_after": compiles[before:]}))
'''


def test_a_text_cnn_never_waits_for_a_conv_compile_from_an_empty_cache(tmp_path):
    """As above for Embedding -> Conv1D -> MaxPooling1D -> Conv1D on left-padded ids, whose first convolution takes
    the distinct-steps path (kernels.conv: shift_add_rows, spread_rows, the step-id check) in the real call but
    not necessarily on the warm-up's one sample: the warm-ups compile that path too, so no convolution, window or
    pooling kernel compiles on the calling thread, or at all once the warm-ups are done."""
    result = _first_steps_in_a_fresh_process(_TEXT_CNN_FIRST_STEP, tmp_path)
    conv_family = ("tinynn.kernels.conv.", "tinynn.kernels.windows.", "tinynn.kernels.pooling.")
    assert result["first"] == [True] * 2  # the NumPy twins, no waiting
    assert result["on_caller_thread"] == [], result["on_caller_thread"]  # nor the optimizer's sparse scatter
    assert result["idle"] and result["after"] == [False] * 2  # the fast kernels now
    assert not [k for _, k in result["compiled_after"] if k.startswith(conv_family)], result["compiled_after"]
