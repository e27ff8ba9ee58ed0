"""Nearest-centroid and nearest-neighbour decisions that depend on a row and its candidates alone.

The sensitivity of a coverage count or a kNN histogram assumes that adding one client
sample leaves every other sample's vote unchanged. A float32 GEMM does not guarantee it:
the rounding of one row's distances depends on how many other rows share the matmul
(blocking and vectorisation change with the batch shape), so a row that sits on a Voronoi
boundary can flip its vote when an unrelated row is added, and 63 such rows can move a
count by 63. This module makes every vote a function of the row and the candidates alone:

1. Fast path (device, float32). Compute the distances as usual, plus a per-row bound
   `e` on their rounding error that holds for ANY summation order:
   `|fl(d²) − d²| ≤ γ_{D+3}·(‖x‖ + max_r ‖v_r‖)²` for the expanded squared distance
   (`γ_n = n·u/(1 − n·u)`, `u` the unit roundoff; Higham, Accuracy and Stability of
   Numerical Algorithms, Sec. 3.1), and `γ_{3D+12}` for `1 − cos` of normalised rows. The
   bounds are used with a factor `SAFETY = 2`, which also covers the canonical value's own
   (float64) error. A row's vote is accepted when every decision it makes clears its
   margin: the gap between its V-th and (V+1)-th nearest candidate exceeds `2e`, and, for
   the radius rule, every distance is more than `e` from its radius. Then the vote equals
   the canonical vote below.
2. Re-check (host). The other rows (ties, near-ties) are decided again from float64
   distances with their own bound; what is still within that margin is decided by the
   canonical distance: the exact expanded sum of the float32 inputs' products, each
   exact in float64, summed correctly rounded with `math.fsum`. Ties go to the lowest
   candidate index.

The result is the canonical choice whatever the batch, the chunk size or the device, and
is computed exactly only where floating point could not decide.

References:
  Mironov. "On Significance of the Least Significant Bits for Differential Privacy."
  CCS 2012. Higham. "Accuracy and Stability of Numerical Algorithms." SIAM 2002, Sec. 3.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ecos_jax.distances import PRECISION, normalize_rows

__all__ = [
    "SAFETY",
    "certified_votes",
    "fast_distances",
    "resolve_rows",
]

#: Multiplier on the worst-case rounding bounds (covers the canonical value's error and
#: the float32 norms the bound itself is computed from).
SAFETY = 2.0

_U32 = 2.0**-24
_U64 = 2.0**-53
_NORM_EPS = 1e-12  # as in `ecos_jax.distances.normalize_rows`


def _gamma(n: int, u: float) -> float:
    """Higham's `γ_n = n·u / (1 − n·u)`: the relative error bound of an n-term sum."""
    if n * u >= 0.5:
        raise ValueError(f"feature dimension {n} is too large for a rounding bound.")
    return n * u / (1.0 - n * u)


def _error_scale(dim: int, metric: str, u: float) -> float:
    """The γ factor (times SAFETY) of a computed distance in unit roundoff `u`."""
    n = dim + 3 if metric == "l2" else 3 * dim + 12
    return SAFETY * _gamma(n, u)


def fast_distances(
    x_CxD: jax.Array, v_RxD: jax.Array, *, metric: str
) -> tuple[jax.Array, jax.Array]:
    """float32 distances [C, R] (squared L2, or `1 − cos`) and each row's error bound [C].

    Squared L2 is `‖x‖² − 2x·v + ‖v‖²` clamped at 0 (a GEMM); cosine is `1 − x̂·v̂` on
    rows normalised as in `normalize_rows`, clipped to [0, 2].
    """
    dim = x_CxD.shape[1]
    scale = _error_scale(dim, metric, _U32)
    if metric == "l2":
        xv_CxR = jnp.matmul(x_CxD, v_RxD.T, precision=PRECISION)
        x2_C = jnp.sum(x_CxD * x_CxD, axis=-1)
        v2_R = jnp.sum(v_RxD * v_RxD, axis=-1)
        d_CxR = jnp.maximum(x2_C[:, None] - 2.0 * xv_CxR + v2_R[None, :], 0.0)
        reach_C = jnp.sqrt(x2_C) + jnp.sqrt(jnp.max(v2_R))
        return d_CxR, scale * reach_C * reach_C
    xv_CxR = jnp.matmul(normalize_rows(x_CxD), normalize_rows(v_RxD).T, precision=PRECISION)
    d_CxR = jnp.clip(1.0 - xv_CxR, 0.0, 2.0)
    return d_CxR, jnp.full((x_CxD.shape[0],), scale, jnp.float32)


