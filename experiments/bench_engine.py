"""The training engine: R runs one after another (`fit`) vs together (`fit_runs`), one run.

    python -m experiments.bench_engine                 # the default protocol, R = 10 runs
    python -m experiments.bench_engine --runs 4 --steps 60 --width 0.25   # quicker

The setting is the downstream tasks' default protocol (experiments/configs/downstream.py):
FedBN's digit CNN at width 1/4, batch 64, SGD with warmup-cosine, weak augmentation, each
run on its own 1,000 images of a shared bank of 28×28×3 images (seeded uint8 noise: the
timing does not depend on the pixels). Both paths start from the same states and keys
after one warm-up of each (their compiles), and the final parameters are compared.

Then where one step's time goes, measured on the same machine in the same run:
- one run's jitted train step on a fixed batch (no host loop): the compute floor;
- its FLOPs (XLA's cost analysis) as GFLOP/s, against a square 2048² fp32 GEMM;
- each convolution (forward, kernel and input gradients), each max-pool's backward and
  the rest, timed alone at the model's shapes;
- the vmapped step with JAX's own grouped-convolution batching (`--skip-native` skips it).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ecos_jax import train
from ecos_jax.models import DigitsCNN
from ecos_jax.models.digits_cnn import channels

OLD_REV = "2d7d79b"  # the last revision before the engine: sequential `fit`, flax's max-pool

IMAGE_SHAPE = (28, 28, 3)


def _median_time(repeats: int, fn, *args) -> float:
    """Median wall seconds of `fn(*args)` (blocked until ready) after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _setting(args):
    """The bank, each run's rows and labels, keys and a fresh-states factory."""
    rng = np.random.default_rng(args.seed)
    bank = rng.integers(0, 256, (args.bank, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, 10, args.bank).astype(np.int32)
    rows = [rng.permutation(args.bank)[: args.images] for _ in range(args.runs)]
    model = DigitsCNN(num_classes=10, width=args.width)
    tx = train.make_optimizer(
        "sgd", learning_rate=0.05, total_steps=args.steps, warmup_steps=args.steps // 10
    )
    sample = jnp.asarray(bank[:1])

    def states():
        return [
            train.create_train_state(jax.random.key(1000 + r), model, tx, sample)
            for r in range(args.runs)
        ]

    keys = [jax.random.key(r) for r in range(args.runs)]
    return bank, labels, rows, keys, states


def _fit_args(args) -> dict:
    return dict(num_steps=args.steps, batch_size=args.batch, log_every=max(1, args.steps // 10))


def sequential(args) -> dict:
    """The runs one after another with `fit` (after a 2-step warm-up): seconds, params."""
    bank, labels, rows, keys, states = _setting(args)
    warm = dict(_fit_args(args), num_steps=2, log_every=1)
    train.fit(keys[0], states()[0], bank[rows[0]], labels[rows[0]], progress=False, **warm)
    t = time.perf_counter()
    finals = [
        train.fit(k, s, bank[r], labels[r], progress=False, **_fit_args(args))[0]
        for k, s, r in zip(keys, states(), rows, strict=True)
    ]
    jax.block_until_ready(finals[-1].params)
    return {"seconds": time.perf_counter() - t, "params": [f.params for f in finals]}


def vmapped(args) -> dict:
    """The runs together with `fit_runs` (after a 2-step warm-up): seconds, params."""
    bank, labels, rows, keys, states = _setting(args)
    data = [train.RunData(r, labels[r]) for r in rows]
    warm = dict(_fit_args(args), num_steps=2, log_every=1)
    train.fit_runs(keys, states(), bank, data, progress=False, **warm)
    t = time.perf_counter()
    out = train.fit_runs(keys, states(), bank, data, progress=False, **_fit_args(args))
    jax.block_until_ready(out[-1][0].params)
    return {"seconds": time.perf_counter() - t, "params": [s.params for s, _ in out]}


def _old_sequential(args, tmp: Path) -> dict | str:
    """`sequential` with the `ecos_jax` of `--old-rev` (today's runs), in a child process;
    a reason string if it cannot run."""
    from experiments import bench_selection

    reason = bench_selection._old_tree(args.old_rev, tmp / "old")
    if reason is not None:
        return reason
    flags = [
        f"--{k}={getattr(args, k)}"
        for k in ("runs", "steps", "batch", "width", "images", "bank", "seed")
    ]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sequential-only", *flags]
    env = {**os.environ, "PYTHONPATH": str(tmp / "old")}
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return f"the old revision's run failed: {proc.stderr.strip()[-500:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(args) -> dict:
    """Today's sequential runs (`--old-rev`), this tree's sequential runs and the vmapped
    runs: wall time, img/s, the ratios, and how far the vmapped parameters are from the
    sequential ones."""
    images = args.runs * args.steps * args.batch
    out: dict = {}
    if not args.skip_old:
        with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
            old = _old_sequential(args, Path(tmp))
        if isinstance(old, str):
            out["old_skipped"] = old
        else:
            out["old_sequential_s"] = round(old["seconds"], 2)
    seq, vm = sequential(args), vmapped(args)
    out["sequential_s"] = round(seq["seconds"], 2)
    out["vmapped_s"] = round(vm["seconds"], 2)
    for name in ("old_sequential", "sequential", "vmapped"):
        if f"{name}_s" in out:
            out[f"{name}_img_s"] = round(images / out[f"{name}_s"])
    out["ratio_vs_sequential"] = round(seq["seconds"] / vm["seconds"], 3)
    if "old_sequential_s" in out:
        out["ratio_vs_old_sequential"] = round(out["old_sequential_s"] / vm["seconds"], 3)
    out["max_param_deviation"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for p, q in zip(seq["params"], vm["params"], strict=True)
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q), strict=True)
    )
    return out


def _conv(x, k):
    return lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


_FWD = jax.jit(_conv)
_D_KERNEL = jax.jit(lambda x, k, g: jax.vjp(lambda k: _conv(x, k), k)[1](g)[0])
_D_INPUT = jax.jit(lambda x, k, g: jax.vjp(lambda x: _conv(x, k), x)[1](g)[0])


@jax.jit
def _POOL_GRAD(x, g):
    from ecos_jax.models.digits_cnn import max_pool_2x2  # not in the old revision

    return jax.vjp(max_pool_2x2, x)[1](g)[0]


_FLAX_POOL_GRAD = jax.jit(
    lambda x, g: jax.vjp(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), x)[1](g)[0]
)


