"""Every notebook executes on the smoke output of its experiment."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


def test_sampling_quality_notebook_runs_on_smoke_output(tmp_path):
    workdir = tmp_path / "sq"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.sampling_quality",
            f"--workdir={workdir}",
            f"--config={REPO / 'experiments/configs/sampling_quality.py'}:synthetic_smoke",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    nb = nbformat.read(REPO / "notebooks" / "sampling_quality.ipynb", as_version=4)
    os.environ["ECOS_RESULTS_DIR"] = str(workdir)
    try:
        NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(REPO / "notebooks")}},
        ).execute()
    finally:
        del os.environ["ECOS_RESULTS_DIR"]
    assert (workdir / "per_seed.png").stat().st_size > 0
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "ecos" in outputs and "random" in outputs
