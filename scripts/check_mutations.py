"""Mutation check: each listed code mutation must make its listed tests fail.

For every mutation the repository's files (tracked, plus untracked ones git does not
ignore) are copied into a temporary directory, the mutation is applied there, and the
listed tests run there with the project venv's python, `PYTHONPATH` pointing at the copy
(so `import ecos_jax` loads the mutated copy, not the editable install of the working
tree). A mutation is "caught" when pytest fails, "SURVIVED" when it passes, and "STALE"
when its `old` snippet does not occur exactly once in its file. The working tree is never
written to.

Run from anywhere:

    .venv/bin/python scripts/check_mutations.py               # every mutation
    .venv/bin/python scripts/check_mutations.py --only NAME   # some of them (repeatable)
    .venv/bin/python scripts/check_mutations.py --sanity      # listed tests, unmodified copy
    .venv/bin/python scripts/check_mutations.py --list

Before mutating, the listed tests run once on the unmodified copy; a mutation whose tests
fail there too is "BROKEN" rather than caught. Exits 1 if any mutation survived, is
stale or broken (or, with `--sanity`, if any listed test fails on the unmodified copy).
To add a mutation, append a `Mutation` to `MUTATIONS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
TIMEOUT_S = 900  # per pytest run


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One code mutation and the tests that must catch it."""

    name: str
    path: str  # file, relative to the repository root
    old: str  # exact snippet; must occur exactly once in `path`
    new: str  # its replacement
    tests: tuple[str, ...]  # pytest node ids or paths, relative to the repository root
    why: str = ""  # what the mutation breaks, one line


