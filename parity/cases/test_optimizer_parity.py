"""Optimizers against Keras 3, step by step: the same variables and the same 20 random gradient lists go to
``keras.optimizers.X.apply`` (on ``keras.Variable``s) and to ``tinynn.optimizers.X.apply`` (on NumPy arrays);
every variable is compared after every step, and every slot (m, v, ...) and the iteration count at the end.

Hyper-parameters are drawn as arbitrary floats (not round values), so float32 rounding of hyper-parameters
(Keras casts some Python floats through float32, even for float64 variables) is exercised. Gradient scales
vary per step over four decades so clipping is sometimes active and sometimes not, and some gradients are
exactly zero (clip_by_norm's zero-norm branch).

The learning rate is a floatx ``Variable`` in Keras, created with the floatx in force when the optimizer is
constructed: :func:`floatx` sets Keras's and tinynn's floatx around the construction only and restores both,
so other tests in the process are unaffected. Float64 variables are also run with a float32 floatx (the
learning rate is then float32-rounded on both sides).

float32 runs are measured against Keras's float64 run of the same case (the same float32 initial values and
gradients, cast exactly), each variable relative to the scale of all variables at that step (slots: of all
slots of that kind), as the harness measures float32 layers: a variable that drifts to near zero over 20
steps would otherwise turn a one-ulp difference in an earlier step (e.g. in a global norm's summation order)
into a large relative error of its own tiny value.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from parity.harness import assert_checks, compare, result_scale
from tinynn import config as tn_config
from tinynn import optimizers as tn_optimizers

STEPS = 20

# tinynn slot name -> attribute of the Keras optimizer holding that slot's variables (in variable order)
KERAS_SLOTS = {
    "SGD": {"momentum": "momentums"},
    "RMSprop": {"velocity": "_velocities", "momentum": "_momentums", "average_gradient": "_average_gradients"},
    "Adam": {"momentum": "_momentums", "velocity": "_velocities", "velocity_hat": "_velocity_hats"},
    "AdamW": {"momentum": "_momentums", "velocity": "_velocities", "velocity_hat": "_velocity_hats"},
    "Adagrad": {"accumulator": "_accumulators"},
}


@contextlib.contextmanager
def floatx(dtype: str):
    """Keras's and tinynn's floatx set to ``dtype`` inside the block, restored afterwards."""
    old_keras, old_tn = keras.config.floatx(), tn_config.floatx()
    keras.config.set_floatx(dtype)
    tn_config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old_keras)
        tn_config.set_floatx(old_tn)


def unit(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


shapes_st = st.lists(st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)
clip_st = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["clipnorm", "global_clipnorm", "clipvalue"]), unit(0.05, 5.0)),
)
common_st = st.fixed_dictionaries(
    {
        "learning_rate": unit(1e-4, 0.3),
        "clip": clip_st,
        "weight_decay": st.one_of(st.none(), unit(1e-3, 0.2)),
        "loss_scale_factor": st.one_of(st.none(), unit(0.25, 4.0)),
        "lr_mode": st.sampled_from(["constant", "schedule", "set_midway"]),
        "lr_decay": unit(0.8, 1.0),
        "shapes": shapes_st,
        "dtype": st.sampled_from(["float64", "float32"]),
        "floatx_is_dtype": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


def _kwargs(common: dict, options: dict) -> dict:
    kw = dict(options)
    if common["clip"] is not None:
        kw[common["clip"][0]] = common["clip"][1]
    if common["weight_decay"] is not None and "weight_decay" not in kw:
        kw["weight_decay"] = common["weight_decay"]
    if common["loss_scale_factor"] is not None:
        kw["loss_scale_factor"] = common["loss_scale_factor"]
    return kw


def run_parity(name: str, options: dict, common: dict) -> dict[str, float]:
    """Run both optimizers for STEPS steps; return the max relative error per compared quantity kind,
    after asserting every check is within the dtype's tolerance."""
    dtype = common["dtype"]
    fx = dtype if common["floatx_is_dtype"] else "float32"
    rng = np.random.default_rng(common["seed"])
    shapes = common["shapes"]
    w0 = [np.asarray(rng.normal(0.0, 1.0, size=s), dtype=dtype) for s in shapes]
    lr0, decay = common["learning_rate"], common["lr_decay"]
    kw = _kwargs(common, options)

    def schedule(iterations: int) -> float:
        return lr0 * decay**iterations

    def keras_optimizer(fx_: str):
        """A Keras optimizer constructed under floatx ``fx_`` (its learning rate lives in floatx)."""
        holder: list = []
        with floatx(fx_):
            if common["lr_mode"] == "schedule":
                # Keras calls a plain callable with no arguments; tinynn passes the iteration count.
                opt = getattr(keras.optimizers, name)(
                    learning_rate=lambda: schedule(int(holder[0].iterations.numpy())), **kw)
            else:
                opt = getattr(keras.optimizers, name)(learning_rate=lr0, **kw)
                assert opt._learning_rate.dtype == fx_, "the Keras learning rate did not get the intended floatx"
        holder.append(opt)
        return opt

    k_opt = keras_optimizer(fx)
    with floatx(fx):
        t_opt = getattr(tn_optimizers, name)(learning_rate=schedule if common["lr_mode"] == "schedule" else lr0, **kw)
    if common["lr_mode"] != "schedule":
        assert t_opt._lr_dtype == np.dtype(fx)
    # float32: the reference is Keras's float64 run of the same case (the same float32 values, cast exactly),
    # each variable relative to the scale of all variables (or slots) of that step together
    k64_opt = keras_optimizer("float64") if dtype == "float32" else None

    k_vars = [keras.Variable(w, dtype=dtype) for w in w0]
    k64_vars = [keras.Variable(w.astype("float64"), dtype="float64") for w in w0] if k64_opt else []
    t_vars = [w.copy() for w in w0]
    checks = []
    for step in range(STEPS):
        if common["lr_mode"] == "set_midway" and step == STEPS // 2:
            for opt in (k_opt, t_opt, k64_opt):
                if opt is not None:
                    opt.learning_rate = lr0 * decay
        scale = 10.0 ** rng.uniform(-2, 2)
        grads = [np.asarray(scale * rng.normal(size=s), dtype=dtype) for s in shapes]
        for g in grads:
            if rng.random() < 0.05:
                g[...] = 0
        grads_before = [g.copy() for g in grads]
        k_opt.apply([keras.ops.convert_to_tensor(g) for g in grads], k_vars)
        if k64_opt is not None:
            k64_opt.apply([keras.ops.convert_to_tensor(g.astype("float64")) for g in grads], k64_vars)
        t_opt.apply(grads, t_vars)
        for g, g0 in zip(grads, grads_before):
            assert np.array_equal(g, g0), "tinynn mutated a gradient"
        refs64 = [v.numpy() for v in k64_vars] or [None] * len(t_vars)
        step_scale = result_scale([r for r in refs64 if r is not None])
        for j, (t, k) in enumerate(zip(t_vars, k_vars, strict=True)):
            assert t.dtype == np.dtype(dtype)
            checks.append(("variables", compare(f"step {step} variable {j}", t, k.numpy(), dtype, ref64=refs64[j],
                                                scale=step_scale)))

    assert t_opt.iterations == int(k_opt.iterations.numpy()) == STEPS
    for slot in t_opt.slot_names:
        k_slot = getattr(k_opt, KERAS_SLOTS[name][slot])
        assert len(k_slot) == len(shapes)
        k64_slot = [v.numpy() for v in getattr(k64_opt, KERAS_SLOTS[name][slot])] if k64_opt else [None] * len(shapes)
        slot_scale = result_scale([r for r in k64_slot if r is not None])
        for j, kv in enumerate(k_slot):
            checks.append(("slots", compare(f"slot {slot} of variable {j}", t_opt.slot(j, slot), kv.numpy(), dtype,
                                            ref64=k64_slot[j], scale=slot_scale)))

    assert_checks([c for _, c in checks], f"{name}({kw}) {dtype} floatx={fx} lr_mode={common['lr_mode']}")
    worst: dict[str, float] = {}
    for kind, c in checks:
        worst[kind] = max(worst.get(kind, 0.0), c.max_rel)
    return worst


