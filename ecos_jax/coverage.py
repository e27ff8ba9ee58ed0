"""Client-side coverage scores: how many private samples fall near each cloud centroid.

The client receives the cloud's centroids `v_1..v_R`, lets each of its samples vote for
centroids, and (after `ecos_jax.privacy.privatize`) sends the `R` noisy vote counts back.
Three voting rules exist; each bounds what one sample can add to the vote vector, which is
the L2 sensitivity `Δ` the Gaussian noise is scaled by:

| method    | one sample votes for                                   | `Δ`             |
|-----------|--------------------------------------------------------|-----------------|
| `voronoi` | its nearest centroid (the ECOS default)                 | 1               |
| `top_m`   | its `m` nearest centroids                               | `√m`            |
| `radius`  | centroids within `radii[r]`, at most `max_votes` of them | `√max_votes`    |

Distances are computed in row chunks (`ecos_jax.distances.map_row_chunks`), so at most one
`[chunk_size, R]` block of the distance matrix exists at a time.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 3.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ecos_jax.distances import check_metric, map_row_chunks, pairwise_distance, sq_euclidean

Method = Literal["voronoi", "top_m", "radius"]
METHODS: tuple[str, ...] = ("voronoi", "top_m", "radius")


class CoverageScores(NamedTuple):
    """Vote counts per centroid and their L2 sensitivity.

    Attributes:
      counts: [R] float32, votes received by each centroid.
      sensitivity: python float, the largest L2 change of `counts` when one client sample
        is added or removed (1 for Voronoi, `√m` for top-m, `√max_votes` for radius).
    """

    counts: jax.Array
    sensitivity: float


def coverage_sensitivity(
    method: str, *, m: int | None = None, max_votes: int | None = None
) -> float:
    """L2 sensitivity of the counts of `method` under adding or removing one sample.

    Example:
      >>> coverage_sensitivity("top_m", m=4)
      2.0

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    _check_method(method)
    if method == "voronoi":
        return 1.0
    if method == "top_m":
        if m is None:
            raise ValueError("method='top_m' needs m (votes per sample), e.g. m=3.")
        return math.sqrt(m)
    if max_votes is None:
        raise ValueError("method='radius' needs max_votes (a cap on votes per sample).")
    return math.sqrt(max_votes)


