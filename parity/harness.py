"""Run one layer in tinynn and in Keras on the same weights and inputs, and compare everything.

For a random upstream gradient ``g`` (random normal, never ones) both sides compute

    y = f(x; θ),    dx = (∂y/∂x)ᵀ g,    dθ_i = (∂y/∂θ_i)ᵀ g

tinynn by ``forward``/``backward``, Keras by differentiating ``Σ g ⊙ y`` on its backend
(:func:`parity.backend.gradients`: ``tf.GradientTape``, ``jax.grad`` or ``torch.autograd``). Errors are
measured as ``max|ours - ref| / max(max|ref|, floor)``, i.e. relative to the magnitude of the reference
array, and must be within the dtype's tolerance: 1e-10 in float64, 1e-5 in float32.

The reference of a float32 case is Keras's **float64** computation of the same case: the same float32
inputs, weights, masks, states and upstream gradient, cast exactly to float64, through a float64 twin of
the Keras layer. The error is tinynn's float32 result minus that float64 result, relative to the float64
*result's* scale: the largest magnitude over the whole result the array belongs to — all outputs (and
returned states) together, dx, all weight gradients together, all initial-state gradients together —
i.e. the normwise relative error of that result, ``max|ours - ref64| / max(max|ref64 of the result|,
floor)``, which must stay under 1e-5. Two reasons. Comparing against Keras's own float32 result would add
Keras's rounding error to ours. And one array of a result can cancel: a 1-unit stateful SimpleRNN's bias
gradient sums terms of both signs over every step, so its float32 value carries an error far above 1e-5
of its own (tiny) magnitude whoever computes it — measured over 400 random cases of the stateful test:
up to 2.2e-3 for tinynn and 4.5e-4 for Keras's float32 against float64 — while relative to the scale of
the layer's whole gradient both stay at the float32 level (at most 4.4e-6 and 3.5e-6). float64 checks
keep the stricter per-array scale. Keras's float32 result is still computed: its shapes and output dtypes
must match tinynn's, and its own error against float64 (same scale) is kept with each check
(``Check.keras_rel``) for the report. Where no float64 twin can be built (a custom Keras layer without
``from_config``, and no ``keras_layer64`` given), a float32 case is compared against Keras's float32
result and the check says so (``Check.reference``).

Outputs, returned states, weight gradients and initial-state gradients are paired with a strict count
check: a missing or extra array (e.g. a dropped ``return_state`` output) is a failing check.

With ``PARITY_KEEP_GOING=1`` (what ``python -m parity --backend all`` sets), a failing comparison is
recorded but does not raise, so hypothesis runs every example instead of stopping at the first failing one
and every backend's table holds the same comparisons (:mod:`parity.report`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import backend, bridge, recorder

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
SCALE_FLOOR = 1e-6  # below this magnitude an array counts as zero and the error is absolute


@dataclass
class Check:
    """One compared quantity: e.g. 'forward', 'dx', 'lstm/kernel'.

    ``reference`` names what ``ours`` was compared against; ``keras_rel`` is, for a float32 check made
    against Keras's float64 result, Keras's own float32 error against that same float64 result."""

    what: str
    max_abs: float
    max_rel: float
    tolerance: float
    reference: str = "keras"
    keras_rel: float | None = None

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel) and self.max_rel <= self.tolerance)

    def __str__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        extra = "" if self.keras_rel is None else f"  (vs Keras float64; Keras float32 rel {self.keras_rel:.2e})"
        return (f"{self.what:<28} abs {self.max_abs:9.2e}  rel {self.max_rel:9.2e}  tol {self.tolerance:.0e}  "
                f"{status}{extra}")


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
        if not keep_going():
            assert self.passed, "parity mismatch\n" + self.failure_message()


def keep_going() -> bool:
    """True when failing comparisons are only recorded (``PARITY_KEEP_GOING=1``), not raised."""
    return os.environ.get("PARITY_KEEP_GOING") == "1"


def assert_checks(checks: Sequence[Check], context: str = "") -> None:
    """Fail with every failing check listed (unless :func:`keep_going`); every check was recorded already."""
    assert checks, f"no checks were run {context}".rstrip()
    failing = [c for c in checks if not c.passed]
    if failing and not keep_going():
        raise AssertionError("parity mismatch " + context + "\n" + "\n".join(f"  {c}" for c in failing))


def compare(what: str, ours, ref, dtype: str, *, ref64=None, scale: float | None = None) -> Check:
    """Compare ``ours`` with Keras's ``ref``. For float32 with ``ref64`` given (Keras's float64 result of the
    same case): against ``ref64`` instead, relative to the float64 result's scale — ``max|ref64|``, or
    ``scale`` when the array is one part of a larger result (e.g. one of a layer's weight gradients: the
    largest float64 magnitude over all of them; see the module docstring) — keeping Keras's own error."""
    if dtype == "float32" and ref64 is not None:
        check = _compare(what, ours, ref64, dtype, scale)
        if ref is not None and np.shape(ref) != np.shape(ours):
            check = Check(f"{what} shape {np.shape(ours)} vs Keras float32 {np.shape(ref)}", np.inf, np.inf,
                          TOLERANCE[dtype])
        check.reference = "keras float64"
        if ref is not None:
            check.keras_rel = _compare(what, ref, ref64, dtype, scale).max_rel
    else:
        check = _compare(what, ours, ref, dtype)
    recorder.note_check(check, dtype)  # for the table of `python -m parity` (no-op otherwise)
    return check


