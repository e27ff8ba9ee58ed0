"""The certified selection of `ecos_jax.canonical` against brute force on the exact values."""

import hypothesis
import hypothesis.extra.numpy as hnp
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st
from references import distances, nearest, squared_distances

from ecos_jax import canonical


def _brute_force(exact, num_votes, thresholds):
    order = np.lexsort((np.arange(exact.size), exact))
    if thresholds is not None:
        order = order[exact[order] <= thresholds[order]]
    return np.sort(order[:num_votes])


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
@hypothesis.given(
    exact=hnp.arrays(np.float64, st.integers(1, 12), elements=st.integers(0, 6).map(float)),
    wiggle=st.data(),
    num_votes=st.integers(1, 5),
    err=st.sampled_from([0.0, 0.4, 1.0, 2.5]),
    use_thresholds=st.booleans(),
)
def test_certified_top_equals_the_canonical_choice_whatever_the_approximation(
    exact, wiggle, num_votes, err, use_thresholds
):
    """Any approximation within `err` of the exact values gives the exact choice (ties to
    the lower index), and exact values are computed only where needed."""
    n = exact.size
    num_votes = min(num_votes, n)
    noise = wiggle.draw(hnp.arrays(np.float64, n, elements=st.floats(-err, err)))
    thresholds = None
    if use_thresholds:
        thresholds = wiggle.draw(hnp.arrays(np.float64, n, elements=st.integers(0, 6).map(float)))
    asked = []

    def value(j):
        asked.append(j)
        return exact[j]

    got = canonical._certified_top(exact + noise, err, num_votes, thresholds, value)
    np.testing.assert_array_equal(got, _brute_force(exact, num_votes, thresholds))
    if err == 0.0 and np.unique(exact).size == n and thresholds is None:
        assert not asked  # distinct values, exact approximation: nothing to recompute


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_resolve_rows_agrees_with_the_fast_path_where_float32_decides(metric):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 24)).astype(np.float32)
    v = rng.normal(size=(9, 24)).astype(np.float32)
    d, err = canonical.fast_distances(jnp.asarray(x), jnp.asarray(v), metric=metric)
    idx, _, ambiguous = canonical.certified_votes(d, err, num_votes=2)
    resolved = canonical.resolve_rows(x, v, num_votes=2, metric=metric)
    for row in np.flatnonzero(~np.asarray(ambiguous)):
        np.testing.assert_array_equal(resolved[row], np.sort(np.asarray(idx)[row]))
    # And both are the float64 reference ranking (no near-ties in random data at 1e-9).
    np.testing.assert_array_equal(resolved, np.sort(nearest(distances(x, v, metric), 2), axis=1))


def test_the_rounding_margin_covers_the_float32_error():
    """The per-row bound is above the float32 error of the distances, measured against
    float64, by a wide factor (and it is what flags rows)."""
    rng = np.random.default_rng(1)
    x = (100 * rng.normal(size=(2000, 64))).astype(np.float32)
    v = (100 * rng.normal(size=(20, 64))).astype(np.float32)
    d, err = canonical.fast_distances(jnp.asarray(x), jnp.asarray(v), metric="l2")
    exact = squared_distances(x, v)
    observed = np.abs(np.asarray(d, np.float64) - exact).max(axis=1)
    assert np.all(observed <= np.asarray(err))
