"""Plumbing the experiment entry points share: data + features, atomic files, the absl main.

Library code never reads a `ConfigDict`; this module is where the experiments unpack
theirs.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from ecos_jax import coverage, noise, privacy, protocol, selection, synthetic
from ecos_jax.keys import named_key

__all__ = [
    "QUERY_ORDERS",
    "ImageBenchmark",
    "Space",
    "atomic_write",
    "check_query_order",
    "client_randomness",
    "coverage_kwargs",
    "coverage_weights",
    "ecos_round",
    "feature_cache_tag",
    "json_default",
    "knn_query_order",
    "load_image_benchmark",
    "main",
    "mean_std",
    "method_query_order",
    "parse_space",
    "score_randomness",
    "score_sigma",
    "select",
    "space_features",
]


class ImageBenchmark(NamedTuple):
    """A split's images and their features, with what they are in one sentence."""

    split: Any  # ecos_jax.data.Split
    features: synthetic.FeatureBenchmark
    extractor: Any  # the FeatureExtractor that made `features`
    about: str


def load_image_benchmark(config, client_domain: str) -> ImageBenchmark:
    """Loads `config.data` (source and images) for `client_domain` and featurises it.

    Features are cached under a tag naming the split (dataset, seed, regime, caps, build),
    so a second experiment on the same split reuses them.
    """
    from ecos_jax import data, feature_benchmark

    source, img, fcfg = config.data.source, config.data.images, config.features
    build = (img.build_train, img.build_test) if img.build_train else None
    split = data.load_split(
        source,
        client_domain,
        img.regime,
        img.split_seed,
        caps=img.caps or None,
        include_unrelated=img.include_unrelated,
        data_dir=img.data_dir,
        build_counts=build,
    )
    extractor = feature_benchmark.make_extractor(
        fcfg.extractor,
        pool_images=split.pool_images,
        pool_labels=split.pool_oracle.labels,
        resolution=fcfg.resolution,
        batch_size=fcfg.batch_size,
        dim=fcfg.dim,
    )
    features = feature_benchmark.featurize_split(
        split, extractor, cache_tag=feature_cache_tag(config)
    )
    about = (
        f"{source} images (offline benchmark `ecos_jax.data`; pool domains "
        f"{', '.join(split.domains)}), regime {img.regime}, client domain "
        f"{client_domain}, at most {img.caps} examples per domain; features φ = "
        f"{extractor.name} (d={features.pool_features.shape[1]})."
    )
    return ImageBenchmark(split, features, extractor, about)


class Space(NamedTuple):
    """A feature space for the kNN: a public extractor, its input resolution, a metric."""

    extractor: str
    resolution: int
    metric: str

    @property
    def name(self) -> str:
        return f"{self.extractor}:{self.resolution}:{self.metric}"


def parse_space(text: str, field: str = "config.spaces entry") -> Space:
    """'extractor:resolution:metric' → `Space`, naming the field on a malformed entry."""
    from ecos_jax import feature_benchmark

    parts = str(text).split(":")
    if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in ("l2", "cosine"):
        raise ValueError(
            f"{field} {text!r} must read 'extractor:resolution:metric' with an "
            "integer resolution and metric 'l2' or 'cosine', e.g. 'efficientnet_lite0:64:l2'."
        )
    if parts[0] not in feature_benchmark.EXTRACTORS or parts[0] == "small_cnn":
        raise ValueError(
            f"{field} {text!r}: extractor {parts[0]!r} is not one of "
            f"{[e for e in feature_benchmark.EXTRACTORS if e != 'small_cnn']} (small_cnn "
            "trains on pool labels the cloud does not have in task c)."
        )
    return Space(parts[0], int(parts[1]), parts[2])


def space_features(config, bench: ImageBenchmark, space: Space, *, dim: int):
    """(pool, client) features in a kNN `space`; φ's own features when the space is φ.

    Every extractor is public and fitted on the cloud's pool only (`make_extractor`), so
    the space changes the labels' quality, never their privacy cost.
    """
    from ecos_jax import feature_benchmark

    fcfg = config.features
    if space.extractor == fcfg.extractor and space.resolution == fcfg.resolution:
        return bench.features.pool_features, bench.features.client_features
    extractor = feature_benchmark.make_extractor(
        space.extractor,
        pool_images=bench.split.pool_images,
        resolution=space.resolution,
        batch_size=fcfg.batch_size,
        dim=dim,
    )
    feats = feature_benchmark.featurize_split(
        bench.split, extractor, cache_tag=feature_cache_tag(config)
    )
    return feats.pool_features, feats.client_features


