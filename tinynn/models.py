"""Model (the functional API) and Sequential (a chain): graphs of layers trained by hand-written backpropagation.

``Model(inputs, outputs)`` runs the graph between symbolic tensors (``tinynn/graph.py``); ``Sequential`` is the
special case of a chain and runs on the same executor, so ``model.input``, ``layer.output`` and
``model.vjp(x, δy, wrt=[tensor])`` work on both. One training step on a batch (x, y)::

    ŷ_k, m_k = forward(x, training=True)          # every node in topological order; masks travel with tensors
    L = Σ_k w_k L_k(y_k, ŷ_k, mask=m_k)           # from the logits where an output is a sigmoid/softmax layer
    backward: nodes in reverse order, each layer's own backward; a tensor read by several nodes gets the sum
    optimizer.apply([∂L/∂θ], [θ])                 # θ updated in place

Everything Keras reports is reproduced: the epoch loss is ``Σ_b L_b n_b / N`` over batches computed with the
weights before each update; validation runs after the epoch in inference mode.

``model.vjp(x, δy, wrt)`` is that backward pass exposed as a tool: the vector-Jacobian products
``(∂y/∂t)ᵀ δy`` for any tensors ``t`` of the graph, with the weights, their gradients and the optimizer untouched.
"""

from __future__ import annotations

import numpy as np

from . import compile_utils, functional_config, saving
from . import data as data_utils
from . import graph as graph_mod
from . import losses as losses_mod
from . import optimizers as optimizers_mod
from .graph import KerasTensor, flatten
from .layers import Layer, deserialize, serialize
from .layers.base import unique_name
from .layers.core import InputLayer
from .saving import keras_functional
from .trainer import Trainer


