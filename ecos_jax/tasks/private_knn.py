"""Private-kNN labeling of the selected subset by the client, for task (c).

The cloud sends the features of its selected subset `S` (the queries, public). For each
query the client finds its `k` nearest labeled private samples, counts their labels into a
vote histogram over the `C` classes, adds `N(0, σ²)` noise to every bin and releases only
the argmax. `σ` here is the noise standard deviation in votes, as in Private-kNN and PATE.

Sensitivity (add or remove one client sample, `k` fixed). Let `D' = D ∪ {z}` and break
distance ties by sample order (`lax.top_k` keeps the earlier sample; the relative order of
the other samples is the same in `D` and `D'`). For one query, either `z` is not among the
`k` nearest of `D'` and the neighbour set is unchanged, or `z` enters and pushes out `w`,
the `k`-th nearest of `D`. The histogram then changes by `e_{y_z} − e_{y_w}`: 0 when the
labels agree, otherwise one vote moves between two classes, an L2 change of `√2` (not 1:
with `k` fixed a new sample always displaces another one's vote). So

  `Δ = √2`  (`PRIVATE_KNN_SENSITIVITY`), and the noise multiplier is `σ / √2`.

(When a dataset holds fewer than `k` samples all of them vote and the change is one vote,
L2 = 1 ≤ √2; the functions below refuse `k` larger than the client's data as a usage
error, so pick `k` from public knowledge of the client's size.) The same client sample can
be a neighbour of every query, so the `Q` released histograms are `Q` compositions of a
Gaussian mechanism: `GaussianRelease(noise_multiplier=σ/√2, count=Q)`. Record it in the
run's `ecos_jax.privacy.PrivacyLedger` next to the ECOS score release; the argmax is
post-processing and costs nothing more. No subsampling amplification is claimed (the
Private-kNN paper subsamples the private set per query; this implementation does not).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ecos_jax import privacy
  >>> client = jnp.array([[0.0], [0.1], [5.0], [5.1]])
  >>> labels, release = private_knn_labels(
  ...     jax.random.key(0), jnp.array([[0.05], [5.05]]), client, jnp.array([0, 0, 1, 1]),
  ...     k=2, num_classes=2, sigma=0.1)
  >>> labels.tolist(), release.count
  ([0, 1], 2)
  >>> ledger = privacy.PrivacyLedger([privacy.GaussianRelease(6.68, name="ecos_scores")])
  >>> ledger.record(release)

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 5 (task c).
  Zhu, Yu, Wang. "Private-kNN: Practical Differential Privacy for Computer Vision."
  CVPR 2020. Papernot et al. "Scalable Private Learning with PATE." ICLR 2018.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ecos_jax import privacy
from ecos_jax.distances import (
    Metric,
    all_finite,
    check_metric,
    map_row_chunks,
    pairwise_distance,
    sq_euclidean,
)
from ecos_jax.tasks._validation import check_labels, check_positive_int, check_real

#: L2 sensitivity of one query's vote histogram under adding or removing one client sample.
PRIVATE_KNN_SENSITIVITY = math.sqrt(2.0)

#: Name of the release in a `PrivacyLedger`.
RELEASE_NAME = "private_knn_votes"


def knn_votes(
    query_features: jax.Array,
    client_features: jax.Array,
    client_labels: jax.Array,
    *,
    k: int,
    num_classes: int,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> jax.Array:
    """Noise-free vote histograms: each query's `k` nearest client samples vote their label.

    Queries are processed in chunks of `chunk_size` rows, so at most one
    `[chunk_size, N]` block of distances exists at a time. Ties in distance go to the
    client sample with the smaller index.

    Args:
      query_features: [Q, D] features of the samples to label (Q >= 1).
      client_features: [N, D] features of the client's labeled private samples.
      client_labels: [N] integer labels in [0, num_classes).
      k: neighbours per query, 1 <= k <= N.
      num_classes: number of classes C >= 1.
      metric: 'l2' (Euclidean) or 'cosine' (1 − cos on normalised rows).
      chunk_size: queries per chunk, >= 1.

    Returns:
      [Q, C] int32 histograms; every row sums to `k`.

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
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    return _knn_votes(
        query,
        client,
        labels,
        k=int(k),
        num_classes=int(num_classes),
        metric=metric,
        chunk_size=chunk_size,
    )


