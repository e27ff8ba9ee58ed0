"""One ECOS round, stage by stage, timed on a mesh of devices (the scaling study's core).

`measure_round` builds a synthetic round of given sizes on a 1-D mesh (possibly spanning
processes: each process generates only its own rows, `sharding.process_row_range`) and
times every stage after a warm-up, with `block_until_ready`, as the median of repeats:

  features   φ over the image pool, data-parallel (`sharding.sharded_features`)
  kmeans     Lloyd iterations on the pool features (`sharding.sharded_kmeans`)
  scoring    the client's coverage counts over its rows (`sharding.sharded_coverage_scores`)
  selection  candidate ranking + k-center (`sharded_selection.sharded_ecos_select`)
  train_step one data-parallel SGD step of FedBN's CNN on a global batch

The data are synthetic (Gaussian blobs, uniform-noise images) and a row's values depend on
its index only, so a round is the same whatever the number of devices or processes.
Timings on fake CPU devices share the same cores: they check that the study runs and what
it communicates, not speed.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import sharding
from ecos_jax.sharded_selection import sharded_ecos_select

__all__ = [
    "STAGES",
    "RoundSizes",
    "blob_rows",
    "measure_round",
    "median_seconds",
    "noise_images",
]

STAGES = ("features", "kmeans", "scoring", "selection", "train_step")

# Rows generated per random stream: a row's values depend on its index, not on the split.
_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class RoundSizes:
    """The sizes of one measured round."""

    pool_rows: int  # N, pool features clustered and selected from
    dim: int  # D, feature dimension
    clusters: int  # R, KMeans centroids
    client_rows: int  # M, the client's rows scored
    budget: int  # B, pool rows selected
    image_rows: int  # images mapped by φ
    image_size: int  # their side in pixels (φ resizes to its own resolution)
    kmeans_iters: int  # Lloyd iterations timed
    train_batch: int  # global batch of the training step

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RoundSizes.{field.name} must be a positive int, got {value!r}.")
        if self.budget > self.pool_rows:
            raise ValueError(
                f"RoundSizes.budget ({self.budget}) must be at most pool_rows ({self.pool_rows})."
            )
        if self.clusters > self.pool_rows:
            raise ValueError(
                f"RoundSizes.clusters ({self.clusters}) must be at most pool_rows "
                f"({self.pool_rows})."
            )


def _chunks(start: int, stop: int):
    for c in range(start // _CHUNK, -(-stop // _CHUNK)):
        lo, hi = max(start, c * _CHUNK), min(stop, (c + 1) * _CHUNK)
        yield c, lo - c * _CHUNK, hi - c * _CHUNK


def blob_rows(seed: int, start: int, stop: int, *, dim: int, num_blobs: int = 64) -> np.ndarray:
    """Rows `[start, stop)` of a Gaussian-blob matrix, float32 [stop - start, dim].

    Row i's value depends on (seed, i) only, so every process can make its own rows.

    Examples:
      >>> a = blob_rows(0, 0, 10, dim=3)
      >>> bool(np.array_equal(a[4:7], blob_rows(0, 4, 7, dim=3)))
      True
    """
    centers = np.random.default_rng([seed, 0]).normal(0.0, 4.0, (num_blobs, dim))
    parts = []
    for c, lo, hi in _chunks(start, stop):
        rng = np.random.default_rng([seed, 1, c])
        labels = rng.integers(num_blobs, size=_CHUNK)
        rows = centers[labels] + rng.normal(size=(_CHUNK, dim))
        parts.append(rows[lo:hi])
    return np.concatenate(parts or [np.zeros((0, dim))]).astype(np.float32)


def noise_images(seed: int, start: int, stop: int, *, size: int) -> np.ndarray:
    """Images `[start, stop)` of uniform uint8 noise, [stop - start, size, size, 3]."""
    parts = []
    for c, lo, hi in _chunks(start, stop):
        rng = np.random.default_rng([seed, 2, c])
        parts.append(rng.integers(0, 256, (_CHUNK, size, size, 3), dtype=np.uint8)[lo:hi])
    return np.concatenate(parts or [np.zeros((0, size, size, 3), np.uint8)])


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` calls after `warmup` untimed ones.

    Each call's result is waited for with `jax.block_until_ready`, so asynchronous
    dispatch does not hide the work.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}.")
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _local_rows(make, num_rows: int, mesh, *, fill=0) -> sharding.ShardedRows:
    start, stop = sharding.process_row_range(num_rows, mesh)
    return sharding.shard_process_rows(make(start, stop), num_rows=num_rows, mesh=mesh, fill=fill)


def _features_stage(mesh, sizes: RoundSizes, seed: int, phi, batch_size: int):
    apply_fn, variables = phi
    images = _local_rows(
        functools.partial(noise_images, seed + 3, size=sizes.image_size), sizes.image_rows, mesh
    )
    return lambda: (
        sharding.sharded_features(apply_fn, variables, images, mesh=mesh, batch_size=batch_size).x
    )


def _train_stage(mesh, sizes: RoundSizes, seed: int):
    from ecos_jax.models import DigitsCNN
    from ecos_jax.train import create_train_state, make_optimizer, train_step

    model = DigitsCNN(num_classes=10, width=0.25)  # the CPU protocol's width
    tx = make_optimizer("sgd", learning_rate=0.01, total_steps=10, warmup_steps=0)
    state = create_train_state(jax.random.key(seed), model, tx, jnp.zeros((1, 28, 28, 3)))
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    images = _local_rows(
        functools.partial(noise_images, seed + 4, size=28), sizes.train_batch, mesh
    )
    labels = _local_rows(
        lambda lo, hi: (np.arange(lo, hi) % 10).astype(np.int32), sizes.train_batch, mesh
    )
    # Padding rows (when the batch does not divide the mesh) are trained on as label 0:
    # a timing figure, not a model.
    x = images.x
    holder = {"state": state}
    key = jax.random.key(seed + 5)

    def step():
        holder["state"], metrics = train_step(holder["state"], (x, labels.x), key)
        return metrics["loss"]

    return step


def measure_round(
    mesh,
    sizes: RoundSizes,
    *,
    seed: int,
    stages: Sequence[str] = STAGES,
    repeats: int = 3,
    warmup: int = 1,
    phi: tuple[Callable, object] | None = None,
    phi_batch_size: int = 64,
) -> dict[str, float]:
    """Median seconds of each requested stage of one round on `mesh` (see the module doc).

    Args:
      mesh: a 1-D mesh (`sharding.make_mesh`), possibly over several processes.
      sizes: the round's sizes.
      seed: the synthetic data's seed (the same round on any mesh).
      stages: a subset of `STAGES`, in any order.
      repeats, warmup: timed and untimed calls per stage.
      phi: `(apply_fn, variables)` for the features stage (see `sharding.sharded_features`).
      phi_batch_size: images per device per φ call.

    Returns:
      `{stage: seconds}`; for "kmeans" the time of `sizes.kmeans_iters` Lloyd iterations
      plus the final assignment pass.
    """
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"stages must be among {STAGES}; got unknown {unknown}.")
    if "features" in stages and phi is None:
        raise ValueError("the 'features' stage needs phi=(apply_fn, variables).")
    out: dict[str, float] = {}
    timed = functools.partial(median_seconds, repeats=repeats, warmup=warmup)
    if "features" in stages:
        out["features"] = timed(_features_stage(mesh, sizes, seed, phi, phi_batch_size))
    pool = _local_rows(functools.partial(blob_rows, seed, dim=sizes.dim), sizes.pool_rows, mesh)
    result = None
    if {"kmeans", "scoring", "selection"} & set(stages):
        init = sharding.sharded_kmeans(
            jax.random.key(seed), pool, k=sizes.clusters, mesh=mesh, num_iters=1, tol=0.0
        ).centroids  # seeding (k-means++ on a sample) is not part of the timed stage

        def run_kmeans():
            return sharding.sharded_kmeans(
                None,
                pool,
                k=sizes.clusters,
                mesh=mesh,
                init=init,
                num_iters=sizes.kmeans_iters,
                tol=0.0,
            )

        result = run_kmeans()
        if "kmeans" in stages:
            out["kmeans"] = timed(lambda: run_kmeans().centroids)
    if {"scoring", "selection"} & set(stages):
        client = _local_rows(
            functools.partial(blob_rows, seed + 1, dim=sizes.dim), sizes.client_rows, mesh
        )

        def score():
            return sharding.sharded_coverage_scores(client, result.centroids, mesh=mesh)

        counts = score().counts
        if "scoring" in stages:
            out["scoring"] = timed(lambda: score().counts)
        if "selection" in stages:
            scores = counts.astype(np.float64)  # the noisy release is host-side and O(R)
            out["selection"] = timed(
                lambda: sharded_ecos_select(
                    pool,
                    result.assignments,
                    result.centroids,
                    scores,
                    mesh=mesh,
                    budget=sizes.budget,
                )
            )
    if "train_step" in stages:
        out["train_step"] = timed(_train_stage(mesh, sizes, seed))
    return {stage: out[stage] for stage in stages}