@jax.jit
def _vmapped_step(states, images, labels, keys):
    return jax.vmap(train.train_step)(states, (images, labels), keys)[0].params


def breakdown(args) -> dict:
    """Where one run's step goes: compute floor, GFLOP/s vs GEMM, per-op times."""
    rng = np.random.default_rng(args.seed)
    b = args.batch
    images = jnp.asarray(rng.integers(0, 256, (b, *IMAGE_SHAPE), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, b).astype(np.int32))
    model = DigitsCNN(num_classes=10, width=args.width)
    tx = train.make_optimizer("sgd", learning_rate=0.05, total_steps=100, warmup_steps=1)
    state = train.create_train_state(jax.random.key(0), model, tx, images[:1])
    key = jax.random.key(1)

    @jax.jit
    def step(state):
        return train.train_step(state, (images, labels), key)[0].params

    step_s = _median_time(args.repeats, step, state)
    flops = step.lower(state).compile().cost_analysis().get("flops", float("nan"))

    n = 2048
    x = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
    gemm = jax.jit(lambda a, c: jnp.matmul(a, c, precision=lax.Precision.HIGHEST))
    gemm_s = _median_time(args.repeats, gemm, x, x)
    gemm_gflops = 2 * n**3 / gemm_s / 1e9

    ops: dict[str, float] = {}
    flax_pool: dict[str, float] = {}  # what the pools cost before (not in the share)
    h, w = IMAGE_SHAPE[:2]
    c_in = IMAGE_SHAPE[2]
    for i, base in enumerate((64, 64, 128)):
        f = channels(base, args.width)
        xi = jnp.asarray(rng.standard_normal((b, h, w, c_in)), jnp.float32)
        ki = jnp.asarray(rng.standard_normal((5, 5, c_in, f)), jnp.float32)
        g = jnp.asarray(rng.standard_normal((b, h, w, f)), jnp.float32)
        ops[f"conv{i} forward"] = _median_time(args.repeats, _FWD, xi, ki)
        ops[f"conv{i} kernel grad"] = _median_time(args.repeats, _D_KERNEL, xi, ki, g)
        if i > 0:  # the images need no gradient
            ops[f"conv{i} input grad"] = _median_time(args.repeats, _D_INPUT, xi, ki, g)
        if i < 2:
            gp = jnp.asarray(rng.standard_normal((b, h // 2, w // 2, f)), jnp.float32)
            xp = jnp.asarray(rng.standard_normal((b, h, w, f)), jnp.float32)
            ops[f"max_pool{i} backward"] = _median_time(args.repeats, _POOL_GRAD, xp, gp)
            flax_pool[f"flax max_pool{i} backward"] = _median_time(
                args.repeats, _FLAX_POOL_GRAD, xp, gp
            )
            h, w = h // 2, w // 2
        c_in = f
    ops_ms = {name: round(s * 1e3, 3) for name, s in {**ops, **flax_pool}.items()}
    timed = sum(ops.values())
    return {
        "step_ms": round(step_s * 1e3, 2),
        "step_img_s": round(b / step_s),
        "step_gflop": round(flops / 1e9, 3),
        "step_gflop_s": round(flops / step_s / 1e9, 1),
        "gemm_2048_fp32_gflop_s": round(gemm_gflops, 1),
        "fraction_of_gemm": round(flops / step_s / 1e9 / gemm_gflops, 3),
        "ops_ms": ops_ms,
        "convs_and_pools_share": round(timed / step_s, 3),
    }


def native_batching(args) -> dict:
    """The vmapped step with JAX's grouped-convolution batching vs the unrolled one."""
    rng = np.random.default_rng(args.seed)
    b, r = args.batch, min(args.runs, 4)  # native costs R² convolutions on CPU
    images = jnp.asarray(rng.integers(0, 256, (r, b, *IMAGE_SHAPE), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, (r, b)).astype(np.int32))
    keys = jax.random.split(jax.random.key(0), r)
    out = {}
    for batching in ("unrolled", "native"):
        model = DigitsCNN(num_classes=10, width=args.width, conv_batching=batching)
        tx = train.make_optimizer("sgd", learning_rate=0.05, total_steps=100, warmup_steps=1)
        states = train.stack_states(
            [
                train.create_train_state(jax.random.key(i), model, tx, images[0, :1])
                for i in range(r)
            ]
        )
        seconds = _median_time(
            max(1, args.repeats // 2), _vmapped_step, states, images, labels, keys
        )
        out[f"{batching}_img_s"] = round(r * b / seconds)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--images", type=int, default=1000, help="training images per run")
    p.add_argument("--bank", type=int, default=5000, help="images in the shared bank")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--old-rev", default=OLD_REV, help="git revision of today's sequential runs")
    p.add_argument("--skip-old", action="store_true", help="skip the old revision's runs")
    p.add_argument("--skip-breakdown", action="store_true")
    p.add_argument("--skip-native", action="store_true", help="skip the grouped-conv timing")
    p.add_argument("--sequential-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sequential_only:  # child mode, possibly under the old revision's ecos_jax
        print(json.dumps({"seconds": sequential(args)["seconds"]}))
        return {}
    result = {"backend": jax.default_backend(), "device": str(jax.devices()[0]), **vars(args)}
    result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    result["compare"] = c = compare(args)
    print(
        f"{args.runs} runs × {args.steps} steps × batch {args.batch}, width {args.width}, "
        f"on {result['device']} (load {result['load_average']}):"
    )
    if "old_sequential_s" in c:
        print(
            f"  today's sequential runs ({args.old_rev}): {c['old_sequential_s']} s "
            f"({c['old_sequential_img_s']} img/s)"
        )
    else:
        print(f"  today's sequential runs skipped: {c.get('old_skipped', '--skip-old')}")
    print(f"  sequential runs, this tree: {c['sequential_s']} s ({c['sequential_img_s']} img/s)")
    print(f"  vmapped runs (fit_runs):    {c['vmapped_s']} s ({c['vmapped_img_s']} img/s)")
    print(
        f"  ratio vs this tree's sequential {c['ratio_vs_sequential']}"
        + (
            f", vs today's {c['ratio_vs_old_sequential']} (goal >= 3)"
            if "ratio_vs_old_sequential" in c
            else ""
        )
        + f"; max |param difference| {c['max_param_deviation']:.2e}",
        flush=True,
    )
    if not args.skip_breakdown:
        result["breakdown"] = bd = breakdown(args)
        print(
            f"one run's step alone: {bd['step_ms']} ms ({bd['step_img_s']} img/s), "
            f"{bd['step_gflop']} GFLOP at {bd['step_gflop_s']} GFLOP/s = "
            f"{bd['fraction_of_gemm']:.1%} of a 2048² fp32 GEMM ({bd['gemm_2048_fp32_gflop_s']})",
            flush=True,
        )
        for name, ms in bd["ops_ms"].items():
            print(f"  {name:28s} {ms:8.3f} ms")
        print(
            f"  this tree's convolutions and pools: {bd['convs_and_pools_share']:.0%} of the step"
        )
    if not args.skip_native:
        result["batching"] = nb = native_batching(args)
        print(
            f"vmapped step, {min(args.runs, 4)} runs: unrolled convolutions "
            f"{nb['unrolled_img_s']} img/s, JAX's grouped convolutions {nb['native_img_s']} img/s",
            flush=True,
        )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
