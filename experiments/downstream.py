"""The driver of the three downstream-task experiments: select S, train on it, report.

`run(config, workdir)` loops client domains × seeds × ε × budgets × methods. For each it
selects S with `ecos_jax.selection` (the same S as `experiments.sampling_quality` for
the same seed), trains the task's model on it, and evaluates on the client domain's test
split. The task (`config.task`) decides what "train on S" means: its entry in
`experiments.training_sets.TASKS` (true labels with junk rejected, distillation from a
teacher, or the client's Private-kNN labels). Local (the client's own labeled data) and
Full pool are the budget-free references.

Writes to the work directory: config.json, metrics.jsonl (one row per run), results.md
(the paper's tables, `experiments.reports`), accuracy.png (the table as bars),
accuracy_vs_budget.png / accuracy_vs_epsilon.png when the config sweeps them
(`experiments.plots`), examples/<domain>.npz (the clusters the scores pointed at), and
runs/<domain>/<run>/ (TensorBoard events, metrics.jsonl, checkpoint, result.json). Every
finished training run's result.json holds a fingerprint of the settings it depends on, so
an interrupted sweep restarted with the same --workdir redoes only what is missing. The
last stdout line is the JSON summary.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 5.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ecos_jax import models, noise, selection
from experiments import artefacts, common, domain, plots, reports, training_runs
from experiments.training_sets import TASKS as TASK_TABLE
from experiments.training_sets import Run

TASKS = tuple(TASK_TABLE)
METHOD_NAMES = reports.METHOD_NAMES
REFERENCE_METHODS = reports.REFERENCE_METHODS


def check_config(config) -> None:
    """Fails fast, naming the field, on a config this driver cannot run."""
    if config.task not in TASKS:
        raise ValueError(f"config.task={config.task!r}; choose one of {TASKS}.")
    unknown = [m for m in config.methods if m not in METHOD_NAMES]
    if unknown:
        raise ValueError(f"config.methods has unknown {unknown}; choose from {list(METHOD_NAMES)}.")
    if config.task == "client_labeling" and "full_pool" in config.methods:
        raise ValueError(
            "config.methods: 'full_pool' does not apply to client_labeling (the client would "
            "label the whole pool); remove it."
        )
    if config.train.mode not in ("supervised", "fixmatch"):
        raise ValueError(
            f"config.train.mode={config.train.mode!r}; choose 'supervised' or 'fixmatch'."
        )
    if config.train.mode == "fixmatch" and config.task == "model_compression":
        raise ValueError(
            "config.train.mode='fixmatch' applies to selective_labeling and client_labeling."
        )
    for block in ("train", "teacher") if config.task == "model_compression" else ("train",):
        name = config[block].model
        if name not in models.MODELS:
            raise ValueError(
                f"config.{block}.model={name!r}; choose one of {tuple(models.MODELS)}."
            )
    if config.data.source == "synthetic":
        raise ValueError("config.data.source='synthetic' has no images to train on.")
    for field, values in (("report_budget", "budgets"), ("report_epsilon", "epsilons")):
        if config[field] not in config[values]:
            raise ValueError(
                f"config.{field}={config[field]} must be one of config.{values} "
                f"{list(config[values])}."
            )
    if config.task == "client_labeling":
        _check_knn(config)
    if config.ecos.randomness not in noise.RANDOMNESS_NAMES:
        raise ValueError(
            f"config.ecos.randomness={config.ecos.randomness!r}; choose one of "
            f"{sorted(noise.RANDOMNESS_NAMES)}."
        )
    if not config.client_domains or not config.seeds:
        raise ValueError("config.client_domains and config.seeds must not be empty.")


def _check_knn(config) -> None:
    """Task (c)'s Private-kNN settings, naming the field."""
    kcfg = config.knn
    if kcfg.mechanism not in ("subsampled", "full_set"):
        raise ValueError(
            f"config.knn.mechanism={kcfg.mechanism!r}; choose 'subsampled' (Private-kNN as "
            "published) or 'full_set' (every client row votes)."
        )
    if kcfg.mechanism == "subsampled":
        common.parse_space(kcfg.space, "config.knn.space")
        if not kcfg.total_epsilon > 0:
            raise ValueError(
                f"config.knn.total_epsilon={kcfg.total_epsilon} must be > 0 (the run's total "
                "ε, labels and ECOS release), or inf for noise-free, non-private labels."
            )
        if not 0 < kcfg.sampling_rate <= 1:
            raise ValueError(f"config.knn.sampling_rate={kcfg.sampling_rate} must be in (0, 1].")
        if int(kcfg.max_answers) < 1 or int(kcfg.dim) < 1:
            raise ValueError("config.knn.max_answers and config.knn.dim must be >= 1.")
        common.check_query_order(kcfg.query_order, "config.knn.query_order")
        if int(kcfg.rounds) < 1 or int(kcfg.refine_steps) < 1:
            raise ValueError(
                f"config.knn.rounds={kcfg.rounds} and config.knn.refine_steps="
                f"{kcfg.refine_steps} must be >= 1 (rounds=1: no refinement)."
            )
        if kcfg.screen_ratio is not None and not kcfg.screen_ratio > 0:
            raise ValueError(f"config.knn.screen_ratio={kcfg.screen_ratio} must be > 0 or None.")
        if config.train.mode != "fixmatch":
            raise ValueError(
                "config.train.mode must be 'fixmatch' with config.knn.mechanism='subsampled': "
                "the student learns from the answered queries and the unlabeled pool."
            )
    elif not kcfg.target_epsilon > 0:
        raise ValueError(
            f"config.knn.target_epsilon={kcfg.target_epsilon} must be > 0 (the ε of the B "
            "label releases together), or inf for noise-free, non-private labels."
        )
    if int(kcfg.k) < 1:
        raise ValueError(f"config.knn.k={kcfg.k} must be >= 1.")


