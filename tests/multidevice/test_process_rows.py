"""Rows loaded per process (`ShardedRows`) give the single-device results, and data-parallel φ."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import blobs

from ecos_jax import coverage, kmeans, scaling, sharding


@pytest.mark.parametrize("num_devices", [1, 3, 8])
@pytest.mark.parametrize("n", [16, 4001])
def test_shard_process_rows_equals_shard_rows(num_devices, n):
    mesh = sharding.make_mesh(num_devices)
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    assert sharding.process_row_range(n, mesh) == (0, n)  # one process holds every row
    rows = sharding.shard_process_rows(x, num_rows=n, mesh=mesh)
    x_pad, valid = sharding.shard_rows(x, mesh)
    assert rows.num_rows == n and rows.x.shape[0] == sharding.padded_num_rows(n, mesh)
    np.testing.assert_array_equal(np.asarray(rows.x), np.asarray(x_pad))
    np.testing.assert_array_equal(np.asarray(rows.valid), np.asarray(valid))
    assert rows.x.sharding == x_pad.sharding


def test_shard_process_rows_refuses_the_wrong_rows():
    mesh = sharding.make_mesh(8)
    with pytest.raises(ValueError, match=r"local_x must hold this process's 10 rows \[0, 10\)"):
        sharding.shard_process_rows(np.zeros((9, 2)), num_rows=10, mesh=mesh)


def test_blob_rows_do_not_depend_on_the_split():
    whole = scaling.blob_rows(3, 0, 10_000, dim=4)
    parts = [
        scaling.blob_rows(3, a, b, dim=4) for a, b in ((0, 4095), (4095, 8193), (8193, 10_000))
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("sample_size", [None, 500])  # whole data / a k-means++ subsample
def test_sharded_kmeans_on_sharded_rows_seeds_like_kmeans(sample_size):
    x = blobs(5, n=3001, dim=6, num_blobs=10, spread=4.0).points
    mesh = sharding.make_mesh(8)
    rows = sharding.shard_process_rows(x, num_rows=3001, mesh=mesh)
    key = jax.random.key(7)
    single = kmeans.kmeans(key, jnp.asarray(x), k=10, num_iters=25, init_sample_size=sample_size)
    sharded = sharding.sharded_kmeans(
        key, rows, k=10, mesh=mesh, num_iters=25, init_sample_size=sample_size
    )
    assert sharded.assignments.shape == (sharding.padded_num_rows(3001, mesh),)
    np.testing.assert_array_equal(np.asarray(sharded.assignments)[:3001], single.assignments)
    np.testing.assert_allclose(sharded.centroids, single.centroids, rtol=1e-5, atol=1e-5)
    assert int(sharded.num_iters) == int(single.num_iters)


def test_sharded_rows_with_nan_are_refused_and_weights_unsupported():
    mesh = sharding.make_mesh(8)
    x = np.ones((100, 3), np.float32)
    x[17, 1] = np.nan
    rows = sharding.shard_process_rows(x, num_rows=100, mesh=mesh)
    with pytest.raises(ValueError, match="x_NxD contains NaN"):
        sharding.sharded_kmeans(jax.random.key(0), rows, k=3, mesh=mesh)
    with pytest.raises(ValueError, match="features_MxD contains NaN") as err:
        sharding.sharded_coverage_scores(rows, np.ones((3, 3), np.float32), mesh=mesh)
    assert "17" not in str(err.value) and "100" not in str(err.value)  # no private detail
    ok = sharding.shard_process_rows(np.ones((100, 3), np.float32), num_rows=100, mesh=mesh)
    with pytest.raises(ValueError, match="weights are not supported"):
        sharding.sharded_kmeans(jax.random.key(0), ok, k=3, mesh=mesh, weights=np.ones(100))


@pytest.mark.parametrize("method", ["voronoi", "top_m"])
def test_sharded_coverage_on_sharded_rows(method):
    data = blobs(6, n=1203, dim=5, num_blobs=8, spread=3.0).points
    centroids = jnp.asarray(data[:8])
    client = np.concatenate([data[100:700], np.repeat(data[:1], 9, axis=0)])  # ties
    mesh = sharding.make_mesh(8)
    rows = sharding.shard_process_rows(client, num_rows=len(client), mesh=mesh)
    kwargs = {"m": 2} if method == "top_m" else {}
    got = sharding.sharded_coverage_scores(rows, centroids, mesh=mesh, method=method, **kwargs)
    want = coverage.coverage_scores(client, centroids, method=method, **kwargs)
    np.testing.assert_array_equal(got.counts, want.counts)


class _TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x.astype(jnp.float32) / 255.0)
        return nn.Dense(5)(jnp.mean(x, axis=(1, 2)))


def _apply(module, variables, images):
    return module.apply(variables, images)


@pytest.mark.parametrize("num_devices, batch_size", [(1, 7), (8, 4), (8, 64)])
def test_sharded_features_equal_one_device(num_devices, batch_size):
    module = _TinyNet()
    images = scaling.noise_images(0, 0, 37, size=8)
    variables = module.init(jax.random.key(0), images[:1])
    mesh = sharding.make_mesh(num_devices)
    rows = sharding.shard_process_rows(images, num_rows=37, mesh=mesh)
    apply_fn = functools.partial(_apply, module)
    feats = sharding.sharded_features(apply_fn, variables, rows, mesh=mesh, batch_size=batch_size)
    want = module.apply(variables, images)
    assert feats.num_rows == 37 and feats.x.sharding.is_equivalent_to(rows.x.sharding, 2)
    np.testing.assert_allclose(np.asarray(feats.x)[:37], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="images must be a ShardedRows"):
        sharding.sharded_features(apply_fn, variables, images, mesh=mesh)
