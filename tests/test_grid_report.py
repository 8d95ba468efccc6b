"""benchmarks/grid.py's grid and reporting (points, ratios, sgemm fraction, RESULTS.md section, plot) on made-up
measurements; no benchmark is run."""

from __future__ import annotations

import importlib
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def grid():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("grid")
    finally:
        sys.path.remove(str(BENCH))


def _row(case, w, t, b, ours, keras, torch, gemm=None):
    o = {"train": ours, "predict": ours / 3, "rss": 100.0}
    if gemm is not None:
        o.update(numpy_gemm_train=gemm, numpy_gemm_predict=gemm / 4)
    return {"case": case, "width": w, "length": t, "batch": b, "load": [1.0, 1.5], "tinynn": o,
            "keras": {"train": keras, "predict": keras / 3, "rss": 700.0},
            "torch": {"train": torch, "predict": torch / 2, "rss": 300.0}}


def test_the_grid_reaches_both_ends_of_every_axis(grid):
    pts = grid.points()
    assert {min(p[0] for p in pts), max(p[0] for p in pts)} == {32, 512}
    assert {min(p[1] for p in pts), max(p[1] for p in pts)} == {50, 1000}
    assert {min(p[2] for p in pts), max(p[2] for p in pts)} == {1, 256}
    assert grid.CENTRE in pts and len(pts) == len(set(pts))
    assert set(grid.CASES) == {"SimpleRNN", "LSTM", "GRU", "Bidirectional", "Conv1D", "Dense", "Conv2D"}
    assert all(len(p) == 3 for p in grid.points(quick=True))


def test_gemm_bound_points_are_the_ones_with_large_products(grid):
    assert grid.gemm_bound(grid.CASES["LSTM"], 256, 100, 64)
    assert not grid.gemm_bound(grid.CASES["LSTM"], 32, 100, 64)  # a 32-wide recurrent product
    assert grid.gemm_bound(grid.CASES["Dense"], 128, 100, 1)  # 100 rows of one sample's steps
    assert not grid.gemm_bound(grid.CASES["Dense"], 32, 100, 64)
    shapes = grid.CASES["GRU"].gemms(128, 100, 64, 64)
    assert (64, 128, 384, 100) in shapes["predict"]  # h U at each of the 100 steps
    assert len(shapes["train"]) > len(shapes["predict"])


def test_the_conv2d_case_sweeps_image_sides_with_the_length(grid):
    conv2d = grid.CASES["Conv2D"]
    assert [grid.image_side(t) for t in grid.LENGTHS] == [14, 20, 63]  # side² ≈ 4·length
    assert conv2d.shape(128, 100) == (20, 20, grid.IMAGE_CHANNELS)
    assert grid.CASES["LSTM"].shape(128, 100) == (100, grid.FEATURES)
    shapes = conv2d.gemms(128, 100, 64, grid.IMAGE_CHANNELS)
    assert shapes["predict"] == [(64 * 18 * 18, 9 * grid.IMAGE_CHANNELS, 128, 1)]  # im2col rows × (3·3·C) @ W
    assert shapes["train"] == [(64 * 18 * 18, 9 * grid.IMAGE_CHANNELS, 128, 1),  # + dW = colsᵀ @ dz
                               (9 * grid.IMAGE_CHANNELS, 64 * 18 * 18, 128, 1)]
    assert grid.gemm_bound(conv2d, 128, 100, 64) and not grid.gemm_bound(conv2d, 32, 100, 64)


def test_rows_give_ratios_against_the_faster_framework_and_fractions_at_gemm_bound_points(grid):
    rows = [_row("LSTM", 256, 100, 64, 50.0, 100.0, 40.0, gemm=30.0), _row("LSTM", 32, 100, 64, 5.0, 20.0, 10.0)]
    table = grid.table_rows(rows)
    assert table[0]["train ratio"] == f"{40.0 / 50.0:.2f}× (PyTorch)"
    assert table[1]["train ratio"] == f"{10.0 / 5.0:.2f}× (PyTorch)"
    assert table[0]["sgemm fraction train / predict"] == f"{30.0 / 50.0:.0%} / {7.5 / (50.0 / 3):.0%}"
    assert table[1]["sgemm fraction train / predict"] == ""  # not GEMM-bound
    assert table[0]["peak MiB tinynn / Keras / PyTorch"] == "100 / 700 / 300"
    summary = grid.summary(rows)
    assert "train: tinynn at least as fast as the faster framework on 1 of 2 points" in summary
    assert "sgemm fraction >= 80% on 0 of 1" in summary


