"""Privacy accounting of the discrete Gaussian against exact references, calibration, noise."""

import json
import math

import jax
import numpy as np
import pytest
import scipy.stats
from dp_accounting import GaussianDpEvent
from dp_accounting.rdp import rdp_privacy_accountant

from ecos_jax import noise
from ecos_jax.coverage import CoverageScores
from ecos_jax.privacy import (
    DiscreteGaussianRelease,
    PrivacyLedger,
    calibrate_sigma,
    epsilon,
    epsilons,
    privatize,
)

DELTA = 1e-5

# One release, sensitivity 1 (one coordinate moves by 1), δ = 1e-5. RDP is the spec's
# column (zCDP ρ = 1/2σ² is the Gaussian RDP curve); PLD is the discrete Gaussian's own.
TABLE = [  # sigma, PLD epsilon (discrete), RDP epsilon
    (1.0, 4.430, 4.729),
    (2.0, 2.011, 2.166),
    (5.0, 0.727, 0.795),
    (10.0, 0.341, 0.375),
    (50.0, 0.059, 0.070),
]


def exact_epsilon(scale: float, coordinates: int, delta: float) -> float:
    """Exact ε(δ) of `coordinates` unit shifts of N_Z(0, scale²), from the hockey-stick
    divergence: the privacy loss (c − 2Σz)/2s² is affine in Σz, whose pmf is a convolution."""
    z = np.arange(-int(40 * scale) - 2, int(40 * scale) + 3)
    pmf = noise.discrete_gaussian_pmf(z, scale)
    total = pmf
    for _ in range(coordinates - 1):
        total = np.convolve(total, pmf)
    t = np.arange(total.size) + coordinates * z[0]
    loss = (coordinates - 2.0 * t) / (2 * scale**2)

    def hockey_stick(eps: float) -> float:
        return float(np.sum(total * np.maximum(0.0, 1.0 - np.exp(eps - loss))))

    lo, hi = 0.0, 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if hockey_stick(mid) > delta else (lo, mid)
    return hi


@pytest.mark.parametrize("sigma, eps_pld, eps_rdp", TABLE)
def test_reproduces_the_table(sigma, eps_pld, eps_rdp):
    got = epsilons([DiscreteGaussianRelease(noise_multiplier=sigma)], delta=DELTA)
    assert round(got["pld"], 3) == eps_pld
    assert round(got["rdp"], 3) == eps_rdp
    assert got["pld"] <= got["rdp"]  # PLD is the tighter accountant.


@pytest.mark.parametrize(
    "sigma, coordinates, count", [(1.0, 1, 1), (6.684, 1, 1), (2.0, 4, 1), (3.0, 2, 5)]
)
def test_pld_is_a_tight_upper_bound_on_the_exact_epsilon(sigma, coordinates, count):
    release = DiscreteGaussianRelease(sigma, count=count, coordinates=coordinates)
    exact = exact_epsilon(release.scale, coordinates * count, DELTA)
    got = epsilon(release, delta=DELTA, accountant="pld")
    assert got >= exact - 1e-9  # pessimistic: never below the truth
    assert got == pytest.approx(exact, rel=2e-3)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 6.684, 30.0])
def test_rdp_is_the_zcdp_curve_of_the_gaussian(sigma):
    """ρ = 1/2σ² as an RDP curve equals the Gaussian's; and it is below the classic zCDP
    conversion ρ + 2√(ρ log 1/δ) (dp-accounting's conversion is tighter)."""
    acc = rdp_privacy_accountant.RdpAccountant()
    acc.compose(GaussianDpEvent(sigma))
    got = epsilon(DiscreteGaussianRelease(sigma), delta=DELTA)
    assert got == pytest.approx(acc.get_epsilon(DELTA), rel=1e-9)
    rho = 0.5 / sigma**2
    assert got <= rho + 2 * math.sqrt(rho * math.log(1 / DELTA))


def test_rdp_does_not_depend_on_coordinates_but_pld_does():
    one = DiscreteGaussianRelease(2.0, coordinates=1)
    four = DiscreteGaussianRelease(2.0, coordinates=4)
    assert epsilon(one, delta=DELTA) == epsilon(four, delta=DELTA)
    assert four.scale == 4.0 and four.sensitivity == 2.0
    assert epsilon(four, delta=DELTA, accountant="pld") != epsilon(
        one, delta=DELTA, accountant="pld"
    )


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize(
    "target, count, coordinates",
    [(0.58, 1, 1), (1.22, 1, 1), (0.1, 1, 1), (0.58, 4, 1), (4.0, 50, 2)],
)
def test_calibration_round_trips(accountant, target, count, coordinates):
    sigma = calibrate_sigma(
        target, delta=DELTA, count=count, coordinates=coordinates, accountant=accountant
    )
    cost = lambda s: epsilon(
        DiscreteGaussianRelease(s, count=count, coordinates=coordinates),
        delta=DELTA,
        accountant=accountant,
    )
    assert cost(sigma) <= target  # Never over budget.
    assert cost(sigma) == pytest.approx(target, rel=2e-3)
    assert cost(0.99 * sigma) > target  # Smallest: 1% less noise is over budget.


