"""Private-kNN labeling of the selected subset by the client, for task (c).

The cloud sends the features of its selected subset `S` (the queries, public). For each
query the client finds its `k` nearest labeled private samples, counts their labels into
an integer vote histogram over the `L` classes, adds discrete Gaussian noise `N_Z(0, σ²)`
to every bin (`ecos_jax.noise`) and releases only the argmax (the first maximum). `σ` is
the noise scale in votes, as in Private-kNN and PATE.

Sensitivity (add or remove one client sample, `k` fixed). Every query's neighbours are
the canonical `k` nearest of `ecos_jax.canonical`: each client row's distance is decided
from that row and the query alone, whatever else the client holds, with ties to the
lower sample index (the relative order of the other samples is the same in `D` and
`D' = D ∪ {z}`). Either `z` is not among the `k` nearest of `D'` and the neighbour set is
unchanged, or `z` enters and pushes out `w`, the `k`-th nearest of `D`: the histogram
changes by `e_{y_z} − e_{y_w}`, one vote moved between two classes (L2 `√2`; with `k`
fixed a new sample always displaces another one's vote). When the client holds at most
`k` samples, all of them vote: no error is raised (raising would itself reveal the
client's size), and adding one sample adds one vote (L2 1 ≤ √2). So at most two bins move
by 1 each:

  `Δ = √2` (`PRIVATE_KNN_SENSITIVITY`), and the noise multiplier is `σ / √2`.

The same client sample can be a neighbour of every query, so the `Q` released histograms
are `Q` compositions: `DiscreteGaussianRelease(noise_multiplier=σ/√2, count=Q,
coordinates=2)`. Record it in the run's `ecos_jax.privacy.PrivacyLedger` next to the ECOS
score release; the argmax is post-processing and costs nothing more. No subsampling
amplification is claimed (the Private-kNN paper subsamples the private set per query;
this implementation does not).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ecos_jax import noise, privacy
  >>> client = jnp.array([[0.0], [0.1], [5.0], [5.1]])
  >>> labels, release = private_knn_labels(
  ...     jnp.array([[0.05], [5.05]]), client, jnp.array([0, 0, 1, 1]), k=2, num_classes=2,
  ...     sigma=0.1, randomness=noise.simulation(jax.random.key(0)))
  >>> labels.tolist(), release.count
  ([0, 1], 2)
  >>> ledger = privacy.PrivacyLedger([privacy.DiscreteGaussianRelease(6.68, name="ecos_scores")])
  >>> ledger.record(release)

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 5 (task c).
  Zhu, Yu, Wang. "Private-kNN: Practical Differential Privacy for Computer Vision."
  CVPR 2020. Papernot et al. "Scalable Private Learning with PATE." ICLR 2018.
  Canonne, Kamath, Steinke. "The Discrete Gaussian for Differential Privacy." NeurIPS 2020.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import canonical, noise, privacy
from ecos_jax._validate import (
    as_client_features,
    as_real_array,
    check_labels,
    finite_in_range,
    positive_int,
)
from ecos_jax.distances import Metric, check_metric, map_row_chunks

__all__ = [
    "PRIVATE_KNN_SENSITIVITY",
    "RELEASE_NAME",
    "calibrate_vote_sigma",
    "knn_votes",
    "private_knn_labels",
    "private_knn_release",
    "release_knn_labels",
]

#: L2 sensitivity of one query's vote histogram under adding or removing one client sample.
PRIVATE_KNN_SENSITIVITY = math.sqrt(2.0)

#: Histogram bins one added or removed client sample changes (each by 1).
PRIVATE_KNN_COORDINATES = 2

#: Name of the release in a `PrivacyLedger`.
RELEASE_NAME = "private_knn_votes"


def knn_votes(
    query_features: Any,
    client_features: Any,
    client_labels: Any,
    *,
    k: int,
    num_classes: int,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> np.ndarray:
    """Noise-free vote histograms: each query's `k` nearest client samples vote their label.

    The neighbours of a query are its canonical `k` nearest client samples (ties to the
    smaller index; `ecos_jax.canonical`): a sample's place among them depends on the
    sample and the query alone. Queries are processed in chunks of `chunk_size` rows, so
    at most one `[chunk_size, N]` block of distances exists at a time.

    Args:
      query_features: [Q, D] features of the samples to label (Q >= 1).
      client_features: [N, D] features of the client's labeled private samples (N >= 0).
      client_labels: [N] integer labels in [0, num_classes).
      k: neighbours per query, >= 1; when the client holds fewer, all of them vote.
      num_classes: number of classes L >= 1.
      metric: 'l2' (Euclidean) or 'cosine' (1 − cos on normalised rows).
      chunk_size: queries per chunk, >= 1.

    Returns:
      [Q, L] int64 histograms; every row sums to `min(k, N)`.

    Example:
      >>> import jax.numpy as jnp
      >>> knn_votes(jnp.zeros((1, 1)), jnp.array([[0.0], [1.0], [9.0]]), jnp.array([1, 0, 0]),
      ...           k=2, num_classes=2).tolist()
      [[1, 1]]

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5, task (c); Zhu et al.,
      Private-kNN, CVPR 2020.
    """
    query, client, labels = _check_inputs(
        query_features, client_features, client_labels, k=k, num_classes=num_classes
    )
    check_metric(metric)
    chunk_size = positive_int(chunk_size, "chunk_size")
    num_votes = min(int(k), client.shape[0])
    if num_votes == 0:
        return np.zeros((query.shape[0], int(num_classes)), np.int64)
    votes_QxL, ambiguous_Q = _fast_knn_votes(
        query,
        client,
        labels,
        num_votes=num_votes,
        num_classes=int(num_classes),
        metric=metric,
        chunk_size=chunk_size,
    )
    votes_QxL = np.asarray(votes_QxL).astype(np.int64)
    rows = np.flatnonzero(np.asarray(ambiguous_Q))
    if rows.size:
        labels_M = np.asarray(labels)
        neighbours = canonical.resolve_rows(
            np.asarray(query)[rows], np.asarray(client), num_votes=num_votes, metric=metric
        )
        for row, chosen in zip(rows, neighbours, strict=True):
            votes_QxL[row] = np.bincount(labels_M[chosen], minlength=int(num_classes))
    return votes_QxL


def private_knn_release(*, sigma: float, num_queries: int) -> privacy.DiscreteGaussianRelease:
    """The privacy cost of `num_queries` noisy histograms with vote-noise scale `sigma`.

    To meet a target ε, take `sigma` from `calibrate_vote_sigma`.

    Example:
      >>> r = private_knn_release(sigma=2.0 * PRIVATE_KNN_SENSITIVITY, num_queries=10)
      >>> r.noise_multiplier, r.count, r.coordinates
      (2.0, 10, 2)

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 and task (c).
    """
    sigma = finite_in_range(sigma, "sigma", low=0.0)
    if sigma == 0.0:
        raise ValueError("sigma must be > 0: without noise the labels are not private.")
    num_queries = positive_int(num_queries, "num_queries")
    return privacy.DiscreteGaussianRelease(
        noise_multiplier=sigma / PRIVATE_KNN_SENSITIVITY,
        count=num_queries,
        coordinates=PRIVATE_KNN_COORDINATES,
        name=RELEASE_NAME,
    )


def calibrate_vote_sigma(
    target_epsilon: float, *, delta: float, num_queries: int, accountant: str = "rdp"
) -> float:
    """The vote-noise scale whose `num_queries` released histograms cost `target_epsilon`.

    The noise multiplier calibrated by `privacy.calibrate_sigma` over `num_queries`
    releases of 2 coordinates, times the sensitivity `√2` (the scale is in votes).

    Example:
      >>> sigma = calibrate_vote_sigma(4.0, delta=1e-5, num_queries=100)
      >>> privacy.epsilon(private_knn_release(sigma=sigma, num_queries=100), delta=1e-5) <= 4.0
      True

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 and task (c).
    """
    num_queries = positive_int(num_queries, "num_queries")
    multiplier = privacy.calibrate_sigma(
        target_epsilon,
        delta=delta,
        count=num_queries,
        coordinates=PRIVATE_KNN_COORDINATES,
        accountant=accountant,
    )
    return float(multiplier * PRIVATE_KNN_SENSITIVITY)


def private_knn_labels(
    query_features: Any,
    client_features: Any,
    client_labels: Any,
    *,
    k: int,
    num_classes: int,
    sigma: float,
    randomness: noise.Randomness | None = None,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> tuple[np.ndarray, privacy.DiscreteGaussianRelease]:
    """Private-kNN labels: argmax of each query's vote histogram plus `N_Z(0, sigma²)` noise.

    Args:
      query_features: [Q, D] features of the samples to label (Q >= 1).
      client_features: [N, D] features of the client's labeled private samples.
      client_labels: [N] integer labels in [0, num_classes).
      k: neighbours per query, >= 1 (all samples vote when the client holds fewer).
      num_classes: number of classes L >= 1.
      sigma: scale of the discrete Gaussian noise on every vote count, > 0. The noise
        multiplier is `sigma / √2` (see the module docstring).
      randomness: `noise.secure()` (also when None) or `noise.simulation(key)`.
      metric: 'l2' or 'cosine'.
      chunk_size: queries per chunk, >= 1.

    Returns:
      `(labels, release)`: [Q] int32 labels and the `DiscreteGaussianRelease` with
      `noise_multiplier = sigma / √2`, `count = Q`, `coordinates = 2`, to be recorded in
      the run's `PrivacyLedger`.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5, task (c); Zhu et al.,
      Private-kNN, CVPR 2020; Papernot et al., PATE, ICLR 2018 (noisy argmax).
    """
    # The release checks sigma; building it for one query first fails fast on a bad sigma.
    private_knn_release(sigma=sigma, num_queries=1)
    noise.resolve(randomness)
    votes_QxL = knn_votes(
        query_features,
        client_features,
        client_labels,
        k=k,
        num_classes=num_classes,
        metric=metric,
        chunk_size=chunk_size,
    )
    return release_knn_labels(votes_QxL, sigma=sigma, randomness=randomness)


def release_knn_labels(
    votes: Any, *, sigma: float, randomness: noise.Randomness | None = None
) -> tuple[np.ndarray, privacy.DiscreteGaussianRelease]:
    """The released labels of noise-free vote histograms: argmax of votes + N_Z(0, sigma²).

    The second half of `private_knn_labels`, for callers that reuse one `knn_votes`
    result at several noise levels. Ties of the noisy counts go to the lower class.

    Args:
      votes: [Q, L] integer vote histograms from `knn_votes` (Q >= 1).
      sigma: noise scale in votes, > 0 (the noise multiplier is `sigma / √2`).
      randomness: `noise.secure()` (also when None) or `noise.simulation(key)`; use a
        fresh simulation key per noise level.

    Returns:
      `(labels, release)` as in `private_knn_labels`.

    Example:
      >>> import jax, numpy as np
      >>> from ecos_jax import noise
      >>> labels, release = release_knn_labels(
      ...     np.array([[9, 1]]), sigma=0.5, randomness=noise.simulation(jax.random.key(0)))
      >>> labels.tolist(), release.count
      ([0], 1)

    References:
      Papernot et al., PATE, ICLR 2018 (noisy argmax); Zhu et al., Private-kNN, CVPR 2020.
    """
    votes_QxL = np.asarray(votes)
    if votes_QxL.ndim != 2 or votes_QxL.shape[0] < 1 or votes_QxL.shape[1] < 1:
        raise ValueError(
            "votes must be a [num_queries, num_classes] histogram array with at least one "
            f"row and column (from knn_votes), got shape {votes_QxL.shape}."
        )
    if votes_QxL.dtype.kind not in "iu":
        raise ValueError(
            f"votes must be integer vote counts (from knn_votes), got dtype {votes_QxL.dtype}."
        )
    release = private_knn_release(sigma=sigma, num_queries=votes_QxL.shape[0])
    noisy_QxL = noise.add_discrete_gaussian(votes_QxL, scale=sigma, randomness=randomness)
    return np.argmax(noisy_QxL, axis=-1).astype(np.int32), release


@functools.partial(jax.jit, static_argnames=("num_votes", "num_classes", "metric", "chunk_size"))
def _fast_knn_votes(
    query_QxD: jax.Array,
    client_MxD: jax.Array,
    labels_M: jax.Array,
    *,
    num_votes: int,
    num_classes: int,
    metric: str,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
    """Jitted, chunked votes [Q, L] int32 of the queries float32 decides, and the others [Q]."""

    def votes_chunk(query_CxD: jax.Array):
        d_CxM, err_C = canonical.fast_distances(query_CxD, client_MxD, metric=metric)
        nearest_CxV, _, ambiguous_C = canonical.certified_votes(d_CxM, err_C, num_votes=num_votes)
        one_hot_CxVxL = jax.nn.one_hot(labels_M[nearest_CxV], num_classes, dtype=jnp.int32)
        return jnp.sum(one_hot_CxVxL, axis=1), ambiguous_C

    return map_row_chunks(votes_chunk, query_QxD, chunk_size=chunk_size)


def _check_inputs(
    query: Any, client: Any, labels: Any, *, k: Any, num_classes: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Checks shapes, dtypes, finiteness, k and the label range; returns float32 arrays.

    The client's features and labels are private: their messages name no value and no
    row count.
    """
    query = as_real_array(query, "query_features")
    if query.ndim != 2 or query.shape[0] < 1:
        raise ValueError(
            f"query_features must be a [rows, feature_dim] array with at least one row, got "
            f"shape {query.shape}."
        )
    client = as_client_features(client, "client_features")
    if query.shape[1] != client.shape[1]:
        raise ValueError(
            f"query_features has feature dim {query.shape[1]} but client_features has "
            f"{client.shape[1]}; both must come from the same feature extractor."
        )
    num_classes = positive_int(num_classes, "num_classes")
    positive_int(k, "k")
    labels = check_labels(
        labels, "client_labels", length=client.shape[0], num_classes=num_classes, private=True
    )
    query = query.astype(jnp.float32)
    if not isinstance(query, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(query))):
        raise ValueError("query_features contains NaN or inf; clean the features first.")
    return query, client.astype(jnp.float32), labels.astype(jnp.int32)
