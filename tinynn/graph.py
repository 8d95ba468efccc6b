r"""A graph is layers plus an order: symbolic tensors, nodes, and the executor Model and Sequential share.

Calling a layer on a symbolic tensor (:class:`KerasTensor`, what ``layers.Input`` returns) computes nothing:
it builds the layer for the tensor's shape, works out the output shape, and records a :class:`Node` —
(layer, input tensors, call kwargs, output tensors) — in ``layer._inbound_nodes``. Each tensor remembers the
node that made it (``tensor._keras_history = (layer, node_index, tensor_index)``, as in Keras), so the
outputs of a model lead back through the nodes to its inputs.

:func:`map_graph` walks that history from the outputs back to the inputs (Keras's ``map_graph``: the same
depth-first order, the same layer order, so ``model.layers`` and ``model.get_weights()`` list what Keras
lists) and :class:`Graph` turns it into a plan of steps over numbered slots, one slot per tensor.

Forward (``Graph.forward``): every step, in topological order, calls its layer on the arrays of its input
slots, ``y = layer(x, training, mask, initial_state=...)``, and stores ``y`` and its mask
(``layer.compute_mask``) in its output slots.

Backward (``Graph.backward``), given upstream gradients ``δy`` for some slots: the steps run in reverse,
each calling its layer's hand-written ``backward``, and a tensor read by several steps receives the **sum**
of their gradients::

    δt = Σ_{steps s that read t}  (∂ s / ∂ t)ᵀ δ(outputs of s)

A layer used by several nodes (a shared layer) has one set of weights, so its weight gradient is the sum
over its nodes, ``δθ = Σ_nodes δθ_node``. Its backward needs the cache of *that* node's forward: after each
forward of a shared layer the executor snapshots the attributes the call left on the layer (and on the
layers inside it: a Bidirectional's two RNNs, a nested model's layers) and restores them before that
node's backward — one cache per node, without rewriting any layer.

Multi-array protocol (what the executor relies on): a layer that takes several inputs gets a list and its
``backward`` returns a list of dx (None for an input without gradient); a layer with several outputs
returns a list and its ``backward`` takes a list of upstream gradients (None for an output that got none);
recurrent layers called with ``initial_state`` return ``(dx, [δstate, ...])`` from ``backward``.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .kernels.parallel import kernel_entry

_TENSOR_IDS = itertools.count()


class KerasHistory(NamedTuple):
    """Where a symbolic tensor comes from: ``layer._inbound_nodes[node_index].output_tensors[tensor_index]``."""

    layer: Any
    node_index: int
    tensor_index: int

    @property
    def operation(self):  # Keras's name for the layer
        return self.layer


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class KerasTensor:
    """A symbolic tensor: a shape (``None`` for unknown sizes, the batch axis first), a dtype and the node that
    made it. It holds no data; ``Model(inputs, outputs)`` turns the graph between such tensors into a model."""

    __slots__ = ("shape", "dtype", "name", "_keras_history", "__weakref__")

    def __init__(self, shape: Sequence, dtype: str, name: str | None = None, history: KerasHistory | None = None):
        self.shape = tuple(None if s is None else int(s) for s in shape)
        self.dtype = str(dtype)
        n = next(_TENSOR_IDS)
        self.name = name or ("keras_tensor" if n == 0 else f"keras_tensor_{n}")
        self._keras_history = history

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def node(self) -> Node | None:
        h = self._keras_history
        return None if h is None else h.layer._inbound_nodes[h.node_index]

    def __repr__(self) -> str:
        return (f"<KerasTensor shape={format_shape(self.shape)}, dtype={self.dtype}, sparse=False, ragged=False, "
                f"name={self.name}>")

    def _no_value(self, *args, **kwargs):
        raise ValueError(
            f"{self!r} is symbolic: it has no value. Build a model from it (tinynn.Model(inputs, outputs)) and call "
            "model.predict(x) or model(x) on arrays"
        )

    __array__ = __bool__ = __float__ = __int__ = __len__ = __iter__ = _no_value


class Node:
    """One call of a layer on symbolic tensors.

    ``args`` is the first argument as given (one tensor, or a list of tensors for a layer with several inputs),
    ``kwargs`` the other call arguments (``initial_state`` tensors, a ``mask`` tensor, ``training``);
    ``input_tensors`` lists every tensor of both, in that order, and ``output_tensors`` the outputs.
    """

    __slots__ = ("layer", "args", "kwargs", "input_tensors", "output_tensors", "multi_output", "is_input")

    def __init__(self, layer, args, kwargs: dict, output_tensors: list[KerasTensor], multi_output: bool,
                 is_input: bool = False):
        self.layer, self.args, self.kwargs = layer, args, dict(kwargs)
        self.input_tensors = [t for t in flatten(args) + flatten(list(self.kwargs.values())) if is_symbolic(t)]
        self.output_tensors = list(output_tensors)
        self.multi_output, self.is_input = multi_output, is_input

    @property
    def parent_nodes(self) -> list[Node]:
        return [t.node for t in self.input_tensors if t.node is not None]

    @property
    def outputs(self):
        return self.output_tensors if self.multi_output else self.output_tensors[0]

    def __repr__(self) -> str:
        return f"<Node {self.layer.name}[{self.layer._inbound_nodes.index(self)}]>"


# --------------------------------------------------------------------------------------------- structures


def flatten(value) -> list:
    """Lists, tuples and dicts (values in sorted-key order, as Keras's ``tree.flatten``) to a flat list."""
    if isinstance(value, dict):
        return [v for k in sorted(value) for v in flatten(value[k])]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in flatten(item)]
    return [value]


