"""KMeans against scikit-learn, plus its invariants and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from ecos_jax import kmeans as km


def _blobs(seed, n, d, k, spread=3.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * spread
    return (centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize(
    ("n", "d", "k", "chunk"), [(500, 2, 3, 64), (3000, 16, 25, 512), (2048, 64, 50, 2048)]
)
def test_inertia_matches_sklearn_from_same_init(n, d, k, chunk):
    x = _blobs(n + d, n, d, k)
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(0), jnp.asarray(x), k=k))
    ours = km.kmeans(None, jnp.asarray(x), k=k, num_iters=100, tol=0.0, init=init, chunk_size=chunk)
    ref = KMeans(k, init=init, n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(x)
    assert float(ours.inertia) == pytest.approx(ref.inertia_, rel=1e-2)
    np.testing.assert_allclose(float(ours.inertia), ref.inertia_, rtol=1e-4)
    # The returned assignments are those of the returned centroids.
    a, d2 = km.assign_to_centroids(jnp.asarray(x), ours.centroids)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(ours.assignments))
    np.testing.assert_allclose(float(d2.sum()), float(ours.inertia), rtol=1e-4)


def test_assign_matches_numpy_argmin_and_is_chunk_invariant():
    x = _blobs(1, 1000, 8, 10)
    c = x[:37]
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    for chunk in (1, 7, 128, 1000, 5000):
        a, dist = km.assign_to_centroids(jnp.asarray(x), jnp.asarray(c), chunk_size=chunk)
        np.testing.assert_array_equal(np.asarray(a), d2.argmin(1))
        np.testing.assert_allclose(np.asarray(dist), d2.min(1), rtol=1e-4, atol=1e-3)


def test_ties_go_to_the_lowest_index():
    c = jnp.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    a, _ = km.assign_to_centroids(jnp.zeros((3, 2)), c)
    assert a.tolist() == [0, 0, 0]


def test_inertia_never_rises():
    x = _blobs(2, 4000, 10, 30, spread=1.0)
    res = km.kmeans(jax.random.key(3), jnp.asarray(x), k=30, num_iters=40, tol=0.0)
    hist = np.asarray(res.inertia_history)[: int(res.num_iters)]
    assert np.all(np.diff(hist) <= 1e-5 * hist[:-1])
    assert float(res.inertia) <= hist[-1] * (1 + 1e-5)


def test_empty_clusters_are_reseeded():
    # Three identical initial centroids: two clusters start empty.
    x = _blobs(4, 600, 2, 3, spread=10.0)
    init = np.repeat(x[:1], 3, axis=0)
    res = km.kmeans(None, jnp.asarray(x), k=3, num_iters=50, tol=0.0, init=init)
    counts = np.bincount(np.asarray(res.assignments), minlength=3)
    assert (counts > 0).all()
    assert len(np.unique(np.asarray(res.centroids), axis=0)) == 3


def test_weights_equal_repeated_points():
    x = _blobs(5, 300, 4, 5)
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
    x = _blobs(6, 2000, 4, 4, spread=20.0)
    loose = km.kmeans(jax.random.key(0), jnp.asarray(x), k=4, num_iters=100, tol=1e-2)
    capped = km.kmeans(jax.random.key(0), jnp.asarray(x), k=4, num_iters=2, tol=0.0)
    assert 1 <= int(loose.num_iters) < 100
    assert int(capped.num_iters) == 2


def test_same_key_same_result_and_seeding_uses_data_points():
    x = jnp.asarray(_blobs(7, 1500, 6, 8))
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


def test_wrong_rank_is_refused():
    with pytest.raises(ValueError, match="2-D array"):
        km.kmeans(jax.random.key(0), jnp.ones((10,)), k=2)
    with pytest.raises(ValueError, match="dim"):
        km.assign_to_centroids(jnp.ones((10, 3)), jnp.ones((2, 4)))


def test_no_recompilation_for_repeated_calls_with_same_shapes():
    x = jnp.asarray(_blobs(8, 700, 5, 6))
    km.kmeans(jax.random.key(0), x, k=6, num_iters=5)
    sizes = (km._kmeans_from._cache_size(), km._kmeans_plusplus._cache_size())
    for seed in range(1, 4):
        km.kmeans(jax.random.key(seed), x + seed, k=6, num_iters=5)
    assert (km._kmeans_from._cache_size(), km._kmeans_plusplus._cache_size()) == sizes


@pytest.mark.slow
def test_inertia_matches_sklearn_at_benchmark_scale():
    x = _blobs(9, 100_000, 64, 128, spread=1.0)
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(0), jnp.asarray(x), k=128))
    ours = km.kmeans(None, jnp.asarray(x), k=128, num_iters=30, tol=0.0, init=init)
    ref = KMeans(128, init=init, n_init=1, max_iter=30, tol=0.0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(float(ours.inertia), ref.inertia_, rtol=1e-3)
