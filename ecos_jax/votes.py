"""The client's votes for the cloud's centroids, counted on the device and re-checked exactly.

A sample votes for centroids by one of three rules (`METHODS`; see `ecos_jax.coverage`).
`fast_vote_counts` is the jitted per-shard kernel: it counts the votes float32 settles
beyond a certified rounding margin (`ecos_jax.canonical.certified_votes`) and flags the
other rows, which `resolve_votes` decides exactly on the host. Together they give the
canonical vote of every sample, a function of that sample and the centroids alone.

Distances are computed in row chunks (`ecos_jax.distances.map_row_chunks`), so at most one
`[chunk_size, R]` block of the distance matrix exists at a time. The voting rules are those
of Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3; `ecos_jax.coverage` has the
references.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import canonical
from ecos_jax._validate import as_int, positive_int
from ecos_jax.distances import check_metric, map_row_chunks

__all__ = [
    "METHODS",
    "FastCounts",
    "fast_vote_counts",
    "resolve_votes",
    "votes_per_sample",
]

Method = Literal["voronoi", "top_m", "radius"]
METHODS: tuple[str, ...] = ("voronoi", "top_m", "radius")


class FastCounts(NamedTuple):
    """What the device decided: the votes of the rows float32 settled, and the others."""

    counts: jax.Array  # [R] int32, votes of the unmasked rows that are not ambiguous
    ambiguous: jax.Array  # [M] bool, unmasked rows to re-decide with `resolve_votes`


def votes_per_sample(method: str, *, m: Any = None, max_votes: Any = None) -> int:
    """How many counts one sample of `method` changes (each by 1): 1, `m` or `max_votes`.

    Example:
      >>> votes_per_sample("top_m", m=4)
      4
    """
    _check_method(method)
    if method == "voronoi":
        if m is not None or max_votes is not None:
            raise ValueError("method='voronoi' takes neither m nor max_votes.")
        return 1
    if method == "top_m":
        if max_votes is not None:
            raise ValueError("max_votes applies to method='radius' only, not 'top_m'.")
        if m is None:
            raise ValueError("method='top_m' needs m (votes per sample), e.g. m=3.")
        return _check_count_arg(m, "m")
    if m is not None:
        raise ValueError("m applies to method='top_m' only, not 'radius'.")
    if max_votes is None:
        raise ValueError("method='radius' needs max_votes (a cap on votes per sample).")
    return _check_count_arg(max_votes, "max_votes")


@functools.partial(jax.jit, static_argnames=("method", "m", "max_votes", "chunk_size", "metric"))
def fast_vote_counts(
    features_MxD: jax.Array,
    centroids_RxD: jax.Array,
    mask_M: jax.Array | None = None,
    *,
    method: Method = "voronoi",
    m: int | None = None,
    radii: jax.Array | float | None = None,
    max_votes: int | None = None,
    chunk_size: int = 4096,
    metric: str = "l2",
) -> FastCounts:
    """Jitted float32 voting with a certified margin: the per-shard kernel.

    Counts the votes of every unmasked row whose decision clears its rounding margin
    (`ecos_jax.canonical.certified_votes`) and flags the others; `resolve_votes` decides
    the flagged rows on the host. `coverage_scores` does both; sharded code calls this
    inside `shard_map` on its block of rows (padding rows masked out) and `psum`s the
    counts. Only static properties are checked here (ranks, shapes, `m`, `max_votes`).

    Args:
      features_MxD: client features, one row per sample.
      centroids_RxD: cloud centroids.
      mask_M: optional [M] bool; rows where it is False cast no vote and are never flagged.
      method: 'voronoi', 'top_m' or 'radius'.
      m: votes per sample for 'top_m' (1 <= m <= R).
      radii: 'radius' only: scalar or [R] distance thresholds, public (never derived
        from the private data).
      max_votes: 'radius' only: cap on votes per sample (1 <= max_votes <= R); a sample
        keeps its `max_votes` nearest qualifying centroids.
      chunk_size: rows per distance block.
      metric: 'l2' (Euclidean) or 'cosine' (1 - cos).

    Returns:
      `FastCounts(counts [R] int32, ambiguous [M] bool)`.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    _check_shapes(features_MxD, centroids_RxD, mask_M)
    num_centroids = centroids_RxD.shape[0]
    num_votes = _check_static(
        method, m=m, max_votes=max_votes, radii=radii, chunk_size=chunk_size, r=num_centroids
    )
    check_metric(metric)
    num_rows = features_MxD.shape[0]
    if num_rows == 0:
        return FastCounts(jnp.zeros((num_centroids,), jnp.int32), jnp.zeros((0,), bool))
    x_MxD = jnp.asarray(features_MxD, jnp.float32)
    v_RxD = jnp.asarray(centroids_RxD, jnp.float32)
    thresholds_R = _thresholds(radii, num_centroids, metric) if method == "radius" else None

    def row_votes(x_CxD: jax.Array):
        d_CxR, err_C = canonical.fast_distances(x_CxD, v_RxD, metric=metric)
        return canonical.certified_votes(
            d_CxR, err_C, num_votes=num_votes, thresholds_R=thresholds_R
        )

    idx_MxV, ok_MxV, ambiguous_M = map_row_chunks(row_votes, x_MxD, chunk_size=chunk_size)
    if mask_M is not None:
        ambiguous_M = ambiguous_M & jnp.asarray(mask_M, bool)
        ok_MxV = ok_MxV & jnp.asarray(mask_M, bool)[:, None]
    ok_MxV = ok_MxV & ~ambiguous_M[:, None]
    counts_R = jax.ops.segment_sum(
        ok_MxV.astype(jnp.int32).reshape(-1), idx_MxV.reshape(-1), num_segments=num_centroids
    )
    return FastCounts(counts_R, ambiguous_M)


