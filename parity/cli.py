"""``python -m parity``: run the parity suite (parity/cases, the same cases pytest runs) and print the table.

Every comparison the tests make against Keras is recorded (:mod:`parity.recorder`) and aggregated per
layer × test × dtype: which checks ran (fwd = outputs, dx = input gradient, dW = weight gradients,
dstate = initial-state gradients, fit = per-epoch History of a training run, weights = final weights after
training, value = a bare loss/optimizer/metric comparison), the worst absolute and relative error over all
examples and checks, the tolerance, and PASS/FAIL (XFAIL: a test marked as a known, documented difference
from Keras). The exit status is non-zero on any failure, on a test file whose tests pytest did not collect,
and (in full runs) on a public layer that no parity case exercised.

``--quick`` (the default) runs 5 derandomized hypothesis examples per property and, of each parametrized
test, a covering subset of its variants (every parameter value at least once); ``--ci`` runs everything
with the profile of ``make test``; ``--thorough`` runs everything with 250 random examples per property.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
import re
import shlex
import subprocess
import sys
import time

from . import backend, coverage, recorder, report

MODES = {
    # mode: (hypothesis profile, profile when --seed is given)
    "quick": ("parity-quick", "parity-seeded"),
    "ci": ("ci", "parity-ci-seeded"),
    "thorough": ("thorough", "parity-thorough-seeded"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m parity",
        description="Run tinynn's parity suite against Keras 3 and print a table of the errors found.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help=f"{recorder.QUICK_EXAMPLES} derandomized examples per property and a covering subset of "
                           "each parametrized test's variants (default; about 2 minutes on 2 cores)")
    mode.add_argument("--ci", dest="mode", action="store_const", const="ci",
                      help="the hypothesis profile of `make test` (12 derandomized examples per property)")
    mode.add_argument("--thorough", dest="mode", action="store_const", const="thorough",
                      help="250 random examples per property (long)")
    p.set_defaults(mode="quick")
    p.add_argument("--layer", action="append", default=[], metavar="NAME",
                   help="only the tests that exercise this tinynn layer class, e.g. --layer LSTM (repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--seed", type=int, help="hypothesis seed (random exploration, reproducible with the same seed)")
    p.add_argument("--tests", metavar="DIR", help="directory of parity tests (default: parity/cases, in this package)")
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k expression to select tests")
    p.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output (one line per test)")
    p.add_argument("--width", type=int, default=42, help="width of the options column (default 42)")
    p.add_argument("--backend", choices=[*backend.BACKENDS, "all"], default=backend.DEFAULT,
                   help="the Keras backend to compare against (default tensorflow); 'all' runs each backend in its "
                        "own process and prints one table with a column per backend")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report to FILE")
    p.add_argument("--no-shrink", action="store_true", help=argparse.SUPPRESS)  # set for --backend all's runs
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- formatting
def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if math.isinf(x):
        return "inf"
    return f"{x:.1e}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(rows: list[recorder.Row], options_width: int = 42) -> str:
    header = ["layer", "test", "options", "dtype", "n", "checks", "max abs", "max rel", "tol", "result"]
    body = []
    for r in rows:
        test = r.test.split("::", 1)[-1].removeprefix("test_")
        tol = f"{r.tolerance:.0e}" if r.examples else "-"
        abs_, rel = (_num(r.max_abs), _num(r.max_rel)) if r.examples else ("-", "-")
        layer = "fit " + r.layer.removeprefix("training ") if r.kind == "training" else r.layer
        body.append([_clip(layer, 40), _clip(test, 30), _clip(r.options, options_width), r.dtype, str(r.examples),
                     r.kinds_text if r.examples else "assert", abs_, rel, tol, r.result])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    right = {4, 6, 7, 8}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(b).rstrip() for b in body]
    return "\n".join(out)


def _json_number(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


# ---------------------------------------------------------------------------------------------- running
def _pytest_command(target: str, profile: str, seed: int | None) -> str:
    env = f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', backend.DEFAULT)} HYPOTHESIS_PROFILE={profile} "
    cmd = [sys.executable, "-m", "pytest", "-p", "parity.recorder", "-p", "no:cacheprovider", target]
    if seed is not None:
        cmd.append(f"--hypothesis-seed={seed}")
    return env + " ".join(shlex.quote(c) for c in cmd)


def _layer_chain(layer_label: str) -> list[str]:
    """'training Conv1D→MaxPooling1D→Dense' -> ['Conv1D', 'MaxPooling1D', 'Dense']."""
    return layer_label.removeprefix("training ").split("→") if layer_label.startswith("training ") else [layer_label]


def _nested_layers(config) -> set[str]:
    """Layer classes nested in a config (e.g. the LSTM inside a Bidirectional)."""
    found = set()
    if isinstance(config, dict):
        if "class_name" in config and "config" in config:
            found.add(config["class_name"])
        for v in config.values():
            found |= _nested_layers(v)
    elif isinstance(config, list):
        for v in config:
            found |= _nested_layers(v)
    return found


def runtime_coverage(rec: recorder.Recorder, required: list[str]) -> dict[str, dict[str, int]]:
    """For each required layer: how many layer reports and training reports actually ran it."""
    table = {name: {"layer": 0, "training": 0} for name in required}
    for r in rec.records:
        if r.kind == "layer":
            for name in {r.layer} | _nested_layers(r.config):
                if name in table:
                    table[name]["layer"] += 1
        elif r.kind == "training":  # a chain in the label, or a graph's layer classes in config["layers"]
            listed = r.config.get("layers", []) if isinstance(r.config, dict) else []
            for name in set(_layer_chain(r.layer)) | set(listed):
                if name in table:
                    table[name]["training"] += 1
    return table


def source_inventory(test_dir: pathlib.Path) -> dict[pathlib.Path, list[str]]:
    """The test functions each ``*.py`` file of ``test_dir`` defines (read from the source, not by pytest)."""
    return {path.resolve(): [info.name for info in coverage.scan_source(path.read_text(), path.name, set())]
            for path in sorted(test_dir.glob("*.py"))}


def collection_problems(rec: recorder.Recorder, inventory: dict[pathlib.Path, list[str]]) -> list[str]:
    """Test functions present in the sources that pytest did not collect (e.g. a misnamed file or class)."""
    collected = {(pathlib.Path(str(item.path)).resolve(), item.nodeid.split("::", 1)[1].split("[", 1)[0])
                 for item in rec.collected}
    problems = []
    for path, names in inventory.items():
        if not names:
            continue
        if not path.name.startswith("test_"):
            problems.append(f"{path.name}: defines {len(names)} test functions but pytest only collects test_*.py")
            continue
        missing = [n for n in names if (path.resolve(), n) not in collected]
        if missing:
            problems.append(f"{path.name}: not collected: {', '.join(missing)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = list(backend.BACKENDS) if args.backend == "all" else [args.backend]
    missing = backend.missing_packages(backends)
    if missing:
        print(f"parity: missing packages: {', '.join(missing)}; install them with: "
              f"pip install 'tinynn[{backend.extra_for(backends)}]'", file=sys.stderr)
        return 2
    if args.backend == "all":
        return run_all_backends(args)
    backend.select(args.backend)
    return run(args)


def _child_args(args: argparse.Namespace) -> list[str]:
    """The command-line arguments of one backend's run of ``--backend all``."""
    out = [f"--{args.mode}", "--width", str(args.width), "--no-shrink"]
    for name in args.layer:
        out += ["--layer", name]
    if args.keyword:
        out += ["-k", args.keyword]
    if args.seed is not None:
        out += ["--seed", str(args.seed)]
    if args.tests:
        out += ["--tests", args.tests]
    return out