@functools.partial(jax.jit, static_argnames=("method", "m", "max_votes", "chunk_size", "metric"))
def coverage_counts(
    features_NxD: jax.Array,
    centroids_RxD: jax.Array,
    mask_N: jax.Array | None = None,
    *,
    method: Method = "voronoi",
    m: int | None = None,
    radii: jax.Array | float | None = None,
    max_votes: int | None = None,
    chunk_size: int = 4096,
    metric: str = "l2",
) -> jax.Array:
    """Jitted vote counts [R] float32, without host-side value checks.

    This is the stable per-shard kernel: `ecos_jax` sharded code calls it inside
    `shard_map` on its block of rows (padding rows masked out) and `psum`s the results.
    Only static properties (ranks, shapes, `m`, `max_votes`, `method`, `metric`) are
    checked here; use `coverage_scores` on the host for full validation (NaN/inf, radii
    values).

    Args:
      features_NxD: client features, one row per sample.
      centroids_RxD: cloud centroids.
      mask_N: optional [N] bool; rows where it is False cast no vote.
      method: 'voronoi', 'top_m' or 'radius'.
      m: votes per sample for 'top_m' (1 <= m <= R).
      radii: 'radius' only: scalar or [R] distance thresholds, public (never derived
        from the private data).
      max_votes: 'radius' only: cap on votes per sample (1 <= max_votes <= R); a sample
        keeps its `max_votes` nearest qualifying centroids.
      chunk_size: rows per distance block.
      metric: 'l2' (Euclidean) or 'cosine' (1 - cos).

    Returns:
      [R] float32 vote counts.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    _check_shapes(features_NxD, centroids_RxD, mask_N)
    num_centroids = centroids_RxD.shape[0]
    _check_static(
        method,
        m=m,
        max_votes=max_votes,
        radii=radii,
        chunk_size=chunk_size,
        num_centroids=num_centroids,
    )
    check_metric(metric)
    if features_NxD.shape[0] == 0:
        return jnp.zeros((num_centroids,), jnp.float32)

    x_NxD = jnp.asarray(features_NxD, jnp.float32)
    v_RxD = jnp.asarray(centroids_RxD, jnp.float32)
    radii_R = None
    if method == "radius":
        radii_R = jnp.broadcast_to(jnp.asarray(radii, jnp.float32), (num_centroids,))

    def row_votes(x_CxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _votes(x_CxD, v_RxD, radii_R, method=method, m=m, max_votes=max_votes, metric=metric)

    idx_NxV, ok_NxV = map_row_chunks(row_votes, x_NxD, chunk_size=chunk_size)
    if mask_N is not None:
        ok_NxV = ok_NxV & jnp.asarray(mask_N, bool)[:, None]
    counts_R = jax.ops.segment_sum(
        ok_NxV.astype(jnp.int32).reshape(-1),
        idx_NxV.reshape(-1),
        num_segments=num_centroids,
    )
    return counts_R.astype(jnp.float32)


def voronoi_scores(
    features_NxD: Any,
    centroids_RxD: Any,
    *,
    mask: Any = None,
    chunk_size: int = 4096,
    metric: str = "l2",
) -> CoverageScores:
    """Voronoi counts: each sample votes for its nearest centroid (sensitivity 1).

    `s_r = #{x : r = argmin_j dist(x, v_j)}`; ties go to the lowest centroid index.

    Args:
      features_NxD: [N, D] client features (finite).
      centroids_RxD: [R, D] centroids received from the cloud (finite).
      mask: optional [N] bool; rows where it is False cast no vote.
      chunk_size: rows per distance block (memory, not results, depends on it).
      metric: 'l2' or 'cosine'.

    Returns:
      CoverageScores with [R] float32 counts summing to the number of unmasked rows.

    Example:
      >>> import numpy as np
      >>> x = np.array([[0.0], [0.1], [5.0]], np.float32)
      >>> v = np.array([[0.0], [4.0]], np.float32)
      >>> voronoi_scores(x, v).counts.tolist()
      [2.0, 1.0]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3, Eq. for the coverage score.
    """
    return _scores(
        features_NxD, centroids_RxD, mask, method="voronoi", chunk_size=chunk_size, metric=metric
    )


def top_m_scores(
    features_NxD: Any,
    centroids_RxD: Any,
    *,
    m: int,
    mask: Any = None,
    chunk_size: int = 4096,
    metric: str = "l2",
) -> CoverageScores:
    """Top-m votes: each sample votes once for each of its `m` nearest centroids.

    One sample changes `m` entries by 1, so the L2 sensitivity is `√m`.

    Args:
      features_NxD: [N, D] client features (finite).
      centroids_RxD: [R, D] centroids (finite).
      m: votes per sample, 1 <= m <= R.
      mask: optional [N] bool; rows where it is False cast no vote.
      chunk_size: rows per distance block.
      metric: 'l2' or 'cosine'.

    Returns:
      CoverageScores with counts summing to `m` times the number of unmasked rows and
      sensitivity `√m`.

    Example:
      >>> import numpy as np
      >>> x = np.array([[0.0], [5.0]], np.float32)
      >>> v = np.array([[0.0], [1.0], [4.0]], np.float32)
      >>> s = top_m_scores(x, v, m=2)
      >>> s.counts.tolist(), s.sensitivity
      ([1.0, 2.0, 1.0], 1.4142135623730951)

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    return _scores(
        features_NxD, centroids_RxD, mask, method="top_m", m=m, chunk_size=chunk_size, metric=metric
    )


