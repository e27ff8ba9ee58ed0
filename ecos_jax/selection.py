"""Choosing the subset S of the pool: one ECOS round, and every baseline, behind one call.

`ecos_round` runs the protocol's two messages (centroids down, noisy scores up) once;
`select` turns a round, or no client information at all, into the `budget` indices of a
method with what the method cost (ε and bytes). Experiments call these two so that the
selection-quality report and the three training tasks pick exactly the same S for the
same seed.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3-4.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from ecos_jax import noise, protocol, sampling
from ecos_jax.distances import Metric
from ecos_jax.keys import named_key

__all__ = [
    "METHOD_NAMES",
    "EcosRound",
    "SelectionCost",
    "client_randomness",
    "ecos_round",
    "method_keys",
    "select",
]

# Selection methods and their display names; the oracle sees the client features (ε = ∞).
METHOD_NAMES = {"ecos": "ECOS", "random": "Random", "k_center": "K-Center", "oracle": "Oracle"}


class SelectionCost(NamedTuple):
    """What one selection cost the client: privacy (None = ∞, not private) and bytes."""

    epsilon_rdp: float | None
    epsilon_pld: float | None
    bytes_down: int
    bytes_up: int


class EcosRound(NamedTuple):
    """One ECOS round on the cloud side: the clustering, the reply and the transcript."""

    cloud: protocol.Cloud
    scores: protocol.ScoresMessage
    transcript: protocol.Transcript
    privacy: protocol.PrivacyReport


def method_keys(seed: int) -> dict[str, jax.Array]:
    """The cloud's per-seed keys of the selection methods, split once from `key(seed)`.

    Split position 1 was the client's noise key until the noise moved to the client's own
    root (`client_randomness`); it stays unused so that the cloud's keys (k-means, Random,
    K-Center) and their selections are unchanged.
    """
    keys = jax.random.split(jax.random.key(seed), 4)
    return {"kmeans": keys[0], "random": keys[2], "k_center": keys[3]}


def client_randomness(seed: int, release: str) -> noise.SimulatedRandomness:
    """The client's simulated noise for `release` in run `seed` (experiments only).

    `named_key(named_key(key(seed), "client"), release)`: the client's root is a sibling of
    the cloud's keys, never derived from one, and every release (say
    `"ecos_scores/eps=0.58"`) gets its own key, so two releases are never correlated.
    Reproducible by design, so NOT private against anyone who knows the seed.
    """
    return noise.simulation(named_key(named_key(jax.random.key(seed), "client"), release))


def ecos_round(
    keys: dict[str, jax.Array],
    pool_features,
    client_features,
    *,
    sigma: float,
    num_clusters: int,
    kmeans_iters: int,
    randomness: noise.Randomness | None = None,
    method: str = "voronoi",
    coverage_kwargs: dict[str, Any] | None = None,
    delta: float = 1e-5,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> EcosRound:
    """Broadcast → respond once, both messages logged in a transcript.

    Args:
      keys: the cloud's keys from `method_keys` ("kmeans" seeds the clustering).
      pool_features: [N, d] the cloud's pool features.
      client_features: [M, d] the client's private features (used by the client role only).
      sigma: noise multiplier of the score release.
      num_clusters: R, the number of centroids sent down.
      kmeans_iters: cap on Lloyd iterations.
      randomness: the client's noise (None: secure; experiments pass
        `client_randomness(seed, name)`); a simulation key equal to a cloud key is refused.
      method: coverage score ("voronoi", "radius" or "top_m").
      coverage_kwargs: the method's arguments: `m` (top-m), `radii` and `max_votes`
        (radius).
      delta: the δ at which the round's ε is reported.
      metric: "l2" or "cosine".
      chunk_size: rows per distance chunk.

    Returns:
      An `EcosRound`; one round serves every budget (selection is post-processing).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    randomness = noise.resolve(randomness)
    protocol.check_noise_key_is_the_clients(randomness, keys.values())
    coverage_kwargs = dict(coverage_kwargs or {})
    report = protocol.privacy_report(
        sigma, method=method, delta=delta, coverage_kwargs=coverage_kwargs
    )
    transcript = protocol.Transcript()
    cloud = protocol.Cloud(pool_features, metric=metric)
    down = transcript.record(
        "down", cloud.broadcast(keys["kmeans"], num_clusters=num_clusters, num_iters=kmeans_iters)
    )
    up = transcript.record(
        "up",
        protocol.client_respond(
            down,
            client_features,
            sigma=sigma,
            randomness=randomness,
            method=method,
            metric=metric,
            chunk_size=chunk_size,
            **coverage_kwargs,
        ),
    )
    return EcosRound(cloud, up, transcript, report)


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
    chunk_size: int = 1024,
) -> tuple[np.ndarray, SelectionCost]:
    """The `budget` pool indices chosen by `method`, and what the choice cost.

    Args:
      method: one of `METHOD_NAMES`.
      keys: the cloud's keys from `method_keys`.
      budget: B, the size of S.
      pool_features: [M, d].
      client_features: [N, d]; read by the oracle only (it is not private).
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
    free = SelectionCost(0.0, 0.0, 0, 0)
    if method == "ecos":
        if ecos is None:
            raise ValueError("select('ecos', ...) needs ecos=ecos_round(...) for this seed.")
        threshold = (
            None if threshold_multiple is None else threshold_multiple * ecos.privacy.noise_std
        )
        idx = ecos.cloud.select(
            ecos.scores, budget=budget, kappa=kappa, threshold=threshold, top_k=top_k
        )
        t = ecos.transcript
        cost = SelectionCost(
            ecos.privacy.epsilon_rdp, ecos.privacy.epsilon_pld, t.bytes_down, t.bytes_up
        )
        return np.asarray(idx), cost
    if method == "random":
        idx = sampling.random_select(keys["random"], pool_features.shape[0], budget=budget)
        return np.asarray(idx), free
    if method == "k_center":
        idx = sampling.k_center_select(
            keys["k_center"], pool_features, budget=budget, metric=metric
        )
        return np.asarray(idx), free
    if method == "oracle":
        if client_features is None:
            raise ValueError("select('oracle', ...) needs client_features (it is not private).")
        idx = sampling.oracle_select(
            pool_features,
            client_features,
            budget=budget,
            metric=metric,
            kappa=oracle_kappa,
            chunk_size=chunk_size,
        )
        upload = protocol.comparison_bytes(client_features, pool_features).upload_client_data
        return np.asarray(idx), SelectionCost(None, None, 0, upload)
    raise ValueError(f"unknown method {method!r}; choose from {sorted(METHOD_NAMES)}.")
