"""Batched feature extraction φ(x) with an on-disk cache.

Every extractor (pretrained network, raw pixels + PCA, small CNN) satisfies the
`FeatureExtractor` protocol: a `name` that identifies it completely (architecture,
resolution, dtype, fitted parameters), a feature `dim`, and a call from uint8 images
[N, H, W, 3] to float32 features [N, dim]. `cached_features` stores those features once
per (dataset, version, split, domain) × extractor; `extract_features` is the pretrained
path, with the cache built in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import stat
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ecos_jax.features.weights import load_pretrained

__all__ = [
    "FeatureCacheKey",
    "FeatureExtractor",
    "PretrainedExtractor",
    "batched_map",
    "cache_path",
    "cached_features",
    "check_images",
    "default_cache_dir",
    "extract_features",
    "resize_images",
]

#: Progress bars appear from this many batches on (when `progress` is None).
PROGRESS_MIN_BATCHES = 8


@runtime_checkable
class FeatureExtractor(Protocol):
    """A frozen, public feature map φ shared by the ECOS client and cloud.

    `name` must change whenever the features could (weights, resolution, dtype, fitted
    statistics): it is part of the cache key.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def __call__(self, images_NHWC: np.ndarray) -> np.ndarray: ...


class FeatureCacheKey(NamedTuple):
    """Which images were featurised: the extractor's name completes the cache key."""

    dataset: str
    version: str
    split: str
    domain: str


