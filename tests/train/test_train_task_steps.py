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


def test_distill_fit_matches_the_teacher():
    images, labels = problem()
    teacher_logits = np.where(labels[:, None] == np.arange(2), 4.0, -4.0).astype(np.float32)
    state, history = fit(
        jax.random.key(0),
        fresh_state(),
        images,
        teacher_logits,
        num_steps=30,
        batch_size=8,
        log_every=10,
        progress=False,
        step_fn=functools.partial(distill_step, temperature=4.0),
    )
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["accuracy"] > 0.9  # agreement with the teacher's argmax
    assert evaluate(state, images, labels)["accuracy"] > 0.9


def test_distill_step_loss_is_the_distillation_loss():
    images, _ = problem(n=8)
    state = fresh_state()
    teacher = jax.random.normal(jax.random.key(3), (8, 2))
    student = predict_logits(state, images)
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
    assert student.shape == (8, 2)


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
    with pytest.raises(ValueError, match="unlabeled_batch_size"):
        fit(
            jax.random.key(0),
            fresh_state(),
            images,
            labels,
            num_steps=1,
            batch_size=8,
            progress=False,
            unlabeled_images=images,
            unlabeled_batch_size=0,
        )