def test_calibration_point_eps_058():
    rdp = calibrate_sigma(0.58, delta=DELTA, accountant="rdp")
    pld = calibrate_sigma(0.58, delta=DELTA, accountant="pld")
    assert rdp == pytest.approx(6.684, abs=1e-3)
    assert pld == pytest.approx(6.142, abs=2e-3)  # the discrete Gaussian's PLD
    assert exact_epsilon(pld, 1, DELTA) == pytest.approx(0.58, rel=2e-3)
    assert pld < rdp


def test_delta_changes_epsilon():
    release = DiscreteGaussianRelease(3.0)
    for accountant in ("rdp", "pld"):
        tight = epsilon(release, delta=1e-9, accountant=accountant)
        loose = epsilon(release, delta=1e-3, accountant=accountant)
        assert tight > loose
    assert epsilon(release, delta=1e-9, accountant="pld") == pytest.approx(
        exact_epsilon(3.0, 1, 1e-9), rel=2e-3
    )


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_k_identical_releases_equal_count_k(accountant):
    k, sigma = 5, 8.0
    listed = epsilon([DiscreteGaussianRelease(sigma)] * k, delta=DELTA, accountant=accountant)
    counted = epsilon(DiscreteGaussianRelease(sigma, count=k), delta=DELTA, accountant=accountant)
    assert listed == pytest.approx(counted, rel=2e-3)
    assert counted > epsilon(DiscreteGaussianRelease(sigma), delta=DELTA, accountant=accountant)


def test_heterogeneous_composition_against_the_exact_reference():
    """Unit shifts of discrete Gaussians of two scales: exact ε by convolving their pmfs."""
    ecos = DiscreteGaussianRelease(3.0, name="ecos_scores")
    knn = DiscreteGaussianRelease(4.0 / math.sqrt(2), count=3, coordinates=2, name="knn")
    both = epsilon([ecos, knn], delta=DELTA, accountant="pld")
    # Exact: the loss is a sum of (1 − 2z)/2s² terms for the 1 + 6 shifted coordinates.
    z3, z4 = (np.arange(-160, 161) for _ in range(2))
    grid = []
    for scale, copies, z in ((3.0, 1, z3), (4.0, 6, z4)):
        loss_values = (1 - 2.0 * z) / (2 * scale**2)
        grid.append((loss_values, noise.discrete_gaussian_pmf(z, scale), copies))
    values, probs = np.zeros(1), np.ones(1)
    for loss_values, pmf, copies in grid:
        for _ in range(copies):
            values = (values[:, None] + loss_values[None, :]).ravel()
            probs = (probs[:, None] * pmf[None, :]).ravel()
            keep = probs > 1e-30
            values, probs = values[keep], probs[keep]
            values, inverse = np.unique(np.round(values, 9), return_inverse=True)
            probs = np.bincount(inverse, weights=probs)

    def hockey(eps):
        return float(np.sum(probs * np.maximum(0.0, 1.0 - np.exp(eps - values))))

    lo, hi = 0.0, 50.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if hockey(mid) > DELTA else (lo, mid)
    assert both >= hi - 1e-9
    assert both == pytest.approx(hi, rel=3e-3)
    assert epsilon([ecos, knn], delta=DELTA) > epsilon(ecos, delta=DELTA)


def test_empty_composition_costs_nothing():
    assert epsilon([], delta=DELTA) == 0.0
    assert PrivacyLedger().epsilons(delta=DELTA) == {"rdp": 0.0, "pld": 0.0}


def test_ledger_records_and_composes():
    ledger = PrivacyLedger()
    ledger.record(DiscreteGaussianRelease(6.68, name="ecos_scores"))
    first = ledger.epsilons(delta=DELTA)
    ledger.record(DiscreteGaussianRelease(40.0, count=50, coordinates=2, name="private_knn_votes"))
    second = ledger.epsilons(delta=DELTA)
    assert [r.name for r in ledger.releases] == ["ecos_scores", "private_knn_votes"]
    assert second == epsilons(list(ledger.releases), delta=DELTA)
    assert second["rdp"] > first["rdp"] and second["pld"] > first["pld"]
    summary = json.loads(json.dumps(ledger.summary(delta=DELTA)))
    assert summary["mechanism"] == "discrete Gaussian"
    assert summary["releases"][1] == {
        "kind": "DiscreteGaussianRelease",
        "noise_multiplier": 40.0,
        "count": 50,
        "coordinates": 2,
        "name": "private_knn_votes",
    }
    assert summary["epsilon"]["rdp"] == pytest.approx(second["rdp"])
    with pytest.raises(TypeError, match="DiscreteGaussianRelease"):
        ledger.record(6.0)


