"""How good are the client's Private-kNN labels of S? Label accuracy over k, ε and the
feature space of the kNN, for every selection method; no training (task c's bottleneck).

Run:

  python -m experiments.knn_label_quality --workdir=workdir/knn_label_quality

Variants (`--config=experiments/configs/knn_label_quality.py:<variant>`):
  default  the five digit domains as client, ID+OoD, B=3000, seed 1; ECOS, Random,
           K-Center, Oracle; k ∈ {10, 50, 200, 400}; ε of the B label releases
           ∈ {1, 4, 16, 64, ∞}; kNN spaces: φ itself (EfficientNet-Lite0 64 px, L2),
           EfficientNet-Lite0 96 px with cosine distance, pixels + PCA (16 px, 64-d)
  smoke    tiny build, B=60 (what CI runs)

A space is "extractor:resolution:metric"; every extractor is public and fitted on the
cloud's pool only, so the kNN's sensitivity (√2 per query) and ε do not depend on it.

The second part (`config.published`) runs Private-kNN as published
(`ecos_jax.tasks.subsampled_knn`): each setting 'rate:k:max_answers:screen_ratio' at each
total ε (the labels plus, for ECOS, its score release), in HOG + PCA and in φ; it reports
label accuracy, the labeled and screened fractions and the ε of each stage.

Measured (results/knn_label_quality/, 2-core CPU, seed 1, 20 min): at ε = 4 the full-set
vote noise std is 89.7 votes, and no space and no k labels more than 20.3% of ECOS's
in-domain images right (φ, k=200: 14.3%); noise-free, φ-space kNN with k=200 labels
45.7% right on average, 23.9% on mnist_blend and 32.5% on streetdigits. As published, at
total ε = 4 with S shuffled as task (c) asks it, task (c)'s default (0.5:100:300:none,
HOG + PCA) labels 46.5% of ECOS's answered queries right (φ: 20.6%); the published
screening (σ1 = 3σ2) 49.2%, 100 answers 56.4%, 1,000 answers 33.8%.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import blocks

VARIANTS = ("default", "smoke")


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    """Returns the config for `variant`, one of `VARIANTS` (None means "default")."""
    from ecos_jax.data import DIGIT_DOMAINS

    variant = blocks.check_variant(variant, VARIANTS)
    config = blocks.selection_study(variant)
    config.num_classes = 10

    config.client_domains = DIGIT_DOMAINS
    config.methods = ("ecos", "random", "k_center", "oracle")
    config.budget = 3000
    config.seeds = (1,)
    config.ks = (10, 50, 200, 400)
    config.label_epsilons = (1.0, 4.0, 16.0, 64.0, float("inf"))
    config.spaces = (
        "efficientnet_lite0:64:l2",
        "efficientnet_lite0:96:cosine",
        "pixels_pca:16:l2",
    )
    config.report_k = 200
    config.report_epsilon = 4.0

    # Private-kNN as published (tasks.subsampled_knn): 'rate:k:max_answers:screen_ratio'.
    p = config.published = ml_collections.ConfigDict()
    p.settings = (
        "0.5:100:300:none",  # task (c)'s default
        "0.5:100:300:3",  # with the published screening (σ1 = 3σ2, T = k/2)
        "0.5:50:300:none",
        "0.15:30:300:none",
        "0.5:100:100:none",
        "0.5:100:1000:none",
        "1:200:300:none",
    )
    p.threshold_fraction = 0.5
    p.query_order = "shuffled"  # as task (c) asks them (client_labeling's knn.query_order)
    p.total_epsilons = (4.0, 1.0)
    p.spaces = ("hog_pca:28:l2", "efficientnet_lite0:64:l2")
    p.dim = 64

    if variant == "smoke":
        blocks.make_smoke(config)
        config.client_domains = ("mnist_blend",)
        config.budget = 60
        config.ks = (5, 10)
        config.label_epsilons = (4.0, float("inf"))
        config.spaces = ("efficientnet_lite0:32:l2", "pixels_pca:16:l2")
        config.report_k = 10
        p.settings = ("0.5:5:20:none", "0.5:5:40:3")
        p.spaces = ("hog_pca:16:l2",)
        p.dim = 16
    return config
