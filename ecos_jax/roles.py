"""The two roles of ECOS, each holding only what it may see.

`Cloud` holds the pool: it clusters it, broadcasts the centroids and selects from the
client's noisy scores. The client (`client_respond`, or the `Client` holder) sees only
the centroids message and its own features, and returns only a `ScoresMessage`. A round
that joins them is `ecos_jax.protocol.ecos_round`.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3, Fig. 1.
"""

from __future__ import annotations

from typing import Any, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import coverage, noise, privacy, sampling
from ecos_jax._validate import (
    as_client_features,
    check_key,
    int_in_range,
    positive_finite,
    positive_int,
)
from ecos_jax.distances import Metric, all_finite, check_metric, normalize_rows
from ecos_jax.keys import named_key
from ecos_jax.kmeans import KMeansResult
from ecos_jax.kmeans import kmeans as fit_kmeans
from ecos_jax.messages import CentroidsMessage, ScoresMessage

__all__ = ["Client", "Cloud", "client_respond"]


class Cloud:
    """The cloud role: holds the pool features, broadcasts centroids, selects a subset.

    Example:
      cloud = Cloud(pool_features)
      msg = cloud.broadcast(key, num_clusters=50)         # CentroidsMessage, goes down
      idx = cloud.select(scores_msg, budget=1000)         # after the client answers

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (server side).
    """

    def __init__(
        self, pool_features, *, metric: Metric = "l2", chunk_size: int = sampling.DEFAULT_CHUNK_SIZE
    ):
        check_metric(metric)
        # Kept as a float32 device array: no host copy of a pool that can be gigabytes.
        x = jnp.asarray(pool_features, dtype=jnp.float32)
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"pool_features must be a non-empty 2-D [N, D] array, got {x.shape}.")
        if not bool(all_finite(x)):
            raise ValueError("pool_features must be finite; got NaN or inf.")
        self.pool_features = x
        self.metric = metric
        # Rows per distance block, in k-means and in the selection alike.
        self.chunk_size = positive_int(chunk_size, "chunk_size")
        self.clustering: KMeansResult | None = None

    @property
    def num_pool(self) -> int:
        """Number of pool points."""
        return int(self.pool_features.shape[0])

    def broadcast(
        self, key: jax.Array, *, num_clusters: int, num_iters: int = 100, tol: float = 1e-4
    ) -> CentroidsMessage:
        """Runs k-means on the pool (unit-normalised rows for cosine) → `CentroidsMessage`."""
        int_in_range(num_clusters, "num_clusters", low=1, high=self.num_pool, bound="the pool size")
        check_key(key, "key")
        x = self.pool_features
        if self.metric == "cosine":
            x = normalize_rows(x)
        self.clustering = fit_kmeans(
            key, x, k=int(num_clusters), num_iters=num_iters, tol=tol, chunk_size=self.chunk_size
        )
        return CentroidsMessage(np.asarray(self.clustering.centroids))

    def select(
        self,
        message: ScoresMessage,
        *,
        budget: int,
        threshold: float | None = None,
        **options: Unpack[sampling.CandidateOptions],
    ) -> np.ndarray:
        """ECOS selection (`ecos_jax.sampling.ecos_select`) from the client's noisy scores.

        `threshold` and the `options` (`kappa`, `top_k`) are `ecos_select`'s.
        """
        if self.clustering is None:
            raise ValueError("Cloud.select needs a clustering: call Cloud.broadcast first.")
        if not isinstance(message, ScoresMessage):
            raise TypeError(f"message must be a ScoresMessage, got {type(message).__name__}.")
        centroids_RxD = np.asarray(self.clustering.centroids)
        if message.scores.shape[0] != centroids_RxD.shape[0]:
            raise ValueError(
                f"the scores message has {message.scores.shape[0]} entries but the cloud "
                f"broadcast {centroids_RxD.shape[0]} centroids."
            )
        return sampling.ecos_select(
            self.pool_features,
            np.asarray(self.clustering.assignments),
            centroids_RxD,
            message.scores,
            budget=budget,
            threshold=threshold,
            metric=self.metric,
            chunk_size=self.chunk_size,
            **options,
        )


