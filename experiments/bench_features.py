"""Images/s of our Flax feature extractor vs the same network in PyTorch on CPU.

Run:
  python -m experiments.bench_features [--model efficientnet_lite0] [--resolutions 32 64 96]
      [--batch-size 256] [--repeats 5]

Both sides take the same uint8 NHWC batch and return float32 [B, 1280] features as
NumPy: ours runs the jitted extractor (normalisation inside, batch norm folded, depthwise
convolutions as fused slices); PyTorch runs an `nn.Module` of the same architecture with
the same state dict (`torch_reference.py`), NCHW, under `torch.inference_mode()` with
`torch.set_num_threads(<cores>)`. XLA's CPU runtime sizes its thread pool to the
machine's cores. After one warm-up call each, ours and torch alternate (the order flips
every repeat) and the median time is reported, since other processes may share the CPU.

The last line printed is a JSON object
  {"<res>": {"ours_img_s": …, "torch_img_s": …, "ratio": ours/torch}, …}.

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


def _torch_forward(torch, model, name: str):
    """uint8 NHWC numpy → normalised NCHW float tensor → features numpy."""
    if name == "efficientnet_lite0":
        shift, scale = torch.tensor(127.0), torch.tensor(128.0)
    else:
        shift = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255.0
        scale = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255.0

    def forward(images_NHWC: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(images_NHWC).permute(0, 3, 1, 2).float()
            return model((x - shift) / scale).numpy()

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
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__} threads={torch.get_num_threads()}; "
        f"jax {jax.__version__} {jax.devices()[0].platform} "
        f"(XLA CPU thread pool = {os.cpu_count()} cores, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}); load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    reference = torch_reference_model(args.model, load_torch_checkpoint(weight_file(args.model)))
    torch_forward = _torch_forward(torch, reference, args.model)
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

        got, want = ours(), theirs()  # warm-up (and compile)
        rel = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        times = {"ours": [], "torch": []}
        for r in range(args.repeats):
            order = [("ours", ours), ("torch", theirs)]
            for label, fn in order if r % 2 == 0 else order[::-1]:
                times[label].append(_time(fn))
        ours_s, torch_s = (statistics.median(times[k]) for k in ("ours", "torch"))
        results[str(res)] = {
            "ours_img_s": round(args.batch_size / ours_s, 1),
            "torch_img_s": round(args.batch_size / torch_s, 1),
            "ratio": round(torch_s / ours_s, 2),
        }
        print(
            f"# {res}px: ours {results[str(res)]['ours_img_s']} img/s "
            f"(times {[round(t, 3) for t in times['ours']]}), torch "
            f"{results[str(res)]['torch_img_s']} img/s "
            f"(times {[round(t, 3) for t in times['torch']]}), max rel diff {rel:.1e}"
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
