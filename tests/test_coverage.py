"""Coverage scores against NumPy references, sensitivity properties and input checks."""

import math

import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import strategies as st
from references import distances, radius_counts, top_m_counts, voronoi_counts

from ecos_jax.coverage import (
    CoverageScores,
    coverage_scores,
    coverage_sensitivity,
    fast_vote_counts,
    radius_scores,
    resolve_votes,
    top_m_scores,
    voronoi_scores,
    votes_per_sample,
)

N, D, R = 37, 5, 7


def _data(seed=0, n=N, d=D, r=R):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    v = rng.normal(size=(r, d)).astype(np.float32)
    return x, v


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_voronoi_matches_numpy_argmin_bincount(metric):
    x, v = _data()
    s = voronoi_scores(x, v, metric=metric)
    assert isinstance(s, CoverageScores)
    assert s.counts.shape == (R,) and s.counts.dtype == np.int64
    np.testing.assert_array_equal(s.counts, voronoi_counts(x, v, metric))
    assert s.counts.sum() == N
    assert s.sensitivity == 1.0


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("m", [1, 3, R])
def test_top_m_matches_numpy(metric, m):
    x, v = _data(1)
    s = top_m_scores(x, v, m=m, metric=metric)
    np.testing.assert_array_equal(np.asarray(s.counts), top_m_counts(x, v, m, metric))
    assert s.counts.sum() == N * m
    assert s.sensitivity == pytest.approx(math.sqrt(m))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("max_votes", [1, 2, R])
def test_radius_matches_numpy_with_cap(metric, max_votes):
    x, v = _data(2)
    rng = np.random.default_rng(3)
    dist = distances(x, v, metric)
    # Per-centroid radii between the 20% and 80% distance quantiles: many samples have
    # several qualifying centroids, so the cap binds.
    radii = rng.uniform(np.quantile(dist, 0.2), np.quantile(dist, 0.8), size=R).astype(np.float32)
    s = radius_scores(x, v, radii=radii, max_votes=max_votes, metric=metric)
    expected = radius_counts(x, v, radii, max_votes, metric)
    np.testing.assert_array_equal(np.asarray(s.counts), expected)
    assert s.sensitivity == pytest.approx(math.sqrt(max_votes))
    uncapped = radius_counts(x, v, radii, R, metric)
    if max_votes == 1:
        assert uncapped.sum() > expected.sum()  # The cap really removed votes here.


def test_radius_scalar_radius_and_no_qualifying_centroid():
    x, v = _data(4)
    s = radius_scores(x, v, radii=2.5, max_votes=3)
    np.testing.assert_array_equal(np.asarray(s.counts), radius_counts(x, v, 2.5, 3))
    none = radius_scores(x, v, radii=0.0, max_votes=3)
    np.testing.assert_array_equal(np.asarray(none.counts), np.zeros(R))


def _methods(*, m, radii):
    """(method, kwargs) cases for the three methods, with ids."""
    cases = [("voronoi", {}), ("top_m", {"m": m}), ("radius", {"radii": radii, "max_votes": 2})]
    return [pytest.param(method, kwargs, id=method) for method, kwargs in cases]


@pytest.mark.parametrize("method, kwargs", _methods(m=2, radii=2.0))
def test_mask_drops_rows(method, kwargs):
    x, v = _data(5)
    mask = np.random.default_rng(6).random(N) < 0.6
    masked = coverage_scores(x, v, method=method, mask=mask, **kwargs)
    subset = coverage_scores(x[mask], v, method=method, **kwargs)
    np.testing.assert_array_equal(np.asarray(masked.counts), np.asarray(subset.counts))
    nothing = coverage_scores(x, v, method=method, mask=np.zeros(N, bool), **kwargs)
    np.testing.assert_array_equal(np.asarray(nothing.counts), np.zeros(R))


