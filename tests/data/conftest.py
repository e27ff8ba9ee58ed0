"""A small offline Digits build shared by the data tests (built once per session)."""

import numpy as np
import pytest

from ecos_jax.data import ALL_DOMAINS, prepare_domain

SMALL_COUNTS = (300, 60)  # (train, test) examples per domain


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory):
    """A data dir holding every offline domain at SMALL_COUNTS (seed 0)."""
    root = tmp_path_factory.mktemp("ecos_tfds")
    for domain in ALL_DOMAINS:
        prepare_domain(domain, data_dir=root, num_train=SMALL_COUNTS[0], num_test=SMALL_COUNTS[1])
    return root


def _read_all(builder, split):
    source = builder.as_data_source(split)
    records = source.__getitems__(list(range(len(source))))
    records.sort(key=lambda r: int(r["id"]))
    return (
        np.stack([r["image"] for r in records]),
        np.array([r["label"] for r in records]),
        np.array([r["id"] for r in records]),
        {r["domain"].decode() for r in records},
    )


@pytest.fixture(scope="session")
def read_all():
    """Reads every record of a split: (images, labels, ids, set of domain names), by id."""
    return _read_all
