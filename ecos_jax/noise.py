"""Integer noise for everything the client releases: the discrete Gaussian, from a named source.

The client's releases (coverage counts, kNN vote histograms) are integer vectors, released
as `counts + Z` with `Z` drawn from the discrete Gaussian `N_Z(0, s²)`,
`P[Z = z] ∝ exp(-z² / 2s²)` on the integers (Canonne, Kamath, Steinke 2020). The noise is
drawn independently of the counts and added in int64, so the output distribution is an
exact shift of one fixed distribution: unlike a float32 `count + s·N(0, 1)`, whose set of
reachable floats depends on the count, nothing in the output's representation reveals the
count.

Where the randomness comes from is named, asked for explicitly and recorded with every
release (`Randomness.name`):

- `secure()`, the default everywhere (`randomness=None`): OpenDP's exact discrete
  Gaussian sampler (`opendp.measurements.make_gaussian` on an integer vector domain), whose
  random bits come from OpenSSL's CSPRNG seeded from the operating system. Nothing about
  the noise can be reproduced, which is the point. (OpenDP is imported on first use, which
  also turns on its global "contrib" feature flag, the one `make_gaussian` needs; only its
  sampler is used, not its privacy maps.)
- `simulation(key)`: a keyed, reproducible sampler for experiments, so that a seed
  reproduces a figure. It draws 64 random bits per coordinate from `key` and inverts the
  discrete Gaussian's CDF, tabulated in 45-digit decimal arithmetic and stored as 64-bit
  fixed point on `[-T, T]` with the tail mass beyond `T` below 2⁻⁸⁰. OpenDP does not accept
  a seed (by design), so this sampler is the project's own; its distribution is within
  total variation `simulation_tv_bound(s)` (about `(2T + 2)·2⁻⁶⁴`, i.e. 1e-16 at s = 6.7)
  of the exact discrete Gaussian per coordinate, which `tests/test_noise.py` checks against
  the exact pmf and against OpenDP's samples. A run in simulation mode is NOT private
  against anyone who knows the key: whoever knows it can subtract the noise. Use a fresh
  key per release (`ecos_jax.keys.named_key`): two releases from one key are correlated.

Example:
  >>> import jax, numpy as np
  >>> counts = np.array([3, 0, 7])
  >>> a = add_discrete_gaussian(counts, scale=2.0, randomness=simulation(jax.random.key(0)))
  >>> b = add_discrete_gaussian(counts, scale=2.0, randomness=simulation(jax.random.key(0)))
  >>> a.dtype, bool((a == b).all())
  (dtype('int64'), True)
  >>> add_discrete_gaussian(counts, scale=2.0).dtype  # secure: OpenDP, OS entropy
  dtype('int64')

References:
  Canonne, Kamath, Steinke. "The Discrete Gaussian for Differential Privacy." NeurIPS 2020.
  Mironov. "On Significance of the Least Significant Bits for Differential Privacy."
  CCS 2012 (why a float release leaks).
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax._validate import check_key, positive_finite, positive_int

__all__ = [
    "RANDOMNESS_NAMES",
    "DiscreteGaussianTable",
    "Randomness",
    "SecureRandomness",
    "SimulatedRandomness",
    "add_discrete_gaussian",
    "discrete_gaussian_pmf",
    "discrete_gaussian_table",
    "resolve",
    "secure",
    "simulation",
    "simulation_tv_bound",
]

#: What each source of randomness is, in the words written into transcripts and results.
RANDOMNESS_NAMES = {
    "secure": "secure: exact discrete Gaussian (OpenDP), OpenSSL CSPRNG seeded from the OS",
    "simulation": (
        "simulation: keyed, reproducible discrete Gaussian (ecos_jax.noise); not private "
        "against anyone who knows the key"
    ),
}

#: Largest |count| accepted: counts plus noise must stay far inside int64.
MAX_ABS_COUNT = 2**52

#: The simulation table's tail mass beyond ±T is below 2**-TAIL_BITS.
TAIL_BITS = 80

_DECIMAL_DIGITS = 45


@dataclasses.dataclass(frozen=True)
class SecureRandomness:
    """OpenDP's exact discrete Gaussian, random bits from OpenSSL's CSPRNG (OS entropy)."""

    name: str = dataclasses.field(default="secure", init=False)


@dataclasses.dataclass(frozen=True)
class SimulatedRandomness:
    """Keyed, reproducible discrete Gaussian for experiments (not private given the key)."""

    key: jax.Array
    name: str = dataclasses.field(default="simulation", init=False)

    def __post_init__(self) -> None:
        check_key(self.key, "key")


Randomness = SecureRandomness | SimulatedRandomness


def secure() -> SecureRandomness:
    """The deployment source: OpenDP's exact sampler with OS-seeded CSPRNG bits."""
    return SecureRandomness()