@pytest.mark.parametrize("method, kwargs", _methods(m=3, radii=2.2))
def test_counts_do_not_depend_on_chunk_size(method, kwargs):
    x, v = _data(7)
    results = [
        np.asarray(coverage_scores(x, v, method=method, chunk_size=c, **kwargs).counts)
        for c in (1, 5, 16, 4096)
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_dispatcher_matches_direct_calls():
    x, v = _data(8)
    np.testing.assert_array_equal(coverage_scores(x, v).counts, voronoi_scores(x, v).counts)
    np.testing.assert_array_equal(
        coverage_scores(x, v, method="top_m", m=2).counts, top_m_scores(x, v, m=2).counts
    )


def test_empty_client_gives_zero_counts():
    _, v = _data()
    s = voronoi_scores(np.zeros((0, D), np.float32), v)
    np.testing.assert_array_equal(np.asarray(s.counts), np.zeros(R))


def test_sharded_use_of_the_fast_kernel_equals_full():
    """Row blocks padded to equal size, masked, counted under jit and summed (as psum), the
    ambiguous rows decided on the host."""
    x, v = _data(9)
    full = top_m_scores(x, v, m=2).counts
    block = 20
    x_pad = np.concatenate([x, np.zeros((2 * block - N, D), np.float32)])
    valid = np.arange(2 * block) < N
    counts_fn = jax.jit(lambda xb, mb: fast_vote_counts(xb, v, mb, method="top_m", m=2))
    total = np.zeros(R, np.int64)
    for i in range(2):
        rows = slice(i * block, (i + 1) * block)
        fast = counts_fn(x_pad[rows], valid[rows])
        total += np.asarray(fast.counts)
        undecided = x_pad[rows][np.asarray(fast.ambiguous)]
        total += resolve_votes(undecided, v, method="top_m", m=2)
    np.testing.assert_array_equal(total, full)


def test_no_recompile_for_new_data_or_radii():
    x, v = _data(10)
    radius_scores(x, v, radii=1.0, max_votes=2)
    before = fast_vote_counts._cache_size()
    x2, v2 = _data(11)
    radius_scores(x2, v2, radii=1.5, max_votes=2)
    radius_scores(x2, v2, radii=np.full(R, 2.0, np.float32), max_votes=2)
    # A scalar and an [R] radius are two input shapes: at most one more entry.
    assert fast_vote_counts._cache_size() <= before + 1


def test_sensitivity_helper():
    assert coverage_sensitivity("voronoi") == 1.0
    assert coverage_sensitivity("top_m", m=9) == 3.0
    assert coverage_sensitivity("radius", max_votes=4) == 2.0
    assert votes_per_sample("top_m", m=9) == 9
    with pytest.raises(ValueError, match="method"):
        coverage_sensitivity("knn")


@pytest.mark.parametrize(
    "method, kwargs, match",
    [
        ("top_m", {}, "needs m"),
        ("top_m", {"m": 0}, "m must satisfy"),
        ("top_m", {"m": 2.5}, "m must be an int"),
        ("top_m", {"m": True}, "m must be an int"),
        ("top_m", {"m": 2, "max_votes": 2}, "max_votes applies to method='radius'"),
        ("radius", {}, "needs max_votes"),
        ("radius", {"max_votes": -1}, "max_votes must satisfy"),
        ("radius", {"max_votes": "3"}, "max_votes must be an int"),
        ("radius", {"max_votes": 2, "m": 2}, "m applies to method='top_m'"),
        ("voronoi", {"m": 2}, "takes neither"),
    ],
)
def test_sensitivity_helper_validates_m_and_max_votes(method, kwargs, match):
    with pytest.raises(ValueError, match=match):
        coverage_sensitivity(method, **kwargs)


# Add/remove one client sample: the L2 change of the counts is bounded by the sensitivity.

_NH, _DH, _RH = 8, 2, 5
_coords = st.floats(-3.0, 3.0, width=32, allow_nan=False, allow_infinity=False)
_VARIANTS = [
    ("voronoi", "l2", {}),
    ("voronoi", "cosine", {}),
    ("top_m", "l2", {"m": 2}),
    ("top_m", "cosine", {"m": 3}),
    ("radius", "l2", {"max_votes": 2}),
    ("radius", "cosine", {"max_votes": 1}),
]


@pytest.mark.parametrize("method, metric, kwargs", _VARIANTS)
@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(
    x=hnp.arrays(np.float32, (_NH, _DH), elements=_coords),
    v=hnp.arrays(np.float32, (_RH, _DH), elements=_coords),
    extra=hnp.arrays(np.float32, (1, _DH), elements=_coords),
    radii=hnp.arrays(np.float32, (_RH,), elements=st.floats(0.0, 4.0, width=32)),
    remove=st.integers(0, _NH - 1),
    insert=st.integers(0, _NH),
)
def test_add_or_remove_one_sample_moves_counts_by_at_most_sensitivity(
    method, metric, kwargs, x, v, extra, radii, remove, insert
):
    if method == "radius":
        kwargs = {**kwargs, "radii": radii}
    score = lambda f: coverage_scores(f, v, method=method, metric=metric, **kwargs)
    base = score(x)
    neighbours = [np.delete(x, remove, axis=0), np.insert(x, insert, extra[0], axis=0)]
    for other in neighbours:
        change = np.linalg.norm(score(other).counts - base.counts)
        assert change <= base.sensitivity
        if method != "radius":  # Every sample casts exactly its votes: the bound is tight.
            assert change == pytest.approx(base.sensitivity)
    # The same through the mask (how padded shards drop rows).
    mask = np.ones(_NH, bool)
    mask[remove] = False
    masked = coverage_scores(x, v, method=method, metric=metric, mask=mask, **kwargs)
    change = np.linalg.norm(masked.counts - base.counts)
    assert change <= base.sensitivity


# Input validation.


@pytest.mark.parametrize(
    "reshape, match",
    [
        pytest.param(lambda x, v: (x[0], v), "features_MxD must be a 2-D", id="1d_features"),
        pytest.param(lambda x, v: (x, v[None]), "centroids_RxD must be a 2-D", id="3d_centroids"),
        pytest.param(lambda x, v: (x, v[:, :3]), "feature dims", id="mismatched_dims"),
        pytest.param(lambda x, v: (x, v[:0]), "at least one centroid", id="no_centroids"),
    ],
)
def test_rejects_wrong_rank_and_mismatched_dims(reshape, match):
    with pytest.raises(ValueError, match=match):
        voronoi_scores(*reshape(*_data()))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "argument, cell, score",
    [
        pytest.param("features_MxD", (3, 1), voronoi_scores, id="features"),
        pytest.param("centroids_RxD", (0, 0), lambda x, v: top_m_scores(x, v, m=2), id="centroids"),
    ],
)
def test_rejects_non_finite_inputs_naming_the_argument(argument, cell, score, bad):
    x, v = _data()
    (x if argument == "features_MxD" else v)[cell] = bad
    with pytest.raises(ValueError, match=f"{argument} contains NaN, inf"):
        score(x, v)


