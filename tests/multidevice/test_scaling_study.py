"""The scaling study's smoke config end to end on 8 fake devices (one process)."""

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from experiments import scaling_study
from experiments.configs import scaling_study as study_config

pytestmark = pytest.mark.timeout(600)


def test_scaling_study_smoke_on_eight_devices(tmp_path):
    config = study_config.get_config("smoke")
    summary = scaling_study.run(config, str(tmp_path))
    assert summary["devices"] == [1, 2, 8] and summary["processes"] == 1
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    points = {(r["study"], r["devices"], r["stage"]) for r in rows}
    assert points == {
        (s, d, stage) for s in ("strong", "weak") for d in (1, 2, 8) for stage in config.stages
    }
    assert all(r["seconds"] > 0 and r["fake_devices"] for r in rows if r["devices"] > 1)
    weak = {r["devices"]: r["pool_rows"] for r in rows if r["study"] == "weak"}
    assert weak == {d: config.weak.pool_rows_per_device * d for d in (1, 2, 8)}
    comm = [
        json.loads(line) for line in (tmp_path / "communication.jsonl").read_text().splitlines()
    ]
    kmeans_rows = [c for c in comm if c["stage"].startswith("kmeans")]
    assert len(kmeans_rows) == 2 and kmeans_rows[0]["rows"] != kmeans_rows[1]["rows"]
    assert {c["bytes"] for c in kmeans_rows} == {kmeans_rows[0]["formula_bytes"]}
    report = (tmp_path / "results.md").read_text()
    assert "not speedups" in report and "Communication" in report
    for name in ("time_vs_devices.png", "efficiency_vs_devices.png", "time_vs_pool.png"):
        assert (tmp_path / name).stat().st_size > 0

    # notebooks/scaling.ipynb reads this output.
    notebooks = Path(__file__).resolve().parents[2] / "notebooks"
    nb = nbformat.read(notebooks / "scaling.ipynb", as_version=4)
    os.environ["ECOS_RESULTS_DIR"] = str(tmp_path)
    try:
        client = NotebookClient(nb, timeout=300, kernel_name="python3")
        client.execute(cwd=str(notebooks))
    finally:
        del os.environ["ECOS_RESULTS_DIR"]
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "independent of N: True" in text
    assert (tmp_path / "notebook_scaling.png").stat().st_size > 0
