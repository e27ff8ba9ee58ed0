"""Raw pixels + PCA feature map: shapes, determinism, agreement with scikit-learn."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from ecos_jax.features.extract import FeatureExtractor
from ecos_jax.features.pixels import fit_pixel_pca


def _images(n, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_shape_dtype_and_protocol():
    phi = fit_pixel_pca(_images(50), dim=10, resolution=8)
    assert isinstance(phi, FeatureExtractor)
    features = phi(_images(7, size=12, seed=1))  # other sizes are resized
    assert features.shape == (7, 10)
    assert features.dtype == np.float32
    assert phi.dim == 10


def test_deterministic_fit_and_name():
    a = fit_pixel_pca(_images(300), dim=8, resolution=8, max_samples=100, seed=3)
    b = fit_pixel_pca(_images(300), dim=8, resolution=8, max_samples=100, seed=3)
    c = fit_pixel_pca(_images(300), dim=8, resolution=8, max_samples=100, seed=4)
    x = _images(5, seed=9)
    np.testing.assert_array_equal(a(x), b(x))
    assert a.name == b.name != c.name
    assert a.name.startswith("pixels-pca8-8px-")


def test_matches_sklearn_pca():
    images = _images(80)
    phi = fit_pixel_pca(images, dim=6, resolution=8, max_samples=None)
    flat = images.reshape(80, -1).astype(np.float64) / 255.0
    want = PCA(n_components=6, svd_solver="full").fit(flat).transform(flat)
    got = phi(images)
    # Principal axes are defined up to sign.
    signs = np.sign(np.sum(got * want, axis=0))
    np.testing.assert_allclose(got, want * signs, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.mean(axis=0), 0.0, atol=1e-4)


@pytest.mark.parametrize("dim", [0, 49, 10**6])
def test_bad_dim(dim):
    with pytest.raises(ValueError, match="dim must be"):
        fit_pixel_pca(_images(48), dim=dim, resolution=4)
