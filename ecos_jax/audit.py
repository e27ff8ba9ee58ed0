"""A black-box audit of what the client releases: worst-case neighbours, many draws, lower bounds.

For each release (Voronoi, top-m and radius scores, one Private-kNN histogram) the audit

1. builds an adversarial pair of client datasets `D` and `D' = D ∪ {z}` (many copies of a
   row on a decision boundary, plus the one sample that moves the counts) and computes
   their counts with the library's own code (`coverage_scores`, `knn_votes`): the L2
   shift it reports is the sensitivity as computed, not as stated;
2. draws many releases from each with the real noise function (`noise.add_discrete_gaussian`,
   the path `client_respond` and `release_knn_labels` take), vectorised;
3. scores every draw with a fixed test statistic (the discrete Gaussian's log-likelihood
   ratio, plus ±∞ where an output cannot be produced by one of the two datasets) and
   reports three figures:
   - `epsilon_lr`: a lower bound on ε at δ from the best threshold test, with
     Clopper–Pearson intervals (Bonferroni over thresholds, both directions), from
     `jax_privacy.auditing.CanaryScoreAuditor.epsilon_clopper_pearson`;
   - `epsilon_gdp`: the GDP-shape estimate of Nasr et al. (2023), `epsilon_from_gdp`;
   - `lattice_fraction`: the fraction of outputs of one dataset that the other can never
     produce (Mironov 2012): 0 for integer outputs with full-support noise.

`Float32GaussianMechanism` is the pre-fix release kept as a test double (`count + σΔ·z`
in float32, z from `jax.random.normal`): the audit must catch it, which shows that the
audit has power. Its support oracle enumerates the 2²³ float32 values `jax.random.normal`
can return and checks, per output, whether some of them reproduce it bit for bit.

A lower bound above the claimed ε, or a positive lattice fraction, is a violation.

References:
  Jagielski, Ullman, Oprea. "Auditing Differentially Private Machine Learning." NeurIPS
  2020. Nasr et al. "Tight Auditing of Differentially Private Machine Learning." USENIX
  Security 2023. Mironov. "On Significance of the Least Significant Bits for Differential
  Privacy." CCS 2012. Canonne, Kamath, Steinke. NeurIPS 2020.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy import special

from ecos_jax import coverage, noise, privacy
from ecos_jax._validate import check_key
from ecos_jax.tasks import private_knn

__all__ = [
    "RELEASES",
    "AuditResult",
    "DiscreteGaussianMechanism",
    "Float32GaussianMechanism",
    "NeighbouringCounts",
    "audit",
    "neighbouring_counts",
]

#: The releases the audit knows how to build a worst-case pair for.
RELEASES: tuple[str, ...] = ("voronoi", "top_m", "radius", "private_knn")

_DIM, _NUM_CENTROIDS, _COPIES = 16, 6, 63
_TOP_M, _MAX_VOTES, _K, _CLASSES = 3, 3, 5, 4


class NeighbouringCounts(NamedTuple):
    """The noise-free released vector of `D` and of `D' = D ∪ {z}`, and what is claimed."""

    name: str
    counts: np.ndarray  # [R] int64, from D
    neighbour: np.ndarray  # [R] int64, from D'
    release: privacy.DiscreteGaussianRelease  # σ, coordinates: what the accountant assumes

    @property
    def shift_l2(self) -> float:
        """‖c(D') − c(D)‖₂ as computed (must not exceed the release's sensitivity)."""
        return float(np.linalg.norm(self.neighbour - self.counts))


class AuditResult(NamedTuple):
    """One audited release: the claim, the measured lower bounds, the lattice test."""

    release: str
    mechanism: str
    claimed_epsilon_rdp: float
    claimed_epsilon_pld: float
    epsilon_lr: float  # Clopper–Pearson likelihood-ratio lower bound at δ
    epsilon_gdp: float  # GDP-shape estimate (Nasr et al. 2023)
    lattice_fraction: float  # outputs of one dataset the other can never produce
    shift_l2: float  # the counts' L2 shift as computed
    sensitivity: float  # the release's stated sensitivity
    num_draws: int
    delta: float

    @property
    def violated(self) -> bool:
        """The certified bound above the tight (PLD) ε, the GDP-shape estimate above the
        claimed (RDP) ε, a lattice, or a shift beyond Δ."""
        return (
            self.epsilon_lr > self.claimed_epsilon_pld
            or self.epsilon_gdp > self.claimed_epsilon_rdp
            or self.lattice_fraction > 0
            or self.shift_l2 > self.sensitivity
        )


class Mechanism(Protocol):
    """What the audit needs of a release mechanism."""

    name: str

    def draw(self, counts: np.ndarray, num_draws: int, key: jax.Array) -> np.ndarray: ...

    def producible(self, outputs: np.ndarray, counts: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class DiscreteGaussianMechanism:
    """The deployed mechanism: int64 counts plus `N_Z(0, scale²)` from `ecos_jax.noise`.

    `randomness` 'simulation' draws from the keyed sampler (fast, vectorised; its support
    is [-T, T] around the counts) and 'secure' from OpenDP (full support on the integers).
    """

    scale: float
    randomness: str = "simulation"

    @property
    def name(self) -> str:
        return f"discrete Gaussian ({self.randomness})"

    def draw(self, counts: np.ndarray, num_draws: int, key: jax.Array) -> np.ndarray:
        source = noise.simulation(key) if self.randomness == "simulation" else noise.secure()
        return noise.add_discrete_gaussian(
            counts, scale=self.scale, randomness=source, num_draws=num_draws
        )

    def producible(self, outputs: np.ndarray, counts: np.ndarray) -> np.ndarray:
        if self.randomness == "secure":
            return np.ones(outputs.shape[0], bool)  # every integer vector has mass
        bound = noise.discrete_gaussian_table(self.scale).bound
        return np.all(np.abs(outputs - counts[None, :]) <= bound, axis=1)


@dataclasses.dataclass(frozen=True)
class Float32GaussianMechanism:
    """TEST DOUBLE, broken on purpose: the pre-fix `count + std·N(0, 1)` in float32.

    The normal draw follows `jax.random.normal`'s recipe (23 random mantissa bits → a
    uniform in (−1, 1) → √2·erfinv), written out so that the support oracle can evaluate
    the very same compiled computation on candidate mantissas. Kept so the audit can show
    that it catches the float lattice (Mironov 2012).
    """

    std: float
    name: str = "float32 Gaussian (pre-fix test double)"

    def draw(self, counts: np.ndarray, num_draws: int, key: jax.Array) -> np.ndarray:
        bits = jax.random.bits(key, (num_draws, counts.size), jnp.uint32)
        mantissas = lax.shift_right_logical(bits, jnp.uint32(9))
        values = jnp.broadcast_to(jnp.asarray(counts, jnp.float32), mantissas.shape)
        return np.asarray(_float32_release(values, jnp.float32(self.std), mantissas))

    def producible(self, outputs: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Whether some mantissas give exactly these outputs from `counts` (per draw)."""
        y = np.asarray(outputs, np.float32)
        c = np.broadcast_to(np.asarray(counts, np.float32), y.shape)
        # Invert in float64 to the nearest mantissa, then try a window around it.
        z = (y.astype(np.float64) - c) / float(np.float32(self.std))
        u = np.clip(special.erf(z / math.sqrt(2.0)), _LO, 1.0)
        center = np.round((u - _LO) / (1.0 - _LO) * 2**23).astype(np.int64)
        window = np.arange(-_WINDOW, _WINDOW + 1)
        candidates = np.clip(center[..., None] + window, 0, 2**23 - 1).astype(np.uint32)
        values = np.broadcast_to(c[..., None], candidates.shape)
        hit = np.asarray(
            _float32_release(jnp.asarray(values), jnp.float32(self.std), jnp.asarray(candidates))
        )
        return np.all(np.any(hit == y[..., None], axis=-1), axis=1)


