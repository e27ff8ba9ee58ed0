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

The counting itself (the device kernel and the host re-check) lives in `ecos_jax.votes`.

Error messages about the client's features name the argument, never a value or the
number of rows. Invalid inputs (NaN, wrong rank or dtype) raise: such a dataset is outside
the data domain the guarantee is stated for; any dataset inside it, of any size, answers.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 3.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, TypedDict, Unpack

import jax.numpy as jnp
import numpy as np

from ecos_jax import votes
from ecos_jax._validate import as_client_features, as_real_array, check_feature_range
from ecos_jax.distances import check_metric
from ecos_jax.votes import METHODS, FastCounts, fast_vote_counts, resolve_votes, votes_per_sample

__all__ = [
    "METHODS",
    "CoverageScores",
    "FastCounts",
    "ScoreOptions",
    "coverage_scores",
    "coverage_sensitivity",
    "fast_vote_counts",
    "radius_scores",
    "resolve_votes",
    "top_m_scores",
    "voronoi_scores",
    "votes_per_sample",
]

#: Vote counts are int32 on the device: a client casting this many votes is refused.
MAX_TOTAL_VOTES = 2**31 - 1


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


def coverage_sensitivity(method: str, *, m: Any = None, max_votes: Any = None) -> float:
    """L2 sensitivity of the counts of `method` under adding or removing one sample.

    Example:
      >>> coverage_sensitivity("top_m", m=4)
      2.0

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    return math.sqrt(votes_per_sample(method, m=m, max_votes=max_votes))


class ScoreOptions(TypedDict, total=False):
    """Keyword options every voting rule takes.

    Attributes:
      mask: optional [M] bool; rows where it is False cast no vote.
      chunk_size: rows per distance block, default 4096 (memory, not results, depends on it).
      metric: 'l2' (Euclidean, the default) or 'cosine' (`1 - cos`).
    """

    mask: Any
    chunk_size: int
    metric: str


def voronoi_scores(
    features_MxD: Any, centroids_RxD: Any, **options: Unpack[ScoreOptions]
) -> CoverageScores:
    """Voronoi counts: each sample votes for its nearest centroid (sensitivity 1).

    `s_r = #{x : r = argmin_j dist(x, v_j)}`; ties go to the lowest centroid index, and
    a sample's vote does not depend on the other samples (see the module docstring).

    Args:
      features_MxD: [M, D] client features (finite).
      centroids_RxD: [R, D] centroids received from the cloud (finite).
      **options: `mask`, `chunk_size`, `metric` (`ScoreOptions`).

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
    return _scores(features_MxD, centroids_RxD, method="voronoi", **options)


def top_m_scores(
    features_MxD: Any, centroids_RxD: Any, *, m: int, **options: Unpack[ScoreOptions]
) -> CoverageScores:
    """Top-m votes: each sample votes once for each of its `m` nearest centroids.

    One sample changes `m` entries by 1, so the L2 sensitivity is `√m`. Arguments as in
    `voronoi_scores`, plus `m`: votes per sample, 1 <= m <= R.

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
    return _scores(features_MxD, centroids_RxD, method="top_m", m=m, **options)


def radius_scores(
    features_MxD: Any,
    centroids_RxD: Any,
    *,
    radii: Any,
    max_votes: int,
    **options: Unpack[ScoreOptions],
) -> CoverageScores:
    """Radius counts: a sample votes for every centroid `r` with `dist <= radii[r]`, capped.

    Each sample keeps only its `max_votes` nearest qualifying centroids, so one sample
    changes at most `max_votes` entries by 1 and the sensitivity `√max_votes` holds.
    The radii must be public (chosen by the caller, e.g. from the cloud's own data):
    deriving them from the private features would leak. Arguments as in
    `voronoi_scores`, plus:

    Args:
      radii: scalar or [R] thresholds, finite and >= 0, in the units of `metric`
        (Euclidean distance for 'l2', `1 - cos` for 'cosine'); used as float32.
      max_votes: cap on votes per sample, 1 <= max_votes <= R.

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
        features_MxD, centroids_RxD, method="radius", radii=radii, max_votes=max_votes, **options
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
    votes._check_method(method)
    fn = {"voronoi": voronoi_scores, "top_m": top_m_scores, "radius": radius_scores}[method]
    return fn(features_MxD, centroids_RxD, **kwargs)


def _scores(
    features_MxD: Any,
    centroids_RxD: Any,
    *,
    method: str,
    m: int | None = None,
    radii: Any = None,
    max_votes: int | None = None,
    mask: Any = None,
    chunk_size: int = 4096,
    metric: str = "l2",
) -> CoverageScores:
    """Validates on the host, counts on the device, re-decides the ambiguous rows."""
    x_MxD = as_client_features(features_MxD)
    v_RxD = as_real_array(centroids_RxD, "centroids_RxD")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(f"mask must be a bool array of shape [M], got dtype {mask.dtype}.")
    votes._check_shapes(x_MxD, v_RxD, mask)
    num_votes = votes._check_static(
        method, m=m, max_votes=max_votes, radii=radii, chunk_size=chunk_size, r=v_RxD.shape[0]
    )
    check_metric(metric)
    check_feature_range(v_RxD, "centroids_RxD")
    if method == "radius":
        votes._check_radii_values(radii)
    if x_MxD.shape[0] * num_votes > MAX_TOTAL_VOTES:
        raise ValueError(
            "features_MxD casts more than 2**31 - 1 votes, beyond int32 counting; score it "
            "in parts and add the counts."
        )
    rule = {"method": method, "m": m, "radii": radii, "max_votes": max_votes, "metric": metric}
    fast = fast_vote_counts(x_MxD, v_RxD, mask, chunk_size=chunk_size, **rule)
    counts_R = np.asarray(fast.counts).astype(np.int64)
    rows = np.flatnonzero(np.asarray(fast.ambiguous))
    if rows.size:
        counts_R += resolve_votes(x_MxD[jnp.asarray(rows)], v_RxD, **rule)
    return CoverageScores(counts_R, num_votes)
