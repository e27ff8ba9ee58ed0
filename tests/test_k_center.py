"""Tests for ecos_jax.k_center: greedy k-center against NumPy, under jit and vmap, and the
grouped k-center's equality with one call per set and its one compile per padded size."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import per_cluster_ecos_select, reference_k_center

from ecos_jax import k_center, sampling

# --------------------------------------------------------------------- greedy k-center


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("use_seed", [True, False])
def test_greedy_k_center_matches_numpy(metric, use_seed):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(37, 5)).astype(np.float32) + 0.5
    mask = rng.random(37) < 0.8
    seed_point = rng.normal(size=5).astype(np.float32) if use_seed else None
    res = k_center.greedy_k_center(
        jnp.asarray(x),
        jnp.asarray(mask),
        num_select=12,
        seed_point_D=None if seed_point is None else jnp.asarray(seed_point),
        metric=metric,
    )
    if use_seed:
        expected = reference_k_center(x, mask, 12, seed_point=seed_point, metric=metric)
    else:
        first = int(np.flatnonzero(mask)[0])  # without a seed, the first valid row
        expected = reference_k_center(x, mask, 12, first=first, metric=metric)
    assert np.asarray(res.indices).tolist() == expected
    assert np.all(np.asarray(res.valid))


def test_greedy_k_center_never_picks_masked_rows():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(16, 3)), jnp.float32)
    mask = np.zeros(16, bool)
    mask[[1, 4, 9, 15]] = True
    res = k_center.greedy_k_center(x, jnp.asarray(mask), num_select=8)
    idx, valid = np.asarray(res.indices), np.asarray(res.valid)
    assert valid.tolist() == [True] * 4 + [False] * 4
    assert sorted(idx[:4].tolist()) == [1, 4, 9, 15]
    assert idx[4:].tolist() == [-1] * 4


def test_greedy_k_center_prefix_consistent():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(64, 4)), jnp.float32)
    mask = jnp.ones(64, bool)
    seed = jnp.zeros(4)
    long = k_center.greedy_k_center(x, mask, num_select=32, seed_point_D=seed)
    short = k_center.greedy_k_center(x, mask, num_select=9, seed_point_D=seed)
    np.testing.assert_array_equal(np.asarray(long.indices)[:9], np.asarray(short.indices))


def test_greedy_k_center_no_recompile_for_same_padded_shape():
    rng = np.random.default_rng(4)
    size = k_center.bucket_size(20)
    assert size == 32

    def call(num_valid):
        x = np.zeros((size, 3), np.float32)
        x[:num_valid] = rng.normal(size=(num_valid, 3))
        mask = np.arange(size) < num_valid
        return k_center.greedy_k_center(
            jnp.asarray(x), jnp.asarray(mask), num_select=8, seed_point_D=jnp.zeros(3)
        )

    call(20)
    before = k_center.greedy_k_center._cache_size()
    for num_valid in (9, 13, 17, 20, 25, 32):
        call(num_valid)
    assert k_center.greedy_k_center._cache_size() == before


def test_greedy_k_center_errors():
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="num_select"):
        k_center.greedy_k_center(x, jnp.ones(4, bool), num_select=5)
    with pytest.raises(ValueError, match="mask_P"):
        k_center.greedy_k_center(x, jnp.ones(3, bool), num_select=2)
    with pytest.raises(ValueError, match="seed_point_D"):
        k_center.greedy_k_center(x, jnp.ones(4, bool), num_select=2, seed_point_D=jnp.zeros(3))
    with pytest.raises(ValueError, match="metric"):
        k_center.greedy_k_center(x, jnp.ones(4, bool), num_select=2, metric="l1")


def test_bucket_size():
    assert [k_center.bucket_size(n) for n in (0, 1, 8, 9, 16, 17, 1000)] == [
        8,
        8,
        8,
        16,
        16,
        32,
        1024,
    ]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_greedy_k_center_under_jit_and_vmap_equals_eager_per_example(metric):
    rng = np.random.default_rng(5)
    x_BxCxD = jnp.asarray(rng.normal(size=(6, 24, 4)), jnp.float32)
    mask_BxC = jnp.asarray(rng.random((6, 24)) < 0.7)
    seeds_BxD = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    pick = functools.partial(k_center.greedy_k_center, num_select=10, metric=metric)
    with jax.disable_jit():
        eager = [pick(x_BxCxD[b], mask_BxC[b], seed_point_D=seeds_BxD[b]) for b in range(6)]
    want_idx = np.stack([np.asarray(e.indices) for e in eager])
    want_valid = np.stack([np.asarray(e.valid) for e in eager])
    batched = jax.vmap(lambda x, m, s: pick(x, m, seed_point_D=s))
    for fn in (batched, jax.jit(batched)):
        res = fn(x_BxCxD, mask_BxC, seeds_BxD)
        np.testing.assert_array_equal(np.asarray(res.indices), want_idx)
        np.testing.assert_array_equal(np.asarray(res.valid), want_valid)
    jitted = jax.jit(lambda x, m: pick(x, m))  # and without a seed point
    for b in range(6):
        with jax.disable_jit():
            want = pick(x_BxCxD[b], mask_BxC[b])
        got = jitted(x_BxCxD[b], mask_BxC[b])
        np.testing.assert_array_equal(np.asarray(got.indices), np.asarray(want.indices))


def _candidate_sets(seed=6, sizes=(3, 8, 9, 15, 16, 17, 40, 64, 100, 7, 130, 300), dim=12):
    """Disjoint candidate sets of many sizes (several padded sizes) over one pool."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(sum(sizes) + 5, dim)).astype(np.float32)
    perm = rng.permutation(x.shape[0])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    sets = [perm[starts[i] : starts[i + 1]] for i in range(len(sizes))]
    seeds = rng.normal(size=(len(sizes), dim)).astype(np.float32)
    return x, sets, seeds


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("per_chunk", [2, 64])
def test_grouped_k_center_equals_one_greedy_call_per_set(monkeypatch, metric, per_chunk):
    # A small chunk puts a group's sets into several calls, the last padded with dummies.
    monkeypatch.setattr(k_center, "MAX_CLUSTERS_PER_CHUNK", per_chunk)
    x, sets, seeds = _candidate_sets()
    num_select = [max(1, len(s) // 2) for s in sets]
    got = k_center.grouped_k_center(jnp.asarray(x), sets, seeds, num_select, metric=metric)
    for rows, seed, n, picks in zip(sets, seeds, num_select, got, strict=True):
        size = k_center.bucket_size(len(rows))
        padded = np.zeros((size, x.shape[1]), np.float32)
        padded[: len(rows)] = x[rows]
        one = k_center.greedy_k_center(
            jnp.asarray(padded),
            jnp.asarray(np.arange(size) < len(rows)),
            num_select=n,
            seed_point_D=jnp.asarray(seed),
            metric=metric,
        )
        np.testing.assert_array_equal(picks, rows[np.asarray(one.indices)])
        expected = reference_k_center(
            x[rows], np.ones(len(rows), bool), n, seed_point=seed, metric=metric
        )
        np.testing.assert_array_equal(picks, rows[expected])


def test_grouped_k_center_is_prefix_consistent():
    """Ordering a set further never changes its first picks: what lets one program serve
    every budget."""
    x, sets, seeds = _candidate_sets(seed=7)
    x = jnp.asarray(x)
    full = k_center.grouped_k_center(x, sets, seeds, [len(s) for s in sets])
    for n in (1, 2, 5):
        short = k_center.grouped_k_center(x, sets, seeds, [min(n, len(s)) for s in sets])
        for a, b in zip(full, short, strict=True):
            np.testing.assert_array_equal(a[: len(b)], b)
    for rows, picks in zip(sets, full, strict=True):
        assert sorted(picks.tolist()) == sorted(rows.tolist())  # all of it, once each


def test_grouped_k_center_errors():
    x, sets, seeds = _candidate_sets()
    x = jnp.asarray(x)
    with pytest.raises(ValueError, match="seed_points"):
        k_center.grouped_k_center(x, sets, seeds[:2], [1] * len(sets))
    with pytest.raises(ValueError, match="one count per set"):
        k_center.grouped_k_center(x, sets, seeds, [1])
    with pytest.raises(ValueError, match=r"num_select\[0\]"):
        k_center.grouped_k_center(x, sets, seeds, [len(sets[0]) + 1] + [1] * (len(sets) - 1))


def test_clusters_per_chunk_keeps_a_chunk_under_the_memory_cap():
    for padded in (8, 64, 1024, 2**14, 2**20):
        for dim in (2, 64, 512, 4096):
            g = k_center.clusters_per_chunk(padded, dim)
            assert 1 <= g <= k_center.MAX_CLUSTERS_PER_CHUNK
            assert g == 1 or g * padded * dim * 4 <= k_center.CHUNK_BYTES


def _padded_sizes(a_N, scores_R, budget, kappa):
    """The distinct padded candidate sizes P that ECOS orders with k-center at `budget`."""
    w_R = sampling.filter_scores(scores_R)
    sizes_R = np.bincount(a_N, minlength=len(scores_R))
    n_R = sampling.allocate_budget(w_R, sizes_R, budget=budget)
    padded = set()
    for n, size in zip(n_R, sizes_R, strict=True):
        m = min(size, sampling.num_candidates(kappa, n))
        if 0 < n < m:
            padded.add(k_center.grouped_size(m))
    return padded


def test_ecos_select_compiles_one_k_center_program_per_padded_size_whatever_the_budget():
    rng = np.random.default_rng(8)
    num_clusters, dim = 12, 7  # a pool shape no other test uses: a fresh compile cache
    sizes = rng.integers(20, 700, size=num_clusters)
    a_N = np.repeat(np.arange(num_clusters), sizes).astype(np.int32)
    x = (rng.normal(size=(num_clusters, dim)) * 5)[a_N] + rng.normal(size=(a_N.size, dim))
    x = jnp.asarray(x, jnp.float32)
    c = np.stack([np.asarray(x)[a_N == r].mean(0) for r in range(num_clusters)])
    s = rng.uniform(1.0, 30.0, size=num_clusters).round()
    programs = k_center._order_chunk._cache_size()
    ranking = sampling._distance_to_own_centroid._cache_size()
    seen: set[int] = set()
    for budget in (100, 300, 37, 550, 1500, 101, 299, 2500, 64):
        got = sampling.ecos_select(x, a_N, c, s, budget=budget)
        seen |= _padded_sizes(a_N, s, budget, 1.5)
        # At most one k-center program per distinct padded size, whatever the budgets.
        assert k_center._order_chunk._cache_size() - programs == len(seen)
        np.testing.assert_array_equal(got, per_cluster_ecos_select(x, a_N, c, s, budget=budget))
    assert len(seen) >= 3  # the budgets did span several padded sizes
    assert sampling._distance_to_own_centroid._cache_size() - ranking == 1
