"""HOG + PCA: fitted on the pool only, deterministic, the projection it claims."""

import numpy as np
import pytest

from ecos_jax import feature_benchmark
from ecos_jax.features import fit_hog_pca
from ecos_jax.features.hog import hog_descriptors


def _images(seed, n=60, side=28):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_projection_is_the_centred_descriptor_on_orthonormal_axes():
    pool = _images(0)
    phi = fit_hog_pca(pool, dim=10)
    axes = phi.components_FxK
    np.testing.assert_allclose(axes.T @ axes, np.eye(10), atol=1e-10)
    new = _images(1, n=5)
    expected = (hog_descriptors(new).astype(np.float64) - phi.mean_F) @ axes
    np.testing.assert_allclose(phi(new), expected, rtol=1e-5, atol=1e-5)
    # Row-wise: one image's features do not depend on the batch it comes in.
    np.testing.assert_array_equal(phi(new)[2], phi(new[2:3])[0])


def test_same_pool_same_extractor_and_name_and_registry():
    pool = _images(2)
    a, b = fit_hog_pca(pool, dim=6), fit_hog_pca(pool, dim=6)
    assert a.name == b.name and a.name.startswith("hog-pca6-28px-")
    assert fit_hog_pca(_images(3), dim=6).name != a.name
    made = feature_benchmark.make_extractor("hog_pca", pool_images=pool, dim=6)
    assert made.name == a.name


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="dim"):
        fit_hog_pca(_images(0, n=5), dim=6)
    with pytest.raises(ValueError, match="resolution"):
        fit_hog_pca(_images(0), dim=4, resolution=7)
