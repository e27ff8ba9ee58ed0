"""Tests for ecos_jax.sampling (allocation, ECOS selection) and ecos_jax.baselines."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from references import (
    blobs,
    per_cluster_ecos_select,
    reference_ecos_select,
    reference_k_center,
)

from ecos_jax import baselines, sampling

# ----------------------------------------------------------------------------- helpers


# ------------------------------------------------------------------------ allocation


def test_allocate_budget_examples():
    assert sampling.allocate_budget([3.0, 1.0, -2.0], [10, 10, 10], budget=8).tolist() == [
        6,
        2,
        0,
    ]
    # Cluster 0 is full at 2: its overflow goes to the other positive-weight cluster.
    assert sampling.allocate_budget([3.0, 1.0, -2.0], [2, 10, 10], budget=8).tolist() == [2, 6, 0]
    # Every positive-weight cluster full: the rest spills by size to the others.
    assert sampling.allocate_budget([3.0, -1.0, 0.0], [2, 10, 30], budget=10).tolist() == [
        2,
        2,
        6,
    ]
    # Largest remainder: quotas 1.5, 1.5, 0 (ties broken by raw weight, then index).
    assert sampling.allocate_budget([1.0, 1.0, 0.0], [5, 5, 5], budget=3).tolist() == [2, 1, 0]


@pytest.mark.parametrize(
    ("weights", "budget", "expected"),
    [
        # Quotas 2.0, 1.2, 0.8: the one spare unit goes to the largest remainder (0.8).
        ([5.0, 3.0, 2.0], 4, [2, 1, 1]),
        # Quotas 0.4, 0.8, 2.8: remainders 0.8 tie, the larger raw weight (7) wins first.
        ([1.0, 2.0, 7.0], 4, [0, 1, 3]),
        # Quotas 0.5, 1.5: equal remainders, the larger raw weight wins.
        ([1.0, 3.0], 2, [0, 2]),
        # Quotas 1.0, 0.5, 0.5, 3.0: equal remainders and weights, the lower index wins;
        # cluster 0 (remainder 0) never gets the unit.
        ([2.0, 1.0, 1.0, 6.0], 5, [1, 1, 0, 3]),
    ],
)
def test_allocate_budget_gives_the_remainder_by_largest_remainder(weights, budget, expected):
    # Hamilton's method by hand: floors of budget·w/Σw, then +1 by largest remainder.
    capacities = [10] * len(weights)
    assert sampling.allocate_budget(weights, capacities, budget=budget).tolist() == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)),
            st.integers(0, 40),
        ),
        min_size=1,
        max_size=25,
    ),
    st.floats(0.0, 1.0),
)
def test_allocate_budget_properties(pairs, fraction):
    weights = np.array([w for w, _ in pairs])
    caps = np.array([c for _, c in pairs])
    budget = round(fraction * int(caps.sum()))
    n = sampling.allocate_budget(weights, caps, budget=budget)
    assert n.dtype == np.int64
    assert n.sum() == budget
    assert np.all(n >= 0) and np.all(n <= caps)
    positive = weights > 0
    if caps[positive].sum() >= budget:
        # Zero/negative-weight clusters get nothing while the others have room.
        assert np.all(n[~positive] == 0)
    else:
        # Otherwise every positive-weight cluster is full before anything spills.
        assert np.all(n[positive] == caps[positive])
    if positive.any() and budget > 0:
        quota = budget * np.maximum(weights, 0) / np.maximum(weights, 0).sum()
        if np.all(quota[positive] < caps[positive]):
            # No capping: largest remainder stays within one unit of the exact share, and a
            # cluster rounded further up never has a smaller remainder than another.
            assert np.all(np.abs(n - quota) < 1.0)
            rounded_up = (n - np.floor(quota))[positive]
            remainder = (quota - np.floor(quota))[positive]
            above = rounded_up[:, None] > rounded_up[None, :]
            assert np.all((remainder[:, None] >= remainder[None, :] - 1e-9)[above])


def test_allocate_budget_errors():
    with pytest.raises(ValueError, match="exceeds the total capacity"):
        sampling.allocate_budget([1.0, 2.0], [3, 4], budget=8)
    with pytest.raises(ValueError, match="budget must be >= 0"):
        sampling.allocate_budget([1.0, 2.0], [3, 4], budget=-1)
    with pytest.raises(ValueError, match="capacities_R must have the shape"):
        sampling.allocate_budget([1.0, 2.0], [3, 4, 5], budget=1)
    with pytest.raises(ValueError, match="non-negative integers"):
        sampling.allocate_budget([1.0, 2.0], [3, -4], budget=1)
    with pytest.raises(ValueError, match="finite"):
        sampling.allocate_budget([np.nan, 2.0], [3, 4], budget=1)
    with pytest.raises(ValueError, match="budget must be an int"):
        sampling.allocate_budget([1.0, 2.0], [3, 4], budget=1.5)


def test_filter_scores():
    s = np.array([5.0, -1.0, 2.0, 9.0, 0.5])
    np.testing.assert_array_equal(sampling.filter_scores(s), [5.0, 0.0, 2.0, 9.0, 0.5])
    np.testing.assert_array_equal(
        sampling.filter_scores(s, threshold=1.0), [5.0, 0.0, 2.0, 9.0, 0.0]
    )
    np.testing.assert_array_equal(sampling.filter_scores(s, top_k=2), [5.0, 0.0, 0.0, 9.0, 0.0])
    with pytest.raises(ValueError, match="top_k"):
        sampling.filter_scores(s, top_k=0)
    with pytest.raises(ValueError, match="threshold"):
        sampling.filter_scores(s, threshold=np.inf)


# ------------------------------------------------------------------------- ECOS select


def _ecos_inputs():
    x, labels, centers = blobs(5)
    return x, labels.astype(np.int32), centers


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("kappa", [1.0, 1.5, None])
def test_ecos_select_budget_unique_deterministic(metric, kappa):
    x, a, c = _ecos_inputs()
    scores = np.array([40.0, 0.0, 12.5, -3.0, 7.0])
    args = (x, a, c, scores)
    idx = sampling.ecos_select(*args, budget=45, kappa=kappa, metric=metric)
    assert idx.shape == (45,) and idx.dtype == np.int64
    assert np.unique(idx).size == 45
    again = sampling.ecos_select(*args, budget=45, kappa=kappa, metric=metric)
    np.testing.assert_array_equal(idx, again)
    # Budget follows the scores: clusters 1 and 3 (weight 0) get nothing.
    per_cluster = np.bincount(a[idx], minlength=5)
    np.testing.assert_array_equal(
        per_cluster, sampling.allocate_budget(scores, np.bincount(a), budget=45)
    )
    assert per_cluster[1] == 0 and per_cluster[3] == 0


def test_ecos_select_kappa_one_takes_nearest_to_centroid():
    x, a, c = _ecos_inputs()
    scores = np.array([10.0, 0.0, 0.0, 0.0, 0.0])
    idx = sampling.ecos_select(x, a, c, scores, budget=7, kappa=1.0)
    members = np.flatnonzero(a == 0)
    d = np.linalg.norm(x[members] - c[0], axis=1)
    assert set(idx.tolist()) == set(members[np.argsort(d)[:7]].tolist())


def test_ecos_select_k_center_inside_candidates_matches_reference():
    x, a, c = _ecos_inputs()
    scores = np.array([10.0, 0.0, 0.0, 0.0, 0.0])
    idx = sampling.ecos_select(x, a, c, scores, budget=6, kappa=2.0)
    members = np.flatnonzero(a == 0)
    cand = members[np.argsort(np.linalg.norm(x[members] - c[0], axis=1))[:12]]
    expected = reference_k_center(x[cand], np.ones(12, bool), 6, seed_point=c[0])
    assert idx.tolist() == cand[expected].tolist()


def test_ecos_select_threshold_top_k_and_spill():
    x, a, c = _ecos_inputs()
    scores = np.array([30.0, 2.0, 20.0, 1.0, 10.0])
    idx = sampling.ecos_select(x, a, c, scores, budget=30, threshold=5.0)
    assert set(np.unique(a[idx])) <= {0, 2, 4}
    idx = sampling.ecos_select(x, a, c, scores, budget=30, top_k=1)
    assert set(np.unique(a[idx])) == {0}
    # Budget above the kept clusters' capacity: the rest comes from the others.
    idx = sampling.ecos_select(x, a, c, scores, budget=100, top_k=1)
    assert idx.size == 100 and np.unique(idx).size == 100
    assert np.sum(a[idx] == 0) == 60


def test_ecos_select_full_pool_and_zero_budget():
    x, a, c = _ecos_inputs()
    scores = np.ones(5)
    idx = sampling.ecos_select(x, a, c, scores, budget=x.shape[0])
    np.testing.assert_array_equal(np.sort(idx), np.arange(x.shape[0]))
    assert sampling.ecos_select(x, a, c, scores, budget=0).size == 0


def test_ecos_select_errors():
    x, a, c = _ecos_inputs()
    s = np.ones(5)
    with pytest.raises(ValueError, match="budget"):
        sampling.ecos_select(x, a, c, s, budget=x.shape[0] + 1)
    with pytest.raises(ValueError, match="scores must have shape"):
        sampling.ecos_select(x, a, c, np.ones(4), budget=3)
    with pytest.raises(ValueError, match="assignments"):
        sampling.ecos_select(x, a + 5, c, s, budget=3)
    with pytest.raises(ValueError, match="kappa"):
        sampling.ecos_select(x, a, c, s, budget=3, kappa=0.5)
    with pytest.raises(ValueError, match="dimension"):
        sampling.ecos_select(x, a, c[:, :3], s, budget=3)


def _uneven_clusters(seed=11, sizes=(5, 14, 23, 40, 71, 120, 9, 33), dim=16):
    """Blobs of very different sizes, so that the candidate sets span several padded sizes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim)) * 6.0
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = (centers[labels] + rng.normal(size=(labels.size, dim))).astype(np.float32)
    means = np.stack([x[labels == r].mean(0) for r in range(len(sizes))]).astype(np.float32)
    scores = rng.uniform(1.0, 50.0, size=len(sizes)).round()
    return x, labels.astype(np.int32), means, scores


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("kappa", [1.0, 1.5, 3.0, None])
@pytest.mark.parametrize("budget", [7, 40, 111, 300])
def test_ecos_select_equals_the_per_cluster_references(metric, kappa, budget):
    x, a, c, s = _uneven_clusters()
    args = dict(budget=budget, kappa=kappa, metric=metric)
    got = sampling.ecos_select(x, a, c, s, **args)
    # The same picks as one greedy_k_center call per cluster (the pre-grouping algorithm),
    # and as the algorithm written out in float64 NumPy.
    np.testing.assert_array_equal(got, per_cluster_ecos_select(x, a, c, s, **args))
    np.testing.assert_array_equal(got, reference_ecos_select(x, a, c, s, **args))


