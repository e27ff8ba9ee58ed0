"""`ecos_jax.selection`: every method returns B indices with its cost; seeds reproduce."""

import numpy as np
import pytest

from ecos_jax import privacy, protocol, selection, synthetic


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


def _round(bench, seed=1, sigma=5.0):
    return selection.ecos_round(
        selection.method_keys(seed),
        bench.pool_features,
        bench.client_features,
        sigma=sigma,
        num_clusters=9,
        kmeans_iters=10,
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
        assert cost.bytes_down == 9 * 8 * 4 and cost.bytes_up == 9 * 4
    else:
        assert cost == selection.SelectionCost(0.0, 0.0, 0, 0)


def test_ecos_cost_is_the_release_epsilon(bench):
    ecos = _round(bench, sigma=5.0)
    _, cost = selection.select(
        "ecos", selection.method_keys(1), budget=30, pool_features=bench.pool_features, ecos=ecos
    )
    eps = privacy.epsilons([privacy.GaussianRelease(noise_multiplier=5.0)], delta=1e-5)
    assert cost.epsilon_rdp == pytest.approx(eps["rdp"])
    assert cost.epsilon_pld == pytest.approx(eps["pld"])
    assert isinstance(ecos.transcript, protocol.Transcript)


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
