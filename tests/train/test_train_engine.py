"""The engine: R runs trained in one vmapped step end where `fit` ends.

Bit for bit for a model without convolutions (so the batch order, the augmentation,
the keys, the optimizer and the logs are exactly `fit`'s); within float tolerance for the
digit CNN, whose kernel gradients XLA's CPU backend rounds differently in the batched
program (measured: 1 ulp in two of the three conv kernels after one step, with every
forward value, the loss and all other gradients bit-identical). The logged gradient
norm, a reduction over the whole parameter tree, is summed in another order in the
batched program too (1 ulp), so it is compared within tolerance.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax import train
from ecos_jax.train import engine
from tests.train.tiny_problem import OPTIMIZER, assert_trees_equal, fresh_state, problem

NUM_STEPS = 6


class _MLP(nn.Module):
    """Dense, BatchNorm, ReLU, Dense: every layer kind of the CNN but the convolution."""

    @nn.compact
    def __call__(self, images, *, train):
        x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
        x = nn.Dense(16, use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        return nn.Dense(2)(x)


MLP = _MLP()


def _mlp_state(seed):
    return train.create_train_state(
        jax.random.key(seed), MLP, OPTIMIZER, jnp.zeros((1, 8, 8, 3), jnp.float32)
    )


def _runs(num_runs=3):
    """Bank of 64 images; run r trains on its own subset of size 24 + 8r, own seed."""
    images, labels = problem(64)
    rng = np.random.default_rng(0)
    data, keys = [], []
    for r in range(num_runs):
        rows = rng.permutation(64)[: 24 + 8 * r]
        data.append(engine.RunData(rows, labels[rows]))
        keys.append(jax.random.key(100 + r))
    return images, data, keys


def _both(make_state, augment, **extra):
    images, data, keys = _runs()
    kwargs = dict(num_steps=NUM_STEPS, batch_size=8, log_every=2, augment=augment, **extra)
    sequential = [
        train.fit(k, make_state(r), images[d.rows], d.targets, progress=False, **kwargs)
        for r, (k, d) in enumerate(zip(keys, data, strict=True))
    ]
    states = [make_state(r) for r in range(len(keys))]
    together = engine.fit_runs(keys, states, images, data, progress=False, **kwargs)
    return together, sequential


@pytest.mark.parametrize("augment", ["weak", None])
def test_vmapped_runs_equal_sequential_runs_bit_for_bit(augment):
    together, sequential = _both(_mlp_state, augment)
    for (state, history), (want_state, want_history) in zip(together, sequential, strict=True):
        assert_trees_equal(state.params, want_state.params)
        assert_trees_equal(state.batch_stats, want_state.batch_stats)
        assert_trees_equal(state.opt_state, want_state.opt_state)
        assert _without_norm(history) == _without_norm(want_history)
        np.testing.assert_allclose(
            [r["grad_norm"] for r in history], [r["grad_norm"] for r in want_history], rtol=1e-6
        )


def _without_norm(history):
    return [{k: v for k, v in r.items() if k != "grad_norm"} for r in history]


def test_vmapped_cnn_runs_agree_with_sequential_runs_within_float_tolerance():
    together, sequential = _both(fresh_state, "weak")
    for (state, history), (want_state, want_history) in zip(together, sequential, strict=True):
        for got, want in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(want_state.params), strict=True
        ):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
        assert [r["step"] for r in history] == [r["step"] for r in want_history]
        np.testing.assert_allclose(
            [r["loss"] for r in history], [r["loss"] for r in want_history], rtol=1e-4
        )