def private_knn_release(*, sigma: float, num_queries: int) -> privacy.GaussianRelease:
    """The privacy cost of `num_queries` noisy histograms with vote-noise std `sigma`.

    To meet a target ε, take `sigma` from `calibrate_vote_sigma`.

    Example:
      >>> private_knn_release(sigma=2.0 * PRIVATE_KNN_SENSITIVITY, num_queries=10)
      GaussianRelease(noise_multiplier=2.0, count=10, name='private_knn_votes')

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 and task (c).
    """
    sigma = check_real(sigma, "sigma", low=0.0)
    if sigma == 0.0:
        raise ValueError("sigma must be > 0: without noise the labels are not private.")
    num_queries = check_positive_int(num_queries, "num_queries")
    return privacy.GaussianRelease(
        noise_multiplier=sigma / PRIVATE_KNN_SENSITIVITY, count=num_queries, name=RELEASE_NAME
    )


def calibrate_vote_sigma(
    target_epsilon: float, *, delta: float, num_queries: int, accountant: str = "rdp"
) -> float:
    """The vote-noise std whose `num_queries` released histograms cost `target_epsilon`.

    The noise multiplier calibrated by `privacy.calibrate_sigma` over `num_queries`
    compositions, times the sensitivity `√2` (the std is in votes).

    Example:
      >>> sigma = calibrate_vote_sigma(4.0, delta=1e-5, num_queries=100)
      >>> privacy.epsilon(private_knn_release(sigma=sigma, num_queries=100), delta=1e-5) <= 4.0
      True

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 3 and task (c).
    """
    num_queries = check_positive_int(num_queries, "num_queries")
    multiplier = privacy.calibrate_sigma(
        target_epsilon, delta=delta, count=num_queries, accountant=accountant
    )
    return float(multiplier * PRIVATE_KNN_SENSITIVITY)