class Model(Trainer, Layer):
    """A graph of layers from symbolic inputs to symbolic outputs, as ``keras.Model(inputs, outputs)``.

    >>> a, b = layers.Input(shape=(8,), name="a"), layers.Input(shape=(4,), name="b")
    >>> shared = layers.Dense(16, activation="relu")
    >>> h = layers.Concatenate()([shared(a), shared(layers.Dense(8)(b))])
    >>> model = Model(inputs=[a, b], outputs=[layers.Dense(1, name="score")(h), layers.Dense(3, name="kind")(h)])

    A model is itself a layer (``forward``/``backward``/``weights``/``gradients``): call it on symbolic tensors
    to use it inside another model.
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, trainable: bool = True, **kwargs):
        if inputs is None or outputs is None:
            raise ValueError(
                "tinynn.Model needs inputs= and outputs= (the functional API: symbolic tensors from layers.Input and "
                "layer calls); subclassed models with a custom call() are not supported, use Sequential or the "
                "functional API"
            )
        super().__init__(name=name or unique_name("functional"), trainable=trainable, **kwargs)
        self._init_training_state()
        self._set_graph(inputs, outputs)

    # ------------------------------------------------------------------ graph
    def _init_training_state(self) -> None:
        self._graph: graph_mod.Graph | None = None
        self._layers: list[Layer] = []
        self._run = None
        self._output_masks = None
        self.optimizer = None
        self.loss = None
        self._output_losses: list[compile_utils.OutputLoss] = []
        self._metric_groups: list[compile_utils.OutputMetrics] = []
        self._metric_specs: list = []
        self._metrics_built = False
        self.compiled_metrics: list = []
        self.stop_training = False
        self.history = None

    def _set_graph(self, inputs, outputs) -> None:
        who = f"Model {self.name!r}"
        for what, struct in (("inputs", inputs), ("outputs", outputs)):
            flat = flatten(struct)
            if not flat:
                raise ValueError(f"{who}: `{what}` argument cannot be empty")
            bad = [v for v in flat if not isinstance(v, KerasTensor)]
            if bad:
                raise ValueError(
                    f"{who}: all `{what}` values must be symbolic tensors (layers.Input(...) or the output of a layer "
                    f"called on one), got {type(bad[0]).__name__}: {bad[0]!r}"
                )
        self._inputs_struct, self._outputs_struct = inputs, outputs
        self._graph = graph_mod.Graph(flatten(inputs), flatten(outputs), owner=who)
        self._check_no_layer_twice()
        self._layers = list(self._graph.layers)
        self.output_names = [t._keras_history.layer.name for t in self.outputs]

    def _check_no_layer_twice(self) -> None:
        """A layer may be shared inside one graph, but not appear both in this model and inside a nested model."""
        direct = {id(layer) for layer in self._graph.layers}
        inner = [layer for m in self._graph.layers if isinstance(m, Model) for layer in graph_mod.all_layers(m.layers)]
        twice = sorted({layer.name for layer in inner if id(layer) in direct})
        if twice:
            raise ValueError(
                f"Model {self.name!r}: layer(s) {twice} appear both in this model and inside a nested model; share "
                "layers within one graph instead"
            )

    @property
    def layers(self) -> list[Layer]:
        return self._layers

    @property
    def inputs(self) -> list[KerasTensor]:
        """The symbolic inputs, a flat list."""
        return self._require_graph("inputs").inputs

    @property
    def outputs(self) -> list[KerasTensor]:
        """The symbolic outputs, a flat list."""
        return self._require_graph("outputs").outputs

    @property
    def input(self):
        """The symbolic input(s) as given to the constructor (one tensor, a list or a dict)."""
        self._require_graph("input")
        return self._inputs_struct

    @property
    def output(self):
        """The symbolic output(s) as given to the constructor (one tensor, a list or a dict)."""
        self._require_graph("output")
        return self._outputs_struct

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @input_shape.setter
    def input_shape(self, value) -> None:  # Layer.__init__ sets it; a model's comes from its inputs
        pass

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_dtypes(self) -> list[str]:
        return [t.dtype for t in self.outputs]

    @property
    def takes_list_input(self) -> bool:
        return self._graph is not None and len(self._graph.inputs) > 1

    @property
    def _input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def _output_keys(self) -> list[str]:
        """Output names for losses, metrics and target dicts: the dict keys for dict outputs, else layer names."""
        if isinstance(self._outputs_struct, dict):
            return sorted(self._outputs_struct)
        return list(self.output_names)

    def _require_graph(self, what: str) -> graph_mod.Graph:
        if self._graph is None:
            raise AttributeError(
                f"{type(self).__name__} model {self.name!r} has no defined {what} yet: give its first layer "
                "input_shape=, start it with layers.Input(shape=...), call model.build(input_shape) or call it on data"
            )
        return self._graph

    @property
    def built(self) -> bool:
        return self._graph is not None

    @built.setter
    def built(self, value) -> None:  # Layer.__init__ sets it; a model's is derived from its graph
        pass

    def ensure_built(self, input_shape) -> None:
        self._require_graph("input shape")

    def build(self, input_shape=None) -> None:
        """A functional model is built when it is created (its inputs fix the shapes)."""

    def compute_output_shape(self, input_shape):
        """Output shape(s) for inputs of ``input_shape`` (checked against the model's inputs)."""
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) != len(self.inputs):
            raise ValueError(f"Model {self.name!r} takes {len(self.inputs)} input(s), got {len(shapes)}")
        for t, shape in zip(self.inputs, shapes):
            shape = tuple(shape)
            if len(shape) != len(t.shape) or any(a is not None and b is not None and a != b
                                                 for a, b in zip(shape[1:], t.shape[1:])):
                raise ValueError(
                    f"Model {self.name!r} expects input {t.name!r} of shape {graph_mod.format_shape(t.shape)}, but it "
                    f"was called on a tensor of shape {graph_mod.format_shape(shape)}"
                )
        batch = shapes[0][0]
        out = [(batch, *t.shape[1:]) for t in self.outputs]
        return out[0] if len(out) == 1 else out

    def compute_mask(self, x, mask):
        masks = self._output_masks
        if masks is None:
            return None
        return masks[0] if len(masks) == 1 else list(masks)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name (or position in ``model.layers``)."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{type(self).__name__} {self.name!r} has no layer named {name!r}; layers: "
                         f"{[layer.name for layer in self.layers]}")

    # ------------------------------------------------------------------ weights (the Layer protocol)
    @property
    def weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def weight_names(self) -> list[str]:
        return [n for layer in self.layers for n in layer.weight_names]

    @property
    def trainable_mask(self) -> list[bool]:
        return [self.trainable and t for layer in self.layers for t in layer.trainable_mask]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [w for w, t in zip(self.weights, self.trainable_mask) if t]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [w for w, t in zip(self.weights, self.trainable_mask) if not t]

    @property
    def trainable_weight_names(self) -> list[str]:
        return [n for n, t in zip(self.weight_names, self.trainable_mask) if t]

    @property
    def gradients(self) -> list:
        """The layers' gradients, aligned with ``weights`` (set by the last backward pass)."""
        return [g for layer in self.layers for g in layer.gradients]

    @gradients.setter
    def gradients(self, values) -> None:
        values = list(values)
        if not values and not self.__dict__.get("_layers"):
            return
        i = 0
        for layer in self.layers:
            n = len(layer.weights)
            layer.gradients = values[i:i + n]
            i += n

    def zero_gradients(self) -> None:
        for layer in self.layers:
            layer.zero_gradients()

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight, layer by layer in Keras's order (exchangeable with a Keras model)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: list) -> None:
        """Load every weight (copied, cast to each layer's dtype). All shapes are checked first: on any mismatch
        nothing changes."""
        self._require_built("set_weights")
        weights = list(weights)
        own = self.weights
        who = f"{type(self).__name__} {self.name!r}"
        if len(weights) != len(own):
            raise ValueError(f"{who}: set_weights expects {len(own)} arrays {[w.shape for w in own]}, got "
                             f"{len(weights)}")
        arrays = []
        for k, (name, target, value) in enumerate(zip(self.weight_names, own, weights)):
            try:
                value = np.asarray(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{who}: set_weights entry {k} ({name}) is not an array ({err})") from err
            if value.shape != target.shape:
                raise ValueError(f"{who}: set_weights entry {k} ({name}) must have shape {target.shape}, got "
                                 f"{value.shape}; no weight was changed")
            if value.dtype.kind not in "fiub":
                raise ValueError(f"{who}: set_weights entry {k} ({name}) must be numeric, got dtype {value.dtype}; no "
                                 "weight was changed")
            arrays.append(value)
        for target, value in zip(own, arrays):
            target[...] = value.astype(target.dtype, copy=False)

    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} is not built, so {what}() has nothing to work on: give the first "
                "layer input_shape=, start with layers.Input(shape=...), call model.build(shape) or call it on data"
            )

    # ------------------------------------------------------------------ calling (the Layer protocol)
    def __call__(self, x, training: bool = False, mask=None):
        if graph_mod.any_symbolic(x):
            return graph_mod.call_symbolic(self, x, training=training or None, mask=mask)
        y = self.forward(self.prepare_input(x), training=training, mask=mask)
        return self._pack(y if len(self.outputs) > 1 else [y], kind="call")

    def prepare_input(self, x):
        xs = self._input_arrays(x, "input")
        return xs if len(xs) > 1 else xs[0]

    def check_input(self, x) -> None:
        """Checked by ``_input_arrays`` (each input against its Input's shape)."""

    def forward(self, x, training: bool = False, mask=None):
        """The Layer protocol: the outputs (a list for several) for input array(s) ``x``; keeps the run."""
        xs = x if isinstance(x, list) and len(self.inputs) > 1 else [x]
        outs = self._forward_flat(xs, training, mask)
        return outs[0] if len(outs) == 1 else outs

    def _forward_flat(self, xs: list, training: bool, mask=None, fuse: bool = False) -> list:
        """The outputs for the input arrays ``xs``; ``fuse`` (predict) lets the graph run some layer pairs as one
        (:meth:`tinynn.graph.Graph.forward`)."""
        graph = self._ensure_graph_for(xs)
        masks = None if mask is None else (list(mask) if isinstance(mask, (list, tuple)) else [mask])
        run = graph.forward(xs, bool(training), masks, keep=False, fuse=fuse)
        self._run = run
        self._output_masks = [run.masks[s] for s in graph.output_slots]
        return [run.values[s] for s in graph.output_slots]

    def backward(self, dy):
        """The Layer protocol: given δ of each output (a list for several; None for zero), returns δ of each input
        (a list for several; None for an integer input) and sets ``gradients``."""
        graph, run = self._graph, self._run
        if run is None:
            raise ValueError(f"Model {self.name!r}: backward needs a forward call first")
        dys = list(dy) if len(graph.outputs) > 1 else [dy[0] if isinstance(dy, (list, tuple)) else dy]
        seeds = {s: d for s, d in zip(graph.output_slots, dys) if d is not None}
        need = graph.input_slots if self.input_gradient_needed else []
        grads = graph.backward(run, seeds, grad_slots=need)
        dxs = [self._input_gradient(grads[s], run.values[s]) for s in graph.input_slots]
        return dxs[0] if len(dxs) == 1 else dxs

    @staticmethod
    def _input_gradient(g, x):
        if np.asarray(x).dtype.kind not in "f":
            return None
        return np.zeros_like(x) if g is None else g

    def _ensure_graph_for(self, xs: list) -> graph_mod.Graph:
        return self._require_graph("graph")

    def _pack(self, outs: list, kind: str):
        """Outputs in the structure of ``model.output`` (a dict for dict outputs, one array for one output)."""
        struct = self._outputs_struct
        if isinstance(struct, dict):
            return dict(zip(sorted(struct), outs))
        if len(outs) == 1:
            return outs[0]
        return list(outs)

    # ------------------------------------------------------------------ vjp
    def vjp(self, x, output_gradients, wrt, training: bool = False):
        r"""Vector-Jacobian products of the model's outputs with respect to any tensors of its graph.

        For inputs ``x``, outputs ``y_k = f_k(x)`` and upstream gradients ``δy_k`` (one per output; None for an
        output that gets none), returns for each tensor ``t`` in ``wrt``

            vjp_t = Σ_k (∂y_k/∂t)ᵀ δy_k

        — backpropagation from ``δy`` down to ``t``, through the layers' own backward passes. ``t`` is a model
        input or the output of any layer of the model (``model.get_layer(name).output``). ``wrt`` is a list
        (a list is returned) or one tensor. A tensor no output depends on gets zeros; an integer input (token
        ids) gets None. The weights, the gradients the optimizer reads and the optimizer state are left
        untouched; ``training=False`` runs dropout in inference mode (stateful RNNs still advance their state,
        as in any call).
        """
        single = not isinstance(wrt, (list, tuple))
        wrt_list = [wrt] if single else list(wrt)
        xs = self._input_arrays_for(x, "vjp x")
        graph = self._ensure_graph_for(xs)
        who = f"{type(self).__name__} {self.name!r}"
        slots = []
        for k, t in enumerate(wrt_list):
            if not isinstance(t, KerasTensor):
                raise ValueError(f"{who}.vjp: wrt[{k}] must be a symbolic tensor of the model (an input or a layer's "
                                 f".output), got {type(t).__name__}")
            s = graph.slot_of.get(id(t))
            if s is None:
                h = t._keras_history
                src = f" (an output of {graph_mod.who(h.layer)})" if h is not None else ""
                raise ValueError(
                    f"{who}.vjp: wrt[{k}] {t!r}{src} is not a tensor of this model; pass one of its inputs "
                    f"{[i.name for i in graph.inputs]} or the output of one of its layers, e.g. "
                    f"model.get_layer({graph.weight_layers[-1].name!r}).output"
                )
            slots.append(s)
        dys = self._output_gradient_list(output_gradients, who)
        saved = [(layer, layer.__dict__.get("gradients")) for layer in graph_mod.all_layers(self.layers)]
        try:
            run = graph.forward(xs, bool(training))
            outs = [run.values[s] for s in graph.output_slots]
            seeds = {}
            for k, (d, y) in enumerate(zip(dys, outs)):
                if d is None:
                    continue
                d = np.asarray(d)
                if d.shape != np.shape(y) or d.dtype.kind not in "fiu":
                    raise ValueError(f"{who}.vjp: output_gradients[{k}] must be a real array of the output's shape "
                                     f"{np.shape(y)}, got shape {d.shape} and dtype {d.dtype}")
                seeds[graph.output_slots[k]] = d.astype(y.dtype, copy=False)
            only = graph.steps_between(slots, seeds)
            grads = graph.backward(run, seeds, grad_slots=[s for s in slots if s in graph.input_slots],
                                   only_steps=only, weight_gradients=False)
            result = []
            for s in slots:
                value = run.values[s]
                if s in graph.input_slots and np.asarray(value).dtype.kind != "f":
                    result.append(None)
                else:
                    result.append(np.zeros_like(value) if grads[s] is None else grads[s])
        finally:
            for layer, g in saved:
                if g is None:
                    layer.__dict__.pop("gradients", None)
                else:
                    layer.gradients = g
        return result[0] if single else result

    def _output_gradient_list(self, output_gradients, who) -> list:
        keys = self._output_keys
        n = len(keys)
        if isinstance(output_gradients, dict):
            unknown = [k for k in output_gradients if k not in keys]
            if unknown:
                raise ValueError(f"{who}.vjp: output_gradients has keys {unknown} that are not output names {keys}")
            return [output_gradients.get(k) for k in keys]
        if n == 1:
            if isinstance(output_gradients, (list, tuple)):
                if len(output_gradients) != 1:
                    raise ValueError(f"{who}.vjp: the model has 1 output, got {len(output_gradients)} output "
                                     "gradients")
                return list(output_gradients)
            return [output_gradients]
        if not isinstance(output_gradients, (list, tuple)) or len(output_gradients) != n:
            raise ValueError(f"{who}.vjp: the model has {n} outputs {keys}: pass a list of {n} output gradients "
                             "(None for an output that gets none) or a dict keyed by output name")
        return list(output_gradients)

    # ------------------------------------------------------------------ introspection and io
    def summary(self, print_fn=None, line_length: int | None = None) -> None:
        from .summary import summary_text

        (print_fn or print)(summary_text(self, line_length))

    def get_config(self) -> dict:
        """Keras 3's functional config: every layer with its ``inbound_nodes`` (the calls that made the graph),
        ``input_layers`` and ``output_layers`` as ``[layer name, node index, tensor index]``."""
        return functional_config.functional_config(self)

    @classmethod
    def from_config(cls, config: dict, layer_from_config=None) -> Model:
        """A model from :meth:`get_config`'s dict (tinynn layer configs; or Keras layer configs with
        ``layer_from_config`` mapping one ``{'class_name', 'config'}`` entry to a tinynn layer)."""
        return functional_config.model_from_functional_config(config, layer_from_config, model_class=cls)

    def get_compile_config(self) -> dict | None:
        """What ``compile`` was given, serialised: ``{'optimizer', 'loss', 'metrics'}``, and ``'loss_weights'``
        when given; None before compile. ``loss``, ``loss_weights`` and ``metrics`` keep the shape they were given
        in: one for every output, a list with one entry per output (None: an output without loss), or a dict
        keyed by output name. Metrics are stored by name."""
        if self.optimizer is None or self.loss is None:
            return None
        loss, loss_weights, metrics = self._compile_args
        config = {"optimizer": optimizers_mod.serialize(self.optimizer), "loss": _loss_config(loss),
                  "metrics": _metric_names(metrics if metrics is not None else [])}
        if loss_weights is not None:
            config["loss_weights"] = _plain_structure(loss_weights)
        return config

    def save(self, filepath, include_optimizer: bool = True) -> None:
        """Save config, weights (and optimizer state): ``.npz`` (tinynn's own), ``.keras`` or Keras 2 ``.h5``
        (:mod:`tinynn.saving`; atomic, no pickle)."""
        saving.save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath) -> None:
        saving.save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        saving.load_weights(self, filepath)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


