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
    for name, value, low in (
        ("num_domains", num_domains, 2),
        ("num_classes", num_classes, 1),
        ("dim", dim, 1),
        ("per_domain", per_domain, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
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
    for name, value in (
        ("class_scale", class_scale),
        ("domain_shift", domain_shift),
        ("style_strength", style_strength),
        ("noise_std", noise_std),
    ):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")

    z_KxPxD, labels_P, perm, k_shuffle = _sample_domains(
        key,
        num_domains=int(num_domains),
        num_classes=int(num_classes),
        dim=int(dim),
        per_domain=int(per_domain),
        class_scale=float(class_scale),
        domain_shift=float(domain_shift),
        style_strength=float(style_strength),
        noise_std=float(noise_std),
    )
    z_KxPxD = np.asarray(z_KxPxD, dtype=np.float32)
    labels_P = np.asarray(labels_P, dtype=np.int32)
    perm = np.asarray(perm)
    client_rows, held_rows = perm[:num_client], perm[num_client:]
    client_features = z_KxPxD[client_domain][client_rows]
    client_labels = labels_P[client_rows]

    feats, domains, labels = [], [], []
    for k in range(num_domains):
        if k == client_domain:
            if regime == "ood":
                continue
            rows = held_rows
        else:
            rows = np.arange(per_domain)
        feats.append(z_KxPxD[k][rows])
        domains.append(np.full(rows.shape[0], k, dtype=np.int32))
        labels.append(labels_P[rows])
    order = np.asarray(jax.random.permutation(k_shuffle, sum(f.shape[0] for f in feats)))
    return FeatureBenchmark(
        client_features=client_features,
        client_labels=client_labels,
        pool_features=np.concatenate(feats)[order],
        pool_domains=np.concatenate(domains)[order],
        pool_labels=np.concatenate(labels)[order],
        client_domain=int(client_domain),
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_domains",
        "num_classes",
        "dim",
        "per_domain",
        "class_scale",
        "domain_shift",
        "style_strength",
        "noise_std",
    ),
)
def _sample_domains(
    key,
    *,
    num_domains: int,
    num_classes: int,
    dim: int,
    per_domain: int,
    class_scale: float,
    domain_shift: float,
    style_strength: float,
    noise_std: float,
):
    """Features [K, P, D], class labels [P], a client-split permutation [P], a shuffle key."""
    k_proto, k_mix, k_off, k_noise_scale, k_eps, k_split, k_shuffle = jax.random.split(key, 7)
    mu_CxD = class_scale * jax.random.normal(k_proto, (num_classes, dim))
    g_KxDxD = jax.random.normal(k_mix, (num_domains, dim, dim))
    a_KxDxD = jnp.eye(dim)[None] + style_strength * g_KxDxD / np.sqrt(dim)
    b_KxD = domain_shift * jax.random.normal(k_off, (num_domains, dim))
    sigma_K = noise_std * jax.random.uniform(k_noise_scale, (num_domains,), minval=0.8, maxval=1.2)
    labels_P = jnp.arange(per_domain) % num_classes
    centers_KxCxD = (
        jnp.einsum("kij,cj->kci", a_KxDxD, mu_CxD, precision=jax.lax.Precision.HIGHEST)
        + b_KxD[:, None, :]
    )
    eps_KxPxD = jax.random.normal(k_eps, (num_domains, per_domain, dim))
    z_KxPxD = centers_KxCxD[:, labels_P, :] + sigma_K[:, None, None] * eps_KxPxD
    return z_KxPxD, labels_P, jax.random.permutation(k_split, per_domain), k_shuffle
