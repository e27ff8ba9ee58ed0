"""The exact privacy of the Poisson-subsampled discrete Gaussian, against closed forms,
brute force on the two-dimensional lattice and dp-accounting's own mechanisms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import special

from ecos_jax import privacy, sampled_discrete_gaussian
from ecos_jax.privacy import SubsampledDiscreteGaussianRelease

ORDERS = np.asarray(privacy.RDP_ORDERS)
INTEGER = ORDERS == np.round(ORDERS)


@pytest.mark.parametrize("scale", [0.8, 3.0, 25.0])
@pytest.mark.parametrize("coordinates", [1, 2])
def test_unsampled_equals_the_closed_form_at_integer_orders(scale, coordinates):
    # D_α(N_Z(0,s²) ‖ N_Z(1,s²)) = α/2s² exactly at integer α (Canonne et al. 2020), per
    # shifted coordinate; at other orders the theta function makes it smaller.
    rdp = sampled_discrete_gaussian.renyi_divergence(scale, 1.0, coordinates, ORDERS)
    closed = coordinates * ORDERS / (2 * scale**2)
    np.testing.assert_allclose(rdp[INTEGER], closed[INTEGER], rtol=1e-8)
    assert np.all(rdp <= closed * (1 + 1e-8) + 1e-12)


def _brute_force_rdp(scale, rate, coordinates, orders):
    """Both orders of the mixture pair on Z^c, summed over the whole lattice."""
    half = int(40 * scale) + 2 * int(max(orders)) + 8
    x = np.arange(-half, half + 1, dtype=np.float64)
    log_p1 = -(x**2) / (2 * scale**2)
    log_p1 -= special.logsumexp(log_p1)
    if coordinates == 1:
        log_p = log_p1
        log_q = np.concatenate([[-np.inf], log_p1[:-1]])
    else:
        log_p = log_p1[:, None] + log_p1[None, :]
        shifted_up = np.concatenate([[-np.inf], log_p1[:-1]])
        shifted_down = np.concatenate([log_p1[1:], [-np.inf]])
        log_q = shifted_up[:, None] + shifted_down[None, :]  # +1 on one bin, −1 on the other
    log_mu = np.logaddexp(math.log1p(-rate) + log_p, math.log(rate) + log_q)
    out = []
    for a in orders:
        forward = special.logsumexp(log_p + a * (log_mu - log_p))
        backward = special.logsumexp(log_mu + a * (log_p - log_mu))
        out.append(max(forward, backward) / (a - 1))
    return np.asarray(out)


@pytest.mark.parametrize(
    ("scale", "rate", "coordinates"), [(1.5, 0.3, 1), (1.5, 0.3, 2), (2.0, 0.05, 2)]
)
def test_matches_brute_force_on_the_lattice(scale, rate, coordinates):
    orders = np.array([1.5, 2.0, 3.0, 7.5, 16.0, 40.0])
    exact = sampled_discrete_gaussian.renyi_divergence(scale, rate, coordinates, orders)
    brute = _brute_force_rdp(scale, rate, coordinates, orders)
    np.testing.assert_allclose(exact, brute, rtol=1e-7, atol=1e-12)
    assert np.all(exact >= brute)  # padded up, never below


def test_both_orders_of_the_pair_are_taken():
    # At large orders the backward divergence D(P‖μ) of a heavily subsampled release stays
    # bounded by log(1/(1-γ))-like terms while the forward one grows; at small orders with
    # γ near 1 the backward one is the larger: the result must dominate both everywhere.
    scale, rate, orders = 1.0, 0.9, np.array([1.1, 1.5, 2.0, 5.0])
    _, log_p, log_mu = sampled_discrete_gaussian.log_pmf_pair(scale, rate, 1, extra=20)
    for a, value in zip(
        orders, sampled_discrete_gaussian.renyi_divergence(scale, rate, 1, orders), strict=False
    ):
        back = special.logsumexp(log_mu + a * (log_p - log_mu)) / (a - 1)
        fwd = special.logsumexp(log_p + a * (log_mu - log_p)) / (a - 1)
        assert value >= max(back, fwd)


@pytest.mark.parametrize(
    ("scale", "rate", "coordinates"),
    [(75.0, 0.15, 1), (25.0, 0.15, 2), (3.0, 0.3, 1), (2.0, 0.3, 2)],
)
def test_never_above_the_continuous_subsampled_gaussian_at_integer_orders(scale, rate, coordinates):
    # dp-accounting's PoissonSampledDpEvent(γ, GaussianDpEvent(s/√c)), the event, is
    # the continuous analogue: the discrete curve is within its float pad of it or below,
    # and close (the two differ by the theta function only).
    noise_multiplier = scale / math.sqrt(coordinates)
    continuous = rdp_privacy_accountant._compute_rdp_poisson_subsampled_gaussian(
        rate, noise_multiplier, ORDERS
    )
    exact = sampled_discrete_gaussian.renyi_divergence(scale, rate, coordinates, ORDERS)
    ok = INTEGER & np.isfinite(continuous) & (ORDERS <= 256)
    assert np.all(exact[ok] <= continuous[ok] * (1 + 1e-7) + 1e-12)
    assert np.all(exact[ok] >= 0.9 * continuous[ok])


def test_release_rdp_epsilon_matches_the_continuous_event_for_large_scales():
    release = SubsampledDiscreteGaussianRelease(25.0, 0.15, count=1000, coordinates=2)
    acc = rdp_privacy_accountant.RdpAccountant(neighboring_relation=privacy.NEIGHBORING_RELATION)
    acc.compose(release.dp_event())
    exact = privacy.epsilon(release, delta=1e-5)
    assert exact <= acc.get_epsilon(1e-5) * (1 + 1e-6)
    assert exact == pytest.approx(acc.get_epsilon(1e-5), rel=1e-3)


@pytest.mark.parametrize(("scale", "rate", "count"), [(4.0, 0.2, 1), (10.0, 0.15, 50)])
def test_screen_pld_equals_dp_accountings_subsampled_discrete_gaussian(scale, rate, count):
    # For one count moving by 1, dp-accounting has the same mechanism built in.
    ours = SubsampledDiscreteGaussianRelease(scale, rate, count=count, coordinates=1).pld()
    theirs = privacy_loss_distribution.from_discrete_gaussian_mechanism(
        scale,
        sensitivity=1,
        sampling_prob=rate,
        value_discretization_interval=privacy.PLD_DISCRETIZATION,
    )
    theirs = theirs if count == 1 else theirs.self_compose(count)
    for delta in (1e-3, 1e-5):
        assert ours.get_epsilon_for_delta(delta) == pytest.approx(
            theirs.get_epsilon_for_delta(delta), rel=2e-3, abs=1e-4
        )


def test_histogram_pld_bounds_the_exact_hockey_stick_on_the_lattice():
    # δ(ε) of one release, computed by brute force over Z², both orders, is never above the
    # pessimistic PLD's figure, and close to it.
    scale, rate = 1.5, 0.3
    pld = SubsampledDiscreteGaussianRelease(scale, rate, coordinates=2).pld()
    half = int(40 * scale) + 4
    x = np.arange(-half, half + 1, dtype=np.float64)
    log_p1 = -(x**2) / (2 * scale**2)
    log_p1 -= special.logsumexp(log_p1)
    p = np.exp(log_p1[:, None] + log_p1[None, :])
    up = np.exp(np.concatenate([[-np.inf], log_p1[:-1]]))
    down = np.exp(np.concatenate([log_p1[1:], [-np.inf]]))
    q = up[:, None] * down[None, :]
    mu = (1 - rate) * p + rate * q
    for eps in (0.0, 0.2, 0.5, 1.0):
        exact = max(
            np.sum(np.maximum(mu - math.exp(eps) * p, 0)),
            np.sum(np.maximum(p - math.exp(eps) * mu, 0)),
        )
        reported = pld.get_delta_for_epsilon(eps)
        assert reported >= exact - 1e-12
        assert reported <= exact + 1e-3


def test_subsampling_amplifies_and_the_rate_matters():
    # A test that would pass with γ silently ignored is no test: the figures move with γ.
    full = privacy.epsilon(SubsampledDiscreteGaussianRelease(5.0, 1.0, count=100), delta=1e-5)
    half = privacy.epsilon(SubsampledDiscreteGaussianRelease(5.0, 0.5, count=100), delta=1e-5)
    tenth = privacy.epsilon(SubsampledDiscreteGaussianRelease(5.0, 0.1, count=100), delta=1e-5)
    assert tenth < half < full
    assert full == pytest.approx(
        privacy.epsilon(privacy.DiscreteGaussianRelease(5.0, count=100), delta=1e-5), rel=1e-6
    )


def test_ledger_composes_both_kinds_and_reports_them():
    ledger = privacy.PrivacyLedger([privacy.DiscreteGaussianRelease(6.68, name="ecos_scores")])
    ledger.record(
        SubsampledDiscreteGaussianRelease(30.0, 0.2, count=300, coordinates=1, name="screen")
    )
    ledger.record(
        SubsampledDiscreteGaussianRelease(10.0, 0.2, count=300, coordinates=2, name="answer")
    )
    eps = ledger.epsilons(delta=1e-5)
    assert eps["pld"] <= eps["rdp"]
    assert eps["rdp"] > privacy.epsilon(ledger.releases[:2], delta=1e-5)
    kinds = [r["kind"] for r in ledger.summary(delta=1e-5)["releases"]]
    assert kinds == ["DiscreteGaussianRelease", *["SubsampledDiscreteGaussianRelease"] * 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(scale=0.0, sampling_rate=0.1), "scale"),
        (dict(scale=1.0, sampling_rate=0.0), "sampling_rate"),
        (dict(scale=1.0, sampling_rate=1.5), "sampling_rate"),
        (dict(scale=1.0, sampling_rate=0.1, coordinates=3), "coordinates"),
        (dict(scale=1.0, sampling_rate=0.1, count=0), "count"),
    ],
)
def test_release_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubsampledDiscreteGaussianRelease(**kwargs)
