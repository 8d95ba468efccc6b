"""``model.summary()``: the table Keras 3 prints for a Sequential model (76 columns when not on a TTY)."""

from __future__ import annotations

DEFAULT_LINE_LENGTH = 76
_COLUMN_SHARES = (33, 24, 15)  # inner widths at 76 columns: Layer (type) | Output Shape | Param #


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
