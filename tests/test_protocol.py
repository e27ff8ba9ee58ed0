"""Tests for ecos_jax.protocol: messages, transcript, roles and a full round, checked on what
is released (the noisy integer scores), not only on what is reported."""

from __future__ import annotations

import inspect
import math

import jax
import numpy as np
import pytest

from ecos_jax import coverage, messages, noise, privacy, protocol, roles
from ecos_jax.keys import named_key


def _data(seed=0, num_pool=600, num_client=120, dim=8):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, dim)) * 6.0
    pool = centers[rng.integers(0, 6, num_pool)] + rng.normal(size=(num_pool, dim))
    client = centers[rng.integers(0, 2, num_client)] + rng.normal(size=(num_client, dim))
    return pool.astype(np.float32), client.astype(np.float32)


def _sim(seed):
    return noise.simulation(jax.random.key(seed))


def _round(**kwargs):
    pool, client = _data()
    args = dict(num_clusters=12, budget=50, target_epsilon=0.58, kmeans_iters=20)
    args.update(kwargs)
    return protocol.run_protocol(jax.random.key(0), pool, client, **args)


def test_full_round_transcript_holds_exactly_two_messages():
    res = _round()
    num_clusters, dim = 12, 8
    entries = res.transcript.entries
    assert [(e.direction, e.message_type) for e in entries] == [
        ("down", "CentroidsMessage"),
        ("up", "ScoresMessage"),
    ]
    assert entries[0].num_bytes == 4 * num_clusters * dim
    assert entries[1].num_bytes == 8 * num_clusters  # int64 scores
    assert res.transcript.bytes_down == 4 * num_clusters * dim
    assert res.transcript.bytes_up == 8 * num_clusters
    assert res.transcript.randomness == "secure"  # the default
    assert res.scores.scores.dtype == np.int64
    assert res.indices.shape == (50,) and np.unique(res.indices).size == 50
    assert res.privacy.epsilon_rdp == pytest.approx(0.58, abs=2e-3)
    assert res.privacy.epsilon_rdp <= 0.58
    assert res.privacy.epsilon_pld < res.privacy.epsilon_rdp
    assert res.privacy.sensitivity == 1.0


def test_simulated_round_reproduces_and_records_its_randomness():
    a = _round(randomness=_sim(5))
    b = _round(randomness=_sim(5))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores.scores, b.scores.scores)
    assert a.transcript.randomness == "simulation"
    assert a.transcript.as_dict()["entries"][1]["randomness"] == "simulation"
    c = _round(randomness=_sim(6))
    assert not np.array_equal(a.scores.scores, c.scores.scores)


def test_released_noise_is_drawn_from_the_clients_key_not_the_clouds():
    """The released scores minus the exact counts are the discrete Gaussian drawn from the
    client's simulation key; the cloud's (k-means) key plays no part in them."""
    pool, client = _data()
    cloud_key, client_key = jax.random.key(0), jax.random.key(123)
    args = dict(num_clusters=12, budget=50, sigma=3.0, kmeans_iters=20)
    run = lambda key: protocol.run_protocol(
        cloud_key, pool, client, randomness=noise.simulation(key), **args
    )
    centroids = roles.Cloud(pool).broadcast(cloud_key, num_clusters=12, num_iters=20)
    residual = (
        run(client_key).scores.scores - coverage.voronoi_scores(client, centroids.centroids).counts
    )
    noise_of = lambda key: noise.add_discrete_gaussian(
        np.zeros(12, np.int64), scale=3.0, randomness=noise.simulation(key)
    )
    np.testing.assert_array_equal(residual, noise_of(client_key))
    assert not np.array_equal(residual, noise_of(cloud_key))
    with pytest.raises(ValueError, match="equals a key of the cloud"):
        run(cloud_key)


