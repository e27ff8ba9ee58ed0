"""The settings the three downstream-task configs share, and their common variants.

Not a config file to run: `selective_labeling.py`, `model_compression.py` and
`client_labeling.py` build on `base_config`.

Variants shared by the three tasks:
  default      one client domain (mnist_blend), ID+OoD, ε = 0.58, seeds 1-3, all methods
  smoke        a tiny Digits build, few steps: what CI runs end to end (seconds)
  sweep        the evidence sweep: all five digit domains as client, seeds 1-3
  tfds_digits  catalog mnist + svhn_cropped (prepare them with TFDS first)
  domainnet    catalog DomainNet, 10 classes, ResNet-18 (prepare it with TFDS first)
"""

from __future__ import annotations

import ml_collections

from ecos_jax.data import DIGIT_DOMAINS
from experiments.configs import blocks

COMMON_VARIANTS = ("default", "smoke", "sweep", "tfds_digits", "domainnet")


def base_config(task: str, variant: str, variants: tuple[str, ...]) -> ml_collections.ConfigDict:
    """The shared config of `task` for `variant` (one of `variants`)."""
    variant = blocks.check_variant(variant, variants)
    config = ml_collections.ConfigDict()
    config.task = task
    config.variant = variant

    config.data = ml_collections.ConfigDict()
    config.data.source = "digits"
    img = config.data.images = blocks.image_data()
    config.client_domains = ("mnist_blend",)
    config.num_classes = 10

    config.features = blocks.features()
    config.ecos = blocks.ecos()
    blocks.add_selection_settings(config)

    # The student / downstream model. Width 1/4 of FedBN's digit CNN: about 1,900 training
    # images/s on 2 CPU cores, so one run (300 steps of 64) takes about 10 s.
    t = config.train = blocks.trainer(
        model="digits_cnn", width=0.25, num_steps=300, warmup_steps=30
    )
    t.mode = "supervised"  # or "fixmatch" (selective labeling only)
    t.fixmatch = ml_collections.ConfigDict()
    t.fixmatch.threshold = 0.95
    t.fixmatch.lambda_u = 1.0
    t.fixmatch.unlabeled_ratio = 2  # μ: unlabeled examples per labeled one in a step

    config.methods = ("ecos", "random", "k_center", "oracle", "local", "full_pool")
    config.budgets = (1000,)
    config.epsilons = (0.58,)
    config.seeds = (1, 2, 3)
    config.report_budget = 1000
    config.report_epsilon = 0.58

    if variant == "smoke":
        blocks.make_smoke(config)
        blocks.make_smoke_trainer(t, width=1 / 16, num_steps=6)
        config.budgets = (60, 120)
        config.epsilons = (0.22, 0.58)
        config.seeds = (1,)
        config.report_budget = 60
    if variant == "sweep":
        config.client_domains = DIGIT_DOMAINS
        config.budgets = (1000, 3000)
    if variant == "tfds_digits":
        config.data.source = "tfds_digits"
        config.client_domains = ("svhn_cropped",)
        img.include_unrelated = False
        img.caps = 20000
        config.budgets = (1000, 3000)
    if variant == "domainnet":
        config.data.source = "domainnet"
        config.client_domains = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
        img.include_unrelated = False
        img.caps = 0
        config.ecos.num_clusters = 100
        config.features.resolution = 224
        t.model = "resnet18"
        t.width = 1.0
        t.num_steps = 3000
        t.batch_size = 128
        config.budgets = (1000, 3000)
    return config