def feature_cache_tag(config) -> str | None:
    """The feature-cache tag naming `config.data`'s split (None when caching is off)."""
    if not config.features.cache:
        return None
    img = config.data.images
    build = (img.build_train, img.build_test) if img.build_train else None
    tag = f"{config.data.source}-seed{img.split_seed}-{img.regime}-caps{img.caps}-build{build}"
    return tag + f"-unrelated{int(img.include_unrelated)}"


def coverage_kwargs(config) -> dict[str, Any]:
    """The coverage method's arguments from `config.ecos` (`m`, or `radii` and `max_votes`)."""
    ecfg = config.ecos
    if ecfg.method == "top_m":
        return {"m": ecfg.m}
    if ecfg.method == "radius":
        return {"radii": ecfg.radius, "max_votes": ecfg.max_votes}
    return {}


def score_sigma(config, target_epsilon: float) -> float:
    """The noise multiplier of one score release at `target_epsilon` (`config.ecos`)."""
    ecfg = config.ecos
    kwargs = coverage_kwargs(config)
    votes = coverage.votes_per_sample(
        ecfg.method, m=kwargs.get("m"), max_votes=kwargs.get("max_votes")
    )
    return privacy.calibrate_sigma(
        target_epsilon, delta=ecfg.delta, coordinates=votes, accountant=ecfg.accountant
    )


def client_randomness(config, seed: int, release: str) -> noise.Randomness:
    """The client's noise for `release` of run `seed`, as `config.ecos.randomness` names it:
    the keyed simulation (reproducible) or the secure source."""
    kind = config.ecos.randomness
    if kind == "simulation":
        return selection.client_randomness(int(seed), release)
    if kind == "secure":
        return noise.secure()
    raise ValueError(f"config.ecos.randomness={kind!r}; choose 'simulation' or 'secure'.")


def score_randomness(config, seed: int, target_epsilon: float) -> noise.Randomness:
    """The client's noise for its score release at `target_epsilon` in run `seed`: one
    name for every driver, so that they all select the same S for the same seed."""
    return client_randomness(config, seed, f"ecos_scores/eps={float(target_epsilon):g}")


def ecos_round(config, keys, pool_features, client_features, sigma: float, randomness):
    """`protocol.ecos_round` from the seed's k-means key with the settings of `config.ecos`,
    `metric`, `chunk_size`; a simulated client key equal to any of the cloud's is refused."""
    ecfg = config.ecos
    protocol.check_noise_key_is_the_clients(noise.resolve(randomness), keys.values())
    return protocol.ecos_round(
        keys["kmeans"],
        pool_features,
        client_features,
        sigma=sigma,
        num_clusters=ecfg.num_clusters,
        kmeans_iters=ecfg.kmeans_iters,
        randomness=randomness,
        method=ecfg.method,
        coverage_kwargs=coverage_kwargs(config),
        delta=ecfg.delta,
        metric=config.metric,
        chunk_size=config.chunk_size,
    )


def select(config, method: str, keys, budget: int, pool_features, client_features, ecos):
    """`selection.select` with the settings of `config` (κ, threshold, top-k, oracle κ)."""
    ecfg = config.ecos
    return selection.select(
        method,
        keys,
        budget=budget,
        pool_features=pool_features,
        client_features=client_features,
        ecos=ecos,
        kappa=ecfg.kappa,
        threshold_multiple=ecfg.threshold_multiple,
        top_k=ecfg.top_k,
        oracle_kappa=config.oracle_kappa,
        metric=config.metric,
        chunk_size=config.chunk_size,
    )


# task (c)'s query orders (`knn_query_order`)
QUERY_ORDERS = ("shuffled", "selection", "coverage")


def check_query_order(order: str, name: str) -> None:
    """Raises if `order` (the config field `name`) is not one of `QUERY_ORDERS`."""
    if order not in QUERY_ORDERS:
        raise ValueError(
            f"{name}={order!r}; choose 'shuffled' (a public shuffle), 'selection' (as the "
            "selection lists S) or 'coverage' (ECOS: client-like clusters first)."
        )