def resolve_votes(
    features_FxD: Any,
    centroids_RxD: Any,
    *,
    method: str = "voronoi",
    m: int | None = None,
    radii: Any = None,
    max_votes: int | None = None,
    metric: str = "l2",
) -> np.ndarray:
    """The canonical vote counts [R] int64 of rows `fast_vote_counts` left undecided (host).

    Exact where floating point cannot decide (`ecos_jax.canonical.resolve_rows`); the
    result is what the fast path gives for rows it can decide.
    """
    x_FxD = np.asarray(features_FxD, np.float32)
    v_RxD = np.asarray(centroids_RxD, np.float32)
    num_centroids = v_RxD.shape[0]
    num_votes = votes_per_sample(method, m=m, max_votes=max_votes)
    thresholds_R = None
    if method == "radius":
        r_R = np.broadcast_to(np.asarray(radii, np.float32).astype(np.float64), (num_centroids,))
        thresholds_R = r_R * r_R if metric == "l2" else r_R
    counts_R = np.zeros(num_centroids, np.int64)
    for voted in canonical.resolve_rows(
        x_FxD, v_RxD, num_votes=num_votes, metric=metric, thresholds_R=thresholds_R
    ):
        counts_R[voted] += 1
    return counts_R


def _thresholds(radii: Any, num_centroids: int, metric: str) -> jax.Array:
    """Per-centroid float32 thresholds in distance units: squared radii for 'l2'."""
    r_R = jnp.broadcast_to(jnp.asarray(radii, jnp.float32), (num_centroids,))
    return r_R * r_R if metric == "l2" else r_R


def _check_method(method: str) -> None:
    """Raises for an unknown coverage method."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")


def _check_shapes(features_MxD: Any, centroids_RxD: Any, mask_M: Any) -> None:
    """Checks ranks and matching sizes of features, centroids and mask (no row counts shown)."""
    if jnp.ndim(features_MxD) != 2:
        raise ValueError(
            f"features_MxD must be a 2-D array [M, D], got a {jnp.ndim(features_MxD)}-D array."
        )
    if jnp.ndim(centroids_RxD) != 2:
        raise ValueError(
            f"centroids_RxD must be a 2-D array [R, D], got shape {jnp.shape(centroids_RxD)}."
        )
    (num_rows, d), (r, d_v) = jnp.shape(features_MxD), jnp.shape(centroids_RxD)
    if d != d_v:
        raise ValueError(
            f"features_MxD has {d} feature dims but centroids_RxD has {d_v}; both must use "
            "the same feature extractor."
        )
    if r < 1:
        raise ValueError("centroids_RxD must hold at least one centroid (R >= 1).")
    if mask_M is not None and jnp.shape(mask_M) != (num_rows,):
        raise ValueError(
            "mask must be a 1-D bool array with one entry per row of features_MxD; its "
            "shape differs."
        )


def _check_count_arg(value: Any, name: str, num_centroids: int | None = None) -> int:
    """Checks an integer vote count in [1, R] (R when known)."""
    value = as_int(value, name)
    if value < 1 or (num_centroids is not None and value > num_centroids):
        upper = "R" if num_centroids is None else f"R={num_centroids}"
        raise ValueError(f"{name} must satisfy 1 <= {name} <= {upper}, got {value}.")
    return value


def _check_static(
    method: str,
    *,
    m: int | None,
    max_votes: int | None,
    radii: Any,
    chunk_size: int,
    r: int,
) -> int:
    """Checks the arguments known at trace time; returns the votes per sample."""
    num_votes = votes_per_sample(method, m=m, max_votes=max_votes)
    positive_int(chunk_size, "chunk_size")
    if method != "radius" and radii is not None:
        raise ValueError(f"radii apply to method='radius' only, not {method!r}.")
    _check_count_arg(num_votes, "m" if method == "top_m" else "max_votes", r)
    if method == "radius":
        if radii is None:
            raise ValueError("method='radius' needs radii (public distance thresholds).")
        if jnp.shape(radii) not in ((), (r,)):
            raise ValueError(
                f"radii must be a scalar or have shape [R]=({r},), got {jnp.shape(radii)}."
            )
    return num_votes


def _check_radii_values(radii: Any) -> None:
    """Checks that concrete radii are finite and non-negative (they are public)."""
    if isinstance(radii, jax.core.Tracer):
        return
    radii_arr = np.asarray(radii, np.float64)
    if not np.all(np.isfinite(radii_arr)) or np.any(radii_arr < 0):
        raise ValueError(f"radii must be finite and >= 0, got {radii_arr}.")
