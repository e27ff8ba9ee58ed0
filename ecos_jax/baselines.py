"""Baselines that every table carries: uniform random, greedy k-center over the whole pool,
the non-private oracle (it sees the client features) and the full pool.

None of them uses the client's scores: Random, K-Center and the full pool cost ε = 0 and
send nothing; the oracle costs ε = ∞ (the client would upload its features).

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 4.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax._validate import as_features, check_key, int_in_range, nonnegative_int
from ecos_jax.distances import Metric, check_metric, map_row_chunks, pairwise_distance
from ecos_jax.k_center import bucket_size, greedy_k_center
from ecos_jax.sampling import num_candidates

__all__ = ["full_pool_select", "k_center_select", "oracle_select", "random_select"]


def random_select(key: jax.Array, num_pool: int, *, budget: int) -> np.ndarray:
    """Uniform sample of `budget` distinct indices from `range(num_pool)` (ε = 0).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 baselines ("Random").
    """
    check_key(key, "key")
    nonnegative_int(num_pool, "num_pool")
    int_in_range(budget, "budget", low=0, high=int(num_pool), bound="the pool size")
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    idx = jax.random.choice(key, int(num_pool), (int(budget),), replace=False)
    return np.asarray(idx).astype(np.int64)


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
    x_NxD = as_features(pool_features, "pool_features")
    int_in_range(budget, "budget", low=0, high=x_NxD.shape[0], bound="the pool size")
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    num_pool = x_NxD.shape[0]
    first = int(jax.random.randint(key, (), 0, num_pool))
    if budget == 1:
        return np.array([first], dtype=np.int64)
    # The first pick is the seed point: it counts as chosen and is masked out.
    rest = greedy_k_center(
        x_NxD,
        jnp.arange(num_pool) != first,
        num_select=int(budget) - 1,
        seed_point_D=x_NxD[first],
        metric=metric,
    )
    return np.concatenate([[first], np.asarray(rest.indices)]).astype(np.int64)


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
    x_NxD = as_features(pool_features, "pool_features")
    y_MxD = as_features(client_features, "client_features")
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
    int_in_range(budget, "budget", low=0, high=x_NxD.shape[0], bound="the pool size")
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    num_pool, num_client = x_NxD.shape[0], y_MxD.shape[0]
    m = min(num_pool, num_candidates(kappa, budget))
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


def _padded_rows(x_NxD: jax.Array, rows: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Rows of `x` gathered on device, padded to `bucket_size(len(rows))`, and their mask."""
    size = bucket_size(len(rows))
    idx = np.zeros(size, dtype=np.int64)
    idx[: len(rows)] = rows
    return x_NxD[jnp.asarray(idx)], jnp.asarray(np.arange(size) < len(rows))


def full_pool_select(num_pool: int) -> np.ndarray:
    """Every pool index (the "train on all of D_q" baseline, ε = 0).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 baselines ("Full pool").
    """
    nonnegative_int(num_pool, "num_pool")
    return np.arange(int(num_pool), dtype=np.int64)
