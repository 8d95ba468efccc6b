"""Kernels load from numba's disk cache without refreshing numba's target context (tinynn.kernels.jitcache): every
kernel module opts in, a load gives the same machine code (the same numbers, bit for bit) as numba's own load
and as the compile that filled the cache, and a compile after such loads still works."""

import importlib
import json
import os
import pathlib
import pkgutil
import subprocess
import sys

import numba

import tinynn.kernels
from tinynn.kernels import jitcache

ROOT = str(pathlib.Path(__file__).resolve().parents[1])

# Run in a fresh process: max-pool forward and backward (float32), a hash of their results, whether numba compiled
# and whether its target registries were loaded (numba.np.arraymath is imported by the first refresh only); with
# "numba" numba's own load path is restored first; with "then-float64" a float64 specialisation is compiled after
# the loads and compared with the NumPy twin.
_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from numba.core import caching, event
from tinynn.kernels import pooling
from tinynn.kernels.reference import pooling as ref

if "numba" in sys.argv:
    for d in (pooling._max_fwd, pooling._max_bwd):
        d._cache.__class__ = caching.FunctionCache
compiled = []

class Listener(event.Listener):
    def on_start(self, e):
        compiled.append(e.data["dispatcher"].py_func.__name__)

    def on_end(self, e):
        pass

event.register("numba:compile", Listener())
x = np.random.default_rng(3).normal(size=(4, 23, 5)).astype(np.float32)
y, a = pooling.max_pool1d_forward(x, 3, 2, 1, 12)
dx = pooling.max_pool1d_backward(y * 0.5, a, 23)
out = {"hash": hashlib.sha1(y.tobytes() + a.tobytes() + dx.tobytes()).hexdigest(), "compiled": compiled[:],
       "registries": "numba.np.arraymath" in sys.modules}
if "then-float64" in sys.argv:
    x64 = x.astype(np.float64)
    y64, a64 = pooling.max_pool1d_forward(x64, 3, 2, 1, 12)
    y_ref, a_ref = ref.max_pool1d_forward(x64, 3, 2, 1, 12)
    out["float64_equal"] = bool(np.array_equal(y64, y_ref) and np.array_equal(a64, a_ref))
    out["compiled_after"] = compiled[len(out["compiled"]):]
print(json.dumps(out))
"""


def _run(cache: pathlib.Path, *flags: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "TINYNN_COMPILE": "wait",
           "PYTHONPATH": os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *flags], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_cached_kernel_loads_without_refreshing_numba():
    kernels = []
    for info in pkgutil.iter_modules(tinynn.kernels.__path__):
        module = importlib.import_module(f"tinynn.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, numba.core.dispatcher.Dispatcher) and value.py_func.__module__ == module.__name__ \
                    and not isinstance(value._cache, numba.core.caching.NullCache):
                kernels.append((module.__name__, name, type(value._cache).__name__))
    assert len(kernels) > 50
    assert [k for k in kernels if k[2] != "_LoadOnlyCache"] == []


def test_a_function_of_another_module_is_left_alone():
    other = numba.njit(cache=True)(lambda v: v + 1)  # defined here, not in the namespace's module
    assert jitcache.load_without_refresh({"__name__": "tinynn.kernels.nothing", "f": other}) == 0
    assert type(other._cache) is numba.core.caching.FunctionCache


def test_loaded_kernels_equal_numbas_load_and_the_compile_and_compiling_still_works(tmp_path):
    compiled = _run(tmp_path)  # empty cache: compiles and saves
    assert {"_max_fwd", "_max_bwd"} <= set(compiled["compiled"]) and compiled["registries"]
    light = _run(tmp_path, "then-float64")  # loads, then compiles a float64 specialisation
    assert light["compiled"] == [] and not light["registries"]
    assert light["hash"] == compiled["hash"]
    assert "_max_fwd" in light["compiled_after"] and light["float64_equal"]
    numbas = _run(tmp_path, "numba")  # numba's own load path
    assert numbas["compiled"] == [] and numbas["registries"]
    assert numbas["hash"] == light["hash"]
