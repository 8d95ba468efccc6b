"""PyTorch twins of the benchmark models M1-M8, for the speed comparison only (optional: ``pip install torch``).

Same layer sizes, batch 128 (M7, M8: 32), float32, RMSprop, the same losses; channels-first where PyTorch wants it
(``Conv1d`` takes (B, C, L), ``Conv2d`` (B, C, H, W); the images are transposed once, outside the timed steps).
A SeparableConv2D is ``Conv2d(C, C, 3, groups=C, bias=False)`` followed by ``Conv2d(C, F, 1)``, as in Keras.
The weights are PyTorch's own initialisation (speed does not depend on them),
and the optimizer is ``torch.optim.RMSprop(lr=1e-3 (M7: 1e-4), alpha=0.9, eps=1e-7)`` (Keras's ρ and ε; PyTorch puts ε
outside the square root, which costs the same). A train step is ``zero_grad, forward, loss, backward, step``;
predict is a forward pass under ``torch.no_grad()`` in eval mode.

    python benchmarks/bench_torch.py M3 [repeats] [threads]   # prints the JSON that benchmarks/run.py reads

``threads`` sets ``torch.set_num_threads`` (default: PyTorch's own choice, one per core). On a machine whose
cores are shared with other jobs PyTorch's spinning thread pool can be several times slower with 2 threads
than with 1, so benchmarks/run.py measures both and reports the faster.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from common import first_calls_then_medians, peak_rss_mib

B = 128


def data(model: str):
    """The batch of bench_rnn / bench_conv / bench_dense / bench_images for ``model`` (the same shapes and dtypes)."""
    rng = np.random.default_rng(0)
    if model in ("M7", "M8"):
        import bench_images

        x, y = bench_images.data(model)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x, (y if model == "M7" else y.argmax(axis=1).astype(np.int64))
    if model == "M1":
        return rng.integers(1, 10000, size=(B, 500)).astype(np.int64), (rng.random((B, 1)) > 0.5).astype(np.float32)
    if model == "M2":
        return rng.normal(size=(B, 240, 14)).astype(np.float32), rng.normal(size=(B, 1)).astype(np.float32)
    if model == "M5":
        return rng.normal(size=(B, 64)).astype(np.float32), rng.integers(0, 10, B).astype(np.int64)
    return rng.integers(1, 10000, size=(B, 500)).astype(np.int64), (rng.random((B, 1)) > 0.5).astype(np.float32)


def build(model: str):
    """``(module, loss_fn)`` for ``model``."""
    import torch
    from torch import nn

    class Last(nn.Module):
        """The last output of a batch-first recurrent layer (what Keras returns without return_sequences)."""

        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    class Seq(nn.Module):
        def forward(self, x):
            return self.rnn(x)[0]

    class ChannelsFirst(nn.Module):
        def forward(self, x):
            return x.transpose(1, 2)

    class GlobalMax(nn.Module):
        def forward(self, x):
            return x.amax(dim=2)

    class BiLast(nn.Module):
        """Bidirectional(LSTM) without return_sequences: [h_forward(T-1), h_backward(0)]."""

        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            h_n = self.rnn(x)[1][0]  # (2, B, u)
            return torch.cat([h_n[0], h_n[1]], dim=1)

    if model == "M1":
        net = nn.Sequential(nn.Embedding(10000, 128), ChannelsFirst(), nn.Conv1d(128, 32, 7), nn.ReLU(),
                            nn.MaxPool1d(5), nn.Conv1d(32, 32, 7), nn.ReLU(), GlobalMax(), nn.Linear(32, 1))
        return net, nn.BCEWithLogitsLoss()
    if model == "M2":
        net = nn.Sequential(ChannelsFirst(), nn.Conv1d(14, 32, 5), nn.ReLU(), nn.MaxPool1d(3), nn.Conv1d(32, 32, 5),
                            nn.ReLU(), ChannelsFirst(), Last(nn.GRU(32, 32, batch_first=True)), nn.Linear(32, 1))
        return net, nn.L1Loss()
    if model == "M3":
        net = nn.Sequential(nn.Embedding(10000, 32), Last(nn.LSTM(32, 32, batch_first=True)), nn.Linear(32, 1))
        return net, nn.BCEWithLogitsLoss()
    if model == "M4":
        first = Seq()
        first.rnn = nn.RNN(32, 32, batch_first=True)
        net = nn.Sequential(nn.Embedding(10000, 32), first, Last(nn.RNN(32, 32, batch_first=True)), nn.Linear(32, 1))
        return net, nn.MSELoss()
    if model == "M5":
        net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
        return net, nn.CrossEntropyLoss()
    if model == "M6":
        net = nn.Sequential(nn.Embedding(10000, 32), BiLast(nn.LSTM(32, 32, batch_first=True, bidirectional=True)),
                            nn.Linear(64, 1))
        return net, nn.MSELoss()
    if model == "M7":
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(128, 128, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(128 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, 1),
        )  # fmt: skip
        return net, nn.BCEWithLogitsLoss()
    if model == "M8":
        def separable(c, f):
            return [nn.Conv2d(c, c, 3, groups=c, bias=False), nn.Conv2d(c, f, 1), nn.ReLU()]

        net = nn.Sequential(
            *separable(3, 32), *separable(32, 64), nn.MaxPool2d(2), *separable(64, 64), *separable(64, 128),
            nn.MaxPool2d(2), *separable(128, 64), *separable(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10),
        )  # fmt: skip
        return net, nn.CrossEntropyLoss()
    raise ValueError(f"unknown model {model!r}")


def steps(model: str):
    """``(train_step, predict)`` closures on the model's batch."""
    import torch

    net, loss_fn = build(model)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-4 if model == "M7" else 1e-3, alpha=0.9, eps=1e-7)
    x, y = (torch.from_numpy(a) for a in data(model))

    def train_step():
        net.train()
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss.detach().item()

    def predict():
        net.eval()
        with torch.no_grad():
            return net(x)

    return train_step, predict


def worker(model: str, repeats: int, threads: int | None = None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    train_step, predict = steps(model)
    n = max(repeats, 50) if model == "M5" else repeats
    timing = first_calls_then_medians(train_step, predict, n)
    return {**timing, "rss": peak_rss_mib(), "threads": torch.get_num_threads()}


def cold_start(model: str) -> dict:
    train_step, _ = steps(model)
    train_step()
    return {"t_done": time.time()}


if __name__ == "__main__":
    if sys.argv[1] == "--cold-start":
        print(json.dumps(cold_start(sys.argv[2])))
    else:
        args = [int(a) for a in sys.argv[2:4]]
        print(json.dumps(worker(sys.argv[1], *args)))
