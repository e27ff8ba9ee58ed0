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
    everything = [json.loads(line) for line in text.splitlines()]
    rows = [r for r in everything if r["mechanism"] == "full_set"]
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
    # Private-kNN as published: every method × setting × total ε × space, on target.
    pub = [r for r in everything if r["mechanism"] == "subsampled"]
    p = config.published
    assert len(pub) == len(config.methods) * len(p.settings) * len(p.total_epsilons) * len(p.spaces)
    for r in pub:
        assert r["epsilon_rdp"] <= r["total_epsilon_target"] + 1e-9
        assert r["epsilon_pld"] <= r["epsilon_rdp"]
        budget = int(r["setting"].split(":")[2])
        assert r["labeled_fraction"] <= budget / config.budget
        screened = not r["setting"].endswith(":none")
        assert (r["epsilon_screen_rdp"] is not None) == screened
        assert (r["epsilon_ecos_rdp"] is not None) == (r["method"] == "ecos")
    assert "# Private-kNN as published" in report


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
        ("published.settings", ("0.5:5:20",), "rate:k:max_answers:screen_ratio"),
        ("published.settings", ("0:5:20:none",), "rate:k:max_answers:screen_ratio"),
        ("published.spaces", ("hog_pca:16",), "config.published.spaces"),
        ("published.total_epsilons", (0.0,), "config.published.total_epsilons"),
    ],
)
def test_config_errors_name_the_field(field, value, match):
    config = klq_config.get_config("smoke")
    block, _, name = field.rpartition(".")
    setattr(config[block] if block else config, name, value)
    with pytest.raises(ValueError, match=match):
        knn_label_quality.check_config(config)


def test_both_variants_pass_the_checks():
    for variant in klq_config.VARIANTS:
        knn_label_quality.check_config(klq_config.get_config(variant))
    with pytest.raises(ValueError, match="unknown config variant"):
        klq_config.get_config("nope")