def is_symbolic(x) -> bool:
    return isinstance(x, KerasTensor)


def any_symbolic(*values) -> bool:
    """True if any of the values (arrays, tensors, lists of them) is a symbolic tensor."""
    for value in values:
        if value is None or type(value) is np.ndarray:  # the common case, first: layer(x) on data
            continue
        if isinstance(value, KerasTensor):
            return True
        if isinstance(value, (list, tuple, dict)) and any(isinstance(v, KerasTensor) for v in flatten(value)):
            return True
    return False


def inbound_nodes(layer) -> list[Node]:
    nodes = layer.__dict__.get("_inbound_nodes")
    if nodes is None:
        nodes = layer.__dict__["_inbound_nodes"] = []
    return nodes


def layer_attribute(layer, attr: str):
    """``layer.input`` / ``layer.output``: the input (output) of the layer's first node, as Keras 3 returns it
    (a tensor, or a list for several); AttributeError for a layer never called on symbolic tensors."""
    nodes = inbound_nodes(layer)
    if not nodes:
        raise AttributeError(f"The layer {layer.name} has never been called and thus has no defined {attr}.")
    node = nodes[0]
    if attr == "output":
        return node.outputs
    return node.args


def who(layer) -> str:
    return f"Layer {layer.name!r} ({type(layer).__name__})"


