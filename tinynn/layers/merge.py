r"""Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot (Keras 3's ``merging``).

Each takes a list of inputs ``[x_1, …, x_n]`` (batch axis first) and returns one tensor; ``backward(δy)``
returns the list ``[δx_1, …, δx_n]``. No weights.

Elementwise merges (Add, Subtract, Multiply, Average, Maximum, Minimum) broadcast their inputs as Keras does:
an input of lower rank gets size-1 axes inserted after the batch axis until the ranks agree, then NumPy
broadcasting applies (sizes must be equal or 1). Writing ``x̄_i`` for the input broadcast to the output shape,
and ``unbroadcast`` for summing a gradient over the broadcast axes back to ``x_i``'s shape::

    Add       y = Σ_i x̄_i                       δx_i = unbroadcast(δy)
    Subtract  y = x̄_1 - x̄_2                     δx_1 = unbroadcast(δy), δx_2 = -unbroadcast(δy)
    Average   y = (Σ_i x̄_i) / n                 δx_i = unbroadcast(δy / n)
    Multiply  y = Π_i x̃_i                       δx_i = unbroadcast(δy ⊙ Π_{j≠i} x̃_j ⊙ m_i)
    Maximum   y = max(…max(max(x̄_1, x̄_2), x̄_3)…)   the gradient goes to the selected argument; on a tie to
    Minimum   y = min(…)                           the earlier one (TensorFlow's rule: ``x >= y`` for max)

Masks (boolean ``(batch, …)`` arrays over all but the last axis, as an Embedding(mask_zero) or Masking makes
them): the output mask is the OR of the input masks when every input has one, else None. Multiply replaces a
masked input by 1 (``x̃_i = m_i ? x̄_i : 1``; with every input masked, the output is 0 where no input is valid);
Maximum and Minimum fold their inputs left to right and let a masked entry take the running result's value
(and the running result take the new input's value where it is masked), exactly Keras's
``_apply_merge_op_and_or_mask``; the backward pass routes gradients through those selections.

Concatenate(axis): ``y = [x_1, …, x_n]`` along ``axis``; ``δx_i`` is the slice of ``δy``. All axes except
``axis`` must match. Its mask concatenates each input's mask (all True for an input without one) broadcast to
the input's shape, then ORs over the last axis (Keras's rule).

Dot(axes, normalize): for ``x`` (B, …, K at axis a, …) and ``y`` (B, …, K at axis b, …)::

    out[b, I, J] = Σ_k x̂[b, I, k] ŷ[b, k, J]          I: x's other axes, J: y's other axes (rank-1 results
                                                      get a trailing axis of 1)
    δx̂[b, I, k] = Σ_J δout[b, I, J] ŷ[b, k, J]        δŷ[b, k, J] = Σ_I x̂[b, I, k] δout[b, I, J]

With ``normalize=True`` each input is L2-normalized along its dot axis first, as Keras does it:
``x̂ = x · min(1/‖x‖, 1/ε)`` (ε = 1e-7), with ``δx = (δx̂ - x̂ ⟨x̂, δx̂⟩)/‖x‖`` (``δx̂/ε`` where clipped).
Dot outputs no mask.
"""

from __future__ import annotations

import numpy as np

from .. import config as _config
from .base import Layer, format_shape


def _fmt(shapes) -> str:
    return "[" + ", ".join(format_shape(s) for s in shapes) + "]"


class Merge(Layer):
    """Base class: a list of inputs in, one tensor out, the gradient of each input out of ``backward``."""

    supports_masking = True
    takes_list_input = True
    requires_list_input = True
    min_inputs = 1

    # ------------------------------------------------------------------ building and checks
    def ensure_built(self, input_shape) -> None:
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not isinstance(input_shape[0], tuple):
            raise ValueError(f"{self.who}: a merge layer must be called on a list of inputs, got input shape "
                             f"{input_shape!r}")
        shapes = [tuple(None if s is None else int(s) for s in shape) for shape in input_shape]
        self._check_shapes(shapes)
        if not self.built:
            self.input_shape = shapes
            self.build(shapes)
            self.built = True

    def _check_shapes(self, shapes: list[tuple]) -> None:
        if len(shapes) < self.min_inputs:
            raise ValueError(f"{self.who} must be called on a list of at least {self.min_inputs} inputs, got "
                             f"{len(shapes)}: {_fmt(shapes)}")
        if any(len(s) < 1 for s in shapes):
            raise ValueError(f"{self.who}: every input needs a batch axis, got shapes {_fmt(shapes)}")
        batches = {s[0] for s in shapes} - {None}
        if len(batches) > 1:
            raise ValueError(f"{self.who} cannot merge tensors with different batch sizes: {_fmt(shapes)}")
        self.compute_output_shape(shapes)

    def check_input(self, x) -> None:
        shapes = [xi.shape for xi in x]
        if any(xi.ndim == 0 or xi.shape[0] == 0 for xi in x):
            raise ValueError(f"{self.who} received an empty batch or a scalar: input shapes {shapes}")
        self._check_shapes([tuple(s) for s in shapes])

    def compute_mask(self, x, mask):
        """OR of the input masks when every input has one (Keras's ``Merge.compute_mask``)."""
        if mask is None or not isinstance(mask, (list, tuple)) or any(m is None for m in mask):
            return None
        out = np.asarray(mask[0], dtype=bool)
        for m in mask[1:]:
            out = out | np.asarray(m, dtype=bool)
        return out

    def _cache_for_backward(self, **values) -> None:
        self._cache = values




