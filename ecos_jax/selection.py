"""Choosing the subset S of the pool: ECOS from a round, or a baseline, behind one call.

`select` turns a round (`ecos_jax.protocol.ecos_round`), or no client information at
all, into the `budget` indices of a method with what the method cost (ε and bytes).
Experiments call it so that the selection-quality report and the three training tasks
pick exactly the same S for the same seed; `method_keys` gives the cloud's keys of a seed
and `client_randomness` the client's, by name.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3-4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from ecos_jax import baselines, noise, protocol
from ecos_jax.distances import Metric
from ecos_jax.keys import named_key
from ecos_jax.messages import comparison_bytes
from ecos_jax.protocol import EcosRound

__all__ = [
    "METHOD_NAMES",
    "EcosRound",
    "SelectionCost",
    "client_randomness",
    "method_keys",
    "select",
]

# Selection methods and their display names; the oracle sees the client features (ε = ∞).
METHOD_NAMES = {"ecos": "ECOS", "random": "Random", "k_center": "K-Center", "oracle": "Oracle"}

# The cloud's consumers of randomness, one named key each.
_CLOUD_KEY_NAMES = ("kmeans", "random", "k_center")


class SelectionCost(NamedTuple):
    """What one selection cost the client: privacy (None = ∞, not private) and bytes."""

    epsilon_rdp: float | None
    epsilon_pld: float | None
    bytes_down: int
    bytes_up: int


def method_keys(seed: int) -> dict[str, jax.Array]:
    """The cloud's per-seed keys of the selection methods, by name under `key(seed)`.

    `named_key(jax.random.key(seed), name)` for "kmeans" (the round's clustering),
    "random" and "k_center": a new consumer never shifts the others' keys.
    """
    root = jax.random.key(seed)
    return {name: named_key(root, name) for name in _CLOUD_KEY_NAMES}


def client_randomness(seed: int, release: str) -> noise.SimulatedRandomness:
    """The client's simulated noise for `release` in run `seed` (experiments only).

    `named_key(named_key(key(seed), "client"), release)`: the client's root is a sibling of
    the cloud's keys, never derived from one, and every release (say
    `"ecos_scores/eps=0.58"`) gets its own key, so two releases are never correlated.
    Reproducible by design, so NOT private against anyone who knows the seed.
    """
    return noise.simulation(named_key(named_key(jax.random.key(seed), "client"), release))


class _Request(NamedTuple):
    """The arguments of one `select` call, as the per-method selectors read them."""

    keys: dict[str, jax.Array]
    budget: int
    pool_features: object
    client_features: object
    ecos: EcosRound | None
    kappa: float
    threshold_multiple: float | None
    top_k: int | None
    oracle_kappa: float
    metric: Metric
    chunk_size: int


_FREE = SelectionCost(0.0, 0.0, 0, 0)


def _select_ecos(req: _Request) -> tuple[np.ndarray, SelectionCost]:
    """ECOS from the seed's round; costs the round's ε and its two messages."""
    if req.ecos is None:
        raise ValueError("select('ecos', ...) needs ecos=ecos_round(...) for this seed.")
    idx = protocol.select_from_round(
        req.ecos,
        budget=req.budget,
        kappa=req.kappa,
        threshold_multiple=req.threshold_multiple,
        top_k=req.top_k,
    )
    report, t = req.ecos.privacy, req.ecos.transcript
    return idx, SelectionCost(report.epsilon_rdp, report.epsilon_pld, t.bytes_down, t.bytes_up)


def _select_random(req: _Request) -> tuple[np.ndarray, SelectionCost]:
    """Uniform random, from the seed's "random" key; free."""
    num_pool = req.pool_features.shape[0]
    return baselines.random_select(req.keys["random"], num_pool, budget=req.budget), _FREE


def _select_k_center(req: _Request) -> tuple[np.ndarray, SelectionCost]:
    """Greedy k-center over the pool, from the seed's "k_center" key; free."""
    idx = baselines.k_center_select(
        req.keys["k_center"], req.pool_features, budget=req.budget, metric=req.metric
    )
    return idx, _FREE


def _select_oracle(req: _Request) -> tuple[np.ndarray, SelectionCost]:
    """The non-private oracle; costs ε = ∞ and the upload of the client features."""
    if req.client_features is None:
        raise ValueError("select('oracle', ...) needs client_features (it is not private).")
    idx = baselines.oracle_select(
        req.pool_features,
        req.client_features,
        budget=req.budget,
        metric=req.metric,
        kappa=req.oracle_kappa,
        chunk_size=req.chunk_size,
    )
    upload = comparison_bytes(req.client_features, req.pool_features).upload_client_data
    return idx, SelectionCost(None, None, 0, upload)


_SELECTORS: dict[str, Callable[[_Request], tuple[np.ndarray, SelectionCost]]] = {
    "ecos": _select_ecos,
    "random": _select_random,
    "k_center": _select_k_center,
    "oracle": _select_oracle,
}
assert set(_SELECTORS) == set(METHOD_NAMES)


def select(
    method: str,
    keys: dict[str, jax.Array],
    *,
    budget: int,
    pool_features,
    client_features=None,
    ecos: EcosRound | None = None,
    kappa: float = 1.5,
    threshold_multiple: float | None = None,
    top_k: int | None = None,
    oracle_kappa: float = 1.5,
    metric: Metric = "l2",
    chunk_size: int = protocol.DEFAULT_CHUNK_SIZE,
) -> tuple[np.ndarray, SelectionCost]:
    """The `budget` pool indices chosen by `method`, and what the choice cost.

    Args:
      method: one of `METHOD_NAMES`.
      keys: the cloud's keys from `method_keys`.
      budget: B, the size of S.
      pool_features: [N, D].
      client_features: [M, D]; read by the oracle only (it is not private).
      ecos: the seed's `EcosRound`; needed by "ecos".
      kappa: ECOS's proximal-candidate factor κ.
      threshold_multiple: ECOS drops clusters whose noisy score is below this multiple
        of the noise scale σΔ (None keeps all).
      top_k: ECOS keeps only the top-k clusters (None keeps all).
      oracle_kappa: the oracle's candidate factor.
      metric, chunk_size: distance settings.

    Returns:
      `(indices [budget] int, SelectionCost)`.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3-4.
    """
    selector = _SELECTORS.get(method)
    if selector is None:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHOD_NAMES)}.")
    req = _Request(
        keys,
        budget,
        pool_features,
        client_features,
        ecos,
        kappa,
        threshold_multiple,
        top_k,
        oracle_kappa,
        metric,
        chunk_size,
    )
    idx, cost = selector(req)
    return np.asarray(idx), cost
