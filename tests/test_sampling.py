"""Tests for ecos_jax.sampling: allocation, greedy k-center, ECOS selection, baselines."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from ecos_jax import sampling

# ----------------------------------------------------------------------------- helpers


def _reference_k_center(x, mask, num_select, *, seed_point=None, first=None, metric="l2"):
    """Brute-force farthest-point selection in float64 NumPy."""
    x = np.asarray(x, np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)

    def dist(p):
        if metric == "l2":
            return np.linalg.norm(x - p, axis=1)
        return 1.0 - x @ (p / np.linalg.norm(p))

    chosen = [] if first is None else [first]
    if seed_point is not None:
        centers = [np.asarray(seed_point, np.float64)]
    else:
        centers = [x[first]] if first is not None else []
    while len(chosen) < num_select and len(chosen) < mask.sum():
        if centers:
            d = np.min(np.stack([dist(c) for c in centers]), axis=0)
        else:
            d = np.full(len(x), np.inf)
        d[~mask] = -np.inf
        d[chosen] = -np.inf
        j = int(np.argmax(d))
        chosen.append(j)
        centers.append(x[j])
    return chosen


def _blobs(seed=0, n_per=60, dim=6, num_blobs=5, spread=8.0):
    """Well separated Gaussian blobs with their blob labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_blobs, dim)) * spread
    labels = np.repeat(np.arange(num_blobs), n_per)
    x = centers[labels] + rng.normal(size=(labels.size, dim))
    return x.astype(np.float32), labels, centers.astype(np.float32)


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


# --------------------------------------------------------------------- greedy k-center


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("use_seed", [True, False])
def test_greedy_k_center_matches_numpy(metric, use_seed):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(37, 5)).astype(np.float32) + 0.5
    mask = rng.random(37) < 0.8
    seed_point = rng.normal(size=5).astype(np.float32) if use_seed else None
    res = sampling.greedy_k_center(
        jnp.asarray(x),
        jnp.asarray(mask),
        num_select=12,
        seed_point_D=None if seed_point is None else jnp.asarray(seed_point),
        metric=metric,
    )
    if use_seed:
        expected = _reference_k_center(x, mask, 12, seed_point=seed_point, metric=metric)
    else:
        first = int(np.flatnonzero(mask)[0])  # without a seed, the first valid row
        expected = _reference_k_center(x, mask, 12, first=first, metric=metric)
    assert np.asarray(res.indices).tolist() == expected
    assert np.all(np.asarray(res.valid))


def test_greedy_k_center_never_picks_masked_rows():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(16, 3)), jnp.float32)
    mask = np.zeros(16, bool)
    mask[[1, 4, 9, 15]] = True
    res = sampling.greedy_k_center(x, jnp.asarray(mask), num_select=8)
    idx, valid = np.asarray(res.indices), np.asarray(res.valid)
    assert valid.tolist() == [True] * 4 + [False] * 4
    assert sorted(idx[:4].tolist()) == [1, 4, 9, 15]
    assert idx[4:].tolist() == [-1] * 4


def test_greedy_k_center_prefix_consistent():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(64, 4)), jnp.float32)
    mask = jnp.ones(64, bool)
    seed = jnp.zeros(4)
    long = sampling.greedy_k_center(x, mask, num_select=32, seed_point_D=seed)
    short = sampling.greedy_k_center(x, mask, num_select=9, seed_point_D=seed)
    np.testing.assert_array_equal(np.asarray(long.indices)[:9], np.asarray(short.indices))


def test_greedy_k_center_no_recompile_for_same_padded_shape():
    rng = np.random.default_rng(4)
    size = sampling.bucket_size(20)
    assert size == 32

    def call(num_valid):
        x = np.zeros((size, 3), np.float32)
        x[:num_valid] = rng.normal(size=(num_valid, 3))
        mask = np.arange(size) < num_valid
        return sampling.greedy_k_center(
            jnp.asarray(x), jnp.asarray(mask), num_select=8, seed_point_D=jnp.zeros(3)
        )

    call(20)
    before = sampling.greedy_k_center._cache_size()
    for num_valid in (9, 13, 17, 20, 25, 32):
        call(num_valid)
    assert sampling.greedy_k_center._cache_size() == before


