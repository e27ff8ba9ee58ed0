"""What "train on S" means for each task: the training set, its step, and its costs.

`TASKS` maps `config.task` to its `Task`: how S becomes a training set, and what the
cloud prepares once per client domain (the teacher of task (b)). Local, the client's own
labeled data, is the same in every task (`local`).

- selective_labeling: S gets its true labels from human labelers; selected images of the
  unrelated domains are junk (label -1) and are rejected, though they cost budget;
  supervised training or FixMatch with the unlabeled pool.
- model_compression: a teacher trained on the labeled pool is distilled into the small
  CNN on S (no labels needed, so junk images are kept).
- client_labeling: the client labels S with Private-kNN on its features; its release is
  composed with ECOS's in a `PrivacyLedger`.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 5.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import costs, distances, privacy, selection, tasks, train
from ecos_jax.keys import named_key
from experiments import common
from experiments.domain import DomainContext, Teacher, init_state

__all__ = ["TASKS", "Run", "Task", "TrainingSet", "local", "train_teacher"]


class Run(NamedTuple):
    """One training run of the sweep: the same S as `sampling_quality` for the same seed."""

    seed: int
    epsilon: float  # target ε of the ECOS score release (the report ε for the others)
    budget: int  # 0 for the budget-free references
    method: str

    @property
    def name(self) -> str:
        """The run's folder under runs/<domain>/."""
        return f"{self.method}_b{self.budget}_eps{self.epsilon:g}_s{self.seed}"


class TrainingSet(NamedTuple):
    """What the model trains on, how, and what building it cost the client."""

    images: np.ndarray  # [S, H, W, C] uint8
    targets: np.ndarray  # labels [S] int, or the teacher's logits [S, L]
    step_fn: Callable = train.train_step
    unlabeled: np.ndarray | None = None  # FixMatch's unlabeled pool [N, H, W, C]
    client_macs: int = 0  # the client's MACs for this set, beyond the selection's
    row: dict[str, Any] | None = None  # extra fields of the run's metrics row


class Task(NamedTuple):
    """A task: S (pool indices [B], None for Full pool) to its `TrainingSet`, and what the
    cloud prepares once per client domain (None: nothing)."""

    training_set: Callable[[DomainContext, Run, Any, selection.SelectionCost], TrainingSet]
    prepare: Callable[[DomainContext], Teacher] | None = None


def _pool_rows(idx):
    """Index of S in the pool arrays; None (Full pool) is the whole pool."""
    return slice(None) if idx is None else idx


def local(ctx: DomainContext, run: Run, idx, cost) -> TrainingSet:
    """The client's own labeled data, trained on by the client itself (its MACs)."""
    del run, idx, cost
    tcfg, client = ctx.config.train, ctx.bench.split.client
    macs = costs.TRAIN_MACS_PER_FORWARD * ctx.model_macs * tcfg.num_steps * tcfg.batch_size
    return TrainingSet(client.images, client.labels, client_macs=macs)


def _fixmatch_step(tcfg) -> Callable:
    """`train.fixmatch_step` with the trainer block's threshold τ and weight λ_u."""
    return functools.partial(
        train.fixmatch_step, threshold=tcfg.fixmatch.threshold, lambda_u=tcfg.fixmatch.lambda_u
    )


def labeled_by_humans(ctx: DomainContext, run: Run, idx, cost) -> TrainingSet:
    """The human labelers' answer for S: true labels, junk (label -1) rejected."""
    del run, cost
    split, tcfg = ctx.bench.split, ctx.config.train
    labels = np.asarray(split.pool_oracle.labels)[_pool_rows(idx)]
    keep = labels >= 0
    images, labels = split.pool_images[_pool_rows(idx)][keep], labels[keep]
    if tcfg.mode != "fixmatch":
        return TrainingSet(images, labels)
    return TrainingSet(images, labels, _fixmatch_step(tcfg), unlabeled=split.pool_images)


def distilled_from_teacher(ctx: DomainContext, run: Run, idx, cost) -> TrainingSet:
    """S with the teacher's logits as targets, every selected image kept."""
    del run, cost
    rows = _pool_rows(idx)
    step_fn = functools.partial(train.distill_step, temperature=ctx.config.distill.temperature)
    return TrainingSet(ctx.bench.split.pool_images[rows], ctx.teacher.logits[rows], step_fn)