MUTATIONS: list[Mutation] = [
    Mutation(
        name="kmeans_pp_first_k_rows",
        path="ecos_jax/kmeans.py",
        old="    return _kmeans_plusplus(\n",
        new="    return jnp.asarray(x_NxD, jnp.float32)[:k]\n    return _kmeans_plusplus(\n",
        tests=(
            "tests/test_kmeans.py::test_seeding_puts_one_seed_in_every_separated_blob",
            "tests/test_kmeans.py::test_seeding_draws_the_first_two_seeds_with_the_k_means_plus_plus_law",
        ),
        why="kmeans_plusplus_init returns the first k rows",
    ),
    Mutation(
        name="kmeans_init_first_k_rows",
        path="ecos_jax/kmeans.py",
        old="return x, w, kmeans_plusplus_init(key, x, k=k,",
        new="return x, w, x[:k] if True else kmeans_plusplus_init(key, x, k=k,",
        tests=(
            "tests/test_kmeans.py::test_seeding_puts_one_seed_in_every_separated_blob",
            "tests/test_kmeans.py::test_kmeans_seeds_with_kmeans_plus_plus_of_its_key_and_weights",
        ),
        why="kmeans seeds from the first k rows instead of k-means++",
    ),
    Mutation(
        name="kmeans_no_reseed_keep_centroid",
        path="ecos_jax/kmeans.py",
        old="return jnp.where(empty_R[:, None], reseeded_RxD, means_RxD)",
        new="return jnp.where(empty_R[:, None], c_RxD, means_RxD)",
        tests=("tests/test_kmeans.py::test_empty_clusters_are_reseeded",),
        why="an empty cluster keeps its old centroid",
    ),
    Mutation(
        name="kmeans_no_reseed_far_fn_skipped",
        path="ecos_jax/kmeans.py",
        old="any_empty = jnp.any(stats.counts <= 0)",
        new="any_empty = jnp.zeros((), bool)",
        tests=("tests/test_kmeans.py::test_empty_clusters_are_reseeded",),
        why="empty clusters are never re-seeded onto far points (they land on the origin)",
    ),
    Mutation(
        name="kmeans_pp_ignores_weights",
        path="ecos_jax/kmeans.py",
        old="w = jnp.ones((n,), jnp.float32) if weights is None else",
        new="w = jnp.ones((n,), jnp.float32) if True else",
        tests=(
            "tests/test_kmeans.py::test_seeding_never_picks_a_zero_weight_point",
            "tests/test_kmeans.py::test_seeding_draws_the_first_two_seeds_with_the_k_means_plus_plus_law",
        ),
        why="k-means++ seeding ignores the point weights",
    ),
    Mutation(
        name="kmeans_init_drops_weights",
        path="ecos_jax/kmeans.py",
        old="k=k, weights=w, sample_size=init_sample_size",
        new="k=k, weights=None, sample_size=init_sample_size",
        tests=(
            "tests/test_kmeans.py::test_kmeans_seeds_with_kmeans_plus_plus_of_its_key_and_weights",
        ),
        why="kmeans seeds without the point weights",
    ),
    Mutation(
        name="batch_order_same_every_epoch",
        path="ecos_jax/train/loop.py",
        old="np.asarray(seed).tolist(), epoch]",
        new="np.asarray(seed).tolist(), 0]",
        tests=(
            "tests/train/test_train_loop.py::test_batch_order_is_a_fresh_permutation_every_epoch",
        ),
        why="every epoch reuses the same batch permutation",
    ),
    Mutation(
        name="fit_same_key_every_step",
        path="ecos_jax/train/loop.py",
        old="jax.random.fold_in(steps_key, step)",
        new="jax.random.fold_in(steps_key, 0)",
        tests=(
            "tests/train/test_train_loop.py::test_fit_gives_every_step_its_own_key_and_augmentation",
            "tests/train/test_train_task_steps.py::test_fit_feeds_fixmatch_fresh_views_every_step",
        ),
        why="every training step gets the same step and augmentation key",
    ),
    Mutation(
        name="allocate_remainder_to_lowest_index",
        path="ecos_jax/sampling.py",
        old="order = np.lexsort((idx, -raw_R[idx], -(quota - base)))",
        new="order = np.arange(idx.size)",
        tests=(
            "tests/test_sampling.py::test_allocate_budget_gives_the_remainder_by_largest_remainder",
            "tests/test_sampling.py::test_allocate_budget_properties",
        ),
        why="allocate_budget rounds up the lowest indices instead of the largest remainders",
    ),
    # What leaves the client: each must make a test of the released values fail.
    Mutation(
        name="noise_ignores_the_sensitivity",
        path="ecos_jax/privacy.py",
        old="scores.counts, scale=sigma * scores.sensitivity, randomness=randomness",
        new="scores.counts, scale=sigma, randomness=randomness",
        tests=(
            "tests/test_protocol.py::test_released_noise_is_scaled_by_the_sensitivity",
            "tests/test_selection.py::test_ecos_round_runs_every_coverage_method_with_its_sensitivity",
        ),
        why="top-m / radius noise uses Δ = 1 while the report says √m",
    ),
    Mutation(
        name="privacy_report_ignores_delta",
        path="ecos_jax/protocol.py",
        old="    eps = privacy.epsilons(release, delta=delta)",
        new="    eps = privacy.epsilons(release, delta=1e-5)",
        tests=("tests/test_protocol.py::test_privacy_report_follows_delta_and_the_method",),
        why="privacy_report reports ε at a fixed δ",
    ),
    Mutation(
        name="same_client_key_for_every_seed",
        path="ecos_jax/selection.py",
        old='named_key(named_key(jax.random.key(seed), "client"), release)',
        new='named_key(named_key(jax.random.key(0), "client"), release)',
        tests=("tests/test_selection.py::test_client_noise_differs_across_seeds_and_releases",),
        why="every seed's client noise comes from the same key",
    ),
    Mutation(
        name="experiments_same_client_key_for_every_seed",
        path="experiments/common.py",
        old="return selection.client_randomness(int(seed), release)",
        new="return selection.client_randomness(0, release)",
        tests=("tests/test_downstream.py::test_client_noise_differs_across_seeds_and_releases",),
        why="the experiments give every seed the same client noise key",
    ),
    Mutation(
        name="noise_key_is_the_kmeans_key",
        path="ecos_jax/protocol.py",
        old=(
            "    randomness = noise.resolve(randomness)\n"
            "    check_noise_key_is_the_clients(randomness, [key])"
        ),
        new="    randomness = noise.simulation(key)",
        tests=(
            "tests/test_protocol.py::test_released_noise_is_drawn_from_the_clients_key_not_the_clouds",
        ),
        why="the client's noise is drawn from the cloud's k-means key",
    ),
    Mutation(
        name="cosine_cloud_does_not_normalise",
        path="ecos_jax/roles.py",
        old='        if self.metric == "cosine":\n            x = normalize_rows(x)',
        new="        if False:\n            x = normalize_rows(x)",
        tests=("tests/test_protocol.py::test_cosine_cloud_clusters_directions_not_magnitudes",),
        why="the cosine cloud clusters unnormalised rows",
    ),
    Mutation(
        name="threshold_in_units_of_sigma",
        path="ecos_jax/protocol.py",
        old="threshold_multiple * ecos.privacy.noise_std",
        new="threshold_multiple * ecos.privacy.noise_multiplier",
        tests=(
            "tests/test_protocol.py::test_threshold_is_a_multiple_of_the_noise_scale_sigma_times_delta",
            "tests/test_selection.py::test_threshold_multiple_is_in_units_of_sigma_times_delta",
        ),
        why="the round's threshold is a multiple of σ instead of σΔ",
    ),
    Mutation(
        name="grouped_k_center_ignores_the_centroid",
        path="ecos_jax/k_center.py",
        old="res = jax.vmap(pick)(x_NxD[rows_GxP], mask_GxP, seeds_GxD)",
        new="res = jax.vmap(pick)(x_NxD[rows_GxP], mask_GxP, 0.0 * seeds_GxD)",
        tests=(
            "tests/test_k_center.py::test_grouped_k_center_equals_one_greedy_call_per_set",
            "tests/test_sampling.py::test_ecos_select_equals_the_per_cluster_references",
        ),
        why="the grouped k-center seeds every set from the origin, not from its centroid",
    ),
    Mutation(
        name="votes_trust_float32",
        path="ecos_jax/canonical.py",
        old="    idx_CxV = idx_CxT[:, :num_votes].astype(jnp.int32)",
        new=(
            "    ambiguous_C = jnp.zeros_like(ambiguous_C)\n"
            "    idx_CxV = idx_CxT[:, :num_votes].astype(jnp.int32)"
        ),
        tests=("tests/test_ties.py",),
        why="near-tie rows keep their float32 (batch-dependent) votes",
    ),
    Mutation(
        name="float32_release",
        path="ecos_jax/noise.py",
        old="        return values + _simulated_noise(randomness.key, shape, scale)",
        new=(
            "        z = np.asarray(jax.random.normal(randomness.key, shape))\n"
            "        return (values + scale * z).astype(np.float32)"
        ),
        tests=(
            "tests/test_noise.py::test_noise_does_not_depend_on_the_counts",
            "tests/test_audit.py::test_smoke_audit_passes_the_fixed_mechanism_and_catches_the_float32_one",
        ),
        why="the simulated release goes back to a float32 count + noise",
    ),
    Mutation(
        name="subsampled_votes_ignore_the_subsample",
        path="ecos_jax/tasks/subsampled_knn.py",
        old="        d_CxN = jnp.where(mask_CxN, d_CxN, jnp.inf)\n",
        new="",
        tests=(
            "tests/tasks/test_subsampled_knn.py::test_rows_outside_the_subsample_never_vote",
            "tests/tasks/test_subsampled_knn.py::test_votes_equal_the_numpy_reference",
        ),
        why="every client row votes, whatever the Poisson subsample: no amplification",
    ),
    Mutation(
        name="subsampled_votes_without_the_short_bin",
        path="ecos_jax/tasks/subsampled_knn.py",
        old="    out[:, num_classes] = k - np.asarray(voted_Q)\n",
        new="    out[:, num_classes] = 0\n",
        tests=(
            "tests/tasks/test_subsampled_knn.py"
            "::test_one_added_sample_moves_at_most_one_vote_between_two_bins",
        ),
        why="a small subsample adds a vote instead of moving one: the two-bin shift breaks",
    ),
    Mutation(
        name="sampled_rdp_one_order_of_the_pair",
        path="ecos_jax/sampled_discrete_gaussian.py",
        old="        out[i] = max(forward, backward) / (alpha - 1.0)\n",
        new="        out[i] = backward / (alpha - 1.0)\n",
        tests=("tests/test_sampled_discrete_gaussian.py",),
        why="add-or-remove needs both D(μ‖P) and D(P‖μ)",
    ),
    Mutation(
        name="sampled_release_halves_the_rate",
        path="ecos_jax/privacy.py",
        old="            self.scale, self.sampling_rate, self.coordinates, np.asarray(orders,",
        new="            self.scale, self.sampling_rate / 2, self.coordinates, np.asarray(orders,",
        tests=(
            "tests/test_sampled_discrete_gaussian.py"
            "::test_release_rdp_epsilon_matches_the_continuous_event_for_large_scales",
        ),
        why="the ledger accounts at a smaller sampling rate than the sampler uses",
    ),
]


