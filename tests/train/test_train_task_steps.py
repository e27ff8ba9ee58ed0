"""FixMatch and distillation steps, and `fit` running them, on a tiny fixed problem."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_problem import fresh_state, problem

from ecos_jax.tasks import distillation_loss
from ecos_jax.train import (
    distill_step,
    evaluate,
    fit,
    fixmatch_step,
    predict_logits,
)


def test_fixmatch_fit_learns_and_reports_mask_rate():
    images, labels = problem()
    unlabeled, _ = problem(n=96, seed=1)
    step = functools.partial(fixmatch_step, threshold=0.6, lambda_u=1.0)
    state, history = fit(
        jax.random.key(0),
        fresh_state(),
        images[:16],
        labels[:16],
        num_steps=30,
        batch_size=8,
        log_every=10,
        progress=False,
        step_fn=step,
        unlabeled_images=unlabeled,
        unlabeled_batch_size=16,
    )
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"mask_rate", "supervised_loss"} <= set(history[-1])
    assert 0.0 <= history[-1]["mask_rate"] <= 1.0
    assert evaluate(state, images, labels)["accuracy"] > 0.9


def test_fit_feeds_fixmatch_fresh_views_every_step():
    # Copies of one labeled and one unlabeled image: the views of a step differ from those
    # of another step only through that step's augmentation key.
    images, labels = problem(n=2)
    seen = []

    def record(state, batch, key):
        seen.append([np.asarray(jax.random.key_data(key))] + [np.asarray(b) for b in batch])
        return state, {"loss": jnp.float32(0.0), "finite": jnp.bool_(True)}

    num_steps = 4
    fit(
        jax.random.key(0),
        fresh_state(),
        np.repeat(images[:1], 8, axis=0),
        np.repeat(labels[:1], 8),
        num_steps=num_steps,
        batch_size=8,
        log_every=num_steps,
        progress=False,
        step_fn=record,
        unlabeled_images=np.repeat(images[1:], 16, axis=0),
        unlabeled_batch_size=8,
    )
    assert len(seen) == num_steps
    key, x, y, weak, strong = (list(field) for field in zip(*seen, strict=True))
    assert all(v.shape == (8, 8, 8, 3) for v in x + weak + strong)
    assert all((batch_labels == labels[0]).all() for batch_labels in y)
    for name, values in {"key": key, "x": x, "weak": weak, "strong": strong}.items():
        assert len({v.tobytes() for v in values}) == num_steps, f"{name} repeats across steps"
    assert all(not np.array_equal(w, s) for w, s in zip(weak, strong, strict=True))
    # Every weak view is a pad-2 crop of the unlabeled image (reflect padding).
    padded = np.pad(images[1], ((2, 2), (2, 2), (0, 0)), mode="reflect")
    windows = [padded[i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
    assert all(any(np.array_equal(v, win) for win in windows) for view in weak for v in view)


def test_fixmatch_step_with_impossible_threshold_is_supervised():
    """τ above every confidence masks all unlabeled examples: the loss is the labeled CE."""
    images, labels = problem(n=16)
    state = fresh_state()
    x = jnp.asarray(images[:8])
    _, metrics = fixmatch_step(
        state,
        (x, jnp.asarray(labels[:8]), x, x),
        jax.random.key(0),
        threshold=1.0,
        lambda_u=5.0,
    )
    assert float(metrics["mask_rate"]) == 0.0
    np.testing.assert_allclose(metrics["loss"], metrics["supervised_loss"], rtol=1e-6)
    # The supervised term is the labeled rows' cross-entropy, the three views in one
    # train-mode batch (float64 NumPy log-softmax; `state` was donated, so a fresh copy).
    state = fresh_state()
    train_logits = jax.jit(
        lambda variables, images: state.apply_fn(
            variables, images, train=True, mutable=["batch_stats"]
        )[0]
    )
    logits = train_logits(
        {"params": state.params, "batch_stats": state.batch_stats}, jnp.concatenate([x, x, x])
    )
    z = np.asarray(logits[:8], np.float64)
    log_p = z - z.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    expected = -log_p[np.arange(8), labels[:8]].mean()
    np.testing.assert_allclose(float(metrics["supervised_loss"]), expected, rtol=1e-5)


def test_distill_fit_matches_the_teacher():
    images, labels = problem()
    teacher_logits = np.where(labels[:, None] == np.arange(2), 4.0, -4.0).astype(np.float32)
    step_fn = functools.partial(distill_step, temperature=4.0)
    loop = dict(num_steps=30, batch_size=8, log_every=10, progress=False, step_fn=step_fn)
    state, history = fit(jax.random.key(0), fresh_state(), images, teacher_logits, **loop)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["accuracy"] > 0.9  # agreement with the teacher's argmax
    assert evaluate(state, images, labels)["accuracy"] > 0.9


def test_distill_step_loss_is_the_distillation_loss():
    images, _ = problem(n=8)
    state = fresh_state()
    teacher = jax.random.normal(jax.random.key(3), (8, 2))
    # train-mode BatchNorm differs from eval mode: compare against the train-mode logits
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        jnp.asarray(images),
        train=True,
        mutable=["batch_stats"],
    )[0]
    expected = distillation_loss(logits, teacher, temperature=2.0)
    _, metrics = distill_step(
        fresh_state(), (jnp.asarray(images), teacher), jax.random.key(0), temperature=2.0
    )
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)


def test_predict_logits_pads_the_last_batch():
    images, _ = problem(n=10)
    state = fresh_state()
    full = predict_logits(state, images, batch_size=16)
    chunked = predict_logits(state, images, batch_size=4)
    np.testing.assert_allclose(full, chunked, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one image"):
        predict_logits(state, images[:0])


def test_fit_rejects_a_bad_unlabeled_batch_size():
    images, labels = problem(n=16)
    bad = dict(num_steps=1, batch_size=8, unlabeled_images=images, unlabeled_batch_size=0)
    with pytest.raises(ValueError, match="unlabeled_batch_size"):
        fit(jax.random.key(0), fresh_state(), images, labels, **bad)
