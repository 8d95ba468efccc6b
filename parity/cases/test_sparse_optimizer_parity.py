"""Optimizers on an Embedding's row-sparse gradient against Keras 3: the same ``IndexedSlices`` (one row per id
occurrence, the padding id 0 thousands of times, as in a batch of left-padded sequences) go to
``keras.optimizers.X.apply`` as ``tf.IndexedSlices`` and to ``tinynn.optimizers.X.apply`` as
``tinynn.sparse.IndexedSlices``, for three steps; the table and every slot are compared after each step.

Keras's TF optimizers run their update through sparse-aware ops: squares per occurrence, ``divide`` per
occurrence, and ``assign_sub``/``assign_add`` as TF scatters that apply the occurrences one at a time. The
occurrences of id 0 here are equal (the padded positions of a batch get equal gradients), so in float32 the
rounding of a row hit 3000 times depends on that order by far more than the 1e-5 tolerance: subtracting the
summed step instead gives ~1e-4 relative errors. TF runs its CPU scatters in occurrence order only with op
determinism (with several threads it splits the occurrences and the result varies from run to run), so these
tests enable it around the Keras side (:func:`parity.cases.determinism.tf_op_determinism`).

Rows of 6 numbers go through the sparse ops one by one; rows of 16 (64 bytes and more in either dtype) take
RMSprop's fused row-sparse step (:func:`tinynn.kernels.optimizer_steps.rmsprop_rows`) where it applies, which the
test checks it did.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from parity import backend
from parity.harness import compare
from parity.training import keras_floatx, keras_optimizer_for, tinynn_floatx
from tinynn import optimizers
from tinynn.kernels import optimizer_steps
from tinynn.sparse import IndexedSlices

from .determinism import tf_op_determinism

pytestmark = pytest.mark.skipif(
    backend.current() != "tensorflow",
    reason="tf.IndexedSlices reach Keras's optimizers on TensorFlow only (JAX and torch give dense gradients: "
           "docs/parity.md, 'An Embedding's gradient is dense on JAX and torch')")

VOCAB, OCCURRENCES, STEPS = 40, 4000, 3
#: Cases that take the fused row-sparse step on rows wide enough (no momentum; global_clipnorm densifies g).
FUSED_ROWS = {"RMSprop", "RMSprop clipnorm", "RMSprop clipvalue", "RMSprop weight_decay"}

CASES = {
    "SGD": lambda: optimizers.SGD(learning_rate=0.01),
    "SGD momentum": lambda: optimizers.SGD(learning_rate=0.01, momentum=0.9),
    "SGD nesterov": lambda: optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
    "RMSprop": lambda: optimizers.RMSprop(learning_rate=1e-3),
    "RMSprop momentum": lambda: optimizers.RMSprop(learning_rate=1e-3, momentum=0.5),
    "RMSprop clipnorm": lambda: optimizers.RMSprop(learning_rate=1e-3, clipnorm=0.5),
    "RMSprop clipvalue": lambda: optimizers.RMSprop(learning_rate=1e-3, clipvalue=0.004),
    "RMSprop global_clipnorm": lambda: optimizers.RMSprop(learning_rate=1e-3, global_clipnorm=0.5),
    "RMSprop weight_decay": lambda: optimizers.RMSprop(learning_rate=1e-3, weight_decay=0.05),
    "Adam": lambda: optimizers.Adam(learning_rate=1e-3),
    "AdamW amsgrad": lambda: optimizers.AdamW(learning_rate=1e-3, amsgrad=True),
    "Adagrad": lambda: optimizers.Adagrad(learning_rate=0.05),
}


def _slices(rng, dtype, dim):
    """ids: 0 three times in four (equal gradient rows, plus a little noise on a few), the rest random."""
    ids = rng.integers(1, VOCAB, OCCURRENCES)
    padded = rng.random(OCCURRENCES) < 0.75
    ids[padded] = 0
    values = rng.normal(size=(OCCURRENCES, dim)) * 0.01
    values[padded] = rng.normal(size=dim) * 0.01
    values[padded & (rng.random(OCCURRENCES) < 0.05)] *= 1.5
    return ids, values.astype(dtype)


@pytest.mark.parametrize("dim", [6, 16])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_on_indexed_slices_matches_keras(case, dtype, dim):
    rng = np.random.default_rng(sorted(CASES).index(case))
    w0 = (1.0 + rng.normal(size=(VOCAB, dim)) * 0.1).astype(dtype)  # |w| ~ 1: a float32 ulp is 1.2e-7
    with tinynn_floatx(dtype):
        opt = CASES[case]()
    with keras_floatx(dtype):
        keras_opt = keras_optimizer_for(opt)
    import keras

    var = keras.Variable(w0, dtype=dtype)
    w = w0.copy()
    with tf_op_determinism(), mock.patch.object(optimizer_steps, "rmsprop_rows",
                                                 wraps=optimizer_steps.rmsprop_rows) as fused:  # fmt: skip
        for step in range(STEPS):
            ids, values = _slices(rng, dtype, dim)
            opt.apply([IndexedSlices(values, ids, (VOCAB, dim))], [w])
            keras_opt.apply([tf.IndexedSlices(tf.constant(values), tf.constant(ids), (VOCAB, dim))], [var])
            check = compare(f"{case} table after step {step + 1}", w, var.numpy(), dtype)
            assert check.passed, str(check)
    assert fused.call_count == (STEPS if case in FUSED_ROWS and dim == 16 else 0)
    slots = {key.rsplit("_", 1)[0]: value for key, value in opt.get_state().items()
             if key not in ("iterations", "learning_rate")}  # fmt: skip
    keras_slots = {v.name: v.numpy() for v in keras_opt.variables if v.name not in ("iteration", "learning_rate")}
    assert len(slots) == len(keras_slots), (sorted(slots), sorted(keras_slots))
    for name, value in slots.items():
        check = compare(f"{case} slot {name}", value, keras_slots[f"{var.name}_{name}"], dtype)
        assert check.passed, str(check)
