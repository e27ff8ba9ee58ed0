"""Tests for ecos_jax.metrics against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from references import distances

from ecos_jax import metrics


def test_id_fraction_matches_numpy():
    rng = np.random.default_rng(0)
    domains = rng.integers(0, 4, size=200)
    idx = rng.choice(200, size=37, replace=False)
    for client in range(4):
        expected = np.mean(domains[idx] == client)
        assert metrics.id_fraction(idx, domains, client) == pytest.approx(expected, abs=0)
    assert metrics.id_fraction([0, 2, 3], [1, 0, 1, 1], client_domain=1) == 1.0


@pytest.mark.parametrize(
    "idx, match",
    [
        pytest.param([], "non-empty", id="empty"),
        pytest.param([0, 5], "lie in", id="out_of_range"),
        pytest.param([0.0, 1.0], "int", id="float_indices"),
    ],
)
def test_id_fraction_errors(idx, match):
    with pytest.raises(ValueError, match=match):
        metrics.id_fraction(idx, [0, 1], 0)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_proximity_matches_numpy(metric, chunk_size):
    rng = np.random.default_rng(1)
    sel = rng.normal(size=(23, 5)).astype(np.float32)
    client = (rng.normal(size=(61, 5)) + 0.5).astype(np.float32)
    got = metrics.proximity(sel, client, metric=metric, chunk_size=chunk_size)
    want = distances(client, sel, metric).min(axis=1).mean()
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_proximity_zero_when_client_inside_selection():
    x = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    assert metrics.proximity(x, x[:4]) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize(
    "selected, client, kwargs, match",
    [
        pytest.param((3, 2), (3, 4), {}, "dimension", id="dims"),
        pytest.param((0, 2), (3, 2), {}, "non-empty", id="empty_selection"),
        pytest.param((3, 2), (3, 2), {"metric": "l1"}, "metric", id="metric"),
    ],
)
def test_proximity_errors(selected, client, kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.proximity(np.zeros(selected, np.float32), np.zeros(client, np.float32), **kwargs)
