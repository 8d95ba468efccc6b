"""Which option values each parity property claims to cover, and which of them a hypothesis profile draws.

A ``@given`` property claims every value its strategies can enumerate: each element of a ``sampled_from``,
both booleans, ``None`` of a ``none()``, both ends of a bounded ``integers`` range (the smallest and largest
legal sizes; not for arguments named ``*seed``, which pick random data, not an option), recursively inside
``one_of`` and ``fixed_dictionaries``. Values that depend on several
arguments or on a composite strategy's internals are declared with :func:`covers` as named *derived
options*: a function of the drawn arguments and the values it must take, e.g.::

    @covers(kind_dtype=(lambda kw: (kw["kind"], kw["dtype"]), [(k, d) for k in KINDS for d in DTYPES]))
    @given(kind=st.sampled_from(KINDS), dtype=st.sampled_from(DTYPES), ...)
    def test_rnn_parity(kind, dtype, ...): ...

:func:`drawn` runs a property with its body replaced by a recorder (``functools.wraps`` keeps hypothesis's
derandomized seed, which is derived from the body's source and signature, so the examples are those of a
real run) and returns the drawn arguments; :func:`missing` lists the claimed values no example reached.
``python -m parity.options`` prints this for every property in ``parity/cases`` under the ``ci`` profile
(12 derandomized examples plus the explicit ``@example``s: what ``make test`` runs);
``tests/parity/test_option_coverage.py`` asserts nothing is missing. Where 12 draws miss a value, add an
``@example`` (:func:`examples` applies several built from one base case).

A property under ``@pytest.mark.parametrize`` is one property per parameter set, as pytest runs it: each set
is recorded on its own (``file::test[name=Maximum]``) with the parameters passed through to the body like
drawn arguments, so a :func:`covers` function can read them. The parameters themselves are claimed too,
and trivially reached. A property that draws inside its body (``st.data()``) is recorded by running its
body for real: hypothesis's choices depend on those draws, so a stub would see other examples than a real run.
Values drawn inside the body are still invisible to the claims: draw the options as ``@given`` arguments and
keep ``st.data()`` for the data itself.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterable

CLAIMS_ATTR = "_parity_derived_options"


def covers(**derived: tuple[Callable[[dict], object], Iterable]):
    """Declare derived options of a ``@given`` test (put it above ``@given``): ``name=(fn, values)``, where
    ``fn(drawn_kwargs)`` returns the option's value for one example and ``values`` are those it must take."""

    def deco(test):
        claims = dict(getattr(test, CLAIMS_ATTR, {}))
        claims.update({name: (fn, list(values)) for name, (fn, values) in derived.items()})
        setattr(test, CLAIMS_ATTR, claims)
        return test

    return deco


def examples(base: dict, *variants: dict):
    """``@example(**{**base, **v})`` for each variant (just ``base`` without variants): explicit examples that
    differ from a base case only in the options a variant names (put it below ``@given``, like ``@example``)."""
    from hypothesis import example

    def deco(test):
        for variant in reversed(variants or ({},)):
            test = example(**{**base, **variant})(test)
        return test

    return deco


# ---------------------------------------------------------------------------------------------- claims
def _unwrap(strategy):
    from hypothesis.strategies._internal.lazy import unwrap_strategies

    return unwrap_strategies(strategy)


def enumerable_values(strategy, name: str = "") -> list | None:
    """The values a strategy claims to cover (None if it claims none it can name)."""
    from hypothesis.strategies._internal.misc import BooleansStrategy
    from hypothesis.strategies._internal.numbers import IntegersStrategy
    from hypothesis.strategies._internal.strategies import OneOfStrategy, SampledFromStrategy

    s = _unwrap(strategy)
    if isinstance(s, SampledFromStrategy):
        return None if s._transformations else list(s.elements)
    if isinstance(s, BooleansStrategy):
        return [False, True]
    if isinstance(s, IntegersStrategy):
        if s.start is None or s.end is None or name.endswith("seed"):
            return None
        return sorted({s.start, s.end})
    if isinstance(s, OneOfStrategy):
        values: list = []
        for option in s.original_strategies:
            for v in enumerable_values(option, name) or []:
                if not any(_same(v, w) for w in values):
                    values.append(v)
        return values or None
    return None


