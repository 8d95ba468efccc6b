"""Variable-length sequences with Masking: JapaneseVowels speaker recognition with LSTM and GRU.

    python examples/vowels_masking.py [--epochs 40] [--compare-keras] [--quick]

Nine male speakers say the vowel /ae/; each utterance is 7 to 29 frames of 12 LPC cepstrum coefficients
(UCR/UEA archive, shipped inside sktime / aeon; 270 training and 370 test utterances). The utterances are
padded with zeros *after* their end to the longest length (29), and ``Masking(mask_value=0.0)`` marks the
padded frames, so the recurrent layer skips them: its state at the last real frame is what reaches the
classifier, whatever the utterance's length.

Networks: Masking -> LSTM(32) or GRU(32) -> Dense(9, softmax), RMSprop, sparse categorical cross-entropy.
A third run, GRU without Masking, reads the zero frames as data and shows what the mask is for. Reported:
test accuracy and seconds per epoch of each; curves in examples/out/vowels_masking.png.
"""

from __future__ import annotations

import sys

import numpy as np
from _helpers import cli, parse, parser, plot_curves, report, tinynn_test_scores, train
from datasets import japanese_vowels, pad_sequences

MAX_LEN, CHANNELS, SPEAKERS = 29, 12, 9
MODELS = ("lstm", "gru", "gru_nomask")


def builder(kind: str):
    def build(lib):
        L = lib.layers
        mask = [] if kind == "gru_nomask" else [L.Masking(mask_value=0.0)]
        rnn = L.LSTM(32) if kind == "lstm" else L.GRU(32)
        return lib.Sequential([L.Input(shape=(MAX_LEN, CHANNELS)), *mask, rnn, L.Dense(SPEAKERS, activation="softmax")])

    return build


def compile_kwargs(lib):
    return {"optimizer": lib.optimizers.RMSprop(learning_rate=3e-3), "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"]}


def main(argv=None) -> dict:
    p = parser(__doc__, epochs=40)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="which networks to train")
    args = parse(p, argv)
    (train_series, y_train), (test_series, y_test) = japanese_vowels()
    lengths = [len(s) for s in train_series + test_series]
    print(f"{len(train_series)} training and {len(test_series)} test utterances, {min(lengths)}-{max(lengths)} "
          f"frames of {CHANNELS} coefficients; padded after the end to {MAX_LEN} frames")
    x_train = pad_sequences(train_series, maxlen=MAX_LEN, dtype="float32", padding="post")
    x_test = pad_sequences(test_series, maxlen=MAX_LEN, dtype="float32", padding="post")
    order = np.random.default_rng(args.seed).permutation(len(x_train))  # the file is sorted by speaker
    x_train, y_train = x_train[order], y_train[order]
    if args.quick:
        x_test, y_test = x_test[:60], y_test[:60]
    runs = []
    for kind in args.models:
        print(f"\n=== {kind} ===")
        fit = {"x": x_train, "y": y_train, "batch_size": 32, "epochs": args.epochs, "validation_split": 0.2}
        runs += train(kind, builder(kind), compile_kwargs, fit, (x_test, y_test), args)
    report(runs, "accuracy")
    path = plot_curves(runs, ["loss", "accuracy"], args.out / "vowels_masking.png",
                       "JapaneseVowels: Masking + LSTM / GRU on variable-length utterances")
    return {"runs": runs, "test_accuracy": tinynn_test_scores(runs, "accuracy"), "plot": path}


if __name__ == "__main__":
    cli(main, sys.argv[1:])