def check_images(images: Any, *, name: str = "images") -> np.ndarray:
    """Returns `images` as a uint8 [N, H, W, 3] array or raises naming the fix."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(
            f"{name} must be uint8 pixel values in [0, 255], got dtype {images.dtype}; "
            "convert with (x * 255).round().astype(np.uint8) for floats in [0, 1]."
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape [N, H, W, 3] (NHWC RGB), got {images.shape}; "
            "repeat grayscale to 3 channels with np.repeat(x[..., None], 3, axis=-1)."
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: give at least one image.")
    return images


def resize_images(
    images_NHWC: jax.Array, *, resolution: int, method: str = "bilinear"
) -> jax.Array:
    """Float32 images resized to resolution × resolution (antialiased when shrinking)."""
    x = images_NHWC.astype(jnp.float32)
    n, h, w, c = x.shape
    if (h, w) == (resolution, resolution):
        return x
    return jax.image.resize(x, (n, resolution, resolution, c), method, antialias=True)


def batched_map(
    fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    images: np.ndarray,
    *,
    batch_size: int,
    progress: bool | None = None,
    description: str = "features",
) -> np.ndarray:
    """Applies a jitted `fn(params, batch)` over fixed-size batches of `images`.

    The last batch is zero-padded to `batch_size` (capped at N), so `fn` compiles once;
    one batch is kept in flight while the previous one is copied back.

    Args:
      fn: jitted function of (params, uint8 batch [B, H, W, 3]) → [B, ...].
      params: pytree passed to every call (an argument, not a baked-in constant).
      images: uint8 [N, H, W, 3].
      batch_size: rows per call.
      progress: show a tqdm bar; None shows it from `PROGRESS_MIN_BATCHES` batches.
      description: the progress bar's label.

    Returns:
      np.ndarray [N, ...], the rows of `fn`'s outputs for the real images.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    n = images.shape[0]
    batch = min(batch_size, n)
    num_batches = -(-n // batch)
    if progress is None:
        progress = num_batches >= PROGRESS_MIN_BATCHES
    outputs: list[np.ndarray] = []
    bar = tqdm(total=n, desc=description, unit="img", disable=not progress)
    in_flight: tuple[jax.Array, int] | None = None
    for b in range(num_batches):
        chunk = images[b * batch : (b + 1) * batch]
        rows = chunk.shape[0]
        if rows < batch:
            pad = np.zeros((batch - rows, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        result = fn(params, jnp.asarray(chunk))
        if in_flight is not None:
            outputs.append(np.asarray(in_flight[0])[: in_flight[1]])
            bar.update(in_flight[1])
        in_flight = (result, rows)
    assert in_flight is not None
    outputs.append(np.asarray(in_flight[0])[: in_flight[1]])
    bar.update(in_flight[1])
    bar.close()
    return np.concatenate(outputs)


def default_cache_dir() -> pathlib.Path:
    """`$ECOS_JAX_CACHE_DIR/features`, else `~/.cache/ecos_jax/features`."""
    root = os.environ.get("ECOS_JAX_CACHE_DIR")
    base = pathlib.Path(root) if root else pathlib.Path.home() / ".cache" / "ecos_jax"
    return base / "features"


def _slug(text: str) -> str:
    """A file-name-safe rendering of `text` (readability only; the hash carries identity)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:64] or "_"


def _fingerprint(images: np.ndarray) -> str:
    """Hash of the images' shape and bytes: detects a stale entry under an unchanged key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(images.shape).encode())
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def cache_path(cache_dir: str | os.PathLike, cache_key: FeatureCacheKey, extractor_name: str):
    """The `.npz` file that holds the features of `cache_key` under `extractor_name`."""
    ident = json.dumps([*cache_key, extractor_name])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    dataset = _slug(f"{cache_key.dataset}-{cache_key.version}")
    file = f"{_slug(cache_key.split)}-{_slug(cache_key.domain)}-{_slug(extractor_name)}-{digest}"
    return pathlib.Path(cache_dir) / dataset / f"{file}.npz"


def _make_private_dir(directory: pathlib.Path) -> None:
    """Creates `directory` (in an existing parent) with mode 0700, or tightens it to 0700."""
    directory.mkdir(mode=0o700, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) != 0o700:
        os.chmod(directory, 0o700)


def _write_atomically(path: pathlib.Path, features: np.ndarray, meta: dict) -> None:
    """Writes the `.npz` (mode 0600) to a temporary file in the same folder, then renames it."""
    # Client features are private data: the entry is 0600, and the cache root and its dataset
    # folder (`cache_path`'s layout: root/dataset/entry) are 0700, tightened when an earlier
    # version made them wider. Folders above the root are not the cache's: left as they are.
    root = path.parent.parent
    root.parent.mkdir(parents=True, exist_ok=True)
    for directory in (root, path.parent):
        _make_private_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, features=features, meta=np.array(json.dumps(meta)))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # private features: owner only (mkstemp's mode, whatever the umask)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: pathlib.Path, *, meta: dict, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached features if the entry is intact and matches `meta` and `shape`, else None.

    A miss covers every bad state: absent, truncated, empty or CRC-corrupted file, a `meta`
    that is not this entry's dict, or features that are not finite float32 of `shape`.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            features, stored = data["features"], json.loads(str(data["meta"]))
    except Exception:
        # A damaged file raises whatever zipfile or NumPy trips over first (BadZipFile,
        # EOFError, KeyError, RuntimeError, ValueError, ...): each one is a miss.
        return None
    if stored != meta or features.dtype != np.float32 or features.shape != shape:
        return None
    if not np.isfinite(features).all():
        return None
    return features


def cached_features(
    extractor: FeatureExtractor,
    images: np.ndarray,
    *,
    cache_key: FeatureCacheKey | None,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """`extractor(images)`, read from / written to the disk cache when `cache_key` is set.

    The entry is keyed by `cache_key` and `extractor.name`, and also records a hash of
    the images: an entry whose images differ is recomputed and replaced, and so is one
    that is damaged or tampered with (unreadable, wrong meta, features that are not finite
    float32 [N, dim]). Writes are atomic (temporary file + `os.replace`), so an interrupted
    run leaves no entry, and private (files 0600 in folders 0700): client features.

    Args:
      extractor: any `FeatureExtractor`.
      images: uint8 [N, H, W, 3].
      cache_key: (dataset, version, split, domain) of `images`; None disables caching.
      cache_dir: cache root; None means `default_cache_dir()`.

    Returns:
      float32 features [N, extractor.dim].

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): φ is computed once per pool.
    """
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(f"extractor must provide name, dim and __call__, got {extractor!r}.")
    images = check_images(images)
    if cache_key is None:
        return _checked_output(extractor, extractor(images), images.shape[0])
    if not isinstance(cache_key, FeatureCacheKey):
        raise TypeError(
            "cache_key must be a FeatureCacheKey(dataset, version, split, domain), "
            f"got {cache_key!r}."
        )
    path = cache_path(
        cache_dir if cache_dir is not None else default_cache_dir(), cache_key, extractor.name
    )
    meta = {"key": list(cache_key), "extractor": extractor.name, "images": _fingerprint(images)}
    features = _read(path, meta=meta, shape=(images.shape[0], extractor.dim))
    if features is not None:
        return features
    features = _checked_output(extractor, extractor(images), images.shape[0])
    _write_atomically(path, features, meta)
    return features


def _checked_output(extractor: FeatureExtractor, features: Any, n: int) -> np.ndarray:
    """float32 [n, dim] or a clear error blaming the extractor."""
    features = np.asarray(features, np.float32)
    if features.shape != (n, extractor.dim):
        raise ValueError(
            f"extractor {extractor.name!r} returned shape {features.shape}, "
            f"expected {(n, extractor.dim)}."
        )
    return features


@dataclasses.dataclass(frozen=True, eq=False)
class PretrainedExtractor:
    """An ImageNet network (EfficientNet-Lite0 or MobileNetV2) as a `FeatureExtractor`.

    Images are resized to `resolution` (bilinear, antialiased) and normalised the way
    the network was trained; the 1280-d global-average-pooled features come back.
    Build with `PretrainedExtractor.create(...)`.
    """

    model: str
    module: nn.Module
    variables: Any
    resolution: int
    batch_size: int
    progress: bool | None
    forward: Callable[[Any, jax.Array], jax.Array]

    @classmethod
    def create(
        cls,
        model: str = "efficientnet_lite0",
        *,
        resolution: int | None = None,
        batch_size: int = 256,
        dtype: jnp.dtype = jnp.float32,
        progress: bool | None = None,
    ) -> PretrainedExtractor:
        """Loads the packaged weights; `resolution` None means the native 224 px."""
        module, variables = load_pretrained(model, dtype=dtype)
        if resolution is None:
            resolution = module.resolution
        if not isinstance(resolution, int) or resolution < 8:
            raise ValueError(f"resolution must be an int ≥ 8 pixels, got {resolution!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        variables = jax.tree_util.tree_map(jnp.asarray, variables)
        forward = _pretrained_forward(module, resolution)
        return cls(model, module, variables, resolution, batch_size, progress, forward)

    @property
    def name(self) -> str:
        return f"{self.model}-{self.resolution}px-{jnp.dtype(self.module.dtype).name}"

    @property
    def dim(self) -> int:
        return self.module.feature_dim

    def __call__(self, images_NHWC: np.ndarray) -> np.ndarray:
        images = check_images(images_NHWC)
        return batched_map(
            self.forward,
            self.variables,
            images,
            batch_size=self.batch_size,
            progress=self.progress,
            description=self.name,
        )


def _pretrained_forward(module: nn.Module, resolution: int) -> Callable:
    """The jitted uint8 batch → resize → normalise → network → float32 features."""

    @jax.jit
    def forward(variables, images_NHWC):
        x = resize_images(images_NHWC, resolution=resolution)
        return module.apply(variables, x).astype(jnp.float32)

    return forward


def extract_features(
    model: str | PretrainedExtractor,
    images: np.ndarray,
    *,
    resolution: int | None = None,
    batch_size: int = 256,
    dtype: jnp.dtype = jnp.float32,
    cache_key: FeatureCacheKey | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Pooled ImageNet features of uint8 images, batched, jitted and optionally cached.

    Args:
      model: 'efficientnet_lite0' (default), 'mobilenet_v2', or a `PretrainedExtractor`
        (then `resolution`, `batch_size` and `dtype` are taken from it).
      images: uint8 [N, H, W, 3], any H and W.
      resolution: side length the images are resized to; None: the native 224.
      batch_size: images per jitted call (the last batch is padded: one compile).
      dtype: computation dtype (float32 is the fast and exact choice on CPU).
      cache_key: (dataset, version, split, domain) of `images`; None: no caching.
      cache_dir: cache root; None: `default_cache_dir()`.
      progress: tqdm bar; None: shown for long runs.

    Returns:
      float32 features [N, 1280].

    Example:
      >>> x = np.zeros((4, 28, 28, 3), np.uint8)
      >>> extract_features("efficientnet_lite0", x, resolution=32).shape
      (4, 1280)

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): the shared frozen extractor φ.
    """
    if isinstance(model, PretrainedExtractor):
        extractor = model
    else:
        extractor = _extractor_for(model, resolution, batch_size, jnp.dtype(dtype), progress)
    return cached_features(extractor, images, cache_key=cache_key, cache_dir=cache_dir)


_EXTRACTORS: dict[tuple, PretrainedExtractor] = {}


def _extractor_for(model, resolution, batch_size, dtype, progress) -> PretrainedExtractor:
    """Memoised `PretrainedExtractor.create` (weights are read once per process)."""
    key = (model, resolution, batch_size, dtype.name, progress)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = PretrainedExtractor.create(
            model, resolution=resolution, batch_size=batch_size, dtype=dtype, progress=progress
        )
    return _EXTRACTORS[key]