def simulation(key: jax.Array) -> SimulatedRandomness:
    """The keyed, reproducible source for experiments; one fresh key per release.

    Args:
      key: a typed JAX key, e.g. `ecos_jax.keys.named_key(client_root, "ecos_scores")`.
        Never derive it from the cloud's keys: the cloud could then remove the noise.
    """
    return SimulatedRandomness(key)


def resolve(randomness: Randomness | None) -> Randomness:
    """`randomness`, or `secure()` when None; raises for anything else."""
    if randomness is None:
        return SecureRandomness()
    if isinstance(randomness, SecureRandomness | SimulatedRandomness):
        return randomness
    if getattr(randomness, "dtype", None) is not None and jnp.issubdtype(
        randomness.dtype, jax.dtypes.prng_key
    ):
        raise TypeError(
            "randomness must be ecos_jax.noise.secure() or ecos_jax.noise.simulation(key), "
            "got a bare PRNG key; keyed noise is simulation only, so ask for it by name: "
            "randomness=ecos_jax.noise.simulation(key)."
        )
    raise TypeError(
        "randomness must be None (secure), ecos_jax.noise.secure() or "
        f"ecos_jax.noise.simulation(key), got {type(randomness).__name__}."
    )


def add_discrete_gaussian(
    counts: Any,
    *,
    scale: float,
    randomness: Randomness | None = None,
    num_draws: int | None = None,
) -> np.ndarray:
    """`counts + Z`, `Z` i.i.d. discrete Gaussian with parameter `scale`, in int64.

    Args:
      counts: an integer array (any shape); its values are the private statistics.
      scale: the discrete Gaussian's parameter `s` (noise multiplier times the L2
        sensitivity), finite and > 0; its standard deviation is slightly below `s`.
      randomness: `secure()` (also when None) or `simulation(key)`.
      num_draws: None for one release; an int n returns n independent releases stacked
        on a leading axis (for audits), [n, *counts.shape].

    Returns:
      int64 array of the releases.

    References:
      Canonne, Kamath, Steinke, NeurIPS 2020, Thm. 4 and Alg. 3.
    """
    scale = positive_finite(scale, "scale")
    randomness = resolve(randomness)
    values = _as_counts(counts)
    shape = values.shape if num_draws is None else (positive_int(num_draws, "num_draws"),)
    shape = shape if num_draws is None else (*shape, *values.shape)
    if isinstance(randomness, SimulatedRandomness):
        return values + _simulated_noise(randomness.key, shape, scale)
    tiled = np.broadcast_to(values, shape)
    return _opendp_release(tiled, scale)


class DiscreteGaussianTable(NamedTuple):
    """The simulation sampler's inverse CDF on [-T, T] in 64-bit fixed point."""

    bound: int  # T: samples lie in [-T, T]
    thresholds: np.ndarray  # [2T] uint64, floor(2**64 · P[Z <= -T + j]), j = 0..2T-1
    tail: float  # an upper bound on P[|Z| > T]


