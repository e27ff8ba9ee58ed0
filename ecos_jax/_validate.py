"""Argument checks shared across the library (host side, before anything is compiled).

Each check takes the value and the argument's name, returns the cleaned value and raises
a `ValueError` (a `TypeError` for keys) that names the argument, says what is wrong and
how to fix it. Checks of the client's private inputs (`private=True`, `as_client_features`,
`check_labels(..., private=True)`) never put a value of those inputs into the message: not
an entry, not a minimum or maximum, not the number of rows (the number of client samples
is private under the add-or-remove-one relation too). They may name dtypes, ranks and the
public feature dimension.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax.distances import all_finite

__all__ = [
    "MAX_ABS_FEATURE",
    "as_client_features",
    "as_features",
    "as_int",
    "as_real_array",
    "check_feature_range",
    "check_key",
    "check_labels",
    "check_logits",
    "finite_in_range",
    "int_at_least",
    "int_in_range",
    "is_int",
    "nonnegative_finite",
    "nonnegative_int",
    "open_unit_interval",
    "positive_finite",
    "positive_int",
    "within_feature_range",
]

#: Largest feature magnitude accepted from the client: squared distances stay finite in float32.
MAX_ABS_FEATURE = 1e15

_INT32 = np.iinfo(np.int32)


# ----------------------------------------------------------------------------- keys


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Returns `key` if it is a typed JAX PRNG key (scalar), else raises naming `name`.

    An int seed, a legacy `uint32[2]` key or an array of keys is refused with the fix.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jax.dtypes.prng_key):
        got = f"the int {key!r}" if isinstance(key, int | np.integer) else type(key).__name__
        raise TypeError(
            f"{name} must be a JAX PRNG key, got {got}; pass jax.random.key(seed) "
            "(or a split / fold_in of one)."
        )
    if jnp.ndim(key) != 0:
        raise TypeError(
            f"{name} must be a single key (shape ()), got an array of keys of shape "
            f"{jnp.shape(key)}; index or split it first."
        )
    return key


# ----------------------------------------------------------------------------- integers


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer; False for bools (which `isinstance` calls ints)."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def as_int(value: Any, name: str) -> int:
    """`value` as an int after checking it is one (bools refused)."""
    if not is_int(value):
        raise ValueError(f"{name} must be an int, got {value!r}.")
    return int(value)


def int_at_least(value: Any, name: str, low: int) -> int:
    """`value` as an int after checking it is an integer >= `low` (bools refused)."""
    if not is_int(value) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    return int(value)


def positive_int(value: Any, name: str) -> int:
    """`value` as an int after checking it is an integer >= 1 (bools refused)."""
    return int_at_least(value, name, 1)


def nonnegative_int(value: Any, name: str) -> int:
    """`value` as an int after checking it is an integer >= 0 (bools refused)."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
    return int(value)


def int_in_range(value: Any, name: str, *, low: int, high: int, bound: str = "") -> int:
    """`value` as an int in `[low, high]`; `bound` says what `high` is, e.g. "the pool size"."""
    value = as_int(value, name)
    if not low <= value <= high:
        what = f" ({bound})" if bound else ""
        raise ValueError(f"{name} must be in [{low}, {high}]{what}, got {value}.")
    return value


# ----------------------------------------------------------------------------- reals


