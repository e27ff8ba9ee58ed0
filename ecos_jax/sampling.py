"""Cloud-side selection: ECOS (filter, allocate, proximal candidates, k-center) and baselines.

ECOS turns the client's R noisy coverage scores into a subset of the pool of exactly
`budget` points:

1. filter: `w_r = max(ŝ_r, 0)`, optionally zero below a threshold or outside the top-k;
2. allocate: `n_r ∝ w_r`, largest-remainder rounding, capped by cluster sizes;
3. proximal candidates: the `ceil(κ·n_r)` members of cluster r nearest to its centroid;
4. diversity: greedy k-center (farthest point) inside the candidates, seeded from the
   centroid, until `n_r` are picked.

Baselines that every table carries live here too: uniform random, greedy k-center over
the whole pool, the non-private oracle (sees client features) and the full pool.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Section 3.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax._validate import check_key
from ecos_jax.distances import (
    PRECISION,
    Metric,
    all_finite,
    check_metric,
    map_row_chunks,
    normalize_rows,
    pairwise_distance,
)

#: Smallest padded candidate-set size; sets are padded to powers of two above it.
MIN_BUCKET = 8


class KCenterResult(NamedTuple):
    """Output of `greedy_k_center`, padded to `num_select` picks."""

    indices: jax.Array  # [S] int32, row indices in pick order; -1 where `valid` is False
    valid: jax.Array  # [S] bool, False once every unmasked row has been picked


# --------------------------------------------------------------------------------------
# Budget allocation (host side, R is small)
# --------------------------------------------------------------------------------------


def filter_scores(
    noisy_scores_R, *, threshold: float | None = None, top_k: int | None = None
) -> np.ndarray:
    """Cluster weights `w_r = max(ŝ_r, 0)`, zeroed below `threshold` or outside the top-k.

    Args:
      noisy_scores_R: the client's noisy coverage scores, shape [R].
      threshold: if given, clusters with `ŝ_r < threshold` get weight 0 (typically a
        multiple of the noise standard deviation `σΔ`, a public quantity).
      top_k: if given, only the `top_k` clusters with the largest scores keep their weight
        (ties broken by the lower cluster index).

    Returns:
      float64 weights, shape [R], all >= 0.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3 "cluster filtering".
    """
    s_R = _as_scores(noisy_scores_R, "noisy_scores_R")
    w_R = np.maximum(s_R, 0.0)
    if threshold is not None:
        if not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be a finite number or None, got {threshold!r}.")
        w_R = np.where(s_R < float(threshold), 0.0, w_R)
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}.")
        keep = np.zeros(s_R.shape[0], dtype=bool)
        keep[np.argsort(-s_R, kind="stable")[:top_k]] = True
        w_R = np.where(keep, w_R, 0.0)
    return w_R


def allocate_budget(weights_R, capacities_R, *, budget: int) -> np.ndarray:
    """Splits `budget` over clusters in proportion to `max(weight, 0)`, capped by capacity.

    Quotas `budget·w_r / Σw` are rounded by largest remainder, so the result sums to
    `budget` exactly. A cluster whose quota exceeds its capacity is filled and its overflow
    is shared, again in proportion to weight, by the other positive-weight clusters. Only
    when every positive-weight cluster is full does the rest spill to the remaining
    clusters, in proportion to their free room (their size); ties in rounding go to the
    cluster with the larger raw weight, then the lower index.

    Args:
      weights_R: cluster weights (e.g. noisy scores), shape [R]; negatives count as 0.
      capacities_R: non-negative integer cluster sizes, shape [R].
      budget: number of points to allocate, `0 <= budget <= sum(capacities_R)`.

    Returns:
      int64 array `n_R` with `sum(n_R) == budget` and `0 <= n_R <= capacities_R`.

    Examples:
      >>> allocate_budget([3.0, 1.0, -2.0], [10, 10, 10], budget=8).tolist()
      [6, 2, 0]
      >>> allocate_budget([3.0, 1.0, -2.0], [2, 10, 10], budget=8).tolist()
      [2, 6, 0]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3 "budget allocation".
    """
    raw_R = _as_scores(weights_R, "weights_R")
    cap_R = np.asarray(capacities_R)
    if cap_R.shape != raw_R.shape:
        raise ValueError(
            f"capacities_R must have the shape of weights_R {raw_R.shape}, got {cap_R.shape}."
        )
    if cap_R.size and (
        not np.all(np.isfinite(cap_R)) or np.any(cap_R < 0) or np.any(cap_R != np.round(cap_R))
    ):
        raise ValueError("capacities_R must hold non-negative integers (cluster sizes).")
    cap_R = cap_R.astype(np.int64)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise ValueError(f"budget must be an int, got {budget!r}.")
    budget = int(budget)
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}.")
    total = int(cap_R.sum())
    if budget > total:
        raise ValueError(
            f"budget={budget} exceeds the total capacity {total} of the clusters; lower the "
            "budget or use a larger pool."
        )
    w_R = np.maximum(raw_R, 0.0)
    n_R = np.zeros_like(cap_R)
    left = _fill_in_proportion(n_R, cap_R, w_R, raw_R, budget)
    # Every positive-weight cluster is full: spill by free room (cluster size).
    left = _fill_in_proportion(n_R, cap_R, (cap_R - n_R).astype(np.float64), raw_R, left)
    assert left == 0 and n_R.sum() == budget and np.all(n_R <= cap_R)
    return n_R


def _fill_in_proportion(n_R, cap_R, w_R, raw_R, budget: int) -> int:
    """Adds up to `budget` units to `n_R` in place, ∝ `w_R`, capped; returns what is left."""
    left = budget
    active = (w_R > 0) & (n_R < cap_R)
    while left > 0 and active.any():
        idx = np.flatnonzero(active)
        room = cap_R[idx] - n_R[idx]
        w = w_R[idx]
        quota = left * (w / w.sum())
        full = quota >= room
        if full.any():
            # These clusters cannot take their share: fill them and re-share the rest.
            n_R[idx[full]] = cap_R[idx[full]]
            left -= int(room[full].sum())
            active[idx[full]] = False
            continue
        base = np.floor(quota).astype(np.int64)
        extra = left - int(base.sum())
        # Largest remainder first; ties: larger raw weight, then lower index.
        order = np.lexsort((idx, -raw_R[idx], -(quota - base)))
        if extra >= 0:
            base[order[:extra]] += 1
        else:  # float round-off pushed the floors above `left`: take back the smallest.
            for j in order[::-1]:
                if extra == 0:
                    break
                if base[j] > 0:
                    base[j] -= 1
                    extra += 1
        n_R[idx] += base
        left = 0
    return left


def _as_scores(x, name: str) -> np.ndarray:
    """Host float64 copy of a finite 1-D score vector, with a clear error otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [R], got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got NaN or inf.")
    return arr


