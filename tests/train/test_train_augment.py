"""Weak and strong augmentation: shape, dtype, range, determinism, one compile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax.train import STRONG_OPS, strong_augment, weak_augment
from ecos_jax.train import augment as augment_module


def _images(dtype):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.integers(0, 256, (6, 8, 8, 3)), dtype)


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.float32])
@pytest.mark.parametrize(
    "augment",
    [
        lambda k, x: weak_augment(k, x),
        lambda k, x: weak_augment(k, x, pad=4, flip=True),
        lambda k, x: strong_augment(k, x, num_ops=2, magnitude=0.9),
    ],
    ids=["weak", "weak_flip", "strong"],
)
def test_shape_dtype_range_determinism(augment, dtype):
    x = _images(dtype)
    a = augment(jax.random.key(1), x)
    b = augment(jax.random.key(1), x)
    c = augment(jax.random.key(2), x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 255.0
    np.testing.assert_array_equal(a, b)
    assert bool(jnp.any(a != c))
    assert bool(jnp.any(a != x))


def test_weak_crop_is_a_shifted_window_of_the_reflect_padded_image():
    x = _images(jnp.float32)
    out = np.asarray(weak_augment(jax.random.key(3), x, pad=2))
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    for i in range(len(x)):
        windows = [padded[i, y : y + 8, s : s + 8] for y in range(5) for s in range(5)]
        assert any(np.array_equal(out[i], w) for w in windows)


def test_weak_pad_zero_is_identity():
    x = _images(jnp.uint8)
    np.testing.assert_array_equal(weak_augment(jax.random.key(0), x, pad=0), x)


def test_every_strong_op_keeps_shape_and_is_the_identity_at_strength_zero():
    # The ops' raw outputs (strong_augment clips after each op, so no clipping here).
    x = _images(jnp.float32)[0]  # integer values: posterize at strength 0 keeps them
    for op in STRONG_OPS:
        for s, sign in ((0.0, 1.0), (1.0, -1.0)):
            y = np.asarray(op(x, jnp.float32(s), jnp.float32(sign), jax.random.key(0)))
            assert y.shape == x.shape, op.__name__
            assert np.isfinite(y).all(), op.__name__
            if s == 0.0 and op.__name__ != "_autocontrast":
                np.testing.assert_array_equal(y, x, err_msg=op.__name__)
    # Autocontrast stretches every channel to span [0, 255] (NumPy reference).
    lo, hi = np.asarray(x).min((0, 1)), np.asarray(x).max((0, 1))
    expected = (np.asarray(x) - lo) * 255.0 / (hi - lo)
    got = augment_module._autocontrast(x, jnp.float32(0.0), jnp.float32(1.0), jax.random.key(0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_strong_magnitude_zero_is_identity():
    # At strength 0 every op but autocontrast is the identity; with channels already
    # spanning 0 or constant, autocontrast is one too.
    x = jnp.zeros((6, 8, 8, 3)).at[:, :, :, 0].set(255.0)
    np.testing.assert_array_equal(strong_augment(jax.random.key(0), x, magnitude=0.0), x)


def test_strong_augment_compiles_once_for_repeated_calls():
    x = _images(jnp.uint8)
    strong_augment(jax.random.key(0), x, num_ops=2, magnitude=0.5)
    size = augment_module._strong_augment._cache_size()
    for seed in range(1, 4):
        strong_augment(jax.random.key(seed), x, num_ops=2, magnitude=0.1 * seed)
    assert augment_module._strong_augment._cache_size() == size


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="images"):
        weak_augment(jax.random.key(0), jnp.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="num_ops"):
        strong_augment(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), num_ops=0)
    with pytest.raises(ValueError, match="magnitude"):
        strong_augment(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), magnitude=3.0)
    with pytest.raises(ValueError, match="pad"):
        weak_augment(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), pad=8)
