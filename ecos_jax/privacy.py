"""The client's integer releases, privatised with the discrete Gaussian, and their (ε, δ).

Every release that touches the client's private data `D_p` is an integer vector (coverage
counts, kNN vote histograms) plus discrete Gaussian noise `N_Z(0, s²)` on every entry
(`ecos_jax.noise`). One added or removed client sample changes at most `c` entries of the
vector, each by at most 1 (`c` = 1 for Voronoi counts, `m` for top-m votes, `max_votes`
for radius counts, 2 for one kNN histogram), so its L2 sensitivity is `Δ = √c`, and the
noise multiplier is `σ = s / Δ`. A `DiscreteGaussianRelease` records `σ`, `c` and how many
such releases were made; two accountants from Google's `dp_accounting` turn a list of
them into ε at a δ:

- RDP (the primary figure): the discrete Gaussian is `ρ`-zCDP with `ρ = Δ²/2s² = 1/2σ²`
  in any dimension (Canonne, Kamath, Steinke 2020, Thm. 4 and Cor. 9: zCDP composes over
  the coordinates), recorded as `ZCDpEvent(ρ)` in an `RdpAccountant`; this is the RDP
  curve of the continuous Gaussian with multiplier `σ`, so its ε is the same.
- PLD (tighter): the exact privacy loss of the one-dimensional discrete Gaussian with
  sensitivity 1 (`from_discrete_gaussian_mechanism`, connect-the-dots discretisation,
  pessimistic), composed over the `c` coordinates and the releases.

The neighbouring relation is add-or-remove-one client sample throughout (dp-accounting
0.6.0's `REPLACE_ONE` flag disagrees between its RDP and PLD accountants, so the
sensitivity is counted here and folded into `σ` and `c`).

Example:
  >>> ledger = PrivacyLedger()
  >>> ledger.record(DiscreteGaussianRelease(noise_multiplier=5.0, name="ecos_scores"))
  >>> eps = ledger.epsilons(delta=1e-5)
  >>> round(eps["rdp"], 3), round(eps["pld"], 3)
  (0.795, 0.727)

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 3.
  Canonne, Kamath, Steinke. "The Discrete Gaussian for Differential Privacy." NeurIPS 2020.
  Doroshenko, Ghazi, Kamath, Kumar, Manurangsi. "Connect the Dots: Tighter Discrete
  Approximations of Privacy Loss Distributions." PETS 2022.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Literal

import dp_accounting
import numpy as np
from dp_accounting import gaussian_mechanism
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.rdp import rdp_privacy_accountant

from ecos_jax import noise, sampled_discrete_gaussian
from ecos_jax._validate import open_unit_interval, positive_finite, positive_int
from ecos_jax.coverage import CoverageScores

__all__ = [
    "ACCOUNTANTS",
    "NEIGHBORING_RELATION",
    "PLD_MIN_NOISE_MULTIPLIER",
    "DiscreteGaussianRelease",
    "PrivacyLedger",
    "Release",
    "SubsampledDiscreteGaussianRelease",
    "calibrate_sigma",
    "epsilon",
    "epsilons",
    "privatize",
]

Accountant = Literal["rdp", "pld"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "pld")

#: Neighbouring datasets differ by one added or removed client sample.
NEIGHBORING_RELATION = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE

#: Below this effective noise multiplier the PLD grid needs gigabytes (ε would exceed ~90
#: at δ=1e-5 anyway); `epsilon` refuses and points to RDP.
PLD_MIN_NOISE_MULTIPLIER = 0.1

#: Width of the PLD's privacy-loss grid (connect-the-dots; the ε reported is an upper bound).
PLD_DISCRETIZATION = 1e-4

#: Rényi orders of the RDP figure (dp-accounting's defaults, 1.1 to 1024).
RDP_ORDERS: tuple[float, ...] = tuple(float(a) for a in rdp_privacy_accountant.DEFAULT_RDP_ORDERS)


def privatize(
    scores: CoverageScores,
    *,
    sigma: float,
    randomness: noise.Randomness | None = None,
) -> np.ndarray:
    """The released scores: `scores.counts + N_Z(0, (σΔ)²)` on every entry, int64.

    `Δ = scores.sensitivity` (√ of the votes one sample casts). The noise is independent
    of the counts and added in integers, so the release is an exact shift of one fixed
    distribution (see `ecos_jax.noise`).

    Args:
      scores: `CoverageScores` from `ecos_jax.coverage` (int64 counts and their votes per
        sample).
      sigma: noise multiplier σ (the noise scale is `σ·Δ`), finite and > 0.
      randomness: `noise.secure()` (also when None: OpenDP, OS entropy) or
        `noise.simulation(key)` for a reproducible experiment.

    Returns:
      int64 [R] released scores.

    Example:
      >>> import jax, numpy as np
      >>> from ecos_jax import noise
      >>> s = CoverageScores(np.array([5, 0, 2]), votes_per_sample=1)
      >>> privatize(s, sigma=2.0, randomness=noise.simulation(jax.random.key(0))).dtype
      dtype('int64')

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3; Canonne et al., NeurIPS 2020.
    """
    if not isinstance(scores, CoverageScores):
        raise TypeError(
            "scores must be CoverageScores (from ecos_jax.coverage), which carry the votes "
            f"per sample that fix the sensitivity; got {type(scores).__name__}."
        )
    sigma = positive_finite(sigma, "sigma")
    return noise.add_discrete_gaussian(
        scores.counts, scale=sigma * scores.sensitivity, randomness=randomness
    )


@dataclasses.dataclass(frozen=True)
class DiscreteGaussianRelease:
    """`count` releases of an integer vector plus discrete Gaussian noise.

    Attributes:
      noise_multiplier: `σ` = noise scale / L2 sensitivity.
      count: how many such releases (ECOS rounds, kNN queries), >= 1.
      coordinates: `c`, how many entries one added or removed sample changes, each by at
        most 1 (1 Voronoi, m top-m, max_votes radius, 2 a kNN histogram); `Δ = √c`.
      name: what was released, e.g. 'ecos_scores' or 'private_knn_votes'.

    Example:
      >>> r = DiscreteGaussianRelease(noise_multiplier=10.0, count=3, coordinates=2)
      >>> round(r.scale, 3), round(r.rho, 5)
      (14.142, 0.005)

    References:
      Canonne, Kamath, Steinke, NeurIPS 2020, Thm. 4 (ρ = Δ²/2s²).
    """

    noise_multiplier: float
    count: int = 1
    coordinates: int = 1
    name: str = "ecos_scores"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "noise_multiplier", positive_finite(self.noise_multiplier, "noise_multiplier")
        )
        object.__setattr__(self, "count", positive_int(self.count, "count"))
        object.__setattr__(self, "coordinates", positive_int(self.coordinates, "coordinates"))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}.")

    @property
    def sensitivity(self) -> float:
        """`Δ = √coordinates`, the L2 sensitivity of one released vector."""
        return math.sqrt(self.coordinates)

    @property
    def scale(self) -> float:
        """The discrete Gaussian's parameter `s = σ·Δ` on every entry."""
        return self.noise_multiplier * self.sensitivity

    @property
    def rho(self) -> float:
        """zCDP of one release: `ρ = Δ²/2s² = 1/2σ²`."""
        return 0.5 / self.noise_multiplier**2

    def rdp_event(self) -> dp_accounting.DpEvent:
        """`ZCDpEvent(ρ)`, self-composed `count` times."""
        event = dp_accounting.ZCDpEvent(rho=self.rho)
        if self.count == 1:
            return event
        return dp_accounting.SelfComposedDpEvent(event=event, count=self.count)

    def rdp(self, orders: Any) -> np.ndarray:
        """RDP of all `count` releases at `orders`: `count · ρ · α` (the zCDP curve)."""
        return self.count * self.rho * np.asarray(orders, np.float64)

    def pld(self) -> privacy_loss_distribution.PrivacyLossDistribution:
        """The PLD of the `coordinates · count` unit shifts of `N_Z(0, s²)`."""
        one = privacy_loss_distribution.from_discrete_gaussian_mechanism(
            self.scale,
            sensitivity=1,
            value_discretization_interval=PLD_DISCRETIZATION,
            use_connect_dots=True,
        )
        shifts = self.coordinates * self.count
        return one if shifts == 1 else one.self_compose(shifts)


