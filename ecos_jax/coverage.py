"""Client-side coverage scores: how many private samples fall near each cloud centroid.

The client receives the cloud's centroids `v_1..v_R`, lets each of its samples vote for
centroids, and (after `ecos_jax.privacy.privatize`) sends the `R` noisy vote counts back.
Three voting rules exist; each bounds what one sample can add to the vote vector, which is
the L2 sensitivity `Δ` the noise is scaled by:

| method    | one sample votes for                                   | `Δ`             |
|-----------|--------------------------------------------------------|-----------------|
| `voronoi` | its nearest centroid (the ECOS default)                 | 1               |
| `top_m`   | its `m` nearest centroids                               | `√m`            |
| `radius`  | centroids within `radii[r]`, at most `max_votes` of them | `√max_votes`    |

Each sample changes at most `votes_per_sample` counts (1, `m`, `max_votes`) by 1, so
`Δ = √votes_per_sample`. That bound assumes a sample's votes do not depend on the other
samples. They do not here, also in floating point: every vote is the canonical choice of
`ecos_jax.canonical` (fast float32 distances with a certified rounding margin, the
undecided rows re-checked exactly on the host, ties to the lowest centroid index), so it
is a function of the sample and the centroids alone, whatever the batch, the chunk size
or the device. Counts are integers: int32 on the device (refused above 2³¹ votes), int64
from the host on.

Distances are computed in row chunks (`ecos_jax.distances.map_row_chunks`), so at most one
`[chunk_size, R]` block of the distance matrix exists at a time.

Error messages about the client's features name the argument, never a value or the
number of rows. Invalid inputs (NaN, wrong rank or dtype) raise: such a dataset is outside
the data domain the guarantee is stated for; any dataset inside it, of any size, answers.

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

from ecos_jax import canonical
from ecos_jax._validate import as_real_array
from ecos_jax.distances import check_metric, map_row_chunks

__all__ = [
    "METHODS",
    "CoverageScores",
    "FastCounts",
    "coverage_scores",
    "coverage_sensitivity",
    "fast_vote_counts",
    "radius_scores",
    "resolve_votes",
    "top_m_scores",
    "voronoi_scores",
    "votes_per_sample",
]

Method = Literal["voronoi", "top_m", "radius"]
METHODS: tuple[str, ...] = ("voronoi", "top_m", "radius")

#: Vote counts are int32 on the device: a client casting this many votes is refused.
MAX_TOTAL_VOTES = 2**31 - 1

#: Largest feature magnitude accepted: squared distances must stay finite in float32.
MAX_ABS_FEATURE = 1e15


class CoverageScores(NamedTuple):
    """Vote counts per centroid and how many votes one sample casts.

    Attributes:
      counts: [R] int64, votes received by each centroid.
      votes_per_sample: how many counts one added or removed sample changes, each by at
        most 1 (1 Voronoi, `m` top-m, `max_votes` radius).
    """

    counts: np.ndarray
    votes_per_sample: int

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity of `counts` under adding or removing one sample: `√votes_per_sample`."""
        return math.sqrt(self.votes_per_sample)


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


