"""TensorFlow's op determinism around the Keras side of a comparison.

Keras's optimizers apply an Embedding's gradient (``tf.IndexedSlices``) with TF's scatter ops, one occurrence at
a time. On CPU, with more than one intra-op thread, TF splits the occurrences between threads and the float
rounding of a row used many times (the padding id of left-padded sequences) changes from run to run: two
identical Keras fits of the seed-000 text convnet differ by ~1e-5 relative in float32. With op determinism TF
applies them in occurrence order, which is what tinynn does (:mod:`tinynn.sparse`), so the comparison is exact
up to the arithmetic of the layers. The switch is process-wide; this context manager restores it.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def tf_op_determinism():
    """Enable ``tf.config.experimental.enable_op_determinism()`` inside the block, restore the setting after."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()
