"""Scaling study: the stages of an ECOS round vs the number of devices and the pool size.

  python -m experiments.scaling_study --workdir=DIR [--config=PATH[:smoke]]
      [--num_processes=P --devices_per_process=D]

Strong scaling times one fixed round on meshes of `config.device_counts` devices; weak
scaling grows the pool with the mesh. Every stage (`ecos_jax.scaling.STAGES`) is timed
after a warm-up, with `block_until_ready`, as the median of `config.repeats`. The bytes
each KMeans iteration and the scoring step communicate are read from their compiled HLO
(`ecos_jax.communication`) for two pool sizes.

With `--num_processes=P` the study relaunches itself as P local CPU processes joined by
`jax.distributed.initialize` (gloo collectives); each process generates only its own rows
and process 0 writes the files. Writes to DIR (each file atomically): config.json,
metrics.jsonl (one object per study × devices × stage), communication.jsonl, results.md,
time_vs_devices.png, efficiency_vs_devices.png, time_vs_pool.png. The last stdout line is
one JSON object with the headline figures.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
from absl import app, flags, logging
from ml_collections import config_flags
from tqdm import tqdm

from ecos_jax import communication, distributed, scaling, sharding
from ecos_jax.features.extract import resize_images
from experiments import artefacts, common, plots

_DEFAULT_CONFIG = str(Path(__file__).resolve().parent / "configs" / "scaling_study.py")

_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Study config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Local JAX processes to launch.")
_DEVICES = flags.DEFINE_integer("devices_per_process", 4, "CPU devices per launched process.")
_TIMEOUT = flags.DEFINE_float("timeout_s", 1800.0, "Wall-clock limit of a multi-process run.")

STAGE_LABELS = {
    "features": "φ extraction",
    "kmeans": "KMeans",
    "scoring": "client scoring",
    "selection": "selection",
    "train_step": "train step",
}


def _phi(config):
    """(apply_fn, variables) of the packaged network the features stage maps with."""
    from ecos_jax.features.weights import load_pretrained

    module, variables = load_pretrained(config.phi.model)
    return functools.partial(_apply_phi, module, config.phi.resolution), variables


def _apply_phi(module, resolution, variables, images_bHWC):
    return module.apply(variables, resize_images(images_bHWC, resolution=resolution))


def _sizes(config, study: str, devices: int):
    s = dict(config.strong)
    if study == "weak":
        s["pool_rows"] = config.weak.pool_rows_per_device * devices
        s["image_rows"] = config.weak.image_rows_per_device * devices
        s["train_batch"] = config.weak.train_batch_per_device * devices
        s["client_rows"] = config.weak.client_rows_per_device * devices
    return scaling.RoundSizes(**s)


def _device_counts(config) -> tuple[list[int], list[int]]:
    """The meshes this run can form, and the requested ones it cannot."""
    ok, skipped = [], []
    for d in sorted(set(config.device_counts)):
        fits = d <= jax.device_count() and d % jax.process_count() == 0
        (ok if fits else skipped).append(d)
    if not ok:
        raise ValueError(
            f"config.device_counts={tuple(config.device_counts)}: none fits {jax.device_count()} "
            f"devices over {jax.process_count()} processes (each count must be a multiple of "
            "the processes and at most the devices)."
        )
    return ok, skipped


def _communication(config, mesh) -> list[dict[str, Any]]:
    d, r = config.strong.dim, config.strong.clusters
    kmeans_formula = communication.kmeans_bytes_formula(dim=d, k=r)
    scoring_formula = communication.scoring_bytes_formula(num_centroids=r)
    measured = [
        ("kmeans (per iteration)", n, kmeans_formula, "per_iteration",
         communication.kmeans_iteration_bytes(mesh, num_rows=n, dim=d, k=r))
        for n in config.communication.pool_rows
    ] + [
        ("client scoring", m, scoring_formula, None,
         communication.scoring_bytes(mesh, num_client_rows=m, dim=d, num_centroids=r))
        for m in config.communication.client_rows
    ]  # fmt: skip
    return [
        {
            "stage": stage,
            "devices": mesh.size,
            "rows": n,
            "bytes": c.per_iteration if where else c.total,
            "formula_bytes": formula,
            "collectives": [x.kind for x in c.collectives if where in (None, x.where)],
        }
        for stage, n, formula, where, c in measured
    ]


def _efficiency(rows: list[dict[str, Any]]) -> None:
    """Adds `efficiency` to every row: t₀·d₀/(t·d) for strong, t₀/t for weak scaling."""
    base = {}
    for r in sorted(rows, key=lambda r: r["devices"]):
        base.setdefault((r["study"], r["stage"]), r)
    for r in rows:
        b = base[(r["study"], r["stage"])]
        work = r["devices"] / b["devices"] if r["study"] == "strong" else 1.0
        r["efficiency"] = b["seconds"] / (r["seconds"] * work)


def _report(config, rows, comm, skipped, fake: bool) -> str:
    counts = sorted({r["devices"] for r in rows})
    lines = [
        f"# Scaling study ({config.variant})",
        "",
        f"{rows[0]['processes']} process(es), platform {rows[0]['platform']} "
        f"({rows[0]['device_kind']}); medians of {config.repeats} after {config.warmup} "
        "warm-up.",
    ]
    if fake:
        lines += [
            "",
            "**Fake CPU devices share this machine's cores: these times show that every "
            "stage runs sharded and what splitting costs, not speedups.**",
        ]
    if skipped:
        lines += ["", f"Skipped device counts (not formable here): {skipped}."]
    for study in ("strong", "weak"):
        sub = [r for r in rows if r["study"] == study]
        what = (
            f"N = {config.strong.pool_rows:,} fixed"
            if study == "strong"
            else f"N = {config.weak.pool_rows_per_device:,} and M = "
            f"{config.weak.client_rows_per_device:,} per device"
        )
        lines += [
            "",
            f"## {study.capitalize()} scaling ({what}; seconds, efficiency in brackets)",
            "",
            "| stage | " + " | ".join(f"{d} dev" for d in counts) + " |",
            "|---|" + "---|" * len(counts),
        ]
        for stage in config.stages:
            cells = []
            for d in counts:
                hit = [r for r in sub if r["stage"] == stage and r["devices"] == d]
                cells.append(
                    f"{hit[0]['seconds']:.4f} ({hit[0]['efficiency']:.2f})" if hit else "–"
                )
            lines.append(f"| {STAGE_LABELS[stage]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Communication per step, read from the compiled HLO",
        "",
        "Bytes each device contributes to the collectives (logical payload), on the "
        f"{comm[0]['devices']}-device mesh, D = {config.strong.dim}, R = {config.strong.clusters}.",
        "",
        "| stage | rows | bytes | formula | collectives |",
        "|---|---|---|---|---|",
    ]
    for c in comm:
        kinds = ", ".join(sorted(set(c["collectives"]))) or "none"
        lines.append(
            f"| {c['stage']} | {c['rows']:,} | {c['bytes']:,} | {c['formula_bytes']:,} | {kinds} |"
        )
    return "\n".join(lines) + "\n"


def _plots(config, rows, workdir: Path) -> None:
    plt = plots.pyplot()
    stages = list(config.stages)
    for name, study, y, ylabel in (
        ("time_vs_devices.png", "strong", "seconds", "seconds (median)"),
        ("efficiency_vs_devices.png", None, "efficiency", "parallel efficiency"),
    ):
        panels = ("strong", "weak") if study is None else (study,)
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        for ax, panel in zip(axes[0], panels, strict=True):
            for stage in stages:
                pts = sorted(
                    (r["devices"], r[y])
                    for r in rows
                    if r["study"] == panel and r["stage"] == stage
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=STAGE_LABELS[stage])
            ax.set_xscale("log", base=2)
            if y == "seconds":
                ax.set_yscale("log")
            ax.set_xlabel("devices")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{panel} scaling")
            ax.legend(fontsize=8)
        plots.save_figure(fig, workdir / name)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for stage in ("kmeans", "scoring", "selection"):
        pts = sorted(
            (r["pool_rows"], r["seconds"])
            for r in rows
            if r["study"] == "weak" and r["stage"] == stage
        )
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=STAGE_LABELS[stage])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pool rows N (weak scaling: N grows with the devices)")
    ax.set_ylabel("seconds (median)")
    ax.legend(fontsize=8)
    plots.save_figure(fig, workdir / "time_vs_pool.png")


def run(config, workdir: str) -> dict[str, Any]:
    """Runs the strong and weak studies and the communication table; writes the files."""
    lead = jax.process_index() == 0
    counts, skipped = _device_counts(config)
    phi = _phi(config) if "features" in config.stages else None
    device = jax.devices()[0]
    fake = device.platform == "cpu" and jax.local_device_count() > 1
    points = [(study, d) for study in ("strong", "weak") for d in counts]
    rows = []
    for study, d in tqdm(points, desc="scaling study", disable=not lead):
        sizes = _sizes(config, study, d)
        times = scaling.measure_round(
            sharding.make_mesh(d),
            sizes,
            seed=config.seed,
            stages=tuple(config.stages),
            repeats=config.repeats,
            warmup=config.warmup,
            phi=phi,
            phi_batch_size=config.phi.batch_size,
        )
        for stage, seconds in times.items():
            rows.append(
                {
                    "study": study,
                    "devices": d,
                    "processes": jax.process_count(),
                    "stage": stage,
                    "seconds": seconds,
                    **{k: getattr(sizes, k) for k in sizes.__dataclass_fields__},
                    "platform": device.platform,
                    "device_kind": device.device_kind,
                    "fake_devices": fake,
                }
            )
    _efficiency(rows)
    comm = _communication(config, sharding.make_mesh(max(counts)))
    summary = {
        "variant": config.variant,
        "processes": jax.process_count(),
        "devices": counts,
        "kmeans_bytes_per_iteration": sorted({c["bytes"] for c in comm if "kmeans" in c["stage"]}),
        "kmeans_formula_bytes": comm[0]["formula_bytes"],
    }
    if lead:
        wd = artefacts.open_workdir(config, workdir)
        common.atomic_write(wd / "communication.jsonl", "".join(json.dumps(c) + "\n" for c in comm))
        artefacts.write_results(wd, rows, _report(config, rows, comm, skipped, fake))
        _plots(config, rows, wd)
    return summary


def _main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required.")
    if _NUM_PROCESSES.value > 1 and distributed.ENV_COORDINATOR not in os.environ:
        results = distributed.launch_local(
            [sys.executable, "-m", "experiments.scaling_study", *sys.argv[1:]],
            num_processes=_NUM_PROCESSES.value,
            devices_per_process=_DEVICES.value,
            timeout_s=_TIMEOUT.value,
        )
        print(results[0].output.rstrip().splitlines()[-1], flush=True)
        return
    distributed.initialize_from_env()
    logging.set_verbosity(logging.WARNING)
    summary = run(_CONFIG.value, _WORKDIR.value)
    if jax.process_index() == 0:
        print(json.dumps(summary, allow_nan=False, default=common.json_default), flush=True)


if __name__ == "__main__":
    app.run(_main)
