"""The data utilities against Keras, which computes every reference answer in the test.

- ``pad_sequences`` vs ``keras.utils.pad_sequences`` on drawn ragged inputs (ids, feature vectors, strings
  with ``dtype=object``), every padding × truncating × maxlen (None, 0, 1, 2, 3, 5, 9): equal arrays, dtypes.
- ``to_categorical`` vs ``keras.utils.to_categorical``: equal values.
- ``Tokenizer`` vs Keras 2's ``keras.src.legacy.preprocessing.text.Tokenizer`` on seed 001's sentences and
  drawn texts: vocabularies, id sequences, the four matrix modes, JSON both ways.
- ``ImageDataGenerator.apply_transform`` with explicit parameters vs Keras 2's
  (``keras.src.legacy.preprocessing.image``): every fill mode and data format, each transform alone and all
  together, on non-square images; ``fit`` + ``standardize``; ``load_img`` / ``img_to_array`` / ``array_to_img``;
  ``flow_from_directory``'s folder walk and batches (no random transform, no shuffling).

Integer results must be equal; float results are compared with ``parity.harness.compare`` (the recorded
tolerance: 1e-5 relative in float32, 1e-10 in float64) and in fact agree to the last bit.
"""

from __future__ import annotations

import itertools
import json
import string

import keras
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from keras.src.legacy.preprocessing import image as keras_image
from keras.src.legacy.preprocessing import text as keras_text

from parity.harness import compare
from tinynn.preprocessing import image, text
from tinynn.preprocessing.sequence import pad_sequences
from tinynn.utils import to_categorical

PIL = pytest.importorskip("PIL.Image")

MAXLENS = (None, 0, 1, 2, 3, 5, 9)
SEED_001_SAMPLES = ["The cat sat on the mat.", "The dog ate my homework."]


def _assert_close(what: str, ours, ref, dtype: str = "float32") -> None:
    check = compare(what, ours, ref, dtype)
    assert check.passed, str(check)


# ------------------------------------------------------------------------------------------ pad_sequences

CONTAINERS = {"list": list, "tuple": tuple, "array": np.asarray}


@st.composite
def ragged(draw, kind: str, container: str):
    """1-6 sequences of 0-8 items, each a list, a tuple or an array (``container``; 'mixed': each its own, as
    users mix them); a feature sequence as a list or tuple of its rows, or one (steps, width) array (an empty one
always as a (0, width) array)."""
    n = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))
    kinds = [draw(st.sampled_from(sorted(CONTAINERS))) if container == "mixed" else container for _ in lengths]
    if kind == "strings":
        token = st.text(alphabet="abcxyz", min_size=0, max_size=4)
        items = [draw(st.lists(token, min_size=t, max_size=t)) for t in lengths]
        return [np.asarray(s, dtype=object) if k == "array" else CONTAINERS[k](s) for k, s in zip(kinds, items)]
    if kind == "features":
        width = draw(st.integers(1, 3))
        values = st.floats(-1e3, 1e3, allow_nan=False, width=32)
        rows = [np.asarray(draw(st.lists(st.lists(values, min_size=width, max_size=width), min_size=t, max_size=t)),
                           dtype="float64").reshape(t, width) for t in lengths]
        return [r if k == "array" or not len(r) else CONTAINERS[k](r) for k, r in zip(kinds, rows)]  # [] has no width
    ids = st.integers(-(2**31), 2**31 - 1) if kind == "int32" else st.integers(-1000, 1000)
    return [CONTAINERS[k](draw(st.lists(ids, min_size=t, max_size=t))) for k, t in zip(kinds, lengths)]


PAD_KINDS = {  # name -> (what the sequences hold, dtype, values to pad with)
    "int32 ids": ("int32", "int32", [0, -1, 7]),
    "ids as int64": ("ids", "int64", [0, 3, 1.5]),
    "ids as float32": ("ids", "float32", [0.0, -1.0, 0.25]),
    "feature vectors": ("features", "float64", [0.0, -2.5]),
    "strings": ("strings", object, ["<pad>", "", 0]),
}


