"""What the client pays in compute: multiply-accumulates (MACs) read from XLA's cost model.

The paper compares methods by the client's compute (Sec. 5, Fig. 5: ECOS's ≈1e8 client
MACs against local fine-tuning's 1e9-3e9). XLA reports the FLOPs of a compiled program;
a MAC is two of them.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

__all__ = ["TRAIN_MACS_PER_FORWARD", "macs", "scoring_macs"]

# A training step costs about three forward passes (forward, and a backward of twice it).
TRAIN_MACS_PER_FORWARD = 3


def macs(fn: Callable, *args) -> int:
    """Multiply-accumulates of one call `fn(*args)`: XLA's FLOP count of the program / 2.

    Args:
      fn: a JAX-traceable function (jitted or not).
      *args: example arguments (arrays or `jax.ShapeDtypeStruct`s); only shapes matter.

    Returns:
      The MACs as an int (0 if XLA reports no FLOPs).

    Examples:
      >>> import jax.numpy as jnp
      >>> macs(jnp.matmul, jnp.ones((4, 8)), jnp.ones((8, 16)))
      512

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5 (client compute).
    """
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX returns one dict per computation
        cost = cost[0] if cost else {}
    return round(float((cost or {}).get("flops", 0.0)) / 2)


def scoring_macs(num_client: int, num_clusters: int, dim: int) -> int:
    """MACs of the client's coverage scores: one distance to each of R centroids per sample."""
    return int(num_client) * int(num_clusters) * int(dim)