@pytest.mark.parametrize(
    "method, kwargs, votes",
    [("top_m", {"m": 4}, 4), ("radius", {"radii": 1e6, "max_votes": 4}, 4)],
)
def test_released_noise_is_scaled_by_the_sensitivity(method, kwargs, votes):
    """With many centroids one release holds enough noise draws to measure its scale: it is
    σ·√votes, what the report claims, not σ."""
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(6000, 3)).astype(np.float32)
    client = rng.normal(size=(40, 3)).astype(np.float32)
    msg = messages.CentroidsMessage(centroids)
    sigma = 1.5
    out = roles.client_respond(
        msg, client, sigma=sigma, method=method, randomness=_sim(1), **kwargs
    )
    counts = coverage.coverage_scores(client, centroids, method=method, **kwargs).counts
    residual = out.scores - counts
    report = protocol.privacy_report(sigma, method=method, coverage_kwargs=kwargs)
    assert report.noise_std == pytest.approx(sigma * math.sqrt(votes))
    # std of N_Z(0, s²) is s to within 1e-10 for s >= 1; sampling error ~ 1% here.
    assert np.std(residual) == pytest.approx(report.noise_std, rel=0.04)
    assert abs(np.std(residual) - sigma) > 0.5 * sigma


def test_client_respond_signature_and_output():
    params = inspect.signature(roles.client_respond).parameters
    names = list(params)
    assert names[:2] == ["message", "client_features"]
    assert all(
        p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
        for p in list(params.values())[2:]
    )
    pool, client = _data(seed=2)
    msg = roles.Cloud(pool).broadcast(jax.random.key(0), num_clusters=5, num_iters=10)
    out = roles.client_respond(msg, client, sigma=5.0)
    assert isinstance(out, messages.ScoresMessage)
    assert out.scores.dtype == np.int64 and out.scores.shape == (5,)
    assert out.randomness == "secure"
    sim = roles.client_respond(msg, client, sigma=5.0, randomness=_sim(1))
    assert sim.randomness == "simulation"
    np.testing.assert_array_equal(
        sim.scores, roles.client_respond(msg, client, sigma=5.0, randomness=_sim(1)).scores
    )
    with pytest.raises(TypeError, match="CentroidsMessage"):
        roles.client_respond(msg.centroids, client, sigma=1.0)
    with pytest.raises(TypeError, match="takes no key"):
        roles.client_respond(jax.random.key(1), client, sigma=1.0)
    with pytest.raises(TypeError, match=r"simulation\(key\)"):
        roles.client_respond(msg, client, sigma=1.0, randomness=jax.random.key(1))


def test_client_role_matches_client_respond_and_draws_fresh_noise():
    pool, client_x = _data(seed=3)
    msg = roles.Cloud(pool).broadcast(jax.random.key(0), num_clusters=6, num_iters=10)
    client = roles.Client(client_x, sigma=2.0, method="top_m", m=2, randomness=_sim(4))
    first, second = client.respond(msg), client.respond(msg)

    def response(i):  # the i-th response's noise: named_key(client key, "response/i")
        key = named_key(jax.random.key(4), f"response/{i}")
        return roles.client_respond(
            msg, client_x, sigma=2.0, method="top_m", m=2, randomness=noise.simulation(key)
        )

    np.testing.assert_array_equal(first.scores, response(0).scores)
    assert not np.array_equal(first.scores, second.scores)  # never the same noise twice
    np.testing.assert_array_equal(second.scores, response(1).scores)
    assert roles.Client(client_x, sigma=2.0).respond(msg).randomness == "secure"
    with pytest.raises(ValueError, match="sigma"):
        roles.Client(client_x, sigma=0.0)


def test_messages_and_transcript_validate():
    m = messages.CentroidsMessage(np.ones((3, 4), np.float64))
    assert m.centroids.dtype == np.float32 and m.num_bytes == 48
    s = messages.ScoresMessage(np.array([1, -2, 3]))
    assert s.scores.dtype == np.int64 and s.num_bytes == 24 and s.randomness == "secure"
    with pytest.raises(ValueError, match="2-D"):
        messages.CentroidsMessage(np.ones(3))
    with pytest.raises(ValueError, match="finite in float32"):
        messages.CentroidsMessage(np.full((2, 2), 1e39))  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="integers"):
        messages.ScoresMessage(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="randomness"):
        messages.ScoresMessage(np.array([1, 2]), randomness="dice")
    t = messages.Transcript()
    t.record("down", m)
    t.record("up", s)
    assert (t.bytes_down, t.bytes_up, t.total_bytes) == (48, 24, 72)
    assert t.as_dict()["entries"][0] == {
        "direction": "down",
        "message_type": "CentroidsMessage",
        "num_bytes": 48,
        "randomness": None,
    }
    assert t.as_dict()["randomness"] == "secure"
    with pytest.raises(TypeError, match="may cross"):
        t.record("up", np.ones(3))
    with pytest.raises(ValueError, match="direction"):
        t.record("sideways", s)


