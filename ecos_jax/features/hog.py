"""HOG + PCA: histograms of oriented gradients, projected on the pool's principal axes.

Private-kNN started its MNIST and SVHN experiments from HOG features (Zhu, Yu, Wang 2020),
and on the offline digits benchmark the kNN labels of task (c) are far better in HOG
space than in the ImageNet features φ (results/knn_label_quality/). The images are turned to
grey levels in [0, 1], resized to `resolution`, described by scikit-image's HOG (9
orientations, 4×4-pixel cells, 2×2-cell blocks, L2-Hys), centred and projected on the
top `dim` principal axes of the pool's descriptors. The projection is fitted on public
data only (the cloud's pool), so the client and the cloud share the same map and
fitting it costs no privacy.

References:
  Dalal, Triggs. "Histograms of Oriented Gradients for Human Detection." CVPR 2005.
  Zhu, Yu, Wang. "Private-kNN: Practical Differential Privacy for Computer Vision."
  CVPR 2020 (HOG features for the first round).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from ecos_jax.features.extract import check_images

__all__ = ["HogPCAExtractor", "fit_hog_pca", "hog_descriptors"]

_ORIENTATIONS, _CELL, _BLOCK = 9, 4, 2


def hog_descriptors(images_NHWC: np.ndarray, *, resolution: int = 28) -> np.ndarray:
    """float32 HOG descriptors [N, F] of uint8 images (grey, resized to `resolution`)."""
    from skimage.feature import hog
    from skimage.transform import resize

    images = check_images(images_NHWC)
    grey = images.astype(np.float32).mean(axis=-1) / 255.0
    out = []
    for image in grey:
        if image.shape != (resolution, resolution):
            image = resize(image, (resolution, resolution), anti_aliasing=True)
        out.append(
            hog(
                image,
                orientations=_ORIENTATIONS,
                pixels_per_cell=(_CELL, _CELL),
                cells_per_block=(_BLOCK, _BLOCK),
                block_norm="L2-Hys",
            )
        )
    return np.asarray(out, np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class HogPCAExtractor:
    """HOG descriptors, centred and projected on principal axes fitted on the pool.

    Attributes:
      mean_F: descriptor mean of the fitting data [F].
      components_FxK: orthonormal principal axes [F, K], sign-fixed.
      resolution: side the grey images are resized to.
    """

    mean_F: np.ndarray
    components_FxK: np.ndarray
    resolution: int

    @property
    def dim(self) -> int:
        return int(self.components_FxK.shape[1])

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.mean_F.tobytes() + self.components_FxK.tobytes())
        return f"hog-pca{self.dim}-{self.resolution}px-{digest.hexdigest()[:12]}"

    def __call__(self, images_NHWC: np.ndarray) -> np.ndarray:
        x = hog_descriptors(images_NHWC, resolution=self.resolution).astype(np.float64)
        return ((x - self.mean_F) @ self.components_FxK).astype(np.float32)


def fit_hog_pca(
    images: np.ndarray,
    *,
    dim: int = 64,
    resolution: int = 28,
    max_samples: int | None = 10_000,
    seed: int = 0,
) -> HogPCAExtractor:
    """Fits the PCA of HOG descriptors on (a subsample of) public images.

    Args:
      images: uint8 [N, H, W, 3] public images (the cloud's pool), never client data.
      dim: principal axes kept, 1 <= dim <= min(samples, descriptor length).
      resolution: side the grey images are resized to (>= 8).
      max_samples: fit on at most this many images, drawn without replacement with
        `np.random.default_rng(seed)`; None uses all.
      seed: host-side seed of that subsample.

    Returns:
      A `HogPCAExtractor`; the same inputs give the same extractor (and `name`).

    Example:
      >>> import numpy as np
      >>> pool = np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
      >>> phi = fit_hog_pca(pool, dim=8, resolution=16)
      >>> phi(pool[:3]).shape, phi.dim
      ((3, 8), 8)
    """
    images = check_images(images)
    if not isinstance(resolution, int) or resolution < 2 * _CELL * _BLOCK:
        raise ValueError(
            f"resolution must be an int >= {2 * _CELL * _BLOCK} (two HOG blocks), got "
            f"{resolution!r}."
        )
    n = images.shape[0]
    if max_samples is not None and n > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
        images, n = images[rows], max_samples
    x = hog_descriptors(images, resolution=resolution).astype(np.float64)
    if not isinstance(dim, int) or not 1 <= dim <= min(n, x.shape[1]):
        raise ValueError(
            f"dim must be an int in [1, min(samples, HOG length)] = [1, {min(n, x.shape[1])}], "
            f"got {dim!r}; fit on more images or lower dim."
        )
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[:dim].T
    signs = np.sign(components[np.argmax(np.abs(components), axis=0), np.arange(dim)])
    components = components * signs[None, :]
    return HogPCAExtractor(mean.astype(np.float64), components.astype(np.float64), resolution)
