"""The files an experiment leaves in its work directory: config.json first, then
metrics.jsonl and results.md, and the downstream drivers' cluster examples.

Every file is written atomically (`common.atomic_write`), so an interrupted run leaves
the previous version or none, never half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from experiments import common

__all__ = ["open_workdir", "save_cluster_examples", "write_results"]


def open_workdir(config, workdir: str | os.PathLike) -> Path:
    """Creates `workdir` and writes `config` to `workdir/config.json`; returns the path."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    common.atomic_write(workdir / "config.json", config.to_json(indent=2) + "\n")
    return workdir


def write_results(workdir: Path, rows: list[dict[str, Any]], report: str) -> None:
    """Writes `rows` to metrics.jsonl (one JSON object a line) and `report` to results.md,
    then prints the report."""
    common.atomic_write(workdir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    common.atomic_write(workdir / "results.md", report)
    print(report)


def save_cluster_examples(ecos, bench, path: Path, *, num_clusters=3, per_cluster=8) -> None:
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
