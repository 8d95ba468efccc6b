"""One LSTM step and its backward pass by hand in plain NumPy, next to tinynn and Keras.

    python examples/lstm_by_hand.py [--seed 0] [--no-keras]

``lstm_step`` and ``lstm_step_backward`` below are the LSTM equations of docs/recurrent.md for one time step
(T = 1), about twenty lines of NumPy: the forward from x, h_0, c_0 to h_1, c_1, and the backward from the
gradients δh, δc reaching h_1, c_1 to δx, δh_0, δc_0 and the weight gradients. The script runs the same step
through ``tinynn.layers.LSTM`` (``return_state=True``, ``initial_state=[h_0, c_0]``) and, when it is installed,
through ``keras.layers.LSTM`` with a ``tf.GradientTape``, all in float64 from the same random weights, biases
and upstream gradients, and prints the largest absolute difference of every quantity. Without Keras it says so
and compares NumPy with tinynn only. Exit status 0 when everything agrees to 1e-12.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

TOLERANCE = 1e-12  # float64, values of order 1
QUANTITIES = ("h", "c", "x", "h0", "c0", "kernel", "recurrent_kernel", "bias")


# ------------------------------------------------------------------------------------------ by hand, in NumPy
def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def lstm_step(x, h0, c0, W, U, b) -> tuple[np.ndarray, np.ndarray, tuple]:
    """z = x W + h_0 U + b; gates in Keras's order i, f, c (written g), o; returns h_1, c_1 and a cache."""
    u = h0.shape[1]
    z = x @ W + h0 @ U + b
    i, f, g, o = sigmoid(z[:, :u]), sigmoid(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), sigmoid(z[:, 3 * u:])
    c = f * c0 + i * g
    h = o * np.tanh(c)
    return h, c, (x, h0, c0, i, f, g, o, c)


def lstm_step_backward(dh, dc, cache, W, U) -> dict[str, np.ndarray]:
    """From δh, δc (reaching h_1, c_1) to the gradients of the inputs, the initial states and the weights."""
    x, h0, c0, i, f, g, o, c = cache
    tc = np.tanh(c)
    do = dh * tc  # δo = δh ⊙ φ(c)
    dcbar = dc + dh * o * (1 - tc**2)  # δc̄ = δc + φ'(c) ⊙ δh ⊙ o
    di, df, dg = dcbar * g, dcbar * c0, dcbar * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1)
    return {"x": dz @ W.T, "h0": dz @ U.T, "c0": dcbar * f,
            "kernel": x.T @ dz, "recurrent_kernel": h0.T @ dz, "bias": dz.sum(axis=0)}


# ------------------------------------------------------------------------------------------ the same in tinynn
def tinynn_step(x, h0, c0, W, U, b, dh, dc) -> dict[str, np.ndarray]:
    from tinynn import layers

    lstm = layers.LSTM(h0.shape[1], return_state=True, dtype="float64")
    seq = x[:, None, :]  # one time step
    lstm(seq, initial_state=[h0, c0])  # builds the weights
    lstm.set_weights([W, U, b])
    _, h, c = lstm(seq, initial_state=[h0, c0])
    dx, (dh0, dc0) = lstm.backward([dh, None, dc])  # [δ output (= δh_1), δ returned h_1 (none), δc_1]
    dW, dU, db = lstm.gradients
    return {"h": h, "c": c, "x": dx[:, 0], "h0": dh0, "c0": dc0, "kernel": dW, "recurrent_kernel": dU, "bias": db}


# ------------------------------------------------------------------------------------------ and in Keras
def import_keras() -> tuple | None:
    """(keras, tensorflow), or None when they are not installed."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        return None
    return keras, tf


def keras_step(keras, tf, x, h0, c0, W, U, b, dh, dc) -> dict[str, np.ndarray]:
    lstm = keras.layers.LSTM(h0.shape[1], return_state=True, dtype="float64")
    seq, h0_t, c0_t = (tf.constant(a) for a in (x[:, None, :], h0, c0))
    lstm.build(seq.shape)
    lstm.set_weights([W, U, b])
    with tf.GradientTape() as tape:
        tape.watch([seq, h0_t, c0_t])
        _, h, c = lstm(seq, initial_state=[h0_t, c0_t])
        loss = tf.reduce_sum(h * dh) + tf.reduce_sum(c * dc)  # so that ∂loss/∂h = δh and ∂loss/∂c = δc
    grads = tape.gradient(loss, [seq, h0_t, c0_t, *lstm.trainable_weights])
    values = [h, c, grads[0][:, 0], *grads[1:]]
    return dict(zip(QUANTITIES, (np.asarray(v) for v in values)))


# ------------------------------------------------------------------------------------------ comparison
def random_problem(seed: int, batch: int = 3, n_in: int = 4, units: int = 5) -> dict[str, np.ndarray]:
    """Random non-symmetric weights, a non-zero bias, random states and random upstream gradients."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(batch, n_in)), "h0": rng.normal(size=(batch, units)),
        "c0": rng.normal(size=(batch, units)), "W": rng.normal(scale=0.5, size=(n_in, 4 * units)),
        "U": rng.normal(scale=0.5, size=(units, 4 * units)), "b": rng.normal(scale=0.5, size=4 * units),
        "dh": rng.normal(size=(batch, units)), "dc": rng.normal(size=(batch, units)),
    }


def main(seed: int = 0, use_keras: bool = True) -> dict[str, dict[str, float]]:
    """Print and return the largest |difference| of every quantity: {'tinynn': {...}, 'keras': {...}}."""
    p = random_problem(seed)
    h, c, cache = lstm_step(p["x"], p["h0"], p["c0"], p["W"], p["U"], p["b"])
    by_hand = {"h": h, "c": c, **lstm_step_backward(p["dh"], p["dc"], cache, p["W"], p["U"])}
    others = {"tinynn": tinynn_step(**p)}
    found = import_keras() if use_keras else None
    if found is not None:
        others["keras"] = keras_step(*found, **p)
    elif use_keras:
        print("Keras is not installed (pip install keras tensorflow-cpu): comparing NumPy with tinynn only.")
    diffs = {name: {q: float(np.max(np.abs(by_hand[q] - got[q]))) for q in QUANTITIES} for name, got in others.items()}
    x = p["x"]
    print(f"one LSTM step, batch {x.shape[0]}, {x.shape[1]} inputs, {p['h0'].shape[1]} units, float64: "
          "max |difference| from the NumPy lines")
    print(f"{'quantity':<18}" + "".join(f"{'NumPy vs ' + name:>20}" for name in diffs))
    for q in QUANTITIES:
        label = q if q in ("h", "c") else f"δ{q}"
        print(f"{label:<18}" + "".join(f"{d[q]:>20.1e}" for d in diffs.values()))
    worst = max(max(d.values()) for d in diffs.values())
    print(f"all agree to {TOLERANCE:g}" if worst <= TOLERANCE else f"DISAGREE: worst difference {worst:.3g}")
    return diffs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-keras", action="store_true", help="compare NumPy with tinynn only")
    args = parser.parse_args()
    result = main(args.seed, use_keras=not args.no_keras)
    sys.exit(0 if max(max(d.values()) for d in result.values()) <= TOLERANCE else 1)
