"""``model.summary()``: the table Keras 3 prints (76 columns when not on a TTY).

A Sequential model, and a functional model whose graph is a chain, get three columns (Layer, Output Shape,
Param #; the functional one lists its InputLayer rows too). A functional model with branches, merges or shared
layers gets Keras's fourth column, "Connected to": for each call of the layer in the model, the tensors it read,
as ``layer_name[node_index][tensor_index]``; long cells wrap at spaces, as rich wraps them.
"""

from __future__ import annotations

DEFAULT_LINE_LENGTH = 76
_COLUMN_SHARES = (33, 24, 15)  # inner widths at 76 columns: Layer (type) | Output Shape | Param #
_CONNECTED_SHARES = (21, 19, 12, 19)  # ... and with the "Connected to" column (Keras's layout at 76 columns)


def readable_size(n_bytes: float) -> str:
    """Keras's ``readable_memory_size``: '1.50 KB' (base 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes / 1024 < 1:
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.2f} PB"


def _format_shape(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _row(cells, widths, left, sep, right, aligns) -> str:
    parts = []
    for text, width, align in zip(cells, widths, aligns):
        text = str(text)[: width - 2]
        parts.append(" " + (text.rjust(width - 2) if align == "r" else text.ljust(width - 2)) + " ")
    return left + sep.join(parts) + right


def _rule(widths, left, fill, sep, right) -> str:
    return left + sep.join(fill * w for w in widths) + right


def summary_text(model, line_length: int | None = None) -> str:
    if hasattr(model, "output_shapes"):  # Sequential
        return _sequential_text(model, line_length)
    return _functional_text(model, line_length)


def _sequential_text(model, line_length: int | None = None) -> str:
    total_width = (line_length or DEFAULT_LINE_LENGTH) - 4
    share_total = sum(_COLUMN_SHARES)
    widths = [total_width * s // share_total for s in _COLUMN_SHARES]
    widths[0] += total_width - sum(widths)
    aligns = ("l", "l", "r")
    lines = [f'Model: "{model.name}"']
    lines.append(_rule(widths, "┏", "━", "┳", "┓"))
    lines.append(_row(("Layer (type)", "Output Shape", "Param #"), widths, "┃", "┃", "┃", aligns))
    lines.append(_rule(widths, "┡", "━", "╇", "┩"))
    shapes = model.output_shapes()
    trainable = non_trainable = 0
    itemsize = next((w.itemsize for w in model.weights), 4)
    for k, (layer, shape) in enumerate(zip(model.layers, shapes)):
        if layer.built:
            n = layer.count_params()
            n_train = sum(w.size for w, t in zip(layer.weights, layer.trainable_mask) if t)
            trainable += n_train
            non_trainable += n - n_train
            params = f"{n:,}"
        else:
            params = "0 (unbuilt)"
        lines.append(_row((f"{layer.name} ({type(layer).__name__})", _format_shape(shape), params), widths,
                          "│", "│", "│", aligns))
        if k < len(model.layers) - 1:
            lines.append(_rule(widths, "├", "─", "┼", "┤"))
    lines.append(_rule(widths, "└", "─", "┴", "┘"))
    total = trainable + non_trainable
    lines.append(f" Total params: {total:,} ({readable_size(total * itemsize)})")
    lines.append(f" Trainable params: {trainable:,} ({readable_size(trainable * itemsize)})")
    lines.append(f" Non-trainable params: {non_trainable:,} ({readable_size(non_trainable * itemsize)})")
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap at spaces (a word longer than the cell is cut), as rich wraps table cells."""
    lines, line = [], ""
    for word in str(text).split(" "):
        while len(word) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        candidate = f"{line} {word}" if line else word
        if len(candidate) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    lines.append(line)
    return lines


def _wrapped_rows(cells, widths, aligns) -> list[str]:
    columns = [_wrap(text, w - 2) for text, w in zip(cells, widths)]
    height = max(len(c) for c in columns)
    rows = []
    for i in range(height):
        row = [c[i] if i < len(c) else "" for c in columns]
        rows.append(_row(row, widths, "│", "│", "│", aligns))
    return rows


def _widths(shares, line_length) -> list[int]:
    total_width = (line_length or DEFAULT_LINE_LENGTH) - (len(shares) + 1)
    share_total = sum(shares)
    widths = [total_width * s // share_total for s in shares]
    widths[0] += total_width - sum(widths)
    return widths


def _layer_shape(layer) -> str:
    """Keras's ``format_layer_shape``: the output shape(s) of the layer's last call."""
    nodes = layer.__dict__.get("_inbound_nodes") or []
    if not nodes:
        return "?"
    node = nodes[-1]
    shapes = [_format_shape(t.shape) for t in node.output_tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _is_chain(model) -> bool:
    """Keras's ``sequential_like``: one node per depth, each reading at most one tensor, no shared layer."""
    graph = model._graph
    nodes = []
    for depth_nodes in graph.nodes_by_depth.values():
        if len(depth_nodes) > 1 or (len(depth_nodes) == 1 and len(depth_nodes[0].input_tensors) > 1):
            return False
        nodes += depth_nodes
    node_ids = {id(n) for n in nodes}
    for layer in model.layers:
        if sum(id(n) in node_ids for n in layer.__dict__.get("_inbound_nodes") or []) > 1:
            return False
    return True


def _connections(layer, node_ids) -> str:
    parts = []
    for node in layer.__dict__.get("_inbound_nodes") or []:
        if id(node) not in node_ids:
            continue
        for t in node.input_tensors:
            h = t._keras_history
            parts.append(f"{h.layer.name}[{h.node_index}][{h.tensor_index}]")
    return ", ".join(parts) or "-"


def _functional_text(model, line_length: int | None = None) -> str:
    chain = _is_chain(model)
    shares = _COLUMN_SHARES if chain else _CONNECTED_SHARES
    widths = _widths(shares, line_length)
    header = ["Layer (type)", "Output Shape", "Param #"] + ([] if chain else ["Connected to"])
    aligns = ("l", "l", "r", "l")[: len(header)]
    n = len(header)
    lines = [f'Model: "{model.name}"']
    lines.append(_rule(widths, "┏", "━", "┳", "┓"))
    lines.append(_row(header, widths, "┃", "┃", "┃", aligns))
    lines.append(_rule(widths, "┡", "━", "╇", "┩"))
    node_ids = {id(node) for nodes in model._graph.nodes_by_depth.values() for node in nodes}
    for k, layer in enumerate(model.layers):
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        cls = "Functional" if type(layer).__name__ == "Model" else type(layer).__name__  # Keras's class name
        cells = [f"{layer.name} ({cls})", _layer_shape(layer), params]
        if not chain:
            cells.append(_connections(layer, node_ids))
        lines.extend(_wrapped_rows(cells[:n], widths, aligns))
        if k < len(model.layers) - 1:
            lines.append(_rule(widths, "├", "─", "┼", "┤"))
    lines.append(_rule(widths, "└", "─", "┴", "┘"))
    weights, mask = model.weights, model.trainable_mask
    trainable = sum(w.size for w, t in zip(weights, mask) if t)
    non_trainable = sum(w.size for w, t in zip(weights, mask) if not t)
    itemsize = next((w.itemsize for w in weights), 4)
    total = trainable + non_trainable
    lines.append(f" Total params: {total:,} ({readable_size(total * itemsize)})")
    lines.append(f" Trainable params: {trainable:,} ({readable_size(trainable * itemsize)})")
    lines.append(f" Non-trainable params: {non_trainable:,} ({readable_size(non_trainable * itemsize)})")
    return "\n".join(lines)
