"""Classifiers for the downstream tasks: FedBN's digit CNN and a small-image ResNet-18.

Every model takes images [N, H, W, C] in [0, 255] and `train=` (BatchNorm mode) and
returns logits [N, num_classes]. `get_model(name, num_classes=..., width=...)` builds one
by the name a config gives.
"""

from ecos_jax.models.digits_cnn import DigitsCNN, scale_images
from ecos_jax.models.registry import MODELS, get_model
from ecos_jax.models.resnet import BasicBlock, ResNet18

__all__ = ["MODELS", "BasicBlock", "DigitsCNN", "ResNet18", "get_model", "scale_images"]