def coverage_weights(ecos: protocol.EcosRound, idx) -> np.ndarray:
    """[B] float64: each selected pool point's cluster's noisy score over its pool size.

    The score counts the client samples nearest to the centroid, so score / size
    estimates the ratio of client to pool density in that cluster: about 1 where a
    cluster is the client's domain, about 0 where it is junk. It reads only the released
    scores and the cloud's own clustering (post-processing: no privacy cost); negative
    noisy scores count as 0.
    """
    assignments = np.asarray(ecos.cloud.clustering.assignments)
    scores = np.asarray(ecos.scores.scores, dtype=np.float64)
    sizes = np.bincount(assignments, minlength=len(scores))
    ratio = np.maximum(scores, 0.0) / np.maximum(sizes, 1)
    return ratio[assignments[np.asarray(idx)]]


def knn_query_order(idx, seed: int, order: str, weights=None) -> np.ndarray:
    """S in the order task (c)'s queries are asked; the answer budget goes to the first.

    'selection': as listed. A selection lists S cluster by cluster, so its first few
    hundred come from a few clusters (a few classes). 'shuffled': permuted by a public
    cloud key of the seed (`named_key(key(seed), "knn_query_order")`), the same
    permutation for every method. 'coverage': a weighted draw without replacement in
    proportion to `weights` (ECOS's `coverage_weights`: client-like clusters first, every
    cluster still drawn from), by Gumbel top-k with the same key; rows of weight 0 come
    last, in the shuffled order.
    """
    idx = np.asarray(idx)
    check_query_order(order, "order")
    if order == "selection":
        return idx
    key = named_key(jax.random.key(int(seed)), "knn_query_order")
    if order == "shuffled":
        return idx[np.asarray(jax.random.permutation(key, len(idx)))]
    if weights is None:
        raise ValueError("order='coverage' needs weights (one per query; ECOS's scores).")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != idx.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite, >= 0 and of shape {idx.shape}.")
    gumbel = np.asarray(jax.random.gumbel(key, idx.shape, dtype=jnp.float32), np.float64)
    with np.errstate(divide="ignore"):
        keys = np.log(w) + gumbel  # -inf for weight 0
    # by the weighted key, descending; the weight-0 rows (all -inf) by the Gumbel key alone
    return idx[np.lexsort((-gumbel, -keys))]


def method_query_order(idx, seed: int, order: str, ecos=None) -> np.ndarray:
    """Positions into one method's S (pool indices `idx`) in task (c)'s query order:
    `knn_query_order` of `arange(len(idx))`, 'coverage' weighing each position by `ecos`'s
    released scores (`coverage_weights`). A method without scores (`ecos` None: Random,
    K-Center, Oracle) keeps the shuffled order."""
    positions = np.arange(len(idx))
    if order == "coverage" and ecos is None:
        order = "shuffled"
    weights = coverage_weights(ecos, idx) if order == "coverage" else None
    return knn_query_order(positions, seed, order, weights)


def mean_std(values: list) -> tuple[float | None, float | None]:
    """Mean and population std over seeds; None if any value is None (not private)."""
    if any(v is None for v in values):
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def atomic_write(path: Path, content: str | Callable, *, binary: bool = False) -> None:
    """Writes to a temp file in the same folder, then `os.replace`s it into place.

    `content` is the text (or bytes) to write, or a callable that writes to the open file.
    A crash leaves the old file (or none), never a half-written one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_default(obj):
    """JSON fallback for numpy scalars."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def main(run: Callable[[Any, str], dict], default_config: str) -> None:
    """Defines --config and --workdir, runs `run(config, workdir)`, prints its JSON last."""
    config_flag = config_flags.DEFINE_config_file("config", default_config, "Experiment config.")
    workdir_flag = flags.DEFINE_string("workdir", None, "Output directory.")

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        if not workdir_flag.value:
            raise app.UsageError("--workdir is required.")
        logging.set_verbosity(logging.WARNING)  # no INFO lines from JAX's backend probing
        summary = run(config_flag.value, workdir_flag.value)
        print(json.dumps(summary, allow_nan=False, default=json_default), flush=True)

    app.run(functools.partial(_main))
