"""Whole-training parity: the same Sequential, weights and batches trained by tinynn and by Keras.

Both sides start from identical weights, see identical batches (``shuffle=False``), use the same loss,
optimizer config and metrics; every per-epoch History entry and the final weights are compared. Float64
runs set Keras's floatx to float64 while the Keras side is built, so that its loss and optimizer compute
in float64 too (keras-semantics §12). Tolerances: 1e-9 relative in float64, 1e-4 in float32 (errors
compound over many steps, so these are looser than the one-step layer tolerances).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from tinynn import config as tinynn_config
from tinynn import optimizers

from . import bridge, recorder
from .harness import Check, LayerReport

TRAINING_TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


@contextmanager
def keras_floatx(dtype: str):
    """Temporarily make ``dtype`` Keras's default float type (losses, optimizer variables, layers)."""
    import keras

    old_floatx = keras.config.floatx()
    old_policy = keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old_floatx)
        keras.config.set_dtype_policy(old_policy)


@contextmanager
def tinynn_floatx(dtype: str):
    old = tinynn_config.floatx()
    tinynn_config.set_floatx(dtype)
    try:
        yield
    finally:
        tinynn_config.set_floatx(old)


def keras_optimizer_for(optimizer):
    """A Keras optimizer with the tinynn optimizer's config (fresh state)."""
    import keras

    from tinynn import optimizers

    spec = optimizers.serialize(optimizer)
    cls = getattr(keras.optimizers, spec["class_name"])
    cfg = {k: v for k, v in spec["config"].items() if k != "name"}
    return cls(**cfg)


def keras_loss_for(loss):
    import keras

    from tinynn import losses

    spec = losses.serialize(loss)
    cfg = {k: v for k, v in spec["config"].items() if k != "name"}
    return getattr(keras.losses, spec["class_name"])(**cfg)


def _compare_training(what, ours, ref, dtype) -> Check:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return Check(f"{what} shape {ours.shape} vs {ref.shape}", np.inf, np.inf, TRAINING_TOLERANCE[dtype])
    diff = float(np.max(np.abs(ours - ref))) if ours.size else 0.0
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-6)
    return Check(what, diff, diff / scale, TRAINING_TOLERANCE[dtype])


def training_parity(model, x, y, *, epochs=3, batch_size=16, validation_split=0.0, validation_data=None,
                    sample_weight=None) -> LayerReport:
    """Fit a compiled tinynn ``model`` and its Keras twin from the same initial weights and compare.

    The model must be compiled; its optimizer must not have been used yet.
    """
    import keras

    dtype = model.layers[0].dtype
    initial = model.get_weights()
    # Rebuild tinynn's optimizer under the same floatx as Keras's (its learning rate is stored in floatx)
    with tinynn_floatx(dtype):
        model.optimizer = optimizers.get(optimizers.serialize(model.optimizer))
    with keras_floatx(dtype):
        keras_model = bridge.to_keras(model)
        keras_model.compile(
            optimizer=keras_optimizer_for(model.optimizer),
            loss=keras_loss_for(model.loss),
            metrics=model.get_compile_config()["metrics"] or None,
        )
        keras_model.set_weights(initial)
        fit_kwargs = dict(epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0,
                          validation_split=validation_split, validation_data=validation_data,
                          sample_weight=sample_weight)
        ref = keras_model.fit(x, y, **fit_kwargs).history
        ref_weights = keras_model.get_weights()
    ours = model.fit(x, y, **fit_kwargs).history
    keras.backend.clear_session()

    report = LayerReport("training " + "→".join(type(layer).__name__ for layer in model.layers),
                         {"optimizer": type(model.optimizer).__name__, "loss": type(model.loss).__name__,
                          "metrics": model.get_compile_config()["metrics"], "epochs": epochs}, dtype)
    if sorted(ours) != sorted(ref):
        report.checks.append(Check(f"history keys {sorted(ours)} vs {sorted(ref)}", np.inf, np.inf, 0.0))
    for key in ref:
        if key in ours:
            report.checks.append(_compare_training(f"history[{key!r}]", ours[key], ref[key], dtype))
    for name, w, r in zip([n for layer in model.layers for n in layer.weight_names], model.get_weights(), ref_weights):
        report.checks.append(_compare_training(f"final {name}", w, r, dtype))
    recorder.note_report(report, "training")
    return report
