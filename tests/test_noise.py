"""The discrete Gaussian samplers against the exact pmf and each other, and their contract."""

import jax
import numpy as np
import pytest
import scipy.stats

from ecos_jax import noise


def _chi2_p_value(samples: np.ndarray, scale: float) -> float:
    """Chi-square goodness of fit of integer samples to N_Z(0, scale²), tails pooled."""
    edge = max(2, int(4 * scale))
    values = np.arange(-edge, edge + 1)
    expected = noise.discrete_gaussian_pmf(values, scale) * samples.size
    observed = np.array([np.sum(samples == v) for v in values], np.float64)
    # Pool both tails into one cell so every cell's expectation is large.
    tail_obs = samples.size - observed.sum()
    tail_exp = samples.size - expected.sum()
    observed, expected = np.append(observed, tail_obs), np.append(expected, tail_exp)
    return float(scipy.stats.chisquare(observed, expected).pvalue)


@pytest.mark.parametrize("scale", [0.7, 2.0, 6.684, 40.0])
def test_simulation_matches_the_exact_pmf(scale):
    samples = noise.add_discrete_gaussian(
        np.zeros(200_000, np.int64), scale=scale, randomness=noise.simulation(jax.random.key(1))
    )
    assert samples.dtype == np.int64
    assert _chi2_p_value(samples, scale) > 1e-3
    # The variance of N_Z(0, s²) is just below s² (equal up to e^{-2π²s²} for s >= 1).
    exact_var = float(
        np.sum(np.arange(-400, 401) ** 2 * noise.discrete_gaussian_pmf(np.arange(-400, 401), scale))
    )
    assert np.var(samples) == pytest.approx(exact_var, rel=0.02)


def test_secure_source_matches_the_exact_pmf_and_the_simulation():
    scale = 6.684
    secure = noise.add_discrete_gaussian(np.zeros(100_000, np.int64), scale=scale)
    assert secure.dtype == np.int64
    assert _chi2_p_value(secure, scale) > 1e-3
    simulated = noise.add_discrete_gaussian(
        np.zeros(100_000, np.int64), scale=scale, randomness=noise.simulation(jax.random.key(2))
    )
    # Two-sample test: the deployed and the simulated noise are one distribution.
    assert scipy.stats.ks_2samp(secure, simulated).pvalue > 1e-3


def test_noise_does_not_depend_on_the_counts():
    """The release is an exact shift: with one key, output − counts is the same vector for
    any counts (no float lattice), including counts beyond float32's 2**24."""
    key = jax.random.key(3)
    counts_a = np.array([0, 3, 4, 2**24 + 1, 2**40 + 7])
    counts_b = np.array([5, 4, 3, 0, 1])
    a = noise.add_discrete_gaussian(counts_a, scale=6.684, randomness=noise.simulation(key))
    b = noise.add_discrete_gaussian(counts_b, scale=6.684, randomness=noise.simulation(key))
    np.testing.assert_array_equal(a - counts_a, b - counts_b)


def test_simulation_is_reproducible_and_keys_matter():
    counts = np.arange(50)
    draw = lambda k: noise.add_discrete_gaussian(counts, scale=3.0, randomness=noise.simulation(k))
    np.testing.assert_array_equal(draw(jax.random.key(0)), draw(jax.random.key(0)))
    assert not np.array_equal(draw(jax.random.key(0)), draw(jax.random.key(1)))


def test_secure_source_is_not_reproducible():
    counts = np.zeros(64, np.int64)
    a = noise.add_discrete_gaussian(counts, scale=3.0, randomness=noise.secure())
    b = noise.add_discrete_gaussian(counts, scale=3.0)  # None is secure
    assert not np.array_equal(a, b)


def test_num_draws_stacks_independent_releases():
    counts = np.array([[1, 2], [3, 4]])
    out = noise.add_discrete_gaussian(
        counts, scale=1.0, randomness=noise.simulation(jax.random.key(0)), num_draws=5
    )
    assert out.shape == (5, 2, 2)
    assert len({tuple(o.ravel()) for o in out}) > 1
    secure = noise.add_discrete_gaussian(counts, scale=1.0, num_draws=3)
    assert secure.shape == (3, 2, 2)


@pytest.mark.parametrize("scale", [0.05, 0.3, 1.0, 6.684, 90.0])
def test_table_tail_and_total_variation_bounds(scale):
    table = noise.discrete_gaussian_table(scale)
    assert table.tail < 2.0**-80
    assert np.all(np.diff(table.thresholds.astype(np.float64)) >= 0)
    # The tabulated cell masses are the exact pmf to 64-bit fixed point.
    cells = np.diff(np.concatenate([[0], table.thresholds.astype(object), [2**64]]))
    probs = np.array([float(c) for c in cells]) / 2.0**64
    values = np.arange(-table.bound, table.bound + 1)
    np.testing.assert_allclose(probs, noise.discrete_gaussian_pmf(values, scale), atol=1e-15)
    assert noise.simulation_tv_bound(scale) < 1e-14


def test_pmf_is_normalised_and_symmetric():
    z = np.arange(-200, 201)
    p = noise.discrete_gaussian_pmf(z, 5.0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(p, p[::-1])


@pytest.mark.parametrize(
    "counts, match",
    [
        (np.array([1.0, 2.0]), "integer array"),
        (np.array([True, False]), "integer array"),
        (np.array([2**53]), "exceed"),
    ],
)
def test_bad_counts_are_refused_without_their_values(counts, match):
    with pytest.raises(ValueError, match=match) as info:
        noise.add_discrete_gaussian(counts, scale=1.0)
    assert "9007199254740992" not in str(info.value)


@pytest.mark.parametrize(
    "call, match",
    [
        pytest.param(
            lambda: noise.add_discrete_gaussian(
                np.array([1]), scale=1.0, randomness=jax.random.key(0)
            ),
            r"simulation\(key\)",
            id="bare_key_as_randomness",
        ),
        pytest.param(lambda: noise.simulation(0), r"jax.random.key\(seed\)", id="int_seed"),
        pytest.param(
            lambda: noise.simulation(jax.random.split(jax.random.key(0), 2)),
            "single key",
            id="array_of_keys",
        ),
    ],
)
def test_keyed_noise_must_be_asked_for_by_name(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), True])
def test_bad_scale_is_refused(scale):
    with pytest.raises(ValueError, match="scale"):
        noise.add_discrete_gaussian(np.array([1]), scale=scale)


def test_randomness_names_are_recorded():
    assert noise.secure().name == "secure"
    assert noise.simulation(jax.random.key(0)).name == "simulation"
    assert set(noise.RANDOMNESS_NAMES) == {"secure", "simulation"}
