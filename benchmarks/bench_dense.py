"""M5 benchmark: Input(64) -> Dense(32, relu) -> Dense(32, relu) -> Dense(10, softmax), categorical
cross-entropy, RMSprop, batch 128, float32. tinynn and Keras (TensorFlow) timed in the same process.

    python benchmarks/bench_dense.py        # or `make bench` for every model

Train step = one ``train_on_batch`` (forward, loss, backward, optimizer update); predict = one
``predict_on_batch``. Median of many runs after warm-up.
"""

from __future__ import annotations

import sys

import numpy as np
from common import first_call_ms, format_table, median_ms


def build_tinynn():
    import tinynn as tn
    from tinynn import layers

    model = tn.Sequential([layers.Input(shape=(64,)), layers.Dense(32, activation="relu"),
                           layers.Dense(32, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    return model


def build_keras(weights):
    import keras

    model = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    model.set_weights(weights)
    return model


def run(repeats: int = 200) -> list[dict]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 64)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 128)]
    ours = build_tinynn()
    first_ours = first_call_ms(lambda: ours.train_on_batch(x, y))
    rows = []
    ours_train = median_ms(lambda: ours.train_on_batch(x, y), repeats)
    ours_predict = median_ms(lambda: ours.predict_on_batch(x), repeats)
    try:
        theirs = build_keras(ours.get_weights())
    except ImportError:
        theirs = None
    if theirs is not None:
        first_keras = first_call_ms(lambda: theirs.train_on_batch(x, y))
        keras_train = median_ms(lambda: theirs.train_on_batch(x, y), repeats)
        keras_predict = median_ms(lambda: theirs.predict_on_batch(x), repeats)
    for what, o, k in (("train step", ours_train, keras_train if theirs else None),
                       ("predict", ours_predict, keras_predict if theirs else None)):
        rows.append({"model": "M5 Dense MLP", "what": what, "tinynn ms": f"{o:.3f}",
                     "keras ms": "" if k is None else f"{k:.3f}",
                     "keras/tinynn": "" if k is None else f"{k / o:.1f}x"})
    rows.append({"model": "M5 Dense MLP", "what": "first train call", "tinynn ms": f"{first_ours:.1f}",
                 "keras ms": f"{first_keras:.1f}" if theirs else ""})
    return rows


if __name__ == "__main__":
    table = format_table(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200),
                         ["model", "what", "tinynn ms", "keras ms", "keras/tinynn"])
    print(table)