def test_greedy_k_center_errors():
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="num_select"):
        sampling.greedy_k_center(x, jnp.ones(4, bool), num_select=5)
    with pytest.raises(ValueError, match="mask_C"):
        sampling.greedy_k_center(x, jnp.ones(3, bool), num_select=2)
    with pytest.raises(ValueError, match="seed_point_D"):
        sampling.greedy_k_center(x, jnp.ones(4, bool), num_select=2, seed_point_D=jnp.zeros(3))
    with pytest.raises(ValueError, match="metric"):
        sampling.greedy_k_center(x, jnp.ones(4, bool), num_select=2, metric="l1")


def test_bucket_size():
    assert [sampling.bucket_size(n) for n in (0, 1, 8, 9, 16, 17, 1000)] == [
        8,
        8,
        8,
        16,
        16,
        32,
        1024,
    ]


# ------------------------------------------------------------------------- ECOS select


def _ecos_inputs():
    x, labels, centers = _blobs(seed=5)
    return x, labels.astype(np.int32), centers


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("kappa", [1.0, 1.5, None])
def test_ecos_select_budget_unique_deterministic(metric, kappa):
    x, a, c = _ecos_inputs()
    scores = np.array([40.0, 0.0, 12.5, -3.0, 7.0])
    args = (x, a, c, scores)
    idx = sampling.ecos_select(jax.random.key(0), *args, budget=45, kappa=kappa, metric=metric)
    assert idx.shape == (45,) and idx.dtype == np.int64
    assert np.unique(idx).size == 45
    again = sampling.ecos_select(jax.random.key(0), *args, budget=45, kappa=kappa, metric=metric)
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
    idx = sampling.ecos_select(None, x, a, c, scores, budget=7, kappa=1.0)
    members = np.flatnonzero(a == 0)
    d = np.linalg.norm(x[members] - c[0], axis=1)
    assert set(idx.tolist()) == set(members[np.argsort(d)[:7]].tolist())


def test_ecos_select_k_center_inside_candidates_matches_reference():
    x, a, c = _ecos_inputs()
    scores = np.array([10.0, 0.0, 0.0, 0.0, 0.0])
    idx = sampling.ecos_select(None, x, a, c, scores, budget=6, kappa=2.0)
    members = np.flatnonzero(a == 0)
    cand = members[np.argsort(np.linalg.norm(x[members] - c[0], axis=1))[:12]]
    expected = _reference_k_center(x[cand], np.ones(12, bool), 6, seed_point=c[0])
    assert idx.tolist() == cand[expected].tolist()


def test_ecos_select_threshold_top_k_and_spill():
    x, a, c = _ecos_inputs()
    scores = np.array([30.0, 2.0, 20.0, 1.0, 10.0])
    idx = sampling.ecos_select(None, x, a, c, scores, budget=30, threshold=5.0)
    assert set(np.unique(a[idx])) <= {0, 2, 4}
    idx = sampling.ecos_select(None, x, a, c, scores, budget=30, top_k=1)
    assert set(np.unique(a[idx])) == {0}
    # Budget above the kept clusters' capacity: the rest comes from the others.
    idx = sampling.ecos_select(None, x, a, c, scores, budget=100, top_k=1)
    assert idx.size == 100 and np.unique(idx).size == 100
    assert np.sum(a[idx] == 0) == 60


def test_ecos_select_full_pool_and_zero_budget():
    x, a, c = _ecos_inputs()
    scores = np.ones(5)
    idx = sampling.ecos_select(None, x, a, c, scores, budget=x.shape[0])
    np.testing.assert_array_equal(np.sort(idx), np.arange(x.shape[0]))
    assert sampling.ecos_select(None, x, a, c, scores, budget=0).size == 0


