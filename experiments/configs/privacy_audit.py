"""The privacy audit of every client release (`experiments.privacy_audit`).

Run (about 8 min on 2 CPU cores):

  python -m experiments.privacy_audit --workdir=workdir/privacy_audit

Variants (`--config=experiments/configs/privacy_audit.py:<variant>`):
  smoke   few draws (what the tests run): seconds; the bounds are loose

For each release (Voronoi, top-m with m=3, radius with max_votes=3, one Private-kNN
histogram) and each target ε (RDP, δ=1e-5) the audit builds the worst-case neighbours
(63 copies of a row on the decision boundary, z one more copy / the query itself) and
draws releases from three mechanisms: the deployed discrete Gaussian through the keyed
simulation sampler (`num_draws`), through OpenDP's secure sampler (`secure_draws`), and
the pre-fix float32 Gaussian kept as a test double (`control_draws`), which must be
reported as a violation.

The likelihood-ratio bound at ε = 4 needs many draws: at δ = 1e-5 its threshold sits
where the false-positive rate is about 3e-5, and with 30M draws per dataset the bound
reaches 0.8 × 4 with probability about 0.99 under the claimed mechanism (10M: about
0.7). Results and the figures measured: results/privacy_audit/results.md.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import blocks

VARIANTS = ("default", "smoke")


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    variant = blocks.check_variant(variant, VARIANTS)
    config = ml_collections.ConfigDict()
    config.variant = variant
    config.releases = ("voronoi", "top_m", "radius", "private_knn")
    config.epsilons = (0.58, 4.0)  # target ε of each release (RDP, one release)
    config.delta = 1e-5
    config.significance = 0.05  # of each Clopper-Pearson / GDP bound
    config.num_draws = 30_000_000  # simulation sampler, per dataset
    config.secure_draws = 100_000  # OpenDP's sampler (about 1e5 samples/s), per dataset
    config.control_draws = 200_000  # the float32 test double, per dataset
    config.seed = 0
    if variant == "smoke":
        config.num_draws = 50_000
        config.secure_draws = 5_000
        config.control_draws = 20_000
    return config
