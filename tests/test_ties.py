"""Adversarial ties: a row's vote is a function of that row alone, whatever else is in D.

The float32 GEMM behind every distance rounds a row differently depending on how many
other rows share the matmul. These tests put many copies of a row on a decision boundary
(a Voronoi bisector, the m-th/(m+1)-th centroid, a radius, the k-th/(k+1)-th neighbour),
score batches of 1, 7, 8, 63, 64 and 65 copies, add one far-away sample (at the end, in
front, in the middle), and check that the released vector moves by at most its stated
sensitivity Δ, exactly (integer counts: no tolerance), and that n copies vote n times what
one copy votes.
"""

import math

import hypothesis
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import strategies as st

from ecos_jax.coverage import coverage_scores
from ecos_jax.tasks import PRIVATE_KNN_SENSITIVITY, knn_votes

D, R = 64, 8
BATCHES = (1, 7, 8, 63, 64, 65)


def _unit(rng, d=D):
    u = rng.normal(size=d)
    return u / np.linalg.norm(u)


def _shell(rng, center, radii):
    """Points at the given distances (float64, then rounded to float32) from `center`."""
    return np.stack([center + r * _unit(rng) for r in radii]).astype(np.float32)


def _cone(rng, center, cos_distances):
    """Points at the given cosine distances 1 − cos from `center`, with random norms."""
    c = center / np.linalg.norm(center)
    out = []
    for d in cos_distances:
        u = _unit(rng)
        u -= (u @ c) * c
        u /= np.linalg.norm(u)
        cos = 1.0 - d
        out.append(rng.uniform(0.5, 3.0) * (cos * c + math.sqrt(1 - cos**2) * u))
    return np.stack(out).astype(np.float32)


