"""Bad input for every layer: the setups (one or more configs per registry class) and the cases.

Imported by the tests (which draw the details with hypothesis) and by the worker subprocess that runs them
(``conftest.IsolatedWorker``), so a crash in a kernel is a failed case. Each case returns ``(input class,
outcome, detail)``; outcomes:

* ``clear error``: a ValueError whose message names the layer (name and class) and what was given;
* ``correct``: no error, and the answer equals the one of an equivalent well-formed call;
* ``unclear``: another exception, or a ValueError that does not say what was wrong;
* ``silent``: no error where one was due, or a wrong answer;
* ``crash`` (set by the runner): the worker process died.

A class added to ``tinynn.layers.registry()`` needs an entry in SETUPS (a test fails until it has one). A layer
that takes a list of inputs gets a ``Setup`` whose ``x`` returns a list: the cases then break its first input
(and pass a list of masks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from tinynn import config
from tinynn import layers as L
from tinynn.layers.base import batchless_shape


@dataclasses.dataclass(frozen=True)
class Setup:
    make: Callable  # () -> a fresh layer
    x: Callable  # (rng, B, T) -> a valid input batch
    masks: str = "ignored"  # what the layer does with an incoming mask: "checked" (uses or passes it) or "ignored"
    min_T: int = 4
    mask_shape: Callable = lambda x: x.shape[:-1]  # a valid mask for x: (batch, steps)


def _seq(features: int):
    return lambda rng, B, T: rng.normal(size=(B, T, features))


def _ids(vocab: int):
    return lambda rng, B, T: rng.integers(0, vocab, size=(B, T))


def _image(channels: int, first: bool = False):
    """(B, T, T + 1, channels) images (channels_first: (B, channels, T, T + 1)); rows and columns differ."""
    def make(rng, B, T):
        x = rng.normal(size=(B, T, T + 1, channels))
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if first else x
    return make


def _pair(f1: int, f2: int):
    """Two sequences (B, T, f1) and (B, T, f2): the list input of a merge layer."""
    return lambda rng, B, T: [rng.normal(size=(B, T, f1)), rng.normal(size=(B, T, f2))]


SETUPS: dict[str, list[Setup]] = {
    "Dense": [
        Setup(lambda: L.Dense(3, activation="relu", bias_initializer="ones", name="dense_2d"),
              lambda rng, B, T: rng.normal(size=(B, 5)), masks="checked"),
        Setup(lambda: L.Dense(3, activation="softmax", name="dense_3d"), _seq(4), masks="checked"),
    ],
    "Activation": [Setup(lambda: L.Activation("tanh", name="act"), _seq(3), masks="checked")],
    "Dropout": [Setup(lambda: L.Dropout(0.5, name="drop"), _seq(3), masks="checked")],
    "Flatten": [Setup(lambda: L.Flatten(name="flat"), _seq(3)),
                Setup(lambda: L.Flatten(data_format="channels_first", name="flat_cf"), _seq(2))],
    "Reshape": [Setup(lambda: L.Reshape((-1, 2), name="reshape"), _seq(4))],
    "InputLayer": [Setup(lambda: L.InputLayer(shape=(None, 3), name="inp"), _seq(3), masks="checked")],
    "Masking": [Setup(lambda: L.Masking(0.0, name="masking"),
                      lambda rng, B, T: np.where(rng.random((B, T, 1)) < 0.3, 0.0, rng.normal(size=(B, T, 3))))],
    "Embedding": [Setup(lambda: L.Embedding(7, 3, name="emb"), _ids(7)),
                  Setup(lambda: L.Embedding(5, 2, mask_zero=True, name="emb_mask"), _ids(5))],
    "Conv1D": [
        Setup(lambda: L.Conv1D(3, 2, activation="relu", bias_initializer="ones", name="conv"), _seq(4)),
        Setup(lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2, groups=2, activation="gelu", name="conv_g"),
              _seq(4)),
        Setup(lambda: L.Conv1D(2, 2, strides=2, padding="same", data_format="channels_first", name="conv_cf"),
              _seq(5)),
    ],
    "SeparableConv1D": [Setup(lambda: L.SeparableConv1D(3, 2, depth_multiplier=2, activation="tanh", name="sep"),
                              _seq(3))],
    "DepthwiseConv1D": [Setup(lambda: L.DepthwiseConv1D(3, padding="same", strides=2, name="dw"), _seq(3))],
    "MaxPooling1D": [Setup(lambda: L.MaxPooling1D(2, name="maxpool"), _seq(3))],
    "AveragePooling1D": [Setup(lambda: L.AveragePooling1D(3, strides=2, padding="same", name="avgpool"), _seq(3)),
                         Setup(lambda: L.AveragePooling1D(2, data_format="channels_first", name="avgpool_cf"),
                               _seq(4))],
    "GlobalMaxPooling1D": [Setup(lambda: L.GlobalMaxPooling1D(name="gmax"), _seq(3))],
    "GlobalAveragePooling1D": [
        Setup(lambda: L.GlobalAveragePooling1D(name="gavg"), _seq(3), masks="checked"),
        Setup(lambda: L.GlobalAveragePooling1D(data_format="channels_first", keepdims=True, name="gavg_cf"), _seq(4),
              masks="checked", mask_shape=lambda x: (x.shape[0], x.shape[2])),
    ],
    "SimpleRNN": [Setup(lambda: L.SimpleRNN(3, return_sequences=True, name="rnn_seq"), _seq(2), masks="checked"),
                  Setup(lambda: L.SimpleRNN(4, go_backwards=True, name="rnn_back"), _seq(3), masks="checked")],
    "LSTM": [Setup(lambda: L.LSTM(3, name="lstm"), _seq(2), masks="checked"),
             Setup(lambda: L.LSTM(2, return_sequences=True, return_state=True, name="lstm_states"), _seq(3),
                   masks="checked")],
    "GRU": [Setup(lambda: L.GRU(3, return_sequences=True, reset_after=False, name="gru"), _seq(2), masks="checked"),
            Setup(lambda: L.GRU(2, return_state=True, name="gru_state"), _seq(3), masks="checked")],
    "Bidirectional": [
        Setup(lambda: L.Bidirectional(L.LSTM(2), name="bi_lstm"), _seq(3), masks="checked"),
        Setup(lambda: L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode=None, name="bi_gru_none"),
              _seq(2), masks="checked"),
        Setup(lambda: L.Bidirectional(L.SimpleRNN(2, return_state=True), merge_mode="sum", name="bi_rnn_states"),
              _seq(2), masks="checked"),
    ],
    "Conv2D": [
        Setup(lambda: L.Conv2D(3, 2, activation="relu", bias_initializer="ones", name="conv2d"), _image(2)),
        Setup(lambda: L.Conv2D(4, 3, padding="same", dilation_rate=(2, 1), groups=2, activation="gelu",
                               name="conv2d_g"), _image(4)),
        Setup(lambda: L.Conv2D(2, (3, 2), strides=(2, 1), padding="same", data_format="channels_first",
                               name="conv2d_cf"), _image(3, first=True)),
        Setup(lambda: L.Conv2D(32, 3, activation="relu", name="conv2d_winograd"), _image(32)),  # Winograd path
    ],
    "SeparableConv2D": [Setup(lambda: L.SeparableConv2D(3, 2, depth_multiplier=2, activation="relu", name="sep2d"),
                              _image(3)),
                        Setup(lambda: L.SeparableConv2D(2, 3, strides=2, padding="same", activation="tanh",
                                                        data_format="channels_first", name="sep2d_cf"),
                              _image(2, first=True))],
    "DepthwiseConv2D": [Setup(lambda: L.DepthwiseConv2D(3, padding="same", strides=(2, 1), dilation_rate=2,
                                                        depth_multiplier=2, name="dw2d"), _image(3))],
    "MaxPooling2D": [Setup(lambda: L.MaxPooling2D(2, name="maxpool2d"), _image(3)),
                     Setup(lambda: L.MaxPooling2D(3, strides=(2, 1), padding="same", data_format="channels_first",
                                                  name="maxpool2d_cf"), _image(2, first=True))],
    "AveragePooling2D": [Setup(lambda: L.AveragePooling2D((3, 2), strides=2, padding="same", name="avgpool2d"),
                               _image(3))],
    "GlobalMaxPooling2D": [Setup(lambda: L.GlobalMaxPooling2D(name="gmax2d"), _image(3))],
    "GlobalAveragePooling2D": [
        Setup(lambda: L.GlobalAveragePooling2D(name="gavg2d"), _image(3)),
        Setup(lambda: L.GlobalAveragePooling2D(data_format="channels_first", keepdims=True, name="gavg2d_cf"),
              _image(2, first=True)),
    ],
    "ZeroPadding2D": [Setup(lambda: L.ZeroPadding2D(((1, 2), (0, 3)), name="zeropad2d"), _image(2))],
    "UpSampling2D": [Setup(lambda: L.UpSampling2D((2, 3), data_format="channels_first", name="upsample2d"),
                           _image(2, first=True))],
    "Add": [Setup(lambda: L.Add(name="add"), _pair(3, 3), masks="checked")],
    "Subtract": [Setup(lambda: L.Subtract(name="subtract"), _pair(3, 3), masks="checked")],
    "Multiply": [Setup(lambda: L.Multiply(name="multiply"), _pair(3, 3), masks="checked")],
    "Average": [Setup(lambda: L.Average(name="average"), _pair(3, 3), masks="checked")],
    "Maximum": [Setup(lambda: L.Maximum(name="maximum"), _pair(3, 3), masks="checked")],
    "Minimum": [Setup(lambda: L.Minimum(name="minimum"), _pair(3, 3), masks="checked")],
    "Concatenate": [Setup(lambda: L.Concatenate(name="concat"), _pair(2, 3), masks="checked")],
    "Dot": [Setup(lambda: L.Dot(axes=-1, name="dot"), _pair(3, 3), masks="checked")],
}

BAD_DTYPES = ("object", "complex", "str", "bool")  # bool is not a gradient: dy of bool dtype is refused too
KINDS = (
    "x_rank", "x_size", "x_dtype", "x_empty_batch", "x_int_or_bool", "unbuilt_forward", "direct_forward_bad",
    "mask_shape", "mask_dtype", "backward_before_forward", "backward_twice", "dy_fewer_rows", "dy_extra_rows",
    "dy_axis", "dy_broadcastable", "dy_transposed", "dy_dtype", "dy_list_length", "dy_none", "dy_int",
)


# --------------------------------------------------------------------------- outcome helpers
def _expect_error(what: str, layer, fn, mentions=()):
    """Run ``fn``; a clear error names the layer (name and class) and every entry of ``mentions`` (a string, or a
    tuple of strings of which one must appear)."""
    try:
        fn()
    except ValueError as err:
        msg = str(err)
        wanted = [(repr(layer.name),), (type(layer).__name__,)]
        wanted += [m if isinstance(m, tuple) else (m,) for m in mentions]
        missing = [m for m in wanted if not any(alt in msg for alt in m)]
        return (what, "unclear", f"message lacks {missing}: {msg}") if missing else (what, "clear error", msg)
    except Exception as err:  # noqa: BLE001 - any other exception is the finding
        return what, "unclear", f"{type(err).__name__}: {err}"
    return what, "silent", "no error"


def _expect_same(what: str, fn, reference_fn):
    """``fn()`` must run and give exactly what ``reference_fn()`` gives (nested lists/tuples of arrays)."""
    try:
        got = fn()
    except Exception as err:  # noqa: BLE001
        return what, "unclear", f"{type(err).__name__}: {err}"
    want = reference_fn()
    return (what, "correct", "") if _same(got, want) else (what, "silent", "a different answer")


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            _same(u, v) for u, v in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _bad_array(like: np.ndarray, kind: str) -> np.ndarray:
    if kind == "object":
        return like.astype(object)
    if kind == "complex":
        return like.astype(np.complex128)
    if kind == "str":
        return like.astype(str)
    return like != 0  # bool


def _first(x):
    """The input the cases break: x itself, or the first of a list of inputs."""
    return x[0] if isinstance(x, list) else x


def _with_first(x, new):
    """x with its (first) input replaced by ``new``."""
    return [new, *x[1:]] if isinstance(x, list) else new


def _mask_for(x, m):
    """A mask argument for x: m itself, or [m, None, ...] for a list of inputs."""
    return [m] + [None] * (len(x) - 1) if isinstance(x, list) else m


def _outputs(y) -> list:
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _result(layer, out):
    """What a backward produced: dx (or the (dx, states) pair) and the parameter gradients."""
    return out, [np.asarray(g) for g in layer.gradients]


def _fwd_bwd(layer, x, dy, training=False):
    layer(x, training=training)
    return _result(layer, layer.backward(dy))


def _shape_str(shape) -> str:
    return str(tuple(shape))


def _given_shape(shape) -> tuple[str, str]:
    """The shape as the message may quote it: whole, or with None for the batch axis (build errors)."""
    shape = tuple(shape)
    return str(shape), str((None, *shape[1:])) if shape else "()"


# --------------------------------------------------------------------------- the cases
def run_cases(cls_name: str, variant: int, plan: dict) -> list[tuple[str, str, str]]:
    """Every kind of bad input for one setup; ``plan`` holds the drawn details (B, T, seed, axes, offsets)."""
    setup = SETUPS[cls_name][variant]
    rng = np.random.default_rng(plan["seed"])
    B, T = plan["B"], max(plan["T"], setup.min_T)
    x = setup.x(rng, B, T)
    results = []
    for kind in KINDS:
        try:
            results.extend(CASES[kind](setup, x, rng, plan))
        except Exception as err:  # noqa: BLE001 - a failure of the case code itself must show, not vanish
            results.append((kind, "unclear", f"the case itself failed: {type(err).__name__}: {err}"))
    return results


def _built(setup, x):
    layer = setup.make()
    y = layer(x)
    return layer, y


def _ranked_bad_x(layer, x):
    """The (first) input with one axis too many (a layer of fixed rank) or one too few (a layer with a minimum
    rank); None if any rank is legal for the layer."""
    spec = layer.input_spec[0] if isinstance(layer.input_spec, (list, tuple)) else layer.input_spec
    x = _first(x)
    if spec is not None and spec.ndim is not None:
        return x[..., None] if x.ndim == spec.ndim else x[:, 0]
    if spec is not None and spec.min_ndim is not None:
        keep = spec.min_ndim - 1
        return x[(slice(None),) * keep + (0,) * (x.ndim - keep)]
    return None


def case_x_rank(setup, x, rng, plan):
    layer, _ = _built(setup, x)
    bad = _ranked_bad_x(layer, x)
    if bad is None:
        return []  # any rank is legal for this layer
    fresh = setup.make()
    given = _with_first(x, bad)
    return [_expect_error("x_rank", layer, lambda: layer(given), [_given_shape(bad.shape)]),
            _expect_error("x_rank", fresh, lambda: fresh(given), [_given_shape(bad.shape)])]


def case_x_size(setup, x, rng, plan):
    layer, _ = _built(setup, x)
    spec = layer.input_spec[0] if isinstance(layer.input_spec, (list, tuple)) else layer.input_spec
    fixed = [a for a, s in (spec.axes.items() if spec else []) if s is not None and a != 0]
    if not fixed:
        return []
    axis = fixed[plan["pick"] % len(fixed)]
    shape = list(_first(x).shape)
    shape[axis] = shape[axis] + plan["delta"] if shape[axis] + plan["delta"] > 0 else shape[axis] + 1
    bad = np.resize(_first(x), shape)
    return [_expect_error("x_size", layer, lambda: layer(_with_first(x, bad)), [_shape_str(bad.shape)])]


def case_x_dtype(setup, x, rng, plan):
    layer, _ = _built(setup, x)
    out = []
    for kind in BAD_DTYPES[:3]:
        bad = _bad_array(_first(x), kind)
        out.append(_expect_error("x_dtype", layer, lambda bad=bad: layer(_with_first(x, bad)), [str(bad.dtype)]))
    return out


def case_x_empty_batch(setup, x, rng, plan):
    layer, _ = _built(setup, x)
    empty = [a[:0] for a in x] if isinstance(x, list) else x[:0]
    return [_expect_error("x_empty_batch", layer, lambda: layer(empty), [_shape_str(_first(empty).shape)])]


def case_x_int_or_bool(setup, x, rng, plan):
    """Integer or boolean input of the right shape is cast: the answer equals the one for the cast input."""
    layer, _ = _built(setup, x)
    out = []
    first = _first(x)
    for bad in (np.round(first).astype(np.int32), first > 0):
        cast = _with_first(x, bad.astype(np.int64 if first.dtype.kind in "iu" else layer.dtype))
        out.append(_expect_same("x_int_or_bool", lambda bad=bad: layer(_with_first(x, bad)),
                                lambda cast=cast: layer(cast)))
    return out


def case_unbuilt_forward(setup, x, rng, plan):
    """forward() on an unbuilt layer builds it from x.shape: the answer equals layer(x) with the same weights."""
    layer = setup.make()

    def direct():
        return layer.forward(x)

    def twin():
        other = setup.make()
        other(x)
        other.set_weights(layer.get_weights())
        return other(x)

    return [_expect_same("unbuilt_forward", direct, twin)]


def case_direct_forward_bad(setup, x, rng, plan):
    layer, _ = _built(setup, x)
    out = []
    bad = _ranked_bad_x(layer, x)
    if bad is not None:
        out.append(_expect_error("direct_forward_bad", layer, lambda: layer.forward(_with_first(x, bad)),
                                 [_given_shape(bad.shape)]))
    for kind in BAD_DTYPES[:3]:
        b = _bad_array(_first(x), kind)
        out.append(_expect_error("direct_forward_bad", layer, lambda b=b: layer.forward(_with_first(x, b)),
                                 [str(b.dtype)]))
    return out


def _bad_masks(setup, x, plan):
    good = tuple(setup.mask_shape(_first(x)))
    B, T = good[0], good[-1]
    masks = [np.ones(good[::-1], bool),  # transposed (T, B): the layout that crashed the recurrent kernels
             np.ones((*good[:-1], max(1, T + plan["delta"])), bool), np.ones((B,), bool), np.ones((*good, 1), bool)]
    return [m for m in masks if m.shape != good]


def case_mask_shape(setup, x, rng, plan):
    layer, y = _built(setup, x)
    out = []
    for m in _bad_masks(setup, x, plan):
        mask, shown = _mask_for(x, m), [_shape_str(m.shape)]
        if setup.masks == "checked":
            out.append(_expect_error("mask_shape", layer, lambda mask=mask: layer(x, mask=mask), shown))
            out.append(_expect_error("mask_shape", layer, lambda mask=mask: layer.forward(x, mask=mask), shown))
        else:
            out.append(_expect_same("mask_shape", lambda mask=mask: layer(x, mask=mask), lambda: layer(x)))
    return out


def case_mask_dtype(setup, x, rng, plan):
    layer, _ = _built(setup, x)
    good = np.ones(setup.mask_shape(_first(x)), bool)
    out = []
    for kind in BAD_DTYPES[:3]:
        m = _bad_array(good, kind)
        mask = _mask_for(x, m)
        if setup.masks == "checked":
            out.append(_expect_error("mask_dtype", layer, lambda mask=mask: layer(x, mask=mask), [str(m.dtype)]))
        else:
            out.append(_expect_same("mask_dtype", lambda mask=mask: layer(x, mask=mask), lambda: layer(x)))
    return out


def _dys(y, rng):
    return [rng.normal(size=o.shape) for o in _outputs(y)]


def _pack(y, dys):
    return dys if isinstance(y, (list, tuple)) else dys[0]


def case_backward_before_forward(setup, x, rng, plan):
    layer, y = _built(setup, x)
    dy = _pack(y, _dys(y, rng))
    fresh = setup.make()
    built = setup.make()
    built.ensure_built(batchless_shape(x))
    return [_expect_error("backward_before_forward", fresh, lambda: fresh.backward(dy)),
            _expect_error("backward_before_forward", built, lambda: built.backward(dy))]


def case_backward_twice(setup, x, rng, plan):
    """A second backward after one forward: the same answer, or (fast recurrent kernels) a clear error. In the
    reference kernel mode it must always be the same answer."""
    out = []
    for mode in ("fast", "reference"):
        with config.kernels(mode):
            layer, y = _built(setup, x)
            dy = _pack(y, _dys(y, rng))
            first = _result(layer, layer.backward(dy))
            try:
                second = _result(layer, layer.backward(dy))
            except ValueError as err:
                msg = str(err)
                ok = mode == "fast" and repr(layer.name) in msg and "forward" in msg
                out.append(("backward_twice", "clear error" if ok else "unclear", msg))
                continue
            except Exception as err:  # noqa: BLE001
                out.append(("backward_twice", "unclear", f"{type(err).__name__}: {err}"))
                continue
            out.append(("backward_twice", "correct" if _same(first, second) else "silent", mode))
    return out


def _dy_variants(y, rng, plan, make_bad):
    """One wrong dy per output of the layer (the others well-formed), each through ``make_bad(dy)``."""
    good = _dys(y, rng)
    out = []
    for k, d in enumerate(good):
        bad = make_bad(d)
        if bad is None:
            continue
        dys = list(good)
        dys[k] = bad
        out.append((_pack(y, dys), bad))
    return out


def _dy_error_case(what, setup, x, rng, plan, make_bad, mention):
    layer, y = _built(setup, x)
    out = []
    for dy, bad in _dy_variants(y, rng, plan, make_bad):
        layer(x)
        out.append(_expect_error(what, layer, lambda dy=dy: layer.backward(dy), [mention(bad)]))
    return out


def _shape_of(bad):
    return _shape_str(np.shape(bad))


def case_dy_fewer_rows(setup, x, rng, plan):
    def bad(d):
        return d[: max(0, d.shape[0] - plan["rows"])]
    return _dy_error_case("dy_fewer_rows", setup, x, rng, plan, bad, _shape_of)


def case_dy_extra_rows(setup, x, rng, plan):
    def bad(d):
        return np.concatenate([d, rng.normal(size=(plan["rows"], *d.shape[1:]))])
    return _dy_error_case("dy_extra_rows", setup, x, rng, plan, bad, _shape_of)


def case_dy_axis(setup, x, rng, plan):
    def bad(d):
        if d.ndim < 2:
            return None
        axis = 1 + plan["pick"] % (d.ndim - 1)
        shape = list(d.shape)
        shape[axis] = shape[axis] + plan["delta"] if shape[axis] + plan["delta"] > 0 else shape[axis] + 1
        return rng.normal(size=shape)
    return _dy_error_case("dy_axis", setup, x, rng, plan, bad, _shape_of)


def case_dy_broadcastable(setup, x, rng, plan):
    def bad(d):
        axes = [a for a in range(d.ndim) if d.shape[a] > 1]
        if plan["pick"] % 2 and d.ndim > 1:
            return d[0]  # the leading axis dropped: broadcasts against the output
        if not axes:
            return None
        a = axes[plan["pick"] % len(axes)]
        return np.take(d, [0], axis=a)  # one axis of size 1
    return _dy_error_case("dy_broadcastable", setup, x, rng, plan, bad, _shape_of)


def case_dy_transposed(setup, x, rng, plan):
    def bad(d):
        pairs = [(i, j) for i in range(d.ndim) for j in range(i + 1, d.ndim) if d.shape[i] != d.shape[j]]
        if not pairs:
            return None
        i, j = pairs[plan["pick"] % len(pairs)]
        return np.swapaxes(d, i, j)
    return _dy_error_case("dy_transposed", setup, x, rng, plan, bad, _shape_of)


def case_dy_dtype(setup, x, rng, plan):
    out = []
    for kind in BAD_DTYPES:
        out += _dy_error_case("dy_dtype", setup, x, rng, plan, lambda d, kind=kind: _bad_array(d, kind),
                              lambda bad: str(bad.dtype))
    return out


def case_dy_list_length(setup, x, rng, plan):
    layer, y = _built(setup, x)
    dys = _dys(y, rng)
    wrong = [dys + [dys[0]]] + ([dys[:-1]] if len(dys) > 1 else [])
    if len(dys) > 1:
        wrong.append(dys[0])  # one array for a layer with several outputs
    out = []
    for dy in wrong:
        layer(x)
        n = len(dy) if isinstance(dy, list) else 1
        out.append(_expect_error("dy_list_length", layer, lambda dy=dy: layer.backward(dy),
                                 [str(n) if isinstance(dy, list) else "array"]))
    return out


def case_dy_none(setup, x, rng, plan):
    """None as an upstream gradient means zero (for a multi-output layer: per output)."""
    layer, y = _built(setup, x)
    dys = _dys(y, rng)
    if isinstance(y, (list, tuple)):
        given = [dys[0]] + [None] * (len(dys) - 1)
        zeros = [dys[0]] + [np.zeros_like(d) for d in dys[1:]]
    else:
        given, zeros = None, np.zeros_like(dys[0])
    return [_expect_same("dy_none", lambda: _fwd_bwd(layer, x, given), lambda: _fwd_bwd(layer, x, zeros))]


def case_dy_int(setup, x, rng, plan):
    """An integer dy is cast: the answer equals the one for the same values as floats."""
    layer, y = _built(setup, x)
    ints = [np.round(3 * d).astype(np.int64) for d in _dys(y, rng)]
    floats = [d.astype(np.float64) for d in ints]
    return [_expect_same("dy_int", lambda: _fwd_bwd(layer, x, _pack(y, ints)),
                         lambda: _fwd_bwd(layer, x, _pack(y, floats)))]


CASES = {kind: globals()[f"case_{kind}"] for kind in KINDS}


def segfault():
    """For the runner's own test: dies the way an out-of-bounds numba kernel does."""
    import ctypes

    return ctypes.string_at(0)


def run_kind(cls_name: str, variant: int, plan: dict, kind: str) -> list[tuple[str, str, str]]:
    """One input class of :func:`run_cases` alone (the runner's fallback to find the case that crashed)."""
    setup = SETUPS[cls_name][variant]
    rng = np.random.default_rng(plan["seed"])
    x = setup.x(rng, plan["B"], max(plan["T"], setup.min_T))
    return CASES[kind](setup, x, rng, plan)