def test_an_error_is_reported_in_its_row(grid):
    table = grid.table_rows([{"case": "GRU", "width": 32, "length": 50, "batch": 1, "tinynn": {"error": "boom"}}])
    assert table[0]["tinynn train ms"] == "error: boom"


def test_the_section_replaces_only_itself_and_sits_before_the_design_notes(grid):
    rows = [_row("Conv1D", 128, 100, 64, 10.0, 12.0, 11.0, gemm=8.0)]
    info = {"date": "2000-01-01", "cpu": "test cpu", "cores": 2}
    section = grid.section(rows, info, quick=False)
    assert section.startswith(grid.SECTION) and "2000-01-01 on test cpu (2 cores)" in section
    assert "| Conv1D | 128 | 100 | 64 |" in section
    notes = "## Kernel design measurements\n\n| a | b |\n"
    text = grid.replace_section("# Benchmark results\n\n## Models\n\n- M1\n\n" + notes, section)
    assert text.index(grid.SECTION) < text.index("## Kernel design measurements") and text.endswith(notes)
    again = grid.replace_section(text, section.replace("2000-01-01", "2001-01-01"))
    assert again.count(grid.SECTION) == 1 and "2001-01-01" in again and "2000-01-01" not in again
    assert again.endswith(notes) and "## Models\n\n- M1" in again


def test_run_py_keeps_the_grid_section(grid, tmp_path):
    import run

    section = grid.section([_row("Dense", 64, 100, 64, 1.0, 2.0, 3.0)], {"date": "d", "cpu": "c", "cores": 2}, False)
    (tmp_path / "RESULTS.md").write_text("# old\n\n" + section + "\n## Kernel design measurements\n\nnotes\n")
    ours = {"train": 1.0, "predict": 0.5, "first_train": 5.0, "compile_ms": 10.0, "rss": 100.0,
            "cold_start_warm_cache": 0.8, "cold_start_empty_cache": 2.0,
            "compile_profile": {"families": {"recurrent": 4.0, "blas": 1.0}, "specialisations": {"recurrent": 8},
                                "total": 5.0}}
    info = {"date": "2000-01-01", "cpu": "test cpu", "cores": 2, "python": "3.x", "versions": {"numpy": "0"}}
    text = run.write_results([{"model": "M3", "tinynn": ours}], info, tmp_path, repeats=3, load=[1.0])
    assert text.count(grid.SECTION) == 1 and "| Dense | 64 | 100 | 64 |" in text
    assert text.index(grid.SECTION) < text.index("## Kernel design measurements")
    assert "| M3 | 5.0 | 4.00 (8) | 1.00 |" in text  # compile time per kernel family


def test_plot_is_written(grid, tmp_path):
    pytest.importorskip("matplotlib")
    rows = [_row(case, w, 100, 64, w / 10, w / 5, w / 8) for case in ("LSTM", "Dense") for w in (32, 128, 512)]
    png = grid.plot(rows, tmp_path / "g.png", {"date": "2000-01-01", "cpu": "test cpu", "cores": 2})
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_compile_profile_charges_every_kernel_to_its_family(grid):
    """benchmarks/compile_profile.py counts the image kernels too: every numba function of a kernel module is charged
    to that module's family (conv2d, winograd, pooling2d just as conv, pooling, recurrent); a numba function from
    outside tinynn.kernels (numba's library functions) to none (its time stays with the kernel that pulled it in)."""
    import compile_profile
    import numba

    from tinynn.kernels import conv, conv2d, pooling, pooling2d, recurrent, winograd

    for module in (conv2d, winograd, pooling2d, conv, pooling, recurrent):
        family = module.__name__.rsplit(".", 1)[1]
        kernels = [v for v in vars(module).values() if isinstance(v, numba.core.dispatcher.Dispatcher)
                   and v.py_func.__module__ == module.__name__]
        assert kernels and {compile_profile._family(k) for k in kernels} == {family}
    assert compile_profile._family(numba.njit(lambda v: v + 1)) is None  # not a tinynn kernel module