def _boundary_cases(seed: int):
    """(method, metric, kwargs, centroids, boundary row) with the row on a decision boundary."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=D)
    row = x.astype(np.float32)
    # Voronoi: the two nearest centroids (2 and 5) at the same distance.
    near2 = [5.0, 6.0, 3.0, 7.0, 8.0, 3.0, 9.0, 4.5]
    cos2 = [0.5, 0.6, 0.3, 0.7, 0.8, 0.3, 0.9, 0.45]
    # Top-m (m = 3): the 3rd and 4th nearest at the same distance.
    near_m = [1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    cos_m = [0.1, 0.2, 0.3, 0.3, 0.4, 0.5, 0.6, 0.7]
    # Radius (max_votes = 2): three centroids exactly at the radius, one inside.
    near_r = [2.0, 2.0, 2.0, 1.0, 3.0, 4.0, 5.0, 2.5]
    cos_r = [0.2, 0.2, 0.2, 0.1, 0.3, 0.4, 0.5, 0.25]
    return [
        ("voronoi", "l2", {}, _shell(rng, x, near2), row),
        ("voronoi", "cosine", {}, _cone(rng, x, cos2), row),
        ("top_m", "l2", {"m": 3}, _shell(rng, x, near_m), row),
        ("top_m", "cosine", {"m": 3}, _cone(rng, x, cos_m), row),
        ("radius", "l2", {"radii": 2.0, "max_votes": 2}, _shell(rng, x, near_r), row),
        ("radius", "cosine", {"radii": 0.2, "max_votes": 2}, _cone(rng, x, cos_r), row),
    ]


CASES = [c for seed in range(3) for c in _boundary_cases(seed)]


def _ids(case):
    method, metric, kwargs, _, _ = case
    return f"{method}-{metric}-{sorted(kwargs)}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_boundary_copies_vote_alike_in_every_batch_and_neighbours_move_by_delta(case):
    method, metric, kwargs, v, row = case
    rng = np.random.default_rng(7)
    far = (30.0 * rng.normal(size=(1, D))).astype(np.float32)
    score = lambda x: coverage_scores(x, v, method=method, metric=metric, **kwargs)
    one = score(row[None]).counts
    far_votes = score(far).counts
    delta = score(row[None]).sensitivity
    for n in BATCHES:
        copies = np.repeat(row[None], n, axis=0)
        base = score(copies).counts
        np.testing.assert_array_equal(base, n * one)
        for position in (n, 0, n // 2):
            neighbour = np.insert(copies, position, far[0], axis=0)
            moved = score(neighbour).counts - base
            np.testing.assert_array_equal(moved, far_votes)  # only the new row's votes
            assert np.linalg.norm(moved) <= delta
            # Removing one copy moves exactly that copy's votes.
            removed = score(np.delete(copies, position % n, axis=0)).counts
            np.testing.assert_array_equal(base - removed, one)


def test_exact_ties_go_to_the_lowest_centroid_index():
    """Centroids mirrored through the row: distances are equal in every arithmetic."""
    rng = np.random.default_rng(0)
    x = np.zeros(D, np.float32)
    u = rng.normal(size=D).astype(np.float32)
    v = np.stack([u, -u, 2 * u, -2 * u, 3 * u, -3 * u, 4 * u, -4 * u])
    for metric in ("l2",):
        assert coverage_scores(x[None], v, metric=metric).counts.tolist() == [1] + [0] * 7
        top = coverage_scores(x[None], v, method="top_m", m=3, metric=metric).counts
        assert top.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    # Cosine: a row orthogonal to all centroids ties everywhere at distance 1.
    w = np.zeros(D, np.float32)
    w[0], u2 = 1.0, np.zeros((R, D), np.float32)
    u2[:, 1:] = rng.normal(size=(R, D - 1))
    assert coverage_scores(w[None], u2, metric="cosine").counts.tolist() == [1] + [0] * 7


# kNN votes: the k-th and (k+1)-th client samples at the same distance from the query.


def _knn_case(seed: int, k: int, metric: str):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=D)
    if metric == "l2":
        radii = np.concatenate([np.arange(1.0, k), [float(k), float(k)], np.arange(k + 1.0, k + 6)])
        client = _shell(rng, q, radii)
    else:
        steps = np.concatenate([np.arange(1.0, k), [float(k), float(k)], np.arange(k + 1.0, k + 6)])
        client = _cone(rng, q, steps / 20)
    labels = np.arange(len(client)) % 4
    labels[k - 1], labels[k] = 0, 1  # the two tied samples carry different labels
    # Eight copies of the query: the query chunk of the GEMM is not a single row.
    return np.repeat(q.astype(np.float32)[None], 8, axis=0), client, labels


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("seed", [54, 55, 56])
def test_knn_votes_at_the_k_boundary_do_not_depend_on_the_rest_of_the_client(metric, seed):
    k = 5
    q, client, labels = _knn_case(seed, k, metric)
    votes = lambda c, y: knn_votes(q, c, y, k=k, num_classes=4, metric=metric)
    base = votes(client, labels)
    assert np.all(base == base[0])
    rng = np.random.default_rng(11)
    far = 50.0 if metric == "l2" else -1.0  # far: large distance, or pointing away
    for n in BATCHES:
        # n far-away samples with any labels never enter the k nearest.
        filler = (far * np.abs(rng.normal(size=(n, D))) + rng.normal(size=(n, D))).astype(
            np.float32
        )
        filler = filler if metric == "l2" else (-q[0] + 0.1 * filler).astype(np.float32)
        big = np.concatenate([filler[: n // 2], client, filler[n // 2 :]])
        big_labels = np.concatenate([np.full(n // 2, 3), labels, np.full(n - n // 2, 2)])
        np.testing.assert_array_equal(votes(big, big_labels), base)
        # Adding the query itself (the nearest possible sample) moves at most two bins by 1.
        for position in (0, len(big) // 2, len(big)):
            grown = np.insert(big, position, q[0], axis=0)
            grown_labels = np.insert(big_labels, position, 3)
            moved = votes(grown, grown_labels) - base
            assert np.abs(moved).sum(axis=1).max() <= 2 and np.abs(moved).max() <= 1
            assert np.linalg.norm(moved, axis=1).max() <= PRIVATE_KNN_SENSITIVITY


def test_knn_with_fewer_samples_than_k_lets_all_vote():
    q = np.zeros((3, 2), np.float32)
    client = np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)
    votes = knn_votes(q, client, np.array([0, 1]), k=5, num_classes=2)
    np.testing.assert_array_equal(votes, [[1, 1]] * 3)
    grown = knn_votes(
        q, np.concatenate([client, [[5.0, 5.0]]]), np.array([0, 1, 1]), k=5, num_classes=2
    )
    assert np.linalg.norm(grown - votes, axis=1).max() == 1.0  # one added vote: L2 1 ≤ √2
    empty = knn_votes(q, np.zeros((0, 2), np.float32), np.zeros(0, np.int64), k=5, num_classes=2)
    np.testing.assert_array_equal(empty, np.zeros((3, 2)))


# Random data: D and D' = D ∪ {z} with many duplicated rows (ties by construction).

_coords = st.integers(-4, 4).map(float)


@pytest.mark.parametrize(
    "method, metric, kwargs",
    [
        ("voronoi", "l2", {}),
        ("voronoi", "cosine", {}),
        ("top_m", "l2", {"m": 2}),
        ("top_m", "cosine", {"m": 2}),
        ("radius", "l2", {"radii": 2.0, "max_votes": 2}),
        ("radius", "cosine", {"radii": 0.5, "max_votes": 2}),
    ],
)
@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(
    rows=hnp.arrays(np.float32, (6, 3), elements=_coords),
    v=hnp.arrays(np.float32, (5, 3), elements=_coords),
    z=hnp.arrays(np.float32, (3,), elements=_coords),
    copies=st.sampled_from((1, 7, 64)),
    position=st.integers(0, 400),
)
def test_small_integer_grids_have_exact_sensitivity(
    method, metric, kwargs, rows, v, z, copies, position
):
    """Integer coordinates make exact ties everywhere; duplicates make batches of any size."""
    x = np.repeat(rows, copies, axis=0)
    score = lambda f: coverage_scores(f, v, method=method, metric=metric, **kwargs)
    base = score(x)
    grown = score(np.insert(x, position % (len(x) + 1), z, axis=0))
    change = grown.counts - base.counts
    np.testing.assert_array_equal(change, score(z[None]).counts)
    assert np.linalg.norm(change) <= base.sensitivity
    if method != "radius":
        assert np.linalg.norm(change) == pytest.approx(math.sqrt(base.votes_per_sample))
