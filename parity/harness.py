"""Run one layer in tinynn and in Keras on the same weights and inputs, and compare everything.

For a random upstream gradient ``g`` (random normal, never ones) both sides compute

    y = f(x; θ),    dx = (∂y/∂x)ᵀ g,    dθ_i = (∂y/∂θ_i)ᵀ g

tinynn by ``forward``/``backward``, Keras by ``tf.GradientTape`` on ``Σ g ⊙ y``. Errors are measured as
``max|ours - keras| / max(max|keras|, floor)``, i.e. relative to the magnitude of the reference array, and
must be within the dtype's tolerance: 1e-10 in float64, 1e-5 in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import bridge, recorder

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
SCALE_FLOOR = 1e-6  # below this magnitude an array counts as zero and the error is absolute


@dataclass
class Check:
    """One compared quantity: e.g. 'forward', 'dx', 'lstm/kernel'."""

    what: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel) and self.max_rel <= self.tolerance)

    def __str__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return f"{self.what:<28} abs {self.max_abs:9.2e}  rel {self.max_rel:9.2e}  tol {self.tolerance:.0e}  {status}"


@dataclass
class LayerReport:
    layer: str
    config: dict
    dtype: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failure_message(self) -> str:
        lines = [f"{self.layer} ({self.dtype}) config={self.config}"]
        lines += [f"  {c}" for c in self.checks]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        assert self.checks, f"no checks were run for {self.layer}"
        assert self.passed, "parity mismatch\n" + self.failure_message()


def compare(what: str, ours, ref, dtype: str) -> Check:
    check = _compare(what, ours, ref, dtype)
    recorder.note_check(check, dtype)  # for the table of `python -m parity` (no-op otherwise)
    return check


def _compare(what: str, ours, ref, dtype: str) -> Check:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return Check(f"{what} shape {ours.shape} vs {ref.shape}", np.inf, np.inf, TOLERANCE[dtype])
    if ours.size == 0:
        return Check(what, 0.0, 0.0, TOLERANCE[dtype])
    both_nan = np.isnan(ours) & np.isnan(ref)
    diff = np.where(both_nan, 0.0, np.abs(ours - ref))
    max_abs = float(np.max(diff))
    scale = max(float(np.nanmax(np.abs(ref))) if np.isfinite(ref).any() else 0.0, SCALE_FLOOR)
    return Check(what, max_abs, max_abs / scale, TOLERANCE[dtype])


def randomize_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> list[np.ndarray]:
    """Random normal weights for every parameter, biases included (zero biases hide bugs)."""
    weights = [rng.normal(0.0, scale, size=w.shape).astype(w.dtype) for w in layer.get_weights()]
    layer.set_weights(weights)
    return weights


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def keras_vjp(keras_layer, x, upstream, *, mask=None, training=False, call_kwargs=None):
    """Keras's outputs, input gradient (None for integer inputs) and weight gradients."""
    import tensorflow as tf

    x_t = tf.constant(x)
    kwargs = dict(call_kwargs or {})
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    state_t = [tf.constant(s) for s in kwargs.pop("initial_state", [])]
    if state_t:
        kwargs["initial_state"] = state_t
    with tf.GradientTape(persistent=True) as tape:
        if x_t.dtype.is_floating:
            tape.watch(x_t)
        for s in state_t:
            tape.watch(s)
        outputs = keras_layer(x_t, training=training, **kwargs)
        outs = _as_list(outputs)
        loss = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float64) * g) for o, g in zip(outs, upstream)])
    dx = tape.gradient(loss, x_t) if x_t.dtype.is_floating else None
    dws = tape.gradient(loss, keras_layer.trainable_weights)
    dstates = [tape.gradient(loss, s) for s in state_t]
    to_np = lambda t: None if t is None else np.asarray(tf.convert_to_tensor(t))  # noqa: E731
    return {
        "outputs": [o.numpy() for o in outs],
        "dx": to_np(dx),
        "dw": [to_np(g) for g in dws],
        "dstates": [to_np(g) for g in dstates],
    }


