"""The cloud's clustering and the client's scoring over a 1-D mesh of devices.

Rows of the data are split across devices, centroids are replicated, and each device's
sums, counts and inertia are reduced with `lax.psum` inside `jax.shard_map`. N need not
divide the device count: rows are padded and the padding is masked (zero weight). The
results equal the single-device ones (`ecos_jax.kmeans`, `ecos_jax.coverage`): same
assignments, centroids equal up to float summation order.

References:
  Hong et al., NeurIPS 2022 (ECOS protocol, steps 1 and 2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ecos_jax import votes
from ecos_jax._validate import as_client_features, as_features
from ecos_jax.coverage import CoverageScores
from ecos_jax.kmeans import (
    DEFAULT_CHUNK_SIZE,
    KMeansResult,
    _assignment_stats,
    _check_assign,
    _check_loop,
    _farthest_points,
    _lloyd,
    _prepare,
    _squared_norms,
)

__all__ = [
    "make_mesh",
    "shard_rows",
    "sharded_assign_to_centroids",
    "sharded_coverage_scores",
    "sharded_kmeans",
]

AXIS = "data"


def make_mesh(num_devices: int | None = None, *, axis_name: str = AXIS) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (default: all of them)."""
    devices = jax.devices()
    num_devices = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"num_devices must be between 1 and {len(devices)} (the devices JAX sees); got "
            f"{num_devices}. For fake CPU devices set JAX_NUM_CPU_DEVICES before importing jax."
        )
    return Mesh(np.asarray(devices[:num_devices]), (axis_name,))


def _axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh must be 1-D; got axes {mesh.axis_names}.")
    return mesh.axis_names[0]


def shard_rows(x, mesh: Mesh, *, fill=0):
    """Pads the rows of `x` to a multiple of the mesh size and splits them across devices.

    Returns `(x_padded, valid_mask)`, both sharded by rows; `valid_mask` is False on padding.
    """
    axis = _axis(mesh)
    n = x.shape[0]
    num_shards = mesh.shape[axis]
    pad = (-n) % num_shards
    x = jnp.asarray(x)
    x_pad = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
    valid = jnp.arange(n + pad) < n
    sharding = NamedSharding(mesh, P(axis))
    return jax.device_put(x_pad, sharding), jax.device_put(valid, sharding)


@functools.lru_cache(maxsize=64)
def _sharded_kmeans_fn(
    mesh: Mesh, *, k: int, num_iters: int, tol: float, chunk_size: int, weighted: bool
):
    axis = _axis(mesh)

    def per_shard(x_nxD, w_or_valid_n, c_RxD):
        # Weighted: padding rows have weight 0. Unweighted: a validity mask drops them, so
        # no `w·x` product is formed (as in the single-device loop).
        w_n, valid_n = (w_or_valid_n, None) if weighted else (None, w_or_valid_n)
        eligible_n = w_n > 0 if weighted else valid_n
        x2_n = _squared_norms(x_nxD)

        def stats_fn(c):
            s = _assignment_stats(
                x_nxD, c, x2_N=x2_n, chunk_size=chunk_size, w_N=w_n, valid_N=valid_n
            )
            return s._replace(
                sums=lax.psum(s.sums, axis),
                counts=lax.psum(s.counts, axis),
                inertia=lax.psum(s.inertia, axis),
            )

        def far_fn(stats):
            # Each device proposes its local farthest rows; the global top-k of those equals
            # the single-device top-k (ties resolve by row order, as there).
            far_rxD, score_r = _farthest_points(x_nxD, stats.sq_dists, k=k, eligible_N=eligible_n)
            far_all = lax.all_gather(far_rxD, axis, tiled=True)
            score_all = lax.all_gather(score_r, axis, tiled=True)
            _, idx = lax.top_k(score_all, min(k, score_all.shape[0]))
            far = far_all[idx]
            return jnp.pad(far, ((0, k - far.shape[0]), (0, 0)), mode="edge")

        state, final = _lloyd(c_RxD, num_iters=num_iters, tol=tol, stats_fn=stats_fn, far_fn=far_fn)
        return state.centroids, final.assignments, final.inertia, state.it, state.history

    fn = jax.shard_map(
        per_shard,
        mesh=mesh,
        in_specs=(P(axis), P(axis), P()),
        out_specs=(P(), P(axis), P(), P(), P()),
        check_vma=False,
    )
    return jax.jit(fn)


