"""Sharded KMeans, assignment and coverage equal their single-device versions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import blobs

from ecos_jax import coverage, kmeans, sharding


@pytest.mark.parametrize("num_devices", [1, 2, 8])
@pytest.mark.parametrize("n", [4000, 4001, 3997])  # even and uneven splits
def test_sharded_kmeans_equals_single_device(num_devices, n):
    x = jnp.asarray(blobs(n, n=n, dim=12, num_blobs=16, spread=4.0).points)
    mesh = sharding.make_mesh(num_devices)
    init = kmeans.kmeans_plusplus_init(jax.random.key(0), x, k=16)
    single = kmeans.kmeans(None, x, k=16, init=init, num_iters=30, tol=0.0, chunk_size=256)
    sharded = sharding.sharded_kmeans(
        None, x, k=16, mesh=mesh, init=init, num_iters=30, tol=0.0, chunk_size=256
    )
    np.testing.assert_array_equal(np.asarray(sharded.assignments), np.asarray(single.assignments))
    np.testing.assert_allclose(sharded.centroids, single.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(sharded.inertia), float(single.inertia), rtol=1e-5)
    assert int(sharded.num_iters) == int(single.num_iters)


def test_sharded_kmeans_reseeds_empty_clusters_like_single_device():
    x = jnp.asarray(blobs(1, n=1003, dim=3, num_blobs=4, spread=4.0).points)
    init = jnp.repeat(x[:1], 4, axis=0)  # three clusters start empty
    single = kmeans.kmeans(None, x, k=4, init=init, num_iters=20, tol=0.0)
    sharded = sharding.sharded_kmeans(
        None, x, k=4, init=init, num_iters=20, tol=0.0, mesh=sharding.make_mesh(8)
    )
    np.testing.assert_array_equal(np.asarray(sharded.assignments), np.asarray(single.assignments))
    np.testing.assert_allclose(sharded.centroids, single.centroids, rtol=1e-5, atol=1e-5)


def test_sharded_kmeans_with_weights_and_keyed_seeding():
    x = jnp.asarray(blobs(2, n=2501, dim=5, num_blobs=6, spread=4.0).points)
    w = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, 2501), jnp.float32)
    single = kmeans.kmeans(jax.random.key(4), x, k=6, weights=w, tol=0.0, num_iters=15)
    sharded = sharding.sharded_kmeans(
        jax.random.key(4), x, k=6, weights=w, tol=0.0, num_iters=15, mesh=sharding.make_mesh(8)
    )
    np.testing.assert_array_equal(np.asarray(sharded.assignments), np.asarray(single.assignments))
    np.testing.assert_allclose(sharded.centroids, single.centroids, rtol=1e-5, atol=1e-5)


def test_sharded_assignment_equals_single_device():
    x = jnp.asarray(blobs(3, n=1999, dim=7, num_blobs=9, spread=4.0).points)
    c = x[:9]
    a1, d1 = kmeans.assign_to_centroids(x, c, chunk_size=100)
    a8, d8 = sharding.sharded_assign_to_centroids(x, c, mesh=sharding.make_mesh(8), chunk_size=100)
    np.testing.assert_array_equal(np.asarray(a8), np.asarray(a1))
    # ‖c‖² − 2x·c + ‖x‖² cancels: float32 error is relative to ‖x‖², not to the distance,
    # and GEMM blocking differs with the shard shape.
    scale = float(jnp.max(jnp.sum(x * x, axis=1)))
    np.testing.assert_allclose(np.asarray(d8), np.asarray(d1), rtol=1e-5, atol=2e-6 * scale)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "voronoi"},
        {"method": "top_m", "m": 3},
        {"method": "radius", "radii": 4.5, "max_votes": 2},
        {"method": "voronoi", "metric": "cosine"},
    ],
)
def test_sharded_coverage_equals_single_device(kwargs):
    feats = jnp.asarray(blobs(5, n=1237, dim=6, num_blobs=10, spread=4.0).points)
    cents = feats[:10] + 0.1
    single = coverage.coverage_scores(feats, cents, **kwargs)
    sharded = sharding.sharded_coverage_scores(feats, cents, mesh=sharding.make_mesh(8), **kwargs)
    np.testing.assert_array_equal(np.asarray(sharded.counts), np.asarray(single.counts))
    assert sharded.sensitivity == single.sensitivity
    assert float(sharded.counts.sum()) > 0


@pytest.mark.parametrize("kwargs", [{"method": "voronoi"}, {"method": "top_m", "m": 2}])
def test_sharded_coverage_with_boundary_ties_equals_single_device(kwargs):
    """63 copies of a row equidistant from its two nearest centroids, among other rows: the
    shards' float32 blocks differ from the single device's, the votes do not."""
    rng = np.random.default_rng(0)
    row = rng.normal(size=16)
    units = rng.normal(size=(6, 16))
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    cents = (row + np.array([3.0, 3.0, 4.0, 5.0, 6.0, 7.0])[:, None] * units).astype(np.float32)
    feats = np.concatenate(
        [np.repeat(row[None].astype(np.float32), 63, axis=0), rng.normal(size=(37, 16))]
    ).astype(np.float32)
    single = coverage.coverage_scores(feats, cents, **kwargs)
    sharded = sharding.sharded_coverage_scores(feats, cents, mesh=sharding.make_mesh(8), **kwargs)
    np.testing.assert_array_equal(sharded.counts, single.counts)
    assert sharded.counts.dtype == np.int64


def test_bad_mesh_size_is_refused():
    with pytest.raises(ValueError, match="num_devices"):
        sharding.make_mesh(jax.device_count() + 1)
