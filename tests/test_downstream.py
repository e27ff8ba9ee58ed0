"""The three downstream experiments end to end on their smoke configs, determinism,
resume, the composed privacy of task (c), and config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecos_jax import noise, privacy, subsampling, tasks
from experiments import common, downstream
from experiments.configs import client_labeling as cl_config
from experiments.configs import model_compression as mc_config
from experiments.configs import selective_labeling as sl_config

ARTEFACTS = (
    "config.json",
    "metrics.jsonl",
    "results.md",
    "accuracy.png",
    "accuracy_vs_budget.png",
    "accuracy_vs_epsilon.png",
    "examples/mnist_blend.npz",
)


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _check_artefacts(workdir: Path, config) -> list[dict]:
    for name in ARTEFACTS:
        assert (workdir / name).stat().st_size > 0, name
    rows = _rows(workdir)
    methods = {r["method"] for r in rows}
    assert methods == set(config.methods)
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0
        run = workdir / "runs" / r["client_domain"]
        name = f"{r['method']}_b{r['budget']}_eps{(r['epsilon_target'] or 0.58):g}_s{r['seed']}"
        assert list((run / name / "tensorboard").glob("events.out.tfevents.*")), name
    text = (workdir / "results.md").read_text()
    assert "| ECOS |" in text and "| Random |" in text and "client MACs" in text
    return rows


def test_selective_labeling_smoke_cli(selective_labeling_smoke):
    workdir, stdout = selective_labeling_smoke
    summary = json.loads(stdout.strip().splitlines()[-1])
    config = sl_config.get_config("smoke")
    rows = _check_artefacts(workdir, config)
    assert set(summary["methods"]) == set(config.methods)
    for m in summary["methods"].values():
        assert set(m) == {"accuracy_mean", "accuracy_std"}
    assert summary["epsilon_rdp"] == pytest.approx(0.58, abs=1e-3)
    assert summary["epsilon_pld"] < summary["epsilon_rdp"]
    assert summary["randomness"].startswith("simulation")
    for r in rows:  # only the ECOS runs released anything from the client in task (a)
        assert r["randomness"] == ("simulation" if r["method"] == "ecos" else None)
    # the human labelers reject junk: never more labeled examples than the budget
    for r in rows:
        if r["method"] not in downstream.REFERENCE_METHODS:
            assert r["num_train"] <= r["budget"]


def test_model_compression_smoke(tmp_path):
    config = mc_config.get_config("smoke")
    summary = downstream.run(config, tmp_path / "mc")
    rows = _check_artefacts(tmp_path / "mc", config)
    assert (tmp_path / "mc" / "runs" / "mnist_blend" / "teacher" / "checkpoints").is_dir()
    # distillation needs no labels: S keeps every selected image
    for r in rows:
        if r["method"] not in downstream.REFERENCE_METHODS:
            assert r["num_train"] == r["budget"]
    assert "Teacher test accuracy" in (tmp_path / "mc" / "results.md").read_text()
    assert summary["task"] == "model_compression"


def test_client_labeling_smoke_composes_privacy(tmp_path):
    """Task (c) with Private-kNN as published: every run's ε is recomputed from what it
    released (its answer scale, rate and budget, and ECOS's release) and meets the total."""
    config = cl_config.get_config("smoke")
    summary = downstream.run(config, tmp_path / "cl")
    rows = _check_artefacts(tmp_path / "cl", config)
    delta, kcfg = config.ecos.delta, config.knn
    for r in rows:
        if r["method"] in ("local",):
            continue
        budget = min(kcfg.max_answers, r["budget"])
        assert r["num_labeled"] <= budget and r["answered_fraction"] == budget / r["budget"]
        assert r["num_train"] == r["num_labeled"]
        if r["method"] == "oracle":
            assert r["epsilon_rdp"] is None
            continue
        assert r["randomness"] == "simulation"
        assert r["knn_screen_scale"] is None  # no screening by default
        releases = list(
            tasks.answer_releases(
                screen_scale=None,
                answer_scale=r["knn_answer_scale"],
                sampling_rate=subsampling.poisson_rate(kcfg.sampling_rate),
                num_queries=r["budget"],
                max_answers=budget,
            )
        )
        if r["method"] == "ecos":
            sigma = common.score_sigma(config, r["epsilon_target"])
            releases.append(privacy.DiscreteGaussianRelease(noise_multiplier=sigma))
        expected = privacy.epsilons(releases, delta=delta)
        assert r["epsilon_rdp"] == pytest.approx(expected["rdp"], rel=1e-9)
        assert r["epsilon_pld"] == pytest.approx(expected["pld"], rel=1e-9)
        # calibrated to the run's total, ECOS's release included
        assert kcfg.total_epsilon * 0.99 <= r["epsilon_rdp"] <= kcfg.total_epsilon
        assert r["label_accuracy"] is None or 0.0 <= r["label_accuracy"] <= 1.0
    assert summary["epsilon_rdp"] <= kcfg.total_epsilon
    text = (tmp_path / "cl" / "results.md").read_text()
    assert "Private-kNN as published" in text and "fraction of S labeled" in text


def test_client_labeling_refinement_rounds_keep_the_total_and_change_the_space(tmp_path):
    """Two rounds: the second labels its half of S in a student's features. Its releases
    are recomputed from what it released and compose to the same total ε; the labels
    differ from one round's (another space), and the student left its logs."""
    config = cl_config.get_config("smoke")
    config.methods = ("ecos",)
    config.budgets, config.report_budget = (60,), 60
    config.epsilons, config.report_epsilon = (0.58,), 0.58
    one = {r["method"]: r for r in _rows_of(downstream, config, tmp_path / "r1")}["ecos"]
    config.knn.rounds = 2
    two = {r["method"]: r for r in _rows_of(downstream, config, tmp_path / "r2")}["ecos"]
    kcfg, delta = config.knn, config.ecos.delta
    budget = min(kcfg.max_answers, two["budget"])
    assert two["knn_rounds"] == 2 and len(two["label_accuracy_rounds"]) == 2
    assert two["knn_answer_scale"] == one["knn_answer_scale"]
    rate = subsampling.poisson_rate(kcfg.sampling_rate)
    releases = []
    for part in (budget - budget // 2, budget // 2):  # the answer budget split in two
        releases += tasks.answer_releases(
            screen_scale=None,
            answer_scale=two["knn_answer_scale"],
            sampling_rate=rate,
            num_queries=part,
            max_answers=part,
        )
    sigma = common.score_sigma(config, two["epsilon_target"])
    releases.append(privacy.DiscreteGaussianRelease(noise_multiplier=sigma))
    expected = privacy.epsilons(releases, delta=delta)
    assert two["epsilon_rdp"] == pytest.approx(expected["rdp"], rel=1e-9)
    assert two["epsilon_rdp"] == pytest.approx(one["epsilon_rdp"], rel=1e-9)
    assert two["epsilon_rdp"] <= kcfg.total_epsilon
    # the student's features: 512·width wide (the query features sent down), and its
    # parameters sent down too
    width = int(512 * config.train.width)
    sent = two["bytes_down"] - one["bytes_down"]
    assert sent > (two["budget"] // 2) * (width - kcfg.dim) * 4
    run_dir = tmp_path / "r2" / "runs" / "mnist_blend" / "ecos_b60_eps0.58_s1"
    assert list((run_dir / "knn_round1" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_client_labeling_full_set_mechanism_still_composes(tmp_path):
    config = cl_config.get_config("smoke")
    config.methods = ("ecos", "random")
    config.budgets, config.report_budget = (60,), 60
    config.knn.mechanism = "full_set"
    rows = [r for r in _rows_of(downstream, config, tmp_path / "fs")]
    delta = config.ecos.delta
    for r in rows:
        knn = privacy.DiscreteGaussianRelease(
            noise_multiplier=r["knn_sigma"] / tasks.PRIVATE_KNN_SENSITIVITY,
            count=r["budget"],
            coordinates=2,
            name="private_knn_votes",
        )
        releases = [knn]
        if r["method"] == "ecos":
            sigma = privacy.calibrate_sigma(r["epsilon_target"], delta=delta, count=1)
            releases.append(privacy.DiscreteGaussianRelease(noise_multiplier=sigma))
        expected = privacy.epsilons(releases, delta=delta)
        assert r["epsilon_rdp"] == pytest.approx(expected["rdp"], rel=1e-6)
        assert r["epsilon_rdp"] > config.knn.target_epsilon or r["method"] != "ecos"


def _rows_of(module, config, workdir):
    module.run(config, workdir)
    return _rows(workdir)


def _small_config():
    config = sl_config.get_config("smoke")
    config.methods = ("ecos", "random", "local")
    config.budgets = (60,)
    config.epsilons = (0.58,)
    return config


def test_same_config_and_seed_give_identical_metrics_and_rerun_resumes(tmp_path):
    config = _small_config()
    downstream.run(config, tmp_path / "a")
    downstream.run(config, tmp_path / "b")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(_rows(tmp_path / "a")) == strip(_rows(tmp_path / "b"))
    idx_a = np.load(tmp_path / "a" / "examples" / "mnist_blend.npz")["all_scores"]
    idx_b = np.load(tmp_path / "b" / "examples" / "mnist_blend.npz")["all_scores"]
    np.testing.assert_array_equal(idx_a, idx_b)

    # A rerun in the same work directory reuses every finished run (no retraining) ...
    results = sorted((tmp_path / "a" / "runs").rglob("result.json"))
    before = [p.stat().st_mtime_ns for p in results]
    downstream.run(config, tmp_path / "a")
    assert [p.stat().st_mtime_ns for p in results] == before
    # ... unless a setting the runs depend on changed: then every run trains anew, from
    # its initialisation, not from the finished checkpoint of the old settings.
    config.train.learning_rate = 0.01
    downstream.run(config, tmp_path / "a")
    after = [p.stat().st_mtime_ns for p in results]
    assert all(a != b for a, b in zip(after, before, strict=True))
    downstream.run(config, tmp_path / "c")
    assert strip(_rows(tmp_path / "a")) == strip(_rows(tmp_path / "c"))
    assert strip(_rows(tmp_path / "a")) != strip(_rows(tmp_path / "b"))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("task", "labeling", "config.task"),
        ("methods", ("ecos", "best"), "unknown"),
        ("report_budget", 7, "config.report_budget"),
        ("report_epsilon", 9.0, "config.report_epsilon"),
        ("train.mode", "mixmatch", "config.train.mode"),
        ("train.model", "vit", "config.train.model"),
        ("client_domains", (), "must not be empty"),
    ],
)
def test_config_errors_name_the_field(field, value, match):
    config = sl_config.get_config("smoke")
    target, _, name = field.rpartition(".")
    setattr(config.train if target else config, name, value)
    with pytest.raises(ValueError, match=match):
        downstream.check_config(config)


def test_task_specific_config_errors():
    config = cl_config.get_config("smoke")
    config.methods = ("ecos", "full_pool")
    with pytest.raises(ValueError, match="'full_pool' does not apply"):
        downstream.check_config(config)
    config = mc_config.get_config("smoke")
    config.train.mode = "fixmatch"
    with pytest.raises(ValueError, match="selective_labeling and client_labeling"):
        downstream.check_config(config)
    for field, value in (
        ("total_epsilon", 0.0),
        ("k", 0),
        ("sampling_rate", 0.0),
        ("mechanism", "everyone"),
        ("screen_ratio", -1.0),
        ("query_order", "by_score"),
    ):
        config = cl_config.get_config("smoke")
        setattr(config.knn, field, value)
        with pytest.raises(ValueError, match=f"config.knn.{field}"):
            downstream.check_config(config)
    config = cl_config.get_config("smoke")
    config.knn.space = "hog:28"
    with pytest.raises(ValueError, match=r"config\.knn\.space"):
        downstream.check_config(config)
    config = cl_config.get_config("smoke")
    config.train.mode = "supervised"
    with pytest.raises(ValueError, match="fixmatch"):
        downstream.check_config(config)


def test_client_labeling_with_infinite_epsilon_uses_noise_free_votes(tmp_path):
    """knn.total_epsilon = inf: the non-private reference (noise-free votes, ε = ∞)."""
    config = cl_config.get_config("smoke")
    config.methods = ("ecos", "random")
    config.knn.total_epsilon = float("inf")
    downstream.run(config, tmp_path / "cl")
    rows = _rows(tmp_path / "cl")
    assert {r["method"] for r in rows} == {"ecos", "random"}
    for r in rows:
        assert "knn_answer_scale" not in r
        assert r["num_labeled"] == min(config.knn.max_answers, r["budget"])
        assert r["epsilon_rdp"] is None and r["epsilon_pld"] is None
    assert "no noise (not private: ε = ∞)" in (tmp_path / "cl" / "results.md").read_text()


@pytest.mark.parametrize("module", [sl_config, mc_config, cl_config])
def test_every_variant_builds_and_passes_the_checks(module):
    for variant in module.VARIANTS:
        config = module.get_config(variant)
        downstream.check_config(config)
    with pytest.raises(ValueError, match="unknown config variant"):
        module.get_config("nope")


def test_a_trained_smoke_model_beats_chance(tmp_path):
    """The smoke settings with enough steps to learn: Local on the smoke mnist client."""
    config = sl_config.get_config("smoke")
    config.client_domains = ("mnist",)
    config.methods = ("ecos", "local")
    config.budgets = (60,)
    config.epsilons = (0.58,)
    config.train.num_steps = 80
    config.train.width = 0.25
    downstream.run(config, tmp_path / "learn")
    # measured 0.77 (Local) and 0.58 (ECOS, 60 images); chance is 0.1 (10 classes)
    for row in _rows(tmp_path / "learn"):
        assert row["accuracy"] > 0.3, row["method"]


def test_client_noise_differs_across_seeds_and_releases():
    config = sl_config.get_config("smoke")
    draw = lambda seed, name: noise.add_discrete_gaussian(
        np.zeros(64, np.int64),
        scale=5.0,
        randomness=common.client_randomness(config, seed, name),
    )
    assert not np.array_equal(draw(1, "ecos_scores"), draw(2, "ecos_scores"))
    assert not np.array_equal(draw(1, "ecos_scores/eps=0.58"), draw(1, "ecos_scores/eps=1"))
    np.testing.assert_array_equal(draw(3, "x"), draw(3, "x"))
    config.ecos.randomness = "secure"
    assert common.client_randomness(config, 1, "x").name == "secure"


def _fake_round(assignments, scores):
    """The two things `coverage_weights` reads of an EcosRound: the clustering, the scores."""
    from types import SimpleNamespace

    clustering = SimpleNamespace(assignments=np.asarray(assignments, np.int32))
    return SimpleNamespace(
        cloud=SimpleNamespace(clustering=clustering),
        scores=SimpleNamespace(scores=np.asarray(scores, np.int64)),
    )


def test_coverage_weights_are_score_over_cluster_size_with_negative_scores_zero():
    # clusters of pool size 4, 2, 2; noisy scores 8, -3, 1
    ecos = _fake_round([0, 0, 1, 0, 2, 1, 0, 2], [8, -3, 1])
    np.testing.assert_array_equal(common.coverage_weights(ecos, [6, 2, 4, 0]), [2.0, 0.0, 0.5, 2.0])


def test_coverage_order_draws_in_proportion_to_the_weights_and_puts_weight_zero_last():
    idx = np.arange(100, 106)
    weights = np.array([0.0, 1.0, 2.0, 0.0, 3.0, 4.0])
    first = []
    for seed in range(600):
        order = common.knn_query_order(idx, seed, "coverage", weights)
        assert sorted(order) == list(idx)  # a permutation of S
        assert set(order[-2:]) == {100, 103}  # the weight-0 rows come last
        first.append(order[0])
    np.testing.assert_array_equal(order, common.knn_query_order(idx, 599, "coverage", weights))
    # Gumbel top-1 is a draw with P(row) = w / Σw: 0.1, 0.2, 0.3, 0.4 (binomial, 600 draws)
    counts = np.array([np.sum(np.asarray(first) == i) for i in (101, 102, 104, 105)])
    expected = 600 * weights[[1, 2, 4, 5]] / weights.sum()
    assert np.all(np.abs(counts - expected) < 4.5 * np.sqrt(expected)), counts
    with pytest.raises(ValueError, match="needs weights"):
        common.knn_query_order(idx, 1, "coverage")
    with pytest.raises(ValueError, match="weights must be finite"):
        common.knn_query_order(idx, 1, "coverage", -weights)


def test_method_query_order_weighs_ecos_only():
    idx = np.array([6, 2, 4, 0, 1, 3])
    ecos = _fake_round([0, 0, 1, 0, 2, 1, 0, 2], [8, -3, 1])
    shuffled = common.knn_query_order(np.arange(6), 3, "shuffled")
    np.testing.assert_array_equal(common.method_query_order(idx, 3, "coverage"), shuffled)
    np.testing.assert_array_equal(common.method_query_order(idx, 3, "shuffled", ecos), shuffled)
    weights = common.coverage_weights(ecos, idx)
    np.testing.assert_array_equal(
        common.method_query_order(idx, 3, "coverage", ecos),
        common.knn_query_order(np.arange(6), 3, "coverage", weights),
    )
    # position 1 (pool row 2) is in the cluster of score -3: weight 0, asked last
    assert common.method_query_order(idx, 3, "coverage", ecos)[-1] == 1
