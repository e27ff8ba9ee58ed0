"""The cloud's clustering and the client's scoring over a 1-D mesh of devices.

Rows of the data are split across devices, centroids are replicated, and each device's
sums, counts and inertia are reduced with `lax.psum` inside `jax.shard_map`. N need not
divide the device count: rows are padded and the padding is masked (zero weight). The
results equal the single-device ones (`ecos_jax.kmeans`, `ecos_jax.coverage`): same
assignments, centroids equal up to float summation order.

The same functions run under multi-controller JAX (`jax.distributed.initialize`, one
process per host or, for tests, per local CPU group): each process loads only the rows of
its own devices (`process_row_range`) and `shard_process_rows` assembles the global array
with `jax.make_array_from_process_local_data`. Such a `ShardedRows` is accepted wherever a
host array is; results that every process needs (centroids, counts) come back replicated.

References:
  Hong et al., NeurIPS 2022 (ECOS protocol, steps 1 and 2).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ecos_jax import votes
from ecos_jax._validate import MAX_ABS_FEATURE, as_client_features, as_features
from ecos_jax.coverage import CoverageScores
from ecos_jax.kmeans import (
    DEFAULT_CHUNK_SIZE,
    KMeansResult,
    _assignment_stats,
    _check_assign,
    _check_k,
    _check_loop,
    _check_start,
    _farthest_points,
    _kmeans_plusplus,
    _lloyd,
    _prepare,
    _seeding_plan,
    _squared_norms,
)

__all__ = [
    "ShardedRows",
    "gather_to_host",
    "make_mesh",
    "padded_num_rows",
    "process_row_range",
    "shard_process_rows",
    "shard_rows",
    "sharded_assign_to_centroids",
    "sharded_coverage_scores",
    "sharded_features",
    "sharded_kmeans",
    "to_mesh",
]

AXIS = "data"


def make_mesh(num_devices: int | None = None, *, axis_name: str = AXIS) -> Mesh:
    """A 1-D mesh over `num_devices` devices (default: all of them).

    In one process these are the first `num_devices` devices. Under multi-controller JAX
    every process contributes `num_devices / process_count` of its own devices, listed
    process by process, so each process's rows are one contiguous block
    (`process_row_range`).
    """
    devices = jax.devices()
    num_devices = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"num_devices must be between 1 and {len(devices)} (the devices JAX sees); got "
            f"{num_devices}. For fake CPU devices set JAX_NUM_CPU_DEVICES before importing jax."
        )
    num_processes = jax.process_count()
    if num_processes == 1:
        return Mesh(np.asarray(devices[:num_devices]), (axis_name,))
    if num_devices % num_processes:
        raise ValueError(
            f"num_devices must be a multiple of the {num_processes} processes, so that each "
            f"contributes the same number of devices; got {num_devices}."
        )
    per_process = num_devices // num_processes
    by_process = [
        sorted((d for d in devices if d.process_index == p), key=lambda d: d.id)
        for p in range(num_processes)
    ]
    if min(len(ds) for ds in by_process) < per_process:
        raise ValueError(
            f"num_devices={num_devices} needs {per_process} devices on every process; some "
            "process has fewer."
        )
    chosen = [d for ds in by_process for d in ds[:per_process]]
    return Mesh(np.asarray(chosen), (axis_name,))


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


class ShardedRows(NamedTuple):
    """Rows split over a 1-D mesh, padded at the end to a multiple of the mesh size."""

    x: jax.Array  # [N_pad, ...], sharded by rows; rows >= num_rows are padding
    valid: jax.Array  # [N_pad] bool, same sharding; False on the padding
    num_rows: int  # N, the real rows


def padded_num_rows(num_rows: int, mesh: Mesh) -> int:
    """N rounded up to a multiple of the mesh size (the rows a `ShardedRows` holds)."""
    size = mesh.shape[_axis(mesh)]
    return -(-int(num_rows) // size) * size


def _local_positions(mesh: Mesh) -> tuple[int, int]:
    """First and one-past-last mesh position of this process's devices (contiguous)."""
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    if not mine or mine != list(range(mine[0], mine[-1] + 1)):
        raise ValueError(
            "mesh must place this process's devices next to each other; build it with "
            "make_mesh(), which orders jax.devices() by process."
        )
    return mine[0], mine[-1] + 1


