"""FixMatch semi-supervised loss for task (a), selective manual labeling.

The selected subset `S` is labeled; the rest of the pool is unlabeled. For each unlabeled
example the model sees a weakly and a strongly augmented view. The weak view's prediction,
taken as a constant (`stop_gradient`), becomes a hard pseudo-label when its confidence
reaches `threshold`; the strong view is trained towards it with cross-entropy:

  loss = CE(labeled) + λ_u · (1/U) Σ_u 1[max p_weak(u) ≥ τ] · CE(p_strong(u), argmax p_weak(u))

The unsupervised mean runs over all `U` unlabeled examples (masked ones contribute 0), as
in the FixMatch paper, so a low mask rate shrinks the unsupervised term.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 5 (task a).
  Sohn et al. "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
  Confidence." NeurIPS 2020.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ecos_jax._validate import check_labels, check_logits, finite_in_range

__all__ = [
    "DEFAULT_LAMBDA_U",
    "DEFAULT_THRESHOLD",
    "FixMatchAux",
    "cross_entropy",
    "fixmatch_loss",
]

#: Confidence threshold τ and unsupervised weight λ_u used by the spec (and FixMatch).
DEFAULT_THRESHOLD = 0.95
DEFAULT_LAMBDA_U = 1.0


class FixMatchAux(NamedTuple):
    """Diagnostics of one FixMatch loss evaluation (all float32 scalars).

    Attributes:
      supervised_loss: mean CE over the labeled batch.
      unsupervised_loss: (1/U) Σ mask · CE(strong, pseudo-label), before the λ_u weight.
      mask_rate: fraction of unlabeled examples whose weak confidence is >= threshold.
      pseudo_label_accuracy: among the masked-in examples, the fraction whose pseudo-label
        equals `unlabeled_labels` (0 when none is masked in); None when those labels are
        not given.
    """

    supervised_loss: jax.Array
    unsupervised_loss: jax.Array
    mask_rate: jax.Array
    pseudo_label_accuracy: jax.Array | None


def cross_entropy(logits_BxL: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels, [B] float."""
    log_probs_BxL = jax.nn.log_softmax(logits_BxL, axis=-1)
    return -jnp.take_along_axis(log_probs_BxL, labels_B[:, None], axis=-1)[:, 0]


def fixmatch_loss(
    logits_labeled: jax.Array,
    labels: jax.Array,
    logits_weak: jax.Array,
    logits_strong: jax.Array,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    lambda_u: float = DEFAULT_LAMBDA_U,
    unlabeled_labels: jax.Array | None = None,
) -> tuple[jax.Array, FixMatchAux]:
    """FixMatch loss: supervised CE plus λ_u times the masked pseudo-label CE.

    Pure `jnp`; jit it with the logits and labels as traced arguments and `threshold`,
    `lambda_u` as Python numbers (closed over or static). Gradients do not flow into
    `logits_weak` (the pseudo-labels are constants).

    Args:
      logits_labeled: [B, L] logits of the labeled batch.
      labels: [B] integer class ids in [0, L).
      logits_weak: [U, L] logits of the weakly augmented unlabeled batch.
      logits_strong: [U, L] logits of the strongly augmented views of the same examples.
      threshold: confidence τ in [0, 1]; an unlabeled example counts when its largest weak
        softmax probability is >= τ. Default 0.95.
      lambda_u: weight λ_u >= 0 of the unsupervised term. Default 1.
      unlabeled_labels: optional [U] true labels of the unlabeled batch, only used for the
        `pseudo_label_accuracy` diagnostic (never for the loss).

    Returns:
      `(loss, aux)`: the scalar float32 loss `aux.supervised_loss + lambda_u *
      aux.unsupervised_loss` and a `FixMatchAux`.

    Example:
      >>> import jax.numpy as jnp
      >>> strong = jnp.zeros((2, 3))
      >>> weak = jnp.array([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # confident, unsure
      >>> loss, aux = fixmatch_loss(jnp.zeros((1, 3)), jnp.array([0]), weak, strong)
      >>> float(aux.mask_rate)
      0.5

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5, task (a); Sohn et al., FixMatch,
      NeurIPS 2020, Eq. (4).
    """
    logits_labeled = check_logits(logits_labeled, "logits_labeled")
    num_classes = logits_labeled.shape[1]
    logits_weak = check_logits(logits_weak, "logits_weak", num_classes=num_classes)
    logits_strong = check_logits(logits_strong, "logits_strong", num_classes=num_classes)
    if logits_weak.shape != logits_strong.shape:
        raise ValueError(
            "logits_weak and logits_strong must be two views of the same unlabeled batch "
            f"(same shape), got {logits_weak.shape} and {logits_strong.shape}."
        )
    if logits_labeled.shape[0] < 1 or logits_weak.shape[0] < 1:
        raise ValueError(
            "the labeled and unlabeled batches must each hold at least one example, got "
            f"shapes {logits_labeled.shape} and {logits_weak.shape}."
        )
    labels = check_labels(labels, "labels", length=logits_labeled.shape[0], num_classes=num_classes)
    if unlabeled_labels is not None:
        unlabeled_labels = check_labels(
            unlabeled_labels,
            "unlabeled_labels",
            length=logits_weak.shape[0],
            num_classes=num_classes,
        )
    threshold = finite_in_range(threshold, "threshold", low=0.0, high=1.0)
    lambda_u = finite_in_range(lambda_u, "lambda_u", low=0.0)

    supervised = jnp.mean(cross_entropy(logits_labeled.astype(jnp.float32), labels))
    probs_UxL = jax.nn.softmax(jax.lax.stop_gradient(logits_weak).astype(jnp.float32), axis=-1)
    confidence_U = jnp.max(probs_UxL, axis=-1)
    pseudo_U = jnp.argmax(probs_UxL, axis=-1)
    mask_U = (confidence_U >= threshold).astype(jnp.float32)
    unsupervised = jnp.mean(mask_U * cross_entropy(logits_strong.astype(jnp.float32), pseudo_U))
    loss = supervised + lambda_u * unsupervised

    accuracy = None
    if unlabeled_labels is not None:
        correct_U = (pseudo_U == unlabeled_labels).astype(jnp.float32)
        accuracy = jnp.sum(mask_U * correct_U) / jnp.maximum(jnp.sum(mask_U), 1.0)
    aux = FixMatchAux(
        supervised_loss=supervised,
        unsupervised_loss=unsupervised,
        mask_rate=jnp.mean(mask_U),
        pseudo_label_accuracy=accuracy,
    )
    return loss, aux
