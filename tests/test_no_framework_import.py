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
