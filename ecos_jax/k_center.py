"""Greedy k-center (farthest point) selection, one set at a time or many sets at once.

`greedy_k_center` orders the rows of one padded candidate set: each pick is the valid row
farthest from everything chosen so far, kept in a running min-distance vector, so a pick
costs one pass over the candidates and no distance matrix is formed.

`grouped_k_center` serves ECOS's per-cluster step. Greedy picks are prefix-consistent (the
first n picks of a longer run are the n-pick run), so every candidate set can be ordered
with one program whose shapes depend on its padded size `P = grouped_size(len(set))`
alone: sets of one P are ordered together, `clusters_per_chunk(P, D)` sets per call, with
masked dummy sets filling the last chunk, and the number of picks is a traced loop bound.
A new budget changes which sets exist and how many picks each needs, never a shape, so it
compiles nothing new: at most one program per distinct P.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3.3;
  Sener & Savarese. "Active Learning for Convolutional Neural Networks: A Core-Set
  Approach." ICLR 2018 (k-center greedy).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax.distances import PRECISION, Metric, check_metric, normalize_rows

__all__ = [
    "CHUNK_BYTES",
    "MAX_CLUSTERS_PER_CHUNK",
    "MIN_BUCKET",
    "MIN_GROUP_BUCKET",
    "KCenterResult",
    "bucket_size",
    "clusters_per_chunk",
    "greedy_k_center",
    "grouped_k_center",
    "grouped_size",
]

#: Smallest padded candidate-set size; sets are padded to powers of two above it.
MIN_BUCKET = 8

#: Smallest padded size in `grouped_k_center`: every set of up to 128 candidates shares one
#: program. Ordering a set of 10 among 128 padded rows costs microseconds; another compile
#: costs a few tenths of a second.
MIN_GROUP_BUCKET = 128

#: Cap on the gathered float32 features of one `grouped_k_center` call, [G, P, D]. The
#: program holds about three such blocks at once (the gather, its cosine-normalised copy
#: and XLA's temporaries), so 32 MiB keeps one call near 100 MiB whatever P and D are.
CHUNK_BYTES = 32 * 2**20

#: Most candidate sets ordered by one call; small sets are padded up to it with dummies.
MAX_CLUSTERS_PER_CHUNK = 64


class KCenterResult(NamedTuple):
    """Output of `greedy_k_center`, padded to `num_select` picks."""

    indices: jax.Array  # [S] int32, row indices in pick order; -1 where `valid` is False
    valid: jax.Array  # [S] bool, False once every unmasked row has been picked


def bucket_size(n: int, *, minimum: int = MIN_BUCKET) -> int:
    """Smallest power of two >= max(n, minimum): the padded size of a candidate set."""
    return max(int(minimum), 1 << max(int(n) - 1, 0).bit_length())


def grouped_size(n: int) -> int:
    """P, the padded size of a set of `n` candidates in `grouped_k_center`.

    Examples:
      >>> grouped_size(5), grouped_size(128), grouped_size(129), grouped_size(1000)
      (128, 128, 256, 1024)
    """
    return bucket_size(n, minimum=MIN_GROUP_BUCKET)


def clusters_per_chunk(padded_size: int, dim: int) -> int:
    """G(P, D): candidate sets per `grouped_k_center` call, [G, P, D] float32 <= CHUNK_BYTES.

    Examples:
      >>> clusters_per_chunk(32, 64), clusters_per_chunk(4096, 512), clusters_per_chunk(2**16, 512)
      (64, 4, 1)
    """
    fit = CHUNK_BYTES // (4 * max(int(padded_size), 1) * max(int(dim), 1))
    return max(1, min(MAX_CLUSTERS_PER_CHUNK, fit))


def _point_dissimilarity(x_PxD: jax.Array, sq_P: jax.Array, p_D: jax.Array, metric: str):
    """Monotone distance from every row to one point: squared L2, or `1 - cos`.

    One matrix-vector product per call (4x faster than forming `x - p` on CPU); for
    cosine the rows and the point must be unit-norm and `sq_P` is unused.
    """
    xp_P = jnp.matmul(x_PxD, p_D, precision=PRECISION)
    if metric == "l2":
        return jnp.maximum(sq_P - 2.0 * xp_P + jnp.sum(p_D * p_D), 0.0)
    return jnp.clip(1.0 - xp_P, 0.0, 2.0)


def _farthest_point_loop(
    x_PxD: jax.Array,
    mask_P: jax.Array,
    init_min_P: jax.Array,
    *,
    num_select: int,
    metric: str,
    num_steps: jax.Array | None = None,
) -> KCenterResult:
    """Greedy farthest-point picks from a running min-distance vector (one pass per pick).

    `init_min_P` and the running minimum are in `_point_dissimilarity` units. With
    `num_steps` (traced) only that many picks are made; the rest stay -1 / False.
    """
    sq_P = jnp.sum(x_PxD * x_PxD, axis=-1)
    # Picked and masked-out rows sit at -inf, so argmax never returns them while a valid
    # row is left.
    min_P = jnp.where(mask_P, init_min_P.astype(jnp.float32), -jnp.inf)
    idx_S = jnp.full((num_select,), -1, dtype=jnp.int32)
    valid_S = jnp.zeros((num_select,), dtype=bool)

    def body(i, carry):
        min_P, idx_S, valid_S = carry
        j = jnp.argmax(min_P)
        ok = min_P[j] > -jnp.inf
        d_P = _point_dissimilarity(x_PxD, sq_P, x_PxD[j], metric)
        min_P = jnp.where(ok, jnp.minimum(min_P, d_P), min_P).at[j].set(-jnp.inf)
        idx_S = idx_S.at[i].set(jnp.where(ok, j, -1).astype(jnp.int32))
        valid_S = valid_S.at[i].set(ok)
        return min_P, idx_S, valid_S

    upper = num_select if num_steps is None else jnp.minimum(num_steps, num_select)
    _, idx_S, valid_S = jax.lax.fori_loop(0, upper, body, (min_P, idx_S, valid_S))
    return KCenterResult(indices=idx_S, valid=valid_S)


def _k_center_picks(x_PxD, mask_P, seed_point_D, *, num_select, metric, num_steps=None):
    """`greedy_k_center`'s computation on checked inputs (vmappable; seed may be None)."""
    x_PxD = x_PxD.astype(jnp.float32)
    if metric == "cosine":
        x_PxD = normalize_rows(x_PxD)
    if seed_point_D is None:
        init_P = jnp.full((x_PxD.shape[0],), jnp.inf, dtype=jnp.float32)
    else:
        p_D = seed_point_D.astype(jnp.float32)
        if metric == "cosine":
            p_D = normalize_rows(p_D[None, :])[0]
        init_P = _point_dissimilarity(x_PxD, jnp.sum(x_PxD * x_PxD, axis=-1), p_D, metric)
    return _farthest_point_loop(
        x_PxD,
        mask_P.astype(bool),
        init_P,
        num_select=num_select,
        metric=metric,
        num_steps=num_steps,
    )


