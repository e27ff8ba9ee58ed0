"""Tests for ecos_jax.tasks.fixmatch: masking, weighting, gradients and argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import cross_entropy, softmax

from ecos_jax.tasks import fixmatch

LABELED = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]], np.float32)
LABELS = np.array([0, 2], np.int32)
# Weak-view confidences: ~0.9999, ~0.909, 1/3, ~0.9993, ~0.9526, ~0.9465.
WEAK = np.array(
    [[10.0, 0, 0], [3.0, 0, 0], [0.0, 0, 0], [0, 8.0, 0], [0, 0, 3.7], [0, 0, 3.57]], np.float32
)
STRONG = np.array(
    [[1.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [0.5, 0.5, 0], [0, 1.0, 1.0], [2.0, 0, 0]],
    np.float32,
)


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.95, 0.999])
def test_exactly_confident_examples_count(threshold):
    loss, aux = fixmatch.fixmatch_loss(LABELED, LABELS, WEAK, STRONG, threshold=threshold)
    probs = softmax(WEAK)
    mask = probs.max(axis=1) >= threshold
    pseudo = probs.argmax(axis=1)
    unsup = np.mean(mask * cross_entropy(STRONG, pseudo))
    sup = np.mean(cross_entropy(LABELED, LABELS))
    np.testing.assert_allclose(float(aux.mask_rate), mask.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(aux.unsupervised_loss), unsup, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(aux.supervised_loss), sup, rtol=1e-5)
    np.testing.assert_allclose(float(loss), sup + unsup, rtol=1e-5)


def test_default_threshold_masks_the_crafted_batch():
    _, aux = fixmatch.fixmatch_loss(LABELED, LABELS, WEAK, STRONG)
    # Rows 0, 3 and 4 reach 0.95; rows 1, 2 and 5 (0.909, 1/3, 0.9465) do not.
    assert float(aux.mask_rate) == pytest.approx(3 / 6)


def test_all_masked_loss_equals_supervised_part():
    weak = np.zeros((4, 3), np.float32) + np.array([0.0, 1.0, 2.0], np.float32)
    strong = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    loss, aux = fixmatch.fixmatch_loss(LABELED, LABELS, weak, strong, threshold=0.95)
    assert float(aux.mask_rate) == 0.0
    assert float(aux.unsupervised_loss) == 0.0
    np.testing.assert_allclose(float(loss), np.mean(cross_entropy(LABELED, LABELS)), rtol=1e-6)


@pytest.mark.parametrize("lambda_u", [0.0, 0.5, 1.0, 3.0])
def test_lambda_u_scales_the_unsupervised_part(lambda_u):
    loss, aux = fixmatch.fixmatch_loss(
        LABELED, LABELS, WEAK, STRONG, threshold=0.9, lambda_u=lambda_u
    )
    _, aux_one = fixmatch.fixmatch_loss(LABELED, LABELS, WEAK, STRONG, threshold=0.9)
    assert float(aux.unsupervised_loss) > 0
    np.testing.assert_allclose(float(aux.unsupervised_loss), float(aux_one.unsupervised_loss))
    np.testing.assert_allclose(
        float(loss), float(aux.supervised_loss) + lambda_u * float(aux.unsupervised_loss), rtol=1e-6
    )


def test_pseudo_label_accuracy_over_masked_examples():
    # Masked in at 0.95: rows 0 (pseudo 0), 3 (pseudo 1), 4 (pseudo 2).
    truth = np.array([0, 0, 0, 2, 2, 2], np.int32)
    _, aux = fixmatch.fixmatch_loss(LABELED, LABELS, WEAK, STRONG, unlabeled_labels=truth)
    assert float(aux.pseudo_label_accuracy) == pytest.approx(2 / 3)
    _, aux_none = fixmatch.fixmatch_loss(LABELED, LABELS, WEAK, STRONG)
    assert aux_none.pseudo_label_accuracy is None


def test_gradients_finite_and_none_through_weak_view():
    def loss_fn(labeled, weak, strong):
        return fixmatch.fixmatch_loss(labeled, jnp.asarray(LABELS), weak, strong, threshold=0.9)[0]

    grads = jax.jit(jax.grad(loss_fn, argnums=(0, 1, 2)))(
        jnp.asarray(LABELED), jnp.asarray(WEAK), jnp.asarray(STRONG)
    )
    g_labeled, g_weak, g_strong = (np.asarray(g) for g in grads)
    assert np.isfinite(g_labeled).all() and np.isfinite(g_strong).all()
    assert np.abs(g_labeled).sum() > 0 and np.abs(g_strong).sum() > 0
    np.testing.assert_array_equal(g_weak, 0.0)
    # Masked-out rows (confidence below 0.9: rows 2) get no gradient on the strong view.
    np.testing.assert_array_equal(g_strong[2], 0.0)


def test_jit_matches_eager():
    fn = jax.jit(lambda *a: fixmatch.fixmatch_loss(*a, threshold=0.9, lambda_u=2.0))
    loss_jit, aux_jit = fn(LABELED, LABELS, WEAK, STRONG)
    loss, aux = fixmatch.fixmatch_loss(LABELED, LABELS, WEAK, STRONG, threshold=0.9, lambda_u=2.0)
    np.testing.assert_allclose(float(loss_jit), float(loss), rtol=1e-6)
    np.testing.assert_allclose(float(aux_jit.mask_rate), float(aux.mask_rate))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": np.array([0, 3])}, "labels must lie in"),
        ({"labels": np.array([0.0, 1.0])}, "integer class ids"),
        ({"labels": np.array([0, 1, 2])}, r"labels must have shape \(2,\)"),
        ({"logits_strong": STRONG[:5]}, "same shape"),
        ({"logits_weak": WEAK[:, :2], "logits_strong": STRONG[:, :2]}, "class columns"),
        ({"logits_labeled": LABELED[0]}, "logits_labeled must be a"),
        ({"threshold": 1.5}, "threshold"),
        ({"lambda_u": -1.0}, "lambda_u"),
        ({"unlabeled_labels": np.array([0, 1])}, "unlabeled_labels must have shape"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {
        "logits_labeled": LABELED,
        "labels": LABELS,
        "logits_weak": WEAK,
        "logits_strong": STRONG,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fixmatch.fixmatch_loss(**args)
