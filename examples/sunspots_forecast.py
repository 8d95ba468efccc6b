"""Forecasting with a generator (the seed's Jena temperature recipe) on yearly sunspot numbers, 1700-2008.

    python examples/sunspots_forecast.py [--epochs 60] [--compare-keras] [--quick]

The data ship inside statsmodels (``datasets/sunspots/sunspots.csv``, read directly). As in the seed's Jena
chapter, a Python generator cuts the series into windows on the fly: each sample is the last ``LOOKBACK``
years and the target is the next year's value; the series is standardised with the training years' mean and
standard deviation, and the loss is the mean absolute error. Training years 1700-1919, validation
1920-1969, test 1970-2008.

The seed's reasoning comes first: before any network, a common-sense baseline — "next year is like this
year" (the naive last-value forecast) — whose MAE a model must beat to be worth anything. Then:

- ``gru``:        GRU(32) -> Dense(1)
- ``conv_gru``:   Conv1D(32, 5, relu) -> MaxPooling1D(2) -> GRU(32) -> Dense(1) (the seed's "convnet to
  shorten long sequences before an RNN" recipe)

Reported: test MAE in sunspot numbers for the baseline and each model, seconds per epoch; learning curves in
examples/out/sunspots_forecast.png (the baseline is drawn as a horizontal line).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
from _helpers import STYLES, cli, parse, parser, pyplot, report, tinynn_test_scores, train
from datasets import sunspots

LOOKBACK, DELAY, BATCH = 24, 1, 16
TRAIN_END_YEAR, VAL_END_YEAR = 1919, 1969
MODELS = ("gru", "conv_gru")


def generator(data: np.ndarray, lookback: int, delay: int, min_index: int, max_index: int, shuffle: bool = False,
              batch_size: int = BATCH, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The seed's Jena generator, for a univariate series: yields ``(samples, targets)`` forever.

    ``samples[j] = data[i - lookback : i]`` as a ``(lookback, 1)`` window and ``targets[j] = data[i + delay - 1]``
    for window ends ``i`` in ``[min_index + lookback, max_index]``; in order (wrapping around) or drawn at random.
    """
    rng = np.random.default_rng(seed)
    i = min_index + lookback
    while True:
        if shuffle:
            rows = rng.integers(min_index + lookback, max_index + 1, size=batch_size)
        else:
            if i + batch_size > max_index + 1:
                i = min_index + lookback
            rows = np.arange(i, min(i + batch_size, max_index + 1))
            i += len(rows)
        samples = np.stack([data[r - lookback : r] for r in rows])[:, :, None].astype("float32")
        targets = np.array([data[r + delay - 1] for r in rows], dtype="float32")[:, None]
        yield samples, targets


def windows(data: np.ndarray, lookback: int, delay: int, min_index: int, max_index: int):
    """Every window of ``[min_index, max_index]`` at once (for evaluation): ``(x (N, lookback, 1), y (N, 1))``."""
    rows = np.arange(min_index + lookback, max_index - delay + 2)
    x = np.stack([data[r - lookback : r] for r in rows])[:, :, None].astype("float32")
    y = data[rows + delay - 1].astype("float32")[:, None]
    return x, y


def builder(kind: str):
    def build(lib):
        L = lib.layers
        conv = [L.Conv1D(32, 5, activation="relu"), L.MaxPooling1D(2)] if kind == "conv_gru" else []
        return lib.Sequential([L.Input(shape=(LOOKBACK, 1)), *conv, L.GRU(32), L.Dense(1)])

    return build


def compile_kwargs(lib):
    return {"optimizer": lib.optimizers.RMSprop(learning_rate=1e-3), "loss": "mae"}


def main(argv=None) -> dict:
    p = parser(__doc__, epochs=60)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="which networks to train")
    args = parse(p, argv)
    years, activity = sunspots()
    train_end = int(np.searchsorted(years, TRAIN_END_YEAR))  # index of the last training year
    val_end = int(np.searchsorted(years, VAL_END_YEAR))
    mean, std = activity[: train_end + 1].mean(), activity[: train_end + 1].std()
    data = (activity - mean) / std
    test_min = val_end + 1 - LOOKBACK  # test windows may look back into the validation years
    val_min = train_end + 1 - LOOKBACK
    x_val, y_val = windows(data, LOOKBACK, DELAY, val_min, val_end)
    x_test, y_test = windows(data, LOOKBACK, DELAY, test_min, len(data) - 1)
    # The seed's common-sense baseline: predict the last value of the window.
    naive = {name: float(np.abs(x[:, -1, 0] - y[:, 0]).mean() * std)
             for name, x, y in (("val", x_val, y_val), ("test", x_test, y_test))}
    print(f"{len(years)} years {years[0]}-{years[-1]}; windows of {LOOKBACK} years; naive last-value forecast: "
          f"validation MAE {naive['val']:.2f}, test MAE {naive['test']:.2f} sunspots")
    n_train_windows = train_end + 1 - LOOKBACK
    steps = 2 if args.quick else max(1, n_train_windows // BATCH)

    def fit_kwargs():
        return {"x": generator(data, LOOKBACK, DELAY, 0, train_end, shuffle=True, seed=args.seed),
                "steps_per_epoch": steps, "epochs": args.epochs, "validation_data": (x_val, y_val)}

    runs = []
    for kind in args.models:
        print(f"\n=== {kind} ===")
        runs += train(kind, builder(kind), compile_kwargs, fit_kwargs, (x_test, y_test), args)
    for r in runs:  # MAE of standardised values -> sunspot numbers
        r.test["mae_sunspots"] = r.test["loss"] * float(std)
    report(runs, "mae_sunspots")
    print(f"{'naive last value':<28} {'-':<9} {naive['test']:>20.4f}")
    path = plot_forecast(runs, naive["val"] / float(std), args.out / "sunspots_forecast.png")
    return {"runs": runs, "naive_test_mae": naive["test"],
            "test_mae": tinynn_test_scores(runs, "mae_sunspots"), "plot": path}


def plot_forecast(runs, naive_val_loss: float, path):
    """The MAE curves of every run with the naive forecast's validation MAE as a horizontal line."""
    plt = pyplot()
    if plt is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(r.label for r in runs))
    for r in runs:
        for prefix, what in (("", "training"), ("val_", "validation")):
            values = r.history.get(prefix + "loss", [])
            ax.plot(np.arange(1, len(values) + 1), values, color=colors[labels.index(r.label)], markersize=3,
                    label=f"{r.label} ({r.framework}) {what}", **STYLES[(r.framework, prefix)])
    ax.axhline(naive_val_loss, color="black", linewidth=1, label="naive last value (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MAE (standardised)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Sunspots: GRU vs Conv1D+GRU against the naive forecast")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"Learning curves saved to {path}")
    return path


if __name__ == "__main__":
    cli(main, sys.argv[1:])
