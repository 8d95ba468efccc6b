"""Which format a path gets: saving goes by the file name, loading by the file's content.

==================  ===========================================  ==============================================
file name           ``model.save`` / ``tinynn.load_model``        ``save_weights`` / ``load_weights``
==================  ===========================================  ==============================================
``*.keras``         Keras 3 archive (:mod:`.keras_v3`)            load only (Keras 3 allows it); save refused
``*.weights.h5``    (save: legacy ``.h5``, as Keras 3 does)       Keras 3 weights file (:mod:`.keras_v3`)
``*.h5``/``.hdf5``  Keras 2 legacy model (:mod:`.keras_legacy`)   Keras 2 legacy weights (:mod:`.keras_legacy`)
anything else       tinynn ``.npz`` (:mod:`.npz`)                 tinynn ``.npz`` (:mod:`.npz`)
==================  ===========================================  ==============================================

Loading looks at the bytes instead of the name (a zip holding ``config.json`` is a Keras archive, one holding
``__config__.npy`` a tinynn file; an HDF5 file with a ``model_config`` attribute a legacy model, with a
``layers`` group a Keras 3 weights file), so a misnamed file still loads, and anything else — a pickle, a
single ``.npy`` array, text — gets an error saying what it is. Every save is atomic (:mod:`.atomic`).
"""

from __future__ import annotations

import os
import zipfile

from . import atomic, hdf5, keras_config, keras_legacy, keras_v3, npz
from .errors import FileFormatError, reading
from .registry import model_class

ANY_MODEL = "model file (tinynn .npz, Keras .keras or Keras .h5)"
ANY_WEIGHTS = "weights file (tinynn .npz, Keras .weights.h5, .keras or .h5)"
_LEGACY_SUFFIXES = (".h5", ".hdf5")


def _sniff(path: str, kind: str) -> str:
    """'zip', 'hdf5', 'npy', 'pickle', 'empty' or 'unknown', from the first bytes of the file."""
    with reading(path, kind), open(path, "rb") as fh:
        head = fh.read(8)
        if not head:
            return "empty"
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            return "zip"
        if head.startswith(b"\x93NUMPY"):
            return "npy"
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return "pickle"
        offset = 0
        while True:  # the HDF5 superblock sits at 0, 512, 1024, 2048, ... (after a user block)
            fh.seek(offset)
            if fh.read(8) == hdf5.HDF5_SIGNATURE:
                return "hdf5"
            offset = 512 if offset == 0 else offset * 2
            if offset > 2**20:
                return "unknown"


def _not_loadable(path: str, kind: str, found: str) -> FileFormatError:
    what = {
        "empty": "the file is empty",
        "npy": "it is a single NumPy array (.npy), not a saved model",
        "pickle": "it is a Python pickle; tinynn never unpickles (loading a pickle can run any code)",
        "unknown": "its content is none of these formats (not a zip archive, not HDF5)",
    }[found]
    return FileFormatError(path, kind, what)


def _zip_names(path: str, kind: str) -> list[str]:
    with reading(path, kind), zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _hdf5_layout(path: str, kind: str) -> str:
    """'legacy_model', 'legacy_weights', 'keras_weights' or 'unknown'."""
    with reading(path, kind), hdf5.open_path(path) as h5file:
        if "model_config" in h5file.attrs:
            return "legacy_model"
        if "model_weights" in h5file or "layer_names" in h5file.attrs:
            return "legacy_weights"
        if "layers" in h5file or "vars" in h5file:
            return "keras_weights"
        return "unknown"


