"""`ecos_jax.selection`: every method returns B indices with its cost; seeds reproduce; the
cloud's keys are named."""

import jax
import numpy as np
import pytest

from ecos_jax import coverage, messages, noise, privacy, protocol, selection, synthetic
from ecos_jax.keys import named_key


@pytest.fixture(scope="module")
def bench():
    import jax

    return synthetic.make_feature_benchmark(
        jax.random.key(0),
        num_domains=3,
        num_classes=3,
        dim=8,
        per_domain=300,
        client_domain=0,
        regime="id+ood",
    )


def _round(bench, seed=1, sigma=5.0, **kwargs):
    return protocol.ecos_round(
        selection.method_keys(seed)["kmeans"],
        bench.pool_features,
        bench.client_features,
        sigma=sigma,
        num_clusters=9,
        kmeans_iters=10,
        randomness=selection.client_randomness(seed, "ecos_scores"),
        **kwargs,
    )


@pytest.mark.parametrize("method", sorted(selection.METHOD_NAMES))
def test_every_method_returns_budget_unique_indices(bench, method):
    ecos = _round(bench) if method == "ecos" else None
    idx, cost = selection.select(
        method,
        selection.method_keys(1),
        budget=40,
        pool_features=bench.pool_features,
        client_features=bench.client_features,
        ecos=ecos,
    )
    assert idx.shape == (40,)
    assert np.unique(idx).shape == (40,)
    assert idx.min() >= 0 and idx.max() < bench.pool_features.shape[0]
    if method == "oracle":
        assert cost.epsilon_rdp is None and cost.bytes_up == bench.client_features.nbytes
    elif method == "ecos":
        assert cost.bytes_down == 9 * 8 * 4 and cost.bytes_up == 9 * 8
    else:
        assert cost == selection.SelectionCost(0.0, 0.0, 0, 0)


def test_ecos_cost_is_the_release_epsilon(bench):
    ecos = _round(bench, sigma=5.0)
    _, cost = selection.select(
        "ecos", selection.method_keys(1), budget=30, pool_features=bench.pool_features, ecos=ecos
    )
    eps = privacy.epsilons([privacy.DiscreteGaussianRelease(noise_multiplier=5.0)], delta=1e-5)
    assert cost.epsilon_rdp == pytest.approx(eps["rdp"])
    assert cost.epsilon_pld == pytest.approx(eps["pld"])
    assert isinstance(ecos.transcript, messages.Transcript)


def test_same_seed_same_selection_and_other_seed_differs(bench):
    def pick(seed):
        return selection.select(
            "ecos",
            selection.method_keys(seed),
            budget=50,
            pool_features=bench.pool_features,
            ecos=_round(bench, seed=seed),
        )[0]

    np.testing.assert_array_equal(pick(1), pick(1))
    assert not np.array_equal(np.sort(pick(1)), np.sort(pick(2)))


def test_errors_name_the_fix(bench):
    keys = selection.method_keys(1)
    with pytest.raises(ValueError, match="needs ecos=ecos_round"):
        selection.select("ecos", keys, budget=5, pool_features=bench.pool_features)
    with pytest.raises(ValueError, match="needs client_features"):
        selection.select("oracle", keys, budget=5, pool_features=bench.pool_features)
    with pytest.raises(ValueError, match="unknown method 'best'"):
        selection.select("best", keys, budget=5, pool_features=bench.pool_features)