def certified_votes(
    d_CxR: jax.Array, err_C: jax.Array, *, num_votes: int, thresholds_R: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The `num_votes` nearest qualifying candidates per row, and whether float32 decided it.

    Args:
      d_CxR: fast distances from `fast_distances`.
      err_C: their per-row error bounds.
      num_votes: V, votes per row (1 <= V <= R).
      thresholds_R: optional: a candidate qualifies only if its distance is <= its
        threshold (same units as `d_CxR`); None: all qualify.

    Returns:
      `(idx_CxV int32, ok_CxV bool, ambiguous_C bool)`: the voted candidates (`ok` False
      for empty slots of the radius rule), and the rows whose vote must be re-checked on
      the host (their `idx`/`ok` are meaningless).
    """
    num_rows, num_candidates = d_CxR.shape
    margin_C1 = err_C[:, None]
    ambiguous_C = jnp.zeros((num_rows,), bool)
    key_CxR = d_CxR
    if thresholds_R is not None:
        qualifies_CxR = d_CxR <= thresholds_R[None, :]
        # The float32 thresholds are themselves rounded (by at most 2^-24 relative).
        slack_1xR = jnp.abs(thresholds_R)[None, :] * 2.0**-23
        near_CxR = jnp.abs(d_CxR - thresholds_R[None, :]) <= margin_C1 + slack_1xR
        ambiguous_C = ambiguous_C | jnp.any(near_CxR, axis=1)
        key_CxR = jnp.where(qualifies_CxR, d_CxR, jnp.inf)
    take = min(num_votes + 1, num_candidates)
    neg_CxT, idx_CxT = lax.top_k(-key_CxR, take)
    if take > num_votes:
        # The boundary between the V-th and the (V+1)-th nearest qualifying candidate.
        inner_C, outer_C = -neg_CxT[:, num_votes - 1], -neg_CxT[:, num_votes]
        close_C = jnp.isfinite(outer_C) & (outer_C - inner_C <= 2.0 * err_C)
        ambiguous_C = ambiguous_C | close_C
    idx_CxV = idx_CxT[:, :num_votes].astype(jnp.int32)
    ok_CxV = jnp.isfinite(neg_CxT[:, :num_votes])
    return idx_CxV, ok_CxV, ambiguous_C


def resolve_rows(
    x_FxD: np.ndarray,
    v_RxD: np.ndarray,
    *,
    num_votes: int,
    metric: str,
    thresholds_R: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The canonical votes of rows the fast path could not decide (host, exact where needed).

    Args:
      x_FxD: the undecided rows, float32 (the values the device saw).
      v_RxD: all candidates, float32.
      num_votes: V, as in `certified_votes`.
      metric: 'l2' (squared distances, thresholds squared) or 'cosine'.
      thresholds_R: optional per-candidate thresholds in the same units as the distances
        (float64; for 'l2' the squared radii).

    Returns:
      One sorted int64 array of voted candidate indices per row (at most V each).
    """
    x_FxD = np.asarray(x_FxD, np.float32)
    v_RxD = np.asarray(v_RxD, np.float32)
    if x_FxD.shape[0] == 0:
        return []
    d_FxR, err_F = _distances64(x_FxD, v_RxD, metric)
    v64 = v_RxD.astype(np.float64)
    v2: dict[int, float] = {}  # ‖v_j‖² by fsum, for the candidates that need it

    def norm2(j: int) -> float:
        if j not in v2:
            v2[j] = math.fsum((v64[j] * v64[j]).tolist())
        return v2[j]

    out = []
    for x, d_R, err in zip(x_FxD.astype(np.float64), d_FxR, err_F, strict=True):

        def canonical(j: int, x=x) -> float:
            return _canonical_distance(x, v64[j], norm2(j), metric)

        out.append(_certified_top(d_R, float(err), num_votes, thresholds_R, canonical))
    return out


def _distances64(x_FxD: np.ndarray, v_RxD: np.ndarray, metric: str):
    """float64 distances [F, R] and their per-row error bounds [F] (any BLAS order)."""
    x = x_FxD.astype(np.float64)
    v = v_RxD.astype(np.float64)
    scale = _error_scale(x.shape[1], metric, _U64)
    if metric == "l2":
        x2 = np.sum(x * x, axis=1)
        v2 = np.sum(v * v, axis=1)
        d = np.maximum(x2[:, None] - 2.0 * (x @ v.T) + v2[None, :], 0.0)
        reach = np.sqrt(x2) + np.sqrt(v2.max())
        return d, scale * reach * reach
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _NORM_EPS)
    vn = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), _NORM_EPS)
    d = np.clip(1.0 - xn @ vn.T, 0.0, 2.0)
    return d, np.full(x.shape[0], scale)


