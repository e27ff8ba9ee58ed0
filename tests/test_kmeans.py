"""KMeans against scikit-learn, plus its invariants and input errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from references import blobs, lloyd_update, squared_distances
from sklearn.cluster import KMeans

from ecos_jax import kmeans as km


@pytest.mark.parametrize(
    ("n", "d", "k", "chunk"), [(500, 2, 3, 64), (3000, 16, 25, 512), (2048, 64, 50, 2048)]
)
def test_inertia_matches_sklearn_from_same_init(n, d, k, chunk):
    x = blobs(n + d, n=n, dim=d, num_blobs=k, spread=3.0).points
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(0), jnp.asarray(x), k=k))
    ours = km.kmeans(None, jnp.asarray(x), k=k, num_iters=100, tol=0.0, init=init, chunk_size=chunk)
    ref = KMeans(k, init=init, n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(float(ours.inertia), ref.inertia_, rtol=1e-4)
    # The returned assignments are those of the returned centroids.
    a, d2 = km.assign_to_centroids(jnp.asarray(x), ours.centroids)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(ours.assignments))
    np.testing.assert_allclose(float(d2.sum()), float(ours.inertia), rtol=1e-4)


def test_assign_matches_numpy_argmin_and_is_chunk_invariant():
    x = blobs(1, n=1000, dim=8, num_blobs=10, spread=3.0).points
    c = x[:37]
    d2 = squared_distances(x, c)
    for chunk in (1, 7, 128, 1000, 5000):
        a, dist = km.assign_to_centroids(jnp.asarray(x), jnp.asarray(c), chunk_size=chunk)
        np.testing.assert_array_equal(np.asarray(a), d2.argmin(1))
        np.testing.assert_allclose(np.asarray(dist), d2.min(1), rtol=1e-4, atol=1e-3)


def test_ties_go_to_the_lowest_index():
    c = jnp.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    a, _ = km.assign_to_centroids(jnp.zeros((3, 2)), c)
    assert a.tolist() == [0, 0, 0]


def test_inertia_never_rises():
    x = blobs(2, n=4000, dim=10, num_blobs=30, spread=1.0).points
    res = km.kmeans(jax.random.key(3), jnp.asarray(x), k=30, num_iters=40, tol=0.0)
    hist = np.asarray(res.inertia_history)[: int(res.num_iters)]
    assert np.all(np.diff(hist) <= 1e-5 * hist[:-1])
    assert float(res.inertia) <= hist[-1] * (1 + 1e-5)


def _separated_blobs(num_blobs=5, per_blob=40):
    """Tight blobs 100 apart, rows sorted by blob (the first rows all lie in blob 0)."""
    rng = np.random.default_rng(12)
    centers = 100.0 * np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 0], [0, 2]][:num_blobs])
    labels = np.repeat(np.arange(num_blobs), per_blob)
    return (centers[labels] + 0.1 * rng.normal(size=(len(labels), 2))).astype(np.float32), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeding_puts_one_seed_in_every_separated_blob(seed):
    # D² sampling picks a point of an uncovered blob with probability about 1 - 1e-5 per
    # seed; seeding from the first k rows would put all of them in blob 0.
    x, labels = _separated_blobs()
    seeds = np.asarray(km.kmeans_plusplus_init(jax.random.key(seed), jnp.asarray(x), k=5))
    blob_of_seed = [labels[(x == row).all(1)][0] for row in seeds]
    assert sorted(blob_of_seed) == [0, 1, 2, 3, 4]
    # kmeans seeds the same way: one Lloyd update already recovers the blobs exactly.
    res = km.kmeans(jax.random.key(seed), jnp.asarray(x), k=5, num_iters=1, tol=0.0)
    contingency = np.zeros((5, 5), int)
    np.add.at(contingency, (labels, np.asarray(res.assignments)), 1)
    assert ((contingency > 0).sum(1) == 1).all() and ((contingency > 0).sum(0) == 1).all()


def test_seeding_draws_the_first_two_seeds_with_the_k_means_plus_plus_law():
    # With one trial per centre, seed 1 is drawn ∝ w and seed 2 ∝ w·D²(·, seed 1)
    # (Arthur & Vassilvitskii, 2007): a chi-square test of the joint law of the pair.
    x = np.array([[0.0], [1.0], [3.0], [4.0]], np.float32)
    w = np.array([1.0, 2.0, 1.0, 1.5])
    d2 = (x - x.T) ** 2
    p_first = w / w.sum()
    p_pair = p_first[:, None] * (w[None] * d2) / (w[None] * d2).sum(1, keepdims=True)
    num_draws = 2000
    counts = np.zeros((4, 4))
    for key in jax.random.split(jax.random.key(0), num_draws):
        seeds = km.kmeans_plusplus_init(
            key, jnp.asarray(x), k=2, weights=jnp.asarray(w, jnp.float32), num_local_trials=1
        )
        first, second = (int(np.flatnonzero(x[:, 0] == v)[0]) for v in np.asarray(seeds)[:, 0])
        counts[first, second] += 1
    off_diagonal = ~np.eye(4, dtype=bool)
    assert counts[~off_diagonal].sum() == 0  # a point is never its own second seed
    expected = num_draws * p_pair[off_diagonal]
    assert expected.min() >= 5  # the chi-square approximation holds
    assert scipy.stats.chisquare(counts[off_diagonal], expected).pvalue > 1e-3


@pytest.mark.parametrize("sample_size", [None, 12])
@pytest.mark.parametrize("seed", [0, 1])
def test_seeding_never_picks_a_zero_weight_point(sample_size, seed):
    # The zero-weight blob is far away: D² sampling that ignored the weights would pick it.
    x, labels = _separated_blobs(num_blobs=2, per_blob=20)
    w = (labels == 0).astype(np.float32)
    seeds = np.asarray(
        km.kmeans_plusplus_init(
            jax.random.key(seed),
            jnp.asarray(x),
            k=6,
            weights=jnp.asarray(w),
            sample_size=sample_size,
        )
    )
    assert all(w[(x == row).all(1)][0] == 1.0 for row in seeds)


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_seeds_with_kmeans_plus_plus_of_its_key_and_weights(weighted):
    x, labels = _separated_blobs(num_blobs=3, per_blob=30)
    w = jnp.asarray(labels != 1, jnp.float32) if weighted else None
    key = jax.random.key(7)
    init = km.kmeans_plusplus_init(key, jnp.asarray(x), k=3, weights=w)
    got = km.kmeans(key, jnp.asarray(x), k=3, num_iters=1, weights=w)
    ref = km.kmeans(None, jnp.asarray(x), k=3, num_iters=1, weights=w, init=init)
    np.testing.assert_array_equal(np.asarray(got.centroids), np.asarray(ref.centroids))


def _with_outliers(seed):
    """Blobs plus two planted outliers (rows -2, -1), far from everything and each other."""
    x = blobs(seed, n=300, dim=2, num_blobs=3, spread=3.0).points
    return np.concatenate([x, [[60.0, 55.0], [-45.0, -50.0]]]).astype(np.float32)


@pytest.mark.parametrize(
    "case", ["identical_init", "far_away_centroid", "zero_weight_outlier", "all_weight_zero"]
)
def test_empty_clusters_are_reseeded(case):
    # One Lloyd update (num_iters=1) so the loop cannot recover on its own: without the
    # re-seeding the empty clusters stay empty (or land on the origin, not a data point).
    x = _with_outliers(4)
    w = np.ones(len(x))
    if case == "identical_init":  # all points tie on centroid 0: clusters 1, 2 start empty
        init = np.repeat(x[:1], 3, axis=0)
    elif case == "far_away_centroid":  # centroid 2 is nearest to no point
        init = np.stack([x[0], x[1], [1e3, 1e3]])
    elif case == "zero_weight_outlier":  # the farthest point is not eligible
        init = np.repeat(x[:1], 3, axis=0)
        w[-2] = 0.0
    else:  # centroid 1 holds only zero-weight points: it counts as empty
        init = np.stack([x[0], x[-1], [1e3, 1e3]])
        w[-1] = 0.0
    init = init.astype(np.float32)
    expected, empty = lloyd_update(x, init, w)
    assert len(empty) >= 1  # the case does start with an empty cluster
    res = km.kmeans(
        None,
        jnp.asarray(x),
        k=3,
        num_iters=1,
        tol=0.0,
        init=init,
        weights=jnp.asarray(w, jnp.float32),
    )
    got = np.asarray(res.centroids)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # A re-seeded centroid is exactly a positive-weight data point (the reference's).
    np.testing.assert_array_equal(got[empty], expected[empty].astype(np.float32))
    for row in got[empty]:
        assert (x[w > 0] == row).all(1).any(), row
    counts = np.bincount(np.asarray(res.assignments), weights=w, minlength=3)
    assert (counts > 0).all()


def test_weights_equal_repeated_points():
    x = blobs(5, n=300, dim=4, num_blobs=5, spread=3.0).points
    w = np.random.default_rng(0).integers(1, 4, 300)
    init = x[:5]
    weighted = km.kmeans(
        None,
        jnp.asarray(x),
        k=5,
        weights=jnp.asarray(w, jnp.float32),
        init=init,
        tol=0.0,
        num_iters=30,
    )
    repeated = km.kmeans(
        None, jnp.asarray(np.repeat(x, w, axis=0)), k=5, init=init, tol=0.0, num_iters=30
    )
    np.testing.assert_allclose(weighted.centroids, repeated.centroids, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(weighted.inertia), float(repeated.inertia), rtol=1e-4)


def test_tolerance_stops_early_and_cap_is_respected():
    x = blobs(6, n=2000, dim=4, num_blobs=4, spread=20.0).points
    loose = km.kmeans(jax.random.key(0), jnp.asarray(x), k=4, num_iters=100, tol=1e-2)
    capped = km.kmeans(jax.random.key(0), jnp.asarray(x), k=4, num_iters=2, tol=0.0)
    assert 1 <= int(loose.num_iters) < 100
    assert int(capped.num_iters) == 2


def test_same_key_same_result_and_seeding_uses_data_points():
    x = jnp.asarray(blobs(7, n=1500, dim=6, num_blobs=8, spread=3.0).points)
    a = km.kmeans(jax.random.key(11), x, k=8)
    b = km.kmeans(jax.random.key(11), x, k=8)
    np.testing.assert_array_equal(np.asarray(a.centroids), np.asarray(b.centroids))
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(1), x, k=8, sample_size=500))
    xs = np.asarray(x)
    assert all((xs == row).all(1).any() for row in init)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 11}, "exceeds the number of points"),
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 2, "num_iters": 0}, "num_iters"),
        ({"k": 2, "chunk_size": 0}, "chunk_size"),
        ({"k": 2, "tol": -1.0}, "tol"),
        ({"k": 2, "weights": -jnp.ones(10)}, "non-negative"),
        ({"k": 2, "init": jnp.zeros((3, 2))}, r"init must have shape"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        km.kmeans(jax.random.key(0), jnp.ones((10, 2)), **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused(bad):
    x = np.ones((10, 2), np.float32)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        km.kmeans(jax.random.key(0), x, k=2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: km.kmeans(jax.random.key(0), jnp.ones((10,)), k=2), "2-D array"),
        (lambda: km.assign_to_centroids(jnp.ones((10, 3)), jnp.ones((2, 4))), "dim"),
    ],
    ids=["kmeans_1d_points", "assign_dim_mismatch"],
)
def test_wrong_rank_or_dim_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_no_recompilation_for_repeated_calls_with_same_shapes():
    x = jnp.asarray(blobs(8, n=700, dim=5, num_blobs=6, spread=3.0).points)
    km.kmeans(jax.random.key(0), x, k=6, num_iters=5)
    sizes = (km._kmeans_from._cache_size(), km._kmeans_plusplus._cache_size())
    for seed in range(1, 4):
        km.kmeans(jax.random.key(seed), x + seed, k=6, num_iters=5)
    assert (km._kmeans_from._cache_size(), km._kmeans_plusplus._cache_size()) == sizes


@pytest.mark.slow
def test_inertia_matches_sklearn_at_benchmark_scale():
    x = blobs(9, n=100_000, dim=64, num_blobs=128, spread=1.0).points
    init = np.asarray(km.kmeans_plusplus_init(jax.random.key(0), jnp.asarray(x), k=128))
    ours = km.kmeans(None, jnp.asarray(x), k=128, num_iters=30, tol=0.0, init=init)
    ref = KMeans(128, init=init, n_init=1, max_iter=30, tol=0.0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(float(ours.inertia), ref.inertia_, rtol=1e-3)


# ------------------------------------------------- low-precision screen, float32 re-check

LOW_PRECISIONS = ["bf16", "tf32"]


def _assert_same_result(got: km.KMeansResult, want: km.KMeansResult) -> None:
    """Every field equal bit for bit (NaN-padded history included)."""
    for name, a, b in zip(km.KMeansResult._fields, got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


@functools.partial(jax.jit, static_argnames=("precision", "chunk_size"))
def _jit_screen(x, c, *, precision, chunk_size):
    points = km._screen_points(x, km._squared_norms(x), precision=precision, chunk_size=chunk_size)
    return km._screened_assignments(
        x, points, c, km._squared_norms(c), precision=precision, chunk_size=chunk_size
    )


def _screen(x, c, *, precision, chunk_size):
    """`(assignments, num_flagged)` of the screened assignment pass."""
    a, num_flagged = _jit_screen(
        jnp.asarray(x, jnp.float32),
        jnp.asarray(c, jnp.float32),
        precision=precision,
        chunk_size=chunk_size,
    )
    return np.asarray(a), int(num_flagged)


@pytest.mark.parametrize(
    ("precision", "n", "d", "k", "chunk", "weighted"),
    [
        ("tf32", 1500, 16, 25, 256, False),
        ("bf16", 1024, 64, 50, 256, True),  # N a multiple of the chunk: no float32 tail
        ("bf16", 700, 3, 300, 128, False),  # R > 256: uint16 indices
    ],
)
def test_low_precision_kmeans_equals_fp32_bit_for_bit(precision, n, d, k, chunk, weighted):
    x = jnp.asarray(blobs(n + d, n=n, dim=d, num_blobs=k, spread=3.0).points)
    w = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2, n), jnp.float32) if weighted else None
    init = km.kmeans_plusplus_init(jax.random.key(0), x, k=k)
    kwargs = dict(k=k, num_iters=8, tol=0.0, init=init, chunk_size=chunk, weights=w)
    want = km.kmeans(None, x, **kwargs)
    got = km.kmeans(None, x, **kwargs, assign_precision=precision)
    _assert_same_result(got, want)


def _near_ties(seed, n, d, *, scale, offset):
    """Rows within float32 rounding of the bisector of centroids 0 and 1, or exactly on it.

    Centroids ±e_0 (and more centroids farther out); rows are a random point of the
    bisector hyperplane, moved along e_0 by at most 1e-7·scale (a third of them exactly on
    it), plus a common offset. Their two nearest distances differ by at most ~1e-7
    relative: bf16 cannot tell them apart, float32 rounding decides.
    """
    rng = np.random.default_rng(seed)
    c = np.zeros((6, d))
    c[0, 0], c[1, 0] = 1.0, -1.0
    c[2:, 1:] = 5.0 * rng.normal(size=(4, d - 1))
    x = rng.normal(size=(n, d))
    x[:, 0] = rng.uniform(-1e-7, 1e-7, n) * (rng.random(n) < 2 / 3)
    x, c = scale * x + offset, scale * c + offset
    return x.astype(np.float32), c.astype(np.float32)


@pytest.mark.parametrize("precision", LOW_PRECISIONS)
@pytest.mark.parametrize(("scale", "offset"), [(1.0, 0.0), (1e-3, 0.0), (30.0, 100.0)])
def test_low_precision_assignment_equals_fp32_on_near_ties(precision, scale, offset):
    # 300 tied rows among 1000 clear ones (a blob far from the bisector): the ties are
    # flagged and re-checked in float32 (well under the capacity, so not the fallback).
    x_tie, c = _near_ties(1, 300, 8, scale=scale, offset=offset)
    x_far = (
        scale
        * (np.array([4.0] + [0.0] * 7) + 0.3 * np.random.default_rng(2).normal(size=(1000, 8)))
        + offset
    ).astype(np.float32)
    x = np.concatenate([x_far[:500], x_tie, x_far[500:]])
    want, _ = km.assign_to_centroids(jnp.asarray(x), jnp.asarray(c), chunk_size=128)
    a, num_flagged = _screen(x, c, precision=precision, chunk_size=128)
    np.testing.assert_array_equal(a, np.asarray(want))
    assert 300 <= num_flagged <= km._RECHECK_CAPACITY * len(x)
    assert 0 < (np.asarray(want)[500:800] == 1).sum() < 300  # float32 splits the ties


@pytest.mark.parametrize("precision", LOW_PRECISIONS)
def test_low_precision_falls_back_to_fp32_when_most_rows_are_flagged(precision):
    x, c = _near_ties(3, 1000, 8, scale=1.0, offset=0.0)
    want, _ = km.assign_to_centroids(jnp.asarray(x), jnp.asarray(c), chunk_size=128)
    a, num_flagged = _screen(x, c, precision=precision, chunk_size=128)
    assert num_flagged > km._RECHECK_CAPACITY * len(x)  # the full float32 pass ran
    np.testing.assert_array_equal(a, np.asarray(want))


@pytest.mark.parametrize("precision", LOW_PRECISIONS)
def test_low_precision_kmeans_equals_fp32_on_near_ties(precision):
    # Lloyd on tie-heavy data, with a weight on every row: the re-check runs every iteration.
    x_tie, c = _near_ties(4, 600, 8, scale=1.0, offset=3.0)
    x = np.concatenate([x_tie, c[2:] + 0.1 * np.random.default_rng(5).normal(size=(4, 8))])
    kwargs = dict(k=6, num_iters=5, tol=0.0, init=jnp.asarray(c), chunk_size=64)
    want = km.kmeans(None, jnp.asarray(x), **kwargs)
    _assert_same_result(km.kmeans(None, jnp.asarray(x), **kwargs, assign_precision=precision), want)


@pytest.mark.parametrize("precision", LOW_PRECISIONS)
@pytest.mark.parametrize(
    ("d", "scale", "offset"),
    [(1, 1.0, 0.0), (3, 1e-30, 0.0), (128, 1.0, 0.0), (128, 1e6, 0.0), (700, 0.1, 10.0)],
)
def test_assignment_bound_bounds_the_screen_error(precision, d, scale, offset):
    # The screen's distances, against the float32 pass's, stay within the bound (all of
    # the bound's terms are worst cases; here it must merely hold, on every entry).
    rng = np.random.default_rng(d)
    x = jnp.asarray((scale * rng.normal(size=(512, d)) + offset).astype(np.float32))
    c = jnp.asarray((scale * rng.normal(size=(40, d)) + offset).astype(np.float32))
    c2 = km._squared_norms(c)
    points = km._screen_points(x, km._squared_norms(x), precision=precision, chunk_size=512)
    bound = np.asarray(km._assignment_bound(points, c, c2, precision=precision))
    xlp = km._unstored(points.x_NxD, precision)
    s_low = np.asarray(
        c2[None, :] + km._screen_matmul(xlp, km._screen_operand(c, precision), precision)
    )
    s_fp32 = np.asarray(c2[None, :] - 2.0 * jnp.matmul(x, c.T, precision=km.PRECISION))
    err = np.abs(s_low.astype(np.float64) - s_fp32)
    assert np.all(err <= bound[:, None]), (err / bound[:, None]).max()
    assert np.all(bound > 0)


@pytest.mark.parametrize("r", [1, 255, 256, 257, 4100])
def test_assignment_finds_every_column_for_each_index_type(r):
    # The index reduction runs on uint8 (R ≤ 256), uint16 or int32, and the screen on its
    # float key or, for R ≥ 4096, two reductions: every column, the last one included,
    # must come out where it is nearest.
    rng = np.random.default_rng(r)
    c = rng.normal(size=(r, 4)).astype(np.float32)
    x = np.concatenate([c, c[::-1]])[: max(2 * r, 64)] if r < 300 else c[np.r_[:64, r - 64 : r]]
    x = (x + 1e-3 * rng.normal(size=x.shape)).astype(np.float32)
    want = squared_distances(x, c).argmin(1)
    a, _ = km.assign_to_centroids(jnp.asarray(x), jnp.asarray(c), chunk_size=32)
    np.testing.assert_array_equal(np.asarray(a), want)
    got, _ = _screen(x, c, precision="bf16", chunk_size=32)
    np.testing.assert_array_equal(got, want)


def test_low_precision_reseeds_empty_clusters_like_fp32():
    x = _with_outliers(4)
    init = np.repeat(x[:1], 3, axis=0)  # all points tie on centroid 0: two clusters empty
    kwargs = dict(k=3, num_iters=3, tol=0.0, init=init, chunk_size=64)
    want = km.kmeans(None, jnp.asarray(x), **kwargs)
    _assert_same_result(km.kmeans(None, jnp.asarray(x), **kwargs, assign_precision="bf16"), want)


def test_low_precision_sq_dists_match_fp32():
    x = blobs(3, n=2000, dim=16, num_blobs=20, spread=3.0).points
    c = x[:20]
    a32, _ = km.assign_to_centroids(jnp.asarray(x), jnp.asarray(c), chunk_size=256)
    a16, d16 = km.assign_to_centroids(
        jnp.asarray(x), jnp.asarray(c), chunk_size=256, assign_precision="bf16"
    )
    np.testing.assert_array_equal(np.asarray(a16), np.asarray(a32))
    np.testing.assert_allclose(
        np.asarray(d16), squared_distances(x, c).min(1), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda p: km.kmeans(jax.random.key(0), jnp.ones((10, 2)), k=2, assign_precision=p),
        lambda p: km.assign_to_centroids(jnp.ones((10, 2)), jnp.ones((2, 2)), assign_precision=p),
    ],
    ids=["kmeans", "assign_to_centroids"],
)
@pytest.mark.parametrize("bad", ["float16", "BF16", None])
def test_bad_assign_precision_names_the_argument_and_the_fix(call, bad):
    with pytest.raises(
        ValueError, match=r"assign_precision must be one of 'fp32', 'bf16', 'tf32'.*Use 'fp32'"
    ):
        call(bad)


def test_no_recompilation_for_repeated_low_precision_calls():
    x = jnp.asarray(blobs(8, n=700, dim=5, num_blobs=6, spread=3.0).points)
    km.kmeans(jax.random.key(0), x, k=6, num_iters=5, chunk_size=128, assign_precision="bf16")
    size = km._kmeans_from._cache_size()
    for seed in range(1, 4):
        km.kmeans(
            jax.random.key(seed),
            x + seed,
            k=6,
            num_iters=5,
            chunk_size=128,
            assign_precision="bf16",
        )
    assert km._kmeans_from._cache_size() == size
