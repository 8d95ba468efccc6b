"""The optimizer base class: argument handling, clipping, weight decay, slots, state, config.

One call of :meth:`Optimizer.apply` does, in Keras 3's order (``keras/src/optimizers/base_optimizer.py``)::

    1. drop the variables whose gradient is None
    2. g ← g / loss_scale_factor                       (if set)
    3. clip (at most one of the three may be set):
         clipnorm c         g ← g·c / max(‖g‖₂, c)          per tensor, as tf.clip_by_norm
         global_clipnorm c  g ← g·c·min(1/N, 1/c),  N = sqrt(Σ_k ‖g_k‖₂²)   over all gradients
         clipvalue c        g ← clip(g, -c, c)
    4. weight decay λ:      w ← w - w·λ·η                (pre-step w, current η)
    5. update_step(g, w, η) per variable                 (the subclass's rule)
    6. iterations ← iterations + 1

η is the learning rate at the current ``iterations`` (before step 6).

Dtypes, mirroring the TensorFlow backend exactly (this decides float32 and float64 parity):

* every update is computed in the variable's dtype; the gradient is cast to it on entry (Keras clips in the
  gradient's own dtype and casts afterwards: the two differ only when gradient and variable dtypes differ);
* the learning rate is stored in ``tinynn.config.floatx()`` as read at construction (Keras keeps it in a
  floatx ``Variable``), so in float32 mode a float64 variable sees a float32-rounded η;
* hyper-parameters that Keras passes through ``ops.cast``/``tf.cast`` (SGD's momentum, Adam's β₁ and β₂ in
  the bias correction, Adagrad's initial accumulator, the weight decay λ, a Python float returned by a
  learning-rate callable) become a float32 tensor first, because that is TF's dtype for a Python float, and
  so carry float32 rounding even for float64 variables: :func:`tf_cast`;
* hyper-parameters that meet a tensor directly in an op (``rho * v``, ``v + epsilon``, ``(g - m) * (1 - β₁)``)
  are converted straight to the variable's dtype: :func:`weak`.

Embedding gradients arrive as :class:`tinynn.sparse.IndexedSlices` and stay sparse through clipping
(clipnorm and clipvalue act on the per-occurrence values; global_clipnorm's product makes them dense, as in
TF) into ``update_step``, which follows Keras's sparse-aware ops (:mod:`tinynn.sparse`): squares per
occurrence, per-occurrence steps scattered into the variable one occurrence at a time.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import config as _config
from ..layers.base import unique_name
from ..sparse import IndexedSlices, densify, squared_norm
from ..utils import to_snake_case

LearningRate = float | Callable[..., float]


def tf_cast(value: Any, dtype: np.dtype | str) -> np.generic:
    """A scalar as ``tf.cast(value, dtype)`` gives it: a Python number becomes a float32 tensor first (TF's
    default for Python floats), so it carries float32 rounding even when cast to float64; a NumPy value keeps
    its own dtype until the cast."""
    if not isinstance(value, (np.generic, np.ndarray)):
        value = np.float32(value)
    return np.asarray(value).astype(dtype)[()]


def weak(value: float, dtype: np.dtype | str) -> np.generic:
    """A Python scalar as it enters an op with a tensor of ``dtype`` (``ops.multiply(rho, v)``, ``v + eps``):
    converted straight to that dtype."""
    return np.dtype(dtype).type(value)


class _DefaultLR(float):
    """The class default of ``learning_rate``: a float that remembers it was not passed explicitly, so
    that ``lr=`` can be told apart from an explicit ``learning_rate=``."""


LR_0_01 = _DefaultLR(0.01)  # SGD's default learning rate
LR_0_001 = _DefaultLR(0.001)  # the other optimizers' default learning rate


def _validate_learning_rate(learning_rate: Any) -> None:
    if callable(learning_rate):
        return
    if not isinstance(learning_rate, (float, np.floating)):
        raise ValueError(
            "Argument `learning_rate` should be float, or a callable (that takes in the current iteration value "
            "and returns the corresponding learning rate value). "
            f"Received instead: learning_rate={learning_rate!r}"
        )


class Optimizer:
    """Base class of tinynn's optimizers; subclasses define ``_slot_names`` and ``update_step``.

    Args:
        learning_rate: a float η, or a callable schedule ``f(iterations) -> η`` (a callable without
            parameters, Keras's form, is called as ``f()``).
        weight_decay: λ; if set, ``w ← w - w·λ·η`` before each step (decoupled decay).
        clipnorm / global_clipnorm / clipvalue: gradient clipping, at most one (see the module docstring).
        loss_scale_factor: if set, gradients are divided by it before anything else.
        use_ema, ema_momentum, ema_overwrite_frequency, gradient_accumulation_steps: accepted at their
            defaults so Keras configs load; other values raise ``NotImplementedError``.
        name: defaults to the snake-cased class name, made unique ('adam', 'adam_1', ...).
        lr: Keras-2 alias of ``learning_rate``; works with a ``DeprecationWarning`` (Keras 3 rejects it).
        decay: Keras-2 argument; ignored with a warning, as Keras 3 does.

    Variables are the layers' live parameter arrays; :meth:`apply` updates them in place and never mutates
    the gradients. Optimizer state ("slots", e.g. Adam's m and v) is created on the first ``apply`` with the
    variable's shape and dtype, and is keyed by the variable's position in the list.
    """

    #: hyper-parameters (besides the base ones) that get_config() records, in Keras's config order.
    _config_keys: tuple[str, ...] = ()

    def __init__(
        self,
        learning_rate: LearningRate,
        *,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
        **kwargs: Any,
    ):
        cls = type(self).__name__
        if "lr" in kwargs:
            lr = kwargs.pop("lr")
            if not isinstance(learning_rate, _DefaultLR):
                raise ValueError(f"{cls}: got both `lr` and `learning_rate`; pass only `learning_rate`.")
            warnings.warn(
                f"{cls}: the argument `lr` is deprecated (Keras 3 rejects it); use `learning_rate` instead.",
                DeprecationWarning,
                stacklevel=3,
            )
            learning_rate = lr
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=3)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        n_clip = sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm))
        if n_clip > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        unsupported = {
            "use_ema": (use_ema, False),
            "ema_momentum": (ema_momentum, 0.99),
            "ema_overwrite_frequency": (ema_overwrite_frequency, None),
            "gradient_accumulation_steps": (gradient_accumulation_steps, None),
        }
        for arg, (value, default) in unsupported.items():
            if value != default:
                raise NotImplementedError(f"{cls}: `{arg}={value!r}` is not supported by tinynn (only {default!r}).")
        _validate_learning_rate(learning_rate)

        self.name = name or unique_name(to_snake_case(cls))
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.iterations = 0
        # Keras's learning-rate Variable has dtype floatx() at construction and keeps it.
        self._lr_dtype = np.dtype(_config.floatx())
        self._learning_rate: np.generic | Callable[..., Any]
        self.learning_rate = learning_rate
        self._slots: list[dict[str, np.ndarray]] | None = None
        self._signature: list[tuple[tuple[int, ...], np.dtype]] | None = None

    # ------------------------------------------------------------------ learning rate
    @property
    def learning_rate(self) -> float:
        """The learning rate η used by the next ``apply`` (a schedule is evaluated at ``iterations``)."""
        return float(self._current_learning_rate())

    @learning_rate.setter
    def learning_rate(self, value: LearningRate) -> None:
        if callable(value):
            self._learning_rate = value
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            self._learning_rate = self._lr_dtype.type(value)  # as assigning to Keras's floatx Variable
        else:
            raise ValueError(f"{self._who()}: learning_rate must be a float or a callable, got {value!r}")

    @property
    def learning_rate_schedule(self) -> Callable[..., Any] | None:
        """The callable schedule, or None for a constant learning rate."""
        return self._learning_rate if callable(self._learning_rate) else None

    def _current_learning_rate(self) -> Any:
        lr = self._learning_rate
        if not callable(lr):
            return lr
        if _takes_no_arguments(lr):
            return lr()
        return lr(self.iterations)

    def _learning_rate_as(self, dtype: np.dtype) -> np.generic:
        """η in ``dtype``, as ``ops.cast(learning_rate, dtype)``: a Variable casts exactly; a Python float
        from a callable goes through float32 (see :func:`tf_cast`)."""
        return tf_cast(self._current_learning_rate(), dtype)

    # ------------------------------------------------------------------ slots
    @property
    def _slot_names(self) -> tuple[str, ...]:
        """The slots each variable gets, in Keras's creation order (may depend on the hyper-parameters)."""
        return ()

    def _slot_initial_value(self, slot: str, dtype: np.dtype) -> np.generic:
        return dtype.type(0)

    @property
    def slot_names(self) -> tuple[str, ...]:
        """The slots each variable gets (e.g. Adam's ``('momentum', 'velocity')``), in Keras's creation order."""
        return tuple(self._slot_names)

    def slot_initial_value(self, slot: str, dtype: np.dtype | str) -> np.generic:
        """The value a new ``slot`` array of ``dtype`` starts from (0, or Adagrad's initial accumulator)."""
        return self._slot_initial_value(slot, np.dtype(dtype))

    @property
    def built(self) -> bool:
        """True once the slots exist (after the first ``apply`` or a ``set_state``)."""
        return self._slots is not None

    def _build(self, variables: Sequence[np.ndarray]) -> None:
        self._signature = [(v.shape, v.dtype) for v in variables]
        self._slots = [
            {s: np.full(v.shape, self._slot_initial_value(s, v.dtype), dtype=v.dtype) for s in self._slot_names}
            for v in variables
        ]

    def slot(self, index: int, slot: str) -> np.ndarray:
        """The slot array ``slot`` (e.g. 'momentum') of the variable at position ``index`` (read-only view)."""
        if self._slots is None:
            raise ValueError(f"{self._who()} has no slots yet: call apply() first")
        view = self._slots[index][slot].view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ apply
    def apply(self, grads: Sequence[np.ndarray | None], variables: Sequence[np.ndarray]) -> None:
        """One optimizer step: update each ``variables[i]`` in place from ``grads[i]`` (None: skipped)."""
        grads, variables = list(grads), list(variables)
        self._check_inputs(grads, variables)
        if self._slots is None:
            self._build(variables)
        else:
            self._check_signature(variables)
        keep = [i for i, g in enumerate(grads) if g is not None]
        if not keep:
            raise ValueError(f"{self._who()}: no gradients provided for any variable.")
        if len(keep) < len(grads):
            missing = [i for i, g in enumerate(grads) if g is None]
            warnings.warn(
                f"{self._who()}: gradients do not exist for the variables at positions {missing}.", stacklevel=2
            )
        gs = [_as_gradient(grads[i], variables[i].dtype) for i in keep]
        ws = [variables[i] for i in keep]
        if self.loss_scale_factor is not None:
            gs = [_map(g, lambda v: v / weak(self.loss_scale_factor, v.dtype)) for g in gs]
        gs = self._clip_gradients(gs)  # IndexedSlices (embedding gradients) stay sparse into update_step
        if self.weight_decay is not None:
            for w in ws:
                lr = self._learning_rate_as(w.dtype)
                wd = tf_cast(self.weight_decay, w.dtype)
                w -= w * wd * lr
        lr = self._current_learning_rate()  # evaluated once, as Keras passes one value to every update_step
        for i, g, w in zip(keep, gs, ws):
            self.update_step(g, w, tf_cast(lr, w.dtype), self._slots[i])
        self.iterations += 1

    def update_step(self, g: np.ndarray, w: np.ndarray, lr: np.generic, slots: dict[str, np.ndarray]) -> None:
        """Update ``w`` (and ``slots``) in place from the processed gradient ``g``; ``lr`` is in w's dtype.

        ``g`` may be :class:`tinynn.sparse.IndexedSlices`: subclasses write their rule with the sparse-aware
        ops of :mod:`tinynn.sparse` (``square``, ``scale``, ``divide``, ``densify``, ``assign_sub``…) exactly
        where Keras's ``update_step`` calls the corresponding ``ops`` function."""
        raise NotImplementedError

    def _clip_gradients(self, gs: list[np.ndarray]) -> list[np.ndarray]:
        if self.clipnorm and self.clipnorm > 0:
            return [_clip_by_norm(g, self.clipnorm) for g in gs]
        if self.global_clipnorm and self.global_clipnorm > 0:
            return _clip_by_global_norm(gs, self.global_clipnorm)
        if self.clipvalue and self.clipvalue > 0:
            return [_map(g, lambda v: np.clip(v, weak(-self.clipvalue, v.dtype), weak(self.clipvalue, v.dtype)))
                    for g in gs]
        return gs

    def _who(self) -> str:
        return f"Optimizer {self.name!r} ({type(self).__name__})"

    def _check_inputs(self, grads: list, variables: list) -> None:
        who = self._who()
        if len(grads) != len(variables):
            raise ValueError(f"{who}: got {len(grads)} gradients for {len(variables)} variables")
        for i, (g, w) in enumerate(zip(grads, variables)):
            if not isinstance(w, np.ndarray) or w.dtype not in (np.float32, np.float64):
                got = f"dtype {w.dtype}" if isinstance(w, np.ndarray) else type(w).__name__
                raise ValueError(f"{who}: variable {i} must be a float32/float64 NumPy array, got {got}")
            if not w.flags.writeable:
                raise ValueError(f"{who}: variable {i} is read-only; optimizers update variables in place")
            if g is not None and np.shape(g) != w.shape:
                raise ValueError(f"{who}: gradient {i} has shape {np.shape(g)}, expected {w.shape} (its variable's)")

    def _check_signature(self, variables: list[np.ndarray]) -> None:
        expected = self._signature
        got = [(v.shape, v.dtype) for v in variables]
        if got != expected:
            raise ValueError(
                f"{self._who()} was built for variables {_describe(expected)} but got {_describe(got)}; "
                "use a new optimizer for a new set of variables."
            )

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of everything that evolves: 'iterations', 'learning_rate' (unless it is a schedule) and
        each slot as '<slot>_<position>', in Keras's variable order (per variable, its slots)."""
        state: dict[str, np.ndarray] = {"iterations": np.array(self.iterations, dtype=np.int64)}
        if not callable(self._learning_rate):
            state["learning_rate"] = np.array(self._learning_rate, dtype=self._lr_dtype)
        for i, slots in enumerate(self._slots or []):
            for s in self._slot_names:
                state[f"{s}_{i}"] = slots[s].copy()
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state`'s output exactly (the arrays are copied). A state without slot entries
        leaves the optimizer unbuilt: its slots are created (zero/initial) by the next ``apply``. A stored
        float32/float64 learning rate keeps its dtype (the floatx its optimizer was created under), so a
        restored optimizer takes bit-identical steps whatever ``floatx`` is now."""
        state = dict(state)
        if "iterations" not in state:
            raise ValueError(f"{self._who()}: state has no 'iterations' entry")
        iterations = int(np.asarray(state.pop("iterations")))
        lr = state.pop("learning_rate", None)
        if lr is not None and callable(self._learning_rate):
            raise ValueError(f"{self._who()}: state has a learning_rate but this optimizer uses a schedule")
        n = len(state) // max(len(self._slot_names), 1)
        expected = {f"{s}_{i}" for i in range(n) for s in self._slot_names}
        if set(state) != expected:
            raise ValueError(
                f"{self._who()}: state keys {sorted(state)} do not match this optimizer's slots "
                f"{self._slot_names} for {n} variables"
            )
        slots = [{s: np.array(state[f"{s}_{i}"], copy=True) for s in self._slot_names} for i in range(n)]
        signature = [(sl[self._slot_names[0]].shape, sl[self._slot_names[0]].dtype) for sl in slots]
        for _shape, dt in signature:
            if dt not in (np.float32, np.float64):
                raise ValueError(f"{self._who()}: state slots must be float32/float64, got {dt}")
        for i, sl in enumerate(slots):
            if any((a.shape, a.dtype) != signature[i] for a in sl.values()):
                raise ValueError(f"{self._who()}: the slots of variable {i} differ in shape or dtype")
        if lr is not None:
            lr = np.asarray(lr)
            if lr.shape != () or lr.dtype.kind != "f":
                raise ValueError(f"{self._who()}: state learning_rate must be a float scalar, got {lr.dtype}{lr.shape}")
        self.iterations = iterations
        if lr is not None:
            if lr.dtype in (np.float32, np.float64):
                self._lr_dtype = lr.dtype
            self._learning_rate = lr.astype(self._lr_dtype)[()]
        if n:
            self._slots, self._signature = slots, signature
        else:
            self._slots, self._signature = None, None

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        """Constructor arguments, with the same keys and order as Keras's ``get_config()``."""
        lr = self._learning_rate if callable(self._learning_rate) else float(self._learning_rate)
        cfg = {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
        for key in self._config_keys:
            cfg[key] = getattr(self, key)
        return cfg

    @classmethod
    def from_config(cls, cfg: dict, custom_objects: dict | None = None) -> Optimizer:
        return cls(**cfg)

    def __repr__(self) -> str:
        cls, lr = type(self).__name__, self.learning_rate
        return f"<{cls} name={self.name!r} learning_rate={lr:.6g} iterations={self.iterations}>"


def _as_gradient(g, dtype) -> np.ndarray | IndexedSlices:
    """The gradient in the variable's dtype; IndexedSlices stay sparse (TF casts their values)."""
    if isinstance(g, IndexedSlices):
        return g.astype(dtype)
    return np.asarray(g).astype(dtype, copy=False)


def _map(g, fn):
    """Apply an elementwise op to a dense gradient, or to the values of IndexedSlices (as TF does)."""
    return g.map_values(fn) if isinstance(g, IndexedSlices) else fn(g)


def _clip_by_norm(g: np.ndarray, clipnorm: float) -> np.ndarray:
    """tf.clip_by_norm: ``g·c / max(‖g‖₂, c)``; a zero gradient stays zero."""
    values = g.values if isinstance(g, IndexedSlices) else g  # TF measures IndexedSlices by their values
    l2sum = np.sum(np.square(values), keepdims=True)
    l2norm = np.sqrt(l2sum) if l2sum > 0 else l2sum
    c = weak(clipnorm, g.dtype)
    return _map(g, lambda v: (v * c) / np.maximum(l2norm.reshape((1,) * v.ndim), c))


def _clip_by_global_norm(gs: list[np.ndarray], clipnorm: float) -> list[np.ndarray]:
    """Keras's clip_by_global_norm: ``g·s`` with ``s = c·min(1/N, 1/c) + (N - N)``, ``N = sqrt(Σ_k ‖g_k‖₂²)``
    (the ``N - N`` term turns a non-finite norm into NaN). ``IndexedSlices * tensor`` is dense in TF (the
    slices are summed first), so an embedding gradient leaves this step dense."""
    dtype = np.result_type(*gs)
    norm = np.sqrt(np.sum(np.stack([np.asarray(squared_norm(g)).astype(dtype) for g in gs])))
    with np.errstate(divide="ignore"):
        inv_norm = dtype.type(1.0) / norm
    scale = weak(clipnorm, dtype) * np.minimum(inv_norm, weak(1.0 / clipnorm, dtype))
    scale = scale + (norm - norm)
    return [(densify(g) * scale).astype(g.dtype, copy=False) for g in gs]


def _takes_no_arguments(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def _describe(signature: list[tuple[tuple[int, ...], np.dtype]] | None) -> str:
    return "[" + ", ".join(f"{shape} {np.dtype(dt).name}" for shape, dt in (signature or [])) + "]"