def run(config, workdir) -> dict[str, Any]:
    """Runs the experiment, writes every artefact to `workdir`, returns the summary."""
    check_config(config)
    workdir = artefacts.open_workdir(config, workdir)
    rows: list[dict[str, Any]] = []
    headers: list[str] = []
    for client_domain in config.client_domains:
        domain_rows, header = _run_domain(config, client_domain, workdir)
        rows += domain_rows
        headers.append(header)

    artefacts.write_results(workdir, rows, reports.results_markdown(config, rows, headers))
    plots.plot_accuracy(config, rows, workdir / "accuracy.png")
    if len(config.budgets) > 1:
        plots.plot_budget(config, rows, workdir / "accuracy_vs_budget.png")
    if len(config.epsilons) > 1:
        plots.plot_epsilon(config, rows, workdir / "accuracy_vs_epsilon.png")
    return reports.summary(config, rows)


def _run_domain(config, client_domain: str, workdir: Path) -> tuple[list[dict], str]:
    """Every seed × ε × budget × method for one client domain; its results.md header."""
    ctx = domain.load_domain(config, client_domain, workdir)
    prepare = TASK_TABLE[config.task].prepare
    if prepare is not None:
        ctx = dataclasses.replace(ctx, teacher=prepare(ctx))
    if config.task == "client_labeling" and config.knn.mechanism == "subsampled":
        space = common.parse_space(config.knn.space, "config.knn.space")
        knn = common.space_features(config, ctx.bench, space, dim=int(config.knn.dim))
        ctx = dataclasses.replace(ctx, knn_features=knn)
    feats = ctx.bench.features
    pool_x, client_x = feats.pool_features, feats.client_features

    plan = _plan(config)
    rows: list[dict[str, Any] | training_runs.PendingRun] = []
    bar = tqdm(
        total=len(plan), desc=f"{config.task}:{client_domain}", file=sys.stderr, dynamic_ncols=True
    )
    for one in plan:
        seed, eps = one.seed, one.epsilon
        keys = selection.method_keys(seed)
        cost = selection.SelectionCost(0.0, 0.0, 0, 0)
        idx = None
        if one.method not in REFERENCE_METHODS:
            ecos = None
            if one.method == "ecos":
                if (seed, eps) not in ctx.rounds:
                    randomness = common.score_randomness(config, seed, eps)
                    ctx.rounds[(seed, eps)] = common.ecos_round(
                        config, keys, pool_x, client_x, ctx.sigmas[eps], randomness
                    )
                ecos = ctx.rounds[(seed, eps)]
                if seed == plan[0].seed and eps == float(config.report_epsilon):
                    path = workdir / "examples" / f"{client_domain}.npz"
                    artefacts.save_cluster_examples(ecos, ctx.bench, path)
            idx, cost = common.select(config, one.method, keys, one.budget, pool_x, client_x, ecos)
        rows.append(training_runs.prepare(ctx, one, idx, cost))
        bar.update(1)
    bar.close()
    pending = [r for r in rows if isinstance(r, training_runs.PendingRun)]
    trained = iter(training_runs.train_together(ctx, pending))
    rows = [next(trained) if isinstance(r, training_runs.PendingRun) else r for r in rows]
    return rows, _header(ctx)


def _header(ctx: domain.DomainContext) -> str:
    """The client domain's line above the tables: its data, and the teacher if any."""
    split, feats = ctx.bench.split, ctx.bench.features
    num_pool, num_client = len(feats.pool_features), len(feats.client_features)
    num_id = int(np.sum(feats.pool_domains == feats.client_domain))
    header = (
        f"- **{ctx.domain}**: {ctx.bench.about} Pool {num_pool:,} images, {num_id:,} "
        f"({num_id / num_pool:.1%}) from the client domain; client {num_client:,} "
        f"labeled images; test {len(split.test.labels):,}."
    )
    if ctx.teacher is not None:
        header += f" Teacher test accuracy {ctx.teacher.accuracy:.3f}."
    return header


def _plan(config) -> list[Run]:
    """Every run: (seed, ε, budget, method); ε varies for ECOS only, references once."""
    report_eps = float(config.report_epsilon)
    plan = []
    for seed in config.seeds:
        for budget in config.budgets:
            for method in config.methods:
                if method in REFERENCE_METHODS:
                    continue
                for eps in config.epsilons if method == "ecos" else (report_eps,):
                    plan.append(Run(int(seed), float(eps), int(budget), method))
        for method in config.methods:
            if method in REFERENCE_METHODS:
                plan.append(Run(int(seed), report_eps, 0, method))
    return plan


def main(task: str) -> None:
    """The command line of `experiments.<task>`: its config file is configs/<task>.py."""
    default_config = Path(__file__).resolve().parent / "configs" / f"{task}.py"
    common.main(run, str(default_config))
