"""Argument checks shared by the task-level losses and labelers (host side, before jit)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_logits(logits: Any, name: str, *, num_classes: int | None = None) -> jax.Array:
    """Returns `logits` as a floating [B, C] array, or raises naming `name`."""
    logits = jnp.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"{name} must be a [batch, num_classes] array, got shape {logits.shape}.")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point, got dtype {logits.dtype}.")
    if logits.shape[1] < 1:
        raise ValueError(f"{name} must have at least one class column, got shape {logits.shape}.")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"{name} has {logits.shape[1]} class columns but {num_classes} are expected "
            "(all logits passed together must share the number of classes)."
        )
    return logits


def check_labels(
    labels: Any, name: str, *, length: int, num_classes: int, private: bool = False
) -> jax.Array:
    """Returns `labels` as an integer [length] array with values in [0, num_classes).

    With `private=True` (the client's labels) the messages name no label value and no
    length. The value range is checked only when the labels are concrete (outside `jit`).
    """
    if not isinstance(labels, jax.Array):
        host = np.asarray(labels)
        if host.dtype.kind in "iu" and host.dtype.itemsize == 8 and host.size:
            if host.min() < np.iinfo(np.int32).min or host.max() > np.iinfo(np.int32).max:
                raise ValueError(
                    f"{name} must lie in [0, {num_classes}); some values are outside the int32 "
                    "range (and JAX would wrap them); relabel the classes to 0..num_classes-1."
                )
        labels = host
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != length:
        if private:
            raise ValueError(
                f"{name} must be a 1-D array with one label per row of the features; its "
                "shape differs."
            )
        raise ValueError(f"{name} must have shape ({length},), got {labels.shape}.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}.")
    if length and not isinstance(labels, jax.core.Tracer):
        values = np.asarray(labels)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= num_classes:
            found = "some labels are outside it" if private else f"got values in [{lo}, {hi}]"
            raise ValueError(
                f"{name} must lie in [0, {num_classes}); {found}; relabel the classes to "
                "0..num_classes-1 or raise num_classes."
            )
    return labels


def check_real(value: Any, name: str, *, low: float, high: float = math.inf) -> float:
    """Returns `value` as a float after checking `low <= value <= high` and finiteness."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}.") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number in [{low}, {high}], got {value}.")
    return value
