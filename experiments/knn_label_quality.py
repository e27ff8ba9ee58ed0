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
from typing import Any

import numpy as np
from tqdm import tqdm

from ecos_jax import noise, selection, tasks
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
    return [parse_space(s) for s in config.spaces]


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
    total = len(config.client_domains) * len(config.seeds) * len(config.methods) * len(spaces)
    bar = tqdm(total=total, desc="knn_label_quality", file=sys.stderr, dynamic_ncols=True)
    for domain in config.client_domains:
        bench = common.load_image_benchmark(config, domain)
        space_features = {
            s: common.space_features(config, bench, s, dim=config.features.dim) for s in spaces
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
    bar.close()
    artefacts.write_results(workdir, rows, _markdown(config, rows, spaces, vote_sigmas))
    return _summary(config, rows, spaces)


def _release(randomness, votes, sigma: float) -> np.ndarray:
    """The released labels: the noisy argmax (σ > 0) or the noise-free argmax (σ = 0)."""
    if sigma == 0.0:
        return np.asarray(votes).argmax(axis=-1)
    labels, _ = tasks.release_knn_labels(votes, sigma=sigma, randomness=randomness)
    return np.asarray(labels)


def _mean(rows, field, **match) -> float | None:
    values = [
        r[field] for r in rows if all(r[k] == v for k, v in match.items()) and r[field] is not None
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
        "domain; 'all of S' counts junk and other domains as wrong.",
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
