"""Images/s of our Flax feature extractor vs the same network in PyTorch on CPU.

Run:
  python -m experiments.bench_features [--model efficientnet_lite0] [--resolutions 32 64 96]
      [--batch-size 256] [--repeats 5]

Both sides take the same uint8 NHWC batch and return float32 [B, 1280] features as
NumPy: ours runs the jitted extractor (normalisation inside, batch norm folded, depthwise
convolutions as fused slices); PyTorch runs an `nn.Module` of the same architecture with
the same state dict (`torch_reference.py`), NCHW, under `torch.inference_mode()` with
`torch.set_num_threads(<cores>)` and `OMP_WAIT_POLICY=PASSIVE` (spinning OpenMP
threads stall when other processes share the cores: measured 2.4× slower). XLA's CPU
runtime sizes its thread pool to the machine's cores. After one warm-up call each, the
runs alternate (the order rotates every repeat) and the median time is reported, since
other processes may share the CPU.

PyTorch runs twice: NCHW (its default layout, the `torch_img_s` / `ratio` columns) and
channels-last (`torch_channels_last_img_s` / `ratio_channels_last`), often faster on CPU.

The last line printed is a JSON object
  {"<res>": {"ours_img_s": …, "torch_img_s": …, "ratio": ours/torch, …}, …}.

Expected (2 shared CPU cores, EfficientNet-Lite0, batch 256): ratio > 1 at 32, 64 and
96 px.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax.features.extract import PretrainedExtractor
from ecos_jax.features.torch_pickle import load_torch_checkpoint
from ecos_jax.features.torch_reference import torch_reference_model
from ecos_jax.features.weights import weight_file


def _torch_forward(torch, model, name: str, *, channels_last: bool):
    """uint8 NHWC numpy → normalised float tensor (NCHW or channels-last) → features."""
    if name == "efficientnet_lite0":
        shift, scale = torch.tensor(127.0), torch.tensor(128.0)
    else:
        shift = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255.0
        scale = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255.0

    def forward(images_NHWC: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(images_NHWC).permute(0, 3, 1, 2).float()
            x = (x - shift) / scale
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return model(x).numpy()

    return forward


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="efficientnet_lite0", choices=["efficientnet_lite0", "mobilenet_v2"]
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 96])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE"],
        help="OpenMP wait policy for torch; PASSIVE is 2x faster on a shared, loaded CPU",
    )
    args = parser.parse_args(argv)

    # Read once, when torch's OpenMP runtime starts: set before importing torch.
    os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy)
    import torch

    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__} threads={torch.get_num_threads()} "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
        f"jax {jax.__version__} {jax.devices()[0].platform} "
        f"(XLA CPU thread pool = {os.cpu_count()} cores, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}); load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    reference = torch_reference_model(args.model, load_torch_checkpoint(weight_file(args.model)))
    torch_forward = _torch_forward(torch, reference, args.model, channels_last=False)
    reference_cl = torch_reference_model(
        args.model, load_torch_checkpoint(weight_file(args.model))
    ).to(memory_format=torch.channels_last)
    torch_forward_cl = _torch_forward(torch, reference_cl, args.model, channels_last=True)
    rng = np.random.default_rng(0)
    results = {}
    for res in args.resolutions:
        extractor = PretrainedExtractor.create(
            args.model, resolution=res, batch_size=args.batch_size
        )
        images = rng.integers(0, 256, (args.batch_size, res, res, 3), dtype=np.uint8)

        def ours(extractor=extractor, images=images):
            return np.asarray(extractor.forward(extractor.variables, jnp.asarray(images)))

        def theirs(images=images):
            return torch_forward(images)

        def theirs_cl(images=images):
            return torch_forward_cl(images)

        got, want, want_cl = ours(), theirs(), theirs_cl()  # warm-up (and compile)
        rel = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        rel_cl = float(np.max(np.abs(got - want_cl)) / np.max(np.abs(want_cl)))
        runs = [("ours", ours), ("torch", theirs), ("torch_channels_last", theirs_cl)]
        times: dict[str, list[float]] = {label: [] for label, _ in runs}
        for r in range(args.repeats):
            for label, fn in runs[r % 3 :] + runs[: r % 3]:  # rotate the order
                times[label].append(_time(fn))
        median = {label: statistics.median(ts) for label, ts in times.items()}
        results[str(res)] = {
            "ours_img_s": round(args.batch_size / median["ours"], 1),
            "torch_img_s": round(args.batch_size / median["torch"], 1),
            "ratio": round(median["torch"] / median["ours"], 2),
            "torch_channels_last_img_s": round(args.batch_size / median["torch_channels_last"], 1),
            "ratio_channels_last": round(median["torch_channels_last"] / median["ours"], 2),
        }
        for label, ts in times.items():
            print(f"# {res}px {label}: seconds per batch {[round(t, 3) for t in ts]}")
        print(f"# {res}px max relative difference vs torch: {rel:.1e} (channels-last {rel_cl:.1e})")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
