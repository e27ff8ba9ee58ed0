"""What the downstream experiments report: display names, run selection, seed statistics,
the paper-format markdown tables and the last-line JSON summary.

The drivers write `results.md` with these functions and the notebooks read `metrics.jsonl`
with the same `pick` and `seed_stats`, so a figure in a notebook is the figure in the table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ecos_jax import noise, selection
from experiments import common

__all__ = [
    "METHOD_NAMES",
    "REFERENCE_METHODS",
    "TASK_TITLES",
    "pick",
    "results_markdown",
    "seed_stats",
    "setting_sentence",
    "summary",
]

METHOD_NAMES = {**selection.METHOD_NAMES, "local": "Local", "full_pool": "Full pool"}
REFERENCE_METHODS = ("local", "full_pool")  # budget-free, no selection: budget 0 in the rows
TASK_TITLES = {
    "selective_labeling": "(a) selective manual labeling",
    "model_compression": "(b) adaptive model compression",
    "client_labeling": "(c) automated client labeling",
}


def pick(rows, method: str, budget: int | None = None, eps: float | None = None, domain=None):
    """The rows of `method` at `budget` (the references have none) and, for ECOS, at ε =
    `eps`; of client `domain` if given. None leaves a field unfiltered."""
    out = [r for r in rows if r["method"] == method]
    if budget is not None and method not in REFERENCE_METHODS:
        out = [r for r in out if r["budget"] == budget]
    if method == "ecos" and eps is not None:
        out = [r for r in out if math.isclose(r["epsilon_target"], eps, rel_tol=1e-9)]
    if domain is not None:
        out = [r for r in out if r["client_domain"] == domain]
    return out


def seed_stats(rows, field: str = "accuracy") -> tuple[float, float]:
    """Mean ± std over seeds of the client-domain average of `field` (nan for no rows)."""
    per_seed: dict[int, list[float]] = {}
    for r in rows:
        per_seed.setdefault(r["seed"], []).append(r[field])
    if not per_seed:
        return math.nan, math.nan
    return common.mean_std([float(np.mean(v)) for v in per_seed.values()])


def results_markdown(config, rows, headers) -> str:
    """The paper-format tables: accuracy per client domain, then each method's costs."""
    eps = float(config.report_epsilon)
    domains = list(config.client_domains)
    lines = [
        f"# Task {TASK_TITLES[config.task]} on {config.data.source}",
        "",
        *headers,
        "",
        setting_sentence(config),
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
            group = pick(rows, method, budget, eps)
            cells = []
            for domain in domains:
                mean, std = common.mean_std(
                    [r["accuracy"] for r in pick(group, method, domain=domain)]
                )
                cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
            mean, std = seed_stats(group)
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
        group = pick(rows, method, budget, eps)
        lines.append(
            f"| {METHOD_NAMES[method]} | {_fmt_eps(group, 'epsilon_rdp')} "
            f"| {_fmt_eps(group, 'epsilon_pld')} "
            f"| {np.mean([r['bytes_down'] for r in group]):,.0f} "
            f"| {np.mean([r['bytes_up'] for r in group]):,.0f} "
            f"| {np.mean([r['client_macs'] for r in group]):.3g} "
            f"| {_fmt_mean(group, 'id_fraction')} |"
        )
    if config.task == "client_labeling":
        lines += _knn_label_table(config, rows, budget, eps)
    return "\n".join(lines) + "\n"


def _knn_label_table(config, rows, budget, eps) -> list[str]:
    """The client's labels per domain: how many of the released labels are right, and
    what fraction of S was answered (mean over seeds)."""
    lines = [
        "",
        "Private-kNN labels of S per client domain: label accuracy (of the released labels;"
        " another digit domain's image counts by its class, a junk image as wrong) / fraction"
        " of S labeled:",
        "",
        "| method | " + " | ".join(config.client_domains) + " | avg |",
        "|---|" + "---|" * (len(config.client_domains) + 1),
    ]
    for method in config.methods:
        if method in REFERENCE_METHODS:
            continue
        cells = []
        for domain in (*config.client_domains, None):
            group = pick(rows, method, budget, eps, domain=domain)
            cells.append(
                f"{_fmt_mean(group, 'label_accuracy')} / {_fmt_mean(group, 'labeled_fraction')}"
            )
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
    return lines


def _fmt_eps(group, field) -> str:
    """The mean ε of `group`, or ∞ if any of its runs is not private."""
    values = [r[field] for r in group]
    if any(v is None for v in values):
        return "∞"
    return f"{np.mean(values):.3f}"


def _fmt_mean(group, field) -> str:
    """The mean of `field` over the runs that have it, or a dash."""
    values = [r[field] for r in group if r.get(field) is not None]
    return f"{np.mean(values):.3f}" if values else "–"


def setting_sentence(config) -> str:
    """The run's settings in prose: model, training, ECOS, seeds, and the task's extras."""
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
        k = config.knn
        if k.mechanism == "full_set":
            text += (
                f" Private-kNN over the whole client set: k={k.k}, noise calibrated so the "
                f"labels alone cost ε={k.target_epsilon} (RDP); the ε columns compose it with "
                "ECOS's release."
            )
        elif math.isinf(k.total_epsilon):
            text += f" kNN labels in {k.space}: k={k.k}, no noise (not private: ε = ∞)."
        else:
            order = {
                "shuffled": "shuffled by a public cloud key",
                "selection": "in the selection's order",
                "coverage": "ECOS's drawn without replacement in proportion to their "
                "cluster's noisy score over its pool size (post-processing of the release, "
                "no privacy cost), the other methods' shuffled by a public cloud key",
            }[k.query_order]
            screen = (
                "no screening"
                if k.screen_ratio is None
                else f"screening σ1 = {k.screen_ratio}·σ2 at T = {k.threshold_fraction}·k"
            )
            text += (
                f" Private-kNN as published (ecos_jax.tasks.subsampled_knn) in the space "
                f"{k.space} (PCA to {k.dim}, fitted on the pool): a Poisson subsample per "
                f"query at γ={k.sampling_rate}, k={k.k} votes within it, {screen}, noisy "
                f"argmax for the first {k.max_answers} queries of S "
                f"({order}); "
                "the noise is calibrated "
                f"so that each run's total ε (labels, and ECOS's score release for ECOS) is "
                f"{k.total_epsilon} (RDP, exact discrete accounting). Student: FixMatch on the "
                "labeled queries with the pool unlabeled."
            )
    return text


def summary(config, rows) -> dict[str, Any]:
    """The last-line JSON: accuracy per method at the report budget and ε, and ε."""
    budget, eps = int(config.report_budget), float(config.report_epsilon)
    methods = {}
    for method in config.methods:
        mean, std = seed_stats(pick(rows, method, budget, eps))
        methods[method] = {"accuracy_mean": mean, "accuracy_std": std}
    ecos = pick(rows, "ecos", budget, eps) if "ecos" in config.methods else []
    per_domain = {
        domain: {
            method: common.mean_std(
                [r["accuracy"] for r in pick(rows, method, budget, eps, domain=domain)]
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
