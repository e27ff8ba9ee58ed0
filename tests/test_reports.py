"""The downstream reports' run selection and seed statistics, and the task table."""

import math

import pytest

from experiments import downstream, reports, training_sets

ROWS = [
    {
        "method": "ecos",
        "budget": 60,
        "epsilon_target": 0.58,
        "seed": 1,
        "client_domain": "a",
        "accuracy": 0.8,
    },
    {
        "method": "ecos",
        "budget": 60,
        "epsilon_target": 0.58,
        "seed": 1,
        "client_domain": "b",
        "accuracy": 0.6,
    },
    {
        "method": "ecos",
        "budget": 60,
        "epsilon_target": 0.58,
        "seed": 2,
        "client_domain": "a",
        "accuracy": 0.9,
    },
    {
        "method": "ecos",
        "budget": 60,
        "epsilon_target": 0.22,
        "seed": 1,
        "client_domain": "a",
        "accuracy": 0.1,
    },
    {
        "method": "ecos",
        "budget": 120,
        "epsilon_target": 0.58,
        "seed": 1,
        "client_domain": "a",
        "accuracy": 0.2,
    },
    {
        "method": "local",
        "budget": 0,
        "epsilon_target": None,
        "seed": 1,
        "client_domain": "a",
        "accuracy": 0.95,
    },
]


def test_pick_filters_budget_epsilon_and_domain():
    assert len(reports.pick(ROWS, "ecos")) == 5
    assert len(reports.pick(ROWS, "ecos", 60)) == 4
    assert len(reports.pick(ROWS, "ecos", 60, 0.58)) == 3
    assert len(reports.pick(ROWS, "ecos", 60, 0.58, domain="a")) == 2
    # the references have no budget and no ε: both are ignored
    assert reports.pick(ROWS, "local", 60, 0.58) == [ROWS[-1]]
    assert reports.pick(ROWS, "random") == []


def test_seed_stats_averages_domains_then_seeds():
    mean, std = reports.seed_stats(reports.pick(ROWS, "ecos", 60, 0.58))
    # seed 1: (0.8 + 0.6) / 2 = 0.7; seed 2: 0.9
    assert mean == pytest.approx(0.8) and std == pytest.approx(0.1)
    assert all(math.isnan(v) for v in reports.seed_stats([]))


def test_every_task_has_a_training_set_and_a_title():
    assert set(downstream.TASKS) == set(training_sets.TASKS) == set(reports.TASK_TITLES)
    assert training_sets.TASKS["model_compression"].prepare is training_sets.train_teacher
    assert set(reports.REFERENCE_METHODS) <= set(reports.METHOD_NAMES)
    run = training_sets.Run(seed=1, epsilon=0.58, budget=60, method="ecos")
    assert run.name == "ecos_b60_eps0.58_s1"
