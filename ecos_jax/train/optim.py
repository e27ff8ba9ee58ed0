"""Optimizers for the downstream tasks: SGD with momentum or AdamW, warmup then cosine decay.

`make_optimizer` returns one object per setting: the jitted steps key their cache on the
optimizer a `TrainState` holds, so equal settings must give the identical object for a
second run to reuse the compiled steps.
"""

from __future__ import annotations

import functools

import jax
import optax

__all__ = ["make_optimizer", "make_schedule"]

_NAMES = ("sgd", "adamw")


def make_schedule(
    *, learning_rate: float, total_steps: int, warmup_steps: int = 0
) -> optax.Schedule:
    """Linear warmup from 0 to `learning_rate` over `warmup_steps`, then cosine decay to 0.

    The cosine ends at step `total_steps` (counted from step 0, warmup included).

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, "
            f"total_steps={total_steps}; raise total_steps or lower warmup_steps"
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=total_steps,
        end_value=0.0,
    )


def _decay_mask(params):
    """Weight decay on kernels only (ndim > 1), not on biases or BatchNorm scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    name: str = "sgd",
    *,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> optax.GradientTransformation:
    """An optax optimizer with a warmup-cosine learning-rate schedule.

    Args:
      name: "sgd" (momentum SGD with L2 weight decay added to the gradient) or "adamw"
        (decoupled weight decay; `momentum` is Adam's b1).
      learning_rate: peak learning rate, reached after `warmup_steps`.
      total_steps: steps until the cosine reaches 0 (the run's length).
      warmup_steps: linear warmup steps from 0.
      momentum: SGD momentum, or Adam's b1.
      weight_decay: applied to kernels (ndim > 1) only.

    Returns:
      An `optax.GradientTransformation`; the same object for the same arguments, so that
      runs with one setting share the compiled train steps.

    Examples:
      >>> tx = make_optimizer("sgd", learning_rate=0.1, total_steps=1000, warmup_steps=50)
      >>> tx is make_optimizer("sgd", learning_rate=0.1, total_steps=1000, warmup_steps=50)
      True

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    if name not in _NAMES:
        raise ValueError(f"name must be one of {_NAMES}, got {name!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    return _optimizer(
        name,
        float(learning_rate),
        int(total_steps),
        int(warmup_steps),
        float(momentum),
        float(weight_decay),
    )


@functools.cache
def _optimizer(name, learning_rate, total_steps, warmup_steps, momentum, weight_decay):
    """The optimizer of one (checked) setting, built once: see the module docstring."""
    schedule = make_schedule(
        learning_rate=learning_rate, total_steps=total_steps, warmup_steps=warmup_steps
    )
    if name == "adamw":
        return optax.adamw(schedule, b1=momentum, weight_decay=weight_decay, mask=_decay_mask)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=_decay_mask),
        optax.sgd(schedule, momentum=momentum or None),
    )