def test_ecos_select_takes_chunk_size():
    x, a, c, s = _uneven_clusters()
    want = sampling.ecos_select(x, a, c, s, budget=60)
    for chunk_size in (1, 7, 64, 10_000):
        got = sampling.ecos_select(x, a, c, s, budget=60, chunk_size=chunk_size)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="chunk_size"):
        sampling.ecos_select(x, a, c, s, budget=60, chunk_size=0)


# -------------------------------------------------------------------------- baselines


def test_random_select():
    idx = baselines.random_select(jax.random.key(0), 100, budget=30)
    assert idx.shape == (30,) and np.unique(idx).size == 30
    assert idx.min() >= 0 and idx.max() < 100
    np.testing.assert_array_equal(idx, baselines.random_select(jax.random.key(0), 100, budget=30))
    assert not np.array_equal(idx, baselines.random_select(jax.random.key(1), 100, budget=30))
    with pytest.raises(ValueError, match="budget"):
        baselines.random_select(jax.random.key(0), 10, budget=11)


def test_random_select_is_uniform():
    # 400 draws of 5 out of 20: each index is chosen 100 times in expectation.
    counts = np.zeros(20)
    for i in range(400):
        counts[baselines.random_select(jax.random.key(i), 20, budget=5)] += 1
    assert scipy.stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_k_center_select_matches_reference(metric):
    x = np.random.default_rng(6).normal(size=(50, 4)).astype(np.float32) + 0.3
    key = jax.random.key(3)
    idx = baselines.k_center_select(key, x, budget=10, metric=metric)
    first = int(jax.random.randint(key, (), 0, 50))
    expected = reference_k_center(x, np.ones(50, bool), 10, first=first, metric=metric)
    assert idx.tolist() == expected
    np.testing.assert_array_equal(idx, baselines.k_center_select(key, x, budget=10, metric=metric))
    assert baselines.k_center_select(key, x, budget=1).tolist() == [first]