@pytest.mark.parametrize("kind", sorted(PAD_KINDS))
@given(container=st.sampled_from(["list", "tuple", "array", "mixed"]), data=st.data())
def test_pad_sequences_equals_keras(kind, container, data):
    holds, dtype, values = PAD_KINDS[kind]
    drawn = data.draw(ragged(holds, container), label="sequences")
    empty = np.zeros((0, np.asarray(drawn[0]).shape[1])) if holds == "features" else []
    # every example reaches every option: each value, padding, truncating and maxlen, and the drawn sequences
    # with an empty one added in front (the drawn lengths may or may not include 0)
    for sequences, value, padding, truncating, maxlen in itertools.product(
            (drawn, [empty, *drawn]), values, ("pre", "post"), ("pre", "post"), MAXLENS):
        kwargs = dict(maxlen=maxlen, dtype=dtype, padding=padding, truncating=truncating, value=value)
        ours = pad_sequences(sequences, **kwargs)
        if maxlen == 0 and truncating == "pre" and any(len(s) > 1 for s in sequences):
            # Keras slices s[-0:] (the whole sequence) and cannot broadcast it into 0 columns;
            # tinynn returns the N empty rows that maxlen=0 asks for.
            with pytest.raises(ValueError, match="broadcast"):
                keras.utils.pad_sequences(sequences, **kwargs)
            first = next(s for s in sequences if len(s))
            assert ours.shape == (len(sequences), 0, *np.asarray(first).shape[1:])
            continue
        if maxlen == 0 and truncating == "post" and holds == "features" and \
                any(len(s) and not isinstance(s, np.ndarray) for s in sequences):
            # a feature sequence given as a list of rows: Keras's s[:0] is [], whose shape (0,) is not a row's;
            # tinynn returns the N empty rows that maxlen=0 asks for.
            with pytest.raises(ValueError, match="different from expected shape"):
                keras.utils.pad_sequences(sequences, **kwargs)
            assert ours.shape == (len(sequences), 0, np.asarray(drawn[0]).shape[1])
            continue
        ref = keras.utils.pad_sequences(sequences, **kwargs)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape, (kwargs, ours.shape, ref.shape)
        np.testing.assert_array_equal(ours, ref, err_msg=str(kwargs))


# ------------------------------------------------------------------------------------------ to_categorical

@given(shape=st.sampled_from([(), (1,), (7,), (5, 1), (3, 4), (2, 3, 1)]), extra=st.integers(0, 3),
       seed=st.integers(0, 2**16), dtype=st.sampled_from(["float32", "float64", "int32", "uint8"]))
@example(shape=(5, 1), extra=0, seed=0, dtype="float32")
@example(shape=(7,), extra=2, seed=1, dtype="float64")
def test_to_categorical_equals_keras(shape, extra, seed, dtype):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, shape)
    for num_classes in (None, int(np.max(y)) + 1 + extra):
        ref = keras.utils.to_categorical(y, num_classes=num_classes)
        ours = to_categorical(y, num_classes=num_classes, dtype=dtype)
        assert ours.dtype == np.dtype(dtype) and ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref)
        _assert_close("to_categorical", ours, ref, "float64")
        np.testing.assert_array_equal(to_categorical(y.astype("float32"), num_classes), ref)  # integral floats


# ------------------------------------------------------------------------------------------ Tokenizer

def _vocabularies(tok) -> dict:
    return {
        "word_counts": list(tok.word_counts.items()),  # order matters: it breaks ties in word_index
        "word_docs": dict(tok.word_docs),
        "index_docs": dict(tok.index_docs),
        "word_index": tok.word_index,
        "index_word": tok.index_word,
        "document_count": tok.document_count,
    }


def _config_values(json_string: str) -> dict:
    config = json.loads(json_string)["config"]
    return {k: json.loads(v) if k in ("word_counts", "word_docs", "index_docs", "index_word", "word_index")
            else v for k, v in config.items()}