def run_all_backends(args: argparse.Namespace) -> int:
    """Run each backend in its own process (Keras fixes its backend at import) and merge the results."""
    import tempfile

    docs = {}
    start = time.perf_counter()
    seed = args.seed
    if seed is None and args.mode == "thorough":  # one seed for every backend, so they draw the same examples
        seed = random.randrange(2**32)
        args.seed = seed
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        for name in backend.BACKENDS:
            out_json = pathlib.Path(tmp) / f"{name}.json"
            log = pathlib.Path(tmp) / f"{name}.log"
            cmd = [sys.executable, "-m", "parity", *_child_args(args), "--backend", name, "--json", str(out_json)]
            print(f"parity: running the {name} backend ({' '.join(shlex.quote(c) for c in cmd[1:])})", flush=True)
            t0 = time.perf_counter()
            with open(log, "w") as fh:
                # keep going past failing comparisons, so every backend runs (and records) the same examples
                env = {**os.environ, "PARITY_KEEP_GOING": "1"}
                code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
            text = log.read_text()
            tail = [ln for ln in text.splitlines() if ln.startswith(("collected ", "coverage:", "parity: PASS",
                                                                       "parity: FAIL", "COLLECTION:"))]
            print(f"  {name}: exit {code}, {time.perf_counter() - t0:.0f} s; " + "; ".join(tail), flush=True)
            if not out_json.exists():
                print(text[-3000:])
                docs[name] = {"backend": name, "rows": [], "records": [], "passed": False,
                              "summary": {"text": f"no results (exit {code})"}, "collection_problems": [
                                  f"the {name} run ended without results (exit {code})"]}
                continue
            docs[name] = json.loads(out_json.read_text())
            if args.verbose or code not in (0, 1):
                print(text)
    merged = report.merge(docs)
    merged["duration_s"] = round(time.perf_counter() - start, 1)
    print()
    print(report.format_merged_table(merged))
    print()
    for name in backend.BACKENDS:
        print(f"{name}: {docs[name].get('summary', {}).get('text', '')}")
    if merged["differences"]:
        print("\nbackend differences (tinynn matches Keras on TensorFlow; Keras on this backend computes something "
              "else, by at least 'gap' relative, returns another dtype or non-finite values, or raises):")
        for d in merged["differences"]:
            what = {"gap": f"gap ≥ {report.fmt(d['keras_gap_at_least'])} (tol {d['tolerance']:.0e})",
                    "dtype": "another output dtype", "error": "Keras raises",
                    "nonfinite": "NaN or inf where Keras on TensorFlow is finite"}[d["kind"]]
            print(f"  {d['backend']}: {d['layer']} {d['check']} ({d['dtype']}) {what}; {d['nodeid']} {d['example']}")
    failures = [(r, b) for r in merged["rows"] for b, c in r["cells"].items() if c["result"] == "FAIL"]
    for r, b in failures:
        cell = r["cells"][b]
        print(f"\nFAIL on {b}: {r['layer']} {r['test']} ({r['dtype']})")
        if cell.get("failure"):
            print("  " + cell["failure"].replace("\n", "\n  "))
    print(f"\nparity --backend all: {'PASS' if merged['passed'] else 'FAIL'} ({merged['duration_s']:.0f} s)")
    if args.json:
        report.write_json(args.json, merged)
        print(f"parity: results written to {args.json}")
    if args.html:
        pathlib.Path(args.html).write_text(report.to_html(merged))
        print(f"parity: HTML report written to {args.html}")
    return 0 if merged["passed"] else 1