@functools.partial(jax.jit, static_argnames=("num_select", "metric"))
def greedy_k_center(
    features_PxD: jax.Array,
    mask_P: jax.Array,
    *,
    num_select: int,
    seed_point_D: jax.Array | None = None,
    metric: Metric = "l2",
) -> KCenterResult:
    """Greedy k-center (farthest-point) selection among the unmasked rows.

    Each pick is the valid row farthest from everything chosen so far; a running
    min-distance vector makes one pick cost one pass over the candidates (no distance
    matrix). With `seed_point_D` the seed (e.g. the cluster centroid) counts as already
    chosen, so the first pick is the valid row farthest from it; without it the first
    pick is the first valid row. Pad candidate sets to a fixed size and mask the padding
    so that one compile serves many sets.

    Args:
      features_PxD: candidate features, shape [P, D].
      mask_P: bool [P]; False rows (padding) are never picked.
      num_select: number of picks (static), `1 <= num_select <= P`.
      seed_point_D: optional point [D] treated as an already-chosen center.
      metric: `'l2'` (Euclidean) or `'cosine'` (`1 - cos`).

    Returns:
      `KCenterResult(indices [S] int32, valid [S] bool)`; once every valid row has been
      picked the remaining entries are `-1` / False.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3 "diversity"; Sener & Savarese,
      ICLR 2018 (k-center greedy).
    """
    check_metric(metric)
    if features_PxD.ndim != 2:
        raise ValueError(f"features_PxD must be 2-D [P, D], got shape {features_PxD.shape}.")
    num_rows, dim = features_PxD.shape
    if mask_P.shape != (num_rows,):
        raise ValueError(f"mask_P must have shape ({num_rows},), got {mask_P.shape}.")
    if not 1 <= num_select <= num_rows:
        raise ValueError(f"num_select must be in [1, {num_rows}] (the rows), got {num_select}.")
    if seed_point_D is not None and seed_point_D.shape != (dim,):
        raise ValueError(f"seed_point_D must have shape ({dim},), got {seed_point_D.shape}.")
    return _k_center_picks(features_PxD, mask_P, seed_point_D, num_select=num_select, metric=metric)


@functools.partial(jax.jit, static_argnames=("metric",))
def _order_chunk(x_NxD, rows_GxP, mask_GxP, seeds_GxD, num_steps, *, metric: str):
    """The first `num_steps` greedy picks of G padded candidate sets, [G, P] local indices."""
    padded = rows_GxP.shape[1]
    pick = functools.partial(_k_center_picks, num_select=padded, metric=metric, num_steps=num_steps)
    res = jax.vmap(pick)(x_NxD[rows_GxP], mask_GxP, seeds_GxD)
    return res.indices, res.valid


