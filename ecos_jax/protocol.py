"""The ECOS protocol: two roles, two explicit messages, and a transcript of what crosses.

| step | who    | what                                              | message                  |
|------|--------|---------------------------------------------------|--------------------------|
| 1    | cloud  | k-means on its pool features into R centroids     | down: `CentroidsMessage` |
| 2    | client | coverage score per centroid plus Gaussian noise   | up: `ScoresMessage`      |
| 3    | cloud  | filter, allocate, proximal candidates, k-center   | nothing                  |

Nothing else crosses the boundary. `client_respond` takes only the centroids message, the
client's own features and a key, and returns only the noisy scores; `Transcript` records
every message with its size (down `4·R·d` bytes, up `4·R` bytes, float32).

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3, Fig. 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import coverage, privacy, sampling
from ecos_jax.distances import Metric, all_finite, check_metric, normalize_rows
from ecos_jax.kmeans import KMeansResult
from ecos_jax.kmeans import kmeans as fit_kmeans

Direction = Literal["down", "up"]


@dataclasses.dataclass(frozen=True)
class CentroidsMessage:
    """Cloud → client: the R k-means centroids of the pool features (float32 [R, d])."""

    centroids: np.ndarray

    def __post_init__(self):
        c = np.asarray(self.centroids)
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
            raise ValueError(f"centroids must be a non-empty 2-D [R, d] array, got {c.shape}.")
        if not np.all(np.isfinite(c)):
            raise ValueError("centroids must be finite; got NaN or inf.")
        object.__setattr__(self, "centroids", np.ascontiguousarray(c, dtype=np.float32))

    @property
    def num_bytes(self) -> int:
        """Payload size: `4·R·d` bytes."""
        return int(self.centroids.nbytes)


@dataclasses.dataclass(frozen=True)
class ScoresMessage:
    """Client → cloud: the R noisy coverage scores (float32 [R])."""

    scores: np.ndarray

    def __post_init__(self):
        s = np.asarray(self.scores)
        if s.ndim != 1 or s.shape[0] < 1:
            raise ValueError(f"scores must be a non-empty 1-D [R] array, got {s.shape}.")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores must be finite; got NaN or inf.")
        object.__setattr__(self, "scores", np.ascontiguousarray(s, dtype=np.float32))

    @property
    def num_bytes(self) -> int:
        """Payload size: `4·R` bytes."""
        return int(self.scores.nbytes)


Message = CentroidsMessage | ScoresMessage


class TranscriptEntry(NamedTuple):
    """One message that crossed the client/cloud boundary."""

    direction: str  # "down" (cloud → client) or "up" (client → cloud)
    message_type: str  # the message class name
    num_bytes: int


@dataclasses.dataclass
class Transcript:
    """Every message that crossed the boundary, in order, with byte totals."""

    entries: list[TranscriptEntry] = dataclasses.field(default_factory=list)

    def record(self, direction: Direction, message: Message) -> Message:
        """Logs `message` as sent in `direction` and returns it unchanged."""
        if direction not in ("down", "up"):
            raise ValueError(f"direction must be 'down' or 'up', got {direction!r}.")
        if not isinstance(message, CentroidsMessage | ScoresMessage):
            raise TypeError(
                "only CentroidsMessage and ScoresMessage may cross the boundary, got "
                f"{type(message).__name__}."
            )
        self.entries.append(TranscriptEntry(direction, type(message).__name__, message.num_bytes))
        return message

    @property
    def bytes_down(self) -> int:
        """Total bytes sent cloud → client."""
        return sum(e.num_bytes for e in self.entries if e.direction == "down")

    @property
    def bytes_up(self) -> int:
        """Total bytes sent client → cloud."""
        return sum(e.num_bytes for e in self.entries if e.direction == "up")

    @property
    def total_bytes(self) -> int:
        """Bytes sent both ways."""
        return self.bytes_down + self.bytes_up

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary: entries and totals."""
        return {
            "entries": [e._asdict() for e in self.entries],
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
            "total_bytes": self.total_bytes,
        }


