"""tinynn.optimizers on its own: lookup, arguments, clipping, state, schedules, input checks.

Step-exactness against Keras is in tests/parity/test_optimizer_parity.py; here the update rules are checked
against hand-written NumPy formulas only where a property (not a Keras number) is the point.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinynn import config as tn_config
from tinynn import optimizers
from tinynn.optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

ALL = [SGD, RMSprop, Adam, AdamW, Adagrad]
# constructor options that give every optimizer all of its slots
FULL_OPTIONS = {
    SGD: dict(momentum=0.9, nesterov=True),
    RMSprop: dict(momentum=0.5, centered=True),
    Adam: dict(amsgrad=True),
    AdamW: dict(amsgrad=True),
    Adagrad: {},
}


def problem(seed: int = 0, dtype: str = "float32", steps: int = 6):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), ()]
    variables = [np.asarray(rng.normal(size=s), dtype=dtype) for s in shapes]
    grads = [[np.asarray(rng.normal(size=s), dtype=dtype) for s in shapes] for _ in range(steps)]
    return variables, grads


# ---------------------------------------------------------------------- lookup and serialization
@pytest.mark.parametrize(
    "name, cls, lr",
    [("sgd", SGD, 0.01), ("RMSprop", RMSprop, 0.001), ("ADAM", Adam, 0.001), ("adamw", AdamW, 0.001),
     ("Adagrad", Adagrad, 0.001)],
)
def test_get_by_name_gives_defaults(name, cls, lr):
    opt = optimizers.get(name)
    assert type(opt) is cls
    assert opt.learning_rate == pytest.approx(lr, rel=1e-7)


def test_get_passes_instances_and_none_through():
    opt = Adam()
    assert optimizers.get(opt) is opt
    assert optimizers.get(None) is None


def test_get_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"Unknown optimizer: 'nadamx'.*'adagrad'.*'adam'.*'adamw'.*'rmsprop'.*'sgd'"):
        optimizers.get("nadamx")
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier"):
        optimizers.get(3)


@pytest.mark.parametrize("cls", ALL)
def test_serialize_round_trip_is_json_and_equal(cls):
    opt = cls(learning_rate=0.25, clipnorm=1.5, **FULL_OPTIONS[cls])
    data = json.loads(json.dumps(optimizers.serialize(opt)))
    assert data["class_name"] == cls.__name__
    clone = optimizers.get(data)
    assert type(clone) is cls
    assert clone.get_config() == opt.get_config()
    clone2 = cls.from_config(opt.get_config())
    assert clone2.get_config() == opt.get_config()


def test_get_config_keys_match_keras_layout():
    cfg = RMSprop(learning_rate=0.5, momentum=0.25, name="r").get_config()
    assert list(cfg) == [
        "name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema",
        "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps",
        "rho", "momentum", "epsilon", "centered",
    ]
    assert cfg["name"] == "r" and cfg["momentum"] == 0.25 and cfg["learning_rate"] == 0.5


def test_default_names_are_unique_snake_case():
    a, b = AdamW(), AdamW()
    assert a.name.startswith("adam_w") and b.name.startswith("adam_w") and a.name != b.name


# ---------------------------------------------------------------------- constructor arguments
def test_lr_alias_warns_and_sets_learning_rate():
    with pytest.warns(DeprecationWarning, match="`lr` is deprecated"):
        opt = RMSprop(lr=1e-4)
    assert opt.learning_rate == pytest.approx(1e-4, rel=1e-7)
    assert opt.get_config()["learning_rate"] == pytest.approx(1e-4, rel=1e-7)
    variables, grads = problem()
    with pytest.warns(DeprecationWarning):
        twin = RMSprop(lr=1e-4)
    ref = RMSprop(learning_rate=1e-4)
    a, b = [v.copy() for v in variables], [v.copy() for v in variables]
    twin.apply(grads[0], a)
    ref.apply(grads[0], b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_lr_and_learning_rate_together_raise():
    with pytest.raises(ValueError, match="both `lr` and `learning_rate`"):
        Adam(learning_rate=0.1, lr=0.2)


def test_decay_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="`decay` is no longer supported"):
        opt = SGD(decay=0.1)
    assert opt.learning_rate == pytest.approx(0.01, rel=1e-7)


def test_unknown_arguments_raise():
    with pytest.raises(ValueError, match=r"Argument\(s\) not recognized: \{'betas': 0.5\}"):
        Adam(betas=0.5)


@pytest.mark.parametrize(
    "kwargs",
    [dict(clipnorm=1.0, clipvalue=1.0), dict(clipnorm=1.0, global_clipnorm=1.0),
     dict(clipvalue=1.0, global_clipnorm=1.0), dict(clipnorm=1.0, clipvalue=1.0, global_clipnorm=1.0)],
)
def test_more_than_one_clipping_option_raises(kwargs):
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        SGD(**kwargs)


@pytest.mark.parametrize("bad", [1, "0.1", None, [0.1]])
def test_learning_rate_must_be_float_or_callable(bad):
    with pytest.raises(ValueError, match="Argument `learning_rate` should be float"):
        Adam(learning_rate=bad)


@pytest.mark.parametrize("bad", [1.5, -0.1, 1])
def test_sgd_momentum_must_be_float_in_unit_interval(bad):
    with pytest.raises(ValueError, match=r"`momentum` must be a float between \[0, 1\]"):
        SGD(momentum=bad)


def test_adamw_needs_weight_decay():
    with pytest.raises(ValueError, match="weight_decay=None"):
        AdamW(weight_decay=None)
    assert AdamW().weight_decay == 0.004


@pytest.mark.parametrize("kwargs", [dict(use_ema=True), dict(gradient_accumulation_steps=4)])
def test_unsupported_keras_features_say_so(kwargs):
    with pytest.raises(NotImplementedError, match="not supported by tinynn"):
        Adam(**kwargs)


# ---------------------------------------------------------------------- apply
@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_apply_updates_in_place_and_never_mutates_grads(cls, dtype):
    variables, grads = problem(dtype=dtype)
    ids = [id(v) for v in variables]
    before = [v.copy() for v in variables]
    opt = cls(learning_rate=0.1, clipnorm=0.5, **FULL_OPTIONS[cls])
    for gs in grads:
        copies = [g.copy() for g in gs]
        opt.apply(gs, variables)
        assert all(np.array_equal(g, c) for g, c in zip(gs, copies))
    assert [id(v) for v in variables] == ids
    assert all(v.dtype == np.dtype(dtype) for v in variables)
    assert all(not np.array_equal(v, b) for v, b in zip(variables, before))
    assert opt.iterations == len(grads)


@pytest.mark.parametrize("cls", ALL)
def test_slots_are_created_lazily_with_the_variables_dtype(cls):
    opt = cls(**FULL_OPTIONS[cls])
    assert not opt.built
    assert set(opt.get_state()) <= {"iterations", "learning_rate"}
    variables, grads = problem(dtype="float64")
    variables[1] = variables[1].astype(np.float32)
    grads[0][1] = grads[0][1].astype(np.float32)
    opt.apply(grads[0], variables)
    assert opt.built
    for i, v in enumerate(variables):
        for slot in opt.slot_names:
            assert opt.slot(i, slot).shape == v.shape and opt.slot(i, slot).dtype == v.dtype
    assert opt.slot_names  # FULL_OPTIONS gives every optimizer at least one slot
    with pytest.raises(ValueError, match="read-only"):
        opt.slot(0, opt.slot_names[0])[...] = 0


def test_slot_names_follow_options():
    assert SGD().slot_names == ()
    assert SGD(momentum=0.5).slot_names == ("momentum",)
    assert RMSprop().slot_names == ("velocity",)
    assert RMSprop(momentum=0.1, centered=True).slot_names == ("velocity", "momentum", "average_gradient")
    assert Adam().slot_names == ("momentum", "velocity")
    assert Adam(amsgrad=True).slot_names == ("momentum", "velocity", "velocity_hat")


def test_adagrad_accumulator_starts_at_initial_value():
    opt = Adagrad(initial_accumulator_value=0.5)
    w = np.zeros(3)
    opt.apply([np.zeros(3)], [w])
    assert np.all(opt.slot(0, "accumulator") == np.float64(np.float32(0.5)))
    assert np.all(w == 0)


def test_apply_to_other_variables_after_build_raises():
    opt = Adam()
    variables, grads = problem()
    opt.apply(grads[0], variables)
    with pytest.raises(ValueError, match=r"was built for variables .*\(3, 4\) float32.*but got"):
        opt.apply(grads[0][:2], variables[:2])
    with pytest.raises(ValueError, match="was built for variables"):
        opt.apply([g.astype(np.float64) for g in grads[0]], [v.astype(np.float64) for v in variables])


def test_apply_input_errors():
    opt = SGD(name="s")
    w = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"Optimizer 's' \(SGD\): got 1 gradients for 2 variables"):
        opt.apply([np.zeros((2, 3))], [w, w])
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(3, 2\), expected \(2, 3\)"):
        opt.apply([np.zeros((3, 2))], [w])
    with pytest.raises(ValueError, match="variable 0 must be a float32/float64 NumPy array, got list"):
        opt.apply([np.zeros(2)], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="variable 0 must be a float32/float64 NumPy array, got dtype int64"):
        opt.apply([np.zeros(2)], [np.zeros(2, dtype=np.int64)])
    ro = np.zeros(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        opt.apply([np.zeros(2)], [ro])
    with pytest.raises(ValueError, match="no gradients provided for any variable"):
        opt.apply([None], [w])
    assert opt.iterations == 0 and np.all(w == 0)


def test_none_gradient_skips_its_variable_with_a_warning():
    opt = Adam(learning_rate=0.1)
    a, b = np.ones(2), np.ones(3)
    with pytest.warns(UserWarning, match=r"positions \[1\]"):
        opt.apply([np.ones(2), None], [a, b])
    assert np.all(a != 1) and np.all(b == 1)
    assert np.all(opt.slot(1, "momentum") == 0)


def test_sgd_plain_and_momentum_rules():
    w = np.array([1.0, -2.0])
    g = np.array([0.5, 0.25])
    SGD(learning_rate=0.5).apply([g], [w])
    np.testing.assert_array_equal(w, [1.0 - 0.25, -2.0 - 0.125])
    opt = SGD(learning_rate=0.5, momentum=0.5)
    w = np.zeros(1)
    opt.apply([np.ones(1)], [w])  # m = -0.5, w = -0.5
    opt.apply([np.ones(1)], [w])  # m = -0.25 - 0.5 = -0.75, w = -1.25
    np.testing.assert_array_equal(w, [-1.25])
    np.testing.assert_array_equal(opt.slot(0, "momentum"), [-0.75])


def test_clipping_rules_float64():
    g = [np.array([3.0, 4.0]), np.array([0.0, 12.0])]  # norms 5 and 12, global norm 13
    c = SGD()._clip_gradients  # no clipping configured: identity
    assert c(g) is g
    by_norm = SGD(clipnorm=6.0)._clip_gradients(g)
    np.testing.assert_allclose(by_norm[0], g[0], rtol=1e-15)
    np.testing.assert_allclose(by_norm[1], [0.0, 6.0], rtol=1e-15)
    glob = SGD(global_clipnorm=6.5)._clip_gradients(g)
    np.testing.assert_allclose(glob[0], np.array([3.0, 4.0]) / 2, rtol=1e-15)
    np.testing.assert_allclose(glob[1], [0.0, 6.0], rtol=1e-15)
    val = SGD(clipvalue=3.5)._clip_gradients(g)
    np.testing.assert_array_equal(val[0], [3.0, 3.5])
    zero = SGD(clipnorm=1.0)._clip_gradients([np.zeros(3)])
    np.testing.assert_array_equal(zero[0], np.zeros(3))


def test_weight_decay_is_applied_before_the_step_with_the_pre_step_weights():
    w = np.array([2.0])
    SGD(learning_rate=0.5, weight_decay=0.25).apply([np.array([1.0])], [w])
    wd = np.float64(np.float32(0.25))  # Keras casts the weight decay through float32
    np.testing.assert_array_equal(w, [(2.0 - 2.0 * wd * 0.5) - 1.0 * 0.5])


# ---------------------------------------------------------------------- learning rate
def test_learning_rate_follows_floatx_at_construction():
    old = tn_config.floatx()
    try:
        tn_config.set_floatx("float64")
        opt64 = Adam(learning_rate=0.1)
    finally:
        tn_config.set_floatx(old)
    opt32 = Adam(learning_rate=0.1)
    assert opt64.learning_rate == 0.1
    assert opt32.learning_rate == float(np.float32(0.1))
    assert opt64.get_state()["learning_rate"].dtype == np.float64
    opt64.learning_rate = 0.3  # setting keeps the dtype
    assert opt64.learning_rate == 0.3


def test_setting_learning_rate_changes_the_next_step():
    w = np.zeros(1)
    opt = SGD(learning_rate=0.5)
    opt.learning_rate = 0.25
    opt.apply([np.ones(1)], [w])
    np.testing.assert_array_equal(w, [-0.25])
    with pytest.raises(ValueError, match="learning_rate must be a float or a callable"):
        opt.learning_rate = "fast"


def test_learning_rate_schedule_callable_gets_iterations():
    seen = []

    def schedule(iterations: int) -> float:
        seen.append(iterations)
        return 0.5 / (1 + iterations)

    opt = SGD(learning_rate=schedule)
    assert opt.learning_rate_schedule is schedule
    w = np.zeros(1)
    for _ in range(3):
        opt.apply([np.ones(1)], [w])
    assert seen and set(seen) == {0, 1, 2}
    # A Python float from a schedule is float32-rounded, as tf.cast does in Keras.
    expected = -sum(float(np.float32(0.5 / (1 + k))) for k in range(3))
    np.testing.assert_allclose(w, [expected], rtol=1e-15)
    assert opt.learning_rate == 0.5 / 4
    assert "learning_rate" not in opt.get_state()


def test_zero_argument_callable_is_called_without_arguments():
    opt = SGD(learning_rate=lambda: 0.125)
    w = np.zeros(1)
    opt.apply([np.ones(1)], [w])
    np.testing.assert_array_equal(w, [-0.125])


# ---------------------------------------------------------------------- state
@given(
    cls=st.sampled_from(ALL),
    dtype=st.sampled_from(["float32", "float64"]),
    split=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_state_round_trip_continues_bit_identically(cls, dtype, split, seed):
    variables, grads = problem(seed, dtype, steps=6)
    options = dict(learning_rate=0.05, clipnorm=1.0, weight_decay=0.01, **FULL_OPTIONS[cls])
    if cls is AdamW:
        options.pop("weight_decay")
    ref_vars = [v.copy() for v in variables]
    ref = cls(**options)
    for gs in grads:
        ref.apply(gs, ref_vars)

    first = cls(**options)
    vs = [v.copy() for v in variables]
    for gs in grads[:split]:
        first.apply(gs, vs)
    state = first.get_state()
    for arr in state.values():  # get_state returns copies
        arr[...] = 7
    state = first.get_state()
    state = {k: np.array(v) for k, v in json.loads(json.dumps({k: v.tolist() for k, v in state.items()})).items()}
    state = {k: v.astype(first.get_state()[k].dtype) for k, v in state.items()}  # as a file would keep them

    second = cls(**options)
    second.set_state(state)
    assert second.iterations == split
    for gs in grads[split:]:
        second.apply(gs, vs)
    for a, b in zip(vs, ref_vars):
        assert np.array_equal(a, b)
    for k, v in ref.get_state().items():
        assert np.array_equal(second.get_state()[k], v), k


def test_get_state_layout():
    opt = Adam(amsgrad=True)
    variables, grads = problem()
    opt.apply(grads[0], variables)
    state = opt.get_state()
    assert list(state) == [
        "iterations", "learning_rate",
        "momentum_0", "velocity_0", "velocity_hat_0",
        "momentum_1", "velocity_1", "velocity_hat_1",
        "momentum_2", "velocity_2", "velocity_hat_2",
    ]
    assert state["iterations"] == 1 and state["iterations"].dtype == np.int64


def test_set_state_rejects_mismatches():
    opt = Adam()
    variables, grads = problem()
    opt.apply(grads[0], variables)
    state = opt.get_state()
    with pytest.raises(ValueError, match="no 'iterations' entry"):
        Adam().set_state({k: v for k, v in state.items() if k != "iterations"})
    with pytest.raises(ValueError, match="do not match this optimizer's slots"):
        RMSprop().set_state(state)
    with pytest.raises(ValueError, match="do not match this optimizer's slots"):
        Adam().set_state({k: v for k, v in state.items() if k != "velocity_2"})
    with pytest.raises(ValueError, match="uses a schedule"):
        Adam(learning_rate=lambda: 0.1).set_state(state)
    other = Adam()
    other.set_state(state)
    with pytest.raises(ValueError, match="was built for variables"):
        other.apply(grads[0][:2], variables[:2])


def test_set_state_on_fresh_optimizer_without_slots_stays_unbuilt():
    opt = SGD(momentum=0.5)
    opt.set_state({"iterations": np.array(3), "learning_rate": np.array(0.5, dtype=np.float32)})
    assert not opt.built and opt.iterations == 3 and opt.learning_rate == 0.5
    assert isinstance(opt, Optimizer)


def test_no_warnings_in_normal_use():
    variables, grads = problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = optimizers.get("rmsprop")
        for gs in grads:
            opt.apply(gs, variables)
