"""Tests for ecos_jax.tasks.private_knn: votes, noisy labels, sensitivity and accounting."""

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecos_jax import privacy
from ecos_jax.tasks import private_knn


def _np_votes(query, client, labels, *, k, num_classes, metric):
    q, x = np.asarray(query, np.float64), np.asarray(client, np.float64)
    if metric == "l2":
        d = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    else:
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1.0 - qn @ xn.T
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(q), num_classes), np.int64)
    for row, idx in enumerate(nearest):
        np.add.at(votes[row], np.asarray(labels)[idx], 1)
    return votes


def _blobs(seed, *, n_per_class, num_classes, dim=4, spread=0.3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=5.0, size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), n_per_class)
    feats = centers[labels] + rng.normal(scale=spread, size=(len(labels), dim))
    return feats.astype(np.float32), labels.astype(np.int32), centers.astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize(("k", "chunk_size"), [(1, 4), (5, 7), (12, 64)])
def test_votes_match_numpy_reference(metric, k, chunk_size):
    rng = np.random.default_rng(1)
    query = rng.normal(size=(19, 6)).astype(np.float32)
    client = rng.normal(size=(40, 6)).astype(np.float32)
    labels = rng.integers(0, 4, size=40).astype(np.int32)
    got = private_knn.knn_votes(
        query, client, labels, k=k, num_classes=4, metric=metric, chunk_size=chunk_size
    )
    assert got.shape == (19, 4) and got.dtype == np.int32
    want = _np_votes(query, client, labels, k=k, num_classes=4, metric=metric)
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(got).sum(axis=1), k)


def test_exact_ties_go_to_the_earlier_sample():
    # Four client samples at the same point as the query: the first two by index vote.
    client = np.zeros((6, 2), np.float32)
    client[4:] = 3.0
    labels = np.array([0, 1, 2, 2, 0, 0], np.int32)
    got = private_knn.knn_votes(np.zeros((1, 2), np.float32), client, labels, k=2, num_classes=3)
    np.testing.assert_array_equal(np.asarray(got), [[1, 1, 0]])


def test_tiny_noise_releases_the_vote_argmax():
    feats, labels, _ = _blobs(2, n_per_class=10, num_classes=3)
    query = np.random.default_rng(3).normal(scale=4.0, size=(25, 4)).astype(np.float32)
    votes = np.asarray(private_knn.knn_votes(query, feats, labels, k=7, num_classes=3))
    got, _ = private_knn.private_knn_labels(
        jax.random.key(0), query, feats, labels, k=7, num_classes=3, sigma=1e-3
    )
    unique_max = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert unique_max.sum() >= 20
    np.testing.assert_array_equal(np.asarray(got)[unique_max], votes.argmax(axis=1)[unique_max])


def test_noise_depends_only_on_the_key():
    feats, labels, _ = _blobs(4, n_per_class=8, num_classes=4)
    query = np.random.default_rng(5).normal(scale=4.0, size=(64, 4)).astype(np.float32)
    kwargs = {"k": 5, "num_classes": 4, "sigma": 3.0}
    a, _ = private_knn.private_knn_labels(jax.random.key(7), query, feats, labels, **kwargs)
    b, _ = private_knn.private_knn_labels(jax.random.key(7), query, feats, labels, **kwargs)
    c, _ = private_knn.private_knn_labels(jax.random.key(8), query, feats, labels, **kwargs)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (np.asarray(a) != np.asarray(c)).any()
    # The released labels are exactly argmax(votes + sigma * N(0, I) drawn from the key).
    votes = np.asarray(private_knn.knn_votes(query, feats, labels, k=5, num_classes=4))
    noise = np.asarray(jax.random.normal(jax.random.key(7), votes.shape))
    np.testing.assert_array_equal(np.asarray(a), np.argmax(votes + 3.0 * noise, axis=1))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_strong_agreement_gives_the_majority_label(metric):
    feats, labels, centers = _blobs(6, n_per_class=20, num_classes=5)
    rng = np.random.default_rng(7)
    query_labels = rng.integers(0, 5, size=30)
    query = (centers[query_labels] + rng.normal(scale=0.3, size=(30, 4))).astype(np.float32)
    votes = np.asarray(private_knn.knn_votes(query, feats, labels, k=15, num_classes=5))
    np.testing.assert_array_equal(votes.argmax(axis=1), query_labels)
    # A 15-vote margin is > 10 noise standard deviations of a difference of two bins.
    got, _ = private_knn.private_knn_labels(
        jax.random.key(1), query, feats, labels, k=15, num_classes=5, sigma=1.0, metric=metric
    )
    np.testing.assert_array_equal(np.asarray(got), query_labels)


