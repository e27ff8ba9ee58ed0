"""The digit classifier of FedBN, used for the Digits benchmark's downstream tasks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ecos_jax.models.conv import Conv

__all__ = ["DigitsCNN", "max_pool_2x2", "scale_images"]


def scale_images(images_NHWC: jax.Array) -> jax.Array:
    """Maps a batch of images in [0, 255] (uint8 or float) to float32 in [-1, 1]."""
    if images_NHWC.ndim != 4:
        raise ValueError(
            f"images_NHWC must be [N, H, W, C], got shape {images_NHWC.shape}; "
            "add a batch axis for a single image"
        )
    return images_NHWC.astype(jnp.float32) / 127.5 - 1.0


def max_pool_2x2(x_NHWC: jax.Array) -> jax.Array:
    """2×2 max-pool, stride 2 (odd rows and columns dropped, as VALID padding does).

    The same values as `flax.linen.max_pool(x, (2, 2), strides=(2, 2))`, as a reshape and
    a max: its gradient is an elementwise mask, where `max_pool`'s is XLA's
    select-and-scatter, which took 18% of the digit CNN's train step on CPU (measured by
    `experiments.bench_engine`). At ties the gradient is shared among the tied inputs
    instead of going to the first; after a ReLU the ties are zeros, whose gradient the
    ReLU stops either way.
    """
    n, h, w, c = x_NHWC.shape
    x = x_NHWC[:, : h - h % 2, : w - w % 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def channels(base: int, width: float) -> int:
    """`base` channels scaled by `width`, at least one."""
    return max(1, round(base * width))


class DigitsCNN(nn.Module):
    """FedBN's digit CNN: three 5×5 conv layers (64, 64, 128) and three dense layers.

    Each conv is followed by BatchNorm and ReLU, the first two by a 2×2 max-pool; the
    dense layers are 2048 and 512 wide (BatchNorm, ReLU) and then `num_classes` logits.
    All widths are multiplied by `width` (e.g. 1/16 for tests).

    Input: images [N, H, W, C] with values in [0, 255], uint8 or float (scaled to
    [-1, 1] inside); the benchmark uses 28×28×3. Output: logits [N, num_classes], or
    with `features=True` the penultimate activations [N, 512·width] (after the last
    hidden layer's ReLU), e.g. for a kNN in the student's feature space.

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
      Li et al. "FedBN: Federated Learning on Non-IID Features via Local Batch
      Normalization." ICLR 2021.
    """

    num_classes: int = 10
    width: float = 1.0
    conv_batching: str | None = None  # `Conv.batching`: None for the backend's default

    @nn.compact
    def __call__(self, images_NHWC: jax.Array, *, train: bool, features: bool = False) -> jax.Array:
        norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        x = scale_images(images_NHWC)
        for i, base in enumerate((64, 64, 128)):
            f = channels(base, self.width)
            x = Conv(f, (5, 5), batching=self.conv_batching, name=f"conv{i}")(x)
            x = nn.relu(norm(f"bn_conv{i}")(x))
            if i < 2:
                x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        for i, base in enumerate((2048, 512)):
            x = nn.Dense(channels(base, self.width), use_bias=False, name=f"fc{i}")(x)
            x = nn.relu(norm(f"bn_fc{i}")(x))
        if features:
            return x
        return nn.Dense(self.num_classes, name="head")(x)
