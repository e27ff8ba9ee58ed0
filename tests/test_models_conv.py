"""models.Conv: nn.Conv's parameters and values, and one convolution per run under vmap."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax.models.conv import BATCHINGS, Conv, conv2d


def _inputs(runs=3):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((runs, 2, 6, 6, 3)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((runs, 3, 3, 3, 4)), jnp.float32)
    return x, k


def test_conv_initialises_and_computes_as_flax_conv():
    x = _inputs()[0][0]
    ours, theirs = Conv(4, (3, 3)), nn.Conv(4, (3, 3), use_bias=False)
    v_ours, v_theirs = ours.init(jax.random.key(0), x), theirs.init(jax.random.key(0), x)
    np.testing.assert_array_equal(v_ours["params"]["kernel"], v_theirs["params"]["kernel"])
    np.testing.assert_array_equal(ours.apply(v_ours, x), theirs.apply(v_theirs, x))


@pytest.mark.parametrize("batching", BATCHINGS)
def test_vmapped_values_and_gradients_equal_each_runs_own(batching):
    x, k = _inputs()
    loss = lambda x, k: jnp.sum(jnp.sin(conv2d(x, k, batching=batching)))
    grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(x, k)
    for r in range(len(x)):
        want = jax.grad(loss, argnums=(0, 1))(x[r], k[r])
        for got, expected in zip(grads, want, strict=True):
            np.testing.assert_allclose(got[r], expected, rtol=1e-5, atol=1e-5)


def test_unrolled_batching_has_no_grouped_convolution():
    x, k = _inputs()
    hlo = jax.jit(jax.vmap(jax.grad(lambda x, k: conv2d(x, k).sum(), argnums=1))).lower(x, k)
    counts = re.findall(r"(?:feature|batch)_group_count = (\d+)", hlo.as_text())
    assert counts and set(counts) == {"1"}


def test_bad_batching_names_the_argument():
    x, k = _inputs()
    with pytest.raises(ValueError, match="batching must be one of"):
        conv2d(x[0], k[0], batching="grouped")


def test_max_pool_2x2_equals_flax_max_pool_with_its_gradient_off_ties():
    from ecos_jax.models.digits_cnn import max_pool_2x2

    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 7, 6, 3)), jnp.float32)
    flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
    np.testing.assert_array_equal(max_pool_2x2(x), flax_pool(x))
    loss = lambda pool: jax.grad(lambda x: jnp.sum(jnp.sin(pool(x))))(x)
    np.testing.assert_array_equal(loss(max_pool_2x2), loss(flax_pool))