class ComparisonBytes(NamedTuple):
    """What the non-ECOS alternatives would move, in bytes (raw array sizes)."""

    upload_client_data: int  # the client sends its data (or features) to the cloud
    download_pool_data: int  # the client downloads the cloud's pool


def comparison_bytes(client_data, pool_data) -> ComparisonBytes:
    """Raw byte sizes of uploading the client data and of downloading the pool data.

    Pass whatever would be sent (raw images, or features for a feature-level oracle);
    the size is the array's `nbytes` in its own dtype.

    Examples:
      >>> comparison_bytes(np.zeros((10, 4), np.float32), np.zeros((100, 4), np.uint8))
      ComparisonBytes(upload_client_data=160, download_pool_data=400)

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Fig. 4 (communication cost).
    """
    return ComparisonBytes(
        upload_client_data=_nbytes(client_data), download_pool_data=_nbytes(pool_data)
    )


def _nbytes(x) -> int:
    """Size of an array in bytes, read without converting it (pools can be gigabytes)."""
    return int(x.nbytes) if hasattr(x, "nbytes") else int(np.asarray(x).nbytes)


class Cloud:
    """The cloud role: holds the pool features, broadcasts centroids, selects a subset.

    Example:
      cloud = Cloud(pool_features)
      msg = cloud.broadcast(key, num_clusters=50)         # CentroidsMessage, goes down
      idx = cloud.select(scores_msg, budget=1000)         # after the client answers

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (server side).
    """

    def __init__(self, pool_features, *, metric: Metric = "l2"):
        check_metric(metric)
        # Kept as a float32 device array: no host copy of a pool that can be gigabytes.
        x = jnp.asarray(pool_features, dtype=jnp.float32)
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"pool_features must be a non-empty 2-D [N, d] array, got {x.shape}.")
        if not bool(all_finite(x)):
            raise ValueError("pool_features must be finite; got NaN or inf.")
        self.pool_features = x
        self.metric = metric
        self.clustering: KMeansResult | None = None

    @property
    def num_pool(self) -> int:
        """Number of pool points."""
        return int(self.pool_features.shape[0])

    def broadcast(
        self,
        key: jax.Array,
        *,
        num_clusters: int,
        num_iters: int = 100,
        tol: float = 1e-4,
        chunk_size: int = 4096,
    ) -> CentroidsMessage:
        """Runs k-means on the pool (unit-normalised rows for cosine) → `CentroidsMessage`."""
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, int | np.integer):
            raise ValueError(f"num_clusters must be an int, got {num_clusters!r}.")
        if not 1 <= num_clusters <= self.num_pool:
            raise ValueError(
                f"num_clusters must be in [1, {self.num_pool}] (the pool size), got {num_clusters}."
            )
        x = self.pool_features
        if self.metric == "cosine":
            x = normalize_rows(x)
        self.clustering = fit_kmeans(
            key, x, k=int(num_clusters), num_iters=num_iters, tol=tol, chunk_size=chunk_size
        )
        return CentroidsMessage(np.asarray(self.clustering.centroids))

    def select(
        self,
        message: ScoresMessage,
        *,
        budget: int,
        kappa: float | None = 1.5,
        threshold: float | None = None,
        top_k: int | None = None,
    ) -> np.ndarray:
        """ECOS selection (`ecos_jax.sampling.ecos_select`) from the client's noisy scores."""
        if self.clustering is None:
            raise ValueError("Cloud.select needs a clustering: call Cloud.broadcast first.")
        if not isinstance(message, ScoresMessage):
            raise TypeError(f"message must be a ScoresMessage, got {type(message).__name__}.")
        centroids = np.asarray(self.clustering.centroids)
        if message.scores.shape[0] != centroids.shape[0]:
            raise ValueError(
                f"the scores message has {message.scores.shape[0]} entries but the cloud "
                f"broadcast {centroids.shape[0]} centroids."
            )
        return sampling.ecos_select(
            None,
            self.pool_features,
            np.asarray(self.clustering.assignments),
            centroids,
            message.scores,
            budget=budget,
            kappa=kappa,
            threshold=threshold,
            top_k=top_k,
            metric=self.metric,
        )