@dataclasses.dataclass(frozen=True)
class SubsampledDiscreteGaussianRelease:
    """`count` releases of integer counts plus `N_Z(0, s²)`, each on a fresh Poisson subsample.

    Each release is computed from a subsample of `D_p` that holds every client sample
    independently with probability `sampling_rate` (γ), and one added or removed sample
    shifts it (when sampled) in one of two ways, `coordinates`:

    - 1: one count by 1 (Private-kNN's screening statistic, the top vote count);
    - 2: one vote from one bin to another (a vote histogram with a fixed number of votes).

    Its RDP and PLD are those of the exact mixture pair on the integers
    (`ecos_jax.sampled_discrete_gaussian`), both orders of add-or-remove, not of the
    continuous Gaussian; `dp_event()` is the continuous counterpart in dp-accounting's
    vocabulary (`PoissonSampledDpEvent(γ, GaussianDpEvent(s/√c))`), which the tests show is
    never below the exact curve at integer orders.

    Attributes:
      scale: `s`, the discrete Gaussian's parameter on every count (in votes), > 0.
      sampling_rate: γ in (0, 1], the rate actually used (`subsampling.poisson_masks`
        returns it rounded up to its 2^-64 grid).
      count: how many such releases, each on its own subsample, >= 1.
      coordinates: 1 or 2, as above.
      name: what was released.

    Example:
      >>> r = SubsampledDiscreteGaussianRelease(25.0, 0.15, count=1000, coordinates=2)
      >>> round(r.noise_multiplier, 3)
      17.678
      >>> round(epsilon(r, delta=1e-5), 3), round(epsilon(r, delta=1e-5, accountant="pld"), 3)
      (1.098, 1.057)

    References:
      Zhu, Yu, Wang. "Private-kNN." CVPR 2020. Mironov, Talwar, Zhang 2019
      (arXiv:1908.10530). Canonne, Kamath, Steinke, NeurIPS 2020.
    """

    scale: float
    sampling_rate: float
    count: int = 1
    coordinates: int = 1
    name: str = "subsampled_votes"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", positive_finite(self.scale, "scale"))
        rate = positive_finite(self.sampling_rate, "sampling_rate")
        if rate > 1.0:
            raise ValueError(f"sampling_rate must be in (0, 1], got {rate}.")
        object.__setattr__(self, "sampling_rate", rate)
        object.__setattr__(self, "count", positive_int(self.count, "count"))
        if self.coordinates not in (1, 2):
            raise ValueError(
                f"coordinates must be 1 (one count moves by 1) or 2 (one vote moves between "
                f"two bins), got {self.coordinates!r}."
            )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}.")

    @property
    def noise_multiplier(self) -> float:
        """`s / Δ`, with the L2 sensitivity `Δ = √coordinates`."""
        return self.scale / math.sqrt(self.coordinates)

    def rdp(self, orders: Any) -> np.ndarray:
        """RDP of all `count` releases at `orders`: `count` times the exact per-release curve."""
        one = sampled_discrete_gaussian.renyi_divergence(
            self.scale, self.sampling_rate, self.coordinates, np.asarray(orders, np.float64)
        )
        return self.count * one

    def pld(self) -> privacy_loss_distribution.PrivacyLossDistribution:
        """The pessimistic PLD of the exact mixture pair (both orders), composed `count` times."""
        support, log_p, log_mu = sampled_discrete_gaussian.log_pmf_pair(
            self.scale, self.sampling_rate, self.coordinates
        )
        lower = dict(zip(support.tolist(), log_p.tolist(), strict=True))
        upper = dict(zip(support.tolist(), log_mu.tolist(), strict=True))
        one = privacy_loss_distribution.from_two_probability_mass_functions(
            lower,
            upper,
            pessimistic_estimate=True,
            value_discretization_interval=PLD_DISCRETIZATION,
            symmetric=False,
        )
        return one if self.count == 1 else one.self_compose(self.count)

    def dp_event(self) -> dp_accounting.DpEvent:
        """The continuous-Gaussian counterpart, for reference and cross-checks."""
        event = dp_accounting.PoissonSampledDpEvent(
            self.sampling_rate, dp_accounting.GaussianDpEvent(float(self.noise_multiplier))
        )
        return event if self.count == 1 else dp_accounting.SelfComposedDpEvent(event, self.count)


