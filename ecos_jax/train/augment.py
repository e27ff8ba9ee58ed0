"""Image augmentation in pure JAX: weak (pad-and-crop, flip) and strong (RandAugment-style).

FixMatch (ECOS task (a)) needs a weak and a strong view of each unlabeled image. Both
functions take `key` first, work on batches [N, H, W, C] with values in [0, 255] (uint8 or
float), return the same shape and dtype, and compile once per shape: every image draws
its own random parameters, and the strong ops are chosen per image with `lax.switch`
under `vmap`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ecos_jax._validate import check_key

__all__ = ["STRONG_OPS", "strong_augment", "weak_augment"]


def _check_images(images: jax.Array) -> None:
    """Raises unless `images` is a batch [N, H, W, C]."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}; add a batch axis")


def _to_input_dtype(x: jax.Array, dtype) -> jax.Array:
    """Clips to [0, 255] and casts back (rounding for integer dtypes)."""
    x = jnp.clip(x, 0.0, 255.0)
    if jnp.issubdtype(dtype, jnp.integer):
        x = jnp.round(x)
    return x.astype(dtype)


@functools.partial(jax.jit, static_argnames=("pad", "flip"))
def weak_augment(key: jax.Array, images: jax.Array, *, pad: int = 2, flip: bool = False):
    """Random crop after `pad`-pixel reflect padding, and an optional horizontal flip.

    Args:
      key: a `jax.random.key`.
      images: [N, H, W, C] with values in [0, 255], uint8 or float.
      pad: padding in pixels on each side (2 for 28 px digits, 4 for 32 px photos).
      flip: also flip half of the images left-right (off for digits: it changes them).

    Returns:
      Augmented images, same shape and dtype as `images`.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    check_key(key, "key")
    _check_images(images)
    n, h, w, c = images.shape
    if not 0 <= pad < min(h, w):
        raise ValueError(f"pad must be in [0, {min(h, w)}) for {h}×{w} images, got {pad}")
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    k_y, k_x, k_flip = jax.random.split(key, 3)
    ys = jax.random.randint(k_y, (n,), 0, 2 * pad + 1)
    xs = jax.random.randint(k_x, (n,), 0, 2 * pad + 1)
    crop = lambda img, y, x: jax.lax.dynamic_slice(img, (y, x, 0), (h, w, c))
    out = jax.vmap(crop)(padded, ys, xs)
    if flip:
        flips_N = jax.random.bernoulli(k_flip, 0.5, (n,))
        out = jnp.where(flips_N[:, None, None, None], out[:, :, ::-1], out)
    return out


# Strong ops: (image [H, W, C] float in [0, 255], strength in [0, 1], sign ±1, key) -> image.
def _identity(x, s, sign, key):
    del s, sign, key
    return x


def _brightness(x, s, sign, key):
    del key
    return x * (1.0 + 0.9 * s * sign)


def _contrast(x, s, sign, key):
    del key
    mean = jnp.mean(x)
    return (x - mean) * (1.0 + 0.9 * s * sign) + mean


def _solarize(x, s, sign, key):
    del sign, key
    threshold = 256.0 * (1.0 - s)
    return jnp.where(x >= threshold, 255.0 - x, x)


def _posterize(x, s, sign, key):
    del sign, key
    step = 2.0 ** jnp.round(4.0 * s)  # keep 8 - round(4 s) bits
    return jnp.floor(x / step) * step


def _autocontrast(x, s, sign, key):
    del s, sign, key
    lo = jnp.min(x, axis=(0, 1), keepdims=True)
    hi = jnp.max(x, axis=(0, 1), keepdims=True)
    scale = jnp.where(hi > lo, 255.0 / jnp.maximum(hi - lo, 1e-6), 1.0)
    return jnp.where(hi > lo, (x - lo) * scale, x)


def _shift(x, offset, axis):
    """Shifts `x` by an integer `offset` along `axis`, filling with zeros."""
    size = x.shape[axis]
    src = jnp.arange(size) - offset
    valid = (src >= 0) & (src < size)
    moved = jnp.take(x, jnp.clip(src, 0, size - 1), axis=axis)
    shape = [1, 1, 1]
    shape[axis] = size
    return jnp.where(valid.reshape(shape), moved, 0.0)


def _translate_x(x, s, sign, key):
    del key
    return _shift(x, jnp.round(0.3 * x.shape[1] * s * sign).astype(jnp.int32), axis=1)


def _translate_y(x, s, sign, key):
    del key
    return _shift(x, jnp.round(0.3 * x.shape[0] * s * sign).astype(jnp.int32), axis=0)


def _cutout(x, s, sign, key):
    del sign
    h, w, _ = x.shape
    half = jnp.round(0.25 * min(h, w) * s)  # side up to half the image
    cy, cx = jax.random.randint(key, (2,), 0, jnp.array([h, w]))
    ys = jnp.arange(h)[:, None, None]
    xs = jnp.arange(w)[None, :, None]
    inside = (jnp.abs(ys - cy) < half) & (jnp.abs(xs - cx) < half)
    return jnp.where(inside, 127.5, x)


STRONG_OPS = (
    _identity,
    _brightness,
    _contrast,
    _solarize,
    _posterize,
    _autocontrast,
    _translate_x,
    _translate_y,
    _cutout,
)


def _strong_one(key, image, magnitude, num_ops):
    """Applies `num_ops` random ops to one image [H, W, C] (float)."""
    for k in jax.random.split(key, num_ops):
        k_op, k_s, k_sign, k_arg = jax.random.split(k, 4)
        op = jax.random.randint(k_op, (), 0, len(STRONG_OPS))
        s = jax.random.uniform(k_s) * magnitude
        sign = jnp.where(jax.random.bernoulli(k_sign), 1.0, -1.0)
        image = jnp.clip(jax.lax.switch(op, STRONG_OPS, image, s, sign, k_arg), 0.0, 255.0)
    return image


@functools.partial(jax.jit, static_argnames=("num_ops",))
def _strong_augment(key: jax.Array, images: jax.Array, magnitude, *, num_ops: int) -> jax.Array:
    """The compiled body of `strong_augment` (one compile per shape, dtype and num_ops)."""
    keys = jax.random.split(key, images.shape[0])
    x = images.astype(jnp.float32)
    out = jax.vmap(_strong_one, in_axes=(0, 0, None, None))(keys, x, magnitude, num_ops)
    return _to_input_dtype(out, images.dtype)


def strong_augment(
    key: jax.Array, images: jax.Array, *, num_ops: int = 2, magnitude: float = 1.0
) -> jax.Array:
    """RandAugment-style strong augmentation: `num_ops` random ops per image.

    The ops are identity, brightness, contrast, solarize, posterize, autocontrast,
    translate-x, translate-y and cutout (`STRONG_OPS`). Each image draws its own ops and,
    for each op, a strength uniform in [0, `magnitude`] and a direction, as FixMatch's
    RandAugment variant does.

    Args:
      key: a `jax.random.key`.
      images: [N, H, W, C] with values in [0, 255], uint8 or float.
      num_ops: ops per image (static).
      magnitude: largest strength, in [0, 1] (traced: changing it does not recompile).

    Returns:
      Augmented images, same shape and dtype as `images`, values in [0, 255].

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
      Sohn et al. "FixMatch." NeurIPS 2020. Cubuk et al. "RandAugment." NeurIPS 2020.
    """
    check_key(key, "key")
    _check_images(images)
    if num_ops < 1:
        raise ValueError(f"num_ops must be >= 1, got {num_ops}")
    if isinstance(magnitude, int | float) and not 0.0 <= magnitude <= 1.0:
        raise ValueError(f"magnitude must be in [0, 1], got {magnitude}")
    return _strong_augment(key, images, jnp.float32(magnitude), num_ops=num_ops)
