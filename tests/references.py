"""Test data and the float64 NumPy references that several test modules compare against.

Test modules import it by name (`from references import blobs`): `tests/` has no
`__init__.py`, so pytest's default import mode puts it on `sys.path` with
`tests/conftest.py`, for `tests/multidevice` and the other sub-folders too.
"""

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ecos_jax import k_center, sampling


class Blobs(NamedTuple):
    """Gaussian blobs; unpacks as `points, labels, centers`."""

    points: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int32, the blob of each row
    centers: np.ndarray  # [L, D] float32


def blobs(
    seed: int = 0,
    *,
    n_per: int | None = None,
    n: int | None = None,
    dim: int = 6,
    num_blobs: int = 5,
    spread: float = 8.0,
    noise: float = 1.0,
) -> Blobs:
    """`num_blobs` centres drawn from N(0, spread²·I), each row its centre plus N(0, noise²·I).

    Give `n_per` for rows sorted by blob, `n_per` rows each (the default: 60), or `n` for `n`
    rows whose blobs are drawn uniformly. The draws come in the order centres, labels (for
    `n`), noise: the order of the helpers this replaces, whose pinned figures it keeps.
    """
    if n is not None and n_per is not None:
        raise ValueError("blobs takes n_per or n, not both")
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_blobs, dim)) * spread
    if n is None:
        labels = np.repeat(np.arange(num_blobs), 60 if n_per is None else n_per)
    else:
        labels = rng.integers(0, num_blobs, n)
    points = centers[labels] + noise * rng.normal(size=(labels.size, dim))
    return Blobs(points.astype(np.float32), labels.astype(np.int32), centers.astype(np.float32))


