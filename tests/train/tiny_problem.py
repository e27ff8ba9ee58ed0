"""A tiny separable image problem, a model and an optimizer shared by the training tests
(one model and optimizer object, so the jitted steps compile once per test process)."""

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax.models import DigitsCNN
from ecos_jax.train import create_train_state, make_optimizer

MODEL = DigitsCNN(num_classes=2, width=1 / 16)
OPTIMIZER = make_optimizer("sgd", learning_rate=0.05, total_steps=40, warmup_steps=2)


def problem(n=64, seed=0):
    """Two separable classes of 8×8 images: bright left half vs bright right half."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.uniform(0, 60, (n, 8, 8, 3)).astype(np.float32)
    images[labels == 0, :, :4] += 150
    images[labels == 1, :, 4:] += 150
    return images, labels.astype(np.int32)


def fresh_state(seed=0):
    """A TrainState of `MODEL` at step 0."""
    return create_train_state(
        jax.random.key(seed), MODEL, OPTIMIZER, jnp.zeros((1, 8, 8, 3), jnp.float32)
    )


def assert_trees_equal(a, b):
    """Same tree structure and bit-identical leaves."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
