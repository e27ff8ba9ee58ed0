"""Adapters for real TFDS catalog datasets that the user has prepared in a data dir.

Nothing here downloads: the prepared files are looked for on disk first and a missing
dataset fails at once with a message naming it and saying how to prepare it. Reading needs
``array_record`` files (``tfrecord`` needs TensorFlow); images are decoded with PIL and
resized to the requested size.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ecos_jax.data.domains import TEST_ID_OFFSET, DomainArrays
from ecos_jax.data.paths import resolve_data_dir

__all__ = [
    "DOMAINNET_CLASSES",
    "DOMAINNET_DOMAINS",
    "CatalogDatasetMissingError",
    "CatalogDomain",
    "prepared_version_dir",
    "read_catalog_domain",
]

DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
# The 10-class DomainNet subset used by ECOS (Hong et al. 2022), in label order 0..9.
DOMAINNET_CLASSES = (
    "bird",
    "feather",
    "headphones",
    "ice_cream",
    "teapot",
    "tiger",
    "whale",
    "windmill",
    "wine_glass",
    "zebra",
)
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


class CatalogDatasetMissingError(FileNotFoundError):
    """A TFDS catalog dataset that is not prepared (as array_record) in the data dir."""


class CatalogDomain(NamedTuple):
    """Where one domain of a catalog-backed benchmark comes from."""

    dataset: str  # TFDS name, e.g. "svhn_cropped" or "domainnet"
    config: str | None  # TFDS config, e.g. "clipart"; None for unconfigured datasets
    class_names: tuple[str, ...] | None  # keep these classes, relabelled 0..n-1; None: all
    has_digit_labels: bool  # False: an unrelated junk domain, label -1


def _prepare_hint(full_name: str, data_dir: pathlib.Path) -> str:
    return (
        f"Prepare it on a machine with network access and TensorFlow:\n"
        f"  tfds build {full_name} --data_dir {data_dir} --file_format array_record\n"
        f"(or copy an array_record build into {data_dir}/{full_name}/<version>/). "
        "ecos_jax never downloads catalog datasets itself."
    )


def prepared_version_dir(
    dataset: str, config: str | None = None, *, data_dir: str | os.PathLike | None = None
) -> pathlib.Path:
    """The newest prepared version folder of a catalog dataset, checked before TFDS is asked.

    Args:
      dataset: TFDS catalog name, e.g. ``"mnist"``.
      config: TFDS config name, or None.
      data_dir: TFDS data dir (None: ``$ECOS_DATA_DIR``, else ``~/.cache/ecos_jax/tfds``).

    Returns:
      ``<data_dir>/<dataset>[/<config>]/<version>`` holding ``dataset_info.json`` and
      array_record files for its train and test splits.

    Raises:
      CatalogDatasetMissingError: naming the dataset and how to prepare it, without any
        network access.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575): Digits and DomainNet benchmarks.
    """
    root = resolve_data_dir(data_dir)
    full_name = dataset if config is None else f"{dataset}/{config}"
    base = root / full_name
    versions = []
    if base.is_dir():
        versions = [
            p
            for p in base.iterdir()
            if _VERSION_RE.match(p.name) and (p / "dataset_info.json").is_file()
        ]
    if not versions:
        raise CatalogDatasetMissingError(
            f"TFDS dataset '{full_name}' is not prepared in {root} (no "
            f"{base}/<version>/dataset_info.json). {_prepare_hint(full_name, root)}"
        )
    version_dir = max(versions, key=lambda p: tuple(int(x) for x in p.name.split(".")))
    for split in ("train", "test"):
        if not list(version_dir.glob(f"{dataset}-{split}.array_record-*")):
            other = [p.name for p in version_dir.glob(f"{dataset}-{split}.*")]
            found = f" (found {other[0]}, another file format)" if other else ""
            raise CatalogDatasetMissingError(
                f"TFDS dataset '{full_name}' in {version_dir} has no array_record files for "
                f"split '{split}'{found}; reading without TensorFlow needs array_record. "
                f"Convert it with `tfds convert_format --dataset_version_dir {version_dir} "
                f"--out_file_format array_record`, or rebuild it. "
                f"{_prepare_hint(full_name, root)}"
            )
    return version_dir


def _to_rgb(image: np.ndarray, image_size: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    pil = Image.fromarray(image.astype(np.uint8)).convert("RGB")
    if pil.size != (image_size, image_size):
        pil = pil.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(pil, np.uint8)


def read_catalog_domain(
    domain: CatalogDomain,
    split: str,
    *,
    data_dir: str | os.PathLike | None,
    cap: int | None,
    rng: np.random.Generator,
    image_size: int,
) -> DomainArrays:
    """One split of a catalog domain as ``DomainArrays`` (images resized to ``image_size``).

    Ids are record indices in the prepared files (test ids offset by ``TEST_ID_OFFSET``),
    stable for a given preparation. With ``class_names`` set, only those classes are kept
    (labels are read first, images decoded only for the chosen records).
    """
    version_dir = prepared_version_dir(domain.dataset, domain.config, data_dir=data_dir)
    builder = tfds.builder_from_directory(str(version_dir))
    label_feature = builder.info.features["label"]
    labels_only = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    num = len(labels_only)
    if num >= TEST_ID_OFFSET:
        raise ValueError(f"{domain.dataset} {split} has {num} records; ids would collide")
    if domain.class_names is None:
        index = np.arange(num)
        labels = None
    else:
        names = list(label_feature.names)
        missing = [c for c in domain.class_names if c not in names]
        if missing:
            raise ValueError(f"{domain.dataset} has no classes {missing}")
        relabel = np.full(len(names), -1, np.int64)
        relabel[[names.index(c) for c in domain.class_names]] = np.arange(len(domain.class_names))
        all_labels = relabel[[int(r["label"]) for r in labels_only.__getitems__(range(num))]]
        index = np.flatnonzero(all_labels >= 0)
        labels = all_labels[index]
    if cap is not None and cap < len(index):
        pick = np.sort(rng.permutation(len(index))[:cap])
        index = index[pick]
        labels = None if labels is None else labels[pick]
    records = builder.as_data_source(split).__getitems__(index.tolist()) if len(index) else []
    images = np.zeros((len(records), image_size, image_size, 3), np.uint8)
    for i, record in enumerate(records):
        images[i] = _to_rgb(record["image"], image_size)
    if labels is None:
        labels = np.array([int(r["label"]) for r in records], np.int64)
    if not domain.has_digit_labels:
        labels = np.full(len(index), -1, np.int64)
    ids = index.astype(np.int64) + (TEST_ID_OFFSET if split == "test" else 0)
    return DomainArrays(images, np.asarray(labels, np.int64), ids)