def _git_files() -> list[str]:
    """Tracked files that exist, plus untracked files that git does not ignore."""
    out = []
    for args in (["ls-files", "-z"], ["ls-files", "-z", "--others", "--exclude-standard"]):
        listing = subprocess.run(
            ["git", *args], cwd=REPO, check=True, capture_output=True
        ).stdout.decode()
        out += [p for p in listing.split("\0") if p]
    return sorted({p for p in out if (REPO / p).is_file() or (REPO / p).is_symlink()})


def _copy_repo(dest: Path) -> None:
    """Copies the repository's files (see `_git_files`) into `dest`; reads the tree only."""
    for rel in _git_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target, follow_symlinks=False)


def _count(mutation: Mutation, root: Path) -> int:
    """How often the mutation's `old` snippet occurs in its file under `root` (-1: no file)."""
    path = root / mutation.path
    return path.read_text().count(mutation.old) if path.is_file() else -1


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)  # the copy first, not the editable working tree
    env.pop("PYTHONSTARTUP", None)
    return env


def _check_imports_from(root: Path) -> None:
    """Exits unless `import ecos_jax` inside `root` loads the copy under `root`."""
    probe = subprocess.run(
        [str(PYTHON), "-c", "import ecos_jax; print(ecos_jax.__file__)"],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
    )
    where = probe.stdout.strip()
    if probe.returncode != 0 or not Path(where).resolve().is_relative_to(root.resolve()):
        sys.exit(f"import ecos_jax inside the copy loaded {where!r}, not {root}:\n{probe.stderr}")
    print(f"ecos_jax imports from the copy: {where}")


