"""Functional models against Keras 3: the same graph built by both from one ``build(lib)`` function, the same
weights (``set_weights``: the layer order is Keras's, so the lists line up), compared in the test.

- A two-input, two-output model with a shared layer, for each merge layer: both outputs, every weight gradient
  (the shared layer's summed over its two calls) and both input gradients for random upstream gradients,
  against Keras's gradients on the current backend (:func:`parity.model_vjp.model_vjp`). float64 ≤ 1e-10
  relative; float32 ≤ 1e-5 against Keras's float64 twin of the same model, relative to the scale of the whole
  result (all outputs, all input gradients, all weight gradients), as in :mod:`parity.harness`.
- Training: a two-input, two-output model with a shared layer and every merge layer, ``loss_weights`` and
  metrics per output, 3 epochs (validation_split, shuffle=False): every History entry under Keras 3.15's own key
  names, and the final weights. float64 ≤ 1e-9, float32 ≤ 1e-4. Dict outputs with a dict of losses, too.
- ``model.vjp`` with respect to an intermediate layer's output and to the input (float and masked-id models,
  Sequential and functional) against Keras's gradients with respect to those tensors (``model_vjp``).
- The 1D Grad-CAM heat map of ``examples/look_inside.py`` against the same computation on Keras's gradients.
- The functional config: a Keras config read into tinynn and written back for Keras; predictions equal.
"""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import tinynn as tn
from parity import backend, recorder
from parity.harness import Check, LayerReport, compare, paired, result_scale
from parity.model_vjp import model_vjp
from parity.training import TRAINING_TOLERANCE, keras_floatx, tinynn_floatx

MERGES = {
    "Add": lambda L, d: L.Add(dtype=d),
    "Subtract": lambda L, d: L.Subtract(dtype=d),
    "Multiply": lambda L, d: L.Multiply(dtype=d),
    "Average": lambda L, d: L.Average(dtype=d),
    "Maximum": lambda L, d: L.Maximum(dtype=d),
    "Minimum": lambda L, d: L.Minimum(dtype=d),
    "Concatenate": lambda L, d: L.Concatenate(dtype=d),
    "Dot": lambda L, d: L.Dot(axes=1, normalize=True, dtype=d),
}


def two_in_two_out(lib, dtype, merge):
    """Inputs a (6,) and b (4,); a shared Dense reads a and a projection of b; the merge of its two outputs feeds
    a sigmoid score (with the shared output again) and a 3-way linear head."""
    L = lib.layers
    a = L.Input(shape=(6,), name="a", dtype=dtype)
    b = L.Input(shape=(4,), name="b", dtype=dtype)
    shared = L.Dense(5, activation="tanh", name="shared", dtype=dtype)
    ha = shared(a)
    hb = shared(L.Dense(6, activation="relu", name="b_proj", dtype=dtype)(b))
    m = MERGES[merge](L, dtype)([ha, hb])
    score = L.Dense(1, activation="sigmoid", name="score", dtype=dtype)(L.Concatenate(dtype=dtype)([m, ha]))
    kind = L.Dense(3, name="kind", dtype=dtype)(m)
    return lib.Model([a, b], [score, kind])


def every_merge(lib, dtype):
    """A shared layer and all eight merge layers in one graph (for the training runs)."""
    L = lib.layers
    a = L.Input(shape=(6,), name="a", dtype=dtype)
    b = L.Input(shape=(4,), name="b", dtype=dtype)
    shared = L.Dense(5, activation="tanh", name="shared", dtype=dtype)
    ha, hb = shared(a), shared(L.Dense(6, activation="relu", name="b_proj", dtype=dtype)(b))
    merged = [MERGES[name](L, dtype)([ha, hb]) for name in MERGES]
    h = L.Concatenate(name="all", dtype=dtype)(merged)
    score = L.Dense(1, activation="sigmoid", name="score", dtype=dtype)(h)
    kind = L.Dense(3, name="kind", dtype=dtype)(L.Dense(4, activation="relu", name="hidden", dtype=dtype)(h))
    return lib.Model([a, b], [score, kind])


def _random_weights(model, rng):
    weights = [rng.normal(0.0, 0.5, size=w.shape).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(weights)
    return weights


def _twins(build, dtype, seed, *args):
    import keras

    with tinynn_floatx(dtype), keras_floatx(dtype):
        ours, theirs = build(tn, dtype, *args), build(keras, dtype, *args)
    # the same layer order (Keras's depth-first traversal), so the weight lists line up
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in theirs.layers]
    theirs.set_weights(_random_weights(ours, np.random.default_rng(seed)))
    return ours, theirs


