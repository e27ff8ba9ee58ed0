"""KMeans on the cloud's pool features: k-means++ seeding and a jitted Lloyd loop.

The assignment step is a GEMM (`2·N·R·D` FLOPs an iteration) done in row chunks read in
place from `x`, so the peak memory is `O(chunk_size·R + N·D)`: the N×R distance matrix
never exists. Three choices make it fast on CPU (see `experiments/bench_kmeans.py`):

* the `‖x‖²` term is dropped from the argmin (it is constant along a row);
* the argmin is two plain reductions (the row minimum, then the first column index that
  attains it), which XLA vectorises, instead of a variadic argmin reduction;
* centroid sums are a scatter-add (`segment_sum`, `N·d` adds) rather than a one-hot matmul
  (another `2·N·R·D` FLOPs).

References:
  Hong et al., "Outsourcing Training without Uploading Data via Efficient Collaborative
  Open-Source Sampling", NeurIPS 2022 (cloud-side clustering, step 1 of the protocol).
  Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ecos_jax._validate import as_features, check_key, is_int, nonnegative_finite
from ecos_jax.distances import PRECISION, map_row_chunks

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KMeansResult",
    "assign_to_centroids",
    "kmeans",
    "kmeans_plusplus_init",
]

DEFAULT_CHUNK_SIZE = 8192


class KMeansResult(NamedTuple):
    """The outcome of `kmeans`; assignments and inertia refer to the returned centroids."""

    centroids: jax.Array  # [R, D] float32
    assignments: jax.Array  # [N] int32, index of the nearest centroid
    inertia: jax.Array  # [] float32, sum_i w_i ‖x_i − c_{a_i}‖²
    num_iters: jax.Array  # [] int32, Lloyd updates performed
    inertia_history: jax.Array  # [num_iters cap] float32, inertia before each update; NaN-padded


class _ChunkStats(NamedTuple):
    """Sufficient statistics of one assignment pass over (a shard of) the rows."""

    sums: jax.Array  # [R, D] float32, weighted sum of the rows assigned to each centroid
    counts: jax.Array  # [R] float32, total weight assigned to each centroid
    inertia: jax.Array  # [] float32, weighted sum of squared distances
    assignments: jax.Array  # [N] int32
    sq_dists: jax.Array  # [N] float32, squared distance to the nearest centroid


# ----------------------------------------------------------------------------- validation


def _check_weights(weights, n: int) -> None:
    """Raises unless `weights` is None or a finite, non-negative, not all-zero [n] array."""
    if weights is None:
        return
    if getattr(weights, "shape", None) != (n,):
        raise ValueError(
            f"weights must have shape ({n},) to match x; got {getattr(weights, 'shape', None)}."
        )
    w = jnp.asarray(weights)
    if not bool(jnp.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weights must be finite and non-negative.")
    if not float(w.sum()) > 0:
        raise ValueError("weights must not all be zero.")


def _positive(value, name: str) -> int:
    """`value` as an int >= 1 (bools refused), in this module's words."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def _check_k(k, n: int) -> int:
    """`k` as an int in [1, n]."""
    k = _positive(k, "k")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of points N={n}; choose k <= N.")
    return k


def _check_loop(num_iters, tol, chunk_size) -> tuple[int, float, int]:
    """The Lloyd loop's settings, checked: `(num_iters, tol, chunk_size)`."""
    return (
        _positive(num_iters, "num_iters"),
        nonnegative_finite(tol, "tol"),
        _positive(chunk_size, "chunk_size"),
    )


def _check_assign(x_NxD, centroids_RxD) -> tuple[jax.Array, jax.Array]:
    """Points and centroids as float32 [N, D] and [R, D] arrays of one feature dimension."""
    x_NxD = as_features(x_NxD, "x_NxD", nonempty=True)
    centroids_RxD = as_features(centroids_RxD, "centroids_RxD", nonempty=True)
    if x_NxD.shape[1] != centroids_RxD.shape[1]:
        raise ValueError(
            f"x_NxD has dim {x_NxD.shape[1]} but centroids_RxD has dim {centroids_RxD.shape[1]}."
        )
    return x_NxD, centroids_RxD


