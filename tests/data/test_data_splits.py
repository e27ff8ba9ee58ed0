"""load_split: regimes, disjointness, completeness, caps, unrelated domains, bad input."""

import warnings

import numpy as np
import pytest

from ecos_jax.data import (
    DIGIT_DOMAINS,
    UNRELATED_DOMAINS,
    SourceUnavailableError,
    domains,
    load_split,
    sources,
)

SMALL = (300, 60)


def _load(data_dir, client, regime, seed=0, caps=None, **kwargs):
    return load_split(
        "digits", client, regime, seed, caps, data_dir=data_dir, build_counts=SMALL, **kwargs
    )


def _keys(domain_names, ids):
    return {(str(d), int(i)) for d, i in zip(domain_names, ids, strict=True)}


def _pool_keys(split):
    return _keys(np.array(split.domains)[split.pool_oracle.domains], split.pool_oracle.ids)


@pytest.mark.parametrize("regime", ["ood", "id+ood", "id"])
@pytest.mark.parametrize("client", ["mnist", "streetdigits"])
def test_split_is_disjoint_and_complete(small_data_dir, regime, client):
    split = _load(small_data_dir, client, regime, include_unrelated=True)
    client_keys = _keys([client] * len(split.client.ids), split.client.ids)
    test_keys = _keys([client] * len(split.test.ids), split.test.ids)
    pool_keys = _pool_keys(split)
    assert len(client_keys) == len(split.client.ids)
    assert len(pool_keys) == len(split.pool_images)
    assert not client_keys & pool_keys and not client_keys & test_keys
    assert not pool_keys & test_keys
    others = [d for d in DIGIT_DOMAINS if d != client] if regime != "id" else []
    in_pool = {client} if regime != "ood" else set()
    expected_pool_domains = set(others) | in_pool | set(UNRELATED_DOMAINS)
    assert set(np.array(split.domains)[split.pool_oracle.domains]) == expected_pool_domains
    # Together: every train record of every used domain, and the client's whole test split.
    n_domains = len(others) + 1 + len(UNRELATED_DOMAINS)
    assert len(client_keys) + len(pool_keys) == n_domains * SMALL[0]
    assert len(test_keys) == SMALL[1]
    if regime == "ood":
        assert len(split.client.ids) == SMALL[0]
    else:
        assert len(split.client.ids) == SMALL[0] // 2
        own = split.pool_oracle.domains == split.domains.index(client)
        assert own.sum() == SMALL[0] - SMALL[0] // 2
    assert split.client.images.shape[1:] == (28, 28, 3)
    assert split.pool_images.shape[1:] == (28, 28, 3) and split.pool_images.dtype == np.uint8
    assert split.client.labels.min() >= 0 and split.test.labels.max() <= 9
    unrelated = np.isin(
        split.pool_oracle.domains, [split.domains.index(d) for d in UNRELATED_DOMAINS]
    )
    np.testing.assert_array_equal(split.pool_oracle.labels[unrelated], -1)
    assert (split.pool_oracle.labels[~unrelated] >= 0).all()


def test_pool_rows_match_their_oracle(small_data_dir, read_all):
    split = _load(small_data_dir, "optdigits", "ood", caps=50)
    from ecos_jax.data import prepare_domain

    for k in range(0, len(split.pool_images), 37):
        domain = split.domains[split.pool_oracle.domains[k]]
        built = prepare_domain(
            domain, data_dir=small_data_dir, num_train=SMALL[0], num_test=SMALL[1]
        )
        images, labels, ids, _ = read_all(built, "train")
        row = np.flatnonzero(ids == split.pool_oracle.ids[k])[0]
        np.testing.assert_array_equal(split.pool_images[k], images[row])
        assert split.pool_oracle.labels[k] == labels[row]


def test_caps_are_honoured(small_data_dir):
    split = _load(small_data_dir, "fontdigits", "id+ood", caps={"fontdigits": 40, "mnist": 10})
    assert len(split.client.ids) == 20 and len(split.test.ids) == 40
    counts = {d: int((split.pool_oracle.domains == i).sum()) for i, d in enumerate(split.domains)}
    assert counts["fontdigits"] == 20 and counts["mnist"] == 10
    assert counts["optdigits"] == SMALL[0]
    small = _load(small_data_dir, "mnist", "ood", caps=25)
    assert len(small.client.ids) == 25 and len(small.pool_images) == 4 * 25


def test_seed_moves_the_split_not_the_data(small_data_dir):
    a = _load(small_data_dir, "mnist", "id+ood", seed=1, caps=100)
    b = _load(small_data_dir, "mnist", "id+ood", seed=1, caps=100)
    c = _load(small_data_dir, "mnist", "id+ood", seed=2, caps=100)
    np.testing.assert_array_equal(a.client.ids, b.client.ids)
    np.testing.assert_array_equal(a.pool_images, b.pool_images)
    assert not np.array_equal(a.client.ids, c.client.ids)
    # The pool is shuffled: domains are interleaved, not in blocks.
    assert (np.diff(a.pool_oracle.domains) != 0).sum() > 10


def test_image_size_resizes(small_data_dir):
    split = _load(small_data_dir, "mnist", "ood", caps=10, image_size=32)
    assert split.client.images.shape == (10, 32, 32, 3)
    assert split.pool_images.shape[1:] == (32, 32, 3)
    assert split.test.images.shape == (10, 32, 32, 3)


def test_missing_unrelated_source_is_skipped_or_fails_when_requested(
    small_data_dir, tmp_path, monkeypatch
):
    def unavailable(*args, **kwargs):
        raise SourceUnavailableError("Fashion-MNIST files missing; install dataset-fashion-mnist")

    monkeypatch.setattr(domains.sources, "fashion_mnist", unavailable)
    data_dir = tmp_path / "fresh"  # not built yet, so the source is needed
    counts = (20, 10)
    with pytest.warns(UserWarning, match="fashion_mnist skipped"):
        split = load_split(
            "digits", "mnist", "id", 0, data_dir=data_dir, build_counts=counts,
            include_unrelated=True,
        )  # fmt: skip
    assert split.domains == ("mnist", "animal_mnist")
    with pytest.raises(SourceUnavailableError, match="dataset-fashion-mnist"):
        load_split(
            "digits", "mnist", "id", 0, data_dir=data_dir, build_counts=counts,
            domains=("mnist", "fashion_mnist"),
        )  # fmt: skip
    assert sources.FASHION_MNIST_DIR.name == "fashion-mnist"


def test_default_data_dir_from_environment(small_data_dir, monkeypatch):
    monkeypatch.setenv("ECOS_DATA_DIR", str(small_data_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cache hit: nothing rebuilt
        split = load_split("digits", "optdigits", "id", 0, caps=10, build_counts=SMALL)
    assert len(split.client.ids) == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "usps"}, "unknown dataset"),
        ({"regime": "iid"}, "regime"),
        ({"client_domain": "fashion_mnist"}, "client_domain"),
        ({"caps": 0}, "caps"),
        ({"caps": {"svhn": 3}}, "caps names unknown"),
        ({"domains": ("optdigits",)}, "including client_domain"),
        ({"domains": ("mnist",), "regime": "ood"}, "needs a domain besides"),
    ],
)
def test_bad_arguments_raise(small_data_dir, kwargs, match):
    args = {"dataset": "digits", "client_domain": "mnist", "regime": "ood", "seed": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        load_split(**args, data_dir=small_data_dir, build_counts=SMALL)
