"""The image models of the seeds as Keras 2 legacy ``.h5`` files, against real Keras (Keras 3's legacy loader and
writer, and genuine Keras 2, ``tf_keras``):

* the ``catsordogs`` package's cats-vs-dogs convnet, trained and saved by Keras 2.13: ``tinynn.load_model`` reads
  it (h5py only) and classifies the package's two photos and scikit-image's chelsea, preprocessed as the package
  does (``examples/convnet_images.py``), with Keras's predictions for the same file and photos (float32, 1e-5
  relative);
* the seeds' convnets (seed 001's MNIST convnet, the book's cats-vs-dogs convnet the seed saves as
  ``cats_and_dogs_small_2.h5`` and loads back, seed 003's SeparableConv2D stack) both ways: Keras saves ``.h5`` →
  tinynn loads it (bit-identical weights, the compile config, predictions within 1e-5 of Keras's) and tinynn saves
  ``.h5`` → Keras loads it (bit-identical weights, exactly Keras's predictions); and the same with Keras 3's
  ``.keras`` archives;
* the 2-D Grad-CAM heat map of ``examples/look_inside.py`` on the catsordogs model against the same computation on
  Keras's gradients (:func:`parity.backend.gradients`: any Keras backend).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import warnings

import keras
import numpy as np
import pytest

import tinynn as tn
from parity import backend, recorder
from parity.harness import LayerReport, compare

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _example(name: str):
    """A module of examples/ (a source checkout only: the examples are not part of the wheel)."""
    if not (EXAMPLES / f"{name}.py").is_file():
        pytest.skip(f"examples/{name}.py is not here (an installed wheel has no examples)")
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    for shadow in ("datasets", "_helpers", "convnet_images", "text_sentiment", "look_inside", name):
        mod = sys.modules.get(shadow)
        if mod is not None and pathlib.Path(getattr(mod, "__file__", "") or "").parent != EXAMPLES:
            del sys.modules[shadow]
    return __import__(name)


def _catsordogs_model_path() -> pathlib.Path:
    """catsordogs's model.h5, found without importing the package (it imports cv2 and TensorFlow)."""
    spec = importlib.util.find_spec("catsordogs")
    if spec is None:
        pytest.skip("catsordogs is not installed (pip install --no-deps catsordogs)")
    return pathlib.Path(spec.origin).parent / "model.h5"


def _photos():
    for package in ("PIL", "skimage"):
        pytest.importorskip(package)
    return _example("convnet_images").photos()


def _load_tinynn(path, **kwargs):
    with warnings.catch_warnings():  # the file's L2 regularizers act only in training: dropped with a warning
        warnings.simplefilter("ignore", UserWarning)
        return tn.load_model(path, **kwargs)


def _keras_loaders():
    """(name, load_model) of every Keras that reads Keras 2 .h5 files here: Keras 3's legacy loader, and tf_keras
    (genuine Keras 2) on the TensorFlow backend when it is installed."""
    loaders = [("keras 3", lambda p: keras.models.load_model(p, compile=False))]
    if backend.current() == "tensorflow" and importlib.util.find_spec("tf_keras") is not None:
        import tf_keras

        loaders.append(("tf_keras (Keras 2)", lambda p: tf_keras.models.load_model(p, compile=False)))
    return loaders


def test_catsordogs_photos_classified_as_keras_does():
    path = _catsordogs_model_path()
    photos = _photos()
    images = _example("convnet_images")
    model = _load_tinynn(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "MaxPooling2D"] * 3 + [
        "Flatten", "Dense", "Dense"]  # fmt: skip
    assert type(model.optimizer).__name__ == "Adam"  # its training config came along
    ours = images.classify(model, photos)
    report = LayerReport("catsordogs model.h5 (Keras 2.13)", {"photos": ", ".join(photos)}, "float32")
    for name, load in _keras_loaders():
        theirs = images.classify(load(str(path)), photos)
        report.checks.append(compare(f"predictions vs {name}", list(ours.values()), list(theirs.values()), "float32"))
    recorder.note_report(report, "layer")
    report.assert_ok()
    assert [p >= 0.5 for p in ours.values()] == [False, True, False]  # kitten, dog, chelsea: as Keras decides


# --------------------------------------------------------------------------------------------- the seeds' convnets
def mnist_convnet(lib):
    """Seed 001's MNIST convnet (the book's listing 5.1 + 5.2)."""
    L = lib.layers
    return lib.Sequential([
        L.Input(shape=(28, 28, 1)),
        L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), activation="relu"),
        L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
    ])  # fmt: skip


