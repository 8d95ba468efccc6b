"""tinynn: Keras-style neural-network layers in NumPy and numba, each with a hand-written backward pass.

    import tinynn as tn
    from tinynn import layers, models, optimizers   # replaces `from keras import ...`
"""

from . import (
    activations,
    callbacks,
    config,
    initializers,
    layers,
    losses,
    memory,
    metrics,
    models,
    optimizers,
    preprocessing,
    saving,
    utils,
)
from .layers import Input
from .models import Model, Sequential, load_model
from .utils import set_random_seed

__version__ = "0.1.0"

memory._tune_on_import()  # keep freed memory for the next step (see tinynn.memory); TINYNN_MALLOC_TUNING=0: off

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "activations",
    "callbacks",
    "config",
    "initializers",
    "layers",
    "load_model",
    "losses",
    "memory",
    "metrics",
    "models",
    "optimizers",
    "preprocessing",
    "saving",
    "set_random_seed",
    "utils",
]