def _keras64(build, theirs, *args):
    """For a float32 case: Keras's float64 twin of ``theirs`` (the same weights, cast exactly), else None."""
    import keras

    if theirs.dtype != "float32" and not any(w.dtype == "float32" for w in theirs.weights):
        return None
    with keras_floatx("float64"):
        twin = build(keras, "float64", *args)
    twin.set_weights([np.asarray(w, np.float64) for w in theirs.get_weights()])
    return twin


def _check_result(report, labels, ours, ref, ref64, dtype, what):
    """One result (all outputs, all input gradients, all weight gradients, ...) paired strictly with Keras's;
    a float32 case against Keras's float64 result, relative to that whole result's scale."""
    scale = None if ref64 is None else result_scale(ref64)
    if ref64 is not None and len(ref64) != len(ref):
        report.checks.append(Check(f"{what} count {len(ref)} vs float64 {len(ref64)}", np.inf, np.inf, 0.0))
        return
    for k, (o, r) in enumerate(paired(what, list(ours), list(ref), report.checks)):
        if r is None:
            continue
        r64 = None if ref64 is None else ref64[k]
        report.checks.append(compare(labels[k], o, r, dtype, ref64=r64, scale=scale))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("merge", sorted(MERGES))
def test_two_input_two_output_model_with_shared_layer(merge, dtype):
    ours, theirs = _twins(two_in_two_out, dtype, 7, merge)
    rng = np.random.default_rng(11)
    x = [rng.normal(size=(9, 6)).astype(dtype), rng.normal(size=(9, 4)).astype(dtype)]
    y_ours = ours.forward(x)
    upstream = [rng.standard_normal(y.shape) for y in y_ours]
    dx_ours = ours.backward([g.astype(dtype) for g in upstream])
    dw_ours = list(ours.gradients)
    ref = model_vjp(theirs, x, upstream)
    twin = _keras64(two_in_two_out, theirs, merge)
    ref64 = None if twin is None else model_vjp(twin, [v.astype(np.float64) for v in x], upstream)
    report = LayerReport(f"Model(2 in, 2 out, shared Dense, {merge})", {"merge": merge}, dtype)
    pick = (lambda key: None) if ref64 is None else (lambda key: ref64[key])  # noqa: E731
    _check_result(report, [f"forward[{k}]" for k in range(2)], y_ours, ref["outputs"], pick("outputs"), dtype,
                  "outputs")
    _check_result(report, [f"dx[{k}]" for k in range(2)], dx_ours, ref["dx"], pick("dx"), dtype, "input gradients")
    _check_result(report, [f"d {n}" for n in ours.weight_names], dw_ours, ref["dw"], pick("dw"), dtype,
                  "weight gradients")
    recorder.note_report(report, "layer")
    report.assert_ok()


def _compare_fit(label, config, dtype, ours_history, ref_history, ours_weights, ref_weights, names, model=None):
    tol = TRAINING_TOLERANCE[dtype]
    if model is not None:  # the graph's layer classes, for the run-time coverage of python -m parity
        config = {**config, "layers": sorted({type(layer).__name__ for layer in model.layers})}
    report = LayerReport(label, config, dtype)
    if sorted(ours_history) != sorted(ref_history):
        report.checks.append(Check(f"history keys {sorted(ours_history)} vs {sorted(ref_history)}", np.inf, np.inf,
                                   0.0))
    for key in ref_history:
        if key in ours_history:
            o, r = np.asarray(ours_history[key], float), np.asarray(ref_history[key], float)
            diff = float(np.max(np.abs(o - r))) if o.shape == r.shape else np.inf
            report.checks.append(Check(f"history[{key!r}]", diff, diff / max(float(np.max(np.abs(r))), 1e-6), tol))
    for k, (w, r) in enumerate(paired("final weights", list(ours_weights), list(ref_weights), report.checks)):
        name = names[k]
        diff = float(np.max(np.abs(w - r)))
        report.checks.append(Check(f"final {name}", diff, diff / max(float(np.max(np.abs(r))), 1e-6), tol))
    recorder.note_report(report, "training")
    return report


