"""Saving and loading models: one ``.npz`` file holding a JSON config and the arrays. Never pickle.

Layout of the archive (all entries are plain arrays, loaded with ``allow_pickle=False``)::

    __config__     uint8 bytes of a UTF-8 JSON document: format, version, model config, compile config
    weight_<i>     the model's i-th weight (get_weights() order)
    optimizer_<k>  optimizer state (iterations and slots), when saved with include_optimizer=True

Weights are stored with their dtype, so a round trip is bit-identical. Loading only instantiates known
tinynn classes from the config; it never executes code from the file.

Paths ending in ``.keras`` (models) and ``.weights.h5`` (weights) are Keras 3 files instead, handled by
:mod:`tinynn.keras_io` (needs h5py).
"""

from __future__ import annotations

import json
import os

import numpy as np

FORMAT = "tinynn"
VERSION = 1


def _npz_path(filepath) -> str:
    path = os.fspath(filepath)
    if path.endswith((".keras", ".h5")):
        raise ValueError(
            f"{path!r} looks like a Keras file: tinynn writes Keras 3 '.keras' archives (model.save / load_model) "
            "and '.weights.h5' files (save_weights / load_weights); other paths get tinynn's own .npz format. "
            "Legacy Keras 2 '.h5' files are not supported"
        )
    return path


def _keras_kind(filepath) -> str | None:
    """'model' for .keras paths, 'weights' for .weights.h5 paths (handled by tinynn.keras_io), else None."""
    path = os.fspath(filepath)
    if path.endswith(".keras"):
        return "model"
    if path.endswith(".weights.h5"):
        return "weights"
    return None


def _encode(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def _decode(arr: np.ndarray) -> dict:
    return json.loads(arr.tobytes().decode("utf-8"))


def save_model(model, filepath, include_optimizer: bool = True) -> None:
    from . import losses, optimizers

    if _keras_kind(filepath) == "model":
        from . import keras_io

        return keras_io.save_keras_model(model, filepath)
    path = _npz_path(filepath)
    model._require_built("save")
    config = {"format": FORMAT, "version": VERSION, "class_name": "Sequential", "config": model.get_config()}
    arrays = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    if model.loss is not None:
        config["compile"] = {
            "optimizer": optimizers.serialize(model.optimizer),
            "loss": losses.serialize(model.loss),
            "metrics": [m if isinstance(m, str) else m.name for m in model._metric_specs],
        }
        if include_optimizer:
            state = model.optimizer.get_state()
            config["optimizer_state_keys"] = list(state)
            arrays.update({f"optimizer_{k}": np.asarray(v) for k, v in enumerate(state.values())})
    config["num_weights"] = len(model.get_weights())
    with open(path, "wb") as fh:
        np.savez(fh, __config__=_encode(config), **arrays)


def _read(filepath) -> tuple[dict, dict]:
    path = os.fspath(filepath)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read tinynn model file {path!r}: {err}") from err
    if "__config__" not in arrays:
        raise ValueError(f"{path!r} is not a tinynn model file (no __config__ entry)")
    config = _decode(arrays.pop("__config__"))
    if config.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a tinynn model file (format {config.get('format')!r})")
    return config, arrays


def load_model(filepath, compile: bool = True):
    from . import optimizers
    from .models import Sequential

    if _keras_kind(filepath) == "model":
        from . import keras_io

        return keras_io.load_keras_model(filepath, compile=compile)
    config, arrays = _read(filepath)
    if config.get("class_name") != "Sequential":
        raise ValueError(f"Unknown model class {config.get('class_name')!r} in {os.fspath(filepath)!r}")
    model = Sequential.from_config(config["config"])
    if not model.built:
        raise ValueError("The saved model has no input shape, so its weights cannot be restored")
    model.set_weights([arrays[f"weight_{i}"] for i in range(config["num_weights"])])
    if compile and "compile" in config:
        c = config["compile"]
        model.compile(optimizer=optimizers.get(c["optimizer"]), loss=c["loss"], metrics=c["metrics"] or None)
        keys = config.get("optimizer_state_keys")
        if keys:
            model.optimizer.set_state({k: arrays[f"optimizer_{i}"] for i, k in enumerate(keys)})
    return model


def save_weights(model, filepath) -> None:
    if _keras_kind(filepath) == "weights":
        from . import keras_io

        return keras_io.save_keras_weights(model, filepath)
    path = _npz_path(filepath)
    model._require_built("save_weights")
    weights = model.get_weights()
    config = {"format": FORMAT, "version": VERSION, "weights_only": True, "num_weights": len(weights),
              "shapes": [list(w.shape) for w in weights]}
    with open(path, "wb") as fh:
        np.savez(fh, __config__=_encode(config), **{f"weight_{i}": w for i, w in enumerate(weights)})


def load_weights(model, filepath) -> None:
    if _keras_kind(filepath) == "weights":
        from . import keras_io

        return keras_io.load_keras_weights(model, filepath)
    config, arrays = _read(filepath)
    model._require_built("load_weights")
    model.set_weights([arrays[f"weight_{i}"] for i in range(config["num_weights"])])
