"""KMeans on the cloud's pool features: k-means++ seeding and a jitted Lloyd loop.

The assignment step is a GEMM (`2·N·R·D` FLOPs an iteration) done in row chunks read in
place from `x`, so the peak memory is `O(chunk_size·R + N·D)`: the N×R distance matrix
never exists. What makes it fast on CPU (see `experiments/bench_kmeans.py`):

* the `‖x‖²` term is dropped from the argmin (it is constant along a row);
* the argmin is two plain reductions (the row minimum, then the first column index that
  attains it), which XLA vectorises, instead of a variadic argmin reduction; the index
  reduction runs on the narrowest integer type that holds R (uint8 for R ≤ 256): 2.6×
  faster than on int32;
* centroid sums are a scatter-add (`segment_sum`, `N·d` adds) rather than a one-hot matmul
  (another `2·N·R·D` FLOPs), and the inertia follows from those sums (`_cluster_stats`),
  so no per-row distance is summed.

`assign_precision="bf16"` (or `"tf32"` on GPUs) screens the assignment with a low-precision
GEMM and re-checks in float32 only the rows whose top-2 gap is within a rigorous rounding
bound (`_assignment_bound`): assignments, centroids and inertia equal the float32 ones.

References:
  Hong et al., "Outsourcing Training without Uploading Data via Efficient Collaborative
  Open-Source Sampling", NeurIPS 2022 (cloud-side clustering, step 1 of the protocol).
  Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
  Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., SIAM 2002, §3.1
  (the γ_n bound on a dot product's rounding error, in any summation order).
"""

from __future__ import annotations

import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ecos_jax._validate import as_features, check_key, is_int, nonnegative_finite
from ecos_jax.distances import PRECISION, map_row_chunks

__all__ = [
    "ASSIGN_PRECISIONS",
    "DEFAULT_CHUNK_SIZE",
    "AssignPrecision",
    "KMeansResult",
    "assign_to_centroids",
    "kmeans",
    "kmeans_plusplus_init",
]

DEFAULT_CHUNK_SIZE = 8192

AssignPrecision = Literal["fp32", "bf16", "tf32"]

#: Accepted `assign_precision` values: exact float32, or a low-precision screen + re-check.
ASSIGN_PRECISIONS = ("fp32", "bf16", "tf32")

# Above this fraction of flagged rows one plain float32 pass is cheaper than re-checking.
_RECHECK_CAPACITY = 0.5

# Row blocks whose cluster sums are formed separately, then added (`_segment_sums`).
_SUM_BLOCKS = 16

# Rows per chunk of the low-precision screen (its GEMM, min and counts fuse and stay in
# cache); independent of `chunk_size`, which sets the float32 re-check's chunk shape.
_SCREEN_CHUNK_SIZE = 1024


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


def _check_assign_precision(value) -> str:
    """`value` if it names an assignment precision, else a clear error."""
    if value not in ASSIGN_PRECISIONS:
        raise ValueError(
            f"assign_precision must be one of {', '.join(map(repr, ASSIGN_PRECISIONS))}; got "
            f"{value!r}. Use 'fp32' (the default), or 'bf16' ('tf32' on GPUs) for a faster "
            "assignment that still equals the float32 one."
        )
    return value


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


def _squared_norms(x_NxD):
    """`‖x_i‖²` of every row, [N]."""
    return jnp.sum(x_NxD * x_NxD, axis=1)


def _index_dtype(r: int):
    """The narrowest integer type whose values cover the column indices 0..r−1."""
    if r <= 256:
        return jnp.uint8
    if r <= 65536:
        return jnp.uint16
    return jnp.int32


def _nearest_in_chunk(x_CxD, c_RxD, c2_R):
    """Nearest centroid of each row (first index on ties) and the row's ‖x‖²-free distance."""
    # ‖x−c‖² − ‖x‖² = ‖c‖² − 2x·c: the dropped term does not change the argmin.
    s_CxR = c2_R[None, :] - 2.0 * jnp.matmul(x_CxD, c_RxD.T, precision=PRECISION)
    smin_C1 = jnp.min(s_CxR, axis=1, keepdims=True)
    return _first_index_at_min(s_CxR, smin_C1)


