"""Catalog adapters: a missing dataset fails fast without network; prepared ones load."""

import io
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ecos_jax.data import (
    DOMAINNET_CLASSES,
    CatalogDatasetMissingError,
    load_split,
    prepared_version_dir,
)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _fake_catalog_builder(name, version, shape, class_names, counts, configs=()):
    """A stand-in for a catalog builder, written the way `tfds build` writes it."""

    with tfds.core.registered.skip_registration():

        class Fake(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version(version)
            BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in configs]  # noqa: RUF012
            code_path = None

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self,
                    features=tfds.features.FeaturesDict(
                        {
                            "image": tfds.features.Image(shape=shape),
                            "label": tfds.features.ClassLabel(names=class_names),
                        }
                    ),
                )

            def _split_generators(self, dl_manager):
                return {s: self._generate_examples(s, n) for s, n in counts.items()}

            def _generate_examples(self, split, num):
                rng = np.random.default_rng(len(split))
                for i in range(num):
                    label = i % len(class_names)
                    pixels = np.full(shape, 10 * label, np.uint8)
                    pixels[0, 0] = rng.integers(0, 255)
                    yield i, {"image": _png(pixels.squeeze(-1) if shape[-1] == 1 else pixels),
                              "label": label}  # fmt: skip

    Fake.name = name
    return Fake


def _prepare(builder_cls, data_dir, config=None, file_format="array_record"):
    kwargs = {"config": config} if config else {}
    builder = builder_cls(data_dir=str(data_dir), file_format=file_format, **kwargs)
    builder.download_and_prepare(file_format=file_format)
    return builder


@pytest.mark.parametrize(
    "dataset, config", [("svhn_cropped", None), ("domainnet", "clipart")], ids=["svhn", "domainnet"]
)
def test_missing_catalog_dataset_fails_fast_without_network(tmp_path, no_network, dataset, config):
    full = dataset if config is None else f"{dataset}/{config}"
    with pytest.raises(CatalogDatasetMissingError, match=f"'{full}' is not prepared") as err:
        prepared_version_dir(dataset, config, data_dir=tmp_path)
    assert f"tfds build {full} --data_dir {tmp_path}" in str(err.value)


@pytest.mark.parametrize(
    "source, domain, regime, match",
    [
        ("tfds_digits", "mnist", "ood", "'mnist' is not prepared"),
        ("domainnet", "clipart", "id", "domainnet/clipart"),
    ],
    ids=["tfds_digits", "domainnet"],
)
def test_loading_a_missing_catalog_split_names_the_dataset(
    tmp_path, no_network, source, domain, regime, match
):
    with pytest.raises(CatalogDatasetMissingError, match=match):
        load_split(source, domain, regime, 0, data_dir=tmp_path)


def test_catalog_without_array_record_explains_conversion(tmp_path, no_network):
    version_dir = tmp_path / "mnist" / "3.0.1"
    version_dir.mkdir(parents=True)
    (version_dir / "dataset_info.json").write_text("{}")
    (version_dir / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"")
    with pytest.raises(CatalogDatasetMissingError, match="convert_format"):
        prepared_version_dir("mnist", data_dir=tmp_path)


def test_prepared_catalog_digits_load(tmp_path):
    digits = [str(d) for d in range(10)]
    mnist = _fake_catalog_builder("mnist", "3.0.1", (28, 28, 1), digits, {"train": 60, "test": 20})
    svhn = _fake_catalog_builder(
        "svhn_cropped", "3.1.0", (32, 32, 3), digits, {"train": 40, "test": 10}
    )
    _prepare(mnist, tmp_path)
    _prepare(svhn, tmp_path)
    split = load_split("tfds_digits", "svhn_cropped", "id+ood", 0, data_dir=tmp_path, caps=30)
    assert split.domains == ("mnist", "svhn_cropped")
    assert split.client.images.shape == (15, 32, 32, 3)
    assert split.test.images.shape == (10, 32, 32, 3)
    assert len(split.pool_images) == 30 + 15
    # The fake images encode their label in the pixel value.
    np.testing.assert_array_equal(split.test.images[:, 5, 5, 0], 10 * split.test.labels)
    with pytest.raises(CatalogDatasetMissingError, match="'cifar10' is not prepared"):
        load_split("tfds_digits", "mnist", "ood", 0, data_dir=tmp_path, include_unrelated=True)


def test_prepared_domainnet_keeps_the_ten_classes(tmp_path):
    names = sorted([*DOMAINNET_CLASSES, "aircraft_carrier", "zigzag", "cat"])
    fake = _fake_catalog_builder(
        "domainnet", "2.0.1", (40, 30, 3), names, {"train": 52, "test": 26},
        configs=("clipart", "sketch"),
    )  # fmt: skip
    for config in ("clipart", "sketch"):
        _prepare(fake, tmp_path, config=config)
    split = load_split(
        "domainnet", "clipart", "id+ood", 0, data_dir=tmp_path, domains=("clipart", "sketch"),
        image_size=16,
    )  # fmt: skip
    assert split.client.images.shape[1:] == (16, 16, 3)
    assert set(split.test.labels.tolist()) == set(range(10))
    # 52 records over 13 classes: 4 per class, 40 of them in the 10 kept classes.
    assert len(split.client.ids) + len(split.pool_images) == 80
    # The fake images encode the original class index in their pixel value.
    original = np.array(names)[split.test.images[:, 8, 8, 0] // 10]
    np.testing.assert_array_equal(np.array(DOMAINNET_CLASSES)[split.test.labels], original)
