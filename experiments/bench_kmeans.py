"""KMeans throughput: ecos_jax vs faiss-cpu vs scikit-learn, side by side in one run.

    python -m experiments.bench_kmeans                # N=200000, d=128, K=256, 20 iters
    python -m experiments.bench_kmeans --scale        # + the 1M×512 scale point (K=1000)

All three start from the same k-means++ centroids on the same seeded blob data and run
exactly `--iters` Lloyd iterations (faiss's subsampling is disabled by raising
`max_points_per_centroid`). Timings follow one warm-up run each (ours compiles there) and
are the median of `--repeats` interleaved runs. GFLOP/s counts the assignment GEMM only:
`2·N·K·d·iters / seconds`. Inertias are compared at the last iteration's assignment.

The scale point runs in a child process so that its peak RSS is its own: KMeans (K=1000,
20 iterations), Voronoi scoring of a client set, and ECOS selection (B=10000) on a
1,000,000 × 512 pool (the N×K distance matrix alone would be 4 GB).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from jax import lax

from ecos_jax import kmeans as kmeans_lib
from ecos_jax.distances import PRECISION
from ecos_jax.keys import named_key


def blob_data(seed: int, n: int, d: int, num_centers: int) -> np.ndarray:
    """A seeded mixture of overlapping unit-variance Gaussians, float32 [n, d].

    The clusters overlap (centres ~ N(0, I)), like real embeddings, so Lloyd does not
    converge within the benchmark's iterations and every implementation runs all of them.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_centers, d)).astype(np.float32)
    x = centers[rng.integers(0, num_centers, n)]
    x += rng.standard_normal((n, d), dtype=np.float32)
    return x


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_ours(x, init, iters, chunk_size):
    res = kmeans_lib.kmeans(
        None, x, k=init.shape[0], init=init, num_iters=iters, tol=0.0, chunk_size=chunk_size
    )
    jax.block_until_ready(res)
    return res


def run_faiss(x, init, iters):
    import faiss

    km = faiss.Kmeans(
        x.shape[1],
        init.shape[0],
        niter=iters,
        seed=0,
        verbose=False,
        max_points_per_centroid=x.shape[0] + 1,
        min_points_per_centroid=1,
    )
    km.train(x, init_centroids=init)
    return km


def run_sklearn(x, init, iters):
    from sklearn.cluster import KMeans

    return KMeans(
        init.shape[0], init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd"
    ).fit(x)


def gpu_peak_fp32_tflops() -> float | None:
    """fp32 (non-tensor-core) peak of known cards, for the fraction-of-peak figure."""
    kind = jax.devices()[0].device_kind.lower()
    for name, tflops in (("h200", 67.0), ("h100", 67.0), ("a100", 19.5), ("v100", 15.7)):
        if name in kind:
            return tflops
    return None


def main_benchmark(args) -> dict:
    n, d, k, iters = args.n, args.d, args.k, args.iters
    flops = 2.0 * n * k * d * iters
    x = blob_data(args.seed, n, d, 4 * k)
    x_dev = jnp.asarray(x)
    init = np.asarray(kmeans_lib.kmeans_plusplus_init(jax.random.key(args.seed), x_dev, k=k))
    init_dev = jnp.asarray(init)
    print(
        f"data: N={n} d={d} K={k} iters={iters}, {4 * k} overlapping blobs, seed {args.seed}; "
        f"device "
        f"{jax.devices()[0].device_kind} ({jax.default_backend()}); matmul precision "
        f"{PRECISION.name}; {os.cpu_count()} CPUs"
    )

    runners = {
        "ours": lambda: run_ours(x_dev, init_dev, iters, args.chunk_size),
        "faiss": lambda: run_faiss(x, init, iters),
        "sklearn": lambda: run_sklearn(x, init, iters),
    }
    if args.skip_sklearn:
        runners.pop("sklearn")
    results = {name: fn() for name, fn in runners.items()}  # warm-up (and compile)
    times = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, fn in runners.items():
            times[name].append(_timed(fn))

    ours = results["ours"]
    assert int(ours.num_iters) == iters, "ours stopped early; use data that does not converge"
    inertia = {
        "ours": float(ours.inertia_history[iters - 1]),
        "faiss": float(results["faiss"].obj[-1]),
    }
    iters_run = {"ours": iters, "faiss": iters}
    if "sklearn" in results:
        inertia["sklearn"] = float(results["sklearn"].inertia_)
        iters_run["sklearn"] = int(results["sklearn"].n_iter_)
    gflops = {
        name: 2.0 * n * k * d * iters_run[name] / statistics.median(ts) / 1e9
        for name, ts in times.items()
    }
    print(f"\n{'impl':8s} {'median s':>9s} {'GFLOP/s':>8s} {'iters':>6s} {'inertia':>14s}")
    for name in runners:
        print(
            f"{name:8s} {statistics.median(times[name]):9.3f} {gflops[name]:8.1f} "
            f"{iters_run[name]:6d} {inertia[name]:14.6g}"
        )
    out = {
        "n": n,
        "d": d,
        "k": k,
        "iters": iters,
        "backend": jax.default_backend(),
        "matmul_precision": PRECISION.name,
        "ours_gflops": round(gflops["ours"], 2),
        "faiss_gflops": round(gflops["faiss"], 2),
        "sklearn_gflops": round(gflops["sklearn"], 2) if "sklearn" in gflops else None,
        "ratio_vs_faiss": round(gflops["ours"] / gflops["faiss"], 3),
        "inertia_rel_diff_vs_faiss": abs(inertia["ours"] - inertia["faiss"]) / inertia["faiss"],
        "flops_per_run": flops,
    }
    peak = gpu_peak_fp32_tflops()
    if jax.default_backend() == "gpu" and peak:
        out["gpu_fraction_of_fp32_peak"] = round(gflops["ours"] / (peak * 1e3), 3)
    print(
        f"\nours / faiss = {out['ratio_vs_faiss']:.2f}x; inertia rel. diff vs faiss "
        f"{out['inertia_rel_diff_vs_faiss']:.2e}"
    )
    return out