def train_teacher(ctx: DomainContext) -> Teacher:
    """Trains (or restores) the cloud's teacher on the labeled pool; its logits on the pool."""
    split, tcfg = ctx.bench.split, ctx.config.teacher
    labels = np.asarray(split.pool_oracle.labels)
    keep = labels >= 0
    root = jax.random.key(int(tcfg.seed))
    init_key, fit_key = named_key(root, "init"), named_key(root, "fit")
    state = init_state(init_key, tcfg, ctx.num_classes, split.test.images[:1])
    state, _ = train.fit(
        fit_key,
        state,
        split.pool_images[keep],
        labels[keep],
        num_steps=tcfg.num_steps,
        batch_size=min(tcfg.batch_size, int(keep.sum())),
        workdir=ctx.domain_dir / "teacher",
        log_every=max(1, tcfg.num_steps // 10),
        augment=tcfg.augment,
        progress=False,
    )
    accuracy = train.evaluate(state, split.test.images, split.test.labels)["accuracy"]
    return Teacher(train.predict_logits(state, split.pool_images), accuracy)


def labeled_by_client_knn(ctx: DomainContext, run: Run, idx, cost) -> TrainingSet:
    """Private-kNN labels of S from the client, and the composed ε of the whole run.

    `config.knn.mechanism` 'subsampled' (Private-kNN as published,
    `tasks.subsampled_knn_labels`): the answered queries train a FixMatch student with
    the pool as unlabeled data. 'full_set': the earlier full-set mechanism
    (`tasks.private_knn_labels`), supervised on every released label.

    With `config.knn.rounds` R > 1 the kNN space is refined as Private-kNN does: S (in
    query order) and the answer budget are split into R parts; round 1 labels its part
    in `config.knn.space`, and each later round labels its part in the penultimate
    features of a student trained on the labels released so far (`_refined_space`).
    Every round's releases go into the ledger; the noise is calibrated once for all R
    rounds together (Q screened queries and `max_answers` answers in all), so the total
    ε is the same as with one round.
    """
    if ctx.config.knn.mechanism == "full_set":
        return _full_set_knn(ctx, run, idx, cost)
    config, kcfg = ctx.config, ctx.config.knn
    pool_knn, client_knn = ctx.knn_features
    space = common.parse_space(kcfg.space, "config.knn.space")
    ecos = ctx.rounds[(run.seed, run.epsilon)] if run.method == "ecos" else None
    idx = np.asarray(idx)[common.method_query_order(idx, run.seed, kcfg.query_order, ecos)]
    num_queries = len(idx)
    client_labels = ctx.bench.features.client_labels
    num_client = len(client_labels)
    truth = np.asarray(ctx.bench.split.pool_oracle.labels)[idx]
    budget = min(int(kcfg.max_answers), num_queries)
    num_rounds = min(int(kcfg.rounds), budget)
    ecos_release = None if ecos is None else ecos.privacy.release
    private = not math.isinf(kcfg.total_epsilon)
    scales = (None, None)
    if private:
        scales = _knn_noise(
            float(kcfg.total_epsilon),
            float(config.ecos.delta),
            float(kcfg.sampling_rate),
            num_queries,
            budget,
            kcfg.screen_ratio,
            ecos_release,
        )
    labels = np.full(num_queries, tasks.NO_LABEL, np.int32)
    answered = np.zeros(num_queries, bool)
    passed = np.zeros(num_queries, bool)
    releases: list = []
    round_accuracy: list[float | None] = []
    bytes_down = macs = 0
    query_space, client_space, metric = pool_knn[idx], client_knn, space.metric
    parts = np.array_split(np.arange(num_queries), num_rounds)
    budgets = [len(b) for b in np.array_split(np.arange(budget), num_rounds)]
    for r, (rows, round_budget) in enumerate(zip(parts, budgets, strict=True)):
        query = query_space[rows]
        if r > 0 and np.any(labels >= 0):  # no label yet: the round keeps the space
            # The student is public (trained on public images and released labels); the
            # cloud sends it down, the client embeds its own data with it.
            query, client_space, student_bytes = _refined_space(ctx, run, r, idx, labels, rows)
            metric = "l2"
            bytes_down += student_bytes
            macs += num_client * ctx.model_macs
        name = f"private_knn/{run.method}/b{num_queries}" + (f"/round{r + 1}" if r else "")
        out = _label_round(
            ctx, run, query, client_space, round_budget, scales, name, metric, private
        )
        labels[rows], answered[rows], passed[rows] = out.labels, out.answered, out.passed
        releases += list(out.releases)
        got = out.labels >= 0
        round_accuracy.append(
            float(np.mean(out.labels[got] == truth[rows][got])) if got.any() else None
        )
        # the cloud sends the queries' kNN features down (float32); the client computes
        # the distances of every screened and every answered query to its rows
        bytes_down += len(rows) * query.shape[1] * 4
        searched = int(np.sum(out.answered)) + (len(rows) if scales[0] is not None else 0)
        macs += searched * num_client * query.shape[1]

    row: dict[str, Any] = dict(knn_k=int(kcfg.k), knn_sampling_rate=float(kcfg.sampling_rate))
    total = None
    if private:
        ledger = privacy.PrivacyLedger(releases)
        if ecos_release is not None:
            ledger.record(ecos_release)
        total = ledger.epsilons(delta=config.ecos.delta)
        row.update(
            knn_screen_scale=scales[0],
            knn_answer_scale=scales[1],
            knn_passed_fraction=float(np.mean(passed)),
            # ε of each stage alone (RDP), for the label study's "ε per stage"
            epsilon_labels_rdp=privacy.epsilon(releases, delta=config.ecos.delta),
        )
    has = labels >= 0
    row.update(
        # of the released labels, how many are right (junk has no digit class: wrong)
        label_accuracy=float(np.mean(labels[has] == truth[has])) if has.any() else None,
        answered_fraction=float(np.mean(answered)),
        labeled_fraction=float(np.mean(has)),
        num_labeled=int(has.sum()),
        # the queries' features and (R > 1) the students down, one int32 label a query up
        bytes_down=cost.bytes_down + bytes_down,
        bytes_up=cost.bytes_up + num_queries * 4,
    )
    if num_rounds > 1:
        row["knn_rounds"] = num_rounds
        row["label_accuracy_rounds"] = round_accuracy
    if run.method != "oracle":
        row.update(
            epsilon_rdp=None if total is None else total["rdp"],
            epsilon_pld=None if total is None else total["pld"],
        )
    # φ of the client's data when the selection did not featurise it (the kNN space's
    # extractor on the client's data, HOG by default, is not counted: it has no jitted
    # forward to count)
    macs += num_client * (ctx.phi_macs or 0) if run.method in ("random", "k_center") else 0
    images = ctx.bench.split.pool_images[idx][has]
    return TrainingSet(
        images,
        labels[has],
        _fixmatch_step(config.train),
        unlabeled=ctx.bench.split.pool_images,
        client_macs=macs,
        row=row,
    )


def _label_round(ctx, run, query, client_space, budget, scales, name, metric, private):
    """One round's `tasks.KnnAnswers` for `query` [Q_r, D]: the first `budget` of them
    answered, by Private-kNN, or (not `private`) by noise-free full-set votes."""
    config, kcfg = ctx.config, ctx.config.knn
    client_labels = ctx.bench.features.client_labels
    if not private:
        # the non-private reference: noise-free votes of the whole client set, ε = ∞
        votes = tasks.knn_votes(
            query[:budget],
            client_space,
            client_labels,
            k=min(int(kcfg.k), len(client_labels)),
            num_classes=ctx.num_classes,
            metric=metric,
            chunk_size=config.chunk_size,
        )
        labels = np.full(len(query), tasks.NO_LABEL, np.int32)
        labels[:budget] = np.argmax(votes, axis=-1)
        answered = np.arange(len(query)) < budget
        return tasks.KnnAnswers(labels, answered, answered, (), float(kcfg.sampling_rate))
    screen_scale, answer_scale = scales
    return tasks.subsampled_knn_labels(
        query,
        client_space,
        client_labels,
        k=int(kcfg.k),
        num_classes=ctx.num_classes,
        sampling_rate=float(kcfg.sampling_rate),
        threshold=None if screen_scale is None else float(kcfg.threshold_fraction) * kcfg.k,
        screen_scale=screen_scale,
        answer_scale=answer_scale,
        max_answers=budget,
        randomness=common.client_randomness(config, run.seed, name),
        metric=metric,
        chunk_size=config.chunk_size,
    )


def _refined_space(ctx, run, r: int, idx, labels, rows):
    """The kNN space of round `r + 1`: the penultimate features of a student trained on
    the labels released so far, for the round's queries `idx[rows]` and the client's data
    (unit-normalised, so L2 ranks as cosine), and the student's size in bytes.

    The student is FixMatch with the pool unlabeled, `config.knn.refine_steps` steps,
    from its own seed (`knn_round<r>` keys of the run's seed); its folder is
    `runs/<domain>/<run>/knn_round<r>` (checkpoint, metrics, TensorBoard).
    """
    config, tcfg = ctx.config, ctx.config.train
    split = ctx.bench.split
    has = labels >= 0
    images = split.pool_images[idx][has]
    root = named_key(jax.random.key(run.seed), f"knn_round{r}")
    state = init_state(named_key(root, "init"), tcfg, ctx.num_classes, images[:1])
    batch_size = min(int(tcfg.batch_size), len(images))
    state, _ = train.fit(
        named_key(root, "fit"),
        state,
        images,
        labels[has],
        num_steps=int(config.knn.refine_steps),
        batch_size=batch_size,
        workdir=ctx.domain_dir / run.name / f"knn_round{r}",
        log_every=max(1, int(config.knn.refine_steps) // 10),
        augment=tcfg.augment,
        progress=False,
        step_fn=_fixmatch_step(tcfg),
        unlabeled_images=split.pool_images,
        unlabeled_batch_size=tcfg.fixmatch.unlabeled_ratio * batch_size,
    )
    embed = lambda images: np.asarray(
        distances.normalize_rows(train.predict_features(state, images)), np.float32
    )
    query, client = embed(split.pool_images[idx[rows]]), embed(split.client.images)
    size = sum(np.asarray(x).nbytes for x in jax.tree.leaves((state.params, state.batch_stats)))
    return query, client, int(size)


@functools.lru_cache(maxsize=64)
def _knn_noise(total_epsilon, delta, rate, num_queries, budget, screen_ratio, base):
    """(σ1, σ2) for the run's total ε, the ECOS release (if any) included; cached, since
    every seed of a method shares it."""
    return tasks.calibrate_knn_noise(
        total_epsilon,
        delta=delta,
        sampling_rate=rate,
        num_queries=num_queries,
        max_answers=budget,
        screen_ratio=screen_ratio,
        base_releases=() if base is None else (base,),
    )


def _full_set_knn(ctx: DomainContext, run: Run, idx, cost) -> TrainingSet:
    """The earlier mechanism: every client row votes, Gaussian histogram noise, no subsampling."""
    config, feats = ctx.config, ctx.bench.features
    kcfg = config.knn
    query = feats.pool_features[idx]
    num_queries, dim = query.shape
    num_client = len(feats.client_labels)
    k = min(int(kcfg.k), num_client)
    knn_args = dict(
        k=k, num_classes=ctx.num_classes, metric=config.metric, chunk_size=config.chunk_size
    )
    if math.isinf(kcfg.target_epsilon):
        # the non-private reference: noise-free votes, ε = ∞ whatever the selection
        votes = tasks.knn_votes(query, feats.client_features, feats.client_labels, **knn_args)
        labels, sigma, total = jnp.argmax(votes, axis=-1), 0.0, None
    else:
        sigma = tasks.calibrate_vote_sigma(
            kcfg.target_epsilon, delta=config.ecos.delta, num_queries=num_queries
        )
        release_name = f"private_knn/{run.method}/b{len(idx)}"
        labels, release = tasks.private_knn_labels(
            query,
            feats.client_features,
            feats.client_labels,
            sigma=sigma,
            randomness=common.client_randomness(config, run.seed, release_name),
            **knn_args,
        )
        ledger = privacy.PrivacyLedger([release])
        if run.method == "ecos":
            ledger.record(ctx.rounds[(run.seed, run.epsilon)].privacy.release)
        total = ledger.epsilons(delta=config.ecos.delta)
    labels = np.asarray(labels)
    truth = np.asarray(ctx.bench.split.pool_oracle.labels)[idx]
    row = dict(
        label_accuracy=float(np.mean(labels == truth)),
        knn_k=k,
        knn_sigma=sigma,
        # the cloud sends φ(S) down (float32) and gets one label per query back (int32)
        bytes_down=cost.bytes_down + num_queries * dim * 4,
        bytes_up=cost.bytes_up + num_queries * 4,
    )
    if run.method != "oracle":
        row.update(
            epsilon_rdp=None if total is None else total["rdp"],
            epsilon_pld=None if total is None else total["pld"],
        )
    # the kNN itself, and φ of the client's data when the selection did not featurise it
    macs = num_queries * num_client * dim
    macs += num_client * (ctx.phi_macs or 0) if run.method in ("random", "k_center") else 0
    return TrainingSet(ctx.bench.split.pool_images[idx], labels, client_macs=macs, row=row)


TASKS: dict[str, Task] = {
    "selective_labeling": Task(labeled_by_humans),
    "model_compression": Task(distilled_from_teacher, prepare=train_teacher),
    "client_labeling": Task(labeled_by_client_knn),
}
