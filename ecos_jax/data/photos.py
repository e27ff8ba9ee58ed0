"""Background photographs bundled with scikit-image and scikit-learn (read offline).

Only files that ship inside the installed wheels are read, straight from the package
folders: ``skimage.data`` functions for the non-bundled images would try a download.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import warnings

import numpy as np
from PIL import Image

__all__ = [
    "MIN_PHOTOS",
    "SKIMAGE_PHOTOS",
    "SKLEARN_PHOTOS",
    "background_photos",
    "photo_pyramid",
    "random_patches",
]

# Natural photographs only (no charts, documents, logos or binary masks).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
MIN_PHOTOS = 4


def _package_dir(package: str) -> pathlib.Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def background_photos() -> tuple[np.ndarray, ...]:
    """The bundled photos as RGB uint8 arrays ``[H, W, 3]`` (grey ones stacked to RGB).

    Returns:
      The photos that could be read, in a fixed order. Missing files are skipped with a
      warning; fewer than ``MIN_PHOTOS`` raises.

    References:
      Ganin & Lempitsky 2015 (MNIST-M backgrounds); used for the ECOS Digits benchmark
      (Hong et al., NeurIPS 2022, arXiv 2210.12575).
    """
    wanted = []
    skimage_dir, sklearn_dir = _package_dir("skimage"), _package_dir("sklearn")
    if skimage_dir is not None:
        wanted += [skimage_dir / "data" / name for name in SKIMAGE_PHOTOS]
    if sklearn_dir is not None:
        wanted += [sklearn_dir / "datasets" / "images" / name for name in SKLEARN_PHOTOS]
    photos, missing = [], []
    for path in wanted:
        try:
            with Image.open(path) as image:
                photos.append(np.asarray(image.convert("RGB"), np.uint8))
        except OSError:
            missing.append(path.name)
    if missing:
        warnings.warn(f"background photos not found, skipped: {missing}", stacklevel=2)
    if len(photos) < MIN_PHOTOS:
        raise RuntimeError(
            f"only {len(photos)} bundled photos found (need >= {MIN_PHOTOS}); reinstall "
            "scikit-image and scikit-learn, whose wheels ship them"
        )
    return tuple(photos)


def photo_pyramid(scales: tuple[float, ...] = (1.0, 0.5, 0.25)) -> tuple[np.ndarray, ...]:
    """Every background photo at several scales, so fixed-size crops vary in zoom."""
    out = []
    for photo in background_photos():
        h, w = photo.shape[:2]
        for s in scales:
            size = (max(32, round(w * s)), max(32, round(h * s)))
            out.append(np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BOX)))
    return tuple(out)


def random_patches(
    rng: np.random.Generator, photos: tuple[np.ndarray, ...], *, num: int, size: int
) -> np.ndarray:
    """``num`` random ``size``x``size`` RGB crops, uint8 ``[num, size, size, 3]``."""
    which = rng.integers(0, len(photos), size=num)
    out = np.empty((num, size, size, 3), np.uint8)
    for i, p in enumerate(which):
        photo = photos[p]
        y = rng.integers(0, photo.shape[0] - size + 1)
        x = rng.integers(0, photo.shape[1] - size + 1)
        out[i] = photo[y : y + size, x : x + size]
    return out
