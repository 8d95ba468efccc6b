"""Saving and loading models and weights: tinynn's ``.npz``, Keras 3 ``.keras``/``.weights.h5``, Keras 2 ``.h5``.

    model.save("m.npz")          # tinynn's own: JSON config + arrays in one .npz, never pickle (Sequential or
                                 # functional Model; in every format)
    model.save("m.keras")        # Keras 3 archive: keras.models.load_model opens it
    model.save("m.h5")           # Keras 2 legacy HDF5 (the tutorials' format): Keras 2 and 3 open it
    model.save_weights("w.weights.h5"); model.load_weights("w.weights.h5")
    tinynn.load_model(path)      # any of them, recognised by content

Modules (none imports ``tinynn.models``: model classes register themselves, :mod:`.registry`):

- :mod:`.api`: which format a path gets; :mod:`.atomic`: every save is written to a temporary file and
  renamed into place; :mod:`.errors`: every load error names the file, the kind expected and what is wrong;
- :mod:`.npz`: tinynn's format; :mod:`.keras_v3`: ``.keras`` and ``.weights.h5``; :mod:`.keras_legacy`:
  Keras 2 ``.h5``; :mod:`.hdf5`: the refusals that make reading HDF5 safe (links, external storage, virtual
  datasets, storage that does not back the declared shape) and building files in memory;
- :mod:`.keras_config`: Keras configs ↔ tinynn configs, dict to dict, per model class
  (:func:`register_model_translator`; :mod:`.keras_functional` is the functional ``Model``'s translator, which
  ``tinynn.models`` registers); :mod:`.keras_optimizer`: Keras's optimizer-variable order;
- :mod:`.model_io`: building under a memory budget, weight checks before any change, compiling.

Loading never executes code from a file and never follows links or external storage; it checks every declared
shape against the model before reading an array, so a damaged or hostile file cannot make tinynn allocate
gigabytes, and a failed ``load_weights`` leaves the model unchanged.
"""

from .api import keras_model_config, load_model, load_weights, model_from_keras_config, save_model, save_weights
from .errors import FileFormatError
from .keras_config import ModelTranslator, layer_from_keras, layer_to_keras, register_model_translator
from .registry import model_class, register_model_class

__all__ = [
    "FileFormatError",
    "keras_model_config",
    "model_from_keras_config",
    "ModelTranslator",
    "layer_from_keras",
    "layer_to_keras",
    "load_model",
    "load_weights",
    "model_class",
    "register_model_class",
    "register_model_translator",
    "save_model",
    "save_weights",
]
