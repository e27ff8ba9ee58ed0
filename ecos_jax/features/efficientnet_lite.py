"""EfficientNet-Lite0 (ImageNet) as a Flax module: the default frozen extractor φ.

EfficientNet-Lite is EfficientNet-B0 made quantisation friendly: ReLU6 instead of
swish, no squeeze-excite, a fixed 32-channel stem and 1280-channel head. The ported
checkpoint was trained in TensorFlow, hence TF SAME padding, batch-norm eps 1e-3 (folded
into the convolutions at load time) and the input scaling `(x − 127) / 128`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ecos_jax.features.layers import PretrainedBackbone, Stage

__all__ = [
    "EFFICIENTNET_LITE0_BN_EPS",
    "EFFICIENTNET_LITE0_RESOLUTION",
    "EFFICIENTNET_LITE0_STAGES",
    "EfficientNetLite0",
]

#: (expand_ratio, out_features, repeats, first_stride, kernel_size) for Lite0.
EFFICIENTNET_LITE0_STAGES: tuple[Stage, ...] = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)
#: Batch-norm epsilon of the checkpoint (TensorFlow's default).
EFFICIENTNET_LITE0_BN_EPS = 1e-3
EFFICIENTNET_LITE0_RESOLUTION = PretrainedBackbone.resolution


class EfficientNetLite0(PretrainedBackbone):
    """EfficientNet-Lite0 on NHWC images with pixel values in [0, 255] (TF SAME padding).

    Attributes and call as `ecos_jax.features.layers.PretrainedBackbone`.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575) use a frozen ImageNet
      EfficientNet as the shared feature extractor φ.
    """

    stages = EFFICIENTNET_LITE0_STAGES
    padding = "same"

    @staticmethod
    def normalize(images_NHWC: jax.Array) -> jax.Array:
        """Maps pixel values in [0, 255] to the checkpoint's input range: (x − 127) / 128."""
        return (images_NHWC.astype(jnp.float32) - 127.0) / 128.0
