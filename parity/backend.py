"""Keras 3 on any of its backends: which one runs, what it needs, and one gradient helper for all of them.

The parity suite computes Keras's answer with plain Keras layers and models; the only backend-specific
step is differentiating ``L = Σ_i ⟨g_i, y_i⟩`` (``g_i`` a random upstream gradient, ``y_i`` the i-th output)
with respect to the inputs, the initial states and the layer's trainable variables. :func:`gradients` does
that on every backend:

- tensorflow: ``tf.GradientTape`` (optionally inside ``tf.function(jit_compile=True)``: XLA runs ops the
  plain TF CPU kernels lack, e.g. a ``channels_first`` convolution);
- torch: ``torch.autograd.grad`` on the variables' ``torch.nn.Parameter`` values (a stateful RNN's state
  assignments are collected in a ``keras.StatelessScope`` and applied after: autograd refuses in-place
  updates of tensors it still needs);
- jax: ``jax.grad`` of a pure function: the variables' values are swapped in through a
  ``keras.StatelessScope``, and the new values of stateful variables (a stateful RNN's carried states) are
  read back from the scope and assigned afterwards, as a stateful call would.

The backend is chosen by ``KERAS_BACKEND`` before Keras is imported (``python -m parity --backend NAME`` sets
it); :func:`select` does this and enables float64 on JAX (``jax_enable_x64``: without it JAX computes
float64 layers in float32).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
#: what every backend needs, by import name -> pip name
COMMON_PACKAGES = {"pytest": "pytest", "hypothesis": "hypothesis", "keras": "keras", "h5py": "h5py", "PIL": "pillow"}
BACKEND_PACKAGES = {"tensorflow": {"tensorflow": "tensorflow-cpu"}, "jax": {"jax": "jax", "jaxlib": "jaxlib"},
                    "torch": {"torch": "torch"}}


def extra_for(backends: Sequence[str]) -> str:
    """The pip extra that installs what ``backends`` need: ``parity`` (TensorFlow), ``parity-jax``, ...."""
    backends = list(dict.fromkeys(backends))
    if len(backends) > 1:
        return "parity-all"
    return "parity" if backends[0] == "tensorflow" else f"parity-{backends[0]}"


def missing_packages(backends: Sequence[str]) -> list[str]:
    """The pip names of the packages the parity suite needs on ``backends`` that cannot be imported."""
    needed = dict(COMMON_PACKAGES)
    for name in backends:
        needed.update(BACKEND_PACKAGES[name])
    return [pip_name for module, pip_name in needed.items() if importlib.util.find_spec(module) is None]


def select(name: str) -> None:
    """Make ``name`` the Keras backend of this process (before Keras is imported) and configure it."""
    if name not in BACKENDS:
        raise ValueError(f"parity.backend: unknown Keras backend {name!r}; expected one of {BACKENDS}")
    if "keras" in sys.modules and current() != name:
        raise RuntimeError(f"parity.backend: Keras is already imported with the {current()!r} backend; "
                           f"set KERAS_BACKEND={name} before importing keras")
    os.environ["KERAS_BACKEND"] = name
    configure()


def configure() -> None:
    """Settings every run needs on the backend named by ``KERAS_BACKEND`` (called when :mod:`parity` is imported)."""
    name = os.environ.get("KERAS_BACKEND", DEFAULT)
    if name == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders float sums; keep TF's reference kernels
    elif name == "jax":
        os.environ["JAX_ENABLE_X64"] = "1"  # float64 layers compute in float64 (read when jax is imported)
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if "jax" in sys.modules:
            import jax

            jax.config.update("jax_enable_x64", True)


def current() -> str:
    """The backend Keras runs on (imports Keras)."""
    import keras

    return keras.backend.backend()


def tensor(x, dtype=None):
    """A backend tensor holding ``x`` (its NumPy dtype kept unless ``dtype`` is given)."""
    from keras import ops

    x = np.asarray(x)
    return ops.convert_to_tensor(x, dtype=dtype or x.dtype.name)


def numpy(t) -> np.ndarray | None:
    """A NumPy copy of a backend tensor or variable (None stays None)."""
    if t is None:
        return None
    from keras import ops

    return np.asarray(ops.convert_to_numpy(t))


def _is_float(t) -> bool:
    from keras import backend as K

    return K.is_float_dtype(K.standardize_dtype(t.dtype))


def gradients(fn: Callable, tensors: Sequence, variables: Sequence, *, stateful: Sequence = (), xla: bool = False,
              dense: bool = True):
    """``fn(*tensors) -> (loss, aux)`` and its gradients: ``(aux, [∂loss/∂t], [∂loss/∂v])``.

    ``tensors`` are backend tensors (integer ones get None), ``variables`` Keras variables that ``fn``
    reads (trainable weights), ``stateful`` Keras variables ``fn`` may assign (carried RNN states; on JAX
    their new values are assigned after the pure computation). ``xla`` compiles the TensorFlow computation
    with XLA (ignored elsewhere: JAX always compiles with XLA, torch has no such switch). ``dense=False``
    keeps the gradients as the backend produced them for an optimizer to consume: on TensorFlow an
    Embedding's table gradient is then ``tf.IndexedSlices`` (one row per id occurrence), as in Keras's
    ``fit``; JAX and torch produce dense gradients.
    """
    name = current()
    if name == "tensorflow":
        return _tf_gradients(fn, tensors, variables, xla, dense)
    if name == "torch":
        return _torch_gradients(fn, tensors, variables, stateful)
    if name == "jax":
        return _jax_gradients(fn, tensors, variables, stateful)
    raise ValueError(f"parity.backend: no gradient helper for the {name!r} backend")


def _tf_gradients(fn, tensors, variables, xla, dense):
    import tensorflow as tf

    def run(*ts):
        with tf.GradientTape(persistent=True) as tape:
            for t in ts:
                if t.dtype.is_floating:
                    tape.watch(t)
            loss, aux = fn(*ts)
        dts = [tape.gradient(loss, t) if t.dtype.is_floating else None for t in ts]
        dvs = tape.gradient(loss, list(variables)) if variables else []
        return aux, dts, dvs

    if xla:
        run = tf.function(run, jit_compile=True, reduce_retracing=False)
    aux, dts, dvs = run(*tensors)
    if not dense:
        return aux, dts, dvs
    as_dense = lambda gs: [None if g is None else tf.convert_to_tensor(g) for g in gs]  # noqa: E731
    return aux, as_dense(dts), as_dense(dvs)


def _torch_gradients(fn, tensors, variables, stateful):
    import keras
    import torch

    ts = [t.detach().clone().requires_grad_(True) if t.is_floating_point() else t for t in tensors]
    updates = []
    if stateful:  # a stateful RNN assigns its states in place, which autograd refuses: collect, assign after
        with keras.StatelessScope() as scope:
            loss, aux = fn(*ts)
        updates = [scope.get_current_value(v) for v in stateful]
    else:
        loss, aux = fn(*ts)
    targets = [t for t in ts if t.requires_grad] + [v.value for v in variables]
    grads = list(torch.autograd.grad(loss, targets, allow_unused=True)) if targets else []
    for v, new in zip(stateful, updates, strict=True):
        if new is not None:
            v.assign(new.detach())
    it = iter(grads)
    dts = [next(it) if t.requires_grad else None for t in ts]
    return aux, dts, list(it)


def _jax_gradients(fn, tensors, variables, stateful):
    import jax
    import keras

    float_idx = [i for i, t in enumerate(tensors) if _is_float(t)]

    def pure(float_ts, var_values):
        ts = list(tensors)
        for i, t in zip(float_idx, float_ts, strict=True):
            ts[i] = t
        with keras.StatelessScope(state_mapping=list(zip(variables, var_values, strict=True))) as scope:
            loss, aux = fn(*ts)
        updates = [scope.get_current_value(v) for v in stateful]
        return loss, (aux, updates)

    grad = jax.grad(pure, argnums=(0, 1), has_aux=True)
    if os.environ.get("PARITY_JAX_JIT", "1") == "1":
        grad = jax.jit(grad)
    (d_float, dvs), (aux, updates) = grad(
        [tensors[i] for i in float_idx], [v.value for v in variables])
    for v, new in zip(stateful, updates, strict=True):
        if new is not None:
            v.assign(new)
    dts: list = [None] * len(tensors)
    for i, g in zip(float_idx, d_float, strict=True):
        dts[i] = g
    return aux, dts, list(dvs)


def stateful_variables(keras_layer) -> list:
    """The carried-state variables of stateful RNNs inside ``keras_layer`` (Keras does not track them as weights)."""
    found: dict[int, object] = {}
    for layer in getattr(keras_layer, "_flatten_layers", lambda: [keras_layer])():
        if getattr(layer, "stateful", False) and getattr(layer, "states", None) is not None:
            found.update((id(v), v) for v in layer.states)
    return list(found.values())
