"""Named PRNG keys: one root key per run, split by name rather than by position.

`named_key(root, "kmeans")` is `fold_in(root, crc32("kmeans"))`: adding a new consumer of
randomness does not shift the keys of the others, and the key a thing uses can be read
off its name.

Example:
  >>> import jax
  >>> root = jax.random.key(0)
  >>> a, b = (jax.random.key_data(named_key(root, n)) for n in ("a", "b"))
  >>> bool((a != b).any())
  True
"""

from __future__ import annotations

import zlib

import jax

from ecos_jax._validate import check_key

__all__ = ["named_key"]


def named_key(root: jax.Array, name: str) -> jax.Array:
    """`jax.random.fold_in(root, crc32(name))`: the key of `name` under `root`.

    Args:
      root: a typed JAX key (`jax.random.key(seed)`).
      name: a non-empty str naming the consumer, e.g. "kmeans" or "client_noise".

    Returns:
      A typed key, the same for the same (root, name).
    """
    check_key(root, "root")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}.")
    return jax.random.fold_in(root, zlib.crc32(name.encode()))