def assert_tokenizers_agree(ours, ref, fit_texts, other_texts) -> None:
    assert _vocabularies(ours) == _vocabularies(ref)
    for texts in (fit_texts, other_texts):
        seqs = ours.texts_to_sequences(texts)
        assert seqs == ref.texts_to_sequences(texts)
        assert ours.sequences_to_texts(seqs) == ref.sequences_to_texts(seqs)
        for mode in text.MODES:
            if not (ref.num_words or ref.word_index):  # nothing to size the matrix with: both refuse
                with pytest.raises(ValueError, match="num_words"):
                    ours.texts_to_matrix(texts, mode=mode)
                with pytest.raises(ValueError, match="num_words"):
                    ref.texts_to_matrix(texts, mode=mode)
                continue
            ref_matrix = ref.texts_to_matrix(texts, mode=mode)
            ours_matrix = ours.texts_to_matrix(texts, mode=mode)
            np.testing.assert_array_equal(ours_matrix, ref_matrix, err_msg=mode)
            _assert_close(f"texts_to_matrix {mode}", ours_matrix, ref_matrix, "float64")
    assert _config_values(ours.to_json()) == _config_values(ref.to_json())
    # each library reads the other's JSON and converts texts the same way
    from_ours = keras_text.tokenizer_from_json(ours.to_json())
    from_ref = text.tokenizer_from_json(ref.to_json())
    assert from_ours.texts_to_sequences(other_texts) == from_ref.texts_to_sequences(other_texts)
    if ref.analyzer is None:  # a callable analyzer is not part of the JSON, in either library
        assert from_ref.texts_to_sequences(other_texts) == ref.texts_to_sequences(other_texts)


def test_tokenizer_equals_keras_on_seed_001_listing():
    ours, ref = text.Tokenizer(num_words=1000), keras_text.Tokenizer(num_words=1000)
    ours.fit_on_texts(SEED_001_SAMPLES)
    ref.fit_on_texts(SEED_001_SAMPLES)
    assert ours.word_index["the"] == 1 and ours.word_index["homework"] == 9  # the listing's comment
    assert ours.texts_to_matrix(SEED_001_SAMPLES, mode="binary").shape == (2, 1000)
    assert_tokenizers_agree(ours, ref, SEED_001_SAMPLES, ["The mat ate the cat!", "an unseen sentence"])


TOKENIZER_CONFIGS = {
    "defaults": {},
    "num_words=5": {"num_words": 5},
    "oov_token, num_words=4": {"num_words": 4, "oov_token": "<OOV>"},
    "char_level": {"char_level": True},
    "char_level, no lower, num_words=6": {"char_level": True, "lower": False, "num_words": 6},
    "split=',', no filters, no lower": {"split": ",", "filters": "", "lower": False},
    "num_words=1, oov_token": {"num_words": 1, "oov_token": "xx"},
    "analyzer=str.split": {"analyzer": str.split, "num_words": 7},
}
ALPHABET = string.ascii_letters[:8] + "AB .,!?-\t\n'\"éß" + "0123"
TEXTS = st.lists(st.text(alphabet=ALPHABET, max_size=30), min_size=1, max_size=6)


@pytest.mark.parametrize("name", sorted(TOKENIZER_CONFIGS))
@given(fit_texts=TEXTS, other_texts=TEXTS)
def test_tokenizer_equals_keras_on_drawn_texts(name, fit_texts, other_texts):
    kwargs = TOKENIZER_CONFIGS[name]
    ours, ref = text.Tokenizer(**kwargs), keras_text.Tokenizer(**kwargs)
    ours.fit_on_texts(fit_texts)
    ref.fit_on_texts(fit_texts)
    ours.fit_on_texts(other_texts[:1])  # a second fit adds to the counts and renumbers
    ref.fit_on_texts(other_texts[:1])
    assert_tokenizers_agree(ours, ref, fit_texts, other_texts)


@given(token_lists=st.lists(st.lists(st.sampled_from(["Aa", "b", "C", "aa", "dd"]), max_size=6), min_size=1,
                            max_size=5))
def test_tokenizer_on_token_lists_and_sequences_equals_keras(token_lists):
    ours, ref = text.Tokenizer(oov_token="?"), keras_text.Tokenizer(oov_token="?")
    ours.fit_on_texts(token_lists)
    ref.fit_on_texts(token_lists)
    assert_tokenizers_agree(ours, ref, token_lists, token_lists[::-1])
    sequences = [[1, 2, 2, 5], [], [3, 9, 3]]
    ours, ref = text.Tokenizer(num_words=8), keras_text.Tokenizer(num_words=8)
    ours.fit_on_sequences(sequences)
    ref.fit_on_sequences(sequences)
    assert dict(ours.index_docs) == dict(ref.index_docs) and ours.document_count == ref.document_count
    for mode in text.MODES:
        np.testing.assert_array_equal(ours.sequences_to_matrix(sequences, mode),
                                      ref.sequences_to_matrix(sequences, mode))


