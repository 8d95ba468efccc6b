"""What every example shares: command-line flags, timed training, the Keras twin, learning-curve plots.

An example describes its network once, as ``build(lib)`` where ``lib`` is either the ``tinynn`` module or the
``keras`` module: both have ``lib.Sequential``, ``lib.layers``, ``lib.optimizers`` and ``lib.callbacks`` with the
same names and arguments, which is the point of tinynn. ``--compare-keras`` builds the Keras twin with the same
``build``, copies tinynn's initial weights into it (``set_weights``: same layouts), trains it on the same
batches and draws both learning curves in one figure.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

import tinynn as tn

OUT = pathlib.Path(__file__).resolve().parent / "out"


def parser(description: str, epochs: int) -> argparse.ArgumentParser:
    """The flags every example takes: ``--epochs``, ``--quick``, ``--compare-keras``, ``--seed``, ``--out``."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {epochs}; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a small subset and short training (the smoke test)")
    p.add_argument("--compare-keras", action="store_true",
                   help="also train the same architecture in Keras from the same initial weights and plot both")
    p.add_argument("--seed", type=int, default=0, help="random seed (initial weights, shuffling, dropout)")
    p.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the PNG of the learning curves")
    p.set_defaults(default_epochs=epochs)
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.quick else args.default_epochs
    if args.epochs < 1:
        p.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def cli(main: Callable[[Sequence[str]], object], argv: Sequence[str]) -> None:
    """Run an example's ``main``; a missing data package ends it with the pip command, not a traceback."""
    from datasets import MissingDataPackage

    try:
        main(argv)
    except MissingDataPackage as err:
        raise SystemExit(f"{err}") from None


def keras_module():
    """``import keras`` on the TensorFlow backend, quietly; a clear message when it is not installed."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
    except ImportError as err:
        raise SystemExit("--compare-keras needs Keras 3 and TensorFlow: pip install -e '.[test]'  "
                         "(or: pip install tensorflow-cpu keras)") from err
    return keras


def epoch_timer(lib):
    """A ``lib.callbacks.Callback`` that records the wall time of each epoch in ``.seconds``."""

    class EpochTimer(lib.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t0)

    return EpochTimer()


@dataclass
class Run:
    """One trained model: which framework, its History dict, seconds per epoch, test metrics."""

    label: str
    framework: str
    model: object
    history: dict
    epoch_seconds: list[float]
    test: dict = field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        """Median epoch time, leaving out the first epoch (numba's first-call compilation, TF's tracing)."""
        times = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.median(times)

    @property
    def first_epoch_seconds(self) -> float:
        return self.epoch_seconds[0]


def train(label: str, build: Callable, compile_kwargs: Callable[[object], dict], fit_kwargs: dict | Callable,
          test_data: tuple | None, args: argparse.Namespace, summary: bool = True) -> list[Run]:
    """Build and train the tinynn model (and its Keras twin with ``--compare-keras``); evaluate on test data.

    ``compile_kwargs(lib)`` returns the ``compile`` arguments (a function so each framework gets its own
    optimizer object); ``fit_kwargs`` is the ``fit`` arguments, or a function returning them (for fresh
    generators per framework). With ``--compare-keras`` both frameworks train with ``shuffle=False`` on
    identical batches, so their curves differ only by dropout masks and float32 rounding.
    """
    tn.set_random_seed(args.seed)
    model = build(tn)
    if summary:
        model.summary()
    initial_weights = [w.copy() for w in model.get_weights()]

    def fit_args() -> dict:
        kwargs = dict(fit_kwargs() if callable(fit_kwargs) else fit_kwargs)
        if args.compare_keras and "y" in kwargs:  # arrays (a generator fixes its own order)
            kwargs["shuffle"] = False
        return kwargs

    runs = [_fit_and_test(label, "tinynn", tn, model, compile_kwargs, fit_args(), test_data, verbose=1)]
    if args.compare_keras:
        keras = keras_module()
        keras.utils.set_random_seed(args.seed)
        twin = build(keras)
        twin.set_weights(initial_weights)
        print(f"\n--compare-keras: the same {label} in Keras {keras.__version__} from the same initial weights")
        runs.append(_fit_and_test(label, "keras", keras, twin, compile_kwargs, fit_args(), test_data, verbose=2))
    return runs


def _fit_and_test(label, framework, lib, model, compile_kwargs, fit_kwargs, test_data, verbose) -> Run:
    model.compile(**compile_kwargs(lib))
    timer = epoch_timer(lib)
    history = model.fit(**fit_kwargs, callbacks=[timer], verbose=verbose)
    run = Run(label, framework, model, {k: [float(v) for v in vs] for k, vs in history.history.items()},
              timer.seconds)
    if test_data is not None:
        values = model.evaluate(*test_data, verbose=0, return_dict=True)
        run.test = {k: float(v) for k, v in values.items()}
    return run


def report(runs: Sequence[Run], metric: str) -> str:
    """A table: model, framework, test ``metric``, median seconds per epoch, first epoch."""
    lines = [f"{'model':<28} {'framework':<9} {'test ' + metric:>20} {'s/epoch':>9} {'1st epoch':>10}"]
    for r in runs:
        value = r.test.get(metric, float("nan"))
        lines.append(f"{r.label:<28} {r.framework:<9} {value:>20.4f} {r.seconds_per_epoch:>9.2f} "
                     f"{r.first_epoch_seconds:>10.2f}")
    table = "\n".join(lines)
    print("\n" + table)
    return table


def tinynn_test_scores(runs: Sequence[Run], metric: str) -> dict[str, float]:
    """{model label: test ``metric``} of the tinynn runs (what each example's ``main`` returns)."""
    return {r.label: r.test[metric] for r in runs if r.framework == "tinynn"}


STYLES = {("tinynn", ""): dict(linestyle="-", marker="o"),
          ("tinynn", "val_"): dict(linestyle=":", marker="o"),
          ("keras", ""): dict(linestyle="--", marker="s", markerfacecolor="none"),
          ("keras", "val_"): dict(linestyle="-.", marker="s", markerfacecolor="none")}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None (with a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed, no plot: pip install matplotlib)")
        return None
    return plt


def plot_curves(runs: Sequence[Run], keys: Sequence[str], path: pathlib.Path, title: str) -> pathlib.Path | None:
    """One panel per history key; colour = model, line style = framework and training / validation."""
    plt = pyplot()
    if plt is None:
        return None
    from matplotlib.lines import Line2D

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys) + 2.2, 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(r.label for r in runs))
    used_styles = []
    for ax, key in zip(axes[0], keys):
        for r in runs:
            color = colors[labels.index(r.label) % len(colors)]
            for prefix in ("", "val_"):
                values = r.history.get(prefix + key)
                if not values:
                    continue
                style = STYLES[(r.framework, prefix)]
                if (r.framework, prefix) not in used_styles:
                    used_styles.append((r.framework, prefix))
                ax.plot(np.arange(1, len(values) + 1), values, color=color, markersize=4, **style)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color=colors[i % len(colors)], linewidth=3, label=label)
               for i, label in enumerate(labels)]
    handles += [Line2D([], [], color="gray", label=f"{fw} {'validation' if p else 'training'}", **STYLES[(fw, p)])
                for fw, p in used_styles]
    fig.legend(handles=handles, loc="center right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"Learning curves saved to {path}")
    return path
