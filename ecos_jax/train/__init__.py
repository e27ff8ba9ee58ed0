"""Supervised training for the downstream tasks: optimizers, augmentation, steps, loop.

`fit` runs a resumable host loop over jitted `train_step`s; `fit_runs` trains many runs
of one setting together, vmapped over a leading run axis (`engine`); `checkpoint` keeps
orbax behind `save`, `restore` and `latest_step`.
"""

from ecos_jax.train import checkpoint
from ecos_jax.train.augment import STRONG_OPS, strong_augment, weak_augment
from ecos_jax.train.engine import RunData, evaluate_runs, fit_runs, runs_that_fit, stack_states
from ecos_jax.train.loop import batch_indices, evaluate, fit, predict_features, predict_logits
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
    "RunData",
    "TrainState",
    "batch_indices",
    "checkpoint",
    "create_train_state",
    "distill_step",
    "eval_step",
    "evaluate",
    "evaluate_runs",
    "fit",
    "fit_runs",
    "fixmatch_step",
    "make_optimizer",
    "make_schedule",
    "predict_features",
    "predict_logits",
    "runs_that_fit",
    "stack_states",
    "strong_augment",
    "train_step",
    "weak_augment",
]
