"""What every run on one client domain shares (`DomainContext`), and the configured model.

The context is built once per client domain by `experiments.downstream` and read by the
task's training set (`experiments.training_sets`) and the run (`experiments.training_runs`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax import costs, models, selection, train
from experiments import common

__all__ = ["DomainContext", "Teacher", "extractor_macs", "init_state", "load_domain"]


class Teacher(NamedTuple):
    """The cloud's teacher of task (b): its logits on the pool and its test accuracy."""

    logits: np.ndarray  # [N, L] float32, eval mode
    accuracy: float


@dataclasses.dataclass(frozen=True)
class DomainContext:
    """One client domain's data and the settings and state its runs share.

    `rounds` is filled as the sweep goes: the client's ECOS round of each (seed, ε), which
    task (c) composes with its label release. `knn_features` are task (c)'s kNN space
    (`config.knn.space`) of the pool and of the client's data.
    """

    config: Any  # the experiment's ml_collections.ConfigDict
    domain: str
    bench: common.ImageBenchmark
    domain_dir: Path  # runs/<domain>: one folder a run, and the teacher's
    num_classes: int
    sigmas: dict[float, float]  # ε -> noise multiplier of the score release
    phi_macs: int | None  # φ on one image (None: the extractor has no jitted forward)
    model_macs: int  # the task's model, eval forward on one image
    rounds: dict[tuple[int, float], selection.EcosRound] = dataclasses.field(default_factory=dict)
    teacher: Teacher | None = None
    knn_features: tuple[np.ndarray, np.ndarray] | None = None  # task (c): (pool, client)


def load_domain(config, domain: str, workdir: Path) -> DomainContext:
    """Loads `domain`'s benchmark and counts its costs (no teacher yet: see `TASKS`)."""
    bench = common.load_image_benchmark(config, domain)
    num_classes = int(config.num_classes)
    model = _model(config.train, num_classes)
    sample = jnp.asarray(bench.split.test.images[:1])
    variables = model.init(jax.random.key(0), sample, train=False)
    return DomainContext(
        config=config,
        domain=domain,
        bench=bench,
        domain_dir=workdir / "runs" / domain,
        num_classes=num_classes,
        sigmas={float(eps): common.score_sigma(config, eps) for eps in config.epsilons},
        phi_macs=extractor_macs(bench.extractor, bench.split.client.images[:1]),
        model_macs=costs.macs(functools.partial(_forward, model), variables, sample),
    )


def _model(mcfg, num_classes: int):
    """The classifier named by `mcfg.model` at width `mcfg.width`."""
    return models.get_model(mcfg.model, num_classes=num_classes, width=mcfg.width)


def init_state(key, mcfg, num_classes: int, sample) -> train.TrainState:
    """A TrainState of `mcfg`'s model with its optimizer and warmup-cosine schedule."""
    optimizer = train.make_optimizer(
        mcfg.optimizer,
        learning_rate=float(mcfg.learning_rate),
        total_steps=max(1, int(mcfg.num_steps)),
        warmup_steps=int(mcfg.warmup_steps),
        weight_decay=float(mcfg.weight_decay),
    )
    return train.create_train_state(key, _model(mcfg, num_classes), optimizer, jnp.asarray(sample))


def _forward(model, variables, images):
    """Eval-mode forward pass (for MAC counting)."""
    return model.apply(variables, images, train=False)


def extractor_macs(extractor, one_image) -> int | None:
    """MACs of φ on one image (None for extractors without a jitted forward)."""
    forward = getattr(extractor, "forward", None)
    variables = getattr(extractor, "variables", None)
    if forward is None or variables is None:
        return None
    return costs.macs(forward, variables, jnp.asarray(one_image))
