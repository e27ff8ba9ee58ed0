"""The driver of the three downstream-task experiments: select S, train on it, report.

`run(config, workdir)` loops client domains × seeds × ε × budgets × methods. For each it
selects S with `ecos_jax.selection` (the same S as `experiments.sampling_quality` for
the same seed), trains the task's model on it, and evaluates on the client domain's test
split. The task (`config.task`) decides what "train on S" means:

- selective_labeling: S gets its true labels (human labelers; selected images of the
  unrelated domains are rejected as junk and cost budget), then supervised training or
  FixMatch with the unlabeled pool;
- model_compression: a teacher trained on the labeled pool is distilled into the small
  CNN on S (no labels needed, so junk images are kept);
- client_labeling: the client labels S with Private-kNN on its features; its release is
  composed with ECOS's in a `PrivacyLedger`, and the table reports the total ε.

Local (the client's own labeled data) and Full pool are the budget-free references.
Every finished training run leaves `runs/<domain>/<run>/result.json` (with a fingerprint
of the settings it depends on), so an interrupted sweep restarted with the same
--workdir redoes only what is missing.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 5.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from ecos_jax import costs, metrics, models, noise, privacy, selection, tasks, train
from experiments import common

TASKS = ("selective_labeling", "model_compression", "client_labeling")
METHOD_NAMES = {**selection.METHOD_NAMES, "local": "Local", "full_pool": "Full pool"}
REFERENCE_METHODS = ("local", "full_pool")  # budget-free, no selection
_TASK_TITLES = {
    "selective_labeling": "(a) selective manual labeling",
    "model_compression": "(b) adaptive model compression",
    "client_labeling": "(c) automated client labeling",
}


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
    if config.train.mode == "fixmatch" and config.task != "selective_labeling":
        raise ValueError("config.train.mode='fixmatch' applies to selective_labeling only.")
    if config.data.source == "synthetic":
        raise ValueError("config.data.source='synthetic' has no images to train on.")
    if config.report_budget not in config.budgets:
        raise ValueError(
            f"config.report_budget={config.report_budget} must be one of config.budgets "
            f"{list(config.budgets)}."
        )
    if config.report_epsilon not in config.epsilons:
        raise ValueError(
            f"config.report_epsilon={config.report_epsilon} must be one of config.epsilons "
            f"{list(config.epsilons)}."
        )
    if config.task == "client_labeling":
        if not config.knn.target_epsilon > 0:
            raise ValueError(
                f"config.knn.target_epsilon={config.knn.target_epsilon} must be > 0 (the ε "
                "of the B label releases together), or inf for noise-free, non-private labels."
            )
        if int(config.knn.k) < 1:
            raise ValueError(f"config.knn.k={config.knn.k} must be >= 1.")
    if config.ecos.randomness not in noise.RANDOMNESS_NAMES:
        raise ValueError(
            f"config.ecos.randomness={config.ecos.randomness!r}; choose one of "
            f"{sorted(noise.RANDOMNESS_NAMES)}."
        )
    if not config.client_domains or not config.seeds:
        raise ValueError("config.client_domains and config.seeds must not be empty.")


def run(config, workdir) -> dict[str, Any]:
    """Runs the experiment, writes every artefact to `workdir`, returns the summary."""
    check_config(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    common.atomic_write(workdir / "config.json", config.to_json(indent=2) + "\n")
    rows: list[dict[str, Any]] = []
    headers: list[str] = []
    for domain in config.client_domains:
        domain_rows, header = _run_domain(config, domain, workdir)
        rows += domain_rows
        headers.append(header)

    common.atomic_write(workdir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    report = _results_markdown(config, rows, headers)
    common.atomic_write(workdir / "results.md", report)
    _plot_accuracy(config, rows, workdir / "accuracy.png")
    if len(config.budgets) > 1:
        _plot_budget(config, rows, workdir / "accuracy_vs_budget.png")
    if len(config.epsilons) > 1:
        _plot_epsilon(config, rows, workdir / "accuracy_vs_epsilon.png")
    print(report)
    return _summary(config, rows)


# --------------------------------------------------------------------------- one domain


def _run_domain(config, domain: str, workdir: Path) -> tuple[list[dict], str]:
    """Every seed × ε × budget × method for one client domain."""
    bench = common.load_image_benchmark(config, domain)
    split, feats = bench.split, bench.features
    pool_x, client_x = feats.pool_features, feats.client_features
    num_classes = int(config.num_classes)
    sigmas = {float(eps): common.score_sigma(config, eps) for eps in config.epsilons}
    phi_macs = _extractor_macs(bench.extractor, split.client.images[:1])
    model_macs = costs.macs(
        functools.partial(_forward, _make_model(config.train, num_classes)),
        *_model_init_args(config.train, num_classes, split.test.images[:1]),
    )
    ctx = dict(
        config=config,
        sigmas=sigmas,
        domain=domain,
        bench=bench,
        num_classes=num_classes,
        phi_macs=phi_macs,
        model_macs=model_macs,
        domain_dir=workdir / "runs" / domain,
    )
    teacher = None
    if config.task == "model_compression":
        teacher = _teacher(ctx)
    ctx["teacher"] = teacher
    rounds: dict[tuple[int, float], selection.EcosRound] = {}
    ctx["rounds"] = rounds  # the client's ECOS releases, for task (c)'s ledger

    plan = _plan(config)
    rows = []
    bar = tqdm(total=len(plan), desc=f"{config.task}:{domain}", file=sys.stderr, dynamic_ncols=True)
    for seed, eps, budget, method in plan:
        keys = selection.method_keys(seed)
        cost = selection.SelectionCost(0.0, 0.0, 0, 0)
        idx = None
        if method not in REFERENCE_METHODS:
            ecos = None
            if method == "ecos":
                if (seed, eps) not in rounds:
                    randomness = common.score_randomness(config, seed, eps)
                    rounds[(seed, eps)] = common.ecos_round(
                        config, keys, pool_x, client_x, sigmas[eps], randomness
                    )
                ecos = rounds[(seed, eps)]
                if seed == plan[0][0] and eps == float(config.report_epsilon):
                    _save_cluster_examples(ecos, bench, workdir / "examples" / f"{domain}.npz")
            idx, cost = common.select(config, method, keys, budget, pool_x, client_x, ecos)
        rows.append(_train_and_evaluate(ctx, seed, eps, budget, method, idx, cost))
        bar.update(1)
    bar.close()
    num_id = int(np.sum(feats.pool_domains == feats.client_domain))
    header = (
        f"- **{domain}**: {bench.about} Pool {len(pool_x):,} images, {num_id:,} "
        f"({num_id / len(pool_x):.1%}) from the client domain; client {len(client_x):,} "
        f"labeled images; test {len(split.test.labels):,}."
    )
    if teacher is not None:
        header += f" Teacher test accuracy {teacher['accuracy']:.3f}."
    return rows, header


def _save_cluster_examples(ecos, bench, path: Path, *, num_clusters=3, per_cluster=8) -> None:
    """Images of the highest- and lowest-scored clusters (nearest their centroid), for the
    notebook: which parts of the pool the client's noisy scores pointed at."""
    scores = np.asarray(ecos.scores.scores)
    assign = np.asarray(ecos.cloud.clustering.assignments)
    centroids = np.asarray(ecos.cloud.clustering.centroids)
    pool = np.asarray(ecos.cloud.pool_features)
    order = np.argsort(-scores, kind="stable")
    chosen = np.concatenate([order[:num_clusters], order[-num_clusters:]])
    images = np.zeros((len(chosen), per_cluster, *bench.split.pool_images.shape[1:]), np.uint8)
    id_fraction, sizes = [], []
    for i, r in enumerate(chosen):
        members = np.flatnonzero(assign == r)
        near = members[np.argsort(np.sum((pool[members] - centroids[r]) ** 2, axis=1))]
        images[i, : min(per_cluster, len(near))] = bench.split.pool_images[near[:per_cluster]]
        sizes.append(len(members))
        id_fraction.append(
            float(np.mean(bench.features.pool_domains[members] == bench.features.client_domain))
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    common.atomic_write(
        path,
        lambda f: np.savez(
            f,
            clusters=chosen,
            scores=scores[chosen],
            all_scores=scores,
            images=images,
            sizes=np.asarray(sizes),
            id_fraction=np.asarray(id_fraction),
        ),
        binary=True,
    )


def _plan(config) -> list[tuple[int, float, int, str]]:
    """(seed, ε, budget, method) of every run; ε varies for ECOS only, references once."""
    report_eps = float(config.report_epsilon)
    plan = []
    for seed in config.seeds:
        for budget in config.budgets:
            for method in config.methods:
                if method in REFERENCE_METHODS:
                    continue
                for eps in config.epsilons if method == "ecos" else (report_eps,):
                    plan.append((int(seed), float(eps), int(budget), method))
        for method in config.methods:
            if method in REFERENCE_METHODS:
                plan.append((int(seed), report_eps, 0, method))
    return plan


# --------------------------------------------------------------------------- training


def _train_and_evaluate(ctx, seed, eps, budget, method, idx, cost) -> dict[str, Any]:
    """Builds the task's training set, trains (or reuses a finished run), evaluates."""
    config, bench = ctx["config"], ctx["bench"]
    split, feats = bench.split, bench.features
    tcfg = config.train
    name = f"{method}_b{budget}_eps{eps:g}_s{seed}"
    run_dir = ctx["domain_dir"] / name
    fingerprint = _fingerprint(config, ctx["domain"], name)
    done = run_dir / "result.json"
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("fingerprint") == fingerprint:
            return previous["row"]

    start = time.perf_counter()
    row: dict[str, Any] = dict(
        task=config.task,
        client_domain=ctx["domain"],
        method=method,
        budget=budget,
        epsilon_target=eps if method == "ecos" else None,
        seed=seed,
        epsilon_rdp=cost.epsilon_rdp,
        epsilon_pld=cost.epsilon_pld,
        bytes_down=cost.bytes_down,
        bytes_up=cost.bytes_up,
        # how the client's releases in this run were noised (None: it released nothing)
        randomness=config.ecos.randomness
        if method == "ecos" or (config.task == "client_labeling" and method != "local")
        else None,
    )
    n_client = len(split.client.labels)
    phi = ctx["phi_macs"] or 0
    client_macs = {"ecos": n_client * phi, "oracle": n_client * phi}.get(method, 0)
    if method == "ecos":
        client_macs += costs.scoring_macs(
            n_client, config.ecos.num_clusters, feats.client_features.shape[1]
        )
    if idx is not None:
        row["id_fraction"] = metrics.id_fraction(idx, feats.pool_domains, feats.client_domain)

    unlabeled = None
    step_fn = train.train_step
    if method == "local":
        images, targets = split.client.images, split.client.labels
        client_macs = (
            costs.TRAIN_MACS_PER_FORWARD * ctx["model_macs"] * tcfg.num_steps * tcfg.batch_size
        )
    elif config.task == "selective_labeling":
        images, targets = _labeled(split, idx)
        if tcfg.mode == "fixmatch":
            unlabeled = split.pool_images
            step_fn = functools.partial(
                train.fixmatch_step,
                threshold=tcfg.fixmatch.threshold,
                lambda_u=tcfg.fixmatch.lambda_u,
            )
    elif config.task == "model_compression":
        images = split.pool_images if idx is None else split.pool_images[idx]
        targets = ctx["teacher"]["logits"] if idx is None else ctx["teacher"]["logits"][idx]
        step_fn = functools.partial(train.distill_step, temperature=config.distill.temperature)
    else:  # client_labeling
        images = split.pool_images[idx]
        targets, extra = _private_knn(ctx, seed, eps, idx, cost, method)
        # the client featurises its own data for the kNN whatever the selection was
        client_macs += n_client * phi if method in ("random", "k_center") else 0
        client_macs += extra.pop("knn_macs")
        row.update(extra)
    row["num_train"] = len(images)
    row["client_macs"] = int(client_macs)

    if len(images) == 0:
        raise ValueError(
            f"{method} at budget {budget} left no training examples for {ctx['domain']} "
            "(every selected image was junk); raise config.budgets."
        )
    state = _fit(ctx, seed, images, targets, run_dir, step_fn=step_fn, unlabeled=unlabeled)
    ev = train.evaluate(state, split.test.images, split.test.labels)
    row["accuracy"] = ev["accuracy"]
    row["test_loss"] = ev["loss"]
    row["seconds"] = round(time.perf_counter() - start, 2)
    common.atomic_write(done, json.dumps({"fingerprint": fingerprint, "row": row}) + "\n")
    return row


def _labeled(split, idx) -> tuple[np.ndarray, np.ndarray]:
    """The human labelers' answer for S: true labels, junk (label -1) rejected."""
    labels = np.asarray(split.pool_oracle.labels)[idx]
    keep = labels >= 0
    return split.pool_images[idx][keep], labels[keep]


def _private_knn(ctx, seed, eps, idx, cost, method) -> tuple[np.ndarray, dict[str, Any]]:
    """Private-kNN labels of S from the client, and the composed ε of the whole run."""
    config, feats = ctx["config"], ctx["bench"].features
    kcfg = config.knn
    query = feats.pool_features[idx]
    num_queries = len(idx)
    k = min(int(kcfg.k), len(feats.client_labels))
    knn_args = dict(
        k=k, num_classes=ctx["num_classes"], metric=config.metric, chunk_size=config.chunk_size
    )
    if math.isinf(kcfg.target_epsilon):
        # the non-private reference: noise-free votes, ε = ∞ whatever the selection
        votes = tasks.knn_votes(query, feats.client_features, feats.client_labels, **knn_args)
        labels, sigma, total = jnp.argmax(votes, axis=-1), 0.0, None
    else:
        sigma = tasks.calibrate_vote_sigma(
            kcfg.target_epsilon, delta=config.ecos.delta, num_queries=num_queries
        )
        randomness = common.client_randomness(config, seed, f"private_knn/{method}/b{len(idx)}")
        labels, release = tasks.private_knn_labels(
            query,
            feats.client_features,
            feats.client_labels,
            sigma=sigma,
            randomness=randomness,
            **knn_args,
        )
        ledger = privacy.PrivacyLedger([release])
        if method == "ecos":
            ledger.record(ctx["rounds"][(seed, eps)].privacy.release)
        total = ledger.epsilons(delta=config.ecos.delta)
    labels = np.asarray(labels)
    truth = np.asarray(ctx["bench"].split.pool_oracle.labels)[idx]
    dim = query.shape[1]
    extra = dict(
        label_accuracy=float(np.mean(labels == truth)),
        knn_k=k,
        knn_sigma=sigma,
        knn_macs=num_queries * len(feats.client_labels) * dim,
        # the cloud sends φ(S) down (float32) and gets one label per query back (int32)
        bytes_down=cost.bytes_down + num_queries * dim * 4,
        bytes_up=cost.bytes_up + num_queries * 4,
    )
    if method != "oracle":
        extra.update(
            epsilon_rdp=None if total is None else total["rdp"],
            epsilon_pld=None if total is None else total["pld"],
        )
    return labels, extra


def _teacher(ctx) -> dict[str, Any]:
    """Trains (or restores) the cloud's teacher on the labeled pool; its logits on the pool."""
    config, split = ctx["config"], ctx["bench"].split
    tcfg = config.teacher
    labels = np.asarray(split.pool_oracle.labels)
    keep = labels >= 0
    model = _make_model(tcfg, ctx["num_classes"])
    key = jax.random.key(int(tcfg.seed))
    init_key, fit_key = jax.random.split(key)
    state = _init_state(init_key, model, tcfg, split.test.images[:1])
    state, _ = train.fit(
        fit_key,
        state,
        split.pool_images[keep],
        labels[keep],
        num_steps=tcfg.num_steps,
        batch_size=min(tcfg.batch_size, int(keep.sum())),
        workdir=ctx["domain_dir"] / "teacher",
        log_every=max(1, tcfg.num_steps // 10),
        augment=tcfg.augment,
        progress=False,
    )
    accuracy = train.evaluate(state, split.test.images, split.test.labels)["accuracy"]
    return {"logits": train.predict_logits(state, split.pool_images), "accuracy": accuracy}


def _fit(ctx, seed, images, targets, run_dir, *, step_fn, unlabeled):
    """One training run of the task's model; the same init and batch seed for every method."""
    config = ctx["config"]
    tcfg = config.train
    root = jax.random.key(seed)
    init_key = jax.random.fold_in(root, zlib.crc32(b"init"))
    fit_key = jax.random.fold_in(root, zlib.crc32(b"fit"))
    model = _make_model(tcfg, ctx["num_classes"])
    state = _init_state(init_key, model, tcfg, images[:1])
    batch_size = min(tcfg.batch_size, len(images))
    state, _ = train.fit(
        fit_key,
        state,
        images,
        targets,
        num_steps=tcfg.num_steps,
        batch_size=batch_size,
        workdir=run_dir,
        log_every=max(1, tcfg.num_steps // 10),
        augment=tcfg.augment,
        progress=False,
        step_fn=step_fn,
        unlabeled_images=unlabeled,
        unlabeled_batch_size=tcfg.fixmatch.unlabeled_ratio * batch_size,
    )
    return state


def _make_model(mcfg, num_classes: int):
    """The classifier named by `mcfg.model` at width `mcfg.width`."""
    return _model(mcfg.model, int(num_classes), float(mcfg.width))


@functools.cache
def _model(name: str, num_classes: int, width: float):
    """One module object per setting: `TrainState.apply_fn` is its bound `apply`, which
    compares by identity, so a new module per run would recompile every step function."""
    if name == "digits_cnn":
        return models.DigitsCNN(num_classes=num_classes, width=width)
    if name == "resnet18":
        return models.ResNet18(num_classes=num_classes, width=width)
    raise ValueError(f"model={name!r}; choose 'digits_cnn' or 'resnet18'.")


def _init_state(key, model, mcfg, sample):
    """A TrainState with the configured optimizer and warmup-cosine schedule."""
    optimizer = _optimizer(
        mcfg.optimizer,
        float(mcfg.learning_rate),
        max(1, int(mcfg.num_steps)),
        int(mcfg.warmup_steps),
        float(mcfg.weight_decay),
    )
    return train.create_train_state(key, model, optimizer, jnp.asarray(sample))


@functools.cache
def _optimizer(name: str, learning_rate, total_steps, warmup_steps, weight_decay):
    """One optimizer object per setting: the jitted steps key their cache on it, so a new
    (equal but not identical) optimizer per run would recompile every step function."""
    return train.make_optimizer(
        name,
        learning_rate=learning_rate,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
    )


def _model_init_args(mcfg, num_classes: int, sample):
    """(variables, one image) of the configured model, for counting its MACs."""
    model = _make_model(mcfg, num_classes)
    return model.init(jax.random.key(0), jnp.asarray(sample), train=False), jnp.asarray(sample)


def _forward(model, variables, images):
    """Eval-mode forward pass (for MAC counting)."""
    return model.apply(variables, images, train=False)


def _extractor_macs(extractor, one_image) -> int | None:
    """MACs of φ on one image (None for extractors without a jitted forward)."""
    forward = getattr(extractor, "forward", None)
    variables = getattr(extractor, "variables", None)
    if forward is None or variables is None:
        return None
    return costs.macs(forward, variables, jnp.asarray(one_image))


def _fingerprint(config, domain: str, name: str) -> str:
    """Hash of everything a run's result depends on (not the loops over other runs)."""
    relevant = config.to_dict()
    for field in ("client_domains", "seeds", "budgets", "epsilons", "methods", "variant"):
        relevant.pop(field, None)
    relevant.pop("report_budget", None)
    text = json.dumps([relevant, domain, name], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- reporting


def _select_rows(rows, **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _method_rows(rows, method: str, budget: int, eps: float) -> list[dict]:
    """The rows of a method at a budget (references: budget 0) and ε (ECOS only)."""
    if method in REFERENCE_METHODS:
        return _select_rows(rows, method=method)
    if method == "ecos":
        return _select_rows(rows, method=method, budget=budget, epsilon_target=eps)
    return _select_rows(rows, method=method, budget=budget)


def _seed_average(rows: list[dict], field: str = "accuracy") -> tuple[float, float]:
    """Mean ± std over seeds of the domain-averaged `field`."""
    per_seed = {}
    for r in rows:
        per_seed.setdefault(r["seed"], []).append(r[field])
    mean, std = common.mean_std([float(np.mean(v)) for v in per_seed.values()])
    return mean, std


def _results_markdown(config, rows, headers) -> str:
    """The paper-format tables: accuracy per client domain, then each method's costs."""
    eps = float(config.report_epsilon)
    domains = list(config.client_domains)
    lines = [
        f"# Task {_TASK_TITLES[config.task]} on {config.data.source}",
        "",
        *headers,
        "",
        _setting_sentence(config),
        "",
    ]
    for budget in config.budgets:
        lines += [
            f"## Test accuracy (%) at budget {budget}, ε = {eps:g}",
            "",
            "| method | " + " | ".join(domains) + " | avg |",
            "|---|" + "---|" * (len(domains) + 1),
        ]
        for method in config.methods:
            cells = []
            for domain in domains:
                group = [
                    r["accuracy"]
                    for r in _method_rows(rows, method, budget, eps)
                    if r["client_domain"] == domain
                ]
                mean, std = common.mean_std(group)
                cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
            mean, std = _seed_average(_method_rows(rows, method, budget, eps))
            cells.append(f"**{100 * mean:.1f}** ± {100 * std:.1f}")
            lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
        lines.append("")
    budget = int(config.report_budget)
    lines += [
        f"## Costs at budget {budget} (mean over client domains)",
        "",
        "| method | ε (RDP) | ε (PLD) | bytes down | bytes up | client MACs | ID fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in config.methods:
        group = _method_rows(rows, method, budget, eps)
        lines.append(
            f"| {METHOD_NAMES[method]} | {_fmt_eps(group, 'epsilon_rdp')} "
            f"| {_fmt_eps(group, 'epsilon_pld')} "
            f"| {np.mean([r['bytes_down'] for r in group]):,.0f} "
            f"| {np.mean([r['bytes_up'] for r in group]):,.0f} "
            f"| {np.mean([r['client_macs'] for r in group]):.3g} "
            f"| {_fmt_mean(group, 'id_fraction')} |"
        )
    if config.task == "client_labeling":
        lines += ["", "Private-kNN label accuracy on S (junk counts as wrong):", ""]
        for method in config.methods:
            group = _method_rows(rows, method, budget, eps)
            lines.append(f"- {METHOD_NAMES[method]}: {_fmt_mean(group, 'label_accuracy')}")
    return "\n".join(lines) + "\n"


def _fmt_eps(group, field) -> str:
    values = [r[field] for r in group]
    if any(v is None for v in values):
        return "∞"
    return f"{np.mean(values):.3f}"


def _fmt_mean(group, field) -> str:
    values = [r[field] for r in group if r.get(field) is not None]
    return f"{np.mean(values):.3f}" if values else "–"


def _setting_sentence(config) -> str:
    t = config.train
    text = (
        f"Model {t.model} (width {t.width}), {t.num_steps} steps of batch {t.batch_size}, "
        f"{t.optimizer} lr {t.learning_rate} (warmup-cosine), {t.augment} augmentation, "
        f"training mode {t.mode}"
    )
    if t.mode == "fixmatch":
        f = t.fixmatch
        text += f" (τ={f.threshold}, λ_u={f.lambda_u}, μ={f.unlabeled_ratio})"
    text += (
        f". ECOS: R={config.ecos.num_clusters}, {config.ecos.method} scores, κ={config.ecos.kappa},"
        f" σ calibrated to ε at δ={config.ecos.delta:g} ({config.ecos.accountant.upper()}),"
        f" discrete Gaussian noise, {noise.RANDOMNESS_NAMES[config.ecos.randomness]}. "
        f"Seeds {list(config.seeds)}; mean ± std over seeds; every method starts from the "
        "same initialisation and batch seed. Oracle: ε = ∞ (sees the client features)."
    )
    if config.task == "model_compression":
        tt = config.teacher
        text += (
            f" Teacher {tt.model} (width {tt.width}), {tt.num_steps} steps on the labeled pool;"
            f" distillation temperature T={config.distill.temperature}."
        )
    if config.task == "client_labeling":
        if math.isinf(config.knn.target_epsilon):
            text += f" kNN labels: k={config.knn.k}, no noise (not private: ε = ∞)."
        else:
            text += (
                f" Private-kNN: k={config.knn.k}, noise calibrated so the labels alone cost "
                f"ε={config.knn.target_epsilon} (RDP); the ε columns compose it with ECOS's "
                "release."
            )
    return text


def _plot_accuracy(config, rows, path: Path) -> None:
    """The results table as bars: every method per client domain and on average, at the
    report budget and ε (mean ± std over seeds)."""
    plt = _pyplot()
    budget, eps = int(config.report_budget), float(config.report_epsilon)
    groups = list(config.client_domains) + (["avg"] if len(config.client_domains) > 1 else [])
    width = 0.8 / len(config.methods)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) + 2.5), 3.6))
    for i, method in enumerate(config.methods):
        method_rows = _method_rows(rows, method, budget, eps)
        stats = [
            _seed_average([r for r in method_rows if r["client_domain"] == g])
            if g != "avg"
            else _seed_average(method_rows)
            for g in groups
        ]
        ax.bar(
            [j + (i - (len(config.methods) - 1) / 2) * width for j in range(len(groups))],
            [100 * m for m, _ in stats],
            width,
            yerr=[100 * sd for _, sd in stats],
            capsize=2,
            label=METHOD_NAMES[method],
            color=f"C{i}",
        )
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlabel("client domain")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{config.task} ({config.data.source}, B={budget}, ε={eps:g})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def _plot_budget(config, rows, path: Path) -> None:
    """Accuracy (domain average, mean ± std over seeds) against the budget."""
    plt = _pyplot()
    eps = float(config.report_epsilon)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for i, method in enumerate(config.methods):
        if method in REFERENCE_METHODS:
            mean, _ = _seed_average(_method_rows(rows, method, 0, eps))
            ax.axhline(100 * mean, ls="--", lw=1, label=METHOD_NAMES[method], color=f"C{i}")
            continue
        stats = [_seed_average(_method_rows(rows, method, b, eps)) for b in config.budgets]
        _errorbar(ax, config.budgets, stats, label=METHOD_NAMES[method], color=f"C{i}")
    ax.set_xlabel("budget B")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{config.task} ({config.data.source}, ε={eps:g})", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def _plot_epsilon(config, rows, path: Path) -> None:
    """ECOS accuracy against ε at the report budget; non-private baselines as lines."""
    plt = _pyplot()
    budget = int(config.report_budget)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    stats = [_seed_average(_method_rows(rows, "ecos", budget, float(e))) for e in config.epsilons]
    for i, method in enumerate(config.methods):
        if method == "ecos":
            _errorbar(ax, config.epsilons, stats, label="ECOS", color=f"C{i}")
            continue
        mean, _ = _seed_average(_method_rows(rows, method, budget, float(config.report_epsilon)))
        ax.axhline(100 * mean, ls="--", lw=1, label=METHOD_NAMES[method], color=f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("ε of the score release (δ = 1e-5)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{config.task} ({config.data.source}, B={budget})", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def _errorbar(ax, xs, stats, *, label: str, color: str) -> None:
    """One method's accuracy (%) against `xs`, mean ± std over seeds."""
    ax.errorbar(
        list(xs),
        [100 * m for m, _ in stats],
        yerr=[100 * s for _, s in stats],
        marker="o",
        capsize=3,
        label=label,
        color=color,
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    common.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), binary=True)
    _pyplot().close(fig)


def _summary(config, rows) -> dict[str, Any]:
    """The last-line JSON: accuracy per method at the report budget and ε, and ε."""
    budget, eps = int(config.report_budget), float(config.report_epsilon)
    methods = {}
    for method in config.methods:
        mean, std = _seed_average(_method_rows(rows, method, budget, eps))
        methods[method] = {"accuracy_mean": mean, "accuracy_std": std}
    ecos = _method_rows(rows, "ecos", budget, eps) if "ecos" in config.methods else []
    per_domain = {
        domain: {
            method: common.mean_std(
                [
                    r["accuracy"]
                    for r in _method_rows(rows, method, budget, eps)
                    if r["client_domain"] == domain
                ]
            )[0]
            for method in config.methods
        }
        for domain in config.client_domains
    }
    return {
        "task": config.task,
        "data": config.data.source,
        "budget": budget,
        "randomness": noise.RANDOMNESS_NAMES[config.ecos.randomness],
        "methods": methods,
        # null when ECOS is absent or its run is not private (noise-free kNN labels)
        "epsilon_rdp": common.mean_std([r["epsilon_rdp"] for r in ecos])[0] if ecos else None,
        "epsilon_pld": common.mean_std([r["epsilon_pld"] for r in ecos])[0] if ecos else None,
        "per_domain": per_domain,
    }
