"""The training API every model shares (Keras's ``Trainer``): compile, fit, evaluate, predict, train_on_batch.

A model provides its graph (``_ensure_graph_for``, ``_forward_flat``, ``_pack``, ``output_names``); this mixin
turns user data into one array per input and per output, computes the per-output losses
``L = Σ_k w_k L_k(y_k, ŷ_k)`` (``tinynn/compile_utils.py``), runs the backward pass through the graph and the
optimizer step, and keeps the running means Keras reports: the epoch loss is ``Σ_b L_b n_b / N`` over batches,
computed with the weights before each update; validation runs after the epoch in inference mode.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import callbacks as cbks
from . import compile_utils
from . import data as data_utils
from . import graph as graph_mod
from .utils import global_rng

_FIT_DEFAULT_BATCH = 32


class Trainer:
    """compile / fit / evaluate / predict for a model with a graph (mixed into :class:`tinynn.models.Model`)."""

    # ------------------------------------------------------------------ data
    def _input_arrays(self, x, what: str) -> list[np.ndarray]:
        """One array per model input from an array, a list or a dict keyed by input name."""
        inputs = self.inputs
        names = [t.name for t in inputs]
        who = f"{type(self).__name__} {self.name!r}"
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"{who} {what}: the dict has no entry for input(s) {missing}; expected keys {names}, "
                                 f"got {sorted(x)}")
            items = [x[n] for n in names]
        elif len(inputs) > 1:
            if not isinstance(x, (list, tuple)) or len(x) != len(inputs):
                got = f"a {type(x).__name__} of {len(x)}" if isinstance(x, (list, tuple)) else type(x).__name__
                raise ValueError(f"{who} {what}: expects {len(inputs)} arrays, one per input {names} (a list or a "
                                 f"dict keyed by name), got {got}")
            items = list(x)
        elif isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
            items = [x[0]]
        else:
            items = [x]
        arrays = []
        for t, item in zip(inputs, items):
            arr = data_utils.as_array(item, f"{who} {what} {t.name!r}")
            if arr.shape[0] == 0:
                raise ValueError(f"{who}: received an empty batch (input {t.name!r} of shape {arr.shape})")
            expected = t.shape[1:]
            if arr.ndim != len(t.shape) or any(e is not None and e != a for e, a in zip(expected, arr.shape[1:])):
                raise ValueError(f"{who} expects input {t.name!r} of shape {graph_mod.format_shape(t.shape)}, got an "
                                 f"array of shape {arr.shape}")
            arrays.append(arr)
        sizes = {len(a) for a in arrays}
        if len(sizes) > 1:
            raise ValueError(f"{who} {what}: the input arrays have different numbers of samples "
                             f"{[len(a) for a in arrays]}")
        return arrays

    def _target_arrays(self, y, what: str) -> list:
        """One target array per output (None for an output without target) from an array, list or dict."""
        if type(y) is np.ndarray and len(self.output_names) == 1 and y.dtype != object and y.ndim:
            return [y]  # the common case: one output, one array
        keys = self._output_keys
        n = len(keys)
        who = f"{type(self).__name__}.{what}"
        if y is None:
            raise ValueError(f"{who}: both x and y are required")
        if isinstance(y, dict):
            unknown = [k for k in y if k not in keys and k not in self.output_names]
            if unknown:
                raise ValueError(f"{who}: y has keys {unknown} that are not output names {keys}")
            items = [y.get(k, y.get(layer_name)) for k, layer_name in zip(keys, self.output_names)]
        elif n > 1:
            if not isinstance(y, (list, tuple)):
                raise ValueError(f"{who}: the model has {n} outputs {keys}, so y must be a list with one array per "
                                 f"output (or a dict keyed by output name), got {type(y).__name__}")
            if len(y) == n:
                items = list(y)
            elif len(y) == len(self._output_losses):
                items = [None] * n
                for o, arr in zip(self._output_losses, y):
                    items[o.index] = arr
            else:
                raise ValueError(f"{who}: y is a {type(y).__name__} of {len(y)} but the model has {n} outputs {keys}")
        elif isinstance(y, (list, tuple)) and len(y) == 1 and isinstance(y[0], np.ndarray):
            items = [y[0]]
        else:
            items = [y]
        return [None if item is None else data_utils.as_array(item, f"{what} y[{k!r}]" if n > 1 else f"{what} y")
                for k, item in zip(keys, items)]

    def _sample_weight_arrays(self, sample_weight, what: str):
        if sample_weight is None:
            return None
        keys = self._output_keys
        if isinstance(sample_weight, dict):
            items = [sample_weight.get(k) for k in keys]
        elif isinstance(sample_weight, (list, tuple)) and len(keys) > 1 and len(sample_weight) == len(keys) and \
                not np.isscalar(sample_weight[0]):
            items = list(sample_weight)
        else:
            arr = data_utils.as_array(sample_weight, f"{what} sample_weight")
            items = [arr] * len(keys)
        return [None if s is None else data_utils.as_array(s, f"{what} sample_weight") for s in items]

    def _arrays(self, x, y, sample_weight, what):
        cls = type(self).__name__
        if x is None or y is None:
            raise ValueError(f"{cls}.{what}: both x and y are required")
        xs = self._input_arrays_for(x, what)
        ys = self._target_arrays(y, what)
        n = len(xs[0])
        for k, arr in zip(self._output_keys, ys):
            if arr is not None and len(arr) != n:
                name = "y" if len(ys) == 1 else f"y[{k!r}]"
                raise ValueError(f"{cls}.{what}: x has {n} samples but {name} has {len(arr)}")
        if n == 0:
            raise ValueError(f"{cls}.{what}: received empty arrays (0 samples)")
        sws = self._sample_weight_arrays(sample_weight, what)
        if sws is not None:
            for s in sws:
                if s is not None and len(s) != n:
                    raise ValueError(f"{cls}.{what}: sample_weight has {len(s)} entries for {n} samples")
        return xs, ys, sws

    def _input_arrays_for(self, x, what):
        return self._input_arrays(x, what)

    def _standardize_batch(self, batch):
        """A generator's (x, y, sample_weight) as flat lists."""
        x, y, sw = batch
        xs = self._input_arrays_for(x, "batch")
        ys = None if y is None else self._target_arrays(y, "batch")
        return xs, ys, self._sample_weight_arrays(sw, "batch")

    def _logits_step(self, out: compile_utils.OutputLoss) -> int | None:
        """Keras's logits shortcut: a cross-entropy on the direct output of a sigmoid/softmax layer reads its logits."""
        loss = out.loss
        if loss.logits_activation is None or getattr(loss, "from_logits", False):
            return None
        graph = self._graph
        step = graph.producer.get(graph.output_slots[out.index])
        if step is None or step.multi_out:
            return None
        layer = step.layer
        if getattr(getattr(layer, "activation", None), "name", None) != loss.logits_activation:
            return None
        if not hasattr(layer, "backward_from_logits"):
            return None
        return step.index

    def _uses_logits(self) -> bool:
        return bool(self._output_losses) and self._logits_step(self._output_losses[0]) is not None

    def compute_loss_and_gradients(self, x, y, sample_weight=None, training: bool = True, want_gradients=True):
        """Forward, loss and (unless ``want_gradients=False``) backward on one batch.

        Returns ``(L, [∂L/∂θ for each trainable θ])``; the predictions and output masks of the batch are kept
        for the metrics.
        """
        self._require_compiled()
        xs, ys, sws = self._arrays(x, y, sample_weight, "compute_loss_and_gradients")
        return self._loss_and_gradients(xs, ys, sws, training, want_gradients)

    def _loss_and_gradients(self, xs, ys, sws, training, want_gradients):
        graph = self._ensure_graph_for(xs)
        cached = self.__dict__.get("_logit_steps_cache")
        if cached is None or cached[0] is not graph or cached[1] is not self._output_losses:
            steps = [self._logits_step(o) for o in self._output_losses]
            cached = self._logit_steps_cache = (graph, self._output_losses, steps, [s for s in steps if s is not None])
        logit_steps = cached[2]
        run = graph.forward(xs, training, want_logits=cached[3], keep=False)
        preds = [run.values[s] for s in graph.output_slots]
        masks = [run.masks[s] for s in graph.output_slots]
        total = 0.0
        seeds, logit_seeds, values = {}, {}, []
        for out, step in zip(self._output_losses, logit_steps):
            y_true = ys[out.index]
            if y_true is None:
                raise ValueError(f"{type(self).__name__}: no target given for output {out.name!r}, which has a loss")
            sw = None if sws is None else sws[out.index]
            logits = None if step is None else run.logits[step]
            value, grad = self._loss_and_grad(out.loss, y_true, preds[out.index], masks[out.index], sw, logits)
            values.append(value)
            if out.weight is not None:
                total += value * out.weight
                grad = grad * grad.dtype.type(out.weight)
            else:
                total += value
            if step is None:
                slot = graph.output_slots[out.index]
                seeds[slot] = grad if slot not in seeds else seeds[slot] + grad
            else:
                logit_seeds[step] = grad if step not in logit_seeds else logit_seeds[step] + grad
        self._last_pred, self._last_mask, self._last_output_losses = preds, masks, values
        if not want_gradients:
            return total, None
        graph.backward(run, seeds, logit_seeds)
        grads = [g for layer in self.layers for g, t in zip(layer.gradients, layer.trainable_mask) if t]
        if not self.trainable:
            grads = []
        return total, grads

    @staticmethod
    def _loss_and_grad(loss, y_true, y_pred, mask, sample_weight, logits):
        y_true_arr, _ = loss.prepare(y_true, y_pred)
        if logits is not None:
            _, z = loss.prepare(y_true, logits)
            values, dv = loss.values_and_grad_from_logits(y_true_arr, z)
        else:
            _, pred = loss.prepare(y_true, y_pred)
            values, dv = loss.values_and_grad(y_true_arr, pred)
        value, dvalues = loss.reduce(values, sample_weight, mask)
        grad = (dvalues[..., None] * dv).reshape(np.shape(y_pred)).astype(y_pred.dtype, copy=False)
        return float(value), grad

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, **kwargs) -> None:
        """Choose the optimizer, the loss(es) and metrics, by name or object, as ``keras.Model.compile``."""
        from . import optimizers

        cls = type(self).__name__
        known = ("weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss")
        ignored = {k: v for k, v in kwargs.items() if k not in known}
        if ignored:
            raise ValueError(f"{cls}.compile: unrecognized arguments {sorted(ignored)}; accepted: optimizer, loss, "
                             f"loss_weights, metrics, {', '.join(known)}")
        if loss is None:
            raise ValueError(f"{cls}.compile: a loss is required, e.g. loss='mse'")
        self.optimizer = optimizers.get(optimizer)
        self._compile_args = (loss, loss_weights, metrics)
        self._metric_specs = [] if metrics is None else ([metrics] if isinstance(metrics, str) else metrics)
        if isinstance(self._metric_specs, tuple):
            self._metric_specs = list(self._metric_specs)
        self._resolve_compile()

    def _resolve_compile(self) -> None:
        """Resolve the losses and metrics against the outputs (deferred for a Sequential not built yet)."""
        loss, loss_weights, metrics = self._compile_args
        cls = type(self).__name__
        if self._graph is None:
            self.loss = _single_loss_or_spec(loss, cls)
            self._output_losses, self._metric_groups = [], []
            self._metrics_built = False
            return
        keys = self._output_keys
        self._output_losses = compile_utils.resolve_losses(loss, loss_weights, keys,
                                                           isinstance(self._outputs_struct, dict), cls)
        self.loss = self._output_losses[0].loss if len(keys) == 1 else loss
        self._metric_groups = compile_utils.resolve_metric_specs(metrics, keys, cls)
        self._metrics_built = False
        self.compiled_metrics = []

    def _require_compiled(self) -> None:
        if self.optimizer is None or self.loss is None:
            raise ValueError(f"{type(self).__name__} {self.name!r} must be compiled first: model.compile(optimizer, "
                             "loss)")
        if self._graph is not None and not self._output_losses:
            self._resolve_compile()

    def _build_metrics(self, ys, preds) -> None:
        if self._metrics_built:
            return
        compile_utils.build_metrics(self._metric_groups, [None if y is None else np.shape(y) for y in ys],
                                    [np.shape(p) for p in preds])
        self.compiled_metrics = [m for g in self._metric_groups for m in g.metrics]
        self._metrics_built = True

    def reset_metrics(self) -> None:
        for m in self.compiled_metrics:
            m.reset_state()
        self._loss_totals = [0.0] * len(self._output_losses)
        self._loss_count = 0

    def _update_metrics(self, ys, preds, masks, sws) -> None:
        self._build_metrics(ys, preds)
        for g in self._metric_groups:
            y = ys[g.index]
            if y is None:
                raise ValueError(f"{type(self).__name__}: no target given for output {self._output_keys[g.index]!r}, "
                                 "which has metrics")
            sw = None if sws is None else sws[g.index]
            for m in g.metrics:
                m.update_state(y, preds[g.index], sample_weight=sw, mask=masks[g.index])
        if len(self._output_losses) > 1:
            # Keras 3.15 averages each output's loss over batches *unweighted*: its tracker is given the batch size
            # as sample weight, which is None (an unknown dimension) inside fit's compiled step. A smaller last
            # batch therefore counts as much as a full one here, unlike in the total 'loss' (checked against Keras)
            totals = getattr(self, "_loss_totals", None) or [0.0] * len(self._output_losses)
            self._loss_totals = [t + v for t, v in zip(totals, self._last_output_losses)]
            self._loss_count = getattr(self, "_loss_count", 0) + 1

    def _metric_logs(self, prefix: str = "") -> dict:
        logs = {}
        for g in self._metric_groups:
            for m, name in zip(g.metrics, g.log_names):
                logs[prefix + name] = m.result()
        if len(self._output_losses) > 1 and getattr(self, "_loss_count", 0):
            for o, t in zip(self._output_losses, self._loss_totals):
                logs[f"{prefix}{o.name}_loss"] = t / self._loss_count
        return logs

    def train_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """One gradient step on one batch; returns the batch loss (and metrics)."""
        self._require_compiled()
        xs, ys, sws = self._arrays(x, y, sample_weight, "train_on_batch")
        self._require_compiled()
        self.reset_metrics()
        loss_value = self._train_step(xs, ys, sws)
        return self._batch_result(loss_value, return_dict)

    def _batch_result(self, loss_value, return_dict):
        if not self._metric_groups and len(self._output_losses) <= 1 and not return_dict:
            return loss_value  # the common case, without building the logs
        logs = {"loss": loss_value, **self._metric_logs()}
        if return_dict:
            return logs
        return compile_utils.flatten_logs_in_order(logs, self._metric_groups, self._output_losses)

    def _train_step(self, xs, ys, sws) -> float:
        loss_value, grads = self._loss_and_gradients(xs, ys, sws, True, True)
        self._update_metrics(ys, self._last_pred, self._last_mask, sws)
        self.optimizer.apply(grads, self.trainable_weights if self.trainable else [])
        return loss_value

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        self._require_compiled()
        xs, ys, sws = self._arrays(x, y, sample_weight, "test_on_batch")
        self._require_compiled()
        self.reset_metrics()
        loss_value, _ = self._loss_and_gradients(xs, ys, sws, False, False)
        self._update_metrics(ys, self._last_pred, self._last_mask, sws)
        return self._batch_result(loss_value, return_dict)

    def fit(
        self,
        x=None,
        y=None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose="auto",
        callbacks: list | None = None,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        class_weight=None,
        sample_weight=None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> cbks.History:
        """Train for ``epochs`` epochs; returns a History whose ``.history`` keys match Keras's."""
        cls = type(self).__name__
        self._require_compiled()
        if class_weight is not None:
            raise ValueError(f"{cls}.fit: class_weight is not supported by tinynn; pass sample_weight instead")
        verbose = _check_verbose(verbose, f"{cls}.fit")
        batch_size = self._check_batch_size(batch_size, who=f"{cls}.fit")
        epochs = _check_count(epochs, "epochs", f"{cls}.fit", minimum=0)
        initial_epoch = _check_count(initial_epoch, "initial_epoch", f"{cls}.fit", minimum=0)
        steps_per_epoch = _check_count(steps_per_epoch, "steps_per_epoch", f"{cls}.fit", allow_none=True)
        validation_steps = _check_count(validation_steps, "validation_steps", f"{cls}.fit", allow_none=True)
        validation_freq = _check_count(validation_freq, "validation_freq", f"{cls}.fit")
        if validation_batch_size is not None:
            validation_batch_size = self._check_batch_size(validation_batch_size, "validation_batch_size", f"{cls}.fit")
        validation_split = _check_validation_split(validation_split, f"{cls}.fit")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise ValueError(f"{cls}.fit: shuffle must be True or False, got {shuffle!r}")
        callback_list = _check_callbacks(callbacks, f"{cls}.fit")
        train, val = self._training_sources(x, y, sample_weight, batch_size, steps_per_epoch, validation_split,
                                            validation_data, validation_steps, shuffle,
                                            validation_batch_size or batch_size)
        self._require_compiled()
        steps = steps_per_epoch if steps_per_epoch is not None else getattr(train, "num_batches", None)
        history = cbks.History()
        if verbose and not any(isinstance(c, cbks.ProgbarLogger) for c in callback_list):
            callback_list.append(cbks.ProgbarLogger(verbose))
        cb = cbks.CallbackList([history, *callback_list], self, {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cb.on_epoch_begin(epoch)
            self.reset_metrics()
            total, count, step = 0.0, 0, 0
            for step, (xb, yb, swb) in enumerate(train.epoch(), start=1):
                if yb is None:
                    raise ValueError(f"{cls}.fit: the data generator must yield (x, y) batches, got x alone")
                loss_value = self._train_step(xb, yb, swb)
                n = len(xb[0])
                total, count = total + loss_value * n, count + n
                cb.on_train_batch_end(step - 1, {"loss": total / count, **self._metric_logs()})
            if count == 0:
                raise ValueError(f"{cls}.fit: the training data produced no batches")
            logs = {"loss": total / count, **self._metric_logs()}
            if val is not None and (epoch + 1 - initial_epoch) % validation_freq == 0:
                val_logs = self._evaluate_source(val)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            cb.params["steps_done"] = step
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb.on_train_end()
        self.history = history
        return history

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1, callbacks=None,
                      validation_data=None, validation_steps=None, initial_epoch=0, **kwargs) -> cbks.History:
        """Deprecated Keras-2 alias of ``fit`` for generators (the seeds use it)."""
        warnings.warn("fit_generator is deprecated: fit accepts generators directly", DeprecationWarning, stacklevel=2)
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=verbose,
                        callbacks=callbacks, validation_data=validation_data, validation_steps=validation_steps,
                        initial_epoch=initial_epoch, **kwargs)

    @staticmethod
    def _check_batch_size(batch_size, name: str = "batch_size", who: str = "") -> int:
        if batch_size is None:
            return _FIT_DEFAULT_BATCH
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size <= 0:
            prefix = f"{who}: " if who else ""
            raise ValueError(f"{prefix}{name} must be a positive integer (or None for {_FIT_DEFAULT_BATCH}), got "
                             f"{batch_size!r}")
        return int(batch_size)

    def _training_sources(self, x, y, sample_weight, batch_size, steps_per_epoch, validation_split,
                          validation_data, validation_steps, shuffle, validation_batch_size):
        cls = type(self).__name__
        if data_utils.is_batch_source(x):
            if y is not None:
                raise ValueError(f"{cls}.fit: when x is a generator it yields (x, y) batches; do not pass y")
            if validation_split:
                raise ValueError(f"{cls}.fit: validation_split needs arrays, not a generator")
            train = _StreamSource(self, data_utils.BatchStream(x, steps_per_epoch, "fit"))
        else:
            xs, ys, sws = self._arrays(x, y, sample_weight, "fit")
            val_arrays = None
            if validation_split:
                (xs, ys, sws), val_arrays = _split_validation(xs, ys, sws, validation_split)
            train = _ArraySource(xs, ys, sws, batch_size, shuffle, steps_per_epoch)
            if val_arrays is not None and validation_data is None:
                return train, _ArraySource(*val_arrays, validation_batch_size, False, None)
        if validation_data is None:
            return train, None
        if data_utils.is_batch_source(validation_data):
            return train, _StreamSource(self, data_utils.BatchStream(validation_data, validation_steps, "validation"))
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            got = (f"a {type(validation_data).__name__} of {len(validation_data)}"
                   if isinstance(validation_data, (tuple, list)) else type(validation_data).__name__)
            raise ValueError(f"{cls}.fit: validation_data must be (x_val, y_val), (x_val, y_val, sample_weight) or a "
                             f"generator, got {got}")
        vx, vy, vsw = self._arrays(*data_utils.unpack_batch(validation_data), "validation_data")
        return train, _ArraySource(vx, vy, vsw, validation_batch_size, False, validation_steps)

    def _evaluate_source(self, source) -> dict:
        self.reset_metrics()
        total, count = 0.0, 0
        for xb, yb, swb in source.epoch():
            if yb is None:
                raise ValueError(f"{type(self).__name__}: evaluation data must give (x, y) batches, got x alone")
            loss_value, _ = self._loss_and_gradients(xb, yb, swb, False, False)
            self._update_metrics(yb, self._last_pred, self._last_mask, swb)
            total, count = total + loss_value * len(xb[0]), count + len(xb[0])
        if count == 0:
            raise ValueError("evaluation data produced no batches")
        return {"loss": total / count, **self._metric_logs()}

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 return_dict: bool = False):
        """Loss (and metrics) in inference mode, averaged over samples as Keras does."""
        cls = type(self).__name__
        self._require_compiled()
        verbose = _check_verbose(verbose, f"{cls}.evaluate")
        batch_size = self._check_batch_size(batch_size, who=f"{cls}.evaluate")
        steps = _check_count(steps, "steps", f"{cls}.evaluate", allow_none=True)
        if data_utils.is_batch_source(x):
            source = _StreamSource(self, data_utils.BatchStream(x, steps, "evaluate"))
        else:
            source = _ArraySource(*self._arrays(x, y, sample_weight, "evaluate"), batch_size, False, steps)
        self._require_compiled()
        logs = self._evaluate_source(source)
        if verbose:
            print(cbks.format_logs(logs))
        if return_dict:
            return logs
        return compile_utils.flatten_logs_in_order(logs, self._metric_groups, self._output_losses)

    def predict(self, x, batch_size=None, verbose=0, steps=None):
        """Outputs for ``x`` in inference mode, batch by batch (any number of samples): one array, or the
        structure of the model's outputs (a list, a dict) for several."""
        cls = type(self).__name__
        batch_size = self._check_batch_size(batch_size, who=f"{cls}.predict")
        _check_verbose(verbose, f"{cls}.predict")
        steps = _check_count(steps, "steps", f"{cls}.predict", allow_none=True)
        if data_utils.is_batch_source(x):
            batches = (self._input_arrays_for(xb, "predict") for xb, _, _ in
                       data_utils.BatchStream(x, steps, "predict").epoch())
        else:
            xs = self._input_arrays_for(x, "predict input")
            n = len(xs[0])
            if n == 0:
                raise ValueError(f"{cls} {self.name!r}: predict received 0 samples (input shape {xs[0].shape})")
            batches = ([a[i:i + batch_size] for a in xs] for i in range(0, n, batch_size))
        per_output = None
        for xb in batches:
            outs = self._forward_flat(xb, False, fuse=True)
            if per_output is None:
                per_output = [[] for _ in outs]
            for acc, o in zip(per_output, outs):
                acc.append(o)
        if per_output is None:
            raise ValueError(f"{cls}.predict: the data produced no batches")
        return self._pack([np.concatenate(parts, axis=0) for parts in per_output], kind="predict")

    def predict_on_batch(self, x):
        return self._pack(self._forward_flat(self._input_arrays_for(x, "predict_on_batch"), False, fuse=True),
                          kind="predict")



