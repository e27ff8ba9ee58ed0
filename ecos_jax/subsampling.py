"""Poisson subsampling of the client's rows, one independent draw per query.

Private-kNN (Zhu, Yu, Wang 2020) lets every query vote over a random subsample of the
private set. The amplification theorems that dp-accounting's `PoissonSampledDpEvent`
implements assume *Poisson* sampling: every row is kept independently with probability
γ, so the subsample's size is random. A fixed-size draw (with or without replacement) is
a different mechanism with a different bound; this module draws only the Poisson one.

Each inclusion is decided from 64 uniform random bits `u`: the row is kept iff
`u < ⌈γ·2⁶⁴⌉`, so the rate actually used is `poisson_rate(γ) = ⌈γ·2⁶⁴⌉ / 2⁶⁴`, at most
2⁻⁶⁴ above γ. Charge that rate (it is the one returned), never a rounded-down one.

The bits come from a named source, as the noise does (`ecos_jax.noise`):

- `noise.secure()` (also `randomness=None`): the operating system's CSPRNG
  (`secrets.token_bytes`); nothing is reproducible.
- `noise.simulation(key)`: `jax.random.bits(key)` (two 32-bit words per entry),
  reproducible for experiments; whoever knows the key knows the subsamples.

Example:
  >>> import jax
  >>> from ecos_jax import noise
  >>> masks, rate = poisson_masks(
  ...     num_queries=2, num_rows=5, rate=0.5, randomness=noise.simulation(jax.random.key(0)))
  >>> masks.shape, masks.dtype, rate
  ((2, 5), dtype('bool'), 0.5)

References:
  Zhu, Yu, Wang. "Private-kNN: Practical Differential Privacy for Computer Vision."
  CVPR 2020. Zhu, Wang. "Poisson Subsampled Rényi Differential Privacy." ICML 2019.
  Mironov, Talwar, Zhang. "Rényi Differential Privacy of the Sampled Gaussian Mechanism."
  2019.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

import jax
import numpy as np

from ecos_jax import noise
from ecos_jax._validate import as_int

__all__ = ["poisson_masks", "poisson_rate", "poisson_threshold"]

_TWO_64 = 2**64


def poisson_threshold(rate: float) -> int:
    """`⌈γ·2⁶⁴⌉`: a row is kept iff its 64 random bits are below it (exact arithmetic).

    Examples:
      >>> poisson_threshold(0.5) == 2**63, poisson_threshold(0.0), poisson_threshold(1.0)
      (True, 0, 18446744073709551616)
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
        raise ValueError(f"rate must be a finite number in [0, 1], got {rate!r}.")
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate must be in [0, 1] (the inclusion probability), got {rate}.")
    return math.ceil(Fraction(float(rate)) * _TWO_64)


def poisson_rate(rate: float) -> float:
    """The inclusion probability actually used for `rate`: `⌈γ·2⁶⁴⌉/2⁶⁴`, rounded up to float.

    Examples:
      >>> poisson_rate(0.15) >= 0.15, poisson_rate(0.15) - 0.15 < 1e-15
      (True, True)
    """
    exact = Fraction(poisson_threshold(rate), _TWO_64)
    up = float(exact)
    return up if Fraction(up) >= exact else math.nextafter(up, math.inf)


def _uniform_bits(shape: tuple[int, ...], randomness) -> np.ndarray:
    """uint64 uniform bits of `shape` from the named source."""
    size = math.prod(shape)
    if isinstance(randomness, noise.SimulatedRandomness):
        # Two 32-bit words per entry (JAX's default mode has no 64-bit integers).
        words = np.asarray(jax.random.bits(randomness.key, (size, 2), dtype=np.uint32))
        words = words.astype(np.uint64)
        return ((words[:, 0] << np.uint64(32)) | words[:, 1]).reshape(shape)
    return np.frombuffer(secrets.token_bytes(8 * size), dtype="<u8").reshape(shape)


def poisson_masks(
    *, num_queries: int, num_rows: int, rate: float, randomness=None
) -> tuple[np.ndarray, float]:
    """Independent Poisson subsamples of `num_rows` rows, one per query.

    Args:
      num_queries: Q, how many subsamples (one per query), >= 1.
      num_rows: N, the client's rows, >= 0 (a private count: errors never quote it).
      rate: γ in [0, 1], the inclusion probability of every row in every subsample.
      randomness: `noise.secure()` (also None) or `noise.simulation(key)`; with a
        simulation key, use a fresh key per call (`ecos_jax.keys.named_key`).

    Returns:
      `(masks, rate_used)`: bool [Q, N], row n in query q's subsample iff `masks[q, n]`,
      every entry independent with probability `rate_used = poisson_rate(rate)`, the
      figure to account with.
    """
    randomness = noise.resolve(randomness)
    threshold = poisson_threshold(rate)
    num_queries = as_int(num_queries, "num_queries")
    if num_queries < 1:
        raise ValueError(f"num_queries must be >= 1, got {num_queries}.")
    num_rows = as_int(num_rows, "num_rows")
    if num_rows < 0:
        raise ValueError("num_rows must be >= 0 (the client's row count).")
    shape = (num_queries, num_rows)
    if threshold >= _TWO_64:
        return np.ones(shape, bool), 1.0
    bits = _uniform_bits(shape, randomness)
    return bits < np.uint64(threshold), poisson_rate(rate)
