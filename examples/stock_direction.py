"""Seed 002's "stock direction" Conv1D on its own synthetic generator, line for line with tinynn.

    python examples/stock_direction.py [--epochs 10] [--compare-keras] [--quick]

The generator draws 50 Gaussian "price" values per sample and labels the sample 1 when the mean of
``x[1:]`` exceeds the mean of ``x[:-1]`` — which is exactly ``x[-1] > x[0]``: only the first and last steps
matter. The seed's network (Conv1D(16, 5, relu) -> MaxPooling1D(4) -> Flatten -> Dense(1, sigmoid), Adam,
batch 32, 10 epochs) sees every position through the flattened feature map, so it can learn that rule; how
well it does on 1,000 training samples is what this example measures, on 2,000 fresh test samples drawn from
the same generator (chance = 50%).

For contrast the example also trains a logistic regression on the raw 50 values (Flatten -> Dense(1, sigmoid)):
the rule is linear in ``x`` (weights -1 on the first step, +1 on the last), so this model should find it,
while the convolution + max-pooling of the seed throws away *where* a value was and struggles. The learning
curves of both go to examples/out/stock_direction.png.
"""

from __future__ import annotations

import sys

from _helpers import cli, parse, parser, plot_curves, report, tinynn_test_scores, train
from datasets import stock_direction

NB_SAMPLES, NB_STEPS, KERNEL_SIZE, FILTERS, POOL_SIZE = 1000, 50, 5, 16, 4


def build(lib):
    """Seed 002's model, with an Input layer in place of ``input_shape=``."""
    return lib.Sequential([
        lib.layers.Input(shape=(NB_STEPS, 1)),
        lib.layers.Conv1D(filters=FILTERS, kernel_size=KERNEL_SIZE, activation="relu"),
        lib.layers.MaxPooling1D(POOL_SIZE),
        lib.layers.Flatten(),
        lib.layers.Dense(1, activation="sigmoid"),
    ])


def build_linear(lib):
    """Logistic regression on the raw series: the rule ``x[-1] > x[0]`` is a linear threshold."""
    return lib.Sequential([
        lib.layers.Input(shape=(NB_STEPS, 1)),
        lib.layers.Flatten(),
        lib.layers.Dense(1, activation="sigmoid"),
    ])


def compile_kwargs(lib):
    return {"loss": "binary_crossentropy", "optimizer": lib.optimizers.Adam(), "metrics": ["acc"]}


def main(argv=None) -> dict:
    args = parse(parser(__doc__, epochs=10), argv)
    n_train, n_test = (200, 200) if args.quick else (NB_SAMPLES, 2 * NB_SAMPLES)
    x_train, y_train = stock_direction(n_train, NB_STEPS, seed=args.seed)
    x_test, y_test = stock_direction(n_test, NB_STEPS, seed=args.seed + 1)
    fit = {"x": x_train, "y": y_train, "epochs": args.epochs, "batch_size": 32, "validation_split": 0.2}
    runs = train("Conv1D (seed 002)", build, compile_kwargs, fit, (x_test, y_test), args)
    runs += train("logistic regression", build_linear, compile_kwargs, fit, (x_test, y_test), args)
    report(runs, "acc")
    path = plot_curves(runs, ["loss", "acc"], args.out / "stock_direction.png",
                       "Seed 002: Conv1D on the synthetic stock-direction generator")
    return {"runs": runs, "test_acc": tinynn_test_scores(runs, "acc"), "plot": path}


if __name__ == "__main__":
    cli(main, sys.argv[1:])
