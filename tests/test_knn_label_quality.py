"""The Private-kNN label-quality study end to end on its smoke config, and its config checks."""

from __future__ import annotations

import json

import pytest

from experiments import knn_label_quality
from experiments.configs import knn_label_quality as klq_config


def test_smoke_run_writes_every_artefact_and_is_deterministic(tmp_path):
    config = klq_config.get_config("smoke")
    summary = knn_label_quality.run(config, tmp_path / "a")
    knn_label_quality.run(config, tmp_path / "b")
    text = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert text == (tmp_path / "b" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    # every domain × seed × method × space × k × ε
    assert len(rows) == 1 * 1 * len(config.methods) * len(config.spaces) * len(config.ks) * 2
    for r in rows:
        assert 0.0 <= r["label_accuracy"] <= 1.0
        assert (r["vote_sigma"] == 0.0) == (r["label_epsilon"] is None)
    noisy = [r for r in rows if r["label_epsilon"] is not None]
    assert all(r["vote_sigma"] > 1.0 for r in noisy)
    report = (tmp_path / "a" / "results.md").read_text()
    assert "| ECOS | `efficientnet_lite0:32:l2`" in report and "ε = ∞" in report
    assert (tmp_path / "a" / "config.json").stat().st_size > 0
    assert set(summary["methods"]) == set(config.methods)
    assert summary["k"] == config.report_k


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("spaces", ("efficientnet_lite0:64",), "extractor:resolution:metric"),
        ("spaces", ("efficientnet_lite0:64:manhattan",), "extractor:resolution:metric"),
        ("spaces", ("small_cnn:32:l2",), "small_cnn"),
        ("methods", ("ecos", "best"), "config.methods"),
        ("ks", (0, 5), "config.ks"),
        ("label_epsilons", (0.0,), "config.label_epsilons"),
        ("report_k", 7, "config.report_k"),
    ],
)
def test_config_errors_name_the_field(field, value, match):
    config = klq_config.get_config("smoke")
    setattr(config, field, value)
    with pytest.raises(ValueError, match=match):
        knn_label_quality.check_config(config)


def test_both_variants_pass_the_checks():
    for variant in klq_config.VARIANTS:
        knn_label_quality.check_config(klq_config.get_config(variant))
    with pytest.raises(ValueError, match="unknown config variant"):
        klq_config.get_config("nope")
