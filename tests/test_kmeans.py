"""KMeans against scikit-learn, plus its invariants and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from references import blobs, lloyd_update, squared_distances
from sklearn.cluster import KMeans

from ecos_jax import kmeans as km


@pytest.mark.parametrize(
    ("n", "d", "k", "chunk"), [(500, 2, 3, 64), (3000, 16, 25, 512), (2048, 64, 50, 2048)]
)
def test_inertia_matches_sklearn_from_same_init(n, d, k, chunk):
    x = blobs(n + d, n=n, dim=d, num_blobs=k, spread=3.0).points
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(0), jnp.asarray(x), k=k))
    ours = km.kmeans(None, jnp.asarray(x), k=k, num_iters=100, tol=0.0, init=init, chunk_size=chunk)
    ref = KMeans(k, init=init, n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(float(ours.inertia), ref.inertia_, rtol=1e-4)
    # The returned assignments are those of the returned centroids.
    a, d2 = km.assign_to_centroids(jnp.asarray(x), ours.centroids)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(ours.assignments))
    np.testing.assert_allclose(float(d2.sum()), float(ours.inertia), rtol=1e-4)


def test_assign_matches_numpy_argmin_and_is_chunk_invariant():
    x = blobs(1, n=1000, dim=8, num_blobs=10, spread=3.0).points
    c = x[:37]
    d2 = squared_distances(x, c)
    for chunk in (1, 7, 128, 1000, 5000):
        a, dist = km.assign_to_centroids(jnp.asarray(x), jnp.asarray(c), chunk_size=chunk)
        np.testing.assert_array_equal(np.asarray(a), d2.argmin(1))
        np.testing.assert_allclose(np.asarray(dist), d2.min(1), rtol=1e-4, atol=1e-3)


def test_ties_go_to_the_lowest_index():
    c = jnp.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    a, _ = km.assign_to_centroids(jnp.zeros((3, 2)), c)
    assert a.tolist() == [0, 0, 0]


def test_inertia_never_rises():
    x = blobs(2, n=4000, dim=10, num_blobs=30, spread=1.0).points
    res = km.kmeans(jax.random.key(3), jnp.asarray(x), k=30, num_iters=40, tol=0.0)
    hist = np.asarray(res.inertia_history)[: int(res.num_iters)]
    assert np.all(np.diff(hist) <= 1e-5 * hist[:-1])
    assert float(res.inertia) <= hist[-1] * (1 + 1e-5)


def _separated_blobs(num_blobs=5, per_blob=40):
    """Tight blobs 100 apart, rows sorted by blob (the first rows all lie in blob 0)."""
    rng = np.random.default_rng(12)
    centers = 100.0 * np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 0], [0, 2]][:num_blobs])
    labels = np.repeat(np.arange(num_blobs), per_blob)
    return (centers[labels] + 0.1 * rng.normal(size=(len(labels), 2))).astype(np.float32), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeding_puts_one_seed_in_every_separated_blob(seed):
    # D² sampling picks a point of an uncovered blob with probability about 1 - 1e-5 per
    # seed; seeding from the first k rows would put all of them in blob 0.
    x, labels = _separated_blobs()
    seeds = np.asarray(km.kmeans_plusplus_init(jax.random.key(seed), jnp.asarray(x), k=5))
    blob_of_seed = [labels[(x == row).all(1)][0] for row in seeds]
    assert sorted(blob_of_seed) == [0, 1, 2, 3, 4]
    # kmeans seeds the same way: one Lloyd update already recovers the blobs exactly.
    res = km.kmeans(jax.random.key(seed), jnp.asarray(x), k=5, num_iters=1, tol=0.0)
    contingency = np.zeros((5, 5), int)
    np.add.at(contingency, (labels, np.asarray(res.assignments)), 1)
    assert ((contingency > 0).sum(1) == 1).all() and ((contingency > 0).sum(0) == 1).all()


def test_seeding_draws_the_first_two_seeds_with_the_k_means_plus_plus_law():
    # With one trial per centre, seed 1 is drawn ∝ w and seed 2 ∝ w·D²(·, seed 1)
    # (Arthur & Vassilvitskii, 2007): a chi-square test of the joint law of the pair.
    x = np.array([[0.0], [1.0], [3.0], [4.0]], np.float32)
    w = np.array([1.0, 2.0, 1.0, 1.5])
    d2 = (x - x.T) ** 2
    p_first = w / w.sum()
    p_pair = p_first[:, None] * (w[None] * d2) / (w[None] * d2).sum(1, keepdims=True)
    num_draws = 2000
    counts = np.zeros((4, 4))
    for key in jax.random.split(jax.random.key(0), num_draws):
        seeds = km.kmeans_plusplus_init(
            key, jnp.asarray(x), k=2, weights=jnp.asarray(w, jnp.float32), num_local_trials=1
        )
        first, second = (int(np.flatnonzero(x[:, 0] == v)[0]) for v in np.asarray(seeds)[:, 0])
        counts[first, second] += 1
    off_diagonal = ~np.eye(4, dtype=bool)
    assert counts[~off_diagonal].sum() == 0  # a point is never its own second seed
    expected = num_draws * p_pair[off_diagonal]
    assert expected.min() >= 5  # the chi-square approximation holds
    assert scipy.stats.chisquare(counts[off_diagonal], expected).pvalue > 1e-3


@pytest.mark.parametrize("sample_size", [None, 12])
@pytest.mark.parametrize("seed", [0, 1])
def test_seeding_never_picks_a_zero_weight_point(sample_size, seed):
    # The zero-weight blob is far away: D² sampling that ignored the weights would pick it.
    x, labels = _separated_blobs(num_blobs=2, per_blob=20)
    w = (labels == 0).astype(np.float32)
    seeds = np.asarray(
        km.kmeans_plusplus_init(
            jax.random.key(seed),
            jnp.asarray(x),
            k=6,
            weights=jnp.asarray(w),
            sample_size=sample_size,
        )
    )
    assert all(w[(x == row).all(1)][0] == 1.0 for row in seeds)


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_seeds_with_kmeans_plus_plus_of_its_key_and_weights(weighted):
    x, labels = _separated_blobs(num_blobs=3, per_blob=30)
    w = jnp.asarray(labels != 1, jnp.float32) if weighted else None
    key = jax.random.key(7)
    init = km.kmeans_plusplus_init(key, jnp.asarray(x), k=3, weights=w)
    got = km.kmeans(key, jnp.asarray(x), k=3, num_iters=1, weights=w)
    ref = km.kmeans(None, jnp.asarray(x), k=3, num_iters=1, weights=w, init=init)
    np.testing.assert_array_equal(np.asarray(got.centroids), np.asarray(ref.centroids))


def _with_outliers(seed):
    """Blobs plus two planted outliers (rows -2, -1), far from everything and each other."""
    x = blobs(seed, n=300, dim=2, num_blobs=3, spread=3.0).points
    return np.concatenate([x, [[60.0, 55.0], [-45.0, -50.0]]]).astype(np.float32)


@pytest.mark.parametrize(
    "case", ["identical_init", "far_away_centroid", "zero_weight_outlier", "all_weight_zero"]
)
def test_empty_clusters_are_reseeded(case):
    # One Lloyd update (num_iters=1) so the loop cannot recover on its own: without the
    # re-seeding the empty clusters stay empty (or land on the origin, not a data point).
    x = _with_outliers(4)
    w = np.ones(len(x))
    if case == "identical_init":  # all points tie on centroid 0: clusters 1, 2 start empty
        init = np.repeat(x[:1], 3, axis=0)
    elif case == "far_away_centroid":  # centroid 2 is nearest to no point
        init = np.stack([x[0], x[1], [1e3, 1e3]])
    elif case == "zero_weight_outlier":  # the farthest point is not eligible
        init = np.repeat(x[:1], 3, axis=0)
        w[-2] = 0.0
    else:  # centroid 1 holds only zero-weight points: it counts as empty
        init = np.stack([x[0], x[-1], [1e3, 1e3]])
        w[-1] = 0.0
    init = init.astype(np.float32)
    expected, empty = lloyd_update(x, init, w)
    assert len(empty) >= 1  # the case does start with an empty cluster
    res = km.kmeans(
        None,
        jnp.asarray(x),
        k=3,
        num_iters=1,
        tol=0.0,
        init=init,
        weights=jnp.asarray(w, jnp.float32),
    )
    got = np.asarray(res.centroids)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # A re-seeded centroid is exactly a positive-weight data point (the reference's).
    np.testing.assert_array_equal(got[empty], expected[empty].astype(np.float32))
    for row in got[empty]:
        assert (x[w > 0] == row).all(1).any(), row
    counts = np.bincount(np.asarray(res.assignments), weights=w, minlength=3)
    assert (counts > 0).all()


def test_weights_equal_repeated_points():
    x = blobs(5, n=300, dim=4, num_blobs=5, spread=3.0).points
    w = np.random.default_rng(0).integers(1, 4, 300)
    init = x[:5]
    weighted = km.kmeans(
        None,
        jnp.asarray(x),
        k=5,
        weights=jnp.asarray(w, jnp.float32),
        init=init,
        tol=0.0,
        num_iters=30,
    )
    repeated = km.kmeans(
        None, jnp.asarray(np.repeat(x, w, axis=0)), k=5, init=init, tol=0.0, num_iters=30
    )
    np.testing.assert_allclose(weighted.centroids, repeated.centroids, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(weighted.inertia), float(repeated.inertia), rtol=1e-4)


def test_tolerance_stops_early_and_cap_is_respected():
    x = blobs(6, n=2000, dim=4, num_blobs=4, spread=20.0).points
    loose = km.kmeans(jax.random.key(0), jnp.asarray(x), k=4, num_iters=100, tol=1e-2)
    capped = km.kmeans(jax.random.key(0), jnp.asarray(x), k=4, num_iters=2, tol=0.0)
    assert 1 <= int(loose.num_iters) < 100
    assert int(capped.num_iters) == 2


def test_same_key_same_result_and_seeding_uses_data_points():
    x = jnp.asarray(blobs(7, n=1500, dim=6, num_blobs=8, spread=3.0).points)
    a = km.kmeans(jax.random.key(11), x, k=8)
    b = km.kmeans(jax.random.key(11), x, k=8)
    np.testing.assert_array_equal(np.asarray(a.centroids), np.asarray(b.centroids))
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(1), x, k=8, sample_size=500))
    xs = np.asarray(x)
    assert all((xs == row).all(1).any() for row in init)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 11}, "exceeds the number of points"),
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 2, "num_iters": 0}, "num_iters"),
        ({"k": 2, "chunk_size": 0}, "chunk_size"),
        ({"k": 2, "tol": -1.0}, "tol"),
        ({"k": 2, "weights": -jnp.ones(10)}, "non-negative"),
        ({"k": 2, "init": jnp.zeros((3, 2))}, r"init must have shape"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        km.kmeans(jax.random.key(0), jnp.ones((10, 2)), **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused(bad):
    x = np.ones((10, 2), np.float32)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        km.kmeans(jax.random.key(0), x, k=2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: km.kmeans(jax.random.key(0), jnp.ones((10,)), k=2), "2-D array"),
        (lambda: km.assign_to_centroids(jnp.ones((10, 3)), jnp.ones((2, 4))), "dim"),
    ],
    ids=["kmeans_1d_points", "assign_dim_mismatch"],
)
def test_wrong_rank_or_dim_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_no_recompilation_for_repeated_calls_with_same_shapes():
    x = jnp.asarray(blobs(8, n=700, dim=5, num_blobs=6, spread=3.0).points)
    km.kmeans(jax.random.key(0), x, k=6, num_iters=5)
    sizes = (km._kmeans_from._cache_size(), km._kmeans_plusplus._cache_size())
    for seed in range(1, 4):
        km.kmeans(jax.random.key(seed), x + seed, k=6, num_iters=5)
    assert (km._kmeans_from._cache_size(), km._kmeans_plusplus._cache_size()) == sizes


@pytest.mark.slow
def test_inertia_matches_sklearn_at_benchmark_scale():
    x = blobs(9, n=100_000, dim=64, num_blobs=128, spread=1.0).points
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(0), jnp.asarray(x), k=128))
    ours = km.kmeans(None, jnp.asarray(x), k=128, num_iters=30, tol=0.0, init=init)
    ref = KMeans(128, init=init, n_init=1, max_iter=30, tol=0.0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(float(ours.inertia), ref.inertia_, rtol=1e-3)