def test_a_rerun_of_some_cases_replaces_their_rows_and_keeps_the_others(grid):
    old = [dict(_row("LSTM", 32, 100, 64, 10.0, 12.0, 11.0), date="2026-12-01"),
           dict(_row("LSTM", 64, 100, 64, 20.0, 22.0, 21.0), date="2026-12-01"),
           dict(_row("Conv2D", 32, 100, 64, 30.0, 20.0, 40.0), date="2026-12-01"),
           dict(_row("GRU", 32, 100, 64, 5.0, 9.0, 8.0), date="2026-12-01")]
    new = [dict(_row("Conv2D", 32, 100, 64, 15.0, 20.0, 40.0), date="2026-12-04")]
    rows = grid.merge_rows(old, new)
    assert [(r["case"], r["width"], r["tinynn"]["train"]) for r in rows] == [
        ("LSTM", 32, 10.0), ("LSTM", 64, 20.0), ("GRU", 32, 5.0), ("Conv2D", 32, 15.0)]  # in CASES order
    new_lstm = [dict(_row("LSTM", 32, 100, 64, 9.0, 12.0, 11.0), date="2026-12-04")]
    assert [r["width"] for r in grid.merge_rows(old, new_lstm) if r["case"] == "LSTM"] == [32]  # no mixed runs
    text = grid.section(rows, {"date": "2026-12-04", "cpu": "x", "cores": 2}, quick=False)
    assert "LSTM, GRU on 2026-12-01; Conv2D on 2026-12-04" in text
    assert "Measured 2026-12-04 on x" in grid.section(new, {"date": "2026-12-04", "cpu": "x", "cores": 2}, False)


def test_the_committed_record_is_the_results_section(grid):
    """benchmarks/grid.json holds every point of the RESULTS.md grid table, one row per point of the grid."""
    import json

    record = json.loads((BENCH / "grid.json").read_text())["rows"]
    assert {r["case"] for r in record} == set(grid.CASES)
    assert sorted((r["width"], r["length"], r["batch"]) for r in record if r["case"] == "LSTM") == sorted(grid.points())
    table = grid.markdown_table(grid.table_rows(record))
    results = (BENCH / "RESULTS.md").read_text()
    assert table in results


def test_timed_calls_run_to_the_repeats_then_to_the_minimum_time(grid):
    """A point's timed calls: at least ``repeats``; more while they add up to under MIN_TIMED_S, up to MAX_CALLS;
    none past the budget (a slow call stops at 3, checked by _timed itself)."""
    more, short = grid._more_calls, grid.MIN_TIMED_S / 10
    assert more(6, 0.0, 7, 4.0) and more(6, 1.0, 7, 4.0)
    assert more(7, short, 7, 4.0) and more(grid.MAX_CALLS - 1, short, 7, 4.0)
    assert not more(grid.MAX_CALLS, short, 7, 4.0)
    assert not more(7, grid.MIN_TIMED_S, 7, 4.0)
    assert not more(2, 4.0, 7, 4.0)


def test_each_framework_keeps_its_fastest_round_and_the_frameworks_take_turns(grid, monkeypatch):
    """measure_point with rounds: the frameworks' processes alternate (tinynn, Keras, PyTorch twice, then again),
    and each framework keeps its fastest train step and its fastest predict over its processes; a failed process is
    skipped, and a framework whose processes all fail reports the error."""
    order, times = [], iter([5.0, 9.0, 7.0, 8.0, 4.0, 9.5, 6.0])

    def spawn(args):
        order.append(args[0] + ("/1" if len(args) == 7 else ""))
        if args[0] == "keras" and len(order) > 4:
            return {"error": "out of memory"}
        t = next(times)
        return {"train": t, "predict": 10 - t, "rss": 1.0, "numpy_gemm_train": t / 2}

    monkeypatch.setattr(grid, "_spawn", spawn)
    monkeypatch.setattr(grid, "has", lambda module: True)
    row = grid.measure_point("Dense", 32, 50, 1, 3, rounds=2)
    assert order == ["tinynn", "keras", "torch", "torch/1"] * 2
    assert (row["tinynn"]["train"], row["tinynn"]["predict"], row["tinynn"]["rounds"]) == (4.0, 5.0, 2)
    assert row["tinynn"]["numpy_gemm_train"] == 2.0
    assert (row["keras"]["train"], row["keras"]["predict"], row["keras"]["rounds"]) == (9.0, 1.0, 1)
    assert (row["torch"]["train"], row["torch"]["predict"], row["torch"]["rounds"]) == (6.0, 0.5, 4)
    assert grid.best_of([{"error": "a"}, {"error": "b"}]) == {"error": "a"}
