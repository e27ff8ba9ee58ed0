"""Task (b), adaptive model compression: a teacher trained on the labeled pool is
distilled into the small digit CNN on S (KL on logits softened at T=4; no labels on S).

Run:

  python -m experiments.model_compression --workdir=workdir/model_compression

Variants (`--config=experiments/configs/model_compression.py:<variant>`):
  default      client mnist_blend, ID+OoD, B=3000, ε=0.58, seeds 1-3; ECOS, Random,
               K-Center, Oracle, Local (client trains on its own labels), Full pool
               (distillation on the whole pool)
  smoke        tiny build, teacher and student, a few steps (what CI runs)
  sweep        the five digit domains as client, B=3000
  tfds_digits, domainnet  catalog datasets, if prepared

Teacher: the digit CNN at width 1/2 (4× the student's parameters), 1000 steps on the
pool's labeled images (the unrelated domains have no labels), one per client domain,
checkpointed under runs/<domain>/teacher. Expected results are in results/README.md.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import blocks
from experiments.configs.downstream import COMMON_VARIANTS, base_config

VARIANTS = COMMON_VARIANTS


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    """Returns the config for `variant`, one of `VARIANTS` (None means "default")."""
    config = base_config("model_compression", variant, VARIANTS)
    model = config.train.model
    width = 0.5 if model == "digits_cnn" else 1.0
    t = config.teacher = blocks.trainer(model=model, width=width, num_steps=1000, warmup_steps=50)
    t.seed = 0  # one teacher per client domain, shared by every seed of the students
    config.distill = ml_collections.ConfigDict()
    config.distill.temperature = 4.0
    if config.variant in ("default", "sweep"):
        config.budgets = (3000,)
        config.report_budget = 3000
    if config.variant == "smoke":
        blocks.make_smoke_trainer(t, width=1 / 8, num_steps=8)
    if config.variant == "domainnet":
        t.num_steps = 10000
        t.batch_size = 128
    return config
