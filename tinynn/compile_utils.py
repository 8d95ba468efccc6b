"""``compile``'s losses and metrics for models with one or several outputs, resolved as Keras 3 resolves them.

With outputs ``ŷ_1 … ŷ_n`` and per-output losses ``L_k`` (weights ``w_k``, 1 when not given) the training loss is

    L = Σ_k w_k L_k(y_k, ŷ_k),        ∂L/∂ŷ_k = w_k ∂L_k/∂ŷ_k

``loss`` is one loss for every output, a list with one entry per output (None: that output has no loss), or a
dict keyed by output name; ``loss_weights`` and ``metrics`` follow the same shapes. Output names are the names
of the layers that produce the outputs (the dict keys when the model's outputs are a dict). With more than one
loss, History also records each unweighted ``L_k`` as ``<name>_loss``; metrics of a multi-output model are
logged as ``<name>_<metric>`` (``dense_1_accuracy``), and a repeated name gets ``_1``, ``_2``… as in Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import losses as losses_mod
from . import metrics as metrics_mod


@dataclass
class OutputLoss:
    index: int  # position in the model's flat outputs
    loss: losses_mod.Loss
    weight: float | None
    name: str  # the output name (per-output History key: f"{name}_loss")


def is_loss_config(value) -> bool:
    """A serialized loss (``{'class_name': ..., 'config': ...}``): one loss, not a dict keyed by output."""
    return isinstance(value, dict) and "class_name" in value


def _is_nested(value) -> bool:
    return isinstance(value, (list, tuple, dict)) and not is_loss_config(value)


def resolve_losses(loss, loss_weights, output_names: list[str], dict_outputs: bool, who: str) -> list[OutputLoss]:
    """The per-output losses of ``compile(loss=..., loss_weights=...)``, in Keras's order."""
    n = len(output_names)
    if loss is None:
        raise ValueError(f"{who}.compile: a loss is required, e.g. loss='mse'")
    if loss_weights is not None and not isinstance(loss_weights, (list, tuple, dict, float, int)):
        raise ValueError(
            f"{who}.compile: loss_weights must be a float (one output) or a list or dict (several outputs), got "
            f"{type(loss_weights).__name__}"
        )
    if isinstance(loss, dict) and not is_loss_config(loss):
        unknown = [k for k in loss if k not in output_names]
        if unknown:
            raise ValueError(f"{who}.compile: loss has keys {unknown} that are not output names; the outputs are "
                             f"{output_names}")
        if not dict_outputs and set(loss) != set(output_names):
            raise ValueError(f"{who}.compile: expected keys {output_names} in the loss dict, but found loss.keys()="
                             f"{list(loss)}")
        order = list(loss) if dict_outputs else output_names
        specs = [(output_names.index(k), loss[k]) for k in order]
    elif isinstance(loss, (list, tuple)):
        if len(loss) != n:
            raise ValueError(
                f"{who}.compile: loss is a {type(loss).__name__} of {len(loss)} but the model has {n} output(s) "
                f"{output_names}: give one loss per output (None for an output without loss), a dict keyed by output "
                "name, or one loss for every output"
            )
        specs = list(enumerate(loss))
    else:
        specs = [(k, loss) for k in range(n)]
    weights = _resolve_weights(loss_weights, output_names, specs, who)
    out = []
    for (k, spec), w in zip(specs, weights):
        if spec is None:
            continue
        if _is_nested(spec):
            raise ValueError(f"{who}.compile: the loss of output {output_names[k]!r} must be one loss, got {spec!r}")
        out.append(OutputLoss(k, losses_mod.get(spec), w, output_names[k]))
    if not out:
        raise ValueError(f"{who}.compile: every loss is None, so there is nothing to train")
    return out