def _first_index_at_min(s_CxR, smin_C1):
    """`(a_C, smin_C)`: the first column of each row that attains the row's minimum."""
    # The largest value of the index type is a safe "no match": if it is a real column
    # (R = 256 with uint8) and the first match, the result is still right.
    dtype = _index_dtype(s_CxR.shape[1])
    iota_CxR = lax.broadcasted_iota(dtype, s_CxR.shape, 1)
    a_C = jnp.min(jnp.where(s_CxR <= smin_C1, iota_CxR, jnp.iinfo(dtype).max), axis=1)
    return a_C.astype(jnp.int32), smin_C1[:, 0]


def _nearest_centroids(x_NxD, c_RxD, c2_R, *, chunk_size: int):
    """`(a_N, smin_N)`: `_nearest_in_chunk` over row chunks of `x`, read in place."""
    return map_row_chunks(
        lambda x_CxD: _nearest_in_chunk(x_CxD, c_RxD, c2_R), x_NxD, chunk_size=chunk_size
    )


class _Center(NamedTuple):
    """A reference point for the inertia's sums, computed once per fit.

    `Q_r − 2 c_r·S_r + W_r‖c_r‖²` cancels badly when the data sit far from the origin;
    measured from the rows' mean the terms are small (blobs offset by 1000: 4e-4 relative
    error instead of 1e-1, 4e-5 with `_segment_sums`' blocks).
    """

    point_D: jax.Array  # [D] float32, the mean of the rows
    sq_dists_N: jax.Array  # [N] float32, ‖x_i − point‖²


def _center_of(x_NxD) -> _Center:
    point_D = jnp.mean(x_NxD, axis=0)
    return _Center(point_D, _squared_norms(x_NxD - point_D[None, :]))


def _segment_sums(values_N, segment_N, r: int):
    """`segment_sum` into r segments (ids ≥ r dropped), over `_SUM_BLOCKS` row blocks.

    A scatter-add sums each segment in row order; summing each block of rows on its own
    and then the blocks makes those sequential sums 16× shorter (measured at N = 200,000,
    K = 256: 10× smaller relative error, for 12% more time).
    """
    n = values_N.shape[0]
    num_blocks = min(_SUM_BLOCKS, n)
    block_N = lax.broadcasted_iota(jnp.int32, (n,), 0) // -(-n // num_blocks)
    ids_N = jnp.where(segment_N < r, segment_N + r * block_N, r * num_blocks)
    sums = jax.ops.segment_sum(values_N, ids_N, num_segments=r * num_blocks)
    return jnp.sum(sums.reshape(num_blocks, r, *values_N.shape[1:]), axis=0)


def _cluster_stats(x_NxD, c_RxD, a_N, *, x2_N, w_N=None, valid_N=None, center=None):
    """`(sums [R, D], counts [R], inertia [])` of the rows assigned by `a_N`.

    The inertia is computed from the sums, not from per-row distances, so that any pass
    that finds the same assignments finds the same inertia, bit for bit. With μ the
    `center` point (default 0), `Q_r = Σ w_i‖x_i − μ‖²`, `S_r = Σ w_i x_i`, `W_r = Σ w_i`:
    `Σ_{i∈r} w_i‖x_i − c_r‖² = Q_r − 2(c_r − μ)·(S_r − W_r μ) + W_r‖c_r − μ‖²`, each term
    clamped at 0 (it is a sum of squares).
    """
    r = c_RxD.shape[0]
    segment_N = a_N if valid_N is None else jnp.where(valid_N, a_N, r)  # r: dropped
    q_N = x2_N if center is None else center.sq_dists_N
    if w_N is None:  # no `w·x` product: the common case is the fast one
        sums_RxD = _segment_sums(x_NxD, segment_N, r)
        counts_R = _segment_sums(jnp.ones_like(q_N), segment_N, r)
        q_R = _segment_sums(q_N, segment_N, r)
    else:
        sums_RxD = _segment_sums(w_N[:, None] * x_NxD, segment_N, r)
        counts_R = _segment_sums(w_N, segment_N, r)
        q_R = _segment_sums(w_N * q_N, segment_N, r)
    if center is None:
        cc_RxD, sc_RxD = c_RxD, sums_RxD
    else:
        cc_RxD = c_RxD - center.point_D[None, :]
        sc_RxD = sums_RxD - counts_R[:, None] * center.point_D[None, :]
    within_R = q_R - 2.0 * jnp.sum(cc_RxD * sc_RxD, axis=1) + counts_R * _squared_norms(cc_RxD)
    return sums_RxD, counts_R, jnp.sum(jnp.maximum(within_R, 0.0))


