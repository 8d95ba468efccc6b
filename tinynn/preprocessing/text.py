"""Text to integer ids: Keras 2's ``Tokenizer``, ``text_to_word_sequence``, ``one_hot``, ``hashing_trick``.

``from tinynn.preprocessing.text import Tokenizer`` replaces ``from keras.preprocessing.text import Tokenizer``.
The semantics are Keras 2's (kept in Keras 3.15 as ``keras.src.legacy.preprocessing.text``), which the
tests compute in the same run:

- a text becomes words by lower-casing, replacing every character of ``filters`` by ``split`` and splitting
  on ``split`` (empty pieces dropped); with ``char_level=True`` every character is a token (no filtering);
  a text given as a list is already a list of tokens;
- ``word_index`` numbers the words by decreasing count, ties in order of first appearance, from 1 (0 is
  reserved for padding); an ``oov_token`` takes index 1 and shifts the others by one;
- ``num_words`` keeps only ids ``i < num_words`` when converting (so ``num_words=1000`` keeps ids 1..999);
  ``word_index`` itself always holds every word seen;
- ``texts_to_matrix`` / ``sequences_to_matrix`` give an ``(N, num_words)`` float64 matrix ``x``; with
  ``c_ij`` the count of id ``j`` in sequence ``i`` (ids ``>= num_words`` skipped) and ``T_i`` its length::

      binary  x_ij = 1                       freq   x_ij = c_ij / T_i
      count   x_ij = c_ij                    tfidf  x_ij = (1 + ln c_ij) · ln(1 + D / (1 + d_j))

  where ``D = document_count`` and ``d_j = index_docs[j]``, the number of documents containing id ``j``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Iterator

import numpy as np

DEFAULT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
MODES = ("binary", "count", "tfidf", "freq")


def text_to_word_sequence(input_text: str, filters: str = DEFAULT_FILTERS, lower: bool = True,
                          split: str = " ") -> list[str]:
    """Words of ``input_text``: lower-cased, each character of ``filters`` replaced by ``split``, split on it."""
    if not isinstance(input_text, str):
        raise ValueError(f"text_to_word_sequence: expected a string, got {type(input_text).__name__}")
    if lower:
        input_text = input_text.lower()
    input_text = input_text.translate(str.maketrans({c: split for c in filters}))
    return [word for word in input_text.split(split) if word]


def hashing_trick(text: str, n: int, hash_function: Callable | str | None = None, filters: str = DEFAULT_FILTERS,
                  lower: bool = True, split: str = " ", analyzer: Callable | None = None) -> list[int]:
    """Each word ``w`` of ``text`` -> ``hash_function(w) % (n - 1) + 1``, an id in ``[1, n)``.

    ``hash_function`` is Python's ``hash`` by default (salted per process unless ``PYTHONHASHSEED`` is set,
    so ids change between runs, as in Keras) or ``"md5"`` for ids that are stable across runs.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
        raise ValueError(f"hashing_trick: n must be an integer >= 2 (ids are in [1, n)), got {n!r}")
    if hash_function is None:
        hash_function = hash
    elif hash_function == "md5":
        def hash_function(w: str) -> int:
            return int(hashlib.md5(w.encode()).hexdigest(), 16)
    elif not callable(hash_function):
        raise ValueError(f"hashing_trick: hash_function must be None, 'md5' or a callable, got {hash_function!r}")
    words = text_to_word_sequence(text, filters, lower, split) if analyzer is None else analyzer(text)
    return [hash_function(w) % (n - 1) + 1 for w in words]


def one_hot(input_text: str, n: int, filters: str = DEFAULT_FILTERS, lower: bool = True, split: str = " ",
            analyzer: Callable | None = None) -> list[int]:
    """Keras's ``one_hot``: despite the name, word ids in ``[1, n)`` from :func:`hashing_trick` with ``hash``."""
    return hashing_trick(input_text, n, hash_function=hash, filters=filters, lower=lower, split=split,
                         analyzer=analyzer)


def _texts(texts, who: str) -> list:
    if isinstance(texts, (str, bytes)):
        raise ValueError(f"Tokenizer.{who}: expected a list of texts, got a single string ({texts[:30]!r}); "
                         "wrap it in a list")
    try:
        return list(texts)
    except TypeError:
        raise ValueError(f"Tokenizer.{who}: expected a list of texts, got {type(texts).__name__}") from None


