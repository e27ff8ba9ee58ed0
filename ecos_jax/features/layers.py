"""Inference building blocks shared by the MobileNetV2-family feature extractors.

Batch norm is folded into the preceding convolution when weights are loaded (see
`weights.fold_batchnorm`), so every convolution here carries a bias and there is no
batch-norm layer at inference. All tensors are NHWC; kernels are HWIO.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "CONV_PRECISION",
    "ConvAct",
    "InvertedResidual",
    "MobileBackbone",
    "Padding",
    "PretrainedBackbone",
    "Stage",
    "depthwise_conv",
]

Padding = Literal["same", "symmetric"]

#: Matmul/conv precision for float32 inference (no TF32 / bf16 passes on accelerators).
CONV_PRECISION = lax.Precision.HIGHEST


def _pad_amounts(padding: Padding, size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial axis; SAME puts the odd pixel after."""
    if padding == "symmetric":
        return kernel_size // 2, kernel_size // 2
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def depthwise_conv(
    x_NHWC: jax.Array, kernel_KK1C: jax.Array, *, stride: int, padding: Padding
) -> jax.Array:
    """Depthwise convolution as a sum of k² shifted, strided slices times per-channel taps.

    Equal to `lax.conv_general_dilated(..., feature_group_count=C)`, but XLA's CPU
    backend runs grouped convolutions through a slow generic path (5–17× slower on the
    layers of these networks); the slices fuse into one elementwise loop instead.
    """
    k = kernel_KK1C.shape[0]
    n, h, w, c = x_NHWC.shape
    pad_h = _pad_amounts(padding, h, k, stride)
    pad_w = _pad_amounts(padding, w, k, stride)
    out_h = (h + sum(pad_h) - k) // stride + 1
    out_w = (w + sum(pad_w) - k) // stride + 1
    x_pad = jnp.pad(x_NHWC, ((0, 0), pad_h, pad_w, (0, 0)))
    y = None
    for i in range(k):
        for j in range(k):
            window = lax.slice(
                x_pad,
                (0, i, j, 0),
                (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, c),
                (1, stride, stride, 1),
            )
            term = window * kernel_KK1C[i, j, 0].reshape(1, 1, 1, c)
            y = term if y is None else y + term
    return y


