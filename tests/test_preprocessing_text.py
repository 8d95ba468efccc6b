"""pad_sequences, Tokenizer, to_categorical and Embedding(input_length) on their own: behaviour Keras cannot
check (its failures, tinynn's errors) and the Keras 2 `input_length` contract. Equality with Keras on valid
inputs is in parity/cases/test_preprocessing_parity.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinynn as tn
from tinynn import layers, models
from tinynn.preprocessing import sequence, text
from tinynn.utils import to_categorical

# ------------------------------------------------------------------------------------------ pad_sequences


def test_pad_sequences_worked_example():
    seqs = [[1], [2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(sequence.pad_sequences(seqs), [[0, 0, 1], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(sequence.pad_sequences(seqs, padding="post", maxlen=2, truncating="post"),
                                  [[1, 0], [2, 3], [4, 5]])
    assert sequence.pad_sequences(seqs).dtype == np.int32
    np.testing.assert_array_equal(sequence.pad_sequences([["a"], ["b", "c"]], dtype=object, value="<pad>"),
                                  np.array([["<pad>", "a"], ["b", "c"]], dtype=object))


def test_pad_sequences_where_keras_fails():
    assert sequence.pad_sequences([[1, 2], [3]], maxlen=0).shape == (2, 0)  # Keras: broadcast error
    assert sequence.pad_sequences([]).shape == (0, 0)  # Keras: max() of an empty list
    assert sequence.pad_sequences([], maxlen=4).shape == (0, 4)


def test_pad_sequences_does_not_change_its_input():
    seqs = [np.array([3, 1, 2]), [7]]
    sequence.pad_sequences(seqs, maxlen=2)
    np.testing.assert_array_equal(seqs[0], [3, 1, 2])


@pytest.mark.parametrize("kwargs, message", [
    (dict(padding="middle"), "padding must be 'pre' or 'post', got 'middle'"),
    (dict(truncating="both"), "truncating must be 'pre' or 'post', got 'both'"),
    (dict(maxlen=-1), "maxlen must be None or a non-negative integer, got -1"),
    (dict(maxlen=2.5), "maxlen must be None or a non-negative integer, got 2.5"),
    (dict(value="x"), "a string value 'x' needs dtype=object"),
    (dict(dtype="not-a-dtype"), "not a NumPy dtype|data type"),
])
def test_pad_sequences_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sequence.pad_sequences([[1, 2], [3]], **kwargs)


@pytest.mark.parametrize("sequences, message", [
    ([[1, 2], 3], "item 1 is not a sequence: 3"),
    ([[1], None], "item 1 is not a sequence: None"),
    (["abc", [1]], "sequence 0 is a string"),
    ("abc", "must be a list of sequences, got str"),
    ((x for x in [[1]]), "must be a list of sequences, got generator"),
    ([[1, 2], [[1, 2]]], r"sequence 1 has items of shape \(2,\)"),
    ([[1, "a"]], "sequence 0 cannot be converted to dtype int32"),
    ([[[1, 2], [3]]], "sequence 0 is not a regular array"),
])
def test_pad_sequences_rejects_bad_sequences(sequences, message):
    with pytest.raises(ValueError, match=message):
        sequence.pad_sequences(sequences)


# ------------------------------------------------------------------------------------------ Tokenizer


def test_tokenizer_seed_001_sentences():
    tokenizer = text.Tokenizer(num_words=1000)
    samples = ["The cat sat on the mat.", "The dog ate my homework."]
    tokenizer.fit_on_texts(samples)
    assert tokenizer.word_index == {"the": 1, "cat": 2, "sat": 3, "on": 4, "mat": 5, "dog": 6, "ate": 7,
                                    "my": 8, "homework": 9}  # 'the' 3 times, the rest once, in reading order
    assert tokenizer.texts_to_sequences(samples) == [[1, 2, 3, 4, 1, 5], [1, 6, 7, 8, 9]]
    binary = tokenizer.texts_to_matrix(samples, mode="binary")
    assert binary.shape == (2, 1000) and binary.sum() == 5 + 5 and binary[0, 1] == binary[1, 9] == 1
    counts = tokenizer.texts_to_matrix(samples, mode="count")
    assert counts[0, 1] == 2 and counts[1, 1] == 1
    np.testing.assert_allclose(tokenizer.texts_to_matrix(samples, mode="freq")[0, 1], 2 / 6)
    # tfidf: 'the' is in both documents: (1 + ln 2) · ln(1 + 2/3); 'cat' in one: 1 · ln(1 + 2/2)
    tfidf = tokenizer.texts_to_matrix(samples, mode="tfidf")
    np.testing.assert_allclose(tfidf[0, 1], (1 + np.log(2)) * np.log(1 + 2 / 3), rtol=1e-15)
    np.testing.assert_allclose(tfidf[0, 2], np.log(2), rtol=1e-15)


def test_tokenizer_num_words_oov_and_json_round_trip():
    tokenizer = text.Tokenizer(num_words=3, oov_token="<OOV>")
    tokenizer.fit_on_texts(["b a b c b a"])
    assert tokenizer.word_index == {"<OOV>": 1, "b": 2, "a": 3, "c": 4}
    assert tokenizer.texts_to_sequences(["a b z"]) == [[1, 2, 1]]  # ids >= num_words and unknown -> OOV
    assert tokenizer.sequences_to_texts([[2, 3, 9]]) == ["b <OOV> <OOV>"]
    again = text.tokenizer_from_json(tokenizer.to_json())
    assert again.word_index == tokenizer.word_index and again.num_words == 3
    assert again.texts_to_sequences(["a b z"]) == [[1, 2, 1]]


@pytest.mark.parametrize("call, message", [
    (lambda t: t.fit_on_texts("one string"), "expected a list of texts, got a single string"),
    (lambda t: t.fit_on_texts(5), "expected a list of texts, got int"),
    (lambda t: t.fit_on_texts(["ok", 3]), "text 1 is a int, not a string"),
    (lambda t: t.texts_to_sequences("abc"), "got a single string"),
    (lambda t: t.texts_to_matrix(["a"], mode="onehot"), "unknown mode 'onehot'"),
    (lambda t: t.sequences_to_matrix([[1, -2]]), "sequence 0 contains a negative id -2"),
])
def test_tokenizer_rejects_bad_input(call, message):
    tokenizer = text.Tokenizer(num_words=10)
    tokenizer.fit_on_texts(["a b c"])
    with pytest.raises(ValueError, match=message):
        call(tokenizer)


def test_tokenizer_rejects_bad_settings():
    with pytest.raises(ValueError, match="num_words must be None or a non-negative integer, got -3"):
        text.Tokenizer(num_words=-3)
    with pytest.raises(ValueError, match="unrecognized keyword arguments"):
        text.Tokenizer(nmu_words=3)
    with pytest.raises(ValueError, match="fit on some text data first"):
        text.Tokenizer().texts_to_matrix(["a"])
    with pytest.raises(ValueError, match="not a Tokenizer JSON string"):
        text.tokenizer_from_json('{"config": {}}')
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        text.hashing_trick("a b", 1)


# ------------------------------------------------------------------------------------------ to_categorical


def test_to_categorical_examples_and_errors():
    np.testing.assert_array_equal(to_categorical([0, 2, 1]), np.eye(3)[[0, 2, 1]])
    assert to_categorical([[1], [0]], 4).shape == (2, 4)  # the trailing 1 is dropped, as in Keras
    assert to_categorical([1, 0]).dtype == np.float32 and to_categorical([1], dtype="int8").dtype == np.int8
    assert to_categorical([], num_classes=3).shape == (0, 3)
    for y, num_classes, message in (([0, 3], 3, r"class id 3 is outside \[0, 3\)"),
                                    ([-1, 1], None, "class id -1 is outside"),
                                    ([0.5], None, "non-integral values such as 0.5"),
                                    (["a"], None, "expected integer class ids"),
                                    ([1], 2.5, "num_classes must be a positive integer or None"),
                                    ([], None, "cannot infer num_classes from empty labels")):
        with pytest.raises(ValueError, match=message):
            to_categorical(y, num_classes)


def test_keras_utils_names_resolve():
    from tinynn.utils import array_to_img, img_to_array, load_img, pad_sequences, save_img

    assert pad_sequences is sequence.pad_sequences and callable(load_img) and callable(save_img)
    assert callable(img_to_array) and callable(array_to_img)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tn.utils.nope  # noqa: B018


# ------------------------------------------------------------------------------------------ input_length


def _glove_model(maxlen=20, max_words=1000, embedding_dim=100):
    model = models.Sequential()
    with pytest.warns(DeprecationWarning, match="input_length"):
        model.add(layers.Embedding(max_words, embedding_dim, input_length=maxlen))
    return model


def test_input_length_builds_the_first_layer_as_keras_2_did():
    model = _glove_model()
    assert model.layers[0].built and model.layers[0].input_shape == (None, 20)
    matrix = np.random.default_rng(0).normal(size=(1000, 100))
    model.layers[0].set_weights([matrix])  # works before any data is seen, as in the GloVe listing
    model.add(layers.Flatten())
    model.add(layers.Dense(32, activation="relu"))
    model.add(layers.Dense(1, activation="sigmoid"))
    lines = []
    model.summary(print_fn=lines.append)
    summary = "\n".join(lines)
    # the book's shapes: (None, 20, 100) 100,000 / (None, 2000) / (None, 32) 64,032 / (None, 1) 33
    for shape, params in (("(None, 20, 100)", "100,000"), ("(None, 2000)", "0"), ("(None, 32)", "64,032"),
                          ("(None, 1)", "33")):
        assert any(shape in line and line.rstrip(" │").endswith(params) for line in summary.splitlines()), shape
    np.testing.assert_array_equal(model.get_weights()[0], matrix.astype("float32"))


def test_input_length_rules():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        explicit = layers.Embedding(10, 4, input_length=7, input_shape=(9,))  # an explicit shape wins
        assert explicit._input_shape_arg == (9,)
        second = models.Sequential([layers.Input(shape=(5,)), layers.Embedding(10, 4, input_length=7)])
        assert second.layers[0].input_shape == (None, 5)  # only a first layer's shape counts, as in Keras 2
        for bad in (0, -2, 2.5, True, "7"):
            with pytest.raises(ValueError, match="input_length must be a positive integer"):
                layers.Embedding(10, 4, input_length=bad)
