"""ecos_jax: ECOS (Efficient Collaborative Open-source Sampling) in JAX.

The cloud clusters its pool features and sends the centroids; the client answers with
differentially private coverage scores, one number per centroid; the cloud selects a
proximal and diverse subset of its pool. Sub-packages `ecos_jax.data` (the offline
benchmark) and `ecos_jax.features` (pretrained extractors) are imported on demand.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
  Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
"""

from ecos_jax import noise
from ecos_jax.coverage import (
    CoverageScores,
    coverage_scores,
    coverage_sensitivity,
    radius_scores,
    top_m_scores,
    voronoi_scores,
)
from ecos_jax.distances import normalize_rows, pairwise_distance, sq_euclidean

# The function `kmeans` is not re-exported: it would shadow the module `ecos_jax.kmeans`.
from ecos_jax.kmeans import KMeansResult, assign_to_centroids, kmeans_plusplus_init
from ecos_jax.metrics import id_fraction, proximity
from ecos_jax.privacy import (
    DiscreteGaussianRelease,
    PrivacyLedger,
    calibrate_sigma,
    epsilon,
    epsilons,
    privatize,
)
from ecos_jax.protocol import (
    CentroidsMessage,
    Client,
    Cloud,
    PrivacyReport,
    ProtocolResult,
    ScoresMessage,
    Transcript,
    client_respond,
    comparison_bytes,
    privacy_report,
    run_protocol,
)
from ecos_jax.sampling import (
    allocate_budget,
    ecos_select,
    filter_scores,
    full_pool_select,
    greedy_k_center,
    k_center_select,
    oracle_select,
    random_select,
)
from ecos_jax.sharding import (
    make_mesh,
    sharded_assign_to_centroids,
    sharded_coverage_scores,
    sharded_kmeans,
)

__version__ = "0.1.0"

__all__ = [
    "CentroidsMessage",
    "Client",
    "Cloud",
    "CoverageScores",
    "DiscreteGaussianRelease",
    "KMeansResult",
    "PrivacyLedger",
    "PrivacyReport",
    "ProtocolResult",
    "ScoresMessage",
    "Transcript",
    "allocate_budget",
    "assign_to_centroids",
    "calibrate_sigma",
    "client_respond",
    "comparison_bytes",
    "coverage_scores",
    "coverage_sensitivity",
    "ecos_select",
    "epsilon",
    "epsilons",
    "filter_scores",
    "full_pool_select",
    "greedy_k_center",
    "id_fraction",
    "k_center_select",
    "kmeans_plusplus_init",
    "make_mesh",
    "noise",
    "normalize_rows",
    "oracle_select",
    "pairwise_distance",
    "privacy_report",
    "privatize",
    "proximity",
    "radius_scores",
    "random_select",
    "run_protocol",
    "sharded_assign_to_centroids",
    "sharded_coverage_scores",
    "sharded_kmeans",
    "sq_euclidean",
    "top_m_scores",
    "voronoi_scores",
]
