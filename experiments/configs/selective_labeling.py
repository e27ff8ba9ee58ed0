"""Task (a), selective manual labeling: S gets true labels, then the student trains on it.

Run (the README's main job; under 15 min on 2 CPU cores, data build included):

  python -m experiments.selective_labeling --workdir=workdir/selective_labeling

Variants (`--config=experiments/configs/selective_labeling.py:<variant>`):
  default      client mnist_blend, ID+OoD, B=1000, ε=0.58, seeds 1-3; ECOS, Random,
               K-Center, Oracle, Local, Full pool; supervised training on S
  smoke        tiny build and model, a few steps (what CI runs)
  sweep        the five digit domains as client, B ∈ {1000, 3000}, supervised (35 min)
  fixmatch     the five digit domains, B=1000, seeds 1-3, FixMatch (μ=2) with the pool
  curves       client mnist_blend, seeds 1-3: B ∈ {1k, 2k, 4k, 8k, 10k} and
               ε ∈ {0.08, 0.10, 0.14, 0.22, 0.58, 1.22} (ECOS) for the two plots
  full_sweep, full_fixmatch, full_curves
               the full protocol for an accelerator: sweep, fixmatch and curves with
               FedBN's CNN at full width (16× the CPU protocol's MACs), 3,000 steps
               (10×), FixMatch with μ = 7, seeds 1-3 (results/README.md, "The full
               protocol", gives its cost)
  tfds_digits  catalog mnist + svhn_cropped (client svhn_cropped), if prepared
  domainnet    catalog DomainNet 10 classes, six client domains, ResNet-18, if prepared

Expected results (2-core CPU, JAX 0.10.2) are in results/README.md, with the commands.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import blocks
from experiments.configs.downstream import COMMON_VARIANTS, base_config

VARIANTS = (*COMMON_VARIANTS, "fixmatch", "curves", "full_sweep", "full_fixmatch", "full_curves")


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    """Returns the config for `variant`, one of `VARIANTS` (None means "default")."""
    variant = blocks.check_variant(variant, VARIANTS)
    full = variant.startswith("full_")
    config = base_config("selective_labeling", variant.removeprefix("full_"), VARIANTS)
    if full:
        blocks.make_full_protocol(config.train)
        config.variant = variant
    if config.variant.removeprefix("full_") == "fixmatch":
        from ecos_jax.data import DIGIT_DOMAINS

        config.client_domains = DIGIT_DOMAINS
        config.train.mode = "fixmatch"
        config.methods = ("ecos", "random", "k_center", "oracle")
    if config.variant.removeprefix("full_") == "curves":
        config.budgets = (1000, 2000, 4000, 8000, 10000)
        config.epsilons = (0.08, 0.10, 0.14, 0.22, 0.58, 1.22)
        config.methods = ("ecos", "random", "k_center", "oracle", "local")
    return config