def result_scale(arrays) -> float:
    """The magnitude of a result made of several arrays: the largest finite |value| over all of them."""
    mags = [float(np.nanmax(np.abs(a))) for a in arrays
            if a is not None and np.size(a) and np.isfinite(np.asarray(a, dtype=np.float64)).any()]
    return max(mags, default=0.0)


def _compare(what: str, ours, ref, dtype: str, scale: float | None = None) -> Check:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return Check(f"{what} shape {ours.shape} vs {ref.shape}", np.inf, np.inf, TOLERANCE[dtype])
    if ours.size == 0:
        return Check(what, 0.0, 0.0, TOLERANCE[dtype])
    both_nan = np.isnan(ours) & np.isnan(ref)
    diff = np.where(both_nan, 0.0, np.abs(ours - ref))
    max_abs = float(np.max(diff))
    own = float(np.nanmax(np.abs(ref))) if np.isfinite(ref).any() else 0.0
    scale = max(own, scale or 0.0, SCALE_FLOOR)
    return Check(what, max_abs, max_abs / scale, TOLERANCE[dtype])


def count_check(what: str, n_ours: int, n_ref: int) -> Check | None:
    """A failing check when two lists that must pair one to one differ in length (None when they agree)."""
    if n_ours == n_ref:
        return None
    return Check(f"{what} count {n_ours} vs {n_ref}", np.inf, np.inf, 0.0)


def paired(what: str, ours: Sequence, ref: Sequence, checks: list[Check]) -> list[tuple]:
    """``list(zip(ours, ref))`` after appending a failing check to ``checks`` if the lengths differ."""
    mismatch = count_check(what, len(ours), len(ref))
    if mismatch is not None:
        checks.append(mismatch)
    return list(zip(ours, ref))


def weight_label(name: str) -> str:
    """A weight's name without Keras's per-process layer counters ('forward_gru_3/bias' -> 'forward_gru/bias'),
    so that the same check has the same name in runs on different backends."""
    return re.sub(r"_\d+(?=/)", "", name)


def dtype_check(what: str, ours, ref) -> Check:
    """Same dtype as Keras's (float32) result: a passing check, or a failing one that names both dtypes
    (after a colon: the part before it names the check in every run)."""
    ours, ref = np.dtype(ours), np.dtype(ref)
    if ours == ref or not np.issubdtype(ref, np.floating):
        return Check(what, 0.0, 0.0, 0.0)
    return Check(f"{what}: tinynn {ours} vs Keras {ref}", np.inf, np.inf, 0.0)


