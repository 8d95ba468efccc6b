"""`make demo`: train a small network on real data (scikit-learn's handwritten digits, shipped offline).

8x8 digit images -> Dense(64, relu) -> Dropout -> Dense(64, relu) -> Dense(10, softmax), RMSprop,
categorical cross-entropy: the multiclass recipe of the seed tutorials, written exactly as in Keras but
with `from tinynn import ...`. Prints the summary, the Keras-style progress bar, the test accuracy, and
saves the learning curves to examples/out/demo_curves.png.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

import tinynn as tn
from tinynn import layers, optimizers

OUT = pathlib.Path(__file__).parent / "out"


def load_digits():
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        sys.exit("This demo needs scikit-learn: pip install -e '.[examples]'")
    digits = sk_load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


def main() -> None:
    tn.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits()
    y_train_onehot = np.eye(10, dtype="float32")[y_train]
    y_test_onehot = np.eye(10, dtype="float32")[y_test]

    model = tn.Sequential([
        layers.Input(shape=(64,)),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.summary()
    model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train_onehot, epochs=20, batch_size=32, validation_split=0.2)
    elapsed = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test_onehot, verbose=0)
    print(f"\nTest accuracy on {len(x_test)} held-out digits: {acc:.4f} (loss {loss:.4f}); "
          f"training took {elapsed:.1f} s")

    model_path = OUT / "digits_mlp.npz"
    OUT.mkdir(exist_ok=True)
    model.save(model_path)
    reloaded = tn.load_model(model_path)
    same = np.array_equal(reloaded.predict(x_test), model.predict(x_test))
    print(f"Saved to {model_path}; reloaded model gives identical predictions: {same}")
    plot(history.history, OUT / "demo_curves.png")


def plot(history: dict, path: pathlib.Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: skipping the plot; pip install -e '.[examples]')")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[key], "o-", label=f"training {key}")
        ax.plot(epochs, history["val_" + key], "s-", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.suptitle("tinynn: Dense network on scikit-learn digits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"Learning curves saved to {path}")


if __name__ == "__main__":
    main()
