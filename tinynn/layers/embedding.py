r"""Embedding (Keras 3 ``keras.layers.Embedding``): integer ids -> rows of a (input_dim, output_dim) table.

Forward, for ids of any shape S (the batch axis first)::

    i = trunc(ids) if ids are floats (Keras casts to int32, which truncates toward 0: 1.7 -> 1, -0.5 -> 0)
    i = i + input_dim where i < 0     (ids in [-input_dim, -1] wrap around like Python indexing)
    y = W[i]                           (S..., output_dim)

ids outside [-input_dim, input_dim) raise a ValueError (Keras/TF on CPU raise InvalidArgumentError).

Backward: ids are not differentiable (``backward`` returns None); the table gradient is dense and aligned
with ``get_weights()``: ``δW[v] = Σ_{n: i_n = v} δy_n`` (a scatter-add).

Code: :func:`tinynn.kernels.reference.embedding.embedding_forward` and ``scatter_add`` (the reference, read
first), :func:`tinynn.kernels.embedding.gather` and ``scatter_add`` (the numba lookup, rows split between the cores,
and scatter-add of the 'fast' kernel mode).

Keras hands that gradient to its optimizer as ``tf.IndexedSlices`` with one row per occurrence, and the
optimizers' squared-gradient terms (RMSprop, Adam, Adagrad…) square those rows before the duplicates are
summed: ``v += (1-ρ) Σ_n δy_n²`` rather than ``(Σ_n δy_n)²``. So ``gradients[0]`` is an
:class:`tinynn.sparse.IndexedSlices` (``values`` = the δy rows, ``indices`` = the wrapped ids), which
tinynn's optimizers treat as Keras's do; ``np.asarray`` gives the dense sum above.

``mask_zero=True``: the output mask is ``ids != 0`` (computed on the ids as given, as Keras does); row 0 is
still looked up, so masked positions output W[0], not zeros.

``input_length=L`` (Keras 2, removed in Keras 3) warns with a DeprecationWarning and, as in Keras 2, stands
for ``input_shape=(L,)``: as the first layer of a ``Sequential`` it builds the model for inputs ``(None, L)``,
so ``model.layers[0].set_weights(...)`` and ``summary()`` work right after ``add``, as in the tutorials.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import config
from .. import initializers as _init
from ..kernels import embedding as K_embedding
from ..kernels import windows
from ..kernels.reference.embedding import embedding_forward
from ..sparse import IndexedSlices
from .arguments import positive_int
from .base import InputSpec, Layer, _ForwardRecord


class Embedding(Layer):
    """Turns non-negative integer ids into dense vectors of size ``output_dim``."""

    _config_keys = ("input_dim", "output_dim", "embeddings_initializer", "mask_zero")

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform", mask_zero: bool = False,
                 **kwargs):
        input_length = kwargs.pop("input_length", None)
        if input_length is not None:
            if not isinstance(input_length, (int, np.integer)) or isinstance(input_length, bool) or input_length <= 0:
                raise ValueError(f"Embedding: input_length must be a positive integer, got {input_length!r}")
            warnings.warn("Embedding: `input_length` is deprecated (Keras 3 dropped it); as in Keras 2 it sets the "
                          f"input shape ({input_length},) of a Sequential that starts with this layer. "
                          f"Keras 3 spelling: input_shape=({input_length},) or layers.Input(shape=({input_length},))",
                          DeprecationWarning, stacklevel=2)
            if "input_shape" not in kwargs and "batch_input_shape" not in kwargs:
                kwargs["input_shape"] = (int(input_length),)
        super().__init__(**kwargs)
        self.input_dim = positive_int(input_dim, "input_dim", self.who)
        self.output_dim = positive_int(output_dim, "output_dim", self.who)
        self.embeddings_initializer = _init.get(embeddings_initializer)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self._idx = None

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer)
        self.input_spec = InputSpec(min_ndim=1)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def prepare_input(self, x) -> np.ndarray:
        """Ids as int64 (floats truncated toward 0, as Keras's cast to int32); bad ids raise before lookup."""
        who = self.who
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{who} expects an array of integer ids, got {type(x).__name__} ({err})") from err
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{who} expects integer ids, got dtype {x.dtype}")
        if x.ndim == 0:
            raise ValueError(f"{who} expects ids with a batch axis, got a scalar (shape ())")
        if x.dtype.kind == "f":
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{who} got non-finite ids (NaN or inf)")
            x = np.trunc(x)
        if x.size:
            lo, hi = x.min(), x.max()
            if lo < -self.input_dim or hi >= self.input_dim:
                bad = lo if lo < -self.input_dim else hi
                raise ValueError(
                    f"{who}: id {bad:g} is out of range; valid ids are in [0, {self.input_dim}) "
                    f"(or [-{self.input_dim}, -1], which wrap around) for input_dim={self.input_dim}"
                )
        return x.astype(np.int64)

    def _wrapped(self, x: np.ndarray) -> np.ndarray:
        """The ids with negative ones wrapped around (i + input_dim where i < 0)."""
        return np.where(x < 0, x + self.input_dim, x)

    def forward(self, x, training=False, mask=None):
        idx = self._wrapped(x)
        self._idx = idx
        if config.kernel_mode() == "reference" or not K_embedding.gather_ready(self.embeddings):
            return embedding_forward(self.embeddings, idx)
        y = K_embedding.gather(self.embeddings, idx.reshape(-1)).reshape(*idx.shape, self.output_dim)
        windows.note_lookup(y, idx)  # a Conv1D reading y finds its equal steps from the ids
        return y

    def feeds(self, layer) -> bool:
        """Whether ``layer`` (the next one) is a Conv1D that :meth:`forward_into` can hand the lookups to
        (:meth:`tinynn.layers.Conv1D.reads_lookups`)."""
        from .conv import Conv1D

        return not self.mask_zero and type(layer) is Conv1D and layer.reads_lookups(self.dtype)

    def forward_into(self, x, layer, training: bool = False) -> np.ndarray | None:
        """``layer(self(x))`` for ``layer`` a Conv1D (:meth:`feeds`) that reads the table and the ids directly
        (:meth:`tinynn.layers.Conv1D.forward_lookup`), never forming the (B, L, output_dim) lookup; None (nothing
        done: call the two layers) where that convolution does not apply. Inference: neither layer keeps a forward
        to run a backward from. Training: both do, and their backward calls give the numbers of the two calls'
        (this layer's gradient rows are the Conv1D's dx, one per id occurrence, as always)."""
        x = self.accept_input(x)  # bad ids raise here, as in a call
        if config.kernel_mode() == "reference" or x.ndim != 2:
            return None
        idx = self._wrapped(x)
        y = layer.forward_lookup(self.embeddings, idx, training=training)
        if y is None:
            return None
        if training:
            self._idx = idx
            lookups = np.broadcast_to(np.zeros(1, self.dtype), (*idx.shape, self.output_dim))  # shape and dtype
            self._forward_record = _ForwardRecord(lookups, x)
        else:
            self._idx, self._forward_record = None, None
        return y

    def expected_mask_shape(self, x):
        return None  # an incoming mask is ignored (the output mask comes from the ids), as in Keras

    def backward(self, dy):
        dy = np.ascontiguousarray(dy).reshape(-1, self.output_dim)
        idx = np.ascontiguousarray(self._idx.reshape(-1))
        self.gradients = [IndexedSlices(dy, idx, self.embeddings.shape)]
        return None

    def compute_mask(self, x, mask):
        if not self.mask_zero:
            return None
        return np.asarray(x) != 0
