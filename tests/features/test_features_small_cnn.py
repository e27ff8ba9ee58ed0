"""Small CNN feature map trained on labeled pool data: shapes, determinism, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax.features.extract import FeatureExtractor, resize_images
from ecos_jax.features.small_cnn import train_small_cnn


def _colour_task(n=96, seed=0):
    """Noisy images whose class is the dominant colour channel (easy to learn)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 100, (n, 12, 12, 3))
    images[np.arange(n), :, :, labels] += 150
    return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def trained():
    images, labels = _colour_task()
    kwargs = dict(
        num_classes=3,
        dim=16,
        widths=(8, 16),
        resolution=12,
        num_epochs=10,
        batch_size=32,
        learning_rate=3e-3,
    )
    a = train_small_cnn(jax.random.key(0), images, labels, **kwargs)
    b = train_small_cnn(jax.random.key(0), images, labels, **kwargs)
    c = train_small_cnn(jax.random.key(1), images, labels, **kwargs)
    return images, labels, a, b, c


def test_shape_dtype_protocol(trained):
    images, _, phi, _, _ = trained
    assert isinstance(phi, FeatureExtractor)
    features = phi(images[:5])
    assert features.shape == (5, 16)
    assert features.dtype == np.float32
    assert phi.name.startswith("small_cnn16-12px-")


def test_same_key_same_extractor_other_key_other(trained):
    images, _, a, b, c = trained
    np.testing.assert_array_equal(a(images), b(images))
    assert a.name == b.name != c.name


def test_it_learns_the_labels(trained):
    images, labels, phi, _, _ = trained
    x = resize_images(jnp.asarray(images), resolution=phi.resolution)
    _, logits = phi.module.apply({"params": phi.params}, x, return_logits=True)
    accuracy = float(np.mean(np.asarray(jnp.argmax(logits, -1)) == labels))
    assert accuracy >= 0.9, accuracy


@pytest.mark.parametrize(
    "bad_labels, num_classes, match",
    [
        pytest.param(lambda y: y * 0 + 2, 2, r"labels must lie in \[0, 2\)", id="out_of_range"),
        pytest.param(lambda y: y[:3], 3, "labels must be integers", id="too_few"),
    ],
)
def test_bad_labels(bad_labels, num_classes, match):
    images, labels = _colour_task(n=8)
    with pytest.raises(ValueError, match=match):
        train_small_cnn(jax.random.key(0), images, bad_labels(labels), num_classes=num_classes)
