"""ECOS selection at scale against one KMeans iteration on the same pool, in one run.

    python -m experiments.bench_selection_at_scale     # N=1,000,000, D=512, R=1000, B=10,000
    python -m experiments.bench_selection_at_scale --rows=100000 --dim=128 --clusters=256 \
        --budget=5000
    JAX_NUM_CPU_DEVICES=8 python -m experiments.bench_selection_at_scale --mesh=8  # + 8 devices

The pool is Gaussian blobs (`ecos_jax.scaling.blob_rows`), clustered by `ecos_jax.kmeans`
with `--kmeans_iters` Lloyd iterations from k-means++ seeding; the scores are positive
integers per cluster. Every figure is the median of `--repeats` timed calls after one
warm-up call (compiles excluded), with `block_until_ready` / host results:

  kmeans_iteration_s  one Lloyd iteration: t(num_iters=2) - t(num_iters=1), same init
  ranking_s           the distance of every pool row to its own centroid (the O(N·D) part)
  select_s            `sampling.ecos_select` end to end (filter, allocate, rank, k-center)
  sharded_select_s    `sharded_selection.sharded_ecos_select` on a 1-device mesh and, with
                      `--mesh=M`, on M devices (fake CPU devices share the cores: that
                      figure checks the result, it is not a speedup)

and the ratio of each to one KMeans iteration. Whether every sharded selection equals the
single-device one is printed too. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _median(fn, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn())  # warm-up: compiles
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(args) -> dict:
    import jax
    import jax.numpy as jnp

    from ecos_jax import kmeans, sampling, scaling, sharding
    from ecos_jax.sharded_selection import sharded_ecos_select

    t0 = time.perf_counter()
    pool = scaling.blob_rows(args.seed, 0, args.rows, dim=args.dim, num_blobs=args.clusters)
    x = jnp.asarray(pool)
    print(f"pool {args.rows:,} x {args.dim} made in {time.perf_counter() - t0:.1f} s", flush=True)
    init = kmeans.kmeans(jax.random.key(args.seed), x, k=args.clusters, num_iters=1).centroids

    def lloyd(iters):
        return lambda: (
            kmeans.kmeans(None, x, k=args.clusters, init=init, num_iters=iters, tol=0.0).centroids
        )

    t1 = _median(lloyd(1), args.repeats)
    t2 = _median(lloyd(2), args.repeats)
    res = kmeans.kmeans(None, x, k=args.clusters, init=init, num_iters=args.kmeans_iters, tol=0.0)
    a = np.asarray(res.assignments)
    c = np.asarray(res.centroids)
    scores = np.random.default_rng(args.seed).integers(1, 200, args.clusters).astype(np.float64)
    figures = {
        "rows": args.rows,
        "dim": args.dim,
        "clusters": args.clusters,
        "budget": args.budget,
        "kappa": args.kappa,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "kmeans_iteration_s": t2 - t1,
    }
    a_dev = jnp.asarray(a)
    figures["ranking_s"] = _median(
        lambda: sampling._distance_to_own_centroid(
            x, res.centroids, a_dev, metric="l2", chunk_size=sampling.DEFAULT_CHUNK_SIZE
        ),
        args.repeats,
    )

    def select():
        return sampling.ecos_select(x, a, c, scores, budget=args.budget, kappa=args.kappa)

    want = select()
    figures["select_s"] = _median(select, args.repeats)
    for devices in sorted({1, args.mesh}):
        mesh = sharding.make_mesh(devices)
        rows = sharding.shard_process_rows(pool, num_rows=args.rows, mesh=mesh)

        def sharded(mesh=mesh, rows=rows):
            return sharded_ecos_select(
                rows, a, c, scores, mesh=mesh, budget=args.budget, kappa=args.kappa
            )

        figures[f"sharded_select_{devices}dev_equal"] = bool(np.array_equal(sharded(), want))
        figures[f"sharded_select_{devices}dev_s"] = _median(sharded, args.repeats)
    for name in [k for k in figures if k.endswith("_s") and k != "kmeans_iteration_s"]:
        figures[name.removesuffix("_s") + "_vs_kmeans_iteration"] = (
            figures[name] / figures["kmeans_iteration_s"]
        )
    return figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--kappa", type=float, default=1.5)
    parser.add_argument("--kmeans_iters", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mesh", type=int, default=1, help="also run sharded on this many devices")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("rows", "dim", "clusters", "budget", "kmeans_iters", "repeats", "mesh"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name} must be >= 1, got {getattr(args, name)}.")
    if args.budget > args.rows or args.clusters > args.rows:
        sys.exit("--budget and --clusters must be at most --rows.")
    figures = run(args)
    width = max(map(len, figures))
    for k, v in figures.items():
        print(f"{k:{width}s}  {v:.4f}" if isinstance(v, float) else f"{k:{width}s}  {v}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
