"""KMeans throughput: ecos_jax vs faiss-cpu vs scikit-learn, against the device's GEMM rate.

    python -m experiments.bench_kmeans                # N=200000, d=128, K=256, 20 iters
    python -m experiments.bench_kmeans --breakdown    # + where an iteration's time goes
    python -m experiments.bench_kmeans --scale        # + the 1M×512 scale point (K=1000)

All three start from the same k-means++ centroids on the same seeded blob data and run
exactly `--iters` Lloyd iterations (faiss's subsampling is disabled by raising
`max_points_per_centroid`). Timings follow one warm-up run each (ours compiles there) and
are the median of `--repeats` interleaved runs. GFLOP/s counts the assignment GEMM only:
`2·N·K·d·iters / seconds`. Inertias are compared at the last iteration's assignment.

The limit is the device's best GEMM rate, so the same interleaved loop also times a square
`--gemm-size`² GEMM in float32 (`HIGHEST`) and in bf16 with float32 accumulation (and TF32
on GPUs), and KMeans is reported as a fraction of those rates. `--low-precision` (default:
bf16 on CPU, TF32 on GPU; `none` skips it) also runs ours with
`assign_precision=<that>`: its time per iteration, its speed-up over the float32 run, and
whether its centroids, assignments and inertia equal the float32 run's bit for bit.

`--breakdown` times the pieces of one float32 iteration at the chunk shape (the chunk
GEMM alone in the chunk loop, the full assignment pass, the cluster sums) to show where
the gap to the square GEMM rate comes from.

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
from ecos_jax.distances import PRECISION, map_row_chunks
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


def run_ours(x, init, iters, chunk_size, assign_precision="fp32"):
    res = kmeans_lib.kmeans(
        None,
        x,
        k=init.shape[0],
        init=init,
        num_iters=iters,
        tol=0.0,
        chunk_size=chunk_size,
        assign_precision=assign_precision,
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


def square_gemms(size: int, seed: int) -> dict:
    """name -> (run, flops): a square `size`² GEMM per precision, for the device's GEMM rate.

    fp32 at `HIGHEST` (as KMeans runs), bf16 inputs with float32 accumulation, and on GPUs
    TF32 (`DEFAULT` precision). Each run blocks until its result is ready.
    """
    key_a, key_b = jax.random.split(jax.random.key(seed))
    a = jax.random.normal(key_a, (size, size), jnp.float32)
    b = jax.random.normal(key_b, (size, size), jnp.float32)
    fp32 = jax.jit(lambda a, b: jnp.matmul(a, b, precision=PRECISION))
    bf16 = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    tf32 = jax.jit(lambda a, b: jnp.matmul(a, b, precision=lax.Precision.DEFAULT))
    a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    runs = {
        "fp32": lambda: jax.block_until_ready(fp32(a, b)),
        "bf16": lambda: jax.block_until_ready(bf16(a16, b16)),
    }
    if jax.default_backend() == "gpu":
        runs["tf32"] = lambda: jax.block_until_ready(tf32(a, b))
    return {name: (run, 2.0 * size**3) for name, run in runs.items()}


def default_low_precision() -> str:
    """bf16 on CPUs (AMX / AVX-512-BF16), TF32 on GPUs (tensor cores)."""
    return "tf32" if jax.default_backend() == "gpu" else "bf16"


def main_benchmark(args) -> dict:
    n, d, k, iters = args.n, args.d, args.k, args.iters
    flops = 2.0 * n * k * d * iters
    x = blob_data(args.seed, n, d, 4 * k)
    x_dev = jnp.asarray(x)
    init = np.asarray(kmeans_lib.kmeans_plusplus_init(jax.random.key(args.seed), x_dev, k=k))
    init_dev = jnp.asarray(init)
    low = default_low_precision() if args.low_precision == "auto" else args.low_precision
    print(
        f"data: N={n} d={d} K={k} iters={iters}, {4 * k} overlapping blobs, seed {args.seed}; "
        f"device "
        f"{jax.devices()[0].device_kind} ({jax.default_backend()}); matmul precision "
        f"{PRECISION.name}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}"
    )

    gemms = square_gemms(args.gemm_size, args.seed)
    runners = {"ours": (lambda: run_ours(x_dev, init_dev, iters, args.chunk_size), flops)}
    if low != "none":
        runners[f"ours_{low}"] = (
            lambda: run_ours(x_dev, init_dev, iters, args.chunk_size, assign_precision=low),
            flops,
        )
    runners["faiss"] = (lambda: run_faiss(x, init, iters), flops)
    if not args.skip_sklearn:
        runners["sklearn"] = (lambda: run_sklearn(x, init, iters), flops)
    runners.update({f"gemm_{name}": g for name, g in gemms.items()})
    results = {name: fn() for name, (fn, _) in runners.items()}  # warm-up (and compile)
    times = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, (fn, _) in runners.items():
            times[name].append(_timed(fn))
    median_s = {name: statistics.median(ts) for name, ts in times.items()}

    ours = results["ours"]
    assert int(ours.num_iters) == iters, "ours stopped early; use data that does not converge"
    inertia = {
        "ours": float(ours.inertia_history[iters - 1]),
        "faiss": float(results["faiss"].obj[-1]),
    }
    iters_run = {"ours": iters, "faiss": iters}
    if low != "none":
        inertia[f"ours_{low}"] = float(results[f"ours_{low}"].inertia_history[iters - 1])
        iters_run[f"ours_{low}"] = int(results[f"ours_{low}"].num_iters)
    if "sklearn" in results:
        inertia["sklearn"] = float(results["sklearn"].inertia_)
        iters_run["sklearn"] = int(results["sklearn"].n_iter_)
    gflops = {
        name: (2.0 * n * k * d * iters_run[name] if name in iters_run else fl)
        / median_s[name]
        / 1e9
        for name, (_, fl) in runners.items()
    }
    print(f"\n{'impl':10s} {'median s':>9s} {'GFLOP/s':>8s} {'iters':>6s} {'inertia':>14s}")
    for name in runners:
        extra = (
            f"{iters_run[name]:6d} {inertia[name]:14.6g}"
            if name in iters_run
            else f"{'':6s} square {args.gemm_size}² GEMM"
        )
        print(f"{name:10s} {median_s[name]:9.3f} {gflops[name]:8.1f} {extra}")
    out = {
        "n": n,
        "d": d,
        "k": k,
        "iters": iters,
        "backend": jax.default_backend(),
        "matmul_precision": PRECISION.name,
        "load_average": round(os.getloadavg()[0], 2),
        "ours_gflops": round(gflops["ours"], 2),
        "faiss_gflops": round(gflops["faiss"], 2),
        "sklearn_gflops": round(gflops["sklearn"], 2) if "sklearn" in gflops else None,
        "ratio_vs_faiss": round(gflops["ours"] / gflops["faiss"], 3),
        "inertia_rel_diff_vs_faiss": abs(inertia["ours"] - inertia["faiss"]) / inertia["faiss"],
        "flops_per_run": flops,
        "ours_ms_per_iter": round(1e3 * median_s["ours"] / iters, 2),
        **{f"gemm_{name}_gflops": round(gflops[f"gemm_{name}"], 1) for name in gemms},
        "ours_fraction_of_gemm_fp32": round(gflops["ours"] / gflops["gemm_fp32"], 3),
    }
    print(
        f"\nours (fp32): {out['ours_ms_per_iter']:.1f} ms an iteration = "
        f"{out['ours_fraction_of_gemm_fp32']:.2f} of the square fp32 GEMM rate "
        f"({gflops['gemm_fp32']:.0f} GFLOP/s); faiss {gflops['faiss'] / gflops['gemm_fp32']:.2f}"
    )
    if low != "none":
        out.update(_low_precision_figures(results, gflops, median_s, low=low, iters=iters))
        print(
            f"ours ({low}): {out['low_ms_per_iter']:.1f} ms an iteration, "
            f"{out['low_speedup_vs_fp32']:.2f}x the fp32 iteration, "
            f"{out['low_fraction_of_gemm_fp32']:.2f} of the fp32 GEMM rate and "
            f"{out['low_fraction_of_gemm_low']:.2f} of the {out['low_gemm']} one; equal to the "
            f"fp32 run: assignments {out['low_assignments_equal']}, inertia "
            f"{out['low_inertia_equal']}, centroids {out['low_centroids_equal']}"
        )
    peak = gpu_peak_fp32_tflops()
    if jax.default_backend() == "gpu" and peak:
        out["gpu_fraction_of_fp32_peak"] = round(gflops["ours"] / (peak * 1e3), 3)
    print(
        f"ours / faiss = {out['ratio_vs_faiss']:.2f}x; inertia rel. diff vs faiss "
        f"{out['inertia_rel_diff_vs_faiss']:.2e}"
    )
    if args.breakdown:
        out["breakdown"] = iteration_breakdown(
            x_dev, jnp.asarray(ours.centroids), chunk_size=args.chunk_size, repeats=args.repeats
        )
        out["breakdown"]["square_gemm_fp32_gflops"] = round(gflops["gemm_fp32"], 1)
    return out


def _low_precision_figures(results, gflops, median_s, *, low: str, iters: int) -> dict:
    """Speed and exactness of the low-precision run against the float32 one."""
    ours, lowp = results["ours"], results[f"ours_{low}"]
    low_gemm = f"gemm_{low}" if f"gemm_{low}" in gflops else "gemm_bf16"
    return {
        "low_precision": low,
        "low_ms_per_iter": round(1e3 * median_s[f"ours_{low}"] / iters, 2),
        "low_speedup_vs_fp32": round(median_s["ours"] / median_s[f"ours_{low}"], 3),
        "low_gflops": round(gflops[f"ours_{low}"], 2),
        "low_gemm": low_gemm.removeprefix("gemm_"),
        "low_fraction_of_gemm_fp32": round(gflops[f"ours_{low}"] / gflops["gemm_fp32"], 3),
        "low_fraction_of_gemm_low": round(gflops[f"ours_{low}"] / gflops[low_gemm], 3),
        "low_assignments_equal": bool(np.array_equal(ours.assignments, lowp.assignments)),
        "low_inertia_equal": bool(
            np.array_equal(ours.inertia_history, lowp.inertia_history, equal_nan=True)
        )
        and float(ours.inertia) == float(lowp.inertia),
        "low_centroids_equal": bool(np.array_equal(ours.centroids, lowp.centroids)),
    }


def iteration_breakdown(x_NxD, c_RxD, *, chunk_size: int, repeats: int) -> dict:
    """GFLOP/s (of the `2·N·K·d` assignment FLOPs) of the pieces of one float32 iteration.

    `gemm_min`: the chunk GEMM in the chunk loop, reduced to its row minimum (the least
    that keeps XLA from dropping it); `assign`: the assignment pass (GEMM, minimum, first
    index); `stats`: the cluster sums and inertia (`segment_sum`); `iteration`: both.
    """
    n, d = x_NxD.shape
    k = c_RxD.shape[0]
    x2_N = kmeans_lib._squared_norms(x_NxD)
    c2_R = kmeans_lib._squared_norms(c_RxD)

    @jax.jit
    def gemm_min(x_NxD, c_RxD):
        return map_row_chunks(
            lambda x_CxD: jnp.min(jnp.matmul(x_CxD, c_RxD.T, precision=PRECISION), axis=1),
            x_NxD,
            chunk_size=chunk_size,
        )

    assign = jax.jit(functools.partial(kmeans_lib._nearest_centroids, chunk_size=chunk_size))
    a_N, _ = assign(x_NxD, c_RxD, c2_R)
    stats = jax.jit(functools.partial(kmeans_lib._cluster_stats, x2_N=x2_N))
    iteration = jax.jit(
        functools.partial(kmeans_lib._assignment_stats, x2_N=x2_N, chunk_size=chunk_size)
    )
    pieces = {
        "gemm_min": lambda: gemm_min(x_NxD, c_RxD),
        "assign": lambda: assign(x_NxD, c_RxD, c2_R),
        "stats": lambda: stats(x_NxD, c_RxD, a_N),
        "iteration": lambda: iteration(x_NxD, c_RxD),
    }
    times = {name: [] for name in pieces}
    for fn in pieces.values():
        jax.block_until_ready(fn())
    for _ in range(max(repeats, 3)):
        for name, fn in pieces.items():
            times[name].append(_timed(lambda fn=fn: jax.block_until_ready(fn())))
    flops = 2.0 * n * k * d
    out = {"chunk_size": chunk_size}
    print(f"\nbreakdown of one fp32 iteration (chunks of {chunk_size} rows):")
    for name, ts in times.items():
        ms = 1e3 * statistics.median(ts)
        out[f"{name}_ms"] = round(ms, 2)
        out[f"{name}_gflops"] = round(flops / ms / 1e6, 1)
        print(f"  {name:10s} {ms:8.2f} ms {flops / ms / 1e6:8.1f} GFLOP/s")
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
    p.add_argument(
        "--low-precision",
        choices=("auto", "bf16", "tf32", "none"),
        default="auto",
        help="also run ours with this assign_precision (auto: bf16 on CPU, tf32 on GPU)",
    )
    p.add_argument("--gemm-size", type=int, default=4096, help="side of the square GEMM")
    p.add_argument("--breakdown", action="store_true", help="time the pieces of an iteration")
    p.add_argument("--scale", action="store_true", help="also run the 1M×512 scale point")
    p.add_argument("--scale-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scale-n", type=int, default=1_000_000)
    p.add_argument("--scale-d", type=int, default=512)
    p.add_argument("--scale-k", type=int, default=1000)
    p.add_argument("--scale-budget", type=int, default=10_000)
    p.add_argument("--scale-clients", type=int, default=10_000)
    args = p.parse_args(argv)
    for name in ("n", "d", "k", "iters", "repeats", "chunk_size", "gemm_size"):
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
