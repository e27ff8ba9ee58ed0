"""The ECOS protocol: two roles, two explicit messages, and one round that joins them.

| step | who    | what                                              | message                  |
|------|--------|---------------------------------------------------|--------------------------|
| 1    | cloud  | k-means on its pool features into R centroids     | down: `CentroidsMessage` |
| 2    | client | coverage score per centroid plus Gaussian noise   | up: `ScoresMessage`      |
| 3    | cloud  | filter, allocate, proximal candidates, k-center   | nothing                  |

Nothing else crosses the boundary. The roles live in `ecos_jax.roles` (`Cloud`, and
`client_respond`, which takes only the centroids message, the client's own features and
its randomness, and returns only the noisy scores); the `Transcript` of
`ecos_jax.messages` records every message with its size (down `4·R·D` bytes, up `8·R`
bytes). This module joins them: `ecos_round` runs steps 1-2 once, `select_from_round`
runs step 3 for any budget (post-processing, no extra ε), and `run_protocol` is the two
in a row.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3, Fig. 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Unpack

import jax
import numpy as np

from ecos_jax import coverage, noise, privacy, sampling
from ecos_jax._validate import check_key, positive_finite
from ecos_jax.distances import Metric
from ecos_jax.messages import ScoresMessage, Transcript
from ecos_jax.roles import Cloud, client_respond

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "EcosRound",
    "PrivacyReport",
    "ProtocolResult",
    "check_noise_key_is_the_clients",
    "ecos_round",
    "privacy_report",
    "run_protocol",
    "select_from_round",
]

#: Rows per distance block in every step of a round: k-means, coverage and selection.
DEFAULT_CHUNK_SIZE = sampling.DEFAULT_CHUNK_SIZE


class PrivacyReport(NamedTuple):
    """Privacy of one ECOS round (one discrete Gaussian release of the score vector)."""

    noise_multiplier: float  # σ; the noise scale on the scores is σ·Δ
    sensitivity: float  # Δ of the coverage method (√ votes per sample)
    noise_std: float  # σ·Δ, the discrete Gaussian's scale parameter
    delta: float
    epsilon_rdp: float  # zCDP through the RDP accountant (the primary figure)
    epsilon_pld: float  # the discrete Gaussian's PLD (tighter)
    release: privacy.DiscreteGaussianRelease  # what to record in a PrivacyLedger


def privacy_report(
    sigma: float,
    *,
    method: str = "voronoi",
    delta: float = 1e-5,
    coverage_kwargs: dict[str, Any] | None = None,
) -> PrivacyReport:
    """ε (RDP and PLD) and noise scale of one score release with noise multiplier `sigma`.

    Args:
      sigma: noise multiplier σ, finite and > 0.
      method: coverage method, which fixes the sensitivity Δ = √(votes per sample).
      delta: the δ of the guarantee.
      coverage_kwargs: `m` (top-m) or `max_votes` (radius), when the method needs them;
        other coverage arguments (`radii`, `metric`, ...) are ignored here.

    Returns:
      A `PrivacyReport`.

    Examples:
      >>> r = privacy_report(2.0, delta=1e-5)
      >>> round(r.epsilon_rdp, 3), round(r.epsilon_pld, 3), r.noise_std
      (2.166, 2.011, 2.0)
      >>> privacy_report(2.0, method="top_m", coverage_kwargs={"m": 4}).noise_std
      4.0

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (privacy of the scores).
    """
    sigma = positive_finite(sigma, "sigma")
    coverage_kwargs = coverage_kwargs or {}
    votes = coverage.votes_per_sample(
        method, m=coverage_kwargs.get("m"), max_votes=coverage_kwargs.get("max_votes")
    )
    release = privacy.DiscreteGaussianRelease(noise_multiplier=sigma, coordinates=votes)
    eps = privacy.epsilons(release, delta=delta)
    return PrivacyReport(
        noise_multiplier=sigma,
        sensitivity=release.sensitivity,
        noise_std=release.scale,
        delta=float(delta),
        epsilon_rdp=float(eps["rdp"]),
        epsilon_pld=float(eps["pld"]),
        release=release,
    )


def check_noise_key_is_the_clients(randomness: noise.Randomness, cloud_keys) -> None:
    """Raises if a simulation key is one of the cloud's keys (the cloud could remove the noise)."""
    if not isinstance(randomness, noise.SimulatedRandomness):
        return
    mine = np.asarray(jax.random.key_data(randomness.key))
    for cloud_key in cloud_keys:
        if np.array_equal(mine, np.asarray(jax.random.key_data(cloud_key))):
            raise ValueError(
                "the client's simulation key equals a key of the cloud, which could then "
                "subtract the noise; derive it from the client's own root "
                "(ecos_jax.keys.named_key(client_root, ...))."
            )