def run(args: argparse.Namespace) -> int:
    """One backend, in this process: pytest over the parity cases with the recorder, then the table."""
    import pytest

    test_dir = pathlib.Path(args.tests).resolve() if args.tests else coverage.tests_dir()
    if not test_dir.is_dir():
        print(f"parity: no test directory {test_dir} (run from a source checkout of tinynn, or pass --tests DIR)",
              file=sys.stderr)
        return 2
    from tinynn import layers as tn_layers

    known = set(tn_layers.registry())
    unknown = [name for name in args.layer if name not in known]
    if unknown:
        print(f"parity: unknown layer {unknown}; tinynn has {sorted(known)}", file=sys.stderr)
        return 2

    profile = MODES[args.mode][0 if args.seed is None else 1]
    seed = args.seed
    if seed is None and args.mode == "thorough":  # random exploration: choose and print the seed so it reproduces
        seed = random.randrange(2**32)
        profile = MODES["thorough"][1]
    if args.no_shrink:
        profile = recorder.no_shrink_profile(profile)
    os.environ["HYPOTHESIS_PROFILE"] = profile
    os.environ[recorder.CLI_ENV] = "1"

    infos = coverage.scan_tests(test_dir, known)
    inventory = source_inventory(test_dir)  # before running: files may change while the suite runs
    targets = [str(test_dir)]
    if args.layer:
        chosen = [i for i in infos if set(args.layer) & i.layers and (i.calls_layer_parity or i.calls_training_parity)]
        targets = sorted({f"{test_dir / pathlib.Path(i.file).name}::{i.name}" for i in chosen})
        if not targets:
            print(f"parity: no parity test exercises {args.layer}", file=sys.stderr)
            return 1

    pytest_args = [*targets, "-p", "parity.recorder", "-p", "no:cacheprovider", "--tb=short", "-o", "addopts=",
                   "-W", "ignore::DeprecationWarning", "-W", "ignore::UserWarning"]
    pytest_args.append("-v" if args.verbose else "-q")
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    if seed is not None:
        pytest_args.append(f"--hypothesis-seed={seed}")

    keras_backend = os.environ.get("KERAS_BACKEND", backend.DEFAULT)
    print(f"parity: Keras backend {keras_backend}, mode {args.mode}, hypothesis profile {profile!r}"
          + (f", seed {seed}" if seed is not None else "") + f", tests in {test_dir}", flush=True)
    rec = recorder.Recorder(quick_subset=args.mode == "quick")
    recorder.activate(rec)
    start = time.perf_counter()
    try:
        code = pytest.main(pytest_args)
    finally:
        recorder.activate(None)
    elapsed = time.perf_counter() - start

    rows = recorder.build_rows(rec)
    if args.layer:
        wanted = set(args.layer)
        rows = [r for r in rows if set(_layer_chain(r.layer)) & wanted
                or any(wanted & _nested_layers(c) for c in r.configs) or r.layer.startswith("(")]
    print()
    print(format_table(rows, args.width))

    failed_tests = {n: o for n, o in rec.outcomes.items() if o.outcome == "failed"}
    full_run = not args.layer and not args.keyword and not args.tests
    problems = collection_problems(rec, inventory) if not args.layer and not args.keyword else []
    required = coverage.public_layers()
    cov = runtime_coverage(rec, required)
    missing = sorted(n for n, c in cov.items() if c["layer"] == 0) if full_run else []
    no_fit = sorted(n for n, c in cov.items() if c["training"] == 0)

    n_files = len({item.nodeid.split("::", 1)[0] for item in rec.collected})
    n_pass = sum(o.outcome == "passed" for o in rec.outcomes.values())
    n_skip = sum(o.outcome in ("skipped", "xfailed") for o in rec.outcomes.values())
    n_checks = sum(len(r.checks) for r in rec.records)
    print()
    ran = len(rec.outcomes)
    subset = (f" (quick: {ran} of them, every parameter value of each parametrized test at least once; --ci runs "
              "all)") if ran < len(rec.collected) and args.mode == "quick" else ""
    failing_rows = sum(not (r.passed or r.xfail) for r in rows)
    summary = (f"collected {len(rec.collected)} parity tests from {n_files} files{subset}; {n_pass} passed, "
               f"{len(failed_tests)} failed, {n_skip} skipped; {len(rec.records)} reports, {n_checks} compared arrays"
               + (f"; {failing_rows} table rows FAIL" if failing_rows else ""))
    print(summary)
    for nodeid, out in sorted(rec.outcomes.items()):
        if out.outcome in ("skipped", "xfailed"):
            print(f"  {out.outcome} {nodeid}: {out.skip_reason}")
    if full_run:
        covered = len(required) - len(missing)
        print(f"coverage: {covered}/{len(required)} public layers have a layer parity case (fwd/dx/dW)"
              + (f"; MISSING: {', '.join(missing)}" if missing else "")
              + f"; {len(required) - len(no_fit)}/{len(required)} also train in a whole-model fit"
              + (f" (not: {', '.join(no_fit)})" if no_fit else ""))
    for problem in problems:
        print(f"COLLECTION: {problem}")

    def rerun_command(nodeid: str) -> str:
        test_file = test_dir / pathlib.Path(nodeid.split("::", 1)[0]).name
        return _pytest_command(str(test_file) + "::" + nodeid.split("::", 1)[1], profile, seed)

    reproductions = {}
    if failed_tests:
        print("\nFAILURES")
        for nodeid, out in sorted(failed_tests.items()):
            repro = recorder.reproduction(out.longrepr)
            reproductions[nodeid] = repro
            print(f"\n{nodeid}")
            detail = recorder.worst_failure(rec, nodeid)
            if detail:
                print("  worst mismatch: " + detail.replace("\n", "\n  "))
            else:
                last = [ln for ln in out.longrepr.strip().splitlines() if ln.strip()][-3:]
                print("  " + "\n  ".join(last))
            if "example" in repro:
                print("  " + repro["example"].replace("\n", "\n  "))
            if "reproduce_failure" in repro:
                print(f"  reproduce: add {repro['reproduce_failure']} above the test function")
            print("  rerun:     " + rerun_command(nodeid))

    ok = code == 0 and not failed_tests and not problems and not missing and not failing_rows
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("parity: no tests were collected", file=sys.stderr)
    print(f"\nparity: {'PASS' if ok else 'FAIL'} ({elapsed:.1f} s)")

    if args.json or args.html:
        doc = _document(args, rows, rec, profile, seed, elapsed, code, ok, cov, missing, problems, reproductions,
                        summary, rerun_command)
        if args.json:
            report.write_json(args.json, doc)
            print(f"parity: results written to {args.json}")
        if args.html:
            pathlib.Path(args.html).write_text(report.to_html(report.single(doc)))
            print(f"parity: HTML report written to {args.html}")
    if ok:
        return 0
    return int(code) if code not in (0, pytest.ExitCode.TESTS_FAILED) else 1