def _describe_tensors(args) -> str:
    tensors = flatten(args)
    parts = []
    for t in tensors:
        h = t._keras_history
        src = f" from {who(h.layer)}" if h is not None else ""
        parts.append(f"{format_shape(t.shape)}{src}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------- symbolic calls


def make_input(input_layer, dtype: str) -> KerasTensor:
    """The symbolic tensor of an ``InputLayer`` (its node has no inputs)."""
    tensor = KerasTensor(input_layer.shape, dtype, name=input_layer.name)
    nodes = inbound_nodes(input_layer)
    tensor._keras_history = KerasHistory(input_layer, len(nodes), 0)
    nodes.append(Node(input_layer, [], {}, [tensor], multi_output=False, is_input=True))
    return tensor


def _standardize_args(layer, x):
    """One tensor, or a list of tensors for a layer that takes several inputs (Keras's error otherwise)."""
    if isinstance(x, (list, tuple)):
        items = list(x)
        for item in items:
            if not is_symbolic(item):
                raise ValueError(
                    f"{who(layer)} was called on a list mixing symbolic tensors and {type(item).__name__}: every "
                    "input of a layer in a functional model must be a symbolic tensor (from layers.Input or a layer)"
                )
        if getattr(layer, "takes_list_input", False):
            return items
        if len(items) == 1:
            return items[0]
        raise ValueError(
            f'Layer "{layer.name}" expects 1 input(s), but it received {len(items)} input tensors. Inputs received: '
            f"{items}. ({type(layer).__name__} takes one tensor; a layer returning several arrays, such as an RNN "
            "with return_state=True, needs the functional API to use them)"
        )
    if getattr(layer, "takes_list_input", False) and getattr(layer, "requires_list_input", False):
        raise ValueError(f"{who(layer)} expects a list of input tensors, got one tensor of shape "
                         f"{format_shape(x.shape)}")
    return x


def _shapes(args):
    return [t.shape for t in args] if isinstance(args, list) else args.shape


def check_symbolic_input(layer, shape) -> None:
    """The input-spec check of ``layer.check_input``, on a shape with None for unknown sizes."""
    spec = getattr(layer, "input_spec", None)
    if spec is None or isinstance(shape, list):
        return
    rank = len(shape)
    if spec.ndim is not None and rank != spec.ndim:
        raise ValueError(f"{who(layer)} expects input of rank {spec.ndim}, but it was called on a tensor of shape "
                         f"{format_shape(shape)}")
    if spec.min_ndim is not None and rank < spec.min_ndim:
        raise ValueError(f"{who(layer)} expects input of rank >= {spec.min_ndim}, but it was called on a tensor of "
                         f"shape {format_shape(shape)}")
    for axis, size in spec.axes.items():
        if -rank <= axis < rank and size is not None and shape[axis] is not None and shape[axis] != size:
            raise ValueError(
                f"{who(layer)} expects input with axis {axis} of size {size} (it was built for that), but it was "
                f"called on a tensor of shape {format_shape(shape)}"
            )


def _check_initial_state(layer, states, batch) -> None:
    n = getattr(layer, "n_states", None)
    if n is None and hasattr(layer, "forward_layer"):
        n = layer.forward_layer.n_states + layer.backward_layer.n_states
    units = getattr(layer, "units", None) or getattr(getattr(layer, "forward_layer", None), "units", None)
    if n is None:
        raise ValueError(f"{who(layer)} takes no initial_state")
    if len(states) != n:
        raise ValueError(f"{who(layer)} expects initial_state to be a list of {n} tensor(s), got {len(states)}")
    for k, s in enumerate(states):
        if not is_symbolic(s):
            raise ValueError(f"{who(layer)}: in a functional model initial_state[{k}] must be a symbolic tensor, "
                             f"got {type(s).__name__}")
        if len(s.shape) != 2 or (s.shape[-1] is not None and s.shape[-1] != units):
            raise ValueError(f"{who(layer)}: initial_state[{k}] must have shape (batch, {units}), got a tensor of "
                             f"shape {format_shape(s.shape)}")


def _is_shape_list(shape) -> bool:
    return isinstance(shape, list) or (isinstance(shape, tuple) and bool(shape) and isinstance(shape[0], tuple))


def call_symbolic(layer, x, **kwargs):
    """``layer(x)`` on symbolic tensors: build the layer, infer the output shape(s), record a node.

    Returns one symbolic tensor, or a list for a layer with several outputs. Errors (incompatible shapes,
    wrong ranks, a list given to a one-input layer) are ValueErrors naming the layer and the shapes, raised
    here, while the graph is being built.
    """
    args = _standardize_args(layer, x)
    call_kwargs = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key == "training":
            call_kwargs[key] = bool(value)
        elif key == "initial_state":
            states = list(value) if isinstance(value, (list, tuple)) else [value]
            _check_initial_state(layer, states, None)
            call_kwargs[key] = states
        elif key == "mask":
            if not all(is_symbolic(m) or m is None for m in flatten(value)):
                raise ValueError(f"{who(layer)}: in a functional model mask= must be a symbolic tensor")
            call_kwargs[key] = value
        else:
            raise ValueError(f"{who(layer)} got an unexpected call argument {key!r} in a functional model")
    in_shape = _shapes(args)
    try:
        layer.ensure_built(in_shape)
        check_symbolic_input(layer, in_shape)
        out_shape = layer.compute_output_shape(in_shape)
    except ValueError as err:
        message = str(err)
        if layer.name not in message:
            message = f"{who(layer)}: {message}"
        raise ValueError(f"{message} (called on {_describe_tensors(args)})") from None
    multi = _is_shape_list(out_shape)
    shapes = list(out_shape) if multi else [out_shape]
    dtypes = _output_dtypes(layer, len(shapes))
    nodes = inbound_nodes(layer)
    outputs = [KerasTensor(s, d, history=KerasHistory(layer, len(nodes), i)) for i, (s, d) in
               enumerate(zip(shapes, dtypes))]
    nodes.append(Node(layer, args, call_kwargs, outputs, multi_output=multi))
    return outputs if multi else outputs[0]


def _output_dtypes(layer, n: int) -> list[str]:
    dtypes = getattr(layer, "output_dtypes", None)
    if dtypes is not None:
        return list(dtypes)
    return [layer.dtype] * n


# --------------------------------------------------------------------------------------------- the graph


def _build_map(inputs: list[KerasTensor], outputs: list[KerasTensor]):
    """Keras's ``_build_map``: nodes from inputs to outputs (depth-first), and each layer's first visit index."""
    finished, in_progress = set(), set()
    ordered: list[Node] = []
    layer_index: dict[int, int] = {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor: KerasTensor) -> None:
        h = tensor._keras_history
        if h is None:
            return
        node = h.layer._inbound_nodes[h.node_index]
        if id(node) in finished:
            return
        if not node.is_input and id(tensor) in input_ids:
            finished.add(id(node))
            return
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor!r} from {who(h.layer)} is part of a cycle")
        layer_index.setdefault(id(h.layer), len(layer_index))
        in_progress.add(id(node))
        if not node.is_input:
            for t in node.input_tensors:
                visit(t)
        finished.add(id(node))
        in_progress.discard(id(node))
        ordered.append(node)

    for out in outputs:
        visit(out)
    return ordered, layer_index