def coverage_sensitivity(method: str, *, m: Any = None, max_votes: Any = None) -> float:
    """L2 sensitivity of the counts of `method` under adding or removing one sample.

    Example:
      >>> coverage_sensitivity("top_m", m=4)
      2.0

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    return math.sqrt(votes_per_sample(method, m=m, max_votes=max_votes))


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


def voronoi_scores(
    features_MxD: Any,
    centroids_RxD: Any,
    *,
    mask: Any = None,
    chunk_size: int = 4096,
    metric: str = "l2",
) -> CoverageScores:
    """Voronoi counts: each sample votes for its nearest centroid (sensitivity 1).

    `s_r = #{x : r = argmin_j dist(x, v_j)}`; ties go to the lowest centroid index, and
    a sample's vote does not depend on the other samples (see the module docstring).

    Args:
      features_MxD: [M, D] client features (finite).
      centroids_RxD: [R, D] centroids received from the cloud (finite).
      mask: optional [M] bool; rows where it is False cast no vote.
      chunk_size: rows per distance block (memory, not results, depends on it).
      metric: 'l2' or 'cosine'.

    Returns:
      CoverageScores with [R] int64 counts summing to the number of unmasked rows.

    Example:
      >>> import numpy as np
      >>> x = np.array([[0.0], [0.1], [5.0], [2.0]], np.float32)
      >>> v = np.array([[0.0], [4.0]], np.float32)
      >>> voronoi_scores(x, v).counts.tolist()  # 2.0 is a tie: the lower index wins
      [3, 1]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3, Eq. for the coverage score.
    """
    return _scores(
        features_MxD, centroids_RxD, mask, method="voronoi", chunk_size=chunk_size, metric=metric
    )


def top_m_scores(
    features_MxD: Any,
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
      features_MxD: [M, D] client features (finite).
      centroids_RxD: [R, D] centroids (finite).
      m: votes per sample, 1 <= m <= R.
      mask: optional [M] bool; rows where it is False cast no vote.
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
      ([1, 2, 1], 1.4142135623730951)

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    return _scores(
        features_MxD, centroids_RxD, mask, method="top_m", m=m, chunk_size=chunk_size, metric=metric
    )


def radius_scores(
    features_MxD: Any,
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
      features_MxD: [M, D] client features (finite).
      centroids_RxD: [R, D] centroids (finite).
      radii: scalar or [R] thresholds, finite and >= 0, in the units of `metric`
        (Euclidean distance for 'l2', `1 - cos` for 'cosine'); used as float32.
      max_votes: cap on votes per sample, 1 <= max_votes <= R.
      mask: optional [M] bool; rows where it is False cast no vote.
      chunk_size: rows per distance block.
      metric: 'l2' or 'cosine'.

    Returns:
      CoverageScores with sensitivity `√max_votes`.

    Example:
      >>> import numpy as np
      >>> x = np.array([[0.0], [0.5]], np.float32)
      >>> v = np.array([[0.0], [1.0], [9.0]], np.float32)
      >>> radius_scores(x, v, radii=1.0, max_votes=1).counts.tolist()
      [2, 0, 0]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    return _scores(
        features_MxD,
        centroids_RxD,
        mask,
        method="radius",
        radii=radii,
        max_votes=max_votes,
        chunk_size=chunk_size,
        metric=metric,
    )


def coverage_scores(
    features_MxD: Any, centroids_RxD: Any, *, method: str = "voronoi", **kwargs: Any
) -> CoverageScores:
    """Dispatches to `voronoi_scores`, `top_m_scores` or `radius_scores` by `method`.

    Example:
      >>> import numpy as np
      >>> x = np.zeros((3, 2), np.float32)
      >>> coverage_scores(x, np.eye(2, dtype=np.float32), method="top_m", m=2).counts.tolist()
      [3, 3]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    _check_method(method)
    fn = {"voronoi": voronoi_scores, "top_m": top_m_scores, "radius": radius_scores}[method]
    return fn(features_MxD, centroids_RxD, **kwargs)


def check_client_features(features: Any, name: str = "features_MxD") -> jax.Array:
    """The client's features as a finite float32-safe [M, D] array; errors name no value."""
    x = as_real_array(features, name, private=True)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [M, D], got a {x.ndim}-D array.")
    if x.shape[0] and not bool(_in_range(x)):
        raise ValueError(
            f"{name} contains NaN, inf or entries beyond ±{MAX_ABS_FEATURE:g}; clean or "
            "rescale those rows first."
        )
    return x


def _scores(
    features_MxD: Any,
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
    """Validates on the host, counts on the device, re-decides the ambiguous rows."""
    x_MxD = check_client_features(features_MxD)
    v_RxD = as_real_array(centroids_RxD, "centroids_RxD")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(f"mask must be a bool array of shape [M], got dtype {mask.dtype}.")
    _check_shapes(x_MxD, v_RxD, mask)
    num_votes = _check_static(
        method, m=m, max_votes=max_votes, radii=radii, chunk_size=chunk_size, r=v_RxD.shape[0]
    )
    check_metric(metric)
    if not bool(_in_range(v_RxD)):
        raise ValueError(f"centroids_RxD contains NaN, inf or entries beyond ±{MAX_ABS_FEATURE:g}.")
    if method == "radius":
        _check_radii_values(radii)
    if x_MxD.shape[0] * num_votes > MAX_TOTAL_VOTES:
        raise ValueError(
            "features_MxD casts more than 2**31 - 1 votes, beyond int32 counting; score it "
            "in parts and add the counts."
        )
    fast = fast_vote_counts(
        x_MxD,
        v_RxD,
        mask,
        method=method,
        m=m,
        radii=radii,
        max_votes=max_votes,
        chunk_size=chunk_size,
        metric=metric,
    )
    counts_R = np.asarray(fast.counts).astype(np.int64)
    rows = np.flatnonzero(np.asarray(fast.ambiguous))
    if rows.size:
        counts_R += resolve_votes(
            x_MxD[jnp.asarray(rows)],
            v_RxD,
            method=method,
            m=m,
            radii=radii,
            max_votes=max_votes,
            metric=metric,
        )
    return CoverageScores(counts_R, num_votes)


@jax.jit
def _in_range(x: jax.Array) -> jax.Array:
    """True when every entry is finite and within ±MAX_ABS_FEATURE (fused, no temporary)."""
    return jnp.all(jnp.abs(x.astype(jnp.float32)) <= MAX_ABS_FEATURE)


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
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}.")
    if value < 1 or (num_centroids is not None and value > num_centroids):
        upper = "R" if num_centroids is None else f"R={num_centroids}"
        raise ValueError(f"{name} must satisfy 1 <= {name} <= {upper}, got {value}.")
    return int(value)


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
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
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