def _as_float(value: Any, name: str, expected: str) -> float:
    """`float(value)`, refusing bools and what `float` refuses with "`name` must be `expected`"."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {value!r}.") from None


def positive_finite(value: Any, name: str) -> float:
    """`value` as a float after checking it is a finite number > 0 (bools refused)."""
    value = _as_float(value, name, "a positive finite number")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}.")
    return value


def nonnegative_finite(value: Any, name: str) -> float:
    """`value` as a float after checking it is a finite number >= 0 (bools refused)."""
    number = _as_float(value, name, "a finite number >= 0")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return number


def finite_in_range(value: Any, name: str, *, low: float, high: float = math.inf) -> float:
    """`value` as a float after checking `low <= value <= high` and finiteness."""
    value = _as_float(value, name, f"a number in [{low}, {high}]")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number in [{low}, {high}], got {value}.")
    return value


def open_unit_interval(value: Any, name: str) -> float:
    """`value` as a float after checking `0 < value < 1` (a δ, a fraction)."""
    value = _as_float(value, name, "a number in (0, 1)")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value}.")
    return value


# ----------------------------------------------------------------------------- arrays


def _wraps_in_int32(host: np.ndarray) -> bool:
    """True when a 64-bit integer array holds values JAX (int32 by default) would wrap."""
    if host.dtype.kind not in "iu" or host.dtype.itemsize != 8 or not host.size:
        return False
    return bool(host.min() < _INT32.min or host.max() > _INT32.max)


def as_real_array(x: Any, name: str, *, private: bool = False) -> jax.Array:
    """`x` as a JAX array of real numbers, refusing bool, complex and wrapping int64.

    With 64-bit mode off (JAX's default) `jnp.asarray` silently wraps int64 values outside
    the int32 range; such inputs are refused instead, as are unsigned 64-bit ones. A JAX
    array is returned as it is (no copy: pools can be gigabytes).

    Args:
      x: an array-like.
      name: the argument's name, for the error message.
      private: the values are the client's private data: the message then names no value.
    """
    if isinstance(x, jax.Array):
        arr = x
    else:
        host = np.asarray(x)
        if _wraps_in_int32(host):
            detail = "" if private else f" (range [{host.min()}, {host.max()}])"
            raise ValueError(
                f"{name} holds 64-bit integers outside the int32 range{detail}, which "
                "JAX would wrap silently; cast them to float32 (or rescale) first."
            )
        if host.dtype.kind not in "iuf":
            raise ValueError(f"{name} must hold real numbers, got dtype {host.dtype}.")
        arr = jnp.asarray(host)
    if not (jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    return arr


def as_features(x: Any, name: str, *, nonempty: bool = False) -> jax.Array:
    """A finite [N, D] feature matrix of public data as a float32 JAX array.

    No copy is made when `x` already is one: pools can be gigabytes. With `nonempty` an
    array without rows or columns is refused too.
    """
    shape = np.shape(x)
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {shape}.")
    if nonempty and 0 in shape:
        raise ValueError(f"{name} must be non-empty; got shape {shape}.")
    arr = jnp.asarray(as_real_array(x, name), jnp.float32)
    if not bool(all_finite(arr)):
        raise ValueError(
            f"{name} must be finite; got NaN or inf; remove or impute those rows first."
        )
    return arr


def as_client_features(x: Any, name: str = "features_MxD") -> jax.Array:
    """The client's features as a finite float32-safe [M, D] array; errors name no value."""
    arr = as_real_array(x, name, private=True)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [M, D], got a {arr.ndim}-D array.")
    if arr.shape[0] and not within_feature_range(arr):
        raise ValueError(
            f"{name} contains NaN, inf or entries beyond ±{MAX_ABS_FEATURE:g}; clean or "
            "rescale those rows first."
        )
    return arr


def within_feature_range(x: jax.Array) -> bool:
    """True when every entry is finite and within ±MAX_ABS_FEATURE."""
    return bool(_in_feature_range(x))


def check_feature_range(x: jax.Array, name: str) -> None:
    """Raises unless every entry of the public array `x` is finite and within ±MAX_ABS_FEATURE."""
    if not within_feature_range(x):
        raise ValueError(f"{name} contains NaN, inf or entries beyond ±{MAX_ABS_FEATURE:g}.")


@jax.jit
def _in_feature_range(x: jax.Array) -> jax.Array:
    """`within_feature_range` on the device, fused: no temporary of the size of `x`."""
    return jnp.all(jnp.abs(x.astype(jnp.float32)) <= MAX_ABS_FEATURE)


# ----------------------------------------------------------------------------- logits, labels


def check_logits(logits: Any, name: str, *, num_classes: int | None = None) -> jax.Array:
    """Returns `logits` as a floating [B, L] array, or raises naming `name`."""
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
        labels = np.asarray(labels)
        if _wraps_in_int32(labels):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}); some values are outside the int32 "
                "range (and JAX would wrap them); relabel the classes to 0..num_classes-1."
            )
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