def _canonical_distance(x_D: np.ndarray, v_D: np.ndarray, v2: float, metric: str) -> float:
    """The distance from exact float64 products, summed correctly rounded (`math.fsum`)."""
    xv = math.fsum((x_D * v_D).tolist())
    x2 = math.fsum((x_D * x_D).tolist())
    if metric == "l2":
        # x2 - 2xv + v2 is exact up to the roundings of the three fsums (each 1/2 ulp).
        return max(math.fsum((x2, -2.0 * xv, v2)), 0.0)
    denominator = max(math.sqrt(x2), _NORM_EPS) * max(math.sqrt(v2), _NORM_EPS)
    return min(max(1.0 - xv / denominator, 0.0), 2.0)


def _certified_top(
    d_R: np.ndarray,
    err: float,
    num_votes: int,
    thresholds_R: np.ndarray | None,
    canonical: Callable[[int], float],
) -> np.ndarray:
    """The canonical V nearest qualifying candidates, from approximate distances `d_R`
    within `err` of the canonical ones; canonical values are computed only where the
    approximate ones cannot decide (ties go to the lower index)."""
    num_candidates = d_R.shape[0]
    exact: dict[int, float] = {}

    def value(j: int) -> float:
        if j not in exact:
            exact[j] = canonical(j)
        return exact[j]

    candidates = np.arange(num_candidates)
    if thresholds_R is not None:
        sure = d_R <= thresholds_R - err
        unsure = np.flatnonzero(~sure & (d_R <= thresholds_R + err))
        keep = sure.copy()
        keep[unsure] = [value(int(j)) <= thresholds_R[j] for j in unsure]
        candidates = np.flatnonzero(keep)
    if candidates.size <= num_votes:
        return candidates.astype(np.int64)
    order = candidates[np.lexsort((candidates, d_R[candidates]))]
    inner, outer = d_R[order[num_votes - 1]], d_R[order[num_votes]]
    if outer - inner > 2.0 * err:
        return np.sort(order[:num_votes]).astype(np.int64)
    dc = d_R[candidates]
    sure_in = candidates[dc < inner - 2.0 * err]
    band = candidates[(dc >= inner - 2.0 * err) & (dc <= outer + 2.0 * err)]
    ranked = sorted(band.tolist(), key=lambda j: (value(j), j))
    chosen = np.concatenate([sure_in, np.asarray(ranked[: num_votes - sure_in.size], np.int64)])
    return np.sort(chosen).astype(np.int64)