def test_ecos_select_errors():
    x, a, c = _ecos_inputs()
    s = np.ones(5)
    with pytest.raises(ValueError, match="budget"):
        sampling.ecos_select(None, x, a, c, s, budget=x.shape[0] + 1)
    with pytest.raises(ValueError, match="noisy_scores"):
        sampling.ecos_select(None, x, a, c, np.ones(4), budget=3)
    with pytest.raises(ValueError, match="assignments"):
        sampling.ecos_select(None, x, a + 5, c, s, budget=3)
    with pytest.raises(ValueError, match="kappa"):
        sampling.ecos_select(None, x, a, c, s, budget=3, kappa=0.5)
    with pytest.raises(ValueError, match="dimension"):
        sampling.ecos_select(None, x, a, c[:, :3], s, budget=3)


# -------------------------------------------------------------------------- baselines


def test_random_select():
    idx = sampling.random_select(jax.random.key(0), 100, budget=30)
    assert idx.shape == (30,) and np.unique(idx).size == 30
    assert idx.min() >= 0 and idx.max() < 100
    np.testing.assert_array_equal(idx, sampling.random_select(jax.random.key(0), 100, budget=30))
    assert not np.array_equal(idx, sampling.random_select(jax.random.key(1), 100, budget=30))
    with pytest.raises(ValueError, match="budget"):
        sampling.random_select(jax.random.key(0), 10, budget=11)


def test_random_select_is_uniform():
    # 400 draws of 5 out of 20: each index is chosen 100 times in expectation.
    counts = np.zeros(20)
    for i in range(400):
        counts[sampling.random_select(jax.random.key(i), 20, budget=5)] += 1
    assert scipy.stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_k_center_select_matches_reference(metric):
    x = np.random.default_rng(6).normal(size=(50, 4)).astype(np.float32) + 0.3
    key = jax.random.key(3)
    idx = sampling.k_center_select(key, x, budget=10, metric=metric)
    first = int(jax.random.randint(key, (), 0, 50))
    expected = _reference_k_center(x, np.ones(50, bool), 10, first=first, metric=metric)
    assert idx.tolist() == expected
    np.testing.assert_array_equal(idx, sampling.k_center_select(key, x, budget=10, metric=metric))
    assert sampling.k_center_select(key, x, budget=1).tolist() == [first]


def test_oracle_select_picks_near_client():
    x, labels, centers = _blobs(seed=7)
    rng = np.random.default_rng(8)
    client = (centers[2] + rng.normal(size=(30, x.shape[1]))).astype(np.float32)
    idx = sampling.oracle_select(x, client, budget=40)
    assert idx.shape == (40,) and np.unique(idx).size == 40
    assert np.all(labels[idx] == 2)
    idx_cos = sampling.oracle_select(x, client, budget=20, metric="cosine", chunk_size=7)
    assert np.unique(idx_cos).size == 20
    with pytest.raises(ValueError, match="dimension"):
        sampling.oracle_select(x, client[:, :2], budget=4)


def test_full_pool_select():
    np.testing.assert_array_equal(sampling.full_pool_select(5), np.arange(5))
    with pytest.raises(ValueError, match="num_pool"):
        sampling.full_pool_select(-1)


def test_selectors_take_key_first():
    for fn in (sampling.ecos_select, sampling.random_select, sampling.k_center_select):
        assert next(iter(inspect.signature(fn).parameters)) == "key"


def test_oracle_covers_every_client_sample_not_only_the_densest_region():
    rng = np.random.default_rng(0)
    dim = 8
    near = rng.normal(scale=0.1, size=(400, dim))  # pool blob hugging client group A
    far = 5.0 + rng.normal(scale=1.0, size=(400, dim))  # looser blob around group B
    pool = np.concatenate([near, far]).astype(np.float32)
    client = np.concatenate(
        [rng.normal(scale=0.1, size=(20, dim)), 5.0 + rng.normal(scale=1.0, size=(20, dim))]
    ).astype(np.float32)
    idx = sampling.oracle_select(pool, client, budget=40, kappa=1.0)
    # Ranking by "distance to the closest client sample" would take only the tight blob;
    # per-sample neighbours give group B its share.
    assert 10 <= np.sum(idx >= 400) <= 30
    d2 = ((client[:, None, :] - pool[None]) ** 2).sum(-1)
    assert set(np.unique(d2.argmin(1))) <= set(idx.tolist())  # every 1-NN is a candidate