def cats_and_dogs_convnet(lib):
    """The convnet seed 001 trains on cats vs dogs with augmentation and saves as cats_and_dogs_small_2.h5 (the
    book's listing 5.5)."""
    L = lib.layers
    return lib.Sequential([
        L.Input(shape=(150, 150, 3)),
        L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Conv2D(128, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
        L.Flatten(), L.Dropout(0.5), L.Dense(512, activation="relu"), L.Dense(1, activation="sigmoid"),
    ])  # fmt: skip


def separable_stack(lib):
    """Seed 003's SeparableConv2D stack (height, width, channels = 64, 64, 3; 10 classes)."""
    L = lib.layers
    return lib.Sequential([
        L.Input(shape=(64, 64, 3)),
        L.SeparableConv2D(32, 3, activation="relu"), L.SeparableConv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.SeparableConv2D(64, 3, activation="relu"), L.SeparableConv2D(128, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.SeparableConv2D(64, 3, activation="relu"), L.SeparableConv2D(128, 3, activation="relu"),
        L.GlobalAveragePooling2D(), L.Dense(32, activation="relu"), L.Dense(10, activation="softmax"),
    ])  # fmt: skip


SEED_MODELS = {"mnist_convnet": (mnist_convnet, "categorical_crossentropy"),
               "cats_and_dogs_convnet": (cats_and_dogs_convnet, "binary_crossentropy"),
               "separable_stack": (separable_stack, "categorical_crossentropy")}


def _keras_model(module, name: str):
    """The seed model in Keras (3 or 2), compiled as the seed compiles it, with random biases (its kernels keep
    Keras's initialisation, so the activations stay in range through the stack) and a batch of images."""
    build, loss = SEED_MODELS[name]
    model = build(module)
    rng = np.random.default_rng(len(name))
    model.set_weights([w if w.ndim > 1 else rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.compile(optimizer=module.optimizers.RMSprop(learning_rate=1e-4), loss=loss, metrics=["acc"])
    x = rng.random((3, *model.input_shape[1:])).astype("float32")  # pixels / 255, as the seeds feed them
    return model, x


def _same_weights(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b))  # fmt: skip


def _keras_module(which: str):
    if which == "keras":
        return keras
    if backend.current() != "tensorflow":
        pytest.skip("tf_keras (Keras 2) runs on TensorFlow only")
    return pytest.importorskip("tf_keras", reason="Keras 2 (pip install --no-deps tf-keras; `make test` does)")


@pytest.mark.parametrize("which, suffix", [("keras", ".h5"), ("tf_keras", ".h5"), ("keras", ".keras")])
@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_seed_convnet_file_round_trip(tmp_path, name, which, suffix, monkeypatch):
    """(and the same through Keras 3's own .keras archive). The MNIST and cats-vs-dogs convnets' predict runs their
    Winograd convolutions (32 channels and more in) and the max pooling after each in one pass
    (Conv2D.forward_into): counted."""
    from tinynn.kernels import winograd

    pairs, real = [], winograd.winograd_conv2d_max_pooled
    monkeypatch.setattr(winograd, "winograd_conv2d_max_pooled", lambda *a, **k: pairs.append(1) or real(*a, **k))
    module = _keras_module(which)
    km, x = _keras_model(module, name)
    ref = backend.numpy(km(x, training=False))
    km.save(tmp_path / f"keras{suffix}")  # Keras 3 warns that .h5 is legacy: that is the point here
    model = tn.load_model(tmp_path / f"keras{suffix}")
    assert [type(layer).__name__ for layer in model.layers] == [type(layer).__name__ for layer in km.layers]
    assert _same_weights(model.get_weights(), km.get_weights())
    assert type(model.optimizer).__name__ == "RMSprop" and model.get_compile_config()["metrics"] == ["acc"]
    report = LayerReport(f"{name} {suffix} ({module.__name__} -> tinynn -> {module.__name__})", {}, "float32")
    report.checks.append(compare(f"tinynn predict ({module.__name__} {suffix})", model.predict(x, verbose=0), ref,
                                 "float32"))
    recorder.note_report(report, "layer")
    report.assert_ok()
    assert len(pairs) == {"mnist_convnet": 1, "cats_and_dogs_convnet": 3, "separable_stack": 0}[name]

    model.save(tmp_path / f"tinynn{suffix}")
    back = module.models.load_model(tmp_path / f"tinynn{suffix}")
    assert _same_weights(back.get_weights(), km.get_weights())
    np.testing.assert_array_equal(backend.numpy(back(x, training=False)), ref)


# --------------------------------------------------------------------------------------------- Grad-CAM (2D)
@pytest.mark.parametrize("photo", ["Chelsea the cat (scikit-image)", "dog (catsordogs test2.jpeg)"])
def test_grad_cam_2d_matches_keras(photo):
    """look_inside's Grad-CAM on the catsordogs model (vjp of the predicted class's score w.r.t. the last Conv2D's
    output, channel weights = mean gradient, heat = relu(Σ_c weight · A) / max) against the same formula on the
    gradient Keras computes for the same file and photo."""
    path = _catsordogs_model_path()
    rgb = _photos()[photo]
    look_inside = _example("look_inside")
    images = _example("convnet_images")
    heat, y_ours = look_inside.catsordogs_grad_cam(_load_tinynn(path, compile=False), rgb)

    km = keras.models.load_model(str(path), compile=False)
    last = max(k for k, layer in enumerate(km.layers) if isinstance(layer, keras.layers.Conv2D))
    features = keras.Model(km.inputs, km.layers[last].output)
    x = images.catsordogs_preprocess(rgb)[None]
    A = backend.numpy(features(backend.tensor(x)))
    sign = 1.0 if float(backend.numpy(km(backend.tensor(x)))[0, 0]) >= 0.5 else -1.0  # predicted: dog y, cat 1 - y

    def score(a):
        h = a
        for layer in km.layers[last + 1:]:
            h = layer(h)
        return keras.ops.sum(h) * sign, h

    y, (g,), _ = backend.gradients(score, [backend.tensor(A)], [])
    g, y = backend.numpy(g), backend.numpy(y)
    alpha = g.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum(np.mean(A * alpha, axis=-1), 0.0)[0]
    cam /= cam.max()
    report = LayerReport("Grad-CAM 2D (examples/look_inside.py)", {"model": "catsordogs model.h5", "photo": photo},
                         "float32")
    report.checks.append(compare("score", [y_ours], [y[0, 0]], "float32"))
    report.checks.append(compare("heat map", heat, cam, "float32"))
    recorder.note_report(report, "layer")
    report.assert_ok()
