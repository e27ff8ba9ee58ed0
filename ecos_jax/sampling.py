"""Cloud-side ECOS selection: filter, allocate, proximal candidates, k-center.

ECOS turns the client's R noisy coverage scores into a subset of the pool of exactly
`budget` points:

1. filter: `w_r = max(ŝ_r, 0)`, optionally zero below a threshold or outside the top-k;
2. allocate: `n_r ∝ w_r`, largest-remainder rounding, capped by cluster sizes;
3. proximal candidates: the `ceil(κ·n_r)` members of cluster r nearest to its centroid;
4. diversity: greedy k-center (farthest point) inside the candidates, seeded from the
   centroid, until `n_r` are picked (`ecos_jax.k_center.grouped_k_center`: one compiled
   program per padded candidate size, whatever the budget).

The baselines (Random, K-Center, the oracle, the full pool) live in `ecos_jax.baselines`.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Section 3.
"""

from __future__ import annotations

import functools
import math
from typing import TypedDict

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax._validate import as_features, as_int, int_in_range, is_int, positive_int
from ecos_jax.distances import Metric, check_metric, map_row_chunks, normalize_rows
from ecos_jax.k_center import grouped_k_center

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "CandidateOptions",
    "allocate_budget",
    "candidates_per_cluster",
    "check_select_args",
    "ecos_select",
    "filter_scores",
    "num_candidates",
    "pick_from_candidates",
]

#: Rows per distance block in every step of an ECOS round (k-means, coverage, selection).
DEFAULT_CHUNK_SIZE = 4096


class CandidateOptions(TypedDict, total=False):
    """`ecos_select`'s candidate options, passed through by the protocol's callers."""

    kappa: float | None  # candidate multiplier κ >= 1; None uses the whole cluster
    top_k: int | None  # keep only the top-k clusters; None keeps all


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
        if not is_int(top_k) or top_k < 1:
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
    budget = as_int(budget, "budget")
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


def num_candidates(kappa: float, n: int) -> int:
    """`ceil(κ·n)`, the proximal candidates for n picks, ignoring float noise (1.5·4 → 6).

    Examples:
      >>> num_candidates(1.5, 4), num_candidates(1.5, 5), num_candidates(1.0, 7)
      (6, 8, 7)
    """
    return math.ceil(float(kappa) * int(n) - 1e-9)


