"""tinynn: Keras-style neural-network layers in NumPy and numba, each with a hand-written backward pass.

    import tinynn as tn
    from tinynn import layers, models, optimizers   # replaces `from keras import ...`
"""

from . import activations, config, initializers, layers, utils
from .utils import set_random_seed

__version__ = "0.1.0"

__all__ = ["activations", "config", "initializers", "layers", "utils", "set_random_seed"]
