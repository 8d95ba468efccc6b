"""Whole-training parity: the same Sequential, weights and batches trained by tinynn and by Keras.

Both sides start from identical weights, see identical batches (``shuffle=False``), use the same loss,
optimizer config and metrics; every per-epoch History entry and the final weights are compared. Float64
runs set Keras's floatx to float64 while the Keras side is built, so that its loss and optimizer compute
in float64 too (keras-semantics §12). Tolerances: 1e-9 relative in float64, 1e-4 in float32 (errors
compound over many steps, so these are looser than the one-step layer tolerances).
"""

from __future__ import annotations

import pathlib
from contextlib import contextmanager

import numpy as np

from tinynn import config as tinynn_config
from tinynn import optimizers

from . import bridge, recorder
from .harness import Check, LayerReport, keep_going, keras_error_check, paired, weight_label

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


def keras_callback_for(callback, keras_dir: pathlib.Path | None = None):
    """The Keras twin of a tinynn ``EarlyStopping`` or ``ModelCheckpoint`` (same arguments; a checkpoint
    writes to a file of the same name in ``keras_dir``)."""
    import keras

    name = type(callback).__name__
    if name == "EarlyStopping":
        return keras.callbacks.EarlyStopping(
            monitor=callback.monitor, min_delta=abs(callback.min_delta), patience=callback.patience,
            mode=callback.mode, baseline=callback.baseline, restore_best_weights=callback.restore_best_weights,
            start_from_epoch=callback.start_from_epoch)
    if name == "ModelCheckpoint":
        if keras_dir is None:
            raise ValueError("parity.training: a ModelCheckpoint twin needs a directory for Keras's file")
        return keras.callbacks.ModelCheckpoint(
            str(keras_dir / pathlib.Path(callback.filepath).name), monitor=callback.monitor,
            save_best_only=callback.save_best_only, save_weights_only=callback.save_weights_only, mode=callback.mode)
    raise ValueError(f"parity.training: no Keras twin known for the callback {name}")


def _checkpoint_weights(path: str, weights_only: bool, tinynn_model=None, keras_model=None) -> list[np.ndarray]:
    """The weights a checkpoint file holds, read by the framework that wrote it."""
    if keras_model is not None:
        import keras

        if weights_only:
            keras_model.load_weights(path)
            return keras_model.get_weights()
        return keras.models.load_model(path).get_weights()
    import tinynn

    if weights_only:
        current = tinynn_model.get_weights()
        tinynn_model.load_weights(path)
        saved = tinynn_model.get_weights()
        tinynn_model.set_weights(current)
        return saved
    return tinynn.load_model(path).get_weights()


def _keras_fit(model, initial, x, y, fit_kwargs, callbacks, checkpoints):
    """Keras's History, final weights and checkpoint files' weights for the twin of ``model``."""
    dtype = model.layers[0].dtype
    with keras_floatx(dtype):
        keras_model = bridge.to_keras(model)
        keras_model.compile(
            optimizer=keras_optimizer_for(model.optimizer),
            loss=keras_loss_for(model.loss),
            metrics=model.get_compile_config()["metrics"] or None,
        )
        keras_model.set_weights(initial)
        keras_dir = None
        if checkpoints:
            keras_dir = pathlib.Path(checkpoints[0].filepath).parent / "keras"
            keras_dir.mkdir(exist_ok=True)
        keras_callbacks = [keras_callback_for(cb, keras_dir) for cb in callbacks]
        ref = keras_model.fit(x, y, callbacks=keras_callbacks or None, **fit_kwargs).history
        ref_weights = keras_model.get_weights()
        ref_saved = [_checkpoint_weights(kc.filepath, cb.save_weights_only, keras_model=keras_model)
                     for cb, kc in zip(callbacks, keras_callbacks) if cb in checkpoints and "{" not in cb.filepath]
    return ref, ref_weights, ref_saved


def training_parity(model, x, y, *, epochs=3, batch_size=16, validation_split=0.0, validation_data=None,
                    sample_weight=None, callbacks=None) -> LayerReport:
    """Fit a compiled tinynn ``model`` and its Keras twin from the same initial weights and compare.

    The model must be compiled; its optimizer must not have been used yet. ``callbacks``: tinynn
    ``EarlyStopping`` / ``ModelCheckpoint`` objects; Keras gets twins with the same arguments (a
    checkpoint's twin writes a file of the same name in a sibling folder ``keras/``). The History (so the
    epoch EarlyStopping stopped at), the final weights (so restored best weights) and the weights each
    checkpoint file holds at the end (for paths without ``{...}`` fields) are compared.
    """
    import keras

    dtype = model.layers[0].dtype
    initial = model.get_weights()
    # Rebuild tinynn's optimizer under the same floatx as Keras's (its learning rate is stored in floatx)
    with tinynn_floatx(dtype):
        model.optimizer = optimizers.get(optimizers.serialize(model.optimizer))
    fit_kwargs = dict(epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0,
                      validation_split=validation_split, validation_data=validation_data,
                      sample_weight=sample_weight)
    callbacks = list(callbacks or [])
    checkpoints = [cb for cb in callbacks if type(cb).__name__ == "ModelCheckpoint"]
    report = LayerReport("training " + "→".join(type(layer).__name__ for layer in model.layers),
                         {"optimizer": type(model.optimizer).__name__, "loss": type(model.loss).__name__,
                          "metrics": model.get_compile_config()["metrics"], "epochs": epochs}, dtype)
    try:
        ref, ref_weights, ref_saved = _keras_fit(model, initial, x, y, fit_kwargs, callbacks, checkpoints)
    except Exception as error:  # noqa: BLE001 - only Keras runs in there
        if not keep_going():
            raise
        report.checks.append(keras_error_check(error))
        recorder.note_report(report, "training")
        return report
    ours = model.fit(x, y, callbacks=callbacks or None, **fit_kwargs).history
    ours_saved = [_checkpoint_weights(cb.filepath, cb.save_weights_only, tinynn_model=model)
                  for cb in checkpoints if "{" not in cb.filepath]
    keras.backend.clear_session()

    if sorted(ours) != sorted(ref):
        report.checks.append(Check(f"history keys {sorted(ours)} vs {sorted(ref)}", np.inf, np.inf, 0.0))
    for key in ref:
        if key in ours:
            report.checks.append(_compare_training(f"history[{key!r}]", ours[key], ref[key], dtype))
    names = [n for layer in model.layers for n in layer.weight_names]
    names = [f"[{j}] {weight_label(n)}" for j, n in enumerate(names)]  # the same in every backend's run
    for name, (w, r) in zip(names, paired("final weights", model.get_weights(), ref_weights, report.checks)):
        report.checks.append(_compare_training(f"final {name}", w, r, dtype))
    for k, (saved, ref_file) in enumerate(paired("checkpoint files", ours_saved, ref_saved, report.checks)):
        for name, (w, r) in zip(names, paired("checkpoint weights", saved, ref_file, report.checks)):
            report.checks.append(_compare_training(f"final checkpoint[{k}] {name}", w, r, dtype))
    recorder.note_report(report, "training")
    return report