def process_row_range(num_rows: int, mesh: Mesh) -> tuple[int, int]:
    """The rows `[start, stop)` of an N-row array that this process loads and holds.

    Device i of the mesh holds padded rows `[i·b, (i+1)·b)` with `b = padded_num_rows / size`;
    a process holds its devices' blocks, clipped to the N real rows (the last process may
    hold fewer, or none).

    Examples:
      >>> process_row_range(10, make_mesh(1))
      (0, 10)
    """
    num_rows = int(num_rows)
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, got {num_rows}.")
    block = padded_num_rows(num_rows, mesh) // mesh.shape[_axis(mesh)]
    first, last = _local_positions(mesh)
    return min(first * block, num_rows), min(last * block, num_rows)


def shard_process_rows(local_x, *, num_rows: int, mesh: Mesh, fill=0) -> ShardedRows:
    """The global row-sharded array assembled from each process's own rows.

    Every process calls it with the rows `process_row_range(num_rows, mesh)` of the data
    (its own shard, never the others'); padding is added on the process that holds the
    end. In one process this equals `shard_rows(x, mesh)` on the whole array.

    Args:
      local_x: this process's rows, shape `[stop - start, ...]`.
      num_rows: N, the global number of real rows (the same on every process).
      mesh: a 1-D mesh over the devices of all processes (`make_mesh()`).
      fill: the value of the padding rows.

    Returns:
      `ShardedRows(x, valid, num_rows)`.
    """
    axis = _axis(mesh)
    start, stop = process_row_range(num_rows, mesh)
    local_x = np.asarray(local_x)
    if local_x.ndim == 0 or local_x.shape[0] != stop - start:
        raise ValueError(
            f"local_x must hold this process's {stop - start} rows [{start}, {stop}) of "
            f"the {num_rows} (process_row_range(num_rows, mesh)); got shape {local_x.shape}."
        )
    block = padded_num_rows(num_rows, mesh) // mesh.shape[axis]
    first, last = _local_positions(mesh)
    held = (last - first) * block
    pad = held - (stop - start)
    x_pad = np.pad(local_x, [(0, pad)] + [(0, 0)] * (local_x.ndim - 1), constant_values=fill)
    valid = np.arange(held) < stop - start
    sharding = NamedSharding(mesh, P(axis))
    n_pad = padded_num_rows(num_rows, mesh)
    x_global = jax.make_array_from_process_local_data(sharding, x_pad, (n_pad, *local_x.shape[1:]))
    v_global = jax.make_array_from_process_local_data(sharding, valid, (n_pad,))
    return ShardedRows(x_global, v_global, int(num_rows))


def to_mesh(arr, mesh: Mesh, *, split: bool) -> jax.Array:
    """A host array, the same on every process, as a global array: row-split or replicated.

    Works in one process and under multi-controller JAX alike (each process places only
    its own devices' part).
    """
    arr = np.asarray(arr)
    sharding = NamedSharding(mesh, P(_axis(mesh)) if split else P())
    return jax.make_array_from_callback(arr.shape, sharding, lambda index: arr[index])


