"""Tests for ecos_jax.tasks.distill against a NumPy reference of Hinton's loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import cross_entropy, log_softmax, softmax

from ecos_jax.tasks import distill


def _np_kd(student, teacher, temperature):
    log_t = log_softmax(np.asarray(teacher, np.float64) / temperature)
    log_s = log_softmax(np.asarray(student, np.float64) / temperature)
    return temperature**2 * np.mean(np.sum(np.exp(log_t) * (log_t - log_s), axis=1))


RNG = np.random.default_rng(0)
STUDENT = RNG.normal(scale=3.0, size=(8, 5)).astype(np.float32)
TEACHER = RNG.normal(scale=3.0, size=(8, 5)).astype(np.float32)
LABELS = RNG.integers(0, 5, size=8).astype(np.int32)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 10.0])
def test_matches_numpy_reference(temperature):
    got = distill.distillation_loss(STUDENT, TEACHER, temperature=temperature)
    want = _np_kd(STUDENT, TEACHER, temperature)
    assert want > 0
    np.testing.assert_allclose(float(got), want, rtol=2e-5)


def test_default_temperature_is_four():
    got = distill.distillation_loss(STUDENT, TEACHER)
    np.testing.assert_allclose(float(got), _np_kd(STUDENT, TEACHER, 4.0), rtol=2e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_zero_when_logits_equal(temperature):
    assert float(distill.distillation_loss(TEACHER, TEACHER, temperature=temperature)) == 0.0
    # Softmax is shift-invariant: a per-row offset leaves the loss at (numerically) zero.
    shifted = TEACHER + np.arange(8, dtype=np.float32)[:, None]
    got = distill.distillation_loss(shifted, TEACHER, temperature=temperature)
    assert abs(float(got)) < 1e-5


@pytest.mark.parametrize("alpha", [None, 0.0, 0.3, 1.0])
def test_hard_label_mixture(alpha):
    got = distill.distillation_loss(STUDENT, TEACHER, temperature=3.0, labels=LABELS, alpha=alpha)
    a = distill.DEFAULT_ALPHA if alpha is None else alpha
    want = a * _np_kd(STUDENT, TEACHER, 3.0) + (1 - a) * np.mean(cross_entropy(STUDENT, LABELS))
    np.testing.assert_allclose(float(got), want, rtol=2e-5)


def test_gradients_finite_and_teacher_constant():
    def loss_fn(student, teacher):
        return distill.distillation_loss(student, teacher, labels=jnp.asarray(LABELS))

    g_student, g_teacher = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(
        jnp.asarray(STUDENT), jnp.asarray(TEACHER)
    )
    assert np.isfinite(np.asarray(g_student)).all()
    assert np.abs(np.asarray(g_student)).sum() > 0
    np.testing.assert_array_equal(np.asarray(g_teacher), 0.0)


def test_soft_gradient_matches_closed_form():
    # d/ds [T² KL(p_t || softmax(s/T))] per example = T (softmax(s/T) - p_t), averaged over B.
    t = 4.0
    g = jax.grad(lambda s: distill.distillation_loss(s, jnp.asarray(TEACHER), temperature=t))(
        jnp.asarray(STUDENT)
    )
    p_s = softmax(STUDENT / t)
    p_t = softmax(TEACHER / t)
    np.testing.assert_allclose(np.asarray(g), t * (p_s - p_t) / len(STUDENT), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.5}, "labels is None"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature"),
        ({"teacher_logits": TEACHER[:4]}, "same shape"),
        ({"teacher_logits": TEACHER[:, :3]}, "class columns"),
        ({"labels": np.array([0, 9, 0, 0, 0, 0, 0, 0])}, "labels must lie in"),
        ({"labels": LABELS, "alpha": 1.5}, "alpha"),
        ({"student_logits": STUDENT[0]}, "student_logits must be a"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"student_logits": STUDENT, "teacher_logits": TEACHER}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        distill.distillation_loss(**args)
