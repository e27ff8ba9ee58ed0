"""Tests for ecos_jax.tasks.private_knn: votes, noisy labels, sensitivity and accounting."""

import math

import jax
import numpy as np
import pytest
import references
from hypothesis import given, settings
from hypothesis import strategies as st
from references import blobs

from ecos_jax import noise, privacy
from ecos_jax.tasks import private_knn


def SIM(seed):
    return noise.simulation(jax.random.key(seed))


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
    assert got.shape == (19, 4) and got.dtype == np.int64
    want = references.knn_votes(query, client, labels, k=k, num_classes=4, metric=metric)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got.sum(axis=1), k)


def test_exact_ties_go_to_the_earlier_sample():
    # Four client samples at the same point as the query: the first two by index vote.
    client = np.zeros((6, 2), np.float32)
    client[4:] = 3.0
    labels = np.array([0, 1, 2, 2, 0, 0], np.int32)
    got = private_knn.knn_votes(np.zeros((1, 2), np.float32), client, labels, k=2, num_classes=3)
    np.testing.assert_array_equal(got, [[1, 1, 0]])


def test_tiny_noise_releases_the_vote_argmax():
    feats, labels, _ = blobs(2, n_per=10, num_blobs=3, dim=4, spread=5.0, noise=0.3)
    query = np.random.default_rng(3).normal(scale=4.0, size=(25, 4)).astype(np.float32)
    votes = private_knn.knn_votes(query, feats, labels, k=7, num_classes=3)
    got, _ = private_knn.private_knn_labels(
        query, feats, labels, k=7, num_classes=3, sigma=0.05, randomness=SIM(0)
    )
    unique_max = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert unique_max.sum() >= 20
    np.testing.assert_array_equal(got[unique_max], votes.argmax(axis=1)[unique_max])


def test_released_labels_are_the_argmax_of_the_noisy_integer_votes():
    feats, labels, _ = blobs(4, n_per=8, num_blobs=4, dim=4, spread=5.0, noise=0.3)
    query = np.random.default_rng(5).normal(scale=4.0, size=(64, 4)).astype(np.float32)
    kwargs = {"k": 5, "num_classes": 4, "sigma": 3.0}
    a, _ = private_knn.private_knn_labels(query, feats, labels, randomness=SIM(7), **kwargs)
    b, _ = private_knn.private_knn_labels(query, feats, labels, randomness=SIM(7), **kwargs)
    c, _ = private_knn.private_knn_labels(query, feats, labels, randomness=SIM(8), **kwargs)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    # Exactly argmax(votes + N_Z noise of scale sigma drawn from the key), first max.
    votes = private_knn.knn_votes(query, feats, labels, k=5, num_classes=4)
    noisy = noise.add_discrete_gaussian(votes, scale=3.0, randomness=SIM(7))
    np.testing.assert_array_equal(a, np.argmax(noisy, axis=1))
    # Secure by default: not reproducible.
    d, _ = private_knn.private_knn_labels(query, feats, labels, **kwargs)
    e, _ = private_knn.private_knn_labels(query, feats, labels, **kwargs)
    assert (d != e).any()