def test_release_has_the_documented_multiplier_and_count():
    feats, labels, _ = _blobs(8, n_per_class=5, num_classes=2)
    query = feats[:9] + 0.1
    _, release = private_knn.private_knn_labels(
        jax.random.key(0), query, feats, labels, k=3, num_classes=2, sigma=20.0
    )
    assert isinstance(release, privacy.GaussianRelease)
    assert release.noise_multiplier == pytest.approx(20.0 / math.sqrt(2.0))
    assert release.count == 9
    assert release.name == "private_knn_votes"
    assert private_knn.PRIVATE_KNN_SENSITIVITY == pytest.approx(math.sqrt(2.0))
    assert private_knn.private_knn_release(sigma=20.0, num_queries=9) == release


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_composition_with_the_ecos_release(accountant):
    ecos = privacy.GaussianRelease(noise_multiplier=6.68, name="ecos_scores")
    knn = private_knn.private_knn_release(sigma=60.0, num_queries=16)
    ledger = privacy.PrivacyLedger([ecos])
    ledger.record(knn)
    total = ledger.epsilon(delta=1e-5, accountant=accountant)
    eps_ecos = privacy.epsilon(ecos, delta=1e-5, accountant=accountant)
    eps_knn = privacy.epsilon(knn, delta=1e-5, accountant=accountant)
    assert total >= eps_ecos and total >= eps_knn
    assert total > max(eps_ecos, eps_knn)
    assert total == pytest.approx(privacy.epsilon([ecos, knn], delta=1e-5, accountant=accountant))


def test_fixed_k_sensitivity_is_sqrt_two_and_attained():
    # Adding a closer sample of another class displaces one vote: L2 change √2, not 1.
    query = np.zeros((1, 1), np.float32)
    client = np.array([[1.0], [2.0], [3.0]], np.float32)
    labels = np.array([0, 0, 0], np.int32)
    before = private_knn.knn_votes(query, client, labels, k=2, num_classes=2)
    after = private_knn.knn_votes(
        query, np.vstack([client, [[0.5]]]), np.append(labels, 1), k=2, num_classes=2
    )
    change = np.linalg.norm(np.asarray(after) - np.asarray(before), axis=1)
    np.testing.assert_allclose(change, [math.sqrt(2.0)])


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n=st.integers(4, 9),
    k=st.integers(1, 3),
    removed=st.integers(0, 8),
)
def test_removing_one_sample_moves_each_histogram_by_at_most_delta(data, n, k, removed):
    # Small integer features make every distance exact, so ties really occur.
    coords = st.integers(-2, 2)
    client = np.array(data.draw(st.lists(st.tuples(coords, coords), min_size=n, max_size=n)))
    labels = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    query = np.array(data.draw(st.lists(st.tuples(coords, coords), min_size=3, max_size=3)))
    removed %= n
    kwargs = {"k": k, "num_classes": 3}
    full = private_knn.knn_votes(
        query.astype(np.float32), client.astype(np.float32), labels.astype(np.int32), **kwargs
    )
    keep = np.arange(n) != removed
    fewer = private_knn.knn_votes(
        query.astype(np.float32),
        client[keep].astype(np.float32),
        labels[keep].astype(np.int32),
        **kwargs,
    )
    diff = np.asarray(full) - np.asarray(fewer)
    assert (np.linalg.norm(diff, axis=1) <= private_knn.PRIVATE_KNN_SENSITIVITY + 1e-9).all()
    # With k fixed one vote moves between classes: each row changes by e_a - e_b or not at all.
    np.testing.assert_array_equal(diff.sum(axis=1), 0)
    assert (np.abs(diff).sum(axis=1) <= 2).all()


