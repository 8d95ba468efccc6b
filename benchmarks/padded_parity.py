"""Padded-data training parity at the seeds' sizes: tinynn against Keras on left-padded integer sequences.

256 reviews of 10-200 ids from a 10,000-word vocabulary, left-padded with 0 to length 200 (``pad_sequences``),
3 epochs of RMSprop (learning rate 1e-3), batch 128, ``shuffle=False``, from the same initial weights; the
largest relative error over every History entry and every final weight (error / max|Keras|, per array):

    python benchmarks/padded_parity.py [--models conv,lstm,bilstm,rnn] [--dtypes float32,float64]
                                       [--masks 0,1] [--seeds 0] [--nondeterministic]

Models (the seeds'): ``conv`` Embedding(10000,128) -> Conv1D(32,7,relu) -> MaxPooling1D(5) -> Conv1D(32,7,relu)
-> GlobalMaxPooling1D -> Dense(1, sigmoid); ``lstm`` Embedding(10000,32) -> LSTM(32) -> Dense;
``bilstm`` Embedding(10000,32) -> Bidirectional(LSTM(32)) -> Dense; ``rnn`` Embedding(10000,32) ->
SimpleRNN(32, return_sequences=True) x2 -> SimpleRNN(32) -> Dense. Keras runs with TensorFlow's op determinism
(its scatter of the Embedding's gradient rows is otherwise split over threads and varies from run to run);
``--nondeterministic`` leaves it off. ``OPENBLAS_CORETYPE=Haswell`` (or ``Nehalem`` for float64) reproduces
CPUs whose BLAS kernels round identical rows differently by position. The permanent tests are the reduced
versions in ``parity/cases/test_padded_training.py``; measured numbers are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N, LENGTH, VOCAB, BATCH = 256, 200, 10000, 128


def data(seed: int = 0):
    from tinynn.preprocessing.sequence import pad_sequences

    rng = np.random.default_rng(seed)
    reviews = [rng.integers(1, VOCAB, rng.integers(10, LENGTH + 1)).tolist() for _ in range(N)]
    return pad_sequences(reviews, maxlen=LENGTH), (rng.random((N, 1)) > 0.5) * 1.0


def model(name: str, dtype: str, mask_zero: bool):
    import tinynn as tn
    from tinynn import layers, optimizers

    tn.set_random_seed(0)
    emb = layers.Embedding(VOCAB, 128 if name == "conv" else 32, mask_zero=mask_zero, input_shape=(LENGTH,),
                           dtype=dtype)  # fmt: skip
    body = {
        "conv": lambda: [layers.Conv1D(32, 7, activation="relu", dtype=dtype), layers.MaxPooling1D(5, dtype=dtype),
                         layers.Conv1D(32, 7, activation="relu", dtype=dtype), layers.GlobalMaxPooling1D(dtype=dtype)],
        "lstm": lambda: [layers.LSTM(32, dtype=dtype)],
        "bilstm": lambda: [layers.Bidirectional(layers.LSTM(32, dtype=dtype), dtype=dtype)],
        "rnn": lambda: [layers.SimpleRNN(32, return_sequences=True, dtype=dtype),
                        layers.SimpleRNN(32, return_sequences=True, dtype=dtype), layers.SimpleRNN(32, dtype=dtype)],
    }[name]()  # fmt: skip
    m = tn.Sequential([emb, *body, layers.Dense(1, activation="sigmoid", dtype=dtype)])
    m.compile(optimizer=optimizers.RMSprop(learning_rate=1e-3), loss="binary_crossentropy", metrics=["acc"])
    return m


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="conv,lstm,bilstm,rnn")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--masks", default="0,1")
    parser.add_argument("--seeds", default="0", help="data seeds (each draws other reviews and labels)")
    parser.add_argument("--nondeterministic", action="store_true")
    args = parser.parse_args(argv)

    from parity.training import training_parity

    determinism = contextlib.nullcontext
    if not args.nondeterministic:
        from parity.cases.determinism import tf_op_determinism as determinism
    print(f"{N} left-padded sequences of length {LENGTH} (about half padding); "
          f"TF op determinism {'off' if args.nondeterministic else 'on'}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(native)')}")  # fmt: skip
    print("| model | dtype | mask_zero | data seed | worst relative error | where | tolerance | s |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        x, y = data(seed)
        for name in args.models.split(","):
            for dtype in args.dtypes.split(","):
                for mask in args.masks.split(","):
                    m = model(name, dtype, mask == "1")
                    start = time.perf_counter()
                    with determinism():
                        report = training_parity(m, x, y, epochs=3, batch_size=BATCH)
                    worst = max(report.checks, key=lambda c: c.max_rel)
                    print(f"| {name} | {dtype} | {mask == '1'} | {seed} | {worst.max_rel:.1e} | {worst.what} | "
                          f"{worst.tolerance:.0e} | {time.perf_counter() - start:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
