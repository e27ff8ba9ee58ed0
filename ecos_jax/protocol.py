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
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import coverage, noise, privacy, sampling
from ecos_jax._validate import check_key, positive_finite
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
        if c.dtype.kind not in "iuf":
            raise ValueError(f"centroids must hold real numbers, got dtype {c.dtype}.")
        # Checked after the cast: 1e39 is finite in float64 but inf in float32.
        with np.errstate(over="ignore"):
            c = np.ascontiguousarray(c, dtype=np.float32)
        if not np.all(np.isfinite(c)):
            raise ValueError(
                "centroids must be finite in float32; got NaN or inf (or |x| > 3.4e38)."
            )
        object.__setattr__(self, "centroids", c)

    @property
    def num_bytes(self) -> int:
        """Payload size: `4·R·d` bytes."""
        return int(self.centroids.nbytes)


@dataclasses.dataclass(frozen=True)
class ScoresMessage:
    """Client → cloud: the R noisy coverage scores (int64 [R]) and how their noise was drawn.

    Attributes:
      scores: int64 [R], integer counts plus discrete Gaussian noise.
      randomness: `"secure"` or `"simulation"` (`ecos_jax.noise.RANDOMNESS_NAMES`).
    """

    scores: np.ndarray
    randomness: str = "secure"

    def __post_init__(self):
        s = np.asarray(self.scores)
        if s.ndim != 1 or s.shape[0] < 1:
            raise ValueError(f"scores must be a non-empty 1-D [R] array, got {s.shape}.")
        if s.dtype.kind not in "iu":
            raise ValueError(
                f"scores must be integers (counts plus integer noise), got dtype {s.dtype}; "
                "a float release leaks through its rounding."
            )
        if s.dtype.kind == "u" and s.size and int(s.max()) > np.iinfo(np.int64).max:
            raise ValueError("scores exceed the int64 range.")
        if self.randomness not in noise.RANDOMNESS_NAMES:
            raise ValueError(
                f"randomness must be one of {sorted(noise.RANDOMNESS_NAMES)}, got "
                f"{self.randomness!r}."
            )
        object.__setattr__(self, "scores", np.ascontiguousarray(s, dtype=np.int64))

    @property
    def num_bytes(self) -> int:
        """Payload size: `8·R` bytes."""
        return int(self.scores.nbytes)


Message = CentroidsMessage | ScoresMessage


class TranscriptEntry(NamedTuple):
    """One message that crossed the client/cloud boundary."""

    direction: str  # "down" (cloud → client) or "up" (client → cloud)
    message_type: str  # the message class name
    num_bytes: int
    randomness: str | None  # how the scores' noise was drawn (None for centroids)


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
        randomness = message.randomness if isinstance(message, ScoresMessage) else None
        self.entries.append(
            TranscriptEntry(direction, type(message).__name__, message.num_bytes, randomness)
        )
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

    @property
    def randomness(self) -> str | None:
        """How the scores' noise was drawn ("secure", "simulation", or "mixed"); None if
        no scores crossed."""
        kinds = {e.randomness for e in self.entries if e.randomness is not None}
        if not kinds:
            return None
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary: entries, totals and the randomness of the scores."""
        return {
            "entries": [e._asdict() for e in self.entries],
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
            "total_bytes": self.total_bytes,
            "randomness": self.randomness,
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
        check_key(key, "key")
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
      client_features: the client's private features [M, d].
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
    key, `fold_in(key, number of earlier responses)`).

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
        x = coverage.check_client_features(client_features, "client_features")
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
            randomness = noise.simulation(jax.random.fold_in(randomness.key, self._responses))
        self._responses += 1
        return client_respond(
            message,
            self._features,
            sigma=self.sigma,
            randomness=randomness,
            method=self.method,
            **self.coverage_kwargs,
        )


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


class ProtocolResult(NamedTuple):
    """Outcome of `run_protocol`."""

    indices: np.ndarray  # [budget] int64 selected pool indices
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
    chunk_size: int = 4096,
) -> ProtocolResult:
    """One full ECOS round: broadcast → respond → select, with transcript and ε.

    Exactly two messages cross: the centroids (down) and the noisy scores (up). The two
    roles draw their randomness separately: `key` is the cloud's (k-means); the client's
    noise is secure unless `randomness=noise.simulation(client_key)` is given, and a
    simulation key equal to the cloud's key is refused.

    Args:
      key: the cloud's `jax.random.key` (k-means seeding).
      pool_features: the cloud's pool features [N, d].
      client_features: the client's private features [M, d].
      num_clusters: R, the number of centroids.
      budget: number of pool points to select.
      sigma: noise multiplier σ; give either this or `target_epsilon`.
      target_epsilon: calibrate σ to this ε at `delta` under `accountant`.
      randomness: the client's noise source (None: secure).
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
      chunk_size: rows per distance block in k-means and coverage.

    Returns:
      `ProtocolResult(indices, transcript, privacy)`.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Algorithm 1.
    """
    check_key(key, "key")
    randomness = noise.resolve(randomness)
    check_noise_key_is_the_clients(randomness, [key])
    if (sigma is None) == (target_epsilon is None):
        raise ValueError("give exactly one of sigma (noise multiplier) or target_epsilon.")
    coverage_kwargs = dict(coverage_kwargs or {})
    for reserved in ("metric", "chunk_size"):
        if reserved in coverage_kwargs:
            raise ValueError(f"pass {reserved} to run_protocol directly, not in coverage_kwargs.")
    if sigma is None:
        votes = coverage.votes_per_sample(
            method, m=coverage_kwargs.get("m"), max_votes=coverage_kwargs.get("max_votes")
        )
        sigma = privacy.calibrate_sigma(
            target_epsilon, delta=delta, coordinates=votes, accountant=accountant
        )
    report = privacy_report(
        float(sigma), method=method, delta=delta, coverage_kwargs=coverage_kwargs
    )

    transcript = Transcript()
    cloud = Cloud(pool_features, metric=metric)
    down = transcript.record(
        "down",
        cloud.broadcast(
            key, num_clusters=num_clusters, num_iters=kmeans_iters, chunk_size=chunk_size
        ),
    )
    up = transcript.record(
        "up",
        client_respond(
            down,
            client_features,
            sigma=float(sigma),
            randomness=randomness,
            method=method,
            metric=metric,
            chunk_size=chunk_size,
            **coverage_kwargs,
        ),
    )
    threshold = None if threshold_multiple is None else threshold_multiple * report.noise_std
    indices = cloud.select(up, budget=budget, kappa=kappa, threshold=threshold, top_k=top_k)
    return ProtocolResult(indices=indices, transcript=transcript, privacy=report, scores=up)
