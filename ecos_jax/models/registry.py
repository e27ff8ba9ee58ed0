"""The downstream classifiers by name, as configs name them (`get_model("digits_cnn", ...)`)."""

from __future__ import annotations

import flax.linen as nn

from ecos_jax.models.digits_cnn import DigitsCNN
from ecos_jax.models.resnet import ResNet18

__all__ = ["MODELS", "get_model"]

MODELS: dict[str, type[nn.Module]] = {"digits_cnn": DigitsCNN, "resnet18": ResNet18}


def get_model(name: str, *, num_classes: int, width: float = 1.0) -> nn.Module:
    """The classifier registered as `name` in `MODELS`, with `num_classes` logits.

    Equal arguments give equal modules, and `ecos_jax.train.create_train_state` keys the
    compiled steps on the module's fields, so a second run with one setting reuses them.

    Args:
      name: a key of `MODELS`: "digits_cnn" (FedBN's digit CNN) or "resnet18".
      num_classes: width of the logits.
      width: multiplier of every layer's channels (1.0: the published model).

    Returns:
      A flax module called as `model(images_NHWC, train=...)` returning logits.

    Raises:
      ValueError: naming `name` and the registered choices, for an unknown name.

    Examples:
      >>> get_model("digits_cnn", num_classes=10, width=0.25)
      DigitsCNN(
          # attributes
          num_classes = 10
          width = 0.25
          conv_batching = None
      )

    References:
      Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
      Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
    """
    if name not in MODELS:
        choices = " or ".join(repr(n) for n in MODELS)
        raise ValueError(f"name={name!r} is not a registered model; choose {choices}.")
    return MODELS[name](num_classes=int(num_classes), width=float(width))