def _sq_dists(smin_N, x2_N, valid_N=None):
    """`‖x_i − c_{a_i}‖²` from the ‖x‖²-free minimum, clamped at 0 (0 on invalid rows)."""
    d2_N = jnp.maximum(smin_N + x2_N, 0.0)
    return d2_N if valid_N is None else jnp.where(valid_N, d2_N, 0.0)


def _assignment_stats(
    x_NxD, c_RxD, *, x2_N, chunk_size: int, w_N=None, valid_N=None, center=None
) -> _ChunkStats:
    """One float32 assignment pass: nearest centroids and the sums an update needs.

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
      center: optional `_Center` of the rows, for an accurate inertia (`_cluster_stats`).
    """
    c2_R = _squared_norms(c_RxD)
    a_N, smin_N = _nearest_centroids(x_NxD, c_RxD, c2_R, chunk_size=chunk_size)
    sums_RxD, counts_R, inertia = _cluster_stats(
        x_NxD, c_RxD, a_N, x2_N=x2_N, w_N=w_N, valid_N=valid_N, center=center
    )
    return _ChunkStats(sums_RxD, counts_R, inertia, a_N, _sq_dists(smin_N, x2_N, valid_N))


# --------------------------------------------------- low-precision screen, float32 re-check


class _ScreenPoints(NamedTuple):
    """The points as the low-precision screen reads them, computed once per fit.

    Only the F = C·⌊N/C⌋ rows of full chunks (C = min(chunk_size, N)) count as screened:
    the rest (the tail chunk) go through the float32 pass, so that each float32 GEMM has
    the shape it has there (`_screened_assignments`).
    """

    x_NxD: jax.Array  # [N, D] the screen's operand x̂: bf16 bits as uint16, or TF32 in float32
    norm_N: jax.Array  # [N] float32, ‖x̂_i‖
    resid_N: jax.Array  # [N] float32, ‖x_i − x̂_i‖ (exact: x − x̂ is a float32)
    xnorm_N: jax.Array  # [N] float32, ‖x_i‖


def _round_to_tf32(x):
    """`x` rounded to TF32 (10 fraction bits, ties to even), kept in float32.

    Tensor cores then read it exactly, so `x − x̂` is the whole input rounding error.
    """
    bits = lax.bitcast_convert_type(x, jnp.uint32)
    bits = bits + jnp.uint32(0xFFF) + ((bits >> 13) & jnp.uint32(1))
    return lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFE000), jnp.float32)


def _to_low_precision(x, precision: str):
    """The screen's operand: `x` in bfloat16, or rounded to TF32 in float32."""
    return x.astype(jnp.bfloat16) if precision == "bf16" else _round_to_tf32(x)


def _stored(xlp, precision: str):
    """`xlp` as the screen keeps it: bf16 as its uint16 bits (`_unstored` undoes it).

    XLA's CPU backend slices a bf16 array by converting all of it to float32 first (a
    float32 copy of the pool on each call); the bits slice as they are, 2.7× faster.
    """
    return lax.bitcast_convert_type(xlp, jnp.uint16) if precision == "bf16" else xlp


def _unstored(stored, precision: str):
    return lax.bitcast_convert_type(stored, jnp.bfloat16) if precision == "bf16" else stored


def _screen_operand(c_RxD, precision: str):
    """−2ĉ as the screen's GEMM reads it (×2 is exact: it commutes with the rounding).

    For bf16 that is ĉᵀ [D, R], converted from `c.T`: XLA's CPU GEMM runs bf16 natively only
    for a row-major right operand contracted on its first axis, and upcasts both operands
    to float32 otherwise (measured: 2× slower than this). TF32 keeps [R, D].
    """
    if precision == "bf16":
        return (-2.0 * c_RxD.T).astype(jnp.bfloat16)
    return _round_to_tf32(-2.0 * c_RxD)


