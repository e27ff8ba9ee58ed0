"""Shared test settings (strict rank promotion, as in equinox's test suite) and the one
smoke run of the main experiment that several test modules read."""

import subprocess
import sys
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def selective_labeling_smoke(tmp_path_factory) -> tuple[Path, str]:
    """Work directory and stdout of `experiments.selective_labeling` on its smoke config,
    run once per session through the command line, as a user runs it."""
    workdir = tmp_path_factory.mktemp("selective_labeling_smoke") / "sl"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.selective_labeling",
            f"--workdir={workdir}",
            f"--config={REPO / 'experiments/configs/selective_labeling.py'}:smoke",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return workdir, out.stdout
