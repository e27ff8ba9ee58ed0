"""The privacy audit: it passes the deployed mechanism, catches broken ones, and has power."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from dp_accounting import gaussian_mechanism

from ecos_jax import audit
from experiments.configs import privacy_audit as audit_config

REPO = Path(__file__).resolve().parents[1]
DELTA = 1e-5


@pytest.mark.parametrize("release", audit.RELEASES)
def test_worst_case_pairs_shift_the_counts_by_exactly_the_sensitivity(release):
    pair = audit.neighbouring_counts(release, target_epsilon=0.58, delta=DELTA)
    shift = pair.neighbour - pair.counts
    assert pair.counts.dtype == np.int64
    assert np.abs(shift).max() == 1
    assert pair.shift_l2 == pytest.approx(pair.release.sensitivity)
    assert pair.release.coordinates == int(np.abs(shift).sum())


def test_smoke_audit_passes_the_fixed_mechanism_and_catches_the_float32_one(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.privacy_audit",
            f"--workdir={tmp_path / 'pa'}",
            f"--config={REPO / 'experiments/configs/privacy_audit.py'}:smoke",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("config.json", "metrics.jsonl", "results.md", "audit.png"):
        assert (tmp_path / "pa" / name).stat().st_size > 0
    rows = [
        json.loads(line) for line in (tmp_path / "pa" / "metrics.jsonl").read_text().splitlines()
    ]
    config = audit_config.get_config("smoke")
    assert len(rows) == 3 * len(config.releases) * len(config.epsilons)
    for r in rows:
        if r["control"]:
            assert r["violated"] and r["lattice_fraction"] > 0
            if r["target_epsilon"] < 1:  # with few draws the LR bound shows it at ε = 0.58
                assert r["epsilon_lr"] > r["claimed_epsilon_pld"]
        else:
            assert not r["violated"]
            assert r["lattice_fraction"] == 0
            assert r["epsilon_lr"] <= r["claimed_epsilon_pld"] <= r["claimed_epsilon_rdp"]
            assert r["epsilon_gdp"] <= r["claimed_epsilon_rdp"]
    assert summary["fixed_mechanism_violations"] == 0
    assert summary["control_violations_caught"] == summary["num_controls"] == 8
    assert "| VIOLATION |" not in out.stdout and "**VIOLATION**" in out.stdout


def test_at_the_default_sample_size_the_audit_certifies_80_percent_of_the_claim():
    """Power: the deployed mechanism at ε = 4, audited with the default config's draws."""
    config = audit_config.get_config()
    pair = audit.neighbouring_counts("voronoi", target_epsilon=4.0, delta=DELTA)
    result = audit.audit(
        pair,
        audit.DiscreteGaussianMechanism(pair.release.scale),
        num_draws=config.num_draws,
        key=jax.random.key(0, impl="unsafe_rbg"),  # as the experiment draws
        delta=DELTA,
        significance=config.significance,
    )
    assert result.claimed_epsilon_rdp == pytest.approx(4.0, abs=1e-3)
    assert 0.8 * 4.0 <= result.epsilon_lr <= result.claimed_epsilon_pld
    assert not result.violated


def test_a_forgotten_sensitivity_is_caught():
    """top-m noise of scale σ instead of σ√m: the audit reports a violation."""
    pair = audit.neighbouring_counts("top_m", target_epsilon=0.58, delta=DELTA)
    too_little = audit.DiscreteGaussianMechanism(pair.release.noise_multiplier)
    result = audit.audit(pair, too_little, num_draws=200_000, key=jax.random.key(1), delta=DELTA)
    assert result.violated and result.epsilon_gdp > result.claimed_epsilon_rdp


def test_the_float32_double_support_oracle_accepts_its_own_outputs():
    pair = audit.neighbouring_counts("private_knn", target_epsilon=0.58, delta=DELTA)
    double = audit.float32_double(pair)
    out = double.draw(pair.counts, 5000, jax.random.key(2))
    assert double.producible(out, pair.counts).all()
    # ... and most of them cannot come from the neighbour: the float lattice.
    assert double.producible(out, pair.neighbour).mean() < 0.1


@pytest.mark.parametrize("mu, n", [(0.5, 20_000), (1.0, 30_000), (0.2, 5_000)])
def test_gdp_estimate_stays_below_the_truth_for_a_gaussian(mu, n):
    """For an exactly μ-GDP pair the estimate must not exceed the true ε (w.p. ≥ 95%), also
    with few draws, where jax_privacy 2.0.0's epsilon_from_gdp overshoots."""
    rng = np.random.default_rng(0)
    truth = gaussian_mechanism.get_epsilon_gaussian(1 / mu, DELTA)
    misses = 0
    for _ in range(10):
        out_scores = rng.normal(size=n)
        in_scores = rng.normal(loc=mu, size=n)
        est = audit.gdp_epsilon(in_scores, out_scores, significance=0.05, delta=DELTA)
        misses += est > truth
    assert misses <= 2


def test_planned_threshold_depends_on_the_claim_not_the_draws():
    pair = audit.neighbouring_counts("voronoi", target_epsilon=4.0, delta=DELTA)
    a = audit.planned_threshold(pair, num_draws=10**6, delta=DELTA, significance=0.05)
    b = audit.planned_threshold(pair, num_draws=10**6, delta=DELTA, significance=0.05)
    assert a == b and a > 0
    assert audit.planned_threshold(pair, num_draws=10**8, delta=DELTA, significance=0.05) >= a


def test_bad_release_is_refused():
    with pytest.raises(ValueError, match="release must be one of"):
        audit.neighbouring_counts("laplace", target_epsilon=1.0, delta=DELTA)


def test_jax_privacy_epsilon_from_gdp_overshoots_with_few_draws():
    """Why `audit.gdp_epsilon` exists: jax_privacy 2.0.0's estimator takes |μ| of negative
    bounds and reports ε far above the truth (if this starts failing, the pin moved and the
    library's estimator may be usable again)."""
    from jax_privacy import auditing

    rng = np.random.default_rng(0)
    truth = gaussian_mechanism.get_epsilon_gaussian(1 / 0.1, DELTA)
    in_scores = np.round(rng.normal(loc=0.1, size=3000), 1)
    out_scores = np.round(rng.normal(size=3000), 1)
    theirs = auditing.CanaryScoreAuditor(in_scores, out_scores).epsilon_from_gdp(0.05, DELTA)
    ours = audit.gdp_epsilon(in_scores, out_scores, significance=0.05, delta=DELTA)
    assert ours <= truth < theirs


def test_one_subsampled_knn_answer_passes_and_a_silently_unsampled_one_is_caught():
    # End to end: masks from the sampler, votes from subsampled_votes, noise from
    # noise.add_discrete_gaussian. The same noise claimed at γ = 0.5 but drawn without
    # subsampling (γ = 1) must be flagged; the deployed one must not.
    kwargs = dict(sampling_rate=0.5, target_epsilon=2.0, delta=DELTA, num_draws=200_000)
    deployed = audit.subsampled_knn_audit(key=jax.random.key(1), **kwargs)
    assert not deployed.violated
    assert 0.5 < deployed.epsilon_lr <= deployed.claimed_epsilon_pld <= deployed.claimed_epsilon_rdp
    broken = audit.subsampled_knn_audit(key=jax.random.key(1), drawn_rate=1.0, **kwargs)
    assert broken.violated and broken.epsilon_gdp > broken.claimed_epsilon_rdp
