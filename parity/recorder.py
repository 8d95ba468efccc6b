"""Record every parity comparison made while the suite runs, and aggregate them into the table of ``python -m parity``.

The harness reports to this module: ``layer_parity`` and ``training_parity`` hand over their
:class:`~parity.harness.LayerReport`, and every bare :func:`~parity.harness.compare` (losses, optimizers)
its :class:`~parity.harness.Check`. Nothing is kept unless a :class:`Recorder` is active (``python -m
parity`` activates one), so plain ``pytest`` runs are unaffected.

This module is also a pytest plugin (``-p parity.recorder``): it registers the hypothesis profiles of the
parity CLI (``parity-quick``, ``parity-seeded``) so that a reproduction command printed by the CLI works in
a plain pytest run, and it tags each record with the pytest node id of the test that made it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

#: examples per property of ``python -m parity --quick``
QUICK_EXAMPLES = 5


def register_profiles() -> None:
    """Every hypothesis profile of the project, in one place (tests/conftest.py and parity/cases/conftest.py
    load them): ``ci`` (what ``make test`` runs: 12 derandomized examples per property), ``thorough`` (250
    random examples), ``dev`` (4); and those of the parity CLI: ``parity-quick``, few derandomized examples
    per property (every test, layer and check still runs), no shrinking; ``parity-seeded``: the same, random
    under ``--hypothesis-seed``; ``parity-ci-seeded`` and ``parity-thorough-seeded``: 12 and 250 random
    examples under ``--hypothesis-seed``. Seeded profiles use no example database (a seed alone reproduces
    the run). Every profile that shrinks also has a ``NAME-noshrink`` twin (what ``--backend all`` runs, so
    that a failing example stays the one every backend ran)."""
    try:
        from hypothesis import HealthCheck, Phase, settings
    except ImportError:  # the harness works without hypothesis; only the CLI and the tests need it
        return
    common = dict(deadline=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    # quick runs stop at the first failing example instead of shrinking it (which can take minutes); the
    # falsifying example and its @reproduce_failure line are printed all the same
    no_shrink = dict(phases=[Phase.explicit, Phase.reuse, Phase.generate])
    quick = dict(max_examples=QUICK_EXAMPLES, **no_shrink, **common)
    profiles = {
        "ci": dict(max_examples=12, derandomize=True, **common),
        "thorough": dict(max_examples=250, **common),
        "dev": dict(max_examples=4, derandomize=True, **common),
        "parity-ci-seeded": dict(max_examples=12, derandomize=False, database=None, **common),
        "parity-thorough-seeded": dict(max_examples=250, derandomize=False, database=None, **common),
    }
    for name, kwargs in profiles.items():
        settings.register_profile(name, **kwargs)
        settings.register_profile(f"{name}-noshrink", **kwargs, **no_shrink)
    settings.register_profile("parity-quick", derandomize=True, **quick)
    settings.register_profile("parity-seeded", derandomize=False, database=None, **quick)


def no_shrink_profile(name: str) -> str:
    """The profile that draws what ``name`` draws but does not shrink a failing example."""
    return name if name in ("parity-quick", "parity-seeded") or name.endswith("-noshrink") else f"{name}-noshrink"


register_profiles()


# ---------------------------------------------------------------------------------------------- recording
@dataclass
class Record:
    """One report (``kind`` 'layer' or 'training') or one bare comparison (``kind`` 'compare').

    ``example`` describes the hypothesis example that made it ('' outside hypothesis), ``example_id`` is a
    digest of its drawn values, ``seq`` counts the records of the same test and example: (nodeid,
    example_id, seq, check name) names the same comparison in runs on different Keras backends."""

    nodeid: str
    kind: str
    layer: str
    config: dict
    dtype: str
    checks: list
    example: str = ""
    example_id: str = ""
    seq: int = 0


@dataclass
class TestOutcome:
    nodeid: str
    outcome: str = "passed"  # passed / failed / skipped
    duration: float = 0.0
    longrepr: str = ""
    skip_reason: str = ""


class Recorder:
    def __init__(self, quick_subset: bool = False) -> None:
        self.records: list[Record] = []
        self.current: str = "<outside a test>"
        self.outcomes: dict[str, TestOutcome] = {}
        self.collected: list[Any] = []  # pytest items, before any deselection
        self.quick_subset = quick_subset  # run only a covering subset of parametrized variants

        self._loose: list[Record] = []  # bare comparisons not (yet) claimed by a report
        self.example, self.example_id = "", ""
        self._seq: dict[tuple, int] = defaultdict(int)

    def start_example(self, kwargs: dict) -> None:
        """Called with the drawn arguments before each hypothesis example runs."""
        self.flush()
        self.example, self.example_id = describe_example(kwargs)

    def _record(self, kind, layer, config, dtype, checks) -> Record:
        key = (self.current, self.example_id)
        seq = self._seq[key]
        self._seq[key] += 1
        return Record(self.current, kind, layer, config, dtype, checks, self.example, self.example_id, seq)

    def note_report(self, report, kind: str) -> None:
        # the report's checks were seen one by one by note_check before: they belong to the report now
        claimed = {id(c) for c in report.checks}
        self._loose = [r for r in self._loose if id(r.checks[0]) not in claimed]
        self.flush()
        self.records.append(self._record(kind, report.layer, dict(report.config), report.dtype,
                                         list(report.checks)))

    def note_check(self, check, dtype: str) -> None:
        self._loose.append(Record(self.current, "compare", "", {}, dtype, [check], self.example, self.example_id))

    def flush(self) -> None:
        for record in self._loose:
            key = (record.nodeid, record.example_id)
            record.seq = self._seq[key]
            self._seq[key] += 1
        self.records.extend(self._loose)
        self._loose = []


def _stable(value) -> str:
    """A text that is the same in every process for equal drawn values (arrays by content)."""
    import hashlib

    import numpy as np

    if isinstance(value, np.ndarray):
        return f"array{value.shape}{value.dtype}:{hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]}"
    if isinstance(value, (list, tuple)):
        inner = ",".join(_stable(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_stable(v)}" for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))) + "}"
    if isinstance(value, float):
        return repr(float(value))
    return repr(value)


def describe_example(kwargs: dict) -> tuple[str, str]:
    """(a readable one-line description, a digest) of a hypothesis example's drawn arguments."""
    import hashlib

    import numpy as np

    def short(value) -> str:
        if isinstance(value, np.ndarray):
            return f"array{value.shape}"
        if isinstance(value, (list, tuple)):
            inner = ", ".join(short(v) for v in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner})"
        if isinstance(value, float):
            return f"{value:.6g}"
        return repr(value)

    text = ", ".join(f"{k}={short(v)}" for k, v in sorted(kwargs.items()))
    digest = hashlib.sha1(_stable(kwargs).encode()).hexdigest()[:16]
    return text, digest