def sharded_kmeans(
    key: jax.Array,
    x_NxD,
    *,
    k: int,
    mesh: Mesh,
    num_iters: int = 100,
    tol: float = 1e-4,
    weights=None,
    init=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    init_sample_size: int | None = None,
) -> KMeansResult:
    """`ecos_jax.kmeans.kmeans` with the rows split over `mesh` (same arguments, same result).

    Seeding runs once, as in the single-device version, so both start from the same
    centroids; each Lloyd iteration then reduces per-device sums with `psum`.

    Examples:
      >>> import jax
      >>> x = jax.random.normal(jax.random.key(0), (1001, 4))
      >>> res = sharded_kmeans(jax.random.key(1), x, k=3, mesh=make_mesh())
      >>> res.assignments.shape
      (1001,)
    """
    num_iters, tol, chunk_size = _check_loop(num_iters, tol, chunk_size)
    x, w, init = _prepare(
        key, x_NxD, k=k, weights=weights, init=init, init_sample_size=init_sample_size
    )
    n = x.shape[0]
    x_pad, valid = shard_rows(x, mesh)
    if w is not None:
        valid, _ = shard_rows(w, mesh)  # padding rows get weight 0: they never count
    fn = _sharded_kmeans_fn(
        mesh,
        k=init.shape[0],
        num_iters=num_iters,
        tol=tol,
        chunk_size=chunk_size,
        weighted=w is not None,
    )
    centroids, assignments, inertia, it, history = fn(x_pad, valid, init)
    return KMeansResult(centroids, assignments[:n], inertia, it, history)


@functools.lru_cache(maxsize=64)
def _sharded_assign_fn(mesh: Mesh, *, chunk_size: int):
    axis = _axis(mesh)

    def per_shard(x_nxD, c_RxD):
        s = _assignment_stats(x_nxD, c_RxD, x2_N=_squared_norms(x_nxD), chunk_size=chunk_size)
        return s.assignments, s.sq_dists

    fn = jax.shard_map(
        per_shard, mesh=mesh, in_specs=(P(axis), P()), out_specs=(P(axis), P(axis)), check_vma=False
    )
    return jax.jit(fn)


def sharded_assign_to_centroids(
    x_NxD, centroids_RxD, *, mesh: Mesh, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[jax.Array, jax.Array]:
    """`ecos_jax.kmeans.assign_to_centroids` with the rows split over `mesh`."""
    x_NxD, centroids_RxD = _check_assign(x_NxD, centroids_RxD)
    n = x_NxD.shape[0]
    x_pad, _ = shard_rows(x_NxD, mesh)
    a, d2 = _sharded_assign_fn(mesh, chunk_size=int(chunk_size))(x_pad, centroids_RxD)
    return a[:n], d2[:n]


@functools.lru_cache(maxsize=64)
def _sharded_coverage_fn(mesh: Mesh, *, method: str, static_kwargs: tuple):
    axis = _axis(mesh)
    kwargs = dict(static_kwargs)

    def per_shard(f_mxD, mask_m, c_RxD, radii_R):
        radii = radii_R if method == "radius" else None
        fast = votes.fast_vote_counts(f_mxD, c_RxD, mask_m, method=method, radii=radii, **kwargs)
        return lax.psum(fast.counts, axis), fast.ambiguous

    fn = jax.shard_map(
        per_shard,
        mesh=mesh,
        in_specs=(P(axis), P(axis), P(), P()),
        out_specs=(P(), P(axis)),
        check_vma=False,
    )
    return jax.jit(fn)


def sharded_coverage_scores(
    features_MxD, centroids_RxD, *, mesh: Mesh, method: str = "voronoi", radii=None, **kwargs
) -> CoverageScores:
    """`ecos_jax.coverage.coverage_scores` with the client's rows split over `mesh`.

    Each device counts the votes its own rows decide in float32 (padding masked out), the
    counts are summed with `psum`, and the few rows whose vote the rounding margin leaves
    open are decided on the host exactly as in `coverage_scores`: the counts equal the
    single-device ones, and so does the sensitivity.
    """
    features_MxD = as_client_features(features_MxD, "features_MxD")
    centroids_RxD = as_features(centroids_RxD, "centroids_RxD", nonempty=True)
    m, max_votes = kwargs.get("m"), kwargs.get("max_votes")
    num_votes = votes.votes_per_sample(method, m=m, max_votes=max_votes)
    f_pad, mask = shard_rows(jnp.asarray(features_MxD, jnp.float32), mesh)
    fn = _sharded_coverage_fn(mesh, method=method, static_kwargs=tuple(sorted(kwargs.items())))
    num_centroids = centroids_RxD.shape[0]
    radii_R = jnp.zeros((num_centroids,), jnp.float32)
    if method == "radius":
        if radii is None:
            raise ValueError("method='radius' needs radii (public per-centroid thresholds).")
        radii_R = jnp.broadcast_to(jnp.asarray(radii, jnp.float32), (num_centroids,))
    counts, ambiguous = fn(f_pad, mask, centroids_RxD, radii_R)
    counts_R = np.asarray(counts).astype(np.int64)
    rows = np.flatnonzero(np.asarray(ambiguous))
    if rows.size:
        rule = {"method": method, "m": m, "max_votes": max_votes, "radii": radii}
        counts_R += votes.resolve_votes(
            np.asarray(f_pad[jnp.asarray(rows)]),
            np.asarray(centroids_RxD),
            metric=kwargs.get("metric", "l2"),
            **rule,
        )
    return CoverageScores(counts=counts_R, votes_per_sample=num_votes)
