"""Selection quality of ECOS vs Random, K-Center and Oracle (no training needed).

Run (the README's main job; about 2 min on 2 CPU cores once the benchmark is built, plus
about 2.5 min for the one-time build):

  python -m experiments.sampling_quality --workdir=workdir/sampling_quality

Variants (`--config=experiments/configs/sampling_quality.py:<variant>`):
  smoke            a tiny Digits build (600/120 per domain), 300 per domain, R=10: seconds
  synthetic        the SYNTHETIC Gaussian-mixture feature pool (`ecos_jax.synthetic`)
  synthetic_smoke  its tiny version (what the tests and the notebook run)

Fields override from the command line, e.g. `--config.ecos.num_clusters=100` or
`--config.features.resolution=96`.

Default setting: the offline Digits benchmark (`ecos_jax.data`), client domain
`mnist_blend`, ID+OoD regime (half of it on the client, half in the pool with the other
four digit domains and the two unrelated ones), at most 4000 examples per domain; φ =
EfficientNet-Lite0 at 64 px (1280-d). ECOS: k-means R=50, Voronoi scores, σ calibrated
to ε=0.58 at δ=1e-5 (RDP; σ≈6.684), κ=1.5. Budgets 1000 and 3000, seeds 1, 2, 3.

Expected result (measured on the 2-core CPU machine; mean over seeds 1, 2, 3; simulated
discrete Gaussian noise): pool 23,438 of which 2,000 (8.5%) in-distribution. At B=1000,
ID fraction ECOS 0.532 ± 0.028, Random 0.088, K-Center 0.435, Oracle 0.848; proximity
ECOS 44.66, Random 47.63, K-Center 52.02, Oracle 42.09; ε_RDP = 0.580, ε_PLD = 0.528;
bytes down 256,000 (4·R·d), up 400 (8·R, int64). At B=3000: ECOS 0.440 / 42.27, Random
0.088 / 45.10, K-Center 0.313 / 47.11.

SYNTHETIC variant (6 domains × 10 classes, d=64, 8000 points per domain; 44,000 pool
points, 9.1% in-distribution): at B=1000 ID fraction ECOS 0.962 ± 0.003, Random 0.088,
K-Center 0.021. With `--config.data.synthetic.domain_shift=1.0` (domains as far apart as
classes) and R=50 < 60 blobs, k-means merges ID and OoD blobs: ECOS drops to ID fraction
0.57 ± 0.12; R=100 restores 0.942.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import blocks

VARIANTS = ("default", "smoke", "synthetic", "synthetic_smoke")


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    """Returns the config for `variant`, one of `VARIANTS` (None means "default")."""
    variant = blocks.check_variant(variant, VARIANTS)
    config = blocks.selection_study(variant)
    config.data.images.client_domain = "mnist_blend"

    # SYNTHETIC features (source "synthetic").
    config.data.synthetic = ml_collections.ConfigDict()
    syn = config.data.synthetic
    syn.seed = 0  # the benchmark is fixed; run seeds vary the methods' randomness
    syn.num_domains = 6
    syn.num_classes = 10
    syn.dim = 64
    syn.per_domain = 8000
    syn.client_domain = 0
    syn.regime = "id+ood"
    syn.client_fraction = 0.5
    syn.class_scale = 1.0
    syn.domain_shift = 2.0
    syn.style_strength = 0.5
    syn.noise_std = 1.0

    config.methods = ("ecos", "random", "k_center", "oracle")
    config.budgets = (1000, 3000)
    config.seeds = (1, 2, 3)
    config.report_budget = 1000  # the budget of the final JSON line's headline figures

    if variant in ("synthetic", "synthetic_smoke"):
        config.data.source = "synthetic"
    if variant == "smoke":
        config.data.images.caps = 300
        config.data.images.build_train = 600
        config.data.images.build_test = 120
        config.features.cache = False
    if variant in ("smoke", "synthetic_smoke"):
        syn.num_domains = 4
        syn.num_classes = 5
        syn.dim = 16
        syn.per_domain = 600
        config.ecos.num_clusters = 10
        config.ecos.kmeans_iters = 20
        config.budgets = (50, 150)
        config.seeds = (1, 2)
        config.report_budget = 50
    return config