def private_knn_labels(
    key: jax.Array,
    query_features: jax.Array,
    client_features: jax.Array,
    client_labels: jax.Array,
    *,
    k: int,
    num_classes: int,
    sigma: float,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> tuple[jax.Array, privacy.GaussianRelease]:
    """Private-kNN labels: argmax of each query's vote histogram plus `N(0, sigma²)` noise.

    Args:
      key: JAX PRNG key; the noise depends on it alone, so use a fresh key per release.
      query_features: [Q, D] features of the samples to label (Q >= 1).
      client_features: [N, D] features of the client's labeled private samples.
      client_labels: [N] integer labels in [0, num_classes).
      k: neighbours per query, 1 <= k <= N.
      num_classes: number of classes C >= 1.
      sigma: standard deviation of the noise added to every vote count, > 0. The noise
        multiplier is `sigma / √2` (see the module docstring).
      metric: 'l2' or 'cosine'.
      chunk_size: queries per chunk, >= 1.

    Returns:
      `(labels, release)`: [Q] int32 labels and the `GaussianRelease` with
      `noise_multiplier = sigma / √2`, `count = Q`, `name = 'private_knn_votes'`, to be
      recorded in the run's `PrivacyLedger`.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5, task (c); Zhu et al.,
      Private-kNN, CVPR 2020; Papernot et al., PATE, ICLR 2018 (noisy argmax).
    """
    # The release checks sigma; building it for one query first fails fast on a bad sigma.
    private_knn_release(sigma=sigma, num_queries=1)
    votes_QxC = knn_votes(
        query_features,
        client_features,
        client_labels,
        k=k,
        num_classes=num_classes,
        metric=metric,
        chunk_size=chunk_size,
    )
    return release_knn_labels(key, votes_QxC, sigma=sigma)


def release_knn_labels(
    key: jax.Array, votes: jax.Array, *, sigma: float
) -> tuple[jax.Array, privacy.GaussianRelease]:
    """The released labels of noise-free vote histograms: argmax of votes + N(0, sigma²).

    The second half of `private_knn_labels`, for callers that reuse one `knn_votes`
    result at several noise levels (the same key gives the same noise draw).

    Args:
      key: JAX PRNG key; the noise depends on it alone.
      votes: [Q, C] vote histograms from `knn_votes` (Q >= 1).
      sigma: noise std in votes, > 0 (the noise multiplier is `sigma / √2`).

    Returns:
      `(labels, release)` as in `private_knn_labels`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> labels, release = release_knn_labels(jax.random.key(0), jnp.array([[9, 1]]), sigma=0.5)
      >>> labels.tolist(), release.count
      ([0], 1)

    References:
      Papernot et al., PATE, ICLR 2018 (noisy argmax); Zhu et al., Private-kNN, CVPR 2020.
    """
    votes_QxC = jnp.asarray(votes)
    if votes_QxC.ndim != 2 or votes_QxC.shape[0] < 1 or votes_QxC.shape[1] < 1:
        raise ValueError(
            f"votes must be a [num_queries, num_classes] histogram array with at least one "
            f"row and column (from knn_votes), got shape {votes_QxC.shape}."
        )
    release = private_knn_release(sigma=sigma, num_queries=votes_QxC.shape[0])
    return _noisy_argmax(key, votes_QxC, jnp.float32(sigma)), release


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "metric", "chunk_size"))
def _knn_votes(
    query_QxD: jax.Array,
    client_NxD: jax.Array,
    labels_N: jax.Array,
    *,
    k: int,
    num_classes: int,
    metric: str,
    chunk_size: int,
) -> jax.Array:
    """Jitted, chunked kNN vote counting on checked inputs."""

    def votes_chunk(query_CxD: jax.Array) -> jax.Array:
        if metric == "l2":  # squared distances rank the same and skip the sqrt
            d_CxN = sq_euclidean(query_CxD, client_NxD)
        else:
            d_CxN = pairwise_distance(query_CxD, client_NxD, metric=metric)
        # top_k orders -0.0 below +0.0; one sign of zero keeps exact ties broken by index.
        d_CxN = jnp.where(d_CxN == 0.0, 0.0, d_CxN)
        _, nearest_CxK = lax.top_k(-d_CxN, k)
        one_hot_CxKxC = jax.nn.one_hot(labels_N[nearest_CxK], num_classes, dtype=jnp.int32)
        return jnp.sum(one_hot_CxKxC, axis=1)

    return map_row_chunks(votes_chunk, query_QxD, chunk_size=chunk_size)


@jax.jit
def _noisy_argmax(key: jax.Array, votes_QxC: jax.Array, sigma: jax.Array) -> jax.Array:
    """argmax over classes of votes + sigma * N(0, I), drawn from key."""
    noise_QxC = jax.random.normal(key, votes_QxC.shape, jnp.float32)
    return jnp.argmax(votes_QxC.astype(jnp.float32) + sigma * noise_QxC, axis=-1).astype(jnp.int32)


def _check_inputs(
    query: Any, client: Any, labels: Any, *, k: Any, num_classes: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Checks shapes, dtypes, finiteness, k and the label range; returns float32 arrays."""
    query, client = jnp.asarray(query), jnp.asarray(client)
    for name, x in (("query_features", query), ("client_features", client)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be a [rows, feature_dim] array, got shape {x.shape}.")
        if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
            raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}.")
        if x.shape[0] < 1:
            raise ValueError(f"{name} must hold at least one row, got shape {x.shape}.")
    if query.shape[1] != client.shape[1]:
        raise ValueError(
            f"query_features has feature dim {query.shape[1]} but client_features has "
            f"{client.shape[1]}; both must come from the same feature extractor."
        )
    num_classes = check_positive_int(num_classes, "num_classes")
    k = check_positive_int(k, "k")
    if k > client.shape[0]:
        raise ValueError(
            f"k={k} exceeds the number of client samples {client.shape[0]}; use "
            f"k <= {client.shape[0]}."
        )
    labels = check_labels(labels, "client_labels", length=client.shape[0], num_classes=num_classes)
    query, client = query.astype(jnp.float32), client.astype(jnp.float32)
    for name, x in (("query_features", query), ("client_features", client)):
        if not isinstance(x, jax.core.Tracer) and not bool(all_finite(x)):
            raise ValueError(f"{name} contains NaN or inf; clean the features first.")
    return query, client, labels.astype(jnp.int32)
