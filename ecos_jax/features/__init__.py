"""Frozen feature extractors φ shared by the ECOS client and cloud.

References:
  Hong, Lyu, Zhou, Spranger. ECOS, NeurIPS 2022. arXiv:2210.12575.
"""

from ecos_jax.features.efficientnet_lite import EfficientNetLite0
from ecos_jax.features.mobilenet_v2 import MobileNetV2
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
    "MobileNetV2",
    "UnsafeCheckpointError",
    "WeightsNotFoundError",
    "WrongWeightsError",
    "load_pretrained",
    "load_torch_checkpoint",
    "weight_file",
]
