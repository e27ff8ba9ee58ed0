"""Tests for ecos_jax.metrics against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from ecos_jax import metrics


def test_id_fraction_matches_numpy():
    rng = np.random.default_rng(0)
    domains = rng.integers(0, 4, size=200)
    idx = rng.choice(200, size=37, replace=False)
    for client in range(4):
        expected = np.mean(domains[idx] == client)
        assert metrics.id_fraction(idx, domains, client) == pytest.approx(expected, abs=0)
    assert metrics.id_fraction([0, 2, 3], [1, 0, 1, 1], client_domain=1) == 1.0


def test_id_fraction_errors():
    with pytest.raises(ValueError, match="non-empty"):
        metrics.id_fraction([], [0, 1], 0)
    with pytest.raises(ValueError, match="lie in"):
        metrics.id_fraction([0, 5], [0, 1], 0)
    with pytest.raises(ValueError, match="int"):
        metrics.id_fraction([0.0, 1.0], [0, 1], 0)


def _reference_proximity(sel, client, metric):
    sel = np.asarray(sel, np.float64)
    client = np.asarray(client, np.float64)
    if metric == "l2":
        d = np.linalg.norm(client[:, None, :] - sel[None, :, :], axis=-1)
    else:
        sn = sel / np.linalg.norm(sel, axis=1, keepdims=True)
        cn = client / np.linalg.norm(client, axis=1, keepdims=True)
        d = 1.0 - cn @ sn.T
    return float(d.min(axis=1).mean())


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_proximity_matches_numpy(metric, chunk_size):
    rng = np.random.default_rng(1)
    sel = rng.normal(size=(23, 5)).astype(np.float32)
    client = (rng.normal(size=(61, 5)) + 0.5).astype(np.float32)
    got = metrics.proximity(sel, client, metric=metric, chunk_size=chunk_size)
    assert got == pytest.approx(_reference_proximity(sel, client, metric), rel=1e-5, abs=1e-5)


def test_proximity_zero_when_client_inside_selection():
    x = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    assert metrics.proximity(x, x[:4]) == pytest.approx(0.0, abs=1e-3)


def test_proximity_errors():
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="dimension"):
        metrics.proximity(x, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        metrics.proximity(np.zeros((0, 2), np.float32), x)
    with pytest.raises(ValueError, match="metric"):
        metrics.proximity(x, x, metric="l1")
