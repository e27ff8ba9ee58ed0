"""Tests for ecos_jax.protocol: messages, transcript, roles and a full round."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest

from ecos_jax import coverage, protocol


def _data(seed=0, num_pool=600, num_client=120, dim=8):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, dim)) * 6.0
    pool = centers[rng.integers(0, 6, num_pool)] + rng.normal(size=(num_pool, dim))
    client = centers[rng.integers(0, 2, num_client)] + rng.normal(size=(num_client, dim))
    return pool.astype(np.float32), client.astype(np.float32)


def test_full_round_transcript_holds_exactly_two_messages():
    pool, client = _data()
    num_clusters, dim = 12, pool.shape[1]
    res = protocol.run_protocol(
        jax.random.key(0),
        pool,
        client,
        num_clusters=num_clusters,
        budget=50,
        target_epsilon=0.58,
        kmeans_iters=20,
    )
    entries = res.transcript.entries
    assert [(e.direction, e.message_type) for e in entries] == [
        ("down", "CentroidsMessage"),
        ("up", "ScoresMessage"),
    ]
    assert entries[0].num_bytes == 4 * num_clusters * dim
    assert entries[1].num_bytes == 4 * num_clusters
    assert res.transcript.bytes_down == 4 * num_clusters * dim
    assert res.transcript.bytes_up == 4 * num_clusters
    assert res.transcript.total_bytes == 4 * num_clusters * (dim + 1)
    assert res.indices.shape == (50,) and np.unique(res.indices).size == 50
    assert res.privacy.epsilon_rdp == pytest.approx(0.58, abs=2e-3)
    assert res.privacy.epsilon_rdp <= 0.58 + 1e-9
    assert res.privacy.epsilon_pld < res.privacy.epsilon_rdp
    assert res.privacy.sensitivity == 1.0
    again = protocol.run_protocol(
        jax.random.key(0),
        pool,
        client,
        num_clusters=num_clusters,
        budget=50,
        target_epsilon=0.58,
        kmeans_iters=20,
    )
    np.testing.assert_array_equal(res.indices, again.indices)


def test_full_round_top_m_uses_its_sensitivity():
    pool, client = _data(seed=1)
    res = protocol.run_protocol(
        jax.random.key(1),
        pool,
        client,
        num_clusters=8,
        budget=30,
        sigma=3.0,
        method="top_m",
        coverage_kwargs={"m": 4},
        threshold_multiple=1.0,
        kmeans_iters=10,
    )
    assert res.privacy.sensitivity == pytest.approx(2.0)
    assert res.privacy.noise_std == pytest.approx(6.0)
    assert np.unique(res.indices).size == 30


def test_client_respond_signature_and_output():
    params = inspect.signature(protocol.client_respond).parameters
    names = list(params)
    assert names[:3] == ["key", "message", "client_features"]
    assert all(params[n].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for n in names[:3])
    assert all(
        p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
        for p in list(params.values())[3:]
    )
    pool, client = _data(seed=2)
    cloud = protocol.Cloud(pool)
    msg = cloud.broadcast(jax.random.key(0), num_clusters=5, num_iters=10)
    assert isinstance(msg, protocol.CentroidsMessage)
    out = protocol.client_respond(jax.random.key(1), msg, client, sigma=1e-6)
    assert isinstance(out, protocol.ScoresMessage)
    assert out.scores.dtype == np.float32 and out.scores.shape == (5,)
    counts = np.asarray(coverage.voronoi_scores(client, msg.centroids).counts)
    np.testing.assert_allclose(out.scores, counts, atol=1e-3)
    noisy = protocol.client_respond(jax.random.key(1), msg, client, sigma=5.0)
    np.testing.assert_array_equal(
        noisy.scores, protocol.client_respond(jax.random.key(1), msg, client, sigma=5.0).scores
    )
    assert not np.array_equal(
        noisy.scores, protocol.client_respond(jax.random.key(2), msg, client, sigma=5.0).scores
    )
    with pytest.raises(TypeError, match="CentroidsMessage"):
        protocol.client_respond(jax.random.key(1), msg.centroids, client, sigma=1.0)


def test_client_role_matches_client_respond():
    pool, client_x = _data(seed=3)
    msg = protocol.Cloud(pool).broadcast(jax.random.key(0), num_clusters=6, num_iters=10)
    client = protocol.Client(client_x, sigma=2.0, method="top_m", m=2)
    got = client.respond(jax.random.key(4), msg)
    want = protocol.client_respond(jax.random.key(4), msg, client_x, sigma=2.0, method="top_m", m=2)
    np.testing.assert_array_equal(got.scores, want.scores)
    with pytest.raises(ValueError, match="sigma"):
        protocol.Client(client_x, sigma=0.0)


def test_messages_and_transcript_validate():
    m = protocol.CentroidsMessage(np.ones((3, 4), np.float64))
    assert m.centroids.dtype == np.float32 and m.num_bytes == 48
    s = protocol.ScoresMessage([1.0, 2.0, 3.0])
    assert s.num_bytes == 12
    with pytest.raises(ValueError, match="2-D"):
        protocol.CentroidsMessage(np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        protocol.ScoresMessage([1.0, np.nan])
    t = protocol.Transcript()
    t.record("down", m)
    t.record("up", s)
    assert (t.bytes_down, t.bytes_up, t.total_bytes) == (48, 12, 60)
    assert t.as_dict()["entries"][0] == {
        "direction": "down",
        "message_type": "CentroidsMessage",
        "num_bytes": 48,
    }
    with pytest.raises(TypeError, match="may cross"):
        t.record("up", np.ones(3))
    with pytest.raises(ValueError, match="direction"):
        t.record("sideways", s)


def test_cloud_errors():
    pool, _ = _data()
    cloud = protocol.Cloud(pool)
    with pytest.raises(ValueError, match="broadcast first"):
        cloud.select(protocol.ScoresMessage(np.ones(4)), budget=3)
    cloud.broadcast(jax.random.key(0), num_clusters=4, num_iters=5)
    with pytest.raises(ValueError, match="4 centroids"):
        cloud.select(protocol.ScoresMessage(np.ones(5)), budget=3)
    with pytest.raises(TypeError, match="ScoresMessage"):
        cloud.select(np.ones(4), budget=3)
    with pytest.raises(ValueError, match="num_clusters"):
        cloud.broadcast(jax.random.key(0), num_clusters=0)


def test_run_protocol_needs_one_noise_setting():
    pool, client = _data()
    with pytest.raises(ValueError, match="exactly one"):
        protocol.run_protocol(jax.random.key(0), pool, client, num_clusters=4, budget=3)
    with pytest.raises(ValueError, match="exactly one"):
        protocol.run_protocol(
            jax.random.key(0),
            pool,
            client,
            num_clusters=4,
            budget=3,
            sigma=1.0,
            target_epsilon=1.0,
        )


def test_privacy_report_reference_values():
    # Spec table, one release, Δ=1, δ=1e-5.
    for sigma, pld, rdp in ((1.0, 4.377, 4.729), (5.0, 0.726, 0.795), (10.0, 0.341, 0.375)):
        r = protocol.privacy_report(sigma, delta=1e-5)
        assert r.epsilon_rdp == pytest.approx(rdp, abs=2e-3)
        assert r.epsilon_pld == pytest.approx(pld, abs=2e-3)
    with pytest.raises(ValueError, match="sigma"):
        protocol.privacy_report(0.0)


def test_comparison_bytes():
    got = protocol.comparison_bytes(np.zeros((10, 4), np.float32), np.zeros((100, 4), np.uint8))
    assert got == protocol.ComparisonBytes(upload_client_data=160, download_pool_data=400)