# ------------------------------------------------------------------ elementwise merges


def _elementwise_shape(who: str, shapes: list[tuple]) -> tuple:
    """Keras's output shape of an elementwise merge: the non-batch axes broadcast right-aligned."""
    out = shapes[0][1:]
    for shape in shapes[1:]:
        a, b = out, shape[1:]
        if len(a) < len(b):
            a, b = b, a
        merged = list(a[: len(a) - len(b)]) if b else list(a)
        if b:
            for i, j in zip(a[len(a) - len(b):], b):
                if i is None or j is None:
                    merged.append(None)
                elif i == 1:
                    merged.append(j)
                elif j == 1 or i == j:
                    merged.append(i)
                else:
                    raise ValueError(f"{who}: inputs have incompatible shapes {_fmt(shapes)}: they must be equal or "
                                     "1 on every axis but the batch axis (broadcasting)")
        out = tuple(merged)
    batches = {s[0] for s in shapes} - {None}
    return (batches.pop() if len(batches) == 1 else None, *out)


def _unbroadcast(g: np.ndarray, shape: tuple, aligned: tuple) -> np.ndarray:
    """Sum ``g`` over the axes where the aligned input had size 1 (or none), then drop the inserted axes."""
    if g.shape != aligned:
        extra = g.ndim - len(aligned)
        if extra:
            g = g.sum(axis=tuple(range(extra)))
        axes = tuple(i for i, (a, n) in enumerate(zip(aligned, g.shape)) if a == 1 and n != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


class _Elementwise(Merge):
    def compute_output_shape(self, input_shape):
        return _elementwise_shape(self.who, [tuple(s) for s in input_shape])

    def _align(self, x: list[np.ndarray]) -> list[np.ndarray]:
        """Insert size-1 axes after the batch axis until every input has the highest rank (Keras's reshape)."""
        rank = max(xi.ndim for xi in x)
        return [xi.reshape(xi.shape[:1] + (1,) * (rank - xi.ndim) + xi.shape[1:]) for xi in x]

    def _broadcast(self, x, mask):
        aligned = self._align(x)
        shape = np.broadcast_shapes(*[a.shape for a in aligned])
        full = [np.broadcast_to(a, shape) for a in aligned]
        masks = None
        if mask is not None:
            masks = [None if m is None or m.ndim != len(shape) - 1
                     else np.broadcast_to(np.asarray(m, bool)[..., None], shape)
                     for m in mask]
        return aligned, shape, full, masks

    def _finish(self, x, aligned, grads_full) -> list[np.ndarray]:
        return [_unbroadcast(g, xi.shape, a.shape) for g, xi, a in zip(grads_full, x, aligned)]


class Add(_Elementwise):
    r"""``y = x_1 + … + x_n`` (with Keras's broadcasting); ``δx_i = unbroadcast(δy)``."""

    def forward(self, x, training=False, mask=None):
        aligned = self._align(x)
        y = aligned[0]
        for a in aligned[1:]:
            y = y + a
        self._cache_for_backward(x=[xi.shape for xi in x], aligned=[a.shape for a in aligned], y=y.shape)
        return y

    def backward(self, dy):
        c = self._cache
        self.gradients = []
        return [_unbroadcast(dy, s, a) for s, a in zip(c["x"], c["aligned"])]


class Subtract(_Elementwise):
    r"""``y = x_1 - x_2`` (exactly two inputs); ``δx_1 = unbroadcast(δy)``, ``δx_2 = -unbroadcast(δy)``."""

    min_inputs = 2

    def _check_shapes(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f"{self.who} must be called on exactly 2 inputs, got {len(shapes)}: {_fmt(shapes)}")
        super()._check_shapes(shapes)

    def forward(self, x, training=False, mask=None):
        a, b = self._align(x)
        y = a - b
        self._cache_for_backward(x=[xi.shape for xi in x], aligned=[a.shape, b.shape], y=y.shape)
        return y

    def backward(self, dy):
        c = self._cache
        self.gradients = []
        (sa, sb), (aa, ab) = c["x"], c["aligned"]
        return [_unbroadcast(dy, sa, aa), -_unbroadcast(dy, sb, ab)]


class Average(_Elementwise):
    r"""``y = (x_1 + … + x_n) / n``; ``δx_i = unbroadcast(δy / n)``."""

    def forward(self, x, training=False, mask=None):
        aligned = self._align(x)
        y = aligned[0]
        for a in aligned[1:]:
            y = y + a
        y = y / np.asarray(len(x), dtype=y.dtype)
        self._cache_for_backward(x=[xi.shape for xi in x], aligned=[a.shape for a in aligned], y=y.shape)
        return y

    def backward(self, dy):
        c = self._cache
        self.gradients = []
        g = dy / np.asarray(len(c["x"]), dtype=dy.dtype)
        return [_unbroadcast(g, s, a) for s, a in zip(c["x"], c["aligned"])]


class Multiply(_Elementwise):
    r"""``y = Π_i x̃_i`` with ``x̃_i = m_i ? x̄_i : 1`` for a masked input; ``δx_i = δy ⊙ Π_{j≠i} x̃_j ⊙ m_i``.

    With every input masked the output is ``y ⊙ (m_1 ∨ … ∨ m_n)`` (0 where no input is valid), as in Keras.
    """

    def forward(self, x, training=False, mask=None):
        aligned, shape, full, masks = self._broadcast(x, mask)
        masks = masks or [None] * len(x)
        factors = [f if m is None else np.where(m, f, f.dtype.type(1)) for f, m in zip(full, masks)]
        y = factors[0]
        for f in factors[1:]:
            y = y * f
        all_masked = all(m is not None for m in masks)
        out_mask = None
        if all_masked:
            out_mask = masks[0]
            for m in masks[1:]:
                out_mask = out_mask | m
            y = np.where(out_mask, y, y.dtype.type(0))
        self._cache_for_backward(x=x, aligned=aligned, factors=factors, masks=masks, out_mask=out_mask, y=y.shape)
        return y

    def backward(self, dy):
        c = self._cache
        self.gradients = []
        if c["out_mask"] is not None:
            dy = np.where(c["out_mask"], dy, dy.dtype.type(0))
        factors, grads = c["factors"], []
        for i, m in enumerate(c["masks"]):
            g = dy
            for j, f in enumerate(factors):
                if j != i:
                    g = g * f
            if m is not None:
                g = np.where(m, g, g.dtype.type(0))
            grads.append(g)
        return self._finish(c["x"], c["aligned"], grads)


class _MaxMin(_Elementwise):
    """Keras's ``_apply_merge_op_and_or_mask`` folded left to right, with TensorFlow's tie rule."""

    def _select(self, a, b):  # where the running result (first argument) wins, ties included
        raise NotImplementedError

    def forward(self, x, training=False, mask=None):
        aligned, shape, full, masks = self._broadcast(x, mask)
        masks = masks or [None] * len(x)
        out, om = full[0], masks[0]
        steps = []
        for xi, m in zip(full[1:], masks[1:]):
            xa = xi if m is None else np.where(m, xi, out)
            om_prev = om
            ob = out if om is None else np.where(om, out, xa)
            om = (om | m) if (m is not None and om is not None) else None
            sel = self._select(ob, xa)
            steps.append((m, om_prev, sel))
            out = np.where(sel, ob, xa)
        self._cache_for_backward(x=x, aligned=aligned, steps=steps, y=out.shape)
        return out

    def backward(self, dy):
        c = self._cache
        d = dy
        self.gradients = []
        zero = d.dtype.type(0)
        grads_rev = []
        for m, om_prev, sel in reversed(c["steps"]):
            d_ob, d_xa = np.where(sel, d, zero), np.where(sel, zero, d)
            if om_prev is not None:
                d_prev = np.where(om_prev, d_ob, zero)
                d_xa = d_xa + np.where(om_prev, zero, d_ob)
            else:
                d_prev = d_ob
            if m is not None:
                d_xi = np.where(m, d_xa, zero)
                d_prev = d_prev + np.where(m, zero, d_xa)
            else:
                d_xi = d_xa
            grads_rev.append(d_xi)
            d = d_prev
        grads = [d] + grads_rev[::-1]
        return self._finish(c["x"], c["aligned"], grads)


class Maximum(_MaxMin):
    r"""``y = max(x_1, …, x_n)`` elementwise; the gradient goes to the maximum (the earliest on ties, as
    TensorFlow's ``Maximum`` gradient, ``x >= y``)."""

    def _select(self, a, b):
        return a >= b


class Minimum(_MaxMin):
    r"""``y = min(x_1, …, x_n)`` elementwise; the gradient goes to the minimum (the earliest on ties, as
    TensorFlow's ``Minimum`` gradient, ``x <= y``)."""

    def _select(self, a, b):
        return a <= b


# ------------------------------------------------------------------ Concatenate


class Concatenate(Merge):
    r"""``y = concatenate([x_1, …, x_n], axis)``; ``δx_i = δy[…, o_i : o_i + n_i, …]`` (the input's slice)."""

    _config_keys = ("axis",)

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"{self.who}: axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def _resolved_axis(self, rank: int) -> int:
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 0 < axis < rank:
            raise ValueError(f"{self.who}: axis={self.axis} is not a non-batch axis of inputs of rank {rank}")
        return axis

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(f"{self.who} requires inputs with matching shapes except for the concatenation axis "
                             f"{self.axis}; got inputs of different ranks {_fmt(shapes)}")
        rank = ranks.pop()
        axis = self._resolved_axis(rank)
        for i in range(rank):
            if i == axis:
                continue
            sizes = {s[i] for s in shapes} - {None}
            if len(sizes) > 1:
                raise ValueError(f"{self.who} requires inputs with matching shapes except for the concatenation "
                                 f"axis {self.axis}; axis {i} differs: {_fmt(shapes)}")
        out = list(shapes[0])
        for i in range(rank):
            if i != axis:
                known = [s[i] for s in shapes if s[i] is not None]
                out[i] = known[0] if known else None
        sizes = [s[axis] for s in shapes]
        out[axis] = None if any(s is None for s in sizes) else sum(sizes)
        return tuple(out)

    def forward(self, x, training=False, mask=None):
        axis = self._resolved_axis(x[0].ndim)
        y = np.concatenate(x, axis=axis)
        self._cache_for_backward(sizes=[xi.shape[axis] for xi in x], axis=axis, y=y.shape)
        return y

    def backward(self, dy):
        c = self._cache
        self.gradients = []
        cuts = np.cumsum(c["sizes"])[:-1]
        return [np.ascontiguousarray(g) for g in np.split(dy, cuts, axis=c["axis"])]

    def compute_mask(self, x, mask):
        """Each input's mask (all True without one) broadcast to its shape, concatenated, OR over the last axis."""
        if mask is None or not isinstance(mask, (list, tuple)) or all(m is None for m in mask):
            return None
        axis = self._resolved_axis(np.ndim(x[0]))
        full = []
        for xi, m in zip(x, mask):
            shape = np.shape(xi)
            if m is None:
                full.append(np.ones(shape, dtype=bool))
            else:
                m = np.asarray(m, dtype=bool)
                full.append(np.broadcast_to(m[..., None], shape) if m.ndim < len(shape) else m)
        return np.any(np.concatenate(full, axis=axis), axis=-1)


# ------------------------------------------------------------------ Dot


class Dot(Merge):
    r"""Batchwise dot product of two inputs along ``axes`` (see the module docstring for the equations)."""

    min_inputs = 2
    _config_keys = ("axes", "normalize")

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
            axes = int(axes)
        elif isinstance(axes, (list, tuple)) and len(axes) == 2 and all(
                isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
            axes = [int(a) for a in axes]
        else:
            raise ValueError(f"{self.who}: axes must be an integer or a pair of integers, got {axes!r}")
        self.axes = axes
        self.normalize = bool(normalize)

    def _dot_axes(self, ranks) -> list[int]:
        if isinstance(self.axes, int):
            axes = [self.axes % r if self.axes < 0 else self.axes for r in ranks]
        else:
            axes = [a % r if a < 0 else a for a, r in zip(self.axes, ranks)]
        for a, r in zip(axes, ranks):
            if not 0 < a < r:
                raise ValueError(f"{self.who}: axes={self.axes} must name a non-batch axis of each input "
                                 f"(ranks {list(ranks)}); the batch axis 0 cannot be reduced")
        return axes

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) != 2:
            raise ValueError(f"{self.who} must be called on a list of 2 inputs, got {len(shapes)}: {_fmt(shapes)}")
        s1, s2 = shapes
        if len(s1) < 2 or len(s2) < 2:
            raise ValueError(f"{self.who}: inputs must have rank >= 2, got {_fmt(shapes)}")
        a1, a2 = self._dot_axes([len(s1), len(s2)])
        if s1[a1] is not None and s2[a2] is not None and s1[a1] != s2[a2]:
            raise ValueError(f"{self.who}: incompatible input shapes {_fmt(shapes)}: axis {a1} of the first input "
                             f"has size {s1[a1]}, axis {a2} of the second has size {s2[a2]}")
        l1, l2 = list(s1), list(s2)
        l1.pop(a1)
        l2.pop(a2)
        l2.pop(0)
        out = l1 + l2
        if len(out) == 1:
            out += [1]
        return tuple(out)

    def _l2_normalize(self, v: np.ndarray, axis: int):
        """Keras's ``normalize``: v · min(1/‖v‖, 1/ε); returns (v̂, the scale, where the clip was active)."""
        eps = v.dtype.type(_config.epsilon())
        sq = np.sum(np.square(v), axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):
            inv = 1 / np.sqrt(sq)
        clipped = inv > 1 / eps
        inv = np.where(clipped, 1 / eps, inv).astype(v.dtype)
        return v * inv, inv, clipped

    def _l2_normalize_backward(self, dv_hat, v_hat, inv, clipped, axis):
        proj = np.sum(v_hat * dv_hat, axis=axis, keepdims=True)
        return np.where(clipped, dv_hat * inv, (dv_hat - v_hat * proj) * inv)

    def forward(self, x, training=False, mask=None):
        x1, x2 = x
        a1, a2 = self._dot_axes([x1.ndim, x2.ndim])
        norm = None
        if self.normalize:
            x1, inv1, c1 = self._l2_normalize(x1, a1)
            x2, inv2, c2 = self._l2_normalize(x2, a2)
            norm = (inv1, c1, inv2, c2)
        m1 = np.moveaxis(x1, a1, -1)  # (B, I..., K)
        m2 = np.moveaxis(x2, a2, 1)  # (B, K, J...)
        B, K = m1.shape[0], m1.shape[-1]
        I, J = m1.shape[1:-1], m2.shape[2:]
        out = np.matmul(m1.reshape(B, -1, K), m2.reshape(B, K, -1))  # (B, ΠI, ΠJ)
        out_shape = (B, *I, *J)
        if len(out_shape) == 1:
            out_shape = (B, 1)
        y = out.reshape(out_shape)
        self._cache_for_backward(m1=m1, m2=m2, axes=(a1, a2), norm=norm, x_hat=(x1, x2), y=y.shape)
        return y

    def backward(self, dy):
        c = self._cache
        self.gradients = []
        m1, m2 = c["m1"], c["m2"]
        B, K = m1.shape[0], m1.shape[-1]
        d = dy.reshape(B, int(np.prod(m1.shape[1:-1], dtype=int)), -1)
        dm1 = np.matmul(d, np.swapaxes(m2.reshape(B, K, -1), 1, 2)).reshape(m1.shape)
        dm2 = np.matmul(np.swapaxes(m1.reshape(B, -1, K), 1, 2), d).reshape(m2.shape)
        a1, a2 = c["axes"]
        dx1, dx2 = np.moveaxis(dm1, -1, a1), np.moveaxis(dm2, 1, a2)
        if c["norm"] is not None:
            inv1, c1, inv2, c2 = c["norm"]
            x1h, x2h = c["x_hat"]
            dx1 = self._l2_normalize_backward(dx1, x1h, inv1, c1, a1)
            dx2 = self._l2_normalize_backward(dx2, x2h, inv2, c2, a2)
        return [np.ascontiguousarray(dx1), np.ascontiguousarray(dx2)]

    def compute_mask(self, x, mask):
        return None

    def get_config(self):
        cfg = super().get_config()
        cfg["axes"] = self.axes if isinstance(self.axes, int) else list(self.axes)
        return cfg


# ------------------------------------------------------------------ Keras's functional shortcuts


def add(inputs, **kwargs):
    """``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis: int = -1, **kwargs):
    """``Concatenate(axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize: bool = False, **kwargs):
    """``Dot(axes, normalize, **kwargs)(inputs)``."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
