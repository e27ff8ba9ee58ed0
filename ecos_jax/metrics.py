"""Selection-quality metrics that need no training: ID fraction and proximity.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 4.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ecos_jax._validate import positive_int
from ecos_jax.distances import Metric, check_metric, nearest_distance

__all__ = ["id_fraction", "proximity"]


def id_fraction(selected_indices, pool_domain_labels, client_domain: int) -> float:
    """Fraction of the selected pool points that come from the client's domain.

    Args:
      selected_indices: int indices into the pool, shape [B], B >= 1.
      pool_domain_labels: domain label of every pool point, shape [N] (evaluation only:
        the cloud never sees these during selection).
      client_domain: the label of the client's domain.

    Returns:
      A float in [0, 1].

    Examples:
      >>> id_fraction([0, 2, 3], [1, 0, 1, 1], client_domain=1)
      1.0

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 (ID ratio of the selection).
    """
    idx = np.asarray(selected_indices)
    labels = np.asarray(pool_domain_labels)
    if labels.ndim != 1:
        raise ValueError(f"pool_domain_labels must be 1-D [N], got shape {labels.shape}.")
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"selected_indices must be a non-empty 1-D int array, got {idx.dtype} {idx.shape}."
        )
    if idx.min() < 0 or idx.max() >= labels.shape[0]:
        raise ValueError(f"selected_indices must lie in [0, {labels.shape[0]}) (the pool).")
    return float(np.mean(labels[idx] == client_domain))


def proximity(
    selected_features,
    client_features,
    *,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> float:
    """`Δ(S, D_p)`: mean over client features of the distance to the nearest selected one.

    Lower is better: the selection covers the client's distribution closely. Only a
    [chunk_size, B] block of the distance matrix is alive at a time.

    Args:
      selected_features: features of the selected pool points, shape [B, D], B >= 1.
      client_features: the client's features, shape [M, D], M >= 1.
      metric: `'l2'` (Euclidean) or `'cosine'` (`1 - cos`).
      chunk_size: client rows per distance block.

    Returns:
      The mean nearest-neighbour distance, a float.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 (proximity of the proxy set).
    """
    check_metric(metric)
    x = np.asarray(selected_features, dtype=np.float32)
    y = np.asarray(client_features, dtype=np.float32)
    for name, arr in (("selected_features", x), ("client_features", y)):
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty 2-D [N, D] array, got {arr.shape}.")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"selected_features have dimension {x.shape[1]} but client_features {y.shape[1]}."
        )
    chunk_size = positive_int(chunk_size, "chunk_size")
    return float(
        jnp.mean(
            nearest_distance(jnp.asarray(y), jnp.asarray(x), metric=metric, chunk_size=chunk_size)
        )
    )