# --------------------------------------------------------------------------------------
# Greedy k-center (farthest point), jitted with a running min-distance vector
# --------------------------------------------------------------------------------------


def _point_dissimilarity(x_CxD: jax.Array, sq_C: jax.Array, p_D: jax.Array, metric: str):
    """Monotone distance from every row to one point: squared L2, or `1 - cos`.

    One matrix-vector product per call (4x faster than forming `x - p` on CPU); for
    cosine the rows and the point must be unit-norm and `sq_C` is unused.
    """
    xp_C = jnp.matmul(x_CxD, p_D, precision=PRECISION)
    if metric == "l2":
        return jnp.maximum(sq_C - 2.0 * xp_C + jnp.sum(p_D * p_D), 0.0)
    return jnp.clip(1.0 - xp_C, 0.0, 2.0)


def _farthest_point_loop(
    x_CxD: jax.Array, mask_C: jax.Array, init_min_C: jax.Array, *, num_select: int, metric: str
) -> KCenterResult:
    """Greedy farthest-point picks from a running min-distance vector (one pass per pick).

    `init_min_C` and the running minimum are in `_point_dissimilarity` units.
    """
    sq_C = jnp.sum(x_CxD * x_CxD, axis=-1)
    # Picked and masked-out rows sit at -inf, so argmax never returns them while a valid
    # row is left.
    min_C = jnp.where(mask_C, init_min_C.astype(jnp.float32), -jnp.inf)
    idx_S = jnp.full((num_select,), -1, dtype=jnp.int32)
    valid_S = jnp.zeros((num_select,), dtype=bool)

    def body(i, carry):
        min_C, idx_S, valid_S = carry
        j = jnp.argmax(min_C)
        ok = min_C[j] > -jnp.inf
        d_C = _point_dissimilarity(x_CxD, sq_C, x_CxD[j], metric)
        min_C = jnp.where(ok, jnp.minimum(min_C, d_C), min_C).at[j].set(-jnp.inf)
        idx_S = idx_S.at[i].set(jnp.where(ok, j, -1).astype(jnp.int32))
        valid_S = valid_S.at[i].set(ok)
        return min_C, idx_S, valid_S

    _, idx_S, valid_S = jax.lax.fori_loop(0, num_select, body, (min_C, idx_S, valid_S))
    return KCenterResult(indices=idx_S, valid=valid_S)


