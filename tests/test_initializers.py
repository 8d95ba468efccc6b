"""Initializers: Keras's fan rules and distributions, seeding, orthogonality, lookup by name."""

import numpy as np
import pytest

import tinynn as tn
from tinynn import initializers


@pytest.mark.parametrize("shape, fans", [((3, 5), (3, 5)), ((7, 3, 5), (21, 35)), ((4,), (4, 4))])
def test_fans_follow_keras(shape, fans):
    assert initializers.compute_fans(shape) == fans


def test_glorot_uniform_limit_and_spread():
    w = initializers.GlorotUniform(seed=1)((200, 300), "float64")
    limit = np.sqrt(6 / 500)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    assert abs(w.std() - limit / np.sqrt(3)) < 0.01 * limit


@pytest.mark.parametrize("name, std", [("he_normal", np.sqrt(2 / 400)), ("lecun_normal", np.sqrt(1 / 400)),
                                       ("glorot_normal", np.sqrt(2 / 700))])
def test_truncated_normal_variance_scaling_has_the_target_std(name, std):
    w = initializers.get(name)((400, 300), "float64")
    assert abs(w.std() - std) < 0.03 * std  # the 0.8796 correction restores the untruncated std
    assert np.abs(w).max() <= 2 * std / 0.87962566103423978 + 1e-12


def test_orthogonal_rows_are_orthonormal_for_recurrent_kernels():
    u = initializers.Orthogonal(seed=3)((8, 32), "float64")
    assert np.allclose(u @ u.T, np.eye(8), atol=1e-12)


def test_seeded_initializer_repeats_and_global_seed_reproduces():
    init = initializers.RandomNormal(seed=5)
    assert np.array_equal(init((3, 3)), init((3, 3)))  # Keras: the same instance gives identical values
    tn.set_random_seed(42)
    a = tn.layers.Dense(4)
    a.ensure_built((None, 3))
    tn.set_random_seed(42)
    b = tn.layers.Dense(4)
    b.ensure_built((None, 3))
    assert np.array_equal(a.kernel, b.kernel)


def test_lookup_by_name_class_and_config():
    assert isinstance(initializers.get("glorot_uniform"), initializers.GlorotUniform)
    assert isinstance(initializers.get("GlorotUniform"), initializers.GlorotUniform)
    init = initializers.get({"class_name": "RandomUniform", "config": {"minval": 2, "maxval": 3, "seed": 1}})
    values = init((50,), "float64")
    assert values.min() >= 2 and values.max() <= 3
    assert initializers.get(initializers.serialize(init)).get_config() == init.get_config()
    with pytest.raises(ValueError, match="Unknown initializer"):
        initializers.get("bogus")
    assert np.all(initializers.get("ones")((2,)) == 1) and np.all(initializers.Constant(2.5)((2,)) == 2.5)