# ------------------------------------------------------------------------- assignment pass


def _nearest_in_chunk(x_CxD, c_RxD, c2_R):
    """Nearest centroid of each row (first index on ties) and the row's ‖x‖²-free distance."""
    r = c_RxD.shape[0]
    # ‖x−c‖² − ‖x‖² = ‖c‖² − 2x·c: the dropped term does not change the argmin.
    s_CxR = c2_R[None, :] - 2.0 * jnp.matmul(x_CxD, c_RxD.T, precision=PRECISION)
    smin_C1 = jnp.min(s_CxR, axis=1, keepdims=True)
    iota_CxR = lax.broadcasted_iota(jnp.int32, s_CxR.shape, 1)
    a_C = jnp.min(jnp.where(s_CxR <= smin_C1, iota_CxR, r), axis=1)
    return a_C, smin_C1[:, 0]


def _assignment_stats(
    x_NxD, c_RxD, *, x2_N, chunk_size: int, w_N=None, valid_N=None
) -> _ChunkStats:
    """One assignment pass: nearest centroids and the sums an update needs.

    Chunks are sliced from `x` in place (`map_row_chunks`: no padded copy of `x`). The
    chunk loop keeps only each row's centroid and `‖c‖² − 2x·c`; the sums are one
    `segment_sum` over all rows afterwards, which is cheaper on CPU than a scatter per chunk.

    Args:
      x_NxD: points [N, D].
      c_RxD: centroids [R, D].
      x2_N: `‖x_i‖²` [N], computed once per fit.
      chunk_size: rows per GEMM.
      w_N: optional weights [N] (None: all ones, and no `w·x` product is formed).
      valid_N: optional [N] bool; False rows (padding) count nowhere.
    """
    n = x_NxD.shape[0]
    r = c_RxD.shape[0]
    c2_R = jnp.sum(c_RxD * c_RxD, axis=1)
    a_N, s_N = map_row_chunks(
        lambda x_CxD: _nearest_in_chunk(x_CxD, c_RxD, c2_R), x_NxD, chunk_size=chunk_size
    )
    d2_N = jnp.maximum(s_N + x2_N, 0.0)
    segment_N = a_N
    if valid_N is not None:
        segment_N = jnp.where(valid_N, a_N, r)  # segment r is out of range: dropped
        d2_N = jnp.where(valid_N, d2_N, 0.0)
    if w_N is None:
        sums_RxD = jax.ops.segment_sum(x_NxD, segment_N, num_segments=r)
        counts_R = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), segment_N, num_segments=r)
        inertia = jnp.sum(d2_N)
    else:
        sums_RxD = jax.ops.segment_sum(w_N[:, None] * x_NxD, segment_N, num_segments=r)
        counts_R = jax.ops.segment_sum(w_N, segment_N, num_segments=r)
        inertia = jnp.sum(w_N * d2_N)
    return _ChunkStats(sums_RxD, counts_R, inertia, a_N, d2_N)


def _squared_norms(x_NxD):
    """`‖x_i‖²` of every row, [N]."""
    return jnp.sum(x_NxD * x_NxD, axis=1)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _assign(x_NxD, c_RxD, *, chunk_size):
    stats = _assignment_stats(x_NxD, c_RxD, x2_N=_squared_norms(x_NxD), chunk_size=chunk_size)
    return stats.assignments, stats.sq_dists


