"""Font discovery for rendered digits: matplotlib's bundled fonts plus the system's.

A font is kept when it renders the ten digits as ten distinct, non-empty glyphs (fonts
without digits render one "missing glyph" box for all ten) and its digits differ pixel for
pixel from every font kept before it (Noto's per-script fonts reuse Noto Sans digits).
Math-symbol fonts that map digit code points to symbols are excluded by name.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "MIN_EXTRA_FAMILIES",
    "SYSTEM_FONT_DIRS",
    "Font",
    "digit_fonts",
    "font_families",
]

SYSTEM_FONT_DIRS = (pathlib.Path("/usr/share/fonts"), pathlib.Path("/usr/local/share/fonts"))
MIN_EXTRA_FAMILIES = 10
# Symbol fonts whose digit code points hold math symbols or size variants.
_SYMBOL_FONT_PREFIXES = ("cmex", "cmsy", "STIXSiz", "STIXNonUni", "LastResort", "D050000L")


class Font(NamedTuple):
    """A usable digit font."""

    path: str
    family: str
    bundled_with_matplotlib: bool


def _matplotlib_font_dir() -> pathlib.Path:
    import matplotlib

    return pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _digit_masks(font: ImageFont.FreeTypeFont) -> list[bytes] | None:
    """The ten digit glyphs as bitmaps, or None when the font cannot render them."""
    masks = []
    for digit in "0123456789":
        image = Image.new("L", (48, 48))
        ImageDraw.Draw(image).text((24, 24), digit, fill=255, font=font, anchor="mm")
        mask = np.asarray(image) > 127
        if not mask.any():
            return None
        masks.append(np.packbits(mask).tobytes())
    return masks if len(set(masks)) == 10 else None


@functools.cache
def digit_fonts(extra_dirs: tuple[pathlib.Path, ...] = SYSTEM_FONT_DIRS) -> tuple[Font, ...]:
    """All fonts that render distinct digits: matplotlib's first, then the system's (sorted).

    Args:
      extra_dirs: folders searched recursively for ``*.ttf`` and ``*.otf`` files.

    Returns:
      The usable fonts, duplicates (same digit bitmaps) removed. Warns when fewer than
      ``MIN_EXTRA_FAMILIES`` font families beyond matplotlib's were found.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575): the Digits benchmark's rendered
      domain follows Ganin & Lempitsky's SynthDigits recipe.
    """
    candidates = [(p, True) for p in sorted(_matplotlib_font_dir().glob("*.ttf"))]
    for folder in extra_dirs:
        if folder.is_dir():
            found = sorted({*folder.rglob("*.ttf"), *folder.rglob("*.otf")})
            candidates += [(p, False) for p in found]
    fonts, seen = [], set()
    for path, bundled in candidates:
        if path.name.startswith(_SYMBOL_FONT_PREFIXES):
            continue
        try:
            font = ImageFont.truetype(str(path), 32)
        except OSError:
            continue
        masks = _digit_masks(font)
        if masks is None:
            continue
        digest = hashlib.sha256(b"".join(masks)).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        family = font.getname()[0] or path.stem
        fonts.append(Font(str(path), family, bundled))
    extra = {f.family for f in fonts if not f.bundled_with_matplotlib}
    if len(extra) < MIN_EXTRA_FAMILIES:
        warnings.warn(
            f"only {len(extra)} font families found beyond matplotlib's (want "
            f">= {MIN_EXTRA_FAMILIES}); install the Debian fonts-* packages listed in "
            "scripts/install.sh for more varied rendered digits",
            stacklevel=2,
        )
    return tuple(fonts)


def font_families(fonts: tuple[Font, ...]) -> dict[str, list[Font]]:
    """Fonts grouped by family name, families in first-seen order."""
    groups: dict[str, list[Font]] = {}
    for font in fonts:
        groups.setdefault(font.family, []).append(font)
    return groups