@functools.partial(jax.jit, static_argnames=("num_select", "metric"))
def greedy_k_center(
    features_CxD: jax.Array,
    mask_C: jax.Array,
    *,
    num_select: int,
    seed_point_D: jax.Array | None = None,
    metric: Metric = "l2",
) -> KCenterResult:
    """Greedy k-center (farthest-point) selection among the unmasked rows.

    Each pick is the valid row farthest from everything chosen so far; a running
    min-distance vector makes one pick cost one pass over the candidates (no distance
    matrix). With `seed_point_D` the seed (e.g. the cluster centroid) counts as already
    chosen, so the first pick is the valid row farthest from it; without it the first
    pick is the first valid row. Pad candidate sets to a fixed size and mask the padding
    so that one compile serves many sets.

    Args:
      features_CxD: candidate features, shape [C, D].
      mask_C: bool [C]; False rows (padding) are never picked.
      num_select: number of picks (static), `1 <= num_select <= C`.
      seed_point_D: optional point [D] treated as an already-chosen center.
      metric: `'l2'` (Euclidean) or `'cosine'` (`1 - cos`).

    Returns:
      `KCenterResult(indices [S] int32, valid [S] bool)`; once every valid row has been
      picked the remaining entries are `-1` / False.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3 "diversity"; Sener & Savarese,
      ICLR 2018 (k-center greedy).
    """
    check_metric(metric)
    if features_CxD.ndim != 2:
        raise ValueError(f"features_CxD must be 2-D [C, D], got shape {features_CxD.shape}.")
    num_rows, dim = features_CxD.shape
    if mask_C.shape != (num_rows,):
        raise ValueError(f"mask_C must have shape ({num_rows},), got {mask_C.shape}.")
    if not 1 <= num_select <= num_rows:
        raise ValueError(f"num_select must be in [1, {num_rows}] (the rows), got {num_select}.")
    x_CxD = features_CxD.astype(jnp.float32)
    if metric == "cosine":
        x_CxD = normalize_rows(x_CxD)
    if seed_point_D is None:
        init_C = jnp.full((num_rows,), jnp.inf, dtype=jnp.float32)
    else:
        if seed_point_D.shape != (dim,):
            raise ValueError(f"seed_point_D must have shape ({dim},), got {seed_point_D.shape}.")
        p_D = seed_point_D.astype(jnp.float32)
        if metric == "cosine":
            p_D = normalize_rows(p_D[None, :])[0]
        init_C = _point_dissimilarity(x_CxD, jnp.sum(x_CxD * x_CxD, axis=-1), p_D, metric)
    return _farthest_point_loop(
        x_CxD, mask_C.astype(bool), init_C, num_select=num_select, metric=metric
    )


def bucket_size(n: int, *, minimum: int = MIN_BUCKET) -> int:
    """Smallest power of two >= max(n, minimum): the padded size of a candidate set."""
    return max(int(minimum), 1 << max(int(n) - 1, 0).bit_length())


# --------------------------------------------------------------------------------------
# ECOS end to end
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("metric",))
@functools.partial(jax.jit, static_argnames=("metric", "chunk_size"))
def _distance_to_own_centroid(
    x_NxD, centroids_RxD, assignments_N, *, metric: str, chunk_size: int = 8192
):
    """Distance of every pool row to the centroid of its own cluster, [N] (row chunks)."""

    def fn(x_CxD, a_C):
        c_CxD = centroids_RxD[a_C]
        if metric == "l2":
            diff = x_CxD - c_CxD
            return jnp.sqrt(jnp.sum(diff * diff, axis=-1))
        cos_C = jnp.sum(normalize_rows(x_CxD) * normalize_rows(c_CxD), axis=-1)
        return jnp.clip(1.0 - cos_C, 0.0, 2.0)

    return map_row_chunks(fn, x_NxD, assignments_N, chunk_size=chunk_size)


