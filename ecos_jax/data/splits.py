"""The client/cloud split of a multi-domain benchmark: one function, ``load_split``.

The client domain's train split goes to the client (all of it, or half), the cloud's pool
gathers the rest, and the client domain's test split is held out for evaluation. The pool's
class and domain labels sit in a separate ``PoolOracle``: they are for evaluation and
oracle labelling only, never for selection.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from PIL import Image

from ecos_jax.data import builder as builder_lib
from ecos_jax.data import catalog
from ecos_jax.data.domains import DIGIT_DOMAINS, UNRELATED_DOMAINS, DomainArrays
from ecos_jax.data.sources import SourceUnavailableError

__all__ = [
    "DATASETS",
    "REGIMES",
    "DatasetSpec",
    "LabeledImages",
    "PoolOracle",
    "Split",
    "load_split",
]

REGIMES = ("ood", "id+ood", "id")


class DatasetSpec(NamedTuple):
    """A multi-domain benchmark: its domains and where they come from."""

    domains: tuple[str, ...]  # domains with class labels 0..9
    unrelated: tuple[str, ...]  # junk domains (label -1) joined to the pool by flag
    image_size: int  # default output size
    catalog: Mapping[str, catalog.CatalogDomain] | None  # None: the offline ecos_digits build


DATASETS = {
    "digits": DatasetSpec(DIGIT_DOMAINS, UNRELATED_DOMAINS, 28, None),
    "tfds_digits": DatasetSpec(
        ("mnist", "svhn_cropped"),
        ("cifar10",),
        32,
        {
            "mnist": catalog.CatalogDomain("mnist", None, None, True),
            "svhn_cropped": catalog.CatalogDomain("svhn_cropped", None, None, True),
            "cifar10": catalog.CatalogDomain("cifar10", None, None, False),
        },
    ),
    "domainnet": DatasetSpec(
        catalog.DOMAINNET_DOMAINS,
        (),
        64,
        {
            d: catalog.CatalogDomain("domainnet", d, catalog.DOMAINNET_CLASSES, True)
            for d in catalog.DOMAINNET_DOMAINS
        },
    ),
}


class LabeledImages(NamedTuple):
    """Images with class labels (the client's train set, or the client domain's test set)."""

    images: np.ndarray  # [N, S, S, 3] uint8
    labels: np.ndarray  # [N] int64, 0..num_classes-1
    ids: np.ndarray  # [N] int64, unique within the domain


class PoolOracle(NamedTuple):
    """What the cloud does not know about its pool: for evaluation and oracle labelling only."""

    labels: np.ndarray  # [M] int64 class labels, -1 for unrelated domains
    domains: np.ndarray  # [M] int32 index into ``Split.domains``
    ids: np.ndarray  # [M] int64, unique together with the domain


class Split(NamedTuple):
    """One client/cloud split (see ``load_split``)."""

    client: LabeledImages  # the client's private train set (client domain only)
    pool_images: np.ndarray  # [M, S, S, 3] uint8, the cloud's unlabeled pool (shuffled)
    pool_oracle: PoolOracle  # row-aligned with pool_images
    test: LabeledImages  # the client domain's test split
    domains: tuple[str, ...]  # names indexed by pool_oracle.domains
    client_domain: str
    regime: str


def _check_caps(caps, names: tuple[str, ...]) -> dict[str, int | None]:
    if caps is None:
        return dict.fromkeys(names)
    if isinstance(caps, Mapping):
        unknown = set(caps) - set(names)
        if unknown:
            raise ValueError(f"caps names unknown domains {sorted(unknown)}; known: {names}")
        out = {n: caps.get(n) for n in names}
    else:
        out = dict.fromkeys(names, caps)
    for name, cap in out.items():
        if cap is not None and (not isinstance(cap, int | np.integer) or cap < 2):
            raise ValueError(f"caps[{name!r}] must be an int >= 2 or None, got {cap!r}")
    return out


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(pil)
    return out


def _read_offline(name, split, *, data_dir, cap, rng, build_counts, generation_seed):
    num_train, num_test = build_counts if build_counts is not None else (None, None)
    built = builder_lib.prepare_domain(
        name, data_dir=data_dir, num_train=num_train, num_test=num_test, seed=generation_seed
    )
    source = built.as_data_source(split)
    index = np.arange(len(source))
    if cap is not None and cap < len(index):
        index = np.sort(rng.permutation(len(index))[:cap])
    records = source.__getitems__(index.tolist())
    order = np.argsort([int(r["id"]) for r in records], kind="stable")
    records = [records[i] for i in order]
    if any(r["domain"].decode() != name for r in records):
        raise RuntimeError(f"records of {built.data_dir} name another domain")
    return DomainArrays(
        np.stack([r["image"] for r in records]).astype(np.uint8),
        np.array([int(r["label"]) for r in records], np.int64),
        np.array([int(r["id"]) for r in records], np.int64),
    )


def load_split(
    dataset: str,
    client_domain: str,
    regime: str,
    seed: int,
    caps: int | Mapping[str, int] | None = None,
    *,
    domains: tuple[str, ...] | None = None,
    include_unrelated: bool = False,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    build_counts: tuple[int, int] | None = None,
    generation_seed: int = 0,
) -> Split:
    """The client/cloud split of a multi-domain benchmark, as NumPy arrays.

    Regimes: ``"ood"``, the client domain's train split wholly on the client and the other
    domains' train splits as the pool (Digits-style); ``"id+ood"``, half of the client
    domain to the client and the other half plus the other domains to the pool
    (DomainNet-style); ``"id"``, half to the client and the other half alone as the pool.

    Args:
      dataset: ``"digits"`` (offline, built on first use), ``"tfds_digits"`` (catalog
        ``mnist`` + ``svhn_cropped``, unrelated ``cifar10``) or ``"domainnet"`` (catalog,
        6 domains, 10-class subset). Catalog datasets must be prepared in ``data_dir``.
      client_domain: the client's domain, one of the dataset's labelled domains.
      regime: one of ``REGIMES``.
      seed: seed of the split (caps, halves, pool order); the data themselves do not move.
      caps: per-domain cap on examples read from each train split and from the client's
        test split: an int for all domains, a mapping domain -> int, or None (no cap).
      domains: the labelled domains to use (default: all of the dataset's); must include
        ``client_domain``. Unrelated domains named here are required.
      include_unrelated: add the dataset's unrelated domains (label -1) to the pool; offline
        ones whose source is not installed are skipped with a warning, a catalog one that
        is not prepared raises like any other catalog dataset.
      data_dir: TFDS data dir (None: ``$ECOS_DATA_DIR``, else ``~/.cache/ecos_jax/tfds``).
      image_size: output side in pixels (None: the dataset's default: 28, 32 or 64).
      build_counts: (train, test) examples per offline domain to build; None builds the
        full benchmark. Small values give fast test and smoke builds.
      generation_seed: seed of the offline benchmark's generation.

    Returns:
      A ``Split``; client, pool and test are disjoint by (domain, id).

    Raises:
      ValueError: for an unknown dataset, domain or regime, or bad caps.
      ecos_jax.data.catalog.CatalogDatasetMissingError: a catalog dataset not prepared.
      ecos_jax.data.sources.SourceUnavailableError: an explicitly requested offline
        domain whose source is not installed.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575), Sec. 5 (Digits and DomainNet
      protocols).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {tuple(DATASETS)}")
    spec = DATASETS[dataset]
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if client_domain not in spec.domains:
        raise ValueError(
            f"client_domain {client_domain!r} is not a labelled domain of {dataset!r}; "
            f"choose one of {spec.domains}"
        )
    known = spec.domains + spec.unrelated
    chosen = spec.domains if domains is None else tuple(domains)
    unknown = [d for d in chosen if d not in known]
    if unknown or client_domain not in chosen or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"domains must be distinct names from {known} including client_domain "
            f"{client_domain!r}; got {chosen}"
        )
    if regime == "id":
        chosen = (client_domain, *(d for d in chosen if d in spec.unrelated))
    optional = tuple(d for d in spec.unrelated if include_unrelated and d not in chosen)
    size = spec.image_size if image_size is None else int(image_size)
    if size < 8:
        raise ValueError(f"image_size must be >= 8, got {size}")
    cap_of = _check_caps(caps, known)

    def read(name: str, split: str) -> DomainArrays:
        rng = np.random.default_rng([seed, known.index(name), 0 if split == "train" else 1])
        if spec.catalog is None:
            arrays = _read_offline(
                name, split, data_dir=data_dir, cap=cap_of[name], rng=rng,
                build_counts=build_counts, generation_seed=generation_seed,
            )  # fmt: skip
        else:
            arrays = catalog.read_catalog_domain(
                spec.catalog[name], split, data_dir=data_dir, cap=cap_of[name], rng=rng,
                image_size=size,
            )  # fmt: skip
        return arrays._replace(images=_resize(arrays.images, size))

    parts: dict[str, DomainArrays] = {d: read(d, "train") for d in chosen}
    for name in optional:
        try:
            parts[name] = read(name, "train")
        except SourceUnavailableError as err:
            warnings.warn(f"unrelated domain {name} skipped: {err}", stacklevel=2)
    names = tuple(parts)
    if regime == "ood" and len(names) < 2:
        raise ValueError(f"regime 'ood' needs a domain besides {client_domain!r} for the pool")
    own = parts[client_domain]
    if regime == "ood":
        client_idx, pool_own = np.arange(len(own.ids)), np.arange(0)
    else:
        half = np.random.default_rng([seed, len(known)]).permutation(len(own.ids))
        client_idx, pool_own = np.sort(half[: len(half) // 2]), np.sort(half[len(half) // 2 :])
    pool_parts = [(client_domain, pool_own)] if regime != "ood" else []
    pool_parts += [(d, np.arange(len(parts[d].ids))) for d in names if d != client_domain]
    take = lambda d, idx, field: getattr(parts[d], field)[idx]
    pool_domain = np.concatenate(
        [np.full(len(idx), names.index(d), np.int32) for d, idx in pool_parts]
        or [np.zeros(0, np.int32)]
    )
    order = np.random.default_rng([seed, len(known) + 1]).permutation(len(pool_domain))

    def pool_field(field: str) -> np.ndarray:
        return np.concatenate([take(d, idx, field) for d, idx in pool_parts])[order]

    test = read(client_domain, "test")
    return Split(
        client=LabeledImages(own.images[client_idx], own.labels[client_idx], own.ids[client_idx]),
        pool_images=pool_field("images"),
        pool_oracle=PoolOracle(pool_field("labels"), pool_domain[order], pool_field("ids")),
        test=LabeledImages(test.images, test.labels, test.ids),
        domains=names,
        client_domain=client_domain,
        regime=regime,
    )
