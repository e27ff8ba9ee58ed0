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

import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from ecos_jax import metrics, privacy, protocol, sampling, synthetic

_DEFAULT_CONFIG = str(Path(__file__).resolve().parent / "configs" / "sampling_quality.py")

METHOD_NAMES = {"ecos": "ECOS", "random": "Random", "k_center": "K-Center", "oracle": "Oracle"}


def get_features(config) -> tuple[synthetic.FeatureBenchmark, str]:
    """The "features z = φ(x)" step: client and pool features plus evaluation labels.

    Returns the features and a sentence that says what they are, for the results header.
    """
    source = config.data.source
    if source == "synthetic":
        syn = config.data.synthetic
        bench = synthetic.make_feature_benchmark(
            jax.random.key(syn.seed),
            num_domains=syn.num_domains,
            num_classes=syn.num_classes,
            dim=syn.dim,
            per_domain=syn.per_domain,
            client_domain=syn.client_domain,
            regime=syn.regime,
            client_fraction=syn.client_fraction,
            class_scale=syn.class_scale,
            domain_shift=syn.domain_shift,
            style_strength=syn.style_strength,
            noise_std=syn.noise_std,
        )
        about = (
            f"SYNTHETIC Gaussian-mixture features ({syn.num_domains} domains × "
            f"{syn.num_classes} classes, d={syn.dim}), regime {syn.regime}, client domain "
            f"{syn.client_domain}. Not real data: these figures test the selection mechanics "
            "only."
        )
        return bench, about

    from ecos_jax import data, feature_benchmark

    img, fcfg = config.data.images, config.features
    build = (img.build_train, img.build_test) if img.build_train else None
    split = data.load_split(
        source,
        img.client_domain,
        img.regime,
        img.split_seed,
        caps=img.caps or None,
        include_unrelated=img.include_unrelated,
        data_dir=img.data_dir,
        build_counts=build,
    )
    extractor = feature_benchmark.make_extractor(
        fcfg.extractor,
        pool_images=split.pool_images,
        pool_labels=split.pool_oracle.labels,
        resolution=fcfg.resolution,
        batch_size=fcfg.batch_size,
        dim=fcfg.dim,
    )
    tag = None
    if fcfg.cache:
        tag = f"{source}-seed{img.split_seed}-{img.regime}-caps{img.caps}-build{build}"
        tag += f"-unrelated{int(img.include_unrelated)}"
    bench = feature_benchmark.featurize_split(split, extractor, cache_tag=tag)
    about = (
        f"{source} images (offline benchmark `ecos_jax.data`; pool domains "
        f"{', '.join(split.domains)}), regime {img.regime}, client domain "
        f"{img.client_domain}, at most {img.caps} examples per domain; features φ = "
        f"{extractor.name} (d={bench.pool_features.shape[1]})."
    )
    return bench, about