def ecos_select(
    key: jax.Array | None,
    pool_features,
    assignments,
    centroids,
    noisy_scores,
    *,
    budget: int,
    kappa: float | None = 1.5,
    threshold: float | None = None,
    top_k: int | None = None,
    metric: Metric = "l2",
) -> np.ndarray:
    """ECOS selection of exactly `budget` distinct pool indices from noisy cluster scores.

    Runs filter → allocate → proximal candidates → greedy k-center per cluster. Every
    step only post-processes the privatised scores, so the selection costs no extra
    privacy. The steps are deterministic given their inputs.

    Args:
      key: a `jax.random.key` or None; accepted so that every selector shares one
        signature. The ECOS steps are deterministic given the scores, so the key does not
        change the result (the randomness of a round lives in the clustering and the
        noise).
      pool_features: pool features [N, D] (the cloud's own data).
      assignments: cluster index of every pool row, int [N] in [0, R).
      centroids: the broadcast centroids [R, D].
      noisy_scores: the client's noisy scores [R].
      budget: number of points to select, `0 <= budget <= N`.
      kappa: candidate multiplier κ >= 1: the `ceil(κ·n_r)` members nearest to the
        centroid are candidates; None uses the whole cluster.
      threshold: drop clusters whose score is below this (see `filter_scores`).
      top_k: keep only the `top_k` highest-scoring clusters (see `filter_scores`).
      metric: `'l2'` or `'cosine'`, for both the candidate ranking and the k-center.

    Returns:
      int64 array of `budget` unique pool indices, grouped by cluster in decreasing weight
      order and in greedy pick order within a cluster. If the kept clusters cannot hold the
      budget, the rest comes from the other clusters (see `allocate_budget`).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3 and Algorithm 1.
    """
    del key  # ECOS selection is a deterministic function of the released scores.
    check_metric(metric)
    x_NxD = _as_features(pool_features, "pool_features")
    num_pool, dim = x_NxD.shape
    c_RxD = _as_features(centroids, "centroids")
    if c_RxD.shape[1] != dim:
        raise ValueError(f"centroids have dimension {c_RxD.shape[1]} but pool_features have {dim}.")
    num_clusters = c_RxD.shape[0]
    a_N = np.asarray(assignments)
    if a_N.shape != (num_pool,) or not np.issubdtype(a_N.dtype, np.integer):
        raise ValueError(
            f"assignments must be an int array of shape ({num_pool},), got {a_N.dtype} {a_N.shape}."
        )
    if num_pool and (a_N.min() < 0 or a_N.max() >= num_clusters):
        raise ValueError(f"assignments must lie in [0, {num_clusters}) (one per centroid).")
    s_R = _as_scores(noisy_scores, "noisy_scores")
    if s_R.shape != (num_clusters,):
        raise ValueError(
            f"noisy_scores must have shape ({num_clusters},) (one per centroid), got {s_R.shape}."
        )
    if kappa is not None and not (math.isfinite(float(kappa)) and float(kappa) >= 1.0):
        raise ValueError(f"kappa must be a number >= 1 or None (whole cluster), got {kappa!r}.")
    _check_budget(budget, num_pool)

    w_R = filter_scores(s_R, threshold=threshold, top_k=top_k)
    sizes_R = np.bincount(a_N, minlength=num_clusters)
    n_R = allocate_budget(w_R, sizes_R, budget=budget)

    dist_N = np.asarray(_distance_to_own_centroid(x_NxD, c_RxD, jnp.asarray(a_N), metric=metric))
    # Members of each cluster, nearest to their centroid first.
    order = np.lexsort((np.arange(num_pool), dist_N, a_N))
    starts = np.concatenate([[0], np.cumsum(sizes_R)])

    picked = []
    for r in np.lexsort((np.arange(num_clusters), -s_R, -w_R)):
        n = int(n_R[r])
        if n == 0:
            continue
        members = order[starts[r] : starts[r + 1]]
        m = len(members) if kappa is None else min(len(members), _ceil(float(kappa) * n))
        cand = members[:m]
        if n == m:
            # Every candidate is taken; k-center would only reorder them.
            picked.append(cand)
            continue
        feats, mask = _padded_rows(x_NxD, cand)
        res = greedy_k_center(
            feats,
            mask,
            num_select=min(bucket_size(n), feats.shape[0]),
            seed_point_D=c_RxD[r],
            metric=metric,
        )
        # Greedy picks are prefix-consistent: the first n of a longer run are the n-run.
        local = np.asarray(res.indices)[:n]
        assert np.all(np.asarray(res.valid)[:n])
        picked.append(cand[local])
    out = np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, np.int64)
    assert out.shape == (budget,) and np.unique(out).size == budget
    return out


