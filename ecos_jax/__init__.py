"""ecos_jax: ECOS (Efficient Collaborative Open-source Sampling) in JAX.

The cloud clusters its pool features and sends the centroids; the client answers with
differentially private coverage scores, one number per centroid; the cloud selects a
proximal and diverse subset of its pool.

The package exports its algorithm modules (`ecos_jax.kmeans`, `coverage`, `sampling`, ...)
and the protocol-level names below. The sub-packages `ecos_jax.data` (the offline
benchmark; needs the `data` extra), `features` (pretrained extractors), `models`, `tasks`
and `train`, and the modules `audit` (needs the `audit` extra) and `feature_benchmark`
are imported on demand.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
  Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
"""

from ecos_jax import (
    baselines,
    canonical,
    communication,
    costs,
    coverage,
    distances,
    distributed,
    k_center,
    keys,
    kmeans,
    messages,
    metrics,
    noise,
    privacy,
    protocol,
    roles,
    sampling,
    scaling,
    selection,
    sharded_selection,
    sharding,
    subsampling,
    synthetic,
    votes,
)
from ecos_jax.coverage import CoverageScores
from ecos_jax.messages import CentroidsMessage, ScoresMessage
from ecos_jax.privacy import DiscreteGaussianRelease, calibrate_sigma, epsilons, privatize
from ecos_jax.protocol import ecos_round, run_protocol
from ecos_jax.roles import Client, Cloud, client_respond
from ecos_jax.sampling import ecos_select

__version__ = "0.1.0"

__all__ = [
    # The protocol: its two messages, its two roles, one round.
    "CentroidsMessage",
    "Client",
    "Cloud",
    "CoverageScores",
    "DiscreteGaussianRelease",
    "ScoresMessage",
    "baselines",
    "calibrate_sigma",
    "canonical",
    "client_respond",
    "communication",
    "costs",
    "coverage",
    "distances",
    "distributed",
    "ecos_round",
    "ecos_select",
    "epsilons",
    "k_center",
    "keys",
    "kmeans",
    "messages",
    "metrics",
    "noise",
    "privacy",
    "privatize",
    "protocol",
    "roles",
    "run_protocol",
    "sampling",
    "scaling",
    "selection",
    "sharded_selection",
    "sharding",
    "subsampling",
    "synthetic",
    "votes",
]
