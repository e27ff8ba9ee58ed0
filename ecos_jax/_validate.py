"""Argument checks shared across the library (host side, before anything is compiled).

Errors name the argument, say what is wrong and how to fix it. Checks of the client's
private inputs never put a value of those inputs into the message: not an entry, not a
minimum or maximum, not the number of rows (the number of client samples is private under
the add-or-remove-one relation too). They may name dtypes, ranks and the public feature
dimension.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["as_real_array", "check_key", "positive_finite", "positive_int"]

_INT32 = np.iinfo(np.int32)


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
        if host.dtype.kind in "iu" and host.dtype.itemsize == 8 and host.size:
            if host.min() < _INT32.min or host.max() > _INT32.max:
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


def positive_finite(value: Any, name: str) -> float:
    """`value` as a float after checking it is a finite number > 0 (bools refused)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}.")
    return value


def positive_int(value: Any, name: str) -> int:
    """`value` as an int after checking it is an integer >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    return int(value)