@given(sentence=st.text(alphabet=ALPHABET, max_size=40), n=st.integers(2, 50))
@example(sentence="The cat, the HAT!\tand ÉTÉ's 3 dogs.", n=50)
def test_word_functions_equal_keras(sentence, n):
    assert text.text_to_word_sequence(sentence) == keras_text.text_to_word_sequence(sentence)
    assert text.text_to_word_sequence(sentence, filters="", lower=False, split=".") == \
        keras_text.text_to_word_sequence(sentence, filters="", lower=False, split=".")
    assert text.one_hot(sentence, n) == keras_text.one_hot(sentence, n)  # Python's hash, same process
    assert text.hashing_trick(sentence, n, "md5") == keras_text.hashing_trick(sentence, n, "md5")


# ------------------------------------------------------------------------------------------ images: transforms

COMPONENTS = ("theta", "shift", "shear", "zoom", "flips", "channel_shift", "brightness", "all")


TRANSFORM_PARAMS = st.fixed_dictionaries({
    "theta": st.floats(-180, 180),
    "tx": st.floats(-1, 1),  # × the width: a shift of up to the whole image
    "ty": st.floats(-1, 1),  # × the height
    "shear": st.floats(-45, 45),
    "zx": st.floats(0.5, 1.6),
    "zy": st.floats(0.5, 1.6),
    "flip_horizontal": st.booleans(),
    "flip_vertical": st.booleans(),
    "channel_shift_intensity": st.floats(-50, 50),
    "brightness": st.floats(0.0, 2.0),
})
VALUE_RANGES = [(0.0, 255.0), (-3.0, 300.0), (0.0, 1.0)]


def _component(params: dict, name: str, data_format: str) -> dict:
    keys = {"theta": ["theta"], "shift": ["tx", "ty"], "shear": ["shear"], "zoom": ["zx", "zy"],
            "flips": ["flip_horizontal", "flip_vertical"], "channel_shift": ["channel_shift_intensity"],
            "brightness": ["brightness"]}
    if name == "all":
        chosen = dict(params)
    else:
        chosen = {k: params[k] for k in keys[name]}
    if data_format == "channels_first":  # Keras's brightness shift assumes channels last (its array_to_img)
        chosen.pop("brightness", None)
    return chosen


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
@given(h=st.integers(1, 9), w=st.integers(1, 9), channels=st.sampled_from([1, 3]),
       value_range=st.sampled_from(VALUE_RANGES), order=st.sampled_from([0, 1, 3]), cval=st.floats(-10, 10),
       params=TRANSFORM_PARAMS, seed=st.integers(0, 2**16))
@example(h=1, w=9, channels=3, value_range=VALUE_RANGES[1], order=3, cval=-2.5, seed=1,
         params=dict(theta=30.0, tx=0.5, ty=-0.25, shear=10.0, zx=0.7, zy=1.3, flip_horizontal=True,
                     flip_vertical=False, channel_shift_intensity=20.0, brightness=1.5))
@example(h=9, w=1, channels=1, value_range=VALUE_RANGES[2], order=0, cval=4.0, seed=2,
         params=dict(theta=-90.0, tx=-1.0, ty=1.0, shear=-45.0, zx=1.6, zy=0.5, flip_horizontal=False,
                     flip_vertical=True, channel_shift_intensity=-50.0, brightness=0.0))
@example(h=5, w=7, channels=3, value_range=VALUE_RANGES[0], order=1, cval=0.0, seed=3,
         params=dict(theta=180.0, tx=0.1, ty=0.1, shear=0.0, zx=1.0, zy=1.0, flip_horizontal=True,
                     flip_vertical=True, channel_shift_intensity=0.0, brightness=1.0))