class ConvAct(nn.Module):
    """Convolution with bias (batch norm folded in), then ReLU6 if `relu6`.

    `groups == features` gives a depthwise convolution (kernel [k, k, 1, C]).
    """

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    padding: Padding = "same"
    relu6: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        in_features = x_NHWC.shape[-1]
        if in_features % self.groups:
            raise ValueError(f"{in_features} input channels do not split into {self.groups}.")
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (k, k, in_features // self.groups, self.features),
            jnp.float32,
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x_NHWC = x_NHWC.astype(self.dtype)
        if self.groups == in_features == self.features and self.groups > 1:
            y = depthwise_conv(
                x_NHWC, kernel.astype(self.dtype), stride=self.stride, padding=self.padding
            )
        elif k == 1 and self.stride == 1 and self.groups == 1:
            # A pointwise convolution is a GEMM over pixels.
            y = jnp.einsum(
                "nhwc,cd->nhwd",
                x_NHWC,
                kernel[0, 0].astype(self.dtype),
                precision=CONV_PRECISION,
            )
        else:
            y = lax.conv_general_dilated(
                x_NHWC,
                kernel.astype(self.dtype),
                window_strides=(self.stride, self.stride),
                padding=[
                    _pad_amounts(self.padding, size, k, self.stride) for size in x_NHWC.shape[1:3]
                ],
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=self.groups,
                precision=CONV_PRECISION,
            )
        y = y + bias.astype(self.dtype).reshape(1, 1, 1, -1)
        return jnp.clip(y, 0.0, 6.0) if self.relu6 else y


class InvertedResidual(nn.Module):
    """MobileNetV2 / EfficientNet-Lite MBConv block without squeeze-excite.

    1×1 expansion (skipped when `expand_ratio == 1`) → k×k depthwise → 1×1 linear
    projection, with an identity shortcut when the stride is 1 and the width is kept.
    """

    features: int
    kernel_size: int
    stride: int
    expand_ratio: int
    padding: Padding = "same"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        in_features = x_NHWC.shape[-1]
        hidden = in_features * self.expand_ratio
        y = x_NHWC
        if self.expand_ratio != 1:
            y = ConvAct(hidden, dtype=self.dtype, name="expand")(y)
        y = ConvAct(
            hidden,
            kernel_size=self.kernel_size,
            stride=self.stride,
            groups=hidden,
            padding=self.padding,
            dtype=self.dtype,
            name="depthwise",
        )(y)
        y = ConvAct(self.features, relu6=False, dtype=self.dtype, name="project")(y)
        if self.stride == 1 and in_features == self.features:
            y = y + x_NHWC.astype(self.dtype)
        return y


#: One stage: (expand_ratio, out_features, repeats, first_stride, kernel_size).
Stage = tuple[int, int, int, int, int]


class MobileBackbone(nn.Module):
    """Stem conv → inverted-residual stages → 1×1 head conv → global mean pool → linear.

    Input: float images [N, H, W, 3] already normalised. Output: pooled features
    [N, head_features] or (features, logits [N, num_classes]).
    """

    stages: tuple[Stage, ...]
    stem_features: int = 32
    head_features: int = 1280
    num_classes: int = 1000
    padding: Padding = "same"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NHWC: jax.Array, *, return_logits: bool = False):
        y = ConvAct(
            self.stem_features,
            kernel_size=3,
            stride=2,
            padding=self.padding,
            dtype=self.dtype,
            name="stem",
        )(x_NHWC)
        index = 0
        for expand_ratio, features, repeats, first_stride, kernel_size in self.stages:
            for r in range(repeats):
                y = InvertedResidual(
                    features,
                    kernel_size=kernel_size,
                    stride=first_stride if r == 0 else 1,
                    expand_ratio=expand_ratio,
                    padding=self.padding,
                    dtype=self.dtype,
                    name=f"block_{index}",
                )(y)
                index += 1
        y = ConvAct(self.head_features, dtype=self.dtype, name="head")(y)
        features_NxF = jnp.mean(y.astype(jnp.float32), axis=(1, 2))
        if not return_logits:
            return features_NxF
        logits = nn.Dense(self.num_classes, precision=CONV_PRECISION, name="classifier")(
            features_NxF
        )
        return features_NxF, logits


class PretrainedBackbone(nn.Module):
    """A `MobileBackbone` behind a checkpoint's own input normalisation.

    Subclasses set `stages`, `padding` and `normalize` (pixel values in [0, 255] to the
    checkpoint's input range). Call: `module.apply(variables, images_NHWC)` → pooled
    features [N, 1280] float32, or `(features, logits [N, num_classes])` with
    `return_logits=True`.

    Attributes:
      num_classes: classifier width (1000 for the ImageNet checkpoints).
      dtype: computation dtype (parameters stay float32); float32 is the fast one on CPU.
    """

    num_classes: int = 1000
    dtype: jnp.dtype = jnp.float32

    feature_dim = 1280
    resolution = 224  # native input resolution
    stages: ClassVar[tuple[Stage, ...]] = ()
    padding: ClassVar[Padding] = "same"

    @staticmethod
    def normalize(images_NHWC: jax.Array) -> jax.Array:
        """Maps pixel values in [0, 255] to the checkpoint's input range."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, images_NHWC: jax.Array, *, return_logits: bool = False):
        backbone = MobileBackbone(
            stages=self.stages,
            num_classes=self.num_classes,
            padding=self.padding,
            dtype=self.dtype,
            name="backbone",
        )
        return backbone(self.normalize(images_NHWC), return_logits=return_logits)