def randomize_weights(layer, rng: np.random.Generator, scale: float = 0.5) -> list[np.ndarray]:
    """Random normal weights for every parameter, biases included (zero biases hide bugs)."""
    weights = [rng.normal(0.0, scale, size=w.shape).astype(w.dtype) for w in layer.get_weights()]
    layer.set_weights(weights)
    return weights


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def keras_vjp(keras_layer, x, upstream, *, mask=None, training=False, call_kwargs=None, xla=False):
    """Keras's outputs, input gradient (None for integer inputs), weight gradients and initial-state gradients
    for ``L = Σ_i ⟨upstream_i, output_i⟩``, on the current Keras backend (``xla``: compile with XLA on TF).

    If Keras returns a different number of outputs than ``upstream`` has arrays, the gradient covers the
    pairs that exist and ``outputs`` holds everything Keras returned (the caller's count check fails)."""
    from keras import ops

    kwargs = dict(call_kwargs or {})
    if mask is not None:
        kwargs["mask"] = backend.tensor(mask)
    states = [backend.tensor(s) for s in kwargs.pop("initial_state", [])]
    g = [backend.tensor(np.asarray(u, dtype=np.float64)) for u in upstream]

    def loss_fn(x_t, *state_t):
        kw = dict(kwargs)
        if state_t:
            kw["initial_state"] = list(state_t)
        outs = _as_list(keras_layer(x_t, training=training, **kw))
        loss = 0.0
        for o, u in zip(outs, g):
            loss = loss + ops.sum(ops.cast(o, "float64") * u)
        return loss, outs

    outs, dts, dws = backend.gradients(loss_fn, [backend.tensor(x), *states], keras_layer.trainable_weights,
                                       stateful=backend.stateful_variables(keras_layer), xla=xla)
    return {
        "outputs": [backend.numpy(o) for o in outs],
        "dx": backend.numpy(dts[0]),
        "dw": [backend.numpy(d) for d in dws],
        "dstates": [backend.numpy(d) for d in dts[1:]],
    }


