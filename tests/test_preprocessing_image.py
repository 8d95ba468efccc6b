"""ImageDataGenerator on its own: the transforms' geometry on known images (against the formulas of
tinynn/preprocessing/image/affine.py, derived independently of the code), rescale, batching and seeding,
the folder walk, labels following their files, validation subsets, training through model.fit, and the
errors. Equality with Keras's implementation is in parity/cases/test_preprocessing_parity.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import tinynn as tn
from tinynn import layers, models
from tinynn.preprocessing import image
from tinynn.preprocessing.image import ImageDataGenerator

PIL = pytest.importorskip("PIL.Image")


# ------------------------------------------------------------------------------------------ geometry


def _row_col_matrix(h, w, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0):
    """M' of the affine module's docstring, composed directly in (row, col) coordinates."""
    t, s = np.deg2rad(theta), np.deg2rad(shear)
    rotate = np.array([[np.cos(t), np.sin(t), 0], [-np.sin(t), np.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, ty], [0, 1, tx], [0, 0, 1]])
    shear_m = np.array([[np.cos(s), 0, 0], [-np.sin(s), 1, 0], [0, 0, 1]])
    zoom = np.diag([zy, zx, 1.0])
    o = np.array([w / 2 - 0.5, h / 2 - 0.5])
    to_centre, back = np.eye(3), np.eye(3)
    to_centre[:2, 2], back[:2, 2] = o, -o
    return to_centre @ rotate @ shift @ shear_m @ zoom @ back


@pytest.mark.parametrize("h, w", [(9, 9), (7, 11), (12, 5)])
@pytest.mark.parametrize("params", [
    dict(theta=90.0), dict(theta=-33.0), dict(tx=2.5, ty=-1.25), dict(shear=20.0), dict(zx=0.7, zy=1.3),
    dict(theta=17.0, tx=-1.5, ty=0.75, shear=-12.0, zx=1.2, zy=0.8),
])
def test_affine_geometry_on_a_linear_ramp(h, w, params):
    """Bilinear interpolation reproduces a linear image exactly, so every output pixel whose source lies
    inside the image must equal the ramp at the source point given by the docstring's M'."""
    a, b, c = 3.0, -2.0, 50.0
    rows, cols = np.mgrid[0:h, 0:w]
    ramp = (a * rows + b * cols + c).astype("float64")[:, :, None]
    gen = ImageDataGenerator(fill_mode="constant", cval=np.nan, dtype="float64")
    out = gen.apply_transform(ramp, params)[:, :, 0]
    m = _row_col_matrix(h, w, **params)
    src = np.einsum("ij,jrc->irc", m, np.stack([rows, cols, np.ones_like(rows)]).astype(float))
    inside = (src[0] > 1e-6) & (src[0] < h - 1 - 1e-6) & (src[1] > 1e-6) & (src[1] < w - 1 - 1e-6)
    outside = (src[0] < -1.01) | (src[0] > h + 0.01) | (src[1] < -1.01) | (src[1] > w + 0.01)
    assert inside.sum() >= 4  # the test sees real pixels
    np.testing.assert_allclose(out[inside], (a * src[0] + b * src[1] + c)[inside], rtol=1e-12, atol=1e-9)
    assert np.isnan(out[outside]).all()


def _dot_image(h, w, r, c, channels=1):
    x = np.zeros((h, w, channels), "float32")
    x[r, c] = 1.0
    return x


def test_shifts_rotation_and_flips_move_a_dot():
    gen = ImageDataGenerator(fill_mode="constant", cval=0.0, interpolation_order=0)
    x = _dot_image(6, 8, 3, 5)

    def dot(params):
        return [tuple(p) for p in np.argwhere(gen.apply_transform(x, params)[:, :, 0] == 1.0)]

    assert dot({"tx": 2}) == [(3, 3)]  # tx: left by tx columns (Keras's convention)
    assert dot({"ty": 2}) == [(1, 5)]  # ty: up by ty rows
    assert dot({"ty": -1, "tx": -2}) == [(4, 7)]
    assert dot({"flip_horizontal": True}) == [(3, 8 - 1 - 5)]
    assert dot({"flip_vertical": True}) == [(6 - 1 - 3, 5)]
    square = _dot_image(7, 7, 1, 5, channels=3)
    np.testing.assert_array_equal(gen.apply_transform(square, {"theta": 90}), np.rot90(square))
    np.testing.assert_array_equal(gen.apply_transform(square, {"theta": -90}), np.rot90(square, -1))


def test_channels_first_transforms_each_channel_like_channels_last():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (5, 6, 3)).astype("float32")
    params = dict(theta=25.0, tx=1.0, ty=-0.5, zx=0.9, zy=1.1, flip_horizontal=True, channel_shift_intensity=7.0,
                  brightness=0.8)
    last = ImageDataGenerator().apply_transform(x, params)
    first = ImageDataGenerator(data_format="channels_first").apply_transform(x.transpose(2, 0, 1), params)
    np.testing.assert_array_equal(first, last.transpose(2, 0, 1))


def test_apply_transform_never_changes_its_input_and_returns_fresh_arrays():
    x = np.arange(24, dtype="float32").reshape(4, 2, 3)
    before = x.copy()
    gen = ImageDataGenerator()
    for params in ({}, {"flip_horizontal": True}, {"theta": 10.0}, {"channel_shift_intensity": 2.0}):
        out = gen.apply_transform(x, params)
        assert not np.shares_memory(out, x)
        out += 1
    np.testing.assert_array_equal(x, before)


def test_channel_shift_and_brightness_formulas():
    x = np.array([[[10.0, 200.0, 30.0]], [[40.0, 50.0, 60.0]]], dtype="float32")  # (2, 1, 3)
    out = image.apply_channel_shift(x, 15.0, channel_axis=2)
    np.testing.assert_array_equal(out, np.clip(x + 15.0, 10.0, 200.0))
    bright = ImageDataGenerator().apply_transform(x, {"brightness": 0.5})
    np.testing.assert_array_equal(bright, np.trunc(x * np.float32(0.5)))  # Pillow blends with black, truncates
    np.testing.assert_array_equal(ImageDataGenerator().apply_transform(x, {"brightness": 2.0}),
                                  np.minimum(x * 2, 255))


def test_random_parameters_stay_in_their_ranges_and_follow_the_seed():
    gen = ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=3, shear_range=10,
                             zoom_range=0.2, horizontal_flip=True, channel_shift_range=5.0,
                             brightness_range=(0.5, 1.5))
    draws = [gen.get_random_transform((20, 30, 3), seed=s) for s in range(200)]
    assert all(abs(d["theta"]) <= 40 and abs(d["shear"]) <= 10 and abs(d["channel_shift_intensity"]) <= 5
               for d in draws)
    assert all(abs(d["ty"]) <= 0.2 * 30 and 0.8 <= d["zx"] <= 1.2 and 0.8 <= d["zy"] <= 1.2 for d in draws)
    assert {d["tx"] for d in draws} == {0, 1, 2, -1, -2}  # an int range draws whole pixels in (-3, 3)
    assert {d["flip_horizontal"] for d in draws} == {True, False} and not any(d["flip_vertical"] for d in draws)
    assert all(0.5 <= d["brightness"] <= 1.5 for d in draws)
    assert gen.get_random_transform((20, 30, 3), seed=7) == draws[7]
    assert ImageDataGenerator().get_random_transform((4, 4, 1)) == {
        "theta": 0, "tx": 0, "ty": 0, "shear": 0, "zx": 1, "zy": 1, "flip_horizontal": False,
        "flip_vertical": False, "channel_shift_intensity": None, "brightness": None}


# ------------------------------------------------------------------------------------------ flow (arrays)


def _constant_images(n, h=6, w=5, channels=3):
    """Image i is the constant i: transforms with fill_mode='nearest' keep it, so labels can be checked."""
    return np.repeat(np.arange(n, dtype="float32"), h * w * channels).reshape(n, h, w, channels)


def test_flow_rescales_batches_in_order_and_keeps_the_last_partial_batch():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (10, 4, 3, 1)).astype("uint8")
    it = ImageDataGenerator(rescale=1.0 / 255).flow(x, np.arange(10), batch_size=4, shuffle=False)
    assert len(it) == 3
    batches = [next(it) for _ in range(4)]
    assert [len(b[0]) for b in batches] == [4, 4, 2, 4]  # endless: the fourth batch starts the next pass
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches[:3]]),
                                  x.astype("float32") * np.float32(1.0 / 255))
    np.testing.assert_array_equal(batches[3][1], [0, 1, 2, 3])
    np.testing.assert_array_equal(it[2][1], [8, 9])  # Sequence access
    assert x.dtype == np.uint8  # the caller's array is untouched


def test_flow_labels_follow_their_images_through_shuffling_and_augmentation():
    x, y = _constant_images(11), np.arange(11)
    gen = ImageDataGenerator(rotation_range=30, width_shift_range=0.3, height_shift_range=0.3, zoom_range=0.3,
                             shear_range=20, horizontal_flip=True, vertical_flip=True, fill_mode="nearest")
    it = gen.flow(x, y, batch_size=4, seed=3)
    for _ in range(2):  # two passes: every sample exactly once per pass, in a new order each time
        seen = []
        for _ in range(len(it)):
            xb, yb = next(it)
            np.testing.assert_allclose(xb.reshape(len(xb), -1).mean(axis=1), yb, atol=1e-4)
            seen += list(yb)
        assert sorted(seen) == list(range(11))
    assert seen != list(range(11))


def test_flow_is_deterministic_given_the_seed():
    x = np.random.default_rng(2).uniform(0, 255, (9, 6, 6, 3)).astype("float32")
    gen = ImageDataGenerator(rotation_range=40, width_shift_range=0.2, zoom_range=0.2, horizontal_flip=True)

    def batches(**kwargs):
        it = gen.flow(x, np.arange(9), batch_size=4, **kwargs)
        return [next(it) for _ in range(5)]

    a, b, c = batches(seed=11), batches(seed=11), batches(seed=12)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    tn.set_random_seed(5)
    d = batches()
    tn.set_random_seed(5)
    e = batches()
    assert all(np.array_equal(xd, xe) for (xd, _), (xe, _) in zip(d, e))


def test_flow_validation_subsets_are_disjoint_and_complete():
    x, y = _constant_images(20), np.arange(20)
    gen = ImageDataGenerator(validation_split=0.25)
    train = gen.flow(x, y, batch_size=50, subset="training", ignore_class_split=True)
    val = gen.flow(x, y, batch_size=50, subset="validation", ignore_class_split=True)
    (_, ty), (_, vy) = next(train), next(val)
    assert sorted(vy) == list(range(5)) and sorted(ty) == list(range(5, 20))
    with pytest.raises(ValueError, match="different classes after the split"):
        gen.flow(x, y, subset="training")


def test_featurewise_normalization_after_fit():
    x = np.random.default_rng(4).normal(10, 3, (50, 4, 4, 3)).astype("float32")
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)
    gen.fit(x)
    out = next(gen.flow(x, batch_size=50, shuffle=False))
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, rtol=1e-4)
    with pytest.warns(UserWarning, match="fit\\(\\) was never called"):
        ImageDataGenerator(featurewise_center=True).standardize(x[0])


# ------------------------------------------------------------------------------------------ folders


def _image_folder(root, counts, size=(8, 6), ext="png", mode="RGB"):
    """Class folders whose images encode (class, index) in their pixels: value = 20 * class + index."""
    for k, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            value = 20 * k + i
            pixels = np.full((*size, 3), value, np.uint8)
            PIL.fromarray(pixels).convert(mode).save(root / name / f"{name}.{i}.{ext}")
    return root


def test_folder_walk_classes_and_labels_follow_the_files(tmp_path, capsys):
    root = _image_folder(tmp_path / "train", {"cats": 5, "dogs": 3})
    (root / "dogs" / "readme.md").write_text("skipped")
    it = ImageDataGenerator().flow_from_directory(root, target_size=(4, 3), batch_size=3, class_mode="binary",
                                                  seed=1)
    assert "Found 8 images belonging to 2 classes." in capsys.readouterr().out
    assert it.class_indices == {"cats": 0, "dogs": 1} and it.samples == 8 and it.num_classes == 2
    assert it.filenames[:2] == ["cats/cats.0.png", "cats/cats.1.png"] and it.filenames[-1] == "dogs/dogs.2.png"
    np.testing.assert_array_equal(it.classes, [0] * 5 + [1] * 3)
    seen = []
    for _ in range(len(it)):
        xb, yb = next(it)
        assert xb.shape[1:] == (4, 3, 3) and xb.dtype == np.float32
        values = xb[:, 0, 0, 0]
        np.testing.assert_array_equal(yb, values // 20)  # the label is the folder the pixels came from
        seen += list(values)
    assert sorted(seen) == [0, 1, 2, 3, 4, 20, 21, 22]


@pytest.mark.parametrize("class_mode", ["categorical", "sparse", "input", None])
@pytest.mark.parametrize("color_mode, channels", [("grayscale", 1), ("rgb", 3), ("rgba", 4)])
def test_class_and_color_modes(tmp_path, class_mode, color_mode, channels, capsys):
    root = _image_folder(tmp_path, {"a": 2, "b": 2, "c": 1}, ext="jpg" if channels == 3 else "png")
    it = ImageDataGenerator(rescale=0.5).flow_from_directory(root, target_size=(5, 7), color_mode=color_mode,
                                                             class_mode=class_mode, batch_size=5, shuffle=False)
    batch = next(it)
    x = batch if class_mode is None else batch[0]
    assert x.shape == (5, 5, 7, channels)
    if class_mode == "categorical":
        np.testing.assert_array_equal(batch[1], np.eye(3)[[0, 0, 1, 1, 2]])
    elif class_mode == "sparse":
        np.testing.assert_array_equal(batch[1], [0, 0, 1, 1, 2])
    elif class_mode == "input":
        np.testing.assert_array_equal(batch[1], x)
        assert not np.shares_memory(batch[1], x)


def test_directory_validation_subsets_are_disjoint(tmp_path, capsys):
    root = _image_folder(tmp_path, {"x": 10, "y": 5})
    gen = ImageDataGenerator(validation_split=0.2)
    train = gen.flow_from_directory(root, target_size=(3, 3), subset="training")
    val = gen.flow_from_directory(root, target_size=(3, 3), subset="validation")
    assert val.filenames == ["x/x.0.png", "x/x.1.png", "y/y.0.png"]  # the first ⌊0.2 n⌋ of each class
    assert not set(train.filenames) & set(val.filenames)
    assert len(train.filenames) + len(val.filenames) == 15


def test_explicit_classes_and_target_size_resizing(tmp_path, capsys):
    root = _image_folder(tmp_path, {"a": 1, "b": 2, "c": 1}, size=(10, 4))
    it = ImageDataGenerator().flow_from_directory(root, classes=["c", "a"], target_size=(20, 8),
                                                  class_mode="sparse", shuffle=False)
    assert it.class_indices == {"c": 0, "a": 1} and it.filenames == ["c/c.0.png", "a/a.0.png"]
    xb, yb = next(it)
    np.testing.assert_array_equal(yb, [0, 1])
    np.testing.assert_array_equal(xb[:, :, :, 0], np.full((2, 20, 8), [[[40]], [[0]]]))


def test_model_trains_from_folders_with_steps_per_epoch_and_one_pass_epochs(tmp_path, capsys):
    root = _image_folder(tmp_path, {"a": 6, "b": 6}, size=(6, 6))
    gen = ImageDataGenerator(rescale=1 / 255.0, rotation_range=10, horizontal_flip=True, validation_split=0.25)
    train = gen.flow_from_directory(root, target_size=(6, 6), batch_size=4, class_mode="binary", subset="training",
                                    seed=0)
    val = gen.flow_from_directory(root, target_size=(6, 6), batch_size=4, class_mode="binary", subset="validation",
                                  seed=0)
    tn.set_random_seed(0)
    model = models.Sequential([layers.Input(shape=(6, 6, 3)), layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    history = model.fit(train, steps_per_epoch=2, epochs=2, validation_data=val, validation_steps=1, verbose=0)
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}
    seen = train.total_batches_seen
    model.fit(train, epochs=1, verbose=0)  # no steps_per_epoch: one pass, len(train) batches
    assert train.total_batches_seen - seen == len(train) == 3
    with pytest.warns(DeprecationWarning, match="fit_generator"):
        model.fit_generator(train, steps_per_epoch=1, epochs=1, verbose=0)
    test = ImageDataGenerator(rescale=1 / 255.0).flow_from_directory(root, target_size=(6, 6), class_mode=None,
                                                                     shuffle=False, batch_size=5)
    assert model.predict(test).shape == (12, 1)  # a one-pass prediction from an x-only generator
    assert np.isfinite(model.evaluate(val, verbose=0)[0])


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kwargs, message", [
    (dict(fill_mode="mirror2"), "fill_mode must be one of constant, nearest, reflect, wrap, got 'mirror2'"),
    (dict(data_format="channels_middle"), "data_format must be 'channels_last' or 'channels_first'"),
    (dict(zoom_range=(0.5, 1.0, 2.0)), "zoom_range must be a number or a pair of numbers"),
    (dict(brightness_range=0.5), "brightness_range must be None or a pair of numbers"),
    (dict(validation_split=1.5), "validation_split must be strictly between 0 and 1"),
    (dict(rotation_range=-5), "rotation_range must be >= 0"),
    (dict(width_shift_range="wide"), "width_shift_range must be a non-negative number or a list of numbers"),
    (dict(interpolation_order=7), "interpolation_order must be an integer in 0..5"),
])
def test_generator_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ImageDataGenerator(**kwargs)


def test_flow_rejects_bad_arrays():
    gen = ImageDataGenerator()
    with pytest.raises(ValueError, match="x must have rank 4"):
        gen.flow(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="x has 3 images but y has 2 labels"):
        gen.flow(np.zeros((3, 4, 4, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        gen.flow(np.zeros((3, 4, 4, 1)), batch_size=0)
    with pytest.raises(ValueError, match="subset='training' needs ImageDataGenerator\\(validation_split=...\\)"):
        gen.flow(np.zeros((3, 4, 4, 1)), subset="training")
    with pytest.raises(ValueError, match="unknown transform parameters \\['rotation'\\]"):
        gen.apply_transform(np.zeros((4, 4, 1)), {"rotation": 3})
    with pytest.raises(ValueError, match="expected one image of rank 3"):
        gen.apply_transform(np.zeros((2, 4, 4, 1)), {})


def test_directory_errors_name_the_argument_or_the_file(tmp_path, capsys):
    gen = ImageDataGenerator()
    with pytest.raises(ValueError, match="has no class folders"):
        gen.flow_from_directory(tmp_path)
    with pytest.raises(ValueError, match="is not a directory"):
        gen.flow_from_directory(tmp_path / "missing")
    root = _image_folder(tmp_path / "data", {"a": 1})
    for kwargs, message in ((dict(class_mode="multiclass"), "class_mode must be one of"),
                            (dict(color_mode="cmyk"), "color_mode must be one of grayscale, rgb, rgba, got 'cmyk'"),
                            (dict(interpolation="cubic"), "interpolation must be one of"),
                            (dict(target_size=(0, 5)), "target_size must be \\(height, width\\)"),
                            (dict(classes=["a", "zebra"]), "class folders \\['zebra'\\] do not exist"),
                            (dict(subset="test"), "subset must be None, 'training' or 'validation'")):
        with pytest.raises(ValueError, match=message):
            gen.flow_from_directory(root, **kwargs)
    (root / "b").mkdir()
    (root / "b" / "broken.png").write_bytes(b"not really a png")
    it = gen.flow_from_directory(root, target_size=(4, 4), shuffle=False, batch_size=2)
    with pytest.raises(ValueError, match="cannot read '.*broken.png' as an image"):
        next(it)
    with pytest.raises(ValueError, match="found no image files"):
        ImageDataGenerator(validation_split=0.1).flow_from_directory(root / "b" / "..", subset="validation")


def test_missing_pillow_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError, match=r"pip install 'tinynn\[images\]'"):
        image.load_img(tmp_path / "x.png")
    with pytest.raises(ImportError, match=r"tinynn\[images\]"):
        ImageDataGenerator().flow_from_directory(tmp_path)
    # arrays need no Pillow
    xb, = [next(ImageDataGenerator(rotation_range=5).flow(np.zeros((2, 4, 4, 1)), batch_size=2))]
    assert xb.shape == (2, 4, 4, 1)


def test_save_and_load_round_trip(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 3)).astype("float32")
    image.save_img(tmp_path / "a.png", x, scale=False)
    np.testing.assert_array_equal(image.img_to_array(image.load_img(tmp_path / "a.png")), x)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left behind
    np.testing.assert_array_equal(image.img_to_array(image.load_img(tmp_path / "a.png", color_mode="grayscale"))
                                  .shape, (5, 4, 1))
    with pytest.raises(ValueError, match="cannot tell the image format"):
        image.save_img(tmp_path / "noext", x)
    with pytest.raises(ValueError, match="images have 1, 3 or 4 channels, got 2"):
        image.array_to_img(np.zeros((3, 3, 2)))