@pytest.mark.parametrize(
    "method, kwargs, votes",
    [("top_m", {"m": 4}, 4), ("radius", {"radii": 3.0, "max_votes": 2}, 2)],
)
def test_ecos_round_runs_every_coverage_method_with_its_sensitivity(bench, method, kwargs, votes):
    ecos = _round(bench, sigma=2.0, method=method, coverage_kwargs=kwargs)
    assert ecos.privacy.sensitivity == pytest.approx(votes**0.5)
    assert ecos.privacy.noise_std == pytest.approx(2.0 * votes**0.5)
    release = privacy.DiscreteGaussianRelease(2.0, coordinates=votes)
    assert ecos.privacy.epsilon_pld == pytest.approx(
        privacy.epsilon(release, delta=1e-5, accountant="pld")
    )
    idx, cost = selection.select(
        "ecos", selection.method_keys(1), budget=30, pool_features=bench.pool_features, ecos=ecos
    )
    assert np.unique(idx).size == 30 and cost.epsilon_pld == ecos.privacy.epsilon_pld
    # What was released is the method's counts plus noise of scale σΔ.
    counts = coverage.coverage_scores(
        bench.client_features, ecos.cloud.clustering.centroids, method=method, **kwargs
    ).counts
    expected = noise.add_discrete_gaussian(
        counts, scale=2.0 * votes**0.5, randomness=selection.client_randomness(1, "ecos_scores")
    )
    np.testing.assert_array_equal(ecos.scores.scores, expected)


def test_client_noise_differs_across_seeds_and_releases(bench):
    draw = lambda r: noise.add_discrete_gaussian(np.zeros(64, np.int64), scale=5.0, randomness=r)
    by_seed = [draw(selection.client_randomness(seed, "ecos_scores")) for seed in (1, 2, 3)]
    assert len({tuple(d) for d in by_seed}) == 3
    by_release = [draw(selection.client_randomness(1, f"ecos_scores/eps={e}")) for e in (0.5, 1)]
    assert not np.array_equal(*by_release)
    # And the released scores of two seeds' rounds carry different noise.
    a, b = _round(bench, seed=1), _round(bench, seed=2)
    counts = lambda e: (
        coverage.voronoi_scores(bench.client_features, e.cloud.clustering.centroids).counts
    )
    assert not np.array_equal(a.scores.scores - counts(a), b.scores.scores - counts(b))


def test_the_client_key_is_not_one_of_the_clouds(bench):
    keys = selection.method_keys(1)
    client = selection.client_randomness(1, "ecos_scores")
    for key in keys.values():
        assert not np.array_equal(jax.random.key_data(key), jax.random.key_data(client.key))
    with pytest.raises(ValueError, match="equals a key of the cloud"):
        protocol.ecos_round(
            keys["kmeans"],
            bench.pool_features,
            bench.client_features,
            sigma=2.0,
            num_clusters=9,
            kmeans_iters=5,
            randomness=noise.simulation(keys["kmeans"]),
        )


def test_threshold_multiple_is_in_units_of_sigma_times_delta(bench):
    sigma = 5.0
    ecos = _round(bench, sigma=sigma, method="top_m", coverage_kwargs={"m": 4})
    scores = ecos.scores.scores
    # t puts a sizeable score between t·σ (kept by a σ-threshold) and t·σΔ (dropped).
    t = float(scores[scores > 0.1 * scores.max()].min()) / (2 * sigma) + 1e-3
    kwargs = dict(budget=60, pool_features=bench.pool_features, ecos=ecos)
    idx, _ = selection.select("ecos", selection.method_keys(1), threshold_multiple=t, **kwargs)
    want = ecos.cloud.select(ecos.scores, budget=60, threshold=t * 2 * sigma)  # Δ = 2
    np.testing.assert_array_equal(idx, want)
    assert not np.array_equal(want, ecos.cloud.select(ecos.scores, budget=60, threshold=t * sigma))


def test_method_keys_are_named_keys_of_the_seed():
    keys = selection.method_keys(3)
    assert set(keys) == {"kmeans", "random", "k_center"}
    for name, key in keys.items():
        want = named_key(jax.random.key(3), name)
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(want))
    data = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in keys.values()}
    assert len(data) == 3
    other = selection.method_keys(4)["kmeans"]
    assert not np.array_equal(jax.random.key_data(other), jax.random.key_data(keys["kmeans"]))