def strategy_claims(name: str, strategy) -> dict[str, tuple[Callable, list]]:
    """Claimed options of one ``@given`` argument (``fixed_dictionaries`` fields as ``name.key``)."""
    from hypothesis.strategies._internal.collections import FixedDictStrategy

    s = _unwrap(strategy)
    if isinstance(s, FixedDictStrategy):
        out = {}
        for key, sub in s.mapping.items():
            for sub_name, (fn, values) in strategy_claims(str(key), sub).items():
                out[f"{name}.{sub_name}"] = (_field(name, fn), values)
        return out
    values = enumerable_values(s, name)
    if values is None:
        return {}
    return {name: (lambda kw, _n=name: kw[_n], values)}


def _field(name: str, fn: Callable) -> Callable:
    return lambda kw: fn(kw[name])


def claims(test, params: dict | None = None) -> dict[str, tuple[Callable, list]]:
    """Every option a ``@given`` test claims: from its strategies, plus those declared with :func:`covers`
    (and, for a parametrized test run with ``params``, each parameter's value)."""
    handle = test.hypothesis
    out = {name: (lambda kw, _n=name: kw[_n], [value]) for name, value in (params or {}).items()}
    for name, strategy in handle._given_kwargs.items():
        out.update(strategy_claims(name, strategy))
    out.update(getattr(test, CLAIMS_ATTR, {}))
    out.update(getattr(handle.inner_test, CLAIMS_ATTR, {}))
    return out