@given(
    options=st.fixed_dictionaries({"momentum": st.one_of(st.just(0.0), unit(0.05, 0.99)), "nesterov": st.booleans()}),
    common=common_st,
)
def test_sgd_parity(options, common):
    run_parity("SGD", options, common)


@given(
    options=st.fixed_dictionaries(
        {
            "rho": unit(0.5, 0.99),
            "momentum": st.one_of(st.just(0.0), unit(0.05, 0.99)),
            "epsilon": st.sampled_from([1e-7, 1e-4, 0.3]),
            "centered": st.booleans(),
        }
    ),
    common=common_st,
)
def test_rmsprop_parity(options, common):
    run_parity("RMSprop", options, common)


adam_options = {
    "beta_1": unit(0.5, 0.99),
    "beta_2": unit(0.8, 0.9999),
    "epsilon": st.sampled_from([1e-7, 1e-4, 0.3]),
    "amsgrad": st.booleans(),
}


@given(options=st.fixed_dictionaries(adam_options), common=common_st)
def test_adam_parity(options, common):
    run_parity("Adam", options, common)


@given(options=st.fixed_dictionaries({**adam_options, "weight_decay": unit(1e-3, 0.3)}), common=common_st)
def test_adamw_parity(options, common):
    run_parity("AdamW", options, common)


@given(
    options=st.fixed_dictionaries(
        {"initial_accumulator_value": unit(0.0, 1.0), "epsilon": st.sampled_from([1e-7, 1e-4, 0.3])}
    ),
    common=common_st,
)
def test_adagrad_parity(options, common):
    run_parity("Adagrad", options, common)