@functools.lru_cache(maxsize=32)
def _sharded_order_chunk(mesh, metric: str):
    """`_order_chunk` with the G sets split over the devices of a 1-D `mesh`."""
    from jax.sharding import PartitionSpec as P

    (axis,) = mesh.axis_names

    def per_shard(x_NxD, rows_gxP, mask_gxP, seeds_gxD, num_steps):
        return _order_chunk(x_NxD, rows_gxP, mask_gxP, seeds_gxD, num_steps, metric=metric)

    fn = jax.shard_map(
        per_shard,
        mesh=mesh,
        in_specs=(P(), P(axis), P(axis), P(axis), P()),
        out_specs=(P(axis), P(axis)),
        check_vma=False,
    )
    return jax.jit(fn)


def grouped_k_center(
    x_NxD: jax.Array,
    candidates: Sequence[np.ndarray],
    seed_points: np.ndarray,
    num_select: Sequence[int],
    *,
    metric: Metric = "l2",
    mesh=None,
) -> list[np.ndarray]:
    """The first `num_select[i]` greedy k-center picks in each candidate set, by batches.

    The same picks as `greedy_k_center` on each set (same order, same tie-breaking: the
    lowest position wins; padding never changes a pick), but sets of one padded size
    `P = grouped_size(len(set))` share one compiled program, `clusters_per_chunk(P, D)`
    sets per call: the compile count depends on the distinct P only, never on
    `num_select`.

    Args:
      x_NxD: all rows the sets index into, [N, D] (gathered on device, never copied).
      candidates: per set, int row indices into `x_NxD`, non-empty.
      seed_points: [len(candidates), D], per set the point counted as already chosen
        (ECOS: the cluster centroid).
      num_select: per set, the number of picks, `1 <= num_select[i] <= len(candidates[i])`.
      metric: `'l2'` or `'cosine'`.
      mesh: a 1-D `jax.sharding.Mesh`: each call then orders up to `mesh.size` times as
        many sets, split over the devices (the sets are independent), each device at
        most its share rounded up to a power of two; `x_NxD` must be replicated on the
        mesh (or a host array). The picks are the same.

    Returns:
      Per set, int64 row indices into `x_NxD` (a subset of its candidates) in pick order.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3 "diversity".
    """
    check_metric(metric)
    seeds = np.asarray(seed_points, np.float32)
    dim = int(x_NxD.shape[1])
    if seeds.shape != (len(candidates), dim):
        raise ValueError(
            f"seed_points must have shape ({len(candidates)}, {dim}), got {seeds.shape}."
        )
    if len(num_select) != len(candidates):
        raise ValueError(
            f"num_select must hold one count per set ({len(candidates)}), got {len(num_select)}."
        )
    out: list[np.ndarray | None] = [None] * len(candidates)
    groups: dict[int, list[int]] = {}
    for i, (rows, n) in enumerate(zip(candidates, num_select, strict=True)):
        if not 1 <= int(n) <= len(rows):
            raise ValueError(f"num_select[{i}]={n} must be in [1, {len(rows)}] (the set).")
        groups.setdefault(grouped_size(len(rows)), []).append(i)
    if mesh is None:
        order, per_device = functools.partial(_order_chunk, metric=metric), 1
        as_input = as_steps = jnp.asarray
        to_host = np.asarray
    else:
        from ecos_jax.sharding import gather_to_host as to_host
        from ecos_jax.sharding import to_mesh

        order, per_device = _sharded_order_chunk(mesh, metric), mesh.size
        as_input = functools.partial(to_mesh, mesh=mesh, split=True)
        as_steps = functools.partial(to_mesh, mesh=mesh, split=False)
        if not isinstance(x_NxD, jax.Array):
            x_NxD = to_mesh(np.asarray(x_NxD, np.float32), mesh, split=False)
    for padded, members in sorted(groups.items()):
        per_call = clusters_per_chunk(padded, dim)
        if mesh is not None:
            # Each device takes at most its share of the sets, rounded up to a power of two:
            # a lone large set is not padded with dummies on every device (at most
            # log2(MAX_CLUSTERS_PER_CHUNK) + 1 programs per P).
            share = bucket_size(-(-len(members) // per_device), minimum=1)
            per_call = min(per_call, share) * per_device
        for start in range(0, len(members), per_call):
            chunk = members[start : start + per_call]
            rows_GxP = np.zeros((per_call, padded), np.int32)
            mask_GxP = np.zeros((per_call, padded), bool)
            seeds_GxD = np.zeros((per_call, dim), np.float32)
            for g, i in enumerate(chunk):
                rows_GxP[g, : len(candidates[i])] = candidates[i]
                mask_GxP[g, : len(candidates[i])] = True
                seeds_GxD[g] = seeds[i]
            steps = max(int(num_select[i]) for i in chunk)
            idx_GxP, valid_GxP = (
                to_host(a)
                for a in order(
                    x_NxD,
                    as_input(rows_GxP),
                    as_input(mask_GxP),
                    as_input(seeds_GxD),
                    as_steps(np.asarray(steps, np.int32)),
                )
            )
            for g, i in enumerate(chunk):
                n = int(num_select[i])
                assert np.all(valid_GxP[g, :n]), "a set ran out of candidates before n picks"
                out[i] = np.asarray(candidates[i], np.int64)[idx_GxP[g, :n]]
    return out  # type: ignore[return-value]