def _ceil(x: float) -> int:
    """Ceiling that ignores float noise just above an integer (1.5 * 4 → 6, not 7)."""
    return math.ceil(x - 1e-9)


def _as_features(x, name: str) -> jax.Array:
    """A finite [N, D] feature matrix as a float32 device array, with a clear error otherwise.

    No copy is made when `x` already is one: pools can be gigabytes.
    """
    if getattr(x, "ndim", np.ndim(x)) != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {np.shape(x)}.")
    arr = jnp.asarray(x, dtype=jnp.float32)
    if not bool(all_finite(arr)):
        raise ValueError(f"{name} must be finite; got NaN or inf.")
    return arr


def _padded_rows(x_NxD: jax.Array, rows: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Rows of `x` gathered on device, padded to `bucket_size(len(rows))`, and their mask."""
    size = bucket_size(len(rows))
    idx = np.zeros(size, dtype=np.int64)
    idx[: len(rows)] = rows
    return x_NxD[jnp.asarray(idx)], jnp.asarray(np.arange(size) < len(rows))


def _check_budget(budget, num_pool: int) -> None:
    """Raises a clear error unless `0 <= budget <= num_pool` is an int."""
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise ValueError(f"budget must be an int, got {budget!r}.")
    if not 0 <= budget <= num_pool:
        raise ValueError(f"budget must be in [0, {num_pool}] (the pool size), got {budget}.")


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------


def random_select(key: jax.Array, num_pool: int, *, budget: int) -> np.ndarray:
    """Uniform sample of `budget` distinct indices from `range(num_pool)` (ε = 0).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 baselines ("Random").
    """
    check_key(key, "key")
    if isinstance(num_pool, bool) or not isinstance(num_pool, int | np.integer) or num_pool < 0:
        raise ValueError(f"num_pool must be a non-negative int, got {num_pool!r}.")
    _check_budget(budget, int(num_pool))
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    idx = jax.random.choice(key, int(num_pool), (int(budget),), replace=False)
    return np.asarray(idx).astype(np.int64)


@functools.partial(jax.jit, static_argnames=("budget", "metric"))
def _k_center_pool(key, x_NxD, *, budget: int, metric: str) -> jax.Array:
    """Greedy k-center over all rows, first pick drawn from `key`; indices [budget]."""
    n = x_NxD.shape[0]
    x_NxD = x_NxD.astype(jnp.float32)
    if metric == "cosine":
        x_NxD = normalize_rows(x_NxD)
    first = jax.random.randint(key, (), 0, n)
    init_N = _point_dissimilarity(x_NxD, jnp.sum(x_NxD * x_NxD, axis=-1), x_NxD[first], metric)
    mask_N = jnp.arange(n) != first
    if budget == 1:
        return first[None].astype(jnp.int32)
    rest = _farthest_point_loop(x_NxD, mask_N, init_N, num_select=budget - 1, metric=metric)
    return jnp.concatenate([first[None].astype(jnp.int32), rest.indices])


def k_center_select(
    key: jax.Array, pool_features, *, budget: int, metric: Metric = "l2"
) -> np.ndarray:
    """Greedy k-center over the whole pool, no client information (ε = 0).

    The first point is drawn uniformly with `key`; each next point is the pool row
    farthest from those chosen (running min-distance vector, one pass per pick).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 baselines ("K-Center");
      Sener & Savarese, ICLR 2018.
    """
    check_key(key, "key")
    check_metric(metric)
    x_NxD = _as_features(pool_features, "pool_features")
    _check_budget(budget, x_NxD.shape[0])
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    idx = _k_center_pool(key, x_NxD, budget=int(budget), metric=metric)
    return np.asarray(idx).astype(np.int64)


@functools.partial(jax.jit, static_argnames=("num_neighbors", "metric", "chunk_size"))
def _client_neighbors(y_MxD, x_NxD, *, num_neighbors: int, metric: str, chunk_size: int):
    """The `num_neighbors` nearest pool rows of every client row, nearest first, [M, J]."""

    def fn(y_CxD):
        neg_CxJ, idx_CxJ = jax.lax.top_k(
            -pairwise_distance(y_CxD, x_NxD, metric=metric), num_neighbors
        )
        return idx_CxJ, -neg_CxJ

    return map_row_chunks(fn, y_MxD, chunk_size=chunk_size)


def oracle_select(
    pool_features,
    client_features,
    *,
    budget: int,
    metric: Metric = "l2",
    kappa: float = 1.5,
    chunk_size: int = 1024,
) -> np.ndarray:
    """Non-private reference (ε = ∞): the pool points nearest to the client's features.

    Candidates are the nearest pool points of every client feature, taken round-robin by
    rank (every client sample's nearest pool point first, then every second nearest, ...;
    within a rank, closest first) until `ceil(κ·budget)` distinct points are gathered, so
    each client sample is covered rather than only the densest region (in high dimensions
    a plain "closest to any client sample" ranking piles onto a few hubs). Greedy k-center
    then thins them to `budget`, starting from the closest candidate. It sees the client
    features directly, i.e. the client would have to upload them: an upper reference, not
    a private method.

    Args:
      pool_features: [N, D].
      client_features: [M, D], the client's private features.
      budget: number of points, `0 <= budget <= N`.
      metric: `'l2'` or `'cosine'`.
      kappa: candidate multiplier κ >= 1.
      chunk_size: client rows per distance block (at most `chunk_size·N` and about 16M
        floats alive at once).

    Returns:
      int64 array of `budget` unique pool indices.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 baselines (central MAK-style
      oracle).
    """
    check_metric(metric)
    x_NxD = _as_features(pool_features, "pool_features")
    y_MxD = _as_features(client_features, "client_features")
    if y_MxD.shape[1] != x_NxD.shape[1]:
        raise ValueError(
            f"client_features have dimension {y_MxD.shape[1]} but pool_features have "
            f"{x_NxD.shape[1]}."
        )
    if y_MxD.shape[0] == 0:
        raise ValueError("client_features must hold at least one row.")
    if not (math.isfinite(float(kappa)) and float(kappa) >= 1.0):
        raise ValueError(f"kappa must be a number >= 1, got {kappa!r}.")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    _check_budget(budget, x_NxD.shape[0])
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    num_pool, num_client = x_NxD.shape[0], y_MxD.shape[0]
    m = min(num_pool, _ceil(float(kappa) * budget))
    rows = max(1, min(int(chunk_size), 2**24 // num_pool))
    neighbors = min(num_pool, -(-m // num_client) + 1)
    while True:
        idx_MxJ, dist_MxJ = (
            np.asarray(a)
            for a in _client_neighbors(
                y_MxD, x_NxD, num_neighbors=neighbors, metric=metric, chunk_size=rows
            )
        )
        # Rank-major order; within a rank, the closest pairs first.
        order = np.lexsort((dist_MxJ.T.reshape(-1), np.repeat(np.arange(neighbors), num_client)))
        ranked = idx_MxJ.T.reshape(-1)[order]
        _, first = np.unique(ranked, return_index=True)
        if first.size >= m or neighbors == num_pool:
            cand = ranked[np.sort(first)][:m]
            break
        neighbors = min(num_pool, 2 * neighbors)
    if m == budget:
        return cand.astype(np.int64)
    feats, mask = _padded_rows(x_NxD, cand)
    res = greedy_k_center(feats, mask, num_select=budget, metric=metric)
    return cand[np.asarray(res.indices)].astype(np.int64)


def full_pool_select(num_pool: int) -> np.ndarray:
    """Every pool index (the "train on all of D_q" baseline, ε = 0).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 baselines ("Full pool").
    """
    if isinstance(num_pool, bool) or not isinstance(num_pool, int | np.integer) or num_pool < 0:
        raise ValueError(f"num_pool must be a non-negative int, got {num_pool!r}.")
    return np.arange(int(num_pool), dtype=np.int64)