class Sequential(Model):
    """A linear stack of layers, as ``keras.Sequential``: the special case of a functional model that is a chain.

    >>> model = Sequential([layers.Input(shape=(64,)), layers.Dense(32, activation="relu"), layers.Dense(10)])

    Once the input shape is known (an ``Input``, ``input_shape=`` on the first layer, ``build`` or the first
    batch) the chain is a graph: ``model.input``, ``model.output`` and every ``layer.output`` are symbolic
    tensors, so ``Model(inputs=model.input, outputs=[layer.output for layer in model.layers])`` works.
    """

    def __init__(self, layers: list | None = None, name: str | None = None, trainable: bool = True):
        Layer.__init__(self, name=name or unique_name("sequential"), trainable=trainable)
        self._init_training_state()
        self.input_layer: InputLayer | None = None
        self._input_tensor: KerasTensor | None = None
        self._chain: list = []  # the symbolic output of each layer, once the input shape is known
        self._predict_accepted: tuple | None = None  # see predict_on_batch
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ structure
    def add(self, layer) -> None:
        """Append a layer (or start the model with ``layers.Input``). A layer that cannot follow the current
        output leaves the model unchanged (the error names the layer and both shapes)."""
        if isinstance(layer, KerasTensor):
            h = layer._keras_history
            if h is None or not isinstance(h.layer, InputLayer):
                raise ValueError("Sequential.add: a symbolic tensor can only be added when it comes from layers.Input, "
                                 f"got {layer!r}")
            layer = h.layer
        if isinstance(layer, InputLayer):
            if self._layers or self.input_layer is not None:
                raise ValueError("Sequential: an Input can only be the first element of the model")
            self.input_layer = layer
            self._input_tensor = layer.output
            return
        if not isinstance(layer, Layer):
            raise ValueError(f"Sequential.add expects a tinynn layer, got {type(layer).__name__}: {layer!r}")
        if layer is self:
            raise ValueError(f"Sequential {self.name!r}: a model cannot be added to itself")
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"Sequential: layer {layer.name!r} was already added")
        input_layer = self.input_layer
        if not self._layers and input_layer is None and layer._input_shape_arg is not None:
            input_layer = InputLayer(shape=layer._input_shape_arg, batch_size=layer.batch_size)
        if input_layer is not None:
            start = self._chain[-1] if self._chain else input_layer.output
            out = layer(start)  # raises (naming the layer and the shapes) before anything changes
            self.input_layer, self._input_tensor = input_layer, input_layer.output
            self._layers.append(layer)
            self._chain.append(out)
            self._set_chain_graph()
        else:
            self._layers.append(layer)

    def pop(self) -> Layer:
        """Remove the last layer and return it."""
        if not self._layers:
            raise ValueError("Sequential.pop: the model has no layers")
        layer = self._layers.pop()
        if self._chain:
            self._chain.pop()
            if self._chain:
                self._set_chain_graph()
            else:
                self._graph = None
        return layer

    def _set_chain_graph(self) -> None:
        outputs = self._chain[-1]
        flat = outputs if isinstance(outputs, list) else [outputs]
        self._graph = graph_mod.Graph([self._input_tensor], flat, owner=f"Sequential {self.name!r}")
        self._check_no_layer_twice()
        self._inputs_struct = self._input_tensor
        self._outputs_struct = outputs
        self.output_names = [t._keras_history.layer.name for t in flat]
        if self.optimizer is not None and self.loss is not None:
            self._resolve_compile()

    @property
    def layers(self) -> list[Layer]:
        return self._layers

    @property
    def input(self):
        """The symbolic input of the chain (Keras 2's ``model.input``; Keras 3 answers only after a symbolic call)."""
        return self._require_graph("input").inputs[0]

    @property
    def output(self):
        """The symbolic output of the chain (a list when the last layer returns several arrays)."""
        self._require_graph("output")
        return self._outputs_struct

    def _build_from(self, input_shape: tuple, dtype=None) -> None:
        if self._graph is not None:
            return
        if not self._layers:
            raise ValueError(f"Sequential {self.name!r} has no layers")
        graph_input = InputLayer(batch_shape=tuple(input_shape), dtype=dtype)
        chain, x = [], graph_input.output
        for layer in self._layers:
            x = layer(x)
            chain.append(x)
        self._input_tensor, self._chain = graph_input.output, chain
        self._set_chain_graph()

    def build(self, input_shape: tuple | None = None) -> None:
        """Build every layer for inputs of ``input_shape`` (batch axis included, may be None)."""
        if input_shape is None:
            if self.input_layer is None:
                raise ValueError("Sequential.build: no input shape; pass input_shape or start with layers.Input")
            input_shape = self.input_layer.shape
        self._build_from(input_shape)

    def ensure_built(self, input_shape) -> None:
        if self._graph is None:
            self._build_from(tuple(input_shape))

    @property
    def built(self) -> bool:
        return bool(self._layers) and self._graph is not None and all(layer.built for layer in self._layers)

    @built.setter
    def built(self, value) -> None:
        pass

    @property
    def takes_list_input(self) -> bool:
        return False

    def output_shapes(self) -> list[tuple | None]:
        """Each layer's output shape (None where the model is not built yet)."""
        if self._graph is None:
            return [None] * len(self._layers)
        shapes = []
        for layer in self._layers:
            node = next(n for n in layer._inbound_nodes if any(n is m for m in self._graph.nodes))
            shapes.append([t.shape for t in node.output_tensors] if node.multi_output else node.output_tensors[0].shape)
        return shapes

    def compute_output_shape(self, input_shape):
        if self._graph is None:
            self._build_from(tuple(input_shape))
        t = self._graph.inputs[0]
        shape = tuple(input_shape)
        if len(shape) != len(t.shape) or any(a is not None and b is not None and a != b
                                             for a, b in zip(shape[1:], t.shape[1:])):
            raise ValueError(f"Sequential {self.name!r} expects input of shape {graph_mod.format_shape(t.shape)}, "
                             f"but it was called on a tensor of shape {graph_mod.format_shape(shape)}")
        out = [(shape[0], *o.shape[1:]) for o in self._graph.outputs]
        return out[0] if len(out) == 1 else out

    # ------------------------------------------------------------------ calling
    def __call__(self, x, training: bool = False, mask=None):
        if graph_mod.any_symbolic(x):
            return graph_mod.call_symbolic(self, x, training=training or None, mask=mask)
        y = self.forward(self._check_model_input(x), training=training, mask=mask)
        return y if not isinstance(y, list) else self._pack(y, kind="call")

    def prepare_input(self, x):
        return self._check_model_input(x)

    def forward(self, x, training: bool = False, mask=None):
        outs = self._forward_flat([self._check_model_input(x)], training, mask)
        return outs[0] if len(outs) == 1 else outs

    def _ensure_graph_for(self, xs: list) -> graph_mod.Graph:
        if self._graph is None:
            self._build_from((None, *np.shape(xs[0])[1:]))
        return self._graph

    def predict_on_batch(self, x):
        """The model's output for one batch ``x``. An array with the shape (after the batch axis) and dtype of an
        input that this call accepted before, for the same graph and Input, and a non-empty batch, goes straight to
        the graph: the model-input checks it skips depend on nothing else, so they would pass again (the layers
        still check their own inputs). Anything else is converted and checked in full."""
        graph, seen = self._graph, self.__dict__.get("_predict_accepted")
        if (type(x) is np.ndarray and seen is not None and seen[0] is graph and seen[1] is self.input_layer
                and x.ndim and x.shape[0] and x.shape[1:] == seen[2] and x.dtype == seen[3]):
            return self._pack(self._forward_flat([x], False, fuse=True), kind="predict")
        out = super().predict_on_batch(x)
        if type(x) is np.ndarray and x.dtype != object and x.ndim:  # taken as is and checked
            self._predict_accepted = (self._graph, self.input_layer, x.shape[1:], x.dtype)
        return out

    def _input_arrays_for(self, x, what):
        xs = [self._check_model_input(x, what)]
        self._ensure_graph_for(xs)
        return xs

    def _check_model_input(self, x, what: str = "input"):
        if not self._layers:
            raise ValueError(f"Sequential {self.name!r} has no layers")
        if type(x) is not np.ndarray or x.dtype == object or x.ndim == 0:  # an array passes as_array unchanged
            label = f"Sequential {self.name!r} predict input" if what.startswith("predict") else f"{what} x"
            x = data_utils.as_array(x, label if what != "input" else f"Sequential {self.name!r} input")
        if x.shape[0] == 0:
            raise ValueError(f"Sequential {self.name!r}: received an empty batch (input shape {x.shape})")
        if self.input_layer is not None:
            expected = self.input_layer.shape[1:]
            if x.ndim != len(expected) + 1 or any(e is not None and e != a for e, a in zip(expected, x.shape[1:])):
                raise ValueError(
                    f"Sequential {self.name!r} expects input of shape (batch, {', '.join(map(str, expected))}) "
                    f"-> (None, *{expected}), got {x.shape}"
                )
        return x

    def _pack(self, outs: list, kind: str):
        if len(outs) == 1:
            return outs[0]
        return tuple(outs) if kind == "predict" else list(outs)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        cfg = {"name": self.name, "layers": [serialize(layer) for layer in self._layers]}
        if self.input_layer is not None:
            cfg["input_shape"] = list(self.input_layer.shape_arg)
            cfg["batch_size"] = self.input_layer.batch_size
        elif self.built:
            cfg["input_shape"] = list(self._graph.inputs[0].shape[1:])
        return cfg

    @classmethod
    def from_config(cls, cfg: dict, layer_from_config=None) -> Sequential:
        model = cls(name=cfg.get("name"))
        if cfg.get("input_shape") is not None:
            model.add(InputLayer(shape=tuple(cfg["input_shape"]), batch_size=cfg.get("batch_size")))
        make = layer_from_config or deserialize
        for layer_cfg in cfg["layers"]:
            model.add(make(layer_cfg))
        return model


