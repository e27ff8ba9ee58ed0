"""The scaling study: every stage of an ECOS round vs the number of devices and the pool.

Run (8 fake CPU devices in one process; about 3.5 min on 2 CPU cores):

  JAX_NUM_CPU_DEVICES=8 python -m experiments.scaling_study --workdir=results/scaling

As 2 local processes of 4 CPU devices each (multi-controller JAX over gloo):

  python -m experiments.scaling_study --num_processes=2 --devices_per_process=4 \
      --workdir=workdir/scaling_2proc --config=experiments/configs/scaling_study.py:smoke

On a GPU or TPU slice, run the first command without JAX_NUM_CPU_DEVICES (all devices
of the host), or one process per host with `jax.distributed.initialize` as the cluster
requires; raise the sizes with `--config.strong.pool_rows=...` etc.

Variants (`--config=experiments/configs/scaling_study.py:<variant>`):
  default   strong scaling N = 200,000 × D = 128, R = 256 on 1, 2, 4, 8 devices; weak
            scaling 25,000 pool rows per device; φ = MobileNetV2 at 32 px
  smoke     tiny sizes on 1, 2, 8 devices, 1 repeat (what the tests run)
  large     1,000,000 × 512, R = 1,000, B = 10,000 (an accelerator's size)

Expected result here: every stage runs on every mesh, and the communication table shows
the same bytes per KMeans iteration for both pool sizes, K·(D+1) + 1 float32 values.
Fake CPU devices share the machine's 2 cores, so their times are not speedups: the
efficiency plots here show the cost of splitting, not of scaling.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import blocks

VARIANTS = ("default", "smoke", "large")


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    """Returns the config for `variant`, one of `VARIANTS` (None means "default")."""
    variant = blocks.check_variant(variant, VARIANTS)
    config = ml_collections.ConfigDict()
    config.variant = variant
    config.seed = 0
    # Meshes to measure; counts the devices (or the processes) cannot form are skipped.
    config.device_counts = (1, 2, 4, 8)
    config.stages = ("features", "kmeans", "scoring", "selection", "train_step")
    config.repeats = 3
    config.warmup = 1

    # Strong scaling: one fixed round on every mesh.
    config.strong = ml_collections.ConfigDict()
    strong = config.strong
    strong.pool_rows = 200_000
    strong.dim = 128
    strong.clusters = 256
    strong.client_rows = 20_000
    strong.budget = 5_000
    strong.image_rows = 1_024
    strong.image_size = 28
    strong.kmeans_iters = 5
    strong.train_batch = 256

    # Weak scaling: the pool, the client, φ's images and the training batch grow with the
    # mesh; R and B stay as in the strong study.
    config.weak = ml_collections.ConfigDict()
    config.weak.pool_rows_per_device = 25_000
    config.weak.client_rows_per_device = 2_500
    config.weak.image_rows_per_device = 128
    config.weak.train_batch_per_device = 32

    # φ for the features stage: a packaged ImageNet network at this resolution.
    config.phi = ml_collections.ConfigDict()
    config.phi.model = "mobilenet_v2"
    config.phi.resolution = 32
    config.phi.batch_size = 64

    # Communication read from the compiled HLO, on the largest mesh, for these sizes.
    config.communication = ml_collections.ConfigDict()
    config.communication.pool_rows = (100_000, 1_000_000)
    config.communication.client_rows = (10_000, 100_000)

    if variant == "smoke":
        config.device_counts = (1, 2, 8)
        config.repeats = 1
        strong.update(
            pool_rows=4_001, dim=16, clusters=12, client_rows=501, budget=200,
            image_rows=40, image_size=16, kmeans_iters=2, train_batch=16,
        )  # fmt: skip
        config.weak.update(
            pool_rows_per_device=1_000, client_rows_per_device=100, image_rows_per_device=8,
            train_batch_per_device=4,
        )  # fmt: skip
        config.phi.resolution = 16
        config.phi.batch_size = 8
        config.communication.pool_rows = (1_000, 100_000)
        config.communication.client_rows = (500, 50_000)
    elif variant == "large":
        strong.update(
            pool_rows=1_000_000, dim=512, clusters=1_000, client_rows=100_000,
            budget=10_000, image_rows=8_192, kmeans_iters=10, train_batch=1_024,
        )  # fmt: skip
        config.weak.update(
            pool_rows_per_device=125_000, client_rows_per_device=12_500,
            image_rows_per_device=1_024, train_batch_per_device=128,
        )  # fmt: skip
        config.communication.pool_rows = (1_000_000, 10_000_000)
    return config