#: A release the ledger can account for.
Release = DiscreteGaussianRelease | SubsampledDiscreteGaussianRelease
_RELEASE_TYPES = (DiscreteGaussianRelease, SubsampledDiscreteGaussianRelease)


def epsilon(
    releases: Release | Iterable[Release],
    *,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """ε at `delta` of the composition of all `releases` (add-or-remove-one neighbours).

    Args:
      releases: one release (`DiscreteGaussianRelease`,
        `SubsampledDiscreteGaussianRelease`) or several; an empty list costs ε = 0.
      delta: target δ in (0, 1).
      accountant: 'rdp' (zCDP through `RdpAccountant`, the primary figure) or 'pld'
        (the discrete Gaussian's privacy loss distribution, tighter).

    Returns:
      ε as a python float.

    Example:
      >>> round(epsilon([DiscreteGaussianRelease(noise_multiplier=1.0)], delta=1e-5), 3)
      4.729
      >>> round(epsilon(DiscreteGaussianRelease(1.0), delta=1e-5, accountant="pld"), 3)
      4.43

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3; Canonne et al., NeurIPS 2020.
    """
    releases = _as_release_list(releases)
    delta = open_unit_interval(delta, "delta")
    _check_accountant(accountant)
    if not releases:
        return 0.0
    if accountant == "rdp":
        # Every release's RDP curve at the same orders, summed (composition), then
        # dp-accounting's conversion to (ε, δ), as its RdpAccountant does.
        orders = np.asarray(RDP_ORDERS)
        total = np.sum([r.rdp(orders) for r in releases], axis=0)
        eps, _ = rdp_privacy_accountant.compute_epsilon(orders, total, delta)
        return float(eps)
    unsampled = [r for r in releases if isinstance(r, DiscreteGaussianRelease)]
    effective = (
        sum(r.count / r.noise_multiplier**2 for r in unsampled) ** -0.5 if unsampled else math.inf
    )
    if effective < PLD_MIN_NOISE_MULTIPLIER:
        raise ValueError(
            f"the releases compose to an effective noise multiplier {effective:.4g} < "
            f"{PLD_MIN_NOISE_MULTIPLIER}, where the PLD accountant needs too much memory "
            "(and ε is enormous); use accountant='rdp'."
        )
    total = releases[0].pld()
    for release in releases[1:]:
        total = total.compose(release.pld())
    return float(total.get_epsilon_for_delta(delta))


def epsilons(releases: Release | Iterable[Release], *, delta: float) -> dict[str, float]:
    """Both figures: `{'rdp': ε_RDP, 'pld': ε_PLD}` at `delta`.

    Example:
      >>> {k: round(v, 3) for k, v in epsilons(DiscreteGaussianRelease(2.0), delta=1e-5).items()}
      {'rdp': 2.166, 'pld': 2.011}

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
    coordinates: int = 1,
    accountant: str = "rdp",
    tol: float = 1e-4,
) -> float:
    """Smallest noise multiplier `σ` whose `count` releases cost at most `target_epsilon`.

    Bisection on σ (ε falls as σ grows) to within `tol`, returning the upper end, so
    `epsilon(...) <= target_epsilon` always holds. Under RDP the result does not depend on
    `coordinates` (ρ = 1/2σ² whatever the dimension); under PLD it does, a little.

    Args:
      target_epsilon: ε budget, finite and > 0.
      delta: δ in (0, 1).
      count: number of identical releases sharing the budget, >= 1.
      coordinates: entries one sample changes per release (see `DiscreteGaussianRelease`).
      accountant: 'rdp' or 'pld'.
      tol: absolute tolerance on σ, > 0.

    Returns:
      σ as a python float.

    Example:
      >>> round(calibrate_sigma(0.58, delta=1e-5), 3)
      6.684

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 (ε = 0.58 at δ = 1e-5).
    """
    target_epsilon = positive_finite(target_epsilon, "target_epsilon")
    delta = open_unit_interval(delta, "delta")
    count = positive_int(count, "count")
    coordinates = positive_int(coordinates, "coordinates")
    _check_accountant(accountant)
    tol = positive_finite(tol, "tol")

    def cost(sigma: float) -> float:
        release = DiscreteGaussianRelease(sigma, count=count, coordinates=coordinates)
        return epsilon(release, delta=delta, accountant=accountant)

    floor = PLD_MIN_NOISE_MULTIPLIER * math.sqrt(count) if accountant == "pld" else 0.0
    # Bracket: the continuous Gaussian's exact σ is within a few percent of every answer.
    guess = math.sqrt(count) * gaussian_mechanism.get_sigma_gaussian(target_epsilon, delta)
    lower, upper = max(0.5 * guess, floor), 1.5 * guess
    if accountant == "pld" and guess < floor:
        raise ValueError(
            f"target_epsilon={target_epsilon} needs a noise multiplier below the PLD "
            f"accountant's floor {PLD_MIN_NOISE_MULTIPLIER} (per release, divided by "
            "sqrt(count)); use accountant='rdp'."
        )
    while lower > floor and cost(lower) <= target_epsilon:
        lower = max(0.5 * lower, floor)
    while cost(upper) > target_epsilon:
        upper *= 2.0
    while upper - lower > tol:
        mid = 0.5 * (lower + upper)
        if cost(mid) <= target_epsilon:
            upper = mid
        else:
            lower = mid
    return float(upper)


class PrivacyLedger:
    """Records every release that touches `D_p` during a run and reports its ε.

    Example:
      >>> ledger = PrivacyLedger()
      >>> ledger.record(DiscreteGaussianRelease(6.68, name="ecos_scores"))
      >>> ledger.record(DiscreteGaussianRelease(40.0, count=100, coordinates=2, name="knn"))
      >>> [r.name for r in ledger.releases]
      ['ecos_scores', 'knn']
      >>> ledger.epsilon(delta=1e-5) > 0.58
      True

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 and task (c).
    """

    def __init__(self, releases: Iterable[Release] = ()) -> None:
        self._releases: list[Release] = _as_release_list(releases)

    def record(self, release: Release) -> None:
        """Appends one release (or `count` identical ones) to the ledger."""
        if not isinstance(release, _RELEASE_TYPES):
            raise TypeError(
                "release must be a DiscreteGaussianRelease or a "
                f"SubsampledDiscreteGaussianRelease, got {type(release).__name__}."
            )
        self._releases.append(release)

    @property
    def releases(self) -> tuple[Release, ...]:
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
            "delta": open_unit_interval(delta, "delta"),
            "mechanism": "discrete Gaussian",
            "releases": [
                {"kind": type(r).__name__, **dataclasses.asdict(r)} for r in self._releases
            ],
            "epsilon": self.epsilons(delta=delta),
        }


def _as_release_list(releases: Any) -> list[Release]:
    """Wraps a single release and checks every item's type."""
    if isinstance(releases, _RELEASE_TYPES):
        return [releases]
    out = list(releases)
    for r in out:
        if not isinstance(r, _RELEASE_TYPES):
            raise TypeError(
                "releases must hold DiscreteGaussianRelease or "
                f"SubsampledDiscreteGaussianRelease items, got {type(r).__name__}."
            )
    return out


def _check_accountant(accountant: str) -> None:
    """Raises for an unknown accountant name."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}.")
