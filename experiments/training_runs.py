"""One run of a downstream sweep: the task's training set, training (or the finished
result), evaluation on the client's test split, and the metrics row.

Every finished run leaves `runs/<domain>/<run>/result.json` with a fingerprint of the
settings it depends on; a rerun with the same fingerprint reads the row back instead of
training, and `train.fit` resumes an interrupted one from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import jax

from ecos_jax import costs, metrics, selection, train
from ecos_jax.keys import named_key
from experiments import common
from experiments.domain import DomainContext, init_state
from experiments.training_sets import TASKS, Run, TrainingSet, local

__all__ = ["fingerprint", "train_and_evaluate"]

# The sweep's loops and the report's choices: a run's result does not depend on them.
_LOOP_FIELDS = ("client_domains", "seeds", "budgets", "epsilons", "methods", "variant")


def fingerprint(config, domain: str, name: str) -> str:
    """Hash of everything a run's result depends on (not the loops over other runs)."""
    relevant = config.to_dict()
    for field in (*_LOOP_FIELDS, "report_budget"):
        relevant.pop(field, None)
    text = json.dumps([relevant, domain, name], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_and_evaluate(
    ctx: DomainContext, run: Run, idx, cost: selection.SelectionCost
) -> dict[str, Any]:
    """Builds the task's training set for S = `idx`, trains (or reuses a finished run),
    evaluates on the test split; returns the run's metrics row."""
    config, feats = ctx.config, ctx.bench.features
    run_dir = ctx.domain_dir / run.name
    run_fingerprint = fingerprint(config, ctx.domain, run.name)
    done = run_dir / "result.json"
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("fingerprint") == run_fingerprint:
            return previous["row"]

    start = time.perf_counter()
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
    state = _fit(ctx, run.seed, data, run_dir)
    split = ctx.bench.split
    ev = train.evaluate(state, split.test.images, split.test.labels)
    row["accuracy"] = ev["accuracy"]
    row["test_loss"] = ev["loss"]
    row["seconds"] = round(time.perf_counter() - start, 2)
    common.atomic_write(done, json.dumps({"fingerprint": run_fingerprint, "row": row}) + "\n")
    return row


def _selection_macs(ctx: DomainContext, method: str) -> int:
    """The client's MACs for the selection: φ of its data (ECOS, Oracle), ECOS's scores."""
    n_client = len(ctx.bench.split.client.labels)
    macs = n_client * (ctx.phi_macs or 0) if method in ("ecos", "oracle") else 0
    if method == "ecos":
        ecfg, dim = ctx.config.ecos, ctx.bench.features.client_features.shape[1]
        macs += costs.scoring_macs(n_client, ecfg.num_clusters, dim)
    return macs


def _fit(ctx: DomainContext, seed: int, data: TrainingSet, run_dir) -> train.TrainState:
    """One training run of the task's model; the same init and batch seed for every method."""
    tcfg = ctx.config.train
    root = jax.random.key(seed)
    init_key, fit_key = named_key(root, "init"), named_key(root, "fit")
    state = init_state(init_key, tcfg, ctx.num_classes, data.images[:1])
    batch_size = min(tcfg.batch_size, len(data.images))
    state, _ = train.fit(
        fit_key,
        state,
        data.images,
        data.targets,
        num_steps=tcfg.num_steps,
        batch_size=batch_size,
        workdir=run_dir,
        log_every=max(1, tcfg.num_steps // 10),
        augment=tcfg.augment,
        progress=False,
        step_fn=data.step_fn,
        unlabeled_images=data.unlabeled,
        unlabeled_batch_size=tcfg.fixmatch.unlabeled_ratio * batch_size,
    )
    return state
