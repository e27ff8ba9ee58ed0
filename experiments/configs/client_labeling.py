"""Task (c), automated client labeling: the client labels S with Private-kNN (its k
nearest labeled samples in φ-space vote, Gaussian noise on the histogram, argmax
released), and the cloud trains on the pseudo-labels.

Run:

  python -m experiments.client_labeling --workdir=workdir/client_labeling

Variants (`--config=experiments/configs/client_labeling.py:<variant>`):
  default      client mnist_blend, ID+OoD, B=3000, ε=0.58 for the ECOS scores, seeds
               1-3; ECOS, Random, K-Center, Oracle, Local (no Full pool: the client would
               label the whole pool)
  smoke        tiny build, a few steps (what CI runs)
  sweep        the five digit domains as client, B=3000
  tfds_digits, domainnet  catalog datasets, if prepared

Private-kNN: k=200 neighbours; the vote noise is calibrated so that the B label
releases alone cost ε=4 (RDP, δ=1e-5, no subsampling amplification); the table's ε
composes them with the ECOS score release. `--config.knn.target_epsilon=inf` gives the
non-private reference (noise-free votes, ε = ∞). Expected results are in results/README.md.
"""

from __future__ import annotations

import ml_collections

from experiments.configs.downstream import COMMON_VARIANTS, base_config

VARIANTS = COMMON_VARIANTS


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    """Returns the config for `variant`, one of `VARIANTS` (None means "default")."""
    config = base_config("client_labeling", variant, VARIANTS)
    config.methods = ("ecos", "random", "k_center", "oracle", "local")
    config.knn = ml_collections.ConfigDict()
    config.knn.k = 200
    config.knn.target_epsilon = 4.0
    if config.variant in ("default", "sweep"):
        config.budgets = (3000,)
        config.report_budget = 3000
    if config.variant == "smoke":
        config.knn.k = 10
    return config
