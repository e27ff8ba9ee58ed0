"""MobileNetV2 (torchvision's ImageNet checkpoint) as a Flax module, an alternative φ.

Symmetric `k // 2` padding, batch-norm eps 1e-5 (folded into the convolutions at load
time), ImageNet mean/std input normalisation.

References:
  Sandler, Howard, Zhu, Zhmoginov, Chen. "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks." CVPR 2018 (Table 2: the stages below).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ecos_jax.features.layers import PretrainedBackbone, Stage

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MOBILENET_V2_BN_EPS",
    "MOBILENET_V2_RESOLUTION",
    "MOBILENET_V2_STAGES",
    "MobileNetV2",
]

#: Width 1.0, as the paper's Table 2 writes it: (t expansion, c channels, n repeats,
#: s first stride); every depthwise kernel is 3×3.
_PAPER_TABLE = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: (expand_ratio, out_features, repeats, first_stride, kernel_size).
MOBILENET_V2_STAGES: tuple[Stage, ...] = tuple((t, c, n, s, 3) for t, c, n, s in _PAPER_TABLE)
#: Batch-norm epsilon of the checkpoint (PyTorch's default).
MOBILENET_V2_BN_EPS = 1e-5
MOBILENET_V2_RESOLUTION = PretrainedBackbone.resolution
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MobileNetV2(PretrainedBackbone):
    """MobileNetV2 (width 1.0) on NHWC images with pixel values in [0, 255].

    Attributes and call as `ecos_jax.features.layers.PretrainedBackbone`.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): the shared frozen extractor φ.
    """

    stages = MOBILENET_V2_STAGES
    padding = "symmetric"

    @staticmethod
    def normalize(images_NHWC: jax.Array) -> jax.Array:
        """Maps pixel values in [0, 255] to ImageNet-standardised inputs."""
        mean = jnp.asarray(IMAGENET_MEAN, jnp.float32).reshape(1, 1, 1, 3) * 255.0
        std = jnp.asarray(IMAGENET_STD, jnp.float32).reshape(1, 1, 1, 3) * 255.0
        return (images_NHWC.astype(jnp.float32) - mean) / std