def gather_to_host(x: jax.Array) -> np.ndarray:
    """The whole of a (possibly multi-process) array as a NumPy array on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


@functools.lru_cache(maxsize=64)
def _replicated_fns(mesh: Mesh):
    """Jitted helpers whose outputs are replicated on every device of `mesh`."""
    rep = NamedSharding(mesh, P())

    @functools.partial(jax.jit, static_argnames=("num_rows", "sample_size"), out_shardings=rep)
    def seeding_rows(key, x_pad, *, num_rows, sample_size):
        # The rows `_kmeans_plusplus` seeds from, drawn exactly as it draws them.
        x = x_pad[:num_rows]
        if sample_size >= num_rows:
            return x
        w = jnp.ones((num_rows,), jnp.float32)
        key_sample = jax.random.split(key, 3)[0]
        idx = jax.random.choice(key_sample, num_rows, (sample_size,), replace=False, p=w / w.sum())
        return x[idx]

    @functools.partial(jax.jit, out_shardings=rep)
    def in_range(x, valid):
        ok = jnp.isfinite(x) & (jnp.abs(x) <= MAX_ABS_FEATURE)
        return jnp.all(ok | ~valid.reshape((-1,) + (1,) * (x.ndim - 1)))

    @functools.partial(jax.jit, out_shardings=rep)
    def take_rows(x, rows):
        return x[rows]

    return seeding_rows, in_range, take_rows


def _check_sharded_rows(rows: ShardedRows, mesh: Mesh, name: str, *, private: bool) -> None:
    if rows.x.ndim != 2 or rows.x.shape[0] != padded_num_rows(rows.num_rows, mesh):
        got = "" if private else f"; got shape {rows.x.shape} for {rows.num_rows} rows"
        raise ValueError(
            f"{name} must be a 2-D ShardedRows built for this mesh (shard_process_rows){got}."
        )
    if not bool(_replicated_fns(mesh)[1](rows.x, rows.valid)):
        raise ValueError(
            f"{name} contains NaN, inf or entries beyond ±{MAX_ABS_FEATURE:g}; clean or "
            "rescale those rows first."
        )


def _sharded_start(key, rows: ShardedRows, mesh: Mesh, *, k, init, init_sample_size):
    """`_prepare` for rows that live on many processes: the same seeding, replicated."""
    n, d = rows.num_rows, rows.x.shape[1]
    if n == 0 or d == 0:
        raise ValueError(f"x_NxD must be non-empty; got {n} rows of dimension {d}.")
    k = _check_k(k, n)
    init = _check_start(key, init, k=k, d=d)
    if init is not None:
        return init
    size, trials = _seeding_plan(n, k, init_sample_size, None, "init_sample_size")
    x_S = _replicated_fns(mesh)[0](key, rows.x, num_rows=n, sample_size=size)
    w_S = jax.device_put(jnp.ones((size,), jnp.float32), NamedSharding(mesh, P()))
    return _kmeans_plusplus(key, x_S, w_S, k=k, sample_size=size, num_local_trials=trials)


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

    `x_NxD` is a host or single-process array, or a `ShardedRows` (`shard_process_rows`)
    whose rows live on several processes. For a `ShardedRows` the seeding sample is
    gathered to every device (the same rows as the single-device draw), `weights` are not
    supported, and `assignments` stay sharded with the padding: `[N_pad]`, rows >= N
    meaningless (`gather_to_host` fetches them).

    Examples:
      >>> import jax
      >>> x = jax.random.normal(jax.random.key(0), (1001, 4))
      >>> res = sharded_kmeans(jax.random.key(1), x, k=3, mesh=make_mesh())
      >>> res.assignments.shape
      (1001,)
    """
    num_iters, tol, chunk_size = _check_loop(num_iters, tol, chunk_size)
    if isinstance(x_NxD, ShardedRows):
        if weights is not None:
            raise ValueError(
                "weights are not supported with a ShardedRows x_NxD; pass host arrays."
            )
        _check_sharded_rows(x_NxD, mesh, "x_NxD", private=False)
        init = _sharded_start(key, x_NxD, mesh, k=k, init=init, init_sample_size=init_sample_size)
        n, x_pad, valid, w = None, x_NxD.x, x_NxD.valid, None
    else:
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
    assignments = assignments if n is None else assignments[:n]
    return KMeansResult(centroids, assignments, inertia, it, history)


