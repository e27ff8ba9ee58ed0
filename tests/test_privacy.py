"""Privacy accounting against the spec's reference table, calibration and the noise."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from ecos_jax.coverage import CoverageScores
from ecos_jax.privacy import (
    GaussianRelease,
    PrivacyLedger,
    calibrate_sigma,
    epsilon,
    epsilons,
    privatize,
)

DELTA = 1e-5

# Spec section 3: one release, sensitivity 1, delta 1e-5.
SPEC_TABLE = [  # sigma, PLD epsilon, RDP epsilon
    (1.0, 4.377, 4.729),
    (2.0, 1.993, 2.166),
    (5.0, 0.726, 0.795),
    (10.0, 0.341, 0.375),
    (50.0, 0.059, 0.070),
]


@pytest.mark.parametrize("sigma, eps_pld, eps_rdp", SPEC_TABLE)
def test_reproduces_spec_table_within_half_a_percent(sigma, eps_pld, eps_rdp):
    release = GaussianRelease(noise_multiplier=sigma)
    got = epsilons([release], delta=DELTA)
    # The table is rounded to 3 decimals: every entry must match at that precision.
    assert round(got["pld"], 3) == eps_pld
    assert round(got["rdp"], 3) == eps_rdp
    # And within 0.5%, except where the table's rounding alone exceeds 0.5%: at σ=50 the
    # PLD figure is 0.058632, which the table prints as 0.059 (0.62% away).
    assert got["pld"] == pytest.approx(eps_pld, rel=5e-3, abs=5e-4)
    assert got["rdp"] == pytest.approx(eps_rdp, rel=5e-3)
    assert got["pld"] <= got["rdp"]  # PLD is the tighter accountant.


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize("target, count", [(0.58, 1), (1.22, 1), (0.1, 1), (0.58, 4)])
def test_calibration_round_trips(accountant, target, count):
    sigma = calibrate_sigma(target, delta=DELTA, count=count, accountant=accountant)
    eps = epsilon(GaussianRelease(sigma, count), delta=DELTA, accountant=accountant)
    assert eps <= target * (1 + 1e-9)  # Never over budget.
    assert eps == pytest.approx(target, rel=1e-3)
    # Smallest: 1% less noise is over budget.
    assert epsilon(GaussianRelease(0.99 * sigma, count), delta=DELTA, accountant=accountant) > (
        target
    )


def test_spec_calibration_point_eps_058():
    rdp = calibrate_sigma(0.58, delta=DELTA, accountant="rdp")
    pld = calibrate_sigma(0.58, delta=DELTA, accountant="pld")
    assert 6.1 <= rdp <= 6.7
    assert rdp == pytest.approx(6.68, abs=0.01)
    assert 6.0 <= pld < rdp  # The tighter accountant needs less noise.


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_k_identical_releases_equal_count_k(accountant):
    k, sigma = 5, 8.0
    listed = epsilon([GaussianRelease(sigma)] * k, delta=DELTA, accountant=accountant)
    counted = epsilon(GaussianRelease(sigma, count=k), delta=DELTA, accountant=accountant)
    assert listed == pytest.approx(counted, rel=1e-3)
    # Composition costs more than one release.
    assert counted > epsilon(GaussianRelease(sigma), delta=DELTA, accountant=accountant)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_heterogeneous_composition(accountant):
    ecos = GaussianRelease(6.0, name="ecos_scores")
    knn = GaussianRelease(30.0, count=20, name="private_knn_votes")
    both = epsilon([ecos, knn], delta=DELTA, accountant=accountant)
    assert both >= epsilon(ecos, delta=DELTA, accountant=accountant)
    assert both >= epsilon(knn, delta=DELTA, accountant=accountant)
    # Reference: Gaussian mechanisms compose exactly into one Gaussian with
    # 1/σ² = Σ count/σ_i² (both in RDP and in the privacy-loss distribution).
    sigma_eq = (1 / 6.0**2 + 20 / 30.0**2) ** -0.5
    single = epsilon(GaussianRelease(sigma_eq), delta=DELTA, accountant=accountant)
    assert both == pytest.approx(single, rel=2e-3)


def test_empty_composition_costs_nothing():
    assert epsilon([], delta=DELTA) == 0.0
    assert PrivacyLedger().epsilons(delta=DELTA) == {"rdp": 0.0, "pld": 0.0}


def test_ledger_records_and_composes():
    ledger = PrivacyLedger()
    ledger.record(GaussianRelease(6.68, name="ecos_scores"))
    first = ledger.epsilons(delta=DELTA)
    ledger.record(GaussianRelease(40.0, count=50, name="private_knn_votes"))
    second = ledger.epsilons(delta=DELTA)
    assert [r.name for r in ledger.releases] == ["ecos_scores", "private_knn_votes"]
    assert second == epsilons(list(ledger.releases), delta=DELTA)
    assert second["rdp"] > first["rdp"] and second["pld"] > first["pld"]
    summary = json.loads(json.dumps(ledger.summary(delta=DELTA)))
    assert summary["releases"][1] == {
        "noise_multiplier": 40.0,
        "count": 50,
        "name": "private_knn_votes",
    }
    assert summary["epsilon"]["rdp"] == pytest.approx(second["rdp"])
    with pytest.raises(TypeError, match="GaussianRelease"):
        ledger.record(6.0)


# The noise itself.


@pytest.mark.parametrize("sigma, sensitivity", [(2.0, 1.0), (0.7, math.sqrt(3.0))])
def test_privatize_noise_is_gaussian_with_std_sigma_times_sensitivity(sigma, sensitivity):
    n = 100_000
    scores = jnp.arange(n, dtype=jnp.float32) % 17  # Non-zero scores: noise = out - scores.
    noisy = privatize(jax.random.key(1234), scores, sigma=sigma, sensitivity=sensitivity)
    noise = np.asarray(noisy, np.float64) - np.asarray(scores, np.float64)
    std = sigma * sensitivity
    assert scipy.stats.kstest(noise, scipy.stats.norm(0.0, std).cdf).pvalue > 0.01
    # The test has power: a 5% wrong std, or a shifted mean, is rejected.
    assert scipy.stats.kstest(noise, scipy.stats.norm(0.0, 1.05 * std).cdf).pvalue < 1e-6
    assert scipy.stats.kstest(noise, scipy.stats.norm(0.05 * std, std).cdf).pvalue < 1e-6


def test_privatize_depends_only_on_the_key():
    a = jnp.zeros(64, jnp.float32)
    b = jnp.arange(64, dtype=jnp.float32)
    key = jax.random.key(7)
    noise_a = privatize(key, a, sigma=3.0, sensitivity=1.0) - a
    noise_b = privatize(key, b, sigma=3.0, sensitivity=1.0) - b
    np.testing.assert_allclose(noise_a, noise_b, atol=1e-4)
    np.testing.assert_array_equal(
        privatize(key, a, sigma=3.0, sensitivity=1.0), privatize(key, a, sigma=3.0, sensitivity=1.0)
    )
    other = privatize(jax.random.key(8), a, sigma=3.0, sensitivity=1.0)
    assert not np.allclose(other, noise_a)


def test_privatize_uses_coverage_sensitivity():
    scores = CoverageScores(jnp.zeros(8, jnp.float32), math.sqrt(2.0))
    key = jax.random.key(3)
    implicit = privatize(key, scores, sigma=2.0)
    explicit = privatize(key, scores.counts, sigma=2.0, sensitivity=math.sqrt(2.0))
    np.testing.assert_allclose(implicit, explicit, rtol=1e-6)
    assert implicit.dtype == jnp.float32 and implicit.shape == (8,)
    larger = privatize(key, scores, sigma=2.0, sensitivity=2.0)  # Conservative is allowed.
    np.testing.assert_allclose(larger, implicit * math.sqrt(2.0), rtol=1e-5)
    with pytest.raises(ValueError, match=r"sensitivity=0\.5 is below"):
        privatize(key, scores, sigma=2.0, sensitivity=0.5)


# Input validation.


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.nan, math.inf, "big"])
def test_privatize_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be a positive finite number"):
        privatize(jax.random.key(0), jnp.zeros(3), sigma=sigma, sensitivity=1.0)


@pytest.mark.parametrize("sensitivity", [0.0, -2.0, math.inf])
def test_privatize_rejects_bad_sensitivity(sensitivity):
    with pytest.raises(ValueError, match="sensitivity must be a positive finite number"):
        privatize(jax.random.key(0), jnp.zeros(3), sigma=1.0, sensitivity=sensitivity)
    with pytest.raises(ValueError, match="sensitivity is required"):
        privatize(jax.random.key(0), jnp.zeros(3), sigma=1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier must be a positive finite"),
        ({"noise_multiplier": math.nan}, "noise_multiplier must be a positive finite"),
        ({"noise_multiplier": 1.0, "count": 0}, "count must be an int >= 1"),
        ({"noise_multiplier": 1.0, "count": 2.5}, "count must be an int >= 1"),
        ({"noise_multiplier": 1.0, "name": ""}, "name must be a non-empty str"),
    ],
)
def test_release_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianRelease(**kwargs)


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, math.nan])
def test_rejects_bad_delta(delta):
    with pytest.raises(ValueError, match="delta must be"):
        epsilon([GaussianRelease(1.0)], delta=delta)
    with pytest.raises(ValueError, match="delta must be"):
        calibrate_sigma(1.0, delta=delta)


@pytest.mark.parametrize("target", [0.0, -0.5, math.inf, math.nan])
def test_calibrate_rejects_bad_epsilon(target):
    with pytest.raises(ValueError, match="target_epsilon must be a positive finite"):
        calibrate_sigma(target, delta=DELTA)


def test_rejects_bad_accountant_and_count():
    with pytest.raises(ValueError, match="accountant must be one of"):
        epsilon([GaussianRelease(1.0)], delta=DELTA, accountant="moments")
    with pytest.raises(ValueError, match="accountant must be one of"):
        calibrate_sigma(1.0, delta=DELTA, accountant="zcdp")
    with pytest.raises(ValueError, match="count must be an int >= 1"):
        calibrate_sigma(1.0, delta=DELTA, count=0)
    with pytest.raises(TypeError, match="GaussianRelease"):
        epsilon([1.0], delta=DELTA)


def test_pld_refuses_tiny_noise_instead_of_exhausting_memory():
    with pytest.raises(ValueError, match="use accountant='rdp'"):
        epsilon(GaussianRelease(0.05), delta=DELTA, accountant="pld")
    with pytest.raises(ValueError, match="use accountant='rdp'"):
        calibrate_sigma(500.0, delta=DELTA, accountant="pld")
    assert epsilon(GaussianRelease(0.05), delta=DELTA, accountant="rdp") > 100
