"""Warmup-cosine schedule values and optimizer construction."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ecos_jax.train import make_optimizer, make_schedule


def test_schedule_warmup_then_cosine_to_zero():
    schedule = make_schedule(learning_rate=0.1, total_steps=110, warmup_steps=10)
    values = np.array([float(schedule(s)) for s in range(111)])
    np.testing.assert_allclose(values[:11], np.linspace(0.0, 0.1, 11), atol=1e-7)
    # Cosine from step 10 to 110: half-way (step 60) is half the peak.
    np.testing.assert_allclose(values[60], 0.05, rtol=1e-5)
    np.testing.assert_allclose(values[110], 0.0, atol=1e-8)
    assert np.all(np.diff(values[10:]) <= 1e-9)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizer_decays_kernels_only(name):
    tx = make_optimizer(name, learning_rate=0.1, total_steps=10, weight_decay=0.5)
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zero_grads = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
    state = tx.init(params)
    for _ in range(2):
        updates, state = tx.update(zero_grads, state, params)
        params = optax.apply_updates(params, updates)
    assert float(params["kernel"][0, 0]) < 1.0
    assert float(params["bias"][0]) == 1.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="name"):
        make_optimizer("lamb", learning_rate=0.1, total_steps=10)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_optimizer(learning_rate=0.1, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="learning_rate"):
        make_schedule(learning_rate=0.0, total_steps=10)