# The released vector itself.


@pytest.mark.parametrize("sigma, votes", [(2.0, 1), (1.5, 4), (0.9, 3)])
def test_privatize_adds_discrete_gaussian_of_scale_sigma_times_sensitivity(sigma, votes):
    n = 100_000
    counts = np.arange(n) % 17
    scores = CoverageScores(counts, votes_per_sample=votes)
    released = privatize(scores, sigma=sigma, randomness=noise.simulation(jax.random.key(4)))
    assert released.dtype == np.int64
    residual = released - counts
    scale = sigma * math.sqrt(votes)
    values = np.arange(-int(6 * scale) - 1, int(6 * scale) + 2)
    observed = np.array([np.sum(residual == v) for v in values])

    def p_value(candidate_scale: float) -> float:
        expected = noise.discrete_gaussian_pmf(values, candidate_scale) * n
        keep = expected > 20
        stat = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
        return float(scipy.stats.chi2.sf(stat, keep.sum() - 1))

    assert p_value(scale) > 1e-3
    # Power: rejected as noise 5% too large, or as noise of scale σ (Δ forgotten).
    assert p_value(1.05 * scale) < 1e-6
    if votes > 1:
        assert p_value(sigma) < 1e-6


def test_privatize_is_secure_by_default_and_reproducible_when_simulated():
    scores = CoverageScores(np.zeros(200, np.int64), votes_per_sample=1)
    assert not np.array_equal(privatize(scores, sigma=3.0), privatize(scores, sigma=3.0))
    sim = lambda: privatize(scores, sigma=3.0, randomness=noise.simulation(jax.random.key(0)))
    np.testing.assert_array_equal(sim(), sim())


def test_privatize_takes_coverage_scores_only():
    with pytest.raises(TypeError, match="CoverageScores"):
        privatize(np.zeros(3, np.int64), sigma=1.0)


# Input validation.


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.nan, math.inf, "big"])
def test_privatize_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be a positive finite number"):
        privatize(CoverageScores(np.zeros(3, np.int64), 1), sigma=sigma)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier must be a positive finite"),
        ({"noise_multiplier": math.nan}, "noise_multiplier must be a positive finite"),
        ({"noise_multiplier": 1.0, "count": 0}, "count must be an int >= 1"),
        ({"noise_multiplier": 1.0, "count": 2.5}, "count must be an int >= 1"),
        ({"noise_multiplier": 1.0, "coordinates": 0}, "coordinates must be an int >= 1"),
        ({"noise_multiplier": 1.0, "name": ""}, "name must be a non-empty str"),
    ],
)
def test_release_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiscreteGaussianRelease(**kwargs)


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, math.nan, True])
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda delta: epsilon([DiscreteGaussianRelease(1.0)], delta=delta), id="epsilon"
        ),
        pytest.param(lambda delta: calibrate_sigma(1.0, delta=delta), id="calibrate_sigma"),
    ],
)
def test_rejects_bad_delta(call, delta):
    with pytest.raises(ValueError, match="delta must be"):
        call(delta)


@pytest.mark.parametrize("target", [0.0, -0.5, math.inf, math.nan])
def test_calibrate_rejects_bad_epsilon(target):
    with pytest.raises(ValueError, match="target_epsilon must be a positive finite"):
        calibrate_sigma(target, delta=DELTA)


@pytest.mark.parametrize(
    "call, error, match",
    [
        pytest.param(
            lambda: epsilon([DiscreteGaussianRelease(1.0)], delta=DELTA, accountant="moments"),
            ValueError,
            "accountant must be one of",
            id="epsilon_accountant",
        ),
        pytest.param(
            lambda: calibrate_sigma(1.0, delta=DELTA, accountant="zcdp"),
            ValueError,
            "accountant must be one of",
            id="calibrate_accountant",
        ),
        pytest.param(
            lambda: calibrate_sigma(1.0, delta=DELTA, count=0),
            ValueError,
            "count must be an int >= 1",
            id="calibrate_count",
        ),
        pytest.param(
            lambda: epsilon([1.0], delta=DELTA),
            TypeError,
            "DiscreteGaussianRelease",
            id="epsilon_of_a_float",
        ),
    ],
)
def test_rejects_bad_accountant_and_count(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            lambda: epsilon(DiscreteGaussianRelease(0.05), delta=DELTA, accountant="pld"),
            id="epsilon",
        ),
        pytest.param(
            lambda: calibrate_sigma(500.0, delta=DELTA, accountant="pld"), id="calibrate_sigma"
        ),
    ],
)
def test_pld_refuses_tiny_noise_instead_of_exhausting_memory(call):
    with pytest.raises(ValueError, match="use accountant='rdp'"):
        call()


def test_rdp_accounts_tiny_noise_and_the_pmf_is_normalised_and_symmetric():
    assert epsilon(DiscreteGaussianRelease(0.05), delta=DELTA, accountant="rdp") > 100
