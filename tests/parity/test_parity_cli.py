"""``python -m parity`` end to end, in subprocesses: the table, the exit status, ``--json``, ``--layer``, and on
failure the hypothesis reproduction line and a rerun command that does reproduce the failure.

The failing case is a deliberately broken layer (outputs scaled by 1.001) in a temporary test directory
(``--tests DIR``), next to a correct one, so the run has exactly one PASS row and one FAIL row.
(Skipped inside ``python -m parity`` itself, which would otherwise run itself.)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from parity import coverage, recorder

pytestmark = pytest.mark.skipif(os.environ.get(recorder.CLI_ENV) == "1",
                                reason="the CLI's own end-to-end test is not run by the CLI")

ROOT = coverage.tests_dir().parent.parent  # the checkout: parity/cases -> parity -> root

BROKEN = '''
import keras
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from parity.harness import layer_parity
from tinynn import layers


class OffByAPermille(layers.Activation):
    """A deliberately wrong layer: y = 1.001 · act(x)."""

    def forward(self, x, training=False, mask=None):
        return super().forward(x, training, mask) * 1.001


@given(seed=st.integers(0, 1000), dtype=st.sampled_from(["float64", "float32"]))
def test_broken_layer(seed, dtype):
    x = np.random.default_rng(seed).normal(size=(2, 3)).astype(dtype)
    layer = OffByAPermille("tanh", dtype=dtype)
    layer_parity(layer, x, seed=seed, keras_layer=keras.layers.Activation("tanh", dtype=dtype)).assert_ok()


@given(seed=st.integers(0, 1000))
def test_correct_layer(seed):
    x = np.random.default_rng(seed).normal(size=(2, 4))
    layer_parity(layers.Activation("sigmoid", dtype="float64"), x, seed=seed).assert_ok()
'''


def run(args, env=None, **kwargs):
    full_env = {**os.environ, **(env or {})}
    full_env.pop(recorder.CLI_ENV, None)
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=900, **kwargs)


def test_cli_passes_on_one_layer(tmp_path):
    out = run([sys.executable, "-m", "parity", "--layer", "Activation", "--json", str(tmp_path / "r.json")])
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("Activation ")]
    assert table and all(line.rstrip().endswith("PASS") for line in table)
    assert {"float32", "float64"} <= {line.split()[3] for line in table}  # the dtype column: both dtypes ran
    assert re.search(r"collected [1-9]\d* parity tests", out.stdout)
    assert "parity: PASS" in out.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["passed"] is True and doc["exit_code"] == 0 and doc["collected"] >= 1
    rows = [r for r in doc["rows"] if r["layer"] == "Activation"]
    assert rows and all(r["passed"] and r["max_rel"] <= r["tolerance"] and "fwd" in r["checks"] for r in rows)


def test_cli_reports_a_failure_with_its_reproduction(tmp_path):
    tests = tmp_path / "cases"
    tests.mkdir()
    (tests / "test_cases.py").write_text(BROKEN)
    out = run([sys.executable, "-m", "parity", "--tests", str(tests), "--json", str(tmp_path / "r.json")])
    assert out.returncode == 1, out.stdout[-4000:] + out.stderr[-4000:]
    lines = out.stdout.splitlines()
    broken = [line for line in lines if line.startswith("OffByAPermille ")]
    correct = [line for line in lines if line.startswith("Activation ")]
    assert broken and any(line.rstrip().endswith("FAIL") for line in broken)
    assert correct and all(line.rstrip().endswith("PASS") for line in correct)
    assert "parity: FAIL" in out.stdout
    assert re.search(r"reproduce: add @reproduce_failure\('[\d.]+', b'[^']+'\)", out.stdout)
    assert re.search(r"Falsifying example|Failing test case", out.stdout)

    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["passed"] is False and doc["exit_code"] == 1
    failed = [t for t in doc["tests"] if t["outcome"] == "failed"]
    assert [t["nodeid"].split("::")[-1] for t in failed] == ["test_broken_layer"]
    assert "reproduce_failure" in failed[0]["reproduction"]
    bad_rows = [r for r in doc["rows"] if not r["passed"]]
    assert bad_rows and all(r["layer"] == "OffByAPermille" for r in bad_rows)
    assert any(r["max_rel"] > r["tolerance"] for r in bad_rows)

    # the printed rerun command reproduces the failure on its own
    rerun = next(line for line in lines if line.strip().startswith("rerun:")).split("rerun:", 1)[1].strip()
    words = shlex.split(rerun)
    env = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=\S*", w))
    assert env["KERAS_BACKEND"] == "tensorflow" and env["HYPOTHESIS_PROFILE"]
    again = run([w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)], env=env)
    assert again.returncode == 1, again.stdout[-3000:]
    assert "1 failed" in again.stdout and "test_broken_layer" in again.stdout


def test_cli_names_missing_packages_in_one_line(monkeypatch, capsys):
    import importlib.util

    from parity import backend, cli

    real = importlib.util.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("keras", "jax") else real(name, *a))
    assert cli.main(["--backend", "jax"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["parity: missing packages: keras, jax; install them with: pip install 'tinynn[parity-jax]'"]
    assert cli.main(["--backend", "all"]) == 2
    assert "pip install 'tinynn[parity-all]'" in capsys.readouterr().err


@pytest.mark.backends
def test_backend_all_smoke(tmp_path):
    """Every Keras backend in its own process, one merged table with a column per backend, JSON and HTML
    (the -k expression also selects test_optimizer_steps_on_embedding_match_keras, a proven difference)."""
    out = run([sys.executable, "-m", "parity", "--backend", "all", "-k", "test_flatten_parity or test_embedding_parity",
               "--json", str(tmp_path / "all.json"), "--html", str(tmp_path / "all.html")])
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    header = next(line for line in out.stdout.splitlines() if line.startswith("layer "))
    backends = ["tensorflow", "jax", "torch"]
    assert header.split()[-3:] == backends
    doc = json.loads((tmp_path / "all.json").read_text())
    assert doc["backends"] == backends and doc["passed"] is True
    assert {"Flatten", "Embedding"} <= {r["layer"] for r in doc["rows"]}
    for row in doc["rows"]:
        assert set(row["cells"]) == set(backends), row
        results = [row["cells"][b]["result"] for b in backends]
        if row["test"].endswith("test_optimizer_steps_on_embedding_match_keras"):
            # a known backend difference, end to end: TensorFlow's IndexedSlices gradient (squared per id
            # occurrence by RMSprop) vs the dense gradient of JAX and torch
            assert results == ["PASS", "DIFF", "DIFF"], row
        else:
            assert results == ["PASS"] * 3, row
    assert {d["backend"] for d in doc["differences"]} == {"jax", "torch"}
    assert [doc["runs"][b]["backend"] for b in backends] == backends
    page = (tmp_path / "all.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table" in page and "Embedding" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # self-contained


def _doc(backend, abs_err, rel_err, passed):
    check = ["forward", abs_err, rel_err, 1e-10, "keras", None]
    row = {"layer": "Dense", "test": "parity/cases/t.py::test_d", "dtype": "float64", "kind": "layer", "examples": 1,
           "options": "", "max_abs": abs_err, "max_rel": rel_err, "tolerance": 1e-10, "passed": passed,
           "result": "PASS" if passed else "FAIL", "failure": None if passed else "Dense: forward"}
    return {"backend": backend, "rows": [row],
            "records": [["parity/cases/t.py::test_d[x]", "e1", 0, "Dense", "float64", "layer", "act='tanh'", [check]]]}


def test_merge_marks_proven_backend_differences():
    """A comparison the TF run passes by far and another backend fails: the two Kerases differ on that case
    by at least (abs_B - abs_TF) / scale_B, which beyond the tolerance is a DIFF; anything less stays a FAIL."""
    from parity import report

    merged = report.merge({"tensorflow": _doc("tensorflow", 1e-17, 1e-16, True),
                           "jax": _doc("jax", 1e-7, 1e-7, False),  # gap ≥ 1e-7 - 1e-17: proven
                           "torch": _doc("torch", 1.5e-10, 1.5e-10, False)})  # gap ≥ 1.5e-10 - 1e-16 > 1e-10
    cells = merged["rows"][0]["cells"]
    assert [cells[b]["result"] for b in ("tensorflow", "jax", "torch")] == ["PASS", "DIFF", "DIFF"]
    assert {d["backend"] for d in merged["differences"]} == {"jax", "torch"} and merged["passed"]
    close = report.merge({"tensorflow": _doc("tensorflow", 0.9e-10, 0.9e-10, True),
                          "torch": _doc("torch", 1.5e-10, 1.5e-10, False)})  # gap ≥ 0.6e-10 only: not proven
    assert close["rows"][0]["cells"]["torch"]["result"] == "FAIL" and not close["passed"]
    alone = report.merge({"jax": _doc("jax", 1e-7, 1e-7, False)})  # no TensorFlow run to compare with
    assert alone["rows"][0]["cells"]["jax"]["result"] == "FAIL"
    assert "DIFF" in report.format_merged_table(merged) and "<table" in report.to_html(merged)
    raised = _doc("jax", 0.0, 0.0, False)
    raised["records"][0][7] = [["keras error: TypeError: scan carry float64 vs float32", "inf", "inf", 0.0, "keras",
                                None]]
    kerr = report.merge({"tensorflow": _doc("tensorflow", 1e-17, 1e-16, True), "jax": raised})
    assert kerr["rows"][0]["cells"]["jax"]["result"] == "KERR" and kerr["differences"][0]["kind"] == "error"


def test_merge_proves_a_non_finite_keras_result():
    """tinynn matched the TensorFlow Keras on a comparison (finite error); on another backend the same comparison
    has a NaN error: Keras there returns NaN where TensorFlow's Keras is finite (e.g. the gradient of a normalized
    zero vector), a DIFF; a NaN error where the TensorFlow run did not pass either proves nothing."""
    from parity import report

    nan = _doc("jax", 0.0, 0.0, False)
    nan["records"][0][7] = [["forward", "nan", "nan", 1e-10, "keras", None]]
    merged = report.merge({"tensorflow": _doc("tensorflow", 1e-17, 1e-16, True), "jax": nan})
    assert merged["rows"][0]["cells"]["jax"]["result"] == "DIFF" and merged["passed"]
    assert merged["differences"][0]["kind"] == "nonfinite"
    unproven = report.merge({"tensorflow": _doc("tensorflow", 1.0, 1.0, False), "jax": nan})
    assert unproven["rows"][0]["cells"]["jax"]["result"] == "FAIL" and not unproven["passed"]
