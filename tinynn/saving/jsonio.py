"""JSON for configs: NumPy scalars and arrays become plain numbers and lists; anything else is refused by name.

A config is made of dicts, lists, strings, numbers, booleans and None. Layers and optimizers may hold NumPy
values (``Masking(mask_value=np.float32(0))``, a shape of ``np.int64``): those serialise as the Python number
they equal (``float(np.float32(x))`` is exact, so the value round-trips). A Python callable (e.g. a
learning-rate schedule function) or any other object cannot be written without storing code, which tinynn
never does: :func:`dumps` names where in the config it sits.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MAX_CONFIG_BYTES = 64 * 2**20  # a config larger than this is refused on reading (a real one is a few kB)


def plain(value: Any, where: str = "config") -> Any:
    """``value`` as JSON-ready Python data; ``ValueError`` naming ``where`` for anything not serialisable."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.tolist()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string, so it cannot be stored as JSON")
            out[key] = plain(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if callable(value):
        raise ValueError(
            f"{where} is a Python callable ({getattr(value, '__name__', type(value).__name__)}): tinynn stores "
            "no code in files, so it cannot be saved"
        )
    raise ValueError(f"{where} is a {type(value).__name__} ({value!r}), which cannot be stored as JSON")


def dumps(value: Any, where: str = "config") -> str:
    return json.dumps(plain(value, where))


def loads(data: bytes | str) -> Any:
    """Parse a config (bytes are UTF-8). Errors are the json module's; :func:`errors.reading` wraps them."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"its JSON config is {len(data)} bytes long (more than {MAX_CONFIG_BYTES}): refusing")
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise ValueError(f"its config is not valid JSON ({err})") from None