def test_oracle_select_picks_near_client():
    x, labels, centers = blobs(7)
    rng = np.random.default_rng(8)
    client = (centers[2] + rng.normal(size=(30, x.shape[1]))).astype(np.float32)
    idx = baselines.oracle_select(x, client, budget=40)
    assert idx.shape == (40,) and np.unique(idx).size == 40
    assert np.all(labels[idx] == 2)
    idx_cos = baselines.oracle_select(x, client, budget=20, metric="cosine", chunk_size=7)
    assert np.unique(idx_cos).size == 20
    with pytest.raises(ValueError, match="dimension"):
        baselines.oracle_select(x, client[:, :2], budget=4)


def test_full_pool_select():
    np.testing.assert_array_equal(baselines.full_pool_select(5), np.arange(5))
    with pytest.raises(ValueError, match="num_pool"):
        baselines.full_pool_select(-1)


def test_random_selectors_take_key_first_and_ecos_takes_none():
    for fn in (baselines.random_select, baselines.k_center_select):
        assert next(iter(inspect.signature(fn).parameters)) == "key"
    # ECOS selection is a deterministic function of the released scores: no key at all.
    params = inspect.signature(sampling.ecos_select).parameters
    assert "key" not in params and next(iter(params)) == "pool_features"


def test_oracle_covers_every_client_sample_not_only_the_densest_region():
    rng = np.random.default_rng(0)
    dim = 8
    near = rng.normal(scale=0.1, size=(400, dim))  # pool blob hugging client group A
    far = 5.0 + rng.normal(scale=1.0, size=(400, dim))  # looser blob around group B
    pool = np.concatenate([near, far]).astype(np.float32)
    client = np.concatenate(
        [rng.normal(scale=0.1, size=(20, dim)), 5.0 + rng.normal(scale=1.0, size=(20, dim))]
    ).astype(np.float32)
    idx = baselines.oracle_select(pool, client, budget=40, kappa=1.0)
    # Ranking by "distance to the closest client sample" would take only the tight blob;
    # per-sample neighbours give group B its share.
    assert 10 <= np.sum(idx >= 400) <= 30
    d2 = ((client[:, None, :] - pool[None]) ** 2).sum(-1)
    assert set(np.unique(d2.argmin(1))) <= set(idx.tolist())  # every 1-NN is a candidate
