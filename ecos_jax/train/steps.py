"""Train state and the jitted steps: supervised, FixMatch, distillation, and evaluation.

Every train step has the signature `(state, batch, key) -> (state, metrics)`, donates
`state`, and reports scalar "loss", "accuracy", "grad_norm" and "finite", so `fit` runs
any of them. The steps compile once per model, optimizer and batch shape: a second run
with an equal model and the same `make_optimizer` setting reuses them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from ecos_jax._validate import check_key
from ecos_jax.tasks.distill import DEFAULT_TEMPERATURE, distillation_loss
from ecos_jax.tasks.fixmatch import DEFAULT_LAMBDA_U, DEFAULT_THRESHOLD, fixmatch_loss

__all__ = [
    "ModelApply",
    "TrainState",
    "create_train_state",
    "distill_step",
    "eval_step",
    "fixmatch_step",
    "train_step",
]


class TrainState(train_state.TrainState):
    """flax `TrainState` plus BatchNorm statistics.

    Fields beyond flax's (step, apply_fn, params, tx, opt_state):
      batch_stats: the model's "batch_stats" collection (running means/variances).
    """

    batch_stats: Any


@dataclasses.dataclass(frozen=True)
class ModelApply:
    """`model.apply` that compares (and hashes) by the model's fields.

    `TrainState.apply_fn` is static, so it is part of every jitted step's cache key; a
    bound `model.apply` compares its module by identity, so an equal model built anew for
    the next run would recompile every step. This one does not.
    """

    model: nn.Module

    def __call__(self, *args, **kwargs):
        return self.model.apply(*args, **kwargs)


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model: nn.Module, key: jax.Array, sample_input) -> dict[str, Any]:
    """`model.init` in eval mode, compiled once per model configuration and input shape."""
    return model.init(key, sample_input, train=False)


def create_train_state(
    key: jax.Array, model: nn.Module, optimizer: optax.GradientTransformation, sample_input
) -> TrainState:
    """Initializes `model` on `sample_input` and wraps it with `optimizer`.

    Args:
      key: a `jax.random.key` for parameter initialization.
      model: a flax module called as `model(images, train=...)` returning logits.
      optimizer: e.g. from `ecos_jax.train.make_optimizer`.
      sample_input: a batch of images [N, H, W, C] of the training shape (N may be 1).

    Returns:
      A `TrainState` at step 0; its `apply_fn` is `model.apply`, equal for equal models
      (`ModelApply`), so states of equal settings share the compiled steps.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    check_key(key, "key")
    variables = _init_variables(model, key, sample_input)
    state = TrainState.create(
        apply_fn=ModelApply(model),
        params=variables["params"],
        tx=optimizer,
        batch_stats=variables.get("batch_stats", {}),
    )
    # An int32 array step, as `train_step` returns, so the first step compiles only once.
    return state.replace(step=jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TrainState, batch, key: jax.Array):
    """One training step on mean cross-entropy (jitted; `state`'s buffers are donated).

    Args:
      state: a `TrainState`; do not use it after the call.
      batch: (images [B, H, W, C], labels [B] int).
      key: a `jax.random.key` for stochastic layers (passed as the "dropout" rng).

    Returns:
      (new state, metrics): metrics hold scalar "loss" (mean cross-entropy), "accuracy",
      "grad_norm" and "finite" (loss and gradient norm are finite).

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    images, labels = batch

    def loss_of_logits(logits):
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}

    return _update(state, images, key, loss_of_logits)


@functools.partial(jax.jit, donate_argnums=0, static_argnames=("threshold", "lambda_u"))
def fixmatch_step(
    state: TrainState,
    batch,
    key: jax.Array,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    lambda_u: float = DEFAULT_LAMBDA_U,
):
    """One FixMatch step: labeled CE plus masked pseudo-label CE on strong views.

    The three views go through the model as one batch, so BatchNorm sees them together,
    as in FixMatch.

    Args:
      state: a `TrainState`; do not use it after the call.
      batch: (labeled images [B, H, W, C] (weakly augmented), labels [B], unlabeled
        images weakly augmented [U, H, W, C], the same strongly augmented [U, H, W, C]).
      key: a `jax.random.key` for stochastic layers.
      threshold: confidence τ of the pseudo-labels (static).
      lambda_u: weight of the unlabeled term (static).

    Returns:
      (new state, metrics): as `train_step`, plus "mask_rate" (fraction of unlabeled
      examples above τ) and "supervised_loss".

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5, task (a); Sohn et al.,
      FixMatch, NeurIPS 2020.
    """
    images, labels, weak, strong = batch
    num_labeled, num_unlabeled = images.shape[0], weak.shape[0]

    def loss_of_logits(logits):
        labeled = logits[:num_labeled]
        logits_weak = logits[num_labeled : num_labeled + num_unlabeled]
        logits_strong = logits[num_labeled + num_unlabeled :]
        loss, aux = fixmatch_loss(
            labeled, labels, logits_weak, logits_strong, threshold=threshold, lambda_u=lambda_u
        )
        return loss, {
            "accuracy": jnp.mean(jnp.argmax(labeled, axis=-1) == labels),
            "mask_rate": aux.mask_rate,
            "supervised_loss": aux.supervised_loss,
        }

    return _update(state, jnp.concatenate([images, weak, strong]), key, loss_of_logits)


@functools.partial(jax.jit, donate_argnums=0, static_argnames=("temperature",))
def distill_step(
    state: TrainState, batch, key: jax.Array, *, temperature: float = DEFAULT_TEMPERATURE
):
    """One knowledge-distillation step: KL to the teacher's temperature-softened logits.

    Args:
      state: the student's `TrainState`; do not use it after the call.
      batch: (images [B, H, W, C], teacher logits [B, C] for those images).
      key: a `jax.random.key` for stochastic layers.
      temperature: softening temperature T (static); the loss is scaled by T².

    Returns:
      (new state, metrics): as `train_step`; "accuracy" is the agreement with the
      teacher's argmax.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5, task (b); Hinton et al.,
      "Distilling the Knowledge in a Neural Network", 2015.
    """
    images, teacher_logits = batch

    def loss_of_logits(logits):
        loss = distillation_loss(logits, teacher_logits, temperature=temperature)
        agree = jnp.argmax(logits, axis=-1) == jnp.argmax(teacher_logits, axis=-1)
        return loss, {"accuracy": jnp.mean(agree)}

    return _update(state, images, key, loss_of_logits)


def _update(state: TrainState, images, key, loss_of_logits):
    """Forward in train mode, loss from `loss_of_logits`, one optimizer update, metrics."""

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        loss, extra = loss_of_logits(logits)
        return loss, (extra, updates)

    (loss, (extra, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    grad_norm = optax.tree.norm(grads)
    metrics = {
        "loss": loss,
        "grad_norm": grad_norm,
        "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm),
        **extra,
    }
    return state, metrics


@jax.jit
def eval_step(state: TrainState, batch) -> dict[str, jax.Array]:
    """Correct predictions and summed cross-entropy on one batch (BatchNorm in eval mode).

    Args:
      state: a `TrainState`.
      batch: (images [B, H, W, C], labels [B] int); labels < 0 mark padding rows, which
        are not counted.

    Returns:
      {"correct": [] i32, "loss_sum": [] f32, "count": [] i32} over the valid rows.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    images, labels = batch
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
    )
    valid = labels >= 0
    safe_labels = jnp.where(valid, labels, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, safe_labels)
    correct = (jnp.argmax(logits, axis=-1) == labels) & valid
    return {
        "correct": jnp.sum(correct, dtype=jnp.int32),
        "loss_sum": jnp.sum(jnp.where(valid, losses, 0.0)),
        "count": jnp.sum(valid, dtype=jnp.int32),
    }