def _screen_matmul(xlp_CxD, c_operand, precision: str):
    """`x̂ @ (−2ĉ)ᵀ` [C, R] with float32 accumulation (`c_operand` from `_screen_operand`)."""
    if precision == "bf16":
        return jnp.matmul(xlp_CxD, c_operand, preferred_element_type=jnp.float32)
    return jnp.matmul(xlp_CxD, c_operand.T, precision=lax.Precision.DEFAULT)  # TF32 on GPUs


def _row_norms(x_NxD):
    return jnp.sqrt(_squared_norms(x_NxD))


def _screen_points(x_NxD, x2_N, *, precision: str, chunk_size: int) -> _ScreenPoints:
    """x̂ and the norms the bound needs, in row chunks (no float32 temporary of all of `x`)."""
    n = x_NxD.shape[0]
    cs = min(chunk_size, n)

    def chunk(x_CxD):
        xlp_CxD = _to_low_precision(x_CxD, precision)
        xhat_CxD = xlp_CxD.astype(jnp.float32)
        return _stored(xlp_CxD, precision), _row_norms(xhat_CxD), _row_norms(x_CxD - xhat_CxD)

    xlp_NxD, norm_N, resid_N = map_row_chunks(chunk, x_NxD, chunk_size=cs)
    return _ScreenPoints(xlp_NxD, norm_N, resid_N, jnp.sqrt(x2_N))


def _assignment_bound(points: _ScreenPoints, c_RxD, c2_R, *, precision: str):
    """A per-row bound [N] on `|ŝ_ij − s_ij|` for every centroid j.

    `s_ij = fl(‖c_j‖² − 2 fl(x_i·c_j))` is what the float32 pass computes and
    `ŝ_ij = fl(‖c_j‖² − 2 fl(x̂_i·ĉ_j))` what the screen computes, with x̂, ĉ the rounded
    operands (the same float32 ‖c_j‖² in both). With the float32 unit roundoff
    u = 2⁻²⁴ and γ = D·u/(1 − D·u), the error of a D-term dot product summed in float32 in
    any order is at most γ·Σ_k|a_k b_k| ≤ γ‖a‖‖b‖ (Higham, §3.1). The products x̂_k·ĉ_k are
    exact in float32 (8- or 11-bit significands), so:

    * `x·c − x̂·ĉ = x̂·(c − ĉ) + (x − x̂)·c`, hence `|x·c − x̂·ĉ| ≤ ‖x̂‖‖c−ĉ‖ + ‖x−x̂‖‖c‖`
      (Cauchy–Schwarz, with the actual residual norms, so no worst-case 2⁻⁸ is assumed);
    * `|fl(x̂·ĉ) − x̂·ĉ| ≤ γ‖x̂‖‖ĉ‖` and `|fl(x·c) − x·c| ≤ γ‖x‖‖c‖` (the float32 term is
      doubled below, for GEMMs that are float32-accurate without being plain float32);
    * each `fl(‖c‖² − 2g)` adds at most `u(‖c‖² + 2|g|)`, `|g| ≤ (1+γ)‖a‖‖b‖`;
    * flushed subnormals move a dot product by at most `2⁻¹²⁶(√D(‖a‖ + ‖b‖) + D)`.

    So `|ŝ_ij − s_ij| ≤ 2(‖x̂‖R̂ + ‖x−x̂‖C + γ‖x̂‖Ĉ + 2γ‖x‖C) + 2u(‖c‖²_max + (1+γ)(‖x̂‖Ĉ +
    ‖x‖C)) + 2·2⁻¹²⁶(√D(‖x̂‖ + ‖x‖ + Ĉ + C) + 2D)`, with C, Ĉ, R̂ the largest ‖c_j‖, ‖ĉ_j‖,
    ‖c_j − ĉ_j‖. The bound is scaled by 1 + 2⁻⁶, which covers the rounding of its own
    float32 evaluation and of the norms.
    """
    d = c_RxD.shape[1]
    u = 2.0**-24
    gamma = d * u / (1.0 - d * u)
    tiny = 2.0**-126
    chat_RxD = _to_low_precision(c_RxD, precision).astype(jnp.float32)
    c_max = jnp.max(_row_norms(c_RxD))
    chat_max = jnp.max(_row_norms(chat_RxD))
    resid_max = jnp.max(_row_norms(c_RxD - chat_RxD))
    xhat_N, xres_N, x_N = points.norm_N, points.resid_N, points.xnorm_N
    products_N = xhat_N * resid_max + xres_N * c_max
    accumulation_N = gamma * xhat_N * chat_max + 2.0 * gamma * x_N * c_max
    subtraction_N = u * (jnp.max(c2_R) + (1.0 + gamma) * (xhat_N * chat_max + x_N * c_max))
    subnormal_N = tiny * (math.sqrt(d) * (xhat_N + x_N + chat_max + c_max) + 2.0 * d)
    bound_N = 2.0 * (products_N + accumulation_N + subtraction_N + subnormal_N)
    return bound_N * (1.0 + 2.0**-6)


