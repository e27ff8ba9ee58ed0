"""Config blocks every experiment shares: the image data, the feature extractor, ECOS.

Not a config file to run; the experiment configs build on these.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def image_data() -> ml_collections.ConfigDict:
    """Real images (any source but "synthetic"), featurised by the `features` block."""
    img = ml_collections.ConfigDict()
    img.regime = "id+ood"
    img.split_seed = 0
    img.caps = 4000  # examples per domain read from each train split
    img.include_unrelated = True  # Fashion-MNIST and animal silhouettes: junk in the pool
    img.build_train = 0  # examples per domain to build; 0 = the full build
    img.build_test = 0
    img.data_dir = config_dict.placeholder(str)  # None: $ECOS_DATA_DIR or the cache
    return img


def features() -> ml_collections.ConfigDict:
    """φ: EfficientNet-Lite0 at 64 px (measured: ECOS ID fraction 0.45 at 64 px vs 0.23 at 32)."""
    f = ml_collections.ConfigDict()
    f.extractor = "efficientnet_lite0"
    f.resolution = 64
    f.batch_size = 256
    f.dim = 64  # width of the fitted extractors (pixels_pca, small_cnn)
    f.cache = True
    return f


def ecos() -> ml_collections.ConfigDict:
    """The ECOS round and selection: R=50 Voronoi scores, κ=1.5, accounted at δ=1e-5,
    simulated (keyed) discrete Gaussian noise."""
    e = ml_collections.ConfigDict()
    e.num_clusters = 50
    e.kmeans_iters = 100
    e.method = "voronoi"
    e.m = config_dict.placeholder(int)  # top_m: votes per sample
    e.radius = config_dict.placeholder(float)  # radius: the public radius (all centroids)
    e.max_votes = config_dict.placeholder(int)  # radius: cap on votes per sample
    # The client's noise: "simulation" (keyed by the seed, reproducible, what experiments
    # measure) or "secure" (OpenDP, OS entropy: what a deployment uses; not reproducible).
    e.randomness = "simulation"
    e.delta = 1e-5
    e.accountant = "rdp"
    e.kappa = 1.5
    e.threshold_multiple = config_dict.placeholder(float)
    e.top_k = config_dict.placeholder(int)
    return e


def trainer(*, model: str, width: float, num_steps: int, warmup_steps: int):
    """A model and how it trains: batch 64, SGD at lr 0.05 (linear warmup, then cosine),
    weight decay 5e-4 on the kernels, weak (pad-and-crop) augmentation."""
    t = ml_collections.ConfigDict()
    t.model = model  # a name in ecos_jax.models.MODELS
    t.width = width
    t.num_steps = num_steps
    t.batch_size = 64
    t.optimizer = "sgd"
    t.learning_rate = 0.05
    t.warmup_steps = warmup_steps
    t.weight_decay = 5e-4
    t.augment = "weak"
    return t


def make_full_protocol(t: ml_collections.ConfigDict) -> None:
    """The `trainer` block `t` at the full protocol: FedBN's CNN at width 1, 3,000 steps of
    batch 64 with 150 warmup steps, FixMatch with μ = 7 (Sohn et al.'s ratio)."""
    t.update(width=1.0, num_steps=3000, warmup_steps=150)
    t.fixmatch.unlabeled_ratio = 7


def make_smoke_trainer(t: ml_collections.ConfigDict, *, width: float, num_steps: int) -> None:
    """Shrinks the `trainer` block `t` for the smoke runs: `width`, `num_steps`, batch 16."""
    t.update(width=width, num_steps=num_steps, batch_size=16, warmup_steps=1)


def add_selection_settings(config: ml_collections.ConfigDict) -> None:
    """The selection fields every experiment shares: L2 distance, the Oracle's κ, and the
    row chunk of the distance computations."""
    config.metric = "l2"  # or "cosine" (1 − cos on normalised features)
    config.oracle_kappa = 1.5
    config.chunk_size = 1024


def make_smoke(config: ml_collections.ConfigDict) -> None:
    """Shrinks `config`'s data, features and ECOS round to the tiny build CI runs (seconds):
    150 images per domain from a 300/60 build, φ at 32 px uncached, R=8."""
    img = config.data.images
    img.caps = 150
    img.build_train = 300
    img.build_test = 60
    config.features.cache = False
    config.features.resolution = 32
    config.ecos.num_clusters = 8
    config.ecos.kmeans_iters = 10


def check_variant(variant: str | None, variants: tuple[str, ...]) -> str:
    """`variant` stripped ("default" when None), after checking it is one of `variants`."""
    variant = (variant or "default").strip()
    if variant not in variants:
        raise ValueError(f"unknown config variant {variant!r}; use one of {variants}.")
    return variant


def selection_study(variant: str) -> ml_collections.ConfigDict:
    """The start of a selection study's config (no training): the Digits images through
    φ, one ECOS round at ε = 0.58, and the shared selection fields."""
    config = ml_collections.ConfigDict()
    config.variant = variant
    config.data = ml_collections.ConfigDict()
    # "digits": the offline multi-domain Digits benchmark (ecos_jax.data); "tfds_digits" and
    # "domainnet": catalog datasets the user has prepared; "synthetic": Gaussian mixtures.
    config.data.source = "digits"
    config.data.images = image_data()
    config.features = features()
    config.ecos = ecos()
    config.ecos.target_epsilon = 0.58
    add_selection_settings(config)
    return config
