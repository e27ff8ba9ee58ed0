"""Poisson subsampling: independent inclusions at the stated rate, from a named source.

The statistical checks use bounds of about 5 standard deviations (or p > 1e-6), so a
correct sampler fails them with probability of order 1e-6; a fixed-size or
with-replacement sampler, or a rate off by 10%, fails them surely.
"""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from ecos_jax import noise, subsampling

SOURCES = {
    "secure": lambda: noise.secure(),
    "simulation": lambda: noise.simulation(jax.random.key(7)),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("rate", [0.05, 0.15, 0.5])
def test_inclusions_are_independent_bernoulli_at_the_rate(source, rate):
    q, n = 2000, 600
    masks, used = subsampling.poisson_masks(
        num_queries=q, num_rows=n, rate=rate, randomness=SOURCES[source]()
    )
    assert masks.shape == (q, n) and masks.dtype == bool and used >= rate
    # The marginal rate over Q·N entries.
    total = q * n
    assert abs(masks.sum() - total * rate) < 5 * math.sqrt(total * rate * (1 - rate))
    # Subsample sizes are Binomial(N, γ): random, not fixed (chi-square on binned sizes).
    sizes = masks.sum(axis=1)
    # Bin b holds the sizes in (edges[b-1], edges[b]]: expected q·(F(edges[b]) - F(edges[b-1])).
    edges = np.unique(stats.binom.ppf(np.linspace(0, 1, 11)[1:-1], n, rate))
    observed = np.bincount(np.searchsorted(edges, sizes, side="left"), minlength=len(edges) + 1)
    cdf = stats.binom.cdf(np.concatenate([edges, [n]]), n, rate)
    expected = q * np.diff(np.concatenate([[0.0], cdf]))
    assert stats.chisquare(observed, expected).pvalue > 1e-6
    assert sizes.var() > 0.5 * n * rate * (1 - rate)
    # Pairs of entries (neighbouring rows, neighbouring queries) are independent.
    for a, b in ((masks[:, :-1], masks[:, 1:]), (masks[:-1], masks[1:])):
        both = np.mean(a & b)
        m = a.size
        assert abs(both - rate**2) < 5 * math.sqrt(rate**2 * (1 - rate**2) / m)


def test_simulation_is_reproducible_and_keyed():
    def draw(seed):
        return subsampling.poisson_masks(
            num_queries=3, num_rows=100, rate=0.3, randomness=noise.simulation(jax.random.key(seed))
        )[0]

    np.testing.assert_array_equal(draw(1), draw(1))
    assert not np.array_equal(draw(1), draw(2))


def test_secure_draws_differ():
    a, _ = subsampling.poisson_masks(num_queries=4, num_rows=256, rate=0.5)
    b, _ = subsampling.poisson_masks(num_queries=4, num_rows=256, rate=0.5)
    assert not np.array_equal(a, b)


def test_rate_used_is_the_threshold_rounded_up():
    for rate in (0.15, 0.05, 1e-9, 0.3333333333333333):
        used = subsampling.poisson_rate(rate)
        assert used >= rate and used - rate < 1e-15
        assert used * 2**64 >= subsampling.poisson_threshold(rate) - 1e-3
    masks, used = subsampling.poisson_masks(num_queries=2, num_rows=10, rate=0.0)
    assert not masks.any() and used == 0.0
    masks, used = subsampling.poisson_masks(num_queries=2, num_rows=10, rate=1.0)
    assert masks.all() and used == 1.0
    masks, _ = subsampling.poisson_masks(num_queries=2, num_rows=0, rate=0.5)
    assert masks.shape == (2, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 1.5}, r"rate must be in \[0, 1\]"),
        ({"rate": float("nan")}, "rate must be a finite number"),
        ({"rate": True}, "rate must be a finite number"),
        ({"num_queries": 0}, "num_queries must be >= 1"),
        ({"num_rows": -3}, "num_rows must be >= 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = {"num_queries": 2, "num_rows": 10, "rate": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        subsampling.poisson_masks(**args)
    assert "-3" not in str(err.value)  # the client's row count is never quoted


def test_bare_key_is_refused():
    with pytest.raises(TypeError, match="simulation"):
        subsampling.poisson_masks(num_queries=1, num_rows=4, rate=0.5, randomness=jax.random.key(0))