def _screen_chunk(xlp_CxD, bound_C, c_operand, c2_R, *, precision: str):
    """`(a_C, safe_C)`: the screen's nearest centroid and whether it is certainly right.

    A row is safe when exactly one centroid lies within `2·bound` of its screened minimum:
    then every other centroid is farther in float32 too, strictly (so ties cannot matter).
    """
    xlp_CxD = _unstored(xlp_CxD, precision)
    s_CxR = c2_R[None, :] + _screen_matmul(xlp_CxD, c_operand, precision)  # operand is −2ĉ
    smin_C1 = jnp.min(s_CxR, axis=1, keepdims=True)
    # NaN (an overflowing row) compares False: no close column, not safe.
    close_CxR = s_CxR <= smin_C1 + 2.0 * bound_C[:, None]
    r = s_CxR.shape[1]
    b = r.bit_length()  # 2^b > R
    if r << b > 2**24:  # the keys below would not be exact in float32: two reductions
        a_C, _ = _first_index_at_min(s_CxR, smin_C1)
        return a_C, jnp.sum(close_CxR, axis=1, dtype=jnp.int32) == 1
    # One float sum gives the count and the column: close column j adds 1 + 2^b·j. A total
    # below 2^24 is exact (every partial sum is an integer below 2^24), so total − 1 is a
    # multiple of 2^b exactly when the count is 1 (counts are at most R < 2^b). A larger
    # total is an even float, so total − 1 is odd: not safe, as it should be (count ≥ 2).
    key_R = 1.0 + float(2**b) * jnp.arange(r, dtype=jnp.float32)
    total_C = jnp.sum(jnp.where(close_CxR, key_R[None, :], 0.0), axis=1) - 1.0
    safe_C = jnp.fmod(total_C, float(2**b)) == 0.0
    a_C = jnp.where(safe_C, total_C / float(2**b), 0.0).astype(jnp.int32)
    return a_C, safe_C


