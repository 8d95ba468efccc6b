"""Every layer of ``tinynn.layers.registry()``, given wrong shapes, dtypes, masks and upstream gradients, raises a
ValueError naming the layer and what it got, or computes the right answer; it never crashes or answers silently.

The cases (``layer_cases.py``) run in a worker subprocess, so a segfault in a numba kernel is a failed test. Every
setup runs every input class in every example; hypothesis draws the batch size, the number of steps, which axis
to break and by how much, and the data. ``ROBUSTNESS_TABLE=1 pytest tests/robustness`` prints the outcome table.
"""

from __future__ import annotations

import pytest
from conftest import OUTCOMES
from hypothesis import given
from hypothesis import strategies as st
from layer_cases import KINDS, SETUPS

from tinynn import layers

CASES = [(cls, k) for cls in sorted(SETUPS) for k in range(len(SETUPS[cls]))]

plans = st.fixed_dictionaries({
    "B": st.integers(1, 4),
    "T": st.integers(4, 7),
    "seed": st.integers(0, 2**16),
    "pick": st.integers(0, 5),  # which axis / axis pair / broadcast form to break
    "delta": st.sampled_from([-2, -1, 1, 2]),  # how much a size changes
    "rows": st.integers(1, 3),  # rows dropped from / added to dy
})


def test_every_registry_layer_has_a_setup():
    """A layer class added to the registry must bring its setups here (so it gets every case below)."""
    registry = set(layers.registry())
    assert registry - set(SETUPS) == set(), f"no robustness setup for {sorted(registry - set(SETUPS))}"
    assert set(SETUPS) - registry == set(), f"setups for classes not in the registry: {sorted(set(SETUPS) - registry)}"
    for cls, setups in SETUPS.items():
        assert all(type(s.make()).__name__ == cls for s in setups), cls


@pytest.mark.parametrize("cls, variant", CASES, ids=[f"{c}-{k}" for c, k in CASES])
@given(plan=plans)
def test_bad_input_gives_a_clear_error_or_the_right_answer(isolated, cls, variant, plan):
    status, results = isolated.call("layer_cases", "run_cases", cls, variant, plan)
    if status == "crash":  # find the case that killed the worker: each kind alone
        results = []
        for kind in KINDS:
            status, one = isolated.call("layer_cases", "run_kind", cls, variant, plan, kind)
            results += [(kind, "crash", one)] if status == "crash" else one
    assert status != "raised", results
    for kind, outcome, _ in results:
        OUTCOMES[(kind, outcome)] += 1
    bad = [r for r in results if r[1] not in ("clear error", "correct")]
    assert not bad, "\n".join(f"{cls}[{variant}] {kind}: {outcome}: {detail}" for kind, outcome, detail in bad)
    assert {kind for kind, _, _ in results} >= {"backward_before_forward", "dy_dtype", "unbuilt_forward"}


def test_the_worker_turns_a_crash_into_an_outcome(isolated):
    status, detail = isolated.call("layer_cases", "segfault")
    assert status == "crash" and "exit code" in detail
    status, results = isolated.call("layer_cases", "run_cases", "Dense", 0, {"B": 2, "T": 4, "seed": 0, "pick": 0,
                                                                             "delta": 1, "rows": 1})
    assert status == "ok" and results  # the worker was restarted
