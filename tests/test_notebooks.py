"""Every notebook executes on the smoke output of its experiment."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


def _execute_notebook(name: str, results_dir: Path) -> str:
    """Executes notebooks/`name` on `results_dir`; returns the text of its printed outputs."""
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    os.environ["ECOS_RESULTS_DIR"] = str(results_dir)
    try:
        NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(REPO / "notebooks")}},
        ).execute()
    finally:
        del os.environ["ECOS_RESULTS_DIR"]
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


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
    outputs = _execute_notebook("sampling_quality.ipynb", workdir)
    assert (workdir / "per_seed.png").stat().st_size > 0
    assert "ecos" in outputs and "random" in outputs


def test_results_notebook_runs_on_smoke_output(selective_labeling_smoke, tmp_path):
    workdir, _ = selective_labeling_smoke
    # the committed results/<task>/<variant>/ layout: no examples/ and no runs/
    committed = tmp_path / "committed"
    shutil.copytree(workdir, committed, ignore=shutil.ignore_patterns("examples", "runs"))

    outputs = _execute_notebook("results.ipynb", workdir)
    for name in ("accuracy_vs_budget", "gain_per_domain", "clusters_mnist_blend"):
        assert (workdir / f"notebook_{name}.png").stat().st_size > 0
    assert "ECOS" in outputs or "ecos" in outputs

    outputs = _execute_notebook("results.ipynb", committed)
    assert (committed / "notebook_accuracy_vs_budget.png").stat().st_size > 0
    assert not list(committed.glob("notebook_clusters_*.png"))
    assert "no examples/" in outputs and "no runs/" in outputs


@pytest.mark.parametrize("name", ["results.ipynb", "sampling_quality.ipynb", "scaling.ipynb"])
def test_committed_notebook_carries_outputs_of_the_committed_results(name):
    """Committed with its outputs (run on results/), without machine paths or timings."""
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code[:2]), "execute the notebook before committing"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    text = nbformat.writes(nb)
    for machine_specific in ("/tmp/", "/work/", "/home/", '"execution": {'):
        assert machine_specific not in text, machine_specific