def track_examples(test_function) -> None:
    """Make a ``@given`` test tell the active recorder which example it is running.

    The wrapper replaces ``test_function.hypothesis.inner_test`` with ``functools.wraps``: hypothesis derives a
    derandomized run's seed from the inner test's source and signature, which the wrapper passes through
    (``__wrapped__``), so the examples drawn are exactly those of an untracked run."""
    import functools

    handle = getattr(test_function, "hypothesis", None)
    if handle is None or getattr(handle.inner_test, "_parity_tracked", False):
        return
    inner = handle.inner_test

    @functools.wraps(inner)
    def tracked(*args, **kwargs):
        if _ACTIVE is not None:
            _ACTIVE.start_example(kwargs)
        return inner(*args, **kwargs)

    tracked._parity_tracked = True
    handle.inner_test = tracked


_ACTIVE: Recorder | None = None


def activate(recorder: Recorder | None) -> None:
    global _ACTIVE
    _ACTIVE = recorder


def active() -> Recorder | None:
    return _ACTIVE


def note_report(report, kind: str) -> None:
    """Called by the harness for every finished report (kept in full only while a Recorder is active; the
    layers each test compared are always noted for the run-time coverage guard, :mod:`parity.guard`)."""
    if kind == "layer":
        from . import guard

        guard.note_layer_report(report)
    if _ACTIVE is not None:
        _ACTIVE.note_report(report, kind)


def note_check(check, dtype: str) -> None:
    if _ACTIVE is not None:
        _ACTIVE.note_check(check, dtype)


# ---------------------------------------------------------------------------------------------- pytest hooks
#: set by ``python -m parity`` in its own process, so that tests about the CLI itself can skip under it
CLI_ENV = "TINYNN_PARITY_CLI"


def pytest_configure(config) -> None:
    """Load a parity profile named by HYPOTHESIS_PROFILE (also where no conftest does, e.g. --tests DIR)."""
    import os

    name = os.environ.get("HYPOTHESIS_PROFILE", "")
    if name.startswith("parity-"):
        from hypothesis import settings

        settings.load_profile(name)


def pytest_collection_modifyitems(session, config, items) -> None:
    rec = _ACTIVE
    if rec is None:
        return
    rec.collected = list(items)
    for item in items:
        track_examples(getattr(item, "obj", None))
    if rec.quick_subset:
        keep = covering_subset(items)
        dropped = [item for item in items if item not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item in keep]


pytest_collection_modifyitems.tryfirst = True  # see every collected item, before -k/-m deselect any