def _as_scores(x, name: str) -> np.ndarray:
    """Host float64 copy of a finite 1-D score vector, with a clear error otherwise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [R], got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got NaN or inf.")
    return arr


# --------------------------------------------------------------------------------------
# ECOS end to end
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("metric", "chunk_size"))
def _distance_to_own_centroid(x_NxD, centroids_RxD, assignments_N, *, metric: str, chunk_size: int):
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
    pool_features,
    assignments,
    centroids,
    scores,
    *,
    budget: int,
    kappa: float | None = 1.5,
    threshold: float | None = None,
    top_k: int | None = None,
    metric: Metric = "l2",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """ECOS selection of exactly `budget` distinct pool indices from noisy cluster scores.

    Runs filter → allocate → proximal candidates → greedy k-center per cluster. Every
    step only post-processes the privatised scores, so the selection costs no extra
    privacy. The steps are deterministic given their inputs, so there is no key. The
    k-center of all clusters runs as one compiled program per padded candidate size
    (`ecos_jax.k_center.grouped_k_center`): a new budget compiles nothing new.

    Args:
      pool_features: pool features [N, D] (the cloud's own data).
      assignments: cluster index of every pool row, int [N] in [0, R).
      centroids: the broadcast centroids [R, D].
      scores: the client's noisy scores [R].
      budget: number of points to select, `0 <= budget <= N`.
      kappa: candidate multiplier κ >= 1: the `ceil(κ·n_r)` members nearest to the
        centroid are candidates; None uses the whole cluster.
      threshold: drop clusters whose score is below this (see `filter_scores`).
      top_k: keep only the `top_k` highest-scoring clusters (see `filter_scores`).
      metric: `'l2'` or `'cosine'`, for both the candidate ranking and the k-center.
      chunk_size: pool rows per block when ranking the members by distance to their
        centroid.

    Returns:
      int64 array of `budget` unique pool indices, grouped by cluster in decreasing weight
      order and in greedy pick order within a cluster. If the kept clusters cannot hold the
      budget, the rest comes from the other clusters (see `allocate_budget`).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3 and Algorithm 1.
    """
    check_metric(metric)
    x_NxD = as_features(pool_features, "pool_features")
    num_pool, dim = x_NxD.shape
    c_RxD, s_R, chunk_size = check_select_args(
        centroids, scores, dim=dim, num_pool=num_pool, budget=budget, kappa=kappa,
        chunk_size=chunk_size,
    )  # fmt: skip
    num_clusters = c_RxD.shape[0]
    a_N = np.asarray(assignments)
    if a_N.shape != (num_pool,) or not np.issubdtype(a_N.dtype, np.integer):
        raise ValueError(
            f"assignments must be an int array of shape ({num_pool},), got {a_N.dtype} {a_N.shape}."
        )
    if num_pool and (a_N.min() < 0 or a_N.max() >= num_clusters):
        raise ValueError(f"assignments must lie in [0, {num_clusters}) (one per centroid).")

    w_R = filter_scores(s_R, threshold=threshold, top_k=top_k)
    sizes_R = np.bincount(a_N, minlength=num_clusters)
    n_R = allocate_budget(w_R, sizes_R, budget=budget)
    m_R = candidates_per_cluster(n_R, sizes_R, kappa=kappa)

    dist_N = np.asarray(
        _distance_to_own_centroid(
            x_NxD, c_RxD, jnp.asarray(a_N), metric=metric, chunk_size=chunk_size
        )
    )
    # Members of each cluster, nearest to their centroid first.
    order_N = np.lexsort((np.arange(num_pool), dist_N, a_N))
    starts = np.concatenate([[0], np.cumsum(sizes_R)])
    candidates = {r: order_N[starts[r] : starts[r] + m_R[r]] for r in map(int, np.flatnonzero(n_R))}
    return pick_from_candidates(x_NxD, candidates, c_RxD, s_R, w_R, n_R, metric=metric)


def check_select_args(centroids, scores, *, dim, num_pool, budget, kappa, chunk_size):
    """`ecos_select`'s checks of everything but the pool and its assignments.

    Returns the centroids [R, D], the float64 scores [R] and the chunk size.
    """
    c_RxD = as_features(centroids, "centroids")
    if c_RxD.shape[1] != dim:
        raise ValueError(f"centroids have dimension {c_RxD.shape[1]} but pool_features have {dim}.")
    num_clusters = c_RxD.shape[0]
    s_R = _as_scores(scores, "scores")
    if s_R.shape != (num_clusters,):
        raise ValueError(
            f"scores must have shape ({num_clusters},) (one per centroid), got {s_R.shape}."
        )
    if kappa is not None and not (math.isfinite(float(kappa)) and float(kappa) >= 1.0):
        raise ValueError(f"kappa must be a number >= 1 or None (whole cluster), got {kappa!r}.")
    chunk_size = positive_int(chunk_size, "chunk_size")
    int_in_range(budget, "budget", low=0, high=num_pool, bound="the pool size")
    return c_RxD, s_R, chunk_size


def candidates_per_cluster(n_R, sizes_R, *, kappa: float | None) -> np.ndarray:
    """`m_r = min(|cluster r|, ceil(κ·n_r))` where `n_r > 0` (the whole cluster if κ is None)."""
    n_R, sizes_R = np.asarray(n_R, np.int64), np.asarray(sizes_R, np.int64)
    if kappa is None:
        return np.where(n_R > 0, sizes_R, 0)
    m_R = np.array([num_candidates(kappa, int(n)) for n in n_R], np.int64)
    return np.where(n_R > 0, np.minimum(sizes_R, m_R), 0)


def pick_from_candidates(x_NxD, candidates, centroids_RxD, s_R, w_R, n_R, *, metric, mesh=None):
    """ECOS's last step: thin each cluster's candidates to `n_r` by k-center, then order.

    Args:
      x_NxD: the rows `candidates` index into.
      candidates: `{r: row indices}` for every cluster with `n_r > 0`, nearest first.
      centroids_RxD, s_R, w_R, n_R: the centroids, scores, filtered weights and allocation.
      metric: the k-center's metric.
      mesh: if given, the clusters' k-center runs split over its devices
        (`grouped_k_center`'s `mesh`).

    Returns:
      int64 [sum(n_R)] row indices into `x_NxD`, grouped by cluster in decreasing weight
      order, in greedy pick order within a cluster.
    """
    picked = dict(candidates)
    # Clusters whose candidates k-center thins to n_r; where every candidate is taken,
    # k-center would only reorder them.
    thinned = [r for r, rows in candidates.items() if n_R[r] < len(rows)]
    if thinned:
        c_host = np.asarray(centroids_RxD)
        chosen = grouped_k_center(
            x_NxD,
            [candidates[r] for r in thinned],
            c_host[thinned],
            [int(n_R[r]) for r in thinned],
            metric=metric,
            mesh=mesh,
        )
        picked.update(zip(thinned, chosen, strict=True))
    num_clusters = len(s_R)
    cluster_order = np.lexsort((np.arange(num_clusters), -s_R, -w_R))
    out = [picked[int(r)] for r in cluster_order if n_R[r] > 0]
    out = np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)
    budget = int(np.sum(n_R))
    assert out.shape == (budget,) and np.unique(out).size == budget
    return out