def _single_loss_or_spec(loss, cls):
    from . import losses as losses_mod

    if isinstance(loss, (list, tuple, dict)) and not compile_utils.is_loss_config(loss):
        return loss
    return losses_mod.get(loss)


# ------------------------------------------------------------------ batches


def _split_validation(xs, ys, sws, fraction: float):
    """Keras's validation_split on every array: the last ``N - floor(N (1 - fraction))`` samples, before shuffling."""
    n = len(xs[0])
    split_at = int(np.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"validation_split={fraction} leaves no training or no validation samples out of {n}")
    cut = lambda arrays, part: None if arrays is None else [None if a is None else a[part] for a in arrays]  # noqa: E731
    head, tail = slice(0, split_at), slice(split_at, n)
    return (cut(xs, head), cut(ys, head), cut(sws, head)), (cut(xs, tail), cut(ys, tail), cut(sws, tail))


class _ArraySource:
    """Batches of in-memory arrays (flat lists: one array per input / output); reshuffled every epoch when
    ``shuffle``."""

    def __init__(self, xs, ys, sws, batch_size, shuffle, steps):
        self.xs, self.ys, self.sws = xs, ys, sws
        self.batch_size, self.shuffle, self.steps = batch_size, shuffle, steps
        n = len(xs[0])
        self.n = n
        self.num_batches = -(-n // batch_size) if steps is None else steps

    def epoch(self):
        batches = data_utils.array_batches(self.n, self.batch_size, self.shuffle, global_rng())
        if self.steps is not None:
            batches = batches[: self.steps]
        for idx in batches:
            if not self.shuffle:
                idx = slice(int(idx[0]), int(idx[-1]) + 1)
            yield _take(self.xs, idx), _take(self.ys, idx), _take(self.sws, idx)


def _take(arrays, idx):
    return None if arrays is None else [None if a is None else a[idx] for a in arrays]


class _StreamSource:
    """A generator's batches, standardized to flat lists for the model."""

    def __init__(self, model: Trainer, stream: data_utils.BatchStream):
        self.model, self.stream = model, stream
        self.num_batches = stream.steps

    def epoch(self):
        for batch in self.stream.epoch():
            yield self.model._standardize_batch(batch)


# ------------------------------------------------------------------ argument checks (name the argument and values)


def _check_verbose(verbose, who: str) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, (bool, np.bool_)) or (isinstance(verbose, (int, np.integer)) and verbose in (0, 1, 2)):
        return int(verbose)
    raise ValueError(f"{who}: verbose must be 'auto', 0, 1 or 2, got {verbose!r}")


def _check_count(value, name: str, who: str, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        accepted = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{who}: {name} must be {accepted}, got {value!r}")
    return int(value)


def _check_validation_split(value, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
            not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{who}: validation_split must be a float in [0, 1), got {value!r}")
    return float(value)


def _check_callbacks(callbacks, who: str) -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, cbks.Callback):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise ValueError(f"{who}: callbacks must be a list of tinynn.callbacks.Callback, got "
                         f"{type(callbacks).__name__}")
    bad = [c for c in callbacks if not isinstance(c, cbks.Callback)]
    if bad:
        raise ValueError(f"{who}: callbacks must be tinynn.callbacks.Callback instances, got {type(bad[0]).__name__}")
    return list(callbacks)
