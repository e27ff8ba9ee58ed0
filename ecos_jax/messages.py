"""The two messages that cross the client/cloud boundary, and the transcript that logs them.

| direction | message            | payload                          | bytes   |
|-----------|--------------------|----------------------------------|---------|
| down      | `CentroidsMessage` | the R k-means centroids, float32 | `4·R·D` |
| up        | `ScoresMessage`    | the R noisy coverage scores, int | `8·R`   |

`Transcript.record` accepts only these two types, so what crossed can be checked after a
round; `comparison_bytes` sizes what the non-ECOS alternatives would move instead.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 3, Fig. 1, 4.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import numpy as np

from ecos_jax import noise

__all__ = [
    "CentroidsMessage",
    "ComparisonBytes",
    "Direction",
    "Message",
    "ScoresMessage",
    "Transcript",
    "TranscriptEntry",
    "comparison_bytes",
]

Direction = Literal["down", "up"]


@dataclasses.dataclass(frozen=True)
class CentroidsMessage:
    """Cloud → client: the R k-means centroids of the pool features (float32 [R, D])."""

    centroids: np.ndarray

    def __post_init__(self):
        c = np.asarray(self.centroids)
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
            raise ValueError(f"centroids must be a non-empty 2-D [R, D] array, got {c.shape}.")
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
        """Payload size: `4·R·D` bytes."""
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
