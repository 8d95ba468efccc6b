"""Training callbacks with Keras's hooks: History, EarlyStopping, ModelCheckpoint, ProgbarLogger."""

from __future__ import annotations

import sys
import time


class Callback:
    """Hooks called by ``fit``; ``self.model`` is set before training starts."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records the epoch logs: ``history.history['loss']`` is the list of epoch losses."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _monitor_mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta = abs(min_delta) * (1 if self.mode == "max" else -1)
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.stopped_epoch = 0

    def _improved(self, value, reference) -> bool:
        if reference is None:
            return True
        if self.mode == "max":
            return value - self.min_delta > reference
        return value - self.min_delta < reference

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not in the logs; available: {sorted(logs or {})}"
            )
        if epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._improved(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self._improved(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.verbose:
                best = f"best {self.monitor} {self.best:.4f} at epoch {self.best_epoch + 1}"
                print(f"Epoch {epoch + 1}: early stopping ({best})")


class ModelCheckpoint(Callback):
    """Save the model (or weights) after each epoch; ``filepath`` may contain ``{epoch}`` and log keys."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto"):
        super().__init__()
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.mode = _monitor_mode(monitor, mode)
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise ValueError(f"ModelCheckpoint: monitor {self.monitor!r} is not in the logs {sorted(logs)}")
            better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
            if not better:
                return
        # model.save / save_weights are atomic (tinynn.saving.atomic): a failed save leaves the last checkpoint
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.save_best_only:
            self.best = value
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")


def format_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def _format_time(seconds: float) -> str:
    return f"{seconds:.0f}s"


def _format_step_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


class ProgbarLogger(Callback):
    """Keras-style progress: ``12/12 ━━━━━━━━━━━━━━━━━━━━ 0s 3ms/step - loss: 0.6931`` (verbose=1) or one
    line per epoch (verbose=2)."""

    WIDTH = 20

    def __init__(self, verbose: int = 1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.steps = self.params.get("steps")
        if self.verbose:
            self.stream.write(f"Epoch {epoch + 1}/{self.params.get('epochs')}\n")

    def _line(self, done, logs, final=False) -> str:
        elapsed = time.perf_counter() - self.epoch_start
        per_step = elapsed / max(done, 1)
        total = self.steps
        if total:
            filled = int(self.WIDTH * done / total)
            bar = "━" * filled + " " * (self.WIDTH - filled)
            head = f"{done}/{total} {bar} "
        else:
            head = f"{done} "
        eta = elapsed if final or not total else per_step * (total - done)
        text = f"{head}{_format_time(eta)} {_format_step_time(per_step)}/step"
        if logs:
            text += " - " + format_logs(logs)
        return text

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose == 1 and self.stream.isatty():
            self.stream.write("\r" + self._line(batch + 1, logs))
            self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        done = self.params.get("steps_done", self.steps)
        if self.verbose == 1:
            prefix = "\r" if self.stream.isatty() else ""
            self.stream.write(prefix + self._line(done, logs, final=True) + "\n")
        elif self.verbose == 2:
            elapsed = time.perf_counter() - self.epoch_start
            self.stream.write(
                f"{done}/{self.steps} - {_format_time(elapsed)} - {_format_step_time(elapsed / max(done or 1, 1))}/step"
                + (" - " + format_logs(logs) if logs else "") + "\n"
            )
        self.stream.flush()


class CallbackList:
    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        self.params = params
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook):
        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call

