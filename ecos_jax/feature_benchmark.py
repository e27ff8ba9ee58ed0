"""Client and pool features of a real image split: step 0 of the protocol, `z = φ(x)`.

Both sides apply the same public, frozen extractor φ. `make_extractor` builds one from a
name; anything fitted (the pixel PCA, the small CNN) is fitted on the cloud's public pool
only, never on client data. `featurize_split` turns an `ecos_jax.data.Split` into the
same `FeatureBenchmark` the synthetic pool gives, so experiments run on either.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 3 (φ shared).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from ecos_jax.features.extract import FeatureCacheKey, PretrainedExtractor, cached_features
from ecos_jax.features.hog import fit_hog_pca
from ecos_jax.features.pixels import fit_pixel_pca
from ecos_jax.features.small_cnn import train_small_cnn
from ecos_jax.synthetic import FeatureBenchmark

__all__ = ["EXTRACTORS", "featurize_split", "make_extractor"]

#: Extractors `make_extractor` knows, cheapest first.
EXTRACTORS = ("pixels_pca", "hog_pca", "small_cnn", "efficientnet_lite0", "mobilenet_v2")


def make_extractor(
    name: str,
    *,
    pool_images: np.ndarray,
    pool_labels: np.ndarray | None = None,
    resolution: int | None = None,
    batch_size: int = 256,
    dim: int = 64,
    seed: int = 0,
):
    """A `FeatureExtractor` by name.

    Args:
      name: one of `EXTRACTORS`. 'efficientnet_lite0' and 'mobilenet_v2' are the ImageNet
        networks (1280-d); 'pixels_pca' projects resized pixels on the pool's top `dim`
        principal axes; 'hog_pca' projects HOG descriptors (grey, `resolution` px) on the
        pool's top `dim` principal axes; 'small_cnn' trains a small CNN on the labeled
        pool (its penultimate layer, `dim` wide).
      pool_images: uint8 [N, H, W, 3] public pool images (what fitted extractors fit on).
      pool_labels: class labels of the pool, needed by 'small_cnn' only (rows < 0, the
        unrelated domains, are left out of its training).
      resolution: side the images are resized to (None: the extractor's default).
      batch_size: images per jitted call.
      dim: feature width of the fitted extractors.
      seed: seed of the fitted extractors (PCA subsample, CNN init and shuffling).

    Returns:
      A callable `images -> float32 features` with `name` and `dim` attributes.
    """
    if name in ("efficientnet_lite0", "mobilenet_v2"):
        return PretrainedExtractor.create(name, resolution=resolution, batch_size=batch_size)
    if name == "pixels_pca":
        return fit_pixel_pca(pool_images, dim=dim, resolution=resolution or 16, seed=seed)
    if name == "hog_pca":
        return fit_hog_pca(pool_images, dim=dim, resolution=resolution or 28, seed=seed)
    if name == "small_cnn":
        if pool_labels is None:
            raise ValueError("extractor 'small_cnn' needs pool_labels (labeled public data).")
        labeled = np.asarray(pool_labels) >= 0
        if not labeled.any():
            raise ValueError("extractor 'small_cnn' needs pool rows with labels >= 0.")
        return train_small_cnn(
            jax.random.key(seed),
            pool_images[labeled],
            np.asarray(pool_labels)[labeled],
            num_classes=int(np.max(pool_labels)) + 1,
            dim=dim,
            resolution=resolution or 32,
        )
    raise ValueError(f"unknown extractor {name!r}; choose one of {EXTRACTORS}.")


def featurize_split(
    split,
    extractor,
    *,
    cache_tag: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FeatureBenchmark:
    """Features of a split's client and pool images, with the evaluation labels.

    Args:
      split: an `ecos_jax.data.Split`.
      extractor: a `FeatureExtractor` (see `make_extractor`), shared by both roles.
      cache_tag: identifies the split's images (dataset, version, seed, caps, regime) in
        the feature cache; None disables caching. Entries also record a hash of the
        images, so a wrong tag recomputes rather than returns stale features.
      cache_dir: cache root (None: `ecos_jax.features.extract.default_cache_dir()`).

    Returns:
      A `FeatureBenchmark`: client and pool features, the pool's domain and class labels
      (evaluation only) and the client domain's index into `split.domains`.
    """

    def feats(images, role):
        key = None
        if cache_tag is not None:
            key = FeatureCacheKey(cache_tag, "1", role, split.client_domain)
        return cached_features(extractor, images, cache_key=key, cache_dir=cache_dir)

    return FeatureBenchmark(
        client_features=feats(split.client.images, "client"),
        client_labels=np.asarray(split.client.labels, np.int32),
        pool_features=feats(split.pool_images, "pool"),
        pool_domains=np.asarray(split.pool_oracle.domains, np.int32),
        pool_labels=np.asarray(split.pool_oracle.labels, np.int32),
        client_domain=split.domains.index(split.client_domain),
    )
