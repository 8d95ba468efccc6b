"""The merge layers against Keras 3: forward, each input's gradient and the output mask, for a random upstream
gradient (``parity.harness.layer_parity`` with a list of inputs).

Options every example draws (each value also appears in an explicit ``@example``, so the 12 derandomized ``ci``
examples cannot miss one): dtype; the number of inputs; equal shapes, broadcasting against a size-1 axis, or an
input of lower rank; input masks (none, some inputs, every input) on equal shapes; integer-valued inputs that
make Maximum/Minimum tie (TensorFlow's tie rule sends the gradient to the earlier input).
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from parity.harness import layer_parity
from parity.options import covers
from tinynn import layers

ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]
DTYPES = st.sampled_from(["float64", "float32"])
SHAPE_MODES = st.sampled_from(["same", "broadcast", "rank"])
MASK_MODES = st.sampled_from(["none", "some", "all"])


def applied_masks(kw) -> str:
    """The masks an example really passes (inputs of different shapes get none)."""
    return kw["mask_mode"] if kw["shape_mode"] == "same" else "none"


def _inputs(rng, n, shape_mode, ties, dtype, batch=3, steps=4, channels=5):
    full = (batch, steps, channels)
    shapes = [full] * n
    if shape_mode == "broadcast":
        shapes = [full] + [(batch, 1, channels) if k % 2 else (batch, steps, 1) for k in range(1, n)]
    elif shape_mode == "rank":
        shapes = [full] + [(batch, channels)] * (n - 1)
    if ties:
        return [rng.integers(-2, 3, size=s).astype(dtype) for s in shapes]
    return [rng.normal(size=s).astype(dtype) for s in shapes]


def _masks(rng, xs, mask_mode):
    if mask_mode == "none":
        return None
    masks = []
    for k, x in enumerate(xs):
        if mask_mode == "some" and k % 2:
            masks.append(None)
            continue
        m = rng.random(x.shape[:-1]) < 0.7
        m[:, 0] = True  # every sample keeps a valid step
        masks.append(m)
    return masks


@pytest.mark.parametrize("name", ELEMENTWISE)
@covers(ties_masks=(lambda kw: (kw["ties"], applied_masks(kw)), [(t, m) for t in (False, True)
                                                                   for m in ("none", "some", "all")]),
        ties_n=(lambda kw: (kw["ties"], kw["n"]), [(t, n) for t in (False, True) for n in (2, 3)]))
@given(
    dtype=DTYPES,
    n=st.integers(2, 3),
    shape_mode=SHAPE_MODES,
    mask_mode=MASK_MODES,
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(dtype="float64", n=2, shape_mode="same", mask_mode="all", ties=True, seed=1)
@example(dtype="float32", n=3, shape_mode="broadcast", mask_mode="none", ties=False, seed=2)
@example(dtype="float64", n=3, shape_mode="rank", mask_mode="some", ties=False, seed=3)
@example(dtype="float32", n=3, shape_mode="same", mask_mode="some", ties=True, seed=4)
@example(dtype="float64", n=3, shape_mode="same", mask_mode="all", ties=False, seed=5)
@example(dtype="float32", n=2, shape_mode="same", mask_mode="some", ties=False, seed=6)
def test_elementwise_merge_parity(name, dtype, n, shape_mode, mask_mode, ties, seed):
    if name == "Subtract":
        n = 2
    rng = np.random.default_rng(seed)
    xs = _inputs(rng, n, shape_mode, ties, dtype)
    masks = _masks(rng, xs, mask_mode) if shape_mode == "same" else None
    layer = getattr(layers, name)(dtype=dtype)
    layer_parity(layer, xs, seed=seed, mask=masks).assert_ok()


@given(
    dtype=DTYPES,
    n=st.integers(2, 3),
    axis=st.sampled_from([-1, 1, 2]),
    mask_mode=MASK_MODES,
    seed=st.integers(0, 2**16),
)
@example(dtype="float64", n=2, axis=1, mask_mode="all", seed=1)
@example(dtype="float32", n=3, axis=-1, mask_mode="some", seed=2)
@example(dtype="float64", n=3, axis=2, mask_mode="none", seed=3)
def test_concatenate_parity(dtype, n, axis, mask_mode, seed):
    rng = np.random.default_rng(seed)
    base = [3, 4, 5]
    xs = []
    for k in range(n):
        shape = list(base)
        shape[axis] = 2 + k  # the inputs differ along the concatenation axis only
        xs.append(rng.normal(size=shape).astype(dtype))
    masks = _masks(rng, xs, mask_mode)
    layer_parity(layers.Concatenate(axis=axis, dtype=dtype), xs, seed=seed, mask=masks).assert_ok()


@given(
    dtype=DTYPES,
    case=st.sampled_from(["2d", "3d-time", "3d-features", "mixed-rank"]),
    normalize=st.booleans(),
    pair=st.booleans(),
    zero_row=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(dtype="float64", case="2d", normalize=True, pair=False, zero_row=True, seed=1)
@example(dtype="float32", case="3d-time", normalize=False, pair=True, zero_row=False, seed=2)
@example(dtype="float64", case="3d-features", normalize=True, pair=True, zero_row=False, seed=3)
@example(dtype="float32", case="mixed-rank", normalize=True, pair=False, zero_row=True, seed=4)
def test_dot_parity(dtype, case, normalize, pair, zero_row, seed):
    """Dot over features (B,K)·(B,K), over time (B,T,C)·(B,T,D) → (B,C,D), features (B,T,K)·(B,S,K) → (B,T,S),
    and ranks 3 and 2; a zero vector exercises normalize's ε clip."""
    rng = np.random.default_rng(seed)
    shapes, axes = {
        "2d": (((3, 4), (3, 4)), (1, 1)),
        "3d-time": (((3, 5, 2), (3, 5, 3)), (1, 1)),
        "3d-features": (((3, 4, 6), (3, 2, 6)), (2, 2)),
        "mixed-rank": (((3, 4, 6), (3, 6)), (2, 1)),
    }[case]
    xs = [rng.normal(size=s).astype(dtype) for s in shapes]
    if zero_row:
        xs[0][0] = 0.0
    if pair:
        axes_arg = [a - len(s) if k else a for k, (a, s) in enumerate(zip(axes, shapes))]  # one negative axis
    else:
        axes_arg = axes[0] if axes[0] == axes[1] else list(axes)
    layer_parity(layers.Dot(axes=axes_arg, normalize=normalize, dtype=dtype), xs, seed=seed).assert_ok()
