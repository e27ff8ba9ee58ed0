"""MobileNetV2 (torchvision's ImageNet checkpoint) as a Flax module, an alternative φ.

Symmetric `k // 2` padding, batch-norm eps 1e-5 (folded into the convolutions at load
time), ImageNet mean/std input normalisation.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ecos_jax.features.layers import MobileBackbone, Stage

#: (expand_ratio, out_features, repeats, first_stride, kernel_size), width 1.0.
MOBILENET_V2_STAGES: tuple[Stage, ...] = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 32, 3, 2, 3),
    (6, 64, 4, 2, 3),
    (6, 96, 3, 1, 3),
    (6, 160, 3, 2, 3),
    (6, 320, 1, 1, 3),
)
#: Batch-norm epsilon of the checkpoint (PyTorch's default).
MOBILENET_V2_BN_EPS = 1e-5
#: Native input resolution.
MOBILENET_V2_RESOLUTION = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) on NHWC images with pixel values in [0, 255].

    Attributes:
      num_classes: classifier width (1000 for the ImageNet checkpoint).
      dtype: computation dtype (parameters stay float32).

    Call: `module.apply(variables, images_NHWC, return_logits=False)` → pooled features
    [N, 1280] float32, or `(features, logits [N, num_classes])` with `return_logits=True`.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): the shared frozen extractor φ.
    """

    num_classes: int = 1000
    dtype: jnp.dtype = jnp.float32

    feature_dim = 1280
    resolution = MOBILENET_V2_RESOLUTION

    @staticmethod
    def normalize(images_NHWC: jax.Array) -> jax.Array:
        """Maps pixel values in [0, 255] to ImageNet-standardised inputs."""
        mean = jnp.asarray(IMAGENET_MEAN, jnp.float32).reshape(1, 1, 1, 3) * 255.0
        std = jnp.asarray(IMAGENET_STD, jnp.float32).reshape(1, 1, 1, 3) * 255.0
        return (images_NHWC.astype(jnp.float32) - mean) / std

    @nn.compact
    def __call__(self, images_NHWC: jax.Array, *, return_logits: bool = False):
        backbone = MobileBackbone(
            stages=MOBILENET_V2_STAGES,
            num_classes=self.num_classes,
            padding="symmetric",
            dtype=self.dtype,
            name="backbone",
        )
        return backbone(self.normalize(images_NHWC), return_logits=return_logits)