def run(config, workdir: str | os.PathLike) -> dict[str, Any]:
    """Runs every method × budget × seed, writes the artefacts, returns the summary."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _atomic_write(workdir / "config.json", config.to_json(indent=2) + "\n")
    for method in config.methods:
        if method not in METHOD_NAMES:
            raise ValueError(f"unknown method {method!r}; choose from {sorted(METHOD_NAMES)}.")

    bench, about = get_features(config)
    pool, client = bench.pool_features, bench.client_features
    ecfg = config.ecos
    sigma = privacy.calibrate_sigma(
        ecfg.target_epsilon, delta=ecfg.delta, count=1, accountant=ecfg.accountant
    )
    release = protocol.privacy_report(sigma, method=ecfg.method, delta=ecfg.delta)
    eps = {"rdp": release.epsilon_rdp, "pld": release.epsilon_pld}
    threshold = (
        None if ecfg.threshold_multiple is None else ecfg.threshold_multiple * release.noise_std
    )
    raw = protocol.comparison_bytes(client, pool)

    rows: list[dict[str, Any]] = []
    total = len(config.seeds) * len(config.methods) * len(config.budgets)
    bar = tqdm(total=total, desc="sampling_quality", file=sys.stderr, dynamic_ncols=True)
    for seed in config.seeds:
        keys = dict(
            zip(
                ("kmeans", "noise", "random", "k_center"),
                jax.random.split(jax.random.key(seed), 4),
                strict=True,
            )
        )
        ecos_round, round_seconds = None, 0.0
        for method in config.methods:
            if method == "ecos":  # one release per seed serves every budget
                start = time.perf_counter()
                ecos_round = _ecos_round(keys, pool, client, sigma, config)
                round_seconds = time.perf_counter() - start
            for budget in config.budgets:
                start = time.perf_counter()
                idx, cost = _select(
                    method,
                    budget,
                    keys=keys,
                    bench=bench,
                    ecos_round=ecos_round,
                    threshold=threshold,
                    eps=eps,
                    upload_bytes=raw.upload_client_data,
                    config=config,
                )
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
                        **cost,
                        num_selected=int(idx.shape[0]),
                        num_unique=int(np.unique(idx).shape[0]),
                        # Selection time; ECOS's k-means + client round is timed apart.
                        seconds=round(seconds, 3),
                        round_seconds=round(round_seconds, 3) if method == "ecos" else 0.0,
                    )
                )
                bar.update(1)
    bar.close()

    _atomic_write(workdir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    summary_rows = _aggregate(rows, config)
    header = _header(config, bench, about, sigma, eps, raw)
    table = _markdown_table(summary_rows)
    _atomic_write(workdir / "results.md", header + "\n" + table + "\n")
    for field, label in (("id_fraction", "ID fraction"), ("proximity", "proximity (lower=closer)")):
        _plot(summary_rows, config, field, label, workdir / f"{field}.png")
    print(header)
    print(table)
    return _final_summary(summary_rows, config, eps)


def _select(method, budget, *, keys, bench, ecos_round, threshold, eps, upload_bytes, config):
    """One selection; returns (indices, cost: ε and bytes of the method)."""
    pool, client = bench.pool_features, bench.client_features
    free = dict(epsilon_rdp=0.0, epsilon_pld=0.0, bytes_down=0, bytes_up=0)
    if method == "ecos":
        idx = ecos_round.cloud.select(
            ecos_round.scores,
            budget=budget,
            kappa=config.ecos.kappa,
            threshold=threshold,
            top_k=config.ecos.top_k,
        )
        return idx, dict(
            epsilon_rdp=eps["rdp"],
            epsilon_pld=eps["pld"],
            bytes_down=ecos_round.transcript.bytes_down,
            bytes_up=ecos_round.transcript.bytes_up,
        )
    if method == "random":
        return sampling.random_select(keys["random"], pool.shape[0], budget=budget), free
    if method == "k_center":
        idx = sampling.k_center_select(keys["k_center"], pool, budget=budget, metric=config.metric)
        return idx, free
    idx = sampling.oracle_select(
        pool,
        client,
        budget=budget,
        metric=config.metric,
        kappa=config.oracle_kappa,
        chunk_size=config.chunk_size,
    )
    # Not private (ε = ∞, written as null); it uploads the client features.
    return idx, dict(epsilon_rdp=None, epsilon_pld=None, bytes_down=0, bytes_up=upload_bytes)


class _EcosRound(NamedTuple):
    """One ECOS round on the cloud side: the clustering, the reply and the transcript."""

    cloud: protocol.Cloud
    scores: protocol.ScoresMessage
    transcript: protocol.Transcript


def _ecos_round(keys, pool, client, sigma: float, config) -> _EcosRound:
    """Broadcast → respond, both messages logged in a transcript."""
    ecfg = config.ecos
    transcript = protocol.Transcript()
    cloud = protocol.Cloud(pool, metric=config.metric)
    down = transcript.record(
        "down",
        cloud.broadcast(
            keys["kmeans"], num_clusters=ecfg.num_clusters, num_iters=ecfg.kmeans_iters
        ),
    )
    up = transcript.record(
        "up",
        protocol.client_respond(
            keys["noise"],
            down,
            client,
            sigma=sigma,
            method=ecfg.method,
            metric=config.metric,
            chunk_size=config.chunk_size,
        ),
    )
    return _EcosRound(cloud, up, transcript)


def _mean_std(values: list) -> tuple[float | None, float | None]:
    """Mean and population std over seeds; None if any value is None (not private)."""
    if any(v is None for v in values):
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def _aggregate(rows: list[dict], config) -> list[dict]:
    """Mean ± std over seeds for each method × budget."""
    out = []
    for method in config.methods:
        for budget in config.budgets:
            group = [r for r in rows if r["method"] == method and r["budget"] == budget]
            agg: dict[str, Any] = dict(method=method, budget=int(budget), num_seeds=len(group))
            for field in ("id_fraction", "proximity", "epsilon_rdp", "epsilon_pld"):
                agg[field], agg[field + "_std"] = _mean_std([r[field] for r in group])
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
        f"ε_PLD={eps['pld']:.3f}, κ={config.ecos.kappa}, metric={config.metric}. "
        f"Seeds {list(config.seeds)}; mean ± std over seeds (the oracle is deterministic). "
        "One ECOS release per seed serves every budget (selection is post-processing).\n\n"
        f"Comparison bytes: uploading the client features = {raw.upload_client_data:,} B; "
        f"downloading the pool features = {raw.download_pool_data:,} B.\n"
    )


def _plot(summary_rows: list[dict], config, field: str, label: str, path: Path) -> None:
    """One line per method over budgets, error bars = std over seeds; saved atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.6))
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
    fig.tight_layout()
    _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), binary=True)
    plt.close(fig)


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


def _atomic_write(path: Path, content: str | Callable, *, binary: bool = False) -> None:
    """Writes to a temp file in the same folder, then `os.replace`s it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _define_flags() -> tuple[flags.FlagHolder, flags.FlagHolder]:
    """Command-line flags; defined only when run as a program, so importing is side-free."""
    config = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Experiment config.")
    workdir = flags.DEFINE_string("workdir", None, "Output directory.")
    return config, workdir


def main(argv: list[str], *, config_flag, workdir_flag) -> None:
    """absl entry point: runs the experiment, prints the summary JSON as the last line."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not workdir_flag.value:
        raise app.UsageError("--workdir is required.")
    logging.set_verbosity(logging.WARNING)  # no INFO lines from JAX's backend probing
    summary = run(config_flag.value, workdir_flag.value)
    print(json.dumps(summary, allow_nan=False, default=_json_default), flush=True)


def _json_default(obj):
    """JSON fallback for numpy scalars."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


if __name__ == "__main__":
    _config_flag, _workdir_flag = _define_flags()
    app.run(functools.partial(main, config_flag=_config_flag, workdir_flag=_workdir_flag))
