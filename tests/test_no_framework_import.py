"""tinynn must never import TensorFlow or Keras: checked in a fresh interpreter and in the source."""

import pathlib
import re
import subprocess
import sys

import tinynn

PACKAGE = pathlib.Path(tinynn.__file__).parent


def test_importing_every_tinynn_module_loads_no_framework():
    modules = sorted(
        "tinynn." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'torch', 'jax'))\n"
        "assert not bad, bad\n"
        "print(len(" + repr(modules) + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(modules) > 10


def test_no_framework_import_statement_in_source():
    pattern = re.compile(r"^\s*(import|from)\s+(tensorflow|keras|torch|jax)\b", re.MULTILINE)
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_sigmoid_and_logits_crossentropy_do_not_import_scipy_special():
    """scipy.special costs ~0.1-0.2 s to import (a sixth of a warm first run): the sigmoid and the crossentropy
    from logits compute σ in NumPy, so a model that uses only them never imports it."""
    code = (
        "import sys, numpy as np, tinynn\n"
        "from tinynn import layers, losses\n"
        "tinynn.config.set_kernels('reference')\n"
        "x = np.random.default_rng(0).normal(size=(8, 3)).astype('float32')\n"
        "y = (x[:, :1] > 0).astype('float32')\n"
        "for head, loss in (('sigmoid', 'binary_crossentropy'),\n"
        "                   (None, losses.BinaryCrossentropy(from_logits=True))):\n"
        "    model = tinynn.Sequential([layers.Input((3,)), layers.Dense(4, activation='sigmoid'),\n"
        "                               layers.Dense(1, activation=head)])\n"
        "    model.compile(optimizer='rmsprop', loss=loss)\n"
        "    model.train_on_batch(x, y)\n"
        "    model.predict_on_batch(x)\n"
        "print('scipy.special' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
