"""Data for ECOS: the offline multi-domain Digits benchmark (TFDS builders), catalog
adapters and the client/cloud split API.

References:
  Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575).
"""

from ecos_jax.data.builder import DigitsDomainConfig, EcosDigits, domain_config, prepare_domain
from ecos_jax.data.catalog import (
    DOMAINNET_CLASSES,
    DOMAINNET_DOMAINS,
    CatalogDatasetMissingError,
    prepared_version_dir,
)
from ecos_jax.data.domains import (
    ALL_DOMAINS,
    DIGIT_DOMAINS,
    DOMAIN_SPECS,
    UNRELATED_DOMAINS,
    DomainArrays,
    generate_domain,
)
from ecos_jax.data.paths import DATA_DIR_ENV, resolve_data_dir
from ecos_jax.data.sources import SourceUnavailableError
from ecos_jax.data.splits import DATASETS, REGIMES, LabeledImages, PoolOracle, Split, load_split

__all__ = [
    "ALL_DOMAINS",
    "DATASETS",
    "DATA_DIR_ENV",
    "DIGIT_DOMAINS",
    "DOMAINNET_CLASSES",
    "DOMAINNET_DOMAINS",
    "DOMAIN_SPECS",
    "REGIMES",
    "UNRELATED_DOMAINS",
    "CatalogDatasetMissingError",
    "DigitsDomainConfig",
    "DomainArrays",
    "EcosDigits",
    "LabeledImages",
    "PoolOracle",
    "SourceUnavailableError",
    "Split",
    "domain_config",
    "generate_domain",
    "load_split",
    "prepare_domain",
    "prepared_version_dir",
    "resolve_data_dir",
]
