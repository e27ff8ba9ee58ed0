"""Train state and jitted supervised train / eval steps (cross-entropy, BatchNorm)."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

__all__ = ["TrainState", "create_train_state", "eval_step", "train_step"]


class TrainState(train_state.TrainState):
    """flax `TrainState` plus BatchNorm statistics.

    Fields beyond flax's (step, apply_fn, params, tx, opt_state):
      batch_stats: the model's "batch_stats" collection (running means/variances).
    """

    batch_stats: Any


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
      A `TrainState` at step 0.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    variables = _init_variables(model, key, sample_input)
    state = TrainState.create(
        apply_fn=model.apply,
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

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    grad_norm = optax.tree.norm(grads)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels),
        "grad_norm": grad_norm,
        "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm),
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
