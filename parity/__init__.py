"""The parity suite: proves tinynn computes what Keras 3 computes, on any Keras backend.

Needs ``pip install 'tinynn[parity]'`` (pytest, hypothesis, keras, h5py, TensorFlow; ``parity-jax`` /
``parity-torch`` for the other backends); ``tinynn`` never imports this package. The Keras backend is
``KERAS_BACKEND`` (default tensorflow), set before Keras is imported; see :mod:`parity.backend`.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from . import backend as _backend  # noqa: E402  (after KERAS_BACKEND: configures the chosen backend)

_backend.configure()