class _StaleTests(Exception):
    """A listed test does not exist (pytest collected nothing or reported it not found)."""


def _run_tests(tests, root: Path, *, verbose: bool, stop_first: bool = True) -> tuple[str, str]:
    """Runs pytest on `tests` inside `root`; returns ("passed" | "failed" | "timeout", summary)."""
    cmd = [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    if stop_first:
        cmd.insert(3, "-x")
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return "timeout", f"no result after {TIMEOUT_S} s"
    output = (proc.stdout + proc.stderr).strip()
    if verbose:
        print(output)
    summary = output.splitlines()[-1] if output else ""
    # 4: usage error (e.g. "ERROR: not found: <node id>"); 5: nothing collected.
    if proc.returncode in (4, 5):
        errors = [line for line in output.splitlines() if line.startswith("ERROR")]
        raise _StaleTests(errors[0] if errors else summary)
    return ("passed" if proc.returncode == 0 else "failed"), summary


def check(
    mutations: list[Mutation], *, sanity: bool, verbose: bool, stop_first: bool = True
) -> list[tuple]:
    """Runs every mutation (or, with `sanity`, its tests unmodified); returns table rows.

    Before mutating, the union of the listed tests runs once on the unmodified copy; a
    mutation whose tests already fail there is reported "BROKEN" (its result would mean
    nothing), not "caught".
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecos_mutations_") as tmp:
        base = Path(tmp) / "base"
        _copy_repo(base)
        _check_imports_from(base)
        live = []
        for m in mutations:
            count = _count(m, base)
            if count == 1:
                live.append(m)
            else:
                why = "file missing" if count < 0 else f"snippet found {count} times"
                rows.append((m.name, m.path, "STALE", why, 0.0))

        broken: dict[str, str] = {}
        union = tuple(dict.fromkeys(t for m in live for t in m.tests))
        baseline = "failed"
        if live and not sanity:
            try:
                baseline, summary = _run_tests(union, base, verbose=verbose, stop_first=False)
                print(f"baseline (unmodified copy, {len(union)} test ids): {summary}", flush=True)
            except _StaleTests as err:
                print(f"baseline: {err}; checking the mutations one by one", flush=True)
        for m in live:
            start = time.monotonic()
            try:
                if sanity or baseline != "passed":
                    outcome, summary = _run_tests(
                        m.tests, base, verbose=verbose, stop_first=stop_first
                    )
                    if outcome != "passed":
                        broken[m.name] = summary
                if sanity:
                    status = "passes" if m.name not in broken else "FAILS"
                elif m.name in broken:
                    status, summary = "BROKEN", f"fails unmodified: {broken[m.name]}"
                else:
                    root = Path(tmp) / m.name
                    shutil.copytree(base, root, symlinks=True)
                    path = root / m.path
                    path.write_text(path.read_text().replace(m.old, m.new))
                    try:
                        outcome, summary = _run_tests(
                            m.tests, root, verbose=verbose, stop_first=stop_first
                        )
                    finally:
                        shutil.rmtree(root, ignore_errors=True)
                    status = {"passed": "SURVIVED", "failed": "caught", "timeout": "caught"}[
                        outcome
                    ]
            except _StaleTests as err:
                status, summary = "STALE", f"tests: {err}"
            rows.append((m.name, m.path, status, summary, time.monotonic() - start))
            print(f"{m.name}: {status} ({summary})", flush=True)
    return rows


def _print_table(rows: list[tuple]) -> None:
    header = ("mutation", "file", "result", "pytest", "s")
    cells = [header] + [(n, p, r, s, f"{t:.0f}") for n, p, r, s, t in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    for c in cells:
        print("  ".join(c[i].ljust(widths[i]) for i in range(4)) + "  " + c[4].rjust(3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run this mutation")
    parser.add_argument(
        "--sanity", action="store_true", help="run each mutation's tests on the unmodified copy"
    )
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pytest's output")
    parser.add_argument(
        "--every-test",
        action="store_true",
        help="run all listed tests of a mutation, not stop at the first failure (pytest -x)",
    )
    args = parser.parse_args(argv)
    names = [m.name for m in MUTATIONS]
    assert len(set(names)) == len(names), "mutation names must be unique"
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:40s} {m.path:28s} {m.why}")
        return 0
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"unknown mutation(s) {unknown}; see --list")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    rows = check(chosen, sanity=args.sanity, verbose=args.verbose, stop_first=not args.every_test)
    print()
    _print_table(rows)
    bad = {"SURVIVED", "STALE", "FAILS", "BROKEN"}
    return 1 if any(r[2] in bad for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