def with_dtype(config, dtype: str):
    """A Keras layer config (nested layers included) with every dtype / dtype policy replaced by ``dtype``."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            return {**config, "config": {**config["config"], "name": dtype}}
        out = {}
        for key, value in config.items():
            if key == "dtype" and isinstance(value, str):
                out[key] = dtype
            else:
                out[key] = with_dtype(value, dtype)
        return out
    if isinstance(config, list):
        return [with_dtype(v, dtype) for v in config]
    return config


def keras_float64_twin(keras_layer):
    """An unbuilt float64 copy of a Keras layer (same config, every dtype float64), or None if the layer
    cannot be rebuilt from its config."""
    try:
        return type(keras_layer).from_config(with_dtype(keras_layer.get_config(), "float64"))
    except Exception:
        return None


def _as_float64(a):
    a = np.asarray(a)
    return a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a


def layer_parity(
    layer,
    x: np.ndarray,
    *,
    seed: int = 0,
    mask: np.ndarray | None = None,
    training: bool = False,
    keras_layer=None,
    call_kwargs: dict | None = None,
    keras_layer64=None,
    xla: bool = False,
) -> LayerReport:
    """Build ``layer`` on ``x``, give it random weights, build its Keras twin with the same weights,
    and compare outputs, dx and every weight gradient for a random upstream gradient. A list ``x`` (a merge
    layer's inputs, ``mask`` then one mask or None per input) goes to :func:`list_input_parity`.

    ``keras_layer``: the Keras twin (default: :func:`parity.bridge.keras_layer_for`). ``keras_layer64``: its
    float64 copy for a float32 case (default: rebuilt from ``keras_layer``'s config); needed only where the
    twin carries something its config does not (e.g. injected dropout masks). ``xla``: Keras's side runs
    under XLA on TensorFlow (for ops the plain TF CPU kernels lack)."""
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

    report = LayerReport(type(layer).__name__, layer.get_config(), dtype)
    try:
        ref, ref64 = _keras_references(layer, keras_layer, keras_layer64, x, weights, upstream, mask, training,
                                       call_kwargs, xla)
    except Exception as error:  # noqa: BLE001 - only Keras runs in there
        if not keep_going():
            raise
        report.checks.append(keras_error_check(error))
        recorder.note_report(report, "layer")
        return report

    def cmp(what, ours, key, k=None):
        """``ours`` against part ``k`` of result ``key``; a float32 case relative to the float64 result's scale
        over all its parts (all outputs, all weight gradients, all initial-state gradients)."""
        r = ref[key] if k is None else ref[key][k]
        if ref64 is None:
            return compare(what, ours, r, dtype)
        r64 = ref64[key] if k is None else ref64[key][k]
        return compare(what, ours, r, dtype, ref64=r64, scale=result_scale(ref64[key] if k is not None else [r64]))

    checks = report.checks
    for k, (o, r) in enumerate(paired("outputs", ours_out, ref["outputs"], checks)):
        checks.append(cmp("forward" if k == 0 else f"forward[{k}]", o, "outputs", k))
        checks.append(dtype_check(f"forward[{k}] dtype", np.asarray(o).dtype, np.asarray(r).dtype))
    if ref["dx"] is not None:  # (Keras differentiates float ids, to zeros on some backends; tinynn returns None)
        checks.append(cmp("dx", np.zeros_like(ref["dx"]) if ours_dx is None else ours_dx, "dx"))
    trainable_names = [n for n, t in zip(layer.weight_names, layer.trainable_mask, strict=True) if t]
    trainable_grads = [g for g, t in zip(ours_dw, layer.trainable_mask, strict=True) if t]
    for k, (g, r) in enumerate(paired("weight gradients", trainable_grads, ref["dw"], checks)):
        if r is None:  # Keras: no gradient reaches this weight
            ref["dw"][k] = 0 * g
            if ref64 is not None:
                ref64["dw"][k] = 0 * g
        checks.append(cmp(f"d {weight_label(trainable_names[k].split('/', 1)[-1])}", g, "dw", k))
    for k, _ in enumerate(paired("initial-state gradients", ours_dstates, ref["dstates"], checks)):
        checks.append(cmp(f"d initial_state[{k}]", ours_dstates[k], "dstates", k))
    recorder.note_report(report, "layer")
    return report


def _keras_references(layer, keras_layer, keras_layer64, x, weights, upstream, mask, training, call_kwargs, xla):
    """Keras's results for the case, and for a float32 case those of its float64 twin (else None)."""
    if keras_layer is None:
        keras_layer = bridge.keras_layer_for(layer)
    ref = _keras_run(keras_layer, x, weights, upstream, mask, training, call_kwargs, xla)
    if layer.dtype != "float32":
        return ref, None
    if keras_layer64 is None:
        keras_layer64 = keras_float64_twin(keras_layer)
    if keras_layer64 is None:
        return ref, None
    kwargs64 = dict(call_kwargs)
    if "initial_state" in kwargs64:
        kwargs64["initial_state"] = [_as_float64(s) for s in kwargs64["initial_state"]]
    return ref, _keras_run(keras_layer64, _as_float64(x), [_as_float64(w) for w in weights], upstream, mask,
                           training, kwargs64, xla)


def record_keras_error(error: BaseException, dtype: str) -> bool:
    """In a test's own Keras code: with :func:`keep_going`, record that Keras raised and return True (the test
    then returns); otherwise re-raise."""
    if not keep_going():
        raise error
    recorder.note_check(keras_error_check(error), dtype)
    return True


def keras_error_check(error: BaseException) -> Check:
    """A failing check recording that Keras raised (kept going past it: see :func:`keep_going`)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(error).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Exception encountered when calling")]
    return Check(f"keras error: {type(error).__name__}: {(lines or [''])[0][:200]}", np.inf, np.inf, 0.0)


def _keras_run(keras_layer, x, weights, upstream, mask, training, call_kwargs, xla):
    """Build the Keras layer, load ``weights`` and return :func:`keras_vjp`'s results."""
    _build_keras(keras_layer, x, mask, call_kwargs, xla)
    keras_layer.set_weights(weights)
    return keras_vjp(keras_layer, x, upstream, mask=mask, training=training, call_kwargs=call_kwargs, xla=xla)


def _build_keras(keras_layer, x, mask, call_kwargs, xla=False):
    if keras_layer.built:
        return
    import keras

    if xla or type(keras_layer).build is not keras.layers.Layer.build:
        # build without a call: a call costs a compilation on JAX (and under XLA the eager op may not exist)
        keras_layer.build(np.shape(x))
        return
    kwargs = {k: v for k, v in call_kwargs.items() if k != "initial_state"}
    if "initial_state" in call_kwargs:
        kwargs["initial_state"] = [backend.tensor(s) for s in call_kwargs["initial_state"]]
    if mask is not None:
        kwargs["mask"] = backend.tensor(mask)
    keras_layer(backend.tensor(x), **kwargs)


def list_input_parity(layer, xs: list, *, seed: int = 0, mask=None, training: bool = False,
                      keras_layer=None) -> LayerReport:
    """:func:`layer_parity` for a layer called on a list of inputs (the merge layers): outputs, each input's
    gradient, every weight gradient and the output mask, against Keras on the current backend, with the same
    rules (a float32 case against Keras's float64 twin, strict pairing, Keras errors recorded under
    :func:`keep_going`). Input masks reach Keras as its merge layers read them, on the input tensors
    (``set_keras_mask``; on JAX and torch Keras keeps them in a table keyed by the tensor)."""
    rng = np.random.default_rng(seed)
    dtype = layer.dtype
    layer(xs, training=training, mask=mask)
    weights = randomize_weights(layer, rng)
    ours_out = layer(xs, training=training, mask=mask)
    ours_mask = layer.compute_mask(xs, mask)
    upstream = rng.standard_normal(np.shape(ours_out))
    ours_dx = list(layer.backward(upstream.astype(dtype)))
    ours_dw = list(layer.gradients)

    report = LayerReport(type(layer).__name__, layer.get_config(), dtype)
    try:
        if keras_layer is None:
            keras_layer = bridge.keras_layer_for(layer)
        ref = _keras_list_run(keras_layer, xs, weights, upstream, mask, training)
        ref64 = None
        if dtype == "float32":
            twin = keras_float64_twin(keras_layer)
            if twin is not None:
                ref64 = _keras_list_run(twin, [_as_float64(x) for x in xs], [_as_float64(w) for w in weights],
                                        upstream, mask, training)
    except Exception as error:  # noqa: BLE001 - only Keras runs in there
        if not keep_going():
            raise
        report.checks.append(keras_error_check(error))
        recorder.note_report(report, "layer")
        return report

    def cmp(what, ours, key, k=None):
        r = ref[key] if k is None else ref[key][k]
        if ref64 is None:
            return compare(what, ours, r, dtype)
        r64 = ref64[key] if k is None else ref64[key][k]
        scale = result_scale(ref64["dw"]) if key == "dw" else None  # the weight gradients are one result
        return compare(what, ours, r, dtype, ref64=r64, scale=scale)

    checks = report.checks
    checks.append(cmp("forward", ours_out, "output"))
    checks.append(dtype_check("forward dtype", np.asarray(ours_out).dtype, ref["output"].dtype))
    for k, (d, r) in enumerate(paired("input gradients", ours_dx, ref["dx"], checks)):
        if r is not None:
            checks.append(cmp(f"dx[{k}]", d, "dx", k))
    for k, (g, r) in enumerate(paired("weight gradients", ours_dw, ref["dw"], checks)):
        if r is None:  # Keras: no gradient reaches this weight
            ref["dw"][k] = 0 * g
            if ref64 is not None:
                ref64["dw"][k] = 0 * g
        checks.append(cmp(f"d {weight_label(layer.weight_names[k].split('/', 1)[-1])}", g, "dw", k))
    ref_mask = ref["mask"]
    if (ours_mask is None) != (ref_mask is None):
        checks.append(Check(f"output mask {ours_mask is not None} vs Keras {ref_mask is not None}", np.inf, np.inf,
                            0.0))
    elif ours_mask is not None:
        checks.append(compare("output mask", np.asarray(ours_mask, float), np.asarray(ref_mask, float), dtype))
    recorder.note_report(report, "layer")
    return report


def _keras_list_run(keras_layer, xs, weights, upstream, mask, training) -> dict:
    """Keras's output, input gradients, weight gradients and output mask for ``L = ⟨upstream, y⟩`` of a layer
    called on the list ``xs`` (built, then given ``weights``)."""
    from keras import ops
    from keras.src import backend as keras_backend

    if not keras_layer.built:
        keras_layer([backend.tensor(x) for x in xs])
    keras_layer.set_weights(weights)
    masks = None if mask is None else [None if m is None else backend.tensor(m) for m in mask]
    g = backend.tensor(np.asarray(upstream, dtype=np.float64))

    def loss_fn(*xs_t):
        if masks is not None:
            for x_t, m_t in zip(xs_t, masks, strict=True):
                keras_backend.set_keras_mask(x_t, m_t)
        out = keras_layer(list(xs_t), training=training)
        return ops.sum(ops.cast(out, "float64") * g), out

    out, dx, dw = backend.gradients(loss_fn, [backend.tensor(x) for x in xs], keras_layer.trainable_weights)
    out_mask = None if masks is None else keras_layer.compute_mask([backend.tensor(x) for x in xs], masks)
    return {"output": backend.numpy(out), "dx": [backend.numpy(d) for d in dx], "dw": [backend.numpy(d) for d in dw],
            "mask": backend.numpy(out_mask)}