def _resolve_weights(loss_weights, output_names, specs, who) -> list:
    if loss_weights is None:
        return [None] * len(specs)
    if isinstance(loss_weights, dict):
        unknown = [k for k in loss_weights if k not in output_names]
        if unknown:
            raise ValueError(f"{who}.compile: loss_weights has keys {unknown} that are not output names "
                             f"{output_names}")
        return [_weight(loss_weights.get(output_names[k]), who) for k, _ in specs]
    if isinstance(loss_weights, (int, float)):
        if len(specs) != 1:
            raise ValueError(f"{who}.compile: `loss_weights` must match the number of losses, got {len(specs)} "
                             "losses and 1 weights.")
        return [_weight(loss_weights, who)]
    if len(loss_weights) != len(specs):
        raise ValueError(f"{who}.compile: `loss_weights` must match the number of losses, got {len(specs)} losses "
                         f"and {len(loss_weights)} weights.")
    return [_weight(w, who) for w in loss_weights]


def _weight(value, who):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{who}.compile: each loss weight must be a number, got {value!r}")
    return float(value)


@dataclass
class OutputMetrics:
    """The metrics of one output: specs from compile, resolved to Metric objects on the first batch."""

    index: int
    specs: list
    prefix: str  # "" for a one-output model, else f"{output name}_"
    metrics: list = field(default_factory=list)
    log_names: list = field(default_factory=list)


def resolve_metric_specs(metrics, output_names: list[str], who: str) -> list[OutputMetrics]:
    """Which metric specs go to which output (Keras's ``CompileMetrics._build_metrics_set``)."""
    n = len(output_names)
    if metrics is None:
        return []
    if isinstance(metrics, (str, metrics_mod.Metric)):
        metrics = [metrics]
    if not isinstance(metrics, (list, tuple, dict)):
        raise ValueError(f"{who}.compile: metrics must be a list or a dict, got {type(metrics).__name__}")
    if not metrics:
        return []
    if n == 1:
        flat = []
        for m in (metrics.values() if isinstance(metrics, dict) else metrics):
            flat.extend(m if isinstance(m, (list, tuple)) else [m])
        return [OutputMetrics(0, flat, "")]
    if isinstance(metrics, (list, tuple)) and len(metrics) == n:
        per_output = list(metrics)
    elif isinstance(metrics, dict) and set(metrics) <= set(output_names):
        per_output = [metrics.get(name) for name in output_names]
    else:
        raise ValueError(
            f"{who}.compile: invalid `metrics`. `metrics` should contain metrics objects and either be a dict or a "
            f"list "
            f"matching the output names of the functional model {output_names} or match the output structure of the "
            f"model: {['X'] * n}.\nReceived: metrics={metrics!r}"
        )
    out = []
    for k, spec in enumerate(per_output):
        if spec is None:
            continue
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        if specs:
            out.append(OutputMetrics(k, specs, f"{output_names[k]}_"))
    return out


def build_metrics(groups: list[OutputMetrics], y_shapes: list, pred_shapes: list) -> None:
    """Resolve every spec to a Metric (``'accuracy'`` needs the shapes) and give each its History key."""
    seen: dict[str, int] = {}
    for g in groups:
        g.metrics = [metrics_mod.get(spec, y_shapes[g.index], pred_shapes[g.index]) for spec in g.specs]
        g.log_names = []
        for m in g.metrics:
            name = g.prefix + m.name
            if name in seen:
                seen[name] += 1
                name = f"{name}_{seen[name] - 1}"
            else:
                seen[name] = 1
            g.log_names.append(name)


def flatten_logs_in_order(logs: dict, groups: list[OutputMetrics], output_losses: list[OutputLoss]):
    """``evaluate``'s list: 'loss', then metrics under their plain names, per-output losses, the rest sorted (as
    Keras's ``_flatten_metrics_in_order``); one value alone is returned as a float."""
    names = ["loss"] + [m.name for g in groups for m in g.metrics]
    if len(output_losses) > 1:
        names += [f"{o.name}_loss" for o in output_losses]
    results = [logs[name] for name in names if name in logs]
    results += [logs[key] for key in sorted(logs) if key not in names]
    return results[0] if len(results) == 1 else results