def _fit_both(ours, theirs, dtype, compile_kwargs, x, y, **fit_kwargs):
    import keras

    from parity.training import keras_optimizer_for

    with tinynn_floatx(dtype):
        ours.compile(optimizer=tn.optimizers.RMSprop(learning_rate=0.01), **compile_kwargs)
    with keras_floatx(dtype):
        theirs.compile(optimizer=keras_optimizer_for(ours.optimizer), **compile_kwargs)
        ref = theirs.fit(x, y, shuffle=False, verbose=0, **fit_kwargs).history
        ref_weights = theirs.get_weights()
        ref["evaluate"] = theirs.evaluate(x, y, batch_size=16, verbose=0)  # a list in Keras's order
    history = ours.fit(x, y, shuffle=False, verbose=0, **fit_kwargs).history
    history["evaluate"] = ours.evaluate(x, y, batch_size=16, verbose=0)
    keras.backend.clear_session()
    return history, ref, ref_weights


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_functional_model_trains_like_keras(dtype):
    """Every merge layer and a shared layer, losses per output with loss_weights, metrics per output, 3 epochs:
    the History keys are Keras 3.15's own (loss, score_loss, kind_loss, score_accuracy, kind_mae, val_…); then
    ``evaluate``'s list (its order, and per-output losses averaged over uneven batches as Keras does)."""
    ours, theirs = _twins(lambda lib, d: every_merge(lib, d), dtype, 3)
    rng = np.random.default_rng(5)
    n = 40
    x = [rng.normal(size=(n, 6)).astype(dtype), rng.normal(size=(n, 4)).astype(dtype)]
    y = [(rng.random((n, 1)) > 0.5).astype(dtype), rng.normal(size=(n, 3)).astype(dtype)]
    compile_kwargs = {"loss": ["binary_crossentropy", "mse"], "loss_weights": [1.0, 0.5],
                      "metrics": [["accuracy"], ["mae"]]}
    history, ref, ref_weights = _fit_both(ours, theirs, dtype, compile_kwargs, x, y, epochs=3, batch_size=16,
                                          validation_split=0.25)
    assert sorted(ref) == sorted(["loss", "score_loss", "kind_loss", "score_accuracy", "kind_mae", "val_loss",
                                  "val_score_loss", "val_kind_loss", "val_score_accuracy", "val_kind_mae", "evaluate"])
    report = _compare_fit("training Model(2 in, 2 out, shared Dense, every merge)", compile_kwargs, dtype, history, ref,
                          ours.get_weights(), ref_weights, ours.weight_names, model=ours)
    report.assert_ok()


def test_dict_outputs_and_losses_train_like_keras():
    """Outputs given as a dict: losses and metrics by key, History keys from the dict keys."""

    def build(lib, dtype):
        L = lib.layers
        a = L.Input(shape=(5,), name="a", dtype=dtype)
        h = L.Dense(4, activation="relu", name="trunk", dtype=dtype)(a)
        outs = {"prob": L.Dense(1, activation="sigmoid", name="p_head", dtype=dtype)(h),
                "value": L.Dense(2, name="v_head", dtype=dtype)(h)}
        return lib.Model(a, outs)

    dtype = "float64"
    ours, theirs = _twins(build, dtype, 4)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(24, 5))
    y = {"prob": (rng.random((24, 1)) > 0.5) * 1.0, "value": rng.normal(size=(24, 2))}
    compile_kwargs = {"loss": {"value": "mae", "prob": "binary_crossentropy"}, "metrics": {"prob": ["acc"]}}
    history, ref, ref_weights = _fit_both(ours, theirs, dtype, compile_kwargs, x, y, epochs=2, batch_size=8)
    assert sorted(ref) == ["evaluate", "loss", "prob_acc", "prob_loss", "value_loss"]
    _compare_fit("training Model(dict outputs)", compile_kwargs, dtype, history, ref, ours.get_weights(), ref_weights,
                 ours.weight_names).assert_ok()


# ------------------------------------------------------------------------------------------------------- vjp


def _text_model(lib, dtype, mask_zero):
    L = lib.layers
    return lib.Sequential([L.Input(shape=(12,), dtype="int32"),
                           L.Embedding(30, 6, mask_zero=mask_zero, name="emb", dtype=dtype),
                           L.Conv1D(5, 3, activation="relu", name="mid", dtype=dtype) if not mask_zero else
                           L.LSTM(5, return_sequences=True, name="mid", dtype=dtype),
                           L.GlobalMaxPooling1D(dtype=dtype) if not mask_zero else L.LSTM(4, dtype=dtype),
                           L.Dense(2, activation="softmax", dtype=dtype)])