def test_apply_transform_equals_keras(fill_mode, data_format, h, w, channels, value_range, order, cval, params,
                                      seed):
    x = np.random.default_rng(seed).uniform(*value_range, (h, w, channels)).astype("float32")
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    params = {**params, "tx": params["tx"] * w, "ty": params["ty"] * h}
    kwargs = dict(fill_mode=fill_mode, cval=cval, data_format=data_format, interpolation_order=order)
    ours_gen, ref_gen = image.ImageDataGenerator(**kwargs), keras_image.ImageDataGenerator(**kwargs)
    for name in COMPONENTS:
        p = _component(params, name, data_format)
        ref = ref_gen.apply_transform(x.copy(), p)
        ours = ours_gen.apply_transform(x, p)
        assert ours.shape == ref.shape and ours.dtype == np.float32, (name, ours.dtype, ref.dtype)
        _assert_close(f"apply_transform {name} ({fill_mode}, {data_format})", ours, ref, "float32")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_fit_and_standardize_equal_keras(data_format):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, (12, 5, 6, 3)).astype("float32")
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    settings = [
        dict(featurewise_center=True, featurewise_std_normalization=True, rescale=1 / 255.0),
        dict(samplewise_center=True, samplewise_std_normalization=True),
        dict(zca_whitening=True, zca_epsilon=1e-3, rescale=0.5),
        dict(rescale=1 / 255.0, preprocessing_function=lambda a: a + 3.0),
    ]
    for kwargs in settings:
        with pytest.warns(UserWarning) if "zca_whitening" in kwargs else _no_warning():
            ours = image.ImageDataGenerator(data_format=data_format, **kwargs)
        with pytest.warns(UserWarning) if "zca_whitening" in kwargs else _no_warning():
            ref = keras_image.ImageDataGenerator(data_format=data_format, **kwargs)
        ours.fit(x)
        ref.fit(x.copy())
        for attr in ("mean", "std", "zca_whitening_matrix"):
            if getattr(ref, attr) is not None:
                _assert_close(f"fit {attr}", getattr(ours, attr), getattr(ref, attr), "float32")
        before = x.copy()
        out = ours.standardize(x[3])
        np.testing.assert_array_equal(x, before)  # tinynn never changes its argument (Keras does, in place)
        _assert_close(f"standardize {sorted(kwargs)}", out, ref.standardize(x[3].copy()), "float32")


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------------------------------ images: files

