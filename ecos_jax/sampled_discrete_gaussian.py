"""Exact privacy of the Poisson-subsampled discrete Gaussian on integer votes.

A Private-kNN query (`ecos_jax.tasks.subsampled_knn`) releases integer counts plus
discrete Gaussian noise `N_Z(0, s²)`, computed on a Poisson subsample of the client's
data at rate γ. One added or removed client sample `z` either leaves the counts alone or
(when `z` is in the subsample) shifts them, in one of two ways:

- `coordinates=1`: one count moves by 1 (the screening statistic, the top vote count).
- `coordinates=2`: one vote moves between two bins, `+1` on one and `−1` on another (a
  histogram with a fixed number of votes). The privacy loss depends on the two noisy
  bins only through their difference `Y = X_a − X_b`, so the pair is the one-dimensional
  pair (`p_Y`, `p_Y` shifted by 2), with `p_Y` the law of the difference of two
  independent `N_Z(0, s²)`.

Given the other samples' subsample, the output without `z` is `P`, the output with `z`
is `μ = (1 − γ)·P + γ·Q` (`Q` = `P` shifted); averaging over the other samples keeps the
bound (Rényi's `exp((α−1)D_α)` and the hockey-stick divergence are jointly convex), and
add-or-remove neighbours need both orders, `D(μ‖P)` and `D(P‖μ)`.

This module evaluates both exactly on the integers, in float64 and log space, over a
range wide enough that the truncated mass is below `exp(−800)`: the Rényi divergence at
any order, and the two probability mass functions for dp-accounting's
`from_two_probability_mass_functions` (pessimistic privacy loss distribution). No
continuous-Gaussian approximation is made; the tests compare the result with the closed
form at γ = 1 (`α·c / 2s²` at integer α) and with dp-accounting's subsampled
continuous Gaussian.

References:
  Canonne, Kamath, Steinke. "The Discrete Gaussian for Differential Privacy." NeurIPS 2020.
  Mironov, Talwar, Zhang. "Rényi Differential Privacy of the Sampled Gaussian Mechanism."
  arXiv:1908.10530, 2019 (the two orders of the mixture pair).
  Zhu, Dong, Wang. "Optimal Accounting of Differential Privacy via Characteristic
  Function." AISTATS 2022 (dominating pairs under Poisson subsampling).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

__all__ = ["log_pmf_pair", "renyi_divergence"]

#: Standard deviations of range on each side: the truncated mass is below exp(−800).
_TAIL_SIGMAS = 40.0

#: Relative and absolute pads on every divergence: they cover float64 summation error
#: (about range · 2^-53 relative) so that the reported figure is never below the exact one.
_RELATIVE_PAD = 1e-9
_ABSOLUTE_PAD = 1e-13


@functools.lru_cache(maxsize=64)
def _log_pmf(scale: float, coordinates: int, extra: int) -> tuple[np.ndarray, np.ndarray]:
    """Support and log pmf of `N_Z(0, s²)` (c=1) or of the difference of two (c=2)."""
    half = math.ceil(_TAIL_SIGMAS * scale) + extra + 2
    x = np.arange(-half, half + 1)
    log_w = -(x.astype(np.float64) ** 2) / (2.0 * scale * scale)
    log_p = log_w - special.logsumexp(log_w)
    if coordinates == 1:
        return x, log_p
    # The difference of two independent copies, in closed form: Σ_u exp(−(u² + (u−y)²)/2s²)
    # = exp(−y²/4s²) · θ(y), where θ(y) = Σ_u exp(−(u − y/2)²/s²) depends only on the
    # parity of y. Summed in log space, so the far tails (which decide high orders) are
    # exact rather than underflowed.
    u = x.astype(np.float64)
    theta = (special.logsumexp(-(u**2) / scale**2), special.logsumexp(-((u - 0.5) ** 2) / scale**2))
    y = x
    log_w = -(y.astype(np.float64) ** 2) / (4.0 * scale * scale) + np.where(
        y % 2 == 0, theta[0], theta[1]
    )
    return y, log_w - special.logsumexp(log_w)


def _shift(coordinates: int) -> int:
    return 1 if coordinates == 1 else 2


def log_pmf_pair(
    scale: float, sampling_rate: float, coordinates: int, *, extra: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The support and the log pmfs of `P` and of the mixture `μ = (1−γ)P + γ·shift(P)`.

    Args:
      scale: `s`, the discrete Gaussian's parameter on every count, > 0.
      sampling_rate: γ in (0, 1].
      coordinates: 1 (one count moves by 1) or 2 (one vote moves between two bins).
      extra: more support on each side (for high Rényi orders).

    Returns:
      `(support, log_p, log_mu)`, float64 over the same integer support.
    """
    x, log_p = _log_pmf(float(scale), int(coordinates), int(extra))
    shift = _shift(coordinates)
    # Q(x) = P(x − shift): P's log pmf moved right, -inf where it falls off the range.
    log_q = np.full_like(log_p, -np.inf)
    log_q[shift:] = log_p[:-shift]
    if sampling_rate >= 1.0:
        return x, log_p, log_q
    log_mu = np.logaddexp(np.log1p(-sampling_rate) + log_p, math.log(sampling_rate) + log_q)
    return x, log_p, log_mu


