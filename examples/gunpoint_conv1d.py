"""Time-series classification with Conv1D on GunPoint (UCR archive, shipped inside sktime / aeon).

    python examples/gunpoint_conv1d.py [--epochs 150] [--compare-keras] [--quick]

An actor either draws a gun from a hip holster or points a finger; the x coordinate of the hand over 150
video frames is the series (50 training and 150 test series, the archive's split). A small 1D convnet —
Conv1D(16, 7, relu) -> MaxPooling1D(3) -> Conv1D(32, 5, relu) -> GlobalMaxPooling1D -> Dropout(0.3) ->
Dense(1, sigmoid), RMSprop — learns the shape of the motion (the dip when the gun leaves the holster)
wherever it happens in the window. Reported: test accuracy next to the archive's classic baseline, the
1-nearest-neighbour classifier with Euclidean distance (computed here, not copied). Curves go to
examples/out/gunpoint_conv1d.png.
"""

from __future__ import annotations

import sys

import numpy as np
from _helpers import cli, parse, parser, plot_curves, report, train
from datasets import gunpoint


def build(lib):
    return lib.Sequential([
        lib.layers.Input(shape=(150, 1)),
        lib.layers.Conv1D(16, 7, activation="relu"),
        lib.layers.MaxPooling1D(3),
        lib.layers.Conv1D(32, 5, activation="relu"),
        lib.layers.GlobalMaxPooling1D(),
        lib.layers.Dropout(0.3),
        lib.layers.Dense(1, activation="sigmoid"),
    ])


def compile_kwargs(lib):
    return {"optimizer": lib.optimizers.RMSprop(learning_rate=3e-3), "loss": "binary_crossentropy",
            "metrics": ["accuracy"]}


def one_nn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy of 1-nearest-neighbour with Euclidean distance (the UCR archive's reference classifier)."""
    a, b = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    d2 = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    return float((y_train[d2.argmin(axis=1)] == y_test).mean())


def main(argv=None) -> dict:
    args = parse(parser(__doc__, epochs=150), argv)
    (x_train, y_train), (x_test, y_test) = gunpoint()
    if args.quick:
        x_test, y_test = x_test[:40], y_test[:40]
    # Shuffle once (seeded): validation_split takes the last 20% before any shuffling, as in Keras.
    order = np.random.default_rng(args.seed).permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order].astype("float32")
    fit = {"x": x_train, "y": y_train, "epochs": args.epochs, "batch_size": 8, "validation_split": 0.2}
    runs = train("Conv1D", build, compile_kwargs, fit, (x_test, y_test.astype("float32")), args)
    baseline = one_nn_accuracy(x_train, y_train, x_test, y_test)
    report(runs, "accuracy")
    print(f"1-NN Euclidean baseline on the same test set: accuracy {baseline:.4f}")
    path = plot_curves(runs, ["loss", "accuracy"], args.out / "gunpoint_conv1d.png",
                       "GunPoint: Conv1D time-series classifier")
    return {"runs": runs, "test_accuracy": runs[0].test["accuracy"], "baseline_1nn": baseline, "plot": path}


if __name__ == "__main__":
    cli(main, sys.argv[1:])
