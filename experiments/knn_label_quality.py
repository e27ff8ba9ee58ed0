"""Private-kNN label accuracy on the selected set S, over k, ε and the kNN's feature space.

  python -m experiments.knn_label_quality --workdir=DIR \
      [--config=experiments/configs/knn_label_quality.py[:smoke]]

Task (c) trains on the client's Private-kNN labels of S, so its accuracy is capped by how
many of those labels are right. This study measures that directly, without training: for
each client domain × seed × method it selects S exactly as the task does
(`experiments.common.select`), computes the kNN vote histograms of S in each feature
space for each k, and releases the labels at each ε (noise calibrated so that the B label
releases cost ε at δ; ∞ = noise-free argmax). Writes config.json, metrics.jsonl (one row
per domain × seed × method × space × k × ε) and results.md; prints the tables; the last
stdout line is a JSON summary.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 5, task (c).
  Zhu, Yu, Wang. "Private-kNN: Practical Differential Privacy for Computer Vision." CVPR 2020.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from ecos_jax import noise, privacy, selection, tasks
from experiments import artefacts, common
from experiments.common import Space, parse_space

_DEFAULT_CONFIG = str(Path(__file__).resolve().parent / "configs" / "knn_label_quality.py")


def check_config(config) -> list[Space]:
    """Fails fast, naming the field; returns the parsed spaces."""
    unknown = [m for m in config.methods if m not in selection.METHOD_NAMES]
    if unknown:
        raise ValueError(
            f"config.methods has unknown {unknown}; choose from {list(selection.METHOD_NAMES)}."
        )
    if not config.client_domains or not config.seeds or not config.ks or not config.spaces:
        raise ValueError("config.client_domains, seeds, ks and spaces must not be empty.")
    if any(int(k) < 1 for k in config.ks):
        raise ValueError(f"config.ks={list(config.ks)} must all be >= 1.")
    if any(not e > 0 for e in config.label_epsilons) or not config.label_epsilons:
        raise ValueError(
            f"config.label_epsilons={list(config.label_epsilons)} must be non-empty and > 0 "
            "(inf for noise-free labels)."
        )
    if config.report_k not in config.ks or config.report_epsilon not in config.label_epsilons:
        raise ValueError(
            f"config.report_k={config.report_k} and config.report_epsilon="
            f"{config.report_epsilon} must be among config.ks and config.label_epsilons."
        )
    for text in config.published.settings:
        parse_setting(text)
    for text in config.published.spaces:
        parse_space(text, "config.published.spaces entry")
    common.check_query_order(config.published.query_order, "config.published.query_order")
    if any(not e > 0 for e in config.published.total_epsilons):
        raise ValueError(
            f"config.published.total_epsilons={list(config.published.total_epsilons)} must be > 0."
        )
    return [parse_space(s) for s in config.spaces]


class Setting(NamedTuple):
    """One Private-kNN-as-published setting: rate, k, answer budget, screening ratio."""

    sampling_rate: float
    k: int
    max_answers: int
    screen_ratio: float | None

    @property
    def name(self) -> str:
        screen = "none" if self.screen_ratio is None else f"{self.screen_ratio:g}"
        return f"{self.sampling_rate:g}:{self.k}:{self.max_answers}:{screen}"


def parse_setting(text: str) -> Setting:
    """'rate:k:max_answers:screen_ratio' (screen_ratio 'none' for no screening)."""
    parts = str(text).split(":")
    try:
        rate, k, answers = float(parts[0]), int(parts[1]), int(parts[2])
        screen = None if parts[3] == "none" else float(parts[3])
        if len(parts) != 4 or not 0 < rate <= 1 or k < 1 or answers < 1:
            raise ValueError
        if screen is not None and not screen > 0:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(
            f"config.published.settings entry {text!r} must read "
            "'rate:k:max_answers:screen_ratio' with rate in (0, 1], k and max_answers >= 1 "
            "and screen_ratio > 0 or 'none', e.g. '0.5:100:300:none'."
        ) from None
    return Setting(rate, k, answers, screen)


def run(config, workdir) -> dict[str, Any]:
    """Runs the study, writes its artefacts to `workdir`, returns the summary."""
    spaces = check_config(config)
    workdir = artefacts.open_workdir(config, workdir)
    budget = int(config.budget)
    vote_sigmas = {
        float(e): 0.0
        if math.isinf(e)
        else tasks.calibrate_vote_sigma(e, delta=config.ecos.delta, num_queries=budget)
        for e in config.label_epsilons
    }
    score_sigma = common.score_sigma(config, config.ecos.target_epsilon)
    rows: list[dict[str, Any]] = []
    published: list[dict[str, Any]] = []
    total = len(config.client_domains) * len(config.seeds) * len(config.methods) * len(spaces)
    bar = tqdm(total=total, desc="knn_label_quality", file=sys.stderr, dynamic_ncols=True)
    for domain in config.client_domains:
        bench = common.load_image_benchmark(config, domain)
        space_features = {
            s: common.space_features(config, bench, s, dim=config.features.dim) for s in spaces
        }
        published_spaces = [parse_space(s) for s in config.published.spaces]
        published_features = {
            s: common.space_features(config, bench, s, dim=int(config.published.dim))
            for s in published_spaces
        }
        truth = np.asarray(bench.split.pool_oracle.labels)
        in_domain = np.asarray(bench.features.pool_domains) == bench.features.client_domain
        client_labels = bench.features.client_labels
        for seed in config.seeds:
            keys = selection.method_keys(int(seed))
            pool, client = bench.features.pool_features, bench.features.client_features
            ecos = None
            if "ecos" in config.methods:
                randomness = common.score_randomness(config, seed, config.ecos.target_epsilon)
                ecos = common.ecos_round(config, keys, pool, client, score_sigma, randomness)
            for method in config.methods:
                idx, _ = common.select(config, method, keys, budget, pool, client, ecos)
                idx = np.asarray(idx)
                truth_s, ids = truth[idx], in_domain[idx]
                for space in spaces:
                    pool_s, client_s = space_features[space]
                    for k in config.ks:
                        k = min(int(k), len(client_labels))
                        votes = tasks.knn_votes(
                            pool_s[idx],
                            client_s,
                            client_labels,
                            k=k,
                            num_classes=int(config.num_classes),
                            metric=space.metric,
                            chunk_size=config.chunk_size,
                        )
                        for eps, sigma in vote_sigmas.items():
                            # One key per (seed, method, space, k, ε): independent releases.
                            randomness = common.client_randomness(
                                config, seed, f"private_knn/{method}/{space.name}/k={k}/eps={eps:g}"
                            )
                            labels = _release(randomness, votes, sigma)
                            right = labels == truth_s
                            rows.append(
                                dict(
                                    mechanism="full_set",
                                    client_domain=domain,
                                    seed=int(seed),
                                    method=method,
                                    space=space.name,
                                    k=k,
                                    label_epsilon=None if math.isinf(eps) else eps,
                                    vote_sigma=sigma,
                                    label_accuracy=float(right.mean()),
                                    id_label_accuracy=float(right[ids].mean())
                                    if ids.any()
                                    else None,
                                    id_fraction=float(ids.mean()),
                                )
                            )
                    bar.update(1)
                published += _published_rows(
                    config,
                    domain,
                    seed,
                    method,
                    idx,
                    truth_s,
                    ids,
                    client_labels,
                    published_features,
                    ecos if method == "ecos" else None,
                )
    bar.close()
    markdown = _markdown(config, rows, spaces, vote_sigmas) + _published_markdown(config, published)
    artefacts.write_results(workdir, rows + published, markdown)
    return _summary(config, rows, spaces)


def _published_rows(
    config, domain, seed, method, idx, truth_s, ids, client_labels, features, ecos
) -> list[dict[str, Any]]:
    """Private-kNN as published on S: every setting × space × total ε, one release each."""
    out = []
    delta = float(config.ecos.delta)
    ecos_release = None if ecos is None else ecos.privacy.release
    # the queries in the order task (c) asks them: the answer budget goes to the first
    order = common.method_query_order(idx, seed, config.published.query_order, ecos)
    idx, truth_s, ids = idx[order], truth_s[order], ids[order]
    for text in config.published.settings:
        setting = parse_setting(text)
        budget = min(setting.max_answers, len(idx))
        for total in config.published.total_epsilons:
            base = (ecos_release,) if ecos_release is not None else ()
            screen_scale, answer_scale = tasks.calibrate_knn_noise(
                float(total),
                delta=delta,
                sampling_rate=setting.sampling_rate,
                num_queries=len(idx),
                max_answers=budget,
                screen_ratio=setting.screen_ratio,
                base_releases=base,
            )
            for space, (pool_s, client_s) in features.items():
                name = f"published/{method}/{space.name}/{setting.name}/eps={float(total):g}"
                answers = tasks.subsampled_knn_labels(
                    pool_s[idx],
                    client_s,
                    client_labels,
                    k=setting.k,
                    num_classes=int(config.num_classes),
                    sampling_rate=setting.sampling_rate,
                    threshold=None
                    if screen_scale is None
                    else float(config.published.threshold_fraction) * setting.k,
                    screen_scale=screen_scale,
                    answer_scale=answer_scale,
                    max_answers=budget,
                    randomness=common.client_randomness(config, seed, name),
                    metric=space.metric,
                    chunk_size=config.chunk_size,
                )
                has = answers.labels >= 0
                right = answers.labels == truth_s
                stages = {r.name: privacy.epsilon(r, delta=delta) for r in answers.releases}
                ledger = privacy.PrivacyLedger([*answers.releases, *base])
                eps = ledger.epsilons(delta=delta)
                out.append(
                    dict(
                        mechanism="subsampled",
                        client_domain=domain,
                        seed=int(seed),
                        method=method,
                        space=space.name,
                        setting=setting.name,
                        total_epsilon_target=float(total),
                        label_accuracy=float(right[has].mean()) if has.any() else None,
                        id_label_accuracy=float(right[has & ids].mean())
                        if (has & ids).any()
                        else None,
                        labeled_fraction=float(has.mean()),
                        passed_fraction=float(answers.passed.mean()),
                        labeled_id_fraction=float(ids[has].mean()) if has.any() else None,
                        screen_scale=screen_scale,
                        answer_scale=answer_scale,
                        epsilon_screen_rdp=stages.get(tasks.subsampled_knn.SCREEN_RELEASE),
                        epsilon_answer_rdp=stages[tasks.subsampled_knn.ANSWER_RELEASE],
                        epsilon_ecos_rdp=None
                        if ecos_release is None
                        else privacy.epsilon(ecos_release, delta=delta),
                        epsilon_rdp=eps["rdp"],
                        epsilon_pld=eps["pld"],
                    )
                )
    return out


def _published_markdown(config, rows) -> str:
    """Per total ε: every setting × space, each method's label accuracy / labeled fraction
    (means over domains and seeds), ECOS per client domain, and the ε of each stage."""
    if not rows:
        return ""
    lines = [
        "",
        "# Private-kNN as published (subsampled, optional screening), no training",
        "",
        "A setting reads `γ:k:max_answers:screen_ratio` (`none`: no screening; with "
        f"screening T = {config.published.threshold_fraction}·k); the first max_answers "
        f"queries of S are answered, S in {config.published.query_order} order (as in task "
        "c: `config.knn.query_order`). The noise is calibrated "
        "so that the total ε (labels, and for ECOS its score release) is the target (RDP, "
        f"δ={config.ecos.delta:g}). Cells: label accuracy of the released labels (junk "
        "wrong, other digit domains by their class) / fraction of S labeled.",
    ]
    for total in config.published.total_epsilons:
        match = dict(total_epsilon_target=float(total))
        lines += [
            "",
            f"## Total ε = {float(total):g}",
            "",
            "| setting | space | σ2 | "
            + " | ".join(selection.METHOD_NAMES[m] for m in config.methods)
            + " | ECOS ε screen / "
            "answer / ECOS (RDP) | ECOS total ε RDP / PLD |",
            "|---|---|---|" + "---|" * len(config.methods) + "---|---|",
        ]
        for setting in config.published.settings:
            name = parse_setting(setting).name
            for space in config.published.spaces:
                m2 = dict(match, setting=name, space=parse_space(space).name)
                cells = [
                    f"{_fmt(_mean(rows, 'label_accuracy', method=m, **m2))} / "
                    f"{_fmt(_mean(rows, 'labeled_fraction', method=m, **m2))}"
                    for m in config.methods
                ]
                ecos = dict(m2, method="ecos")
                stage = " / ".join(
                    _fmt(_mean(rows, f, **ecos))
                    for f in ("epsilon_screen_rdp", "epsilon_answer_rdp", "epsilon_ecos_rdp")
                )
                totals = (
                    f"{_fmt(_mean(rows, 'epsilon_rdp', **ecos))} / "
                    f"{_fmt(_mean(rows, 'epsilon_pld', **ecos))}"
                )
                lines.append(
                    f"| `{name}` | `{m2['space']}` | {_fmt(_mean(rows, 'answer_scale', **ecos))} "
                    f"| " + " | ".join(cells) + f" | {stage} | {totals} |"
                )
        lines += [
            "",
            f"ECOS per client domain at total ε = {float(total):g} (label accuracy / labeled):",
            "",
            "| setting | space | " + " | ".join(config.client_domains) + " |",
            "|---|---|" + "---|" * len(config.client_domains),
        ]
        for setting in config.published.settings:
            name = parse_setting(setting).name
            for space in config.published.spaces:
                m2 = dict(match, setting=name, space=parse_space(space).name, method="ecos")
                cells = [
                    f"{_fmt(_mean(rows, 'label_accuracy', client_domain=d, **m2))} / "
                    f"{_fmt(_mean(rows, 'labeled_fraction', client_domain=d, **m2))}"
                    for d in config.client_domains
                ]
                lines.append(f"| `{name}` | `{m2['space']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _release(randomness, votes, sigma: float) -> np.ndarray:
    """The released labels: the noisy argmax (σ > 0) or the noise-free argmax (σ = 0)."""
    if sigma == 0.0:
        return np.asarray(votes).argmax(axis=-1)
    labels, _ = tasks.release_knn_labels(votes, sigma=sigma, randomness=randomness)
    return np.asarray(labels)


def _mean(rows, field, **match) -> float | None:
    values = [
        r[field]
        for r in rows
        if all(r.get(k) == v for k, v in match.items()) and r.get(field) is not None
    ]
    return float(np.mean(values)) if values else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _eps_label(eps: float) -> str:
    return "∞" if math.isinf(eps) else f"{eps:g}"


def _eps_key(eps: float) -> float | None:
    return None if math.isinf(eps) else float(eps)


def _markdown(config, rows, spaces: list[Space], vote_sigmas: dict[float, float]) -> str:
    """Tables: in-domain label accuracy of ECOS's S over k × ε per space; every method at
    the report (k, ε); per client domain at the report k, noise-free and at the report ε."""
    eps_list = [float(e) for e in config.label_epsilons]
    sigmas = ", ".join(f"ε={_eps_label(e)}: σ={s:.1f}" for e, s in vote_sigmas.items())
    lines = [
        "# Private-kNN label accuracy on S (no training)",
        "",
        f"Client domains {', '.join(config.client_domains)}; regime "
        f"{config.data.images.regime}; B={config.budget}; seeds {list(config.seeds)}; "
        f"selection φ = {config.features.extractor} at {config.features.resolution} px, "
        f"ECOS R={config.ecos.num_clusters} at ε={config.ecos.target_epsilon}. The label "
        f"releases alone cost the ε of each column (RDP, δ={config.ecos.delta:g}, "
        f"{config.budget} queries, sensitivity √2); discrete Gaussian vote noise of scale "
        f"{sigmas}, {noise.RANDOMNESS_NAMES[config.ecos.randomness]}. Means over "
        "client domains and seeds. 'In-domain' counts only the images of S from the client's "
        "domain; 'all of S' counts every image of S, an image of another digit domain by its "
        "class and a junk image (unrelated domain, no digit) as wrong.",
        "",
    ]

    def ecos_cell(**match) -> str:
        return _fmt(_mean(rows, "id_label_accuracy", method="ecos", **match))

    head = "| k | " + " | ".join(f"ε = {_eps_label(e)}" for e in eps_list) + " |"
    rule = "|---|" + "---|" * len(eps_list)
    for space in spaces:
        lines += [f"## ECOS, in-domain label accuracy, kNN space `{space.name}`", "", head, rule]
        for k in sorted({r["k"] for r in rows}):
            cells = [ecos_cell(space=space.name, k=k, label_epsilon=_eps_key(e)) for e in eps_list]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append("")
    k, eps = int(config.report_k), float(config.report_epsilon)
    lines += [
        f"## Every method at k = {k}, ε = {_eps_label(eps)} and noise-free",
        "",
        "| method | space | all of S | in-domain | all of S, ε = ∞ | in-domain, ε = ∞ "
        "| ID fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in config.methods:
        for space in spaces:
            match = dict(method=method, space=space.name, k=k)
            lines.append(
                f"| {selection.METHOD_NAMES[method]} | `{space.name}` "
                f"| {_fmt(_mean(rows, 'label_accuracy', label_epsilon=_eps_key(eps), **match))} "
                f"| {_fmt(_mean(rows, 'id_label_accuracy', label_epsilon=_eps_key(eps), **match))}"
                f" | {_fmt(_mean(rows, 'label_accuracy', label_epsilon=None, **match))} "
                f"| {_fmt(_mean(rows, 'id_label_accuracy', label_epsilon=None, **match))} "
                f"| {_fmt(_mean(rows, 'id_fraction', **match))} |"
            )
    lines += [
        "",
        f"## ECOS per client domain, in-domain label accuracy at k = {k}",
        "",
        "| space | ε | " + " | ".join(config.client_domains) + " |",
        "|---|---|" + "---|" * len(config.client_domains),
    ]
    for space in spaces:
        for e in (math.inf, eps):
            cells = [
                ecos_cell(space=space.name, k=k, label_epsilon=_eps_key(e), client_domain=d)
                for d in config.client_domains
            ]
            lines.append(f"| `{space.name}` | {_eps_label(e)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _summary(config, rows, spaces: list[Space]) -> dict[str, Any]:
    """The last-line JSON: each method's label accuracy at the report k and ε, per space."""
    k, eps = int(config.report_k), _eps_key(float(config.report_epsilon))
    return {
        "randomness": noise.RANDOMNESS_NAMES[config.ecos.randomness],
        "budget": int(config.budget),
        "k": k,
        "label_epsilon": eps,
        "methods": {
            method: {
                space.name: {
                    "label_accuracy": _mean(
                        rows,
                        "label_accuracy",
                        method=method,
                        space=space.name,
                        k=k,
                        label_epsilon=eps,
                    ),
                    "id_label_accuracy": _mean(
                        rows,
                        "id_label_accuracy",
                        method=method,
                        space=space.name,
                        k=k,
                        label_epsilon=eps,
                    ),
                }
                for space in spaces
            }
            for method in config.methods
        },
    }


if __name__ == "__main__":
    common.main(run, _DEFAULT_CONFIG)
