"""The results of ``python -m parity`` as data: one JSON document per backend, merged across backends, as a
text table and as a self-contained HTML page.

A single run's document (:func:`run_document`) holds the table's rows, every test's outcome, the coverage,
and every recorded comparison (``records``: test node id, example digest, sequence number, checks). A run
over several backends (``--backend all``) merges the documents (:func:`merge`): one row per layer × test ×
dtype × kind with one cell per backend.

**Backend differences.** tinynn is checked against Keras on each backend separately, with the same
tolerances. Where the tensorflow run passes a comparison and another backend's run fails the same
comparison (same test, same hypothesis example, same check), the ∞-norm triangle inequality gives a lower
bound on how far the two Kerases are apart on that case::

    ‖K_B − K_TF‖∞ ≥ ‖ours − K_B‖∞ − ‖ours − K_TF‖∞ = max_abs_B − max_abs_TF

If that bound, relative to the scale of K_B, exceeds the tolerance, Keras on B differs from Keras on
TensorFlow beyond the tolerance on that case: the cell says ``DIFF`` (a finding about Keras's backends,
listed with the exact case under ``differences``), not ``FAIL``. The same holds for an output dtype other
than Keras-on-TensorFlow's (tinynn's is the same in both runs), and a cell says ``KERR`` where Keras on B
raised on a case that Keras on TensorFlow computed and tinynn matched (runs of ``--backend all`` keep going
past failing comparisons and Keras errors: :func:`parity.harness.keep_going`). Any other failure is a
``FAIL``.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict

REFERENCE_BACKEND = "tensorflow"


def _number(x):
    if x is None:
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _float(x) -> float:
    if x is None:
        return math.nan
    if isinstance(x, str):
        return float(x)
    return float(x)


def fmt(x) -> str:
    x = _float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf"
    return f"{x:.1e}"


# ---------------------------------------------------------------------------------------------- one run
def row_document(r) -> dict:
    return {"layer": r.layer, "test": r.test, "dtype": r.dtype, "kind": r.kind, "examples": r.examples,
            "options": r.options, "checks": sorted(r.kinds), "check_names": sorted(r.check_names),
            "max_abs": _number(r.max_abs) if r.examples else None,
            "max_rel": _number(r.max_rel) if r.examples else None,
            "tolerance": r.tolerance if r.examples else None, "passed": r.passed, "result": r.result,
            "failure": r.worst_failure or None}


def records_document(records) -> list:
    """Every recorded comparison, compactly: [nodeid, example_id, seq, layer, dtype, kind, example, checks],
    each check [what, max_abs, max_rel, tolerance, reference, keras_rel]."""
    return [[r.nodeid, r.example_id, r.seq, r.layer, r.dtype, r.kind, r.example,
             [[c.what, _number(c.max_abs), _number(c.max_rel), c.tolerance, c.reference, _number(c.keras_rel)]
              for c in r.checks]]
            for r in records]


def worst_cases(records, rows, command_for) -> dict:
    """Per layer (the table's layer label): the comparison closest to (or furthest past) its tolerance, with
    the test, the example and a command that reruns that test."""
    from .recorder import _topic

    worst: dict[str, dict] = {}
    for r in records:
        layer = r.layer or _topic(r.nodeid)
        for c in r.checks:
            ratio = _float(c.max_rel) / c.tolerance if c.tolerance else (math.inf if not c.passed else 0.0)
            if math.isnan(ratio):
                ratio = math.inf
            if layer not in worst or ratio > worst[layer]["ratio"]:
                worst[layer] = {"ratio": ratio, "nodeid": r.nodeid, "example": r.example, "dtype": r.dtype,
                                "check": c.what, "max_abs": _number(c.max_abs), "max_rel": _number(c.max_rel),
                                "tolerance": c.tolerance, "passed": c.passed}
    for w in worst.values():
        w["ratio"] = _number(w["ratio"])
        w["command"] = command_for(w["nodeid"])
    return dict(sorted(worst.items()))


# ---------------------------------------------------------------------------------------------- merging
def check_key(what: str) -> str:
    """The name of a check in every run (a failing dtype check adds ': tinynn X vs Keras Y')."""
    return what.split(":", 1)[0]


def _checks_by_key(doc) -> dict:
    out = {}
    for nodeid, example_id, seq, _layer, _dtype, _kind, _example, checks in doc.get("records", []):
        for what, max_abs, max_rel, tol, *_ in checks:
            out[(nodeid, example_id, seq, check_key(what))] = (_float(max_abs), _float(max_rel), tol)
    return out


def _records_passed(doc) -> dict:
    """(nodeid, example_id, seq) -> whether every check of that record passed."""
    return {(nodeid, example_id, seq): all(_float(c[2]) <= c[3] for c in checks)
            for nodeid, example_id, seq, _l, _d, _k, _e, checks in doc.get("records", [])}


def _proven_differences(doc, reference_checks, reference_records) -> dict:
    """For one backend's run: row key -> list of its failing comparisons that prove a Keras backend
    difference against the reference run (see the module docstring), or None if a failure is unexplained.

    Four kinds of proof, each on the very comparison (test, example, sequence number, check) the reference
    backend passed: a numeric gap beyond the tolerance (``keras_gap_at_least``); an output dtype other than
    the reference Keras's (tinynn's is the same in both runs); non-finite values (NaN or inf) where the
    reference Keras's agreed with tinynn's; Keras raising (``keras error``) where the reference Keras computed
    results that tinynn matched."""
    per_row: dict[tuple, list | None] = {}
    for nodeid, example_id, seq, layer, dtype, kind, example, checks in doc.get("records", []):
        for what, max_abs, max_rel, tol, *_ in checks:
            max_abs, max_rel = _float(max_abs), _float(max_rel)
            if max_rel <= tol:
                continue
            key = _row_key(layer, nodeid, dtype, kind)
            case = {"nodeid": nodeid, "example": example, "dtype": dtype, "check": what, "max_rel": max_rel,
                    "tolerance": tol, "kind": "gap"}
            proven = None
            ref = reference_checks.get((nodeid, example_id, seq, check_key(what)))
            if what.startswith("keras error"):
                if reference_records.get((nodeid, example_id, seq)):
                    proven = {**case, "kind": "error", "keras_gap_at_least": math.inf}
            elif ref is None or ref[1] > ref[2]:
                pass  # the reference backend did not pass this very comparison: nothing is proven
            elif what.startswith("forward") and " dtype: " in what:
                proven = {**case, "kind": "dtype", "keras_gap_at_least": math.inf}
            elif not math.isfinite(max_abs):
                # tinynn computes the same values in both runs and matched the reference Keras there, non-finite
                # entries included (NaN against NaN counts as equal): a NaN or inf error here means Keras on
                # this backend returns a non-finite value where the reference Keras does not, or vice versa
                proven = {**case, "kind": "nonfinite", "keras_gap_at_least": math.inf}
            elif max_rel > 0:
                bound = (max_abs - ref[0]) / (max_abs / max_rel)
                if bound > tol:
                    proven = {**case, "keras_gap_at_least": bound}
            if proven is None:
                per_row[key] = None
            elif per_row.get(key, []) is not None:
                per_row.setdefault(key, []).append(proven)
    return per_row


def _row_key(layer, nodeid_or_test, dtype, kind) -> tuple:
    from .recorder import _topic, function_id

    return (layer or _topic(nodeid_or_test), function_id(nodeid_or_test), dtype, kind)


def merge(docs: dict[str, dict]) -> dict:
    """One document for runs on several backends: rows with a cell per backend, differences, summaries."""
    backends = list(docs)
    reference = docs.get(REFERENCE_BACKEND)
    ref_checks = _checks_by_key(reference) if reference else {}
    ref_records = _records_passed(reference) if reference else {}
    rows: dict[tuple, dict] = {}
    differences = []
    for name, doc in docs.items():
        proven = (_proven_differences(doc, ref_checks, ref_records) if name != REFERENCE_BACKEND and reference
                  else {})
        errors = {t["nodeid"].split("[", 1)[0]: t.get("error", "") for t in doc.get("tests", [])
                  if t.get("outcome") == "failed"}
        for row in doc.get("rows", []):
            key = (row["layer"], row["test"], row["dtype"], row["kind"])
            merged = rows.setdefault(key, {"layer": row["layer"], "test": row["test"], "dtype": row["dtype"],
                                           "kind": row["kind"], "options": row["options"], "tolerance": None,
                                           "cells": {}})
            if row["tolerance"] is not None:
                merged["tolerance"] = max(merged["tolerance"] or 0.0, row["tolerance"])
            result = row["result"]
            cases = proven.get(key)
            failure = row["failure"] or errors.get(row["test"]) or None
            if result == "FAIL" and cases and row.get("failure"):  # failed through its comparisons only
                result = "KERR" if all(c["kind"] == "error" for c in cases) else "DIFF"
                worst = max(cases, key=lambda c: c["keras_gap_at_least"])
                differences.append({"backend": name, "layer": row["layer"], "test": row["test"], **worst,
                                    "keras_gap_at_least": _number(worst["keras_gap_at_least"]),
                                    "cases": len(cases)})
            merged["cells"][name] = {"max_rel": row["max_rel"], "max_abs": row["max_abs"], "result": result,
                                     "examples": row["examples"], "failure": failure}
    summaries = {name: doc.get("summary", {}) for name, doc in docs.items()}
    passed = all(cell["result"] in ("PASS", "XFAIL", "DIFF", "KERR") for r in rows.values()
                 for cell in r["cells"].values())
    passed = passed and not any(doc.get("collection_problems") or doc.get("missing_layers") for doc in docs.values())
    return {"backends": backends, "rows": sorted(rows.values(), key=lambda r: (r["layer"].startswith("("), r["layer"],
                                                                               r["test"], r["dtype"])),
            "differences": differences, "summaries": summaries,
            "worst_cases": {name: doc.get("worst_cases", {}) for name, doc in docs.items()},
            "passed": passed, "runs": {name: {k: v for k, v in doc.items() if k != "records"}
                                       for name, doc in docs.items()}}


def single(doc: dict) -> dict:
    """A one-backend run in the merged format (for the HTML page)."""
    return merge({doc.get("backend", REFERENCE_BACKEND): doc})


# ---------------------------------------------------------------------------------------------- text
def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_merged_table(merged: dict) -> str:
    backends = merged["backends"]
    header = ["layer", "test", "dtype", "tol", *backends]
    body = []
    for r in merged["rows"]:
        layer = "fit " + r["layer"].removeprefix("training ") if r["kind"] == "training" else r["layer"]
        test = r["test"].split("::", 1)[-1].removeprefix("test_")
        cells = []
        for b in backends:
            cell = r["cells"].get(b)
            if cell is None:
                cells.append("-")
            elif cell["max_rel"] is None:
                cells.append("assert " + cell["result"])
            else:
                cells.append(f"{fmt(cell['max_rel'])} {cell['result']}")
        tol = f"{r['tolerance']:.0e}" if r["tolerance"] else "-"
        body.append([_clip(layer, 40), _clip(test, 30), r["dtype"], tol, *cells])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)] + [line(b) for b in body]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- HTML
_COLOURS = {"PASS": "#d7f2d7", "NEAR": "#fff1b8", "FAIL": "#f7c6c6", "DIFF": "#cfe0fb", "KERR": "#e3d4f7",
            "XFAIL": "#e6e6e6", "-": "#ffffff"}
_LEGEND = [("PASS", "PASS (worst error ≤ 10% of the tolerance)"), ("NEAR", "PASS, worst error above 10% of it"),
           ("DIFF", "DIFF: Keras on this backend differs from Keras on TensorFlow, which tinynn matches"),
           ("KERR", "KERR: Keras on this backend raises where Keras on TensorFlow computes"), ("FAIL", "FAIL"),
           ("XFAIL", "known difference")]


def _cell_class(cell) -> str:
    if cell is None:
        return "-"
    if cell["result"] == "PASS" and cell["max_rel"] is not None and cell.get("tolerance"):
        if _float(cell["max_rel"]) > 0.1 * cell["tolerance"]:
            return "NEAR"
    return cell["result"]


def to_html(merged: dict, title: str = "tinynn parity with Keras 3") -> str:
    """One self-contained page: the matrix (a cell per backend, colour-coded by result and by how close the
    worst error came to the tolerance), the backend differences, and the worst case per layer with the
    command that reruns it."""
    e = html.escape
    backends = merged["backends"]
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title><style>",
           "body{font-family:system-ui,sans-serif;margin:1.5em;font-size:14px}table{border-collapse:collapse}",
           "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}",
           "th{background:#f3f3f3}td.num{text-align:right;font-family:monospace}code{font-size:12px}",
           ".legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #ccc}",
           "</style></head><body>", f"<h1>{e(title)}</h1>"]
    out.append("<p>")
    for name in backends:
        s = merged["summaries"].get(name, {})
        run = merged["runs"].get(name, {})
        out.append(f"<b>{e(name)}</b>: {e(str(s.get('text', '')))} (Keras {e(str(run.get('keras_version')))}, "
                   f"mode {e(str(run.get('mode')))}, profile {e(str(run.get('hypothesis_profile')))}, "
                   f"{e(str(run.get('duration_s')))} s)<br>")
    out.append(f"Overall: <b>{'PASS' if merged['passed'] else 'FAIL'}</b></p>")
    out.append("<p class='legend'>" + "".join(f"<span style='background:{_COLOURS[k]}'>{e(label)}</span>"
                                              for k, label in _LEGEND) + "</p>")
    out.append("<p>Each cell: the worst relative error over every example and check of that row "
               "(max |tinynn − Keras| / max |Keras|; float32 rows against Keras's float64 computation of the "
               "same case), and the result against the row's tolerance.</p>")
    out.append("<h2>Matrix</h2><table><tr><th>layer</th><th>test</th><th>options</th><th>dtype</th><th>tol</th>"
               + "".join(f"<th>{e(b)}</th>" for b in backends) + "</tr>")
    for r in merged["rows"]:
        layer = "fit " + r["layer"].removeprefix("training ") if r["kind"] == "training" else r["layer"]
        test = r["test"].split("::", 1)[-1].removeprefix("test_")
        tol = f"{r['tolerance']:.0e}" if r["tolerance"] else "-"
        cells = []
        for b in backends:
            cell = r["cells"].get(b)
            if cell is not None:
                cell = dict(cell, tolerance=r["tolerance"])
            cls = _cell_class(cell)
            if cell is None:
                text = "-"
            else:
                value = "assert" if cell["max_rel"] is None else fmt(cell["max_rel"])
                text = f"{value} {cell['result']}"
            tip = f" title='{e(cell['failure'])}'" if cell and cell.get("failure") else ""
            cells.append(f"<td class='num' style='background:{_COLOURS[cls]}'{tip}>{e(text)}</td>")
        out.append(f"<tr><td>{e(layer)}</td><td>{e(test)}</td><td><code>{e(r['options'])}</code></td>"
                   f"<td>{e(r['dtype'])}</td><td class='num'>{tol}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    if merged["differences"]:
        out.append("<h2>Backend differences</h2><p>tinynn matches Keras on TensorFlow in these cases; Keras on the "
                   "named backend computes something else, by at least the given relative amount.</p><table>"
                   "<tr><th>backend</th><th>layer</th><th>check</th><th>dtype</th><th>Keras gap ≥</th><th>tol</th>"
                   "<th>case</th></tr>")
        for d in merged["differences"]:
            out.append(f"<tr><td>{e(d['backend'])}</td><td>{e(d['layer'])}</td><td>{e(d['check'])}</td>"
                       f"<td>{e(d['dtype'])}</td><td class='num'>{fmt(d['keras_gap_at_least'])}</td>"
                       f"<td class='num'>{d['tolerance']:.0e}</td><td><code>{e(d['nodeid'])}</code><br>"
                       f"<code>{e(d['example'])}</code></td></tr>")
        out.append("</table>")
    out.append("<h2>Worst case per layer</h2><p>The comparison that came closest to its tolerance (ratio = "
               "error / tolerance), and a command that reruns its test (the same examples are drawn).</p>")
    for name in backends:
        worst = merged["worst_cases"].get(name, {})
        out.append(f"<h3>{e(name)}</h3><table><tr><th>layer</th><th>ratio</th><th>check</th><th>dtype</th>"
                   "<th>case</th><th>rerun</th></tr>")
        for layer, w in worst.items():
            cls = "PASS" if w["passed"] and _float(w["ratio"]) <= 0.1 else ("NEAR" if w["passed"] else "FAIL")
            out.append(f"<tr><td>{e(layer)}</td><td class='num' style='background:{_COLOURS[cls]}'>"
                       f"{fmt(w['ratio'])}</td><td>{e(w['check'])}</td><td>{e(w['dtype'])}</td>"
                       f"<td><code>{e(w['nodeid'])}</code><br><code>{e(w['example'])}</code></td>"
                       f"<td><code>{e(w['command'])}</code></td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1, default=str)


def group_differences(differences: list) -> dict:
    out = defaultdict(list)
    for d in differences:
        out[d["backend"]].append(d)
    return dict(out)