def client_respond(
    key: jax.Array,
    message: CentroidsMessage,
    client_features,
    *,
    sigma: float,
    method: str = "voronoi",
    **coverage_kwargs: Any,
) -> ScoresMessage:
    """The client role: coverage scores of its own features, privatised → `ScoresMessage`.

    Sees only the centroids message, its own features and a key; returns only the noisy
    scores `ŝ = s + N(0, (σΔ)² I)`, with `Δ` the sensitivity of `method`.

    Args:
      key: a `jax.random.key` for the noise.
      message: the cloud's `CentroidsMessage`.
      client_features: the client's private features [M, d].
      sigma: noise multiplier σ (noise std is `σ·Δ`), e.g. from `privacy.calibrate_sigma`.
      method: `'voronoi'` (default, Δ=1), `'top_m'` (Δ=√m) or `'radius'` (Δ=√max_votes).
      **coverage_kwargs: passed to `coverage.coverage_scores` (`m`, `radii`, `max_votes`,
        `metric`, `chunk_size`, `mask`).

    Returns:
      `ScoresMessage` with R float32 noisy scores.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (client side, Eq. for ŝ).
    """
    if not isinstance(message, CentroidsMessage):
        raise TypeError(f"message must be a CentroidsMessage, got {type(message).__name__}.")
    scores = coverage.coverage_scores(
        client_features, message.centroids, method=method, **coverage_kwargs
    )
    noisy_R = privacy.privatize(key, scores.counts, sigma=sigma, sensitivity=scores.sensitivity)
    return ScoresMessage(np.asarray(noisy_R, dtype=np.float32))


class Client:
    """The client role: keeps its features private and answers centroids with noisy scores.

    A thin holder around `client_respond`: the features never leave this object except
    through `respond`, whose only output is a `ScoresMessage`.

    Example:
      client = Client(client_features, sigma=6.68)
      scores_msg = client.respond(key, centroids_msg)     # goes up

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (client side).
    """

    def __init__(
        self, client_features, *, sigma: float, method: str = "voronoi", **coverage_kwargs: Any
    ):
        x = np.asarray(client_features, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"client_features must be 2-D [M, d], got shape {x.shape}.")
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}.")
        self._features = x
        self.sigma = float(sigma)
        self.method = method
        self.coverage_kwargs = dict(coverage_kwargs)

    def respond(self, key: jax.Array, message: CentroidsMessage) -> ScoresMessage:
        """`client_respond` on this client's own features."""
        return client_respond(
            key,
            message,
            self._features,
            sigma=self.sigma,
            method=self.method,
            **self.coverage_kwargs,
        )


class PrivacyReport(NamedTuple):
    """Privacy of one ECOS round (one Gaussian release of the score vector)."""

    noise_multiplier: float  # σ; the noise std on the scores is σ·Δ
    sensitivity: float  # Δ of the coverage method
    noise_std: float  # σ·Δ
    delta: float
    epsilon_rdp: float  # RDP accountant (the primary figure)
    epsilon_pld: float  # PLD accountant (tighter)


def privacy_report(
    sigma: float,
    *,
    method: str = "voronoi",
    delta: float = 1e-5,
    coverage_kwargs: dict[str, Any] | None = None,
) -> PrivacyReport:
    """ε (RDP and PLD) and noise std of one score release with noise multiplier `sigma`.

    Args:
      sigma: noise multiplier σ, finite and > 0.
      method: coverage method, which fixes the sensitivity Δ.
      delta: the δ of the guarantee.
      coverage_kwargs: `m` (top-m) or `max_votes` (radius), when the method needs them.

    Returns:
      A `PrivacyReport`.

    Examples:
      >>> r = privacy_report(2.0, delta=1e-5)
      >>> round(r.epsilon_rdp, 3), round(r.epsilon_pld, 3), r.noise_std
      (2.166, 1.993, 2.0)

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (privacy of the scores).
    """
    is_number = isinstance(sigma, int | float | np.number) and not isinstance(sigma, bool)
    if not (is_number and math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}.")
    coverage_kwargs = coverage_kwargs or {}
    sensitivity = coverage.coverage_sensitivity(
        method, m=coverage_kwargs.get("m"), max_votes=coverage_kwargs.get("max_votes")
    )
    eps = privacy.epsilons([privacy.GaussianRelease(noise_multiplier=float(sigma))], delta=delta)
    return PrivacyReport(
        noise_multiplier=float(sigma),
        sensitivity=float(sensitivity),
        noise_std=float(sigma * sensitivity),
        delta=float(delta),
        epsilon_rdp=float(eps["rdp"]),
        epsilon_pld=float(eps["pld"]),
    )


