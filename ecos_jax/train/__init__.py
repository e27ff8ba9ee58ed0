"""Supervised training for the downstream tasks: optimizers, augmentation, steps, loop.

`fit` runs a resumable host loop over jitted `train_step`s; `checkpoint` keeps orbax
behind `save`, `restore` and `latest_step`.
"""

from ecos_jax.train import checkpoint
from ecos_jax.train.augment import STRONG_OPS, strong_augment, weak_augment
from ecos_jax.train.loop import batch_indices, evaluate, fit, predict_logits
from ecos_jax.train.optim import make_optimizer, make_schedule
from ecos_jax.train.steps import (
    ModelApply,
    TrainState,
    create_train_state,
    distill_step,
    eval_step,
    fixmatch_step,
    train_step,
)

__all__ = [
    "STRONG_OPS",
    "ModelApply",
    "TrainState",
    "batch_indices",
    "checkpoint",
    "create_train_state",
    "distill_step",
    "eval_step",
    "evaluate",
    "fit",
    "fixmatch_step",
    "make_optimizer",
    "make_schedule",
    "predict_logits",
    "strong_augment",
    "train_step",
    "weak_augment",
]