def _same(a, b) -> bool:
    """Equal option values (True is not 1; tuples and lists compare by their repr)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return repr(a) == repr(b)


# ---------------------------------------------------------------------------------------------- drawing
def parametrizations(test) -> list[dict]:
    """The parameter sets pytest runs a test with: the cartesian product of its ``@pytest.mark.parametrize``
    marks (``[{}]`` without any)."""
    sets: list[dict] = [{}]
    for mark in getattr(test, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = mark.args[0] if mark.args else mark.kwargs["argnames"]
        values = mark.args[1] if len(mark.args) > 1 else mark.kwargs["argvalues"]
        names = [n.strip() for n in names.split(",") if n.strip()] if isinstance(names, str) else list(names)
        rows = []
        for value in values:
            value = getattr(value, "values", value) if type(value).__name__ == "ParameterSet" else \
                (value,) if len(names) == 1 else value
            rows.append(dict(zip(names, value, strict=True)))
        sets = [{**s, **row} for s in sets for row in rows]
    return sets


def draws_in_body(test) -> bool:
    """True for a ``@given`` test with an ``st.data()`` argument (it draws inside its body)."""
    from hypothesis.strategies._internal.core import DataStrategy

    return any(isinstance(_unwrap(s), DataStrategy) for s in test.hypothesis._given_kwargs.values())


def param_id(params: dict) -> str:
    """``[name=Maximum]``-style suffix of a parameter set ('' for none)."""
    return "[" + ", ".join(f"{k}={v}" for k, v in params.items()) + "]" if params else ""


def drawn(test, run_body: bool = False, params: dict | None = None) -> list[dict]:
    """The arguments of every example the test runs under the active hypothesis profile (explicit
    ``@example``s first), with ``params`` (one of :func:`parametrizations`) passed through and included.
    The body is not run unless ``run_body`` (then it runs as in a real test)."""
    handle = test.hypothesis
    inner = handle.inner_test
    seen: list[dict] = []
    run_body = run_body or draws_in_body(test)

    @functools.wraps(inner)
    def recorder(*args, **kwargs):
        seen.append(dict(kwargs))
        if run_body:
            return inner(*args, **kwargs)
        return None

    handle.inner_test = recorder
    try:
        test(**(params or {}))
    finally:
        handle.inner_test = inner
    return seen


def missing(test, draws: list[dict], params: dict | None = None) -> dict[str, list]:
    """Claimed option values that no drawn example took (an option's function may return one value or a
    set of values the example covers); ``params``: the parameter set the draws were made with."""
    out = {}
    for name, (fn, values) in claims(test, params).items():
        got = []
        for kw in draws:
            value = fn(kw)
            got.extend(value if isinstance(value, (set, frozenset)) else [value])
        absent = [v for v in values if not any(_same(v, g) for g in got)]
        if absent:
            out[name] = absent
    return out


def given_tests(directory: pathlib.Path | None = None) -> list[tuple[str, Callable]]:
    """(``file::name``, function) of every ``@given`` test in the parity cases (imports them)."""
    from . import coverage

    directory = directory or coverage.tests_dir()
    out = []
    package = f"{directory.parent.name}.{directory.name}" if (directory / "__init__.py").exists() else None
    for path in sorted(directory.glob("test_*.py")):
        if package:
            module = importlib.import_module(f"{package}.{path.stem}")
        else:  # pragma: no cover - a loose directory of cases
            sys.path.insert(0, str(directory))
            module = importlib.import_module(path.stem)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("test") and callable(obj) and hasattr(obj, "hypothesis"):
                out.append((f"{path.name}::{name}", obj))
    return out


def unfilled(test, params: dict | None = None) -> list[str]:
    """Arguments of a ``@given`` test that neither hypothesis nor ``params`` fill (pytest fixtures): the
    recorder cannot call such a test (the parity cases have none)."""
    return [name for name, p in inspect.signature(test).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in (params or {})]


def runnable(test) -> bool:
    """A ``@given`` test whose every argument comes from hypothesis or its ``parametrize`` marks."""
    return all(not unfilled(test, params) for params in parametrizations(test))


def report(profile: str = "ci") -> dict:
    """For every ``@given`` parity case (each parameter set of a parametrized one): examples drawn under
    ``profile``, claimed options, missing values."""
    from hypothesis import settings

    from . import recorder

    recorder.register_profiles()
    settings.load_profile(profile)
    out = {}
    for test_id, test in given_tests():
        for params in parametrizations(test):
            key = test_id + param_id(params)
            if unfilled(test, params):
                out[key] = {"error": f"needs arguments {unfilled(test, params)} (a pytest fixture?)"}
                continue
            draws = drawn(test, params=params)
            out[key] = {"examples": len(draws),
                        "claims": {k: len(v) for k, (_, v) in claims(test, params).items()},
                        "missing": {k: [repr(x) for x in v] for k, v in missing(test, draws, params).items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.options",
                                description="Which claimed option values each parity property draws.")
    p.add_argument("--profile", default=os.environ.get("HYPOTHESIS_PROFILE", "ci"))
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--verify", metavar="FILE::TEST", help="also run this test for real and check that the "
                   "recorded draws equal those of the real run")
    args = p.parse_args(argv)
    os.environ["HYPOTHESIS_PROFILE"] = args.profile
    doc = {"profile": args.profile, "tests": report(args.profile)}
    if args.verify:
        test = dict(given_tests())[args.verify]
        stub = drawn(test)
        real = drawn(test, run_body=True)
        from .recorder import describe_example

        doc["verify"] = {"test": args.verify, "examples": len(real),
                         "same_draws": [describe_example(k)[1] for k in stub] == [describe_example(k)[1] for k in real]}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        for test_id, info in doc["tests"].items():
            if "error" in info:
                print(f"{test_id}: {info['error']}")
                continue
            status = "ok" if not info["missing"] else "MISSING " + "; ".join(
                f"{k}: {', '.join(v)}" for k, v in info["missing"].items())
            print(f"{test_id}: {info['examples']} examples, {len(info['claims'])} options: {status}")
        if "verify" in doc:
            print(f"verify {doc['verify']}")
    bad = any(info.get("missing") or "error" in info for info in doc["tests"].values())
    return 1 if bad or (args.verify and not doc["verify"]["same_draws"]) else 0


if __name__ == "__main__":
    sys.exit(main())
