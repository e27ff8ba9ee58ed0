"""End-to-end smoke test of experiments.sampling_quality, and the synthetic feature pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecos_jax import synthetic

REPO = Path(__file__).resolve().parents[1]


def test_smoke_run_writes_all_artefacts(tmp_path):
    workdir = tmp_path / "sq"
    config = REPO / "experiments" / "configs" / "sampling_quality.py"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.sampling_quality",
            f"--workdir={workdir}",
            f"--config={config}:synthetic_smoke",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.json", "metrics.jsonl", "results.md", "id_fraction.png", "proximity.png"):
        assert (workdir / name).stat().st_size > 0, name
    assert not list(workdir.glob(".*.tmp")), "temporary files left behind"

    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"methods", "epsilon_rdp", "epsilon_pld", "bytes_down", "bytes_up"}
    assert set(summary["methods"]) == {"ecos", "random", "k_center", "oracle"}
    for figures in summary["methods"].values():
        assert set(figures) >= {"id_fraction", "proximity"}
    assert summary["epsilon_rdp"] == pytest.approx(0.58, abs=2e-3)
    assert summary["epsilon_pld"] < summary["epsilon_rdp"]
    # Smoke config: R=10 centroids of d=16 features.
    assert summary["bytes_down"] == 4 * 10 * 16 and summary["bytes_up"] == 8 * 10
    assert summary["randomness"].startswith("simulation")
    # The point of the method: ECOS finds the client's domain, Random does not.
    assert summary["methods"]["ecos"]["id_fraction"] > summary["methods"]["random"]["id_fraction"]

    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 * 2  # methods × budgets × seeds
    for r in rows:
        assert r["num_selected"] == r["budget"] == r["num_unique"]
    config_json = json.loads((workdir / "config.json").read_text())
    assert config_json["variant"] == "synthetic_smoke"
    assert "SYNTHETIC" in (workdir / "results.md").read_text()
    assert "SYNTHETIC" in proc.stdout


def test_smoke_run_on_the_digits_benchmark(tmp_path, monkeypatch):
    """The default path: offline Digits images (a small build) through EfficientNet-Lite0."""
    from experiments import sampling_quality
    from experiments.configs import sampling_quality as cfg

    config = cfg.get_config("smoke")
    config.data.images.data_dir = str(tmp_path / "tfds")
    config.data.images.include_unrelated = False
    config.seeds = (1,)
    summary = sampling_quality.run(config, tmp_path / "sq")
    assert summary["data"] == "digits"
    assert summary["bytes_down"] == 4 * 10 * 1280 and summary["bytes_up"] == 8 * 10
    for figures in summary["methods"].values():
        assert 0.0 <= figures["id_fraction"] <= 1.0 and figures["proximity"] > 0
    text = (tmp_path / "sq" / "results.md").read_text()
    assert "efficientnet_lite0-64px" in text and "SYNTHETIC" not in text


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from experiments import common

    target = tmp_path / "out.png"

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        common.atomic_write(target, boom, binary=True)
    assert list(tmp_path.iterdir()) == []
    common.atomic_write(target, "done")
    assert target.read_text() == "done"
    assert list(tmp_path.iterdir()) == [target]


def test_smoke_config_is_small_and_default_is_the_paper_setting():
    from experiments.configs import sampling_quality as cfg

    default, smoke = cfg.get_config(), cfg.get_config("smoke")
    assert default.ecos.num_clusters == 50 and default.ecos.kappa == 1.5
    assert default.ecos.target_epsilon == 0.58 and default.ecos.delta == 1e-5
    assert tuple(default.budgets) == (1000, 3000) and tuple(default.seeds) == (1, 2, 3)
    assert smoke.data.synthetic.per_domain <= default.data.synthetic.per_domain
    assert smoke.data.images.caps < default.data.images.caps
    assert default.data.source == "digits" and smoke.data.source == "digits"
    assert cfg.get_config("synthetic").data.source == "synthetic"
    with pytest.raises(ValueError, match="variant"):
        cfg.get_config("huge")


@pytest.mark.parametrize("regime", ["id+ood", "ood"])
def test_synthetic_benchmark_split(regime):
    b = synthetic.make_feature_benchmark(
        3, num_domains=3, num_classes=4, dim=5, per_domain=40, client_domain=1, regime=regime
    )
    assert b.client_features.shape == (20, 5) and b.client_features.dtype == np.float32
    expected_pool = 40 * 2 + (20 if regime == "id+ood" else 0)
    assert b.pool_features.shape == (expected_pool, 5)
    assert b.pool_domains.shape == b.pool_labels.shape == (expected_pool,)
    assert np.sum(b.pool_domains == 1) == (20 if regime == "id+ood" else 0)
    assert set(np.unique(b.pool_labels)) == set(range(4))
    assert b.client_domain == 1
    # No client sample is also in the pool.
    pool_rows = {row.tobytes() for row in b.pool_features}
    assert not any(row.tobytes() in pool_rows for row in b.client_features)
    same = synthetic.make_feature_benchmark(
        3, num_domains=3, num_classes=4, dim=5, per_domain=40, client_domain=1, regime=regime
    )
    np.testing.assert_array_equal(b.pool_features, same.pool_features)


def test_synthetic_domains_are_shifted():
    b = synthetic.make_feature_benchmark(0, num_domains=3, num_classes=2, dim=16, per_domain=400)
    means = np.stack([b.pool_features[b.pool_domains == k].mean(0) for k in range(3)])
    client_mean = b.client_features.mean(0)
    # The client is closest to the held-out half of its own domain.
    assert np.argmin(np.linalg.norm(means - client_mean, axis=1)) == b.client_domain


def test_synthetic_errors():
    with pytest.raises(ValueError, match="num_domains"):
        synthetic.make_feature_benchmark(0, num_domains=1)
    with pytest.raises(ValueError, match="regime"):
        synthetic.make_feature_benchmark(0, regime="mixed")
    with pytest.raises(ValueError, match="client_domain"):
        synthetic.make_feature_benchmark(0, num_domains=2, client_domain=2)
