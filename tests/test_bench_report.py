"""benchmarks/run.py's reporting (tables, RESULTS.md, chart) on made-up measurements; no benchmark is run."""

from __future__ import annotations

import importlib
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def run():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("run")
    finally:
        sys.path.remove(str(BENCH))


def _fake(model: str, train: float, keras_train: float) -> dict:
    ours = {"train": train, "predict": train / 3, "first_train": 5.0, "compile_ms": 1234.0, "rss": 200.0,
            "cold_start_warm_cache": 1.5, "cold_start_empty_cache": 9.0}
    theirs = {"train": keras_train, "predict": keras_train / 4, "first_train": 900.0, "rss": 800.0, "cold_start": 12.0}
    return {"model": model, "tinynn": ours, "keras": theirs}


def test_rows_give_ratios_and_format(run):
    speed, startup = run.rows_of([_fake("M3", 200.0, 500.0), {"model": "M4", "tinynn": {"error": "boom"}}])
    assert speed[0]["Keras/tinynn train"] == f"{500.0 / 200.0:.2f}×"
    assert speed[0]["tinynn train ms"] == "200"
    assert speed[1]["tinynn train ms"].startswith("error: boom")
    assert startup[0]["tinynn cold start s (warm / empty cache)"] == "1.5 / 9.0"
    assert len(startup) == 1


def test_small_values_keep_three_significant_figures(run):
    assert run._f(0.3621) == "0.362" and run._f(68.12) == "68.1" and run._f(605.7) == "606"
    assert run._f(None) == ""


def test_results_markdown_and_chart(run, tmp_path):
    pytest.importorskip("matplotlib")
    results = [_fake("M1", 600.0, 700.0), _fake("M5", 0.4, 2.0)]
    info = {"date": "2000-01-01", "cpu": "test cpu", "cores": 2, "python": "3.x", "versions": {"numpy": "0"}}
    text = run.write_results(results, info, tmp_path, repeats=7, load=[1.0, 2.0])
    assert (tmp_path / "RESULTS.md").read_text(encoding="utf-8") == text
    assert "2000-01-01 on test cpu (2 cores)" in text and "median of 7 calls" in text
    assert text.count("| M1 |") == 2 and "**M5**" in text
    png = run.plot(results, tmp_path / "r.png", info)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_model_is_rejected(run):
    with pytest.raises(SystemExit):
        run.main(["--models", "M9"])


def test_pytorch_columns_only_when_measured(run):
    with_torch = _fake("M2", 100.0, 50.0)
    with_torch["torch"] = {"train": 400.0, "predict": 20.0, "first_train": 30.0, "rss": 500.0, "cold_start": 4.0}
    speed, startup = run.rows_of([with_torch])
    assert speed[0]["PyTorch/tinynn train"] == f"{400.0 / 100.0:.2f}×" and startup[0]["PyTorch cold start s"] == "4"
    speed, _ = run.rows_of([_fake("M2", 100.0, 50.0)])
    assert not any(key.startswith("PyTorch") for key in speed[0])


def test_rewriting_results_keeps_the_design_notes(run, tmp_path):
    info = {"date": "2000-01-01", "cpu": "test cpu", "cores": 2, "python": "3.x", "versions": {"numpy": "0"}}
    notes = f"{run.KEPT_SECTION}\n\n| where | choice | measurement |\n|---|---|---|\n| a | b | 1 ms |\n"
    (tmp_path / "RESULTS.md").write_text("# old numbers\n\n" + notes, encoding="utf-8")
    text = run.write_results([_fake("M3", 200.0, 500.0)], info, tmp_path, repeats=3, load=[1.0])
    assert text.endswith(notes) and "# old numbers" not in text and text.count(run.KEPT_SECTION) == 1
    assert (tmp_path / "RESULTS.md").read_text(encoding="utf-8") == text
    assert run.KEPT_SECTION in (BENCH / "RESULTS.md").read_text(encoding="utf-8")  # the repository's own notes
