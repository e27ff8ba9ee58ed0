"""A small CNN trained on the cloud's labeled pool data, used as feature map φ.

An alternative to the ImageNet networks when the pool has labels (ECOS's cloud may
label or already hold labeled public data): its penultimate layer is the feature.
Trained on public pool data only, never on client data.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ecos_jax._validate import check_key
from ecos_jax.features.extract import batched_map, check_images, resize_images

__all__ = ["SmallCNN", "SmallCNNExtractor", "train_small_cnn"]


class SmallCNN(nn.Module):
    """Three stride-2 conv stages (3×3, ReLU), global mean pool, a `dim`-wide ReLU layer.

    Input: float images [N, H, W, 3] in [0, 255]. Output: features [N, dim], or
    (features, logits [N, num_classes]) with `return_logits=True`.
    """

    dim: int = 128
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)

    @nn.compact
    def __call__(self, images_NHWC: jax.Array, *, return_logits: bool = False):
        x = images_NHWC.astype(jnp.float32) / 127.5 - 1.0
        for i, width in enumerate(self.widths):
            x = nn.relu(nn.Conv(width, (3, 3), name=f"conv_{i}a")(x))
            x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), name=f"conv_{i}b")(x))
        features = nn.relu(nn.Dense(self.dim, name="embed")(jnp.mean(x, axis=(1, 2))))
        if not return_logits:
            return features
        return features, nn.Dense(self.num_classes, name="classifier")(features)


@dataclasses.dataclass(frozen=True, eq=False)
class SmallCNNExtractor:
    """A trained `SmallCNN` as a `FeatureExtractor` (images resized to `resolution`)."""

    module: SmallCNN
    params: Any
    resolution: int
    batch_size: int = 1024
    forward: Callable[[Any, jax.Array], jax.Array] | None = None

    def __post_init__(self):
        if self.forward is None:
            module, resolution = self.module, self.resolution

            @jax.jit
            def forward(params, images_NHWC):
                x = resize_images(images_NHWC, resolution=resolution)
                return module.apply({"params": params}, x)

            object.__setattr__(self, "forward", forward)

    @property
    def dim(self) -> int:
        return self.module.dim

    @property
    def name(self) -> str:
        digest = hashlib.sha256()
        for leaf in jax.tree_util.tree_leaves(self.params):
            digest.update(np.asarray(leaf).tobytes())
        return f"small_cnn{self.dim}-{self.resolution}px-{digest.hexdigest()[:12]}"

    def __call__(self, images_NHWC: np.ndarray) -> np.ndarray:
        images = check_images(images_NHWC)
        return batched_map(
            self.forward, self.params, images, batch_size=self.batch_size, description=self.name
        )


@functools.partial(
    jax.jit, static_argnames=("module", "learning_rate", "steps", "batch_size", "resolution")
)
def _run_epoch(
    params,
    opt_state,
    epoch_key,
    images,
    labels,
    *,
    module,
    learning_rate,
    steps,
    batch_size,
    resolution,
):
    """One shuffled pass of Adam steps under `lax.scan` (compiled once per configuration)."""
    optimizer = optax.adam(learning_rate)

    def loss_fn(params, batch_x, batch_y):
        x = resize_images(batch_x, resolution=resolution)
        _, logits = module.apply({"params": params}, x, return_logits=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch_y).mean()

    def step(carry, rows):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, images[rows], labels[rows])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    order = jax.random.permutation(epoch_key, images.shape[0])[: steps * batch_size]
    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), order.reshape(steps, batch_size)
    )
    return params, opt_state, losses.mean()


def train_small_cnn(
    key: jax.Array,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    dim: int = 128,
    widths: tuple[int, ...] = (32, 64, 128),
    resolution: int = 32,
    num_epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
) -> SmallCNNExtractor:
    """Trains a `SmallCNN` classifier on labeled public images; returns its feature map.

    Args:
      key: `jax.random.key`; split into init and per-epoch shuffle keys (`fold_in`).
      images: uint8 [N, H, W, 3] labeled pool images (public data, never client data).
      labels: int [N] in [0, num_classes).
      num_classes: classifier width.
      dim: feature width (the penultimate layer).
      widths: channels of the conv stages (each stage halves the resolution).
      resolution: side length the images are resized to.
      num_epochs: passes over the data (each drops the last partial batch).
      batch_size: examples per Adam step (capped at N).
      learning_rate: Adam step size.

    Returns:
      A `SmallCNNExtractor` whose features are the trained penultimate activations.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): φ is public and shared.
    """
    check_key(key, "key")
    images = check_images(images)
    labels = np.asarray(labels)
    n = images.shape[0]
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({n},), got {labels.shape}.")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int ≥ 2, got {num_classes!r}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {labels.min()}…{labels.max()}."
        )
    for arg, value in (
        ("dim", dim),
        ("resolution", resolution),
        ("num_epochs", num_epochs),
        ("batch_size", batch_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}.")
    batch_size = min(batch_size, n)
    steps = n // batch_size
    module = SmallCNN(dim=dim, num_classes=num_classes, widths=tuple(widths))
    init_key, shuffle_key = jax.random.split(key)
    params = module.init(init_key, jnp.zeros((1, resolution, resolution, 3)), return_logits=True)[
        "params"
    ]
    optimizer = optax.adam(learning_rate)
    images_dev = jnp.asarray(images)
    labels_dev = jnp.asarray(labels, jnp.int32)
    opt_state = optimizer.init(params)
    for epoch in range(num_epochs):
        params, opt_state, _ = _run_epoch(
            params,
            opt_state,
            jax.random.fold_in(shuffle_key, epoch),
            images_dev,
            labels_dev,
            module=module,
            learning_rate=learning_rate,
            steps=steps,
            batch_size=batch_size,
            resolution=resolution,
        )
    return SmallCNNExtractor(module, params, resolution)
