"""Shared argument checks: keys, and arrays that JAX would silently wrap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax import baselines, kmeans, noise, protocol, roles, train
from ecos_jax._validate import as_real_array, check_key
from ecos_jax.keys import named_key

X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "call",
    [
        lambda key: kmeans.kmeans(key, X, k=3),
        lambda key: kmeans.kmeans_plusplus_init(key, X, k=3),
        lambda key: baselines.random_select(key, 40, budget=5),
        lambda key: baselines.k_center_select(key, X, budget=5),
        lambda key: roles.Cloud(X).broadcast(key, num_clusters=3),
        lambda key: protocol.run_protocol(key, X, X[:5], num_clusters=3, budget=4, sigma=1.0),
        lambda key: noise.simulation(key),
        lambda key: named_key(key, "a"),
        lambda key: train.weak_augment(key, jnp.zeros((2, 8, 8, 3))),
    ],
    ids=[
        "kmeans",
        "kmeans_plusplus_init",
        "random_select",
        "k_center_select",
        "Cloud.broadcast",
        "run_protocol",
        "noise.simulation",
        "named_key",
        "weak_augment",
    ],
)
@pytest.mark.parametrize("bad", [0, np.int64(3), np.zeros(2, np.uint32)])
def test_an_int_seed_where_a_key_is_expected_names_the_argument_and_the_fix(call, bad):
    with pytest.raises(TypeError, match=r"must be a JAX PRNG key.*jax\.random\.key\(seed\)"):
        call(bad)


def test_check_key_accepts_typed_keys_and_refuses_arrays_of_them():
    key = jax.random.key(0)
    assert check_key(key) is key
    with pytest.raises(TypeError, match="single key"):
        check_key(jax.random.split(key, 3))


def test_int64_that_would_wrap_is_refused_and_private_values_stay_out_of_the_message():
    big = np.array([[1, 2**40]], np.int64)
    with pytest.raises(ValueError, match=r"range \[1, 1099511627776\]"):
        as_real_array(big, "pool")
    with pytest.raises(ValueError) as info:
        as_real_array(big, "client", private=True)
    assert "1099511627776" not in str(info.value)
    np.testing.assert_array_equal(as_real_array(np.array([[1, 2]], np.int64), "x"), [[1, 2]])


@pytest.mark.parametrize(
    "bad", [np.array([True]), np.array([1j]), np.array(["a"])], ids=["bool", "complex", "str"]
)
def test_arrays_of_other_than_real_numbers_are_refused(bad):
    with pytest.raises(ValueError, match="real numbers"):
        as_real_array(bad, "x")
