"""Client MACs from XLA's cost model agree with hand counts."""

import jax
import jax.numpy as jnp
import pytest

from ecos_jax import costs
from ecos_jax.models import DigitsCNN


def test_matmul_macs_are_m_n_k():
    assert costs.macs(jnp.matmul, jnp.ones((4, 8)), jnp.ones((8, 16))) == 4 * 8 * 16


def _valid_taps(size, kernel=5):
    """Kernel taps that land inside a size×size image over all SAME-padded positions
    (XLA does not count the multiplications with the zero padding)."""
    half = kernel // 2
    per_dim = sum(min(p + half, size - 1) - max(p - half, 0) + 1 for p in range(size))
    return per_dim**2


def test_digits_cnn_macs_match_the_layer_count():
    model = DigitsCNN(num_classes=10, width=0.25)
    x = jnp.zeros((1, 28, 28, 3), jnp.uint8)
    variables = model.init(jax.random.key(0), x, train=False)
    got = costs.macs(lambda v, i: model.apply(v, i, train=False), variables, x)
    c0, c1, c2, f0, f1 = 16, 16, 32, 512, 128  # widths at 1/4
    convs = _valid_taps(28) * 3 * c0 + _valid_taps(14) * c0 * c1 + _valid_taps(7) * c1 * c2
    dense = 7 * 7 * c2 * f0 + f0 * f1 + f1 * 10
    # XLA also counts BatchNorm, ReLU and pooling arithmetic: about 1% on top.
    assert got == pytest.approx(convs + dense, rel=0.02)


def test_scoring_macs():
    assert costs.scoring_macs(2000, 50, 1280) == 2000 * 50 * 1280