def scale_point(args) -> dict:
    """KMeans, Voronoi scoring and ECOS selection on a big pool; wall time and peak RSS."""
    from ecos_jax import coverage, privacy, sampling

    n, d, k, budget = args.scale_n, args.scale_d, args.scale_k, args.scale_budget
    root = jax.random.key(args.seed)
    k_pool, k_client, k_init, k_centers = (
        named_key(root, name) for name in ("pool", "client", "kmeans_init", "centers")
    )
    stages, peaks = {}, {}
    rss = PeakRss()

    with rss.track(peaks, "generate"):
        t = time.perf_counter()
        centers = 2.0 * jax.random.normal(k_centers, (k, d))
        pool = jax.block_until_ready(make_pool(k_pool, centers, n=n))
        client_rows = jnp.arange(args.scale_clients) * (n // args.scale_clients)
        client = pool[client_rows] + 0.1 * jax.random.normal(k_client, (args.scale_clients, d))
        client = jax.block_until_ready(client)
        stages["generate_s"] = time.perf_counter() - t

    with rss.track(peaks, "kmeans"):
        t = time.perf_counter()
        res = kmeans_lib.kmeans(
            k_init, pool, k=k, num_iters=20, tol=0.0, chunk_size=args.chunk_size
        )
        jax.block_until_ready(res)
        stages["kmeans_s"] = time.perf_counter() - t

    with rss.track(peaks, "voronoi_scores"):
        t = time.perf_counter()
        scores = coverage.voronoi_scores(client, res.centroids)
        sigma = privacy.calibrate_sigma(0.58, delta=1e-5)
        # The secure path, as deployed (OpenDP discrete Gaussian, OS entropy).
        noisy = privacy.privatize(scores, sigma=sigma)
        stages["voronoi_scores_s"] = time.perf_counter() - t

    with rss.track(peaks, "ecos_select"):
        t = time.perf_counter()
        sel = sampling.ecos_select(pool, res.assignments, res.centroids, noisy, budget=budget)
        stages["ecos_select_s"] = time.perf_counter() - t
    assert len(np.unique(sel)) == budget

    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "n": n,
        "d": d,
        "k": k,
        "budget": budget,
        "clients": args.scale_clients,
        "kmeans_iters": int(res.num_iters),
        "pool_gib": round(n * d * 4 / 2**30, 2),
        **{s: round(v, 2) for s, v in stages.items()},
        **{f"peak_rss_{s}_gib": round(v / 2**30, 2) for s, v in peaks.items()},
        "peak_rss_gib": round(peak_gib, 2),
    }


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return next(b for b in range(min(n, limit), 0, -1) if n % b == 0)


@functools.partial(jax.jit, static_argnames=("n",))
def make_pool(key, centers_KxD, *, n: int):
    """n rows around random centres, generated on the device block by block, in place."""
    k, d = centers_KxD.shape
    block = _largest_divisor_at_most(n, 16384)

    def body(i, buf):
        key_i = jax.random.fold_in(key, i)  # the block's key, by step
        which = jax.random.randint(named_key(key_i, "centre"), (block,), 0, k)
        noise = jax.random.normal(named_key(key_i, "noise"), (block, d))
        return lax.dynamic_update_slice_in_dim(buf, centers_KxD[which] + noise, i * block, 0)

    return lax.fori_loop(0, n // block, body, jnp.zeros((n, d), jnp.float32))


class PeakRss:
    """Samples this process's resident memory every few ms; the max over a `track` block."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.process = psutil.Process()

    @contextlib.contextmanager
    def track(self, peaks: dict, stage: str):
        stop = threading.Event()
        peak = [self.process.memory_info().rss]

        def poll():
            while not stop.is_set():
                peak[0] = max(peak[0], self.process.memory_info().rss)
                stop.wait(self.interval_s)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            peaks[stage] = max(peak[0], self.process.memory_info().rss)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=kmeans_lib.DEFAULT_CHUNK_SIZE)
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--scale", action="store_true", help="also run the 1M×512 scale point")
    p.add_argument("--scale-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scale-n", type=int, default=1_000_000)
    p.add_argument("--scale-d", type=int, default=512)
    p.add_argument("--scale-k", type=int, default=1000)
    p.add_argument("--scale-budget", type=int, default=10_000)
    p.add_argument("--scale-clients", type=int, default=10_000)
    args = p.parse_args(argv)
    for name in ("n", "d", "k", "iters", "repeats", "chunk_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.k > args.n:
        p.error("--k must not exceed --n")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.scale_only:
        print(json.dumps(scale_point(args)))
        return
    out = main_benchmark(args)
    if args.scale:
        cmd = [
            sys.executable,
            "-m",
            "experiments.bench_kmeans",
            "--scale-only",
            *[
                f"--{a}={getattr(args, a.replace('-', '_'))}"
                for a in (
                    "seed",
                    "chunk-size",
                    "scale-n",
                    "scale-d",
                    "scale-k",
                    "scale-budget",
                    "scale-clients",
                )
            ],
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"scale point failed:\n{proc.stderr[-3000:]}")
        scale = json.loads(proc.stdout.strip().splitlines()[-1])
        print("\nscale point:", ", ".join(f"{k}={v}" for k, v in scale.items()))
        out["scale"] = scale
    print(json.dumps(out))


if __name__ == "__main__":
    main()