def _write_images(folder, rng, count, size=(7, 9), mode="RGB", ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    for i in range(count):
        pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
        PIL.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(folder / f"img{i:02d}.{ext}")


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_image_files_equal_keras(tmp_path, interpolation):
    rng = np.random.default_rng(3)
    _write_images(tmp_path, rng, 1, size=(13, 10), mode="RGBA")
    _write_images(tmp_path / "jpeg", rng, 1, size=(9, 12), mode="RGB", ext="jpg")
    for path in (tmp_path / "img00.png", tmp_path / "jpeg" / "img00.jpg"):
        for color_mode in ("rgb", "rgba", "grayscale"):
            for target_size, keep in ((None, False), ((6, 8), False), ((6, 8), True), ((15, 5), True)):
                kw = dict(color_mode=color_mode, target_size=target_size, interpolation=interpolation,
                          keep_aspect_ratio=keep)
                ours = image.img_to_array(image.load_img(path, **kw))
                ref = keras.utils.img_to_array(keras.utils.load_img(path, **kw))
                np.testing.assert_array_equal(ours, ref, err_msg=str(kw))
                for data_format in ("channels_last", "channels_first"):
                    np.testing.assert_array_equal(image.img_to_array(image.load_img(path, **kw), data_format),
                                                  keras.utils.img_to_array(keras.utils.load_img(path, **kw),
                                                                           data_format))
    x = rng.normal(size=(4, 5, 3)).astype("float32") * 100
    for scale in (True, False):
        ours = np.asarray(image.array_to_img(x, scale=scale))
        np.testing.assert_array_equal(ours, np.asarray(keras.utils.array_to_img(x, scale=scale)))


@pytest.mark.parametrize("subset", [None, "training", "validation"])
@pytest.mark.parametrize("class_mode", ["categorical", "binary", "sparse", "input", None])
def test_flow_from_directory_equals_keras(tmp_path, class_mode, subset, capsys):
    rng = np.random.default_rng(5)
    for name, count in (("cats", 5), ("dogs", 4), ("zebras", 3)):
        _write_images(tmp_path / name, rng, count)
    _write_images(tmp_path / "dogs" / "nested", rng, 2)  # found recursively, as Keras does
    (tmp_path / "cats" / "notes.txt").write_text("not an image")  # skipped by extension
    kwargs = dict(target_size=(6, 5), class_mode=class_mode, batch_size=4, shuffle=False, subset=subset)
    ours = image.ImageDataGenerator(rescale=1 / 255.0, validation_split=0.4).flow_from_directory(tmp_path, **kwargs)
    ref = keras_image.ImageDataGenerator(rescale=1 / 255.0, validation_split=0.4).flow_from_directory(
        str(tmp_path), **kwargs)
    out = capsys.readouterr().out
    assert out.count(f"Found {ref.samples} images belonging to 3 classes.") == 2
    assert ours.filenames == ref.filenames and ours.class_indices == ref.class_indices
    np.testing.assert_array_equal(ours.classes, ref.classes)
    assert ours.samples == ref.samples and len(ours) == len(ref)
    for _ in range(len(ref) + 1):  # one pass and the first batch of the next
        a, b = next(ours), next(ref)
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        assert len(a) == len(b)
        for ours_part, ref_part in zip(a, b):
            assert ours_part.dtype == ref_part.dtype
            np.testing.assert_array_equal(ours_part, ref_part)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_flow_batches_equal_keras(data_format):
    """No random transform and no shuffling: both libraries must batch, rescale and label identically."""
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (11, 5, 4, 3)).astype("uint8")
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y, weights = rng.integers(0, 3, 11), rng.random(11)
    kwargs = dict(rescale=1 / 255.0, samplewise_center=True, data_format=data_format, validation_split=0.3)
    for subset in (None, "training", "validation"):
        flow_kwargs = dict(batch_size=4, shuffle=False, sample_weight=weights, subset=subset,
                           ignore_class_split=True)
        ours = image.ImageDataGenerator(**kwargs).flow(x, y, **flow_kwargs)
        ref = keras_image.ImageDataGenerator(**kwargs).flow(x, y, **flow_kwargs)
        assert len(ours) == len(ref)
        split = int(11 * 0.3)
        kept = {None: slice(None), "validation": slice(None, split), "training": slice(split, None)}[subset]
        for step in range(len(ref) + 1):
            (xo, yo, wo), (xr, yr, wr) = next(ours), next(ref)
            np.testing.assert_array_equal(xo, xr)
            np.testing.assert_array_equal(yo, yr)
            # Keras 2 does not cut sample_weight to the subset (it pairs the subset's images with the first
            # weights of the whole array); tinynn keeps each weight with its image
            if step < len(ref):
                np.testing.assert_array_equal(wo, weights[kept][4 * step : 4 * step + 4])
                np.testing.assert_array_equal(wr, weights[4 * step : 4 * step + len(wr)])


def test_grayscale_channels_first_folder_and_save_img_equal_keras(tmp_path, capsys):
    rng = np.random.default_rng(6)
    for name in ("a", "b"):
        _write_images(tmp_path / "data" / name, rng, 3, mode="L")
    kwargs = dict(target_size=(4, 6), color_mode="grayscale", class_mode="sparse", batch_size=6, shuffle=False)
    ours = image.ImageDataGenerator(data_format="channels_first").flow_from_directory(tmp_path / "data", **kwargs)
    ref = keras_image.ImageDataGenerator(data_format="channels_first").flow_from_directory(
        str(tmp_path / "data"), **kwargs)
    (xo, yo), (xr, yr) = next(ours), next(ref)
    assert xo.shape == (6, 1, 4, 6)
    np.testing.assert_array_equal(xo, xr)
    np.testing.assert_array_equal(yo, yr)
    x = rng.normal(size=(5, 7, 3)).astype("float32")
    for suffix in ("png", "jpg", "bmp"):
        image.save_img(tmp_path / f"ours.{suffix}", x)
        keras.utils.save_img(tmp_path / f"keras.{suffix}", x)
        np.testing.assert_array_equal(np.asarray(PIL.open(tmp_path / f"ours.{suffix}")),
                                      np.asarray(PIL.open(tmp_path / f"keras.{suffix}")))
