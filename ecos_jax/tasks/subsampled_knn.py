"""Private-kNN as published: a Poisson subsample per query, noisy screening, noisy argmax.

The cloud sends the features of the samples it wants labeled (the queries, public). For
each query, in order, the client:

1. **Screens.** It draws a Poisson subsample of its labeled rows at rate γ
   (`ecos_jax.subsampling.poisson_masks`); the `k` canonical nearest rows of the
   subsample vote (`ecos_jax.canonical`: each row's place depends on the row and the
   query alone, ties to the lower index). The votes form `L + 1` bins: one per class and a
   *short* bin holding `k − (rows that voted)`, so every histogram sums to `k`. It
   releases whether `max_c votes[c] + N_Z(0, σ1²) > T` (the top class count only).
   With `threshold=None` there is no screening (and no screening cost): every query is
   a candidate.
2. **Answers** the queries that pass, up to `max_answers` of them in query order. It
   draws a fresh subsample, votes again and releases `argmax(votes + N_Z(0, σ2²))` over
   the `L + 1` bins; when the short bin wins, the query gets no label.

Sensitivity, add or remove one client sample `z` (`k` fixed). When `z` is not in the
subsample, or not among the `k` nearest, nothing changes. Otherwise `z` takes the place of
the `k`-th nearest row or of one short vote: one vote moves between two bins (`+1`, `−1`).
So the screening statistic moves by at most 1 (`coordinates=1`) and the answer histogram
by one vote between two bins (`coordinates=2`, L2 `√2`); the short bin is what makes the
second case hold when the subsample holds fewer than `k` rows.

Privacy. Each screen and each answer is a `privacy.SubsampledDiscreteGaussianRelease`
(its own subsample, exact discrete accounting). The answer is run or not depending on
the screen's released outcome, so the composition is adaptive; its cost is fixed in
advance by charging `max_answers` answer releases (every query by default), whatever
the screens decide. The Private-kNN paper charged only the screen for unanswered
queries with one subsample shared by screen and answer: that charge depends on the
private data and is not a DP guarantee, and a shared subsample would make screen and
answer one mechanism that is paid in full on every query. Fresh subsamples and a fixed
answer budget make the saving legitimate: a smaller `max_answers` costs less.

Example:
  >>> import jax, numpy as np
  >>> from ecos_jax import noise
  >>> client = np.repeat(np.array([[0.0], [5.0]]), 50, axis=0)
  >>> labels = np.repeat(np.array([0, 1]), 50)
  >>> out = subsampled_knn_labels(
  ...     np.array([[0.1], [4.9]]), client, labels, k=10, num_classes=2, sampling_rate=0.5,
  ...     threshold=5, screen_scale=1.0, answer_scale=1.0,
  ...     randomness=noise.simulation(jax.random.key(0)))
  >>> out.labels.tolist(), [r.count for r in out.releases]
  ([0, 1], [2, 2])

References:
  Zhu, Yu, Wang. "Private-kNN: Practical Differential Privacy for Computer Vision."
  CVPR 2020. Papernot et al. "Scalable Private Learning with PATE." ICLR 2018
  (confident aggregation). Hong, Lyu, Zhou, Spranger. NeurIPS 2022 (arXiv:2210.12575),
  Sec. 5, task (c).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import canonical, keys, noise, privacy, subsampling
from ecos_jax._validate import finite_in_range, positive_finite, positive_int
from ecos_jax.distances import Metric, check_metric, map_row_chunks
from ecos_jax.tasks.private_knn import _check_inputs

__all__ = [
    "ANSWER_RELEASE",
    "NO_LABEL",
    "SCREEN_RELEASE",
    "KnnAnswers",
    "answer_releases",
    "calibrate_knn_noise",
    "subsampled_knn_labels",
    "subsampled_votes",
]

#: Label of a query that was not answered (screened out, over budget, or short bin won).
NO_LABEL = -1

#: Names of the two releases in a `PrivacyLedger`.
SCREEN_RELEASE = "private_knn_screen"
ANSWER_RELEASE = "private_knn_answer"


class KnnAnswers(NamedTuple):
    """What the client releases for a batch of queries, and what it costs.

    Attributes:
      labels: [Q] int32 released labels, `NO_LABEL` (−1) where there is none.
      passed: [Q] bool, the released screening outcomes.
      answered: [Q] bool, the queries that got an answer release (passed and in budget).
      releases: `(screen, answer)` `SubsampledDiscreteGaussianRelease`s to record in the
        run's `PrivacyLedger`; the answer's count is the budget `max_answers`.
      sampling_rate: γ as used (rounded up to the sampler's 2^-64 grid).
    """

    labels: np.ndarray
    passed: np.ndarray
    answered: np.ndarray
    releases: tuple[privacy.SubsampledDiscreteGaussianRelease, ...]
    sampling_rate: float


def subsampled_votes(
    query_features: Any,
    client_features: Any,
    client_labels: Any,
    masks: Any,
    *,
    k: int,
    num_classes: int,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> np.ndarray:
    """Noise-free votes of each query's `k` nearest rows within its own subsample.

    Args:
      query_features: [Q, D] features of the queries (public).
      client_features: [N, D] features of the client's labeled rows.
      client_labels: [N] integer labels in [0, num_classes).
      masks: [Q, N] bool, row n is in query q's subsample iff `masks[q, n]`.
      k: votes per query, >= 1.
      num_classes: L >= 1.
      metric: 'l2' or 'cosine'.
      chunk_size: queries per chunk (one [chunk, N] distance block at a time).

    Returns:
      [Q, L + 1] int64: the class votes and, last, the short bin `k − (rows that voted)`;
      every row sums to `k`. Rows outside a query's subsample never vote.

    Example:
      >>> import numpy as np
      >>> subsampled_votes(np.zeros((1, 1)), np.array([[0.0], [1.0], [2.0]]),
      ...                  np.array([1, 0, 0]), np.array([[False, True, True]]),
      ...                  k=3, num_classes=2).tolist()
      [[2, 0, 1]]
    """
    query, client, labels = _check_inputs(
        query_features, client_features, client_labels, k=k, num_classes=num_classes
    )
    check_metric(metric)
    chunk_size = positive_int(chunk_size, "chunk_size")
    masks_QxN = np.asarray(masks)
    if masks_QxN.dtype != bool or masks_QxN.shape != (query.shape[0], client.shape[0]):
        raise ValueError(
            "masks must be a bool [num_queries, num_client_rows] array (from "
            f"subsampling.poisson_masks); got dtype {masks_QxN.dtype} and "
            f"{masks_QxN.ndim} dims with {masks_QxN.shape[0] if masks_QxN.ndim else 0} rows "
            f"for {query.shape[0]} queries."
        )
    k, num_classes = int(k), int(num_classes)
    out = np.zeros((query.shape[0], num_classes + 1), np.int64)
    out[:, num_classes] = k
    if client.shape[0] == 0:
        return out
    num_votes = min(k, client.shape[0])
    votes_QxL, voted_Q, ambiguous_Q = _fast_subsampled_votes(
        query,
        client,
        labels,
        jnp.asarray(masks_QxN),
        num_votes=num_votes,
        num_classes=num_classes,
        metric=metric,
        chunk_size=chunk_size,
    )
    out[:, :num_classes] = np.asarray(votes_QxL)
    out[:, num_classes] = k - np.asarray(voted_Q)
    rows = np.flatnonzero(np.asarray(ambiguous_Q))
    if rows.size:
        query_np, client_np, labels_np = np.asarray(query), np.asarray(client), np.asarray(labels)
        for row in rows:
            members = np.flatnonzero(masks_QxN[row])
            chosen = canonical.resolve_rows(
                query_np[row : row + 1],
                client_np[members],
                num_votes=min(num_votes, members.size),
                metric=metric,
            )[0]
            out[row, :num_classes] = np.bincount(labels_np[members[chosen]], minlength=num_classes)
            out[row, num_classes] = k - chosen.size
    return out


def subsampled_knn_labels(
    query_features: Any,
    client_features: Any,
    client_labels: Any,
    *,
    k: int,
    num_classes: int,
    sampling_rate: float,
    threshold: float | None,
    screen_scale: float | None,
    answer_scale: float,
    max_answers: int | None = None,
    randomness: noise.Randomness | None = None,
    metric: Metric = "l2",
    chunk_size: int = 1024,
) -> KnnAnswers:
    """Private-kNN labels of the queries: subsample, screen, answer (see the module docstring).

    Args:
      query_features: [Q, D] features of the queries (public).
      client_features: [N, D] features of the client's labeled rows (private).
      client_labels: [N] labels in [0, num_classes) (private).
      k: votes per query within its subsample, >= 1.
      num_classes: L >= 1.
      sampling_rate: γ in (0, 1], each row's inclusion probability in each subsample.
      threshold: T, a query passes when its top class count plus screening noise exceeds T;
        None: no screening (every query passes, nothing is charged for it).
      screen_scale: σ1 > 0, the screening noise's parameter (in votes); None without
        screening.
      answer_scale: σ2 > 0, the noise on every bin of the answer histogram (in votes).
      max_answers: the answer budget, 1..Q (None: Q); the cost charges this many answers.
      randomness: `noise.secure()` (also None) or `noise.simulation(key)`; a simulation key
        is split into four named keys (screen and answer subsamples and noise).
      metric: 'l2' or 'cosine'.
      chunk_size: queries per chunk.

    Returns:
      `KnnAnswers`.
    """
    query, client, labels = _check_inputs(
        query_features, client_features, client_labels, k=k, num_classes=num_classes
    )
    rate, threshold, screen_scale, answer_scale = _check_noise(
        sampling_rate, threshold, screen_scale, answer_scale
    )
    num_queries, num_rows = query.shape[0], client.shape[0]
    budget = _check_budget(max_answers, num_queries)
    randomness = noise.resolve(randomness)
    rate_used = subsampling.poisson_rate(rate)
    vote_args = dict(k=k, num_classes=num_classes, metric=metric, chunk_size=chunk_size)
    if threshold is None:
        passed = np.ones(num_queries, bool)
    else:
        screen_masks, _ = subsampling.poisson_masks(
            num_queries=num_queries,
            num_rows=num_rows,
            rate=rate,
            randomness=_part(randomness, "screen_masks"),
        )
        screen_votes = subsampled_votes(query, client, labels, screen_masks, **vote_args)
        top_Q = screen_votes[:, :num_classes].max(axis=1)
        noisy_top_Q = noise.add_discrete_gaussian(
            top_Q, scale=screen_scale, randomness=_part(randomness, "screen_noise")
        )
        passed = noisy_top_Q > threshold
    # The answer budget goes to the first passing queries, in query order.
    answered = passed & (np.cumsum(passed) <= budget)
    labels_Q = np.full(num_queries, NO_LABEL, np.int32)
    rows = np.flatnonzero(answered)
    if rows.size:
        # One subsample per query, drawn for every query so its shape reveals nothing;
        # only the answered rows' votes are computed and released.
        answer_masks, _ = subsampling.poisson_masks(
            num_queries=num_queries,
            num_rows=num_rows,
            rate=rate,
            randomness=_part(randomness, "answer_masks"),
        )
        votes = subsampled_votes(query[rows], client, labels, answer_masks[rows], **vote_args)
        noisy = noise.add_discrete_gaussian(
            votes, scale=answer_scale, randomness=_part(randomness, "answer_noise")
        )
        winner = np.argmax(noisy, axis=1)
        labels_Q[rows] = np.where(winner < num_classes, winner, NO_LABEL)
    return KnnAnswers(
        labels=labels_Q,
        passed=passed,
        answered=answered,
        releases=answer_releases(
            screen_scale=screen_scale,
            answer_scale=answer_scale,
            sampling_rate=rate_used,
            num_queries=num_queries,
            max_answers=budget,
        ),
        sampling_rate=rate_used,
    )


def answer_releases(
    *,
    screen_scale: float | None,
    answer_scale: float,
    sampling_rate: float,
    num_queries: int,
    max_answers: int | None = None,
) -> tuple[privacy.SubsampledDiscreteGaussianRelease, ...]:
    """The cost of `subsampled_knn_labels`: Q screens (none when `screen_scale` is None)
    and `max_answers` answers.

    Example:
      >>> screen, answer = answer_releases(screen_scale=75.0, answer_scale=25.0,
      ...                                  sampling_rate=0.15, num_queries=1000)
      >>> (screen.coordinates, screen.count), (answer.coordinates, answer.count)
      ((1, 1000), (2, 1000))
    """
    num_queries = positive_int(num_queries, "num_queries")
    budget = _check_budget(max_answers, num_queries)
    answer = privacy.SubsampledDiscreteGaussianRelease(
        answer_scale, sampling_rate, count=budget, coordinates=2, name=ANSWER_RELEASE
    )
    if screen_scale is None:
        return (answer,)
    screen = privacy.SubsampledDiscreteGaussianRelease(
        screen_scale, sampling_rate, count=num_queries, coordinates=1, name=SCREEN_RELEASE
    )
    return (screen, answer)


def calibrate_knn_noise(
    target_epsilon: float,
    *,
    delta: float,
    sampling_rate: float,
    num_queries: int,
    max_answers: int | None = None,
    screen_ratio: float | None = 3.0,
    base_releases: tuple = (),
    accountant: str = "rdp",
    rel_tol: float = 1e-3,
) -> tuple[float, float]:
    """`(σ1, σ2)` with `σ1 = screen_ratio · σ2`, the smallest σ2 meeting `target_epsilon`
    (`σ1` is None when `screen_ratio` is None: no screening).

    The cost is that of `answer_releases` composed with `base_releases` (e.g. the ECOS
    score release of the same run), so the target can be the run's total ε. Bisection on
    σ2 (ε falls as σ2 grows), returning the upper end: the cost never exceeds the target.

    Args:
      target_epsilon: ε budget, finite and > 0.
      delta: δ in (0, 1).
      sampling_rate: γ in (0, 1] (rounded up to the sampler's grid before accounting).
      num_queries: Q >= 1.
      max_answers: the answer budget (None: Q).
      screen_ratio: σ1 / σ2 > 0 (Private-kNN's MNIST setting is 75 / 25 = 3); None for
        no screening.
      base_releases: releases already in the run's ledger.
      accountant: 'rdp' or 'pld'.
      rel_tol: relative tolerance on σ2.

    Returns:
      `(screen_scale, answer_scale)` as python floats.

    Example:
      >>> s1, s2 = calibrate_knn_noise(2.0, delta=1e-5, sampling_rate=0.2, num_queries=100)
      >>> releases = answer_releases(screen_scale=s1, answer_scale=s2,
      ...     sampling_rate=subsampling.poisson_rate(0.2), num_queries=100)
      >>> privacy.epsilon(releases, delta=1e-5) <= 2.0
      True
    """
    target_epsilon = positive_finite(target_epsilon, "target_epsilon")
    rate = subsampling.poisson_rate(_check_rate(sampling_rate))
    if screen_ratio is not None:
        screen_ratio = positive_finite(screen_ratio, "screen_ratio")
    rel_tol = positive_finite(rel_tol, "rel_tol")
    base = list(base_releases)
    base_cost = privacy.epsilon(base, delta=delta, accountant=accountant) if base else 0.0
    if base_cost >= target_epsilon:
        raise ValueError(
            f"base_releases already cost ε={base_cost:.4g} >= target_epsilon={target_epsilon}; "
            "raise the target or spend less on the earlier releases."
        )

    def cost(answer_scale: float) -> float:
        releases = answer_releases(
            screen_scale=None if screen_ratio is None else screen_ratio * answer_scale,
            answer_scale=answer_scale,
            sampling_rate=rate,
            num_queries=num_queries,
            max_answers=max_answers,
        )
        return privacy.epsilon([*base, *releases], delta=delta, accountant=accountant)

    lower, upper = 0.25, 1.0
    while cost(upper) > target_epsilon:
        lower, upper = upper, 2.0 * upper
    while lower > 1e-3 and cost(lower) <= target_epsilon:
        lower, upper = 0.5 * lower, lower
    while upper - lower > rel_tol * upper:
        mid = 0.5 * (lower + upper)
        if cost(mid) <= target_epsilon:
            upper = mid
        else:
            lower = mid
    return (None if screen_ratio is None else float(screen_ratio * upper)), float(upper)


@functools.partial(jax.jit, static_argnames=("num_votes", "num_classes", "metric", "chunk_size"))
def _fast_subsampled_votes(
    query_QxD: jax.Array,
    client_NxD: jax.Array,
    labels_N: jax.Array,
    masks_QxN: jax.Array,
    *,
    num_votes: int,
    num_classes: int,
    metric: str,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Class votes [Q, L] int32, rows that voted [Q] int32, and the undecided queries [Q]."""

    def chunk(query_CxD: jax.Array, mask_CxN: jax.Array):
        d_CxN, err_C = canonical.fast_distances(query_CxD, client_NxD, metric=metric)
        # Rows outside the subsample are infinitely far: they never vote, and they never
        # make a boundary ambiguous (certified_votes checks only finite neighbours).
        d_CxN = jnp.where(mask_CxN, d_CxN, jnp.inf)
        idx_CxV, ok_CxV, ambiguous_C = canonical.certified_votes(d_CxN, err_C, num_votes=num_votes)
        one_hot = jax.nn.one_hot(labels_N[idx_CxV], num_classes, dtype=jnp.int32)
        votes_CxL = jnp.sum(one_hot * ok_CxV[..., None].astype(jnp.int32), axis=1)
        return votes_CxL, jnp.sum(ok_CxV, axis=1, dtype=jnp.int32), ambiguous_C

    return map_row_chunks(chunk, query_QxD, masks_QxN, chunk_size=chunk_size)


def _check_noise(rate: Any, threshold: Any, screen_scale: Any, answer_scale: Any):
    """Validates γ, T, σ1, σ2 (public parameters), naming the argument."""
    rate = _check_rate(rate)
    if (threshold is None) != (screen_scale is None):
        raise ValueError(
            "threshold and screen_scale go together: give both to screen, or neither "
            f"(None) to answer without screening; got threshold={threshold!r}, "
            f"screen_scale={screen_scale!r}."
        )
    if threshold is None:
        return rate, None, None, positive_finite(answer_scale, "answer_scale")
    threshold = finite_in_range(threshold, "threshold", low=-math.inf)
    screen_scale = positive_finite(screen_scale, "screen_scale")
    answer_scale = positive_finite(answer_scale, "answer_scale")
    return rate, threshold, screen_scale, answer_scale


def _check_rate(rate: Any) -> float:
    """γ as a float in (0, 1], naming the argument."""
    rate = finite_in_range(rate, "sampling_rate", low=0.0, high=1.0)
    if rate == 0.0:
        raise ValueError("sampling_rate must be > 0: an empty subsample labels nothing.")
    return rate


def _check_budget(max_answers: Any, num_queries: int) -> int:
    if max_answers is None:
        return num_queries
    budget = positive_int(max_answers, "max_answers")
    if budget > num_queries:
        raise ValueError(
            f"max_answers={budget} must be <= the number of queries ({num_queries}); "
            "answers beyond it would be charged and never made."
        )
    return budget


def _part(randomness: noise.Randomness, name: str) -> noise.Randomness:
    """The named part of `randomness`: a fresh key per draw in simulation."""
    if isinstance(randomness, noise.SimulatedRandomness):
        return noise.simulation(keys.named_key(randomness.key, f"private_knn/{name}"))
    return randomness