def map_graph(inputs: list[KerasTensor], outputs: list[KerasTensor], owner: str):
    """(nodes in execution order, layers in Keras's order) of the graph from ``inputs`` to ``outputs``.

    Raises a ValueError naming the layer and shapes for a graph that cannot be computed from the inputs (a
    disconnected output), an input no output depends on, or two layers with the same name.
    """
    ordered, layer_index = _build_map(inputs, outputs)
    in_graph = {id(n) for n in ordered}
    node_depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    layers_by_id = {}
    for node in reversed(ordered):
        depth = node_depth.setdefault(id(node), 0)
        depth = max(depth, layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        layers_by_id[id(node.layer)] = node.layer
        node_depth[id(node)] = depth
        for parent in node.parent_nodes:
            if id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    unused = [t for t in inputs if t._keras_history is not None and id(t._keras_history.layer) not in layer_depth
              and t.node.is_input]
    if unused:
        desc = ", ".join(f"{t.name!r} of shape {format_shape(t.shape)}" for t in unused)
        raise ValueError(
            f"{owner}: input {desc} is not connected to any output: no output of the model depends on it. Remove it "
            "from inputs, or use it in the computation of an output"
        )
    by_depth = collections.defaultdict(list)
    for lid, depth in layer_depth.items():
        by_depth[depth].append(layers_by_id[lid])
    layers = []
    for depth in sorted(by_depth, reverse=True):
        layers.extend(sorted(by_depth[depth], key=lambda layer: layer_index.get(id(layer), -1)))
    # every tensor a node reads must be computable from the inputs
    computable = {id(t) for t in inputs}
    accessed = []
    nodes_by_depth = collections.defaultdict(list)
    for node in ordered:
        nodes_by_depth[node_depth[id(node)]].append(node)
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            for t in node.input_tensors:
                if id(t) not in computable:
                    raise ValueError(
                        f"{owner}: graph disconnected: cannot find parent for tensor {t!r} (shape "
                        f"{format_shape(t.shape)}) at {who(node.layer)}. It is not computed from the model's inputs "
                        f"{[f'{i.name} {format_shape(i.shape)}' for i in inputs]}; the following layers were "
                        f"accessed without issue: {accessed}"
                    )
            accessed.append(node.layer.name)
            if not node.is_input:  # an Input that is not one of the model's inputs computes nothing
                computable.update(id(t) for t in node.output_tensors)
    for out in outputs:
        if id(out) not in computable:
            raise ValueError(f"{owner}: output {out!r} is not computed from the model's inputs")
    names = [layer.name for layer in layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{owner}: the layer name(s) {duplicates} are used more than once; every layer of a model "
                         "needs a unique name")
    execution = [n for n in ordered if not n.is_input]
    return execution, layers, nodes_by_depth


class _Step:
    """One node of the plan: which slots it reads and writes."""

    __slots__ = ("node", "layer", "args", "multi_in", "states", "mask", "outs", "multi_out", "training", "shared",
                 "index", "simple", "arg", "out", "data_only")

    def __init__(self, node: Node, slot_of: dict, shared: bool, index: int):
        self.node, self.layer, self.index = node, node.layer, index
        self.multi_in = isinstance(node.args, list)
        self.args = [slot_of[id(t)] for t in node.args] if self.multi_in else [slot_of[id(node.args)]]
        states = node.kwargs.get("initial_state")
        self.states = None if states is None else [slot_of[id(t)] for t in states]
        mask = node.kwargs.get("mask")
        if mask is None:
            self.mask = None
        elif isinstance(mask, list):
            self.mask = [None if m is None else slot_of[id(m)] for m in mask]
        else:
            self.mask = slot_of[id(mask)]
        self.outs = [slot_of[id(t)] for t in node.output_tensors]
        self.multi_out = node.multi_output
        self.training = node.kwargs.get("training")
        self.shared = shared
        # the common case, run by a short path: one input, one output, nothing else
        self.simple = (not self.multi_in and not self.multi_out and self.states is None and self.mask is None
                       and self.training is None and not shared)
        self.arg, self.out = self.args[0], self.outs[0]
        self.data_only = False  # set by Graph: every input is a graph input


class Run:
    """What one forward pass left for the backward pass: the arrays and masks of every slot, the per-node
    snapshots of shared layers, the logits of outputs whose loss reads them."""

    __slots__ = ("values", "masks", "snapshots", "logits", "training", "private")

    def __init__(self, n_slots: int, training: bool, private: bool = False):
        self.values: list = [None] * n_slots
        self.masks: list = [None] * n_slots
        self.snapshots: dict = {}
        self.logits: dict = {}
        self.training = training
        #: a chain's run that kept only its input and output: no array between two layers left the model, so the
        #: backward may write over one that its layers no longer need (:meth:`Graph._backward_chain`)
        self.private = private


class Graph:
    """The executable form of the graph between ``inputs`` and ``outputs``."""

    def __init__(self, inputs: list[KerasTensor], outputs: list[KerasTensor], owner: str):
        self.inputs, self.outputs = list(inputs), list(outputs)
        nodes, self.layers, self.nodes_by_depth = map_graph(self.inputs, self.outputs, owner)
        self.nodes = nodes
        slot_of: dict[int, int] = {}
        self.tensors: list[KerasTensor] = []

        def slot(t: KerasTensor) -> int:
            if id(t) not in slot_of:
                slot_of[id(t)] = len(self.tensors)
                self.tensors.append(t)
            return slot_of[id(t)]

        for t in self.inputs:
            slot(t)
        for node in nodes:
            for t in node.input_tensors + node.output_tensors:
                slot(t)
        for t in self.outputs:
            slot(t)
        self.slot_of = slot_of
        self.n_slots = len(self.tensors)
        counts = collections.Counter(id(n.layer) for n in nodes)
        self.steps = [_Step(n, slot_of, counts[id(n.layer)] > 1, i) for i, n in enumerate(nodes)]
        self.input_slots = [slot_of[id(t)] for t in self.inputs]
        self.output_slots = [slot_of[id(t)] for t in self.outputs]
        self.producer = {s: step for step in self.steps for s in step.outs}
        for st in self.steps:
            st.data_only = all(a in self.input_slots for a in st.args) and not st.states
            # the layer's background warm-up skips its input gradient only if no graph ever needs it
            # (tinynn.kernels.warmup.needs_input_gradient)
            st.layer.warmup_reads_only_data = st.data_only and getattr(st.layer, "warmup_reads_only_data", True)
        self._reversed_steps = self.steps[::-1]
        last = {id(st.layer): st.index for st in self.steps if st.shared}
        self._last_shared_steps = sorted(last.values())
        # a chain (one input, each step reading the previous step's output, one output): Sequential's shape, run
        # by a tight loop over the layers that keeps only what training needs
        self.is_chain = (len(self.inputs) == 1 and len(self.outputs) == 1 and bool(self.steps)
                         and all(st.simple for st in self.steps)
                         and all(st.arg == (self.input_slots[0] if k == 0 else self.steps[k - 1].out)
                                 for k, st in enumerate(self.steps))
                         and self.steps[-1].out == self.output_slots[0])
        self._chain_layers = [st.layer for st in self.steps]
        # per chain layer: (shape, dtype, input_spec, layer dtype) of an input it accepted before, if its input
        # handling is the base Layer's (see _forward_chain); None until then
        self._chain_accepted: list = [None] * len(self.steps)
        self._chain_plain: list | None = None
        self._chain_pooled: list | None = None  # see _pooled_pairs
        self._chain_feeds: list | None = None  # see _feeding_pairs
        seen = set()
        self.weight_layers = []
        for st in self.steps:
            if id(st.layer) not in seen:
                seen.add(id(st.layer))
                self.weight_layers.append(st.layer)


    def slot(self, tensor: KerasTensor, what: str = "tensor") -> int:
        s = self.slot_of.get(id(tensor))
        if s is None:
            raise ValueError(f"{what} {tensor!r} is not a tensor of this model")
        return s

    # --------------------------------------------------------------------------------- forward
    @kernel_entry  # BLAS on one thread per core, subnormals flushed (tinynn.kernels.parallel.kernel_scope)
    def forward(self, xs: Sequence[np.ndarray], training: bool, masks: Sequence | None = None,
                want_logits: Iterable[int] = (), keep: bool = True, fuse: bool = False) -> Run:
        """Run every step on the input arrays ``xs`` (one per model input); returns the :class:`Run`.

        ``keep`` False (training, predict): a chain keeps only its output (the layers cache what backward needs).
        ``fuse`` (predict: no backward follows): a chain may run a layer and the next one as one call (a Conv2D or
        Conv1D and the global average pooling after it: ``forward_pooled``); neither keeps a forward for a backward.
        """
        if self.is_chain and not keep:
            return self._forward_chain(xs[0], training, None if masks is None else masks[0], want_logits,
                                       fuse and not training)  # fmt: skip
        run = Run(self.n_slots, training)
        values, out_masks = run.values, run.masks
        for k, s in enumerate(self.input_slots):
            values[s] = xs[k]
            if masks is not None:
                out_masks[s] = masks[k]
        want = set(want_logits)
        for st in self.steps:
            if st.simple:
                layer, a = st.layer, st.arg
                x, m = values[a], out_masks[a]
                values[st.out] = layer(x, training=training, mask=m)
                out_masks[st.out] = layer.compute_mask(x, m)
                if want and st.index in want:
                    run.logits[st.index] = layer.logits
                continue
            if st.multi_in:
                x = [values[a] for a in st.args]
                m = [out_masks[a] for a in st.args]
                if all(v is None for v in m):
                    m = None
            else:
                x = values[st.args[0]]
                m = out_masks[st.args[0]]
            if st.mask is not None:
                if isinstance(st.mask, list):
                    m = [None if s is None else values[s] for s in st.mask]
                else:
                    m = values[st.mask]
            layer = st.layer
            tr = training if st.training is None else st.training
            if st.states is None:
                y = layer(x, training=tr, mask=m)
            else:
                y = layer(x, training=tr, mask=m, initial_state=[values[s] for s in st.states])
            ym = layer.compute_mask(x, m)
            if st.multi_out:
                if isinstance(y, dict):  # a nested model with dict outputs: Keras's flat (sorted-key) order
                    y = flatten(y)
                ym = list(ym) if isinstance(ym, (list, tuple)) else [ym] * len(st.outs)
                for s, v, mk in zip(st.outs, y, ym):
                    values[s], out_masks[s] = v, mk
            else:
                values[st.outs[0]], out_masks[st.outs[0]] = y, ym
            if st.index in want:
                run.logits[st.index] = layer.logits
            if st.shared:
                run.snapshots[st.index] = capture_state(layer)
        return run

    def _pooled_pairs(self) -> list[bool]:
        """Per chain layer: whether it and the next one may run as one in predict (its ``forward_pooled``); in
        training, such a pair's pooling hands a layer with ``accepts_broadcast_dy`` its dx as a broadcast view."""
        if self._chain_pooled is None:
            layers = self._chain_layers
            self._chain_pooled = [hasattr(layer, "forward_pooled") and k + 1 < len(layers)
                                  and layer.pools_with(layers[k + 1]) for k, layer in enumerate(layers)]  # fmt: skip
        return self._chain_pooled

    def _feeding_pairs(self) -> list[bool]:
        """Per chain layer: whether in predict and training it may hand its work to the next one (its
        ``forward_into``: an Embedding and the Conv1D after it), unless that one pools with the layer after it."""
        if self._chain_feeds is None:
            layers, pooled = self._chain_layers, self._pooled_pairs()
            self._chain_feeds = [hasattr(layer, "forward_into") and k + 1 < len(layers) and not pooled[k + 1]
                                 and layer.feeds(layers[k + 1]) for k, layer in enumerate(layers)]  # fmt: skip
        return self._chain_feeds

    def _forward_chain(self, x, training: bool, mask, want_logits, fuse: bool = False) -> Run:
        """Sequential's loop. A layer whose ``__call__`` / ``prepare_input`` / ``check_input`` / ``compute_mask``
        are the base Layer's, given an array of the same shape and dtype as an input it accepted before (its
        ``input_spec`` unchanged) and no mask, is not converted and checked again: those checks depend on nothing
        else, so they would pass again; its ``forward`` is called with the input marked as checked."""
        run = Run(self.n_slots, training, private=True)
        run.values[self.input_slots[0]], run.masks[self.input_slots[0]] = x, mask
        plain = self._chain_plain
        if plain is None:
            plain = self._chain_plain = [_plain_input_handling(layer) for layer in self._chain_layers]
        accepted = self._chain_accepted
        pooled = self._pooled_pairs() if fuse else None
        feeds = self._feeding_pairs() if fuse or training else None  # training: both layers keep their backward
        skip = -1
        for k, layer in enumerate(self._chain_layers):
            if k == skip:
                continue
            if pooled is not None and pooled[k] and mask is None:
                y = layer.forward_pooled(x, self._chain_layers[k + 1])
                if y is not None:  # the next layer's output
                    x, skip = y, k + 1
                    continue
            if feeds is not None and feeds[k] and mask is None:
                y = layer.forward_into(x, self._chain_layers[k + 1], training=training)
                if y is not None:  # the next layer's output
                    x, skip = y, k + 1
                    continue
            if mask is None and plain[k] and type(x) is np.ndarray:
                seen = accepted[k]
                if (seen is not None and x.shape == seen[0] and x.dtype == seen[1] and layer.input_spec is seen[2]
                        and layer.dtype is seen[3]):
                    layer._checked_input = x
                    x = layer.forward(x, training=training, mask=None)
                    continue
                y = layer(x, training=training, mask=None)
                if x.dtype == layer.dtype:  # taken as is (prepare_input made no copy) and checked
                    accepted[k] = (x.shape, x.dtype, layer.input_spec, layer.dtype)
                x = y
                continue
            y = layer(x, training=training, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = y
        out = self.output_slots[0]
        run.values[out], run.masks[out] = x, mask
        for index in want_logits:
            run.logits[index] = self.steps[index].layer.logits
        return run

    def _backward_chain(self, seeds: dict, logit_seeds: dict | None, need_input: bool, private: bool) -> list:
        """Sequential's loop: each layer's backward on the previous one's dx; the first layer skips its dx unless
        the input's gradient is wanted; a layer returning None (integer input) ends the pass. For a ``private`` run
        (:attr:`Run.private`) a layer with ``backward_through`` (a max pooling) may run its backward and the layer
        below's as one (:meth:`tinynn.layers.pooling2d.MaxPooling2D.backward_through`)."""
        steps = self.steps
        last = steps[-1]
        dz = logit_seeds.get(last.index) if logit_seeds else None
        dy = seeds.get(last.out)
        reached = len(steps)
        first = steps[0].layer
        if not need_input:
            first.input_gradient_needed = False
        pooled = self._pooled_pairs()
        through = [hasattr(st.layer, "backward_through") for st in steps] if private else None
        skip = -1
        try:
            for k in range(len(steps) - 1, -1, -1):
                if k == skip:
                    continue
                layer = steps[k].layer
                if k == len(steps) - 1 and dz is not None:
                    dy = layer.backward_from_logits(dz)
                elif dy is None:
                    break
                elif k > 0 and pooled[k - 1] and getattr(steps[k - 1].layer, "accepts_broadcast_dy", False):
                    dy = layer.backward_broadcast(dy)  # the pooling's dx as a broadcast view, for the layer below
                elif k > 0 and private and through[k] and layer.fuses_backward_with(steps[k - 1].layer):
                    dy = layer.backward_through(dy, steps[k - 1].layer)  # the layer below's dx: both are done
                    skip = k = k - 1
                else:
                    dy = layer.backward(dy)
                reached = k
                if dy is None:
                    break
        finally:
            if not need_input:
                del first.input_gradient_needed
        for st in steps[:reached]:
            st.layer.zero_gradients()
        grads = [None] * self.n_slots
        if reached == 0:
            grads[self.input_slots[0]] = dy
        return grads

    # --------------------------------------------------------------------------------- backward
    @kernel_entry
    def backward(self, run: Run, seeds: dict, logit_seeds: dict | None = None, grad_slots: Iterable[int] = (),
                 only_steps: set | None = None, weight_gradients: bool = True) -> list:
        """Backpropagate the upstream gradients ``seeds`` ({slot: δ}) through the steps in reverse.

        ``logit_seeds`` ({step index: δz}) enter a step through ``backward_from_logits`` (the loss's logits
        shortcut). ``grad_slots``: graph inputs that need their gradient (the others are data: a layer reading
        only data skips its dx). ``only_steps`` restricts the pass to those steps. Returns the gradient of every
        slot (None where nothing arrived); sets each layer's ``gradients`` (summed over a shared layer's nodes,
        zeros for a layer no gradient reached) when ``weight_gradients``.
        """
        if self.is_chain and only_steps is None and weight_gradients and len(seeds) + len(logit_seeds or ()) == 1 \
                and all(s == self.output_slots[0] for s in seeds):
            return self._backward_chain(seeds, logit_seeds, bool(grad_slots), run.private)
        grads: list = [None] * self.n_slots
        for s, g in seeds.items():
            _accumulate(grads, s, g)
        need = set(grad_slots)
        summed: dict[int, list] = {}
        reached: set[int] = set()
        for st in self._reversed_steps:
            if only_steps is not None and st.index not in only_steps:
                continue
            dz = logit_seeds.get(st.index) if logit_seeds else None
            if st.multi_out:
                dys, dy = [grads[s] for s in st.outs], None
                if dz is None and all(d is None for d in dys):
                    continue
            else:
                dys = None
                dy = grads[st.out]
                if dz is None and dy is None:
                    continue
            layer = st.layer
            if st.shared:
                restore_state(run.snapshots[st.index])
            data_only = st.data_only and not (need and any(a in need for a in st.args))
            if data_only:
                layer.input_gradient_needed = False
            try:
                if dz is not None:
                    if dy is not None:  # the output also feeds other layers: δz += act'(z) ⊙ δy
                        dz = dz + layer.activation.backward(run.logits[st.index], run.values[st.out], dy)
                    dx = layer.backward_from_logits(dz)
                else:
                    dx = layer.backward(dys if dys is not None else dy)
            finally:
                if data_only:
                    del layer.input_gradient_needed
            if weight_gradients:
                lid = id(layer)
                if st.shared:
                    summed[lid] = ([add_gradients(a, b) for a, b in zip(summed[lid], layer.gradients)]
                                   if lid in summed else list(layer.gradients))
                reached.add(lid)
            if st.simple:
                if dx is not None:
                    g = grads[st.arg]
                    grads[st.arg] = dx if g is None else g + dx
                continue
            dstates = None
            if st.states is not None and isinstance(dx, tuple):
                dx, dstates = dx
            if st.multi_in:
                for s, d in zip(st.args, dx if dx is not None else [None] * len(st.args)):
                    _accumulate(grads, s, d)
            else:
                _accumulate(grads, st.arg, dx)
            if dstates is not None:
                for s, d in zip(st.states, dstates):
                    _accumulate(grads, s, d)
        for index in self._last_shared_steps:  # leave each shared layer as its last forward left it (its states)
            if index in run.snapshots:
                restore_state(run.snapshots[index])
        if weight_gradients:
            for layer in self.weight_layers:
                lid = id(layer)
                if lid in summed:
                    layer.gradients = summed[lid]
                elif lid not in reached:
                    layer.zero_gradients()
        return grads

    def steps_between(self, sources: Iterable[int], targets: Iterable[int]) -> set[int]:
        """Indices of the steps on some path from a slot in ``sources`` to a slot in ``targets``."""
        sources = set(sources)
        downstream = set(sources)
        after = set()
        for st in self.steps:
            reads = st.args + (st.states or [])
            if any(s in downstream for s in reads):
                after.add(st.index)
                downstream.update(st.outs)
        upstream = set(targets)
        between = set()
        for st in reversed(self.steps):
            if st.index in after and any(s in upstream for s in st.outs):
                between.add(st.index)
                upstream.update(st.args + (st.states or []))
        return between


def _accumulate(grads: list, slot: int, g) -> None:
    if g is None:
        return
    grads[slot] = g if grads[slot] is None else grads[slot] + g


def add_gradients(a, b):
    """``a + b`` for weight gradients, keeping row-sparse gradients sparse (TF concatenates IndexedSlices)."""
    from .sparse import IndexedSlices

    if isinstance(a, IndexedSlices) and isinstance(b, IndexedSlices):
        tail = a.dense_shape[1:]
        values = np.concatenate([a.values.reshape(-1, *tail), b.values.reshape(-1, *tail)])
        return IndexedSlices(values, np.concatenate([a.indices.reshape(-1), b.indices.reshape(-1)]), a.dense_shape)
    return np.asarray(a) + np.asarray(b)


# --------------------------------------------------------------------------------------------- per-node state


def sublayers(layer) -> list:
    """The layers an object keeps inside it (a Bidirectional's two RNNs, a model's layers), found generically:
    every attribute that is a layer, or a list/tuple of layers."""
    from .layers.base import Layer

    found = []
    for value in layer.__dict__.values():
        if isinstance(value, Layer):
            found.append(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value):
            found.extend(value)
    return found


def capture_state(layer) -> list[tuple[Any, dict]]:
    """A shallow copy of the attributes of ``layer`` and of every layer inside it (the caches a forward left)."""
    out, todo, seen = [], [layer], set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append((obj, dict(obj.__dict__)))
        todo.extend(sublayers(obj))
    return out


def restore_state(snapshot: list[tuple[Any, dict]]) -> None:
    for obj, attrs in snapshot:
        obj.__dict__.update(attrs)


def all_layers(layers: Iterable) -> list:
    """Every layer reachable from ``layers`` (themselves and the layers inside them), each once."""
    out, todo, seen = [], list(layers), set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        todo.extend(sublayers(obj))
    return out


def _plain_input_handling(layer) -> bool:
    """True when ``layer`` converts, checks and masks its input as the base Layer does (so a repeat of an
    accepted input's shape and dtype passes the checks again, and no mask in gives no mask out)."""
    from .layers.base import Layer

    cls = type(layer)
    return (isinstance(layer, Layer) and not cls.takes_list_input and cls.__call__ is Layer.__call__
            and cls.prepare_input is Layer.prepare_input and cls._prepare_array is Layer._prepare_array
            and cls.check_input is Layer.check_input and cls._check_array is Layer._check_array
            and cls.compute_mask is Layer.compute_mask)