def squared_distances(a_NxD, b_RxD) -> np.ndarray:
    """[N, R] float64 squared Euclidean distances."""
    a, b = np.asarray(a_NxD, np.float64), np.asarray(b_RxD, np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def distances(a_NxD, b_RxD, metric: str = "l2") -> np.ndarray:
    """[N, R] float64 distances: Euclidean for 'l2', 1 − cos in [0, 2] for 'cosine'."""
    if metric == "l2":
        return np.sqrt(squared_distances(a_NxD, b_RxD))
    a, b = np.asarray(a_NxD, np.float64), np.asarray(b_RxD, np.float64)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(1.0 - an @ bn.T, 0.0, 2.0)


def nearest(dist_NxR, k: int) -> np.ndarray:
    """[N, min(k, R)] indices of each row's k smallest distances, ties to the lower index."""
    return np.argsort(dist_NxR, axis=1, kind="stable")[:, :k]


def voronoi_counts(x_MxD, centroids_RxD, metric: str = "l2") -> np.ndarray:
    """[R] rows whose nearest centroid is each centroid."""
    return top_m_counts(x_MxD, centroids_RxD, 1, metric)


def top_m_counts(x_MxD, centroids_RxD, m: int, metric: str = "l2") -> np.ndarray:
    """[R] rows that have each centroid among their m nearest."""
    order = nearest(distances(x_MxD, centroids_RxD, metric), m)
    return np.bincount(order.ravel(), minlength=len(centroids_RxD))


def radius_counts(x_MxD, centroids_RxD, radii, max_votes: int, metric: str = "l2") -> np.ndarray:
    """[R] votes of each row for its (at most) max_votes nearest centroids within the radii."""
    dist = distances(x_MxD, centroids_RxD, metric)
    radii = np.broadcast_to(np.asarray(radii, np.float64), (len(centroids_RxD),))
    counts = np.zeros(len(centroids_RxD), np.int64)
    for row in dist:
        qualifying = np.flatnonzero(row <= radii)
        counts[qualifying[np.argsort(row[qualifying], kind="stable")][:max_votes]] += 1
    return counts


def knn_votes(query_QxD, client_MxD, labels_M, *, k: int, num_classes: int, metric: str = "l2"):
    """[Q, L] int64 label histogram of each query's k nearest client rows."""
    idx = nearest(distances(query_QxD, client_MxD, metric), k)
    votes = np.zeros((len(idx), num_classes), np.int64)
    for row, neighbours in enumerate(idx):
        np.add.at(votes[row], np.asarray(labels_M)[neighbours], 1)
    return votes


def lloyd_update(x_NxD, centroids_RxD, weights_N):
    """One weighted Lloyd update with the documented re-seeding (the j-th empty cluster moves
    onto the j-th positive-weight point farthest from its centroid); returns the new
    centroids and the indices of the empty clusters."""
    d2 = squared_distances(x_NxD, centroids_RxD)
    a, near = d2.argmin(1), d2.min(1)  # argmin: first index on ties, as documented
    k = len(centroids_RxD)
    counts = np.bincount(a, weights=weights_N, minlength=k)
    sums = np.stack([(weights_N[a == j, None] * x_NxD[a == j]).sum(0) for j in range(k)])
    new = sums / np.maximum(counts, 1e-30)[:, None]
    far = np.argsort(-np.where(weights_N > 0, near, -1.0), kind="stable")
    empty = np.flatnonzero(counts <= 0)
    new[empty] = x_NxD[far[: len(empty)]]
    return new, empty


def log_softmax(logits_NxL) -> np.ndarray:
    """[N, L] float64 log-probabilities, row-wise."""
    z = np.asarray(logits_NxL, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits_NxL) -> np.ndarray:
    """[N, L] float64 probabilities, row-wise."""
    return np.exp(log_softmax(logits_NxL))


def cross_entropy(logits_NxL, labels_N) -> np.ndarray:
    """[N] float64 cross-entropy of each row against its integer label."""
    return -log_softmax(logits_NxL)[np.arange(len(labels_N)), labels_N]


# ----------------------------------------------------------------------------- k-center


def reference_k_center(x, mask, num_select, *, seed_point=None, first=None, metric="l2"):
    """Brute-force farthest-point selection in float64 NumPy."""
    x = np.asarray(x, np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)

    def dist(p):
        if metric == "l2":
            return np.linalg.norm(x - p, axis=1)
        return 1.0 - x @ (p / np.linalg.norm(p))

    chosen = [] if first is None else [first]
    if seed_point is not None:
        centers = [np.asarray(seed_point, np.float64)]
    else:
        centers = [x[first]] if first is not None else []
    while len(chosen) < num_select and len(chosen) < mask.sum():
        if centers:
            d = np.min(np.stack([dist(c) for c in centers]), axis=0)
        else:
            d = np.full(len(x), np.inf)
        d[~mask] = -np.inf
        d[chosen] = -np.inf
        j = int(np.argmax(d))
        chosen.append(j)
        centers.append(x[j])
    return chosen


def _candidates(x, assignments, centroids, scores, budget, kappa, metric, threshold, top_k):
    """Per kept cluster (in output order): (cluster, n_r, candidates nearest first)."""
    x = np.asarray(x, np.float64)
    c = np.asarray(centroids, np.float64)
    w = sampling.filter_scores(scores, threshold=threshold, top_k=top_k)
    sizes = np.bincount(assignments, minlength=len(c))
    n = sampling.allocate_budget(w, sizes, budget=budget)
    out = []
    for r in np.lexsort((np.arange(len(c)), -np.asarray(scores, np.float64), -w)):
        if n[r] == 0:
            continue
        members = np.flatnonzero(assignments == r)
        if metric == "l2":
            d = np.linalg.norm(x[members] - c[r], axis=1)
        else:
            unit = x[members] / np.linalg.norm(x[members], axis=1, keepdims=True)
            d = 1.0 - unit @ (c[r] / np.linalg.norm(c[r]))
        members = members[np.lexsort((members, d))]
        m = len(members) if kappa is None else min(len(members), math.ceil(kappa * n[r] - 1e-9))
        out.append((int(r), int(n[r]), members[:m]))
    return out


def _select_per_cluster(x, assignments, centroids, scores, order, **settings):
    """ECOS selection cluster by cluster: `order(r, n, cand)` gives the first n picks of
    cluster r's candidates `cand` (positions in `cand`); full clusters are taken whole."""
    picked = []
    for r, n, cand in _candidates(x, assignments, centroids, scores, **settings):
        picked.append(cand if n == len(cand) else cand[order(r, n, cand)])
    return np.concatenate(picked) if picked else np.zeros(0, np.int64)


def reference_ecos_select(
    x, assignments, centroids, scores, *, budget, kappa=1.5, metric="l2", threshold=None, top_k=None
):
    """ECOS selection written out cluster by cluster in float64 NumPy."""

    def order(r, n, cand):
        mask = np.ones(len(cand), bool)
        seed = np.asarray(centroids)[r]
        return reference_k_center(np.asarray(x)[cand], mask, n, seed_point=seed, metric=metric)

    settings = dict(budget=budget, kappa=kappa, metric=metric, threshold=threshold, top_k=top_k)
    return _select_per_cluster(x, assignments, centroids, scores, order, **settings)


def per_cluster_ecos_select(
    x, assignments, centroids, scores, *, budget, kappa=1.5, metric="l2", threshold=None, top_k=None
):
    """ECOS selection as it was before the grouped k-center: one `greedy_k_center` call
    per cluster, its set padded to `bucket_size`, `min(bucket_size(n), P)` picks."""
    x_dev = jnp.asarray(x, jnp.float32)

    def order(r, n, cand):
        size = k_center.bucket_size(len(cand))
        rows = np.zeros(size, np.int64)
        rows[: len(cand)] = cand
        res = k_center.greedy_k_center(
            x_dev[jnp.asarray(rows)],
            jnp.asarray(np.arange(size) < len(cand)),
            num_select=min(k_center.bucket_size(n), size),
            seed_point_D=jnp.asarray(centroids, jnp.float32)[r],
            metric=metric,
        )
        return np.asarray(res.indices)[:n]

    settings = dict(budget=budget, kappa=kappa, metric=metric, threshold=threshold, top_k=top_k)
    return _select_per_cluster(x, assignments, centroids, scores, order, **settings)