QUERY = np.zeros((3, 2), np.float32)
CLIENT = np.arange(10, dtype=np.float32).reshape(5, 2)
LABELS = np.array([0, 1, 0, 1, 1], np.int32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 6}, r"k=6 exceeds the number of client samples 5"),
        ({"k": 0}, "k must be an int >= 1"),
        ({"k": 2.5}, "k must be an int >= 1"),
        ({"client_labels": np.array([0, 1, 0, 1, 2])}, r"client_labels must lie in \[0, 2\)"),
        ({"client_labels": np.array([0, 1, 0, -1, 1])}, "client_labels must lie in"),
        ({"client_labels": LABELS[:4]}, r"client_labels must have shape \(5,\)"),
        ({"client_labels": LABELS.astype(np.float32)}, "integer class ids"),
        ({"query_features": np.zeros((3, 3), np.float32)}, "feature dim 3"),
        ({"query_features": np.zeros(3, np.float32)}, "query_features must be a"),
        ({"query_features": np.zeros((0, 2), np.float32)}, "at least one row"),
        ({"client_features": np.full((5, 2), np.nan, np.float32)}, "NaN or inf"),
        ({"metric": "manhattan"}, "metric must be"),
        ({"num_classes": 0}, "num_classes must be an int >= 1"),
        ({"chunk_size": 0}, "chunk_size must be an int >= 1"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {
        "query_features": QUERY,
        "client_features": CLIENT,
        "client_labels": LABELS,
        "k": 2,
        "num_classes": 2,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        private_knn.knn_votes(**args)


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_bad_sigma_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        private_knn.private_knn_labels(
            jax.random.key(0), QUERY, CLIENT, LABELS, k=2, num_classes=2, sigma=sigma
        )


def test_release_from_votes_equals_the_one_call_labeler():
    feats, labels, _ = _blobs(9, n_per_class=8, num_classes=4)
    query = np.random.default_rng(10).normal(scale=4.0, size=(40, 4)).astype(np.float32)
    votes = private_knn.knn_votes(query, feats, labels, k=6, num_classes=4)
    got, release = private_knn.release_knn_labels(jax.random.key(3), votes, sigma=2.5)
    want, want_release = private_knn.private_knn_labels(
        jax.random.key(3), query, feats, labels, k=6, num_classes=4, sigma=2.5
    )
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert release == want_release


@pytest.mark.parametrize(
    ("votes", "sigma", "match"),
    [
        (np.zeros((3,), np.int32), 1.0, r"\[num_queries, num_classes\]"),
        (np.zeros((0, 2), np.int32), 1.0, "at least one row"),
        (np.zeros((2, 2), np.int32), 0.0, "sigma must be > 0"),
    ],
)
def test_release_from_votes_rejects_bad_input(votes, sigma, match):
    with pytest.raises(ValueError, match=match):
        private_knn.release_knn_labels(jax.random.key(0), votes, sigma=sigma)


@pytest.mark.parametrize(("eps", "num_queries"), [(4.0, 3000), (1.0, 10)])
def test_calibrated_vote_sigma_meets_the_target_tightly(eps, num_queries):
    sigma = private_knn.calibrate_vote_sigma(eps, delta=1e-5, num_queries=num_queries)
    multiplier = privacy.calibrate_sigma(eps, delta=1e-5, count=num_queries)
    assert sigma == pytest.approx(multiplier * math.sqrt(2.0))
    spent = privacy.epsilon(
        private_knn.private_knn_release(sigma=sigma, num_queries=num_queries), delta=1e-5
    )
    assert spent <= eps
    looser = private_knn.private_knn_release(sigma=0.99 * sigma, num_queries=num_queries)
    assert privacy.epsilon(looser, delta=1e-5) > eps
