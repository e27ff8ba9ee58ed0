"""Pairwise distances between feature rows, computed as GEMMs in row chunks.

Every distance in ecos_jax goes through this module so that the matmul precision is
set in one place: on GPUs float32 matmuls default to TF32, which can flip a
nearest-centroid choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

Metric = Literal["l2", "cosine"]

#: Matmul precision used for every distance GEMM (float32 accumulate, no TF32).
PRECISION = lax.Precision.HIGHEST


def check_metric(metric: str) -> None:
    """Raises a clear error for an unknown `metric`."""
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}.")


@jax.jit
def all_finite(x: jax.Array) -> jax.Array:
    """True when no entry is NaN or inf; fused under jit, so no N×d boolean temporary."""
    return jnp.isfinite(x).all()


def normalize_rows(x_NxD: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Scales each row to unit L2 norm (rows of zeros stay zero)."""
    norm_N1 = jnp.linalg.norm(x_NxD, axis=-1, keepdims=True)
    return x_NxD / jnp.maximum(norm_N1, eps)


def sq_euclidean(x_NxD: jax.Array, y_KxD: jax.Array, *, precision=PRECISION) -> jax.Array:
    """Squared Euclidean distances `||x_i - y_j||²`, clamped at 0, shape [N, K]."""
    xy_NxK = jnp.matmul(x_NxD, y_KxD.T, precision=precision)
    x2_N1 = jnp.sum(x_NxD * x_NxD, axis=-1, keepdims=True)
    y2_1K = jnp.sum(y_KxD * y_KxD, axis=-1)[None, :]
    return jnp.maximum(x2_N1 - 2.0 * xy_NxK + y2_1K, 0.0)


def pairwise_distance(
    x_NxD: jax.Array, y_KxD: jax.Array, *, metric: Metric = "l2", precision=PRECISION
) -> jax.Array:
    """Distances [N, K]: Euclidean (`'l2'`) or `1 - cos` on normalised rows (`'cosine'`)."""
    check_metric(metric)
    if metric == "l2":
        return jnp.sqrt(sq_euclidean(x_NxD, y_KxD, precision=precision))
    xy_NxK = jnp.matmul(normalize_rows(x_NxD), normalize_rows(y_KxD).T, precision=precision)
    return jnp.clip(1.0 - xy_NxK, 0.0, 2.0)


def map_row_chunks(
    fn: Callable[[jax.Array, jax.Array], jax.Array | tuple],
    x_NxD: jax.Array,
    *,
    chunk_size: int,
):
    """Applies `fn(x_chunk_CxD, valid_C) -> pytree of [C, ...]` over row chunks of `x`.

    Rows are padded up to a multiple of `chunk_size` (the padding is marked invalid in
    `valid_C`) and the chunks run sequentially under `lax.map`, so only one chunk's
    intermediates (e.g. a [C, K] distance block) is alive at a time. The outputs are
    concatenated and trimmed back to N rows.
    """
    n = x_NxD.shape[0]
    chunk_size = max(1, min(int(chunk_size), n))
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n
    x_pad = jnp.pad(x_NxD, ((0, pad), (0, 0)))
    valid = jnp.arange(num_chunks * chunk_size) < n
    xs = (x_pad.reshape(num_chunks, chunk_size, -1), valid.reshape(num_chunks, chunk_size))
    out = lax.map(lambda args: fn(*args), xs)
    return jax.tree.map(lambda a: a.reshape((num_chunks * chunk_size, *a.shape[2:]))[:n], out)
