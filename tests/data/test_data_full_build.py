"""Full-size builds of the real-data domains (slow: `make test-slow`)."""

import numpy as np
import pytest

from ecos_jax.data import prepare_domain


@pytest.mark.slow
@pytest.mark.parametrize(("domain", "sizes"), [("mnist", (60_000, 10_000)), ("optdigits", None)])
def test_full_build_counts_and_labels(tmp_path, domain, sizes):
    builder = prepare_domain(domain, data_dir=tmp_path)
    source = builder.as_data_source()
    train, test = source["train"], source["test"]
    if sizes is not None:
        assert (len(train), len(test)) == sizes
    else:  # optdigits: 1,797 images split 80/20
        assert len(train) + len(test) == 1797
    step = max(1, len(train) // 600)
    labels = np.array([train[i]["label"] for i in range(0, len(train), step)])
    assert set(labels.tolist()) == set(range(10))
    assert train[0]["image"].shape == (28, 28, 3) and train[0]["image"].dtype == np.uint8