def covering_subset(items: list) -> set:
    """Of each parametrized test, the fewest variants such that every parameter value runs at least once
    (greedy set cover; ties go to the variant whose values ran least, so e.g. dtypes alternate).
    Tests without parameters are all kept."""
    groups: dict[str, list] = defaultdict(list)
    keep = set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or not callspec.params:
            keep.add(item)
        else:
            groups[item.nodeid.split("[", 1)[0]].append(item)
    for variants in groups.values():
        values = {id(item): {(k, repr(v)) for k, v in item.callspec.params.items()} for item in variants}
        uncovered = set().union(*values.values())
        used: dict = defaultdict(int)
        while uncovered:
            best = max(variants, key=lambda it: (len(values[id(it)] & uncovered),
                                                 -sum(used[v] for v in values[id(it)])))
            keep.add(best)
            uncovered -= values[id(best)]
            for v in values[id(best)]:
                used[v] += 1
    return keep


def pytest_runtest_setup(item) -> None:
    if _ACTIVE is not None:
        _ACTIVE.flush()
        _ACTIVE.current = item.nodeid
        _ACTIVE.example, _ACTIVE.example_id = "", ""


def pytest_runtest_logreport(report) -> None:
    rec = _ACTIVE
    if rec is None:
        return
    rec.flush()
    out = rec.outcomes.setdefault(report.nodeid, TestOutcome(report.nodeid))
    out.duration += report.duration
    if report.failed:
        out.outcome = "failed"
        out.longrepr += ("\n" if out.longrepr else "") + report.longreprtext
    elif report.skipped and out.outcome != "failed":
        longrepr = report.longrepr
        if hasattr(report, "wasxfail"):
            out.outcome, out.skip_reason = "xfailed", report.wasxfail or "expected to fail"
        else:
            out.outcome = "skipped"
            out.skip_reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


# ---------------------------------------------------------------------------------------------- aggregation
CHECK_KINDS = ("fwd", "dx", "dW", "dstate", "fit", "weights", "value")


def check_kind(what: str, kind: str) -> str:
    """Classify a check: forward, input gradient, weight gradients, state gradients, fit history, final weights."""
    if kind == "training":
        return "weights" if what.startswith("final ") else "fit"
    if what.startswith("forward") or what.startswith("outputs count"):
        return "fwd"
    if what == "dx" or what.startswith("dx["):  # dx[k]: the k-th input of a layer called on a list
        return "dx"
    if what.startswith("d initial_state") or what.startswith("initial-state gradients count"):
        return "dstate"
    if what.startswith("d ") or what.startswith("weight count") or what.startswith("weight gradients count"):
        return "dW"
    return "value"


def function_id(nodeid: str) -> str:
    """'tests/parity/test_x.py::test_f[a-b]' -> 'tests/parity/test_x.py::test_f'."""
    return nodeid.split("[", 1)[0]


def _topic(nodeid: str) -> str:
    """The subject of bare comparisons, from the file name: test_loss_parity.py -> '(loss)'."""
    stem = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    stem = re.sub(r"^test_|_parity$", "", stem)
    return f"({stem})"


@dataclass
class Row:
    layer: str
    test: str  # function id
    dtype: str
    kind: str
    examples: int = 0
    nodeids: set = field(default_factory=set)
    configs: list = field(default_factory=list)
    kinds: set = field(default_factory=set)
    check_names: set = field(default_factory=set)
    max_abs: float = 0.0
    max_rel: float = 0.0
    tolerance: float = 0.0
    checks_passed: bool = True
    test_passed: bool = True
    xfail: bool = False  # every test behind the row is marked xfail (a known, documented difference)
    worst_failure: str = ""

    @property
    def passed(self) -> bool:
        return self.checks_passed and self.test_passed

    @property
    def result(self) -> str:
        if self.passed:
            return "PASS"
        return "XFAIL" if self.xfail else "FAIL"

    def add(self, record: Record) -> None:
        self.examples += 1
        self.nodeids.add(record.nodeid)
        if record.config:
            self.configs.append(record.config)
        for c in record.checks:
            self.kinds.add(check_kind(c.what, record.kind))
            self.check_names.add(c.what)
            self.max_abs = _nanmax(self.max_abs, c.max_abs)
            self.max_rel = _nanmax(self.max_rel, c.max_rel)
            self.tolerance = max(self.tolerance, c.tolerance)
        if not all(c.passed for c in record.checks):
            if self.checks_passed:
                self.worst_failure = _describe(record)
            self.checks_passed = False

    @property
    def options(self) -> str:
        return summarize_configs(self.configs)

    @property
    def kinds_text(self) -> str:
        return "+".join(k for k in CHECK_KINDS if k in self.kinds) or "-"


def _nanmax(a: float, b: float) -> float:
    if isinstance(b, float) and math.isnan(b):
        return math.inf
    return max(a, b)