@functools.lru_cache(maxsize=16)
def _sharded_features_fn(apply_fn, mesh: Mesh, *, batch_size: int):
    axis = _axis(mesh)

    def per_shard(variables, images_nHWC):
        n = images_nHWC.shape[0]
        batch = min(batch_size, n)
        pad = (-n) % batch
        x = jnp.pad(images_nHWC, [(0, pad)] + [(0, 0)] * (images_nHWC.ndim - 1))
        x = x.reshape((-1, batch, *x.shape[1:]))
        # One batch at a time on each device: the activations of a whole shard would not fit.
        feats = lax.map(lambda xb: apply_fn(variables, xb).astype(jnp.float32), x)
        return feats.reshape((-1, feats.shape[-1]))[:n]

    fn = jax.shard_map(
        per_shard, mesh=mesh, in_specs=(P(), P(axis)), out_specs=P(axis), check_vma=False
    )
    return jax.jit(fn)


def sharded_features(
    apply_fn, variables, images: ShardedRows, *, mesh: Mesh, batch_size: int = 256
) -> ShardedRows:
    """φ over a row-sharded image pool, data-parallel: every device maps its own rows.

    The network's variables are replicated; each device runs `apply_fn` over its shard
    `batch_size` images at a time and keeps its features, so nothing but the variables
    crosses devices. Padding rows are mapped too and stay marked invalid.

    Args:
      apply_fn: `apply_fn(variables, images_bHWC) -> features [b, D]`, traceable and
        hashable (a module-level function or a `functools.partial` of one), e.g. resize +
        normalise + `module.apply`.
      variables: the network's variables (a pytree), replicated on the mesh.
      images: the pool's images as `ShardedRows` (`shard_process_rows`).
      mesh: the 1-D mesh `images` is sharded over.
      batch_size: images per device per call of `apply_fn`.

    Returns:
      `ShardedRows` of float32 features [N_pad, D], with the images' `valid` and `num_rows`.
    """
    if not isinstance(images, ShardedRows):
        raise ValueError(
            f"images must be a ShardedRows (shard_process_rows(...)); got {type(images).__name__}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    fn = _sharded_features_fn(apply_fn, mesh, batch_size=batch_size)
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    return ShardedRows(fn(variables, images.x), images.valid, images.num_rows)


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
    single-device ones, and so does the sensitivity. `features_MxD` may be a `ShardedRows`
    whose rows live on several processes (the client's own devices); every process then
    gets the same counts.
    """
    centroids_RxD = as_features(centroids_RxD, "centroids_RxD", nonempty=True)
    m, max_votes = kwargs.get("m"), kwargs.get("max_votes")
    num_votes = votes.votes_per_sample(method, m=m, max_votes=max_votes)
    if isinstance(features_MxD, ShardedRows):
        _check_sharded_rows(features_MxD, mesh, "features_MxD", private=True)
        f_pad, mask = features_MxD.x.astype(jnp.float32), features_MxD.valid
    else:
        features_MxD = as_client_features(features_MxD, "features_MxD")
        f_pad, mask = shard_rows(jnp.asarray(features_MxD, jnp.float32), mesh)
    fn = _sharded_coverage_fn(mesh, method=method, static_kwargs=tuple(sorted(kwargs.items())))
    num_centroids = centroids_RxD.shape[0]
    radii_R = jnp.zeros((num_centroids,), jnp.float32)
    if method == "radius":
        if radii is None:
            raise ValueError("method='radius' needs radii (public per-centroid thresholds).")
        radii_R = jnp.broadcast_to(jnp.asarray(radii, jnp.float32), (num_centroids,))
    counts, ambiguous = fn(f_pad, mask, centroids_RxD, radii_R)
    counts_R = gather_to_host(counts).astype(np.int64)
    rows = np.flatnonzero(gather_to_host(ambiguous))
    if rows.size:
        rule = {"method": method, "m": m, "max_votes": max_votes, "radii": radii}
        take_rows = _replicated_fns(mesh)[2]
        counts_R += votes.resolve_votes(
            gather_to_host(take_rows(f_pad, jnp.asarray(rows))),
            np.asarray(centroids_RxD),
            metric=kwargs.get("metric", "l2"),
            **rule,
        )
    return CoverageScores(counts=counts_R, votes_per_sample=num_votes)
