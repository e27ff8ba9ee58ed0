"""Montages of the offline Digits benchmark: one PNG per domain and one combined.

Usage::

  python -m ecos_jax.data.show --out DIR [--data_dir D] [--per_class 12]
      [--num_train N --num_test M]

Per domain, ``montage_<domain>.png`` shows a row of training examples per class (junk
domains without digit labels: rows of random examples); ``montage_digits.png`` stacks
one row per domain with one example of each digit 0..9, twice over.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw

from ecos_jax.data.build import build_benchmark
from ecos_jax.data.builder import prepare_domain
from ecos_jax.data.domains import DOMAIN_SPECS

__all__ = [
    "class_rows",
    "grid_image",
    "main",
    "write_montages",
]

_SCALE = 2  # nearest-neighbour upscaling so 28-pixel digits are legible
_LABEL_WIDTH = 150


def class_rows(
    images: np.ndarray, labels: np.ndarray, *, per_class: int, rng: np.random.Generator
) -> np.ndarray:
    """A ``[rows, per_class, H, W, 3]`` grid: row c holds examples of class c (0..9), or
    random examples in 10 rows when labels are all -1. Missing cells stay black."""
    rows = np.zeros((10, per_class, *images.shape[1:]), np.uint8)
    for c in range(10):
        pool = np.flatnonzero(labels == c) if (labels >= 0).any() else np.arange(len(labels))
        pick = rng.permutation(pool)[:per_class]
        rows[c, : len(pick)] = images[pick]
    return rows


def grid_image(rows: np.ndarray, names: list[str] | None = None) -> Image.Image:
    """Tiles a ``[R, C, H, W, 3]`` grid into one upscaled image, names written at the left."""
    r, c, h, w, _ = rows.shape
    tiles = rows.transpose(0, 2, 1, 3, 4).reshape(r * h, c * w, 3)
    image = Image.fromarray(tiles).resize((c * w * _SCALE, r * h * _SCALE), Image.NEAREST)
    if names is None:
        return image
    canvas = Image.new("RGB", (image.width + _LABEL_WIDTH, image.height), "white")
    canvas.paste(image, (_LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(names):
        draw.text((4, i * h * _SCALE + h * _SCALE // 2), name, fill="black", anchor="lm")
    return canvas


def _read_some(built, num: int) -> tuple[np.ndarray, np.ndarray]:
    source = built.as_data_source("train")
    records = source.__getitems__(list(range(min(num, len(source)))))
    return np.stack([r["image"] for r in records]), np.array([r["label"] for r in records])


def write_montages(
    out: pathlib.Path,
    *,
    data_dir: str | None = None,
    per_class: int = 12,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
) -> list[pathlib.Path]:
    """Writes one montage per available domain plus ``montage_digits.png``; returns paths.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575), Digits benchmark.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    out.mkdir(parents=True, exist_ok=True)
    built_domains = build_benchmark(
        data_dir=data_dir, num_train=num_train, num_test=num_test, seed=seed
    )
    rng = np.random.default_rng(seed)
    paths, combined, names = [], [], []
    for domain in built_domains:
        built = prepare_domain(
            domain, data_dir=data_dir, num_train=num_train, num_test=num_test, seed=seed
        )
        images, labels = _read_some(built, 600)
        rows = class_rows(images, labels, per_class=per_class, rng=rng)
        row_names = [str(c) for c in range(10)] if DOMAIN_SPECS[domain].has_digit_labels else None
        path = out / f"montage_{domain}.png"
        grid_image(rows, row_names).save(path)
        paths.append(path)
        if DOMAIN_SPECS[domain].has_digit_labels:
            # One row per domain: digits 0..9, then 0..9 again with other examples.
            pair = class_rows(images, labels, per_class=2, rng=rng)
            combined.append(pair.transpose(1, 0, 2, 3, 4).reshape(20, *images.shape[1:]))
            names.append(f"{domain} ({DOMAIN_SPECS[domain].kind})")
    path = out / "montage_digits.png"
    grid_image(np.stack(combined), names).save(path)
    paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--per_class", type=int, default=12)
    parser.add_argument("--num_train", type=int, default=None)
    parser.add_argument("--num_test", type=int, default=None)
    args = parser.parse_args(argv)
    paths = write_montages(
        args.out,
        data_dir=args.data_dir,
        per_class=args.per_class,
        num_train=args.num_train,
        num_test=args.num_test,
    )
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
