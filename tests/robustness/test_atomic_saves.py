"""A failed save never costs the previous file: it stays byte-identical, and no temporary file is left behind.

Failures tried for every format (``.npz``, ``.keras``, ``.h5`` models; ``.npz``, ``.weights.h5``, ``.h5``
weights): a config that JSON cannot hold (an object; a callable learning-rate schedule), an exception in the
middle of writing, and a disk that runs out of space (``RLIMIT_FSIZE`` in a subprocess, so the write fails
exactly as on a full disk, and a crash inside h5py would show as a dead process). Also: NumPy scalars in configs
save in every format; ModelCheckpoint keeps its last good checkpoint; permissions survive a replace.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import file_cases as fc
import numpy as np
import pytest

import tinynn as tn
from tinynn import layers as L

MODEL_FORMATS = ["m.npz", "m.keras", "m.h5"]
WEIGHT_FORMATS = ["w.npz", "w.weights.h5", "w.h5"]


def _save(model, path) -> None:
    model.save(path) if path.name.startswith("m.") else model.save_weights(path)


def _leftovers(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


@pytest.fixture
def previous(tmp_path):
    """Every format saved once from a valid model: {file name: bytes}."""
    model = fc.make_model()
    for name in MODEL_FORMATS + WEIGHT_FORMATS:
        _save(model, tmp_path / name)
    return {name: (tmp_path / name).read_bytes() for name in MODEL_FORMATS + WEIGHT_FORMATS}


@pytest.mark.parametrize("name", MODEL_FORMATS)
def test_unserialisable_configs_leave_the_old_file(tmp_path, previous, name):
    schedule = fc.make_model(seed=1)
    schedule.optimizer.learning_rate = lambda step: 0.01 / (1 + step)
    with pytest.raises(ValueError, match=r"learning_rate is a Python callable \(<lambda>\).*stores no code"):
        schedule.save(tmp_path / name)
    odd = fc.make_model(seed=2)
    odd.layers[0].get_config = lambda: {"name": "conv", "filters": object()}
    with pytest.raises(ValueError, match=r"filters is a object"):
        odd.save(tmp_path / name)
    assert (tmp_path / name).read_bytes() == previous[name]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", MODEL_FORMATS + WEIGHT_FORMATS)
def test_an_exception_mid_write_leaves_the_old_file(tmp_path, previous, name, monkeypatch):
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # after the bytes went to the temporary file, before the rename
    with pytest.raises(OSError, match=rf"Cannot save the (model|weights) to .*{name}.*No space left.*unchanged"):
        _save(fc.make_model(seed=4), tmp_path / name)
    assert (tmp_path / name).read_bytes() == previous[name]
    assert _leftovers(tmp_path) == []


_FULL_DISK = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    import file_cases as fc
    import tinynn as tn
    from tinynn import layers as L
    model = tn.Sequential([L.Input((400,)), L.Dense(300), L.Dense(2)])  # ~0.5 MB of weights
    model.compile("adam", "mse")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG, as ENOSPC on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    for path in sys.argv[3:]:
        try:
            model.save(path) if os.path.basename(path).startswith("m.") else model.save_weights(path)
            print("saved", path)
        except OSError as err:
            print("refused", path, err)
""")


def test_a_full_disk_leaves_every_old_file(tmp_path, previous):
    paths = [str(tmp_path / name) for name in MODEL_FORMATS + WEIGHT_FORMATS]
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(fc.HERE), str(fc.ROOT), *paths],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the saving process died: {done.returncode}\n{done.stderr[-2000:]}"
    lines = done.stdout.splitlines()
    assert len(lines) == len(paths) and all(line.startswith("refused") for line in lines), done.stdout
    assert all("File too large" in line and "unchanged" in line for line in lines), done.stdout
    for name in MODEL_FORMATS + WEIGHT_FORMATS:
        assert (tmp_path / name).read_bytes() == previous[name], name
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", MODEL_FORMATS)
def test_numpy_scalars_in_configs_save(tmp_path, name):
    model = tn.Sequential([L.Input((4, 3)), L.Masking(mask_value=np.float32(0)), L.LSTM(np.int64(2)),
                           L.Dropout(np.float64(0.25)), L.Dense(np.int32(3))])
    model.save(tmp_path / name)
    loaded = tn.load_model(tmp_path / name)
    assert loaded.layers[0].mask_value == 0.0 and loaded.layers[1].units == 2 and loaded.layers[3].units == 3
    assert all(a.tobytes() == b.tobytes() for a, b in zip(model.get_weights(), loaded.get_weights()))


def test_model_checkpoint_keeps_the_last_good_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5, 3)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    model = fc.make_model()
    path = tmp_path / "best.keras"
    checkpoint = tn.callbacks.ModelCheckpoint(str(path), monitor="loss", save_best_only=True)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    good, best = path.read_bytes(), checkpoint.best
    model.optimizer.learning_rate = lambda step: 1e-9  # the next save cannot be written (a callable schedule)
    model.layers[-1].set_weights([w * 0 for w in model.layers[-1].get_weights()])
    with pytest.raises(ValueError, match="Python callable"):
        model.fit(x, y * 0, epochs=1, verbose=0, callbacks=[checkpoint])
    assert path.read_bytes() == good and checkpoint.best == best
    assert _leftovers(tmp_path) == []


def test_replacing_keeps_permissions_and_new_files_follow_the_umask(tmp_path):
    model = fc.make_model()
    old = tmp_path / "m.npz"
    model.save(old)
    os.chmod(old, 0o640)
    model.save(old)
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o640
    mask = os.umask(0o022)
    os.umask(mask)
    model.save(tmp_path / "new.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o666 & ~mask
