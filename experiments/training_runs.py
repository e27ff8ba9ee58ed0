"""The training runs of a downstream sweep: each run's training set and row (`prepare`),
then the runs trained and evaluated together (`train_together`, on `train.fit_runs`).

Every finished run leaves `runs/<domain>/<run>/result.json` with a fingerprint of the
settings it depends on; a rerun with the same fingerprint reads the row back instead of
training, and `train.fit_runs` resumes an interrupted one from its checkpoint. The run's
folder also holds the fingerprint it was started with (`fingerprint`): a folder started
with other settings is cleared before the run trains, so that its checkpoint is never
resumed as if it were this run's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from typing import Any, NamedTuple

import jax
import numpy as np

from ecos_jax import costs, metrics, selection, train
from ecos_jax.keys import named_key
from experiments import common
from experiments.domain import DomainContext, init_state
from experiments.training_sets import TASKS, Run, TrainingSet, local

__all__ = ["PendingRun", "fingerprint", "prepare", "train_together"]

FINGERPRINT_FILE = "fingerprint"  # in each run's folder: the settings it was started with

# The sweep's loops and the report's choices: a run's result does not depend on them.
_LOOP_FIELDS = ("client_domains", "seeds", "budgets", "epsilons", "methods", "variant")


def fingerprint(config, domain: str, name: str) -> str:
    """Hash of everything a run's result depends on (not the loops over other runs)."""
    relevant = config.to_dict()
    for field in (*_LOOP_FIELDS, "report_budget"):
        relevant.pop(field, None)
    text = json.dumps([relevant, domain, name], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class PendingRun(NamedTuple):
    """A run whose training set is built and whose row waits for its test accuracy."""

    run: Run
    data: TrainingSet
    row: dict[str, Any]
    fingerprint: str
    started: float


def prepare(
    ctx: DomainContext, run: Run, idx, cost: selection.SelectionCost
) -> dict[str, Any] | PendingRun:
    """The finished row of `run` if `runs/<domain>/<run>/result.json` holds one for these
    settings; otherwise its training set and the row so far (`train_together` ends it)."""
    config, feats = ctx.config, ctx.bench.features
    run_fingerprint = fingerprint(config, ctx.domain, run.name)
    done = ctx.domain_dir / run.name / "result.json"
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("fingerprint") == run_fingerprint:
            return previous["row"]

    _claim_run_dir(ctx.domain_dir / run.name, run_fingerprint)
    started = time.perf_counter()
    method = run.method
    row: dict[str, Any] = dict(
        task=config.task,
        client_domain=ctx.domain,
        method=method,
        budget=run.budget,
        epsilon_target=run.epsilon if method == "ecos" else None,
        seed=run.seed,
        epsilon_rdp=cost.epsilon_rdp,
        epsilon_pld=cost.epsilon_pld,
        bytes_down=cost.bytes_down,
        bytes_up=cost.bytes_up,
        # how the client's releases in this run were noised (None: it released nothing)
        randomness=config.ecos.randomness
        if method == "ecos" or (config.task == "client_labeling" and method != "local")
        else None,
    )
    if idx is not None:
        row["id_fraction"] = metrics.id_fraction(idx, feats.pool_domains, feats.client_domain)
    build = local if method == "local" else TASKS[config.task].training_set
    data = build(ctx, run, idx, cost)
    row.update(data.row or {})
    row["num_train"] = len(data.images)
    row["client_macs"] = int(_selection_macs(ctx, method) + data.client_macs)
    if len(data.images) == 0:
        raise ValueError(
            f"{method} at budget {run.budget} left no training examples for {ctx.domain} "
            "(every selected image was junk); raise config.budgets."
        )
    return PendingRun(run, data, row, run_fingerprint, started)


def _claim_run_dir(run_dir, run_fingerprint: str) -> None:
    """Makes `run_dir` this run's: a folder started with other settings (another
    fingerprint, or none, from before the marker existed) is removed, checkpoint and
    logs with it; then the fingerprint is written."""
    marker = run_dir / FINGERPRINT_FILE
    if run_dir.exists():
        started_with = marker.read_text().strip() if marker.exists() else None
        if started_with == run_fingerprint:
            return
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    common.atomic_write(marker, run_fingerprint + "\n")


def train_together(ctx: DomainContext, pending: list[PendingRun]) -> list[dict[str, Any]]:
    """Trains the pending runs, those of one step and batch shape together
    (`train.fit_runs`), evaluates them together on the test split, writes each run's
    result.json; returns their rows in order."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(pending):
        groups.setdefault(_group_key(ctx, p.data), []).append(i)
    rows: list[dict[str, Any] | None] = [None] * len(pending)
    test = ctx.bench.split.test
    for members in groups.values():
        group = [pending[i] for i in members]
        states = _fit_group(ctx, group)
        evals = train.evaluate_runs(states, test.images, test.labels)
        for i, p, ev in zip(members, group, evals, strict=True):
            row = dict(p.row, accuracy=ev["accuracy"], test_loss=ev["loss"])
            # training time shared by the group, split evenly
            row["seconds"] = round((time.perf_counter() - p.started) / len(group), 2)
            done = ctx.domain_dir / p.run.name / "result.json"
            common.atomic_write(done, json.dumps({"fingerprint": p.fingerprint, "row": row}) + "\n")
            rows[i] = row
    return rows


def _group_key(ctx: DomainContext, data: TrainingSet) -> tuple:
    """Runs with equal keys share one compiled step: the step, its static settings, the
    batch size and the unlabeled set."""
    step = data.step_fn
    if isinstance(step, functools.partial):
        step = (step.func, tuple(sorted(step.keywords.items())))
    return (step, _batch_size(ctx, data), None if data.unlabeled is None else id(data.unlabeled))


def _batch_size(ctx: DomainContext, data: TrainingSet) -> int:
    return min(int(ctx.config.train.batch_size), len(data.images))


def _selection_macs(ctx: DomainContext, method: str) -> int:
    """The client's MACs for the selection: φ of its data (ECOS, Oracle), ECOS's scores."""
    n_client = len(ctx.bench.split.client.labels)
    macs = n_client * (ctx.phi_macs or 0) if method in ("ecos", "oracle") else 0
    if method == "ecos":
        ecfg, dim = ctx.config.ecos, ctx.bench.features.client_features.shape[1]
        macs += costs.scoring_macs(n_client, ecfg.num_clusters, dim)
    return macs


def _fit_group(ctx: DomainContext, group: list[PendingRun]) -> list[train.TrainState]:
    """The group's training runs in one `fit_runs`: per seed the same init and batch seed
    for every method, so methods differ only in S."""
    tcfg = ctx.config.train
    first = group[0].data
    keys, states, data, workdirs, offset = [], [], [], [], 0
    for p in group:
        root = jax.random.key(p.run.seed)
        keys.append(named_key(root, "fit"))
        states.append(init_state(named_key(root, "init"), tcfg, ctx.num_classes, first.images[:1]))
        n = len(p.data.images)
        data.append(train.RunData(np.arange(offset, offset + n), p.data.targets))
        workdirs.append(ctx.domain_dir / p.run.name)
        offset += n
    bank = np.concatenate([p.data.images for p in group])
    batch_size = _batch_size(ctx, first)
    results = train.fit_runs(
        keys,
        states,
        bank,
        data,
        num_steps=tcfg.num_steps,
        batch_size=batch_size,
        workdirs=workdirs,
        log_every=max(1, tcfg.num_steps // 10),
        augment=tcfg.augment,
        progress=False,
        max_runs=ctx.config.train.get("max_runs"),
        step_fn=first.step_fn,
        unlabeled_images=first.unlabeled,
        unlabeled_batch_size=tcfg.fixmatch.unlabeled_ratio * batch_size,
    )
    return [state for state, _ in results]
