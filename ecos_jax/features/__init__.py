"""Frozen feature extractors φ shared by the ECOS client and cloud.

Every extractor maps uint8 images [N, H, W, 3] to float32 features [N, dim] and has a
`name` that identifies it in the feature cache:

* `extract_features` / `PretrainedExtractor`: EfficientNet-Lite0 (default) or
  MobileNetV2, ImageNet weights read from packaged torch checkpoints without torch;
* `fit_pixel_pca`: raw pixels + PCA (fast, for tests and smoke runs);
* `fit_hog_pca`: HOG descriptors + PCA (task (c)'s kNN space);
* `train_small_cnn`: a small CNN trained on labeled pool data.

References:
  Hong, Lyu, Zhou, Spranger. ECOS, NeurIPS 2022. arXiv:2210.12575.
"""

from ecos_jax.features.efficientnet_lite import EfficientNetLite0
from ecos_jax.features.extract import (
    FeatureCacheKey,
    FeatureExtractor,
    PretrainedExtractor,
    cached_features,
    default_cache_dir,
    extract_features,
)
from ecos_jax.features.hog import HogPCAExtractor, fit_hog_pca
from ecos_jax.features.mobilenet_v2 import MobileNetV2
from ecos_jax.features.pixels import PixelPCAExtractor, fit_pixel_pca
from ecos_jax.features.small_cnn import SmallCNN, SmallCNNExtractor, train_small_cnn
from ecos_jax.features.torch_pickle import UnsafeCheckpointError, load_torch_checkpoint
from ecos_jax.features.weights import (
    PRETRAINED_MODELS,
    WeightsNotFoundError,
    WrongWeightsError,
    load_pretrained,
    weight_file,
)

__all__ = [
    "PRETRAINED_MODELS",
    "EfficientNetLite0",
    "FeatureCacheKey",
    "FeatureExtractor",
    "HogPCAExtractor",
    "MobileNetV2",
    "PixelPCAExtractor",
    "PretrainedExtractor",
    "SmallCNN",
    "SmallCNNExtractor",
    "UnsafeCheckpointError",
    "WeightsNotFoundError",
    "WrongWeightsError",
    "cached_features",
    "default_cache_dir",
    "extract_features",
    "fit_hog_pca",
    "fit_pixel_pca",
    "load_pretrained",
    "load_torch_checkpoint",
    "train_small_cnn",
    "weight_file",
]
