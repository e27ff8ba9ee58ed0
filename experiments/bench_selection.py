"""ECOS selection time and compiles: the grouped k-center vs the pre-change loop, in one run.

    python -m experiments.bench_selection                  # N=12000, D=64, R=50; B=1000,3000,500
    python -m experiments.bench_selection --skip-old       # the current implementation only

The pool is seeded Gaussian blobs clustered by `ecos_jax.kmeans` into R clusters; the
scores are positive integers drawn from the same seed. Each implementation then selects
from these same inputs in a fresh child process (after one trivial compile that sets up
XLA), so the first call pays every compile of the selection itself:
the current one (this tree), and the pre-change one of git revision `--old-rev` (5fbf034:
a host loop per cluster, one `greedy_k_center` compile per padded size and pick count),
extracted with `git archive` into a temporary folder and put first on `PYTHONPATH`. For
each budget, in order, it prints the wall time of the call and the k-center programs
compiled so far (all XLA compiles in brackets), then the new/old ratio of the first call
and whether both chose the same indices. The acceptance target is a first call at
B = 1000 at most 1/3 of the old one.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OLD_REV = "5fbf034"


def make_inputs(seed: int, n: int, d: int, num_clusters: int, kmeans_iters: int) -> dict:
    """Seeded blobs, their k-means clustering and positive integer scores, as host arrays."""
    import jax

    from ecos_jax import kmeans
    from ecos_jax.keys import named_key

    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.standard_normal((num_clusters, d)).astype(np.float32)
    pool = centers[rng.integers(0, num_clusters, n)]
    pool += rng.standard_normal((n, d), dtype=np.float32)
    key = named_key(jax.random.key(seed), "kmeans")
    res = kmeans.kmeans(key, pool, k=num_clusters, num_iters=kmeans_iters)
    return {
        "pool": pool,
        "assignments": np.asarray(res.assignments, np.int32),
        "centroids": np.asarray(res.centroids, np.float32),
        "scores": rng.integers(1, 200, num_clusters).astype(np.int64),
    }


def measure(inputs_path: str, budgets: list[int], kappa: float) -> dict:
    """Times `ecos_select` at each budget in order, with the compiles, in this process.

    Runs against whichever `ecos_jax` is importable: the old API takes a key first and
    keeps `greedy_k_center` in `sampling`; the new one groups the k-center in `k_center`.
    """
    import jax
    import jax.numpy as jnp
    from jax import monitoring

    from ecos_jax import sampling

    data = np.load(inputs_path)
    pool = jnp.asarray(data["pool"])
    # The process's first compile sets up XLA (seconds, whatever is compiled): pay it here
    # so that the first call's time is the selection's own tracing and compiling.
    jax.jit(lambda v: v + 1)(pool[0]).block_until_ready()
    args = (pool, data["assignments"], data["centroids"], data["scores"])
    takes_key = next(iter(inspect.signature(sampling.ecos_select).parameters)) == "key"
    if takes_key:  # the old layout: one greedy_k_center program per (P, picks)
        program = sampling.greedy_k_center
    else:
        from ecos_jax import k_center

        program = k_center._order_chunk
    compiles = []

    def listen(event: str, duration: float, **kwargs) -> None:
        del duration, kwargs
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    monitoring.register_event_duration_secs_listener(listen)
    before = program._cache_size()
    rows, chosen = [], {}
    for budget in budgets:
        start = time.perf_counter()
        if takes_key:
            idx = sampling.ecos_select(None, *args, budget=budget, kappa=kappa)
        else:
            idx = sampling.ecos_select(*args, budget=budget, kappa=kappa)
        seconds = time.perf_counter() - start
        assert np.unique(idx).size == budget
        chosen[str(budget)] = np.asarray(idx).tolist()
        rows.append(
            {
                "budget": budget,
                "seconds": round(seconds, 3),
                "k_center_compiles": program._cache_size() - before,
                "xla_compiles": len(compiles),
            }
        )
    return {"module": sampling.__file__, "rows": rows, "indices": chosen}


def _child(pythonpath: str, inputs_path: str, args, cwd: str) -> dict:
    """`measure` in a fresh interpreter whose `ecos_jax` comes from `pythonpath`."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--measure={inputs_path}",
        f"--budgets={','.join(map(str, args.budgets))}",
        f"--kappa={args.kappa}",
    ]
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement under {pythonpath} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _old_tree(rev: str, into: Path) -> str | None:
    """Extracts `ecos_jax` of `rev` into `into`; a reason string if it cannot."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "ecos_jax"],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        return "git is not installed"
    if archive.returncode != 0:
        return f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}"
    into.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(
        ["tar", "-x", "-C", str(into)], input=archive.stdout, capture_output=True, check=False
    )
    if tar.returncode != 0:
        return f"tar failed: {tar.stderr.decode(errors='replace').strip()}"
    return None


def _print_table(results: dict) -> None:
    names = list(results)
    print(f"\n{'budget':>7} " + " ".join(f"{n + ' s':>10} {n + ' compiles':>16}" for n in names))
    for i, row in enumerate(results[names[0]]["rows"]):
        cells = []
        for n in names:
            r = results[n]["rows"][i]
            cells.append(
                f"{r['seconds']:>10.3f} {r['k_center_compiles']:>7} [{r['xla_compiles']:>5}]"
            )
        print(f"{row['budget']:>7} " + " ".join(f"{c:>27}" for c in cells))


def run(args) -> dict:
    """Builds the inputs, measures both implementations, prints and returns the figures."""
    out = {
        "n": args.n,
        "d": args.d,
        "clusters": args.clusters,
        "kappa": args.kappa,
        "budgets": args.budgets,
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="bench_selection_") as tmp:
        inputs_path = str(Path(tmp) / "inputs.npz")
        np.savez(inputs_path, **make_inputs(args.seed, args.n, args.d, args.clusters, 20))
        results = {"new": _child(str(REPO), inputs_path, args, tmp)}
        reason = "--skip-old" if args.skip_old else _old_tree(args.old_rev, Path(tmp) / "old")
        if reason is None:
            results["old"] = _child(str(Path(tmp) / "old"), inputs_path, args, tmp)
        else:
            print(f"pre-change implementation ({args.old_rev}) skipped: {reason}")
            out["old_skipped"] = reason
    print(
        f"ECOS selection on {args.n}×{args.d} blobs, R={args.clusters}, κ={args.kappa}; "
        f"{out['cpu_count']} CPUs, load {out['load_average']}"
    )
    _print_table(results)
    for name, res in results.items():
        out[name] = res["rows"]
    if "old" in results:
        first_new = results["new"]["rows"][0]["seconds"]
        first_old = results["old"]["rows"][0]["seconds"]
        out["first_call_ratio_new_over_old"] = round(first_new / first_old, 3)
        out["same_indices"] = results["new"]["indices"] == results["old"]["indices"]
        print(
            f"\nfirst call at B={args.budgets[0]}: new {first_new:.2f} s / old {first_old:.2f} s"
            f" = {out['first_call_ratio_new_over_old']:.2f} (target <= 0.33); same indices: "
            f"{out['same_indices']}"
        )
    return out


def _budgets(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("--budgets must be positive integers, e.g. 1000,3000")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=12_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--clusters", type=int, default=50)
    p.add_argument("--budgets", type=_budgets, default=[1000, 3000, 500])
    p.add_argument("--kappa", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--old-rev", default=OLD_REV, help="git revision of the old implementation")
    p.add_argument("--skip-old", action="store_true", help="measure the current tree only")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: path of the inputs
    args = p.parse_args(argv)
    for name in ("n", "d", "clusters"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive integer")
    if args.clusters > args.n or max(args.budgets) > args.n:
        p.error("--clusters and every budget must not exceed --n")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.budgets, args.kappa)))
        return
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