def test_cloud_errors():
    pool, _ = _data()
    cloud = roles.Cloud(pool)
    with pytest.raises(ValueError, match="broadcast first"):
        cloud.select(messages.ScoresMessage(np.ones(4, np.int64)), budget=3)
    cloud.broadcast(jax.random.key(0), num_clusters=4, num_iters=5)
    with pytest.raises(ValueError, match="4 centroids"):
        cloud.select(messages.ScoresMessage(np.ones(5, np.int64)), budget=3)
    with pytest.raises(TypeError, match="ScoresMessage"):
        cloud.select(np.ones(4), budget=3)
    with pytest.raises(ValueError, match="num_clusters"):
        cloud.broadcast(jax.random.key(0), num_clusters=0)
    with pytest.raises(TypeError, match=r"jax.random.key\(seed\)"):
        cloud.broadcast(0, num_clusters=4)


def test_cosine_cloud_clusters_directions_not_magnitudes():
    """The cosine cloud normalises rows before k-means: rescaling rows changes nothing."""
    pool, _ = _data(seed=4)
    scales = np.random.default_rng(0).uniform(0.1, 10.0, size=(len(pool), 1)).astype(np.float32)
    key = jax.random.key(3)
    a = roles.Cloud(pool, metric="cosine").broadcast(key, num_clusters=6, num_iters=20)
    b = roles.Cloud(pool * scales, metric="cosine").broadcast(key, num_clusters=6, num_iters=20)
    np.testing.assert_allclose(a.centroids, b.centroids, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a.centroids, axis=1), 1.0, atol=0.2)
    plain = roles.Cloud(pool * scales).broadcast(key, num_clusters=6, num_iters=20)
    assert not np.allclose(
        plain.centroids / np.linalg.norm(plain.centroids, axis=1, keepdims=True),
        a.centroids,
        atol=1e-2,
    )


def test_threshold_is_a_multiple_of_the_noise_scale_sigma_times_delta():
    """top-m with m=4: Δ=2, so threshold_multiple=t drops clusters scoring below t·2σ."""
    pool, client = _data(seed=5)
    sigma = 3.0
    kwargs = dict(
        num_clusters=10,
        budget=40,
        sigma=sigma,
        method="top_m",
        coverage_kwargs={"m": 4},
        kmeans_iters=15,
        randomness=_sim(2),
    )
    scores = protocol.run_protocol(jax.random.key(1), pool, client, **kwargs).scores.scores
    # t puts a sizeable score between t·σ (kept by a σ-threshold) and t·σΔ (dropped).
    probe = float(scores[scores > 0.1 * scores.max()].min())  # a cluster that matters
    t = probe / (2 * sigma) + 1e-3
    res = protocol.run_protocol(jax.random.key(1), pool, client, threshold_multiple=t, **kwargs)
    np.testing.assert_array_equal(res.scores.scores, scores)  # same keys, same release
    cloud = roles.Cloud(pool)
    cloud.broadcast(jax.random.key(1), num_clusters=10, num_iters=15)
    want = cloud.select(res.scores, budget=40, threshold=t * 2 * sigma)
    np.testing.assert_array_equal(res.indices, want)
    assert not np.array_equal(want, cloud.select(res.scores, budget=40, threshold=t * sigma))