def worst_failure(recorder: Recorder, nodeid: str) -> str:
    """The failing comparison with the largest relative error recorded by one test ('' if none)."""
    failing = [r for r in recorder.records if r.nodeid == nodeid and not all(c.passed for c in r.checks)]
    if not failing:
        return ""
    worst = max(failing, key=lambda r: max(_nanmax(0.0, c.max_rel) for c in r.checks if not c.passed))
    return _describe(worst)


def _describe(record: Record) -> str:
    lines = [f"{record.layer or _topic(record.nodeid)} ({record.dtype}) config={record.config}"]
    lines += [f"  {c}" for c in record.checks if not c.passed] or ["  (no failing check)"]
    return "\n".join(lines)


_SKIP_KEYS = {"name", "trainable", "dtype", "seed"}


def _fmt(value) -> str:
    if isinstance(value, dict) and "class_name" in value:
        inner = value.get("config", {})
        units = inner.get("units")
        return f"{value['class_name']}({units})" if units is not None else value["class_name"]
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_fmt(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def summarize_configs(configs: list[dict]) -> str:
    """What varied over the examples, compactly: ``units=1..7 act={relu,tanh} pad={same,valid} bias=T/F``.

    Keys with one value over all examples are shown after the varying ones (``key=value``)."""
    if not configs:
        return ""
    values: dict[str, list] = defaultdict(list)
    for cfg in configs:
        for key, value in cfg.items():
            if key in _SKIP_KEYS or key.endswith("_initializer"):
                continue
            text = _fmt(value)
            if text not in values[key]:
                values[key].append(text)
    varying, fixed = [], []
    for key, texts in values.items():
        if len(texts) == 1:
            fixed.append(f"{key}={texts[0]}")
            continue
        if all(re.fullmatch(r"-?\d+", t) for t in texts):
            nums = sorted(int(t) for t in texts)
            varying.append(f"{key}={nums[0]}..{nums[-1]}")
        else:
            varying.append(f"{key}={{{','.join(sorted(texts))}}}")
    return " ".join(varying + fixed)


def build_rows(recorder: Recorder) -> list[Row]:
    recorder.flush()
    rows: dict[tuple, Row] = {}
    for record in recorder.records:
        layer = record.layer or _topic(record.nodeid)
        key = (layer, function_id(record.nodeid), record.dtype, record.kind)
        row = rows.setdefault(key, Row(layer, key[1], record.dtype, record.kind))
        row.add(record)
    # the pytest outcome decides too: a test that failed without a failing comparison (an exception, an
    # assertion of its own) fails every row it produced
    failed = {n for n, o in recorder.outcomes.items() if o.outcome == "failed"}
    explained = {r.nodeid for r in recorder.records if not all(c.passed for c in r.checks)}
    xfailed = {n for n, o in recorder.outcomes.items() if o.outcome == "xfailed"}
    for row in rows.values():
        if row.nodeids & (failed - explained):
            row.test_passed = False
        row.xfail = bool(row.nodeids) and row.nodeids <= xfailed
    # tests that ran but recorded no comparison (e.g. assertion-only Keras checks) still get a row
    seen = {row.test for row in rows.values()}
    for nodeid, out in recorder.outcomes.items():
        fid = function_id(nodeid)
        if fid in seen or out.outcome in ("skipped", "xfailed"):
            continue
        seen.add(fid)
        row = Row(_topic(nodeid), fid, "-", "assert", examples=0)
        row.nodeids = {n for n in recorder.outcomes if function_id(n) == fid}
        row.test_passed = not any(recorder.outcomes[n].outcome == "failed" for n in row.nodeids)
        rows[(row.layer, fid, "-", "assert")] = row
    return sorted(rows.values(), key=lambda r: (r.layer.startswith("("), r.layer, r.test, r.dtype))


# ---------------------------------------------------------------------------------------------- hypothesis output
def reproduction(longrepr: str) -> dict:
    """The falsifying example and the ``@reproduce_failure(...)`` line hypothesis printed for a failed test."""
    lines = [line[4:] if line.startswith("E   ") else line for line in longrepr.splitlines()]
    result: dict[str, str] = {}
    for i, line in enumerate(lines):
        if re.search(r"Falsifying example|Failing test case", line) and "example" not in result:
            block = [line.strip()]
            depth = line.count("(") - line.count(")")
            j = i + 1
            while depth > 0 and j < len(lines):
                block.append(lines[j].rstrip())
                depth += lines[j].count("(") - lines[j].count(")")
                j += 1
            result["example"] = "\n".join(block)
        match = re.search(r"(@reproduce_failure\(.*?\))", line)
        if match and "reproduce_failure" not in result:
            result["reproduce_failure"] = match.group(1)
        match = re.search(r"(@seed\(\d+\))", line)
        if match and "seed" not in result:
            result["seed"] = match.group(1)
    return result
