"""Every option value a parity property claims is drawn by the ``ci`` profile (what ``make test`` runs).

``python -m parity.options`` records what each ``@given`` case of parity/cases draws under ``ci`` (12
derandomized examples plus its explicit ``@example``s) without running the bodies, and lists the claimed
values no example reached (:mod:`parity.options`). It runs in a subprocess, so the cases are imported under
the ``ci`` profile whatever profile this run uses. ``--verify`` also runs one property for real and checks
that its draws are exactly the recorded ones (the recorder keeps hypothesis's derandomized seed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import coverage, options, recorder

ROOT = coverage.tests_dir().parent.parent

# claims the issue named, which must stay declared (a deleted @covers would silently drop them)
REQUIRED_CLAIMS = {
    "test_dense_parity.py::test_dense_parity": {"activation": 16},
    "test_dense_parity.py::test_activation_layer_parity": {"activation": 16},
    "test_recurrent_parity.py::test_rnn_parity": {"kind_dtype": 8, "kind_path": 9, "zero_output_for_mask": 2},
    "test_recurrent_parity.py::test_stateful_parity": {"masked": 2, "bidirectional": 2, "kind_wrapped": 8},
    "test_pooling_parity.py::test_pooling1d_parity": {"tied_max_window": 2, "kernels": 2},
    "test_conv_parity.py::test_conv1d_parity": {"padding_dilated": 6, "data_format": 2, "kernels": 2},
    "test_loss_parity.py::test_loss_reduction_matches_keras": {"reduction": 3},
}


@pytest.fixture(scope="module")
def ci_report():
    env = {**os.environ, "HYPOTHESIS_PROFILE": "ci"}
    env.pop(recorder.CLI_ENV, None)
    out = subprocess.run([sys.executable, "-m", "parity.options", "--profile", "ci", "--json",
                          "--verify", "test_core_parity.py::test_reshape_parity"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    start = out.stdout.find("{")
    assert start >= 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout[start:])


def test_ci_draws_every_claimed_option(ci_report):
    tests = ci_report["tests"]
    assert len(tests) >= 25, f"found only {len(tests)} @given parity cases"
    errors = {t: info["error"] for t, info in tests.items() if "error" in info}
    assert not errors, errors
    missing = {t: info["missing"] for t, info in tests.items() if info["missing"]}
    assert not missing, ("claimed option values the ci profile never draws (add an @example, see "
                         f"parity.options.examples): {missing}")


def test_the_issue_claims_are_declared(ci_report):
    for test_id, wanted in REQUIRED_CLAIMS.items():
        claims = ci_report["tests"][test_id]["claims"]
        for name, n_values in wanted.items():
            assert claims.get(name) == n_values, f"{test_id}: claim {name!r} has {claims.get(name)} values"


def test_recorded_draws_are_the_real_runs_draws(ci_report):
    verify = ci_report["verify"]
    assert verify["examples"] >= 12 and verify["same_draws"], verify


# ------------------------------------------------------------------------------------------- the mechanism
def _toy(*extra_decorators):
    """A small property (3 examples) claiming 8 kinds, range ends, None, a fixed_dictionaries field, a pair."""

    def body(kind, flag, size, seed, stride, opts):
        pass

    for deco in extra_decorators:
        body = deco(body)
    test = given(kind=st.sampled_from(list("abcdefgh")), flag=st.booleans(), size=st.integers(1, 50),
                 seed=st.integers(0, 99), stride=st.one_of(st.none(), st.integers(2, 3)),
                 opts=st.fixed_dictionaries({"mode": st.sampled_from("xy")}))(body)
    test = settings(max_examples=3, derandomize=True, database=None)(test)
    pairs = [(k, f) for k in "ab" for f in (False, True)]
    return options.covers(pair=(lambda kw: (kw["kind"], kw["flag"]), pairs))(test)


def test_claims_come_from_strategies_and_covers():
    values = {name: values for name, (_, values) in options.claims(_toy()).items()}
    assert values["kind"] == list("abcdefgh") and values["flag"] == [False, True]
    assert values["size"] == [1, 50] and "seed" not in values  # range ends; a seed is not an option
    assert values["stride"] == [None, 2, 3] and values["opts.mode"] == ["x", "y"]
    assert len(values["pair"]) == 4


def test_three_draws_miss_claimed_values_and_explicit_examples_fill_them():
    toy = _toy()
    draws = options.drawn(toy)
    assert len(draws) == 3
    assert "kind" in options.missing(toy, draws)  # 3 examples cannot reach 8 kinds

    every_kind = options.examples(
        dict(seed=1, opts={"mode": "y"}),
        *[dict(kind=k, flag=bool(i % 2), size=1 + 49 * (i % 2), stride=[None, 2, 3][i % 3],
               opts={"mode": "xy"[i % 2]}) for i, k in enumerate("abcdefgh")],
        dict(kind="a", flag=True, size=5, stride=None), dict(kind="b", flag=False, size=5, stride=None))
    covered = _toy(every_kind)
    draws = options.drawn(covered)
    assert len(draws) == 3 + 10
    assert options.missing(covered, draws) == {}


def test_a_parametrized_property_is_recorded_per_parameter_set():
    """Each parameter set is run with its parameters passed through (a @covers function can read them), and
    a property drawing inside its body (st.data()) is recorded from a real run of it."""
    import pytest as _pytest

    ran = []

    @_pytest.mark.parametrize("mode", ["a", "b"])
    @_pytest.mark.parametrize("n, m", [(1, 2), _pytest.param(3, 4, id="three")])
    @options.covers(mode_flag=(lambda kw: (kw["mode"], kw["flag"]), [(x, f) for x in "ab" for f in (False, True)]))
    @settings(max_examples=6, derandomize=True, database=None)
    @given(flag=st.booleans(), data=st.data())
    def prop(mode, n, m, flag, data):
        ran.append((mode, n, m, data.draw(st.integers(0, 3))))

    sets = options.parametrizations(prop)
    assert sorted(map(sorted, (s.items() for s in sets))) == sorted(
        map(sorted, ({"mode": x, "n": n, "m": m}.items() for x in "ab" for n, m in ((1, 2), (3, 4)))))
    assert options.draws_in_body(prop) and options.runnable(prop)
    for params in sets:
        draws = options.drawn(prop, params=params)
        assert draws and all(d["mode"] == params["mode"] and d["n"] == params["n"] for d in draws)
        assert set(options.claims(prop, params)) >= {"mode", "n", "m", "flag", "mode_flag"}
        absent = options.missing(prop, draws, params)
        assert set(absent) <= {"mode_flag"}  # one mode per parameter set: the pairs of the other mode are absent
        assert len(absent.get("mode_flag", [])) == 2
    assert ran and {r[0] for r in ran} == {"a", "b"}  # the bodies ran (they draw from st.data())
    assert options.param_id({"mode": "a", "n": 1}) == "[mode=a, n=1]" and options.param_id({}) == ""