def _loss_config(loss):
    """A loss as a serialised dict, or one per output (a list with None for no loss, or a dict by output)."""
    if isinstance(loss, (list, tuple)):
        return [None if item is None else losses_mod.serialize(losses_mod.get(item)) for item in loss]
    if isinstance(loss, dict) and not compile_utils.is_loss_config(loss):
        return {k: None if item is None else losses_mod.serialize(losses_mod.get(item)) for k, item in loss.items()}
    return losses_mod.serialize(losses_mod.get(loss))


def _metric_names(metrics):
    """Metric specs by name, in the structure given (a list, a list per output, a dict by output)."""
    if isinstance(metrics, (list, tuple)):
        return [_metric_names(m) for m in metrics]
    if isinstance(metrics, dict):
        return {k: _metric_names(m) for k, m in metrics.items()}
    return metrics if metrics is None or isinstance(metrics, str) else metrics.name


def _plain_structure(value):
    if isinstance(value, (list, tuple)):
        return [_plain_structure(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_structure(v) for k, v in value.items()}
    return None if value is None else float(value)


saving.register_model_class(Sequential)
saving.register_model_class(Model)
saving.register_model_class(Model, "Functional")  # Keras's name, which nested models carry in configs
saving.register_model_translator(keras_functional.TRANSLATOR)
functional_config.register_model_classes(Model, Sequential)


def load_model(filepath, compile: bool = True) -> Model:
    """Load a model saved with ``model.save`` (config, weights and optimizer state) or by Keras."""
    return saving.load_model(filepath, compile=compile)