def client_respond(
    message: CentroidsMessage,
    client_features,
    *,
    sigma: float,
    randomness: noise.Randomness | None = None,
    method: str = "voronoi",
    **coverage_kwargs: Any,
) -> ScoresMessage:
    """The client role: coverage counts of its own features, privatised → `ScoresMessage`.

    Sees only the centroids message and its own features; returns only the noisy scores
    `ŝ = s + N_Z(0, (σΔ)²)` (int64), with `Δ` the sensitivity of `method`. The noise is
    secure by default (OpenDP's exact discrete Gaussian, OS entropy); a reproducible
    experiment asks for `randomness=noise.simulation(key)` by name, and the message says
    which was used.

    Args:
      message: the cloud's `CentroidsMessage`.
      client_features: the client's private features [M, D].
      sigma: noise multiplier σ (noise scale `σ·Δ`), e.g. from `privacy.calibrate_sigma`.
      randomness: None or `noise.secure()` (deployment), or `noise.simulation(key)` with
        a key that is not derived from the cloud's keys.
      method: `'voronoi'` (default, Δ=1), `'top_m'` (Δ=√m) or `'radius'` (Δ=√max_votes).
      **coverage_kwargs: passed to `coverage.coverage_scores` (`m`, `radii`, `max_votes`,
        `metric`, `chunk_size`, `mask`).

    Returns:
      `ScoresMessage` with R int64 noisy scores and the name of their randomness.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (client side, Eq. for ŝ);
      Canonne, Kamath, Steinke, NeurIPS 2020 (the discrete Gaussian).
    """
    if getattr(message, "dtype", None) is not None and jnp.issubdtype(
        message.dtype, jax.dtypes.prng_key
    ):
        raise TypeError(
            "client_respond takes no key: its noise is secure by default; for a reproducible "
            "simulation pass randomness=ecos_jax.noise.simulation(key) after the features."
        )
    if not isinstance(message, CentroidsMessage):
        raise TypeError(f"message must be a CentroidsMessage, got {type(message).__name__}.")
    randomness = noise.resolve(randomness)
    scores = coverage.coverage_scores(
        client_features, message.centroids, method=method, **coverage_kwargs
    )
    noisy_R = privacy.privatize(scores, sigma=sigma, randomness=randomness)
    return ScoresMessage(noisy_R, randomness=randomness.name)


class Client:
    """The client role: keeps its features private and answers centroids with noisy scores.

    A thin holder around `client_respond`: the features never leave this object except
    through `respond`, whose only output is a `ScoresMessage`. Its noise is secure unless
    `randomness=noise.simulation(key)` is given (then every `respond` draws from a fresh
    key, `named_key(key, f"response/{i}")` for its i-th response).

    Example:
      client = Client(client_features, sigma=6.68)
      scores_msg = client.respond(centroids_msg)     # goes up

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (client side).
    """

    def __init__(
        self,
        client_features,
        *,
        sigma: float,
        randomness: noise.Randomness | None = None,
        method: str = "voronoi",
        **coverage_kwargs: Any,
    ):
        x = as_client_features(client_features, "client_features")
        self._features = np.asarray(x, dtype=np.float32)
        self.sigma = positive_finite(sigma, "sigma")
        self.randomness = noise.resolve(randomness)
        self.method = method
        self.coverage_kwargs = dict(coverage_kwargs)
        self._responses = 0

    def respond(self, message: CentroidsMessage) -> ScoresMessage:
        """`client_respond` on this client's own features (fresh noise every call)."""
        randomness = self.randomness
        if isinstance(randomness, noise.SimulatedRandomness):
            key = named_key(randomness.key, f"response/{self._responses}")
            randomness = noise.simulation(key)
        self._responses += 1
        return client_respond(
            message,
            self._features,
            sigma=self.sigma,
            randomness=randomness,
            method=self.method,
            **self.coverage_kwargs,
        )
