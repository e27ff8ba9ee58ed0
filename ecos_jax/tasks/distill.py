"""Knowledge-distillation loss for task (b), adaptive model compression.

A large teacher trained on the labeled pool is distilled into a small student on the
selected subset `S`. The soft term is the KL divergence between the teacher's and the
student's softmax at temperature `T`, multiplied by `T²` so its gradient scale does not
shrink as `T` grows:

  soft = T² · (1/B) Σ_b KL(softmax(t_b / T) || softmax(s_b / T))
  loss = soft                                       (no labels: the spec's default)
  loss = α · soft + (1 − α) · (1/B) Σ_b CE(s_b, y_b) (with hard labels y)

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 5 (task b).
  Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network." 2015,
  arXiv:1503.02531.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ecos_jax._validate import check_labels, check_logits, finite_in_range
from ecos_jax.tasks.fixmatch import cross_entropy

__all__ = ["DEFAULT_ALPHA", "DEFAULT_TEMPERATURE", "distillation_loss"]

#: Softening temperature of the spec (task b).
DEFAULT_TEMPERATURE = 4.0
#: Weight of the soft (KL) term when hard labels are mixed in, as commonly used with T=4.
DEFAULT_ALPHA = 0.9


def distillation_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    labels: jax.Array | None = None,
    alpha: float | None = None,
) -> jax.Array:
    """Hinton distillation loss: `T² · KL(teacher_T || student_T)`, optionally mixed with CE.

    The teacher logits are treated as constants (`stop_gradient`). Pure `jnp`; jit it with
    the logits (and labels) traced and `temperature`, `alpha` as Python numbers.

    Args:
      student_logits: [B, L] logits of the student.
      teacher_logits: [B, L] logits of the teacher on the same examples.
      temperature: softening temperature `T` > 0. Default 4 (the spec's default).
      labels: optional [B] integer hard labels in [0, L). Without them the loss is the soft
        term alone.
      alpha: weight in [0, 1] of the soft term when `labels` are given; the hard CE gets
        `1 − alpha`. Defaults to `DEFAULT_ALPHA` = 0.9 when `labels` are given; must be
        left None without labels.

    Returns:
      Scalar float32 loss, averaged over the batch; the soft term is 0 when the logits are
      equal.

    Example:
      >>> import jax.numpy as jnp
      >>> logits = jnp.array([[1.0, 2.0, 3.0]])
      >>> float(distillation_loss(logits, logits))
      0.0

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 5, task (b); Hinton et al. 2015,
      Sec. 2.
    """
    student_logits = check_logits(student_logits, "student_logits")
    teacher_logits = check_logits(
        teacher_logits, "teacher_logits", num_classes=student_logits.shape[1]
    )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must describe the same examples (same shape), "
            f"got {student_logits.shape} and {teacher_logits.shape}."
        )
    if student_logits.shape[0] < 1:
        raise ValueError(f"the batch must hold at least one example, got {student_logits.shape}.")
    temperature = finite_in_range(temperature, "temperature", low=0.0)
    if temperature == 0.0:
        raise ValueError("temperature must be > 0, got 0.0.")
    if labels is None:
        if alpha is not None:
            raise ValueError(
                f"alpha={alpha} weighs the soft term against hard-label CE, but labels is None; "
                "pass labels or leave alpha unset."
            )
    else:
        labels = check_labels(
            labels, "labels", length=student_logits.shape[0], num_classes=student_logits.shape[1]
        )
        alpha = DEFAULT_ALPHA if alpha is None else alpha
        alpha = finite_in_range(alpha, "alpha", low=0.0, high=1.0)

    student = student_logits.astype(jnp.float32)
    teacher = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
    log_p_teacher_BxL = jax.nn.log_softmax(teacher / temperature, axis=-1)
    log_p_student_BxL = jax.nn.log_softmax(student / temperature, axis=-1)
    kl_B = jnp.sum(jnp.exp(log_p_teacher_BxL) * (log_p_teacher_BxL - log_p_student_BxL), axis=-1)
    soft = temperature**2 * jnp.mean(kl_B)
    if labels is None:
        return soft
    hard = jnp.mean(cross_entropy(student, labels))
    return alpha * soft + (1.0 - alpha) * hard
