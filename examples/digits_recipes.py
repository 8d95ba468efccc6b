"""Seed 003's Dense recipes, one per problem type, on scikit-learn's handwritten digits (shipped offline).

Every recipe is the seed's two ``Dense(32, relu)`` layers and RMSprop; only the last layer and the loss change:

=============  ================================  =========================  ===============================
recipe         target                            last layer                 loss (metric)
=============  ================================  =========================  ===============================
binary         digit >= 5                        Dense(1, sigmoid)          binary_crossentropy (accuracy)
multiclass     the digit, one-hot                Dense(10, softmax)         categorical_crossentropy (acc.)
sparse         the digit, integer                Dense(10, softmax)         sparse_categorical_crossentropy
multilabel     [digit >= 5, digit is even]       Dense(2, sigmoid)          binary_crossentropy (binary_acc.)
regression     the bottom 4 rows from the top 4  Dense(32) (no activation)  mse (mae)
=============  ================================  =========================  ===============================

    python examples/digits_recipes.py [--epochs 30] [--compare-keras] [--quick]

Prints each model's summary and the progress bar, then a table of test metrics and seconds per epoch, and
saves the learning curves to examples/out/digits_recipes.png. The regression recipe is also compared with the
baseline that predicts the mean training image's bottom half.

A pitfall the multilabel recipe shows: with two sigmoid outputs, Keras resolves ``metrics=["accuracy"]`` to
*categorical* accuracy (argmax of the two labels against argmax of the targets, meaningless here), because
its rule looks only at the shapes; ask for ``"binary_accuracy"`` (the fraction of correct labels).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _helpers import cli, parse, parser, plot_curves, report, train
from datasets import digits

RECIPES = ("binary", "multiclass", "sparse", "multilabel", "regression")


def targets(x: np.ndarray, d: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Inputs and targets of each recipe from images ``x (N, 64)`` and digits ``d (N,)``."""
    top, bottom = x[:, :32], x[:, 32:]
    return {
        "binary": (x, (d >= 5).astype("float32")[:, None]),
        "multiclass": (x, np.eye(10, dtype="float32")[d]),
        "sparse": (x, d.astype("int64")),
        "multilabel": (x, np.stack([d >= 5, d % 2 == 0], axis=1).astype("float32")),
        "regression": (top, bottom),
    }


def recipe(name: str):
    """``(build(lib), compile_kwargs(lib), metric)`` for one recipe: the seed's code with ``lib`` for keras."""
    n_in = 32 if name == "regression" else 64
    head = {"binary": (1, "sigmoid"), "multiclass": (10, "softmax"), "sparse": (10, "softmax"),
            "multilabel": (2, "sigmoid"), "regression": (32, None)}[name]
    loss = {"binary": "binary_crossentropy", "multiclass": "categorical_crossentropy",
            "sparse": "sparse_categorical_crossentropy", "multilabel": "binary_crossentropy",
            "regression": "mse"}[name]
    metric = {"regression": "mae", "multilabel": "binary_accuracy"}.get(name, "accuracy")

    def build(lib):
        return lib.Sequential([
            lib.layers.Input(shape=(n_in,)),
            lib.layers.Dense(32, activation="relu"),
            lib.layers.Dense(32, activation="relu"),
            lib.layers.Dense(head[0], activation=head[1]),
        ])

    def compile_kwargs(lib):
        return {"optimizer": lib.optimizers.RMSprop(learning_rate=1e-3), "loss": loss, "metrics": [metric]}

    return build, compile_kwargs, metric


def main(argv=None) -> dict:
    args = parse(parser(__doc__, epochs=30), argv)
    x, d = digits()
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, d = x[order], d[order]
    if args.quick:
        x, d = x[:400], d[:400]
    split = int(0.8 * len(x))
    train_sets, test_sets = targets(x[:split], d[:split]), targets(x[split:], d[split:])
    runs, results = [], {}
    start = time.perf_counter()
    for name in RECIPES:
        print(f"\n=== recipe: {name} ===")
        build, compile_kwargs, metric = recipe(name)
        xs, ys = train_sets[name]
        fit = {"x": xs, "y": ys, "batch_size": 32, "epochs": args.epochs, "validation_split": 0.2}
        new = train(name, build, compile_kwargs, fit, test_sets[name], args)
        runs += new
        results[name] = {r.framework: r.test[metric] for r in new}
    x_top, bottom = train_sets["regression"]
    baseline = float(np.abs(test_sets["regression"][1] - bottom.mean(axis=0)).mean())
    results["regression_baseline_mae"] = baseline
    print()
    for metric, names in (("accuracy", RECIPES[:3]), ("binary_accuracy", RECIPES[3:4]), ("mae", RECIPES[4:])):
        report([r for r in runs if r.label in names], metric)
    print(f"regression baseline (mean training bottom half): test mae {baseline:.4f}")
    print(f"total time {time.perf_counter() - start:.1f} s")
    path = plot_curves([r for r in runs if r.label != "regression"], ["loss", "accuracy", "binary_accuracy"],
                       args.out / "digits_recipes.png", "Seed 003 Dense recipes on scikit-learn digits")
    plot_curves([r for r in runs if r.label == "regression"], ["loss", "mae"],
                args.out / "digits_regression.png", "Regression recipe: bottom half of a digit from its top half")
    results["plot"] = path
    results["runs"] = runs
    return results


if __name__ == "__main__":
    cli(main, sys.argv[1:])