class Tokenizer:
    """Keras 2's text tokenizer: ``fit_on_texts`` builds ``word_index``; texts become id lists or matrices.

    >>> tokenizer = Tokenizer(num_words=1000)
    >>> tokenizer.fit_on_texts(['The cat sat on the mat.', 'The dog ate my homework.'])
    >>> tokenizer.word_index['the'], tokenizer.texts_to_sequences(['the cat'])
    (1, [[1, 2]])

    Attributes as Keras's: ``word_counts`` (word -> count, in order of first appearance), ``word_docs``
    (word -> number of texts containing it), ``index_docs`` (id -> the same), ``word_index``, ``index_word``,
    ``document_count``.
    """

    def __init__(self, num_words: int | None = None, filters: str = DEFAULT_FILTERS, lower: bool = True,
                 split: str = " ", char_level: bool = False, oov_token: str | None = None,
                 analyzer: Callable | None = None, **kwargs):
        if "nb_words" in kwargs:
            warnings.warn("Tokenizer: `nb_words` was renamed `num_words`", DeprecationWarning, stacklevel=2)
            num_words = kwargs.pop("nb_words")
        document_count = kwargs.pop("document_count", 0)
        if kwargs:
            raise ValueError(f"Tokenizer: unrecognized keyword arguments {sorted(kwargs)}")
        if num_words is not None and (not isinstance(num_words, (int, np.integer)) or isinstance(num_words, bool)
                                      or num_words < 0):
            raise ValueError(f"Tokenizer: num_words must be None or a non-negative integer, got {num_words!r}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"Tokenizer: split must be a non-empty string, got {split!r}")
        self.num_words = num_words
        self.filters = filters
        self.lower = lower
        self.split = split
        self.char_level = char_level
        self.oov_token = oov_token
        self.analyzer = analyzer
        self.document_count = document_count
        self.word_counts: dict[str, int] = collections.OrderedDict()
        self.word_docs: dict[str, int] = collections.defaultdict(int)
        self.index_docs: dict[int, int] = collections.defaultdict(int)
        self.word_index: dict[str, int] = {}
        self.index_word: dict[int, str] = {}

    # ------------------------------------------------------------------ fitting
    def _tokens(self, text, position: int, who: str) -> list:
        """The tokens of one text: words, characters (``char_level``) or the given list of tokens."""
        if isinstance(text, list):
            return [t.lower() for t in text] if self.lower else text
        if not isinstance(text, str):
            raise ValueError(f"Tokenizer.{who}: text {position} is a {type(text).__name__}, not a string "
                             "or a list of tokens")
        if self.char_level:
            return list(text.lower() if self.lower else text)
        if self.analyzer is not None:
            return self.analyzer(text)
        return text_to_word_sequence(text, self.filters, self.lower, self.split)

    def fit_on_texts(self, texts: Iterable) -> None:
        """Count words over ``texts`` (added to earlier fits) and renumber ``word_index`` by count."""
        for position, text in enumerate(_texts(texts, "fit_on_texts")):
            self.document_count += 1
            tokens = self._tokens(text, position, "fit_on_texts")
            for w in tokens:
                self.word_counts[w] = self.word_counts.get(w, 0) + 1
            for w in dict.fromkeys(tokens):  # each distinct word once, in order of appearance
                self.word_docs[w] += 1
        by_count = sorted(self.word_counts.items(), key=lambda item: item[1], reverse=True)  # stable: ties keep order
        vocabulary = ([] if self.oov_token is None else [self.oov_token]) + [w for w, _ in by_count]
        self.word_index = dict(zip(vocabulary, range(1, len(vocabulary) + 1)))
        self.index_word = {i: w for w, i in self.word_index.items()}
        for w, count in self.word_docs.items():
            self.index_docs[self.word_index[w]] = count

    def fit_on_sequences(self, sequences: Iterable) -> None:
        """Document frequencies of ids (``index_docs``) from id sequences, for ``tfidf`` without texts."""
        sequences = list(sequences)
        self.document_count += len(sequences)
        for seq in sequences:
            for i in set(seq):
                self.index_docs[i] += 1

    # ------------------------------------------------------------------ converting
    def texts_to_sequences(self, texts: Iterable) -> list[list[int]]:
        """Each text -> its list of ids (unknown words and ids >= num_words dropped, or -> the OOV id)."""
        return list(self.texts_to_sequences_generator(texts))

    def texts_to_sequences_generator(self, texts: Iterable) -> Iterator[list[int]]:
        oov_id = self.word_index.get(self.oov_token)
        for position, text in enumerate(_texts(texts, "texts_to_sequences")):
            ids = []
            for w in self._tokens(text, position, "texts_to_sequences"):
                i = self.word_index.get(w)
                if i is not None and not (self.num_words and i >= self.num_words):
                    ids.append(i)
                elif self.oov_token is not None:
                    ids.append(oov_id)
            yield ids

    def sequences_to_texts(self, sequences: Iterable) -> list[str]:
        """Each id list -> its words joined by spaces (unknown ids dropped, or -> the OOV token)."""
        return list(self.sequences_to_texts_generator(sequences))

    def sequences_to_texts_generator(self, sequences: Iterable) -> Iterator[str]:
        oov_id = self.word_index.get(self.oov_token)
        for seq in sequences:
            words = []
            for i in seq:
                w = self.index_word.get(i)
                if w is not None and not (self.num_words and i >= self.num_words):
                    words.append(w)
                elif self.oov_token is not None:
                    words.append(self.index_word[oov_id])
            yield " ".join(words)

    def texts_to_matrix(self, texts: Iterable, mode: str = "binary") -> np.ndarray:
        """``sequences_to_matrix(texts_to_sequences(texts), mode)``."""
        return self.sequences_to_matrix(self.texts_to_sequences(texts), mode=mode)

    def sequences_to_matrix(self, sequences: Iterable, mode: str = "binary") -> np.ndarray:
        """An ``(N, num_words)`` float64 matrix; ``mode`` one of binary, count, tfidf, freq (module docstring)."""
        if mode not in MODES:
            raise ValueError(f"Tokenizer: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if self.num_words:
            num_words = self.num_words
        elif self.word_index:
            num_words = len(self.word_index) + 1
        else:
            raise ValueError("Tokenizer: specify num_words, or fit on some text data first")
        if mode == "tfidf" and not self.document_count:
            raise ValueError("Tokenizer: fit the Tokenizer on some data before using mode 'tfidf'")
        sequences = list(sequences)
        x = np.zeros((len(sequences), num_words))
        for row, seq in enumerate(sequences):
            if not len(seq):
                continue
            counts = collections.Counter(j for j in seq if j < num_words)
            if any(j < 0 for j in counts):
                raise ValueError(f"Tokenizer: sequence {row} contains a negative id {min(counts)}")
            for j, c in counts.items():
                if mode == "binary":
                    x[row, j] = 1
                elif mode == "count":
                    x[row, j] = c
                elif mode == "freq":
                    x[row, j] = c / len(seq)
                else:
                    tf = 1 + np.log(c)
                    idf = np.log(1 + self.document_count / (1 + self.index_docs.get(j, 0)))
                    x[row, j] = tf * idf
        return x

    # ------------------------------------------------------------------ saving
    def get_config(self) -> dict:
        """Keras's config: the settings plus the vocabularies as JSON strings."""
        return {
            "num_words": self.num_words,
            "filters": self.filters,
            "lower": self.lower,
            "split": self.split,
            "char_level": self.char_level,
            "oov_token": self.oov_token,
            "document_count": self.document_count,
            "word_counts": json.dumps(self.word_counts),
            "word_docs": json.dumps(self.word_docs),
            "index_docs": json.dumps(self.index_docs),
            "index_word": json.dumps(self.index_word),
            "word_index": json.dumps(self.word_index),
        }

    def to_json(self, **kwargs) -> str:
        """The JSON Keras writes (``tokenizer_from_json`` of either library reads it back)."""
        return json.dumps({"class_name": "Tokenizer", "config": self.get_config()}, **kwargs)


def tokenizer_from_json(json_string: str) -> Tokenizer:
    """A :class:`Tokenizer` from :meth:`Tokenizer.to_json` (or Keras's) output. Only data is read."""
    try:
        config = dict(json.loads(json_string)["config"])
        vocab = {key: json.loads(config.pop(key))
                 for key in ("word_counts", "word_docs", "index_docs", "index_word", "word_index")}
    except (TypeError, KeyError, ValueError) as err:
        raise ValueError(f"tokenizer_from_json: not a Tokenizer JSON string ({err!r})") from err
    tokenizer = Tokenizer(**config)
    tokenizer.word_counts = vocab["word_counts"]
    tokenizer.word_docs = vocab["word_docs"]
    tokenizer.index_docs = {int(k): v for k, v in vocab["index_docs"].items()}
    tokenizer.index_word = {int(k): v for k, v in vocab["index_word"].items()}
    tokenizer.word_index = vocab["word_index"]
    return tokenizer


__all__ = ["Tokenizer", "hashing_trick", "one_hot", "text_to_word_sequence", "tokenizer_from_json"]