@pytest.mark.parametrize("m", [0, -1, R + 1, 2.5, True])
def test_rejects_bad_m(m):
    x, v = _data()
    with pytest.raises(ValueError, match="m must"):
        top_m_scores(x, v, m=m)


@pytest.mark.parametrize(
    "radii, max_votes, match",
    [
        pytest.param(1.0, 0, "max_votes must", id="no_votes"),
        pytest.param(1.0, R + 1, "max_votes must", id="more_votes_than_centroids"),
        pytest.param(np.ones(R + 1), 1, "radii must be a scalar or have shape", id="radii_shape"),
        pytest.param(-1.0, 1, "radii must be finite and >= 0", id="negative_radius"),
        pytest.param(np.full(R, np.nan), 1, "radii must be finite and >= 0", id="nan_radii"),
    ],
)
def test_rejects_bad_radius_arguments(radii, max_votes, match):
    x, v = _data()
    with pytest.raises(ValueError, match=match):
        radius_scores(x, v, radii=radii, max_votes=max_votes)


@pytest.mark.parametrize(
    "score, kwargs, match",
    [
        (voronoi_scores, {"mask": np.ones(N + 1, bool)}, "one entry per row"),
        (voronoi_scores, {"mask": np.ones(N)}, "mask must be a bool"),
        (coverage_scores, {"method": "kmeans"}, "method must be one of"),
        (voronoi_scores, {"metric": "manhattan"}, "metric must be"),
        (voronoi_scores, {"chunk_size": 0}, "chunk_size"),
        (fast_vote_counts, {"method": "top_m"}, "method='top_m' needs m"),
        (fast_vote_counts, {"method": "voronoi", "m": 2}, "takes neither m nor max_votes"),
    ],
    ids=["mask_length", "mask_dtype", "method", "metric", "chunk", "fast_top_m", "fast_voronoi_m"],
)
def test_rejects_bad_mask_method_metric_chunk(score, kwargs, match):
    x, v = _data()
    with pytest.raises(ValueError, match=match):
        score(x, v, **kwargs)


def test_rejects_complex_features():
    x, v = _data()
    with pytest.raises(ValueError, match="must hold real numbers"):
        voronoi_scores(x.astype(np.complex64), v)


def test_integer_features_are_accepted():
    x = np.array([[0, 0], [9, 9], [1, 0]], np.int32)
    v = np.array([[0.0, 0.0], [10.0, 10.0]], np.float32)
    np.testing.assert_array_equal(voronoi_scores(x, v).counts, [2, 1])


@pytest.mark.parametrize(
    "reshape, forbidden",
    [
        pytest.param(lambda x: x, ("1234",), id="nan"),
        pytest.param(lambda x: x[0], ("1234", "(5,)"), id="1d"),
        pytest.param(lambda x: x[:, None], ("1234",), id="3d"),
    ],
)
def test_messages_about_the_client_features_reveal_no_value_and_no_row_count(reshape, forbidden):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1234, D)).astype(np.float32)
    _, v = _data()
    x[17, 2] = np.nan
    with pytest.raises(ValueError) as info:
        voronoi_scores(reshape(x), v)
    for text in forbidden:
        assert text not in str(info.value), text


def test_int64_features_that_would_wrap_in_int32_are_refused():
    _, v = _data()
    x = np.zeros((4, D), np.int64)
    x[1, 1] = 2**40 + 3
    with pytest.raises(ValueError, match="int32 range") as info:
        voronoi_scores(x, v)
    assert str(2**40 + 3) not in str(info.value)
    # In range, int64 is fine.
    assert voronoi_scores(x.clip(-5, 5), v).counts.sum() == 4


def test_features_beyond_float32_distances_are_refused():
    x, v = _data()
    x = x.astype(np.float64)
    x[0, 0] = 1e30
    with pytest.raises(ValueError, match="rescale"):
        voronoi_scores(x, v)
