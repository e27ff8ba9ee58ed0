"""ECOS selection with the pool's rows split over a 1-D mesh of devices.

`sharded_ecos_select` returns exactly `sampling.ecos_select`'s indices. The steps that
touch the N pool rows run where the rows live; what crosses devices is small:

1. sizes: every device counts its rows per cluster; one `psum` of R int32.
2. filter and allocate: on the host (R numbers, as in `ecos_select`).
3. candidate ranking: every device computes each of its rows' distance to its own
   centroid and keeps, per cluster r, its own `m_r = min(|r|, ceil(κ·n_r))` nearest rows
   (sorted by cluster, distance, global row index). The union of these shortlists holds
   the global `m_r` nearest of every cluster, so the host merges at most
   `devices × Σ m_r` (index, distance) pairs, never N.
4. the candidates' feature rows (Σ m_r of them) are gathered, replicated.
5. k-center: the clusters are independent, so their sets are split over the devices
   (`k_center.grouped_k_center` with `mesh`).

The pool may live on several processes (`sharding.ShardedRows`, e.g. from
`shard_process_rows`), with the `[N_pad]` assignments `sharding.sharded_kmeans` returns
for it; every process gets the same selection.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3.3.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ecos_jax.distances import Metric, check_metric
from ecos_jax.k_center import bucket_size
from ecos_jax.sampling import (
    DEFAULT_CHUNK_SIZE,
    _distance_to_own_centroid,
    allocate_budget,
    candidates_per_cluster,
    check_select_args,
    filter_scores,
    pick_from_candidates,
)
from ecos_jax.sharding import (
    ShardedRows,
    _axis,
    _check_sharded_rows,
    _replicated_fns,
    gather_to_host,
    padded_num_rows,
    shard_rows,
    to_mesh,
)

__all__ = ["sharded_ecos_select"]

#: Smallest padded shortlist per device: budgets of one power-of-two band share a program.
MIN_SHORTLIST = 128


@functools.lru_cache(maxsize=32)
def _ranking_fns(mesh: Mesh, *, num_clusters: int, metric: str, chunk_size: int):
    """Jitted per-device programs: cluster sizes + range check, and the shortlists."""
    axis = _axis(mesh)
    sentinel = num_clusters  # the cluster id of padding rows: sorts last, never kept

    def sizes(a_n, valid_n):
        ok = jnp.all((a_n >= 0) & (a_n < num_clusters) | ~valid_n)
        a_n = jnp.where(valid_n, a_n, sentinel)
        counts = jnp.zeros((num_clusters + 1,), jnp.int32).at[a_n].add(1)[:num_clusters]
        return lax.psum(counts, axis), lax.pmin(ok.astype(jnp.int32), axis)

    def shortlist(x_nxD, a_n, valid_n, c_RxD, m_R, *, length):
        n = x_nxD.shape[0]
        a_safe = jnp.where(valid_n, a_n, 0)
        dist_n = _distance_to_own_centroid(
            x_nxD, c_RxD, a_safe, metric=metric, chunk_size=chunk_size
        )
        g_n = lax.axis_index(axis) * n + jnp.arange(n, dtype=jnp.int32)
        key_n = jnp.where(valid_n, a_n, sentinel)
        order = jnp.lexsort((g_n, dist_n, key_n))
        key_s, dist_s, g_s = key_n[order], dist_n[order], g_n[order]
        first_s = jnp.searchsorted(key_s, key_s, side="left")
        rank_s = jnp.arange(n) - first_s
        m_s = jnp.concatenate([m_R, jnp.zeros((1,), m_R.dtype)])[key_s]
        (keep,) = jnp.nonzero(rank_s < m_s, size=length, fill_value=n)
        pad = keep >= n
        keep = jnp.minimum(keep, n - 1)
        return (
            jnp.where(pad, sentinel, key_s[keep]),
            jnp.where(pad, jnp.inf, dist_s[keep]),
            jnp.where(pad, -1, g_s[keep]),
        )

    rep = NamedSharding(mesh, P())
    sizes_fn = jax.jit(
        jax.shard_map(
            sizes, mesh=mesh, in_specs=(P(axis), P(axis)), out_specs=(P(), P()), check_vma=False
        ),
        out_shardings=(rep, rep),
    )

    @functools.lru_cache(maxsize=16)
    def shortlist_fn(length: int):
        return jax.jit(
            jax.shard_map(
                functools.partial(shortlist, length=length),
                mesh=mesh,
                in_specs=(P(axis), P(axis), P(axis), P(), P()),
                out_specs=(P(axis), P(axis), P(axis)),
                check_vma=False,
            )
        )

    return sizes_fn, shortlist_fn


def _pool_and_assignments(pool, assignments, mesh: Mesh):
    """The pool as `ShardedRows` and its assignments as a sharded int32 [N_pad]."""
    axis = _axis(mesh)
    if isinstance(pool, ShardedRows):
        _check_sharded_rows(pool, mesh, "pool_features", private=False)
        rows = pool
    else:
        x = jnp.asarray(pool)
        if x.ndim != 2:
            raise ValueError(f"pool_features must be 2-D [N, D], got shape {x.shape}.")
        x_pad, valid = shard_rows(x.astype(jnp.float32), mesh)
        rows = ShardedRows(x_pad, valid, int(x.shape[0]))
        _check_sharded_rows(rows, mesh, "pool_features", private=False)
    n, n_pad = rows.num_rows, rows.x.shape[0]
    a = assignments
    dtype = getattr(a, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer) or a.shape not in ((n,), (n_pad,)):
        raise ValueError(
            f"assignments must be an int array of shape ({n},) or the padded ({n_pad},) that "
            f"sharded_kmeans returns; got {getattr(a, 'dtype', type(a).__name__)} "
            f"{getattr(a, 'shape', '')}."
        )
    if isinstance(a, jax.Array) and a.shape == (n_pad,):
        a = jax.device_put(a.astype(jnp.int32), NamedSharding(mesh, P(axis)))
    else:
        a_host = np.zeros((n_pad,), np.int32)
        a_host[:n] = np.asarray(a)[:n]
        a = to_mesh(a_host, mesh, split=True)
    return rows, a


def sharded_ecos_select(
    pool_features,
    assignments,
    centroids,
    scores,
    *,
    mesh: Mesh,
    budget: int,
    kappa: float | None = 1.5,
    threshold: float | None = None,
    top_k: int | None = None,
    metric: Metric = "l2",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """`sampling.ecos_select` with the pool's rows split over `mesh`: the same indices.

    Args:
      pool_features: the pool, a host array [N, D] or `ShardedRows` (possibly spanning
        processes).
      assignments: cluster of every pool row: int [N], or the padded sharded [N_pad] of
        `sharding.sharded_kmeans` (padding entries ignored).
      centroids, scores, budget, kappa, threshold, top_k, metric, chunk_size: as in
        `sampling.ecos_select`.
      mesh: the 1-D mesh the pool is (or is to be) sharded over.

    Returns:
      int64 [budget] unique pool indices, equal to `ecos_select`'s on the same inputs; the
      same on every process.

    Examples:
      >>> import numpy as np
      >>> from ecos_jax.sampling import ecos_select
      >>> from ecos_jax.sharding import make_mesh
      >>> rng = np.random.default_rng(0)
      >>> x, a = rng.normal(size=(500, 4)).astype(np.float32), rng.integers(0, 5, 500)
      >>> c, s = rng.normal(size=(5, 4)).astype(np.float32), np.array([3.0, 0, 1, 5, 2])
      >>> got = sharded_ecos_select(x, a, c, s, mesh=make_mesh(), budget=40)
      >>> bool(np.array_equal(got, ecos_select(x, a, c, s, budget=40)))
      True
    """
    check_metric(metric)
    rows, a_pad = _pool_and_assignments(pool_features, assignments, mesh)
    num_pool, dim = rows.num_rows, rows.x.shape[1]
    c_RxD, s_R, chunk_size = check_select_args(
        centroids, scores, dim=dim, num_pool=num_pool, budget=budget, kappa=kappa,
        chunk_size=chunk_size,
    )  # fmt: skip
    num_clusters = c_RxD.shape[0]
    sizes_fn, shortlist_fn = _ranking_fns(
        mesh, num_clusters=num_clusters, metric=metric, chunk_size=chunk_size
    )
    sizes_R, in_range = sizes_fn(a_pad, rows.valid)
    if not int(gather_to_host(in_range)):
        raise ValueError(f"assignments must lie in [0, {num_clusters}) (one per centroid).")
    sizes_R = gather_to_host(sizes_R).astype(np.int64)

    w_R = filter_scores(s_R, threshold=threshold, top_k=top_k)
    n_R = allocate_budget(w_R, sizes_R, budget=budget)
    m_R = candidates_per_cluster(n_R, sizes_R, kappa=kappa)
    if budget == 0:
        return np.zeros(0, np.int64)

    # Each device's shortlist; padded to a power of two so nearby budgets share a program.
    per_device = padded_num_rows(num_pool, mesh) // mesh.size
    length = min(per_device, bucket_size(int(m_R.sum()), minimum=MIN_SHORTLIST))
    c_rep = to_mesh(np.asarray(c_RxD, np.float32), mesh, split=False)
    key, dist, g = (
        gather_to_host(v)
        for v in shortlist_fn(length)(
            rows.x, a_pad, rows.valid, c_rep, to_mesh(m_R.astype(np.int32), mesh, split=False)
        )
    )
    # The global m_r nearest of each cluster, in (distance, row) order, as ecos_select.
    order = np.lexsort((g, dist, key))
    key, g = key[order], g[order]
    starts = np.searchsorted(key, np.arange(num_clusters + 1), side="left")
    nonempty = np.flatnonzero(n_R)
    global_rows = {int(r): g[starts[r] : starts[r] + m_R[r]].astype(np.int64) for r in nonempty}
    assert all(len(global_rows[int(r)]) == m_R[r] for r in nonempty)

    # Gather the candidates' features (Σ m_r rows), replicated, and pick among them.
    flat = np.concatenate([global_rows[int(r)] for r in nonempty])
    x_cand = _replicated_fns(mesh)[2](rows.x, to_mesh(flat.astype(np.int32), mesh, split=False))
    local, offset = {}, 0
    for r in map(int, nonempty):
        local[r] = np.arange(offset, offset + len(global_rows[r]))
        offset += len(global_rows[r])
    picks = pick_from_candidates(x_cand, local, c_RxD, s_R, w_R, n_R, metric=metric, mesh=mesh)
    return flat[picks]