def test_released_noise_has_the_stated_scale():
    """What is released depends on the scale the release claims: with 2,000 queries of one
    class the flip rate of argmax(votes + noise) matches its exact value for scale σ."""
    votes = np.zeros((4000, 2), np.int64)
    votes[:, 0] = 3  # a 3-vote margin
    sigma = 2.0
    labels, release = private_knn.release_knn_labels(votes, sigma=sigma, randomness=SIM(1))
    assert release.scale == pytest.approx(sigma)
    # P[flip] = P[Z1 - Z0 >= 3] with ties to the lower class: exact from the pmf.
    z = np.arange(-60, 61)
    pmf = noise.discrete_gaussian_pmf(z, sigma)
    diff = np.convolve(pmf, pmf[::-1])  # Z1 - Z0 on [-120, 120]
    p_flip = diff[np.arange(-120, 121) > 3].sum()
    flips = np.mean(labels == 1)
    assert abs(flips - p_flip) < 4 * math.sqrt(p_flip * (1 - p_flip) / len(votes))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_strong_agreement_gives_the_majority_label(metric):
    feats, labels, centers = blobs(6, n_per=20, num_blobs=5, dim=4, spread=5.0, noise=0.3)
    rng = np.random.default_rng(7)
    query_labels = rng.integers(0, 5, size=30)
    query = (centers[query_labels] + rng.normal(scale=0.3, size=(30, 4))).astype(np.float32)
    votes = private_knn.knn_votes(query, feats, labels, k=15, num_classes=5)
    np.testing.assert_array_equal(votes.argmax(axis=1), query_labels)
    # A 15-vote margin is > 10 noise standard deviations of a difference of two bins.
    got, _ = private_knn.private_knn_labels(
        query, feats, labels, k=15, num_classes=5, sigma=1.0, metric=metric, randomness=SIM(1)
    )
    np.testing.assert_array_equal(got, query_labels)


def test_release_has_the_documented_multiplier_count_and_coordinates():
    feats, labels, _ = blobs(8, n_per=5, num_blobs=2, dim=4, spread=5.0, noise=0.3)
    query = feats[:9] + 0.1
    _, release = private_knn.private_knn_labels(
        query, feats, labels, k=3, num_classes=2, sigma=20.0, randomness=SIM(0)
    )
    assert isinstance(release, privacy.DiscreteGaussianRelease)
    assert release.noise_multiplier == pytest.approx(20.0 / math.sqrt(2.0))
    assert release.count == 9 and release.coordinates == 2
    assert release.scale == pytest.approx(20.0)
    assert release.name == "private_knn_votes"
    assert private_knn.PRIVATE_KNN_SENSITIVITY == pytest.approx(math.sqrt(2.0))
    assert private_knn.private_knn_release(sigma=20.0, num_queries=9) == release


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_composition_with_the_ecos_release(accountant):
    ecos = privacy.DiscreteGaussianRelease(noise_multiplier=6.68, name="ecos_scores")
    knn = private_knn.private_knn_release(sigma=60.0, num_queries=16)
    ledger = privacy.PrivacyLedger([ecos])
    ledger.record(knn)
    total = ledger.epsilon(delta=1e-5, accountant=accountant)
    eps_ecos = privacy.epsilon(ecos, delta=1e-5, accountant=accountant)
    eps_knn = privacy.epsilon(knn, delta=1e-5, accountant=accountant)
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
    change = np.linalg.norm(after - before, axis=1)
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
    assert (np.linalg.norm(diff, axis=1) <= private_knn.PRIVATE_KNN_SENSITIVITY).all()
    # With k fixed one vote moves between classes: each row changes by e_a - e_b or not at all.
    np.testing.assert_array_equal(diff.sum(axis=1), 0)
    assert (np.abs(diff).sum(axis=1) <= 2).all()


