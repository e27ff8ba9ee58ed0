"""EfficientNet-Lite0 (ImageNet) as a Flax module: the default frozen extractor φ.

EfficientNet-Lite is EfficientNet-B0 made quantisation friendly: ReLU6 instead of
swish, no squeeze-excite, a fixed 32-channel stem and 1280-channel head. The ported
checkpoint was trained in TensorFlow, hence TF SAME padding, batch-norm eps 1e-3 (folded
into the convolutions at load time) and the input scaling `(x − 127) / 128`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ecos_jax.features.layers import MobileBackbone, Stage

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
#: Native input resolution.
EFFICIENTNET_LITE0_RESOLUTION = 224


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 on NHWC images with pixel values in [0, 255].

    Attributes:
      num_classes: classifier width (1000 for the ImageNet checkpoint).
      dtype: computation dtype (parameters stay float32); float32 is the fast one on CPU.

    Call: `module.apply(variables, images_NHWC, return_logits=False)` → pooled features
    [N, 1280] float32, or `(features, logits [N, num_classes])` with `return_logits=True`.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575) use a frozen ImageNet
      EfficientNet as the shared feature extractor φ.
    """

    num_classes: int = 1000
    dtype: jnp.dtype = jnp.float32

    feature_dim = 1280
    resolution = EFFICIENTNET_LITE0_RESOLUTION

    @staticmethod
    def normalize(images_NHWC: jax.Array) -> jax.Array:
        """Maps pixel values in [0, 255] to the checkpoint's input range: (x − 127) / 128."""
        return (images_NHWC.astype(jnp.float32) - 127.0) / 128.0

    @nn.compact
    def __call__(self, images_NHWC: jax.Array, *, return_logits: bool = False):
        backbone = MobileBackbone(
            stages=EFFICIENTNET_LITE0_STAGES,
            num_classes=self.num_classes,
            padding="same",
            dtype=self.dtype,
            name="backbone",
        )
        return backbone(self.normalize(images_NHWC), return_logits=return_logits)
