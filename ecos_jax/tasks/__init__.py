"""Task-level losses and labelers for the three downstream tasks of ECOS.

- (a) selective manual labeling: `fixmatch_loss` (FixMatch semi-supervised loss);
- (b) adaptive model compression: `distillation_loss` (Hinton knowledge distillation);
- (c) automated client labeling: `knn_votes`, `private_knn_labels`,
  `release_knn_labels`, `private_knn_release` and `calibrate_vote_sigma` (Private-kNN,
  whose release is composed in a `PrivacyLedger`); `subsampled_knn_labels`,
  `subsampled_votes`, `answer_releases` and `calibrate_knn_noise` (Private-kNN as
  published: a Poisson subsample per query, noisy screening, noisy argmax).

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575, Sec. 5.
"""

from ecos_jax.tasks.distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, distillation_loss
from ecos_jax.tasks.fixmatch import (
    DEFAULT_LAMBDA_U,
    DEFAULT_THRESHOLD,
    FixMatchAux,
    cross_entropy,
    fixmatch_loss,
)
from ecos_jax.tasks.private_knn import (
    PRIVATE_KNN_SENSITIVITY,
    calibrate_vote_sigma,
    knn_votes,
    private_knn_labels,
    private_knn_release,
    release_knn_labels,
)
from ecos_jax.tasks.subsampled_knn import (
    NO_LABEL,
    KnnAnswers,
    answer_releases,
    calibrate_knn_noise,
    subsampled_knn_labels,
    subsampled_votes,
)

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_LAMBDA_U",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_THRESHOLD",
    "NO_LABEL",
    "PRIVATE_KNN_SENSITIVITY",
    "FixMatchAux",
    "KnnAnswers",
    "answer_releases",
    "calibrate_knn_noise",
    "calibrate_vote_sigma",
    "cross_entropy",
    "distillation_loss",
    "fixmatch_loss",
    "knn_votes",
    "private_knn_labels",
    "private_knn_release",
    "release_knn_labels",
    "subsampled_knn_labels",
    "subsampled_votes",
]