def test_run_protocol_needs_one_noise_setting():
    pool, client = _data()
    with pytest.raises(ValueError, match="exactly one"):
        protocol.run_protocol(jax.random.key(0), pool, client, num_clusters=4, budget=3)
    with pytest.raises(ValueError, match="exactly one"):
        protocol.run_protocol(
            jax.random.key(0), pool, client, num_clusters=4, budget=3, sigma=1.0, target_epsilon=1.0
        )
    with pytest.raises(TypeError, match=r"jax.random.key\(seed\)"):
        protocol.run_protocol(0, pool, client, num_clusters=4, budget=3, sigma=1.0)


def test_privacy_report_follows_delta_and_the_method():
    for sigma in (1.0, 5.0, 10.0):
        for delta in (1e-3, 1e-5, 1e-8):
            r = protocol.privacy_report(sigma, delta=delta)
            want = privacy.epsilons(privacy.DiscreteGaussianRelease(sigma), delta=delta)
            assert (r.epsilon_rdp, r.epsilon_pld) == (want["rdp"], want["pld"])
            assert r.delta == delta
    assert (
        protocol.privacy_report(2.0, delta=1e-3).epsilon_rdp
        < protocol.privacy_report(2.0, delta=1e-8).epsilon_rdp
    )
    r = protocol.privacy_report(2.0, method="radius", coverage_kwargs={"max_votes": 9})
    assert (r.sensitivity, r.noise_std, r.release.coordinates) == (3.0, 6.0, 9)
    with pytest.raises(ValueError, match="sigma"):
        protocol.privacy_report(0.0)


def test_comparison_bytes():
    got = messages.comparison_bytes(np.zeros((10, 4), np.float32), np.zeros((100, 4), np.uint8))
    assert got == messages.ComparisonBytes(upload_client_data=160, download_pool_data=400)
    assert messages.comparison_bytes is messages.comparison_bytes  # re-exported


def test_run_protocol_is_one_round_then_one_selection():
    """run_protocol = ecos_round (σ calibrated first) + select_from_round; one round serves
    every budget and the threshold is applied in one place."""
    pool, client = _data(seed=6)
    kwargs = dict(num_clusters=8, kmeans_iters=15, randomness=_sim(9))
    sigma = privacy.calibrate_sigma(1.0, delta=1e-5)
    res = protocol.run_protocol(
        jax.random.key(2),
        pool,
        client,
        budget=30,
        target_epsilon=1.0,
        threshold_multiple=0.5,
        **kwargs,
    )
    ecos = protocol.ecos_round(jax.random.key(2), pool, client, sigma=sigma, **kwargs)
    np.testing.assert_array_equal(res.scores.scores, ecos.scores.scores)
    assert res.transcript.as_dict() == ecos.transcript.as_dict()
    assert res.privacy == ecos.privacy
    idx = protocol.select_from_round(ecos, budget=30, threshold_multiple=0.5)
    np.testing.assert_array_equal(res.indices, idx)
    want = ecos.cloud.select(ecos.scores, budget=30, threshold=0.5 * ecos.privacy.noise_std)
    np.testing.assert_array_equal(idx, want)
    for budget in (5, 60):
        more = protocol.select_from_round(ecos, budget=budget)
        assert more.shape == (budget,) and np.unique(more).size == budget
    with pytest.raises(ValueError, match="pass chunk_size to ecos_round directly"):
        protocol.ecos_round(
            jax.random.key(2),
            pool,
            client,
            sigma=sigma,
            coverage_kwargs={"chunk_size": 8},
            num_clusters=4,
        )


def test_the_round_uses_one_chunk_size_everywhere():
    pool, client = _data(seed=7)
    kwargs = dict(sigma=3.0, num_clusters=6, kmeans_iters=10, randomness=_sim(3))
    ecos = protocol.ecos_round(jax.random.key(0), pool, client, chunk_size=64, **kwargs)
    assert ecos.cloud.chunk_size == 64
    assert roles.Cloud(pool).chunk_size == protocol.DEFAULT_CHUNK_SIZE
    default = protocol.ecos_round(jax.random.key(0), pool, client, **kwargs)
    np.testing.assert_array_equal(
        protocol.select_from_round(ecos, budget=40), protocol.select_from_round(default, budget=40)
    )
