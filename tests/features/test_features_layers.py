"""Depthwise convolution by shifted slices equals XLA's grouped convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ecos_jax.features.layers import depthwise_conv


@pytest.mark.parametrize("padding", ["same", "symmetric"])
@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_matches_grouped_conv(padding, size, kernel_size, stride):
    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, size, size + 1, 6))
    kernel = jax.random.normal(kk, (kernel_size, kernel_size, 1, 6))
    if padding == "same":
        pads = "SAME"
    else:
        pads = ((kernel_size // 2, kernel_size // 2),) * 2
    want = lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=6,
        precision=lax.Precision.HIGHEST,
    )
    got = depthwise_conv(x, kernel, stride=stride, padding=padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_depthwise_conv_dtype_follows_input():
    x = jnp.ones((1, 4, 4, 2), jnp.bfloat16)
    kernel = jnp.ones((3, 3, 1, 2), jnp.bfloat16)
    assert depthwise_conv(x, kernel, stride=1, padding="same").dtype == jnp.bfloat16
