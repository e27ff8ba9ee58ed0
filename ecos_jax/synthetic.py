"""SYNTHETIC multi-domain feature pools (Gaussian mixtures) for selection-quality studies.

Nothing here is real data. Each domain holds one Gaussian blob per class; the class
prototypes are shared by all domains (the semantics) while every domain applies its own
random affine "style" (a mixing matrix near the identity plus an offset) and its own
noise scale (the domain shift). This mimics the shape of a DomainNet-style feature pool
(several domains × shared classes) closely enough to test whether a selector finds the
client's domain, and nothing more: accuracy claims need real features.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via Efficient
  Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575. Sec. 4 (the ID+OoD
  and OoD pool regimes).
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ecos_jax._validate import int_at_least, nonnegative_finite

__all__ = ["FeatureBenchmark", "Regime", "make_feature_benchmark"]

Regime = Literal["id+ood", "ood"]


class FeatureBenchmark(NamedTuple):
    """A SYNTHETIC client/pool split of Gaussian-mixture features (host numpy arrays)."""

    client_features: np.ndarray  # [M, D] float32, the client's private features
    client_labels: np.ndarray  # [M] int32 class labels (evaluation only)
    pool_features: np.ndarray  # [N, D] float32, the cloud's open-source pool (shuffled)
    pool_domains: np.ndarray  # [N] int32 domain of every pool point (evaluation only)
    pool_labels: np.ndarray  # [N] int32 class of every pool point (evaluation only)
    client_domain: int  # the domain the client's data comes from


def make_feature_benchmark(
    key: jax.Array | int,
    *,
    num_domains: int = 6,
    num_classes: int = 10,
    dim: int = 64,
    per_domain: int = 8000,
    client_domain: int = 0,
    regime: Regime = "id+ood",
    client_fraction: float = 0.5,
    class_scale: float = 1.0,
    domain_shift: float = 2.0,
    style_strength: float = 0.5,
    noise_std: float = 1.0,
) -> FeatureBenchmark:
    """Builds a SYNTHETIC multi-domain feature pool and a client domain's private features.

    Domain k, class c draws `z = A_k μ_c + b_k + σ_k ε` with shared prototypes
    `μ_c ~ N(0, class_scale² I)`, a per-domain mixing matrix `A_k = I + style_strength·G/√D`
    (G standard normal), an offset `b_k ~ N(0, domain_shift² I)`, a noise scale
    `σ_k = noise_std·U(0.8, 1.2)` and `ε ~ N(0, I)`. Classes are balanced within a domain.

    The client domain's `per_domain` samples are split: `client_fraction` of them go to the
    client. In the `"id+ood"` regime the rest joins the pool with all other domains (the
    DomainNet-style split); in `"ood"` the rest is dropped and the pool holds only the
    other domains.

    Args:
      key: a `jax.random.key` or an int seed.
      num_domains: number of domains, >= 2.
      num_classes: classes per domain, >= 1.
      dim: feature dimension, >= 1.
      per_domain: samples per domain, >= 2.
      client_domain: which domain is the client's, in [0, num_domains).
      regime: `"id+ood"` or `"ood"`.
      client_fraction: share of the client domain given to the client, in (0, 1).
      class_scale: per-coordinate std of the class prototypes.
      domain_shift: per-coordinate std of the domain offsets. The default 2.0 puts domains
        about twice as far apart as classes, the setting where "in-distribution" is a
        meaningful notion; at 1.0 domains are as far apart as classes and k-means with
        fewer clusters than domains × classes merges ID and OoD blobs.
      style_strength: size of the per-domain mixing perturbation (0: offsets only).
      noise_std: base per-coordinate within-class noise.

    Returns:
      A `FeatureBenchmark`; the pool is shuffled so its order carries no domain signal.

    References:
      Hong et al., NeurIPS 2022 (arXiv:2210.12575), Sec. 4 (evaluation regimes).
    """
    if isinstance(key, int | np.integer):
        key = jax.random.key(int(key))
    num_domains = int_at_least(num_domains, "num_domains", 2)
    num_classes = int_at_least(num_classes, "num_classes", 1)
    dim = int_at_least(dim, "dim", 1)
    per_domain = int_at_least(per_domain, "per_domain", 2)
    if not 0 <= client_domain < num_domains:
        raise ValueError(f"client_domain must be in [0, {num_domains}), got {client_domain}.")
    if regime not in ("id+ood", "ood"):
        raise ValueError(f"regime must be 'id+ood' or 'ood', got {regime!r}.")
    if not 0.0 < client_fraction < 1.0:
        raise ValueError(f"client_fraction must be in (0, 1), got {client_fraction}.")
    num_client = round(client_fraction * per_domain)
    if not 0 < num_client < per_domain:
        raise ValueError(
            f"client_fraction={client_fraction} leaves no client or no held-out sample out of "
            f"per_domain={per_domain}; raise per_domain."
        )
    mixture = _Mixture(
        num_domains,
        num_classes,
        dim,
        per_domain,
        class_scale=nonnegative_finite(class_scale, "class_scale"),
        domain_shift=nonnegative_finite(domain_shift, "domain_shift"),
        style_strength=nonnegative_finite(style_strength, "style_strength"),
        noise_std=nonnegative_finite(noise_std, "noise_std"),
    )
    z_GxExD, labels_E, perm, k_shuffle = _sample_domains(key, mix=mixture)
    z_GxExD = np.asarray(z_GxExD, dtype=np.float32)
    labels_E = np.asarray(labels_E, dtype=np.int32)
    perm = np.asarray(perm)
    client_rows, held_rows = perm[:num_client], perm[num_client:]
    client_features = z_GxExD[client_domain][client_rows]
    client_labels = labels_E[client_rows]

    feats, domains, labels = [], [], []
    for k in range(num_domains):
        if k == client_domain:
            if regime == "ood":
                continue
            rows = held_rows
        else:
            rows = np.arange(per_domain)
        feats.append(z_GxExD[k][rows])
        domains.append(np.full(rows.shape[0], k, dtype=np.int32))
        labels.append(labels_E[rows])
    order = np.asarray(jax.random.permutation(k_shuffle, sum(f.shape[0] for f in feats)))
    return FeatureBenchmark(
        client_features=client_features,
        client_labels=client_labels,
        pool_features=np.concatenate(feats)[order],
        pool_domains=np.concatenate(domains)[order],
        pool_labels=np.concatenate(labels)[order],
        client_domain=int(client_domain),
    )


class _Mixture(NamedTuple):
    """The checked sizes and scales of the Gaussian mixture (a static, hashable jit argument)."""

    num_domains: int
    num_classes: int
    dim: int
    per_domain: int
    class_scale: float
    domain_shift: float
    style_strength: float
    noise_std: float


@functools.partial(jax.jit, static_argnames=("mix",))
def _sample_domains(key, *, mix: _Mixture):
    """Features [G, E, D] (G domains, E rows each), labels [E], a split permutation [E], a key."""
    k_proto, k_mix, k_off, k_noise_scale, k_eps, k_split, k_shuffle = jax.random.split(key, 7)
    mu_LxD = mix.class_scale * jax.random.normal(k_proto, (mix.num_classes, mix.dim))
    g_GxDxD = jax.random.normal(k_mix, (mix.num_domains, mix.dim, mix.dim))
    a_GxDxD = jnp.eye(mix.dim)[None] + mix.style_strength * g_GxDxD / np.sqrt(mix.dim)
    b_GxD = mix.domain_shift * jax.random.normal(k_off, (mix.num_domains, mix.dim))
    sigma_G = mix.noise_std * jax.random.uniform(
        k_noise_scale, (mix.num_domains,), minval=0.8, maxval=1.2
    )
    labels_E = jnp.arange(mix.per_domain) % mix.num_classes
    centers_GxLxD = (
        jnp.einsum("gij,lj->gli", a_GxDxD, mu_LxD, precision=jax.lax.Precision.HIGHEST)
        + b_GxD[:, None, :]
    )
    eps_GxExD = jax.random.normal(k_eps, (mix.num_domains, mix.per_domain, mix.dim))
    z_GxExD = centers_GxLxD[:, labels_E, :] + sigma_G[:, None, None] * eps_GxExD
    return z_GxExD, labels_E, jax.random.permutation(k_split, mix.per_domain), k_shuffle