class EcosRound(NamedTuple):
    """One ECOS round on the cloud side: the clustering, the reply and the transcript."""

    cloud: Cloud  # holds the pool, its clustering and the selection settings
    scores: ScoresMessage  # what the cloud received
    transcript: Transcript  # the two messages that crossed
    privacy: PrivacyReport  # ε of the one release


def ecos_round(
    key: jax.Array,
    pool_features,
    client_features,
    *,
    sigma: float,
    num_clusters: int,
    kmeans_iters: int = 100,
    randomness: noise.Randomness | None = None,
    method: str = "voronoi",
    coverage_kwargs: dict[str, Any] | None = None,
    delta: float = 1e-5,
    metric: Metric = "l2",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EcosRound:
    """Broadcast → respond once, both messages logged in a transcript.

    The two roles draw their randomness separately: `key` is the cloud's (k-means); the
    client's noise is secure unless `randomness=noise.simulation(client_key)` is given,
    and a simulation key equal to the cloud's key is refused.

    Args:
      key: the cloud's `jax.random.key` (k-means seeding).
      pool_features: [N, D] the cloud's pool features.
      client_features: [M, D] the client's private features (used by the client role only).
      sigma: noise multiplier σ of the score release (noise scale σΔ).
      num_clusters: R, the number of centroids sent down.
      kmeans_iters: cap on Lloyd iterations.
      randomness: the client's noise (None: secure; experiments pass
        `selection.client_randomness(seed, name)`).
      method: coverage score ("voronoi", "radius" or "top_m").
      coverage_kwargs: the method's arguments: `m` (top-m), `radii` and `max_votes`
        (radius).
      delta: the δ at which the round's ε is reported.
      metric: "l2" or "cosine", for k-means, coverage and selection.
      chunk_size: rows per distance block in k-means, coverage and selection.

    Returns:
      An `EcosRound`; one round serves every budget (selection is post-processing).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    check_key(key, "key")
    randomness = noise.resolve(randomness)
    check_noise_key_is_the_clients(randomness, [key])
    coverage_kwargs = dict(coverage_kwargs or {})
    for reserved in ("metric", "chunk_size"):
        if reserved in coverage_kwargs:
            raise ValueError(f"pass {reserved} to ecos_round directly, not in coverage_kwargs.")
    report = privacy_report(sigma, method=method, delta=delta, coverage_kwargs=coverage_kwargs)
    transcript = Transcript()
    cloud = Cloud(pool_features, metric=metric, chunk_size=chunk_size)
    down = transcript.record(
        "down", cloud.broadcast(key, num_clusters=num_clusters, num_iters=kmeans_iters)
    )
    up = transcript.record(
        "up",
        client_respond(
            down,
            client_features,
            sigma=report.noise_multiplier,
            randomness=randomness,
            method=method,
            metric=metric,
            chunk_size=chunk_size,
            **coverage_kwargs,
        ),
    )
    return EcosRound(cloud, up, transcript, report)


def select_from_round(
    ecos: EcosRound,
    *,
    budget: int,
    threshold_multiple: float | None = None,
    **options: Unpack[sampling.CandidateOptions],
) -> np.ndarray:
    """The cloud's ECOS selection of `budget` pool indices from one round's scores.

    Args:
      ecos: the `EcosRound` (any number of budgets may be selected from one round).
      budget: B, the number of pool points to select.
      threshold_multiple: drop clusters scoring below this multiple of the noise scale σΔ
        (a public quantity, so the threshold leaks nothing); None keeps all.
      **options: `kappa` (candidate multiplier κ; None: whole cluster) and `top_k` (keep
        only the top-k clusters), as in `ecos_jax.sampling.ecos_select`.

    Returns:
      int64 [budget] unique pool indices (`ecos_jax.sampling.ecos_select`).

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.3.
    """
    threshold = None if threshold_multiple is None else threshold_multiple * ecos.privacy.noise_std
    return ecos.cloud.select(ecos.scores, budget=budget, threshold=threshold, **options)


class ProtocolResult(NamedTuple):
    """Outcome of `run_protocol`."""

    indices: np.ndarray  # [B] int64 selected pool indices
    transcript: Transcript  # the two messages that crossed
    privacy: PrivacyReport
    scores: ScoresMessage  # what the cloud received


def run_protocol(
    key: jax.Array,
    pool_features,
    client_features,
    *,
    num_clusters: int,
    budget: int,
    sigma: float | None = None,
    target_epsilon: float | None = None,
    randomness: noise.Randomness | None = None,
    delta: float = 1e-5,
    accountant: str = "rdp",
    method: str = "voronoi",
    coverage_kwargs: dict[str, Any] | None = None,
    kappa: float | None = 1.5,
    threshold_multiple: float | None = None,
    top_k: int | None = None,
    metric: Metric = "l2",
    kmeans_iters: int = 100,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ProtocolResult:
    """One full ECOS round: broadcast → respond → select, with transcript and ε.

    `ecos_round` then `select_from_round`, after calibrating σ when `target_epsilon` is
    given. Exactly two messages cross: the centroids (down) and the noisy scores (up).

    Args:
      key: the cloud's `jax.random.key` (k-means seeding).
      pool_features: the cloud's pool features [N, D].
      client_features: the client's private features [M, D].
      num_clusters: R, the number of centroids.
      budget: number of pool points to select.
      sigma: noise multiplier σ; give either this or `target_epsilon`.
      target_epsilon: calibrate σ to this ε at `delta` under `accountant`.
      randomness: the client's noise source (None: secure); a simulation key equal to
        the cloud's key is refused.
      delta: the δ of the (ε, δ) guarantee.
      accountant: `'rdp'` or `'pld'`, used for calibration.
      method: coverage method (`'voronoi'`, `'top_m'`, `'radius'`).
      coverage_kwargs: extra arguments of the coverage method (`m`, `radii`, `max_votes`).
      kappa: candidate multiplier κ (None: whole cluster).
      threshold_multiple: drop clusters scoring below this multiple of the noise scale σΔ
        (a public quantity, so the threshold leaks nothing).
      top_k: keep only the top-k clusters.
      metric: `'l2'` or `'cosine'` for coverage and selection.
      kmeans_iters: Lloyd iterations.
      chunk_size: rows per distance block in k-means, coverage and selection.

    Returns:
      `ProtocolResult(indices, transcript, privacy, scores)`.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Algorithm 1.
    """
    check_key(key, "key")
    if (sigma is None) == (target_epsilon is None):
        raise ValueError("give exactly one of sigma (noise multiplier) or target_epsilon.")
    if sigma is None:
        kwargs = coverage_kwargs or {}
        votes = coverage.votes_per_sample(
            method, m=kwargs.get("m"), max_votes=kwargs.get("max_votes")
        )
        sigma = privacy.calibrate_sigma(
            target_epsilon, delta=delta, coordinates=votes, accountant=accountant
        )
    ecos = ecos_round(
        key,
        pool_features,
        client_features,
        sigma=float(sigma),
        num_clusters=num_clusters,
        kmeans_iters=kmeans_iters,
        randomness=randomness,
        method=method,
        coverage_kwargs=coverage_kwargs,
        delta=delta,
        metric=metric,
        chunk_size=chunk_size,
    )
    indices = select_from_round(
        ecos, budget=budget, kappa=kappa, threshold_multiple=threshold_multiple, top_k=top_k
    )
    return ProtocolResult(indices, ecos.transcript, ecos.privacy, ecos.scores)
