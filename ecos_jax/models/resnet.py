"""ResNet-18 for small images (32–64 px): a 3×3 stem and no stem max-pool."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ecos_jax.models.digits_cnn import channels, scale_images

__all__ = ["BasicBlock", "ResNet18"]


class BasicBlock(nn.Module):
    """Two 3×3 convs with BatchNorm and an identity (or 1×1 projection) shortcut."""

    channels: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        s = (self.strides, self.strides)
        y = nn.Conv(self.channels, (3, 3), s, use_bias=False, name="conv1")(x)
        y = nn.relu(norm("bn1")(y))
        y = nn.Conv(self.channels, (3, 3), use_bias=False, name="conv2")(y)
        y = norm("bn2")(y)
        if x.shape[-1] != self.channels or self.strides != 1:
            x = nn.Conv(self.channels, (1, 1), s, use_bias=False, name="proj")(x)
            x = norm("bn_proj")(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """ResNet-18: basic blocks [2, 2, 2, 2] at 64·width, 128·width, 256·width, 512·width.

    Input: images [N, H, W, C] with values in [0, 255], uint8 or float (scaled to
    [-1, 1] inside). Output: logits [N, num_classes], or with `features=True` the pooled
    features [N, 512·width] before the head. The stem is one 3×3 conv (stride 1)
    as in CIFAR ResNets, so 32–64 px inputs keep spatial detail.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
      He et al. "Deep Residual Learning for Image Recognition." CVPR 2016.
    """

    num_classes: int = 10
    width: float = 1.0

    @nn.compact
    def __call__(self, images_NHWC: jax.Array, *, train: bool, features: bool = False) -> jax.Array:
        ch = lambda base: channels(base, self.width)
        x = nn.Conv(ch(64), (3, 3), use_bias=False, name="stem")(scale_images(images_NHWC))
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn_stem")(x))
        for stage, base in enumerate((64, 128, 256, 512)):
            for block in range(2):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(ch(base), strides, name=f"stage{stage}_block{block}")(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        if features:
            return x
        return nn.Dense(self.num_classes, name="head")(x)