_LO = float(np.nextafter(np.float32(-1.0), np.float32(0.0)))
_WINDOW = 8


@jax.jit
def _float32_release(values: jax.Array, std: jax.Array, mantissas: jax.Array) -> jax.Array:
    """values + std·z in float32, z = √2·erfinv(u) from 23 mantissa bits as in
    `jax.random.normal` (the pre-fix `privatize`)."""
    bits = lax.bitwise_or(mantissas, jnp.uint32(0x3F800000))
    floats = lax.bitcast_convert_type(bits, jnp.float32) - jnp.float32(1.0)
    lo, hi = jnp.float32(_LO), jnp.float32(1.0)
    u = lax.max(lo, floats * (hi - lo) + lo)
    z = jnp.float32(np.sqrt(2)) * lax.erf_inv(u)
    return values + std * z


def neighbouring_counts(release: str, *, target_epsilon: float, delta: float) -> NeighbouringCounts:
    """The adversarial pair for `release`, its counts from the library, σ calibrated (RDP).

    Args:
      release: one of `RELEASES`.
      target_epsilon: the ε the noise is calibrated to at `delta` (RDP accountant).
      delta: δ.

    Returns:
      `NeighbouringCounts` whose `counts` and `neighbour` are the real noise-free vectors of
      `D` (63 copies of a row on the release's decision boundary among other rows) and of
      `D' = D ∪ {z}`.
    """
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}.")
    rng = np.random.default_rng(0)
    x = rng.normal(size=_DIM)
    if release == "private_knn":
        return _knn_pair(rng, x, target_epsilon, delta)
    # Centroids around the boundary row: two tied nearest, the rest farther.
    # Voronoi: the two nearest centroids tied; top-m: the m-th and (m+1)-th tied; radius:
    # four centroids qualify (the cap is 3), three of them tied at the same distance.
    radii = {"voronoi": [3.0, 3.0, 4.0, 5.0, 6.0, 7.0], "top_m": [1.0, 2.0, 3.0, 3.0, 4.0, 5.0]}
    radii["radius"] = [2.0, 2.0, 2.0, 1.0, 3.0, 4.0]
    centroids = _shell(rng, x, radii[release])
    kwargs: dict[str, Any] = {
        "voronoi": {},
        "top_m": {"m": _TOP_M},
        "radius": {"radii": 2.5, "max_votes": _MAX_VOTES},
    }[release]
    background = rng.normal(size=(20, _DIM)).astype(np.float32)
    row = x.astype(np.float32)
    data = np.concatenate([np.repeat(row[None], _COPIES, 0), background])
    # z is one more copy of the boundary row, added in the middle: it casts all its votes.
    grown = np.insert(data, len(data) // 2, row, axis=0)
    score = lambda f: coverage.coverage_scores(f, centroids, method=release, **kwargs)
    base = score(data)
    sigma = privacy.calibrate_sigma(
        target_epsilon, delta=delta, coordinates=base.votes_per_sample, accountant="rdp"
    )
    spec = privacy.DiscreteGaussianRelease(
        sigma, coordinates=base.votes_per_sample, name=f"{release}_scores"
    )
    return NeighbouringCounts(release, base.counts, score(grown).counts, spec)


def _knn_pair(rng, q, target_epsilon: float, delta: float) -> NeighbouringCounts:
    """One query; its k-th and (k+1)-th client samples tied; z = the query, another label."""
    steps = np.concatenate([np.arange(1.0, _K), [float(_K)] * 8, np.arange(_K + 1.0, _K + 6)])
    client = _shell(rng, q, steps)
    labels = np.arange(len(client)) % _CLASSES
    labels[_K - 1 : _K + 7] = 0  # the tied block votes class 0
    query = q.astype(np.float32)[None]
    votes = lambda c, y: private_knn.knn_votes(query, c, y, k=_K, num_classes=_CLASSES)[0]
    base = votes(client, labels)
    grown = votes(np.insert(client, 3, q.astype(np.float32), 0), np.insert(labels, 3, 3))
    scale = private_knn.calibrate_vote_sigma(target_epsilon, delta=delta, num_queries=1)
    spec = private_knn.private_knn_release(sigma=scale, num_queries=1)
    return NeighbouringCounts("private_knn", base, grown, spec)


def _shell(rng, center, radii) -> np.ndarray:
    """Points at the given distances (exact in float64, then rounded) from `center`."""
    units = rng.normal(size=(len(radii), center.size))
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    return (center + np.asarray(radii)[:, None] * units).astype(np.float32)


def audit(
    pair: NeighbouringCounts,
    mechanism: Mechanism,
    *,
    num_draws: int,
    key: jax.Array,
    delta: float,
    significance: float = 0.05,
    chunk: int = 1_000_000,
) -> AuditResult:
    """Draws `num_draws` releases of `D` and of `D'` and bounds ε from below.

    The test statistic is `T(y) = Σ_j d_j (y_j − c_j)` over the coordinates the pair
    shifts (`d = c(D') − c(D)`), the log-likelihood ratio of the discrete Gaussian up to an
    affine map, set to +∞ (−∞) where `D` (`D'`) cannot produce `y`. The likelihood-ratio
    bound uses ONE threshold, planned before any draw from the claimed mechanism and the
    number of draws (`planned_threshold`), so no multiplicity correction is needed.

    Args:
      pair: from `neighbouring_counts`.
      mechanism: `DiscreteGaussianMechanism(pair.release.scale)` for the deployed release,
        or the `Float32GaussianMechanism` test double.
      num_draws: releases drawn from each dataset.
      key: the audit's own key.
      delta: the δ of the bounds.
      significance: failure probability of each bound (Clopper–Pearson, GDP).
      chunk: releases drawn at once (memory).

    Returns:
      An `AuditResult`.
    """
    from jax_privacy import auditing

    check_key(key, "key")
    shift = (pair.neighbour - pair.counts).astype(np.float64)
    scores, exclusive = [], []
    for which, counts in (
        (0, pair.counts),
        (1, pair.neighbour),
    ):
        parts, alone = [], 0
        for i, start in enumerate(range(0, num_draws, chunk)):
            size = min(chunk, num_draws - start)
            out = mechanism.draw(counts, size, jax.random.fold_in(key, 2 * i + which))
            t = (out.astype(np.float64) - pair.counts) @ shift
            by_d = mechanism.producible(out, pair.counts)
            by_n = mechanism.producible(out, pair.neighbour)
            if not (by_d if which == 0 else by_n).all():
                raise RuntimeError(
                    f"{mechanism.name}: its support oracle rejects outputs of its own "
                    "dataset; the lattice test would be meaningless."
                )
            parts.append(np.where(by_d, np.where(by_n, t, -np.inf), np.inf))
            alone += int(np.sum(~(by_n if which == 0 else by_d)))
        scores.append(np.concatenate(parts))
        exclusive.append(alone / num_draws)
    scores_d, scores_n = scores
    lattice = float(max(exclusive))
    # The auditor needs finite scores: ±∞ become just beyond the finite range.
    finite = np.concatenate([s[np.isfinite(s)] for s in scores])
    lo, hi = (finite.min() - 1.0, finite.max() + 1.0) if finite.size else (-1.0, 1.0)
    clip = lambda v: np.where(v == np.inf, hi, np.where(v == -np.inf, lo, v))
    auditor = auditing.CanaryScoreAuditor(clip(scores_n), clip(scores_d))
    threshold = planned_threshold(pair, num_draws=num_draws, delta=delta, significance=significance)
    eps_lr = auditor.epsilon_clopper_pearson(
        significance, delta, one_sided=False, threshold_strategy=auditing.Explicit(threshold)
    )
    eps_gdp = gdp_epsilon(clip(scores_n), clip(scores_d), significance=significance, delta=delta)
    claimed = privacy.epsilons(pair.release, delta=delta)
    return AuditResult(
        release=pair.name,
        mechanism=mechanism.name,
        claimed_epsilon_rdp=claimed["rdp"],
        claimed_epsilon_pld=claimed["pld"],
        epsilon_lr=float(eps_lr),
        epsilon_gdp=float(eps_gdp),
        lattice_fraction=lattice,
        shift_l2=pair.shift_l2,
        sensitivity=pair.release.sensitivity,
        num_draws=int(num_draws),
        delta=float(delta),
    )


def gdp_epsilon(
    in_scores: np.ndarray, out_scores: np.ndarray, *, significance: float, delta: float
) -> float:
    """The GDP-shape estimate: a lower bound on μ from every threshold, as ε at δ.

    For a μ-GDP mechanism every test obeys `μ ≥ Φ⁻¹(1 − FPR) − Φ⁻¹(FNR)`; with
    Clopper–Pearson upper bounds on FPR and FNR (Bonferroni over the thresholds of both
    orientations) the largest right-hand side is a lower bound on μ, converted to ε at δ
    by the Gaussian mechanism's exact curve (Dong, Roth, Su 2022, Cor. 2.13). Written here
    rather than taken from `jax_privacy.auditing.CanaryScoreAuditor.epsilon_from_gdp`
    (2.0.0), which also takes |μ| of thresholds where the right-hand side is negative, a
    "reverse" bound that upper confidence bounds do not support: with few draws it
    reports ε above what the mechanism can have (e.g. 4.5 for a true 0.53).
    """
    from dp_accounting import gaussian_mechanism
    from scipy import stats

    def fpr_fnr_upper(pos: np.ndarray, neg: np.ndarray, alpha: float):
        pos, neg = np.sort(pos), np.sort(neg)
        thresholds = np.unique(np.concatenate([pos, neg]))
        fn = np.searchsorted(pos, thresholds, side="left")  # positives below: missed
        fp = neg.size - np.searchsorted(neg, thresholds, side="left")  # negatives at/above
        upper = lambda k, n: np.where(k < n, stats.beta.ppf(1 - alpha, k + 1, n - k), 1.0)
        return upper(fp, neg.size), upper(fn, pos.size)

    num_tests = 2 * (np.unique(np.concatenate([in_scores, out_scores])).size)
    alpha = significance / (2 * num_tests)  # two CP bounds per threshold and orientation
    mu = 0.0
    for pos, neg in ((in_scores, out_scores), (-out_scores, -in_scores)):
        fpr_ub, fnr_ub = fpr_fnr_upper(pos, neg, alpha)
        keep = (fpr_ub < 1.0) & (fnr_ub < 1.0)
        if keep.any():
            mu = max(mu, float(np.max(stats.norm.isf(fpr_ub[keep]) - stats.norm.ppf(fnr_ub[keep]))))
    if mu <= 0:
        return 0.0
    return float(gaussian_mechanism.get_epsilon_gaussian(1.0 / mu, delta))


def planned_threshold(
    pair: NeighbouringCounts, *, num_draws: int, delta: float, significance: float
) -> float:
    """The threshold on `T` whose Clopper–Pearson bound the CLAIMED mechanism maximises.

    Under the claim, `T` is a sum of `m = ‖d‖²` discrete Gaussians under `D` and the same
    shifted by `m` under `D'`. The threshold maximises the bound obtained at the
    unfavourable decile of both counts (the 90% binomial quantile of false positives and
    of misses), which keeps the bound from riding on a handful of tail events; it is
    chosen from the claim alone, never from the draws.
    """
    from scipy import stats

    scale = pair.release.scale
    m = round(pair.shift_l2**2)
    if m == 0:
        return 0.0
    z = np.arange(-int(12 * scale) - 2, int(12 * scale) + 3)
    pmf = noise.discrete_gaussian_pmf(z, scale)
    total, support = pmf, z
    for _ in range(m - 1):
        total = np.convolve(total, pmf)
        support = np.arange(support[0] + z[0], support[-1] + z[-1] + 1)
    survival = np.cumsum(total[::-1])[::-1]  # P[T >= support[i]]
    n = int(num_draws)
    best, best_t = -np.inf, float(support[-1])
    for i, t in enumerate(support):
        j = np.searchsorted(support, t - m)
        fpr, tpr = survival[i], (survival[j] if j < support.size else 0.0)
        k_fp = int(stats.binom.ppf(0.9, n, min(fpr, 1.0)))
        k_fn = int(stats.binom.ppf(0.9, n, min(max(1.0 - tpr, 0.0), 1.0)))
        if k_fp >= n or k_fn >= n:
            continue
        fpr_ub = stats.beta.ppf(1 - significance / 2, k_fp + 1, n - k_fp)
        tpr_lb = 1 - stats.beta.ppf(1 - significance / 2, k_fn + 1, n - k_fn)
        if tpr_lb > delta and fpr_ub > 0:
            value = math.log(tpr_lb - delta) - math.log(fpr_ub)
            if value > best:
                best, best_t = value, float(t)
    return best_t


def float32_double(pair: NeighbouringCounts) -> Float32GaussianMechanism:
    """The pre-fix mechanism at the pair's noise scale (std = σΔ)."""
    return Float32GaussianMechanism(std=pair.release.scale)


def subsampled_knn_audit(
    *,
    sampling_rate: float,
    target_epsilon: float,
    delta: float,
    num_draws: int,
    key: jax.Array,
    drawn_rate: float | None = None,
    significance: float = 0.05,
) -> AuditResult:
    """Audits one subsampled Private-kNN answer (`tasks.subsampled_knn`) end to end.

    `D` holds 40 rows labeled 0 at distances 1, 2, …, 40 from the query; `D' = D ∪ {z}`
    adds `z`, the query itself with label 1, so that whenever `z` is sampled it is the
    nearest row and moves one of the k = 5 votes from class 0 to class 1. Every
    draw re-samples the Poisson subsample (`subsampling.poisson_masks`), counts the votes
    with `subsampled_votes` (the library's kNN within the subsample) and adds the
    discrete Gaussian noise (`noise.add_discrete_gaussian`): the audit sees the released
    histogram, not a model of it. The noise is calibrated so that one answer costs
    `target_epsilon` (RDP) at the claimed `sampling_rate`.

    The test statistic is `y[1] − y[0]`, on which the mixture's likelihood ratio is
    increasing. Half of the draws choose the threshold (the best Clopper–Pearson bound
    on them); the bound is then computed on the other, fresh half.

    Args:
      sampling_rate: the claimed γ.
      target_epsilon: ε of the one release under the claim (RDP at `delta`).
      delta: δ.
      num_draws: releases drawn from each dataset (half plan, half measure).
      key: the audit's own key.
      drawn_rate: the rate the draws actually use (None: the claimed one). A larger one
        is the broken mechanism the audit must catch.
      significance: failure probability of each bound.

    Returns:
      An `AuditResult` (release 'subsampled_knn').
    """
    from jax_privacy import auditing

    from ecos_jax import subsampling
    from ecos_jax.tasks import subsampled_knn

    check_key(key, "key")
    rate = subsampling.poisson_rate(sampling_rate)
    drawn = rate if drawn_rate is None else float(drawn_rate)
    scale = _calibrate_one_answer(target_epsilon, rate, delta)
    claim = privacy.SubsampledDiscreteGaussianRelease(
        scale, rate, coordinates=2, name="subsampled_knn_answer"
    )
    rng = np.random.default_rng(0)
    center = rng.normal(size=_DIM)
    query = center.astype(np.float32)[None]
    # Distinct distances (no ties: every draw is decided on the fast path).
    data = _shell(rng, center, np.arange(1.0, 41.0))
    labels = np.zeros(40, np.int64)
    datasets = ((data, labels), (np.concatenate([query, data]), np.concatenate([[1], labels])))
    halves = []
    for which, (client, client_labels) in enumerate(datasets):
        k_mask, k_noise = jax.random.split(jax.random.fold_in(key, which))
        masks, _ = subsampling.poisson_masks(
            num_queries=num_draws,
            num_rows=len(client),
            rate=drawn,
            randomness=noise.simulation(k_mask),
        )
        votes = subsampled_knn.subsampled_votes(
            np.repeat(query, num_draws, axis=0),
            client,
            client_labels,
            masks,
            k=_K,
            num_classes=2,
            chunk_size=65536,
        )
        out = noise.add_discrete_gaussian(votes, scale=scale, randomness=noise.simulation(k_noise))
        t = (out[:, 1] - out[:, 0]).astype(np.float64)
        halves.append((t[: num_draws // 2], t[num_draws // 2 :]))
    (plan_d, test_d), (plan_n, test_n) = halves
    thresholds = np.unique(np.quantile(plan_n, np.linspace(0.5, 0.9999, 60)))
    plan = auditing.CanaryScoreAuditor(plan_n, plan_d)
    bounds = [
        plan.epsilon_clopper_pearson(
            significance, delta, one_sided=True, threshold_strategy=auditing.Explicit(float(t))
        )
        for t in thresholds
    ]
    best = float(thresholds[int(np.argmax(bounds))])
    measured = auditing.CanaryScoreAuditor(test_n, test_d)
    eps_lr = measured.epsilon_clopper_pearson(
        significance, delta, one_sided=True, threshold_strategy=auditing.Explicit(best)
    )
    claimed = privacy.epsilons(claim, delta=delta)
    return AuditResult(
        release="subsampled_knn",
        mechanism=f"subsampled discrete Gaussian (drawn at γ={drawn:g})",
        claimed_epsilon_rdp=claimed["rdp"],
        claimed_epsilon_pld=claimed["pld"],
        epsilon_lr=float(eps_lr),
        epsilon_gdp=float(gdp_epsilon(test_n, test_d, significance=significance, delta=delta)),
        lattice_fraction=0.0,
        shift_l2=math.sqrt(2.0),
        sensitivity=math.sqrt(2.0),
        num_draws=int(num_draws),
        delta=float(delta),
    )


def _calibrate_one_answer(target_epsilon: float, rate: float, delta: float) -> float:
    """The smallest scale (within 0.1%) whose one subsampled answer costs target ε (RDP)."""
    cost = lambda s: privacy.epsilon(
        privacy.SubsampledDiscreteGaussianRelease(s, rate, coordinates=2), delta=delta
    )
    lower, upper = 0.05, 1.0
    while cost(upper) > target_epsilon:
        lower, upper = upper, 2.0 * upper
    while upper - lower > 1e-3 * upper:
        mid = 0.5 * (lower + upper)
        lower, upper = (lower, mid) if cost(mid) <= target_epsilon else (mid, upper)
    return upper
