"""Sharded ECOS selection equals `sampling.ecos_select` on 8 devices, index for index."""

import jax
import numpy as np
import pytest

from ecos_jax import k_center, sampling, sharding
from ecos_jax.sharded_selection import sharded_ecos_select


def _round(seed, n=3001, d=16, r=23):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[100:140] = x[99]  # exact duplicates: ties in distance and in k-center
    a = rng.integers(0, r, n)
    a[: r // 3] = 0  # a few tiny clusters after the reassignment below
    a[a == 5] = 6  # an empty cluster
    c = rng.normal(size=(r, d)).astype(np.float32)
    s = rng.normal(50.0, 30.0, r)
    return x, a, c, s


@pytest.mark.parametrize(
    "options",
    [
        {"budget": 1},
        {"budget": 37},
        {"budget": 600},
        {"budget": 3001},
        {"budget": 250, "kappa": None},
        {"budget": 250, "kappa": 3.0, "metric": "cosine"},
        {"budget": 400, "threshold": 40.0},
        {"budget": 400, "top_k": 4},  # the kept clusters overflow: spill to the rest
    ],
)
@pytest.mark.parametrize("devices", [1, 3, 8])
def test_equals_ecos_select(options, devices):
    x, a, c, s = _round(devices)
    want = sampling.ecos_select(x, a, c, s, **options)
    got = sharded_ecos_select(x, a, c, s, mesh=sharding.make_mesh(devices), **options)
    np.testing.assert_array_equal(got, want)


def test_takes_sharded_rows_and_padded_assignments():
    x, a, c, s = _round(7, n=2005)
    mesh = sharding.make_mesh(8)
    rows = sharding.shard_process_rows(x, num_rows=len(x), mesh=mesh)
    a_pad = jax.numpy.pad(jax.numpy.asarray(a, jax.numpy.int32), (0, rows.x.shape[0] - len(x)))
    got = sharded_ecos_select(rows, a_pad, c, s, mesh=mesh, budget=300)
    np.testing.assert_array_equal(got, sampling.ecos_select(x, a, c, s, budget=300))


def test_after_sharded_kmeans():
    x, _, _, _ = _round(3, n=4099)
    mesh = sharding.make_mesh(8)
    rows = sharding.shard_process_rows(x, num_rows=len(x), mesh=mesh)
    res = sharding.sharded_kmeans(jax.random.key(0), rows, k=20, mesh=mesh, num_iters=5)
    scores = np.linspace(0.0, 30.0, 20)
    got = sharded_ecos_select(rows, res.assignments, res.centroids, scores, mesh=mesh, budget=500)
    a = sharding.gather_to_host(res.assignments)[: len(x)]
    want = sampling.ecos_select(x, a, np.asarray(res.centroids), scores, budget=500)
    np.testing.assert_array_equal(got, want)


def test_grouped_k_center_on_a_mesh_equals_one_device():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    sets = [rng.choice(3000, size, replace=False) for size in rng.integers(2, 400, 150)]
    seeds = rng.normal(size=(150, 8)).astype(np.float32)
    picks = [int(rng.integers(1, len(s) + 1)) for s in sets]
    want = k_center.grouped_k_center(x, sets, seeds, picks)
    got = k_center.grouped_k_center(x, sets, seeds, picks, mesh=sharding.make_mesh(8))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"assignments": np.full(3001, 23)}, r"assignments must lie in \[0, 23\)"),
        ({"assignments": np.zeros(3000, int)}, "assignments must be an int array of shape"),
        ({"assignments": np.zeros(3001)}, "assignments must be an int array of shape"),
        ({"budget": 3002}, "budget"),
        ({"kappa": 0.5}, "kappa must be a number >= 1"),
        ({"scores": np.zeros(22)}, r"scores must have shape \(23,\)"),
        ({"metric": "l1"}, "metric"),
    ],
)
def test_bad_inputs_name_the_argument(change, match):
    x, a, c, s = _round(0)
    args = {"assignments": a, "scores": s, "budget": 10, **change}
    with pytest.raises(ValueError, match=match):
        sharded_ecos_select(
            x,
            args.pop("assignments"),
            c,
            args.pop("scores"),
            mesh=sharding.make_mesh(8),
            **args,
        )