def _error_line(longrepr: str) -> str:
    """The exception line of a failed test's report (pytest marks it with 'E   ')."""
    lines = [ln[1:].strip() for ln in longrepr.splitlines() if ln.startswith("E ") and ln[1:].strip()]
    errors = [ln for ln in lines if re.match(r"\w+(Error|Exception)\b", ln)]
    return (errors or lines or [""])[0][:300]


def _document(args, rows, rec, profile, seed, elapsed, code, ok, cov, missing, problems, reproductions, summary,
              rerun_command) -> dict:
    import tinynn

    try:
        from importlib.metadata import version

        keras_version = version("keras")
    except Exception:  # pragma: no cover
        keras_version = None
    return {
        "passed": ok,
        "exit_code": int(code),
        "backend": os.environ.get("KERAS_BACKEND", backend.DEFAULT),
        "mode": args.mode,
        "hypothesis_profile": profile,
        "seed": seed,
        "layers": args.layer,
        "duration_s": round(elapsed, 3),
        "tinynn_version": tinynn.__version__,
        "keras_version": keras_version,
        "collected": len(rec.collected),
        "summary": {"text": summary, "passed": ok},
        "rows": [report.row_document(r) for r in rows],
        "tests": [
            {"nodeid": n, "outcome": o.outcome, "duration_s": round(o.duration, 3),
             **({"reproduction": reproductions.get(n, {}), "rerun": rerun_command(n), "error": _error_line(o.longrepr)}
                if o.outcome == "failed" else {}),
             **({"skip_reason": o.skip_reason} if o.outcome == "skipped" else {})}
            for n, o in sorted(rec.outcomes.items())
        ],
        "coverage": cov,
        "missing_layers": missing,
        "collection_problems": problems,
        "worst_cases": report.worst_cases(rec.records, rows, rerun_command),
        "records": report.records_document(rec.records),
    }
