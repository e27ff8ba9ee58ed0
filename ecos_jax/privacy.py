"""Gaussian privatisation of released scores and the accounting of their (ε, δ).

Every release that touches the client's private data `D_p` is a Gaussian mechanism: a
vector with L2 sensitivity `Δ` plus `N(0, (σΔ)² I)` noise. `privatize` adds the noise (in
JAX, from an explicit key); the rest runs on the host in plain Python around Google's
`dp_accounting`: a `GaussianRelease` describes one or more identical releases by their
noise multiplier `σ` (noise std divided by `Δ`), `epsilon` composes a list of them with
the RDP accountant (the primary figure) or the PLD accountant (tighter), and
`calibrate_sigma` finds the smallest `σ` meeting a target ε.

The neighbouring relation is always add-or-remove-one sample: the sensitivity is computed
by the caller (see `ecos_jax.coverage`) and folded into `σ`, because dp-accounting 0.6.0's
`REPLACE_ONE` flag gives inconsistent answers between its RDP and PLD accountants.

Example:
  >>> ledger = PrivacyLedger()
  >>> ledger.record(GaussianRelease(noise_multiplier=5.0, name="ecos_scores"))
  >>> round(ledger.epsilon(delta=1e-5), 3)
  0.795

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 3.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Literal

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
from dp_accounting import gaussian_mechanism, mechanism_calibration
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from ecos_jax.coverage import CoverageScores

Accountant = Literal["rdp", "pld"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "pld")

#: Neighbouring datasets differ by one added or removed client sample.
NEIGHBORING_RELATION = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE

#: Below this effective noise multiplier the PLD accountant's grid needs gigabytes
#: (ε would exceed ~90 at δ=1e-5 anyway); `epsilon` refuses and points to RDP.
PLD_MIN_NOISE_MULTIPLIER = 0.1


def privatize(
    key: jax.Array,
    scores: CoverageScores | jax.Array | np.ndarray,
    *,
    sigma: float,
    sensitivity: float | None = None,
) -> jax.Array:
    """Adds `N(0, (sigma * sensitivity)²)` noise to every entry of `scores`.

    The noise depends on `key` only (not on the scores), so a run is reproducible from
    its root key and each release must use a fresh key.

    Args:
      key: a JAX PRNG key (`jax.random.key(seed)` or a split of it).
      scores: a `CoverageScores` (its `sensitivity` is used when `sensitivity` is None)
        or a numeric array.
      sigma: noise multiplier (noise std / L2 sensitivity), finite and > 0.
      sensitivity: L2 sensitivity `Δ` of `scores`, finite and > 0. Required for a plain
        array; for `CoverageScores` it may only be raised above `scores.sensitivity`.

    Returns:
      float32 array of the same shape as the scores: `scores + sigma * Δ * N(0, I)`.

    Example:
      >>> import jax
      >>> noisy = privatize(jax.random.key(0), jnp.zeros(3), sigma=2.0, sensitivity=1.0)
      >>> noisy.shape, noisy.dtype
      ((3,), dtype('float32'))

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 (privatised coverage scores).
    """
    if isinstance(scores, CoverageScores):
        own = float(scores.sensitivity)
        if sensitivity is None:
            sensitivity = own
        elif float(sensitivity) < own:
            raise ValueError(
                f"sensitivity={sensitivity} is below the scores' own sensitivity {own}; "
                "the noise would be too small. Omit sensitivity to use the scores' value."
            )
        values = scores.counts
    else:
        if sensitivity is None:
            raise ValueError(
                "sensitivity is required when scores is a plain array (pass the L2 "
                "sensitivity of the vector, e.g. 1.0 for Voronoi counts)."
            )
        values = scores
    sigma = _positive_finite(sigma, "sigma")
    sensitivity = _positive_finite(sensitivity, "sensitivity")
    values = jnp.asarray(values)
    if not (
        jnp.issubdtype(values.dtype, jnp.integer) or jnp.issubdtype(values.dtype, jnp.floating)
    ):
        raise ValueError(f"scores must hold real numbers, got dtype {values.dtype}.")
    return _add_gaussian_noise(key, values.astype(jnp.float32), jnp.float32(sigma * sensitivity))


@jax.jit
def _add_gaussian_noise(key: jax.Array, values: jax.Array, std: jax.Array) -> jax.Array:
    """values + std * N(0, I), drawn from key."""
    return values + std * jax.random.normal(key, values.shape, values.dtype)


@dataclasses.dataclass(frozen=True)
class GaussianRelease:
    """`count` identical releases of a Gaussian mechanism with noise multiplier `σ`.

    Attributes:
      noise_multiplier: `σ` = noise std / L2 sensitivity of the released vector.
      count: how many such releases (e.g. ECOS rounds, private-kNN queries), >= 1.
      name: what was released, e.g. 'ecos_scores' or 'private_knn_votes'.

    Example:
      >>> GaussianRelease(noise_multiplier=10.0, count=3, name="private_knn_votes").count
      3

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """

    noise_multiplier: float
    count: int = 1
    name: str = "ecos_scores"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "noise_multiplier", _positive_finite(self.noise_multiplier, "noise_multiplier")
        )
        object.__setattr__(self, "count", _check_count(self.count))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}.")

    def dp_event(self) -> dp_accounting.DpEvent:
        """The dp_accounting event: a GaussianDpEvent, self-composed `count` times."""
        event = dp_accounting.GaussianDpEvent(noise_multiplier=self.noise_multiplier)
        if self.count == 1:
            return event
        return dp_accounting.SelfComposedDpEvent(event=event, count=self.count)


def epsilon(
    releases: GaussianRelease | Iterable[GaussianRelease],
    *,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """ε at `delta` of the composition of all `releases` (add-or-remove-one neighbours).

    Args:
      releases: one `GaussianRelease` or several (possibly with different `σ` and
        counts); an empty list costs ε = 0.
      delta: target δ in (0, 1).
      accountant: 'rdp' (RdpAccountant, the primary figure) or 'pld' (PLDAccountant,
        tighter).

    Returns:
      ε as a python float.

    Example:
      >>> round(epsilon([GaussianRelease(noise_multiplier=1.0)], delta=1e-5), 3)
      4.729
      >>> round(epsilon(GaussianRelease(noise_multiplier=1.0), delta=1e-5, accountant="pld"), 3)
      4.377

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 and App. (privacy analysis).
    """
    releases = _as_release_list(releases)
    delta = _check_delta(delta)
    _check_accountant(accountant)
    if not releases:
        return 0.0
    if accountant == "pld":
        effective = _effective_noise_multiplier(releases)
        if effective < PLD_MIN_NOISE_MULTIPLIER:
            raise ValueError(
                f"the releases compose to an effective noise multiplier {effective:.4g} < "
                f"{PLD_MIN_NOISE_MULTIPLIER}, where the PLD accountant needs too much memory "
                "(and ε is enormous); use accountant='rdp'."
            )
    acc = _fresh_accountant(accountant)
    for release in releases:
        acc.compose(release.dp_event())
    return float(acc.get_epsilon(delta))


def epsilons(
    releases: GaussianRelease | Iterable[GaussianRelease], *, delta: float
) -> dict[str, float]:
    """Both figures: `{'rdp': ε_RDP, 'pld': ε_PLD}` at `delta`.

    Example:
      >>> {k: round(v, 3) for k, v in epsilons(GaussianRelease(2.0), delta=1e-5).items()}
      {'rdp': 2.166, 'pld': 1.993}

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3.
    """
    releases = _as_release_list(releases)
    return {name: epsilon(releases, delta=delta, accountant=name) for name in ACCOUNTANTS}


def calibrate_sigma(
    target_epsilon: float,
    *,
    delta: float,
    count: int = 1,
    accountant: str = "rdp",
    tol: float = 1e-4,
) -> float:
    """Smallest noise multiplier `σ` whose `count`-fold release costs at most `target_epsilon`.

    Uses `dp_accounting.mechanism_calibration.calibrate_dp_mechanism` (Brent's method),
    bracketed from below by the exact analytic-Gaussian σ (every accountant reports at
    least the exact ε). The result satisfies `epsilon(...) <= target_epsilon` and lies
    within `tol` of the optimum.

    Args:
      target_epsilon: ε budget, finite and > 0.
      delta: δ in (0, 1).
      count: number of identical releases sharing the budget, >= 1.
      accountant: 'rdp' or 'pld'.
      tol: absolute tolerance on σ, > 0.

    Returns:
      σ as a python float.

    Example:
      >>> round(calibrate_sigma(0.58, delta=1e-5), 2)
      6.68

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 (ε = 0.58 at δ = 1e-5).
    """
    target_epsilon = _positive_finite(target_epsilon, "target_epsilon")
    delta = _check_delta(delta)
    count = _check_count(count)
    _check_accountant(accountant)
    tol = _positive_finite(tol, "tol")

    def make_event(sigma: float) -> dp_accounting.DpEvent:
        return GaussianRelease(noise_multiplier=sigma, count=count).dp_event()

    def gap(sigma: float) -> float:
        return epsilon(GaussianRelease(sigma, count), delta=delta, accountant=accountant) - (
            target_epsilon
        )

    # k Gaussian releases with multiplier σ are exactly one with σ/√k, and every
    # accountant reports at least the exact ε, so the exact σ brackets from below.
    sigma_exact = math.sqrt(count) * gaussian_mechanism.get_sigma_gaussian(target_epsilon, delta)
    lower = 0.999 * sigma_exact
    if accountant == "pld":
        floor = PLD_MIN_NOISE_MULTIPLIER * math.sqrt(count)
        if sigma_exact < floor:
            raise ValueError(
                f"target_epsilon={target_epsilon} needs a noise multiplier below the PLD "
                f"accountant's floor {PLD_MIN_NOISE_MULTIPLIER} (per release, divided by "
                "sqrt(count)); use accountant='rdp'."
            )
        lower = max(lower, floor)
    upper = 1.25 * max(sigma_exact, lower)
    while gap(upper) > 0:
        upper *= 2.0
    sigma = mechanism_calibration.calibrate_dp_mechanism(
        lambda: _fresh_accountant(accountant),
        make_event,
        target_epsilon,
        delta,
        bracket_interval=mechanism_calibration.ExplicitBracketInterval(lower, upper),
        tol=tol,
    )
    return float(sigma)


class PrivacyLedger:
    """Records every release that touches `D_p` during a run and reports its ε.

    Example:
      >>> ledger = PrivacyLedger()
      >>> ledger.record(GaussianRelease(6.68, name="ecos_scores"))
      >>> ledger.record(GaussianRelease(40.0, count=100, name="private_knn_votes"))
      >>> [r.name for r in ledger.releases]
      ['ecos_scores', 'private_knn_votes']
      >>> ledger.epsilon(delta=1e-5) > 0.58
      True

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 and task (c).
    """

    def __init__(self, releases: Iterable[GaussianRelease] = ()) -> None:
        self._releases: list[GaussianRelease] = _as_release_list(releases)

    def record(self, release: GaussianRelease) -> None:
        """Appends one release (or `count` identical ones) to the ledger."""
        if not isinstance(release, GaussianRelease):
            raise TypeError(f"release must be a GaussianRelease, got {type(release).__name__}.")
        self._releases.append(release)

    @property
    def releases(self) -> tuple[GaussianRelease, ...]:
        """The recorded releases, in order."""
        return tuple(self._releases)

    def epsilon(self, *, delta: float, accountant: str = "rdp") -> float:
        """ε at `delta` of everything recorded so far."""
        return epsilon(self._releases, delta=delta, accountant=accountant)

    def epsilons(self, *, delta: float) -> dict[str, float]:
        """`{'rdp': ..., 'pld': ...}` of everything recorded so far."""
        return epsilons(self._releases, delta=delta)

    def summary(self, *, delta: float) -> dict[str, Any]:
        """A JSON-ready dict: δ, the releases and both ε figures."""
        return {
            "delta": _check_delta(delta),
            "releases": [dataclasses.asdict(r) for r in self._releases],
            "epsilon": self.epsilons(delta=delta),
        }


def _fresh_accountant(accountant: str) -> dp_accounting.PrivacyAccountant:
    """A new, empty accountant of the given kind with add-or-remove-one neighbours."""
    if accountant == "rdp":
        return rdp_privacy_accountant.RdpAccountant(neighboring_relation=NEIGHBORING_RELATION)
    return pld_privacy_accountant.PLDAccountant(neighboring_relation=NEIGHBORING_RELATION)


def _effective_noise_multiplier(releases: list[GaussianRelease]) -> float:
    """The σ of the single Gaussian equivalent to composing `releases`."""
    return sum(r.count / r.noise_multiplier**2 for r in releases) ** -0.5


def _as_release_list(releases: Any) -> list[GaussianRelease]:
    """Wraps a single release and checks every item's type."""
    if isinstance(releases, GaussianRelease):
        return [releases]
    out = list(releases)
    for r in out:
        if not isinstance(r, GaussianRelease):
            raise TypeError(f"releases must hold GaussianRelease items, got {type(r).__name__}.")
    return out


def _check_accountant(accountant: str) -> None:
    """Raises for an unknown accountant name."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}.")


def _positive_finite(value: Any, name: str) -> float:
    """Returns `value` as a float after checking it is finite and > 0."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}.")
    return value


def _check_delta(delta: Any) -> float:
    """Returns `delta` as a float after checking 0 < delta < 1."""
    try:
        delta = float(delta)
    except (TypeError, ValueError):
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r}.") from None
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in the open interval (0, 1), got {delta}.")
    return delta


def _check_count(count: Any) -> int:
    """Returns `count` as an int after checking it is an integer >= 1."""
    if isinstance(count, bool) or not isinstance(count, int | np.integer):
        raise ValueError(f"count must be an int >= 1, got {count!r}.")
    if count < 1:
        raise ValueError(f"count must be an int >= 1, got {count}.")
    return int(count)
