"""Shapes and BatchNorm collections of the downstream models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecos_jax.models import DigitsCNN, ResNet18


def _param_shapes(model, size):
    """Parameter shapes without computing anything."""
    init = lambda k, x: model.init(k, x, train=False)["params"]
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(init, jax.random.key(0), x)


@pytest.mark.parametrize(
    ("model", "size"),
    [(DigitsCNN(num_classes=7, width=1 / 16), 28), (ResNet18(num_classes=7, width=1 / 32), 8)],
)
def test_logits_shape_and_batch_stats(model, size):
    x = jnp.arange(2 * size * size * 3).reshape(2, size, size, 3).astype(jnp.uint8)

    @jax.jit  # one compile for init and both modes
    def run(key):
        variables = model.init(key, x, train=False)
        eval_logits = model.apply(variables, x, train=False)
        train_logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return variables, eval_logits, train_logits, updates

    variables, eval_logits, train_logits, updates = run(jax.random.key(0))
    assert set(variables) == {"params", "batch_stats"}
    for logits in (eval_logits, train_logits):
        assert logits.shape == (2, 7)
        assert logits.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(logits)))
    changed = jax.tree.map(
        lambda a, b: bool((a != b).any()), updates["batch_stats"], variables["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))


def test_digits_cnn_layer_widths():
    params = _param_shapes(DigitsCNN(num_classes=10, width=0.5), 28)
    assert params["conv0"]["kernel"].shape == (5, 5, 3, 32)
    assert params["conv2"]["kernel"].shape == (5, 5, 32, 64)
    # Two 2×2 pools: 28 → 7, so the first dense layer sees 7·7·64 inputs.
    assert params["fc0"]["kernel"].shape == (7 * 7 * 64, 1024)
    assert params["fc1"]["kernel"].shape == (1024, 256)
    assert params["head"]["kernel"].shape == (256, 10)


def test_resnet18_has_eight_blocks_and_downsamples():
    params = _param_shapes(ResNet18(num_classes=3, width=1 / 16), 32)
    blocks = [name for name in params if name.startswith("stage")]
    assert len(blocks) == 8
    assert "proj" in params["stage1_block0"] and "proj" not in params["stage0_block0"]
    assert params["stage3_block1"]["conv2"]["kernel"].shape == (3, 3, 32, 32)
    assert params["head"]["kernel"].shape == (32, 3)


def test_models_reject_unbatched_images():
    with pytest.raises(ValueError, match="images_NHWC"):
        DigitsCNN(width=1 / 16).init(jax.random.key(0), jnp.zeros((28, 28, 3)), train=False)


@pytest.mark.parametrize(
    ("model", "size", "width"),
    [
        (DigitsCNN(num_classes=7, width=1 / 16), 28, 32),
        (ResNet18(num_classes=7, width=1 / 32), 8, 16),
    ],
)
def test_features_are_what_the_head_reads(model, size, width):
    """`features=True` is the penultimate layer: the head applied to it gives the logits;
    `train.predict_features` returns it for a whole set, padded batches cut off."""
    from ecos_jax import train

    x = jax.random.randint(jax.random.key(1), (5, size, size, 3), 0, 256).astype(jnp.uint8)
    optimizer = train.make_optimizer("sgd", learning_rate=0.1, total_steps=1)
    state = train.create_train_state(jax.random.key(0), model, optimizer, x[:1])
    feats = train.predict_features(state, x, batch_size=2)
    assert feats.shape == (5, width)
    head = state.params["head"]
    logits = feats @ np.asarray(head["kernel"]) + np.asarray(head["bias"])[None]
    np.testing.assert_allclose(logits, train.predict_logits(state, x), rtol=1e-5, atol=1e-5)
