"""Raw pixels + PCA: a cheap, deterministic feature map φ (tests, smoke runs, baselines).

The projection is fitted on public data (the cloud's pool), never on client data: φ
must be shared by both sides, and fitting it on `D_p` would leak.
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax.features.extract import batched_map, check_images, resize_images

__all__ = ["PixelPCAExtractor", "fit_pixel_pca"]


@dataclasses.dataclass(frozen=True, eq=False)
class PixelPCAExtractor:
    """Flattened pixels in [0, 1], centred and projected on the top principal axes.

    Attributes:
      mean_D: pixel mean of the fitting data [D], D = resolution² · 3.
      components_DxK: orthonormal principal axes [D, K], sign-fixed (largest |entry| > 0).
      resolution: side length the images are resized to before flattening.
      batch_size: rows per jitted call.
    """

    mean_D: np.ndarray
    components_DxK: np.ndarray
    resolution: int
    batch_size: int = 4096

    @property
    def dim(self) -> int:
        return int(self.components_DxK.shape[1])

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.mean_D.tobytes() + self.components_DxK.tobytes())
        return f"pixels-pca{self.dim}-{self.resolution}px-{digest.hexdigest()[:12]}"

    def __call__(self, images_NHWC: np.ndarray) -> np.ndarray:
        images = check_images(images_NHWC)
        params = (jnp.asarray(self.mean_D), jnp.asarray(self.components_DxK))
        return batched_map(
            _project_fn(self.resolution),
            params,
            images,
            batch_size=self.batch_size,
            description=self.name,
        )


def _flatten(images_NHWC: jax.Array, resolution: int) -> jax.Array:
    """Resized images as rows of pixel values in [0, 1]."""
    x = resize_images(images_NHWC, resolution=resolution) / 255.0
    return x.reshape(x.shape[0], -1)


_PROJECT_FNS: dict[int, object] = {}


def _project_fn(resolution: int):
    """The jitted batch projection for one resolution (cached: one compile per shape)."""
    if resolution not in _PROJECT_FNS:

        @jax.jit
        def project(params, images_NHWC):
            mean_D, components_DxK = params
            x_NxD = _flatten(images_NHWC, resolution) - mean_D[None, :]
            return jnp.matmul(x_NxD, components_DxK, precision=jax.lax.Precision.HIGHEST)

        _PROJECT_FNS[resolution] = project
    return _PROJECT_FNS[resolution]


def fit_pixel_pca(
    images: np.ndarray,
    *,
    dim: int = 64,
    resolution: int = 16,
    max_samples: int | None = 10_000,
    seed: int = 0,
) -> PixelPCAExtractor:
    """Fits the pixel PCA on (a subsample of) public images.

    Args:
      images: uint8 [N, H, W, 3] public images (the cloud's pool), never client data.
      dim: number of principal axes kept (≤ min(samples, resolution² · 3)).
      resolution: side length images are resized to before flattening.
      max_samples: fit on at most this many images, drawn without replacement with
        `np.random.default_rng(seed)`; None uses all.
      seed: host-side seed of that subsample.

    Returns:
      A `PixelPCAExtractor`; the same inputs give the same extractor (and `name`).

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): φ is public and shared.
    """
    images = check_images(images)
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}.")
    n = images.shape[0]
    if max_samples is not None and n > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
        images = images[rows]
        n = max_samples
    d = resolution * resolution * 3
    if not isinstance(dim, int) or not 1 <= dim <= min(n, d):
        raise ValueError(
            f"dim must be an int in [1, min(samples, resolution²·3)] = [1, {min(n, d)}], "
            f"got {dim!r}; fit on more images or lower dim."
        )
    x_NxD = batched_map(
        jax.jit(lambda _, batch: _flatten(batch, resolution)), None, images, batch_size=4096
    ).astype(np.float64)
    mean_D = x_NxD.mean(axis=0)
    # Right singular vectors of the centred data are the principal axes.
    _, _, vt_DxD = np.linalg.svd(x_NxD - mean_D, full_matrices=False)
    components_DxK = vt_DxD[:dim].T
    signs_K = np.sign(components_DxK[np.argmax(np.abs(components_DxK), axis=0), np.arange(dim)])
    components_DxK = components_DxK * signs_K[None, :]
    return PixelPCAExtractor(
        mean_D.astype(np.float32), components_DxK.astype(np.float32), resolution
    )