def _screened_assignments(
    x_NxD, points: _ScreenPoints, c_RxD, c2_R, *, precision: str, chunk_size: int
):
    """`(a_N, num_flagged)`: the float32 pass's assignments, by way of the screen.

    Rows the screen cannot certify are gathered, flagged rows first, into blocks of
    `chunk_size` rows and re-run through `_nearest_in_chunk`, the float32 pass's own chunk
    function on the shape of its full chunks; the tail chunk runs through it directly.
    When more than `_RECHECK_CAPACITY` of the rows are flagged, one plain float32 pass
    replaces the re-check (`lax.cond`: both branches are compiled, one runs). Equality with
    the float32 pass then rests on its GEMM giving a row the same result wherever the row
    sits in a block of that shape, which blocked GEMM kernels do (the tests check it on rows
    within float32 rounding of a tie).
    """
    n = x_NxD.shape[0]
    cs = min(chunk_size, n)
    f = cs * (n // cs)  # rows of full chunks
    c_operand = _screen_operand(c_RxD, precision)
    bound_N = _assignment_bound(points, c_RxD, c2_R, precision=precision)
    # All N rows are screened (no copy of the first F); the tail's results are replaced.
    a_N, safe_N = map_row_chunks(
        lambda xlp_CxD, bound_C: _screen_chunk(
            xlp_CxD, bound_C, c_operand, c2_R, precision=precision
        ),
        points.x_NxD,
        bound_N,
        chunk_size=min(cs, _SCREEN_CHUNK_SIZE),
    )
    if f < n:
        a_tail, _ = _nearest_in_chunk(x_NxD[f:], c_RxD, c2_R)
        a_N = a_N.at[f:].set(a_tail)
    safe_F = safe_N[:f]
    num_flagged = f - jnp.sum(safe_F, dtype=jnp.int32)

    def recheck(a_N):
        (rows_F,) = jnp.nonzero(~safe_F, size=f, fill_value=n)  # n: a padding row

        def block(i, a_N):
            rows_C = lax.dynamic_slice_in_dim(rows_F, i * cs, cs)
            x_CxD = x_NxD.at[rows_C].get(mode="fill", fill_value=0.0)
            a_C, _ = _nearest_in_chunk(x_CxD, c_RxD, c2_R)
            return a_N.at[rows_C].set(a_C, mode="drop")

        return lax.fori_loop(0, (num_flagged + cs - 1) // cs, block, a_N)

    def full_pass(a_N):
        del a_N
        return _nearest_centroids(x_NxD, c_RxD, c2_R, chunk_size=chunk_size)[0]

    capacity = int(_RECHECK_CAPACITY * f)
    a_N = lax.cond(num_flagged <= capacity, recheck, full_pass, a_N)
    return a_N, num_flagged


def _screened_stats(
    x_NxD,
    points: _ScreenPoints,
    c_RxD,
    *,
    x2_N,
    precision: str,
    chunk_size: int,
    w_N=None,
    center=None,
) -> _ChunkStats:
    """`_assignment_stats` by way of the screen: the same assignments, sums and inertia.

    The per-row distances are only needed to re-seed empty clusters; they come from one
    float32 pass, run only when a cluster is empty.
    """
    c2_R = _squared_norms(c_RxD)
    a_N, _ = _screened_assignments(
        x_NxD, points, c_RxD, c2_R, precision=precision, chunk_size=chunk_size
    )
    sums_RxD, counts_R, inertia = _cluster_stats(
        x_NxD, c_RxD, a_N, x2_N=x2_N, w_N=w_N, center=center
    )

    def float32_sq_dists(_):
        _, smin_N = _nearest_centroids(x_NxD, c_RxD, c2_R, chunk_size=chunk_size)
        return _sq_dists(smin_N, x2_N)

    sq_dists_N = lax.cond(
        jnp.any(counts_R <= 0), float32_sq_dists, lambda _: jnp.zeros_like(x2_N), None
    )
    return _ChunkStats(sums_RxD, counts_R, inertia, a_N, sq_dists_N)


@functools.partial(jax.jit, static_argnames=("chunk_size", "precision"))
def _assign(x_NxD, c_RxD, *, chunk_size, precision):
    x2_N = _squared_norms(x_NxD)
    if precision == "fp32":
        stats = _assignment_stats(x_NxD, c_RxD, x2_N=x2_N, chunk_size=chunk_size)
        return stats.assignments, stats.sq_dists
    points = _screen_points(x_NxD, x2_N, precision=precision, chunk_size=chunk_size)
    a_N, _ = _screened_assignments(
        x_NxD, points, c_RxD, _squared_norms(c_RxD), precision=precision, chunk_size=chunk_size
    )

    def row_sq_dists(x_CxD, a_C):
        diff_CxD = x_CxD - c_RxD[a_C]
        return jnp.sum(diff_CxD * diff_CxD, axis=1)

    return a_N, map_row_chunks(row_sq_dists, x_NxD, a_N, chunk_size=chunk_size)


def assign_to_centroids(
    x_NxD: jax.Array,
    centroids_RxD: jax.Array,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    assign_precision: AssignPrecision = "fp32",
) -> tuple[jax.Array, jax.Array]:
    """Nearest centroid (squared L2) of every row, computed in row chunks.

    Args:
      x_NxD: points, float32 [N, D].
      centroids_RxD: centroids, float32 [R, D].
      chunk_size: rows per GEMM chunk; peak memory is O(chunk_size·R).
      assign_precision: `"fp32"` (default), or `"bf16"` / `"tf32"`: a low-precision GEMM
        screens the rows and those it cannot certify are re-checked in float32; the
        assignments equal the `"fp32"` ones (see `kmeans`).

    Returns:
      `(assignments [N] int32, sq_dists [N] float32)`; ties go to the lowest index. With a
      low-precision screen the distances are `Σ_k (x_ik − c_jk)²` summed row by row, equal
      to the `"fp32"` ones up to float32 rounding.

    Examples:
      >>> import jax.numpy as jnp
      >>> a, d2 = assign_to_centroids(jnp.array([[0.0], [0.9], [3.0]]), jnp.array([[0.0], [2.0]]))
      >>> a.tolist()
      [0, 0, 1]
    """
    x_NxD, centroids_RxD = _check_assign(x_NxD, centroids_RxD)
    return _assign(
        x_NxD,
        centroids_RxD,
        chunk_size=_positive(chunk_size, "chunk_size"),
        precision=_check_assign_precision(assign_precision),
    )


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
    sample_size, trials = _seeding_plan(n, k, sample_size, num_local_trials, "sample_size")
    w = jnp.ones((n,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    return _kmeans_plusplus(key, x_NxD, w, k=k, sample_size=sample_size, num_local_trials=trials)


def _seeding_plan(n, k, sample_size, num_local_trials, name: str) -> tuple[int, int]:
    """k-means++'s sample size (clipped to N) and trials per centre, checked against k."""
    sample_size = _default_sample_size(n, k) if sample_size is None else int(sample_size)
    if not k <= sample_size:
        raise ValueError(f"{name}={sample_size} must be at least k={k}.")
    trials = 2 + int(math.log(k)) if num_local_trials is None else int(num_local_trials)
    return min(sample_size, n), trials


def _check_start(key, init, *, k: int, d: int) -> jax.Array | None:
    """Checks the key (needed unless `init` is given) and `init` [k, D]; returns `init`."""
    if init is None or key is not None:
        check_key(key, "key")
    if init is None:
        return None
    if getattr(init, "shape", None) != (k, d):
        raise ValueError(f"init must have shape (k, d) = ({k}, {d}); got {init.shape}.")
    return as_features(init, "init", nonempty=True)


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


@functools.partial(jax.jit, static_argnames=("num_iters", "tol", "chunk_size", "precision"))
def _kmeans_from(x_NxD, w_N, c_RxD, *, num_iters, tol, chunk_size, precision="fp32"):
    k = c_RxD.shape[0]
    x2_N = _squared_norms(x_NxD)
    center = _center_of(x_NxD)
    if precision == "fp32":
        stats_fn = functools.partial(
            _assignment_stats, x_NxD, x2_N=x2_N, chunk_size=chunk_size, w_N=w_N, center=center
        )
    else:  # the screen's operand is loop-invariant: rounded once per fit
        points = _screen_points(x_NxD, x2_N, precision=precision, chunk_size=chunk_size)
        stats_fn = functools.partial(
            _screened_stats,
            x_NxD,
            points,
            x2_N=x2_N,
            precision=precision,
            chunk_size=chunk_size,
            w_N=w_N,
            center=center,
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
    return x, w, _check_start(key, init, k=k, d=d)


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
    assign_precision: AssignPrecision = "fp32",
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
      assign_precision: `"fp32"` (default): every distance in float32. `"bf16"` (CPUs with
        bf16 units) or `"tf32"` (GPU tensor cores): each iteration first assigns the rows
        of full chunks with a low-precision GEMM (float32 accumulation), bounds every
        row's rounding error (`_assignment_bound`: the actual rounding residuals of the
        operands, Cauchy–Schwarz and the γ_D dot-product bound) and re-runs in float32 the
        rows whose top-2 gap is within twice that bound; more than half the rows flagged
        runs one plain float32 pass instead. The result (assignments, centroids, inertia,
        iterations) equals the `"fp32"` one bit for bit: the re-check runs the float32
        pass's own chunk function on its chunk shape, and the inertia comes from the
        cluster sums. Costs one low-precision copy of `x` (2 bytes an entry for bf16).
        Measured (docs/benchmarks.md): 1.7× faster than `"fp32"` on one core, on par on
        two, where the screen's extra passes over the distance block dominate.

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
    precision = _check_assign_precision(assign_precision)
    x, w, init = _prepare(
        key, x_NxD, k=k, weights=weights, init=init, init_sample_size=init_sample_size
    )
    return _kmeans_from(
        x, w, init, num_iters=num_iters, tol=tol, chunk_size=chunk_size, precision=precision
    )
