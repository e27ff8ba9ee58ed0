"""Pairwise distances between feature rows, computed as GEMMs in row chunks.

Every distance in ecos_jax goes through this module so that the matmul precision is
set in one place: on GPUs float32 matmuls default to TF32, which can flip a
nearest-centroid choice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "PRECISION",
    "Metric",
    "all_finite",
    "check_metric",
    "map_row_chunks",
    "nearest_distance",
    "normalize_rows",
    "pairwise_distance",
    "sq_euclidean",
]

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


def sq_euclidean(x_NxD: jax.Array, y_RxD: jax.Array, *, precision=PRECISION) -> jax.Array:
    """Squared Euclidean distances `||x_i - y_j||²`, clamped at 0, shape [N, R]."""
    xy_NxR = jnp.matmul(x_NxD, y_RxD.T, precision=precision)
    x2_N1 = jnp.sum(x_NxD * x_NxD, axis=-1, keepdims=True)
    y2_1R = jnp.sum(y_RxD * y_RxD, axis=-1)[None, :]
    return jnp.maximum(x2_N1 - 2.0 * xy_NxR + y2_1R, 0.0)


def pairwise_distance(
    x_NxD: jax.Array, y_RxD: jax.Array, *, metric: Metric = "l2", precision=PRECISION
) -> jax.Array:
    """Distances [N, R]: Euclidean (`'l2'`) or `1 - cos` on normalised rows (`'cosine'`)."""
    check_metric(metric)
    if metric == "l2":
        return jnp.sqrt(sq_euclidean(x_NxD, y_RxD, precision=precision))
    xy_NxR = jnp.matmul(normalize_rows(x_NxD), normalize_rows(y_RxD).T, precision=precision)
    return jnp.clip(1.0 - xy_NxR, 0.0, 2.0)


def map_row_chunks(fn: Callable[..., Any], *arrays_N: jax.Array, chunk_size: int):
    """Applies `fn(*chunks) -> pytree of [C, ...]` over row chunks of arrays sharing N rows.

    Full chunks are sliced in place (`dynamic_slice` inside a `fori_loop`, no padded copy
    of the inputs, which can be gigabytes) and the remainder rows form one smaller chunk, so
    only one chunk's intermediates (e.g. a [C, R] distance block) is alive at a time. The
    outputs are written into [N, ...] buffers.
    """
    n = arrays_N[0].shape[0]
    if any(a.shape[0] != n for a in arrays_N):
        raise ValueError(f"arrays must share their first dim; got {[a.shape for a in arrays_N]}")
    cs = max(1, min(int(chunk_size), n))
    num_full, tail = divmod(n, cs)
    specs = [jax.ShapeDtypeStruct((cs, *a.shape[1:]), a.dtype) for a in arrays_N]
    out_shapes = jax.eval_shape(fn, *specs)
    out = jax.tree.map(lambda s: jnp.zeros((n, *s.shape[1:]), s.dtype), out_shapes)

    def body(i, out):
        start = i * cs
        res = fn(*(lax.dynamic_slice_in_dim(a, start, cs) for a in arrays_N))
        return jax.tree.map(lambda o, r: lax.dynamic_update_slice_in_dim(o, r, start, 0), out, res)

    out = lax.fori_loop(0, num_full, body, out)
    if tail:
        start = num_full * cs
        res = fn(*(a[start:] for a in arrays_N))
        out = jax.tree.map(lambda o, r: o.at[start:].set(r), out, res)
    return out


@functools.partial(jax.jit, static_argnames=("metric", "chunk_size"))
def nearest_distance(
    x_NxD: jax.Array, y_MxD: jax.Array, *, metric: Metric = "l2", chunk_size: int = 1024
) -> jax.Array:
    """For every row of `x`, the distance to its nearest row of `y`, [N] (x in row chunks)."""

    def fn(x_CxD):
        return jnp.min(pairwise_distance(x_CxD, y_MxD, metric=metric), axis=1)

    return map_row_chunks(fn, x_NxD, chunk_size=chunk_size)