QUERY = np.zeros((3, 2), np.float32)
CLIENT = np.arange(10, dtype=np.float32).reshape(5, 2)
LABELS = np.array([0, 1, 0, 1, 1], np.int32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be an int >= 1"),
        ({"k": 2.5}, "k must be an int >= 1"),
        ({"client_labels": np.array([0, 1, 0, 1, 2])}, r"client_labels must lie in \[0, 2\)"),
        ({"client_labels": np.array([0, 1, 0, -1, 1])}, "client_labels must lie in"),
        ({"client_labels": LABELS[:4]}, "one label per row"),
        ({"client_labels": LABELS.astype(np.float32)}, "integer class ids"),
        ({"client_labels": np.array([0, 1, 0, 1, 2**40])}, "int32 range"),
        ({"query_features": np.zeros((3, 3), np.float32)}, "feature dim 3"),
        ({"query_features": np.zeros(3, np.float32)}, "query_features must be a"),
        ({"query_features": np.zeros((0, 2), np.float32)}, "at least one row"),
        ({"client_features": np.full((5, 2), np.nan, np.float32)}, "NaN, inf"),
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


@pytest.mark.parametrize("num_labels", [777, 776], ids=["label_out_of_range", "one_label_short"])
def test_messages_about_the_client_reveal_no_label_and_no_size(num_labels):
    labels = np.arange(777) % 3
    labels[5] = 9
    client = np.random.default_rng(0).normal(size=(777, 2)).astype(np.float32)
    with pytest.raises(ValueError) as info:
        private_knn.knn_votes(QUERY, client, labels[:num_labels], k=2, num_classes=3)
    message = str(info.value)
    assert "777" not in message and "776" not in message and "9" not in message


def test_k_larger_than_the_client_is_answered_not_refused():
    votes = private_knn.knn_votes(QUERY, CLIENT, LABELS, k=6, num_classes=2)
    np.testing.assert_array_equal(votes, [[2, 3]] * 3)


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_bad_sigma_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        private_knn.private_knn_labels(
            QUERY, CLIENT, LABELS, k=2, num_classes=2, sigma=sigma, randomness=SIM(0)
        )


def test_a_bare_key_is_refused_as_randomness():
    with pytest.raises(TypeError, match=r"simulation\(key\)"):
        private_knn.private_knn_labels(
            QUERY, CLIENT, LABELS, k=2, num_classes=2, sigma=1.0, randomness=jax.random.key(0)
        )


def test_release_from_votes_equals_the_one_call_labeler():
    feats, labels, _ = blobs(9, n_per=8, num_blobs=4, dim=4, spread=5.0, noise=0.3)
    query = np.random.default_rng(10).normal(scale=4.0, size=(40, 4)).astype(np.float32)
    votes = private_knn.knn_votes(query, feats, labels, k=6, num_classes=4)
    got, release = private_knn.release_knn_labels(votes, sigma=2.5, randomness=SIM(3))
    want, want_release = private_knn.private_knn_labels(
        query, feats, labels, k=6, num_classes=4, sigma=2.5, randomness=SIM(3)
    )
    np.testing.assert_array_equal(got, want)
    assert release == want_release


@pytest.mark.parametrize(
    ("votes", "sigma", "match"),
    [
        (np.zeros((3,), np.int32), 1.0, r"\[num_queries, num_classes\]"),
        (np.zeros((0, 2), np.int32), 1.0, "at least one row"),
        (np.zeros((2, 2), np.int32), 0.0, "sigma must be > 0"),
        (np.zeros((2, 2), np.float32), 1.0, "integer vote counts"),
    ],
)
def test_release_from_votes_rejects_bad_input(votes, sigma, match):
    with pytest.raises(ValueError, match=match):
        private_knn.release_knn_labels(votes, sigma=sigma, randomness=SIM(0))


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize(("eps", "num_queries"), [(4.0, 3000), (1.0, 10)])
def test_calibrated_vote_sigma_meets_the_target_tightly(eps, num_queries, accountant):
    sigma = private_knn.calibrate_vote_sigma(
        eps, delta=1e-5, num_queries=num_queries, accountant=accountant
    )
    multiplier = privacy.calibrate_sigma(
        eps, delta=1e-5, count=num_queries, coordinates=2, accountant=accountant
    )
    assert sigma == pytest.approx(multiplier * math.sqrt(2.0))
    release = private_knn.private_knn_release(sigma=sigma, num_queries=num_queries)
    spent = privacy.epsilon(release, delta=1e-5, accountant=accountant)
    assert spent <= eps
    looser = private_knn.private_knn_release(sigma=0.99 * sigma, num_queries=num_queries)
    assert privacy.epsilon(looser, delta=1e-5, accountant=accountant) > eps
