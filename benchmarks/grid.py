"""Scaling grid: width × length × batch for the layer families, tinynn vs Keras 3 (TensorFlow) vs PyTorch.

    python benchmarks/grid.py [--quick] [--cases LSTM,Conv1D] [--repeats 5] [--rounds 2] [--no-plot] [--out benchmarks]

Every point is one small model, trained with RMSprop on MSE, float32, its input (batch, length, features)::

    Input(length, features) -> LAYER -> head -> Dense(1)

where LAYER is the case (``CASES``: SimpleRNN, LSTM, GRU, Bidirectional(LSTM), Conv1D, Dense, Conv2D) at the
point's width (units / filters), and the head turns its output into one vector per sample (the recurrent layers
return their last output; Conv1D and Dense are followed by GlobalAveragePooling1D, Conv2D by
GlobalAveragePooling2D). Conv2D's input is an image of 16 channels whose side grows with the length (side² ≈
4·length: 14, 20, 63 pixels for lengths 50, 100, 1000, so that its largest point, like the others', is a train step
of a few hundred ms rather than seconds). The grid is sparse: a centre point
(width 128, length 100, batch 64) and each axis swept alone from it to both of its ends (widths 32-512, lengths
50-1000, batches 1-256). ``--quick`` runs three small points per case with fewer repeats (a smoke test).

Each framework runs every point in its own process (so each peak RSS is its own; tinynn never imports
TensorFlow), one framework after the other for the same point, so a row's numbers are seconds apart: train
step (``train_on_batch`` / a PyTorch step) and predict (``predict_on_batch`` / a no-grad forward), the median
of ``--repeats`` calls after warm-up, or of more while they add up to under ``MIN_TIMED_S`` (so that a
sub-millisecond call's median is taken over tens of calls, for every framework alike). PyTorch runs with its
default thread count and with one thread (its spinning thread pool suffers most when the cores are shared).
``--rounds`` (default 2) repeats this: the frameworks take turns, a process each per round, and each framework
keeps its fastest train step and its fastest predict over its processes (a slow spell of the shared machine
during one process then costs nobody a point). Ratios are (faster of Keras, PyTorch) ÷ tinynn: above 1 means
tinynn is faster.

*sgemm fraction*: the time numpy's own BLAS takes for the matrix products of the step (the same shapes, each
timed alone, the faster of one thread and numpy's default threads) divided by tinynn's time for the whole step —
the share of the machine's GEMM rate tinynn reaches. Reported at the GEMM-bound points (every product with at
least 64 rows, 64 columns and a summed axis of 64).

The load average is recorded before and after every point: on a shared machine it says how far to trust a
row. Results go to the "Scaling grid" section of benchmarks/RESULTS.md (the rest of the file is kept), the
plot of time against width to benchmarks/grid.png, the raw numbers to benchmarks/out/grid.json.

New layer families join by adding a :class:`Case` to ``CASES`` (a layer factory for tinynn/Keras, a PyTorch
twin, and the shapes of its products).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402 - also puts this checkout's tinynn first on sys.path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FEATURES = 64  # input features of every sequence case (Dense: its input width is the point's width)
CENTRE = (128, 100, 64)  # width, length, batch
WIDTHS = (32, 64, 128, 256, 512)
LENGTHS = (50, 100, 1000)
BATCHES = (1, 64, 256)
QUICK_POINTS = ((32, 50, 8), (128, 50, 32), (256, 20, 16))
SECTION = "## Scaling grid"
RECORD = HERE / "grid.json"  # every point's raw numbers, the source of the RESULTS.md section

#: A product of the step: (rows M, summed axis K, columns N, how many times).
Gemm = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class Case:
    """One layer family of the grid.

    ``layers(L, width)``: the layers after Input, with ``L`` tinynn.layers or keras.layers (same API);
    ``torch(width, features)``: a PyTorch module taking (batch, length, features);
    ``features(width)``: the input's last axis;
    ``gemms(width, length, batch, features)``: ``{"train": [...], "predict": [...]}`` of :data:`Gemm`;
    ``sample_shape(width, length)``: one sample's shape when it is not (length, features(width)) (images).
    """

    name: str
    description: str
    layers: Callable
    torch: Callable
    features: Callable
    gemms: Callable
    sample_shape: Callable | None = None

    def shape(self, width: int, length: int) -> tuple[int, ...]:
        """One input sample's shape at this point."""
        if self.sample_shape is not None:
            return self.sample_shape(width, length)
        return (length, self.features(width))