def renyi_divergence(
    scale: float, sampling_rate: float, coordinates: int, orders: np.ndarray
) -> np.ndarray:
    """`max(D_α(μ‖P), D_α(P‖μ))` at every order α > 1, exactly (float64, padded up).

    Args:
      scale: `s` > 0.
      sampling_rate: γ in (0, 1].
      coordinates: 1 or 2 (see the module docstring).
      orders: Rényi orders, each > 1.

    Returns:
      float64 array of the per-release RDP, one entry per order.

    Example:
      >>> import numpy as np
      >>> rdp = renyi_divergence(5.0, 1.0, 1, np.array([2.0, 8.0]))
      >>> np.allclose(rdp, [2.0 / 50, 8.0 / 50])
      True
    """
    orders = np.asarray(orders, np.float64)
    shift = _shift(coordinates)
    # The integrand of the highest order peaks near x ≈ α·shift; keep it inside the range.
    extra = math.ceil(float(orders.max()) * shift) + 4
    _, log_p, log_mu = log_pmf_pair(scale, sampling_rate, coordinates, extra=extra)
    out = np.empty(orders.shape)
    finite = np.isfinite(log_p) & np.isfinite(log_mu)
    log_ratio = log_mu[finite] - log_p[finite]  # log(μ/P) wherever both are positive
    lp, lm = log_p[finite], log_mu[finite]
    # μ puts mass where P has none only at γ = 1 (the unsubsampled shift at the edge of
    # the range, below exp(-800)); both are dropped with the truncated tail.
    for i, alpha in enumerate(orders):
        forward = _log_moment(lp, alpha * log_ratio)  # log E_P[(μ/P)^α]
        backward = _log_moment(lm, -alpha * log_ratio)  # log E_μ[(P/μ)^α]
        out[i] = max(forward, backward) / (alpha - 1.0)
    return out * (1.0 + _RELATIVE_PAD) + _ABSOLUTE_PAD


def _log_moment(log_weight: np.ndarray, log_value: np.ndarray) -> float:
    """`log Σ exp(log_weight) · exp(log_value)`, without cancellation near 0."""
    exponent = log_weight + log_value
    if float(np.max(log_value)) < 1.0:
        # Σ w·(e^v − 1) first: the divergence is tiny and logsumexp would round it away.
        weights = np.exp(log_weight)
        return float(np.log1p(np.sum(weights * np.expm1(log_value)) + (np.sum(weights) - 1.0)))
    return float(special.logsumexp(exponent))
