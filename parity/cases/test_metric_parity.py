"""Metrics against Keras: 'accuracy' resolved from shapes, and each metric's value, computed by Keras here."""

import numpy as np
import pytest

from tinynn import metrics

CASES = {
    # name: (y_true maker, y_pred maker)
    "binary (B,1)": (lambda r: (r.random((20, 1)) > 0.5) * 1.0, lambda r: r.random((20, 1))),
    "binary labels (B,)": (lambda r: (r.random(20) > 0.5) * 1.0, lambda r: r.random((20, 1))),
    "multiclass one-hot": (lambda r: np.eye(4)[r.integers(0, 4, 20)], lambda r: r.random((20, 4))),
    "sparse (B,)": (lambda r: r.integers(0, 4, 20), lambda r: r.random((20, 4))),
    "sparse (B,1)": (lambda r: r.integers(0, 4, (20, 1)), lambda r: r.random((20, 4))),
    "multilabel": (lambda r: (r.random((20, 4)) > 0.5) * 1.0, lambda r: r.random((20, 4))),
    "exact 0.5 threshold": (lambda r: np.ones((4, 1)), lambda r: np.full((4, 1), 0.5)),
}


def keras_metric_value(name, y_true, y_pred, metric=None):
    """Keras's value of the metric ``name`` (or of the Keras metric object ``metric`` named ``name``) over
    ``evaluate`` in batches of 7, as ``fit`` accumulates it."""
    import keras

    model = keras.Sequential([keras.Input(shape=y_pred.shape[1:]), keras.layers.Identity()])
    model.compile(loss=lambda yt, yp: keras.ops.sum(yp) * 0.0, metrics=[metric or name])  # only the metric matters
    logs = model.evaluate(y_pred, y_true, verbose=0, return_dict=True, batch_size=7)
    return logs[name]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", ["accuracy", "acc"])
def test_accuracy_resolution_matches_keras(case, name):
    rng = np.random.default_rng(0)
    y_true, y_pred = CASES[case][0](rng), CASES[case][1](rng)
    ours = metrics.get(name, y_true.shape, y_pred.shape)
    ours.update_state(y_true[:7], y_pred[:7])
    ours.update_state(y_true[7:], y_pred[7:])
    assert ours.name == name
    assert abs(ours.result() - keras_metric_value(name, y_true, y_pred)) < 1e-6


@pytest.mark.parametrize("name", ["mae", "mse", "binary_accuracy", "categorical_accuracy"])
def test_named_metrics_match_keras(name):
    rng = np.random.default_rng(1)
    y_true = (rng.random((15, 3)) > 0.5) * 1.0
    y_pred = rng.random((15, 3))
    ours = metrics.get(name)
    ours.update_state(y_true, y_pred)
    assert abs(ours.result() - keras_metric_value(name, y_true, y_pred)) < 1e-6


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.7])
def test_binary_accuracy_threshold_matches_keras(threshold):
    """``BinaryAccuracy(threshold=t)``: predictions > t count as 1 (values exactly at a threshold included)."""
    import keras

    rng = np.random.default_rng(2)
    y_true = (rng.random((21, 2)) > 0.5) * 1.0
    y_pred = rng.random((21, 2))
    y_pred[:3] = threshold  # exactly at the threshold: not above it, so a 0 (labels 1 there: an inclusive
    y_true[:3] = 1.0  # threshold would turn all 6 entries right; with mixed labels the accuracy could stay put)
    ours = metrics.BinaryAccuracy(threshold=threshold)
    ours.update_state(y_true[:7], y_pred[:7])
    ours.update_state(y_true[7:], y_pred[7:])
    ref = keras_metric_value("bin_acc", y_true, y_pred, keras.metrics.BinaryAccuracy(name="bin_acc",
                                                                                     threshold=threshold))
    assert abs(ours.result() - ref) < 1e-6