def _float_model(lib, dtype):
    L = lib.layers
    x = L.Input(shape=(7, 3), name="series", dtype=dtype)
    h = L.Conv1D(4, 3, activation="tanh", name="conv", dtype=dtype)(x)
    skip = L.GlobalAveragePooling1D(name="avg", dtype=dtype)(h)
    deep = L.GRU(3, name="gru", dtype=dtype)(h)
    return lib.Model(x, [L.Dense(1, name="y", dtype=dtype)(L.Concatenate(dtype=dtype)([skip, deep])),
                         L.Dense(2, activation="sigmoid", name="z", dtype=dtype)(deep)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", ["conv_text", "masked_lstm_text", "float_two_outputs"])
def test_vjp_matches_keras_gradients(case, dtype):
    """vjp with respect to an intermediate layer's output (and the input for float data) equals Keras's gradient
    of Σ_k ⟨δy_k, y_k⟩ with respect to those tensors; weights, their gradients and the optimizer are untouched."""
    rng = np.random.default_rng(21)
    if case == "float_two_outputs":
        build = _float_model
        x = rng.normal(size=(5, 7, 3)).astype(dtype)
        wrt_names = ["conv", "gru"]
    else:
        build = lambda lib, d: _text_model(lib, d, case == "masked_lstm_text")  # noqa: E731
        x = rng.integers(1, 30, size=(5, 12))
        x[:, :4] = 0  # front padding: masked steps for the LSTM model
        wrt_names = ["emb", "mid"]
    ours, theirs = _twins(build, dtype, 2)
    outs = ours.predict(x)
    outs = outs if isinstance(outs, list) else [outs]
    upstream = [rng.standard_normal(o.shape).astype(dtype) for o in outs]
    upstream_arg = upstream if len(upstream) > 1 else upstream[0]
    ours.compile("adam", "mse")
    ours.compute_loss_and_gradients(x, [rng.normal(size=o.shape) for o in outs] if len(outs) > 1 else outs[0] + 1)
    weights_before = [w.copy() for w in ours.get_weights()]
    grads_before = [np.array(g, copy=True) for g in ours.gradients]  # what the optimizer would read next
    wrt = [ours.get_layer(name).output for name in wrt_names]
    if case == "float_two_outputs":
        wrt.append(ours.inputs[0])
    got = ours.vjp(x, upstream_arg, wrt=wrt)
    assert all(np.array_equal(a, b) for a, b in zip(weights_before, ours.get_weights()))
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(grads_before, ours.gradients))
    assert ours.optimizer.iterations == 0

    def keras_side(model, x_in):
        r = model_vjp(model, x_in, upstream, wrt_layers=wrt_names)
        return r["d_layers"] + (r["dx"] if case == "float_two_outputs" else [])

    ref = keras_side(theirs, x)
    twin = _keras64(build, theirs)
    ref64 = None if twin is None else keras_side(twin, x.astype(np.float64) if case == "float_two_outputs" else x)
    report = LayerReport(f"vjp {case}", {"wrt": wrt_names}, dtype)
    labels = [f"vjp wrt {name}" for name in wrt_names + ["input"]]
    # each wrt tensor's gradient is its own result (they are gradients with respect to different tensors)
    for k, (g, r) in enumerate(paired("vjp results", list(got), ref, report.checks)):
        _check_result(report, [labels[k]], [g], [r], None if ref64 is None else [ref64[k]], dtype, labels[k])
    recorder.note_report(report, "layer")
    report.assert_ok()


# --------------------------------------------------------------------------------------------- Grad-CAM (1D)


def _look_inside():
    """examples/look_inside.py (a source checkout only: the examples are not part of the wheel)."""
    examples = pathlib.Path(__file__).resolve().parents[2] / "examples"
    if not (examples / "look_inside.py").is_file():
        pytest.skip("examples/look_inside.py is not here (an installed wheel has no examples)")
    if str(examples) not in sys.path:
        sys.path.insert(0, str(examples))
    for shadow in ("datasets", "_helpers", "text_sentiment", "look_inside"):
        mod = sys.modules.get(shadow)
        if mod is not None and pathlib.Path(getattr(mod, "__file__", "") or "").parent != examples:
            del sys.modules[shadow]
    spec = importlib.util.find_spec("look_inside")
    assert spec is not None
    import look_inside
    import text_sentiment

    return look_inside, text_sentiment


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_grad_cam_1d_matches_keras(dtype):
    """The example's Grad-CAM (vjp of the score w.r.t. the Conv1D output, channel weights, heat map, spread onto
    the words) against the same formula on Keras's gradients, for both predicted classes."""
    import keras

    look_inside, ts = _look_inside()
    with tinynn_floatx(dtype), keras_floatx(dtype):
        ours, theirs = ts.builder("conv")(tn), ts.builder("conv")(keras)
    theirs.set_weights(_random_weights(ours, np.random.default_rng(3)))
    rng = np.random.default_rng(4)
    x = rng.integers(2, ts.MAX_WORDS, size=(6, ts.MAX_LEN))
    x[:, :15] = 0  # reviews are padded at the front
    heat, scores = look_inside.word_heat(ours, x)

    conv = theirs.layers[1]
    A = backend.numpy(keras.Model(theirs.inputs, conv.output)(backend.tensor(x)))
    y = backend.numpy(theirs(backend.tensor(x)))
    sign = np.where(y >= 0.5, 1.0, -1.0)  # the predicted class: "fresh" scores y, "rotten" scores 1 - y
    g = model_vjp(theirs, x, [sign], wrt_layers=[conv.name])["d_layers"][0]  # ∂(Σ sign·y)/∂A
    alpha = g.mean(axis=1, keepdims=True)
    cam = np.maximum(np.mean(A * alpha, axis=-1), 0.0)
    peak = cam.max(axis=1, keepdims=True)
    cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
    ref = look_inside.spread_to_inputs(cam, conv.kernel_size[0], ts.MAX_LEN)
    report = LayerReport("Grad-CAM 1D (examples/look_inside.py)", {"model": "Embedding→Conv1D→GMP→Dense"}, dtype)
    report.checks.append(compare("score", scores, y[:, 0], dtype))
    report.checks.append(compare("heat per word", heat, ref, dtype))
    recorder.note_report(report, "layer")
    report.assert_ok()


# --------------------------------------------------------------------------------------------- config


def _keras_layer_mapping():
    """Keras layer specs <-> tinynn layers, from tinynn's Keras config translation (tinynn.saving)."""
    from tinynn import saving
    from tinynn.layers import InputLayer, deserialize, serialize

    def from_keras(spec):
        if spec["class_name"] == "InputLayer":
            c = spec["config"]
            return InputLayer(batch_shape=c["batch_shape"], dtype=c.get("dtype"), name=c["name"])
        return deserialize(saving.layer_from_keras(spec, "Keras functional config"))

    return from_keras, lambda layer: saving.layer_to_keras(serialize(layer))


@pytest.mark.parametrize("merge", ["Add", "Concatenate", "Dot"])
def test_functional_config_maps_to_keras_and_back(merge):
    import json

    import keras

    from tinynn.functional_config import functional_config

    from_keras, to_keras = _keras_layer_mapping()
    theirs = two_in_two_out(keras, "float32", merge)
    ours = tn.Model.from_config(json.loads(json.dumps(theirs.get_config())), layer_from_config=from_keras)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    ours.set_weights(_random_weights(theirs, np.random.default_rng(1)))
    back = keras.Model.from_config(json.loads(json.dumps(functional_config(ours, layer_to_config=to_keras))))
    back.set_weights(ours.get_weights())
    rng = np.random.default_rng(2)
    x = [rng.normal(size=(4, 6)).astype("float32"), rng.normal(size=(4, 4)).astype("float32")]
    report = LayerReport(f"functional config ({merge})", {"merge": merge}, "float32")
    ours_y, theirs_y, back_y = ours.predict(x), theirs.predict(x, verbose=0), back.predict(x, verbose=0)
    assert len(ours_y) == len(theirs_y) == len(back_y) == 2
    for k, (a, b, c) in enumerate(zip(ours_y, theirs_y, back_y, strict=True)):
        report.checks.append(compare(f"keras→tinynn output[{k}]", a, b, "float32"))
        report.checks.append(compare(f"tinynn→keras output[{k}]", c, b, "float32"))
    recorder.note_report(report, "layer")
    report.assert_ok()
