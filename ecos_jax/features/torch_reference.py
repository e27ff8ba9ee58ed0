"""PyTorch reference networks for the ported checkpoints (tests and benchmarks only).

Written from the architecture descriptions, with module names that match the
checkpoints' state-dict keys so `load_state_dict(strict=True)` checks the mapping
independently of `weights.py` (batch norm stays unfolded here). torch is a test/benchmark
dependency: it is imported when a builder is called, never by the library itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ecos_jax.features.efficientnet_lite import (
    EFFICIENTNET_LITE0_BN_EPS,
    EFFICIENTNET_LITE0_STAGES,
)
from ecos_jax.features.mobilenet_v2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MOBILENET_V2_BN_EPS,
    MOBILENET_V2_STAGES,
)

__all__ = ["torch_reference_model", "torch_reference_normalize"]


def _torch():
    """Imports torch with a clear error when it is absent."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            "the PyTorch reference networks need torch (a test/benchmark dependency): "
            "install the 'test' extra."
        ) from None
    return torch


def _efficientnet_lite0(torch, num_classes: int):
    """EfficientNet-Lite0 with EfficientNet-PyTorch module names and TF SAME padding."""
    nn = torch.nn
    F = torch.nn.functional
    eps = EFFICIENTNET_LITE0_BN_EPS

    class SameConv(nn.Conv2d):
        """Conv2d that pads like TensorFlow's SAME (the extra pixel goes last)."""

        def forward(self, x):
            pads = []
            for size, k, s in zip(
                reversed(x.shape[-2:]),
                reversed(self.kernel_size),
                reversed(self.stride),
                strict=True,
            ):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, 1, self.groups)

    class Block(nn.Module):
        def __init__(self, cin, cout, k, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.expand = expand
            if expand != 1:
                self._expand_conv = SameConv(cin, hidden, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(hidden, eps=eps)
            self._depthwise_conv = SameConv(hidden, hidden, k, stride, groups=hidden, bias=False)
            self._bn1 = nn.BatchNorm2d(hidden, eps=eps)
            self._project_conv = SameConv(hidden, cout, 1, bias=False)
            self._bn2 = nn.BatchNorm2d(cout, eps=eps)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = x
            if self.expand != 1:
                y = F.relu6(self._bn0(self._expand_conv(y)))
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.residual else y

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
            self._bn0 = nn.BatchNorm2d(32, eps=eps)
            blocks, cin = [], 32
            for expand, cout, repeats, stride, k in EFFICIENTNET_LITE0_STAGES:
                for r in range(repeats):
                    blocks.append(Block(cin, cout, k, stride if r == 0 else 1, expand))
                    cin = cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(cin, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=eps)
            self._fc = nn.Linear(1280, num_classes)

        def forward(self, x, return_logits: bool = False):
            y = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                y = block(y)
            features = F.relu6(self._bn1(self._conv_head(y))).mean(dim=(2, 3))
            return (features, self._fc(features)) if return_logits else features

    return Net()


def _mobilenet_v2(torch, num_classes: int):
    """MobileNetV2 with torchvision's module names and symmetric k//2 padding."""
    nn = torch.nn
    eps = MOBILENET_V2_BN_EPS

    def conv_bn_relu(cin, cout, k, stride=1, groups=1):
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=eps),
            nn.ReLU6(inplace=True),
        )

    class Block(nn.Module):
        def __init__(self, cin, cout, k, stride, expand):
            super().__init__()
            hidden = cin * expand
            layers = [conv_bn_relu(cin, hidden, 1)] if expand != 1 else []
            layers += [
                conv_bn_relu(hidden, hidden, k, stride, groups=hidden),
                nn.Conv2d(hidden, cout, 1, bias=False),
                nn.BatchNorm2d(cout, eps=eps),
            ]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [conv_bn_relu(3, 32, 3, 2)], 32
            for expand, cout, repeats, stride, k in MOBILENET_V2_STAGES:
                for r in range(repeats):
                    layers.append(Block(cin, cout, k, stride if r == 0 else 1, expand))
                    cin = cout
            layers.append(conv_bn_relu(cin, 1280, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x, return_logits: bool = False):
            features = self.features(x).mean(dim=(2, 3))
            return (features, self.classifier(features)) if return_logits else features

    return Net()


def torch_reference_model(name: str, state_dict: Mapping[str, np.ndarray]):
    """A torch `nn.Module` (eval mode, NCHW input) with `state_dict` loaded strictly.

    Args:
      name: 'efficientnet_lite0' or 'mobilenet_v2'.
      state_dict: tensor name → np.ndarray (as `load_torch_checkpoint` returns).

    Returns:
      The module; `module(x_NCHW)` gives [N, 1280] features, `return_logits=True` adds
      logits. Inputs must already be normalised (`torch_reference_normalize`).
    """
    torch = _torch()
    builders = {"efficientnet_lite0": _efficientnet_lite0, "mobilenet_v2": _mobilenet_v2}
    if name not in builders:
        raise ValueError(f"name must be one of {sorted(builders)}, got {name!r}.")
    num_classes = int(
        np.shape(state_dict["_fc.bias" if "_fc.bias" in state_dict else "classifier.1.bias"])[0]
    )
    model = builders[name](torch, num_classes)
    model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, strict=True
    )
    return model.eval()


def torch_reference_normalize(name: str, images_NHWC: np.ndarray) -> np.ndarray:
    """The model's input normalisation in NumPy, returning float32 NCHW."""
    x = np.asarray(images_NHWC, np.float32)
    if name == "efficientnet_lite0":
        x = (x - 127.0) / 128.0
    elif name == "mobilenet_v2":
        x = (x - np.float32(255.0) * np.asarray(IMAGENET_MEAN, np.float32)) / (
            np.float32(255.0) * np.asarray(IMAGENET_STD, np.float32)
        )
    else:
        raise ValueError(f"name must be 'efficientnet_lite0' or 'mobilenet_v2', got {name!r}.")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
