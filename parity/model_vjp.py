"""Gradients through a whole Keras model on any Keras backend: with respect to its inputs, its trainable weights
and the outputs of chosen layers (what ``tf.GradientTape`` gives for an intermediate tensor, on JAX and torch
too).

For upstream gradients ``g_k`` of the outputs ``y_k`` the model is differentiated at ``L = Σ_k ⟨g_k, y_k⟩``.
The gradient with respect to a layer's output ``h`` is the gradient with respect to a zero tensor ``δ``
added to it, ``h + δ``: the model runs through Keras's own graph walk (``Functional._run_through_graph``, what
``Functional.call`` does) with that one addition after each chosen layer, the output's Keras mask kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import backend


def _functional(model):
    import keras

    if isinstance(model, keras.Sequential):  # its graph as a functional model (the same layers and weights)
        return keras.Model(model.inputs, model.outputs)
    return model


def model_vjp(model, xs, upstream: Sequence, *, wrt_layers: Sequence[str] = ()) -> dict:
    """Keras's outputs and the gradients of ``L = Σ_k ⟨upstream_k, output_k⟩`` for a built model.

    Returns ``{"outputs": [y_k], "dx": [∂L/∂x_i (None for integer inputs)], "dw": [∂L/∂w for
    model.trainable_weights], "d_layers": [∂L/∂(output of each layer named in wrt_layers)]}``, NumPy arrays.
    A layer named in ``wrt_layers`` must be called once in the model (a shared layer has several outputs)."""
    import keras
    from keras import ops
    from keras.src import backend as keras_backend

    graph = _functional(model)
    xs = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    names = list(wrt_layers)
    for name in names:
        if len(graph.get_layer(name)._inbound_nodes) != 1:
            raise ValueError(f"parity.model_vjp: layer {name!r} is called more than once in the model")
    x_t = [backend.tensor(x) for x in xs]
    zeros = []
    if names:  # the chosen outputs' shapes and dtypes on this batch
        probe = keras.Model(graph.inputs, [graph.get_layer(n).output for n in names])
        values = probe(x_t if len(x_t) > 1 else x_t[0])
        values = values if isinstance(values, (list, tuple)) else [values]
        zeros = [backend.tensor(np.zeros_like(backend.numpy(v))) for v in values]
    g = [backend.tensor(np.asarray(u, dtype=np.float64)) for u in upstream]

    def fn(*ts):
        inputs, deltas = list(ts[:len(xs)]), ts[len(xs):]
        delta_of = dict(zip(names, deltas, strict=True))

        def operation_fn(op):
            if op.name not in delta_of:
                return op

            def call(*args, **kwargs):
                out = op(*args, **kwargs)
                mask = keras_backend.get_keras_mask(out)
                out = out + delta_of[op.name]
                if mask is not None:
                    keras_backend.set_keras_mask(out, mask)
                return out

            return call

        outs = keras.tree.flatten(graph._run_through_graph(inputs, operation_fn=operation_fn))
        if len(outs) != len(g):
            raise ValueError(f"parity.model_vjp: {len(g)} upstream gradients for {len(outs)} outputs")
        loss = 0.0
        for o, u in zip(outs, g, strict=True):
            loss = loss + ops.sum(ops.cast(o, "float64") * u)
        return loss, outs

    outs, dts, dws = backend.gradients(fn, [*x_t, *zeros], model.trainable_weights)
    to_np = backend.numpy
    return {"outputs": [to_np(o) for o in outs], "dx": [to_np(d) for d in dts[:len(xs)]],
            "dw": [to_np(d) for d in dws], "d_layers": [to_np(d) for d in dts[len(xs):]]}