def _recurrent_gemms(gates: int, directions: int = 1):
    def gemms(w, T, B, F):
        G = gates * w
        forward = [(T * B, F, G, directions), (B, w, G, T * directions)]  # x W; h U at every step
        backward = [(F, T * B, G, directions), (w, T * B, G, directions), (B, G, w, T * directions)]  # δW, δU, δh
        return {"train": forward + backward, "predict": forward}

    return gemms


def _torch_recurrent(kind: str, bidirectional: bool = False):
    def build(w, F):
        from torch import nn

        cls = {"SimpleRNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}[kind]

        class Last(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = cls(F, w, batch_first=True, bidirectional=bidirectional)
                self.head = nn.Linear(w * (2 if bidirectional else 1), 1)

            def forward(self, x):
                out, state = self.rnn(x)
                if bidirectional:  # Keras: [forward's last output, backward's last (= the first step's)]
                    h_n = state[0] if isinstance(state, tuple) else state
                    return self.head(__import__("torch").cat([h_n[0], h_n[1]], dim=1))
                return self.head(out[:, -1])

        return Last()

    return build


def _torch_pooled(make_layer, channels_first: bool = False):
    def build(w, F):
        from torch import nn

        class Pooled(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer, self.head = make_layer(w, F), nn.Linear(w, 1)

            def forward(self, x):
                if channels_first:  # Conv1d takes (B, C, L)
                    return self.head(self.layer(x.transpose(1, 2)).relu().mean(dim=2))
                return self.head(self.layer(x).relu().mean(dim=1))

        return Pooled()

    return build


def _conv_gemms(w, T, B, F, K=5):
    Lo = T - K + 1
    return {"train": [(B * Lo, K * F, w, 1), (K * F, B * Lo, w, 1)], "predict": [(B * Lo, K * F, w, 1)]}


IMAGE_CHANNELS = 16  # input channels of the Conv2D case


def image_side(length: int) -> int:
    """The Conv2D case's square image side for a grid length: side² ≈ 4·length (50 → 14, 100 → 20, 1000 → 63), so
    the length axis sweeps the image's pixels over the same 20× range, up to sides a convnet's first layers see."""
    return int(round((4 * length) ** 0.5))


def _conv2d_gemms(w, T, B, F, K=3):
    side = image_side(T) - K + 1
    rows = B * side * side
    return {"train": [(rows, K * K * F, w, 1), (K * K * F, rows, w, 1)], "predict": [(rows, K * K * F, w, 1)]}


def _torch_conv2d(w, F):
    from torch import nn

    class Pooled2D(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(F, w, 3), nn.Linear(w, 1)

        def forward(self, x):  # (B, H, W, C) as the other frameworks take it; Conv2d wants (B, C, H, W)
            return self.head(self.conv(x.permute(0, 3, 1, 2)).relu().mean(dim=(2, 3)))

    return Pooled2D()


def _dense_gemms(w, T, B, F):
    return {"train": [(B * T, F, w, 1), (F, B * T, w, 1)], "predict": [(B * T, F, w, 1)]}


CASES: dict[str, Case] = {
    "SimpleRNN": Case("SimpleRNN", "SimpleRNN(w) → Dense(1)", lambda L, w: [L.SimpleRNN(w)],
                      _torch_recurrent("SimpleRNN"), lambda w: FEATURES, _recurrent_gemms(1)),
    "LSTM": Case("LSTM", "LSTM(w) → Dense(1)", lambda L, w: [L.LSTM(w)], _torch_recurrent("LSTM"),
                 lambda w: FEATURES, _recurrent_gemms(4)),
    "GRU": Case("GRU", "GRU(w) → Dense(1) (reset_after, Keras's default)", lambda L, w: [L.GRU(w)],
                _torch_recurrent("GRU"), lambda w: FEATURES, _recurrent_gemms(3)),
    "Bidirectional": Case("Bidirectional", "Bidirectional(LSTM(w)) → Dense(1)",
                          lambda L, w: [L.Bidirectional(L.LSTM(w))], _torch_recurrent("LSTM", bidirectional=True),
                          lambda w: FEATURES, _recurrent_gemms(4, directions=2)),
    "Conv1D": Case("Conv1D", "Conv1D(w, 5, relu) → GlobalAveragePooling1D → Dense(1)",
                   lambda L, w: [L.Conv1D(w, 5, activation="relu"), L.GlobalAveragePooling1D()],
                   _torch_pooled(lambda w, F: __import__("torch").nn.Conv1d(F, w, 5), channels_first=True),
                   lambda w: FEATURES, _conv_gemms),
    "Dense": Case("Dense", "Dense(w, relu) on every step of (length, w) → GlobalAveragePooling1D → Dense(1)",
                  lambda L, w: [L.Dense(w, activation="relu"), L.GlobalAveragePooling1D()],
                  _torch_pooled(lambda w, F: __import__("torch").nn.Linear(F, w)), lambda w: w, _dense_gemms),
    "Conv2D": Case("Conv2D", "Conv2D(w, 3, relu) on (side, side, 16) images, side² ≈ 4·length → "
                   "GlobalAveragePooling2D → Dense(1)",
                   lambda L, w: [L.Conv2D(w, 3, activation="relu"), L.GlobalAveragePooling2D()],
                   _torch_conv2d, lambda w: IMAGE_CHANNELS, _conv2d_gemms,
                   sample_shape=lambda w, T: (image_side(T), image_side(T), IMAGE_CHANNELS)),
}


def points(quick: bool = False) -> list[tuple[int, int, int]]:
    """The grid's (width, length, batch) points: the centre and each axis swept alone to both ends."""
    if quick:
        return list(QUICK_POINTS)
    w0, t0, b0 = CENTRE
    out = [(w, t0, b0) for w in WIDTHS] + [(w0, t, b0) for t in LENGTHS] + [(w0, t0, b) for b in BATCHES]
    return list(dict.fromkeys(out))


def gemm_bound(case: Case, width: int, length: int, batch: int) -> bool:
    """Every product of the training step has at least 64 rows, 64 columns and a summed axis of 64."""
    shapes = case.gemms(width, length, batch, case.features(width))
    return all(min(M, K, N) >= 64 for M, K, N, _ in shapes["train"])


# ----------------------------------------------------------------------------- workers (one process each)
def _data(case: Case, width: int, length: int, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *case.shape(width, length))).astype(np.float32)
    y = rng.normal(size=(batch, 1)).astype(np.float32)
    return x, y


#: the timed calls of a point go on until they add up to this many seconds (up to ``MAX_CALLS`` calls)
MIN_TIMED_S = 0.3
MAX_CALLS = 200


def _timed(train: Callable, predict: Callable, repeats: int, budget_s: float) -> dict:
    """First calls, then medians of ``repeats`` calls each, or of more while they take under ``MIN_TIMED_S`` in all
    (up to ``MAX_CALLS``); at least 3, fewer than ``repeats`` when a call is slow (``budget_s``)."""
    t0 = time.perf_counter()
    train()
    first_train = time.perf_counter() - t0
    predict()
    out = {"first_train": first_train * 1e3}
    for name, fn in (("train", train), ("predict", predict)):
        fn()  # warm-up
        times = []
        start = time.perf_counter()
        while len(times) < 3 or _more_calls(len(times), time.perf_counter() - start, repeats, budget_s):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = statistics.median(times)
        out[f"{name}_runs"] = len(times)
    return out


def _more_calls(calls: int, elapsed_s: float, repeats: int, budget_s: float) -> bool:
    """Whether :func:`_timed` times another call after ``calls`` calls that took ``elapsed_s`` seconds."""
    if elapsed_s >= budget_s:
        return False
    return calls < repeats or (elapsed_s < MIN_TIMED_S and calls < MAX_CALLS)


def numpy_gemm_ms(shapes: list[Gemm]) -> float:
    """The time numpy's BLAS needs for these products: each shape timed alone (median of a few calls, the faster
    of one thread and numpy's default threads), times its count."""
    import numpy as np

    from tinynn.kernels import cblas

    rng = np.random.default_rng(1)
    total = 0.0
    for M, K, N, count in shapes:
        a = rng.normal(size=(M, K)).astype(np.float32)
        b = rng.normal(size=(K, N)).astype(np.float32)
        out = np.empty((M, N), np.float32)
        reps = max(3, min(50, int(2e8 // max(M * K * N, 1))))
        best = float("inf")
        for single in (True, False):
            with cblas.single_threaded() if single else _nothing():
                np.matmul(a, b, out=out)
                times = []
                for _ in range(reps):
                    t = time.perf_counter()
                    np.matmul(a, b, out=out)
                    times.append(time.perf_counter() - t)
            best = min(best, statistics.median(times))
        total += best * count * 1e3
    return total


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def worker(framework: str, case_name: str, width: int, length: int, batch: int, repeats: int,
           threads: int = 0) -> dict:
    case = CASES[case_name]
    x, y = _data(case, width, length, batch)
    budget = 4.0
    if framework in ("tinynn", "keras"):
        if framework == "tinynn":
            import tinynn as tn

            L, seq = tn.layers, tn.Sequential
        else:
            import keras

            L, seq = keras.layers, keras.Sequential
        net = seq([L.Input(shape=x.shape[1:]), *case.layers(L, width), L.Dense(1)])
        net.compile(optimizer="rmsprop", loss="mse")
        result = _timed(lambda: net.train_on_batch(x, y), lambda: net.predict_on_batch(x), repeats, budget)
        if framework == "tinynn":
            assert "tensorflow" not in sys.modules
            shapes = case.gemms(width, length, batch, case.features(width))
            result["numpy_gemm_train"] = numpy_gemm_ms(shapes["train"])
            result["numpy_gemm_predict"] = numpy_gemm_ms(shapes["predict"])
    elif framework == "torch":
        import torch

        if threads:
            torch.set_num_threads(threads)
        net = case.torch(width, x.shape[-1])
        opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        loss_fn = torch.nn.MSELoss()

        def train():
            net.train()
            opt.zero_grad()
            loss = loss_fn(net(xt), yt)
            loss.backward()
            opt.step()

        def predict():
            net.eval()
            with torch.no_grad():
                return net(xt)

        result = _timed(train, predict, repeats, budget)
        result["threads"] = torch.get_num_threads()
    else:
        raise ValueError(f"unknown framework {framework!r}")
    result["rss"] = common.peak_rss_mib()
    return result


def _spawn(args: list[str]) -> dict:
    try:
        return common.run_worker("grid.py", ["--worker", *args])
    except common.WorkerError as err:
        return {"error": err.last_line[:200]}


def has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


FRAMEWORKS = ("tinynn", "keras", "torch")


def measure_point(case: str, width: int, length: int, batch: int, repeats: int,
                  frameworks: tuple[str, ...] = FRAMEWORKS, rounds: int = 1) -> dict:  # fmt: skip
    """Every framework on one point, one after the other, each in its own process; ``rounds`` times over (the
    frameworks take turns), each framework's best round kept (:func:`best_of`)."""
    args = [case, str(width), str(length), str(batch), str(repeats)]
    row: dict = {"case": case, "width": width, "length": length, "batch": batch, "load": [os.getloadavg()[0]]}
    runs: dict[str, list[dict]] = {}
    for _ in range(max(1, rounds)):
        runs.setdefault("tinynn", []).append(_spawn(["tinynn", *args]))
        if "keras" in frameworks and has("keras") and has("tensorflow"):
            runs.setdefault("keras", []).append(_spawn(["keras", *args]))
        if "torch" in frameworks and has("torch"):  # its default threads and one thread
            runs.setdefault("torch", []).extend([_spawn(["torch", *args]), _spawn(["torch", *args, "1"])])
    for framework, results in runs.items():
        row[framework] = best_of(results)
    row["load"].append(os.getloadavg()[0])
    return row


def best_of(results: list[dict]) -> dict:
    """One framework's runs of a point as one: the first run that did not fail, with each timing (train, predict,
    numpy's products) the fastest of all the runs that did not fail and ``rounds`` their count. Every framework
    gets the same treatment, so a slow spell of the shared machine during one process costs none of them a point."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0] if results else {"error": "no run"}
    best = dict(ok[0])
    for key in ("train", "predict", "numpy_gemm_train", "numpy_gemm_predict"):
        if key in best:
            best[key] = min(r[key] for r in ok if key in r)
    best["rounds"] = len(ok)
    return best


# ----------------------------------------------------------------------------- reporting
def _f(value) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def best_other(row: dict, key: str) -> tuple[float | None, str]:
    """(time, name) of the faster of Keras and PyTorch for ``key`` ('train' / 'predict')."""
    found = [(row[fw][key], name) for fw, name in (("keras", "Keras"), ("torch", "PyTorch"))
             if fw in row and key in row[fw]]
    return min(found) if found else (None, "")


def ratio(row: dict, key: str) -> float | None:
    ours = row.get("tinynn", {}).get(key)
    theirs, _ = best_other(row, key)
    return None if ours is None or theirs is None or ours == 0 else theirs / ours


def sgemm_fraction(row: dict, key: str) -> float | None:
    ours = row.get("tinynn", {})
    if key not in ours or f"numpy_gemm_{key}" not in ours:
        return None
    return ours[f"numpy_gemm_{key}"] / ours[key]


def table_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        o, k, t = r.get("tinynn", {}), r.get("keras", {}), r.get("torch", {})
        line = {"case": r["case"], "width": r["width"], "length": r["length"], "batch": r["batch"]}
        if "error" in o:
            line["tinynn train ms"] = "error: " + o["error"][:60]
            out.append(line)
            continue
        bound = r["case"] in CASES and gemm_bound(CASES[r["case"]], r["width"], r["length"], r["batch"])
        for key in ("train", "predict"):
            theirs, name = best_other(r, key)
            rt = ratio(r, key)
            line.update({
                f"tinynn {key} ms": _f(o.get(key)), f"Keras {key} ms": _f(k.get(key)),
                f"PyTorch {key} ms": _f(t.get(key)),
                f"{key} ratio": "" if rt is None else f"{rt:.2f}× ({name})",
            })
        fractions = [sgemm_fraction(r, key) for key in ("train", "predict")]
        line["sgemm fraction train / predict"] = (
            " / ".join("" if f is None else f"{f:.0%}" for f in fractions) if bound else "")
        line["peak MiB tinynn / Keras / PyTorch"] = " / ".join(
            _f(fw.get("rss")) for fw in (o, k, t))
        line["load"] = "–".join(f"{v:.1f}" for v in r.get("load", []))
        out.append(line)
    return out


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """One line per measure: how many points reach the targets (ratio >= 1, sgemm fraction >= 80%)."""
    lines = []
    for key in ("train", "predict"):
        rs = [ratio(r, key) for r in rows]
        rs = [x for x in rs if x is not None]
        if rs:
            lines.append(f"- {key}: tinynn at least as fast as the faster framework on {sum(x >= 1 for x in rs)} of "
                         f"{len(rs)} points (ratios {min(rs):.2f}×–{max(rs):.2f}×, "
                         f"median {statistics.median(rs):.2f}×)")
        fs = [sgemm_fraction(r, key) for r in rows
              if r["case"] in CASES and gemm_bound(CASES[r["case"]], r["width"], r["length"], r["batch"])]
        fs = [x for x in fs if x is not None]
        if fs:
            lines.append(f"- {key}, GEMM-bound points: sgemm fraction >= 80% on {sum(x >= 0.8 for x in fs)} of "
                         f"{len(fs)} (min {min(fs):.0%}, median {statistics.median(fs):.0%})")
    return "\n".join(lines)


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """The grid record after a run of some cases: the new rows replace every old row of their cases (so a rerun of
    one case never mixes two runs of it), the other cases keep their rows; in the order of ``CASES``."""
    rerun = {r["case"] for r in new}
    rows = [r for r in old if r["case"] not in rerun] + list(new)
    order = {name: i for i, name in enumerate(CASES)}
    return sorted(rows, key=lambda r: order.get(r["case"], len(order)))


def _when(rows: list[dict], info: dict) -> str:
    """'2026-12-04', or per date the cases measured then when the record merges several runs."""
    by_date: dict[str, list[str]] = {}
    for r in rows:
        cases = by_date.setdefault(r.get("date", info.get("date", "?")), [])
        if r["case"] not in cases:
            cases.append(r["case"])
    if len(by_date) <= 1:
        return next(iter(by_date), info.get("date", "?"))
    return "; ".join(f"{', '.join(cases)} on {date}" for date, cases in sorted(by_date.items()))


def section(rows: list[dict], info: dict, quick: bool) -> str:
    loads = [v for r in rows for v in r.get("load", [])]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "?"
    return "\n".join([
        SECTION,
        "",
        f"Measured {_when(rows, info)} on {info.get('cpu', '?')} ({info.get('cores', '?')} cores); load average "
        f"{load} during the runs (each row has its own){' (quick subset)' if quick else ''}. The record of every "
        "point is benchmarks/grid.json; `--cases` reruns those cases and keeps the others' rows. Regenerate with "
        "`python benchmarks/grid.py` "
        "(`make bench` runs it); the method is in its docstring. Each point: Input(length, features) → layer → "
        "head → Dense(1), batch as stated, float32, RMSprop, MSE; ratio = faster of Keras / PyTorch ÷ tinynn "
        "(above 1: tinynn is faster); sgemm fraction = numpy's BLAS time for the step's products ÷ tinynn's step "
        "(GEMM-bound points only). Plot: [grid.png](grid.png).",
        "",
        *[f"- **{c.name}**: {c.description}" for c in CASES.values() if any(r["case"] == c.name for r in rows)],
        "",
        summary(rows),
        "",
        markdown_table(table_rows(rows)),
        "",
    ])


def replace_section(text: str, new_section: str, heading: str = SECTION) -> str:
    """``text`` with its ``heading`` section (up to the next '## ' heading) replaced by ``new_section``; the
    section goes before the hand-written design notes when it was not there yet."""
    new_section = new_section.rstrip("\n") + "\n"
    if heading in text:
        start = text.index(heading)
        nxt = text.find("\n## ", start + len(heading))
        end = len(text) if nxt < 0 else nxt + 1
        return text[:start] + new_section + ("\n" if nxt >= 0 else "") + text[end:].lstrip("\n")
    notes = text.find("## Kernel design measurements")
    if notes < 0:
        return text.rstrip("\n") + "\n\n" + new_section
    return text[:notes] + new_section + "\n" + text[notes:]


def plot(rows: list[dict], path: pathlib.Path, info: dict) -> pathlib.Path | None:
    """Time against width (at the centre length and batch), one panel per case and measure, log-log."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return None
    cases = [c for c in CASES if any(r["case"] == c for r in rows)]
    if not cases:
        return None
    _, t0, b0 = CENTRE
    fig, axes = plt.subplots(2, len(cases), figsize=(3.2 * len(cases), 6.2), squeeze=False)
    for j, case in enumerate(cases):
        sweep = sorted((r for r in rows if r["case"] == case and r["length"] == t0 and r["batch"] == b0),
                       key=lambda r: r["width"])
        if len(sweep) < 2:  # the quick subset: whatever points there are
            sweep = sorted((r for r in rows if r["case"] == case), key=lambda r: r["width"])
        for i, key in enumerate(("train", "predict")):
            ax = axes[i][j]
            for fw, label, color in (("tinynn", "tinynn", "tab:blue"), ("keras", "Keras", "tab:orange"),
                                     ("torch", "PyTorch", "tab:red")):
                pts = [(r["width"], r[fw][key]) for r in sweep if key in r.get(fw, {})]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=label, color=color)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{case} {key}", fontsize=9)
            ax.set_xlabel("width (units / filters)", fontsize=8)
            if j == 0:
                ax.set_ylabel("ms per batch", fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"time vs width at length {t0}, batch {b0} — {info.get('date', '')}, {info.get('cpu', '')}, "
                 f"{info.get('cores', '?')} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        fw, case, w, t, b, reps = argv[1:7]
        threads = int(argv[7]) if len(argv) > 7 else 0
        print(json.dumps(worker(fw, case, int(w), int(t), int(b), int(reps), threads)))
        return 0
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="three small points per case, 3 repeats")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--rounds", type=int, default=2,
                   help="processes per framework and point, taking turns; each framework's fastest kept")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="tinynn always; keras, torch when named")
    p.add_argument("--points", default=None, help="explicit points 'w:T:B,w:T:B' instead of the grid")
    p.add_argument("--out", type=pathlib.Path, default=HERE, help="folder of RESULTS.md and grid.png")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--report", action="store_true",
                   help="measure nothing: rewrite the RESULTS.md section and the plot from the record (grid.json)")
    args = p.parse_args(argv)
    if args.report:
        record = json.loads((args.out / RECORD.name).read_text())
        return write_record_report(record["rows"], record["machine"], args.out, not args.no_plot)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; choose from {list(CASES)}")
    repeats = 3 if args.quick else args.repeats
    import run as run_module  # machine description, shared with the M1-M6 benchmark

    info, rows = run_module.machine(), []
    pts = points(args.quick) if args.points is None else [
        tuple(int(v) for v in p.split(":")) for p in args.points.split(",")]
    frameworks = tuple(f.strip() for f in args.frameworks.split(","))
    todo = [(c, *pt) for c in cases for pt in pts]
    for n, (case, w, t, b) in enumerate(todo, 1):
        t0 = time.perf_counter()
        rows.append(measure_point(case, w, t, b, repeats, frameworks, 1 if args.quick else args.rounds))
        r = rows[-1]
        print(f"[{n}/{len(todo)}] {case} w={w} T={t} B={b}: train {_f(r['tinynn'].get('train'))} ms "
              f"(ratio {_f(ratio(r, 'train'))}), predict {_f(r['tinynn'].get('predict'))} ms "
              f"(ratio {_f(ratio(r, 'predict'))}), load {r['load'][-1]:.1f}, {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    for r in rows:
        r["date"] = info.get("date", "?")
    raw = HERE / "out" / ("grid_quick.json" if args.quick else "grid.json")
    raw.parent.mkdir(exist_ok=True)
    raw.write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    is_record = not args.quick and args.points is None and frameworks == FRAMEWORKS  # every point, every framework
    if is_record:
        record = args.out / RECORD.name
        old_rows = json.loads(record.read_text())["rows"] if record.exists() else []
        rows = merge_rows(old_rows, rows)
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
        os.replace(tmp, record)
    if is_record:
        write_record_report(rows, info, args.out, not args.no_plot)
    else:
        print(section(rows, info, args.quick))
    return 1 if any("error" in r.get("tinynn", {}) for r in rows) else 0


def write_record_report(rows: list[dict], info: dict, out: pathlib.Path, with_plot: bool = True) -> int:
    """The grid section of ``out``/RESULTS.md (and ``out``/grid.png) from the record's rows."""
    text = section(rows, info, quick=False)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "RESULTS.md"
    old = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    results.write_text(replace_section(old, text), encoding="utf-8")
    if with_plot:
        plot(rows, out / "grid.png", info)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
