"""Two JAX processes (gloo, localhost) run one ECOS round equal to the single-process one,
and the scaling study's smoke config runs as two processes end to end."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax import coverage, distributed, kmeans, sampling, scaling

sys.path.insert(0, str(Path(__file__).parent))
import round_worker as rw

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("devices_per_process", [1, 3])
def test_two_process_round_equals_single_process(tmp_path, devices_per_process):
    out = tmp_path / "round.npz"
    distributed.launch_local(
        [sys.executable, str(Path(rw.__file__)), str(out)],
        num_processes=2,
        devices_per_process=devices_per_process,
        timeout_s=300,
    )
    got = np.load(out)
    assert int(got["processes"]) == 2 and int(got["devices"]) == 2 * devices_per_process

    pool = jnp.asarray(scaling.blob_rows(0, 0, rw.POOL_ROWS, dim=rw.DIM, num_blobs=16))
    client = scaling.blob_rows(1, 0, rw.CLIENT_ROWS, dim=rw.DIM, num_blobs=16)
    ref = kmeans.kmeans(jax.random.key(1), pool, k=rw.K, num_iters=rw.ITERS)
    np.testing.assert_array_equal(got["assignments"], np.asarray(ref.assignments))
    np.testing.assert_allclose(got["centroids"], np.asarray(ref.centroids), rtol=1e-5, atol=1e-5)
    assert int(got["num_iters"]) == int(ref.num_iters)
    counts = coverage.coverage_scores(client, ref.centroids).counts
    np.testing.assert_array_equal(got["counts"], np.asarray(counts))
    picks = sampling.ecos_select(
        pool, ref.assignments, ref.centroids, np.asarray(counts, np.float64), budget=rw.BUDGET
    )
    np.testing.assert_array_equal(got["picks"], picks)


def test_scaling_study_smoke_as_two_processes(tmp_path):
    workdir = tmp_path / "study"
    proc = subprocess.run(
        [
            sys.executable, "-m", "experiments.scaling_study", "--num_processes=2",
            "--devices_per_process=4", f"--workdir={workdir}",
            f"--config={ROOT}/experiments/configs/scaling_study.py:smoke",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=560,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["processes"] == 2
    assert summary["devices"] == [2, 8]  # 1 device cannot be split over 2 processes
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {r["processes"] for r in rows} == {2}
    assert {(r["study"], r["devices"]) for r in rows} == {
        (s, d) for s in ("strong", "weak") for d in (2, 8)
    }
    for name in ("results.md", "communication.jsonl", "time_vs_devices.png"):
        assert (workdir / name).stat().st_size > 0