def assign_to_centroids(
    x_NxD: jax.Array, centroids_RxD: jax.Array, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[jax.Array, jax.Array]:
    """Nearest centroid (squared L2) of every row, computed in row chunks.

    Args:
      x_NxD: points, float32 [N, D].
      centroids_RxD: centroids, float32 [R, D].
      chunk_size: rows per GEMM chunk; peak memory is O(chunk_size·R).

    Returns:
      `(assignments [N] int32, sq_dists [N] float32)`; ties go to the lowest index.

    Examples:
      >>> import jax.numpy as jnp
      >>> a, d2 = assign_to_centroids(jnp.array([[0.0], [0.9], [3.0]]), jnp.array([[0.0], [2.0]]))
      >>> a.tolist()
      [0, 0, 1]
    """
    x_NxD, centroids_RxD = _check_assign(x_NxD, centroids_RxD)
    return _assign(x_NxD, centroids_RxD, chunk_size=_positive(chunk_size, "chunk_size"))


# ----------------------------------------------------------------------------- seeding


def _default_sample_size(n: int, k: int) -> int:
    return min(n, max(64 * k, 8192))


@functools.partial(jax.jit, static_argnames=("k", "sample_size", "num_local_trials"))
def _kmeans_plusplus(key, x_NxD, w_N, *, k, sample_size, num_local_trials):
    n = x_NxD.shape[0]
    key_sample, key_first, key_steps = jax.random.split(key, 3)
    if sample_size < n:
        idx = jax.random.choice(key_sample, n, (sample_size,), replace=False, p=w_N / w_N.sum())
        x_SxD, w_S = x_NxD[idx], jnp.ones((sample_size,), jnp.float32)
    else:
        x_SxD, w_S = x_NxD, w_N
    x2_S = jnp.sum(x_SxD * x_SxD, axis=1)

    def sq_dist_to(rows_TxD):
        xy_SxT = jnp.matmul(x_SxD, rows_TxD.T, precision=PRECISION)
        return jnp.maximum(x2_S[:, None] - 2 * xy_SxT + jnp.sum(rows_TxD**2, 1)[None, :], 0.0)

    first = jax.random.choice(key_first, x_SxD.shape[0], p=w_S / w_S.sum())
    centers = jnp.zeros((k, x_SxD.shape[1]), jnp.float32).at[0].set(x_SxD[first])
    closest_S = sq_dist_to(x_SxD[first][None])[:, 0]

    def step(i, carry):
        centers, closest_S = carry
        potential_S = w_S * closest_S
        # Greedy k-means++: draw a few D²-weighted candidates, keep the one that lowers
        # the potential most. Fall back to uniform when every point is already a centre.
        logits = jnp.where(
            potential_S.sum() > 0, jnp.log(jnp.maximum(potential_S, 1e-30)), jnp.log(w_S)
        )
        cand_T = jax.random.categorical(
            jax.random.fold_in(key_steps, i), logits, shape=(num_local_trials,)
        )
        d2_SxT = jnp.minimum(closest_S[:, None], sq_dist_to(x_SxD[cand_T]))
        best = jnp.argmin(jnp.sum(w_S[:, None] * d2_SxT, axis=0))
        return centers.at[i].set(x_SxD[cand_T[best]]), d2_SxT[:, best]

    centers, _ = lax.fori_loop(1, k, step, (centers, closest_S))
    return centers


def kmeans_plusplus_init(
    key: jax.Array,
    x_NxD: jax.Array,
    *,
    k: int,
    weights: jax.Array | None = None,
    sample_size: int | None = None,
    num_local_trials: int | None = None,
) -> jax.Array:
    """Greedy k-means++ seeding, jitted.

    Args:
      key: a `jax.random.key`.
      x_NxD: points, float32 [N, D].
      k: number of centroids.
      weights: optional non-negative point weights [N].
      sample_size: seed from a weighted uniform subsample of this many points (default
        `min(N, max(64·k, 8192))`); seeding costs `O(sample_size·k·D·trials)`.
      num_local_trials: candidates drawn per centre (default `2 + ⌊ln k⌋`, as scikit-learn).

    Returns:
      Initial centroids, float32 [k, D], each one a data point.

    References:
      Arthur & Vassilvitskii, SODA 2007.
    """
    check_key(key, "key")
    x_NxD = as_features(x_NxD, "x_NxD", nonempty=True)
    n = x_NxD.shape[0]
    k = _check_k(k, n)
    _check_weights(weights, n)
    sample_size = _default_sample_size(n, k) if sample_size is None else int(sample_size)
    if not k <= sample_size:
        raise ValueError(f"sample_size={sample_size} must be at least k={k}.")
    trials = 2 + int(math.log(k)) if num_local_trials is None else int(num_local_trials)
    w = jnp.ones((n,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    return _kmeans_plusplus(
        key, x_NxD, w, k=k, sample_size=min(sample_size, n), num_local_trials=trials
    )


# ------------------------------------------------------------------------------- Lloyd


def _update_centroids(c_RxD, stats: _ChunkStats, far_points_RxD):
    """Means of the assigned rows; an empty cluster is moved onto a far-away point.

    `far_points_RxD` lists points in decreasing distance to their centroid; the j-th empty
    cluster takes the j-th of them, which can only lower the inertia.
    """
    empty_R = stats.counts <= 0
    means_RxD = stats.sums / jnp.maximum(stats.counts, 1e-30)[:, None]
    rank_R = jnp.cumsum(empty_R) - 1
    reseeded_RxD = far_points_RxD[jnp.clip(rank_R, 0, far_points_RxD.shape[0] - 1)]
    return jnp.where(empty_R[:, None], reseeded_RxD, means_RxD)


def _farthest_points(x_NxD, sq_dists_N, *, k: int, eligible_N=None):
    """The `min(k, N)` eligible rows farthest from their centroid, farthest first.

    `eligible_N` ([N] bool, default all) excludes padding and zero-weight rows.
    """
    k = min(k, x_NxD.shape[0])
    score_N = sq_dists_N if eligible_N is None else jnp.where(eligible_N, sq_dists_N, -1.0)
    _, idx = lax.top_k(score_N, k)
    return x_NxD[idx], score_N[idx]


class _LoopState(NamedTuple):
    it: jax.Array  # [] int32
    centroids: jax.Array  # [R, D]
    prev_inertia: jax.Array  # [] float32
    inertia: jax.Array  # [] float32
    history: jax.Array  # [num_iters] float32


def _lloyd(
    c_RxD, *, num_iters: int, tol: float, stats_fn, far_fn
) -> tuple[_LoopState, _ChunkStats]:
    """The Lloyd loop, shared by the single-device and the sharded KMeans.

    `stats_fn(c) -> _ChunkStats` is one (possibly sharded and `psum`-reduced) assignment pass;
    `far_fn(stats) -> [R, D]` proposes far points to re-seed empty clusters. The loop stops
    after `num_iters` updates or once an update lowers the inertia by at most `tol` relative.
    """
    inf = jnp.array(jnp.inf, jnp.float32)

    def cond(s: _LoopState):
        improving = (s.prev_inertia - s.inertia) > tol * jnp.abs(s.inertia)
        return (s.it < num_iters) & ((s.it == 0) | improving)

    def body(s: _LoopState):
        stats = stats_fn(s.centroids)
        any_empty = jnp.any(stats.counts <= 0)
        far_RxD = lax.cond(any_empty, far_fn, lambda st: jnp.zeros_like(s.centroids), stats)
        return _LoopState(
            it=s.it + 1,
            centroids=_update_centroids(s.centroids, stats, far_RxD),
            prev_inertia=s.inertia,
            inertia=stats.inertia,
            history=s.history.at[s.it].set(stats.inertia),
        )

    init = _LoopState(
        jnp.zeros((), jnp.int32), c_RxD, inf, inf, jnp.full((num_iters,), jnp.nan, jnp.float32)
    )
    state = lax.while_loop(cond, body, init)
    return state, stats_fn(state.centroids)


@functools.partial(jax.jit, static_argnames=("num_iters", "tol", "chunk_size"))
def _kmeans_from(x_NxD, w_N, c_RxD, *, num_iters, tol, chunk_size):
    k = c_RxD.shape[0]
    stats_fn = functools.partial(
        _assignment_stats, x_NxD, x2_N=_squared_norms(x_NxD), chunk_size=chunk_size, w_N=w_N
    )
    eligible_N = None if w_N is None else w_N > 0

    def far_fn(stats):
        far_RxD, _ = _farthest_points(x_NxD, stats.sq_dists, k=k, eligible_N=eligible_N)
        return jnp.pad(far_RxD, ((0, k - far_RxD.shape[0]), (0, 0)), mode="edge")

    state, final = _lloyd(c_RxD, num_iters=num_iters, tol=tol, stats_fn=stats_fn, far_fn=far_fn)
    return KMeansResult(
        centroids=state.centroids,
        assignments=final.assignments,
        inertia=final.inertia,
        num_iters=state.it,
        inertia_history=state.history,
    )


def _prepare(
    key, x_NxD, *, k, weights, init, init_sample_size
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """Checks the data, `k`, the weights and the start; returns points, weights, centroids.

    Shared by `kmeans` and `ecos_jax.sharding.sharded_kmeans`, so both seed identically.
    The key seeds k-means++; it may be None only when `init` is given.
    """
    if init is None or key is not None:
        check_key(key, "key")
    x = as_features(x_NxD, "x_NxD", nonempty=True)
    n, d = x.shape
    k = _check_k(k, n)
    _check_weights(weights, n)
    w = None if weights is None else jnp.asarray(weights, jnp.float32)
    if init is None:
        return x, w, kmeans_plusplus_init(key, x, k=k, weights=w, sample_size=init_sample_size)
    if getattr(init, "shape", None) != (k, d):
        raise ValueError(f"init must have shape (k, d) = ({k}, {d}); got {init.shape}.")
    return x, w, as_features(init, "init", nonempty=True)


def kmeans(
    key: jax.Array,
    x_NxD: jax.Array,
    *,
    k: int,
    num_iters: int = 100,
    tol: float = 1e-4,
    weights: jax.Array | None = None,
    init: jax.Array | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    init_sample_size: int | None = None,
) -> KMeansResult:
    """KMeans (squared L2) with k-means++ seeding and a jitted Lloyd loop.

    For cosine geometry, pass L2-normalised rows (`ecos_jax.distances.normalize_rows`).

    Args:
      key: a `jax.random.key`, used for seeding only (unused when `init` is given).
      x_NxD: points, float32 [N, D], finite.
      k: number of clusters, `1 <= k <= N`.
      num_iters: cap on Lloyd updates.
      tol: stop once an update lowers the inertia by at most `tol` (relative); 0 runs until
        the inertia stops falling or `num_iters` is reached.
      weights: optional non-negative weights [N] (weighted means and inertia).
      init: optional initial centroids [k, D] (R = k); otherwise greedy k-means++.
      chunk_size: rows per assignment GEMM; peak extra memory is O(chunk_size·k + N).
      init_sample_size: k-means++ seeds from a subsample of this size (see
        `kmeans_plusplus_init`).

    Returns:
      A `KMeansResult` whose assignments and inertia are those of the returned centroids.

    Examples:
      >>> import jax
      >>> x = jax.random.normal(jax.random.key(0), (1000, 8))
      >>> res = kmeans(jax.random.key(1), x, k=4)
      >>> res.centroids.shape, res.assignments.shape
      ((4, 8), (1000,))

    References:
      Hong et al., NeurIPS 2022 (ECOS, protocol step 1); Lloyd, IEEE Trans. IT 1982.
    """
    num_iters, tol, chunk_size = _check_loop(num_iters, tol, chunk_size)
    x, w, init = _prepare(
        key, x_NxD, k=k, weights=weights, init=init, init_sample_size=init_sample_size
    )
    return _kmeans_from(x, w, init, num_iters=num_iters, tol=tol, chunk_size=chunk_size)