def layer_parity(
    layer,
    x: np.ndarray,
    *,
    seed: int = 0,
    mask: np.ndarray | None = None,
    training: bool = False,
    keras_layer=None,
    call_kwargs: dict | None = None,
) -> LayerReport:
    """Build ``layer`` on ``x``, give it random weights, build its Keras twin with the same weights,
    and compare outputs, dx and every weight gradient for a random upstream gradient. A list ``x`` (a merge
    layer's inputs, ``mask`` then one mask or None per input) goes to :func:`list_input_parity`."""
    if isinstance(x, (list, tuple)):
        return list_input_parity(layer, list(x), seed=seed, mask=mask, training=training, keras_layer=keras_layer)
    rng = np.random.default_rng(seed)
    dtype = layer.dtype
    call_kwargs = dict(call_kwargs or {})
    ours_out = layer(x, training=training, mask=mask, **call_kwargs)
    weights = randomize_weights(layer, rng)
    ours_out = _as_list(layer(x, training=training, mask=mask, **call_kwargs))
    upstream = [rng.standard_normal(o.shape) for o in ours_out]
    ours_dx = layer.backward(upstream if len(upstream) > 1 else upstream[0].astype(dtype))
    if isinstance(ours_dx, tuple):  # (dx, [dstate, ...]) from layers given an initial_state
        ours_dx, ours_dstates = ours_dx
    else:
        ours_dstates = []
    ours_dw = list(layer.gradients)

    if keras_layer is None:
        keras_layer = bridge.keras_layer_for(layer)
    _build_keras(keras_layer, x, mask, call_kwargs)
    keras_layer.set_weights(weights)
    ref = keras_vjp(keras_layer, x, upstream, mask=mask, training=training, call_kwargs=call_kwargs)

    report = LayerReport(type(layer).__name__, layer.get_config(), dtype)
    for k, (o, r) in enumerate(zip(ours_out, ref["outputs"])):
        report.checks.append(compare("forward" if k == 0 else f"forward[{k}]", o, r, dtype))
    if ref["dx"] is not None:
        report.checks.append(compare("dx", ours_dx, ref["dx"], dtype))
    trainable_names = [n for n, t in zip(layer.weight_names, layer.trainable_mask) if t]
    trainable_grads = [g for g, t in zip(ours_dw, layer.trainable_mask) if t]
    if len(trainable_grads) != len(ref["dw"]):
        report.checks.append(Check(f"weight count {len(trainable_grads)} vs {len(ref['dw'])}", np.inf, np.inf, 0))
    for name, g, r in zip(trainable_names, trainable_grads, ref["dw"]):
        report.checks.append(compare(f"d {name.split('/', 1)[-1]}", g, 0 * g if r is None else r, dtype))
    for k, (g, r) in enumerate(zip(ours_dstates, ref["dstates"])):
        report.checks.append(compare(f"d initial_state[{k}]", g, r, dtype))
    recorder.note_report(report, "layer")
    return report


def _build_keras(keras_layer, x, mask, call_kwargs):
    import tensorflow as tf

    if keras_layer.built:
        return
    kwargs = {k: v for k, v in call_kwargs.items() if k != "initial_state"}
    if "initial_state" in call_kwargs:
        kwargs["initial_state"] = [tf.constant(s) for s in call_kwargs["initial_state"]]
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    keras_layer(tf.constant(x), **kwargs)


def list_input_parity(layer, xs: list, *, seed: int = 0, mask=None, training: bool = False,
                      keras_layer=None) -> LayerReport:
    """:func:`layer_parity` for a layer called on a list of inputs (the merge layers): outputs, each input's
    gradient, every weight gradient and the output mask, against Keras on ``tf.GradientTape``. Input masks
    reach Keras as its merge layers read them, on the input tensors (``_keras_mask``)."""
    import tensorflow as tf
    from keras.src import backend as keras_backend

    rng = np.random.default_rng(seed)
    dtype = layer.dtype
    layer(xs, training=training, mask=mask)
    weights = randomize_weights(layer, rng)
    ours_out = layer(xs, training=training, mask=mask)
    ours_mask = layer.compute_mask(xs, mask)
    upstream = rng.standard_normal(np.shape(ours_out))
    ours_dx = layer.backward(upstream.astype(dtype))
    ours_dw = list(layer.gradients)

    if keras_layer is None:
        keras_layer = bridge.keras_layer_for(layer)
    xs_t = [tf.constant(x) for x in xs]
    keras_layer(xs_t)
    keras_layer.set_weights(weights)
    masks_t = None if mask is None else [None if m is None else tf.constant(m) for m in mask]
    with tf.GradientTape(persistent=True) as tape:
        for x_t in xs_t:
            if x_t.dtype.is_floating:
                tape.watch(x_t)
        if masks_t is not None:
            for x_t, m_t in zip(xs_t, masks_t):
                keras_backend.set_keras_mask(x_t, m_t)
        out = keras_layer(xs_t, training=training)
        loss = tf.reduce_sum(tf.cast(out, tf.float64) * upstream)
    ref_dx = [tape.gradient(loss, x_t) if x_t.dtype.is_floating else None for x_t in xs_t]
    ref_dw = tape.gradient(loss, keras_layer.trainable_weights)
    ref_mask = None if masks_t is None else keras_layer.compute_mask(xs_t, masks_t)

    report = LayerReport(type(layer).__name__, layer.get_config(), dtype)
    report.checks.append(compare("forward", ours_out, out.numpy(), dtype))
    if len(ours_dx) != len(ref_dx):
        report.checks.append(Check(f"dx count {len(ours_dx)} vs {len(ref_dx)}", np.inf, np.inf, 0))
    for k, (d, r) in enumerate(zip(ours_dx, ref_dx)):
        if r is not None:
            report.checks.append(compare(f"dx[{k}]", d, np.asarray(tf.convert_to_tensor(r)), dtype))
    for name, g, r in zip(layer.weight_names, ours_dw, ref_dw):
        report.checks.append(compare(f"d {name.split('/', 1)[-1]}", g, 0 * g if r is None else r, dtype))
    if (ours_mask is None) != (ref_mask is None):
        report.checks.append(Check(f"output mask {ours_mask is not None} vs Keras {ref_mask is not None}",
                                   np.inf, np.inf, 0))
    elif ours_mask is not None:
        report.checks.append(compare("output mask", np.asarray(ours_mask, float),
                                     np.asarray(ref_mask, float), dtype))
    recorder.note_report(report, "layer")
    return report