def radius_scores(
    features_NxD: Any,
    centroids_RxD: Any,
    *,
    radii: Any,
    max_votes: int,
    mask: Any = None,
    chunk_size: int = 4096,
    metric: str = "l2",
) -> CoverageScores:
    """Radius counts: a sample votes for every centroid `r` with `dist <= radii[r]`, capped.

    Each sample keeps only its `max_votes` nearest qualifying centroids, so one sample
    changes at most `max_votes` entries by 1 and the sensitivity `√max_votes` holds.
    The radii must be public (chosen by the caller, e.g. from the cloud's own data):
    deriving them from the private features would leak.

    Args:
      features_NxD: [N, D] client features (finite).
      centroids_RxD: [R, D] centroids (finite).
      radii: scalar or [R] thresholds, finite and >= 0, in the units of `metric`
        (Euclidean distance for 'l2', `1 - cos` for 'cosine').
      max_votes: cap on votes per sample, 1 <= max_votes <= R.
      mask: optional [N] bool; rows where it is False cast no vote.
      chunk_size: rows per distance block.
      metric: 'l2' or 'cosine'.

    Returns:
      CoverageScores with sensitivity `√max_votes`.

    Example:
      >>> import numpy as np
      >>> x = np.array([[0.0], [0.5]], np.float32)
      >>> v = np.array([[0.0], [1.0], [9.0]], np.float32)
      >>> radius_scores(x, v, radii=1.0, max_votes=1).counts.tolist()
      [2.0, 0.0, 0.0]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    return _scores(
        features_NxD,
        centroids_RxD,
        mask,
        method="radius",
        radii=radii,
        max_votes=max_votes,
        chunk_size=chunk_size,
        metric=metric,
    )


def coverage_scores(
    features_NxD: Any, centroids_RxD: Any, *, method: str = "voronoi", **kwargs: Any
) -> CoverageScores:
    """Dispatches to `voronoi_scores`, `top_m_scores` or `radius_scores` by `method`.

    Example:
      >>> import numpy as np
      >>> x = np.zeros((3, 2), np.float32)
      >>> coverage_scores(x, np.eye(2, dtype=np.float32), method="top_m", m=2).counts.tolist()
      [3.0, 3.0]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    _check_method(method)
    fn = {"voronoi": voronoi_scores, "top_m": top_m_scores, "radius": radius_scores}[method]
    return fn(features_NxD, centroids_RxD, **kwargs)


def _votes(
    x_CxD: jax.Array,
    v_RxD: jax.Array,
    radii_R: jax.Array | None,
    *,
    method: str,
    m: int | None,
    max_votes: int | None,
    metric: str,
) -> tuple[jax.Array, jax.Array]:
    """Per-row voted centroid indices [C, V] int32 and which of them count [C, V] bool."""
    if method == "voronoi":
        # Squared L2 has the same argmin as L2 and skips the sqrt.
        if metric == "l2":
            d_CxR = sq_euclidean(x_CxD, v_RxD)
        else:
            d_CxR = pairwise_distance(x_CxD, v_RxD, metric=metric)
        idx_Cx1 = jnp.argmin(d_CxR, axis=1).astype(jnp.int32)[:, None]
        return idx_Cx1, jnp.ones(idx_Cx1.shape, bool)
    d_CxR = pairwise_distance(x_CxD, v_RxD, metric=metric)
    if method == "top_m":
        _, idx_CxM = lax.top_k(-d_CxR, m)
        return idx_CxM.astype(jnp.int32), jnp.ones(idx_CxM.shape, bool)
    # Radius: non-qualifying centroids get +inf so that top_k ranks them last, and the
    # votes that land on them are dropped.
    qualifies_CxR = d_CxR <= radii_R[None, :]
    key_CxR = jnp.where(qualifies_CxR, d_CxR, jnp.inf)
    neg_key_CxV, idx_CxV = lax.top_k(-key_CxR, max_votes)
    return idx_CxV.astype(jnp.int32), jnp.isfinite(neg_key_CxV)


def _scores(
    features_NxD: Any,
    centroids_RxD: Any,
    mask: Any,
    *,
    method: str,
    m: int | None = None,
    radii: Any = None,
    max_votes: int | None = None,
    chunk_size: int,
    metric: str,
) -> CoverageScores:
    """Validates inputs on the host, then counts with `coverage_counts`."""
    features_NxD = _as_real_array(features_NxD, "features_NxD")
    centroids_RxD = _as_real_array(centroids_RxD, "centroids_RxD")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(f"mask must be a bool array of shape [N], got dtype {mask.dtype}.")
    _check_shapes(features_NxD, centroids_RxD, mask)
    _check_static(
        method,
        m=m,
        max_votes=max_votes,
        radii=radii,
        chunk_size=chunk_size,
        num_centroids=centroids_RxD.shape[0],
    )
    check_metric(metric)
    _check_finite(features_NxD, "features_NxD")
    _check_finite(centroids_RxD, "centroids_RxD")
    if method == "radius":
        _check_radii_values(radii)
    counts_R = coverage_counts(
        features_NxD,
        centroids_RxD,
        mask,
        method=method,
        m=m,
        radii=radii,
        max_votes=max_votes,
        chunk_size=chunk_size,
        metric=metric,
    )
    return CoverageScores(counts_R, coverage_sensitivity(method, m=m, max_votes=max_votes))