@functools.lru_cache(maxsize=64)
def discrete_gaussian_table(scale: float) -> DiscreteGaussianTable:
    """The inverse-CDF table of `N_Z(0, scale²)` used by `simulation` (cached per scale).

    The weights `exp(-z²/2s²)` are computed by the recurrence `w_z = w_{z-1}·q^{2z-1}`
    (`q = exp(-1/2s²)`, the exact binary value of `scale`) in 45-digit decimal arithmetic,
    far beyond the 64 bits stored, and normalised over |z| <= 15s + 2 (the rest is below
    1e-48 of the mass).
    """
    scale = positive_finite(scale, "scale")
    ctx = decimal.Context(prec=_DECIMAL_DIGITS)
    s = decimal.Decimal(scale)
    q = ctx.exp(ctx.divide(decimal.Decimal(-1), ctx.multiply(2, ctx.multiply(s, s))))
    q2 = ctx.multiply(q, q)
    z_max = math.ceil(15 * scale) + 2
    weights = [decimal.Decimal(1)]  # w_0, w_1, ... (symmetric)
    ratio = q
    for _ in range(z_max):
        weights.append(ctx.multiply(weights[-1], ratio))
        ratio = ctx.multiply(ratio, q2)
    total = ctx.add(weights[0], ctx.multiply(2, sum(weights[1:], decimal.Decimal(0))))
    # T: the smallest bound whose two-sided tail mass is below 2**-TAIL_BITS.
    limit = ctx.multiply(total, decimal.Decimal(2) ** -TAIL_BITS)
    tail_sum = decimal.Decimal(0)
    bound = z_max
    while bound > 1 and ctx.add(tail_sum, ctx.multiply(2, weights[bound])) < limit:
        tail_sum = ctx.add(tail_sum, ctx.multiply(2, weights[bound]))
        bound -= 1
    one = decimal.Decimal(2) ** 64
    thresholds = np.empty(2 * bound, dtype=np.uint64)
    cumulative = ctx.divide(tail_sum, 2)  # mass below -T, folded into -T
    for j in range(2 * bound):
        cumulative = ctx.add(cumulative, weights[abs(j - bound)])
        # At most 2**64 - 1: for a tiny scale the CDF is 1 to 45 digits before the end.
        thresholds[j] = min(int(ctx.multiply(ctx.divide(cumulative, total), one)), 2**64 - 1)
    tail = float(ctx.divide(tail_sum, total)) + 1e-48
    return DiscreteGaussianTable(bound, thresholds, tail)


def simulation_tv_bound(scale: float) -> float:
    """Per-coordinate total variation between `simulation` noise and the exact `N_Z(0, s²)`.

    The tail beyond ±T plus one 2⁻⁶⁴ rounding of each of the 2T + 1 cells.
    """
    table = discrete_gaussian_table(scale)
    return table.tail + (2 * table.bound + 2) * 2.0**-64


def discrete_gaussian_pmf(values: Any, scale: float) -> np.ndarray:
    """The exact pmf `P[Z = v]` of `N_Z(0, scale²)` in float64 (for tests and audits)."""
    scale = positive_finite(scale, "scale")
    v = np.asarray(values, dtype=np.float64)
    z = np.arange(-math.ceil(40 * scale) - 2, math.ceil(40 * scale) + 3, dtype=np.float64)
    log_norm = np.log(np.sum(np.exp(-(z**2) / (2 * scale**2))))
    return np.exp(-(v**2) / (2 * scale**2) - log_norm)


def _simulated_noise(key: jax.Array, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Discrete Gaussian noise [shape] int64 from `key`: 64 bits per entry, inverse CDF."""
    table = discrete_gaussian_table(scale)
    words = np.ascontiguousarray(jax.random.bits(key, (*shape, 2), jnp.uint32))
    u = words.view(np.uint64)[..., 0]  # the two words as one uniform 64-bit integer
    index = np.searchsorted(table.thresholds, u, side="right")
    return index.astype(np.int64) - table.bound


@functools.lru_cache(maxsize=64)
def _opendp_measurement(scale: float):
    """OpenDP's discrete Gaussian on int64 vectors (its zCDP map is not used here)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"), scale=scale
    )


def _opendp_release(values: np.ndarray, scale: float) -> np.ndarray:
    """OpenDP's `values + N_Z(0, scale²)` on every entry, same shape, int64."""
    flat = np.ascontiguousarray(values, dtype=np.int64).reshape(-1)
    if flat.size == 0:
        return flat.reshape(values.shape)
    noisy = _opendp_measurement(scale)(flat.tolist())
    return np.asarray(noisy, dtype=np.int64).reshape(values.shape)


def _as_counts(counts: Any) -> np.ndarray:
    """Integer counts as an int64 host array; refuses floats, bools and huge values.

    The message names no value: counts are private.
    """
    arr = np.asarray(counts)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"counts must be an integer array (coverage counts or votes), got dtype {arr.dtype}; "
            "a float release leaks through its rounding, so round on purpose before."
        )
    if arr.size and arr.dtype.itemsize == 8 and arr.dtype.kind == "u":
        if int(arr.max()) > MAX_ABS_COUNT:
            raise ValueError(f"counts exceed {MAX_ABS_COUNT} in magnitude; they cannot be noised.")
    out = arr.astype(np.int64)
    if out.size and int(np.abs(out).max()) > MAX_ABS_COUNT:
        raise ValueError(f"counts exceed {MAX_ABS_COUNT} in magnitude; they cannot be noised.")
    return out
