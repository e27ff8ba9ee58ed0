"""The library factories and the jitted steps: a second run of one setting compiles nothing."""

import contextlib

import jax
import jax.numpy as jnp
import pytest
from tiny_problem import problem

from ecos_jax.models import MODELS, DigitsCNN, get_model
from ecos_jax.train import create_train_state, distill_step, fit, make_optimizer, train_step

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch


@contextlib.contextmanager
def count_compiles():
    """Yields a list that collects one entry per XLA compilation inside the block."""
    compiles = []

    def listener(event, duration, **kwargs):
        del duration, kwargs
        if event == BACKEND_COMPILE_EVENT:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _run(*, width=1 / 16, learning_rate=0.05, step_fn=train_step, tmp_path=None):
    """A short `fit` from scratch; the model and optimizer are built anew, by name."""
    model = get_model("digits_cnn", num_classes=2, width=width)
    tx = make_optimizer("sgd", learning_rate=learning_rate, total_steps=6, warmup_steps=1)
    state = create_train_state(jax.random.key(0), model, tx, jnp.zeros((1, 8, 8, 3)))
    images, labels = problem(n=32)
    if step_fn is distill_step:
        labels = jax.nn.one_hot(labels, 2) * 3.0  # teacher logits
    loop = dict(num_steps=6, batch_size=8, log_every=3, progress=False, workdir=tmp_path)
    return fit(jax.random.key(1), state, images, labels, step_fn=step_fn, **loop)[0]


@pytest.mark.parametrize("step_fn", [train_step, distill_step])
def test_a_second_identical_run_compiles_nothing(step_fn, tmp_path):
    _run(step_fn=step_fn)
    size = step_fn._cache_size()
    with count_compiles() as compiles:
        _run(step_fn=step_fn, tmp_path=tmp_path)  # logging and checkpoints on, too
    assert compiles == []
    assert step_fn._cache_size() == size


def test_another_setting_compiles_again():
    """The guard above can fail: a new width or learning rate is a new program."""
    _run()
    for changed in ({"width": 1 / 8}, {"learning_rate": 0.01}):
        size = train_step._cache_size()
        with count_compiles() as compiles:
            _run(**changed)
        assert compiles, changed
        assert train_step._cache_size() == size + 1, changed


def test_factories_return_equal_objects_for_equal_settings():
    a = get_model("resnet18", num_classes=7, width=0.5)
    assert a == get_model("resnet18", num_classes=7, width=0.5)
    assert not isinstance(a, DigitsCNN)
    kwargs = dict(learning_rate=0.1, total_steps=10, warmup_steps=2, weight_decay=0.0)
    assert make_optimizer("adamw", **kwargs) is make_optimizer("adamw", **kwargs)
    assert make_optimizer("adamw", **kwargs) is not make_optimizer("sgd", **kwargs)


def test_get_model_names_the_argument_and_the_choices():
    with pytest.raises(ValueError, match=r"name='vit'.*'digits_cnn' or 'resnet18'"):
        get_model("vit", num_classes=10)
    assert set(MODELS) == {"digits_cnn", "resnet18"}