class ProtocolResult(NamedTuple):
    """Outcome of `run_protocol`."""

    indices: np.ndarray  # [budget] int64 selected pool indices
    transcript: Transcript  # the two messages that crossed
    privacy: PrivacyReport


def run_protocol(
    key: jax.Array,
    pool_features,
    client_features,
    *,
    num_clusters: int,
    budget: int,
    sigma: float | None = None,
    target_epsilon: float | None = None,
    delta: float = 1e-5,
    accountant: str = "rdp",
    method: str = "voronoi",
    coverage_kwargs: dict[str, Any] | None = None,
    kappa: float | None = 1.5,
    threshold_multiple: float | None = None,
    top_k: int | None = None,
    metric: Metric = "l2",
    kmeans_iters: int = 100,
    chunk_size: int = 4096,
) -> ProtocolResult:
    """One full ECOS round: broadcast → respond → select, with transcript and ε.

    Exactly two messages cross: the centroids (down) and the noisy scores (up).

    Args:
      key: root `jax.random.key`; split by name into the k-means and the noise keys.
      pool_features: the cloud's pool features [N, d].
      client_features: the client's private features [M, d].
      num_clusters: R, the number of centroids.
      budget: number of pool points to select.
      sigma: noise multiplier σ; give either this or `target_epsilon`.
      target_epsilon: calibrate σ to this ε at `delta` under `accountant`.
      delta: the δ of the (ε, δ) guarantee.
      accountant: `'rdp'` or `'pld'`, used for calibration.
      method: coverage method (`'voronoi'`, `'top_m'`, `'radius'`).
      coverage_kwargs: extra arguments of the coverage method (`m`, `radii`, `max_votes`).
      kappa: candidate multiplier κ (None: whole cluster).
      threshold_multiple: drop clusters scoring below this multiple of the noise std σΔ
        (a public quantity, so the threshold leaks nothing).
      top_k: keep only the top-k clusters.
      metric: `'l2'` or `'cosine'` for coverage and selection.
      kmeans_iters: Lloyd iterations.
      chunk_size: rows per distance block in k-means and coverage.

    Returns:
      `ProtocolResult(indices, transcript, privacy)`.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Algorithm 1.
    """
    if (sigma is None) == (target_epsilon is None):
        raise ValueError("give exactly one of sigma (noise multiplier) or target_epsilon.")
    coverage_kwargs = dict(coverage_kwargs or {})
    for reserved in ("metric", "chunk_size"):
        if reserved in coverage_kwargs:
            raise ValueError(f"pass {reserved} to run_protocol directly, not in coverage_kwargs.")
    if sigma is None:
        sigma = privacy.calibrate_sigma(target_epsilon, delta=delta, count=1, accountant=accountant)
    report = privacy_report(
        float(sigma), method=method, delta=delta, coverage_kwargs=coverage_kwargs
    )
    kmeans_key = jax.random.fold_in(key, 0)
    noise_key = jax.random.fold_in(key, 1)

    transcript = Transcript()
    cloud = Cloud(pool_features, metric=metric)
    down = transcript.record(
        "down",
        cloud.broadcast(
            kmeans_key, num_clusters=num_clusters, num_iters=kmeans_iters, chunk_size=chunk_size
        ),
    )
    client = Client(
        client_features,
        sigma=float(sigma),
        method=method,
        metric=metric,
        chunk_size=chunk_size,
        **coverage_kwargs,
    )
    up = transcript.record("up", client.respond(noise_key, down))
    threshold = None if threshold_multiple is None else threshold_multiple * report.noise_std
    indices = cloud.select(up, budget=budget, kappa=kappa, threshold=threshold, top_k=top_k)
    return ProtocolResult(indices=indices, transcript=transcript, privacy=report)
