"""Private-kNN as published: votes within a subsample against a NumPy reference, the
sensitivity as computed, screening and answering, the cost and its calibration."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ecos_jax import noise, privacy, subsampling
from ecos_jax.tasks import subsampled_knn as sk

L = 4


def _reference_votes(query, client, labels, masks, k, num_classes):
    """float64 distances of the float32 inputs, (distance, index) order, first k members."""
    q64, c64 = query.astype(np.float64), client.astype(np.float64)
    out = np.zeros((len(query), num_classes + 1), np.int64)
    for i in range(len(query)):
        members = np.flatnonzero(masks[i])
        d = np.sum((c64[members] - q64[i]) ** 2, axis=1)
        chosen = members[np.lexsort((members, d))][:k]
        out[i, :num_classes] = np.bincount(labels[chosen], minlength=num_classes)
        out[i, num_classes] = k - chosen.size
    return out


def _integer_data(rng, n, q, dim=3):
    # Small integers: every distance is exact, and ties are frequent (they go to the
    # lower index in both the library and the reference).
    client = rng.integers(-3, 4, size=(n, dim)).astype(np.float32)
    query = rng.integers(-3, 4, size=(q, dim)).astype(np.float32)
    return query, client, rng.integers(0, L, size=n)


@pytest.mark.parametrize(
    ("n", "k", "rate"), [(60, 5, 0.3), (60, 25, 0.3), (8, 5, 0.5), (40, 3, 1.0)]
)
def test_votes_equal_the_numpy_reference(n, k, rate):
    rng = np.random.default_rng(n + k)
    query, client, labels = _integer_data(rng, n, 50)
    masks = rng.random((50, n)) < rate
    votes = sk.subsampled_votes(query, client, labels, masks, k=k, num_classes=L, chunk_size=7)
    np.testing.assert_array_equal(votes, _reference_votes(query, client, labels, masks, k, L))
    assert np.all(votes.sum(axis=1) == k)


def test_rows_outside_the_subsample_never_vote():
    # The excluded rows sit on the query itself; they must still not vote.
    query = np.zeros((1, 2), np.float32)
    client = np.array([[0, 0], [0, 0], [5, 5], [6, 6], [7, 7]], np.float32)
    labels = np.array([3, 3, 0, 1, 2])
    masks = np.array([[False, False, True, True, True]])
    votes = sk.subsampled_votes(query, client, labels, masks, k=2, num_classes=L)
    assert votes.tolist() == [[1, 1, 0, 0, 0]]
    empty = sk.subsampled_votes(query, client, labels, np.zeros((1, 5), bool), k=2, num_classes=L)
    assert empty.tolist() == [[0, 0, 0, 0, 2]]  # all short: nothing voted


def test_one_added_sample_moves_at_most_one_vote_between_two_bins():
    # The sensitivity as computed: for random data, subsamples and an added sample z that
    # is in every subsample, the histogram moves by +1/−1 on two bins or not at all, and the
    # screening statistic (top class count) by at most 1.
    rng = np.random.default_rng(3)
    for trial in range(12):
        query, client, labels = _integer_data(rng, 30, 40)
        masks = rng.random((40, 30)) < 0.4
        z = rng.integers(-3, 4, size=(1, 3)).astype(np.float32)
        where = int(rng.integers(0, 31))
        grown = np.insert(client, where, z, axis=0)
        grown_labels = np.insert(labels, where, int(rng.integers(0, L)))
        grown_masks = np.insert(masks, where, True, axis=1)
        k = (2, 5, 9)[trial % 3]  # three compiled shapes, not one per trial
        before = sk.subsampled_votes(query, client, labels, masks, k=k, num_classes=L)
        after = sk.subsampled_votes(query, grown, grown_labels, grown_masks, k=k, num_classes=L)
        diff = after - before
        assert np.all(diff.sum(axis=1) == 0)
        assert np.all(np.abs(diff).sum(axis=1) <= 2), trial
        top_shift = np.abs(after[:, :L].max(axis=1) - before[:, :L].max(axis=1))
        assert np.all(top_shift <= 1)


def _clustered(rng, n_per_class=60, dim=4):
    centers = 10.0 * np.eye(L, dim)
    client = np.concatenate([c + rng.normal(size=(n_per_class, dim)) for c in centers])
    labels = np.repeat(np.arange(L), n_per_class)
    query = np.concatenate([c + 0.3 * rng.normal(size=(5, dim)) for c in centers])
    return query.astype(np.float32), client.astype(np.float32), labels, np.repeat(np.arange(L), 5)


def test_with_little_noise_the_labels_are_the_subsampled_majority():
    rng = np.random.default_rng(0)
    query, client, labels, truth = _clustered(rng)
    out = sk.subsampled_knn_labels(
        query,
        client,
        labels,
        k=10,
        num_classes=L,
        sampling_rate=0.5,
        threshold=5,
        screen_scale=0.5,
        answer_scale=0.5,
        randomness=noise.simulation(jax.random.key(1)),
    )
    assert out.passed.all() and out.answered.all()
    np.testing.assert_array_equal(out.labels, truth)
    screen, answer = out.releases
    assert (screen.count, screen.coordinates, answer.count, answer.coordinates) == (20, 1, 20, 2)
    assert screen.sampling_rate == answer.sampling_rate == subsampling.poisson_rate(0.5)


def test_screening_threshold_and_answer_budget():
    rng = np.random.default_rng(1)
    query, client, labels, _ = _clustered(rng)
    common = dict(k=10, num_classes=L, sampling_rate=0.5, screen_scale=0.5, answer_scale=0.5)
    # A threshold above k: nothing passes, nothing is labeled, and the cost is still the
    # screens plus the budgeted answers (fixed in advance).
    none = sk.subsampled_knn_labels(
        query,
        client,
        labels,
        threshold=11,
        randomness=noise.simulation(jax.random.key(2)),
        **common,
    )
    assert not none.passed.any() and np.all(none.labels == sk.NO_LABEL)
    assert [r.count for r in none.releases] == [20, 20]
    # A budget of 7 answers: exactly the first 7 passing queries get one.
    capped = sk.subsampled_knn_labels(
        query,
        client,
        labels,
        threshold=5,
        max_answers=7,
        randomness=noise.simulation(jax.random.key(2)),
        **common,
    )
    assert capped.answered.sum() == 7 and capped.answered[:7].all()
    assert np.all(capped.labels[7:] == sk.NO_LABEL)
    assert [r.count for r in capped.releases] == [20, 7]


def test_the_short_bin_can_win_and_then_there_is_no_label():
    query = np.zeros((3, 1), np.float32)
    client = np.array([[0.0]], np.float32)  # one row: at most one vote of k = 20
    out = sk.subsampled_knn_labels(
        query,
        client,
        np.array([2]),
        k=20,
        num_classes=L,
        sampling_rate=1.0,
        threshold=-100,
        screen_scale=0.5,
        answer_scale=0.5,
        randomness=noise.simulation(jax.random.key(0)),
    )
    assert out.answered.all() and np.all(out.labels == sk.NO_LABEL)


def test_simulation_is_reproducible_and_keyed_and_secure_runs():
    rng = np.random.default_rng(2)
    query, client, labels, _ = _clustered(rng)
    # Noise as large as the votes: different keys give different releases.
    args = dict(
        k=10, num_classes=L, sampling_rate=0.3, threshold=6, screen_scale=8.0, answer_scale=8.0
    )
    a = sk.subsampled_knn_labels(
        query, client, labels, randomness=noise.simulation(jax.random.key(5)), **args
    )
    b = sk.subsampled_knn_labels(
        query, client, labels, randomness=noise.simulation(jax.random.key(5)), **args
    )
    c = sk.subsampled_knn_labels(
        query, client, labels, randomness=noise.simulation(jax.random.key(6)), **args
    )
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.passed, b.passed)
    assert not (np.array_equal(a.labels, c.labels) and np.array_equal(a.passed, c.passed))
    secure = sk.subsampled_knn_labels(query, client, labels, randomness=noise.secure(), **args)
    assert secure.labels.shape == (20,)
    with pytest.raises(TypeError, match="simulation"):
        sk.subsampled_knn_labels(query, client, labels, randomness=jax.random.key(0), **args)


def test_calibration_meets_the_target_tightly_and_composes_with_the_base():
    s1, s2 = sk.calibrate_knn_noise(3.0, delta=1e-5, sampling_rate=0.2, num_queries=500)
    assert s1 == pytest.approx(3.0 * s2)
    cost = lambda scale: privacy.epsilon(
        sk.answer_releases(
            screen_scale=3.0 * scale,
            answer_scale=scale,
            sampling_rate=subsampling.poisson_rate(0.2),
            num_queries=500,
        ),
        delta=1e-5,
    )
    assert cost(s2) <= 3.0 < cost(0.99 * s2)
    ecos = privacy.DiscreteGaussianRelease(6.68, name="ecos_scores")
    t1, t2 = sk.calibrate_knn_noise(
        3.0, delta=1e-5, sampling_rate=0.2, num_queries=500, base_releases=(ecos,)
    )
    assert t2 > s2
    releases = sk.answer_releases(
        screen_scale=t1,
        answer_scale=t2,
        sampling_rate=subsampling.poisson_rate(0.2),
        num_queries=500,
    )
    assert privacy.epsilon([ecos, *releases], delta=1e-5) <= 3.0
    # A smaller answer budget costs less, so it needs less noise.
    _, u2 = sk.calibrate_knn_noise(
        3.0, delta=1e-5, sampling_rate=0.2, num_queries=500, max_answers=100
    )
    assert u2 < s2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(sampling_rate=0.0), "sampling_rate"),
        (dict(sampling_rate=1.2), "sampling_rate"),
        (dict(screen_scale=0.0), "screen_scale"),
        (dict(answer_scale=-1.0), "answer_scale"),
        (dict(threshold=float("nan")), "threshold"),
        (dict(max_answers=21), "max_answers"),
        (dict(max_answers=0), "max_answers"),
        (dict(k=0), "k"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    rng = np.random.default_rng(4)
    query, client, labels, _ = _clustered(rng)
    args = dict(
        k=10, num_classes=L, sampling_rate=0.3, threshold=3, screen_scale=3.0, answer_scale=3.0
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sk.subsampled_knn_labels(
            query, client, labels, randomness=noise.simulation(jax.random.key(0)), **args
        )


def test_base_releases_over_the_target_are_refused():
    ecos = privacy.DiscreteGaussianRelease(0.5, name="ecos_scores")
    with pytest.raises(ValueError, match="base_releases"):
        sk.calibrate_knn_noise(
            1.0, delta=1e-5, sampling_rate=0.2, num_queries=10, base_releases=(ecos,)
        )


def test_masks_of_the_wrong_shape_are_refused_without_quoting_the_client_size():
    query, client, labels = (
        np.zeros((2, 1), np.float32),
        np.zeros((37, 1), np.float32),
        np.zeros(37, int),
    )
    with pytest.raises(ValueError, match="masks") as err:
        sk.subsampled_votes(query, client, labels, np.ones((2, 36), bool), k=3, num_classes=2)
    assert "37" not in str(err.value) and "36" not in str(err.value)


def test_without_screening_nothing_is_charged_for_it_and_the_budget_goes_in_order():
    rng = np.random.default_rng(5)
    query, client, labels, truth = _clustered(rng)
    out = sk.subsampled_knn_labels(
        query,
        client,
        labels,
        k=10,
        num_classes=L,
        sampling_rate=0.5,
        threshold=None,
        screen_scale=None,
        answer_scale=0.5,
        max_answers=12,
        randomness=noise.simulation(jax.random.key(3)),
    )
    assert out.passed.all() and out.answered[:12].all() and not out.answered[12:].any()
    np.testing.assert_array_equal(out.labels[:12], truth[:12])
    (answer,) = out.releases
    assert (answer.name, answer.count, answer.coordinates) == (sk.ANSWER_RELEASE, 12, 2)
    s1, s2 = sk.calibrate_knn_noise(
        2.0, delta=1e-5, sampling_rate=0.5, num_queries=20, max_answers=12, screen_ratio=None
    )
    assert s1 is None and s2 > 0
    with pytest.raises(ValueError, match="go together"):
        sk.subsampled_knn_labels(
            query,
            client,
            labels,
            k=10,
            num_classes=L,
            sampling_rate=0.5,
            threshold=None,
            screen_scale=1.0,
            answer_scale=0.5,
        )