# ---------------------------------------------------------------------------------------------- loading
def load_model(filepath, compile: bool = True):
    """A model (config, weights; with ``compile`` its optimizer, loss, metrics and optimizer state) from a
    tinynn ``.npz``, a Keras 3 ``.keras`` archive or a Keras 2 / Keras 3 legacy ``.h5`` file."""
    path = os.fspath(filepath)
    found = _sniff(path, ANY_MODEL)
    if found == "zip":
        names = _zip_names(path, ANY_MODEL)
        if keras_v3.CONFIG_FILE in names:
            return keras_v3.load_model(path, compile=compile)
        if "__config__.npy" in names:
            return npz.load_model(path, compile=compile)
        raise FileFormatError(path, ANY_MODEL, f"this zip archive has neither a config.json (Keras) nor a "
                                               f"__config__.npy (tinynn); its members are {names[:8]}")
    if found == "hdf5":
        layout = _hdf5_layout(path, ANY_MODEL)
        if layout == "legacy_model":
            return keras_legacy.load_model(path, compile=compile)
        if layout in ("legacy_weights", "keras_weights"):
            raise FileFormatError(path, ANY_MODEL, "it holds weights only, no model config: build the model and "
                                                   "call model.load_weights on it")
        raise FileFormatError(path, ANY_MODEL, "this HDF5 file has no Keras model_config")
    raise _not_loadable(path, ANY_MODEL, found)


def load_weights(model, filepath) -> None:
    """Load weights into ``model`` from any format :func:`load_model` reads, or a weights file
    (``.weights.h5``, legacy ``.h5``, tinynn ``.npz``). Everything is checked before the model changes."""
    path = os.fspath(filepath)
    found = _sniff(path, ANY_WEIGHTS)
    if found == "zip":
        names = _zip_names(path, ANY_WEIGHTS)
        if keras_v3.CONFIG_FILE in names or keras_v3.WEIGHTS_FILE in names:
            return keras_v3.load_archive_weights(model, path)
        if "__config__.npy" in names:
            return npz.load_weights(model, path)
        raise FileFormatError(path, ANY_WEIGHTS, f"this zip archive has neither a model.weights.h5 (Keras) nor a "
                                                 f"__config__.npy (tinynn); its members are {names[:8]}")
    if found == "hdf5":
        layout = _hdf5_layout(path, ANY_WEIGHTS)
        if layout == "keras_weights":
            return keras_v3.load_weights_file(model, path)
        if layout in ("legacy_model", "legacy_weights"):
            return keras_legacy.load_weights(model, path)
        raise FileFormatError(path, ANY_WEIGHTS, "this HDF5 file has neither Keras 3 'layers' nor Keras 2 "
                                                 "'model_weights'/'layer_names'")
    raise _not_loadable(path, ANY_WEIGHTS, found)


# ---------------------------------------------------------------------------------------------- saving
def save_model(model, filepath, include_optimizer: bool = True) -> None:
    """Save ``model`` whole; the format follows the name (see the module docstring). Atomic."""
    path = os.fspath(filepath)
    if path.endswith(".keras"):
        data = keras_v3.archive_bytes(model, include_optimizer)
    elif path.endswith(_LEGACY_SUFFIXES):
        data = keras_legacy.model_bytes(model, include_optimizer)
    else:
        data = npz.model_bytes(model, include_optimizer)
    atomic.write_bytes(path, data, "model")


def save_weights(model, filepath) -> None:
    """Save ``model``'s weights; the format follows the name (see the module docstring). Atomic."""
    path = os.fspath(filepath)
    if path.endswith(".weights.h5"):
        data = keras_v3.weights_bytes(model)
    elif path.endswith(_LEGACY_SUFFIXES):
        data = keras_legacy.weights_bytes(model)
    elif path.endswith(".keras"):
        raise ValueError(f"save_weights({path!r}): a .keras archive holds a whole model; use model.save({path!r}), "
                         "or name the weights file '*.weights.h5'")
    else:
        data = npz.weights_bytes(model)
    atomic.write_bytes(path, data, "weights")


# ---------------------------------------------------------------------------------------------- configs, no file
def model_from_keras_config(spec: dict, where: str = "Keras config"):
    """A tinynn model built from a Keras model config (``{'class_name', 'config'}``, no weights); every problem
    is named in one ``ValueError``. Used by ``parity.bridge.from_keras`` for live Keras models."""
    class_name, config = keras_config.model_from_keras(spec, where)
    return model_class(class_name).from_config(config)


def keras_model_config(model) -> dict:
    """The config Keras 3 writes for the same model (``config.json`` of a ``.keras`` archive)."""
    return keras_v3.config_of(model)
