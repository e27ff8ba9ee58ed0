"""Rendering helpers for the generated digit domains: glyph masks, colours, blending, jitter.

All randomness comes from an explicit ``np.random.Generator``; with the same generator
state and the same installed fonts, the output is bit-identical.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "blend_absolute_difference",
    "colour_jitter",
    "composite",
    "contrasting_colours",
    "digit_string_mask",
    "gaussian_blur",
    "load_font",
]

_FONT_PX = 40  # glyphs are drawn large, then resampled down to the output size
_CANVAS_WH = (4 * _FONT_PX, 3 * _FONT_PX)


@functools.cache
def load_font(path: str) -> ImageFont.FreeTypeFont:
    """A cached FreeType font at the drawing size."""
    return ImageFont.truetype(path, _FONT_PX)


def contrasting_colours(
    rng: np.random.Generator, *, min_l1: int, against: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A (background, foreground) RGB pair at least ``min_l1`` apart in L1 (uint8 [3] each).

    With ``against`` given, it is the background and only the foreground is drawn.
    """
    if not 0 < min_l1 <= 3 * 255:
        raise ValueError(f"min_l1 must lie in (0, 765], got {min_l1}")
    while True:
        bg = rng.integers(0, 256, size=3) if against is None else np.asarray(against, np.int64)
        fg = rng.integers(0, 256, size=3)
        if np.abs(bg - fg).sum() >= min_l1:
            return bg.astype(np.uint8), fg.astype(np.uint8)


def digit_string_mask(
    rng: np.random.Generator,
    label: int,
    font_path: str,
    *,
    size: int,
    neighbour_prob: float,
    max_rotation_deg: float,
    crop_scale: tuple[float, float],
    max_shift: float,
) -> np.ndarray:
    """Coverage mask (float32 ``[size, size]`` in [0, 1]) of digit ``label`` centred in a string.

    Each side gets one random neighbouring digit with probability ``neighbour_prob``; the
    string is rotated by up to ``max_rotation_deg`` about the centre digit, then a square
    of ``crop_scale`` times the digit height (shifted by up to ``max_shift`` of its side)
    is resampled to ``size`` pixels, so neighbours show only in part, as in street numbers.
    """
    font = load_font(font_path)
    digit = str(label)
    left = str(rng.integers(0, 10)) if rng.random() < neighbour_prob else ""
    right = str(rng.integers(0, 10)) if rng.random() < neighbour_prob else ""
    x0_box, top, x1_box, bottom = font.getbbox(digit, anchor="ls")
    width, height = _CANVAS_WH
    origin_x = width / 2 - font.getlength(left) - (x0_box + x1_box) / 2
    origin_y = height / 2 - (top + bottom) / 2
    canvas = Image.new("L", _CANVAS_WH)
    ImageDraw.Draw(canvas).text(
        (origin_x, origin_y), left + digit + right, fill=255, font=font, anchor="ls"
    )
    angle = rng.uniform(-max_rotation_deg, max_rotation_deg)
    canvas = canvas.rotate(angle, resample=Image.Resampling.BILINEAR)
    side = max(bottom - top, 0.6 * _FONT_PX) * rng.uniform(*crop_scale)
    cx = width / 2 + side * rng.uniform(-max_shift, max_shift)
    cy = height / 2 + side * rng.uniform(-max_shift, max_shift)
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    out = canvas.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out, np.float32) / 255.0


def composite(background: np.ndarray, foreground: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``background * (1 - mask) + foreground * mask`` as uint8 ``[H, W, 3]``.

    ``background`` is ``[H, W, 3]`` or an RGB colour ``[3]``; ``foreground`` an RGB colour.
    """
    bg = np.broadcast_to(np.asarray(background, np.float32), (*mask.shape, 3))
    fg = np.asarray(foreground, np.float32)
    out = bg * (1.0 - mask[..., None]) + fg * mask[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blend_absolute_difference(patches: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """MNIST-M blend ``|patch - digit|`` per channel: ``[N, H, W, 3]`` and ``[N, H, W]`` uint8."""
    diff = np.abs(patches.astype(np.int16) - digits[..., None].astype(np.int16))
    return diff.astype(np.uint8)


def gaussian_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """PIL Gaussian blur of a uint8 RGB image; ``radius`` 0 returns it unchanged."""
    if radius <= 0:
        return image
    blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, np.uint8)


def colour_jitter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Street-photo style jitter: contrast, brightness, per-channel gain and sensor noise."""
    x = image.astype(np.float32)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.6, 1.2) + mean + rng.uniform(-30.0, 30.0)
    x = x * rng.uniform(0.75, 1.25, size=3)
    x = x + rng.normal(0.0, rng.uniform(0.0, 6.0), size=x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