def _check_method(method: str) -> None:
    """Raises for an unknown coverage method."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")


def _as_real_array(x: Any, name: str) -> jax.Array:
    """Converts to a JAX array and rejects non-numeric, bool and complex dtypes."""
    arr = x if isinstance(x, jax.Array) else jnp.asarray(np.asarray(x))
    if not (jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    return arr


def _check_shapes(features_NxD: Any, centroids_RxD: Any, mask_N: Any) -> None:
    """Checks ranks and matching sizes of features, centroids and mask."""
    if jnp.ndim(features_NxD) != 2:
        raise ValueError(
            f"features_NxD must be a 2-D array [N, D], got shape {jnp.shape(features_NxD)}."
        )
    if jnp.ndim(centroids_RxD) != 2:
        raise ValueError(
            f"centroids_RxD must be a 2-D array [R, D], got shape {jnp.shape(centroids_RxD)}."
        )
    (n, d), (r, d_v) = jnp.shape(features_NxD), jnp.shape(centroids_RxD)
    if d != d_v:
        raise ValueError(
            f"features_NxD has {d} feature dims but centroids_RxD has {d_v}; both must use "
            "the same feature extractor."
        )
    if r < 1:
        raise ValueError("centroids_RxD must hold at least one centroid (R >= 1).")
    if mask_N is not None and jnp.shape(mask_N) != (n,):
        raise ValueError(f"mask must have shape [N]=({n},), got {jnp.shape(mask_N)}.")


def _check_count_arg(value: Any, name: str, num_centroids: int) -> None:
    """Checks an integer vote count in [1, R]."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}.")
    if not 1 <= value <= num_centroids:
        raise ValueError(f"{name} must satisfy 1 <= {name} <= R={num_centroids}, got {value}.")


def _check_static(
    method: str,
    *,
    m: int | None,
    max_votes: int | None,
    radii: Any,
    chunk_size: int,
    num_centroids: int,
) -> None:
    """Checks the arguments known at trace time: method, m, max_votes, radii shape."""
    _check_method(method)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    if method != "top_m" and m is not None:
        raise ValueError(f"m applies to method='top_m' only, got m={m} for {method!r}.")
    if method != "radius" and (max_votes is not None or radii is not None):
        raise ValueError(f"radii and max_votes apply to method='radius' only, not {method!r}.")
    if method == "top_m":
        if m is None:
            raise ValueError("method='top_m' needs m (votes per sample), e.g. m=3.")
        _check_count_arg(m, "m", num_centroids)
    if method == "radius":
        if radii is None:
            raise ValueError("method='radius' needs radii (public distance thresholds).")
        if max_votes is None:
            raise ValueError("method='radius' needs max_votes (a cap on votes per sample).")
        _check_count_arg(max_votes, "max_votes", num_centroids)
        if jnp.shape(radii) not in ((), (num_centroids,)):
            raise ValueError(
                f"radii must be a scalar or have shape [R]=({num_centroids},), "
                f"got {jnp.shape(radii)}."
            )


def _check_finite(x: jax.Array, name: str) -> None:
    """Raises if a concrete array holds NaN or inf (skipped for traced values)."""
    if isinstance(x, jax.core.Tracer):
        return
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf; clean or drop those rows first.")


def _check_radii_values(radii: Any) -> None:
    """Checks that concrete radii are finite and non-negative."""
    if isinstance(radii, jax.core.Tracer):
        return
    radii_arr = np.asarray(radii, np.float64)
    if not np.all(np.isfinite(radii_arr)) or np.any(radii_arr < 0):
        raise ValueError(f"radii must be finite and >= 0, got {radii_arr}.")
