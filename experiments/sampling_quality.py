"""Selection quality (ID fraction, proximity, ε, bytes) of ECOS and the baselines.

  python -m experiments.sampling_quality --workdir=DIR [--config=PATH[:smoke]]

Writes to DIR (each file atomically): config.json, metrics.jsonl (one object per
method × budget × seed), results.md (mean ± std table), id_fraction.png, proximity.png.
Prints the table; the last stdout line is one JSON object with the headline figures.
Features come from `config.data.source`: the offline Digits benchmark through a frozen
extractor (default), a prepared catalog dataset, or a SYNTHETIC Gaussian mixture.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 4.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from ecos_jax import messages, metrics, noise, protocol, selection, synthetic
from experiments import artefacts, common, plots

_DEFAULT_CONFIG = str(Path(__file__).resolve().parent / "configs" / "sampling_quality.py")

METHOD_NAMES = selection.METHOD_NAMES


def get_features(config) -> tuple[synthetic.FeatureBenchmark, str]:
    """The "features z = φ(x)" step: client and pool features plus evaluation labels.

    Returns the features and a sentence that says what they are, for the results header.
    """
    source = config.data.source
    if source == "synthetic":
        syn = config.data.synthetic
        # Every field but the seed is an argument of the benchmark, under its own name.
        settings = {name: value for name, value in syn.items() if name != "seed"}
        bench = synthetic.make_feature_benchmark(jax.random.key(syn.seed), **settings)
        about = (
            f"SYNTHETIC Gaussian-mixture features ({syn.num_domains} domains × "
            f"{syn.num_classes} classes, d={syn.dim}), regime {syn.regime}, client domain "
            f"{syn.client_domain}. Not real data: these figures test the selection mechanics "
            "only."
        )
        return bench, about

    bench = common.load_image_benchmark(config, config.data.images.client_domain)
    return bench.features, bench.about


def run(config, workdir: str | os.PathLike) -> dict[str, Any]:
    """Runs every method × budget × seed, writes the artefacts, returns the summary."""
    for method in config.methods:
        if method not in METHOD_NAMES:
            raise ValueError(f"unknown method {method!r}; choose from {sorted(METHOD_NAMES)}.")
    workdir = artefacts.open_workdir(config, workdir)

    bench, about = get_features(config)
    pool, client = bench.pool_features, bench.client_features
    ecfg = config.ecos
    sigma = common.score_sigma(config, ecfg.target_epsilon)
    release = protocol.privacy_report(
        sigma, method=ecfg.method, delta=ecfg.delta, coverage_kwargs=common.coverage_kwargs(config)
    )
    eps = {"rdp": release.epsilon_rdp, "pld": release.epsilon_pld}
    raw = messages.comparison_bytes(client, pool)

    rows: list[dict[str, Any]] = []
    total = len(config.seeds) * len(config.methods) * len(config.budgets)
    bar = tqdm(total=total, desc="sampling_quality", file=sys.stderr, dynamic_ncols=True)
    for seed in config.seeds:
        keys = selection.method_keys(seed)
        ecos, round_seconds = None, 0.0
        for method in config.methods:
            if method == "ecos":  # one release per seed serves every budget
                start = time.perf_counter()
                randomness = common.score_randomness(config, seed, ecfg.target_epsilon)
                ecos = common.ecos_round(config, keys, pool, client, sigma, randomness)
                round_seconds = time.perf_counter() - start
            for budget in config.budgets:
                start = time.perf_counter()
                idx, cost = common.select(config, method, keys, budget, pool, client, ecos)
                seconds = time.perf_counter() - start
                rows.append(
                    dict(
                        method=method,
                        budget=int(budget),
                        seed=int(seed),
                        id_fraction=metrics.id_fraction(
                            idx, bench.pool_domains, bench.client_domain
                        ),
                        proximity=metrics.proximity(
                            pool[idx], client, metric=config.metric, chunk_size=config.chunk_size
                        ),
                        **cost._asdict(),
                        num_selected=int(idx.shape[0]),
                        num_unique=int(np.unique(idx).shape[0]),
                        # Selection time; ECOS's k-means + client round is timed apart.
                        seconds=round(seconds, 3),
                        round_seconds=round(round_seconds, 3) if method == "ecos" else 0.0,
                    )
                )
                bar.update(1)
    bar.close()

    summary_rows = _aggregate(rows, config)
    header = _header(config, bench, about, sigma, eps, raw)
    artefacts.write_results(workdir, rows, header + "\n" + _markdown_table(summary_rows) + "\n")
    for field, label in (("id_fraction", "ID fraction"), ("proximity", "proximity (lower=closer)")):
        _plot(summary_rows, config, field, label, workdir / f"{field}.png")
    return _final_summary(summary_rows, config, eps)


def _aggregate(rows: list[dict], config) -> list[dict]:
    """Mean ± std over seeds for each method × budget."""
    out = []
    for method in config.methods:
        for budget in config.budgets:
            group = [r for r in rows if r["method"] == method and r["budget"] == budget]
            agg: dict[str, Any] = dict(method=method, budget=int(budget), num_seeds=len(group))
            for field in ("id_fraction", "proximity", "epsilon_rdp", "epsilon_pld"):
                agg[field], agg[field + "_std"] = common.mean_std([r[field] for r in group])
            for field in ("bytes_down", "bytes_up"):
                agg[field] = int(group[0][field])
            out.append(agg)
    return out


def _fmt_eps(value: float | None) -> str:
    """ε for the table: ∞ for a non-private method."""
    return "∞" if value is None else f"{value:.3f}"


def _markdown_table(summary_rows: list[dict]) -> str:
    """The results table (mean ± std over seeds)."""
    lines = [
        "| method | budget | ID fraction ↑ | proximity ↓ | ε (RDP) | ε (PLD) | bytes down "
        "| bytes up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary_rows:
        lines.append(
            f"| {METHOD_NAMES[r['method']]} | {r['budget']} "
            f"| {r['id_fraction']:.3f} ± {r['id_fraction_std']:.3f} "
            f"| {r['proximity']:.3f} ± {r['proximity_std']:.3f} "
            f"| {_fmt_eps(r['epsilon_rdp'])} | {_fmt_eps(r['epsilon_pld'])} "
            f"| {r['bytes_down']:,} | {r['bytes_up']:,} |"
        )
    return "\n".join(lines)


def _header(config, bench, about: str, sigma: float, eps: dict, raw) -> str:
    """What was run, in words, above the table."""
    num_id = int(np.sum(bench.pool_domains == bench.client_domain))
    num_pool = bench.pool_features.shape[0]
    title = "a SYNTHETIC feature pool" if config.data.source == "synthetic" else "real images"
    return (
        f"# Selection quality on {title}\n\n"
        f"Data: {about} Pool {num_pool:,} points of which {num_id:,} ({num_id / num_pool:.1%}) "
        f"are from the client domain; client {bench.client_features.shape[0]:,} points.\n\n"
        f"ECOS: k-means R={config.ecos.num_clusters}, {config.ecos.method} scores, "
        f"σ={sigma:.3f} (calibrated to ε={config.ecos.target_epsilon} at "
        f"δ={config.ecos.delta:g}, {config.ecos.accountant.upper()}), ε_RDP={eps['rdp']:.3f}, "
        f"ε_PLD={eps['pld']:.3f}, κ={config.ecos.kappa}, metric={config.metric}; discrete "
        f"Gaussian noise, {noise.RANDOMNESS_NAMES[config.ecos.randomness]}. "
        f"Seeds {list(config.seeds)}; mean ± std over seeds (the oracle is deterministic). "
        "One ECOS release per seed serves every budget (selection is post-processing).\n\n"
        f"Comparison bytes: uploading the client features = {raw.upload_client_data:,} B; "
        f"downloading the pool features = {raw.download_pool_data:,} B.\n"
    )


def _plot(summary_rows: list[dict], config, field: str, label: str, path: Path) -> None:
    """One line per method over budgets, error bars = std over seeds; saved atomically."""
    fig, ax = plots.pyplot().subplots(figsize=(5.0, 3.6))
    for method in config.methods:
        rs = [r for r in summary_rows if r["method"] == method]
        ax.errorbar(
            [r["budget"] for r in rs],
            [r[field] for r in rs],
            yerr=[r[field + "_std"] for r in rs],
            marker="o",
            capsize=3,
            label=METHOD_NAMES[method],
        )
    ax.set_xlabel("budget B")
    ax.set_ylabel(label)
    ax.set_title(f"{label} ({_data_label(config)})")
    ax.legend()
    plots.save_figure(fig, path)


def _data_label(config) -> str:
    """Short name of the data for plot titles."""
    if config.data.source == "synthetic":
        return "SYNTHETIC pool"
    return f"{config.data.source}, client {config.data.images.client_domain}"


def _final_summary(summary_rows: list[dict], config, eps: dict) -> dict[str, Any]:
    """The last-line JSON: headline figures at the report budget, per-budget detail."""
    report = int(config.report_budget)
    if report not in config.budgets:
        raise ValueError(f"report_budget={report} must be one of budgets {list(config.budgets)}.")

    def pick(method: str, budget: int) -> dict:
        return next(r for r in summary_rows if r["method"] == method and r["budget"] == budget)

    ecos = pick("ecos", report) if "ecos" in config.methods else None
    return {
        "data": "SYNTHETIC" if config.data.source == "synthetic" else config.data.source,
        "budget": report,
        "methods": {
            m: {
                "id_fraction": pick(m, report)["id_fraction"],
                "proximity": pick(m, report)["proximity"],
            }
            for m in config.methods
        },
        "epsilon_rdp": eps["rdp"],
        "epsilon_pld": eps["pld"],
        "randomness": noise.RANDOMNESS_NAMES[config.ecos.randomness],
        "bytes_down": None if ecos is None else ecos["bytes_down"],
        "bytes_up": None if ecos is None else ecos["bytes_up"],
        "per_budget": {
            str(b): {
                m: {
                    "id_fraction": pick(m, b)["id_fraction"],
                    "id_fraction_std": pick(m, b)["id_fraction_std"],
                    "proximity": pick(m, b)["proximity"],
                    "proximity_std": pick(m, b)["proximity_std"],
                }
                for m in config.methods
            }
            for b in config.budgets
        },
    }


if __name__ == "__main__":
    common.main(run, _DEFAULT_CONFIG)
