"""Communication of the sharded steps, read from their compiled HLO on 8 devices.

A Lloyd iteration all-reduces K·(D+1)+1 floats and the client's scoring R int32 counts,
whatever the number of rows: the bytes at two sizes of N are equal to each other and to
the formula.
"""

import pytest

from ecos_jax import communication as cm
from ecos_jax import sharding


@pytest.mark.parametrize(("dim", "k"), [(32, 16), (128, 100)])
def test_kmeans_iteration_bytes_do_not_depend_on_n(dim, k):
    mesh = sharding.make_mesh(8)
    small = cm.kmeans_iteration_bytes(mesh, num_rows=10_000, dim=dim, k=k)
    large = cm.kmeans_iteration_bytes(mesh, num_rows=1_000_003, dim=dim, k=k)
    assert small.per_iteration == large.per_iteration == cm.kmeans_bytes_formula(dim=dim, k=k)
    per_iter = [c for c in small.collectives if c.where == "per_iteration"]
    assert [c.kind for c in per_iter] == ["all-reduce"]
    assert small.collectives == large.collectives
    # Reseeding empty clusters gathers each device's k farthest rows, only when needed.
    assert small.conditional == 4 * k * (dim + 1)


def test_scoring_bytes_do_not_depend_on_client_rows():
    mesh = sharding.make_mesh(8)
    few = cm.scoring_bytes(mesh, num_client_rows=1_000, dim=64, num_centroids=50)
    many = cm.scoring_bytes(mesh, num_client_rows=200_001, dim=64, num_centroids=50)
    assert few.total == many.total == cm.scoring_bytes_formula(num_centroids=50)
    assert [(c.kind, c.where) for c in few.collectives] == [("all-reduce", "once")]
